//! Progress display: one overall bar (bytes, files done/total, rate, ETA) plus a bar per big
//! file, drawn only when stderr is a terminal. Implements the engine's `Reporter`.
use crate::transfer::{FileOutcome, Reporter};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Files at least this large get a bar of their own.
const BIG_FILE: u64 = 64 << 20;

/// The engine reporter for humans (and a silent one for `--json`/`-q`/non-terminals).
pub struct ProgressReporter {
    multi: Option<MultiProgress>,
    total: ProgressBar,
    files_total: AtomicUsize,
    files_done: AtomicUsize,
    per_file: Mutex<HashMap<String, ProgressBar>>,
}

impl ProgressReporter {
    /// Bars when `show` (stderr is a terminal and not quiet/json); otherwise silent.
    pub fn new(show: bool) -> Self {
        let (multi, total) = if show {
            let m = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let bar = m.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} [{wide_bar}] files {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            (Some(m), bar)
        } else {
            (None, ProgressBar::hidden())
        };
        ProgressReporter {
            multi,
            total,
            files_total: AtomicUsize::new(0),
            files_done: AtomicUsize::new(0),
            per_file: Mutex::new(HashMap::new()),
        }
    }

    fn files_msg(&self) {
        self.total.set_message(format!(
            "{}/{}",
            self.files_done.load(Ordering::Relaxed),
            self.files_total.load(Ordering::Relaxed)
        ));
    }

    /// Remove the bars from the terminal.
    pub fn finish(&self) {
        self.total.finish_and_clear();
        if let Ok(mut m) = self.per_file.lock() {
            for (_, b) in m.drain() {
                b.finish_and_clear();
            }
        }
    }
}

impl Reporter for ProgressReporter {
    fn plan(&self, files: usize, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.total.set_length(bytes);
        self.files_msg();
    }

    fn file_started(&self, display: &str, size: Option<u64>) {
        if let (Some(m), Some(s)) = (&self.multi, size)
            && s >= BIG_FILE
        {
            let bar = m.add(ProgressBar::new(s));
            bar.set_style(
                ProgressStyle::with_template("  {msg:30!} {bytes}/{total_bytes} [{bar:30}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(display.to_string());
            if let Ok(mut map) = self.per_file.lock() {
                map.insert(display.to_string(), bar);
            }
        }
    }

    fn bytes(&self, display: &str, n: u64) {
        if self.multi.is_some()
            && let Some(b) = self.per_file.lock().ok().and_then(|m| m.get(display).cloned())
        {
            b.inc(n);
        }
        self.total.inc(n);
        if self.total.length().is_some_and(|l| self.total.position() > l) {
            self.total.set_length(self.total.position());
        }
    }

    fn bytes_discarded(&self, n: u64) {
        self.total.set_position(self.total.position().saturating_sub(n));
    }

    fn retry(&self, display: &str, attempt: u32, reason: &str) {
        crate::log::log(1, format!("{display}: retry {attempt}: {reason}"));
    }

    fn file_done(&self, outcome: &FileOutcome) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.files_msg();
        if let Ok(mut map) = self.per_file.lock()
            && let Some(b) = map.remove(&outcome.display)
        {
            b.finish_and_clear();
        }
    }
}

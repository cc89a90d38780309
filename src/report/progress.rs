//! Progress display: one overall bar (bytes, files done/total, rate, ETA) plus a bar per big
//! file when stderr is a terminal; otherwise (CI logs) a plain line at most once per interval,
//! `files 12/40, 1.2 GiB/3.4 GiB, 110.0 MiB/s`, with no control characters. Implements the
//! engine's `Reporter`.
use super::human_bytes;
use crate::transfer::{FileOutcome, Reporter};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// indicatif bars (stderr is a terminal).
    Bars,
    /// A plain line at most once per interval (stderr is a file or a pipe).
    Lines(Duration),
    /// Nothing (`--json`, `-q`).
    Silent,
}

/// State of the plain-lines mode.
struct Lines {
    every: Duration,
    started: Instant,
    /// When the last line was printed (or the run started).
    last: Mutex<Instant>,
    bytes: AtomicU64,
    total: AtomicU64,
}

/// `files 12/40, 1.2 GiB/3.4 GiB, 110.0 MiB/s`.
pub fn progress_line(files_done: usize, files: usize, bytes: u64, total: u64, elapsed: Duration) -> String {
    let rate = bytes as f64 / elapsed.as_secs_f64().max(1e-3);
    format!("files {files_done}/{files}, {}/{}, {}/s", human_bytes(bytes), human_bytes(total), human_bytes(rate as u64))
}

/// Files at least this large get a bar of their own.
const BIG_FILE: u64 = 64 << 20;

/// The engine reporter for humans (and a silent one for `--json`/`-q`/non-terminals).
pub struct ProgressReporter {
    multi: Option<MultiProgress>,
    total: ProgressBar,
    files_total: AtomicUsize,
    files_done: AtomicUsize,
    per_file: Mutex<HashMap<String, ProgressBar>>,
    lines: Option<Lines>,
}

impl ProgressReporter {
    /// A reporter in `mode`.
    pub fn with_mode(mode: ProgressMode) -> Self {
        let mut r = Self::new(mode == ProgressMode::Bars);
        if let ProgressMode::Lines(every) = mode {
            let now = Instant::now();
            r.lines = Some(Lines {
                every,
                started: now,
                last: Mutex::new(now),
                bytes: AtomicU64::new(0),
                total: AtomicU64::new(0),
            });
        }
        r
    }

    /// Print a plain line when the interval has passed since the last one.
    fn maybe_line(&self) {
        let Some(l) = &self.lines else { return };
        let now = Instant::now();
        {
            let Ok(mut last) = l.last.lock() else { return };
            if now.duration_since(*last) < l.every {
                return;
            }
            *last = now;
        }
        let line = progress_line(
            self.files_done.load(Ordering::Relaxed),
            self.files_total.load(Ordering::Relaxed),
            l.bytes.load(Ordering::Relaxed),
            l.total.load(Ordering::Relaxed),
            now.duration_since(l.started),
        );
        eprintln!("{}", crate::redact::scrub(&line));
    }

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
            lines: None,
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
        if let Some(l) = &self.lines {
            l.total.store(bytes, Ordering::Relaxed);
        }
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
        if let Some(l) = &self.lines {
            let done = l.bytes.fetch_add(n, Ordering::Relaxed) + n;
            l.total.fetch_max(done, Ordering::Relaxed);
            self.maybe_line();
        }
    }

    fn bytes_discarded(&self, n: u64) {
        self.total.set_position(self.total.position().saturating_sub(n));
        if let Some(l) = &self.lines {
            let _ = l.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(n)));
        }
    }

    fn retry(&self, display: &str, attempt: u32, reason: &str) {
        crate::log::log(1, format!("{display}: retry {attempt}: {reason}"));
    }

    fn file_done(&self, outcome: &FileOutcome) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.files_msg();
        self.maybe_line();
        if let Ok(mut map) = self.per_file.lock()
            && let Some(b) = map.remove(&outcome.display)
        {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_line_format() {
        let l = progress_line(12, 40, 1288490189, 3650722201, Duration::from_secs(10));
        assert_eq!(l, "files 12/40, 1.2 GiB/3.4 GiB, 122.9 MiB/s");
        assert!(l.chars().all(|c| !c.is_control()));
    }
}

//! Progress display: one overall bar (bytes, rate, ETA, files done/total) plus a bar per big
//! file when stderr is a terminal, each line fitted to the terminal's width ([`super::term`]); otherwise (CI logs) a plain line at most once per interval,
//! `files 12/40, 1.2 GiB/3.4 GiB, 110.0 MiB/s`, with no control characters. Implements the
//! engine's `Reporter`. Several jobs share one reporter ([`ProgressReporter::for_jobs`]): its
//! totals are every job's plan from the start, and the line names the job under way.
use super::{human_bytes, term};
use crate::transfer::{FileOutcome, Reporter};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// The jobs of a run over several jobs: what each planned, and which one is under way.
struct Jobs {
    /// `job 2/3 NAME`, read by the overall bar's line.
    label: Arc<Mutex<String>>,
    state: Mutex<JobsState>,
}

struct JobsState {
    names: Vec<String>,
    /// Files and bytes each job counts for in the totals: its plan until its transfer starts,
    /// then what the engine is given (files already on disk and verified are not fetched).
    planned: Vec<(usize, u64)>,
    /// The job under way, and whether the engine has told its plan.
    current: Option<(usize, bool)>,
}

/// Most columns a job's name takes in the progress line.
const JOB_NAME_COLS: usize = 40;

/// `job 2/3 NAME`: job `index` of `names`, its name made printable and at most
/// [`JOB_NAME_COLS`] wide; empty without jobs.
fn job_label(names: &[String], index: usize) -> String {
    let Some(name) = names.get(index) else { return String::new() };
    let name = term::elide_middle(&crate::safepath::printable(name), JOB_NAME_COLS);
    format!("job {}/{} {name}", index + 1, names.len())
}

/// Files at least this large get a bar of their own.
const BIG_FILE: u64 = 64 << 20;

/// The engine reporter for humans (and a silent one for `--json`/`-q`/non-terminals).
pub struct ProgressReporter {
    multi: Option<MultiProgress>,
    total: ProgressBar,
    files_total: Arc<AtomicUsize>,
    files_done: Arc<AtomicUsize>,
    per_file: Mutex<HashMap<String, ProgressBar>>,
    lines: Option<Lines>,
    jobs: Option<Jobs>,
}

impl ProgressReporter {
    /// A reporter in `mode`.
    pub fn with_mode(mode: ProgressMode) -> Self {
        Self::labelled(mode, Arc::default())
    }

    /// One display for several jobs transferred one after another: `jobs` holds each job's name
    /// and planned files and bytes, so the totals count every job from the start. Call
    /// [`start_job`](Self::start_job) before each job's transfer; the engine's `plan` of that
    /// transfer then replaces the job's share of the totals.
    pub fn for_jobs(mode: ProgressMode, jobs: &[(String, usize, u64)]) -> Self {
        let names: Vec<String> = jobs.iter().map(|j| j.0.clone()).collect();
        // The first job is named from the first frame on.
        let label = Arc::new(Mutex::new(job_label(&names, 0)));
        let mut r = Self::labelled(mode, label.clone());
        let state = JobsState { names, planned: jobs.iter().map(|j| (j.1, j.2)).collect(), current: None };
        r.jobs = Some(Jobs { label, state: Mutex::new(state) });
        let files = jobs.iter().map(|j| j.1).sum();
        let bytes = jobs.iter().map(|j| j.2).sum();
        r.set_totals(files, bytes);
        r
    }

    /// Job `index` (of the `jobs` given to [`for_jobs`](Self::for_jobs)) starts its transfer.
    /// A job before it that ended without a transfer (it failed to start) leaves the totals.
    pub fn start_job(&self, index: usize) {
        let Some(jobs) = &self.jobs else { return };
        let label = {
            let Ok(mut s) = jobs.state.lock() else { return };
            if let Some((prev, false)) = s.current
                && let Some(share) = s.planned.get_mut(prev)
            {
                let (files, bytes) = std::mem::take(share);
                self.adjust_totals((files, bytes), (0, 0));
            }
            s.current = Some((index, false));
            job_label(&s.names, index)
        };
        if let Ok(mut l) = jobs.label.lock() {
            *l = label;
        }
        self.total.tick();
    }

    /// Set the total files and bytes.
    fn set_totals(&self, files: usize, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.total.set_length(bytes);
        if let Some(l) = &self.lines {
            l.total.store(bytes, Ordering::Relaxed);
        }
    }

    /// Replace a share `(files, bytes)` of the totals by another.
    fn adjust_totals(&self, old: (usize, u64), new: (usize, u64)) {
        let files = self.files_total.load(Ordering::Relaxed).saturating_sub(old.0) + new.0;
        let bytes = self.total.length().unwrap_or(0).saturating_sub(old.1) + new.1;
        // Never below what has already arrived.
        self.set_totals(files, bytes.max(self.total.position()));
    }

    /// A reporter in `mode` whose overall line ends with `label` when it is not empty.
    fn labelled(mode: ProgressMode, label: Arc<Mutex<String>>) -> Self {
        let mut r = Self::bars(mode == ProgressMode::Bars, label);
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
        let mut line = progress_line(
            self.files_done.load(Ordering::Relaxed),
            self.files_total.load(Ordering::Relaxed),
            l.bytes.load(Ordering::Relaxed),
            l.total.load(Ordering::Relaxed),
            now.duration_since(l.started),
        );
        if let Some(label) = self.jobs.as_ref().and_then(|j| j.label.lock().ok().map(|l| l.clone()))
            && !label.is_empty()
        {
            line.push_str(&format!(", {label}"));
        }
        eprintln!("{}", crate::redact::scrub(&line));
    }

    /// Bars when `show` (stderr is a terminal and not quiet/json); otherwise silent. Each bar's
    /// line is drawn by [`super::term`] to fit the terminal's current width.
    pub fn new(show: bool) -> Self {
        Self::bars(show, Arc::default())
    }

    /// [`new`](Self::new), the overall line ending with `label` when it is not empty.
    fn bars(show: bool, label: Arc<Mutex<String>>) -> Self {
        let files_total = Arc::new(AtomicUsize::new(0));
        let files_done = Arc::new(AtomicUsize::new(0));
        let (multi, total) = if show {
            let m = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let bar = m.add(ProgressBar::new(0));
            let (done, all) = (files_done.clone(), files_total.clone());
            let line = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let files = (done.load(Ordering::Relaxed), all.load(Ordering::Relaxed));
                let job = label.lock().map(|l| l.clone()).unwrap_or_default();
                let text = term::total_line(
                    state.pos(),
                    state.len(),
                    state.per_sec(),
                    state.elapsed(),
                    files,
                    Some(job.as_str()).filter(|j| !j.is_empty()),
                    term::stderr_width(),
                );
                let _ = w.write_str(&text);
            };
            bar.set_style(
                ProgressStyle::with_template("{jobdl_total}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .with_key("jobdl_total", line),
            );
            (Some(m), bar)
        } else {
            (None, ProgressBar::hidden())
        };
        ProgressReporter {
            multi,
            total,
            files_total,
            files_done,
            per_file: Mutex::new(HashMap::new()),
            lines: None,
            jobs: None,
        }
    }

    /// Run `f` (which prints lines on stderr) with the bars taken off the terminal, then draw
    /// them again below its lines.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(m) => m.suspend(f),
            None => f(),
        }
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
        let Some(jobs) = &self.jobs else { return self.set_totals(files, bytes) };
        // Several jobs: this transfer's plan replaces the current job's share of the totals.
        let Ok(mut s) = jobs.state.lock() else { return };
        let Some((index, told)) = s.current.as_mut() else { return };
        *told = true;
        let index = *index;
        if let Some(share) = s.planned.get_mut(index) {
            let old = std::mem::replace(share, (files, bytes));
            self.adjust_totals(old, (files, bytes));
        }
    }

    fn file_started(&self, display: &str, size: Option<u64>) {
        if let (Some(m), Some(s)) = (&self.multi, size)
            && s >= BIG_FILE
        {
            let bar = m.add(ProgressBar::new(s));
            let label = crate::safepath::printable(display);
            let line = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let text = term::file_line(&label, state.pos(), state.len().unwrap_or(0), term::stderr_width());
                let _ = w.write_str(&text);
            };
            bar.set_style(
                ProgressStyle::with_template("{jobdl_file}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .with_key("jobdl_file", line),
            );
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
        self.total.tick();
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
    fn several_jobs_share_one_set_of_totals() {
        let jobs = [("a".to_string(), 2, 100), ("b".to_string(), 1, 200), ("c".to_string(), 1, 50)];
        let r = ProgressReporter::for_jobs(ProgressMode::Silent, &jobs);
        let totals = |r: &ProgressReporter| (r.files_total.load(Ordering::Relaxed), r.total.length());
        assert_eq!(totals(&r), (4, Some(350)), "every job counts from the start");
        assert_eq!(r.jobs.as_ref().and_then(|j| j.label.lock().ok().map(|l| l.clone())).unwrap(), "job 1/3 a");
        // Job a's transfer: one of its files was already on disk, so the engine plans the other.
        r.start_job(0);
        r.plan(1, 40);
        assert_eq!(totals(&r), (3, Some(290)));
        r.bytes("x", 40);
        r.file_done(&FileOutcome {
            display: "x".into(),
            bytes: 40,
            result: crate::transfer::FileResult::Downloaded,
            md5: crate::transfer::Md5Status::Absent,
            checked: None,
        });
        // Job b fails before its transfer: it leaves the totals when job c starts.
        r.start_job(1);
        r.start_job(2);
        assert_eq!(totals(&r), (2, Some(90)));
        assert_eq!(r.total.position(), 40, "job a's bytes stay counted");
        assert_eq!(r.files_done.load(Ordering::Relaxed), 1);
        assert_eq!(r.jobs.as_ref().and_then(|j| j.label.lock().ok().map(|l| l.clone())).unwrap(), "job 3/3 c");
    }

    #[test]
    fn plain_line_format() {
        let l = progress_line(12, 40, 1288490189, 3650722201, Duration::from_secs(10));
        assert_eq!(l, "files 12/40, 1.2 GiB/3.4 GiB, 122.9 MiB/s");
        assert!(l.chars().all(|c| !c.is_control()));
    }
}

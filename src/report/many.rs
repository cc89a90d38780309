//! The end of a `download` of several jobs: a line per job and a total line on stderr, or one
//! `--json` document whose `jobs` holds each job's section (its files, totals and error).
use super::{Printer, Summary, human_bytes, notes, summary_json};
use crate::error::Error;
use crate::plan::PlanFailure;
use crate::transfer::{FileOutcome, FileResult};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One job of a run over several jobs.
#[derive(Debug)]
pub struct ManyJob {
    /// The job (run id) as given or selected (its folder's name, except for `--children` and
    /// `--top`, whose folders are named after the step or trial).
    pub name: String,
    /// Absolute folder of the job.
    pub destination: PathBuf,
    /// Where the job lives, as the manifest records it (no secret).
    pub source: String,
    /// The job's status once it was read.
    pub status: Option<String>,
    /// The job was not finished (`--allow-running`).
    pub partial: bool,
    /// Its transfer ran (possibly interrupted).
    pub ran: bool,
    /// Its transfer was interrupted.
    pub interrupted: bool,
    /// Every planned file's outcome.
    pub files: Vec<FileOutcome>,
    /// Failures found before the transfer.
    pub failures: Vec<PlanFailure>,
    /// What ended this job before or instead of its transfer.
    pub error: Option<Error>,
    /// `--top`: the metric, goal, value and rank that chose this trial.
    pub trial: Option<Value>,
}

impl ManyJob {
    /// A job not resolved yet.
    pub fn new(name: &str, destination: &Path, source: &str) -> ManyJob {
        ManyJob {
            name: name.to_string(),
            destination: destination.to_path_buf(),
            source: source.to_string(),
            status: None,
            partial: false,
            ran: false,
            interrupted: false,
            files: Vec::new(),
            failures: Vec::new(),
            error: None,
            trial: None,
        }
    }

    /// Failed: it ended with an error, or some of its files (or outputs) failed.
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.summary(Duration::ZERO).failed() > 0
    }

    /// `completed`, `failed`, `interrupted` or `not_started` (interrupted before its turn).
    fn outcome(&self) -> &'static str {
        if self.failed() {
            "failed"
        } else if self.interrupted {
            "interrupted"
        } else if !self.ran {
            "not_started"
        } else {
            "completed"
        }
    }

    fn summary(&self, elapsed: Duration) -> Summary<'_> {
        Summary {
            job: self.status.as_deref().map(|s| (self.name.as_str(), s)),
            destination: &self.destination,
            files: &self.files,
            plan_failures: &self.failures,
            elapsed,
            interrupted: self.interrupted,
            partial: self.partial,
            shard: None,
            follow: None,
        }
    }
}

/// The end of a run over several jobs.
pub struct ManySummary<'a> {
    /// The directory the jobs' folders are in.
    pub destination: &'a Path,
    /// Every job, in the order given.
    pub jobs: &'a [ManyJob],
    /// Wall time.
    pub elapsed: Duration,
    /// Ctrl+C stopped the run.
    pub interrupted: bool,
}

impl Printer {
    /// A job that failed before or instead of its transfer (the others go on).
    pub fn job_failed(&self, job: &str, e: &Error) {
        // Most errors already name the job; the prefix is for those that do not.
        let message = e.to_string();
        let line = if message.contains(&format!("'{job}'")) { message } else { format!("job '{job}': {message}") };
        super::error_lines(&line, e.hint());
    }

    /// Print the per-job lines and the total line (stderr), or the JSON document (stdout).
    pub fn many_summary(&self, s: &ManySummary<'_>) {
        if self.json {
            println!("{}", crate::redact::scrub(&many_json(s).to_string()));
        }
        for j in s.jobs {
            let shown = |p: &str| format!("{}/{p}", j.name);
            for pf in &j.failures {
                let line = format!("error: {}: {}", shown(&pf.display), pf.error);
                eprintln!("{}", crate::log::paint(&crate::redact::redact(&line)));
            }
            for f in &j.files {
                if let FileResult::Failed(e) = &f.result {
                    let line = format!("error: {}: {e}", shown(&f.display));
                    eprintln!("{}", crate::log::paint(&crate::redact::redact(&line)));
                }
            }
        }
        let failed_jobs = s.jobs.iter().filter(|j| j.failed()).count();
        if self.quiet && failed_jobs == 0 {
            return;
        }
        let (mut downloaded, mut skipped, mut failed, mut bytes) = (0, 0, 0, 0u64);
        for j in s.jobs {
            let c = Counts::of(j);
            let line = match &j.error {
                Some(e) => format!("job {}: failed: {e}", j.name),
                None if !j.ran => format!("job {}: not started (interrupted)", j.name),
                None => format!(
                    "job {}: {} downloaded ({}), {} skipped, {} failed → {}",
                    j.name,
                    c.downloaded,
                    human_bytes(c.bytes),
                    c.skipped,
                    c.failed,
                    j.destination.display()
                ),
            };
            eprintln!("{}", crate::redact::redact(&line));
            (downloaded, skipped, failed, bytes) =
                (downloaded + c.downloaded, skipped + c.skipped, failed + c.failed, bytes + c.bytes);
        }
        let secs = s.elapsed.as_secs_f64().max(1e-3);
        let rate = bytes as f64 / secs / (1024.0 * 1024.0);
        let state = if s.interrupted { "interrupted after" } else { "downloaded" };
        eprintln!(
            "{state} {downloaded} file{} ({}) of {} jobs in {secs:.1}s ({rate:.1} MiB/s); {skipped} skipped, \
             {failed} failed, {failed_jobs} of {} jobs failed → {}",
            if downloaded == 1 { "" } else { "s" },
            human_bytes(bytes),
            s.jobs.len(),
            s.jobs.len(),
            s.destination.display()
        );
    }
}

/// One job's counts.
struct Counts {
    downloaded: usize,
    skipped: usize,
    failed: usize,
    bytes: u64,
}

impl Counts {
    fn of(j: &ManyJob) -> Counts {
        let of = |r: fn(&FileResult) -> bool| j.files.iter().filter(|f| r(&f.result)).count();
        Counts {
            downloaded: of(|r| *r == FileResult::Downloaded),
            skipped: of(|r| *r == FileResult::Skipped),
            failed: j.failures.len() + of(|r| matches!(r, FileResult::Failed(_))),
            bytes: j.files.iter().filter(|f| f.result == FileResult::Downloaded).map(|f| f.bytes).sum(),
        }
    }
}

/// The `--json` document of a run over several jobs (version 1): the `download` result with
/// `job` null, `files` of every job (paths below `destination`), totals over all jobs, and
/// `jobs`, one section per job.
pub fn many_json(s: &ManySummary<'_>) -> Value {
    let mut files: Vec<Value> = Vec::new();
    let mut sections: Vec<Value> = Vec::new();
    for j in s.jobs {
        let doc = summary_json(&j.summary(Duration::ZERO));
        let folder = match j.destination.strip_prefix(s.destination) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => j.destination.display().to_string(),
        };
        for f in doc["files"].as_array().into_iter().flatten() {
            let mut f = f.clone();
            f["path"] = json!(format!("{folder}/{}", f["path"].as_str().unwrap_or_default()));
            files.push(f);
        }
        let mut totals = doc["totals"].clone();
        if let Some(t) = totals.as_object_mut() {
            t.remove("seconds");
        }
        let mut section = json!({
            "name": j.name,
            "status": j.status,
            "source": j.source,
            "destination": j.destination.display().to_string(),
            "outcome": j.outcome(),
            "files": doc["files"].clone(),
            "totals": totals,
        });
        if j.partial {
            section["partial"] = json!(true);
        }
        if let Some(t) = &j.trial {
            section["trial"] = t.clone();
        }
        if let Some(e) = &j.error {
            section["error"] = json!({"code": e.json_code(), "message": crate::redact::redact(&e.to_string()),
                "exit_code": e.exit_code()});
        }
        sections.push(section);
    }
    let count = |r: &str| files.iter().filter(|f| f["result"] == r).count();
    let bytes: u64 = files.iter().filter(|f| f["result"] != "failed").filter_map(|f| f["bytes"].as_u64()).sum();
    let mut totals = json!({
        "files": files.len(), "bytes": bytes, "downloaded": count("downloaded"), "skipped": count("skipped"),
        "failed": count("failed"), "seconds": (s.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "jobs": s.jobs.len(), "jobs_failed": s.jobs.iter().filter(|j| j.failed()).count(),
    });
    if s.interrupted {
        totals["interrupted"] = json!(true);
    }
    let mut doc = json!({
        "version": 1,
        "job": null,
        "destination": s.destination.display().to_string(),
        "files": files,
        "totals": totals,
        "jobs": sections,
    });
    let notes = notes();
    if !notes.is_empty() {
        doc["notes"] = json!(notes);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::Md5Status;

    #[test]
    fn one_section_per_job_and_files_below_the_destination() {
        let mut ok = ManyJob::new("a", Path::new("/d/a"), "foundry x");
        ok.status = Some("Completed".into());
        ok.ran = true;
        ok.files = vec![FileOutcome {
            display: "artifacts/x".into(),
            bytes: 3,
            result: FileResult::Downloaded,
            md5: Md5Status::Verified,
            checked: None,
        }];
        let mut gone = ManyJob::new("b", Path::new("/d/b"), "foundry x");
        gone.error = Some(Error::NotFound("job 'b' not found".into()));
        let jobs = [ok, gone];
        let s = ManySummary { destination: Path::new("/d"), jobs: &jobs, elapsed: Duration::ZERO, interrupted: false };
        let v = many_json(&s);
        assert_eq!(v["job"], Value::Null);
        assert_eq!(v["files"][0]["path"], "a/artifacts/x");
        assert_eq!(v["totals"]["jobs"], 2);
        assert_eq!(v["totals"]["jobs_failed"], 1);
        assert_eq!(v["jobs"][0]["outcome"], "completed");
        assert_eq!(v["jobs"][0]["files"][0]["path"], "artifacts/x");
        assert_eq!(v["jobs"][1]["outcome"], "failed");
        assert_eq!(v["jobs"][1]["error"]["exit_code"], 4);
        assert_eq!(v["jobs"][1]["status"], Value::Null);
    }
}

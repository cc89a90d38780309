//! Everything the user sees: progress (indicatif on a terminal only), per-file error lines,
//! the one-line summary and the `--json` document. The only module that prints to stdout.
mod config;
mod listing;
mod many;
mod progress;
pub mod term;

pub use config::config_json;
pub use listing::{LsRow, jobs_json, ls_json, raw, show_json};
pub use many::{ManyJob, ManySummary, many_json};
pub use progress::{ProgressMode, ProgressReporter, progress_line};

use crate::error::Error;
use crate::plan::{Plan, PlanFailure};
use crate::transfer::{FileOutcome, FileResult, Md5Status};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How output is shaped, decided once.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// `--json`: stdout carries exactly one document.
    pub json: bool,
    /// `-q`: only errors on stderr.
    pub quiet: bool,
}

/// The end of a run, for the summary and the JSON document.
pub struct Summary<'a> {
    /// Job name and status (`None` for `cp`).
    pub job: Option<(&'a str, &'a str)>,
    /// Absolute destination.
    pub destination: &'a Path,
    /// Transfer outcomes.
    pub files: &'a [FileOutcome],
    /// Failures found before transfer (unresolvable outputs, hostile paths).
    pub plan_failures: &'a [PlanFailure],
    /// Wall time.
    pub elapsed: Duration,
    /// Whether the run was interrupted.
    pub interrupted: bool,
    /// The job was not finished (`--allow-running`): the files may be incomplete.
    pub partial: bool,
    /// `--shard K/N`: the run fetched only this share.
    pub shard: Option<crate::shard::Shard>,
    /// `--follow`: what the polls did (the files are the final pass's).
    pub follow: Option<FollowReport>,
}

/// What `download --follow` did over all its polls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowReport {
    /// Polls made (the final pass included).
    pub polls: u32,
    /// Files fetched for the first time.
    pub new: usize,
    /// Files fetched again because the service's copy changed.
    pub changed: usize,
    /// Folders that appeared at once when all their files were verified.
    pub folders: usize,
    /// Whether the job was seen in a terminal state (false when interrupted before).
    pub ended: bool,
}

impl Summary<'_> {
    /// Count of failed entries.
    pub fn failed(&self) -> usize {
        self.plan_failures.len() + self.files.iter().filter(|f| matches!(f.result, FileResult::Failed(_))).count()
    }
}

/// The run's absolute destination, once known (for the document of an early interruption).
static DESTINATION: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Register the run's absolute destination (the first call wins).
pub fn set_destination(p: &Path) {
    let _ = DESTINATION.set(p.to_path_buf());
}

/// `download --best`: the metric, step, value and folder chosen (the `--json` document's `best`).
static BEST: std::sync::OnceLock<Value> = std::sync::OnceLock::new();

/// Record what `--best` chose (the first call wins).
pub fn set_best(best: Value) {
    let _ = BEST.set(best);
}

/// Notes about what a run could not fetch and why (outputs the listing cannot see), for stderr
/// and the `--json` document's `notes`.
static NOTES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Say something the user must not miss about what is (not) downloaded: printed on stderr (not
/// with `-q`) and listed in the `--json` document's `notes`.
pub fn notice(msg: &str) {
    let msg = crate::redact::redact(msg);
    // Said once per run (`--follow` resolves the job again at every poll).
    if let Ok(mut n) = NOTES.lock()
        && !n.contains(&msg)
    {
        crate::log::log(0, &msg);
        n.push(msg);
    }
}

fn notes() -> Vec<String> {
    NOTES.lock().map(|n| n.clone()).unwrap_or_default()
}

impl Printer {
    /// Print the final summary (human) or the JSON document.
    pub fn summary(&self, s: &Summary<'_>) {
        if self.json {
            // The document on stdout; the same human lines as without --json stay on stderr.
            println!("{}", crate::redact::scrub(&summary_json(s).to_string()));
        }
        let downloaded = s.files.iter().filter(|f| f.result == FileResult::Downloaded).count();
        let skipped = s.files.iter().filter(|f| f.result == FileResult::Skipped).count();
        let bytes: u64 = s.files.iter().filter(|f| f.result == FileResult::Downloaded).map(|f| f.bytes).sum();
        let failed = s.failed();
        for pf in s.plan_failures {
            let line = format!("error: {}: {}", pf.display, pf.error);
            eprintln!("{}", crate::log::paint(&crate::redact::redact(&line)));
        }
        for f in s.files {
            if let FileResult::Failed(e) = &f.result {
                let line = format!("error: {}: {}", f.display, e);
                eprintln!("{}", crate::log::paint(&crate::redact::redact(&line)));
            }
        }
        if self.quiet && failed == 0 {
            return;
        }
        let secs = s.elapsed.as_secs_f64().max(1e-3);
        let rate = bytes as f64 / secs / (1024.0 * 1024.0);
        let state = if s.interrupted { "interrupted after" } else { "downloaded" };
        eprintln!(
            "{state} {downloaded} file{} ({}) in {:.1}s ({rate:.1} MiB/s); {skipped} skipped, {failed} failed → {}",
            if downloaded == 1 { "" } else { "s" },
            human_bytes(bytes),
            secs,
            s.destination.display()
        );
    }

    /// Print a run-ending error (JSON error document or "error / hint" lines).
    ///
    /// An interruption before any transfer prints the normal document with nothing done, naming
    /// the destination registered with [`set_destination`].
    pub fn fatal(&self, e: &Error) {
        let msg = crate::redact::redact(&e.to_string());
        if matches!(e, Error::Interrupted) {
            // Interrupted before any transfer: the normal document with nothing done.
            if self.json {
                let s = Summary {
                    job: None,
                    destination: DESTINATION.get().map_or(Path::new(""), PathBuf::as_path),
                    files: &[],
                    plan_failures: &[],
                    elapsed: Duration::ZERO,
                    interrupted: true,
                    partial: false,
                    shard: None,
                    follow: None,
                };
                println!("{}", crate::redact::scrub(&summary_json(&s).to_string()));
            }
            eprintln!("interrupted");
            return;
        }
        if self.json {
            println!("{}", json!({"version":1,"error":{"code":e.json_code(),"message":msg,"exit_code":e.exit_code()}}));
        }
        if !self.json || !self.quiet {
            error_lines(&msg, e.hint());
        }
    }

    /// Print the plan of a `--dry-run`: on stdout a table (size, MD5 known?, what a run would do,
    /// local path) or the JSON document; plan failures and a summary line on stderr. `actions`
    /// holds one entry per planned file (`plan.tasks`); missing ones count as fetches.
    pub fn dry_run(&self, root: &Path, plan: &Plan, actions: &[PlanAction], job: Option<(&str, &str)>) {
        let action = |i: usize| actions.get(i).unwrap_or(&PlanAction::Fetch);
        if self.json {
            let doc = dry_run_json(root, plan, actions, job);
            println!("{}", crate::redact::scrub(&doc.to_string()));
        } else {
            let mut t = vec![vec!["SIZE".to_string(), "MD5".into(), "ACTION".into(), "LOCAL PATH".into()]];
            for (i, task) in plan.tasks.iter().enumerate() {
                let size = task.size.map(human_bytes).unwrap_or_else(|| "?".into());
                let md5 = if task.md5.is_some() { "yes" } else { "no" };
                t.push(vec![size, md5.into(), action(i).word().into(), shown_path(&root.join(&task.display))]);
            }
            for a in &plan.archives {
                let dir = format!("{}/ (archive, unpacked here)", shown_path(&root.join(&a.display)));
                t.push(vec!["?".into(), "no".into(), PlanAction::Fetch.word().into(), dir]);
            }
            listing::out(&listing::table(&t));
        }
        for f in &plan.failures {
            let line = format!("error: {}: {}", f.display, f.error);
            eprintln!("{}", crate::log::paint(&crate::redact::redact(&line)));
        }
        for (i, task) in plan.tasks.iter().enumerate() {
            if let PlanAction::Refuse(why) = action(i) {
                let line = format!("warning: {}: a run would refuse it: {why}", task.display);
                eprintln!("{}", crate::log::paint(&crate::redact::redact(&line)));
            }
        }
        let archives = match plan.archives.len() {
            0 => String::new(),
            1 => " and 1 archive".to_string(),
            n => format!(" and {n} archives"),
        };
        let count = |f: fn(&PlanAction) -> bool| (0..plan.tasks.len()).filter(|&i| f(action(i))).count();
        let fetch_bytes: u64 = (0..plan.tasks.len())
            .filter(|&i| matches!(action(i), PlanAction::Fetch))
            .filter_map(|i| plan.tasks[i].size)
            .sum();
        let (kept, refused) = (count(|a| matches!(a, PlanAction::Keep)), count(|a| matches!(a, PlanAction::Refuse(_))));
        let unknown = plan.tasks.iter().filter(|t| t.size.is_none()).count() + plan.archives.len();
        eprintln!(
            "{} files{archives}, {}{}: {} to fetch ({}), {kept} kept, {refused} refused (dry run: nothing written)",
            plan.tasks.len(),
            human_bytes(plan.bytes()),
            if unknown > 0 { format!(" ({unknown} of unknown size)") } else { String::new() },
            plan.tasks.len() - kept - refused,
            human_bytes(fetch_bytes),
        );
    }

    /// A notice on stderr (not in quiet mode; with `--json` too, as stdout holds the document).
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{}", crate::log::paint(&crate::redact::redact(msg)));
        }
    }
}

/// What a run would do with one planned file, judged from what is already at its local path
/// and the destination's manifest (as a real run decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanAction {
    /// Download it.
    Fetch,
    /// Keep the local copy: already there and verified (a rerun skips it).
    Keep,
    /// A different local file is there: a run refuses it (exit 6) unless `--overwrite`.
    Refuse(String),
}

impl PlanAction {
    /// The table's word.
    pub fn word(&self) -> &'static str {
        match self {
            PlanAction::Fetch => "fetch",
            PlanAction::Keep => "skip",
            PlanAction::Refuse(_) => "refuse",
        }
    }
}

/// A local path as the user can type it: relative to the working directory when below it.
fn shown_path(p: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let rel = cwd.as_deref().and_then(|c| p.strip_prefix(c).ok()).filter(|r| !r.as_os_str().is_empty());
    crate::redact::scrub(&crate::safepath::printable(&rel.unwrap_or(p).display().to_string()))
}

/// The `download --dry-run --json` document (version 1).
pub fn dry_run_json(root: &Path, plan: &Plan, actions: &[PlanAction], job: Option<(&str, &str)>) -> Value {
    let action = |i: usize| actions.get(i).unwrap_or(&PlanAction::Fetch);
    let files: Vec<_> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| match action(i) {
            PlanAction::Fetch => json!({"path": t.display, "bytes": t.size, "result": "planned"}),
            PlanAction::Keep => json!({"path": t.display, "bytes": t.size, "result": "skipped"}),
            PlanAction::Refuse(why) => {
                json!({"path": t.display, "bytes": t.size, "result": "refused", "error": crate::redact::redact(why)})
            }
        })
        // An archive's entries are known only once it is unpacked: one entry, size unknown.
        .chain(
            plan.archives
                .iter()
                .map(|a| json!({"path": format!("{}/", a.display), "bytes": null, "result": "planned"})),
        )
        .chain(
            plan.failures.iter().map(|f| json!({"path": f.display, "bytes": 0, "result": "failed", "error": f.error})),
        )
        .collect();
    let mut doc = json!({"version":1,"dry_run":true,"job":job.map(|(n,s)| json!({"name":n,"status":s})),
        "destination": root.display().to_string(), "files": files,
        "totals": {"files": plan.tasks.len() + plan.archives.len(), "bytes": plan.bytes(), "failed": plan.failures.len(),
            "skipped": (0..plan.tasks.len()).filter(|&i| matches!(action(i), PlanAction::Keep)).count(),
            "refused": (0..plan.tasks.len()).filter(|&i| matches!(action(i), PlanAction::Refuse(_))).count()}});
    if let Some(best) = BEST.get() {
        doc["best"] = best.clone();
    }
    doc
}

/// The `--json` document (version 1).
pub fn summary_json(s: &Summary<'_>) -> Value {
    let mut files: Vec<Value> = Vec::new();
    for pf in s.plan_failures {
        files.push(json!({"path": pf.display, "bytes": 0, "result": "failed", "md5": "absent", "error": crate::redact::redact(&pf.error)}));
    }
    for f in s.files {
        let mut v = json!({"path": f.display, "bytes": f.bytes, "md5": f.md5.as_str()});
        let (result, err) = match &f.result {
            FileResult::Downloaded => ("downloaded", None),
            FileResult::Skipped => ("skipped", None),
            FileResult::Failed(e) => ("failed", Some(e.clone())),
        };
        v["result"] = json!(result);
        // The check that passed: never one that did not run.
        let verified_by = match (f.md5, f.checked) {
            (Md5Status::Verified, _) => "md5",
            (_, Some(kind)) => kind.as_str(),
            _ => "none",
        };
        v["verified_by"] = json!(verified_by);
        if let Some(e) = err {
            v["error"] = json!(crate::redact::redact(&e));
        }
        files.push(v);
    }
    let downloaded = s.files.iter().filter(|f| f.result == FileResult::Downloaded).count();
    let skipped = s.files.iter().filter(|f| f.result == FileResult::Skipped).count();
    let bytes: u64 = s.files.iter().filter(|f| !matches!(f.result, FileResult::Failed(_))).map(|f| f.bytes).sum();
    let mut totals = json!({
        "files": files.len(), "bytes": bytes, "downloaded": downloaded, "skipped": skipped,
        "failed": s.failed(), "seconds": (s.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
    });
    if s.interrupted {
        totals["interrupted"] = json!(true);
    }
    let mut doc = json!({
        "version": 1,
        "job": s.job.map(|(n, st)| json!({"name": n, "status": st})),
        "destination": s.destination.display().to_string(),
        "files": files,
        "totals": totals,
    });
    if s.partial {
        doc["partial"] = json!(true);
    }
    if let Some(sh) = s.shard {
        doc["shard"] = json!({"index": sh.index, "count": sh.count});
    }
    if let Some(best) = BEST.get() {
        doc["best"] = best.clone();
    }
    if let Some(f) = &s.follow {
        doc["follow"] = json!({
            "polls": f.polls, "new": f.new, "changed": f.changed, "folders": f.folders, "ended": f.ended,
        });
    }
    let notes = notes();
    if !notes.is_empty() {
        doc["notes"] = json!(notes);
    }
    doc
}

/// `1.5 GiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[i]) }
}

/// The "error: …" line and, when the error has one, its "hint: …" line on stderr (redacted).
pub(crate) fn error_lines(message: &str, hint: Option<&str>) {
    eprintln!("{}", crate::log::paint(&crate::redact::redact(&format!("error: {message}"))));
    if let Some(h) = hint {
        eprintln!("{}", crate::log::paint(&crate::redact::redact(&format!("hint: {h}"))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_document_shape() {
        let files = vec![
            FileOutcome {
                display: "artifacts/a".into(),
                bytes: 3,
                result: FileResult::Downloaded,
                md5: Md5Status::Verified,
                checked: None,
            },
            FileOutcome {
                display: "artifacts/m".into(),
                bytes: 9,
                result: FileResult::Downloaded,
                md5: Md5Status::Absent,
                checked: Some(crate::transfer::CheckKind::Md5Multipart),
            },
            FileOutcome {
                display: "artifacts/b".into(),
                bytes: 0,
                result: FileResult::Failed("HTTP 500 ?sig=abc".into()),
                md5: Md5Status::Absent,
                checked: None,
            },
        ];
        let pf = vec![PlanFailure { display: "named-outputs/ckpt/".into(), error: "unsupported".into() }];
        let s = Summary {
            job: Some(("j", "Completed")),
            destination: Path::new("/d"),
            files: &files,
            plan_failures: &pf,
            elapsed: Duration::from_millis(1500),
            interrupted: false,
            partial: false,
            shard: None,
            follow: None,
        };
        let v = summary_json(&s);
        assert_eq!(v["version"], 1);
        assert_eq!(v["job"]["status"], "Completed");
        assert_eq!(v["totals"]["files"], 4);
        assert_eq!(v["totals"]["failed"], 2);
        assert_eq!(v["totals"]["downloaded"], 2);
        assert_eq!(v["files"][1]["verified_by"], "md5");
        assert_eq!(v["files"][2]["verified_by"], "md5-multipart");
        assert_eq!(v["files"][2]["md5"], "absent");
        assert_eq!(v["files"][3]["verified_by"], "none");
        assert_eq!(v["files"][0]["path"], "named-outputs/ckpt/");
        assert!(!v.to_string().contains("abc"));
        assert!(v["totals"].get("interrupted").is_none());
    }

    #[test]
    fn dry_run_lists_an_archive_as_one_entry_of_unknown_size() {
        let plan = Plan {
            archives: vec![crate::plan::ArchiveTask {
                dir: "/d/named-outputs/train/main-logs".into(),
                display: "named-outputs/train/main-logs".into(),
                source: crate::provider::ArchiveSource {
                    rel: "main-logs".into(),
                    url: url::Url::parse("http://127.0.0.1:1/x:read").unwrap(),
                    headers: vec![("authorization".into(), "Bearer secret-token".into())],
                    decoder: crate::transfer::Decoder(std::sync::Arc::new(crate::provider::kfp::read::ReadBody)),
                },
                entries: None,
            }],
            ..Plan::default()
        };
        let v = dry_run_json(Path::new("/d"), &plan, &[], Some(("r", "SUCCEEDED")));
        assert_eq!(
            v["files"][0],
            json!({"path": "named-outputs/train/main-logs/", "bytes": null, "result": "planned"})
        );
        assert_eq!(v["totals"], json!({"files": 1, "bytes": 0, "failed": 0, "skipped": 0, "refused": 0}));
        assert!(!v.to_string().contains("secret-token"));
        // Valid against the published schema's dry-run branch.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/jobdl-v1.schema.json");
        let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        schema["oneOf"] = json!([{ "$ref": "#/$defs/dry_run" }]);
        let validator = jsonschema::draft202012::new(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}

//! `ls` and `show` output: aligned tables for people, versioned JSON documents for scripts.
use super::{Printer, human_bytes};
use crate::plan::PlanFailure;
use crate::provider::Job;
use crate::provider::jobs::JobSummary;
use crate::redact::redact;
use serde_json::json;
use std::io::Write;

/// One planned file, as `ls` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct LsRow {
    /// Output name (`default` for the default artifacts).
    pub output: String,
    /// Path relative to the output.
    pub path: String,
    /// Size in bytes, when known.
    pub bytes: Option<u64>,
    /// Whether the service stores an MD5 for it.
    pub md5_known: bool,
}

/// Write to stdout, ignoring a closed pipe (`jobdl ls | head`).
pub(super) fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(crate::redact::scrub(text).as_bytes());
    let _ = o.flush();
}

/// Print raw bytes (completion scripts, the man page) to stdout.
pub fn raw(bytes: &[u8]) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(bytes);
    let _ = o.flush();
}

/// Columns padded to their widest cell (the last one unpadded), two spaces apart.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| super::term::text_width(s)).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[c] - super::term::text_width(cell) + 2));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// The `ls --json` document (version 1).
pub fn ls_json(job: (&str, &str), rows: &[LsRow], failures: &[PlanFailure], partial: bool) -> serde_json::Value {
    let files: Vec<_> = rows
        .iter()
        .map(|r| json!({"output": r.output, "path": r.path, "bytes": r.bytes, "md5_known": r.md5_known}))
        .collect();
    let mut doc = json!({
        "version": 1,
        "job": {"name": job.0, "status": job.1},
        "files": files,
        "totals": {"files": rows.len(), "bytes": rows.iter().filter_map(|r| r.bytes).sum::<u64>()},
    });
    if partial {
        doc["partial"] = json!(true);
    }
    if !failures.is_empty() {
        doc["failures"] =
            failures.iter().map(|f| json!({"path": f.display, "error": redact(&f.error)})).collect::<Vec<_>>().into();
    }
    doc
}

/// The `show --json` document (version 1).
pub fn show_json(job: &Job) -> serde_json::Value {
    let outputs: Vec<_> = job
        .outputs
        .iter()
        .map(|(name, o)| {
            json!({"name": name, "type": o.kind, "asset_name": o.asset_name, "asset_version": o.asset_version,
                   "uri": o.uri.as_deref().map(redact)})
        })
        .collect();
    json!({
        "version": 1,
        "job": {"name": job.name, "status": job.status,
            "type": (!job.job_type.is_empty()).then_some(&job.job_type),
                "reused_run": job.reused_run, "best_child": job.best_child,
                "created": job.created, "studio_url": job.studio_url},
        "outputs": outputs,
    })
}

/// The `jobs --json` document (version 1).
pub fn jobs_json(jobs: &[JobSummary]) -> serde_json::Value {
    let rows: Vec<_> = jobs
        .iter()
        .map(|j| {
            json!({"name": j.name, "status": j.status, "created": j.created, "type": j.job_type,
                   "display_name": j.display_name, "experiment": j.experiment})
        })
        .collect();
    json!({"version": 1, "jobs": rows, "totals": {"jobs": jobs.len()}})
}

/// The `jobs` table: NAME, STATUS, CREATED, TYPE, then DISPLAY NAME and EXPERIMENT when any job
/// has one (`-` for a missing cell). With a `width` (a terminal's), rows are fitted into fewer
/// than `width` columns so the terminal never wraps them: the display name is shortened first
/// (keeping its start), then the experiment, then the name (keeping its start and end, so a
/// generated suffix stays visible), each down to a floor that keeps it recognisable; when that is
/// not enough the EXPERIMENT column goes, then DISPLAY NAME. Status, time and type are never cut.
/// Without a width every cell is printed whole.
pub fn jobs_table(jobs: &[JobSummary], width: Option<usize>) -> String {
    let with_display = jobs.iter().any(|j| j.display_name.is_some());
    let with_experiment = jobs.iter().any(|j| j.experiment.is_some());
    let Some(width) = width else {
        return table(&jobs_rows(jobs, with_display, with_experiment));
    };
    let mut tried = vec![(with_display, with_experiment)];
    if with_experiment {
        tried.push((with_display, false));
    }
    if with_display {
        tried.push((false, false));
    }
    let mut text = String::new();
    for (display, experiment) in tried {
        let mut t = jobs_rows(jobs, display, experiment);
        fit_jobs(&mut t, width, display, experiment);
        text = table(&t);
        if text.lines().all(|l| super::term::text_width(l) < width) {
            break;
        }
    }
    text
}

/// The `jobs` table's header and rows, with the optional columns asked for.
fn jobs_rows(jobs: &[JobSummary], with_display: bool, with_experiment: bool) -> Vec<Vec<String>> {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut header = vec!["NAME".to_string(), "STATUS".into(), "CREATED".into(), "TYPE".into()];
    if with_display {
        header.push("DISPLAY NAME".into());
    }
    if with_experiment {
        header.push("EXPERIMENT".into());
    }
    let mut t = vec![header];
    for j in jobs {
        let status = if j.status.is_empty() { "-".to_string() } else { j.status.clone() };
        let mut row = vec![j.name.clone(), status, dash(&j.created), dash(&j.job_type)];
        if with_display {
            row.push(dash(&j.display_name));
        }
        if with_experiment {
            row.push(dash(&j.experiment));
        }
        t.push(row);
    }
    t
}

/// Shorten the `jobs` table's flexible columns until a row takes fewer than `width` columns.
fn fit_jobs(t: &mut [Vec<String>], width: usize, with_display: bool, with_experiment: bool) {
    use super::term::{elide_end, elide_middle, text_width};
    let cols = t.first().map(Vec::len).unwrap_or(0);
    let mut widths: Vec<usize> =
        (0..cols).map(|c| t.iter().filter_map(|r| r.get(c)).map(|s| text_width(s)).max().unwrap_or(0)).collect();
    // Two spaces between columns; the last column is unpadded; one column left free.
    let used = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    let max = width.saturating_sub(1);
    // (column, floor, keep the end too)
    let mut order = Vec::new();
    if with_display {
        order.push((4, 12, false));
    }
    if with_experiment {
        order.push((if with_display { 5 } else { 4 }, 10, false));
    }
    order.push((0, 16, true));
    for (col, floor, middle) in order {
        let over = used(&widths).saturating_sub(max);
        if over == 0 {
            break;
        }
        let target = widths[col].saturating_sub(over).max(floor).min(widths[col]);
        if target == widths[col] {
            continue;
        }
        widths[col] = target;
        for row in t.iter_mut() {
            if let Some(cell) = row.get_mut(col) {
                *cell = if middle { elide_middle(cell, target) } else { elide_end(cell, target) };
            }
        }
    }
}

impl Printer {
    /// Print the `jobs` table (or JSON document) on stdout; "no jobs" on stderr.
    pub fn jobs(&self, jobs: &[JobSummary]) {
        if self.json {
            out(&format!("{}\n", jobs_json(jobs)));
            return;
        }
        if jobs.is_empty() {
            self.note("no jobs found");
            return;
        }
        out(&jobs_table(jobs, super::term::stdout_table_width()));
    }

    /// Print the `ls` table (or JSON document) on stdout; plan failures on stderr.
    /// `partial`: the job was not finished (`--allow-running`).
    pub fn ls(&self, job: (&str, &str), rows: &[LsRow], failures: &[PlanFailure], partial: bool) {
        if self.json {
            out(&format!("{}\n", ls_json(job, rows, failures, partial)));
            return;
        }
        for f in failures {
            eprintln!("{}", crate::log::paint(&redact(&format!("error: {}: {}", f.display, f.error))));
        }
        let mut t = vec![vec!["OUTPUT".to_string(), "PATH".into(), "SIZE".into(), "MD5".into()]];
        for r in rows {
            let size = r.bytes.map(human_bytes).unwrap_or_else(|| "?".into());
            let md5 = if r.md5_known { "yes" } else { "no" };
            t.push(vec![r.output.clone(), r.path.clone(), size, md5.into()]);
        }
        let total: u64 = rows.iter().filter_map(|r| r.bytes).sum();
        let unknown = rows.iter().filter(|r| r.bytes.is_none()).count();
        let mut text = table(&t);
        text.push_str(&format!(
            "{} file{}, {}{}\n",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
            human_bytes(total),
            if unknown > 0 { format!(" ({unknown} of unknown size)") } else { String::new() }
        ));
        out(&text);
    }

    /// Print the `show` summary (or JSON document) on stdout.
    pub fn show(&self, job: &Job) {
        if self.json {
            out(&format!("{}\n", show_json(job)));
            return;
        }
        let mut text = String::new();
        let mut field = |k: &str, v: &str| {
            if !v.is_empty() {
                text.push_str(&format!("{k:<12}{v}\n"));
            }
        };
        field("name:", &job.name);
        field("status:", &job.status);
        field("type:", &job.job_type);
        field("reused run:", job.reused_run.as_deref().unwrap_or(""));
        field("best child:", job.best_child.as_deref().unwrap_or(""));
        field("created:", job.created.as_deref().unwrap_or(""));
        field("studio:", job.studio_url.as_deref().unwrap_or(""));
        if job.outputs.is_empty() {
            text.push_str("outputs:    (none declared)\n");
        } else {
            text.push_str("outputs:\n");
            let mut t = vec![vec!["  NAME".to_string(), "TYPE".into(), "ASSET".into(), "URI".into()]];
            for (name, o) in &job.outputs {
                let asset = match (&o.asset_name, &o.asset_version) {
                    (Some(n), Some(v)) => format!("{n}:{v}"),
                    (Some(n), None) => n.clone(),
                    _ => "-".into(),
                };
                let uri = o.uri.as_deref().map(redact).unwrap_or_else(|| "-".into());
                let kind = if o.kind.is_empty() { "-".to_string() } else { o.kind.clone() };
                t.push(vec![format!("  {name}"), kind, asset, uri]);
            }
            text.push_str(&table(&t));
        }
        out(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::OutputSpec;

    #[test]
    fn ls_document_and_table() {
        let rows = vec![
            LsRow { output: "default".into(), path: "logs/a.txt".into(), bytes: Some(10), md5_known: true },
            LsRow { output: "model".into(), path: "w.bin".into(), bytes: None, md5_known: false },
        ];
        let v = ls_json(("j", "Completed"), &rows, &[], false);
        assert_eq!(v["version"], 1);
        assert_eq!(v["totals"]["files"], 2);
        assert_eq!(v["totals"]["bytes"], 10);
        assert_eq!(v["files"][1]["bytes"], serde_json::Value::Null);
        assert!(v.get("failures").is_none());
        let t = table(&[vec!["A".into(), "BB".into()], vec!["CCC".into(), "D".into()]]);
        assert_eq!(t, "A    BB\nCCC  D\n");
    }

    #[test]
    fn jobs_table_and_document() {
        let jobs = vec![
            JobSummary {
                name: "job-2".into(),
                status: "Running".into(),
                created: Some("2026-01-15T10:01:00Z".into()),
                job_type: Some("Command".into()),
                display_name: None,
                experiment: Some("exp".into()),
            },
            JobSummary { name: "job-1".into(), ..JobSummary::default() },
        ];
        assert_eq!(
            jobs_table(&jobs, None),
            "NAME   STATUS   CREATED               TYPE     EXPERIMENT\n\
             job-2  Running  2026-01-15T10:01:00Z  Command  exp\n\
             job-1  -        -                     -        -\n"
        );
        let v = jobs_json(&jobs);
        assert_eq!(v["totals"]["jobs"], 2);
        assert_eq!(v["jobs"][1]["created"], serde_json::Value::Null);
        assert_eq!(v["jobs"][0]["type"], "Command");
    }

    fn long_jobs() -> Vec<JobSummary> {
        vec![
            JobSummary {
                name: "finetune-llama-3-70b-instruct-sweep-trial-0042-a1b2c3d4".into(),
                status: "Completed".into(),
                created: Some("2026-01-15T10:01:00Z".into()),
                job_type: Some("Command".into()),
                display_name: Some("Fine-tune Llama 3 70B on the full customer-support corpus, lr sweep".into()),
                experiment: Some("customer-support-finetuning-2026-q1".into()),
            },
            JobSummary { name: "job-1".into(), status: "Failed".into(), ..JobSummary::default() },
        ]
    }

    #[test]
    fn jobs_table_fits_a_terminal_width() {
        let jobs = long_jobs();
        for width in [80, 100, 120] {
            let t = jobs_table(&jobs, Some(width));
            for line in t.lines() {
                assert!(super::super::term::text_width(line) < width, "{width}: {line:?}\n{t}");
            }
            // Status, time and type are whole; the name keeps its start and its generated end.
            let row = t.lines().nth(1).unwrap();
            assert!(row.starts_with("finetune-") && row.contains("Completed  2026-01-15T10:01:00Z  Command"), "{t}");
            let name = row.split("  ").next().unwrap();
            assert!(name.ends_with("a1b2c3d4") || name.ends_with("c3d4"), "{name:?}\n{t}");
        }
        // Wide enough: nothing is cut.
        let whole = jobs_table(&jobs, Some(400));
        assert_eq!(whole, jobs_table(&jobs, None));
        assert!(!whole.contains('…') && whole.contains("customer-support-finetuning-2026-q1"), "{whole}");
    }

    #[test]
    fn jobs_table_without_a_width_is_complete() {
        let t = jobs_table(&long_jobs(), None);
        assert!(t.contains("finetune-llama-3-70b-instruct-sweep-trial-0042-a1b2c3d4"), "{t}");
        assert!(t.contains("Fine-tune Llama 3 70B on the full customer-support corpus, lr sweep"), "{t}");
    }

    #[test]
    fn show_document_redacts_locations() {
        let mut job = Job { name: "j".into(), status: "Running".into(), job_type: "Command".into(), ..Job::default() };
        job.outputs.insert(
            "o".into(),
            OutputSpec {
                kind: "uri_folder".into(),
                uri: Some("https://a.blob.core.windows.net/c/p?sv=1&sig=SECRET".into()),
                ..OutputSpec::default()
            },
        );
        job.created = Some("2026-01-15T10:00:00Z".into());
        let v = show_json(&job);
        assert_eq!(v["job"]["status"], "Running");
        assert_eq!(v["job"]["created"], "2026-01-15T10:00:00Z");
        assert_eq!(v["job"]["studio_url"], serde_json::Value::Null);
        assert_eq!(v["outputs"][0]["type"], "uri_folder");
        assert!(!v.to_string().contains("SECRET"), "{v}");
    }
}

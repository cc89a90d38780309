//! Issue 24 item 2: several jobs in one `download` show ONE progress display counting across
//! every job (their plans are all known before the first transfer), in a terminal and in plain
//! lines; and a job that fails after its gate still reports the status the gate read.

use crate::harness;
use crate::support;

use harness::{OnTerminal, Run, TestEnv, quiet_hides_and_json_keeps_progress};
use serde_json::Value;
use support::{BlobFixture, JobFixture, World, workspace_world};

/// Two completed jobs of the emulated Azure ML workspace (whose listings give each file's size):
/// `job-a` with 100 bytes, `job-b` with 200 (300 B in all).
fn world() -> World {
    let mut w = workspace_world();
    w.add_job(JobFixture::new("job-a", "Completed"));
    w.add_artifact("job-a", "a.bin", BlobFixture::bytes(vec![b'a'; 100]));
    w.add_job(JobFixture::new("job-b", "Completed"));
    w.add_artifact("job-b", "b.bin", BlobFixture::bytes(vec![b'b'; 200]));
    w
}

/// The text a terminal shows of `raw`: each redraw of a line on a line of its own, escape
/// sequences (`ESC [ … letter`) removed.
fn frames(raw: &str) -> Vec<String> {
    let mut out = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            out.push('\n');
        } else if c == '\r' {
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

#[cfg(unix)]
#[test]
fn one_display_counts_every_job_in_a_terminal() {
    let env = TestEnv::new(world());
    let mut cmd = env.workspace_command(["download", "job-a", "job-b", "-p", "out"]);
    // A terminal that draws (console draws nothing when TERM is unset).
    cmd.env("TERM", "xterm");
    let (screen, stdout, status) = harness::run_on_terminal(cmd, 200, OnTerminal::Stderr);
    assert!(status.success(), "{status:?}\n{screen}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(screen.contains('\u{1b}'), "no progress bar drawn on a terminal\n{screen:?}");
    let frames = frames(&screen);
    let shown = frames.join("\n");
    // Drawn while job-a transfers, the total already holds job-b's 200 bytes and file.
    let first: Vec<&String> = frames.iter().filter(|f| f.contains("job 1/2 job-a")).collect();
    assert!(!first.is_empty(), "no line names job 1/2\n{shown}");
    for f in &first {
        assert!(f.contains("/300 B") && f.contains("/2"), "job-a's line without both jobs' totals: {f}\n{shown}");
    }
    // The display goes on when job-b starts: job-a's bytes and file stay counted.
    let second: Vec<&String> = frames.iter().filter(|f| f.contains("job 2/2 job-b")).collect();
    assert!(!second.is_empty(), "no line names job 2/2\n{shown}");
    for f in &second {
        assert!(f.contains("/300 B"), "{f}\n{shown}");
        assert!(!f.starts_with("0 B/"), "the display restarted at job-b: {f}\n{shown}");
    }
    assert!(second[0].contains("100 B/300 B") && second[0].contains("files 1/2"), "{}\n{shown}", second[0]);
    // Never a display of one job's total.
    assert!(!shown.contains("/100 B") && !shown.contains("/200 B"), "a per-job display\n{shown}");
    // The per-job lines and the total line follow.
    for line in
        ["job job-a: 1 downloaded (100 B)", "job job-b: 1 downloaded (200 B)", "downloaded 2 files (300 B) of 2 jobs"]
    {
        assert!(shown.contains(line), "{line}\n{shown}");
    }
}

/// Plain progress lines (`files N/M, …`) of a run.
fn progress_lines(run: &Run) -> Vec<&str> {
    run.stderr.lines().filter(|l| l.starts_with("files ")).collect()
}

#[test]
fn plain_lines_count_every_job_and_name_the_one_under_way() {
    let env = TestEnv::new(world());
    let mut cmd = env.workspace_command(["download", "job-a", "job-b", "-p", "out"]);
    cmd.env("JOBDL_PROGRESS_INTERVAL", "0s");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert!(!run.stderr.contains('\u{1b}') && !run.stderr.contains('\r'), "control characters\n{run:?}");
    let lines = progress_lines(&run);
    assert!(lines.iter().any(|l| l.ends_with(", job 1/2 job-a")), "{run}");
    assert!(lines.iter().any(|l| l.ends_with(", job 2/2 job-b")), "{run}");
    for l in &lines {
        assert!(l.contains(" B/300 B, ") && l.starts_with("files ") && l.contains("/2, "), "{l}\n{run}");
    }
    // One counter over both jobs: it never goes back.
    let done: Vec<u32> = lines.iter().filter_map(|l| l["files ".len()..].split('/').next()?.parse().ok()).collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]) && done.last() == Some(&2), "{done:?}\n{run}");
    assert!(run.stderr.contains("job job-a: 1 downloaded") && run.stderr.contains("job job-b: 1 downloaded"), "{run}");
    assert!(run.stderr.contains("downloaded 2 files (300 B) of 2 jobs"), "{run}");

    // -q: no progress; --json: the lines stay on stderr, stdout holds only the document.
    quiet_hides_and_json_keeps_progress(
        |flag| {
            let env = TestEnv::new(world());
            let mut cmd = env.workspace_command(["download", "job-a", "job-b", flag]);
            cmd.env("JOBDL_PROGRESS_INTERVAL", "0s");
            env.run_cmd(cmd)
        },
        progress_lines,
    );
}

#[test]
fn a_job_failing_after_its_gate_keeps_its_status() {
    let env = TestEnv::new(world());
    // Both jobs are Completed (the gate passes); neither declares an output named `nope`.
    let run = env.run_cmd(env.workspace_command(["download", "job-a", "job-b", "--output", "nope", "--json"]));
    run.expect_code(4);
    let jobs = run.doc()["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(jobs.len(), 2, "{run}");
    for job in &jobs {
        assert_eq!(job["status"], "Completed", "{job}\n{run}");
        assert_eq!(job["outcome"], "failed", "{job}");
        assert_eq!(job["error"]["code"], "not_found", "{job}");
    }
    // A job never read still has none.
    let run = env.run_cmd(env.workspace_command(["download", "job-a", "no-such-job", "--json"]));
    run.expect_code(6);
    let gone = run.doc()["jobs"].as_array().and_then(|j| j.iter().find(|j| j["name"] == "no-such-job").cloned());
    assert_eq!(gone.map(|j| j["status"].clone()), Some(Value::Null), "{run}");
}

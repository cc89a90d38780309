//! Output conventions: plain progress lines when stderr is not a terminal (never control
//! characters; none with -q), `-v` request lines (method, redacted URL, status, time), and
//! `--color` / `NO_COLOR` / the `color` config key for the stderr prefixes.

use crate::harness::{Run, TestEnv, quiet_hides_and_json_keeps_progress};
use crate::support::{TOKEN, standard_world};

/// A plain progress line: `files N/M, X/Y, Z/s`.
fn is_progress_line(l: &str) -> bool {
    let Some(rest) = l.strip_prefix("files ") else { return false };
    let parts: Vec<&str> = rest.split(", ").collect();
    parts.len() == 3
        && parts[0].split_once('/').is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
        && parts[1].contains('/')
        && parts[2].ends_with("/s")
}

fn progress_lines(run: &Run) -> Vec<&str> {
    run.stderr.lines().filter(|l| is_progress_line(l)).collect()
}

const ESC: char = '\u{1b}';

#[test]
fn progress_is_plain_lines_when_stderr_is_not_a_terminal() {
    let env = TestEnv::new(standard_world());
    let mut cmd = env.command(["download", "job-123"]);
    cmd.env("JOBDL_PROGRESS_INTERVAL", "0s");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    let lines = progress_lines(&run);
    assert!(!lines.is_empty(), "no progress line\n{run}");
    // The files counter never goes backwards and ends at or below the total.
    let done: Vec<(u64, u64)> = lines
        .iter()
        .filter_map(|l| {
            l["files ".len()..].split(',').next()?.split_once('/').map(|(a, b)| (a.parse().ok(), b.parse().ok()))
        })
        .filter_map(|(a, b)| Some((a?, b?)))
        .collect();
    assert!(done.windows(2).all(|w| w[0].0 <= w[1].0), "{done:?}");
    assert!(done.iter().all(|(a, b)| a <= b && *b > 0), "{done:?}");
    // Never spinner or cursor control characters on a non-terminal.
    assert!(!run.stderr.contains(ESC) && !run.stderr.contains('\r'), "control characters\n{run:?}");
    assert!(!run.stdout.contains("files "), "progress on stdout\n{run}");

    // -q: no progress at all; --json: progress stays on stderr (issue 21), stdout is the document.
    quiet_hides_and_json_keeps_progress(
        |flag| {
            let env = TestEnv::new(standard_world());
            let mut cmd = env.command(["download", "job-123", flag]);
            cmd.env("JOBDL_PROGRESS_INTERVAL", "0s");
            env.run_cmd(cmd)
        },
        progress_lines,
    );
}

#[test]
fn verbose_shows_each_request_with_status_and_time() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "-v"]);
    run.expect_code(0);
    let host = env.emu.host_port();
    let request_lines: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("jobdl: GET ")).collect();
    // The job GET (metadata) with its status and time.
    assert!(
        request_lines.iter().any(|l| l.contains(&format!("http://{host}/api/projects/"))
            && l.contains("/jobs/job-123?")
            && l.contains(" -> 200 (")
            && l.ends_with(" ms)")),
        "no job GET line\n{run}"
    );
    // Data requests of the blobs, with their status.
    let data: Vec<&&str> =
        request_lines.iter().filter(|l| l.contains("std_log.txt") && !l.contains("/jobs/")).collect();
    assert!(
        data.iter().any(|l| l.contains(" -> 200 (") || l.contains(" -> 206 (")),
        "no data request line for std_log.txt\n{run}"
    );
    let out = run.all_output();
    assert!(!out.contains(TOKEN), "token printed\n{run}");
    for l in &request_lines {
        assert!(!l.contains("sig=") || l.contains("sig=REDACTED"), "signature printed: {l}");
    }
    // Blob service calls (List Blobs of `cp`) too.
    let run = env.run(&["cp", &env.emu.container_sas_url("azureml", "ExperimentRun/dcid.job-123/logs/"), "out", "-v"]);
    run.expect_code(0);
    assert!(
        run.stderr.lines().any(|l| l.starts_with("jobdl: GET ") && l.contains("comp=list") && l.contains(" -> 200 (")),
        "no List Blobs line\n{run}"
    );
    assert!(run.stderr.lines().all(|l| !l.contains("sig=") || l.contains("sig=REDACTED")), "{run}");

    // Without -v: no request lines.
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123"]);
    assert!(!run.stderr.contains("jobdl: GET "), "{run}");
}

#[test]
fn color_flag_no_color_and_config_key() {
    let env = TestEnv::new(standard_world());
    let red = format!("{ESC}[1;31merror:{ESC}[0m");
    let run = env.run(&["show", "no-such-job", "--color", "always"]);
    run.expect_code(4);
    assert!(run.stderr.starts_with(&red), "{run:?}");
    assert!(!run.stdout.contains(ESC), "colour on stdout");

    // auto (the default) on a non-terminal: no colour; NO_COLOR does not override an explicit flag.
    let run = env.run(&["show", "no-such-job"]);
    assert!(run.stderr.starts_with("error: ") && !run.stderr.contains(ESC), "{run:?}");
    let mut cmd = env.command(["show", "no-such-job", "--color", "always"]);
    cmd.env("NO_COLOR", "1");
    assert!(env.run_cmd(cmd).stderr.starts_with(&red));

    // The config file's `color`, and a flag beating it.
    std::fs::write(env.work().join("jobdl.toml"), "color = \"always\"\n").expect("write");
    let run = env.run(&["show", "no-such-job"]);
    assert!(run.stderr.starts_with(&red), "{run:?}");
    let run = env.run(&["show", "no-such-job", "--color", "never"]);
    assert!(!run.stderr.contains(ESC), "{run:?}");
    let run = env.run(&["show", "no-such-job", "--color", "sometimes"]);
    run.expect_code(2);
}

/// `show` adds the creation time (both sources) and, for an Azure ML workspace, the studio link.
#[test]
fn show_gives_created_time_and_studio_link() {
    use crate::support::{RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, workspace_world};
    let env = TestEnv::new(standard_world());
    let run = env.run(&["show", "job-123", "--json"]);
    run.expect_code(0);
    assert_eq!(run.doc()["version"], 1);
    assert_eq!(run.doc()["job"]["created"], "2026-01-15T10:00:00Z", "{run}");
    // No studio link for a Foundry project (the reference gives none).
    assert_eq!(run.doc()["job"]["studio_url"], serde_json::Value::Null, "{run}");
    let run = env.run(&["show", "job-123"]);
    assert!(run.stdout.lines().any(|l| l.starts_with("created:") && l.ends_with("2026-01-15T10:00:00Z")), "{run}");
    assert!(!run.stdout.contains("studio:"), "{run}");

    let env = TestEnv::new(workspace_world());
    let cmd = env.workspace_command(["show", "train-1", "--json"]);
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    let want = format!(
        "https://ml.azure.com/runs/train-1?wsid=/subscriptions/{SUBSCRIPTION}/resourcegroups/{RESOURCE_GROUP}/workspaces/{WORKSPACE}"
    );
    assert_eq!(run.doc()["job"]["studio_url"], want.as_str(), "{run}");
    assert_eq!(run.doc()["job"]["created"], "2026-01-15T10:00:00Z", "{run}");
}

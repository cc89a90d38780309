//! Snapshot tests (insta) of what people and scripts read: `--help` of every command (found by
//! walking the `Commands:` sections, so a new subcommand gets a snapshot without a code change),
//! the `ls` and `show` tables, error messages and the `--json` documents, all from the built
//! binary against the emulator. Ports, the sandbox path and timings are filtered out.
//!
//! Snapshots live in `tests/snapshots/`. After an intended change, re-bless them with
//! `INSTA_UPDATE=always cargo test --test it snapshots::` and review the diff with `git diff
//! tests/snapshots`. Under `CI=true` insta never writes snapshots, so a mismatch fails.
use crate::support;

use crate::harness;

use std::path::Path;
use std::process::Command;

use harness::{Run, TestEnv};
use serde_json::Value;
use support::{standard_world, workspace_world};

/// Escapes `s` for use as a literal in a regex (insta filters are regexes).
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Settings with the filters for this environment: sandbox path, loopback ports, timings.
fn settings(env: &TestEnv) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    // Absolute, so the files stay in `tests/snapshots/` whichever directory this module sits in.
    s.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"));
    s.set_omit_expression(true);
    let sandbox = env.sandbox().to_path_buf();
    if let Ok(canonical) = sandbox.canonicalize()
        && canonical != sandbox
    {
        s.add_filter(&literal(&canonical.display().to_string()), "[SANDBOX]");
    }
    s.add_filter(&literal(&sandbox.display().to_string()), "[SANDBOX]");
    s.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    s.add_filter(r"in \d+(\.\d+)?s \(\d+(\.\d+)? [KMGT]?i?B/s\)", "in [TIME] ([RATE])");
    s.add_filter(r#""seconds": \d+(\.\d+)?"#, r#""seconds": "[SECONDS]""#);
    s
}

/// A command with a fixed help width.
fn command(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = env.command(args);
    cmd.env("COLUMNS", "100");
    cmd
}

/// Exit code, stdout and stderr of a run, as one text.
fn transcript(run: &Run) -> String {
    format!("exit code: {}\n--- stdout\n{}--- stderr\n{}", run.code, run.stdout, run.stderr)
}

/// The document with `files[]` in path order (the transfer finishes files in any order).
fn sorted(mut doc: Value) -> Value {
    if let Some(files) = doc.get_mut("files").and_then(Value::as_array_mut) {
        files.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    }
    doc
}

/// Subcommand names listed under `Commands:` in a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line.trim_end() == "Commands:" {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with("  ") {
                break;
            }
            // Continuation lines of a wrapped description are indented further.
            if line.starts_with("   ") {
                continue;
            }
            if let Some(name) = line.split_whitespace().next()
                && name != "help"
            {
                out.push(name.to_string());
            }
        }
    }
    out
}

#[test]
fn help_of_every_command() {
    let env = TestEnv::new(standard_world());
    let _guard = settings(&env).bind_to_scope();
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        // As a user with nothing configured sees it (clap shows the values of env vars).
        let mut cmd = command(&env, &args);
        cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT").env_remove("JOBDL_ALLOW_HOSTS");
        let run = env.run_cmd(cmd);
        run.expect_code(0);
        assert!(run.stderr.is_empty(), "help wrote to stderr\n{run}");
        let name = if path.is_empty() { "help".to_string() } else { format!("help_{}", path.join("_")) };
        insta::assert_snapshot!(name, run.stdout);
        seen += 1;
        for sub in subcommands(&run.stdout) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
    }
    assert!(seen >= 6, "only {seen} help texts found: the Commands: sections were not parsed");
    assert!(env.requests().is_empty(), "--help made a request");
}

#[test]
fn ls_and_show_tables() {
    let env = TestEnv::new(standard_world());
    let _guard = settings(&env).bind_to_scope();
    for (name, args) in [
        ("ls_default", vec!["ls", "job-123"]),
        ("ls_named_outputs", vec!["ls", "job-123", "--output", "metrics", "--output", "model", "--output", "report"]),
        ("ls_unsupported_output", vec!["ls", "job-123", "--output", "ckpt"]),
        ("show_completed", vec!["show", "job-123"]),
        ("show_running", vec!["show", "job-running"]),
    ] {
        let run = env.run_cmd(command(&env, &args));
        insta::assert_snapshot!(name, transcript(&run));
    }

    let env = TestEnv::new(workspace_world());
    let _guard = settings(&env).bind_to_scope();
    let mut cmd = env.workspace_command(["show", "train-1"]);
    cmd.env("COLUMNS", "100");
    let run = env.run_cmd(cmd);
    insta::assert_snapshot!("show_workspace", transcript(&run));
}

#[test]
fn error_messages() {
    let env = TestEnv::new(standard_world());
    let _guard = settings(&env).bind_to_scope();
    for (name, code, args) in [
        ("error_not_terminal", 5, vec!["download", "job-running"]),
        ("error_not_found", 4, vec!["download", "no-such-job"]),
        ("error_show_not_found", 4, vec!["show", "no-such-job"]),
        ("error_usage_glob", 2, vec!["download", "job-123", "--exclude", "logs/[a"]),
        ("error_usage_missing_job", 2, vec!["download"]),
        ("error_usage_parallel", 2, vec!["download", "job-123", "--parallel", "0"]),
        ("error_usage_cp_scheme", 2, vec!["cp", "ftp://127.0.0.1/c/b", "out"]),
    ] {
        let run = env.run_cmd(command(&env, &args));
        run.expect_code(code);
        insta::assert_snapshot!(name, transcript(&run));
    }
    let mut cmd = command(&env, &["download", "job-123"]);
    cmd.env("JOBDL_ACCESS_TOKEN", "wrong");
    let run = env.run_cmd(cmd);
    run.expect_code(3);
    insta::assert_snapshot!("error_auth", transcript(&run));
}

#[test]
fn json_documents() {
    let env = TestEnv::new(standard_world());
    let _guard = settings(&env).bind_to_scope();
    for (name, code, args) in [
        ("json_download", 0, vec!["download", "job-123", "--include", "*.txt", "--include", "model.pt*", "--json"]),
        ("json_download_failed_files", 6, vec!["download", "job-badmd5", "--json"]),
        ("json_download_unsupported_output", 6, vec!["download", "job-123", "--output", "ckpt", "-p", "p2", "--json"]),
        ("json_dry_run", 0, vec!["download", "job-123", "--output", "metrics", "--dry-run", "--json"]),
        ("json_ls", 6, vec!["ls", "job-123", "--all-outputs", "--exclude", "*.safetensors", "--json"]),
        ("json_show", 0, vec!["show", "job-123", "--json"]),
        ("json_error_not_terminal", 5, vec!["download", "job-running", "--json"]),
        ("json_error_not_found", 4, vec!["ls", "no-such-job", "--json"]),
        ("json_error_usage", 2, vec!["ls", "job-123", "--include", "a[", "--json"]),
    ] {
        let run = env.run_cmd(command(&env, &args));
        run.expect_code(code);
        insta::assert_json_snapshot!(name, sorted(run.doc().clone()));
    }
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1");
    let run = env.run_cmd(command(&env, &["cp", &url, "cp-out", "--json"]));
    run.expect_code(0);
    insta::assert_json_snapshot!("json_cp", sorted(run.doc().clone()));
}

//! Issue 21, "first contact": what a new user trips on. Each test drives the built `jobdl`
//! binary against the emulator (`tests/support`, through the CLI harness `tests/it/harness.rs`).

use crate::support;

use crate::harness;

use harness::TestEnv;
use support::standard_world;

/// The hint a refused credential gets on a Foundry project (a 401 with a chain token, or no
/// credential at all).
const PROJECT_HINT: &str =
    "hint: sign in with `az login` (or set JOBDL_ACCESS_TOKEN) with an identity that can read the project's jobs";

/// An empty directory for PATH, so that neither `az` nor `azd` is found.
fn empty_path_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("jobdl-nopath-").tempdir().expect("empty PATH dir")
}

// ---- item 1: credentials ----

#[test]
fn no_credential_at_all_is_auth_and_lists_every_source() {
    let env = TestEnv::new(standard_world());
    let bin = empty_path_dir();
    for json in [false, true] {
        let mut cmd = env.command(["download", "job-123"]);
        cmd.env_remove("JOBDL_ACCESS_TOKEN").env("PATH", bin.path());
        if json {
            cmd.arg("--json");
        }
        let run = env.run_cmd(cmd);
        run.expect_code(3);
        for source in [
            "JOBDL_ACCESS_TOKEN: not set",
            "environment service principal: not configured (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET",
            "workload identity: not configured (AZURE_FEDERATED_TOKEN_FILE not set)",
            "managed identity: not configured",
            "Azure CLI: not installed",
            "Azure Developer CLI: not installed",
        ] {
            assert!(run.stderr.contains(source), "{source:?} missing\n{run}");
        }
        assert!(run.stderr.contains(PROJECT_HINT), "{run}");
        if json {
            assert_eq!(run.doc()["error"]["code"], "auth", "{run}");
            assert_eq!(run.doc()["error"]["exit_code"], 3, "{run}");
        }
    }
    assert!(!env.dest("job-123").exists());
    // Nothing reached the service without a token.
    assert!(env.requests().is_empty(), "{:?}", env.requests());
}

#[test]
fn a_refused_access_token_names_the_variable() {
    let env = TestEnv::new(standard_world());
    let mut cmd = env.command(["download", "job-123", "--json"]);
    cmd.env("JOBDL_ACCESS_TOKEN", "an-expired-token-0123");
    let run = env.run_cmd(cmd);
    run.expect_code(3);
    assert_eq!(run.doc()["error"]["code"], "auth", "{run}");
    assert!(run.stderr.contains("refused the token in JOBDL_ACCESS_TOKEN"), "{run}");
    let hint = run.stderr.lines().find(|l| l.starts_with("hint: ")).unwrap_or_else(|| panic!("no hint\n{run}"));
    assert!(hint.contains("JOBDL_ACCESS_TOKEN is set"), "{run}");
    assert!(!hint.contains("or set JOBDL_ACCESS_TOKEN"), "{run}");
    assert!(!run.all_output().contains("an-expired-token-0123"), "{run}");
}

#[test]
fn a_refused_cp_sas_asks_for_a_valid_sas_and_never_mentions_jobs() {
    let env = TestEnv::new(standard_world());
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1").replace("FAKESIGc0nta1ner", "FAKESIGwrong");
    let run = env.run(&["cp", &url, "out", "--json"]);
    run.expect_code(3);
    assert_eq!(run.doc()["error"]["code"], "auth", "{run}");
    assert!(run.stderr.contains("hint: the URL needs a valid SAS"), "{run}");
    assert!(!run.all_output().contains("job"), "{run}");
    assert!(!run.all_output().contains("FAKESIGwrong"), "{run}");
}

// ---- item 9: exit codes and the schema ----

fn schema_validator(kind: &str) -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/jobdl-v1.schema.json");
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("schema file")).expect("schema JSON");
    schema["oneOf"] = serde_json::json!([{ "$ref": format!("#/$defs/{kind}") }]);
    jsonschema::draft202012::new(&schema).expect("valid schema")
}

#[track_caller]
fn assert_valid(kind: &str, doc: &serde_json::Value) {
    let v = schema_validator(kind);
    let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{doc} is not a valid '{kind}' document: {errors:?}");
}

#[test]
fn a_held_destination_lock_exits_7_locked() {
    let env = TestEnv::new(standard_world());
    let lock_dir = env.dest("job-123").join(".jobdl");
    std::fs::create_dir_all(&lock_dir).expect("lock dir");
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_dir.join("lock"))
        .expect("lock file");
    held.lock().expect("hold the lock");
    let run = env.run(&["download", "job-123", "--json"]);
    run.expect_code(7);
    let doc = run.doc();
    assert_eq!(doc["error"]["code"], "locked", "{run}");
    assert_eq!(doc["error"]["exit_code"], 7, "{run}");
    assert!(run.stderr.contains("--lock-timeout"), "{run}");
    assert_valid("error", doc);
    // Nothing but the lock was written.
    assert_eq!(harness::files_under(&env.dest("job-123")), harness::payload([".jobdl/lock"]));
    drop(held);
    env.run(&["download", "job-123", "--include", "*.txt"]).expect_code(0);
}

#[test]
fn config_show_json_matches_the_schema() {
    let env = TestEnv::new(standard_world());
    std::fs::write(env.work().join("jobdl.toml"), "parallel = 4\nallow_hosts = [\"a.example:8443\"]\n").unwrap();
    let mut cmd = env.command(["config", "show", "--json", "--retries", "3"]);
    cmd.env("AZURE_CLOUD", "AzureCloud");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    let doc = run.doc();
    assert_valid("config", doc);
    // Every kind of source appears.
    let kinds: std::collections::BTreeSet<&str> =
        doc["settings"].as_object().unwrap().values().filter_map(|s| s["source"]["kind"].as_str()).collect();
    assert_eq!(kinds, ["default", "env", "file", "flag"].into_iter().collect(), "{run}");
    // And the whole schema (oneOf) takes it as exactly one kind of document.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/jobdl-v1.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(jsonschema::draft202012::new(&schema).unwrap().is_valid(doc), "{run}");
}

// ---- item 4: --json keeps the human lines on stderr; --wait heartbeat ----

#[test]
fn json_keeps_the_summary_and_notes_on_stderr() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--include", "*.txt", "--json"]);
    run.expect_code(0);
    // stdout is exactly one document (the harness parses it), stderr has the human summary.
    assert_eq!(run.doc()["version"], 1);
    assert!(run.stderr.contains("downloaded ") && run.stderr.contains(" skipped, 0 failed → "), "{run}");
    assert!(!run.stdout.contains("downloaded "), "{run}");
    // -q still silences it.
    let run = env.run(&["download", "job-123", "--include", "*.txt", "--json", "-q", "-p", "q"]);
    run.expect_code(0);
    assert!(run.stderr.is_empty(), "{run}");
}

#[test]
fn wait_prints_a_heartbeat_on_every_poll_at_v() {
    let env = TestEnv::new(standard_world());
    let statuses = ["Running", "Running", "Running", "Running", "Completed"];
    env.emu.set_statuses("job-123", statuses.iter().map(|s| s.to_string()).collect());
    let run = env.run(&["download", "job-123", "--include", "*.txt", "--wait", "-v", "--json"]);
    run.expect_code(0);
    assert!(run.stderr.contains("job 'job-123' is Running; waiting…"), "{run}");
    let beats: Vec<&str> = run.stderr.lines().filter(|l| l.contains("job 'job-123' still Running after ")).collect();
    assert!(beats.len() >= 2, "{run}");
    assert!(beats.iter().all(|l| l.contains("; next check in ")), "{run}");
    // Without -v the first minutes stay quiet (one line per status change).
    env.emu.set_statuses("job-123", statuses.iter().map(|s| s.to_string()).collect());
    let run = env.run(&["download", "job-123", "--include", "*.txt", "--wait", "-p", "quiet"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("still Running"), "{run}");
    assert!(run.stderr.contains("is Running; waiting…"), "{run}");
}

// ---- item 5: filters ----

#[test]
fn include_accepts_paths_as_jobdl_prints_them() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--include", "artifacts/logs/**", "--json"]);
    run.expect_code(0);
    assert_eq!(harness::files_under(&env.dest("job-123")), harness::payload(["artifacts/logs/b.txt"]), "{run}");
    assert!(run.doc().get("notes").is_none(), "{run}");
    assert!(!run.stderr.contains("matched no file"), "{run}");
    // The same path works for ls.
    let run = env.run(&["ls", "job-123", "--include", "artifacts/logs/**", "--json"]);
    run.expect_code(0);
    assert_eq!(run.doc()["totals"]["files"], 1, "{run}");
}

#[test]
fn an_include_that_matches_nothing_is_reported() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--include", "*.nope", "--include", "user_logs/**", "--json"]);
    run.expect_code(0);
    let warning = "--include '*.nope' matched no file";
    assert!(run.stderr.contains(warning), "{run}");
    assert!(!run.stderr.contains("'user_logs/**' matched no file"), "{run}");
    let notes = run.doc()["notes"].as_array().unwrap_or_else(|| panic!("no notes\n{run}"));
    assert!(notes.iter().any(|n| n.as_str().is_some_and(|n| n.contains(warning))), "{run}");
    // cp too.
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1");
    let run = env.run(&["cp", &url, "out", "--include", "*.nope"]);
    run.expect_code(0);
    assert!(run.stderr.contains(warning), "{run}");
}

// ---- item 8: flags from other tools ----

#[test]
fn az_ml_flags_are_hidden_aliases() {
    let env = TestEnv::new(standard_world());
    let all = env.run(&["ls", "job-123", "--all", "--json"]);
    let all_outputs = env.run(&["ls", "job-123", "--all-outputs", "--json"]);
    assert_eq!(all.code, all_outputs.code, "{all}");
    assert_eq!(all.doc()["files"], all_outputs.doc()["files"], "{all}");
    let run = env.run(&["download", "job-123", "--include", "logs/**", "--download-path", "dl"]);
    run.expect_code(0);
    assert!(env.work().join("dl/artifacts/logs/b.txt").is_file(), "{run}");
    // Hidden: not in --help.
    let help = env.run(&["download", "--help"]);
    assert!(!help.stdout.contains("--download-path") && !help.stdout.contains("--all "), "{help}");
}

#[test]
fn flags_from_other_tools_get_targeted_errors() {
    let env = TestEnv::new(standard_world());
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1");
    for (args, want) in [
        (vec!["download", "-n", "job-123"], "jobdl takes the job as its first argument"),
        (vec!["download", "--name", "job-123"], "jobdl takes the job as its first argument"),
        (vec!["ls", "job-123", "--recursive"], "drop --recursive"),
        (vec!["show", "job-123", "--output", "json"], "use --json"),
        (vec!["cp", &url, "out", "-o", "json"], "use --json"),
    ] {
        let run = env.run(&args);
        run.expect_code(2);
        assert!(run.stderr.contains(want), "{args:?}: {run}");
        assert!(!run.stderr.contains("tip:"), "{args:?}: {run}");
        let mut json = args.clone();
        json.push("--json");
        let run = env.run(&json);
        run.expect_code(2);
        assert_eq!(run.doc()["error"]["code"], "usage", "{run}");
        assert!(run.doc()["error"]["message"].as_str().unwrap().contains(want), "{run}");
    }
    // `--output json` on download names az's format.
    let run = env.run(&["download", "job-123", "--output", "json"]);
    run.expect_code(4);
    assert!(run.stderr.contains("for a JSON document use --json"), "{run}");
    // azcopy's --recursive is accepted by cp, where it is what cp does anyway.
    env.run(&["cp", &url, "rec", "--recursive"]).expect_code(0);
    assert_eq!(env.run(&["cp", &url, "rec", "--skip-existing"]).code, 0);
}

#[test]
fn a_glob_as_destination_is_refused_with_a_hint() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "-p", "model*"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--include 'model*'"), "{run}");
    assert!(!env.work().join("model*").exists());
    assert!(env.requests().is_empty(), "refused before any request");
}

#[test]
fn cp_dry_run_lists_and_writes_nothing() {
    let env = TestEnv::new(standard_world());
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1");
    let run = env.run(&["cp", &url, "out", "--dry-run"]);
    run.expect_code(0);
    assert!(run.stdout.contains("acc.csv"), "{run}");
    assert!(run.stderr.contains("dry run: nothing written"), "{run}");
    assert!(!env.work().join("out").exists(), "{run}");
    let run = env.run(&["cp", &url, "out", "--dry-run", "--json"]);
    run.expect_code(0);
    assert_eq!(run.doc()["dry_run"], true, "{run}");
    assert!(run.doc()["job"].is_null(), "{run}");
    assert_valid("dry_run", run.doc());
    assert!(!env.work().join("out").exists(), "{run}");
    assert!(env.blob_gets("acc.csv").is_empty(), "no byte of a file is fetched");
}

// ---- item 12: the demo ----

/// The demo example, built once for these tests (`cargo test --test it first_contact::` does not
/// build examples).
fn demo_bin() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test exe");
            // target/<profile>/deps/first_contact-… → target/<profile>/examples/demo
            let profile_dir = exe.parent().and_then(|d| d.parent()).expect("profile dir").to_path_buf();
            let mut cmd = std::process::Command::new(env!("CARGO"));
            cmd.args(["build", "--locked", "--quiet", "--example", "demo"]).current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build --example demo");
            assert!(status.success(), "cargo build --example demo failed");
            let bin = profile_dir.join("examples").join(format!("demo{}", std::env::consts::EXE_SUFFIX));
            assert!(bin.is_file(), "{} missing", bin.display());
            bin
        })
        .clone()
}

/// A running `demo --serve`, killed on drop.
struct Demo {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn serve(stdin: std::process::Stdio) -> Demo {
        use std::io::BufRead;
        let mut child = std::process::Command::new(demo_bin())
            .args(["--serve", "--model-mib", "1"])
            .stdin(stdin)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn demo --serve");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut d = Demo { child, lines, seen: Vec::new() };
        d.until("stops the demo");
        d
    }

    /// Read stdout up to a line containing `text` (bounded by the harness's child limit).
    #[track_caller]
    fn until(&mut self, text: &str) -> String {
        loop {
            match self.lines.recv_timeout(harness::CHILD_LIMIT) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(text) {
                        return l;
                    }
                }
                Err(e) => panic!("no line with {text:?} ({e}); so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn export(&self, var: &str) -> String {
        let prefix = format!("export {var}='");
        let line = self.seen.iter().find(|l| l.starts_with(&prefix)).expect("export line");
        line[prefix.len()..].split('\'').next().unwrap_or_default().to_string()
    }

    /// `jobdl show job-demo-001` against it.
    fn show(&self) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_jobdl"))
            .args(["show", "job-demo-001"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AZURE_AI_PROJECT_ENDPOINT", self.export("AZURE_AI_PROJECT_ENDPOINT"))
            .env("JOBDL_ALLOW_HOSTS", self.export("JOBDL_ALLOW_HOSTS"))
            .env("JOBDL_ACCESS_TOKEN", support::TOKEN)
            .env("NO_PROXY", "*")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run jobdl show")
    }

    #[track_caller]
    fn wait(&mut self) -> std::process::ExitStatus {
        let started = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(started.elapsed() < harness::CHILD_LIMIT, "the demo did not stop");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn demo_help_prints_help_and_exits() {
    let out = std::process::Command::new(demo_bin()).arg("--help").output().expect("demo --help");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Usage:") && text.contains("--serve"), "{text}");
    assert!(!text.contains("demo: a Foundry project emulator is serving"), "--help ran the demo:\n{text}");
    let bad = std::process::Command::new(demo_bin()).arg("--bogus").output().expect("demo --bogus");
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

#[cfg(unix)]
#[test]
fn demo_serve_keeps_serving_with_stdin_on_dev_null_until_sigterm() {
    let mut demo = Demo::serve(std::process::Stdio::null());
    assert!(demo.seen.iter().any(|l| l.contains("outputs model, metrics, eval_report")), "{:?}", demo.seen);
    // stdin is at its end already, and the demo still serves.
    let out = demo.show();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Completed"), "{out:?}");
    assert!(demo.child.try_wait().expect("try_wait").is_none(), "the demo exited");
    // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(demo.child.id() as i32, libc::SIGTERM) }, 0);
    let status = demo.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
    demo.until("demo stopped (SIGTERM)");
}

#[test]
fn demo_serve_stops_when_its_stdin_pipe_closes() {
    let mut demo = Demo::serve(std::process::Stdio::piped());
    assert!(demo.show().status.success());
    drop(demo.child.stdin.take());
    let status = demo.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
    demo.until("demo stopped (stdin closed)");
}

#[test]
fn demo_run_removes_its_temporary_folder() {
    let tmp = tempfile::Builder::new().prefix("jobdl-demo-tmp-").tempdir().expect("tmp");
    let out = std::process::Command::new(demo_bin())
        .args(["--model-mib", "1"])
        .env("TMPDIR", tmp.path())
        .env("NO_PROXY", "*")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("demo: removed "), "{text}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("read tmp").flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "the demo left {left:?} in TMPDIR");
}

/// Item 6: a run page pasted from Azure ML studio names the run and its workspace; the URL's source
/// replaces the configured one (here a Foundry project endpoint in the environment).
#[test]
fn a_studio_run_url_downloads_that_run_from_its_workspace() {
    let env = TestEnv::new(support::workspace_world());
    let url = format!(
        "https://ml.azure.com/runs/train-1?wsid=/subscriptions/{}/resourcegroups/{}/workspaces/{}&tid=t",
        support::SUBSCRIPTION,
        support::RESOURCE_GROUP,
        support::WORKSPACE
    );
    let mut cmd = env.command(["download", url.as_str(), "--output", "default", "--json"]);
    cmd.env("JOBDL_ARM_ENDPOINT", env.emu.arm_endpoint()).env("JOBDL_STORAGE_ENDPOINT", env.emu.base_url());
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert_eq!(run.doc()["job"]["name"], "train-1", "{run}");
    assert!(env.dest("train-1").is_dir(), "the destination is named after the run, not the URL\n{run}");
    assert!(harness::files_under(&env.dest("train-1")).len() > 1, "{run}");
}

/// Item 6: a storage URL given where a job goes says to use `jobdl cp`, without its signature.
#[test]
fn a_sas_url_given_as_a_job_points_to_cp() {
    let env = TestEnv::new(standard_world());
    for cmd in ["download", "ls", "show"] {
        let run = env.run(&[cmd, "https://acct.blob.core.windows.net/c/model?sv=2025-11-05&sig=S3cretSig%3D"]);
        run.expect_code(2);
        assert!(run.stderr.contains("jobdl cp"), "{run}");
        assert!(!run.all_output().contains("S3cretSig"), "{run}");
        assert!(env.requests().is_empty(), "nothing is sent for a refused argument\n{run}");
    }
}

// ---- item 11: help and man pages ----

/// One man page per command, titled as `man` expects (`jobdl-download(1)`); the top page names
/// every source; an unknown command is a usage error naming the ones there are.
#[test]
fn every_command_has_its_own_man_page() {
    let env = TestEnv::new(standard_world());
    let top = env.run(&["man"]);
    top.expect_code(0);
    assert!(top.stdout.contains(".TH jobdl 1"), "{top:?}");
    for source in ["Azure AI Foundry", "Azure ML", "MLflow", "Kubeflow"] {
        assert!(top.stdout.contains(source), "the description names {source}");
    }
    for command in ["download", "ls", "jobs", "show", "cp", "verify", "config", "completions"] {
        let page = env.run(&["man", command]);
        page.expect_code(0);
        assert!(page.stdout.contains(&format!(".TH jobdl-{command} 1")), "{command}: {page:?}");
        assert!(page.stdout.contains(&format!("jobdl {command}")), "{command}: synopsis");
    }
    let cp = env.run(&["cp", "--help"]);
    assert!(cp.stdout.contains("s3://"), "cp's help names S3 too: {cp:?}");
    let run = env.run(&["man", "nope"]);
    run.expect_code(2);
    assert!(run.stderr.contains("no command 'nope'") && run.stderr.contains("download"), "{run:?}");
    assert!(env.requests().is_empty());
}

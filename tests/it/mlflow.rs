//! MLflow and Databricks as a job source, against a fake tracking server on loopback
//! (`tests/support/mlflow_fake.rs`): paging, hostile listings, a proxy that lies about `Range`,
//! unknown sizes, retries, credentials (present where they belong, absent elsewhere, never
//! printed), presigned URLs and the allow-list, exit codes and `--wait`.
use crate::support::mlflow_fake;

use mlflow_fake::{AuthMode, FakeConfig, FakeMlflow, FakeRun, PRESIGN_HEADER, PRESIGN_SIG, RangeMode, Seen, pattern};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(90);
const BIG: usize = 40 << 20;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})\n{self}"))
    }
    #[track_caller]
    fn expect(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |s: &str| s.chars().take(6000).collect::<String>();
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, cut(&self.stdout), cut(&self.stderr))
    }
}

/// A sandbox: `work/` is the child's working directory, `home/` its HOME.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new().prefix("jobdl-mlflow-").tempdir().unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Sandbox { dir }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    #[track_caller]
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = crate::harness::jobdl(&self.work(), &self.home());
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn jobdl");
        let pid = child.id();
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(o) => break o.expect("wait"),
                Err(_) if started.elapsed() > LIMIT => {
                    // SAFETY: kill(2) on the PID of the child this test spawned.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    panic!("jobdl did not finish within {LIMIT:?}");
                }
                Err(_) => {}
            }
        };
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Every file below `root`, as relative paths (jobdl's manifests left out).
fn files_under(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if !p.ends_with(".jobdl/manifest.json") {
                out.insert(p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out
}

fn sample_run(id: &str) -> FakeRun {
    FakeRun::new(id, "FINISHED")
        .file("README.txt", b"hello from mlflow\n".to_vec())
        .file("empty.bin", Vec::new())
        .file("logs/train log.txt", pattern(5000, 1))
        .file("données/ünï ✓.txt", "héllo ✓\n".as_bytes().to_vec())
        .file("a/b/c/d.bin", pattern(70_000, 2))
        .file("model/weights.bin", pattern(BIG, 3))
}

fn with_run(run: FakeRun, id: &str) -> FakeConfig {
    let mut cfg = FakeConfig::default();
    cfg.runs.insert(id.to_string(), run);
    cfg
}

#[track_caller]
fn assert_tree(dest: &Path, run: &FakeRun) {
    let want: BTreeSet<String> = run.files.keys().cloned().collect();
    assert_eq!(files_under(dest), want, "files under {}", dest.display());
    for (p, bytes) in &run.files {
        let got = std::fs::read(dest.join(p)).unwrap();
        assert!(got == *bytes, "{p}: {} bytes differ from the {} served", got.len(), bytes.len());
    }
}

fn data_requests(reqs: &[Seen]) -> Vec<&Seen> {
    reqs.iter().filter(|r| r.path.starts_with("/api/2.0/mlflow-artifacts/") || r.path == "/get-artifact").collect()
}

#[test]
fn a_paged_tree_downloads_byte_exact_with_the_token_and_no_azure_headers() {
    let run = sample_run("run1");
    let mut cfg = with_run(run.clone(), "run1");
    cfg.page_size = Some(2);
    cfg.size_as_string = true;
    let fake = FakeMlflow::start(cfg);
    let sb = Sandbox::new();
    let out = sb.run(&["download", "run1", "--mlflow-uri", &fake.base_url(), "--json"], &[]);
    out.expect(0);
    let doc = out.json();
    assert_eq!(doc["job"]["status"], "FINISHED");
    assert_eq!(doc["totals"]["files"], 6);
    assert_eq!(doc["totals"]["bytes"], run.files.values().map(|b| b.len() as u64).sum::<u64>());
    assert_tree(&sb.work().join("run1/artifacts"), &run);
    let reqs = fake.requests();
    assert!(
        reqs.iter().all(|r| r.header("authorization") == Some("Bearer test-token")),
        "every call carries the token"
    );
    assert!(
        reqs.iter().any(|r| r.path == "/api/2.0/mlflow/artifacts/list" && r.param("page_token").is_some()),
        "pages were followed"
    );
    let data = data_requests(&reqs);
    assert!(!data.is_empty());
    assert!(data.iter().all(|r| r.headers.iter().all(|(k, _)| !k.starts_with("x-ms-"))), "no Azure headers");
    // The 40 MiB file went in ranged chunks (the proxy honours Range).
    let big: Vec<_> = data.iter().filter(|r| r.path.ends_with("model/weights.bin")).collect();
    assert!(big.len() > 2 && big.iter().all(|r| r.status == 206), "{} requests", big.len());
}

#[test]
fn basic_and_token_credentials_are_sent_and_never_printed() {
    let run = FakeRun::new("r2", "FINISHED").file("x.txt", b"x".to_vec());
    let mut cfg = with_run(run.clone(), "r2");
    cfg.auth = AuthMode::Basic("alice".into(), "pa55-SECRET".into());
    let fake = FakeMlflow::start(cfg);
    let sb = Sandbox::new();
    let env = [("MLFLOW_TRACKING_USERNAME", "alice"), ("MLFLOW_TRACKING_PASSWORD", "pa55-SECRET")];
    let out = sb.run(&["download", "r2", "--mlflow-uri", &fake.base_url(), "-vvv"], &env);
    out.expect(0);
    assert!(!out.all().contains("pa55-SECRET") && !out.all().contains("YWxpY2U6cGE1NS1TRUNSRVQ"), "{out}");
    assert!(fake.requests().iter().all(|r| r.header("authorization").is_some_and(|a| a.starts_with("Basic "))));

    fake.set_config(|c| c.auth = AuthMode::Bearer("mlflow-tok-SECRET".into()));
    let out = sb.run(
        &["download", "r2", "--mlflow-uri", &fake.base_url(), "-vvv", "-p", "again"],
        &[("MLFLOW_TRACKING_TOKEN", "mlflow-tok-SECRET")],
    );
    out.expect(0);
    assert!(!out.all().contains("mlflow-tok-SECRET"), "{out}");
    assert_eq!(std::fs::read(sb.work().join("again/artifacts/x.txt")).unwrap(), b"x");
}

#[test]
fn refused_credentials_exit_3_missing_runs_and_paths_exit_4() {
    let run = sample_run("r3");
    let mut cfg = with_run(run, "r3");
    cfg.auth = AuthMode::Bearer("another-token".into());
    let fake = FakeMlflow::start(cfg);
    let sb = Sandbox::new();
    let uri = fake.base_url();
    let out = sb.run(&["download", "r3", "--mlflow-uri", &uri, "--json"], &[]);
    out.expect(3);
    assert_eq!(out.json()["error"]["code"], "auth");
    // The refused credential is named where it came from (here the sandbox's JOBDL_ACCESS_TOKEN).
    assert!(out.stderr.contains("refused the credentials from JOBDL_ACCESS_TOKEN"), "{out}");
    let out = sb.run(&["download", "r3", "--mlflow-uri", &uri], &[("MLFLOW_TRACKING_TOKEN", "stale-token-123")]);
    out.expect(3);
    assert!(out.stderr.contains("refused the credentials from MLFLOW_TRACKING_TOKEN"), "{out}");
    assert!(!out.stderr.contains("stale-token-123"), "{out}");
    fake.set_config(|c| c.auth = AuthMode::Bearer("test-token".into()));
    let out = sb.run(&["download", "no-such-run", "--mlflow-uri", &uri, "--json"], &[]);
    out.expect(4);
    assert_eq!(out.json()["error"]["code"], "not_found");
    sb.run(&["download", "r3", "--mlflow-uri", &uri, "--output", "nothing/here"], &[]).expect(4);
    assert!(!sb.work().join("r3").exists() || files_under(&sb.work().join("r3")).is_empty());
    // A tracking URI that is not a server, or plain http to a remote host: usage errors.
    sb.run(&["show", "r3", "--mlflow-uri", "file:///tmp/mlruns"], &[]).expect(2);
    sb.run(&["show", "r3", "--mlflow-uri", "http://mlflow.invalid:5000"], &[]).expect(2);
}

#[test]
fn hostile_listing_entries_fail_alone_and_nothing_lands_outside() {
    let mut run = FakeRun::new("r4", "FINISHED").file("ok.txt", b"ok".to_vec()).file("logs/a.txt", b"a".to_vec());
    run.extra_entries.insert(
        String::new(),
        vec![
            serde_json::json!({"path": "../evil.txt", "is_dir": false, "file_size": 3}),
            serde_json::json!({"path": "/abs.txt", "is_dir": false, "file_size": 3}),
            serde_json::json!({"is_dir": false, "file_size": 3}),
        ],
    );
    run.extra_entries.insert(
        "logs".into(),
        vec![
            serde_json::json!({"path": "elsewhere/x.txt", "is_dir": false, "file_size": 1}),
            serde_json::json!({"path": "logs", "is_dir": true}),
            serde_json::json!({"path": "logs/../../up.txt", "is_dir": false, "file_size": 1}),
            serde_json::json!({"path": "logs/loop", "is_dir": true}),
        ],
    );
    run.extra_entries.insert("logs/loop".into(), vec![serde_json::json!({"path": "logs/loop", "is_dir": true})]);
    let fake = FakeMlflow::start(with_run(run, "r4"));
    let sb = Sandbox::new();
    let out = sb.run(&["download", "r4", "--mlflow-uri", &fake.base_url(), "--json"], &[]);
    out.expect(6);
    let doc = out.json();
    assert_eq!(doc["totals"]["downloaded"], 2, "{out}");
    assert_eq!(
        files_under(sb.dir.path()),
        ["work/r4/artifacts/ok.txt", "work/r4/artifacts/logs/a.txt"].iter().map(|s| s.to_string()).collect()
    );
    let data = fake.requests();
    assert!(data_requests(&data).iter().all(|r| !r.path.contains("..") && !r.path.contains("evil")));
    // The self-listing directories were listed once each, not forever.
    let loops = data.iter().filter(|r| r.param("path").as_deref() == Some("logs/loop")).count();
    assert_eq!(loops, 1);
}

#[test]
fn a_repeating_page_token_stops_the_listing() {
    let mut cfg = with_run(sample_run("r5"), "r5");
    cfg.page_size = Some(1);
    cfg.repeat_token = true;
    let fake = FakeMlflow::start(cfg);
    let sb = Sandbox::new();
    let out = sb.run(&["download", "r5", "--mlflow-uri", &fake.base_url()], &[]);
    out.expect(1);
    assert!(out.stderr.contains("repeated a next_page_token"), "{out}");
    assert!(fake.requests().len() < 10);
}

#[test]
fn a_proxy_that_ignores_range_is_read_as_one_stream() {
    for omit_sizes in [false, true] {
        let run = FakeRun::new("r6", "FINISHED").file("big.bin", pattern(BIG, 7)).file("small.txt", pattern(3000, 8));
        let mut cfg = with_run(run.clone(), "r6");
        cfg.range = RangeMode::Ignore200;
        cfg.omit_sizes = omit_sizes;
        let fake = FakeMlflow::start(cfg);
        let sb = Sandbox::new();
        let out = sb.run(&["download", "r6", "--mlflow-uri", &fake.base_url(), "--json"], &[]);
        out.expect(0);
        assert_tree(&sb.work().join("r6/artifacts"), &run);
        let reqs = fake.requests();
        let big: Vec<_> = data_requests(&reqs).into_iter().filter(|r| r.path.ends_with("big.bin")).cloned().collect();
        // One ranged attempt answered 200 (never stitched), then one plain stream.
        assert_eq!(big.len(), 2, "omit_sizes={omit_sizes}: {big:?}");
        assert!(big[0].header("range").is_some() && big[1].header("range").is_none());
        assert!(big.iter().all(|r| r.status == 200));
    }
}

#[test]
fn a_206_with_the_wrong_content_range_is_never_stitched_in() {
    let run = FakeRun::new("r6b", "FINISHED").file("big.bin", pattern(BIG, 5));
    let mut cfg = with_run(run.clone(), "r6b");
    cfg.range = RangeMode::Whole206;
    let fake = FakeMlflow::start(cfg);
    let sb = Sandbox::new();
    let out = sb.run(&["download", "r6b", "--mlflow-uri", &fake.base_url(), "-vv"], &[]);
    out.expect(0);
    assert!(out.stderr.contains("does not match the requested bytes"), "{out}");
    assert_tree(&sb.work().join("r6b/artifacts"), &run);
    let reqs = fake.requests();
    let big: Vec<_> = data_requests(&reqs).into_iter().filter(|r| r.header("range").is_none()).collect();
    assert_eq!(big.len(), 1, "one plain stream after the bad 206");
}

#[test]
fn unknown_sizes_are_learned_from_the_server() {
    let run = sample_run("r7");
    let mut cfg = with_run(run.clone(), "r7");
    cfg.omit_sizes = true;
    let fake = FakeMlflow::start(cfg);
    let sb = Sandbox::new();
    let out = sb.run(&["download", "r7", "--mlflow-uri", &fake.base_url(), "--json"], &[]);
    out.expect(0);
    assert_tree(&sb.work().join("r7/artifacts"), &run);
    let reqs = fake.requests();
    let big = data_requests(&reqs).into_iter().filter(|r| r.path.ends_with("weights.bin")).count();
    assert!(big > 2, "the probe's Content-Range told the size and the rest went in chunks ({big})");
    // ls shows what it knows without probing other hosts.
    let out = sb.run(&["ls", "r7", "--mlflow-uri", &fake.base_url(), "--json"], &[]);
    out.expect(0);
}

#[test]
fn throttling_and_server_errors_are_retried() {
    let run = FakeRun::new("r8", "FINISHED").file("a.txt", pattern(1000, 1)).file("d/b.txt", pattern(2000, 2));
    let mut cfg = with_run(run.clone(), "r8");
    cfg.faults.insert("runs".into(), vec![503, 502]);
    cfg.faults.insert("list".into(), vec![429, 500]);
    cfg.faults.insert("data".into(), vec![500, 429, 503]);
    let fake = FakeMlflow::start(cfg);
    let sb = Sandbox::new();
    let out = sb.run(&["download", "r8", "--mlflow-uri", &fake.base_url()], &[]);
    out.expect(0);
    assert_tree(&sb.work().join("r8/artifacts"), &run);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    for s in [429, 500, 502, 503] {
        assert!(statuses.contains(&s), "{s} was served");
    }
}

#[test]
fn a_running_run_exits_5_and_wait_polls_until_it_finishes() {
    let mut cfg = with_run(FakeRun::new("r9", "RUNNING").file("a.txt", b"a".to_vec()), "r9");
    let mut waiting = FakeRun::new("r10", "SCHEDULED").file("a.txt", b"a".to_vec());
    waiting.statuses = vec!["SCHEDULED".into(), "RUNNING".into(), "RUNNING".into(), "FINISHED".into()];
    cfg.runs.insert("r10".into(), waiting);
    let fake = FakeMlflow::start(cfg);
    let sb = Sandbox::new();
    let uri = fake.base_url();
    let out = sb.run(&["download", "r9", "--mlflow-uri", &uri, "--json"], &[]);
    out.expect(5);
    assert_eq!(out.json()["error"]["code"], "job_not_terminal");
    assert!(out.all().contains("FINISHED, FAILED, KILLED"), "{out}");
    assert!(!sb.work().join("r9").exists(), "nothing written before the gate");
    let out = sb.run(&["download", "r9", "--mlflow-uri", &uri, "--wait", "--timeout", "1s"], &[]);
    out.expect(5);
    let out = sb.run(&["download", "r10", "--mlflow-uri", &uri, "--wait"], &[]);
    out.expect(0);
    let polls = fake.requests().iter().filter(|r| r.param("run_id").as_deref() == Some("r10")).count();
    assert!(polls >= 4, "{polls} polls");
    assert_eq!(std::fs::read(sb.work().join("r10/artifacts/a.txt")).unwrap(), b"a");
    // A finished-but-failed run is terminal: its artifacts download.
    fake.set_config(|c| c.runs.get_mut("r9").unwrap().statuses = vec!["FAILED".into()]);
    sb.run(&["download", "r9", "--mlflow-uri", &uri], &[]).expect(0);
}

#[test]
fn an_output_path_is_a_sub_tree_under_named_outputs() {
    let run = sample_run("r11");
    let fake = FakeMlflow::start(with_run(run, "r11"));
    let sb = Sandbox::new();
    let uri = fake.base_url();
    let out = sb.run(&["download", "r11", "--mlflow-uri", &uri, "--output", "a/b/", "--output", "logs", "--json"], &[]);
    out.expect(0);
    let got = files_under(&sb.work().join("r11"));
    let want: BTreeSet<String> =
        ["named-outputs/a/b/c/d.bin", "named-outputs/logs/train log.txt"].iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want);
    assert_eq!(std::fs::read(sb.work().join("r11/named-outputs/a/b/c/d.bin")).unwrap(), pattern(70_000, 2));
    // ls names the nested output as asked for.
    let out = sb.run(&["ls", "r11", "--mlflow-uri", &uri, "--output", "a/b", "--json"], &[]);
    out.expect(0);
    let doc = out.json();
    assert_eq!(doc["files"][0]["output"], "a/b", "{out}");
    assert_eq!(doc["files"][0]["path"], "c/d.bin", "{out}");
    // An unsafe output path fails without a request for it.
    let out = sb.run(&["download", "r11", "--mlflow-uri", &uri, "--output", "../x", "-p", "o2"], &[]);
    assert_ne!(out.code, 0, "{out}");
    assert!(fake.requests().iter().all(|r| r.param("path").is_none_or(|p| !p.contains(".."))));
}

#[test]
fn a_registered_model_version_of_the_run_is_a_named_output() {
    let run = sample_run("r13");
    let mut cfg = with_run(run, "r13");
    let mv = |run: &str, source: &str| (run.to_string(), source.to_string());
    cfg.model_versions.insert(("clf".into(), "1".into()), mv("r13", "runs:/r13/model"));
    cfg.model_versions.insert(("clf".into(), "2".into()), mv("r13", "mlflow-artifacts:/1/r13/artifacts/a/b"));
    cfg.model_versions.insert(("clf".into(), "3".into()), mv("other-run", "runs:/other-run/model"));
    cfg.model_versions.insert(("clf".into(), "4".into()), mv("r13", "models:/m-0123456789"));
    let fake = FakeMlflow::start(cfg);
    let sb = Sandbox::new();
    let uri = fake.base_url();
    let out = sb
        .run(&["download", "r13", "--mlflow-uri", &uri, "--output", "models:/clf/1", "--output", "models:/clf/2"], &[]);
    out.expect(0);
    let got = files_under(&sb.work().join("r13"));
    let want: BTreeSet<String> = ["named-outputs/models/clf/1/weights.bin", "named-outputs/models/clf/2/c/d.bin"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
    assert_eq!(std::fs::read(sb.work().join("r13/named-outputs/models/clf/1/weights.bin")).unwrap(), pattern(BIG, 3));
    // Another run's version, or one stored outside the run's artifacts, fails that output (exit 6).
    for v in ["3", "4"] {
        let spec = format!("models:/clf/{v}");
        let out = sb.run(&["download", "r13", "--mlflow-uri", &uri, "--output", &spec, "-p", v], &[]);
        out.expect(6);
        assert!(out.stderr.contains("other-run") || out.stderr.contains("not inside run"), "{out}");
    }
    // An unknown version: exit 4.
    sb.run(&["download", "r13", "--mlflow-uri", &uri, "--output", "models:/clf/9", "-p", "9"], &[]).expect(4);
}

#[test]
fn ls_and_show_describe_the_run() {
    let run = sample_run("r12");
    let fake = FakeMlflow::start(with_run(run, "r12"));
    let sb = Sandbox::new();
    let uri = fake.base_url();
    let out = sb.run(&["show", "r12", "--mlflow-uri", &uri, "--json"], &[]);
    out.expect(0);
    let doc = out.json();
    assert_eq!(doc["job"]["status"], "FINISHED");
    assert_eq!(doc["job"]["type"], "MLflow run 'fake-run' in experiment 1");
    assert_eq!(doc["outputs"][0]["uri"], "mlflow-artifacts:/1/r12/artifacts");
    let out = sb.run(&["ls", "r12", "--mlflow-uri", &uri], &[]);
    out.expect(0);
    assert!(out.stdout.contains("model/weights.bin") && out.stdout.contains("6 files"), "{out}");
    assert!(!sb.work().join("r12").exists(), "ls writes nothing");
}

/// Databricks: a tracking fake handing out presigned URLs to `storage`.
fn databricks(presign_base: Option<String>) -> (FakeMlflow, FakeRun) {
    let run = FakeRun::new("dbr1", "FINISHED")
        .file("model/w.bin", pattern(BIG, 9))
        .file("logs/a b.txt", b"log".to_vec())
        .file("empty.txt", Vec::new());
    let mut cfg = with_run(run.clone(), "dbr1");
    cfg.auth = AuthMode::Bearer("dapi-SECRET".into());
    cfg.presign_base = presign_base;
    cfg.page_size = Some(1);
    cfg.creds_page_size = Some(2);
    (FakeMlflow::start(cfg), run)
}

fn storage_for(run: &FakeRun, bind: &str) -> FakeMlflow {
    let cfg = FakeConfig { auth: AuthMode::Open, ..FakeConfig::default() };
    let s = FakeMlflow::start_on(bind, cfg);
    for (p, b) in &run.files {
        s.store(p, b.clone());
    }
    s
}

#[test]
fn databricks_presigned_urls_get_their_headers_and_never_the_token() {
    let storage = storage_for(&sample_run("x"), "127.0.0.1:0");
    let (tracking, run) = databricks(Some(storage.base_url()));
    for (p, b) in &run.files {
        storage.store(p, b.clone());
    }
    let sb = Sandbox::new();
    let env = [("DATABRICKS_HOST", tracking.base_url()), ("DATABRICKS_TOKEN", "dapi-SECRET".to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let allow = storage.host_port();
    // The first presigned read is refused (an expired URL): a fresh one is asked for, once.
    storage.fault("presigned", &[403]);
    let out =
        sb.run(&["download", "dbr1", "--mlflow-uri", "databricks", "--allow-host", &allow, "-vvv", "--json"], &env);
    out.expect(0);
    let creds = tracking.requests().into_iter().filter(|r| r.path.ends_with("credentials-for-read")).count();
    assert!(creds >= 3, "two pages of credentials, then one refresh ({creds})");
    assert_tree(&sb.work().join("dbr1/artifacts"), &run);
    for secret in [PRESIGN_SIG, "dapi-SECRET", PRESIGN_HEADER.1] {
        assert!(!out.all().contains(secret), "{secret} printed\n{out}");
    }
    let sreqs = storage.requests();
    assert!(!sreqs.is_empty());
    // (An empty file of unknown size answers the ranged probe with 416, then streams.)
    assert!(sreqs.iter().all(|r| r.header("authorization").is_none()), "{sreqs:?}");
    assert_eq!(sreqs.iter().filter(|r| r.status == 403).count(), 1);
    assert!(sreqs.iter().all(|r| r.header(PRESIGN_HEADER.0) == Some(PRESIGN_HEADER.1)));
    assert!(tracking.requests().iter().all(|r| r.header("authorization") == Some("Bearer dapi-SECRET")));
    assert!(data_requests(&tracking.requests()).is_empty(), "no byte went through the proxy");

    // Without --allow-host the presigned host is refused: those files fail, no request is made.
    let before = storage.requests().len();
    let out = sb.run(&["download", "dbr1", "--mlflow-uri", "databricks", "-p", "no-allow"], &env);
    out.expect(6);
    assert!(out.stderr.contains("presigned URL not allowed"), "{out}");
    assert_eq!(storage.requests().len(), before);
}

#[test]
fn databricks_presigned_urls_to_foreign_hosts_are_refused_without_a_request() {
    let run = sample_run("x");
    let sentinel = storage_for(&run, "127.0.0.2:0");
    for base in [sentinel.base_url(), "https://files.invalid".to_string()] {
        let (tracking, _) = databricks(Some(base.clone()));
        let sb = Sandbox::new();
        let env = [("DATABRICKS_HOST", tracking.base_url()), ("DATABRICKS_TOKEN", "dapi-SECRET".to_string())];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // Even with the loopback storage port listed, 127.0.0.2 is another host.
        let allow = format!("127.0.0.1:{}", sentinel.host_port().rsplit(':').next().unwrap());
        let out = sb.run(&["download", "dbr1", "--mlflow-uri", "databricks", "--allow-host", &allow, "--json"], &env);
        out.expect(6);
        assert_eq!(out.json()["totals"]["failed"], 3, "{base}: {out}");
        assert!(!out.all().contains(PRESIGN_SIG));
    }
    assert!(sentinel.requests().is_empty(), "the sentinel was contacted");
}

#[test]
fn databricks_without_presigned_urls_reads_through_the_proxy() {
    let (tracking, run) = databricks(None);
    let sb = Sandbox::new();
    std::fs::write(
        sb.home().join(".databrickscfg"),
        format!(
            "[DEFAULT]\nhost = https://unused.invalid\n\n[ws]\nhost = {}\ntoken = dapi-SECRET\n",
            tracking.base_url()
        ),
    )
    .unwrap();
    let out = sb.run(&["download", "dbr1", "--mlflow-uri", "databricks://ws", "--json"], &[]);
    out.expect(0);
    assert_tree(&sb.work().join("dbr1/artifacts"), &run);
    let reqs = tracking.requests();
    assert!(reqs.iter().any(|r| r.path.ends_with("credentials-for-read") && r.status == 404));
    assert!(data_requests(&reqs).iter().all(|r| r.header("authorization") == Some("Bearer dapi-SECRET")));
    assert!(!out.all().contains("dapi-SECRET"));
}

#[test]
fn databricks_oauth_m2m_fetches_a_token_once() {
    let run = FakeRun::new("dbr2", "FINISHED").file("a.txt", b"a".to_vec()).file("b/c.txt", b"c".to_vec());
    let mut cfg = with_run(run.clone(), "dbr2");
    cfg.auth = AuthMode::Bearer("oauth-access-tok".into());
    cfg.oauth = Some(("sp-id".into(), "sp-SECRET".into(), "oauth-access-tok".into()));
    let tracking = FakeMlflow::start(cfg);
    let sb = Sandbox::new();
    let host = tracking.base_url();
    let env = [
        ("DATABRICKS_HOST", host.as_str()),
        ("DATABRICKS_CLIENT_ID", "sp-id"),
        ("DATABRICKS_CLIENT_SECRET", "sp-SECRET"),
    ];
    let out = sb.run(&["download", "dbr2", "--mlflow-uri", "databricks", "-vvv"], &env);
    out.expect(0);
    assert_tree(&sb.work().join("dbr2/artifacts"), &run);
    assert!(!out.all().contains("sp-SECRET") && !out.all().contains("oauth-access-tok"), "{out}");
    let tokens = tracking.requests().iter().filter(|r| r.path == "/oidc/v1/token").count();
    assert_eq!(tokens, 1);
    // A wrong secret is an authentication failure (exit 3).
    let env =
        [("DATABRICKS_HOST", host.as_str()), ("DATABRICKS_CLIENT_ID", "sp-id"), ("DATABRICKS_CLIENT_SECRET", "nope")];
    sb.run(&["download", "dbr2", "--mlflow-uri", "databricks", "-p", "o2"], &env).expect(3);
}

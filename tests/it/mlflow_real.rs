//! jobdl against a real MLflow tracking server (`mlflow server --serve-artifacts`, sqlite backend,
//! local artifact destination) on loopback. The run is logged by MLflow's own Python client
//! (`tests/mlflow/log_run.py`): nested directories, unicode and space names, an empty file and a
//! big generated file (chunked path). Needs `JOBDL_MLFLOW_PYTHON` (the venv python that `.ci/run`
//! installs the pinned mlflow into); without it the test is skipped, except under `CI=true`,
//! where it fails.
//!
//! One test function runs every scenario against one server, which is started in its own process
//! group and killed (the whole group: the server spawns workers) by a guard when the test ends.
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Size of the big artifact (MiB); `JOBDL_MLFLOW_BIG_MIB` overrides (the bench uses more).
const BIG_MIB: u64 = 256;

/// The `mlflow server` process group; killed on drop.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(python: &Path, dir: &Path) -> Server {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(python)
            .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "2"])
            .arg("--serve-artifacts")
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .current_dir(dir)
            .env("MLFLOW_ENABLE_TELEMETRY", "false")
            .env("DO_NOT_TRACK", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        let mut server = Server { child, port, log };
        server.wait_healthy(Duration::from_secs(180));
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_healthy(&mut self, limit: Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("mlflow server exited ({status}) before it was healthy:\n{}", self.tail());
            }
            if http_get_status(self.port, "/health") == Some(200) {
                return;
            }
            assert!(started.elapsed() < limit, "mlflow server not healthy after {limit:?}:\n{}", self.tail());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        s.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: signals to the process group this test created (process_group(0): pgid == pid).
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above; the workers may outlive the parent's exit.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// `GET path` over plain HTTP/1.0; the status code.
fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Log a run with `log_run.py`; returns its `run_id` and the directory of the logged files.
fn log_run(python: &Path, uri: &str, work: &Path, big_mib: u64, extra: &[&std::ffi::OsStr]) -> (String, PathBuf) {
    std::fs::create_dir_all(work).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mlflow/log_run.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg(uri).arg(work).arg(big_mib.to_string()).args(extra);
    let out = cmd.env("MLFLOW_ENABLE_TELEMETRY", "false").env("DO_NOT_TRACK", "1").output().expect("run log_run.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "log_run.py failed\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).expect("a JSON line from log_run.py");
    let v: Value = serde_json::from_str(line).unwrap();
    (v["run_id"].as_str().unwrap().to_string(), work.join("src"))
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{:.6000}\n--- stderr\n{:.6000}", self.code, self.stdout, self.stderr)
    }
}

fn jobdl(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = crate::harness::jobdl(cwd, cwd);
    cmd.args(args);
    cmd
}

#[track_caller]
fn run(cwd: &Path, args: &[&str]) -> Out {
    let out = jobdl(cwd, args).output().expect("run jobdl");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Relative path → size of every file below `root`.
fn tree(root: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if p.ends_with(".jobdl/manifest.json") {
                // jobdl's record of the run (tests/it/manifest.rs checks it).
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), e.metadata().unwrap().len());
            }
        }
    }
    out
}

#[track_caller]
fn same_bytes(a: &Path, b: &Path) {
    let (mut fa, mut fb) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        assert_eq!(na, nb, "{} and {} differ in length near byte {offset}", a.display(), b.display());
        if na == 0 {
            return;
        }
        assert!(ba[..na] == bb[..nb], "{} differs from {} in the MiB at byte {offset}", b.display(), a.display());
        offset += na as u64;
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

#[track_caller]
fn same_tree(src: &Path, dest: &Path) {
    let (want, got) = (tree(src), tree(dest));
    assert_eq!(got, want, "file names and sizes");
    for rel in want.keys() {
        same_bytes(&src.join(rel), &dest.join(rel));
    }
}

#[test]
fn a_real_mlflow_run_downloads_byte_exact() {
    // `JOBDL_MLFLOW_PYTHON`, else the venv `.ci/run` makes (`.ci/mlflow/venv`).
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/mlflow/venv/bin/python");
    let python = match std::env::var_os("JOBDL_MLFLOW_PYTHON").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None if local.is_file() => local,
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but mlflow is not installed (JOBDL_MLFLOW_PYTHON unset, no .ci/mlflow/venv): .ci/run installs it"
            );
            eprintln!(
                "skipped: mlflow not installed (run .ci/run, or set JOBDL_MLFLOW_PYTHON to a python with mlflow)"
            );
            return;
        }
    };
    let big_mib = std::env::var("JOBDL_MLFLOW_BIG_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(BIG_MIB);
    let tmp = tempfile::Builder::new().prefix("jobdl-mlflow-real-").tempdir().unwrap();
    let server = Server::start(&python, tmp.path());
    let uri = server.url();
    // Its `model` directory is also registered as versions 1 (`runs:/…`) and 2 (artifact location).
    let register = ["--register".as_ref(), "jobdl-model".as_ref()];
    let (run_id, src) = log_run(&python, &uri, &tmp.path().join("logged"), big_mib, &register);
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();

    // show and ls see the finished run and its tree (the empty file has no size in the listing).
    let out = run(&work, &["show", &run_id, "--mlflow-uri", &uri, "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["job"]["status"], "FINISHED", "{out}");
    assert!(doc["outputs"][0]["uri"].as_str().unwrap().starts_with("mlflow-artifacts:/"), "{out}");
    // `jobs` finds it through experiments/search and runs/search.
    let out = run(&work, &["jobs", "--mlflow-uri", &uri, "--status", "completed", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["jobs"][0]["name"], run_id.as_str(), "{out}");
    assert_eq!(doc["jobs"][0]["status"], "FINISHED", "{out}");
    assert!(doc["jobs"][0]["created"].is_string(), "{out}");
    let out = run(&work, &["ls", &run_id, "--mlflow-uri", &uri, "--json"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("model/weights.bin") && out.stdout.contains("données/ünïcode ✓.txt"), "{out}");

    // The whole tree, byte-exact, with a --json summary.
    let out = run(&work, &["download", &run_id, "--mlflow-uri", &uri, "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["totals"]["files"].as_u64(), Some(tree(&src).len() as u64), "{out}");
    assert_eq!(doc["totals"]["failed"], 0);
    same_tree(&src, &work.join(&run_id).join("artifacts"));
    assert_eq!(tree(&work.join(&run_id)).len(), tree(&src).len(), "nothing else in the destination");

    // One sub-tree as a named output.
    let out = run(&work, &["download", &run_id, "--mlflow-uri", &uri, "--output", "logs", "-p", "logs-only"]);
    assert_eq!(out.code, 0, "{out}");
    same_tree(&src.join("logs"), &work.join("logs-only/named-outputs/logs"));

    // Registered model versions of the run, with both source forms.
    let out = run(&work, &["download", &run_id, "--mlflow-uri", &uri, "--output", "models:/jobdl-model/1"]);
    assert_eq!(out.code, 0, "{out}");
    let out = run(&work, &["download", &run_id, "--mlflow-uri", &uri, "--output", "models:/jobdl-model/2"]);
    assert_eq!(out.code, 0, "{out}");
    for v in ["1", "2"] {
        same_tree(&src.join("model"), &work.join(&run_id).join("named-outputs/models/jobdl-model").join(v));
    }

    // Interrupted mid-file, then resumed: the rerun finishes the same bytes.
    let dest = work.join("resume");
    let mut child = jobdl(&work, &["download", &run_id, "--mlflow-uri", &uri, "-p", "resume", "--parallel", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = dest.join("artifacts/model/.weights.bin.jobdl-state");
    let started = Instant::now();
    let mut interrupted = false;
    while started.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if state.exists() {
            // SAFETY: SIGKILL to the jobdl child this test spawned (a crash, not a clean stop).
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            interrupted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.wait();
    let out = run(&work, &["download", &run_id, "--mlflow-uri", &uri, "-p", "resume", "-vv"]);
    assert_eq!(out.code, 0, "{out}");
    if interrupted {
        assert!(out.stderr.contains("resuming"), "the rerun resumed the big file\n{out}");
    } else {
        eprintln!("note: the first run finished before it could be interrupted; resume not exercised");
    }
    same_tree(&src, &dest.join("artifacts"));

    // A run that is still RUNNING: exit 5 without --wait, nothing written.
    let (running, _) = log_run(&python, &uri, &tmp.path().join("running"), 0, &["--leave-running".as_ref()]);
    let out = run(&work, &["download", &running, "--mlflow-uri", &uri, "--json"]);
    assert_eq!(out.code, 5, "{out}");
    assert!(out.stdout.contains("job_not_terminal") && out.stdout.contains("RUNNING"), "{out}");
    assert!(!work.join(&running).exists());
    let out = run(&work, &["download", &running, "--mlflow-uri", &uri, "--wait", "--timeout", "1s"]);
    assert_eq!(out.code, 5, "{out}");

    // A run whose artifact root is a plain directory (`file:`), not the proxy: the bytes come
    // through the server's own /get-artifact route, ranged chunks included.
    let direct = tmp.path().join("direct-artifacts");
    let (direct_run, direct_src) =
        log_run(&python, &uri, &tmp.path().join("direct"), 40, &["--direct".as_ref(), direct.as_os_str()]);
    let out = run(&work, &["show", &direct_run, "--mlflow-uri", &uri, "--json"]);
    assert!(out.stdout.contains("file://"), "{out}");
    let out = run(&work, &["download", &direct_run, "--mlflow-uri", &uri, "-p", "direct"]);
    assert_eq!(out.code, 0, "{out}");
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    let ranged = log.lines().any(|l| l.contains("GET /get-artifact?") && l.contains(" 206"));
    assert!(ranged, "ranged reads through /get-artifact in the server's access log:\n{}", server.tail());
    same_tree(&direct_src, &work.join("direct/artifacts"));

    // A run id the server does not know: exit 4.
    let out = run(&work, &["download", "0123456789abcdef0123456789abcdef", "--mlflow-uri", &uri]);
    assert_eq!(out.code, 4, "{out}");

    best_checkpoint(&python, &uri, tmp.path(), &work);
    children_and_top(&python, &uri, tmp.path(), &work);
    drop(server);
}

/// `download --best`: a run with a loss and an accuracy history and one checkpoint folder per
/// step; only the best step's folder is fetched, and the choice is reported.
fn best_checkpoint(python: &Path, uri: &str, tmp: &Path, work: &Path) {
    let (run_id, src) = log_run(python, uri, &tmp.join("checkpoints"), 0, &["--checkpoints".as_ref()]);
    let out = run(work, &["download", &run_id, "--mlflow-uri", uri, "--best", "loss:min", "-p", "best-loss", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        doc["best"],
        serde_json::json!({"metric": "loss", "goal": "min", "step": 200, "value": 0.25,
                           "folder": "artifacts/checkpoints/checkpoint-200"}),
        "{out}"
    );
    assert!(out.stderr.contains("step 200") && out.stderr.contains("checkpoint-200"), "{out}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/jobdl-v1.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let errors: Vec<String> =
        jsonschema::draft202012::new(&schema).unwrap().iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{out}");
    let dest = work.join("best-loss");
    assert_eq!(
        tree(&dest).into_keys().collect::<Vec<_>>(),
        ["artifacts/checkpoints/checkpoint-200/model.bin", "artifacts/checkpoints/checkpoint-200/trainer_state.json"],
        "{out}"
    );
    same_tree(&src.join("checkpoints/checkpoint-200"), &dest.join("artifacts/checkpoints/checkpoint-200"));

    // The other end of another metric.
    let out = run(work, &["download", &run_id, "--mlflow-uri", uri, "--best", "accuracy:max", "-p", "best-acc"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(work.join("best-acc/artifacts/checkpoints/checkpoint-300/model.bin").is_file(), "{out}");
    assert!(!work.join("best-acc/artifacts/checkpoints/checkpoint-400").exists(), "{out}");

    // A metric the run never logged: exit 4, nothing written.
    let out = run(work, &["download", &run_id, "--mlflow-uri", uri, "--best", "no_such_metric:min", "-p", "none"]);
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stderr.contains("no_such_metric") && out.stderr.contains("no logged value"), "{out}");
    assert!(!work.join("none").exists(), "{out}");
}

/// `download --children` and `--top K --metric`: a parent run with nested child runs (MLflow's
/// `mlflow.parentRunId` tag), found by `runs/search` on the real server.
fn children_and_top(python: &Path, uri: &str, tmp: &Path, work: &Path) {
    let (parent, _) = log_run(python, uri, &tmp.join("sweep"), 0, &["--sweep".as_ref()]);
    let out = run(work, &["download", &parent, "--mlflow-uri", uri, "--children", "-p", "kids", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let kids = work.join("kids");
    // Six children; the two named `twin` are told apart by id order (`twin`, `twin-2`).
    let folders: Vec<String> = tree(&kids).into_keys().collect();
    let mut names: Vec<&str> = folders.iter().filter_map(|f| f.strip_suffix("/artifacts/model.txt")).collect();
    names.sort();
    assert_eq!(names, ["trial-a", "trial-b", "trial-c", "trial-d", "twin", "twin-2"], "{out}");
    for name in &names {
        let body = std::fs::read_to_string(kids.join(name).join("artifacts/model.txt")).unwrap();
        assert_eq!(body, format!("{}\n", name.trim_end_matches("-2")), "{out}");
        assert_eq!(run(work, &["verify", kids.join(name).to_str().unwrap()]).code, 0);
    }
    let out = run(
        work,
        &["download", &parent, "--mlflow-uri", uri, "--top", "2", "--metric", "val_loss:min", "-p", "top", "--json"],
    );
    assert_eq!(out.code, 0, "{out}");
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let trials: Vec<(&str, &Value)> =
        doc["jobs"].as_array().unwrap().iter().map(|j| (j["destination"].as_str().unwrap(), &j["trial"])).collect();
    assert_eq!(trials.len(), 2, "{out}");
    assert!(trials[0].0.ends_with("/top/trial-b") && trials[0].1["value"] == 0.2, "{out}");
    assert!(trials[1].0.ends_with("/top/trial-d") && trials[1].1["value"] == 0.3, "{out}");
    assert!(out.stderr.contains("trial-b (val_loss=0.2), trial-d (val_loss=0.3)"), "{out}");
}

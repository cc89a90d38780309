//! Runs the built `jobdl` binary against the emulator in a throw-away sandbox.
//!
//! Layout: `sandbox/work` is the child's working directory (so the default destination is
//! `sandbox/work/<JOB>`); `aux` (a separate temp dir) holds `HOME` and the captured output, so
//! that the sandbox holds nothing jobdl did not write.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use percent_encoding::percent_decode_str;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    ACCOUNT, ARTIFACT_CONTAINER, BlobFixture, Emulator, JobFixture, LoggedRequest, RESOURCE_GROUP, SUBSCRIPTION, TOKEN,
    WORKSPACE, World, artifact_blob_name,
};

/// Longest any child may run before the test kills it and fails.
pub const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// The built `jobdl`, run in `dir` with a hermetic environment: only `PATH`, `home` as `HOME`,
/// the test token, no proxy (`NO_PROXY=*`, the proxy variables unset), fast retry and poll knobs,
/// stdin closed. The caller adds what points it at a server (an endpoint variable or flag).
pub fn jobdl(dir: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobdl"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .env("JOBDL_ACCESS_TOKEN", TOKEN)
        .env("JOBDL_RETRY_BASE_DELAY", "5ms")
        .env("JOBDL_RETRY_MAX_DELAY", "50ms")
        .env("JOBDL_RETRY_AFTER_CAP", "1s")
        .env("JOBDL_POLL_INTERVAL", "50ms")
        .stdin(Stdio::null());
    cmd
}

/// [`jobdl`] pointed at the emulated workspace `emu`: its Foundry project endpoint, its host allowed.
pub fn jobdl_at(emu: &Emulator, dir: &Path, home: &Path) -> Command {
    let mut cmd = jobdl(dir, home);
    cmd.env("JOBDL_ALLOW_HOSTS", emu.host_port()).env("AZURE_AI_PROJECT_ENDPOINT", emu.project_endpoint());
    cmd
}

/// One emulator, one sandbox, and the environment every child gets.
pub struct TestEnv {
    pub emu: Emulator,
    pub world: World,
    sandbox: TempDir,
    aux: TempDir,
    runs: AtomicUsize,
}

/// A finished child.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// stdout parsed as one JSON document (when `--json` was passed).
    pub json: Option<Value>,
    pub elapsed: Duration,
}

impl Run {
    /// The parsed `--json` document; panics with the output if there is none.
    pub fn doc(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| panic!("no JSON document on stdout\n{self}"))
    }

    /// Fails the test (showing the output) unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    /// stdout and stderr together.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The `files[]` entry of the JSON document with this `path`.
    pub fn entry(&self, path: &str) -> &Value {
        let files = self.doc()["files"].as_array().expect("files array");
        files.iter().find(|f| f["path"] == path).unwrap_or_else(|| panic!("no files[] entry {path:?}\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |s: &str| {
            if s.len() > 6000 { format!("{}…", s.chars().take(6000).collect::<String>()) } else { s.to_string() }
        };
        write!(
            f,
            "exit code {} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.elapsed,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

/// A child still running.
pub struct Running {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    json: bool,
    started: Instant,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("child")
    }

    /// Whether the child has exited (without reaping the result).
    pub fn finished(&mut self) -> bool {
        self.child.as_mut().expect("child").try_wait().expect("try_wait").is_some()
    }

    /// Sends a signal to this child only.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child we spawned and have not yet reaped.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Waits up to `limit`; on timeout kills the child and fails the test.
    #[track_caller]
    pub fn wait(mut self, limit: Duration) -> Run {
        let mut child = self.child.take().expect("child");
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if self.started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                let run = self.collect(-1);
                panic!("jobdl did not finish within {limit:?}; killed it\n{run}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.collect(status.code().unwrap_or(-1))
    }

    fn collect(&self, code: i32) -> Run {
        let read = |p: &Path| {
            let mut s = Vec::new();
            File::open(p).and_then(|mut f| f.read_to_end(&mut s)).expect("read captured output");
            String::from_utf8_lossy(&s).into_owned()
        };
        let stdout = read(&self.stdout);
        let stderr = read(&self.stderr);
        let json = if self.json && !stdout.trim().is_empty() {
            Some(serde_json::from_str(&stdout).unwrap_or_else(|e| {
                panic!(
                    "--json stdout is not exactly one JSON document ({e})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
                )
            }))
        } else {
            None
        };
        Run { code, stdout, stderr, json, elapsed: self.started.elapsed() }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl TestEnv {
    pub fn new(world: World) -> TestEnv {
        let emu = Emulator::start(world.clone());
        let sandbox = tempfile::Builder::new().prefix("jobdl-cli-").tempdir().expect("sandbox");
        std::fs::create_dir(sandbox.path().join("work")).expect("work dir");
        let aux = tempfile::Builder::new().prefix("jobdl-cli-aux-").tempdir().expect("aux dir");
        std::fs::create_dir(aux.path().join("home")).expect("home dir");
        TestEnv { emu, world, sandbox, aux, runs: AtomicUsize::new(0) }
    }

    /// The sandbox root (holds only `work/` unless a test adds something).
    pub fn sandbox(&self) -> &Path {
        self.sandbox.path()
    }

    /// The child's working directory.
    pub fn work(&self) -> PathBuf {
        self.sandbox.path().join("work")
    }

    /// The default destination of `job`.
    pub fn dest(&self, job: &str) -> PathBuf {
        self.work().join(job)
    }

    /// A `jobdl` command with the hermetic test environment, pointed at this env's emulator.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = jobdl_at(&self.emu, &self.work(), &self.aux.path().join("home"));
        cmd.args(args);
        cmd
    }

    /// A `jobdl` command addressing this env's emulated Azure ML workspace instead of its Foundry
    /// project: the ARM and storage endpoints, subscription, resource group and workspace name come
    /// from the environment.
    pub fn workspace_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(args);
        cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT")
            .env("JOBDL_ARM_ENDPOINT", self.emu.arm_endpoint())
            .env("JOBDL_STORAGE_ENDPOINT", self.emu.base_url())
            .env("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
            .env("AZURE_RESOURCE_GROUP", RESOURCE_GROUP)
            .env("AZUREML_WORKSPACE_NAME", WORKSPACE);
        cmd
    }

    /// A `jobdl` command addressing the MLflow tracking server at `uri` instead of the emulated
    /// Foundry project.
    pub fn mlflow_command<I, S>(&self, uri: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(args);
        cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT").env("MLFLOW_TRACKING_URI", uri);
        cmd
    }

    /// Starts `cmd` with its output captured to files.
    pub fn spawn(&self, mut cmd: Command) -> Running {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let stdout = self.aux.path().join(format!("stdout-{n}"));
        let stderr = self.aux.path().join(format!("stderr-{n}"));
        cmd.stdout(File::create(&stdout).expect("stdout file")).stderr(File::create(&stderr).expect("stderr file"));
        let json = cmd.get_args().any(|a| a == "--json");
        let started = Instant::now();
        let child = cmd.spawn().expect("spawn jobdl");
        Running { child: Some(child), stdout, stderr, json, started }
    }

    /// Runs `cmd` to completion (bounded by [`CHILD_LIMIT`]).
    #[track_caller]
    pub fn run_cmd(&self, cmd: Command) -> Run {
        self.spawn(cmd).wait(CHILD_LIMIT)
    }

    /// Runs `jobdl <args>` to completion.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_cmd(self.command(args))
    }

    /// Every request the emulator saw.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.emu.requests()
    }

    /// Blob data requests (GET/HEAD of one blob, not listings) whose decoded path ends with `suffix`.
    pub fn blob_gets(&self, suffix: &str) -> Vec<LoggedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && is_blob_data(r) && decoded(r).ends_with(suffix))
            .collect()
    }

    /// The fixture bytes behind an artifact of `job`.
    pub fn artifact(&self, job: &str, path: &str) -> &BlobFixture {
        self.world.artifact_blob(job, path).unwrap_or_else(|| panic!("no fixture blob for {job}:{path}"))
    }

    /// A fixture blob.
    pub fn blob(&self, container: &str, name: &str) -> &BlobFixture {
        self.world.blob(container, name).unwrap_or_else(|| panic!("no fixture blob {container}/{name}"))
    }
}

/// The request path, percent-decoded.
pub fn decoded(r: &LoggedRequest) -> String {
    percent_decode_str(&r.path).decode_utf8_lossy().into_owned()
}

/// A blob-role request for one blob's bytes or properties (not a container listing).
pub fn is_blob_data(r: &LoggedRequest) -> bool {
    r.is_blob() && r.param("comp").as_deref() != Some("list")
}

/// The decoded request path of an artifact blob of `job`.
pub fn artifact_path(job: &str, path: &str) -> String {
    format!("/{ACCOUNT}/{ARTIFACT_CONTAINER}/{}", artifact_blob_name(job, path))
}

/// Every file (and symlink) below `root`, as `/`-separated relative paths, except the manifests
/// jobdl keeps (`.jobdl/manifest.json`, checked by tests/it/manifest.rs).
pub fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let ft = entry.file_type().expect("file type");
            if ft.is_dir() {
                walk(root, &path, out);
            } else if path.ends_with(".jobdl/manifest.json") {
                continue;
            } else {
                let rel = path.strip_prefix(root).expect("below root");
                let parts: Vec<String> =
                    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                out.insert(parts.join("/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Exactly `paths`: what a destination holds after exit 0 (the lock file is removed at the end).
pub fn payload<I, S>(paths: I) -> BTreeSet<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    paths.into_iter().map(Into::into).collect()
}

/// Asserts the file at `path` holds exactly the fixture's bytes (compared piecewise).
#[track_caller]
pub fn assert_blob_file(path: &Path, blob: &BlobFixture) {
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(meta.is_file(), "{} is not a regular file", path.display());
    assert_eq!(meta.len(), blob.len(), "{}: wrong size", path.display());
    let mut file = File::open(path).expect("open downloaded file");
    let piece = 1 << 20;
    let mut pos = 0u64;
    let mut buf = vec![0u8; piece];
    while pos < blob.len() {
        let want = blob.range(pos, piece as u64);
        file.read_exact(&mut buf[..want.len()]).expect("read downloaded file");
        if buf[..want.len()] != want[..] {
            let at = buf.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            panic!("{}: content differs from the fixture at byte {}", path.display(), pos + at as u64);
        }
        pos += want.len() as u64;
    }
}

/// Asserts the file at `path` holds exactly `bytes`.
#[track_caller]
pub fn assert_bytes(path: &Path, bytes: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(got == bytes, "{}: content differs ({} bytes, expected {})", path.display(), got.len(), bytes.len());
}

/// Polls `cond` every 10 ms for up to `limit`; fails the test with `what` on timeout.
#[track_caller]
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Any `.jobdl-part` / `.jobdl-state` file below `root`.
pub fn working_files(root: &Path) -> Vec<String> {
    files_under(root)
        .into_iter()
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            name.ends_with(".jobdl-part") || name.ends_with(".jobdl-state")
        })
        .collect()
}

/// A text blob.
pub fn text(s: &str) -> BlobFixture {
    BlobFixture::bytes(s.as_bytes().to_vec())
}

/// A world with one completed job `name` whose default artifacts are `files`.
pub fn one_job(name: &str, files: Vec<(&str, BlobFixture)>) -> World {
    let mut w = World::new();
    w.add_job(JobFixture::new(name, "Completed"));
    for (path, blob) in files {
        w.add_artifact(name, path, blob);
    }
    w
}

/// Checks the `--json` summary against the contract and its own totals; returns the entries.
#[track_caller]
pub fn check_summary<'a>(run: &'a Run, job: Option<(&str, &str)>, dest: &Path) -> &'a Vec<Value> {
    let doc = run.doc();
    assert_eq!(doc["version"], 1, "{run}");
    match job {
        Some((name, status)) => {
            assert_eq!(doc["job"]["name"], name, "{run}");
            assert_eq!(doc["job"]["status"], status, "{run}");
        }
        None => assert!(doc.get("job").is_some_and(Value::is_null), "\"job\" must be null\n{run}"),
    }
    let shown = PathBuf::from(doc["destination"].as_str().expect("destination string"));
    assert!(shown.is_absolute(), "destination {shown:?} is not absolute");
    let same = match (shown.canonicalize(), dest.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => shown == dest,
    };
    assert!(same, "destination {shown:?} is not {dest:?}");
    let files = doc["files"].as_array().expect("files array");
    let totals = &doc["totals"];
    let count = |r: &str| files.iter().filter(|f| f["result"] == r).count() as u64;
    assert_eq!(totals["files"].as_u64(), Some(files.len() as u64), "totals.files\n{run}");
    assert_eq!(totals["downloaded"].as_u64(), Some(count("downloaded")), "totals.downloaded\n{run}");
    assert_eq!(totals["skipped"].as_u64(), Some(count("skipped")), "totals.skipped\n{run}");
    assert_eq!(totals["failed"].as_u64(), Some(count("failed")), "totals.failed\n{run}");
    let bytes: u64 = files.iter().filter(|f| f["result"] != "failed").map(|f| f["bytes"].as_u64().unwrap_or(0)).sum();
    assert_eq!(totals["bytes"].as_u64(), Some(bytes), "totals.bytes\n{run}");
    assert!(totals["seconds"].as_f64().is_some_and(|s| s >= 0.0), "totals.seconds\n{run}");
    for f in files {
        assert!(f["path"].is_string() && f["bytes"].is_u64(), "bad entry {f}");
        let result = f["result"].as_str().unwrap_or("");
        assert!(["downloaded", "skipped", "failed"].contains(&result), "bad result in {f}");
        let md5 = f["md5"].as_str().unwrap_or("");
        assert!(["verified", "absent", "mismatch"].contains(&md5), "bad md5 in {f}");
        if result == "failed" {
            assert!(f["error"].as_str().is_some_and(|e| !e.is_empty()), "failed entry without error: {f}");
        }
    }
    files
}

/// Container and blob name of the model file in [`model_world`].
pub const MODEL_CONTAINER: &str = "models-test";
pub const MODEL_BLOB: &str = "job-m-model/1/model.safetensors";
pub const MODEL_CONFIG: &str = "job-m-model/1/config.json";

/// A completed job `job-m` whose `model` output (safetensors) holds a `model_len`-byte
/// `model.safetensors` and a small `config.json`, plus one default artifact.
pub fn model_world(model_len: u64) -> World {
    let mut w = World::new();
    let mut job = JobFixture::new("job-m", "Completed");
    job.outputs = serde_json::json!({
        "default": crate::support::default_output("job-m"),
        "model": crate::support::asset_output("safetensors_model", "job-m-model", "1"),
    });
    w.add_job(job);
    w.add_artifact("job-m", "user_logs/std_log.txt", text("trained\n"));
    w.add_folder_asset(
        true,
        "job-m-model",
        "1",
        (MODEL_CONTAINER, "job-m-model/1"),
        crate::support::CredKey::Type,
        vec![("model.safetensors", BlobFixture::generated(model_len, 2)), ("config.json", text("{\"layers\": 2}\n"))],
    );
    w
}

/// The first byte of a `bytes=a-[b]` range.
pub fn range_start(r: &LoggedRequest) -> Option<u64> {
    r.range.as_deref()?.trim().strip_prefix("bytes=")?.split('-').next()?.parse().ok()
}

/// Which output stream of a command [`run_on_terminal`] puts on the pseudo-terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTerminal {
    Stdout,
    Stderr,
}

/// Runs `cmd` with one output stream (`on`) on a pseudo-terminal of `cols` columns and the other
/// to a pipe; returns what the terminal received (`\r\n` turned back into `\n`), what the pipe
/// received, and the exit status.
#[cfg(unix)]
pub fn run_on_terminal(mut cmd: Command, cols: u16, on: OnTerminal) -> (String, String, std::process::ExitStatus) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let ws = rustix::termios::Winsize { ws_row: 40, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    rustix::termios::tcsetwinsize(&master, ws).expect("set the terminal size");
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().expect("pts name"))
        .expect("open the terminal");
    cmd.stdin(Stdio::null());
    match on {
        OnTerminal::Stdout => cmd.stdout(slave).stderr(Stdio::piped()),
        OnTerminal::Stderr => cmd.stderr(slave).stdout(Stdio::piped()),
    };
    let mut child = cmd.spawn().expect("spawn jobdl");
    drop(cmd);
    let pipe: Box<dyn Read + Send> = match on {
        OnTerminal::Stdout => Box::new(child.stderr.take().expect("stderr pipe")),
        OnTerminal::Stderr => Box::new(child.stdout.take().expect("stdout pipe")),
    };
    let piped = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = { pipe }.read_to_string(&mut text);
        text
    });
    let mut master = File::from(master);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Reading ends with EIO once the child (the last holder of the terminal) has exited.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().expect("wait for jobdl");
    let piped = piped.join().expect("the pipe reader");
    (String::from_utf8_lossy(&got).replace("\r\n", "\n"), piped, status)
}

/// The output flags' progress contract: with `-q` no progress line at all; with `--json` the
/// progress (`progress` picks its lines from stderr) stays on stderr and stdout holds only the
/// document. `run` runs the command under test with the flag added.
pub fn quiet_hides_and_json_keeps_progress(run: impl Fn(&str) -> Run, progress: fn(&Run) -> Vec<&str>) {
    for flag in ["-q", "--json"] {
        let out = run(flag);
        out.expect_code(0);
        assert_eq!(progress(&out).is_empty(), flag == "-q", "{flag}\n{out}");
        assert!(!out.stdout.contains("files "), "{flag}: progress on stdout\n{out}");
    }
}

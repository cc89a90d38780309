//! The hostile-world suite (issue 5): full and odd filesystems, malicious servers, interruption,
//! and property tests of the parsers that read server data. Every case checks the contract's
//! exit code, byte-exact files for what could be fetched, nothing written outside the
//! destination, no partial file under a final name, and no secret in the output at `-vvv`.
use crate::support;

use crate::harness;

// Issue 18 cases, one file per theme.
mod limits;
mod links;
mod server;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harness::{Run, TestEnv, assert_blob_file, files_under, one_job, text, wait_until, working_files};
use proptest::prelude::*;
use support::{
    ACCOUNT, BLOB_SIG, BlobFixture, CONTAINER_SIG, Fault, FaultRule, PATH_CONTENT_SIG, PREFIX_CONTENT_SIG, TOKEN, World,
};

const MIB: u64 = 1 << 20;
const JOB: &str = "job-h";

/// No signature or token in stdout/stderr, and no panic.
#[track_caller]
fn assert_clean_output(run: &Run) {
    let out = run.all_output();
    for secret in [CONTAINER_SIG, BLOB_SIG, PREFIX_CONTENT_SIG, PATH_CONTENT_SIG, "FAKESIG", TOKEN] {
        assert!(!out.contains(secret), "secret {secret:?} in the output\n{run}");
    }
    assert!(!out.contains("panicked"), "jobdl panicked\n{run}");
    assert_ne!(run.code, 101, "jobdl panicked\n{run}");
}

/// No final file of `dest` is a working file's leftover under a final name: every regular file
/// is either a working file or holds exactly its fixture's bytes.
#[track_caller]
fn assert_finals_exact(env: &TestEnv, dest: &Path, job: &str) {
    for rel in files_under(dest) {
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        let working = name.ends_with(".jobdl-part") || name.ends_with(".jobdl-state");
        if rel.starts_with(".jobdl/") || working || rel == "artifacts/outputs" {
            continue;
        }
        let Some(path) = rel.strip_prefix("artifacts/") else { panic!("unexpected file {rel} in the destination") };
        assert_blob_file(&dest.join(&rel), env.artifact(job, path));
    }
}

fn world(files: Vec<(&str, BlobFixture)>) -> World {
    one_job(JOB, files)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A listener on 127.0.0.2 that counts every connection made to it.
struct Sentinel {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Sentinel {
    fn start() -> Sentinel {
        let listener = TcpListener::bind("127.0.0.2:0").expect("bind sentinel on 127.0.0.2");
        let port = listener.local_addr().expect("sentinel addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Sentinel { port, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Watches a destination while jobdl runs: every file under a final name must have its
/// fixture's size and bytes (head and tail compared), never a partial or pre-sized part.
struct FinalWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(usize, Vec<String>)>>,
}

impl FinalWatcher {
    fn start(dest: PathBuf, expected: BTreeMap<String, BlobFixture>) -> FinalWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut bad = Vec::new();
            let mut scans = 0;
            while !flag.load(Ordering::SeqCst) {
                scans += 1;
                for rel in files_under(&dest) {
                    let name = rel.rsplit('/').next().unwrap_or(&rel);
                    if rel.starts_with(".jobdl/") || name.ends_with(".jobdl-part") || name.ends_with(".jobdl-state") {
                        continue;
                    }
                    let Some(blob) = expected.get(&rel) else {
                        bad.push(format!("{rel}: not in the plan"));
                        continue;
                    };
                    if let Some(problem) = head_tail_differs(&dest.join(&rel), blob) {
                        bad.push(format!("{rel}: {problem}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(3));
            }
            (scans, bad)
        });
        FinalWatcher { stop, thread: Some(thread) }
    }

    /// Stops watching; fails the test if any final file was ever seen partial.
    #[track_caller]
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let (scans, bad) = self.thread.take().expect("watcher").join().expect("watcher thread");
        assert!(bad.is_empty(), "files seen under a final name before they were complete: {bad:?}");
        scans
    }
}

impl Drop for FinalWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Compares size, the first and the last 64 KiB of `path` with `blob`.
fn head_tail_differs(path: &Path, blob: &BlobFixture) -> Option<String> {
    let Ok(mut f) = File::open(path) else { return None }; // renamed away meanwhile
    let len = f.metadata().ok()?.len();
    if len != blob.len() {
        return Some(format!("{len} bytes, expected {}", blob.len()));
    }
    let piece = 64 * 1024u64;
    for start in [0, len.saturating_sub(piece)] {
        let want = blob.range(start, piece);
        let mut got = vec![0u8; want.len()];
        f.seek(SeekFrom::Start(start)).ok()?;
        f.read_exact(&mut got).ok()?;
        if got != want {
            return Some(format!("content differs near byte {start}"));
        }
    }
    None
}

/// The final files of job `job`'s default artifacts, relative to the destination.
fn expected_finals(env: &TestEnv, job: &str) -> BTreeMap<String, BlobFixture> {
    let fixture = env.world.job(job).expect("job");
    fixture.artifacts.iter().map(|a| (format!("artifacts/{}", a.path), env.artifact(job, &a.path).clone())).collect()
}

/// Runs `cmd` (output to files) and reports its exit code, output and peak RSS in KiB.
///
/// `wait4`'s `ru_maxrss` alone is not the child's peak: a child started with vfork (std's
/// `posix_spawn`) takes on the spawning process's high-water mark when it execs, and this process
/// runs every integration test, so its own peak can be above the child's. The child's `VmHWM` is
/// therefore sampled from /proc while it runs; `ru_maxrss` is used when it is above this process's
/// own high-water mark, since it is then the child's exact peak.
fn run_measured(mut cmd: Command, limit: Duration) -> (i32, String, String, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    cmd.stdout(File::create(&out).expect("out")).stderr(File::create(&err).expect("err"));
    let child = cmd.spawn().expect("spawn jobdl");
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let mut sampled = 0;
    let (status, maxrss) = loop {
        sampled = sampled.max(vm_hwm_kib(&format!("/proc/{pid}/status")).unwrap_or(0));
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid out-parameter.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child's PID, which std has not reaped.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break (status, usage.ru_maxrss as u64);
        }
        assert!(rc == 0, "wait4 failed: {}", std::io::Error::last_os_error());
        if started.elapsed() > limit {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("jobdl did not finish within {limit:?}: {}", std::fs::read_to_string(&err).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(child); // already reaped by wait4
    let own = vm_hwm_kib("/proc/self/status").unwrap_or(u64::MAX);
    let rss = if maxrss > own { maxrss } else { sampled };
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    (code, read(&out), read(&err), rss)
}

/// The `VmHWM` (peak resident set, KiB) line of a /proc status file, if the process still has memory.
fn vm_hwm_kib(status_file: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// 1. Disk and filesystem

#[test]
fn destination_that_is_a_file_is_refused_and_left_alone() {
    let env = TestEnv::new(world(vec![("outputs/a.txt", text("a\n"))]));
    let dest = env.dest(JOB);
    std::fs::write(&dest, b"keep me\n").expect("write the obstacle");
    let run = env.run(&["download", JOB, "-vvv"]);
    assert_clean_output(&run);
    assert_eq!(run.code, 2, "a destination that is a file is a usage error\n{run}");
    assert!(run.stderr.contains(JOB), "the error does not name the path\n{run}");
    assert_eq!(std::fs::read(&dest).expect("obstacle"), b"keep me\n");
    assert_eq!(files_under(env.sandbox()), harness::payload(["work/job-h"]));
}

#[test]
fn read_only_destination_fails_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new(world(vec![("outputs/a.txt", text("a\n")), ("logs/b.txt", text("b\n"))]));
    let dest = env.dest(JOB);
    std::fs::create_dir(&dest).expect("dest");
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let mut cmd = env.command(["download", JOB, "-vvv"]);
    if is_root() {
        // Permissions do not stop root: run jobdl as `nobody`, who may read the sandbox but not
        // write the destination.
        for dir in [env.sandbox().to_path_buf(), env.work(), harness_home(&cmd)] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("open the sandbox");
        }
        cmd.uid(65534).gid(65534);
    }
    let run = env.run_cmd(cmd);
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
    assert_clean_output(&run);
    assert_eq!(run.code, 1, "a destination that cannot be written is an I/O error (exit 1)\n{run}");
    assert!(run.stderr.contains(JOB), "the error does not name the destination\n{run}");
    assert!(run.stderr.to_lowercase().contains("permission denied"), "the error does not say why\n{run}");
    assert!(files_under(&dest).is_empty(), "{:?}", files_under(&dest));
}

/// The `HOME` the harness gives a command (its parent is the harness's private aux folder).
fn harness_home(cmd: &Command) -> PathBuf {
    let home = cmd
        .get_envs()
        .find(|(k, _)| *k == "HOME")
        .and_then(|(_, v)| v)
        .map(PathBuf::from)
        .expect("the harness sets HOME");
    home.parent().expect("aux dir").to_path_buf()
}

#[test]
fn a_file_where_a_directory_must_go_fails_only_the_files_below_it() {
    let env = TestEnv::new(world(vec![("outputs/a.txt", text("a\n")), ("logs/b.txt", text("b\n"))]));
    let dest = env.dest(JOB);
    std::fs::create_dir_all(dest.join("artifacts")).expect("artifacts");
    std::fs::write(dest.join("artifacts/outputs"), b"not a dir\n").expect("obstacle");
    let run = env.run(&["download", JOB, "-vvv"]);
    assert_clean_output(&run);
    assert_eq!(run.code, 6, "{run}");
    assert!(run.stderr.contains("artifacts/outputs"), "the error does not name the obstacle\n{run}");
    assert_eq!(std::fs::read(dest.join("artifacts/outputs")).expect("obstacle"), b"not a dir\n");
    assert_finals_exact(&env, &dest, JOB);
}

/// `cmd` with RLIMIT_FSIZE = `limit` bytes (SIGXFSZ ignored, so writes fail with EFBIG).
fn with_file_size_limit(cmd: &mut Command, limit: u64) {
    // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
}

#[test]
fn full_disk_fails_the_big_file_only() {
    // A streamed file (3 MiB), a chunked one (20 MiB) and small files sharing one barrier.
    for (big, limit) in [(3 * MIB + 17, MIB), (20 * MIB + 1, MIB), (200 * 1024, 100 * 1024)] {
        let env = TestEnv::new(world(vec![
            ("outputs/big.bin", BlobFixture::generated(big, 3)),
            ("logs/small.txt", text("small\n")),
            ("logs/small2.txt", text("small 2\n")),
        ]));
        let mut cmd = env.command(["download", JOB, "-vvv"]);
        with_file_size_limit(&mut cmd, limit);
        let watcher = FinalWatcher::start(env.dest(JOB), expected_finals(&env, JOB));
        let run = env.run_cmd(cmd);
        watcher.finish();
        assert_clean_output(&run);
        run.expect_code(6);
        let dest = env.dest(JOB);
        assert!(!dest.join("artifacts/outputs/big.bin").exists(), "a partial file under the final name\n{run}");
        for p in ["logs/small.txt", "logs/small2.txt"] {
            assert_blob_file(&dest.join("artifacts").join(p), env.artifact(JOB, p));
        }
        assert!(run.stderr.contains("big.bin"), "the error does not name the path\n{run}");
        assert!(run.stderr.contains("File too large"), "the error does not say why\n{run}");
        assert_finals_exact(&env, &dest, JOB);

        // Space again: the rerun completes.
        let rerun = env.run(&["download", JOB]);
        rerun.expect_code(0);
        assert_blob_file(&dest.join("artifacts/outputs/big.bin"), env.artifact(JOB, "outputs/big.bin"));
        assert!(working_files(&dest).is_empty());
    }
}

#[test]
fn symlinked_directory_pointing_outside_is_not_written_through() {
    let env = TestEnv::new(world(vec![("outputs/x.txt", text("x\n")), ("logs/ok.txt", text("ok\n"))]));
    let dest = env.dest(JOB);
    let elsewhere = env.sandbox().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("elsewhere");
    std::fs::create_dir_all(dest.join("artifacts")).expect("artifacts");
    std::os::unix::fs::symlink(&elsewhere, dest.join("artifacts/outputs")).expect("symlink");
    let run = env.run(&["download", JOB, "-vvv"]);
    assert_clean_output(&run);
    assert!(files_under(&elsewhere).is_empty(), "written outside the destination: {:?}", files_under(&elsewhere));
    run.expect_code(6);
    assert!(run.stderr.contains("outputs"), "the error does not name the path\n{run}");
    assert_blob_file(&dest.join("artifacts/logs/ok.txt"), env.artifact(JOB, "logs/ok.txt"));
}

// ---------------------------------------------------------------------------------------------
// 2. Malicious servers

#[test]
fn redirect_to_a_foreign_host_is_not_followed() {
    let sentinel = Sentinel::start();
    let env = TestEnv::new(world(vec![("outputs/r.txt", text("r\n")), ("logs/ok.txt", text("ok\n"))]));
    let location = format!("http://127.0.0.2:{}/{ACCOUNT}/azureml/stolen?sig=x", sentinel.port);
    env.emu.add_fault(FaultRule::new("outputs/r.txt", 1000, Fault::Redirect(location)));
    let run = env.run(&["download", JOB, "-vvv", "--json"]);
    assert_clean_output(&run);
    run.expect_code(6);
    assert_eq!(run.entry("artifacts/outputs/r.txt")["result"], "failed");
    let dest = env.dest(JOB);
    assert!(!dest.join("artifacts/outputs/r.txt").exists());
    assert_blob_file(&dest.join("artifacts/logs/ok.txt"), env.artifact(JOB, "logs/ok.txt"));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(sentinel.hits(), 0, "a request reached the foreign host");
    for r in env.requests().iter().filter(|r| r.is_blob()) {
        assert_eq!(r.authorization, None, "Authorization sent with a SAS: {} {}", r.method, r.path);
    }
}

/// A List Blobs page listing `items` as (name, claimed size).
fn listing(container: &str, items: &[(&str, u64)]) -> Vec<u8> {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ContainerName=\"{container}\">\
         <Prefix>p/</Prefix><Blobs>"
    );
    for (name, size) in items {
        xml.push_str(&format!(
            "<Blob><Name>{name}</Name><Properties><Etag>0x8DE000000000001</Etag>\
             <Content-Length>{size}</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob>"
        ));
    }
    xml.push_str("</Blobs><NextMarker /></EnumerationResults>");
    xml.into_bytes()
}

fn cp_world() -> World {
    let mut w = World::new();
    w.add_blob("c1", "p/huge.bin", BlobFixture::generated(1000, 9));
    w.add_blob("c1", "p/long.txt", text("this body is longer than the listing says\n"));
    w.add_blob("c1", "p/ok.txt", text("ok\n"));
    w
}

fn lying_listing(env: &TestEnv, items: &[(&str, u64)]) {
    let body = listing("c1", items);
    let fault = Fault::Raw { status: 200, content_type: "application/xml".into(), body };
    env.emu.add_fault(FaultRule::new("/c1", 1000, fault).query("comp=list"));
}

#[test]
fn listing_that_claims_a_pebibyte_fails_that_file_only() {
    let env = TestEnv::new(cp_world());
    lying_listing(&env, &[("p/huge.bin", 1 << 50), ("p/ok.txt", 3)]);
    let url = env.emu.container_sas_url("c1", "p");
    let run = env.run(&["cp", &url, "out", "-vvv", "--json"]);
    assert_clean_output(&run);
    run.expect_code(6);
    let out = env.work().join("out");
    assert!(!out.join("huge.bin").exists(), "{run}");
    assert_blob_file(&out.join("ok.txt"), env.blob("c1", "p/ok.txt"));
    // The claimed size is not believed (nor allocated) before the server confirms it.
    let err = run.entry("huge.bin")["error"].as_str().unwrap_or("").to_string();
    assert!(err.contains("size mismatch") && err.contains("1000"), "{run}");
    let gets = env.requests().iter().filter(|r| r.is_blob() && r.path.ends_with("huge.bin")).count();
    assert_eq!(gets, 1, "one request settles it\n{run}");
    for rel in files_under(&env.work()) {
        assert!(rel == "out/ok.txt" || rel.starts_with("out/.jobdl/"), "unexpected file {rel}");
    }
}

#[test]
fn body_longer_than_the_announced_size_is_rejected() {
    let env = TestEnv::new(cp_world());
    lying_listing(&env, &[("p/long.txt", 10), ("p/ok.txt", 3)]);
    let url = env.emu.container_sas_url("c1", "p");
    let run = env.run(&["cp", &url, "out", "-vvv", "--json"]);
    assert_clean_output(&run);
    run.expect_code(6);
    let out = env.work().join("out");
    assert!(!out.join("long.txt").exists(), "a file of the wrong size under its final name\n{run}");
    assert_blob_file(&out.join("ok.txt"), env.blob("c1", "p/ok.txt"));
}

#[test]
fn cp_under_hostile_answers_leaks_nothing() {
    let sentinel = Sentinel::start();
    let redirect = format!("http://127.0.0.2:{}/{ACCOUNT}/c1/p/ok.txt?sig={BLOB_SIG}", sentinel.port);
    let cases: Vec<(FaultRule, bool, i32)> = vec![
        // One blob: its properties call is the call everything depends on.
        (FaultRule::new("/c1/p/ok.txt", 1000, Fault::Redirect(redirect.clone())), true, 1),
        (FaultRule::new("/c1", 1000, Fault::Redirect(redirect)).query("comp=list"), false, 1),
        (FaultRule::new("/c1", 1000, Fault::HugeBody { status: 500, len: 4 * MIB }).query("comp=list"), false, 1),
        (FaultRule::new("/c1", 1000, status(403, None)).query("comp=list"), false, 3),
        (FaultRule::new("/c1/p/ok.txt", 1000, status(403, None)), true, 3),
        (FaultRule::new("/c1/p/ok.txt", 1000, Fault::Redirect("http://x.invalid/".into())).method("GET"), false, 6),
    ];
    for (rule, blob_sas, code) in cases {
        let env = TestEnv::new(cp_world());
        env.emu.add_fault(rule);
        let url = if blob_sas { env.emu.blob_sas_url("c1", "p/ok.txt") } else { env.emu.container_sas_url("c1", "p") };
        let run = env.run(&["cp", &url, "out", "-vvv", "--retries", "2"]);
        assert_clean_output(&run);
        run.expect_code(code);
        let out = env.work().join("out");
        assert!(!out.join("ok.txt").exists(), "{run}");
        for rel in files_under(env.sandbox()) {
            assert!(rel.starts_with("work/out/"), "written outside the destination: {rel}");
        }
        for r in env.requests() {
            assert_eq!(r.authorization, None, "Authorization sent with a SAS: {} {}", r.method, r.path);
        }
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(sentinel.hits(), 0, "a request reached the foreign host");
}

#[test]
fn malformed_list_xml_is_a_clear_error() {
    let env = TestEnv::new(cp_world());
    let body = b"<?xml version=\"1.0\"?><EnumerationResults><Blobs><Blob><Name>p/a".to_vec();
    let fault = Fault::Raw { status: 200, content_type: "application/xml".into(), body };
    env.emu.add_fault(FaultRule::new("/c1", 1000, fault).query("comp=list"));
    let url = env.emu.container_sas_url("c1", "p");
    let run = env.run(&["cp", &url, "out", "-vvv"]);
    assert_clean_output(&run);
    run.expect_code(1);
    assert!(run.stderr.to_lowercase().contains("list"), "{run}");
    assert!(!env.work().join("out").exists() || working_files(&env.work()).is_empty());
}

#[test]
fn malformed_job_json_is_a_clear_error() {
    for body in [&b"{\"properties\": {\"status\": "[..], b"<html>gateway</html>", b"[1,2,3]", b"null"] {
        let env = TestEnv::new(world(vec![("outputs/a.txt", text("a\n"))]));
        let fault = Fault::Raw { status: 200, content_type: "application/json".into(), body: body.to_vec() };
        env.emu.add_fault(FaultRule::new(&format!("/jobs/{JOB}"), 1000, fault));
        let run = env.run(&["download", JOB, "-vvv"]);
        assert_clean_output(&run);
        run.expect_code(1);
        assert!(!run.stderr.trim().is_empty(), "{run}");
        assert!(!env.dest(JOB).exists(), "destination created for a broken job\n{run}");
    }
}

#[test]
fn huge_error_body_is_not_echoed() {
    let env = TestEnv::new(world(vec![("outputs/a.txt", text("a\n")), ("logs/ok.txt", text("ok\n"))]));
    let fault = Fault::HugeBody { status: 500, len: 10 * MIB };
    env.emu.add_fault(FaultRule::new("outputs/a.txt", 1000, fault.clone()));
    let run = env.run(&["download", JOB, "-vvv", "--retries", "2"]);
    assert_clean_output(&run);
    run.expect_code(6);
    assert!(run.all_output().len() < 256 * 1024, "{} bytes of output", run.all_output().len());
    assert!(!run.all_output().contains(&"x".repeat(4096)), "the error body was echoed");
    assert_blob_file(&env.dest(JOB).join("artifacts/logs/ok.txt"), env.artifact(JOB, "logs/ok.txt"));

    // Bounded memory: the 10 MiB bodies are never read whole.
    let (code, _, stderr, rss) =
        run_measured(env.command(["download", JOB, "--retries", "3"]), Duration::from_secs(60));
    assert_eq!(code, 6, "{stderr}");
    eprintln!("huge error bodies: peak RSS {} MiB", rss / 1024);
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB with 10 MiB error bodies");

    // The same on the call everything depends on.
    let env = TestEnv::new(world(vec![("outputs/a.txt", text("a\n"))]));
    env.emu.add_fault(FaultRule::new(&format!("/jobs/{JOB}"), 1000, fault));
    let run = env.run(&["download", JOB, "-vvv"]);
    assert_clean_output(&run);
    run.expect_code(1);
    assert!(run.all_output().len() < 256 * 1024, "{} bytes of output", run.all_output().len());
}

#[test]
fn etag_changing_mid_download_restarts_and_ends_exact() {
    let env = TestEnv::new(world(vec![("outputs/big.bin", BlobFixture::generated(20 * MIB + 5, 11))]));
    // The first request (the probe) is served normally, the second chunk sees another ETag.
    env.emu.add_fault(FaultRule::new("outputs/big.bin", 1, Fault::Stall(Duration::ZERO)));
    env.emu.add_fault(FaultRule::new("outputs/big.bin", 1, Fault::WrongEtag));
    let run = env.run(&["download", JOB, "-vvv"]);
    assert_clean_output(&run);
    run.expect_code(0);
    let dest = env.dest(JOB);
    assert_blob_file(&dest.join("artifacts/outputs/big.bin"), env.artifact(JOB, "outputs/big.bin"));
    assert!(working_files(&dest).is_empty());
}

// ---------------------------------------------------------------------------------------------
// The fault matrix: every scripted misbehaviour, on a chunked, a streamed and a small file and on
// the metadata calls, with the invariants checked while jobdl runs and after it exits.

fn matrix_world() -> World {
    world(vec![
        ("outputs/big.bin", BlobFixture::generated(18 * MIB + 11, 21)),
        ("outputs/mid.bin", BlobFixture::generated(3 * MIB + 5, 22)),
        ("logs/small.txt", text("small\n")),
        ("logs/slow.txt", BlobFixture::generated(3000, 23)),
    ])
}

/// Runs `download` with `fault` on the first `times` requests matching `target`; checks the exit
/// code, the files, the output and where requests went.
fn matrix_case(target: &str, fault: Fault, times: u32, extra: &[&str], code: i32) {
    let sentinel = Sentinel::start();
    let env = TestEnv::new(matrix_world());
    let fault = match fault {
        Fault::Redirect(path) => Fault::Redirect(format!("http://127.0.0.2:{}{path}", sentinel.port)),
        other => other,
    };
    env.emu.add_fault(FaultRule::new(target, times, fault));
    let dest = env.dest(JOB);
    let watcher = FinalWatcher::start(dest.clone(), expected_finals(&env, JOB));
    let mut args = vec!["download", JOB, "-vvv", "--json"];
    args.extend_from_slice(extra);
    let run = env.run(&args);
    let scans = watcher.finish();
    assert!(scans > 0);
    assert_clean_output(&run);
    run.expect_code(code);
    if code == 0 || code == 6 {
        let files = run.doc()["files"].as_array().expect("files").clone();
        assert_eq!(files.len(), 4, "{run}");
        for f in &files {
            let path = f["path"].as_str().expect("path");
            let final_path = dest.join(path);
            if f["result"] == "downloaded" {
                let rel = path.strip_prefix("artifacts/").expect("artifacts/");
                assert_blob_file(&final_path, env.artifact(JOB, rel));
            } else {
                assert!(code == 6, "{run}");
                assert!(!final_path.exists(), "a failed file under its final name: {path}");
                assert!(path.contains(target.trim_start_matches('/')), "an innocent file failed: {path}\n{run}");
            }
        }
        assert_finals_exact(&env, &dest, JOB);
    }
    if code == 0 {
        assert!(working_files(&dest).is_empty(), "{:?}", working_files(&dest));
    }
    for rel in files_under(env.sandbox()) {
        assert!(rel.starts_with("work/job-h/"), "written outside the destination: {rel}");
    }
    for r in env.requests().iter().filter(|r| r.is_blob()) {
        assert_eq!(r.authorization, None, "Authorization sent with a SAS: {} {}", r.method, r.path);
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(sentinel.hits(), 0, "a request reached the foreign host");
}

fn status(code: u16, retry_after: Option<&str>) -> Fault {
    Fault::Status { code, retry_after: retry_after.map(str::to_string) }
}

macro_rules! matrix {
    ($($name:ident: $target:expr, $fault:expr, $times:expr, $extra:expr => $code:expr;)*) => {$(
        #[test]
        fn $name() {
            matrix_case($target, $fault, $times, $extra, $code);
        }
    )*};
}

matrix! {
    m_429_without_retry_after_big: "outputs/big.bin", status(429, None), 3, &[] => 0;
    m_429_with_retry_after_mid: "outputs/mid.bin", status(429, Some("1")), 2, &[] => 0;
    m_500_burst_small: "logs/small.txt", status(500, None), 4, &[] => 0;
    m_502_burst_big: "outputs/big.bin", status(502, None), 4, &[] => 0;
    m_503_burst_mid: "outputs/mid.bin", status(503, None), 4, &[] => 0;
    m_504_burst_big: "outputs/big.bin", status(504, None), 4, &[] => 0;
    m_endless_503_fails_one_file: "outputs/mid.bin", status(503, None), 1000, &["--retries", "3"] => 6;
    m_reset_big: "outputs/big.bin", Fault::ResetAfter(100_000), 2, &[] => 0;
    m_reset_mid: "outputs/mid.bin", Fault::ResetAfter(1000), 2, &[] => 0;
    m_short_body_big: "outputs/big.bin", Fault::ShortBody(5000), 2, &[] => 0;
    m_short_body_small: "logs/small.txt", Fault::ShortBody(2), 2, &[] => 0;
    m_ignore_range_big: "outputs/big.bin", Fault::IgnoreRange, 1, &[] => 0;
    m_ignore_range_mid: "outputs/mid.bin", Fault::IgnoreRange, 1, &[] => 0;
    m_stall_past_idle_timeout: "outputs/mid.bin", Fault::Stall(Duration::from_secs(4)), 1, &["--idle-timeout", "1s"] => 0;
    m_trickle_is_not_killed: "logs/slow.txt", Fault::Trickle { bytes: 500, every: Duration::from_millis(300) }, 1, &["--idle-timeout", "1s"] => 0;
    m_wrong_etag_big: "outputs/big.bin", Fault::WrongEtag, 1, &[] => 0;
    m_redirect_blob: "outputs/mid.bin", Fault::Redirect(format!("/{ACCOUNT}/azureml/x")), 1000, &[] => 6;
    m_huge_error_body_small: "logs/small.txt", Fault::HugeBody { status: 503, len: 4 * MIB }, 2, &[] => 0;
    m_job_503_burst: "/jobs/job-h", status(503, None), 3, &[] => 0;
    m_job_429: "/jobs/job-h", status(429, Some("0")), 2, &[] => 0;
    m_job_redirect: "/jobs/job-h", Fault::Redirect("/api/projects/proj-a/jobs/job-h".into()), 1000, &[] => 1;
    m_listing_500_burst: "/artifacts", status(500, None), 3, &[] => 0;
    m_listing_reset: "/artifacts", Fault::ResetAfter(10), 2, &[] => 0;
    m_listing_huge_error: "/artifacts", Fault::HugeBody { status: 500, len: 4 * MIB }, 2, &[] => 0;
    m_listing_redirect: "/artifacts", Fault::Redirect("/api/projects/proj-a/x".into()), 1000, &[] => 1;
    m_listing_stall: "/artifacts", Fault::Stall(Duration::from_secs(4)), 1, &["--idle-timeout", "1s"] => 0;
}

#[test]
fn wrong_md5_fails_the_file_and_keeps_the_others() {
    let mut w = matrix_world();
    w.add_artifact(JOB, "outputs/bad.bin", BlobFixture::generated(10 * MIB, 24).with_md5(support::Md5Mode::Wrong));
    let env = TestEnv::new(w);
    let dest = env.dest(JOB);
    let watcher = FinalWatcher::start(dest.clone(), expected_finals(&env, JOB));
    let run = env.run(&["download", JOB, "-vvv", "--json"]);
    watcher.finish();
    assert_clean_output(&run);
    run.expect_code(6);
    assert_eq!(run.entry("artifacts/outputs/bad.bin")["md5"], "mismatch", "{run}");
    assert!(!dest.join("artifacts/outputs/bad.bin").exists());
    for p in ["outputs/big.bin", "outputs/mid.bin", "logs/small.txt", "logs/slow.txt"] {
        assert_blob_file(&dest.join("artifacts").join(p), env.artifact(JOB, p));
    }
}

#[test]
fn content_uri_on_a_foreign_host_is_never_contacted() {
    let sentinel = Sentinel::start();
    let mut w = matrix_world();
    let foreign = format!("http://127.0.0.2:{}/{ACCOUNT}/azureml/x?sv=1&sig={BLOB_SIG}", sentinel.port);
    w.push_artifact(JOB, "outputs/evil.txt", support::ContentUri::Raw(foreign));
    let env = TestEnv::new(w);
    let run = env.run(&["download", JOB, "-vvv", "--json"]);
    assert_clean_output(&run);
    run.expect_code(6);
    assert_eq!(run.entry("artifacts/outputs/evil.txt")["result"], "failed", "{run}");
    assert!(!env.dest(JOB).join("artifacts/outputs/evil.txt").exists());
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(sentinel.hits(), 0, "a request reached the foreign host");
}

/// An artifacts page with no items whose `nextLink` is `next`.
fn foreign_next_page(next: &str) -> Fault {
    let body = serde_json::json!({"value": [], "continuationToken": null, "nextLink": next});
    Fault::Raw { status: 200, content_type: "application/json".into(), body: body.to_string().into_bytes() }
}

#[test]
fn next_link_on_a_foreign_host_is_never_followed() {
    let sentinel = Sentinel::start();
    for next in [
        format!("http://127.0.0.2:{}/api/projects/proj-a/jobs/job-h/x?sig={BLOB_SIG}", sentinel.port),
        "http://metadata.invalid/metadata/identity/oauth2/token".to_string(),
        "https://attacker.invalid/artifacts?page=2".to_string(),
    ] {
        let env = TestEnv::new(matrix_world());
        env.emu.add_fault(FaultRule::new("/artifacts", 1000, foreign_next_page(&next)));
        let run = env.run(&["download", JOB, "-vvv"]);
        assert_clean_output(&run);
        run.expect_code(1);
        assert!(run.stderr.contains("nextLink"), "{run}");
        assert!(!env.requests().iter().any(|r| r.is_blob()), "blobs fetched after a refused page");
        assert!(!env.dest(JOB).exists() || files_under(&env.dest(JOB)).is_empty(), "{run}");
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(sentinel.hits(), 0, "a request reached the foreign host");
}

#[test]
fn list_blobs_marker_that_repeats_forever_stops() {
    let env = TestEnv::new(cp_world());
    let body = String::from_utf8(listing("c1", &[("p/ok.txt", 3)]))
        .expect("utf8")
        .replace("<NextMarker />", "<NextMarker>2!c2FtZQ--</NextMarker>");
    let fault = Fault::Raw { status: 200, content_type: "application/xml".into(), body: body.into_bytes() };
    env.emu.add_fault(FaultRule::new("/c1", 100_000, fault).query("comp=list"));
    let url = env.emu.container_sas_url("c1", "p");
    let run = env.run(&["cp", &url, "out", "-vvv"]);
    assert_clean_output(&run);
    run.expect_code(1);
    assert!(run.elapsed < Duration::from_secs(15), "{run}");
    let listings = env.requests().iter().filter(|r| r.query.contains("comp=list")).count();
    assert!(listings <= 3, "{listings} listing calls for a repeating marker");
    assert!(run.stderr.contains("repeated"), "{run}");
}

#[test]
fn more_hostile_names_stay_inside_or_fail() {
    let long = "n".repeat(300);
    let refused = [
        "".to_string(),
        ".".to_string(),
        "a/./b.txt".to_string(),
        "a//b.txt".to_string(),
        format!("outputs/{long}.txt"),
        ".jobdl/lock".to_string(),
        "outputs/.ok.txt.jobdl-part".to_string(),
        "outputs/trail/".to_string(),
        "outputs/nul\u{0}.txt".to_string(),
        "..".to_string(),
        "outputs/%2e%2e/../../up.txt".to_string(),
    ];
    let accepted = ["outputs/%2e%2e/lit.txt", "outputs/Case.txt", "ok.txt"];
    let mut w = world(vec![]);
    for (i, path) in refused.iter().enumerate() {
        let name = support::artifact_blob_name(JOB, &format!("hostile-{i}"));
        w.add_blob(support::ARTIFACT_CONTAINER, &name, text("hostile\n"));
        let uri = support::ContentUri::Blob { container: support::ARTIFACT_CONTAINER.into(), name };
        w.push_artifact(JOB, path, uri);
    }
    for path in accepted {
        w.add_artifact(JOB, path, text(&format!("{path}\n")));
    }
    // Differs from `Case.txt` only in case: refused, so a case-insensitive disk never mixes them.
    w.add_artifact(JOB, "outputs/case.txt", text("lower\n"));
    let env = TestEnv::new(w);
    let run = env.run(&["download", JOB, "-vvv", "--json"]);
    assert_clean_output(&run);
    run.expect_code(6);
    let dest = env.dest(JOB);
    for path in accepted {
        harness::assert_bytes(&dest.join("artifacts").join(path), format!("{path}\n").as_bytes());
    }
    let files = run.doc()["files"].as_array().expect("files");
    let failed: Vec<&str> =
        files.iter().filter(|f| f["result"] == "failed").filter_map(|f| f["path"].as_str()).collect();
    // A control character is shown escaped (`\\0`) in the report.
    assert!(failed.iter().any(|p| p.starts_with("artifacts/outputs/nul")), "{run}");
    let plain = refused.iter().filter(|p| !p.is_empty() && !p.contains('\0')).map(String::as_str);
    for path in plain.chain(["outputs/case.txt"]) {
        assert!(failed.contains(&format!("artifacts/{path}").as_str()), "{path:?} did not fail\n{run}");
    }
    // The empty path is either a failed entry or not a file at all; never written.
    assert!(failed.len() >= refused.len(), "{run}");
    let mut want: Vec<String> = accepted.iter().map(|p| format!("artifacts/{p}")).collect();
    want.sort();
    let got: Vec<String> = files_under(&dest).into_iter().filter(|p| !p.starts_with(".jobdl/")).collect();
    assert_eq!(got, want, "{run}");
    for rel in files_under(env.sandbox()) {
        assert!(rel.starts_with("work/job-h/"), "written outside the destination: {rel}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Interruption

#[test]
fn sigterm_mid_download_exits_130_and_a_rerun_completes() {
    let env = TestEnv::new(world(vec![
        ("outputs/big.bin", BlobFixture::generated(24 * MIB + 1, 12)),
        ("logs/ok.txt", text("ok\n")),
    ]));
    // One chunk hangs, so the run is surely mid-download when the signal comes.
    env.emu.add_fault(FaultRule::new("outputs/big.bin", 1, Fault::Stall(Duration::from_secs(20))));
    let dest = env.dest(JOB);
    let watcher = FinalWatcher::start(dest.clone(), expected_finals(&env, JOB));
    let running = env.spawn(env.command(["download", JOB, "-vvv"]));
    wait_until(Duration::from_secs(30), "a part file", || !working_files(&dest).is_empty());
    std::thread::sleep(Duration::from_millis(200));
    assert!(!dest.join("artifacts/outputs/big.bin").exists());
    running.signal(libc::SIGTERM);
    let run = running.wait(Duration::from_secs(15));
    watcher.finish();
    assert_clean_output(&run);
    run.expect_code(130);
    assert!(!dest.join("artifacts/outputs/big.bin").exists(), "a partial file under the final name");
    assert_finals_exact(&env, &dest, JOB);

    let rerun = env.run(&["download", JOB]);
    assert_clean_output(&rerun);
    rerun.expect_code(0);
    assert_blob_file(&dest.join("artifacts/outputs/big.bin"), env.artifact(JOB, "outputs/big.bin"));
    assert_blob_file(&dest.join("artifacts/logs/ok.txt"), env.artifact(JOB, "logs/ok.txt"));
    assert!(working_files(&dest).is_empty());
}

#[test]
fn two_runs_on_one_destination_never_interleave() {
    let env = TestEnv::new(world(vec![
        ("outputs/big.bin", BlobFixture::generated(18 * MIB + 3, 13)),
        ("logs/a.txt", text("a\n")),
        ("logs/b.txt", text("b\n")),
    ]));
    let watcher = FinalWatcher::start(env.dest(JOB), expected_finals(&env, JOB));
    let a = env.spawn(env.command(["download", JOB]));
    let b = env.spawn(env.command(["download", JOB]));
    let (a, b) = (a.wait(Duration::from_secs(60)), b.wait(Duration::from_secs(60)));
    watcher.finish();
    assert_clean_output(&a);
    assert_clean_output(&b);
    assert!(a.code == 0 || b.code == 0, "neither run finished\n{a}\n{b}");
    for run in [&a, &b] {
        assert!(run.code == 0 || run.code == 1 || run.code == 2 || run.code == 7, "{run}");
    }
    let dest = env.dest(JOB);
    for p in ["outputs/big.bin", "logs/a.txt", "logs/b.txt"] {
        assert_blob_file(&dest.join("artifacts").join(p), env.artifact(JOB, p));
    }
    assert!(working_files(&dest).is_empty());
}

#[test]
fn two_runs_with_lock_timeout_both_succeed_one_after_the_other() {
    let env = TestEnv::new(world(vec![
        ("outputs/big.bin", BlobFixture::generated(18 * MIB + 3, 14)),
        ("logs/a.txt", text("a\n")),
    ]));
    let watcher = FinalWatcher::start(env.dest(JOB), expected_finals(&env, JOB));
    let a = env.spawn(env.command(["download", JOB, "--lock-timeout", "60s"]));
    let b = env.spawn(env.command(["download", JOB, "--lock-timeout", "60s"]));
    let (a, b) = (a.wait(Duration::from_secs(60)), b.wait(Duration::from_secs(60)));
    watcher.finish();
    a.expect_code(0);
    b.expect_code(0);
    assert_finals_exact(&env, &env.dest(JOB), JOB);
    assert_eq!(files_under(&env.dest(JOB)).len(), 2, "{:?}", files_under(&env.dest(JOB)));
}

#[test]
fn sigint_prints_an_interrupted_document() {
    let env = TestEnv::new(world(vec![
        ("outputs/big.bin", BlobFixture::generated(20 * MIB, 15)),
        ("logs/ok.txt", text("ok\n")),
    ]));
    env.emu.add_fault(FaultRule::new("outputs/big.bin", 1, Fault::Stall(Duration::from_secs(20))));
    let dest = env.dest(JOB);
    let running = env.spawn(env.command(["download", JOB, "--json"]));
    wait_until(Duration::from_secs(30), "a part file", || !working_files(&dest).is_empty());
    running.signal(libc::SIGINT);
    let run = running.wait(Duration::from_secs(15));
    assert_clean_output(&run);
    run.expect_code(130);
    assert_eq!(run.doc()["totals"]["interrupted"], true, "{run}");
    assert!(!dest.join("artifacts/outputs/big.bin").exists());
    assert_finals_exact(&env, &dest, JOB);
}

#[test]
fn sigkill_at_random_points_then_a_rerun_completes_exact() {
    let mut files: Vec<(String, BlobFixture)> =
        (0..40).map(|i| (format!("logs/f{i:02}.txt"), text(&format!("{i}\n")))).collect();
    files.push(("outputs/big.bin".into(), BlobFixture::generated(26 * MIB + 7, 16)));
    files.push(("outputs/mid.bin".into(), BlobFixture::generated(3 * MIB + 1, 17)));
    let env = TestEnv::new(world(files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect()));
    let dest = env.dest(JOB);
    let watcher = FinalWatcher::start(dest.clone(), expected_finals(&env, JOB));
    // Deterministic "random" points, from before the first request to well into the transfer.
    let mut seed = 0x9E37_79B9_u64;
    let mut kills = 0;
    for _ in 0..6 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(20 + (seed >> 33) % 400);
        let running = env.spawn(env.command(["download", JOB]));
        std::thread::sleep(delay);
        let mut running = running;
        if running.finished() {
            break;
        }
        running.signal(libc::SIGKILL);
        kills += 1;
        let _ = running.wait(Duration::from_secs(10));
    }
    let rerun = env.run(&["download", JOB, "-vvv"]);
    watcher.finish();
    assert_clean_output(&rerun);
    rerun.expect_code(0);
    eprintln!("sigkill: {kills} kills before the completing run");
    for (p, blob) in &files {
        assert_blob_file(&dest.join("artifacts").join(p), blob);
    }
    assert!(working_files(&dest).is_empty(), "{:?}", working_files(&dest));
}

#[test]
fn sigterm_and_sigint_at_random_points_exit_130_or_finish() {
    let mut files: Vec<(String, BlobFixture)> =
        (0..30).map(|i| (format!("logs/f{i:02}.txt"), text(&format!("{i}\n")))).collect();
    files.push(("outputs/big.bin".into(), BlobFixture::generated(22 * MIB + 9, 18)));
    files.push(("outputs/mid.bin".into(), BlobFixture::generated(2 * MIB + 3, 19)));
    let env = TestEnv::new(world(files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect()));
    let dest = env.dest(JOB);
    let watcher = FinalWatcher::start(dest.clone(), expected_finals(&env, JOB));
    let mut seed = 0x2545_F491_u64;
    let mut interrupted = 0;
    for round in 0..8 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(5 + (seed >> 33) % 300);
        let mut running = env.spawn(env.command(["download", JOB, "--json"]));
        std::thread::sleep(delay);
        if running.finished() {
            let run = running.wait(Duration::from_secs(10));
            run.expect_code(0);
            // Start over, so later rounds interrupt real work again.
            std::fs::remove_dir_all(&dest).expect("clear destination");
            continue;
        }
        running.signal(if round % 2 == 0 { libc::SIGTERM } else { libc::SIGINT });
        let run = running.wait(Duration::from_secs(15));
        assert_clean_output(&run);
        assert!(run.code == 130 || run.code == 0, "after {delay:?}: {run}");
        if run.code == 130 {
            interrupted += 1;
            if let Some(doc) = &run.json {
                assert_eq!(doc["totals"]["interrupted"], true, "{run}");
            }
        }
    }
    let rerun = env.run(&["download", JOB]);
    watcher.finish();
    rerun.expect_code(0);
    eprintln!("signals: {interrupted} of 8 runs interrupted");
    assert!(interrupted > 0, "no run was ever interrupted");
    for (p, blob) in &files {
        assert_blob_file(&dest.join("artifacts").join(p), blob);
    }
    assert!(working_files(&dest).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 5. Load

#[test]
fn many_small_files_across_many_pages_with_a_burst_of_429s() {
    // 10,000 files over 500 pages by default (about 6 s in a debug build); set
    // JOBDL_LOAD_FILES=20000 (or 50000) for the long run.
    let n: usize = std::env::var("JOBDL_LOAD_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let page = (n / 500).max(1);
    const THROTTLED: u32 = 1_000;
    let mut w = World::new();
    let mut job = support::JobFixture::new("job-load", "Completed");
    job.page_size = page;
    w.add_job(job);
    for i in 0..n {
        w.add_artifact("job-load", &format!("outputs/d{:03}/f{i:05}.txt", i / 100), text(&format!("file {i}\n")));
    }
    let env = TestEnv::new(w);
    // 1,000 throttled answers: 5 in a row for every 100th file (each file has 10 attempts).
    for i in (0..n).step_by((n / (THROTTLED as usize / 5)).max(1)) {
        let throttle = Fault::Status { code: 429, retry_after: Some("0".into()) };
        env.emu.add_fault(FaultRule::new(&format!("/f{i:05}.txt"), 5, throttle).method("GET"));
    }
    let started = Instant::now();
    let (code, _, stderr, rss) =
        run_measured(env.command(["download", "job-load", "--parallel", "16"]), Duration::from_secs(120));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{stderr}");
    let dest = env.dest("job-load");
    let got = files_under(&dest);
    assert_eq!(got.len(), n, "files lost");
    for i in (0..n).step_by(97) {
        let p = format!("outputs/d{:03}/f{i:05}.txt", i / 100);
        harness::assert_bytes(&dest.join("artifacts").join(&p), format!("file {i}\n").as_bytes());
    }
    let reqs = env.requests();
    let blob_gets = reqs.iter().filter(|r| r.is_blob()).count();
    let metadata = reqs.len() - blob_gets;
    let minimum = n + THROTTLED as usize;
    eprintln!(
        "load: {n} files in {secs:.1}s ({:.0} files/s), peak RSS {} MiB, {blob_gets} blob requests \
         (minimum {minimum} with {THROTTLED} 429s), {metadata} metadata requests",
        n as f64 / secs,
        rss / 1024
    );
    assert!(blob_gets <= minimum + n / 100, "retry storm: {blob_gets} blob requests for {minimum}");
    assert!(metadata <= 2 * n.div_ceil(page) + 20, "{metadata} metadata requests");
    assert!(rss < 512 * 1024, "peak RSS {rss} KiB");
}

// ---------------------------------------------------------------------------------------------
// 4. Property tests of the parsers that read server data

fn cases() -> ProptestConfig {
    ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() }
}

const VALID_LIST: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults \
    ContainerName=\"c\"><Prefix>p/</Prefix><Blobs><Blob><Name>p/a.txt</Name><Properties>\
    <Etag>0x8DE1</Etag><Content-Length>12</Content-Length><Content-MD5>AAAAAAAAAAAAAAAAAAAAAA==</Content-MD5>\
    </Properties></Blob><Blob><Name Encoded=\"true\">p%2Fb</Name><Properties><Content-Length>0</Content-Length>\
    </Properties></Blob><BlobPrefix><Name>p/d/</Name></BlobPrefix></Blobs><NextMarker>2!abc</NextMarker>\
    </EnumerationResults>";

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)),
        prop_oneof![
            "[a-zA-Z]{0,12}",
            Just("properties".to_string()),
            Just("status".to_string()),
            Just("Completed".to_string()),
            Just("outputs".to_string()),
            Just("uri".to_string()),
            Just("azureml://datastores/x/paths/y".to_string()),
            ".{0,20}",
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let key = prop_oneof![
            Just("properties".to_string()),
            Just("Properties".to_string()),
            Just("status".to_string()),
            Just("outputs".to_string()),
            Just("default".to_string()),
            Just("jobOutputType".to_string()),
            Just("uri".to_string()),
            Just("assetName".to_string()),
            Just("experimentName".to_string()),
            Just("services".to_string()),
            "[a-zA-Z_]{1,10}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn list_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = jobdl::blob::parse_list_page(&bytes);
    }

    #[test]
    fn list_parser_never_panics_on_mutated_xml(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)
    ) {
        let mut xml = VALID_LIST.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(xml.len() + 1);
            match op {
                0 if i < xml.len() => xml[i] = byte,
                1 => xml.insert(i, byte),
                _ if i < xml.len() => { xml.remove(i); }
                _ => {}
            }
        }
        if let Ok(page) = jobdl::blob::parse_list_page(&xml) {
            for item in page.blobs {
                prop_assert!(item.size <= jobdl::blob::MAX_BLOB_SIZE);
            }
        }
    }

    #[test]
    fn safe_relative_path_never_escapes(raw in prop_oneof![
        ".{0,40}",
        "[./\\\\a-z:%]{0,24}",
        prop::collection::vec(prop_oneof![Just(".."), Just("."), Just(""), Just("a"), Just("C:"), Just("%2e%2e"), Just("\\")], 0..6)
            .prop_map(|v| v.join("/")),
    ]) {
        if let Ok(p) = jobdl::safepath::safe_relative_path(&raw) {
            prop_assert!(!p.is_empty());
            prop_assert!(!p.starts_with('/') && !p.contains('\\') && !p.contains(':'), "{p:?}");
            for c in p.split('/') {
                prop_assert!(!c.is_empty() && c != "." && c != "..", "{p:?} from {raw:?}");
            }
            let path = std::path::Path::new(&p);
            prop_assert!(path.is_relative());
            prop_assert!(path.components().all(|c| matches!(c, std::path::Component::Normal(_))), "{p:?}");
        }
    }

    #[test]
    fn blob_url_parser_never_panics(
        scheme in prop_oneof![Just("https"), Just("http"), Just("ftp")],
        host in "[a-z0-9.-]{1,20}",
        path in "(/[a-zA-Z0-9%._~$-]{0,12}){0,5}",
        query in "[a-z]{0,3}(=[a-zA-Z0-9%+/=-]{0,12})?(&[a-z]{1,3}=[a-zA-Z0-9%]{0,8}){0,4}",
    ) {
        if let Ok(url) = url::Url::parse(&format!("{scheme}://{host}{path}?{query}")) {
            let _ = jobdl::blob::parse_blob_url(&url);
        }
    }

    #[test]
    fn job_parser_never_panics(v in json_value()) {
        let _ = jobdl::provider::foundry::parse_job("job", &v);
        let wrapped = serde_json::json!({"name": "job", "properties": v});
        let _ = jobdl::provider::foundry::parse_job("job", &wrapped);
    }
}

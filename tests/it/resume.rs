//! Crash-safe resume across runs: after SIGKILL or Ctrl+C in the middle of a chunked download,
//! a rerun to the same destination fetches only the chunks the resume record does not hold, and
//! a single stream continues from the bytes already on disk; the result is byte-exact.
use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::{BlobFixture, Emulator, Fault, FaultRule, JobFixture, World};

const MIB: u64 = 1 << 20;
const CHUNK: u64 = 8 * MIB;
const SIZE: u64 = 10 * CHUNK + 12345;

fn world() -> World {
    let mut w = World::new();
    w.add_job(JobFixture::new("job-r", "Completed"));
    w.add_artifact("job-r", "ckpt/model.bin", BlobFixture::generated(SIZE, 9));
    w
}

fn spawn(emu: &Emulator, dir: &Path) -> Child {
    jobdl(emu, dir, &["download", "job-r", "--parallel", "1", "--json"])
}

/// Start jobdl with `args` in `dir`, talking to the emulator only.
fn jobdl(emu: &Emulator, dir: &Path, args: &[&str]) -> Child {
    crate::harness::jobdl_at(emu, dir, dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jobdl")
}

fn wait(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("jobdl did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("job-r/artifacts/ckpt/.model.bin.jobdl-state")
}

/// Chunk indexes the resume record holds (empty when there is none).
fn recorded(dir: &Path) -> Vec<u64> {
    let Ok(raw) = std::fs::read(state_path(dir)) else { return Vec::new() };
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
    v["done"].as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).collect()).unwrap_or_default()
}

/// Wait (bounded) until the record holds at least `n` chunks, then stall the next requests.
fn stall_after(emu: &Emulator, dir: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorded(dir).len() < n {
        assert!(Instant::now() < deadline, "no resume record with {n} chunks appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    emu.add_fault(FaultRule::new("model.bin", 1, Fault::Stall(Duration::from_secs(10))));
}

fn chunk_starts_fetched(emu: &Emulator) -> Vec<u64> {
    emu.requests()
        .iter()
        .filter(|r| r.is_blob() && r.path.ends_with("model.bin") && r.status == 206)
        .filter_map(|r| r.range.as_deref()?.strip_prefix("bytes=")?.split('-').next()?.parse().ok())
        .collect()
}

fn assert_complete(emu: &Emulator, dir: &Path) {
    let want = emu.world().artifact_blob("job-r", "ckpt/model.bin").expect("fixture").full_content();
    let got = std::fs::read(dir.join("job-r/artifacts/ckpt/model.bin")).expect("final file");
    assert!(got == want, "content differs");
    assert!(!state_path(dir).exists(), "the record is removed once the file is published");
}

fn resume_after(signal: i32) {
    let emu = Emulator::start(world());
    let t = tempfile::tempdir().expect("tempdir");
    let child = spawn(&emu, t.path());
    let pid = child.id() as i32;
    stall_after(&emu, t.path(), 4);
    // SAFETY: plain kill(2) on the child we started.
    unsafe {
        libc::kill(pid, signal);
    }
    let out = wait(child, Duration::from_secs(20));
    if signal == libc::SIGINT {
        assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(doc["totals"]["interrupted"], true);
    }
    assert!(!t.path().join("job-r/artifacts/ckpt/model.bin").exists(), "no partial file under the final name");
    let kept = recorded(t.path());
    assert!(kept.len() >= 4, "record after the stop: {kept:?}");
    emu.clear_requests();
    let out = wait(spawn(&emu, t.path()), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_complete(&emu, t.path());
    let refetched = chunk_starts_fetched(&emu);
    for i in &kept {
        assert!(!refetched.contains(&(i * CHUNK)), "chunk {i} was recorded yet fetched again: {refetched:?}");
    }
    assert!(refetched.len() as u64 <= 11 - kept.len() as u64, "{refetched:?}");
}

#[test]
fn sigkill_then_rerun_fetches_only_missing_chunks() {
    resume_after(libc::SIGKILL);
}

#[test]
fn ctrl_c_saves_progress_and_rerun_fetches_only_missing_chunks() {
    resume_after(libc::SIGINT);
}

#[test]
fn a_changed_blob_discards_the_record_and_starts_over() {
    let emu = Emulator::start(world());
    let t = tempfile::tempdir().expect("tempdir");
    let child = spawn(&emu, t.path());
    let pid = child.id() as i32;
    stall_after(&emu, t.path(), 4);
    // SAFETY: plain kill(2) on the child we started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let _ = wait(child, Duration::from_secs(20));
    // Tamper with the record's ETag: the server's If-Match check must refuse the old bytes.
    let path = state_path(t.path());
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("record")).expect("json");
    v["etag"] = serde_json::json!("\"0xSTALE\"");
    std::fs::write(&path, serde_json::to_vec(&v).expect("json")).expect("write record");
    emu.clear_requests();
    let out = wait(spawn(&emu, t.path()), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_complete(&emu, t.path());
    assert!(emu.requests().iter().any(|r| r.is_blob() && r.status == 412), "the stale record was not refused");
    assert!(chunk_starts_fetched(&emu).contains(&0), "the file was not started over");
}

#[test]
fn a_streamed_file_killed_midway_resumes_from_the_bytes_on_disk() {
    // A listed 20 MiB blob is under the chunk threshold: one stream, whose record (source, size,
    // ETag) is saved once the response headers arrive. After SIGKILL the rerun hashes the part
    // file's bytes again and asks only for the rest, pinned to the ETag.
    const STREAM: u64 = 20 * MIB + 7;
    let mut w = World::new();
    w.add_blob("c1", "p/model.bin", BlobFixture::generated(STREAM, 3));
    let emu = Emulator::start(w);
    emu.add_fault(FaultRule::new(
        "model.bin",
        1,
        Fault::Trickle { bytes: 256 << 10, every: Duration::from_millis(20) },
    ));
    let t = tempfile::tempdir().expect("tempdir");
    let url = emu.container_sas_url("c1", "p");
    let cp = || jobdl(&emu, t.path(), &["cp", &url, "out", "--json"]);
    let child = cp();
    let pid = child.id() as i32;
    let out = t.path().join("out");
    let (part, state) = (out.join(".model.bin.jobdl-part"), out.join(".model.bin.jobdl-state"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < 4 * MIB {
        assert!(Instant::now() < deadline, "the part file never reached 4 MiB");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: plain kill(2) on the child we started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let _ = wait(child, Duration::from_secs(20));
    assert!(state.exists(), "the stream's record was saved");
    let had = std::fs::metadata(&part).expect("part file kept").len();
    assert!((4 * MIB..STREAM).contains(&had), "{had}");
    emu.clear_requests();
    let run = wait(cp(), Duration::from_secs(60));
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let want = emu.world().blob("c1", "p/model.bin").expect("fixture").full_content();
    assert!(std::fs::read(out.join("model.bin")).expect("final file") == want, "content differs");
    assert!(!state.exists() && !part.exists(), "record and part file gone once published");
    let gets: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.is_blob() && r.path.ends_with("model.bin") && r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 1, "one request for the rest");
    assert_eq!(gets[0].range.as_deref(), Some(format!("bytes={had}-").as_str()));
    assert!(gets[0].if_match.is_some(), "pinned to the ETag it started with");
}

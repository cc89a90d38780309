//! Engine behaviour that crosses the provider seam: refreshing a refused content URI (§2.8) and
//! probing unknown sizes with a ranged first chunk, driven through the built binary.
use crate::support;

use std::process::Output;
use support::{BlobFixture, Emulator, Fault, FaultRule, JobFixture, World};

const MIB: u64 = 1 << 20;

fn world() -> World {
    let mut w = World::new();
    w.add_job(JobFixture::new("job-e", "Completed"));
    w.add_artifact("job-e", "outputs/big.bin", BlobFixture::generated(20 * MIB + 123, 5));
    w.add_artifact("job-e", "logs/small.txt", BlobFixture::bytes(b"small\n".to_vec()));
    w
}

fn run(emu: &Emulator, dir: &std::path::Path, args: &[&str]) -> Output {
    run_with(emu, dir, args, &[])
}

/// [`run`] with extra environment variables.
fn run_with(emu: &Emulator, dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = crate::harness::jobdl_at(emu, dir, dir)
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn jobdl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("jobdl did not finish within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

fn assert_exact(emu: &Emulator, dest: &std::path::Path, path: &str) {
    let want = emu.world().artifact_blob("job-e", path).expect("fixture").full_content();
    let got = std::fs::read(dest.join("artifacts").join(path)).expect("downloaded file");
    assert!(got == want, "{path}: content differs ({} vs {} bytes)", got.len(), want.len());
}

#[test]
fn refused_content_uri_is_refreshed_once_and_the_file_completes() {
    let emu = Emulator::start(world());
    emu.add_fault(FaultRule::new("outputs/big.bin", 1, Fault::Status { code: 403, retry_after: None }));
    let t = tempfile::tempdir().expect("tempdir");
    let out = run(&emu, t.path(), &["download", "job-e"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_exact(&emu, &t.path().join("job-e"), "outputs/big.bin");
    let reqs = emu.requests();
    assert!(
        reqs.iter().any(
            |r| r.path.ends_with("/artifacts/contentinfo") && r.param("path").as_deref() == Some("outputs/big.bin")
        ),
        "no per-path contentinfo refresh was made"
    );
    // The fresh URL (per-path contentinfo signs with PATH_CONTENT_SIG) fetched the bytes.
    assert!(reqs.iter().any(|r| r.is_blob() && r.query.contains(support::PATH_CONTENT_SIG) && r.status == 206));
}

#[test]
fn a_second_refusal_fails_only_that_file() {
    let emu = Emulator::start(world());
    emu.add_fault(FaultRule::new("outputs/big.bin", 100, Fault::Status { code: 403, retry_after: None }));
    let t = tempfile::tempdir().expect("tempdir");
    let out = run(&emu, t.path(), &["download", "job-e", "--json"]);
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let files = doc["files"].as_array().expect("files");
    let big = files.iter().find(|f| f["path"] == "artifacts/outputs/big.bin").expect("entry");
    assert_eq!(big["result"], "failed");
    assert!(big["error"].as_str().unwrap_or("").contains("403"));
    assert!(!t.path().join("job-e/artifacts/outputs/big.bin").exists());
    assert_exact(&emu, &t.path().join("job-e"), "logs/small.txt");
    let refreshes = emu.requests().iter().filter(|r| r.path.ends_with("/artifacts/contentinfo")).count();
    assert_eq!(refreshes, 1, "the URL is refreshed once, not in a loop");
}

#[test]
fn unknown_size_is_probed_then_fetched_in_parallel_ranges() {
    let emu = Emulator::start(world());
    let t = tempfile::tempdir().expect("tempdir");
    let out = run(&emu, t.path(), &["download", "job-e"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_exact(&emu, &t.path().join("job-e"), "outputs/big.bin");
    let ranges: Vec<String> = emu
        .requests()
        .iter()
        .filter(|r| r.is_blob() && r.path.ends_with("big.bin"))
        .filter_map(|r| r.range.clone())
        .collect();
    assert_eq!(ranges.first().map(String::as_str), Some("bytes=0-8388607"), "{ranges:?}");
    assert!(ranges.contains(&"bytes=8388608-16777215".to_string()), "{ranges:?}");
    assert!(ranges.contains(&format!("bytes=16777216-{}", 20 * MIB + 122)), "{ranges:?}");
    // Every chunk after the probe is pinned to the probe's ETag.
    let pinned =
        emu.requests().iter().filter(|r| r.is_blob() && r.path.ends_with("big.bin") && r.if_match.is_some()).count();
    assert_eq!(pinned, 2);
    // A small file of unknown size is one request.
    let small = emu.requests().iter().filter(|r| r.is_blob() && r.path.ends_with("small.txt")).count();
    assert_eq!(small, 1);
}

#[test]
fn a_second_run_waits_for_the_lock_with_lock_timeout() {
    let emu = Emulator::start(world());
    emu.add_fault(FaultRule::new("logs/small.txt", 1, Fault::Stall(std::time::Duration::from_secs(2))));
    let t = tempfile::tempdir().expect("tempdir");
    let first = {
        let emu = &emu;
        let dir = t.path().to_path_buf();
        std::thread::scope(|s| {
            let first = s.spawn(move || run(emu, &dir, &["download", "job-e"]));
            // Let the first run take the lock (it exists once the destination is being written).
            let lock = t.path().join("job-e/.jobdl/lock");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !lock.exists() {
                assert!(std::time::Instant::now() < deadline, "first run never took the lock");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let second = run(emu, t.path(), &["download", "job-e", "--lock-timeout", "60s"]);
            let stderr = String::from_utf8_lossy(&second.stderr);
            assert_eq!(second.status.code(), Some(0), "{stderr}");
            assert!(stderr.contains("waiting"), "{stderr}");
            first.join().expect("first run")
        })
    };
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    assert_exact(&emu, &t.path().join("job-e"), "outputs/big.bin");
}

#[test]
fn connection_refused_is_retried_then_fails_only_that_file() {
    // A loopback port with nothing listening: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut w = world();
    w.push_artifact(
        "job-e",
        "outputs/refused.bin",
        support::ContentUri::Raw(format!(
            "http://127.0.0.1:{port}/devstoreaccount1/azureml/refused.bin?sv=1&sig=REFUSEDSIG"
        )),
    );
    let emu = Emulator::start(w);
    let t = tempfile::tempdir().expect("tempdir");
    let allow = format!("127.0.0.1:{port}");
    let out = run(&emu, t.path(), &["download", "job-e", "--json", "--retries", "3", "--allow-host", &allow, "-vv"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let refused = doc["files"].as_array().expect("files").iter().find(|f| f["path"] == "artifacts/outputs/refused.bin");
    let refused = refused.expect("entry for the refused file");
    assert_eq!(refused["result"], "failed");
    let err = refused["error"].as_str().unwrap_or("");
    assert!(err.contains("connection failed") && err.contains("after 3 attempts"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("REFUSEDSIG") && !stderr.contains("REFUSEDSIG"));
    assert_exact(&emu, &t.path().join("job-e"), "outputs/big.bin");
    assert_exact(&emu, &t.path().join("job-e"), "logs/small.txt");
    assert!(!t.path().join("job-e/artifacts/outputs/refused.bin").exists());
}

#[test]
fn chunks_whose_bodies_stall_complete_byte_exact() {
    // The first two ranged requests send their headers, then nothing for a second: their
    // connections wait for data without holding a place in the writer queue, and every byte still
    // lands where it belongs.
    let emu = Emulator::start(world());
    emu.add_fault(FaultRule::new("outputs/big.bin", 2, Fault::Stall(std::time::Duration::from_secs(1))));
    let t = tempfile::tempdir().expect("tempdir");
    let out = run(&emu, t.path(), &["download", "job-e"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_exact(&emu, &t.path().join("job-e"), "outputs/big.bin");
    assert_exact(&emu, &t.path().join("job-e"), "logs/small.txt");
    let ranged =
        emu.requests().iter().filter(|r| r.is_blob() && r.path.ends_with("big.bin") && r.status == 206).count();
    assert_eq!(ranged, 3, "three chunks, none fetched twice");
}

#[test]
fn the_other_chunks_start_on_the_first_chunks_headers_not_its_body() {
    // The first ranged request answers its headers, then sends nothing for 3 s. Those headers are
    // all the other chunks need (the size, the ETag, ranges honoured), so they are requested while
    // the first body is still stalled; before, they waited for it.
    let stall = std::time::Duration::from_secs(3);
    let emu = Emulator::start(world());
    emu.add_fault(FaultRule::new("outputs/big.bin", 1, Fault::Stall(stall)));
    let t = tempfile::tempdir().expect("tempdir");
    let out = run(&emu, t.path(), &["download", "job-e"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_exact(&emu, &t.path().join("job-e"), "outputs/big.bin");
    let ranged: Vec<_> =
        emu.requests().into_iter().filter(|r| r.is_blob() && r.path.ends_with("big.bin") && r.status == 206).collect();
    assert_eq!(ranged.len(), 3, "three chunks, none fetched twice");
    let first = ranged.iter().find(|r| r.range.as_deref().is_some_and(|v| v.starts_with("bytes=0-"))).expect("chunk 0");
    for r in ranged.iter().filter(|r| !r.range.as_deref().is_some_and(|v| v.starts_with("bytes=0-"))) {
        let after = r.at.duration_since(first.at);
        assert!(after < stall, "{:?} was requested {after:?} after chunk 0, not during its stalled body", r.range);
    }
}

/// A large file (here 96 chunks of 64 KiB) asks for several consecutive chunks per request: the
/// first chunk alone (it confirms size and ETag), then runs of three, covering the file exactly once.
#[test]
fn a_large_file_asks_for_several_chunks_per_request() {
    const CHUNK: u64 = 64 << 10;
    let total = 96 * CHUNK + 123;
    let mut w = World::new();
    w.add_job(JobFixture::new("job-e", "Completed"));
    w.add_artifact("job-e", "outputs/big.bin", BlobFixture::generated(total, 9));
    let emu = Emulator::start(w);
    let t = tempfile::tempdir().expect("tempdir");
    let out = run_with(&emu, t.path(), &["download", "job-e"], &[("JOBDL_CHUNK_SIZE", "64KiB")]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_exact(&emu, &t.path().join("job-e"), "outputs/big.bin");
    let mut ranges: Vec<(u64, u64)> = emu
        .requests()
        .iter()
        .filter(|r| r.is_blob() && r.path.ends_with("big.bin") && r.status == 206)
        .filter_map(|r| {
            let (a, b) = r.range.as_deref()?.strip_prefix("bytes=")?.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    ranges.sort();
    assert_eq!(ranges.first(), Some(&(0, CHUNK - 1)), "{ranges:?}");
    // 96 chunks / 32 = 3 chunks per request after the first.
    assert!(ranges[1..].iter().all(|(a, b)| a % CHUNK == 0 && b - a < 3 * CHUNK), "{ranges:?}");
    assert!(ranges[1..ranges.len() - 1].iter().all(|(a, b)| b - a + 1 == 3 * CHUNK), "{ranges:?}");
    let mut next = 0;
    for (a, b) in &ranges {
        assert_eq!(*a, next, "ranges are disjoint and leave no gap: {ranges:?}");
        next = b + 1;
    }
    assert_eq!(next, total);
}

#[test]
fn a_chunk_size_out_of_bounds_is_refused_before_any_request() {
    let emu = Emulator::start(world());
    let t = tempfile::tempdir().expect("tempdir");
    for bad in ["1KiB", "1GiB", "lots"] {
        let out = run_with(&emu, t.path(), &["download", "job-e"], &[("JOBDL_CHUNK_SIZE", bad)]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("JOBDL_CHUNK_SIZE"), "{bad}");
    }
    assert!(emu.requests().is_empty());
}

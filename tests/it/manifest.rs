//! The manifest (`DEST/.jobdl/manifest.json`), reruns that cost one listing, no silent overwrite,
//! and `jobdl verify` (issues 21 items 2–3, 24 item 4), against the emulator.
#![allow(dead_code)]

use crate::harness;
use crate::support;
use crate::support::check;

use harness::{TestEnv, assert_bytes, is_blob_data, one_job, text};
use serde_json::Value;
use support::Md5Mode;

fn manifest(dest: &std::path::Path) -> Value {
    let bytes = std::fs::read(dest.join(".jobdl/manifest.json")).expect("manifest.json");
    serde_json::from_slice(&bytes).expect("manifest is JSON")
}

fn md5hex(b: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn blob_gets(env: &TestEnv) -> usize {
    env.requests().iter().filter(|r| r.method == "GET" && is_blob_data(r)).count()
}

fn two_files() -> support::World {
    one_job("job-m", vec![("a.txt", text("alpha\n")), ("logs/b.txt", text("bravo\n").with_md5(Md5Mode::Absent))])
}

#[test]
fn a_download_writes_a_manifest_and_a_rerun_costs_one_listing() {
    let env = TestEnv::new(two_files());
    env.run(&["download", "job-m"]).expect_code(0);
    let dest = env.dest("job-m");
    let m = manifest(&dest);
    assert_eq!(m["version"], 1, "{m}");
    assert_eq!(m["job"], "job-m", "{m}");
    assert!(m["source"].as_str().unwrap().starts_with("foundry http"), "{m}");
    assert!(!dest.join(".jobdl/lock").exists(), "the lock is gone, the manifest stays");
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{m}");
    let a = &files[0];
    assert_eq!(a["path"], "artifacts/a.txt");
    assert_eq!(a["size"], 6);
    assert_eq!(a["verified_by"], "md5");
    assert_eq!(a["hash"]["kind"], "md5");
    assert_eq!(a["hash"]["value"], md5hex(b"alpha\n"));
    assert!(a["etag"].as_str().is_some_and(|e| !e.is_empty()), "{m}");
    assert!(a["mtime_ns"].as_u64().is_some() && a["time"].as_str().is_some(), "{m}");
    // No MD5 from the service: the MD5 computed while the bytes landed is recorded, vouched by none.
    let b = &files[1];
    assert_eq!(b["path"], "artifacts/logs/b.txt");
    assert_eq!(b["verified_by"], "none");
    assert_eq!(b["hash"]["value"], md5hex(b"bravo\n"));

    // A rerun: one listing, every file kept, no byte fetched (no flag needed).
    env.emu.clear_requests();
    let run = env.run(&["download", "job-m", "--json"]);
    run.expect_code(0);
    for p in ["artifacts/a.txt", "artifacts/logs/b.txt"] {
        assert_eq!(run.entry(p)["result"], "skipped", "{run}");
    }
    assert_eq!(run.entry("artifacts/a.txt")["md5"], "verified", "{run}");
    assert_eq!(blob_gets(&env), 0, "{run}");
    // (Foundry default artifacts are listed without sizes: one HEAD per file tells them.)

    // verify: everything as recorded.
    let run = env.run(&["verify", "job-m", "--json"]);
    run.expect_code(0);
    check::validate(run.doc());
    assert_eq!(run.doc()["totals"]["ok"], 2, "{run}");
    assert_eq!(run.doc()["job"], "job-m", "{run}");
}

/// A listing that gives sizes and MD5s (a named output): the rerun sends no request per file.
#[test]
fn a_rerun_of_a_listed_output_sends_no_request_per_file() {
    let env = TestEnv::new(support::standard_world());
    let args = ["download", "job-123", "--output", "metrics", "--json"];
    env.run(&args).expect_code(0);
    env.emu.clear_requests();
    let run = env.run(&args);
    run.expect_code(0);
    assert_eq!(run.doc()["totals"]["skipped"], 3, "{run}");
    let per_file: Vec<String> = env
        .requests()
        .iter()
        .filter(|r| (r.method == "GET" || r.method == "HEAD") && is_blob_data(r))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(per_file.is_empty(), "{per_file:?}");
}

#[test]
fn a_file_edited_after_the_download_is_refused_unless_overwrite() {
    let env = TestEnv::new(two_files());
    env.run(&["download", "job-m"]).expect_code(0);
    let dest = env.dest("job-m");
    // Same size, other bytes (the MD5-less file) and another size (the other).
    std::fs::write(dest.join("artifacts/logs/b.txt"), b"BRAVO\n").unwrap();
    std::fs::write(dest.join("artifacts/a.txt"), b"my notes, longer\n").unwrap();

    // verify names each difference.
    let run = env.run(&["verify", "job-m"]);
    run.expect_code(6);
    assert!(run.stderr.contains("changed: artifacts/a.txt"), "{run}");
    assert!(run.stderr.contains("changed: artifacts/logs/b.txt"), "{run}");

    let run = env.run(&["download", "job-m", "--json"]);
    run.expect_code(6);
    for p in ["artifacts/a.txt", "artifacts/logs/b.txt"] {
        assert_eq!(run.entry(p)["result"], "failed", "{run}");
        assert!(run.entry(p)["error"].as_str().unwrap().contains("--overwrite"), "{run}");
    }
    assert_bytes(&dest.join("artifacts/a.txt"), b"my notes, longer\n");
    assert_bytes(&dest.join("artifacts/logs/b.txt"), b"BRAVO\n");
    // Without --json the refusal names the file on stderr.
    let run = env.run(&["download", "job-m"]);
    run.expect_code(6);
    assert!(
        run.stderr.contains("artifacts/a.txt") && run.stderr.contains("changed since jobdl downloaded it"),
        "{run}"
    );

    let run = env.run(&["download", "job-m", "--overwrite", "--json"]);
    run.expect_code(0);
    assert_bytes(&dest.join("artifacts/a.txt"), b"alpha\n");
    assert_bytes(&dest.join("artifacts/logs/b.txt"), b"bravo\n");
    env.run(&["verify", "job-m"]).expect_code(0);

    // A deleted file is "missing" to verify, and simply fetched again by a rerun.
    std::fs::remove_file(dest.join("artifacts/a.txt")).unwrap();
    let run = env.run(&["verify", "job-m", "--json"]);
    run.expect_code(6);
    check::validate(run.doc());
    let missing: Vec<&Value> =
        run.doc()["files"].as_array().unwrap().iter().filter(|f| f["status"] == "missing").collect();
    assert_eq!(missing.len(), 1, "{run}");
    assert_eq!(missing[0]["path"], "artifacts/a.txt");
    let run = env.run(&["download", "job-m", "--json"]);
    run.expect_code(0);
    assert_eq!(run.entry("artifacts/a.txt")["result"], "downloaded", "{run}");
    assert_eq!(run.entry("artifacts/logs/b.txt")["result"], "skipped", "{run}");
}

#[test]
fn an_unrecorded_local_file_is_kept_when_it_matches_and_refused_when_it_differs() {
    let env = TestEnv::new(one_job(
        "job-u",
        vec![("same.txt", text("same\n")), ("other.txt", text("service\n")), ("new.txt", text("new\n"))],
    ));
    let arts = env.dest("job-u").join("artifacts");
    std::fs::create_dir_all(&arts).unwrap();
    std::fs::write(arts.join("same.txt"), b"same\n").unwrap();
    std::fs::write(arts.join("other.txt"), b"mine!!!!\n").unwrap();
    let run = env.run(&["download", "job-u", "--json"]);
    run.expect_code(6);
    assert_eq!(run.entry("artifacts/same.txt")["result"], "skipped", "{run}");
    assert_eq!(run.entry("artifacts/new.txt")["result"], "downloaded", "{run}");
    assert_eq!(run.entry("artifacts/other.txt")["result"], "failed", "{run}");
    assert!(run.entry("artifacts/other.txt")["error"].as_str().unwrap().contains("no record"), "{run}");
    assert_bytes(&arts.join("other.txt"), b"mine!!!!\n");
    // The kept and the new file are recorded; the refused one is not.
    let m = manifest(&env.dest("job-u"));
    let paths: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["artifacts/new.txt", "artifacts/same.txt"], "{m}");
}

/// The object changed on the service (same size, no MD5, another ETag): the rerun fetches the new
/// version over jobdl's own unchanged copy without asking for --overwrite.
#[test]
fn an_object_that_changed_on_the_service_is_fetched_again() {
    let no_md5 = |s: &str| text(s).with_md5(Md5Mode::Absent);
    let first = TestEnv::new(one_job("job-c", vec![("a.txt", no_md5("one\n")), ("b.txt", no_md5("keep\n"))]));
    let dest = first.dest("job-c");
    first.run(&["download", "job-c"]).expect_code(0);
    let second = TestEnv::new(one_job("job-c", vec![("a.txt", no_md5("two\n")), ("b.txt", no_md5("keep\n"))]));
    let path = dest.to_str().unwrap();
    let run = second.run(&["download", "job-c", "-p", path, "--json"]);
    run.expect_code(0);
    assert_eq!(run.entry("artifacts/a.txt")["result"], "downloaded", "{run}");
    assert_eq!(run.entry("artifacts/b.txt")["result"], "skipped", "{run}");
    assert_bytes(&dest.join("artifacts/a.txt"), b"two\n");
}

#[test]
fn verify_without_a_manifest_exits_4() {
    let env = TestEnv::new(two_files());
    std::fs::create_dir_all(env.work().join("empty")).unwrap();
    let run = env.run(&["verify", "empty"]);
    run.expect_code(4);
    assert!(run.stderr.contains("no manifest"), "{run}");
}

/// After Ctrl+C, the files verified before the interruption are recorded: the rerun fetches only
/// the file that was still in flight.
#[test]
fn after_ctrl_c_the_rerun_fetches_only_unverified_files() {
    use support::{Fault, FaultRule};
    let mut world = one_job("job-i", vec![("a.txt", text("alpha\n")), ("b.txt", text("bravo\n"))]);
    world.add_artifact("job-i", "big.bin", support::BlobFixture::generated(1 << 20, 5));
    let env = TestEnv::new(world);
    // The big file's first data request stalls: it is in flight when Ctrl+C comes.
    env.emu.add_fault(FaultRule::new("big.bin", 1, Fault::Stall(std::time::Duration::from_secs(120))).method("GET"));
    let dest = env.dest("job-i");
    let running = env.spawn(env.command(["download", "job-i", "--json"]));
    harness::wait_until(harness::CHILD_LIMIT, "the small files", || {
        dest.join("artifacts/a.txt").is_file() && dest.join("artifacts/b.txt").is_file()
    });
    running.signal(libc::SIGINT);
    let run = running.wait(harness::CHILD_LIMIT);
    run.expect_code(130);
    let m = manifest(&dest);
    let paths: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["artifacts/a.txt", "artifacts/b.txt"], "{m}");

    env.emu.clear_requests();
    let run = env.run(&["download", "job-i", "--json"]);
    run.expect_code(0);
    assert_eq!(run.entry("artifacts/a.txt")["result"], "skipped", "{run}");
    assert_eq!(run.entry("artifacts/b.txt")["result"], "skipped", "{run}");
    assert_eq!(run.entry("artifacts/big.bin")["result"], "downloaded", "{run}");
    let gets: Vec<String> =
        env.requests().iter().filter(|r| r.method == "GET" && is_blob_data(r)).map(|r| r.path.clone()).collect();
    assert!(!gets.is_empty() && gets.iter().all(|p| p.ends_with("big.bin")), "{gets:?}");
    env.run(&["verify", "job-i"]).expect_code(0);
}

/// Every file under `dir`, hidden ones included, relative and sorted.
fn every_file(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).expect("below base").to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `cp` leaves exactly the copied files (a destination compared file for file with its source
/// stays equal); `--manifest` opts in to the record `verify` checks. Either way a rerun skips
/// the files that still match.
#[test]
fn cp_leaves_only_the_copied_files_unless_asked_for_a_manifest() {
    let env = TestEnv::new(support::standard_world());
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1");
    env.run(&["cp", &url, "plain"]).expect_code(0);
    let plain = env.work().join("plain");
    assert_eq!(every_file(&plain), ["acc.csv", "loss.csv", "sub/summary.json"]);
    let gets = blob_gets(&env);
    let run = env.run(&["cp", &url, "plain", "--json"]);
    run.expect_code(0);
    assert_eq!(blob_gets(&env), gets, "a rerun fetches nothing: {run:?}");
    assert_eq!(every_file(&plain), ["acc.csv", "loss.csv", "sub/summary.json"]);

    env.run(&["cp", &url, "recorded", "--manifest"]).expect_code(0);
    let recorded = env.work().join("recorded");
    assert_eq!(every_file(&recorded), [".jobdl/manifest.json", "acc.csv", "loss.csv", "sub/summary.json"]);
    env.run(&["verify", "recorded"]).expect_code(0);
    // A manifest already there is kept up to date by a later cp without the flag.
    std::fs::write(recorded.join("acc.csv"), "edited\n").expect("edit");
    env.run(&["cp", &url, "recorded", "--overwrite"]).expect_code(0);
    env.run(&["verify", "recorded"]).expect_code(0);
}

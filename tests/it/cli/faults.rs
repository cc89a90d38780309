//! Scripted service faults: throttling, outages, broken bodies, ignored ranges, bad MD5, redaction.

use crate::harness::{
    MODEL_BLOB, MODEL_CONTAINER, TestEnv, assert_blob_file, assert_bytes, check_summary, files_under, model_world,
    one_job, payload, range_start, text, working_files,
};
use crate::support::{BlobFixture, Emulator, Fault, FaultRule, TOKEN, standard_world};

const MIB: u64 = 1 << 20;

fn three_files() -> crate::support::World {
    one_job("job-r", vec![("a.txt", text("a\n")), ("b.txt", text("b\n")), ("sub/c.txt", text("c\n"))])
}

fn status(code: u16, retry_after: Option<&str>) -> Fault {
    Fault::Status { code, retry_after: retry_after.map(str::to_string) }
}

#[test]
fn throttling_and_unavailable_are_retried() {
    let env = TestEnv::new(three_files());
    env.emu.add_fault(FaultRule::new("dcid.job-r/a.txt", 3, status(429, Some("0"))).method("GET"));
    env.emu.add_fault(FaultRule::new("/jobs/job-r", 2, status(503, None)).method("GET"));
    let run = env.run(&["download", "job-r", "--json"]);
    run.expect_code(0);
    let dest = env.dest("job-r");
    for p in ["a.txt", "b.txt", "sub/c.txt"] {
        assert_blob_file(&dest.join("artifacts").join(p), env.artifact("job-r", p));
    }
    assert_eq!(files_under(&dest), payload(["artifacts/a.txt", "artifacts/b.txt", "artifacts/sub/c.txt"]));
    check_summary(&run, Some(("job-r", "Completed")), &dest);

    let job_gets: Vec<u16> =
        env.requests().iter().filter(|r| r.path.ends_with("/jobs/job-r")).map(|r| r.status).collect();
    assert_eq!(job_gets, [503, 503, 200]);
    let blob: Vec<u16> = env.blob_gets("dcid.job-r/a.txt").iter().map(|r| r.status).collect();
    assert_eq!(blob[..3], [429, 429, 429], "{blob:?}");
    assert!(blob.len() == 4 && (blob[3] == 200 || blob[3] == 206), "{blob:?}");
}

#[test]
fn endless_503_on_the_job_exits_1_after_5_attempts() {
    let env = TestEnv::new(three_files());
    env.emu.add_fault(FaultRule::new("/jobs/job-r", 100, status(503, None)).method("GET"));
    let run = env.run(&["download", "job-r", "--json"]);
    run.expect_code(1);
    assert!(run.stderr.contains("service unavailable (HTTP 503) after 5 attempts"), "{run}");
    assert_eq!(run.doc()["error"]["code"], "service_unavailable");
    assert_eq!(run.doc()["error"]["exit_code"], 1);
    assert_eq!(env.requests().len(), 5, "exactly 5 attempts");
    assert!(!env.dest("job-r").exists());
}

#[test]
fn missing_blob_fails_only_that_file() {
    let env = TestEnv::new(three_files());
    env.emu.add_fault(FaultRule::new("dcid.job-r/b.txt", 100, status(404, None)));
    let run = env.run(&["download", "job-r", "--json"]);
    run.expect_code(6);
    let dest = env.dest("job-r");
    assert!(!dest.join("artifacts/b.txt").exists());
    let finals: Vec<String> = files_under(&dest).into_iter().filter(|p| !working_files(&dest).contains(p)).collect();
    assert_eq!(finals, ["artifacts/a.txt", "artifacts/sub/c.txt"]);
    let b = run.entry("artifacts/b.txt");
    assert_eq!(b["result"], "failed");
    assert!(b["error"].as_str().unwrap().contains("404"), "{b}");
    assert_eq!(run.entry("artifacts/a.txt")["result"], "downloaded");
    assert_eq!(run.entry("artifacts/sub/c.txt")["result"], "downloaded");
    check_summary(&run, Some(("job-r", "Completed")), &dest);
    // A 404 is not retried ten times.
    assert!(env.blob_gets("dcid.job-r/b.txt").len() <= 2);
}

fn big_world() -> crate::support::World {
    one_job("job-big", vec![("outputs/big.bin", BlobFixture::generated(20 * MIB, 1)), ("small.txt", text("small\n"))])
}

/// A body cut after `cut` bytes is resumed from where it stopped, pinned to the ETag.
fn resumes_after(fault: Fault, cut: u64) {
    let env = TestEnv::new(big_world());
    env.emu.add_fault(FaultRule::new("big.bin", 1, fault).method("GET"));
    let run = env.run(&["download", "job-big", "--json"]);
    run.expect_code(0);
    let dest = env.dest("job-big");
    let big = env.artifact("job-big", "outputs/big.bin");
    assert_blob_file(&dest.join("artifacts/outputs/big.bin"), big);
    assert_eq!(files_under(&dest), payload(["artifacts/outputs/big.bin", "artifacts/small.txt"]));
    assert_eq!(run.entry("artifacts/outputs/big.bin")["md5"], "verified");

    let gets = env.blob_gets("big.bin");
    assert!(gets.len() >= 2, "no follow-up request after the cut");
    let etag = format!("\"{}\"", big.etag);
    let resume = gets[1..].iter().find(|r| range_start(r).is_some_and(|s| s > 0 && s <= cut));
    let Some(resume) = resume else {
        panic!("no resume from an offset; ranges: {:?}", gets.iter().map(|r| r.range.clone()).collect::<Vec<_>>());
    };
    assert_eq!(resume.if_match.as_deref(), Some(etag.as_str()), "resume without If-Match");
    assert!(!gets[1..].iter().any(|r| r.range.is_none() || range_start(r) == Some(0)), "restarted from byte 0");
}

#[test]
fn reset_mid_body_resumes_from_the_offset() {
    resumes_after(Fault::ResetAfter(5_000_000), 5_000_000);
}

#[test]
fn short_body_resumes_from_the_offset() {
    resumes_after(Fault::ShortBody(3_000_000), 3_000_000);
}

#[test]
fn reset_inside_a_model_chunk_resumes_that_chunk() {
    let env = TestEnv::new(model_world(40 * MIB));
    let cut = 3_000_000;
    env.emu.add_fault(FaultRule::new("model.safetensors", 1, Fault::ResetAfter(cut)).method("GET"));
    let run = env.run(&["download", "job-m", "--output", "model", "--json"]);
    run.expect_code(0);
    let dest = env.dest("job-m");
    let model = env.blob(MODEL_CONTAINER, MODEL_BLOB);
    assert_blob_file(&dest.join("named-outputs/model/model.safetensors"), model);
    assert_eq!(run.entry("named-outputs/model/model.safetensors")["md5"], "verified");
    let gets = env.blob_gets("model.safetensors");
    let first = &gets[0];
    let resumed = gets.iter().skip(1).any(|r| {
        range_start(r)
            .is_some_and(|s| s > range_start(first).unwrap_or(0) && s <= range_start(first).unwrap_or(0) + cut)
            && r.if_match.is_some()
    });
    assert!(resumed, "the cut chunk was not resumed: {:?}", gets.iter().map(|r| r.range.clone()).collect::<Vec<_>>());
    assert!(working_files(&dest).is_empty());
}

#[test]
fn ignored_range_falls_back_to_one_stream() {
    let env = TestEnv::new(model_world(40 * MIB));
    // A server that never honours Range.
    env.emu.add_fault(FaultRule::new("model.safetensors", 1000, Fault::IgnoreRange).method("GET"));
    let run = env.run(&["download", "job-m", "--output", "model", "--json"]);
    run.expect_code(0);
    let dest = env.dest("job-m");
    assert_blob_file(&dest.join("named-outputs/model/model.safetensors"), env.blob(MODEL_CONTAINER, MODEL_BLOB));
    assert_eq!(run.entry("named-outputs/model/model.safetensors")["md5"], "verified");
    let gets = env.blob_gets("model.safetensors");
    assert!(gets.iter().all(|r| r.status == 200));
    assert!(gets.len() <= 3, "{} whole-body GETs of a 40 MiB blob", gets.len());
    assert!(working_files(&dest).is_empty());
}

#[test]
fn md5_mismatch_fails_the_file_and_leaves_no_final_name() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-badmd5", "--json"]);
    run.expect_code(6);
    let dest = env.dest("job-badmd5");
    assert!(!dest.join("artifacts/outputs/bad.bin").exists(), "a file that failed MD5 is under its final name");
    assert_blob_file(&dest.join("artifacts/outputs/good.txt"), env.artifact("job-badmd5", "outputs/good.txt"));
    let bad = run.entry("artifacts/outputs/bad.bin");
    assert_eq!(bad["result"], "failed");
    assert_eq!(bad["md5"], "mismatch");
    assert_eq!(run.entry("artifacts/outputs/good.txt")["result"], "downloaded");
    check_summary(&run, Some(("job-badmd5", "Completed")), &dest);
    assert!(working_files(&dest).is_empty(), "{:?}", working_files(&dest));
}

/// Fails if any output carries a SAS signature or the token.
#[track_caller]
fn assert_no_secrets(output: &str) {
    assert!(!output.contains("FAKESIG"), "a SAS signature leaked:\n{output}");
    for sig in [crate::support::CONTAINER_SIG, crate::support::BLOB_SIG] {
        assert!(!output.contains(sig), "{sig} leaked");
    }
    for sig in [crate::support::PREFIX_CONTENT_SIG, crate::support::PATH_CONTENT_SIG] {
        let decoded = percent_encoding::percent_decode_str(sig).decode_utf8_lossy().into_owned();
        assert!(!output.contains(sig) && !output.contains(&decoded), "{sig} leaked");
    }
    assert!(!output.contains(TOKEN), "the bearer token leaked:\n{output}");
}

fn faulty(emu: &Emulator) {
    emu.add_fault(FaultRule::new("dcid.job-r/a.txt", 1, status(503, None)).method("GET"));
    emu.add_fault(FaultRule::new("dcid.job-r/b.txt", 100, status(403, None)));
    emu.add_fault(FaultRule::new("job-123-metrics/1/acc.csv", 100, status(403, None)));
}

#[test]
fn secrets_never_reach_any_output() {
    let mut world = three_files();
    let std = standard_world();
    for name in ["job-123-metrics/1/loss.csv", "job-123-metrics/1/acc.csv"] {
        world.add_blob("data-0001", name, std.blob("data-0001", name).unwrap().clone());
    }
    world.datasets = std.datasets.clone();
    world.job_mut("job-r").outputs["metrics"] = crate::support::asset_output("uri_folder", "job-123-metrics", "1");
    let env = TestEnv::new(world);
    faulty(&env.emu);
    let run = env.run(&["download", "job-r", "--all-outputs", "-vvv"]);
    run.expect_code(6);
    assert_no_secrets(&run.all_output());
    assert!(run.stderr.contains("/devstoreaccount1/"), "-vvv logged no storage URL, so nothing was tested\n{run}");
    assert_bytes(&env.dest("job-r").join("artifacts/a.txt"), b"a\n");

    faulty(&env.emu);
    let run = env.run(&["download", "job-r", "--all-outputs", "-vvv", "--json", "-p", "again"]);
    run.expect_code(6);
    assert_no_secrets(&run.all_output());

    // cp with a blob SAS that is refused, and a container SAS.
    env.emu.add_fault(FaultRule::new("loss.csv", 100, status(403, None)));
    let url = env.emu.blob_sas_url("data-0001", "job-123-metrics/1/loss.csv");
    let run = env.run(&["cp", &url, "cp-out", "-vvv"]);
    assert_ne!(run.code, 0, "{run}");
    assert_no_secrets(&run.all_output());
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1");
    let run = env.run(&["cp", &url, "cp-out2", "-vvv", "--json"]);
    assert_ne!(run.code, 0, "{run}");
    assert_no_secrets(&run.all_output());
}

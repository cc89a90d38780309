//! The default artifacts of a job: listing, paging, gap fill, odd and hostile names.

use std::collections::BTreeSet;
use std::path::Path;

use crate::harness::{
    TestEnv, artifact_path, assert_blob_file, assert_bytes, check_summary, decoded, files_under, is_blob_data, one_job,
    payload, text, working_files,
};
use crate::support::{BlobFixture, HOSTILE_PATHS, Md5Mode, ODD_NAME, TOKEN, standard_world};

#[test]
fn default_artifacts_of_job_123_are_byte_exact() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--json"]);
    run.expect_code(0);
    let dest = env.dest("job-123");
    let job = env.world.job("job-123").unwrap();

    // Every listed artifact, byte for byte, under artifacts/.
    for a in &job.artifacts {
        assert_blob_file(&dest.join("artifacts").join(&a.path), env.artifact("job-123", &a.path));
    }
    // Exactly the payload (the lock is removed at the end): no part/state files, no overlap duplicates.
    let expected = payload(job.artifacts.iter().map(|a| format!("artifacts/{}", a.path)));
    assert_eq!(files_under(&dest), expected);
    assert!(!dest.join(".jobdl/lock").exists(), "the lock is removed after the run");
    // The traps by name.
    assert_bytes(&dest.join("artifacts/log/a.txt"), b"a from log\n");
    assert_bytes(&dest.join("artifacts/logs/b.txt"), b"b from logs\n");
    assert!(dest.join("artifacts/model.pt").is_file() && dest.join("artifacts/model.pt.bak").is_file());
    assert_bytes(&dest.join("artifacts/outputs/x"), b"x\n");
    assert_bytes(&dest.join("artifacts/outputs/x.tmp"), b"x.tmp is a real artifact\n");
    assert_eq!(std::fs::metadata(dest.join("artifacts/outputs/empty.bin")).unwrap().len(), 0);
    assert_bytes(&dest.join("artifacts").join(ODD_NAME), b"odd name\n");

    // Credentials go where they belong.
    let log = env.requests();
    let bearer = format!("Bearer {TOKEN}");
    assert!(log.iter().any(|r| r.is_foundry()) && log.iter().any(|r| r.is_blob()));
    for r in &log {
        if r.is_foundry() {
            assert_eq!(r.authorization.as_deref(), Some(bearer.as_str()), "{} {}", r.method, r.path);
            assert!(r.param("api-version").is_some_and(|v| !v.is_empty()), "no api-version: {} {}", r.method, r.path);
        } else {
            assert_eq!(r.authorization, None, "Authorization sent to storage: {} {}", r.method, r.path);
        }
    }
    // Each small artifact's bytes are fetched once (no duplicates through overlapping roots);
    // an empty blob may take a 416 to a ranged probe first.
    for a in &job.artifacts {
        let want = artifact_path("job-123", &a.path);
        let ok = |r: &&crate::support::LoggedRequest| {
            r.method == "GET" && is_blob_data(r) && decoded(r) == want && (200..300).contains(&r.status)
        };
        let gets = log.iter().filter(ok).count();
        assert!(gets >= 1, "{} never fetched", a.path);
        if a.path != "outputs/big.bin" {
            assert_eq!(gets, 1, "{} fetched {gets} times", a.path);
        }
    }

    // The JSON document.
    let files = check_summary(&run, Some(("job-123", "Completed")), &dest);
    assert_eq!(files.len(), job.artifacts.len(), "{run}");
    let mut total = 0;
    for a in &job.artifacts {
        let blob = env.artifact("job-123", &a.path);
        let entry = run.entry(&format!("artifacts/{}", a.path));
        assert_eq!(entry["result"], "downloaded", "{entry}");
        assert_eq!(entry["bytes"].as_u64(), Some(blob.len()), "{entry}");
        let md5 = if blob.md5 == Md5Mode::Absent { "absent" } else { "verified" };
        assert_eq!(entry["md5"], md5, "{entry}");
        total += blob.len();
    }
    assert_eq!(run.doc()["totals"]["bytes"].as_u64(), Some(total));
    assert_eq!(run.doc()["totals"]["failed"], 0);
    assert!(run.doc()["totals"].get("interrupted").is_none_or(|v| v == false));
}

#[test]
fn duplicate_listing_entries_download_once() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-dups", "--json"]);
    run.expect_code(0);
    let dest = env.dest("job-dups");
    assert_eq!(files_under(&dest), payload(["artifacts/outputs/dup.txt", "artifacts/outputs/other.txt"]));
    assert_bytes(&dest.join("artifacts/outputs/dup.txt"), b"dup\n");
    let files = check_summary(&run, Some(("job-dups", "Completed")), &dest);
    assert_eq!(files.len(), 2, "{run}");
    assert_eq!(run.doc()["totals"]["failed"], 0);
    assert_eq!(env.blob_gets("outputs/dup.txt").len(), 1);
}

#[test]
fn next_link_paging_lists_every_file() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-nextlink"]);
    run.expect_code(0);
    let dest = env.dest("job-nextlink");
    let expected: Vec<String> = (0..5).map(|i| format!("artifacts/outputs/f{i}.txt")).collect();
    assert_eq!(files_under(&dest), payload(expected));
    for i in 0..5 {
        let path = format!("outputs/f{i}.txt");
        assert_blob_file(&dest.join("artifacts").join(&path), env.artifact("job-nextlink", &path));
    }
    // The nextLink (carrying `offset`) was followed.
    assert!(env.requests().iter().any(|r| r.is_foundry() && r.param("offset").is_some()));
}

#[test]
fn foreign_next_link_stops_the_run() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-foreign-next"]);
    run.expect_code(1);
    assert!(run.stderr.contains("nextLink"), "{run}");
    assert!(run.stderr.contains("another host"), "{run}");
    assert!(!env.dest("job-foreign-next").exists(), "a destination was created");
    // It stopped at the first page: no blob was fetched.
    assert!(!env.requests().iter().any(|r| r.is_blob()));
}

#[test]
fn repeated_continuation_token_stops_the_run() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-cycle"]);
    run.expect_code(1);
    assert!(run.stderr.contains("repeated"), "{run}");
    assert!(run.stderr.contains("token"), "{run}");
    assert!(run.elapsed.as_secs() < 15, "{run}");
    let listings = env.requests().iter().filter(|r| r.path.ends_with("/artifacts")).count();
    assert!(listings <= 3, "{listings} listing calls for a two-page cycle");
    assert!(!env.dest("job-cycle").exists());
}

#[test]
fn foreign_content_uri_fails_only_that_file() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-foreign-uri", "--json"]);
    run.expect_code(6);
    let dest = env.dest("job-foreign-uri");
    assert_bytes(&dest.join("artifacts/ok.txt"), b"fine\n");
    let evil = run.entry("artifacts/evil.txt");
    assert_eq!(evil["result"], "failed");
    assert!(evil["error"].as_str().unwrap().contains("not allowed"), "{evil}");
    assert!(!dest.join("artifacts/evil.txt").exists());
    assert_eq!(run.entry("artifacts/ok.txt")["result"], "downloaded");
    check_summary(&run, Some(("job-foreign-uri", "Completed")), &dest);
}

#[test]
fn gap_in_content_info_is_filled_per_path() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-gap"]);
    run.expect_code(0);
    let dest = env.dest("job-gap");
    for p in ["outputs/a.txt", "outputs/b.txt", "outputs/c.txt"] {
        assert_blob_file(&dest.join("artifacts").join(p), env.artifact("job-gap", p));
    }
    assert_eq!(files_under(&dest).len(), 3);
    let filled = env
        .requests()
        .into_iter()
        .any(|r| r.path.ends_with("/artifacts/contentinfo") && r.param("path").as_deref() == Some("outputs/b.txt"));
    assert!(filled, "no per-path contentinfo call for outputs/b.txt");
}

#[test]
fn missing_experiment_id_is_fatal() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-noexp"]);
    run.expect_code(1);
    assert!(run.stderr.contains("no experiment ID"), "{run}");
    assert!(!env.dest("job-noexp").exists());
}

/// Names of files and directories a hostile path could have produced.
fn escaped_names(root: &Path) -> Vec<String> {
    files_under(root)
        .into_iter()
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            ["escape.txt", "x", "C:\\x"].contains(&name) || p.contains('\\')
        })
        .collect()
}

#[test]
fn hostile_paths_never_leave_the_destination() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-hostile", "--json"]);
    run.expect_code(6);
    let dest = env.dest("job-hostile");
    assert_bytes(&dest.join("artifacts/ok.txt"), b"ok\n");
    assert_eq!(run.entry("artifacts/ok.txt")["result"], "downloaded");
    // Nothing beside the destination, nothing named like an escape anywhere in the sandbox.
    let sandbox: BTreeSet<String> = std::fs::read_dir(env.sandbox())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(sandbox, BTreeSet::from(["work".to_string()]));
    let work: Vec<_> = std::fs::read_dir(env.work()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(work, ["job-hostile"]);
    assert_eq!(escaped_names(env.sandbox()), Vec::<String>::new());
    assert!(!Path::new("/abs").exists() && !Path::new("/x").exists());
    // The traversal and drive-prefix names fail one by one.
    let files = check_summary(&run, Some(("job-hostile", "Completed")), &dest);
    let failed: Vec<&str> =
        files.iter().filter(|f| f["result"] == "failed").map(|f| f["path"].as_str().unwrap()).collect();
    for hostile in ["../escape.txt", "a/../../x", "C:\\x", "dir\\..\\..\\x"] {
        let hit = failed.iter().any(|p| {
            let p = p.strip_prefix("artifacts/").unwrap_or(p);
            p == hostile || p == hostile.replace('\\', "/") || p == hostile.replace('\\', "\\\\")
        });
        assert!(hit, "{hostile:?} is not a failed entry: {failed:?}\n{run}");
    }
    assert!(working_files(&dest).is_empty());
}

#[test]
fn hostile_absolute_path_fails() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-hostile", "--json"]);
    run.expect_code(6);
    let dest = env.dest("job-hostile");
    assert!(!dest.join("artifacts/abs").exists(), "the absolute path /abs was written as artifacts/abs");
    let failed = run.doc()["totals"]["failed"].as_u64().unwrap();
    assert_eq!(failed, HOSTILE_PATHS.len() as u64, "{run}");
    assert_eq!(files_under(&dest), payload(["artifacts/ok.txt"]));
}

/// A minimal gzip member holding `data` in one stored deflate block.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let len = data.len() as u16;
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    out.push(1); // final stored block
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[test]
fn gzip_content_encoding_is_stored_verbatim() {
    let gz = gzip_stored(b"{\"decoded\": \"if you can read this, the body was decompressed\"}\n");
    let mut blob = BlobFixture::bytes(gz.clone());
    blob.content_encoding = Some("gzip".into());
    let env = TestEnv::new(one_job("job-gz", vec![("outputs/metrics.json", blob), ("plain.txt", text("plain\n"))]));
    let run = env.run(&["download", "job-gz", "--json"]);
    run.expect_code(0);
    let dest = env.dest("job-gz");
    assert_bytes(&dest.join("artifacts/outputs/metrics.json"), &gz);
    let entry = run.entry("artifacts/outputs/metrics.json");
    assert_eq!(entry["bytes"].as_u64(), Some(gz.len() as u64));
    assert_eq!(entry["md5"], "verified");
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let env = TestEnv::new(one_job(
        "job-dry",
        vec![("user_logs/std_log.txt", text("log\n")), ("outputs/model.bin", BlobFixture::generated(5000, 3))],
    ));
    let run = env.run(&["download", "job-dry", "--dry-run"]);
    run.expect_code(0);
    for p in ["user_logs/std_log.txt", "outputs/model.bin"] {
        assert!(run.stdout.contains(p), "plan does not mention {p}\n{run}");
    }
    assert_eq!(files_under(env.sandbox()), BTreeSet::new(), "dry run wrote files");
    assert!(!env.dest("job-dry").exists(), "dry run created the destination");
    let data_gets = env.requests().iter().filter(|r| r.method == "GET" && is_blob_data(r)).count();
    assert_eq!(data_gets, 0, "dry run downloaded blob bytes");
}

//! `jobdl cp <SAS-URL> <DIR>`.

use crate::harness::{TestEnv, assert_blob_file, check_summary, files_under, payload};
use crate::support::standard_world;

#[test]
fn cp_folder_by_container_sas() {
    let env = TestEnv::new(standard_world());
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1");
    let run = env.run(&["cp", &url, "out", "--json"]);
    run.expect_code(0);
    let out = env.work().join("out");
    let names = ["loss.csv", "acc.csv", "sub/summary.json"];
    for n in names {
        assert_blob_file(&out.join(n), env.blob("data-0001", &format!("job-123-metrics/1/{n}")));
    }
    assert_eq!(files_under(&out), payload(names), "the sibling version 10/ must not be copied");
    let files = check_summary(&run, None, &out);
    assert!(files.iter().all(|f| f["result"] == "downloaded" && f["md5"] == "verified"), "{run}");
    for r in env.requests() {
        assert_eq!(r.authorization, None, "Authorization sent with a SAS: {} {}", r.method, r.path);
    }
}

#[test]
fn cp_single_blob_by_blob_sas() {
    let env = TestEnv::new(standard_world());
    let url = env.emu.blob_sas_url("data-0001", "job-123-report/1/report.json");
    let run = env.run(&["cp", &url, "one", "--json"]);
    run.expect_code(0);
    let out = env.work().join("one");
    assert_blob_file(&out.join("report.json"), env.blob("data-0001", "job-123-report/1/report.json"));
    assert_eq!(files_under(&out), payload(["report.json"]));
    check_summary(&run, None, &out);
    assert_eq!(run.entry("report.json")["result"], "downloaded");
    assert!(!env.requests().iter().any(|r| r.path.contains("report.json.bak")));
}

#[test]
fn cp_empty_prefix_is_not_found() {
    let env = TestEnv::new(standard_world());
    let url = env.emu.container_sas_url("data-0001", "nothing/here");
    let run = env.run(&["cp", &url, "out"]);
    run.expect_code(4);
    assert!(!env.work().join("out").exists(), "destination created for nothing");
    let run = env.run(&["cp", &url, "out", "--json"]);
    run.expect_code(4);
    assert_eq!(run.doc()["error"]["code"], "not_found");
}

#[test]
fn cp_refuses_a_host_that_is_not_allowed() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["cp", "https://127.0.0.2:1/devstoreaccount1/c?sv=2025-11-05&sr=c&sp=rl&sig=x", "out"]);
    run.expect_code(2);
    assert!(run.stderr.contains("not allowed"), "{run}");
    // A connection attempt to 127.0.0.2:1 would end in a transport error (exit 1) after retries.
    assert!(run.elapsed.as_secs() < 5, "{run}");
    assert!(!env.work().join("out").exists());
    assert!(env.requests().is_empty());
}

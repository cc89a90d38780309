//! `schemas/jobdl-v1.schema.json` describes every `--json` document jobdl prints: each kind of
//! document is produced by the built binary against the emulator and validated, both against the
//! whole schema (exactly one branch matches) and against the branch of its kind; documents broken
//! on purpose are rejected, so the schema is not vacuous.
use crate::support;

use crate::harness;

use std::path::PathBuf;
use std::time::Duration;

use harness::{Run, TestEnv, wait_until, working_files};
use serde_json::{Value, json};
use support::{Fault, FaultRule, standard_world, workspace_world};

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/jobdl-v1.schema.json")
}

fn schema() -> Value {
    let text = std::fs::read_to_string(schema_path()).expect("read the schema file");
    serde_json::from_str(&text).expect("the schema file is JSON")
}

/// The whole schema (`kind` = `None`) or only its `$defs/<kind>` branch.
fn validator(kind: Option<&str>) -> jsonschema::Validator {
    let mut s = schema();
    if let Some(kind) = kind {
        assert!(s["$defs"].get(kind).is_some(), "no $defs/{kind} in the schema");
        s["oneOf"] = json!([{ "$ref": format!("#/$defs/{kind}") }]);
    }
    jsonschema::draft202012::new(&s).expect("the schema compiles")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// Asserts `doc` is valid against the whole schema and against the `kind` branch.
#[track_caller]
fn assert_kind(doc: &Value, kind: &str, context: &dyn std::fmt::Display) {
    let whole = errors(&validator(None), doc);
    assert!(whole.is_empty(), "document invalid against the schema: {whole:#?}\n{doc:#}\n{context}");
    let branch = errors(&validator(Some(kind)), doc);
    assert!(branch.is_empty(), "document is not a '{kind}' document: {branch:#?}\n{doc:#}\n{context}");
}

#[track_caller]
fn assert_rejected(doc: &Value, why: &str) {
    assert!(!validator(None).is_valid(doc), "the schema accepts a document with {why}:\n{doc:#}");
}

#[track_caller]
fn run_doc(run: &Run, code: i32) -> Value {
    run.expect_code(code);
    run.doc().clone()
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    jsonschema::meta::validate(&s).expect("the schema is valid against its meta-schema");
    for kind in ["result", "dry_run", "error", "ls", "show", "jobs"] {
        validator(Some(kind));
    }
}

#[test]
fn download_cp_and_error_documents_match_the_schema() {
    let env = TestEnv::new(standard_world());

    // Exit 0: every default artifact (an empty file, one without a stored MD5, an odd name).
    let run = env.run(&["download", "job-123", "--json"]);
    let ok = run_doc(&run, 0);
    assert_kind(&ok, "result", &run);
    let md5s: Vec<&str> = ok["files"].as_array().unwrap().iter().map(|f| f["md5"].as_str().unwrap()).collect();
    assert!(md5s.contains(&"verified") && md5s.contains(&"absent"), "{md5s:?}");

    // A rerun with --skip-existing: "skipped" entries.
    let run = env.run(&["download", "job-123", "--skip-existing", "--json"]);
    let skipped = run_doc(&run, 0);
    assert_kind(&skipped, "result", &run);
    assert!(skipped["totals"]["skipped"].as_u64().unwrap() > 0, "{run}");

    // Exit 6: a wrong MD5 (a failed transfer entry, "mismatch") ...
    let run = env.run(&["download", "job-badmd5", "--json"]);
    let bad = run_doc(&run, 6);
    assert_kind(&bad, "result", &run);
    assert!(
        bad["files"].as_array().unwrap().iter().any(|f| f["result"] == "failed" && f["md5"] == "mismatch"),
        "{run}"
    );

    // ... and an output that cannot be planned (a failed plan entry) beside one that downloads.
    let run = env.run(&["download", "job-123", "--output", "ckpt", "--output", "metrics", "-p", "plan-fail", "--json"]);
    let planfail = run_doc(&run, 6);
    assert_kind(&planfail, "result", &run);
    assert!(planfail["files"].as_array().unwrap().iter().any(|f| f["result"] == "failed"), "{run}");

    // cp: the same document with "job": null.
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1");
    let run = env.run(&["cp", &url, "cp-out", "--json"]);
    let cp = run_doc(&run, 0);
    assert_kind(&cp, "result", &run);
    assert!(cp["job"].is_null());

    // Several jobs, one of them not found and one with a failed file: one result document with a
    // section per job.
    let run = env.run(&["download", "job-123", "no-such-job", "job-badmd5", "-p", "many", "--json"]);
    let many = run_doc(&run, 6);
    assert_kind(&many, "result", &run);
    assert_eq!(many["jobs"].as_array().map(Vec::len), Some(3), "{run}");
    assert!(many["jobs"][1]["error"].is_object() && many["jobs"][2]["outcome"] == "failed", "{run}");

    // --dry-run: the plan document.
    let run = env.run(&["download", "job-123", "--all-outputs", "--dry-run", "-p", "dry", "--json"]);
    let dry = run_doc(&run, 6);
    assert_kind(&dry, "dry_run", &run);
    let run = env.run(&["download", "job-123", "--dry-run", "-p", "dry", "--json"]);
    assert_kind(&run_doc(&run, 0), "dry_run", &run);

    // Fatal errors: exit 5, 4 and 2.
    for (args, code, name) in [
        (vec!["download", "job-running", "--json"], 5, "job_not_terminal"),
        (vec!["download", "no-such-job", "--json"], 4, "not_found"),
        (vec!["show", "no-such-job", "--json"], 4, "not_found"),
        (vec!["ls", "job-123", "--include", "a[", "--json"], 2, "usage"),
        (vec!["cp", "ftp://127.0.0.1/x", "out", "--json"], 2, "usage"),
        // Refused by the argument parser itself: still the error document.
        (vec!["download", "--json"], 2, "usage"),
        (vec!["download", "job-123", "--parallel", "many", "--json"], 2, "usage"),
    ] {
        let run = env.run(&args);
        let doc = run_doc(&run, code);
        assert_kind(&doc, "error", &run);
        assert_eq!(doc["error"]["code"], name, "{run}");
        assert_eq!(doc["error"]["exit_code"], code, "{run}");
    }

    // Exit 3: the service refuses the token.
    let mut cmd = env.command(["show", "job-123", "--json"]);
    cmd.env("JOBDL_ACCESS_TOKEN", "wrong");
    let run = env.run_cmd(cmd);
    let auth = run_doc(&run, 3);
    assert_kind(&auth, "error", &run);
    assert_eq!(auth["error"]["code"], "auth", "{run}");
}

#[test]
fn ls_and_show_documents_match_the_schema() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["ls", "job-123", "--json"]);
    assert_kind(&run_doc(&run, 0), "ls", &run);
    // Named outputs, including ones that cannot be planned ("failures").
    let run = env.run(&["ls", "job-123", "--all-outputs", "--json"]);
    let all = run.doc().clone();
    assert_kind(&all, "ls", &run);
    assert!(all.get("failures").is_some(), "expected plan failures for the mlflow/broken outputs\n{run}");

    let run = env.run(&["show", "job-123", "--json"]);
    assert_kind(&run_doc(&run, 0), "show", &run);
    let run = env.run(&["show", "job-running", "--json"]);
    assert_kind(&run_doc(&run, 0), "show", &run);
    let run = env.run(&["jobs", "--json"]);
    let jobs = run_doc(&run, 0);
    assert_kind(&jobs, "jobs", &run);
    assert!(!jobs["jobs"].as_array().unwrap().is_empty(), "{run}");

    // A workspace job: outputs with a declared URI.
    let env = TestEnv::new(workspace_world());
    let cmd = env.workspace_command(["show", "train-1", "--json"]);
    let run = env.run_cmd(cmd);
    let show = run_doc(&run, 0);
    assert_kind(&show, "show", &run);
    assert!(show["outputs"].as_array().unwrap().iter().any(|o| o["uri"].is_string()), "{run}");
}

#[test]
fn interrupted_document_matches_the_schema() {
    let env = TestEnv::new(standard_world());
    env.emu.add_fault(FaultRule::new("big.bin", 1, Fault::Stall(Duration::from_secs(20))).method("GET"));
    let dest = env.dest("job-123");
    let running = env.spawn(env.command(["download", "job-123", "--json"]));
    wait_until(Duration::from_secs(30), "the stalled GET of big.bin and its part file", || {
        !env.blob_gets("big.bin").is_empty() && !working_files(&dest).is_empty()
    });
    running.signal(libc::SIGINT);
    let run = running.wait(Duration::from_secs(20));
    let doc = run_doc(&run, 130);
    assert_kind(&doc, "result", &run);
    assert_eq!(doc["totals"]["interrupted"], true, "{run}");
}

#[test]
fn interrupted_while_waiting_names_the_destination() {
    let env = TestEnv::new(standard_world());
    let running = env.spawn(env.command(["download", "job-running", "--wait", "--json"]));
    wait_until(Duration::from_secs(30), "two polls of the running job", || {
        env.requests().iter().filter(|r| r.path.contains("/jobs/job-running")).count() >= 2
    });
    running.signal(libc::SIGINT);
    let run = running.wait(Duration::from_secs(20));
    let doc = run_doc(&run, 130);
    assert_kind(&doc, "result", &run);
    assert_eq!(doc["totals"]["interrupted"], true, "{run}");
    assert_eq!(doc["destination"], env.dest("job-running").display().to_string(), "{run}");
    assert!(!env.dest("job-running").exists(), "nothing is written before the gate passes");
}

#[test]
fn the_schema_rejects_broken_documents() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-badmd5", "--json"]);
    let good = run_doc(&run, 6);
    assert_kind(&good, "result", &run);
    let failed =
        good["files"].as_array().unwrap().iter().position(|f| f["result"] == "failed").expect("a failed entry");
    let ok = good["files"].as_array().unwrap().iter().position(|f| f["result"] == "downloaded").expect("an ok entry");

    let mut d = good.clone();
    d["files"][ok]["result"] = json!("finished");
    assert_rejected(&d, "an unknown result value");
    let mut d = good.clone();
    d["files"][ok]["md5"] = json!("ok");
    assert_rejected(&d, "an unknown md5 value");
    let mut d = good.clone();
    d["totals"]["bytes"] = json!("123");
    assert_rejected(&d, "a string where a count belongs");
    let mut d = good.clone();
    d["files"][ok]["bytes"] = json!(-1);
    assert_rejected(&d, "a negative size");
    let mut d = good.clone();
    d["files"][failed].as_object_mut().unwrap().remove("error");
    assert_rejected(&d, "a failed entry without an error");
    let mut d = good.clone();
    d["version"] = json!(2);
    assert_rejected(&d, "another version");
    let mut d = good.clone();
    d["surprise"] = json!(true);
    assert_rejected(&d, "an unknown top-level field");
    let mut d = good.clone();
    d["totals"]["interrupted"] = json!(false);
    assert_rejected(&d, "interrupted: false (the field is present only when true)");
    let mut d = good.clone();
    d.as_object_mut().unwrap().remove("totals");
    assert_rejected(&d, "no totals");

    let run = env.run(&["show", "no-such-job", "--json"]);
    let err = run_doc(&run, 4);
    let mut d = err.clone();
    d["error"]["exit_code"] = json!(5);
    assert_rejected(&d, "an exit code that does not match its error code");
    let mut d = err.clone();
    d["error"]["code"] = json!("oops");
    assert_rejected(&d, "an unknown error code");

    let run = env.run(&["ls", "job-123", "--json"]);
    let ls = run_doc(&run, 0);
    let mut d = ls.clone();
    d["files"][0]["md5_known"] = json!("yes");
    assert_rejected(&d, "a string where a boolean belongs");

    let run = env.run(&["show", "job-123", "--json"]);
    let show = run_doc(&run, 0);
    let mut d = show.clone();
    d["outputs"][0]["uri"] = json!(7);
    assert_rejected(&d, "a number where a URI belongs");
}

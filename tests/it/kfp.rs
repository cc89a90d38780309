//! `jobdl download|ls|show <run-id> --kfp-endpoint …` end to end: the KFP API is the project's fake
//! (`tests/support/kfp_api.rs`, shapes from KFP's own test data), the outputs are in a real S3
//! server (moto with signature checking, `tests/support/moto.rs`) laid out as KFP's launcher
//! writes them (kfp-s3-api.md §1): tasks with execution UUIDs, a ParallelFor task, a directory
//! output, a > 5 MiB multipart object, `executor-logs[-n]` per task, a declared Metrics output that
//! was never written, hostile keys, a 2.0-style run without UUIDs, and runs whose root must be
//! found by the fallback order.
#![cfg(target_os = "linux")]

use crate::support::check;
use crate::support::kfp_api;
use crate::support::moto;
use crate::support::relay;

use check::{text, tree, validate};
use kfp_api::FakeKfp;
use md5::{Digest, Md5};
use moto::{Moto, Obj, Seeded, bytes};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

const TOKEN: &str = "test-token";
const PIPE: &str = "train-pipeline";
const A: &str = "4c1f2a3b-0000-4000-8000-00000000000a";
const U1: &str = "0d3c1e2a-5b6f-4a7b-8c9d-000000000001";
const U2: &str = "0d3c1e2a-5b6f-4a7b-8c9d-000000000002";
const U3: &str = "0d3c1e2a-5b6f-4a7b-8c9d-000000000003";
const U4: &str = "0d3c1e2a-5b6f-4a7b-8c9d-000000000004";
const U5: &str = "0d3c1e2a-5b6f-4a7b-8c9d-000000000005";
const U6: &str = "0d3c1e2a-5b6f-4a7b-8c9d-000000000006";
/// KFP's launcher uploads in 5 MiB parts.
const PART: usize = 5 * 1024 * 1024;

/// A v2 pipeline spec: preprocess → ParallelFor(train) → evaluate (+ a hostile task), as the SDK
/// compiles it (a loop is a nested DAG component).
fn spec(name: &str) -> Value {
    json!({
        "pipelineInfo": {"name": name},
        "schemaVersion": "2.1.0", "sdkVersion": "kfp-2.14.0",
        "root": {"dag": {"tasks": {
            "preprocess": {"componentRef": {"name": "comp-preprocess"}, "taskInfo": {"name": "preprocess"}},
            "for-loop-2": {"componentRef": {"name": "comp-for-loop-2"}, "taskInfo": {"name": "for-loop-2"}},
            "evaluate": {"componentRef": {"name": "comp-evaluate"}, "taskInfo": {"name": "evaluate"}},
            "hostile": {"componentRef": {"name": "comp-hostile"}, "taskInfo": {"name": "hostile"}}}}},
        "components": {
            "comp-preprocess": {"executorLabel": "exec-preprocess",
                "outputDefinitions": {"artifacts": {"data": {"artifactType": {"schemaTitle": "system.Dataset"}}}}},
            "comp-for-loop-2": {"dag": {"tasks": {"train": {"componentRef": {"name": "comp-train"}}}}},
            "comp-train": {"executorLabel": "exec-train",
                "outputDefinitions": {"artifacts": {"model": {"artifactType": {"schemaTitle": "system.Model"}}}}},
            "comp-evaluate": {"executorLabel": "exec-evaluate",
                "outputDefinitions": {"artifacts": {
                    "report": {"artifactType": {"schemaTitle": "system.Artifact"}},
                    "metrics": {"artifactType": {"schemaTitle": "system.Metrics"}}}}},
            "comp-hostile": {"executorLabel": "exec-hostile",
                "outputDefinitions": {"artifacts": {"data": {"artifactType": {"schemaTitle": "system.Dataset"}}}}}}
    })
}

/// A run as `GET /apis/v2beta1/runs/{id}` returns it (KFP test data's `run_completed_with_spec`).
fn run_json(id: &str, spec: Option<Value>, root: Option<&str>, experiment: &str) -> Value {
    json!({
        "experiment_id": experiment, "run_id": id, "display_name": "Production Pipeline Run",
        "storage_state": "AVAILABLE", "pipeline_spec": spec,
        "runtime_config": {"parameters": {"lr": 0.01}, "pipeline_root": root.unwrap_or("")},
        "service_account": "pipeline-runner", "created_at": "2026-01-15T10:00:00Z",
        "finished_at": "2026-01-15T10:42:00Z", "state": "SUCCEEDED", "error": null, "run_details": null,
        "recurring_run_id": "", "state_history": []
    })
}

struct World {
    moto: Moto,
    kfp: FakeKfp,
    seeded: Seeded,
    tmp: tempfile::TempDir,
    /// key (relative to run A's prefix) → bytes.
    a: BTreeMap<String, Vec<u8>>,
}

fn run_a_objects() -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut put = |k: String, len: usize, seed: u64| {
        m.insert(k, bytes(len, seed));
    };
    put(format!("preprocess/{U1}/data/part-0.csv"), 4_000, 1);
    put(format!("preprocess/{U1}/data/sub/part-1.csv"), 70_001, 2);
    put(format!("preprocess/{U1}/executor-logs"), 900, 3);
    for (i, u) in [U2, U3, U4].iter().enumerate() {
        put(format!("train/{u}/model"), 10_000 + i, 10 + i as u64);
        put(format!("train/{u}/executor-logs-0"), 500 + i, 20 + i as u64);
    }
    put(format!("train/{U3}/executor-logs-1"), 600, 30);
    put(format!("evaluate/{U5}/report"), 12 * 1024 * 1024 + 123, 40);
    put(format!("evaluate/{U5}/executor-logs"), 800, 41);
    put(format!("hostile/{U6}/data/fine.txt"), 50, 50);
    put(format!("hostile/{U6}/data/../e.txt"), 51, 51);
    put(format!("hostile/{U6}/data/a//b"), 52, 52);
    put(format!("hostile/{U6}/data/c\u{1}d"), 53, 53);
    put(format!("hostile/{U6}/__0x2e____0x2e____0x2f__z"), 54, 54);
    m
}

fn world() -> Option<World> {
    world_with(Vec::new())
}

/// [`world`] with `extra` objects (key relative to run A's prefix, bytes) in run A.
fn world_with(extra: Vec<(String, Vec<u8>)>) -> Option<World> {
    let moto = Moto::start()?;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("home")).unwrap();
    let mut a = run_a_objects();
    a.extend(extra);
    let prefix = format!("v2/artifacts/{PIPE}/{A}/");
    let b_data = bytes(3_000, 60);
    let c_data = bytes(2_000, 61);
    let d_data = bytes(1_000, 62);
    let mut objects: Vec<Obj<'_>> = a
        .iter()
        .map(|(k, v)| Obj {
            bucket: "mlpipeline",
            key: format!("{prefix}{k}"),
            data: v,
            part_size: (v.len() > PART).then_some(PART),
        })
        .collect();
    // Run B (KFP 2.0–2.3): <task>/<output> without an execution UUID.
    objects.push(Obj {
        bucket: "mlpipeline",
        key: format!("v2/artifacts/{PIPE}/run-b/train/model"),
        data: &b_data,
        part_size: None,
    });
    objects.push(Obj {
        bucket: "mlpipeline",
        key: format!("v2/artifacts/{PIPE}/run-b/train/executor-logs"),
        data: &b_data,
        part_size: None,
    });
    // Run C (multi-user): no pipeline_root, namespace team-a.
    objects.push(Obj {
        bucket: "mlpipeline",
        key: format!("private-artifacts/team-a/v2/artifacts/{PIPE}/run-c/train/{U1}/model"),
        data: &c_data,
        part_size: None,
    });
    // Run D: root s3://other/kfp?endpoint=… (the endpoint is never contacted).
    objects.push(Obj {
        bucket: "other",
        key: format!("kfp/{PIPE}/run-d/train/{U1}/model"),
        data: &d_data,
        part_size: None,
    });
    let seeded = moto.seed(&tmp.path().join("seed"), &["mlpipeline", "other"], &objects);
    let kfp = FakeKfp::start(Some(TOKEN));
    kfp.run(A, &["SUCCEEDED"], run_json(A, Some(spec(PIPE)), Some("minio://mlpipeline/v2/artifacts"), "exp-1"));
    kfp.experiment("exp-1", json!({"experiment_id": "exp-1", "display_name": "Default", "storage_state": "AVAILABLE"}));
    Some(World { moto, kfp, seeded, tmp, a })
}

impl World {
    fn jobdl(&self, args: &[&str]) -> Output {
        self.jobdl_env(args, &[])
    }

    fn jobdl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobdl"));
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k.starts_with("JOBDL_") || k.starts_with("KF_") || k.starts_with("AZURE") {
                cmd.env_remove(k);
            }
        }
        cmd.env("JOBDL_ACCESS_TOKEN", TOKEN)
            .env("HOME", self.tmp.path().join("home"))
            .env("XDG_CONFIG_HOME", self.tmp.path().join("home/.config"))
            .env("JOBDL_RETRY_BASE_DELAY", "10ms")
            .env("JOBDL_POLL_INTERVAL", "50ms")
            .env_remove("CI")
            .envs(self.seeded.env())
            .envs(env.iter().copied())
            .current_dir(self.tmp.path())
            .args(args)
            .args(["--kfp-endpoint", &self.kfp.base_url(), "--s3-endpoint", &self.moto.endpoint()]);
        cmd.stdin(Stdio::null()).output().unwrap()
    }

    fn dest(&self, name: &str) -> std::path::PathBuf {
        self.tmp.path().join(name)
    }
}

fn md5_hex(d: &[u8]) -> String {
    Md5::digest(d).iter().map(|b| format!("{b:02x}")).collect()
}

/// Where each of run A's objects lands with `--all-outputs` (hostile ones: nowhere).
fn expected_all(w: &World) -> BTreeMap<String, Vec<u8>> {
    let get = |k: String| w.a[&k].clone();
    let mut m = BTreeMap::new();
    m.insert("named-outputs/preprocess/data/part-0.csv".into(), get(format!("preprocess/{U1}/data/part-0.csv")));
    m.insert(
        "named-outputs/preprocess/data/sub/part-1.csv".into(),
        get(format!("preprocess/{U1}/data/sub/part-1.csv")),
    );
    m.insert("artifacts/preprocess/executor-logs".into(), get(format!("preprocess/{U1}/executor-logs")));
    for u in [U2, U3, U4] {
        m.insert(format!("named-outputs/train/{u}/model"), get(format!("train/{u}/model")));
        m.insert(format!("artifacts/train/{u}/executor-logs-0"), get(format!("train/{u}/executor-logs-0")));
    }
    m.insert(format!("artifacts/train/{U3}/executor-logs-1"), get(format!("train/{U3}/executor-logs-1")));
    m.insert("named-outputs/evaluate/report".into(), get(format!("evaluate/{U5}/report")));
    m.insert("artifacts/evaluate/executor-logs".into(), get(format!("evaluate/{U5}/executor-logs")));
    m.insert("named-outputs/hostile/data/fine.txt".into(), get(format!("hostile/{U6}/data/fine.txt")));
    m
}

#[test]
fn run_outputs_land_byte_exact_in_every_mode_and_hostile_keys_fail_alone() {
    let Some(w) = world() else { return };

    // --all-outputs: everything, hostile keys failing alone (exit 6), the unwritten Metrics named.
    let out = w.jobdl(&["download", A, "--all-outputs", "--json", "-p", "all"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&doc);
    let got = tree(&w.dest("all"));
    let payload: Vec<&String> = got.keys().filter(|k| !k.starts_with(".jobdl")).collect();
    let want = expected_all(&w);
    assert_eq!(payload, want.keys().collect::<Vec<_>>(), "{}", text(&out));
    for (k, v) in &want {
        assert!(got[k] == *v, "{k} differs");
    }
    let failed: Vec<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["result"] == "failed")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 4, "{failed:?}");
    for f in &failed {
        assert!(f.contains("hostile/"), "{f}");
    }
    assert!(failed.iter().any(|f| f.contains("../z")), "{failed:?}");
    let notes = doc["notes"].as_array().expect("notes");
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("evaluate/metrics")), "{notes:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("evaluate/metrics"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("minio://mlpipeline/v2/artifacts"), "root named");
    let report =
        doc["files"].as_array().unwrap().iter().find(|f| f["path"] == "named-outputs/evaluate/report").unwrap();
    assert_eq!(report["bytes"], json!(12 * 1024 * 1024 + 123));
    // Uploaded in 5 MiB parts as KFP's launcher does: its "<hex>-3" ETag is checked by recomputing it.
    assert_eq!(report["verified_by"], "md5-multipart", "{report}");
    for f in doc["files"].as_array().unwrap().iter().filter(|f| f["result"] == "downloaded") {
        assert_ne!(f["verified_by"], "none", "{f}");
    }
    // Nothing escaped the destination.
    assert!(!w.tmp.path().join("e.txt").exists() && !w.tmp.path().join("z").exists());
    assert!(!w.dest("all/named-outputs/hostile/e.txt").exists());

    // The KFP token went to the KFP API on every call; S3 got signatures only (moto would refuse).
    let log = w.kfp.log();
    assert!(!log.is_empty());
    assert!(log.iter().all(|l| l.authorization.as_deref() == Some("Bearer test-token")), "{log:?}");
    assert!(log.iter().any(|l| l.query.contains("view=FULL")), "{log:?}");

    // No flag: every task's logs only.
    let out = w.jobdl(&["download", A, "-p", "logs"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Keys that belong to no output are not requested here, but named.
    assert!(String::from_utf8_lossy(&out.stderr).contains("belong to no output"), "{}", text(&out));
    let got = tree(&w.dest("logs"));
    let logs: Vec<&String> = got.keys().filter(|k| !k.starts_with(".jobdl")).collect();
    let want_logs: Vec<&String> = want.keys().filter(|k| k.starts_with("artifacts/")).collect();
    assert_eq!(logs, want_logs);

    // One output, by TASK/OUTPUT and by its short name; the ParallelFor task keeps one level per run.
    let out = w.jobdl(&["download", A, "--output", "train/model", "-p", "one"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = tree(&w.dest("one"));
    assert_eq!(got.keys().filter(|k| !k.starts_with(".jobdl")).count(), 3);
    assert_eq!(got[&format!("named-outputs/train/{U3}/model")], w.a[&format!("train/{U3}/model")]);
    let out = w.jobdl(&["download", A, "--output", "report", "-p", "short"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        md5_hex(&std::fs::read(w.dest("short/named-outputs/evaluate/report")).unwrap()),
        md5_hex(&want["named-outputs/evaluate/report"])
    );

    // Ambiguous short name: exit 2 naming the candidates; unknown: exit 4 listing what exists.
    let out = w.jobdl(&["download", A, "--output", "data", "-p", "amb"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("preprocess/data") && err.contains("hostile/data"), "{err}");
    let out = w.jobdl(&["download", A, "--output", "nope", "-p", "unk"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("train/model"));
    assert!(!w.dest("amb").exists() && !w.dest("unk").exists(), "nothing written before the checks");

    // ls and show know the run's outputs.
    let out = w.jobdl(&["show", A, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["job"]["status"], "SUCCEEDED");
    let names: Vec<&str> = doc["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["evaluate/report", "hostile/data", "preprocess/data", "train/model"]);
    let out = w.jobdl(&["ls", A, "--output", "train/model", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["files"].as_array().map(Vec::len), Some(3), "{doc}");
    assert!(doc["files"].as_array().unwrap().iter().all(|f| f["output"] == "train/model"), "{doc}");

    // Rerun with --skip-existing: nothing is fetched again.
    let out = w.jobdl(&["download", A, "--output", "evaluate/report", "-p", "short", "--skip-existing", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["totals"]["skipped"], 1, "{doc}");
}

#[test]
fn states_wait_and_failures_map_to_exit_codes() {
    let Some(w) = world() else { return };
    w.kfp.run("run-b", &["PENDING", "RUNNING", "SUCCEEDED"], run_json("run-b", Some(spec(PIPE)), None, ""));
    // Not finished: exit 5 before anything is written.
    let out = w.jobdl(&["download", "run-b", "-p", "b0"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SUCCEEDED, FAILED, CANCELED, SKIPPED"));
    assert!(!w.dest("b0").exists());
    // --wait polls RUNNING → SUCCEEDED, then downloads the 2.0-style layout (no UUID level).
    let out = w.jobdl(&["download", "run-b", "--wait", "--all-outputs", "-p", "b1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = tree(&w.dest("b1"));
    assert!(
        got.contains_key("named-outputs/train/model") && got.contains_key("artifacts/train/executor-logs"),
        "{:?}",
        got.keys()
    );

    // A failed run is finished: it downloads (KFP test data's run_failed shape).
    let mut failed = run_json("run-f", Some(spec(PIPE)), None, "");
    failed["error"] = json!({"code": 1, "message": "This was a Failed Run.", "details": []});
    w.kfp.run("run-f", &["FAILED"], failed);
    let out = w.jobdl(&["ls", "run-f", "--all-outputs"]);
    assert_eq!(out.status.code(), Some(4), "finished, but nothing stored: {}", text(&out));
    let mut failed_b = run_json("run-b", Some(spec(PIPE)), None, "");
    failed_b["error"] = json!({"code": 1, "message": "This was a Failed Run.", "details": []});
    w.kfp.run("run-b", &["FAILED"], failed_b);
    let out = w.jobdl(&["download", "run-b", "--all-outputs", "-p", "bf"]);
    assert_eq!(out.status.code(), Some(0), "a FAILED run downloads what it wrote: {}", text(&out));
    assert!(w.dest("bf/named-outputs/train/model").is_file());
    // --allow-running takes what a running run has written so far, marked partial.
    w.kfp.run("run-b", &["RUNNING"], run_json("run-b", Some(spec(PIPE)), None, ""));
    let out = w.jobdl(&["download", "run-b", "--all-outputs", "-p", "br", "--allow-running", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["partial"], true, "{}", text(&out));
    assert!(w.dest("br/named-outputs/train/model").is_file(), "{}", text(&out));

    // 400 from the API → exit 2.
    let out = w.jobdl(&["download", "bad-request"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A finished run whose store is down ends with exit 1, even with --wait (it is not waited on).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobdl"));
    let out = cmd
        .env("JOBDL_ACCESS_TOKEN", TOKEN)
        .env("HOME", w.tmp.path().join("home"))
        .env("JOBDL_RETRY_BASE_DELAY", "10ms")
        .envs(w.seeded.env())
        .args(["download", A, "--wait", "-p", "down", "--kfp-endpoint", &w.kfp.base_url()])
        .args(["--s3-endpoint", &format!("http://127.0.0.1:{closed}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // Unknown and absent states are not terminal; a timeout gives up with exit 5.
    w.kfp.run("run-u", &["SOMETHING_NEW"], run_json("run-u", Some(spec(PIPE)), None, ""));
    let out = w.jobdl(&["download", "run-u", "--wait", "--timeout", "1s", "-p", "u"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    w.kfp.run("run-e", &[""], run_json("run-e", Some(spec(PIPE)), None, ""));
    let out = w.jobdl(&["show", "run-e"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("RUNTIME_STATE_UNSPECIFIED"));

    // 404 → 4; 403 → 3; no or wrong token (the gateway's HTML 401) → 3.
    let out = w.jobdl(&["download", "missing-run"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = w.jobdl(&["download", "forbidden"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = w.jobdl_env(&["download", A], &[("JOBDL_ACCESS_TOKEN", "wrong")]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("wrong"), "token never printed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused the token from JOBDL_ACCESS_TOKEN"),
        "{}",
        text(&out)
    );
    // --kfp-token-file wins over JOBDL_ACCESS_TOKEN.
    let tf = w.tmp.path().join("token");
    std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
    let out = w.jobdl_env(&["show", A, "--kfp-token-file", tf.to_str().unwrap()], &[("JOBDL_ACCESS_TOKEN", "wrong")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Two 503s on the run, then 200: retried.
    w.kfp.fault(&format!("/apis/v2beta1/runs/{A}"), &[503, 503]);
    let out = w.jobdl(&["ls", A, "--output", "train/model"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A wrong S3 secret: moto checks signatures → exit 3, secret never printed.
    let out = w.jobdl_env(&["download", A, "-p", "s3bad"], &[("AWS_SECRET_ACCESS_KEY", "not-the-secret-XYZ")]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not-the-secret-XYZ"));
    // No S3 keys at all: exit 3, saying where KFP keeps them.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobdl"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .env("JOBDL_ACCESS_TOKEN", TOKEN)
        .env("HOME", w.tmp.path().join("home"))
        .args(["show", A, "--kfp-endpoint", &w.kfp.base_url(), "--s3-endpoint", &w.moto.endpoint()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mlpipeline-minio-artifact"), "{}", text(&out));
    // No S3 endpoint for a minio:// root: exit 2 saying how to port-forward.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobdl"));
    cmd.env("JOBDL_ACCESS_TOKEN", TOKEN).env("HOME", w.tmp.path().join("home")).envs(w.seeded.env());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_ENDPOINT") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.args(["show", A, "--kfp-endpoint", &w.kfp.base_url()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("port-forward"));
}

#[test]
fn pipeline_roots_are_found_in_order_and_server_endpoints_never_contacted() {
    let Some(w) = world() else { return };
    // C: no pipeline_root; the experiment's namespace gives the multi-user root.
    w.kfp.run("run-c", &["SUCCEEDED"], run_json("run-c", Some(spec(PIPE)), None, "exp-team"));
    w.kfp.experiment("exp-team", json!({"experiment_id": "exp-team", "namespace": "team-a"}));
    let out = w.jobdl(&["download", "run-c", "--all-outputs", "-p", "c"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("private-artifacts/team-a"), "{}", text(&out));
    assert!(w.dest("c/named-outputs/train/model").is_file());
    // No executor-logs (KFP < 2.5): the default mode says so and names the outputs.
    let out = w.jobdl(&["download", "run-c", "-p", "c0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no executor-logs") && err.contains("train/model"), "{err}");

    // D: a root with ?endpoint= pointing at a sentinel on 127.0.0.2: dropped, never contacted.
    let sentinel = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    sentinel.set_nonblocking(true).unwrap();
    let root = format!("s3://other/kfp?endpoint=http://{}&region=x", sentinel.local_addr().unwrap());
    w.kfp.run("run-d", &["SUCCEEDED"], run_json("run-d", Some(spec(PIPE)), Some(&root), ""));
    let out = w.jobdl(&["download", "run-d", "--all-outputs", "-p", "d"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(w.dest("d/named-outputs/train/model").is_file());
    assert!(sentinel.accept().is_err(), "the root's endpoint was contacted");

    // E: the spec only through the pipeline version; F: the spec wrapped with platform_spec.
    let mut e = run_json("run-b", None, None, "");
    e["pipeline_version_reference"] = json!({"pipeline_id": "p-1", "pipeline_version_id": "v-1"});
    w.kfp.run("run-b", &["SUCCEEDED"], e);
    w.kfp.version(
        "p-1",
        "v-1",
        json!({"pipeline_id": "p-1", "pipeline_version_id": "v-1", "display_name": "v1",
        "pipeline_spec": spec(PIPE)}),
    );
    let out = w.jobdl(&["download", "run-b", "--output", "train/model", "-p", "e"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The version's spec also says which declared outputs are missing.
    assert!(String::from_utf8_lossy(&out.stderr).contains("evaluate/metrics"), "{}", text(&out));
    assert!(w.dest("e/named-outputs/train/model").is_file());
    w.kfp.run(
        "run-f",
        &["SUCCEEDED"],
        run_json("run-b", Some(json!({"pipeline_spec": spec(PIPE), "platform_spec": {}})), None, ""),
    );
    let out = w.jobdl(&["show", "run-f", "--json"]);
    assert_eq!(out.status.code(), Some(4), "run-f has no objects: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("minio://mlpipeline/v2/artifacts/train-pipeline/run-f/"), "names the roots tried: {err}");
    // --pipeline-root wins over everything.
    let out = w.jobdl(&["download", "run-f", "--pipeline-root", "minio://mlpipeline/v2/artifacts", "-p", "f"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    w.kfp.run("run-g", &["SUCCEEDED"], run_json("run-g", Some(spec(PIPE)), Some("gs://bucket/x"), ""));
    let out = w.jobdl(&["download", "run-g", "--pipeline-root", "s3://other/kfp", "--all-outputs", "-p", "g"]);
    assert_eq!(out.status.code(), Some(4), "run-g has nothing under s3://other/kfp: {}", text(&out));
    let out = w.jobdl(&["download", "run-g", "-p", "g2"]);
    assert_eq!(out.status.code(), Some(2), "a gs:// root cannot be read: {}", text(&out));

    // The new API (view=FULL with tasks[]): exact URIs, a cached task's outputs under run A's
    // prefix, a metric without a URI and an https URI named in notes, never dropped silently.
    let mut n = run_json("run-n", Some(spec(PIPE)), None, "");
    let uri = |k: &str| format!("minio://mlpipeline/v2/artifacts/{PIPE}/{A}/{k}");
    n["tasks"] = json!([
        {"task_id": "t1", "name": "train", "state": "CACHED", "type": "RUNTIME", "outputs": {"artifacts": [
            {"artifact_key": "model", "type": "OUTPUT", "artifacts": [{"artifact_id": "1", "name": "model", "type": "Model",
                "uri": uri(&format!("train/{U2}/model"))}]}]}},
        {"task_id": "t2", "name": "evaluate", "state": "SUCCEEDED", "type": "RUNTIME", "outputs": {"artifacts": [
            {"artifact_key": "metrics", "artifacts": [{"artifact_id": "2", "name": "metrics", "type": "Metric", "number_value": 0.9}]},
            {"artifact_key": "report", "artifacts": [{"artifact_id": "3", "name": "report", "type": "Artifact",
                "uri": uri(&format!("evaluate/{U5}/report"))}]}]}},
        {"task_id": "t3", "name": "ext", "state": "SUCCEEDED", "type": "IMPORTER", "outputs": {"artifacts": [
            {"artifact_key": "web", "artifacts": [{"artifact_id": "4", "name": "web", "uri": "https://example.invalid/data.csv"}]}]}}
    ]);
    w.kfp.run("run-n", &["SUCCEEDED"], n);
    let out = w.jobdl(&["download", "run-n", "--all-outputs", "--json", "-p", "n"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&doc);
    let got = tree(&w.dest("n"));
    assert_eq!(got["named-outputs/train/model"], w.a[&format!("train/{U2}/model")]);
    assert_eq!(got["named-outputs/evaluate/report"], w.a[&format!("evaluate/{U5}/report")]);
    let notes = doc["notes"].to_string();
    assert!(notes.contains("evaluate/metrics has no URI") && notes.contains("ext/web"), "{notes}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("was cached"), "{}", text(&out));
}

#[test]
fn an_interrupted_big_output_resumes_and_fetches_only_what_is_missing() {
    const BIG: usize = 256 * 1024 * 1024 + 77;
    let key = format!("train/{U2}/checkpoint");
    let Some(w) = world_with(vec![(key.clone(), bytes(BIG, 99))]) else { return };
    let relay = relay::Relay::start(w.moto.port);
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobdl"));
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k.starts_with("JOBDL_") || k.starts_with("KF_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("JOBDL_ACCESS_TOKEN", TOKEN)
            .env("HOME", w.tmp.path().join("home"))
            .env("XDG_CONFIG_HOME", w.tmp.path().join("home/.config"))
            .envs(w.seeded.env())
            .current_dir(w.tmp.path())
            .args(["download", A, "--output", "train/checkpoint", "-p", "r", "--kfp-endpoint", &w.kfp.base_url()])
            .args(["--s3-endpoint", &relay.endpoint()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    // First run: SIGKILL once about half the object has come through.
    let mut child = run(&[]).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while relay.bytes_down() < (BIG / 2) as u64 {
        assert!(child.try_wait().unwrap().is_none(), "jobdl finished before it could be interrupted");
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let first = relay.bytes_down();
    let final_path = w.dest(&format!("r/named-outputs/train/{U2}/checkpoint"));
    assert!(!final_path.exists(), "nothing under the final name after a kill");
    // Second run: only what is missing.
    let out = run(&["--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second = relay.bytes_down() - first;
    let got = std::fs::read(&final_path).unwrap();
    assert!(got == w.a[&key], "resumed file differs");
    let refetched = (first + second).saturating_sub(BIG as u64);
    eprintln!(
        "resume through moto: first run {first} B, second run {second} B of {BIG} B; re-fetched {refetched} B ({:.1}%)",
        refetched as f64 * 100.0 / BIG as f64
    );
    assert!(second < (BIG as u64) * 3 / 4, "the second run fetched {second} of {BIG} bytes: it did not resume");
}

/// A gzip'd tar of `entries` (name, bytes); a name starting with `symlink:` becomes a symlink.
fn tgz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        if let Some(target) = name.strip_prefix("symlink:") {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, "link", target).unwrap();
            continue;
        }
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Raw names (set_path refuses `..`): write the name bytes into the header directly.
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// The `:read` body: `{"data":"<base64 of the .tgz>"}`.
fn read_body(tgz: &[u8]) -> Vec<u8> {
    use base64::Engine;
    format!("{{\"data\":\"{}\"}}", base64::engine::general_purpose::STANDARD.encode(tgz)).into_bytes()
}

#[test]
fn v1_argo_artifacts_stream_from_the_read_route() {
    let Some(w) = world() else { return };
    let run = "run-v1";
    // The v2beta1 run of a v1 pipeline carries the Argo workflow as its spec (no pipelineInfo).
    let mut r = run_json(run, None, None, "");
    r["pipeline_spec"] =
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"generateName": "p-"}});
    w.kfp.run(run, &["SUCCEEDED"], r);
    let node = |id: &str, task: &str, arts: &[&str]| {
        json!({"id": id, "type": "Pod", "displayName": task, "phase": "Succeeded",
               "outputs": {"artifacts": arts.iter().map(|a| json!({"name": a, "s3": {"key": format!("artifacts/{id}/{a}.tgz")}})).collect::<Vec<_>>()}})
    };
    let wf = json!({"metadata": {"name": "p-abc"}, "status": {"phase": "Succeeded", "nodes": {
        "p-abc": {"id": "p-abc", "type": "DAG", "displayName": "p-abc"},
        "p-abc-1": node("p-abc-1", "train", &["main-logs", "model"]),
        "p-abc-2": node("p-abc-2", "evaluate", &["main-logs", "report"]),
        "p-abc-3": node("p-abc-3", "flaky", &["data"]),
        "p-abc-4": node("p-abc-4", "broken", &["data"]),
        "p-abc-5": node("p-abc-5", "loop", &["a"]),
        "p-abc-6": node("p-abc-6", "loop", &["a"])}}});
    w.kfp.v1_run(run, &wf);
    let big = bytes(3 * 1024 * 1024 + 5, 70);
    let model = tgz(&[("model.bin", &big), ("sub/config.json", b"{}")]);
    let serve = |node: &str, name: &str, body: Vec<u8>, cut: Option<(usize, usize)>| {
        w.kfp.read(
            run,
            node,
            name,
            kfp_api::ReadBody { cut_at: cut.map(|c| c.0), cut_times: cut.map_or(0, |c| c.1), body },
        );
    };
    serve("p-abc-1", "main-logs", read_body(&tgz(&[("main.log", b"training...\n")])), None);
    serve("p-abc-1", "model", read_body(&model), None);
    serve("p-abc-2", "main-logs", read_body(&tgz(&[("main.log", b"eval\n")])), None);
    serve(
        "p-abc-2",
        "report",
        read_body(&tgz(&[("ok.txt", b"fine"), ("../evil.txt", b"x"), ("symlink:/etc/passwd", b"")])),
        None,
    );
    let flaky = read_body(&tgz(&[("part.csv", &big)]));
    serve("p-abc-3", "data", flaky.clone(), Some((flaky.len() / 2, 1)));
    serve("p-abc-5", "a", read_body(&tgz(&[("i.txt", b"five")])), None);
    serve("p-abc-6", "a", read_body(&tgz(&[("i.txt", b"six")])), None);
    let broken = read_body(&tgz(&[("part.csv", &big)]));
    serve("p-abc-4", "data", broken.clone(), Some((broken.len() / 3, 1000)));

    let out = w.jobdl(&["download", run, "--all-outputs", "--json", "-p", "v1"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&doc);
    let got = tree(&w.dest("v1"));
    assert_eq!(got["artifacts/train/main.log"], b"training...\n");
    assert_eq!(got["artifacts/evaluate/main.log"], b"eval\n");
    assert!(got["named-outputs/train/model/model.bin"] == big);
    assert_eq!(got["named-outputs/train/model/sub/config.json"], b"{}");
    assert_eq!(got["named-outputs/evaluate/report/ok.txt"], b"fine");
    // Several Pods of one task (a v1 ParallelFor): one directory each, by node id.
    assert_eq!(got["named-outputs/loop/p-abc-5/a/i.txt"], b"five");
    assert_eq!(got["named-outputs/loop/p-abc-6/a/i.txt"], b"six");
    assert!(got["named-outputs/flaky/data/part.csv"] == big, "a cut body is retried from zero");
    assert!(!got.keys().any(|k| k.contains("broken/data/part.csv")), "a body that always breaks lands nothing");
    assert!(
        !got.keys().any(|k| k.contains("evil") || k.contains("passwd") || k.contains("jobdl-part")),
        "{:?}",
        got.keys()
    );
    assert!(!w.tmp.path().join("v1/named-outputs/evaluate/evil.txt").exists());
    let failed: Vec<String> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["result"] == "failed")
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert!(failed.iter().any(|f| f.contains("evil")), "{failed:?}");
    assert!(failed.iter().any(|f| f.contains("broken")), "{failed:?}");
    // `show` names the v1 outputs.
    let out = w.jobdl(&["show", run, "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = doc["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["broken/data", "evaluate/report", "flaky/data", "loop/p-abc-5/a", "loop/p-abc-6/a", "train/model"]
    );
}

/// `--include`/`--exclude` apply to the entries of a v1 archive as to files (relative to the
/// output or as jobdl prints them), and the entries that land are recorded in the manifest with
/// the MD5 of their bytes, so `jobdl verify` checks them.
#[test]
fn v1_archive_entries_are_filtered_and_recorded_for_verify() {
    let Some(w) = world() else { return };
    let run = "run-v1-filter";
    let mut r = run_json(run, None, None, "");
    r["pipeline_spec"] =
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"generateName": "p-"}});
    w.kfp.run(run, &["SUCCEEDED"], r);
    let wf = json!({"metadata": {"name": "p-f"}, "status": {"phase": "Succeeded", "nodes": {
        "p-f-1": {"id": "p-f-1", "type": "Pod", "displayName": "train", "phase": "Succeeded",
                  "outputs": {"artifacts": [
                      {"name": "main-logs", "s3": {"key": "artifacts/p-f-1/main-logs.tgz"}},
                      {"name": "model", "s3": {"key": "artifacts/p-f-1/model.tgz"}}]}}}}});
    w.kfp.v1_run(run, &wf);
    let serve = |name: &str, entries: &[(&str, &[u8])]| {
        let body = read_body(&tgz(entries));
        w.kfp.read(run, "p-f-1", name, kfp_api::ReadBody { cut_at: None, cut_times: 0, body });
    };
    serve("main-logs", &[("main.log", b"training...\n"), ("debug/trace.txt", b"noise")]);
    let weights = bytes(70_000, 71);
    serve("model", &[("model.bin", &weights), ("sub/config.json", b"{}"), ("scratch.tmp", b"x")]);

    let dest = w.dest("v1f");
    let out = w.jobdl(&[
        "download",
        run,
        "--all-outputs",
        "--json",
        "-p",
        "v1f",
        "--exclude",
        "*.tmp",
        "--exclude",
        "artifacts/train/debug",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&doc);
    let got = tree(&dest);
    let landed: Vec<&str> = got.keys().map(String::as_str).filter(|k| !k.starts_with(".jobdl/")).collect();
    assert_eq!(
        landed,
        [
            "artifacts/train/main.log",
            "named-outputs/train/model/model.bin",
            "named-outputs/train/model/sub/config.json"
        ]
    );
    assert!(!dest.join("artifacts/train/debug").exists(), "an excluded directory is not created");

    // The manifest records every landed entry: size and MD5 of the bytes written.
    let m: Value = serde_json::from_slice(&std::fs::read(dest.join(".jobdl/manifest.json")).unwrap()).unwrap();
    let recorded: BTreeMap<String, (u64, String)> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["hash"]["kind"], "md5", "{e}");
            let p = e["path"].as_str().unwrap().to_string();
            (p, (e["size"].as_u64().unwrap(), e["hash"]["value"].as_str().unwrap().to_string()))
        })
        .collect();
    let want: BTreeMap<String, (u64, String)> =
        landed.iter().map(|k| (k.to_string(), (got[*k].len() as u64, md5_hex(&got[*k])))).collect();
    assert_eq!(recorded, want);

    // `verify` re-hashes them: all ok, then one entry changed (same size) is named.
    let out = w.jobdl(&["verify", "v1f", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["totals"]["ok"], 3, "{doc}");
    let mut changed = weights.clone();
    changed[100] ^= 1;
    std::fs::write(dest.join("named-outputs/train/model/model.bin"), &changed).unwrap();
    let out = w.jobdl(&["verify", "v1f", "--json"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bad: Vec<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] != "ok")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(bad, ["named-outputs/train/model/model.bin"]);

    // An --include is judged against the entries too, once they are known: one that matched an
    // entry is not reported, one that matched nothing is.
    let out = w.jobdl(&[
        "download",
        run,
        "--all-outputs",
        "-p",
        "v1i",
        "--include",
        "artifacts/train/*.log",
        "--include",
        "nothing/**",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--include 'nothing/**' matched no file"), "{err}");
    assert!(!err.contains("'artifacts/train/*.log' matched no file"), "{err}");
    let got = tree(&w.dest("v1i"));
    let landed: Vec<&str> = got.keys().map(String::as_str).filter(|k| !k.starts_with(".jobdl/")).collect();
    assert_eq!(landed, ["artifacts/train/main.log"]);
}

//! Beyond one finished job (issue 24 items 1, 4, 5): `--allow-running`, `--shard K/N` and
//! `verify --remote`, against the emulator and the fake MLflow server.

use crate::harness;
use crate::support;
use crate::support::{check, mlflow_fake};

use harness::{TestEnv, decoded, files_under, is_blob_data, one_job, text};
use mlflow_fake::{FakeConfig, FakeMlflow, FakeRun};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn manifest(dest: &Path, name: &str) -> Value {
    let bytes = std::fs::read(dest.join(".jobdl").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_slice(&bytes).expect("manifest is JSON")
}

/// A jobdl command pointed at a fake MLflow tracking server.
fn mlflow_command(env: &TestEnv, fake: &FakeMlflow, args: &[&str]) -> std::process::Command {
    let mut cmd = env.command(args);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT")
        .env("MLFLOW_TRACKING_URI", fake.base_url())
        .env("JOBDL_ACCESS_TOKEN", "test-token");
    cmd
}

fn mlflow_run(id: &str, status: &str, files: &[(&str, &[u8])]) -> FakeConfig {
    let mut run = FakeRun::new(id, status);
    for (p, b) in files {
        run = run.file(p, b.to_vec());
    }
    let mut cfg = FakeConfig::default();
    cfg.runs.insert(id.to_string(), run);
    cfg
}

// ------------------------------------------------------------------ --allow-running

#[test]
fn allow_running_downloads_what_exists_of_a_running_foundry_job_marked_partial() {
    let env = TestEnv::new(support::standard_world());
    // The gate still refuses without the flag (exit 5, see tests/cli/gate.rs).
    env.run(&["download", "job-running"]).expect_code(5);
    let run = env.run(&["download", "job-running", "--allow-running", "--json"]);
    run.expect_code(0);
    check::validate(run.doc());
    assert_eq!(run.doc()["partial"], true, "{run}");
    assert_eq!(run.doc()["job"]["status"], "Running", "{run}");
    assert!(run.stderr.contains("still Running") && run.stderr.contains("incomplete"), "{run}");
    let dest = env.dest("job-running");
    assert_eq!(std::fs::read(dest.join("artifacts/user_logs/std_log.txt")).unwrap(), b"still going\n");
    assert_eq!(manifest(&dest, "manifest.json")["partial"], true);

    // Once the job finished, a rerun is a complete one: the manifest no longer says partial.
    env.emu.set_statuses("job-running", vec!["Completed".into()]);
    let run = env.run(&["download", "job-running", "--json"]);
    run.expect_code(0);
    assert!(run.doc().get("partial").is_none(), "{run}");
    assert!(manifest(&dest, "manifest.json").get("partial").is_none());

    // ls takes the flag too; --wait and --allow-running contradict each other.
    env.emu.set_statuses("job-running", vec!["Running".into()]);
    env.run(&["ls", "job-running"]).expect_code(5);
    let run = env.run(&["ls", "job-running", "--allow-running"]);
    run.expect_code(0);
    assert!(run.stdout.contains("std_log.txt"), "{run}");
    let run = env.run(&["ls", "job-running", "--allow-running", "--json"]);
    run.expect_code(0);
    check::validate(run.doc());
    assert_eq!(run.doc()["partial"], true, "{run}");
    env.run(&["download", "job-running", "--allow-running", "--wait"]).expect_code(2);
}

#[test]
fn allow_running_downloads_from_a_running_azure_ml_job() {
    let mut w = support::workspace_world();
    w.add_artifact("running-1", "user_logs/std_log.txt", text("epoch 3\n"));
    let env = TestEnv::new(w);
    env.run_cmd(env.workspace_command(["download", "running-1"])).expect_code(5);
    let run = env.run_cmd(env.workspace_command(["download", "running-1", "--allow-running", "--json"]));
    run.expect_code(0);
    check::validate(run.doc());
    assert_eq!(run.doc()["partial"], true, "{run}");
    assert!(run.stderr.contains("still Running"), "{run}");
    assert_eq!(std::fs::read(env.dest("running-1").join("artifacts/user_logs/std_log.txt")).unwrap(), b"epoch 3\n");
}

#[test]
fn allow_running_downloads_from_a_running_mlflow_run() {
    let env = TestEnv::new(support::World::new());
    let fake = FakeMlflow::start(mlflow_run("r1", "RUNNING", &[("log.txt", b"step 1\n")]));
    env.run_cmd(mlflow_command(&env, &fake, &["download", "r1"])).expect_code(5);
    let run = env.run_cmd(mlflow_command(&env, &fake, &["download", "r1", "--allow-running", "--json"]));
    run.expect_code(0);
    check::validate(run.doc());
    assert_eq!(run.doc()["partial"], true, "{run}");
    assert!(run.stderr.contains("still RUNNING"), "{run}");
    assert_eq!(std::fs::read(env.dest("r1").join("artifacts/log.txt")).unwrap(), b"step 1\n");
}

// ------------------------------------------------------------------ --shard

fn sharded_world() -> support::World {
    let files: Vec<(String, support::BlobFixture)> = (0..12u64)
        .map(|i| (format!("out/f{i:02}.bin"), support::BlobFixture::generated(1000 + 700 * (i % 5), i)))
        .collect();
    one_job("job-s", files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect())
}

fn paths_of(doc: &Value) -> BTreeSet<String> {
    doc["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn three_shards_into_one_destination_fetch_every_file_exactly_once() {
    let env = TestEnv::new(sharded_world());
    let all: BTreeSet<String> = (0..12).map(|i| format!("artifacts/out/f{i:02}.bin")).collect();
    // The three nodes run at once, into the same destination.
    let running: Vec<_> = (0..3)
        .map(|k| {
            let shard = format!("{k}/3");
            env.spawn(env.command(["download", "job-s", "-p", "shared", "--shard", &shard, "--json"]))
        })
        .collect();
    let runs: Vec<_> = running.into_iter().map(|r| r.wait(harness::CHILD_LIMIT)).collect();
    let mut union = BTreeSet::new();
    for (k, run) in runs.iter().enumerate() {
        run.expect_code(0);
        check::validate(run.doc());
        assert_eq!(run.doc()["shard"], serde_json::json!({"index": k, "count": 3}), "{run}");
        let mine = paths_of(run.doc());
        assert!(!mine.is_empty(), "shard {k} got nothing");
        assert!(union.is_disjoint(&mine), "shard {k} overlaps another: {mine:?}");
        union.extend(mine.clone());
        let m = manifest(&env.dest("shared"), &format!("manifest-shard-{k}-of-3.json"));
        assert_eq!(m["shard"], serde_json::json!({"index": k, "count": 3}));
        let recorded: BTreeSet<String> =
            m["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
        assert_eq!(recorded, mine, "a shard's manifest records only its files");
    }
    assert_eq!(union, all);
    // The emulator served each file's bytes exactly once.
    let mut gets: BTreeMap<String, usize> = BTreeMap::new();
    for r in env.requests().iter().filter(|r| r.method == "GET" && is_blob_data(r)) {
        *gets.entry(decoded(r)).or_default() += 1;
    }
    assert_eq!(gets.len(), 12, "{gets:#?}");
    assert!(gets.values().all(|n| *n == 1), "{gets:?}");
    let payload: Vec<String> =
        files_under(&env.work().join("shared")).into_iter().filter(|p| !p.starts_with(".jobdl/")).collect();
    assert_eq!(payload.len(), 12, "{payload:?}");
    assert!(
        !env.work()
            .join("shared/.jobdl")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().starts_with("lock") })
    );

    // verify checks every shard's manifest, or one.
    let run = env.run(&["verify", "shared", "--json"]);
    run.expect_code(0);
    check::validate(run.doc());
    assert_eq!(run.doc()["totals"]["files"], 12, "{run}");
    assert_eq!(run.doc()["shards"].as_array().unwrap().len(), 3, "{run}");
    let run = env.run(&["verify", "shared", "--shard", "1/3", "--json"]);
    run.expect_code(0);
    assert_eq!(paths_of(run.doc()), paths_of(runs[1].doc()), "{run}");

    // verify --remote lists each shard's share again: nothing changed on the service.
    let run = env.run(&["verify", "shared", "--remote", "--json"]);
    run.expect_code(0);
    check::validate(run.doc());
    assert_eq!(run.doc()["remote"], serde_json::json!({"new": [], "changed": [], "deleted": []}), "{run}");

    // --shard auto reads torchrun's pair, and gives the same share as the flag.
    let mut cmd = env.command(["download", "job-s", "-p", "auto1", "--shard", "auto", "--json"]);
    cmd.env("RANK", "1").env("WORLD_SIZE", "3");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert_eq!(paths_of(run.doc()), paths_of(runs[1].doc()), "{run}");
    // A Kubernetes indexed Job: JOB_COMPLETION_INDEX + JOBDL_SHARD_COUNT come first.
    let mut cmd = env.command(["download", "job-s", "-p", "auto2", "--shard", "auto", "--json"]);
    cmd.env("RANK", "1").env("WORLD_SIZE", "3").env("JOB_COMPLETION_INDEX", "2").env("JOBDL_SHARD_COUNT", "3");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert_eq!(paths_of(run.doc()), paths_of(runs[2].doc()), "{run}");
}

#[test]
fn a_shard_with_no_flag_ignores_rank_and_bad_values_exit_2() {
    let env = TestEnv::new(sharded_world());
    // RANK alone (a training script's environment) does not split a plain download.
    let mut cmd = env.command(["download", "job-s", "--json"]);
    cmd.env("RANK", "1").env("WORLD_SIZE", "3");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert_eq!(paths_of(run.doc()).len(), 12);
    assert!(run.doc().get("shard").is_none());
    for bad in ["3/3", "x", "1/0"] {
        let run = env.run(&["download", "job-s", "-p", "bad", "--shard", bad, "--json"]);
        run.expect_code(2);
        assert_eq!(run.doc()["error"]["code"], "usage", "{run}");
    }
    let run = env.run(&["download", "job-s", "-p", "bad", "--shard", "auto"]);
    run.expect_code(2);
    assert!(run.stderr.contains("RANK + WORLD_SIZE"), "{run}");
    assert!(!env.work().join("bad").exists());
}

#[test]
fn cp_takes_a_shard_of_a_prefix() {
    let env = TestEnv::new(sharded_world());
    let url = env.emu.container_sas_url(support::ARTIFACT_CONTAINER, "");
    let mut union = BTreeSet::new();
    for k in 0..2 {
        let shard = format!("{k}/2");
        let run = env.run(&["cp", &url, "out", "--shard", &shard, "--json"]);
        run.expect_code(0);
        check::validate(run.doc());
        let mine = paths_of(run.doc());
        assert!(union.is_disjoint(&mine));
        union.extend(mine);
    }
    assert_eq!(union.len(), 12);
}

// ------------------------------------------------------------------ verify --remote

#[test]
fn verify_remote_names_files_new_changed_and_deleted_on_an_mlflow_run() {
    let env = TestEnv::new(support::World::new());
    let fake = FakeMlflow::start(mlflow_run("r2", "FINISHED", &[("a.txt", b"alpha\n"), ("d.txt", b"delta\n")]));
    env.run_cmd(mlflow_command(&env, &fake, &["download", "r2"])).expect_code(0);
    let run = env.run_cmd(mlflow_command(&env, &fake, &["verify", "r2", "--remote", "--json"]));
    run.expect_code(0);
    check::validate(run.doc());
    assert_eq!(run.doc()["remote"], serde_json::json!({"new": [], "changed": [], "deleted": []}), "{run}");

    fake.set_config(|c| {
        let r = c.runs.get_mut("r2").unwrap();
        r.files.insert("a.txt".into(), b"alpha, longer\n".to_vec());
        r.files.remove("d.txt");
        r.files.insert("e.txt".into(), b"echo\n".to_vec());
    });
    let run = env.run_cmd(mlflow_command(&env, &fake, &["verify", "r2", "--remote", "--json"]));
    run.expect_code(6);
    check::validate(run.doc());
    let remote = &run.doc()["remote"];
    assert_eq!(remote["new"], serde_json::json!(["artifacts/e.txt"]), "{run}");
    assert_eq!(remote["deleted"], serde_json::json!(["artifacts/d.txt"]), "{run}");
    assert_eq!(remote["changed"][0]["path"], "artifacts/a.txt", "{run}");
    assert!(remote["changed"][0]["reason"].as_str().unwrap().contains("14 bytes"), "{run}");
    // The local files did not change: only the service did.
    assert_eq!(run.doc()["totals"]["ok"], 2, "{run}");
    let run = env.run_cmd(mlflow_command(&env, &fake, &["verify", "r2", "--remote"]));
    run.expect_code(6);
    for line in [
        "new on the service: artifacts/e.txt",
        "changed on the service: artifacts/a.txt",
        "deleted on the service: artifacts/d.txt",
    ] {
        assert!(run.stderr.contains(line), "{line}\n{run}");
    }
    // Without --remote nothing is asked of the service.
    let before = fake.requests().len();
    env.run(&["verify", "r2"]).expect_code(0);
    assert_eq!(fake.requests().len(), before);
}

#[test]
fn verify_remote_against_foundry_compares_etags_and_refuses_another_source() {
    let env = TestEnv::new(one_job("job-v", vec![("a.txt", text("alpha\n")), ("b.txt", text("bravo\n"))]));
    env.run(&["download", "job-v", "--include", "a.txt", "--include", "b.txt"]).expect_code(0);
    let run = env.run(&["verify", "job-v", "--remote", "--json"]);
    run.expect_code(0);
    check::validate(run.doc());
    let dest = env.dest("job-v");
    // The service's objects are fixed here: the record is edited instead, so that it describes
    // another ETag for a.txt, misses b.txt and holds a file the service never had.
    let path = dest.join(".jobdl/manifest.json");
    let mut m = manifest(&dest, "manifest.json");
    assert_eq!(m["request"]["include"], serde_json::json!(["a.txt", "b.txt"]));
    let files = m["files"].as_array_mut().unwrap();
    files[0]["etag"] = "\"0xOTHER\"".into();
    let mut gone = files[0].clone();
    gone["path"] = "artifacts/gone.txt".into();
    files.retain(|f| f["path"] != "artifacts/b.txt");
    files.push(gone);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let run = env.run(&["verify", "job-v", "--remote", "--json"]);
    run.expect_code(6);
    let remote = &run.doc()["remote"];
    assert_eq!(remote["new"], serde_json::json!(["artifacts/b.txt"]), "{run}");
    assert_eq!(remote["deleted"], serde_json::json!(["artifacts/gone.txt"]), "{run}");
    assert_eq!(remote["changed"][0]["path"], "artifacts/a.txt", "{run}");
    assert!(remote["changed"][0]["reason"].as_str().unwrap().contains("ETag"), "{run}");

    // Another project than the one recorded: refused, nothing compared.
    let mut cmd = env.command(["verify", "job-v", "--remote"]);
    cmd.env("AZURE_AI_PROJECT_ENDPOINT", format!("{}/api/projects/other", env.emu.base_url()));
    let run = env.run_cmd(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains("was written from"), "{run}");
}

#[test]
fn verify_remote_refuses_a_cp_destination() {
    let env = TestEnv::new(sharded_world());
    let url = env.emu.container_sas_url(support::ARTIFACT_CONTAINER, "");
    env.run(&["cp", &url, "out", "--manifest"]).expect_code(0);
    let run = env.run(&["verify", "out", "--remote"]);
    run.expect_code(2);
    assert!(run.stderr.contains("jobdl cp"), "{run}");
    env.run(&["verify", "out"]).expect_code(0);
}

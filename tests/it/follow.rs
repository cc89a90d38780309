//! `download --follow` (issue 24 item 1): a running job whose files appear and change from one
//! poll to the next (the emulator installs the next world at each job GET), followed until it
//! ends, on Foundry and Azure ML.

use crate::harness;
use crate::support;
use crate::support::check;

use harness::{TestEnv, text};
use serde_json::Value;
use std::path::Path;
use support::{BlobFixture, JobFixture, World};

const JOB: &str = "job-follow";
const LOG: &str = "user_logs/std_log.txt";

/// The job's files at poll `step` (0-based): the log grows at polls 1 and 3, a checkpoint folder
/// appears at poll 1, metrics at poll 2, a second checkpoint at the last poll.
fn files_at(step: usize) -> Vec<(&'static str, BlobFixture)> {
    let log = ["epoch 1\n", "epoch 1\nepoch 2\n", "epoch 1\nepoch 2\n", "epoch 1\nepoch 2\ndone\n"];
    let mut files = vec![(LOG, text(log[step.min(3)]))];
    if step >= 1 {
        files.push(("outputs/checkpoint-1/model.bin", BlobFixture::generated(5000, 1)));
        files.push(("outputs/checkpoint-1/optimizer/state.bin", BlobFixture::generated(3000, 2)));
    }
    if step >= 2 {
        files.push(("outputs/metrics.json", text("{\"loss\": 0.1}\n")));
    }
    if step >= 3 {
        files.push(("outputs/checkpoint-2/model.bin", BlobFixture::generated(5000, 3)));
    }
    files
}

/// A Foundry world with the job's files at poll `step` and the status script `statuses`.
fn foundry_world(step: usize, statuses: &[&str]) -> World {
    let mut w = World::new();
    let mut job = JobFixture::new(JOB, statuses[0]);
    job.statuses = statuses.iter().map(|s| s.to_string()).collect();
    w.add_job(job);
    for (path, blob) in files_at(step) {
        w.add_artifact(JOB, path, blob);
    }
    w
}

/// GETs of one artifact's bytes.
fn fetches(env: &TestEnv, path: &str) -> usize {
    env.blob_gets(path).iter().filter(|r| r.method == "GET").count()
}

#[track_caller]
fn assert_final_files(dest: &Path, step: usize) {
    for (path, blob) in files_at(step) {
        let got = std::fs::read(dest.join("artifacts").join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(got, blob.full_content(), "{path} has the final bytes");
    }
}

fn follow_doc(doc: &Value) -> &Value {
    doc.get("follow").unwrap_or_else(|| panic!("no follow section: {doc}"))
}

#[test]
fn follow_pulls_new_and_changed_files_until_the_foundry_job_completes() {
    let statuses = ["Running", "Running", "Running", "Completed"];
    let env = TestEnv::new(foundry_world(0, &statuses));
    env.emu.set_worlds(JOB, (0..4).map(|s| foundry_world(s, &statuses)).collect());
    let run = env.run(&["download", JOB, "--follow", "--poll-interval", "200ms", "--json"]);
    run.expect_code(0);
    check::validate(run.doc());
    let doc = run.doc();
    assert_eq!(doc["job"]["status"], "Completed", "{run}");
    assert!(doc.get("partial").is_none(), "the final pass is complete: {run}");
    let f = follow_doc(doc);
    assert_eq!(f["polls"], 4, "{run}");
    assert_eq!(f["ended"], true, "{run}");
    // Every file once, the log again each time it grew.
    assert_eq!(f["new"], 5, "{run}");
    assert_eq!(f["changed"], 2, "{run}");
    let dest = env.dest(JOB);
    assert_final_files(&dest, 3);
    assert_eq!(fetches(&env, LOG), 3, "the log is fetched at the first poll and each time it changed");
    assert_eq!(fetches(&env, "outputs/metrics.json"), 1, "an unchanged file is not fetched again");
    assert_eq!(fetches(&env, "checkpoint-1/model.bin"), 1);
    // The final pass lists every file, all verified.
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 5, "{run}");
    assert!(files.iter().all(|f| f["result"] != "failed"), "{run}");
    // One progress line per poll before the last, on stderr.
    assert!(run.stderr.contains("following job-follow: Running, 1 new, 0 changed, next check in 200ms"), "{run}");
    assert!(run.stderr.contains("following job-follow: Running, 2 new, 1 changed"), "{run}");
    assert!(run.stderr.contains("following job-follow: Running, 1 new, 0 changed"), "{run}");
    // The record is kept (as a rerun's) and says the job is no longer partial.
    let manifest: Value = serde_json::from_slice(&std::fs::read(dest.join(".jobdl/manifest.json")).unwrap()).unwrap();
    assert!(manifest.get("partial").is_none(), "{manifest}");
    assert_eq!(manifest["files"].as_array().unwrap().len(), 5);
}

#[test]
fn follow_of_a_job_that_fails_downloads_its_files_and_exits_8() {
    let statuses = ["Running", "Failed"];
    let env = TestEnv::new(foundry_world(0, &statuses));
    env.emu.set_worlds(JOB, vec![foundry_world(0, &statuses), foundry_world(1, &statuses)]);
    let run = env.run(&["download", JOB, "--follow", "--poll-interval", "200ms", "--json"]);
    run.expect_code(8);
    check::validate(run.doc());
    assert_eq!(run.doc()["job"]["status"], "Failed", "{run}");
    assert_eq!(follow_doc(run.doc())["polls"], 2, "{run}");
    assert_eq!(follow_doc(run.doc())["ended"], true, "{run}");
    assert!(run.stderr.contains("ended Failed"), "{run}");
    assert_final_files(&env.dest(JOB), 1);
}

#[test]
fn follow_of_a_finished_job_is_one_download() {
    let env = TestEnv::new(foundry_world(3, &["Completed"]));
    let run = env.run(&["download", JOB, "--follow", "--poll-interval", "200ms", "--json"]);
    run.expect_code(0);
    check::validate(run.doc());
    assert_eq!(follow_doc(run.doc())["polls"], 1, "{run}");
    assert_final_files(&env.dest(JOB), 3);
}

#[test]
fn follow_refuses_wait_allow_running_dry_run_and_shard() {
    let env = TestEnv::new(foundry_world(0, &["Running"]));
    for (extra, word) in [
        ("--wait", "drop --wait"),
        ("--allow-running", "drop --allow-running"),
        ("--dry-run", "jobdl ls"),
        ("--shard=0/2", "--shard"),
    ] {
        let run = env.run(&["download", JOB, "--follow", extra]);
        run.expect_code(2);
        assert!(run.stderr.contains(word), "{extra}: {run}");
    }
    let run = env.run(&["download", JOB, "--follow", "--poll-interval", "0s"]);
    run.expect_code(2);
    assert!(!env.dest(JOB).exists(), "nothing is written");
}

#[test]
fn follow_pulls_a_running_azure_ml_job_until_it_completes() {
    let world = |step: usize| {
        let mut w = support::workspace_world();
        for (path, blob) in files_at(step) {
            w.add_artifact("running-1", path, blob);
        }
        w
    };
    let env = TestEnv::new(world(0));
    env.emu.set_statuses("running-1", vec!["Running".into(), "Running".into(), "Running".into(), "Completed".into()]);
    env.emu.set_worlds("running-1", (0..4).map(world).collect());
    let run =
        env.run_cmd(env.workspace_command(["download", "running-1", "--follow", "--poll-interval", "200ms", "--json"]));
    run.expect_code(0);
    check::validate(run.doc());
    let f = follow_doc(run.doc());
    assert_eq!((f["polls"].as_u64(), f["new"].as_u64(), f["changed"].as_u64()), (Some(4), Some(5), Some(2)), "{run}");
    assert_final_files(&env.dest("running-1"), 3);
    assert_eq!(fetches(&env, LOG), 3, "{run}");
}

#[test]
fn a_new_folder_appears_only_when_all_its_files_are_verified() {
    // The job ended, but one file of its new checkpoint folder fails verification (its stored
    // MD5 is wrong): the folder does not appear at all, its good file waits in .jobdl/stage/.
    let world = |broken: bool| {
        let mut w = World::new();
        w.add_job(JobFixture::new(JOB, "Completed"));
        w.add_artifact(JOB, LOG, text("done\n"));
        w.add_artifact(JOB, "outputs/keep.txt", text("kept\n"));
        let model = BlobFixture::generated(4000, 7);
        let model = if broken { model.with_md5(support::Md5Mode::Wrong) } else { model };
        w.add_artifact(JOB, "outputs/checkpoint-9/model.bin", model);
        w.add_artifact(JOB, "outputs/checkpoint-9/config.json", text("{\"step\": 9}\n"));
        w
    };
    let env = TestEnv::new(world(true));
    let dest = env.dest(JOB);
    // The destination already has outputs/ (an earlier download), so checkpoint-9/ is the new folder.
    std::fs::create_dir_all(dest.join("artifacts/outputs")).unwrap();
    let run = env.run(&["download", JOB, "--follow", "--poll-interval", "200ms", "--json"]);
    run.expect_code(6);
    check::validate(run.doc());
    // user_logs/ (new too, and complete) is in place; checkpoint-9/ is not.
    assert_eq!(follow_doc(run.doc())["folders"], 1, "{run}");
    assert!(!dest.join("artifacts/outputs/checkpoint-9").exists(), "no part of the folder is in place");
    assert_eq!(std::fs::read(dest.join("artifacts/outputs/keep.txt")).unwrap(), b"kept\n");
    assert_eq!(std::fs::read(dest.join("artifacts").join(LOG)).unwrap(), b"done\n");
    let staged = dest.join(".jobdl/stage/artifacts/outputs/checkpoint-9/config.json");
    assert_eq!(std::fs::read(&staged).unwrap(), b"{\"step\": 9}\n", "the verified file waits in the stage");

    // Once the service serves the file right, the folder appears whole; the staged file is kept.
    env.emu.set_worlds(JOB, vec![world(false)]);
    let run = env.run(&["download", JOB, "--follow", "--poll-interval", "200ms", "--json"]);
    run.expect_code(0);
    check::validate(run.doc());
    assert_eq!(follow_doc(run.doc())["folders"], 1, "{run}");
    let ckpt = dest.join("artifacts/outputs/checkpoint-9");
    assert_eq!(std::fs::read(ckpt.join("model.bin")).unwrap(), BlobFixture::generated(4000, 7).full_content());
    assert_eq!(std::fs::read(ckpt.join("config.json")).unwrap(), b"{\"step\": 9}\n");
    assert_eq!(fetches(&env, "checkpoint-9/config.json"), 1, "the staged file is not fetched again");
    assert!(!dest.join(".jobdl/stage").exists(), "the stage is gone once empty");
    // And jobdl verify agrees with the manifest.
    env.run(&["verify", dest.to_str().unwrap()]).expect_code(0);
}

#[test]
fn a_checkpoint_that_appears_while_following_lands_whole() {
    let statuses = ["Running", "Running", "Running", "Completed"];
    let env = TestEnv::new(foundry_world(0, &statuses));
    env.emu.set_worlds(JOB, (0..4).map(|s| foundry_world(s, &statuses)).collect());
    let run = env.run(&["download", JOB, "--follow", "--poll-interval", "200ms", "--json"]);
    run.expect_code(0);
    // user_logs/ at the first poll, outputs/ (with checkpoint-1/) at the second, checkpoint-2/ at the last.
    assert_eq!(follow_doc(run.doc())["folders"], 3, "{run}");
    assert!(run.stderr.contains("1 new folder in place"), "{run}");
    assert!(!env.dest(JOB).join(".jobdl/stage").exists());
}

#[test]
fn follow_pulls_a_running_mlflow_run_until_it_finishes() {
    use support::mlflow_fake::{FakeConfig, FakeMlflow, FakeRun};
    let mut run = FakeRun::new("r1", "RUNNING");
    run.statuses = ["RUNNING", "RUNNING", "FINISHED"].map(String::from).to_vec();
    let logs = ["step 1\n", "step 1\nstep 2\n", "step 1\nstep 2\nstep 3\n"];
    run.files_by_poll = (0..3)
        .map(|i| {
            let mut files = std::collections::BTreeMap::new();
            files.insert("train.log".to_string(), logs[i].as_bytes().to_vec());
            if i >= 1 {
                files.insert("model/weights.bin".to_string(), vec![7u8; 3000]);
            }
            files
        })
        .collect();
    let mut cfg = FakeConfig::default();
    cfg.runs.insert("r1".into(), run);
    let fake = FakeMlflow::start(cfg);
    let env = TestEnv::new(World::new());
    let cmd =
        env.mlflow_command(&fake.base_url(), ["download", "r1", "--follow", "--poll-interval", "200ms", "--json"]);
    let out = env.run_cmd(cmd);
    out.expect_code(0);
    check::validate(out.doc());
    let f = follow_doc(out.doc());
    assert_eq!((f["polls"].as_u64(), f["new"].as_u64(), f["changed"].as_u64()), (Some(3), Some(2), Some(2)), "{out}");
    let dest = env.dest("r1");
    assert_eq!(std::fs::read(dest.join("artifacts/train.log")).unwrap(), logs[2].as_bytes());
    assert_eq!(std::fs::read(dest.join("artifacts/model/weights.bin")).unwrap(), vec![7u8; 3000]);
    let log_gets =
        fake.requests().iter().filter(|r| r.path.ends_with("train.log") || r.query.contains("train.log")).count();
    assert_eq!(log_gets, 3, "the log is fetched once per version");
}

#[test]
fn ctrl_c_between_polls_stops_with_130_and_the_last_pass_document() {
    let env = TestEnv::new(foundry_world(1, &["Running"]));
    let dest = env.dest(JOB);
    let running = env.spawn(env.command(["download", JOB, "--follow", "--poll-interval", "1h", "--json"]));
    let log = dest.join("artifacts").join(LOG);
    harness::wait_until(std::time::Duration::from_secs(60), "the first pass", || {
        log.is_file() && !dest.join(".jobdl/lock").exists()
    });
    running.signal(libc::SIGINT);
    let run = running.wait(harness::CHILD_LIMIT);
    run.expect_code(130);
    check::validate(run.doc());
    assert_eq!(run.doc()["totals"]["interrupted"], true, "{run}");
    assert_eq!(run.doc()["partial"], true, "{run}");
    let f = follow_doc(run.doc());
    assert_eq!((f["polls"].as_u64(), f["ended"].as_bool()), (Some(1), Some(false)), "{run}");
    assert_final_files(&dest, 1);
}

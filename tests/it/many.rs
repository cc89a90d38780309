//! Issue 24 item 2: many jobs in one `download` command, against the emulator. Each job lands in
//! its own folder with its own manifest; one failing job does not stop the others (exit 6).

use crate::harness;
use crate::support;

use harness::{TestEnv, assert_bytes, is_blob_data, text};
use serde_json::{Value, json};
use support::{JobFixture, World};

/// Two completed jobs with one artifact each, and a running one.
fn world() -> World {
    let mut w = World::new();
    w.add_job(JobFixture::new("job-a", "Completed"));
    w.add_artifact("job-a", "a.txt", text("alpha\n"));
    w.add_job(JobFixture::new("job-b", "Completed"));
    w.add_artifact("job-b", "logs/b.txt", text("bravo\n"));
    w.add_job(JobFixture::new("job-r", "Running"));
    w.add_artifact("job-r", "r.txt", text("running\n"));
    w
}

/// `doc` is a valid download result document.
#[track_caller]
pub(crate) fn assert_result_document(doc: &Value) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/jobdl-v1.schema.json");
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let whole = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = whole.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{doc:#}");
    schema["oneOf"] = json!([{ "$ref": "#/$defs/result" }]);
    assert!(jsonschema::draft202012::new(&schema).unwrap().is_valid(doc), "not a result document: {doc:#}");
}

fn section<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["jobs"].as_array().unwrap().iter().find(|j| j["name"] == name).unwrap_or_else(|| panic!("{name}: {doc:#}"))
}

fn blob_gets(env: &TestEnv) -> usize {
    env.requests().iter().filter(|r| r.method == "GET" && is_blob_data(r)).count()
}

#[test]
fn two_jobs_land_in_their_own_folders_with_their_own_manifests() {
    let env = TestEnv::new(world());
    let run = env.run(&["download", "job-a", "job-b", "-p", "out", "--json"]);
    run.expect_code(0);
    let doc = run.doc();
    assert_result_document(doc);
    let out = env.work().join("out");
    assert_bytes(&out.join("job-a/artifacts/a.txt"), b"alpha\n");
    assert_bytes(&out.join("job-b/artifacts/logs/b.txt"), b"bravo\n");
    assert_eq!(doc["job"], Value::Null);
    assert_eq!(doc["destination"], out.display().to_string());
    assert_eq!(doc["totals"]["downloaded"], 2, "{doc:#}");
    assert_eq!(doc["totals"]["jobs"], 2);
    assert_eq!(doc["totals"]["jobs_failed"], 0);
    let paths: Vec<&str> = doc["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["job-a/artifacts/a.txt", "job-b/artifacts/logs/b.txt"]);
    let a = section(doc, "job-a");
    assert_eq!(a["outcome"], "completed");
    assert_eq!(a["status"], "Completed");
    assert_eq!(a["destination"], out.join("job-a").display().to_string());
    assert_eq!(a["files"][0]["path"], "artifacts/a.txt");
    assert!(a["source"].as_str().unwrap().starts_with("foundry http"), "{a}");
    // A line per job on stderr.
    assert!(run.stderr.contains("job job-a: 1 downloaded"), "{run}");
    assert!(run.stderr.contains("job job-b: 1 downloaded"), "{run}");

    // Each folder is a destination of its own: verify works on it, and a rerun fetches nothing.
    for job in ["job-a", "job-b"] {
        let m: Value =
            serde_json::from_slice(&std::fs::read(out.join(job).join(".jobdl/manifest.json")).unwrap()).unwrap();
        assert_eq!(m["job"], job, "{m}");
        env.run(&["verify", out.join(job).to_str().unwrap()]).expect_code(0);
    }
    env.emu.clear_requests();
    let run = env.run(&["download", "job-a", "job-b", "-p", "out", "--json"]);
    run.expect_code(0);
    assert_eq!(run.doc()["totals"]["skipped"], 2, "{run}");
    assert_eq!(run.doc()["totals"]["downloaded"], 0, "{run}");
    assert_eq!(blob_gets(&env), 0, "a rerun fetches no byte");
}

#[test]
fn without_a_path_the_jobs_go_to_the_working_directory() {
    let env = TestEnv::new(world());
    env.run(&["download", "job-b", "job-a"]).expect_code(0);
    assert_bytes(&env.dest("job-a").join("artifacts/a.txt"), b"alpha\n");
    assert_bytes(&env.dest("job-b").join("artifacts/logs/b.txt"), b"bravo\n");
}

#[test]
fn a_missing_or_running_job_fails_alone_and_the_run_exits_6() {
    let env = TestEnv::new(world());
    let run = env.run(&["download", "job-a", "no-such-job", "job-r", "--json"]);
    run.expect_code(6);
    let doc = run.doc();
    assert_result_document(doc);
    assert_bytes(&env.dest("job-a").join("artifacts/a.txt"), b"alpha\n");
    assert!(!env.dest("no-such-job").exists(), "nothing is written for a job that was not found");
    assert!(!env.dest("job-r").exists(), "a running job is gated as for one job");
    assert_eq!(section(doc, "job-a")["outcome"], "completed");
    let gone = section(doc, "no-such-job");
    assert_eq!(gone["outcome"], "failed");
    assert_eq!(gone["status"], Value::Null);
    assert_eq!(gone["error"]["code"], "not_found", "{gone}");
    assert_eq!(gone["error"]["exit_code"], 4);
    let running = section(doc, "job-r");
    assert_eq!(running["error"]["code"], "job_not_terminal", "{running}");
    assert_eq!(doc["totals"]["jobs_failed"], 2);
    // One error line per failed job, naming it once.
    let line = run.stderr.lines().find(|l| l.starts_with("error:") && l.contains("'no-such-job'"));
    assert_eq!(line.map(|l| l.matches("'no-such-job'").count()), Some(1), "{run}");
    let line = run.stderr.lines().find(|l| l.starts_with("error:") && l.contains("'job-r'"));
    assert_eq!(line.map(|l| l.matches("'job-r'").count()), Some(1), "{run}");
    assert!(run.stderr.contains("2 of 3 jobs failed"), "{run}");

    // --allow-running lets the running job through, as for one job.
    let run = env.run(&["download", "job-r", "job-a", "--allow-running", "--json"]);
    run.expect_code(0);
    assert_eq!(section(run.doc(), "job-r")["partial"], true);
    assert_bytes(&env.dest("job-r").join("artifacts/r.txt"), b"running\n");
}

#[test]
fn every_job_failing_the_same_way_exits_with_that_code() {
    let env = TestEnv::new(world());
    env.run(&["download", "gone-1", "gone-2"]).expect_code(4);
}

#[test]
fn flags_of_one_job_are_refused_with_several() {
    let env = TestEnv::new(world());
    for flag in [&["--follow"][..], &["--dry-run"], &["--shard", "0/2"], &["--best", "loss:min"]] {
        let mut args = vec!["download", "job-a", "job-b"];
        args.extend_from_slice(flag);
        let run = env.run(&args);
        run.expect_code(2);
        assert!(run.stderr.contains("works on one job at a time"), "{run}");
    }
    let run = env.run(&["download", "job-a", "../x"]);
    run.expect_code(2);
    assert!(env.requests().is_empty(), "usage errors are found before any call");
}

/// Runs in two experiments; the emulator lists them newest first (job-4 … job-1).
fn experiments() -> World {
    let mut w = World::new();
    for (name, status, experiment) in [
        ("job-1", "Completed", "exp-x"),
        ("job-2", "Failed", "exp-x"),
        ("job-3", "Completed", "exp-y"),
        ("job-4", "Completed", "exp-x"),
        ("job-5", "Completed", "exp-x"),
    ] {
        w.add_job(JobFixture::new(name, status)).experiment_name = experiment.into();
        w.add_artifact(name, "out.txt", text(&format!("{name}\n")));
    }
    w
}

#[test]
fn experiment_downloads_its_newest_runs_in_a_status() {
    let env = TestEnv::new(experiments());
    let run = env.run(&[
        "download",
        "--experiment",
        "exp-x",
        "--status",
        "completed",
        "--limit",
        "2",
        "-p",
        "runs",
        "--json",
    ]);
    run.expect_code(0);
    assert_result_document(run.doc());
    let names: Vec<&str> = run.doc()["jobs"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["job-5", "job-4"], "{run}");
    let runs = env.work().join("runs");
    assert_bytes(&runs.join("job-5/artifacts/out.txt"), b"job-5\n");
    assert_bytes(&runs.join("job-4/artifacts/out.txt"), b"job-4\n");
    for other in ["job-1", "job-2", "job-3"] {
        assert!(!runs.join(other).exists(), "{other} is not selected");
    }
    let run = env.run(&["download", "--experiment", "exp-y", "-p", "runs", "--json"]);
    run.expect_code(0);
    assert_bytes(&runs.join("job-3/artifacts/out.txt"), b"job-3\n");
    // No run matches: exit 4, nothing written.
    let run = env.run(&["download", "--experiment", "exp-z", "-p", "none"]);
    run.expect_code(4);
    assert!(run.stderr.contains("experiment 'exp-z' has no runs"), "{run}");
    assert!(!env.work().join("none").exists());
    // A job and --experiment together, or --status without --experiment: usage errors.
    env.run(&["download", "job-1", "--experiment", "exp-x"]).expect_code(2);
    env.run(&["download", "job-1", "--status", "completed"]).expect_code(2);
    env.run(&["download"]).expect_code(2);
}

#[test]
fn experiment_on_mlflow_selects_by_name_status_and_limit() {
    use support::mlflow_fake::{AuthMode, FakeConfig, FakeMlflow, FakeRun};
    let mut cfg = FakeConfig { auth: AuthMode::Bearer(support::TOKEN.into()), ..FakeConfig::default() };
    for (id, status) in [("r1", "FINISHED"), ("r2", "FINISHED"), ("r3", "FAILED"), ("r4", "FINISHED")] {
        cfg.runs.insert(id.into(), FakeRun::new(id, status).file("model.txt", format!("{id}\n").into_bytes()));
    }
    let fake = FakeMlflow::start(cfg);
    let env = TestEnv::new(World::new());
    let mlflow = |args: &[&str]| env.run_cmd(env.mlflow_command(&fake.base_url(), args));
    let run = mlflow(&["download", "--experiment", "fake-exp", "--status", "completed", "--limit", "2", "--json"]);
    run.expect_code(0);
    assert_result_document(run.doc());
    let names: Vec<&str> = run.doc()["jobs"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["r4", "r2"], "{run}");
    assert_bytes(&env.dest("r4").join("artifacts/model.txt"), b"r4\n");
    assert_bytes(&env.dest("r2").join("artifacts/model.txt"), b"r2\n");
    assert!(!env.dest("r3").exists() && !env.dest("r1").exists());
    // The experiment's id works too; a rerun keeps every file.
    let run = mlflow(&["download", "--experiment", "1", "--status", "finished", "--limit", "2", "--json"]);
    run.expect_code(0);
    assert_eq!(run.doc()["totals"]["skipped"], 2, "{run}");
    mlflow(&["download", "--experiment", "other"]).expect_code(4);
}

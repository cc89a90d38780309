//! The job gate (terminal states, `--wait`) and run-ending errors (not found, auth, usage).

use std::time::Duration;

use crate::harness::{TestEnv, assert_blob_file, files_under, payload};
use crate::support::standard_world;

const TERMINAL: [&str; 5] = ["Completed", "Failed", "Canceled", "NotResponding", "Paused"];

#[test]
fn running_job_exits_5_and_creates_nothing() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-running"]);
    run.expect_code(5);
    assert!(run.stderr.contains("Running"), "{run}");
    for t in TERMINAL {
        assert!(run.stderr.contains(t), "terminal state {t} not named\n{run}");
    }
    assert!(!env.dest("job-running").exists(), "destination created for a running job");

    let run = env.run(&["download", "job-running", "--json"]);
    run.expect_code(5);
    let err = &run.doc()["error"];
    assert_eq!(run.doc()["version"], 1);
    assert_eq!(err["code"], "job_not_terminal");
    assert_eq!(err["exit_code"], 5);
    assert!(err["message"].as_str().unwrap().contains("Running"), "{run}");
    assert!(!env.dest("job-running").exists());
    assert!(!env.requests().iter().any(|r| r.is_blob()));
}

#[test]
fn wait_polls_until_completed() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-wait", "--wait"]);
    run.expect_code(0);
    let dest = env.dest("job-wait");
    for p in ["user_logs/std_log.txt", "outputs/result.txt"] {
        assert_blob_file(&dest.join("artifacts").join(p), env.artifact("job-wait", p));
    }
    assert_eq!(files_under(&dest), payload(["artifacts/user_logs/std_log.txt", "artifacts/outputs/result.txt"]));
    let polls = env.requests().iter().filter(|r| r.path.ends_with("/jobs/job-wait")).count();
    assert!(polls >= 3, "Queued→Running→Completed needs 3 job GETs, saw {polls}");
}

#[test]
fn wait_timeout_exits_5_without_a_destination() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-running", "--wait", "--timeout", "1s"]);
    run.expect_code(5);
    assert!(run.elapsed < Duration::from_secs(8), "--timeout 1s took {:?}", run.elapsed);
    assert!(run.elapsed >= Duration::from_millis(900), "gave up before the timeout: {:?}", run.elapsed);
    assert!(run.stderr.contains("Running"), "{run}");
    assert!(!env.dest("job-running").exists());
    let polls = env.requests().iter().filter(|r| r.path.ends_with("/jobs/job-running")).count();
    assert!(polls >= 2, "only {polls} polls in a second");
}

#[test]
fn unknown_job_exits_4() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-nope"]);
    run.expect_code(4);
    assert!(run.stderr.contains("job-nope"), "{run}");
    let run = env.run(&["download", "job-nope", "--json"]);
    run.expect_code(4);
    assert_eq!(run.doc()["error"]["code"], "not_found");
    assert_eq!(run.doc()["error"]["exit_code"], 4);
    assert!(!env.dest("job-nope").exists());
}

#[test]
fn wrong_token_exits_3_with_a_sign_in_hint() {
    let env = TestEnv::new(standard_world());
    let mut cmd = env.command(["download", "job-123"]);
    cmd.env("JOBDL_ACCESS_TOKEN", "wrong");
    let run = env.run_cmd(cmd);
    run.expect_code(3);
    assert!(run.stderr.contains("hint:"), "{run}");
    assert!(run.stderr.contains("az login") || run.stderr.to_lowercase().contains("sign in"), "{run}");
    assert!(!env.dest("job-123").exists());
    // A 401 is not retried five times.
    let calls = env.requests().len();
    assert!(calls <= 2, "{calls} calls after a 401");

    let mut cmd = env.command(["download", "job-123", "--json"]);
    cmd.env("JOBDL_ACCESS_TOKEN", "wrong");
    let run = env.run_cmd(cmd);
    run.expect_code(3);
    assert_eq!(run.doc()["error"]["code"], "auth");
}

#[test]
fn missing_project_endpoint_is_a_usage_error() {
    let env = TestEnv::new(standard_world());
    let mut cmd = env.command(["download", "job-123"]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT");
    let run = env.run_cmd(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains("--project-endpoint") || run.stderr.contains("AZURE_AI_PROJECT_ENDPOINT"), "{run}");
    assert!(env.requests().is_empty());
    assert_eq!(std::fs::read_dir(env.work()).unwrap().count(), 0);
}

//! `download --best` on Azure ML and Foundry jobs: the metric history comes from the Azure ML
//! tracking service the job names (`properties.services.Tracking.endpoint`), which must be an
//! allowed host before the token goes there.

use crate::harness::{Run, TestEnv};
use crate::support::{BlobFixture, JobFixture, TOKEN, World, workspace_world};

const JOB: &str = "ckpt-1";

/// A job with three checkpoint folders and a loss history whose minimum is at step 200 (five
/// values: the emulator serves them over three pages).
fn world() -> World {
    let mut w = workspace_world();
    w.add_job(JobFixture::new(JOB, "Completed"));
    for step in [100, 200, 300] {
        for file in ["model.bin", "trainer_state.json"] {
            let body = format!("{file} at step {step}\n").into_bytes();
            w.add_artifact(JOB, &format!("outputs/checkpoint-{step}/{file}"), BlobFixture::bytes(body));
        }
    }
    w.add_artifact(JOB, "user_logs/std_log.txt", BlobFixture::bytes(b"log\n".to_vec()));
    let loss = vec![(50, 0.9), (100, 0.5), (200, 0.25), (250, f64::NAN), (300, 0.4)];
    w.metrics.entry(JOB.to_string()).or_default().insert("loss".to_string(), loss);
    w
}

#[track_caller]
fn run_ws(env: &TestEnv, args: &[&str]) -> Run {
    env.run_cmd(env.workspace_command(args))
}

/// Requests the tracking service received.
fn tracking_requests(env: &TestEnv) -> usize {
    env.requests().iter().filter(|r| r.path.starts_with("/mlflow/")).count()
}

#[track_caller]
fn assert_chose_step_200(env: &TestEnv, run: &Run, dest: &str) {
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        run.doc()["best"],
        serde_json::json!({"metric": "loss", "goal": "min", "step": 200, "value": 0.25,
                           "folder": "artifacts/outputs/checkpoint-200"}),
        "{run}"
    );
    assert!(run.stderr.contains("lowest value 0.25 at step 200"), "{run}");
    let root = env.work().join(dest).join("artifacts/outputs");
    assert!(root.join("checkpoint-200/model.bin").is_file(), "{run}");
    assert!(root.join("checkpoint-200/trainer_state.json").is_file(), "{run}");
    assert!(!root.join("checkpoint-100").exists() && !root.join("checkpoint-300").exists(), "{run}");
    assert!(!env.work().join(dest).join("artifacts/user_logs").exists(), "{run}");
    // Every page of the history was read, each with the token.
    let pages: Vec<_> = env.requests().into_iter().filter(|r| r.path.starts_with("/mlflow/")).collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(pages.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))), "{pages:?}");
    assert!(pages.iter().all(|r| r.param("run_id").as_deref() == Some(JOB)), "{pages:?}");
    assert!(!run.all_output().contains(TOKEN), "{run}");
}

#[test]
fn azure_ml_best_loss_downloads_only_that_checkpoint() {
    let env = TestEnv::new(world());
    let run = run_ws(&env, &["download", JOB, "--best", "loss:min", "-p", "aml", "--json"]);
    assert_chose_step_200(&env, &run, "aml");
}

#[test]
fn foundry_best_loss_downloads_only_that_checkpoint() {
    let env = TestEnv::new(world());
    let run = env.run(&["download", JOB, "--best", "loss:min", "-p", "foundry", "--json"]);
    assert_chose_step_200(&env, &run, "foundry");
}

#[test]
fn a_metric_never_logged_exits_4_and_writes_nothing() {
    let env = TestEnv::new(world());
    let run = run_ws(&env, &["download", JOB, "--best", "eval_acc:max", "-p", "none"]);
    assert_eq!(run.code, 4, "{run}");
    assert!(run.stderr.contains("eval_acc") && run.stderr.contains("no logged value"), "{run}");
    assert!(!env.work().join("none").exists(), "{run}");
}

#[test]
fn a_tracking_endpoint_on_a_foreign_host_gets_no_token() {
    for foreign in [
        "azureml://127.0.0.2:1/mlflow/v1.0/subscriptions/x/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws?",
        "https://tracking.invalid/mlflow/v1.0/subscriptions/x",
        "azureml://eastus2.api.azureml.ms.invalid/mlflow/v1.0/subscriptions/x",
    ] {
        let mut w = world();
        w.tracking_endpoint = Some(foreign.to_string());
        let env = TestEnv::new(w);
        for run in [
            run_ws(&env, &["download", JOB, "--best", "loss:min", "-p", "aml"]),
            env.run(&["download", JOB, "--best", "loss:min", "-p", "foundry"]),
        ] {
            assert_eq!(run.code, 1, "{foreign}\n{run}");
            assert!(run.stderr.contains("tracking endpoint not allowed"), "{foreign}\n{run}");
            assert!(!env.work().join("aml").exists() && !env.work().join("foundry").exists(), "{run}");
        }
        assert_eq!(tracking_requests(&env), 0);
    }
}

#[test]
fn a_job_without_a_tracking_endpoint_exits_4() {
    let mut w = world();
    w.tracking_endpoint = Some(String::new());
    let env = TestEnv::new(w);
    let run = run_ws(&env, &["download", JOB, "--best", "loss:min"]);
    assert_eq!(run.code, 4, "{run}");
    assert!(run.stderr.contains("names no MLflow tracking endpoint"), "{run}");
}

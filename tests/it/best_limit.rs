//! `download --best` on Azure ML and Foundry jobs reads the metric history under the configured
//! `max_list_entries` bound, as every other listing does.

use crate::harness::TestEnv;
use crate::support::{BlobFixture, JobFixture, World, workspace_world};

const JOB: &str = "ckpt-1";

/// One checkpoint file (a listing of one entry) and a loss history of five values.
fn world() -> World {
    let mut w = workspace_world();
    w.add_job(JobFixture::new(JOB, "Completed"));
    w.add_artifact(JOB, "outputs/checkpoint-200/model.bin", BlobFixture::bytes(b"model\n".to_vec()));
    let loss = vec![(50, 0.9), (100, 0.5), (200, 0.25), (250, 0.3), (300, 0.4)];
    w.metrics.entry(JOB.to_string()).or_default().insert("loss".to_string(), loss);
    w
}

#[test]
fn a_small_max_list_entries_stops_a_long_metric_history() {
    let env = TestEnv::new(world());
    let azure_ml = |limit: &str, dest: &str| {
        let mut cmd = env.workspace_command(["download", JOB, "--best", "loss:min", "-p", dest, "--json"]);
        cmd.env("JOBDL_MAX_LIST_ENTRIES", limit);
        env.run_cmd(cmd)
    };
    let foundry = |limit: &str, dest: &str| {
        let mut cmd = env.command(["download", JOB, "--best", "loss:min", "-p", dest, "--json"]);
        cmd.env("JOBDL_MAX_LIST_ENTRIES", limit);
        env.run_cmd(cmd)
    };
    for run in [azure_ml("3", "aml"), foundry("3", "foundry")] {
        run.expect_code(1);
        let message = run.doc()["error"]["message"].as_str().unwrap_or_default().to_string();
        for part in ["metric 'loss'", "more than 3 entries", "max_list_entries", "JOBDL_MAX_LIST_ENTRIES"] {
            assert!(message.contains(part), "the error does not say {part:?}\n{run}");
        }
    }
    assert!(!env.work().join("aml").exists() && !env.work().join("foundry").exists(), "nothing is written");
    // The same history under a bound it fits: the best step's folder arrives.
    for run in [azure_ml("5", "aml"), foundry("5", "foundry")] {
        run.expect_code(0);
        assert_eq!(run.doc()["best"]["step"], 200, "{run}");
    }
}

//! Issue 24 item 2: `download PIPELINE --children` (each step into DIR/<step>/) and
//! `download SWEEP --top K` (the K best trials), against the Azure ML / Foundry emulator (run
//! history's children listing and the tracking service's MLflow search) and the fake MLflow.

use crate::harness::{Run, TestEnv, assert_bytes, text};
use crate::many::assert_result_document;
use crate::support::{self, JobFixture, TOKEN, World, workspace_world};
use serde_json::{Value, json};

/// A pipeline of five steps whose display names are two plain ones and three hostile ones
/// (`../x`, `a/b`, empty); run history lists them two a page (three pages).
fn pipeline() -> World {
    let mut w = workspace_world();
    let mut p = JobFixture::new("pipe", "Completed");
    p.job_type = "Pipeline".into();
    w.add_job(p);
    for (id, display) in
        [("s-train", "train"), ("s-score", "score"), ("s-up", "../x"), ("s-ab", "a/b"), ("s-empty", "")]
    {
        let mut s = JobFixture::new(id, "Completed");
        s.parent = Some("pipe".into());
        s.display_name = Some(display.into());
        w.add_job(s);
        w.add_artifact(id, "out.txt", text(&format!("{id}\n")));
    }
    w
}

fn section<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["jobs"].as_array().unwrap().iter().find(|j| j["name"] == name).unwrap_or_else(|| panic!("{name}: {doc:#}"))
}

#[track_caller]
fn assert_steps_downloaded(env: &TestEnv, run: &Run, dest: &str) {
    run.expect_code(0);
    assert_result_document(run.doc());
    let out = env.work().join(dest);
    for (id, folder) in
        [("s-train", "train"), ("s-score", "score"), ("s-up", ".._x"), ("s-ab", "a_b"), ("s-empty", "s-empty")]
    {
        assert_bytes(&out.join(folder).join("artifacts/out.txt"), format!("{id}\n").as_bytes());
        let j = section(run.doc(), id);
        assert_eq!(j["outcome"], "completed", "{j}");
        assert_eq!(j["destination"], out.join(folder).display().to_string(), "{j}");
        env.run(&["verify", out.join(folder).to_str().unwrap()]).expect_code(0);
    }
    // Nothing escaped DIR: the work directory holds DIR only, DIR the five step folders.
    let mut top: Vec<String> =
        std::fs::read_dir(env.work()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    top.sort();
    assert_eq!(top, [dest], "{run}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 5, "{run}");
    assert_eq!(run.doc()["totals"]["jobs"], 5);
    // Three pages of run history's children, each with the token, none with another host's.
    let pages: Vec<_> = env.requests().into_iter().filter(|r| r.path.ends_with("/runs/pipe/children")).collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(pages.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))), "{pages:?}");
    assert!(!run.all_output().contains(TOKEN), "{run}");
}

#[test]
fn azure_ml_pipeline_steps_land_in_their_own_safe_folders() {
    let env = TestEnv::new(pipeline());
    let run = env.run_cmd(env.workspace_command(["download", "pipe", "--children", "-p", "steps", "--json"]));
    assert_steps_downloaded(&env, &run, "steps");
    assert!(run.stderr.contains("job 'pipe': 5 child run(s)"), "{run}");
}

#[test]
fn foundry_pipeline_steps_land_in_their_own_safe_folders() {
    let env = TestEnv::new(pipeline());
    let run = env.run(&["download", "pipe", "--children", "-p", "steps", "--json"]);
    assert_steps_downloaded(&env, &run, "steps");
}

#[test]
fn a_running_pipeline_is_gated_and_a_childless_job_exits_4() {
    let mut w = pipeline();
    w.job_mut("pipe").statuses = vec!["Running".into()];
    w.add_job(JobFixture::new("lonely", "Completed"));
    let env = TestEnv::new(w);
    let run = env.run_cmd(env.workspace_command(["download", "pipe", "--children", "-p", "steps"]));
    run.expect_code(5);
    assert!(!env.work().join("steps").exists(), "{run}");
    let run = env.run_cmd(env.workspace_command(["download", "lonely", "--children", "-p", "none"]));
    run.expect_code(4);
    assert!(run.stderr.contains("no child runs"), "{run}");
}

#[test]
fn a_children_listing_on_a_foreign_host_gets_no_token() {
    for foreign in [
        "azureml://127.0.0.2:1/mlflow/v1.0/subscriptions/x/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws?",
        "https://tracking.invalid/mlflow/v1.0/subscriptions/x",
    ] {
        let mut w = pipeline();
        w.tracking_endpoint = Some(foreign.to_string());
        let env = TestEnv::new(w);
        for run in [
            env.run_cmd(env.workspace_command(["download", "pipe", "--children", "-p", "aml"])),
            env.run(&["download", "pipe", "--children", "-p", "foundry"]),
        ] {
            run.expect_code(1);
            assert!(run.stderr.contains("tracking endpoint not allowed"), "{foreign}\n{run}");
        }
        assert!(!env.work().join("aml").exists() && !env.work().join("foundry").exists());
        assert!(env.requests().iter().all(|r| !r.path.starts_with("/history/") && !r.path.starts_with("/mlflow/")));
    }
}

/// A sweep minimising `loss` with four trials: t1 ends at 0.5, t2 at 0.2, t3 logs no loss, t4
/// ends at 0.3 (the last logged value counts, not the best one); run history lists them too.
fn sweep() -> World {
    let mut w = workspace_world();
    let mut s = JobFixture::new("sw", "Completed");
    s.job_type = "Sweep".into();
    s.objective = json!({"goal": "Minimize", "primaryMetric": "loss"});
    w.add_job(s);
    for (id, loss) in [("t1", vec![(1, 0.1), (2, 0.5)]), ("t2", vec![(1, 0.2)]), ("t3", vec![]), ("t4", vec![(1, 0.3)])]
    {
        let mut t = JobFixture::new(id, "Completed");
        t.parent = Some("sw".into());
        t.display_name = Some(format!("trial {id}"));
        w.add_job(t);
        w.add_artifact(id, "model.bin", text(&format!("{id}\n")));
        if !loss.is_empty() {
            w.metrics.entry(id.to_string()).or_default().insert("loss".into(), loss);
        }
        w.metrics.entry(id.to_string()).or_default().insert("acc".into(), vec![(1, 0.9)]);
    }
    w.add_job(JobFixture::new("cmd", "Completed"));
    w
}

#[track_caller]
fn assert_trials(run: &Run, out: &std::path::Path, want: &[(&str, f64)], goal: &str) {
    run.expect_code(0);
    assert_result_document(run.doc());
    let names: Vec<&str> = run.doc()["jobs"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    let ids: Vec<&str> = want.iter().map(|(id, _)| *id).collect();
    assert_eq!(names, ids, "{run}");
    for (rank, (id, value)) in want.iter().enumerate() {
        assert_bytes(&out.join(format!("trial {id}")).join("artifacts/model.bin"), format!("{id}\n").as_bytes());
        let t = &section(run.doc(), id)["trial"];
        assert_eq!(*t, json!({"metric": "loss", "goal": goal, "value": value, "rank": rank + 1}), "{run}");
        assert!(run.stderr.contains(&format!("trial {id} (loss={value})")), "{run}");
    }
    assert_eq!(std::fs::read_dir(out).unwrap().count(), want.len(), "{run}");
}

#[test]
fn top_k_downloads_the_best_trials_by_the_objective_or_the_metric() {
    let env = TestEnv::new(sweep());
    let run = env.run_cmd(env.workspace_command(["download", "sw", "--top", "2", "-p", "min", "--json"]));
    assert_trials(&run, &env.work().join("min"), &[("t2", 0.2), ("t4", 0.3)], "min");
    assert!(run.stderr.contains("--top 2 by loss:min of the 4 trial(s) of 'sw'"), "{run}");
    let run = env.run_cmd(
        env.workspace_command(["download", "sw", "--top", "2", "--metric", "loss:max", "-p", "max", "--json"]),
    );
    assert_trials(&run, &env.work().join("max"), &[("t1", 0.5), ("t4", 0.3)], "max");
    // The trials were ranked by MLflow runs/search on the tracking service, with the token.
    let searches: Vec<_> = env.requests().into_iter().filter(|r| r.path.ends_with("/runs/search")).collect();
    assert!(!searches.is_empty());
    assert!(searches.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))), "{searches:?}");
    // A metric no trial logged: exit 4, nothing written.
    let run = env.run_cmd(env.workspace_command(["download", "sw", "--top", "2", "--metric", "f1:max", "-p", "none"]));
    run.expect_code(4);
    assert!(!env.work().join("none").exists(), "{run}");
}

#[test]
fn top_on_a_job_that_is_no_sweep_and_children_on_kubeflow_exit_2() {
    let env = TestEnv::new(sweep());
    let run = env.run_cmd(env.workspace_command(["download", "cmd", "--top", "2", "-p", "x"]));
    run.expect_code(2);
    assert!(run.stderr.contains("is not a sweep"), "{run}");
    env.run_cmd(env.workspace_command(["download", "sw", "--top", "0"])).expect_code(2);
    env.run_cmd(env.workspace_command(["download", "sw", "--top", "1", "--metric", "loss"])).expect_code(2);
    env.run_cmd(env.workspace_command(["download", "sw", "t1", "--top", "1"])).expect_code(2);
    for flag in [&["--children"][..], &["--top", "1", "--metric", "loss:min"]] {
        let mut args = vec!["download", "run-1", "--kfp-endpoint", "http://127.0.0.1:9", "-p", "k"];
        args.extend_from_slice(flag);
        let mut cmd = env.command(&args);
        cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT");
        let run = env.run_cmd(cmd);
        run.expect_code(2);
        assert!(run.stderr.contains("Kubeflow Pipelines run's steps are tasks"), "{run}");
    }
    assert!(!env.work().join("x").exists() && !env.work().join("k").exists());
}

#[test]
fn mlflow_child_runs_and_their_best_trial() {
    use support::mlflow_fake::{AuthMode, FakeConfig, FakeMlflow, FakeRun};
    let mut cfg = FakeConfig { auth: AuthMode::Bearer(TOKEN.into()), ..FakeConfig::default() };
    cfg.runs.insert("parent".into(), FakeRun::new("parent", "FINISHED"));
    for (id, name, acc) in [("c1", "train", 0.7), ("c2", "eval", 0.9), ("c3", "train", 0.8)] {
        let mut run = FakeRun::new(id, "FINISHED").file("m.txt", format!("{id}\n").into_bytes());
        run.parent = Some("parent".into());
        run.run_name = Some(name.into());
        run.metrics = vec![("acc".into(), acc)];
        cfg.runs.insert(id.into(), run);
    }
    cfg.runs.insert("other".into(), FakeRun::new("other", "FINISHED"));
    let fake = FakeMlflow::start(cfg);
    let env = TestEnv::new(World::new());
    let mlflow = |args: &[&str]| env.run_cmd(env.mlflow_command(&fake.base_url(), args));
    let run = mlflow(&["download", "parent", "--children", "-p", "kids", "--json"]);
    run.expect_code(0);
    let kids = env.work().join("kids");
    // Two children named `train`: the lower id keeps the name, the other gets `-2`.
    for (id, folder) in [("c1", "train"), ("c2", "eval"), ("c3", "train-2")] {
        assert_bytes(&kids.join(folder).join("artifacts/m.txt"), format!("{id}\n").as_bytes());
        env.run(&["verify", kids.join(folder).to_str().unwrap()]).expect_code(0);
    }
    assert_eq!(std::fs::read_dir(&kids).unwrap().count(), 3);
    let searches: Vec<_> = fake.requests().into_iter().filter(|r| r.path.ends_with("/runs/search")).collect();
    assert!(!searches.is_empty());
    let run = mlflow(&["download", "parent", "--top", "1", "--metric", "acc:max", "-p", "best", "--json"]);
    run.expect_code(0);
    assert_eq!(section(run.doc(), "c2")["trial"], json!({"metric": "acc", "goal": "max", "value": 0.9, "rank": 1}));
    assert_bytes(&env.work().join("best/eval/artifacts/m.txt"), b"c2\n");
    // MLflow runs name no objective: --top needs --metric; a run without children is no sweep.
    mlflow(&["download", "parent", "--top", "1"]).expect_code(2);
    mlflow(&["download", "other", "--top", "1", "--metric", "acc:max"]).expect_code(2);
    mlflow(&["download", "other", "--children"]).expect_code(4);
}

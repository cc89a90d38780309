//! Issue 21 items 7 and 10: `jobdl jobs` against every source's emulator (Foundry, Azure ML, the
//! fake MLflow server, the fake Kubeflow Pipelines API), and the plan view of `download
//! --dry-run`. Each test drives the built `jobdl` binary (through the harness).

use crate::harness;
use crate::support;
use crate::support::{kfp_api, mlflow_fake};

use harness::{Run, TestEnv};
use serde_json::{Value, json};
use std::process::Command;
use support::{Fault, FaultRule, JobFixture, RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, World};

/// Five jobs; the emulator lists them newest first: job-e, job-d, job-c, job-b, job-a.
fn five_jobs() -> World {
    let mut w = World::new();
    for (name, status) in [
        ("job-a", "Completed"),
        ("job-b", "Running"),
        ("job-c", "Failed"),
        ("job-d", "Completed"),
        ("job-e", "Canceled"),
    ] {
        let mut job = JobFixture::new(name, status);
        job.job_type = if name == "job-d" { "Pipeline".into() } else { "Command".into() };
        w.add_job(job);
    }
    w
}

fn names(doc: &Value) -> Vec<String> {
    doc["jobs"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap().to_string()).collect()
}

/// `doc` is valid against the published schema's `jobs` branch (and the whole schema).
#[track_caller]
fn assert_jobs_document(doc: &Value) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/jobdl-v1.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let whole = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = whole.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{doc:#}");
    let mut branch = schema.clone();
    branch["oneOf"] = json!([{ "$ref": "#/$defs/jobs" }]);
    assert!(jsonschema::draft202012::new(&branch).unwrap().is_valid(doc), "not a jobs document: {doc:#}");
}

/// A `jobdl` command addressing the emulated Azure ML workspace.
fn ws_command(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = env.command(args);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT")
        .env("JOBDL_ARM_ENDPOINT", env.emu.arm_endpoint())
        .env("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
        .env("AZURE_RESOURCE_GROUP", RESOURCE_GROUP)
        .env("AZUREML_WORKSPACE_NAME", WORKSPACE);
    cmd
}

/// The job listing requests the emulator saw.
fn list_requests(env: &TestEnv) -> usize {
    env.requests().iter().filter(|r| r.path.ends_with("/jobs")).count()
}

#[test]
fn foundry_jobs_lists_newest_first_across_pages() {
    let env = TestEnv::new(five_jobs());
    let run = env.run(&["jobs"]);
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{run}");
    for col in ["NAME", "STATUS", "CREATED", "TYPE", "DISPLAY NAME", "EXPERIMENT"] {
        assert!(lines[0].contains(col), "{col} missing\n{run}");
    }
    assert!(lines[1].starts_with("job-e  ") && lines[1].contains("Canceled"), "{run}");
    assert!(lines[1].contains("2026-01-15T10:04:00Z") && lines[1].contains("exp-a"), "{run}");
    assert!(lines[5].starts_with("job-a  ") && lines[5].contains("Completed"), "{run}");
    // Three pages of two, every one with the jobs feature header.
    let listed: Vec<_> = env.requests().into_iter().filter(|r| r.path.ends_with("/jobs")).collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|r| r.header("foundry-features") == Some("Jobs=V1Preview")), "{listed:?}");
    assert!(listed.iter().all(|r| r.param("api-version").as_deref() == Some("2026-01-15-preview")));

    let run = env.run(&["jobs", "--json"]);
    run.expect_code(0);
    assert_jobs_document(run.doc());
    assert_eq!(names(run.doc()), ["job-e", "job-d", "job-c", "job-b", "job-a"], "{run}");
    assert_eq!(run.doc()["totals"]["jobs"], 5);
    assert_eq!(run.doc()["jobs"][0]["display_name"], "job-e display");
}

#[test]
fn limit_stops_listing_early_and_status_filters_in_each_sources_words() {
    let env = TestEnv::new(five_jobs());
    let run = env.run(&["jobs", "--limit", "1", "--json"]);
    run.expect_code(0);
    assert_eq!(names(run.doc()), ["job-e"], "{run}");
    assert_eq!(list_requests(&env), 1, "--limit 1 reads one page");
    env.emu.clear_requests();

    let run = env.run(&["jobs", "--status", "completed", "--status", "FAILED", "--json"]);
    run.expect_code(0);
    assert_eq!(names(run.doc()), ["job-d", "job-c", "job-a"], "{run}");
    // A cross-source synonym: `succeeded` finds Azure's Completed; a comma list works too.
    let run = env.run(&["jobs", "--status", "succeeded,running", "--limit", "2", "--json"]);
    assert_eq!(names(run.doc()), ["job-d", "job-b"], "{run}");
    // A word no source uses is matched as written, with a warning.
    let run = env.run(&["jobs", "--status", "runing"]);
    run.expect_code(0);
    assert!(run.stdout.is_empty(), "{run}");
    assert!(run.stderr.contains("--status 'runing' is not a status jobdl knows"), "{run}");
    assert!(run.stderr.contains("no jobs found"), "{run}");
}

#[test]
fn azureml_jobs_list_the_workspace() {
    let env = TestEnv::new(five_jobs());
    let run = env.run_cmd(ws_command(&env, &["jobs", "--limit", "3", "--json"]));
    run.expect_code(0);
    assert_jobs_document(run.doc());
    assert_eq!(names(run.doc()), ["job-e", "job-d", "job-c"], "{run}");
    assert_eq!(run.doc()["jobs"][1]["type"], "Pipeline");
    assert_eq!(run.doc()["jobs"][1]["experiment"], "exp-a");
    let listed: Vec<_> = env.requests().into_iter().filter(|r| r.is_arm() && r.path.ends_with("/jobs")).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|r| r.param("api-version").as_deref() == Some("2024-01-01-preview")));
    // The status script is not advanced by listing.
    let run = env.run_cmd(ws_command(&env, &["jobs", "--status", "running"]));
    run.expect_code(0);
    assert!(run.stdout.lines().nth(1).is_some_and(|l| l.starts_with("job-b ")), "{run}");
}

#[test]
fn hostile_listing_fields_are_escaped_and_missing_ones_tolerated() {
    let env = TestEnv::new(five_jobs());
    let body = json!({"value": [
        {"name": "evil\u{1b}]0;pwned\u{7}\u{1b}[2J", "properties": {"status": "Running\u{1b}[31m",
            "jobType": "Command\r\nFAKE"}, "systemData": {"createdAt": "2026-01-15T10:00:00Z\u{1b}[1A"}},
        {"name": "bare"},
        {"properties": {"status": "Completed"}},
        "not an object",
    ]});
    env.emu.add_fault(FaultRule::new(
        "/jobs",
        2,
        Fault::Raw { status: 200, content_type: "application/json".into(), body: body.to_string().into_bytes() },
    ));
    let run = env.run(&["jobs"]);
    run.expect_code(0);
    assert!(!run.all_output().contains('\u{1b}'), "an escape reached the terminal\n{run:?}");
    assert!(!run.stdout.contains('\r') && !run.stdout.contains('\u{7}'), "{run:?}");
    assert!(run.stdout.contains("evil\\u{1b}]0;pwned"), "{run}");
    assert!(run.stdout.contains("Command\\r\\nFAKE"), "{run}");
    assert_eq!(run.stdout.lines().count(), 3, "header, the evil job, the bare one\n{run}");
    let bare = run.stdout.lines().find(|l| l.starts_with("bare")).unwrap();
    assert_eq!(bare.split_whitespace().collect::<Vec<_>>(), ["bare", "-", "-", "-"], "{run}");
    let run = env.run(&["jobs", "--json"]);
    run.expect_code(0);
    assert_jobs_document(run.doc());
    assert_eq!(run.doc()["jobs"][0]["created"], Value::Null, "a malformed timestamp is dropped");
}

#[test]
fn a_repeated_next_link_stops_with_an_error() {
    let env = TestEnv::new(five_jobs());
    let project = env.emu.project_endpoint();
    let body = json!({"value": [], "nextLink": format!("{project}/jobs?api-version=2026-01-15-preview&$skip=0")});
    env.emu.add_fault(FaultRule::new(
        "/jobs",
        3,
        Fault::Raw { status: 200, content_type: "application/json".into(), body: body.to_string().into_bytes() },
    ));
    let run = env.run(&["jobs", "--json"]);
    run.expect_code(1);
    assert!(run.stderr.contains("repeated a continuation token or next link"), "{run}");
    // A next link to another host is never followed (the token stays on the project host).
    let env = TestEnv::new(five_jobs());
    let body = json!({"value": [], "nextLink": "http://127.0.0.2:1/api/projects/p/jobs?api-version=x"});
    env.emu.add_fault(FaultRule::new(
        "/jobs",
        1,
        Fault::Raw { status: 200, content_type: "application/json".into(), body: body.to_string().into_bytes() },
    ));
    let run = env.run(&["jobs"]);
    run.expect_code(1);
    assert!(run.stderr.contains("nextLink points to another host"), "{run}");
}

#[test]
fn mlflow_jobs_search_runs_newest_first() {
    use mlflow_fake::{AuthMode, FakeConfig, FakeMlflow, FakeRun};
    let mut cfg = FakeConfig { auth: AuthMode::Bearer(support::TOKEN.into()), ..FakeConfig::default() };
    for (id, status) in [("r1", "FINISHED"), ("r2", "RUNNING"), ("r3", "FAILED"), ("r4", "KILLED\u{1b}[2J")] {
        cfg.runs.insert(id.into(), FakeRun::new(id, status));
    }
    let fake = FakeMlflow::start(cfg);
    let env = TestEnv::new(World::new());
    let run = env.run_cmd(env.mlflow_command(&fake.base_url(), ["jobs", "--json"]));
    run.expect_code(0);
    assert_jobs_document(run.doc());
    assert_eq!(names(run.doc()), ["r4", "r3", "r2", "r1"], "{run}");
    assert_eq!(run.doc()["jobs"][3]["experiment"], "fake-exp");
    assert_eq!(run.doc()["jobs"][3]["display_name"], "r1-name");
    assert_eq!(run.doc()["jobs"][3]["created"], "2026-01-15T10:00:00Z");
    assert_eq!(run.doc()["jobs"][0]["status"], "KILLED\\u{1b}[2J");
    let searches: Vec<_> = fake.requests().into_iter().filter(|r| r.path.ends_with("/runs/search")).collect();
    assert_eq!(searches.len(), 1, "{searches:?}");
    // `completed` finds MLflow's FINISHED; the limit pages the search.
    let run = env.run_cmd(env.mlflow_command(&fake.base_url(), ["jobs", "--status", "completed,running"]));
    run.expect_code(0);
    let rows: Vec<&str> = run.stdout.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(rows, ["r2", "r1"], "{run}");
    assert!(!run.all_output().contains('\u{1b}'), "{run:?}");
    let run = env.run_cmd(env.mlflow_command(&fake.base_url(), ["jobs", "--limit", "2", "--json"]));
    assert_eq!(names(run.doc()), ["r4", "r3"], "{run}");
}

fn kfp_command(env: &TestEnv, base: &str, args: &[&str]) -> Command {
    let mut cmd = env.command(args);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT").env("KF_PIPELINES_ENDPOINT", base);
    cmd
}

#[test]
fn kfp_jobs_list_v2_runs_and_fall_back_to_the_v1_api() {
    let fake = kfp_api::FakeKfp::start(Some(support::TOKEN));
    for (id, state, minute) in [("run-a", "SUCCEEDED", 1), ("run-b", "RUNNING", 3), ("run-c", "FAILED", 2)] {
        fake.run(
            id,
            &[state],
            json!({"run_id": id, "display_name": format!("{id} display"), "experiment_id": "exp-1",
                   "created_at": format!("2026-01-15T10:0{minute}:00Z")}),
        );
    }
    let env = TestEnv::new(World::new());
    let run = env.run_cmd(kfp_command(&env, &fake.base_url(), &["jobs", "--json"]));
    run.expect_code(0);
    assert_jobs_document(run.doc());
    assert_eq!(names(run.doc()), ["run-b", "run-c", "run-a"], "{run}");
    assert_eq!(run.doc()["jobs"][2]["status"], "SUCCEEDED");
    assert_eq!(run.doc()["jobs"][2]["display_name"], "run-a display");
    let list: Vec<_> = fake.log().into_iter().filter(|l| l.path == "/apis/v2beta1/runs").collect();
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(list[0].query.contains("sort_by=created_at+desc"), "{list:?}");
    assert_eq!(list[0].authorization.as_deref(), Some(format!("Bearer {}", support::TOKEN).as_str()));
    let run = env.run_cmd(kfp_command(&env, &fake.base_url(), &["jobs", "--status", "completed"]));
    run.expect_code(0);
    assert_eq!(run.stdout.lines().count(), 2, "{run}");
    assert!(run.stdout.contains("run-a"), "{run}");

    // A KFP 1.x server: no v2 API, runs from apis/v1beta1.
    let v1 = kfp_api::FakeKfp::start(None);
    v1.v1_run("old-run", &json!({}));
    let run = env.run_cmd(kfp_command(&env, &v1.base_url(), &["jobs", "--json"]));
    run.expect_code(0);
    assert_eq!(names(run.doc()), ["old-run"], "{run}");
    assert_eq!(run.doc()["jobs"][0]["status"], "Succeeded");
}

#[test]
fn kfp_jobs_list_one_profile_namespace() {
    let fake = kfp_api::FakeKfp::start(Some(support::TOKEN));
    for (id, ns, minute) in [("run-a", "team-a", 1), ("run-b", "team-b", 2), ("run-c", "team-a", 3)] {
        fake.run(
            id,
            &["SUCCEEDED"],
            json!({"run_id": id, "namespace": ns, "created_at": format!("2026-01-15T10:0{minute}:00Z")}),
        );
    }
    let env = TestEnv::new(World::new());
    // The flag.
    let run = env.run_cmd(kfp_command(&env, &fake.base_url(), &["jobs", "--namespace", "team-a", "--json"]));
    run.expect_code(0);
    assert_eq!(names(run.doc()), ["run-c", "run-a"], "{run}");
    let list: Vec<_> = fake.log().into_iter().filter(|l| l.path == "/apis/v2beta1/runs").collect();
    assert!(list.iter().all(|l| l.query.contains("namespace=team-a")), "{list:?}");
    // The environment variable.
    let mut cmd = kfp_command(&env, &fake.base_url(), &["jobs", "--json"]);
    cmd.env("JOBDL_KFP_NAMESPACE", "team-b");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert_eq!(names(run.doc()), ["run-b"], "{run}");
    // The configuration file.
    std::fs::write(env.work().join("jobdl.toml"), "kfp_namespace = \"team-a\"\n").unwrap();
    let run = env.run_cmd(kfp_command(&env, &fake.base_url(), &["jobs", "--json"]));
    run.expect_code(0);
    assert_eq!(names(run.doc()), ["run-c", "run-a"], "{run}");
    std::fs::remove_file(env.work().join("jobdl.toml")).unwrap();
    // Without one, the multi-user API refuses the listing.
    let run = env.run_cmd(kfp_command(&env, &fake.base_url(), &["jobs"]));
    run.expect_code(2);
    assert!(run.stderr.contains("namespace"), "{run}");

    // A KFP 1.x server takes the namespace as a resource reference.
    let v1 = kfp_api::FakeKfp::start(None);
    v1.v1_run("old-run", &json!({}));
    let run = env.run_cmd(kfp_command(&env, &v1.base_url(), &["jobs", "--namespace", "team-a", "--json"]));
    run.expect_code(0);
    let list: Vec<_> = v1.log().into_iter().filter(|l| l.path == "/apis/v1beta1/runs").collect();
    assert!(!list.is_empty(), "{:?}", v1.log());
    assert!(
        list.iter().all(|l| l.query.contains("resource_reference_key.type=NAMESPACE")
            && l.query.contains("resource_reference_key.id=team-a")),
        "{list:?}"
    );
}

#[test]
fn jobs_without_a_source_is_a_usage_error() {
    let env = TestEnv::new(World::new());
    let mut cmd = env.command(["jobs", "--json"]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT");
    let run: Run = env.run_cmd(cmd);
    run.expect_code(2);
    assert_eq!(run.doc()["error"]["code"], "usage", "{run}");
    assert!(run.stderr.contains("no job source"), "{run}");
}

// ---- item 10: `download --dry-run` shows the plan view: sizes, local paths, what a run would do ----

/// The plan table's rows (after the header) as (size, md5, action, local path).
fn plan_rows(run: &Run) -> Vec<(String, String, String, String)> {
    let mut lines = run.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["SIZE", "MD5", "ACTION", "LOCAL", "PATH"], "{run}");
    lines
        .map(|l| {
            // SIZE is two words here ("6 B"); the local path is the rest.
            let w: Vec<&str> = l.split_whitespace().collect();
            assert!(w.len() >= 5, "{l:?}\n{run}");
            (format!("{} {}", w[0], w[1]), w[2].to_string(), w[3].to_string(), w[4..].join(" "))
        })
        .collect()
}

#[test]
fn dry_run_shows_sizes_local_paths_and_what_a_rerun_keeps() {
    use harness::{one_job, text};
    let env = TestEnv::new(one_job(
        "job-plan",
        vec![("logs/a.txt", text("alpha\n")), ("outputs/model/w.bin", support::BlobFixture::generated(5000, 3))],
    ));
    // Nothing local yet: every file is fetched; the sizes are known (probed where the listing
    // has none), the paths are where the files would land.
    let run = env.run(&["download", "job-plan", "--dry-run"]);
    run.expect_code(0);
    let rows = plan_rows(&run);
    assert_eq!(rows.len(), 2, "{run}");
    assert!(rows.iter().all(|r| r.2 == "fetch"), "{run}");
    assert!(rows.iter().any(|r| r.0 == "6 B" && r.3 == "job-plan/artifacts/logs/a.txt"), "{run}");
    assert!(rows.iter().any(|r| r.0 == "4.9 KiB" && r.3 == "job-plan/artifacts/outputs/model/w.bin"), "{run}");
    assert!(!run.stdout.contains('?'), "a size the service knows is shown\n{run}");
    assert!(run.stderr.contains("2 to fetch") && run.stderr.contains("dry run: nothing written"), "{run}");
    assert!(!env.dest("job-plan").exists());

    // After a download, a rerun would keep both: the plan says so.
    env.run(&["download", "job-plan"]).expect_code(0);
    let run = env.run(&["download", "job-plan", "--dry-run"]);
    run.expect_code(0);
    assert!(plan_rows(&run).iter().all(|r| r.2 == "skip"), "{run}");
    assert!(run.stderr.contains("0 to fetch (0 B), 2 kept, 0 refused"), "{run}");

    // A local edit: the plan shows the file a run would refuse, and --overwrite fetches it.
    std::fs::write(env.dest("job-plan").join("artifacts/logs/a.txt"), "edited\n").unwrap();
    let run = env.run(&["download", "job-plan", "--dry-run", "--json"]);
    run.expect_code(0);
    let doc = run.doc();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/jobdl-v1.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let errors: Vec<String> =
        jsonschema::draft202012::new(&schema).unwrap().iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{doc:#}");
    let by_path = |p: &str| doc["files"].as_array().unwrap().iter().find(|f| f["path"] == p).cloned().unwrap();
    assert_eq!(by_path("artifacts/logs/a.txt")["result"], "refused", "{run}");
    assert!(by_path("artifacts/logs/a.txt")["error"].as_str().unwrap().contains("changed"), "{run}");
    assert_eq!(by_path("artifacts/outputs/model/w.bin")["result"], "skipped", "{run}");
    assert_eq!((doc["totals"]["skipped"].as_u64(), doc["totals"]["refused"].as_u64()), (Some(1), Some(1)));
    assert!(run.stderr.contains("a run would refuse it"), "{run}");
    let run = env.run(&["download", "job-plan", "--dry-run", "--overwrite"]);
    let rows = plan_rows(&run);
    assert!(rows.iter().any(|r| r.3.ends_with("logs/a.txt") && r.2 == "fetch"), "{run}");
    assert_eq!(std::fs::read_to_string(env.dest("job-plan").join("artifacts/logs/a.txt")).unwrap(), "edited\n");
}

#[test]
fn jobs_takes_its_source_from_jobdl_toml_and_refuses_conflicts() {
    let env = TestEnv::new(five_jobs());
    std::fs::write(env.work().join("jobdl.toml"), format!("project_endpoint = \"{}\"\n", env.emu.project_endpoint()))
        .unwrap();
    let mut cmd = env.command(["jobs", "--limit", "2", "--json"]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert_eq!(names(run.doc()), ["job-e", "job-d"], "{run}");
    // A workspace in the environment as well: one source only.
    let mut cmd = env.command(["jobs"]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT").env("AZUREML_WORKSPACE_NAME", "ws");
    let run = env.run_cmd(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains("conflicting settings"), "{run}");
}

/// Runs `cmd` with stdout on a pseudo-terminal of `cols` columns (stderr to a pipe) and returns
/// what the terminal received and the exit status.
#[cfg(unix)]
fn run_on_terminal(cmd: Command, cols: u16) -> (String, std::process::ExitStatus) {
    let (screen, _, status) = harness::run_on_terminal(cmd, cols, harness::OnTerminal::Stdout);
    (screen, status)
}

fn long_named_jobs() -> World {
    let mut w = World::new();
    w.add_job(JobFixture::new("finetune-llama-3-70b-instruct-customer-support-sweep-trial-0042-a1b2c3d4", "Completed"));
    w.add_job(JobFixture::new("job-b", "Running"));
    w
}

#[cfg(unix)]
#[test]
fn jobs_table_fits_an_80_column_terminal() {
    let env = TestEnv::new(long_named_jobs());
    let mut cmd = env.command(["jobs"]);
    cmd.env_remove("COLUMNS");
    let (screen, status) = run_on_terminal(cmd, 80);
    assert!(status.success(), "{status:?}\n{screen}");
    let lines: Vec<&str> = screen.lines().collect();
    assert_eq!(lines.len(), 3, "{screen}");
    for line in &lines {
        assert!(unicode_width(line) < 80, "wraps at 80 columns: {line:?}\n{screen}");
    }
    // The name keeps its start and its generated end; status and time are whole.
    let row = lines.iter().find(|l| l.starts_with("finetune-")).unwrap_or_else(|| panic!("{screen}"));
    assert!(row.contains('…') && row.contains("Completed") && row.contains("2026-01-15T10:00:00Z"), "{screen}");
    assert!(row.split("  ").next().unwrap().ends_with("c3d4"), "{screen}");

    // COLUMNS, when set, is the width a terminal's table is fitted to.
    let mut cmd = env.command(["jobs"]);
    cmd.env("COLUMNS", "100");
    let (wider, _) = run_on_terminal(cmd, 80);
    assert!(wider.lines().any(|l| unicode_width(l) >= 80), "{wider}");
    assert!(wider.lines().all(|l| unicode_width(l) < 100), "{wider}");
}

#[test]
fn jobs_table_in_a_pipe_or_json_is_complete() {
    let env = TestEnv::new(long_named_jobs());
    let mut cmd = env.command(["jobs"]);
    cmd.env("COLUMNS", "80");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert!(run.stdout.contains("finetune-llama-3-70b-instruct-customer-support-sweep-trial-0042-a1b2c3d4 "), "{run}");
    assert!(!run.stdout.contains('…'), "{run}");
    let run = env.run(&["jobs", "--json"]);
    run.expect_code(0);
    assert_eq!(
        run.doc()["jobs"][1]["name"],
        "finetune-llama-3-70b-instruct-customer-support-sweep-trial-0042-a1b2c3d4"
    );
}

/// Terminal columns of a line (every character here is one column wide, but `…`).
fn unicode_width(s: &str) -> usize {
    s.chars().count()
}

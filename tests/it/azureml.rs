//! End-to-end tests of Path B (an Azure ML workspace through ARM) against the emulator: default
//! artifacts from the artifact store, named outputs through run history, datastores with a SAS,
//! an account key (minted SAS, verified by the emulator) or an identity (storage bearer token),
//! the default-datastore probes, reused pipeline steps, sweeps, and where credentials may go.

use crate::support;

use crate::harness;

use harness::{Run, TestEnv, assert_blob_file, assert_bytes, check_summary, decoded, files_under, payload};
use support::{
    ACCOUNT, ARTIFACT_CONTAINER, BLOBSTORE_CONTAINER, DEV_ACCOUNT_KEY, Fault, FaultRule, IDENTITY_CONTAINER,
    LOCKED_CONTAINER, LoggedRequest, NORBAC_CONTAINER, ODD_NAME, RESOURCE_GROUP, SUBSCRIPTION, TOKEN, WORKSPACE,
    artifact_blob_name, workspace_world,
};

#[track_caller]
fn run_ws(env: &TestEnv, args: &[&str]) -> Run {
    env.run_cmd(env.workspace_command(args))
}

/// Blob-role requests on `container`.
fn blob_requests(env: &TestEnv, container: &str) -> Vec<LoggedRequest> {
    let head = format!("/{ACCOUNT}/{container}");
    env.requests().into_iter().filter(|r| r.path == head || r.path.starts_with(&format!("{head}/"))).collect()
}

/// Nothing secret in any output: no signature, no token, no account key.
#[track_caller]
fn assert_no_secrets(run: &Run) {
    let out = run.all_output();
    assert!(!out.contains("sig=") || out.contains("sig=REDACTED"), "a signature was printed\n{run}");
    assert!(!out.contains("FAKESIG"), "a signature was printed\n{run}");
    assert!(!out.contains(TOKEN), "the token was printed\n{run}");
    assert!(!out.contains(&DEV_ACCOUNT_KEY[..20]), "the account key was printed\n{run}");
}

/// Every ARM and regional API request carries the token; discovery never does.
#[track_caller]
fn assert_credentials_in_place(env: &TestEnv) {
    let bearer = format!("Bearer {TOKEN}");
    for r in env.requests() {
        if r.is_arm() || r.is_ml_api() {
            assert_eq!(r.authorization.as_deref(), Some(bearer.as_str()), "{} {}", r.method, r.path);
        }
        if r.is_arm() {
            assert!(r.param("api-version").is_some_and(|v| !v.is_empty()), "no api-version: {} {}", r.method, r.path);
        }
        // Run history's `rundata` carries `api-version=v1.0`, as azure-ai-ml 1.32.0 sends it
        // (recorded traffic); the resolver routes take none.
        if r.is_ml_api() && r.path.ends_with("/rundata") {
            assert_eq!(r.param("api-version").as_deref(), Some("v1.0"), "{}", r.path);
        } else if r.is_ml_api() {
            assert!(r.param("api-version").is_none(), "api-version sent to {}", r.path);
        }
        if r.is_discovery() {
            assert_eq!(r.authorization, None, "discovery received an Authorization header");
        }
    }
}

#[test]
fn default_artifacts_come_from_the_artifact_store_without_siblings() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "train-1", "--json"]);
    run.expect_code(0);
    let dest = env.dest("train-1");
    let paths = ["user_logs/std_log.txt", "outputs/model.pkl", ODD_NAME, "outputs/empty.txt"];
    for p in paths {
        assert_blob_file(
            &dest.join("artifacts").join(p),
            env.blob(ARTIFACT_CONTAINER, &artifact_blob_name("train-1", p)),
        );
    }
    assert_eq!(files_under(&dest), payload(paths.map(|p| format!("artifacts/{p}"))), "siblings must not be mixed in");
    let files = check_summary(&run, Some(("train-1", "Completed")), &dest);
    assert!(files.iter().all(|f| f["result"] == "downloaded"), "{run}");
    assert_eq!(run.entry("artifacts/outputs/model.pkl")["md5"], "verified");

    // Listed with the trailing slash; the sibling jobs' blobs are never touched.
    let log = blob_requests(&env, ARTIFACT_CONTAINER);
    let lists: Vec<&LoggedRequest> = log.iter().filter(|r| r.param("comp").as_deref() == Some("list")).collect();
    assert!(!lists.is_empty());
    assert!(lists.iter().all(|r| r.param("prefix").as_deref() == Some("ExperimentRun/dcid.train-1/")), "{lists:?}");
    assert!(!log.iter().any(|r| decoded(r).contains("dcid.train-1_1") || decoded(r).contains("dcid.train-10")));

    // workspaceartifactstore is an AccountKey datastore: a read/list SAS minted by jobdl (the
    // emulator verified its signature), over plain http so without `spr`, and no token.
    assert!(
        env.requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/datastores/workspaceartifactstore/listSecrets"))
    );
    for r in &log {
        let sig = r.param("sig").unwrap_or_default();
        assert!(!sig.is_empty() && !sig.starts_with("FAKESIG"), "not a minted SAS: {}", r.query);
        assert_eq!(r.param("sr").as_deref(), Some("c"));
        assert_eq!(r.param("sp").as_deref(), Some("rl"));
        assert_eq!(r.param("spr"), None, "spr=https would be refused over http");
        assert_eq!(r.authorization, None, "a token reached storage in SAS mode");
        assert!((200..300).contains(&r.status), "{} {} -> {}", r.method, r.path, r.status);
    }
    // Default artifacts need neither discovery nor run history.
    assert!(!env.requests().iter().any(|r| r.is_discovery() || r.is_ml_api()));
    assert_credentials_in_place(&env);
    assert_no_secrets(&run);
}

#[test]
fn a_minted_sas_with_the_wrong_key_is_refused() {
    // listSecrets hands out the development key; the blob role verifies against another one.
    let mut world = workspace_world();
    world.sas_key = Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into());
    let env = TestEnv::new(world);
    let run = run_ws(&env, &["download", "train-1"]);
    run.expect_code(3);
    assert!(run.stderr.contains("refused the SAS"), "{run}");
    assert!(blob_requests(&env, ARTIFACT_CONTAINER).iter().all(|r| r.status == 403));
    assert!(!env.dest("train-1").exists());
    assert_no_secrets(&run);
}

#[test]
fn named_data_output_resolves_through_run_history() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "train-1", "--output", "data_out", "--json"]);
    run.expect_code(0);
    let dest = env.dest("train-1");
    let names = ["part-0.csv", "sub/part-1.csv"];
    for n in names {
        assert_blob_file(
            &dest.join("named-outputs/data_out").join(n),
            env.blob(BLOBSTORE_CONTAINER, &format!("azureml/train-1/data_out/{n}")),
        );
    }
    assert_eq!(files_under(&dest), payload(names.map(|n| format!("named-outputs/data_out/{n}"))));
    check_summary(&run, Some(("train-1", "Completed")), &dest);
    let log = env.requests();
    assert!(log.iter().any(|r| r.is_discovery()));
    assert_eq!(log.iter().filter(|r| r.path.ends_with("/rundata")).count(), 1);
    assert_eq!(log.iter().filter(|r| r.path.ends_with("/dataversion/batchGetResolvedUris")).count(), 1);
    assert!(!log.iter().any(|r| decoded(r).contains("data_out_old")), "a sibling folder was read");
    // workspaceblobstore is a Sas datastore: its SAS (leading `?` stripped) and never the token.
    let blobs = blob_requests(&env, BLOBSTORE_CONTAINER);
    assert!(!blobs.is_empty());
    for r in &blobs {
        assert_eq!(r.authorization, None, "the token reached the blob role in SAS mode: {} {}", r.method, r.path);
        assert!(r.param("sig").is_some_and(|s| s.starts_with("FAKESIG")), "{}", r.query);
        assert!(!r.query.contains("&?") && !r.query.starts_with('?'), "{}", r.query);
    }
    assert_credentials_in_place(&env);
    assert_no_secrets(&run);
}

#[test]
fn named_model_output_uses_the_model_registry() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "train-1", "--output", "model_out"]);
    run.expect_code(0);
    let out = env.dest("train-1").join("named-outputs/model_out");
    assert_bytes(&out.join("MLmodel"), b"flavors: {}\n");
    assert_blob_file(&out.join("model.pkl"), env.blob(BLOBSTORE_CONTAINER, "azureml/train-1/model_out/model.pkl"));
    let log = env.requests();
    assert_eq!(log.iter().filter(|r| r.path.ends_with("/models/batchGetResolvedUris")).count(), 1);
    assert!(!log.iter().any(|r| r.path.ends_with("/dataversion/batchGetResolvedUris")));
    assert_credentials_in_place(&env);
}

#[test]
fn file_output_is_one_blob() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "train-1", "--output", "metrics_file"]);
    run.expect_code(0);
    let dest = env.dest("train-1");
    assert_eq!(files_under(&dest), payload(["named-outputs/metrics_file/metrics.json"]));
    assert_bytes(&dest.join("named-outputs/metrics_file/metrics.json"), b"{\"acc\": 0.9}\n");
    assert!(!env.requests().iter().any(|r| r.path.contains("metrics.json.bak")));
}

#[test]
fn all_outputs_continue_past_an_unlocatable_one() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "train-1", "--all-outputs", "--json"]);
    run.expect_code(6);
    let dest = env.dest("train-1");
    let files = check_summary(&run, Some(("train-1", "Completed")), &dest);
    for p in [
        "named-outputs/data_out/part-0.csv",
        "named-outputs/model_out/model.pkl",
        "named-outputs/metrics_file/metrics.json",
        "named-outputs/ident_out/weights.bin",
        "named-outputs/locked_out/report.txt",
        "named-outputs/probe_out/found.txt",
        "named-outputs/dataset_out/d.csv",
        "artifacts/user_logs/std_log.txt",
    ] {
        assert_eq!(run.entry(p)["result"], "downloaded", "{p}\n{run}");
        assert!(dest.join(p).is_file(), "{p}");
    }
    let failed: Vec<_> = files.iter().filter(|f| f["result"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{run}");
    assert_eq!(failed[0]["path"], "named-outputs/missing_out/");
    let err = failed[0]["error"].as_str().unwrap();
    for part in [
        "could not be located",
        "no asset in run history",
        "azureml/train-1/missing_out/",
        "dataset/train-1/missing_out/",
        "workspaceblobstore",
    ] {
        assert!(err.contains(part), "{part:?} not in {err:?}");
    }
    // Discovery and run data once; one resolution call per asset kind.
    let log = env.requests();
    let count = |suffix: &str| log.iter().filter(|r| r.path.ends_with(suffix)).count();
    assert_eq!(count("/discovery"), 1);
    assert_eq!(count("/rundata"), 1);
    assert_eq!(count("/dataversion/batchGetResolvedUris"), 1);
    assert_eq!(count("/models/batchGetResolvedUris"), 1);
    // Datastores are fetched once each.
    assert_eq!(count("/datastores/workspaceblobstore"), 1);
    assert_no_secrets(&run);
}

#[test]
fn all_outputs_of_a_clean_job_with_snake_case_types() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "train-2", "--all-outputs"]);
    run.expect_code(0);
    let dest = env.dest("train-2");
    assert_eq!(
        files_under(&dest),
        payload(["artifacts/user_logs/std_log.txt", "named-outputs/data_out/d.csv", "named-outputs/model_out/w.bin"])
    );
}

#[test]
fn probes_find_outputs_missing_from_run_history() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "train-1", "--output", "probe_out", "--output", "dataset_out"]);
    run.expect_code(0);
    let dest = env.dest("train-1");
    assert_bytes(&dest.join("named-outputs/probe_out/found.txt"), b"probed\n");
    assert_bytes(&dest.join("named-outputs/dataset_out/d.csv"), b"x\n1\n");
    let log = env.requests();
    let defaults: Vec<_> = log.iter().filter(|r| r.is_arm() && r.path.ends_with("/datastores")).collect();
    assert_eq!(defaults.len(), 1, "the default datastore is asked once");
    assert_eq!(defaults[0].param("isDefault").as_deref(), Some("true"));
    let probes: Vec<String> = blob_requests(&env, BLOBSTORE_CONTAINER)
        .iter()
        .filter(|r| r.param("comp").as_deref() == Some("list"))
        .filter_map(|r| r.param("prefix"))
        .collect();
    assert!(probes.contains(&"azureml/train-1/probe_out/".to_string()), "{probes:?}");
    assert!(probes.contains(&"dataset/train-1/dataset_out/".to_string()), "{probes:?}");
}

#[test]
fn probe_miss_fails_the_output_with_what_was_tried() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "train-1", "--output", "missing_out"]);
    run.expect_code(6);
    assert!(run.stderr.contains("output 'missing_out' could not be located"), "{run}");
    assert!(
        run.stderr
            .contains("not under azureml/train-1/missing_out/ or dataset/train-1/missing_out/ in workspaceblobstore"),
        "{run}"
    );
}

#[test]
fn identity_datastore_gets_a_storage_bearer_token() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "train-1", "--output", "ident_out"]);
    run.expect_code(0);
    assert_blob_file(
        &env.dest("train-1").join("named-outputs/ident_out/weights.bin"),
        env.blob(IDENTITY_CONTAINER, "ident/train-1/weights.bin"),
    );
    let bearer = format!("Bearer {TOKEN}");
    let blobs = blob_requests(&env, IDENTITY_CONTAINER);
    assert!(blobs.iter().any(|r| r.method == "GET" && r.param("comp").is_none()), "no data request");
    for r in &blobs {
        assert_eq!(r.authorization.as_deref(), Some(bearer.as_str()), "{} {}", r.method, r.path);
        assert_eq!(r.param("sig"), None);
        assert!(r.header("x-ms-version").is_some());
    }
    assert!(
        !env.requests().iter().any(|r| r.path.ends_with("/identitystore/listSecrets")),
        "listSecrets for an identity datastore"
    );
    // The token went to no other blob container.
    for r in env
        .requests()
        .iter()
        .filter(|r| r.is_blob() && !r.path.starts_with(&format!("/{ACCOUNT}/{IDENTITY_CONTAINER}")))
    {
        assert_eq!(r.authorization, None, "{}", r.path);
    }
}

#[test]
fn refused_list_secrets_falls_back_to_a_bearer_token() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "train-1", "--output", "locked_out", "-v"]);
    run.expect_code(0);
    assert_bytes(&env.dest("train-1").join("named-outputs/locked_out/report.txt"), b"behind RBAC\n");
    assert!(env.requests().iter().any(|r| r.path.ends_with("/lockedstore/listSecrets") && r.status == 403));
    assert!(run.stderr.contains("listSecrets of datastore 'lockedstore' refused"), "{run}");
    let bearer = format!("Bearer {TOKEN}");
    assert!(blob_requests(&env, LOCKED_CONTAINER).iter().all(|r| r.authorization.as_deref() == Some(bearer.as_str())));
    assert_no_secrets(&run);
}

#[test]
fn storage_refusal_is_exit_3_alone_and_a_failed_output_otherwise() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "norbac-1", "--output", "secret_out"]);
    run.expect_code(3);
    assert!(run.stderr.contains("Storage Blob Data Reader"), "{run}");
    assert!(run.stderr.contains("JOBDL_ACCESS_TOKEN"), "the static token is named\n{run}");
    assert!(!env.dest("norbac-1").exists());
    assert!(blob_requests(&env, NORBAC_CONTAINER).iter().any(|r| r.status == 403));

    let run = run_ws(&env, &["download", "norbac-1", "--all-outputs", "--json"]);
    run.expect_code(6);
    assert_eq!(run.entry("named-outputs/open_out/o.txt")["result"], "downloaded");
    assert_eq!(run.entry("named-outputs/secret_out/")["result"], "failed");
    assert_no_secrets(&run);
}

#[test]
fn reused_pipeline_step_downloads_the_reused_run() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "step-reused"]);
    run.expect_code(0);
    assert!(run.stderr.contains("reused") && run.stderr.contains("'train-old'"), "no notice on stderr\n{run}");
    let dest = env.dest("step-reused");
    assert_eq!(files_under(&dest), payload(["artifacts/user_logs/std_log.txt"]));
    assert_bytes(&dest.join("artifacts/user_logs/std_log.txt"), b"from the reused run\n");
    let lists: Vec<String> = blob_requests(&env, ARTIFACT_CONTAINER).iter().filter_map(|r| r.param("prefix")).collect();
    assert_eq!(lists, ["ExperimentRun/dcid.train-old/"]);
}

#[test]
fn sweep_downloads_its_best_child_and_its_own_artifacts_aside() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "sweep-1", "--json"]);
    run.expect_code(0);
    let dest = env.dest("sweep-1");
    assert_eq!(
        files_under(&dest),
        payload(["artifacts/user_logs/std_log.txt", "hd-artifacts/azureml-logs/hyperdrive.txt"])
    );
    assert_bytes(&dest.join("artifacts/user_logs/std_log.txt"), b"best child\n");
    check_summary(&run, Some(("sweep-1", "Completed")), &dest);
}

#[test]
fn finetuning_jobs_are_fetched_again_with_their_api_version() {
    let env = TestEnv::new(workspace_world());
    run_ws(&env, &["download", "ft-1"]).expect_code(0);
    let versions: Vec<String> = env
        .requests()
        .iter()
        .filter(|r| r.is_arm() && r.path.ends_with("/jobs/ft-1"))
        .filter_map(|r| r.param("api-version"))
        .collect();
    assert_eq!(versions, ["2024-01-01-preview", "2024-10-01-preview"]);
    let versions: Vec<String> = env
        .requests()
        .iter()
        .filter(|r| r.is_arm() && r.path.ends_with("/jobs/train-1"))
        .filter_map(|r| r.param("api-version"))
        .collect();
    assert!(versions.is_empty());
}

#[test]
fn regional_api_host_is_checked_before_it_sees_a_token() {
    let mut world = workspace_world();
    world.discovery_api = Some("http://127.0.0.2:1".into());
    let env = TestEnv::new(world);
    let run = run_ws(&env, &["download", "train-1", "--output", "missing_out"]);
    run.expect_code(6);
    assert!(run.stderr.contains("regional API host not allowed"), "{run}");
    assert!(!env.requests().iter().any(|r| r.is_ml_api()));
    assert_credentials_in_place(&env);
}

#[test]
fn job_gate_and_errors() {
    let env = TestEnv::new(workspace_world());
    let run = run_ws(&env, &["download", "running-1"]);
    run.expect_code(5);
    assert!(!env.dest("running-1").exists());
    let run = run_ws(&env, &["download", "nope", "--json"]);
    run.expect_code(4);
    assert!(run.doc()["error"]["message"].as_str().unwrap().contains("workspace 'ws'"), "{run}");
    let run = run_ws(&env, &["download", "train-1", "--output", "nope"]);
    run.expect_code(4);
    assert!(run.stderr.contains("data_out") && run.stderr.contains("model_out"), "{run}");
    assert!(!env.dest("train-1").exists());

    env.emu.add_fault(FaultRule::new("/jobs/train-2", 1, Fault::Status { code: 403, retry_after: None }));
    let run = run_ws(&env, &["download", "train-2"]);
    run.expect_code(3);
    assert!(run.stderr.contains("hint:"), "{run}");
}

#[test]
fn short_flags_and_missing_workspace_fields() {
    let env = TestEnv::new(workspace_world());
    let mut cmd = env.command(["download", "train-2", "-s", SUBSCRIPTION, "-g", RESOURCE_GROUP, "-w", WORKSPACE]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT")
        .env("JOBDL_ARM_ENDPOINT", env.emu.arm_endpoint())
        .env("JOBDL_STORAGE_ENDPOINT", env.emu.base_url());
    env.run_cmd(cmd).expect_code(0);

    let mut cmd = env.command(["download", "train-2", "-g", RESOURCE_GROUP]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT").env("JOBDL_ARM_ENDPOINT", env.emu.arm_endpoint());
    let run = env.run_cmd(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains("--subscription") && run.stderr.contains("--workspace"), "{run}");
    assert!(!run.stderr.contains("--resource-group/-g"), "{run}");

    let mut cmd = env.command(["download", "train-2"]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT");
    let run = env.run_cmd(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains("--project-endpoint") && run.stderr.contains("--workspace/-w"), "{run}");

    // Both ways at once.
    let mut cmd = env.workspace_command(["download", "train-2"]);
    cmd.env("AZURE_AI_PROJECT_ENDPOINT", env.emu.project_endpoint());
    let run = env.run_cmd(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains("give only one"), "{run}");
}

#[test]
fn azure_cli_defaults_fill_in_the_workspace() {
    let env = TestEnv::new(workspace_world());
    let cfg = tempfile::tempdir().unwrap();
    std::fs::write(
        cfg.path().join("config"),
        format!("[core]\noutput = json\n\n[defaults]\ngroup = {RESOURCE_GROUP}\nworkspace = {WORKSPACE}\n"),
    )
    .unwrap();
    std::fs::write(
        cfg.path().join("azureProfile.json"),
        format!("\u{feff}{{\"subscriptions\": [{{\"id\": \"other\", \"isDefault\": false}}, {{\"id\": \"{SUBSCRIPTION}\", \"isDefault\": true}}]}}"),
    )
    .unwrap();
    let mut cmd = env.command(["download", "train-2"]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT")
        .env("AZURE_CONFIG_DIR", cfg.path())
        .env("JOBDL_ARM_ENDPOINT", env.emu.arm_endpoint())
        .env("JOBDL_STORAGE_ENDPOINT", env.emu.base_url());
    env.run_cmd(cmd).expect_code(0);
    assert!(env.dest("train-2").join("artifacts/user_logs/std_log.txt").is_file());
}

#[test]
fn endpoint_overrides_must_be_allowed_hosts() {
    let env = TestEnv::new(workspace_world());
    let mut cmd = env.workspace_command(["download", "train-1"]);
    cmd.env("JOBDL_ARM_ENDPOINT", "http://127.0.0.3:9");
    let run = env.run_cmd(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains("JOBDL_ARM_ENDPOINT"), "{run}");
    let mut cmd = env.workspace_command(["download", "train-1"]);
    cmd.env("JOBDL_STORAGE_ENDPOINT", "http://127.0.0.3:9");
    let run = env.run_cmd(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains("JOBDL_STORAGE_ENDPOINT"), "{run}");
    assert!(env.requests().is_empty(), "a request was made before the overrides were checked");
}

#[test]
fn sovereign_cloud_keeps_the_workspace_path() {
    // With the emulator listed, --cloud only changes which hosts are known and the audiences;
    // Path B works, while a Foundry endpoint is refused outside AzureCloud.
    let env = TestEnv::new(workspace_world());
    run_ws(&env, &["download", "train-2", "--cloud", "AzureUSGovernment"]).expect_code(0);
    let run = env.run(&["download", "job-x", "--cloud", "AzureChinaCloud"]);
    run.expect_code(2);
    assert!(run.stderr.contains("only AzureCloud"), "{run}");
}

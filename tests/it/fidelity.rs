//! Field fidelity (issue 20): shapes seen in real Azure, Foundry and Databricks traffic (or
//! required by the services' own reference), reproduced by the emulators, and what jobdl does
//! with them. Each test here failed before the matching change.

use crate::support;

use crate::harness;

use crate::support::mlflow_fake;

use harness::{TestEnv, files_under};
use serde_json::json;
use support::{ModelBody, World, asset_output, standard_world};

const MODEL_CONTAINER: &str = "models-0001";
const MODEL_BLOB: &str = "job-123-model/1/model.safetensors";

/// The standard world with the model shrunk and a second output backed by the same model.
fn model_world(strict: bool, body: ModelBody) -> World {
    let mut w = standard_world();
    w.add_blob(MODEL_CONTAINER, MODEL_BLOB, support::BlobFixture::generated(100_000, 2));
    w.foundry_strict = strict;
    w.model_body = body;
    w.job_mut("job-123").outputs["model2"] = asset_output("safetensors_model", "job-123-model", "1");
    w
}

fn is_foundry(r: &support::LoggedRequest, first: &str) -> bool {
    r.path.starts_with(&format!("/api/projects/{}/{first}/", support::PROJECT))
}

// ------------------------------------------------------------------ item 3: feature headers

#[test]
fn strict_foundry_gets_the_feature_headers_on_jobs_history_and_models() {
    let env = TestEnv::new(model_world(true, ModelBody::Documented));
    let run = env.run(&["download", "job-123", "--output", "model", "--output", "default", "--json"]);
    run.expect_code(0);
    let reqs = env.requests();
    let jobs: Vec<_> = reqs.iter().filter(|r| is_foundry(r, "jobs")).collect();
    let models: Vec<_> = reqs.iter().filter(|r| is_foundry(r, "models")).collect();
    assert!(jobs.len() >= 3, "job GET, history and listings expected: {}", jobs.len());
    assert!(models.len() >= 2, "model version GET and credentials POST expected");
    for r in &jobs {
        assert_eq!(r.header("foundry-features"), Some("Jobs=V1Preview"), "{} {}", r.method, r.path);
        assert_eq!(r.status, 200, "{} {}", r.method, r.path);
    }
    for r in &models {
        assert_eq!(r.header("foundry-features"), Some("Models=V1Preview"), "{} {}", r.method, r.path);
        assert_eq!(r.status, 200, "{} {}", r.method, r.path);
    }
    // The documented body went first and was accepted: one credentials POST, at api-version v1.
    let creds: Vec<_> = models.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(creds.len(), 1);
    assert!(creds[0].query.contains("api-version=v1"), "{}", creds[0].query);
    assert!(files_under(&env.dest("job-123")).contains("named-outputs/model/model.safetensors"));
}

#[test]
fn model_credentials_fall_back_to_the_azd_shape_once_and_remember_it() {
    let env = TestEnv::new(model_world(true, ModelBody::Azd));
    let run = env.run(&["download", "job-123", "--output", "model", "--output", "model2", "--json", "-v"]);
    run.expect_code(0);
    let creds: Vec<_> =
        env.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/credentials")).collect();
    let seen: Vec<(u16, bool)> =
        creds.iter().map(|r| (r.status, r.query.contains("api-version=2026-01-15-preview"))).collect();
    // One 400 to the documented shape, then azd's shape for both outputs (remembered).
    assert_eq!(seen, vec![(400, false), (200, true), (200, true)], "{seen:?}");
    let dest = env.dest("job-123");
    let files = files_under(&dest);
    for p in ["named-outputs/model/model.safetensors", "named-outputs/model2/model.safetensors"] {
        assert!(files.contains(p), "{p} missing: {files:?}");
    }
    assert!(run.all_output().contains("trying azd's BlobUri shape"), "{}", run.all_output());
}

// ------------------------------------------------------------------ item 4: `Unknown` status

#[test]
fn foundry_unknown_is_terminal_and_downloads() {
    // azure-ai-projects' _TERMINAL_JOB_STATUSES has "unknown": its download goes ahead.
    let mut w = standard_world();
    w.job_mut("job-running").statuses = vec!["Unknown".into()];
    let env = TestEnv::new(w);
    let run = env.run(&["download", "job-running", "--json"]);
    run.expect_code(0);
    assert_eq!(run.doc()["job"]["status"], "Unknown", "{run:?}");
    assert!(files_under(&env.dest("job-running")).contains("artifacts/user_logs/std_log.txt"));
}

#[test]
fn azure_ml_unknown_is_not_terminal() {
    // azure-ai-ml's terminal list has no Unknown (its download refuses such jobs).
    let mut w = support::workspace_world();
    w.job_mut("running-1").statuses = vec!["Unknown".into()];
    let env = TestEnv::new(w);
    let cmd = env.workspace_command(["download", "running-1"]);
    let run = env.run_cmd(cmd);
    run.expect_code(5);
    assert!(run.stderr.contains("Unknown"), "{run:?}");
}

#[test]
fn wait_timeout_ends_on_time_when_the_job_get_hangs_and_names_the_last_status() {
    let env = TestEnv::new(standard_world());
    let running = env.spawn(env.command(["download", "job-running", "--wait", "--timeout", "2s"]));
    harness::wait_until(std::time::Duration::from_secs(30), "the first job GET", || {
        env.requests().iter().any(|r| r.path.ends_with("/jobs/job-running"))
    });
    // From now on the job GET answers its headers, then nothing for far longer than the
    // metadata attempt timeout: only the --timeout can end the wait.
    env.emu.add_fault(support::FaultRule::new(
        "/jobs/job-running",
        1000,
        support::Fault::Stall(std::time::Duration::from_secs(600)),
    ));
    // The harness kills and fails a child still running after CHILD_LIMIT (60 s).
    let run = running.wait(harness::CHILD_LIMIT);
    run.expect_code(5);
    assert!(run.stderr.contains("Running"), "the last status seen is not named\n{run:?}");
    assert!(run.stderr.contains("gave up after waiting 2s"), "{run:?}");
    assert!(!env.dest("job-running").exists());
}

// ------------------------------------------------------------------ item 7: Databricks file path

/// Runs jobdl against an MLflow/Databricks fake (no Azure variables), in `work`.
fn run_mlflow(work: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> harness::Run {
    let home = work.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let mut cmd = harness::jobdl(work, &home);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let stdout = work.join("stdout");
    let stderr = work.join("stderr");
    cmd.stdout(std::fs::File::create(&stdout).expect("stdout")).stderr(std::fs::File::create(&stderr).expect("stderr"));
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().expect("spawn jobdl");
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if started.elapsed() > harness::CHILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("jobdl did not finish within {:?}", harness::CHILD_LIMIT);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    harness::Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&stdout).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
        json: None,
        elapsed: started.elapsed(),
    }
}

#[test]
fn databricks_output_naming_a_file_downloads_that_file() {
    let body = mlflow_fake::pattern(70_000, 4);
    let run = mlflow_fake::FakeRun::new("dbr1", "FINISHED")
        .file("model/w.bin", body.clone())
        .file("model/config.json", b"{}".to_vec());
    let mut cfg = mlflow_fake::FakeConfig::default();
    cfg.runs.insert("dbr1".into(), run);
    cfg.auth = mlflow_fake::AuthMode::Bearer("dapi-SECRET".into());
    cfg.list_file_as_itself = true;
    let tracking = mlflow_fake::FakeMlflow::start(cfg);
    let dir = tempfile::Builder::new().prefix("jobdl-fid-").tempdir().expect("tempdir");
    let host = tracking.base_url();
    let env = [("DATABRICKS_HOST", host.as_str()), ("DATABRICKS_TOKEN", "dapi-SECRET")];
    let run =
        run_mlflow(dir.path(), &["download", "dbr1", "--mlflow-uri", "databricks", "--output", "model/w.bin"], &env);
    run.expect_code(0);
    let dest = dir.path().join("dbr1");
    // Like a uri_file output: the output's directory holds the file under its own name.
    assert_eq!(files_under(&dest), ["named-outputs/model/w.bin/w.bin".to_string()].into_iter().collect());
    assert_eq!(std::fs::read(dest.join("named-outputs/model/w.bin/w.bin")).expect("file"), body);
    assert!(!run.stderr.contains("outside"), "{run:?}");
    // A directory output is unchanged.
    let run = run_mlflow(
        dir.path(),
        &["download", "dbr1", "--mlflow-uri", "databricks", "--output", "model", "-p", "d2"],
        &env,
    );
    run.expect_code(0);
    assert_eq!(files_under(&dir.path().join("d2")).len(), 2);
}

// ------------------------------------------------------------------ item 8: per-path contentinfo

fn gap_world() -> World {
    let mut w = harness::one_job(
        "job-g",
        vec![("outputs/a.txt", harness::text("a\n")), ("outputs/b.txt", harness::text("b\n"))],
    );
    w.no_path_contentinfo = true;
    w
}

#[test]
fn gap_fill_falls_back_to_the_prefix_route_when_per_path_contentinfo_is_absent() {
    let env = TestEnv::new(gap_world());
    // The root's fan-out fails once (400, not retried): every file goes to the gap fill.
    env.emu.add_fault(support::FaultRule::new(
        "/prefix/contentinfo",
        1,
        support::Fault::Status { code: 400, retry_after: None },
    ));
    let run = env.run(&["download", "job-g", "-v"]);
    run.expect_code(0);
    let dest = env.dest("job-g");
    assert_eq!(files_under(&dest), harness::payload(["artifacts/outputs/a.txt", "artifacts/outputs/b.txt"]));
    let reqs = env.requests();
    let per_path = reqs.iter().filter(|r| r.path.ends_with("/artifacts/contentinfo")).count();
    let prefix = reqs.iter().filter(|r| r.path.ends_with("/artifacts/prefix/contentinfo")).count();
    assert_eq!(per_path, 2, "one per-path try per file");
    assert_eq!(prefix, 3, "the failed fan-out, then one prefix re-listing per file");
    assert!(run.stderr.contains("listing the prefix"), "{run:?}");
}

#[test]
fn refresh_after_403_falls_back_to_the_prefix_route() {
    let env = TestEnv::new(gap_world());
    let blob = support::artifact_blob_name("job-g", "outputs/a.txt");
    env.emu.add_fault(
        support::FaultRule::new(&blob, 1, support::Fault::Status { code: 403, retry_after: None }).method("GET"),
    );
    let run = env.run(&["download", "job-g"]);
    run.expect_code(0);
    harness::assert_bytes(&env.dest("job-g").join("artifacts/outputs/a.txt"), b"a\n");
    let reqs = env.requests();
    assert!(reqs.iter().any(|r| r.path.ends_with("/artifacts/contentinfo") && r.status == 404));
    assert_eq!(reqs.iter().filter(|r| r.path.ends_with("/artifacts/prefix/contentinfo")).count(), 2);
}

// ------------------------------------------------------------------ item 5: uri_file at the root

/// A `uri_file` output whose credentials name the container root (as in the recording): the file
/// `data_file1.txt` at the container's top level, next to another upload.
fn root_file_world() -> World {
    let mut w = World::new();
    let mut job = support::JobFixture::new("job-f", "Completed");
    job.outputs = json!({"report": asset_output("uri_file", "ds-file", "1")});
    w.add_job(job);
    w.add_file_asset(
        false,
        "ds-file",
        "1",
        ("ds-root", "data_file1.txt"),
        support::CredKey::Type,
        harness::text("file 1\n"),
    );
    w.add_blob("ds-root", "data_file2.txt", harness::text("another upload\n"));
    w.dataset_blob_uri_root = true;
    w
}

#[test]
fn uri_file_whose_credentials_name_the_container_root_downloads_that_file_only() {
    let env = TestEnv::new(root_file_world());
    let run = env.run(&["download", "job-f", "--output", "report"]);
    run.expect_code(0);
    let dest = env.dest("job-f");
    assert_eq!(files_under(&dest), harness::payload(["named-outputs/report/data_file1.txt"]));
    harness::assert_bytes(&dest.join("named-outputs/report/data_file1.txt"), b"file 1\n");
    let container_root = format!("/{}/ds-root", support::ACCOUNT);
    for r in env.requests() {
        let p = r.path.trim_end_matches('/');
        assert!(
            p != container_root || r.query.contains("comp=list"),
            "the container URL was asked for as the file: {} {}",
            r.method,
            r.path
        );
    }
    assert!(!env.requests().iter().any(|r| r.path.ends_with("data_file2.txt")));
}

/// The file named by the asset's path answers its HEAD with something other than 404 (here the
/// SAS lacks read permission): that output fails naming the status, nothing else is tried in its
/// place (no listing of the container, no request for the container URL) and no signature is shown.
#[test]
fn uri_file_whose_head_is_refused_fails_that_output_without_guessing() {
    let env = TestEnv::new(root_file_world());
    env.emu.add_fault(
        support::FaultRule::new("/ds-root/data_file1.txt", 1, support::Fault::Status { code: 403, retry_after: None })
            .method("HEAD"),
    );
    let run = env.run(&["download", "job-f", "--output", "report", "--json"]);
    run.expect_code(6);
    assert!(run.stderr.contains("output 'report'") && run.stderr.contains("403"), "{run:?}");
    for out in [&run.stderr, &run.stdout] {
        for (i, _) in out.match_indices("sig=") {
            assert!(out[i + 4..].starts_with("REDACTED"), "a signature was shown: {run:?}");
        }
    }
    let blob_reqs: Vec<_> = env.requests().into_iter().filter(|r| r.is_blob()).collect();
    assert_eq!(
        blob_reqs.iter().map(|r| (r.method.as_str(), r.path.as_str())).collect::<Vec<_>>(),
        [("HEAD", format!("/{}/ds-root/data_file1.txt", support::ACCOUNT).as_str())],
        "only the file's HEAD"
    );
    assert!(!env.dest("job-f").join("named-outputs/report").exists());
}

#[test]
fn uri_file_at_the_container_root_without_a_usable_data_uri_fails_that_output() {
    let mut w = World::new();
    let mut job = support::JobFixture::new("job-f", "Completed");
    job.outputs = json!({"report": asset_output("uri_file", "ds-file", "1")});
    w.add_job(job);
    // The asset's path is the container itself: no file can be named; nothing is listed.
    w.add_file_asset(false, "ds-file", "1", ("ds-root", ""), support::CredKey::Type, harness::text("x"));
    w.add_blob("ds-root", "data_file2.txt", harness::text("another upload\n"));
    w.dataset_blob_uri_root = true;
    let env = TestEnv::new(w);
    let run = env.run(&["download", "job-f", "--output", "report"]);
    run.expect_code(6);
    assert!(run.stderr.contains("is not a file in that container"), "{run:?}");
    assert!(!env.requests().iter().any(|r| r.is_blob()), "no blob request");
}

// ------------------------------------------------------------------ item 1: shared-key access disabled

#[test]
fn key_based_auth_refused_switches_each_datastore_to_the_storage_token_once() {
    let mut w = support::workspace_world();
    w.key_auth_disabled = vec![support::ARTIFACT_CONTAINER.to_string(), support::BLOBSTORE_CONTAINER.to_string()];
    let env = TestEnv::new(w);
    let cmd = env.workspace_command(["download", "train-1", "--output", "default", "--output", "data_out", "-v"]);
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    let dest = env.dest("train-1");
    let files = files_under(&dest);
    assert!(files.contains("artifacts/user_logs/std_log.txt"), "{files:?}");
    assert!(files.iter().any(|f| f.starts_with("named-outputs/data_out/")), "{files:?}");
    for (container, ds) in
        [(support::ARTIFACT_CONTAINER, "workspaceartifactstore"), (support::BLOBSTORE_CONTAINER, "workspaceblobstore")]
    {
        let reqs: Vec<_> = env
            .requests()
            .into_iter()
            .filter(|r| {
                let root = format!("/{}/{container}", support::ACCOUNT);
                r.path == root || r.path.starts_with(&format!("{root}/"))
            })
            .collect();
        let refused = reqs.iter().filter(|r| r.status == 403).count();
        assert_eq!(
            refused,
            1,
            "{container}: switched once per datastore, not per file: {:?}",
            reqs.iter().map(|r| (&r.method, &r.path, &r.query, r.status)).collect::<Vec<_>>()
        );
        let bearer = format!("Bearer {}", support::TOKEN);
        let after: Vec<_> = reqs.iter().skip_while(|r| r.status != 403).skip(1).collect();
        assert!(!after.is_empty());
        assert!(
            after.iter().all(|r| r.authorization.as_deref() == Some(bearer.as_str()) && !r.query.contains("sig=")),
            "{container}: after the switch only the storage token"
        );
        assert!(run.stderr.contains(&format!("switching datastore '{ds}' to your storage token")), "{run:?}");
    }
}

// ------------------------------------------------------------------ item 6: recorded api-versions

/// Every Azure ML metadata call carries the api-version azure-ai-ml 1.32.0 sends in the recorded
/// `test_pipeline_job_download` traffic.
#[test]
fn azure_ml_calls_carry_the_recorded_api_versions() {
    let env = TestEnv::new(support::workspace_world());
    let cmd = env.workspace_command(["download", "train-1", "--output", "default", "--output", "data_out"]);
    env.run_cmd(cmd).expect_code(0);
    let reqs = env.requests();
    let version_of = |r: &support::LoggedRequest| r.param("api-version").unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for r in reqs.iter().filter(|r| r.is_arm()) {
        let route = if r.path.contains("/datastores") {
            if r.path.ends_with("/listSecrets") { "listSecrets" } else { "datastore" }
        } else if r.path.contains("/jobs/") {
            "job"
        } else if r.path.ends_with(&format!("/workspaces/{}", support::WORKSPACE)) {
            "workspace"
        } else {
            continue;
        };
        let expected = match route {
            "job" => "2024-01-01-preview",
            "workspace" => "2024-10-01-preview",
            _ => "2024-07-01-preview",
        };
        assert_eq!(version_of(r), expected, "{} {}?{}", r.method, r.path, r.query);
        seen.insert(route);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["datastore", "job", "listSecrets", "workspace"]);
    let rundata: Vec<_> = reqs.iter().filter(|r| r.path.ends_with("/rundata")).collect();
    assert!(!rundata.is_empty() && rundata.iter().all(|r| version_of(r) == "v1.0"));
}

// ------------------------------------------------------------------ item 2: storage tokens expire

/// An identity-based datastore read with managed-identity tokens that expire during the download
/// (the emulator's tokens live 2 s; storage answers 401 to a stale one): every data request carries
/// a live token, renewed from the identity endpoint, and the download completes.
#[test]
fn storage_tokens_are_renewed_when_they_expire_during_a_download() {
    let mut w = support::workspace_world();
    w.token_life = Some(std::time::Duration::from_secs(2));
    let files = ["a.bin", "b.bin", "c.bin"];
    w.add_datastore_files(
        "identitystore",
        "ident/train-1",
        files.iter().enumerate().map(|(i, f)| (*f, support::BlobFixture::generated(3000, i as u64))).collect(),
    );
    let env = TestEnv::new(w);
    // The first file's body arrives only after the token that listed it has expired.
    env.emu.add_fault(
        support::FaultRule::new(
            &format!("/{}/ident/", support::IDENTITY_CONTAINER),
            1,
            support::Fault::Stall(std::time::Duration::from_millis(2500)),
        )
        .method("GET"),
    );
    let mut cmd = env.workspace_command(["download", "train-1", "--output", "ident_out", "--parallel", "1"]);
    cmd.env("JOBDL_ACCESS_TOKEN", "")
        .env("MSI_ENDPOINT", format!("{}/msi/token", env.emu.base_url()))
        .env("MSI_SECRET", support::MSI_SECRET);
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    let dest = env.dest("train-1");
    for f in files.iter().chain(["weights.bin"].iter()) {
        assert!(dest.join("named-outputs/ident_out").join(f).is_file(), "{f} missing: {run:?}");
    }
    let reqs = env.requests();
    let storage: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.starts_with(&format!("/{}/{}", support::ACCOUNT, support::IDENTITY_CONTAINER)))
        .collect();
    assert!(
        storage.iter().all(|r| r.status != 401),
        "a stale token reached storage: {:?}",
        storage.iter().map(|r| (&r.method, &r.path, r.status)).collect::<Vec<_>>()
    );
    let tokens: std::collections::BTreeSet<_> = storage.iter().filter_map(|r| r.authorization.clone()).collect();
    assert!(tokens.len() >= 2, "the storage token was renewed: {tokens:?}");
    assert!(!run.stderr.contains("msi-"), "tokens never printed: {run:?}");
}

//! Field fidelity (issue 20): shapes seen in real Azure, Foundry and Databricks traffic (or
//! required by the services' own reference), reproduced by the emulators, and what jobdl does
//! with them. Each test here failed before the matching change.

#[path = "support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "cli/harness.rs"]
mod harness;

use harness::{TestEnv, files_under};
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

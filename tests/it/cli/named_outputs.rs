//! Named outputs: models (ranged chunks), folders, single files, unsupported and undeclared ones.

use crate::harness::{TestEnv, assert_blob_file, check_summary, files_under, payload};
use crate::support::{BlobFixture, World, standard_world};

const MODEL_CONTAINER: &str = "models-0001";
const MODEL_BLOB: &str = "job-123-model/1/model.safetensors";
const CHUNK: u64 = 8 << 20;

/// The standard world with its two big blobs shrunk, for tests that download everything.
fn small_standard_world() -> World {
    let mut w = standard_world();
    w.add_blob(MODEL_CONTAINER, MODEL_BLOB, BlobFixture::generated(300_000, 2));
    w.add_blob(
        "azureml",
        &crate::support::artifact_blob_name("job-123", "outputs/big.bin"),
        BlobFixture::generated(200_000, 1),
    );
    w
}

#[test]
fn model_output_is_fetched_in_ranged_chunks() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--output", "model", "--json"]);
    run.expect_code(0);
    let dest = env.dest("job-123");
    let out = dest.join("named-outputs/model");
    let model = env.blob(MODEL_CONTAINER, MODEL_BLOB);
    assert_blob_file(&out.join("model.safetensors"), model);
    assert_blob_file(&out.join("config.json"), env.blob(MODEL_CONTAINER, "job-123-model/1/config.json"));
    assert_eq!(
        files_under(&dest),
        payload(["named-outputs/model/model.safetensors", "named-outputs/model/config.json"]),
        "only the model output may be downloaded"
    );
    check_summary(&run, Some(("job-123", "Completed")), &dest);
    for p in ["named-outputs/model/model.safetensors", "named-outputs/model/config.json"] {
        assert_eq!(run.entry(p)["result"], "downloaded");
        assert_eq!(run.entry(p)["md5"], "verified", "{}", run.entry(p));
    }
    assert_eq!(run.entry("named-outputs/model/model.safetensors")["bytes"].as_u64(), Some(model.len()));

    // 40 MiB in 8 MiB ranges: several ranged GETs, the later ones pinned to the ETag.
    let gets = env.blob_gets("model.safetensors");
    assert!(gets.len() as u64 >= model.len() / CHUNK, "only {} GETs for the model", gets.len());
    assert!(gets.iter().all(|r| r.range.is_some()), "an unranged GET of the big model");
    assert!(gets.iter().all(|r| r.status == 206), "statuses: {:?}", gets.iter().map(|r| r.status).collect::<Vec<_>>());
    let etag = format!("\"{}\"", model.etag);
    let pinned = gets.iter().filter(|r| r.if_match.as_deref() == Some(etag.as_str())).count();
    assert!(pinned + 1 >= gets.len(), "only {pinned} of {} ranged GETs carry If-Match {etag}", gets.len());
    let starts: Vec<u64> = gets
        .iter()
        .filter_map(|r| r.range.as_deref()?.strip_prefix("bytes=")?.split('-').next()?.parse().ok())
        .collect();
    for i in 0..model.len().div_ceil(CHUNK) {
        assert!(starts.contains(&(i * CHUNK)), "no range starts at chunk {i}: {starts:?}");
    }
}

#[test]
fn folder_output_excludes_sibling_versions() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--output", "metrics", "--json"]);
    run.expect_code(0);
    let dest = env.dest("job-123");
    let names = ["loss.csv", "acc.csv", "sub/summary.json"];
    for n in names {
        assert_blob_file(
            &dest.join("named-outputs/metrics").join(n),
            env.blob("data-0001", &format!("job-123-metrics/1/{n}")),
        );
    }
    assert_eq!(files_under(&dest), payload(names.map(|n| format!("named-outputs/metrics/{n}"))));
    assert!(!env.requests().iter().any(|r| r.path.contains("other.csv")), "the sibling version was fetched");
    check_summary(&run, Some(("job-123", "Completed")), &dest);
}

#[test]
fn file_output_is_one_blob_by_its_basename() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--output", "report"]);
    run.expect_code(0);
    let dest = env.dest("job-123");
    assert_eq!(files_under(&dest), payload(["named-outputs/report/report.json"]));
    assert_blob_file(
        &dest.join("named-outputs/report/report.json"),
        env.blob("data-0001", "job-123-report/1/report.json"),
    );
    assert!(!env.requests().iter().any(|r| r.path.contains("report.json.bak")), "the .bak sibling was fetched");
}

#[test]
fn all_outputs_fail_unsupported_ones_and_download_the_rest() {
    let env = TestEnv::new(small_standard_world());
    let run = env.run(&["download", "job-123", "--all-outputs", "--json"]);
    run.expect_code(6);
    let dest = env.dest("job-123");

    // Clear messages naming the output (and for ckpt the type and the supported ones).
    let ckpt = run.entry("named-outputs/ckpt/");
    assert_eq!(ckpt["result"], "failed");
    assert_eq!(ckpt["bytes"], 0);
    let err = ckpt["error"].as_str().unwrap();
    for word in ["ckpt", "mlflow_model", "safetensors_model", "uri_folder", "uri_file"] {
        assert!(err.contains(word), "ckpt error lacks {word:?}: {err}");
    }
    let broken = run.entry("named-outputs/broken/");
    assert_eq!(broken["result"], "failed");
    let err = broken["error"].as_str().unwrap();
    assert!(err.contains("broken") && err.contains("assetVersion"), "broken error: {err}");
    let files = check_summary(&run, Some(("job-123", "Completed")), &dest);
    assert_eq!(run.doc()["totals"]["failed"], 2, "{run}");

    // Everything else is on disk, byte-exact.
    let job = env.world.job("job-123").unwrap();
    let mut expected: Vec<String> = job.artifacts.iter().map(|a| format!("artifacts/{}", a.path)).collect();
    for a in &job.artifacts {
        assert_blob_file(&dest.join("artifacts").join(&a.path), env.artifact("job-123", &a.path));
    }
    for (out, container, prefix, names) in [
        ("model", MODEL_CONTAINER, "job-123-model/1", &["model.safetensors", "config.json"][..]),
        ("metrics", "data-0001", "job-123-metrics/1", &["loss.csv", "acc.csv", "sub/summary.json"][..]),
    ] {
        for n in names {
            let local = format!("named-outputs/{out}/{n}");
            assert_blob_file(&dest.join(&local), env.blob(container, &format!("{prefix}/{n}")));
            expected.push(local);
        }
    }
    assert_blob_file(
        &dest.join("named-outputs/report/report.json"),
        env.blob("data-0001", "job-123-report/1/report.json"),
    );
    expected.push("named-outputs/report/report.json".into());
    assert_eq!(files_under(&dest), payload(expected.clone()));
    let downloaded = files.iter().filter(|f| f["result"] == "downloaded").count();
    assert_eq!(downloaded, expected.len(), "{run}");

    // Without --json the same reasons reach stderr.
    let run = env.run(&["download", "job-123", "--all-outputs", "-p", "human"]);
    run.expect_code(6);
    for word in ["'ckpt'", "mlflow_model", "safetensors_model, uri_folder, uri_file", "'broken'"] {
        assert!(run.stderr.contains(word), "stderr lacks {word:?}\n{run}");
    }
}

#[test]
fn undeclared_output_lists_the_declared_names() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--output", "nope"]);
    run.expect_code(4);
    assert!(run.stderr.contains("nope"), "{run}");
    assert!(run.stderr.contains("broken, ckpt, metrics, model, report"), "declared names not listed sorted\n{run}");
    assert!(!run.stderr.contains("default"), "`default` listed as an output\n{run}");
    assert_eq!(std::fs::read_dir(env.work()).unwrap().count(), 0, "something was created on disk");
    assert!(!env.requests().iter().any(|r| r.is_blob()));

    let run = env.run(&["download", "job-123", "--output", "nope", "--json"]);
    run.expect_code(4);
    assert_eq!(run.doc()["error"]["code"], "not_found");
    assert_eq!(run.doc()["error"]["exit_code"], 4);
}

//! `--include` / `--exclude`, `jobdl ls`, `jobdl show`, `jobdl completions`, `jobdl man` and the
//! `--help` examples.

use crate::harness::{Run, TestEnv, decoded, files_under, is_blob_data, payload};
use crate::support::{TOKEN, standard_world, workspace_world};

/// Blob bytes fetched (GET of one blob, not a listing or a HEAD).
fn blob_data_gets(env: &TestEnv) -> Vec<String> {
    env.requests().into_iter().filter(|r| r.method == "GET" && is_blob_data(r)).map(|r| decoded(&r)).collect()
}

#[track_caller]
fn assert_no_secrets(run: &Run) {
    let out = run.all_output();
    assert!(!out.contains("sig=") || out.contains("sig=REDACTED"), "a signature was printed\n{run}");
    assert!(!out.contains(TOKEN), "the token was printed\n{run}");
}

#[test]
fn include_and_exclude_filter_before_any_download() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--include", "*.txt", "--exclude", "system_logs", "--json"]);
    run.expect_code(0);
    let dest = env.dest("job-123");
    let want = [
        "artifacts/log/a.txt",
        "artifacts/logs/b.txt",
        "artifacts/user_logs/std_log.txt",
        "artifacts/outputs/odd name #1 50%+ü.txt",
    ];
    assert_eq!(files_under(&dest), payload(want), "{run}");
    assert_eq!(run.doc()["totals"]["files"], 4, "{run}");
    let gets = blob_data_gets(&env);
    assert!(gets.iter().all(|p| p.ends_with(".txt") && !p.contains("system_logs")), "filtered files fetched: {gets:?}");

    // A glob with a directory part matches the path relative to the output.
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--include", "logs/**/*.txt", "--json"]);
    run.expect_code(0);
    assert_eq!(files_under(&env.dest("job-123")), payload(["artifacts/logs/b.txt"]), "{run}");
}

#[test]
fn include_matching_nothing_is_zero_files_not_an_error() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--include", "nothing-like-this*", "--json"]);
    run.expect_code(0);
    assert_eq!(run.doc()["totals"]["files"], 0, "{run}");
    assert_eq!(run.doc()["totals"]["downloaded"], 0, "{run}");
    assert!(blob_data_gets(&env).is_empty());
}

#[test]
fn invalid_glob_is_exit_2_naming_it() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["download", "job-123", "--exclude", "logs/[a"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--exclude glob 'logs/[a'"), "{run}");
    assert!(env.requests().is_empty(), "a request before the glob was checked");
    assert!(!env.dest("job-123").exists());
    let run = env.run(&["ls", "job-123", "--include", "a[", "--json"]);
    run.expect_code(2);
    assert_eq!(run.doc()["error"]["code"], "usage");
}

#[test]
fn cp_filters_relative_to_the_listed_prefix() {
    let env = TestEnv::new(standard_world());
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1");
    let run = env.run(&["cp", &url, "out", "--include", "*.csv", "--exclude", "acc.csv", "--json"]);
    run.expect_code(0);
    assert_eq!(files_under(&env.work().join("out")), payload(["loss.csv"]), "{run}");
}

#[test]
fn ls_prints_the_plan_without_downloading() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["ls", "job-123", "--json"]);
    run.expect_code(0);
    let doc = run.doc();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["job"]["name"], "job-123");
    assert_eq!(doc["job"]["status"], "Completed");
    let files = doc["files"].as_array().expect("files");
    assert_eq!(files.len(), 11, "{run}");
    let mut total = 0;
    for f in files {
        assert_eq!(f["output"], "default", "{f}");
        let path = f["path"].as_str().expect("path");
        let fixture = env.artifact("job-123", path);
        assert_eq!(f["bytes"].as_u64(), Some(fixture.len()), "{f}");
        assert!(f["md5_known"].is_boolean());
        total += fixture.len();
    }
    assert_eq!(doc["totals"]["files"], 11);
    assert_eq!(doc["totals"]["bytes"].as_u64(), Some(total));
    assert!(blob_data_gets(&env).is_empty(), "ls downloaded: {:?}", blob_data_gets(&env));
    // Foundry's artifact listing carries no sizes: one HEAD per file, never more.
    let heads = env.requests().into_iter().filter(|r| r.method == "HEAD" && is_blob_data(r)).count();
    assert_eq!(heads, 11, "{run}");
    assert!(!env.dest("job-123").exists(), "ls created the destination");
    assert!(files_under(&env.work()).is_empty());

    // The table: a header, one row per file, totals; notes stay off stdout.
    let run = env.run(&["ls", "job-123", "--include", "logs/*.txt"]);
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["OUTPUT", "PATH", "SIZE", "MD5"], "{run}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], "default");
    assert_eq!(row[1], "logs/b.txt");
    assert_eq!(row[2..4], ["12", "B"], "{run}");
    assert_eq!(lines[2], "1 file, 12 B", "{run}");
}

#[test]
fn ls_named_outputs_use_listing_sizes() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["ls", "job-123", "--output", "metrics", "--output", "model", "--include", "*.json", "--json"]);
    run.expect_code(0);
    let files = run.doc()["files"].as_array().expect("files").clone();
    let got: Vec<(String, String)> = files
        .iter()
        .map(|f| (f["output"].as_str().unwrap().to_string(), f["path"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        got,
        [("metrics".to_string(), "sub/summary.json".to_string()), ("model".to_string(), "config.json".to_string())],
        "{run}"
    );
    assert!(files.iter().all(|f| f["md5_known"] == true), "{run}");
    let heads = env.requests().into_iter().filter(|r| r.method == "HEAD").count();
    assert_eq!(heads, 0, "listed sizes were probed again");
    assert!(blob_data_gets(&env).is_empty());
}

#[test]
fn ls_follows_the_download_gate() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["ls", "job-running", "--json"]);
    run.expect_code(5);
    assert_eq!(run.doc()["error"]["code"], "job_not_terminal");
    let run = env.run(&["ls", "job-wait", "--wait", "--json"]);
    run.expect_code(0);
    assert_eq!(run.doc()["job"]["status"], "Completed");
    let run = env.run(&["ls", "no-such-job"]);
    run.expect_code(4);
}

#[test]
fn show_prints_status_type_and_outputs_for_any_status() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["show", "job-123", "--json"]);
    run.expect_code(0);
    let doc = run.doc();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["job"]["status"], "Completed");
    let outputs = doc["outputs"].as_array().expect("outputs");
    let model = outputs.iter().find(|o| o["name"] == "model").expect("model output");
    assert_eq!(model["type"], "safetensors_model");
    assert_eq!(model["asset_name"], "job-123-model");
    assert_eq!(model["asset_version"], "1");
    assert!(outputs.iter().any(|o| o["name"] == "metrics" && o["type"] == "uri_folder"), "{run}");
    assert_no_secrets(&run);
    assert!(!env.requests().iter().any(|r| r.is_blob()), "show touched storage");

    let run = env.run(&["show", "job-123"]);
    run.expect_code(0);
    assert!(run.stdout.contains("status:") && run.stdout.contains("Completed"), "{run}");
    assert!(run.stdout.contains("job-123-model:1"), "{run}");

    // No gate: a running job is shown.
    let run = env.run(&["show", "job-running", "--json"]);
    run.expect_code(0);
    assert_eq!(run.doc()["job"]["status"], "Running");
    let run = env.run(&["show", "no-such-job", "--json"]);
    run.expect_code(4);
    assert_eq!(run.doc()["error"]["code"], "not_found");
}

#[test]
fn show_and_ls_in_a_workspace() {
    let env = TestEnv::new(workspace_world());
    let run = env.run_cmd(env.workspace_command(["show", "train-1", "--json"]));
    run.expect_code(0);
    let outputs = run.doc()["outputs"].as_array().expect("outputs");
    let data = outputs.iter().find(|o| o["name"] == "data_out").expect("data_out");
    assert_eq!(data["type"], "uri_folder", "{run}");
    assert!(data["uri"].as_str().unwrap_or("").starts_with("azureml://datastores/workspaceblobstore/"), "{run}");
    assert_no_secrets(&run);

    let run = env.run_cmd(env.workspace_command(["ls", "train-1", "--json"]));
    run.expect_code(0);
    let files = run.doc()["files"].as_array().expect("files");
    let model = files.iter().find(|f| f["path"] == "outputs/model.pkl").expect("model.pkl");
    assert_eq!(model["bytes"], 3000, "{run}");
    assert_no_secrets(&run);
    assert!(blob_data_gets(&env).is_empty());
}

#[test]
fn completions_and_man_page() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["completions", "bash"]);
    run.expect_code(0);
    assert!(run.stdout.contains("download") && run.stdout.contains("--include"), "{run}");
    for shell in ["zsh", "fish", "powershell"] {
        let run = env.run(&["completions", shell]);
        run.expect_code(0);
        assert!(run.stdout.contains("download"), "{shell}\n{run}");
    }
    env.run(&["completions", "tcsh"]).expect_code(2);
    let run = env.run(&["man"]);
    run.expect_code(0);
    assert!(run.stdout.contains(".TH"), "{run}");
    assert!(env.requests().is_empty());
}

#[test]
fn every_command_help_has_examples() {
    let env = TestEnv::new(standard_world());
    for cmd in ["download", "ls", "show", "cp", "completions"] {
        let run = env.run(&[cmd, "--help"]);
        run.expect_code(0);
        assert!(run.stdout.contains("Example"), "{cmd}\n{run}");
        assert!(run.stdout.contains(&format!("jobdl {cmd} ")), "{cmd}\n{run}");
    }
    let run = env.run(&["--help"]);
    run.expect_code(0);
    for cmd in ["jobdl ls ", "jobdl show ", "jobdl download ", "jobdl cp ", "jobdl completions "] {
        assert!(run.stdout.contains(cmd), "{cmd}\n{run}");
    }
    let run = env.run(&["download", "--help"]);
    assert!(run.stdout.contains("--include <GLOB>") && run.stdout.contains("--exclude <GLOB>"), "{run}");
}

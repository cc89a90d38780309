//! Issue 21, "first contact": what a new user trips on. Each test drives the built `jobdl`
//! binary against the emulator (`tests/support`, through the CLI harness of `tests/cli`).

#[path = "support/mod.rs"]
mod support;

#[path = "cli/harness.rs"]
#[allow(dead_code)]
mod harness;

use harness::TestEnv;
use support::standard_world;

/// The hint a refused credential gets on a Foundry project (a 401 with a chain token, or no
/// credential at all).
const PROJECT_HINT: &str =
    "hint: sign in with `az login` (or set JOBDL_ACCESS_TOKEN) with an identity that can read the project's jobs";

/// An empty directory for PATH, so that neither `az` nor `azd` is found.
fn empty_path_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("jobdl-nopath-").tempdir().expect("empty PATH dir")
}

// ---- item 1: credentials ----

#[test]
fn no_credential_at_all_is_auth_and_lists_every_source() {
    let env = TestEnv::new(standard_world());
    let bin = empty_path_dir();
    for json in [false, true] {
        let mut cmd = env.command(["download", "job-123"]);
        cmd.env_remove("JOBDL_ACCESS_TOKEN").env("PATH", bin.path());
        if json {
            cmd.arg("--json");
        }
        let run = env.run_cmd(cmd);
        run.expect_code(3);
        for source in [
            "JOBDL_ACCESS_TOKEN: not set",
            "environment service principal: not configured (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET",
            "workload identity: not configured (AZURE_FEDERATED_TOKEN_FILE not set)",
            "managed identity: not configured",
            "Azure CLI: not installed",
            "Azure Developer CLI: not installed",
        ] {
            assert!(run.stderr.contains(source), "{source:?} missing\n{run}");
        }
        assert!(run.stderr.contains(PROJECT_HINT), "{run}");
        if json {
            assert_eq!(run.doc()["error"]["code"], "auth", "{run}");
            assert_eq!(run.doc()["error"]["exit_code"], 3, "{run}");
        }
    }
    assert!(!env.dest("job-123").exists());
    // Nothing reached the service without a token.
    assert!(env.requests().is_empty(), "{:?}", env.requests());
}

#[test]
fn a_refused_access_token_names_the_variable() {
    let env = TestEnv::new(standard_world());
    let mut cmd = env.command(["download", "job-123", "--json"]);
    cmd.env("JOBDL_ACCESS_TOKEN", "an-expired-token-0123");
    let run = env.run_cmd(cmd);
    run.expect_code(3);
    assert_eq!(run.doc()["error"]["code"], "auth", "{run}");
    assert!(run.stderr.contains("refused the token in JOBDL_ACCESS_TOKEN"), "{run}");
    let hint = run.stderr.lines().find(|l| l.starts_with("hint: ")).unwrap_or_else(|| panic!("no hint\n{run}"));
    assert!(hint.contains("JOBDL_ACCESS_TOKEN is set"), "{run}");
    assert!(!hint.contains("or set JOBDL_ACCESS_TOKEN"), "{run}");
    assert!(!run.all_output().contains("an-expired-token-0123"), "{run}");
}

#[test]
fn a_refused_cp_sas_asks_for_a_valid_sas_and_never_mentions_jobs() {
    let env = TestEnv::new(standard_world());
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1").replace("FAKESIGc0nta1ner", "FAKESIGwrong");
    let run = env.run(&["cp", &url, "out", "--json"]);
    run.expect_code(3);
    assert_eq!(run.doc()["error"]["code"], "auth", "{run}");
    assert!(run.stderr.contains("hint: the URL needs a valid SAS"), "{run}");
    assert!(!run.all_output().contains("job"), "{run}");
    assert!(!run.all_output().contains("FAKESIGwrong"), "{run}");
}

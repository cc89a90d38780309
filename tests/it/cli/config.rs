//! The configuration files (`./jobdl.toml`, `$XDG_CONFIG_HOME/jobdl/config.toml`), their
//! precedence against flags and the environment, strict validation, and `jobdl config show`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::harness::{Run, TestEnv, files_under};
use crate::support::{TOKEN, standard_world};

/// A user configuration directory (`XDG_CONFIG_HOME`) of one test.
struct UserConfig {
    dir: TempDir,
}

impl UserConfig {
    fn new() -> UserConfig {
        UserConfig { dir: tempfile::Builder::new().prefix("jobdl-xdg-").tempdir().expect("xdg dir") }
    }

    /// Write `$XDG_CONFIG_HOME/jobdl/config.toml`.
    fn write(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("jobdl").join("config.toml");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write user config");
        path
    }

    fn command(&self, env: &TestEnv, args: &[&str]) -> Command {
        let mut cmd = env.command(args);
        cmd.env("XDG_CONFIG_HOME", self.dir.path());
        cmd
    }
}

/// Write `./jobdl.toml` in the child's working directory.
fn write_local(env: &TestEnv, text: &str) -> PathBuf {
    let path = env.work().join("jobdl.toml");
    std::fs::write(&path, text).expect("write jobdl.toml");
    path
}

fn setting<'a>(run: &'a Run, key: &str) -> &'a Value {
    let s = &run.doc()["settings"][key];
    assert!(!s.is_null(), "no setting {key}\n{run}");
    s
}

fn file_source(path: &Path, line: u64) -> Value {
    json!({"kind": "file", "path": path.display().to_string(), "line": line})
}

#[test]
fn config_show_names_where_each_setting_came_from() {
    let env = TestEnv::new(standard_world());
    let user = UserConfig::new();
    let local = write_local(&env, "# this project\nparallel = 3\nretries = 2\npoll_interval = \"20ms\"\n");
    let user_file = user.write("parallel = 5\nretries = 9\nlock_timeout = \"1s\"\ncolor = \"never\"\n");

    let mut cmd = user.command(&env, &["config", "show", "--json", "--retries", "4"]);
    cmd.env("AZURE_CLOUD", "AzureChinaCloud");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert_eq!(run.doc()["version"], 1);
    assert_eq!(setting(&run, "parallel")["value"], 3, "local file beats the user file\n{run}");
    assert_eq!(setting(&run, "parallel")["source"], file_source(&local, 2));
    assert_eq!(setting(&run, "retries")["value"], 4);
    assert_eq!(setting(&run, "retries")["source"], json!({"kind": "flag", "flag": "--retries"}));
    assert_eq!(setting(&run, "lock_timeout")["value"], "1s");
    assert_eq!(setting(&run, "lock_timeout")["source"], file_source(&user_file, 3));
    assert_eq!(setting(&run, "cloud")["value"], "AzureChinaCloud");
    assert_eq!(setting(&run, "cloud")["source"], json!({"kind": "env", "var": "AZURE_CLOUD"}));
    assert_eq!(setting(&run, "idle_timeout"), &json!({"value": "120s", "source": {"kind": "default"}}));
    // The harness sets JOBDL_POLL_INTERVAL; the contract lets the file win over it.
    assert_eq!(setting(&run, "poll_interval")["source"], file_source(&local, 4));
    // JOBDL_ALLOW_HOSTS (set by the harness) is reported as the environment's.
    assert_eq!(setting(&run, "allow_hosts")["value"], json!([env.emu.host_port()]));
    assert_eq!(setting(&run, "allow_hosts")["source"], json!({"kind": "env", "var": "JOBDL_ALLOW_HOSTS"}));
    // The token is only "set", never printed.
    assert_eq!(setting(&run, "access_token")["value"], "set");
    assert!(!run.all_output().contains(TOKEN), "the token was printed\n{run}");
    let files = run.doc()["files"].as_array().expect("files");
    assert_eq!(files[0], json!({"path": local.display().to_string(), "found": true}));
    assert_eq!(files[1], json!({"path": user_file.display().to_string(), "found": true}));

    // The environment beats both files; a flag beats the environment.
    let mut cmd = user.command(&env, &["config", "show", "--json"]);
    cmd.env("JOBDL_PARALLEL", "7");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert_eq!(setting(&run, "parallel")["value"], 7);
    assert_eq!(setting(&run, "parallel")["source"], json!({"kind": "env", "var": "JOBDL_PARALLEL"}));
    assert_eq!(setting(&run, "retries")["source"], file_source(&local, 3));
    let mut cmd = user.command(&env, &["config", "show", "--json", "--parallel", "6"]);
    cmd.env("JOBDL_PARALLEL", "7");
    let run = env.run_cmd(cmd);
    assert_eq!(setting(&run, "parallel")["source"], json!({"kind": "flag", "flag": "--parallel"}));

    // The table for people: key, value, source; the token as "unset" without JOBDL_ACCESS_TOKEN.
    let mut cmd = user.command(&env, &["config", "show"]);
    cmd.env_remove("JOBDL_ACCESS_TOKEN");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    let line = |key: &str| {
        run.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} row\n{run}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(line("parallel"), ["parallel", "3", "file", &format!("{}:2", local.display())]);
    assert_eq!(line("color"), ["color", "never", "file", &format!("{}:4", user_file.display())]);
    assert_eq!(line("access_token"), ["access_token", "unset", "unset"]);
    assert_eq!(line("workspace"), ["workspace", "-", "unset"]);
}

#[test]
fn the_user_file_falls_back_to_home_dot_config() {
    let env = TestEnv::new(standard_world());
    let run = env.run(&["config", "show", "--json"]);
    run.expect_code(0);
    let files = run.doc()["files"].as_array().expect("files");
    let user = files[1]["path"].as_str().expect("path");
    assert!(user.ends_with("/home/.config/jobdl/config.toml"), "{run}");
    assert_eq!(files[1]["found"], false);
    assert_eq!(setting(&run, "parallel"), &json!({"value": 8, "source": {"kind": "default"}}));
}

#[test]
fn the_files_locate_the_job_and_choose_the_destination() {
    let env = TestEnv::new(standard_world());
    let user = UserConfig::new();
    // Everything from files: the project endpoint, the allowed emulator host, the destination.
    write_local(
        &env,
        &format!("project_endpoint = \"{}\"\ndestination = \"./dl/{{job}}\"\n", env.emu.project_endpoint()),
    );
    user.write(&format!("allow_hosts = [\"{}\"]\nparallel = 2\n", env.emu.host_port()));
    let mut cmd = user.command(&env, &["download", "job-123", "--json"]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT").env_remove("JOBDL_ALLOW_HOSTS");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    let dest = env.work().join("dl").join("job-123");
    assert_eq!(run.doc()["destination"], dest.display().to_string(), "{run}");
    assert!(files_under(&dest).contains("artifacts/user_logs/std_log.txt"), "{run}");
    assert!(!env.dest("job-123").exists(), "the default destination was used\n{run}");

    // -p beats the template.
    let mut cmd = user.command(&env, &["download", "job-123", "--json", "-p", "elsewhere"]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT").env_remove("JOBDL_ALLOW_HOSTS");
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert_eq!(run.doc()["destination"], env.work().join("elsewhere").display().to_string());

    // Without the file's allow_hosts the emulator's host is refused: the file value was used.
    user.write("parallel = 2\n");
    let mut cmd = user.command(&env, &["show", "job-123", "--json"]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT").env_remove("JOBDL_ALLOW_HOSTS");
    let run = env.run_cmd(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains("project endpoint not allowed"), "{run}");
}

#[test]
fn invalid_files_fail_with_file_line_and_key() {
    let env = TestEnv::new(standard_world());
    let user = UserConfig::new();
    let local = write_local(&env, "parallel = 4\n\nparalel = 8\n");
    let run = env.run_cmd(user.command(&env, &["download", "job-123", "--json"]));
    run.expect_code(2);
    let msg = run.doc()["error"]["message"].as_str().expect("message").to_string();
    assert_eq!(run.doc()["error"]["code"], "usage");
    assert!(msg.starts_with(&format!("{}:3: unknown key 'paralel'", local.display())), "{run}");
    assert!(env.requests().is_empty(), "a request was sent before the configuration was valid");
    assert!(!env.dest("job-123").exists());

    // A wrong type in the user file names that file; `config show` fails the same way.
    std::fs::remove_file(&local).expect("rm");
    let user_file = user.write("[defaults]\n");
    let run = env.run_cmd(user.command(&env, &["config", "show"]));
    run.expect_code(2);
    assert!(run.stderr.contains(&format!("{}:1: unknown key 'defaults'", user_file.display())), "{run}");
    user.write("retries = \"many\"\n");
    let run = env.run_cmd(user.command(&env, &["ls", "job-123"]));
    run.expect_code(2);
    assert!(
        run.stderr.contains(&format!(
            "{}:1: key 'retries': expected an integer from 1 to 1000, found a string",
            user_file.display()
        )),
        "{run}"
    );
    user.write("idle_timeout = \"0s\"\n");
    let run = env.run_cmd(user.command(&env, &["cp", &env.emu.container_sas_url("azureml", ""), "out"]));
    run.expect_code(2);
    assert!(run.stderr.contains("key 'idle_timeout': must be more than 0"), "{run}");
    assert!(env.requests().is_empty());
}

#[test]
fn endpoint_and_workspace_from_different_layers_conflict() {
    let env = TestEnv::new(standard_world());
    let user = UserConfig::new();
    // The harness gives the project endpoint through the environment; the file adds a workspace.
    let user_file = user.write("subscription = \"sub\"\nworkspace = \"ws\"\n");
    let run = env.run_cmd(user.command(&env, &["show", "job-123"]));
    run.expect_code(2);
    assert!(run.stderr.contains("project_endpoint (env AZURE_AI_PROJECT_ENDPOINT)"), "{run}");
    assert!(run.stderr.contains(&format!("workspace (file {}:2)", user_file.display())), "{run}");
    assert!(env.requests().is_empty());
    let run = env.run_cmd(user.command(&env, &["config", "show", "--json"]));
    run.expect_code(2);
    assert_eq!(run.doc()["error"]["code"], "usage");

    // Both in one local file.
    user.write("parallel = 2\n");
    let local = write_local(
        &env,
        "workspace = \"ws\"\nproject_endpoint = \"https://a.services.ai.azure.com/api/projects/p\"\n",
    );
    let mut cmd = user.command(&env, &["download", "job-123"]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT");
    let run = env.run_cmd(cmd);
    run.expect_code(2);
    assert!(run.stderr.contains(&format!("project_endpoint (file {}:2)", local.display())), "{run}");
    assert!(run.stderr.contains(&format!("workspace (file {}:1)", local.display())), "{run}");
}

#[test]
fn max_rate_comes_from_the_flag_env_or_files_and_a_capped_download_completes() {
    let env = TestEnv::new(standard_world());
    let user = UserConfig::new();
    let local = write_local(&env, "max_rate = \"200M\"\n");
    let run = env.run_cmd(user.command(&env, &["config", "show", "--json"]));
    run.expect_code(0);
    assert_eq!(setting(&run, "max_rate")["value"], "200M", "{run}");
    assert_eq!(setting(&run, "max_rate")["source"], file_source(&local, 1));
    let mut cmd = user.command(&env, &["config", "show", "--json"]);
    cmd.env("JOBDL_MAX_RATE", "50MB");
    let run = env.run_cmd(cmd);
    assert_eq!(setting(&run, "max_rate")["source"], json!({"kind": "env", "var": "JOBDL_MAX_RATE"}), "{run}");

    for bad in ["0", "fast"] {
        let run = env.run(&["download", "job-123", "--max-rate", bad]);
        run.expect_code(2);
        assert!(run.stderr.contains("--max-rate"), "{run}");
    }
    // Under a cap far above the data, every file still arrives whole.
    let run = env.run(&["download", "job-123", "--max-rate", "1G", "--json"]);
    run.expect_code(0);
    assert_eq!(run.doc()["totals"]["failed"], 0, "{run}");
    assert!(files_under(&env.dest("job-123")).len() > 1, "{run}");
}

//! Flags + environment → one typed `Settings`. Bad input stops here with exit 2 and a message
//! naming the field. Every environment variable jobdl reads is named in this file.
use crate::cli::{JobArgs, TransferArgs};
use crate::error::Error;
use crate::hosts::{AllowList, Cloud};
use crate::provider::azureml::uri::WorkspaceRef;
use crate::retry::RetryConfig;
use crate::transfer::TransferConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Bearer token for every service call (CI, emulators).
pub const ENV_ACCESS_TOKEN: &str = "JOBDL_ACCESS_TOKEN";
/// Extra allowed hosts, comma-separated.
pub const ENV_ALLOW_HOSTS: &str = "JOBDL_ALLOW_HOSTS";
/// First `--wait` poll delay.
pub const ENV_POLL_INTERVAL: &str = "JOBDL_POLL_INTERVAL";
/// Retry backoff base.
pub const ENV_RETRY_BASE_DELAY: &str = "JOBDL_RETRY_BASE_DELAY";
/// Retry backoff cap.
pub const ENV_RETRY_MAX_DELAY: &str = "JOBDL_RETRY_MAX_DELAY";
/// Longest `Retry-After` honoured.
pub const ENV_RETRY_AFTER_CAP: &str = "JOBDL_RETRY_AFTER_CAP";

/// ARM base URL override (emulators, private clouds).
pub const ENV_ARM_ENDPOINT: &str = "JOBDL_ARM_ENDPOINT";
/// Path-style blob endpoint for workspace datastores (emulators).
pub const ENV_STORAGE_ENDPOINT: &str = "JOBDL_STORAGE_ENDPOINT";
/// The Azure CLI's configuration directory (default `~/.azure`).
pub const ENV_AZURE_CONFIG_DIR: &str = "AZURE_CONFIG_DIR";

/// MLflow: bearer token for the tracking server.
pub const ENV_MLFLOW_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";
/// MLflow: basic-auth user name (with [`ENV_MLFLOW_PASSWORD`]).
pub const ENV_MLFLOW_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
/// MLflow: basic-auth password.
pub const ENV_MLFLOW_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";
/// Databricks workspace URL (`databricks` tracking URI).
pub const ENV_DATABRICKS_HOST: &str = "DATABRICKS_HOST";
/// Databricks personal access token.
pub const ENV_DATABRICKS_TOKEN: &str = "DATABRICKS_TOKEN";
/// Databricks OAuth M2M client id (service principal).
pub const ENV_DATABRICKS_CLIENT_ID: &str = "DATABRICKS_CLIENT_ID";
/// Databricks OAuth M2M client secret.
pub const ENV_DATABRICKS_CLIENT_SECRET: &str = "DATABRICKS_CLIENT_SECRET";
/// Databricks configuration file (default `~/.databrickscfg`).
pub const ENV_DATABRICKS_CONFIG_FILE: &str = "DATABRICKS_CONFIG_FILE";
/// Databricks profile used by a bare `databricks` tracking URI (default `DEFAULT`).
pub const ENV_DATABRICKS_CONFIG_PROFILE: &str = "DATABRICKS_CONFIG_PROFILE";

/// Metadata calls get this many attempts.
pub const META_ATTEMPTS: u32 = 5;

/// Parse `90s`, `15m`, `2h`, `1h30m`, or a bare number of seconds.
pub fn parse_duration(s: &str, field: &str) -> Result<Duration, Error> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t)
        .map_err(|e| Error::usage(format!("invalid {field} '{s}': {e} (examples: 90s, 15m, 2h, 1h30m, 300)")))
}

fn env_duration(name: &str, default: Duration) -> Result<Duration, Error> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse_duration(&v, name),
        _ => Ok(default),
    }
}

/// Settings shared by every transferring command.
#[derive(Debug, Clone)]
pub struct Common {
    /// Engine settings (data retries, parallelism).
    pub transfer: TransferConfig,
    /// Metadata retry policy.
    pub meta_retry: RetryConfig,
    /// Idle timeout for reads.
    pub idle_timeout: Duration,
    /// How long to wait for the destination lock.
    pub lock_timeout: Duration,
    /// Host allow-list.
    pub allow: AllowList,
    /// `JOBDL_ACCESS_TOKEN`, if set.
    pub access_token: Option<String>,
    /// `--json`.
    pub json: bool,
    /// `-q`.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u8,
    /// First `--wait` poll delay.
    pub poll_interval: Duration,
}

impl Common {
    /// Resolve the shared settings.
    pub fn resolve(args: &TransferArgs, cloud: &str, skip_existing: bool) -> Result<Common, Error> {
        let cloud: Cloud = cloud.parse().map_err(|e: String| Error::usage(format!("invalid --cloud: {e}")))?;
        let parallel = args.parallel.unwrap_or(8);
        if parallel == 0 || parallel > 256 {
            return Err(Error::usage("--parallel must be between 1 and 256"));
        }
        let retries = args.retries.unwrap_or(10);
        if retries == 0 {
            return Err(Error::usage("--retries must be at least 1"));
        }
        let idle_timeout = match &args.idle_timeout {
            Some(s) => parse_duration(s, "--idle-timeout")?,
            None => Duration::from_secs(120),
        };
        if idle_timeout.is_zero() {
            return Err(Error::usage("--idle-timeout must be more than 0"));
        }
        let base = RetryConfig {
            attempts: retries,
            base_delay: env_duration(ENV_RETRY_BASE_DELAY, Duration::from_millis(500))?,
            max_delay: env_duration(ENV_RETRY_MAX_DELAY, Duration::from_secs(30))?,
            retry_after_cap: env_duration(ENV_RETRY_AFTER_CAP, Duration::from_secs(120))?,
        };
        let mut hosts: Vec<String> = args.allow_host.clone();
        if let Ok(v) = std::env::var(ENV_ALLOW_HOSTS) {
            hosts.extend(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
        }
        let allow = AllowList::new(cloud, &hosts).map_err(Error::Usage)?;
        Ok(Common {
            transfer: TransferConfig { parallel, retry: base.clone(), skip_existing, ..TransferConfig::default() },
            meta_retry: RetryConfig { attempts: META_ATTEMPTS.min(retries.max(1)).max(1), ..base },
            idle_timeout,
            lock_timeout: match &args.lock_timeout {
                Some(s) => parse_duration(s, "--lock-timeout")?,
                None => Duration::ZERO,
            },
            allow,
            access_token: std::env::var(ENV_ACCESS_TOKEN).ok(),
            json: args.json,
            quiet: args.quiet,
            verbose: args.verbose,
            poll_interval: env_duration(ENV_POLL_INTERVAL, Duration::from_secs(10))?,
        })
    }
}

/// Where the job lives.
#[derive(Debug, Clone, PartialEq)]
pub enum JobSource {
    /// A Foundry project endpoint (Path A), as given.
    Project(String),
    /// An Azure ML workspace through ARM (Path B).
    Workspace(WorkspaceRef),
    /// An MLflow tracking URI (`http(s)://…`, `databricks`, `databricks://PROFILE`), as given.
    Mlflow(String),
}

/// Values from the Azure CLI's configuration: `[defaults]` of `config` (`group`, `workspace`,
/// `subscription`) and the default subscription of `azureProfile.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AzureCliDefaults {
    /// Default subscription ID.
    pub subscription: Option<String>,
    /// `az configure --defaults group=...`.
    pub group: Option<String>,
    /// `az configure --defaults workspace=...`.
    pub workspace: Option<String>,
}

impl AzureCliDefaults {
    /// Read them from `$AZURE_CONFIG_DIR` (or `~/.azure`); missing or unreadable files give nothing.
    pub fn load() -> Self {
        let dir = match std::env::var_os(ENV_AZURE_CONFIG_DIR).filter(|v| !v.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => match std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE")) {
                Some(h) => PathBuf::from(h).join(".azure"),
                None => return Self::default(),
            },
        };
        let mut d = std::fs::read_to_string(dir.join("config")).map(|t| parse_cli_config(&t)).unwrap_or_default();
        if d.subscription.is_none() {
            d.subscription = std::fs::read(dir.join("azureProfile.json")).ok().and_then(|b| default_subscription(&b));
        }
        d
    }
}

/// The `[defaults]` section of an Azure CLI `config` file (INI; `#`/`;` comments).
pub fn parse_cli_config(text: &str) -> AzureCliDefaults {
    let mut out = AzureCliDefaults::default();
    let mut in_defaults = false;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') {
            in_defaults = l.trim_start_matches('[').trim_end_matches(']').trim().eq_ignore_ascii_case("defaults");
            continue;
        }
        if !in_defaults {
            continue;
        }
        let Some((k, v)) = l.split_once('=').or_else(|| l.split_once(':')) else { continue };
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match k.trim().to_ascii_lowercase().as_str() {
            "group" => out.group = Some(v.to_string()),
            "workspace" => out.workspace = Some(v.to_string()),
            "subscription" => out.subscription = Some(v.to_string()),
            _ => {}
        }
    }
    out
}

/// The `isDefault` subscription of an Azure CLI `azureProfile.json` (which may start with a BOM).
pub fn default_subscription(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?.trim_start_matches('\u{feff}');
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("subscriptions")?
        .as_array()?
        .iter()
        .find(|s| s.get("isDefault").and_then(serde_json::Value::as_bool) == Some(true))?
        .get("id")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Decide where the job lives: exactly one of the project endpoint and the workspace must
/// resolve. The Azure CLI defaults fill in workspace fields not given by flag or environment;
/// they never conflict with a project endpoint.
pub fn job_source(args: &JobArgs, cli: &AzureCliDefaults) -> Result<JobSource, Error> {
    let given = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(uri) = given(&args.mlflow_uri) {
        if given(&args.project_endpoint).is_some() || given(&args.workspace).is_some() {
            return Err(Error::usage(
                "an MLflow tracking URI (--mlflow-uri / MLFLOW_TRACKING_URI) and an Azure job source \
                 (--project-endpoint / --workspace) are both given; give only one",
            ));
        }
        return Ok(JobSource::Mlflow(uri));
    }
    if let Some(endpoint) = given(&args.project_endpoint) {
        if given(&args.workspace).is_some() {
            return Err(Error::usage(
                "both a project endpoint (--project-endpoint / AZURE_AI_PROJECT_ENDPOINT) and an Azure ML workspace \
                 (--workspace / AZUREML_WORKSPACE_NAME) are given; give only one",
            ));
        }
        return Ok(JobSource::Project(endpoint));
    }
    let sub = given(&args.subscription).or_else(|| cli.subscription.clone());
    let rg = given(&args.resource_group).or_else(|| cli.group.clone());
    let ws = given(&args.workspace).or_else(|| cli.workspace.clone());
    if let (Some(subscription), Some(resource_group), Some(workspace)) = (&sub, &rg, &ws) {
        return Ok(JobSource::Workspace(WorkspaceRef {
            subscription: subscription.clone(),
            resource_group: resource_group.clone(),
            workspace: workspace.clone(),
        }));
    }
    let mut missing = Vec::new();
    if sub.is_none() {
        missing.push("--subscription/-s (AZURE_SUBSCRIPTION_ID)");
    }
    if rg.is_none() {
        missing.push("--resource-group/-g (AZURE_RESOURCE_GROUP)");
    }
    if ws.is_none() {
        missing.push("--workspace/-w (AZUREML_WORKSPACE_NAME)");
    }
    if rg.is_some() || ws.is_some() {
        return Err(Error::usage(format!("incomplete Azure ML workspace: missing {}", missing.join(", "))));
    }
    Err(Error::usage(format!(
        "no job source: pass --project-endpoint URL (AZURE_AI_PROJECT_ENDPOINT) for an Azure AI Foundry project, \
         an Azure ML workspace (missing {}), or --mlflow-uri URL (MLFLOW_TRACKING_URI) for an MLflow run",
        missing.join(", ")
    )))
}

/// An optional URL from the environment (`None` when unset or empty; exit 2 when malformed).
pub fn env_url(name: &str) -> Result<Option<url::Url>, Error> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => url::Url::parse(v.trim())
            .map(Some)
            .map_err(|e| Error::usage(format!("invalid {name} '{}': {e}", crate::redact::redact(v.trim())))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(argv: &[&str]) -> JobArgs {
        let mut full = vec!["jobdl", "download", "job-1"];
        full.extend_from_slice(argv);
        match crate::cli::Cli::try_parse_from(full).unwrap().command {
            crate::cli::Command::Download(a) => a.target,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cli_config_defaults() {
        let text = "[core]\noutput = json\n[defaults]\n# comment\ngroup = rg-1\nworkspace=ws-1\nlocation = eastus\n[cloud]\nname = AzureCloud\n";
        let d = parse_cli_config(text);
        assert_eq!(
            d,
            AzureCliDefaults { subscription: None, group: Some("rg-1".into()), workspace: Some("ws-1".into()) }
        );
        assert_eq!(parse_cli_config("group = x\n"), AzureCliDefaults::default());
        let profile = "\u{feff}{\"subscriptions\": [{\"id\": \"a\", \"isDefault\": false}, {\"id\": \"b\", \"isDefault\": true}]}";
        assert_eq!(default_subscription(profile.as_bytes()).as_deref(), Some("b"));
        assert_eq!(default_subscription(b"{}"), None);
    }

    #[test]
    fn exactly_one_source() {
        let none = AzureCliDefaults::default();
        let ws = |s: &str, g: &str, w: &str| {
            JobSource::Workspace(WorkspaceRef { subscription: s.into(), resource_group: g.into(), workspace: w.into() })
        };
        assert_eq!(job_source(&args(&["-s", "sub", "-g", "rg", "-w", "ws"]), &none).unwrap(), ws("sub", "rg", "ws"));
        assert_eq!(
            job_source(&args(&["--project-endpoint", "https://a.services.ai.azure.com/api/projects/p"]), &none)
                .unwrap(),
            JobSource::Project("https://a.services.ai.azure.com/api/projects/p".into())
        );
        let e = job_source(&args(&["--project-endpoint", "https://x/api/projects/p", "-w", "ws"]), &none).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("give only one"), "{e}");
        let e = job_source(&args(&["-g", "rg"]), &none).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("missing --subscription/-s (AZURE_SUBSCRIPTION_ID), --workspace/-w"), "{e}");
        let e = job_source(&args(&[]), &none).unwrap_err();
        assert!(e.to_string().contains("--project-endpoint") && e.to_string().contains("--resource-group/-g"), "{e}");
        // Azure CLI defaults fill the gaps, and never fight a project endpoint.
        let cli = AzureCliDefaults {
            subscription: Some("s0".into()),
            group: Some("g0".into()),
            workspace: Some("w0".into()),
        };
        assert_eq!(job_source(&args(&[]), &cli).unwrap(), ws("s0", "g0", "w0"));
        assert_eq!(job_source(&args(&["-w", "w1"]), &cli).unwrap(), ws("s0", "g0", "w1"));
        assert!(matches!(
            job_source(&args(&["--project-endpoint", "https://x/api/projects/p"]), &cli).unwrap(),
            JobSource::Project(_)
        ));
        // An MLflow tracking URI is a source of its own; Azure CLI defaults never fight it.
        assert_eq!(
            job_source(&args(&["--mlflow-uri", "http://127.0.0.1:5000"]), &cli).unwrap(),
            JobSource::Mlflow("http://127.0.0.1:5000".into())
        );
        let e = job_source(&args(&["--mlflow-uri", "databricks", "-w", "ws"]), &none).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("give only one"), "{e}");
        let only_sub = AzureCliDefaults { subscription: Some("s0".into()), ..Default::default() };
        let e = job_source(&args(&[]), &only_sub).unwrap_err();
        assert!(e.to_string().starts_with("no job source"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s", "x").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m", "x").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h30m", "x").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("300", "x").unwrap(), Duration::from_secs(300));
        let e = parse_duration("soon", "--timeout").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--timeout"));
    }
}

//! Flags + environment + configuration files → one typed `Settings`. Bad input stops here with
//! exit 2 and a message naming the field. Environment variables are named in [`crate::env`].
//!
//! Precedence, per key of [`crate::config::KEYS`]: flag, then environment, then `./jobdl.toml`,
//! then the user file, then the built-in default; for the timing knobs (`JOBDL_POLL_INTERVAL`, `JOBDL_RETRY_*`), which have no
//! flag, the files rank above the environment. Flag and environment are told apart with
//! `ArgMatches::value_source` (clap's `env =` merges them into one field).
use crate::cli::TransferArgs;
use crate::config::{Files, KEYS, Key, Value};
use crate::env;
use crate::env::{JOBDL_CHUNK_SIZE, JOBDL_MIN_SPEED_TIME};
use crate::error::Error;
use crate::hosts::{AllowList, Cloud};
use crate::provider::azureml::uri::WorkspaceRef;
use crate::retry::RetryConfig;
use crate::transfer::TransferConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Bounds of `chunk_size`.
const MIN_CHUNK_SIZE: u64 = 64 << 10;
const MAX_CHUNK_SIZE: u64 = 256 << 20;
/// Default of `max_list_entries`: far above any real job, low enough to bound memory.
pub const DEFAULT_MAX_LIST_ENTRIES: usize = 1_000_000;

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

/// Parse a size: a whole number of bytes, or a number with a unit, `B`, `KiB`, `MiB`, `GiB`,
/// `TiB` (powers of 1024) or `kB`, `MB`, `GB`, `TB` (powers of 1000), case-insensitive, e.g.
/// `64MiB`, `1 TiB`, `1.5GiB`.
pub fn parse_size(s: &str, field: &str) -> Result<u64, Error> {
    let t = s.trim();
    let bad = || Error::usage(format!("invalid {field} '{s}': expected a size such as 1KiB, 64MiB, 1TiB or 4096"));
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(bad);
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    let bytes = f * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// The built-in default of setting `name` as the key table ([`KEYS`]) states it (what `config
/// show` prints and what [`Resolved`] falls back to).
#[cfg(test)]
fn table_default(name: &str) -> &'static str {
    KEYS.iter().find(|k| k.name == name).and_then(|k| k.default).unwrap_or("")
}

/// [`table_default`] of a duration setting.
#[cfg(test)]
fn default_duration(name: &str) -> Duration {
    parse_duration(table_default(name), name).unwrap_or_default()
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
    /// Plain progress lines (stderr not a terminal): at most one per this interval.
    pub progress_interval: Duration,
    /// The decoded-bytes ceilings of one archive (KFP v1 `:read` artifacts).
    pub archive_limits: crate::transfer::Limits,
    /// Most entries one listing may hold before it fails (`max_list_entries`).
    pub max_list_entries: usize,
    /// `--overwrite`: replace local files that differ from jobdl's record or from the service.
    pub overwrite: bool,
}

/// The output flags of a command (never in a configuration file).
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    /// `--json`.
    pub json: bool,
    /// `-q`.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u8,
}

impl From<&TransferArgs> for Output {
    fn from(t: &TransferArgs) -> Self {
        Output { json: t.json, quiet: t.quiet, verbose: t.verbose }
    }
}

/// Where a job lives, as flags, environment and files set it (each value as given; a pasted
/// job URL replaces them, see [`crate::jobref::JobRef::apply`]). [`job_source`] decides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceSettings {
    /// `project_endpoint`.
    pub project_endpoint: Option<String>,
    /// `subscription`.
    pub subscription: Option<String>,
    /// `resource_group`.
    pub resource_group: Option<String>,
    /// `workspace`.
    pub workspace: Option<String>,
    /// `mlflow_uri`.
    pub mlflow_uri: Option<String>,
    /// `kfp_endpoint`.
    pub kfp_endpoint: Option<String>,
    /// `kfp_namespace`.
    pub kfp_namespace: Option<String>,
}

/// Every setting of a command, resolved in one pass from [`Resolved`] (flags, environment,
/// configuration files, defaults of [`KEYS`]) and the command's own flags. The app and the
/// providers read these values, never the keyed clap arguments.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Transfer, retry, limit and output settings.
    pub common: Common,
    /// `cloud`.
    pub cloud: Cloud,
    /// Where the job lives.
    pub source: SourceSettings,
    /// `destination` when a configuration file sets it (the template, `{job}` unexpanded).
    pub destination: Option<String>,
    /// The `AWS_*` environment variables (S3 region and credentials, read when S3 is first used).
    pub aws_env: Vec<(String, String)>,
    /// The home directory (`~/.aws/credentials`, `~/.databrickscfg`, `~` in `destination`).
    pub home: Option<PathBuf>,
}

impl Resolved {
    /// The value of key `name` and the name its errors give it: the flag or variable it came from,
    /// else the key (with the file and line when a file set it).
    fn text(&self, name: &str) -> Option<(String, String)> {
        let s = self.get(name)?;
        let field = match &s.source {
            Source::Flag(f) => (*f).to_string(),
            Source::Env(e) => (*e).to_string(),
            Source::File { .. } => format!("{name} ({})", s.source),
            Source::Default => name.to_string(),
        };
        s.value.as_ref().map(|v| (v.text(), field))
    }

    /// The value of `name` parsed with `parse` (which names the field in its error), or `None`.
    fn parsed<T>(&self, name: &str, parse: impl Fn(&str, &str) -> Result<T, Error>) -> Result<Option<T>, Error> {
        self.text(name).map(|(v, field)| parse(&v, &field)).transpose()
    }

    /// A duration setting; every duration key has a default.
    fn duration(&self, name: &str) -> Result<Duration, Error> {
        Ok(self.parsed(name, parse_duration)?.unwrap_or_default())
    }

    /// A size setting; `default` when unset.
    fn size(&self, name: &str, default: u64) -> Result<u64, Error> {
        Ok(self.parsed(name, parse_size)?.unwrap_or(default))
    }

    /// Whether `name` came from its environment variable.
    fn set_by_env(&self, name: &str) -> bool {
        self.get(name).is_some_and(|s| matches!(s.source, Source::Env(_)))
    }

    /// One text setting as given (`None`: unset).
    fn given(&self, name: &str) -> Option<String> {
        self.text(name).map(|(v, _)| v)
    }
}

/// `color` (`--color`, or a file's `color`; both are checked words).
pub fn color(r: &Resolved) -> Option<crate::cli::ColorWhen> {
    r.given("color").and_then(|c| <crate::cli::ColorWhen as clap::ValueEnum>::from_str(&c, true).ok())
}

/// A whole number within `min..=max`, or the error `bad` gives for it.
fn whole(v: &str, min: u64, max: u64, bad: impl Fn() -> Error) -> Result<u64, Error> {
    v.trim().parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(bad)
}

impl Settings {
    /// The one pass: every key of `r` checked and typed, with the command's output flags and
    /// `--overwrite`. `env` reads the variables that are no key (`JOBDL_ACCESS_TOKEN`,
    /// `JOBDL_ALLOW_HOSTS` added to the hosts of flags or files, `JOBDL_PROGRESS_INTERVAL`, the
    /// home directory); the `AWS_*` variables are taken from the process as they are. Exit 2
    /// naming the flag, variable or file:line of a bad value.
    pub fn resolve(
        r: &Resolved,
        output: Output,
        overwrite: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, Error> {
        let cloud_name = r.given("cloud").unwrap_or_else(|| crate::hosts::Cloud::DEFAULT_NAME.to_string());
        let cloud: Cloud = cloud_name.parse().map_err(|e: String| Error::usage(format!("invalid --cloud: {e}")))?;
        let common = common(r, cloud, output, overwrite, env)?;
        let destination = r
            .get("destination")
            .filter(|s| matches!(s.source, Source::File { .. }))
            .and_then(|s| s.value.as_ref())
            .map(Value::text);
        let source = SourceSettings {
            project_endpoint: r.given("project_endpoint"),
            subscription: r.given("subscription"),
            resource_group: r.given("resource_group"),
            workspace: r.given("workspace"),
            mlflow_uri: r.given("mlflow_uri"),
            kfp_endpoint: r.given("kfp_endpoint"),
            kfp_namespace: r.given("kfp_namespace"),
        };
        let home = env(env::HOME).or_else(|| env(env::USERPROFILE)).filter(|h| !h.is_empty()).map(PathBuf::from);
        Ok(Settings { common, cloud, source, destination, aws_env: aws_env(), home })
    }

    /// The destination of `job` when `-p` is not `given`: the configured template expanded.
    pub fn path(&self, given: Option<&std::path::Path>, job: &str) -> Option<PathBuf> {
        given.map(std::path::Path::to_path_buf).or_else(|| {
            let t = self.destination.as_deref()?;
            Some(crate::config::expand_destination(t, job, self.home.as_deref()))
        })
    }

    /// The S3 settings of `args` (resolved into an [`crate::s3::S3Config`] when first used).
    pub fn s3(&self, args: &crate::cli::S3Args) -> S3Settings {
        S3Settings {
            endpoint: args.s3_endpoint.clone(),
            region: args.s3_region.clone(),
            allow_http: args.allow_http,
            aws_env: self.aws_env.clone(),
            home: self.home.clone(),
        }
    }

    /// The Kubeflow API token: `--kfp-token-file`'s, else `JOBDL_ACCESS_TOKEN`, with where it came
    /// from (named when the API refuses it). Exit 2 when the file is unreadable or holds no token.
    pub fn kfp_token(&self, file: Option<&std::path::Path>) -> Result<Option<(String, String)>, Error> {
        match file {
            Some(path) => Ok(Some((read_token_file(path)?, format!("--kfp-token-file {}", path.display())))),
            None => Ok(self.common.access_token.clone().map(|t| (t, env::JOBDL_ACCESS_TOKEN.to_string()))),
        }
    }
}

/// The KFP bearer token from `--kfp-token-file` (trimmed; exit 2 when unreadable or empty).
fn read_token_file(path: &std::path::Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("cannot read --kfp-token-file {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() || token.contains(['\n', '\r']) {
        return Err(Error::usage(format!("--kfp-token-file {} does not hold one token", path.display())));
    }
    Ok(token.to_string())
}

/// The transfer, retry, limit and output settings of [`Settings::resolve`].
fn common(
    r: &Resolved,
    cloud: Cloud,
    output: Output,
    overwrite: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Common, Error> {
    let defaults = TransferConfig::default();
    let bad_int = |field: &str, v: &str, range: &str| {
        Error::usage(format!("invalid {field} '{v}': expected an integer from {range}"))
    };
    // A fixed --parallel is kept as given; by default the budget starts at 8 and may climb
    // (transfer::adapt explains the numbers).
    let given_parallel = r.get("parallel").is_some_and(|s| s.source != Source::Default);
    let parallel = r
        .parsed("parallel", |v, f| v.trim().parse::<usize>().map_err(|_| bad_int(f, v, "1 to 256")))?
        .unwrap_or(defaults.parallel);
    let max_parallel =
        if given_parallel { parallel } else { connection_ceiling(defaults.max_parallel).max(defaults.parallel) };
    if parallel == 0 || parallel > 256 {
        return Err(Error::usage("--parallel must be between 1 and 256"));
    }
    let retries = r.parsed("retries", |v, f| v.trim().parse::<u32>().map_err(|_| bad_int(f, v, "1 to 1000")))?;
    let retries = retries.unwrap_or(1);
    if retries == 0 {
        return Err(Error::usage("--retries must be at least 1"));
    }
    let idle_timeout = r.duration("idle_timeout")?;
    if idle_timeout.is_zero() {
        return Err(Error::usage("--idle-timeout must be more than 0"));
    }
    let base = RetryConfig {
        attempts: retries,
        base_delay: r.duration("retry_base_delay")?,
        max_delay: r.duration("retry_max_delay")?,
        retry_after_cap: r.duration("retry_after_cap")?,
    };
    // `JOBDL_ALLOW_HOSTS` adds to the hosts of the flags or the files.
    let mut hosts: Vec<String> = match r.get("allow_hosts").and_then(|s| s.value.as_ref()) {
        Some(Value::Many(h)) => h.clone(),
        Some(Value::One(h)) => vec![h.clone()],
        None => Vec::new(),
    };
    if !r.set_by_env("allow_hosts")
        && let Some(v) = env(env::JOBDL_ALLOW_HOSTS)
    {
        hosts.extend(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
    }
    let allow = AllowList::new(cloud, &hosts).map_err(Error::Usage)?;
    let min_rate = crate::transfer::rate::MinRate {
        bytes_per_sec: r.size("min_speed", defaults.min_rate.bytes_per_sec)?,
        window: r.parsed("min_speed_time", parse_duration)?.unwrap_or(defaults.min_rate.window),
    };
    if min_rate.window.is_zero() {
        return Err(Error::usage(format!("{JOBDL_MIN_SPEED_TIME} must be more than 0")));
    }
    let max_rate = match r.parsed("max_rate", parse_size)? {
        Some(0) => return Err(Error::usage("--max-rate must be more than 0 (leave it out for no cap)")),
        m => m,
    };
    let chunk_size = r.size("chunk_size", defaults.chunk_size)?;
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(Error::usage(format!("{JOBDL_CHUNK_SIZE} must be between 64KiB and 256MiB")));
    }
    let archive = crate::transfer::Limits::default();
    let archive_limits = crate::transfer::Limits {
        max_ratio: r
            .parsed("archive_max_ratio", |v, f| {
                whole(v, 0, 1_000_000, || {
                    Error::usage(format!("invalid {f} '{v}': expected an integer from 0 to 1000000"))
                })
            })?
            .unwrap_or(archive.max_ratio),
        max_bytes: r.size("archive_max_bytes", archive.max_bytes)?,
    };
    let max_list_entries = r
        .parsed("max_list_entries", |v, f| {
            whole(v, 1, u64::MAX, || Error::usage(format!("invalid {f} '{v}': expected a whole number from 1")))
        })?
        .map_or(DEFAULT_MAX_LIST_ENTRIES, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let progress_interval = match env(env::JOBDL_PROGRESS_INTERVAL) {
        Some(v) if !v.trim().is_empty() => parse_duration(&v, env::JOBDL_PROGRESS_INTERVAL)?,
        _ => Duration::from_secs(10),
    };
    Ok(Common {
        archive_limits,
        transfer: TransferConfig {
            parallel,
            max_parallel,
            retry: base.clone(),
            min_rate,
            max_rate,
            // Files of more than four chunks are fetched in chunks.
            chunk_threshold: chunk_size.saturating_mul(4),
            chunk_size,
        },
        meta_retry: RetryConfig { attempts: META_ATTEMPTS.min(retries.max(1)).max(1), ..base },
        idle_timeout,
        lock_timeout: r.duration("lock_timeout")?,
        allow,
        access_token: env(env::JOBDL_ACCESS_TOKEN),
        json: output.json,
        quiet: output.quiet,
        verbose: output.verbose,
        poll_interval: r.duration("poll_interval")?,
        progress_interval,
        max_list_entries,
        overwrite,
    })
}

/// S3 settings as given (resolved by [`S3Settings::config`] when the objects are first needed,
/// so `show` of a running Kubeflow run needs no S3 credentials).
#[derive(Clone, Default)]
pub struct S3Settings {
    /// `--s3-endpoint` / `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// `--s3-region`.
    pub region: Option<String>,
    /// `--allow-http`.
    pub allow_http: bool,
    /// The `AWS_*` environment variables as the run started (the credentials among them).
    pub aws_env: Vec<(String, String)>,
    /// The home directory (for `~/.aws/credentials`).
    pub home: Option<PathBuf>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("aws_env", &self.aws_env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// The endpoint, region and credentials ([`s3_config`]).
    pub fn config(&self) -> Result<crate::s3::S3Config, Error> {
        s3_config(
            self.endpoint.as_deref(),
            self.region.as_deref(),
            self.allow_http,
            &|k| self.aws_env.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone()),
            self.home.as_deref(),
        )
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
    /// A Kubeflow Pipelines API base, as given.
    Kfp(String),
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
        let dir = match crate::env::var_os(env::AZURE_CONFIG_DIR).filter(|v| !v.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => match home_dir() {
                Some(h) => h.join(".azure"),
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
pub fn job_source(source: &SourceSettings, cli: &AzureCliDefaults) -> Result<JobSource, Error> {
    let given = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(kfp) = given(&source.kfp_endpoint) {
        let other = [
            (&source.mlflow_uri, "an MLflow tracking URI (--mlflow-uri / MLFLOW_TRACKING_URI)"),
            (&source.project_endpoint, "a project endpoint (--project-endpoint / AZURE_AI_PROJECT_ENDPOINT)"),
            (&source.workspace, "an Azure ML workspace (--workspace / AZUREML_WORKSPACE_NAME)"),
        ];
        if let Some((_, what)) = other.iter().find(|(v, _)| given(v).is_some()) {
            return Err(Error::usage(format!(
                "a Kubeflow Pipelines endpoint (--kfp-endpoint / KF_PIPELINES_ENDPOINT) and {what} are both given; \
                 give only one"
            )));
        }
        return Ok(JobSource::Kfp(kfp));
    }
    if let Some(uri) = given(&source.mlflow_uri) {
        if given(&source.project_endpoint).is_some() || given(&source.workspace).is_some() {
            return Err(Error::usage(
                "an MLflow tracking URI (--mlflow-uri / MLFLOW_TRACKING_URI) and an Azure job source \
                 (--project-endpoint / --workspace) are both given; give only one",
            ));
        }
        return Ok(JobSource::Mlflow(uri));
    }
    if let Some(endpoint) = given(&source.project_endpoint) {
        if given(&source.workspace).is_some() {
            return Err(Error::usage(
                "both a project endpoint (--project-endpoint / AZURE_AI_PROJECT_ENDPOINT) and an Azure ML workspace \
                 (--workspace / AZUREML_WORKSPACE_NAME) are given; give only one",
            ));
        }
        return Ok(JobSource::Project(endpoint));
    }
    let sub = given(&source.subscription).or_else(|| cli.subscription.clone());
    let rg = given(&source.resource_group).or_else(|| cli.group.clone());
    let ws = given(&source.workspace).or_else(|| cli.workspace.clone());
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
    match env::var(name) {
        Some(v) if !v.trim().is_empty() => url::Url::parse(v.trim())
            .map(Some)
            .map_err(|e| Error::usage(format!("invalid {name} '{}': {e}", crate::redact::redact(v.trim())))),
        _ => Ok(None),
    }
}

/// The scheduler variable pairs `--shard auto` reads, in order: (index, count).
pub const SHARD_ENV_PAIRS: [(&str, &str); 3] = [
    (env::JOB_COMPLETION_INDEX, env::JOBDL_SHARD_COUNT),
    (crate::env::RANK, crate::env::WORLD_SIZE),
    (crate::env::SLURM_PROCID, crate::env::SLURM_NTASKS),
];

/// Resolve `--shard`: `K/N` as given, or `auto`: the first pair of [`SHARD_ENV_PAIRS`] whose two
/// variables are both set (Kubernetes indexed Job, torchrun, Slurm). The environment is read only
/// for `auto`, so a `RANK` set for a training script never splits a plain download. Exit 2 on a
/// malformed value, or on `auto` when no pair is set.
pub fn shard(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<crate::shard::Shard>, Error> {
    let Some(flag) = flag.map(str::trim) else { return Ok(None) };
    if !flag.eq_ignore_ascii_case("auto") {
        return crate::shard::Shard::parse(flag).map(Some);
    }
    let get = |n: &str| env(n).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    for (index, count) in SHARD_ENV_PAIRS {
        if let (Some(k), Some(n)) = (get(index), get(count)) {
            return crate::shard::Shard::new(&k, &n, &format!("from {index}/{count}")).map(Some);
        }
    }
    let pairs: Vec<String> = SHARD_ENV_PAIRS.iter().map(|(k, n)| format!("{k} + {n}")).collect();
    Err(Error::usage(format!(
        "--shard auto found no scheduler variables (it reads {}, each pair only when both are set); give \
         --shard K/N instead",
        pairs.join(", ")
    )))
}

/// Where a resolved setting came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A command-line flag (as typed, e.g. `--parallel`).
    Flag(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// A configuration file and the line of the key.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// The built-in default (or unset when the key has none).
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag(name) => write!(f, "flag {name}"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File { path, line } => write!(f, "file {}:{line}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// One key after merging every layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The key.
    pub key: &'static Key,
    /// Its value (`None`: unset).
    pub value: Option<Value>,
    /// Where the value came from.
    pub source: Source,
}

/// Every key of [`KEYS`] resolved, and the files that were read.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// One entry per key, in [`KEYS`] order.
    pub settings: Vec<Setting>,
    /// The configuration files.
    pub files: Files,
}

/// Values given on the command line or through clap's `env =`, by key name.
pub type ArgLayer = std::collections::BTreeMap<&'static str, (Value, Source)>;

/// The flag and clap-environment values of a parsed (sub)command, told apart by
/// `ArgMatches::value_source`; clap defaults count as not given.
pub fn arg_layer(m: &clap::ArgMatches) -> ArgLayer {
    let mut out = ArgLayer::new();
    for key in KEYS {
        let Some((id, shown)) = key.flag else { continue };
        // `try_get_raw` is `Err` for an argument this command does not define.
        let Ok(Some(raw)) = m.try_get_raw(id) else { continue };
        let items: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
        let source = match m.value_source(id) {
            Some(clap::parser::ValueSource::CommandLine) => Source::Flag(shown),
            Some(clap::parser::ValueSource::EnvVariable) => match key.env {
                Some(env) => Source::Env(env),
                None => continue,
            },
            _ => continue,
        };
        let value = if key.kind == crate::config::Kind::Hosts {
            Value::Many(items)
        } else {
            match items.into_iter().next() {
                Some(v) => Value::One(v),
                None => continue,
            }
        };
        out.insert(key.name, (value, source));
    }
    out
}

/// Merge the layers of every key. `env` reads an environment variable (injected for tests); it is
/// consulted for keys whose variable clap does not read for this command.
pub fn resolve(args: &ArgLayer, files: Files, env: &dyn Fn(&str) -> Option<String>) -> Resolved {
    let settings = KEYS
        .iter()
        .map(|key| {
            let given = args.get(key.name);
            let flag = given.filter(|(_, s)| matches!(s, Source::Flag(_))).cloned();
            let from_env = given.filter(|(_, s)| matches!(s, Source::Env(_))).cloned().or_else(|| {
                let name = key.env?;
                let v = env(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())?;
                let value = if key.kind == crate::config::Kind::Hosts {
                    Value::Many(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                } else {
                    Value::One(v)
                };
                Some((value, Source::Env(name)))
            });
            let from_file = files.layers().find_map(|f| {
                f.values.get(key.name).map(|v| (v.value.clone(), Source::File { path: f.path.clone(), line: v.line }))
            });
            let chosen =
                if key.env_below_files { flag.or(from_file).or(from_env) } else { flag.or(from_env).or(from_file) };
            match chosen {
                Some((value, source)) => Setting { key, value: Some(value), source },
                None => Setting { key, value: key.default.map(|d| Value::One(d.to_string())), source: Source::Default },
            }
        })
        .collect();
    Resolved { settings, files }
}

impl Resolved {
    /// The setting of `name` (a key of [`KEYS`]).
    pub fn get(&self, name: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key.name == name)
    }

    /// Reject settings that contradict each other after merging: a Foundry project endpoint and
    /// an Azure ML workspace, from whichever layers they came.
    pub fn check_conflicts(&self) -> Result<(), Error> {
        let set = |n: &str| self.get(n).filter(|s| s.value.is_some());
        if let (Some(p), Some(w)) = (set("project_endpoint"), set("workspace")) {
            return Err(Error::usage(format!(
                "conflicting settings: project_endpoint ({}) and workspace ({}) are both set; a job lives in an \
                 Azure AI Foundry project or in an Azure ML workspace, give only one",
                p.source, w.source
            )));
        }
        if let Some(k) = set("kfp_endpoint")
            && let Some(o) = set("mlflow_uri").or_else(|| set("project_endpoint")).or_else(|| set("workspace"))
        {
            return Err(Error::usage(format!(
                "conflicting settings: kfp_endpoint ({}) and another job source ({}) are both set; give only one",
                k.source, o.source
            )));
        }
        if let Some(m) = set("mlflow_uri")
            && let Some(a) = set("project_endpoint").or_else(|| set("workspace"))
        {
            return Err(Error::usage(format!(
                "conflicting settings: mlflow_uri ({}) and an Azure job source ({}) are both set; give only one",
                m.source, a.source
            )));
        }
        Ok(())
    }
}

/// The user's home directory (`HOME`, else `USERPROFILE`).
pub fn home_dir() -> Option<PathBuf> {
    crate::env::var_os(crate::env::HOME).or_else(|| crate::env::var_os(crate::env::USERPROFILE)).map(PathBuf::from)
}

/// The `AWS_*` environment variables, read once for a provider that resolves S3 later.
pub fn aws_env() -> Vec<(String, String)> {
    env::vars_with_prefix(env::AWS_PREFIX)
}

impl Settings {
    /// The MLflow target of `--mlflow-uri` / `MLFLOW_TRACKING_URI` (`raw`), read with the access
    /// token, the process environment, the home directory and the Databricks configuration file
    /// it names.
    pub fn mlflow_target(&self, raw: &str) -> Result<crate::provider::mlflow::Target, Error> {
        let env = |k: &str| crate::env::var(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let token = self.common.access_token.clone();
        crate::provider::mlflow::resolve_target_with(raw, token, &env, self.home.clone(), &|p| {
            std::fs::read_to_string(p)
        })
    }
}

/// Resolve the S3 settings of `cp s3://` (contract: S3-compatible storage): the endpoint
/// (`--s3-endpoint` / `AWS_ENDPOINT_URL`, checked by [`crate::hosts::check_s3_endpoint`]), the
/// region (`--s3-region` / `AWS_REGION` / `AWS_DEFAULT_REGION`, default `us-east-1`) and the
/// credentials ([`crate::s3::creds::resolve`]). `env` reads an environment variable; `home` is
/// the home directory. Exit 2 on a bad endpoint or region, exit 3 without usable credentials.
pub fn s3_config(
    endpoint: Option<&str>,
    region: Option<&str>,
    allow_http: bool,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&std::path::Path>,
) -> Result<crate::s3::S3Config, Error> {
    let given = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let endpoint = match given(endpoint.map(str::to_string)) {
        Some(raw) => {
            let url = url::Url::parse(&raw).map_err(|e| {
                Error::usage(format!("invalid --s3-endpoint / AWS_ENDPOINT_URL '{}': {e}", crate::redact::redact(&raw)))
            })?;
            crate::hosts::check_s3_endpoint(&url, allow_http).map_err(Error::Usage)?;
            Some(url)
        }
        None => None,
    };
    let region = given(region.map(str::to_string))
        .or_else(|| given(env(crate::env::AWS_REGION)))
        .or_else(|| given(env(crate::env::AWS_DEFAULT_REGION)))
        .unwrap_or_else(|| crate::s3::DEFAULT_REGION.to_string());
    if region.len() > 64 || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Error::usage(format!("invalid S3 region '{}'", region.escape_debug())));
    }
    let hint = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys), \
                or a [profile] in ~/.aws/credentials named by AWS_PROFILE";
    let credentials = match crate::s3::creds::resolve(env, home) {
        Ok(Some((c, source))) => {
            crate::log::log(1, format!("S3 credentials: access key {} from {source:?}", c.key()));
            c
        }
        Ok(None) => {
            return Err(Error::Auth { message: "no S3 credentials found".into(), hint: hint.into() });
        }
        Err(e) => return Err(Error::Auth { message: format!("unusable S3 credentials: {e}"), hint: hint.into() }),
    };
    Ok(crate::s3::S3Config { endpoint, region, credentials })
}

/// The most connections the budget may climb to: `most`, or fewer when the open-file limit is
/// low. Each connection is a socket and may hold a part file, and as many files wait ready to send:
/// a quarter of the limit leaves room for the rest. The soft limit is raised towards the hard one
/// (at most 8192) first, as the hard limit allows any process to.
fn connection_ceiling(most: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    const WANT: u64 = 8192;
    let lim = getrlimit(Resource::Nofile);
    let mut soft = lim.current.unwrap_or(WANT);
    if soft < WANT {
        let target = lim.maximum.map_or(WANT, |hard| hard.min(WANT));
        if target > soft && setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: lim.maximum }).is_ok()
        {
            soft = target;
        }
    }
    usize::try_from(soft / 4).unwrap_or(most).min(most)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_table_states_the_defaults_that_are_used() {
        // Every stated default parses as its kind says.
        for k in KEYS {
            let Some(d) = k.default else { continue };
            match k.kind {
                crate::config::Kind::Duration { .. } => assert!(parse_duration(d, k.name).is_ok(), "{}: {d}", k.name),
                crate::config::Kind::Size => assert!(parse_size(d, k.name).is_ok(), "{}: {d}", k.name),
                crate::config::Kind::Int { min, max } => {
                    assert!(d.parse::<u64>().is_ok_and(|n| (min..=max).contains(&n)), "{}: {d}", k.name)
                }
                _ => {}
            }
        }
        // The engine keeps its own defaults: the table states the same values.
        let engine = TransferConfig::default();
        let archive = crate::transfer::Limits::default();
        let stated = |name: &str| table_default(name);
        assert_eq!(parse_size(stated("min_speed"), "min_speed").unwrap(), engine.min_rate.bytes_per_sec);
        assert_eq!(default_duration("min_speed_time"), engine.min_rate.window);
        assert_eq!(parse_size(stated("chunk_size"), "chunk_size").unwrap(), engine.chunk_size);
        assert_eq!(stated("archive_max_ratio").parse::<u64>().unwrap(), archive.max_ratio);
        assert_eq!(parse_size(stated("archive_max_bytes"), "archive_max_bytes").unwrap(), archive.max_bytes);
        assert_eq!(stated("max_list_entries").parse::<usize>().unwrap(), DEFAULT_MAX_LIST_ENTRIES);
        assert_eq!(stated("parallel").parse::<usize>().unwrap(), engine.parallel);
        assert_eq!(stated("retries"), "10");
        assert_eq!(default_duration("retry_base_delay"), Duration::from_millis(500));
    }

    /// The one pass over a `download job-1 ARGV` command line, `files` and the environment `env`.
    fn settings(argv: &[&str], files: Files, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        Settings::resolve(&resolve(&layer(argv), files, env), Output::default(), false, env)
    }

    /// Where the job lives after the one pass (no file, no environment).
    fn args(argv: &[&str]) -> SourceSettings {
        settings(argv, Files::default(), &|_| None).unwrap().source
    }

    #[test]
    fn shard_auto_reads_the_first_complete_scheduler_pair_only() {
        use crate::shard::Shard;
        let env_of = |vars: &'static [(&'static str, &'static str)]| {
            move |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
        };
        let all: &[(&str, &str)] = &[
            ("JOB_COMPLETION_INDEX", "2"),
            ("JOBDL_SHARD_COUNT", "4"),
            ("RANK", "1"),
            ("WORLD_SIZE", "8"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
        ];
        let s = |flag: Option<&str>, vars: &'static [(&'static str, &'static str)]| shard(flag, &env_of(vars));
        // No flag: the environment is never read, RANK or not.
        assert_eq!(s(None, all).unwrap(), None);
        assert_eq!(s(Some("1/3"), all).unwrap(), Some(Shard { index: 1, count: 3 }));
        assert_eq!(s(Some("auto"), all).unwrap(), Some(Shard { index: 2, count: 4 }));
        // JOB_COMPLETION_INDEX without a count is skipped: torchrun's pair is next.
        let torch: &[(&str, &str)] =
            &[("JOB_COMPLETION_INDEX", "2"), ("RANK", "1"), ("WORLD_SIZE", "8"), ("SLURM_PROCID", "0")];
        assert_eq!(s(Some("auto"), torch).unwrap(), Some(Shard { index: 1, count: 8 }));
        let slurm: &[(&str, &str)] = &[("RANK", "1"), ("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2")];
        assert_eq!(s(Some("AUTO"), slurm).unwrap(), Some(Shard { index: 1, count: 2 }));
        let e = s(Some("auto"), &[("RANK", "1")]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("WORLD_SIZE"), "{e}");
        let e = s(Some("auto"), &[("RANK", "8"), ("WORLD_SIZE", "8")]).unwrap_err();
        assert!(e.to_string().contains("RANK/WORLD_SIZE"), "{e}");
        assert_eq!(s(Some("x"), all).unwrap_err().exit_code(), 2);
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
        // So is a Kubeflow Pipelines endpoint; with any other source it is a usage error.
        assert_eq!(
            job_source(&args(&["--kfp-endpoint", "http://127.0.0.1:8888"]), &cli).unwrap(),
            JobSource::Kfp("http://127.0.0.1:8888".into())
        );
        for other in [["--mlflow-uri", "databricks"], ["-w", "ws"], ["--project-endpoint", "https://x/api/projects/p"]]
        {
            let mut argv = vec!["--kfp-endpoint", "http://127.0.0.1:8888"];
            argv.extend(other);
            let e = job_source(&args(&argv), &none).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{other:?}");
            assert!(e.to_string().contains("Kubeflow") && e.to_string().contains("give only one"), "{e}");
        }
        let only_sub = AzureCliDefaults { subscription: Some("s0".into()), ..Default::default() };
        let e = job_source(&args(&[]), &only_sub).unwrap_err();
        assert!(e.to_string().starts_with("no job source"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096", "x").unwrap(), 4096);
        assert_eq!(parse_size("1KiB", "x").unwrap(), 1024);
        assert_eq!(parse_size("64 MiB", "x").unwrap(), 64 << 20);
        assert_eq!(parse_size("1tib", "x").unwrap(), 1 << 40);
        assert_eq!(parse_size("1.5GiB", "x").unwrap(), 3 << 29);
        assert_eq!(parse_size("500kB", "x").unwrap(), 500_000);
        assert_eq!(parse_size("0", "x").unwrap(), 0);
        for bad in ["", "fast", "1 PiB", "-1", "99999999999TiB", "1..2MiB"] {
            let e = parse_size(bad, "JOBDL_MIN_SPEED").unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("JOBDL_MIN_SPEED"), "{e}");
        }
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

    fn layer(argv: &[&str]) -> ArgLayer {
        use clap::CommandFactory;
        let mut full = vec!["jobdl", "download", "job-1"];
        full.extend_from_slice(argv);
        let m = crate::cli::Cli::command().try_get_matches_from(full).unwrap();
        arg_layer(m.subcommand().unwrap().1)
    }

    fn file(path: &str, pairs: &[(&'static str, Value, usize)]) -> crate::config::ConfigFile {
        let mut f = crate::config::ConfigFile { path: path.into(), ..Default::default() };
        for (k, v, line) in pairs {
            f.values.insert(k, crate::config::FileValue { value: v.clone(), line: *line });
        }
        f
    }

    fn one(s: &str) -> Value {
        Value::One(s.into())
    }

    #[test]
    fn flags_are_told_from_defaults() {
        let l = layer(&["--parallel", "3", "--allow-host", "a.invalid", "--allow-host", "b.invalid", "-w", "ws"]);
        assert_eq!(l["parallel"], (one("3"), Source::Flag("--parallel")));
        assert_eq!(l["workspace"], (one("ws"), Source::Flag("--workspace")));
        assert_eq!(l["allow_hosts"].0, Value::Many(vec!["a.invalid".into(), "b.invalid".into()]));
        // `--cloud` has a clap default: not given.
        assert!(!l.contains_key("cloud"), "{l:?}");
        assert!(!l.contains_key("retries"));
        assert_eq!(layer(&["--cloud", "AzureChinaCloud"])["cloud"].1, Source::Flag("--cloud"));
    }

    #[test]
    fn precedence_flag_env_local_user_default() {
        let files = || Files {
            local: Some(file("/w/jobdl.toml", &[("parallel", one("2"), 1), ("retries", one("4"), 2)])),
            user: Some(file(
                "/u/config.toml",
                &[
                    ("parallel", one("3"), 1),
                    ("retries", one("5"), 2),
                    ("lock_timeout", one("9s"), 3),
                    ("poll_interval", one("1s"), 4),
                ],
            )),
            searched: Vec::new(),
        };
        let env = |n: &str| match n {
            "JOBDL_PARALLEL" => Some("6".to_string()),
            "JOBDL_POLL_INTERVAL" => Some("7s".to_string()),
            "JOBDL_RETRY_BASE_DELAY" => Some("8ms".to_string()),
            _ => None,
        };
        let r = resolve(&layer(&["--idle-timeout", "5m"]), files(), &env);
        let got = |k: &str| {
            let s = r.get(k).unwrap();
            (s.value.as_ref().map(Value::text), s.source.to_string())
        };
        let want = |v: &str, s: &str| (Some(v.to_string()), s.to_string());
        assert_eq!(got("idle_timeout"), want("5m", "flag --idle-timeout"));
        assert_eq!(got("parallel"), want("6", "env JOBDL_PARALLEL"));
        assert_eq!(got("retries"), want("4", "file /w/jobdl.toml:2"));
        assert_eq!(got("lock_timeout"), want("9s", "file /u/config.toml:3"));
        assert_eq!(got("cloud"), want("AzureCloud", "default"));
        assert_eq!(r.get("workspace").unwrap().value, None);
        // Timing knobs: the files win over their environment variables.
        assert_eq!(got("poll_interval"), want("1s", "file /u/config.toml:4"));
        assert_eq!(got("retry_base_delay"), want("8ms", "env JOBDL_RETRY_BASE_DELAY"));
        // A flag beats the environment, which beats the files.
        let r = resolve(&layer(&["--parallel", "1"]), files(), &env);
        assert_eq!(r.get("parallel").unwrap().source, Source::Flag("--parallel"));
        // The one pass types what won, layer by layer.
        let s = settings(&["--idle-timeout", "5m"], files(), &env).unwrap();
        let c = &s.common;
        assert_eq!((c.transfer.parallel, c.transfer.max_parallel), (6, 6), "the environment's, kept fixed");
        assert_eq!(c.transfer.retry.attempts, 4, "./jobdl.toml over the user file");
        assert_eq!(c.idle_timeout, Duration::from_secs(300), "the flag");
        assert_eq!(c.lock_timeout, Duration::from_secs(9), "the user file");
        assert_eq!(c.poll_interval, Duration::from_secs(1), "a file over its timing knob's variable");
        assert_eq!(c.transfer.retry.base_delay, Duration::from_millis(8), "the variable, no file");
        assert_eq!(c.transfer.retry.max_delay, default_duration("retry_max_delay"), "the default");
        assert_eq!(s.cloud, Cloud::AzureCloud);
        assert_eq!(settings(&["--parallel", "1"], files(), &env).unwrap().common.transfer.parallel, 1);
        let c = settings(&[], files(), &|_| None).unwrap().common;
        assert_eq!(c.transfer.parallel, 2);
        assert_eq!(c.idle_timeout, default_duration("idle_timeout"));
        assert_eq!(c.meta_retry.attempts, 4, "the data retries when fewer than META_ATTEMPTS");
        // Without a setting anywhere the budget starts at the default and may climb.
        let c = settings(&[], Files::default(), &|_| None).unwrap().common;
        assert_eq!(c.transfer.parallel, 8);
        assert!(c.transfer.max_parallel >= 8, "{}", c.transfer.max_parallel);
        assert_eq!(c.transfer.retry.attempts, 10);
    }

    #[test]
    fn file_knobs_reach_the_settings() {
        let files = Files {
            user: Some(file(
                "/u/c.toml",
                &[
                    ("poll_interval", one("3s"), 1),
                    ("retry_after_cap", one("7"), 2),
                    ("max_list_entries", one("42"), 3),
                ],
            )),
            ..Files::default()
        };
        let c = settings(&[], files, &|_| None).unwrap().common;
        assert_eq!(c.poll_interval, Duration::from_secs(3));
        assert_eq!(c.transfer.retry.retry_after_cap, Duration::from_secs(7));
        assert_eq!(c.max_list_entries, 42);
        // The limits: defaults, then a file's values, then the environment's over them.
        assert_eq!(c.transfer.min_rate, crate::transfer::rate::MinRate::default());
        assert_eq!(c.archive_limits, crate::transfer::Limits { max_ratio: 200, max_bytes: 1 << 40 });
        let limits = [
            ("min_speed", one("2KiB"), 1),
            ("min_speed_time", one("30s"), 2),
            ("archive_max_ratio", one("0"), 3),
            ("archive_max_bytes", one("1GiB"), 4),
            ("chunk_size", one("16MiB"), 5),
        ];
        let files = || Files { local: Some(file("/w/jobdl.toml", &limits)), ..Files::default() };
        let c = settings(&[], files(), &|_| None).unwrap().common;
        assert_eq!(c.transfer.min_rate.bytes_per_sec, 2048);
        assert_eq!(c.transfer.min_rate.window, Duration::from_secs(30));
        assert_eq!(c.archive_limits, crate::transfer::Limits { max_ratio: 0, max_bytes: 1 << 30 });
        assert_eq!((c.transfer.chunk_size, c.transfer.chunk_threshold), (16 << 20, 64 << 20));
        let env = |n: &str| match n {
            "JOBDL_MIN_SPEED" => Some("4KiB".to_string()),
            "JOBDL_ARCHIVE_MAX_RATIO" => Some("9".to_string()),
            _ => None,
        };
        let c = settings(&[], files(), &env).unwrap().common;
        assert_eq!((c.transfer.min_rate.bytes_per_sec, c.archive_limits.max_ratio), (4096, 9));
    }

    #[test]
    fn a_bad_value_names_its_flag_or_variable() {
        let bad = |argv: &[&str], var: &'static str, value: &'static str| {
            let env = move |n: &str| (n == var).then(|| value.to_string());
            let e = settings(argv, Files::default(), &env).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
            e.to_string()
        };
        assert!(bad(&["--idle-timeout", "soon"], "", "").starts_with("invalid --idle-timeout 'soon'"));
        assert_eq!(bad(&["--idle-timeout", "0"], "", ""), "--idle-timeout must be more than 0");
        assert_eq!(bad(&["--parallel", "0"], "", ""), "--parallel must be between 1 and 256");
        assert_eq!(bad(&["--retries", "0"], "", ""), "--retries must be at least 1");
        assert!(bad(&["--max-rate", "fast"], "", "").starts_with("invalid --max-rate 'fast'"));
        assert!(bad(&["--max-rate", "0"], "", "").starts_with("--max-rate must be more than 0"));
        assert!(bad(&["--cloud", "Mars"], "", "").starts_with("invalid --cloud: "));
        assert!(bad(&[], "JOBDL_MIN_SPEED", "fast").starts_with("invalid JOBDL_MIN_SPEED 'fast'"));
        assert!(bad(&[], "JOBDL_RETRY_BASE_DELAY", "soon").starts_with("invalid JOBDL_RETRY_BASE_DELAY 'soon'"));
        assert_eq!(bad(&[], "JOBDL_MIN_SPEED_TIME", "0"), "JOBDL_MIN_SPEED_TIME must be more than 0");
        assert_eq!(bad(&[], "JOBDL_CHUNK_SIZE", "1KiB"), "JOBDL_CHUNK_SIZE must be between 64KiB and 256MiB");
        assert!(
            bad(&[], "JOBDL_ARCHIVE_MAX_RATIO", "-1")
                .starts_with("invalid JOBDL_ARCHIVE_MAX_RATIO '-1': expected an integer from 0 to 1000000")
        );
        assert!(
            bad(&[], "JOBDL_MAX_LIST_ENTRIES", "0")
                .starts_with("invalid JOBDL_MAX_LIST_ENTRIES '0': expected a whole number from 1")
        );
        assert!(bad(&[], "JOBDL_PROGRESS_INTERVAL", "x").starts_with("invalid JOBDL_PROGRESS_INTERVAL 'x'"));
        assert!(bad(&[], "AZURE_CLOUD", "Mars").starts_with("invalid --cloud: "));
    }

    #[test]
    fn allowed_hosts_of_the_flags_and_of_the_environment_add_up() {
        let env = |n: &str| (n == "JOBDL_ALLOW_HOSTS").then(|| "e.invalid".to_string());
        let files = || Files {
            local: Some(file("/w/jobdl.toml", &[("allow_hosts", Value::Many(vec!["f.invalid".into()]), 1)])),
            ..Files::default()
        };
        let allows = |s: &Settings, h: &str| s.common.allow.check_storage(&url::Url::parse(h).unwrap()).is_ok();
        let (a, e, f) = ("https://a.invalid/c/b", "https://e.invalid/c/b", "https://f.invalid/c/b");
        let s = settings(&["--allow-host", "a.invalid"], files(), &env).unwrap();
        assert!(allows(&s, a) && allows(&s, e) && !allows(&s, f), "flags and environment; no file");
        let s = settings(&[], files(), &env).unwrap();
        assert!(allows(&s, e) && !allows(&s, f), "the environment ranks above the file");
        let s = settings(&[], files(), &|_| None).unwrap();
        assert!(allows(&s, f) && !allows(&s, e), "the file");
    }

    #[test]
    fn destination_template_fills_only_a_missing_path() {
        let files = || Files {
            local: Some(file("/w/jobdl.toml", &[("destination", one("/dl/{job}/out"), 1)])),
            ..Files::default()
        };
        let s = settings(&[], files(), &|_| None).unwrap();
        assert_eq!(s.destination.as_deref(), Some("/dl/{job}/out"));
        assert_eq!(s.path(None, "job-7"), Some(PathBuf::from("/dl/job-7/out")));
        assert_eq!(s.path(Some(std::path::Path::new("/x")), "job-7"), Some(PathBuf::from("/x")));
        // The built-in default is no template: the job's name is the destination.
        let s = settings(&[], Files::default(), &|_| None).unwrap();
        assert_eq!((s.destination.as_deref(), s.path(None, "job-7")), (None, None));
        let files = Files { local: Some(file("/w/jobdl.toml", &[("destination", one("~/dl/{job}"), 1)])), ..files() };
        let home = |n: &str| (n == "HOME").then(|| "/h".to_string());
        assert_eq!(settings(&[], files, &home).unwrap().path(None, "j"), Some(PathBuf::from("/h/dl/j")));
    }

    #[test]
    fn source_values_come_from_every_layer() {
        let files = Files {
            user: Some(file("/u/c.toml", &[("workspace", one("ws-f"), 1), ("kfp_namespace", one("team"), 2)])),
            ..Files::default()
        };
        let env = |n: &str| (n == "AZURE_SUBSCRIPTION_ID").then(|| "sub-e".to_string());
        let s = settings(&["-g", "rg-flag"], files, &env).unwrap();
        assert_eq!(
            s.source,
            SourceSettings {
                subscription: Some("sub-e".into()),
                resource_group: Some("rg-flag".into()),
                workspace: Some("ws-f".into()),
                kfp_namespace: Some("team".into()),
                ..SourceSettings::default()
            }
        );
        let ws = job_source(&s.source, &AzureCliDefaults::default()).unwrap();
        assert_eq!(
            ws,
            JobSource::Workspace(WorkspaceRef {
                subscription: "sub-e".into(),
                resource_group: "rg-flag".into(),
                workspace: "ws-f".into()
            })
        );
    }

    #[test]
    fn endpoint_and_workspace_conflict_across_layers() {
        let files = Files { user: Some(file("/u/config.toml", &[("workspace", one("ws"), 3)])), ..Files::default() };
        let r = resolve(&ArgLayer::new(), files.clone(), &|n| {
            (n == "AZURE_AI_PROJECT_ENDPOINT").then(|| "https://a.services.ai.azure.com/api/projects/p".to_string())
        });
        let e = r.check_conflicts().unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let msg = e.to_string();
        assert!(msg.contains("project_endpoint (env AZURE_AI_PROJECT_ENDPOINT)"), "{msg}");
        assert!(msg.contains("workspace (file /u/config.toml:3)"), "{msg}");
        // A subscription or resource group with an endpoint is not a conflict (often set for other tools).
        let only_rg = Files { user: Some(file("/u/c.toml", &[("resource_group", one("rg"), 1)])), ..Files::default() };
        let r = resolve(&layer(&["--project-endpoint", "https://a/api/projects/p"]), only_rg, &|_| None);
        assert!(r.check_conflicts().is_ok());
        assert!(resolve(&ArgLayer::new(), files, &|_| None).check_conflicts().is_ok());
    }

    #[test]
    fn mlflow_uri_and_an_azure_source_conflict_across_layers() {
        let files =
            Files { local: Some(file("/w/jobdl.toml", &[("mlflow_uri", one("databricks"), 2)])), ..Files::default() };
        let r = resolve(&layer(&["-w", "ws"]), files.clone(), &|_| None);
        let msg = r.check_conflicts().unwrap_err().to_string();
        assert!(msg.contains("mlflow_uri (file /w/jobdl.toml:2)"), "{msg}");
        assert!(msg.contains("--workspace"), "{msg}");
        assert!(resolve(&ArgLayer::new(), files, &|_| None).check_conflicts().is_ok());
    }

    #[test]
    fn s3_settings() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let keys: &[(&str, &str)] = &[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK")];
        let c = s3_config(None, None, false, &vars(keys), None).unwrap();
        assert_eq!((c.endpoint, c.region.as_str(), c.credentials.key()), (None, "us-east-1", "AK"));
        let with_region: &[(&str, &str)] = &[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_REGION", "eu-central-1"),
        ];
        assert_eq!(s3_config(None, None, false, &vars(with_region), None).unwrap().region, "eu-central-1");
        assert_eq!(s3_config(None, Some("minio"), false, &vars(with_region), None).unwrap().region, "minio");
        let c = s3_config(Some("http://127.0.0.1:9000"), None, false, &vars(keys), None).unwrap();
        assert_eq!(c.endpoint.unwrap().as_str(), "http://127.0.0.1:9000/");
        let e = s3_config(Some("http://minio.internal:9000"), None, false, &vars(keys), None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(s3_config(Some("http://minio.internal:9000"), None, true, &vars(keys), None).is_ok());
        assert_eq!(s3_config(Some("not a url"), None, false, &vars(keys), None).unwrap_err().exit_code(), 2);
        assert_eq!(s3_config(None, Some("bad/region"), false, &vars(keys), None).unwrap_err().exit_code(), 2);
        let e = s3_config(None, None, false, &vars(&[]), None).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(e.hint().unwrap().contains("AWS_ACCESS_KEY_ID"));
    }
}

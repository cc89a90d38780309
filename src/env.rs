//! Every environment variable jobdl reads, by name, and the only code that reads the process
//! environment. Each constant's name is the variable's name; the rest of the crate refers to the
//! constant, never to a string literal, and reads through [`var`] / [`var_os`] / [`vars_with_prefix`]
//! (the architecture test enforces both, and that the README documents every variable here).
//! Code that must be testable without touching the process takes a lookup closure instead; the app
//! layer passes [`var`].
use std::ffi::OsString;

/// The value of `name`, when it is set and is Unicode.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The value of `name`, when it is set (any bytes).
pub fn var_os(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// Every Unicode variable whose name starts with `prefix`.
pub fn vars_with_prefix(prefix: &str) -> Vec<(String, String)> {
    std::env::vars().filter(|(k, _)| k.starts_with(prefix)).collect()
}

// --- jobdl's own ---

/// Bearer token for every service call (CI, emulators, KFP).
pub const JOBDL_ACCESS_TOKEN: &str = "JOBDL_ACCESS_TOKEN";
/// Extra allowed hosts, comma-separated (setting `allow_hosts`).
pub const JOBDL_ALLOW_HOSTS: &str = "JOBDL_ALLOW_HOSTS";
/// Files fetched at once (setting `parallel`).
pub const JOBDL_PARALLEL: &str = "JOBDL_PARALLEL";
/// Bandwidth cap (setting `max_rate`).
pub const JOBDL_MAX_RATE: &str = "JOBDL_MAX_RATE";
/// First `--wait` poll delay (setting `poll_interval`).
pub const JOBDL_POLL_INTERVAL: &str = "JOBDL_POLL_INTERVAL";
/// Retry backoff base (setting `retry_base_delay`).
pub const JOBDL_RETRY_BASE_DELAY: &str = "JOBDL_RETRY_BASE_DELAY";
/// Retry backoff cap (setting `retry_max_delay`).
pub const JOBDL_RETRY_MAX_DELAY: &str = "JOBDL_RETRY_MAX_DELAY";
/// Longest `Retry-After` honoured (setting `retry_after_cap`).
pub const JOBDL_RETRY_AFTER_CAP: &str = "JOBDL_RETRY_AFTER_CAP";
/// Minimum body rate in bytes per second (setting `min_speed`; 0 turns the guard off).
pub const JOBDL_MIN_SPEED: &str = "JOBDL_MIN_SPEED";
/// The window the minimum body rate is averaged over (setting `min_speed_time`).
pub const JOBDL_MIN_SPEED_TIME: &str = "JOBDL_MIN_SPEED_TIME";
/// Most decoded bytes per compressed byte of one archive (setting `archive_max_ratio`).
pub const JOBDL_ARCHIVE_MAX_RATIO: &str = "JOBDL_ARCHIVE_MAX_RATIO";
/// Most decoded bytes of one archive (setting `archive_max_bytes`).
pub const JOBDL_ARCHIVE_MAX_BYTES: &str = "JOBDL_ARCHIVE_MAX_BYTES";
/// Size of one ranged chunk of a large file (setting `chunk_size`).
pub const JOBDL_CHUNK_SIZE: &str = "JOBDL_CHUNK_SIZE";
/// Most entries one listing may hold (setting `max_list_entries`).
pub const JOBDL_MAX_LIST_ENTRIES: &str = "JOBDL_MAX_LIST_ENTRIES";
/// Interval of the plain progress lines when stderr is not a terminal.
pub const JOBDL_PROGRESS_INTERVAL: &str = "JOBDL_PROGRESS_INTERVAL";
/// Multi-user Kubeflow: the profile namespace run listings are scoped to (setting `kfp_namespace`).
pub const JOBDL_KFP_NAMESPACE: &str = "JOBDL_KFP_NAMESPACE";
/// ARM base URL override (emulators, private clouds).
pub const JOBDL_ARM_ENDPOINT: &str = "JOBDL_ARM_ENDPOINT";
/// Path-style blob endpoint for workspace datastores (emulators).
pub const JOBDL_STORAGE_ENDPOINT: &str = "JOBDL_STORAGE_ENDPOINT";
/// Try the instance metadata service even where no managed-identity endpoint is advertised.
pub const JOBDL_TRY_IMDS: &str = "JOBDL_TRY_IMDS";
/// `1`: speak HTTP/2 to servers that offer it (the default is HTTP/1.1 only).
pub const JOBDL_HTTP2: &str = "JOBDL_HTTP2";
/// The number of shards beside Kubernetes' `JOB_COMPLETION_INDEX` (`--shard auto`).
pub const JOBDL_SHARD_COUNT: &str = "JOBDL_SHARD_COUNT";

// --- the job sources' own ---

/// Azure cloud name (setting `cloud`).
pub const AZURE_CLOUD: &str = "AZURE_CLOUD";
/// Foundry project endpoint (setting `project_endpoint`).
pub const AZURE_AI_PROJECT_ENDPOINT: &str = "AZURE_AI_PROJECT_ENDPOINT";
/// Azure ML workspace subscription (setting `subscription`).
pub const AZURE_SUBSCRIPTION_ID: &str = "AZURE_SUBSCRIPTION_ID";
/// Azure ML workspace resource group (setting `resource_group`).
pub const AZURE_RESOURCE_GROUP: &str = "AZURE_RESOURCE_GROUP";
/// Azure ML workspace name (setting `workspace`).
pub const AZUREML_WORKSPACE_NAME: &str = "AZUREML_WORKSPACE_NAME";
/// MLflow tracking URI (setting `mlflow_uri`).
pub const MLFLOW_TRACKING_URI: &str = "MLFLOW_TRACKING_URI";
/// Kubeflow Pipelines API endpoint (setting `kfp_endpoint`).
pub const KF_PIPELINES_ENDPOINT: &str = "KF_PIPELINES_ENDPOINT";
/// The Azure CLI's configuration directory (default `~/.azure`).
pub const AZURE_CONFIG_DIR: &str = "AZURE_CONFIG_DIR";

// --- Azure credentials ---

/// Service principal: tenant.
pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
/// Service principal or workload identity: client id.
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// Service principal: secret.
pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
/// Workload identity: the federated token's file.
pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// Managed identity (App Service style endpoint).
pub const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
/// Azure ML compute managed identity: endpoint.
pub const MSI_ENDPOINT: &str = "MSI_ENDPOINT";
/// Azure ML compute managed identity: secret.
pub const MSI_SECRET: &str = "MSI_SECRET";
/// Azure ML compute managed identity: the user-assigned identity's client id.
pub const DEFAULT_IDENTITY_CLIENT_ID: &str = "DEFAULT_IDENTITY_CLIENT_ID";

// --- MLflow and Databricks credentials ---

/// MLflow: bearer token for the tracking server.
pub const MLFLOW_TRACKING_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";
/// MLflow: basic-auth user name (with [`MLFLOW_TRACKING_PASSWORD`]).
pub const MLFLOW_TRACKING_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
/// MLflow: basic-auth password.
pub const MLFLOW_TRACKING_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";
/// Databricks workspace URL (`databricks` tracking URI).
pub const DATABRICKS_HOST: &str = "DATABRICKS_HOST";
/// Databricks personal access token.
pub const DATABRICKS_TOKEN: &str = "DATABRICKS_TOKEN";
/// Databricks OAuth M2M client id (service principal).
pub const DATABRICKS_CLIENT_ID: &str = "DATABRICKS_CLIENT_ID";
/// Databricks OAuth M2M client secret.
pub const DATABRICKS_CLIENT_SECRET: &str = "DATABRICKS_CLIENT_SECRET";
/// Databricks configuration file (default `~/.databrickscfg`).
pub const DATABRICKS_CONFIG_FILE: &str = "DATABRICKS_CONFIG_FILE";
/// Databricks profile used by a bare `databricks` tracking URI (default `DEFAULT`).
pub const DATABRICKS_CONFIG_PROFILE: &str = "DATABRICKS_CONFIG_PROFILE";

// --- S3 (`cp s3://`, KFP artifact stores) ---

/// The prefix of every AWS variable handed to the S3 settings.
pub const AWS_PREFIX: &str = "AWS_";
/// Access key id.
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// Secret access key.
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Session token of temporary credentials.
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// Profile of the shared credentials file.
pub const AWS_PROFILE: &str = "AWS_PROFILE";
/// The shared credentials file (default `~/.aws/credentials`).
pub const AWS_SHARED_CREDENTIALS_FILE: &str = "AWS_SHARED_CREDENTIALS_FILE";
/// Region.
pub const AWS_REGION: &str = "AWS_REGION";
/// Region, when `AWS_REGION` is unset.
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// S3 endpoint (MinIO, SeaweedFS, any S3-compatible store).
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

// --- schedulers (`--shard auto`) ---

/// Kubernetes indexed Job: this pod's index (with [`JOBDL_SHARD_COUNT`]).
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";
/// torchrun: this process's rank.
pub const RANK: &str = "RANK";
/// torchrun: the number of processes.
pub const WORLD_SIZE: &str = "WORLD_SIZE";
/// Slurm: this task's rank.
pub const SLURM_PROCID: &str = "SLURM_PROCID";
/// Slurm: the number of tasks.
pub const SLURM_NTASKS: &str = "SLURM_NTASKS";

// --- the system's ---

/// Proxy for `http://` URLs (lower-case form: [`HTTP_PROXY_LOWER`]).
pub const HTTP_PROXY: &str = "HTTP_PROXY";
/// Lower-case `HTTP_PROXY`.
pub const HTTP_PROXY_LOWER: &str = "http_proxy";
/// Proxy for `https://` URLs.
pub const HTTPS_PROXY: &str = "HTTPS_PROXY";
/// Lower-case `HTTPS_PROXY`.
pub const HTTPS_PROXY_LOWER: &str = "https_proxy";
/// Proxy for both schemes when the scheme's own is unset.
pub const ALL_PROXY: &str = "ALL_PROXY";
/// Lower-case `ALL_PROXY`.
pub const ALL_PROXY_LOWER: &str = "all_proxy";
/// Hosts reached without the proxy.
pub const NO_PROXY: &str = "NO_PROXY";
/// Lower-case `NO_PROXY`.
pub const NO_PROXY_LOWER: &str = "no_proxy";
/// Set under CGI, where `HTTP_PROXY` may be a request header (httpoxy): then it is ignored.
pub const REQUEST_METHOD: &str = "REQUEST_METHOD";
/// Extra CA bundle (PEM).
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// Extra CA directory.
pub const SSL_CERT_DIR: &str = "SSL_CERT_DIR";
/// Turns colour off.
pub const NO_COLOR: &str = "NO_COLOR";
/// The terminal's width in columns, when the user sets it (the `jobs` table in a terminal).
pub const COLUMNS: &str = "COLUMNS";
/// The home directory.
pub const HOME: &str = "HOME";
/// The home directory on Windows.
pub const USERPROFILE: &str = "USERPROFILE";
/// Base of the user configuration file (default `~/.config`).
pub const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
/// glibc malloc arenas: jobdl lowers the default for its own process (see `main.rs`).
pub const MALLOC_ARENA_MAX: &str = "MALLOC_ARENA_MAX";

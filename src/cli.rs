//! Command-line definitions (clap derive). Doc comments are the help text; no logic lives here.
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Examples shown after the top-level help.
const EXAMPLES: &str = "Examples:
  jobdl jobs --status completed               # find a job: recent jobs, newest first
  jobdl show job-123                          # status, type, outputs
  jobdl ls job-123 --all-outputs              # what would be downloaded, with sizes
  jobdl download job-123 --output model       # one named output -> ./job-123/named-outputs/model/
  jobdl download job-123 --include '*.txt'    # only some files
  jobdl cp 'https://acct.blob.core.windows.net/c/prefix?sv=...&sig=...' ./out
  jobdl completions bash                      # shell completion script (also: jobdl man)
  jobdl config show                           # settings from flags, env, jobdl.toml, defaults

Exit codes: 0 ok, 1 internal/service unavailable, 2 usage, 3 auth, 4 not found,
5 job not terminal, 6 some files failed, 7 destination locked, 130 interrupted.";

/// Download the outputs and logged artifacts of ML training jobs, fast and safely.
///
/// Exit codes: 0 ok, 1 internal/service unavailable, 2 usage, 3 auth, 4 not found,
/// 5 job not terminal, 6 some files failed, 7 destination locked, 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "jobdl", version, about, long_about = None, max_term_width = 100, after_help = EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. Parsed once per run, so `download`'s many flags make its variant the largest
/// without boxing it (which every match on the command would then have to see through).
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum Command {
    #[command(verbatim_doc_comment)]
    /// Download a job's artifacts and/or named outputs.
    ///
    /// Examples:
    ///   jobdl download job-123 --project-endpoint https://acct.services.ai.azure.com/api/projects/p
    ///   jobdl download job-123 -s <subscription-id> -g my-rg -w my-workspace
    ///   jobdl download <run-id> --mlflow-uri databricks               # MLflow / Databricks run
    ///   jobdl download <run-id> --kfp-endpoint http://127.0.0.1:8888 --s3-endpoint http://127.0.0.1:9000
    ///   jobdl download job-123 --output model --json
    ///   jobdl download job-123 --all-outputs --wait --timeout 2h -p ./results
    ///   jobdl download job-123 --include 'logs/**/*.txt' --exclude '*.bak'
    ///   jobdl download job-123 --output model --dry-run
    ///   jobdl download job-123 --allow-running --include 'user_logs/**'   # a running job's logs
    ///   jobdl download job-123 -p /shared/job-123 --shard 0/4          # node 0 of 4
    ///   jobdl download job-123 --follow --poll-interval 30s           # pull while it runs
    ///   jobdl download job-1 job-2 job-3 -p ./runs                    # ./runs/job-1/, ./runs/job-2/ ...
    ///   jobdl download --experiment my-exp --status completed --limit 5 -p ./runs
    ///   jobdl download my-pipeline --children -p ./steps              # ./steps/<step>/ per step
    ///   jobdl download my-sweep --top 3 -p ./best                     # the sweep's 3 best trials
    #[command(mut_arg("job", |a| a.required(false).default_value("").hide_default_value(true).index(1)))]
    Download(DownloadArgs),
    #[command(verbatim_doc_comment)]
    /// Print the plan (output, path, size, MD5 known?) without downloading anything.
    ///
    /// Takes the same job, output and filter flags as `download`; a job that is not finished ends
    /// with exit 5 unless --wait is given. The table goes to stdout, notes to stderr.
    ///
    /// Examples:
    ///   jobdl ls job-123
    ///   jobdl ls job-123 --all-outputs --include '*.safetensors'
    ///   jobdl ls job-123 --output model --json | jq '.totals.bytes'
    Ls(LsArgs),
    #[command(verbatim_doc_comment)]
    /// List the recent jobs of the configured source (name, status, created, type), newest first.
    ///
    /// The NAME column is what `show`, `ls` and `download` take as JOB. Works for every source:
    /// a Foundry project, an Azure ML workspace, an MLflow tracking server (runs of its active
    /// experiments) and a Kubeflow Pipelines API.
    ///
    /// Examples:
    ///   jobdl jobs
    ///   jobdl jobs --status running,queued --limit 50
    ///   jobdl jobs --status failed --json | jq -r '.jobs[].name'
    Jobs(JobsArgs),
    #[command(verbatim_doc_comment)]
    /// Print a job's status, type and outputs (types, assets, locations; never a SAS).
    ///
    /// Works for running jobs too (no status gate).
    ///
    /// Examples:
    ///   jobdl show job-123
    ///   jobdl show job-123 -s <subscription-id> -g my-rg -w my-workspace --json
    Show(ShowArgs),
    #[command(verbatim_doc_comment)]
    /// Download one object, or everything under a prefix, of an Azure Blob SAS URL or s3:// URL into DIR.
    ///
    /// Examples:
    ///   jobdl cp 'https://acct.blob.core.windows.net/c/prefix?sv=...&sig=...' ./out
    ///   jobdl cp 'https://acct.blob.core.windows.net/c/run1?sv=...&sig=...' ./out --include '*.json'
    ///   jobdl cp s3://bucket/runs/run-1/ ./out --s3-endpoint http://127.0.0.1:9000
    Cp(CpArgs),
    #[command(verbatim_doc_comment)]
    /// Re-hash the files of a destination against its manifest (DEST/.jobdl/manifest.json).
    ///
    /// Every download writes the manifest. Exit 6 when a recorded file changed or is missing
    /// (each is named), or with --remote when the service lists a file new, changed or deleted;
    /// exit 4 when DEST has no manifest.
    ///
    /// Examples:
    ///   jobdl verify ./job-123
    ///   jobdl verify ./job-123 --json | jq '.totals'
    ///   jobdl verify ./job-123 --remote      # also: what changed on the service since
    Verify(VerifyArgs),
    #[command(verbatim_doc_comment)]
    /// Print a shell completion script to stdout.
    ///
    /// Examples:
    ///   jobdl completions bash > ~/.local/share/bash-completion/completions/jobdl
    ///   jobdl completions zsh > "${fpath[1]}/_jobdl"
    ///   jobdl completions fish > ~/.config/fish/completions/jobdl.fish
    ///   jobdl completions powershell >> $PROFILE
    Completions(CompletionsArgs),
    /// Inspect the configuration: resolved settings and where each came from.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a man page (roff) to stdout: jobdl(1), or one command's, jobdl-download(1) ...
    ///
    /// Examples:
    ///   jobdl man > ~/.local/share/man/man1/jobdl.1
    ///   for c in download ls jobs show cp verify config; do jobdl man $c > ~/.local/share/man/man1/jobdl-$c.1; done
    #[command(hide = true, verbatim_doc_comment)]
    Man(ManArgs),
}

/// `jobdl man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print (download, ls, jobs, show, cp, verify, config, completions).
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

/// `jobdl config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    #[command(verbatim_doc_comment)]
    /// Print every resolved setting and where it came from (flag, env, file:line, default).
    ///
    /// Precedence: flags > environment > ./jobdl.toml > $XDG_CONFIG_HOME/jobdl/config.toml
    /// (~/.config/jobdl/config.toml) > built-in default. Flags given here are resolved as a
    /// command would resolve them. Secrets are shown only as set/unset.
    ///
    /// Examples:
    ///   jobdl config show
    ///   jobdl config show --parallel 4 --json
    Show(ConfigShowArgs),
}

/// `jobdl config show`: the flags that take part in resolution (a job's location without the job).
#[derive(Debug, Args)]
pub struct ConfigShowArgs {
    /// Where jobs live (as for `download`).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Azure cloud.
    #[arg(long, env = crate::env::AZURE_CLOUD, value_name = "NAME")]
    pub cloud: Option<String>,
    /// Destination directory.
    #[arg(short = 'p', long = "path", value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Transfer options (--json prints the settings as JSON).
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `jobdl completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `--include` / `--exclude`.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Keep only files whose path relative to their output, or as jobdl prints it
    /// (artifacts/logs/a.txt), matches GLOB (repeatable; one that matches nothing is reported).
    ///
    /// Gitignore-style: `*` stays within one directory, `**` crosses them; a pattern without `/`
    /// matches a name at any depth (`*.txt`); a leading `/` anchors it at the output's root; a
    /// directory name keeps everything below it (`logs`, `logs/**/*.txt`).
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out files whose path relative to their output matches GLOB (repeatable; wins over
    /// --include).
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
}

/// Where jobs live: a Foundry project, an Azure ML workspace or an MLflow tracking server (one
/// definition for every command that takes a job, and for `config show`).
#[derive(Debug, Args, Clone, Default)]
pub struct SourceArgs {
    /// Azure AI Foundry project endpoint: https://<account>.services.ai.azure.com/api/projects/<project>.
    #[arg(long, env = crate::env::AZURE_AI_PROJECT_ENDPOINT, value_name = "URL")]
    pub project_endpoint: Option<String>,
    /// Azure ML workspace: subscription ID (default: the Azure CLI's current subscription).
    #[arg(short = 's', long, env = crate::env::AZURE_SUBSCRIPTION_ID, value_name = "ID", hide_env_values = true)]
    pub subscription: Option<String>,
    /// Azure ML workspace: resource group (default: `az configure --defaults group=...`).
    #[arg(short = 'g', long, env = crate::env::AZURE_RESOURCE_GROUP, value_name = "NAME")]
    pub resource_group: Option<String>,
    /// Azure ML workspace name (default: `az configure --defaults workspace=...`).
    #[arg(short = 'w', long, env = crate::env::AZUREML_WORKSPACE_NAME, value_name = "NAME")]
    pub workspace: Option<String>,
    /// MLflow tracking server (https://host[/prefix]; http only for loopback), or `databricks` /
    /// `databricks://PROFILE`; JOB is then a run id.
    #[arg(long, env = crate::env::MLFLOW_TRACKING_URI, value_name = "URL")]
    pub mlflow_uri: Option<String>,
    /// Kubeflow Pipelines API base (http://127.0.0.1:8888 port-forwarded, or
    /// https://<host>/pipeline); JOB is then a run id, whose outputs are read from S3-compatible
    /// storage (--s3-endpoint).
    #[arg(long, env = crate::env::KF_PIPELINES_ENDPOINT, value_name = "URL")]
    pub kfp_endpoint: Option<String>,
    /// Kubeflow multi-user (profiles): the profile namespace whose runs `jobs` lists (the
    /// multi-user API refuses a listing without one).
    #[arg(long, env = crate::env::JOBDL_KFP_NAMESPACE, value_name = "NS")]
    pub namespace: Option<String>,
}

/// Where S3-compatible storage is (Kubeflow outputs, `cp s3://`).
#[derive(Debug, Args, Clone, Default)]
pub struct S3Args {
    /// S3-compatible endpoint (path-style addressing), e.g. http://127.0.0.1:9000 for a
    /// port-forwarded MinIO/SeaweedFS; default AWS S3.
    #[arg(long, env = crate::env::AWS_ENDPOINT_URL, value_name = "URL", hide_env_values = true)]
    pub s3_endpoint: Option<String>,
    /// Region S3 requests are signed for [env: AWS_REGION, AWS_DEFAULT_REGION] [default:
    /// us-east-1].
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Allow a plain http endpoint (--s3-endpoint, --kfp-endpoint) that is not a loopback address.
    #[arg(long)]
    pub allow_http: bool,
}

/// The job and where it lives (every command that takes a job).
#[derive(Debug, Args, Clone)]
pub struct JobArgs {
    /// The job name (also its run id), or the URL of its page in Azure ML studio, the MLflow UI or the Kubeflow UI.
    pub job: String,
    /// Where the job lives.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Azure cloud: AzureCloud, AzureUSGovernment or AzureChinaCloud.
    #[arg(long, env = crate::env::AZURE_CLOUD, value_name = "NAME", default_value = crate::hosts::Cloud::DEFAULT_NAME)]
    pub cloud: String,
    /// Kubeflow: read the API bearer token from PATH (e.g. the in-cluster service-account token
    /// /var/run/secrets/kubeflow/pipelines/token) instead of JOBDL_ACCESS_TOKEN.
    #[arg(long, value_name = "PATH")]
    pub kfp_token_file: Option<PathBuf>,
    /// Kubeflow: where the run's outputs live (minio://BUCKET/PATH or s3://BUCKET/PATH), instead
    /// of the run's pipeline_root and KFP's defaults.
    #[arg(long, value_name = "URI")]
    pub pipeline_root: Option<String>,
    /// S3-compatible storage.
    #[command(flatten)]
    pub s3: S3Args,
}

/// `jobdl ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Where the job lives.
    #[command(flatten)]
    pub job: JobArgs,
    /// List this named output (repeatable); `default` means the default artifacts.
    #[arg(long = "output", value_name = "NAME")]
    pub outputs: Vec<String>,
    /// List every named output and the default artifacts.
    #[arg(long, alias = "all", conflicts_with = "outputs")]
    pub all_outputs: bool,
    /// Poll until the job is in a terminal state, then list.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (90s, 15m, 2h, 1h30m or seconds); exit 5.
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<String>,
    /// List what exists now of a job that is not finished (instead of exit 5); the files may
    /// still change.
    #[arg(long, conflicts_with = "wait")]
    pub allow_running: bool,
    /// File filters.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Transfer options (--json prints the plan as JSON).
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `jobdl show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Where the job lives.
    #[command(flatten)]
    pub job: JobArgs,
    /// Transfer options (--json prints the job as JSON).
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `jobdl jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Where the jobs live.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Azure cloud: AzureCloud, AzureUSGovernment or AzureChinaCloud.
    #[arg(long, env = crate::env::AZURE_CLOUD, value_name = "NAME", default_value = crate::hosts::Cloud::DEFAULT_NAME)]
    pub cloud: String,
    /// Kubeflow: read the API bearer token from PATH instead of JOBDL_ACCESS_TOKEN.
    #[arg(long, value_name = "PATH")]
    pub kfp_token_file: Option<PathBuf>,
    /// Kubeflow: allow a plain http --kfp-endpoint that is not a loopback address.
    #[arg(long)]
    pub allow_http: bool,
    /// Only jobs in this status (repeatable or a comma list; case-insensitive). Each source's
    /// own words work (Completed, FINISHED, SUCCEEDED…), and `completed`, `failed`, `canceled`
    /// and `queued` also match the other sources' words for that state.
    #[arg(long, value_name = "STATUS", value_delimiter = ',')]
    pub status: Vec<String>,
    /// Show at most N jobs.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Output options (--json prints the list as JSON).
    #[command(flatten)]
    pub transfer: TransferArgs,
}

impl JobsArgs {
    /// The equivalent `download` arguments without a job (used only to locate the source).
    pub fn to_download(&self) -> DownloadArgs {
        locating(self.to_job_args(), &self.transfer)
    }

    /// The equivalent job arguments without a job (used only to locate the source).
    pub fn to_job_args(&self) -> JobArgs {
        JobArgs {
            job: String::new(),
            source: self.source.clone(),
            cloud: self.cloud.clone(),
            kfp_token_file: self.kfp_token_file.clone(),
            pipeline_root: None,
            s3: S3Args { allow_http: self.allow_http, ..S3Args::default() },
        }
    }
}

impl LsArgs {
    /// The equivalent `download` arguments (nothing is downloaded).
    pub fn to_download(&self) -> DownloadArgs {
        DownloadArgs {
            target: self.job.clone(),
            more_jobs: Vec::new(),
            children: false,
            top: None,
            metric: None,
            experiment: None,
            status: Vec::new(),
            limit: 0,
            outputs: self.outputs.clone(),
            all_outputs: self.all_outputs,
            path: None,
            wait: self.wait,
            timeout: self.timeout.clone(),
            allow_running: self.allow_running,
            follow: false,
            poll_interval: None,
            shard: None,
            skip_existing: false,
            overwrite: false,
            dry_run: true,
            best: None,
            filter: self.filter.clone(),
            transfer: self.transfer.clone(),
        }
    }
}

/// `download` arguments that only locate `job` and its source (nothing is downloaded).
fn locating(job: JobArgs, transfer: &TransferArgs) -> DownloadArgs {
    let ls = LsArgs {
        job,
        outputs: Vec::new(),
        all_outputs: false,
        wait: false,
        timeout: None,
        allow_running: false,
        filter: FilterArgs::default(),
        transfer: transfer.clone(),
    };
    ls.to_download()
}

impl ShowArgs {
    /// The equivalent `download` arguments (used only to locate the job).
    pub fn to_download(&self) -> DownloadArgs {
        locating(self.job.clone(), &self.transfer)
    }
}

/// Options shared by every command that transfers files.
#[derive(Debug, Args, Clone)]
pub struct TransferArgs {
    /// Connections (files and ranged chunks) in flight at once. Default: start at 8 and add
    /// more, up to 256, while they bring more throughput (capped servers, long round trips).
    #[arg(long, value_name = "N", env = crate::env::JOBDL_PARALLEL)]
    pub parallel: Option<usize>,
    /// Attempts per data request before a file fails (metadata calls: 5).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Cap the total download rate of all connections: a size per second such as 200M or 50MB. Default: no cap.
    #[arg(long, value_name = "RATE", env = crate::env::JOBDL_MAX_RATE)]
    pub max_rate: Option<String>,
    /// Abort an attempt that received no byte for this long (e.g. 120s, 5m). Never a total limit.
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Wait this long for another jobdl writing the same destination (default 0: exit at once).
    #[arg(long, value_name = "DURATION")]
    pub lock_timeout: Option<String>,
    /// Extra host[:port] that URLs from the service may point to (repeatable; loopback may be http).
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    pub allow_host: Vec<String>,
    /// Print exactly one JSON document on stdout (progress, notes and the summary stay on stderr;
    /// -q silences them).
    #[arg(long)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// More detail on stderr (-v requests, -vv retries and decisions).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Colour the `error:`/`warning:` prefixes on stderr: auto (stderr is a terminal and NO_COLOR
    /// is unset), always or never.
    #[arg(long, value_name = "WHEN", value_enum)]
    pub color: Option<ColorWhen>,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// When stderr is a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `jobdl download`.
#[derive(Debug, Args, Clone)]
pub struct DownloadArgs {
    /// The job and where it lives.
    #[command(flatten)]
    pub target: JobArgs,
    /// More jobs to download in the same run. With several jobs each lands in DIR/<JOB>/ (DIR:
    /// -p, default the current directory) with its own manifest; one that fails does not stop
    /// the others (exit 6 at the end).
    #[arg(value_name = "JOB", index = 2)]
    pub more_jobs: Vec<String>,
    /// Download the newest runs of this experiment (MLflow, Azure ML, Foundry) instead of named
    /// jobs, each into DIR/<JOB>/; see --status and --limit.
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,
    /// With --experiment: only runs in this status (repeatable or a comma list; the words of
    /// `jobdl jobs --status`, e.g. completed).
    #[arg(long, value_name = "STATUS", value_delimiter = ',', requires = "experiment")]
    pub status: Vec<String>,
    /// With --experiment: at most N runs, newest first.
    #[arg(long, value_name = "N", default_value_t = 20, requires = "experiment")]
    pub limit: usize,
    /// Download JOB's child runs (a pipeline's steps) instead of JOB, each into DIR/<step>/ (the
    /// step's display name made a safe folder name; -p DIR, default the current directory).
    /// JOB's own status gates them (--wait, --allow-running). Azure ML, Foundry, MLflow.
    #[arg(long, conflicts_with_all = ["experiment", "top"])]
    pub children: bool,
    /// Download the K best trials of sweep JOB (its child runs ranked by the sweep's primary
    /// metric, or --metric), each into DIR/<trial>/; trials without the metric are left out.
    #[arg(long, value_name = "K", conflicts_with = "experiment")]
    pub top: Option<usize>,
    /// With --top: rank the trials by this metric's latest value, lowest (min) or highest (max)
    /// first; needed for an MLflow parent run, optional for an Azure ML sweep.
    #[arg(long, value_name = "METRIC:min|max", requires = "top")]
    pub metric: Option<String>,
    /// Download this named output (repeatable); `default` means the default artifacts.
    #[arg(long = "output", value_name = "NAME")]
    pub outputs: Vec<String>,
    /// Download every named output and the default artifacts.
    #[arg(long, alias = "all", conflicts_with = "outputs")]
    pub all_outputs: bool,
    /// Destination directory (default ./<JOB>).
    #[arg(short = 'p', long = "path", alias = "download-path", value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Poll until the job is in a terminal state, then download.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (90s, 15m, 2h, 1h30m or seconds); exit 5.
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<String>,
    /// Download what exists now of a job that is not finished (instead of exit 5): the files may
    /// be incomplete; `--json` says `"partial": true` and the manifest records it.
    #[arg(long, conflicts_with = "wait")]
    pub allow_running: bool,
    /// Start on a running job and keep pulling new and changed files (by ETag, size, MD5) at
    /// every poll until the job ends, then make a final complete pass and exit with the job's
    /// outcome: 0 when it succeeded, 8 when it Failed or was Canceled (6 when files failed).
    /// A folder new at a poll appears in the destination only once all its files are verified.
    #[arg(long)]
    pub follow: bool,
    /// Pause between two polls of --follow, and first pause of --wait (90s, 15m, 200ms or
    /// seconds). Default: the poll_interval setting (JOBDL_POLL_INTERVAL, 10s).
    #[arg(long, value_name = "DURATION")]
    pub poll_interval: Option<String>,
    /// Fetch only this machine's share of the files: K/N (K counts from 0, as RANK,
    /// JOB_COMPLETION_INDEX and SLURM_PROCID do: 0/3, 1/3, 2/3), balanced by bytes; the N shares
    /// are disjoint and together hold every file. `auto` reads the scheduler's variables
    /// (JOB_COMPLETION_INDEX + JOBDL_SHARD_COUNT, RANK + WORLD_SIZE, SLURM_PROCID + SLURM_NTASKS).
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<String>,
    /// Kept for scripts: keeping local files that still match the service is the default now.
    #[arg(long)]
    pub skip_existing: bool,
    /// Replace local files that differ from what jobdl recorded (or, without a record, from the
    /// service); by default such a file is refused (exit 6) and left as it is.
    #[arg(long)]
    pub overwrite: bool,
    /// Resolve everything and print the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Download only the checkpoint folder of the step where METRIC was best (min or max) in the
    /// run's logged history (MLflow / Databricks): the folder named checkpoint-<step>,
    /// checkpoint_<step>, step-<n>, step_<n>, epoch=<n> or epoch_<n>, at any depth.
    #[arg(long, value_name = "METRIC:min|max")]
    pub best: Option<String>,
    /// File filters.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Transfer options.
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `jobdl verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The destination a download wrote (holds .jobdl/manifest.json).
    pub dest: PathBuf,
    /// Also list the job again on the service (the configured source and credentials, as for
    /// `download`) and name the files that are new there, changed (size, MD5 or ETag) or deleted.
    #[arg(long)]
    pub remote: bool,
    /// Check only the manifest of this shard (K/N, as given to `download --shard`); by default
    /// every manifest in DEST/.jobdl/ is checked.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// With --remote: where the job lives (as for `download`).
    #[command(flatten)]
    pub source: SourceArgs,
    /// With --remote: Azure cloud.
    #[arg(long, env = crate::env::AZURE_CLOUD, value_name = "NAME", default_value = crate::hosts::Cloud::DEFAULT_NAME)]
    pub cloud: String,
    /// With --remote: Kubeflow API bearer token file (as for `download`).
    #[arg(long, value_name = "PATH")]
    pub kfp_token_file: Option<PathBuf>,
    /// With --remote: where a Kubeflow run's outputs live (as for `download`).
    #[arg(long, value_name = "URI")]
    pub pipeline_root: Option<String>,
    /// With --remote: S3-compatible storage.
    #[command(flatten)]
    pub s3: S3Args,
    /// With --remote: extra host[:port] that URLs from the service may point to (repeatable).
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    pub allow_host: Vec<String>,
    /// Print exactly one JSON document on stdout and nothing else.
    #[arg(long)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// More detail on stderr (-v names every file checked).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Colour the `error:`/`warning:` prefixes on stderr: auto, always or never.
    #[arg(long, value_name = "WHEN", value_enum)]
    pub color: Option<ColorWhen>,
}

/// `jobdl cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// A blob URL, or a container/prefix URL, carrying a SAS; or s3://BUCKET/PREFIX (every
    /// object under it) or s3://BUCKET/KEY (one object).
    pub url: String,
    /// Destination directory.
    pub dir: PathBuf,
    /// Azure cloud whose storage hosts are allowed.
    #[arg(long, env = crate::env::AZURE_CLOUD, value_name = "NAME", default_value = crate::hosts::Cloud::DEFAULT_NAME)]
    pub cloud: String,
    /// S3-compatible storage (s3:// URLs).
    #[command(flatten)]
    pub s3: S3Args,
    /// Kept for scripts: keeping local files that still match the service is the default now.
    #[arg(long)]
    pub skip_existing: bool,
    /// List what would be downloaded (sizes and local paths); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Fetch only this machine's share of the files: K/N (K counts from 0, as RANK,
    /// JOB_COMPLETION_INDEX and SLURM_PROCID do: 0/3, 1/3, 2/3), balanced by bytes; the N shares
    /// are disjoint and together hold every file. `auto` reads the scheduler's variables
    /// (JOB_COMPLETION_INDEX + JOBDL_SHARD_COUNT, RANK + WORLD_SIZE, SLURM_PROCID + SLURM_NTASKS).
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<String>,
    /// Accepted for azcopy users and ignored: cp always takes everything below a prefix.
    #[arg(long, hide = true)]
    pub recursive: bool,
    /// Replace local files that differ from what jobdl recorded (or, without a record, from the
    /// service); by default such a file is refused (exit 6) and left as it is.
    #[arg(long)]
    pub overwrite: bool,
    /// Also write DIR/.jobdl/manifest.json (what `jobdl verify` checks). Without it DIR holds
    /// exactly the copied files.
    #[arg(long)]
    pub manifest: bool,
    /// File filters (paths relative to the listed prefix).
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Transfer options.
    #[command(flatten)]
    pub transfer: TransferArgs,
}

//! `jobdl download`: resolve where the job lives (Foundry project or Azure ML workspace), gate on
//! its status (or wait), follow a reused pipeline step or a sweep's best child, resolve the
//! requested outputs, plan, and hand the plan to the engine.
use super::{Session, absolute, execute};
use crate::auth::TokenSource;
use crate::blob::BlobClient;
use crate::cli::DownloadArgs;
use crate::env;
use crate::error::Error;
use crate::hosts::Cloud;
use crate::http::MetaClient;
use crate::plan::{Filter, Plan};
use crate::provider::azureml::{AzureMl, Config};
use crate::provider::foundry::{Foundry, parse_endpoint};
use crate::provider::kfp::Kfp;
use crate::provider::mlflow::Mlflow;
use crate::provider::{Job, OutputError, Provider, Resolved};
use crate::report::Printer;
use crate::settings::{AzureCliDefaults, Common, JobSource, Settings, env_url, job_source, parse_duration};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Longest pause between two `--wait` polls.
const MAX_POLL: Duration = Duration::from_secs(60);

/// Where a sweep parent's own default artifacts go (as azure-ai-ml).
const SWEEP_PARENT_DIR: &str = "hd-artifacts";

/// What the user asked for.
#[derive(Debug, PartialEq)]
enum Want {
    Default,
    Named(String),
}

/// The values of az's `--output/-o` (never a job output jobdl could find).
const AZ_OUTPUT_FORMATS: &[&str] = &["json", "jsonc", "table", "tsv", "yaml", "yamlc", "none"];

/// `-p 'model*'`: a glob given as the destination (it would become a folder named `model*`).
pub(crate) fn check_destination(path: Option<&std::path::Path>) -> Result<(), Error> {
    let Some(p) = path else { return Ok(()) };
    let text = p.to_string_lossy();
    if text.contains(['*', '?', '[']) {
        return Err(Error::usage(format!(
            "-p/--path '{text}' looks like a glob, but it is the destination directory; to pick files use \
             --include '{text}', to pick a named output --output NAME"
        )));
    }
    Ok(())
}

/// Run `jobdl download`.
pub async fn download(
    args: DownloadArgs,
    settings: &Settings,
    printer: Printer,
    cancel: CancellationToken,
) -> Result<u8, Error> {
    let started = Instant::now();
    // -p, else the configured `destination` expanded with the job's name.
    let path = settings.path(args.path.as_deref(), &args.target.job);
    check_destination(path.as_deref())?;
    if super::many::is_many(&args) {
        return super::many::download_many(args, settings, printer, cancel, started).await;
    }
    let args = DownloadArgs { path, ..args };
    if args.target.job.is_empty() {
        return Err(Error::usage("give the JOB to download (or several, or --experiment NAME)"));
    }
    let best = args.best.as_deref().map(crate::best::parse_spec).transpose()?;
    if args.follow {
        if best.is_some() {
            return Err(Error::usage("--best picks one checkpoint of a finished run; it cannot be used with --follow"));
        }
        return super::follow::follow(args, settings, printer, cancel).await;
    }
    let mut r = resolve(&args, settings, &printer, &cancel).await?;
    let best_folder = match &best {
        Some(spec) => Some(super::best::narrow(spec, &mut r, &printer, &cancel).await?),
        None => None,
    };
    if args.dry_run {
        // The plan view of `ls`: sizes the listing does not give are probed.
        super::ls::probe_sizes(&mut r, &printer, &cancel).await?;
    }
    let job_ref = Some((r.job.name.as_str(), r.job.status.as_str()));
    if r.plan.filtered > 0 {
        crate::log::log(1, format!("{} files left out by --include/--exclude", r.plan.filtered));
    }
    if args.dry_run {
        let actions = super::plan_actions(&r.root, &r.plan.tasks, r.common.overwrite).await;
        printer.dry_run(&r.root, &r.plan, &actions, job_ref);
        return Ok(if r.plan.failures.is_empty() { 0 } else { crate::error::EXIT_FILES_FAILED });
    }
    let session = Session {
        partial: r.partial,
        shard: r.shard,
        request: Some(request(&args, best_folder)),
        ..Session::new(&r.common, &r.client, printer, started, cancel, r.source)
    };
    execute(session, &r.root, r.plan, job_ref).await
}

/// What a download asked for, as its manifest records it (for `verify --remote`).
pub(super) fn request(args: &DownloadArgs, best_folder: Option<String>) -> crate::manifest::Request {
    crate::manifest::Request {
        outputs: args.outputs.clone(),
        all_outputs: args.all_outputs,
        // A `--best` download is its checkpoint folder (what `verify --remote` lists again).
        include: match best_folder {
            Some(folder) if args.filter.include.is_empty() => vec![format!("{folder}/**")],
            _ => args.filter.include.clone(),
        },
        exclude: args.filter.exclude.clone(),
    }
}

/// Everything `download` knows before it transfers a byte (shared with `ls`).
pub(crate) struct Resolution {
    /// Resolved settings.
    pub common: Common,
    /// The run's HTTP client.
    pub client: reqwest::Client,
    /// Blob metadata calls (size probes of `ls`).
    pub blob: BlobClient,
    /// The job as gated (before following a reused step or a sweep's best child).
    pub job: Job,
    /// Absolute destination.
    pub root: std::path::PathBuf,
    /// The filtered plan.
    pub plan: Plan,
    /// Whether sizes the listing did not give may be probed with a blob HEAD (Azure sources).
    pub probe_sizes: bool,
    /// Where the job lives, as the manifest records it.
    pub source: String,
    /// The job was not finished (`--allow-running`): its files may be incomplete.
    pub partial: bool,
    /// `--shard`: the plan holds only this share.
    pub shard: Option<crate::shard::Shard>,
    /// Where the job lives (for calls after planning: `--best`'s metric history).
    pub provider: Provider,
}

/// Settings, HTTP client and provider for a job-addressing command.
pub(crate) struct Located {
    /// Resolved settings.
    pub common: Common,
    /// The run's HTTP client.
    pub client: reqwest::Client,
    /// Blob metadata calls.
    pub blob: BlobClient,
    /// Where the job lives.
    pub provider: Provider,
    /// Where the job lives, as the manifest records it (no secret).
    pub source: String,
}

/// Resolve where the job lives and build the HTTP client (no network call yet).
pub(crate) fn locate(args: &DownloadArgs, settings: &Settings) -> Result<Located, Error> {
    locate_in(args, settings, true)
}

/// Resolve where the jobs live (`jobdl jobs`: no job named).
pub(crate) fn locate_source(args: &DownloadArgs, settings: &Settings) -> Result<Located, Error> {
    locate_in(args, settings, false)
}

/// [`locate`], checking the job name when `named`.
fn locate_in(args: &DownloadArgs, settings: &Settings, named: bool) -> Result<Located, Error> {
    let mut common = settings.common.clone();
    if let Some(p) = &args.poll_interval {
        common.poll_interval = parse_duration(p, "--poll-interval")?;
        if common.poll_interval.is_zero() {
            return Err(Error::usage("--poll-interval must be longer than 0 (e.g. 200ms, 30s, 5m)"));
        }
    }
    let cloud = settings.cloud;
    let source = job_source(&settings.source, &AzureCliDefaults::load())?;
    let described = crate::redact::redact(&match &source {
        JobSource::Project(e) => format!("foundry {e}"),
        JobSource::Workspace(w) => format!(
            "azureml /subscriptions/{}/resourceGroups/{}/workspaces/{}",
            w.subscription, w.resource_group, w.workspace
        ),
        JobSource::Kfp(e) => format!("kfp {e}"),
        JobSource::Mlflow(u) => format!("mlflow {u}"),
    });
    if named {
        crate::safepath::safe_component(&args.target.job)
            .map_err(|e| Error::usage(format!("invalid job name: {e}")))?;
    }
    let client = crate::http::build_client(common.idle_timeout)?;
    let tokens = TokenSource::from_env(common.access_token.clone(), &client, cloud);
    let meta = MetaClient::new(client.clone(), common.meta_retry.clone());
    let blob = BlobClient::new(client.clone(), common.meta_retry.clone()).with_max_entries(common.max_list_entries);
    let provider = match source {
        JobSource::Project(endpoint) => {
            if cloud != Cloud::AzureCloud {
                return Err(Error::usage(format!(
                    "Foundry project endpoints are not verified in {}; only AzureCloud is supported",
                    cloud.name()
                )));
            }
            let base = parse_endpoint(&endpoint, &common.allow)?;
            Provider::Foundry(Box::new(Foundry::new(meta, blob, base, tokens, common.allow.clone())))
        }
        JobSource::Workspace(workspace) => {
            let config = Config {
                workspace,
                cloud,
                arm_endpoint: env_url(env::JOBDL_ARM_ENDPOINT)?,
                storage_endpoint: env_url(env::JOBDL_STORAGE_ENDPOINT)?,
            };
            Provider::AzureMl(AzureMl::new(meta, blob, tokens, common.allow.clone(), config)?)
        }
        JobSource::Kfp(endpoint) => {
            let base = crate::provider::kfp::parse_endpoint(&endpoint, args.target.s3.allow_http)?;
            let token = settings.kfp_token(args.target.kfp_token_file.as_deref())?;
            let s3 = settings.s3(&args.target.s3);
            Provider::Kfp(Box::new(
                Kfp::new(meta, base, token, s3, args.target.pipeline_root.clone(), common.meta_retry.clone())
                    .with_namespace(settings.source.kfp_namespace.clone()),
            ))
        }
        JobSource::Mlflow(uri) => {
            let target = settings.mlflow_target(&uri)?;
            Provider::Mlflow(Box::new(
                Mlflow::new(meta, target, common.allow.clone()).with_max_entries(common.max_list_entries),
            ))
        }
    };
    let blob = BlobClient::new(client.clone(), common.meta_retry.clone()).with_max_entries(common.max_list_entries);
    Ok(Located { common, client, blob, provider, source: described })
}

/// Locate and gate the job, resolve the requested outputs and plan their (filtered) files.
pub(crate) async fn resolve(
    args: &DownloadArgs,
    settings: &Settings,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<Resolution, Error> {
    let located = locate(args, settings)?;
    resolve_located(args, &located, printer, cancel).await
}

/// [`resolve`] with the job's source already located (`--follow` resolves it again at every
/// poll). With `--follow` the gate lets a running job through, as `--allow-running` does.
pub(crate) async fn resolve_located(
    args: &DownloadArgs,
    located: &Located,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<Resolution, Error> {
    resolve_gated(args, located, printer, cancel, &mut None).await
}

/// [`resolve_located`], setting `gated` to the job's status once its gate passed, so a job
/// whose resolution fails after the gate still has a status to report.
pub(crate) async fn resolve_gated(
    args: &DownloadArgs,
    located: &Located,
    printer: &Printer,
    cancel: &CancellationToken,
    gated: &mut Option<String>,
) -> Result<Resolution, Error> {
    let filter = Filter::new(&args.filter.include, &args.filter.exclude)?;
    let timeout = args.timeout.as_deref().map(|t| parse_duration(t, "--timeout")).transpose()?;
    let shard = crate::settings::shard(args.shard.as_deref(), &crate::env::var)?;
    let Located { common, client, blob, provider, source } = located;
    let (common, client, blob, source) = (common.clone(), client.clone(), blob.clone(), source.clone());
    if !args.dry_run {
        // Known before the gate, so an interruption while waiting still names it.
        let dest = args.path.clone().unwrap_or_else(|| args.target.job.clone().into());
        crate::report::set_destination(&absolute(&dest)?);
    }
    let (printer, cancel) = (*printer, cancel.clone());

    // The gate runs before anything is written.
    let job = gate(
        provider,
        &args.target.job,
        args.wait,
        args.allow_running || args.follow,
        timeout,
        common.poll_interval,
        &printer,
        &cancel,
    )
    .await?;
    *gated = Some(job.status.clone());
    let partial = !provider.is_terminal(&job.status);
    // `--follow` says where the job is on its own progress line.
    if partial && !args.follow {
        crate::report::notice(&format!(
            "warning: job '{}' was still {} (not finished): taking the files that exist now, which may be \
             incomplete",
            job.name, job.status
        ));
    }
    let job = tokio::select! {
        j = provider.describe(job) => j?,
        _ = cancel.cancelled() => return Err(Error::Interrupted),
    };
    for note in &job.notes {
        crate::report::notice(note);
    }

    // A reused pipeline step downloads from the run it reused; a sweep from its best child.
    let mut src = job.clone();
    if let Some(reused) = job.reused_run.clone() {
        printer.note(&format!(
            "job '{}' is a reused pipeline step; downloading from the run it reused, '{reused}'",
            job.name
        ));
        src = related_job(provider, &reused, &job.name, "reuses run", &cancel).await?;
    }
    let mut sweep_parent: Option<Job> = None;
    if let Some(child) = src.best_child.clone() {
        let explicit = !args.all_outputs && !args.outputs.is_empty();
        printer.note(&format!(
            "job '{}' is a sweep; downloading its best child run '{child}'{}",
            src.name,
            if explicit { "" } else { " (the sweep's own artifacts go to hd-artifacts/)" }
        ));
        let child_job = related_job(provider, &child, &src.name, "names best child", &cancel).await?;
        if !explicit {
            sweep_parent = Some(src);
        }
        src = child_job;
    } else if src.job_type.eq_ignore_ascii_case("Sweep") {
        printer.note(&format!(
            "warning: sweep job '{}' has no best child run; downloading the sweep's own files",
            src.name
        ));
    }

    let wants = requested(args, &src)?;
    let root = absolute(&args.path.clone().unwrap_or_else(|| args.target.job.clone().into()))?;
    let names: Vec<String> =
        wants.iter().filter_map(|w| if let Want::Named(n) = w { Some(n.clone()) } else { None }).collect();
    if !names.is_empty() {
        tokio::select! {
            r = provider.prepare_outputs(&src, &names) => r?,
            _ = cancel.cancelled() => return Err(Error::Interrupted),
        }
    }
    let only_one = wants.len() == 1 && sweep_parent.is_none();
    let mut plan = Plan { filter, ..Plan::default() };
    let mut seen = HashMap::new();
    for want in wants {
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        match want {
            Want::Default => {
                let mut resolved = tokio::select! {
                    l = provider.default_artifacts(&src) => l?,
                    _ = cancel.cancelled() => return Err(Error::Interrupted),
                };
                let strays = std::mem::take(&mut resolved.strays);
                if args.all_outputs {
                    resolved.listing.failures.extend(strays);
                } else if !strays.is_empty() {
                    let shown: Vec<&str> = strays.iter().take(5).map(|(p, _)| p.as_str()).collect();
                    crate::report::notice(&format!(
                        "note: {} object(s) of the job belong to no output and are not requested: {}{} \
                         (--all-outputs reports them as failed)",
                        strays.len(),
                        shown.join(", "),
                        if strays.len() > 5 { ", …" } else { "" }
                    ));
                }
                add(&mut plan, &root, "artifacts", resolved, &mut seen);
            }
            Want::Named(name) => {
                // `models:/NAME/VERSION` (an MLflow registered model version) lands in
                // `named-outputs/models/NAME/VERSION/`.
                let dir = match name.strip_prefix(crate::provider::mlflow::MODEL_OUTPUT_PREFIX) {
                    Some(rest) if src.output_paths => format!("models/{rest}"),
                    _ => name.clone(),
                };
                let subdir = format!("named-outputs/{dir}");
                let safe = if (src.output_paths || src.task_outputs) && !dir.contains('\\') {
                    // Each component of an artifact path is one directory under named-outputs/.
                    crate::safepath::safe_relative_path(&dir).map(|_| ())
                } else {
                    crate::safepath::safe_component(&name)
                };
                if let Err(e) = safe {
                    plan.fail_output(&subdir, format!("output name is not a safe directory name: {e}"));
                    continue;
                }
                let r = tokio::select! {
                    r = provider.named_output(&src, &name) => r,
                    _ = cancel.cancelled() => return Err(Error::Interrupted),
                };
                match r {
                    Ok(resolved) => {
                        let subdir = resolved.subdir.as_ref().map(|d| format!("named-outputs/{d}")).unwrap_or(subdir);
                        add(&mut plan, &root, &subdir, resolved, &mut seen)
                    }
                    Err(OutputError::Fatal(e)) => return Err(e),
                    Err(OutputError::Denied { message, hint }) if only_one => {
                        return Err(Error::Auth { message, hint });
                    }
                    Err(e) => {
                        let msg = match e {
                            OutputError::Denied { message, hint } => format!("{message}; {hint}"),
                            other => other.to_string(),
                        };
                        printer.note(&format!("warning: {msg}"));
                        plan.fail_output(&subdir, msg);
                    }
                }
            }
        }
    }
    if let Some(parent) = sweep_parent {
        let resolved = tokio::select! {
            l = provider.default_artifacts(&parent) => l?,
            _ = cancel.cancelled() => return Err(Error::Interrupted),
        };
        add(&mut plan, &root, SWEEP_PARENT_DIR, resolved, &mut seen);
    }
    let probe_sizes = !matches!(provider, Provider::Mlflow(_));
    super::warn_unmatched_includes(&plan);
    if let Some(s) = shard {
        plan.keep_shard(s);
        crate::log::log(
            1,
            format!("shard {s}: {} files, {} bytes of this job are this node's", plan.tasks.len(), plan.bytes()),
        );
    }
    Ok(Resolution {
        common,
        client,
        blob,
        job,
        root,
        plan,
        probe_sizes,
        source,
        partial,
        shard,
        provider: provider.clone(),
    })
}

/// Plan one output's files and archives under `subdir`, adding the output's request headers (a
/// storage token of an identity-based datastore) to its files.
fn add(plan: &mut Plan, root: &Path, subdir: &str, resolved: Resolved, seen: &mut HashMap<String, String>) {
    for note in &resolved.notes {
        crate::report::notice(note);
    }
    let before = plan.tasks.len();
    plan.add(root, subdir, resolved.listing, seen);
    plan.add_archives(root, subdir, resolved.archives);
    for t in &mut plan.tasks[before..] {
        t.headers.extend(resolved.headers.iter().cloned());
        if t.sign.is_none() {
            t.sign = resolved.sign.clone();
        }
    }
}

/// GET a job that `from` points to (reused run, best child); 404 names both.
async fn related_job(
    provider: &Provider,
    name: &str,
    from: &str,
    relation: &str,
    cancel: &CancellationToken,
) -> Result<Job, Error> {
    let r = tokio::select! {
        j = provider.get_job(name) => j,
        _ = cancel.cancelled() => return Err(Error::Interrupted),
    };
    r.map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(format!("job '{from}' {relation} '{name}', which was not found")),
        other => other,
    })
}

/// Outputs in the order to fetch them; undeclared names end the run with exit 4.
fn requested(args: &DownloadArgs, job: &Job) -> Result<Vec<Want>, Error> {
    let declared: Vec<&String> = job.outputs.keys().filter(|k| k.as_str() != "default").collect();
    if args.all_outputs {
        let mut v: Vec<Want> = declared.iter().map(|k| Want::Named((*k).clone())).collect();
        v.push(Want::Default);
        return Ok(v);
    }
    if args.outputs.is_empty() {
        return Ok(vec![Want::Default]);
    }
    let mut v = Vec::new();
    for name in &args.outputs {
        let want = if name == "default" {
            Want::Default
        } else if !job.outputs.contains_key(name)
            && let Some(full) = job.output_aliases.get(name)
        {
            // A short name (`model` for `train/model`) when exactly one task has it.
            match full.as_slice() {
                [one] => Want::Named(one.clone()),
                many => {
                    return Err(Error::usage(format!(
                        "output name '{name}' is ambiguous in job '{}': give one of {}",
                        job.name,
                        many.join(", ")
                    )));
                }
            }
        } else if job.output_paths {
            // An artifact path: `a/b/` and `/a/b` name the same sub-tree as `a/b`.
            Want::Named(name.trim_matches('/').to_string())
        } else {
            Want::Named(name.clone())
        };
        if let Want::Named(n) = &want
            && !job.output_paths
            && !job.outputs.contains_key(n)
        {
            let list = if declared.is_empty() {
                "(none)".to_string()
            } else {
                declared.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            };
            // `--output json` is az's output format, not one of the job's outputs.
            let format_hint = if AZ_OUTPUT_FORMATS.contains(&n.as_str()) {
                format!(" (`--output {n}` picks a job output here; for a JSON document use --json)")
            } else {
                String::new()
            };
            return Err(Error::NotFound(format!(
                "job '{}' has no output named '{n}'; its outputs are: {list}{format_hint}",
                job.name
            )));
        }
        if !v.contains(&want) {
            v.push(want);
        }
    }
    Ok(v)
}

/// Get the job and wait (with `--wait`) until its status is terminal; with `allow_running` a job
/// that is not finished is returned as it is.
#[allow(clippy::too_many_arguments)]
pub(super) async fn gate(
    provider: &Provider,
    name: &str,
    wait: bool,
    allow_running: bool,
    timeout: Option<Duration>,
    first_poll: Duration,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<Job, Error> {
    let started = Instant::now();
    let mut interval = first_poll;
    let mut last_status = String::new();
    let mut last_line = Instant::now();
    // `--wait --timeout` ends on time whatever the service does, naming the last status seen.
    let gave_up = |last: &str| {
        let t = timeout.unwrap_or_default();
        Error::NotTerminal {
            job: name.to_string(),
            status: if last.is_empty() { "not known yet (no answer)".to_string() } else { last.to_string() },
            terminal: provider.terminal_states(),
            extra: format!("; gave up after waiting {}", humantime::format_duration(Duration::from_secs(t.as_secs()))),
        }
    };
    loop {
        let left = timeout.filter(|_| wait).map(|t| t.saturating_sub(started.elapsed()));
        let poll = async {
            match left {
                Some(left) => tokio::time::timeout(left, provider.get_job(name)).await.ok(),
                None => Some(provider.get_job(name).await),
            }
        };
        let job = tokio::select! {
            j = poll => match j {
                None => return Err(gave_up(&last_status)),
                Some(Ok(j)) => j,
                // Transient failures while waiting do not end the wait.
                Some(Err(Error::ServiceUnavailable(m))) if wait => {
                    if timeout.is_some_and(|t| started.elapsed() >= t) {
                        let seen = if last_status.is_empty() { String::new() } else { format!(" (last status seen: {last_status})") };
                        return Err(Error::ServiceUnavailable(format!("{m}; gave up waiting{seen}")));
                    }
                    crate::log::log(0, format!("warning: {m}; still waiting"));
                    let pause = match timeout {
                        Some(t) => interval.min(t.saturating_sub(started.elapsed())),
                        None => interval,
                    };
                    if !sleep_or_cancel(pause, cancel).await { return Err(Error::Interrupted); }
                    continue;
                }
                Some(Err(e)) => return Err(e),
            },
            _ = cancel.cancelled() => return Err(Error::Interrupted),
        };
        if provider.is_terminal(&job.status) || allow_running {
            return Ok(job);
        }
        if !wait {
            return Err(Error::NotTerminal {
                job: name.to_string(),
                status: job.status,
                terminal: provider.terminal_states(),
                extra: "; use --wait to wait for it".into(),
            });
        }
        let mut pause = interval;
        if let Some(t) = timeout {
            let left = t.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(gave_up(&last_status));
            }
            pause = pause.min(left);
        }
        if job.status != last_status {
            printer.note(&format!("job '{name}' is {}; waiting…", job.status));
            last_status = job.status.clone();
            last_line = Instant::now();
        } else if heartbeat_due(crate::log::enabled(1), last_line.elapsed(), pause) {
            printer.note(&format!(
                "job '{name}' still {} after {}; next check in {}",
                job.status,
                short_duration(started.elapsed()),
                short_duration(pause)
            ));
            last_line = Instant::now();
        }
        if !sleep_or_cancel(pause, cancel).await {
            return Err(Error::Interrupted);
        }
        interval = interval.mul_f64(1.5).min(MAX_POLL);
    }
}

/// The longest `--wait` stays silent on stderr by default (CI systems kill a step that prints
/// nothing for 10 minutes or so).
const HEARTBEAT: Duration = Duration::from_secs(300);

/// Whether a "still Running" line is due before a pause of `pause`: on every poll at `-v`, else
/// when the next chance to print would come more than [`HEARTBEAT`] after the last line.
fn heartbeat_due(verbose: bool, since_last: Duration, pause: Duration) -> bool {
    verbose || since_last + pause > HEARTBEAT
}

/// `20m`, `1h 5m`, `45s`, `50ms`: whole seconds under a minute, whole minutes above.
pub(crate) fn short_duration(d: Duration) -> String {
    let d = if d < Duration::from_secs(1) {
        Duration::from_millis(d.as_millis() as u64)
    } else if d < Duration::from_secs(60) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_secs(d.as_secs() / 60 * 60)
    };
    humantime::format_duration(d).to_string()
}

pub(crate) async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_heartbeat_every_poll_at_v_and_at_least_every_five_minutes() {
        let s = Duration::from_secs;
        assert!(heartbeat_due(true, s(0), s(10)));
        assert!(!heartbeat_due(false, s(0), s(60)));
        assert!(!heartbeat_due(false, s(240), s(60)));
        // The next chance would come after more than 5 minutes of silence: print now.
        assert!(heartbeat_due(false, s(241), s(60)));
        assert!(heartbeat_due(false, s(299), s(10)));
    }

    #[test]
    fn short_durations() {
        let s = Duration::from_secs;
        assert_eq!(short_duration(s(20 * 60 + 13)), "20m");
        assert_eq!(short_duration(s(3900)), "1h 5m");
        assert_eq!(short_duration(s(60)), "1m");
        assert_eq!(short_duration(Duration::from_millis(45_600)), "45s");
        assert_eq!(short_duration(Duration::from_millis(50)), "50ms");
    }
}

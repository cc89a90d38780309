//! `jobdl download`: resolve the job, gate on its status (or wait), resolve the requested
//! outputs, plan, and hand the plan to the engine.
use super::{Session, absolute, execute};
use crate::auth::TokenSource;
use crate::blob::BlobClient;
use crate::cli::DownloadArgs;
use crate::error::Error;
use crate::hosts::Cloud;
use crate::http::MetaClient;
use crate::plan::Plan;
use crate::provider::foundry::{Foundry, parse_endpoint};
use crate::provider::{Job, is_terminal};
use crate::report::Printer;
use crate::settings::{Common, parse_duration};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Longest pause between two `--wait` polls.
const MAX_POLL: Duration = Duration::from_secs(60);

/// What the user asked for.
#[derive(Debug, PartialEq)]
enum Want {
    Default,
    Named(String),
}

/// Run `jobdl download`.
pub async fn download(args: DownloadArgs, printer: Printer, cancel: CancellationToken) -> Result<u8, Error> {
    let started = Instant::now();
    let common = Common::resolve(&args.transfer, &args.cloud, args.skip_existing)?;
    let workspace = args.subscription.is_some() || args.resource_group.is_some() || args.workspace.is_some();
    let endpoint = match (&args.project_endpoint, workspace) {
        (Some(_), true) if args.workspace.is_some() => {
            return Err(Error::usage(
                "both a project endpoint and an Azure ML workspace are configured; give only one",
            ));
        }
        (Some(e), _) => e.clone(),
        (None, true) => {
            return Err(Error::usage(
                "Azure ML workspaces through ARM (--subscription/--resource-group/--workspace) are not supported yet; \
                 use --project-endpoint https://<account>.services.ai.azure.com/api/projects/<project>",
            ));
        }
        (None, false) => {
            return Err(Error::usage("no project given: pass --project-endpoint URL or set AZURE_AI_PROJECT_ENDPOINT"));
        }
    };
    let cloud: Cloud = args.cloud.parse().map_err(Error::Usage)?;
    if cloud != Cloud::AzureCloud {
        return Err(Error::usage(format!(
            "Foundry project endpoints are not verified in {}; only AzureCloud is supported",
            cloud.name()
        )));
    }
    let base = parse_endpoint(&endpoint, &common.allow)?;
    crate::safepath::safe_component(&args.job).map_err(|e| Error::usage(format!("invalid job name: {e}")))?;
    let timeout = args.timeout.as_deref().map(|t| parse_duration(t, "--timeout")).transpose()?;

    let client = crate::http::build_client(common.idle_timeout).map_err(Error::Io)?;
    let tokens = TokenSource::from_env(common.access_token.clone(), &client);
    let meta = MetaClient::new(client.clone(), common.meta_retry.clone());
    let blob = BlobClient::new(client.clone(), common.meta_retry.clone());
    let foundry = Foundry::new(meta, blob, base, tokens, common.allow.clone());

    // The gate runs before anything is written.
    let job = gate(&foundry, &args.job, args.wait, timeout, common.poll_interval, &printer, &cancel).await?;

    let wants = requested(&args, &job)?;
    let root = absolute(&args.path.clone().unwrap_or_else(|| args.job.clone().into()))?;
    let mut plan = Plan::default();
    let mut seen = HashMap::new();
    for want in wants {
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        match want {
            Want::Default => {
                let listing = tokio::select! {
                    l = foundry.default_artifacts(&job.name) => l?,
                    _ = cancel.cancelled() => return Err(Error::Interrupted),
                };
                plan.add(&root, "artifacts", listing, &mut seen);
            }
            Want::Named(name) => {
                let subdir = format!("named-outputs/{name}");
                if let Err(e) = crate::safepath::safe_component(&name) {
                    plan.fail_output(&subdir, format!("output name is not a safe directory name: {e}"));
                    continue;
                }
                let r = tokio::select! {
                    r = foundry.named_output(&job, &name) => r,
                    _ = cancel.cancelled() => return Err(Error::Interrupted),
                };
                match r {
                    Ok(listing) => plan.add(&root, &subdir, listing, &mut seen),
                    Err(e) => {
                        printer.note(&format!("warning: {e}"));
                        plan.fail_output(&subdir, e);
                    }
                }
            }
        }
    }
    let job_ref = Some((job.name.as_str(), job.status.as_str()));
    if args.dry_run {
        printer.dry_run(&root, &plan, job_ref);
        return Ok(if plan.failures.is_empty() { 0 } else { crate::error::EXIT_FILES_FAILED });
    }
    execute(Session { common: &common, client: &client, printer, started, cancel }, &root, plan, job_ref).await
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
        let want = if name == "default" { Want::Default } else { Want::Named(name.clone()) };
        if let Want::Named(n) = &want
            && !job.outputs.contains_key(n)
        {
            let list = if declared.is_empty() {
                "(none)".to_string()
            } else {
                declared.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            };
            return Err(Error::NotFound(format!(
                "job '{}' has no output named '{n}'; its outputs are: {list}",
                job.name
            )));
        }
        if !v.contains(&want) {
            v.push(want);
        }
    }
    Ok(v)
}

/// Get the job and wait (with `--wait`) until its status is terminal.
async fn gate(
    foundry: &Foundry,
    name: &str,
    wait: bool,
    timeout: Option<Duration>,
    first_poll: Duration,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<Job, Error> {
    let started = Instant::now();
    let mut interval = first_poll;
    let mut last_status = String::new();
    loop {
        let job = tokio::select! {
            j = foundry.get_job(name) => match j {
                Ok(j) => j,
                // Transient failures while waiting do not end the wait.
                Err(Error::ServiceUnavailable(m)) if wait => {
                    crate::log::log(0, format!("warning: {m}; still waiting"));
                    if !sleep_or_cancel(interval, cancel).await { return Err(Error::Interrupted); }
                    continue;
                }
                Err(e) => return Err(e),
            },
            _ = cancel.cancelled() => return Err(Error::Interrupted),
        };
        if is_terminal(&job.status) {
            return Ok(job);
        }
        if !wait {
            return Err(Error::NotTerminal {
                job: name.to_string(),
                status: job.status,
                extra: "; use --wait to wait for it".into(),
            });
        }
        if job.status != last_status {
            printer.note(&format!("job '{name}' is {}; waiting…", job.status));
            last_status = job.status.clone();
        }
        let mut pause = interval;
        if let Some(t) = timeout {
            let left = t.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Error::NotTerminal {
                    job: name.to_string(),
                    status: job.status,
                    extra: format!(
                        "; gave up after waiting {}",
                        humantime::format_duration(Duration::from_secs(t.as_secs()))
                    ),
                });
            }
            pause = pause.min(left);
        }
        if !sleep_or_cancel(pause, cancel).await {
            return Err(Error::Interrupted);
        }
        interval = interval.mul_f64(1.5).min(MAX_POLL);
    }
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}

//! `jobdl download JOB1 JOB2 …`: several jobs in one command. Every job is resolved first (its
//! gate, outputs and plan); one that cannot be resolved fails alone. The plans then run one
//! after another over the same HTTP client (one connection pool), each into its own folder with
//! its own lock and manifest, so `jobdl verify DIR/JOB` and a rerun work per job. The engine
//! writes through one destination directory handle per run, which is why the jobs do not share
//! one transfer; they share one progress display, whose totals are every job's plan.
use super::children::{Selected, Trial};
use super::download::{Located, Resolution, locate, locate_source, request, resolve_gated};
use super::{Session, absolute, execute_pass, progress_mode};
use crate::cli::DownloadArgs;
use crate::error::{EXIT_FILES_FAILED, Error};
use crate::provider::Provider;
use crate::provider::jobs::JobQuery;
use crate::report::{ManyJob, ManySummary, Printer, ProgressReporter};
use crate::settings::Settings;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Whether the command names more than one job, or selects jobs (`--experiment`).
pub(super) fn is_many(args: &DownloadArgs) -> bool {
    !args.more_jobs.is_empty() || args.experiment.is_some() || super::children::selects(args)
}

/// The flags that address one job's files only.
fn refuse_single_job_flags(args: &DownloadArgs) -> Result<(), Error> {
    let one = |flag: &str| {
        Err(Error::usage(format!(
            "{flag} works on one job at a time; give one JOB (several jobs take --output, --all-outputs, \
             --include/--exclude, --wait, --allow-running, -p)"
        )))
    };
    if args.follow {
        return one("--follow");
    }
    if args.best.is_some() {
        return one("--best");
    }
    if args.shard.is_some() {
        return one("--shard");
    }
    if args.dry_run {
        return one("--dry-run (or `jobdl ls JOB`)");
    }
    Ok(())
}

/// The job names in the order given, each once; a name that is not one safe path component is
/// a usage error (it would name the job's folder).
fn job_names(args: &DownloadArgs) -> Result<Vec<String>, Error> {
    if super::children::selects(args) {
        return Ok(Vec::new());
    }
    if args.experiment.is_some() {
        if !args.target.job.is_empty() {
            return Err(Error::usage(
                "--experiment selects the jobs itself; give either JOB... or --experiment NAME, not both",
            ));
        }
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = Vec::new();
    for name in std::iter::once(&args.target.job).chain(&args.more_jobs) {
        crate::safepath::safe_component(name).map_err(|e| Error::usage(format!("invalid job name '{name}': {e}")))?;
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Ok(names)
}

/// Where the jobs go: the base directory (`-p`, else the current directory) and each job's
/// folder in it (a configured `destination` template is expanded with each job's name instead).
struct Destinations {
    base: PathBuf,
    template: Option<String>,
    home: Option<PathBuf>,
}

impl Destinations {
    fn new(args: &DownloadArgs, settings: &Settings) -> Result<Destinations, Error> {
        // A configured template applies when -p is not given.
        let template = settings.destination.clone().filter(|_| args.path.is_none());
        let base = match (&template, &args.path) {
            (None, Some(p)) => p.clone(),
            _ => PathBuf::from("."),
        };
        let home = settings.home.clone();
        Ok(Destinations { base: absolute(&base)?, template, home })
    }

    fn of(&self, job: &str) -> Result<PathBuf, Error> {
        match &self.template {
            Some(t) => absolute(&crate::config::expand_destination(t, job, self.home.as_deref())),
            None => Ok(self.base.join(job)),
        }
    }
}

/// Run `jobdl download` for several jobs.
pub(super) async fn download_many(
    args: DownloadArgs,
    settings: &Settings,
    printer: Printer,
    cancel: CancellationToken,
    started: Instant,
) -> Result<u8, Error> {
    refuse_single_job_flags(&args)?;
    let names = job_names(&args)?;
    let dests = Destinations::new(&args, settings)?;
    crate::report::set_destination(&dests.base);
    // One source, one HTTP client: every job's calls and transfers share its connection pool.
    let located = if args.experiment.is_some() { locate_source(&args, settings)? } else { locate(&args, settings)? };
    let selected: Vec<Selected> = if super::children::selects(&args) {
        super::children::select(&args, &located, &printer, &cancel).await?
    } else {
        let names = match &args.experiment {
            Some(experiment) => experiment_runs(&args, experiment, &located, &printer, &cancel).await?,
            None => names,
        };
        names.into_iter().map(Selected::named).collect()
    };
    let mut jobs: Vec<ManyJob> = Vec::new();
    let mut ready: Vec<(usize, DownloadArgs, Resolution)> = Vec::new();
    let mut interrupted = false;
    for Selected { job: name, folder, trial } in selected {
        // A listed name becomes a folder name (and a JOB) only when it is one path component.
        let dest = match crate::safepath::safe_component(&name).and(crate::safepath::safe_component(&folder)) {
            Ok(()) => dests.of(&folder)?,
            Err(e) => {
                let e = Error::Protocol(format!("the listing names a job '{name}' that is no folder name: {e}"));
                printer.job_failed(&name, &e);
                let mut job = ManyJob::new(&name, &dests.base, &located.source);
                job.error = Some(e);
                jobs.push(job);
                continue;
            }
        };
        let mut job = ManyJob::new(&name, &dest, &located.source);
        job.trial = trial.map(|t| trial_json(&t));
        if interrupted || cancel.is_cancelled() {
            interrupted = true;
            jobs.push(job);
            continue;
        }
        let mut one = args.clone();
        one.target.job = name.clone();
        one.more_jobs.clear();
        one.path = Some(dest);
        let mut gated = None;
        match resolve_gated(&one, &located, &printer, &cancel, &mut gated).await {
            Ok(r) => {
                job.status = Some(r.job.status.clone());
                ready.push((jobs.len(), one, r));
            }
            Err(Error::Interrupted) => interrupted = true,
            Err(e) => {
                printer.job_failed(&name, &e);
                // Its status as the gate read it, when the failure came after the gate.
                job.status = gated;
                job.error = Some(e);
            }
        }
        jobs.push(job);
    }
    // One progress display for every job: each job's plan is known before any transfer starts.
    let progress = ready.first().map(|(_, _, first)| {
        let shares: Vec<(String, usize, u64)> = ready
            .iter()
            .map(|(i, _, r)| (jobs[*i].name.clone(), r.plan.tasks.len() + r.plan.archives.len(), r.plan.bytes()))
            .collect();
        Arc::new(ProgressReporter::for_jobs(progress_mode(&printer, &first.common), &shares))
    });
    for (turn, (i, one, r)) in ready.into_iter().enumerate() {
        if interrupted || cancel.is_cancelled() {
            interrupted = true;
            continue;
        }
        if let Some(p) = &progress {
            p.start_job(turn);
        }
        let session = Session {
            partial: r.partial,
            request: Some(request(&one, None)),
            progress: progress.clone(),
            ..Session::new(&r.common, &r.client, printer, started, cancel.clone(), r.source.clone())
        };
        let job_ref = Some((r.job.name.as_str(), r.job.status.as_str()));
        let job = &mut jobs[i];
        job.partial = r.partial;
        match execute_pass(session, &r.root, r.plan, job_ref).await {
            Ok(pass) => {
                interrupted |= pass.interrupted;
                job.interrupted = pass.interrupted;
                job.ran = true;
                job.files = pass.files;
                job.failures = pass.failures;
            }
            Err(Error::Interrupted) => interrupted = true,
            Err(e) => {
                match &progress {
                    Some(p) => p.suspend(|| printer.job_failed(&job.name, &e)),
                    None => printer.job_failed(&job.name, &e),
                }
                job.error = Some(e);
            }
        }
    }
    if let Some(p) = &progress {
        p.finish();
    }
    let summary = ManySummary { destination: &dests.base, jobs: &jobs, elapsed: started.elapsed(), interrupted };
    printer.many_summary(&summary);
    Ok(exit_code(&jobs, interrupted))
}

/// `--experiment NAME`: the names of its newest runs that `--status` and `--limit` select.
async fn experiment_runs(
    args: &DownloadArgs,
    experiment: &str,
    located: &Located,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<Vec<String>, Error> {
    if matches!(located.provider, Provider::Kfp(_)) {
        return Err(Error::usage(
            "--experiment works with MLflow, Azure ML and Foundry sources; for Kubeflow Pipelines name the runs \
             (`jobdl jobs` lists them)",
        ));
    }
    let query = JobQuery {
        limit: args.limit,
        statuses: super::jobs::status_filter(&args.status, printer),
        max_entries: located.common.max_list_entries.max(1),
        experiment: Some(experiment.to_string()),
    };
    let list = super::jobs::list(&located.provider, &query, printer, cancel).await?;
    if list.jobs.is_empty() {
        let status =
            if args.status.is_empty() { String::new() } else { format!(" in status {}", args.status.join(",")) };
        return Err(Error::NotFound(format!(
            "experiment '{experiment}' has no runs{status} (`jobdl jobs --json` lists the jobs with their experiment)"
        )));
    }
    let names: Vec<String> = list.jobs.into_iter().map(|j| j.name).collect();
    printer.note(&format!("experiment '{experiment}': {} run(s): {}", names.len(), names.join(", ")));
    Ok(names)
}

/// A `--top` trial's section of `--json`: `{"metric", "goal", "value", "rank"}`.
fn trial_json(t: &Trial) -> serde_json::Value {
    let goal = match t.goal {
        crate::best::Goal::Min => "min",
        crate::best::Goal::Max => "max",
    };
    serde_json::json!({"metric": t.metric, "goal": goal, "value": t.value, "rank": t.rank})
}

/// 130 when interrupted; 0 when every job succeeded; when every job failed before its transfer
/// with the same exit code (all not found, all denied), that code; else 6.
fn exit_code(jobs: &[ManyJob], interrupted: bool) -> u8 {
    if interrupted {
        return 130;
    }
    let failed: Vec<&ManyJob> = jobs.iter().filter(|j| j.failed()).collect();
    if failed.is_empty() {
        return 0;
    }
    let codes: Vec<u8> = jobs.iter().filter_map(|j| j.error.as_ref().map(Error::exit_code)).collect();
    match codes.first() {
        Some(&c) if codes.len() == jobs.len() && codes.iter().all(|&x| x == c) => c,
        _ => EXIT_FILES_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(error: Option<Error>) -> ManyJob {
        let mut j = ManyJob::new("j", std::path::Path::new("/d/j"), "src");
        j.error = error;
        j
    }

    #[test]
    fn exit_codes_of_several_jobs() {
        assert_eq!(exit_code(&[job(None), job(None)], false), 0);
        assert_eq!(exit_code(&[job(None), job(Some(Error::NotFound("x".into())))], false), 6);
        assert_eq!(
            exit_code(&[job(Some(Error::NotFound("x".into()))), job(Some(Error::NotFound("y".into())))], false),
            4
        );
        assert_eq!(exit_code(&[job(Some(Error::NotFound("x".into()))), job(Some(Error::Usage("y".into())))], false), 6);
        assert_eq!(exit_code(&[job(None)], true), 130);
    }

    #[test]
    fn names_are_kept_once_in_order_and_must_be_folder_names() {
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(["jobdl", "download", "b", "a", "b"]).unwrap();
        let crate::cli::Command::Download(a) = cli.command else { panic!("not a download") };
        assert_eq!(job_names(&a).unwrap(), ["b", "a"]);
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(["jobdl", "download", "a", ".."]).unwrap();
        let crate::cli::Command::Download(a) = cli.command else { panic!("not a download") };
        assert_eq!(job_names(&a).unwrap_err().exit_code(), 2);
    }
}

//! `download JOB --children` (a pipeline's steps) and `download SWEEP --top K` (a sweep's best
//! trials): which child runs of JOB become the jobs of a several-jobs download
//! (`src/app/many.rs`) and the folder each goes to. JOB's own status gates the selection, as for
//! one job (`--wait`, `--allow-running`); each child is then gated and downloaded by `many.rs`.
use super::download::{Located, gate};
use crate::best::{BestSpec, Goal};
use crate::cli::DownloadArgs;
use crate::error::Error;
use crate::provider::children::{Child, best};
use crate::provider::{Job, Provider};
use crate::report::Printer;
use crate::settings::parse_duration;
use std::collections::HashSet;
use tokio_util::sync::CancellationToken;

/// Longest folder name made from a step's name (bytes), well under the file systems' 255.
const MAX_FOLDER: usize = 120;

/// One job of the download: the run to fetch, its folder under DIR and, for `--top`, why it was
/// chosen.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Selected {
    /// The run id (what `download` takes as JOB).
    pub job: String,
    /// Its folder's name (one safe path component).
    pub folder: String,
    /// `--top`: the metric's value that ranked it.
    pub trial: Option<Trial>,
}

/// Why a trial was chosen (`--top`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Trial {
    /// The metric as logged.
    pub metric: String,
    /// Which end won.
    pub goal: Goal,
    /// Its latest value.
    pub value: f64,
    /// 1 for the best.
    pub rank: usize,
}

impl Selected {
    /// A job named by the user or listed by `--experiment`: its folder is its name.
    pub fn named(job: String) -> Selected {
        Selected { folder: job.clone(), job, trial: None }
    }
}

/// Whether the command selects JOB's child runs (`--children`, `--top`).
pub(super) fn selects(args: &DownloadArgs) -> bool {
    args.children || args.top.is_some()
}

/// JOB's child runs that `--children` or `--top K` select, each with its folder.
pub(super) async fn select(
    args: &DownloadArgs,
    located: &Located,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<Vec<Selected>, Error> {
    let flag = if args.children { "--children" } else { "--top" };
    let metric = args.metric.as_deref().map(parse_metric).transpose()?;
    if args.top == Some(0) {
        return Err(Error::usage("--top K: K must be at least 1"));
    }
    if args.target.job.is_empty() || !args.more_jobs.is_empty() {
        return Err(Error::usage(format!("{flag} takes one JOB: the pipeline or sweep whose child runs to download")));
    }
    if matches!(located.provider, Provider::Kfp(_)) {
        return Err(crate::provider::kfp_steps_refused(flag));
    }
    let timeout = args.timeout.as_deref().map(|t| parse_duration(t, "--timeout")).transpose()?;
    let provider = &located.provider;
    let parent = gate(
        provider,
        &args.target.job,
        args.wait,
        args.allow_running,
        timeout,
        located.common.poll_interval,
        printer,
        cancel,
    )
    .await?;
    match args.top {
        Some(k) => top(provider, &parent, k, metric, printer, cancel).await,
        None => steps(provider, &parent, printer, cancel).await,
    }
}

/// `--metric METRIC:min|max`.
fn parse_metric(raw: &str) -> Result<BestSpec, Error> {
    crate::best::parse_spec(raw).map_err(|_| {
        Error::usage(format!(
            "--metric '{}': expected METRIC:min or METRIC:max (e.g. --metric val_loss:min)",
            crate::safepath::printable(raw)
        ))
    })
}

/// `--children`: every child run, in folder-name order.
async fn steps(
    provider: &Provider,
    parent: &Job,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<Vec<Selected>, Error> {
    let mut children = tokio::select! {
        c = provider.children(parent) => c?,
        _ = cancel.cancelled() => return Err(Error::Interrupted),
    };
    if children.is_empty() {
        return Err(Error::NotFound(format!(
            "job '{}' has no child runs (--children downloads a pipeline's steps; download the job itself without it)",
            parent.name
        )));
    }
    // The service's order is not stable: the folders (and the suffixes that keep two equal
    // names apart) follow the names, then the ids.
    children.sort_by(|a, b| (base_folder(a), &a.id).cmp(&(base_folder(b), &b.id)));
    let selected = assign(children.iter().map(|c| (c, None)).collect());
    let shown: Vec<String> = selected.iter().map(|s| s.folder.clone()).collect();
    printer.note(&format!("job '{}': {} child run(s): {}", parent.name, selected.len(), shown.join(", ")));
    Ok(selected)
}

/// `--top K`: the K trials with the best value of the metric (`--metric`, else the sweep's
/// objective), best first.
async fn top(
    provider: &Provider,
    parent: &Job,
    k: usize,
    metric: Option<BestSpec>,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<Vec<Selected>, Error> {
    let azure = matches!(provider, Provider::AzureMl(_) | Provider::Foundry(_));
    if azure && !parent.job_type.eq_ignore_ascii_case("Sweep") {
        return Err(Error::usage(format!(
            "--top ranks a sweep's trials, and job '{}' is not a sweep (job type '{}'); for a pipeline's steps use \
             --children",
            parent.name,
            crate::safepath::printable(&parent.job_type)
        )));
    }
    let Some(spec) = metric.or_else(|| parent.objective.clone()) else {
        return Err(Error::usage(format!(
            "--top needs the metric to rank by: job '{}' names no objective, so give --metric METRIC:min|max",
            parent.name
        )));
    };
    let trials = tokio::select! {
        t = provider.trials(parent, &spec.metric) => t?,
        _ = cancel.cancelled() => return Err(Error::Interrupted),
    };
    if trials.is_empty() {
        if azure {
            return Err(Error::NotFound(format!("sweep '{}' has no trials yet", parent.name)));
        }
        return Err(Error::usage(format!(
            "--top ranks a parent run's child runs (a sweep's trials), and run '{}' has none",
            parent.name
        )));
    }
    let total = trials.len();
    let chosen = best(trials, spec.goal, k);
    let goal = match spec.goal {
        Goal::Min => "min",
        Goal::Max => "max",
    };
    if chosen.is_empty() {
        return Err(Error::NotFound(format!(
            "--top: none of the {total} trial(s) of '{}' logged '{}' (as logged, case-sensitive)",
            parent.name, spec.metric
        )));
    }
    let picked: Vec<(&Child, Option<Trial>)> = chosen
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let trial = c.value.map(|value| Trial { metric: spec.metric.clone(), goal: spec.goal, value, rank: i + 1 });
            (c, trial)
        })
        .collect();
    let selected = assign(picked);
    let shown: Vec<String> = chosen
        .iter()
        .zip(&selected)
        .map(|(c, s)| format!("{} ({}={})", s.folder, spec.metric, c.value.unwrap_or(f64::NAN)))
        .collect();
    printer.note(&format!(
        "--top {k} by {}:{goal} of the {total} trial(s) of '{}': {}",
        spec.metric,
        parent.name,
        shown.join(", ")
    ));
    Ok(selected)
}

/// The folder a child would get on its own: its name made one safe path component, else its id
/// made one, else `run`.
fn base_folder(c: &Child) -> String {
    c.name.as_deref().and_then(folder_name).or_else(|| folder_name(&c.id)).unwrap_or_else(|| "run".to_string())
}

/// `raw` as one folder name ([`crate::safepath::component_from`], at most [`MAX_FOLDER`] bytes).
fn folder_name(raw: &str) -> Option<String> {
    crate::safepath::component_from(raw, MAX_FOLDER)
}

/// Each child's folder, in order: its [`base_folder`], made distinct from the earlier ones
/// (compared as the file system would: [`crate::safepath::collision_key`]) with `-2`, `-3`…
fn assign(children: Vec<(&Child, Option<Trial>)>) -> Vec<Selected> {
    let mut used: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for (c, trial) in children {
        let base = base_folder(c);
        let mut folder = base.clone();
        let mut n = 1;
        while !used.insert(crate::safepath::collision_key(&folder)) {
            n += 1;
            folder = format!("{base}-{n}");
        }
        out.push(Selected { job: c.id.clone(), folder, trial });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(id: &str, name: Option<&str>) -> Child {
        Child { id: id.into(), name: name.map(str::to_string), ..Child::default() }
    }

    #[test]
    fn step_names_become_safe_distinct_folders() {
        let kids = [
            child("c1", Some("train")),
            child("c2", Some("Train")),
            child("c3", Some("../x")),
            child("c4", Some("a/b")),
            child("c5", Some("")),
            child("c6", Some("..")),
            child("c7", None),
            child("..", Some("..")),
            child("c9", Some("CON")),
            child("c10", Some("train")),
            child("c11", Some("a\u{1b}[2Jb")),
        ];
        let folders: Vec<String> =
            assign(kids.iter().map(|c| (c, None)).collect()).into_iter().map(|s| s.folder).collect();
        assert_eq!(folders, ["train", "Train-2", ".._x", "a_b", "c5", "c6", "c7", "run", "c9", "train-3", "a_[2Jb"]);
        for f in &folders {
            assert!(crate::safepath::safe_component(f).is_ok(), "{f}");
        }
        assert!(folder_name(&"x".repeat(300)).unwrap().len() <= MAX_FOLDER);
    }

    #[test]
    fn metrics_are_metric_colon_goal() {
        assert_eq!(parse_metric("val:loss:min").unwrap(), BestSpec { metric: "val:loss".into(), goal: Goal::Min });
        let e = parse_metric("loss").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--metric"), "{e}");
    }
}

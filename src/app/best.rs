//! `download --best METRIC:min|max`: read the metric's history, pick the best step, and narrow
//! the plan to that step's checkpoint folder (the naming rule is in `crate::best`).
use super::download::Resolution;
use crate::best::{BestSpec, Goal, checkpoints, choose, pick};
use crate::error::Error;
use crate::report::Printer;
use tokio_util::sync::CancellationToken;

/// Keep only the files of the best step's checkpoint folder in `r.plan`; say which step, value
/// and folder were chosen (stderr, and `best` in the `--json` document). Returns the folder.
pub(crate) async fn narrow(
    spec: &BestSpec,
    r: &mut Resolution,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<String, Error> {
    let history = tokio::select! {
        h = r.provider.metric_history(&r.job, &spec.metric) => h?,
        _ = cancel.cancelled() => return Err(Error::Interrupted),
    };
    let Some(point) = pick(&history, spec.goal) else {
        let why = if history.is_empty() {
            "has no logged value of it".to_string()
        } else {
            format!("logged {} value(s) of it, none a finite number", history.len())
        };
        return Err(Error::NotFound(format!(
            "--best {}: run '{}' {why}; check the metric's name (as logged, case-sensitive)",
            spec.metric, r.job.name
        )));
    };
    let found = checkpoints(r.plan.tasks.iter().map(|t| t.display.as_str()));
    let chosen = choose(&found, point.step, spec, point.value)?;
    let prefix = format!("{}/", chosen.folder);
    let before = r.plan.tasks.len();
    r.plan.tasks.retain(|t| t.display.starts_with(&prefix));
    r.plan.archives.retain(|a| a.display.starts_with(&prefix));
    r.plan.failures.retain(|f| f.display.starts_with(&prefix));
    let goal = match spec.goal {
        Goal::Min => "lowest",
        Goal::Max => "highest",
    };
    printer.note(&format!(
        "--best {}: {goal} value {} at step {}; downloading {prefix} ({} of {before} files)",
        spec.metric,
        point.value,
        point.step,
        r.plan.tasks.len()
    ));
    crate::report::set_best(serde_json::json!({
        "metric": spec.metric,
        "goal": match spec.goal { Goal::Min => "min", Goal::Max => "max" },
        "step": point.step,
        "value": point.value,
        "folder": chosen.folder,
    }));
    Ok(chosen.folder)
}

//! `jobdl show <JOB>`: the job's status, type and outputs (types, assets, locations). No status
//! gate: a running job is shown as it is. Nothing here prints a SAS.
use super::download::{Located, locate};
use crate::cli::ShowArgs;
use crate::error::Error;
use crate::report::Printer;
use crate::settings::Settings;
use tokio_util::sync::CancellationToken;

/// Run `jobdl show`.
pub async fn show(
    args: ShowArgs,
    settings: &Settings,
    printer: Printer,
    cancel: CancellationToken,
) -> Result<u8, Error> {
    let dl = args.to_download();
    let Located { provider, .. } = locate(&dl, settings)?;
    let job = tokio::select! {
        j = provider.get_job(&dl.target.job) => j?,
        _ = cancel.cancelled() => return Err(Error::Interrupted),
    };
    // A finished job's outputs (Kubeflow: found in storage); a running one is shown as it is.
    let job = if provider.is_terminal(&job.status) {
        tokio::select! {
            j = provider.describe(job) => j?,
            _ = cancel.cancelled() => return Err(Error::Interrupted),
        }
    } else {
        job
    };
    for note in &job.notes {
        crate::report::notice(note);
    }
    printer.show(&job);
    Ok(0)
}

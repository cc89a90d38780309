//! `jobdl jobs`: the recent jobs of the configured source, newest first, optionally filtered by
//! status. One listing call per page, stopping as soon as `--limit` jobs are found.
use super::download::{Located, locate_source};
use crate::cli::JobsArgs;
use crate::error::Error;
use crate::provider::Provider;
use crate::provider::jobs::{JobList, JobQuery, StatusFilter};
use crate::report::Printer;
use crate::settings::Settings;
use tokio_util::sync::CancellationToken;

/// Run `jobdl jobs`.
pub async fn jobs(
    args: JobsArgs,
    settings: &Settings,
    printer: Printer,
    cancel: CancellationToken,
) -> Result<u8, Error> {
    let dl = args.to_download();
    let Located { common, provider, .. } = locate_source(&dl, settings)?;
    let query = JobQuery {
        limit: args.limit,
        statuses: status_filter(&args.status, &printer),
        max_entries: common.max_list_entries.max(1),
        experiment: None,
    };
    let list = list(&provider, &query, &printer, &cancel).await?;
    printer.jobs(&list.jobs);
    Ok(0)
}

/// `--status` words as a filter; a word no source uses is matched as written, with a warning.
pub(super) fn status_filter(raw: &[String], printer: &Printer) -> StatusFilter {
    let (statuses, unknown) = StatusFilter::new(raw);
    for w in unknown {
        printer.note(&format!(
            "warning: --status '{}' is not a status jobdl knows for any source; matched as written",
            crate::safepath::printable(&w)
        ));
    }
    statuses
}

/// The jobs `query` selects, newest first; says when the `max_list_entries` cap ended the scan.
pub(super) async fn list(
    provider: &Provider,
    query: &JobQuery,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<JobList, Error> {
    let list = tokio::select! {
        l = provider.list_jobs(query) => l?,
        _ = cancel.cancelled() => return Err(Error::Interrupted),
    };
    if let Some(n) = list.capped {
        printer.note(&format!(
            "note: stopped after examining {n} jobs (the max_list_entries limit: raise it with \
             JOBDL_MAX_LIST_ENTRIES or max_list_entries in jobdl.toml)"
        ));
    }
    Ok(list)
}

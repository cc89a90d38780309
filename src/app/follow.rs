//! `jobdl download --follow`: download what a running job has written so far, then at every poll
//! resolve the job again, list again and fetch what is new or changed, until the job reaches a
//! terminal state; the poll that sees it terminal lists after the job ended, so its pass is the
//! final, complete one. The skip rule is the manifest's ([`crate::manifest::decide`]): a file
//! whose listing (size, MD5, ETag) still matches its record is kept, one that changed (a log
//! being appended) is fetched again. The record is kept even without a manifest already there.
use super::download::{locate, resolve_located, short_duration, sleep_or_cancel};
use super::{Pass, Session, execute_pass};
use crate::cli::DownloadArgs;
use crate::error::{EXIT_JOB_UNSUCCESSFUL, Error};
use crate::report::{FollowReport, Printer, Summary};
use crate::settings::Settings;
use crate::transfer::FileResult;
use std::path::PathBuf;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Flags `--follow` does not combine with, and why (exit 2).
pub(crate) fn check_flags(args: &DownloadArgs) -> Result<(), Error> {
    let why = if args.wait {
        "--follow already polls until the job ends (downloading meanwhile); drop --wait"
    } else if args.allow_running {
        "--follow already takes what exists of a running job; drop --allow-running"
    } else if args.dry_run {
        "--follow downloads at every poll; to see what exists now use `jobdl ls JOB --allow-running`"
    } else if args.shard.is_some() {
        "--follow takes the whole job; --shard is not supported with it"
    } else {
        return Ok(());
    };
    Err(Error::usage(why))
}

/// The last pass, kept for the document of a run that ends between two polls.
struct Last {
    pass: Pass,
    root: PathBuf,
    job: (String, String),
}

/// Run `jobdl download --follow`.
pub(crate) async fn follow(
    args: DownloadArgs,
    settings: &Settings,
    printer: Printer,
    cancel: CancellationToken,
) -> Result<u8, Error> {
    check_flags(&args)?;
    let started = Instant::now();
    let located = locate(&args, settings)?;
    let interval = located.common.poll_interval;
    let mut report = FollowReport::default();
    let mut last: Option<Last> = None;
    // The summary of the last pass, with what the polls did.
    let finish = |last: &Last, report: &FollowReport, interrupted: bool, partial: bool| {
        let summary = Summary {
            job: Some((last.job.0.as_str(), last.job.1.as_str())),
            destination: &last.root,
            files: &last.pass.files,
            plan_failures: &last.pass.failures,
            elapsed: started.elapsed(),
            interrupted,
            partial,
            shard: None,
            follow: Some(report.clone()),
        };
        printer.summary(&summary);
    };
    loop {
        report.polls += 1;
        // The notes of the first poll (a reused step, a sweep's child) are not repeated.
        let poll_printer = if report.polls == 1 { printer } else { Printer { json: printer.json, quiet: true } };
        let r = match resolve_located(&args, &located, &poll_printer, &cancel).await {
            Ok(r) => r,
            Err(Error::Interrupted) => {
                return match &last {
                    Some(l) => {
                        finish(l, &report, true, true);
                        Ok(130)
                    }
                    None => Err(Error::Interrupted),
                };
            }
            // A service that fails for a while does not end the follow once files are coming.
            Err(Error::ServiceUnavailable(m)) if last.is_some() => {
                crate::log::log(0, format!("warning: {m}; trying again in {}", short_duration(interval)));
                if !sleep_or_cancel(interval, &cancel).await {
                    if let Some(l) = &last {
                        finish(l, &report, true, true);
                    }
                    return Ok(130);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let status = r.job.status.clone();
        let terminal = located.provider.is_terminal(&status);
        let request = crate::manifest::Request {
            outputs: args.outputs.clone(),
            all_outputs: args.all_outputs,
            include: args.filter.include.clone(),
            exclude: args.filter.exclude.clone(),
        };
        let session = Session {
            partial: !terminal,
            request: Some(request),
            stage: true,
            ..Session::new(&r.common, &r.client, printer, started, cancel.clone(), r.source.clone())
        };
        let job = (r.job.name.clone(), status.clone());
        let pass = execute_pass(session, &r.root, r.plan, Some((&job.0, &job.1))).await?;
        let (new, changed) = fetched(&pass);
        report.new += new;
        report.changed += changed;
        report.folders += pass.folders;
        let failed = pass.failed();
        let interrupted = pass.interrupted;
        let current = Last { pass, root: r.root, job };
        if interrupted {
            finish(&current, &report, true, !terminal);
            return Ok(130);
        }
        if terminal {
            report.ended = true;
            finish(&current, &report, false, false);
            let name = &current.job.0;
            if !located.provider.is_success(&status) {
                printer.note(&format!(
                    "job '{name}' ended {status}: its files are downloaded (exit {EXIT_JOB_UNSUCCESSFUL})"
                ));
                return Ok(EXIT_JOB_UNSUCCESSFUL);
            }
            return Ok(current.pass.exit_code());
        }
        let failures =
            if failed > 0 { format!(", {failed} failed (tried again at the next poll)") } else { String::new() };
        let folders = match current.pass.folders {
            0 => String::new(),
            1 => ", 1 new folder in place".to_string(),
            n => format!(", {n} new folders in place"),
        };
        printer.note(&format!(
            "following {}: {status}, {new} new, {changed} changed{folders}{failures}, next check in {}",
            current.job.0,
            short_duration(interval)
        ));
        last = Some(current);
        if !sleep_or_cancel(interval, &cancel).await {
            if let Some(l) = &last {
                finish(l, &report, true, true);
            }
            return Ok(130);
        }
    }
}

/// Files this pass fetched: (new to the destination, fetched again because they changed).
fn fetched(pass: &Pass) -> (usize, usize) {
    let mut counts = (0, 0);
    for f in pass.files.iter().filter(|f| f.result == FileResult::Downloaded) {
        if pass.recorded_before.contains(&f.display) {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
    }
    counts
}

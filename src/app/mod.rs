//! Use cases: the only code that knows providers AND the transfer engine. Each returns the
//! process exit code; run-ending failures are `Error`s, per-file failures are outcomes.
mod best;
mod children;
mod cp;
mod download;
mod follow;
mod jobs;
mod ls;
mod many;
mod show;
mod stage;
mod verify;

pub use cp::cp;
pub use download::download;
pub use jobs::jobs;
pub use ls::ls;
pub use show::show;

use crate::error::{EXIT_FILES_FAILED, Error};
use crate::plan::{Plan, PlanFailure};
use crate::report::{Printer, ProgressMode, ProgressReporter, Summary};
use crate::settings::{Common, Output, Settings};
use crate::transfer::{self, FileTask};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Make a destination path absolute without resolving symlinks.
pub(crate) fn absolute(p: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(p).map_err(|e| Error::usage(format!("invalid destination {}: {e}", p.display())))
}

/// Take the destination lock, waiting up to `timeout` for another jobdl to finish.
async fn lock(
    root: &crate::fs::Dir,
    name: &str,
    timeout: std::time::Duration,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<crate::fs::DestLock, Error> {
    let started = Instant::now();
    let mut told = false;
    loop {
        match crate::fs::DestLock::acquire_named(root, name) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && started.elapsed() < timeout => {
                if !told {
                    printer.note(&format!("{e}; waiting up to {}", humantime::format_duration(timeout)));
                    told = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                    _ = cancel.cancelled() => return Err(Error::Interrupted),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let hint = if timeout.is_zero() { " (use --lock-timeout to wait for it)" } else { "" };
                return Err(Error::Locked(format!("{e}{hint}")));
            }
            Err(e) => return Err(Error::Io(format!("cannot lock {}: {e}", root.path().display()))),
        }
    }
}

/// Warn (stderr and the `--json` notes) about each `--include` that matched no file of the plan.
/// An archive's entries are known only once it is unpacked, so with archives in the plan this
/// waits for the run ([`execute_pass`] calls it again after unpacking).
pub(crate) fn warn_unmatched_includes(plan: &Plan) {
    if !plan.archives.is_empty() {
        return;
    }
    warn_unmatched(&plan.unmatched_includes());
}

fn warn_unmatched(globs: &[String]) {
    for g in globs {
        crate::report::notice(&format!(
            "warning: --include '{g}' matched no file (a glob matches a path relative to its output, \
             e.g. 'logs/**', or as jobdl prints it, e.g. 'artifacts/logs/**'; `jobdl ls` lists them)"
        ));
    }
}

/// What a run would do with each planned file (`--dry-run`), decided as [`execute`] decides it
/// from the destination's manifest and the files already there; reads only, writes nothing.
pub(crate) async fn plan_actions(root: &Path, tasks: &[FileTask], overwrite: bool) -> Vec<crate::report::PlanAction> {
    use crate::manifest::Decision;
    use crate::report::PlanAction;
    let (root, tasks) = (root.to_path_buf(), tasks.to_vec());
    let n = tasks.len();
    tokio::task::spawn_blocking(move || {
        let Ok(dir) = crate::fs::Dir::open_root(&root) else { return vec![PlanAction::Fetch; tasks.len()] };
        let meta = crate::fs::meta_dir(&dir).ok().flatten();
        let previous = crate::manifest::load(meta.as_ref()).by_path();
        let time = crate::manifest::now();
        tasks
            .iter()
            .map(|t| match crate::manifest::decide(&dir, t, previous.get(&t.display), overwrite, &time) {
                Decision::Fetch => PlanAction::Fetch,
                Decision::Keep { .. } => PlanAction::Keep,
                Decision::Refuse(o) => PlanAction::Refuse(match o.result {
                    transfer::FileResult::Failed(why) => why,
                    _ => "a different local file is there".to_string(),
                }),
            })
            .collect()
    })
    .await
    .unwrap_or_else(|_| vec![PlanAction::Fetch; n])
}

/// How a transfer's progress is shown: for humans on stderr, so `--json` keeps it (stdout
/// carries only the document); bars on a terminal, plain lines elsewhere, nothing with `-q`.
pub(crate) fn progress_mode(printer: &Printer, common: &Common) -> ProgressMode {
    if printer.quiet {
        ProgressMode::Silent
    } else if std::io::stderr().is_terminal() {
        ProgressMode::Bars
    } else {
        ProgressMode::Lines(common.progress_interval)
    }
}

/// What a command has set up before it executes a plan.
pub(crate) struct Session<'a> {
    /// Resolved settings.
    pub common: &'a Common,
    /// The run's HTTP client.
    pub client: &'a reqwest::Client,
    /// Output mode.
    pub printer: Printer,
    /// When the command started.
    pub started: Instant,
    /// Ctrl+C.
    pub cancel: CancellationToken,
    /// Where the files come from, as the manifest records it (never a secret).
    pub source: String,
    /// Whether to write `DEST/.jobdl/manifest.json` (a manifest already there is read either way).
    pub manifest: bool,
    /// The job was not finished (`--allow-running`): recorded in the manifest and `--json`.
    pub partial: bool,
    /// `--shard K/N`: the plan holds only this share; its lock and manifest are the shard's own.
    pub shard: Option<crate::shard::Shard>,
    /// What a download asked for (recorded for `verify --remote`); `None` for `cp`.
    pub request: Option<crate::manifest::Request>,
    /// `--follow`: a folder new at this pass is fetched into `.jobdl/stage/` and appears whole
    /// once all its files are verified (see [`stage`]).
    pub stage: bool,
    /// A progress display shared by several passes (several jobs), which the caller finishes;
    /// `None`: the pass shows its own.
    pub progress: Option<Arc<ProgressReporter>>,
}

impl<'a> Session<'a> {
    /// A session that records a manifest, for an unsharded run of a finished job.
    pub(crate) fn new(
        common: &'a Common,
        client: &'a reqwest::Client,
        printer: Printer,
        started: Instant,
        cancel: CancellationToken,
        source: String,
    ) -> Self {
        Session {
            common,
            client,
            printer,
            started,
            cancel,
            source,
            partial: false,
            shard: None,
            request: None,
            manifest: true,
            stage: false,
            progress: None,
        }
    }
}

/// Create the destination, take its lock, create each file's directory, run the engine on the
/// plan's files and archives, sweep, print the summary and compute the exit code.
pub(crate) async fn execute(
    session: Session<'_>,
    root: &Path,
    plan: Plan,
    job: Option<(&str, &str)>,
) -> Result<u8, Error> {
    let (printer, started, partial, shard) = (session.printer, session.started, session.partial, session.shard);
    let pass = execute_pass(session, root, plan, job).await?;
    let summary = Summary {
        job,
        destination: root,
        files: &pass.files,
        plan_failures: &pass.failures,
        elapsed: started.elapsed(),
        interrupted: pass.interrupted,
        partial,
        shard,
        follow: None,
    };
    printer.summary(&summary);
    Ok(pass.exit_code())
}

/// What one execution of a plan did (the summary is the caller's to print).
pub(crate) struct Pass {
    /// Every planned file's outcome (fetched, kept or failed), sorted by path.
    pub files: Vec<transfer::FileOutcome>,
    /// Failures found before the transfer.
    pub failures: Vec<PlanFailure>,
    /// Ctrl+C stopped it.
    pub interrupted: bool,
    /// The paths the destination's manifest recorded before this pass.
    pub recorded_before: HashSet<String>,
    /// Staged folders that appeared whole at this pass.
    pub folders: usize,
}

impl Pass {
    /// Failed entries (plan failures and files).
    pub(crate) fn failed(&self) -> usize {
        self.failures.len() + self.files.iter().filter(|f| matches!(f.result, transfer::FileResult::Failed(_))).count()
    }

    /// 130 when interrupted, 6 when something failed, else 0.
    pub(crate) fn exit_code(&self) -> u8 {
        if self.interrupted {
            130
        } else if self.failed() > 0 {
            EXIT_FILES_FAILED
        } else {
            0
        }
    }
}

/// [`execute`] without the summary: create the destination, take its lock, create each file's
/// directory, run the engine (and unpack the plan's archives beside it), record the manifest
/// and sweep.
pub(crate) async fn execute_pass(
    session: Session<'_>,
    root: &Path,
    plan: Plan,
    job: Option<(&str, &str)>,
) -> Result<Pass, Error> {
    let Session {
        common,
        client,
        printer,
        started: _,
        cancel,
        source,
        manifest: record,
        partial,
        shard,
        request,
        stage,
        progress,
    } = session;
    match std::fs::symlink_metadata(root) {
        Ok(_) if !root.is_dir() => {
            return Err(Error::usage(format!("destination {} exists and is not a directory", root.display())));
        }
        Ok(_) => {}
        Err(_) => crate::fs::create_root(root)
            .map_err(|e| Error::Io(format!("cannot create destination {}: {e}", root.display())))?,
    }
    // From here on every write goes through this descriptor, never through the path again.
    let root_dir = crate::fs::Dir::open_root(root)
        .map_err(|e| Error::Io(format!("cannot open destination {}: {e}", root.display())))?;
    let lock_name = shard.map_or_else(|| "lock".to_string(), |s| format!("lock-{}", s.tag()));
    let manifest_name = crate::manifest::file_name(shard);
    let lock = lock(&root_dir, &lock_name, common.lock_timeout, &printer, &cancel).await?;
    let mut failures: Vec<PlanFailure> = plan.failures;
    let mut planned = plan.tasks;
    let staging = if stage {
        let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
        stage::Staging::plan(root, &plan.outputs, &mut planned, &exists)
    } else {
        stage::Staging::default()
    };
    let mut tasks: Vec<FileTask> = Vec::with_capacity(planned.len());
    let mut made: HashSet<PathBuf> = HashSet::new();
    for t in planned {
        let dir = t.dest.parent().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
        if !made.contains(&dir) {
            if let Err(e) = root_dir.create_dir_all(&dir) {
                failures.push(PlanFailure { display: t.display.clone(), error: e.to_string() });
                continue;
            }
            made.insert(dir);
        }
        tasks.push(t);
    }
    let keep: HashSet<PathBuf> = tasks.iter().map(|t| t.dest.clone()).collect();
    // What the manifest recorded decides which planned files are kept, fetched or refused.
    let previous = crate::manifest::load_named(Some(lock.meta_dir()), &manifest_name).by_path();
    let recorded_before: HashSet<String> = previous.keys().cloned().collect();
    let (tasks, mut settled, mut kept) =
        match existing(client, &root_dir, tasks, &previous, common.overwrite, &cancel).await {
            Some(v) => v,
            None => {
                lock.release();
                return Err(Error::Interrupted);
            }
        };
    let reporter =
        progress.clone().unwrap_or_else(|| Arc::new(ProgressReporter::with_mode(progress_mode(&printer, common))));
    // Archives (KFP v1 `:read` artifacts) are tasks of the same run: each counts as one file in
    // the progress until its entries are known.
    let mut tasks: Vec<transfer::Task> = tasks.into_iter().map(transfer::Task::File).collect();
    // With archives, which `--include` matched is known once their entries were seen.
    let include_check = (!plan.archives.is_empty()).then(|| (plan.filter.clone(), plan.entry_filter.clone()));
    tasks.extend(plan.archives.into_iter().map(|a| {
        transfer::Task::Archive(transfer::ArchiveTask {
            display: a.display,
            dir: a.dir,
            url: a.source.url,
            headers: a.source.headers,
            decoder: a.source.decoder,
            entries: a.entries,
            limits: common.archive_limits,
        })
    }));
    let mut outcome = transfer::run(client, &common.transfer, &root_dir, tasks, reporter.clone(), cancel).await;
    if progress.is_none() {
        reporter.finish();
    }
    if let Some((files, entries)) = include_check
        && !outcome.interrupted
    {
        warn_unmatched(&crate::plan::unmatched_includes(&files, entries.as_deref()));
    }
    // Staged folders whose files all verified move into place; the files of the others stay
    // staged, unrecorded, until a later pass completes their folder.
    let done: Vec<&transfer::FileOutcome> = outcome.files.iter().chain(settled.iter()).collect();
    let (folders, left) = staging.publish(&root_dir, &done, &failures);
    if !left.is_empty() {
        kept.retain(|e| !left.contains(&e.path));
        outcome.verified.retain(|v| !left.contains(&v.display));
    }
    let mut manifest = crate::manifest::updated(previous, job.map(|j| j.0), &source, kept, &outcome.verified);
    manifest.partial = partial;
    manifest.shard = shard.map(|s| crate::manifest::ShardRecord { index: s.index, count: s.count });
    manifest.request = request;
    // A manifest found there is kept up to date even when this command would not start one.
    let record = record || lock.meta_dir().path().join(&manifest_name).exists();
    if record && let Err(e) = crate::manifest::save_named(lock.meta_dir(), &manifest_name, &manifest) {
        crate::report::notice(&format!(
            "warning: cannot write the manifest {}: {e}; a rerun compares existing files with the service instead",
            lock.meta_dir().path().join(&manifest_name).display()
        ));
    }
    if !settled.is_empty() {
        outcome.files.append(&mut settled);
        outcome.files.sort_by(|a, b| a.display.cmp(&b.display));
    }
    let pass = Pass { files: outcome.files, failures, interrupted: outcome.interrupted, recorded_before, folders };
    let failed = pass.failed();
    // Other shards may be writing part files into the same destination: a shard sweeps nothing.
    if !pass.interrupted && failed == 0 && shard.is_none() {
        // Part files of files no longer in the plan go once a run fully succeeds.
        if let Err(e) = crate::fs::sweep_orphans(&root_dir, &keep) {
            crate::log::log(1, format!("sweep of {}: {e}", root.display()));
        }
    }
    // The destination now holds only the payload (and resumable part files, if any).
    lock.release();
    Ok(pass)
}

/// Files at once whose local copy is examined before the run (most are one `stat`).
const EXAMINED_AT_ONCE: usize = 8;

/// Split the planned tasks by what is already at their final paths (see
/// [`crate::manifest::decide`]): tasks to fetch, the outcomes of the files kept or refused, and
/// the records of the kept ones. `None` when interrupted.
async fn existing(
    client: &reqwest::Client,
    root: &crate::fs::Dir,
    tasks: Vec<FileTask>,
    previous: &std::collections::BTreeMap<String, crate::manifest::Entry>,
    overwrite: bool,
    cancel: &CancellationToken,
) -> Option<(Vec<FileTask>, Vec<transfer::FileOutcome>, Vec<crate::manifest::Entry>)> {
    use crate::manifest::Decision;
    use futures_util::StreamExt;
    let time = crate::manifest::now();
    let decisions = futures_util::stream::iter(tasks)
        .map(|mut task| {
            let (root, rec, time) = (root.clone(), previous.get(&task.display).cloned(), time.clone());
            async move {
                // The listing gave no size (content URIs): one HEAD tells size, MD5 and ETag of an
                // object whose file is already there.
                if task.size.is_none() {
                    let (r, dest) = (root.clone(), task.dest.clone());
                    let present = tokio::task::spawn_blocking(move || {
                        r.place(&dest).ok().and_then(|p| p.open_final().ok().flatten()).is_some()
                    })
                    .await
                    .unwrap_or(false);
                    if present && let Some(h) = transfer::head(client, &task).await {
                        task.size = Some(h.size);
                        task.md5 = task.md5.or(h.md5);
                        task.etag = task.etag.take().or(h.etag);
                    }
                }
                // A decision that could not be made (a panic) leaves the file to the engine.
                let fallback = task.clone();
                tokio::task::spawn_blocking(move || {
                    let d = crate::manifest::decide(&root, &task, rec.as_ref(), overwrite, &time);
                    (task, d)
                })
                .await
                .unwrap_or((fallback, Decision::Fetch))
            }
        })
        .buffered(EXAMINED_AT_ONCE)
        .take_until(cancel.cancelled())
        .collect::<Vec<_>>()
        .await;
    if cancel.is_cancelled() {
        return None;
    }
    let (mut fetch, mut settled, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    for (task, decision) in decisions {
        match decision {
            Decision::Fetch => fetch.push(task),
            Decision::Keep { entry, outcome } => {
                kept.push(entry);
                settled.push(outcome);
            }
            Decision::Refuse(outcome) => settled.push(outcome),
        }
    }
    Some((fetch, settled, kept))
}

/// Parse the process's arguments, run the command and return the exit code.
pub fn main() -> u8 {
    run_from(std::env::args_os())
}

/// Parse `argv` (keeping the matches, which tell a flag from an environment value), run the
/// command and return the exit code. `--help`/`--version` and parse errors exit as clap does.
pub fn run_from<I, T>(argv: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    let parsed = crate::cli::Cli::command()
        .try_get_matches_from(&argv)
        .and_then(|m| crate::cli::Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    match parsed {
        Ok((cli, matches)) => run_cli(cli, &matches),
        Err(e) => usage_error(e, argv.iter().any(|a| a == "--json")),
    }
}

/// A command line clap refused: its own text (help and version are not errors), and with
/// `--json` the contract's error document on stdout as for every other usage error.
fn usage_error(e: clap::Error, json: bool) -> u8 {
    use clap::error::ErrorKind;
    if let Some(msg) = targeted_usage(&e) {
        let printer = Printer { json, quiet: false };
        printer.fatal(&Error::Usage(msg));
        return 2;
    }
    if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let text = e.render().to_string();
    // The first paragraph, on one line ("the following required arguments were not provided: <JOB>").
    let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let message = first.join(" ").trim_start_matches("error: ").to_string();
    let _ = e.print();
    Printer { json: true, quiet: true }.fatal(&Error::Usage(message));
    2
}

/// A targeted message for a flag people bring from other tools (az ml, azcopy, az), instead of
/// clap's generic tip.
fn targeted_usage(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return None };
    let flag = arg.split('=').next().unwrap_or(arg);
    let why = match flag {
        "-n" | "--name" => "jobdl takes the job as its first argument, not as -n/--name (az ml): `jobdl download JOB`",
        "--recursive" | "-r" => {
            "jobdl always downloads everything below a job's output or a cp prefix; drop --recursive (azcopy)"
        }
        "--output-name" => "a named output is chosen with --output NAME (az ml's --output-name)",
        "-o" | "--output" => "for a JSON document use --json (az's --output json / -o json)",
        "--output-format" | "--format" => "for a JSON document use --json",
        _ => return None,
    };
    Some(format!("unexpected argument '{arg}': {why}"))
}

/// The matches of the (innermost) subcommand, which hold its flags.
fn leaf(m: &clap::ArgMatches) -> &clap::ArgMatches {
    match m.subcommand() {
        Some((_, sub)) => leaf(sub),
        None => m,
    }
}

/// Run a parsed command line to completion on a fresh runtime; returns the exit code. `matches`
/// are the ones `cli` was built from (they tell flags, environment and defaults apart).
pub fn run_cli(mut cli: crate::cli::Cli, matches: &clap::ArgMatches) -> u8 {
    use crate::cli::{Command, ConfigCommand};
    let transfer = match &cli.command {
        Command::Download(a) => &a.transfer,
        Command::Cp(a) => &a.transfer,
        Command::Ls(a) => &a.transfer,
        Command::Show(a) => &a.transfer,
        Command::Jobs(a) => &a.transfer,
        Command::Config(ConfigCommand::Show(a)) => &a.transfer,
        Command::Completions(a) => return completions(a.shell),
        Command::Man(a) => return man(a.command.as_deref()),
        Command::Verify(a) => {
            crate::log::set_verbosity(a.verbose);
            set_color(a.color);
            let printer = Printer { json: a.json, quiet: a.quiet };
            if a.remote {
                return verify_remote(cli, matches, printer);
            }
            return verify::verify(a, printer, None).unwrap_or_else(|e| {
                printer.fatal(&e);
                e.exit_code()
            });
        }
    };
    crate::log::set_verbosity(transfer.verbose);
    let printer = Printer { json: transfer.json, quiet: transfer.quiet };
    let output = Output::from(transfer);
    set_color(transfer.color);
    let resolved = match crate::config::Files::load() {
        Ok(files) => {
            let env = crate::env::var;
            crate::settings::resolve(&crate::settings::arg_layer(leaf(matches)), files, &env)
        }
        Err(e) => {
            printer.fatal(&e);
            return e.exit_code();
        }
    };
    let locates_a_job = !matches!(cli.command, Command::Cp(_));
    // A pasted run page (studio, Foundry, MLflow, Kubeflow) names the run and (mostly) its source.
    let job_url = match job_args(&mut cli.command).and_then(|j| crate::jobref::parse(&j.job)) {
        Some(Ok(r)) => Some(r),
        Some(Err(m)) => {
            let e = Error::usage(m);
            printer.fatal(&e);
            return e.exit_code();
        }
        None => None,
    };
    if locates_a_job
        && job_url.as_ref().is_none_or(|r| !r.names_source())
        && let Err(e) = resolved.check_conflicts()
    {
        printer.fatal(&e);
        return e.exit_code();
    }
    // The run id stands for the URL (a `{job}` destination names the run).
    if let (Some(r), Some(j)) = (&job_url, job_args(&mut cli.command)) {
        j.job = r.run().to_string();
    }
    set_color(crate::settings::color(&resolved));
    if let Command::Config(ConfigCommand::Show(_)) = &cli.command {
        let token_set = crate::env::var_os(crate::env::JOBDL_ACCESS_TOKEN).is_some_and(|v| !v.is_empty());
        printer.config(&resolved, token_set);
        return 0;
    }
    let overwrite = match &cli.command {
        Command::Download(a) => a.overwrite,
        Command::Cp(a) => a.overwrite,
        _ => false,
    };
    let mut settings = match Settings::resolve(&resolved, output, overwrite, &crate::env::var) {
        Ok(s) => s,
        Err(e) => {
            printer.fatal(&e);
            return e.exit_code();
        }
    };
    // A pasted job URL's source replaces the configured one.
    if let (Some(r), Some(j)) = (job_url, job_args(&mut cli.command)) {
        crate::log::log(1, format!("{r:?}"));
        r.apply(&mut j.job, &mut settings.source);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            printer.fatal(&Error::Io(format!("cannot start the async runtime: {e}")));
            return 1;
        }
    };
    rt.block_on(async move {
        let cancel = crate::signal::install();
        let result = match cli.command {
            Command::Download(a) => download(a, &settings, printer, cancel).await,
            Command::Cp(a) => cp(a, &settings, printer, cancel).await,
            Command::Ls(a) => ls(a, &settings, printer, cancel).await,
            Command::Show(a) => show(a, &settings, printer, cancel).await,
            Command::Jobs(a) => jobs(a, &settings, printer, cancel).await,
            Command::Config(_) | Command::Completions(_) | Command::Man(_) | Command::Verify(_) => Ok(0),
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                printer.fatal(&e);
                e.exit_code()
            }
        }
    })
}

/// `jobdl verify --remote`: the job's source is resolved as for `download` (flags, environment,
/// configuration files), the job listed again, then the destination verified.
fn verify_remote(cli: crate::cli::Cli, matches: &clap::ArgMatches, printer: Printer) -> u8 {
    let fail = |e: Error| {
        printer.fatal(&e);
        e.exit_code()
    };
    let resolved = match crate::config::Files::load() {
        Ok(files) => {
            let env = crate::env::var;
            crate::settings::resolve(&crate::settings::arg_layer(leaf(matches)), files, &env)
        }
        Err(e) => return fail(e),
    };
    if let Err(e) = resolved.check_conflicts() {
        return fail(e);
    }
    let crate::cli::Command::Verify(args) = cli.command else { return 1 };
    let output = Output { json: args.json, quiet: args.quiet, verbose: args.verbose };
    let settings = match Settings::resolve(&resolved, output, false, &crate::env::var) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(Error::Io(format!("cannot start the async runtime: {e}"))),
    };
    let diffs = rt.block_on(async {
        let cancel = crate::signal::install();
        verify::remote(&args, &settings, &printer, &cancel).await
    });
    match diffs.and_then(|d| verify::verify(&args, printer, Some(&d))) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

/// Decide once whether the stderr prefixes are coloured.
fn set_color(when: Option<crate::cli::ColorWhen>) {
    use crate::cli::ColorWhen;
    let when = when.map(|w| match w {
        ColorWhen::Auto => "auto",
        ColorWhen::Always => "always",
        ColorWhen::Never => "never",
    });
    let no_color = crate::env::var(crate::env::NO_COLOR);
    crate::log::set_color(crate::log::decide_color(when, no_color.as_deref(), std::io::stderr().is_terminal()));
}

/// `jobdl completions <SHELL>`: the completion script on stdout.
fn completions(shell: clap_complete::Shell) -> u8 {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut crate::cli::Cli::command(), "jobdl", &mut buf);
    crate::report::raw(&buf);
    0
}

/// `jobdl man [COMMAND]`: jobdl(1), or one command's page (`jobdl-download(1)`), roff on stdout.
fn man(command: Option<&str>) -> u8 {
    use clap::CommandFactory;
    let top = crate::cli::Cli::command();
    let page = match command {
        None => top,
        Some(name) => {
            let visible = top.get_subcommands().filter(|c| !c.is_hide_set() && c.get_name() != "help");
            let names: Vec<String> = visible.map(|c| c.get_name().to_string()).collect();
            match top.find_subcommand(name).filter(|c| names.iter().any(|n| n == c.get_name())) {
                Some(sub) => {
                    let title = format!("jobdl-{}", sub.get_name());
                    sub.clone()
                        .name(title.clone())
                        .bin_name(format!("jobdl {}", sub.get_name()))
                        .display_name(title)
                        .version(env!("CARGO_PKG_VERSION"))
                        .disable_version_flag(true)
                }
                None => {
                    eprintln!("error: no command '{name}' (commands: {})", names.join(", "));
                    return 2;
                }
            }
        }
    };
    let mut buf = Vec::new();
    match clap_mangen::Man::new(page).render(&mut buf) {
        Ok(()) => {
            crate::report::raw(&buf);
            0
        }
        Err(e) => {
            eprintln!("error: cannot render the man page: {e}");
            1
        }
    }
}

/// The job a command names, for the commands that name one.
fn job_args(command: &mut crate::cli::Command) -> Option<&mut crate::cli::JobArgs> {
    match command {
        crate::cli::Command::Download(a) => Some(&mut a.target),
        crate::cli::Command::Ls(a) => Some(&mut a.job),
        crate::cli::Command::Show(a) => Some(&mut a.job),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ArchiveTask;
    use crate::provider::ArchiveSource;
    use std::time::Duration;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn body() -> Vec<u8> {
        use base64::Engine;
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, data) in [("main.log", &b"log line\n"[..]), ("sub/metrics.json", b"{}")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        }
        let tgz = b.into_inner().unwrap().finish().unwrap();
        format!("{{\"data\":\"{}\"}}", base64::engine::general_purpose::STANDARD.encode(tgz)).into_bytes()
    }

    #[tokio::test]
    async fn archives_run_in_the_engine_and_a_failed_one_exits_6() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/apis/v2beta1/runs/r/nodes/n/artifacts/main-logs:read"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(body()))
            .mount(&server)
            .await;
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("dest");
        let resolved = crate::settings::resolve(&Default::default(), Default::default(), &|_| None);
        let mut common = Settings::resolve(&resolved, Output::default(), false, &|_| None).unwrap().common;
        common.transfer.retry.base_delay = Duration::from_millis(1);
        common.transfer.retry.max_delay = Duration::from_millis(2);
        let client = crate::http::build_client(Duration::from_secs(30)).unwrap();
        let archive = |name: &str, dir: &str| ArchiveTask {
            dir: root.join(dir),
            display: dir.into(),
            source: ArchiveSource {
                rel: name.into(),
                url: url::Url::parse(&format!("{}/apis/v2beta1/runs/r/nodes/n/artifacts/{name}:read", server.uri()))
                    .unwrap(),
                headers: vec![],
                decoder: crate::transfer::Decoder(Arc::new(crate::provider::kfp::read::ReadBody)),
            },
            entries: None,
        };
        let session = || Session {
            common: &common,
            client: &client,
            printer: Printer { json: true, quiet: true },
            started: Instant::now(),
            cancel: CancellationToken::new(),
            source: "test".into(),
            manifest: true,
            partial: false,
            shard: None,
            request: None,
            stage: false,
            progress: None,
        };
        let logs = "named-outputs/train/main-logs";
        let plan = Plan { archives: vec![archive("main-logs", logs)], ..Plan::default() };
        assert_eq!(execute(session(), &root, plan, Some(("r", "SUCCEEDED"))).await.unwrap(), 0);
        assert_eq!(std::fs::read(root.join(logs).join("main.log")).unwrap(), b"log line\n");
        assert_eq!(std::fs::read(root.join(logs).join("sub/metrics.json")).unwrap(), b"{}");
        assert!(!root.join(".jobdl/lock").exists(), "the lock is released");
        // A second archive the server does not have (404): it fails alone, the run exits 6.
        let plan = Plan {
            archives: vec![archive("main-logs", logs), archive("gone", "named-outputs/eval/gone")],
            ..Plan::default()
        };
        assert_eq!(execute(session(), &root, plan, Some(("r", "SUCCEEDED"))).await.unwrap(), EXIT_FILES_FAILED);
        assert!(root.join(logs).join("main.log").is_file());
        assert!(!root.join("named-outputs/eval").exists(), "nothing is left of the failed archive");
    }
}

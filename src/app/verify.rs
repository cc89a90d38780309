//! `jobdl verify DEST`: re-hash the files a download recorded in `DEST/.jobdl/manifest.json`
//! (and the shards' `manifest-shard-K-of-N.json`) and name every one that changed or is missing
//! (exit 6). Reads only. With `--remote` the job is listed again on the service (as `download
//! --dry-run` would list it) and files new, changed or deleted there are named too.
use crate::cli::VerifyArgs;
use crate::error::{EXIT_FILES_FAILED, Error};
use crate::manifest::{Check, Entry, Manifest};
use crate::report::Printer;
use futures_util::StreamExt;
use serde_json::json;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Files hashed at once.
const HASHED_AT_ONCE: usize = 4;

/// `verify --remote`: HEAD requests in flight at once (as `ls`).
const HEADS_AT_ONCE: usize = 8;

/// The manifests of a destination: `manifest.json` and every shard's
/// `manifest-shard-K-of-N.json` (only the one of `--shard` when given), each with its file name.
pub(crate) struct Loaded {
    /// Absolute destination.
    pub root: std::path::PathBuf,
    /// The destination, opened.
    pub dir: crate::fs::Dir,
    /// `DEST/.jobdl/`.
    pub meta: crate::fs::Dir,
    /// (file name, manifest), `manifest.json` first, then the shards' by name.
    pub manifests: Vec<(String, Manifest)>,
}

/// Find and read the manifests `verify` checks (exit 4 when there is none).
pub(crate) fn load(args: &VerifyArgs) -> Result<Loaded, Error> {
    let root = super::absolute(&args.dest)?;
    let dir = crate::fs::Dir::open_root(&root)
        .map_err(|e| Error::NotFound(format!("cannot open destination {}: {e}", root.display())))?;
    let shard = args.shard.as_deref().map(crate::shard::Shard::parse).transpose()?;
    let wanted = crate::manifest::file_name(shard);
    let no_manifest = || {
        Error::NotFound(format!(
            "{} has no manifest ({}/{wanted}): it is written by every download of jobdl 0.2 or later",
            root.display(),
            crate::fs::META_DIR,
        ))
    };
    let meta = crate::fs::meta_dir(&dir).map_err(|e| Error::Io(e.to_string()))?.ok_or_else(no_manifest)?;
    let mut names: Vec<String> = if shard.is_some() {
        vec![wanted.clone()]
    } else {
        let mut shards: Vec<String> = std::fs::read_dir(meta.path())
            .map_err(|e| Error::Io(format!("cannot read {}: {e}", meta.path().display())))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("manifest-shard-") && n.ends_with(".json"))
            .collect();
        shards.sort();
        std::iter::once(crate::manifest::FILE_NAME.to_string()).chain(shards).collect()
    };
    names.retain(|n| matches!(meta.open_regular(std::ffi::OsStr::new(n)), Ok(Some(_))));
    if names.is_empty() {
        return Err(no_manifest());
    }
    let manifests = names.into_iter().map(|n| (n.clone(), crate::manifest::load_named(Some(&meta), &n))).collect();
    Ok(Loaded { root, dir, meta, manifests })
}

/// A difference between the service's current listing and a manifest (`verify --remote`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Remote {
    /// Listed now, not recorded.
    New(String),
    /// Recorded, listed now with another size, MD5, check or ETag (the reason).
    Changed(String, String),
    /// Recorded, no longer listed.
    Deleted(String),
}

/// Run `jobdl verify`: re-hash every recorded file; with `remote` (the differences `verify
/// --remote` found) name those too. Exit 6 when anything differs.
pub fn verify(args: &VerifyArgs, printer: Printer, remote: Option<&[Remote]>) -> Result<u8, Error> {
    let Loaded { root, dir, meta, manifests } = load(args)?;
    let entries: Vec<Entry> = manifests.iter().flat_map(|(_, m)| m.files.iter().cloned()).collect();
    let first = manifests.first().map(|(_, m)| m.clone()).unwrap_or_default();
    let checks = check_all(&dir, &entries);

    let (mut ok, mut changed, mut missing, mut bytes, mut unhashed) = (0usize, 0usize, 0usize, 0u64, 0usize);
    let mut files = Vec::with_capacity(checks.len());
    for (entry, check) in entries.iter().zip(&checks) {
        let mut v = json!({"path": entry.path, "size": entry.size,
            "hash": entry.hash.as_ref().map(|h| h.kind.clone())});
        match check {
            Check::Ok { hashed } => {
                ok += 1;
                bytes += entry.size;
                if !hashed {
                    unhashed += 1;
                }
                v["status"] = json!("ok");
                crate::log::log(1, format!("ok: {}", entry.path));
            }
            Check::Changed(why) => {
                changed += 1;
                v["status"] = json!("changed");
                v["reason"] = json!(why);
                if !printer.json {
                    eprintln!("{}", crate::log::paint(&format!("error: changed: {} ({why})", entry.path)));
                }
            }
            Check::Missing => {
                missing += 1;
                v["status"] = json!("missing");
                if !printer.json {
                    eprintln!("{}", crate::log::paint(&format!("error: missing: {}", entry.path)));
                }
            }
        }
        files.push(v);
    }
    let mut differences = 0;
    if let Some(diffs) = remote {
        differences = diffs.len();
        if !printer.json {
            for d in diffs {
                let line = match d {
                    Remote::New(p) => format!("error: new on the service: {p}"),
                    Remote::Changed(p, why) => format!("error: changed on the service: {p} ({why})"),
                    Remote::Deleted(p) => format!("error: deleted on the service: {p}"),
                };
                eprintln!("{}", crate::log::paint(&crate::redact::redact(&line)));
            }
        }
    }
    let code = if changed + missing + differences > 0 { EXIT_FILES_FAILED } else { 0 };
    if printer.json {
        let mut doc = json!({
            "version": 1,
            "command": "verify",
            "destination": root.display().to_string(),
            "job": first.job,
            "source": first.source,
            "manifest_updated": first.updated,
            "files": files,
            "totals": {"files": checks.len(), "ok": ok, "changed": changed, "missing": missing,
                "bytes": bytes, "size_only": unhashed},
            "exit_code": code,
        });
        let shards: Vec<_> = manifests
            .iter()
            .filter_map(|(_, m)| m.shard.map(|s| json!({"index": s.index, "count": s.count})))
            .collect();
        if !shards.is_empty() {
            doc["shards"] = json!(shards);
        }
        if manifests.iter().any(|(_, m)| m.partial) {
            doc["partial"] = json!(true);
        }
        if let Some(diffs) = remote {
            let pick = |f: fn(&Remote) -> Option<serde_json::Value>| diffs.iter().filter_map(f).collect::<Vec<_>>();
            doc["remote"] = json!({
                "new": pick(|d| if let Remote::New(p) = d { Some(json!(p)) } else { None }),
                "changed": pick(|d| if let Remote::Changed(p, why) = d {
                    Some(json!({"path": p, "reason": why}))
                } else {
                    None
                }),
                "deleted": pick(|d| if let Remote::Deleted(p) = d { Some(json!(p)) } else { None }),
            });
        }
        crate::report::raw(format!("{}\n", crate::redact::scrub(&doc.to_string())).as_bytes());
    } else if !printer.quiet || code != 0 {
        let size_only =
            if unhashed > 0 { format!(" ({unhashed} by size only: no hash recorded)") } else { String::new() };
        let against: Vec<String> = manifests.iter().map(|(n, _)| meta.path().join(n).display().to_string()).collect();
        let service = match remote {
            Some(d) => format!("; {} difference{} with the service", d.len(), if d.len() == 1 { "" } else { "s" }),
            None => String::new(),
        };
        eprintln!(
            "verified {} file{} against {}: {ok} ok{size_only}, {changed} changed, {missing} missing{service}",
            checks.len(),
            if checks.len() == 1 { "" } else { "s" },
            against.join(", ")
        );
    }
    Ok(code)
}

/// `verify --remote`: list each manifest's job again with the configured source (the resolution
/// path of `download`, asking for what the manifest's last run asked for, on its shard) and
/// compare the listing with the records. A manifest of `cp` (no job) cannot be listed again: its
/// SAS was never recorded (exit 2). A source other than the recorded one is refused (exit 2).
pub(crate) async fn remote(
    args: &VerifyArgs,
    settings: &crate::settings::Settings,
    printer: &Printer,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Vec<Remote>, Error> {
    let Loaded { manifests, .. } = load(args)?;
    let mut out = Vec::new();
    for (name, m) in &manifests {
        let Some(job) = m.job.clone() else {
            return Err(Error::usage(format!(
                "{name} records a `jobdl cp` (no job): --remote cannot list it again, its URL's SAS is never \
                 recorded; run the same `jobdl cp` again to fetch what changed"
            )));
        };
        let dl = download_args(args, &job, m)?;
        // The configured source must be the recorded one before anything is asked of it.
        let configured = super::download::locate(&dl, settings)?.source;
        if let Some(recorded) = &m.source
            && *recorded != configured
        {
            return Err(Error::usage(format!(
                "{name} was written from {recorded}, but the configured source is {configured}; give the source \
                 the download used (flags, environment or jobdl.toml)"
            )));
        }
        let r = super::download::resolve(&dl, settings, printer, cancel).await?;
        let recorded = m.by_path();
        let mut listed = std::collections::BTreeSet::new();
        let mut known = Vec::new();
        for task in r.plan.tasks {
            listed.insert(task.display.clone());
            if recorded.contains_key(&task.display) {
                known.push(task);
            } else {
                out.push(Remote::New(task.display));
            }
        }
        // A listing without sizes (content URIs): one HEAD per recorded file tells size, MD5 and
        // ETag, a few at once.
        let (client, probe) = (&r.client, r.probe_sizes);
        let probed = futures_util::stream::iter(known.into_iter().map(|mut task| async move {
            if task.size.is_none()
                && probe
                && let Some(h) = crate::transfer::head(client, &task).await
            {
                task.size = Some(h.size);
                task.md5 = task.md5.or(h.md5);
                task.etag = task.etag.take().or(h.etag);
            }
            task
        }))
        .buffered(HEADS_AT_ONCE)
        .collect::<Vec<_>>();
        let probed = tokio::select! {
            p = probed => p,
            _ = cancel.cancelled() => return Err(Error::Interrupted),
        };
        for task in probed {
            if let Some(rec) = recorded.get(&task.display)
                && let Some(why) = crate::manifest::remote_difference(&task, rec)
            {
                out.push(Remote::Changed(task.display, why));
            }
        }
        for a in &r.plan.archives {
            listed.insert(format!("{}/", a.display));
        }
        for path in recorded.keys() {
            // Files unpacked from an archive are recorded below the archive's directory.
            let in_archive = r.plan.archives.iter().any(|a| path.starts_with(&format!("{}/", a.display)));
            if !listed.contains(path) && !in_archive {
                out.push(Remote::Deleted(path.clone()));
            }
        }
    }
    Ok(out)
}

/// The `download --dry-run` arguments that list again what manifest `m` recorded for `job`.
fn download_args(args: &VerifyArgs, job: &str, m: &Manifest) -> Result<crate::cli::DownloadArgs, Error> {
    use clap::Parser;
    let parsed = crate::cli::Cli::try_parse_from(["jobdl", "download", job, "--dry-run"])
        .map_err(|e| Error::usage(format!("cannot list job '{job}' again: {e}")))?;
    let crate::cli::Command::Download(mut dl) = parsed.command else {
        return Err(Error::Io("cannot build the listing arguments".into()));
    };
    // The source, cloud and allowed hosts are the settings' (flags, environment, files).
    dl.target.kfp_token_file = args.kfp_token_file.clone();
    dl.target.pipeline_root = args.pipeline_root.clone();
    dl.target.s3 = args.s3.clone();
    // A job that is still running is listed as it is now.
    dl.allow_running = true;
    dl.shard = m.shard.map(|s| format!("{}/{}", s.index, s.count));
    if let Some(req) = &m.request {
        dl.outputs = req.outputs.clone();
        dl.all_outputs = req.all_outputs;
        dl.filter.include = req.include.clone();
        dl.filter.exclude = req.exclude.clone();
    }
    Ok(dl)
}

/// Check every entry, a few files at once; results in the entries' order.
fn check_all(dir: &crate::fs::Dir, entries: &[Entry]) -> Vec<Check> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Check>>> = Mutex::new(vec![None; entries.len()]);
    std::thread::scope(|s| {
        for _ in 0..HASHED_AT_ONCE.min(entries.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(entry) = entries.get(i) else { break };
                    let c = crate::manifest::check_file(dir, entry);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(c);
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.into_iter().map(|c| c.unwrap_or_else(|| Check::Changed("not checked".into()))).collect()
}

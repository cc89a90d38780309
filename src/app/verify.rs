//! `jobdl verify DEST`: re-hash the files a download recorded in `DEST/.jobdl/manifest.json`
//! and name every one that changed or is missing (exit 6). Reads only; no network.
use crate::cli::VerifyArgs;
use crate::error::{EXIT_FILES_FAILED, Error};
use crate::manifest::{Check, Entry};
use crate::report::Printer;
use serde_json::json;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Files hashed at once.
const HASHED_AT_ONCE: usize = 4;

/// Run `jobdl verify`.
pub fn verify(args: &VerifyArgs, printer: Printer) -> Result<u8, Error> {
    let root = super::absolute(&args.dest)?;
    let dir = crate::fs::Dir::open_root(&root)
        .map_err(|e| Error::NotFound(format!("cannot open destination {}: {e}", root.display())))?;
    let no_manifest = || {
        Error::NotFound(format!(
            "{} has no manifest ({}/{}): it is written by every download of jobdl 0.2 or later",
            root.display(),
            crate::fs::META_DIR,
            crate::manifest::FILE_NAME
        ))
    };
    let meta = crate::fs::meta_dir(&dir).map_err(|e| Error::Io(e.to_string()))?.ok_or_else(no_manifest)?;
    let present =
        meta.open_regular(std::ffi::OsStr::new(crate::manifest::FILE_NAME)).map_err(|e| Error::Io(e.to_string()))?;
    if present.is_none() {
        return Err(no_manifest());
    }
    let manifest = crate::manifest::load(Some(&meta));
    let checks = check_all(&dir, &manifest.files);

    let (mut ok, mut changed, mut missing, mut bytes, mut unhashed) = (0usize, 0usize, 0usize, 0u64, 0usize);
    let mut files = Vec::with_capacity(checks.len());
    for (entry, check) in manifest.files.iter().zip(&checks) {
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
    let code = if changed + missing > 0 { EXIT_FILES_FAILED } else { 0 };
    if printer.json {
        let doc = json!({
            "version": 1,
            "command": "verify",
            "destination": root.display().to_string(),
            "job": manifest.job,
            "source": manifest.source,
            "manifest_updated": manifest.updated,
            "files": files,
            "totals": {"files": checks.len(), "ok": ok, "changed": changed, "missing": missing,
                "bytes": bytes, "size_only": unhashed},
            "exit_code": code,
        });
        crate::report::raw(format!("{}\n", crate::redact::scrub(&doc.to_string())).as_bytes());
    } else if !printer.quiet || code != 0 {
        let size_only =
            if unhashed > 0 { format!(" ({unhashed} by size only: no hash recorded)") } else { String::new() };
        eprintln!(
            "verified {} file{} against {}: {ok} ok{size_only}, {changed} changed, {missing} missing",
            checks.len(),
            if checks.len() == 1 { "" } else { "s" },
            meta.path().join(crate::manifest::FILE_NAME).display()
        );
    }
    Ok(code)
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

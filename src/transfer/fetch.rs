//! Fetching one file: a single stream (`stream.rs`, in-order MD5, resume from its offset) or
//! parallel ranged chunks (`chunked.rs`), both through the request helpers of `attempt.rs`; then
//! size and checksum verification and atomic publication. Also what bounds every fetch: believable
//! sizes, free space, the part file's lock, and the `HEAD` of a file the listing did not size.
use super::attempt::header_str;
use super::check::{Expected, check_of_file};
use super::chunked::fetch_chunked;
use super::publish::BATCH_MAX;
use super::source::Source;
use super::stream::fetch_stream;
use super::verify::{Md5Status, decode_md5, md5_of_file};
use super::{CheckKind, FileOutcome, FileResult, Verified};
use super::{Ctx, FileTask};
use crate::fs;
use std::fs::File;

/// Bytes gathered from the network before one positional write (bounds memory per connection).
pub(super) const WRITE_BUF: usize = 128 << 10;
/// Progress that resets the retry counter (a trickling but progressing server is never given up on).
pub(super) const PROGRESS_RESET: u64 = 1 << 20;
/// Largest file size believed (1 PiB, the cap the listings apply too): a size a server states
/// only in a response (`Content-Range`, `Content-Length` of a file listed without one) is held
/// to it before anything is allocated for it.
pub(super) const MAX_OBJECT: u64 = 1 << 50;

/// Refuse a size over [`MAX_OBJECT`].
pub(super) fn believable(size: u64, said: &str) -> Result<u64, Stop> {
    if size > MAX_OBJECT {
        return Err(Stop::Fail(format!("{said} {size} bytes, over the 1 PiB any file may have; refusing the file")));
    }
    Ok(size)
}

/// Fail before writing when the file system says the rest of the file cannot fit.
pub(super) fn room_for(place: &fs::Place, need: u64) -> Result<(), Stop> {
    match place.dir.free_bytes() {
        Some(free) if need > free => Err(Stop::Fail(format!(
            "not enough free space: {} more needed in {}, {} free",
            human(need),
            place.dir.path().display(),
            human(free)
        ))),
        _ => Ok(()),
    }
}

/// A byte count for people (binary units, one decimal).
pub(super) fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let (mut v, mut unit) = (n as f64 / 1024.0, 0);
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Why fetching a file stopped.
#[derive(Debug)]
pub(super) enum Stop {
    /// Start the file again from zero (ETag changed, MD5 mismatch).
    Restart(String),
    /// The file fails.
    Fail(String),
    /// The file fails because another run holds its part file: nothing of it is touched.
    Busy(String),
}

/// Open the part file of `place` (locked for this run), mapping "held by another run" apart.
pub(super) fn open_part(place: &fs::Place) -> Result<File, Stop> {
    place.open_part().map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Stop::Busy(e.to_string())
        } else {
            Stop::Fail(format!("cannot create {}: {e}", place.part_path().display()))
        }
    })
}

/// What a finished fetch knows.
pub(super) struct Fetched {
    pub(super) file: File,
    pub(super) total: u64,
    /// MD5 announced by the server, if any.
    pub(super) server_md5: Option<[u8; 16]>,
    /// MD5 computed while streaming (single-stream mode only).
    pub(super) streamed_md5: Option<[u8; 16]>,
    /// The task's other check computed while the bytes landed, if it was.
    pub(super) streamed_check: Option<Expected>,
    /// The object's ETag as the server sent it (recorded on the file for `--skip-existing`).
    pub(super) etag: Option<String>,
}

/// Download, verify and publish one file. Never panics on hostile input; failures are outcomes.
/// A published file comes with what was verified about it (for the manifest).
pub(super) async fn download_file(ctx: &Ctx, task: &FileTask) -> (FileOutcome, Option<Verified>) {
    let mut verified = None;
    let outcome = download_file_inner(ctx, task, &mut verified).await;
    (outcome, verified)
}

async fn download_file_inner(ctx: &Ctx, task: &FileTask, verified: &mut Option<Verified>) -> FileOutcome {
    ctx.reporter.file_started(&task.display, task.size);
    let fail = |msg: String, md5: Md5Status| FileOutcome {
        display: task.display.clone(),
        bytes: 0,
        result: FileResult::Failed(crate::redact::redact(&msg)),
        md5,
        checked: None,
    };
    // The file's directory, reached from the destination's descriptor without following links.
    let place = match ctx.root.place(&task.dest) {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot write {}: {e}", task.dest.display()), Md5Status::Absent),
    };
    if let Some(size) = task.size
        && let Err(Stop::Fail(e) | Stop::Restart(e) | Stop::Busy(e)) = believable(size, "the listing claims")
    {
        return fail(e, Md5Status::Absent);
    }
    let src = Source::new(task);
    let mut counted = 0u64;
    for round in 0..2 {
        // Unknown sizes start with a ranged probe: its Content-Range tells the size, and a big
        // file goes on in parallel chunks.
        let result = if task.size.is_none_or(|s| s > ctx.cfg.chunk_threshold) {
            match fetch_chunked(ctx, &src, &place, &mut counted).await {
                Err(Stop::Restart(r)) if r == FALLBACK => fetch_stream(ctx, &src, &place, &mut counted).await,
                other => other,
            }
        } else {
            fetch_stream(ctx, &src, &place, &mut counted).await
        };
        let fetched = match result {
            Ok(f) => f,
            Err(Stop::Restart(reason)) if round == 0 => {
                crate::log::log(1, format!("{}: {reason}; starting the file again", task.display));
                discard(ctx, &place, &mut counted);
                continue;
            }
            Err(Stop::Busy(reason)) => return fail(reason, Md5Status::Absent),
            Err(Stop::Restart(reason)) | Err(Stop::Fail(reason)) => {
                // Keep a part file only when its resume record lets a rerun continue it, and say
                // so: how much is kept, and how to continue or discard it.
                if !place.has_state() {
                    let _ = place.remove_part();
                    return fail(reason, Md5Status::Absent);
                }
                let kept = place.part_bytes_on_disk().unwrap_or(0);
                let (part, state) = (place.part_path(), place.dir.path().join(place.state_name()));
                return fail(
                    format!(
                        "{reason}; kept {} in {} to resume: run the same command again to continue, \
                         or delete it and {} to discard it",
                        human(kept),
                        part.display(),
                        state.display()
                    ),
                    Md5Status::Absent,
                );
            }
        };
        match verify_and_publish(ctx, task, &place, fetched).await {
            Ok((bytes, md5, checked, record)) => {
                *verified = Some(record);
                return FileOutcome {
                    display: task.display.clone(),
                    bytes,
                    result: FileResult::Downloaded,
                    md5,
                    checked,
                };
            }
            Err((Stop::Restart(reason), _)) if round == 0 => {
                crate::log::log(1, format!("{}: {reason}; starting the file again", task.display));
                discard(ctx, &place, &mut counted);
            }
            Err((Stop::Busy(reason), md5)) => return fail(reason, md5),
            Err((Stop::Restart(reason) | Stop::Fail(reason), md5)) => {
                let _ = place.remove_part();
                let _ = place.remove_state();
                return fail(reason, md5);
            }
        }
    }
    fail("gave up after restarting the file".into(), Md5Status::Absent)
}

pub(super) const FALLBACK: &str = "server ignored Range";

/// Run file-system work (create, truncate, a resume record's read or fsync'd save) on the
/// blocking pool: on a slow or network file system it takes milliseconds, and an async worker
/// busy with it would stall every connection it serves.
pub(super) async fn off_worker<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Stop> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Stop::Fail(format!("internal error: {e}")))
}

fn discard(ctx: &Ctx, place: &fs::Place, counted: &mut u64) {
    let _ = place.remove_part();
    let _ = place.remove_state();
    ctx.reporter.bytes_discarded(*counted);
    *counted = 0;
}

/// What a HEAD request says about an object.
#[derive(Debug, Clone)]
pub struct HeadInfo {
    /// `Content-Length`.
    pub size: u64,
    /// `Content-MD5`, when stored.
    pub md5: Option<[u8; 16]>,
    /// `ETag`.
    pub etag: Option<String>,
}

/// Size, whole-object MD5 and ETag of a task's object from one HEAD request (`None` when the
/// server does not say). Used when planning a rerun of files the listing gave no size for.
pub async fn head(client: &reqwest::Client, task: &FileTask) -> Option<HeadInfo> {
    use reqwest::header::{CONTENT_LENGTH, ETAG};
    let signed = task.sign.as_ref().map(|s| s.0.headers("HEAD", &task.url.url())).unwrap_or_default();
    let mut rb = client.head(task.url.url());
    for (k, v) in task.headers.iter().chain(&signed) {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let started = std::time::Instant::now();
    let sent = rb.send().await;
    if crate::log::enabled(1) {
        let outcome = match &sent {
            Ok(resp) => resp.status().as_u16().to_string(),
            Err(e) => crate::http::describe_transport(e),
        };
        let u = crate::redact::url_for_display(&task.url.url());
        crate::log::log(1, format!("HEAD {u} -> {outcome} ({} ms)", started.elapsed().as_millis()));
    }
    let resp = sent.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let h = resp.headers();
    let size = header_str(h, CONTENT_LENGTH.as_str())?.trim().parse().ok()?;
    Some(HeadInfo {
        size,
        md5: header_str(h, "content-md5").and_then(decode_md5),
        etag: header_str(h, ETAG.as_str()).map(str::to_string),
    })
}

/// Check sizes and MD5, make the part durable and rename it over the final name.
async fn verify_and_publish(
    ctx: &Ctx,
    task: &FileTask,
    place: &fs::Place,
    f: Fetched,
) -> Result<(u64, Md5Status, Option<CheckKind>, Verified), (Stop, Md5Status)> {
    if let Some(want) = task.size
        && want != f.total
    {
        return Err((
            Stop::Fail(format!("size mismatch: listing says {want} bytes, server sent {}", f.total)),
            Md5Status::Absent,
        ));
    }
    let expected = task.md5.or(f.server_md5);
    let total = f.total;
    let streamed = f.streamed_md5;
    let (want_check, streamed_check) = (task.check, f.streamed_check);
    let display = task.display.clone();
    let etag = f.etag;
    let file = f.file;
    type Checked = (Md5Status, Option<CheckKind>, File, Verified);
    let res = tokio::task::spawn_blocking(move || -> Result<Checked, (Stop, Md5Status)> {
        let len = file
            .metadata()
            .map_err(|e| (Stop::Fail(format!("cannot read the part file: {e}")), Md5Status::Absent))?
            .len();
        if len != total {
            return Err((Stop::Restart(format!("part file holds {len} bytes, expected {total}")), Md5Status::Absent));
        }
        let mut md5_value = streamed;
        let status = match expected {
            None => Md5Status::Absent,
            Some(want) => {
                let got = match streamed {
                    Some(m) => m,
                    None => md5_of_file(&file, total)
                        .map_err(|e| (Stop::Fail(format!("cannot read the part file: {e}")), Md5Status::Absent))?,
                };
                if got != want {
                    return Err((Stop::Restart("MD5 mismatch".into()), Md5Status::Mismatch));
                }
                md5_value = Some(got);
                Md5Status::Verified
            }
        };
        let checked = match want_check {
            None => None,
            Some(want) => {
                let got = match streamed_check {
                    Some(c) => c,
                    None => check_of_file(&file, total, &want)
                        .map_err(|e| (Stop::Fail(format!("cannot read the part file: {e}")), status))?,
                };
                if got != want {
                    return Err((Stop::Restart(want.mismatch()), status));
                }
                crate::log::log(1, format!("{display}: verified ({})", want.kind().as_str()));
                Some(want.kind())
            }
        };
        // On the part file, so the record exists exactly when the file does (after the rename).
        if let Some(e) = &etag
            && let Err(err) = fs::record_source_etag(&file, e)
        {
            crate::log::log(2, format!("cannot record the ETag on the file: {err}"));
        }
        let record = Verified {
            display: display.clone(),
            size: total,
            md5: md5_value,
            md5_verified: status == Md5Status::Verified,
            check: want_check.filter(|_| checked.is_some()),
            etag: etag.clone(),
            mtime_ns: file.metadata().ok().as_ref().and_then(fs::modified_ns),
        };
        Ok((status, checked, file, record))
    })
    .await
    .map_err(|e| (Stop::Fail(format!("internal error: {e}")), Md5Status::Absent))?;
    let (status, checked, file, record) = res?;
    let published = if total <= BATCH_MAX {
        ctx.publisher.publish(place.clone(), file).await
    } else {
        let p = place.clone();
        tokio::task::spawn_blocking(move || p.publish(&file)).await.map_err(std::io::Error::other).and_then(|r| r)
    };
    published.map_err(|e| (Stop::Fail(format!("cannot write {}: {e}", place.dest_path().display())), status))?;
    let _ = place.remove_state();
    Ok((total, status, checked, record))
}

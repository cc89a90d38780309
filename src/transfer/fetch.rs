//! Fetching one file: single stream (with in-order MD5) or parallel ranged chunks written in place,
//! retries with backoff, resume of a broken body from its offset (same ETag via `If-Match`),
//! then size/MD5 verification and atomic publication.
use super::check::{CheckHasher, Expected, check_of_file, feed_from_file};
use super::chunked::fetch_chunked;
use super::publish::BATCH_MAX;
use super::stream::fetch_stream;
use super::verify::{Md5Status, decode_md5, md5_of_file};
use super::{CheckKind, FileOutcome, FileResult, Verified};
pub(super) use super::{Ctx, FileTask};
use crate::fs;
use crate::http::retry_after;
use crate::retry::status_is_retryable;
use bytes::Bytes;
use md5::Md5;
use reqwest::header::HeaderMap;
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

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

/// The file's source URL, replaced at most once through the task's refresher after a 403.
pub(super) struct Source<'a> {
    pub(super) task: &'a FileTask,
    /// Current URL and its generation (0 = the planned URL).
    url: std::sync::Mutex<(url::Url, u32)>,
    gate: tokio::sync::Mutex<()>,
}

impl<'a> Source<'a> {
    pub(super) fn new(task: &'a FileTask) -> Self {
        Source { task, url: std::sync::Mutex::new((task.url.url(), 0)), gate: tokio::sync::Mutex::new(()) }
    }

    pub(super) fn current(&self) -> (url::Url, u32) {
        match self.url.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// After a 403 on a URL of generation `used`: whether to try again (with a newer URL).
    pub(super) async fn refresh_after_403(&self, used: u32) -> bool {
        let Some(r) = &self.task.refresh else { return false };
        let _one_at_a_time = self.gate.lock().await;
        let generation = self.current().1;
        if generation > used {
            return true; // a peer chunk refreshed it already
        }
        if generation >= 1 {
            return false; // refreshed once already
        }
        crate::log::log(1, format!("{}: access refused; asking the service for a fresh URL", self.task.display));
        match r.0.refresh().await {
            Some(u) => {
                if let Ok(mut g) = self.url.lock() {
                    *g = (u, generation + 1);
                }
                true
            }
            None => false,
        }
    }
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

/// Parse `Content-Range: bytes a-b/total`.
pub(crate) fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b, t) = (a.trim().parse().ok()?, b.trim().parse().ok()?, total.trim().parse().ok()?);
    (a <= b && b < t).then_some((a, b, t))
}

pub(super) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The server's whole-object MD5: `Content-MD5` on a 200, the provider's header on a 206.
pub(super) fn server_md5(task: &FileTask, h: &HeaderMap, partial: bool) -> Option<[u8; 16]> {
    let name = if partial { task.hints.partial_md5_header.as_deref()? } else { "content-md5" };
    header_str(h, name).and_then(decode_md5)
}

/// A failed attempt: retry (with an optional server delay) or stop.
pub(super) enum Attempt {
    Retry(String, Option<Duration>),
    Stop(Stop),
}

pub(super) fn classify_status(task: &FileTask, status: u16, h: &HeaderMap) -> Attempt {
    let code = task
        .hints
        .error_code_header
        .as_deref()
        .and_then(|n| header_str(h, n))
        .filter(|c| c.len() <= 100 && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    let msg = format!("HTTP {status}{code}");
    if status == 412 {
        Attempt::Stop(Stop::Restart("the blob changed during the download (ETag mismatch)".into()))
    } else if status_is_retryable(status) {
        Attempt::Retry(msg, retry_after(h))
    } else if (300..400).contains(&status) {
        Attempt::Stop(Stop::Fail(format!("{msg}: redirects are not followed")))
    } else {
        Attempt::Stop(Stop::Fail(msg))
    }
}

/// One attempt's response, the connection permit it holds and the URL generation it used.
pub(super) type Sent<'a> = (reqwest::Response, tokio::sync::SemaphorePermit<'a>, u32);

/// Take a connection from the pool and send one GET of `range` pinned to `etag`. A transport
/// error waits out its backoff and returns `None` (try again); exhausted attempts stop the file.
pub(super) async fn send_attempt<'a>(
    ctx: &'a Ctx,
    src: &Source<'_>,
    range: Option<(u64, Option<u64>)>,
    etag: Option<&str>,
    attempt: &mut u32,
) -> Result<Option<Sent<'a>>, Stop> {
    let permit = ctx.budget.acquire().await.ok_or_else(|| Stop::Fail("cancelled".into()))?;
    let (url, generation) = src.current();
    // `-v`: method, redacted URL, range, status and time to the response headers.
    let shown = crate::log::enabled(1).then(|| {
        let r = range.map(|(a, b)| format!(" bytes={a}-{}", b.map(|b| b.to_string()).unwrap_or_default()));
        (crate::redact::url_for_display(&url), r.unwrap_or_default(), std::time::Instant::now())
    });
    let asked = std::time::Instant::now();
    let sent = request(ctx, src.task, url, range, etag).send().await;
    if sent.is_ok() {
        ctx.budget.note_latency(asked.elapsed());
    }
    if let Some((u, r, t)) = &shown {
        let outcome = match &sent {
            Ok(resp) => resp.status().as_u16().to_string(),
            Err(e) => crate::http::describe_transport(e),
        };
        crate::log::log(1, format!("GET {u}{r} -> {outcome} ({} ms)", t.elapsed().as_millis()));
    }
    match sent {
        Ok(r) => Ok(Some((r, permit, generation))),
        Err(e) => {
            drop(permit);
            backoff(ctx, src.task, attempt, crate::http::describe_transport(&e), None).await?;
            Ok(None)
        }
    }
}

/// After an unusable status: wait and return `Ok` to try again (a refused URL is refreshed once
/// first), or say why the file stops.
pub(super) async fn retry_or_stop(
    ctx: &Ctx,
    src: &Source<'_>,
    status: u16,
    h: &HeaderMap,
    generation: u32,
    attempt: &mut u32,
) -> Result<(), Stop> {
    if status == 403 && src.task.refresh.is_some() {
        if src.refresh_after_403(generation).await {
            return Ok(());
        }
        return Err(Stop::Fail("HTTP 403: access refused (also after refreshing the download URL)".into()));
    }
    match classify_status(src.task, status, h) {
        Attempt::Retry(reason, ra) => backoff(ctx, src.task, attempt, reason, ra).await,
        Attempt::Stop(s) => Err(s),
    }
}

/// Wait before the next attempt, or give up when attempts are exhausted.
pub(super) async fn backoff(
    ctx: &Ctx,
    task: &FileTask,
    attempt: &mut u32,
    reason: String,
    ra: Option<Duration>,
) -> Result<(), Stop> {
    *attempt += 1;
    if *attempt >= ctx.cfg.retry.attempts {
        return Err(Stop::Fail(format!("{reason} (after {} attempts)", *attempt)));
    }
    ctx.reporter.retry(&task.display, *attempt, &reason);
    let delay = ctx.cfg.retry.delay(*attempt - 1, ra, &mut rand::rng());
    crate::log::log(2, format!("{}: {reason}; retry {} in {delay:?}", task.display, *attempt));
    tokio::time::sleep(delay).await;
    Ok(())
}

pub(super) fn request(
    ctx: &Ctx,
    task: &FileTask,
    url: url::Url,
    range: Option<(u64, Option<u64>)>,
    etag: Option<&str>,
) -> reqwest::RequestBuilder {
    let signed = task.sign.as_ref().map(|s| s.0.headers("GET", &url)).unwrap_or_default();
    let mut rb = ctx.client.get(url);
    for (k, v) in task.headers.iter().chain(&signed) {
        rb = rb.header(k.as_str(), v.as_str());
    }
    if let Some((start, end)) = range {
        let value = match end {
            Some(e) => format!("bytes={start}-{e}"),
            None => format!("bytes={start}-"),
        };
        rb = rb.header("range", value);
    }
    if let Some(e) = etag {
        rb = rb.header("if-match", e);
    }
    rb
}

/// A write running on the blocking pool; gives back the hashers.
type PendingWrite = tokio::task::JoinHandle<std::io::Result<(Option<Md5>, Option<CheckHasher>, Vec<u8>)>>;

/// Writes a body's bytes at increasing offsets on the blocking pool. One batch is being written
/// while the next is received (the network does not wait for the disk), and an optional MD5 and
/// other check see the bytes in order, read back from the file once written: "verified" speaks of
/// the bytes on disk, not of what the network delivered (a 128 KiB copy out of the page cache per
/// batch, small beside the hash itself).
///
/// The pieces the HTTP stack hands over are written as they are, never copied: a batch holds
/// them until it reaches [`WRITE_BUF`], then one blocking task writes the lot. Memory: two
/// batches, each pinning at most its bytes plus one of hyper's read buffers (≤ ~400 KiB).
/// Copying into our own buffers, as this did before, cost a 4 GiB download ~0.5 s of CPU and
/// held two more 128 KiB buffers per connection.
pub(super) struct PieceWriter {
    file: Arc<File>,
    pending: Option<PendingWrite>,
    hasher: Option<Md5>,
    check: Option<CheckHasher>,
    batch: Vec<Bytes>,
    batched: usize,
    /// File offset of the first byte of `batch`.
    offset: u64,
    /// Where written bytes are read back to be hashed (allocated when a hash is wanted).
    readback: Vec<u8>,
}

impl PieceWriter {
    /// Start writing at `offset`, feeding `hasher` and `check` if given.
    pub fn new(file: Arc<File>, offset: u64, hasher: Option<Md5>, check: Option<CheckHasher>) -> Self {
        let readback = if hasher.is_some() || check.is_some() { vec![0; WRITE_BUF] } else { Vec::new() };
        PieceWriter { file, pending: None, hasher, check, batch: Vec::new(), batched: 0, offset, readback }
    }

    /// The offset after every byte accepted so far.
    pub fn position(&self) -> u64 {
        self.offset + self.batched as u64
    }

    /// Accept a piece (written once the batch is full).
    pub async fn push(&mut self, bytes: Bytes) -> Result<(), Stop> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.batched += bytes.len();
        self.batch.push(bytes);
        if self.batched >= WRITE_BUF {
            self.submit().await?;
        }
        Ok(())
    }

    /// Hand the batch to the blocking pool after the previous write finished.
    async fn submit(&mut self) -> Result<(), Stop> {
        self.wait().await?;
        let batch = std::mem::take(&mut self.batch);
        let len = std::mem::take(&mut self.batched) as u64;
        let (file, offset, mut hasher, mut check, mut readback) =
            (self.file.clone(), self.offset, self.hasher.take(), self.check.take(), std::mem::take(&mut self.readback));
        self.offset += len;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let mut at = offset;
            for piece in &batch {
                fs::write_all_at(&file, piece, at)?;
                at += piece.len() as u64;
            }
            if hasher.is_some() || check.is_some() {
                feed_from_file(&file, offset, at, &mut readback, hasher.as_mut(), check.as_mut())?;
            }
            fs::start_writeback(&file, offset, len);
            Ok((hasher, check, readback))
        }));
        Ok(())
    }

    async fn wait(&mut self) -> Result<(), Stop> {
        if let Some(p) = self.pending.take() {
            let (hasher, check, readback) = p
                .await
                .map_err(|e| Stop::Fail(format!("internal error: {e}")))?
                .map_err(|e| Stop::Fail(format!("cannot write: {e}")))?;
            self.hasher = hasher;
            self.check = check;
            self.readback = readback;
        }
        Ok(())
    }

    /// Write what is batched and wait for every write. Returns the end offset and the hashers.
    pub async fn finish(mut self) -> Result<(u64, Option<Md5>, Option<CheckHasher>), Stop> {
        if !self.batch.is_empty() {
            self.submit().await?;
        }
        self.wait().await?;
        Ok((self.offset, self.hasher, self.check))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9, 10)));
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}

//! Fetching one file: single stream (with in-order MD5) or parallel ranged chunks written in place,
//! retries with backoff, resume of a broken body from its offset (same ETag via `If-Match`),
//! then size/MD5 verification and atomic publication.
use super::verify::{Md5Status, decode_md5, md5_of_file, md5_of_path};
use super::{Ctx, FileOutcome, FileResult, FileTask};
use crate::fs;
use crate::http::{describe_transport, retry_after};
use crate::retry::status_is_retryable;
use md5::{Digest, Md5};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap};
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Bytes gathered from the network before one positional write (bounds memory per connection).
const WRITE_BUF: usize = 1 << 20;
/// Progress that resets the retry counter (a trickling but progressing server is never given up on).
const PROGRESS_RESET: u64 = 1 << 20;

/// The file's source URL, replaced at most once through the task's refresher after a 403.
struct Source<'a> {
    task: &'a FileTask,
    /// Current URL and its generation (0 = the planned URL).
    url: std::sync::Mutex<(url::Url, u32)>,
    gate: tokio::sync::Mutex<()>,
}

impl<'a> Source<'a> {
    fn new(task: &'a FileTask) -> Self {
        Source { task, url: std::sync::Mutex::new((task.url.clone(), 0)), gate: tokio::sync::Mutex::new(()) }
    }

    fn current(&self) -> (url::Url, u32) {
        match self.url.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// After a 403 on a URL of generation `used`: whether to try again (with a newer URL).
    async fn refresh_after_403(&self, used: u32) -> bool {
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
enum Stop {
    /// Start the file again from zero (ETag changed, MD5 mismatch).
    Restart(String),
    /// The file fails.
    Fail(String),
}

/// What a finished fetch knows.
struct Fetched {
    file: File,
    total: u64,
    /// MD5 announced by the server, if any.
    server_md5: Option<[u8; 16]>,
    /// MD5 computed while streaming (single-stream mode only).
    streamed_md5: Option<[u8; 16]>,
}

/// Download, verify and publish one file. Never panics on hostile input; failures are outcomes.
pub(super) async fn download_file(ctx: &Ctx, task: &FileTask) -> FileOutcome {
    ctx.reporter.file_started(&task.display, task.size);
    let fail = |msg: String, md5: Md5Status| FileOutcome {
        display: task.display.clone(),
        bytes: 0,
        result: FileResult::Failed(crate::redact::redact(&msg)),
        md5,
    };
    if ctx.cfg.skip_existing
        && let Some(outcome) = existing_matches(ctx, task).await
    {
        return outcome;
    }
    let part = fs::part_path(&task.dest);
    let src = Source::new(task);
    let mut counted = 0u64;
    for round in 0..2 {
        // Unknown sizes start with a ranged probe: its Content-Range tells the size, and a big
        // file goes on in parallel chunks.
        let result = if task.size.is_none_or(|s| s > ctx.cfg.chunk_threshold) {
            match fetch_chunked(ctx, &src, &part, &mut counted).await {
                Err(Stop::Restart(r)) if r == FALLBACK => fetch_stream(ctx, &src, &part, &mut counted).await,
                other => other,
            }
        } else {
            fetch_stream(ctx, &src, &part, &mut counted).await
        };
        let fetched = match result {
            Ok(f) => f,
            Err(Stop::Restart(reason)) if round == 0 => {
                crate::log::log(1, format!("{}: {reason}; starting the file again", task.display));
                discard(ctx, task, &mut counted);
                continue;
            }
            Err(Stop::Restart(reason)) | Err(Stop::Fail(reason)) => {
                // Keep a part file only when its resume record lets a rerun continue it.
                if !fs::state_path(&task.dest).exists() {
                    let _ = fs::remove_if_exists(&part);
                }
                return fail(reason, Md5Status::Absent);
            }
        };
        match verify_and_publish(task, &part, fetched).await {
            Ok((bytes, md5)) => {
                return FileOutcome { display: task.display.clone(), bytes, result: FileResult::Downloaded, md5 };
            }
            Err((Stop::Restart(reason), _)) if round == 0 => {
                crate::log::log(1, format!("{}: {reason}; starting the file again", task.display));
                discard(ctx, task, &mut counted);
            }
            Err((Stop::Restart(reason) | Stop::Fail(reason), md5)) => {
                let _ = fs::remove_if_exists(&part);
                let _ = fs::remove_if_exists(&fs::state_path(&task.dest));
                return fail(reason, md5);
            }
        }
    }
    fail("gave up after restarting the file".into(), Md5Status::Absent)
}

const FALLBACK: &str = "server ignored Range";

fn discard(ctx: &Ctx, task: &FileTask, counted: &mut u64) {
    let _ = fs::remove_if_exists(&fs::part_path(&task.dest));
    let _ = fs::remove_if_exists(&fs::state_path(&task.dest));
    ctx.reporter.bytes_discarded(*counted);
    *counted = 0;
}

/// `--skip-existing`: keep the local file when its size (and MD5, when known) match.
/// When the listing gave no size, a HEAD asks the server for size and MD5.
async fn existing_matches(ctx: &Ctx, task: &FileTask) -> Option<FileOutcome> {
    let meta = tokio::fs::symlink_metadata(&task.dest).await.ok()?;
    if !meta.is_file() {
        return None;
    }
    let (size, md5) = match task.size {
        Some(s) => (s, task.md5),
        None => head_size_md5(ctx, task).await?,
    };
    if meta.len() != size {
        return None;
    }
    let md5 = match md5 {
        Some(want) => {
            let path = task.dest.clone();
            let got = tokio::task::spawn_blocking(move || md5_of_path(&path)).await.ok()?.ok()?;
            if got != want {
                return None;
            }
            Md5Status::Verified
        }
        None => Md5Status::Absent,
    };
    Some(FileOutcome { display: task.display.clone(), bytes: meta.len(), result: FileResult::Skipped, md5 })
}

/// Size and whole-object MD5 from a HEAD request (`None` when the server does not say).
async fn head_size_md5(ctx: &Ctx, task: &FileTask) -> Option<(u64, Option<[u8; 16]>)> {
    let _permit = ctx.conns.acquire().await.ok()?;
    let mut rb = ctx.client.head(task.url.clone());
    for (k, v) in &task.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let resp = rb.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let h = resp.headers();
    let size = header_str(h, CONTENT_LENGTH.as_str())?.trim().parse().ok()?;
    Some((size, header_str(h, "content-md5").and_then(decode_md5)))
}

/// Check sizes and MD5, make the part durable and rename it over the final name.
async fn verify_and_publish(
    task: &FileTask,
    part: &std::path::Path,
    f: Fetched,
) -> Result<(u64, Md5Status), (Stop, Md5Status)> {
    if let Some(want) = task.size
        && want != f.total
    {
        return Err((
            Stop::Fail(format!("size mismatch: listing says {want} bytes, server sent {}", f.total)),
            Md5Status::Absent,
        ));
    }
    let expected = task.md5.or(f.server_md5);
    let part = part.to_path_buf();
    let dest = task.dest.clone();
    let total = f.total;
    let streamed = f.streamed_md5;
    let file = f.file;
    let res = tokio::task::spawn_blocking(move || -> Result<Md5Status, (Stop, Md5Status)> {
        let len = file
            .metadata()
            .map_err(|e| (Stop::Fail(format!("cannot read the part file: {e}")), Md5Status::Absent))?
            .len();
        if len != total {
            return Err((Stop::Restart(format!("part file holds {len} bytes, expected {total}")), Md5Status::Absent));
        }
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
                Md5Status::Verified
            }
        };
        fs::publish(&part, &file, &dest)
            .map_err(|e| (Stop::Fail(format!("cannot write {}: {e}", dest.display())), status))?;
        let _ = fs::remove_if_exists(&fs::state_path(&dest));
        Ok(status)
    })
    .await
    .map_err(|e| (Stop::Fail(format!("internal error: {e}")), Md5Status::Absent))?;
    res.map(|s| (total, s))
}

/// Parse `Content-Range: bytes a-b/total`.
pub(crate) fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b, t) = (a.trim().parse().ok()?, b.trim().parse().ok()?, total.trim().parse().ok()?);
    (a <= b && b < t).then_some((a, b, t))
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The server's whole-object MD5: `Content-MD5` on a 200, the provider's header on a 206.
fn server_md5(task: &FileTask, h: &HeaderMap, partial: bool) -> Option<[u8; 16]> {
    let name = if partial { task.hints.partial_md5_header.as_deref()? } else { "content-md5" };
    header_str(h, name).and_then(decode_md5)
}

/// A failed attempt: retry (with an optional server delay) or stop.
enum Attempt {
    Retry(String, Option<Duration>),
    Stop(Stop),
}

fn classify_status(task: &FileTask, status: u16, h: &HeaderMap) -> Attempt {
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

/// Wait before the next attempt, or give up when attempts are exhausted.
async fn backoff(
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

fn request(
    ctx: &Ctx,
    task: &FileTask,
    url: url::Url,
    range: Option<(u64, Option<u64>)>,
    etag: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut rb = ctx.client.get(url);
    for (k, v) in &task.headers {
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

/// Write `buf` at `offset` (and feed the hasher) on the blocking pool.
async fn write_piece(file: &Arc<File>, buf: Vec<u8>, offset: u64, hasher: Option<Md5>) -> Result<Option<Md5>, Stop> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        let mut hasher = hasher;
        if let Some(h) = hasher.as_mut() {
            h.update(&buf);
        }
        fs::write_all_at(&file, &buf, offset)?;
        fs::start_writeback(&file, offset, buf.len() as u64);
        Ok::<_, std::io::Error>(hasher)
    })
    .await
    .map_err(|e| Stop::Fail(format!("internal error: {e}")))?
    .map_err(|e| Stop::Fail(format!("cannot write: {e}")))
}

/// The resume record of a streamed file.
#[derive(serde::Serialize, serde::Deserialize, PartialEq)]
struct StateRecord {
    size: u64,
    etag: String,
}

fn read_state(task: &FileTask) -> Option<StateRecord> {
    let raw = std::fs::read(fs::state_path(&task.dest)).ok()?;
    serde_json::from_slice(&raw).ok()
}

fn write_state(task: &FileTask, rec: &StateRecord) {
    let path = fs::state_path(&task.dest);
    if let Ok(json) = serde_json::to_vec(rec) {
        let _ = std::fs::write(path, json);
    }
}

/// One connection at a time, from the first missing byte to the end, hashing in order.
async fn fetch_stream(ctx: &Ctx, src: &Source<'_>, part: &std::path::Path, counted: &mut u64) -> Result<Fetched, Stop> {
    let task = src.task;
    let file = fs::open_part(part).map_err(|e| Stop::Fail(format!("cannot create {}: {e}", part.display())))?;
    let file = Arc::new(file);
    // Resume a part file left by an earlier run when its record matches the listing.
    let mut offset = 0u64;
    let mut etag: Option<String> = None;
    let mut total: Option<u64> = task.size;
    let mut hasher = Md5::new();
    if let (Some(rec), Some(size)) = (read_state(task), task.size) {
        let have = file.metadata().map(|m| m.len()).unwrap_or(0);
        if rec.size == size && have > 0 && have <= size {
            let f2 = file.clone();
            let prefix = tokio::task::spawn_blocking(move || md5_prefix(&f2, have)).await.ok().and_then(Result::ok);
            if let Some(h) = prefix {
                crate::log::log(1, format!("{}: resuming at byte {have}", task.display));
                offset = have;
                etag = Some(rec.etag);
                hasher = h;
                ctx.reporter.bytes(&task.display, have);
                *counted += have;
            }
        }
    }
    if offset == 0 {
        file.set_len(0).map_err(|e| Stop::Fail(format!("cannot truncate {}: {e}", part.display())))?;
    }
    let mut server_md5 = None;
    let mut attempt = 0u32;
    let mut since_reset = 0u64;
    loop {
        if total == Some(offset) && offset > 0 {
            break;
        }
        let permit = ctx.conns.acquire().await.map_err(|_| Stop::Fail("cancelled".into()))?;
        let range = (offset > 0).then_some((offset, None));
        let (url, generation) = src.current();
        let resp = match request(ctx, task, url, range, etag.as_deref()).send().await {
            Ok(r) => r,
            Err(e) => {
                drop(permit);
                backoff(ctx, task, &mut attempt, describe_transport(&e), None).await?;
                continue;
            }
        };
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        match status {
            200 => {
                if offset > 0 {
                    // The range was ignored: start over from byte 0 with this body.
                    crate::log::log(1, format!("{}: server ignored Range; restarting from 0", task.display));
                    file.set_len(0).map_err(|e| Stop::Fail(format!("cannot truncate: {e}")))?;
                    ctx.reporter.bytes_discarded(*counted);
                    *counted = 0;
                    offset = 0;
                    hasher = Md5::new();
                }
                let len = header_str(&h, CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
                total = match (total, len) {
                    (Some(t), Some(l)) if t != l => {
                        return Err(Stop::Fail(format!("size mismatch: listing says {t} bytes, server sends {l}")));
                    }
                    (t, l) => l.or(t),
                };
                server_md5 = server_md5.or(self::server_md5(task, &h, false));
            }
            206 => {
                let Some((a, _b, t)) = header_str(&h, CONTENT_RANGE.as_str()).and_then(parse_content_range) else {
                    return Err(Stop::Fail("206 without a valid Content-Range".into()));
                };
                if a != offset || total.is_some_and(|x| x != t) {
                    return Err(Stop::Restart(format!(
                        "Content-Range {a}-/{t} does not match the request ({offset}-)"
                    )));
                }
                total = Some(t);
                server_md5 = server_md5.or(self::server_md5(task, &h, true));
            }
            416 if offset > 0 => return Err(Stop::Restart("server refused to resume (416)".into())),
            403 if task.refresh.is_some() => {
                drop(resp);
                drop(permit);
                if src.refresh_after_403(generation).await {
                    continue;
                }
                return Err(Stop::Fail("HTTP 403: access refused (also after refreshing the download URL)".into()));
            }
            _ => match classify_status(task, status, &h) {
                Attempt::Retry(reason, ra) => {
                    drop(resp);
                    drop(permit);
                    backoff(ctx, task, &mut attempt, reason, ra).await?;
                    continue;
                }
                Attempt::Stop(s) => return Err(s),
            },
        }
        let new_etag = header_str(&h, ETAG.as_str()).map(str::to_string);
        if etag.is_some() && new_etag.is_some() && etag != new_etag {
            return Err(Stop::Restart("the blob changed during the download (ETag mismatch)".into()));
        }
        if etag.is_none() {
            etag = new_etag;
            if let (Some(e), Some(t)) = (&etag, total) {
                write_state(task, &StateRecord { size: t, etag: e.clone() });
            }
        }
        // Stream the body.
        let mut resp = resp;
        let mut buf = Vec::with_capacity(WRITE_BUF.min(total.unwrap_or(0) as usize).max(8192));
        let mut body_err = None;
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    let room = total.map(|t| t - offset - buf.len() as u64);
                    if room.is_some_and(|r| bytes.len() as u64 > r) {
                        return Err(Stop::Fail("server sent more bytes than announced".into()));
                    }
                    buf.extend_from_slice(&bytes);
                    ctx.reporter.bytes(&task.display, bytes.len() as u64);
                    *counted += bytes.len() as u64;
                    if buf.len() >= WRITE_BUF {
                        let n = buf.len() as u64;
                        hasher = write_piece(&file, std::mem::take(&mut buf), offset, Some(hasher))
                            .await?
                            .unwrap_or_default();
                        offset += n;
                        since_reset += n;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    body_err = Some(describe_transport(&e));
                    break;
                }
            }
        }
        if !buf.is_empty() {
            let n = buf.len() as u64;
            hasher = write_piece(&file, std::mem::take(&mut buf), offset, Some(hasher)).await?.unwrap_or_default();
            offset += n;
            since_reset += n;
        }
        drop(permit);
        if since_reset >= PROGRESS_RESET {
            attempt = 0;
            since_reset = 0;
        }
        let complete = match total {
            Some(t) => offset == t,
            None => body_err.is_none(),
        };
        if complete {
            total = Some(offset);
            break;
        }
        let reason = body_err.unwrap_or_else(|| format!("body ended early at byte {offset} of {}", total.unwrap_or(0)));
        backoff(ctx, task, &mut attempt, reason, None).await?;
    }
    let file = Arc::try_unwrap(file).map_err(|_| Stop::Fail("internal error: part file still shared".into()))?;
    Ok(Fetched { file, total: total.unwrap_or(offset), server_md5, streamed_md5: Some(hasher.finalize().into()) })
}

fn md5_prefix(file: &File, len: u64) -> std::io::Result<Md5> {
    use std::os::unix::fs::FileExt;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < len {
        let want = ((len - off) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short part file"));
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h)
}

/// Parallel ranged chunks written in place into a pre-sized part file.
async fn fetch_chunked(
    ctx: &Ctx,
    src: &Source<'_>,
    part: &std::path::Path,
    counted: &mut u64,
) -> Result<Fetched, Stop> {
    let task = src.task;
    let chunk = ctx.cfg.chunk_size.max(1 << 16);
    let file = fs::open_part(part).map_err(|e| Stop::Fail(format!("cannot create {}: {e}", part.display())))?;
    // Chunked part files are not resumable yet: start from an empty, pre-sized file.
    let _ = fs::remove_if_exists(&fs::state_path(&task.dest));
    file.set_len(0)
        .and_then(|_| file.set_len(task.size.unwrap_or(0)))
        .map_err(|e| Stop::Fail(format!("cannot allocate {}: {e}", part.display())))?;
    let file = Arc::new(file);
    // The first chunk pins the ETag, tells whether ranges are honoured and (when the listing
    // gave no size) how big the file is.
    let first_end = task.size.map_or(chunk - 1, |t| chunk.min(t) - 1);
    let first = ChunkJob { start: 0, end: first_end };
    let progress = AtomicU64::new(0);
    let fetched = fetch_chunk(ctx, src, &file, first, None, task.size, &progress).await;
    *counted += progress.load(Ordering::Relaxed);
    progress.store(0, Ordering::Relaxed);
    let (etag, server_md5, total) = fetched?;
    if task.size.is_none() {
        file.set_len(total).map_err(|e| Stop::Fail(format!("cannot allocate {}: {e}", part.display())))?;
    }
    let chunks = total.div_ceil(chunk);
    let next = AtomicU64::new(1);
    let peers = CancellationToken::new();
    let workers = (ctx.cfg.parallel as u64).min(chunks.saturating_sub(1)).max(1);
    let worker = || async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= chunks || peers.is_cancelled() {
                return Ok(());
            }
            let job = ChunkJob { start: i * chunk, end: ((i + 1) * chunk).min(total) - 1 };
            let r = tokio::select! {
                r = fetch_chunk(ctx, src, &file, job, etag.as_deref(), Some(total), &progress) => r,
                _ = peers.cancelled() => return Ok(()),
            };
            if let Err(e) = r {
                // The first failure stops every peer at once.
                peers.cancel();
                return Err(e);
            }
        }
    };
    let results = futures_util::future::join_all((0..workers).map(|_| worker())).await;
    *counted += progress.load(Ordering::Relaxed);
    for r in results {
        r?;
    }
    let file = Arc::try_unwrap(file).map_err(|_| Stop::Fail("internal error: part file still shared".into()))?;
    Ok(Fetched { file, total, server_md5, streamed_md5: None })
}

#[derive(Clone, Copy)]
struct ChunkJob {
    start: u64,
    end: u64,
}

/// Fetch one inclusive range, resuming a broken body from where it stopped. Returns the ETag,
/// the server's whole-object MD5 and the object's size seen on the response. With `total`
/// unknown, `job` is a probe from byte 0 whose end is cut to the object's size.
async fn fetch_chunk(
    ctx: &Ctx,
    src: &Source<'_>,
    file: &Arc<File>,
    mut job: ChunkJob,
    etag: Option<&str>,
    mut total: Option<u64>,
    progress: &AtomicU64,
) -> Result<(Option<String>, Option<[u8; 16]>, u64), Stop> {
    let task = src.task;
    let mut pos = job.start;
    let mut attempt = 0u32;
    let mut etag: Option<String> = etag.map(str::to_string);
    let mut md5 = None;
    while pos <= job.end {
        let permit = ctx.conns.acquire().await.map_err(|_| Stop::Fail("cancelled".into()))?;
        let (url, generation) = src.current();
        let resp = match request(ctx, task, url, Some((pos, Some(job.end))), etag.as_deref()).send().await {
            Ok(r) => r,
            Err(e) => {
                drop(permit);
                backoff(ctx, task, &mut attempt, describe_transport(&e), None).await?;
                continue;
            }
        };
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        match status {
            206 => {
                let cr = header_str(&h, CONTENT_RANGE.as_str()).and_then(parse_content_range);
                match (cr, total) {
                    (Some((a, b, t)), Some(want)) if a == pos && b == job.end && t == want => {}
                    (Some((a, b, t)), None) if a == pos && b == job.end.min(t - 1) => {
                        total = Some(t);
                        job.end = b;
                    }
                    _ => {
                        return Err(Stop::Fail(format!(
                            "Content-Range {} does not match the requested bytes {pos}-{}",
                            header_str(&h, CONTENT_RANGE.as_str()).unwrap_or("(missing)"),
                            job.end
                        )));
                    }
                }
            }
            200 => return Err(Stop::Restart(FALLBACK.into())),
            // An empty object cannot serve a range: fetch it without one.
            416 if total.is_none() && pos == 0 => return Err(Stop::Restart(FALLBACK.into())),
            403 if task.refresh.is_some() => {
                drop(resp);
                drop(permit);
                if src.refresh_after_403(generation).await {
                    continue;
                }
                return Err(Stop::Fail("HTTP 403: access refused (also after refreshing the download URL)".into()));
            }
            _ => match classify_status(task, status, &h) {
                Attempt::Retry(reason, ra) => {
                    drop(resp);
                    drop(permit);
                    backoff(ctx, task, &mut attempt, reason, ra).await?;
                    continue;
                }
                Attempt::Stop(s) => return Err(s),
            },
        }
        let got_etag = header_str(&h, ETAG.as_str()).map(str::to_string);
        match (&etag, &got_etag) {
            (Some(a), Some(b)) if a != b => {
                return Err(Stop::Restart("the blob changed during the download (ETag mismatch)".into()));
            }
            (None, _) => etag = got_etag,
            _ => {}
        }
        md5 = md5.or(server_md5(task, &h, true));
        let mut resp = resp;
        let mut buf = Vec::with_capacity(WRITE_BUF.min((job.end - pos + 1) as usize));
        let mut body_err = None;
        let start_pos = pos;
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    if pos + buf.len() as u64 + bytes.len() as u64 > job.end + 1 {
                        return Err(Stop::Fail("server sent more bytes than the range".into()));
                    }
                    buf.extend_from_slice(&bytes);
                    ctx.reporter.bytes(&task.display, bytes.len() as u64);
                    progress.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    if buf.len() >= WRITE_BUF {
                        let n = buf.len() as u64;
                        write_piece(file, std::mem::take(&mut buf), pos, None).await?;
                        pos += n;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    body_err = Some(describe_transport(&e));
                    break;
                }
            }
        }
        if !buf.is_empty() {
            let n = buf.len() as u64;
            write_piece(file, std::mem::take(&mut buf), pos, None).await?;
            pos += n;
        }
        drop(permit);
        if pos - start_pos >= PROGRESS_RESET {
            attempt = 0;
        }
        if pos > job.end {
            break;
        }
        let reason = body_err.unwrap_or_else(|| format!("body ended early at byte {pos}"));
        backoff(ctx, task, &mut attempt, reason, None).await?;
    }
    Ok((etag, md5, total.unwrap_or(job.end + 1)))
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

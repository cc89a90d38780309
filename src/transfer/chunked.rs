//! Parallel ranged chunks written in place into a pre-sized part file, with a ranged probe for
//! unknown sizes, linked cancellation of peers, and a resume record of durable chunks.
use super::Ctx;
use super::attempt::{backoff, header_str, parse_content_range, pin_etag, retry_or_stop, send_attempt, server_md5};
use super::fetch::{FALLBACK, Fetched, PROGRESS_RESET, Stop, believable, off_worker, open_part, room_for};
use super::hasher::PrefixHasher;
use super::resume::{ChunkLog, Record, load};
use super::source::Source;
use super::verify::decode_md5;
use super::writer::FileWriter;
use crate::fs;
use base64::Engine;
use futures_util::FutureExt;
use reqwest::header::CONTENT_RANGE;
use std::collections::BTreeSet;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

/// Largest file hashed (MD5) while it lands when the service stores no checksum for it: MD5 is
/// sequential, and above this size it could bound a fast download.
const LOCAL_MD5_MAX: u64 = 256 << 20;

/// Parallel ranged chunks written in place into a pre-sized part file; resumes the chunks a
/// matching record says are durable.
pub(super) async fn fetch_chunked(
    ctx: &Ctx,
    src: &Source<'_>,
    place: &fs::Place,
    counted: &mut u64,
) -> Result<Fetched, Stop> {
    let task = src.task;
    let chunk = ctx.cfg.chunk_size.max(1 << 16);
    // Open the part file and read its record off the async workers; a record that does not
    // describe this object and this chunk size is removed and the part emptied.
    let (file, resumable) = {
        let (place, url, size) = (place.clone(), task.url.url(), task.size);
        off_worker(move || -> Result<(File, Option<Record>), Stop> {
            let file = open_part(&place)?;
            let part_len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let resumable = load(&place).filter(|r| {
                r.matches(&url)
                    && r.chunk == Some(chunk)
                    && size.is_none_or(|s| s == r.size)
                    && part_len == r.size
                    && r.size > 0
                    && !r.etag.is_empty()
            });
            if resumable.is_none() {
                let _ = place.remove_state();
                file.set_len(0)
                    .map_err(|e| Stop::Fail(format!("cannot allocate {}: {e}", place.part_path().display())))?;
            }
            Ok((file, resumable))
        })
        .await??
    };
    let file = Arc::new(file);
    let writer = FileWriter::start(file.clone())?;
    let progress = AtomicU64::new(0);
    // The first chunk of a fresh download, while its body is still coming (see below).
    let mut first: Option<FirstChunk<'_>> = None;
    let (etag, server_md5, total, log, todo, on_disk) = match resumable {
        Some(mut rec) => {
            let chunks = rec.size.div_ceil(chunk);
            let done: BTreeSet<u64> = rec.done.iter().copied().filter(|&i| i < chunks).collect();
            let done_bytes: u64 = done.iter().map(|&i| chunk_len(i, chunk, rec.size)).sum();
            crate::log::log(
                1,
                format!("{}: resuming: {} of {chunks} chunks already on disk", task.display, done.len()),
            );
            ctx.reporter.bytes(&task.display, done_bytes);
            *counted += done_bytes;
            rec.done = done.iter().copied().collect();
            let md5 = rec.md5.as_deref().and_then(decode_md5);
            let (etag, size) = (rec.etag.clone(), rec.size);
            let todo = Todo::new(0, chunks, done.clone());
            (Some(etag), md5, size, Some(Arc::new(ChunkLog::new(place, rec))), todo, done)
        }
        None => {
            // The first chunk pins the ETag, tells whether ranges are honoured and how big the
            // file really is: a listed size is not believed (nor allocated) until the server
            // confirms it, so a listing claiming 1 PiB costs one small request, not a huge file.
            // The other chunks wait for its response headers, not for its body: waiting for the
            // body would hold the whole file (and its hash, which may bound the run) behind one
            // connection's first chunk.
            let first_end = task.size.map_or(chunk - 1, |t| chunk.min(t) - 1);
            let (confirm, confirmed) = tokio::sync::oneshot::channel();
            let job = ChunkJob { start: 0, end: first_end };
            let mut body = Box::pin(fetch_chunk(
                ctx,
                src,
                Sink { writer: &writer, progress: &progress },
                job,
                None,
                task.size,
                Some(confirm),
            ));
            let (seen, finished) = tokio::select! {
                biased;
                r = &mut body => match r {
                    Ok(seen) => (seen, true),
                    Err(e) => {
                        *counted += progress.load(Ordering::Relaxed);
                        return Err(e);
                    }
                },
                Ok(seen) = confirmed => (seen, false),
            };
            let (etag, server_md5, total) = seen.clone();
            // A size only the server stated is held to the cap and to the free space before
            // the part file is sized for it.
            if task.size.is_none() {
                believable(total, "the server claims")?;
            }
            room_for(place, total)?;
            let (f, shown) = (file.clone(), place.part_path().display().to_string());
            off_worker(move || f.set_len(total))
                .await?
                .map_err(|e| Stop::Fail(format!("cannot allocate {shown}: {e}")))?;
            // Without an ETag a later run could not tell whether the object changed: no record.
            let log = etag.clone().map(|e| {
                let md5 = server_md5.map(|m| base64::engine::general_purpose::STANDARD.encode(m));
                Arc::new(ChunkLog::new(place, Record::new(&task.url.url(), total, e, md5, Some(chunk))))
            });
            // Chunk 0 lands like any other, whether its body already ended or is still coming.
            let body: FirstChunk<'_> = if finished { Box::pin(std::future::ready(Ok(seen))) } else { body };
            first = Some(body);
            (etag, server_md5, total, log, Todo::new(1, total.div_ceil(chunk), BTreeSet::new()), BTreeSet::new())
        }
    };
    // Without a stored checksum, a file up to LOCAL_MD5_MAX is hashed anyway: the manifest
    // records it, so `jobdl verify` can re-check the bytes later.
    let want_md5 = task.md5.or(server_md5).is_some() || (task.check.is_none() && total <= LOCAL_MD5_MAX);
    let hasher = (want_md5 || task.check.is_some())
        .then(|| PrefixHasher::start(file.clone(), total, want_md5, task.check.as_ref()));
    if let Some(h) = &hasher {
        for &i in &on_disk {
            h.done(i * chunk, i * chunk + chunk_len(i, chunk, total));
        }
    }
    // Whatever happens below (failure, Ctrl+C dropping this future), durable chunks are recorded.
    let _guard = PersistOnDrop { log: log.clone(), file: file.clone() };
    let peers = CancellationToken::new();
    // As many workers as the budget may ever allow; each request still takes a connection.
    let workers = usize::try_from(todo.len()).unwrap_or(usize::MAX).min(ctx.budget.ceiling()).max(1);
    // MD5 is sequential and can be slower than the network (one core hashes less than a local link
    // brings): a download far ahead of the hash only takes CPU from it. A chunk starts no further past the
    // hashed prefix than the connections allowed now plus LEAD_SPARE chunks: every connection
    // stays busy, and requests still queue for the budget, so it can climb when the network is the
    // bottleneck.
    let span = request_units(total, chunk);
    let lead = |budget: usize| chunk * span * (budget as u64 + LEAD_SPARE);
    // Chunk `i` is written: hash it, record it (the record only ever names flushed chunks).
    let landed = |i: u64| {
        let (hasher, log, file) = (&hasher, &log, &file);
        async move {
            if let Some(h) = hasher {
                h.done(i * chunk, i * chunk + chunk_len(i, chunk, total));
            }
            if let Some(l) = log
                && l.complete(i)
            {
                let (l, f) = (l.clone(), file.clone());
                // Off the async workers; a failed save only costs resumability.
                let _ = tokio::task::spawn_blocking(move || l.persist(&f)).await;
            }
        }
    };
    let sink = Sink { writer: &writer, progress: &progress };
    let worker = || async {
        // One request covers a run of consecutive chunks still to fetch; each chunk of it is
        // recorded once the request has landed.
        while let Some(run) = todo.take(span) {
            if peers.is_cancelled() {
                return Ok(());
            }
            let last = run.end - 1;
            let job = ChunkJob { start: run.start * chunk, end: last * chunk + chunk_len(last, chunk, total) - 1 };
            if let Some(h) = &hasher {
                tokio::select! {
                    _ = h.reached(job.start.saturating_sub(lead(ctx.budget.level()))) => {}
                    _ = peers.cancelled() => return Ok(()),
                }
            }
            let r = tokio::select! {
                r = fetch_chunk(ctx, src, sink, job, etag.as_deref(), Some(total), None) => r,
                _ = peers.cancelled() => return Ok(()),
            };
            if let Err(e) = r {
                // The first failure stops every peer at once.
                peers.cancel();
                return Err(e);
            }
            for i in run {
                landed(i).await;
            }
        }
        Ok(())
    };
    // A fresh download's first chunk (its body, when the others started on its headers): a peer
    // like the rest.
    let first_body = async {
        let Some(body) = first else { return Ok(()) };
        let r = tokio::select! {
            r = body => r,
            _ = peers.cancelled() => return Ok(()),
        };
        if let Err(e) = r {
            peers.cancel();
            return Err(e);
        }
        landed(0).await;
        Ok(())
    };
    let (first_result, mut results) =
        tokio::join!(first_body, futures_util::future::join_all((0..workers).map(|_| worker())));
    results.insert(0, first_result);
    *counted += progress.load(Ordering::Relaxed);
    for r in results {
        if let Err(e) = r {
            if let (Stop::Restart(_), Some(l)) = (&e, &log) {
                l.finish(); // the part is about to be discarded
            }
            return Err(e);
        }
    }
    if let Some(l) = &log {
        l.finish();
    }
    let (streamed_md5, streamed_check) = match hasher {
        Some(h) => h.finish().await.unwrap_or_default(),
        None => (None, None),
    };
    drop(_guard);
    drop(writer);
    let file = Arc::try_unwrap(file).map_err(|_| Stop::Fail("internal error: part file still shared".into()))?;
    Ok(Fetched { file, total, server_md5, streamed_md5, streamed_check, etag })
}

/// The chunks still to fetch, handed out in order as runs of consecutive chunks: a counter over
/// `start..end` skipping the ones already on disk, so that its size never depends on the file's
/// (a server claiming 1 PiB costs nothing here).
struct Todo {
    next: std::sync::Mutex<u64>,
    end: u64,
    done: BTreeSet<u64>,
}

impl Todo {
    fn new(start: u64, end: u64, done: BTreeSet<u64>) -> Todo {
        Todo { next: std::sync::Mutex::new(start), end, done }
    }

    fn next(&self) -> std::sync::MutexGuard<'_, u64> {
        self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Chunks left to hand out.
    fn len(&self) -> u64 {
        let start = *self.next();
        let done_ahead = self.done.range(start..self.end).count() as u64;
        self.end.saturating_sub(start).saturating_sub(done_ahead)
    }

    /// The next run of at most `max` consecutive chunks to fetch, if any: it starts at the first
    /// chunk not on disk and stops before the next one that is.
    fn take(&self, max: u64) -> Option<std::ops::Range<u64>> {
        let mut next = self.next();
        while *next < self.end && self.done.contains(&*next) {
            *next += 1;
        }
        if *next >= self.end {
            return None;
        }
        let start = *next;
        let limit = self.end.min(start.saturating_add(max.max(1)));
        let stop = self.done.range(start..limit).next().copied().unwrap_or(limit);
        *next = stop;
        Some(start..stop)
    }
}

/// Most chunks one request covers: one up to 256 MiB, then as many as keep a file in about 32
/// requests, at most 8 (64 MiB with 8 MiB chunks). A large object costs fewer round trips, each
/// request's time is less of it waiting for the first byte, and resume still records every chunk.
const MAX_REQUEST_UNITS: u64 = 8;

/// Chunks per request for an object of `total` bytes cut in `chunk`-byte chunks.
fn request_units(total: u64, chunk: u64) -> u64 {
    (total / 32 / chunk.max(1)).clamp(1, MAX_REQUEST_UNITS)
}

/// Chunks a download may start past the hashed prefix beyond one per allowed connection.
const LEAD_SPARE: u64 = 4;

/// Length of chunk `i` of an object of `total` bytes.
fn chunk_len(i: u64, chunk: u64, total: u64) -> u64 {
    chunk.min(total.saturating_sub(i * chunk))
}

/// Records the durable chunks when a chunked fetch ends early (failure or cancellation).
struct PersistOnDrop {
    log: Option<Arc<ChunkLog>>,
    file: Arc<File>,
}

impl Drop for PersistOnDrop {
    fn drop(&mut self) {
        if let Some(l) = &self.log {
            l.persist_unless_finished(&self.file);
        }
    }
}

/// What a chunk's response says of the object: its ETag, its whole-object MD5, its size.
type Seen = (Option<String>, Option<[u8; 16]>, u64);

/// The body of a fresh download's first chunk, still coming while the other chunks start.
type FirstChunk<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Seen, Stop>> + Send + 'a>>;

/// Where a chunk's bytes go: the file's writer, and the count of bytes received.
#[derive(Clone, Copy)]
struct Sink<'a> {
    writer: &'a FileWriter,
    progress: &'a AtomicU64,
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
    Sink { writer, progress }: Sink<'_>,
    mut job: ChunkJob,
    etag: Option<&str>,
    mut total: Option<u64>,
    mut confirm: Option<tokio::sync::oneshot::Sender<Seen>>,
) -> Result<Seen, Stop> {
    let task = src.task;
    let mut pos = job.start;
    let mut attempt = 0u32;
    let mut etag: Option<String> = etag.map(str::to_string);
    let mut md5 = None;
    while pos <= job.end {
        let Some((resp, permit, generation)) =
            send_attempt(ctx, src, Some((pos, Some(job.end))), etag.as_deref(), &mut attempt).await?
        else {
            continue;
        };
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        match status {
            206 => {
                let cr = header_str(&h, CONTENT_RANGE.as_str()).and_then(parse_content_range);
                match (cr, total) {
                    (Some((a, b, t)), Some(want)) if a == pos && b == job.end && t == want => {}
                    (Some((a, b, t)), None) if a == pos && b == job.end.min(t - 1) => {
                        believable(t, "the server claims")?;
                        total = Some(t);
                        job.end = b;
                    }
                    (Some((_, _, t)), Some(want)) if t != want => {
                        return Err(Stop::Fail(format!("size mismatch: listing says {want} bytes, server has {t}")));
                    }
                    _ => {
                        // Not the range asked for (a proxy that advertises ranges falsely): never
                        // stitch it in; the file goes as one stream instead.
                        crate::log::log(
                            1,
                            format!(
                                "{}: Content-Range {} does not match the requested bytes {pos}-{}; one stream instead",
                                task.display,
                                header_str(&h, CONTENT_RANGE.as_str()).unwrap_or("(missing)"),
                                job.end
                            ),
                        );
                        return Err(Stop::Restart(FALLBACK.into()));
                    }
                }
            }
            200 => return Err(Stop::Restart(FALLBACK.into())),
            // An empty object cannot serve a range: fetch it without one.
            416 if total.is_none() && pos == 0 => return Err(Stop::Restart(FALLBACK.into())),
            _ => {
                drop(resp);
                drop(permit);
                retry_or_stop(ctx, src, status, &h, generation, &mut attempt).await?;
                continue;
            }
        }
        pin_etag(&mut etag, &h)?;
        md5 = md5.or(server_md5(task, &h, true));
        if let (Some(c), Some(t)) = (confirm.take(), total) {
            let _ = c.send((etag.clone(), md5, t));
        }
        let mut resp = resp;
        let mut body_err = None;
        let start_pos = pos;
        let mut rate = ctx.cfg.min_rate.guard();
        loop {
            // Wait for the disk before taking the next piece (so a waiting connection holds no
            // buffer of its own), but only keep the place while the piece is already here: a
            // connection whose server is slow or stalled must not sit on a place the others need.
            let slot = writer.slot().await?;
            let (next, slot) = match rate.next(resp.chunk()).now_or_never() {
                Some(next) => {
                    ctx.budget.ready.fetch_add(1, Ordering::Relaxed);
                    (next, Some(slot))
                }
                None => {
                    ctx.budget.waited.fetch_add(1, Ordering::Relaxed);
                    drop(slot);
                    (rate.next(resp.chunk()).await, None)
                }
            };
            match next {
                Ok(Some(bytes)) => {
                    let n = bytes.len() as u64;
                    if pos + n > job.end + 1 {
                        return Err(Stop::Fail("server sent more bytes than the range".into()));
                    }
                    if n == 0 {
                        continue;
                    }
                    match slot {
                        Some(slot) => slot.write(pos, bytes),
                        None => writer.write(pos, bytes).await?,
                    }
                    pos += n;
                    ctx.reporter.bytes(&task.display, n);
                    ctx.budget.bytes.fetch_add(n, Ordering::Relaxed);
                    if let Some(p) = &ctx.pace {
                        p.take(n).await;
                    }
                    progress.fetch_add(n, Ordering::Relaxed);
                }
                Ok(None) => break,
                Err(e) => {
                    body_err = Some(e.to_string());
                    break;
                }
            }
        }
        drop(permit);
        writer.flush().await?;
        if pos - start_pos >= PROGRESS_RESET {
            attempt = 0;
        }
        if pos > job.end {
            break;
        }
        let reason = body_err.unwrap_or_else(|| format!("body ended early at byte {pos}"));
        backoff(ctx, &task.display, &mut attempt, reason, None).await?;
    }
    Ok((etag, md5, total.unwrap_or(job.end + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn requests_cover_more_chunks_as_the_file_grows() {
        let chunk = 8 * MIB;
        assert_eq!(request_units(0, chunk), 1);
        assert_eq!(request_units(100 * MIB, chunk), 1);
        assert_eq!(request_units(511 * MIB, chunk), 1);
        assert_eq!(request_units(512 * MIB, chunk), 2);
        assert_eq!(request_units(1024 * MIB, chunk), 4);
        assert_eq!(request_units(2048 * MIB, chunk), 8);
        assert_eq!(request_units(u64::MAX, chunk), MAX_REQUEST_UNITS);
        assert_eq!(request_units(1024 * MIB, 0), MAX_REQUEST_UNITS);
    }

    #[test]
    fn runs_are_consecutive_chunks_not_on_disk() {
        let todo = Todo::new(1, 12, BTreeSet::new());
        assert_eq!(todo.len(), 11);
        assert_eq!(todo.take(4), Some(1..5));
        assert_eq!(todo.take(4), Some(5..9));
        assert_eq!(todo.take(4), Some(9..12));
        assert_eq!(todo.take(4), None);

        // A resumed file: runs stop before a chunk already on disk and skip past it.
        let todo = Todo::new(0, 10, BTreeSet::from([2, 3, 7]));
        assert_eq!(todo.len(), 7);
        let mut runs = Vec::new();
        while let Some(r) = todo.take(3) {
            runs.push(r);
        }
        assert_eq!(runs, [0..2, 4..7, 8..10]);
        assert_eq!(todo.len(), 0);

        // A run of zero is still one chunk; the last chunks may all be on disk.
        let todo = Todo::new(0, 3, BTreeSet::from([1, 2]));
        assert_eq!(todo.take(0), Some(0..1));
        assert_eq!(todo.take(5), None);
    }
}

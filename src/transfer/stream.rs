//! Single-stream fetch: one connection from the first missing byte to the end, hashing in order;
//! a broken body resumes from its offset with `Range` + `If-Match`; resumable across runs.
use super::Ctx;
use super::attempt::{backoff, header_str, parse_content_range, pin_etag, retry_or_stop, send_attempt, server_md5};
use super::fetch::{Fetched, PROGRESS_RESET, Stop, believable, off_worker, open_part, room_for};
use super::source::Source;
use super::writer::PieceWriter;

/// Streamed files smaller than this are fetched again rather than resumed (no record is kept).
const RESUME_MIN: u64 = 8 << 20;
use super::check::{CheckHasher, feed_from_file};
use super::resume::{Record, load, save};
use super::verify::decode_md5;
use crate::fs;
use base64::Engine;
use md5::{Digest, Md5};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE};
use std::sync::Arc;

/// A part file taken up where an earlier run left it.
struct Resumed {
    /// Bytes already in the part file (its prefix, hashed again).
    have: u64,
    rec: Record,
    hashers: (Option<Md5>, Option<CheckHasher>),
}

/// Open the part file of `place`; when its record describes this object and the part holds a
/// prefix of it, hash that prefix again and resume after it, else empty the part and make sure
/// the file can fit. Blocking.
fn prepare(
    place: &fs::Place,
    url: &url::Url,
    size: Option<u64>,
    new_hashers: impl Fn() -> (Option<Md5>, Option<CheckHasher>),
) -> Result<(std::fs::File, Option<Resumed>), Stop> {
    let file = open_part(place)?;
    // Streams of RESUME_MIN bytes or less never get a record.
    if let Some(size) = size.filter(|&s| s > RESUME_MIN)
        && let Some(rec) = load(place)
    {
        let have = file.metadata().map(|m| m.len()).unwrap_or(0);
        if rec.matches(url) && rec.chunk.is_none() && rec.size == size && have > 0 && have <= size {
            let (mut h, mut c) = new_hashers();
            let mut buf = vec![0u8; 1 << 20];
            if feed_from_file(&file, 0, have, &mut buf, h.as_mut(), c.as_mut()).is_ok() {
                room_for(place, size - have)?;
                return Ok((file, Some(Resumed { have, rec, hashers: (h, c) })));
            }
        }
    }
    file.set_len(0).map_err(|e| Stop::Fail(format!("cannot truncate {}: {e}", place.part_path().display())))?;
    if let Some(size) = size {
        room_for(place, size)?;
    }
    Ok((file, None))
}

/// One connection at a time, from the first missing byte to the end, hashing in order.
pub(super) async fn fetch_stream(
    ctx: &Ctx,
    src: &Source<'_>,
    place: &fs::Place,
    counted: &mut u64,
) -> Result<Fetched, Stop> {
    let task = src.task;
    // The MD5 is computed unless only the other check can be used (a server's Content-MD5 on a
    // 200 is then checked by re-reading the file: rare, and S3 sends none).
    let want_md5 = task.md5.is_some() || task.check.is_none();
    let check_kind = task.check;
    let new_hashers = move || (want_md5.then(Md5::new), check_kind.as_ref().map(CheckHasher::new));
    // Open the part file and resume it when its record matches the listing (its prefix hashed
    // again), else empty it. A file too small to have a record takes two cheap syscalls, done
    // here: a hop to the blocking pool per small file costs more than the syscalls. Bigger files
    // read their record and may hash a long prefix: that goes off the async workers.
    let (p, url, size) = (place.clone(), task.url.url(), task.size);
    let prepare = move || prepare(&p, &url, size, new_hashers);
    let (file, resumed) = if size.is_some_and(|s| s <= RESUME_MIN) { prepare() } else { off_worker(prepare).await? }?;
    let file = Arc::new(file);
    let mut offset = 0u64;
    let mut etag: Option<String> = None;
    let mut total: Option<u64> = task.size;
    let (mut hasher, mut check) = new_hashers();
    let mut server_md5 = None;
    if let Some(Resumed { have, rec, hashers }) = resumed {
        crate::log::log(1, format!("{}: resuming at byte {have}", task.display));
        offset = have;
        etag = Some(rec.etag);
        server_md5 = rec.md5.as_deref().and_then(decode_md5);
        (hasher, check) = hashers;
        ctx.reporter.bytes(&task.display, have);
        *counted += have;
    }
    let mut attempt = 0u32;
    let mut since_reset = 0u64;
    loop {
        if total == Some(offset) && offset > 0 {
            break;
        }
        let Some((resp, permit, generation)) =
            send_attempt(ctx, src, (offset > 0).then_some((offset, None)), etag.as_deref(), &mut attempt).await?
        else {
            continue;
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
                    (hasher, check) = new_hashers();
                }
                let len = header_str(&h, CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
                total = match (total, len) {
                    (Some(t), Some(l)) if t != l => {
                        return Err(Stop::Fail(format!("size mismatch: listing says {t} bytes, server sends {l}")));
                    }
                    (None, Some(l)) => {
                        believable(l, "the server announces")?;
                        room_for(place, l)?;
                        Some(l)
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
                if total.is_none() {
                    believable(t, "the server claims")?;
                    room_for(place, t - offset)?;
                }
                total = Some(t);
                server_md5 = server_md5.or(self::server_md5(task, &h, true));
            }
            416 if offset > 0 => return Err(Stop::Restart("server refused to resume (416)".into())),
            _ => {
                drop(resp);
                drop(permit);
                retry_or_stop(ctx, src, status, &h, generation, &mut attempt).await?;
                continue;
            }
        }
        if pin_etag(&mut etag, &h)? {
            // A record costs an fsync: worth it only for files that take a while to fetch.
            if let (Some(e), Some(t)) = (&etag, total)
                && t > RESUME_MIN
            {
                let md5 = server_md5.map(|m| base64::engine::general_purpose::STANDARD.encode(m));
                let (p, rec) = (place.clone(), Record::new(&task.url.url(), t, e.clone(), md5, None));
                let _ = off_worker(move || save(&p, &rec)).await;
            }
        }
        // Stream the body.
        let mut resp = resp;
        let mut writer = PieceWriter::new(file.clone(), offset, hasher.take(), check.take());
        let mut body_err = None;
        let mut rate = ctx.cfg.min_rate.guard();
        loop {
            match rate.next(resp.chunk()).await {
                Ok(Some(bytes)) => {
                    if total.is_some_and(|t| writer.position() + bytes.len() as u64 > t) {
                        return Err(Stop::Fail("server sent more bytes than announced".into()));
                    }
                    let n = bytes.len() as u64;
                    writer.push(bytes).await?;
                    ctx.reporter.bytes(&task.display, n);
                    ctx.budget.bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    if let Some(p) = &ctx.pace {
                        p.take(n).await;
                    }
                    *counted += n;
                }
                Ok(None) => break,
                Err(e) => {
                    body_err = Some(e.to_string());
                    break;
                }
            }
        }
        let (end, h, c) = writer.finish().await?;
        (hasher, check) = (h, c);
        since_reset += end - offset;
        offset = end;
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
        backoff(ctx, &task.display, &mut attempt, reason, None).await?;
    }
    let file = Arc::try_unwrap(file).map_err(|_| Stop::Fail("internal error: part file still shared".into()))?;
    Ok(Fetched {
        file,
        total: total.unwrap_or(offset),
        server_md5,
        streamed_md5: hasher.map(|h| h.finalize().into()),
        streamed_check: check.map(CheckHasher::finish),
        etag,
    })
}

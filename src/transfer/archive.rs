//! Fetching an archive task: one GET per attempt (a connection from the run's budget), its body
//! streamed through a bounded channel to a blocking thread that decodes and unpacks it
//! (`unpack.rs`). The body has no length, range or ETag, so an attempt that breaks or does not
//! decode is retried from zero with the run's data retry policy; statuses are classified as for
//! files. Progress counts the archive as one file (its display is the archive's directory) whose
//! bytes are the entry bytes written.
use super::attempt::{Attempt, backoff, classify, send_logged};
use super::fetch::Stop;
use super::unpack::{Limits, Target, UnpackError, Unpacked, unpack};
use super::{Ctx, Decoder, EntryFilter, FileOutcome, FileResult, Md5Status, Verified};
use bytes::Bytes;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

/// HTTP body chunks queued between the network and the decoder (hyper hands over at most a few
/// hundred KiB per chunk, so the queue holds a few MiB at worst).
const QUEUE: usize = 8;
/// Most bytes of an error body read.
const MAX_ERROR_BODY: usize = 64 << 10;

/// One remote archive whose entries become files below `dir`.
#[derive(Clone)]
pub struct ArchiveTask {
    /// `dir` relative to the destination, `/`-separated (progress, messages, `--json` paths);
    /// entries are shown as `<display>/<entry path>`.
    pub display: String,
    /// Absolute directory the entries land in (already proven inside the destination).
    pub dir: PathBuf,
    /// The URL to GET.
    pub url: url::Url,
    /// Request headers (authorisation). Secret: never printed.
    pub headers: Vec<(String, String)>,
    /// Turns the body into the archive's gzip bytes, and reads error bodies.
    pub decoder: Decoder,
    /// Which entries to extract, by their path in the archive (`None`: all).
    pub entries: Option<EntryFilter>,
    /// Ceilings on what the archive may decode to.
    pub limits: Limits,
}

impl std::fmt::Debug for ArchiveTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveTask")
            .field("display", &self.display)
            .field("dir", &self.dir)
            .field("url", &crate::redact::url_for_display(&self.url))
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("filtered", &self.entries.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

/// The HTTP body as a `Read` on the blocking thread: chunks from the bounded channel.
struct Feed {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
    cancel: CancellationToken,
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if self.cancel.is_cancelled() {
                return Err(io::Error::other("interrupted"));
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(msg)) => return Err(io::Error::other(msg)),
                None if self.cancel.is_cancelled() => return Err(io::Error::other("interrupted")),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Fetch and unpack one archive, retrying from zero when the body breaks or does not decode.
/// `None` when cancelled (nothing of it is left: the attempt's part files are removed before this
/// returns). Otherwise the entries' outcomes (or one failed outcome named by the archive's
/// directory when it failed whole) and what was verified about each landed entry.
pub(super) async fn fetch_archive(ctx: &Ctx, task: &ArchiveTask) -> Option<(Vec<FileOutcome>, Vec<Verified>)> {
    ctx.reporter.file_started(&task.display, None);
    let counted = Arc::new(AtomicU64::new(0));
    let mut attempt = 0u32;
    let result = loop {
        if ctx.cancel.is_cancelled() {
            return None;
        }
        let (reason, retry_after) = match fetch_once(ctx, task, &counted).await {
            Ok(unpacked) => break Ok(unpacked),
            Err(_) if ctx.cancel.is_cancelled() => return None,
            Err(Attempt::Retry(reason, ra)) => (reason, ra),
            Err(Attempt::Stop(Stop::Fail(m) | Stop::Restart(m) | Stop::Busy(m))) => break Err(m),
        };
        ctx.reporter.bytes_discarded(counted.swap(0, Ordering::Relaxed));
        if let Err(Stop::Fail(m) | Stop::Restart(m) | Stop::Busy(m)) =
            backoff(ctx, &task.display, &mut attempt, reason, retry_after).await
        {
            break Err(m);
        }
    };
    let (mut files, verified) = match result {
        Ok(Unpacked { files, verified }) => (files, verified),
        Err(msg) => (vec![FileOutcome::failed(&task.display, &msg)], Vec::new()),
    };
    files.sort_by(|a, b| a.display.cmp(&b.display));
    let bytes = files.iter().filter(|f| f.result == FileResult::Downloaded).map(|f| f.bytes).sum();
    let whole = if files.iter().any(|f| matches!(f.result, FileResult::Failed(_))) {
        FileResult::Failed("some entries failed".into())
    } else {
        FileResult::Downloaded
    };
    ctx.reporter.file_done(&FileOutcome {
        display: task.display.clone(),
        bytes,
        result: whole,
        md5: Md5Status::Absent,
        checked: None,
    });
    Some((files, verified))
}

/// One GET, its body streamed into the decoder. An error is a retry or the archive's failure
/// (Ctrl+C is read from the run's token by the caller).
async fn fetch_once(ctx: &Ctx, task: &ArchiveTask, counted: &Arc<AtomicU64>) -> Result<Unpacked, Attempt> {
    let cancelled = || Attempt::Stop(Stop::Fail("interrupted".into()));
    let permit = ctx.budget.acquire(super::gate::Lane::Whole).await;
    let mut rb = ctx.client.get(task.url.clone());
    for (k, v) in &task.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let shown = crate::log::enabled(1).then(|| crate::redact::url_for_display(&task.url));
    let sent = tokio::select! {
        r = send_logged(ctx, rb, shown) => r,
        _ = ctx.cancel.cancelled() => return Err(cancelled()),
    };
    let mut resp = sent.map_err(|e| Attempt::Retry(crate::http::describe_transport(&e), None))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let headers = resp.headers().clone();
        let body = tokio::select! {
            b = crate::http::read_limited(resp, MAX_ERROR_BODY) => b.unwrap_or_default(),
            _ = ctx.cancel.cancelled() => return Err(cancelled()),
        };
        let said = task.decoder.0.error_message(&body).map(|m| format!(": {m}")).unwrap_or_default();
        return Err(classify(status, format!("HTTP {status}{said}"), &headers));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(QUEUE);
    let target = Target {
        root: ctx.root.clone(),
        dir: task.dir.clone(),
        display: task.display.clone(),
        entries: task.entries.clone(),
    };
    let (reporter, display, count, cancel) =
        (ctx.reporter.clone(), task.display.clone(), counted.clone(), ctx.cancel.clone());
    let (decoder, limits) = (task.decoder.clone(), task.limits);
    let worker = tokio::task::spawn_blocking(move || {
        let feed = Feed { rx, cur: Bytes::new(), cancel: cancel.clone() };
        let on_bytes = |n: u64| {
            count.fetch_add(n, Ordering::Relaxed);
            reporter.bytes(&display, n);
        };
        unpack(feed, decoder.0.as_ref(), &target, limits, &on_bytes, &cancel)
    });
    let mut rate = ctx.cfg.min_rate.guard();
    loop {
        let next = tokio::select! {
            c = rate.next(resp.chunk()) => c,
            _ = ctx.cancel.cancelled() => break,
        };
        let item = match next {
            Ok(Some(b)) => {
                let n = b.len() as u64;
                ctx.budget.bytes.fetch_add(n, Ordering::Relaxed);
                if let Some(p) = &ctx.pace {
                    p.take(n).await;
                }
                Ok(b)
            }
            Ok(None) => break,
            Err(e @ super::rate::BodyError::TooSlow { .. }) => Err(e.to_string()),
            Err(e) => Err(format!("connection broken while reading the body: {e}")),
        };
        let last = item.is_err();
        let sent = tokio::select! {
            r = tx.send(item) => r.is_ok(),
            _ = ctx.cancel.cancelled() => false,
        };
        if !sent || last {
            break; // the decoder stopped (it says why), or the body broke
        }
    }
    drop(tx);
    drop(resp);
    drop(permit);
    match worker.await {
        Ok(Ok(unpacked)) => Ok(unpacked),
        Ok(Err(UnpackError::Cancelled)) => Err(cancelled()),
        Ok(Err(UnpackError::Broken(msg))) => Err(Attempt::Retry(msg, None)),
        Ok(Err(UnpackError::Disk(msg) | UnpackError::Limit(msg))) => Err(Attempt::Stop(Stop::Fail(msg))),
        Err(e) => Err(Attempt::Stop(Stop::Fail(format!("internal error: {e}")))),
    }
}

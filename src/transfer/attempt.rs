//! One data request and what its answer means: building the GET (signed headers, range,
//! `If-Match`), taking a connection from the budget, classifying a status (retry, refresh, stop),
//! backoff, and the checks a partial response must pass (`Content-Range`, the pinned ETag).
//! Shared by single streams (`stream.rs`), ranged chunks (`chunked.rs`) and archives (`archive.rs`).
use super::fetch::Stop;
use super::gate::Lane;
use super::source::Source;
use super::verify::decode_md5;
use super::{Ctx, FileTask};
use crate::http::retry_after;
use crate::retry::status_is_retryable;
use reqwest::header::{ETAG, HeaderMap};
use std::time::Duration;

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
    if status == 412 {
        return Attempt::Stop(Stop::Restart("the blob changed during the download (ETag mismatch)".into()));
    }
    classify(status, format!("HTTP {status}{code}"), h)
}

/// What an unusable status means for any data request, `msg` naming it: retry (with the
/// server's delay), or stop.
pub(super) fn classify(status: u16, msg: String, h: &HeaderMap) -> Attempt {
    if status_is_retryable(status) {
        Attempt::Retry(msg, retry_after(h))
    } else if (300..400).contains(&status) {
        Attempt::Stop(Stop::Fail(format!("{msg}: redirects are not followed")))
    } else {
        Attempt::Stop(Stop::Fail(msg))
    }
}

/// One attempt's response, the connection permit it holds and the URL generation it used.
pub(super) type Sent<'a> = (reqwest::Response, super::gate::Permit<'a>, u32);

/// Take a connection from the pool and send one GET of `range` pinned to `etag`. A transport
/// error waits out its backoff and returns `None` (try again); exhausted attempts stop the file.
pub(super) async fn send_attempt<'a>(
    ctx: &'a Ctx,
    src: &Source<'_>,
    range: Option<(u64, Option<u64>)>,
    etag: Option<&str>,
    attempt: &mut u32,
) -> Result<Option<Sent<'a>>, Stop> {
    let lane = if range.is_some() { Lane::Ranged } else { Lane::Whole };
    let permit = ctx.budget.acquire(lane).await;
    let (url, generation) = src.current();
    let shown = crate::log::enabled(1).then(|| {
        let r = range.map(|(a, b)| format!(" bytes={a}-{}", b.map(|b| b.to_string()).unwrap_or_default()));
        format!("{}{}", crate::redact::url_for_display(&url), r.unwrap_or_default())
    });
    let sent = send_logged(ctx, request(ctx, src.task, url, range, etag), shown).await;
    match sent {
        Ok(r) => Ok(Some((r, permit, generation))),
        Err(e) => {
            drop(permit);
            backoff(ctx, &src.task.display, attempt, crate::http::describe_transport(&e), None).await?;
            Ok(None)
        }
    }
}

/// Send one data request, noting its time to the response headers in the budget; with `-v`,
/// `shown` (the redacted URL and range) is logged with the status and that time.
pub(super) async fn send_logged(
    ctx: &Ctx,
    rb: reqwest::RequestBuilder,
    shown: Option<String>,
) -> reqwest::Result<reqwest::Response> {
    let asked = std::time::Instant::now();
    let sent = rb.send().await;
    if sent.is_ok() {
        ctx.budget.note_answer(asked.elapsed());
    }
    if let Some(u) = &shown {
        let outcome = match &sent {
            Ok(resp) => resp.status().as_u16().to_string(),
            Err(e) => crate::http::describe_transport(e),
        };
        crate::log::log(1, format!("GET {u} -> {outcome} ({} ms)", asked.elapsed().as_millis()));
    }
    sent
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
        Attempt::Retry(reason, ra) => backoff(ctx, &src.task.display, attempt, reason, ra).await,
        Attempt::Stop(s) => Err(s),
    }
}

/// Wait before the next attempt of the task shown as `display`, or give up when attempts are
/// exhausted. Ctrl+C ends the wait early (the caller sees the cancellation).
pub(super) async fn backoff(
    ctx: &Ctx,
    display: &str,
    attempt: &mut u32,
    reason: String,
    ra: Option<Duration>,
) -> Result<(), Stop> {
    *attempt += 1;
    if *attempt >= ctx.cfg.retry.attempts {
        return Err(Stop::Fail(format!("{reason} (after {} attempts)", *attempt)));
    }
    ctx.reporter.retry(display, *attempt, &reason);
    let delay = ctx.cfg.retry.delay(*attempt - 1, ra, &mut rand::rng());
    crate::log::log(2, format!("{display}: {reason}; retry {} in {delay:?}", *attempt));
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = ctx.cancel.cancelled() => {}
    }
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

/// Pin the object's ETag: the first response's ETag is adopted (returns `true`); a later response
/// with a different one means the object changed under the download, which starts again.
pub(super) fn pin_etag(etag: &mut Option<String>, h: &HeaderMap) -> Result<bool, Stop> {
    let got = header_str(h, ETAG.as_str()).map(str::to_string);
    match (&*etag, &got) {
        (Some(a), Some(b)) if a != b => {
            Err(Stop::Restart("the blob changed during the download (ETag mismatch)".into()))
        }
        (None, _) => {
            *etag = got;
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_etag_is_pinned_and_a_different_one_restarts() {
        let h = |e: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(e) = e {
                h.insert(ETAG, e.parse().unwrap());
            }
            h
        };
        let mut etag = None;
        assert!(pin_etag(&mut etag, &h(Some("\"a\""))).unwrap());
        assert_eq!(etag.as_deref(), Some("\"a\""));
        assert!(!pin_etag(&mut etag, &h(Some("\"a\""))).unwrap());
        assert!(!pin_etag(&mut etag, &h(None)).unwrap());
        assert!(matches!(pin_etag(&mut etag, &h(Some("\"b\""))), Err(Stop::Restart(_))));
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9, 10)));
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}

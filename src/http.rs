//! The one HTTP client for the whole run (timeouts, user agent, no redirects, no decompression)
//! and JSON metadata calls with retries. Knows HTTP, not Azure resources and not files.
use crate::redact::{redact, url_for_display};
use crate::retry::{RetryConfig, parse_retry_after, status_is_retryable};
use reqwest::header::{HeaderMap, HeaderValue};
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;

/// Most bytes of an error body ever read.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Most bytes of a JSON metadata response accepted (guards against hostile servers).
const MAX_JSON_BODY: usize = 64 * 1024 * 1024;

/// Build the run's client. `idle` bounds the time between two reads (never the whole transfer).
pub fn build_client(idle: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("jobdl/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .no_deflate()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(idle)
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A failed HTTP call, with the status kept all the way to the retry decision.
#[derive(Debug, Error)]
pub enum CallError {
    /// The server answered with a non-success status.
    #[error("HTTP {status}{}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// The status code.
        status: u16,
        /// Service error code (JSON `error.code` or `x-ms-error-code`).
        code: Option<String>,
        /// Service message (JSON `error.message`; never a blob body).
        message: Option<String>,
        /// Attempts made.
        attempts: u32,
    },
    /// Connection, TLS, timeout or body error.
    #[error("{message}")]
    Transport {
        /// Redacted description.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The body was not the JSON expected.
    #[error("malformed response from {url}: {message}")]
    Decode {
        /// Redacted URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

impl CallError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How many attempts were made.
    pub fn attempts(&self) -> u32 {
        match self {
            CallError::Status { attempts, .. } | CallError::Transport { attempts, .. } => *attempts,
            CallError::Decode { .. } => 1,
        }
    }

    /// Whether the call may succeed if repeated.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Status { status, .. } => status_is_retryable(*status),
            CallError::Transport { .. } => true,
            CallError::Decode { .. } => false,
        }
    }
}

/// Describe a reqwest error without leaking secrets (URLs inside are redacted).
pub fn describe_transport(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out (no data received within the idle timeout)".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_body() || e.is_decode() {
        "connection broken while reading the body".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = src {
        if depth < 3 {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
        }
        depth += 1;
        src = s.source();
    }
    redact(&msg)
}

/// `Retry-After` from response headers.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok().and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// One JSON metadata request (GET, or POST with an optional JSON body).
#[derive(Debug, Clone)]
pub struct JsonRequest {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Target URL (already checked against the allow-list by the caller).
    pub url: url::Url,
    /// Bearer token, when this host may receive one.
    pub bearer: Option<String>,
    /// JSON body for POST; `None` sends `Content-Length: 0` on POST.
    pub body: Option<serde_json::Value>,
}

/// Issues metadata calls with retries and per-attempt timeouts.
#[derive(Clone)]
pub struct MetaClient {
    client: reqwest::Client,
    retry: RetryConfig,
    /// Total time allowed for one attempt (metadata responses are small).
    attempt_timeout: Duration,
}

impl MetaClient {
    /// Wrap the run's client with the metadata retry policy.
    pub fn new(client: reqwest::Client, retry: RetryConfig) -> Self {
        MetaClient { client, retry, attempt_timeout: Duration::from_secs(60) }
    }

    /// The underlying client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send `req` until it succeeds, fails for good, or runs out of attempts; parse the JSON body.
    pub async fn json(&self, req: &JsonRequest) -> Result<serde_json::Value, CallError> {
        self.json_authorized(req, None).await
    }

    /// [`Self::json`] with a whole `Authorization` header value (e.g. `Basic …`) instead of a
    /// bearer token. Secret: never logged.
    pub async fn json_authorized(
        &self,
        req: &JsonRequest,
        authorization: Option<&str>,
    ) -> Result<serde_json::Value, CallError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = self.once(req, attempt, authorization).await;
            let shown = url_for_display(&req.url);
            match &result {
                Ok(_) => {
                    crate::log::log(1, format!("{} {} -> ok ({} ms)", req.method, shown, started.elapsed().as_millis()))
                }
                Err((e, _)) => crate::log::log(
                    1,
                    format!("{} {} -> {} ({} ms)", req.method, shown, e, started.elapsed().as_millis()),
                ),
            }
            match result {
                Ok(v) => return Ok(v),
                Err((e, ra)) => {
                    if !e.is_retryable() || attempt >= self.retry.attempts {
                        return Err(e);
                    }
                    let wait = self.retry.delay(attempt - 1, ra, &mut rand::rng());
                    crate::log::log(
                        1,
                        format!(
                            "retrying {} {} in {:?} (attempt {} of {})",
                            req.method,
                            shown,
                            wait,
                            attempt + 1,
                            self.retry.attempts
                        ),
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn once(
        &self,
        req: &JsonRequest,
        attempt: u32,
        authorization: Option<&str>,
    ) -> Result<serde_json::Value, (CallError, Option<Duration>)> {
        let mut rb = self
            .client
            .request(req.method.clone(), req.url.clone())
            .timeout(self.attempt_timeout)
            .header(reqwest::header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(t) = &req.bearer {
            rb = rb.bearer_auth(t);
        }
        if let Some(a) = authorization {
            let mut v = HeaderValue::from_str(a).map_err(|_| {
                (CallError::Decode { url: url_for_display(&req.url), message: "invalid credentials".into() }, None)
            })?;
            v.set_sensitive(true);
            rb = rb.header(reqwest::header::AUTHORIZATION, v);
        }
        if req.method == reqwest::Method::POST {
            match &req.body {
                Some(b) => {
                    rb = rb.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.to_string());
                }
                None => {
                    rb = rb.header(reqwest::header::CONTENT_LENGTH, "0");
                }
            }
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| (CallError::Transport { message: describe_transport(&e), attempts: attempt }, None))?;
        let status = resp.status().as_u16();
        let ra = retry_after(resp.headers());
        let body = read_limited(resp, if (200..300).contains(&status) { MAX_JSON_BODY } else { MAX_ERROR_BODY })
            .await
            .map_err(|e| (CallError::Transport { message: describe_transport(&e), attempts: attempt }, None))?;
        if (200..300).contains(&status) {
            if body.len() >= MAX_JSON_BODY {
                return Err((
                    CallError::Decode { url: url_for_display(&req.url), message: "response too large".into() },
                    None,
                ));
            }
            return serde_json::from_slice(&body).map_err(|e| {
                (CallError::Decode { url: url_for_display(&req.url), message: format!("invalid JSON: {e}") }, None)
            });
        }
        let (code, message) = error_fields(&body);
        Err((CallError::Status { status, code, message, attempts: attempt }, ra))
    }
}

/// Read at most `limit` bytes of a body (the rest is dropped with the connection).
pub async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// `error.code` and `error.message` from a JSON error body (redacted, message cut to 300 chars).
fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let err = v.get("error").unwrap_or(&v);
    // MLflow and Databricks put the code in a top-level `error_code`.
    let code =
        err.get("code").or_else(|| err.get("error_code")).and_then(|c| c.as_str()).map(|s| redact(&truncate(s, 100)));
    let message = err.get("message").and_then(|c| c.as_str()).map(|s| redact(&truncate(s, 300)));
    (code, message)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n).collect::<String>() + "…" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_are_extracted_and_redacted() {
        let (c, m) = error_fields(br#"{"error":{"code":"NotFound","message":"no job at https://x/y?sig=abc"}}"#);
        assert_eq!(c.as_deref(), Some("NotFound"));
        assert!(!m.unwrap().contains("abc"));
        assert_eq!(error_fields(b"<html>"), (None, None));
    }
}

//! The one HTTP client for the whole run (timeouts, user agent, no redirects, no decompression)
//! and JSON metadata calls with retries. Knows HTTP, not Azure resources and not files.
use crate::error::Error;
use crate::redact::{redact, url_for_display};
use crate::retry::{RetryConfig, parse_retry_after, status_is_retryable};
use reqwest::header::{HeaderMap, HeaderValue};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;

/// Longest wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest time one metadata request may take, body included (metadata responses are small).
const META_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Most bytes of an error body ever read.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Most bytes of a JSON metadata response accepted (guards against hostile servers).
const MAX_JSON_BODY: usize = 64 * 1024 * 1024;
/// Deepest element nesting the XML parsers of server data accept (List Blobs, ListObjectsV2 and
/// error bodies nest 5 deep at most); a deeper document is refused as malformed.
pub const MAX_XML_DEPTH: usize = 64;

/// Build the run's client. `idle` bounds the time between two reads (never the whole transfer).
///
/// Proxies: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (and their lower-case forms),
/// read as reqwest and curl read them ([`proxies`]), except that loopback targets always go direct.
/// Trust: the platform verifier (the OS store; on Linux the system
/// bundle, which `SSL_CERT_FILE`/`SSL_CERT_DIR` replace as in OpenSSL), plus the certificates of
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` added here, so they are trusted on every platform. An
/// unreadable or empty bundle is a configuration error (exit 2) naming the file.
///
/// HTTP/1.1 only, unless `JOBDL_HTTP2=1` ([`http2_allowed`]) offers HTTP/2 in the TLS handshake
/// (ALPN). Over HTTP/2 every request to a host shares one TCP connection, so a large file's
/// parallel ranged chunks share one flow-control window and one per-connection rate cap, where
/// HTTP/1.1 gives each chunk its own connection (the pool is bounded by the engine's budget and
/// `pool_max_idle_per_host`).
pub fn build_client(idle: Duration) -> Result<reqwest::Client, Error> {
    let http2 = http2_allowed(crate::env::var(crate::env::JOBDL_HTTP2).as_deref())?;
    let roots =
        extra_roots(crate::env::var_os(crate::env::SSL_CERT_FILE), crate::env::var_os(crate::env::SSL_CERT_DIR))?;
    // Only the proxies of `proxies` (this also turns off reqwest's own reading of the variables).
    let mut builder = reqwest::Client::builder().no_proxy();
    for proxy in proxies(&crate::env::var)? {
        builder = builder.proxy(proxy);
    }
    if !http2 {
        builder = builder.http1_only();
    }
    builder
        .user_agent(concat!("jobdl/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .no_deflate()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(idle)
        .pool_max_idle_per_host(crate::transfer::MAX_CONNECTIONS)
        .tls_certs_merge(roots)
        .build()
        .map_err(|e| Error::Io(format!("cannot build the HTTP client: {}", describe_chain(&e))))
}

/// `JOBDL_HTTP2`: `1`/`true`/`yes` lets HTTP/2 in, `0`/`false`/`no` or unset keeps HTTP/1.1;
/// anything else is a configuration error (exit 2).
fn http2_allowed(value: Option<&str>) -> Result<bool, Error> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(_) => Err(Error::usage(format!("invalid {}: expected 1 or 0", crate::env::JOBDL_HTTP2))),
    }
}

/// Whether a `NO_PROXY` value turns every proxy off (an entry that is just `*`).
fn no_proxy_everywhere(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.split(',').any(|p| p.trim() == "*"))
}

/// Targets that never go through a proxy, whatever `NO_PROXY` says (as in Go's net/http): the
/// loopback networks (IPv4, IPv6 and IPv4-mapped IPv6) and `localhost` with its sub-domains
/// (`*.localhost`, RFC 6761). A proxy on another machine cannot reach this machine's loopback
/// anyway, and requests to loopback endpoints (a local MLflow, an emulator, a port-forward)
/// carry tokens and SAS signatures that a proxy must never see.
const ALWAYS_DIRECT: &str = "127.0.0.0/8,::1/128,::ffff:127.0.0.0/104,localhost";

/// The first non-empty value of these variables.
fn first_var(var: &dyn Fn(&str) -> Option<String>, names: &[&str]) -> Option<(String, String)> {
    names.iter().find_map(|n| var(n).filter(|v| !v.trim().is_empty()).map(|v| (n.to_string(), v.trim().to_string())))
}

/// The proxies of the environment, read as reqwest (and curl) read them: `HTTP_PROXY` for `http`
/// URLs, `HTTPS_PROXY` for `https` ones, `ALL_PROXY` for either when the specific one is unset
/// (lower-case forms too); `HTTP_PROXY` is ignored when `REQUEST_METHOD` is set (a CGI
/// environment, where it may come from a request header); `NO_PROXY` lists hosts, domains and IP
/// ranges that go direct, and `*` turns every proxy off (IP addresses included, as in curl).
/// Loopback targets ([`ALWAYS_DIRECT`]) always go direct. A proxy URL that does not parse is a
/// configuration error (exit 2) naming the variable, never printing the URL (it may hold a
/// password).
fn proxies(var: &dyn Fn(&str) -> Option<String>) -> Result<Vec<reqwest::Proxy>, Error> {
    let no = first_var(var, &[crate::env::NO_PROXY, crate::env::NO_PROXY_LOWER]).map(|(_, v)| v);
    if no_proxy_everywhere(no.as_deref()) {
        return Ok(Vec::new());
    }
    let all = first_var(var, &[crate::env::ALL_PROXY, crate::env::ALL_PROXY_LOWER]);
    let cgi = var(crate::env::REQUEST_METHOD).is_some();
    let http = if cgi {
        None
    } else {
        first_var(var, &[crate::env::HTTP_PROXY, crate::env::HTTP_PROXY_LOWER]).or_else(|| all.clone())
    };
    let https = first_var(var, &[crate::env::HTTPS_PROXY, crate::env::HTTPS_PROXY_LOWER]).or(all);
    let direct = match no.as_deref() {
        Some(list) => format!("{list},{ALWAYS_DIRECT}"),
        None => ALWAYS_DIRECT.to_string(),
    };
    let mut out = Vec::new();
    for (scheme, found) in [("http", http), ("https", https)] {
        let Some((name, value)) = found else { continue };
        let proxy =
            if scheme == "http" { reqwest::Proxy::http(value.as_str()) } else { reqwest::Proxy::https(value.as_str()) };
        let proxy = proxy.map_err(|_| {
            Error::usage(format!("{name}: not a usable proxy URL (expected http://[USER:PASSWORD@]HOST:PORT)"))
        })?;
        out.push(proxy.no_proxy(reqwest::NoProxy::from_string(&direct)));
    }
    Ok(out)
}

/// The certificates of the `SSL_CERT_FILE` bundle and of the PEM files in the `SSL_CERT_DIR`
/// directories (files there that hold no certificate are skipped, as OpenSSL's hashed
/// directories also hold CRLs and other files).
fn extra_roots(file: Option<OsString>, dirs: Option<OsString>) -> Result<Vec<reqwest::Certificate>, Error> {
    let mut roots = Vec::new();
    if let Some(file) = file.filter(|f| !f.is_empty()) {
        let path = PathBuf::from(file);
        let shown = path.display();
        let pem = std::fs::read(&path)
            .map_err(|e| Error::usage(format!("SSL_CERT_FILE={shown}: cannot read the CA bundle: {e}")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::usage(format!("SSL_CERT_FILE={shown}: not a PEM certificate bundle: {e}")))?;
        if certs.is_empty() {
            return Err(Error::usage(format!(
                "SSL_CERT_FILE={shown}: no certificate in it (expected PEM '-----BEGIN CERTIFICATE-----' blocks)"
            )));
        }
        roots.extend(certs);
    }
    if let Some(dirs) = dirs.filter(|d| !d.is_empty()) {
        for dir in std::env::split_paths(&dirs).filter(|d| !d.as_os_str().is_empty()) {
            let shown = dir.display();
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| Error::usage(format!("SSL_CERT_DIR: cannot read the directory {shown}: {e}")))?;
            for entry in entries.flatten() {
                let path = entry.path();
                // Follows symlinks (hashed names point at the real files).
                if !path.is_file() {
                    continue;
                }
                if let Ok(pem) = std::fs::read(&path)
                    && let Ok(certs) = reqwest::Certificate::from_pem_bundle(&pem)
                {
                    roots.extend(certs);
                }
            }
        }
    }
    Ok(roots)
}

/// An error and its sources, one line.
fn describe_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    redact(&msg)
}

/// Said after a 407: the proxy, not the service, refused.
const PROXY_AUTH_HINT: &str = " (the proxy asks for credentials: put them in the proxy URL, http://USER:PASSWORD@HOST:PORT, of HTTPS_PROXY / HTTP_PROXY / ALL_PROXY)";

/// A failed HTTP call, with the status kept all the way to the retry decision.
#[derive(Debug, Error)]
pub enum CallError {
    /// The server answered with a non-success status.
    #[error("HTTP {status}{}{}{}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(), if *status == 407 { PROXY_AUTH_HINT } else { "" })]
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
    /// No credential could produce a token, so no request was sent.
    #[error("{message}")]
    Credential {
        /// Every credential source tried and why each gave nothing.
        message: String,
    },
    /// The URL is not on the origin its credential belongs to, so no request was sent.
    #[error("refused to send the credential to {url}: only {origin} receives it")]
    HostRefused {
        /// Redacted URL that was refused.
        url: String,
        /// The origin (`scheme://host:port`) the credential belongs to.
        origin: String,
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
            CallError::Decode { .. } | CallError::Credential { .. } | CallError::HostRefused { .. } => 1,
        }
    }

    /// Whether the call may succeed if repeated.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Status { status, .. } => status_is_retryable(*status),
            CallError::Transport { .. } => true,
            CallError::Decode { .. } | CallError::Credential { .. } | CallError::HostRefused { .. } => false,
        }
    }
}

/// The bookkeeping every paged listing shares (blob markers, S3 continuation tokens, Foundry
/// next links, MLflow and Kubeflow page tokens): at most `max` pages, and the server's
/// continuation never repeats, so a server that loops is stopped instead of followed forever.
#[derive(Debug)]
pub struct Pages {
    /// What the continuation is called in messages (`page marker`, `next_page_token`, …).
    kind: &'static str,
    seen: std::collections::HashSet<String>,
    max: usize,
}

/// Why a paged listing stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageStop {
    /// The server handed back a continuation it had already given.
    #[error("the service repeated a {0} (the listing would never end); stopping")]
    Repeated(&'static str),
    /// More pages than the bound.
    #[error("the listing did not end after {0} pages; stopping")]
    TooMany(usize),
}

impl Pages {
    /// A listing of at most `max` pages whose continuation is called `kind`.
    pub fn new(kind: &'static str, max: usize) -> Pages {
        Pages { kind, seen: std::collections::HashSet::new(), max: max.max(1) }
    }

    /// After a page: its continuation (`None` or empty: the listing is complete) becomes the
    /// next page's, unless it was seen before or the next page would pass the bound.
    pub fn next(&mut self, continuation: Option<&str>) -> Result<Option<String>, PageStop> {
        let Some(c) = continuation.filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        if !self.seen.insert(c.to_string()) {
            return Err(PageStop::Repeated(self.kind));
        }
        if self.seen.len() >= self.max {
            return Err(PageStop::TooMany(self.max));
        }
        Ok(Some(c.to_string()))
    }
}

/// `Ok` when `url` is on one of `origins` (scheme, host and port: [`crate::hosts::same_origin`]);
/// else the [`CallError::HostRefused`] that stops a credential from leaving its service, reported
/// against the first origin.
pub fn check_origin(url: &url::Url, origins: &[&url::Url]) -> Result<(), CallError> {
    if origins.iter().any(|o| crate::hosts::same_origin(url, o)) {
        return Ok(());
    }
    let origin = origins.first().map(|o| o.origin().ascii_serialization()).unwrap_or_default();
    Err(CallError::HostRefused { url: crate::redact::url_for_display(url), origin })
}

/// Describe a reqwest error without leaking secrets (URLs inside are redacted).
pub fn describe_transport(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() && e.is_connect() {
        format!("timed out connecting (no connection within {}s, the connect timeout)", CONNECT_TIMEOUT.as_secs())
    } else if e.is_timeout() {
        "timed out (no data received within the idle timeout, --idle-timeout / idle_timeout)".to_string()
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
    if msg.contains("proxy authorization required") {
        // A `CONNECT` refused with 407 (an `https` target through the proxy).
        msg.push_str(PROXY_AUTH_HINT);
    }
    if msg.contains("certificate") {
        msg.push_str(
            " (the server's TLS certificate could not be verified; if a TLS-inspecting proxy or a private CA \
             signs it, set SSL_CERT_FILE to a PEM bundle that holds that CA)",
        );
    }
    redact(&msg)
}

/// [`describe_transport`] for a metadata request, which also has a whole-request limit: a timeout
/// says which limit ended it (connect, the whole request, or the idle timeout between reads).
fn describe_meta_transport(e: &reqwest::Error, elapsed: Duration, whole: Duration) -> String {
    let msg = describe_transport(e);
    if e.is_timeout() && !e.is_connect() && elapsed + Duration::from_millis(50) >= whole {
        let rest = msg.split_once(": ").map(|(_, r)| format!(": {r}")).unwrap_or_default();
        return format!(
            "timed out (no whole response within {}s, the limit of one metadata request){rest}",
            whole.as_secs_f64()
        );
    }
    msg
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
    /// `Foundry-Features` opt-in header value (e.g. `Jobs=V1Preview`), if the route needs one.
    pub features: Option<&'static str>,
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
        MetaClient { client, retry, attempt_timeout: META_ATTEMPT_TIMEOUT }
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
                Ok((_, status)) => crate::log::log(
                    1,
                    format!("{} {} -> {status} ({} ms)", req.method, shown, started.elapsed().as_millis()),
                ),
                Err((e, _)) => crate::log::log(
                    1,
                    format!("{} {} -> {} ({} ms)", req.method, shown, e, started.elapsed().as_millis()),
                ),
            }
            match result {
                Ok((v, _)) => return Ok(v),
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

    /// One attempt: the parsed body and the status.
    async fn once(
        &self,
        req: &JsonRequest,
        attempt: u32,
        authorization: Option<&str>,
    ) -> Result<(serde_json::Value, u16), (CallError, Option<Duration>)> {
        let mut rb = self
            .client
            .request(req.method.clone(), req.url.clone())
            .timeout(self.attempt_timeout)
            .header(reqwest::header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(t) = &req.bearer {
            rb = rb.bearer_auth(t);
        }
        if let Some(f) = req.features {
            rb = rb.header("Foundry-Features", f);
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
        let started = Instant::now();
        let transport = |e: reqwest::Error| {
            let message = describe_meta_transport(&e, started.elapsed(), self.attempt_timeout);
            (CallError::Transport { message, attempts: attempt }, None)
        };
        let resp = rb.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let ra = retry_after(resp.headers());
        let body = read_limited(resp, if (200..300).contains(&status) { MAX_JSON_BODY } else { MAX_ERROR_BODY })
            .await
            .map_err(transport)?;
        if (200..300).contains(&status) {
            if body.len() >= MAX_JSON_BODY {
                return Err((
                    CallError::Decode { url: url_for_display(&req.url), message: "response too large".into() },
                    None,
                ));
            }
            return serde_json::from_slice(&body).map(|v| (v, status)).map_err(|e| {
                (CallError::Decode { url: url_for_display(&req.url), message: format!("invalid JSON: {e}") }, None)
            });
        }
        let (code, message) = error_fields(&body);
        Err((CallError::Status { status, code, message, attempts: attempt }, ra))
    }
}

/// Parse a response body on the blocking pool: a big page costs CPU time that must not hold an
/// async worker, and a caller that stops waiting (Ctrl+C) is not held by it either.
pub async fn parse_blocking<T: Send + 'static>(
    body: Vec<u8>,
    parse: fn(&[u8]) -> Result<T, String>,
) -> Result<T, String> {
    tokio::task::spawn_blocking(move || parse(&body)).await.unwrap_or_else(|e| Err(format!("the parser stopped: {e}")))
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
    // Azure nests `error`; KFP's gateway (2.0–2.5) adds a string `error` beside its own fields.
    let err = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
    // MLflow and Databricks put the code in a top-level `error_code`; gRPC gateways a number.
    let code = err.get("code").or_else(|| err.get("error_code")).and_then(|c| match c {
        serde_json::Value::String(s) => Some(truncate(&redact(s), 100)),
        serde_json::Value::Number(n) => Some(format!("code {n}")),
        _ => None,
    });
    let message = err
        .get("message")
        .or_else(|| err.get("error_message"))
        .and_then(|c| c.as_str())
        .map(|s| truncate(&redact(s), 300));
    (code, message)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n).collect::<String>() + "…" }
}

/// One failed attempt: the error and the server's `Retry-After`, if any.
pub type AttemptError = (CallError, Option<Duration>);

/// Run `once` (one attempt of a storage call) until it succeeds, fails for good, or runs out of
/// `retry`'s attempts, as [`MetaClient::json`] does for JSON calls. `once` gives the value and the
/// HTTP status (shown at `-v`). Shared by the blob and S3 clients.
pub async fn with_retry<T, F, Fut>(retry: &RetryConfig, method: &str, url: &url::Url, once: F) -> Result<T, CallError>
where
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = Result<(T, u16), AttemptError>>,
{
    let shown = url_for_display(url);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let started = Instant::now();
        let result = once(attempt).await;
        let ms = started.elapsed().as_millis();
        match result {
            Ok((v, status)) => {
                crate::log::log(1, format!("{method} {shown} -> {status} ({ms} ms)"));
                return Ok(v);
            }
            Err((e, ra)) => {
                crate::log::log(1, format!("{method} {shown} -> {e} ({ms} ms)"));
                if !e.is_retryable() || attempt >= retry.attempts.max(1) {
                    return Err(e);
                }
                // The RNG lives only in this block, so the future stays `Send`.
                let wait = {
                    let mut rng = rand::rng();
                    retry.delay(attempt - 1, ra, &mut rng)
                };
                crate::log::log(
                    1,
                    format!("retrying {method} {shown} in {wait:?} (attempt {} of {})", attempt + 1, retry.attempts),
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn pages_end_on_no_continuation_and_stop_on_a_repeat_or_past_the_bound() {
        let mut p = Pages::new("page marker", 3);
        assert_eq!(p.next(Some("a")), Ok(Some("a".to_string())));
        assert_eq!(p.next(Some("b")), Ok(Some("b".to_string())));
        assert_eq!(p.next(Some("a")), Err(PageStop::Repeated("page marker")));
        assert_eq!(p.next(None), Ok(None));
        assert_eq!(p.next(Some("")), Ok(None));
        // The third continuation would fetch a fourth page.
        assert_eq!(p.next(Some("c")), Err(PageStop::TooMany(3)));
        assert!(PageStop::Repeated("page marker").to_string().contains("repeated a page marker"));
        let mut one = Pages::new("next link", 1);
        assert_eq!(one.next(Some("x")), Err(PageStop::TooMany(1)));
        assert_eq!(one.next(None), Ok(None));
    }

    #[test]
    fn a_credential_stays_on_its_origin() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let (arm, api) = (u("https://management.azure.com"), u("https://eastus.api.azureml.ms"));
        assert!(check_origin(&u("https://management.azure.com/subscriptions/x?a=1"), &[&arm]).is_ok());
        assert!(check_origin(&u("https://management.azure.com:443/x"), &[&arm]).is_ok());
        assert!(check_origin(&u("https://eastus.api.azureml.ms/history"), &[&arm, &api]).is_ok());
        for bad in [
            "http://management.azure.com/x",
            "https://management.azure.com:8443/x",
            "https://management.azure.com.evil.invalid/x",
            "https://evil.invalid/x?sig=secret",
        ] {
            let e = check_origin(&u(bad), &[&arm, &api]).unwrap_err();
            assert!(matches!(e, CallError::HostRefused { .. }) && !e.is_retryable(), "{bad}: {e:?}");
            let shown = e.to_string();
            assert!(
                shown.contains("only https://management.azure.com receives it") && !shown.contains("secret"),
                "{shown}"
            );
        }
    }

    use super::*;

    #[test]
    fn no_proxy_star_turns_proxies_off() {
        assert!(no_proxy_everywhere(Some("*")));
        assert!(no_proxy_everywhere(Some(" * ")));
        assert!(no_proxy_everywhere(Some("example.invalid, *")));
        assert!(!no_proxy_everywhere(Some("*.example.invalid")));
        assert!(!no_proxy_everywhere(Some("127.0.0.1")));
        assert!(!no_proxy_everywhere(Some("")));
        assert!(!no_proxy_everywhere(None));
    }

    #[test]
    fn proxies_come_from_the_environment_and_a_bad_one_is_named() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(proxies(&vars(&[])).unwrap().len(), 0);
        assert_eq!(proxies(&vars(&[("HTTP_PROXY", "http://p.invalid:3128")])).unwrap().len(), 1);
        assert_eq!(proxies(&vars(&[("all_proxy", "p.invalid:3128")])).unwrap().len(), 2);
        assert_eq!(proxies(&vars(&[("ALL_PROXY", "http://p.invalid:1"), ("NO_PROXY", "x, *")])).unwrap().len(), 0);
        // A CGI environment: HTTP_PROXY may come from a request header (httpoxy).
        const CGI: &[(&str, &str)] = &[("HTTP_PROXY", "http://p.invalid:1"), ("REQUEST_METHOD", "GET")];
        assert_eq!(proxies(&vars(CGI)).unwrap().len(), 0);
        let e = proxies(&vars(&[("HTTPS_PROXY", "http://u:s3cret@[::1")])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("HTTPS_PROXY") && !e.to_string().contains("s3cret"), "{e}");
    }

    /// A client with `HTTP_PROXY` pointing at a listener that counts connections: requests to
    /// loopback targets never reach it, whatever `NO_PROXY` says.
    #[tokio::test]
    async fn loopback_targets_never_go_through_the_proxy() {
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut c, _)) = server.accept().await {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf).await;
                let _ = c.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
            }
        });
        let vars = move |k: &str| match k {
            "HTTP_PROXY" | "HTTPS_PROXY" => Some(proxy_url.clone()),
            "NO_PROXY" => Some("example.invalid".to_string()),
            _ => None,
        };
        let mut builder = reqwest::Client::builder().no_proxy();
        for p in proxies(&vars).unwrap() {
            builder = builder.proxy(p);
        }
        let client = builder.build().unwrap();
        for host in ["127.0.0.1", "localhost", "127.0.0.1."] {
            let url = format!("http://{host}:{port}/x?sig=secret");
            let Ok(url) = url::Url::parse(&url) else { continue };
            let _ = client.get(url).timeout(Duration::from_secs(5)).send().await;
        }
        let accepted = tokio::time::timeout(Duration::from_millis(200), proxy.accept()).await;
        assert!(accepted.is_err(), "a loopback request went through the proxy");
    }

    /// A listener that accepts and then says nothing.
    async fn silent_server() -> (tokio::task::JoinHandle<()>, String) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", l.local_addr().unwrap());
        let h = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((c, _)) = l.accept().await {
                held.push(c);
            }
        });
        (h, url)
    }

    #[tokio::test]
    async fn timeouts_say_which_limit_was_hit() {
        let (server, url) = silent_server().await;
        // The idle timeout between reads (the run's client).
        let idle = reqwest::Client::builder().no_proxy().read_timeout(Duration::from_millis(100)).build().unwrap();
        let e = idle.get(&url).send().await.unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        let msg = describe_meta_transport(&e, Duration::from_millis(100), Duration::from_secs(60));
        assert!(msg.contains("idle timeout") && msg.contains("--idle-timeout"), "{msg}");
        // The whole-request limit of a metadata call.
        let plain = reqwest::Client::builder().no_proxy().build().unwrap();
        let whole = Duration::from_millis(150);
        let started = Instant::now();
        let e = plain.get(&url).timeout(whole).send().await.unwrap_err();
        let msg = describe_meta_transport(&e, started.elapsed(), whole);
        assert!(msg.contains("no whole response within 0.15s") && msg.contains("metadata request"), "{msg}");
        server.abort();
    }

    #[test]
    fn ca_bundles_are_read_or_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = extra_roots(Some(missing.clone().into_os_string()), None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("SSL_CERT_FILE") && e.to_string().contains("missing.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "no certificate here\n").unwrap();
        let e = extra_roots(Some(junk.into_os_string()), None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("junk.pem"), "{e}");
        // Empty values are unset; a directory with no certificate adds none.
        assert!(extra_roots(Some("".into()), Some("".into())).unwrap().is_empty());
        assert!(extra_roots(None, Some(dir.path().as_os_str().to_owned())).unwrap().is_empty());
        let e = extra_roots(None, Some(missing.into_os_string())).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn error_fields_are_extracted_and_redacted() {
        let (c, m) = error_fields(br#"{"error":{"code":"NotFound","message":"no job at https://x/y?sig=abc"}}"#);
        assert_eq!(c.as_deref(), Some("NotFound"));
        assert!(!m.unwrap().contains("abc"));
        assert_eq!(error_fields(b"<html>"), (None, None));
        let (c, m) = error_fields(br#"{"error":"run not found","code":5,"message":"run not found","details":[]}"#);
        assert_eq!((c.as_deref(), m.as_deref()), (Some("code 5"), Some("run not found")));
    }
}

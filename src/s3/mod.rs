//! S3-compatible object storage (docs/kfp-s3-api.md §5–§6): `s3://` locations, credentials, SigV4
//! signing (AWS's `aws-sigv4` crate, never by hand), ListObjectsV2 with continuation tokens and
//! `encoding-type=url`, HEAD, and ETag classification.
//!
//! Every request is signed in headers at the moment it is sent ([`sign`]): metadata calls here,
//! data GETs through the engine's `SignHook`. `Range` and `If-Match` stay unsigned. The secret
//! and the session token never leave the signer; `Authorization` headers are never printed.
//! Knows nothing about files on disk or providers.
/// How a listed object is verified (ETag kinds, part sizes, stored checksums).
pub mod checks;
/// `~/.aws/credentials` and the environment.
pub mod creds;
/// ListObjectsV2 page parsing.
pub mod list;
/// SigV4 header signing.
pub mod sign;

pub use creds::Credentials;
pub use list::{ListPage, S3Object, parse_list_page};
pub use sign::Signer;

use crate::http::{CallError, describe_transport, read_limited, retry_after};
use crate::redact::url_for_display;
use crate::retry::RetryConfig;
use crate::transfer::Expected;
use ::url::Url;
use percent_encoding::utf8_percent_encode;
use std::time::Duration;

/// Most pages one listing may take before it is treated as a runaway server.
pub const MAX_LIST_PAGES: usize = 100_000;
/// Most bytes of one ListObjectsV2 page accepted (1000 keys of 1 KiB is about 1.5 MB).
const MAX_LIST_BODY: usize = 32 * 1024 * 1024;
/// Most bytes of an error body read (only `<Code>` is ever used).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Default region when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";

/// An `s3://BUCKET/KEY-OR-PREFIX` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// Everything after `BUCKET/`, verbatim (may be empty).
    pub key: String,
}

/// Parse `s3://BUCKET[/KEY]`. The bucket must be a valid S3 bucket name (3–63 of `a-z0-9.-`,
/// starting and ending with a letter or digit; `_` and upper case are accepted for older
/// S3-compatible stores); the key is kept verbatim but may not contain `.`/`..` segments (URL
/// parsers would rewrite them and another object would be requested) or control characters.
pub fn parse_s3_url(raw: &str) -> Result<S3Location, String> {
    let rest = raw
        .strip_prefix("s3://")
        .or_else(|| raw.get(..5).filter(|s| s.eq_ignore_ascii_case("s3://")).map(|_| &raw[5..]))
        .ok_or_else(|| format!("not an s3:// URL: '{}'", raw.escape_debug()))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && bucket.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bucket.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if !valid_bucket {
        return Err(format!(
            "'{}' is not a valid bucket name (3-63 letters, digits, '.', '-'): use s3://BUCKET/PREFIX",
            bucket.escape_debug()
        ));
    }
    if let Some(reason) = unrequestable(key) {
        return Err(format!("the key or prefix '{}' {reason}", key.escape_debug()));
    }
    Ok(S3Location { bucket: bucket.to_string(), key: key.to_string() })
}

/// Why a key can never be requested safely (`None` when it can): a `.` or `..` segment (URL
/// parsers normalise them, even percent-encoded, so another object would be fetched) or a
/// control character.
pub fn unrequestable(key: &str) -> Option<&'static str> {
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Some("has a '.' or '..' segment");
    }
    if key.chars().any(char::is_control) {
        return Some("holds a control character");
    }
    None
}

/// What an object's ETag proves about its content (§6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtagKind {
    /// 32 hex digits: a single-part upload, the ETag is the object's MD5.
    Md5([u8; 16]),
    /// `<32 hex>-N`: a multipart upload; the MD5 of the part MD5s, not of the object.
    Multipart(u32),
    /// Anything else (opaque).
    Opaque,
}

/// Classify an ETag (quotes allowed).
pub fn classify_etag(etag: &str) -> EtagKind {
    let e = list::unquote(etag);
    let hex16 = |s: &str| -> Option<[u8; 16]> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    };
    if let Some(md5) = hex16(e) {
        return EtagKind::Md5(md5);
    }
    if let Some((h, n)) = e.split_once('-')
        && hex16(h).is_some()
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = n.parse::<u32>()
        && n >= 1
    {
        return EtagKind::Multipart(n);
    }
    EtagKind::Opaque
}

/// Where the store is and how to sign for it (`Debug` shows the access key id, never the secret).
#[derive(Clone, Debug)]
pub struct S3Config {
    /// A custom endpoint (`--s3-endpoint` / `AWS_ENDPOINT_URL`): path-style addressing. `None`:
    /// AWS, `https://<bucket>.s3.<region>.amazonaws.com`.
    pub endpoint: Option<Url>,
    /// Signing region.
    pub region: String,
    /// Access key, secret and optional session token.
    pub credentials: Credentials,
}

impl S3Config {
    /// The AWS S3 endpoint of `region` (`https://s3.<region>.amazonaws.com`).
    pub fn aws_endpoint(region: &str) -> Result<Url, String> {
        let ok =
            !region.is_empty() && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(format!("'{}' is not an AWS region name", region.escape_debug()));
        }
        Url::parse(&format!("https://s3.{region}.amazonaws.com")).map_err(|e| e.to_string())
    }
}

/// Metadata calls on one bucket (ListObjectsV2, HEAD) with retries, and object URLs.
#[derive(Clone)]
pub struct S3Client {
    client: reqwest::Client,
    retry: RetryConfig,
    /// `…/<bucket>/` (path style) or `https://<bucket>.s3.<region>.amazonaws.com/`.
    bucket_url: Url,
    /// The bucket name.
    bucket: String,
    signer: Signer,
    /// Total time allowed for one metadata attempt.
    attempt_timeout: Duration,
    /// Page limit of one listing ([`MAX_LIST_PAGES`]; lowered in tests).
    max_pages: usize,
    /// Most objects one listing may hold (the `max_list_entries` setting).
    max_entries: usize,
}

/// Bytes kept as they are in S3 paths: RFC 3986 unreserved and `/` (§5.3: encoded once).
const PATH_KEEP: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// What HEAD reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectProps {
    /// `Content-Length`.
    pub size: u64,
    /// `ETag`, quotes removed.
    pub etag: Option<String>,
    /// Encrypted with SSE-KMS or SSE-C: even a single-part ETag is then not the MD5 (§6.3).
    pub kms_or_sse_c: bool,
}

/// A failed attempt and the server's `Retry-After`, if any.
use crate::http::AttemptError;

impl S3Client {
    /// A client for `bucket`. Errors on an endpoint or bucket that cannot form URLs.
    pub fn new(client: reqwest::Client, retry: RetryConfig, config: &S3Config, bucket: &str) -> Result<Self, String> {
        let path_style = |endpoint: &Url| -> Result<Url, String> {
            let base = endpoint.as_str().trim_end_matches('/');
            Url::parse(&format!("{base}/{}/", utf8_percent_encode(bucket, PATH_KEEP))).map_err(|e| e.to_string())
        };
        let bucket_url = match &config.endpoint {
            Some(e) => path_style(e)?,
            // Dotted names do not match the `*.s3.<region>.amazonaws.com` certificate.
            None if bucket.contains('.') => path_style(&S3Config::aws_endpoint(&config.region)?)?,
            None => {
                S3Config::aws_endpoint(&config.region)?;
                Url::parse(&format!("https://{bucket}.s3.{}.amazonaws.com/", config.region))
                    .map_err(|e| e.to_string())?
            }
        };
        Ok(S3Client {
            client,
            retry,
            bucket_url,
            bucket: bucket.to_string(),
            signer: Signer::new(config.credentials.clone(), config.region.clone()),
            attempt_timeout: Duration::from_secs(60),
            max_pages: MAX_LIST_PAGES,
            max_entries: crate::settings::DEFAULT_MAX_LIST_ENTRIES,
        })
    }

    /// The same client with another entry limit per listing (the `max_list_entries` setting).
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// The bucket's base URL (`…/<bucket>/` or `https://<bucket>.s3…/`).
    pub fn bucket_url(&self) -> &Url {
        &self.bucket_url
    }

    /// The bucket name.
    pub fn bucket_name(&self) -> &str {
        &self.bucket
    }

    /// Whether anything exists under `prefix` (one ListObjectsV2 call with `max-keys=1`).
    pub async fn probe(&self, prefix: &str) -> Result<bool, CallError> {
        let mut url = self.bucket_url.clone();
        url.query_pairs_mut()
            .append_pair("encoding-type", "url")
            .append_pair("list-type", "2")
            .append_pair("max-keys", "1")
            .append_pair("prefix", prefix);
        let page = crate::http::with_retry(&self.retry, "GET", &url, |attempt| self.get_page(&url, attempt)).await?;
        // A folder marker (`…/`, skipped by the parser) may be the one key of the page.
        Ok(!page.objects.is_empty() || !page.bad.is_empty() || page.next_token.is_some())
    }

    /// The signer (for the engine's per-request hook).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The URL of `key`: every byte outside `A-Za-z0-9-._~/` percent-encoded once. The caller has
    /// checked [`unrequestable`]: a `.`/`..` segment would be normalised by the URL parser.
    pub fn object_url(&self, key: &str) -> Result<Url, String> {
        let encoded = utf8_percent_encode(key, PATH_KEEP).to_string();
        Url::parse(&format!("{}{encoded}", self.bucket_url.as_str()))
            .map_err(|e| format!("key '{}' does not form a URL: {e}", key.escape_debug()))
    }

    /// A signed request (fresh signature: call once per attempt).
    fn signed(&self, method: reqwest::Method, url: &Url) -> Result<reqwest::RequestBuilder, CallError> {
        self.signed_with(method, url, &[])
    }

    /// A signed request carrying `extra` headers (lower-case names), signed too.
    fn signed_with(
        &self,
        method: reqwest::Method,
        url: &Url,
        extra: &[(&str, &str)],
    ) -> Result<reqwest::RequestBuilder, CallError> {
        let headers = self
            .signer
            .headers_at(method.as_str(), url, extra, sign::Payload::Unsigned, std::time::SystemTime::now())
            .map_err(|message| CallError::Decode { url: url_for_display(url), message })?;
        let mut rb = self.client.request(method, url.clone()).timeout(self.attempt_timeout);
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        Ok(rb)
    }

    /// The check of a listed object beyond a single-part ETag's MD5 (which the caller takes from
    /// the listing, §6.3): a multipart ETag once `HEAD ?partNumber=1` and `?partNumber=N` show a
    /// layout of equal parts giving that ETag; else the whole-object checksum the store keeps
    /// (`HEAD` with `x-amz-checksum-mode: ENABLED`, §6.4). `None`: the ETag is the MD5, or
    /// nothing can be checked (a failed HEAD only costs the check: the download reports errors).
    pub async fn object_check(&self, key: &str, size: u64, etag: Option<&str>, encrypted: bool) -> Option<Expected> {
        let shown = key.escape_debug();
        match checks::etag_check(size, etag, encrypted) {
            checks::EtagCheck::Md5(_) => return None,
            checks::EtagCheck::Known(e) => return Some(e),
            checks::EtagCheck::NeedsPartSize { digest, parts } => match self.part_layout(key, size, parts).await {
                Ok(Some(part_size)) => {
                    if let Some(e) = checks::multipart_with(size, digest, parts, part_size) {
                        return Some(e);
                    }
                }
                Ok(None) => crate::log::log(
                    1,
                    format!("'{shown}': its {parts} parts are not of one size; asking for a stored checksum"),
                ),
                Err(e) => crate::log::log(1, format!("'{shown}': part size unknown ({e})")),
            },
            checks::EtagCheck::Opaque => {}
        }
        match self.stored_checksum(key, etag).await {
            Ok(found) => {
                if found.is_none() {
                    crate::log::log(1, format!("'{shown}': no MD5 and no whole-object checksum: size only"));
                }
                found
            }
            Err(e) => {
                crate::log::log(1, format!("'{shown}': cannot read its stored checksum ({e}): size only"));
                None
            }
        }
    }

    /// The part size of an object of `parts` equal parts (the last shorter): part 1's length,
    /// when part `parts` has exactly the bytes left (`None` otherwise, or when encrypted with
    /// SSE-KMS/SSE-C, where the ETag is no MD5).
    async fn part_layout(&self, key: &str, size: u64, parts: u32) -> Result<Option<u64>, CallError> {
        let (first, encrypted) = self.head_part(key, 1).await?;
        if encrypted || first == 0 || size.div_ceil(first) != u64::from(parts) {
            return Ok(None);
        }
        let (last, _) = self.head_part(key, parts).await?;
        Ok((u64::from(parts - 1) * first + last == size).then_some(first))
    }

    /// `HEAD ?partNumber=n`: the part's length, and whether SSE-KMS / SSE-C is on.
    async fn head_part(&self, key: &str, n: u32) -> Result<(u64, bool), CallError> {
        let mut url =
            self.object_url(key).map_err(|message| CallError::Decode { url: self.bucket_url.to_string(), message })?;
        url.query_pairs_mut().append_pair("partNumber", &n.to_string());
        let h = crate::http::with_retry(&self.retry, "HEAD", &url, |attempt| self.head_raw(&url, &[], attempt)).await?;
        let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let size = header("content-length").and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| CallError::Decode {
            url: url_for_display(&url),
            message: "no valid Content-Length in the HEAD response".into(),
        })?;
        Ok((size, encrypted(&h)))
    }

    /// The whole-object checksum stored with `key` (`None` when there is none, or the object's
    /// ETag is no longer `etag`).
    async fn stored_checksum(&self, key: &str, etag: Option<&str>) -> Result<Option<Expected>, CallError> {
        let url =
            self.object_url(key).map_err(|message| CallError::Decode { url: self.bucket_url.to_string(), message })?;
        let extra = [("x-amz-checksum-mode", "ENABLED")];
        let h =
            crate::http::with_retry(&self.retry, "HEAD", &url, |attempt| self.head_raw(&url, &extra, attempt)).await?;
        let now = h.get("etag").and_then(|v| v.to_str().ok()).map(list::unquote);
        if let (Some(listed), Some(now)) = (etag.map(list::unquote), now)
            && listed != now
        {
            crate::log::log(1, format!("'{}': changed since it was listed", key.escape_debug()));
            return Ok(None);
        }
        Ok(checks::stored_checksum(&h))
    }

    /// One signed HEAD; a 2xx gives its headers.
    async fn head_raw(
        &self,
        url: &Url,
        extra: &[(&str, &str)],
        attempt: u32,
    ) -> Result<(reqwest::header::HeaderMap, u16), AttemptError> {
        let resp = self
            .signed_with(reqwest::Method::HEAD, url, extra)
            .map_err(|e| (e, None))?
            .send()
            .await
            .map_err(|e| (CallError::Transport { message: describe_transport(&e), attempts: attempt }, None))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if !(200..300).contains(&status) {
            return Err((
                CallError::Status { status, code: None, message: None, attempts: attempt },
                retry_after(&headers),
            ));
        }
        Ok((headers, status))
    }

    /// Every object under `prefix` (folder placeholders skipped; keys outside the prefix dropped),
    /// and the listed objects that cannot be downloaded (key as shown, reason).
    ///
    /// Pages by `NextContinuationToken`; a repeated token or more than [`MAX_LIST_PAGES`] pages
    /// is a `CallError::Decode`. Each page is retried on retryable failures.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<S3Object>, Vec<(String, String)>), CallError> {
        let (mut objects, mut bad) = (Vec::new(), Vec::new());
        let mut pages = crate::http::Pages::new("continuation token", self.max_pages);
        let mut token: Option<String> = None;
        loop {
            let mut url = self.bucket_url.clone();
            {
                let mut q = url.query_pairs_mut();
                if let Some(t) = token.as_deref() {
                    q.append_pair("continuation-token", t);
                }
                q.append_pair("encoding-type", "url").append_pair("list-type", "2").append_pair("max-keys", "1000");
                if !prefix.is_empty() {
                    q.append_pair("prefix", prefix);
                }
            }
            let page =
                crate::http::with_retry(&self.retry, "GET", &url, |attempt| self.get_page(&url, attempt)).await?;
            for o in page.objects {
                if o.key.starts_with(prefix) {
                    if objects.len() >= self.max_entries {
                        return Err(crate::blob::too_many_entries(
                            url_for_display(self.bucket_url()),
                            self.max_entries,
                        ));
                    }
                    objects.push(o);
                } else {
                    crate::log::log(
                        1,
                        format!("ignoring listed key '{}' outside the prefix '{prefix}'", o.key.escape_debug()),
                    );
                }
            }
            bad.extend(page.bad);
            token = pages.next(page.next_token.as_deref()).map_err(|stop| CallError::Decode {
                url: url_for_display(self.bucket_url()),
                message: stop.to_string(),
            })?;
            if token.is_none() {
                return Ok((objects, bad));
            }
        }
    }

    /// HEAD `key`; 404 → `CallError::Status { status: 404, .. }`.
    pub async fn head(&self, key: &str) -> Result<ObjectProps, CallError> {
        let url =
            self.object_url(key).map_err(|message| CallError::Decode { url: self.bucket_url.to_string(), message })?;
        crate::http::with_retry(&self.retry, "HEAD", &url, |attempt| self.head_once(&url, attempt)).await
    }

    async fn get_page(&self, url: &Url, attempt: u32) -> Result<(ListPage, u16), AttemptError> {
        let transport =
            |e: reqwest::Error| (CallError::Transport { message: describe_transport(&e), attempts: attempt }, None);
        let resp = self.signed(reqwest::Method::GET, url).map_err(|e| (e, None))?.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if (200..300).contains(&status) {
            let body = read_limited(resp, MAX_LIST_BODY).await.map_err(transport)?;
            let decode = |message: String| (CallError::Decode { url: url_for_display(url), message }, None);
            if body.len() >= MAX_LIST_BODY {
                return Err(decode("ListObjectsV2 page too large".into()));
            }
            return crate::http::parse_blocking(body, parse_list_page).await.map(|p| (p, status)).map_err(decode);
        }
        let body = read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default();
        let code = crate::blob::error_code(&headers, &body);
        Err((CallError::Status { status, code, message: None, attempts: attempt }, retry_after(&headers)))
    }

    async fn head_once(&self, url: &Url, attempt: u32) -> Result<(ObjectProps, u16), AttemptError> {
        let resp = self
            .signed(reqwest::Method::HEAD, url)
            .map_err(|e| (e, None))?
            .send()
            .await
            .map_err(|e| (CallError::Transport { message: describe_transport(&e), attempts: attempt }, None))?;
        let status = resp.status().as_u16();
        let headers = resp.headers();
        if !(200..300).contains(&status) {
            // HEAD errors have no body (§6.2): the status is all there is.
            return Err((
                CallError::Status { status, code: None, message: None, attempts: attempt },
                retry_after(headers),
            ));
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let size = match header("content-length").map(str::parse::<u64>) {
            Some(Ok(n)) if n <= list::MAX_OBJECT_SIZE => n,
            _ => {
                return Err((
                    CallError::Decode {
                        url: url_for_display(url),
                        message: "no valid Content-Length in the HEAD response".into(),
                    },
                    None,
                ));
            }
        };
        let etag = header("etag").map(|e| list::unquote(e).to_string()).filter(|e| !e.is_empty());
        let kms_or_sse_c = encrypted(headers);
        Ok((ObjectProps { size, etag, kms_or_sse_c }, status))
    }
}

/// SSE-KMS or SSE-C: no ETag is then an MD5 (§6.3).
fn encrypted(h: &reqwest::header::HeaderMap) -> bool {
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    header("x-amz-server-side-encryption").is_some_and(|v| v.starts_with("aws:kms"))
        || header("x-amz-server-side-encryption-customer-algorithm").is_some()
}

#[cfg(test)]
mod tests;

//! Azure Blob REST (docs/azure-api.md §4): URL forms, List Blobs with paging, Get Blob Properties, the
//! `x-ms-*` request headers and blob error codes. SAS mode sends no Authorization header; a bearer
//! token is sent only when the caller passes one. Knows nothing about files on disk or providers;
//! callers check URLs against `crate::hosts::AllowList` before handing them here.
/// List Blobs page parsing.
pub mod list;
/// Blob URL forms: parsing and building.
pub mod url;

pub use list::{BlobItem, ListPage, MAX_BLOB_SIZE, parse_list_page};
pub use url::{ContainerRef, ParsedBlobUrl, encode_component, parse_blob_url};

use crate::http::{CallError, describe_transport, read_limited, retry_after};
use crate::redact::url_for_display;
use crate::retry::RetryConfig;
use ::url::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// The storage service version sent on every request (§4.4).
pub const X_MS_VERSION: &str = "2025-11-05";
/// Most pages one listing may take before it is treated as a runaway server.
pub const MAX_LIST_PAGES: usize = 10_000;
/// Most bytes of one List Blobs page accepted.
const MAX_LIST_BODY: usize = 64 * 1024 * 1024;
/// Most bytes of an error body read (only `<Code>` is ever used).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Current time in RFC 1123 form (`Thu, 15 Jan 2026 10:05:00 GMT`), for `x-ms-date`.
pub fn rfc1123_now() -> String {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::now_utc().format(&fmt).unwrap_or_default()
}

/// The headers every blob request carries: `x-ms-version` and `x-ms-date`.
pub fn blob_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(HeaderName::from_static("x-ms-version"), HeaderValue::from_static(X_MS_VERSION));
    if let Ok(v) = HeaderValue::from_str(&rfc1123_now()) {
        h.insert(HeaderName::from_static("x-ms-date"), v);
    }
    h
}

/// Whether two ETags name the same version (surrounding quotes and a weak `W/` prefix ignored;
/// List Blobs returns `0x8D…`, Get Blob returns `"0x8D…"`).
pub fn same_etag(a: &str, b: &str) -> bool {
    fn bare(s: &str) -> &str {
        let s = s.trim();
        let s = s.strip_prefix("W/").unwrap_or(s);
        s.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(s)
    }
    bare(a) == bare(b)
}

/// The blob error code of a failed response: `x-ms-error-code`, else the XML `<Code>` of the body.
/// Only `[A-Za-z0-9]` codes of at most 100 characters are kept; `Message` and
/// `AuthenticationErrorDetail` are never read.
pub fn error_code(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let clean = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| s.to_string())
    };
    if let Some(c) = headers.get("x-ms-error-code").and_then(|v| v.to_str().ok()).and_then(clean) {
        return Some(c);
    }
    xml_error_code(body).as_deref().and_then(clean)
}

/// `<Error><Code>…</Code></Error>` from an error body.
fn xml_error_code(body: &[u8]) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::reader::Reader::from_reader(body);
    let mut depth_path: Vec<Vec<u8>> = Vec::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(_) if depth_path.len() >= crate::http::MAX_XML_DEPTH => return None,
            Event::Start(e) => depth_path.push(e.local_name().as_ref().to_vec()),
            Event::End(_) => {
                depth_path.pop();
            }
            Event::Text(t) if matches!(depth_path.as_slice(), [a, b] if a == b"Error" && b == b"Code") => {
                return t.xml10_content().ok().map(|c| c.into_owned());
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// The error of a listing with more than `limit` entries.
pub(crate) fn too_many_entries(url: String, limit: usize) -> CallError {
    CallError::Decode {
        url,
        message: format!(
            "the listing has more than {limit} entries (the max_list_entries limit: raise it with \
             JOBDL_MAX_LIST_ENTRIES or max_list_entries in jobdl.toml)"
        ),
    }
}

/// What Get Blob Properties (`HEAD`) reports.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobProps {
    /// `Content-Length`.
    pub size: u64,
    /// `ETag`, verbatim (quoted, as Get Blob returns it).
    pub etag: Option<String>,
    /// `Content-MD5` (the stored whole-blob MD5), when it is 16 bytes of Base64.
    pub md5: Option<[u8; 16]>,
    /// A folder placeholder (`x-ms-meta-hdi_isfolder: true`, or `x-ms-resource-type: directory`
    /// on hierarchical-namespace accounts): list it as a folder instead of downloading it.
    pub is_folder: bool,
}

/// Blob metadata calls (List Blobs, Get Blob Properties) with the metadata retry policy.
#[derive(Clone)]
pub struct BlobClient {
    client: reqwest::Client,
    retry: RetryConfig,
    /// Total time allowed for one attempt (a 5000-entry page is a few MB at most).
    attempt_timeout: Duration,
    /// Page limit of one listing ([`MAX_LIST_PAGES`]; lowered in tests).
    max_pages: usize,
    /// Most blobs one listing may hold (the `max_list_entries` setting).
    max_entries: usize,
}

/// A failed attempt and the server's `Retry-After`, if any.
use crate::http::AttemptError;

impl BlobClient {
    /// Wrap the run's client with a retry policy (normally the metadata one).
    pub fn new(client: reqwest::Client, retry: RetryConfig) -> Self {
        BlobClient {
            client,
            retry,
            attempt_timeout: Duration::from_secs(60),
            max_pages: MAX_LIST_PAGES,
            max_entries: crate::settings::DEFAULT_MAX_LIST_ENTRIES,
        }
    }

    /// The same client with another entry limit per listing (the `max_list_entries` setting).
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// The entry limit per listing (the `max_list_entries` setting), which the provider holding
    /// this client also applies to its other listings.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Every blob under `prefix` (folder placeholders skipped; names outside the prefix dropped),
    /// in SAS mode (no Authorization header).
    ///
    /// Pages by `NextMarker`; a repeated marker or more than [`MAX_LIST_PAGES`] pages is a
    /// `CallError::Decode`. Each page is retried on retryable failures with backoff and `Retry-After`.
    pub async fn list(&self, c: &ContainerRef, prefix: &str) -> Result<Vec<BlobItem>, CallError> {
        self.list_auth(c, prefix, None).await
    }

    /// [`Self::list`] with an optional bearer token (identity-based datastores; the caller has
    /// checked the host with `AllowList::check_storage` and that it may receive the token).
    pub async fn list_auth(
        &self,
        c: &ContainerRef,
        prefix: &str,
        bearer: Option<&str>,
    ) -> Result<Vec<BlobItem>, CallError> {
        self.list_into(c, prefix, bearer, |b| b).await
    }

    /// [`Self::list_auth`], turning each blob into the caller's entry as its page arrives, so a
    /// big listing is held once, in its final form. At most `max_list_entries` entries.
    pub async fn list_into<T>(
        &self,
        c: &ContainerRef,
        prefix: &str,
        bearer: Option<&str>,
        mut entry: impl FnMut(BlobItem) -> T,
    ) -> Result<Vec<T>, CallError> {
        let mut out = Vec::new();
        let mut pages = crate::http::Pages::new("page marker", self.max_pages);
        let mut marker: Option<String> = None;
        loop {
            let url = c.list_url(prefix, marker.as_deref());
            let body =
                crate::http::with_retry(&self.retry, "GET", &url, |attempt| self.get_page(&url, bearer, attempt))
                    .await?;
            let page = crate::http::parse_blocking(body, parse_list_page)
                .await
                .map_err(|message| CallError::Decode { url: url_for_display(&url), message })?;
            for b in page.blobs {
                if b.name.starts_with(prefix) {
                    if out.len() >= self.max_entries {
                        return Err(too_many_entries(c.display(), self.max_entries));
                    }
                    out.push(entry(b));
                } else {
                    crate::log::log(
                        1,
                        format!("ignoring listed blob '{}' outside the prefix '{prefix}'", b.name.escape_debug()),
                    );
                }
            }
            marker = pages
                .next(page.next_marker.as_deref())
                .map_err(|stop| CallError::Decode { url: c.display(), message: stop.to_string() })?;
            if marker.is_none() {
                return Ok(out);
            }
        }
    }

    /// Get Blob Properties (`HEAD`) in SAS mode; 404 → `CallError::Status { status: 404, .. }`.
    pub async fn properties(&self, url: &Url) -> Result<BlobProps, CallError> {
        self.properties_auth(url, None).await
    }

    /// [`Self::properties`] with an optional bearer token (see [`Self::list_auth`]).
    pub async fn properties_auth(&self, url: &Url, bearer: Option<&str>) -> Result<BlobProps, CallError> {
        crate::http::with_retry(&self.retry, "HEAD", url, |attempt| self.head(url, bearer, attempt)).await
    }

    /// A request with the blob headers, the attempt timeout and the optional bearer token.
    fn request(&self, method: reqwest::Method, url: &Url, bearer: Option<&str>) -> reqwest::RequestBuilder {
        let mut rb = self.client.request(method, url.clone()).headers(blob_headers()).timeout(self.attempt_timeout);
        if let Some(t) = bearer {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    async fn get_page(&self, url: &Url, bearer: Option<&str>, attempt: u32) -> Result<(Vec<u8>, u16), AttemptError> {
        let transport =
            |e: reqwest::Error| (CallError::Transport { message: describe_transport(&e), attempts: attempt }, None);
        let resp = self.request(reqwest::Method::GET, url, bearer).send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if (200..300).contains(&status) {
            let body = read_limited(resp, MAX_LIST_BODY).await.map_err(transport)?;
            if body.len() >= MAX_LIST_BODY {
                return Err((
                    CallError::Decode { url: url_for_display(url), message: "List Blobs page too large".into() },
                    None,
                ));
            }
            return Ok((body, status));
        }
        let body = read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default();
        let code = error_code(&headers, &body);
        Err((CallError::Status { status, code, message: None, attempts: attempt }, retry_after(&headers)))
    }

    async fn head(&self, url: &Url, bearer: Option<&str>, attempt: u32) -> Result<(BlobProps, u16), AttemptError> {
        let resp = self
            .request(reqwest::Method::HEAD, url, bearer)
            .send()
            .await
            .map_err(|e| (CallError::Transport { message: describe_transport(&e), attempts: attempt }, None))?;
        let status = resp.status().as_u16();
        let headers = resp.headers();
        if !(200..300).contains(&status) {
            let code = error_code(headers, b"");
            return Err((CallError::Status { status, code, message: None, attempts: attempt }, retry_after(headers)));
        }
        // Read the header itself: for HEAD, reqwest's content_length() describes the (empty) body.
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let size = match header("content-length").map(str::parse::<u64>) {
            Some(Ok(n)) if n <= MAX_BLOB_SIZE => n,
            Some(Ok(n)) => {
                return Err((
                    CallError::Decode { url: url_for_display(url), message: format!("blob size {n} is over 1 PiB") },
                    None,
                ));
            }
            _ => {
                return Err((
                    CallError::Decode {
                        url: url_for_display(url),
                        message: "no valid Content-Length in the response".into(),
                    },
                    None,
                ));
            }
        };
        let props = BlobProps {
            size,
            etag: header("etag").filter(|s| !s.is_empty()).map(str::to_string),
            md5: header("content-md5").and_then(list::decode_md5),
            is_folder: header("x-ms-meta-hdi_isfolder").is_some_and(|v| v.eq_ignore_ascii_case("true"))
                || header("x-ms-resource-type").is_some_and(|v| v.eq_ignore_ascii_case("directory")),
        };
        Ok((props, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{method, path, query_param, query_param_is_missing};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn fast_retry(attempts: u32) -> RetryConfig {
        RetryConfig {
            attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            retry_after_cap: Duration::from_millis(5),
        }
    }

    fn client(attempts: u32) -> BlobClient {
        BlobClient::new(reqwest::Client::new(), fast_retry(attempts))
    }

    fn container(server: &MockServer, sas: Option<&str>) -> ContainerRef {
        let u = Url::parse(&format!("{}/acct/cont", server.uri())).unwrap();
        parse_blob_url(&u).map(|p| ContainerRef { sas: sas.map(str::to_string), ..p.container }).unwrap()
    }

    fn page(names: &[&str], next: Option<&str>) -> String {
        let blobs: String = names
            .iter()
            .map(|n| {
                format!("<Blob><Name>{n}</Name><Properties><Content-Length>3</Content-Length></Properties></Blob>")
            })
            .collect();
        let next = next.map(|m| format!("<NextMarker>{m}</NextMarker>")).unwrap_or_default();
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Blobs>{blobs}</Blobs>{next}</EnumerationResults>"
        )
    }

    #[test]
    fn headers_and_helpers() {
        let h = blob_headers();
        assert_eq!(h.get("x-ms-version").unwrap(), "2025-11-05");
        let date = h.get("x-ms-date").unwrap().to_str().unwrap().to_string();
        assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
        assert!(same_etag("0x8DE1", "\"0x8DE1\""));
        assert!(same_etag("W/\"x\"", "x"));
        assert!(!same_etag("0x1", "0x2"));
        let mut hm = HeaderMap::new();
        assert_eq!(
            error_code(
                &hm,
                b"<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>sig=SECRET</Message></Error>"
            )
            .as_deref(),
            Some("AuthenticationFailed")
        );
        assert_eq!(error_code(&hm, b"<Error><Code>bad code; sig=x</Code></Error>"), None);
        assert_eq!(error_code(&hm, b"garbage"), None);
        hm.insert("x-ms-error-code", HeaderValue::from_static("BlobNotFound"));
        assert_eq!(error_code(&hm, b"").as_deref(), Some("BlobNotFound"));
    }

    #[tokio::test]
    async fn list_follows_markers_and_keeps_the_sas_verbatim() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/acct/cont"))
            .and(query_param("restype", "container"))
            .and(query_param("comp", "list"))
            .and(query_param("prefix", "run 1/"))
            .and(query_param_is_missing("marker"))
            .respond_with(ResponseTemplate::new(200).set_body_string(page(&["run 1/a", "run 1/b"], Some("m 1+/="))))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/acct/cont"))
            .and(query_param("marker", "m 1+/="))
            .respond_with(ResponseTemplate::new(200).set_body_string(page(&["run 1/c", "elsewhere/x"], None)))
            .expect(1)
            .mount(&server)
            .await;
        let sas = "sv=2025-11-05&sr=c&sp=rl&sig=ab%2Bc%3D";
        let items = client(3).list(&container(&server, Some(sas)), "run 1/").await.unwrap();
        let names: Vec<&str> = items.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["run 1/a", "run 1/b", "run 1/c"]);
        assert_eq!(items[0].size, 3);
        let reqs = server.received_requests().await.unwrap();
        assert_eq!(reqs.len(), 2);
        for r in &reqs {
            assert!(r.url.query().unwrap().ends_with("&sv=2025-11-05&sr=c&sp=rl&sig=ab%2Bc%3D"), "{}", r.url);
            assert!(r.url.query().unwrap().contains("prefix=run%201%2F"), "{}", r.url);
            assert_eq!(r.headers.get("x-ms-version").unwrap(), "2025-11-05");
            assert!(r.headers.get("x-ms-date").is_some());
            assert!(r.headers.get("authorization").is_none());
        }
        assert!(reqs[1].url.query().unwrap().contains("marker=m%201%2B%2F%3D"), "{}", reqs[1].url);
    }

    #[tokio::test]
    async fn repeated_marker_is_an_error() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/acct/cont"))
            .respond_with(ResponseTemplate::new(200).set_body_string(page(&["a"], Some("same"))))
            .mount(&server)
            .await;
        let err = client(3).list(&container(&server, None), "").await.unwrap_err();
        assert!(matches!(err, CallError::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("repeated a page marker"), "{err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }

    /// Answers every page with a fresh marker: the listing never ends.
    struct EndlessPages;

    impl wiremock::Respond for EndlessPages {
        fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
            let n: u64 =
                req.url.query_pairs().find(|(k, _)| k == "marker").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            ResponseTemplate::new(200).set_body_string(page(&[&format!("f{n}")], Some(&(n + 1).to_string())))
        }
    }

    #[tokio::test]
    async fn endless_listing_is_cut_off() {
        let server = MockServer::start().await;
        Mock::given(method("GET")).respond_with(EndlessPages).mount(&server).await;
        let mut bc = client(1);
        bc.max_pages = 4;
        let err = bc.list(&container(&server, None), "").await.unwrap_err();
        assert!(matches!(err, CallError::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("did not end after 4 pages"), "{err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn pages_are_retried_and_errors_keep_status_and_code() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/acct/cont"))
            .respond_with(
                ResponseTemplate::new(503)
                    .insert_header("x-ms-error-code", "ServerBusy")
                    .insert_header("retry-after", "0"),
            )
            .up_to_n_times(2)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/acct/cont"))
            .respond_with(ResponseTemplate::new(200).set_body_string(page(&["x"], None)))
            .with_priority(2)
            .mount(&server)
            .await;
        let items = client(5).list(&container(&server, None), "").await.unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(server.received_requests().await.unwrap().len(), 3);

        // 403 is not retried; the XML Message never surfaces.
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(403).set_body_string(
                "<Error><Code>AuthenticationFailed</Code><Message>Signature did not match. String to sign used was r\nsecret</Message></Error>",
            ))
            .mount(&server)
            .await;
        let err = client(5).list(&container(&server, Some("sig=zz")), "").await.unwrap_err();
        match &err {
            CallError::Status { status, code, message, attempts } => {
                assert_eq!(
                    (*status, code.as_deref(), message, *attempts),
                    (403, Some("AuthenticationFailed"), &None, 1)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.to_string().contains("secret"));
        assert_eq!(server.received_requests().await.unwrap().len(), 1);

        // Retries run out: the status is kept.
        let server = MockServer::start().await;
        Mock::given(method("GET")).respond_with(ResponseTemplate::new(500)).mount(&server).await;
        let err = client(3).list(&container(&server, None), "").await.unwrap_err();
        assert_eq!((err.status(), err.attempts()), (Some(500), 3));

        // Malformed XML from a 200 is a decode error, not retried.
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
            .mount(&server)
            .await;
        let err = client(3).list(&container(&server, Some("sig=SECRET")), "").await.unwrap_err();
        assert!(matches!(err, CallError::Decode { .. }));
        assert!(!err.to_string().contains("SECRET"), "{err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn properties_head() {
        let server = MockServer::start().await;
        Mock::given(method("HEAD"))
            .and(path("/acct/cont/dir/a%20b.txt"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_bytes(vec![0u8; 1234])
                    .insert_header("etag", "\"0x8DE\"")
                    .insert_header("content-md5", "sQqNsWTgdUEFt6mb5y4/5Q=="),
            )
            .mount(&server)
            .await;
        Mock::given(method("HEAD"))
            .and(path("/acct/cont/dir"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("x-ms-meta-hdi_isfolder", "true")
                    .insert_header("content-length", "0"),
            )
            .mount(&server)
            .await;
        Mock::given(method("HEAD"))
            .and(path("/acct/cont/missing"))
            .respond_with(ResponseTemplate::new(404).insert_header("x-ms-error-code", "BlobNotFound"))
            .mount(&server)
            .await;
        let c = container(&server, Some("sp=r&sig=x"));
        let bc = client(3);
        let p = bc.properties(&c.blob_url("dir/a b.txt")).await.unwrap();
        assert_eq!(p.size, 1234);
        assert_eq!(p.etag.as_deref(), Some("\"0x8DE\""));
        assert_eq!(p.md5.map(|m| m[0]), Some(0xb1));
        assert!(!p.is_folder);
        let dir = bc.properties(&c.blob_url("dir")).await.unwrap();
        assert!(dir.is_folder);
        assert_eq!(dir.size, 0);
        let err = bc.properties(&c.blob_url("missing")).await.unwrap_err();
        match err {
            CallError::Status { status: 404, code, .. } => assert_eq!(code.as_deref(), Some("BlobNotFound")),
            other => panic!("{other:?}"),
        }
        let reqs = server.received_requests().await.unwrap();
        assert!(
            reqs.iter().all(|r| r.headers.get("authorization").is_none() && r.headers.get("x-ms-version").is_some())
        );
    }

    #[tokio::test]
    async fn bearer_is_sent_only_when_asked() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string(page(&["a"], None)))
            .mount(&server)
            .await;
        let items = client(1).list_auth(&container(&server, None), "", Some("tok")).await.unwrap();
        assert_eq!(items.len(), 1);
        let reqs = server.received_requests().await.unwrap();
        assert_eq!(reqs[0].headers.get("authorization").unwrap(), "Bearer tok");
    }

    #[test]
    fn futures_are_send() {
        fn assert_send<T: Send>(_: T) {}
        let bc = BlobClient::new(reqwest::Client::new(), RetryConfig::default());
        let c = ContainerRef {
            service: Url::parse("https://a.blob.core.windows.net/").unwrap(),
            account: "a".into(),
            container: "c".into(),
            sas: None,
        };
        let u = c.blob_url("x");
        assert_send(bc.list(&c, ""));
        assert_send(bc.properties(&u));
    }
}

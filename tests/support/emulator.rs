//! In-process HTTP emulator: the Foundry project routes (A1–A8), the Azure ML workspace routes
//! (B1–B9: ARM, discovery, run history, asset resolution) and a path-style blob account, on one
//! loopback port, with scripted faults and a request log.
//!
//! Foundry routes live under `/api/projects/proj-a` and need `Authorization: Bearer test-token`
//! and an `api-version` query parameter. ARM routes live under `/subscriptions/...` and need the
//! same; discovery (`/discovery`) must receive **no** Authorization header; the regional API
//! routes (`/history/v1.0/...`, `/data/v1.0/...`, `/modelregistry/v1.0/...`) need the token and no
//! `api-version`. Blob routes live under `/devstoreaccount1/<container>` and need a `sig` query
//! parameter (a client-minted signature is verified when the world has `sas_key`), or — when the
//! world sets `blob_bearer` — `Authorization: Bearer test-token` instead.

use std::collections::{HashMap, VecDeque};
use std::future::IntoFuture;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

#[path = "jobs_list.rs"]
mod jobs_list;

use super::world::{
    ACCOUNT, ARTIFACT_CONTAINER, ArtifactFixture, AssetFixture, AssetKind, BlobFixture, Content, ContentUri, CredKey,
    DEV_ACCOUNT_KEY, DsCred, JobFixture, MSI_SECRET, Md5Mode, ModelBody, PROJECT, Paging, RESOURCE_GROUP, SUBSCRIPTION,
    TOKEN, WORKSPACE, WORKSPACE_GUID, World, artifact_blob_name,
};

/// SAS signature of [`Emulator::container_sas_url`] and credentials responses.
pub const CONTAINER_SIG: &str = "FAKESIGc0nta1ner";
/// SAS signature of [`Emulator::blob_sas_url`].
pub const BLOB_SIG: &str = "FAKESIGb10b";
/// SAS signature (raw, percent-encoded) of `contentUri`s from `prefix/contentinfo` (A4).
pub const PREFIX_CONTENT_SIG: &str = "FAKESIGpref1x%2Bx%2F%3D";
/// SAS signature (raw, percent-encoded) of `contentUri`s from per-path contentinfo (A5).
pub const PATH_CONTENT_SIG: &str = "FAKESIGpath0ne%2By%2F%3D";
/// `sv` and `se` of every SAS the emulator issues.
pub const SAS_COMMON: &str = "sv=2025-11-05";
const SAS_EXPIRY: &str = "se=2099-01-01T00%3A00%3A00Z";
/// List Blobs returns at most this many blobs per page, whatever `maxresults` says.
pub const LIST_PAGE_MAX: usize = 2;
/// Foreign host used by [`Paging::NextLinkForeign`].
pub const FOREIGN_BASE: &str = "http://127.0.0.2:1";

const PIECE: u64 = 64 * 1024;
const LAST_MODIFIED: &str = "Thu, 15 Jan 2026 10:05:00 GMT";
const CREATED: &str = "Thu, 15 Jan 2026 10:00:00 GMT";
const ARM_PREFIX: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg";
/// Pause before a scripted cut, so the bytes before it leave hyper's buffer first.
const FLUSH_PAUSE: Duration = Duration::from_millis(30);

/// Percent-encode everything but RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One request as the emulator saw it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    /// Raw, still percent-encoded.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    pub authorization: Option<String>,
    /// `x-ms-range` if present, else `Range`.
    pub range: Option<String>,
    pub if_match: Option<String>,
    /// The status line sent (for body faults: the status before the cut).
    pub status: u16,
    /// All request headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// When the request was answered (its headers; a body fault may still be running).
    pub at: std::time::Instant,
}

impl LoggedRequest {
    /// A request header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A decoded query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    pub fn is_blob(&self) -> bool {
        self.path.starts_with(&format!("/{ACCOUNT}"))
    }

    pub fn is_foundry(&self) -> bool {
        self.path.starts_with("/api/projects/")
    }

    /// An ARM route (`/subscriptions/...`).
    pub fn is_arm(&self) -> bool {
        self.path.starts_with("/subscriptions/")
    }

    /// The discovery route.
    pub fn is_discovery(&self) -> bool {
        self.path == "/discovery"
    }

    /// A regional API route (run history, data, model registry).
    pub fn is_ml_api(&self) -> bool {
        ["/history/v1.0/", "/data/v1.0/", "/modelregistry/v1.0/"].iter().any(|p| self.path.starts_with(p))
    }
}

/// A scripted misbehaviour for the next `times` matching requests.
#[derive(Clone, Debug)]
pub struct FaultRule {
    /// `None` matches any method; compared case-insensitively.
    pub method: Option<String>,
    /// Matched against the raw (percent-encoded) path.
    pub path_contains: String,
    /// How many matching requests get the fault; then it is spent.
    pub times: u32,
    pub fault: Fault,
    /// `None` matches any query; else the raw query must contain this.
    pub query_contains: Option<String>,
}

impl FaultRule {
    /// A rule for any method.
    pub fn new(path_contains: &str, times: u32, fault: Fault) -> Self {
        FaultRule { method: None, path_contains: path_contains.to_string(), times, fault, query_contains: None }
    }

    /// The same rule, restricted to requests whose raw query contains `part` (e.g. `comp=list`).
    pub fn query(mut self, part: &str) -> Self {
        self.query_contains = Some(part.to_string());
        self
    }

    /// The same rule, restricted to one method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }

    fn matches(&self, method: &str, path: &str, query: &str) -> bool {
        self.times > 0
            && self.method.as_ref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.contains(&self.path_contains)
            && self.query_contains.as_ref().is_none_or(|q| query.contains(q.as_str()))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (blob routes: XML error and `x-ms-error-code`; Foundry: JSON).
    Status { code: u16, retry_after: Option<String> },
    /// Send correct headers, then abort the connection after N body bytes.
    ResetAfter(u64),
    /// Declare the full Content-Length but end the body after N bytes.
    ShortBody(u64),
    /// Answer a ranged GET with 200 and the whole body.
    IgnoreRange,
    /// Send headers, then nothing for the duration, then the body.
    Stall(Duration),
    /// Answer with a different ETag than the fixture's, skipping the `If-Match` check.
    WrongEtag,
    /// Answer `302 Found` with this `Location` (and an empty body).
    Redirect(String),
    /// Answer with this status, content type and body verbatim (malformed JSON or XML, a
    /// listing that lies about sizes).
    Raw { status: u16, content_type: String, body: Vec<u8> },
    /// Answer with this status and a streamed body of `len` filler bytes (a huge error body).
    HugeBody { status: u16, len: u64 },
    /// Send the body `bytes` at a time with `every` between pieces: slow, but making progress.
    Trickle { bytes: usize, every: Duration },
}

/// The running emulator; shuts down on [`Emulator::stop`] or drop.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop_tx: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Binds `127.0.0.1:0` and serves `world` from a background thread with its own runtime.
    pub fn start(world: World) -> Emulator {
        let listener = TcpListener::bind("127.0.0.1:0").expect("emulator: bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("emulator: set_nonblocking");
        let addr = listener.local_addr().expect("emulator: local_addr");
        let shared = Arc::new(Shared::new(format!("http://{addr}"), world));
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("emulator".into())
            .spawn(move || serve(listener, app, stop_rx))
            .expect("emulator: spawn thread");
        Emulator { shared, addr, stop_tx: Some(stop_tx), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// `127.0.0.1:PORT`
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT/api/projects/proj-a`
    pub fn project_endpoint(&self) -> String {
        format!("{}/api/projects/{PROJECT}", self.shared.base)
    }

    /// The ARM base URL for `JOBDL_ARM_ENDPOINT` (`http://127.0.0.1:PORT`).
    pub fn arm_endpoint(&self) -> String {
        self.shared.base.clone()
    }

    /// A container SAS URL (`sr=c&sp=rl`), optionally naming a prefix inside the container.
    pub fn container_sas_url(&self, container: &str, prefix: &str) -> String {
        container_sas_url(&self.shared.base, container, prefix)
    }

    /// A blob SAS URL (`sr=b&sp=r`).
    pub fn blob_sas_url(&self, container: &str, name: &str) -> String {
        format!("{}?{}", blob_url(&self.shared.base, container, name), sas_query("b", "r", BLOB_SIG))
    }

    /// Every request so far, in the order responses were started.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Appends a fault rule; the first unspent matching rule applies.
    pub fn add_fault(&self, rule: FaultRule) {
        lock(&self.shared.faults).push(rule);
    }

    /// Replaces the status script of `job` (each job GET pops until one remains).
    pub fn set_statuses(&self, job: &str, statuses: Vec<String>) {
        lock(&self.shared.statuses).insert(job.to_string(), statuses.into());
    }

    /// The world being served.
    pub fn world(&self) -> &World {
        &self.shared.world
    }

    /// Shuts the server down and joins its thread.
    pub fn stop(self) {
        // Drop does the work.
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(listener: TcpListener, app: Router, stop: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("emulator-worker")
        .enable_all()
        .build()
        .expect("emulator: tokio runtime");
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("emulator: cannot use listener: {err}");
                return;
            }
        };
        tokio::select! {
            result = axum::serve(listener, app).into_future() => {
                if let Err(err) = result {
                    eprintln!("emulator: server stopped: {err}");
                }
            }
            _ = stop => {}
        }
    });
    // Drops open connections, including stalled bodies.
    runtime.shutdown_timeout(Duration::from_secs(1));
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Shared {
    base: String,
    world: World,
    statuses: Mutex<HashMap<String, VecDeque<String>>>,
    faults: Mutex<Vec<FaultRule>>,
    log: Mutex<Vec<LoggedRequest>>,
    md5_cache: Mutex<HashMap<(String, String), [u8; 16]>>,
    /// Managed-identity tokens issued, with when.
    issued: Mutex<Vec<(String, std::time::Instant)>>,
}

/// What a request's `Authorization` header is worth.
#[derive(PartialEq, Eq)]
enum Bearer {
    Valid,
    Expired,
    Invalid,
}

impl Shared {
    /// `Bearer test-token`, or a managed-identity token still within its life.
    fn bearer(&self, incoming: &Incoming) -> Bearer {
        let header = incoming.header("authorization").unwrap_or_default();
        let Some(token) = header.strip_prefix("Bearer ") else { return Bearer::Invalid };
        if token == TOKEN {
            return Bearer::Valid;
        }
        let Some(life) = self.world.token_life else { return Bearer::Invalid };
        match lock(&self.issued).iter().find(|(t, _)| t == token) {
            Some((_, at)) if at.elapsed() < life => Bearer::Valid,
            Some(_) => Bearer::Expired,
            None => Bearer::Invalid,
        }
    }
}

impl Shared {
    fn new(base: String, world: World) -> Self {
        let statuses = world.jobs.iter().map(|j| (j.name.clone(), j.statuses.iter().cloned().collect())).collect();
        Shared {
            base,
            world,
            statuses: Mutex::new(statuses),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            md5_cache: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
        }
    }

    fn take_fault(&self, method: &str, path: &str, query: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let rule = faults.iter_mut().find(|r| r.matches(method, path, query))?;
        rule.times -= 1;
        Some(rule.fault.clone())
    }

    /// The current status; `pop` advances the script unless one status remains.
    fn status(&self, job: &str, pop: bool) -> String {
        let mut statuses = lock(&self.statuses);
        let Some(script) = statuses.get_mut(job) else {
            return "NotStarted".into();
        };
        let current = script.front().cloned().unwrap_or_else(|| "NotStarted".into());
        if pop && script.len() > 1 {
            script.pop_front();
        }
        current
    }

    fn md5_of(&self, container: &str, name: &str, blob: &BlobFixture) -> [u8; 16] {
        let key = (container.to_string(), name.to_string());
        if let Some(md5) = lock(&self.md5_cache).get(&key) {
            return *md5;
        }
        let md5 = blob.md5();
        lock(&self.md5_cache).insert(key, md5);
        md5
    }

    /// The base64 MD5 to advertise for a blob, per its [`Md5Mode`].
    fn advertised_md5(&self, container: &str, name: &str, blob: &BlobFixture) -> Option<String> {
        match blob.md5 {
            Md5Mode::Absent => None,
            Md5Mode::Stored => Some(B64.encode(self.md5_of(container, name, blob))),
            Md5Mode::Wrong => {
                let mut md5 = self.md5_of(container, name, blob);
                md5[0] ^= 0xFF;
                Some(B64.encode(md5))
            }
        }
    }
}

/// Percent-encodes each `/`-separated segment of a blob name.
pub fn encode_blob_name(name: &str) -> String {
    name.split('/').map(|s| utf8_percent_encode(s, SEGMENT).to_string()).collect::<Vec<_>>().join("/")
}

/// `base/devstoreaccount1/<container>/<encoded name>`, no query.
pub fn blob_url(base: &str, container: &str, name: &str) -> String {
    let container = utf8_percent_encode(container, SEGMENT);
    if name.is_empty() {
        format!("{base}/{ACCOUNT}/{container}")
    } else {
        format!("{base}/{ACCOUNT}/{container}/{}", encode_blob_name(name))
    }
}

fn sas_query(sr: &str, sp: &str, sig: &str) -> String {
    format!("{SAS_COMMON}&sr={sr}&sp={sp}&{SAS_EXPIRY}&sig={sig}")
}

fn container_sas_url(base: &str, container: &str, prefix: &str) -> String {
    format!("{}?{}", blob_url(base, container, prefix), sas_query("c", "rl", CONTAINER_SIG))
}

type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A response before body faults and HEAD handling.
struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    len: u64,
    body: BodyStream,
}

impl Reply {
    fn bytes(status: StatusCode, content_type: &str, data: Vec<u8>) -> Reply {
        let len = data.len() as u64;
        Reply {
            status,
            headers: vec![("content-type", content_type.to_string())],
            len,
            body: stream::iter([Ok(Bytes::from(data))]).boxed(),
        }
    }

    fn json(status: StatusCode, value: &Value) -> Reply {
        Reply::bytes(status, "application/json; charset=utf-8", value.to_string().into_bytes())
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self, head: bool) -> Response {
        let mut builder = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                builder = builder.header(*name, value);
            }
        }
        builder = builder.header("content-length", self.len.to_string());
        let body = if head { Body::empty() } else { Body::from_stream(self.body) };
        builder.body(body).unwrap_or_else(|err| {
            let mut response = Response::new(Body::from(format!("emulator: bad response: {err}")));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        })
    }
}

fn foundry_error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(status, &json!({"error": {"code": code, "message": message}}))
}

/// The run-history error envelope (A2–A5).
fn history_error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = json!({
        "error": {
            "code": code, "severity": null, "message": message, "messageFormat": message,
            "messageParameters": {}, "referenceCode": null, "detailsUri": null, "target": null,
            "details": [], "innerError": null,
        },
        "correlation": {"operation": "0123456789abcdef", "request": "fedcba9876543210"},
        "environment": "eastus2", "location": "eastus2",
        "time": "2026-01-15T10:00:00.0000000+00:00", "componentName": "run-history",
    });
    Reply::json(status, &body)
}

fn blob_error(status: StatusCode, code: &str) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code>\
         <Message>emulated {code}\nRequestId:00000000-0000-0000-0000-000000000000</Message></Error>"
    );
    Reply::bytes(status, "application/xml", body.into_bytes()).header("x-ms-error-code", code)
}

/// What the handlers need from a request.
struct Incoming {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
}

impl Incoming {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// A decoded query parameter (`+` decodes to a space).
    fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// A query parameter exactly as sent.
    fn raw_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    fn range(&self) -> Option<String> {
        self.header("x-ms-range").or_else(|| self.header("range"))
    }

    fn log_entry(&self, status: StatusCode) -> LoggedRequest {
        LoggedRequest {
            method: self.method.to_string(),
            path: self.path.clone(),
            query: self.query.clone(),
            authorization: self.header("authorization"),
            range: self.range(),
            if_match: self.header("if-match"),
            status: status.as_u16(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| {
                    let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (n.as_str().to_string(), value)
                })
                .collect(),
            at: std::time::Instant::now(),
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let incoming = Incoming {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
    };
    let fault = shared.take_fault(incoming.method.as_str(), &incoming.path, &incoming.query);
    let reply = match &fault {
        Some(Fault::Status { code, retry_after }) => status_fault(&incoming, *code, retry_after),
        Some(Fault::Redirect(location)) => {
            Reply::bytes(StatusCode::FOUND, "text/plain", Vec::new()).header("location", location.clone())
        }
        Some(Fault::Raw { status, content_type, body }) => Reply::bytes(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            content_type,
            body.clone(),
        ),
        Some(Fault::HugeBody { status, len }) => huge_body(*status, *len),
        _ => route(&shared, &incoming, body, fault.as_ref()).await,
    };
    let reply = match fault {
        Some(Fault::ResetAfter(n)) => Reply { body: cut_body(reply.body, n, true), ..reply },
        Some(Fault::ShortBody(n)) => Reply { body: cut_body(reply.body, n, false), ..reply },
        Some(Fault::Stall(pause)) => Reply { body: stall_body(reply.body, pause), ..reply },
        Some(Fault::Trickle { bytes, every }) => Reply { body: trickle_body(reply.body, bytes, every), ..reply },
        _ => reply,
    };
    lock(&shared.log).push(incoming.log_entry(reply.status));
    reply.into_response(incoming.method == Method::HEAD)
}

fn status_fault(incoming: &Incoming, code: u16, retry_after: &Option<String>) -> Reply {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut reply = if incoming.path.starts_with(&format!("/{ACCOUNT}")) {
        let error_code = match code {
            403 => "AuthenticationFailed",
            404 => "BlobNotFound",
            412 => "ConditionNotMet",
            416 => "InvalidRange",
            429 | 503 => "ServerBusy",
            500 => "InternalError",
            504 => "OperationTimedOut",
            _ => "EmulatedFault",
        };
        blob_error(status, error_code)
    } else {
        let error_code = match code {
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            _ => "EmulatedFault",
        };
        foundry_error(status, error_code, "emulated fault")
    };
    if let Some(value) = retry_after {
        reply = reply.header("retry-after", value.clone());
    }
    reply
}

/// Passes at most `limit` bytes, then (after a pause so they are flushed) fails or ends.
fn cut_body(body: BodyStream, limit: u64, then_error: bool) -> BodyStream {
    stream::unfold((body, 0u64, false), move |(mut body, sent, done)| async move {
        if done {
            return None;
        }
        if sent >= limit {
            tokio::time::sleep(FLUSH_PAUSE).await;
            if !then_error {
                return None;
            }
            let err = io::Error::new(io::ErrorKind::ConnectionReset, "emulated reset");
            return Some((Err(err), (body, sent, true)));
        }
        match body.next().await {
            None => None,
            Some(Err(err)) => Some((Err(err), (body, sent, true))),
            Some(Ok(chunk)) => {
                let room = limit - sent;
                let chunk = if chunk.len() as u64 > room { chunk.slice(..room as usize) } else { chunk };
                let sent = sent + chunk.len() as u64;
                Some((Ok(chunk), (body, sent, false)))
            }
        }
    })
    .boxed()
}

/// `len` bytes of `x`, streamed in 64 KiB pieces, under `status`.
fn huge_body(status: u16, len: u64) -> Reply {
    let piece = Bytes::from(vec![b'x'; PIECE as usize]);
    let body = stream::unfold(0u64, move |sent| {
        let piece = piece.clone();
        async move {
            if sent >= len {
                return None;
            }
            let take = (len - sent).min(PIECE);
            Some((Ok(piece.slice(..take as usize)), sent + take))
        }
    })
    .boxed();
    Reply {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        headers: vec![("content-type", "text/plain".to_string())],
        len,
        body,
    }
}

fn trickle_body(body: BodyStream, bytes: usize, every: Duration) -> BodyStream {
    let bytes = bytes.max(1);
    body.flat_map(move |item| {
        let pieces: Vec<io::Result<Bytes>> = match item {
            Ok(chunk) => {
                (0..chunk.len()).step_by(bytes).map(|i| Ok(chunk.slice(i..(i + bytes).min(chunk.len())))).collect()
            }
            Err(err) => vec![Err(err)],
        };
        stream::iter(pieces)
    })
    .then(move |item| async move {
        tokio::time::sleep(every).await;
        item
    })
    .boxed()
}

fn stall_body(body: BodyStream, pause: Duration) -> BodyStream {
    let delay = stream::once(async move {
        tokio::time::sleep(pause).await;
        Ok(Bytes::new())
    });
    delay.chain(body).boxed()
}

async fn route(shared: &Shared, incoming: &Incoming, body: Body, fault: Option<&Fault>) -> Reply {
    if let Some(rest) = incoming.path.strip_prefix("/api/projects/") {
        return foundry(shared, incoming, rest, body).await;
    }
    if let Some(rest) = incoming.path.strip_prefix("/subscriptions/") {
        return arm(shared, incoming, rest, body).await;
    }
    if incoming.path == "/discovery" {
        return discovery(shared, incoming);
    }
    if incoming.path == "/msi/token" {
        return msi_token(shared, incoming);
    }
    for (prefix, api) in
        [("/history/v1.0", MlApi::RunData), ("/data/v1.0", MlApi::Data), ("/modelregistry/v1.0", MlApi::Model)]
    {
        if let Some(rest) = incoming.path.strip_prefix(prefix).and_then(|r| r.strip_prefix("/subscriptions/")) {
            return ml_api(shared, incoming, rest, api, body).await;
        }
    }
    let account_root = format!("/{ACCOUNT}");
    if let Some(rest) = incoming.path.strip_prefix(&account_root) {
        if rest.is_empty() || rest == "/" {
            return blob_error(StatusCode::BAD_REQUEST, "InvalidQueryParameterValue");
        }
        if let Some(rest) = rest.strip_prefix('/') {
            return blob_role(shared, incoming, rest, fault);
        }
    }
    Reply::bytes(StatusCode::NOT_FOUND, "text/plain", b"no such route\n".to_vec())
}

fn decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

// ---------------------------------------------------------------- Foundry (A1–A8)

/// The Azure ML compute managed-identity endpoint (`MSI_ENDPOINT`, api-version 2017-09-01):
/// a fresh `msi-<n>` token per call, living `World::token_life`.
fn msi_token(shared: &Shared, incoming: &Incoming) -> Reply {
    let Some(life) = shared.world.token_life else {
        return Reply::bytes(StatusCode::NOT_FOUND, "text/plain", b"no such route\n".to_vec());
    };
    if incoming.header("secret").as_deref() != Some(MSI_SECRET) || incoming.param("resource").is_none() {
        return Reply::json(StatusCode::BAD_REQUEST, &json!({"error": "invalid_request"}));
    }
    let mut issued = lock(&shared.issued);
    let token = format!("msi-{}", issued.len() + 1);
    issued.push((token.clone(), std::time::Instant::now()));
    Reply::json(
        StatusCode::OK,
        &json!({"access_token": token, "expires_in": life.as_secs().to_string(), "token_type": "Bearer"}),
    )
}

async fn foundry(shared: &Shared, incoming: &Incoming, rest: &str, body: Body) -> Reply {
    if shared.bearer(incoming) != Bearer::Valid {
        return foundry_error(StatusCode::UNAUTHORIZED, "Unauthorized", "missing or invalid bearer token");
    }
    if incoming.param("api-version").is_none_or(|v| v.is_empty()) {
        return foundry_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter is required.",
        );
    }
    let segments: Vec<String> = rest.split('/').map(decode).collect();
    let Some((project, tail)) = segments.split_first() else {
        return foundry_error(StatusCode::NOT_FOUND, "NotFound", "no such project");
    };
    if project != PROJECT {
        return foundry_error(StatusCode::NOT_FOUND, "NotFound", "no such project");
    }
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    if shared.world.foundry_strict {
        let needed = match tail.first() {
            Some(&"jobs") => Some("Jobs=V1Preview"),
            Some(&"models") => Some("Models=V1Preview"),
            _ => None,
        };
        let sent = incoming.header("foundry-features").unwrap_or_default();
        if let Some(needed) = needed
            && !sent.split(',').any(|f| f.trim().eq_ignore_ascii_case(needed))
        {
            return foundry_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("This operation requires the 'Foundry-Features: {needed}' header."),
            );
        }
    }
    match (incoming.method.as_str(), tail.as_slice()) {
        ("GET", ["jobs"]) => jobs_list::list(shared, incoming, false),
        ("GET", ["jobs", job]) => get_job(shared, job),
        ("GET", ["jobs", job, "history", "runs", run]) => run_history(shared, job, run),
        ("GET", ["jobs", job, "history", "experimentids", exp, "runs", run, "artifacts", rest @ ..]) => {
            artifacts(shared, incoming, job, exp, run, rest)
        }
        ("GET", ["models", name, "versions", version]) => model_version(shared, name, version),
        ("POST", ["models", name, "versions", version, "credentials"]) => {
            let key = (name.to_string(), version.to_string());
            let Some(asset) = shared.world.models.get(&key) else {
                return foundry_error(StatusCode::NOT_FOUND, "NotFound", "model version not found");
            };
            let body = match read_json_body(body).await {
                Ok(Some(body)) => body,
                _ => {
                    return foundry_error(StatusCode::BAD_REQUEST, "BadRequest", "body must be JSON with BlobUri");
                }
            };
            let blob_uri = match shared.world.model_body {
                ModelBody::Any => ["BlobUri", "blobUri"].iter().find_map(|k| body.get(*k).and_then(Value::as_str)),
                ModelBody::Documented => {
                    body.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("blobUri")).and_then(Value::as_str)
                }
                ModelBody::Azd => body
                    .get("BlobUri")
                    .and_then(Value::as_str)
                    .filter(|_| incoming.param("api-version").as_deref() == Some("2026-01-15-preview")),
            };
            if blob_uri.is_none() {
                return foundry_error(StatusCode::BAD_REQUEST, "BadRequest", "BlobUri is required");
            }
            credentials(shared, asset)
        }
        ("POST", ["datasets", name, "versions", version, "credentials"]) => {
            let key = (name.to_string(), version.to_string());
            let Some(asset) = shared.world.datasets.get(&key) else {
                return foundry_error(StatusCode::NOT_FOUND, "NotFound", "dataset version not found");
            };
            if read_json_body(body).await.is_err() {
                return foundry_error(StatusCode::BAD_REQUEST, "BadRequest", "body is not JSON");
            }
            if shared.world.dataset_blob_uri_root {
                return credentials_at(shared, asset, blob_url(&shared.base, &asset.container, ""));
            }
            credentials(shared, asset)
        }
        ("GET", ["datasets", name, "versions", version]) => {
            // The dataset version as the real service returns it (recording
            // `test_datasets_upload_file`): `dataUri` names the file or folder.
            let key = (name.to_string(), version.to_string());
            let Some(asset) = shared.world.datasets.get(&key) else {
                return foundry_error(StatusCode::NOT_FOUND, "NotFound", "dataset version not found");
            };
            let file = asset.kind == AssetKind::File;
            Reply::json(
                StatusCode::OK,
                &json!({
                    "id": format!("azureai://accounts/acct/projects/{PROJECT}/data/{name}/versions/{version}"),
                    "name": name,
                    "version": version,
                    "type": if file { "uri_file" } else { "uri_folder" },
                    "isReference": false,
                    "dataUri": blob_url(&shared.base, &asset.container, &asset.prefix),
                    "isSingleFile": file,
                }),
            )
        }
        _ if is_known_shape(&tail) => {
            foundry_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed")
        }
        _ => foundry_error(StatusCode::NOT_FOUND, "NotFound", "no such route"),
    }
}

fn is_known_shape(tail: &[&str]) -> bool {
    matches!(
        tail,
        ["jobs", _]
            | ["jobs", _, "history", ..]
            | ["models", _, "versions", _]
            | ["models", _, "versions", _, "credentials"]
            | ["datasets", _, "versions", _, "credentials"]
            | ["datasets", _, "versions", _]
    )
}

/// `Ok(None)` for an empty body, `Err` for a body that is not JSON.
async fn read_json_body(body: Body) -> Result<Option<Value>, ()> {
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|_| ())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|_| ())
}

fn find_job<'w>(shared: &'w Shared, job: &str) -> Option<&'w JobFixture> {
    shared.world.jobs.iter().find(|j| j.name == job)
}

fn fake_uuid(seed: &str) -> String {
    let hex: String = md5_hex(seed.as_bytes());
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn get_job(shared: &Shared, job: &str) -> Reply {
    let Some(fixture) = find_job(shared, job) else {
        return foundry_error(StatusCode::NOT_FOUND, "NotFound", &format!("job '{job}' not found"));
    };
    let status = shared.status(job, true);
    let id = format!("{ARM_PREFIX}/providers/Microsoft.MachineLearningServices/workspaces/ws/jobs/{job}");
    let body = json!({
        "id": id,
        "name": fixture.name,
        "type": "Microsoft.MachineLearningServices/workspaces/jobs",
        "properties": {
            "jobType": "Command",
            "status": status,
            "experimentName": "exp-a",
            "displayName": fixture.name,
            "outputs": fixture.outputs,
        },
        "systemData": {"createdAt": "2026-01-15T10:00:00Z", "createdBy": "emulator"},
        "tags": {},
    });
    Reply::json(StatusCode::OK, &body)
}

fn run_history(shared: &Shared, job: &str, run: &str) -> Reply {
    let fixture = find_job(shared, job).filter(|_| run == job);
    let Some(fixture) = fixture else {
        return history_error(StatusCode::NOT_FOUND, "NotFound", &format!("run '{run}' not found"));
    };
    let mut body = json!({
        "runId": fixture.name,
        "runUuid": fake_uuid(&fixture.name),
        "rootRunId": fixture.name,
        "status": shared.status(job, false),
    });
    if !fixture.experiment_id.is_empty() {
        body["experimentId"] = json!(fixture.experiment_id);
    }
    Reply::json(StatusCode::OK, &body)
}

/// Where a listing page starts, decoded from a continuation token or `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cursor {
    /// An empty page, then a token for `At(n)`.
    Empty(usize),
    At(usize),
    Repeat,
}

const TOKEN_HEAD: &str = "tok+";
const TOKEN_TAIL: &str = "/==";

/// Tokens carry `+`, `/` and `=` so a client that does not encode them breaks.
fn encode_cursor(cursor: Cursor) -> String {
    let body = match cursor {
        Cursor::Empty(n) => format!("e{n}"),
        Cursor::At(n) => format!("o{n}"),
        Cursor::Repeat => "r".to_string(),
    };
    format!("{TOKEN_HEAD}{body}{TOKEN_TAIL}")
}

fn decode_cursor(token: &str) -> Option<Cursor> {
    let body = token.strip_prefix(TOKEN_HEAD)?.strip_suffix(TOKEN_TAIL)?;
    if body == "r" {
        return Some(Cursor::Repeat);
    }
    let n = body.get(1..)?.parse().ok()?;
    match body.as_bytes().first()? {
        b'e' => Some(Cursor::Empty(n)),
        b'o' => Some(Cursor::At(n)),
        _ => None,
    }
}

fn artifacts(shared: &Shared, incoming: &Incoming, job: &str, exp: &str, run: &str, rest: &[&str]) -> Reply {
    let fixture = find_job(shared, job).filter(|f| run == job && !f.experiment_id.is_empty() && f.experiment_id == exp);
    let Some(fixture) = fixture else {
        return history_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("run '{run}' in experiment '{exp}' not found"),
        );
    };
    match rest {
        [] => list_artifacts(shared, incoming, fixture),
        ["prefix", "contentinfo"] => prefix_contentinfo(shared, incoming, fixture),
        ["contentinfo"] if shared.world.no_path_contentinfo => {
            history_error(StatusCode::NOT_FOUND, "NotFound", "no such route")
        }
        ["contentinfo"] => path_contentinfo(shared, incoming, fixture),
        _ => history_error(StatusCode::NOT_FOUND, "NotFound", "no such route"),
    }
}

fn bad_token() -> Reply {
    history_error(StatusCode::BAD_REQUEST, "BadRequest", "invalid continuation token")
}

fn page<T: Clone>(items: &[T], start: usize, size: usize) -> Vec<T> {
    items.iter().skip(start).take(size).cloned().collect()
}

fn list_artifacts(shared: &Shared, incoming: &Incoming, job: &JobFixture) -> Reply {
    let filter = incoming.param("path").unwrap_or_default();
    let items: Vec<&ArtifactFixture> = job.artifacts.iter().filter(|a| a.path.starts_with(&filter)).collect();
    let size = job.page_size.max(1);
    let token = incoming.param("continuationToken");
    let cursor = match token.as_deref() {
        None | Some("") => None,
        Some(t) => match decode_cursor(t) {
            Some(c) => Some(c),
            None => return bad_token(),
        },
    };
    let offset = incoming.param("offset");
    let more = |n: usize| n < items.len();
    let (start, next_token, next_offset) = match (job.paging, cursor) {
        (Paging::ContinuationToken, None) => (0, more(size).then_some(Cursor::Empty(size)), None),
        (Paging::ContinuationToken, Some(Cursor::Empty(n))) => {
            return artifact_page(job, Vec::new(), Some(Cursor::At(n)), None);
        }
        (Paging::ContinuationToken, Some(Cursor::At(n))) => (n, more(n + size).then_some(Cursor::At(n + size)), None),
        (Paging::RepeatToken, None) => (0, Some(Cursor::Repeat), None),
        (Paging::RepeatToken, Some(Cursor::Repeat)) => (size, Some(Cursor::Repeat), None),
        (Paging::NextLink | Paging::NextLinkForeign, None) => {
            let n = match offset.as_deref().map(str::parse::<usize>) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => return bad_token(),
            };
            (n, None, more(n + size).then_some(n + size))
        }
        _ => return bad_token(),
    };
    let value = page(&items, start, size);
    let next_link = next_offset.map(|n| {
        let host = if job.paging == Paging::NextLinkForeign { FOREIGN_BASE } else { shared.base.as_str() };
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("api-version", &incoming.param("api-version").unwrap_or_default());
        if !filter.is_empty() {
            query.append_pair("path", &filter);
        }
        query.append_pair("offset", &n.to_string());
        format!("{host}{}?{}", incoming.path, query.finish())
    });
    artifact_page(job, value, next_token, next_link)
}

fn artifact_page(
    job: &JobFixture,
    items: Vec<&ArtifactFixture>,
    token: Option<Cursor>,
    next_link: Option<String>,
) -> Reply {
    let value: Vec<Value> = items
        .iter()
        .map(|a| {
            json!({
                "artifactId": artifact_blob_name(&job.name, &a.path),
                "origin": "ExperimentRun",
                "container": format!("dcid.{}", job.name),
                "path": a.path,
                "createdTime": "2026-01-15T10:00:00Z",
            })
        })
        .collect();
    let body = json!({
        "value": value,
        "continuationToken": token.map(encode_cursor),
        "nextLink": next_link,
    });
    Reply::json(StatusCode::OK, &body)
}

/// The `contentUri` for an artifact; `None` for [`ContentUri::Missing`] unless `fill` is set.
fn content_uri(shared: &Shared, job: &JobFixture, artifact: &ArtifactFixture, fill: bool) -> Option<String> {
    let sig = if fill { PATH_CONTENT_SIG } else { PREFIX_CONTENT_SIG };
    let blob_uri = |container: &str, name: &str| {
        format!("{}?{}", blob_url(&shared.base, container, name), sas_query("b", "r", sig))
    };
    match &artifact.content_uri {
        ContentUri::Blob { container, name } => Some(blob_uri(container, name)),
        ContentUri::Missing if fill => {
            Some(blob_uri(ARTIFACT_CONTAINER, &artifact_blob_name(&job.name, &artifact.path)))
        }
        ContentUri::Missing => None,
        ContentUri::Raw(url) => Some(url.clone()),
    }
}

fn content_item(job: &JobFixture, path: &str, uri: String) -> Value {
    json!({
        "origin": "ExperimentRun",
        "container": format!("dcid.{}", job.name),
        "path": path,
        "contentUri": uri,
    })
}

fn prefix_contentinfo(shared: &Shared, incoming: &Incoming, job: &JobFixture) -> Reply {
    let Some(prefix) = incoming.param("path").filter(|p| !p.is_empty()) else {
        return history_error(StatusCode::BAD_REQUEST, "BadRequest", "path is required");
    };
    // A plain string prefix: `log` also matches `logs/...`. Items without a content URI here
    // (`Missing`) are left out; only the page's items are rendered (big listings stay linear).
    let items: Vec<&ArtifactFixture> =
        job.artifacts.iter().filter(|a| a.path.starts_with(&prefix) && a.content_uri != ContentUri::Missing).collect();
    let start = match incoming.param("continuationToken").as_deref() {
        None | Some("") => 0,
        Some(t) => match decode_cursor(t) {
            Some(Cursor::At(n)) => n,
            _ => return bad_token(),
        },
    };
    let size = job.page_size.max(1);
    let next = (start + size < items.len()).then(|| encode_cursor(Cursor::At(start + size)));
    let value: Vec<Value> = page(&items, start, size)
        .into_iter()
        .filter_map(|a| Some(content_item(job, &a.path, content_uri(shared, job, a, false)?)))
        .collect();
    let body = json!({
        "value": value,
        "continuationToken": next,
        "nextLink": null,
    });
    Reply::json(StatusCode::OK, &body)
}

/// `\` to `/`, `//` collapsed, leading `/` removed (as a client normalises listed paths).
fn normalise(path: &str) -> String {
    let path = path.replace('\\', "/");
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    parts.join("/")
}

fn path_contentinfo(shared: &Shared, incoming: &Incoming, job: &JobFixture) -> Reply {
    let Some(path) = incoming.param("path").filter(|p| !p.is_empty()) else {
        return history_error(StatusCode::BAD_REQUEST, "BadRequest", "path is required");
    };
    let found = job
        .artifacts
        .iter()
        .find(|a| a.path == path)
        .or_else(|| job.artifacts.iter().find(|a| normalise(&a.path) == path));
    let Some(artifact) = found else {
        return history_error(StatusCode::NOT_FOUND, "NotFound", &format!("artifact '{path}' not found"));
    };
    let uri = content_uri(shared, job, artifact, true).unwrap_or_default();
    Reply::json(StatusCode::OK, &content_item(job, &artifact.path, uri))
}

fn model_version(shared: &Shared, name: &str, version: &str) -> Reply {
    let key = (name.to_string(), version.to_string());
    let Some(asset) = shared.world.models.get(&key) else {
        return foundry_error(StatusCode::NOT_FOUND, "NotFound", "model version not found");
    };
    let body = json!({
        "name": name,
        "version": version,
        "modelType": "safetensors",
        "assetId": format!("azureml://locations/eastus2/workspaces/00000000-0000-0000-0000-000000000001/models/{name}/versions/{version}"),
        "blobUri": blob_url(&shared.base, &asset.container, &asset.prefix),
    });
    Reply::json(StatusCode::OK, &body)
}

fn credentials(shared: &Shared, asset: &AssetFixture) -> Reply {
    credentials_at(shared, asset, blob_url(&shared.base, &asset.container, &asset.prefix))
}

/// The credentials envelope with `blobUri` set to `blob_uri`.
fn credentials_at(shared: &Shared, asset: &AssetFixture, blob_uri: String) -> Reply {
    let key = match asset.credential_key {
        CredKey::Type => "type",
        CredKey::CredentialType => "credentialType",
    };
    let mut credential = json!({"sasUri": container_sas_url(&shared.base, &asset.container, "")});
    credential[key] = json!("SAS");
    let body = json!({
        "blobReference": {
            "blobUri": blob_uri,
            "storageAccountArmId": format!("{ARM_PREFIX}/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}"),
            "credential": credential,
        }
    });
    Reply::json(StatusCode::OK, &body)
}

// ---------------------------------------------------------------- Blob role

/// The decoded values of every signature the emulator issues.
fn issued_sigs() -> [String; 4] {
    [CONTAINER_SIG, BLOB_SIG, PREFIX_CONTENT_SIG, PATH_CONTENT_SIG].map(form_decode)
}

fn form_decode(raw: &str) -> String {
    url::form_urlencoded::parse(format!("x={raw}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

fn blob_role(shared: &Shared, incoming: &Incoming, rest: &str, fault: Option<&Fault>) -> Reply {
    let (container_raw, name_raw) = rest.split_once('/').unwrap_or((rest, ""));
    let container = decode(container_raw);
    // Any non-empty sig is accepted, except a mangled copy of one the emulator issued
    // (a client that decoded and re-encoded the SAS), or a client-minted one that does not verify
    // against the world's account key.
    match incoming.raw_param("sig").filter(|s| !s.is_empty()) {
        Some(_) if shared.world.key_auth_disabled.contains(&container) => {
            return blob_error(StatusCode::FORBIDDEN, "KeyBasedAuthenticationNotPermitted");
        }
        Some(sig) => {
            let sig = form_decode(sig);
            if sig.starts_with("FAKESIG") {
                if !issued_sigs().contains(&sig) {
                    return blob_error(StatusCode::FORBIDDEN, "AuthenticationFailed");
                }
            } else if let Some(key) = &shared.world.sas_key
                && let Err(code) = verify_service_sas(incoming, key, &container, &sig)
            {
                return blob_error(StatusCode::FORBIDDEN, code);
            }
        }
        None => {
            match shared.bearer(incoming) {
                _ if !shared.world.blob_bearer => return blob_error(StatusCode::FORBIDDEN, "AuthenticationFailed"),
                Bearer::Valid => {}
                Bearer::Expired => return blob_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationInfo"),
                Bearer::Invalid => return blob_error(StatusCode::FORBIDDEN, "AuthenticationFailed"),
            }
            if incoming.header("x-ms-version").is_none() {
                return blob_error(StatusCode::BAD_REQUEST, "MissingRequiredHeader");
            }
            if shared.world.bearer_denied.contains(&container) {
                return blob_error(StatusCode::FORBIDDEN, "AuthorizationPermissionMismatch");
            }
        }
    }
    if name_raw.is_empty() {
        let listing = incoming.param("restype").as_deref() == Some("container")
            && incoming.param("comp").as_deref() == Some("list");
        if incoming.method != Method::GET || !listing {
            return blob_error(StatusCode::BAD_REQUEST, "InvalidQueryParameterValue");
        }
        return list_blobs(shared, incoming, &container);
    }
    let name = decode(name_raw);
    match incoming.method {
        Method::GET | Method::HEAD => get_blob(shared, incoming, &container, &name, fault),
        _ => blob_error(StatusCode::METHOD_NOT_ALLOWED, "UnsupportedHttpVerb"),
    }
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

fn xml_safe(text: &str) -> bool {
    text.chars()
        .all(|c| !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}'))
}

fn list_blobs(shared: &Shared, incoming: &Incoming, container: &str) -> Reply {
    if incoming.param("sr").as_deref() == Some("b") {
        return blob_error(StatusCode::FORBIDDEN, "AuthorizationResourceTypeMismatch");
    }
    if incoming.param("sp").is_some_and(|sp| !sp.contains('l')) {
        return blob_error(StatusCode::FORBIDDEN, "AuthorizationPermissionMismatch");
    }
    let Some(blobs) = shared.world.containers.get(container) else {
        return blob_error(StatusCode::NOT_FOUND, "ContainerNotFound");
    };
    let prefix = incoming.param("prefix").unwrap_or_default();
    let max_results = match incoming.param("maxresults").map(|m| m.parse::<usize>()) {
        None => 5000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return blob_error(StatusCode::BAD_REQUEST, "OutOfRangeQueryParameterValue"),
    };
    let marker = incoming.param("marker").unwrap_or_default();
    let start = if marker.is_empty() {
        prefix.clone()
    } else {
        let decoded =
            marker.strip_prefix("2!").and_then(|m| B64.decode(m).ok()).and_then(|m| String::from_utf8(m).ok());
        match decoded {
            Some(name) => name.max(prefix.clone()),
            None => return blob_error(StatusCode::BAD_REQUEST, "OutOfRangeInput"),
        }
    };
    let size = max_results.min(LIST_PAGE_MAX);
    let mut names = blobs.range(start..).take_while(|(name, _)| name.starts_with(&prefix));
    let page: Vec<(&String, &BlobFixture)> = names.by_ref().take(size).collect();
    let next_marker = names.next().map(|(name, _)| format!("2!{}", B64.encode(name))).unwrap_or_default();

    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <EnumerationResults ServiceEndpoint=\"{}/{ACCOUNT}/\" ContainerName=\"{}\">\
         <Prefix>{}</Prefix><Marker>{}</Marker><MaxResults>{max_results}</MaxResults><Blobs>",
        xml_escape(&shared.base),
        xml_escape(container),
        xml_escape(&prefix),
        xml_escape(&marker),
    );
    for (name, blob) in page {
        let name_xml = if xml_safe(name) {
            format!("<Name>{}</Name>", xml_escape(name))
        } else {
            let encoded = utf8_percent_encode(name, SEGMENT).to_string();
            format!("<Name Encoded=\"true\">{encoded}</Name>")
        };
        let md5 = shared
            .advertised_md5(container, name, blob)
            .map(|m| format!("<Content-MD5>{m}</Content-MD5>"))
            .unwrap_or_else(|| "<Content-MD5 />".to_string());
        let encoding = blob
            .content_encoding
            .as_ref()
            .map(|e| format!("<Content-Encoding>{}</Content-Encoding>", xml_escape(e)))
            .unwrap_or_default();
        xml.push_str(&format!(
            "<Blob>{name_xml}<Properties><Creation-Time>{CREATED}</Creation-Time>\
             <Last-Modified>{LAST_MODIFIED}</Last-Modified><Etag>{}</Etag>\
             <Content-Length>{}</Content-Length><Content-Type>application/octet-stream</Content-Type>\
             {encoding}{md5}<BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier>\
             </Properties><Metadata /></Blob>",
            xml_escape(&blob.etag),
            blob.len(),
        ));
    }
    xml.push_str(&format!("</Blobs><NextMarker>{}</NextMarker></EnumerationResults>", xml_escape(&next_marker)));
    Reply::bytes(StatusCode::OK, "application/xml", xml.into_bytes())
}

/// Parses `bytes=a-b` or `bytes=a-` into (first, optional last).
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let first = first.trim().parse().ok()?;
    let last = match last.trim() {
        "" => None,
        l => Some(l.parse().ok()?),
    };
    match last {
        Some(l) if l < first => None,
        _ => Some((first, last)),
    }
}

fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').any(|candidate| {
        let candidate = candidate.trim();
        candidate == "*" || candidate.trim_matches('"') == etag
    })
}

fn get_blob(shared: &Shared, incoming: &Incoming, container: &str, name: &str, fault: Option<&Fault>) -> Reply {
    let Some(blob) = shared.world.blob(container, name) else {
        return blob_error(StatusCode::NOT_FOUND, "BlobNotFound");
    };
    let wrong_etag = fault == Some(&Fault::WrongEtag);
    let etag = if wrong_etag {
        format!("0x8DEFFFF{}", md5_hex(blob.etag.as_bytes())[..8].to_uppercase())
    } else {
        blob.etag.clone()
    };
    if !wrong_etag
        && let Some(if_match) = incoming.header("if-match")
        && !etag_matches(&if_match, &blob.etag)
    {
        return blob_error(StatusCode::PRECONDITION_FAILED, "ConditionNotMet");
    }
    let size = blob.len();
    let range = if incoming.method == Method::HEAD || fault == Some(&Fault::IgnoreRange) {
        None
    } else {
        match incoming.range() {
            None => None,
            Some(value) => match parse_range(&value) {
                Some(range) => Some(range),
                None => return blob_error(StatusCode::BAD_REQUEST, "InvalidHeaderValue"),
            },
        }
    };
    let md5 = shared.advertised_md5(container, name, blob);
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, size),
        Some((first, _)) if first >= size => {
            return blob_error(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange")
                .header("content-range", format!("bytes */{size}"));
        }
        Some((first, last)) => {
            let end = last.map_or(size, |l| (l + 1).min(size));
            (StatusCode::PARTIAL_CONTENT, first, end)
        }
    };
    let mut reply = Reply {
        status,
        headers: vec![
            ("content-type", "application/octet-stream".into()),
            ("etag", format!("\"{etag}\"")),
            ("last-modified", LAST_MODIFIED.into()),
            ("accept-ranges", "bytes".into()),
            ("x-ms-blob-type", "BlockBlob".into()),
            ("x-ms-version", "2025-11-05".into()),
            ("x-ms-creation-time", CREATED.into()),
        ],
        len: end - start,
        body: blob_stream(blob, start, end),
    };
    if let Some(encoding) = &blob.content_encoding {
        reply = reply.header("content-encoding", encoding.clone());
    }
    if status == StatusCode::PARTIAL_CONTENT {
        reply = reply.header("content-range", format!("bytes {start}-{}/{size}", end - 1));
        if let Some(md5) = md5 {
            reply = reply.header("x-ms-blob-content-md5", md5);
        }
    } else if let Some(md5) = md5 {
        reply = reply.header("content-md5", md5);
    }
    reply
}

/// Bytes `[start, end)` of a blob in 64 KiB pieces, generated as they are sent.
fn blob_stream(blob: &BlobFixture, start: u64, end: u64) -> BodyStream {
    match &blob.content {
        Content::Bytes(data) => {
            let bytes = Bytes::copy_from_slice(&data[start as usize..end as usize]);
            let pieces: Vec<io::Result<Bytes>> = (0..bytes.len())
                .step_by(PIECE as usize)
                .map(|at| Ok(bytes.slice(at..bytes.len().min(at + PIECE as usize))))
                .collect();
            stream::iter(pieces).boxed()
        }
        Content::Generated { seed, .. } => {
            let seed = *seed;
            stream::unfold(start, move |pos| async move {
                if pos >= end {
                    return None;
                }
                let n = PIECE.min(end - pos);
                let piece = super::world::gen_bytes(seed, pos, n as usize);
                Some((Ok(Bytes::from(piece)), pos + n))
            })
            .boxed()
        }
    }
}

// ---------------------------------------------------------------- Service SAS verification

/// Checks a client-minted read/list container SAS (§4.3): fields, validity window, the
/// protocol (`spr=https` cannot be used over http), then the HMAC over the 16-field
/// string-to-sign with `key`. `Err` carries the blob error code.
fn verify_service_sas(incoming: &Incoming, key: &str, container: &str, sig: &str) -> Result<(), &'static str> {
    use hmac::{Hmac, Mac};
    let p = |n: &str| incoming.param(n).unwrap_or_default();
    if p("sr") != "c" || !p("sp").contains('r') {
        return Err("AuthorizationResourceTypeMismatch");
    }
    if p("spr") == "https" {
        return Err("AuthorizationProtocolMismatch");
    }
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc();
    let start = time::OffsetDateTime::parse(&p("st"), rfc3339).map_err(|_| "AuthenticationFailed")?;
    let expiry = time::OffsetDateTime::parse(&p("se"), rfc3339).map_err(|_| "AuthenticationFailed")?;
    if start > now || expiry <= now || expiry - start > time::Duration::hours(24) {
        return Err("AuthenticationFailed");
    }
    let resource = format!("/blob/{ACCOUNT}/{container}");
    let to_sign = [
        p("sp"),
        p("st"),
        p("se"),
        resource,
        p("si"),
        p("sip"),
        p("spr"),
        p("sv"),
        p("sr"),
        String::new(),
        p("ses"),
        p("rscc"),
        p("rscd"),
        p("rsce"),
        p("rscl"),
        p("rsct"),
    ]
    .join("\n");
    let key = B64.decode(key).map_err(|_| "AuthenticationFailed")?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|_| "AuthenticationFailed")?;
    mac.update(to_sign.as_bytes());
    let want = B64.encode(mac.finalize().into_bytes());
    if want == sig { Ok(()) } else { Err("AuthenticationFailed") }
}

// ---------------------------------------------------------------- Azure ML workspace (B1–B9)

/// The ARM error envelope.
fn arm_error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"code": code, "message": message, "target": null, "details": [], "additionalInfo": []}}),
    )
}

/// `/subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>`
/// split off `rest` (after `/subscriptions/`): the tail segments, or `None` for another workspace.
fn workspace_tail(rest: &str) -> Option<Vec<String>> {
    let segs: Vec<String> = rest.split('/').map(decode).collect();
    match segs.as_slice() {
        [s, rg_kw, rg, p, ns, w_kw, ws, tail @ ..]
            if s == SUBSCRIPTION
                && rg_kw.eq_ignore_ascii_case("resourceGroups")
                && rg == RESOURCE_GROUP
                && p == "providers"
                && ns == "Microsoft.MachineLearningServices"
                && w_kw == "workspaces"
                && ws == WORKSPACE =>
        {
            Some(tail.to_vec())
        }
        _ => None,
    }
}

fn arm_job_id(job: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}/jobs/{job}"
    )
}

async fn arm(shared: &Shared, incoming: &Incoming, rest: &str, body: Body) -> Reply {
    if shared.bearer(incoming) != Bearer::Valid {
        return arm_error(StatusCode::UNAUTHORIZED, "AuthenticationFailed", "missing or invalid bearer token");
    }
    if incoming.param("api-version").is_none_or(|v| v.is_empty()) {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter is required.",
        );
    }
    let Some(tail) = workspace_tail(rest) else {
        return arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such workspace");
    };
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    match (incoming.method.as_str(), tail.as_slice()) {
        ("GET", []) => Reply::json(
            StatusCode::OK,
            &json!({
                "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"),
                "name": WORKSPACE,
                "location": "eastus2",
                "properties": {"discoveryUrl": format!("{}/discovery", shared.base), "workspaceId": WORKSPACE_GUID},
            }),
        ),
        ("GET", ["jobs"]) => jobs_list::list(shared, incoming, true),
        ("GET", ["jobs", job]) => arm_job(shared, job),
        ("GET", ["datastores"]) => {
            let only_default = incoming.param("isDefault").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let value: Vec<Value> = shared
                .world
                .datastores
                .iter()
                .filter(|(_, d)| !only_default || d.is_default)
                .map(|(name, d)| datastore_json(name, d))
                .collect();
            Reply::json(StatusCode::OK, &json!({ "value": value }))
        }
        ("GET", ["datastores", name]) => match shared.world.datastores.get(*name) {
            Some(d) => Reply::json(StatusCode::OK, &datastore_json(name, d)),
            None => arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("datastore '{name}' not found")),
        },
        ("POST", ["datastores", name, "listSecrets"]) => {
            if read_json_body(body).await.is_err() {
                return arm_error(StatusCode::BAD_REQUEST, "BadRequest", "body is not JSON");
            }
            let Some(d) = shared.world.datastores.get(*name) else {
                return arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("datastore '{name}' not found"));
            };
            match d.cred {
                DsCred::Sas => Reply::json(
                    StatusCode::OK,
                    &json!({"secretsType": "Sas", "sasToken": format!("?{}", sas_query("c", "rl", CONTAINER_SIG))}),
                ),
                DsCred::AccountKey => {
                    Reply::json(StatusCode::OK, &json!({"secretsType": "AccountKey", "key": DEV_ACCOUNT_KEY}))
                }
                DsCred::Identity => {
                    arm_error(StatusCode::BAD_REQUEST, "BadRequest", "identity-based datastores have no secrets")
                }
                DsCred::SecretsDenied => arm_error(
                    StatusCode::FORBIDDEN,
                    "AuthorizationFailed",
                    "the client does not have authorization to perform action 'listSecrets'",
                ),
            }
        }
        _ => arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such route"),
    }
}

fn datastore_json(name: &str, d: &super::world::DatastoreFixture) -> Value {
    let cred = match d.cred {
        DsCred::Sas | DsCred::SecretsDenied => "Sas",
        DsCred::AccountKey => "AccountKey",
        DsCred::Identity => "None",
    };
    let container_key = if d.kind == "AzureDataLakeGen2" { "filesystem" } else { "containerName" };
    let mut props = json!({
        "datastoreType": d.kind, "accountName": ACCOUNT, "endpoint": "core.windows.net", "protocol": "https",
        "isDefault": d.is_default,
        "credentials": {"credentialsType": cred, "secrets": {"secretsType": cred}},
    });
    props[container_key] = json!(d.container);
    json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}/datastores/{name}"),
        "name": name,
        "properties": props,
    })
}

fn arm_job(shared: &Shared, job: &str) -> Reply {
    let Some(fixture) = find_job(shared, job) else {
        return arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("job '{job}' not found"));
    };
    let status = shared.status(job, true);
    let body = json!({
        "id": arm_job_id(job),
        "name": fixture.name,
        "type": "Microsoft.MachineLearningServices/workspaces/jobs",
        "properties": {
            "jobType": fixture.job_type,
            "status": status,
            "experimentName": "exp-a",
            "displayName": fixture.name,
            "properties": fixture.properties,
            "outputs": fixture.outputs,
            "services": {"Studio": {"jobServiceType": "Studio", "endpoint": format!("https://ml.azure.com/runs/{job}")}},
        },
        "systemData": {"createdAt": "2026-01-15T10:00:00Z", "createdBy": "emulator"},
    });
    Reply::json(StatusCode::OK, &body)
}

/// B3: must be called without Authorization (400 otherwise).
fn discovery(shared: &Shared, incoming: &Incoming) -> Reply {
    if incoming.header("authorization").is_some() {
        return Reply::bytes(StatusCode::BAD_REQUEST, "text/plain", b"discovery must not receive a token\n".to_vec());
    }
    let api = shared.world.discovery_api.clone().unwrap_or_else(|| shared.base.clone());
    let body = json!({
        "api": api, "catalog": api, "experimentation": api, "gallery": api, "history": api, "hyperdrive": api,
        "labeling": api, "modelmanagement": api, "pipelines": api, "studiocoreservices": api,
    });
    Reply::json(StatusCode::OK, &body)
}

#[derive(Clone, Copy)]
enum MlApi {
    RunData,
    Data,
    Model,
}

async fn ml_api(shared: &Shared, incoming: &Incoming, rest: &str, api: MlApi, body: Body) -> Reply {
    if shared.bearer(incoming) != Bearer::Valid {
        return history_error(StatusCode::UNAUTHORIZED, "Unauthorized", "missing or invalid bearer token");
    }
    let Some(tail) = workspace_tail(rest) else {
        return history_error(StatusCode::NOT_FOUND, "NotFound", "no such workspace");
    };
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    if incoming.method != Method::POST {
        return history_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed");
    }
    let Ok(Some(body)) = read_json_body(body).await else {
        return history_error(StatusCode::BAD_REQUEST, "BadRequest", "a JSON body is required");
    };
    match (api, tail.as_slice()) {
        (MlApi::RunData, ["rundata"]) => {
            // The real client (azure-ai-ml 1.32.0, recorded) always sends `api-version=v1.0`.
            if !incoming.query.split('&').any(|kv| kv == "api-version=v1.0") {
                return history_error(StatusCode::BAD_REQUEST, "BadRequest", "api-version v1.0 is required");
            }
            let run = body.get("runId").and_then(Value::as_str).unwrap_or_default();
            let Some(job) = find_job(shared, run) else {
                return history_error(StatusCode::NOT_FOUND, "NotFound", &format!("run '{run}' not found"));
            };
            let body = json!({
                "runMetadata": {"runId": job.name, "experimentId": job.experiment_id, "status": shared.status(run, false),
                                "outputs": job.run_outputs},
                "runDefinition": {}, "jobSpecification": {},
            });
            Reply::json(StatusCode::OK, &body)
        }
        (MlApi::Data, ["dataversion", "batchGetResolvedUris"]) => resolved_uris(&shared.world.arm_data, &body, "uri"),
        (MlApi::Model, ["models", "batchGetResolvedUris"]) => resolved_uris(&shared.world.arm_models, &body, "path"),
        _ => history_error(StatusCode::NOT_FOUND, "NotFound", "no such route"),
    }
}

/// B5/B6: `{"values": {id: {<key>: uri, "type": ...}}}` for the known IDs of `{"values": [ids]}`.
fn resolved_uris(
    assets: &std::collections::BTreeMap<String, super::world::ResolvedAsset>,
    body: &Value,
    key: &str,
) -> Reply {
    let Some(ids) = body.get("values").and_then(Value::as_array) else {
        return history_error(StatusCode::BAD_REQUEST, "BadRequest", "values is required");
    };
    let mut values = serde_json::Map::new();
    for id in ids.iter().filter_map(Value::as_str) {
        if let Some(a) = assets.get(id) {
            let mut v = json!({"type": a.kind});
            v[key] = json!(a.uri);
            values.insert(id.to_string(), v);
        }
    }
    Reply::json(StatusCode::OK, &json!({ "values": values }))
}

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
//!
//! This file holds the server, the request log and the dispatch; the routes live in one module
//! per role: `foundry`, `arm` (the Azure ML workspace), `blob` (with `sas`, the signature check),
//! and `faults` (the scripted misbehaviours).

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

use super::world::{
    ACCOUNT, ARTIFACT_CONTAINER, ArtifactFixture, AssetFixture, AssetKind, BlobFixture, Content, ContentUri, CredKey,
    DEV_ACCOUNT_KEY, DsCred, JobFixture, MSI_SECRET, Md5Mode, ModelBody, PROJECT, Paging, RESOURCE_GROUP, SUBSCRIPTION,
    TOKEN, WORKSPACE, WORKSPACE_GUID, World, artifact_blob_name,
};

mod arm;
mod blob;
mod children;
mod faults;
mod foundry;
mod jobs_list;
mod sas;
mod tracking;

use arm::*;
use blob::*;
use faults::*;
pub use faults::{Fault, FaultRule};
use foundry::*;
use sas::*;

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
        self.shared.world()
    }

    /// Worlds to serve over time: each GET of `job` (the poll of `--wait`/`--follow`) installs the
    /// next one, so files appear and change from one poll to the next; the last one stays.
    pub fn set_worlds(&self, job: &str, worlds: Vec<World>) {
        lock(&self.shared.worlds).insert(job.to_string(), worlds.into());
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
    /// The world installed by [`Emulator::set_worlds`] (leaked: it lives as long as the test).
    swapped: Mutex<Option<&'static World>>,
    /// Worlds still to install, per job.
    worlds: Mutex<HashMap<String, VecDeque<World>>>,
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
        let Some(life) = self.world().token_life else { return Bearer::Invalid };
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
            swapped: Mutex::new(None),
            worlds: Mutex::new(HashMap::new()),
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

    /// The world being served: the one [`Emulator::set_worlds`] installed last, else the first.
    fn world(&self) -> &World {
        match *lock(&self.swapped) {
            Some(w) => w,
            None => &self.world,
        }
    }

    /// The current status; `pop` advances the script unless one status remains (and installs
    /// the job's next world, if any).
    fn status(&self, job: &str, pop: bool) -> String {
        if pop && let Some(next) = lock(&self.worlds).get_mut(job).and_then(VecDeque::pop_front) {
            *lock(&self.swapped) = Some(Box::leak(Box::new(next)));
            // A blob of the same name may hold other bytes now.
            lock(&self.md5_cache).clear();
        }
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

async fn route(shared: &Shared, incoming: &Incoming, body: Body, fault: Option<&Fault>) -> Reply {
    if let Some(rest) = incoming.path.strip_prefix("/api/projects/") {
        return foundry(shared, incoming, rest, body).await;
    }
    if let Some(rest) = incoming.path.strip_prefix("/subscriptions/") {
        return arm(shared, incoming, rest, body).await;
    }
    if let Some(rest) = incoming.path.strip_prefix("/mlflow/v1.0/subscriptions/") {
        if let Some(reply) = children::tracking(shared, incoming, rest, body).await {
            return reply;
        }
        return tracking::route(shared, incoming, rest);
    }
    if let Some(rest) = incoming.path.strip_prefix("/history/v1.0/subscriptions/")
        && let Some(reply) = children::history(shared, incoming, rest)
    {
        return reply;
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

/// The Azure ML compute managed-identity endpoint (`MSI_ENDPOINT`, api-version 2017-09-01):
/// a fresh `msi-<n>` token per call, living `World::token_life`.
fn msi_token(shared: &Shared, incoming: &Incoming) -> Reply {
    let Some(life) = shared.world().token_life else {
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

fn decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

//! A scriptable fake MLflow tracking server (and Databricks extras) on a loopback port, for the
//! emulator tests in `tests/it/mlflow.rs`. It speaks the shapes a real `mlflow server` answers with
//! (checked against mlflow 3.17.2): `runs/get` → `{"run":{"info":{...}}}`, `artifacts/list` →
//! `{"root_uri", "files":[{"path","is_dir","file_size"}], "next_page_token"}` with paths relative to
//! the run's artifact root and no `file_size` for empty files, errors as
//! `{"error_code","message"}`; the artifact proxy `/api/2.0/mlflow-artifacts/artifacts/<path>`
//! honours `Range` like the real one unless told to lie. Databricks extras: `POST
//! /api/2.0/mlflow/artifacts/credentials-for-read` handing out presigned URLs (served by a second
//! instance playing the cloud store under `/presigned/`), and `POST /oidc/v1/token`.
#![allow(dead_code)]

#[path = "mlflow_search.rs"]
mod mlflow_search;
use super::serve;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

/// The signature of every presigned URL handed out (must never be printed by jobdl).
pub const PRESIGN_SIG: &str = "SECRETpresignSIG0123";
/// A secret header value the presigned URLs require (as an SSE-C key would be).
pub const PRESIGN_HEADER: (&str, &str) = ("x-amz-server-side-encryption-customer-key", "SECRETsseKEY");

/// How the data routes treat `Range`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RangeMode {
    /// 206 with a matching `Content-Range` (as the real proxy over a local store).
    Honour,
    /// Advertise `Accept-Ranges: bytes` but answer every ranged request with 200 and the whole body.
    Ignore200,
    /// Answer a ranged request with 206 and the bytes asked for, but a `Content-Range` claiming
    /// the object holds this many bytes (a hostile server inflating an unknown size).
    ClaimTotal(u64),
    /// Answer a ranged request with 206 but the whole body and a `Content-Range` naming all of it.
    Whole206,
}

/// What the tracking routes require.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthMode {
    /// Nothing.
    Open,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic base64(user:password)`.
    Basic(String, String),
}

/// One run.
#[derive(Clone, Debug)]
pub struct FakeRun {
    /// Statuses returned by successive `runs/get` (the last one repeats).
    pub statuses: Vec<String>,
    pub artifact_uri: String,
    /// Files by path relative to the artifact root.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Raw extra entries appended to the listing of a directory (hostile input), by directory.
    pub extra_entries: HashMap<String, Vec<Value>>,
    /// The files from the Nth `runs/get` on (files appear and change while a run is followed);
    /// past the end the last set stays.
    pub files_by_poll: Vec<BTreeMap<String, Vec<u8>>>,
    /// The parent run (its `mlflow.parentRunId` tag, matched by a `runs/search` filter).
    pub parent: Option<String>,
    /// `run_name` in `runs/search` (default `<id>-name`).
    pub run_name: Option<String>,
    /// Latest metric values, `data.metrics` in `runs/search`.
    pub metrics: Vec<(String, f64)>,
}

impl FakeRun {
    pub fn new(id: &str, status: &str) -> FakeRun {
        FakeRun {
            statuses: vec![status.to_string()],
            artifact_uri: format!("mlflow-artifacts:/1/{id}/artifacts"),
            files: BTreeMap::new(),
            extra_entries: HashMap::new(),
            files_by_poll: Vec::new(),
            parent: None,
            run_name: None,
            metrics: Vec::new(),
        }
    }

    pub fn file(mut self, path: &str, bytes: Vec<u8>) -> FakeRun {
        self.files.insert(path.to_string(), bytes);
        self
    }
}

/// The whole scripted world of one fake server.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    pub runs: HashMap<String, FakeRun>,
    pub auth: AuthMode,
    pub range: RangeMode,
    /// Entries per `artifacts/list` page (`None`: one page, like the OSS server).
    pub page_size: Option<usize>,
    /// Every listing page names the same `next_page_token` (a looping server).
    pub repeat_token: bool,
    /// `file_size` as a JSON string (as some servers send int64).
    pub size_as_string: bool,
    /// Leave `file_size` out for every file (unknown sizes).
    pub omit_sizes: bool,
    /// Statuses to answer first, by route kind (`runs`, `list`, `data`, `creds`, `presigned`), in order.
    pub faults: HashMap<String, Vec<u16>>,
    /// Databricks: base URL that presigned URLs point to (`None`: credentials-for-read is 404).
    pub presign_base: Option<String>,
    /// Databricks OAuth M2M: (client id, client secret, token it issues).
    pub oauth: Option<(String, String, String)>,
    /// Credentials per `credentials-for-read` page (`None`: all in one).
    pub creds_page_size: Option<usize>,
    /// Registered model versions: (name, version) → (run_id, source).
    pub model_versions: HashMap<(String, String), (String, String)>,
    /// Databricks: `artifacts/list` on a file's path answers one element, the file itself (the
    /// shape mlflow's `databricks_artifact_repo.py` documents and filters out).
    pub list_file_as_itself: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            runs: HashMap::new(),
            auth: AuthMode::Bearer("test-token".into()),
            range: RangeMode::Honour,
            page_size: None,
            repeat_token: false,
            size_as_string: false,
            omit_sizes: false,
            faults: HashMap::new(),
            presign_base: None,
            oauth: None,
            creds_page_size: None,
            model_versions: HashMap::new(),
            list_file_as_itself: false,
        }
    }
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// Raw query.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub status: u16,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> Option<String> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&self.query)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

struct Shared {
    cfg: Mutex<FakeConfig>,
    polls: Mutex<HashMap<String, usize>>,
    faults: Mutex<HashMap<String, VecDeque<u16>>>,
    log: Mutex<Vec<Seen>>,
    /// Files served under `/presigned/` (a storage instance): path → bytes.
    store: Mutex<BTreeMap<String, Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake server; stops (and drops its connections) when dropped.
pub struct FakeMlflow {
    shared: Arc<Shared>,
    server: serve::Served,
}

impl FakeMlflow {
    pub fn start(cfg: FakeConfig) -> FakeMlflow {
        Self::start_on("127.0.0.1:0", cfg)
    }

    pub fn start_on(bind: &str, cfg: FakeConfig) -> FakeMlflow {
        let faults = cfg.faults.iter().map(|(k, v)| (k.clone(), v.iter().copied().collect())).collect();
        let shared = Arc::new(Shared {
            cfg: Mutex::new(cfg),
            polls: Mutex::new(HashMap::new()),
            faults: Mutex::new(faults),
            log: Mutex::new(Vec::new()),
            store: Mutex::new(BTreeMap::new()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        FakeMlflow { shared, server: serve::Served::start(bind, app) }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// `127.0.0.1:PORT`
    pub fn host_port(&self) -> String {
        self.server.addr.to_string()
    }

    /// Serve `bytes` under `/presigned/<path>` (the storage role).
    pub fn store(&self, path: &str, bytes: Vec<u8>) {
        lock(&self.shared.store).insert(path.to_string(), bytes);
    }

    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.log).clone()
    }

    /// Answer the next requests of `kind` with these statuses first.
    pub fn fault(&self, kind: &str, codes: &[u16]) {
        lock(&self.shared.faults).entry(kind.to_string()).or_default().extend(codes.iter().copied());
    }

    pub fn set_config(&self, f: impl FnOnce(&mut FakeConfig)) {
        f(&mut lock(&self.shared.cfg));
    }
}

fn json_reply(status: u16, v: Value) -> (u16, Vec<(String, String)>, Vec<u8>) {
    (status, vec![("content-type".into(), "application/json".into())], v.to_string().into_bytes())
}

fn error(status: u16, code: &str, msg: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    json_reply(status, json!({"error_code": code, "message": msg}))
}

fn authorized(cfg: &FakeConfig, headers: &HeaderMap) -> bool {
    let got = headers.get("authorization").and_then(|v| v.to_str().ok());
    match &cfg.auth {
        AuthMode::Open => true,
        AuthMode::Bearer(t) => got == Some(format!("Bearer {t}").as_str()),
        AuthMode::Basic(u, p) => {
            let want = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            got == Some(format!("Basic {want}").as_str())
        }
    }
}

fn query_map(q: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default().into_iter().collect()
}

/// Immediate children of `dir` (files and directories), sorted, as listing entries.
fn children(cfg: &FakeConfig, run: &FakeRun, dir: &str) -> Vec<Value> {
    if cfg.list_file_as_itself
        && let Some(bytes) = run.files.get(dir)
    {
        let mut e = json!({"path": dir, "is_dir": false});
        if !cfg.omit_sizes && !bytes.is_empty() {
            e["file_size"] = json!(bytes.len());
        }
        return vec![e];
    }
    let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
    let mut dirs = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (path, bytes) in &run.files {
        let Some(rest) = path.strip_prefix(&prefix) else { continue };
        match rest.split_once('/') {
            Some((d, _)) => {
                dirs.insert(format!("{prefix}{d}"));
            }
            None => {
                let mut e = json!({"path": path, "is_dir": false});
                // As the real server: an empty file has no file_size (proto default omitted).
                if !cfg.omit_sizes && !bytes.is_empty() {
                    e["file_size"] =
                        if cfg.size_as_string { json!(bytes.len().to_string()) } else { json!(bytes.len()) };
                }
                out.push(e);
            }
        }
    }
    for d in dirs {
        out.push(json!({"path": d, "is_dir": true}));
    }
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    if let Some(extra) = run.extra_entries.get(dir) {
        out.extend(extra.iter().cloned());
    }
    out
}

/// Serve `bytes` for a GET with an optional `Range`, per `mode`.
fn serve_bytes(bytes: &[u8], headers: &HeaderMap, mode: RangeMode) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut h = vec![
        ("accept-ranges".to_string(), "bytes".to_string()),
        ("etag".to_string(), format!("\"{}-{}\"", bytes.len(), bytes.first().copied().unwrap_or(0))),
        ("content-type".to_string(), "application/octet-stream".to_string()),
    ];
    let range = headers.get("range").and_then(|v| v.to_str().ok()).and_then(|r| r.strip_prefix("bytes="));
    match (range, mode) {
        (Some(r), RangeMode::Honour) => {
            let (a, b) = r.split_once('-').unwrap_or((r, ""));
            let total = bytes.len() as u64;
            let start: u64 = a.parse().unwrap_or(0);
            let end: u64 =
                b.parse().ok().map(|e: u64| e.min(total.saturating_sub(1))).unwrap_or(total.saturating_sub(1));
            if total == 0 || start >= total {
                h.push(("content-range".into(), format!("bytes */{total}")));
                return (416, h, Vec::new());
            }
            h.push(("content-range".into(), format!("bytes {start}-{end}/{total}")));
            (206, h, bytes[start as usize..=end as usize].to_vec())
        }
        (Some(r), RangeMode::ClaimTotal(claim)) if !bytes.is_empty() => {
            // Consistent with its claim: the range asked for (at most 8 MiB), the file's bytes
            // repeated.
            let (a, b) = r.split_once('-').unwrap_or((r, ""));
            let start: u64 = a.parse::<u64>().unwrap_or(0);
            let end: u64 = b.parse::<u64>().unwrap_or(u64::MAX).min(claim - 1).min(start + (8 << 20) - 1);
            h.push(("content-range".into(), format!("bytes {start}-{end}/{claim}")));
            let body = (start..=end).map(|i| bytes[(i % bytes.len() as u64) as usize]).collect();
            (206, h, body)
        }
        (Some(_), RangeMode::Whole206) if !bytes.is_empty() => {
            h.push(("content-range".into(), format!("bytes 0-{}/{}", bytes.len() - 1, bytes.len())));
            (206, h, bytes.to_vec())
        }
        _ => (200, h, bytes.to_vec()),
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let path = percent_decode_str(parts.uri.path()).decode_utf8_lossy().into_owned();
    let query = parts.uri.query().unwrap_or("").to_string();
    let (status, headers, bytes) = route(&shared, &parts.method, &path, &query, &parts.headers, &body);
    lock(&shared.log).push(Seen {
        method: parts.method.to_string(),
        path,
        query,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        status,
    });
    let mut resp =
        Response::builder().status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in headers {
        resp = resp.header(k, v);
    }
    resp.body(Body::from(bytes)).unwrap_or_else(|_| Response::new(Body::empty()))
}

fn take_fault(shared: &Shared, kind: &str) -> Option<u16> {
    lock(&shared.faults).get_mut(kind).and_then(VecDeque::pop_front)
}

fn fault_reply(code: u16) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let (_, mut h, b) = error(code, "TEMPORARILY_UNAVAILABLE", "scripted fault");
    if code == 429 {
        h.push(("retry-after".into(), "0".into()));
    }
    (code, h, b)
}

fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let cfg = lock(&shared.cfg).clone();
    let q = query_map(query);
    // The storage role: presigned URLs need their signature and header, never an Authorization.
    if let Some(rel) = path.strip_prefix("/presigned/") {
        if let Some(code) = take_fault(shared, "presigned") {
            return fault_reply(code);
        }
        if headers.contains_key("authorization") {
            return (400, vec![], b"Authorization must not be sent with a presigned URL".to_vec());
        }
        let sig_ok = q.get("X-Amz-Signature").map(String::as_str) == Some(PRESIGN_SIG);
        let hdr_ok = headers.get(PRESIGN_HEADER.0).and_then(|v| v.to_str().ok()) == Some(PRESIGN_HEADER.1);
        if !sig_ok || !hdr_ok {
            return (403, vec![], b"SignatureDoesNotMatch".to_vec());
        }
        return match lock(&shared.store).get(rel) {
            Some(b) => serve_bytes(b, headers, cfg.range),
            None => (404, vec![], b"NoSuchKey".to_vec()),
        };
    }
    if path == "/oidc/v1/token" && method == Method::POST {
        let Some((id, secret, token)) = &cfg.oauth else { return (404, vec![], vec![]) };
        let want = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        let got = headers.get("authorization").and_then(|v| v.to_str().ok());
        let form = String::from_utf8_lossy(body);
        if got != Some(format!("Basic {want}").as_str())
            || !form.contains("grant_type=client_credentials")
            || !form.contains("scope=all-apis")
        {
            return json_reply(401, json!({"error": "invalid_client"}));
        }
        return json_reply(200, json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}));
    }
    if !authorized(&cfg, headers) {
        return error(401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type");
    }
    let run_of = |id: &str| cfg.runs.get(id).cloned();
    let not_found = |id: &str| error(404, "RESOURCE_DOES_NOT_EXIST", &format!("Run with id={id} not found"));
    match path {
        "/api/2.0/mlflow/experiments/search" | "/api/2.0/mlflow/runs/search" => {
            mlflow_search::route(shared, path, body)
        }
        "/api/2.0/mlflow/runs/get" => {
            if let Some(code) = take_fault(shared, "runs") {
                return fault_reply(code);
            }
            let id = q.get("run_id").cloned().unwrap_or_default();
            let Some(run) = run_of(&id) else { return not_found(&id) };
            let n = {
                let mut polls = lock(&shared.polls);
                let n = polls.entry(id.clone()).or_insert(0);
                *n += 1;
                *n - 1
            };
            let status = run.statuses.get(n).or(run.statuses.last()).cloned().unwrap_or_default();
            if let Some(files) = run.files_by_poll.get(n)
                && let Some(r) = lock(&shared.cfg).runs.get_mut(&id)
            {
                r.files = files.clone();
            }
            json_reply(
                200,
                json!({"run": {"info": {"run_id": id, "run_uuid": id, "experiment_id": "1", "run_name": "fake-run",
                    "status": status, "artifact_uri": run.artifact_uri, "lifecycle_stage": "active"},
                    "data": {}}}),
            )
        }
        "/api/2.0/mlflow/artifacts/list" => {
            if let Some(code) = take_fault(shared, "list") {
                return fault_reply(code);
            }
            let id = q.get("run_id").cloned().unwrap_or_default();
            let Some(run) = run_of(&id) else { return not_found(&id) };
            let dir = q.get("path").cloned().unwrap_or_default();
            let all = children(&cfg, &run, &dir);
            let mut resp = json!({"root_uri": run.artifact_uri});
            let (page, next) = match cfg.page_size {
                Some(n) => {
                    let start: usize = q
                        .get("page_token")
                        .and_then(|t| t.strip_prefix("tok-"))
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0);
                    let end = (start + n).min(all.len());
                    let next = if cfg.repeat_token {
                        Some("tok-same".to_string())
                    } else {
                        (end < all.len()).then(|| format!("tok-{end}"))
                    };
                    (all.get(start..end).map(<[Value]>::to_vec).unwrap_or_default(), next)
                }
                None => (all, None),
            };
            if !page.is_empty() {
                resp["files"] = Value::Array(page);
            }
            if let Some(t) = next {
                resp["next_page_token"] = json!(t);
            }
            json_reply(200, resp)
        }
        "/api/2.0/mlflow/model-versions/get" => {
            let key = (q.get("name").cloned().unwrap_or_default(), q.get("version").cloned().unwrap_or_default());
            match cfg.model_versions.get(&key) {
                Some((run_id, source)) => json_reply(
                    200,
                    json!({"model_version": {"name": key.0, "version": key.1, "run_id": run_id, "source": source,
                        "status": "READY"}}),
                ),
                None => error(404, "RESOURCE_DOES_NOT_EXIST", "Model Version not found"),
            }
        }
        "/api/2.0/mlflow/artifacts/credentials-for-read" if method == Method::POST => {
            if let Some(code) = take_fault(shared, "creds") {
                return fault_reply(code);
            }
            let Some(base) = &cfg.presign_base else {
                return error(
                    404,
                    "ENDPOINT_NOT_FOUND",
                    "No API found for 'POST /mlflow/artifacts/credentials-for-read'",
                );
            };
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let id = v["run_id"].as_str().unwrap_or_default().to_string();
            if run_of(&id).is_none() {
                return not_found(&id);
            }
            let infos: Vec<Value> = v["path"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .map(|p| {
                    let enc: Vec<String> = p
                        .split('/')
                        .map(|s| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string())
                        .collect();
                    json!({"run_id": id, "path": p, "type": "AWS_PRESIGNED_URL",
                        "signed_uri": format!("{base}/presigned/{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature={PRESIGN_SIG}", enc.join("/")),
                        "headers": [{"name": PRESIGN_HEADER.0, "value": PRESIGN_HEADER.1}]})
                })
                .collect();
            match cfg.creds_page_size {
                Some(n) => {
                    let start: usize = v["page_token"]
                        .as_str()
                        .and_then(|t| t.strip_prefix("c-"))
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0);
                    let end = (start + n).min(infos.len());
                    let mut resp =
                        json!({"credential_infos": infos.get(start..end).map(<[Value]>::to_vec).unwrap_or_default()});
                    if end < infos.len() {
                        resp["next_page_token"] = json!(format!("c-{end}"));
                    }
                    json_reply(200, resp)
                }
                None => json_reply(200, json!({"credential_infos": infos})),
            }
        }
        "/get-artifact" => {
            if let Some(code) = take_fault(shared, "data") {
                return fault_reply(code);
            }
            let id = q.get("run_uuid").cloned().unwrap_or_default();
            let Some(run) = run_of(&id) else { return not_found(&id) };
            match q.get("path").and_then(|p| run.files.get(p)) {
                Some(b) => serve_bytes(b, headers, cfg.range),
                None => error(404, "RESOURCE_DOES_NOT_EXIST", "no such artifact"),
            }
        }
        p if p.starts_with("/api/2.0/mlflow-artifacts/artifacts/") => {
            if let Some(code) = take_fault(shared, "data") {
                return fault_reply(code);
            }
            let rest = &p["/api/2.0/mlflow-artifacts/artifacts/".len()..];
            // <exp>/<run>/artifacts/<path>
            let mut it = rest.splitn(4, '/');
            let (_exp, run_id, _art, file) = (it.next(), it.next(), it.next(), it.next());
            let Some(run) = run_id.and_then(run_of) else { return error(404, "RESOURCE_DOES_NOT_EXIST", "no run") };
            match file.and_then(|f| run.files.get(f)) {
                Some(b) => serve_bytes(b, headers, cfg.range),
                None => error(404, "RESOURCE_DOES_NOT_EXIST", "no such artifact"),
            }
        }
        _ => error(404, "ENDPOINT_NOT_FOUND", "no such endpoint"),
    }
}

/// Deterministic, position-dependent bytes (a wrong offset never compares equal).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut k = 0u64;
    while out.len() < len {
        let x = (k ^ u64::from(seed)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        out.extend_from_slice(&x.to_le_bytes());
        k += 1;
    }
    out.truncate(len);
    out
}

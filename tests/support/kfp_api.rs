//! A fake Kubeflow Pipelines API (`/apis/v2beta1`, `/apis/v1beta1`) on a loopback port, with the
//! JSON shapes of KFP's own test data (`backend/test/proto_tests/testdata/generated-1791485/`:
//! snake_case, `null` for absent messages, `pipeline_spec` in camelCase) and the gateway's error
//! bodies (`{"error","code","message","details"}`; 401 as HTML). The S3 side is a real moto
//! server (tests/support/moto.rs).
//!
//! Routes: `GET runs/{id}` (a state sequence per run: each GET takes the next state, the last
//! repeats), `GET pipelines/{pid}/versions/{vid}`, `GET experiments/{id}`, `GET v1beta1/runs/{id}`
//! (a v1 run's workflow manifest), and `GET runs/{id}/nodes/{node}/artifacts/{name}:read` (a body
//! given verbatim, optionally cut after some bytes). Every request is logged with its
//! `Authorization` header; every route requires `Bearer <token>` when a token is set.
#![allow(dead_code)]

#[path = "kfp_list.rs"]
mod kfp_list;
use super::serve;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

/// One logged request.
#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
}

/// A `:read` body and how to serve it.
#[derive(Debug, Clone)]
pub struct ReadBody {
    /// The whole body (`{"data":"…"}`).
    pub body: Vec<u8>,
    /// Cut the body after this many bytes for the first `cut_times` requests.
    pub cut_at: Option<usize>,
    pub cut_times: usize,
}

#[derive(Default)]
struct Shared {
    token: Option<String>,
    /// run id → (states, run JSON without `state`).
    runs: BTreeMap<String, (Vec<String>, Value)>,
    polls: HashMap<String, usize>,
    versions: BTreeMap<(String, String), Value>,
    experiments: BTreeMap<String, Value>,
    v1: BTreeMap<String, Value>,
    reads: BTreeMap<String, ReadBody>,
    read_hits: HashMap<String, usize>,
    /// path → statuses to answer first (e.g. 503, 503).
    faults: HashMap<String, Vec<u16>>,
    log: Vec<Logged>,
}

/// The running fake; stopped when dropped.
pub struct FakeKfp {
    shared: Arc<Mutex<Shared>>,
    server: serve::Served,
}

impl FakeKfp {
    /// Start on 127.0.0.1; `token`: the bearer every route requires.
    pub fn start(token: Option<&str>) -> FakeKfp {
        let shared = Arc::new(Mutex::new(Shared { token: token.map(str::to_string), ..Shared::default() }));
        let app = Router::new().fallback(handle).with_state(shared.clone());
        FakeKfp { shared, server: serve::Served::start("127.0.0.1:0", app) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Add a run answering `states` in turn (the last repeats); `run` is its JSON (its `state` is
    /// replaced).
    pub fn run(&self, id: &str, states: &[&str], run: Value) {
        let states = states.iter().map(|s| s.to_string()).collect();
        self.shared.lock().unwrap().runs.insert(id.into(), (states, run));
    }

    pub fn version(&self, pid: &str, vid: &str, v: Value) {
        self.shared.lock().unwrap().versions.insert((pid.into(), vid.into()), v);
    }

    pub fn experiment(&self, id: &str, v: Value) {
        self.shared.lock().unwrap().experiments.insert(id.into(), v);
    }

    /// A v1 run (`GET /apis/v1beta1/runs/{id}`) whose workflow manifest is `workflow`.
    pub fn v1_run(&self, id: &str, workflow: &Value) {
        let v = json!({"run": {"id": id, "status": "Succeeded"},
                       "pipeline_runtime": {"workflow_manifest": workflow.to_string()}});
        self.shared.lock().unwrap().v1.insert(id.into(), v);
    }

    /// Serve `body` at `runs/{run}/nodes/{node}/artifacts/{name}:read`.
    pub fn read(&self, run: &str, node: &str, name: &str, body: ReadBody) {
        let path = format!("/apis/v2beta1/runs/{run}/nodes/{node}/artifacts/{name}:read");
        self.shared.lock().unwrap().reads.insert(path, body);
    }

    /// Answer these statuses first on `path`.
    pub fn fault(&self, path: &str, statuses: &[u16]) {
        self.shared.lock().unwrap().faults.insert(path.into(), statuses.to_vec());
    }

    pub fn log(&self) -> Vec<Logged> {
        self.shared.lock().unwrap().log.clone()
    }
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

/// The gateway's error body (gRPC code, message).
fn grpc_error(status: u16, code: u16, message: &str) -> Response {
    json_response(status, &json!({"error": message, "code": code, "message": message, "details": []}))
}

async fn handle(State(shared): State<Arc<Mutex<Shared>>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut s = shared.lock().unwrap();
    s.log.push(Logged { path: path.clone(), query: query.clone(), authorization: authorization.clone() });
    if let Some(token) = &s.token
        && authorization.as_deref() != Some(&format!("Bearer {token}"))
    {
        // The multi-user gateway answers 401 with an HTML page.
        return Response::builder()
            .status(401)
            .header("content-type", "text/html")
            .body(Body::from("<html><body>401 Unauthorized</body></html>"))
            .unwrap();
    }
    if let Some(f) = s.faults.get_mut(&path)
        && !f.is_empty()
    {
        let status = f.remove(0);
        return grpc_error(status, 14, "transient failure");
    }
    if let Some(rest) = path.strip_prefix("/apis/v1beta1/runs/") {
        return match s.v1.get(rest) {
            Some(v) => json_response(200, v),
            None => grpc_error(404, 5, "run not found"),
        };
    }
    if path.ends_with(":read") {
        let Some(body) = s.reads.get(&path).cloned() else {
            return json_response(404, &json!({"error_message": "artifact not found", "error_details": "not found"}));
        };
        let hits = s.read_hits.entry(path.clone()).or_default();
        *hits += 1;
        let cut = body.cut_at.filter(|_| *hits <= body.cut_times);
        drop(s);
        let bytes = match cut {
            Some(n) => body.body[..n.min(body.body.len())].to_vec(),
            None => body.body,
        };
        // Streamed, no Content-Length; a cut body just ends (the server gives up mid-stream).
        let stream = futures_util::stream::iter(
            bytes
                .chunks(7_000)
                .map(|c| Ok::<_, std::io::Error>(axum::body::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        let stream = futures_util::StreamExt::chain(
            stream,
            futures_util::stream::iter(cut.map(|_| Err(std::io::Error::other("cut")))),
        );
        return Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("cache-control", "no-cache, private")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["apis", version @ ("v2beta1" | "v1beta1"), "runs"] => kfp_list::runs(&s, version, &query),
        ["apis", "v2beta1", "runs", id] => {
            let id = id.to_string();
            let Some((states, run)) = s.runs.get(&id).cloned() else {
                if id == "bad-request" {
                    return grpc_error(400, 3, "invalid run id");
                }
                if id == "forbidden" {
                    return grpc_error(403, 7, "PermissionDenied: not allowed to read run");
                }
                return grpc_error(404, 5, &format!("Failed to get run: run {id} not found"));
            };
            let n = s.polls.entry(id).or_default();
            let state = states.get(*n).or(states.last()).cloned().unwrap_or_default();
            *n += 1;
            let mut run = run;
            if state.is_empty() {
                run.as_object_mut().unwrap().remove("state");
            } else {
                run["state"] = json!(state);
            }
            json_response(200, &run)
        }
        ["apis", "v2beta1", "pipelines", pid, "versions", vid] => {
            match s.versions.get(&(pid.to_string(), vid.to_string())) {
                Some(v) => json_response(200, v),
                None => grpc_error(404, 5, "pipeline version not found"),
            }
        }
        ["apis", "v2beta1", "experiments", id] => match s.experiments.get(*id) {
            Some(v) => json_response(200, v),
            None => grpc_error(404, 5, "experiment not found"),
        },
        _ => Response::builder().status(StatusCode::NOT_FOUND).body(Body::from("404 page not found")).unwrap(),
    }
}

//! A loopback stand-in for the KFP API's v1 artifact route (kfp-s3-api.md §4, K4):
//! `GET /apis/v2beta1/runs/{run}/nodes/{node}/artifacts/{name}:read` answers `200` with no
//! `Content-Length`, `Range` or `ETag` and a chunked body `{"data":"<base64 .tgz>"}`; errors
//! before the 200 are JSON `{"error_message","error_details"}`; an error after the 200 just cuts
//! the body. Each artifact name is scripted (cut, stall, bad status); the bearer token is required.
#![allow(dead_code)]

use super::serve;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

/// The token the server accepts (`Authorization: Bearer test-token`).
pub const TOKEN: &str = "test-token";

/// How an artifact is served.
#[derive(Clone, Debug)]
pub enum Mode {
    /// The whole body, chunked.
    Ok,
    /// The first `times` requests break the connection after `at` body bytes; later ones are whole.
    CutFirst { at: usize, times: usize },
    /// Every request ends the body cleanly after `at` bytes (a body that is just short).
    AlwaysShort { at: usize },
    /// The first `times` requests answer `status` with a JSON error (and `Retry-After: 0`);
    /// later ones are whole.
    Status { status: u16, times: usize },
    /// Send `at` body bytes, then nothing more (the connection stays open).
    Stall { at: usize },
}

/// One scripted artifact.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The whole body (`{"data":"…"}`, or anything a test wants served).
    pub body: Vec<u8>,
    /// How it is served.
    pub mode: Mode,
}

#[derive(Default)]
struct Shared {
    artifacts: Mutex<HashMap<String, Artifact>>,
    hits: Mutex<HashMap<String, usize>>,
    /// Body bytes handed to the connection, per artifact.
    sent: Mutex<HashMap<String, usize>>,
}

/// The server; stopped when dropped.
pub struct KfpRead {
    shared: Arc<Shared>,
    server: serve::Served,
}

/// Chunks of this size (the last one shorter).
const CHUNK: usize = 1000;

impl KfpRead {
    /// Start on 127.0.0.1 with these artifacts (by name).
    pub fn start(artifacts: Vec<(&str, Artifact)>) -> KfpRead {
        let shared = Arc::new(Shared::default());
        shared.artifacts.lock().unwrap().extend(artifacts.into_iter().map(|(k, v)| (k.to_string(), v)));
        let app = Router::new().fallback(serve).with_state(shared.clone());
        KfpRead { shared, server: serve::Served::start("127.0.0.1:0", app) }
    }

    /// The `:read` URL of artifact `name` of node `node` in run `run`.
    pub fn url(&self, name: &str) -> url::Url {
        url::Url::parse(&format!(
            "http://{}/apis/v2beta1/runs/0b6e2a5c-run/nodes/train-pipeline-x7k2p-3141/artifacts/{name}:read",
            self.server.addr
        ))
        .expect("url")
    }

    /// Requests seen for `name`.
    pub fn hits(&self, name: &str) -> usize {
        self.shared.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// Body bytes handed out for `name` (over all requests).
    pub fn sent(&self, name: &str) -> usize {
        self.shared.sent.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

fn json_error(status: u16, message: &str) -> Response {
    let body = serde_json::json!({"error_message": message, "error_details": format!("{message} (details)")});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("retry-after", "0")
        .body(Body::from(body.to_string()))
        .expect("response")
}

async fn serve(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let name = path
        .strip_prefix("/apis/v2beta1/runs/")
        .and_then(|r| r.split_once("/nodes/"))
        .and_then(|(_, r)| r.split_once("/artifacts/"))
        .and_then(|(_, r)| r.strip_suffix(":read"))
        .map(str::to_string);
    let Some(name) = name else {
        return json_error(404, "no such route");
    };
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth != format!("Bearer {TOKEN}") {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("content-type", "text/html")
            .body(Body::from("<html><body>401 Unauthorized</body></html>"))
            .expect("response");
    }
    let hit = {
        let mut hits = shared.hits.lock().unwrap();
        let h = hits.entry(name.clone()).or_default();
        *h += 1;
        *h
    };
    let Some(artifact) = shared.artifacts.lock().unwrap().get(&name).cloned() else {
        return json_error(404, &format!("artifact {name} not found in the run's workflow"));
    };
    let body = artifact.body;
    // What to send and how the stream ends.
    enum End {
        Clean,
        Break,
        Stall,
    }
    let (upto, end) = match artifact.mode {
        Mode::Ok => (body.len(), End::Clean),
        Mode::CutFirst { at, times } if hit <= times => (at, End::Break),
        Mode::CutFirst { .. } => (body.len(), End::Clean),
        Mode::AlwaysShort { at } => (at, End::Clean),
        Mode::Status { status, times } if hit <= times => return json_error(status, "the server is busy"),
        Mode::Status { .. } => (body.len(), End::Clean),
        Mode::Stall { at } => (at, End::Stall),
    };
    let chunks: Vec<Bytes> = body[..upto.min(body.len())].chunks(CHUNK).map(Bytes::copy_from_slice).collect();
    let counter = shared.clone();
    let key = name.clone();
    let head = futures_util::stream::iter(chunks).map(move |c| {
        *counter.sent.lock().unwrap().entry(key.clone()).or_default() += c.len();
        Ok::<Bytes, std::io::Error>(c)
    });
    let tail: BoxStream<'static, Result<Bytes, std::io::Error>> = match end {
        End::Clean => futures_util::stream::empty().boxed(),
        End::Break => futures_util::stream::once(async { Err(std::io::Error::other("cut")) }).boxed(),
        End::Stall => futures_util::stream::once(std::future::pending()).boxed(),
    };
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from_stream(head.chain(tail)))
        .expect("response")
}

//! HTTP/2: jobdl speaks HTTP/1.1 to a TLS server that offers h2 too, and h2 when allowed
//! (`JOBDL_HTTP2=1`). The server is a TLS front on 127.0.0.1 that offers `h2` and `http/1.1`,
//! records the protocol version of every request and forwards it to the emulator.
use crate::harness::{TestEnv, assert_blob_file};
use crate::support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::tls::TestCa;
use support::{ARTIFACT_CONTAINER, artifact_blob_name, standard_world};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// Headers that belong to one HTTP/1.1 connection and are not forwarded (HTTP/2 forbids them).
const HOP_BY_HOP: [&str; 5] = ["connection", "keep-alive", "transfer-encoding", "upgrade", "host"];

/// A TLS server offering h2 and http/1.1 that forwards every request to `upstream` (plain
/// HTTP/1.1) and keeps the version each request came in with; stops on drop.
struct VersionFront {
    addr: SocketAddr,
    versions: Arc<Mutex<Vec<Version>>>,
    stop_tx: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl VersionFront {
    fn start(ca: &TestCa, upstream: &str) -> VersionFront {
        let (chain, key) = ca.server_cert();
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let versions = Arc::new(Mutex::new(Vec::new()));
        let seen = versions.clone();
        let upstream = format!("http://{upstream}");
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
            rt.block_on(serve(listener, acceptor, upstream, seen, stop_rx));
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        VersionFront { addr, versions, stop_tx: Some(stop_tx), thread: Some(thread) }
    }

    fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// The versions of the requests so far, then forgets them.
    fn take_versions(&self) -> Vec<Version> {
        std::mem::take(&mut *self.versions.lock().unwrap())
    }
}

impl Drop for VersionFront {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    upstream: String,
    versions: Arc<Mutex<Vec<Version>>>,
    stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    let client = reqwest::Client::builder().no_proxy().build().expect("forwarding client");
    let accept = async {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, client, upstream, versions) =
                (acceptor.clone(), client.clone(), upstream.clone(), versions.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req| {
                    versions.lock().unwrap().push(req.version());
                    forward(client.clone(), upstream.clone(), req)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = stop => {}
    }
}

/// Sends `req` on to `upstream` and hands back its answer (whole bodies: test blobs are small).
async fn forward(
    client: reqwest::Client,
    upstream: String,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let mut out = client.request(req.method().clone(), format!("{upstream}{path}"));
    for (name, value) in req.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out = out.header(name, value);
        }
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut resp = Response::builder();
    let answer = match out.body(body).send().await {
        Ok(r) => {
            resp = resp.status(r.status());
            for (name, value) in r.headers() {
                if !HOP_BY_HOP.contains(&name.as_str()) {
                    resp = resp.header(name, value);
                }
            }
            r.bytes().await.unwrap_or_default()
        }
        Err(_) => {
            resp = resp.status(502);
            Bytes::new()
        }
    };
    Ok(resp.body(Full::new(answer)).expect("response"))
}

#[test]
fn jobdl_speaks_http1_by_default_and_h2_when_allowed() {
    let env = TestEnv::new(standard_world());
    let ca = TestCa::new("jobdl test CA (h2)");
    let front = VersionFront::start(&ca, &env.emu.host_port());
    let pem = env.sandbox().join("ca.pem");
    ca.write_pem(&pem);
    let allow = format!("{},{}", env.emu.host_port(), front.host_port());
    // A listing, small blobs, and a blob big enough for ranged chunks.
    let small =
        env.emu.container_sas_url("data-0001", "job-123-metrics/1").replace(&env.emu.base_url(), &front.base_url());
    let big_name = artifact_blob_name("job-123", "outputs/big.bin");
    let big = env.emu.blob_sas_url(ARTIFACT_CONTAINER, &big_name).replace(&env.emu.base_url(), &front.base_url());

    for (mode, http2, want) in [("h1", None, Version::HTTP_11), ("h2", Some("1"), Version::HTTP_2)] {
        for (what, url) in [("small", &small), ("big", &big)] {
            let dest = format!("{mode}-{what}");
            let mut cmd = env.command(["cp", url.as_str(), dest.as_str(), "--json"]);
            cmd.env("SSL_CERT_FILE", &pem).env("JOBDL_ALLOW_HOSTS", &allow).env("JOBDL_CHUNK_SIZE", "1MiB");
            cmd.env_remove("JOBDL_HTTP2");
            if let Some(v) = http2 {
                cmd.env("JOBDL_HTTP2", v);
            }
            let run = env.run_cmd(cmd);
            run.expect_code(0);
            if what == "small" {
                assert_blob_file(
                    &env.work().join(&dest).join("loss.csv"),
                    env.blob("data-0001", "job-123-metrics/1/loss.csv"),
                );
            } else {
                assert_blob_file(&env.work().join(&dest).join("big.bin"), env.artifact("job-123", "outputs/big.bin"));
            }
            let versions = front.take_versions();
            assert!(!versions.is_empty(), "{mode} {what}: no request reached the front\n{run}");
            assert!(versions.iter().all(|v| *v == want), "{mode} {what}: want {want:?} only, got {versions:?}\n{run}");
        }
    }

    // A value that is neither on nor off is a configuration error.
    let mut cmd = env.command(["cp", small.as_str(), "bad", "--json"]);
    cmd.env("SSL_CERT_FILE", &pem).env("JOBDL_ALLOW_HOSTS", &allow).env("JOBDL_HTTP2", "maybe");
    let run = env.run_cmd(cmd);
    run.expect_code(2);
    assert!(run.all_output().contains("JOBDL_HTTP2"), "{run}");
}

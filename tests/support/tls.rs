//! TLS for tests: a throw-away certificate authority (made with `rcgen` for each test) and a
//! TLS front on 127.0.0.1 that terminates TLS with a certificate for `127.0.0.1`/`localhost`
//! signed by that CA and relays the plain bytes to an upstream (the emulator), so the emulator
//! can be reached over `https://127.0.0.1:PORT`.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A host name that is not loopback, for tests of proxies (which loopback targets bypass): the
/// test proxy (`proxy.rs`) connects `*.invalid` names to 127.0.0.1, and the front's certificate
/// names it.
pub const FRONT_NAME: &str = "front.jobdl.invalid";

/// A CA whose certificate no system trusts.
pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa { cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes the CA certificate (PEM) to `path`.
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, &self.cert_pem).expect("write CA PEM");
    }

    /// A server certificate for `127.0.0.1`, `localhost` and [`FRONT_NAME`] (DER chain, PKCS#8 key).
    pub fn server_cert(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string(), FRONT_NAME.to_string()];
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf signed by CA");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], key)
    }
}

/// A TLS-terminating relay in front of `upstream`; stops on drop.
pub struct TlsFront {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    stop_tx: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsFront {
    /// Binds 127.0.0.1:0 and relays each TLS connection to `upstream` (`127.0.0.1:PORT`).
    pub fn start(ca: &TestCa, upstream: &str) -> TlsFront {
        let upstream: SocketAddr = upstream.parse().expect("upstream host:port");
        let (chain, key) = ca.server_cert();
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").expect("tls front: bind");
        listener.set_nonblocking(true).expect("tls front: nonblocking");
        let addr = listener.local_addr().expect("tls front: local_addr");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let done = handshakes.clone();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("tls-front".into())
            .spawn(move || serve(listener, acceptor, upstream, done, stop_rx))
            .expect("tls front: spawn");
        TlsFront { addr, handshakes, stop_tx: Some(stop_tx), thread: Some(thread) }
    }

    /// `127.0.0.1:PORT`
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// `https://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `FRONT_NAME:PORT`: the front under a name that is not loopback (reached through the test proxy).
    pub fn named_host_port(&self) -> String {
        format!("{FRONT_NAME}:{}", self.addr.port())
    }

    /// `https://FRONT_NAME:PORT`
    pub fn named_base_url(&self) -> String {
        format!("https://{}", self.named_host_port())
    }

    /// TLS handshakes that completed.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    upstream: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tls-front-worker")
        .enable_all()
        .build()
        .expect("tls front: runtime");
    runtime.block_on(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
        let accept_loop = async {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                let handshakes = handshakes.clone();
                tokio::spawn(async move {
                    // A client that rejects the certificate aborts the handshake: nothing to relay.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    handshakes.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        };
        tokio::select! {
            _ = accept_loop => {}
            _ = stop => {}
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
}

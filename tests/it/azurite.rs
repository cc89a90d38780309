//! Blob-API conformance against the real Azure Storage emulator (Azurite 3.35.0, pinned in
//! `.ci/azurite/package.json`), and `jobdl cp` end to end against it.
//!
//! Azurite validates SAS signatures with its well-known development key, so these tests also prove
//! the service-SAS layout of azure-api.md §4.3. Azurite is found through `AZURITE_BLOB_BIN` or at
//! `.ci/azurite/node_modules/.bin/azurite-blob`; without it the tests skip with a notice, except
//! under `CI=true`, where they fail. One Azurite process serves the whole test binary (each test
//! uses its own container); it runs with `PR_SET_PDEATHSIG`, so it dies with the test process.
#![cfg(target_os = "linux")]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use jobdl::blob::{BlobClient, ContainerRef, ListPage, parse_blob_url, parse_list_page, same_etag};
use jobdl::http::CallError;
use jobdl::retry::RetryConfig;
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

/// Azurite's well-known development account.
const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key (public, documented; not a secret).
const ACCOUNT_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The storage service version used for `sv` and `x-ms-version` (§4.4); Azurite knows it from 3.35.0.
const SV: &str = "2025-11-05";
/// How long Azurite may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The exact Azurite flags (besides host and port); documented in the CI report and `.ci/run`.
const AZURITE_FLAGS: [&str; 5] =
    ["--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent", "--inMemoryPersistence"];
/// The engine chunks files above 32 MiB; this blob is fetched in several 8 MiB ranges.
const BIG_BLOB: usize = 40 * 1024 * 1024 + 12_345;

// ---------------------------------------------------------------------------------------------
// Azurite process
// ---------------------------------------------------------------------------------------------

/// The shared Azurite instance.
struct Azurite {
    port: u16,
}

impl Azurite {
    /// `http://127.0.0.1:<port>/devstoreaccount1`.
    fn account_url(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// `127.0.0.1:<port>`, for `JOBDL_ALLOW_HOSTS`.
    fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Kills and reaps the Azurite child when dropped (the keeper thread owns it; if that thread
/// ever ends, this runs, and `PR_SET_PDEATHSIG` covers the process exiting).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

static AZURITE: OnceLock<Result<Azurite, String>> = OnceLock::new();

/// Where the `azurite-blob` launcher is, if installed.
fn azurite_bin() -> Option<PathBuf> {
    let path = match std::env::var_os("AZURITE_BLOB_BIN").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/azurite/node_modules/.bin/azurite-blob"),
    };
    path.is_file().then_some(path)
}

/// The shared Azurite instance, started on first use; `None` (after a notice) when Azurite is not
/// installed and this is not CI. Panics when it is required (`CI=true`) but missing, or fails to start.
fn azurite() -> Option<&'static Azurite> {
    let Some(bin) = azurite_bin() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "Azurite is required under CI=true but was not found (AZURITE_BLOB_BIN or \
                 .ci/azurite/node_modules/.bin/azurite-blob); install it with `npm ci --prefix .ci/azurite`"
            );
        }
        eprintln!("Azurite not installed; skipping — run `npm ci --prefix .ci/azurite`");
        return None;
    };
    match AZURITE.get_or_init(|| start_azurite(bin)) {
        Ok(a) => Some(a),
        Err(e) => panic!("{e}"),
    }
}

/// Start Azurite from a keeper thread that never ends: `PR_SET_PDEATHSIG` fires when the thread
/// that forked the child exits, so the child must not be forked from a short-lived test thread.
fn start_azurite(bin: PathBuf) -> Result<Azurite, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("azurite-keeper".into())
        .spawn(move || {
            let mut last_err = String::new();
            // A free port can be taken between probing and Azurite binding it: try a few.
            for _ in 0..3 {
                match spawn_azurite(&bin) {
                    Ok((guard, port)) => {
                        let _ = tx.send(Ok(port));
                        let _keep = guard;
                        loop {
                            std::thread::park();
                        }
                    }
                    Err(e) => last_err = e,
                }
            }
            let _ = tx.send(Err(last_err));
        })
        .map_err(|e| format!("cannot start the Azurite keeper thread: {e}"))?;
    let port = rx.recv().map_err(|_| "the Azurite keeper thread died".to_string())??;
    Ok(Azurite { port })
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// Spawn one Azurite process and wait (bounded) until its port accepts connections.
fn spawn_azurite(bin: &Path) -> Result<(ChildGuard, u16), String> {
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let log_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("azurite-{}-{port}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut cmd = Command::new(bin);
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .args(AZURITE_FLAGS)
        // For diagnosing a failure: Azurite's request-level debug log.
        .args(
            std::env::var_os("AZURITE_DEBUG_LOG")
                .filter(|p| !p.is_empty())
                .map(|p| vec!["--debug".into(), p])
                .unwrap_or_default(),
        )
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let parent = std::process::id();
    let hook = move || {
        // SAFETY: prctl and getppid are async-signal-safe and touch no memory of ours.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died before the prctl took effect.
        // SAFETY: as above.
        if unsafe { libc::getppid() } as u32 != parent {
            return Err(io::Error::other("the test process exited"));
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe system calls (see above).
    unsafe { cmd.pre_exec(hook) };
    let child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let mut guard = ChildGuard(child);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = guard.0.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = std::fs::remove_file(&log_path);
            return Err(format!("Azurite exited during start-up ({status}); its output:\n{log}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok() {
            // Azurite keeps its (silent) output file open; nothing needs it under a name any more.
            let _ = std::fs::remove_file(&log_path);
            return Ok((guard, port));
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = std::fs::remove_file(&log_path);
            return Err(format!("Azurite did not listen on {addr} within {START_TIMEOUT:?}; its output:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// SAS minting (azure-api.md §4.3)
// ---------------------------------------------------------------------------------------------

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// A blob name as a URL path: each segment encoded, `/` kept (written independently of
/// `ContainerRef::blob_url`, so uploads do not share a bug with the code under test).
fn enc_path(name: &str) -> String {
    name.split('/').map(enc).collect::<Vec<_>>().join("/")
}

fn sign(string_to_sign: &str) -> String {
    let key = B64.decode(ACCOUNT_KEY).expect("the dev key is Base64");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// `st` (now − 5 min) and `se` (now + 60 min) in the `2026-01-15T10:00:00Z` form.
fn validity() -> (String, String) {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    let now = time::OffsetDateTime::now_utc();
    let st = (now - time::Duration::minutes(5)).format(&fmt).expect("format st");
    let se = (now + time::Duration::minutes(60)).format(&fmt).expect("format se");
    (st, se)
}

/// A service SAS (no leading `?`) for a container (`blob: None`, `sr=c`) or one blob (`sr=b`):
/// the 16-line string-to-sign of version 2020-12-06 onward, `spr` omitted for plain-http Azurite.
fn service_sas(container: &str, blob: Option<&str>, perms: &str) -> String {
    let (st, se) = validity();
    let (sr, resource) = match blob {
        Some(b) => ("b", format!("/blob/{ACCOUNT}/{container}/{b}")),
        None => ("c", format!("/blob/{ACCOUNT}/{container}")),
    };
    // sp, st, se, canonicalized resource, si, sip, spr, sv, sr, snapshot time, ses, rscc, rscd, rsce, rscl, rsct
    let string_to_sign = [perms, &st, &se, &resource, "", "", "", SV, sr, "", "", "", "", "", "", ""].join("\n");
    let sig = sign(&string_to_sign);
    format!("sv={SV}&sr={sr}&sp={perms}&st={}&se={}&sig={}", enc(&st), enc(&se), enc(&sig))
}

/// An account SAS for the blob service with every permission, used only to set fixtures up
/// (creating a container needs an account SAS or SharedKey).
fn account_sas() -> String {
    let (st, se) = validity();
    let (sp, ss, srt) = ("rwdlac", "b", "sco");
    // account, sp, ss, srt, st, se, sip, spr, sv, ses, and a final newline
    let string_to_sign = [ACCOUNT, sp, ss, srt, &st, &se, "", "", SV, "", ""].join("\n");
    let sig = sign(&string_to_sign);
    format!("sv={SV}&ss={ss}&srt={srt}&sp={sp}&st={}&se={}&sig={}", enc(&st), enc(&se), enc(&sig))
}

/// The `sig` value of a SAS, as it appears in the query (percent-encoded).
fn sig_of(sas: &str) -> &str {
    sas.split('&').find_map(|kv| kv.strip_prefix("sig=")).expect("SAS has a sig")
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().no_gzip().no_deflate().build().expect("reqwest client")
}

fn md5_of(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// Deterministic, position-dependent bytes (SplitMix64), so a misplaced range is caught by content.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut state = seed;
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A container in the shared Azurite, created for one test.
struct Container {
    az: &'static Azurite,
    name: String,
    http: reqwest::Client,
}

impl Container {
    /// Create container `name` (each test uses its own name).
    async fn create(az: &'static Azurite, name: &str) -> Container {
        let http = http();
        let url = format!("{}/{name}?restype=container&{}", az.account_url(), account_sas());
        let resp = http.put(&url).header("x-ms-version", SV).send().await.expect("create container");
        assert_eq!(resp.status().as_u16(), 201, "create container {name}: {:?}", resp.headers());
        Container { az, name: name.to_string(), http }
    }

    /// Upload a block blob with Put Blob and a `Content-MD5` (stored as the blob's MD5).
    async fn put(&self, name: &str, data: &[u8]) {
        self.put_with(name, data, &[]).await
    }

    /// [`Self::put`] with extra headers (e.g. metadata).
    async fn put_with(&self, name: &str, data: &[u8], extra: &[(&str, &str)]) {
        let url = format!("{}/{}/{}?{}", self.az.account_url(), self.name, enc_path(name), account_sas());
        let mut rb = self
            .http
            .put(&url)
            .header("x-ms-version", SV)
            .header("x-ms-blob-type", "BlockBlob")
            .header("content-md5", B64.encode(md5_of(data)))
            .body(data.to_vec());
        if data.is_empty() {
            // reqwest sends no Content-Length for an empty body; Azurite then rejects the request.
            rb = rb.header("content-length", "0");
        }
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        let resp = rb.send().await.expect("put blob");
        assert_eq!(resp.status().as_u16(), 201, "put blob {name:?}: {:?}", resp.headers());
    }

    /// `http://127.0.0.1:<port>/devstoreaccount1/<container>`.
    fn url(&self) -> String {
        format!("{}/{}", self.az.account_url(), self.name)
    }

    /// The blob's URL with the given SAS.
    fn blob_url(&self, name: &str, sas: &str) -> String {
        format!("{}/{}?{sas}", self.url(), enc_path(name))
    }

    /// The container as jobdl's blob module sees it, with a read/list container SAS.
    fn container_ref(&self) -> ContainerRef {
        let url = url::Url::parse(&format!("{}?{}", self.url(), service_sas(&self.name, None, "rl"))).unwrap();
        parse_blob_url(&url).expect("parse container URL").container
    }

    /// A GET of one blob with a read container SAS and the given extra headers.
    async fn get(&self, name: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut rb = self.http.get(self.blob_url(name, &service_sas(&self.name, None, "r"))).header("x-ms-version", SV);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send().await.expect("get blob")
    }
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn blob_client() -> BlobClient {
    let retry = RetryConfig {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        retry_after_cap: Duration::from_millis(50),
    };
    BlobClient::new(http(), retry)
}

// ---------------------------------------------------------------------------------------------
// Conformance: List Blobs, Get Blob, Get Blob Properties
// ---------------------------------------------------------------------------------------------

/// Names that must survive URL encoding on upload and XML/percent decoding in the listing.
const AWKWARD: [&str; 7] = [
    "run 1/plain.txt",
    "run 1/with space.txt",
    "run 1/hash#1.txt",
    "run 1/100%.txt",
    "run 1/c++ & <xml>.txt",
    "run 1/ünïcødé/日本語 ✓.txt",
    "run 1/nested/deep/x.bin",
];

#[tokio::test]
async fn list_returns_every_blob_with_size_md5_and_pages_by_marker() {
    let Some(az) = azurite() else { return };
    let c = Container::create(az, "conf-list").await;
    let mut expected: BTreeMap<String, (u64, [u8; 16])> = BTreeMap::new();
    for (i, name) in AWKWARD.iter().enumerate() {
        let data = pattern(100 + 37 * i, i as u64);
        c.put(name, &data).await;
        expected.insert(name.to_string(), (data.len() as u64, md5_of(&data)));
    }
    // Outside the prefix (a sibling whose name only starts the same), and a folder placeholder.
    c.put("run 10/other.txt", b"not listed").await;
    c.put("run 1x", b"not listed either").await;
    c.put_with("run 1/folder", b"", &[("x-ms-meta-hdi_isfolder", "true")]).await;

    // The client: one request (Azurite honours maxresults=5000), placeholder skipped.
    let items = blob_client().list(&c.container_ref(), "run 1/").await.expect("list");
    let got: BTreeMap<String, (u64, [u8; 16])> =
        items.iter().map(|b| (b.name.clone(), (b.size, b.md5.expect("listing carries Content-MD5")))).collect();
    assert_eq!(got, expected);
    assert_eq!(items.len(), AWKWARD.len(), "no duplicates");
    assert!(items.iter().all(|b| b.etag.as_deref().is_some_and(|e| !e.is_empty())));

    // Raw pages of two, following NextMarker by hand, through the parser.
    let sas = service_sas(&c.name, None, "rl");
    let mut marker: Option<String> = None;
    let mut paged: Vec<(String, u64, Option<[u8; 16]>)> = Vec::new();
    let mut pages = 0;
    loop {
        let mut url =
            format!("{}?restype=container&comp=list&prefix={}&include=metadata&maxresults=2", c.url(), enc("run 1/"));
        if let Some(m) = &marker {
            url.push_str(&format!("&marker={}", enc(m)));
        }
        url.push('&');
        url.push_str(&sas);
        let resp = c.http.get(&url).header("x-ms-version", SV).send().await.expect("list page");
        assert_eq!(resp.status().as_u16(), 200);
        let body = resp.bytes().await.expect("list body");
        let page: ListPage = parse_list_page(&body).expect("Azurite's page parses");
        pages += 1;
        assert!(page.blobs.len() <= 2, "maxresults=2 honoured: {:?}", page.blobs);
        paged.extend(page.blobs.into_iter().map(|b| (b.name, b.size, b.md5)));
        match page.next_marker {
            Some(m) => {
                assert!(pages < 20, "listing does not end");
                marker = Some(m);
            }
            None => break,
        }
    }
    // 7 blobs plus the placeholder (skipped by the parser, but it takes a slot): 4 pages.
    assert_eq!(pages, 4);
    let paged_map: BTreeMap<String, (u64, [u8; 16])> =
        paged.iter().map(|(n, s, m)| (n.clone(), (*s, m.expect("md5")))).collect();
    assert_eq!(paged_map, expected);
    assert_eq!(paged.len(), AWKWARD.len());

    // A listing needs `l`: a read-only container SAS is refused.
    let url =
        format!("{}?restype=container&comp=list&prefix={}&{}", c.url(), enc("run 1/"), service_sas(&c.name, None, "r"));
    let resp = c.http.get(&url).header("x-ms-version", SV).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

#[tokio::test]
async fn ranged_and_whole_gets_follow_the_blob_contract() {
    let Some(az) = azurite() else { return };
    let c = Container::create(az, "conf-get").await;
    let data = pattern(100_000, 42);
    let md5 = B64.encode(md5_of(&data));
    c.put("dir/data one.bin", &data).await;
    c.put("empty.txt", b"").await;

    // (b) A range inside the blob: 206, exact Content-Range, the bytes, and the stored whole-blob MD5.
    let resp = c.get("dir/data one.bin", &[("range", "bytes=100-1099")]).await;
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(header(&resp, "content-range"), Some("bytes 100-1099/100000"));
    assert_eq!(header(&resp, "content-length"), Some("1000"));
    assert_eq!(header(&resp, "x-ms-blob-content-md5"), Some(md5.as_str()));
    let etag = header(&resp, "etag").expect("206 has an ETag").to_string();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[100..1100]);

    // The last byte, and a range running past the end (clipped to the blob).
    let resp = c.get("dir/data one.bin", &[("range", "bytes=99999-99999")]).await;
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(header(&resp, "content-range"), Some("bytes 99999-99999/100000"));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[99_999..]);
    let resp = c.get("dir/data one.bin", &[("range", "bytes=90000-8388607")]).await;
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(header(&resp, "content-range"), Some("bytes 90000-99999/100000"));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[90_000..]);

    // (c) No range: 200 with the stored Content-MD5 and the whole body.
    let resp = c.get("dir/data one.bin", &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(&resp, "content-md5"), Some(md5.as_str()));
    assert_eq!(header(&resp, "content-length"), Some("100000"));
    assert!(same_etag(header(&resp, "etag").unwrap(), &etag));
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);

    // (d) A range on an empty blob is 416; without a range it is an empty 200.
    let resp = c.get("empty.txt", &[("range", "bytes=0-8388607")]).await;
    assert_eq!(resp.status().as_u16(), 416);
    assert_eq!(header(&resp, "x-ms-error-code"), Some("InvalidRange"));
    let resp = c.get("empty.txt", &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(header(&resp, "content-md5"), Some(B64.encode(md5_of(b"")).as_str()));
    assert!(resp.bytes().await.unwrap().is_empty());
    // A range starting at the size of a non-empty blob: Azure answers 416; Azurite 3.35.0 answers
    // 206 with an impossible `Content-Range` and no body, one reason why the engine checks that every
    // 206 names exactly the range it asked for (§4.6 rule 1).
    let resp = c.get("dir/data one.bin", &[("range", "bytes=100000-100009")]).await;
    match resp.status().as_u16() {
        416 => {}
        206 => {
            assert_eq!(header(&resp, "content-range"), Some("bytes 100000-99999/100000"));
            assert!(resp.bytes().await.unwrap().is_empty());
        }
        other => panic!("range past the end: {other} {:?}", resp.headers()),
    }

    // (e) If-Match: the ETag from the first response passes, any other gives 412.
    let resp = c.get("dir/data one.bin", &[("range", "bytes=0-9"), ("if-match", &etag)]).await;
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..10]);
    let resp = c.get("dir/data one.bin", &[("range", "bytes=0-9"), ("if-match", "\"0x8DEADBEEF000000\"")]).await;
    assert_eq!(resp.status().as_u16(), 412);
    assert_eq!(header(&resp, "x-ms-error-code"), Some("ConditionNotMet"));

    // A missing blob is 404 BlobNotFound.
    let resp = c.get("dir/missing.bin", &[]).await;
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(header(&resp, "x-ms-error-code"), Some("BlobNotFound"));
}

#[tokio::test]
async fn properties_report_size_md5_etag_and_404() {
    let Some(az) = azurite() else { return };
    let c = Container::create(az, "conf-head").await;
    let data = pattern(4321, 7);
    c.put("a dir/ünï #1.bin", &data).await;
    c.put_with("a dir", b"", &[("x-ms-meta-hdi_isfolder", "true")]).await;
    let cref = c.container_ref();
    let bc = blob_client();

    let p = bc.properties(&cref.blob_url("a dir/ünï #1.bin")).await.expect("HEAD");
    assert_eq!(p.size, 4321);
    assert_eq!(p.md5, Some(md5_of(&data)));
    assert!(!p.is_folder);
    let etag = p.etag.expect("HEAD gives an ETag");
    let get = c.get("a dir/ünï #1.bin", &[("range", "bytes=0-0")]).await;
    assert!(same_etag(&etag, header(&get, "etag").unwrap()), "{etag} vs {:?}", header(&get, "etag"));
    let listed = bc.list(&cref, "a dir/").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(same_etag(&etag, listed[0].etag.as_deref().unwrap()));

    let folder = bc.properties(&cref.blob_url("a dir")).await.expect("HEAD placeholder");
    assert!(folder.is_folder);
    assert_eq!(folder.size, 0);

    match bc.properties(&cref.blob_url("a dir/missing")).await {
        Err(CallError::Status { status: 404, code, .. }) => {
            assert!(code.is_none() || code.as_deref() == Some("BlobNotFound"), "{code:?}")
        }
        other => panic!("expected 404, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let Some(az) = azurite() else { return };
    let c = Container::create(az, "conf-auth").await;
    c.put("x.txt", b"hello").await;
    // The minted SAS works...
    let resp = c.get("x.txt", &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
    // ...and Azurite really checks it: one flipped signature byte is 403 AuthenticationFailed.
    let sas = service_sas(&c.name, None, "r");
    let sig = sig_of(&sas);
    let flipped = if sig.starts_with('A') { sig.replacen('A', "B", 1) } else { format!("A{}", &sig[1..]) };
    let resp = c.http.get(c.blob_url("x.txt", &sas.replace(sig, &flipped))).header("x-ms-version", SV).send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    // Azure says AuthenticationFailed; Azurite 3.35.0 says AuthorizationFailure (§4.6 lists both).
    let code = header(&resp, "x-ms-error-code");
    assert!(matches!(code, Some("AuthenticationFailed" | "AuthorizationFailure")), "{code:?}");
    // A blob SAS is bound to its blob.
    let other = service_sas(&c.name, Some("y.txt"), "r");
    let resp = c.http.get(c.blob_url("x.txt", &other)).header("x-ms-version", SV).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

// ---------------------------------------------------------------------------------------------
// `jobdl cp` end to end
// ---------------------------------------------------------------------------------------------

/// Longest a `jobdl` run may take before the test fails (it is killed on drop).
const JOBDL_TIMEOUT: Duration = Duration::from_secs(180);

/// Run the built `jobdl` with the emulator environment (bounded by [`JOBDL_TIMEOUT`]).
async fn jobdl(az: &Azurite, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_jobdl"))
        .args(args)
        .env("JOBDL_ACCESS_TOKEN", "test-token")
        .env("JOBDL_ALLOW_HOSTS", az.host_port())
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .env("JOBDL_RETRY_BASE_DELAY", "10ms")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(JOBDL_TIMEOUT, run).await {
        Ok(out) => out.expect("run jobdl"),
        Err(_) => panic!("jobdl {args:?} did not finish within {JOBDL_TIMEOUT:?}"),
    }
}

/// Every file under `root`, relative, with `/` separators.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Assert that neither output stream carries a SAS signature.
fn assert_no_secret(out: &Output, sas: &str) {
    let sig = sig_of(sas);
    let decoded = percent_encoding::percent_decode_str(sig).decode_utf8_lossy().into_owned();
    for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(text);
        assert!(!text.contains(sig) && !text.contains(&decoded), "{stream} carries the signature:\n{text}");
        // A `sig=` may only be followed by a placeholder such as `REDACTED`, never by a value.
        for (at, _) in text.match_indices("sig=") {
            let value: String =
                text[at + 4..].chars().take_while(|c| !matches!(c, '&' | '"' | '\'' | ' ' | '\n')).collect();
            let placeholder = value.chars().all(|c| c.is_ascii_uppercase() || "*<>[]()_-.".contains(c));
            assert!(placeholder, "{stream} carries a sig= value ({value:?}):\n{text}");
        }
    }
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn cp_downloads_a_prefix_byte_exact_with_md5_verified() {
    let Some(az) = azurite() else { return };
    let c = Container::create(az, "e2e-prefix").await;
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("big.bin", pattern(BIG_BLOB, 1)),
        ("a.txt", b"alpha\n".to_vec()),
        ("sp ace #1 ü.txt", pattern(70_001, 2)),
        ("nested/deep/c.json", br#"{"loss":0.25}"#.to_vec()),
        ("empty.txt", Vec::new()),
    ];
    for (rel, data) in &files {
        c.put(&format!("job/out/{rel}"), data).await;
    }
    c.put("job/outside.txt", b"not under the prefix").await;
    c.put("job/out-sibling/x.txt", b"not under the prefix either").await;

    let sas = service_sas(&c.name, None, "rl");
    let dest = tempfile::tempdir().expect("tempdir");
    let url = format!("{}/job/out?{sas}", c.url());
    let out = jobdl(az, &["cp", &url, dest.path().to_str().unwrap(), "--json", "-v"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_no_secret(&out, &sas);

    // Byte-exact files, nothing else but `.jobdl/`, and no part or state file left.
    for (rel, data) in &files {
        let got = std::fs::read(dest.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(got == *data, "{rel}: content differs ({} vs {} bytes)", got.len(), data.len());
    }
    let on_disk = tree(dest.path());
    let payload: BTreeSet<String> = on_disk.iter().filter(|p| !p.starts_with(".jobdl/")).cloned().collect();
    let want: BTreeSet<String> = files.iter().map(|(rel, _)| rel.to_string()).collect();
    assert_eq!(payload, want);
    assert!(!on_disk.iter().any(|p| p.ends_with(".jobdl-part") || p.ends_with(".jobdl-state")), "{on_disk:?}");

    // The --json document: exactly one JSON value on stdout.
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", describe(&out)));
    assert_eq!(doc["version"], 1);
    assert!(doc["job"].is_null(), "{doc}");
    let entries = doc["files"].as_array().expect("files array");
    assert_eq!(entries.len(), files.len(), "{doc}");
    for (rel, data) in &files {
        let e = entries.iter().find(|e| e["path"] == *rel).unwrap_or_else(|| panic!("{rel} missing from {doc}"));
        assert_eq!(e["result"], "downloaded", "{e}");
        assert_eq!(e["md5"], "verified", "{e}");
        assert_eq!(e["bytes"], data.len() as u64, "{e}");
    }
    let total: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(doc["totals"]["files"], files.len());
    assert_eq!(doc["totals"]["downloaded"], files.len());
    assert_eq!(doc["totals"]["failed"], 0);
    assert_eq!(doc["totals"]["bytes"], total);
    let destination = doc["destination"].as_str().expect("destination");
    assert_eq!(Path::new(destination).canonicalize().unwrap(), dest.path().canonicalize().unwrap());
}

#[tokio::test]
async fn cp_downloads_one_blob_with_a_blob_sas() {
    let Some(az) = azurite() else { return };
    let c = Container::create(az, "e2e-single").await;
    let data = pattern(123_457, 3);
    c.put("models/run 7/model.safetensors", &data).await;
    c.put("models/run 7/other.txt", b"not requested").await;

    let sas = service_sas(&c.name, Some("models/run 7/model.safetensors"), "r");
    let dest = tempfile::tempdir().expect("tempdir");
    let url = c.blob_url("models/run 7/model.safetensors", &sas);
    let out = jobdl(az, &["cp", &url, dest.path().to_str().unwrap(), "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_no_secret(&out, &sas);
    assert_eq!(std::fs::read(dest.path().join("model.safetensors")).unwrap(), data);
    let on_disk = tree(dest.path());
    let payload: Vec<&String> = on_disk.iter().filter(|p| !p.starts_with(".jobdl/")).collect();
    assert_eq!(payload, ["model.safetensors"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", describe(&out)));
    assert_eq!(doc["version"], 1);
    assert!(doc["job"].is_null());
    let entries = doc["files"].as_array().expect("files");
    assert_eq!(entries.len(), 1, "{doc}");
    assert_eq!(entries[0]["path"], "model.safetensors");
    assert_eq!(entries[0]["result"], "downloaded");
    assert_eq!(entries[0]["md5"], "verified");
}

#[tokio::test]
async fn cp_of_a_prefix_matching_nothing_exits_4() {
    let Some(az) = azurite() else { return };
    let c = Container::create(az, "e2e-nothing").await;
    c.put("job/out/a.txt", b"a").await;
    let sas = service_sas(&c.name, None, "rl");
    let dest = tempfile::tempdir().expect("tempdir");
    let target = dest.path().join("dl");

    for prefix in ["job/nothing-here", "job/nothing-here/", "job/out/a"] {
        let url = format!("{}/{prefix}?{sas}", c.url());
        let out = jobdl(az, &["cp", &url, target.to_str().unwrap()]).await;
        assert_eq!(out.status.code(), Some(4), "{prefix}: {}", describe(&out));
        assert_no_secret(&out, &sas);
    }
    let url = format!("{}/job/nothing-here?{sas}", c.url());
    let out = jobdl(az, &["cp", &url, target.to_str().unwrap(), "--json"]).await;
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert_no_secret(&out, &sas);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", describe(&out)));
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["error"]["code"], "not_found", "{doc}");
    assert_eq!(doc["error"]["exit_code"], 4, "{doc}");
    // Nothing was downloaded.
    let payload: Vec<String> = if target.exists() {
        tree(&target).into_iter().filter(|p| !p.starts_with(".jobdl/")).collect()
    } else {
        vec![]
    };
    assert!(payload.is_empty(), "{payload:?}");
}

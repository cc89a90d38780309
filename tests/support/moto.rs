//! A real S3 server for the tests: moto 5.2.5 (`moto[server]`, pinned in
//! `.ci/s3/requirements.txt`) with signature checking on, so a wrong secret really fails.
//!
//! Each [`Moto`] is its own `moto_server -H 127.0.0.1 -p <free port>` with
//! `INITIAL_NO_AUTH_ACTION_COUNT=3` (kfp-s3-api.md §8), stopped by PID when dropped. Seeding is
//! jobdl-independent: `tests/s3/seed.py` (boto3, in moto's venv) spends the three unauthenticated
//! requests on an IAM user, its policy and an access key, then uploads with that key. moto is found
//! through `JOBDL_MOTO_SERVER` (set by `.ci/run`) or at `.ci/s3/venv/bin/moto_server`; without it
//! the tests skip with a notice, except under `CI=true`, where they fail.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `moto_server`, if installed.
pub fn moto_bin() -> Option<PathBuf> {
    let path = match std::env::var_os("JOBDL_MOTO_SERVER").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/s3/venv/bin/moto_server"),
    };
    path.is_file().then_some(path)
}

/// A running moto server, killed and reaped by PID when dropped.
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    python: PathBuf,
    log: tempfile::NamedTempFile,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One object to upload: bucket, key, bytes, and the multipart part size (`None`: one PUT).
pub struct Obj<'a> {
    pub bucket: &'a str,
    pub key: String,
    pub data: &'a [u8],
    pub part_size: Option<usize>,
}

/// What seeding made.
pub struct Seeded {
    pub access_key: String,
    pub secret_key: String,
    /// `bucket/key` → ETag as moto stored it.
    pub etags: BTreeMap<String, String>,
}

impl Seeded {
    /// The environment that gives jobdl this key.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("AWS_ACCESS_KEY_ID", self.access_key.clone()), ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone())]
    }
}

impl Moto {
    /// Start moto with signature checking; `None` (after a notice) when it is not installed and
    /// this is not CI.
    pub fn start() -> Option<Moto> {
        let Some(bin) = moto_bin() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "moto_server is required under CI=true but was not found (JOBDL_MOTO_SERVER or \
                     .ci/s3/venv/bin/moto_server); install it with `bash .ci/run` or \
                     `python3 -m venv .ci/s3/venv && .ci/s3/venv/bin/pip install -r .ci/s3/requirements.txt`"
                );
            }
            eprintln!("moto_server not installed (JOBDL_MOTO_SERVER); skipping this S3 test");
            return None;
        };
        let python = bin.with_file_name("python");
        assert!(python.is_file(), "no python beside {} (expected a venv)", bin.display());
        let mut last = String::new();
        // A free port can be taken between probing and moto binding it: try a few.
        for _ in 0..3 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
            let log = tempfile::NamedTempFile::new().unwrap();
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
                .stdin(Stdio::null())
                .stdout(log.reopen().unwrap())
                .stderr(log.reopen().unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut moto = Moto { child, port, python: python.clone(), log };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = moto.child.try_wait() {
                    last = format!(
                        "moto_server exited with {status}: {}",
                        std::fs::read_to_string(moto.log.path()).unwrap_or_default()
                    );
                    break;
                }
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Some(moto);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if last.is_empty() {
                last = "moto_server did not accept connections within 60 s".into();
            }
        }
        panic!("{last}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create `buckets` and upload `objects` with boto3 (files staged in `dir`); checks moto holds
    /// every key as given (it keeps hostile keys as they are, §8).
    pub fn seed(&self, dir: &Path, buckets: &[&str], objects: &[Obj<'_>]) -> Seeded {
        std::fs::create_dir_all(dir).unwrap();
        let mut spec = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            let file = dir.join(format!("obj{i}"));
            std::fs::write(&file, o.data).unwrap();
            spec.push(json!({"bucket": o.bucket, "key": o.key, "file": file, "part_size": o.part_size}));
        }
        let spec = json!({"endpoint": self.endpoint(), "region": "us-east-1", "buckets": buckets, "objects": spec});
        let v = self.run_seed(&spec);
        for o in objects {
            let listed = v["listed"][o.bucket].as_array().unwrap();
            assert!(listed.iter().any(|k| k.as_str() == Some(o.key.as_str())), "moto does not hold {:?}", o.key);
        }
        Seeded {
            access_key: v["access_key"].as_str().unwrap().to_string(),
            secret_key: v["secret_key"].as_str().unwrap().to_string(),
            etags: v["etags"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, e)| (k.clone(), e.as_str().unwrap().into()))
                .collect(),
        }
    }
}

impl Moto {
    /// Run `tests/s3/seed.py` on `spec` (see its docstring); its JSON answer (the access key and
    /// secret, the ETags moto stored, the keys listed back per bucket).
    pub fn run_seed(&self, spec: &Value) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/seed.py");
        let mut child = Command::new(&self.python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(spec.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "seeding failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// Deterministic, non-repeating test bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

//! KFP v1 `:read` archives at the library level (archive tasks of `jobdl::transfer::run`, with the
//! KFP body decoder `jobdl::provider::kfp::read::ReadBody`), against a loopback server
//! (`tests/support/kfp_read.rs`) serving `{"data":"<base64 .tgz>"}` chunked: a whole body, one cut
//! mid-body then whole (fetched again from zero), always short, bad base64, a tar-slip entry, 404,
//! 503 then whole, 403, a stalled body cancelled; and the memory a 64 MiB archive takes to unpack.
use crate::support::kfp_read;

use base64::Engine;
use jobdl::provider::kfp::read::ReadBody;
use jobdl::retry::RetryConfig;
use jobdl::transfer::unpack::{Target, unpack};
use jobdl::transfer::{ArchiveTask, Decoder, FileOutcome, FileResult, Limits, Reporter, RunOutcome, Task};
use kfp_read::{Artifact, KfpRead, Mode, TOKEN};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const DIR: &str = "named-outputs/train/main-logs";

/// Tracks, for the threads that ask, the most heap memory live at once (the memory test).
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static ON: Cell<bool> = const { Cell::new(false) };
        static LIVE: Cell<i64> = const { Cell::new(0) };
        static PEAK: Cell<i64> = const { Cell::new(0) };
    }

    fn note(delta: i64) {
        let _ = ON.try_with(|on| {
            if on.get() {
                let live = LIVE.get() + delta;
                LIVE.set(live);
                PEAK.set(PEAK.get().max(live));
            }
        });
    }

    // SAFETY: every call is forwarded to the system allocator unchanged; only counts are kept.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            // SAFETY: forwarded as is.
            let p = unsafe { System.alloc(l) };
            if !p.is_null() {
                note(l.size() as i64);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            // SAFETY: forwarded as is.
            let p = unsafe { System.alloc_zeroed(l) };
            if !p.is_null() {
                note(l.size() as i64);
            }
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            // SAFETY: forwarded as is.
            unsafe { System.dealloc(p, l) };
            note(-(l.size() as i64));
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            // SAFETY: forwarded as is.
            let q = unsafe { System.realloc(p, l, new) };
            if !q.is_null() {
                note(new as i64 - l.size() as i64);
            }
            q
        }
    }

    /// Run `f` on this thread and return its result and the peak of heap bytes it held at once.
    pub fn peak<T>(f: impl FnOnce() -> T) -> (T, i64) {
        LIVE.set(0);
        PEAK.set(0);
        ON.set(true);
        let r = f();
        ON.set(false);
        (r, PEAK.get())
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// A tar entry with a raw name (so hostile names can be built).
fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    h
}

fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    b.append(&header("logs/", tar::EntryType::Directory, 0), std::io::empty()).unwrap();
    for (name, data) in files {
        b.append(&header(name, tar::EntryType::Regular, data.len() as u64), *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn envelope(bytes: &[u8]) -> Vec<u8> {
    format!("{{\"data\":\"{}\"}}", base64::engine::general_purpose::STANDARD.encode(bytes)).into_bytes()
}

/// Three files, one of them big enough to span many HTTP chunks.
fn good_body() -> Vec<u8> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    envelope(&tgz(&[("main.log", b"step 1\nstep 2\n"), ("logs/metrics.json", b"{\"acc\":0.9}"), ("big.bin", &big)]))
}

struct Env {
    _t: tempfile::TempDir,
    root: PathBuf,
}

fn env() -> Env {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("dest");
    std::fs::create_dir(&root).unwrap();
    Env { _t: t, root }
}

fn task(server: &KfpRead, name: &str, root: &Path) -> ArchiveTask {
    ArchiveTask {
        display: DIR.into(),
        dir: root.join(DIR),
        url: server.url(name),
        headers: vec![
            ("accept".into(), "application/json".into()),
            ("authorization".into(), format!("Bearer {TOKEN}")),
        ],
        decoder: Decoder(Arc::new(ReadBody)),
        entries: None,
        limits: Limits::default(),
    }
}

/// A reporter that shows nothing.
struct Silent;

impl Reporter for Silent {
    fn plan(&self, _: usize, _: u64) {}
    fn file_started(&self, _: &str, _: Option<u64>) {}
    fn bytes(&self, _: &str, _: u64) {}
    fn bytes_discarded(&self, _: u64) {}
    fn retry(&self, _: &str, _: u32, _: &str) {}
    fn file_done(&self, _: &FileOutcome) {}
}

/// Runs archive tasks through the engine into one destination.
#[derive(Clone)]
struct Fetcher {
    client: reqwest::Client,
    cfg: jobdl::transfer::TransferConfig,
    root: jobdl::fs::Dir,
    cancel: CancellationToken,
}

impl Fetcher {
    async fn run(&self, tasks: Vec<ArchiveTask>) -> RunOutcome {
        let tasks = tasks.into_iter().map(Task::Archive).collect();
        jobdl::transfer::run(&self.client, &self.cfg, &self.root, tasks, Arc::new(Silent), self.cancel.clone()).await
    }

    async fn fetch(&self, task: &ArchiveTask) -> RunOutcome {
        self.run(vec![task.clone()]).await
    }
}

fn fetcher(root: &Path, attempts: u32, cancel: CancellationToken) -> Fetcher {
    let client = jobdl::http::build_client(Duration::from_secs(60)).unwrap();
    let retry = RetryConfig {
        attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        retry_after_cap: Duration::from_millis(5),
    };
    let cfg = jobdl::transfer::TransferConfig { retry, ..Default::default() };
    Fetcher { client, cfg, root: jobdl::fs::Dir::open_root(root).expect("open the destination"), cancel }
}

/// Every file under `root`, relative and sorted (working files included).
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn landed() -> Vec<String> {
    ["big.bin", "logs/metrics.json", "main.log"].iter().map(|f| format!("{DIR}/{f}")).collect()
}

fn failure(files: &[FileOutcome]) -> String {
    assert_eq!(files.len(), 1, "{files:#?}");
    assert_eq!(files[0].display, DIR);
    match &files[0].result {
        FileResult::Failed(e) => e.clone(),
        r => panic!("expected a failure, got {r:?}"),
    }
}

#[tokio::test]
async fn a_whole_body_lands() {
    let server = KfpRead::start(vec![("main-logs", Artifact { body: good_body(), mode: Mode::Ok })]);
    let e = env();
    let out = fetcher(&e.root, 3, CancellationToken::new()).run(vec![task(&server, "main-logs", &e.root)]).await;
    assert!(!out.interrupted);
    let shown: Vec<_> = out.files.iter().map(|f| f.display.clone()).collect();
    assert_eq!(shown, landed());
    assert!(out.files.iter().all(|f| f.result == FileResult::Downloaded), "{:#?}", out.files);
    assert_eq!(out.files[0].bytes, 300_000);
    assert_eq!(files_under(&e.root), landed());
    assert_eq!(std::fs::read(e.root.join(DIR).join("main.log")).unwrap(), b"step 1\nstep 2\n");
    assert_eq!(server.hits("main-logs"), 1);
}

#[tokio::test]
async fn a_body_cut_once_is_fetched_again_from_zero() {
    let body = good_body();
    let at = body.len() / 2;
    let server =
        KfpRead::start(vec![("main-logs", Artifact { body: body.clone(), mode: Mode::CutFirst { at, times: 1 } })]);
    let e = env();
    let out = fetcher(&e.root, 3, CancellationToken::new()).fetch(&task(&server, "main-logs", &e.root)).await;
    assert!(out.files.iter().all(|f| f.result == FileResult::Downloaded), "{:#?}", out.files);
    assert_eq!(files_under(&e.root), landed());
    assert_eq!(server.hits("main-logs"), 2);
    // The second request sent the whole body again (from zero, no range).
    assert!(server.sent("main-logs") >= at + body.len() - 1000, "{}", server.sent("main-logs"));
}

#[tokio::test]
async fn a_body_always_short_fails_and_leaves_nothing() {
    let body = good_body();
    let server = KfpRead::start(vec![(
        "main-logs",
        Artifact { body: body.clone(), mode: Mode::AlwaysShort { at: body.len() - 2 } },
    )]);
    let e = env();
    let out = fetcher(&e.root, 3, CancellationToken::new()).fetch(&task(&server, "main-logs", &e.root)).await;
    assert!(!out.interrupted);
    let why = failure(&out.files);
    assert!(why.contains("ended early") && why.contains("after 3 attempts"), "{why}");
    assert_eq!(server.hits("main-logs"), 3);
    assert_eq!(files_under(&e.root), Vec::<String>::new(), "no final name and no part file");
    assert!(!e.root.join(DIR).exists());
}

#[tokio::test]
async fn bad_base64_fails() {
    let mut body = good_body();
    let mid = body.len() / 2;
    body[mid] = b'%';
    let server = KfpRead::start(vec![("main-logs", Artifact { body, mode: Mode::Ok })]);
    let e = env();
    let out = fetcher(&e.root, 2, CancellationToken::new()).fetch(&task(&server, "main-logs", &e.root)).await;
    let why = failure(&out.files);
    assert!(why.contains("invalid base64"), "{why}");
    assert_eq!(server.hits("main-logs"), 2);
    assert_eq!(files_under(&e.root), Vec::<String>::new());
}

#[tokio::test]
async fn a_tar_slip_entry_fails_alone() {
    let body = envelope(&tgz(&[("ok.txt", b"fine"), ("../../../evil", b"x"), ("logs/b.txt", b"b")]));
    let server = KfpRead::start(vec![("main-logs", Artifact { body, mode: Mode::Ok })]);
    let e = env();
    let out = fetcher(&e.root, 3, CancellationToken::new()).fetch(&task(&server, "main-logs", &e.root)).await;
    let by: Vec<_> =
        out.files.iter().map(|f| (f.display.as_str(), matches!(f.result, FileResult::Failed(_)))).collect();
    let (evil, b, ok) = (format!("{DIR}/../../../evil"), format!("{DIR}/logs/b.txt"), format!("{DIR}/ok.txt"));
    assert_eq!(by, [(evil.as_str(), true), (b.as_str(), false), (ok.as_str(), false)]);
    assert_eq!(files_under(e.root.parent().unwrap()), [format!("dest/{DIR}/logs/b.txt"), format!("dest/{DIR}/ok.txt")]);
}

#[tokio::test]
async fn statuses_before_the_body() {
    let body = good_body();
    let server = KfpRead::start(vec![
        ("busy", Artifact { body: body.clone(), mode: Mode::Status { status: 503, times: 2 } }),
        ("denied", Artifact { body: body.clone(), mode: Mode::Status { status: 403, times: usize::MAX } }),
    ]);
    let e = env();
    let f = fetcher(&e.root, 5, CancellationToken::new());
    // 404: not retried, the server's message shown.
    let out = f.fetch(&task(&server, "missing", &e.root)).await;
    let why = failure(&out.files);
    assert!(why.starts_with("HTTP 404: artifact missing not found"), "{why}");
    assert_eq!(server.hits("missing"), 1);
    // 403: not retried.
    let out = f.fetch(&task(&server, "denied", &e.root)).await;
    assert!(failure(&out.files).starts_with("HTTP 403"));
    assert_eq!(server.hits("denied"), 1);
    // 503 twice (Retry-After: 0), then the body.
    let out = f.fetch(&task(&server, "busy", &e.root)).await;
    assert_eq!(out.files.len(), 3, "{:#?}", out.files);
    assert_eq!(server.hits("busy"), 3);
    // Without the token: 401, and no token in any message.
    let mut t = task(&server, "busy", &e.root);
    t.headers.clear();
    let out = f.fetch(&t).await;
    assert!(failure(&out.files).starts_with("HTTP 401"));
    assert!(!format!("{out:?}").contains(TOKEN));
}

#[tokio::test]
async fn ctrl_c_mid_body_returns_and_removes_part_files() {
    let body = good_body();
    let server = KfpRead::start(vec![(
        "main-logs",
        Artifact { body: body.clone(), mode: Mode::Stall { at: body.len() - 100 } },
    )]);
    let e = env();
    let cancel = CancellationToken::new();
    let f = fetcher(&e.root, 3, cancel.clone());
    let t = task(&server, "main-logs", &e.root);
    let run = tokio::spawn(async move { f.fetch(&t).await });
    // Wait until the body stalled with most of it delivered (a part file is being written).
    while server.sent("main-logs") < body.len() - 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    let out = run.await.unwrap();
    assert!(out.interrupted);
    assert!(out.files.is_empty(), "{:#?}", out.files);
    assert_eq!(files_under(&e.root), Vec::<String>::new(), "part files are removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_below_the_minimum_rate_is_abandoned_and_retried() {
    let body = good_body();
    let server = KfpRead::start(vec![("main-logs", Artifact { body: body.clone(), mode: Mode::Stall { at: 100 } })]);
    let e = env();
    let mut f = fetcher(&e.root, 2, CancellationToken::new());
    f.cfg.min_rate = jobdl::transfer::rate::MinRate { bytes_per_sec: 1024, window: Duration::from_millis(300) };
    let out = f.fetch(&task(&server, "main-logs", &e.root)).await;
    assert!(!out.interrupted);
    assert_eq!(out.files.len(), 1, "{:#?}", out.files);
    let FileResult::Failed(why) = &out.files[0].result else { panic!("{:#?}", out.files) };
    assert!(why.contains("too slow") && why.contains("min_speed") && why.contains("after 2 attempts"), "{why}");
    assert_eq!(server.hits("main-logs"), 2);
    assert_eq!(files_under(&e.root), Vec::<String>::new(), "part files are removed");
}

/// A 64 MiB archive unpacks holding a few hundred KiB of heap: nothing scales with its size.
#[test]
fn memory_does_not_grow_with_the_archive() {
    const SIZE: usize = 64 << 20;
    // Built beforehand, streamed into the gzip encoder (the content repeats, so the body is small).
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let piece: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    for n in 0..4 {
        let name = format!("shard-{n}.bin");
        let mut h = header(&name, tar::EntryType::Regular, (SIZE / 4) as u64);
        h.set_cksum();
        let reader = std::io::Read::take(Cycle { piece: &piece, at: 0 }, (SIZE / 4) as u64);
        b.append(&h, reader).unwrap();
    }
    let mut gz = b.into_inner().unwrap();
    gz.flush().unwrap();
    let body = envelope(&gz.finish().unwrap());
    // The counter sees what this thread holds.
    let (held, sane) = counting::peak(|| vec![1u8; 8 << 20]);
    assert!(sane >= 8 << 20 && held.len() == 8 << 20, "{sane}");
    drop(held);
    let e = env();
    let root = jobdl::fs::Dir::open_root(&e.root).expect("open the destination");
    let target = Target { root, dir: e.root.join(DIR), display: DIR.into(), entries: None };
    let cancel = CancellationToken::new();
    let (files, peak) =
        counting::peak(|| unpack(std::io::Cursor::new(&body), &ReadBody, &target, Limits::default(), &|_| {}, &cancel));
    let files = files.unwrap().files;
    assert_eq!(files.len(), 4);
    assert_eq!(files.iter().map(|f| f.bytes).sum::<u64>(), SIZE as u64);
    for f in &files {
        assert_eq!(std::fs::metadata(e.root.join(&f.display)).unwrap().len(), (SIZE / 4) as u64);
    }
    eprintln!("unpacking {SIZE} bytes held at most {peak} bytes of heap");
    assert!(peak < 4 << 20, "unpacking a {SIZE}-byte archive held {peak} bytes of heap at once");
}

/// `piece` over and over (a cheap endless reader).
struct Cycle<'a> {
    piece: &'a [u8],
    at: usize,
}

impl std::io::Read for Cycle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at = (self.at + n) % self.piece.len();
        Ok(n)
    }
}

//! The transfer engine: moves bytes from URLs to files through one bounded pool of connections,
//! with retries, ranged chunks, part files, verification and atomic publication. A task's sink is
//! a file, or an archive whose entries are unpacked into files (`archive.rs`, `unpack.rs`); both
//! share the pool, the retry policy, cancellation and the reporter.
//! Provider-blind: it knows HTTP ranges and files, never Azure, never the terminal UI; what
//! wraps an archive in a response body is the task's [`BodyDecoder`], supplied by the plan.
pub mod adapt;
mod archive;
mod attempt;
mod check;
mod chunked;
mod fetch;
mod gate;
mod hasher;
mod pace;
mod publish;
pub mod rate;
mod resume;
mod source;
mod stream;
pub mod unpack;
mod verify;
mod writer;

use crate::retry::RetryConfig;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use archive::ArchiveTask;
pub use check::{CheckKind, Expected, check_of_file};
pub use fetch::{HeadInfo, head};
pub use unpack::Limits;
pub use verify::{Md5Status, md5_of_file};

/// Where a file's bytes are, kept compactly: a base URL shared by every file of a listing (one
/// copy of a long signed query for a million files) and this file's own path tail, already
/// percent-encoded, appended to the base's path when the file is fetched.
#[derive(Clone)]
pub struct SourceUrl {
    base: Arc<url::Url>,
    tail: Box<str>,
}

impl SourceUrl {
    /// A file under `base`: `tail` (percent-encoded, starting with `/`) is appended to its path;
    /// the query is the base's.
    pub fn joined(base: Arc<url::Url>, tail: impl Into<Box<str>>) -> Self {
        SourceUrl { base, tail: tail.into() }
    }

    /// The full URL.
    pub fn url(&self) -> url::Url {
        let mut u = (*self.base).clone();
        if !self.tail.is_empty() {
            let path = format!("{}{}", u.path(), self.tail);
            u.set_path(&path);
        }
        u
    }
}

impl From<url::Url> for SourceUrl {
    fn from(url: url::Url) -> Self {
        SourceUrl { base: Arc::new(url), tail: Box::from("") }
    }
}

impl std::fmt::Debug for SourceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::redact::url_for_display(&self.url()))
    }
}

/// One file to fetch.
#[derive(Debug, Clone)]
pub struct FileTask {
    /// Relative path shown to the user and in `--json` (e.g. `artifacts/user_logs/std_log.txt`).
    pub display: String,
    /// Final absolute path (already proven inside the destination).
    pub dest: PathBuf,
    /// Source URL (a SAS URL carries its own authorisation), built when the file is fetched.
    pub url: SourceUrl,
    /// Opaque extra request headers (never printed).
    pub headers: Vec<(String, String)>,
    /// Expected size from the listing, when known.
    pub size: Option<u64>,
    /// Expected MD5 from the listing, when known.
    pub md5: Option<[u8; 16]>,
    /// Another whole-object check from the listing (multipart ETag, stored CRC or SHA-256),
    /// computed while the bytes land; a mismatch fails the file like an MD5 mismatch.
    pub check: Option<Expected>,
    /// The object's ETag as listed, when known. Used when planning reruns (the manifest); the
    /// engine pins the ETag of the response it gets instead.
    pub etag: Option<String>,
    /// Which response headers carry the server's checksum and error code.
    pub hints: ServerHints,
    /// How to get a fresh URL once when the signed URL is refused (403, e.g. an expired SAS).
    pub refresh: Option<Refresher>,
    /// Per-request authorisation headers (a signature that carries the request time).
    pub sign: Option<SignHook>,
}

/// One task of a run: where its bytes go.
#[derive(Debug, Clone)]
pub enum Task {
    /// One file.
    File(FileTask),
    /// An archive whose entries become files.
    Archive(ArchiveTask),
}

impl Task {
    /// Bytes expected, when known (an archive's are not).
    pub fn size(&self) -> Option<u64> {
        match self {
            Task::File(t) => t.size,
            Task::Archive(_) => None,
        }
    }
}

impl From<FileTask> for Task {
    fn from(t: FileTask) -> Self {
        Task::File(t)
    }
}

/// Turns a response body into the archive (gzip'd tar) it carries, and reads the service's error
/// bodies: the service's wire shape, supplied with each archive task by the plan.
pub trait BodyDecoder: Send + Sync {
    /// The archive's bytes, read from `body` as a stream. The stream ends only when the body
    /// ended as the wire shape says it must; anything else is an error naming what is wrong.
    fn decode<'a>(&self, body: Box<dyn std::io::Read + 'a>) -> Box<dyn std::io::Read + 'a>;
    /// The message an error response's body carries, when it has one (printable, redacted).
    fn error_message(&self, body: &[u8]) -> Option<String>;
}

/// A shared [`BodyDecoder`].
#[derive(Clone)]
pub struct Decoder(pub Arc<dyn BodyDecoder>);

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

/// Which entries of an archive are extracted, by their path in the archive (`--include` /
/// `--exclude`, as the plan applies them).
#[derive(Clone)]
pub struct EntryFilter(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for EntryFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntryFilter")
    }
}

/// Signs each data request just before it is sent (headers that depend on the method, the URL
/// and the current time). Its headers are secret: never printed.
pub trait RequestSigner: Send + Sync {
    /// Headers authorising a `method` request of `url`, sent besides the task's own headers.
    fn headers(&self, method: &str, url: &url::Url) -> Vec<(String, String)>;
}

/// A shared [`RequestSigner`].
#[derive(Clone)]
pub struct SignHook(pub Arc<dyn RequestSigner>);

impl std::fmt::Debug for SignHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignHook")
    }
}

/// Gets a fresh URL for a file whose signed URL was refused.
pub trait UrlRefresher: Send + Sync {
    /// A new URL, or `None` when none can be had.
    fn refresh(&self) -> futures_util::future::BoxFuture<'_, Option<url::Url>>;
}

/// A shared [`UrlRefresher`].
#[derive(Clone)]
pub struct Refresher(pub Arc<dyn UrlRefresher>);

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refresher")
    }
}

/// Response headers that a storage service uses beyond plain HTTP (set by the provider).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHints {
    /// Header carrying the whole-object MD5 (base64) on a 206 (`Content-MD5` is used on a 200).
    pub partial_md5_header: Option<String>,
    /// Header carrying the service's error code, shown with a failed status.
    pub error_code_header: Option<String>,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileResult {
    /// Fetched, verified and published under its final name.
    Downloaded,
    /// Kept: the local file already matched.
    Skipped,
    /// Failed, with a user-facing (redacted) reason.
    Failed(String),
}

/// The outcome of one file, for the summary and `--json`.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    /// Relative display path.
    pub display: String,
    /// Bytes of the file (downloaded or kept).
    pub bytes: u64,
    /// The result.
    pub result: FileResult,
    /// The MD5 verdict.
    pub md5: Md5Status,
    /// The task's other check, when it ran and matched (never set for a check that did not run).
    pub checked: Option<CheckKind>,
}

impl FileOutcome {
    /// A failure of `display`, its reason redacted.
    pub fn failed(display: &str, why: &str) -> FileOutcome {
        FileOutcome {
            display: display.to_string(),
            bytes: 0,
            result: FileResult::Failed(crate::redact::redact(why)),
            md5: Md5Status::Absent,
            checked: None,
        }
    }
}

/// The most connections a run may open (also the largest `--parallel`): far from the data, small
/// files need about throughput × round trip ÷ file size requests in flight (2,000 × 64 KiB at
/// 100 ms: ~100), and each connection costs a socket and a little memory.
pub const MAX_CONNECTIONS: usize = 256;

/// What the engine verified about a file it published (what a manifest records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Relative display path.
    pub display: String,
    /// Bytes of the published file.
    pub size: u64,
    /// MD5 of the bytes on disk: the listing's or server's when it matched, else the one computed
    /// while a single stream landed (none for a chunked file without a stored MD5).
    pub md5: Option<[u8; 16]>,
    /// Whether `md5` was checked against an MD5 the service stored.
    pub md5_verified: bool,
    /// The task's other check, when it ran and matched.
    pub check: Option<Expected>,
    /// The object's ETag as the server sent it.
    pub etag: Option<String>,
    /// Modification time of the published file (nanoseconds since the epoch), when known.
    pub mtime_ns: Option<u64>,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Connections in flight at the start (files and chunks share this budget).
    pub parallel: usize,
    /// The most connections the budget may climb to while more connections bring more
    /// throughput (see [`adapt`]); equal to `parallel` when the user fixed `--parallel`.
    pub max_parallel: usize,
    /// Data-request retry policy.
    pub retry: RetryConfig,
    /// Files larger than this are fetched as parallel ranged chunks.
    pub chunk_threshold: u64,
    /// Size of one ranged chunk.
    pub chunk_size: u64,
    /// The minimum rate of a body before an attempt is abandoned and retried.
    pub min_rate: rate::MinRate,
    /// The most bytes per second of all bodies together (`--max-rate`; `None`: no cap).
    pub max_rate: Option<u64>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        // 8 MiB chunks above 32 MiB: azcopy's chunk size and the Blob guidance (§4.6); the
        // benchmark kit's speed-limit downloader reaches this machine's disk limit with 8 × 8 MiB.
        TransferConfig {
            parallel: 8,
            max_parallel: MAX_CONNECTIONS,
            retry: RetryConfig::default(),
            chunk_threshold: 32 << 20,
            chunk_size: 8 << 20,
            min_rate: rate::MinRate::default(),
            max_rate: None,
        }
    }
}

/// Progress callbacks; the engine's only way to talk to the user interface.
pub trait Reporter: Send + Sync {
    /// The run is about to start.
    fn plan(&self, files: usize, bytes: u64);
    /// A file started (size when known).
    fn file_started(&self, display: &str, size: Option<u64>);
    /// Bytes of a file arrived.
    fn bytes(&self, display: &str, n: u64);
    /// Bytes counted earlier were discarded (restart of a file).
    fn bytes_discarded(&self, n: u64);
    /// A request is being retried.
    fn retry(&self, display: &str, attempt: u32, reason: &str);
    /// A file finished.
    fn file_done(&self, outcome: &FileOutcome);
}

/// The result of a whole transfer run.
#[derive(Debug)]
pub struct RunOutcome {
    /// One entry per task that finished (sorted by display path).
    pub files: Vec<FileOutcome>,
    /// Whether the run was cancelled before every task finished.
    pub interrupted: bool,
    /// What was verified about each published file (sorted by display path).
    pub verified: Vec<Verified>,
}

/// Shared state of one run.
pub(crate) struct Ctx {
    pub client: reqwest::Client,
    pub cfg: TransferConfig,
    pub budget: Arc<adapt::Budget>,
    pub reporter: Arc<dyn Reporter>,
    pub cancel: CancellationToken,
    pub publisher: publish::Publisher,
    /// The destination, held open: every file is reached from it without following links.
    pub root: crate::fs::Dir,
    /// The bandwidth cap shared by every connection, when set.
    pub pace: Option<pace::Pace>,
}

/// The order files start in: biggest first (unknown sizes count as biggest), ties in the given
/// order. A big file's MD5 is sequential, so it bounds the run when it starts last: W3 (a 1 GiB
/// model listed after 500 logs and 20 shards) lets the model's hash run beside everything else
/// instead of after it. The report is sorted by path, whatever the order here.
fn biggest_first<T>(items: &mut [T], size: impl Fn(&T) -> Option<u64>) {
    items.sort_by_key(|t| std::cmp::Reverse(size(t).unwrap_or(u64::MAX)));
}

/// Download every task into `root` (each file's `dest`, each archive's `dir` lies below it);
/// per-file failures are recorded, never fatal.
pub async fn run(
    client: &reqwest::Client,
    cfg: &TransferConfig,
    root: &crate::fs::Dir,
    mut tasks: Vec<Task>,
    reporter: Arc<dyn Reporter>,
    cancel: CancellationToken,
) -> RunOutcome {
    use futures_util::StreamExt;
    let budget = Arc::new(adapt::Budget::new(cfg.parallel, cfg.max_parallel));
    let governor = cancel.child_token();
    tokio::spawn(budget.clone().govern(cfg.parallel, governor.clone()));
    let _stop_governor = governor.drop_guard();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        cfg: cfg.clone(),
        budget: budget.clone(),
        reporter: reporter.clone(),
        cancel: cancel.clone(),
        publisher: publish::Publisher::start(),
        root: root.clone(),
        pace: cfg.max_rate.map(pace::Pace::new),
    });
    reporter.plan(tasks.len(), tasks.iter().filter_map(Task::size).sum());
    biggest_first(&mut tasks, Task::size);
    let dirs: BTreeSet<PathBuf> = tasks
        .iter()
        .filter_map(|t| match t {
            Task::File(f) => f.dest.parent().map(PathBuf::from),
            Task::Archive(_) => None, // an archive makes its own directories durable
        })
        .collect();
    // Tasks do not hold a connection themselves; each request takes one from the budget. The
    // budget also paces how many tasks are under way (`start_file`), in the plan's order.
    let results: Vec<Option<(Vec<FileOutcome>, Vec<Verified>)>> = futures_util::stream::iter(tasks)
        .map(|task| {
            let ctx = ctx.clone();
            async move {
                let _turn = tokio::select! {
                    biased;
                    _ = ctx.cancel.cancelled() => return None,
                    t = ctx.budget.start_file() => t,
                };
                match task {
                    Task::File(task) => {
                        let (outcome, verified) = tokio::select! {
                            o = fetch::download_file(&ctx, &task) => o,
                            _ = ctx.cancel.cancelled() => return None,
                        };
                        ctx.reporter.file_done(&outcome);
                        Some((vec![outcome], verified.into_iter().collect()))
                    }
                    // Not dropped on Ctrl+C: it returns once its part files are removed.
                    Task::Archive(task) => archive::fetch_archive(&ctx, &task).await,
                }
            }
        })
        .buffer_unordered(budget.ceiling() * 2)
        .collect()
        .await;
    let interrupted = results.iter().any(Option::is_none) || cancel.is_cancelled();
    crate::log::log(2, format!("{} shared durability barriers", ctx.publisher.barriers()));
    // Each directory is made durable once, after its last rename.
    for d in &dirs {
        if let Err(e) = root.subdir(d).and_then(|d| d.sync()) {
            crate::log::log(2, format!("fsync {}: {e}", d.display()));
        }
    }
    let (mut files, mut verified): (Vec<FileOutcome>, Vec<Verified>) = (Vec::new(), Vec::new());
    for (f, v) in results.into_iter().flatten() {
        files.extend(f);
        verified.extend(v);
    }
    files.sort_by(|a, b| a.display.cmp(&b.display));
    verified.sort_by(|a, b| a.display.cmp(&b.display));
    RunOutcome { files, interrupted, verified }
}

#[cfg(test)]
mod tests {
    #[test]
    fn biggest_files_start_first_and_ties_keep_their_order() {
        let mut v = vec![("a", Some(1)), ("b", Some(9)), ("c", None), ("d", Some(1)), ("e", Some(0))];
        super::biggest_first(&mut v, |t| t.1);
        let names: Vec<&str> = v.iter().map(|t| t.0).collect();
        assert_eq!(names, ["c", "b", "a", "d", "e"]);
    }
}

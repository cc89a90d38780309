//! KFP v1 (Argo) `:read` artifacts: the KFP API streams `{"data":"<base64 of a .tgz>"}` with no
//! length, range or ETag, and an error after the `200` just cuts the body short. Each archive is
//! decoded as a stream — HTTP chunks → JSON envelope → base64 → gzip → tar — on a blocking thread
//! fed through a bounded channel, so memory stays bounded whatever the archive's size.
//!
//! Every regular-file entry is written to its part file (`.<name>.jobdl-part` beside its final
//! path) and fdatasync'd; only once the WHOLE archive decoded (closing `"}` present, gzip CRC and
//! length checked, tar end-of-archive reached) are the part files renamed to their final names
//! and each directory fsync'd once. A body that breaks or does not decode is a failed transfer:
//! its part files (and the directories it created) are removed and it is fetched again from zero,
//! with the data retry policy. Entries whose names fail the path rules, links, devices and FIFOs
//! are refused one by one (failed entries); the rest still lands.
use crate::fs;
use crate::plan::{ArchiveTask, printable};
use crate::retry::{RetryConfig, status_is_retryable};
use crate::safepath::{collision_key, safe_relative_path};
use crate::transfer::{FileOutcome, FileResult, Md5Status, Reporter};
use base64::Engine;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// HTTP body chunks queued between the network and the decoder (hyper hands over at most a few
/// hundred KiB per chunk, so the queue holds a few MiB at worst).
const QUEUE: usize = 8;
/// Bytes of the body read by the envelope parser at once.
const IN_BUF: usize = 64 << 10;
/// Bytes of an entry copied to its part file at once.
const COPY_BUF: usize = 128 << 10;
/// Most bytes of an error body read.
const MAX_ERROR_BODY: usize = 64 << 10;

/// Why unpacking one attempt of an archive stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnpackError {
    /// The body broke or did not decode (cut short, bad JSON envelope, bad base64, bad gzip, short
    /// tar): fetch it again from zero.
    #[error("{0}")]
    Broken(String),
    /// The local disk refused (cannot create or write a file): fetching again will not help.
    #[error("{0}")]
    Disk(String),
    /// A ceiling on decoded bytes was reached (a decompression bomb, or a limit set too low):
    /// fetching again will not help.
    #[error("{0}")]
    Limit(String),
    /// Cancelled (Ctrl+C).
    #[error("interrupted")]
    Cancelled,
}

/// Ceilings on the bytes one archive may decode to (its gzip stream's output: tar headers and
/// entries), checked as the bytes are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most decoded bytes per compressed byte read so far, once [`RATIO_AFTER`] bytes are decoded
    /// (`archive_max_ratio`; 0: no ratio limit).
    pub max_ratio: u64,
    /// Most decoded bytes in all (`archive_max_bytes`; 0: no cap).
    pub max_bytes: u64,
}

impl Default for Limits {
    /// 200× and 1 TiB. Real ML archives (logs, checkpoints, metrics, already-compressed weights)
    /// gzip 1×–20×, text logs up to ~50×; DEFLATE itself cannot exceed ~1032×, and a bomb is
    /// built near that (the 4 GiB one of issue 18 is 770×). 1 TiB is more than any KFP v1
    /// artifact (a base64 JSON body through the KFP API server).
    fn default() -> Self {
        Limits { max_ratio: 200, max_bytes: 1 << 40 }
    }
}

/// The ratio limit applies only once this many bytes are decoded: a small archive of zeros or
/// repeated lines may compress far better than 200×, and cannot hurt.
pub const RATIO_AFTER: u64 = 64 << 20;

/// Counts the compressed bytes read (below gzip) and the decoded ones (above it) of one
/// archive, and stops the stream at a [`Limits`] ceiling.
#[derive(Debug)]
struct Meter {
    limits: Limits,
    compressed: std::cell::Cell<u64>,
    decoded: std::cell::Cell<u64>,
    /// The ceiling that was hit (the error gzip and tar wrap is not ours to parse).
    hit: RefCell<Option<String>>,
}

impl Meter {
    fn new(limits: Limits) -> Rc<Meter> {
        Rc::new(Meter {
            limits,
            compressed: std::cell::Cell::new(0),
            decoded: std::cell::Cell::new(0),
            hit: RefCell::new(None),
        })
    }

    /// `n` more decoded bytes; an error once past a ceiling.
    fn decoded(&self, n: usize) -> io::Result<()> {
        let decoded = self.decoded.get().saturating_add(n as u64);
        self.decoded.set(decoded);
        let compressed = self.compressed.get().max(1);
        let Limits { max_ratio, max_bytes } = self.limits;
        let msg = if max_bytes > 0 && decoded > max_bytes {
            format!(
                "the archive decodes to more than {} (limit archive_max_bytes / JOBDL_ARCHIVE_MAX_BYTES = {max_bytes} \
                 bytes); stopped after {decoded} bytes decoded from {compressed} compressed; nothing of it was kept",
                size(max_bytes)
            )
        } else if max_ratio > 0 && decoded > RATIO_AFTER && decoded / compressed >= max_ratio {
            format!(
                "the archive decodes to more than {max_ratio}× its compressed size, a decompression bomb (limit \
                 archive_max_ratio / JOBDL_ARCHIVE_MAX_RATIO = {max_ratio}, applied past {} decoded); stopped at \
                 {decoded} bytes decoded from {compressed} compressed ({}×); nothing of it was kept",
                size(RATIO_AFTER),
                decoded / compressed
            )
        } else {
            return Ok(());
        };
        self.hit.borrow_mut().get_or_insert_with(|| msg.clone());
        Err(io::Error::new(io::ErrorKind::InvalidData, msg))
    }

    /// An entry about to be written: refused at once when it alone passes the byte cap.
    fn entry(&self, rel: &str, len: u64) -> Result<(), UnpackError> {
        let max = self.limits.max_bytes;
        if max > 0 && len > max {
            return Err(UnpackError::Limit(format!(
                "entry {rel} claims {len} bytes, more than an archive may decode to (limit archive_max_bytes / \
                 JOBDL_ARCHIVE_MAX_BYTES = {}); nothing of the archive was kept",
                size(max)
            )));
        }
        Ok(())
    }
}

/// `n` bytes for a message (`64 MiB`).
fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut i = 0;
    let mut v = n;
    while i + 1 < UNITS.len() && v >= 1024 && v.is_multiple_of(1024) {
        v /= 1024;
        i += 1;
    }
    format!("{v} {}", UNITS[i])
}

/// The compressed stream (below gzip), counted.
struct Compressed<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Compressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.compressed.set(self.meter.compressed.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// The decoded stream (above gzip), counted against the ceilings.
struct Decoded<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.decoded(n)?;
        Ok(n)
    }
}

/// Free bytes for an unprivileged writer on the file system of `dir`, when it tells.
fn free_space(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    let unit = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize };
    (unit > 0).then(|| st.f_bavail.saturating_mul(unit))
}

/// Refuse an entry of `len` bytes that the file system of `dir` says it has no room for.
fn check_room(dir: &Path, rel: &str, len: u64) -> Result<(), UnpackError> {
    match free_space(dir) {
        Some(free) if len > free => Err(UnpackError::Disk(format!(
            "not enough free space for {rel}: it holds {len} bytes and the file system of {} has {free} bytes free; \
             nothing of the archive was kept",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Where one archive's entries land.
#[derive(Debug, Clone)]
pub struct Target {
    /// The destination root, held open: the archive's directory and entries are created from it,
    /// never through a symlink.
    pub root: fs::Dir,
    /// Absolute directory the entries land in (inside `root`).
    pub dir: PathBuf,
    /// `dir` relative to `root`, `/`-separated: entries are shown as `<display>/<entry path>`.
    pub display: String,
}

impl Target {
    /// The target of a planned archive inside `root`.
    pub fn of(root: &fs::Dir, task: &ArchiveTask) -> Target {
        Target { root: root.clone(), dir: task.dir.clone(), display: task.display.clone() }
    }
}

// ---------------------------------------------------------------------------------------------
// The JSON envelope and base64: `{"data":"…"}` → the decoded bytes, as a `Read`.

/// Where the envelope parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Expecting prefix token `n` (`{`, `"data"`, `:`, `"`), whitespace allowed before it; the
    /// second field is how many bytes of the token matched.
    Prefix(usize, usize),
    /// Inside the string: base64 characters.
    Body,
    /// After a `\` inside the string (only `\/` is accepted).
    Escape,
    /// After the closing `"`: expecting `}`.
    Close,
    /// After the `}`: only whitespace until the end.
    Tail,
}

const PREFIX: [&[u8]; 4] = [b"{", b"\"data\"", b":", b"\""];

fn is_json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// The first failure seen inside the pipeline, kept because gzip and tar wrap the errors of the
/// reader below them in their own messages.
type Cause = Rc<RefCell<Option<String>>>;

/// Reads `{"data":"<padded standard base64>"}` from `src` and yields the decoded bytes. The end
/// of the decoded stream is only reported once the closing `"}` arrived and the body ended;
/// anything else (an early end, a bad character, trailing data) is an error.
struct Envelope<R> {
    src: R,
    stage: Stage,
    inbuf: Vec<u8>,
    /// Base64 text not decoded yet (fewer than 4 characters between reads).
    b64: Vec<u8>,
    /// Decoded bytes not handed out yet, from `pos`.
    out: Vec<u8>,
    pos: usize,
    /// A padded quad was decoded: nothing may follow.
    padded: bool,
    /// Body bytes consumed so far (for messages).
    offset: u64,
    finished: bool,
    cause: Cause,
}

impl<R: Read> Envelope<R> {
    fn new(src: R, cause: Cause) -> Self {
        Envelope {
            src,
            stage: Stage::Prefix(0, 0),
            inbuf: vec![0; IN_BUF],
            b64: Vec::with_capacity(IN_BUF + 4),
            out: Vec::with_capacity(IN_BUF),
            pos: 0,
            padded: false,
            offset: 0,
            finished: false,
            cause,
        }
    }

    fn fail(&self, msg: String) -> io::Error {
        self.cause.borrow_mut().get_or_insert_with(|| msg.clone());
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    /// Read one piece of the body and parse it.
    fn fill(&mut self) -> io::Result<()> {
        let n = match self.src.read(&mut self.inbuf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => {
                self.cause.borrow_mut().get_or_insert_with(|| e.to_string());
                return Err(e);
            }
        };
        if n == 0 {
            return match self.stage {
                Stage::Tail => {
                    self.finished = true;
                    Ok(())
                }
                Stage::Close => Err(self.fail("the body ended without its closing '}' (cut short)".into())),
                _ => Err(self.fail(format!("the body ended early, after {} bytes (no closing '\"}}')", self.offset))),
            };
        }
        let data = std::mem::take(&mut self.inbuf);
        let r = self.parse(&data[..n]);
        self.inbuf = data;
        r
    }

    fn parse(&mut self, data: &[u8]) -> io::Result<()> {
        let mut i = 0;
        while i < data.len() {
            let at = self.offset + i as u64;
            match self.stage {
                Stage::Body => {
                    let start = i;
                    while i < data.len() && is_b64(data[i]) {
                        i += 1;
                    }
                    self.push_b64(start, &data[start..i])?;
                    if i == data.len() {
                        break;
                    }
                    match data[i] {
                        b'"' => {
                            self.end_of_text()?;
                            self.stage = Stage::Close;
                        }
                        b'\\' => self.stage = Stage::Escape,
                        b => {
                            return Err(self.fail(format!(
                                "invalid base64: unexpected byte 0x{b:02x} at byte {} of the body",
                                self.offset + i as u64
                            )));
                        }
                    }
                    i += 1;
                    continue;
                }
                Stage::Escape => {
                    if data[i] != b'/' {
                        return Err(self.fail(format!("unexpected JSON escape at byte {at} of the body")));
                    }
                    self.push_b64(i, b"/")?;
                    self.stage = Stage::Body;
                }
                Stage::Prefix(token, matched) => {
                    let b = data[i];
                    if matched == 0 && is_json_ws(b) {
                        i += 1;
                        continue;
                    }
                    let want = PREFIX[token];
                    if b != want[matched] {
                        return Err(self.fail(format!(
                            "not a KFP artifact body (expected {{\"data\":\"…\"}}; unexpected byte 0x{b:02x} at byte {at})"
                        )));
                    }
                    self.stage = match (matched + 1 == want.len(), token + 1 == PREFIX.len()) {
                        (false, _) => Stage::Prefix(token, matched + 1),
                        (true, false) => Stage::Prefix(token + 1, 0),
                        (true, true) => Stage::Body,
                    };
                }
                Stage::Close | Stage::Tail => {
                    let b = data[i];
                    if !is_json_ws(b) {
                        if self.stage == Stage::Close && b == b'}' {
                            self.stage = Stage::Tail;
                        } else {
                            return Err(
                                self.fail(format!("unexpected data after the archive at byte {at} of the body"))
                            );
                        }
                    }
                }
            }
            i += 1;
        }
        self.offset += data.len() as u64;
        self.decode_ready()
    }

    fn push_b64(&mut self, at: usize, s: &[u8]) -> io::Result<()> {
        if s.is_empty() {
            return Ok(());
        }
        if self.padded {
            return Err(
                self.fail(format!("invalid base64: data after the padding at byte {}", self.offset + at as u64))
            );
        }
        self.b64.extend_from_slice(s);
        if self.b64.len() >= IN_BUF { self.decode_ready() } else { Ok(()) }
    }

    /// Decode every complete quad gathered so far.
    fn decode_ready(&mut self) -> io::Result<()> {
        let n = self.b64.len() / 4 * 4;
        if n == 0 {
            return Ok(());
        }
        if self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
        }
        let r = base64::engine::general_purpose::STANDARD.decode_vec(&self.b64[..n], &mut self.out);
        if let Err(e) = r {
            return Err(self.fail(format!("invalid base64 ({e})")));
        }
        self.padded = self.b64[n - 1] == b'=';
        self.b64.drain(..n);
        if self.padded && !self.b64.is_empty() {
            return Err(self.fail("invalid base64: data after the padding".into()));
        }
        Ok(())
    }

    /// The closing quote: what is left must be whole quads.
    fn end_of_text(&mut self) -> io::Result<()> {
        self.decode_ready()?;
        if !self.b64.is_empty() {
            return Err(self.fail("invalid base64: the text length is not a multiple of 4".into()));
        }
        Ok(())
    }
}

impl<R: Read> Read for Envelope<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.finished || buf.is_empty() {
                return Ok(0);
            }
            self.fill()?;
        }
    }
}

/// Between gzip and tar: notices whether the tar reader met the end of the stream (a tar that
/// stops without its end-of-archive blocks is short).
struct TarFeed<R> {
    inner: R,
    eof: bool,
}

impl<R: Read> Read for TarFeed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        Ok(n)
    }
}

/// The HTTP body as a `Read` on the blocking thread: chunks from the bounded channel.
struct Feed {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
    cancel: CancellationToken,
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if self.cancel.is_cancelled() {
                return Err(io::Error::other("interrupted"));
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(msg)) => return Err(io::Error::other(msg)),
                None if self.cancel.is_cancelled() => return Err(io::Error::other("interrupted")),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Unpacking (synchronous: runs on a blocking thread).

/// A part file written in this attempt, published once the whole archive decoded.
struct Pending {
    rel: String,
    part: PathBuf,
    dest: PathBuf,
    bytes: u64,
}

/// What one attempt wrote so far (undone when it fails).
#[derive(Default)]
struct Written {
    pending: Vec<Pending>,
    /// Index in `pending` by case-folded path.
    seen: HashMap<String, usize>,
    /// Directories this attempt created, parents first.
    created: Vec<PathBuf>,
    /// Entries refused one by one.
    refused: Vec<FileOutcome>,
}

impl Written {
    /// Remove every part file and every (still empty) directory this attempt created.
    fn undo(&self, root: &fs::Dir) {
        for p in &self.pending {
            let _ = root.remove_file_at(&p.part);
        }
        for d in self.created.iter().rev() {
            let _ = root.remove_dir_at(d);
        }
    }

    fn refuse(&mut self, display: String, why: String) {
        self.refused.push(FileOutcome {
            display,
            bytes: 0,
            result: FileResult::Failed(crate::redact::redact(&why)),
            md5: Md5Status::Absent,
            checked: None,
        });
    }
}

/// A whole-stream failure, named by its first cause.
fn broken(e: &io::Error, cause: &Cause, cancel: &CancellationToken) -> UnpackError {
    if cancel.is_cancelled() {
        return UnpackError::Cancelled;
    }
    let first = cause.borrow_mut().take();
    let msg = first.unwrap_or_else(|| {
        let mut m = format!("the archive does not decode: {e}");
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            m.push_str(": ");
            m.push_str(&s.to_string());
            src = s.source();
        }
        m
    });
    UnpackError::Broken(crate::redact::redact(&msg))
}

/// Unpack one archive body (`{"data":"<base64 .tgz>"}`) into `target`, as a stream. Entries are
/// published under their final names only when the whole body decoded; on any error every part
/// file and directory this call created is removed. `on_bytes` is told of every entry byte
/// written. Returns one outcome per entry (landed or refused), in archive order.
pub fn unpack<R: Read>(
    body: R,
    target: &Target,
    on_bytes: &dyn Fn(u64),
    cancel: &CancellationToken,
) -> Result<Vec<FileOutcome>, UnpackError> {
    unpack_limited(body, target, Limits::default(), on_bytes, cancel)
}

/// [`unpack`] with these ceilings on the decoded bytes: past one, the archive fails as a whole
/// ([`UnpackError::Limit`]) and every part file it wrote is removed.
pub fn unpack_limited<R: Read>(
    body: R,
    target: &Target,
    limits: Limits,
    on_bytes: &dyn Fn(u64),
    cancel: &CancellationToken,
) -> Result<Vec<FileOutcome>, UnpackError> {
    let mut w = Written::default();
    let meter = Meter::new(limits);
    let result = decode_into(body, target, &mut w, &meter, on_bytes, cancel);
    match result {
        Ok(()) => Ok(publish(target, w)),
        Err(e) => {
            w.undo(&target.root);
            let hit = meter.hit.borrow_mut().take();
            Err(match (e, hit) {
                (UnpackError::Cancelled, _) => UnpackError::Cancelled,
                (_, Some(msg)) => UnpackError::Limit(msg),
                (e, None) => e,
            })
        }
    }
}

fn decode_into<R: Read>(
    body: R,
    target: &Target,
    w: &mut Written,
    meter: &Rc<Meter>,
    on_bytes: &dyn Fn(u64),
    cancel: &CancellationToken,
) -> Result<(), UnpackError> {
    target
        .root
        .create_subdir(&target.dir, &mut w.created)
        .map_err(|e| UnpackError::Disk(format!("cannot create {}: {e}", target.dir.display())))?;
    let cause: Cause = Rc::new(RefCell::new(None));
    let envelope = Envelope::new(body, cause.clone());
    let gz = flate2::read::MultiGzDecoder::new(Compressed { inner: envelope, meter: meter.clone() });
    let gz = Decoded { inner: gz, meter: meter.clone() };
    let mut archive = tar::Archive::new(TarFeed { inner: gz, eof: false });
    let mut buf = vec![0u8; COPY_BUF];
    {
        let entries = archive.entries().map_err(|e| broken(&e, &cause, cancel))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| broken(&e, &cause, cancel))?;
            if cancel.is_cancelled() {
                return Err(UnpackError::Cancelled);
            }
            entry_into(&mut entry, target, w, meter, &mut buf, on_bytes, &cause, cancel)?;
        }
    }
    let feed = archive.into_inner();
    if feed.eof {
        // The gzip stream ended where a tar header was expected: no end-of-archive blocks.
        let first = cause.borrow_mut().take();
        return Err(UnpackError::Broken(
            first.unwrap_or_else(|| "short tar: the archive ends without its end-of-archive blocks".into()),
        ));
    }
    // Past the tar's end: the rest of the gzip stream (its CRC and length are checked at its
    // end) and the closing `"}` of the envelope.
    let mut gz = feed.inner;
    loop {
        match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(broken(&e, &cause, cancel)),
        }
    }
    Ok(())
}

/// One tar entry: a regular file goes to its part file, a directory is created, the rest is
/// refused (a failed entry).
#[allow(clippy::too_many_arguments)]
fn entry_into<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    target: &Target,
    w: &mut Written,
    meter: &Meter,
    buf: &mut [u8],
    on_bytes: &dyn Fn(u64),
    cause: &Cause,
    cancel: &CancellationToken,
) -> Result<(), UnpackError> {
    use tar::EntryType as T;
    let raw = entry.path_bytes().into_owned();
    let kind = entry.header().entry_type();
    let shown = |name: &str| format!("{}/{}", target.display, printable(name));
    let name = match std::str::from_utf8(&raw) {
        Ok(n) => n.to_string(),
        Err(_) => {
            w.refuse(shown(&String::from_utf8_lossy(&raw)), "its name is not valid UTF-8; not extracted".into());
            return Ok(());
        }
    };
    // `tar -C dir .` names entries `./a`; the root itself is `./`.
    let mut rel = name.as_str();
    while let Some(r) = rel.strip_prefix("./") {
        rel = r;
    }
    let what = match kind {
        T::Regular | T::Continuous => None,
        T::Directory => {
            let dir = rel.strip_suffix('/').unwrap_or(rel);
            if dir.is_empty() || dir == "." {
                return Ok(());
            }
            match safe_relative_path(dir) {
                Ok(d) => {
                    if let Err(e) = target.root.create_subdir(&target.dir.join(&d), &mut w.created) {
                        w.refuse(shown(dir), e.to_string());
                    }
                }
                Err(e) => w.refuse(shown(dir), e.to_string()),
            }
            return Ok(());
        }
        // Metadata for the entries that follow (tar applies the per-entry ones itself).
        T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => return Ok(()),
        T::Symlink => Some("a symbolic link"),
        T::Link => Some("a hard link"),
        T::Char | T::Block => Some("a device"),
        T::Fifo => Some("a FIFO"),
        T::GNUSparse => Some("a sparse file"),
        _ => Some("an entry of an unsupported type"),
    };
    if let Some(what) = what {
        w.refuse(shown(rel), format!("{what}; only regular files and directories are extracted"));
        return Ok(());
    }
    let rel = match safe_relative_path(rel) {
        Ok(r) => r,
        Err(e) => {
            w.refuse(shown(rel), e.to_string());
            return Ok(());
        }
    };
    // A ceiling or a full disk fails the archive before its bytes are written.
    meter.entry(&rel, entry.size())?;
    check_room(&target.dir, &rel, entry.size())?;
    let key = collision_key(&rel);
    let slot = match w.seen.get(&key) {
        Some(&i) if w.pending[i].rel == rel => {
            crate::log::log(1, format!("{}/{rel} appears twice in the archive; the later one wins", target.display));
            Some(i)
        }
        Some(&i) => {
            let first = format!("{}/{}", target.display, w.pending[i].rel);
            w.refuse(shown(&rel), format!("collides with {first} ({})", crate::safepath::COLLISION));
            return Ok(());
        }
        None => None,
    };
    let dest = target.dir.join(&rel);
    if let Some(parent) = dest.parent()
        && let Err(e) = target.root.create_subdir(parent, &mut w.created)
    {
        w.refuse(shown(&rel), e.to_string());
        return Ok(());
    }
    let part = fs::part_path(&dest);
    let disk = |e: io::Error| UnpackError::Disk(format!("cannot write {}: {e}", part.display()));
    let index = match slot {
        Some(i) => {
            w.pending[i].bytes = 0;
            i
        }
        None => {
            w.pending.push(Pending { rel: rel.clone(), part: part.clone(), dest, bytes: 0 });
            w.seen.insert(key, w.pending.len() - 1);
            w.pending.len() - 1
        }
    };
    // A new file (whatever someone left under the part name is unlinked, never followed).
    let mut file = target.root.create_fresh_at(&part).map_err(disk)?;
    let want = entry.size();
    let mut written = 0u64;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(broken(&e, cause, cancel)),
        };
        file.write_all(&buf[..n]).map_err(disk)?;
        written += n as u64;
        on_bytes(n as u64);
    }
    if written != want {
        let first = cause.borrow_mut().take();
        return Err(UnpackError::Broken(first.unwrap_or_else(|| {
            format!("short tar: entry {rel} holds {written} of its {want} bytes (the archive is cut short)")
        })));
    }
    file.sync_data().map_err(disk)?;
    w.pending[index].bytes = written;
    Ok(())
}

/// The whole archive decoded: rename every part file to its final name, then fsync each
/// directory once.
fn publish(target: &Target, w: Written) -> Vec<FileOutcome> {
    let mut outcomes = w.refused;
    let mut dirs: BTreeSet<PathBuf> = w.created.iter().filter_map(|d| d.parent().map(Path::to_path_buf)).collect();
    for p in w.pending {
        let display = format!("{}/{}", target.display, p.rel);
        match target.root.rename_at(&p.part, &p.dest) {
            Ok(()) => {
                if let Some(d) = p.dest.parent() {
                    dirs.insert(d.to_path_buf());
                }
                outcomes.push(FileOutcome {
                    display,
                    bytes: p.bytes,
                    result: FileResult::Downloaded,
                    md5: Md5Status::Absent,
                    checked: None,
                });
            }
            Err(e) => {
                let _ = target.root.remove_file_at(&p.part);
                outcomes.push(FileOutcome {
                    display,
                    bytes: 0,
                    result: FileResult::Failed(format!("cannot write {}: {e}", p.dest.display())),
                    md5: Md5Status::Absent,
                    checked: None,
                });
            }
        }
    }
    for d in &dirs {
        if let Err(e) = target.root.subdir(d).and_then(|d| d.sync()) {
            crate::log::log(2, format!("fsync {}: {e}", d.display()));
        }
    }
    outcomes
}

// ---------------------------------------------------------------------------------------------
// Fetching: one GET per attempt, retried from zero.

/// The outcome of fetching archives.
#[derive(Debug, Default)]
pub struct ArchiveOutcome {
    /// One entry per archive entry that landed or was refused, or one failed entry per archive
    /// that failed as a whole (its path is the archive's directory); sorted by path.
    pub files: Vec<FileOutcome>,
    /// Whether a fetch was cancelled before it finished (nothing of it landed).
    pub interrupted: bool,
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

/// Why one attempt stopped.
enum Stop {
    Retry(String, Option<Duration>),
    Fail(String),
    Cancelled,
}

/// Fetches and unpacks archives into a destination.
#[derive(Clone)]
pub struct Fetcher {
    /// The run's HTTP client (its read timeout is the idle timeout).
    pub client: reqwest::Client,
    /// Data retry policy (attempts per archive, backoff, `Retry-After` cap).
    pub retry: RetryConfig,
    /// The destination root, held open.
    pub root: fs::Dir,
    /// Progress: each archive is one "file" (display = its directory) whose bytes are the
    /// decoded entry bytes.
    pub reporter: Arc<dyn Reporter>,
    /// Ctrl+C.
    pub cancel: CancellationToken,
    /// Ceilings on the decoded bytes of one archive.
    pub limits: Limits,
    /// The minimum rate of a body.
    pub min_rate: crate::transfer::rate::MinRate,
}

impl Fetcher {
    /// A fetcher that reports no progress, with the default limits.
    pub fn new(client: reqwest::Client, retry: RetryConfig, root: &fs::Dir, cancel: CancellationToken) -> Fetcher {
        Fetcher {
            client,
            retry,
            root: root.clone(),
            reporter: Arc::new(Silent),
            cancel,
            limits: Limits::default(),
            min_rate: Default::default(),
        }
    }

    /// Fetch and unpack every archive, `parallel` at a time.
    pub async fn run(&self, tasks: Vec<ArchiveTask>, parallel: usize) -> ArchiveOutcome {
        use futures_util::StreamExt;
        let results: Vec<ArchiveOutcome> = futures_util::stream::iter(tasks.iter().map(|t| self.fetch(t)))
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
        let mut all = ArchiveOutcome::default();
        for r in results {
            all.files.extend(r.files);
            all.interrupted |= r.interrupted;
        }
        all.interrupted |= self.cancel.is_cancelled() && !tasks.is_empty();
        all.files.sort_by(|a, b| a.display.cmp(&b.display));
        all
    }

    /// Fetch and unpack one archive, retrying from zero when the body breaks or does not decode.
    pub async fn fetch(&self, task: &ArchiveTask) -> ArchiveOutcome {
        self.reporter.file_started(&task.display, None);
        let counted = Arc::new(AtomicU64::new(0));
        let mut attempt = 0u32;
        let fail = |msg: String| FileOutcome {
            display: task.display.clone(),
            bytes: 0,
            result: FileResult::Failed(crate::redact::redact(&msg)),
            md5: Md5Status::Absent,
            checked: None,
        };
        let result = loop {
            attempt += 1;
            if self.cancel.is_cancelled() {
                break Err(None);
            }
            match self.attempt(task, &counted).await {
                Ok(files) => break Ok(files),
                Err(Stop::Cancelled) => break Err(None),
                Err(Stop::Fail(msg)) => break Err(Some(fail(msg))),
                Err(Stop::Retry(msg, retry_after)) => {
                    self.reporter.bytes_discarded(counted.swap(0, Ordering::Relaxed));
                    if attempt >= self.retry.attempts.max(1) {
                        break Err(Some(fail(format!("{msg} (after {attempt} attempts)"))));
                    }
                    self.reporter.retry(&task.display, attempt, &msg);
                    let delay = {
                        let mut rng = rand::rng();
                        self.retry.delay(attempt - 1, retry_after, &mut rng)
                    };
                    crate::log::log(2, format!("{}: {msg}; retry {attempt} in {delay:?}", task.display));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.cancel.cancelled() => break Err(None),
                    }
                }
            }
        };
        let (mut files, interrupted) = match result {
            Ok(files) => (files, false),
            Err(Some(failed)) => (vec![failed], false),
            Err(None) => (Vec::new(), true),
        };
        files.sort_by(|a, b| a.display.cmp(&b.display));
        let bytes = files.iter().filter(|f| f.result == FileResult::Downloaded).map(|f| f.bytes).sum();
        let whole = if files.iter().any(|f| matches!(f.result, FileResult::Failed(_))) {
            FileResult::Failed("some entries failed".into())
        } else {
            FileResult::Downloaded
        };
        self.reporter.file_done(&FileOutcome {
            display: task.display.clone(),
            bytes,
            result: whole,
            md5: Md5Status::Absent,
            checked: None,
        });
        ArchiveOutcome { files, interrupted }
    }

    /// One GET, its body streamed into the decoder.
    async fn attempt(&self, task: &ArchiveTask, counted: &Arc<AtomicU64>) -> Result<Vec<FileOutcome>, Stop> {
        let shown = crate::redact::url_for_display(&task.source.url);
        let mut rb = self.client.get(task.source.url.clone()).header(reqwest::header::ACCEPT, "application/json");
        for (k, v) in &task.source.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let started = Instant::now();
        let sent = tokio::select! {
            r = rb.send() => r,
            _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
        };
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let msg = crate::http::describe_transport(&e);
                crate::log::log(1, format!("GET {shown} -> {msg} ({} ms)", started.elapsed().as_millis()));
                return Err(Stop::Retry(msg, None));
            }
        };
        let status = resp.status().as_u16();
        crate::log::log(1, format!("GET {shown} -> {status} ({} ms)", started.elapsed().as_millis()));
        if status != 200 {
            let retry_after = crate::http::retry_after(resp.headers());
            let body = tokio::select! {
                b = crate::http::read_limited(resp, MAX_ERROR_BODY) => b.unwrap_or_default(),
                _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
            };
            let msg = format!("HTTP {status}{}", error_message(&body).map(|m| format!(": {m}")).unwrap_or_default());
            return Err(if status_is_retryable(status) {
                Stop::Retry(msg, retry_after)
            } else if (300..400).contains(&status) {
                Stop::Fail(format!("{msg}: redirects are not followed"))
            } else {
                Stop::Fail(msg)
            });
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(QUEUE);
        let target = Target::of(&self.root, task);
        let (reporter, display, count, cancel) =
            (self.reporter.clone(), task.display.clone(), counted.clone(), self.cancel.clone());
        let limits = self.limits;
        let worker = tokio::task::spawn_blocking(move || {
            let feed = Feed { rx, cur: Bytes::new(), cancel: cancel.clone() };
            let on_bytes = |n: u64| {
                count.fetch_add(n, Ordering::Relaxed);
                reporter.bytes(&display, n);
            };
            unpack_limited(feed, &target, limits, &on_bytes, &cancel)
        });
        let mut rate = self.min_rate.guard();
        loop {
            let next = tokio::select! {
                c = rate.next(resp.chunk()) => c,
                _ = self.cancel.cancelled() => break,
            };
            let item = match next {
                Ok(Some(b)) => Ok(b),
                Ok(None) => break,
                Err(e @ crate::transfer::rate::BodyError::TooSlow { .. }) => Err(e.to_string()),
                Err(e) => Err(format!("connection broken while reading the body: {e}")),
            };
            let last = item.is_err();
            let sent = tokio::select! {
                r = tx.send(item) => r.is_ok(),
                _ = self.cancel.cancelled() => false,
            };
            if !sent || last {
                break; // the decoder stopped (it says why), or the body broke
            }
        }
        drop(tx);
        drop(resp);
        match worker.await {
            Ok(Ok(files)) => Ok(files),
            Ok(Err(UnpackError::Cancelled)) => Err(Stop::Cancelled),
            Ok(Err(_)) if self.cancel.is_cancelled() => Err(Stop::Cancelled),
            Ok(Err(UnpackError::Broken(msg))) => Err(Stop::Retry(msg, None)),
            Ok(Err(UnpackError::Disk(msg) | UnpackError::Limit(msg))) => Err(Stop::Fail(msg)),
            Err(e) => Err(Stop::Fail(format!("internal error: {e}"))),
        }
    }
}

/// The message of a KFP error body (`{"error_message": …}`, or gRPC-gateway's `message`),
/// redacted, escaped and cut to 300 characters.
fn error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let m = ["error_message", "message", "error"].iter().find_map(|k| v.get(*k).and_then(|m| m.as_str()))?;
    let m: String = printable(m.trim()).chars().take(300).collect();
    (!m.is_empty()).then(|| crate::redact::redact(&m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use std::collections::VecDeque;
    use tar::EntryType;

    /// A tar entry to build (names written raw, so hostile ones are possible).
    enum E<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Link(EntryType, &'a str, &'a str),
    }

    fn header(name: &str, kind: EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        h
    }

    fn tar_of(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            match e {
                E::File(n, d) => b.append(&header(n, EntryType::Regular, d.len() as u64), *d).unwrap(),
                E::Dir(n) => b.append(&header(n, EntryType::Directory, 0), io::empty()).unwrap(),
                E::Link(kind, n, to) => {
                    let mut h = header(n, *kind, 0);
                    h.as_old_mut().linkname[..to.len()].copy_from_slice(to.as_bytes());
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn envelope(bytes: &[u8]) -> Vec<u8> {
        format!("{{\"data\":\"{}\"}}", STANDARD.encode(bytes)).into_bytes()
    }

    /// The body in the given pieces.
    struct Pieces(VecDeque<Vec<u8>>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            while self.0.front().is_some_and(Vec::is_empty) {
                self.0.pop_front();
            }
            let Some(front) = self.0.front_mut() else { return Ok(0) };
            let n = buf.len().min(front.len());
            buf[..n].copy_from_slice(&front[..n]);
            front.drain(..n);
            if front.is_empty() {
                self.0.pop_front();
            }
            Ok(n)
        }
    }

    fn split(body: &[u8], cuts: &[usize]) -> Pieces {
        let mut out = VecDeque::new();
        let mut last = 0;
        for &c in cuts.iter().chain([&body.len()]) {
            out.push_back(body[last..c].to_vec());
            last = c;
        }
        Pieces(out)
    }

    struct Dest {
        _t: tempfile::TempDir,
        root: PathBuf,
        target: Target,
    }

    fn dest() -> Dest {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("dest");
        std::fs::create_dir(&root).unwrap();
        let dir = root.join("named-outputs/train/main-logs");
        let target = Target {
            root: crate::fs::Dir::open_root(&root).unwrap(),
            dir,
            display: "named-outputs/train/main-logs".into(),
        };
        Dest { _t: t, root, target }
    }

    fn unpack_body(d: &Dest, body: impl Read) -> Result<Vec<FileOutcome>, UnpackError> {
        unpack(body, &d.target, &|_| {}, &CancellationToken::new())
    }

    /// Every file under `root`, relative, sorted (working files included).
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

    fn decoded(body: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Envelope::new(body, Rc::new(RefCell::new(None))).read_to_end(&mut out)?;
        Ok(out)
    }

    fn sample() -> Vec<u8> {
        gz(&tar_of(&[
            E::Dir("./"),
            E::File("./a.txt", b"alpha"),
            E::Dir("logs/"),
            E::Dir("empty/"),
            E::File("logs/sub/b.log", &[7u8; 3000]),
            E::File("c", b""),
        ]))
    }

    #[test]
    fn several_entries_and_directories_land() {
        let d = dest();
        let files = unpack_body(&d, split(&envelope(&sample()), &[])).unwrap();
        let got: Vec<_> = files.iter().map(|f| (f.display.as_str(), f.bytes, f.result.clone())).collect();
        let p = "named-outputs/train/main-logs";
        assert_eq!(
            got,
            [
                (format!("{p}/a.txt").as_str(), 5, FileResult::Downloaded),
                (format!("{p}/logs/sub/b.log").as_str(), 3000, FileResult::Downloaded),
                (format!("{p}/c").as_str(), 0, FileResult::Downloaded),
            ]
        );
        assert!(files.iter().all(|f| f.md5 == Md5Status::Absent));
        assert_eq!(std::fs::read(d.target.dir.join("a.txt")).unwrap(), b"alpha");
        assert_eq!(std::fs::read(d.target.dir.join("logs/sub/b.log")).unwrap(), vec![7u8; 3000]);
        assert!(d.target.dir.join("empty").is_dir());
        assert_eq!(files_under(&d.root), [format!("{p}/a.txt"), format!("{p}/c"), format!("{p}/logs/sub/b.log")]);
    }

    #[test]
    fn envelope_decodes_across_every_chunk_boundary() {
        let tgz = sample();
        let body = envelope(&tgz);
        for cut in 0..=body.len() {
            assert_eq!(decoded(split(&body, &[cut])).unwrap(), tgz, "cut at {cut}");
        }
        for (a, b) in [(1, 2), (3, 9), (9, 10), (10, 14), (body.len() - 3, body.len() - 1)] {
            assert_eq!(decoded(split(&body, &[a, b])).unwrap(), tgz, "cuts at {a}, {b}");
        }
        let bytewise: Vec<usize> = (1..body.len()).collect();
        assert_eq!(decoded(split(&body, &bytewise)).unwrap(), tgz);
        // And the whole chain, one byte at a time.
        let d = dest();
        assert_eq!(unpack_body(&d, split(&body, &bytewise)).unwrap().len(), 3);
    }

    #[test]
    fn envelope_tolerates_whitespace_and_escaped_slashes() {
        let data: Vec<u8> = (0..=255u8).collect(); // its base64 holds '/' and '+'
        let b64 = STANDARD.encode(&data);
        assert!(b64.contains('/'));
        let body = format!(" \r\n{{ \"data\" :\t\"{}\" }}\n", b64.replace('/', "\\/"));
        assert_eq!(decoded(split(body.as_bytes(), &[])).unwrap(), data);
        assert_eq!(decoded(split(b"{\"data\":\"\"}", &[])).unwrap(), b"");
    }

    #[test]
    fn envelope_refuses_anything_else() {
        let ok = STANDARD.encode(b"hello world");
        let cases = [
            format!("{{\"dat\":\"{ok}\"}}"),
            format!("{{\"data\" : \"{ok}\", \"x\":1}}"),
            format!("{{\"data\":\"{ok}\"}}x"),
            format!("{{\"data\":\"{ok}\"}}}}"),
            format!("{{\"data\":\"{ok}\\n\"}}"),
            format!("[\"{ok}\"]"),
            format!("{{\"data\":\"{}\"}}", &ok[..ok.len() - 1]),
            "{\"data\":\"QQ==QUJD\"}".to_string(),
            "{\"data\":\"QR==\"}".to_string(),
            "{\"data\":\"Q===\"}".to_string(),
            "{\"data\":\"QUJD!UJD\"}".to_string(),
            "{\"data\":\"QUJD\u{e9}\"}".to_string(),
            "<html>bad gateway</html>".to_string(),
            String::new(),
        ];
        for c in cases {
            let e = decoded(split(c.as_bytes(), &[])).unwrap_err();
            assert!(matches!(e.kind(), io::ErrorKind::InvalidData), "{c:?}: {e}");
        }
    }

    fn assert_nothing_left(d: &Dest) {
        assert_eq!(files_under(&d.root), Vec::<String>::new());
        assert!(!d.target.dir.exists(), "the archive's directory was created by the failed attempt");
    }

    #[test]
    fn truncated_bodies_fail_and_leave_nothing() {
        let body = envelope(&sample());
        for keep in [0, 5, 9, 20, body.len() / 2, body.len() - 3, body.len() - 2, body.len() - 1] {
            let d = dest();
            let e = unpack_body(&d, split(&body[..keep], &[])).unwrap_err();
            assert!(matches!(e, UnpackError::Broken(_)), "{keep}: {e:?}");
            assert_nothing_left(&d);
        }
        // Missing `"}` specifically.
        let d = dest();
        let e = unpack_body(&d, split(&body[..body.len() - 2], &[])).unwrap_err();
        assert!(e.to_string().contains("ended early"), "{e}");
        let e = unpack_body(&d, split(&body[..body.len() - 1], &[])).unwrap_err();
        assert!(e.to_string().contains("closing '}'"), "{e}");
    }

    #[test]
    fn a_transport_error_is_named() {
        struct Broken(Pieces);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::Error::other("connection reset by peer")),
                    n => Ok(n),
                }
            }
        }
        let body = envelope(&sample());
        let d = dest();
        let e = unpack_body(&d, Broken(split(&body[..body.len() / 2], &[]))).unwrap_err();
        assert_eq!(e, UnpackError::Broken("connection reset by peer".into()));
        assert_nothing_left(&d);
    }

    #[test]
    fn bad_base64_fails() {
        let mut body = envelope(&sample());
        let at = body.len() / 2;
        body[at] = b'*';
        let d = dest();
        let e = unpack_body(&d, split(&body, &[])).unwrap_err();
        assert!(e.to_string().contains("invalid base64"), "{e}");
        assert_nothing_left(&d);
    }

    #[test]
    fn bad_gzip_crc_and_length_fail() {
        let tgz = sample();
        for (at, what) in [(tgz.len() - 8, "crc"), (tgz.len() - 2, "length")] {
            let mut bad = tgz.clone();
            bad[at] ^= 0x55;
            let d = dest();
            let e = unpack_body(&d, split(&envelope(&bad), &[])).unwrap_err();
            assert!(matches!(e, UnpackError::Broken(_)), "{what}: {e:?}");
            assert_nothing_left(&d);
        }
        // A corrupt deflate stream, and something that is not gzip at all.
        let mut bad = tgz.clone();
        bad[20] ^= 0xff;
        let d = dest();
        assert!(matches!(unpack_body(&d, split(&envelope(&bad), &[])), Err(UnpackError::Broken(_))));
        assert!(matches!(unpack_body(&d, split(&envelope(b"plain text"), &[])), Err(UnpackError::Broken(_))));
        assert_nothing_left(&d);
    }

    #[test]
    fn short_tar_fails() {
        let tar = tar_of(&[E::File("a.txt", b"alpha"), E::File("b.txt", &[1u8; 2000])]);
        // Without the end-of-archive blocks; then cut inside the second entry's data.
        for keep in [tar.len() - 1024, 512 * 3 + 100, 512 * 3] {
            let d = dest();
            let e = unpack_body(&d, split(&envelope(&gz(&tar[..keep])), &[])).unwrap_err();
            assert!(e.to_string().contains("short tar") || e.to_string().contains("EOF"), "{keep}: {e}");
            assert_nothing_left(&d);
        }
    }

    #[test]
    fn hostile_entries_are_refused_alone() {
        let tgz = gz(&tar_of(&[
            E::File("../evil", b"x"),
            E::File("/abs", b"x"),
            E::File("a/../../up", b"x"),
            E::File("dir\\..\\..\\bs", b"x"),
            E::File("bell\u{7}", b"x"),
            E::File(".x.jobdl-part", b"x"),
            E::File(".jobdl/lock", b"x"),
            E::Link(EntryType::Symlink, "link", "/etc/passwd"),
            E::Link(EntryType::Link, "hard", "ok.txt"),
            E::Link(EntryType::Fifo, "fifo", ""),
            E::Link(EntryType::Char, "tty", ""),
            E::Dir("../outside/"),
            E::File("ok.txt", b"fine"),
            E::File("OK.txt", b"case"),
        ]));
        let d = dest();
        let files = unpack_body(&d, split(&envelope(&tgz), &[])).unwrap();
        let p = "named-outputs/train/main-logs";
        let ok: Vec<_> =
            files.iter().filter(|f| f.result == FileResult::Downloaded).map(|f| f.display.clone()).collect();
        assert_eq!(ok, [format!("{p}/ok.txt")]);
        let failed: Vec<_> = files.iter().filter(|f| matches!(f.result, FileResult::Failed(_))).collect();
        assert_eq!(failed.len(), 13, "{failed:#?}");
        for f in &failed {
            assert!(f.display.starts_with(&format!("{p}/")), "{}", f.display);
            assert!(!f.display.contains('\u{7}'));
        }
        let why = |name: &str| match &files.iter().find(|f| f.display == format!("{p}/{name}")).unwrap().result {
            FileResult::Failed(e) => e.clone(),
            r => panic!("{r:?}"),
        };
        assert!(why("link").contains("symbolic link"));
        assert!(why("hard").contains("hard link"));
        assert!(why("fifo").contains("FIFO"));
        assert!(why("tty").contains("device"));
        assert!(why("OK.txt").contains("differ only in case"));
        assert!(why(".x.jobdl-part").contains("working files"));
        assert!(why("bell\\u{7}").contains("control character"));
        // Nothing outside the archive's directory, no link, no part file.
        assert_eq!(files_under(d.root.parent().unwrap()), [format!("dest/{p}/ok.txt")]);
        assert!(!d.root.join("named-outputs/train/outside").exists());
    }

    #[test]
    fn a_repeated_entry_lands_once_with_the_later_bytes() {
        let tgz = gz(&tar_of(&[E::File("a", b"first"), E::File("a", b"second!")]));
        let d = dest();
        let files = unpack_body(&d, split(&envelope(&tgz), &[])).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].bytes, 7);
        assert_eq!(std::fs::read(d.target.dir.join("a")).unwrap(), b"second!");
    }

    #[test]
    fn a_symlink_in_the_destination_is_not_followed() {
        let d = dest();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(&d.target.dir).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.target.dir.join("sub")).unwrap();
        let tgz = gz(&tar_of(&[E::File("sub/x", b"x"), E::File("y", b"y")]));
        let files = unpack_body(&d, split(&envelope(&tgz), &[])).unwrap();
        assert!(matches!(&files[0].result, FileResult::Failed(e) if e.contains("symlink")), "{files:?}");
        assert_eq!(files[1].result, FileResult::Downloaded);
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn cancellation_stops_and_cleans_up() {
        let d = dest();
        let cancel = CancellationToken::new();
        let body = envelope(&gz(&tar_of(&[E::File("a", &[1u8; 100_000]), E::File("b", &[2u8; 100_000])])));
        let first_bytes = |_: u64| cancel.cancel();
        let e = unpack(split(&body, &[]), &d.target, &first_bytes, &cancel).unwrap_err();
        assert_eq!(e, UnpackError::Cancelled);
        assert_nothing_left(&d);
    }

    fn unpack_with(d: &Dest, body: impl Read, limits: Limits) -> Result<Vec<FileOutcome>, UnpackError> {
        unpack_limited(body, &d.target, limits, &|_| {}, &CancellationToken::new())
    }

    #[test]
    fn the_decoded_bytes_cap_fails_the_archive_and_keeps_nothing() {
        let zeros = vec![0u8; 600 << 10];
        let tgz = gz(&tar_of(&[E::File("small.txt", b"fine"), E::File("a.bin", &zeros), E::File("b.bin", &zeros)]));
        let d = dest();
        let cap = Limits { max_ratio: 0, max_bytes: 1 << 20 };
        let e = unpack_with(&d, split(&envelope(&tgz), &[]), cap).unwrap_err();
        let UnpackError::Limit(msg) = &e else { panic!("{e:?}") };
        assert!(msg.contains("archive_max_bytes") && msg.contains("JOBDL_ARCHIVE_MAX_BYTES"), "{msg}");
        assert!(msg.contains("1 MiB"), "{msg}");
        assert_nothing_left(&d);
        // The same archive under the defaults (a small archive of zeros is not a bomb).
        let d = dest();
        assert_eq!(unpack_with(&d, split(&envelope(&tgz), &[]), Limits::default()).unwrap().len(), 3);
        // One entry larger than the cap is refused before it is written.
        let d = dest();
        let big = gz(&tar_of(&[E::File("big.bin", &[0u8; 3 << 20])]));
        let e = unpack_with(&d, split(&envelope(&big), &[]), cap).unwrap_err();
        assert!(matches!(&e, UnpackError::Limit(m) if m.contains("big.bin claims") && m.contains("1 MiB")), "{e:?}");
        assert_nothing_left(&d);
    }

    #[test]
    fn the_ratio_applies_past_its_minimum() {
        // 80 MiB of zeros gzip to ~80 KiB (1000×): refused once 64 MiB are decoded.
        let zeros = vec![0u8; 80 << 20];
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&tar_of(&[E::File("bomb.bin", &zeros)])).unwrap();
        let tgz = e.finish().unwrap();
        drop(zeros);
        let d = dest();
        let e = unpack_with(&d, split(&envelope(&tgz), &[]), Limits::default()).unwrap_err();
        let UnpackError::Limit(msg) = &e else { panic!("{e:?}") };
        assert!(msg.contains("decompression bomb") && msg.contains("JOBDL_ARCHIVE_MAX_RATIO = 200"), "{msg}");
        assert_nothing_left(&d);
        // Turned off, it lands.
        let d = dest();
        let off = Limits { max_ratio: 0, max_bytes: 0 };
        assert_eq!(unpack_with(&d, split(&envelope(&tgz), &[]), off).unwrap()[0].bytes, 80 << 20);
    }

    #[test]
    fn an_entry_larger_than_the_cap_or_the_free_space_is_refused_before_writing() {
        let mut h = header("huge.bin", EntryType::Regular, 0);
        h.set_size(1 << 60);
        h.set_cksum();
        let mut tar = h.as_bytes().to_vec();
        tar.extend_from_slice(&[0u8; 4096]);
        let body = envelope(&gz(&tar));
        let d = dest();
        let e = unpack_with(&d, split(&body, &[]), Limits::default()).unwrap_err();
        assert!(
            matches!(&e, UnpackError::Limit(m) if m.contains("huge.bin") && m.contains("archive_max_bytes")),
            "{e:?}"
        );
        assert_nothing_left(&d);
        let off = Limits { max_ratio: 0, max_bytes: 0 };
        let e = unpack_with(&d, split(&body, &[]), off).unwrap_err();
        assert!(matches!(&e, UnpackError::Disk(m) if m.contains("not enough free space for huge.bin")), "{e:?}");
        assert_nothing_left(&d);
        assert_eq!(size(1 << 40), "1 TiB");
        assert_eq!(size(1000), "1000 bytes");
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_message(br#"{"error_message":"artifact not found?sig=abc","error_details":"x"}"#).as_deref(),
            Some("artifact not found?sig=REDACTED")
        );
        assert_eq!(error_message(br#"{"code":5,"message":"no run"}"#).as_deref(), Some("no run"));
        assert_eq!(error_message(b"<html>"), None);
    }
}

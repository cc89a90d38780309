//! Unpacking an archive into part files (the sink of an archive task): the payload the task's
//! [`BodyDecoder`] yields from the response body is gzip → tar, decoded as a stream on a blocking
//! thread so memory stays bounded whatever the archive's size.
//!
//! Every regular-file entry is written to its part file (`.<name>.jobdl-part` beside its final
//! path), hashed (MD5) as it is written and fdatasync'd; only once the WHOLE archive decoded (the
//! decoder's end reached, gzip CRC and length checked, tar end-of-archive reached) are the part
//! files renamed to their final names and each directory fsync'd once. A body that breaks or does
//! not decode fails the attempt: its part files (and the directories it created) are removed and
//! the task fetches it again from zero. Entries whose names fail the path rules, links, devices and
//! FIFOs are refused one by one (failed entries); entries the task's filter drops are skipped; the
//! rest still lands.
use super::{BodyDecoder, EntryFilter, FileOutcome, FileResult, Md5Status, Verified};
use crate::fs;
use crate::safepath::printable;
use crate::safepath::{collision_key, safe_relative_path};
use md5::{Digest, Md5};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use tokio_util::sync::CancellationToken;

/// Bytes of an entry copied to its part file at once.
const COPY_BUF: usize = 128 << 10;

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
    /// built near that (4 GiB of zeros gzips about 770×). 1 TiB is more than any archive a
    /// service streams through its API as one response body.
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
#[derive(Clone)]
pub struct Target {
    /// The destination root, held open: the archive's directory and entries are created from it,
    /// never through a symlink.
    pub root: fs::Dir,
    /// Absolute directory the entries land in (inside `root`).
    pub dir: PathBuf,
    /// `dir` relative to `root`, `/`-separated: entries are shown as `<display>/<entry path>`.
    pub display: String,
    /// Which entries to extract, by their path in the archive (`None`: all).
    pub entries: Option<EntryFilter>,
}

impl Target {
    /// Whether the entry at `rel` (its path in the archive) is extracted.
    fn keeps(&self, rel: &str) -> bool {
        self.entries.as_ref().is_none_or(|f| (f.0)(rel))
    }
}

/// The first failure seen inside the pipeline, kept because gzip and tar wrap the errors of the
/// reader below them in their own messages.
type Cause = Rc<RefCell<Option<String>>>;

/// The decoder's output: its first error is kept as the attempt's cause.
struct FirstError<R> {
    inner: R,
    cause: Cause,
}

impl<R: Read> Read for FirstError<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.cause.borrow_mut().get_or_insert_with(|| e.to_string());
            }
        })
    }
}

/// What an archive that decoded whole left: one outcome per entry (landed or refused), in
/// archive order, and what was verified about each landed one (for the manifest).
#[derive(Debug, Default)]
pub struct Unpacked {
    /// Entries landed or refused.
    pub files: Vec<FileOutcome>,
    /// Size, MD5 (computed while writing) and modification time of each landed entry.
    pub verified: Vec<Verified>,
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

/// A part file written in this attempt, published once the whole archive decoded.
struct Pending {
    rel: String,
    part: PathBuf,
    dest: PathBuf,
    bytes: u64,
    md5: [u8; 16],
    mtime_ns: Option<u64>,
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
        self.refused.push(FileOutcome::failed(&display, &why));
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

/// Unpack one archive into `target`, as a stream: `decoder` turns `body` into the archive's gzip
/// bytes. Entries are published under their final names only when the whole body decoded; on any
/// error every part file and directory this call created is removed. Past a ceiling of `limits`
/// the archive fails as a whole ([`UnpackError::Limit`]). `on_bytes` is told of every entry byte
/// written.
pub fn unpack<R: Read>(
    body: R,
    decoder: &dyn BodyDecoder,
    target: &Target,
    limits: Limits,
    on_bytes: &dyn Fn(u64),
    cancel: &CancellationToken,
) -> Result<Unpacked, UnpackError> {
    let mut w = Written::default();
    let meter = Meter::new(limits);
    let result = decode_into(body, decoder, target, &mut w, &meter, on_bytes, cancel);
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
    decoder: &dyn BodyDecoder,
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
    let payload = FirstError { inner: decoder.decode(Box::new(body)), cause: cause.clone() };
    let gz = flate2::read::MultiGzDecoder::new(Compressed { inner: payload, meter: meter.clone() });
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
    // end) and the end of the decoder's input (its own closing checks).
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
    let metadata = matches!(kind, T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink);
    let path = rel.trim_end_matches('/');
    if !metadata && !path.is_empty() && path != "." && !target.keeps(path) {
        return Ok(()); // dropped by --include / --exclude: its bytes are read past, never written
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
            w.pending.push(Pending {
                rel: rel.clone(),
                part: part.clone(),
                dest,
                bytes: 0,
                md5: [0; 16],
                mtime_ns: None,
            });
            w.seen.insert(key, w.pending.len() - 1);
            w.pending.len() - 1
        }
    };
    // A new file (whatever someone left under the part name is unlinked, never followed).
    let mut file = target.root.create_fresh_at(&part).map_err(disk)?;
    let want = entry.size();
    let mut written = 0u64;
    let mut md5 = Md5::new();
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(broken(&e, cause, cancel)),
        };
        file.write_all(&buf[..n]).map_err(disk)?;
        md5.update(&buf[..n]);
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
    let p = &mut w.pending[index];
    p.bytes = written;
    p.md5 = md5.finalize().into();
    // A rename keeps the modification time: what the manifest records is the final file's.
    p.mtime_ns = file.metadata().ok().as_ref().and_then(fs::modified_ns);
    Ok(())
}

/// The whole archive decoded: rename every part file to its final name, then fsync each
/// directory once.
fn publish(target: &Target, w: Written) -> Unpacked {
    let mut outcomes = w.refused;
    let mut verified = Vec::with_capacity(w.pending.len());
    let mut dirs: BTreeSet<PathBuf> = w.created.iter().filter_map(|d| d.parent().map(Path::to_path_buf)).collect();
    for p in w.pending {
        let display = format!("{}/{}", target.display, p.rel);
        match target.root.rename_at(&p.part, &p.dest) {
            Ok(()) => {
                if let Some(d) = p.dest.parent() {
                    dirs.insert(d.to_path_buf());
                }
                verified.push(Verified {
                    display: display.clone(),
                    size: p.bytes,
                    md5: Some(p.md5),
                    md5_verified: false,
                    check: None,
                    etag: None,
                    mtime_ns: p.mtime_ns,
                });
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
    Unpacked { files: outcomes, verified }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
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

    /// The body as it comes (this decoder adds nothing: the wire shapes are the providers').
    struct Raw;

    impl BodyDecoder for Raw {
        fn decode<'a>(&self, body: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
            body
        }
        fn error_message(&self, _: &[u8]) -> Option<String> {
            None
        }
    }

    /// The body carrying `archive` (for [`Raw`], the archive itself).
    fn body_of(archive: &[u8]) -> Vec<u8> {
        archive.to_vec()
    }

    /// A body in the given pieces (as HTTP chunks arrive); the envelope tests of providers use it too.
    pub(crate) struct Pieces(VecDeque<Vec<u8>>);

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

    /// A body that ends with "connection reset by peer" where its pieces end.
    pub(crate) struct Reset(pub(crate) Pieces);

    impl Read for Reset {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::other("connection reset by peer")),
                n => Ok(n),
            }
        }
    }

    /// `body` cut at each of `cuts`.
    pub(crate) fn split(body: &[u8], cuts: &[usize]) -> Pieces {
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
            entries: None,
        };
        Dest { _t: t, root, target }
    }

    fn unpack_body(d: &Dest, body: impl Read) -> Result<Vec<FileOutcome>, UnpackError> {
        unpack(body, &Raw, &d.target, Limits::default(), &|_| {}, &CancellationToken::new()).map(|u| u.files)
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
        let files = unpack_body(&d, split(&body_of(&sample()), &[])).unwrap();
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

    fn assert_nothing_left(d: &Dest) {
        assert_eq!(files_under(&d.root), Vec::<String>::new());
        assert!(!d.target.dir.exists(), "the archive's directory was created by the failed attempt");
    }

    #[test]
    fn truncated_bodies_fail_and_leave_nothing() {
        let body = body_of(&sample());
        for keep in [0, 5, 9, 20, body.len() / 2, body.len() - 3, body.len() - 2, body.len() - 1] {
            let d = dest();
            let e = unpack_body(&d, split(&body[..keep], &[])).unwrap_err();
            assert!(matches!(e, UnpackError::Broken(_)), "{keep}: {e:?}");
            assert_nothing_left(&d);
        }
    }

    #[test]
    fn a_transport_error_is_named() {
        let body = body_of(&sample());
        let d = dest();
        let e = unpack_body(&d, Reset(split(&body[..body.len() / 2], &[]))).unwrap_err();
        assert_eq!(e, UnpackError::Broken("connection reset by peer".into()));
        assert_nothing_left(&d);
    }

    #[test]
    fn bad_gzip_crc_and_length_fail() {
        let tgz = sample();
        for (at, what) in [(tgz.len() - 8, "crc"), (tgz.len() - 2, "length")] {
            let mut bad = tgz.clone();
            bad[at] ^= 0x55;
            let d = dest();
            let e = unpack_body(&d, split(&body_of(&bad), &[])).unwrap_err();
            assert!(matches!(e, UnpackError::Broken(_)), "{what}: {e:?}");
            assert_nothing_left(&d);
        }
        // A corrupt deflate stream, and something that is not gzip at all.
        let mut bad = tgz.clone();
        bad[20] ^= 0xff;
        let d = dest();
        assert!(matches!(unpack_body(&d, split(&body_of(&bad), &[])), Err(UnpackError::Broken(_))));
        assert!(matches!(unpack_body(&d, split(&body_of(b"plain text"), &[])), Err(UnpackError::Broken(_))));
        assert_nothing_left(&d);
    }

    #[test]
    fn short_tar_fails() {
        let tar = tar_of(&[E::File("a.txt", b"alpha"), E::File("b.txt", &[1u8; 2000])]);
        // Without the end-of-archive blocks; then cut inside the second entry's data.
        for keep in [tar.len() - 1024, 512 * 3 + 100, 512 * 3] {
            let d = dest();
            let e = unpack_body(&d, split(&body_of(&gz(&tar[..keep])), &[])).unwrap_err();
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
        let files = unpack_body(&d, split(&body_of(&tgz), &[])).unwrap();
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
        let files = unpack_body(&d, split(&body_of(&tgz), &[])).unwrap();
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
        let files = unpack_body(&d, split(&body_of(&tgz), &[])).unwrap();
        assert!(matches!(&files[0].result, FileResult::Failed(e) if e.contains("symlink")), "{files:?}");
        assert_eq!(files[1].result, FileResult::Downloaded);
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn cancellation_stops_and_cleans_up() {
        let d = dest();
        let cancel = CancellationToken::new();
        let body = body_of(&gz(&tar_of(&[E::File("a", &[1u8; 100_000]), E::File("b", &[2u8; 100_000])])));
        let first_bytes = |_: u64| cancel.cancel();
        let e = unpack(split(&body, &[]), &Raw, &d.target, Limits::default(), &first_bytes, &cancel).unwrap_err();
        assert_eq!(e, UnpackError::Cancelled);
        assert_nothing_left(&d);
    }

    fn unpack_with(d: &Dest, body: impl Read, limits: Limits) -> Result<Vec<FileOutcome>, UnpackError> {
        unpack(body, &Raw, &d.target, limits, &|_| {}, &CancellationToken::new()).map(|u| u.files)
    }

    #[test]
    fn the_decoded_bytes_cap_fails_the_archive_and_keeps_nothing() {
        let zeros = vec![0u8; 600 << 10];
        let tgz = gz(&tar_of(&[E::File("small.txt", b"fine"), E::File("a.bin", &zeros), E::File("b.bin", &zeros)]));
        let d = dest();
        let cap = Limits { max_ratio: 0, max_bytes: 1 << 20 };
        let e = unpack_with(&d, split(&body_of(&tgz), &[]), cap).unwrap_err();
        let UnpackError::Limit(msg) = &e else { panic!("{e:?}") };
        assert!(msg.contains("archive_max_bytes") && msg.contains("JOBDL_ARCHIVE_MAX_BYTES"), "{msg}");
        assert!(msg.contains("1 MiB"), "{msg}");
        assert_nothing_left(&d);
        // The same archive under the defaults (a small archive of zeros is not a bomb).
        let d = dest();
        assert_eq!(unpack_with(&d, split(&body_of(&tgz), &[]), Limits::default()).unwrap().len(), 3);
        // One entry larger than the cap is refused before it is written.
        let d = dest();
        let big = gz(&tar_of(&[E::File("big.bin", &[0u8; 3 << 20])]));
        let e = unpack_with(&d, split(&body_of(&big), &[]), cap).unwrap_err();
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
        let e = unpack_with(&d, split(&body_of(&tgz), &[]), Limits::default()).unwrap_err();
        let UnpackError::Limit(msg) = &e else { panic!("{e:?}") };
        assert!(msg.contains("decompression bomb") && msg.contains("JOBDL_ARCHIVE_MAX_RATIO = 200"), "{msg}");
        assert_nothing_left(&d);
        // Turned off, it lands.
        let d = dest();
        let off = Limits { max_ratio: 0, max_bytes: 0 };
        assert_eq!(unpack_with(&d, split(&body_of(&tgz), &[]), off).unwrap()[0].bytes, 80 << 20);
    }

    #[test]
    fn an_entry_larger_than_the_cap_or_the_free_space_is_refused_before_writing() {
        let mut h = header("huge.bin", EntryType::Regular, 0);
        h.set_size(1 << 60);
        h.set_cksum();
        let mut tar = h.as_bytes().to_vec();
        tar.extend_from_slice(&[0u8; 4096]);
        let body = body_of(&gz(&tar));
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
    fn landed_entries_are_recorded_with_the_md5_of_their_bytes() {
        use md5::{Digest, Md5};
        let d = dest();
        let u = unpack(split(&sample(), &[]), &Raw, &d.target, Limits::default(), &|_| {}, &CancellationToken::new())
            .unwrap();
        let p = "named-outputs/train/main-logs";
        let got: Vec<_> = u.verified.iter().map(|v| (v.display.as_str(), v.size, v.md5)).collect();
        let md5 = |b: &[u8]| Some(<[u8; 16]>::from(Md5::digest(b)));
        assert_eq!(
            got,
            [
                (format!("{p}/a.txt").as_str(), 5, md5(b"alpha")),
                (format!("{p}/logs/sub/b.log").as_str(), 3000, md5(&[7u8; 3000])),
                (format!("{p}/c").as_str(), 0, md5(b"")),
            ]
        );
        for v in &u.verified {
            assert!(!v.md5_verified && v.etag.is_none() && v.check.is_none(), "{v:?}");
            let meta = std::fs::metadata(d.root.join(&v.display)).unwrap();
            assert_eq!(v.mtime_ns, crate::fs::modified_ns(&meta), "{}", v.display);
        }
    }

    #[test]
    fn the_entry_filter_drops_entries_and_their_directories() {
        let mut d = dest();
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = asked.clone();
        d.target.entries = Some(EntryFilter(std::sync::Arc::new(move |rel: &str| {
            seen.lock().unwrap().push(rel.to_string());
            rel.ends_with(".log")
        })));
        let tgz = gz(&tar_of(&[
            E::Dir("./"),
            E::File("./a.txt", b"alpha"),
            E::Dir("empty/"),
            E::File("logs/sub/b.log", &[7u8; 3000]),
            E::Link(EntryType::Symlink, "link", "/etc/passwd"),
        ]));
        let u =
            unpack(split(&tgz, &[]), &Raw, &d.target, Limits::default(), &|_| {}, &CancellationToken::new()).unwrap();
        let p = "named-outputs/train/main-logs";
        let shown: Vec<_> = u.files.iter().map(|f| (f.display.clone(), f.result.clone())).collect();
        assert_eq!(shown, [(format!("{p}/logs/sub/b.log"), FileResult::Downloaded)]);
        assert_eq!(u.verified.len(), 1);
        assert_eq!(files_under(&d.root), [format!("{p}/logs/sub/b.log")]);
        assert!(!d.target.dir.join("empty").exists(), "a directory entry the filter drops is not created");
        assert_eq!(*asked.lock().unwrap(), ["a.txt", "empty", "logs/sub/b.log", "link"]);
    }
}

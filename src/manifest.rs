//! The download manifest, `DEST/.jobdl/manifest.json`: what jobdl verified about every file it
//! wrote into a destination (size, hash, ETag, modification time). A rerun keeps the files whose
//! record still matches both the disk and the service's listing (one listing, no byte fetched);
//! a final file that differs from its record (or, without a record, from the service) is refused
//! unless `--overwrite` is given; `jobdl verify` re-hashes the destination against it.
//!
//! Planning only: the decisions use what the listing gave (size, MD5, other check, ETag) and what
//! the engine verified; every read and write goes through [`crate::fs`].
use crate::fs::Dir;
use crate::transfer::{Expected, FileOutcome, FileResult, FileTask, Md5Status, Verified};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;

/// The manifest's name inside `DEST/.jobdl/`.
pub const FILE_NAME: &str = "manifest.json";
/// The format version written.
pub const VERSION: u32 = 1;
/// Largest manifest read (a million files take ~250 MB).
const MAX_BYTES: u64 = 1 << 30;

/// The whole manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The job of the last run that wrote here (`null` for `jobdl cp`).
    #[serde(default)]
    pub job: Option<String>,
    /// Where the last run's files came from (`foundry <endpoint>`, a redacted URL for `cp`, …).
    #[serde(default)]
    pub source: Option<String>,
    /// When the manifest was last written (RFC 3339, UTC).
    #[serde(default)]
    pub updated: Option<String>,
    /// The last run took a job that was not finished (`--allow-running`): files may be
    /// incomplete. Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// `--shard K/N`: the share of the files this manifest records (K counts from 0). Absent
    /// for a whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    /// What the last run asked for (outputs and filters), so that `verify --remote` lists the
    /// same files again. Absent for `cp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    /// One entry per file, sorted by path.
    #[serde(default)]
    pub files: Vec<Entry>,
}

/// The shard a manifest records.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardRecord {
    /// This node's share, `0..count`.
    pub index: usize,
    /// How many nodes shared the files.
    pub count: usize,
}

/// What a download asked for (`--output`, `--all-outputs`, `--include`, `--exclude`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    /// `--output` values as given.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// `--all-outputs`.
    #[serde(default)]
    pub all_outputs: bool,
    /// `--include` globs.
    #[serde(default)]
    pub include: Vec<String>,
    /// `--exclude` globs.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// The manifest file of a run: `manifest.json`, or `manifest-shard-K-of-N.json` for a shard.
pub fn file_name(shard: Option<crate::shard::Shard>) -> String {
    match shard {
        Some(s) => format!("manifest-{}.json", s.tag()),
        None => FILE_NAME.to_string(),
    }
}

/// What jobdl recorded about one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Path relative to the destination, `/`-separated (as the summary shows it).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// A hash of the bytes jobdl wrote, when one was computed.
    pub hash: Option<Hash>,
    /// What the service vouched for: `md5`, another check (`crc32c`, `sha256`, `md5-multipart`,
    /// …), or `none` (size only; a locally computed MD5 may still be in `hash`).
    pub verified_by: String,
    /// The object's ETag when the file was written, when the service sent one.
    pub etag: Option<String>,
    /// The file's modification time when jobdl wrote or last checked it (ns since the epoch).
    pub mtime_ns: Option<u64>,
    /// When the file was verified (RFC 3339, UTC).
    pub time: String,
}

/// A hash of a file's bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hash {
    /// `md5`, `md5-multipart`, `crc32`, `crc32c`, `crc64nvme` or `sha256`.
    pub kind: String,
    /// Lower-case hex.
    pub value: String,
    /// `md5-multipart`: the size of every part but the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
    /// `md5-multipart`: the number of parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Hash {
    /// An MD5.
    pub fn md5(m: &[u8; 16]) -> Hash {
        Hash { kind: "md5".into(), value: hex(m), part_size: None, parts: None }
    }

    /// Another whole-object check.
    pub fn check(e: &Expected) -> Hash {
        let (value, part_size, parts) = match *e {
            Expected::Md5Multipart { digest, parts, part_size } => (hex(&digest), Some(part_size), Some(parts)),
            Expected::Crc32(v) | Expected::Crc32c(v) => (hex(&v.to_be_bytes()), None, None),
            Expected::Crc64Nvme(v) => (hex(&v.to_be_bytes()), None, None),
            Expected::Sha256(d) => (hex(&d), None, None),
        };
        Hash { kind: e.kind().as_str().into(), value, part_size, parts }
    }

    /// The MD5, when this is one.
    pub fn as_md5(&self) -> Option<[u8; 16]> {
        (self.kind == "md5").then(|| unhex::<16>(&self.value)).flatten()
    }

    /// The check, when this is one of the others.
    pub fn as_check(&self) -> Option<Expected> {
        Some(match self.kind.as_str() {
            "md5-multipart" => Expected::Md5Multipart {
                digest: unhex::<16>(&self.value)?,
                parts: self.parts?,
                part_size: self.part_size.filter(|p| *p > 0)?,
            },
            "crc32" => Expected::Crc32(u32::from_be_bytes(unhex::<4>(&self.value)?)),
            "crc32c" => Expected::Crc32c(u32::from_be_bytes(unhex::<4>(&self.value)?)),
            "crc64nvme" => Expected::Crc64Nvme(u64::from_be_bytes(unhex::<8>(&self.value)?)),
            "sha256" => Expected::Sha256(unhex::<32>(&self.value)?),
            _ => return None,
        })
    }

    /// Hash `len` bytes of `file` the same way (blocking). `None` for an unknown kind.
    pub fn of_file(&self, file: &std::fs::File, len: u64) -> Option<io::Result<Hash>> {
        if self.as_md5().is_some() {
            return Some(crate::transfer::md5_of_file(file, len).map(|m| Hash::md5(&m)));
        }
        let want = self.as_check()?;
        Some(crate::transfer::check_of_file(file, len, &want).map(|c| Hash::check(&c)))
    }
}

/// The current time, RFC 3339 (UTC, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// An ETag without its quotes and weak marker (listings and responses quote it differently).
fn same_etag(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().trim_start_matches("W/").trim_matches('"').to_string();
    norm(a) == norm(b)
}

impl Entry {
    /// The record of a file the engine just published.
    pub fn from_verified(v: &Verified, time: &str) -> Entry {
        let check = v.check.as_ref();
        Entry {
            path: v.display.clone(),
            size: v.size,
            hash: v.md5.as_ref().map(Hash::md5).or_else(|| check.map(Hash::check)),
            verified_by: if v.md5_verified { "md5".into() } else { check.map_or("none", |c| c.kind().as_str()).into() },
            etag: v.etag.clone(),
            mtime_ns: v.mtime_ns,
            time: time.to_string(),
        }
    }

    fn md5(&self) -> Option<[u8; 16]> {
        self.hash.as_ref().and_then(Hash::as_md5)
    }

    fn check(&self) -> Option<Expected> {
        self.hash.as_ref().and_then(Hash::as_check)
    }
}

/// Whether the service's listing still describes the object `rec` was written from: every
/// identity both sides know (size, MD5, the same kind of check, ETag) agrees, and at least one
/// was compared. A listing that gives only sizes (MLflow) is trusted on the size.
pub fn service_matches(task: &FileTask, rec: &Entry) -> bool {
    let mut compared = false;
    if let Some(s) = task.size {
        if s != rec.size {
            return false;
        }
        compared = true;
    }
    if let (Some(want), Some(have)) = (task.md5, rec.md5()) {
        if want != have {
            return false;
        }
        compared = true;
    }
    if let (Some(want), Some(have)) = (task.check, rec.check())
        && want.kind() == have.kind()
    {
        if want != have {
            return false;
        }
        compared = true;
    }
    if let (Some(want), Some(have)) = (&task.etag, &rec.etag) {
        if !same_etag(want, have) {
            return false;
        }
        compared = true;
    }
    compared
}

/// How the service's listing of a file differs from its record (`verify --remote`): the first of
/// size, MD5, other check and ETag that both sides know and that differ, said as a reason; `None`
/// when everything both know agrees (or nothing can be compared).
pub fn remote_difference(task: &FileTask, rec: &Entry) -> Option<String> {
    if let Some(s) = task.size
        && s != rec.size
    {
        return Some(format!("{s} bytes on the service, {} recorded", rec.size));
    }
    if let (Some(want), Some(have)) = (task.md5, rec.md5())
        && want != have
    {
        return Some("its MD5 on the service differs from the record".into());
    }
    if let (Some(want), Some(have)) = (task.check, rec.check())
        && want.kind() == have.kind()
        && want != have
    {
        return Some(format!("its {} on the service differs from the record", want.kind().as_str()));
    }
    if let (Some(want), Some(have)) = (&task.etag, &rec.etag)
        && !same_etag(want, have)
    {
        return Some(format!("its ETag on the service is {want}, {have} recorded"));
    }
    None
}

/// What to do with one planned file, given what is at its final path.
#[derive(Debug)]
pub enum Decision {
    /// Fetch it (nothing there, jobdl's own unchanged copy of an object that changed, or
    /// `--overwrite`).
    Fetch,
    /// Keep the local file: it is what the service lists. `entry` is its (new) record.
    Keep {
        /// The record to keep in the manifest.
        entry: Entry,
        /// The skipped outcome for the summary.
        outcome: FileOutcome,
    },
    /// Refuse the file: something not written by jobdl, or changed since, is there.
    Refuse(FileOutcome),
}

fn skipped(task: &FileTask, entry: &Entry) -> FileOutcome {
    let md5 = match (task.md5, entry.md5()) {
        (Some(a), Some(b)) if a == b => Md5Status::Verified,
        _ => Md5Status::Absent,
    };
    let checked = match (task.check, entry.check()) {
        (Some(a), Some(b)) if a == b => Some(a.kind()),
        _ => None,
    };
    FileOutcome { display: task.display.clone(), bytes: entry.size, result: FileResult::Skipped, md5, checked }
}

fn refused(task: &FileTask, why: &str) -> Decision {
    Decision::Refuse(FileOutcome {
        display: task.display.clone(),
        bytes: 0,
        result: FileResult::Failed(format!(
            "{why}; not overwritten (--overwrite replaces it, or move it away and run again)"
        )),
        md5: Md5Status::Absent,
        checked: None,
    })
}

/// Decide about one planned file (blocking: it may re-hash the local file). `rec` is its record
/// in the manifest, if any. The rule:
/// - nothing at the final path: fetch;
/// - a record, and the file still has the recorded size and modification time (or, touched only,
///   still the recorded hash): keep it when the listing still matches the record, else fetch the
///   new version; a file that differs from its record is refused unless `overwrite`;
/// - no record: a file jobdl wrote (its ETag extended attribute) is kept while the object's ETag
///   (or check) still matches, else fetched; any other file is kept when it has the listed size
///   and MD5 (or other check), and refused when it differs or cannot be compared — fetched instead
///   with `overwrite`.
pub fn decide(root: &Dir, task: &FileTask, rec: Option<&Entry>, overwrite: bool, time: &str) -> Decision {
    let Ok(place) = root.place(&task.dest) else { return Decision::Fetch };
    // The final name is read only when it is a regular file (a link there is never followed;
    // the engine replaces it).
    let Ok(Some(file)) = place.open_final() else { return Decision::Fetch };
    let Ok(meta) = file.metadata() else { return Decision::Fetch };
    let (len, mtime) = (meta.len(), crate::fs::modified_ns(&meta));
    let rehash = |h: &Hash| h.of_file(&file, len).and_then(Result::ok);

    if let Some(rec) = rec {
        let untouched = len == rec.size && mtime.is_some() && mtime == rec.mtime_ns;
        let same_bytes =
            untouched || (len == rec.size && rec.hash.as_ref().is_some_and(|h| rehash(h).as_ref() == Some(h)));
        if !same_bytes {
            if overwrite {
                return Decision::Fetch;
            }
            let why = if len != rec.size {
                format!("the local file changed since jobdl downloaded it ({len} bytes, {} recorded)", rec.size)
            } else if rec.hash.is_some() {
                "the local file changed since jobdl downloaded it (its hash differs from the record)".to_string()
            } else {
                "the local file was modified since jobdl downloaded it".to_string()
            };
            return refused(task, &why);
        }
        if !service_matches(task, rec) {
            crate::log::log(1, format!("{}: the object changed since it was downloaded; fetching it", task.display));
            return Decision::Fetch;
        }
        let mut entry = rec.clone();
        if !untouched {
            entry.mtime_ns = mtime;
            entry.time = time.to_string();
        }
        let outcome = skipped(task, &entry);
        return Decision::Keep { entry, outcome };
    }

    // Without a record, a file that matches the service is kept whatever `overwrite` says;
    // `overwrite` turns only a refusal into a fetch.
    match unrecorded(task, &file, len, mtime, time) {
        Decision::Refuse(_) if overwrite => Decision::Fetch,
        d => d,
    }
}

/// The decision for a local file jobdl has no manifest record of (see [`decide`]).
fn unrecorded(task: &FileTask, file: &std::fs::File, len: u64, mtime: Option<u64>, time: &str) -> Decision {
    let rehash = |h: &Hash| h.of_file(file, len).and_then(Result::ok);
    let etag = match crate::fs::source_etag(file) {
        crate::fs::SourceTag::Modified => {
            return refused(task, "the local file was modified since jobdl downloaded it");
        }
        crate::fs::SourceTag::Etag(e) => Some(e),
        crate::fs::SourceTag::None | crate::fs::SourceTag::Unsupported => None,
    };
    let sized = task.size.is_none_or(|s| s == len);
    // Compare with the service's MD5 or other check when it gives one.
    let want = task.md5.as_ref().map(Hash::md5).or_else(|| task.check.as_ref().map(Hash::check));
    let hashed = match (&want, sized) {
        (Some(w), true) => Some(rehash(w).as_ref() == Some(w)),
        _ => None,
    };
    let adopt = |hash: Option<Hash>, verified_by: &str| {
        let entry = Entry {
            path: task.display.clone(),
            size: len,
            hash,
            verified_by: verified_by.to_string(),
            etag: task.etag.clone().or_else(|| etag.clone()),
            mtime_ns: mtime,
            time: time.to_string(),
        };
        let outcome = skipped(task, &entry);
        Decision::Keep { entry, outcome }
    };
    if let Some(recorded) = &etag {
        // jobdl wrote this file (an older run) and it was not modified since.
        let etag_same = task.etag.as_deref().is_some_and(|e| same_etag(e, recorded));
        if sized && (hashed == Some(true) || (hashed.is_none() && etag_same)) {
            let by = if hashed == Some(true) { want.as_ref().map_or("none", |w| w.kind.as_str()) } else { "none" };
            return adopt(want.clone().filter(|_| hashed == Some(true)), by);
        }
        crate::log::log(1, format!("{}: the object changed since jobdl wrote the file; fetching it", task.display));
        return Decision::Fetch;
    }
    match (task.size, hashed) {
        (Some(s), _) if s != len => refused(
            task,
            &format!(
                "a different file is already there ({len} bytes; the service's has {s}) and jobdl has no record of it"
            ),
        ),
        (None, _) => {
            refused(task, "a file jobdl has no record of is already there (the service lists no size to compare)")
        }
        (_, Some(true)) => {
            let by = want.as_ref().map_or("none", |w| w.kind.as_str()).to_string();
            adopt(want.clone(), &by)
        }
        (_, Some(false)) => refused(
            task,
            &format!(
                "a different file is already there ({} differs from the service's) and jobdl has no record of it",
                want.as_ref().map_or("hash", |w| w.kind.as_str())
            ),
        ),
        (_, None) => refused(
            task,
            "a file jobdl has no record of is already there, with the service's size but no checksum to compare",
        ),
    }
}

/// Read the manifest in `.jobdl/` (absent: empty). An unreadable one is ignored with a warning:
/// then every existing file is treated as unrecorded (compared with the service, never silently
/// replaced).
pub fn load(meta: Option<&Dir>) -> Manifest {
    load_named(meta, FILE_NAME)
}

/// [`load`] of the manifest file `name` (a shard's, see [`file_name`]).
pub fn load_named(meta: Option<&Dir>, name: &str) -> Manifest {
    let Some(meta) = meta else { return Manifest::default() };
    match meta.read_regular(OsStr::new(name), MAX_BYTES) {
        Ok(Some(bytes)) => match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) if m.version <= VERSION => m,
            Ok(m) => {
                crate::log::log(0, format!("warning: {name} is version {}; ignoring it", m.version));
                Manifest::default()
            }
            Err(e) => {
                crate::log::log(
                    0,
                    format!("warning: cannot parse {}: {e}; ignoring it", meta.path().join(name).display()),
                );
                Manifest::default()
            }
        },
        Ok(None) => Manifest::default(),
        Err(e) => {
            crate::log::log(0, format!("warning: {e}; ignoring the manifest"));
            Manifest::default()
        }
    }
}

/// Write the manifest atomically into `.jobdl/`.
pub fn save(meta: &Dir, m: &Manifest) -> io::Result<()> {
    save_named(meta, FILE_NAME, m)
}

/// [`save`] as the manifest file `name` (a shard's, see [`file_name`]).
pub fn save_named(meta: &Dir, name: &str, m: &Manifest) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(m).map_err(io::Error::other)?;
    bytes.push(b'\n');
    meta.replace_file(OsStr::new(name), &bytes)
}

impl Manifest {
    /// Entries by path.
    pub fn by_path(&self) -> BTreeMap<String, Entry> {
        self.files.iter().map(|e| (e.path.clone(), e.clone())).collect()
    }
}

/// Build the manifest to write after a run: the previous entries, updated with what this run
/// kept and verified.
pub fn updated(
    mut entries: BTreeMap<String, Entry>,
    job: Option<&str>,
    source: &str,
    kept: Vec<Entry>,
    verified: &[Verified],
) -> Manifest {
    let time = now();
    for e in kept {
        entries.insert(e.path.clone(), e);
    }
    for v in verified {
        entries.insert(v.display.clone(), Entry::from_verified(v, &time));
    }
    Manifest {
        version: VERSION,
        job: job.map(str::to_string),
        source: Some(source.to_string()),
        updated: Some(time),
        partial: false,
        shard: None,
        request: None,
        files: entries.into_values().collect(),
    }
}

/// The verdict of `jobdl verify` on one recorded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Same size and hash (or size only, when no hash was recorded).
    Ok {
        /// Whether a hash was compared.
        hashed: bool,
    },
    /// Different bytes.
    Changed(String),
    /// No regular file at the path.
    Missing,
}

/// Re-hash the file of `entry` below `root` (blocking).
pub fn check_file(root: &Dir, entry: &Entry) -> Check {
    let Ok(rel) = crate::safepath::safe_relative_path(&entry.path) else {
        return Check::Changed("the recorded path is not a safe relative path".into());
    };
    let Ok(place) = root.place(&root.path().join(&rel)) else { return Check::Missing };
    let file = match place.open_final() {
        Ok(Some(f)) => f,
        Ok(None) => return Check::Missing,
        Err(e) => return Check::Changed(format!("cannot read it: {e}")),
    };
    let len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => return Check::Changed(format!("cannot read it: {e}")),
    };
    if len != entry.size {
        return Check::Changed(format!("{len} bytes, {} recorded", entry.size));
    }
    let Some(h) = &entry.hash else {
        let mtime = file.metadata().ok().as_ref().and_then(crate::fs::modified_ns);
        if entry.mtime_ns.is_some() && mtime != entry.mtime_ns {
            return Check::Changed("modified since jobdl wrote it (no hash recorded to compare)".into());
        }
        return Check::Ok { hashed: false };
    };
    match h.of_file(&file, len) {
        None => Check::Ok { hashed: false },
        Some(Ok(got)) if got == *h => Check::Ok { hashed: true },
        Some(Ok(_)) => Check::Changed(format!("{} differs from the record", h.kind)),
        Some(Err(e)) => Check::Changed(format!("cannot read it: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn task(root: &Path, rel: &str, size: Option<u64>, md5: Option<[u8; 16]>, etag: Option<&str>) -> FileTask {
        FileTask {
            display: rel.into(),
            dest: root.join(rel),
            url: url::Url::parse("https://a.blob.core.windows.net/c/x").unwrap().into(),
            headers: vec![],
            size,
            md5,
            check: None,
            etag: etag.map(str::to_string),
            hints: Default::default(),
            refresh: None,
            sign: None,
        }
    }

    fn md5(b: &[u8]) -> [u8; 16] {
        use md5::Digest;
        md5::Md5::digest(b).into()
    }

    fn entry(rel: &str, bytes: &[u8], etag: Option<&str>, mtime: Option<u64>) -> Entry {
        Entry {
            path: rel.into(),
            size: bytes.len() as u64,
            hash: Some(Hash::md5(&md5(bytes))),
            verified_by: "md5".into(),
            etag: etag.map(str::to_string),
            mtime_ns: mtime,
            time: now(),
        }
    }

    #[test]
    fn remote_difference_names_what_changed_on_the_service() {
        let root = Path::new("/d");
        let rec = entry("a", b"alpha\n", Some("\"0x1\""), None);
        let same = task(root, "a", Some(6), Some(md5(b"alpha\n")), Some("0x1"));
        assert_eq!(remote_difference(&same, &rec), None, "quotes around an ETag do not matter");
        assert_eq!(remote_difference(&task(root, "a", None, None, None), &rec), None, "nothing to compare");
        let grown = task(root, "a", Some(8), None, None);
        assert_eq!(remote_difference(&grown, &rec).unwrap(), "8 bytes on the service, 6 recorded");
        let rewritten = task(root, "a", Some(6), Some(md5(b"ALPHA\n")), None);
        assert!(remote_difference(&rewritten, &rec).unwrap().contains("MD5"));
        let retagged = task(root, "a", Some(6), None, Some("0x2"));
        assert!(remote_difference(&retagged, &rec).unwrap().contains("ETag"));
    }

    #[test]
    fn a_shard_has_its_own_manifest_file_and_old_manifests_still_load() {
        assert_eq!(file_name(None), "manifest.json");
        assert_eq!(file_name(Some(crate::shard::Shard { index: 1, count: 3 })), "manifest-shard-1-of-3.json");
        let m: Manifest = serde_json::from_str(r#"{"version":1,"files":[]}"#).unwrap();
        assert!(!m.partial && m.shard.is_none() && m.request.is_none());
        let text = serde_json::to_string(&m).unwrap();
        assert!(!text.contains("partial") && !text.contains("shard"), "{text}");
    }

    #[test]
    fn hashes_round_trip_through_their_text_form() {
        let checks = [
            Expected::Crc32(0xcbf4_3926),
            Expected::Crc32c(7),
            Expected::Crc64Nvme(0xae8b_1486_0a79_9888),
            Expected::Sha256([9; 32]),
            Expected::Md5Multipart { digest: [3; 16], parts: 4, part_size: 8 << 20 },
        ];
        for c in checks {
            let h = Hash::check(&c);
            assert_eq!(h.as_check(), Some(c), "{h:?}");
            let back: Hash = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
            assert_eq!(back, h);
        }
        let m = md5(b"x");
        assert_eq!(Hash::md5(&m).as_md5(), Some(m));
        assert_eq!(Hash::md5(&m).as_check(), None);
    }

    #[test]
    fn the_listing_must_agree_on_everything_both_sides_know() {
        let root = Path::new("/d");
        let rec = entry("f", b"hello", Some("\"0x8D1\""), None);
        assert!(service_matches(&task(root, "f", Some(5), Some(md5(b"hello")), Some("0x8D1")), &rec));
        assert!(!service_matches(&task(root, "f", Some(5), Some(md5(b"world")), None), &rec));
        assert!(!service_matches(&task(root, "f", Some(6), None, None), &rec));
        assert!(!service_matches(&task(root, "f", Some(5), None, Some("0x8D2")), &rec));
        // Size only (MLflow): trusted on the size; nothing known at all: fetched.
        assert!(service_matches(&task(root, "f", Some(5), None, None), &rec));
        assert!(!service_matches(&task(root, "f", None, None, None), &rec));
    }

    #[test]
    fn decisions_follow_the_rule() {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        let time = now();
        let kind = |d: &Decision| match d {
            Decision::Fetch => "fetch",
            Decision::Keep { .. } => "keep",
            Decision::Refuse(_) => "refuse",
        };
        let tk = task(t.path(), "f", Some(5), Some(md5(b"hello")), None);
        // Nothing there.
        assert_eq!(kind(&decide(&root, &tk, None, false, &time)), "fetch");
        std::fs::write(t.path().join("f"), b"hello").unwrap();
        let mtime = crate::fs::modified_ns(&std::fs::metadata(t.path().join("f")).unwrap());
        let rec = entry("f", b"hello", None, mtime);
        // Recorded and unchanged, listing agrees: kept; object changed on the service: fetched.
        assert_eq!(kind(&decide(&root, &tk, Some(&rec), false, &time)), "keep");
        let changed = task(t.path(), "f", Some(5), Some(md5(b"world")), None);
        assert_eq!(kind(&decide(&root, &changed, Some(&rec), false, &time)), "fetch");
        // Unrecorded but identical to the service: kept.
        assert_eq!(kind(&decide(&root, &tk, None, false, &time)), "keep");
        // Changed locally: refused, unless overwrite.
        std::fs::write(t.path().join("f"), b"HELLO").unwrap();
        assert_eq!(kind(&decide(&root, &tk, Some(&rec), false, &time)), "refuse");
        assert_eq!(kind(&decide(&root, &tk, Some(&rec), true, &time)), "fetch");
        assert_eq!(kind(&decide(&root, &tk, None, false, &time)), "refuse");
        // Touched only (same bytes, another mtime): still jobdl's file.
        std::fs::write(t.path().join("f"), b"hello").unwrap();
        let stale = entry("f", b"hello", None, Some(1));
        match decide(&root, &tk, Some(&stale), false, &time) {
            Decision::Keep { entry, .. } => assert_ne!(entry.mtime_ns, Some(1), "the new mtime is recorded"),
            d => panic!("{d:?}"),
        }
        // No record and nothing to compare with: refused.
        let blind = task(t.path(), "f", Some(5), None, None);
        assert_eq!(kind(&decide(&root, &blind, None, false, &time)), "refuse");
    }
}

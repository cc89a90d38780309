//! Resume records (`.<name>.jobdl-state`): which source a part file holds (URL path, size, ETag,
//! MD5) and, for chunked files, which chunks are durable. Written atomically (temp + rename)
//! and only after the bytes they describe were made durable.
use crate::fs;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Format version of the record.
const VERSION: u32 = 1;

/// What a part file holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Record {
    /// Format version.
    pub v: u32,
    /// URL path of the source (no query: SAS tokens change between runs).
    pub source: String,
    /// Size of the object.
    pub size: u64,
    /// ETag of the object when the bytes were fetched.
    pub etag: String,
    /// Base64 MD5 the server announced, if any.
    #[serde(default)]
    pub md5: Option<String>,
    /// Chunk size for a chunked file; `None` for a single stream (the part's length is the offset).
    #[serde(default)]
    pub chunk: Option<u64>,
    /// Durable chunk indexes (chunked files).
    #[serde(default)]
    pub done: Vec<u64>,
}

impl Record {
    /// A record for `source` at `size`/`etag`.
    pub fn new(source: &url::Url, size: u64, etag: String, md5: Option<String>, chunk: Option<u64>) -> Record {
        Record { v: VERSION, source: source.path().to_string(), size, etag, md5, chunk, done: Vec::new() }
    }

    /// Whether this record describes `source` (same URL path and version).
    pub fn matches(&self, source: &url::Url) -> bool {
        self.v == VERSION && self.source == source.path()
    }
}

/// The record beside `dest`'s part file, if it parses.
pub(super) fn load(dest: &Path) -> Option<Record> {
    let raw = std::fs::read(fs::state_path(dest)).ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Replace the record atomically (write a sibling, fsync it, rename it).
pub(super) fn save(dest: &Path, rec: &Record) -> std::io::Result<()> {
    let path = fs::state_path(dest);
    // `.<name>.tmp.jobdl-state` is itself a working-file name, so a crash never leaves a file the
    // sweep cannot recognise.
    let base = dest.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{base}.tmp{}", fs::STATE_SUFFIX));
    let json = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
    {
        let f = File::create(&tmp)?;
        std::io::Write::write_all(&mut &f, &json)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, &path)
}

/// Tracks durable chunks of one file and persists them: fdatasync the part, then save the record.
pub(super) struct ChunkLog {
    dest: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    record: Record,
    /// Completed since the last save.
    pending: BTreeSet<u64>,
    finished: bool,
}

/// Save after this many newly completed chunks (with 8 MiB chunks: every 16 MiB, as the Foundry
/// Local downloader does). Measured: a SIGKILL at half of a 256 MiB object re-fetched 6.6–6.9% on
/// the rerun instead of 13.1% with every 4 chunks, and W1 (4 GiB from nginx, 4 alternating runs
/// each) took a median 3.01 s against 3.10 s: the extra fdatasync is lost in the noise, since
/// written ranges are already flushed in the background.
const SAVE_EVERY: usize = 2;

impl ChunkLog {
    /// Start tracking `record` (its `done` list is the starting point).
    pub fn new(dest: &Path, record: Record) -> ChunkLog {
        ChunkLog {
            dest: dest.to_path_buf(),
            inner: Mutex::new(Inner { record, pending: BTreeSet::new(), finished: false }),
        }
    }

    /// Note a completed chunk; true when enough are pending that a save is due.
    pub fn complete(&self, idx: u64) -> bool {
        match self.inner.lock() {
            Ok(mut g) => {
                g.pending.insert(idx);
                g.pending.len() >= SAVE_EVERY
            }
            Err(_) => false,
        }
    }

    /// Make the pending chunks durable (fdatasync `file`) and record them. Blocking.
    pub fn persist(&self, file: &File) -> std::io::Result<()> {
        let pending: Vec<u64> = match self.inner.lock() {
            Ok(g) => g.pending.iter().copied().collect(),
            Err(_) => return Ok(()),
        };
        if pending.is_empty() {
            return Ok(());
        }
        // Only chunks completed before this sync are recorded: the sync covers their bytes.
        file.sync_data()?;
        let rec = match self.inner.lock() {
            Ok(mut g) => {
                for i in &pending {
                    g.pending.remove(i);
                }
                let mut done: BTreeSet<u64> = g.record.done.iter().copied().collect();
                done.extend(pending);
                g.record.done = done.into_iter().collect();
                g.record.clone()
            }
            Err(_) => return Ok(()),
        };
        save(&self.dest, &rec)
    }

    /// The file is complete (or discarded): nothing more to persist on drop.
    pub fn finish(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.finished = true;
        }
    }

    /// Persist on the way out (cancellation, failure) unless finished. Blocking.
    pub fn persist_unless_finished(&self, file: &File) {
        let finished = self.inner.lock().map(|g| g.finished).unwrap_or(true);
        if !finished && let Err(e) = self.persist(file) {
            crate::log::log(1, format!("{}: cannot save the resume record: {e}", self.dest.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_persist_only_after_sync() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("big.bin");
        let url = url::Url::parse("https://a.blob.core.windows.net/c/big.bin?sig=secret").unwrap();
        let rec = Record::new(&url, 100, "\"e\"".into(), None, Some(10));
        assert!(rec.matches(&url::Url::parse("https://a.blob.core.windows.net/c/big.bin?sig=other").unwrap()));
        assert!(!rec.matches(&url::Url::parse("https://a.blob.core.windows.net/c/other.bin").unwrap()));
        let part = File::create(t.path().join("part")).unwrap();
        let log = ChunkLog::new(&dest, rec);
        assert!(!log.complete(3));
        log.complete(1);
        log.complete(0);
        assert!(log.complete(7));
        log.persist(&part).unwrap();
        let back = load(&dest).unwrap();
        assert_eq!(back.done, vec![0, 1, 3, 7]);
        assert!(!std::fs::read_to_string(fs::state_path(&dest)).unwrap().contains("secret"));
        // Only the record remains: the temp sibling was renamed.
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn garbage_records_are_ignored() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("x");
        std::fs::write(fs::state_path(&dest), b"{not json").unwrap();
        assert!(load(&dest).is_none());
    }
}

//! Resume records (`.<name>.jobdl-state`): which source a part file holds (URL path, size, ETag,
//! MD5) and, for chunked files, which chunks are durable. Written atomically (temp + rename)
//! and only after the bytes they describe were made durable.
use crate::fs;
use std::collections::BTreeSet;
use std::fs::File;
use std::sync::Mutex;

/// Largest record read back: a record names at most one index per chunk (a 1 TiB file in 8 MiB
/// chunks: ~1 MB); anything longer is not one of ours.
const RECORD_MAX: u64 = 16 << 20;

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

/// The record beside the part file of `place`, if it parses.
pub(super) fn load(place: &fs::Place) -> Option<Record> {
    let raw = place.read_state(RECORD_MAX)?;
    serde_json::from_slice(&raw).ok()
}

/// Replace the record atomically (write a sibling, fsync it, rename it).
pub(super) fn save(place: &fs::Place, rec: &Record) -> std::io::Result<()> {
    let json = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
    place.write_state(&json)
}

/// Tracks durable chunks of one file and persists them: fdatasync the part, then save the record.
pub(super) struct ChunkLog {
    place: fs::Place,
    inner: Mutex<Inner>,
}

struct Inner {
    record: Record,
    /// Completed since the last save.
    pending: BTreeSet<u64>,
    finished: bool,
}

/// Save after this many newly completed chunks (with 8 MiB chunks: every 16 MiB, as the Foundry
/// Local downloader does): a kill loses little, and the extra fdatasync costs little because
/// written ranges are already flushed in the background (figures: benches/README.md).
const SAVE_EVERY: usize = 2;

impl ChunkLog {
    /// Start tracking `record` (its `done` list is the starting point).
    pub fn new(place: &fs::Place, record: Record) -> ChunkLog {
        ChunkLog {
            place: place.clone(),
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
        save(&self.place, &rec)
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
            crate::log::log(1, format!("{}: cannot save the resume record: {e}", self.place.dest_path().display()));
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
        let place = fs::Dir::open_root(t.path()).unwrap().place(&dest).unwrap();
        let url = url::Url::parse("https://a.blob.core.windows.net/c/big.bin?sig=secret").unwrap();
        let rec = Record::new(&url, 100, "\"e\"".into(), None, Some(10));
        assert!(rec.matches(&url::Url::parse("https://a.blob.core.windows.net/c/big.bin?sig=other").unwrap()));
        assert!(!rec.matches(&url::Url::parse("https://a.blob.core.windows.net/c/other.bin").unwrap()));
        let part = File::create(t.path().join("part")).unwrap();
        let log = ChunkLog::new(&place, rec);
        assert!(!log.complete(3));
        log.complete(1);
        log.complete(0);
        assert!(log.complete(7));
        log.persist(&part).unwrap();
        let back = load(&place).unwrap();
        assert_eq!(back.done, vec![0, 1, 3, 7]);
        assert!(!std::fs::read_to_string(fs::state_path(&dest)).unwrap().contains("secret"));
        // Only the record remains: the temp sibling was renamed.
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    fn load_path(p: &std::path::Path) -> Record {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn garbage_records_are_ignored() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("x");
        let place = fs::Dir::open_root(t.path()).unwrap().place(&dest).unwrap();
        std::fs::write(fs::state_path(&dest), b"{not json").unwrap();
        assert!(load(&place).is_none());
        // A record planted as a link is not followed.
        let elsewhere = t.path().join("elsewhere.json");
        let url = url::Url::parse("https://a.example.invalid/c/x").unwrap();
        std::fs::write(&elsewhere, serde_json::to_vec(&Record::new(&url, 9, "e".into(), None, None)).unwrap()).unwrap();
        std::fs::remove_file(fs::state_path(&dest)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, fs::state_path(&dest)).unwrap();
        assert!(load(&place).is_none());
        // Saving replaces the link, never writes through it.
        save(&place, &Record::new(&url, 1, "f".into(), None, None)).unwrap();
        assert_eq!(load(&place).unwrap().size, 1);
        assert_eq!(load_path(&elsewhere).size, 9);
    }
}

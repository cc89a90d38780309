//! MD5 (and the task's other check) of a chunked file computed while it downloads: a cursor hashes the contiguous prefix of
//! finished ranges (read back from the page cache) on a blocking thread, so verification
//! overlaps the transfer instead of adding a pass at the end.
use super::check::{CheckHasher, Expected};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use tokio::sync::Notify;

/// What the prefix cursor computed: the MD5 and the other check, each when asked for.
pub(super) type Hashes = (Option<[u8; 16]>, Option<Expected>);

/// Hashes `[0, total)` of a file as ranges finish, in any order.
pub(super) struct PrefixHasher {
    tx: mpsc::Sender<(u64, u64)>,
    result: tokio::sync::oneshot::Receiver<Option<Hashes>>,
    hashed: Arc<Hashed>,
}

/// How far the cursor has hashed, for downloads that must not run too far ahead of it.
struct Hashed {
    upto: AtomicU64,
    moved: Notify,
}

impl Hashed {
    fn set(&self, upto: u64) {
        self.upto.store(upto, Ordering::Release);
        self.moved.notify_waiters();
    }
}

impl PrefixHasher {
    /// Start the hashing thread for a file of `total` bytes: the MD5 when `md5`, and `check`.
    ///
    /// The cursor has a thread of its own, outside tokio's blocking pool: it waits for ranges
    /// that writes on that (bounded) pool produce, so inside it a few big files could take every
    /// thread and leave their own writes queued forever. If no thread can be started, the
    /// hashes come out as `None` and the caller reads the file once more at the end.
    pub fn start(file: Arc<File>, total: u64, md5: bool, check: Option<&Expected>) -> PrefixHasher {
        let (tx, rx) = mpsc::channel::<(u64, u64)>();
        let check = check.map(CheckHasher::new);
        let hashed = Arc::new(Hashed { upto: AtomicU64::new(0), moved: Notify::new() });
        let (done_tx, result) = tokio::sync::oneshot::channel();
        let progress = hashed.clone();
        let work = move || {
            let _ = done_tx.send(hash_prefix(file, total, md5, check, &rx, progress));
        };
        if std::thread::Builder::new().name("jobdl-hash".into()).spawn(work).is_err() {
            hashed.set(u64::MAX);
        }
        PrefixHasher { tx, result, hashed }
    }

    /// Wait until the cursor has hashed at least up to byte `pos` (or has stopped).
    pub async fn reached(&self, pos: u64) {
        loop {
            let moved = self.hashed.moved.notified();
            if self.hashed.upto.load(Ordering::Acquire) >= pos {
                return;
            }
            moved.await;
        }
    }

    /// The bytes `[start, end)` are written.
    pub fn done(&self, start: u64, end: u64) {
        let _ = self.tx.send((start, end));
    }

    /// The hashes of the whole file, or `None` if some range never arrived or could not be read.
    pub async fn finish(self) -> Option<Hashes> {
        drop(self.tx);
        self.result.await.ok().flatten()
    }
}

/// The cursor's loop: hash ranges as the prefix completes; `None` if a range never came or
/// could not be read.
fn hash_prefix(
    file: Arc<File>,
    total: u64,
    md5: bool,
    mut check: Option<CheckHasher>,
    rx: &mpsc::Receiver<(u64, u64)>,
    progress: Arc<Hashed>,
) -> Option<Hashes> {
    // However the thread ends, nobody may keep waiting for it.
    struct Release(Arc<Hashed>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.set(u64::MAX);
        }
    }
    let progress = Release(progress);
    let mut md5 = md5.then(Md5::new);
    let mut cursor = 0u64;
    let mut ready: BTreeMap<u64, u64> = BTreeMap::new();
    let mut buf = vec![0u8; 1 << 20];
    while let Ok((start, end)) = rx.recv() {
        ready.insert(start, end);
        while let Some(end) = ready.remove(&cursor) {
            while cursor < end {
                let want = ((end - cursor) as usize).min(buf.len());
                let n = file.read_at(&mut buf[..want], cursor).ok()?;
                if n == 0 {
                    return None;
                }
                if let Some(h) = md5.as_mut() {
                    h.update(&buf[..n]);
                }
                if let Some(c) = check.as_mut() {
                    c.update(&buf[..n]);
                }
                cursor += n as u64;
                progress.0.set(cursor);
            }
        }
    }
    (cursor == total).then(|| (md5.map(|h| h.finalize().into()), check.map(CheckHasher::finish)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn out_of_order_ranges_hash_like_the_whole_file() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(t.path(), &data).unwrap();
        let f = Arc::new(File::open(t.path()).unwrap());
        let crc = Expected::Crc64Nvme(0);
        let h = PrefixHasher::start(f.clone(), data.len() as u64, true, Some(&crc));
        h.done(2_000_000, 3_000_000);
        h.done(0, 1_000_000);
        h.done(1_000_000, 2_000_000);
        let want: [u8; 16] = Md5::digest(&data).into();
        let mut c = CheckHasher::new(&crc);
        c.update(&data);
        assert_eq!(h.finish().await, Some((Some(want), Some(c.finish()))));
        let h = PrefixHasher::start(f.clone(), data.len() as u64, false, Some(&crc));
        h.done(0, 3_000_000);
        assert!(matches!(h.finish().await, Some((None, Some(Expected::Crc64Nvme(_))))));
        let h = PrefixHasher::start(f, data.len() as u64, true, None);
        h.done(0, 1_000_000);
        assert_eq!(h.finish().await, None, "a missing range gives no hash");
    }

    #[tokio::test]
    async fn reached_waits_for_the_hashed_prefix_and_never_outlives_the_hasher() {
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), vec![7u8; 3 << 20]).unwrap();
        let f = Arc::new(File::open(t.path()).unwrap());
        let h = PrefixHasher::start(f.clone(), 3 << 20, true, None);
        h.done(1 << 20, 2 << 20);
        let early = tokio::time::timeout(std::time::Duration::from_millis(200), h.reached(1 << 20)).await;
        assert!(early.is_err(), "byte 1 MiB is not hashed while [0, 1 MiB) is missing");
        h.done(0, 1 << 20);
        tokio::time::timeout(std::time::Duration::from_secs(10), h.reached(2 << 20)).await.expect("prefix hashed");
        // A hasher that stops (here: the file is shorter than promised) releases every waiter.
        let h = PrefixHasher::start(f, 8 << 20, true, None);
        h.done(0, 8 << 20);
        tokio::time::timeout(std::time::Duration::from_secs(10), h.reached(8 << 20)).await.expect("released");
        assert_eq!(h.finish().await, None);
    }
}

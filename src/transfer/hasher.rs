//! MD5 (and the task's other check) of a chunked file computed while it downloads: a cursor hashes the contiguous prefix of
//! finished ranges (read back from the page cache) on a blocking thread, so verification
//! overlaps the transfer instead of adding a pass at the end.
use super::check::{CheckHasher, Expected};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc;

/// What the prefix cursor computed: the MD5 and the other check, each when asked for.
pub(super) type Hashes = (Option<[u8; 16]>, Option<Expected>);

/// Hashes `[0, total)` of a file as ranges finish, in any order.
pub(super) struct PrefixHasher {
    tx: mpsc::Sender<(u64, u64)>,
    handle: tokio::task::JoinHandle<Option<Hashes>>,
}

impl PrefixHasher {
    /// Start the hashing thread for a file of `total` bytes: the MD5 when `md5`, and `check`.
    pub fn start(file: Arc<File>, total: u64, md5: bool, check: Option<&Expected>) -> PrefixHasher {
        let (tx, rx) = mpsc::channel::<(u64, u64)>();
        let mut check = check.map(CheckHasher::new);
        let handle = tokio::task::spawn_blocking(move || {
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
                    }
                }
            }
            (cursor == total).then(|| (md5.map(|h| h.finalize().into()), check.map(CheckHasher::finish)))
        });
        PrefixHasher { tx, handle }
    }

    /// The bytes `[start, end)` are written.
    pub fn done(&self, start: u64, end: u64) {
        let _ = self.tx.send((start, end));
    }

    /// The hashes of the whole file, or `None` if some range never arrived or could not be read.
    pub async fn finish(self) -> Option<Hashes> {
        drop(self.tx);
        self.handle.await.ok().flatten()
    }
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
}

//! MD5 of a chunked file computed while it downloads: a cursor hashes the contiguous prefix of
//! finished ranges (read back from the page cache) on a blocking thread, so verification
//! overlaps the transfer instead of adding a pass at the end.
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc;

/// Hashes `[0, total)` of a file as ranges finish, in any order.
pub(super) struct PrefixHasher {
    tx: mpsc::Sender<(u64, u64)>,
    handle: tokio::task::JoinHandle<Option<[u8; 16]>>,
}

impl PrefixHasher {
    /// Start the hashing thread for a file of `total` bytes.
    pub fn start(file: Arc<File>, total: u64) -> PrefixHasher {
        let (tx, rx) = mpsc::channel::<(u64, u64)>();
        let handle = tokio::task::spawn_blocking(move || {
            let mut md5 = Md5::new();
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
                        md5.update(&buf[..n]);
                        cursor += n as u64;
                    }
                }
            }
            (cursor == total).then(|| md5.finalize().into())
        });
        PrefixHasher { tx, handle }
    }

    /// The bytes `[start, end)` are written.
    pub fn done(&self, start: u64, end: u64) {
        let _ = self.tx.send((start, end));
    }

    /// The MD5 of the whole file, or `None` if some range never arrived or could not be read.
    pub async fn finish(self) -> Option<[u8; 16]> {
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
        let h = PrefixHasher::start(f.clone(), data.len() as u64);
        h.done(2_000_000, 3_000_000);
        h.done(0, 1_000_000);
        h.done(1_000_000, 2_000_000);
        let want: [u8; 16] = Md5::digest(&data).into();
        assert_eq!(h.finish().await, Some(want));
        let h = PrefixHasher::start(f, data.len() as u64);
        h.done(0, 1_000_000);
        assert_eq!(h.finish().await, None, "a missing range gives no hash");
    }
}

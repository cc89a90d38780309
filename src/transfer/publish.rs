//! Publishing finished part files: small files share one durability barrier (group commit: one
//! `syncfs` for every file that finished within [`GATHER`] of the first one or while the
//! previous barrier ran, then the renames), as git's `core.fsyncMethod=batch` does; big files
//! are fdatasync'd on their own. Either way no file appears under its final name before its bytes
//! are durable.
//!
//! Why the gathering window: a barrier started as soon as one file is ready would cost a journal
//! commit (and on a real disk a cache flush) for every file or two of a run of small files; the
//! window gathers about ten times more files per barrier, and a file waits at most [`GATHER`]
//! longer for its name.
use crate::fs;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Files up to this size go through the shared barrier; larger ones sync themselves (their
/// bytes were already written back in the background while they downloaded).
pub(super) const BATCH_MAX: u64 = 8 << 20;
/// How long the first file of a batch waits for others to join it.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);
/// Most files renamed after one barrier.
const MAX_BATCH: usize = 1024;

struct Item {
    place: fs::Place,
    file: File,
    reply: oneshot::Sender<io::Result<()>>,
}

/// The group-commit publisher of one run.
pub(crate) struct Publisher {
    tx: mpsc::UnboundedSender<Item>,
    /// Barriers run so far.
    barriers: Arc<AtomicUsize>,
}

impl Publisher {
    /// Start the publisher task (it ends when the publisher is dropped).
    pub fn start() -> Publisher {
        let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
        let barriers = Arc::new(AtomicUsize::new(0));
        let count = barriers.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let window = tokio::time::sleep(GATHER);
                tokio::pin!(window);
                while batch.len() < MAX_BATCH {
                    tokio::select! {
                        biased;
                        item = rx.recv() => match item {
                            Some(item) => batch.push(item),
                            None => break,
                        },
                        _ = &mut window => break,
                    }
                }
                // Files finishing while this barrier runs queue up for the next one.
                count.fetch_add(1, Ordering::Relaxed);
                let _ = tokio::task::spawn_blocking(move || commit(batch)).await;
            }
        });
        Publisher { tx, barriers }
    }

    /// How many shared barriers have run.
    pub fn barriers(&self) -> usize {
        self.barriers.load(Ordering::Relaxed)
    }

    /// Make `file` (the part file of `place`) durable and rename it over the final name.
    pub async fn publish(&self, place: fs::Place, file: File) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(item)) = self.tx.send(Item { place, file, reply }) {
            // The publisher is gone (shutting down): publish this one on its own.
            return tokio::task::spawn_blocking(move || item.place.publish(&item.file))
                .await
                .map_err(io::Error::other)?;
        }
        rx.await.map_err(|_| io::Error::other("publisher stopped"))?
    }
}

/// One barrier for the whole batch, then the renames.
fn commit(batch: Vec<Item>) {
    let barrier = fs::sync_filesystem(&batch[0].file);
    for item in batch {
        let result = match &barrier {
            Ok(()) => item.place.rename_part(),
            // No filesystem barrier here: fall back to one fdatasync per file.
            Err(_) => item.place.publish(&item.file),
        };
        let _ = item.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_finishing_together_share_a_barrier_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::Dir::open_root(dir.path()).unwrap();
        let publisher = Arc::new(Publisher::start());
        let n = 40;
        let mut waits = Vec::new();
        for i in 0..n {
            let dest = dir.path().join(format!("f{i}"));
            let place = root.place(&dest).unwrap();
            let file = place.open_part().unwrap();
            std::io::Write::write_all(&mut &file, format!("body {i}").as_bytes()).unwrap();
            let p = publisher.clone();
            waits.push(tokio::spawn(async move { p.publish(place, file).await }));
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        for i in 0..n {
            let dest = dir.path().join(format!("f{i}"));
            assert_eq!(std::fs::read_to_string(&dest).unwrap(), format!("body {i}"));
            assert!(!fs::part_path(&dest).exists(), "the part file is renamed, not copied");
        }
        // All 40 were handed over within microseconds of each other: one barrier (a few on a
        // machine that stalls the test for longer than the gathering window), never one each.
        let barriers = publisher.barriers();
        assert!((1..n / 4).contains(&barriers), "{barriers} barriers for {n} files");
    }
}

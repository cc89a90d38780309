//! Publishing finished part files: small files share one durability barrier (group commit: one
//! `syncfs` for every file that finished while the previous barrier ran, then the renames), as
//! git's `core.fsyncMethod=batch` does; big files are fdatasync'd on their own. Either way no
//! file appears under its final name before its bytes are durable.
use crate::fs;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

/// Files up to this size go through the shared barrier; larger ones sync themselves (their
/// bytes were already written back in the background while they downloaded).
pub(super) const BATCH_MAX: u64 = 8 << 20;
/// Most files renamed after one barrier.
const MAX_BATCH: usize = 1024;

struct Item {
    part: PathBuf,
    dest: PathBuf,
    file: File,
    reply: oneshot::Sender<io::Result<()>>,
}

/// The group-commit publisher of one run.
pub(crate) struct Publisher {
    tx: mpsc::UnboundedSender<Item>,
}

impl Publisher {
    /// Start the publisher task (it ends when the publisher is dropped).
    pub fn start() -> Publisher {
        let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                // Files finishing while this barrier runs queue up for the next one.
                let _ = tokio::task::spawn_blocking(move || commit(batch)).await;
            }
        });
        Publisher { tx }
    }

    /// Make `file` durable and rename `part` over `dest`.
    pub async fn publish(&self, part: PathBuf, dest: PathBuf, file: File) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(item)) = self.tx.send(Item { part, dest, file, reply }) {
            // The publisher is gone (shutting down): publish this one on its own.
            return tokio::task::spawn_blocking(move || fs::publish(&item.part, &item.file, &item.dest))
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
            Ok(()) => std::fs::rename(&item.part, &item.dest),
            // No filesystem barrier here: fall back to one fdatasync per file.
            Err(_) => fs::publish(&item.part, &item.file, &item.dest),
        };
        let _ = item.reply.send(result);
    }
}

//! The two ways a body reaches its part file, both off the async workers:
//!
//! - [`FileWriter`], for chunked files: one writer thread per file; every connection of the file
//!   hands its pieces (offset + the bytes exactly as the HTTP stack delivered them) to the thread
//!   through a short bounded queue, and the thread writes them in place. A connection takes its
//!   place in the queue *before* it takes the next piece ([`FileWriter::slot`]): while it waits
//!   for the disk it holds no piece, so memory stays near hyper's read buffers (up to ~400 KiB
//!   each) per connection whatever the file's size.
//! - [`PieceWriter`], for single streams: batches written at increasing offsets on the blocking
//!   pool, one batch written while the next is received, with the in-order MD5 (and other check)
//!   fed from the bytes read back from the file.
//!
//! They stay two because their orders differ: chunks land out of order and are hashed by a cursor
//! over the finished prefix (`hasher.rs`), a stream lands in order and is hashed as it goes.
use super::check::{CheckHasher, feed_from_file};
use super::fetch::{Stop, WRITE_BUF};
use crate::fs;
use bytes::Bytes;
use md5::Md5;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Pieces queued per file before senders wait: with hyper's pieces (≤ ~400 KiB) at most a few
/// MiB, and enough that a connection rarely waits at all.
const QUEUE: usize = 4;
/// Ask the kernel to start writing back the file's dirty pages every this many bytes, so the
/// final fdatasync has little left to do.
const WRITEBACK_EVERY: u64 = 8 << 20;

enum Msg {
    Write(u64, Bytes),
    /// Everything sent before this is written (or failed): answer with the first error.
    Flush(oneshot::Sender<Result<(), String>>),
}

/// The writer thread of one file. Dropping it discards what is still queued and waits for the
/// write in progress, so no stale piece lands in the file after its fetch has ended.
pub(super) struct FileWriter {
    tx: Option<mpsc::Sender<Msg>>,
    abort: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileWriter {
    /// Start the thread writing into `file`.
    pub fn start(file: Arc<File>) -> Result<FileWriter, Stop> {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        let abort = Arc::new(AtomicBool::new(false));
        let stop = abort.clone();
        let work = move || {
            let mut first_error: Option<String> = None;
            let mut since_writeback = 0u64;
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    Msg::Write(at, bytes) => {
                        if first_error.is_some() || stop.load(Ordering::Relaxed) {
                            continue;
                        }
                        if let Err(e) = fs::write_all_at(&file, &bytes, at) {
                            first_error = Some(format!("cannot write: {e}"));
                            continue;
                        }
                        since_writeback += bytes.len() as u64;
                        // The piece goes back to the HTTP stack's allocator before the next one.
                        drop(bytes);
                        if since_writeback >= WRITEBACK_EVERY {
                            fs::start_writeback(&file, 0, 0);
                            since_writeback = 0;
                        }
                    }
                    Msg::Flush(reply) => {
                        let _ = reply.send(first_error.clone().map_or(Ok(()), Err));
                    }
                }
            }
        };
        let thread = std::thread::Builder::new()
            .name("jobdl-write".into())
            .spawn(work)
            .map_err(|e| Stop::Fail(format!("cannot start a writer thread: {e}")))?;
        Ok(FileWriter { tx: Some(tx), abort, thread: Some(thread) })
    }

    /// Queue `bytes` for offset `at` (waits while the queue is full).
    pub async fn write(&self, at: u64, bytes: Bytes) -> Result<(), Stop> {
        let tx = self.tx.as_ref().ok_or_else(gone)?;
        tx.send(Msg::Write(at, bytes)).await.map_err(|_| gone())
    }

    /// Reserve a place in the queue before taking the next piece from the network. A connection
    /// that waits for the disk this way holds no piece of its own: hyper keeps at most one piece
    /// ready, and its read buffer is reused in place once that piece is written instead of a new
    /// ~400 KiB one being allocated beside it.
    pub async fn slot(&self) -> Result<Slot<'_>, Stop> {
        let tx = self.tx.as_ref().ok_or_else(gone)?;
        tx.reserve().await.map(Slot).map_err(|_| gone())
    }

    /// Wait until everything queued so far is written; the first write error if one failed.
    pub async fn flush(&self) -> Result<(), Stop> {
        let tx = self.tx.as_ref().ok_or_else(gone)?;
        let (reply, answer) = oneshot::channel();
        tx.send(Msg::Flush(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(Stop::Fail)
    }
}

/// A reserved place in a file's queue (given back when dropped unused).
pub(super) struct Slot<'a>(mpsc::Permit<'a, Msg>);

impl Slot<'_> {
    /// Queue `bytes` for offset `at` without waiting.
    pub fn write(self, at: u64, bytes: Bytes) {
        self.0.send(Msg::Write(at, bytes));
    }
}

fn gone() -> Stop {
    Stop::Fail("internal error: the writer thread stopped".into())
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        self.abort.store(true, Ordering::Relaxed);
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A write running on the blocking pool; gives back the hashers.
type PendingWrite = tokio::task::JoinHandle<std::io::Result<(Option<Md5>, Option<CheckHasher>, Vec<u8>)>>;

/// Writes a body's bytes at increasing offsets on the blocking pool. One batch is being written
/// while the next is received (the network does not wait for the disk), and an optional MD5 and
/// other check see the bytes in order, read back from the file once written: "verified" speaks of
/// the bytes on disk, not of what the network delivered (a 128 KiB copy out of the page cache per
/// batch, small beside the hash itself).
///
/// The pieces the HTTP stack hands over are written as they are, never copied: a batch holds
/// them until it reaches [`WRITE_BUF`], then one blocking task writes the lot. Memory: two
/// batches, each pinning at most its bytes plus one of hyper's read buffers (≤ ~400 KiB).
/// Copying into our own buffers, as this did before, cost a 4 GiB download ~0.5 s of CPU and
/// held two more 128 KiB buffers per connection.
pub(super) struct PieceWriter {
    file: Arc<File>,
    pending: Option<PendingWrite>,
    hasher: Option<Md5>,
    check: Option<CheckHasher>,
    batch: Vec<Bytes>,
    batched: usize,
    /// File offset of the first byte of `batch`.
    offset: u64,
    /// Where written bytes are read back to be hashed (allocated when a hash is wanted).
    readback: Vec<u8>,
}

impl PieceWriter {
    /// Start writing at `offset`, feeding `hasher` and `check` if given.
    pub fn new(file: Arc<File>, offset: u64, hasher: Option<Md5>, check: Option<CheckHasher>) -> Self {
        let readback = if hasher.is_some() || check.is_some() { vec![0; WRITE_BUF] } else { Vec::new() };
        PieceWriter { file, pending: None, hasher, check, batch: Vec::new(), batched: 0, offset, readback }
    }

    /// The offset after every byte accepted so far.
    pub fn position(&self) -> u64 {
        self.offset + self.batched as u64
    }

    /// Accept a piece (written once the batch is full).
    pub async fn push(&mut self, bytes: Bytes) -> Result<(), Stop> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.batched += bytes.len();
        self.batch.push(bytes);
        if self.batched >= WRITE_BUF {
            self.submit().await?;
        }
        Ok(())
    }

    /// Hand the batch to the blocking pool after the previous write finished.
    async fn submit(&mut self) -> Result<(), Stop> {
        self.wait().await?;
        let batch = std::mem::take(&mut self.batch);
        let len = std::mem::take(&mut self.batched) as u64;
        let (file, offset, mut hasher, mut check, mut readback) =
            (self.file.clone(), self.offset, self.hasher.take(), self.check.take(), std::mem::take(&mut self.readback));
        self.offset += len;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let mut at = offset;
            for piece in &batch {
                fs::write_all_at(&file, piece, at)?;
                at += piece.len() as u64;
            }
            if hasher.is_some() || check.is_some() {
                feed_from_file(&file, offset, at, &mut readback, hasher.as_mut(), check.as_mut())?;
            }
            fs::start_writeback(&file, offset, len);
            Ok((hasher, check, readback))
        }));
        Ok(())
    }

    async fn wait(&mut self) -> Result<(), Stop> {
        if let Some(p) = self.pending.take() {
            let (hasher, check, readback) = p
                .await
                .map_err(|e| Stop::Fail(format!("internal error: {e}")))?
                .map_err(|e| Stop::Fail(format!("cannot write: {e}")))?;
            self.hasher = hasher;
            self.check = check;
            self.readback = readback;
        }
        Ok(())
    }

    /// Write what is batched and wait for every write. Returns the end offset and the hashers.
    pub async fn finish(mut self) -> Result<(u64, Option<Md5>, Option<CheckHasher>), Stop> {
        if !self.batch.is_empty() {
            self.submit().await?;
        }
        self.wait().await?;
        Ok((self.offset, self.hasher, self.check))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn pieces_land_at_their_offsets_in_any_order() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let file = Arc::new(std::fs::OpenOptions::new().write(true).open(t.path()).unwrap());
        let w = FileWriter::start(file.clone()).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        // Many more pieces than the queue holds, written back to front.
        for (i, piece) in data.chunks(1000).enumerate().rev() {
            w.write((i * 1000) as u64, Bytes::copy_from_slice(piece)).await.unwrap();
        }
        w.flush().await.unwrap();
        assert_eq!(std::fs::read(t.path()).unwrap(), data);
        drop(w);
        assert_eq!(Arc::strong_count(&file), 1, "the thread is gone once the writer is dropped");
    }

    #[tokio::test]
    async fn a_slot_dropped_unused_gives_its_place_back() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let file = Arc::new(std::fs::OpenOptions::new().write(true).open(t.path()).unwrap());
        let w = FileWriter::start(file).unwrap();
        // Hold every place: one more cannot be had until one is given back.
        let mut held = Vec::new();
        for _ in 0..QUEUE {
            held.push(w.slot().await.unwrap());
        }
        assert!(w.slot().now_or_never().is_none(), "the queue is full");
        drop(held.pop());
        let slot = w.slot().now_or_never().expect("a dropped slot frees its place").unwrap();
        slot.write(0, Bytes::from_static(b"xy"));
        held.pop().unwrap().write(2, Bytes::from_static(b"z"));
        drop(held);
        w.flush().await.unwrap();
        assert_eq!(std::fs::read(t.path()).unwrap(), b"xyz");
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_by_the_next_flush() {
        let t = tempfile::NamedTempFile::new().unwrap();
        // Opened read-only: every write fails.
        let file = Arc::new(std::fs::File::open(t.path()).unwrap());
        let w = FileWriter::start(file).unwrap();
        w.write(0, Bytes::from_static(b"abc")).await.unwrap();
        w.write(3, Bytes::from_static(b"def")).await.unwrap();
        let err = w.flush().await.unwrap_err();
        assert!(matches!(&err, Stop::Fail(m) if m.starts_with("cannot write")));
        assert!(w.flush().await.is_err(), "the failure sticks");
    }
}

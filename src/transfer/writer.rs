//! One writer thread per chunked file: every connection of the file hands its pieces (offset +
//! the bytes exactly as the HTTP stack delivered them) to the thread through a short bounded
//! queue, and the thread writes them in place, so the async workers never wait on the disk.
//!
//! Why not a blocking-pool task per 128 KiB batch copied out of the network's buffers (as
//! before): measured on a 4 GiB blob from local nginx, that pattern spent ~0.8 s more user time
//! (the copy, a task per batch) and ~1.5 s more system time (a thread wake-up and a completion
//! wake-up per batch, and a connection that stopped reading while its previous batch was written).
//! With this queue W1 went from ~1.0 to ~1.2–1.3 GiB/s.
//!
//! Memory is dominated by hyper's read buffers (up to ~400 KiB each; a piece keeps its buffer
//! alive until written). A connection therefore takes its place in the queue *before* it takes
//! the next piece ([`FileWriter::slot`]): while it waits for the disk it holds no piece, hyper
//! keeps at most one ready, and the read buffer is reused in place once that piece is written.
//! Measured on W1 (4 GiB, local nginx, 8 connections): peak RSS 29–30 MB instead of 33–38, and
//! 49–56 MB instead of 67–79 at 32 connections, at the same speed.
use super::fetch::Stop;
use crate::fs;
use bytes::Bytes;
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

//! The connection gate: a counting semaphore with two queues, one for ranged requests (the
//! pieces of a big file) and one for whole-object requests (small files), so that neither kind
//! can hold every connection while the other waits.
//!
//! Why: a plan starts with its biggest file, but a big file asks for its second piece only once
//! its first answered, and by then every small file started beside it has queued for a
//! connection. With one first-come, first-served queue the big file's pieces wait behind all of
//! them; far from the data (a round trip per small file) that delays the file that sets the
//! run's length by seconds. With two queues, a freed connection goes to the ranged queue while
//! ranged requests hold less than half of the connections, else to the whole-object queue; a
//! queue that is empty leaves its share to the other, so no connection idles while any request
//! waits.
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Which queue a request waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A range of an object (a chunked file's piece, a resumed body).
    Ranged = 0,
    /// A whole object in one request.
    Whole = 1,
}

struct Waiter {
    id: u64,
    tx: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    /// Connections allowed now (held plus free, less the debt).
    level: usize,
    free: usize,
    /// Connections to take back as they are released (the level went down while they were held).
    debt: usize,
    held: [usize; 2],
    queues: [VecDeque<Waiter>; 2],
    next_id: u64,
}

impl State {
    /// Hand free connections to the waiters, the lane below its share first.
    fn dispatch(&mut self) {
        while self.free > 0 {
            let lane = match (self.queues[0].is_empty(), self.queues[1].is_empty()) {
                (true, true) => return,
                (false, true) => 0,
                (true, false) => 1,
                (false, false) => usize::from(self.held[0] * 2 >= self.level),
            };
            let Some(w) = self.queues[lane].pop_front() else { return };
            // A waiter leaves its queue under the lock before it drops its receiver, so a waiter
            // still queued is listening; the check is kept for robustness.
            if w.tx.send(()).is_ok() {
                self.free -= 1;
                self.held[lane] += 1;
            }
        }
    }
}

/// A counting semaphore of connections with a ranged and a whole-object queue.
pub struct Gate {
    state: Mutex<State>,
}

/// One connection, given back when dropped.
pub struct Permit<'a> {
    gate: &'a Gate,
    lane: Lane,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.gate.release(self.lane as usize);
    }
}

/// Removes a waiter whose future was dropped before it saw its connection, or gives back the
/// connection it was handed meanwhile.
struct Waiting<'a> {
    gate: &'a Gate,
    lane: usize,
    id: u64,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut s = self.gate.lock();
        let queue = &mut s.queues[self.lane];
        if let Some(i) = queue.iter().position(|w| w.id == self.id) {
            queue.remove(i);
        } else {
            drop(s);
            self.gate.release(self.lane);
        }
    }
}

impl Gate {
    /// A gate of `level` connections.
    pub fn new(level: usize) -> Self {
        Gate { state: Mutex::new(State { level, free: level, ..State::default() }) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wait for a connection in `lane`'s queue.
    pub async fn acquire(&self, lane: Lane) -> Permit<'_> {
        let (id, rx) = {
            let mut s = self.lock();
            if s.free > 0 && s.queues.iter().all(VecDeque::is_empty) {
                s.free -= 1;
                s.held[lane as usize] += 1;
                return Permit { gate: self, lane };
            }
            let id = s.next_id;
            s.next_id += 1;
            let (tx, rx) = oneshot::channel();
            s.queues[lane as usize].push_back(Waiter { id, tx });
            (id, rx)
        };
        let mut waiting = Waiting { gate: self, lane: lane as usize, id, done: false };
        // The sender lives in the queue until it sends: the gate lives as long as `self`.
        let _ = rx.await;
        waiting.done = true;
        Permit { gate: self, lane }
    }

    fn release(&self, lane: usize) {
        let mut s = self.lock();
        s.held[lane] -= 1;
        if s.debt > 0 {
            s.debt -= 1;
        } else {
            s.free += 1;
        }
        s.dispatch();
    }

    /// Allow `n` more connections.
    pub fn grow(&self, n: usize) {
        let mut s = self.lock();
        s.level += n;
        let paid = n.min(s.debt);
        s.debt -= paid;
        s.free += n - paid;
        s.dispatch();
    }

    /// Allow `n` fewer connections: free ones at once, held ones as they are released.
    pub fn shrink(&self, n: usize) {
        let mut s = self.lock();
        let n = n.min(s.level.saturating_sub(1));
        s.level -= n;
        let taken = n.min(s.free);
        s.free -= taken;
        s.debt += n - taken;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_free_connection_is_taken_at_once() {
        let g = Gate::new(2);
        let a = g.acquire(Lane::Whole).now_or_never().expect("free");
        let b = g.acquire(Lane::Ranged).now_or_never().expect("free");
        assert!(g.acquire(Lane::Whole).now_or_never().is_none(), "both held");
        drop((a, b));
        assert!(g.acquire(Lane::Whole).now_or_never().is_some());
    }

    #[tokio::test]
    async fn ranged_requests_jump_the_small_files_until_they_hold_half() {
        let g = Gate::new(4);
        let held: Vec<Permit<'_>> = (0..4).map(|_| g.acquire(Lane::Whole).now_or_never().expect("free")).collect();
        // Many small files queue first, then a big file's pieces.
        let mut small: Vec<_> = (0..6).map(|_| Box::pin(g.acquire(Lane::Whole))).collect();
        let mut big: Vec<_> = (0..3).map(|_| Box::pin(g.acquire(Lane::Ranged))).collect();
        for f in small.iter_mut() {
            assert!(f.as_mut().now_or_never().is_none());
        }
        for f in big.iter_mut() {
            assert!(f.as_mut().now_or_never().is_none());
        }
        let mut held = held.into_iter();
        // Two connections freed: both go to the big file's pieces (it holds none, half is two).
        drop(held.next());
        drop(held.next());
        let b0 = big[0].as_mut().now_or_never().expect("first piece served before the small files");
        let b1 = big[1].as_mut().now_or_never().expect("second piece too");
        assert!(small[0].as_mut().now_or_never().is_none());
        // The big file now holds half: the next freed connection goes to the small files.
        drop(held.next());
        assert!(big[2].as_mut().now_or_never().is_none());
        let s0 = small[0].as_mut().now_or_never().expect("small files keep their half");
        drop((b0, b1, s0, held));
    }

    #[tokio::test]
    async fn an_empty_queue_leaves_its_share_to_the_other() {
        let g = Gate::new(3);
        let all: Vec<Permit<'_>> = (0..3).map(|_| g.acquire(Lane::Ranged).now_or_never().expect("free")).collect();
        assert!(g.acquire(Lane::Ranged).now_or_never().is_none());
        drop(all);
        let again: Vec<Permit<'_>> = (0..3).map(|_| g.acquire(Lane::Ranged).now_or_never().expect("free")).collect();
        drop(again);
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_no_hole() {
        let g = Gate::new(1);
        let held = g.acquire(Lane::Whole).now_or_never().expect("free");
        let mut gone = Box::pin(g.acquire(Lane::Whole));
        assert!(gone.as_mut().now_or_never().is_none());
        let mut next = Box::pin(g.acquire(Lane::Whole));
        assert!(next.as_mut().now_or_never().is_none());
        // Handed the connection, then dropped before seeing it: the connection goes on.
        drop(held);
        drop(gone);
        let p = next.as_mut().now_or_never().expect("the connection was passed on");
        drop(p);
        assert!(g.acquire(Lane::Ranged).now_or_never().is_some());
    }

    #[test]
    fn shrinking_takes_free_connections_then_held_ones_as_they_return() {
        let g = Gate::new(3);
        let a = g.acquire(Lane::Whole).now_or_never().expect("free");
        let b = g.acquire(Lane::Whole).now_or_never().expect("free");
        g.shrink(2);
        assert!(g.acquire(Lane::Whole).now_or_never().is_none(), "the free one was taken back");
        drop(a);
        assert!(g.acquire(Lane::Whole).now_or_never().is_none(), "the first returned one pays the debt");
        drop(b);
        let c = g.acquire(Lane::Whole).now_or_never().expect("one connection left");
        assert!(g.acquire(Lane::Whole).now_or_never().is_none());
        g.grow(1);
        assert!(g.acquire(Lane::Whole).now_or_never().is_some());
        drop(c);
    }
}

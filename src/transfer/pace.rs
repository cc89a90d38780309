//! The bandwidth cap (`--max-rate`): one pace shared by every connection of a run, so the run's
//! bytes never arrive faster than the cap on average. Each body read takes its bytes from the
//! pace and, when it is ahead of it, waits before reading on: the server is then held back by
//! TCP's own flow control, as rclone's `--bwlimit` and azcopy's `--cap-mbps` do. After a pause
//! (a new file, a retry) up to [`BURST`] of idle time is made up, so short pauses do not lower the
//! average; the run's first bytes get no credit.
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How far ahead of the pace a run may get after a pause.
pub const BURST: Duration = Duration::from_millis(250);

/// The shared pace.
#[derive(Debug)]
pub struct Pace {
    bytes_per_sec: f64,
    /// When the bytes taken so far are due at the cap ("theoretical arrival time").
    due: Mutex<Option<Instant>>,
}

/// One step of the pace (pure): the new due time after taking `n` bytes at `now`, and the moment
/// the reader may go on (`None`: at once).
pub fn step(due: Option<Instant>, now: Instant, n: u64, bytes_per_sec: f64) -> (Instant, Option<Instant>) {
    // Credit for idle time is limited to the burst: the pace never lags `now` by more. The first
    // bytes get no credit, so a run's average stays under the cap from its start.
    let floor = now.checked_sub(BURST).unwrap_or(now);
    let base = due.map_or(now, |d| d.max(floor));
    let next = base + Duration::from_secs_f64(n as f64 / bytes_per_sec);
    (next, (next > now).then_some(next))
}

impl Pace {
    /// A cap of `bytes_per_sec` (more than 0).
    pub fn new(bytes_per_sec: u64) -> Self {
        Pace { bytes_per_sec: bytes_per_sec.max(1) as f64, due: Mutex::new(None) }
    }

    /// Count `n` bytes just received; waits while the run is ahead of the cap.
    pub async fn take(&self, n: u64) {
        let wait = {
            let Ok(mut due) = self.due.lock() else { return };
            let (next, wait) = step(*due, Instant::now(), n, self.bytes_per_sec);
            *due = Some(next);
            wait
        };
        if let Some(t) = wait {
            tokio::time::sleep_until(t).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_taken_at_once_are_spread_at_the_cap_after_the_burst() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let rate = 1_000_000.0;
        // 100 reads of 100 kB at one instant: 10 MB at 1 MB/s, from the first byte.
        let mut due = None;
        let mut last = None;
        for _ in 0..100 {
            let (d, w) = step(due, t0, 100_000, rate);
            due = Some(d);
            last = w;
        }
        let until = last.expect("the run is ahead of the cap");
        let waited = until - t0;
        assert!((waited.as_secs_f64() - 10.0).abs() < 1e-6, "{waited:?}");
    }

    #[test]
    fn reads_slower_than_the_cap_never_wait_and_idle_time_is_not_banked() {
        let rate = 1_000_000.0;
        let mut t = Instant::now() + Duration::from_secs(10);
        // The first read has no credit: it is due after its own 0.1 s at the cap.
        let (d, w) = step(None, t, 100_000, rate);
        assert_eq!(w, Some(t + Duration::from_millis(100)));
        let mut due = Some(d);
        for _ in 0..10 {
            t += Duration::from_millis(200);
            let (d, w) = step(due, t, 100_000, rate); // 100 kB every 0.2 s = 0.5 MB/s
            assert_eq!(w, None);
            due = Some(d);
        }
        // After a minute of silence, a burst of 10 MB still waits ~9.75 s: only BURST was banked.
        t += Duration::from_secs(60);
        let (_, w) = step(due, t, 10_000_000, rate);
        let waited = w.expect("ahead of the cap") - t;
        assert!((waited.as_secs_f64() - (10.0 - BURST.as_secs_f64())).abs() < 1e-6, "{waited:?}");
    }
}

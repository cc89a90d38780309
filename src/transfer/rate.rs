//! The minimum-rate guard of a body (curl's `--speed-limit`/`--speed-time`): the idle timeout
//! restarts with every byte, so a server that trickles one byte every few seconds would hold an
//! attempt forever. [`RateGuard`] watches the reads of one response body and abandons the attempt
//! when fewer than `bytes_per_sec × window` bytes arrived in a window of `window` spent waiting
//! on the network (time spent waiting for the local disk is not counted). The caller then retries
//! the attempt as it retries a timeout. A window in which nothing at all arrived is not judged:
//! silence is the idle timeout's to end (`--idle-timeout`, which may be set longer than the window
//! for a server known to pause), so the guard never shortens it.
use crate::http::describe_transport;
use bytes::Bytes;
use std::future::Future;
use std::time::Duration;
// tokio's clock: the system clock at run time, a paused one in the unit tests below.
use tokio::time::Instant;

/// The settings of the guard: `min_speed` and `min_speed_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes per second below which an attempt is abandoned (0: no guard).
    pub bytes_per_sec: u64,
    /// The window the rate is averaged over.
    pub window: Duration,
}

impl Default for MinRate {
    /// 1 KiB/s averaged over 60 s: far below any real link (a stalled or trickling body only).
    fn default() -> Self {
        MinRate { bytes_per_sec: 1024, window: Duration::from_secs(60) }
    }
}

impl MinRate {
    /// A guard for one response body.
    pub fn guard(self) -> RateGuard {
        RateGuard { rate: self, bytes: 0, waited: Duration::ZERO }
    }

    /// Bytes a window must bring.
    fn floor(self) -> u64 {
        (self.bytes_per_sec as u128 * self.window.as_millis() / 1000).min(u64::MAX as u128) as u64
    }
}

/// Why reading a body stopped.
#[derive(Debug)]
pub enum BodyError {
    /// The connection failed or timed out.
    Transport(reqwest::Error),
    /// The body came slower than the minimum rate.
    TooSlow {
        /// Bytes received in the window.
        bytes: u64,
        /// The settings.
        rate: MinRate,
    },
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Transport(e) => f.write_str(&describe_transport(e)),
            BodyError::TooSlow { bytes, rate } => write!(
                f,
                "too slow: {bytes} bytes in {}, below the minimum rate of {} bytes/s averaged over {} \
                 (settings min_speed / JOBDL_MIN_SPEED and min_speed_time / JOBDL_MIN_SPEED_TIME)",
                humantime::format_duration(rate.window),
                rate.bytes_per_sec,
                humantime::format_duration(rate.window)
            ),
        }
    }
}

/// Watches the reads of one body (see the module documentation).
#[derive(Debug)]
pub struct RateGuard {
    rate: MinRate,
    /// Bytes received in the current window.
    bytes: u64,
    /// Time spent waiting on the network in the current window.
    waited: Duration,
}

impl RateGuard {
    /// The next piece of the body (`read` is e.g. `resp.chunk()`), or why the body stops: a
    /// transport error, or a window that ended with too few bytes (then the pending read is
    /// dropped, which abandons the connection).
    pub async fn next(
        &mut self,
        read: impl Future<Output = Result<Option<Bytes>, reqwest::Error>>,
    ) -> Result<Option<Bytes>, BodyError> {
        if self.rate.bytes_per_sec == 0 || self.rate.window.is_zero() {
            return read.await.map_err(BodyError::Transport);
        }
        let mut read = std::pin::pin!(read);
        loop {
            let left = self.rate.window.saturating_sub(self.waited);
            let started = Instant::now();
            let got = tokio::time::timeout(left, &mut read).await;
            self.waited += started.elapsed();
            match got {
                Ok(r) => {
                    if let Ok(Some(b)) = &r {
                        self.bytes = self.bytes.saturating_add(b.len() as u64);
                    }
                    self.end_of_window()?;
                    return r.map_err(BodyError::Transport);
                }
                Err(_) => {
                    self.waited = self.waited.max(self.rate.window);
                    self.end_of_window()?;
                }
            }
        }
    }

    /// At the end of a window: too slow, or a new window.
    fn end_of_window(&mut self) -> Result<(), BodyError> {
        if self.waited < self.rate.window {
            return Ok(());
        }
        if self.bytes > 0 && self.bytes < self.rate.floor() {
            return Err(BodyError::TooSlow { bytes: self.bytes, rate: self.rate });
        }
        self.bytes = 0;
        self.waited = Duration::ZERO;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(bps: u64, ms: u64) -> MinRate {
        MinRate { bytes_per_sec: bps, window: Duration::from_millis(ms) }
    }

    async fn piece(n: usize, after_ms: u64) -> Result<Option<Bytes>, reqwest::Error> {
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        Ok(Some(Bytes::from(vec![0u8; n])))
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_abandoned_after_one_window() {
        // 1 KiB/s over 200 ms wants 204 bytes per window; one byte every 20 ms brings about 10.
        let mut g = rate(1024, 200).guard();
        let mut got = 0;
        let err = loop {
            match g.next(piece(1, 20)).await {
                Ok(Some(b)) => got += b.len(),
                Ok(None) => panic!("ended"),
                Err(e) => break e,
            }
        };
        assert!(got < 204, "{got}");
        let msg = err.to_string();
        assert!(msg.contains("too slow") && msg.contains("1024 bytes/s") && msg.contains("200ms"), "{msg}");
        assert!(msg.contains("min_speed") && msg.contains("JOBDL_MIN_SPEED_TIME"), "{msg}");
    }

    #[tokio::test(start_paused = true)]
    async fn silence_is_left_to_the_idle_timeout_and_a_byte_after_it_is_judged() {
        let mut g = rate(1024, 100).guard();
        let stall = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(None)
        };
        // Three windows of silence: still waiting (the idle timeout ends that).
        assert!(tokio::time::timeout(Duration::from_millis(350), g.next(stall)).await.is_err());
        // One byte after a long silence: a window with 1 byte of the 102 wanted.
        let mut g = rate(1024, 100).guard();
        assert!(g.next(piece(1, 150)).await.unwrap().is_some());
        let mut got = 0;
        let e = loop {
            match g.next(piece(1, 60)).await {
                Ok(_) => got += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(e, BodyError::TooSlow { .. }) && got < 3, "{e} after {got}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_passes_many_windows_and_a_slow_disk_is_not_counted() {
        let mut g = rate(1024, 100).guard();
        for _ in 0..5 {
            // 4 KiB every 10 ms from the network, then a long wait for "the disk".
            assert!(g.next(piece(4096, 10)).await.unwrap().is_some());
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        // Off: never abandons.
        let mut off = rate(0, 10).guard();
        assert!(off.next(piece(1, 50)).await.unwrap().is_some());
    }
}

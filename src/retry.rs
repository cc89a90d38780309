//! Retry policy as data: which failures are retried, exponential backoff with full jitter, and
//! `Retry-After` parsing. Pure logic; the callers own the loop and the clock.
use rand::Rng;
use std::time::{Duration, SystemTime};

/// How many attempts and how long to wait between them.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Total attempts (first try included), at least 1.
    pub attempts: u32,
    /// First backoff delay before jitter.
    pub base_delay: Duration,
    /// Largest backoff delay before jitter.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured.
    pub retry_after_cap: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 10,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(120),
        }
    }
}

impl RetryConfig {
    /// The delay before retry number `retry` (0-based: the wait after the first failed attempt),
    /// honouring a server `Retry-After` when given. Full jitter: uniform in [0, min(max, base·2^n)].
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.retry_after_cap);
        }
        let exp = self.base_delay.saturating_mul(1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX));
        let ceiling = exp.min(self.max_delay);
        let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

/// Whether an HTTP status is worth retrying: 408, 429 and 5xx (except 501 and 505, which will not change).
pub fn status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504) || (506..=599).contains(&status)
}

/// Parse a `Retry-After` value: delta-seconds or an HTTP date. `now` is injectable for tests.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(1e9)));
        }
        return None;
    }
    let when = httpdate_parse(v)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn httpdate_parse(v: &str) -> Option<SystemTime> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let dt = time::PrimitiveDateTime::parse(v, &fmt).ok()?.assume_utc();
    Some(SystemTime::from(dt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status_is_retryable(s), "{s}");
        }
        for s in [200, 206, 400, 401, 403, 404, 409, 412, 416, 501, 505] {
            assert!(!status_is_retryable(s), "{s}");
        }
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let cfg = RetryConfig::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for retry in 0..40 {
            let d = cfg.delay(retry, None, &mut rng);
            let ceiling = cfg.base_delay.saturating_mul(1 << retry.min(20)).min(cfg.max_delay);
            assert!(d <= ceiling, "retry {retry}: {d:?} > {ceiling:?}");
        }
        // With full jitter the mean of many draws at a high retry approaches max/2.
        let mean: f64 = (0..2000).map(|_| cfg.delay(10, None, &mut rng).as_secs_f64()).sum::<f64>() / 2000.0;
        assert!((10.0..20.0).contains(&mean), "{mean}");
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let cfg = RetryConfig::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(cfg.delay(0, Some(Duration::from_secs(3)), &mut rng), Duration::from_secs(3));
        assert_eq!(cfg.delay(0, Some(Duration::from_secs(9999)), &mut rng), Duration::from_secs(120));
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        // 1_700_000_010 = Tue, 14 Nov 2023 22:13:30 GMT
        assert_eq!(parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Tue, 14 Nov 2000 22:13:30 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}

//! Flags + environment → one typed `Settings`. Bad input stops here with exit 2 and a message
//! naming the field. Every environment variable jobdl reads is named in this file.
use crate::cli::TransferArgs;
use crate::error::Error;
use crate::hosts::{AllowList, Cloud};
use crate::retry::RetryConfig;
use crate::transfer::TransferConfig;
use std::time::Duration;

/// Bearer token for every service call (CI, emulators).
pub const ENV_ACCESS_TOKEN: &str = "JOBDL_ACCESS_TOKEN";
/// Extra allowed hosts, comma-separated.
pub const ENV_ALLOW_HOSTS: &str = "JOBDL_ALLOW_HOSTS";
/// First `--wait` poll delay.
pub const ENV_POLL_INTERVAL: &str = "JOBDL_POLL_INTERVAL";
/// Retry backoff base.
pub const ENV_RETRY_BASE_DELAY: &str = "JOBDL_RETRY_BASE_DELAY";
/// Retry backoff cap.
pub const ENV_RETRY_MAX_DELAY: &str = "JOBDL_RETRY_MAX_DELAY";
/// Longest `Retry-After` honoured.
pub const ENV_RETRY_AFTER_CAP: &str = "JOBDL_RETRY_AFTER_CAP";

/// Metadata calls get this many attempts.
pub const META_ATTEMPTS: u32 = 5;

/// Parse `90s`, `15m`, `2h`, `1h30m`, or a bare number of seconds.
pub fn parse_duration(s: &str, field: &str) -> Result<Duration, Error> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t)
        .map_err(|e| Error::usage(format!("invalid {field} '{s}': {e} (examples: 90s, 15m, 2h, 1h30m, 300)")))
}

fn env_duration(name: &str, default: Duration) -> Result<Duration, Error> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse_duration(&v, name),
        _ => Ok(default),
    }
}

/// Settings shared by every transferring command.
#[derive(Debug, Clone)]
pub struct Common {
    /// Engine settings (data retries, parallelism).
    pub transfer: TransferConfig,
    /// Metadata retry policy.
    pub meta_retry: RetryConfig,
    /// Idle timeout for reads.
    pub idle_timeout: Duration,
    /// Host allow-list.
    pub allow: AllowList,
    /// `JOBDL_ACCESS_TOKEN`, if set.
    pub access_token: Option<String>,
    /// `--json`.
    pub json: bool,
    /// `-q`.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u8,
    /// First `--wait` poll delay.
    pub poll_interval: Duration,
}

impl Common {
    /// Resolve the shared settings.
    pub fn resolve(args: &TransferArgs, cloud: &str, skip_existing: bool) -> Result<Common, Error> {
        let cloud: Cloud = cloud.parse().map_err(|e: String| Error::usage(format!("invalid --cloud: {e}")))?;
        let parallel = args.parallel.unwrap_or(8);
        if parallel == 0 || parallel > 256 {
            return Err(Error::usage("--parallel must be between 1 and 256"));
        }
        let retries = args.retries.unwrap_or(10);
        if retries == 0 {
            return Err(Error::usage("--retries must be at least 1"));
        }
        let idle_timeout = match &args.idle_timeout {
            Some(s) => parse_duration(s, "--idle-timeout")?,
            None => Duration::from_secs(120),
        };
        if idle_timeout.is_zero() {
            return Err(Error::usage("--idle-timeout must be more than 0"));
        }
        let base = RetryConfig {
            attempts: retries,
            base_delay: env_duration(ENV_RETRY_BASE_DELAY, Duration::from_millis(500))?,
            max_delay: env_duration(ENV_RETRY_MAX_DELAY, Duration::from_secs(30))?,
            retry_after_cap: env_duration(ENV_RETRY_AFTER_CAP, Duration::from_secs(120))?,
        };
        let mut hosts: Vec<String> = args.allow_host.clone();
        if let Ok(v) = std::env::var(ENV_ALLOW_HOSTS) {
            hosts.extend(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
        }
        let allow = AllowList::new(cloud, &hosts).map_err(Error::Usage)?;
        Ok(Common {
            transfer: TransferConfig { parallel, retry: base.clone(), skip_existing, ..TransferConfig::default() },
            meta_retry: RetryConfig { attempts: META_ATTEMPTS.min(retries.max(1)).max(1), ..base },
            idle_timeout,
            allow,
            access_token: std::env::var(ENV_ACCESS_TOKEN).ok(),
            json: args.json,
            quiet: args.quiet,
            verbose: args.verbose,
            poll_interval: env_duration(ENV_POLL_INTERVAL, Duration::from_secs(10))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s", "x").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m", "x").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h30m", "x").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("300", "x").unwrap(), Duration::from_secs(300));
        let e = parse_duration("soon", "--timeout").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--timeout"));
    }
}

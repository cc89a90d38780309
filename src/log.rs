//! Diagnostic lines on stderr at `-v`/`-vv`/`-vvv`, always passed through redaction.
//! Set once at start-up; the lowest layer, usable from every module.
use std::sync::atomic::{AtomicU8, Ordering};

static VERBOSITY: AtomicU8 = AtomicU8::new(0);

/// Set the verbosity (number of `-v`).
pub fn set_verbosity(v: u8) {
    VERBOSITY.store(v, Ordering::Relaxed);
}

/// Whether messages at `level` are shown.
pub fn enabled(level: u8) -> bool {
    VERBOSITY.load(Ordering::Relaxed) >= level
}

/// Print `msg` (redacted) on stderr when the verbosity is at least `level`.
pub fn log(level: u8, msg: impl AsRef<str>) {
    if enabled(level) {
        eprintln!("jobdl: {}", crate::redact::redact(msg.as_ref()));
    }
}

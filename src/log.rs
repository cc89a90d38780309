//! Diagnostic lines on stderr at `-v`/`-vv`/`-vvv`, always passed through redaction, and the
//! colour decision for the stderr prefixes (`error:`, `warning:`, `hint:`).
//! Set once at start-up; the lowest layer, usable from every module.
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static VERBOSITY: AtomicU8 = AtomicU8::new(0);
static COLOR: AtomicBool = AtomicBool::new(false);

/// Set the verbosity (number of `-v`).
pub fn set_verbosity(v: u8) {
    VERBOSITY.store(v, Ordering::Relaxed);
}

/// Whether messages at `level` are shown.
pub fn enabled(level: u8) -> bool {
    VERBOSITY.load(Ordering::Relaxed) >= level
}

/// Turn colour of the stderr prefixes on or off.
pub fn set_color(on: bool) {
    COLOR.store(on, Ordering::Relaxed);
}

/// Whether the stderr prefixes are coloured.
pub fn color() -> bool {
    COLOR.load(Ordering::Relaxed)
}

/// `--color WHEN` (`auto`, `always`, `never`; `None` = auto) → colour on? `auto` colours only a
/// terminal, and never when `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
pub fn decide_color(when: Option<&str>, no_color: Option<&str>, stderr_is_terminal: bool) -> bool {
    match when {
        Some("always") => true,
        Some("never") => false,
        _ => stderr_is_terminal && no_color.is_none_or(str::is_empty),
    }
}

/// `msg` with a leading `error:`, `warning:` or `hint:` coloured when colour is on.
pub fn paint(msg: &str) -> String {
    if !color() {
        return msg.to_string();
    }
    for (prefix, code) in [("error:", "1;31"), ("warning:", "1;33"), ("hint:", "1;36")] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            return format!("\x1b[{code}m{prefix}\x1b[0m{rest}");
        }
    }
    msg.to_string()
}

/// Print `msg` (redacted) on stderr when the verbosity is at least `level`.
pub fn log(level: u8, msg: impl AsRef<str>) {
    if enabled(level) {
        eprintln!("jobdl: {}", paint(&crate::redact::redact(msg.as_ref())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn color_decision() {
        assert!(decide_color(Some("always"), Some("1"), false));
        assert!(!decide_color(Some("never"), None, true));
        assert!(decide_color(Some("auto"), None, true));
        assert!(decide_color(None, Some(""), true));
        assert!(!decide_color(None, Some("1"), true));
        assert!(!decide_color(None, None, false));
    }

    #[test]
    fn only_known_prefixes_are_painted() {
        set_color(true);
        let painted = (paint("error: x"), paint("warning: y"), paint("hint: z"), paint("downloaded 3 files"));
        set_color(false);
        assert_eq!(painted.0, "\x1b[1;31merror:\x1b[0m x");
        assert_eq!(painted.1, "\x1b[1;33mwarning:\x1b[0m y");
        assert_eq!(painted.2, "\x1b[1;36mhint:\x1b[0m z");
        assert_eq!(painted.3, "downloaded 3 files");
        assert_eq!(paint("error: x"), "error: x");
    }
}

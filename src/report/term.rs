//! Progress lines for a terminal, as pure functions of the numbers and the terminal's width: a
//! line never reaches the last column (so the terminal never wraps it and leaves stray lines
//! behind when the bars are redrawn), a long path keeps its end (`…/checkpoint/model.safetensors`),
//! and the ETA is held (`eta --`) until the rate has settled.
use super::human_bytes;
use std::time::Duration;

/// The ETA is held until the transfer has run this long…
pub const ETA_SETTLE_TIME: Duration = Duration::from_secs(3);
/// …and moved this many bytes: the first seconds' rate (connections opening, the first chunk's
/// round trip) says nothing about the rest.
pub const ETA_SETTLE_BYTES: u64 = 1 << 20;

/// Width assumed when the terminal does not say.
pub const DEFAULT_WIDTH: usize = 80;

/// The width of stderr's terminal in columns (or [`DEFAULT_WIDTH`]).
pub fn stderr_width() -> usize {
    match rustix::termios::tcgetwinsize(std::io::stderr()) {
        Ok(w) if w.ws_col > 0 => usize::from(w.ws_col),
        _ => DEFAULT_WIDTH,
    }
}

/// The width a table on stdout is fitted to: `None` (print every cell whole) when stdout is not
/// a terminal, so pipes and files get complete rows; in a terminal, `COLUMNS` when it is a
/// positive number (the user's explicit choice), else the terminal's own width, else
/// [`DEFAULT_WIDTH`].
pub fn table_width(stdout_is_terminal: bool, columns: Option<&str>, terminal: Option<usize>) -> Option<usize> {
    if !stdout_is_terminal {
        return None;
    }
    let from_env = columns.and_then(|c| c.trim().parse::<usize>().ok()).filter(|&c| c > 0);
    Some(from_env.or(terminal.filter(|&t| t > 0)).unwrap_or(DEFAULT_WIDTH))
}

/// [`table_width`] for this process's stdout.
pub fn stdout_table_width() -> Option<usize> {
    use std::io::IsTerminal;
    let out = std::io::stdout();
    let terminal = rustix::termios::tcgetwinsize(&out).ok().map(|w| usize::from(w.ws_col));
    table_width(out.is_terminal(), crate::env::var(crate::env::COLUMNS).as_deref(), terminal)
}

/// Columns a character takes in a terminal (the Unicode width tables of `unicode-width`): 0 for
/// combining marks and other zero-width characters, 2 for East Asian wide characters and emoji,
/// 1 otherwise; a control character (never printed: paths are made printable first) counts 1.
pub fn char_width(c: char) -> usize {
    unicode_width::UnicodeWidthChar::width(c).unwrap_or(1)
}

/// Columns a string takes.
pub fn text_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// `s` in at most `max` columns, keeping its end: `…/checkpoint/model.safetensors`. The cut is
/// moved to the next `/` when that keeps at least the file name, so whole directory names show.
pub fn elide_start(s: &str, max: usize) -> String {
    if text_width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    // The longest suffix that fits beside the ellipsis.
    let mut start = s.len();
    let mut used = 0;
    for (i, c) in s.char_indices().rev() {
        let w = char_width(c);
        if used + w > max - 1 {
            break;
        }
        used += w;
        start = i;
    }
    let tail = &s[start..];
    let tail = match tail.find('/') {
        Some(i) if i > 0 && i + 1 < tail.len() => &tail[i..],
        _ => tail,
    };
    format!("…{tail}")
}

/// `s` in at most `max` columns, keeping its start and its end around one `…`
/// (`train-llama-…-a1b2c3`): job names and run ids differ at both ends (a prefix the user
/// chose, a generated suffix), so both stay readable.
pub fn elide_middle(s: &str, max: usize) -> String {
    if text_width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let room = max - 1;
    let tail_room = room / 2;
    let head_room = room - tail_room;
    let mut head = String::new();
    let mut used = 0;
    for c in s.chars() {
        if used + char_width(c) > head_room {
            break;
        }
        used += char_width(c);
        head.push(c);
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        if used + char_width(c) > tail_room {
            break;
        }
        used += char_width(c);
        tail.push(c);
    }
    tail.reverse();
    format!("{head}…{}", tail.into_iter().collect::<String>())
}

/// `s` in at most `max` columns, keeping its start: `Fine-tune on the full c…`.
pub fn elide_end(s: &str, max: usize) -> String {
    if text_width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        if used + char_width(c) > max - 1 {
            break;
        }
        used += char_width(c);
        out.push(c);
    }
    out.push('…');
    out
}

/// `s` padded with spaces to `width` columns (it must already fit).
fn pad(s: &str, width: usize) -> String {
    let w = text_width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

/// A bar of `width` columns, `done` of `total` filled: `=====>    `.
fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 { 0 } else { ((done.min(total) as f64 / total as f64) * width as f64) as usize };
    let mut s = "=".repeat(filled.min(width));
    if filled < width {
        s.push('>');
        s.push_str(&" ".repeat(width - filled - 1));
    }
    s
}

/// `4m 05s`, `2h 10m`, `45s`, `3d`.
pub fn short_eta(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..360_000 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d", s / 86_400),
    }
}

/// `eta 4m 05s`, or `eta --` while the rate has not settled (see [`ETA_SETTLE_TIME`] and
/// [`ETA_SETTLE_BYTES`]), when nothing moves, or when the total is not known.
pub fn eta_text(elapsed: Duration, done: u64, total: Option<u64>, rate: f64) -> String {
    let settled = elapsed >= ETA_SETTLE_TIME && done >= ETA_SETTLE_BYTES;
    match total {
        Some(t) if settled && rate >= 1.0 && t >= done => {
            format!("eta {}", short_eta(Duration::from_secs_f64(((t - done) as f64 / rate).min(1e9))))
        }
        _ => "eta --".to_string(),
    }
}

/// The overall line — bytes done/total, rate, ETA, files done/total, the job under way when
/// several are downloaded (`job 2/3 NAME`), a bar — in fewer than `width` columns: the bar takes
/// what is left (and goes when less than 8 columns are left), then the job, the files count, the
/// ETA and the rate go, in that order, when even they do not fit.
pub fn total_line(
    done: u64,
    total: Option<u64>,
    rate: f64,
    elapsed: Duration,
    files: (usize, usize),
    job: Option<&str>,
    width: usize,
) -> String {
    let max = width.saturating_sub(1);
    let sizes = match total {
        Some(t) => format!("{}/{}", human_bytes(done), human_bytes(t)),
        None => human_bytes(done),
    };
    let rate_text = format!("{}/s", human_bytes(rate.max(0.0) as u64));
    let mut parts =
        vec![sizes, rate_text, eta_text(elapsed, done, total, rate), format!("files {}/{}", files.0, files.1)];
    parts.extend(job.map(str::to_string));
    let mut line = String::new();
    for p in parts {
        let sep = if line.is_empty() { 0 } else { 2 };
        if text_width(&line) + sep + text_width(&p) > max {
            break;
        }
        if sep > 0 {
            line.push_str("  ");
        }
        line.push_str(&p);
    }
    let left = max.saturating_sub(text_width(&line) + 2);
    if left >= 8 {
        line.push_str(&format!("  [{}]", bar(done, total.unwrap_or(0), left - 2)));
    }
    if text_width(&line) > max {
        return elide_start(&line, max);
    }
    line
}

/// Widest `human_bytes` text (`1023.9 MiB`), so the sizes of every file line line up.
const SIZE_COLS: usize = 10;

/// A big file's line: `  …/checkpoint/model.safetensors  512.0 MiB/  1.2 GiB [=====>    ]`, in
/// fewer than `width` columns. The path keeps its end; the bar goes first when space is short.
pub fn file_line(label: &str, done: u64, total: u64, width: usize) -> String {
    let max = width.saturating_sub(1);
    let sizes = format!("{:>w$}/{:>w$}", human_bytes(done), human_bytes(total), w = SIZE_COLS);
    // "  " + label + "  " + sizes [+ " [" + bar + "]"].
    let fixed = 2 + 2 + text_width(&sizes);
    let avail = max.saturating_sub(fixed);
    let (label_cols, bar_cols) = if avail >= 40 {
        let b = (avail / 3).min(30);
        ((avail - b - 3).min(60), b)
    } else {
        (avail, 0)
    };
    let mut line = format!("  {}  {sizes}", pad(&elide_start(label, label_cols), label_cols));
    if bar_cols > 0 {
        line.push_str(&format!(" [{}]", bar(done, total, bar_cols)));
    }
    if text_width(&line) > max {
        return elide_start(line.trim_start(), max);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDTHS: [usize; 5] = [200, 80, 40, 20, 5];

    #[test]
    fn names_are_elided_in_the_middle_or_at_the_end() {
        assert_eq!(elide_middle("short", 10), "short");
        assert_eq!(elide_middle("train-llama-0042-a1b2c3", 12), "train-…1b2c3");
        assert!(text_width(&elide_middle("训练作业训练作业训练作业", 9)) <= 9);
        assert_eq!(elide_end("Fine-tune everything", 10), "Fine-tune…");
        assert!(text_width(&elide_end("训练作业训练作业", 7)) <= 7);
        assert_eq!(elide_end("abc", 0), "");
    }

    #[test]
    fn tables_are_fitted_only_in_a_terminal() {
        assert_eq!(table_width(false, Some("80"), Some(120)), None);
        assert_eq!(table_width(true, Some("80"), Some(120)), Some(80));
        assert_eq!(table_width(true, Some("zero"), Some(120)), Some(120));
        assert_eq!(table_width(true, Some("0"), None), Some(DEFAULT_WIDTH));
        assert_eq!(table_width(true, None, Some(0)), Some(DEFAULT_WIDTH));
    }

    #[test]
    fn long_paths_keep_their_end() {
        let p = "named-outputs/model/checkpoint/model.safetensors";
        assert_eq!(elide_start(p, 100), p);
        assert_eq!(elide_start(p, 32), "…/checkpoint/model.safetensors");
        assert_eq!(elide_start(p, 20), "…/model.safetensors");
        // The file name alone is too long: its end.
        assert_eq!(elide_start(p, 10), "…fetensors");
        for max in 0..60 {
            assert!(text_width(&elide_start(p, max)) <= max, "{max}");
        }
    }

    #[test]
    fn unicode_paths_are_measured_in_columns() {
        let p = "données/日本語のファイル名/ünïcode ✓.txt";
        assert_eq!(text_width("日本"), 4);
        assert_eq!(text_width("e\u{301}"), 1);
        for max in 0..50 {
            let e = elide_start(p, max);
            assert!(text_width(&e) <= max, "{max}: {e}");
        }
        assert_eq!(elide_start(p, 16), "…/ünïcode ✓.txt");
    }

    #[test]
    fn file_lines_fit_the_terminal() {
        let long = format!("named-outputs/model/{}/model.safetensors", "very-long-directory-name".repeat(12));
        for label in ["a.bin", "artifacts/日本語/重み.safetensors", long.as_str()] {
            for width in WIDTHS {
                let l = file_line(label, 512 << 20, 3 << 30, width);
                assert!(text_width(&l) < width.max(1), "{width}: {l:?}");
                assert!(!l.contains('\n'));
            }
        }
        let l = file_line(&long, 512 << 20, 3 << 30, 80);
        assert!(l.contains("…/model.safetensors"), "{l}");
        assert!(l.contains("512.0 MiB/   3.0 GiB ["), "{l}");
        assert_eq!(text_width(&l), 79);
        let l = file_line("model.safetensors", 512 << 20, 3 << 30, 40);
        assert_eq!(l, "  …l.safetensors   512.0 MiB/   3.0 GiB");
        let l = file_line("checkpoint/model.safetensors", 1 << 30, 3 << 30, 200);
        assert!(l.starts_with("  checkpoint/model.safetensors "), "{l}");
        assert!(l.ends_with(']') && text_width(&l) < 200, "{l}");
    }

    #[test]
    fn total_lines_fit_the_terminal() {
        let s = Duration::from_secs;
        for width in WIDTHS {
            let l = total_line(1_288_490_189, Some(3_650_722_201), 110e6, s(10), (12, 40), None, width);
            assert!(text_width(&l) < width.max(1), "{width}: {l:?}");
        }
        let l = total_line(1_288_490_189, Some(3_650_722_201), 110e6 * 1.048_576, s(10), (12, 40), None, 80);
        assert!(l.starts_with("1.2 GiB/3.4 GiB  110.0 MiB/s  eta 20s  files 12/40  ["), "{l}");
        let l = total_line(1_288_490_189, Some(3_650_722_201), 110e6, s(10), (12, 40), None, 40);
        assert_eq!(l, "1.2 GiB/3.4 GiB  104.9 MiB/s  eta 21s");
        // Several jobs: the job under way follows the files count, and goes first when space is short.
        let job = Some("job 2/3 train-b");
        for width in WIDTHS {
            let l = total_line(1_288_490_189, Some(3_650_722_201), 110e6, s(10), (12, 40), job, width);
            assert!(text_width(&l) < width.max(1), "{width}: {l:?}");
        }
        let l = total_line(1_288_490_189, Some(3_650_722_201), 110e6, s(10), (12, 40), job, 200);
        assert!(l.contains("  files 12/40  job 2/3 train-b  ["), "{l}");
        let l = total_line(1_288_490_189, Some(3_650_722_201), 110e6, s(10), (12, 40), job, 60);
        assert_eq!(l, "1.2 GiB/3.4 GiB  104.9 MiB/s  eta 21s  files 12/40");
    }

    #[test]
    fn the_eta_waits_for_the_rate_to_settle() {
        let s = Duration::from_secs;
        // The first second: 869 B/s would say 4 days.
        assert_eq!(eta_text(s(1), 869, Some(300 << 20), 869.0), "eta --");
        assert_eq!(eta_text(s(5), 512 << 10, Some(300 << 20), 100e3), "eta --", "under 1 MiB moved");
        assert_eq!(eta_text(s(2), 50 << 20, Some(300 << 20), 20e6), "eta --", "under 3 s");
        assert_eq!(eta_text(s(3), 50 << 20, Some(300 << 20), 1_048_576.0), "eta 4m 10s");
        assert_eq!(eta_text(s(9), 50 << 20, None, 1e6), "eta --");
        assert_eq!(eta_text(s(9), 50 << 20, Some(300 << 20), 0.0), "eta --");
        assert_eq!(short_eta(s(7200 + 300)), "2h 05m");
        assert_eq!(short_eta(s(400 * 3600)), "16d");
    }
}

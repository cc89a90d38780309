//! Server-supplied names (artifact paths, blob names, output names) → safe, portable relative paths.
//! Pure string logic: knows nothing about the disk, HTTP or any provider.
//!
//! The rules (docs/azure-api.md §4.9) are applied on every platform, so a download made on Linux can be
//! copied to Windows or macOS unchanged. Callers percent-decode a service path exactly once *before*
//! calling here; this module never decodes, so `%2e%2e` is an ordinary (legal) file name.

/// Longest single component, in bytes (the common file-system limit).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Longest relative path, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a service-supplied path was refused. Each message names the offending path (paths are not
/// secrets; control characters are shown escaped so a hostile name cannot drive the terminal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("the service returned an empty path")]
    Empty,
    /// The path starts with `/` or `\` (absolute, or a UNC `\\server\share`).
    #[error("unsafe path '{0}': it is absolute")]
    Absolute(String),
    /// The path starts with a drive prefix such as `C:`.
    #[error("unsafe path '{0}': it starts with a drive prefix")]
    DrivePrefix(String),
    /// The path ends with `/` (a folder placeholder, not a file).
    #[error("unsafe path '{0}': it ends with '/' (a folder, not a file)")]
    TrailingSlash(String),
    /// A component is empty (`a//b`).
    #[error("unsafe path '{0}': it has an empty component ('//')")]
    EmptyComponent(String),
    /// A component is `.` or `..`.
    #[error("unsafe path '{0}': it has a '.' or '..' component")]
    DotComponent(String),
    /// A component contains NUL or another control character.
    #[error("unsafe path '{0}': it contains a control character")]
    ControlChar(String),
    /// A component contains one of `<>:"|?*` (not allowed on Windows).
    #[error("unsafe path '{path}': '{ch}' is not allowed in file names on Windows")]
    WindowsChar {
        /// The offending path.
        path: String,
        /// The character found.
        ch: char,
    },
    /// A component ends with a dot or a space (Windows silently strips them).
    #[error("unsafe path '{path}': component '{component}' ends with a dot or a space")]
    TrailingDotOrSpace {
        /// The offending path.
        path: String,
        /// The component.
        component: String,
    },
    /// A component is a Windows reserved device name (`CON`, `NUL`, `COM1`, `LPT1.txt`, ...).
    #[error("unsafe path '{path}': '{component}' is a reserved device name on Windows")]
    ReservedName {
        /// The offending path.
        path: String,
        /// The component.
        component: String,
    },
    /// A component is longer than [`MAX_COMPONENT_BYTES`].
    #[error("unsafe path '{path}': a component is {len} bytes long (at most 255 allowed)")]
    ComponentTooLong {
        /// The offending path (shortened for display).
        path: String,
        /// Length of the component in bytes.
        len: usize,
    },
    /// The whole path is longer than [`MAX_PATH_BYTES`].
    #[error("unsafe path '{path}': it is {len} bytes long (at most 4096 allowed)")]
    PathTooLong {
        /// The offending path (shortened for display).
        path: String,
        /// Length in bytes.
        len: usize,
    },
    /// The name is one of jobdl's own working files (`.jobdl/`, `.<name>.jobdl-part`, `.<name>.jobdl-state`).
    #[error(
        "path '{0}' collides with jobdl's own working files (.jobdl/, .<name>.jobdl-part, .<name>.jobdl-state); it is not downloaded"
    )]
    WorkingFile(String),
    /// An output name contains `/` or `\` (it must be a single directory component).
    #[error("invalid output name '{0}': it must not contain '/' or '\\'")]
    Separator(String),
}

/// Normalise a service path (artifact path, blob name minus prefix) into a safe relative path "a/b/c".
///
/// `\` becomes `/`; nothing is collapsed, trimmed or decoded. The path is refused when it is empty,
/// absolute (`/x`, `\\server\share`), has a drive prefix (`C:`), ends in `/`, or any component is
/// empty, `.`, `..`, holds a control character or one of `<>:"|?*`, ends in a dot or space, is a
/// Windows device name (`CON`, `aux.txt`, `LPT9`...), or is longer than 255 bytes; also when the
/// whole path exceeds 4096 bytes or names jobdl's working files (first component `.jobdl`, or any
/// component `.<x>.jobdl-part` / `.<x>.jobdl-state`, compared case-insensitively).
///
/// Percent sequences are **not** decoded: callers decode exactly once before calling, so `%2e%2e`
/// reaching this function is a literal file name and is accepted.
pub fn safe_relative_path(raw: &str) -> Result<String, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    let rel = raw.replace('\\', "/");
    let shown = || display(&rel);
    if rel.starts_with('/') {
        return Err(PathError::Absolute(shown()));
    }
    if has_drive_prefix(&rel) {
        return Err(PathError::DrivePrefix(shown()));
    }
    if rel.len() > MAX_PATH_BYTES {
        return Err(PathError::PathTooLong { path: shown(), len: rel.len() });
    }
    if rel.ends_with('/') {
        return Err(PathError::TrailingSlash(shown()));
    }
    for component in rel.split('/') {
        check_component(component, &rel)?;
    }
    if rel.split('/').next().is_some_and(|first| first.eq_ignore_ascii_case(".jobdl")) {
        return Err(PathError::WorkingFile(shown()));
    }
    Ok(rel)
}

/// Validate one directory component (output names under named-outputs/): same rules plus no '/' or '\\'.
pub fn safe_component(name: &str) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::Empty);
    }
    if name.contains(['/', '\\']) {
        return Err(PathError::Separator(display(name)));
    }
    check_component(name, name)?;
    if name.eq_ignore_ascii_case(".jobdl") {
        return Err(PathError::WorkingFile(display(name)));
    }
    Ok(())
}

/// Key used to detect names that would be one file on a case-insensitive or
/// normalisation-insensitive file system (APFS and HFS+ on macOS, NTFS on Windows): canonical
/// decomposition, full Unicode case folding (`Σ`, `σ` and `ς` are one letter; `ß` is `ss`), then
/// NFC, so that `café` written precomposed (NFC) and decomposed (NFD) share a key. Two accepted
/// relative paths with equal keys are refused as a collision (the second one fails).
pub fn collision_key(rel: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let rel = rel.replace('\\', "/");
    if rel.is_ascii() {
        return rel.to_ascii_lowercase();
    }
    let decomposed: String = rel.nfd().collect();
    unicase::UniCase::unicode(decomposed.as_str()).to_folded_case().nfc().collect()
}

/// Why two paths with one [`collision_key`] collide, for the failure message.
pub const COLLISION: &str =
    "names differ only in case or Unicode normalization, so they would be one file on macOS and Windows";

/// Check one component of `full` (used for the error message).
/// Characters Windows does not allow in a file name.
const WINDOWS_CHARS: [char; 7] = ['<', '>', ':', '"', '|', '?', '*'];

/// A server-given name (a pipeline step's display name) made one safe path component: path
/// separators, control characters and [`WINDOWS_CHARS`] become `_`, the ends are trimmed, it is
/// cut to `max` bytes (on a character boundary) and trailing dots are dropped; `None` when what
/// remains is still refused by [`safe_component`] (empty, `.`, `..`, a device name, `.jobdl`).
pub fn component_from(raw: &str, max: usize) -> Option<String> {
    let unsafe_char = |ch: char| ch.is_control() || ch == '/' || ch == '\\' || WINDOWS_CHARS.contains(&ch);
    let mapped: String = raw.chars().map(|ch| if unsafe_char(ch) { '_' } else { ch }).collect();
    let mut name = mapped.trim().to_string();
    if name.len() > max {
        let mut end = max;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    let name = name.trim_end_matches(['.', ' ']).to_string();
    safe_component(&name).ok().map(|()| name)
}

fn check_component(c: &str, full: &str) -> Result<(), PathError> {
    if c.is_empty() {
        return Err(PathError::EmptyComponent(display(full)));
    }
    if c == "." || c == ".." {
        return Err(PathError::DotComponent(display(full)));
    }
    if c.chars().any(char::is_control) {
        return Err(PathError::ControlChar(display(full)));
    }
    if c.len() > MAX_COMPONENT_BYTES {
        return Err(PathError::ComponentTooLong { path: display(full), len: c.len() });
    }
    if let Some(ch) = c.chars().find(|ch| WINDOWS_CHARS.contains(ch)) {
        return Err(PathError::WindowsChar { path: display(full), ch });
    }
    if c.ends_with('.') || c.ends_with(' ') {
        return Err(PathError::TrailingDotOrSpace { path: display(full), component: display(c) });
    }
    if is_reserved_device(c) {
        return Err(PathError::ReservedName { path: display(full), component: display(c) });
    }
    if is_working_file(c) {
        return Err(PathError::WorkingFile(display(full)));
    }
    Ok(())
}

/// `C:` at the start (a letter and a colon).
fn has_drive_prefix(p: &str) -> bool {
    matches!(p.as_bytes(), [letter, b':', ..] if letter.is_ascii_alphabetic())
}

/// Windows device names, with or without an extension, case-insensitive.
fn is_reserved_device(c: &str) -> bool {
    // Windows ignores everything from the first dot, and trailing spaces before it ("CON .txt").
    let stem = c.split('.').next().unwrap_or(c).trim_end_matches(' ');
    const NAMES: &[&str] = &["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];
    if NAMES.iter().any(|n| stem.eq_ignore_ascii_case(n)) {
        return true;
    }
    let mut chars = stem.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let rest: Vec<char> = chars.collect();
    (prefix.eq_ignore_ascii_case("COM") || prefix.eq_ignore_ascii_case("LPT"))
        && matches!(rest.as_slice(), [d] if d.is_ascii_digit() || matches!(d, '¹' | '²' | '³'))
}

/// `.<x>.jobdl-part` / `.<x>.jobdl-state` with a non-empty `<x>` (case-insensitive, for
/// case-insensitive file systems). `.jobdl-part` alone is no working file (no basename).
fn is_working_file(c: &str) -> bool {
    let lower = c.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix('.') else {
        return false;
    };
    [".jobdl-part", ".jobdl-state"].iter().any(|suffix| rest.strip_suffix(suffix).is_some_and(|stem| !stem.is_empty()))
}

/// A path as shown in messages: control and bidi-override characters escaped, long paths shortened.
fn display(p: &str) -> String {
    const MAX_CHARS: usize = 200;
    let mut out = String::new();
    for (i, ch) in p.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if ch.is_control() || matches!(ch, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.push_str(&format!("\\u{{{:x}}}", ch as u32));
        } else {
            out.push(ch);
        }
    }
    out
}

/// Printable form of a hostile name (control characters escaped), for messages and tables.
pub fn printable(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Component, Path};

    #[test]
    fn server_names_become_one_safe_component_or_none() {
        for (raw, want) in [
            ("train", Some("train")),
            ("../x", Some(".._x")),
            ("a/b\\c", Some("a_b_c")),
            ("a\u{1b}[2Jb", Some("a_[2Jb")),
            ("C:x?", Some("C_x_")),
            (" x. ", Some("x")),
            ("", None),
            ("..", None),
            ("CON", None),
            (".jobdl", None),
        ] {
            assert_eq!(component_from(raw, 100).as_deref(), want, "{raw:?}");
        }
        let cut = component_from(&"é".repeat(200), 121).unwrap();
        assert!(cut.len() <= 121 && cut.chars().all(|c| c == 'é'), "{cut}");
    }

    #[test]
    fn hostile_names_are_rejected() {
        let long = "a".repeat(300);
        let long_path = format!("{long}/x");
        let very_long = vec!["abcdefgh"; 600].join("/");
        let cases: &[(&str, &str)] = &[
            ("../x", "dot"),
            ("a/../../x", "dot"),
            ("/abs", "absolute"),
            ("C:\\x", "drive"),
            ("c:x", "drive"),
            ("dir\\..\\..\\x", "dot"),
            (".", "dot"),
            ("..", "dot"),
            ("", "empty"),
            ("a//b", "empty component"),
            ("a/./b", "dot"),
            ("\\\\server\\share", "absolute"),
            ("x\0", "control"),
            ("a/b\x1b[31m", "control"),
            ("x\u{85}y", "control"),
            ("con.txt", "reserved"),
            ("LPT9", "reserved"),
            ("dir/CON", "reserved"),
            ("aux", "reserved"),
            ("Nul.tar.gz", "reserved"),
            ("com1", "reserved"),
            ("COM¹", "reserved"),
            ("con .txt", "reserved"),
            ("a. ", "trailing"),
            ("a.", "trailing"),
            ("dir /x", "trailing"),
            ("...", "trailing"),
            (&long, "component"),
            (&long_path, "component"),
            (&very_long, "path"),
            (".jobdl/lock", "working"),
            (".JOBDL/x", "working"),
            (".x.jobdl-part", "working"),
            ("d/.x.jobdl-state", "working"),
            ("d/.X.JOBDL-PART", "working"),
            ("..hidden.jobdl-part", "working"),
            ("dir.x.jobdl-part/.y.jobdl-state", "working"),
            ("dir/", "folder"),
            ("a<b", "windows"),
            ("a|b", "windows"),
            ("what?", "windows"),
            ("star*", "windows"),
            ("quote\"", "windows"),
            ("file.txt:stream", "windows"),
        ];
        for (raw, why) in cases {
            let r = safe_relative_path(raw);
            assert!(r.is_err(), "{raw:?} ({why}) was accepted as {r:?}");
        }
    }

    #[test]
    fn error_variants_and_messages() {
        assert_eq!(safe_relative_path("/abs"), Err(PathError::Absolute("/abs".into())));
        assert_eq!(safe_relative_path("c:x"), Err(PathError::DrivePrefix("c:x".into())));
        assert_eq!(safe_relative_path("a//b"), Err(PathError::EmptyComponent("a//b".into())));
        assert_eq!(safe_relative_path("a/../b"), Err(PathError::DotComponent("a/../b".into())));
        assert_eq!(safe_relative_path("d/"), Err(PathError::TrailingSlash("d/".into())));
        assert!(matches!(safe_relative_path("d/con.txt"), Err(PathError::ReservedName { .. })));
        assert!(matches!(safe_relative_path(&"x".repeat(256)), Err(PathError::ComponentTooLong { len: 256, .. })));
        let e = safe_relative_path("a/x\0y").unwrap_err();
        assert_eq!(e, PathError::ControlChar("a/x\\u{0}y".into()));
        let msg = safe_relative_path("x\u{1b}[2J").unwrap_err().to_string();
        assert!(!msg.contains('\u{1b}'), "{msg}");
        assert!(msg.contains("x\\u{1b}[2J"), "{msg}");
        let msg = safe_relative_path("a/../b").unwrap_err().to_string();
        assert!(msg.contains("a/../b"), "{msg}");
        // A 5000-byte path is shown shortened.
        let msg = safe_relative_path(&vec!["abcd"; 1000].join("/")).unwrap_err().to_string();
        assert!(msg.len() < 400, "{msg}");
    }

    #[test]
    fn good_names_are_accepted() {
        let max = "m".repeat(255);
        let cases = [
            ("user_logs/std_log.txt", "user_logs/std_log.txt"),
            ("x.tmp", "x.tmp"),
            ("x.part", "x.part"),
            ("weird name #1 ü.txt", "weird name #1 ü.txt"),
            ("%2e%2e", "%2e%2e"),
            ("a/%2e%2e/b", "a/%2e%2e/b"),
            ("a..b", "a..b"),
            ("..a", "..a"),
            (".hidden", ".hidden"),
            ("dir\\sub\\f.txt", "dir/sub/f.txt"),
            ("console.txt", "console.txt"),
            ("COM10", "COM10"),
            ("LPT", "LPT"),
            ("x.jobdl-part", "x.jobdl-part"),
            (".jobdl-part", ".jobdl-part"),
            ("..jobdl-state", "..jobdl-state"),
            ("a/.jobdl", "a/.jobdl"),
            (".jobdlx/y", ".jobdlx/y"),
            ("outputs/model.pkl", "outputs/model.pkl"),
            (max.as_str(), max.as_str()),
        ];
        for (raw, want) in cases {
            assert_eq!(safe_relative_path(raw).as_deref(), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn output_names() {
        for good in ["model", "my_output-1", "a.b", "ü"] {
            assert_eq!(safe_component(good), Ok(()), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a\\b", "../x", "con", "x:y", ".jobdl", ".m.jobdl-part", "a ", "\0"] {
            assert!(safe_component(bad).is_err(), "{bad:?}");
        }
        assert_eq!(safe_component("a/b"), Err(PathError::Separator("a/b".into())));
    }

    #[test]
    fn collision_keys_fold_case() {
        assert_eq!(collision_key("Dir/File.TXT"), collision_key("dir/file.txt"));
        assert_eq!(collision_key("ÜBER/x"), collision_key("über/x"));
        assert_ne!(collision_key("a/b"), collision_key("a/c"));
        assert_eq!(collision_key("a\\B"), "a/b");
        // Full case folding: final sigma, sharp s, Kelvin sign.
        assert_eq!(collision_key("σ.txt"), collision_key("ς.txt"));
        assert_eq!(collision_key("Σ.txt"), collision_key("ς.txt"));
        assert_eq!(collision_key("straße"), collision_key("STRASSE"));
        assert_eq!(collision_key("\u{212a}elvin"), collision_key("kelvin"));
        // NFC and NFD spellings of one name, in any case.
        assert_eq!(collision_key("caf\u{e9}.txt"), collision_key("cafe\u{301}.txt"));
        assert_eq!(collision_key("CAF\u{c9}/x"), collision_key("cafe\u{301}/x"));
        assert_eq!(collision_key("\u{212b}"), collision_key("\u{e5}"));
        assert_ne!(collision_key("cafe.txt"), collision_key("caf\u{e9}.txt"));
        assert_ne!(collision_key("σ.txt"), collision_key("s.txt"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn accepted_paths_never_escape_the_root(raw in "[a\\\\/.: C%\\x00\\x1fü<>|*?\"]{0,24}") {
            if let Ok(rel) = safe_relative_path(&raw) {
                prop_assert!(!rel.is_empty());
                prop_assert!(!rel.starts_with('/'));
                prop_assert!(!rel.contains('\\'));
                for c in rel.split('/') {
                    prop_assert!(!c.is_empty() && c != "." && c != "..", "{:?}", rel);
                }
                let root = Path::new("/dest/root");
                let joined = root.join(&rel);
                prop_assert!(joined.starts_with(root));
                prop_assert!(joined != root);
                for comp in Path::new(&rel).components() {
                    prop_assert!(matches!(comp, Component::Normal(_)), "{:?} in {:?}", comp, rel);
                }
            }
        }

        #[test]
        fn accepted_components_are_single_normal_components(raw in "[a\\\\/.: C%\\x00ü]{0,12}") {
            if safe_component(&raw).is_ok() {
                let comps: Vec<_> = Path::new(&raw).components().collect();
                prop_assert_eq!(comps.len(), 1);
                prop_assert!(matches!(comps[0], Component::Normal(_)));
            }
        }
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("a\nb\u{7}"), "a\\nb\\u{7}");
    }
}

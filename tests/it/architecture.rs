//! Keeps the dependency direction honest: the transfer engine knows nothing about providers,
//! Azure or the terminal UI; only `report` prints to stdout; only `fs` writes to the disk; only
//! `env` reads the environment.
use std::path::Path;

fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path.display().to_string(), std::fs::read_to_string(&path).expect("read source")));
        }
    }
    out
}

#[test]
fn transfer_engine_is_provider_blind() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/transfer");
    for (path, text) in sources(&root) {
        for banned in ["crate::provider", "crate::blob", "crate::report", "indicatif", "crate::auth", "azure", "x-ms-"]
        {
            assert!(!text.contains(banned), "{path} mentions `{banned}`: the engine must not know it");
        }
    }
}

#[test]
fn only_report_prints_to_stdout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (path, text) in sources(&root) {
        if path.contains("/report/") {
            continue;
        }
        let prints = text.match_indices("println!(").any(|(i, _)| i == 0 || &text[i - 1..i] != "e");
        assert!(!prints, "{path} prints to stdout; only src/report may");
    }
}

#[test]
fn only_the_fs_module_writes_to_the_disk() {
    // One door to the disk: creating, opening for writing, renaming or removing files goes
    // through `src/fs.rs`, which never follows a link below the destination. Test modules (at
    // the end of a file, after `#[cfg(test)]`) may use std::fs freely.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let banned = [
        "std::fs::write",
        "std::fs::rename",
        "std::fs::remove_",
        "std::fs::create_dir",
        "std::fs::hard_link",
        "std::fs::set_permissions",
        "File::create",
        "OpenOptions",
        "tokio::fs::",
        "os::unix::fs::symlink",
    ];
    for (path, text) in sources(&root) {
        if path.ends_with("/src/fs.rs") {
            continue;
        }
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for b in banned {
            assert!(!code.contains(b), "{path} uses `{b}`: disk writes go through crate::fs");
        }
    }
}

/// Providers return data: they never print (notes go back in `Job::notes` / `Resolved::notes`),
/// read the environment or touch the disk (settings and the app layer hand them what they need).
/// Their unit tests, after `#[cfg(test)]`, may.
#[test]
fn providers_do_not_print_read_the_environment_or_touch_the_disk() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/provider");
    for (path, text) in sources(&root) {
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for banned in
            ["std::env", "env::var", "std::fs", "crate::report", "println!", "eprintln!", "print!(", "eprint!("]
        {
            assert!(!code.contains(banned), "{path} uses `{banned}`: providers return data, the app does the rest");
        }
    }
}

/// The names in `src/env.rs`: every `pub const NAME: &str = "VALUE";` there, as (NAME, VALUE).
fn environment_variables() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/env.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| {
            let (name, rest) = l.split_once(": &str = \"")?;
            Some((name.to_string(), rest.strip_suffix("\";")?.to_string()))
        })
        .collect();
    assert!(vars.len() > 40, "src/env.rs names too few variables: {vars:?}");
    vars
}

/// Only `src/env.rs` reads the process environment; everything else asks it (or takes a lookup
/// closure that the app layer fills from it), so one file names every variable jobdl reads.
#[test]
fn only_the_env_module_reads_the_environment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (path, text) in sources(&root) {
        if path.ends_with("src/env.rs") {
            continue;
        }
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for banned in ["std::env::var", "use std::env", "std::env::{"] {
            assert!(!code.contains(banned), "{path} reads the environment with `{banned}`: go through crate::env");
        }
    }
}

/// An environment variable's name is written once, in `src/env.rs`: elsewhere, outside unit
/// tests, a string literal that is exactly a variable's name is a second spelling of it.
#[test]
fn environment_variable_names_are_written_once() {
    let vars = environment_variables();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (path, text) in sources(&root) {
        if path.ends_with("src/env.rs") {
            continue;
        }
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (name, value) in &vars {
            let literal = format!("\"{value}\"");
            assert!(!code.contains(&literal), "{path} spells {literal}: use crate::env::{name}");
        }
    }
}

/// The README's "Environment" table names every variable jobdl reads.
#[test]
fn readme_documents_every_environment_variable() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("\n## Environment\n").nth(1).unwrap().split("\n## ").next().unwrap();
    for (_, value) in environment_variables() {
        if value.ends_with('_') {
            continue; // a prefix (`AWS_`), not a variable
        }
        assert!(section.contains(&format!("`{value}`")), "README's Environment table does not name `{value}`");
    }
}

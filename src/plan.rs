//! Pure planning: turns provider listings into transfer tasks. Every server-supplied path is
//! proven safe and inside the destination here; duplicates are downloaded once; names that
//! collide only by case fail. No I/O.
use crate::provider::Listing;
use crate::safepath::{collision_key, safe_relative_path};
use crate::transfer::FileTask;
use std::collections::HashMap;
use std::path::Path;

/// A file that cannot be planned (shown as a failed entry).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanFailure {
    /// Display path (`artifacts/...`, `named-outputs/<name>/`).
    pub display: String,
    /// Why.
    pub error: String,
}

/// Tasks to run and the failures found while planning.
#[derive(Debug, Default)]
pub struct Plan {
    /// Files to fetch.
    pub tasks: Vec<FileTask>,
    /// Files (or outputs) that failed before any transfer.
    pub failures: Vec<PlanFailure>,
}

/// Printable form of a hostile name (control characters escaped).
pub fn printable(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect()
}

impl Plan {
    /// Add the files of one output, placed under `subdir` (`artifacts`, `named-outputs/x`, or `""`).
    pub fn add(&mut self, root: &Path, subdir: &str, listing: Listing, seen: &mut HashMap<String, String>) {
        let join = |rel: &str| if subdir.is_empty() { rel.to_string() } else { format!("{subdir}/{rel}") };
        for (path, error) in listing.failures {
            self.failures.push(PlanFailure { display: join(&printable(&path)), error });
        }
        for f in listing.files {
            let rel = match safe_relative_path(&f.rel) {
                Ok(r) => r,
                Err(e) => {
                    self.failures.push(PlanFailure { display: join(&printable(&f.rel)), error: e.to_string() });
                    continue;
                }
            };
            let display = join(&rel);
            let key = collision_key(&display);
            if let Some(first) = seen.get(&key) {
                if *first == display {
                    crate::log::log(1, format!("duplicate path '{display}' listed twice; downloading it once"));
                } else {
                    self.failures.push(PlanFailure {
                        display: display.clone(),
                        error: format!("collides with {first} (names differ only in case)"),
                    });
                }
                continue;
            }
            seen.insert(key, display.clone());
            let (headers, hints) = (f.headers(), f.hints());
            self.tasks.push(FileTask {
                hints,
                refresh: f.refresh,
                dest: root.join(&display),
                display,
                url: f.url,
                headers,
                size: f.size,
                md5: f.md5,
            });
        }
    }

    /// Record a whole output that failed (`named-outputs/<name>/`).
    pub fn fail_output(&mut self, subdir: &str, error: String) {
        self.failures.push(PlanFailure { display: format!("{subdir}/"), error });
    }

    /// Total planned bytes (known sizes only).
    pub fn bytes(&self) -> u64 {
        self.tasks.iter().filter_map(|t| t.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::RemoteFile;

    fn file(rel: &str) -> RemoteFile {
        RemoteFile {
            refresh: None,
            rel: rel.into(),
            url: url::Url::parse("https://a.blob.core.windows.net/c/x").unwrap(),
            size: Some(1),
            md5: None,
        }
    }

    #[test]
    fn hostile_paths_fail_and_good_ones_land_inside() {
        let root = Path::new("/dest");
        let mut plan = Plan::default();
        let mut seen = HashMap::new();
        let listing = Listing {
            files: vec![
                file("ok.txt"),
                file("../escape"),
                file("a/../../x"),
                file("/abs"),
                file("dir\\sub\\f"),
                file("ok.txt"),
                file("OK.txt"),
            ],
            failures: vec![("gone".into(), "no download URL returned".into())],
        };
        plan.add(root, "artifacts", listing, &mut seen);
        let shown: Vec<_> = plan.tasks.iter().map(|t| t.display.as_str()).collect();
        assert_eq!(shown, ["artifacts/ok.txt", "artifacts/dir/sub/f"]);
        for t in &plan.tasks {
            assert!(t.dest.starts_with("/dest/artifacts/"));
        }
        // ../escape, a/../../x, /abs, OK.txt (case collision), gone
        assert_eq!(plan.failures.len(), 5, "{:?}", plan.failures);
        assert!(plan.failures.iter().any(|f| f.error.contains("collides with artifacts/ok.txt")));
    }

    #[test]
    fn same_path_in_two_outputs_is_fine() {
        let mut plan = Plan::default();
        let mut seen = HashMap::new();
        plan.add(Path::new("/d"), "artifacts", Listing { files: vec![file("x")], failures: vec![] }, &mut seen);
        plan.add(Path::new("/d"), "named-outputs/m", Listing { files: vec![file("x")], failures: vec![] }, &mut seen);
        assert_eq!(plan.tasks.len(), 2);
        assert!(plan.failures.is_empty());
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("a\nb\u{7}"), "a\\nb\\u{7}");
    }
}

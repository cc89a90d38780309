//! Folders that appear whole (`download --follow`): the files of a folder that is new at a poll
//! (a checkpoint being written) are fetched into `DEST/.jobdl/stage/`, and the folder is moved
//! to its place with one rename once every file of it that the poll listed is verified, so a
//! reader of the destination sees all of the folder's files or none of them. A folder that
//! already exists gets its files one by one (each is still published by its own rename).
//!
//! Planning only, but the publishing rename: paths go through [`crate::fs`].
use crate::plan::PlanFailure;
use crate::transfer::{FileOutcome, FileResult, FileTask};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Where new folders are staged, under the destination's `.jobdl/`.
const STAGE_DIR: &str = "stage";

/// One folder new at this poll.
#[derive(Debug, PartialEq)]
struct Group {
    /// Its final path.
    dir: PathBuf,
    /// Where its files are fetched.
    staged: PathBuf,
    /// The display paths of its files.
    files: HashSet<String>,
}

/// The folders of one pass that are staged.
#[derive(Debug, Default)]
pub(crate) struct Staging {
    groups: Vec<Group>,
}

/// The topmost directory of `dest` below its output's folder (one of `outputs`) for which
/// `exists` says no; `None` for a file directly in its output's folder or in existing folders.
fn new_folder(dest: &Path, outputs: &[PathBuf], exists: &dyn Fn(&Path) -> bool) -> Option<PathBuf> {
    let output = outputs.iter().filter(|o| dest.starts_with(o)).max_by_key(|o| o.components().count())?;
    let parent = dest.parent()?;
    let mut dir = output.clone();
    for c in parent.strip_prefix(output).ok()?.components() {
        dir.push(c);
        if !exists(&dir) {
            return Some(dir);
        }
    }
    None
}

impl Staging {
    /// Point the files of every folder that does not exist yet at its staging place.
    /// `outputs` are the folders the outputs land in; `exists` reads the disk.
    pub(crate) fn plan(
        root: &Path,
        outputs: &[PathBuf],
        tasks: &mut [FileTask],
        exists: &dyn Fn(&Path) -> bool,
    ) -> Staging {
        let stage = root.join(crate::fs::META_DIR).join(STAGE_DIR);
        let mut groups: BTreeMap<PathBuf, Group> = BTreeMap::new();
        for t in tasks.iter_mut() {
            let Some(dir) = new_folder(&t.dest, outputs, exists) else { continue };
            let (Ok(rel_dir), Ok(inside)) = (dir.strip_prefix(root), t.dest.strip_prefix(&dir)) else { continue };
            let staged = stage.join(rel_dir);
            let dest = staged.join(inside);
            let g = groups.entry(dir.clone()).or_insert_with(|| Group { dir, staged, files: HashSet::new() });
            g.files.insert(t.display.clone());
            t.dest = dest;
        }
        Staging { groups: groups.into_values().collect() }
    }

    /// Move each staged folder whose files all verified (fetched or kept) to its place, one
    /// rename each. Returns how many folders appeared and the display paths of the files left
    /// in the stage (their folder had a failure, or the run was interrupted).
    pub(crate) fn publish(
        &self,
        root: &crate::fs::Dir,
        files: &[&FileOutcome],
        failures: &[PlanFailure],
    ) -> (usize, HashSet<String>) {
        let ok: HashSet<&str> = files
            .iter()
            .filter(|f| matches!(f.result, FileResult::Downloaded | FileResult::Skipped))
            .map(|f| f.display.as_str())
            .collect();
        let failed: HashSet<&str> = failures.iter().map(|f| f.display.as_str()).collect();
        let (mut published, mut left) = (0, HashSet::new());
        for g in &self.groups {
            let complete = g.files.iter().all(|d| ok.contains(d.as_str()) && !failed.contains(d.as_str()));
            let moved = complete && {
                let parent = g.dir.parent().unwrap_or(root.path());
                let r = root.create_dir_all(parent).and_then(|_| root.move_dir_at(&g.staged, &g.dir));
                if let Err(e) = &r {
                    crate::log::log(0, format!("warning: cannot move {} into place: {e}", g.dir.display()));
                }
                r.is_ok()
            };
            if moved {
                published += 1;
                crate::log::log(1, format!("{}: all {} files verified; in place", g.dir.display(), g.files.len()));
                remove_empty_parents(root, &g.staged);
            } else {
                left.extend(g.files.iter().cloned());
            }
        }
        (published, left)
    }
}

/// Remove the staging directories above `staged` that are empty now, up to `.jobdl/`.
fn remove_empty_parents(root: &crate::fs::Dir, staged: &Path) {
    let meta = root.path().join(crate::fs::META_DIR);
    let mut dir = staged.parent();
    while let Some(d) = dir {
        if d == meta || !d.starts_with(&meta) || root.remove_dir_at(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topmost_missing_folder_below_the_output_is_the_group() {
        let outputs = vec![PathBuf::from("/d/artifacts"), PathBuf::from("/d/named-outputs/model")];
        let existing = ["/d/artifacts", "/d/artifacts/outputs"];
        let exists = |p: &Path| existing.iter().any(|e| Path::new(e) == p);
        let f = |p: &str| new_folder(Path::new(p), &outputs, &exists);
        assert_eq!(f("/d/artifacts/outputs/ckpt-1/opt/state.bin"), Some(PathBuf::from("/d/artifacts/outputs/ckpt-1")));
        assert_eq!(f("/d/artifacts/outputs/metrics.json"), None, "an existing folder");
        assert_eq!(f("/d/artifacts/top.txt"), None, "directly in the output's folder");
        assert_eq!(f("/d/named-outputs/model/w/a.bin"), Some(PathBuf::from("/d/named-outputs/model/w")));
        assert_eq!(f("/d/elsewhere/a/b"), None, "outside every output");
    }
}

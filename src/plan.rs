//! Pure planning: turns provider listings into transfer tasks. Every server-supplied path is
//! proven safe and inside the destination here; duplicates are downloaded once; names that
//! collide only by case fail; `--include`/`--exclude` globs drop files here, before any download.
//! No I/O.
use crate::error::Error;
use crate::provider::Listing;
use crate::safepath::{collision_key, printable, safe_relative_path};
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
    /// Which files to keep (`--include` / `--exclude`); keeps everything by default.
    pub filter: Filter,
    /// Files the filter dropped.
    pub filtered: usize,
    /// Archives to fetch and unpack (KFP v1 `:read` artifacts).
    pub archives: Vec<ArchiveTask>,
    /// The folder each output's files land in (`DEST/artifacts`, `DEST/named-outputs/NAME`).
    pub outputs: Vec<std::path::PathBuf>,
    /// The filter every archive's entries pass, shared, so that which `--include` matched an
    /// entry is known once the archives are unpacked.
    pub entry_filter: Option<std::sync::Arc<std::sync::Mutex<Filter>>>,
}

/// A remote archive whose entries are unpacked into `dir` (entries pass the path rules there).
#[derive(Debug, Clone)]
pub struct ArchiveTask {
    /// Absolute directory the entries land in (inside the destination: planned like a path).
    pub dir: std::path::PathBuf,
    /// `dir` relative to the destination, `/`-separated (for messages and `--json` paths).
    pub display: String,
    /// What to fetch.
    pub source: crate::provider::ArchiveSource,
    /// Which entries to extract (`--include` / `--exclude`); `None`: all.
    pub entries: Option<crate::transfer::EntryFilter>,
}

/// `--include` / `--exclude` globs, gitignore-style, matched against a file's path relative to its
/// output (`logs/a/b.txt` for `artifacts/logs/a/b.txt`) and against its path in the destination as
/// jobdl prints it (`artifacts/logs/a/b.txt`). A file is kept when it matches an include (or none
/// was given) and no exclude. Which includes matched some file is recorded, so that one that
/// matched nothing can be reported.
///
/// Pattern rules: `*` and `?` never cross `/`, `**` does; a pattern without `/` matches the name at
/// any depth (`*.txt`); a leading `/` anchors at the output root; a pattern also matches everything
/// below a directory it names (`logs` and `logs/` keep `logs/a/b.txt`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Option<globset::GlobSet>,
    exclude: Option<globset::GlobSet>,
    /// The `--include` globs as given.
    include_text: Vec<String>,
    /// Per `--include` glob: whether it matched some file.
    matched: Vec<bool>,
}

impl Filter {
    /// Compile the globs; an invalid one is a usage error (exit 2) naming it.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter, Error> {
        Ok(Filter {
            include: compile(include, "--include")?,
            exclude: compile(exclude, "--exclude")?,
            include_text: include.to_vec(),
            matched: vec![false; include.len()],
        })
    }

    /// Whether no glob was given.
    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    /// Whether the file at `rel` (relative to its output, `/`-separated) is kept.
    pub fn keeps(&mut self, rel: &str) -> bool {
        self.keeps_in("", rel)
    }

    /// Whether the file at `rel` of the output placed under `subdir` (`artifacts`,
    /// `named-outputs/x`, or `""`) is kept: a glob may name it either way.
    pub fn keeps_in(&mut self, subdir: &str, rel: &str) -> bool {
        let rel = rel.trim_start_matches('/');
        let shown = if subdir.is_empty() { None } else { Some(format!("{subdir}/{rel}")) };
        let excluded =
            self.exclude.as_ref().is_some_and(|s| s.is_match(rel) || shown.as_deref().is_some_and(|p| s.is_match(p)));
        let Some(include) = &self.include else { return !excluded };
        let mut hits = include.matches(rel);
        if let Some(p) = &shown {
            hits.extend(include.matches(p));
        }
        if hits.is_empty() {
            return false;
        }
        // Each include compiled to two globs (itself and everything below it).
        for i in hits {
            if let Some(m) = self.matched.get_mut(i / 2) {
                *m = true;
            }
        }
        !excluded
    }

    /// The `--include` globs that matched no file so far.
    pub fn unmatched_includes(&self) -> Vec<&str> {
        self.include_text.iter().zip(&self.matched).filter(|(_, m)| !**m).map(|(g, _)| g.as_str()).collect()
    }
}

/// The `--include` globs of `files` that matched no file, nor (with archives) an entry `entries`
/// kept.
pub fn unmatched_includes(files: &Filter, entries: Option<&std::sync::Mutex<Filter>>) -> Vec<String> {
    let by_entries: Option<Vec<String>> = entries.map(|f| match f.lock() {
        Ok(f) => f.unmatched_includes().into_iter().map(String::from).collect(),
        Err(p) => p.into_inner().unmatched_includes().into_iter().map(String::from).collect(),
    });
    files
        .unmatched_includes()
        .into_iter()
        .filter(|g| by_entries.as_ref().is_none_or(|e| e.iter().any(|u| u == g)))
        .map(String::from)
        .collect()
}

fn compile(globs: &[String], flag: &str) -> Result<Option<globset::GlobSet>, Error> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = globset::GlobSetBuilder::new();
    for g in globs {
        let bad = |e: String| Error::usage(format!("invalid {flag} glob '{g}': {e}"));
        let t = g.trim();
        if t.is_empty() || t == "/" {
            return Err(bad("empty pattern".into()));
        }
        let anchored = t.starts_with('/');
        let body = t.trim_start_matches('/').trim_end_matches('/');
        let base = if anchored || body.contains('/') { body.to_string() } else { format!("**/{body}") };
        for pat in [base.clone(), format!("{base}/**")] {
            let glob = globset::GlobBuilder::new(&pat)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| bad(e.kind().to_string()))?;
            b.add(glob);
        }
    }
    b.build().map(Some).map_err(|e| Error::usage(format!("invalid {flag} glob: {e}")))
}

impl Plan {
    /// Plan archives whose entries land below `subdir/<archive rel>`; an unsafe directory fails
    /// that archive.
    pub fn add_archives(&mut self, root: &Path, subdir: &str, archives: Vec<crate::provider::ArchiveSource>) {
        for a in archives {
            let joined = match (subdir.is_empty(), a.rel.is_empty()) {
                (true, _) => a.rel.clone(),
                (false, true) => subdir.to_string(),
                (false, false) => format!("{subdir}/{}", a.rel),
            };
            match safe_relative_path(&joined) {
                Ok(rel) => {
                    let entries = self.entry_filter(subdir, &a.rel);
                    self.archives.push(ArchiveTask { dir: root.join(&rel), display: rel, source: a, entries });
                }
                Err(e) => self.failures.push(PlanFailure { display: printable(&joined), error: e.to_string() }),
            }
        }
    }

    /// The filter of the entries of an archive whose directory is `archive` within the output
    /// placed under `subdir`: an entry is matched as a file of that output at `archive/<entry>`
    /// would be. `None` when no glob was given.
    fn entry_filter(&mut self, subdir: &str, archive: &str) -> Option<crate::transfer::EntryFilter> {
        if self.filter.is_empty() {
            return None;
        }
        let filter = self
            .entry_filter
            .get_or_insert_with(|| std::sync::Arc::new(std::sync::Mutex::new(self.filter.clone())))
            .clone();
        let (subdir, archive) = (subdir.to_string(), archive.trim_matches('/').to_string());
        Some(crate::transfer::EntryFilter(std::sync::Arc::new(move |entry: &str| {
            let rel = if archive.is_empty() { entry.to_string() } else { format!("{archive}/{entry}") };
            match filter.lock() {
                Ok(mut f) => f.keeps_in(&subdir, &rel),
                Err(p) => p.into_inner().keeps_in(&subdir, &rel),
            }
        })))
    }

    /// The `--include` globs that matched no planned file and (once the archives are unpacked)
    /// no archive entry.
    pub fn unmatched_includes(&self) -> Vec<String> {
        unmatched_includes(&self.filter, self.entry_filter.as_deref())
    }

    /// Add the files of one output, placed under `subdir` (`artifacts`, `named-outputs/x`, or `""`).
    pub fn add(&mut self, root: &Path, subdir: &str, listing: Listing, seen: &mut HashMap<String, String>) {
        let join = |rel: &str| if subdir.is_empty() { rel.to_string() } else { format!("{subdir}/{rel}") };
        self.outputs.push(root.join(subdir));
        for (path, error) in listing.failures {
            if !self.filter.keeps_in(subdir, &path) {
                self.filtered += 1;
                continue;
            }
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
            if !self.filter.keeps_in(subdir, &rel) {
                self.filtered += 1;
                continue;
            }
            let display = join(&rel);
            let key = collision_key(&display);
            if let Some(first) = seen.get(&key) {
                if *first == display {
                    crate::log::log(1, format!("duplicate path '{display}' listed twice; downloading it once"));
                } else {
                    self.failures.push(PlanFailure {
                        display: display.clone(),
                        error: format!("collides with {first} ({})", crate::safepath::COLLISION),
                    });
                }
                continue;
            }
            seen.insert(key, display.clone());
            let (headers, hints, sign) = (f.headers(), f.hints(), f.signer());
            self.tasks.push(FileTask {
                hints,
                sign,
                refresh: f.refresh,
                dest: root.join(&display),
                display,
                url: f.url,
                headers,
                size: f.size,
                md5: f.md5,
                check: f.check,
                etag: f.etag,
            });
        }
    }

    /// Record a whole output that failed (`named-outputs/<name>/`).
    pub fn fail_output(&mut self, subdir: &str, error: String) {
        self.failures.push(PlanFailure { display: format!("{subdir}/"), error });
    }

    /// Keep only `shard`'s share of the planned files, archives and failures (see
    /// [`crate::shard::assign`]; each is keyed by its path in the destination, so the split is
    /// the same on every node whatever the listing order).
    pub fn keep_shard(&mut self, shard: crate::shard::Shard) {
        let archive_keys: Vec<String> = self.archives.iter().map(|a| format!("{}/", a.display)).collect();
        let mut items: Vec<(&str, Option<u64>)> = Vec::new();
        items.extend(self.tasks.iter().map(|t| (t.display.as_str(), t.size)));
        items.extend(archive_keys.iter().map(|k| (k.as_str(), None)));
        items.extend(self.failures.iter().map(|f| (f.display.as_str(), None)));
        let mine: Vec<bool> = crate::shard::assign(&items, shard.count).into_iter().map(|k| k == shard.index).collect();
        let (tasks, rest) = mine.split_at(self.tasks.len().min(mine.len()));
        let (archives, failures) = rest.split_at(self.archives.len().min(rest.len()));
        let mut it = tasks.iter();
        self.tasks.retain(|_| it.next().copied().unwrap_or(false));
        let mut it = archives.iter();
        self.archives.retain(|_| it.next().copied().unwrap_or(false));
        let mut it = failures.iter();
        self.failures.retain(|_| it.next().copied().unwrap_or(false));
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
            url: url::Url::parse("https://a.blob.core.windows.net/c/x").unwrap().into(),
            size: Some(1),
            md5: None,
            check: None,
            etag: None,
            protocol: crate::provider::Protocol::AzureBlob,
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

    fn kept(include: &[&str], exclude: &[&str], paths: &[&str]) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut f = Filter::new(&s(include), &s(exclude)).unwrap();
        paths.iter().filter(|p| f.keeps(p)).map(|p| p.to_string()).collect()
    }

    #[test]
    fn globs_are_gitignore_style() {
        let paths = ["logs/a/b.txt", "logs/c.txt", "model.pt", "sub/model.pt", "x.txt", "logsx/y.txt"];
        assert_eq!(kept(&["logs/**/*.txt"], &[], &paths), ["logs/a/b.txt", "logs/c.txt"]);
        assert_eq!(kept(&["*.txt"], &[], &paths), ["logs/a/b.txt", "logs/c.txt", "x.txt", "logsx/y.txt"]);
        assert_eq!(kept(&["logs"], &[], &paths), ["logs/a/b.txt", "logs/c.txt"]);
        assert_eq!(kept(&["logs/"], &[], &paths), ["logs/a/b.txt", "logs/c.txt"]);
        assert_eq!(kept(&["/model.pt"], &[], &paths), ["model.pt"]);
        assert_eq!(kept(&["model.pt"], &[], &paths), ["model.pt", "sub/model.pt"]);
        assert_eq!(kept(&["logs/*.txt"], &[], &paths), ["logs/c.txt"]);
        assert_eq!(kept(&[], &["*.txt"], &paths), ["model.pt", "sub/model.pt"]);
        assert_eq!(kept(&["logs"], &["a"], &paths), ["logs/c.txt"]);
        assert_eq!(kept(&["nothing*"], &[], &paths), Vec::<String>::new());
        assert_eq!(kept(&[], &[], &paths).len(), paths.len());
    }

    #[test]
    fn invalid_glob_is_a_usage_error_naming_it() {
        let e = Filter::new(&["logs/[a".into()], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--include glob 'logs/[a'"), "{e}");
        let e = Filter::new(&[], &["".into()]).unwrap_err();
        assert!(e.to_string().contains("--exclude"), "{e}");
    }

    #[test]
    fn plan_drops_filtered_files_before_planning() {
        let mut plan = Plan { filter: Filter::new(&["*.csv".into()], &[]).unwrap(), ..Plan::default() };
        let listing = Listing { files: vec![file("a.csv"), file("sub/b.csv"), file("c.json")], failures: vec![] };
        plan.add(Path::new("/d"), "named-outputs/m", listing, &mut HashMap::new());
        let shown: Vec<_> = plan.tasks.iter().map(|t| t.display.as_str()).collect();
        assert_eq!(shown, ["named-outputs/m/a.csv", "named-outputs/m/sub/b.csv"]);
        assert_eq!(plan.filtered, 1);
    }

    #[test]
    fn shards_of_a_plan_are_disjoint_and_cover_files_archives_and_failures() {
        let listing = || Listing {
            files: (0..10).map(|i| file(&format!("f{i}"))).collect(),
            failures: vec![("gone".into(), "no URL".into())],
        };
        let mut seen = Vec::new();
        for k in 0..3 {
            let mut plan = Plan::default();
            plan.add(Path::new("/d"), "artifacts", listing(), &mut HashMap::new());
            plan.keep_shard(crate::shard::Shard { index: k, count: 3 });
            seen.extend(plan.tasks.iter().map(|t| t.display.clone()));
            seen.extend(plan.failures.iter().map(|f| f.display.clone()));
        }
        seen.sort();
        let before = seen.len();
        seen.dedup();
        assert_eq!((before, seen.len()), (11, 11), "{seen:?}");
    }

    #[test]
    fn globs_also_match_destination_paths_and_unmatched_includes_are_known() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut f = Filter::new(&s(&["artifacts/logs/**", "*.nope", "/config.json"]), &s(&[])).unwrap();
        assert!(f.keeps_in("artifacts", "logs/azureml/rank_0/metrics.json"));
        assert!(!f.keeps_in("named-outputs/model", "logs/x.txt"));
        assert!(f.keeps_in("named-outputs/model", "config.json"));
        assert_eq!(f.unmatched_includes(), vec!["*.nope"]);
        let mut f = Filter::new(&s(&["logs/**"]), &s(&["artifacts/logs/b.txt"])).unwrap();
        assert!(f.keeps_in("artifacts", "logs/a.txt"));
        assert!(!f.keeps_in("artifacts", "logs/b.txt"), "an exclude names a destination path too");
        assert!(f.unmatched_includes().is_empty());
    }

    #[test]
    fn archive_entries_are_matched_as_files_of_their_output() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let archive = |rel: &str| crate::provider::ArchiveSource {
            rel: rel.into(),
            url: url::Url::parse("http://127.0.0.1:1/x:read").unwrap(),
            headers: vec![],
            decoder: crate::transfer::Decoder(std::sync::Arc::new(crate::provider::kfp::read::ReadBody)),
        };
        let mut plan = Plan::default();
        assert!(plan.entry_filter("artifacts", "train").is_none(), "no glob: every entry is extracted");
        plan.filter = Filter::new(&s(&["train/*.log", "artifacts/eval/**", "*.json"]), &s(&["tmp"])).unwrap();
        plan.add_archives(Path::new("/d"), "artifacts", vec![archive("train"), archive("eval")]);
        let keeps = |i: usize, entry: &str| (plan.archives[i].entries.as_ref().unwrap().0)(entry);
        assert!(keeps(0, "main.log"), "relative to the output");
        assert!(!keeps(0, "sub/main.log"), "`*` stays within one directory");
        assert!(keeps(0, "sub/metrics.json"), "a name at any depth");
        assert!(!keeps(0, "tmp/metrics.json"), "an excluded directory");
        assert!(keeps(1, "anything/at/all.bin"), "as jobdl prints it");
        assert_eq!(plan.archives[1].display, "artifacts/eval");
    }
}

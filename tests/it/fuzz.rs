//! Seeded fuzzing of every parser that reads server data: List Blobs XML, artifact listing pages,
//! job JSON (Foundry and ARM), datastore JSON, blob URL / SAS parsing, `azureml://` URIs and path
//! normalisation, Kubeflow run-prefix keys and pipeline roots, step names made folder names.
//!
//! The seeds are kept in the repository (`tests/corpus/<target>/`, one input per file; add a
//! file there to keep any input that once broke a parser). Each target runs
//! 1. every seed as it is, checking the target's invariants, and
//! 2. proptest mutations of the seeds (byte edits, inserts, deletes, splices of two seeds),
//!    checking the same invariants. `JOBDL_FUZZ_CASES` sets the cases per target (default 5,000:
//!    the short bounded run in `.ci/run`; e.g. `JOBDL_FUZZ_CASES=200000 cargo test --test it fuzz::
//!    --release` for a long run).
//!
//! The invariants are about safety, not just "no panic": a planned path never escapes; a parsed
//! blob size is never above the 1 PiB cap (`MAX_BLOB_SIZE`); a next page never leaves the listing's origin; a blob
//! URL built from a datastore always lands on that account's own storage host.
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::path::{Component, Path, PathBuf};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("corpus entry").path();
            let bytes = std::fs::read(&p).expect("corpus file");
            (p.file_name().expect("name").to_string_lossy().into_owned(), bytes)
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 2, "corpus {target} needs at least two seeds");
    seeds
}

fn cases() -> u32 {
    std::env::var("JOBDL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000)
}

/// One edit applied to a seed.
#[derive(Debug, Clone)]
enum Edit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    /// Insert a slice of another seed (structure-aware enough to splice tags and keys).
    Splice(prop::sample::Index, prop::sample::Index, prop::sample::Index, u8),
    /// Duplicate a slice (nesting, repeated keys).
    Repeat(prop::sample::Index, u8),
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), prop::sample::select(b"<>/\\.%\"'&;:?#=[]{},0\x00\xff\n".to_vec()),]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), interesting_byte()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<prop::sample::Index>(), interesting_byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Edit::Remove),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1u8..64)
            .prop_map(|(a, b, c, n)| Edit::Splice(a, b, c, n)),
        (any::<prop::sample::Index>(), 1u8..64).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

fn mutate(seeds: &[(String, Vec<u8>)], seed: &prop::sample::Index, edits: &[Edit]) -> Vec<u8> {
    let mut data = seeds[seed.index(seeds.len())].1.clone();
    for e in edits {
        let at = |i: &prop::sample::Index, len: usize| i.index(len + 1);
        match e {
            Edit::Set(i, b) if !data.is_empty() => {
                let k = i.index(data.len());
                data[k] = *b;
            }
            Edit::Insert(i, b) => {
                let k = at(i, data.len());
                data.insert(k, *b);
            }
            Edit::Remove(i) if !data.is_empty() => {
                let k = i.index(data.len());
                data.remove(k);
            }
            Edit::Splice(other, from, to, n) => {
                let src = &seeds[other.index(seeds.len())].1;
                if !src.is_empty() {
                    let start = from.index(src.len());
                    let end = (start + usize::from(*n)).min(src.len());
                    let k = at(to, data.len());
                    data.splice(k..k, src[start..end].iter().copied());
                }
            }
            Edit::Repeat(i, n) if !data.is_empty() => {
                let start = i.index(data.len());
                let end = (start + usize::from(*n)).min(data.len());
                let piece = data[start..end].to_vec();
                data.splice(end..end, piece);
            }
            _ => {}
        }
    }
    data
}

/// Runs `check` on every seed, then on `cases()` mutations of them.
fn fuzz(target: &str, check: impl Fn(&[u8]) -> Result<(), TestCaseError>) {
    let seeds = corpus(target);
    for (name, bytes) in &seeds {
        if let Err(e) = check(bytes) {
            panic!("{target}/{name}: {e}");
        }
    }
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let strategy = (any::<prop::sample::Index>(), prop::collection::vec(edit(), 0..10));
    let result = runner.run(&strategy, |(seed, edits)| check(&mutate(&seeds, &seed, &edits)));
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end_matches('\n').to_string()
}

fn assert_contained(p: &str, raw: &str) -> Result<(), TestCaseError> {
    prop_assert!(!p.is_empty());
    prop_assert!(!p.starts_with('/') && !p.contains('\\') && !p.contains(':'), "{p:?} from {raw:?}");
    prop_assert!(!p.chars().any(char::is_control), "{p:?} from {raw:?}");
    for c in p.split('/') {
        prop_assert!(!c.is_empty() && c != "." && c != "..", "{p:?} from {raw:?}");
        // Never one of jobdl's own working-file names (`.<name>.jobdl-part` / `-state`).
        let lower = c.to_ascii_lowercase();
        let own = [".jobdl-part", ".jobdl-state"]
            .iter()
            .any(|s| lower.strip_prefix('.').and_then(|r| r.strip_suffix(s)).is_some_and(|stem| !stem.is_empty()));
        prop_assert!(!own, "{p:?} from {raw:?}");
    }
    let path = Path::new(p);
    prop_assert!(path.components().all(|c| matches!(c, Component::Normal(_))), "{p:?} from {raw:?}");
    let root = Path::new("/dest");
    prop_assert!(root.join(path).starts_with(root));
    Ok(())
}

#[test]
fn list_blobs_xml() {
    fuzz("list_xml", |bytes| {
        if let Ok(page) = jobdl::blob::parse_list_page(bytes) {
            for item in page.blobs {
                prop_assert!(item.size <= jobdl::blob::MAX_BLOB_SIZE, "{}", item.size);
                // A listed name either plans to a contained path or is refused.
                if let Ok(p) = jobdl::safepath::safe_relative_path(&item.name) {
                    assert_contained(&p, &item.name)?;
                }
            }
        }
        Ok(())
    });
}

#[test]
fn artifact_listing_pages() {
    let first =
        url::Url::parse("https://eastus2.api.azureml.ms/history/v1.0/artifacts?api-version=x&a=b").expect("first");
    fuzz("artifact_page", |bytes| {
        let Ok(page) = serde_json::from_slice::<serde_json::Value>(bytes) else { return Ok(()) };
        for current in [&first, &url::Url::parse("https://eastus2.api.azureml.ms/other?p=2").expect("url")] {
            if let Ok(step) = jobdl::provider::foundry::parse_page(&page, &first, current)
                && let Some(next) = step.next
            {
                prop_assert_eq!(next.scheme(), current.scheme());
                prop_assert_eq!(next.host_str(), current.host_str());
                prop_assert_eq!(next.port_or_known_default(), current.port_or_known_default());
                prop_assert!(next.query_pairs().any(|(k, _)| k == "api-version"), "{next}");
            }
        }
        Ok(())
    });
}

#[test]
fn job_json() {
    fuzz("job_json", |bytes| {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else { return Ok(()) };
        for job in [jobdl::provider::foundry::parse_job("job", &v), jobdl::provider::azureml::parse_job("job", &v)]
            .into_iter()
            .flatten()
        {
            // Output names are used as directory names only after this check; it must never
            // accept an unsafe one.
            for name in job.outputs.keys() {
                if jobdl::safepath::safe_component(name).is_ok() {
                    assert_contained(name, name)?;
                    prop_assert!(!name.contains('/'), "{name:?}");
                }
            }
        }
        Ok(())
    });
}

#[test]
fn datastore_json() {
    fuzz("datastore_json", |bytes| {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else { return Ok(()) };
        if let Ok(ds) = jobdl::provider::azureml::datastore::parse_datastore("ds", &v)
            && let Ok(c) = jobdl::blob::url::ContainerRef::for_account(
                jobdl::hosts::Cloud::AzureCloud,
                None,
                &ds.account,
                &ds.container,
                None,
            )
        {
            let host = c.container_url().host_str().unwrap_or_default().to_string();
            prop_assert_eq!(host, format!("{}.blob.core.windows.net", ds.account));
        }
        Ok(())
    });
}

/// Every `sig` parameter of a displayed URL is redacted, and no other parameter carries the
/// original signature's value.
fn assert_no_signature(shown: &str, original: &url::Url) -> Result<(), TestCaseError> {
    let Ok(u) = url::Url::parse(shown) else { return Ok(()) };
    let secrets: Vec<String> = original
        .query_pairs()
        .filter(|(k, _)| k.eq_ignore_ascii_case("sig"))
        .map(|(_, v)| v.into_owned())
        // Shorter values are not registered as secrets (README: Security), so another parameter
        // may hold them; the signature parameter itself is always redacted.
        .filter(|v| v.len() >= 8)
        .collect();
    for (k, v) in u.query_pairs() {
        if k.eq_ignore_ascii_case("sig") {
            prop_assert!(v.is_empty() || v == "REDACTED", "{shown}");
        } else if original.query_pairs().any(|(ok, ov)| ok == k && ov == v) {
            // The same pair as in the original (a parameter jobdl shows as it is).
        } else {
            for s in &secrets {
                prop_assert!(!v.contains(s.as_str()), "{shown}");
            }
        }
    }
    Ok(())
}

#[test]
fn blob_urls() {
    fuzz("blob_url", |bytes| {
        let Ok(url) = url::Url::parse(&text(bytes)) else { return Ok(()) };
        if let Ok(parsed) = jobdl::blob::parse_blob_url(&url) {
            // Messages name the container without its SAS.
            prop_assert!(!parsed.container.display().contains('?'), "{}", parsed.container.display());
            let container = parsed.container.container_url();
            prop_assert_eq!(container.host_str(), url.host_str());
        }
        assert_no_signature(&jobdl::redact::url_for_display(&url), &url)
    });
}

#[test]
fn azureml_uris() {
    fuzz("azureml_uri", |bytes| {
        let raw = text(bytes);
        if let Ok(jobdl::provider::azureml::uri::Location::Datastore { datastore, .. }) =
            jobdl::provider::azureml::uri::parse(&raw)
        {
            prop_assert!(!datastore.is_empty() && !datastore.contains('/'), "{datastore:?} from {raw:?}");
        }
        Ok(())
    });
}

#[test]
fn relative_paths() {
    fuzz("path", |bytes| {
        let raw = text(bytes);
        if let Ok(p) = jobdl::safepath::safe_relative_path(&raw) {
            assert_contained(&p, &raw)?;
        }
        Ok(())
    });
}

#[test]
fn step_names_become_one_component() {
    fuzz("step_name", |bytes| {
        let raw = text(bytes);
        if let Some(name) = jobdl::safepath::component_from(&raw, 120) {
            prop_assert!(name.len() <= 120, "{name:?} from {raw:?}");
            prop_assert!(!name.contains('/'), "{name:?} from {raw:?}");
            prop_assert!(jobdl::safepath::safe_component(&name).is_ok(), "{name:?} from {raw:?}");
            assert_contained(&name, &raw)?;
        }
        Ok(())
    });
}

#[test]
fn kfp_keys_and_roots() {
    use jobdl::provider::kfp::layout::{Layout, parse_root};
    fuzz("kfp_keys", |bytes| {
        let raw = text(bytes);
        let prefix = "v2/artifacts/p/run/";
        let objects: Vec<jobdl::s3::S3Object> =
            raw.lines().map(|k| jobdl::s3::S3Object { key: format!("{prefix}{k}"), size: 1, etag: None }).collect();
        let n = objects.len();
        let layout = Layout::group(prefix, objects);
        prop_assert_eq!(layout.items.len() + layout.failures.len(), n);
        for item in &layout.items {
            // Task and output are single safe names; whatever follows is planned like any path.
            prop_assert!(jobdl::safepath::safe_component(&item.task).is_ok(), "{:?}", item.task);
            prop_assert!(jobdl::safepath::safe_component(&item.output).is_ok(), "{:?}", item.output);
            let local = format!("named-outputs/{}/{}", item.task, layout.rel_in_task(item));
            if let Ok(p) = jobdl::safepath::safe_relative_path(&local) {
                assert_contained(&p, &local)?;
            }
        }
        if let Some(first) = raw.lines().next()
            && let Ok(root) = parse_root(first)
        {
            // A root's query (go-cloud options such as endpoint=) never survives.
            prop_assert!(!root.uri.contains('?') && !root.prefix.contains('?'), "{root:?}");
            prop_assert!(!root.prefix.split('/').any(|s| s == ".." || s == "."), "{root:?}");
            prop_assert!(root.run_prefix("p", "r").ends_with("p/r/"));
        }
        Ok(())
    });
}

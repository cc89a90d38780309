//! `jobdl cp s3://…` end to end against a real S3 server: moto 5.2.5 (`moto[server]`, pinned in
//! `.ci/s3/requirements.txt`) with signature checking on, so a wrong secret really fails.
//!
//! Each test starts its own moto server (`tests/support/moto.rs`: signature checking on, stopped
//! by PID when dropped) and seeds it with `tests/s3/seed.py` (boto3, jobdl-independent).
#![cfg(target_os = "linux")]

use crate::support::check;
use crate::support::moto;

use check::{text, tree, validate};
use md5::{Digest, Md5};
use moto::{Moto, bytes};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BUCKET: &str = "jobs";
const REGION: &str = "us-east-1";
/// KFP's launcher uploads in 5 MiB parts.
const PART: usize = 5 * 1024 * 1024;

/// Seeding helpers of this file's single-bucket layouts.
impl Moto {
    /// Create the bucket and upload `objects` (key, bytes, multipart?) with boto3; returns the
    /// access key, its secret, and the ETags moto stored.
    fn seed_keys(&self, dir: &Path, objects: &[(&str, &[u8], bool)]) -> Seeded {
        self.seed_with(dir, objects, None)
    }

    /// Upload `objects` with explicit layouts: (key, bytes, part sizes (empty: one PUT), a
    /// FULL_OBJECT checksum algorithm to store).
    fn seed_parts(&self, dir: &Path, objects: &[Layout<'_>]) -> Seeded {
        let spec: Vec<Value> = objects
            .iter()
            .enumerate()
            .map(|(i, (key, data, parts, alg))| {
                let file = dir.join(format!("obj{i}"));
                std::fs::write(&file, data).unwrap();
                json!({"bucket": BUCKET, "key": key, "file": file,
                       "parts": (!parts.is_empty()).then_some(parts), "checksum": alg})
            })
            .collect();
        self.seed_spec(json!({"endpoint": self.endpoint(), "region": REGION, "buckets": [BUCKET], "objects": spec}))
    }

    /// [`Self::seed`], plus `bulk` = (prefix, count) small objects named `<prefix>k <n>+x.txt`
    /// whose content is their key.
    fn seed_with(&self, dir: &Path, objects: &[(&str, &[u8], bool)], bulk: Option<(&str, usize)>) -> Seeded {
        let mut spec = Vec::new();
        for (i, (key, data, multipart)) in objects.iter().enumerate() {
            let file = dir.join(format!("obj{i}"));
            std::fs::write(&file, data).unwrap();
            spec.push(json!({"bucket": BUCKET, "key": key, "file": file, "part_size": multipart.then_some(PART)}));
        }
        let mut spec = json!({"endpoint": self.endpoint(), "region": REGION, "buckets": [BUCKET], "objects": spec});
        if let Some((prefix, count)) = bulk {
            spec["bulk"] = json!({"bucket": BUCKET, "prefix": prefix, "count": count});
        }
        let seeded = self.seed_spec(spec);
        // moto keeps hostile keys as they are (§8): the test is only meaningful if it does.
        for (key, _, _) in objects {
            assert!(seeded.listed.iter().any(|k| k == key), "moto does not hold {key:?}: {:?}", seeded.listed);
        }
        seeded
    }

    /// Run tests/s3/seed.py on `spec`.
    fn seed_spec(&self, spec: Value) -> Seeded {
        let v = self.run_seed(&spec);
        let listed: Vec<String> =
            v["listed"][BUCKET].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
        Seeded {
            listed,
            access_key: v["access_key"].as_str().unwrap().to_string(),
            secret_key: v["secret_key"].as_str().unwrap().to_string(),
            etags: v["etags"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, e)| {
                    (k.trim_start_matches(&format!("{BUCKET}/")).to_string(), e.as_str().unwrap().to_string())
                })
                .collect(),
        }
    }
}

/// An object to upload: key, bytes, part sizes (empty: one PUT), a FULL_OBJECT checksum algorithm.
type Layout<'a> = (&'a str, &'a [u8], Vec<usize>, Option<&'a str>);

struct Seeded {
    listed: Vec<String>,
    access_key: String,
    secret_key: String,
    etags: BTreeMap<String, String>,
}

/// Run jobdl with only the given AWS settings (HOME points at an empty directory).
fn jobdl(home: &Path, aws: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobdl"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("JOBDL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("JOBDL_ACCESS_TOKEN", "test-token").env("HOME", home).env_remove("CI").envs(aws.iter().copied());
    cmd.args(args).stdin(Stdio::null()).output().unwrap()
}

fn keys(s: &Seeded) -> Vec<(&'static str, String)> {
    vec![("AWS_ACCESS_KEY_ID", s.access_key.clone()), ("AWS_SECRET_ACCESS_KEY", s.secret_key.clone())]
}

fn hex_md5(data: &[u8]) -> String {
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn cp_prefix_is_byte_exact_verifies_single_part_etags_and_hostile_keys_fail_alone() {
    let Some(moto) = Moto::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (seed_dir, home, dest) = (tmp.path().join("seed"), tmp.path().join("home"), tmp.path().join("dest"));
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::create_dir_all(&home).unwrap();

    let small = bytes(3_000, 1);
    let nested = bytes(70_001, 2);
    let spaced = bytes(10, 3);
    let empty: Vec<u8> = Vec::new();
    let mid = bytes(9 * 1024 * 1024 + 7, 4); // > 8 MiB, single part: its ETag is the MD5
    let chunky = bytes(33 * 1024 * 1024 + 5, 5); // above the 32 MiB chunk threshold, single part
    let multi = bytes(34 * 1024 * 1024 + 123, 6); // chunked, 5 MiB parts: ETag "<hex>-7"
    let objects: Vec<(&str, &[u8], bool)> = vec![
        ("run/a.txt", &small, false),
        ("run/deep/er/nested.bin", &nested, false),
        ("run/with space+plus&amp.txt", &spaced, false),
        ("run/empty.txt", &empty, false),
        ("run/mid.bin", &mid, false),
        ("run/chunky.bin", &chunky, false),
        ("run/multi.bin", &multi, true),
        ("run/x/../escape.txt", &small, false),
        ("run//double.txt", &small, false),
        ("run/ctl\u{1}char.txt", &small, false),
        ("run/../outside.txt", &small, false),
        ("other/not-mine.txt", &small, false),
    ];
    let seeded = moto.seed_keys(&seed_dir, &objects);
    assert!(seeded.etags["run/multi.bin"].ends_with("-7"), "{:?}", seeded.etags);
    assert_eq!(seeded.etags["run/mid.bin"], hex_md5(&mid));

    let aws = keys(&seeded);
    let aws: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let endpoint = moto.endpoint();
    let d = dest.to_str().unwrap();
    let out = jobdl(&home, &aws, &["cp", &format!("s3://{BUCKET}/run"), d, "--s3-endpoint", &endpoint, "--json", "-v"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let all = text(&out);
    assert!(!all.contains(&seeded.secret_key), "the secret leaked:\n{all}");
    assert!(!all.contains("Signature="), "a signature leaked:\n{all}");

    // Byte-exact, nested, nothing else; nothing outside the destination.
    let got = tree(&dest);
    let want: BTreeMap<String, Vec<u8>> = [
        ("a.txt", &small),
        ("deep/er/nested.bin", &nested),
        ("with space+plus&amp.txt", &spaced),
        ("empty.txt", &empty),
        ("mid.bin", &mid),
        ("chunky.bin", &chunky),
        ("multi.bin", &multi),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (k, v) in &want {
        assert!(got[k] == *v, "{k} differs");
    }
    let mut siblings: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    siblings.sort();
    assert_eq!(siblings, ["dest", "home", "seed"]);

    // The --json document: valid, job null, the checks named honestly.
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&doc);
    assert_eq!(doc["job"], Value::Null);
    let by_path: BTreeMap<String, &Value> =
        doc["files"].as_array().unwrap().iter().map(|f| (f["path"].as_str().unwrap().to_string(), f)).collect();
    for single in ["a.txt", "deep/er/nested.bin", "mid.bin", "chunky.bin", "empty.txt"] {
        assert_eq!(by_path[single]["md5"], "verified", "{single}: {doc:#}");
        assert_eq!(by_path[single]["verified_by"], "md5", "{single}");
    }
    // A multipart ETag is not the object's MD5: the MD5 of its 5 MiB parts' MD5s is checked
    // instead (here on the chunked path, hashed as the contiguous prefix completes).
    assert_eq!(by_path["multi.bin"]["result"], "downloaded");
    assert_eq!(by_path["multi.bin"]["md5"], "absent");
    assert_eq!(by_path["multi.bin"]["verified_by"], "md5-multipart");
    let failed: Vec<&String> = by_path.iter().filter(|(_, f)| f["result"] == "failed").map(|(p, _)| p).collect();
    assert_eq!(failed.len(), 4, "{doc:#}");
    for (p, f) in &by_path {
        if f["result"] == "failed" {
            assert!(["escape", "double", "char", "outside"].iter().any(|n| p.contains(n)), "{p}");
        }
    }
    assert_eq!(doc["totals"]["failed"], 4);
    assert_eq!(doc["totals"]["downloaded"], 7);
}

#[test]
fn cp_one_key_filters_profiles_and_failures_exit_codes() {
    let Some(moto) = Moto::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (seed_dir, home) = (tmp.path().join("seed"), tmp.path().join("home"));
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    let (one, two, log) = (bytes(1234, 7), bytes(77, 8), bytes(500, 9));
    let seeded = moto.seed_keys(
        &seed_dir,
        &[("p/one.bin", &one, false), ("p/sub/two.txt", &two, false), ("p/logs/x.log", &log, false)],
    );
    let endpoint = moto.endpoint();
    let aws = keys(&seeded);
    let aws: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |aws: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["cp"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--s3-endpoint", &endpoint]);
        jobdl(&home, aws, &all)
    };

    // One object: s3://bucket/key → DIR/<name>.
    let d1 = tmp.path().join("one");
    let out = run(&aws, &[&format!("s3://{BUCKET}/p/one.bin"), d1.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(tree(&d1), BTreeMap::from([("one.bin".to_string(), one.clone())]));

    // Filters on the path relative to the prefix; credentials from a named profile.
    std::fs::write(
        home.join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = AKIAWRONGWRONGWRONG\naws_secret_access_key = nope\n\n[ci]\n\
             aws_access_key_id = {}\naws_secret_access_key = {}\n",
            seeded.access_key, seeded.secret_key
        ),
    )
    .unwrap();
    let d2 = tmp.path().join("filtered");
    let out = run(
        &[("AWS_PROFILE", "ci")],
        &[
            &format!("s3://{BUCKET}/p/"),
            d2.to_str().unwrap(),
            "--include",
            "**/*.txt",
            "--include",
            "*.bin",
            "--exclude",
            "one.*",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(tree(&d2), BTreeMap::from([("sub/two.txt".to_string(), two.clone())]));

    // A wrong secret: moto checks the signature → exit 3 with a hint, secret never shown.
    let d3 = tmp.path().join("denied");
    let wrong = [("AWS_ACCESS_KEY_ID", seeded.access_key.as_str()), ("AWS_SECRET_ACCESS_KEY", "WRONG-secret-value")];
    for target in [format!("s3://{BUCKET}/p"), format!("s3://{BUCKET}/p/one.bin"), format!("s3://{BUCKET}/")] {
        let out = run(&wrong, &[&target, d3.to_str().unwrap(), "--json"]);
        assert_eq!(out.status.code(), Some(3), "{target}: {}", text(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["code"], "auth");
        assert!(!text(&out).contains("WRONG-secret-value"));
    }
    // The default profile's unknown key: also refused.
    let out = run(&[], &[&format!("s3://{BUCKET}/p"), d3.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!d3.exists(), "nothing is created before the listing succeeds");

    // Missing bucket, empty prefix → exit 4.
    for target in ["s3://no-such-bucket/p".to_string(), format!("s3://{BUCKET}/nothing-here/")] {
        let out = run(&aws, &[&target, d3.to_str().unwrap(), "--json"]);
        assert_eq!(out.status.code(), Some(4), "{target}: {}", text(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["code"], "not_found");
    }
    // No credentials at all → exit 3; plain http to a non-loopback endpoint → exit 2.
    let out =
        jobdl(&tmp.path().join("nohome"), &[], &["cp", &format!("s3://{BUCKET}/p"), "x", "--s3-endpoint", &endpoint]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = jobdl(&home, &aws, &["cp", &format!("s3://{BUCKET}/p"), "x", "--s3-endpoint", "http://s3.invalid:9000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-http"), "{}", text(&out));
}

#[test]
fn listings_page_through_continuation_tokens_and_skip_existing_keeps_files() {
    let Some(moto) = Moto::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (seed_dir, home, dest) = (tmp.path().join("seed"), tmp.path().join("home"), tmp.path().join("dest"));
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    // 1003 keys: two pages of ListObjectsV2 (1000 keys each); names with a space and a '+'.
    const COUNT: usize = 1003;
    let seeded = moto.seed_with(&seed_dir, &[], Some(("many/", COUNT)));
    let aws = keys(&seeded);
    let aws: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let endpoint = moto.endpoint();
    let d = dest.to_str().unwrap();
    let args = ["cp", "s3://jobs/many", d, "--s3-endpoint", &endpoint, "--json", "-v"];
    let out = jobdl(&home, &aws, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("continuation-token="), "the second page was not requested:\n{stderr}");
    let got = tree(&dest);
    assert_eq!(got.len(), COUNT);
    for n in [0, 999, 1000, COUNT - 1] {
        let name = format!("k {n:04}+x.txt");
        assert_eq!(got[&name], format!("many/{name}").into_bytes(), "{name}");
    }
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&doc);
    assert_eq!(doc["totals"]["downloaded"], COUNT);

    // A rerun with --skip-existing keeps every file (size and single-part MD5 match).
    let mut again = args.to_vec();
    again.push("--skip-existing");
    let out = jobdl(&home, &aws, &again);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["totals"]["skipped"], COUNT, "{doc:#}");
    assert!(doc["files"].as_array().unwrap().iter().all(|f| f["md5"] == "verified"));
}

/// The files of a `--json` document by path.
fn files_by_path(doc: &Value) -> BTreeMap<String, Value> {
    doc["files"].as_array().unwrap().iter().map(|f| (f["path"].as_str().unwrap().to_string(), f.clone())).collect()
}

#[test]
fn multipart_etags_and_stored_checksums_verify_objects_without_an_md5() {
    let Some(moto) = Moto::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (seed_dir, home, dest) = (tmp.path().join("seed"), tmp.path().join("home"), tmp.path().join("dest"));
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    const MIB: usize = 1 << 20;
    let five = bytes(12 * MIB + 123, 21); // 5 MiB parts (KFP): 3 parts
    let eight = bytes(17 * MIB + 5, 22); // 8 MiB parts (aws CLI, boto3): 3 parts
    let six = bytes(17 * MIB + 9, 23); // 6 MiB parts: 3 parts, 5 MiB would give 4
    let crc = bytes(12 * MIB + 77, 24); // parts of 5, 6, 1 MiB: no one part size
    let sha = bytes(11 * MIB + 1, 25); // parts of 5, 5.5, rest: no one part size
    let tiny = bytes(3, 26); // one PUT with a CRC-32: its ETag is the MD5 all the same
    let uneven = |first: usize, second: usize| vec![first, second, 1];
    let objects: Vec<Layout<'_>> = vec![
        ("v/five.bin", &five, vec![5 * MIB; 3], None),
        ("v/eight.bin", &eight, vec![8 * MIB; 3], None),
        ("v/six.bin", &six, vec![6 * MIB; 3], None),
        ("v/crc.bin", &crc, uneven(5 * MIB, 6 * MIB), Some("CRC32")),
        ("v/sha.bin", &sha, uneven(5 * MIB, 5 * MIB + MIB / 2), Some("SHA256")),
        ("v/tiny.bin", &tiny, vec![], Some("CRC32")),
    ];
    let seeded = moto.seed_parts(&seed_dir, &objects);
    for (k, n) in [("v/five.bin", 3), ("v/eight.bin", 3), ("v/six.bin", 3), ("v/crc.bin", 3), ("v/sha.bin", 3)] {
        assert!(seeded.etags[k].ends_with(&format!("-{n}")), "{k}: {:?}", seeded.etags);
    }
    let aws = keys(&seeded);
    let aws: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let endpoint = moto.endpoint();
    let d = dest.to_str().unwrap();
    let args = ["cp", "s3://jobs/v", d, "--s3-endpoint", &endpoint, "--json", "-v"];
    let out = jobdl(&home, &aws, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("partNumber=1"), "the part size was asked for:\n{stderr}");
    let got = tree(&dest);
    for (key, data, _, _) in &objects {
        let name = key.strip_prefix("v/").unwrap();
        assert!(got[name] == **data, "{name} differs");
    }
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&doc);
    let by_path = files_by_path(&doc);
    for (name, check, md5) in [
        ("five.bin", "md5-multipart", "absent"),
        ("eight.bin", "md5-multipart", "absent"),
        ("six.bin", "md5-multipart", "absent"),
        ("crc.bin", "crc32", "absent"),
        ("sha.bin", "sha256", "absent"),
        ("tiny.bin", "md5", "verified"),
    ] {
        assert_eq!(by_path[name]["result"], "downloaded", "{name}: {doc:#}");
        assert_eq!(by_path[name]["verified_by"], check, "{name}: {doc:#}");
        assert_eq!(by_path[name]["md5"], md5, "{name}");
    }

    // A rerun re-checks each local file against its record: a file changed in place (same size)
    // is refused (exit 6, never silently replaced), the others are kept and say which check
    // passed; with --overwrite the changed file is fetched again.
    let mut bad = six.clone();
    bad[7 * MIB] ^= 0x40;
    std::fs::write(dest.join("six.bin"), &bad).unwrap();
    let out = jobdl(&home, &aws, &args);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&doc);
    assert_eq!(files_by_path(&doc)["six.bin"]["result"], "failed", "{doc:#}");
    assert!(std::fs::read(dest.join("six.bin")).unwrap() == bad, "the user's bytes stay");
    let mut again = args.to_vec();
    again.push("--overwrite");
    let out = jobdl(&home, &aws, &again);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&doc);
    let by_path = files_by_path(&doc);
    assert_eq!(by_path["six.bin"]["result"], "downloaded", "{doc:#}");
    assert_eq!(by_path["six.bin"]["verified_by"], "md5-multipart");
    assert!(std::fs::read(dest.join("six.bin")).unwrap() == six);
    for (name, check) in
        [("five.bin", "md5-multipart"), ("crc.bin", "crc32"), ("sha.bin", "sha256"), ("tiny.bin", "md5")]
    {
        assert_eq!(by_path[name]["result"], "skipped", "{name}: {doc:#}");
        assert_eq!(by_path[name]["verified_by"], check, "{name}");
    }
}

/// A fake S3 endpoint (wiremock) that lists objects and serves wrong bytes of the right length
/// and ETag: the check must catch them.
mod wrong_bytes {
    use super::*;
    use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn crc32c(data: &[u8]) -> u32 {
        let mut d = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
        d.update(data);
        d.finalize() as u32
    }

    fn b64(data: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn listing(objects: &[(&str, usize, &str)]) -> String {
        let contents: String = objects
            .iter()
            .map(|(k, size, etag)| {
                format!("<Contents><Key>{k}</Key><ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size></Contents>")
            })
            .collect();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>jobs</Name><Prefix>w/</Prefix>\
             <IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_bytes_fail_the_file_naming_the_check_that_failed() {
        let server = MockServer::start().await;
        const PART: usize = 64 * 1024;
        let multi = bytes(2 * PART + 100, 31);
        let mut outer = Md5::new();
        for p in multi.chunks(PART) {
            outer.update(Md5::digest(p));
        }
        let multi_etag = format!("{}-3", outer.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>());
        let crc = bytes(5000, 32);
        let good = bytes(7000, 33);
        let flip = |d: &[u8]| {
            let mut d = d.to_vec();
            let mid = d.len() / 2;
            d[mid] ^= 1;
            d
        };
        let objects = [
            ("w/multi.bin", multi.len(), multi_etag.as_str()),
            ("w/crc.bin", crc.len(), "opaque-1"),
            ("w/good.bin", good.len(), "opaque-2"),
        ];
        Mock::given(method("GET"))
            .and(path("/jobs/"))
            .respond_with(ResponseTemplate::new(200).set_body_string(listing(&objects)))
            .mount(&server)
            .await;
        // The multipart layout: part 1 and part 3 (HEAD ?partNumber=n answers the part's length).
        for (n, len) in [("1", PART), ("3", multi.len() - 2 * PART)] {
            Mock::given(method("HEAD"))
                .and(path("/jobs/w/multi.bin"))
                .and(query_param("partNumber", n))
                .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![0u8; len]))
                .mount(&server)
                .await;
        }
        // Stored CRC-32C of the right bytes; the checksum mode header must be sent (and signed).
        for (key, data, etag) in [("crc.bin", &crc, "opaque-1"), ("good.bin", &good, "opaque-2")] {
            Mock::given(method("HEAD"))
                .and(path(format!("/jobs/w/{key}")))
                .and(header("x-amz-checksum-mode", "ENABLED"))
                .and(query_param_is_missing("partNumber"))
                .respond_with(
                    ResponseTemplate::new(200)
                        .insert_header("etag", format!("\"{etag}\"").as_str())
                        .insert_header("x-amz-checksum-crc32c", b64(&crc32c(data).to_be_bytes()).as_str())
                        .insert_header("x-amz-checksum-type", "FULL_OBJECT")
                        .set_body_bytes(vec![0u8; data.len()]),
                )
                .mount(&server)
                .await;
        }
        for (key, body, etag) in [
            ("multi.bin", flip(&multi), multi_etag.as_str()),
            ("crc.bin", flip(&crc), "opaque-1"),
            ("good.bin", good.clone(), "opaque-2"),
        ] {
            Mock::given(method("GET"))
                .and(path(format!("/jobs/w/{key}")))
                .respond_with(
                    ResponseTemplate::new(200)
                        .insert_header("etag", format!("\"{etag}\"").as_str())
                        .set_body_bytes(body),
                )
                .mount(&server)
                .await;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (home, dest) = (tmp.path().join("home"), tmp.path().join("dest"));
        std::fs::create_dir_all(&home).unwrap();
        let endpoint = server.uri();
        let d = dest.to_str().unwrap().to_string();
        let out = tokio::task::spawn_blocking(move || {
            let aws = [("AWS_ACCESS_KEY_ID", "AKIDTEST"), ("AWS_SECRET_ACCESS_KEY", "test-secret")];
            jobdl(&home, &aws, &["cp", "s3://jobs/w", &d, "--s3-endpoint", &endpoint, "--json"])
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(6), "{}", text(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        validate(&doc);
        let by_path = files_by_path(&doc);
        assert_eq!(by_path["good.bin"]["result"], "downloaded", "{doc:#}");
        assert_eq!(by_path["good.bin"]["verified_by"], "crc32c");
        for (name, check) in [("multi.bin", "md5-multipart mismatch"), ("crc.bin", "crc32c mismatch")] {
            let f = &by_path[name];
            assert_eq!(f["result"], "failed", "{name}: {doc:#}");
            assert!(f["error"].as_str().unwrap().contains(check), "{name}: {doc:#}");
            assert_eq!(f["verified_by"], "none");
            assert_eq!(f["md5"], "absent");
        }
        // Nothing under a final name but the good file, and no part file left as if complete.
        let got = tree(&dest);
        assert_eq!(got.keys().collect::<Vec<_>>(), ["good.bin"], "{got:?}");
        assert!(got["good.bin"] == good);
        // Each bad file was fetched twice (a restart, then the failure).
        let requests = server.received_requests().await.unwrap();
        let gets = |p: &str| requests.iter().filter(|r| r.method.as_str() == "GET" && r.url.path() == p).count();
        assert_eq!(gets("/jobs/w/multi.bin"), 2);
        assert_eq!(gets("/jobs/w/crc.bin"), 2);
        let signed = requests
            .iter()
            .filter(|r| r.method.as_str() == "HEAD" && r.headers.contains_key("x-amz-checksum-mode"))
            .all(|r| {
                r.headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("x-amz-checksum-mode"))
            });
        assert!(signed, "x-amz-checksum-mode is signed");
    }
}

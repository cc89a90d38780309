//! What is already in the destination: unrelated files, stale part files, planned files with
//! wrong content (refused unless `--overwrite`), and reruns that keep verified files
//! (`--skip-existing` is the default now; tests/it/manifest.rs has the rule).

use std::os::unix::fs::MetadataExt;

use crate::harness::{
    TestEnv, assert_blob_file, assert_bytes, check_summary, files_under, is_blob_data, one_job, payload, text,
};
use crate::support::standard_world;

#[test]
fn existing_files_are_replaced_atomically_and_foreign_ones_kept() {
    let env = TestEnv::new(one_job(
        "job-x",
        vec![("x", text("x\n")), ("x.tmp", text("x.tmp is an artifact\n")), ("sub/f.txt", text("fresh\n"))],
    ));
    let arts = env.dest("job-x").join("artifacts");
    std::fs::create_dir_all(arts.join("sub")).unwrap();
    std::fs::write(arts.join("keep.tmp"), b"mine, not jobdl's\n").unwrap();
    std::fs::write(arts.join(".orphan.jobdl-part"), b"stale part of a file no longer listed").unwrap();
    std::fs::write(arts.join(".orphan.jobdl-state"), b"{\"size\":1,\"etag\":\"x\"}").unwrap();
    // A stale part (no resume record) of a planned file must not leak into it.
    std::fs::write(arts.join(".x.tmp.jobdl-part"), b"garbage garbage garbage garbage").unwrap();
    let old = arts.join("sub/f.txt");
    std::fs::write(&old, b"old content, longer than the new one\n").unwrap();
    let old_inode = std::fs::metadata(&old).unwrap().ino();
    let link = env.sandbox().join("old-f.txt");
    std::fs::hard_link(&old, &link).unwrap();

    // A different file jobdl has no record of is refused (named, untouched); the others land.
    let run = env.run(&["download", "job-x"]);
    run.expect_code(6);
    assert!(run.stderr.contains("artifacts/sub/f.txt") && run.stderr.contains("--overwrite"), "{run}");
    assert_bytes(&old, b"old content, longer than the new one\n");
    assert_bytes(&arts.join("x"), b"x\n");
    let run = env.run(&["download", "job-x", "--overwrite"]);
    run.expect_code(0);
    assert_bytes(&arts.join("x"), b"x\n");
    assert_bytes(&arts.join("x.tmp"), b"x.tmp is an artifact\n");
    assert_bytes(&arts.join("sub/f.txt"), b"fresh\n");
    assert_bytes(&arts.join("keep.tmp"), b"mine, not jobdl's\n");
    assert_eq!(
        files_under(&env.dest("job-x")),
        payload(["artifacts/x", "artifacts/x.tmp", "artifacts/sub/f.txt", "artifacts/keep.tmp"]),
        "orphan part/state files must be swept, nothing else touched"
    );
    // Replaced by rename: a new inode, and the old one (still linked outside) was never written.
    assert_ne!(std::fs::metadata(arts.join("sub/f.txt")).unwrap().ino(), old_inode, "rewritten in place");
    assert_bytes(&link, b"old content, longer than the new one\n");
}

/// Downloads once, then checks a `--skip-existing` rerun keeps everything without fetching bytes,
/// and that a same-size local edit is fetched again.
fn skip_existing_round_trip(env: &TestEnv, args: &[&str], job: &str, files: &[(&str, &[u8])], edit: &str) {
    env.run(args).expect_code(0);
    let dest = env.dest(job);
    env.emu.clear_requests();

    let mut again: Vec<&str> = args.to_vec();
    again.extend(["--skip-existing", "--json"]);
    let run = env.run(&again);
    run.expect_code(0);
    check_summary(&run, Some((job, "Completed")), &dest);
    for (path, _) in files {
        assert_eq!(run.entry(path)["result"], "skipped", "{}", run.entry(path));
    }
    assert_eq!(run.doc()["totals"]["skipped"].as_u64(), Some(files.len() as u64));
    let gets: Vec<String> =
        env.requests().iter().filter(|r| r.method == "GET" && is_blob_data(r)).map(|r| r.path.clone()).collect();
    assert!(gets.is_empty(), "--skip-existing fetched blob bytes: {gets:?}");

    // Same size, different bytes: refused (named) without --overwrite, replaced with it.
    let (_, original) = files.iter().find(|(p, _)| *p == edit).unwrap();
    let mut changed = original.to_vec();
    changed[0] ^= 0x20;
    std::fs::write(dest.join(edit), &changed).unwrap();
    let run = env.run(&again);
    run.expect_code(6);
    assert_eq!(run.entry(edit)["result"], "failed", "{run}");
    assert_bytes(&dest.join(edit), &changed);
    again.push("--overwrite");
    let run = env.run(&again);
    run.expect_code(0);
    assert_eq!(run.entry(edit)["result"], "downloaded", "{run}");
    assert_bytes(&dest.join(edit), original);
    for (path, bytes) in files {
        assert_bytes(&dest.join(path), bytes);
        if *path != edit {
            assert_eq!(run.entry(path)["result"], "skipped");
        }
    }
}

#[test]
fn skip_existing_keeps_matching_named_output_files() {
    let env = TestEnv::new(standard_world());
    let world = standard_world();
    let content = |n: &str| world.blob("data-0001", &format!("job-123-metrics/1/{n}")).unwrap().full_content();
    let (loss, acc, summary) = (content("loss.csv"), content("acc.csv"), content("sub/summary.json"));
    let files: [(&str, &[u8]); 3] = [
        ("named-outputs/metrics/loss.csv", &loss),
        ("named-outputs/metrics/acc.csv", &acc),
        ("named-outputs/metrics/sub/summary.json", &summary),
    ];
    skip_existing_round_trip(
        &env,
        &["download", "job-123", "--output", "metrics"],
        "job-123",
        &files,
        "named-outputs/metrics/acc.csv",
    );
}

#[test]
fn skip_existing_keeps_matching_default_artifacts() {
    let env = TestEnv::new(one_job("job-s", vec![("a.txt", text("alpha\n")), ("logs/b.txt", text("bravo\n"))]));
    let files: [(&str, &[u8]); 2] = [("artifacts/a.txt", b"alpha\n"), ("artifacts/logs/b.txt", b"bravo\n")];
    skip_existing_round_trip(&env, &["download", "job-s"], "job-s", &files, "artifacts/logs/b.txt");
    assert_blob_file(&env.dest("job-s").join("artifacts/a.txt"), env.artifact("job-s", "a.txt"));
}

/// Without an MD5 from the service, `--skip-existing` keeps a file only when the ETag jobdl
/// recorded on it is still the object's ETag and the file was not modified since.
#[test]
fn skip_existing_without_md5_trusts_only_the_recorded_etag() {
    use crate::support::{Fault, FaultRule, Md5Mode};
    let no_md5 = |s: &str| text(s).with_md5(Md5Mode::Absent);
    let env = TestEnv::new(one_job("job-e", vec![("a.txt", no_md5("alpha\n")), ("b.txt", no_md5("bravo\n"))]));
    env.run(&["download", "job-e"]).expect_code(0);
    let dest = env.dest("job-e");
    let args = ["download", "job-e", "--skip-existing", "--json", "-v"];
    let blob_gets = |env: &TestEnv| env.requests().iter().filter(|r| r.method == "GET" && is_blob_data(r)).count();

    // Unchanged objects, untouched files: kept, no byte fetched.
    env.emu.clear_requests();
    let run = env.run(&args);
    run.expect_code(0);
    for p in ["artifacts/a.txt", "artifacts/b.txt"] {
        assert_eq!(run.entry(p)["result"], "skipped", "{run}");
    }
    assert_eq!(blob_gets(&env), 0, "{run}");

    // The object changed on the server (another ETag, same size): fetched again.
    env.emu.add_fault(FaultRule::new("a.txt", 1, Fault::WrongEtag).method("HEAD"));
    let run = env.run(&args);
    run.expect_code(0);
    assert_eq!(run.entry("artifacts/a.txt")["result"], "downloaded", "{run}");
    assert_eq!(run.entry("artifacts/b.txt")["result"], "skipped", "{run}");
    assert!(run.stderr.contains("changed since it was downloaded"), "{run}");

    // Edited locally with the same size: the record no longer vouches for it; refused unless
    // --overwrite.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(dest.join("artifacts/b.txt"), b"BRAVO\n").unwrap();
    env.run(&args).expect_code(6);
    assert_bytes(&dest.join("artifacts/b.txt"), b"BRAVO\n");
    let overwrite = ["download", "job-e", "--overwrite", "--json", "-v"];
    let run = env.run(&overwrite);
    run.expect_code(0);
    assert_eq!(run.entry("artifacts/b.txt")["result"], "downloaded", "{run}");
    assert_bytes(&dest.join("artifacts/b.txt"), b"bravo\n");

    // A same-size file jobdl did not write (a new inode): it differs from the record, refused.
    std::fs::remove_file(dest.join("artifacts/a.txt")).unwrap();
    std::fs::write(dest.join("artifacts/a.txt"), b"ALPHA\n").unwrap();
    let run = env.run(&args);
    run.expect_code(6);
    assert!(
        run.entry("artifacts/a.txt")["error"].as_str().unwrap().contains("changed since jobdl downloaded it"),
        "{run}"
    );
    let run = env.run(&overwrite);
    run.expect_code(0);
    assert_eq!(run.entry("artifacts/a.txt")["result"], "downloaded", "{run}");
    assert_bytes(&dest.join("artifacts/a.txt"), b"alpha\n");
    assert_eq!(run.entry("artifacts/b.txt")["result"], "skipped", "{run}");
}

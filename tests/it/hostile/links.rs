//! Issue 18, the local attacks: links planted in a destination others can write to, a directory
//! swapped for a link mid-run, two runs whose destinations nest, a server inflating an unknown
//! size, and what a failed file on a full disk says about the part it keeps.
use super::*;

// The MLflow fake and the KFP fake (limits.rs) each carry their own copy of serve.rs.
use crate::support::mlflow_fake;

/// Every entry below `dir` (links included, not followed), relative.
fn entries_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn planted_part_state_and_lock_links_are_never_written_through() {
    // A chunked file (with resume records), a streamed one and a small one.
    let env = TestEnv::new(world(vec![
        ("outputs/big.bin", BlobFixture::generated(40 * MIB + 5, 21)),
        ("outputs/mid.bin", BlobFixture::generated(9 * MIB + 1, 22)),
        ("logs/a.txt", text("a\n")),
    ]));
    let dest = env.dest(JOB);
    let victims = env.sandbox().join("victims");
    std::fs::create_dir(&victims).expect("victims");
    for d in ["artifacts/outputs", "artifacts/logs", ".jobdl"] {
        std::fs::create_dir_all(dest.join(d)).expect("dest dirs");
    }
    // Existing files elsewhere that the links point at, and names links would create.
    let planted: [(&str, Option<&str>); 8] = [
        ("artifacts/outputs/.big.bin.jobdl-part", Some("big-part")),
        ("artifacts/outputs/.big.bin.jobdl-state", Some("big-state")),
        ("artifacts/outputs/.big.bin.tmp.jobdl-state", Some("big-tmp")),
        ("artifacts/outputs/.mid.bin.jobdl-part", Some("mid-part")),
        ("artifacts/outputs/.mid.bin.tmp.jobdl-state", None),
        ("artifacts/logs/.a.txt.jobdl-part", None),
        ("artifacts/logs/a.txt", Some("final")),
        (".jobdl/lock", None),
    ];
    for (i, (name, victim)) in planted.iter().enumerate() {
        let target = match victim {
            Some(v) => {
                let p = victims.join(v);
                std::fs::write(&p, b"precious\n").expect("victim");
                p
            }
            None => victims.join(format!("created-{i}")),
        };
        std::os::unix::fs::symlink(&target, dest.join(name)).expect("plant a link");
    }
    let run = env.run(&["download", JOB, "-vvv"]);
    assert_clean_output(&run);
    run.expect_code(0);
    for v in ["big-part", "big-state", "big-tmp", "mid-part", "final"] {
        assert_eq!(std::fs::read(victims.join(v)).expect("victim"), b"precious\n", "{v} was written through\n{run}");
    }
    assert_eq!(entries_under(&victims).len(), 5, "a link created a file outside: {:?}", entries_under(&victims));
    assert_finals_exact(&env, &dest, JOB);
    assert!(working_files(&dest).is_empty(), "{:?}", working_files(&dest));
}

#[test]
fn a_directory_swapped_for_a_link_mid_run_never_redirects_a_write() {
    // The file's part is open and its first answer is a 503 with a one-second Retry-After: the
    // directory is swapped for a link to another directory while it waits. The resume record
    // (written once the body starts) and the final rename must stay in the directory jobdl
    // created, never follow the new link.
    let mut w = World::new();
    w.add_blob("c1", "p/d/big.bin", BlobFixture::generated(12 * MIB + 7, 23));
    let env = TestEnv::new(w);
    env.emu.add_fault(FaultRule::new("p/d/big.bin", 1, status(503, Some("1"))));
    let out = env.work().join("out");
    let elsewhere = env.sandbox().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("elsewhere");
    let url = env.emu.container_sas_url("c1", "p");
    let running = env.spawn(env.command(["cp", &url, "out", "-vvv"]));
    let part = out.join("d/.big.bin.jobdl-part");
    wait_until(Duration::from_secs(20), "the part file", || part.exists());
    std::fs::rename(out.join("d"), out.join("moved")).expect("move the directory");
    std::os::unix::fs::symlink(&elsewhere, out.join("d")).expect("plant the link");
    // Watch the other directory for the whole run: a file created there and removed again
    // before the run ends was still written outside.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = {
        let (stop, elsewhere) = (stop.clone(), elsewhere.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                seen.extend(entries_under(&elsewhere));
                std::thread::sleep(Duration::from_micros(200));
            }
            seen
        })
    };
    let run = running.wait(Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    let seen = seen.join().expect("watcher");
    assert_clean_output(&run);
    assert!(seen.is_empty(), "written through the link: {seen:?}\n{run}");
    assert!(run.code == 0 || run.code == 6, "{run}");
    if run.code == 0 {
        assert_blob_file(&out.join("moved/big.bin"), env.blob("c1", "p/d/big.bin"));
    }
}

#[test]
fn nested_destinations_never_share_a_part_file() {
    // Run A copies the prefix `p/` into `out`, run B the prefix `p/sub/` into `out/sub`: both
    // write `out/sub/big.bin`. A's body trickles; B starts while A is half-way. B must not
    // truncate A's part file, and no run may call a file verified unless the bytes on disk are.
    let mut w = World::new();
    w.add_blob("c1", "p/sub/big.bin", BlobFixture::generated(256 * 1024, 24));
    w.add_blob("c1", "p/other.txt", text("other\n"));
    let env = TestEnv::new(w);
    env.emu.add_fault(FaultRule::new(
        "p/sub/big.bin",
        1,
        Fault::Trickle { bytes: 8192, every: Duration::from_millis(40) },
    ));
    env.emu.add_fault(FaultRule::new(
        "p/sub/big.bin",
        1,
        Fault::Trickle { bytes: 4096, every: Duration::from_millis(400) },
    ));
    let (outer, inner) = (env.emu.container_sas_url("c1", "p"), env.emu.container_sas_url("c1", "p/sub"));
    let out = env.work().join("out");
    let a = env.spawn(env.command(["cp", &outer, "out", "-vvv", "--json"]));
    let part = out.join("sub/.big.bin.jobdl-part");
    wait_until(Duration::from_secs(20), "A's part file to fill", || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() >= 64 * 1024)
    });
    let b = env.spawn(env.command(["cp", &inner, "out/sub", "-vvv", "--json"]));
    let (a, b) = (a.wait(Duration::from_secs(60)), b.wait(Duration::from_secs(90)));
    assert_clean_output(&a);
    assert_clean_output(&b);
    // Whatever each run reports, a file it calls downloaded holds exactly the blob's bytes.
    for (run, path) in [(&a, "sub/big.bin"), (&b, "big.bin")] {
        assert!(run.code == 0 || run.code == 6, "{run}");
        if run.entry(path)["result"] == "downloaded" {
            assert_blob_file(&out.join("sub/big.bin"), env.blob("c1", "p/sub/big.bin"));
        }
    }
    assert_blob_file(&out.join("sub/big.bin"), env.blob("c1", "p/sub/big.bin"));
    assert_blob_file(&out.join("other.txt"), env.blob("c1", "p/other.txt"));
    // The one that lost the race says why.
    if b.code == 6 {
        assert!(b.all_output().contains("another jobdl is writing"), "{b}");
    }
}

#[test]
fn a_server_inflating_an_unknown_size_fails_that_file_only() {
    use mlflow_fake::{AuthMode, FakeConfig, FakeMlflow, FakeRun, RangeMode, pattern};
    // MLflow without `file_size`: the size is learned from Content-Range. 2^62 bytes once
    // aborted the process on an allocation; 1 PiB (the cap itself) must not allocate either.
    for claim in [1u64 << 62, 1 << 50] {
        let mut cfg = FakeConfig {
            auth: AuthMode::Open,
            omit_sizes: true,
            range: RangeMode::ClaimTotal(claim),
            ..Default::default()
        };
        let run = FakeRun::new("r1", "FINISHED").file("model.bin", pattern(100_000, 3)).file("empty.txt", Vec::new());
        cfg.runs.insert("r1".into(), run);
        let fake = FakeMlflow::start(cfg);
        let env = TestEnv::new(World::new());
        let started = Instant::now();
        let mut cmd = env.command(["download", "r1", "--mlflow-uri", &fake.base_url(), "--json"]);
        cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT");
        let run = env.run_cmd(cmd);
        assert_clean_output(&run);
        run.expect_code(6);
        let err = run.entry("artifacts/model.bin")["error"].as_str().unwrap_or_default().to_string();
        assert!(err.contains("1 PiB") || err.contains("free space"), "claim {claim}: {err}\n{run}");
        assert!(started.elapsed() < Duration::from_secs(60), "{run}");
        let dest = env.dest("r1");
        assert!(working_files(&dest).is_empty(), "a part file is left: {:?}", working_files(&dest));
        assert!(!dest.join("artifacts/model.bin").exists());
        assert!(dest.join("artifacts/empty.txt").exists(), "another file was lost\n{run}");
    }
}

#[test]
fn a_kept_part_file_is_named_with_its_size_and_how_to_discard_it() {
    // A streamed file big enough for a resume record: 3 MiB land, then the server fails every
    // attempt. Its part is kept for a resume, and the failure line says how much, and how to
    // discard it.
    let mut w = World::new();
    w.add_blob("c1", "p/big.bin", BlobFixture::generated(12 * MIB + 9, 25));
    let env = TestEnv::new(w);
    env.emu.add_fault(FaultRule::new("p/big.bin", 1, Fault::ResetAfter(3 * MIB)));
    env.emu.add_fault(FaultRule::new("p/big.bin", 1000, status(500, None)));
    let url = env.emu.container_sas_url("c1", "p");
    let run = env.run(&["cp", &url, "out", "--retries", "2", "--json", "-vvv"]);
    assert_clean_output(&run);
    run.expect_code(6);
    let err = run.entry("big.bin")["error"].as_str().unwrap_or_default().to_string();
    let dest = env.work().join("out");
    if working_files(&dest).is_empty() {
        panic!("nothing was kept to resume: {err}\n{run}");
    }
    assert!(err.contains("kept 3.0 MiB") && err.contains(".big.bin.jobdl-part"), "{err}");
    assert!(err.contains("run the same command again") && err.contains("delete"), "{err}");
}

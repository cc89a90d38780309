//! Hostile-suite cases (issue 18), split by theme; see tests/hostile.rs for the shared helpers.
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------------
// Issue 18 item 4: credentials never go to a proxy for loopback targets.

/// Every proxy variable (both cases) pointing at `proxy`, and a `NO_PROXY` that names none of
/// the loopback targets (the bypass must not depend on it).
fn through_proxy(cmd: &mut Command, proxy: &support::proxy::Proxy) {
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        cmd.env(var, proxy.url());
    }
    cmd.env("NO_PROXY", "example.invalid").env("no_proxy", "example.invalid");
}

#[test]
fn loopback_targets_bypass_every_proxy_whatever_no_proxy_says() {
    let proxy = support::proxy::Proxy::start();
    let env = TestEnv::new(world(vec![("outputs/a.txt", text("a\n")), ("logs/b.txt", text("b\n"))]));
    // A download: bearer-token calls to the project endpoint and SAS GETs, all on 127.0.0.1.
    let mut cmd = env.command(["download", JOB, "--json", "-vvv"]);
    through_proxy(&mut cmd, &proxy);
    let run = env.run_cmd(cmd);
    assert_clean_output(&run);
    run.expect_code(0);
    assert_finals_exact(&env, &env.dest(JOB), JOB);
    // A SAS URL on `localhost` (allowed as a loopback host).
    let port = env.emu.host_port().rsplit(':').next().expect("port").to_string();
    let url = env.emu.blob_sas_url(support::ARTIFACT_CONTAINER, &support::artifact_blob_name(JOB, "outputs/a.txt"));
    let on_localhost = url.replace("127.0.0.1", "localhost");
    let mut cmd = env.command(["cp", &on_localhost, "cp-localhost", "--json"]);
    through_proxy(&mut cmd, &proxy);
    cmd.env("JOBDL_ALLOW_HOSTS", format!("{},localhost:{port}", env.emu.host_port()));
    let cp = env.run_cmd(cmd);
    assert_clean_output(&cp);
    let seen = proxy.requests();
    assert!(seen.is_empty(), "the proxy saw {} requests to loopback targets: {seen:#?}", seen.len());
    assert!(!format!("{seen:?}").contains("sig=") && !format!("{seen:?}").contains(TOKEN));
    cp.expect_code(0);
    harness::assert_bytes(&env.work().join("cp-localhost/a.txt"), b"a\n");
}

// ---------------------------------------------------------------------------------------------
// Issue 18 item 8: names that would be one file on macOS and Windows.

#[test]
fn names_equal_under_case_folding_or_normalization_are_one_file_and_the_second_fails() {
    let nfc = "outputs/caf\u{e9}.txt";
    let nfd = "outputs/cafe\u{301}.txt";
    let env = TestEnv::new(world(vec![
        ("outputs/\u{3c3}.txt", text("small sigma\n")),
        ("outputs/\u{3c2}.txt", text("final sigma\n")),
        (nfc, text("precomposed\n")),
        (nfd, text("decomposed\n")),
        ("outputs/stra\u{df}e.txt", text("sharp s\n")),
        ("outputs/STRASSE.txt", text("capitals\n")),
        ("logs/ok.txt", text("ok\n")),
    ]));
    let run = env.run(&["download", JOB, "--json", "-vvv"]);
    assert_clean_output(&run);
    run.expect_code(6);
    let dest = env.dest(JOB);
    let landed = files_under(&dest.join("artifacts/outputs"));
    assert_eq!(landed.len(), 3, "one file per colliding pair: {landed:?}\n{run}");
    assert_blob_file(&dest.join("artifacts/logs/ok.txt"), env.artifact(JOB, "logs/ok.txt"));
    let files = run.doc()["files"].as_array().expect("files");
    let failed: Vec<&serde_json::Value> = files.iter().filter(|f| f["result"] == "failed").collect();
    assert_eq!(failed.len(), 3, "{run}");
    for f in &failed {
        let why = f["error"].as_str().unwrap_or("");
        assert!(why.contains("collides with") && why.contains("Unicode normalization"), "{f}");
    }
    // What landed holds the bytes of the name it was listed under (nothing was overwritten).
    for rel in &landed {
        let path = format!("outputs/{rel}");
        assert_blob_file(&dest.join("artifacts").join(&path), env.artifact(JOB, &path));
    }
    assert_eq!(run.doc()["totals"]["downloaded"], 4, "{run}");
}

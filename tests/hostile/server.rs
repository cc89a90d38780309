//! Hostile-suite cases (issue 18), split by theme; see tests/hostile.rs for the shared helpers.
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------------
// Item 3: parsing server data is linear, bounded in depth, and never holds off Ctrl+C.

/// A List Blobs page whose one blob holds `depth` levels of nested unknown elements (closed when
/// `closed`): about 7 bytes per level.
fn nested_listing(depth: usize, closed: bool) -> Vec<u8> {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ContainerName=\"c1\"><Blobs>\
         <Blob><Name>p/ok.txt</Name><Properties><Content-Length>3</Content-Length></Properties>",
    );
    xml.push_str(&"<x1>".repeat(depth));
    if closed {
        xml.push_str(&"</x1>".repeat(depth));
        xml.push_str("</Blob></Blobs><NextMarker /></EnumerationResults>");
    }
    xml.into_bytes()
}

#[test]
fn deeply_nested_list_page_is_refused_quickly() {
    // 2.2 MB of nesting, closed and unclosed; and a page only a little deeper than the limit.
    for (depth, closed) in [(245_000, true), (500_000, false), (70, true)] {
        let env = TestEnv::new(cp_world());
        let body = nested_listing(depth, closed);
        let fault = Fault::Raw { status: 200, content_type: "application/xml".into(), body };
        env.emu.add_fault(FaultRule::new("/c1", 1000, fault).query("comp=list"));
        let url = env.emu.container_sas_url("c1", "p");
        // Generous: the linear parser takes milliseconds; the quadratic one took minutes.
        let run = env.spawn(env.command(["cp", &url, "out", "-vvv"])).wait(Duration::from_secs(30));
        assert_clean_output(&run);
        run.expect_code(1);
        assert!(run.stderr.contains("nested more than 64 deep"), "the error does not say what happened\n{run}");
        assert!(!env.work().join("out/ok.txt").exists(), "{run}");
    }
}

#[test]
fn sigint_during_a_slow_listing_exits_130_promptly() {
    let env = TestEnv::new(cp_world());
    env.emu.add_fault(FaultRule::new("/c1", 1000, Fault::Stall(Duration::from_secs(60))).query("comp=list"));
    let url = env.emu.container_sas_url("c1", "p");
    let running = env.spawn(env.command(["cp", &url, "out", "-vvv", "--json"]));
    wait_until(Duration::from_secs(30), "a listing request", || {
        env.requests().iter().any(|r| r.query.contains("comp=list"))
    });
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    running.signal(libc::SIGINT);
    // The page stalls for 60 s: only a run that stops listing on the signal ends in time.
    let run = running.wait(Duration::from_secs(20));
    eprintln!("SIGINT during a stalled listing: exit {} after {:?}", run.code, signalled.elapsed());
    assert_clean_output(&run);
    run.expect_code(130);
    assert!(!env.work().join("out/ok.txt").exists(), "{run}");
}

// ---------------------------------------------------------------------------------------------
// Item 9: a secret a server echoes back is never printed, whatever wraps it.

#[test]
fn server_echoing_the_token_in_its_error_is_redacted() {
    let env = TestEnv::new(world(vec![("outputs/a.txt", text("a\n"))]));
    // The token bare (no `Bearer ` before it, no `token=`), as a careless gateway echoes it.
    let body = format!(
        "{{\"error\":{{\"code\":\"BadRequest\",\"message\":\"credential [{TOKEN}] is not valid for this job ({TOKEN})\"}}}}"
    );
    let fault = Fault::Raw { status: 400, content_type: "application/json".into(), body: body.into_bytes() };
    env.emu.add_fault(FaultRule::new(&format!("/jobs/{JOB}"), 1000, fault));
    for json in [false, true] {
        let mut args = vec!["download", JOB, "-vvv"];
        if json {
            args.push("--json");
        }
        let run = env.run(&args);
        assert_clean_output(&run);
        assert_ne!(run.code, 0, "{run}");
        assert!(run.all_output().contains("is not valid for this job"), "the server's message is still shown\n{run}");
    }
}

#[test]
fn listing_that_echoes_the_sas_signature_is_redacted() {
    // A hostile listing names a blob after the container SAS's `sig`: the path is printed (the
    // failure line, the JSON document) with the signature replaced.
    let env = TestEnv::new(cp_world());
    let echoed = format!("p/{CONTAINER_SIG}.txt");
    lying_listing(&env, &[(echoed.as_str(), 3), ("p/ok.txt", 3)]);
    let url = env.emu.container_sas_url("c1", "p");
    for json in [false, true] {
        let mut args = vec!["cp", &url, "out", "-vvv"];
        if json {
            args.push("--json");
        }
        let run = env.run(&args);
        assert_clean_output(&run);
        run.expect_code(6);
        assert!(run.all_output().contains("REDACTED"), "{run}");
        assert_blob_file(&env.work().join("out/ok.txt"), env.blob("c1", "p/ok.txt"));
    }
}

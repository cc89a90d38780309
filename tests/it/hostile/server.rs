//! Hostile-suite cases (issue 18), split by theme; see tests/it/hostile.rs for the shared helpers.
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

// ---------------------------------------------------------------------------------------------
// Item 6: listings are bounded in entries and stored compactly.

#[test]
fn listing_over_the_entry_limit_fails_cleanly_naming_the_setting() {
    let env = TestEnv::new(cp_world());
    let url = env.emu.container_sas_url("c1", "p");
    let mut cmd = env.command(["cp", &url, "out", "-vvv", "--json"]);
    cmd.env("JOBDL_MAX_LIST_ENTRIES", "2");
    let run = env.run_cmd(cmd);
    assert_clean_output(&run);
    run.expect_code(1);
    let message = run.doc()["error"]["message"].as_str().unwrap_or_default().to_string();
    for part in ["more than 2 entries", "max_list_entries", "JOBDL_MAX_LIST_ENTRIES"] {
        assert!(message.contains(part), "the error does not say {part:?}\n{run}");
    }
    assert!(files_under(&env.work()).iter().all(|f| !f.starts_with("out/") || f.starts_with("out/.jobdl/")), "{run}");
    // The same listing under a limit it fits: every file arrives.
    let mut cmd = env.command(["cp", &url, "out"]);
    cmd.env("JOBDL_MAX_LIST_ENTRIES", "3");
    env.run_cmd(cmd).expect_code(0);
    assert_blob_file(&env.work().join("out/ok.txt"), env.blob("c1", "p/ok.txt"));
}

/// A List Blobs server for `total` blobs (`p/dNNNN/fNNNNNNN.bin`, 1 byte each) in pages of 5,000;
/// the marker is the index of the next blob. Answers every request on every connection.
fn many_blobs_server(total: usize) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut writer = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let start: usize = line
                        .split(['?', '&', ' '])
                        .find_map(|p| p.strip_prefix("marker="))
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(0);
                    let end = (start + 5000).min(total);
                    let mut xml = String::from(
                        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ContainerName=\"c1\"><Blobs>",
                    );
                    for i in start..end {
                        xml.push_str(&format!(
                            "<Blob><Name>p/d{:04}/f{i:07}.bin</Name><Properties>\
                             <Last-Modified>Thu, 15 Jan 2026 10:05:00 GMT</Last-Modified><Etag>0x8DE000000000001</Etag>\
                             <Content-Length>1</Content-Length><Content-MD5>k7iFrf4NoInN9jSQT9WfcQ==</Content-MD5>\
                             </Properties><Metadata /></Blob>",
                            i / 1000
                        ));
                    }
                    xml.push_str("</Blobs>");
                    if end < total {
                        xml.push_str(&format!("<NextMarker>{end}</NextMarker>"));
                    } else {
                        xml.push_str("<NextMarker />");
                    }
                    xml.push_str("</EnumerationResults>");
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
                        xml.len()
                    );
                    if writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(xml.as_bytes())).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Peak RSS of listing and planning a million blobs (`cp`, with a filter that keeps none, so
/// nothing is downloaded). Ignored by default (about a minute in a debug build); run it with
/// `cargo test --release --test it -- --ignored million`. `/usr/bin/time -v` measures it
/// when present.
#[test]
#[ignore]
fn million_listed_blobs_stay_under_300_mb() {
    let total: usize = std::env::var("JOBDL_MILLION").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let env = TestEnv::new(cp_world());
    let port = many_blobs_server(total);
    let url = format!(
        "http://127.0.0.1:{port}/{ACCOUNT}/c1/p/?sv=2025-11-05&sr=c&sp=rl&se=2099-01-01T00%3A00%3A00Z&sig=FAKESIGm1ll10nEntr1esXXXXXXXXXXXXXXXXXXXXXXXXXXX%3D"
    );
    let args = ["cp", url.as_str(), "out", "--include", "no-such-file.bin"];
    let mut cmd = env.command(args);
    cmd.env("JOBDL_ALLOW_HOSTS", format!("127.0.0.1:{port}"));
    let timed = Path::new("/usr/bin/time").exists();
    if timed {
        let inner = cmd;
        cmd = Command::new("/usr/bin/time");
        cmd.arg("-v").arg(inner.get_program()).args(inner.get_args()).current_dir(env.work()).env_clear();
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
    }
    let started = Instant::now();
    let (code, _, stderr, rss) = run_measured(cmd, Duration::from_secs(600));
    let secs = started.elapsed().as_secs_f64();
    let peak_kib = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(rss);
    eprintln!("{total} listed blobs: exit {code}, peak RSS {} MiB, {secs:.1}s", peak_kib / 1024);
    assert_eq!(code, 0, "{stderr}");
    assert!(peak_kib < 300 * 1024, "peak RSS {peak_kib} KiB for {total} listed blobs");
}

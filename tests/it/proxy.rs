//! Proxies and custom CA bundles: `HTTPS_PROXY` / `ALL_PROXY` route requests to a host that is
//! not loopback through a local proxy (`CONNECT` tunnels to a TLS front named
//! `front.jobdl.invalid`, which only the test proxy resolves; plain `http` to such a name with
//! `--allow-http` as absolute-form requests through `HTTP_PROXY`), loopback targets never go through
//! it (tests/it/hostile.rs checks that with every variable set), `NO_PROXY` bypasses it,
//! proxy credentials are used but never printed, and `SSL_CERT_FILE` / `SSL_CERT_DIR` make a
//! throw-away CA trusted for an `https://127.0.0.1` server (the emulator behind a TLS front).
use crate::support;

use crate::harness;

use std::net::TcpListener;
use std::process::Command;

use base64::Engine;
use harness::{Run, TestEnv, artifact_path, assert_blob_file, files_under};
use support::proxy::Proxy;
use support::tls::{TestCa, TlsFront};
use support::{TOKEN, standard_world};

const PROXY_VARS: [&str; 8] =
    ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"];

/// A `jobdl` command with no proxy setting at all, then `vars` set.
fn command(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut cmd = env.command(args);
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// Default artifacts of job-123 (small text files).
const TXT: [&str; 4] =
    ["log/a.txt", "logs/b.txt", "user_logs/std_log.txt", "system_logs/lifecycler/execution-wrapper.txt"];

fn txt_files() -> Vec<&'static str> {
    TXT.to_vec()
}

#[track_caller]
fn assert_txt_downloaded(env: &TestEnv, run: &Run) {
    run.expect_code(0);
    let dest = env.dest("job-123");
    for path in txt_files() {
        assert_blob_file(&dest.join("artifacts").join(path), env.artifact("job-123", path));
    }
}

fn download_txt() -> Vec<&'static str> {
    let mut args = vec!["download", "job-123", "--json"];
    for p in txt_files() {
        args.push("--include");
        args.push(p);
    }
    args
}

/// A TLS front before the emulator, named [`support::tls::FRONT_NAME`] (not loopback, so a proxy
/// is used for it), with its CA written to `ca.pem`; the PEM path and the allow-list to pass.
fn named_front(env: &TestEnv, ca_name: &str) -> (TlsFront, String, String) {
    let ca = TestCa::new(ca_name);
    let front = TlsFront::start(&ca, &env.emu.host_port());
    let pem = env.sandbox().join(format!("{}.pem", ca_name.replace(' ', "-")));
    ca.write_pem(&pem);
    let allow = format!("{},{}", env.emu.host_port(), front.named_host_port());
    (front, pem.to_str().expect("UTF-8 path").to_string(), allow)
}

/// `download_txt` with the project endpoint behind the named front.
fn download_via_front(env: &TestEnv, front: &TlsFront, pem: &str, allow: &str, vars: &[(&str, &str)]) -> Command {
    let mut all = vec![("SSL_CERT_FILE", pem), ("JOBDL_ALLOW_HOSTS", allow)];
    all.extend_from_slice(vars);
    let mut cmd = command(env, &download_txt(), &all);
    cmd.env("AZURE_AI_PROJECT_ENDPOINT", format!("{}/api/projects/{}", front.named_base_url(), support::PROJECT));
    cmd
}

#[test]
fn a_remote_endpoint_goes_through_the_proxy_and_loopback_storage_never_does() {
    let env = TestEnv::new(standard_world());
    let (front, pem, allow) = named_front(&env, "jobdl test CA (remote endpoint)");
    let proxy = Proxy::start();
    let run = env.run_cmd(download_via_front(
        &env,
        &front,
        &pem,
        &allow,
        &[("HTTP_PROXY", &proxy.url()), ("HTTPS_PROXY", &proxy.url())],
    ));
    assert_txt_downloaded(&env, &run);

    // The service calls (bearer token, inside TLS) were tunnelled to the named front; the SAS
    // URLs the service returned point at 127.0.0.1, and went direct.
    let seen = proxy.requests();
    assert!(!seen.is_empty(), "the proxy saw no request\n{run}");
    for r in &seen {
        assert!(r.relayed && r.method == "CONNECT", "{r:?}");
        assert_eq!(r.target, front.named_host_port(), "{r:?}");
        assert_eq!(r.header("authorization"), None, "{r:?}");
    }
    assert!(!format!("{seen:?}").contains("sig=") && !format!("{seen:?}").contains(TOKEN), "{seen:#?}");
    assert!(front.handshakes() >= 1);
    for path in txt_files() {
        let want = artifact_path("job-123", path);
        assert!(
            env.requests().iter().any(|r| r.method == "GET" && harness::decoded(r) == want),
            "no direct GET of {want}: {:#?}",
            env.requests()
        );
    }
}

#[test]
fn all_proxy_is_honoured_and_no_proxy_bypasses_it() {
    let env = TestEnv::new(standard_world());
    let (front, pem, allow) = named_front(&env, "jobdl test CA (all proxy)");
    let proxy = Proxy::start();
    let run = env.run_cmd(download_via_front(&env, &front, &pem, &allow, &[("ALL_PROXY", &proxy.url())]));
    assert_txt_downloaded(&env, &run);
    let through = proxy.requests().len();
    assert!(through >= 1, "ALL_PROXY was not used ({through} requests)\n{run}");

    // NO_PROXY naming the front's host (or its domain, or `*`): jobdl goes direct, where that
    // name does not resolve; the proxy sees nothing new.
    for no_proxy in ["front.jobdl.invalid", ".invalid", "localhost,jobdl.invalid", "*"] {
        let before = proxy.requests().len();
        let url = proxy.url();
        let vars = [("HTTPS_PROXY", url.as_str()), ("ALL_PROXY", url.as_str()), ("NO_PROXY", no_proxy)];
        let mut cmd = download_via_front(&env, &front, &pem, &allow, &vars);
        cmd.args(["-p", "direct", "--retries", "1"]);
        let run = env.run_cmd(cmd);
        assert_ne!(run.code, 0, "NO_PROXY={no_proxy}: the name resolved?\n{run}");
        assert_eq!(proxy.requests().len(), before, "NO_PROXY={no_proxy} did not bypass the proxy\n{run}");
    }
    // The lower-case form too; and NO_PROXY naming another host does not bypass it.
    let before = proxy.requests().len();
    let url = proxy.url();
    let mut cmd =
        download_via_front(&env, &front, &pem, &allow, &[("all_proxy", &url), ("no_proxy", "example.invalid")]);
    cmd.args(["-p", "lower"]);
    env.run_cmd(cmd).expect_code(0);
    assert!(proxy.requests().len() > before, "all_proxy was not used");
}

#[test]
fn https_proxy_tunnels_tls_with_connect() {
    let env = TestEnv::new(standard_world());
    let (front, pem, allow) = named_front(&env, "jobdl test CA (proxy)");
    let proxy = Proxy::start();
    let url = env
        .emu
        .blob_sas_url("data-0001", "job-123-metrics/1/loss.csv")
        .replace(&env.emu.base_url(), &front.named_base_url());
    assert!(url.starts_with("https://"));
    let run = env.run_cmd(command(
        &env,
        &["cp", &url, "tunnel", "--json"],
        &[("HTTPS_PROXY", &proxy.url()), ("SSL_CERT_FILE", &pem), ("JOBDL_ALLOW_HOSTS", &allow)],
    ));
    run.expect_code(0);
    assert_blob_file(&env.work().join("tunnel/loss.csv"), env.blob("data-0001", "job-123-metrics/1/loss.csv"));
    let seen = proxy.requests();
    assert!(!seen.is_empty(), "HTTPS_PROXY was not used\n{run}");
    for r in &seen {
        assert_eq!(r.method, "CONNECT", "{r:?}");
        assert_eq!(r.target, front.named_host_port(), "{r:?}");
        assert_eq!(r.header("authorization"), None, "{r:?}");
    }
    assert!(front.handshakes() >= 1);
    // Only the tunnel's host:port is visible to the proxy, never the SAS.
    assert!(!format!("{seen:?}").contains("sig="), "{seen:#?}");
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn proxy_credentials_are_used_and_never_printed() {
    let env = TestEnv::new(standard_world());
    let (front, pem, allow) = named_front(&env, "jobdl test CA (credentials)");
    let pass = "pr0xy-S3cret";
    let proxy = Proxy::with_credentials("alice", pass);
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("alice:{pass}"));
    let mut cmd = download_via_front(&env, &front, &pem, &allow, &[("HTTPS_PROXY", &proxy.url_with("alice", pass))]);
    cmd.arg("-vvv");
    let run = env.run_cmd(cmd);
    assert_txt_downloaded(&env, &run);
    let seen = proxy.requests();
    assert!(!seen.is_empty() && seen.iter().all(|r| r.relayed), "the proxy refused a request: {seen:#?}");
    assert!(seen.iter().all(|r| r.header("proxy-authorization") == Some(format!("Basic {encoded}").as_str())));
    let out = run.all_output();
    assert!(!out.contains(pass) && !out.contains(&encoded), "proxy credentials printed\n{run}");

    // Wrong credentials: the proxy answers 407; the run fails, says so, without printing them.
    let wrong = "wr0ng-S3cret";
    for verbosity in ["-q", "-vvv"] {
        let proxy_url = proxy.url_with("alice", wrong);
        let mut cmd = download_via_front(&env, &front, &pem, &allow, &[("HTTPS_PROXY", &proxy_url)]);
        cmd.args(["-p", "refused", verbosity]);
        let run = env.run_cmd(cmd);
        assert_ne!(run.code, 0, "{run}");
        let out = run.all_output();
        assert!(out.contains("proxy authorization required") && out.contains("proxy URL"), "{run}");
        assert!(!run.all_output().contains(wrong), "proxy credentials printed\n{run}");
    }
    assert!(proxy.requests().iter().any(|r| !r.relayed), "the proxy never refused a request");

    // A proxy that is not there: a connection error, still without the credentials.
    let dead = format!("http://alice:{wrong}@127.0.0.1:{}", closed_port());
    let mut cmd = download_via_front(&env, &front, &pem, &allow, &[("HTTPS_PROXY", &dead)]);
    cmd.args(["-p", "dead", "-vvv"]);
    let run = env.run_cmd(cmd);
    assert_ne!(run.code, 0, "{run}");
    assert!(!run.all_output().contains(wrong), "proxy credentials printed\n{run}");
    assert!(run.doc().get("error").is_some(), "{run}");
}

#[test]
fn ssl_cert_file_makes_a_private_ca_trusted() {
    let env = TestEnv::new(standard_world());
    let ca = TestCa::new("jobdl test CA");
    let front = TlsFront::start(&ca, &env.emu.host_port());
    let pem = env.sandbox().join("ca.pem");
    ca.write_pem(&pem);
    let allow = format!("{},{}", env.emu.host_port(), front.host_port());
    let url =
        env.emu.container_sas_url("data-0001", "job-123-metrics/1").replace(&env.emu.base_url(), &front.base_url());

    // Trusted through SSL_CERT_FILE: the whole listing and every blob over TLS.
    let run = env.run_cmd(command(
        &env,
        &["cp", &url, "trusted", "--json"],
        &[("SSL_CERT_FILE", pem.to_str().unwrap()), ("JOBDL_ALLOW_HOSTS", &allow)],
    ));
    run.expect_code(0);
    assert_blob_file(&env.work().join("trusted/loss.csv"), env.blob("data-0001", "job-123-metrics/1/loss.csv"));
    assert!(front.handshakes() >= 1);

    // Trusted through SSL_CERT_DIR (a directory holding the PEM file).
    let dir = env.sandbox().join("certs");
    std::fs::create_dir(&dir).unwrap();
    ca.write_pem(&dir.join("test-ca.pem"));
    std::fs::write(dir.join("README"), "not a certificate\n").unwrap();
    let run = env.run_cmd(command(
        &env,
        &["cp", &url, "trusted-dir", "--json"],
        &[("SSL_CERT_DIR", dir.to_str().unwrap()), ("JOBDL_ALLOW_HOSTS", &allow)],
    ));
    run.expect_code(0);
    assert_eq!(files_under(&env.work().join("trusted-dir")).len(), 3, "{run}");

    // A download whose project endpoint is https: the token travels over TLS.
    let mut cmd = command(
        &env,
        &["download", "job-wait", "--wait", "--json"],
        &[("SSL_CERT_FILE", pem.to_str().unwrap()), ("JOBDL_ALLOW_HOSTS", &allow)],
    );
    cmd.env("AZURE_AI_PROJECT_ENDPOINT", format!("{}/api/projects/{}", front.base_url(), support::PROJECT));
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert_eq!(run.doc()["totals"]["downloaded"], 2, "{run}");
}

#[test]
fn an_untrusted_certificate_fails_with_an_actionable_error() {
    let env = TestEnv::new(standard_world());
    let ca = TestCa::new("jobdl test CA (not trusted)");
    let front = TlsFront::start(&ca, &env.emu.host_port());
    let allow = format!("{},{}", env.emu.host_port(), front.host_port());
    let url =
        env.emu.container_sas_url("data-0001", "job-123-metrics/1").replace(&env.emu.base_url(), &front.base_url());
    let run = env.run_cmd(command(&env, &["cp", &url, "untrusted"], &[("JOBDL_ALLOW_HOSTS", &allow)]));
    assert_eq!(run.code, 1, "{run}");
    let err = run.stderr.to_lowercase();
    assert!(err.contains("certificate"), "the error does not name certificate verification\n{run}");
    assert!(run.stderr.contains("SSL_CERT_FILE"), "the error does not say how to trust a CA\n{run}");
    assert!(!run.stderr.contains(support::CONTAINER_SIG), "{run}");
    assert_eq!(front.handshakes(), 0, "a handshake completed with an untrusted certificate");
    assert!(!env.work().join("untrusted").exists() || files_under(&env.work().join("untrusted")).is_empty());
}

#[test]
fn an_unreadable_ca_bundle_is_a_usage_error_naming_it() {
    let env = TestEnv::new(standard_world());
    let url = env.emu.container_sas_url("data-0001", "job-123-metrics/1");
    let missing = env.sandbox().join("no-such-bundle.pem");
    let run = env.run_cmd(command(&env, &["cp", &url, "out"], &[("SSL_CERT_FILE", missing.to_str().unwrap())]));
    run.expect_code(2);
    assert!(run.stderr.contains("SSL_CERT_FILE") && run.stderr.contains("no-such-bundle.pem"), "{run}");
    assert!(env.requests().is_empty(), "a request was sent without the CA bundle");

    let junk = env.sandbox().join("junk.pem");
    std::fs::write(&junk, "this is not PEM\n").unwrap();
    let run =
        env.run_cmd(command(&env, &["download", "job-123", "--json"], &[("SSL_CERT_FILE", junk.to_str().unwrap())]));
    run.expect_code(2);
    assert_eq!(run.doc()["error"]["code"], "usage", "{run}");
    assert!(run.doc()["error"]["message"].as_str().unwrap_or("").contains("junk.pem"), "{run}");

    let run = env.run_cmd(command(&env, &["cp", &url, "out"], &[("SSL_CERT_DIR", "/nonexistent-jobdl-certs")]));
    run.expect_code(2);
    assert!(run.stderr.contains("/nonexistent-jobdl-certs"), "{run}");
    assert!(env.requests().is_empty());
}

use crate::support::kfp_api;

#[test]
fn http_proxy_relays_plain_http_to_a_remote_endpoint_in_absolute_form() {
    use serde_json::json;
    // A Kubeflow API on plain http under a name that is not loopback (`--allow-http`), reached
    // only through the proxy (which alone resolves `*.invalid`): a v1 run and one `:read` archive.
    let env = TestEnv::new(standard_world());
    let kfp = kfp_api::FakeKfp::start(Some(TOKEN));
    let run = json!({"run_id": "run-p", "display_name": "p", "storage_state": "AVAILABLE",
        "pipeline_spec": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow"},
        "runtime_config": {"parameters": {}, "pipeline_root": ""}, "experiment_id": "",
        "state": "SUCCEEDED", "error": null, "run_details": null, "state_history": []});
    kfp.run("run-p", &["SUCCEEDED"], run);
    let node = json!({"id": "p-1", "type": "Pod", "displayName": "train", "phase": "Succeeded",
        "outputs": {"artifacts": [{"name": "model", "s3": {"key": "artifacts/p-1/model.tgz"}}]}});
    kfp.v1_run("run-p", &json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded", "nodes": {"p-1": node}}}));
    let tgz = {
        use std::io::Write;
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(6);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "w.bin", &b"weight"[..]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    };
    let body = format!("{{\"data\":\"{}\"}}", base64::engine::general_purpose::STANDARD.encode(&tgz));
    let read = kfp_api::ReadBody { body: body.into_bytes(), cut_at: None, cut_times: 0 };
    kfp.read("run-p", "p-1", "model", read);
    let port = kfp.base_url().rsplit(':').next().unwrap().to_string();
    let endpoint = format!("http://kfp.jobdl.invalid:{port}");
    let proxy = Proxy::start();
    let mut cmd = command(&env, &["download", "run-p", "--all-outputs", "--json", "--allow-http"], &[]);
    cmd.env_remove("AZURE_AI_PROJECT_ENDPOINT")
        .env("HTTP_PROXY", proxy.url())
        .env("NO_PROXY", "example.invalid")
        .args(["--kfp-endpoint", &endpoint]);
    let run = env.run_cmd(cmd);
    run.expect_code(0);
    assert_eq!(std::fs::read(env.dest("run-p").join("named-outputs/train/model/w.bin")).unwrap(), b"weight");
    let seen = proxy.requests();
    assert!(!seen.is_empty(), "HTTP_PROXY was not used\n{run}");
    for r in &seen {
        assert!(r.relayed && r.method == "GET" && r.target.starts_with(&format!("{endpoint}/")), "{r:?}");
    }
    assert!(seen.iter().any(|r| r.target.ends_with("/artifacts/model:read")), "{seen:#?}");
}

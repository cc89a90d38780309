//! Self-test of the test emulator, over raw HTTP/1.1 so every byte on the wire is visible.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{
    ARTIFACT_CONTAINER, Emulator, Fault, FaultRule, ODD_NAME, TOKEN, artifact_blob_name, encode_blob_name, gen_bytes,
    standard_world,
};
use url::Url;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// One bodiless request on a fresh connection.
fn http(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    send(method, url, headers, "")
}

/// One request on a fresh connection; reads until the server closes or resets it.
fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let url = Url::parse(url).expect("valid URL");
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = TcpStream::connect(&host).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("complete head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect();
    Reply { status, headers, body: raw[split + 4..].to_vec() }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn get_json(url: &str) -> serde_json::Value {
    let auth = bearer();
    let reply = http("GET", url, &[("Authorization", &auth)]);
    assert_eq!(reply.status, 200, "GET {url}: {}", String::from_utf8_lossy(&reply.body));
    reply.json()
}

fn with_params(base: &str, params: &[(&str, &str)]) -> String {
    Url::parse_with_params(base, params).unwrap().to_string()
}

#[test]
fn job_get_needs_token_and_api_version() {
    let emu = Emulator::start(standard_world());
    let url = format!("{}/jobs/job-123?api-version=2026-01-15-preview", emu.project_endpoint());

    let anonymous = http("GET", &url, &[]);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["error"]["code"], "Unauthorized");

    let job = get_json(&url);
    assert_eq!(job["name"], "job-123");
    assert_eq!(job["properties"]["status"], "Completed");
    assert_eq!(job["properties"]["outputs"]["ckpt"]["jobOutputType"], "mlflow_model");

    let auth = bearer();
    let no_version = http("GET", &format!("{}/jobs/job-123", emu.project_endpoint()), &[("Authorization", &auth)]);
    assert_eq!(no_version.status, 400);
    let unknown = http("GET", &url.replace("job-123", "nope"), &[("Authorization", &auth)]);
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["code"], "NotFound");

    let log = emu.requests();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0].authorization, None);
    assert_eq!(log[0].status, 401);
    assert_eq!(log[1].authorization.as_deref(), Some(auth.as_str()));
    assert_eq!(log[1].param("api-version").as_deref(), Some("2026-01-15-preview"));
}

#[test]
fn statuses_pop_until_one_remains() {
    let emu = Emulator::start(standard_world());
    let url = format!("{}/jobs/job-wait?api-version=v", emu.project_endpoint());
    let seen: Vec<String> =
        (0..4).map(|_| get_json(&url)["properties"]["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(seen, ["Queued", "Running", "Completed", "Completed"]);
    emu.set_statuses("job-wait", vec!["Failed".into()]);
    assert_eq!(get_json(&url)["properties"]["status"], "Failed");
}

/// Follows `continuationToken` and `nextLink` the way jobdl must.
fn list_all(emu: &Emulator, job: &str) -> (Vec<String>, usize) {
    let history = format!("{}/jobs/{job}/history/runs/{job}?api-version=v", emu.project_endpoint());
    let exp = get_json(&history)["experimentId"].as_str().unwrap().to_string();
    let base = format!("{}/jobs/{job}/history/experimentids/{exp}/runs/{job}/artifacts", emu.project_endpoint());
    let mut url = with_params(&base, &[("api-version", "v")]);
    let (mut paths, mut pages) = (Vec::new(), 0);
    loop {
        let page = get_json(&url);
        pages += 1;
        for item in page["value"].as_array().unwrap() {
            paths.push(item["path"].as_str().unwrap().to_string());
        }
        if let Some(token) = page["continuationToken"].as_str() {
            url = with_params(&base, &[("api-version", "v"), ("continuationToken", token)]);
        } else if let Some(link) = page["nextLink"].as_str() {
            url = link.to_string();
        } else {
            return (paths, pages);
        }
    }
}

#[test]
fn artifacts_page_by_token_and_next_link() {
    let world = standard_world();
    let emu = Emulator::start(world.clone());
    for job in ["job-123", "job-nextlink"] {
        let expected: Vec<String> = world.job(job).unwrap().artifacts.iter().map(|a| a.path.clone()).collect();
        let (paths, pages) = list_all(&emu, job);
        assert_eq!(paths, expected, "{job}");
        assert!(pages >= 3, "{job} should page, got {pages} pages");
    }
    // The token carries `+`, `/` and `=`: it must come back percent-encoded.
    let tokens: Vec<_> = emu.requests().iter().filter_map(|r| r.param("continuationToken")).collect();
    assert!(tokens.iter().any(|t| t.contains('+')));

    // prefix/contentinfo matches a plain string prefix and pages by token.
    let exp = support::EXPERIMENT_ID;
    let base = format!(
        "{}/jobs/job-123/history/experimentids/{exp}/runs/job-123/artifacts/prefix/contentinfo",
        emu.project_endpoint()
    );
    let page = get_json(&with_params(&base, &[("api-version", "v"), ("path", "log")]));
    let paths: Vec<_> = page["value"].as_array().unwrap().iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["log/a.txt", "logs/b.txt"]);
    let auth = bearer();
    let missing = http("GET", &with_params(&base, &[("api-version", "v")]), &[("Authorization", &auth)]);
    assert_eq!(missing.status, 400);
}

#[test]
fn content_uri_downloads_odd_names() {
    let world = standard_world();
    let emu = Emulator::start(world.clone());
    let exp = support::EXPERIMENT_ID;
    let url = with_params(
        &format!(
            "{}/jobs/job-123/history/experimentids/{exp}/runs/job-123/artifacts/contentinfo",
            emu.project_endpoint()
        ),
        &[("api-version", "v"), ("path", ODD_NAME)],
    );
    let item = get_json(&url);
    let uri = item["contentUri"].as_str().unwrap();
    assert!(uri.contains(&encode_blob_name(&artifact_blob_name("job-123", ODD_NAME))));
    let reply = http("GET", uri, &[]);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, world.artifact_blob("job-123", ODD_NAME).unwrap().full_content());
    assert!(reply.header("content-md5").is_some());
    assert_eq!(emu.requests().last().unwrap().authorization, None);

    // The same SAS with its signature decoded, or encoded twice, is refused.
    assert!(uri.contains("%2B"));
    assert_eq!(http("GET", &uri.replace("%2B", "+"), &[]).status, 403);
    assert_eq!(http("GET", &uri.replace("%2B", "%252B"), &[]).status, 403);
    assert_eq!(http("GET", &uri.replace("%2B", "%2b"), &[]).status, 200);
    let unsigned = uri.split('?').next().unwrap();
    let reply = http("GET", unsigned, &[]);
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("x-ms-error-code"), Some("AuthenticationFailed"));
}

#[test]
fn ranged_get_returns_generated_bytes() {
    let emu = Emulator::start(standard_world());
    let url = emu.blob_sas_url(ARTIFACT_CONTAINER, &artifact_blob_name("job-123", "outputs/big.bin"));
    let size = 20 * 1024 * 1024;

    let reply = http("GET", &url, &[("Range", "bytes=1000003-1100002")]);
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("content-range"), Some(format!("bytes 1000003-1100002/{size}").as_str()));
    assert_eq!(reply.body, gen_bytes(1, 1_000_003, 100_000));
    assert!(reply.header("x-ms-blob-content-md5").is_some());
    assert!(reply.header("content-md5").is_none());
    let etag = reply.header("etag").unwrap().to_string();

    let tail = http("GET", &url, &[("x-ms-range", "bytes=20971000-"), ("If-Match", &etag)]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, gen_bytes(1, 20_971_000, 520));

    let stale = http("GET", &url, &[("Range", "bytes=0-9"), ("If-Match", "\"0x8DE000\"")]);
    assert_eq!(stale.status, 412);

    let head = http("HEAD", &url, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(size.to_string().as_str()));
    assert!(head.body.is_empty());
    assert_eq!(emu.requests().last().unwrap().range, None);
}

#[test]
fn empty_blob_gives_416_to_a_range() {
    let emu = Emulator::start(standard_world());
    let url = emu.blob_sas_url(ARTIFACT_CONTAINER, &artifact_blob_name("job-123", "outputs/empty.bin"));
    let ranged = http("GET", &url, &[("Range", "bytes=0-0")]);
    assert_eq!(ranged.status, 416);
    assert_eq!(ranged.header("content-range"), Some("bytes */0"));
    assert_eq!(ranged.header("x-ms-error-code"), Some("InvalidRange"));
    let whole = http("GET", &url, &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-length"), Some("0"));
    assert!(whole.body.is_empty());
}

#[test]
fn list_blobs_pages_with_markers() {
    let world = standard_world();
    let emu = Emulator::start(world.clone());
    let base = emu.container_sas_url(ARTIFACT_CONTAINER, "");
    let prefix = "ExperimentRun/dcid.job-123/";
    let mut names = Vec::new();
    let mut marker = String::new();
    loop {
        let mut url = Url::parse(&base).unwrap();
        url.query_pairs_mut()
            .append_pair("restype", "container")
            .append_pair("comp", "list")
            .append_pair("prefix", prefix)
            .append_pair("marker", &marker);
        let reply = http("GET", url.as_str(), &[]);
        assert_eq!(reply.status, 200);
        let xml = String::from_utf8(reply.body).unwrap();
        names.extend(xml.split("<Name>").skip(1).map(|s| s.split("</Name>").next().unwrap().replace("&amp;", "&")));
        marker = xml.split("<NextMarker>").nth(1).unwrap().split("</NextMarker>").next().unwrap().to_string();
        if marker.is_empty() {
            break;
        }
    }
    let expected: Vec<String> =
        world.containers[ARTIFACT_CONTAINER].keys().filter(|n| n.starts_with(prefix)).cloned().collect();
    assert_eq!(names, expected);
    assert!(emu.requests().len() > 3);
}

#[test]
fn faults_cut_stall_and_fail() {
    let emu = Emulator::start(standard_world());
    let name = artifact_blob_name("job-123", "outputs/big.bin");
    let url = emu.blob_sas_url(ARTIFACT_CONTAINER, &name);
    emu.add_fault(FaultRule::new("big.bin", 1, Fault::ResetAfter(70_000)).method("GET"));

    let cut = http("GET", &url, &[("Range", "bytes=0-199999")]);
    assert_eq!(cut.status, 206);
    assert_eq!(cut.header("content-length"), Some("200000"));
    assert_eq!(cut.body, gen_bytes(1, 0, 70_000));
    // The rule is spent: the next request is whole.
    let whole = http("GET", &url, &[("Range", "bytes=0-199999")]);
    assert_eq!(whole.body.len(), 200_000);

    let small = artifact_blob_name("job-123", "model.pt");
    emu.add_fault(FaultRule::new(&encode_blob_name(&small), 1, Fault::IgnoreRange));
    let ignored = http("GET", &emu.blob_sas_url(ARTIFACT_CONTAINER, &small), &[("Range", "bytes=5-9")]);
    assert_eq!(ignored.status, 200);
    assert_eq!(ignored.body, gen_bytes(11, 0, 3000));

    emu.add_fault(FaultRule::new("/jobs/job-123", 2, Fault::Status { code: 503, retry_after: Some("1".into()) }));
    let job = format!("{}/jobs/job-123?api-version=v", emu.project_endpoint());
    let auth = bearer();
    for _ in 0..2 {
        let busy = http("GET", &job, &[("Authorization", &auth)]);
        assert_eq!(busy.status, 503);
        assert_eq!(busy.header("retry-after"), Some("1"));
    }
    assert_eq!(http("GET", &job, &[("Authorization", &auth)]).status, 200);

    // Stall: the head arrives at once, the body only after the pause.
    emu.add_fault(FaultRule::new("big.bin", 1, Fault::Stall(Duration::from_millis(600))));
    let parsed = Url::parse(&url).unwrap();
    let mut stream = TcpStream::connect(emu.host_port()).unwrap();
    let target = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let started = std::time::Instant::now();
    let mut raw = vec![0u8; 4096];
    let n = stream.read(&mut raw).unwrap();
    assert!(started.elapsed() < Duration::from_millis(400));
    let head = String::from_utf8_lossy(&raw[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 206") && head.ends_with("\r\n\r\n"), "{head:?}");
    let mut body = Vec::new();
    stream.read_to_end(&mut body).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(body, gen_bytes(1, 0, 10));

    let statuses: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [206, 206, 200, 503, 503, 200, 206]);
    emu.stop();
}

#[test]
fn named_outputs_gaps_and_odd_paging() {
    let emu = Emulator::start(standard_world());
    let auth = bearer();
    let proj = emu.project_endpoint();

    // Model: version, then credentials (the body must name the blob), then a listing with the SAS.
    let version = get_json(&format!("{proj}/models/job-123-model/versions/1?api-version=v"));
    let blob_uri = version["blobUri"].as_str().unwrap();
    let creds_url = format!("{proj}/models/job-123-model/versions/1/credentials?api-version=v");
    assert_eq!(http("POST", &creds_url, &[("Authorization", &auth)]).status, 400);
    let creds = post_json(&creds_url, &format!("{{\"BlobUri\":\"{blob_uri}\"}}"));
    let credential = &creds["blobReference"]["credential"];
    assert_eq!(credential["type"], "SAS");
    let mut list = Url::parse(credential["sasUri"].as_str().unwrap()).unwrap();
    list.query_pairs_mut()
        .append_pair("restype", "container")
        .append_pair("comp", "list")
        .append_pair("prefix", "job-123-model/1/");
    let xml = String::from_utf8(http("GET", list.as_str(), &[]).body).unwrap();
    assert!(xml.contains("<Name>job-123-model/1/config.json</Name>"), "{xml}");

    // Dataset credentials accept an empty body and use `credentialType` for metrics.
    let data = format!("{proj}/datasets/job-123-metrics/versions/1/credentials?api-version=v1");
    let creds = post_json(&data, "");
    assert_eq!(creds["blobReference"]["credential"]["credentialType"], "SAS");

    // job-gap: prefix/contentinfo omits b.txt; the per-path route fills it.
    let runs = format!("{proj}/jobs/job-gap/history/experimentids/{}/runs/job-gap/artifacts", support::EXPERIMENT_ID);
    let page =
        get_json(&with_params(&format!("{runs}/prefix/contentinfo"), &[("api-version", "v"), ("path", "outputs")]));
    assert_eq!(page["value"].as_array().unwrap().len(), 2);
    let filled =
        get_json(&with_params(&format!("{runs}/contentinfo"), &[("api-version", "v"), ("path", "outputs/b.txt")]));
    let body = http("GET", filled["contentUri"].as_str().unwrap(), &[]).body;
    assert_eq!(body, b"gap b, filled per path\n");

    // job-foreign-next hands out a nextLink to 127.0.0.2; job-cycle repeats its token.
    let foreign = format!(
        "{proj}/jobs/job-foreign-next/history/experimentids/{}/runs/job-foreign-next/artifacts?api-version=v",
        support::EXPERIMENT_ID
    );
    assert!(get_json(&foreign)["nextLink"].as_str().unwrap().starts_with("http://127.0.0.2:1/"));
    let cycle =
        format!("{proj}/jobs/job-cycle/history/experimentids/{}/runs/job-cycle/artifacts", support::EXPERIMENT_ID);
    let first = get_json(&with_params(&cycle, &[("api-version", "v")]));
    let token = first["continuationToken"].as_str().unwrap();
    let second = get_json(&with_params(&cycle, &[("api-version", "v"), ("continuationToken", token)]));
    assert_eq!(second["continuationToken"].as_str(), Some(token));

    // job-noexp has no experimentId.
    let history = get_json(&format!("{proj}/jobs/job-noexp/history/runs/job-noexp?api-version=v"));
    assert!(history.get("experimentId").is_none());

    // ShortBody declares the full length and ends early.
    let url = emu.blob_sas_url(ARTIFACT_CONTAINER, &artifact_blob_name("job-123", "model.pt"));
    emu.add_fault(FaultRule::new("model.pt", 1, Fault::ShortBody(100)));
    let short = http("GET", &url, &[]);
    assert_eq!(short.header("content-length"), Some("3000"));
    assert_eq!(short.body, gen_bytes(11, 0, 100));
}

fn post_json(url: &str, body: &str) -> serde_json::Value {
    let auth = bearer();
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let reply = send("POST", url, &headers, body);
    assert_eq!(reply.status, 200, "POST {url}: {}", String::from_utf8_lossy(&reply.body));
    reply.json()
}

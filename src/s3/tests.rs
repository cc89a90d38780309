use super::*;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn fast_retry(attempts: u32) -> RetryConfig {
    RetryConfig {
        attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        retry_after_cap: Duration::from_millis(5),
    }
}

fn config(endpoint: Option<&str>, token: Option<&str>) -> S3Config {
    S3Config {
        endpoint: endpoint.map(|e| Url::parse(e).unwrap()),
        region: "us-east-1".into(),
        credentials: Credentials::new(AKID, SECRET, token.map(str::to_string)),
    }
}

fn client(server: &MockServer, attempts: u32) -> S3Client {
    S3Client::new(reqwest::Client::new(), fast_retry(attempts), &config(Some(&server.uri()), None), "bkt").unwrap()
}

#[test]
fn addressing_styles_and_object_urls() {
    let aws = S3Client::new(reqwest::Client::new(), fast_retry(1), &config(None, Some("TOKEN")), "my-bkt").unwrap();
    assert_eq!(aws.bucket_url().as_str(), "https://my-bkt.s3.us-east-1.amazonaws.com/");
    let dotted = S3Client::new(reqwest::Client::new(), fast_retry(1), &config(None, None), "my.bkt").unwrap();
    assert_eq!(dotted.bucket_url().as_str(), "https://s3.us-east-1.amazonaws.com/my.bkt/");
    let custom =
        S3Client::new(reqwest::Client::new(), fast_retry(1), &config(Some("http://127.0.0.1:9000/s3/"), None), "bkt")
            .unwrap();
    assert_eq!(custom.bucket_url().as_str(), "http://127.0.0.1:9000/s3/bkt/");
    let u = custom.object_url("a b/c+d%e/\u{e9}//x?y#z").unwrap();
    assert_eq!(u.path(), "/s3/bkt/a%20b/c%2Bd%25e/%C3%A9//x%3Fy%23z");
    assert_eq!(u.query(), None);
    assert!(format!("{:?}", aws.signer()).contains(AKID));
    assert!(!format!("{:?}", aws.signer()).contains(SECRET));
}

#[test]
fn s3_urls() {
    let l = parse_s3_url("s3://mlpipeline/v2/artifacts/p/").unwrap();
    assert_eq!((l.bucket.as_str(), l.key.as_str()), ("mlpipeline", "v2/artifacts/p/"));
    assert_eq!(parse_s3_url("s3://bkt").unwrap().key, "");
    assert_eq!(parse_s3_url("S3://bkt/k").unwrap().key, "k");
    assert_eq!(parse_s3_url("s3://bkt/a b%20/c").unwrap().key, "a b%20/c");
    for bad in [
        "http://x/y",
        "s3://",
        "s3://ab",
        "s3://-bkt/x",
        "s3://b/k/../x",
        "s3://bkt/./x",
        "s3://bkt/a\u{1}b",
        "s3://bk t/x",
    ] {
        assert!(parse_s3_url(bad).is_err(), "{bad}");
    }
    assert_eq!(unrequestable("a//b"), None);
    assert!(unrequestable("..").is_some());
    assert!(unrequestable("a/..").is_some());
}

#[test]
fn etags() {
    let md5 = classify_etag("\"0cc175b9c0f1b6a831c399e269772661\"");
    assert_eq!(
        md5,
        EtagKind::Md5([0x0c, 0xc1, 0x75, 0xb9, 0xc0, 0xf1, 0xb6, 0xa8, 0x31, 0xc3, 0x99, 0xe2, 0x69, 0x77, 0x26, 0x61])
    );
    assert_eq!(classify_etag("01dad2f127a6e2408e1f8ea5a3009ff7-3"), EtagKind::Multipart(3));
    for opaque in [
        "",
        "\"\"",
        "abc",
        "01dad2f127a6e2408e1f8ea5a3009ff7-",
        "01dad2f127a6e2408e1f8ea5a3009ff7-0",
        "01dad2f127a6e2408e1f8ea5a3009ff7-x",
        "01dad2f127a6e2408e1f8ea5a3009ff-3",
        "0x8DE1",
        "+1dad2f127a6e2408e1f8ea5a3009ff7",
    ] {
        assert_eq!(classify_etag(opaque), EtagKind::Opaque, "{opaque}");
    }
}

fn page(keys: &[&str], next: Option<&str>) -> String {
    let contents: String =
        keys.iter().map(|k| format!("<Contents><Key>{k}</Key><Size>3</Size><ETag>\"e\"</ETag></Contents>")).collect();
    let tail = match next {
        Some(t) => format!("<IsTruncated>true</IsTruncated><NextContinuationToken>{t}</NextContinuationToken>"),
        None => "<IsTruncated>false</IsTruncated>".into(),
    };
    format!(
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{contents}<EncodingType>url</EncodingType>{tail}</ListBucketResult>"
    )
}

#[tokio::test]
async fn list_follows_tokens_signs_each_page_and_keeps_bad_keys_apart() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/bkt/"))
        .and(query_param("list-type", "2"))
        .and(query_param("encoding-type", "url"))
        .and(query_param("prefix", "run 1/"))
        .and(query_param_is_missing("continuation-token"))
        .respond_with(ResponseTemplate::new(200).set_body_string(page(&["run+1/a", "run%201/%FF"], Some("t 1+/="))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/bkt/"))
        .and(query_param("continuation-token", "t 1+/="))
        .respond_with(ResponseTemplate::new(200).set_body_string(page(&["run%201/b/c", "elsewhere/x"], None)))
        .expect(1)
        .mount(&server)
        .await;
    let (objects, bad) = client(&server, 3).list("run 1/").await.unwrap();
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["run 1/a", "run 1/b/c"]);
    assert_eq!(bad.len(), 1, "{bad:?}");
    for r in server.received_requests().await.unwrap() {
        let auth = r.headers.get("authorization").unwrap().to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/"), "{auth}");
        assert!(r.headers.get("x-amz-date").is_some() && r.headers.get("x-amz-content-sha256").is_some());
        assert!(r.headers.keys().all(|h| !h.as_str().starts_with("x-ms-")), "{:?}", r.headers);
    }
}

#[tokio::test]
async fn repeated_tokens_and_runaway_listings_stop() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/bkt/"))
        .respond_with(ResponseTemplate::new(200).set_body_string(page(&["a"], Some("same"))))
        .mount(&server)
        .await;
    let e = client(&server, 1).list("").await.unwrap_err();
    assert!(e.to_string().contains("repeated a continuation token"), "{e}");
    assert!(matches!(e, CallError::Decode { .. }));

    let mut c = client(&server, 1);
    c.max_pages = 1;
    let e = c.list("").await.unwrap_err();
    assert!(e.to_string().contains("did not end after 1 pages"), "{e}");
}

#[tokio::test]
async fn errors_keep_the_status_and_code_and_retry_only_transient_ones() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/denied/"))
        .respond_with(ResponseTemplate::new(403).set_body_string(
            "<Error><Code>SignatureDoesNotMatch</Code><Message>x</Message><StringToSign>AWS4 secret</StringToSign></Error>",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let c = S3Client::new(reqwest::Client::new(), fast_retry(3), &config(Some(&server.uri()), None), "denied").unwrap();
    let e = c.list("").await.unwrap_err();
    assert_eq!(e.status(), Some(403));
    assert!(matches!(&e, CallError::Status { code: Some(c), .. } if c == "SignatureDoesNotMatch"), "{e:?}");
    assert!(!e.to_string().contains("secret"));

    Mock::given(method("GET"))
        .and(path("/busy/"))
        .respond_with(ResponseTemplate::new(503).set_body_string("<Error><Code>SlowDown</Code></Error>"))
        .expect(3)
        .mount(&server)
        .await;
    let c = S3Client::new(reqwest::Client::new(), fast_retry(3), &config(Some(&server.uri()), None), "busy").unwrap();
    assert_eq!(c.list("").await.unwrap_err().status(), Some(503));
}

#[tokio::test]
async fn head_reports_size_and_etag() {
    let server = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/bkt/dir/a%20b.bin"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-length", "12")
                .insert_header("etag", "\"01dad2f127a6e2408e1f8ea5a3009ff7-3\""),
        )
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .and(path("/bkt/kms"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-length", "1")
                .insert_header("etag", "\"0cc175b9c0f1b6a831c399e269772661\"")
                .insert_header("x-amz-server-side-encryption", "aws:kms"),
        )
        .mount(&server)
        .await;
    Mock::given(method("HEAD")).and(path("/bkt/missing")).respond_with(ResponseTemplate::new(404)).mount(&server).await;
    let c = client(&server, 2);
    let p = c.head("dir/a b.bin").await.unwrap();
    assert_eq!(
        p,
        ObjectProps { size: 12, etag: Some("01dad2f127a6e2408e1f8ea5a3009ff7-3".into()), kms_or_sse_c: false }
    );
    assert!(c.head("kms").await.unwrap().kms_or_sse_c);
    assert_eq!(c.head("missing").await.unwrap_err().status(), Some(404));
}

//! SigV4 request signing (docs/kfp-s3-api.md §5.3) through AWS's own `aws-sigv4` crate: never a
//! hand-written signer. Every request is signed in headers (`Authorization`, `x-amz-date`,
//! `x-amz-content-sha256` = `UNSIGNED-PAYLOAD`, `x-amz-security-token`) at the moment it is sent,
//! over `host` and those `x-amz-*` headers only: `Range` and `If-Match` stay unsigned, so the
//! engine adds them freely, and a long download never outlives its signature (the time is in
//! each request, not in a URL that expires). S3 paths are encoded once and never normalised.
use super::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use std::time::SystemTime;
use url::Url;

/// The payload hash sent as `x-amz-content-sha256` (no request here has a body).
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
    /// A precomputed hex SHA-256 (the empty body's, for the published test vectors).
    Sha256(&'a str),
}

/// Signs S3 requests for one region with one set of credentials.
#[derive(Clone)]
pub struct Signer {
    credentials: Credentials,
    region: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("credentials", &self.credentials).field("region", &self.region).finish()
    }
}

impl Signer {
    /// A signer for `region`.
    pub fn new(credentials: Credentials, region: impl Into<String>) -> Self {
        Signer { credentials, region: region.into() }
    }

    /// The headers that authorise `method url` now, signing `extra` headers too.
    pub fn headers(&self, method: &str, url: &Url) -> Result<Vec<(String, String)>, String> {
        self.headers_at(method, url, &[], Payload::Unsigned, SystemTime::now())
    }

    /// The headers that authorise `method url` at `time`. `extra` (lower-case names) are sent by
    /// the caller and signed too. Errors only on a URL the signer cannot read (never with a
    /// secret in the message).
    pub fn headers_at(
        &self,
        method: &str,
        url: &Url,
        extra: &[(&str, &str)],
        payload: Payload<'_>,
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, String> {
        let c = &self.credentials;
        let identity =
            aws_credential_types::Credentials::new(c.key(), c.secret(), c.token().map(str::to_string), None, "jobdl")
                .into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.signature_location = SignatureLocation::Headers;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| format!("cannot sign the request: {e}"))?
            .into();
        let body = match payload {
            Payload::Unsigned => SignableBody::UnsignedPayload,
            Payload::Sha256(h) => SignableBody::Precomputed(h.to_string()),
        };
        let request = SignableRequest::new(method, url.as_str(), extra.iter().copied(), body)
            .map_err(|e| format!("cannot sign the request for {}: {e}", crate::redact::url_for_display(url)))?;
        let (instructions, _signature) =
            sign(request, &params).map_err(|e| format!("cannot sign the request: {e}"))?.into_parts();
        let (headers, _params) = instructions.into_parts();
        Ok(headers.into_iter().map(|h| (h.name().to_string(), h.value().to_string())).collect())
    }
}

/// The engine's per-request hook: a fresh signature for every data request.
impl crate::transfer::RequestSigner for Signer {
    fn headers(&self, method: &str, url: &Url) -> Vec<(String, String)> {
        match Signer::headers(self, method, url) {
            Ok(h) => h,
            Err(e) => {
                // The request goes out unsigned and fails with 403, which names the file.
                crate::log::log(0, format!("warning: {e}"));
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn signer(token: Option<&str>) -> Signer {
        Signer::new(
            Credentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                token.map(str::to_string),
            ),
            "us-east-1",
        )
    }

    fn at_2013_05_24() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_369_353_600)
    }

    fn signature(headers: &[(String, String)]) -> String {
        let auth = &headers.iter().find(|(k, _)| k == "authorization").unwrap().1;
        auth.rsplit("Signature=").next().unwrap().to_string()
    }

    /// AWS "Signature Calculations for the Authorization Header", GET Object example.
    #[test]
    fn published_vector_get_object_with_range() {
        let url = Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        let h = signer(None)
            .headers_at("GET", &url, &[("range", "bytes=0-9")], Payload::Sha256(EMPTY_SHA256), at_2013_05_24())
            .unwrap();
        assert_eq!(signature(&h), "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature="
            ),
            "{auth}"
        );
        assert!(h.iter().any(|(k, v)| k == "x-amz-date" && v == "20130524T000000Z"), "{h:?}");
        assert!(h.iter().any(|(k, v)| k == "x-amz-content-sha256" && v == EMPTY_SHA256), "{h:?}");
    }

    /// Same source, GET Bucket (List Objects) example: the query is sorted and encoded.
    #[test]
    fn published_vector_list_objects() {
        let url = Url::parse("https://examplebucket.s3.amazonaws.com/?prefix=J&max-keys=2").unwrap();
        let h = signer(None).headers_at("GET", &url, &[], Payload::Sha256(EMPTY_SHA256), at_2013_05_24()).unwrap();
        assert_eq!(signature(&h), "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    }

    #[test]
    fn data_requests_sign_only_host_and_amz_headers_and_carry_the_token() {
        let url = Url::parse("http://127.0.0.1:9000/bkt/a%20b/c.bin").unwrap();
        let h = signer(Some("TOKEN")).headers("GET", &url).unwrap();
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"), "{auth}");
        assert!(h.iter().any(|(k, v)| k == "x-amz-content-sha256" && v == "UNSIGNED-PAYLOAD"));
        assert!(h.iter().any(|(k, v)| k == "x-amz-security-token" && v == "TOKEN"));
        assert!(!format!("{:?}", signer(Some("TOKEN"))).contains("EXAMPLEKEY"));
    }
}

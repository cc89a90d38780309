//! Clouds and the host allow-list (docs/azure-api.md §5.1, §5.2): which URLs may be fetched at all.
//! Pure checks on parsed URLs; knows no HTTP client, no credentials and no provider logic.
//!
//! Matching is by exact label structure (no regular expressions): a host is split on `.` and each
//! label is checked, so `xblob.core.windows.net` or `blob.core.windows.net.evil.invalid` never match.
use crate::redact::url_for_display;
use std::net::{Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// An Azure cloud (the `--cloud` / `AZURE_CLOUD` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// Azure public cloud.
    AzureCloud,
    /// Azure US Government.
    AzureUSGovernment,
    /// Azure China (21Vianet).
    AzureChinaCloud,
}

/// All clouds, in the order shown in messages.
const CLOUDS: [Cloud; 3] = [Cloud::AzureCloud, Cloud::AzureUSGovernment, Cloud::AzureChinaCloud];

impl Cloud {
    /// The cloud used when none is named.
    pub const DEFAULT: Cloud = Cloud::AzureCloud;
    /// The name of [`Self::DEFAULT`] (the `--cloud` default).
    pub const DEFAULT_NAME: &'static str = Cloud::DEFAULT.name();
    /// Every cloud's name, in the order shown in messages.
    pub const NAMES: [&'static str; 3] = [CLOUDS[0].name(), CLOUDS[1].name(), CLOUDS[2].name()];
}

impl std::str::FromStr for Cloud {
    type Err = String;

    /// Parse a cloud name, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        CLOUDS.into_iter().find(|c| c.name().eq_ignore_ascii_case(t)).ok_or_else(|| {
            let valid: Vec<&str> = CLOUDS.iter().map(Cloud::name).collect();
            format!("unknown cloud '{t}' (valid: {})", valid.join(", "))
        })
    }
}

impl std::fmt::Display for Cloud {
    /// The canonical name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Cloud {
    /// Storage DNS suffix (`core.windows.net`, ...).
    pub fn storage_suffix(&self) -> &'static str {
        match self {
            Cloud::AzureCloud => "core.windows.net",
            Cloud::AzureUSGovernment => "core.usgovcloudapi.net",
            Cloud::AzureChinaCloud => "core.chinacloudapi.cn",
        }
    }

    /// ARM host (`management.azure.com`, ...).
    pub fn arm_host(&self) -> &'static str {
        match self {
            Cloud::AzureCloud => "management.azure.com",
            Cloud::AzureUSGovernment => "management.usgovcloudapi.net",
            Cloud::AzureChinaCloud => "management.chinacloudapi.cn",
        }
    }

    /// Suffix of the regional Azure ML API hosts (`api.azureml.ms`, ...).
    pub fn ml_api_suffix(&self) -> &'static str {
        match self {
            Cloud::AzureCloud => "api.azureml.ms",
            Cloud::AzureUSGovernment => "api.ml.azure.us",
            Cloud::AzureChinaCloud => "api.ml.azure.cn",
        }
    }

    /// The canonical name (`AzureCloud`, `AzureUSGovernment`, `AzureChinaCloud`).
    pub const fn name(&self) -> &'static str {
        match self {
            Cloud::AzureCloud => "AzureCloud",
            Cloud::AzureUSGovernment => "AzureUSGovernment",
            Cloud::AzureChinaCloud => "AzureChinaCloud",
        }
    }
}

/// A normalised host: lower-case domain without its trailing dot, or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostKey {
    Domain(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl HostKey {
    fn from_url_host(h: Host<&str>) -> HostKey {
        match h {
            Host::Domain(d) => {
                let d = d.to_ascii_lowercase();
                HostKey::Domain(d.strip_suffix('.').map(str::to_string).unwrap_or(d))
            }
            Host::Ipv4(a) => HostKey::V4(a),
            Host::Ipv6(a) => HostKey::V6(a),
        }
    }

    fn is_loopback(&self) -> bool {
        match self {
            HostKey::Domain(d) => d == "localhost",
            HostKey::V4(a) => a.is_loopback(),
            HostKey::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        }
    }

    fn shown(&self) -> String {
        match self {
            HostKey::Domain(d) => d.clone(),
            HostKey::V4(a) => a.to_string(),
            HostKey::V6(a) => format!("[{a}]"),
        }
    }
}

/// One `--allow-host` / `JOBDL_ALLOW_HOSTS` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: HostKey,
    /// `None`: only the scheme's default port (no explicit port in the URL).
    port: Option<u16>,
}

/// The hosts URLs may point to: the selected cloud's own hosts plus the user's extra entries.
#[derive(Debug, Clone)]
pub struct AllowList {
    cloud: Cloud,
    extra: Vec<Entry>,
}

/// What is being checked, for messages.
#[derive(Clone, Copy)]
enum Kind {
    Storage,
    Foundry,
    MlApi,
    Arm,
    Presigned,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Storage => "storage host",
            Kind::Foundry => "Foundry project host",
            Kind::MlApi => "Azure ML API host",
            Kind::Arm => "ARM host",
            Kind::Presigned => "cloud storage host for presigned URLs",
        }
    }
}

const HINT: &str = "add it with --allow-host / JOBDL_ALLOW_HOSTS";

impl AllowList {
    /// Build the list for `cloud` plus `extra` entries `host` or `host:port` (IPv6 in brackets:
    /// `[::1]:10000`). Empty entries are ignored; malformed ones are an error naming the entry.
    pub fn new(cloud: Cloud, extra: &[String]) -> Result<Self, String> {
        let mut entries = Vec::new();
        for raw in extra {
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            entries.push(parse_entry(t)?);
        }
        Ok(AllowList { cloud, extra: entries })
    }

    /// The cloud whose hosts are allowed.
    pub fn cloud(&self) -> Cloud {
        self.cloud
    }

    /// Whether `url` is allowed by an extra entry (scheme, userinfo, loopback-for-http and port rules included).
    pub fn is_listed(&self, url: &Url) -> bool {
        self.listed(url).is_ok()
    }

    /// Blob hosts of the cloud (`<acct>.blob|dfs.<suffix>`, and `<acct>.z<NN>.blob.storage.azure.net`
    /// on the public cloud) over https on the default port; or a listed extra host.
    pub fn check_storage(&self, url: &Url) -> Result<(), String> {
        let cloud = self.cloud;
        self.check(url, Kind::Storage, |h| is_storage_host(cloud, h))
    }

    /// `<acct>.services.ai.azure.com` or `<acct>.cognitiveservices.azure.com` (public cloud only)
    /// over https on the default port; or a listed extra host.
    pub fn check_foundry(&self, url: &Url) -> Result<(), String> {
        let cloud = self.cloud;
        self.check(url, Kind::Foundry, |h| cloud == Cloud::AzureCloud && is_foundry_host(h))
    }

    /// Regional Azure ML API hosts (`<region>.api.azureml.ms`) and private-link workspace hosts
    /// (`<guid>.workspace.<region>[.cert].api.azureml.ms`), with the sovereign suffixes; or a listed host.
    pub fn check_ml_api(&self, url: &Url) -> Result<(), String> {
        let suffix = self.cloud.ml_api_suffix();
        self.check(url, Kind::MlApi, |h| is_ml_api_host(suffix, h))
    }

    /// The cloud's ARM host; or a listed host.
    pub fn check_arm(&self, url: &Url) -> Result<(), String> {
        let arm = self.cloud.arm_host();
        self.check(url, Kind::Arm, |h| h == arm)
    }

    /// A presigned download URL handed out by an MLflow service (Databricks `credentials-for-read`):
    /// Azure Blob/ADLS hosts of any Azure cloud, Amazon S3 (`[bucket.]s3[.-]<region>.amazonaws.com`,
    /// also `.amazonaws.com.cn`) or Google Cloud Storage (`[bucket.]storage.googleapis.com`), over
    /// https on the default port; or a listed extra host.
    pub fn check_presigned(&self, url: &Url) -> Result<(), String> {
        self.check(url, Kind::Presigned, |h| {
            CLOUDS.iter().any(|c| is_storage_host(*c, h)) || is_s3_host(h) || is_gcs_host(h)
        })
    }

    fn check(&self, url: &Url, kind: Kind, known: impl Fn(&str) -> bool) -> Result<(), String> {
        let shown = url_for_display(url);
        let host = basic_checks(url)?;
        if self.listed(url).is_ok() {
            return Ok(());
        }
        let name = host.shown();
        if url.scheme() != "https" {
            return Err(format!(
                "refusing {shown}: plain {} is allowed only for loopback hosts listed with --allow-host / JOBDL_ALLOW_HOSTS",
                url.scheme()
            ));
        }
        let HostKey::Domain(domain) = &host else {
            return Err(format!(
                "refusing {shown}: IP address '{name}' is not an allowed {} for {} ({HINT})",
                kind.what(),
                self.cloud
            ));
        };
        if !known(domain) {
            return Err(format!(
                "refusing {shown}: host '{name}' is not an allowed {} for {} ({HINT})",
                kind.what(),
                self.cloud
            ));
        }
        if let Some(port) = url.port() {
            return Err(format!(
                "refusing {shown}: port {port} is not allowed for host '{name}' (add '{name}:{port}' with --allow-host / JOBDL_ALLOW_HOSTS)"
            ));
        }
        Ok(())
    }

    /// `Ok` when an extra entry allows `url`.
    fn listed(&self, url: &Url) -> Result<(), String> {
        let host = basic_checks(url)?;
        let entry_matches = |e: &Entry| {
            e.host == host
                && match e.port {
                    None => url.port().is_none(),
                    Some(p) => url.port_or_known_default() == Some(p),
                }
        };
        if !self.extra.iter().any(entry_matches) {
            return Err("not listed".into());
        }
        if url.scheme() == "http" && !host.is_loopback() {
            return Err("plain http is allowed only for loopback hosts".into());
        }
        Ok(())
    }
}

/// Whether `a` and `b` share scheme, host and port (the port a scheme implies counts): the unit a
/// credential is bound to. User info and paths do not matter here.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// A user-given S3 endpoint (`--s3-endpoint` / `AWS_ENDPOINT_URL`): http(s), no user name or
/// password, no query or fragment; plain `http` only to a loopback host or with `--allow-http`.
/// The endpoint is the user's own setting (never taken from a server), so any https host is fine.
pub fn check_s3_endpoint(url: &Url, allow_http: bool) -> Result<(), String> {
    check_user_endpoint(url, allow_http, "S3 endpoint")
}

/// A user-given service endpoint (`what`: "S3 endpoint", "Kubeflow Pipelines endpoint"): http(s),
/// no user name or password, no query or fragment; plain `http` only to a loopback host or with
/// `--allow-http`.
pub fn check_user_endpoint(url: &Url, allow_http: bool, what: &str) -> Result<(), String> {
    let host = basic_checks(url)?;
    let shown = url_for_display(url);
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("refusing {what} {shown}: it must not have a query or fragment"));
    }
    if url.scheme() == "http" && !host.is_loopback() && !allow_http {
        return Err(format!(
            "refusing {what} {shown}: plain http is allowed only for loopback hosts or with --allow-http"
        ));
    }
    Ok(())
}

/// AWS S3 hosts: `s3.<region>.amazonaws.com` and `<bucket>.s3.<region>.amazonaws.com` (and the
/// China partition's `.amazonaws.com.cn`), over https on the default port.
pub fn check_aws_s3(url: &Url) -> Result<(), String> {
    let host = basic_checks(url)?;
    let shown = url_for_display(url);
    let HostKey::Domain(d) = &host else {
        return Err(format!("refusing {shown}: not an AWS S3 host"));
    };
    let rest = d.strip_suffix(".amazonaws.com").or_else(|| d.strip_suffix(".amazonaws.com.cn"));
    let is_s3 = rest.is_some_and(|r| {
        let labels: Vec<&str> = r.split('.').collect();
        let region =
            |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        match labels.as_slice() {
            ["s3", r] => region(r),
            [b, "s3", r] => !b.is_empty() && region(r),
            _ => false,
        }
    });
    if url.scheme() != "https" || url.port().is_some() || !is_s3 {
        return Err(format!("refusing {shown}: not an AWS S3 host over https"));
    }
    Ok(())
}

/// Scheme http(s), no userinfo, a host: the checks every URL must pass.
fn basic_checks(url: &Url) -> Result<HostKey, String> {
    let shown = url_for_display(url);
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("refusing {shown}: only https URLs are allowed"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("refusing {shown}: URLs must not contain a user name or password"));
    }
    match url.host() {
        Some(h) => Ok(HostKey::from_url_host(h)),
        None => Err(format!("refusing {shown}: the URL has no host")),
    }
}

/// Parse `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_entry(t: &str) -> Result<Entry, String> {
    let bad = |why: &str| format!("invalid --allow-host / JOBDL_ALLOW_HOSTS entry '{t}': {why}");
    if t.contains("://") || t.contains(['/', '@', '?', '#']) {
        return Err(bad("expected host or host:port, not a URL"));
    }
    let (host_part, port_part) = if let Some(rest) = t.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(bad("missing ']'"));
        };
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("expected ':' after ']'"))?),
        };
        let addr: Ipv6Addr = inside.parse().map_err(|_| bad("not an IPv6 address"))?;
        (HostKey::V6(addr), port)
    } else {
        let (h, p) = match t.split_once(':') {
            Some((h, p)) => {
                if p.contains(':') {
                    return Err(bad("IPv6 addresses must be in brackets, e.g. [::1]:10000"));
                }
                (h, Some(p))
            }
            None => (t, None),
        };
        if h.is_empty() {
            return Err(bad("empty host"));
        }
        let parsed = Host::parse(h).map_err(|e| bad(&e.to_string()))?;
        let key = HostKey::from_url_host(match &parsed {
            Host::Domain(d) => Host::Domain(d.as_str()),
            Host::Ipv4(a) => Host::Ipv4(*a),
            Host::Ipv6(a) => Host::Ipv6(*a),
        });
        if let HostKey::Domain(d) = &key
            && (d.is_empty() || !d.split('.').all(is_dns_label_loose))
        {
            return Err(bad("not a valid host name"));
        }
        (key, p)
    };
    let port = match port_part {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(bad("the port must be a number from 1 to 65535")),
        },
    };
    Ok(Entry { host: host_part, port })
}

/// A DNS label as found in real host names: `[a-z0-9_-]{1,63}` (underscore tolerated).
fn is_dns_label_loose(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A storage account name: `[a-z0-9]{3,24}`.
fn is_account(l: &str) -> bool {
    (3..=24).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A strict DNS label: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
fn is_label(l: &str) -> bool {
    let b = l.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// `<acct>.(blob|dfs).<suffix>`, or on the public cloud `<acct>.z<NN>.blob.storage.azure.net`.
fn is_storage_host(cloud: Cloud, host: &str) -> bool {
    if let Some(rest) = host.strip_suffix(cloud.storage_suffix()).and_then(|r| r.strip_suffix('.'))
        && let Some((acct, svc)) = rest.split_once('.')
        && is_account(acct)
        && matches!(svc, "blob" | "dfs")
    {
        return true;
    }
    if cloud == Cloud::AzureCloud
        && let Some(rest) = host.strip_suffix(".blob.storage.azure.net")
        && let Some((acct, zone)) = rest.split_once('.')
        && is_account(acct)
    {
        return matches!(zone.as_bytes(), [b'z', a, b] if a.is_ascii_digit() && b.is_ascii_digit());
    }
    false
}

/// Amazon S3 virtual-hosted or path-style hosts: `[<bucket>.]s3.amazonaws.com`,
/// `[<bucket>.]s3[-.]<region>.amazonaws.com`, `[<bucket>.]s3.dualstack.<region>.amazonaws.com`, and the
/// same under `amazonaws.com.cn`. Bucket names may hold dots; each label must be a DNS label.
fn is_s3_host(host: &str) -> bool {
    let Some(rest) = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn")) else {
        return false;
    };
    let labels: Vec<&str> = rest.split('.').collect();
    let Some(s3) = labels.iter().rposition(|l| *l == "s3" || l.strip_prefix("s3-").is_some_and(is_label)) else {
        return false;
    };
    let after = &labels[s3 + 1..];
    let region_ok = match after {
        [] => true,
        [region] => is_label(region),
        ["dualstack", region] => is_label(region),
        _ => false,
    };
    region_ok && labels[..s3].iter().all(|l| is_label(l))
}

/// Google Cloud Storage: `storage.googleapis.com` or `<bucket>.storage.googleapis.com`.
fn is_gcs_host(host: &str) -> bool {
    host == "storage.googleapis.com"
        || host.strip_suffix(".storage.googleapis.com").is_some_and(|b| !b.is_empty() && b.split('.').all(is_label))
}

/// `<acct>.services.ai.azure.com` or `<acct>.cognitiveservices.azure.com`.
fn is_foundry_host(host: &str) -> bool {
    ["services.ai.azure.com", "cognitiveservices.azure.com"].iter().any(|s| {
        host.strip_suffix(s).and_then(|r| r.strip_suffix('.')).is_some_and(|acct| is_label(acct) && acct.len() >= 2)
    })
}

/// `<region>.<suffix>` or `<guid>.workspace.<region>[.cert].<suffix>`.
fn is_ml_api_host(suffix: &str, host: &str) -> bool {
    let Some(rest) = host.strip_suffix(suffix).and_then(|r| r.strip_suffix('.')) else {
        return false;
    };
    let labels: Vec<&str> = rest.split('.').collect();
    let is_guidish =
        |l: &str| l.len() == 36 && l.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-');
    match labels.as_slice() {
        [region] => is_label(region),
        [guid, "workspace", region] | [guid, "workspace", region, "cert"] => is_guidish(guid) && is_label(region),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn public(extra: &[&str]) -> AllowList {
        AllowList::new(Cloud::AzureCloud, &extra.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn cloud_names() {
        assert_eq!("azurecloud".parse::<Cloud>(), Ok(Cloud::AzureCloud));
        assert_eq!(" AZUREUSGOVERNMENT ".parse::<Cloud>(), Ok(Cloud::AzureUSGovernment));
        assert_eq!("AzureChinaCloud".parse::<Cloud>(), Ok(Cloud::AzureChinaCloud));
        let e = "mars".parse::<Cloud>().unwrap_err();
        assert!(e.contains("AzureCloud, AzureUSGovernment, AzureChinaCloud"), "{e}");
        assert_eq!(Cloud::AzureUSGovernment.storage_suffix(), "core.usgovcloudapi.net");
        assert_eq!(Cloud::AzureChinaCloud.arm_host(), "management.chinacloudapi.cn");
        assert_eq!(Cloud::AzureCloud.to_string(), "AzureCloud");
    }

    #[test]
    fn public_storage_hosts() {
        let a = public(&[]);
        for ok in [
            "https://x01.blob.core.windows.net/c/b",
            "https://wsstore01.dfs.core.windows.net/c",
            "https://WSSTORE01.BLOB.CORE.WINDOWS.NET/c",
            "https://wsstore01.blob.core.windows.net./c",
            "https://wsstore01.blob.core.windows.net:443/c",
            "https://wsstore01.z12.blob.storage.azure.net/c",
            "https://abcdefghijklmnopqrstuvwx.blob.core.windows.net/c",
        ] {
            assert_eq!(a.check_storage(&u(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "https://xblob.core.windows.net/c",
            "https://blob.core.windows.net/c",
            "https://blob.core.windows.net.evil.invalid/c",
            "https://x01.blob.core.windows.net.evil.invalid/c",
            "https://ab.blob.core.windows.net/c",
            "https://abcdefghijklmnopqrstuvwxy.blob.core.windows.net/c",
            "https://a-b1.blob.core.windows.net/c",
            "https://x01.queue.core.windows.net/c",
            "https://a.x01.blob.core.windows.net/c",
            "https://x01.blob.core.usgovcloudapi.net/c",
            "https://x01.z1.blob.storage.azure.net/c",
            "https://x01.zab.blob.storage.azure.net/c",
            "https://user:pw@x01.blob.core.windows.net/c",
            "https://user@x01.blob.core.windows.net/c",
            "http://x01.blob.core.windows.net/c",
            "https://x01.blob.core.windows.net:8443/c",
            "https://20.60.1.1/c",
            "https://[2001:db8::1]/c",
            "ftp://x01.blob.core.windows.net/c",
        ] {
            assert!(a.check_storage(&u(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn sovereign_storage_hosts() {
        let gov = AllowList::new(Cloud::AzureUSGovernment, &[]).unwrap();
        assert!(gov.check_storage(&u("https://acct1.blob.core.usgovcloudapi.net/c")).is_ok());
        assert!(gov.check_storage(&u("https://acct1.blob.core.windows.net/c")).is_err());
        assert!(gov.check_storage(&u("https://acct1.z01.blob.storage.azure.net/c")).is_err());
        let cn = AllowList::new(Cloud::AzureChinaCloud, &[]).unwrap();
        assert!(cn.check_storage(&u("https://acct1.blob.core.chinacloudapi.cn/c")).is_ok());
        assert!(cn.check_storage(&u("https://acct1.blob.core.usgovcloudapi.net/c")).is_err());
    }

    #[test]
    fn s3_endpoints_and_aws_hosts() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(check_s3_endpoint(&u("http://127.0.0.1:9000"), false).is_ok());
        assert!(check_s3_endpoint(&u("http://localhost:9000"), false).is_ok());
        assert!(check_s3_endpoint(&u("https://minio.example.invalid"), false).is_ok());
        let e = check_s3_endpoint(&u("http://minio.example.invalid:9000"), false).unwrap_err();
        assert!(e.contains("--allow-http"), "{e}");
        assert!(check_s3_endpoint(&u("http://minio.example.invalid:9000"), true).is_ok());
        assert!(check_s3_endpoint(&u("http://user:pw@127.0.0.1:9000"), true).is_err());
        assert!(check_s3_endpoint(&u("ftp://127.0.0.1"), true).is_err());
        assert!(check_s3_endpoint(&u("http://127.0.0.1:9000/?x=1"), true).is_err());
        assert!(check_aws_s3(&u("https://bkt.s3.us-east-1.amazonaws.com/k")).is_ok());
        assert!(check_aws_s3(&u("https://s3.eu-west-1.amazonaws.com/bkt/k")).is_ok());
        for bad in [
            "http://bkt.s3.us-east-1.amazonaws.com/",
            "https://bkt.s3.us-east-1.amazonaws.com:444/",
            "https://evil.invalid/",
            "https://s3.us-east-1.amazonaws.com.evil.invalid/",
            "https://a.b.s3.us-east-1.amazonaws.com/",
            "https://127.0.0.2/",
        ] {
            assert!(check_aws_s3(&u(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn listed_hosts_and_loopback_http() {
        let a =
            public(&["127.0.0.1:10000", "localhost:8080", "[::1]:9000", "storage.example.invalid", "192.0.2.5:443"]);
        assert!(a.check_storage(&u("http://127.0.0.1:10000/devstoreaccount1/c")).is_ok());
        assert!(a.is_listed(&u("http://127.0.0.1:10000/x")));
        assert!(a.check_storage(&u("http://localhost:8080/a/c")).is_ok());
        assert!(a.check_storage(&u("http://[::1]:9000/a/c")).is_ok());
        assert!(a.check_storage(&u("https://Storage.Example.INVALID./c")).is_ok());
        assert!(a.check_storage(&u("https://192.0.2.5/c")).is_ok());
        // Not listed, wrong port, or http to a non-loopback host.
        let e = a.check_storage(&u("http://127.0.0.2:10000/a/c")).unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        assert!(a.check_storage(&u("http://127.0.0.1:10001/a/c")).is_err());
        assert!(a.check_storage(&u("http://127.0.0.1/a/c")).is_err());
        assert!(a.check_storage(&u("https://storage.example.invalid:8443/c")).is_err());
        assert!(a.check_storage(&u("http://storage.example.invalid/c")).is_err());
        assert!(!a.is_listed(&u("http://storage.example.invalid/c")));
        assert!(a.check_storage(&u("http://192.0.2.5:443/c")).is_err());
        assert!(a.check_storage(&u("https://user@127.0.0.1:10000/c")).is_err());
        // A listed host is allowed for every kind of check.
        assert!(a.check_foundry(&u("https://storage.example.invalid/api/projects/p")).is_ok());
    }

    #[test]
    fn http_to_public_host_is_refused_even_when_listed() {
        let a = public(&["x01.blob.core.windows.net", "example.invalid:80"]);
        assert!(a.check_storage(&u("http://x01.blob.core.windows.net/c")).is_err());
        assert!(a.check_storage(&u("http://example.invalid/c")).is_err());
    }

    #[test]
    fn messages_name_the_host_and_hide_secrets() {
        let a = public(&[]);
        let e = a.check_storage(&u("https://evil.invalid/c/b?sv=1&sig=SECRETSIG")).unwrap_err();
        assert!(!e.contains("SECRETSIG"), "{e}");
        assert!(e.contains("host 'evil.invalid' is not an allowed storage host for AzureCloud"), "{e}");
        assert!(e.contains("--allow-host / JOBDL_ALLOW_HOSTS"), "{e}");
        let e = a.check_storage(&u("https://u:pw@x01.blob.core.windows.net/c")).unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn foundry_hosts() {
        let a = public(&[]);
        assert!(a.check_foundry(&u("https://contoso-ai.services.ai.azure.com/api/projects/p")).is_ok());
        assert!(a.check_foundry(&u("https://contoso.cognitiveservices.azure.com/api/projects/p")).is_ok());
        assert!(a.check_foundry(&u("https://services.ai.azure.com/api")).is_err());
        assert!(a.check_foundry(&u("https://a.b.services.ai.azure.com/api")).is_err());
        assert!(a.check_foundry(&u("https://xservices.ai.azure.com/api")).is_err());
        assert!(a.check_foundry(&u("https://-x.services.ai.azure.com/api")).is_err());
        assert!(a.check_foundry(&u("http://contoso.services.ai.azure.com/api")).is_err());
        assert!(a.check_foundry(&u("https://contoso.services.ai.azure.com.evil.invalid/api")).is_err());
        let gov = AllowList::new(Cloud::AzureUSGovernment, &[]).unwrap();
        assert!(gov.check_foundry(&u("https://contoso.services.ai.azure.com/api")).is_err());
    }

    #[test]
    fn ml_api_and_arm_hosts() {
        let a = public(&[]);
        assert!(a.check_ml_api(&u("https://eastus2.api.azureml.ms/discovery")).is_ok());
        assert!(
            a.check_ml_api(&u("https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.workspace.eastus2.api.azureml.ms/x"))
                .is_ok()
        );
        assert!(
            a.check_ml_api(&u("https://0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.workspace.eastus2.cert.api.azureml.ms/x"))
                .is_ok()
        );
        assert!(a.check_ml_api(&u("https://api.azureml.ms/x")).is_err());
        assert!(a.check_ml_api(&u("https://evil.invalid/eastus2.api.azureml.ms")).is_err());
        assert!(a.check_ml_api(&u("https://a.b.api.azureml.ms/x")).is_err());
        assert!(a.check_ml_api(&u("https://eastus2api.azureml.ms/x")).is_err());
        let gov = AllowList::new(Cloud::AzureUSGovernment, &[]).unwrap();
        assert!(gov.check_ml_api(&u("https://usgovvirginia.api.ml.azure.us/x")).is_ok());
        assert!(a.check_arm(&u("https://management.azure.com/subscriptions")).is_ok());
        assert!(a.check_arm(&u("https://management.azure.com.evil.invalid/")).is_err());
        assert!(gov.check_arm(&u("https://management.usgovcloudapi.net/")).is_ok());
    }

    #[test]
    fn entries_are_validated() {
        for ok in ["h.invalid", "h.invalid:8443", "127.0.0.1:10000", "[::1]", "[::1]:10000", "LOCALHOST:1", " a.b ", ""]
        {
            assert!(AllowList::new(Cloud::AzureCloud, &[ok.to_string()]).is_ok(), "{ok}");
        }
        for bad in [
            "http://h.invalid",
            "h.invalid:0",
            "h.invalid:65536",
            "h.invalid:+80",
            "h.invalid:x",
            "::1",
            "[::1",
            "[::1]x",
            "[nope]:1",
            ":80",
            "h.invalid/path",
            "user@h.invalid",
            "*.example.invalid",
            "a..b",
        ] {
            let r = AllowList::new(Cloud::AzureCloud, &[bad.to_string()]);
            assert!(r.is_err(), "{bad} accepted");
            assert!(r.unwrap_err().contains(bad.trim()), "{bad}");
        }
    }

    #[test]
    fn presigned_hosts() {
        let a = public(&["127.0.0.1:9000"]);
        for ok in [
            "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=x",
            "https://my.bucket.s3.us-west-2.amazonaws.com/k",
            "https://s3.eu-central-1.amazonaws.com/bucket/k",
            "https://bucket.s3-us-west-2.amazonaws.com/k",
            "https://bucket.s3.dualstack.us-east-1.amazonaws.com/k",
            "https://bucket.s3.cn-north-1.amazonaws.com.cn/k",
            "https://storage.googleapis.com/bucket/o",
            "https://bucket.storage.googleapis.com/o",
            "https://acct1.blob.core.windows.net/c/b",
            "https://acct1.dfs.core.usgovcloudapi.net/c/b",
            "http://127.0.0.1:9000/x",
        ] {
            assert_eq!(a.check_presigned(&u(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "http://bucket.s3.amazonaws.com/k",
            "https://bucket.s3.amazonaws.com.evil.invalid/k",
            "https://s3.amazonaws.com.invalid/k",
            "https://evil-s3.amazonaws.com/k",
            "https://ec2.us-east-1.amazonaws.com/k",
            "https://bucket.s3.a.b.c.amazonaws.com/k",
            "https://storage.googleapis.com.invalid/o",
            "https://xstorage.googleapis.com/o",
            "https://bucket.s3.amazonaws.com:8443/k",
            "https://127.0.0.2/x",
            "http://127.0.0.2:9000/x",
            "https://files.invalid/x",
        ] {
            assert!(a.check_presigned(&u(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_rules_for_entries() {
        let a = public(&["h.invalid"]);
        assert!(a.is_listed(&u("https://h.invalid/x")));
        assert!(a.is_listed(&u("https://h.invalid:443/x")));
        assert!(!a.is_listed(&u("https://h.invalid:444/x")));
        let b = public(&["h.invalid:443"]);
        assert!(b.is_listed(&u("https://h.invalid/x")));
    }
}

//! Blob URL forms (docs/azure-api.md §4.1, §4.2, §3.9): splitting a blob/container URL into service,
//! account, container, path and SAS, and building blob and List Blobs URLs back.
//! Pure string logic: knows no HTTP client, no allow-list and nothing about files on disk.
//!
//! A SAS query is carried **verbatim**: it is never decoded and re-encoded, so `sig` reaches the
//! service byte for byte.
use crate::hosts::Cloud;
use crate::redact::url_for_display;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use url::{Host, Url};

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (space → `%20`).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encode one path segment or query value (RFC 3986; `/` is encoded too).
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// A container and how to reach it.
#[derive(Debug, Clone)]
pub struct ContainerRef {
    /// `scheme://host[:port]/`, plus `account/` for path-style (emulator) URLs.
    pub service: Url,
    /// Storage account name.
    pub account: String,
    /// Container name (decoded).
    pub container: String,
    /// SAS query, verbatim (never decoded/re-encoded); `None` for bearer or public access.
    pub sas: Option<String>,
}

impl ContainerRef {
    /// The container for `account` on `cloud` (§3.9): `https://<account>.blob.<suffix>/`, or path-style
    /// `<endpoint>/<account>/` when a storage endpoint override (`JOBDL_STORAGE_ENDPOINT`) is given.
    /// The account name must match `[a-z0-9]{3,24}`.
    pub fn for_account(
        cloud: Cloud,
        endpoint: Option<&Url>,
        account: &str,
        container: &str,
        sas: Option<String>,
    ) -> Result<Self, String> {
        if !(3..=24).contains(&account.len()) || !account.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(format!(
                "invalid storage account name '{account}' (expected 3-24 lower-case letters and digits)"
            ));
        }
        if container.is_empty() {
            return Err(format!("storage account '{account}': empty container name"));
        }
        let service = match endpoint {
            Some(e) => {
                let mut s = e.clone();
                s.set_query(None);
                s.set_fragment(None);
                let base = e.path().trim_end_matches('/').to_string();
                s.set_path(&format!("{base}/{account}/"));
                s
            }
            None => Url::parse(&format!("https://{account}.blob.{}/", cloud.storage_suffix()))
                .map_err(|e| format!("cannot build the blob URL for account '{account}': {e}"))?,
        };
        if let Some(q) = &sas {
            crate::redact::register_query_secrets(q);
        }
        Ok(ContainerRef { service, account: account.to_string(), container: container.to_string(), sas })
    }

    /// URL of blob `name`: each segment percent-encoded (spaces, `#`, `?`, `%`, `+`, non-ASCII), `/`
    /// kept as the separator, SAS appended verbatim.
    ///
    /// Names with `.` or `..` segments cannot be addressed faithfully (URL normalisation removes
    /// them, also in the `%2e` form); callers reject such names through `crate::safepath` first.
    pub fn blob_url(&self, name: &str) -> Url {
        let encoded: Vec<String> = name.split('/').map(encode_component).collect();
        let mut u = self.container_url();
        let path = format!("{}/{}", u.path(), encoded.join("/"));
        u.set_path(&path);
        u.set_query(self.sas.as_deref());
        u
    }

    /// The base of [`Self::blob_source`]: the container URL with the SAS, one shared copy for
    /// every blob of a listing.
    pub fn blob_base(&self) -> std::sync::Arc<Url> {
        let mut u = self.container_url();
        u.set_query(self.sas.as_deref());
        std::sync::Arc::new(u)
    }

    /// Blob `name` under `base` (from [`Self::blob_base`]), stored as the base and the encoded
    /// name: the same URL as [`Self::blob_url`] once built.
    pub fn blob_source(base: &std::sync::Arc<Url>, name: &str) -> crate::transfer::SourceUrl {
        let encoded: Vec<String> = name.split('/').map(encode_component).collect();
        crate::transfer::SourceUrl::joined(base.clone(), format!("/{}", encoded.join("/")))
    }

    /// List Blobs URL: `restype=container&comp=list&prefix=..&include=metadata&maxresults=5000[&marker=..]`
    /// then the SAS verbatim. Values are percent-encoded per RFC 3986 (space → `%20`); an empty
    /// prefix is omitted.
    pub fn list_url(&self, prefix: &str, marker: Option<&str>) -> Url {
        let mut q = String::from("restype=container&comp=list");
        if !prefix.is_empty() {
            q.push_str("&prefix=");
            q.push_str(&encode_component(prefix));
        }
        q.push_str("&include=metadata&maxresults=5000");
        if let Some(m) = marker {
            q.push_str("&marker=");
            q.push_str(&encode_component(m));
        }
        if let Some(sas) = self.sas.as_deref().filter(|s| !s.is_empty()) {
            q.push('&');
            q.push_str(sas);
        }
        let mut u = self.container_url();
        u.set_query(Some(&q));
        u
    }

    /// The container URL without any query (`<service><container>`).
    pub fn container_url(&self) -> Url {
        let mut u = self.service.clone();
        u.set_query(None);
        u.set_fragment(None);
        let base = self.service.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{base}/{}", encode_component(&self.container)));
        u
    }

    /// The container URL for messages (never carries the SAS).
    pub fn display(&self) -> String {
        url_for_display(&self.container_url())
    }
}

/// A blob or container URL split per §4.2.
#[derive(Debug, Clone)]
pub struct ParsedBlobUrl {
    /// The container (with the URL's SAS, verbatim).
    pub container: ContainerRef,
    /// Decoded path after the container, may be empty; a trailing `/` is kept.
    pub path: String,
    /// SAS `sr` (signed resource: `b`, `c`, `d`...), if present.
    pub sr: Option<String>,
    /// SAS `sp` (permissions), if present.
    pub sp: Option<String>,
}

/// Split a blob or container URL (§4.1 style rule): path-style (`/<account>/<container>/...`) when
/// the host is an IP literal, a single label such as `localhost`, or `host.docker.internal`;
/// virtual-host (account = first DNS label) otherwise. Userinfo and fragment are dropped.
pub fn parse_blob_url(url: &Url) -> Result<ParsedBlobUrl, String> {
    crate::redact::register_query_secrets(url.query().unwrap_or_default());
    let shown = url_for_display(url);
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("{shown}: not an http(s) URL"));
    }
    let Some(host) = url.host() else {
        return Err(format!("{shown}: the URL has no host"));
    };
    let (path_style, first_label) = match host {
        Host::Ipv4(_) | Host::Ipv6(_) => (true, String::new()),
        Host::Domain(d) => {
            let d = d.strip_suffix('.').unwrap_or(d);
            let single = !d.contains('.');
            let first = d.split('.').next().unwrap_or_default().to_ascii_lowercase();
            (single || d.eq_ignore_ascii_case("host.docker.internal"), first)
        }
    };
    let raw = url.path().strip_prefix('/').unwrap_or(url.path());
    let (account_raw, rest) = if path_style { raw.split_once('/').unwrap_or((raw, "")) } else { ("", raw) };
    let (container_raw, blob_raw) = rest.split_once('/').unwrap_or((rest, ""));
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| format!("{shown}: the path is not valid UTF-8 after percent-decoding"))
    };
    let account = if path_style { decode(account_raw)? } else { first_label };
    if account.is_empty() {
        return Err(format!("{shown}: URL must name a storage account and a container"));
    }
    let container = decode(container_raw)?;
    if container.is_empty() {
        return Err(format!("URL must name a container: {shown}"));
    }
    let path = decode(blob_raw)?;

    let mut service = url.clone();
    let _ = service.set_username("");
    let _ = service.set_password(None);
    service.set_fragment(None);
    service.set_query(None);
    service.set_path(&if path_style { format!("/{account_raw}/") } else { "/".to_string() });

    let sas = url.query().filter(|q| !q.is_empty()).map(str::to_string);
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    Ok(ParsedBlobUrl {
        sr: param("sr"),
        sp: param("sp"),
        container: ContainerRef { service, account, container, sas },
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    const SAS: &str = "sv=2025-11-05&sr=c&sp=rl&se=2026-01-01T00%3A00%3A00Z&sig=ab%2Bcd%2Fef%3D";

    #[test]
    fn virtual_host_blob_url() {
        let p = parse_blob_url(&u(&format!(
            "https://wsstore01.blob.core.windows.net/azureml/ExperimentRun/dcid.job-123/user_logs/std_log.txt?{SAS}"
        )))
        .unwrap();
        assert_eq!(p.container.account, "wsstore01");
        assert_eq!(p.container.container, "azureml");
        assert_eq!(p.path, "ExperimentRun/dcid.job-123/user_logs/std_log.txt");
        assert_eq!(p.container.service.as_str(), "https://wsstore01.blob.core.windows.net/");
        assert_eq!(p.container.sas.as_deref(), Some(SAS));
        assert_eq!(p.sr.as_deref(), Some("c"));
        assert_eq!(p.sp.as_deref(), Some("rl"));
        // Round trip, with the SAS byte for byte.
        let back = p.container.blob_url(&p.path);
        assert_eq!(
            back.as_str(),
            format!(
                "https://wsstore01.blob.core.windows.net/azureml/ExperimentRun/dcid.job-123/user_logs/std_log.txt?{SAS}"
            )
        );
        assert!(back.as_str().contains("sig=ab%2Bcd%2Fef%3D"));
    }

    #[test]
    fn path_style_urls() {
        let p =
            parse_blob_url(&u("http://127.0.0.1:10000/devstoreaccount1/azureml/a/b.txt?sr=b&sp=r&sig=x%2By")).unwrap();
        assert_eq!(p.container.account, "devstoreaccount1");
        assert_eq!(p.container.container, "azureml");
        assert_eq!(p.path, "a/b.txt");
        assert_eq!(p.container.service.as_str(), "http://127.0.0.1:10000/devstoreaccount1/");
        assert_eq!(p.sr.as_deref(), Some("b"));
        assert_eq!(
            p.container.blob_url("a/b.txt").as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/azureml/a/b.txt?sr=b&sp=r&sig=x%2By"
        );
        let l = parse_blob_url(&u("http://localhost:10000/acct/cont/")).unwrap();
        assert_eq!(
            (l.container.account.as_str(), l.container.container.as_str(), l.path.as_str()),
            ("acct", "cont", "")
        );
        assert!(l.container.sas.is_none());
        let v6 = parse_blob_url(&u("http://[::1]:10000/acct/cont/dir/")).unwrap();
        assert_eq!(v6.path, "dir/");
        assert_eq!(v6.container.service.as_str(), "http://[::1]:10000/acct/");
        let d = parse_blob_url(&u("http://host.docker.internal:10000/acct/cont/x")).unwrap();
        assert_eq!(d.container.account, "acct");
    }

    #[test]
    fn containers_are_required() {
        for s in [
            "https://acct.blob.core.windows.net/",
            "https://acct.blob.core.windows.net",
            "https://acct.blob.core.windows.net/?sv=1&sig=SECRET",
            "http://127.0.0.1:10000/acct",
            "http://127.0.0.1:10000/acct/",
        ] {
            let e = parse_blob_url(&u(s)).unwrap_err();
            assert!(e.contains("URL must name a container"), "{s}: {e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
        assert!(parse_blob_url(&u("http://127.0.0.1:10000/")).is_err());
        assert!(parse_blob_url(&u("ftp://acct.blob.core.windows.net/c")).is_err());
    }

    #[test]
    fn encoded_names_round_trip() {
        let c = parse_blob_url(&u("https://acct.blob.core.windows.net/cont?sv=1&sig=a%3D")).unwrap().container;
        for name in ["dir/weird name #1 ü.txt", "a?b/c%d+e", "x&y=z", "~tilde-._", "a//b", "日本/語"] {
            let url = c.blob_url(name);
            assert_eq!(url.query(), Some("sv=1&sig=a%3D"), "{name}");
            let p = parse_blob_url(&url).unwrap();
            assert_eq!(p.path, name, "{url}");
            assert_eq!(p.container.container, "cont");
        }
        assert_eq!(c.blob_url("dir/weird name #1 ü.txt").path(), "/cont/dir/weird%20name%20%231%20%C3%BC.txt");
        assert_eq!(c.blob_url("a+b%c?d").path(), "/cont/a%2Bb%25c%3Fd");
        // A %2F in the URL path decodes to '/', as the service does.
        assert_eq!(parse_blob_url(&u("https://acct.blob.core.windows.net/cont/a%2Fb")).unwrap().path, "a/b");
        assert!(parse_blob_url(&u("https://acct.blob.core.windows.net/cont/%FF")).is_err());
    }

    #[test]
    fn list_urls() {
        let c = ContainerRef {
            service: u("https://acct.blob.core.windows.net/"),
            account: "acct".into(),
            container: "azureml".into(),
            sas: Some(SAS.into()),
        };
        assert_eq!(
            c.list_url("ExperimentRun/dcid.job 1/", None).as_str(),
            format!(
                "https://acct.blob.core.windows.net/azureml?restype=container&comp=list&prefix=ExperimentRun%2Fdcid.job%201%2F&include=metadata&maxresults=5000&{SAS}"
            )
        );
        let l = c.list_url("", Some("2!96!MDAw+/="));
        assert_eq!(
            l.query(),
            Some(
                format!(
                    "restype=container&comp=list&include=metadata&maxresults=5000&marker=2%2196%21MDAw%2B%2F%3D&{SAS}"
                )
                .as_str()
            )
        );
        let marker: Vec<_> = l.query_pairs().filter(|(k, _)| k == "marker").collect();
        assert_eq!(marker[0].1, "2!96!MDAw+/=");
        let base = c.blob_base();
        for name in ["dir/a b#?%+é.txt", "x", "a/b/c"] {
            assert_eq!(ContainerRef::blob_source(&base, name).url(), c.blob_url(name), "{name}");
        }
        let no_sas = ContainerRef { sas: None, ..c.clone() };
        assert_eq!(
            no_sas.list_url("p", None).query(),
            Some("restype=container&comp=list&prefix=p&include=metadata&maxresults=5000")
        );
        assert_eq!(c.display(), "https://acct.blob.core.windows.net/azureml");
    }

    #[test]
    fn account_containers() {
        let c = ContainerRef::for_account(Cloud::AzureUSGovernment, None, "wsstore01", "azureml", None).unwrap();
        assert_eq!(c.blob_url("a b").as_str(), "https://wsstore01.blob.core.usgovcloudapi.net/azureml/a%20b");
        let ep = u("http://127.0.0.1:10000");
        let c = ContainerRef::for_account(
            Cloud::AzureCloud,
            Some(&ep),
            "devstoreaccount1",
            "azureml",
            Some("sig=x".into()),
        )
        .unwrap();
        assert_eq!(c.blob_url("f").as_str(), "http://127.0.0.1:10000/devstoreaccount1/azureml/f?sig=x");
        let parsed = parse_blob_url(&c.blob_url("d/f")).unwrap();
        assert_eq!((parsed.container.account.as_str(), parsed.path.as_str()), ("devstoreaccount1", "d/f"));
        for bad in ["ab", "Upper1", "with-dash", "a".repeat(25).as_str()] {
            assert!(ContainerRef::for_account(Cloud::AzureCloud, None, bad, "c", None).is_err(), "{bad}");
        }
    }
}

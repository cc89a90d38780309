//! Path A: an Azure AI Foundry project endpoint. Job GET, run history, the paged artifact
//! listing with per-root `prefix/contentinfo` fan-out and gap fill, and named outputs through
//! the models/datasets credentials APIs. The bearer token goes only to the project host.
use super::{Job, Listing, OutputSpec, RemoteFile};
use crate::auth::{FOUNDRY_SCOPE, TokenSource};
use crate::blob::{BlobClient, parse_blob_url};
use crate::error::Error;
use crate::hosts::AllowList;
use crate::http::{CallError, JsonRequest, MetaClient};
use crate::transfer::{Refresher, UrlRefresher};
use futures_util::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use url::Url;

/// `api-version` of jobs and history calls (azure-ai-projects' jobs operations), and of the
/// fallback (azd) model credentials shape.
pub const API_VERSION: &str = "2026-01-15-preview";
/// `api-version` of datasets credentials calls.
pub const DATASET_API_VERSION: &str = "v1";
/// `api-version` of model version and model credentials calls (azure-ai-projects' shared `v1`
/// config; the REST reference's documented body).
pub const MODELS_API_VERSION: &str = "v1";
/// `Foundry-Features` value sent on every jobs/history request (azure-ai-projects `_patch_jobs.py`).
pub const JOBS_FEATURE: &str = "Jobs=V1Preview";
/// `Foundry-Features` value the REST reference requires on model version GET and credentials POST.
pub const MODELS_FEATURE: &str = "Models=V1Preview";

/// Which model-credentials request shape the service accepted in this run.
const SHAPE_UNKNOWN: u8 = 0;
/// The documented `{"blobUri": …}` at [`MODELS_API_VERSION`].
const SHAPE_DOCUMENTED: u8 = 1;
/// azd's `{"BlobUri": …, "GenerateBlobLevelReadSas": true}` at [`API_VERSION`].
const SHAPE_AZD: u8 = 2;
/// Most pages followed in one listing.
pub const MAX_PAGES: usize = 10_000;
/// Roots whose content info is fetched at once.
const FANOUT: usize = 8;
/// Output types Path A can download.
pub const SUPPORTED_TYPES: &[&str] = &["safetensors_model", "uri_folder", "uri_file"];

/// Characters escaped in a path segment or query value (RFC 3986 unreserved stay).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// Validate a project endpoint (§2.1) and return its base URL (no trailing slash).
pub fn parse_endpoint(raw: &str, allow: &AllowList) -> Result<Url, Error> {
    let bad = |why: &str| Error::usage(format!("invalid project endpoint '{}': {why}", crate::redact::redact(raw)));
    let url = Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it must not contain user info"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not contain a query or fragment"));
    }
    let path = url.path().strip_suffix('/').unwrap_or(url.path());
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.len() != 3 || segs[0] != "api" || segs[1] != "projects" || segs[2].is_empty() {
        return Err(bad("expected https://<account>.services.ai.azure.com/api/projects/<project>"));
    }
    allow.check_foundry(&url).map_err(|e| Error::usage(format!("project endpoint not allowed: {e}")))?;
    let mut base = url.clone();
    base.set_path(path);
    Ok(base)
}

/// A Foundry project (cheap to clone: clients and settings are shared).
#[derive(Clone)]
pub struct Foundry {
    meta: MetaClient,
    blob: BlobClient,
    base: Url,
    tokens: TokenSource,
    allow: AllowList,
    /// The model-credentials shape that worked (shared by clones: remembered for the run).
    model_shape: Arc<std::sync::atomic::AtomicU8>,
}

/// Case-insensitive object lookup (the services disagree on key casing).
pub(crate) fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// A non-empty string field, looked up case-insensitively.
pub(crate) fn str_ci<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get_ci(v, key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Normalise a service path: `\` → `/`, collapse `//`, strip a leading `/` (§2.6 step 4).
fn normalise(p: &str) -> String {
    let s = p.replace('\\', "/");
    let parts: Vec<&str> = s.split('/').filter(|c| !c.is_empty()).collect();
    let mut out = parts.join("/");
    if s.ends_with('/') && !out.is_empty() {
        out.push('/');
    }
    out
}

impl Foundry {
    /// A client for the project at `base` (validated by [`parse_endpoint`]).
    pub fn new(meta: MetaClient, blob: BlobClient, base: Url, tokens: TokenSource, allow: AllowList) -> Self {
        Foundry { meta, blob, base, tokens, allow, model_shape: Arc::default() }
    }

    fn url(&self, path: &str, api_version: &str, query: &[(&str, &str)]) -> Url {
        let mut u = self.base.clone();
        u.set_path(&format!("{}/{}", self.base.path(), path));
        let mut q = format!("api-version={}", enc(api_version));
        for (k, v) in query {
            q.push_str(&format!("&{k}={}", enc(v)));
        }
        u.set_query(Some(&q));
        u
    }

    async fn call(&self, method: reqwest::Method, url: Url, body: Option<Value>) -> Result<Value, CallError> {
        // Only URLs on the project host ever receive the token.
        crate::http::check_origin(&url, &[&self.base])?;
        let token = self.tokens.token(FOUNDRY_SCOPE).await.map_err(super::token_error)?;
        let features = self.features_for(&url);
        self.meta.json(&JsonRequest { method, url, bearer: Some(token), body, features }).await
    }

    /// The `Foundry-Features` opt-in a project route needs: jobs (and their history) and models.
    fn features_for(&self, url: &Url) -> Option<&'static str> {
        let rest = url.path().strip_prefix(self.base.path())?.trim_start_matches('/');
        match rest.split('/').next() {
            Some("jobs") => Some(JOBS_FEATURE),
            Some("models") => Some(MODELS_FEATURE),
            _ => None,
        }
    }

    /// POST model credentials: the documented shape first, azd's on a 400 (once), then the
    /// shape that worked for the rest of the run.
    async fn model_credentials(&self, asset: &str, version: &str, blob_uri: &str) -> Result<Value, CallError> {
        use std::sync::atomic::Ordering;
        let path = format!("models/{}/versions/{}/credentials", enc(asset), enc(version));
        let attempt = |shape: u8| {
            let (api, body) = if shape == SHAPE_AZD {
                (API_VERSION, serde_json::json!({"BlobUri": blob_uri, "GenerateBlobLevelReadSas": true}))
            } else {
                (MODELS_API_VERSION, serde_json::json!({"blobUri": blob_uri}))
            };
            self.call(reqwest::Method::POST, self.url(&path, api, &[]), Some(body))
        };
        let known = self.model_shape.load(Ordering::Relaxed);
        if known != SHAPE_UNKNOWN {
            return attempt(known).await;
        }
        match attempt(SHAPE_DOCUMENTED).await {
            Ok(v) => {
                self.model_shape.store(SHAPE_DOCUMENTED, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) if e.status() == Some(400) => {
                crate::log::log(
                    1,
                    "model credentials: the documented {\"blobUri\"} body got HTTP 400; trying azd's BlobUri shape",
                );
                let v = attempt(SHAPE_AZD).await?;
                self.model_shape.store(SHAPE_AZD, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => Err(e),
        }
    }

    /// A failed call that ends the run (a refused `JOBDL_ACCESS_TOKEN` is named).
    fn fatal(&self, e: CallError, what: &str) -> Error {
        super::fatal_for_tokens(e, what, super::PROJECT_HINT, &self.tokens)
    }

    async fn get(&self, url: Url) -> Result<Value, CallError> {
        self.call(reqwest::Method::GET, url, None).await
    }

    /// Every logged value of `metric` of the job's run, from the Azure ML tracking service the
    /// job names (`download --best`), with an ARM-audience token (the token the tracking service
    /// takes; the project token's audience is the project host).
    pub async fn metric_history(&self, job: &Job, metric: &str) -> Result<Vec<crate::best::MetricPoint>, Error> {
        let scope = crate::auth::arm_scope(self.allow.cloud());
        super::tracking::metric_history(&self.tracking(&scope), job, metric).await
    }

    /// The job's child runs, or a sweep's trials with `metric` (`--children`, `--top`), from the
    /// Azure ML services the job's tracking endpoint names, with an ARM-audience token.
    pub async fn children(&self, job: &Job, metric: Option<&str>) -> Result<Vec<super::children::Child>, Error> {
        let scope = crate::auth::arm_scope(self.allow.cloud());
        super::tracking::children(&self.tracking(&scope), job, metric).await
    }

    /// The job tracking service's calls with a token of `scope`: this project's client, tokens
    /// and host rules.
    fn tracking<'a>(&'a self, scope: &'a str) -> super::tracking::Service<'a> {
        super::tracking::Service {
            meta: &self.meta,
            tokens: &self.tokens,
            allow: &self.allow,
            scope,
            max_entries: self.blob.max_entries(),
        }
    }

    /// GET the job.
    pub async fn get_job(&self, name: &str) -> Result<Job, Error> {
        let url = self.url(&format!("jobs/{}", enc(name)), API_VERSION, &[]);
        let v = self.get(url).await.map_err(|e| match e.status() {
            Some(404) => Error::NotFound(format!("job '{name}' not found in project {}", self.base)),
            _ => self.fatal(e, &format!("get job '{name}'")),
        })?;
        parse_job(name, &v)
    }

    /// The project's recent jobs (`GET jobs`, paged by `nextLink`), newest first.
    pub async fn list_jobs(&self, q: &super::jobs::JobQuery) -> Result<super::jobs::JobList, Error> {
        let what = format!("job listing of project {}", self.base);
        let first = self.url("jobs", API_VERSION, &[]);
        super::jobs::azure_pages(first, &what, q, |url| async { self.get(url).await.map_err(|e| self.fatal(e, &what)) })
            .await
    }

    /// Follow a paged listing (§2.5): `continuationToken`, else a same-host `nextLink`.
    async fn paged(&self, first: Url, what: &str) -> Result<Vec<Value>, Error> {
        let mut items = Vec::new();
        follow_pages(
            first,
            what,
            |url| async { self.get(url).await.map_err(|e| self.fatal(e, what)) },
            |page| {
                items.extend(page);
                false
            },
        )
        .await?;
        Ok(items)
    }

    fn history(&self, job: &str, exp: &str, tail: &str, query: &[(&str, &str)]) -> Url {
        self.url(
            &format!("jobs/{j}/history/experimentids/{}/runs/{j}/{tail}", enc(exp), j = enc(job)),
            API_VERSION,
            query,
        )
    }

    /// The job's default artifacts (§2.4–§2.7).
    pub async fn default_artifacts(&self, job: &str) -> Result<Listing, Error> {
        let run_url = self.url(&format!("jobs/{j}/history/runs/{j}", j = enc(job)), API_VERSION, &[]);
        let run = self.get(run_url).await.map_err(|e| match e.status() {
            Some(404) => Error::NotFound(format!("run metadata of job '{job}' not found")),
            _ => self.fatal(e, &format!("run history of job '{job}'")),
        })?;
        let exp = str_ci(&run, "experimentId")
            .ok_or_else(|| Error::Protocol(format!("the run metadata of job '{job}' has no experiment ID")))?
            .to_string();
        let listed =
            self.paged(self.history(job, &exp, "artifacts", &[]), &format!("artifact listing of job '{job}'")).await?;
        // Normalised paths are keys (roots, dedupe, matching content info to the listing); the
        // raw path is what gets planned, so path safety sees exactly what the service sent.
        let mut paths: Vec<String> = Vec::new();
        let mut raw_of: HashMap<String, String> = HashMap::new();
        for item in &listed {
            if let Some(p) = str_ci(item, "path") {
                let n = normalise(p);
                if !n.is_empty() && !raw_of.contains_key(&n) {
                    raw_of.insert(n.clone(), p.to_string());
                    paths.push(n);
                }
            }
        }
        let roots: BTreeSet<String> = paths.iter().map(|p| p.split('/').next().unwrap_or(p).to_string()).collect();
        // Fan out per root; keep every result and error.
        let exp_ref = exp.as_str();
        let results: Vec<(String, Result<Vec<Value>, Error>)> = futures_util::stream::iter(roots)
            .map(|root| async move {
                let url = self.history(job, exp_ref, "artifacts/prefix/contentinfo", &[("path", &root)]);
                let r = self.paged(url, &format!("content info of '{root}'")).await;
                (root, r)
            })
            .buffer_unordered(FANOUT)
            .collect()
            .await;
        let mut uris: BTreeMap<String, (String, Option<u64>)> = BTreeMap::new();
        let mut sorted = results;
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (root, r) in sorted {
            match r {
                Ok(items) => {
                    for item in items {
                        let Some(p) = str_ci(&item, "path") else { continue };
                        let n = normalise(p);
                        if n != root && !n.starts_with(&format!("{root}/")) {
                            continue; // a plain-prefix overlap (`log` returning `logs/…`)
                        }
                        if let Some(uri) = str_ci(&item, "contentUri") {
                            let len = get_ci(&item, "contentLength").and_then(Value::as_u64);
                            match uris.entry(n) {
                                std::collections::btree_map::Entry::Occupied(o) => {
                                    crate::log::log(1, format!("duplicate artifact path '{}' ignored", o.key()));
                                }
                                std::collections::btree_map::Entry::Vacant(v) => {
                                    v.insert((uri.to_string(), len));
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    crate::log::log(0, format!("warning: content info for '{root}' failed ({e}); asking per file"))
                }
            }
        }
        let mut listing = Listing::default();
        // Gap fill: listed paths without a content URI (§2.7).
        for p in &paths {
            if uris.contains_key(p) {
                continue;
            }
            match self.path_content(job, &exp, p).await {
                Ok(Some(found)) => {
                    uris.insert(p.clone(), found);
                }
                Ok(None) => listing.failures.push((raw_of[p].clone(), "no download URL returned".into())),
                Err(e) if matches!(e.status(), Some(401 | 403)) => return Err(self.fatal(e, "artifact content info")),
                Err(_) => listing.failures.push((raw_of[p].clone(), "no download URL returned".into())),
            }
        }
        for (key, (uri, len)) in uris {
            let path = raw_of.get(&key).cloned().unwrap_or(key);
            match Url::parse(&uri) {
                Ok(url) => match self.allow.check_storage(&url) {
                    Ok(()) => {
                        let refresh = Some(Refresher(Arc::new(ContentRefresher {
                            foundry: self.clone(),
                            job: job.to_string(),
                            exp: exp.clone(),
                            path: path.clone(),
                        })));
                        listing.files.push(RemoteFile {
                            rel: path,
                            url: url.into(),
                            size: len,
                            md5: None,
                            check: None,
                            etag: None,
                            refresh,
                            protocol: super::Protocol::AzureBlob,
                        })
                    }
                    Err(e) => listing.failures.push((path, format!("download URL host not allowed: {e}"))),
                },
                Err(_) => listing.failures.push((path, "invalid download URL".into())),
            }
        }
        Ok(listing)
    }

    /// The content URI (and length) of one artifact path: the per-path `artifacts/contentinfo`
    /// route, which no current client calls; on its 404/400, the prefix route (which real
    /// clients use) listing that path. `Ok(None)`: no URI for it.
    async fn path_content(&self, job: &str, exp: &str, path: &str) -> Result<Option<(String, Option<u64>)>, CallError> {
        let found = |v: &Value| {
            str_ci(v, "contentUri").map(|u| (u.to_string(), get_ci(v, "contentLength").and_then(Value::as_u64)))
        };
        let url = self.history(job, exp, "artifacts/contentinfo", &[("path", path)]);
        match self.get(url).await {
            Ok(v) => Ok(found(&v)),
            Err(e) if matches!(e.status(), Some(400 | 404)) => {
                crate::log::log(
                    1,
                    format!(
                        "per-path content info answered HTTP {}; listing the prefix '{}' instead",
                        e.status().unwrap_or_default(),
                        crate::safepath::printable(path)
                    ),
                );
                let want = normalise(path);
                let url = self.history(job, exp, "artifacts/prefix/contentinfo", &[("path", path)]);
                match self.paged(url, &format!("content info of '{}'", crate::safepath::printable(path))).await {
                    Ok(items) => Ok(items
                        .iter()
                        .find(|i| str_ci(i, "path").is_some_and(|p| normalise(p) == want))
                        .and_then(found)),
                    Err(e) => {
                        crate::log::log(1, format!("re-listing the prefix failed: {e}"));
                        Ok(None)
                    }
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The blob name of a `uri_file` dataset inside `container`, from the dataset version's
    /// `dataUri` (`GET datasets/{name}/versions/{version}`).
    async fn dataset_file_name(
        &self,
        output: &str,
        asset: &str,
        version: &str,
        container: &crate::blob::ContainerRef,
    ) -> Result<String, String> {
        let url = self.url(&format!("datasets/{}/versions/{}", enc(asset), enc(version)), DATASET_API_VERSION, &[]);
        let v = self.get(url).await.map_err(|e| format!("output '{output}': dataset {asset}:{version}: {e}"))?;
        let data_uri = str_ci(&v, "dataUri").ok_or_else(|| {
            format!("output '{output}': the credentials name a container and the dataset has no dataUri")
        })?;
        let parsed = Url::parse(data_uri).ok().and_then(|u| parse_blob_url(&u).ok());
        match parsed {
            Some(p)
                if p.container.account == container.account
                    && p.container.container == container.container
                    && !p.path.is_empty()
                    && !p.path.ends_with('/') =>
            {
                Ok(p.path)
            }
            _ => Err(format!(
                "output '{output}': the credentials name the container root and the dataset's dataUri ({}) is not a file in that container",
                crate::redact::redact(data_uri)
            )),
        }
    }

    /// One named output (§2.9). `Err` fails this output only.
    pub async fn named_output(&self, job: &Job, name: &str) -> Result<Listing, String> {
        let spec = job.outputs.get(name).ok_or_else(|| format!("output '{name}' is not declared on the job"))?;
        if !SUPPORTED_TYPES.contains(&spec.kind.as_str()) {
            return Err(format!(
                "output '{name}' has unsupported jobOutputType '{}' (supported: {})",
                spec.kind,
                SUPPORTED_TYPES.join(", ")
            ));
        }
        let (Some(asset), Some(version)) = (&spec.asset_name, &spec.asset_version) else {
            return Err(format!("output '{name}' has no registered asset (assetName/assetVersion missing)"));
        };
        let cred = if spec.kind == "safetensors_model" {
            let v_url = self.url(&format!("models/{}/versions/{}", enc(asset), enc(version)), MODELS_API_VERSION, &[]);
            let mv = self.get(v_url).await.map_err(|e| format!("output '{name}': model {asset}:{version}: {e}"))?;
            let blob_uri = str_ci(&mv, "blobUri")
                .ok_or_else(|| format!("output '{name}': model version has no blobUri"))?
                .to_string();
            self.model_credentials(asset, version, &blob_uri)
                .await
                .map_err(|e| format!("output '{name}': model credentials: {e}"))?
        } else {
            let c_url = self.url(
                &format!("datasets/{}/versions/{}/credentials", enc(asset), enc(version)),
                DATASET_API_VERSION,
                &[],
            );
            self.call(reqwest::Method::POST, c_url, None)
                .await
                .map_err(|e| format!("output '{name}': dataset credentials: {e}"))?
        };
        let blob_ref = get_ci(&cred, "blobReference").unwrap_or(&cred);
        let credential = get_ci(blob_ref, "credential")
            .ok_or_else(|| format!("output '{name}': credentials response has no credential"))?;
        let kind = str_ci(credential, "type").or_else(|| str_ci(credential, "credentialType")).unwrap_or("");
        if !kind.eq_ignore_ascii_case("SAS") {
            return Err(format!("output '{name}': unsupported credential type '{kind}'"));
        }
        let sas = str_ci(credential, "sasUri")
            .ok_or_else(|| format!("output '{name}': credentials response has no sasUri"))?;
        let sas_url = Url::parse(sas).map_err(|_| format!("output '{name}': invalid sasUri"))?;
        self.allow.check_storage(&sas_url).map_err(|e| format!("output '{name}': storage host not allowed: {e}"))?;
        let parsed = parse_blob_url(&sas_url).map_err(|e| format!("output '{name}': {e}"))?;
        let mut prefix = parsed.path.clone();
        if let Some(bu) =
            str_ci(blob_ref, "blobUri").and_then(|u| Url::parse(u).ok()).and_then(|u| parse_blob_url(&u).ok())
            && bu.container.account == parsed.container.account
            && bu.container.container == parsed.container.container
        {
            prefix = bu.path;
        }
        let container = parsed.container;
        let folder = spec.kind != "uri_file";
        if !folder && prefix.is_empty() {
            // The credentials' blobUri names the container root (the real service does so for
            // uploaded files): the file's blob name is in the asset's dataUri. The container
            // URL itself is never asked for as the file.
            prefix = self.dataset_file_name(name, asset, version, &container).await?;
        }
        if !folder {
            let url = container.blob_url(&prefix);
            match self.blob.properties(&url).await {
                Ok(p) if p.is_folder => {
                    crate::log::log(
                        0,
                        format!(
                            "warning: output '{name}' is a uri_file but names a folder; downloading it as a folder"
                        ),
                    );
                }
                Ok(p) => {
                    let base = prefix.rsplit('/').next().unwrap_or(&prefix).to_string();
                    return Ok(Listing {
                        files: vec![RemoteFile {
                            rel: base,
                            url: url.into(),
                            size: Some(p.size),
                            md5: p.md5,
                            check: None,
                            etag: p.etag.clone(),
                            refresh: None,
                            protocol: super::Protocol::AzureBlob,
                        }],
                        failures: vec![],
                    });
                }
                Err(e) if e.status() == Some(404) => {
                    crate::log::log(
                        0,
                        format!(
                            "warning: output '{name}' is a uri_file but names a folder; downloading it as a folder"
                        ),
                    );
                }
                Err(e) => return Err(format!("output '{name}': {e}")),
            }
        }
        if parsed.sr.as_deref() == Some("b") {
            return Err(format!("output '{name}': the service returned a blob-scoped SAS, which cannot list a folder"));
        }
        let list_prefix =
            if prefix.is_empty() || prefix.ends_with('/') { prefix.clone() } else { format!("{prefix}/") };
        let base = container.blob_base();
        let files = self
            .blob
            .list_into(&container, &list_prefix, None, |b| RemoteFile {
                refresh: None,
                protocol: super::Protocol::AzureBlob,
                rel: b.name[list_prefix.len().min(b.name.len())..].to_string(),
                url: crate::blob::ContainerRef::blob_source(&base, &b.name),
                size: Some(b.size),
                md5: b.md5,
                check: None,
                etag: b.etag.clone(),
            })
            .await
            .map_err(|e| format!("output '{name}': listing failed: {e}"))?;
        if files.is_empty() {
            return Err(format!("output '{name}': no files under the output's folder"));
        }
        Ok(Listing { files, failures: vec![] })
    }
}

/// Asks per-path content info (§2.7) for a fresh content URI after a 403.
struct ContentRefresher {
    foundry: Foundry,
    job: String,
    exp: String,
    path: String,
}

impl UrlRefresher for ContentRefresher {
    fn refresh(&self) -> futures_util::future::BoxFuture<'_, Option<Url>> {
        Box::pin(async move {
            let f = &self.foundry;
            let (uri, _) = f.path_content(&self.job, &self.exp, &self.path).await.ok()??;
            let fresh = Url::parse(&uri).ok()?;
            f.allow.check_storage(&fresh).ok()?;
            Some(fresh)
        })
    }
}

/// One page of a paged listing: its items and the next page's URL, if any.
#[derive(Debug)]
pub struct PageStep {
    /// The page's `value` items (untrusted).
    pub items: Vec<Value>,
    /// Where the next page is: `first` with the page's `continuationToken`, or a `nextLink` on
    /// the same scheme, host and port as `current`.
    pub next: Option<Url>,
}

/// Follow an Azure-style paged listing (`value` + `continuationToken` / `nextLink`, read by
/// [`parse_page`]: never off the first page's origin) from `first`: `fetch` GETs one page with the
/// source's credentials and error mapping; `each` takes a page's items and returns `true` to stop.
/// A repeated token or link, or more than [`MAX_PAGES`] pages, is a protocol error.
pub async fn follow_pages<F, Fut>(
    first: Url,
    what: &str,
    mut fetch: F,
    mut each: impl FnMut(Vec<Value>) -> bool,
) -> Result<(), Error>
where
    F: FnMut(Url) -> Fut,
    Fut: std::future::Future<Output = Result<Value, Error>>,
{
    let mut url = first.clone();
    let mut pages = crate::http::Pages::new("continuation token or next link", MAX_PAGES);
    loop {
        let page = fetch(url.clone()).await?;
        let step = parse_page(&page, &first, &url).map_err(|e| Error::Protocol(format!("{what}: {e}")))?;
        if each(step.items) {
            return Ok(());
        }
        let Some(next) = step.next else { return Ok(()) };
        pages.next(Some(next.as_str())).map_err(|stop| Error::Protocol(format!("{what}: {stop}")))?;
        url = next;
    }
}

/// Read one page of a paged listing (§2.5). Pure, so the hostile-input tests can fuzz it: a
/// page that is not an object, a `nextLink` that is not a URL or points to another host is an
/// error; the returned next URL never leaves `current`'s origin.
pub fn parse_page(page: &Value, first: &Url, current: &Url) -> Result<PageStep, String> {
    let items = match get_ci(page, "value") {
        Some(Value::Array(vals)) => vals.clone(),
        _ if page.is_object() => Vec::new(),
        _ => return Err("malformed page (not an object)".into()),
    };
    let next = if let Some(tok) = str_ci(page, "continuationToken") {
        let mut next = first.clone();
        let mut qs: Vec<String> = first
            .query_pairs()
            .filter(|(k, _)| k != "continuationToken")
            .map(|(k, v)| format!("{}={}", enc(&k), enc(&v)))
            .collect();
        qs.push(format!("continuationToken={}", enc(tok)));
        next.set_query(Some(&qs.join("&")));
        Some(next)
    } else if let Some(link) = str_ci(page, "nextLink") {
        let mut next = Url::parse(link).map_err(|_| "invalid nextLink".to_string())?;
        if !crate::hosts::same_origin(&next, current) {
            return Err(format!(
                "nextLink points to another host ({}); not following it",
                crate::redact::url_for_display(&next)
            ));
        }
        if !next.query_pairs().any(|(k, _)| k == "api-version") {
            let q = match next.query() {
                Some(q) if !q.is_empty() => format!("{q}&api-version={API_VERSION}"),
                _ => format!("api-version={API_VERSION}"),
            };
            next.set_query(Some(&q));
        }
        Some(next)
    } else {
        None
    };
    Ok(PageStep { items, next })
}

/// Read the fields jobdl uses from a job envelope.
pub fn parse_job(name: &str, v: &Value) -> Result<Job, Error> {
    let props =
        get_ci(v, "properties").ok_or_else(|| Error::Protocol(format!("job '{name}': response has no properties")))?;
    let status = str_ci(props, "status")
        .ok_or_else(|| Error::Protocol(format!("job '{name}': response has no status")))?
        .to_string();
    let mut outputs = BTreeMap::new();
    if let Some(obj) = get_ci(props, "outputs").and_then(Value::as_object) {
        for (k, o) in obj {
            outputs.insert(
                k.clone(),
                OutputSpec {
                    kind: str_ci(o, "jobOutputType").unwrap_or("").to_string(),
                    asset_name: str_ci(o, "assetName").map(str::to_string),
                    asset_version: str_ci(o, "assetVersion").map(str::to_string),
                    uri: str_ci(o, "uri").map(str::to_string),
                },
            );
        }
    }
    Ok(Job {
        name: str_ci(v, "name").unwrap_or(name).to_string(),
        status,
        outputs,
        job_type: str_ci(props, "jobType").unwrap_or("").to_string(),
        created: crate::provider::timestamp(get_ci(v, "systemData").and_then(|d| str_ci(d, "createdAt"))),
        tracking: get_ci(props, "services")
            .and_then(|sv| get_ci(sv, "Tracking"))
            .and_then(|t| str_ci(t, "endpoint"))
            .map(str::to_string),
        objective: objective(get_ci(props, "objective")),
        ..Job::default()
    })
}

/// A sweep's `properties.objective` (`{"goal": "Minimize"|"Maximize", "primaryMetric": …}`,
/// docs/azure-api.md §3.11); `None` when absent or not understood.
fn objective(v: Option<&Value>) -> Option<crate::best::BestSpec> {
    let v = v?;
    let metric = str_ci(v, "primaryMetric").map(str::trim).filter(|m| !m.is_empty())?;
    let goal = match str_ci(v, "goal")?.trim().to_ascii_lowercase().as_str() {
        "minimize" => crate::best::Goal::Min,
        "maximize" => crate::best::Goal::Max,
        _ => return None,
    };
    Some(crate::best::BestSpec { metric: metric.to_string(), goal })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> AllowList {
        AllowList::new(crate::hosts::Cloud::AzureCloud, &["127.0.0.1:8080".to_string()]).unwrap()
    }

    #[test]
    fn endpoint_validation() {
        let a = allow();
        assert!(parse_endpoint("https://acct.services.ai.azure.com/api/projects/p", &a).is_ok());
        assert_eq!(
            parse_endpoint("https://acct.services.ai.azure.com/api/projects/p/", &a).unwrap().path(),
            "/api/projects/p"
        );
        assert!(parse_endpoint("http://127.0.0.1:8080/api/projects/p", &a).is_ok());
        for bad in [
            "https://acct.services.ai.azure.com/api/projects/",
            "https://acct.services.ai.azure.com/api/projects/p/x",
            "https://u:p@acct.services.ai.azure.com/api/projects/p",
            "https://acct.services.ai.azure.com/api/projects/p?x=1",
            "https://evil.invalid/api/projects/p",
            "http://acct.services.ai.azure.com/api/projects/p",
            "http://127.0.0.1:9/api/projects/p",
            "not a url",
        ] {
            let e = parse_endpoint(bad, &a).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise("a\\b//c"), "a/b/c");
        assert_eq!(normalise("/x"), "x");
        assert_eq!(normalise(""), "");
    }

    #[test]
    fn job_parsing_is_tolerant() {
        let v = serde_json::json!({"name":"j","properties":{"status":"Completed","outputs":{
            "model":{"jobOutputType":"safetensors_model","assetName":"m","assetVersion":"1"},
            "odd":{"JobOutputType":"uri_file"}}}});
        let j = parse_job("j", &v).unwrap();
        assert_eq!(j.status, "Completed");
        assert_eq!(j.outputs["model"].asset_name.as_deref(), Some("m"));
        assert_eq!(j.outputs["odd"].kind, "uri_file");
        assert!(parse_job("j", &serde_json::json!({"properties":{}})).is_err());
        assert!(parse_job("j", &serde_json::json!([])).is_err());
    }
}

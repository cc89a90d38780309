//! Path B: an Azure Machine Learning workspace addressed through ARM (docs/azure-api.md §3). The job
//! GET, default artifacts from the `workspaceartifactstore` datastore, and named outputs through
//! run history, `batchGetResolvedUris` and the datastores. Bearer tokens go only to the ARM host
//! (and validated regional API hosts); blobs are read with a SAS, or with a storage token sent
//! only to storage hosts built from a datastore's account name.
pub mod datastore;
pub mod resolve;
pub mod uri;

use super::{Job, OutputError, RemoteFile, Resolved};
use crate::auth::{STORAGE_SCOPE, TokenSource};
use crate::blob::{BlobClient, BlobItem, ContainerRef, parse_blob_url};
use crate::error::Error;
use crate::hosts::{AllowList, Cloud};
use crate::http::{CallError, JsonRequest, MetaClient};
use crate::transfer::{RequestSigner, SignHook};
use datastore::{Store, StoreAuth};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;
use uri::{Location, WorkspaceRef, folder_prefix};
use url::Url;

/// `api-version` of the job GET (§3.1), as azure-ai-ml 1.32.0 sends it (recorded traffic in
/// Azure/azure-sdk-assets, `test_pipeline_job_download`).
pub const JOB_API_VERSION: &str = "2024-01-01-preview";
/// `api-version` of the second GET of a `FineTuning` job.
pub const FINETUNING_JOB_API_VERSION: &str = "2024-10-01-preview";
/// `api-version` of the workspace GET (discovery), as recorded.
pub const WORKSPACE_API_VERSION: &str = "2024-10-01-preview";
/// `api-version` of run history's `rundata` POST: azure-ai-ml 1.32.0 sends `v1.0` (recorded
/// traffic in Azure/azure-sdk-assets, `test_pipeline_job_download`).
pub const RUNDATA_API_VERSION: &str = "v1.0";
/// `api-version` of datastore GET, list and `listSecrets`, as azure-ai-ml 1.32.0 sends it (recorded).
pub const DATASTORE_API_VERSION: &str = "2024-07-01-preview";
/// The datastore holding run artifacts.
pub const ARTIFACT_STORE: &str = "workspaceartifactstore";

/// Hint shown when ARM refuses a call.
const ARM_HINT: &str = "sign in with `az login` (or set JOBDL_ACCESS_TOKEN) with an identity that can read the \
                        workspace's jobs and datastores (e.g. the AzureML Data Scientist role)";

/// Characters escaped in a path segment or query value (RFC 3986 unreserved stay).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encode one path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// Settings of a workspace source.
#[derive(Debug, Clone)]
pub struct Config {
    /// The workspace.
    pub workspace: WorkspaceRef,
    /// The cloud (ARM host and audience, regional API hosts, storage suffix).
    pub cloud: Cloud,
    /// `JOBDL_ARM_ENDPOINT`: ARM base URL override.
    pub arm_endpoint: Option<Url>,
    /// `JOBDL_STORAGE_ENDPOINT`: path-style blob endpoint for datastores.
    pub storage_endpoint: Option<Url>,
}

/// An Azure ML workspace (cheap to clone: everything is shared).
#[derive(Clone)]
pub struct AzureMl {
    inner: Arc<Inner>,
}

struct Inner {
    meta: MetaClient,
    blob: BlobClient,
    tokens: TokenSource,
    allow: AllowList,
    cloud: Cloud,
    /// ARM base (no trailing slash in its path).
    arm: Url,
    arm_scope: String,
    workspace: WorkspaceRef,
    storage_endpoint: Option<Url>,
    /// The regional API host from discovery, once known.
    api: Mutex<Option<Url>>,
    /// Run-history resolution per (job, output).
    found: Mutex<HashMap<(String, String), resolve::Found>>,
    /// Datastores per (workspace, name).
    stores: Mutex<HashMap<(WorkspaceRef, String), Store>>,
    /// The default datastore's name.
    default_store: Mutex<Option<String>>,
}

impl AzureMl {
    /// A client for `config.workspace`. The ARM endpoint override must be an allowed host and the
    /// storage endpoint override a listed one (exit 2 otherwise).
    pub fn new(
        meta: MetaClient,
        blob: BlobClient,
        tokens: TokenSource,
        allow: AllowList,
        config: Config,
    ) -> Result<Self, Error> {
        let cloud = config.cloud;
        let arm = match config.arm_endpoint {
            Some(u) => {
                allow.check_arm(&u).map_err(|e| Error::usage(format!("JOBDL_ARM_ENDPOINT not allowed: {e}")))?;
                u
            }
            None => Url::parse(&format!("https://{}", cloud.arm_host()))
                .map_err(|e| Error::usage(format!("cannot build the ARM URL: {e}")))?,
        };
        if !arm.username().is_empty() || arm.query().is_some() {
            return Err(Error::usage("JOBDL_ARM_ENDPOINT must be a plain base URL (no user info, no query)"));
        }
        if let Some(s) = &config.storage_endpoint {
            allow.check_storage(s).map_err(|e| Error::usage(format!("JOBDL_STORAGE_ENDPOINT not allowed: {e}")))?;
        }
        for (flag, v) in [
            ("--subscription", &config.workspace.subscription),
            ("--resource-group", &config.workspace.resource_group),
            ("--workspace", &config.workspace.workspace),
        ] {
            if v.trim().is_empty() || v.contains(['/', '\\', '?', '#']) || v.chars().any(char::is_control) {
                return Err(Error::usage(format!("invalid {flag} '{}'", v.escape_debug())));
            }
        }
        Ok(AzureMl {
            inner: Arc::new(Inner {
                meta,
                blob,
                tokens,
                allow,
                cloud,
                arm,
                arm_scope: crate::auth::arm_scope(cloud),
                workspace: config.workspace,
                storage_endpoint: config.storage_endpoint,
                api: Mutex::new(None),
                found: Mutex::new(HashMap::new()),
                stores: Mutex::new(HashMap::new()),
                default_store: Mutex::new(None),
            }),
        })
    }

    /// `{W}`: the ARM path of workspace `ws` (segments percent-encoded).
    fn ws_path(ws: &WorkspaceRef) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            enc(&ws.subscription),
            enc(&ws.resource_group),
            enc(&ws.workspace)
        )
    }

    /// `{ARM}{W}[/tail]?api-version=..[&k=v]`.
    fn arm_url(&self, ws: &WorkspaceRef, tail: &str, api_version: &str, query: &[(&str, &str)]) -> Url {
        let mut u = self.inner.arm.clone();
        let base = self.inner.arm.path().trim_end_matches('/');
        let tail = if tail.is_empty() { String::new() } else { format!("/{tail}") };
        u.set_path(&format!("{base}{}{tail}", Self::ws_path(ws)));
        let mut q = format!("api-version={}", enc(api_version));
        for (k, v) in query {
            q.push_str(&format!("&{k}={}", enc(v)));
        }
        u.set_query(Some(&q));
        u
    }

    /// A call with the ARM token, refused unless `url` is on the ARM host (or `api`, when given).
    async fn bearer_call(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<Value>,
        api: Option<&Url>,
    ) -> Result<Value, CallError> {
        let origins: Vec<&Url> = std::iter::once(&self.inner.arm).chain(api).collect();
        crate::http::check_origin(&url, &origins)?;
        let token = self.inner.tokens.token(&self.inner.arm_scope).await.map_err(super::token_error)?;
        self.inner.meta.json(&JsonRequest { method, url, bearer: Some(token), body, features: None }).await
    }

    /// An ARM call.
    async fn arm(&self, method: reqwest::Method, url: Url, body: Option<Value>) -> Result<Value, CallError> {
        self.bearer_call(method, url, body, None).await
    }

    /// A failed ARM call that ends the run.
    fn arm_fatal(&self, e: CallError, what: &str) -> Error {
        super::fatal_for_tokens(e, what, ARM_HINT, &self.inner.tokens)
    }

    fn ws_display(&self) -> String {
        let w = &self.inner.workspace;
        format!("workspace '{}' (resource group '{}', subscription {})", w.workspace, w.resource_group, w.subscription)
    }

    /// GET the job (§3.2); a `FineTuning` job is fetched again with its own api-version.
    pub async fn get_job(&self, name: &str) -> Result<Job, Error> {
        let ws = self.inner.workspace.clone();
        let mut v = Value::Null;
        for api_version in [JOB_API_VERSION, FINETUNING_JOB_API_VERSION] {
            let url = self.arm_url(&ws, &format!("jobs/{}", enc(name)), api_version, &[]);
            v = self.arm(reqwest::Method::GET, url, None).await.map_err(|e| match e.status() {
                Some(404) => Error::NotFound(format!("job '{name}' not found in {}", self.ws_display())),
                _ => self.arm_fatal(e, &format!("get job '{name}'")),
            })?;
            let job_type = crate::provider::foundry::get_ci(&v, "properties")
                .and_then(|p| crate::provider::foundry::str_ci(p, "jobType"))
                .unwrap_or("");
            if !job_type.eq_ignore_ascii_case("FineTuning") {
                break;
            }
        }
        let mut job = parse_job(name, &v)?;
        job.studio_url = studio_url(self.inner.cloud, &ws, name);
        Ok(job)
    }

    /// Every logged value of `metric` of the job's run, from the tracking service the job names
    /// (`download --best`), with the ARM token.
    pub async fn metric_history(&self, job: &Job, metric: &str) -> Result<Vec<crate::best::MetricPoint>, Error> {
        super::tracking::metric_history(&self.tracking(), job, metric).await
    }

    /// The job's child runs, or a sweep's trials with `metric` (`--children`, `--top`), from the
    /// Azure ML services the job's tracking endpoint names, with the ARM token.
    pub async fn children(&self, job: &Job, metric: Option<&str>) -> Result<Vec<super::children::Child>, Error> {
        super::tracking::children(&self.tracking(), job, metric).await
    }

    /// The job tracking service's calls: this workspace's client, tokens and host rules.
    fn tracking(&self) -> super::tracking::Service<'_> {
        let i = &self.inner;
        super::tracking::Service {
            meta: &i.meta,
            tokens: &i.tokens,
            allow: &i.allow,
            scope: &i.arm_scope,
            max_entries: i.blob.max_entries(),
        }
    }

    /// The workspace's recent jobs (`GET …/jobs`, paged by `nextLink`), newest first.
    pub async fn list_jobs(&self, q: &super::jobs::JobQuery) -> Result<super::jobs::JobList, Error> {
        let what = format!("job listing of {}", self.ws_display());
        let first = self.arm_url(&self.inner.workspace, "jobs", JOB_API_VERSION, &[]);
        super::jobs::azure_pages(first, &what, q, |url| async {
            self.arm(reqwest::Method::GET, url, None).await.map_err(|e| self.arm_fatal(e, &what))
        })
        .await
    }

    /// The default artifacts (§3.2): the `default` output's datastore path (normally
    /// `workspaceartifactstore` / `ExperimentRun/dcid.<job>`), always listed with a trailing `/`.
    pub async fn default_artifacts(&self, job: &Job) -> Result<Resolved, Error> {
        let declared = job.outputs.get("default").and_then(|o| o.uri.as_deref()).map(uri::parse);
        let (ws, ds, path) = match declared {
            Some(Ok(Location::Datastore { workspace, datastore, path })) => {
                (workspace.unwrap_or_else(|| self.inner.workspace.clone()), datastore, path)
            }
            _ => {
                (self.inner.workspace.clone(), ARTIFACT_STORE.to_string(), format!("ExperimentRun/dcid.{}/", job.name))
            }
        };
        let prefix = folder_prefix(&path);
        let mut store = self.store(&ws, &ds).await.map_err(|e| match e {
            OutputError::Fatal(e) => e,
            OutputError::Denied { message, hint } => Error::Auth { message, hint },
            OutputError::Failed(m) => Error::Protocol(format!("default artifacts of job '{}': {m}", job.name)),
        })?;
        let what = format!("listing the default artifacts of job '{}'", job.name);
        let (blobs, headers) = match self.list(&mut store, &prefix).await {
            Ok(r) => r,
            Err(OutputError::Denied { message, hint }) => return Err(Error::Auth { message, hint }),
            Err(OutputError::Fatal(e)) => return Err(e),
            Err(OutputError::Failed(m)) => return Err(Error::ServiceUnavailable(format!("{what}: {m}"))),
        };
        Ok(self.files(&store, blobs, &prefix, headers))
    }

    /// One named output (§3.7): run history first, then the job's own URI, then the default
    /// datastore's `azureml/<job>/<name>/` and `dataset/<job>/<name>/`; never an empty success.
    pub async fn named_output(&self, job: &Job, name: &str) -> Result<Resolved, OutputError> {
        let spec = job
            .outputs
            .get(name)
            .ok_or_else(|| OutputError::Failed(format!("output '{name}' is not declared on the job")))?;
        let fail = |m: String| OutputError::Failed(format!("output '{name}': {m}"));
        let mut tried: Vec<String> = Vec::new();
        match self.found(job, name).await? {
            resolve::Found::Location { location, file, asset } => {
                return match self.fetch(&location, file, name).await? {
                    Some(r) => Ok(r),
                    None => Err(fail(format!("no files at {} (asset {asset})", describe(&location)))),
                };
            }
            resolve::Found::Missing(why) => tried.push(why),
        }
        let declared_file = spec.kind.eq_ignore_ascii_case("uri_file");
        match spec.uri.as_deref() {
            Some(u) if !uri::is_template(u) => match uri::parse(u) {
                Ok(loc @ (Location::Datastore { .. } | Location::BlobUrl(_))) => {
                    if let Some(r) = self.fetch(&loc, declared_file, name).await? {
                        return Ok(r);
                    }
                    tried.push(format!("nothing at its URI {}", describe(&loc)));
                }
                Ok(Location::Asset { .. }) => tried.push("its URI is an asset ID without run history".into()),
                Err(why) => tried.push(why),
            },
            _ => tried.push("no concrete URI".into()),
        }
        let default = match self.default_datastore().await {
            Ok(d) => d,
            Err(OutputError::Failed(m)) => {
                tried.push(format!("no default datastore to probe ({m})"));
                return Err(fail(format!("could not be located ({})", tried.join(", "))));
            }
            Err(e) => return Err(e),
        };
        let ws = self.inner.workspace.clone();
        for dir in ["azureml", "dataset"] {
            let loc = Location::Datastore {
                workspace: Some(ws.clone()),
                datastore: default.clone(),
                path: format!("{dir}/{}/{name}/", job.name),
            };
            if let Some(r) = self.fetch(&loc, false, name).await? {
                crate::log::log(1, format!("output '{name}' found by probing {}", describe(&loc)));
                return Ok(r);
            }
        }
        tried.push(format!("not under azureml/{j}/{name}/ or dataset/{j}/{name}/ in {default}", j = job.name));
        Err(OutputError::Failed(format!("output '{name}' could not be located ({})", tried.join(", "))))
    }

    /// The files at `loc`: one blob for a file (falling back to a folder when it is one), or
    /// everything under the folder. `None` when nothing is there.
    async fn fetch(&self, loc: &Location, file: bool, output: &str) -> Result<Option<Resolved>, OutputError> {
        let (mut store, path) = match loc {
            Location::Datastore { workspace, datastore, path } => {
                let ws = workspace.clone().unwrap_or_else(|| self.inner.workspace.clone());
                (self.store(&ws, datastore).await?, path.clone())
            }
            Location::BlobUrl(url) => self.url_store(url)?,
            Location::Asset { id, .. } => {
                return Err(OutputError::Failed(format!("output '{output}': asset {id} was not resolved")));
            }
        };
        if file && !path.is_empty() && !path.ends_with('/') {
            let mut url = store.container.blob_url(&path);
            let mut bearer = self.bearer_for(&store).await?;
            let mut head = self.inner.blob.properties_auth(&url, bearer.as_deref()).await;
            if let Err(e) = &head
                && self.key_auth_refused(&mut store, e).await
            {
                url = store.container.blob_url(&path);
                bearer = self.bearer_for(&store).await?;
                head = self.inner.blob.properties_auth(&url, bearer.as_deref()).await;
            }
            match head {
                Ok(p) if !p.is_folder => {
                    let rel = path.rsplit('/').next().unwrap_or(&path).to_string();
                    let file = RemoteFile {
                        rel,
                        refresh: self.mint_refresher(&store, &path),
                        url: url.into(),
                        size: Some(p.size),
                        md5: p.md5,
                        check: None,
                        etag: p.etag.clone(),
                        protocol: crate::provider::Protocol::AzureBlob,
                    };
                    let listing = crate::provider::Listing { files: vec![file], failures: vec![] };
                    let sign = self.bearer_hook(&store, bearer);
                    return Ok(Some(Resolved { listing, sign, ..Resolved::default() }));
                }
                Ok(_) | Err(CallError::Status { status: 404, .. }) => crate::log::log(
                    0,
                    format!(
                        "warning: output '{output}' is a file output but names a folder; downloading it as a folder"
                    ),
                ),
                Err(e) => return Err(self.storage_error(&store, e)),
            }
        }
        let prefix = folder_prefix(&path);
        let (blobs, headers) = self.list(&mut store, &prefix).await?;
        if blobs.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.files(&store, blobs, &prefix, headers)))
    }

    /// A store for a blob URL found in a URI: its own SAS if it has one, else a storage token.
    fn url_store(&self, url: &Url) -> Result<(Store, String), OutputError> {
        self.inner
            .allow
            .check_storage(url)
            .map_err(|e| OutputError::Failed(format!("storage host not allowed: {e}")))?;
        let parsed = parse_blob_url(url).map_err(OutputError::Failed)?;
        let has_sig = parsed.container.sas.as_deref().is_some_and(|q| q.split('&').any(|p| p.starts_with("sig=")));
        let mut container: ContainerRef = parsed.container;
        if !has_sig {
            container.sas = None;
        }
        let store = Store {
            name: crate::redact::url_for_display(url),
            container,
            auth: if has_sig { StoreAuth::Sas } else { StoreAuth::Bearer },
            cred_type: if has_sig { "Sas".into() } else { "None".into() },
            fallback: false,
        };
        Ok((store, parsed.path))
    }

    /// The storage token, when `store` uses one.
    async fn bearer_for(&self, store: &Store) -> Result<Option<String>, OutputError> {
        if !matches!(store.auth, StoreAuth::Bearer) {
            return Ok(None);
        }
        // The host was built from the datastore's account name (or checked as a storage host).
        self.inner.allow.check_storage(&store.container.container_url()).map_err(OutputError::Failed)?;
        match self.inner.tokens.token(STORAGE_SCOPE).await {
            Ok(t) => Ok(Some(t)),
            Err(e) => Err(OutputError::Denied {
                message: format!("datastore '{}' needs a storage token: {e}", store.name),
                hint: e.hint().unwrap_or(STORAGE_HINT).to_string(),
            }),
        }
    }

    /// The renewing bearer signer for `store`'s account, when a token is in use.
    fn bearer_hook(&self, store: &Store, bearer: Option<String>) -> Option<SignHook> {
        let token = bearer?;
        Some(storage_bearer(self.inner.tokens.clone(), store.container.container_url(), token).1)
    }

    /// Every blob under `prefix`, and what authorises its data requests (a storage token). `store` switches to the
    /// user's storage token when its account refuses key-based access.
    async fn list(&self, store: &mut Store, prefix: &str) -> Result<(Vec<BlobItem>, Option<SignHook>), OutputError> {
        let bearer = self.bearer_for(store).await?;
        match self.inner.blob.list_auth(&store.container, prefix, bearer.as_deref()).await {
            Ok(b) => Ok((b, self.bearer_hook(store, bearer))),
            Err(e) if self.key_auth_refused(store, &e).await => {
                let bearer = self.bearer_for(store).await?;
                match self.inner.blob.list_auth(&store.container, prefix, bearer.as_deref()).await {
                    Ok(b) => Ok((b, self.bearer_hook(store, bearer))),
                    Err(e) => Err(self.storage_error(store, e)),
                }
            }
            Err(e) => Err(self.storage_error(store, e)),
        }
    }

    /// Whether `e` is a storage account refusing a SAS or key (`403
    /// KeyBasedAuthenticationNotPermitted`, shared-key access disabled) for a store that used
    /// one; if so, `store` (and the run's cache, so once per datastore) switches to the user's
    /// storage bearer token, sent only to that account's host.
    async fn key_auth_refused(&self, store: &mut Store, e: &CallError) -> bool {
        let refused = matches!(e, CallError::Status { status: 403, code: Some(c), .. }
            if c.eq_ignore_ascii_case("KeyBasedAuthenticationNotPermitted"));
        if !refused || matches!(store.auth, StoreAuth::Bearer) {
            return false;
        }
        crate::log::log(
            1,
            format!(
                "storage account '{}' does not permit key-based access (KeyBasedAuthenticationNotPermitted); \
                 switching datastore '{}' to your storage token",
                store.container.account, store.name
            ),
        );
        store.container.sas = None;
        store.auth = StoreAuth::Bearer;
        store.fallback = true;
        let mut cache = self.inner.stores.lock().await;
        for s in cache.values_mut() {
            if s.container.account == store.container.account && s.container.container == store.container.container {
                *s = store.clone();
            }
        }
        true
    }

    /// A storage failure: refusals become `Denied` (or a clear failure for unsupported credentials).
    fn storage_error(&self, store: &Store, e: CallError) -> OutputError {
        let account = &store.container.account;
        match (e.status(), &store.auth) {
            (Some(401 | 403), StoreAuth::Bearer)
                if ["ServicePrincipal", "Certificate"].iter().any(|t| t.eq_ignore_ascii_case(&store.cred_type)) =>
            {
                OutputError::Failed(format!(
                    "datastore {} uses {} credentials, which jobdl does not support; grant your identity Storage \
                     Blob Data Reader or use a key/SAS datastore ({e})",
                    store.name, store.cred_type
                ))
            }
            (Some(401 | 403), StoreAuth::Bearer) => {
                let mut hint =
                    format!("grant your identity the Storage Blob Data Reader role on storage account '{account}'");
                if self.inner.tokens.is_static() {
                    hint.push_str(
                        "; JOBDL_ACCESS_TOKEN is in use and is sent to storage as is: an ARM-audience token cannot \
                         read storage (unset it to use the Azure credential chain)",
                    );
                }
                let why = if store.fallback {
                    " (its key or SAS could not be used, so your own identity was used)"
                } else {
                    ""
                };
                OutputError::Denied {
                    message: format!(
                        "storage account '{account}' refused access to datastore '{}'{why} ({e})",
                        store.name
                    ),
                    hint,
                }
            }
            (Some(401 | 403), _) => OutputError::Denied {
                message: format!("storage account '{account}' refused the SAS of datastore '{}' ({e})", store.name),
                hint: "check that the datastore's credentials are still valid".into(),
            },
            (Some(s), _) if e.is_retryable() => OutputError::Failed(format!(
                "storage account '{account}': service unavailable (HTTP {s}) after {} attempts",
                e.attempts()
            )),
            _ => OutputError::Failed(format!("storage account '{account}': {e}")),
        }
    }

    /// Listed blobs as remote files relative to `prefix`.
    fn files(&self, store: &Store, blobs: Vec<BlobItem>, prefix: &str, sign: Option<SignHook>) -> Resolved {
        let base = store.container.blob_base();
        let files = blobs
            .into_iter()
            .map(|b| RemoteFile {
                refresh: self.mint_refresher(store, &b.name),
                rel: b.name[prefix.len().min(b.name.len())..].to_string(),
                url: ContainerRef::blob_source(&base, &b.name),
                size: Some(b.size),
                md5: b.md5,
                check: None,
                etag: b.etag.clone(),
                protocol: crate::provider::Protocol::AzureBlob,
            })
            .collect();
        Resolved { listing: crate::provider::Listing { files, failures: vec![] }, sign, ..Resolved::default() }
    }
}

/// Hint when no storage token can be had.
const STORAGE_HINT: &str = "sign in with `az login` with an identity that has Storage Blob Data Reader on the account";

/// How often, at most, a storage bearer token is checked for renewal; the token source renews one
/// that has less than five minutes left, so a token of an hour is replaced 4–5 minutes before it
/// expires. A shorter-lived token is checked again at half its remaining life.
const BEARER_RENEW_CHECK: std::time::Duration = std::time::Duration::from_secs(60);
/// The shortest wait between two renewal checks (a token that is already expired or about to).
const BEARER_RENEW_FLOOR: std::time::Duration = std::time::Duration::from_millis(100);

/// When to check a token again: `every`, or half of what is left of its life when that is sooner
/// (never sooner than [`BEARER_RENEW_FLOOR`]); `every` when its expiry is unknown.
fn next_renewal(
    every: std::time::Duration,
    now: time::OffsetDateTime,
    expires: Option<time::OffsetDateTime>,
) -> std::time::Duration {
    let Some(expires) = expires else { return every };
    let half_left = std::time::Duration::try_from((expires - now) / 2).unwrap_or_default();
    half_left.clamp(BEARER_RENEW_FLOOR, every.max(BEARER_RENEW_FLOOR))
}

/// `Authorization: Bearer <token>` for data requests to one storage account, renewed in the
/// background before the token expires (a download may outlive a ~1 h token). Sent only to URLs
/// on the account's scheme, host and port.
pub(crate) struct StorageBearer {
    origin: Url,
    current: std::sync::RwLock<String>,
}

impl StorageBearer {
    /// Replace the token (the renewal loop; tests).
    pub(crate) fn set(&self, token: String) {
        if let Ok(mut t) = self.current.write() {
            *t = token;
        }
    }
}

impl RequestSigner for StorageBearer {
    fn headers(&self, _method: &str, url: &Url) -> Vec<(String, String)> {
        if !crate::hosts::same_origin(url, &self.origin) {
            return Vec::new();
        }
        let token = self.current.read().map(|t| t.clone()).unwrap_or_default();
        vec![("authorization".to_string(), format!("Bearer {token}"))]
    }
}

/// A [`StorageBearer`] for `origin` starting with `token`; unless the token is static, it is
/// renewed as [`renewing_bearer`] describes.
pub(crate) fn storage_bearer(tokens: TokenSource, origin: Url, token: String) -> (Arc<StorageBearer>, SignHook) {
    if tokens.is_static() {
        let bearer = Arc::new(StorageBearer { origin, current: std::sync::RwLock::new(token) });
        return (bearer.clone(), SignHook(bearer));
    }
    renewing_bearer(origin, token, BEARER_RENEW_CHECK, move || {
        let tokens = tokens.clone();
        Box::pin(async move { tokens.token_expiring(STORAGE_SCOPE).await.map_err(|e| e.to_string()) })
    })
}

/// A token and its expiry, or why none could be had.
type Fetched = Result<(String, Option<time::OffsetDateTime>), String>;
/// A token source for [`renewing_bearer`].
type TokenFetch = dyn Fn() -> futures_util::future::BoxFuture<'static, Fetched> + Send + Sync;

/// A [`StorageBearer`] whose token a background task asks `fetch` for at once (learning the
/// starting token's expiry: the credential chain hands back its cached token until five minutes
/// before expiry, then a new one) and again as [`next_renewal`] schedules. The task ends once
/// the signer is dropped.
pub(crate) fn renewing_bearer(
    origin: Url,
    token: String,
    every: std::time::Duration,
    fetch: impl Fn() -> futures_util::future::BoxFuture<'static, Fetched> + Send + Sync + 'static,
) -> (Arc<StorageBearer>, SignHook) {
    let bearer = Arc::new(StorageBearer { origin, current: std::sync::RwLock::new(token) });
    let weak = Arc::downgrade(&bearer);
    let fetch: Box<TokenFetch> = Box::new(fetch);
    tokio::spawn(async move {
        loop {
            if weak.strong_count() == 0 {
                return;
            }
            let fresh = fetch().await;
            let Some(b) = weak.upgrade() else { return };
            let wait = match fresh {
                Ok((t, expires)) => {
                    b.set(t);
                    next_renewal(every, time::OffsetDateTime::now_utc(), expires)
                }
                Err(e) => {
                    crate::log::log(1, format!("renewing the storage token failed: {e}"));
                    every
                }
            };
            drop(b);
            tokio::time::sleep(wait).await;
        }
    });
    let hook = SignHook(bearer.clone());
    (bearer, hook)
}

/// A location for messages (never carries a SAS).
fn describe(loc: &Location) -> String {
    match loc {
        Location::Datastore { workspace: Some(w), datastore, path } => {
            format!("azureml://datastores/{datastore}/paths/{path} (workspace '{}')", w.workspace)
        }
        Location::Datastore { workspace: None, datastore, path } => {
            format!("azureml://datastores/{datastore}/paths/{path}")
        }
        Location::BlobUrl(u) => crate::redact::url_for_display(u),
        Location::Asset { id, .. } => id.clone(),
    }
}

/// The job's page in Azure ML studio (public cloud only: the studio hosts of the sovereign clouds
/// are not in the reference).
pub fn studio_url(cloud: Cloud, ws: &WorkspaceRef, job: &str) -> Option<String> {
    (cloud == Cloud::AzureCloud).then(|| {
        format!(
            "https://ml.azure.com/runs/{}?wsid=/subscriptions/{}/resourcegroups/{}/workspaces/{}",
            enc(job),
            enc(&ws.subscription),
            enc(&ws.resource_group),
            enc(&ws.workspace)
        )
    })
}

/// Read a Path B job: the Foundry fields plus pipeline reuse and the sweep's best child.
pub fn parse_job(name: &str, v: &Value) -> Result<Job, Error> {
    use crate::provider::foundry::{get_ci, str_ci};
    let mut job = crate::provider::foundry::parse_job(name, v)?;
    let inner = get_ci(v, "properties").and_then(|p| get_ci(p, "properties"));
    if let Some(p) = inner {
        let reused = str_ci(p, "azureml.isreused").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        if reused {
            job.reused_run = str_ci(p, "azureml.reusedrunid").map(str::to_string);
        }
        if job.job_type.eq_ignore_ascii_case("Sweep") {
            job.best_child = str_ci(p, "best_child_run_id").map(str::to_string);
        }
    }
    if job.reused_run.as_deref() == Some(job.name.as_str()) {
        job.reused_run = None;
    }
    if job.best_child.as_deref() == Some(job.name.as_str()) {
        job.best_child = None;
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn storage_bearer_is_renewed_and_only_sent_to_its_account() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let origin = Url::parse("https://acct.blob.core.windows.net/c").unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let (bearer, hook) = renewing_bearer(origin, "tok-0".into(), std::time::Duration::from_millis(5), move || {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move { Ok((format!("tok-{n}"), None)) })
        });
        let blob = Url::parse("https://acct.blob.core.windows.net/c/a.bin").unwrap();
        assert_eq!(hook.0.headers("GET", &blob), vec![("authorization".to_string(), "Bearer tok-0".to_string())]);
        for other in ["https://other.blob.core.windows.net/c/a.bin", "http://acct.blob.core.windows.net/c/a.bin"] {
            assert!(hook.0.headers("GET", &Url::parse(other).unwrap()).is_empty(), "{other}");
        }
        // The background task replaces the token (bounded wait: no timing is asserted).
        let mut renewed = false;
        for _ in 0..2000 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            if hook.0.headers("GET", &blob)[0].1 != "Bearer tok-0" {
                renewed = true;
                break;
            }
        }
        assert!(renewed, "the storage token was never renewed");
        // Once the signer is gone, the task stops asking.
        drop(hook);
        drop(bearer);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let settled = calls.load(Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(calls.load(Ordering::SeqCst), settled, "the renewal task outlived its signer");
    }

    #[test]
    fn renewal_is_checked_every_minute_or_at_half_the_remaining_life() {
        let every = std::time::Duration::from_secs(60);
        let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::hours(500_000);
        let at = |secs: i64| Some(now + time::Duration::seconds(secs));
        let s = std::time::Duration::from_secs;
        assert_eq!(next_renewal(every, now, None), every);
        assert_eq!(next_renewal(every, now, at(3600)), every);
        assert_eq!(next_renewal(every, now, at(120)), every);
        assert_eq!(next_renewal(every, now, at(100)), s(50));
        assert_eq!(next_renewal(every, now, at(2)), s(1));
        assert_eq!(next_renewal(every, now, at(0)), BEARER_RENEW_FLOOR);
        assert_eq!(next_renewal(every, now, at(-30)), BEARER_RENEW_FLOOR);
    }

    #[tokio::test]
    async fn a_static_storage_token_is_not_renewed() {
        let origin = Url::parse("https://acct.blob.core.windows.net/c").unwrap();
        let (_b, hook) = storage_bearer(TokenSource::Static("tok".into()), origin, "tok".into());
        let blob = Url::parse("https://acct.blob.core.windows.net/c/x").unwrap();
        assert_eq!(hook.0.headers("HEAD", &blob)[0].1, "Bearer tok");
    }

    fn ws() -> WorkspaceRef {
        WorkspaceRef { subscription: "sub 1".into(), resource_group: "rg".into(), workspace: "ws/x".into() }
    }

    fn client(cloud: Cloud, arm: Option<&str>, storage: Option<&str>, listed: &[&str]) -> Result<AzureMl, Error> {
        let http = reqwest::Client::new();
        let retry = crate::retry::RetryConfig::default();
        let allow = AllowList::new(cloud, &listed.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let config = Config {
            workspace: WorkspaceRef { subscription: "s".into(), resource_group: "rg".into(), workspace: "w".into() },
            cloud,
            arm_endpoint: arm.map(|a| Url::parse(a).unwrap()),
            storage_endpoint: storage.map(|a| Url::parse(a).unwrap()),
        };
        AzureMl::new(
            MetaClient::new(http.clone(), retry.clone()),
            BlobClient::new(http, retry),
            TokenSource::Static("t".into()),
            allow,
            config,
        )
    }

    #[test]
    fn studio_links() {
        let w = WorkspaceRef { subscription: "s-1".into(), resource_group: "rg".into(), workspace: "ws".into() };
        assert_eq!(
            studio_url(Cloud::AzureCloud, &w, "job-1").as_deref(),
            Some("https://ml.azure.com/runs/job-1?wsid=/subscriptions/s-1/resourcegroups/rg/workspaces/ws")
        );
        assert_eq!(studio_url(Cloud::AzureChinaCloud, &w, "job-1"), None);
        let odd = studio_url(Cloud::AzureCloud, &ws(), "a b").unwrap();
        assert!(odd.contains("/runs/a%20b?") && odd.contains("/workspaces/ws%2Fx"), "{odd}");
    }

    #[test]
    fn arm_urls_follow_the_cloud_and_escape_segments() {
        let a = client(Cloud::AzureCloud, None, None, &[]).unwrap();
        let u = a.arm_url(&ws(), "jobs/j%2F1", JOB_API_VERSION, &[("isDefault", "true")]);
        assert_eq!(
            u.as_str(),
            "https://management.azure.com/subscriptions/sub%201/resourceGroups/rg/providers/\
             Microsoft.MachineLearningServices/workspaces/ws%2Fx/jobs/j%2F1?api-version=2024-01-01-preview&isDefault=true"
        );
        let gov = client(Cloud::AzureUSGovernment, None, None, &[]).unwrap();
        assert_eq!(gov.inner.arm.host_str(), Some("management.usgovcloudapi.net"));
        assert_eq!(gov.inner.arm_scope, "https://management.usgovcloudapi.net/.default");
        let cn = client(Cloud::AzureChinaCloud, None, None, &[]).unwrap();
        assert_eq!(cn.inner.arm.host_str(), Some("management.chinacloudapi.cn"));
        assert_eq!(cn.inner.arm_scope, "https://management.chinacloudapi.cn/.default");
    }

    #[test]
    fn endpoint_overrides_must_be_allowed() {
        let ok = client(
            Cloud::AzureCloud,
            Some("http://127.0.0.1:8080"),
            Some("http://127.0.0.1:8080"),
            &["127.0.0.1:8080"],
        );
        let a = ok.unwrap();
        assert!(!a.https_storage());
        let e = client(Cloud::AzureCloud, Some("http://127.0.0.1:8080"), None, &[]).err().unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("JOBDL_ARM_ENDPOINT"), "{e}");
        let e = client(Cloud::AzureCloud, None, Some("http://127.0.0.1:9"), &["127.0.0.1:8080"]).err().unwrap();
        assert!(e.to_string().contains("JOBDL_STORAGE_ENDPOINT"), "{e}");
        let e = client(Cloud::AzureCloud, Some("https://management.azure.com.evil.invalid"), None, &[]).err().unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(client(Cloud::AzureUSGovernment, Some("https://management.usgovcloudapi.net"), None, &[]).is_ok());
        assert!(client(Cloud::AzureUSGovernment, Some("https://management.azure.com"), None, &[]).is_err());
    }

    #[test]
    fn the_token_stays_on_the_arm_host() {
        let a = client(Cloud::AzureCloud, None, None, &[]).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let e =
            rt.block_on(a.arm(reqwest::Method::GET, Url::parse("https://evil.invalid/x").unwrap(), None)).unwrap_err();
        assert!(matches!(e, CallError::HostRefused { .. }), "{e:?}");
        assert!(e.to_string().contains("only https://management.azure.com receives it"), "{e}");
    }

    #[tokio::test]
    async fn sovereign_clouds_pick_their_own_hosts() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let w = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w";
        Mock::given(method("GET"))
            .and(path(w))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"properties": {"discoveryUrl": "https://eastus2.api.azureml.ms/discovery"}}),
            ))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("{w}/datastores/ds")))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"properties": {
                "datastoreType": "AzureBlob", "accountName": "acct01", "containerName": "c",
                "endpoint": "core.windows.net", "credentials": {"credentialsType": "Sas"}}})))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("{w}/datastores/ds/listSecrets")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"secretsType": "Sas", "sasToken": "?sv=1&sig=x"})),
            )
            .mount(&server)
            .await;
        let listed = server.address().to_string();
        let own = WorkspaceRef { subscription: "s".into(), resource_group: "rg".into(), workspace: "w".into() };
        for (cloud, blob_host) in [
            (Cloud::AzureUSGovernment, "acct01.blob.core.usgovcloudapi.net"),
            (Cloud::AzureChinaCloud, "acct01.blob.core.chinacloudapi.cn"),
            (Cloud::AzureCloud, "acct01.blob.core.windows.net"),
        ] {
            let a = client(cloud, Some(&server.uri()), None, &[&listed]).unwrap();
            // The datastore's own `endpoint` is ignored: the cloud decides the storage suffix.
            let store = a.store(&own, "ds").await.unwrap();
            assert_eq!(store.container.container_url().as_str(), format!("https://{blob_host}/c"), "{cloud}");
            assert_eq!(store.container.sas.as_deref(), Some("sv=1&sig=x"));
            assert!(matches!(store.auth, StoreAuth::Sas));
            // A public-cloud discovery host is not a regional API host of a sovereign cloud (in the
            // public cloud it would be fetched, which a unit test does not do).
            if cloud != Cloud::AzureCloud {
                let e = a.api().await.unwrap_err().to_string();
                assert!(e.contains("discovery URL not allowed") && e.contains(cloud.name()), "{e}");
            }
        }
        // Only ARM calls reached the server, each with the token.
        let reqs = server.received_requests().await.unwrap();
        assert!(reqs.iter().all(|r| r.headers.get("authorization").is_some_and(|v| v == "Bearer t")));
    }

    #[test]
    fn reuse_and_sweep_fields() {
        let v = serde_json::json!({"name": "step", "properties": {"jobType": "Command", "status": "Completed",
            "properties": {"azureml.isreused": "true", "azureml.reusedrunid": "old-run"}, "outputs": {}}});
        let j = parse_job("step", &v).unwrap();
        assert_eq!(j.reused_run.as_deref(), Some("old-run"));
        let v = serde_json::json!({"name": "step", "properties": {"jobType": "Command", "status": "Completed",
            "properties": {"azureml.isreused": "false", "azureml.reusedrunid": "old-run"}}});
        assert_eq!(parse_job("step", &v).unwrap().reused_run, None);
        let v = serde_json::json!({"name": "sw", "properties": {"jobType": "Sweep", "status": "Completed",
            "properties": {"best_child_run_id": "sw_3"},
            "outputs": {"default": {"jobOutputType": "uri_folder", "uri": "azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.sw"}}}});
        let j = parse_job("sw", &v).unwrap();
        assert_eq!(j.best_child.as_deref(), Some("sw_3"));
        assert_eq!(j.job_type, "Sweep");
        assert!(j.outputs["default"].uri.as_deref().unwrap().ends_with("dcid.sw"));
        assert_eq!(j.objective, None);
        let v = serde_json::json!({"name": "sw", "properties": {"jobType": "Sweep", "status": "Completed",
            "objective": {"goal": "Maximize", "primaryMetric": "accuracy"}}});
        let spec = parse_job("sw", &v).unwrap().objective.unwrap();
        assert_eq!((spec.metric.as_str(), spec.goal), ("accuracy", crate::best::Goal::Max));
        for bad in [
            serde_json::json!({"goal": "Sideways", "primaryMetric": "a"}),
            serde_json::json!({"goal": "Minimize"}),
            serde_json::json!({"goal": "minimize", "primaryMetric": " "}),
            serde_json::json!("x"),
        ] {
            let v = serde_json::json!({"name": "sw", "properties": {"jobType": "Sweep", "status": "Completed", "objective": bad}});
            assert_eq!(parse_job("sw", &v).unwrap().objective, None);
        }
    }
}

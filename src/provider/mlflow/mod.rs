//! MLflow tracking servers and Databricks workspaces: a run (the job) via `runs/get`, its artifact
//! tree listed recursively with `artifacts/list`, bytes through the tracking server's artifact
//! proxy or, on Databricks, through presigned cloud URLs from `credentials-for-read`.
//!
//! Where the bytes come from:
//! - artifact root `mlflow-artifacts:/<p>` (a server started with `--serve-artifacts`):
//!   `GET <tracking>/api/2.0/mlflow-artifacts/artifacts/<p>/<path>`;
//! - any other root (`file:`, `s3:`, `gs:`, `wasbs:`, `mlflow-artifacts://<other host>/…`,
//!   `dbfs:` on a plain server): `GET <tracking>/get-artifact?path=<path>&run_uuid=<run>`, which the
//!   tracking server answers from its own artifact store (the endpoint MLflow's UI uses);
//! - Databricks: `POST /api/2.0/mlflow/artifacts/credentials-for-read` gives a presigned URL (and
//!   headers it needs) per file; a file without one falls back to the proxy routes above.
//!
//! Credentials (basic or bearer) go only to the tracking host: every call URL is built from the
//! user-given base, and presigned URLs (hostile input) must pass [`AllowList::check_presigned`]
//! and receive only the headers the service attached to them.
pub mod search;
pub mod target;

use super::{Job, OutputError, OutputSpec, Protocol, RemoteFile, Resolved};
use crate::env::{
    DATABRICKS_CLIENT_ID, DATABRICKS_CLIENT_SECRET, DATABRICKS_TOKEN, MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN,
    MLFLOW_TRACKING_USERNAME,
};
use crate::error::Error;
use crate::hosts::AllowList;
use crate::http::{CallError, JsonRequest, MetaClient, Pages};
use crate::transfer::{Refresher, UrlRefresher};
use base64::Engine;
use futures_util::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
pub use target::{Credential, OAuthClient, ReadFile, Target, parse_databrickscfg, resolve_target_with};
use url::Url;

/// `GET` a run.
const RUNS_GET: &str = "api/2.0/mlflow/runs/get";
/// `GET` one directory of a run's artifacts (paged on Databricks).
const ARTIFACTS_LIST: &str = "api/2.0/mlflow/artifacts/list";
/// The tracking server's artifact proxy (`--serve-artifacts`).
const PROXY: &str = "api/2.0/mlflow-artifacts/artifacts";
/// The tracking server's own artifact download route (any artifact store).
const GET_ARTIFACT: &str = "get-artifact";
/// `GET` a run's history of one metric (`download --best`), paged.
const METRICS_HISTORY: &str = "api/2.0/mlflow/metrics/get-history";
/// Most values asked for per history page (the servers' own page limit).
const HISTORY_PAGE: &str = "25000";
/// `POST` a search of the server's experiments (`jobdl jobs`).
const EXPERIMENTS_SEARCH: &str = "api/2.0/mlflow/experiments/search";
/// `POST` a search of runs in some experiments (`jobdl jobs`).
const RUNS_SEARCH: &str = "api/2.0/mlflow/runs/search";
/// Most rows asked for per search page (the servers' own page limit is larger).
const SEARCH_PAGE: usize = 1000;
/// `GET` a registered model version.
const MODEL_VERSION_GET: &str = "api/2.0/mlflow/model-versions/get";
/// `--output models:/NAME/VERSION`: a registered model version whose files are this run's.
pub const MODEL_OUTPUT_PREFIX: &str = "models:/";
/// Databricks: presigned read URLs for artifact paths.
const CREDENTIALS_FOR_READ: &str = "api/2.0/mlflow/artifacts/credentials-for-read";
/// Most pages followed for one directory.
const MAX_PAGES: usize = 10_000;
/// Deepest directory nesting followed.
const MAX_DEPTH: usize = 64;
/// Directories listed at once.
const FANOUT: usize = 8;
/// Paths per `credentials-for-read` request.
const CRED_BATCH: usize = 500;

/// Characters escaped in a path segment (RFC 3986 unreserved stay).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A tracking server (cheap to clone: clients and settings are shared).
#[derive(Clone)]
pub struct Mlflow {
    meta: MetaClient,
    target: Target,
    allow: AllowList,
    /// Most entries (files and directories) accepted in one listing (`max_list_entries`).
    max_entries: usize,
}

/// Why a listing over `limit` entries stops, naming the setting that raises it.
fn too_many(limit: usize) -> String {
    format!(
        "more than {limit} entries; stopping (the max_list_entries limit: raise it with JOBDL_MAX_LIST_ENTRIES \
         or max_list_entries in jobdl.toml)"
    )
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    path: String,
    is_dir: bool,
    size: Option<u64>,
}

/// `file_size` as a JSON number or a decimal string (servers differ); anything else is unknown.
fn file_size(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    }
}

/// Percent-encode one path segment; `.` and `..` are encoded too, so no URL parser folds them.
fn enc_segment(s: &str) -> String {
    match s {
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => utf8_percent_encode(s, SEGMENT).to_string(),
    }
}

/// A page's `next_page_token` (`None` at the end); a repeated one, or one past [`MAX_PAGES`]
/// pages, is an error.
fn next_token(page: &Value, pages: &mut Pages, what: &str) -> Result<Option<String>, Error> {
    pages
        .next(page.get("next_page_token").and_then(Value::as_str))
        .map_err(|stop| Error::Protocol(format!("{what}: {stop}")))
}

/// The page bookkeeping of an MLflow listing.
fn mlflow_pages() -> Pages {
    Pages::new("next_page_token", MAX_PAGES)
}

/// `<base>/<path>?<query>`: an MLflow REST call URL on the tracking base (never another origin).
fn endpoint_at(base: &Url, path: &str, query: &[(&str, &str)]) -> Url {
    let mut u = base.clone();
    u.set_path(&format!("{}/{path}", base.path().trim_end_matches('/')));
    if !query.is_empty() {
        u.query_pairs_mut().extend_pairs(query);
    }
    u
}

/// Where a run's metric history is read: an MLflow REST base (a tracking server, or Azure ML's
/// MLflow-compatible tracking service) and the `Authorization` value that base takes.
pub struct HistoryAt<'a> {
    /// The metadata client.
    pub meta: &'a MetaClient,
    /// The REST base (`…/api/2.0/mlflow/…` is appended); every call stays on its origin.
    pub base: &'a Url,
    /// The `Authorization` header value (secret), sent only to `base`.
    pub auth: Option<&'a str>,
    /// Most values accepted (the `max_list_entries` limit).
    pub max_entries: usize,
}

/// Whether MLflow answered that the thing asked for does not exist (`RESOURCE_DOES_NOT_EXIST`).
pub(crate) fn resource_missing(e: &CallError) -> bool {
    matches!(e, CallError::Status { code: Some(c), .. } if c == "RESOURCE_DOES_NOT_EXIST")
}

/// Every logged value of `metric` for run `run_id` (`download --best`): `metrics/get-history`
/// on `at.base`, page by page. A value the server sends as a string (`"NaN"`, `"Infinity"`) is
/// read as the number it names; an entry without a step or value is skipped. `fatal` maps a
/// failed call (with what was being read) to the run-ending error of the caller's source.
pub async fn metric_history_at(
    at: &HistoryAt<'_>,
    run_id: &str,
    metric: &str,
    fatal: impl Fn(CallError, &str) -> Error,
) -> Result<Vec<crate::best::MetricPoint>, Error> {
    let what = format!("MLflow metric '{metric}' of run '{run_id}'");
    let number = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let integer = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let mut points = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = mlflow_pages();
    loop {
        let mut query = vec![("run_id", run_id), ("metric_key", metric), ("max_results", HISTORY_PAGE)];
        if let Some(t) = &token {
            query.push(("page_token", t.as_str()));
        }
        let url = endpoint_at(at.base, METRICS_HISTORY, &query);
        let req = JsonRequest { method: reqwest::Method::GET, url, bearer: None, body: None, features: None };
        let page = at.meta.json_authorized(&req, at.auth).await.map_err(|e| fatal(e, &what))?;
        if !page.is_object() {
            return Err(Error::Protocol(format!("{what}: malformed page (not an object)")));
        }
        for m in page.get("metrics").and_then(Value::as_array).into_iter().flatten() {
            // A server without a step records 0 (MLflow's default).
            let step = if m.get("step").is_some() { integer(m.get("step")) } else { Some(0) };
            if let (Some(step), Some(value)) = (step, number(m.get("value"))) {
                let timestamp = integer(m.get("timestamp")).unwrap_or(0);
                points.push(crate::best::MetricPoint { step, value, timestamp });
            }
            if points.len() > at.max_entries {
                return Err(Error::Protocol(format!("{what}: {}", too_many(at.max_entries))));
            }
        }
        match next_token(&page, &mut pages, &what)? {
            Some(t) => token = Some(t),
            None => return Ok(points),
        }
    }
}

/// Read the fields jobdl uses from a `runs/get` response.
pub fn parse_run(run_id: &str, v: &Value) -> Result<Job, Error> {
    let info = v
        .get("run")
        .and_then(|r| r.get("info"))
        .ok_or_else(|| Error::Protocol(format!("run '{run_id}': response has no run.info")))?;
    let s = |k: &str| info.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let status = s("status").ok_or_else(|| Error::Protocol(format!("run '{run_id}': response has no status")))?;
    let mut job_type = "MLflow run".to_string();
    if let Some(name) = s("run_name") {
        job_type.push_str(&format!(" '{name}'"));
    }
    if let Some(exp) = s("experiment_id") {
        job_type.push_str(&format!(" in experiment {exp}"));
    }
    let mut outputs = BTreeMap::new();
    outputs.insert(
        "default".to_string(),
        OutputSpec { kind: "artifacts".into(), uri: s("artifact_uri").map(str::to_string), ..OutputSpec::default() },
    );
    Ok(Job {
        name: run_id.to_string(),
        status: status.to_string(),
        outputs,
        job_type,
        output_paths: true,
        ..Job::default()
    })
}

impl Mlflow {
    /// A client for `target` (validated by [`resolve_target_with`]).
    pub fn new(meta: MetaClient, target: Target, allow: AllowList) -> Self {
        Mlflow { meta, target, allow, max_entries: crate::settings::DEFAULT_MAX_LIST_ENTRIES }
    }

    /// The same provider with another entry limit per listing (the `max_list_entries` setting).
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    fn endpoint(&self, path: &str, query: &[(&str, &str)]) -> Url {
        endpoint_at(&self.target.base, path, query)
    }

    /// The `Authorization` value for the tracking host (secret), if any.
    async fn authorization(&self) -> Result<Option<String>, Error> {
        Ok(match &self.target.credential {
            Credential::None => None,
            Credential::Basic { user, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            Credential::Bearer(t) => Some(format!("Bearer {t}")),
            Credential::OAuth(o) => {
                Some(format!("Bearer {}", o.token(self.meta.client(), self.meta_attempts()).await?))
            }
        })
    }

    fn meta_attempts(&self) -> u32 {
        crate::settings::META_ATTEMPTS
    }

    /// One JSON call to the tracking host (the only host that receives credentials).
    async fn call(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<Value>,
        auth: Option<&str>,
    ) -> Result<Value, CallError> {
        self.meta.json_authorized(&JsonRequest { method, url, bearer: None, body, features: None }, auth).await
    }

    fn auth_hint(&self) -> String {
        if let Some(from) = &self.target.credential_from {
            let who = if self.target.databricks { "can read the run's experiment" } else { "can read the run" };
            return format!(
                "the server refused the credentials from {from}: replace them with valid ones for an account that \
                 {who}, or unset them"
            );
        }
        if self.target.databricks {
            format!(
                "set {DATABRICKS_TOKEN} (or {DATABRICKS_CLIENT_ID} and {DATABRICKS_CLIENT_SECRET}, or the \
                 profile's token) for an identity that can read the run's experiment"
            )
        } else {
            format!(
                "set {MLFLOW_TRACKING_TOKEN}, or {MLFLOW_TRACKING_USERNAME} and {MLFLOW_TRACKING_PASSWORD}, for an account that \
                 can read the run on this tracking server"
            )
        }
    }

    /// Map a failed call on something everything depends on to a run-ending error.
    fn fatal(&self, e: CallError, what: &str) -> Error {
        if resource_missing(&e) || e.status() == Some(404) {
            return Error::NotFound(format!(
                "{what}: not found on {} ({e})",
                crate::redact::url_for_display(&self.target.base)
            ));
        }
        super::fatal_with_hint(e, what, &self.auth_hint())
    }

    /// GET the run (no status gate).
    pub async fn get_job(&self, run_id: &str) -> Result<Job, Error> {
        let auth = self.authorization().await?;
        let url = self.endpoint(RUNS_GET, &[("run_id", run_id)]);
        let v = self
            .call(reqwest::Method::GET, url, None, auth.as_deref())
            .await
            .map_err(|e| self.fatal(e, &format!("MLflow run '{run_id}'")))?;
        parse_run(run_id, &v)
    }

    /// This tracking server's paged calls (history, search) with `auth`.
    fn at<'a>(&'a self, auth: Option<&'a str>) -> HistoryAt<'a> {
        HistoryAt { meta: &self.meta, base: &self.target.base, auth, max_entries: self.max_entries }
    }

    /// Every logged value of `metric` for the run (`download --best`): [`metric_history_at`] on
    /// this tracking server with its credentials.
    pub async fn metric_history(&self, run_id: &str, metric: &str) -> Result<Vec<crate::best::MetricPoint>, Error> {
        let auth = self.authorization().await?;
        let at = self.at(auth.as_deref());
        metric_history_at(&at, run_id, metric, |e, what| self.fatal(e, what)).await
    }

    /// The server's recent runs (`jobdl jobs`): the active experiments from `experiments/search`,
    /// then `runs/search` over them, newest `start_time` first, page by page until `q` is met.
    pub async fn list_jobs(&self, q: &super::jobs::JobQuery) -> Result<super::jobs::JobList, Error> {
        use super::jobs::{JobList, JobSummary, from_millis, text};
        let mut list = JobList::default();
        if q.limit == 0 {
            return Ok(list);
        }
        let auth = self.authorization().await?;
        let what = "MLflow experiment search";
        let mut experiments: Vec<(String, Option<String>)> = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = mlflow_pages();
        loop {
            let mut body = serde_json::json!({"max_results": SEARCH_PAGE, "view_type": "ACTIVE_ONLY"});
            if let Some(t) = &token {
                body["page_token"] = Value::String(t.clone());
            }
            let url = self.endpoint(EXPERIMENTS_SEARCH, &[]);
            let page = self
                .call(reqwest::Method::POST, url, Some(body), auth.as_deref())
                .await
                .map_err(|e| self.fatal(e, what))?;
            for e in page.get("experiments").and_then(Value::as_array).into_iter().flatten() {
                if let Some(id) = e.get("experiment_id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    experiments.push((id.to_string(), text(e.get("name"))));
                }
            }
            if experiments.len() > self.max_entries {
                return Err(Error::Protocol(format!("{what}: {}", too_many(self.max_entries))));
            }
            match next_token(&page, &mut pages, what)? {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        // `--experiment` names one by its name or its id: only its runs are searched.
        if let Some(wanted) = &q.experiment {
            experiments.retain(|(id, name)| id == wanted || name.as_ref() == Some(wanted));
        }
        let q = &super::jobs::JobQuery { experiment: None, ..q.clone() };
        if experiments.is_empty() {
            return Ok(list);
        }
        let names: HashMap<String, Option<String>> = experiments.iter().cloned().collect();
        let ids: Vec<&str> = experiments.iter().map(|(id, _)| id.as_str()).collect();
        let mut body = serde_json::json!({
            "experiment_ids": ids, "max_results": SEARCH_PAGE.min(q.limit.max(1)),
            "order_by": ["attributes.start_time DESC"], "run_view_type": "ACTIVE_ONLY",
        });
        if q.statuses != super::jobs::StatusFilter::default() {
            // Filtered here, not by the server: ask for full pages.
            body["max_results"] = serde_json::json!(SEARCH_PAGE);
        }
        let at = self.at(auth.as_deref());
        let mut done = false;
        search::runs_search_at(&at, body, "MLflow run search", &|e, what| self.fatal(e, what), |run| {
            let Some(info) = run.get("info") else { return false };
            let Some(name) = text(info.get("run_id")).or_else(|| text(info.get("run_uuid"))) else { return false };
            let exp = text(info.get("experiment_id"));
            let experiment = exp.as_ref().map(|id| names.get(id).cloned().flatten().unwrap_or_else(|| id.clone()));
            let job = JobSummary {
                name,
                status: text(info.get("status")).unwrap_or_default(),
                created: from_millis(info.get("start_time")),
                job_type: None,
                display_name: text(info.get("run_name")),
                experiment,
            };
            done = list.take(job, q);
            done
        })
        .await?;
        Ok(list.finish())
    }

    /// The run's child runs (`download --children`; with `metric`, the trials `--top` ranks):
    /// [`search::child_runs_at`] on this tracking server with its credentials.
    pub async fn children(&self, run_id: &str, metric: Option<&str>) -> Result<Vec<super::children::Child>, Error> {
        let auth = self.authorization().await?;
        let at = self.at(auth.as_deref());
        search::child_runs_at(&at, run_id, metric, |e, what| self.fatal(e, what)).await
    }

    /// Every page of one directory's listing.
    async fn list_dir(&self, run_id: &str, dir: &str, auth: Option<&str>) -> Result<Vec<Entry>, Error> {
        let what = if dir.is_empty() {
            format!("artifact listing of run '{run_id}'")
        } else {
            format!("artifact listing of '{}' in run '{run_id}'", crate::safepath::printable(dir))
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = mlflow_pages();
        loop {
            let mut q: Vec<(&str, &str)> = vec![("run_id", run_id)];
            if !dir.is_empty() {
                q.push(("path", dir));
            }
            if let Some(t) = &token {
                q.push(("page_token", t));
            }
            let url = self.endpoint(ARTIFACTS_LIST, &q);
            let page = self.call(reqwest::Method::GET, url, None, auth).await.map_err(|e| self.fatal(e, &what))?;
            if !page.is_object() {
                return Err(Error::Protocol(format!("{what}: malformed page (not an object)")));
            }
            match page.get("files") {
                None | Some(Value::Null) => {}
                Some(Value::Array(files)) => {
                    for f in files {
                        let Some(path) = f.get("path").and_then(Value::as_str) else {
                            crate::log::log(1, format!("{what}: an entry without a path was ignored"));
                            continue;
                        };
                        out.push(Entry {
                            path: path.to_string(),
                            is_dir: f.get("is_dir").and_then(Value::as_bool).unwrap_or(false),
                            size: file_size(f.get("file_size")),
                        });
                    }
                }
                Some(_) => return Err(Error::Protocol(format!("{what}: malformed page (files is not a list)"))),
            }
            if out.len() > self.max_entries {
                return Err(Error::Protocol(format!("{what}: {}", too_many(self.max_entries))));
            }
            token = next_token(&page, &mut pages, &what)?;
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// The files under `prefix` (`""`: the whole tree), breadth-first with [`FANOUT`] directories
    /// listed at once. Returns (files, failures) with paths relative to the run's artifact root.
    async fn list_tree(
        &self,
        run_id: &str,
        prefix: &str,
        auth: Option<&str>,
    ) -> Result<(Vec<Entry>, Vec<(String, String)>), Error> {
        let mut files = Vec::new();
        let mut failures = Vec::new();
        let mut visited: HashSet<String> = HashSet::from([prefix.to_string()]);
        let mut frontier = vec![prefix.to_string()];
        let mut entries = 0usize;
        for depth in 0.. {
            if frontier.is_empty() {
                break;
            }
            if depth > MAX_DEPTH {
                return Err(Error::Protocol(format!(
                    "artifact listing of run '{run_id}': directories nested deeper than {MAX_DEPTH} levels; stopping"
                )));
            }
            let mut results: Vec<(String, Result<Vec<Entry>, Error>)> = futures_util::stream::iter(frontier)
                .map(|dir| async move {
                    let r = self.list_dir(run_id, &dir, auth).await;
                    (dir, r)
                })
                .buffer_unordered(FANOUT)
                .collect()
                .await;
            results.sort_by(|a, b| a.0.cmp(&b.0));
            let mut next = Vec::new();
            for (dir, r) in results {
                let listed = r?;
                // `artifacts/list` on a file's path answers one element with that same path: the
                // file itself (Databricks; mlflow's databricks_artifact_repo.py checks for it).
                if depth == 0
                    && !dir.is_empty()
                    && let [only] = listed.as_slice()
                    && only.path == dir
                    && !only.is_dir
                {
                    files.extend(listed);
                    continue;
                }
                entries += listed.len();
                if entries > self.max_entries {
                    return Err(Error::Protocol(format!(
                        "artifact listing of run '{run_id}': {}",
                        too_many(self.max_entries)
                    )));
                }
                for e in listed {
                    let inside = dir.is_empty()
                        || e.path
                            .strip_prefix(dir.as_str())
                            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1);
                    if !inside {
                        failures.push((e.path.clone(), format!("listed under '{dir}' but outside it; not downloaded")));
                        continue;
                    }
                    if e.is_dir {
                        if visited.insert(e.path.clone()) {
                            next.push(e.path);
                        } else {
                            crate::log::log(1, format!("directory '{}' listed twice; listed once", e.path));
                        }
                    } else {
                        files.push(e);
                    }
                }
            }
            frontier = next;
        }
        Ok((files, failures))
    }

    /// The run's artifact root (`runs/get`), if the job carries it.
    fn root_of(job: &Job) -> Option<String> {
        job.outputs.get("default").and_then(|o| o.uri.clone())
    }

    /// The proxy URL of `path` (relative to the run's artifact root).
    fn proxy_url(&self, run_id: &str, root: Option<&str>, path: &str) -> Url {
        let proxied = root.and_then(|r| r.strip_prefix("mlflow-artifacts:")).filter(|r| !r.starts_with("//"));
        match proxied {
            Some(rest) => {
                let mut segs: Vec<String> = rest
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| enc_segment(&percent_decode_str(s).decode_utf8_lossy()))
                    .collect();
                segs.extend(path.split('/').map(enc_segment));
                let mut u = self.target.base.clone();
                u.set_path(&format!("{}/{PROXY}/{}", self.target.base.path().trim_end_matches('/'), segs.join("/")));
                u
            }
            None => self.endpoint(GET_ARTIFACT, &[("path", path), ("run_uuid", run_id)]),
        }
    }

    /// Databricks: presigned URLs (and their headers) for `paths`, by path. A failed call gives
    /// an empty map: the files then go through the proxy.
    async fn presigned(
        &self,
        run_id: &str,
        paths: &[String],
        auth: Option<&str>,
    ) -> Result<HashMap<String, (Url, Vec<(String, String)>)>, Error> {
        let mut out = HashMap::new();
        for batch in paths.chunks(CRED_BATCH) {
            let mut token: Option<String> = None;
            let mut pages = mlflow_pages();
            loop {
                let mut body = serde_json::json!({"run_id": run_id, "path": batch});
                if let Some(t) = &token {
                    body["page_token"] = Value::String(t.clone());
                }
                let url = self.endpoint(CREDENTIALS_FOR_READ, &[]);
                let page = match self.call(reqwest::Method::POST, url, Some(body), auth).await {
                    Ok(p) => p,
                    Err(e) if matches!(e.status(), Some(401 | 403)) => {
                        return Err(self.fatal(e, "artifact read credentials"));
                    }
                    Err(e) => {
                        crate::log::log(
                            0,
                            format!(
                                "warning: no presigned URLs from the workspace ({e}); downloading through the tracking server"
                            ),
                        );
                        return Ok(out);
                    }
                };
                let infos = page.get("credential_infos").and_then(Value::as_array).cloned().unwrap_or_default();
                for info in &infos {
                    let (Some(path), Some(uri)) =
                        (info.get("path").and_then(Value::as_str), info.get("signed_uri").and_then(Value::as_str))
                    else {
                        continue;
                    };
                    let Ok(url) = Url::parse(uri) else {
                        crate::log::log(
                            1,
                            format!("'{}': invalid presigned URL ignored", crate::safepath::printable(path)),
                        );
                        continue;
                    };
                    out.insert(path.to_string(), (url, presigned_headers(info)));
                }
                if infos.is_empty() {
                    break;
                }
                match pages.next(page.get("next_page_token").and_then(Value::as_str)) {
                    Ok(Some(t)) => token = Some(t),
                    Ok(None) => break,
                    Err(stop) => {
                        crate::log::log(0, format!("warning: credentials-for-read: {stop}"));
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether a URL from the service may be fetched: the tracking host itself, or an allowed
    /// presigned storage host.
    fn check_data_url(&self, url: &Url) -> Result<(), String> {
        let base = &self.target.base;
        let same_origin = crate::hosts::same_origin(url, base) && url.username().is_empty() && url.password().is_none();
        if same_origin { Ok(()) } else { self.allow.check_presigned(url) }
    }

    /// List `prefix` of the run and turn its files into a plan input; `rel` paths are relative
    /// to `prefix`.
    async fn resolve(&self, job: &Job, prefix: &str) -> Result<Resolved, Error> {
        let run_id = job.name.as_str();
        let auth = self.authorization().await?;
        let (entries, failures) = self.list_tree(run_id, prefix, auth.as_deref()).await?;
        let root = Self::root_of(job);
        let presigned = if self.target.databricks && !entries.is_empty() {
            let paths: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
            self.presigned(run_id, &paths, auth.as_deref()).await?
        } else {
            HashMap::new()
        };
        // Paths relative to the prefix; the prefix itself (a single file) keeps its own name.
        let strip = |p: &str| -> String {
            if prefix.is_empty() {
                p.to_string()
            } else if p == prefix {
                p.rsplit('/').next().unwrap_or(p).to_string()
            } else {
                p[prefix.len() + 1..].to_string()
            }
        };
        let mut resolved = Resolved::default();
        resolved.listing.failures = failures;
        for e in entries {
            let rel = strip(&e.path);
            let (url, headers, refresh) = match presigned.get(&e.path) {
                Some((url, headers)) => match self.check_data_url(url) {
                    Ok(()) => {
                        let refresh = Some(Refresher(Arc::new(PresignedRefresher {
                            mlflow: self.clone(),
                            run_id: run_id.to_string(),
                            path: e.path.clone(),
                        })));
                        (url.clone(), headers.clone(), refresh)
                    }
                    Err(why) => {
                        resolved.listing.failures.push((rel, format!("presigned URL not allowed: {why}")));
                        continue;
                    }
                },
                None => {
                    let url = self.proxy_url(run_id, root.as_deref(), &e.path);
                    let headers = auth.iter().map(|a| ("authorization".to_string(), a.clone())).collect();
                    (url, headers, None)
                }
            };
            resolved.listing.files.push(RemoteFile {
                rel,
                url: url.into(),
                size: e.size,
                md5: None,
                check: None,
                etag: None,
                refresh,
                protocol: Protocol::Plain(headers),
            });
        }
        Ok(resolved)
    }

    /// The run's whole artifact tree (`<DEST>/artifacts/...`).
    pub async fn default_artifacts(&self, job: &Job) -> Result<Resolved, Error> {
        self.resolve(job, "").await
    }

    /// The artifact path of registered model version `NAME/VERSION` inside `job`'s artifacts.
    async fn model_version_path(&self, job: &Job, spec: &str) -> Result<String, OutputError> {
        let shown = format!("{MODEL_OUTPUT_PREFIX}{}", crate::safepath::printable(spec));
        let Some((name, version)) = spec.rsplit_once('/').filter(|(n, v)| !n.is_empty() && !v.is_empty()) else {
            return Err(OutputError::Fatal(Error::usage(format!(
                "invalid model output '{shown}': expected {MODEL_OUTPUT_PREFIX}NAME/VERSION"
            ))));
        };
        let auth = self.authorization().await?;
        let url = self.endpoint(MODEL_VERSION_GET, &[("name", name), ("version", version)]);
        let v = self
            .call(reqwest::Method::GET, url, None, auth.as_deref())
            .await
            .map_err(|e| OutputError::Fatal(self.fatal(e, &format!("registered model version '{shown}'"))))?;
        let mv = v.get("model_version").unwrap_or(&Value::Null);
        let s = |k: &str| mv.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        if s("run_id").is_some_and(|r| r != job.name) {
            return Err(OutputError::Failed(format!(
                "model version '{shown}' was logged by run '{}', not by run '{}'",
                s("run_id").unwrap_or_default(),
                job.name
            )));
        }
        let source =
            s("source").ok_or_else(|| OutputError::Failed(format!("model version '{shown}' has no source")))?;
        let run_prefix = format!("runs:/{}/", job.name);
        let path = if let Some(p) = source.strip_prefix(&run_prefix) {
            Some(p.to_string())
        } else {
            Self::root_of(job).and_then(|root| {
                source.strip_prefix(root.trim_end_matches('/')).and_then(|r| r.strip_prefix('/')).map(str::to_string)
            })
        };
        match path.map(|p| p.trim_matches('/').to_string()).filter(|p| !p.is_empty()) {
            Some(p) => Ok(p),
            None => Err(OutputError::Failed(format!(
                "model version '{shown}' is stored at {}, not inside run '{}''s artifacts",
                crate::redact::redact(source),
                job.name
            ))),
        }
    }

    /// One artifact sub-tree (`--output PATH`), e.g. `model` or `checkpoints/step-100`; or
    /// `models:/NAME/VERSION`, a registered model version whose source is a directory of this run.
    pub async fn named_output(&self, job: &Job, name: &str) -> Result<Resolved, OutputError> {
        let path = match name.strip_prefix(MODEL_OUTPUT_PREFIX) {
            Some(spec) => self.model_version_path(job, spec).await?,
            None => name.to_string(),
        };
        let path = path.as_str();
        let r = self.resolve(job, path).await?;
        if r.listing.files.is_empty() && r.listing.failures.is_empty() {
            return Err(OutputError::Fatal(Error::NotFound(format!(
                "run '{}' has no artifacts under '{}' (--output names a directory of the run's artifacts)",
                job.name,
                crate::safepath::printable(path)
            ))));
        }
        Ok(r)
    }
}

/// The headers a presigned URL must be sent with (`headers: [{name, value}]`), minus those the
/// HTTP client owns.
fn presigned_headers(info: &Value) -> Vec<(String, String)> {
    const OWNED: &[&str] = &["host", "content-length", "transfer-encoding", "connection", "range", "if-match"];
    info.get("headers")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .filter_map(|h| {
                    let name = h.get("name")?.as_str()?.trim();
                    let value = h.get("value")?.as_str()?;
                    let ok = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                        && reqwest::header::HeaderValue::from_str(value).is_ok()
                        && !OWNED.iter().any(|o| name.eq_ignore_ascii_case(o));
                    ok.then(|| (name.to_ascii_lowercase(), value.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Asks `credentials-for-read` for a fresh presigned URL of one file after a 403.
struct PresignedRefresher {
    mlflow: Mlflow,
    run_id: String,
    path: String,
}

impl UrlRefresher for PresignedRefresher {
    fn refresh(&self) -> futures_util::future::BoxFuture<'_, Option<Url>> {
        Box::pin(async move {
            let m = &self.mlflow;
            let auth = m.authorization().await.ok()?;
            let map = m.presigned(&self.run_id, std::slice::from_ref(&self.path), auth.as_deref()).await.ok()?;
            let (url, _) = map.get(&self.path)?;
            m.check_data_url(url).ok()?;
            Some(url.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::target::tests::env_of;
    use super::*;

    #[test]
    fn sizes_are_numbers_or_strings() {
        assert_eq!(file_size(Some(&serde_json::json!(42))), Some(42));
        assert_eq!(file_size(Some(&serde_json::json!("42"))), Some(42));
        assert_eq!(file_size(Some(&serde_json::json!("-1"))), None);
        assert_eq!(file_size(Some(&serde_json::json!(-1))), None);
        assert_eq!(file_size(Some(&serde_json::json!("99999999999999999999999"))), None);
        assert_eq!(file_size(None), None);
    }

    #[test]
    fn runs_parse() {
        let v = serde_json::json!({"run":{"info":{"run_id":"abc","status":"RUNNING","run_name":"r1",
            "experiment_id":"7","artifact_uri":"mlflow-artifacts:/7/abc/artifacts"}}});
        let j = parse_run("abc", &v).unwrap();
        assert_eq!(j.status, "RUNNING");
        assert!(j.output_paths);
        assert_eq!(j.job_type, "MLflow run 'r1' in experiment 7");
        assert_eq!(j.outputs["default"].uri.as_deref(), Some("mlflow-artifacts:/7/abc/artifacts"));
        assert!(parse_run("abc", &serde_json::json!({"run":{"info":{}}})).is_err());
        assert!(parse_run("abc", &serde_json::json!([])).is_err());
    }

    #[test]
    fn data_urls() {
        let t = resolve_target_with("http://127.0.0.1:5000/pre", None, &env_of(&[]), None, &|_| {
            Err(std::io::ErrorKind::NotFound.into())
        })
        .unwrap();
        let client = reqwest::Client::new();
        let m = Mlflow::new(
            MetaClient::new(client, crate::retry::RetryConfig::default()),
            t,
            AllowList::new(crate::hosts::Cloud::AzureCloud, &[]).unwrap(),
        );
        let u = m.proxy_url("r1", Some("mlflow-artifacts:/1/r1/artifacts"), "données/a b/c%2F#?.txt");
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:5000/pre/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/donn%C3%A9es/a%20b/c%252F%23%3F.txt"
        );
        let u = m.proxy_url("r1", Some("s3://bucket/1/r1/artifacts"), "a b/c?.txt");
        assert_eq!(u.as_str(), "http://127.0.0.1:5000/pre/get-artifact?path=a+b%2Fc%3F.txt&run_uuid=r1");
        let u = m.proxy_url("r1", Some("mlflow-artifacts://other:5000/1/r1/artifacts"), "x");
        assert!(u.as_str().contains("/get-artifact?"), "{u}");
        assert!(m.check_data_url(&Url::parse("http://127.0.0.1:5000/x").unwrap()).is_ok());
        assert!(m.check_data_url(&Url::parse("http://127.0.0.1:5001/x").unwrap()).is_err());
        assert!(m.check_data_url(&Url::parse("http://127.0.0.2:5000/x").unwrap()).is_err());
        assert!(m.check_data_url(&Url::parse("https://b.s3.amazonaws.com/x?X-Amz-Signature=1").unwrap()).is_ok());
    }

    #[test]
    fn presigned_headers_are_filtered() {
        let info = serde_json::json!({"headers":[{"name":"x-ms-blob-type","value":"BlockBlob"},
            {"name":"Host","value":"evil"},{"name":"bad name","value":"x"},{"name":"x-a","value":"line\nbreak"}]});
        assert_eq!(presigned_headers(&info), vec![("x-ms-blob-type".to_string(), "BlockBlob".to_string())]);
    }
}

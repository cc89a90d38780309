//! Kubeflow Pipelines runs (docs/kfp-s3-api.md): the run from the KFP REST API (`/apis/v2beta1`), its
//! outputs from S3-compatible storage under one run prefix, `<root>/<pipeline>/<run>/`.
//!
//! Order of calls (§0.1): the run (`view=FULL`), its pipeline version when the spec is not inline,
//! its experiment (namespace), a one-key listing per candidate pipeline root, one listing of the
//! run prefix; the files then go to the engine as signed S3 GETs. A v1 (Argo) run has no v2
//! outputs: its artifacts come from the API's `:read` route as archives (§4).
//!
//! The KFP bearer token goes only to the KFP base the user gave; S3 requests are signed for the
//! configured S3 endpoint only (a root's `?endpoint=` is dropped, never contacted).
pub mod layout;
pub mod read;

use super::{ArchiveSource, Job, Listing, OutputError, OutputSpec, Resolved, S3Listed, s3_fatal};
use crate::error::Error;
use crate::http::{CallError, JsonRequest, MetaClient};
use crate::s3::{S3Client, S3Config};
use crate::transfer::SignHook;
use layout::{Layout, is_logs};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use url::Url;

/// Terminal run states (§3.3).
pub const TERMINAL: &[&str] = &["SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"];

/// The name of a v1 task's log artifact (its entries go to `artifacts/<task>/`).
const V1_LOGS: &str = "main-logs";

/// Most Pod nodes read from one v1 workflow manifest.
const MAX_V1_NODES: usize = 100_000;

pub use crate::settings::S3Settings;

/// A Kubeflow Pipelines API (cheap to clone: clients and caches are shared).
#[derive(Clone)]
pub struct Kfp {
    meta: MetaClient,
    /// API base without a trailing `/`.
    base: Url,
    /// Bearer token for the API only, and where it came from (named when the API refuses it).
    /// Secret.
    token: Option<(String, String)>,
    s3: S3Settings,
    /// `--pipeline-root`.
    pipeline_root: Option<String>,
    /// `--namespace`: the profile namespace run listings are scoped to (multi-user Kubeflow).
    namespace: Option<String>,
    /// The run's HTTP client and data retry policy (S3 listings).
    client: reqwest::Client,
    retry: crate::retry::RetryConfig,
    /// Resolved outputs per run id.
    runs: Arc<Mutex<HashMap<String, Arc<RunData>>>>,
    /// The last run JSON fetched per run id.
    fetched: Arc<Mutex<HashMap<String, Arc<Value>>>>,
}

/// What a finished run's outputs are.
enum RunData {
    /// v2: objects under one run prefix (and, from the new API, cached outputs elsewhere).
    V2 {
        layout: Layout,
        /// One client per bucket; `Item::bucket` indexes it (0: the run prefix's bucket).
        buckets: Vec<Bucket>,
    },
    /// v1 (Argo): `:read` archives per (task, artifact).
    V1 { artifacts: Vec<V1Artifact> },
}

/// A bucket the run's outputs are in, and the signer of its data requests.
struct Bucket {
    s3: S3Client,
    hook: SignHook,
}

impl Bucket {
    fn new(s3: S3Client) -> Self {
        let hook = SignHook(Arc::new(s3.signer().clone()));
        Bucket { s3, hook }
    }
}

/// One artifact of a v1 run's Pod node.
#[derive(Debug, Clone, PartialEq)]
struct V1Artifact {
    /// The task directory (`displayName`, plus the node id when several Pods share it).
    task: String,
    /// The artifact name.
    name: String,
    /// The Argo node id.
    node: String,
}

/// Check the user-given KFP API base: http(s), a host, no user info, query or fragment; plain http
/// only to a loopback host or with `--allow-http`. Returned without a trailing `/`.
pub fn parse_endpoint(raw: &str, allow_http: bool) -> Result<Url, Error> {
    let bad = |why: String| Error::usage(format!("invalid --kfp-endpoint / KF_PIPELINES_ENDPOINT: {why}"));
    let mut url = Url::parse(raw.trim()).map_err(|e| bad(format!("'{}': {e}", crate::redact::redact(raw))))?;
    crate::hosts::check_user_endpoint(&url, allow_http, "Kubeflow Pipelines endpoint").map_err(bad)?;
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

impl Kfp {
    /// A KFP API at `base` (checked by [`parse_endpoint`]).
    pub fn new(
        meta: MetaClient,
        base: Url,
        token: Option<(String, String)>,
        s3: S3Settings,
        pipeline_root: Option<String>,
        retry: crate::retry::RetryConfig,
    ) -> Self {
        let client = meta.client().clone();
        if let Some((t, _)) = &token {
            crate::redact::register_secret(t);
        }
        Kfp {
            meta,
            base,
            token,
            s3,
            pipeline_root,
            namespace: None,
            client,
            retry,
            runs: Arc::default(),
            fetched: Arc::default(),
        }
    }

    /// Scope run listings to a profile namespace (`--namespace`; blank means none).
    pub fn with_namespace(mut self, namespace: Option<String>) -> Self {
        self.namespace = namespace.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        self
    }

    /// `<base>/apis/<version>/<segments…>`: every segment percent-encoded as one path segment.
    fn api(&self, version: &str, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty().push("apis").push(version).extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn get(&self, url: Url) -> Result<Value, CallError> {
        let req = JsonRequest {
            method: reqwest::Method::GET,
            url,
            bearer: self.token.as_ref().map(|(t, _)| t.clone()),
            body: None,
            features: None,
        };
        self.meta.json(&req).await
    }

    /// Map a failed API call to a run-ending error (§3.1: 400 → 2, 401/403 → 3, 404 → 4).
    fn fatal(&self, e: CallError, what: &str) -> Error {
        if e.status() == Some(400) {
            return Error::Usage(format!("{what}: the Kubeflow Pipelines API refused the request ({e})"));
        }
        let hint = match &self.token {
            Some((_, from)) => format!(
                "the API refused the token from {from}: replace it with a valid, unexpired one (behind the \
                 multi-user gateway: a token of an identity that may read the run's namespace)"
            ),
            None => "give the API's bearer token in JOBDL_ACCESS_TOKEN or --kfp-token-file (behind the multi-user \
                     gateway: a token of an identity that may read the run's namespace)"
                .to_string(),
        };
        super::fatal_with_hint(e, what, &hint)
    }

    /// GET the run (the gate polls this; its outputs are resolved by [`Self::describe`]).
    pub async fn get_job(&self, run_id: &str) -> Result<Job, Error> {
        let what = format!("Kubeflow run '{run_id}'");
        let run = self
            .get(self.api("v2beta1", &["runs", run_id], &[("view", "FULL")]))
            .await
            .map_err(|e| self.fatal(e, &what))?;
        if !run.is_object() {
            return Err(Error::Protocol(format!("{what}: malformed response (not an object)")));
        }
        let status = match run.get("state").and_then(Value::as_str).map(str::trim) {
            Some(s) if !s.is_empty() => crate::safepath::printable(s),
            _ => "RUNTIME_STATE_UNSPECIFIED".to_string(),
        };
        if let Ok(mut m) = self.fetched.lock() {
            m.insert(run_id.to_string(), Arc::new(run.clone()));
        }
        Ok(Job {
            name: run_id.to_string(),
            status,
            job_type: "Kubeflow pipeline run".into(),
            created: super::timestamp(run.get("created_at").and_then(Value::as_str)),
            task_outputs: true,
            ..Job::default()
        })
    }

    /// The API's recent runs (`jobdl jobs`), newest first: `GET runs?sort_by=created_at desc`,
    /// from the v2beta1 API, or the v1beta1 one when the server has no v2 API (404); scoped to
    /// the `--namespace` profile when one is given.
    pub async fn list_jobs(&self, q: &super::jobs::JobQuery) -> Result<super::jobs::JobList, Error> {
        use super::jobs::{JobList, JobSummary, text};
        let mut list = JobList::default();
        if q.limit == 0 {
            return Ok(list);
        }
        let what = "Kubeflow run listing";
        let size = if q.statuses == super::jobs::StatusFilter::default() { q.limit.min(100) } else { 100 };
        let size = size.to_string();
        let mut version = "v2beta1";
        let mut token: Option<String> = None;
        let mut pages = crate::http::Pages::new("next_page_token", super::jobs::MAX_PAGES);
        loop {
            let mut query = vec![("page_size", size.as_str()), ("sort_by", "created_at desc")];
            // Multi-user Kubeflow lists the runs of one profile namespace: v2beta1 takes it as
            // `namespace`, v1beta1 as a NAMESPACE resource reference.
            if let Some(ns) = self.namespace.as_deref() {
                if version == "v2beta1" {
                    query.push(("namespace", ns));
                } else {
                    query.push(("resource_reference_key.type", "NAMESPACE"));
                    query.push(("resource_reference_key.id", ns));
                }
            }
            if let Some(t) = &token {
                query.push(("page_token", t.as_str()));
            }
            let page = match self.get(self.api(version, &["runs"], &query)).await {
                Ok(p) => p,
                Err(e) if version == "v2beta1" && token.is_none() && e.status() == Some(404) => {
                    version = "v1beta1";
                    continue;
                }
                Err(e) if e.status() == Some(400) && self.namespace.is_none() => {
                    return Err(Error::Usage(format!(
                        "{what}: the Kubeflow Pipelines API refused the request ({e}); a multi-user \
                         Kubeflow lists the runs of one profile: give its namespace with --namespace NS, \
                         JOBDL_KFP_NAMESPACE or kfp_namespace in jobdl.toml"
                    )));
                }
                Err(e) => return Err(self.fatal(e, what)),
            };
            if !page.is_object() {
                return Err(Error::Protocol(format!("{what}: malformed page (not an object)")));
            }
            for run in page.get("runs").and_then(Value::as_array).into_iter().flatten() {
                let v1 = version == "v1beta1";
                let id = if v1 { text(run.get("id")) } else { text(run.get("run_id")) };
                let Some(name) = id else { continue };
                let experiment = if v1 {
                    run.get("resource_references").and_then(Value::as_array).into_iter().flatten().find_map(|r| {
                        let key = r.get("key")?;
                        (key.get("type").and_then(Value::as_str) == Some("EXPERIMENT"))
                            .then(|| text(r.get("name")).or_else(|| text(key.get("id"))))
                            .flatten()
                    })
                } else {
                    text(run.get("experiment_id"))
                };
                let job = JobSummary {
                    name,
                    status: text(run.get(if v1 { "status" } else { "state" })).unwrap_or_default(),
                    created: super::timestamp(run.get("created_at").and_then(Value::as_str)),
                    job_type: None,
                    display_name: text(run.get(if v1 { "name" } else { "display_name" })),
                    experiment,
                };
                if list.take(job, q) {
                    return Ok(list.finish());
                }
            }
            token = pages
                .next(page.get("next_page_token").and_then(Value::as_str))
                .map_err(|stop| Error::Protocol(format!("{what}: {stop}")))?;
            if token.is_none() {
                return Ok(list.finish());
            }
        }
    }

    /// A run with its outputs (for `show`, `ls`, `--output` and `--all-outputs`): where they are
    /// is resolved once, after the gate, so a failing store ends the run instead of being waited
    /// on. The gate lets through a finished run, or (`--allow-running`) one that is not: then the
    /// outputs are those its tasks have written so far.
    pub async fn describe(&self, mut job: Job) -> Result<Job, Error> {
        let run_id = job.name.clone();
        let run = self
            .fetched
            .lock()
            .ok()
            .and_then(|m| m.get(&run_id).cloned())
            .ok_or_else(|| Error::Protocol(format!("Kubeflow run '{run_id}': described before it was fetched")))?;
        let (data, notes) = self.resolve(&run_id, &run).await?;
        job.notes.extend(notes);
        match &*data {
            RunData::V2 { layout, buckets } => {
                for (name, _) in layout.outputs() {
                    let (task, output) = name.split_once('/').unwrap_or((&name, ""));
                    let uri = layout
                        .items
                        .iter()
                        .find(|i| i.task == task && i.output == output)
                        .and_then(|i| Some(object_uri(&buckets.get(i.bucket)?.s3, &i.object.key, &i.path)));
                    job.outputs
                        .insert(name.clone(), OutputSpec { kind: "artifact".into(), uri, ..OutputSpec::default() });
                }
            }
            RunData::V1 { artifacts } => {
                for a in artifacts.iter().filter(|a| a.name != V1_LOGS) {
                    job.outputs.insert(
                        format!("{}/{}", a.task, a.name),
                        OutputSpec { kind: "argo-artifact".into(), ..OutputSpec::default() },
                    );
                }
            }
        }
        for name in job.outputs.keys() {
            if let Some((_, output)) = name.rsplit_once('/') {
                job.output_aliases.entry(output.to_string()).or_default().push(name.clone());
            }
        }
        Ok(job)
    }

    /// Resolve (once per run) where the run's outputs are, with the notes that turned up (only
    /// the first time).
    async fn resolve(&self, run_id: &str, run: &Value) -> Result<(Arc<RunData>, Vec<String>), Error> {
        if let Some(d) = self.runs.lock().ok().and_then(|m| m.get(run_id).cloned()) {
            return Ok((d, Vec::new()));
        }
        let mut notes = Vec::new();
        let data = Arc::new(self.resolve_uncached(run_id, run, &mut notes).await?);
        if let Ok(mut m) = self.runs.lock() {
            m.insert(run_id.to_string(), data.clone());
        }
        Ok((data, notes))
    }

    async fn resolve_uncached(&self, run_id: &str, run: &Value, notes: &mut Vec<String>) -> Result<RunData, Error> {
        let (pipeline, spec) = match self.pipeline_name(run_id, run).await? {
            Some(p) => p,
            None => {
                // No v2 pipeline name: a v1 (Argo) run, whose spec is a workflow.
                if let Some(artifacts) = self.v1_artifacts(run_id, notes).await? {
                    return Ok(RunData::V1 { artifacts });
                }
                return Err(Error::Protocol(format!(
                    "Kubeflow run '{run_id}': its pipeline name (pipeline_spec.pipelineInfo.name) is unknown, so the \
                     run's outputs cannot be located"
                )));
            }
        };
        let namespace = self.namespace(run).await;
        let mut candidates: Vec<(String, &'static str)> = Vec::new();
        if let Some(r) = self.pipeline_root.as_deref().filter(|r| !r.trim().is_empty()) {
            candidates.push((r.trim().to_string(), "--pipeline-root"));
        } else {
            if let Some(r) = run
                .get("runtime_config")
                .and_then(|c| c.get("pipeline_root"))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|r| !r.is_empty())
            {
                candidates.push((r.to_string(), "the run's runtime_config.pipeline_root"));
            }
            if let Some(ns) = &namespace {
                candidates.push((layout::multi_user_root(ns), "the multi-user default of its namespace"));
            }
            candidates.push((layout::DEFAULT_ROOT.to_string(), "the standalone default"));
        }
        let config = self.s3.config().map_err(|e| match e {
            Error::Auth { message, hint } => Error::Auth {
                message,
                hint: format!(
                    "{hint}; a Kubeflow store's keys are in the Secret mlpipeline-minio-artifact: `kubectl -n kubeflow get \
                     secret mlpipeline-minio-artifact -o jsonpath='{{.data.accesskey}}' | base64 -d` (and .data.secretkey)"
                ),
            },
            other => other,
        })?;
        let (mut tried, mut denied, mut seen) = (Vec::new(), 0usize, Vec::new());
        let mut found: Option<(Layout, Bucket, String)> = None;
        for (raw, why) in candidates {
            let root = layout::parse_root(&raw).map_err(Error::Usage)?;
            if seen.contains(&root) {
                continue;
            }
            seen.push(root.clone());
            require_endpoint(&root.uri, why, &config)?;
            let s3 = self.s3_client(&config, &root.bucket)?;
            let prefix = root.run_prefix(&pipeline, run_id);
            let shown = format!("{}/{pipeline}/{run_id}/", root.uri);
            match s3.probe(&prefix).await {
                Ok(true) => {
                    crate::log::log(0, format!("reading the run's outputs from {shown} ({why})"));
                    let (objects, bad) = s3.list(&prefix).await.map_err(|e| s3_fatal(e, &shown))?;
                    let mut layout = Layout::group(&prefix, objects);
                    layout.failures.extend(bad.into_iter().map(|(k, reason)| {
                        (crate::safepath::printable(k.strip_prefix(prefix.as_str()).unwrap_or(&k)), reason)
                    }));
                    found = Some((layout, Bucket::new(s3), prefix));
                    break;
                }
                Ok(false) => tried.push(format!("{shown} (empty)")),
                Err(e)
                    if e.status() == Some(403)
                        && !matches!(&e, CallError::Status { code: Some(c), .. } if c == "RequestTimeTooSkewed") =>
                {
                    denied += 1;
                    tried.push(format!("{shown} (access denied: {e})"));
                }
                Err(e) if e.status() == Some(404) => tried.push(format!("{shown} (no such bucket)")),
                Err(e) => return Err(s3_fatal(e, &shown)),
            }
        }
        let (mut layout, mut buckets, prefix) = match found {
            Some((l, b, p)) => (l, vec![b], Some(p)),
            None => (Layout::default(), Vec::new(), None),
        };
        // The new API names every output's exact URI, cached tasks' included (§3.6).
        if let Some(artifacts) = layout::task_artifacts(run) {
            let listed = run.get("tasks").and_then(Value::as_array).map_or(0, Vec::len);
            let count = run
                .get("task_count")
                .and_then(|c| c.as_u64().or_else(|| c.as_str().and_then(|s| s.parse().ok())))
                .unwrap_or(0);
            if count > listed as u64 {
                notes.push(format!(
                    "note: the run has {count} tasks but the API listed {listed}; outputs of the others are found \
                     only if they are under the run prefix"
                ));
            }
            self.add_exact_outputs(&config, &artifacts, prefix.as_deref(), &mut layout, &mut buckets, notes).await?;
        }
        if !buckets.is_empty() {
            note_missing(&spec, &layout, notes);
            return Ok(RunData::V2 { layout, buckets });
        }
        if denied == tried.len() && denied > 0 {
            return Err(Error::Auth {
                message: format!(
                    "Kubeflow run '{run_id}': S3 access denied to every pipeline root: {}",
                    tried.join("; ")
                ),
                hint: "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (KFP's keys are in the Secret \
                       mlpipeline-minio-artifact of the run's namespace) and --s3-endpoint"
                    .into(),
            });
        }
        if let Some(artifacts) = self.v1_artifacts(run_id, notes).await? {
            return Ok(RunData::V1 { artifacts });
        }
        Err(Error::NotFound(format!(
            "Kubeflow run '{run_id}': no outputs found; tried {}; give the root with --pipeline-root",
            tried.join(", ")
        )))
    }

    /// Add the outputs the new API names by URI that the run prefix's listing did not cover
    /// (cached tasks' outputs under an earlier run's prefix, other buckets); name those that have
    /// no URI or one jobdl does not read.
    async fn add_exact_outputs(
        &self,
        config: &S3Config,
        artifacts: &[layout::TaskArtifact],
        run_prefix: Option<&str>,
        layout: &mut Layout,
        buckets: &mut Vec<Bucket>,
        notes: &mut Vec<String>,
    ) -> Result<(), Error> {
        for a in artifacts {
            let name = format!("{}/{}", crate::safepath::printable(&a.task), crate::safepath::printable(&a.output));
            let Some(uri) = &a.uri else {
                notes
                    .push(format!("note: output {name} has no URI (a value only, e.g. a metric): nothing to download"));
                continue;
            };
            let Some((bucket, key)) = layout::parse_output_uri(uri) else {
                notes.push(format!(
                    "note: output {name} is at {}: not read (jobdl reads minio:// and s3:// outputs only)",
                    crate::redact::redact(uri)
                ));
                continue;
            };
            let in_prefix = buckets.first().is_some_and(|b| b.s3.bucket_name() == bucket)
                && run_prefix.is_some_and(|p| key.starts_with(p));
            if in_prefix {
                continue;
            }
            let shown = format!("s3://{bucket}/{}", crate::safepath::printable(&key));
            require_endpoint(uri, "a task output's URI", config)?;
            let index = match buckets.iter().position(|b| b.s3.bucket_name() == bucket) {
                Some(i) => i,
                None => {
                    buckets.push(Bucket::new(self.s3_client(config, &bucket)?));
                    buckets.len() - 1
                }
            };
            if a.state == "CACHED" {
                crate::log::log(0, format!("task {} was cached: its output {name} comes from {shown}", a.task));
            }
            match buckets[index].s3.list(&key).await {
                Ok((objects, _)) => {
                    if layout.add_exact(&a.task, &a.output, &key, index, objects) == 0 {
                        notes.push(format!("note: output {name}: nothing at {shown} (never written?)"));
                    }
                }
                Err(e) => layout.failures.push((name.clone(), format!("listing {shown} failed: {e}"))),
            }
        }
        Ok(())
    }

    fn s3_client(&self, config: &S3Config, bucket: &str) -> Result<S3Client, Error> {
        let s3 = S3Client::new(self.client.clone(), self.retry.clone(), config, bucket).map_err(Error::Usage)?;
        if config.endpoint.is_none() {
            crate::hosts::check_aws_s3(s3.bucket_url()).map_err(Error::Usage)?;
        }
        Ok(s3)
    }

    /// `pipelineInfo.name` of the inline spec, else of the referenced pipeline version, with the
    /// spec it came from.
    async fn pipeline_name(&self, run_id: &str, run: &Value) -> Result<Option<(String, Value)>, Error> {
        if let Some(spec) = run.get("pipeline_spec")
            && let Some(name) = layout::pipeline_name(spec)
        {
            return Ok(Some((name, spec.clone())));
        }
        let reference = run.get("pipeline_version_reference");
        let id = |k: &str| {
            reference
                .and_then(|r| r.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && crate::safepath::safe_component(s).is_ok())
        };
        let (Some(pid), Some(vid)) = (id("pipeline_id"), id("pipeline_version_id")) else {
            return Ok(None);
        };
        let what = format!("pipeline version '{vid}' of Kubeflow run '{run_id}'");
        let v = self
            .get(self.api("v2beta1", &["pipelines", pid, "versions", vid], &[]))
            .await
            .map_err(|e| self.fatal(e, &what))?;
        Ok(v.get("pipeline_spec").and_then(|spec| Some((layout::pipeline_name(spec)?, spec.clone()))))
    }

    /// The namespace of the run's experiment (multi-user installs); `None` when there is none or
    /// it cannot be read (the next root candidates still apply).
    async fn namespace(&self, run: &Value) -> Option<String> {
        let eid = run
            .get("experiment_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && crate::safepath::safe_component(s).is_ok())?;
        match self.get(self.api("v2beta1", &["experiments", eid], &[])).await {
            Ok(v) => v
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|n| !n.is_empty() && crate::safepath::safe_component(n).is_ok())
                .map(str::to_string),
            Err(e) => {
                crate::log::log(0, format!("warning: the run's experiment could not be read ({e}); namespace unknown"));
                None
            }
        }
    }

    /// The artifacts of a v1 (Argo) run from its workflow manifest (§4); `None` when the run has
    /// none (a v2 run: 404 or no manifest).
    async fn v1_artifacts(&self, run_id: &str, notes: &mut Vec<String>) -> Result<Option<Vec<V1Artifact>>, Error> {
        let what = format!("Kubeflow run '{run_id}' (v1 API)");
        let v = match self.get(self.api("v1beta1", &["runs", run_id], &[])).await {
            Ok(v) => v,
            Err(e) if matches!(e.status(), Some(404 | 400)) => return Ok(None),
            Err(e) => return Err(self.fatal(e, &what)),
        };
        let Some(manifest) = v.get("pipeline_runtime").and_then(|p| p.get("workflow_manifest")).and_then(Value::as_str)
        else {
            return Ok(None);
        };
        if manifest.trim().is_empty() {
            return Ok(None);
        }
        let wf: Value = serde_json::from_str(manifest)
            .map_err(|e| Error::Protocol(format!("{what}: the workflow manifest is not JSON: {e}")))?;
        let artifacts = v1_from_manifest(&wf, notes);
        Ok((!artifacts.is_empty()).then_some(artifacts))
    }

    /// The URL of a v1 artifact's `:read` route.
    fn read_url(&self, run_id: &str, a: &V1Artifact) -> Url {
        let mut url = self.api("v2beta1", &["runs", run_id, "nodes", &a.node, "artifacts"], &[]);
        if let Ok(mut p) = url.path_segments_mut() {
            p.push(&format!("{}:read", a.name));
        }
        url
    }

    fn archive(&self, run_id: &str, a: &V1Artifact, rel: String) -> ArchiveSource {
        let mut headers = vec![("accept".to_string(), "application/json".to_string())];
        headers.extend(self.token.iter().map(|(t, _)| ("authorization".to_string(), format!("Bearer {t}"))));
        let decoder = crate::transfer::Decoder(Arc::new(read::ReadBody));
        ArchiveSource { rel, url: self.read_url(run_id, a), headers, decoder }
    }

    fn data(&self, job: &Job) -> Result<Arc<RunData>, Error> {
        self.runs.lock().ok().and_then(|m| m.get(&job.name).cloned()).ok_or_else(|| {
            Error::Protocol(format!("Kubeflow run '{}': outputs requested before the run was resolved", job.name))
        })
    }

    /// Every task's logs: `executor-logs[-n]` (v2) or `main-logs` (v1) into `artifacts/<task>/`.
    pub async fn default_artifacts(&self, job: &Job) -> Result<Resolved, Error> {
        let data = self.data(job)?;
        let mut resolved = Resolved::default();
        match &*data {
            RunData::V2 { layout, buckets } => {
                let mut wanted = Vec::new();
                for item in layout.items.iter().filter(|i| is_logs(&i.output)) {
                    wanted.push((item, format!("{}/{}", item.task, layout.rel_in_task(item))));
                }
                let outputs = layout.outputs();
                if wanted.is_empty() && !outputs.is_empty() {
                    // KFP < 2.5, or PUBLISH_LOGS turned off: no logs, but outputs the user may want.
                    resolved.notes.push(format!(
                        "note: run '{}' has no executor-logs (KFP before 2.5, or log publishing turned off), so \
                         artifacts/ stays empty; its outputs are {} (--output TASK/OUTPUT, --all-outputs)",
                        job.name,
                        outputs.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                    ));
                }
                resolved.listing = files(buckets, wanted).await;
                resolved.strays = layout.failures.clone();
            }
            RunData::V1 { artifacts } => {
                for a in artifacts.iter().filter(|a| a.name == V1_LOGS) {
                    resolved.archives.push(self.archive(&job.name, a, a.task.clone()));
                }
            }
        }
        Ok(resolved)
    }

    /// One output, `TASK/OUTPUT`, into `named-outputs/TASK/[<execution>/]OUTPUT[/…]`.
    pub async fn named_output(&self, job: &Job, name: &str) -> Result<Resolved, OutputError> {
        let data = self.data(job)?;
        let Some((task, output)) = name.split_once('/') else {
            return Err(OutputError::Failed(format!("'{name}' is not TASK/OUTPUT")));
        };
        let mut resolved = Resolved { subdir: Some(task.to_string()), ..Resolved::default() };
        match &*data {
            RunData::V2 { layout, buckets } => {
                let wanted: Vec<_> = layout
                    .items
                    .iter()
                    .filter(|i| i.task == task && i.output == output)
                    .map(|i| (i, layout.rel_in_task(i)))
                    .collect();
                let listing = files(buckets, wanted).await;
                if listing.files.is_empty() && listing.failures.is_empty() {
                    return Err(OutputError::Failed(format!("output '{name}' has no files")));
                }
                resolved.listing = listing;
            }
            RunData::V1 { artifacts } => {
                // A v1 task directory may itself be `<task>/<node id>` (several Pods of one task).
                for a in artifacts.iter().filter(|a| a.name != V1_LOGS && format!("{}/{}", a.task, a.name) == name) {
                    resolved.subdir = Some(a.task.clone());
                    resolved.archives.push(self.archive(&job.name, a, a.name.clone()));
                }
                if resolved.archives.is_empty() {
                    return Err(OutputError::Failed(format!("output '{name}' has no artifact")));
                }
            }
        }
        Ok(resolved)
    }
}

/// A `minio://` store is reached only through a user-given endpoint (port-forwarded).
fn require_endpoint(uri: &str, why: &str, config: &S3Config) -> Result<(), Error> {
    if uri.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("minio://")) && config.endpoint.is_none() {
        return Err(Error::usage(format!(
            "the run's outputs are in {} ({why}), a MinIO/SeaweedFS store: give its endpoint with --s3-endpoint \
             (e.g. `kubectl -n kubeflow port-forward svc/seaweedfs 9000:9000` and --s3-endpoint \
             http://127.0.0.1:9000; before KFP 2.15 svc/minio-service)",
            crate::redact::redact(uri.split('?').next().unwrap_or(uri))
        )));
    }
    Ok(())
}

/// The run's objects as files at their planned paths, each with the check its ETag or stored
/// checksum allows (a few HEADs at once, [`super::s3_files`]).
async fn files(buckets: &[Bucket], wanted: Vec<(&layout::Item, String)>) -> Listing {
    let mut failures = Vec::new();
    let mut objects = Vec::new();
    for (item, rel) in wanted {
        let Some(b) = buckets.get(item.bucket) else {
            failures.push((rel, "internal error: unknown bucket".to_string()));
            continue;
        };
        let o = &item.object;
        let listed = S3Listed { key: o.key.clone(), rel, size: o.size, etag: o.etag.clone(), encrypted: false };
        objects.push((&b.s3, &b.hook, listed));
    }
    let mut listing = super::s3_files(objects).await;
    listing.failures.extend(failures);
    listing
}

/// `s3://bucket/<output key>` of an item (for `show`): the object itself for a file output, its
/// directory for a directory output.
fn object_uri(s3: &S3Client, key: &str, path: &str) -> String {
    let dir =
        if path.is_empty() { key } else { key.strip_suffix(path).map(|k| k.trim_end_matches('/')).unwrap_or(key) };
    let bucket = s3.bucket_name();
    format!("s3://{bucket}/{}", crate::safepath::printable(dir))
}

/// Name the outputs the spec declares that have no object under the run prefix (cached
/// tasks, importers, never-written Metrics): they are never dropped silently.
fn note_missing(spec: &Value, layout: &Layout, notes: &mut Vec<String>) {
    let declared = layout::declared_outputs(spec);
    let found = layout.outputs();
    let missing: Vec<String> = declared.into_iter().filter(|d| !found.contains_key(d)).collect();
    if !missing.is_empty() {
        notes.push(format!(
            "note: {} declared output{} not under the run prefix: {} (a cached task's outputs stay under the \
             earlier run's prefix, an importer's output where it was imported from; a never-written output, \
             typical for Metrics, has no object)",
            missing.len(),
            if missing.len() == 1 { " is" } else { "s are" },
            missing.join(", ")
        ));
    }
}

/// Pod nodes and their output artifacts from an Argo workflow (`status.nodes`).
fn v1_from_manifest(wf: &Value, notes: &mut Vec<String>) -> Vec<V1Artifact> {
    let Some(nodes) = wf.get("status").and_then(|s| s.get("nodes")).and_then(Value::as_object) else {
        return Vec::new();
    };
    let pods: Vec<(&str, &str, &Value)> = nodes
        .iter()
        .take(MAX_V1_NODES)
        .filter(|(_, n)| n.get("type").and_then(Value::as_str) == Some("Pod"))
        .filter_map(|(key, n)| {
            let id = n.get("id").and_then(Value::as_str).unwrap_or(key);
            // A display name that is not a safe directory name falls back to the node id.
            let task = n
                .get("displayName")
                .and_then(Value::as_str)
                .filter(|d| crate::safepath::safe_component(d).is_ok())
                .unwrap_or(id);
            Some((id, task, n.get("outputs")?.get("artifacts")?))
        })
        .collect();
    let mut per_task: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, task, _) in &pods {
        *per_task.entry(task).or_default() += 1;
    }
    let mut out = Vec::new();
    for (id, task, arts) in pods {
        let dir = if per_task.get(task).copied().unwrap_or(0) > 1 { format!("{task}/{id}") } else { task.to_string() };
        for a in arts.as_array().into_iter().flatten() {
            let Some(name) = a.get("name").and_then(Value::as_str) else { continue };
            let safe = [id, task, name].iter().all(|s| crate::safepath::safe_component(s).is_ok());
            if !safe {
                notes.push(format!(
                    "warning: v1 artifact '{}' of node '{}' has an unsafe name; not read",
                    crate::safepath::printable(name),
                    crate::safepath::printable(id)
                ));
                continue;
            }
            out.push(V1Artifact { task: dir.clone(), name: name.to_string(), node: id.to_string() });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_are_checked() {
        assert_eq!(parse_endpoint("http://127.0.0.1:8888/", false).unwrap().as_str(), "http://127.0.0.1:8888/");
        assert_eq!(
            parse_endpoint("https://kf.example.invalid/pipeline/", false).unwrap().as_str(),
            "https://kf.example.invalid/pipeline"
        );
        for bad in
            ["http://kf.example.invalid", "ftp://127.0.0.1", "https://u:p@kf.example.invalid", "https://h.invalid/?x=1"]
        {
            let e = parse_endpoint(bad, false).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        assert!(parse_endpoint("http://kf.example.invalid", true).is_ok());
    }

    #[test]
    fn v1_manifests_give_pod_artifacts() {
        let wf = json!({"status": {"nodes": {
            "wf-1": {"id": "wf-1", "type": "DAG", "displayName": "wf"},
            "wf-2": {"id": "wf-2", "type": "Pod", "displayName": "train",
                     "outputs": {"artifacts": [{"name": "main-logs"}, {"name": "model"}, {"name": "../x"}]}},
            "wf-3": {"id": "wf-3", "type": "Pod", "displayName": "loop", "outputs": {"artifacts": [{"name": "a"}]}},
            "wf-4": {"id": "wf-4", "type": "Pod", "displayName": "loop", "outputs": {"artifacts": [{"name": "a"}]}},
            "wf-5": {"id": "wf-5", "type": "Pod", "displayName": "nothing"}}}});
        let mut notes = Vec::new();
        let got: Vec<String> =
            v1_from_manifest(&wf, &mut notes).iter().map(|a| format!("{}|{}|{}", a.task, a.name, a.node)).collect();
        assert_eq!(got, ["train|main-logs|wf-2", "train|model|wf-2", "loop/wf-3|a|wf-3", "loop/wf-4|a|wf-4"]);
        // The unsafe name is not read, and said so in a note the app prints.
        assert_eq!(notes, ["warning: v1 artifact '../x' of node 'wf-2' has an unsafe name; not read"]);
        assert!(v1_from_manifest(&json!({"status": "x"}), &mut notes).is_empty());
    }
}

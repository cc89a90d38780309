//! Where named outputs live (docs/azure-api.md §3.4–§3.7): workspace discovery of the regional API
//! host (validated before it sees a token), run history `rundata`, `batchGetResolvedUris` for
//! data and model assets (batched per kind), and the default datastore used by the probes.
use super::uri::{self, AssetKind, Location};
use super::{AzureMl, DATASTORE_API_VERSION, RUNDATA_API_VERSION, WORKSPACE_API_VERSION};
use crate::error::Error;
use crate::http::{CallError, JsonRequest};
use crate::provider::foundry::{get_ci, str_ci};
use crate::provider::{Job, OutputError};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use url::Url;

/// What run history says about one output.
#[derive(Debug, Clone)]
pub enum Found {
    /// A location, from an asset resolved through `batchGetResolvedUris`.
    Location {
        /// Where the files are.
        location: Location,
        /// A single file (`UriFile`) rather than a folder.
        file: bool,
        /// The asset ID (for messages).
        asset: String,
    },
    /// Nothing usable, and why (for the final message).
    Missing(String),
}

/// An output's asset in run data: (asset ID, type).
type RunOutputs = HashMap<String, (String, String)>;

impl AzureMl {
    /// The run-history resolution of `name`, preparing it if nothing was prepared.
    pub(super) async fn found(&self, job: &Job, name: &str) -> Result<Found, OutputError> {
        let key = (job.name.clone(), name.to_string());
        if let Some(f) = self.inner.found.lock().await.get(&key) {
            return Ok(f.clone());
        }
        self.prepare_outputs(job, &[name.to_string()]).await?;
        let found = self.inner.found.lock().await.get(&key).cloned();
        Ok(found.unwrap_or_else(|| Found::Missing("no asset in run history".into())))
    }

    /// Resolve `names` through run history at once: discovery and `rundata` once, then one
    /// `batchGetResolvedUris` per asset kind. Only ARM/API refusals (401/403) end the run.
    pub async fn prepare_outputs(&self, job: &Job, names: &[String]) -> Result<(), Error> {
        let mut todo: Vec<String> = Vec::new();
        {
            let cache = self.inner.found.lock().await;
            for n in names {
                if n != "default" && !cache.contains_key(&(job.name.clone(), n.clone())) && !todo.contains(n) {
                    todo.push(n.clone());
                }
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let mut out: HashMap<String, Found> = HashMap::new();
        match self.run_outputs(&job.name).await {
            Ok(run) => self.resolve_all(job, &todo, &run, &mut out).await?,
            Err(OutputError::Fatal(e)) => return Err(e),
            Err(e) => {
                for n in &todo {
                    out.insert(n.clone(), Found::Missing(format!("run history unavailable ({e})")));
                }
            }
        }
        let mut cache = self.inner.found.lock().await;
        for (n, f) in out {
            cache.insert((job.name.clone(), n), f);
        }
        Ok(())
    }

    async fn resolve_all(
        &self,
        job: &Job,
        todo: &[String],
        run: &RunOutputs,
        out: &mut HashMap<String, Found>,
    ) -> Result<(), Error> {
        let mut batches: BTreeMap<u8, (AssetKind, Vec<String>)> = BTreeMap::new();
        for n in todo {
            match run.get(n) {
                None => {
                    out.insert(n.clone(), Found::Missing("no asset in run history".into()));
                }
                Some((id, ty)) => match uri::classify(id, ty) {
                    Some(kind) => {
                        let slot = batches.entry(kind as u8).or_insert_with(|| (kind, Vec::new()));
                        if !slot.1.contains(id) {
                            slot.1.push(id.clone());
                        }
                    }
                    None => {
                        out.insert(
                            n.clone(),
                            Found::Missing(format!("run history lists asset {id} of unknown type '{ty}'")),
                        );
                    }
                },
            }
        }
        let mut resolved: HashMap<String, Result<(String, String), String>> = HashMap::new();
        for (kind, ids) in batches.into_values() {
            match self.resolve_assets(kind, &ids).await {
                Ok(map) => resolved.extend(map.into_iter().map(|(k, v)| (k, Ok(v)))),
                Err(OutputError::Fatal(e)) => return Err(e),
                Err(e) => resolved.extend(ids.iter().map(|id| (id.clone(), Err(e.to_string())))),
            }
        }
        for n in todo {
            if out.contains_key(n) {
                continue;
            }
            let Some((id, run_type)) = run.get(n) else { continue };
            let declared = job.outputs.get(n).map(|o| o.kind.as_str()).unwrap_or("");
            let found = match resolved.get(id) {
                None => Found::Missing(format!("asset {id} could not be resolved")),
                Some(Err(e)) => Found::Missing(format!("asset {id} could not be resolved ({e})")),
                Some(Ok((u, ty))) => match uri::parse(u) {
                    Ok(location @ (Location::Datastore { .. } | Location::BlobUrl(_))) => {
                        let ty = [ty.as_str(), run_type.as_str(), declared].into_iter().find(|t| !t.is_empty());
                        Found::Location { location, file: ty.is_some_and(uri::is_file_type), asset: id.clone() }
                    }
                    Ok(Location::Asset { .. }) => Found::Missing(format!("asset {id} resolved to another asset ID")),
                    Err(why) => Found::Missing(format!("asset {id}: {why}")),
                },
            };
            out.insert(n.clone(), found);
        }
        Ok(())
    }

    /// The regional API base (§3.4): workspace → `discoveryUrl` → `api`, both hosts validated,
    /// discovery fetched with no Authorization header. Cached for the run.
    pub(super) async fn api(&self) -> Result<Url, OutputError> {
        if let Some(u) = self.inner.api.lock().await.clone() {
            return Ok(u);
        }
        let ws = self.inner.workspace.clone();
        let url = self.arm_url(&ws, "", WORKSPACE_API_VERSION, &[]);
        let v = self.arm(reqwest::Method::GET, url, None).await.map_err(|e| match e.status() {
            Some(401 | 403) => OutputError::Fatal(self.arm_fatal(e, "get workspace")),
            _ => OutputError::Failed(format!("workspace: {e}")),
        })?;
        let raw = get_ci(&v, "properties")
            .and_then(|p| str_ci(p, "discoveryUrl"))
            .ok_or_else(|| OutputError::Failed("the workspace has no discoveryUrl".into()))?;
        let discovery =
            Url::parse(raw).map_err(|_| OutputError::Failed("the workspace's discoveryUrl is invalid".into()))?;
        let allow = &self.inner.allow;
        allow.check_ml_api(&discovery).map_err(|e| OutputError::Failed(format!("discovery URL not allowed: {e}")))?;
        // No token: discovery is anonymous, and its host is not yet trusted with one.
        let req =
            JsonRequest { method: reqwest::Method::GET, url: discovery, bearer: None, body: None, features: None };
        let doc = self.inner.meta.json(&req).await.map_err(|e| {
            let status = e.status().map(|s| format!("HTTP {s}")).unwrap_or_else(|| e.to_string());
            OutputError::Failed(format!("workspace discovery failed ({status})"))
        })?;
        let api_raw = str_ci(&doc, "api").ok_or_else(|| OutputError::Failed("discovery returned no 'api'".into()))?;
        let api = Url::parse(api_raw.trim_end_matches('/'))
            .map_err(|_| OutputError::Failed("discovery returned an invalid 'api' URL".into()))?;
        if api.query().is_some() || !api.username().is_empty() {
            return Err(OutputError::Failed("discovery returned an unusable 'api' URL".into()));
        }
        allow.check_ml_api(&api).map_err(|e| OutputError::Failed(format!("regional API host not allowed: {e}")))?;
        *self.inner.api.lock().await = Some(api.clone());
        Ok(api)
    }

    /// `{api}{tail}` where `tail` starts with `/`.
    fn api_url(api: &Url, tail: &str) -> Url {
        let mut u = api.clone();
        u.set_path(&format!("{}{tail}", api.path().trim_end_matches('/')));
        u
    }

    /// A POST to the regional API host (already validated) with the ARM token.
    async fn api_post(&self, api: &Url, tail: &str, body: Value) -> Result<Value, CallError> {
        self.api_post_url(api, Self::api_url(api, tail), body).await
    }

    /// A POST of `url` (on the regional API host) with the ARM token.
    async fn api_post_url(&self, api: &Url, url: Url, body: Value) -> Result<Value, CallError> {
        self.bearer_call(reqwest::Method::POST, url, Some(body), Some(api)).await
    }

    /// `rundata`: each output's asset ID and type (§3.5). A run unknown to run history has none.
    async fn run_outputs(&self, job: &str) -> Result<RunOutputs, OutputError> {
        let api = self.api().await?;
        let tail = format!("/history/v1.0{}/rundata", Self::ws_path(&self.inner.workspace));
        let body = serde_json::json!({"runId": job, "selectRunMetadata": true, "selectRunDefinition": true,
            "selectJobSpecification": true});
        let mut url = Self::api_url(&api, &tail);
        url.query_pairs_mut().append_pair("api-version", RUNDATA_API_VERSION);
        let v = match self.api_post_url(&api, url, body).await {
            Ok(v) => v,
            Err(e) if e.status() == Some(404) => return Ok(RunOutputs::new()),
            Err(e) if matches!(e.status(), Some(401 | 403)) => {
                return Err(OutputError::Fatal(self.arm_fatal(e, "run history")));
            }
            Err(e) => return Err(OutputError::Failed(format!("run history: {e}"))),
        };
        let mut out = RunOutputs::new();
        let outputs = get_ci(&v, "runMetadata").and_then(|m| get_ci(m, "outputs")).and_then(Value::as_object);
        for (name, o) in outputs.into_iter().flatten() {
            if let Some(id) = str_ci(o, "assetId") {
                out.insert(name.clone(), (id.to_string(), str_ci(o, "type").unwrap_or("").to_string()));
            }
        }
        Ok(out)
    }

    /// `batchGetResolvedUris` for assets of one kind (§3.6): asset ID → (URI, type). The URI is in
    /// `uri` for data and `path` for models; both keys are read in both responses.
    async fn resolve_assets(
        &self,
        kind: AssetKind,
        ids: &[String],
    ) -> Result<HashMap<String, (String, String)>, OutputError> {
        let api = self.api().await?;
        let w = Self::ws_path(&self.inner.workspace);
        let tail = match kind {
            AssetKind::Data => format!("/data/v1.0{w}/dataversion/batchGetResolvedUris"),
            AssetKind::Model => format!("/modelregistry/v1.0{w}/models/batchGetResolvedUris"),
        };
        let v =
            self.api_post(&api, &tail, serde_json::json!({ "values": ids })).await.map_err(|e| match e.status() {
                Some(401 | 403) => OutputError::Fatal(self.arm_fatal(e, "asset resolution")),
                _ => OutputError::Failed(format!("batchGetResolvedUris: {e}")),
            })?;
        let mut out = HashMap::new();
        for (id, o) in get_ci(&v, "values").and_then(Value::as_object).into_iter().flatten() {
            if let Some(u) = str_ci(o, "uri").or_else(|| str_ci(o, "path")) {
                out.insert(id.clone(), (u.to_string(), str_ci(o, "type").unwrap_or("").to_string()));
            }
        }
        Ok(out)
    }

    /// The workspace's default datastore (for probes), asked only when a probe is needed.
    pub(super) async fn default_datastore(&self) -> Result<String, OutputError> {
        if let Some(d) = self.inner.default_store.lock().await.clone() {
            return Ok(d);
        }
        let ws = self.inner.workspace.clone();
        // The query azure-ai-ml sends (recorded): the default datastore is the first of one page.
        let url = self.arm_url(
            &ws,
            "datastores",
            DATASTORE_API_VERSION,
            &[("count", "30"), ("isDefault", "true"), ("orderByAsc", "false")],
        );
        let v = self.arm(reqwest::Method::GET, url, None).await.map_err(|e| match e.status() {
            Some(401 | 403) => OutputError::Fatal(self.arm_fatal(e, "list datastores")),
            _ => OutputError::Failed(format!("default datastore: {e}")),
        })?;
        let name = get_ci(&v, "value")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|d| str_ci(d, "name"))
            .ok_or_else(|| OutputError::Failed("the workspace has no default datastore".into()))?
            .to_string();
        *self.inner.default_store.lock().await = Some(name.clone());
        Ok(name)
    }
}

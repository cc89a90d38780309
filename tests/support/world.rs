//! Fixtures served by the test emulator: jobs, artifacts, blobs and registered assets (Foundry),
//! and an Azure ML workspace's datastores and run-history assets (Path B).

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde_json::{Value, json};

/// The bearer token every Foundry route expects.
pub const TOKEN: &str = "test-token";
/// The `secret` header the emulated managed-identity endpoint expects.
pub const MSI_SECRET: &str = "msi-secret-for-tests";
/// The storage account of the blob role (path-style URLs).
pub const ACCOUNT: &str = "devstoreaccount1";
/// The Foundry project name in the project endpoint.
pub const PROJECT: &str = "proj-a";
/// The container holding run artifacts.
pub const ARTIFACT_CONTAINER: &str = "azureml";
/// The experiment ID jobs get unless a fixture says otherwise.
pub const EXPERIMENT_ID: &str = "6f1c0d2e-0000-4000-8000-000000000001";

/// Subscription of the emulated Azure ML workspace.
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
/// Resource group of the emulated Azure ML workspace.
pub const RESOURCE_GROUP: &str = "rg";
/// Name of the emulated Azure ML workspace.
pub const WORKSPACE: &str = "ws";
/// The workspace GUID in run-history asset IDs.
pub const WORKSPACE_GUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
/// Azurite's documented development account key: the key of `AccountKey` datastores.
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Everything the emulator serves.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub jobs: Vec<JobFixture>,
    /// container → blob name → blob
    pub containers: BTreeMap<String, BTreeMap<String, BlobFixture>>,
    /// (name, version) → model asset
    pub models: BTreeMap<(String, String), AssetFixture>,
    /// (name, version) → data asset
    pub datasets: BTreeMap<(String, String), AssetFixture>,
    /// Path B: datastores of the workspace, by name.
    pub datastores: BTreeMap<String, DatastoreFixture>,
    /// Path B: data asset ID → where `batchGetResolvedUris` says it is.
    pub arm_data: BTreeMap<String, ResolvedAsset>,
    /// Path B: model asset ID → where `batchGetResolvedUris` says it is.
    pub arm_models: BTreeMap<String, ResolvedAsset>,
    /// Blob role: accept `Authorization: Bearer <TOKEN>` (and `x-ms-version`) instead of a SAS.
    pub blob_bearer: bool,
    /// Managed identity: `GET /msi/token` (header `secret: MSI_SECRET`, the Azure ML compute
    /// protocol) issues `msi-<n>` tokens living this long, which every route accepts until they
    /// expire (storage then answers 401 `InvalidAuthenticationInfo`, as for a stale token).
    pub token_life: Option<std::time::Duration>,
    /// Blob role: containers whose bearer requests are refused (403 AuthorizationPermissionMismatch).
    pub bearer_denied: Vec<String>,
    /// Blob role: verify SAS signatures the emulator did not issue against this account key
    /// (a service SAS minted by the client); without it any such signature is accepted.
    pub sas_key: Option<String>,
    /// Discovery: the `api` value to return instead of the emulator's own base URL.
    pub discovery_api: Option<String>,
    /// Foundry strict mode: jobs/history routes answer 400 without `Foundry-Features:
    /// Jobs=V1Preview`, models routes without `Models=V1Preview` (the REST reference marks the
    /// header required; azure-ai-projects always sends it).
    pub foundry_strict: bool,
    /// Which model-credentials request body the emulator accepts.
    pub model_body: ModelBody,
    /// The per-path `artifacts/contentinfo` route is absent (404 "no such route"), as a route
    /// no current client calls may be; `prefix/contentinfo` still answers.
    pub no_path_contentinfo: bool,
    /// Dataset credentials name the container root in `blobUri` (as the real service does for
    /// a `uri_file` asset: recording `test_datasets_upload_file`); the file is in the asset's
    /// `dataUri` (dataset version GET).
    pub dataset_blob_uri_root: bool,
    /// Blob role: containers whose account has shared-key access disabled: any SAS (issued or
    /// minted) is refused with 403 `KeyBasedAuthenticationNotPermitted` (recording
    /// `test_pipeline_job_download`); bearer requests work as usual.
    pub key_auth_disabled: Vec<String>,
    /// Tracking service (`/mlflow/v1.0/<W>/api/2.0/mlflow/metrics/get-history`): job → metric
    /// key → `(step, value)` history, served two values a page.
    pub metrics: BTreeMap<String, BTreeMap<String, Vec<(i64, f64)>>>,
    /// The job JSON's `properties.services.Tracking.endpoint` instead of the emulator's own.
    pub tracking_endpoint: Option<String>,
}

/// The model-credentials POST bodies the emulator accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ModelBody {
    /// Either casing, any api-version (the emulator's original leniency).
    #[default]
    Any,
    /// Only the REST reference's `{"blobUri": …}` (camelCase, nothing else); 400 otherwise.
    Documented,
    /// Only azd's `{"BlobUri": …, "GenerateBlobLevelReadSas": …}` at `2026-01-15-preview`.
    Azd,
}

/// How a Path B datastore hands out access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsCred {
    /// `credentialsType: Sas`; listSecrets returns a container SAS (with a leading `?`).
    Sas,
    /// `credentialsType: AccountKey`; listSecrets returns [`DEV_ACCOUNT_KEY`] (set `World::sas_key`
    /// to it, or to another key to see the minted SAS refused).
    AccountKey,
    /// `credentialsType: None` (identity-based); listSecrets is refused with 400.
    Identity,
    /// `credentialsType: Sas`, but listSecrets answers 403 (the caller lacks the permission).
    SecretsDenied,
}

/// A Path B datastore.
#[derive(Clone, Debug)]
pub struct DatastoreFixture {
    /// `datastoreType` (`AzureBlob`, `AzureDataLakeGen2`, `AzureFile`, ...).
    pub kind: String,
    /// The container (`filesystem` for Gen2) in [`ACCOUNT`].
    pub container: String,
    pub cred: DsCred,
    pub is_default: bool,
}

/// What `batchGetResolvedUris` returns for one asset.
#[derive(Clone, Debug)]
pub struct ResolvedAsset {
    /// `uri` (data) or `path` (models).
    pub uri: String,
    /// `type`, e.g. `UriFolder`, `UriFile`, `MLFlowModel`.
    pub kind: String,
}

#[derive(Clone, Debug)]
pub struct JobFixture {
    pub name: String,
    /// Each job GET returns the front one and pops it, until one remains.
    pub statuses: Vec<String>,
    /// "" → run history returns no `experimentId`.
    pub experiment_id: String,
    /// Listed by the artifacts route, in this order.
    pub artifacts: Vec<ArtifactFixture>,
    /// Becomes `properties.outputs` verbatim.
    pub outputs: Value,
    /// How the artifacts listing pages.
    pub paging: Paging,
    /// Items per page for `artifacts` and `prefix/contentinfo`.
    pub page_size: usize,
    /// Path B `properties.jobType`.
    pub job_type: String,
    /// Path B `properties.properties` (`azureml.isreused`, `best_child_run_id`, ...).
    pub properties: Value,
    /// Path B run history: `runMetadata.outputs` (`{name: {assetId, type}}`).
    pub run_outputs: Value,
    /// `properties.experimentName` in the job listings.
    pub experiment_name: String,
    /// The parent job (pipeline or sweep): run history lists this job among its children, and
    /// the tracking service's `runs/search` finds it by `tags.mlflow.parentRunId`.
    pub parent: Option<String>,
    /// `displayName` in run history's children listing (`None`: the field is left out).
    pub display_name: Option<String>,
    /// Path B `properties.objective` (a sweep's `{goal, primaryMetric}`); null: left out.
    pub objective: Value,
}

#[derive(Clone, Debug)]
pub struct ArtifactFixture {
    pub path: String,
    pub content_uri: ContentUri,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentUri {
    Blob {
        container: String,
        name: String,
    },
    /// Omitted from `prefix/contentinfo`; per-path contentinfo (A5) returns the default
    /// blob `azureml/ExperimentRun/dcid.<job>/<path>`.
    Missing,
    /// A literal URL, e.g. pointing at a foreign host.
    Raw(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// `continuationToken`; the page after the first one is an empty page with a token.
    ContinuationToken,
    /// Absolute `nextLink` on the same host, carrying the offset in `$skip`.
    NextLink,
    /// `nextLink` to `http://127.0.0.2:1/...`.
    NextLinkForeign,
    /// The same `continuationToken` forever.
    RepeatToken,
}

#[derive(Clone, Debug)]
pub struct BlobFixture {
    pub content: Content,
    pub md5: Md5Mode,
    /// Unquoted, e.g. `0x8DE0123456789AB`; the `ETag` header quotes it.
    pub etag: String,
    pub content_encoding: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Vec<u8>),
    /// Bytes from [`gen_bytes`], produced on the fly.
    Generated {
        len: u64,
        seed: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Md5Mode {
    Stored,
    Wrong,
    Absent,
}

#[derive(Clone, Debug)]
pub struct AssetFixture {
    pub container: String,
    /// Folder: the folder's blob prefix (no trailing `/`). File: the file's blob name.
    pub prefix: String,
    pub kind: AssetKind,
    pub credential_key: CredKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetKind {
    Folder,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredKey {
    /// `credential.type`
    Type,
    /// `credential.credentialType`
    CredentialType,
}

const GEN_PIECE: usize = 64 * 1024;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic bytes: the byte at absolute position `p` depends only on `(seed, p)`,
/// so any range can be produced without the prefix and a misplaced chunk shows in content.
pub fn gen_bytes(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let key = splitmix64(seed);
    let mut out = Vec::with_capacity(len);
    let mut pos = offset;
    let end = offset + len as u64;
    while pos < end {
        let word = splitmix64(key ^ (pos / 8)).to_le_bytes();
        let from = (pos % 8) as usize;
        let take = (8 - from).min((end - pos) as usize);
        out.extend_from_slice(&word[from..from + take]);
        pos += take as u64;
    }
    out
}

/// The blob name of a run artifact in [`ARTIFACT_CONTAINER`].
pub fn artifact_blob_name(job: &str, path: &str) -> String {
    format!("ExperimentRun/dcid.{job}/{path}")
}

impl BlobFixture {
    pub fn bytes(data: impl Into<Vec<u8>>) -> Self {
        Self::with_content(Content::Bytes(data.into()))
    }

    pub fn generated(len: u64, seed: u64) -> Self {
        Self::with_content(Content::Generated { len, seed })
    }

    fn with_content(content: Content) -> Self {
        let mut blob = BlobFixture { content, md5: Md5Mode::Stored, etag: String::new(), content_encoding: None };
        blob.etag = etag_for(&blob.content);
        blob
    }

    /// The same blob with another MD5 mode.
    pub fn with_md5(mut self, md5: Md5Mode) -> Self {
        self.md5 = md5;
        self
    }

    /// The whole content in memory (for assertions on small blobs).
    pub fn full_content(&self) -> Vec<u8> {
        self.range(0, self.len())
    }

    /// `len` bytes from `offset`, clamped to the blob.
    pub fn range(&self, offset: u64, len: u64) -> Vec<u8> {
        let end = offset.saturating_add(len).min(self.len());
        let start = offset.min(end);
        match &self.content {
            Content::Bytes(data) => data[start as usize..end as usize].to_vec(),
            Content::Generated { seed, .. } => gen_bytes(*seed, start, (end - start) as usize),
        }
    }

    pub fn len(&self) -> u64 {
        match &self.content {
            Content::Bytes(data) => data.len() as u64,
            Content::Generated { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// MD5 of the real content, computed piecewise.
    pub fn md5(&self) -> [u8; 16] {
        let mut hasher = Md5::new();
        let mut pos = 0;
        while pos < self.len() {
            let piece = self.range(pos, GEN_PIECE as u64);
            hasher.update(&piece);
            pos += piece.len() as u64;
        }
        hasher.finalize().into()
    }
}

/// A stable, content-derived ETag such as `0x8DE1A2B3C4D5E6F`.
fn etag_for(content: &Content) -> String {
    let mut hasher = Md5::new();
    match content {
        Content::Bytes(data) => hasher.update(data),
        Content::Generated { len, seed } => {
            hasher.update(len.to_le_bytes());
            hasher.update(seed.to_le_bytes());
        }
    }
    let digest: [u8; 16] = hasher.finalize().into();
    let tail: String = digest[..6].iter().map(|b| format!("{b:02X}")).collect();
    format!("0x8DE{}", &tail[..12])
}

impl JobFixture {
    /// A job with one status, the standard experiment ID, a `default` output,
    /// continuation-token paging and 100 items per page.
    pub fn new(name: &str, status: &str) -> Self {
        JobFixture {
            name: name.to_string(),
            statuses: vec![status.to_string()],
            experiment_id: EXPERIMENT_ID.to_string(),
            artifacts: Vec::new(),
            outputs: json!({ "default": default_output(name) }),
            paging: Paging::ContinuationToken,
            page_size: 100,
            job_type: "Command".to_string(),
            properties: json!({}),
            run_outputs: json!({}),
            experiment_name: "exp-a".to_string(),
            parent: None,
            display_name: None,
            objective: Value::Null,
        }
    }
}

/// A run-history data asset ID (Path B).
pub fn data_asset_id(name: &str, version: &str) -> String {
    format!("azureml://locations/eastus2/workspaces/{WORKSPACE_GUID}/data/{name}/versions/{version}")
}

/// A run-history model asset ID (Path B).
pub fn model_asset_id(name: &str, version: &str) -> String {
    format!("azureml://locations/eastus2/workspaces/{WORKSPACE_GUID}/models/{name}/versions/{version}")
}

/// A long-form datastore URI in the emulated workspace.
pub fn long_datastore_uri(datastore: &str, path: &str) -> String {
    format!(
        "azureml://subscriptions/{SUBSCRIPTION}/resourcegroups/{RESOURCE_GROUP}/workspaces/{WORKSPACE}/datastores/{datastore}/paths/{path}"
    )
}

/// A Path B output declaration (`jobOutputType`, `mode`, optional `uri`).
pub fn arm_output(output_type: &str, uri: Option<&str>) -> Value {
    let mut v = json!({"jobOutputType": output_type, "mode": "ReadWriteMount"});
    if let Some(u) = uri {
        v["uri"] = json!(u);
    }
    v
}

/// `outputs.default` as Foundry sends it.
pub fn default_output(job: &str) -> Value {
    json!({
        "jobOutputType": "uri_folder",
        "mode": "rw_mount",
        "uri": format!("azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.{job}"),
    })
}

/// A named output backed by a registered asset.
pub fn asset_output(output_type: &str, name: &str, version: &str) -> Value {
    json!({
        "jobOutputType": output_type,
        "mode": "rw_mount",
        "assetName": name,
        "assetVersion": version,
    })
}

impl World {
    pub fn new() -> Self {
        World::default()
    }

    /// Adds a job and returns it for further tweaks.
    pub fn add_job(&mut self, job: JobFixture) -> &mut JobFixture {
        self.jobs.push(job);
        let last = self.jobs.len() - 1;
        &mut self.jobs[last]
    }

    /// The job called `name`; panics if there is none (a fixture bug).
    pub fn job_mut(&mut self, name: &str) -> &mut JobFixture {
        self.jobs.iter_mut().find(|j| j.name == name).unwrap_or_else(|| panic!("no job {name} in the world"))
    }

    pub fn job(&self, name: &str) -> Option<&JobFixture> {
        self.jobs.iter().find(|j| j.name == name)
    }

    pub fn add_blob(&mut self, container: &str, name: &str, blob: BlobFixture) {
        self.containers.entry(container.to_string()).or_default().insert(name.to_string(), blob);
    }

    pub fn blob(&self, container: &str, name: &str) -> Option<&BlobFixture> {
        self.containers.get(container)?.get(name)
    }

    /// Lists `path` on `job` and stores its bytes at `azureml/ExperimentRun/dcid.<job>/<path>`.
    pub fn add_artifact(&mut self, job: &str, path: &str, blob: BlobFixture) {
        let name = artifact_blob_name(job, path);
        self.add_blob(ARTIFACT_CONTAINER, &name, blob);
        let content_uri = ContentUri::Blob { container: ARTIFACT_CONTAINER.to_string(), name };
        self.push_artifact(job, path, content_uri);
    }

    /// Like [`World::add_artifact`], but `prefix/contentinfo` omits the item (gap fill).
    pub fn add_artifact_missing(&mut self, job: &str, path: &str, blob: BlobFixture) {
        self.add_blob(ARTIFACT_CONTAINER, &artifact_blob_name(job, path), blob);
        self.push_artifact(job, path, ContentUri::Missing);
    }

    /// Lists `path` on `job` with the given content URI, creating no blob.
    pub fn push_artifact(&mut self, job: &str, path: &str, content_uri: ContentUri) {
        self.job_mut(job).artifacts.push(ArtifactFixture { path: path.to_string(), content_uri });
    }

    /// The bytes behind an artifact, if its content URI names a blob of this world.
    pub fn artifact_blob(&self, job: &str, path: &str) -> Option<&BlobFixture> {
        let artifact = self.job(job)?.artifacts.iter().find(|a| a.path == path)?;
        match &artifact.content_uri {
            ContentUri::Blob { container, name } => self.blob(container, name),
            ContentUri::Missing => self.blob(ARTIFACT_CONTAINER, &artifact_blob_name(job, path)),
            ContentUri::Raw(_) => None,
        }
    }

    /// Registers a folder asset and its files (names relative to the folder).
    pub fn add_folder_asset(
        &mut self,
        model: bool,
        name: &str,
        version: &str,
        location: (&str, &str),
        credential_key: CredKey,
        files: Vec<(&str, BlobFixture)>,
    ) {
        let (container, prefix) = location;
        for (file, blob) in files {
            self.add_blob(container, &format!("{prefix}/{file}"), blob);
        }
        let asset = AssetFixture {
            container: container.to_string(),
            prefix: prefix.to_string(),
            kind: AssetKind::Folder,
            credential_key,
        };
        self.register(model, name, version, asset);
    }

    /// Registers a single-file asset stored at `container/blob_name`.
    pub fn add_file_asset(
        &mut self,
        model: bool,
        name: &str,
        version: &str,
        location: (&str, &str),
        credential_key: CredKey,
        blob: BlobFixture,
    ) {
        let (container, blob_name) = location;
        self.add_blob(container, blob_name, blob);
        let asset = AssetFixture {
            container: container.to_string(),
            prefix: blob_name.to_string(),
            kind: AssetKind::File,
            credential_key,
        };
        self.register(model, name, version, asset);
    }

    fn register(&mut self, model: bool, name: &str, version: &str, asset: AssetFixture) {
        let key = (name.to_string(), version.to_string());
        if model {
            self.models.insert(key, asset);
        } else {
            self.datasets.insert(key, asset);
        }
    }

    /// Adds a Path B datastore (an `AzureBlob` in [`ACCOUNT`]).
    pub fn add_datastore(&mut self, name: &str, container: &str, cred: DsCred, is_default: bool) {
        let ds = DatastoreFixture { kind: "AzureBlob".into(), container: container.into(), cred, is_default };
        self.datastores.insert(name.to_string(), ds);
    }

    /// The container of datastore `name`; panics if there is none (a fixture bug).
    pub fn datastore_container(&self, name: &str) -> String {
        self.datastores.get(name).map(|d| d.container.clone()).unwrap_or_else(|| panic!("no datastore {name}"))
    }

    /// Stores `files` under `<path>/` in datastore `datastore`.
    pub fn add_datastore_files(&mut self, datastore: &str, path: &str, files: Vec<(&str, BlobFixture)>) {
        let container = self.datastore_container(datastore);
        for (name, blob) in files {
            self.add_blob(&container, &format!("{path}/{name}"), blob);
        }
    }

    /// Makes run history know output `output` of `job` as asset `asset_id` of `run_type`, and
    /// `batchGetResolvedUris` resolve it to `uri` of `resolved_type` (`model` picks the registry).
    pub fn add_run_asset(
        &mut self,
        job: &str,
        output: &str,
        (asset_id, run_type): (&str, &str),
        (uri, resolved_type): (&str, &str),
        model: bool,
    ) {
        self.job_mut(job).run_outputs[output] = json!({"assetId": asset_id, "type": run_type});
        let resolved = ResolvedAsset { uri: uri.to_string(), kind: resolved_type.to_string() };
        if model {
            self.arm_models.insert(asset_id.to_string(), resolved);
        } else {
            self.arm_data.insert(asset_id.to_string(), resolved);
        }
    }

    /// Total bytes of all blobs (generated ones included).
    pub fn total_blob_bytes(&self) -> u64 {
        self.containers.values().flat_map(|c| c.values()).map(BlobFixture::len).sum()
    }
}

const MIB: u64 = 1024 * 1024;

/// Paths of the hostile artifacts of `job-hostile` (plus the good `ok.txt`).
pub const HOSTILE_PATHS: [&str; 5] = ["../escape.txt", "a/../../x", "/abs", "C:\\x", "dir\\..\\..\\x"];

/// The name with a space, `#`, `%`, `+` and non-ASCII in `job-123`.
pub const ODD_NAME: &str = "outputs/odd name #1 50%+ü.txt";

/// The fixtures most integration tests use. See the module docs of the emulator for the routes.
pub fn standard_world() -> World {
    let mut w = World::new();

    // job-123: several roots, overlapping roots, odd names, an empty and a big blob.
    let mut job = JobFixture::new("job-123", "Completed");
    job.page_size = 3;
    job.outputs = json!({
        "default": default_output("job-123"),
        "model": asset_output("safetensors_model", "job-123-model", "1"),
        "metrics": asset_output("uri_folder", "job-123-metrics", "1"),
        "report": asset_output("uri_file", "job-123-report", "1"),
        "ckpt": asset_output("mlflow_model", "job-123-ckpt", "1"),
        "broken": {"jobOutputType": "uri_folder", "mode": "rw_mount", "assetName": "job-123-broken"},
    });
    w.add_job(job);
    let text = |s: &str| BlobFixture::bytes(s.as_bytes().to_vec());
    w.add_artifact("job-123", "log/a.txt", text("a from log\n"));
    w.add_artifact("job-123", "logs/b.txt", text("b from logs\n"));
    w.add_artifact("job-123", "model.pt", BlobFixture::generated(3000, 11));
    w.add_artifact("job-123", "model.pt.bak", BlobFixture::generated(1000, 12).with_md5(Md5Mode::Absent));
    w.add_artifact("job-123", "user_logs/std_log.txt", text("step 1 loss 0.9\nstep 2 loss 0.5\n"));
    w.add_artifact("job-123", "system_logs/lifecycler/execution-wrapper.txt", text("wrapper started\n"));
    w.add_artifact("job-123", "outputs/x", text("x\n"));
    w.add_artifact("job-123", "outputs/x.tmp", text("x.tmp is a real artifact\n"));
    w.add_artifact("job-123", ODD_NAME, text("odd name\n"));
    w.add_artifact("job-123", "outputs/empty.bin", BlobFixture::bytes(Vec::new()));
    w.add_artifact("job-123", "outputs/big.bin", BlobFixture::generated(20 * MIB, 1));

    w.add_folder_asset(
        true,
        "job-123-model",
        "1",
        ("models-0001", "job-123-model/1"),
        CredKey::Type,
        vec![
            ("model.safetensors", BlobFixture::generated(40 * MIB, 2)),
            ("config.json", text("{\"hidden_size\": 64}\n")),
        ],
    );
    w.add_folder_asset(
        true,
        "job-123-ckpt",
        "1",
        ("models-0001", "job-123-ckpt/1"),
        CredKey::Type,
        vec![("MLmodel", text("flavors: {}\n"))],
    );
    w.add_folder_asset(
        false,
        "job-123-metrics",
        "1",
        ("data-0001", "job-123-metrics/1"),
        CredKey::CredentialType,
        vec![
            ("loss.csv", text("step,loss\n1,0.9\n2,0.5\n")),
            ("acc.csv", text("step,acc\n1,0.1\n2,0.6\n")),
            ("sub/summary.json", text("{\"best\": 0.6}\n")),
        ],
    );
    // A sibling version whose prefix extends "job-123-metrics/1": never part of the output.
    w.add_blob("data-0001", "job-123-metrics/10/other.csv", text("not mine\n"));
    w.add_file_asset(
        false,
        "job-123-report",
        "1",
        ("data-0001", "job-123-report/1/report.json"),
        CredKey::Type,
        text("{\"accuracy\": 0.6}\n"),
    );
    // Shares the file's name as a prefix: a client that lists instead of getting the file sees it.
    w.add_blob("data-0001", "job-123-report/1/report.json.bak", text("trap\n"));

    let mut running = JobFixture::new("job-running", "Running");
    running.statuses = vec!["Running".into()];
    w.add_job(running);
    w.add_artifact("job-running", "user_logs/std_log.txt", text("still going\n"));

    let mut wait = JobFixture::new("job-wait", "Completed");
    wait.statuses = vec!["Queued".into(), "Running".into(), "Completed".into()];
    w.add_job(wait);
    w.add_artifact("job-wait", "user_logs/std_log.txt", text("done waiting\n"));
    w.add_artifact("job-wait", "outputs/result.txt", text("42\n"));

    for (name, paging) in [
        ("job-nextlink", Paging::NextLink),
        ("job-foreign-next", Paging::NextLinkForeign),
        ("job-cycle", Paging::RepeatToken),
    ] {
        let mut job = JobFixture::new(name, "Completed");
        job.paging = paging;
        job.page_size = 2;
        w.add_job(job);
        for i in 0..5 {
            w.add_artifact(name, &format!("outputs/f{i}.txt"), text(&format!("{name} {i}\n")));
        }
    }

    let mut noexp = JobFixture::new("job-noexp", "Completed");
    noexp.experiment_id = String::new();
    w.add_job(noexp);
    w.add_artifact("job-noexp", "outputs/a.txt", text("a\n"));

    w.add_job(JobFixture::new("job-gap", "Completed"));
    w.add_artifact("job-gap", "outputs/a.txt", text("gap a\n"));
    w.add_artifact_missing("job-gap", "outputs/b.txt", text("gap b, filled per path\n"));
    w.add_artifact("job-gap", "outputs/c.txt", text("gap c\n"));

    w.add_job(JobFixture::new("job-foreign-uri", "Completed"));
    w.add_artifact("job-foreign-uri", "ok.txt", text("fine\n"));
    w.push_artifact(
        "job-foreign-uri",
        "evil.txt",
        ContentUri::Raw("http://127.0.0.2:9/devstoreaccount1/azureml/x?sig=s".into()),
    );

    w.add_job(JobFixture::new("job-dups", "Completed"));
    w.add_artifact("job-dups", "outputs/dup.txt", text("dup\n"));
    w.add_artifact("job-dups", "outputs/other.txt", text("other\n"));
    let dup = w.job_mut("job-dups").artifacts[0].clone();
    w.job_mut("job-dups").artifacts.push(dup);

    w.add_job(JobFixture::new("job-badmd5", "Completed"));
    w.add_artifact("job-badmd5", "outputs/bad.bin", BlobFixture::generated(5000, 7).with_md5(Md5Mode::Wrong));
    w.add_artifact("job-badmd5", "outputs/good.txt", text("good\n"));

    // Hostile paths point at real blobs with safe names, so a client that fails to reject
    // them would actually write the bytes somewhere.
    w.add_job(JobFixture::new("job-hostile", "Completed"));
    for (i, path) in HOSTILE_PATHS.iter().enumerate() {
        let name = artifact_blob_name("job-hostile", &format!("hostile-{i}"));
        w.add_blob(ARTIFACT_CONTAINER, &name, text("hostile\n"));
        let uri = ContentUri::Blob { container: ARTIFACT_CONTAINER.into(), name };
        w.push_artifact("job-hostile", path, uri);
    }
    w.add_artifact("job-hostile", "ok.txt", text("ok\n"));

    w
}

fn json_lines(rank: usize) -> String {
    (1..=5)
        .map(|step| {
            let loss = 2.0 / (step as f64 + rank as f64 * 0.1);
            format!("{{\"step\": {step}, \"rank\": {rank}, \"loss\": {loss:.4}}}\n")
        })
        .collect()
}

/// A realistic world for the demo: one finished job with logs, outputs and three named outputs,
/// and one running job.
pub fn demo_world(model_bytes: u64) -> World {
    let mut w = World::new();
    let job_name = "job-demo-001";
    let mut job = JobFixture::new(job_name, "Completed");
    job.page_size = 50;
    job.outputs = json!({
        "default": default_output(job_name),
        "model": {"jobOutputType": "safetensors_model", "mode": "upload",
                  "assetName": "job-demo-001-model", "assetVersion": "1"},
        "metrics": asset_output("uri_folder", "job-demo-001-metrics", "1"),
        "eval_report": asset_output("uri_file", "job-demo-001-eval", "1"),
    });
    w.add_job(job);

    let text = |s: String| BlobFixture::bytes(s.into_bytes());
    let std_log: String =
        (1..=200).map(|i| format!("[train] epoch 1 step {i:4} loss {:.4}\n", 2.5 / f64::from(i))).collect();
    w.add_artifact(job_name, "user_logs/std_log.txt", text(std_log));
    w.add_artifact(
        job_name,
        "system_logs/lifecycler/execution-wrapper.txt",
        text("2026-01-15T10:00:00Z execution wrapper started\n2026-01-15T10:42:00Z exit code 0\n".into()),
    );
    w.add_artifact(job_name, "system_logs/lifecycler/lifecycler.log", text("setup 12s, run 41m, teardown 3s\n".into()));
    for rank in 0..4 {
        w.add_artifact(job_name, &format!("logs/azureml/rank_{rank}/metrics.json"), text(json_lines(rank)));
    }
    w.add_artifact(
        job_name,
        "outputs/training_args.json",
        text("{\"lr\": 0.0003, \"epochs\": 1, \"batch_size\": 32}\n".into()),
    );
    w.add_artifact(job_name, "outputs/README.md", text("# Fine-tuned model\n\nDemo run.\n".into()));
    w.add_artifact(job_name, "outputs/sample_predictions.jsonl", BlobFixture::generated(48 * 1024, 21));

    w.add_folder_asset(
        true,
        "job-demo-001-model",
        "1",
        ("models-demo", "job-demo-001-model/1"),
        CredKey::CredentialType,
        vec![
            ("model.safetensors", BlobFixture::generated(model_bytes, 42)),
            ("config.json", text("{\"architectures\": [\"DemoLM\"], \"hidden_size\": 256}\n".into())),
            ("tokenizer.json", BlobFixture::generated(200 * 1024, 43)),
        ],
    );
    w.add_folder_asset(
        false,
        "job-demo-001-metrics",
        "1",
        ("data-demo", "job-demo-001-metrics/1"),
        CredKey::Type,
        vec![
            ("train_loss.csv", text("step,loss\n100,1.2\n200,0.8\n".into())),
            ("eval_loss.csv", text("step,loss\n200,0.9\n".into())),
            ("summary.json", text("{\"final_loss\": 0.8}\n".into())),
        ],
    );
    w.add_file_asset(
        false,
        "job-demo-001-eval",
        "1",
        ("data-demo", "job-demo-001-eval/1/eval_report.json"),
        CredKey::Type,
        text("{\"accuracy\": 0.91, \"f1\": 0.88}\n".into()),
    );

    w.add_job(JobFixture::new("job-demo-002", "Running"));
    w.add_artifact("job-demo-002", "user_logs/std_log.txt", text("epoch 1 step 10\n".into()));
    w
}

/// Container of `workspaceblobstore` (the default datastore) in [`workspace_world`].
pub const BLOBSTORE_CONTAINER: &str = "azureml-blobstore-0001";
/// Container of the identity-based datastore `identitystore`.
pub const IDENTITY_CONTAINER: &str = "identity-data";
/// Container of `lockedstore`, whose listSecrets is refused.
pub const LOCKED_CONTAINER: &str = "locked-data";
/// Container of `norbacstore`, identity-based but refusing the caller's token.
pub const NORBAC_CONTAINER: &str = "norbac-data";

/// An Azure ML workspace (Path B). Datastores: `workspaceartifactstore` (AccountKey, container
/// `azureml`), `workspaceblobstore` (Sas, default), `identitystore` (None), `lockedstore` (Sas
/// whose listSecrets is refused; bearer works), `norbacstore` (None; bearer refused).
///
/// Jobs:
/// - `train-1`: default artifacts (with siblings `train-1_1` and `train-10` in the same store);
///   outputs `data_out` (data asset, `UriFolder`, long-form URI), `model_out` (model asset,
///   `MLFlowModel`, `path`), `metrics_file` (data asset, snake_case `uri_file`, a single file),
///   `ident_out` (identity datastore), `locked_out` (listSecrets refused), `probe_out` (no asset;
///   found under `azureml/train-1/probe_out/`), `dataset_out` (no asset; under
///   `dataset/train-1/dataset_out/`), `missing_out` (nowhere);
/// - `train-2`: `data_out` and `model_out` only; `norbac-1`: one output refused by storage;
/// - `step-reused`: a pipeline step reusing `train-old`; `sweep-1`: a sweep whose best child is
///   `sweep-1_3`; `ft-1`: a FineTuning job; `running-1`: still running.
pub fn workspace_world() -> World {
    let mut w = World::new();
    w.blob_bearer = true;
    w.sas_key = Some(DEV_ACCOUNT_KEY.to_string());
    w.bearer_denied.push(NORBAC_CONTAINER.to_string());
    w.add_datastore("workspaceartifactstore", ARTIFACT_CONTAINER, DsCred::AccountKey, false);
    w.add_datastore("workspaceblobstore", BLOBSTORE_CONTAINER, DsCred::Sas, true);
    w.add_datastore("identitystore", IDENTITY_CONTAINER, DsCred::Identity, false);
    w.add_datastore("lockedstore", LOCKED_CONTAINER, DsCred::SecretsDenied, false);
    w.add_datastore("norbacstore", NORBAC_CONTAINER, DsCred::Identity, false);
    let text = |s: &str| BlobFixture::bytes(s.as_bytes().to_vec());

    let mut job = JobFixture::new("train-1", "Completed");
    job.outputs = json!({
        "default": default_output("train-1"),
        "data_out": arm_output("uri_folder", Some("azureml://datastores/workspaceblobstore/paths/azureml/train-1/data_out/")),
        "model_out": arm_output("mlflow_model", None),
        "metrics_file": arm_output("uri_file", None),
        "ident_out": arm_output("uri_folder", None),
        "locked_out": arm_output("uri_folder", None),
        "probe_out": arm_output("uri_folder", Some("${{outputs.probe_out}}")),
        "dataset_out": arm_output("uri_folder", None),
        "missing_out": arm_output("uri_folder", None),
    });
    w.add_job(job);
    w.add_artifact("train-1", "user_logs/std_log.txt", text("epoch 1 loss 0.5\n"));
    w.add_artifact("train-1", "outputs/model.pkl", BlobFixture::generated(3000, 31));
    w.add_artifact("train-1", ODD_NAME, text("odd\n"));
    w.add_artifact("train-1", "outputs/empty.txt", BlobFixture::bytes(Vec::new()));
    for sibling in ["train-1_1", "train-10"] {
        w.add_job(JobFixture::new(sibling, "Completed"));
        w.add_artifact(sibling, "user_logs/std_log.txt", text("a sibling job, never mine\n"));
    }

    let data_id = data_asset_id("azureml_train-1_output_data_data_out", "1");
    w.add_run_asset(
        "train-1",
        "data_out",
        (&data_id, "UriFolder"),
        (&long_datastore_uri("workspaceblobstore", "azureml/train-1/data_out/"), "UriFolder"),
        false,
    );
    w.add_datastore_files(
        "workspaceblobstore",
        "azureml/train-1/data_out",
        vec![("part-0.csv", text("a,b\n1,2\n")), ("sub/part-1.csv", text("a,b\n3,4\n"))],
    );
    // Shares the folder's name as a prefix: never part of the output.
    w.add_blob(BLOBSTORE_CONTAINER, "azureml/train-1/data_out_old/stale.csv", text("stale\n"));

    let model_id = model_asset_id("azureml_train-1_output_mlflow_model_out", "1");
    w.add_run_asset(
        "train-1",
        "model_out",
        (&model_id, "MLFlowModel"),
        ("azureml://datastores/workspaceblobstore/paths/azureml/train-1/model_out/", "MLFlowModel"),
        true,
    );
    w.add_datastore_files(
        "workspaceblobstore",
        "azureml/train-1/model_out",
        vec![("MLmodel", text("flavors: {}\n")), ("model.pkl", BlobFixture::generated(5000, 32))],
    );

    let metrics_id = data_asset_id("azureml_train-1_output_data_metrics_file", "1");
    w.add_run_asset(
        "train-1",
        "metrics_file",
        (&metrics_id, "uri_file"),
        ("azureml://datastores/workspaceblobstore/paths/azureml/train-1/metrics_file/metrics.json", "UriFile"),
        false,
    );
    w.add_datastore_files(
        "workspaceblobstore",
        "azureml/train-1/metrics_file",
        vec![("metrics.json", text("{\"acc\": 0.9}\n")), ("metrics.json.bak", text("trap\n"))],
    );

    let ident_id = data_asset_id("azureml_train-1_output_data_ident_out", "1");
    w.add_run_asset(
        "train-1",
        "ident_out",
        (&ident_id, "UriFolder"),
        ("azureml://datastores/identitystore/paths/ident/train-1/", "UriFolder"),
        false,
    );
    w.add_datastore_files("identitystore", "ident/train-1", vec![("weights.bin", BlobFixture::generated(2000, 33))]);

    let locked_id = data_asset_id("azureml_train-1_output_data_locked_out", "1");
    w.add_run_asset(
        "train-1",
        "locked_out",
        (&locked_id, "UriFolder"),
        ("azureml://datastores/lockedstore/paths/locked/train-1/", "UriFolder"),
        false,
    );
    w.add_datastore_files("lockedstore", "locked/train-1", vec![("report.txt", text("behind RBAC\n"))]);

    w.add_datastore_files("workspaceblobstore", "azureml/train-1/probe_out", vec![("found.txt", text("probed\n"))]);
    w.add_datastore_files("workspaceblobstore", "dataset/train-1/dataset_out", vec![("d.csv", text("x\n1\n"))]);

    let mut job2 = JobFixture::new("train-2", "Completed");
    job2.outputs = json!({
        "default": default_output("train-2"),
        "data_out": arm_output("uri_folder", None),
        "model_out": arm_output("custom_model", None),
    });
    w.add_job(job2);
    w.add_artifact("train-2", "user_logs/std_log.txt", text("train-2 log\n"));
    let id = data_asset_id("azureml_train-2_output_data_data_out", "1");
    w.add_run_asset(
        "train-2",
        "data_out",
        (&id, "uri_folder"),
        ("azureml://datastores/workspaceblobstore/paths/azureml/train-2/data_out/", "uri_folder"),
        false,
    );
    w.add_datastore_files("workspaceblobstore", "azureml/train-2/data_out", vec![("d.csv", text("train-2 data\n"))]);
    let id = model_asset_id("azureml_train-2_output_custom_model_model_out", "1");
    w.add_run_asset(
        "train-2",
        "model_out",
        (&id, "CustomModel"),
        ("azureml://datastores/workspaceblobstore/paths/azureml/train-2/model_out", "CustomModel"),
        true,
    );
    w.add_datastore_files(
        "workspaceblobstore",
        "azureml/train-2/model_out",
        vec![("w.bin", text("train-2 weights\n"))],
    );

    let mut norbac = JobFixture::new("norbac-1", "Completed");
    norbac.outputs = json!({"default": default_output("norbac-1"), "secret_out": arm_output("uri_folder", None),
        "open_out": arm_output("uri_folder", None)});
    w.add_job(norbac);
    let id = data_asset_id("azureml_norbac-1_output_data_secret_out", "1");
    w.add_run_asset(
        "norbac-1",
        "secret_out",
        (&id, "UriFolder"),
        ("azureml://datastores/norbacstore/paths/secret/norbac-1/", "UriFolder"),
        false,
    );
    w.add_datastore_files("norbacstore", "secret/norbac-1", vec![("s.txt", text("secret\n"))]);
    w.add_datastore_files("workspaceblobstore", "azureml/norbac-1/open_out", vec![("o.txt", text("open\n"))]);

    w.add_job(JobFixture::new("train-old", "Completed"));
    w.add_artifact("train-old", "user_logs/std_log.txt", text("from the reused run\n"));
    let mut step = JobFixture::new("step-reused", "Completed");
    step.properties = json!({"azureml.isreused": "true", "azureml.reusedrunid": "train-old"});
    w.add_job(step);

    let mut sweep = JobFixture::new("sweep-1", "Completed");
    sweep.job_type = "Sweep".into();
    sweep.properties = json!({"best_child_run_id": "sweep-1_3"});
    w.add_job(sweep);
    w.add_artifact("sweep-1", "azureml-logs/hyperdrive.txt", text("sweep parent log\n"));
    w.add_job(JobFixture::new("sweep-1_3", "Completed"));
    w.add_artifact("sweep-1_3", "user_logs/std_log.txt", text("best child\n"));

    let mut ft = JobFixture::new("ft-1", "Completed");
    ft.job_type = "FineTuning".into();
    w.add_job(ft);
    w.add_artifact("ft-1", "logs/ft.txt", text("fine-tuned\n"));

    w.add_job(JobFixture::new("running-1", "Running"));
    w
}

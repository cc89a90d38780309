//! Job sources: *what exists and where*. A provider resolves a job, gates on its status and
//! returns listings of remote files (relative path + URL + validators). It never touches the
//! destination directory and knows nothing about how bytes are moved.
//!
//! Four sources sit behind one seam, [`Provider`]: a Foundry project endpoint (Path A, [`foundry`]),
//! an Azure Machine Learning workspace through ARM (Path B, [`azureml`]) and an MLflow tracking
//! server or Databricks workspace ([`mlflow`]); a Kubeflow Pipelines API whose runs' outputs live in
//! S3-compatible storage ([`kfp`]).
pub mod azureml;
pub mod children;
pub mod foundry;
pub mod jobs;
pub mod kfp;
pub mod mlflow;
pub mod tracking;

use crate::error::Error;
use crate::http::CallError;
use std::collections::BTreeMap;

/// A resolved job.
#[derive(Debug, Clone, Default)]
pub struct Job {
    /// Job name (also its run id).
    pub name: String,
    /// Status as reported by the service, verbatim.
    pub status: String,
    /// Declared named outputs (including `default` when the service lists it).
    pub outputs: BTreeMap<String, OutputSpec>,
    /// `jobType` verbatim (`Command`, `Pipeline`, `Sweep`, ...), when the service gives it.
    pub job_type: String,
    /// A pipeline step reused from an earlier run: that run's name (`azureml.reusedrunid`).
    pub reused_run: Option<String>,
    /// A sweep parent: its best child run (`best_child_run_id`).
    pub best_child: Option<String>,
    /// When the job was created (`systemData.createdAt`), normalised to RFC 3339 UTC.
    pub created: Option<String>,
    /// The job's page in Azure ML studio (built from the workspace coordinates, never taken from
    /// the response), when the source has one.
    pub studio_url: Option<String>,
    /// Outputs are paths into the artifact tree (MLflow): any name may be asked for with
    /// `--output`, and it may be nested (`checkpoints/step-100`), not only the declared ones.
    pub output_paths: bool,
    /// Outputs are named `TASK/OUTPUT` (Kubeflow): a name with one `/`.
    pub task_outputs: bool,
    /// Short output names and the full names they stand for (`model` → `train/model`), for
    /// sources whose outputs are `TASK/OUTPUT`.
    pub output_aliases: BTreeMap<String, Vec<String>>,
    /// What the user must not miss that reading the job's outputs turned up (printed and listed
    /// in `--json` notes by the app, as [`Resolved::notes`]).
    pub notes: Vec<String>,
    /// Azure ML / Foundry: the job's MLflow tracking endpoint (`properties.services.Tracking.endpoint`),
    /// verbatim: hostile until [`tracking::base`] has validated it.
    pub tracking: Option<String>,
    /// A sweep's objective (`properties.objective`: its primary metric and goal), which
    /// `--top K` ranks the trials by unless `--metric` names another.
    pub objective: Option<crate::best::BestSpec>,
}

/// An RFC 3339 timestamp from a response, normalised to UTC (`None` when absent or malformed:
/// hostile input never reaches the output verbatim).
pub fn timestamp(raw: Option<&str>) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(raw?.trim(), &Rfc3339).ok()?;
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()
}

/// A named output as declared on the job.
#[derive(Debug, Clone, Default)]
pub struct OutputSpec {
    /// `jobOutputType` verbatim (e.g. `uri_folder`).
    pub kind: String,
    /// Registered asset name.
    pub asset_name: Option<String>,
    /// Registered asset version.
    pub asset_version: Option<String>,
    /// Where the output lives, as declared (`uri`; Path B), verbatim.
    pub uri: Option<String>,
}

/// One remote file of an output.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    /// Path relative to the output root, exactly as the service gave it (hostile until planned).
    pub rel: String,
    /// Where its bytes are (a SAS URL: no Authorization header).
    pub url: crate::transfer::SourceUrl,
    /// Size from the listing, when known.
    pub size: Option<u64>,
    /// MD5 from the listing, when known.
    pub md5: Option<[u8; 16]>,
    /// Another whole-object check (S3: a multipart ETag, a stored CRC or SHA-256), when known.
    pub check: Option<crate::transfer::Expected>,
    /// The object's ETag as listed, when known (compared with the one recorded in the manifest to
    /// tell an unchanged object on a rerun).
    pub etag: Option<String>,
    /// How to get a fresh URL after a 403 (Path A content URIs, presigned S3 URLs).
    pub refresh: Option<crate::transfer::Refresher>,
    /// Which storage protocol `url` speaks: decides the data-request headers and hints.
    pub protocol: Protocol,
}

/// The storage protocol of a [`RemoteFile`]'s URL.
#[derive(Clone, Default)]
pub enum Protocol {
    /// Azure Blob Storage (SAS URL): `x-ms-version`, `x-ms-blob-content-md5`, `x-ms-error-code`.
    #[default]
    AzureBlob,
    /// S3-compatible storage: no `x-ms-*` header; every request signed by the hook (SigV4).
    S3(crate::transfer::SignHook),
    /// Plain HTTP (an MLflow artifact proxy, a presigned cloud URL): no service-specific headers,
    /// only these (the tracking server's credentials, the headers a presigned URL requires).
    /// Secret: `Debug` shows the names only.
    Plain(Vec<(String, String)>),
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protocol::AzureBlob => f.write_str("AzureBlob"),
            Protocol::S3(_) => f.write_str("S3"),
            Protocol::Plain(h) => {
                f.debug_tuple("Plain").field(&h.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()).finish()
            }
        }
    }
}

impl RemoteFile {
    /// Request headers every data request for this file carries (never secrets: SAS is in the URL).
    pub fn headers(&self) -> Vec<(String, String)> {
        match &self.protocol {
            Protocol::AzureBlob => vec![("x-ms-version".to_string(), crate::blob::X_MS_VERSION.to_string())],
            Protocol::S3(_) => Vec::new(),
            Protocol::Plain(headers) => headers.clone(),
        }
    }

    /// The per-request signer of the file's data requests (S3), if any.
    pub fn signer(&self) -> Option<crate::transfer::SignHook> {
        match &self.protocol {
            Protocol::AzureBlob | Protocol::Plain(_) => None,
            Protocol::S3(hook) => Some(hook.clone()),
        }
    }

    /// How the blob service reports checksums and errors.
    pub fn hints(&self) -> crate::transfer::ServerHints {
        match &self.protocol {
            Protocol::AzureBlob => crate::transfer::ServerHints {
                partial_md5_header: Some("x-ms-blob-content-md5".into()),
                error_code_header: Some("x-ms-error-code".into()),
            },
            Protocol::S3(_) | Protocol::Plain(_) => crate::transfer::ServerHints::default(),
        }
    }
}

/// The files of one output, plus the files that could not be resolved.
#[derive(Debug, Default)]
pub struct Listing {
    /// Files to download.
    pub files: Vec<RemoteFile>,
    /// (relative path, reason) of files that cannot be downloaded.
    pub failures: Vec<(String, String)>,
}

/// The files of one output and what every data request for them must carry.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The files (and per-file failures).
    pub listing: Listing,
    /// Extra request headers for every file of this output: a storage bearer token for
    /// identity-based datastores. Secret: never printed.
    pub headers: Vec<(String, String)>,
    /// Archives to unpack (KFP v1 `:read` artifacts: a JSON-wrapped base64 `.tgz` stream).
    pub archives: Vec<ArchiveSource>,
    /// Objects of the job that belong to no output and cannot be placed (Kubeflow keys whose task
    /// or output segment is unsafe): (path, reason). Failures with `--all-outputs`, a note
    /// otherwise.
    pub strays: Vec<(String, String)>,
    /// Where this output's files go below `named-outputs/`, when not under the output's name
    /// (a Kubeflow output `TASK/OUTPUT` lands in `named-outputs/TASK/[<execution>/]OUTPUT`).
    pub subdir: Option<String>,
    /// Per-request headers for every file of this output, computed when each request is sent (a
    /// storage bearer token renewed before it expires). Secret: never printed.
    pub sign: Option<crate::transfer::SignHook>,
    /// What the user must not miss about this output (the app prints each on stderr and lists it
    /// in the `--json` document's notes): providers return notes, they never print.
    pub notes: Vec<String>,
}

/// A remote archive whose entries become files (KFP v1 `:read`): no length, no ranges, no ETag;
/// decoded as a stream and retried from zero when it breaks.
#[derive(Clone)]
pub struct ArchiveSource {
    /// Directory, relative to the output root, the archive's entries land in (hostile until
    /// planned).
    pub rel: String,
    /// The URL to GET.
    pub url: url::Url,
    /// Request headers (a bearer token for the KFP API). Secret: never printed.
    pub headers: Vec<(String, String)>,
    /// Turns the body into the archive it carries, and reads the service's error bodies.
    pub decoder: crate::transfer::Decoder,
}

impl std::fmt::Debug for ArchiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveSource")
            .field("rel", &self.rel)
            .field("url", &self.url)
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

/// One listed S3 object as a [`RemoteFile`] at `rel`, or why it cannot be requested: a key with a
/// `.`/`..` segment or a control character is never requested (URL parsers would rewrite it and
/// another object would be fetched). Only a single-part ETag is taken as the MD5 (and not with
/// SSE-KMS / SSE-C, which the caller passes as `etag: None`).
pub fn s3_file(
    s3: &crate::s3::S3Client,
    hook: &crate::transfer::SignHook,
    key: &str,
    rel: String,
    size: u64,
    etag: Option<&str>,
) -> Result<RemoteFile, (String, String)> {
    if let Some(r) = crate::s3::unrequestable(key) {
        return Err((rel, format!("unsafe key: it {r}; not requested")));
    }
    let url = match s3.object_url(key) {
        Ok(u) => u,
        Err(e) => return Err((rel, e)),
    };
    Ok(RemoteFile {
        rel,
        url: url.into(),
        size: Some(size),
        md5: match etag.map(crate::s3::classify_etag) {
            Some(crate::s3::EtagKind::Md5(m)) => Some(m),
            _ => None,
        },
        check: None,
        etag: etag.map(str::to_string),
        refresh: None,
        protocol: Protocol::S3(hook.clone()),
    })
}

/// One listed (or HEADed) S3 object to download, for [`s3_files`].
#[derive(Debug, Clone)]
pub struct S3Listed {
    /// The object's key.
    pub key: String,
    /// Where it lands, relative to the output root (hostile until planned).
    pub rel: String,
    /// Its size.
    pub size: u64,
    /// Its ETag (quotes allowed), when known.
    pub etag: Option<String>,
    /// Encrypted with SSE-KMS or SSE-C (known from a HEAD only): no ETag is then an MD5.
    pub encrypted: bool,
}

/// Most verification HEADs in flight at once.
const CHECK_HEADS: usize = 16;

/// Listed S3 objects as [`RemoteFile`]s, each with the best check the store allows
/// (docs/kfp-s3-api.md §6.3–6.4): a single-part ETag is the MD5 (no request); for the others a few
/// HEADs, 16 at once over all objects, find a multipart layout or a stored whole-object checksum.
/// Each object comes with the client and signer of its bucket. Unsafe keys become failures
/// (never requested). Files keep the order of `objects`.
pub async fn s3_files(objects: Vec<(&crate::s3::S3Client, &crate::transfer::SignHook, S3Listed)>) -> Listing {
    use futures_util::StreamExt;
    let results: Vec<Result<RemoteFile, (String, String)>> = futures_util::stream::iter(objects)
        .map(|(s3, hook, o)| s3_file_checked(s3, hook, o))
        .buffered(CHECK_HEADS)
        .collect()
        .await;
    let mut listing = Listing::default();
    for r in results {
        match r {
            Ok(f) => listing.files.push(f),
            Err(failure) => listing.failures.push(failure),
        }
    }
    listing
}

/// One object of [`s3_files`]: [`s3_file`], then the HEADs its check needs.
pub async fn s3_file_checked(
    s3: &crate::s3::S3Client,
    hook: &crate::transfer::SignHook,
    o: S3Listed,
) -> Result<RemoteFile, (String, String)> {
    let etag = o.etag.as_deref().filter(|_| !o.encrypted);
    let mut file = s3_file(s3, hook, &o.key, o.rel, o.size, etag)?;
    file.etag = o.etag.clone();
    if file.md5.is_none() {
        file.check = s3.object_check(&o.key, o.size, o.etag.as_deref(), o.encrypted).await;
    }
    Ok(file)
}

impl From<Listing> for Resolved {
    fn from(listing: Listing) -> Self {
        Resolved { listing, ..Resolved::default() }
    }
}

/// Why one named output could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// This output fails; the others continue and the run ends with exit 6.
    #[error("{0}")]
    Failed(String),
    /// Storage refused access: ends the run (exit 3) when this output is the only thing
    /// requested, otherwise the output fails.
    #[error("{message}")]
    Denied {
        /// What was refused.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// Ends the run (e.g. 401/403 from ARM).
    #[error(transparent)]
    Fatal(#[from] Error),
}

/// Where a job lives: a Foundry project (Path A) or an Azure ML workspace (Path B).
#[derive(Clone)]
pub enum Provider {
    /// A Foundry project endpoint.
    Foundry(Box<foundry::Foundry>),
    /// An Azure ML workspace through ARM.
    AzureMl(azureml::AzureMl),
    /// An MLflow tracking server (or Databricks workspace).
    Mlflow(Box<mlflow::Mlflow>),
    /// A Kubeflow Pipelines API (outputs in S3-compatible storage).
    Kfp(Box<kfp::Kfp>),
}

impl Provider {
    /// GET the job (no status gate).
    pub async fn get_job(&self, name: &str) -> Result<Job, Error> {
        match self {
            Provider::Foundry(f) => f.get_job(name).await,
            Provider::AzureMl(a) => a.get_job(name).await,
            Provider::Mlflow(m) => m.get_job(name).await,
            Provider::Kfp(k) => k.get_job(name).await,
        }
    }

    /// Every logged value of a metric of the job (`download --best`): MLflow's metric history,
    /// from the tracking server (MLflow) or from the Azure ML tracking service the job names
    /// (Azure ML, Foundry). Kubeflow runs keep no metric history jobdl can read: a usage error
    /// (exit 2) before anything is fetched.
    pub async fn metric_history(&self, job: &Job, metric: &str) -> Result<Vec<crate::best::MetricPoint>, Error> {
        match self {
            Provider::Mlflow(m) => m.metric_history(&job.name, metric).await,
            Provider::AzureMl(a) => a.metric_history(job, metric).await,
            Provider::Foundry(f) => f.metric_history(job, metric).await,
            Provider::Kfp(_) => Err(Error::usage(
                "--best reads the job's logged metric history, which Kubeflow Pipelines runs do not keep in a \
                 form jobdl reads (it works for MLflow, Databricks, Azure ML and Foundry jobs): pick the \
                 checkpoint with --include '<folder>/**'",
            )),
        }
    }

    /// The job's child runs (`download --children`: a pipeline's steps): Azure ML's run history
    /// (Azure ML, Foundry: on the host of the job's tracking endpoint), or the runs tagged with
    /// the parent's id (MLflow). Kubeflow runs' steps are not runs of their own: exit 2.
    pub async fn children(&self, job: &Job) -> Result<Vec<children::Child>, Error> {
        match self {
            Provider::Mlflow(m) => m.children(&job.name, None).await,
            Provider::AzureMl(a) => a.children(job, None).await,
            Provider::Foundry(f) => f.children(job, None).await,
            Provider::Kfp(_) => Err(kfp_steps_refused("--children")),
        }
    }

    /// A sweep's trials (its child runs) with the latest value of `metric` each (`--top K`),
    /// from MLflow `runs/search` on the tracking server or the job's Azure ML tracking service.
    pub async fn trials(&self, job: &Job, metric: &str) -> Result<Vec<children::Child>, Error> {
        match self {
            Provider::Mlflow(m) => m.children(&job.name, Some(metric)).await,
            Provider::AzureMl(a) => a.children(job, Some(metric)).await,
            Provider::Foundry(f) => f.children(job, Some(metric)).await,
            Provider::Kfp(_) => Err(kfp_steps_refused("--top")),
        }
    }

    /// The source's recent jobs, newest first (`jobdl jobs`).
    pub async fn list_jobs(&self, q: &jobs::JobQuery) -> Result<jobs::JobList, Error> {
        match self {
            Provider::Foundry(f) => f.list_jobs(q).await,
            Provider::AzureMl(a) => a.list_jobs(q).await,
            Provider::Mlflow(m) => m.list_jobs(q).await,
            Provider::Kfp(k) => k.list_jobs(q).await,
        }
    }

    /// A gated job completed with what only a finished job has (Kubeflow: its outputs, found in
    /// storage). Other sources know everything from [`Self::get_job`].
    pub async fn describe(&self, job: Job) -> Result<Job, Error> {
        match self {
            Provider::Kfp(k) => k.describe(job).await,
            _ => Ok(job),
        }
    }

    /// The states in which this source's jobs are finished (exact, case-sensitive).
    pub fn terminal_states(&self) -> &'static [&'static str] {
        match self {
            Provider::Foundry(_) => crate::error::FOUNDRY_TERMINAL,
            Provider::AzureMl(_) => crate::error::AZURE_TERMINAL,
            Provider::Mlflow(_) => crate::error::MLFLOW_TERMINAL,
            Provider::Kfp(_) => kfp::TERMINAL,
        }
    }

    /// Whether `status` is terminal for this source.
    pub fn is_terminal(&self, status: &str) -> bool {
        self.terminal_states().contains(&status)
    }

    /// Whether `status` is this source's terminal state of a job that succeeded.
    pub fn is_success(&self, status: &str) -> bool {
        match self {
            Provider::Foundry(_) | Provider::AzureMl(_) => status == "Completed",
            Provider::Mlflow(_) => status == "FINISHED",
            Provider::Kfp(_) => status == "SUCCEEDED",
        }
    }

    /// The job's default artifacts (`<DEST>/artifacts/...`).
    pub async fn default_artifacts(&self, job: &Job) -> Result<Resolved, Error> {
        match self {
            Provider::Foundry(f) => f.default_artifacts(&job.name).await.map(Resolved::from),
            Provider::AzureMl(a) => a.default_artifacts(job).await,
            Provider::Mlflow(m) => m.default_artifacts(job).await,
            Provider::Kfp(k) => k.default_artifacts(job).await,
        }
    }

    /// Resolve the locations of `names` at once, where the source can batch it (Path B: one
    /// run-data call and one asset resolution per kind). Optional: [`Self::named_output`]
    /// resolves whatever was not prepared.
    pub async fn prepare_outputs(&self, job: &Job, names: &[String]) -> Result<(), Error> {
        match self {
            Provider::Foundry(_) | Provider::Mlflow(_) | Provider::Kfp(_) => Ok(()),
            Provider::AzureMl(a) => a.prepare_outputs(job, names).await,
        }
    }

    /// One named output.
    pub async fn named_output(&self, job: &Job, name: &str) -> Result<Resolved, OutputError> {
        match self {
            Provider::Foundry(f) => f.named_output(job, name).await.map(Resolved::from).map_err(OutputError::Failed),
            Provider::AzureMl(a) => a.named_output(job, name).await,
            Provider::Mlflow(m) => m.named_output(job, name).await,
            Provider::Kfp(k) => k.named_output(job, name).await,
        }
    }
}

/// `--children` / `--top` on a Kubeflow run: its steps are tasks of one run, not runs.
pub fn kfp_steps_refused(flag: &str) -> Error {
    Error::usage(format!(
        "{flag} selects child runs, and a Kubeflow Pipelines run's steps are tasks of the one run, not runs of their \
         own: download the run with --all-outputs (each task's outputs land in named-outputs/TASK/), or one \
         task's output with --output TASK/OUTPUT"
    ))
}

/// Whether a status is terminal for Azure jobs (exact, case-sensitive).
pub fn is_terminal(status: &str) -> bool {
    crate::error::AZURE_TERMINAL.contains(&status)
}

/// Map a failed metadata call on something everything depends on to a run-ending error.
pub fn fatal(e: CallError, what: &str) -> Error {
    fatal_with_hint(e, what, PROJECT_HINT)
}

/// The hint of a refused (or missing) credential on a Foundry project.
pub const PROJECT_HINT: &str =
    "sign in with `az login` (or set JOBDL_ACCESS_TOKEN) with an identity that can read the project's jobs";

/// [`fatal`] with the hint shown on 401/403 (and when no credential gave a token: the same hint).
pub fn fatal_with_hint(e: CallError, what: &str, hint: &str) -> Error {
    if let CallError::Credential { message } = e {
        return Error::Auth { message: format!("{what}: {message}"), hint: hint.into() };
    }
    match e.status() {
        Some(401 | 403) => Error::Auth { message: format!("{what}: access denied ({e})"), hint: hint.into() },
        Some(404) => Error::NotFound(format!("{what}: not found ({e})")),
        Some(s) if e.is_retryable() => {
            Error::ServiceUnavailable(format!("{what}: service unavailable (HTTP {s}) after {} attempts", e.attempts()))
        }
        None if e.is_retryable() => Error::ServiceUnavailable(format!("{what}: {e} (after {} attempts)", e.attempts())),
        _ => Error::Protocol(format!("{what}: {e}")),
    }
}

/// The hint of a 401/403 when the token came from `JOBDL_ACCESS_TOKEN` (the credential chain
/// was not used, so "sign in with az login" would not help).
pub const STATIC_TOKEN_HINT: &str = "JOBDL_ACCESS_TOKEN is set, so it is sent instead of signing in: replace it with a \
     valid, unexpired token for this service's audience, or unset JOBDL_ACCESS_TOKEN to sign in through the \
     credential chain (`az login`, a service principal, a managed identity)";

/// [`fatal_with_hint`] for a call that carried the token `tokens` gave: a refused
/// `JOBDL_ACCESS_TOKEN` is named as such.
pub fn fatal_for_tokens(e: CallError, what: &str, hint: &str, tokens: &crate::auth::TokenSource) -> Error {
    if tokens.is_static() && matches!(e.status(), Some(401 | 403)) {
        return Error::Auth {
            message: format!("{what}: access denied ({e}): the service refused the token in JOBDL_ACCESS_TOKEN"),
            hint: STATIC_TOKEN_HINT.into(),
        };
    }
    fatal_with_hint(e, what, hint)
}

/// A token that could not be obtained, as the error of the call that needed it.
pub fn token_error(e: Error) -> CallError {
    match e {
        Error::Auth { message, .. } => CallError::Credential { message },
        other => CallError::Transport { message: other.to_string(), attempts: 1 },
    }
}

/// Map a failed S3 listing or HEAD of `what` (`S3 bucket 'b'`, a run prefix) to a run-ending
/// error (docs/kfp-s3-api.md §6.5).
pub fn s3_fatal(e: crate::http::CallError, what: &str) -> Error {
    let code = match &e {
        crate::http::CallError::Status { code, .. } => code.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let creds_hint = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the AWS_PROFILE section of \
                      ~/.aws/credentials), that the key may read the bucket, and --s3-endpoint / --s3-region";
    match (e.status(), code.as_str()) {
        (Some(403), "RequestTimeTooSkewed") => Error::Auth {
            message: format!("{what}: request refused (RequestTimeTooSkewed)"),
            hint: "the clock of this machine is more than 15 minutes off: fix the system time".into(),
        },
        (Some(401 | 403), _) => {
            Error::Auth { message: format!("{what}: access denied ({e})"), hint: creds_hint.into() }
        }
        (Some(404), _) => {
            let kind = if code == "NoSuchBucket" || code.is_empty() { "bucket not found" } else { "not found" };
            Error::NotFound(format!("{what}: {kind} ({e})"))
        }
        (Some(301 | 307), _) | (Some(400), "AuthorizationHeaderMalformed") => Error::Usage(format!(
            "{what}: the service answered {e}: the bucket is probably in another region; set --s3-region \
             (or AWS_REGION) to the bucket's region"
        )),
        _ => fatal_with_hint(e, what, creds_hint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_normalised_or_dropped() {
        assert_eq!(timestamp(Some("2026-01-15T10:00:00Z")).as_deref(), Some("2026-01-15T10:00:00Z"));
        assert_eq!(timestamp(Some("2026-01-15T12:30:00.25+02:00")).as_deref(), Some("2026-01-15T10:30:00.25Z"));
        assert_eq!(timestamp(Some("yesterday\u{1b}[2J")), None);
        assert_eq!(timestamp(None), None);
    }

    #[test]
    fn terminal_set_is_exact() {
        for s in ["Completed", "Failed", "Canceled", "NotResponding", "Paused"] {
            assert!(is_terminal(s));
        }
        for s in ["Running", "Queued", "completed", "Finalizing", "CancelRequested", "", "Unknown"] {
            assert!(!is_terminal(s));
        }
    }

    #[test]
    fn call_errors_map_to_exit_codes() {
        let st = |status| CallError::Status { status, code: None, message: None, attempts: 5 };
        assert_eq!(fatal(st(401), "job").exit_code(), 3);
        assert_eq!(fatal(st(403), "job").exit_code(), 3);
        assert_eq!(fatal(st(404), "job").exit_code(), 4);
        let e = fatal(st(503), "job");
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("service unavailable (HTTP 503) after 5 attempts"));
        assert_eq!(fatal(st(400), "job").exit_code(), 1);
    }

    fn status(status: u16, code: Option<&str>) -> CallError {
        CallError::Status { status, code: code.map(str::to_string), message: None, attempts: 3 }
    }

    #[test]
    fn s3_failures_map_to_documented_exit_codes() {
        for code in [Some("SignatureDoesNotMatch"), Some("InvalidAccessKeyId"), Some("AccessDenied"), None] {
            let e = s3_fatal(status(403, code), "S3 bucket 'b'");
            assert_eq!(e.exit_code(), 3, "{code:?}");
            assert!(e.hint().is_some_and(|h| h.contains("AWS_SECRET_ACCESS_KEY")), "{code:?}");
        }
        let skew = s3_fatal(status(403, Some("RequestTimeTooSkewed")), "b");
        assert_eq!(skew.exit_code(), 3);
        assert!(skew.hint().is_some_and(|h| h.contains("clock")));
        let e = s3_fatal(status(404, Some("NoSuchBucket")), "b");
        assert_eq!(e.exit_code(), 4);
        assert!(e.to_string().contains("bucket not found"), "{e}");
        assert_eq!(s3_fatal(status(404, None), "b").exit_code(), 4);
        for e in [status(301, None), status(400, Some("AuthorizationHeaderMalformed"))] {
            let e = s3_fatal(e, "b");
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("--s3-region"), "{e}");
        }
        assert_eq!(s3_fatal(status(503, Some("SlowDown")), "b").exit_code(), 1);
        assert_eq!(s3_fatal(status(400, Some("InvalidArgument")), "b").exit_code(), 1);
        let t = CallError::Transport { message: "connection refused".into(), attempts: 5 };
        assert_eq!(s3_fatal(t, "b").exit_code(), 1);
    }
}

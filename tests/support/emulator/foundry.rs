//! The Foundry project routes (A1–A8): jobs, run history, artifact listings with continuation
//! tokens, content info, model versions and asset credentials.

use super::*;

pub(super) async fn foundry(shared: &Shared, incoming: &Incoming, rest: &str, body: Body) -> Reply {
    if shared.bearer(incoming) != Bearer::Valid {
        return foundry_error(StatusCode::UNAUTHORIZED, "Unauthorized", "missing or invalid bearer token");
    }
    if incoming.param("api-version").is_none_or(|v| v.is_empty()) {
        return foundry_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter is required.",
        );
    }
    let segments: Vec<String> = rest.split('/').map(decode).collect();
    let Some((project, tail)) = segments.split_first() else {
        return foundry_error(StatusCode::NOT_FOUND, "NotFound", "no such project");
    };
    if project != PROJECT {
        return foundry_error(StatusCode::NOT_FOUND, "NotFound", "no such project");
    }
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    if shared.world().foundry_strict {
        let needed = match tail.first() {
            Some(&"jobs") => Some("Jobs=V1Preview"),
            Some(&"models") => Some("Models=V1Preview"),
            _ => None,
        };
        let sent = incoming.header("foundry-features").unwrap_or_default();
        if let Some(needed) = needed
            && !sent.split(',').any(|f| f.trim().eq_ignore_ascii_case(needed))
        {
            return foundry_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("This operation requires the 'Foundry-Features: {needed}' header."),
            );
        }
    }
    match (incoming.method.as_str(), tail.as_slice()) {
        ("GET", ["jobs"]) => jobs_list::list(shared, incoming, false),
        ("GET", ["jobs", job]) => get_job(shared, job),
        ("GET", ["jobs", job, "history", "runs", run]) => run_history(shared, job, run),
        ("GET", ["jobs", job, "history", "experimentids", exp, "runs", run, "artifacts", rest @ ..]) => {
            artifacts(shared, incoming, job, exp, run, rest)
        }
        ("GET", ["models", name, "versions", version]) => model_version(shared, name, version),
        ("POST", ["models", name, "versions", version, "credentials"]) => {
            let key = (name.to_string(), version.to_string());
            let Some(asset) = shared.world().models.get(&key) else {
                return foundry_error(StatusCode::NOT_FOUND, "NotFound", "model version not found");
            };
            let body = match read_json_body(body).await {
                Ok(Some(body)) => body,
                _ => {
                    return foundry_error(StatusCode::BAD_REQUEST, "BadRequest", "body must be JSON with BlobUri");
                }
            };
            let blob_uri = match shared.world().model_body {
                ModelBody::Any => ["BlobUri", "blobUri"].iter().find_map(|k| body.get(*k).and_then(Value::as_str)),
                ModelBody::Documented => {
                    body.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("blobUri")).and_then(Value::as_str)
                }
                ModelBody::Azd => body
                    .get("BlobUri")
                    .and_then(Value::as_str)
                    .filter(|_| incoming.param("api-version").as_deref() == Some("2026-01-15-preview")),
            };
            if blob_uri.is_none() {
                return foundry_error(StatusCode::BAD_REQUEST, "BadRequest", "BlobUri is required");
            }
            credentials(shared, asset)
        }
        ("POST", ["datasets", name, "versions", version, "credentials"]) => {
            let key = (name.to_string(), version.to_string());
            let Some(asset) = shared.world().datasets.get(&key) else {
                return foundry_error(StatusCode::NOT_FOUND, "NotFound", "dataset version not found");
            };
            if read_json_body(body).await.is_err() {
                return foundry_error(StatusCode::BAD_REQUEST, "BadRequest", "body is not JSON");
            }
            if shared.world().dataset_blob_uri_root {
                return credentials_at(shared, asset, blob_url(&shared.base, &asset.container, ""));
            }
            credentials(shared, asset)
        }
        ("GET", ["datasets", name, "versions", version]) => {
            // The dataset version as the real service returns it (recording
            // `test_datasets_upload_file`): `dataUri` names the file or folder.
            let key = (name.to_string(), version.to_string());
            let Some(asset) = shared.world().datasets.get(&key) else {
                return foundry_error(StatusCode::NOT_FOUND, "NotFound", "dataset version not found");
            };
            let file = asset.kind == AssetKind::File;
            Reply::json(
                StatusCode::OK,
                &json!({
                    "id": format!("azureai://accounts/acct/projects/{PROJECT}/data/{name}/versions/{version}"),
                    "name": name,
                    "version": version,
                    "type": if file { "uri_file" } else { "uri_folder" },
                    "isReference": false,
                    "dataUri": blob_url(&shared.base, &asset.container, &asset.prefix),
                    "isSingleFile": file,
                }),
            )
        }
        _ if is_known_shape(&tail) => {
            foundry_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed")
        }
        _ => foundry_error(StatusCode::NOT_FOUND, "NotFound", "no such route"),
    }
}

pub(super) fn is_known_shape(tail: &[&str]) -> bool {
    matches!(
        tail,
        ["jobs", _]
            | ["jobs", _, "history", ..]
            | ["models", _, "versions", _]
            | ["models", _, "versions", _, "credentials"]
            | ["datasets", _, "versions", _, "credentials"]
            | ["datasets", _, "versions", _]
    )
}

/// `Ok(None)` for an empty body, `Err` for a body that is not JSON.
pub(super) async fn read_json_body(body: Body) -> Result<Option<Value>, ()> {
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|_| ())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|_| ())
}

pub(super) fn find_job<'w>(shared: &'w Shared, job: &str) -> Option<&'w JobFixture> {
    shared.world().jobs.iter().find(|j| j.name == job)
}

pub(super) fn fake_uuid(seed: &str) -> String {
    let hex: String = md5_hex(seed.as_bytes());
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

pub(super) fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn get_job(shared: &Shared, job: &str) -> Reply {
    let Some(fixture) = find_job(shared, job) else {
        return foundry_error(StatusCode::NOT_FOUND, "NotFound", &format!("job '{job}' not found"));
    };
    let status = shared.status(job, true);
    let id = format!("{ARM_PREFIX}/providers/Microsoft.MachineLearningServices/workspaces/ws/jobs/{job}");
    let body = json!({
        "id": id,
        "name": fixture.name,
        "type": "Microsoft.MachineLearningServices/workspaces/jobs",
        "properties": {
            "jobType": "Command",
            "status": status,
            "experimentName": "exp-a",
            "displayName": fixture.name,
            "outputs": fixture.outputs,
            "services": {"Tracking": {"jobServiceType": "Tracking", "endpoint": tracking::endpoint(shared)}},
        },
        "systemData": {"createdAt": "2026-01-15T10:00:00Z", "createdBy": "emulator"},
        "tags": {},
    });
    Reply::json(StatusCode::OK, &body)
}

pub(super) fn run_history(shared: &Shared, job: &str, run: &str) -> Reply {
    let fixture = find_job(shared, job).filter(|_| run == job);
    let Some(fixture) = fixture else {
        return history_error(StatusCode::NOT_FOUND, "NotFound", &format!("run '{run}' not found"));
    };
    let mut body = json!({
        "runId": fixture.name,
        "runUuid": fake_uuid(&fixture.name),
        "rootRunId": fixture.name,
        "status": shared.status(job, false),
    });
    if !fixture.experiment_id.is_empty() {
        body["experimentId"] = json!(fixture.experiment_id);
    }
    Reply::json(StatusCode::OK, &body)
}

/// Where a listing page starts, decoded from a continuation token or `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cursor {
    /// An empty page, then a token for `At(n)`.
    Empty(usize),
    At(usize),
    Repeat,
}

pub(super) const TOKEN_HEAD: &str = "tok+";
pub(super) const TOKEN_TAIL: &str = "/==";

/// Tokens carry `+`, `/` and `=` so a client that does not encode them breaks.
pub(super) fn encode_cursor(cursor: Cursor) -> String {
    let body = match cursor {
        Cursor::Empty(n) => format!("e{n}"),
        Cursor::At(n) => format!("o{n}"),
        Cursor::Repeat => "r".to_string(),
    };
    format!("{TOKEN_HEAD}{body}{TOKEN_TAIL}")
}

pub(super) fn decode_cursor(token: &str) -> Option<Cursor> {
    let body = token.strip_prefix(TOKEN_HEAD)?.strip_suffix(TOKEN_TAIL)?;
    if body == "r" {
        return Some(Cursor::Repeat);
    }
    let n = body.get(1..)?.parse().ok()?;
    match body.as_bytes().first()? {
        b'e' => Some(Cursor::Empty(n)),
        b'o' => Some(Cursor::At(n)),
        _ => None,
    }
}

pub(super) fn artifacts(shared: &Shared, incoming: &Incoming, job: &str, exp: &str, run: &str, rest: &[&str]) -> Reply {
    let fixture = find_job(shared, job).filter(|f| run == job && !f.experiment_id.is_empty() && f.experiment_id == exp);
    let Some(fixture) = fixture else {
        return history_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("run '{run}' in experiment '{exp}' not found"),
        );
    };
    match rest {
        [] => list_artifacts(shared, incoming, fixture),
        ["prefix", "contentinfo"] => prefix_contentinfo(shared, incoming, fixture),
        ["contentinfo"] if shared.world().no_path_contentinfo => {
            history_error(StatusCode::NOT_FOUND, "NotFound", "no such route")
        }
        ["contentinfo"] => path_contentinfo(shared, incoming, fixture),
        _ => history_error(StatusCode::NOT_FOUND, "NotFound", "no such route"),
    }
}

pub(super) fn bad_token() -> Reply {
    history_error(StatusCode::BAD_REQUEST, "BadRequest", "invalid continuation token")
}

pub(super) fn page<T: Clone>(items: &[T], start: usize, size: usize) -> Vec<T> {
    items.iter().skip(start).take(size).cloned().collect()
}

pub(super) fn list_artifacts(shared: &Shared, incoming: &Incoming, job: &JobFixture) -> Reply {
    let filter = incoming.param("path").unwrap_or_default();
    let items: Vec<&ArtifactFixture> = job.artifacts.iter().filter(|a| a.path.starts_with(&filter)).collect();
    let size = job.page_size.max(1);
    let token = incoming.param("continuationToken");
    let cursor = match token.as_deref() {
        None | Some("") => None,
        Some(t) => match decode_cursor(t) {
            Some(c) => Some(c),
            None => return bad_token(),
        },
    };
    let offset = incoming.param("offset");
    let more = |n: usize| n < items.len();
    let (start, next_token, next_offset) = match (job.paging, cursor) {
        (Paging::ContinuationToken, None) => (0, more(size).then_some(Cursor::Empty(size)), None),
        (Paging::ContinuationToken, Some(Cursor::Empty(n))) => {
            return artifact_page(job, Vec::new(), Some(Cursor::At(n)), None);
        }
        (Paging::ContinuationToken, Some(Cursor::At(n))) => (n, more(n + size).then_some(Cursor::At(n + size)), None),
        (Paging::RepeatToken, None) => (0, Some(Cursor::Repeat), None),
        (Paging::RepeatToken, Some(Cursor::Repeat)) => (size, Some(Cursor::Repeat), None),
        (Paging::NextLink | Paging::NextLinkForeign, None) => {
            let n = match offset.as_deref().map(str::parse::<usize>) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => return bad_token(),
            };
            (n, None, more(n + size).then_some(n + size))
        }
        _ => return bad_token(),
    };
    let value = page(&items, start, size);
    let next_link = next_offset.map(|n| {
        let host = if job.paging == Paging::NextLinkForeign { FOREIGN_BASE } else { shared.base.as_str() };
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("api-version", &incoming.param("api-version").unwrap_or_default());
        if !filter.is_empty() {
            query.append_pair("path", &filter);
        }
        query.append_pair("offset", &n.to_string());
        format!("{host}{}?{}", incoming.path, query.finish())
    });
    artifact_page(job, value, next_token, next_link)
}

pub(super) fn artifact_page(
    job: &JobFixture,
    items: Vec<&ArtifactFixture>,
    token: Option<Cursor>,
    next_link: Option<String>,
) -> Reply {
    let value: Vec<Value> = items
        .iter()
        .map(|a| {
            json!({
                "artifactId": artifact_blob_name(&job.name, &a.path),
                "origin": "ExperimentRun",
                "container": format!("dcid.{}", job.name),
                "path": a.path,
                "createdTime": "2026-01-15T10:00:00Z",
            })
        })
        .collect();
    let body = json!({
        "value": value,
        "continuationToken": token.map(encode_cursor),
        "nextLink": next_link,
    });
    Reply::json(StatusCode::OK, &body)
}

/// The `contentUri` for an artifact; `None` for [`ContentUri::Missing`] unless `fill` is set.
pub(super) fn content_uri(shared: &Shared, job: &JobFixture, artifact: &ArtifactFixture, fill: bool) -> Option<String> {
    let sig = if fill { PATH_CONTENT_SIG } else { PREFIX_CONTENT_SIG };
    let blob_uri = |container: &str, name: &str| {
        format!("{}?{}", blob_url(&shared.base, container, name), sas_query("b", "r", sig))
    };
    match &artifact.content_uri {
        ContentUri::Blob { container, name } => Some(blob_uri(container, name)),
        ContentUri::Missing if fill => {
            Some(blob_uri(ARTIFACT_CONTAINER, &artifact_blob_name(&job.name, &artifact.path)))
        }
        ContentUri::Missing => None,
        ContentUri::Raw(url) => Some(url.clone()),
    }
}

pub(super) fn content_item(job: &JobFixture, path: &str, uri: String) -> Value {
    json!({
        "origin": "ExperimentRun",
        "container": format!("dcid.{}", job.name),
        "path": path,
        "contentUri": uri,
    })
}

pub(super) fn prefix_contentinfo(shared: &Shared, incoming: &Incoming, job: &JobFixture) -> Reply {
    let Some(prefix) = incoming.param("path").filter(|p| !p.is_empty()) else {
        return history_error(StatusCode::BAD_REQUEST, "BadRequest", "path is required");
    };
    // A plain string prefix: `log` also matches `logs/...`. Items without a content URI here
    // (`Missing`) are left out; only the page's items are rendered (big listings stay linear).
    let items: Vec<&ArtifactFixture> =
        job.artifacts.iter().filter(|a| a.path.starts_with(&prefix) && a.content_uri != ContentUri::Missing).collect();
    let start = match incoming.param("continuationToken").as_deref() {
        None | Some("") => 0,
        Some(t) => match decode_cursor(t) {
            Some(Cursor::At(n)) => n,
            _ => return bad_token(),
        },
    };
    let size = job.page_size.max(1);
    let next = (start + size < items.len()).then(|| encode_cursor(Cursor::At(start + size)));
    let value: Vec<Value> = page(&items, start, size)
        .into_iter()
        .filter_map(|a| Some(content_item(job, &a.path, content_uri(shared, job, a, false)?)))
        .collect();
    let body = json!({
        "value": value,
        "continuationToken": next,
        "nextLink": null,
    });
    Reply::json(StatusCode::OK, &body)
}

/// `\` to `/`, `//` collapsed, leading `/` removed (as a client normalises listed paths).
pub(super) fn normalise(path: &str) -> String {
    let path = path.replace('\\', "/");
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    parts.join("/")
}

pub(super) fn path_contentinfo(shared: &Shared, incoming: &Incoming, job: &JobFixture) -> Reply {
    let Some(path) = incoming.param("path").filter(|p| !p.is_empty()) else {
        return history_error(StatusCode::BAD_REQUEST, "BadRequest", "path is required");
    };
    let found = job
        .artifacts
        .iter()
        .find(|a| a.path == path)
        .or_else(|| job.artifacts.iter().find(|a| normalise(&a.path) == path));
    let Some(artifact) = found else {
        return history_error(StatusCode::NOT_FOUND, "NotFound", &format!("artifact '{path}' not found"));
    };
    let uri = content_uri(shared, job, artifact, true).unwrap_or_default();
    Reply::json(StatusCode::OK, &content_item(job, &artifact.path, uri))
}

pub(super) fn model_version(shared: &Shared, name: &str, version: &str) -> Reply {
    let key = (name.to_string(), version.to_string());
    let Some(asset) = shared.world().models.get(&key) else {
        return foundry_error(StatusCode::NOT_FOUND, "NotFound", "model version not found");
    };
    let body = json!({
        "name": name,
        "version": version,
        "modelType": "safetensors",
        "assetId": format!("azureml://locations/eastus2/workspaces/00000000-0000-0000-0000-000000000001/models/{name}/versions/{version}"),
        "blobUri": blob_url(&shared.base, &asset.container, &asset.prefix),
    });
    Reply::json(StatusCode::OK, &body)
}

pub(super) fn credentials(shared: &Shared, asset: &AssetFixture) -> Reply {
    credentials_at(shared, asset, blob_url(&shared.base, &asset.container, &asset.prefix))
}

/// The credentials envelope with `blobUri` set to `blob_uri`.
pub(super) fn credentials_at(shared: &Shared, asset: &AssetFixture, blob_uri: String) -> Reply {
    let key = match asset.credential_key {
        CredKey::Type => "type",
        CredKey::CredentialType => "credentialType",
    };
    let mut credential = json!({"sasUri": container_sas_url(&shared.base, &asset.container, "")});
    credential[key] = json!("SAS");
    let body = json!({
        "blobReference": {
            "blobUri": blob_uri,
            "storageAccountArmId": format!("{ARM_PREFIX}/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}"),
            "credential": credential,
        }
    });
    Reply::json(StatusCode::OK, &body)
}

//! The Azure ML workspace routes (B1–B9): ARM, discovery, run history and asset resolution.

use super::*;

/// The ARM error envelope.
pub(super) fn arm_error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"code": code, "message": message, "target": null, "details": [], "additionalInfo": []}}),
    )
}

/// `/subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>`
/// split off `rest` (after `/subscriptions/`): the tail segments, or `None` for another workspace.
pub(super) fn workspace_tail(rest: &str) -> Option<Vec<String>> {
    let segs: Vec<String> = rest.split('/').map(decode).collect();
    match segs.as_slice() {
        [s, rg_kw, rg, p, ns, w_kw, ws, tail @ ..]
            if s == SUBSCRIPTION
                && rg_kw.eq_ignore_ascii_case("resourceGroups")
                && rg == RESOURCE_GROUP
                && p == "providers"
                && ns == "Microsoft.MachineLearningServices"
                && w_kw == "workspaces"
                && ws == WORKSPACE =>
        {
            Some(tail.to_vec())
        }
        _ => None,
    }
}

pub(super) fn arm_job_id(job: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}/jobs/{job}"
    )
}

pub(super) async fn arm(shared: &Shared, incoming: &Incoming, rest: &str, body: Body) -> Reply {
    if shared.bearer(incoming) != Bearer::Valid {
        return arm_error(StatusCode::UNAUTHORIZED, "AuthenticationFailed", "missing or invalid bearer token");
    }
    if incoming.param("api-version").is_none_or(|v| v.is_empty()) {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter is required.",
        );
    }
    let Some(tail) = workspace_tail(rest) else {
        return arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such workspace");
    };
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    match (incoming.method.as_str(), tail.as_slice()) {
        ("GET", []) => Reply::json(
            StatusCode::OK,
            &json!({
                "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"),
                "name": WORKSPACE,
                "location": "eastus2",
                "properties": {"discoveryUrl": format!("{}/discovery", shared.base), "workspaceId": WORKSPACE_GUID},
            }),
        ),
        ("GET", ["jobs"]) => jobs_list::list(shared, incoming, true),
        ("GET", ["jobs", job]) => arm_job(shared, job),
        ("GET", ["datastores"]) => {
            let only_default = incoming.param("isDefault").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let value: Vec<Value> = shared
                .world
                .datastores
                .iter()
                .filter(|(_, d)| !only_default || d.is_default)
                .map(|(name, d)| datastore_json(name, d))
                .collect();
            Reply::json(StatusCode::OK, &json!({ "value": value }))
        }
        ("GET", ["datastores", name]) => match shared.world().datastores.get(*name) {
            Some(d) => Reply::json(StatusCode::OK, &datastore_json(name, d)),
            None => arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("datastore '{name}' not found")),
        },
        ("POST", ["datastores", name, "listSecrets"]) => {
            if read_json_body(body).await.is_err() {
                return arm_error(StatusCode::BAD_REQUEST, "BadRequest", "body is not JSON");
            }
            let Some(d) = shared.world().datastores.get(*name) else {
                return arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("datastore '{name}' not found"));
            };
            match d.cred {
                DsCred::Sas => Reply::json(
                    StatusCode::OK,
                    &json!({"secretsType": "Sas", "sasToken": format!("?{}", sas_query("c", "rl", CONTAINER_SIG))}),
                ),
                DsCred::AccountKey => {
                    Reply::json(StatusCode::OK, &json!({"secretsType": "AccountKey", "key": DEV_ACCOUNT_KEY}))
                }
                DsCred::Identity => {
                    arm_error(StatusCode::BAD_REQUEST, "BadRequest", "identity-based datastores have no secrets")
                }
                DsCred::SecretsDenied => arm_error(
                    StatusCode::FORBIDDEN,
                    "AuthorizationFailed",
                    "the client does not have authorization to perform action 'listSecrets'",
                ),
            }
        }
        _ => arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such route"),
    }
}

pub(super) fn datastore_json(name: &str, d: &super::super::world::DatastoreFixture) -> Value {
    let cred = match d.cred {
        DsCred::Sas | DsCred::SecretsDenied => "Sas",
        DsCred::AccountKey => "AccountKey",
        DsCred::Identity => "None",
    };
    let container_key = if d.kind == "AzureDataLakeGen2" { "filesystem" } else { "containerName" };
    let mut props = json!({
        "datastoreType": d.kind, "accountName": ACCOUNT, "endpoint": "core.windows.net", "protocol": "https",
        "isDefault": d.is_default,
        "credentials": {"credentialsType": cred, "secrets": {"secretsType": cred}},
    });
    props[container_key] = json!(d.container);
    json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}/datastores/{name}"),
        "name": name,
        "properties": props,
    })
}

pub(super) fn arm_job(shared: &Shared, job: &str) -> Reply {
    let Some(fixture) = find_job(shared, job) else {
        return arm_error(StatusCode::NOT_FOUND, "ResourceNotFound", &format!("job '{job}' not found"));
    };
    let status = shared.status(job, true);
    let body = json!({
        "id": arm_job_id(job),
        "name": fixture.name,
        "type": "Microsoft.MachineLearningServices/workspaces/jobs",
        "properties": {
            "jobType": fixture.job_type,
            "status": status,
            "experimentName": "exp-a",
            "displayName": fixture.name,
            "properties": fixture.properties,
            "outputs": fixture.outputs,
            "services": {"Studio": {"jobServiceType": "Studio", "endpoint": format!("https://ml.azure.com/runs/{job}")},
                         "Tracking": {"jobServiceType": "Tracking", "endpoint": tracking::endpoint(shared)}},
        },
        "systemData": {"createdAt": "2026-01-15T10:00:00Z", "createdBy": "emulator"},
    });
    let mut body = body;
    if !fixture.objective.is_null() {
        body["properties"]["objective"] = fixture.objective.clone();
    }
    Reply::json(StatusCode::OK, &body)
}

/// B3: must be called without Authorization (400 otherwise).
pub(super) fn discovery(shared: &Shared, incoming: &Incoming) -> Reply {
    if incoming.header("authorization").is_some() {
        return Reply::bytes(StatusCode::BAD_REQUEST, "text/plain", b"discovery must not receive a token\n".to_vec());
    }
    let api = shared.world().discovery_api.clone().unwrap_or_else(|| shared.base.clone());
    let body = json!({
        "api": api, "catalog": api, "experimentation": api, "gallery": api, "history": api, "hyperdrive": api,
        "labeling": api, "modelmanagement": api, "pipelines": api, "studiocoreservices": api,
    });
    Reply::json(StatusCode::OK, &body)
}

#[derive(Clone, Copy)]
pub(super) enum MlApi {
    RunData,
    Data,
    Model,
}

pub(super) async fn ml_api(shared: &Shared, incoming: &Incoming, rest: &str, api: MlApi, body: Body) -> Reply {
    if shared.bearer(incoming) != Bearer::Valid {
        return history_error(StatusCode::UNAUTHORIZED, "Unauthorized", "missing or invalid bearer token");
    }
    let Some(tail) = workspace_tail(rest) else {
        return history_error(StatusCode::NOT_FOUND, "NotFound", "no such workspace");
    };
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    if incoming.method != Method::POST {
        return history_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed");
    }
    let Ok(Some(body)) = read_json_body(body).await else {
        return history_error(StatusCode::BAD_REQUEST, "BadRequest", "a JSON body is required");
    };
    match (api, tail.as_slice()) {
        (MlApi::RunData, ["rundata"]) => {
            // The real client (azure-ai-ml 1.32.0, recorded) always sends `api-version=v1.0`.
            if !incoming.query.split('&').any(|kv| kv == "api-version=v1.0") {
                return history_error(StatusCode::BAD_REQUEST, "BadRequest", "api-version v1.0 is required");
            }
            let run = body.get("runId").and_then(Value::as_str).unwrap_or_default();
            let Some(job) = find_job(shared, run) else {
                return history_error(StatusCode::NOT_FOUND, "NotFound", &format!("run '{run}' not found"));
            };
            let body = json!({
                "runMetadata": {"runId": job.name, "experimentId": job.experiment_id, "status": shared.status(run, false),
                                "outputs": job.run_outputs},
                "runDefinition": {}, "jobSpecification": {},
            });
            Reply::json(StatusCode::OK, &body)
        }
        (MlApi::Data, ["dataversion", "batchGetResolvedUris"]) => resolved_uris(&shared.world().arm_data, &body, "uri"),
        (MlApi::Model, ["models", "batchGetResolvedUris"]) => resolved_uris(&shared.world().arm_models, &body, "path"),
        _ => history_error(StatusCode::NOT_FOUND, "NotFound", "no such route"),
    }
}

/// B5/B6: `{"values": {id: {<key>: uri, "type": ...}}}` for the known IDs of `{"values": [ids]}`.
pub(super) fn resolved_uris(
    assets: &std::collections::BTreeMap<String, super::super::world::ResolvedAsset>,
    body: &Value,
    key: &str,
) -> Reply {
    let Some(ids) = body.get("values").and_then(Value::as_array) else {
        return history_error(StatusCode::BAD_REQUEST, "BadRequest", "values is required");
    };
    let mut values = serde_json::Map::new();
    for id in ids.iter().filter_map(Value::as_str) {
        if let Some(a) = assets.get(id) {
            let mut v = json!({"type": a.kind});
            v[key] = json!(a.uri);
            values.insert(id.to_string(), v);
        }
    }
    Reply::json(StatusCode::OK, &json!({ "values": values }))
}

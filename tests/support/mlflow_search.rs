//! The fake MLflow server's search routes (`jobdl jobs`), a child of `mlflow_fake.rs`:
//! `POST experiments/search` (experiment `1`, "fake-exp") and `POST runs/search` over the
//! configured runs, newest first: runs sorted by id, the N-th started N minutes after
//! 2026-01-15T10:00:00Z; status as `runs/get` would answer now (without advancing it). Pages
//! of `max_results` runs, `page_token` `s-<offset>`. A `filter` of the one form
//! `tags.mlflow.parentRunId = '<id>'` keeps that run's children (any other filter is a 400);
//! each run carries its `mlflow.parentRunId` tag and `metrics`.
use super::*;

pub(super) fn route(shared: &Shared, path: &str, body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if path.ends_with("/experiments/search") {
        return json_reply(
            200,
            json!({"experiments": [{"experiment_id": "1", "name": "fake-exp",
            "lifecycle_stage": "active"}]}),
        );
    }
    if v["experiment_ids"].as_array().is_none_or(|a| a.is_empty()) {
        return error(400, "INVALID_PARAMETER_VALUE", "experiment_ids must be given");
    }
    let cfg = lock(&shared.cfg).clone();
    let polls = lock(&shared.polls).clone();
    let parent = match v["filter"].as_str().filter(|f| !f.is_empty()) {
        None => None,
        Some(f) => match f.strip_prefix("tags.mlflow.parentRunId = '").and_then(|r| r.strip_suffix('\'')) {
            Some(p) => Some(p.to_string()),
            None => return error(400, "INVALID_PARAMETER_VALUE", "unsupported filter"),
        },
    };
    let mut ids: Vec<&String> =
        cfg.runs.iter().filter(|(_, r)| parent.is_none() || r.parent == parent).map(|(id, _)| id).collect();
    ids.sort();
    let base: i64 = 1_768_471_200_000;
    let mut runs: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let run = &cfg.runs[*id];
            let n = polls.get(*id).copied().unwrap_or(0);
            let status = run.statuses.get(n).or(run.statuses.last()).cloned().unwrap_or_default();
            let metrics: Vec<Value> = run.metrics.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
            let tags: Vec<Value> =
                run.parent.iter().map(|p| json!({"key": "mlflow.parentRunId", "value": p})).collect();
            let name = run.run_name.clone().unwrap_or_else(|| format!("{id}-name"));
            json!({"info": {"run_id": id, "run_uuid": id, "experiment_id": "1", "run_name": name,
                "status": status, "start_time": base + i as i64 * 60_000, "artifact_uri": run.artifact_uri,
                "lifecycle_stage": "active"}, "data": {"metrics": metrics, "tags": tags}})
        })
        .collect();
    runs.reverse();
    let size = v["max_results"].as_u64().unwrap_or(1000) as usize;
    let start: usize =
        v["page_token"].as_str().and_then(|t| t.strip_prefix("s-")).and_then(|t| t.parse().ok()).unwrap_or(0);
    let end = (start + size).min(runs.len());
    let mut resp = json!({"runs": runs.get(start..end).map(<[Value]>::to_vec).unwrap_or_default()});
    if end < runs.len() {
        resp["next_page_token"] = json!(format!("s-{end}"));
    }
    json_reply(200, resp)
}

//! A job's child runs, for `download --children` and `--top K`: run history's
//! `GET /history/v1.0/<W>/runs/<id>/children` (the jobs whose `parent` is `<id>`, two a page: the
//! first page ends with a `continuationToken`, sent back as `$continuationtoken`, later ones with
//! a `nextLink`), and the tracking service's MLflow `runs/get` and `runs/search` (the
//! `tags.mlflow.parentRunId = '<id>'` filter only; `data.metrics` holds each child's last logged
//! value of every metric in `World::metrics`, two runs a page). Every route needs the token.

use super::arm::workspace_tail;
use super::*;

/// Runs per page (small, so paging is exercised).
const PAGE: usize = 2;

/// The children of `parent`, in the world's order.
fn children_of<'w>(shared: &'w Shared, parent: &str) -> Vec<&'w JobFixture> {
    shared.world().jobs.iter().filter(|j| j.parent.as_deref() == Some(parent)).collect()
}

fn history_error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(status, &json!({"error": {"code": code, "message": message}}))
}

/// `rest` is the path after `/history/v1.0/subscriptions/`; `None` when this is not the
/// children route (another run-history route handles it).
pub(super) fn history(shared: &Shared, incoming: &Incoming, rest: &str) -> Option<Reply> {
    let tail = workspace_tail(rest)?;
    let [runs, run, children] = tail.as_slice() else { return None };
    if runs != "runs" || children != "children" || incoming.method != Method::GET {
        return None;
    }
    if shared.bearer(incoming) != Bearer::Valid {
        return Some(history_error(StatusCode::UNAUTHORIZED, "Unauthorized", "missing or invalid bearer token"));
    }
    if find_job(shared, run).is_none() {
        return Some(history_error(StatusCode::NOT_FOUND, "NotFound", &format!("run '{run}' not found")));
    }
    let start: usize = incoming
        .param("$continuationtoken")
        .or_else(|| incoming.param("skip"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let all = children_of(shared, run);
    let value: Vec<Value> = all
        .iter()
        .skip(start)
        .take(PAGE)
        .map(|j| {
            let mut v = json!({"runId": j.name, "parentRunId": run, "status": shared.status(&j.name, false),
                               "runType": "azureml.StepRun", "experimentId": j.experiment_id});
            if let Some(d) = &j.display_name {
                v["displayName"] = json!(d);
            }
            v
        })
        .collect();
    let mut body = json!({"value": value});
    let next = start + PAGE;
    if next < all.len() {
        if start == 0 {
            body["continuationToken"] = json!(next.to_string());
        } else {
            let path = incoming.path.clone();
            body["nextLink"] = json!(format!("{}{path}?skip={next}", shared.base));
        }
    }
    Some(Reply::json(StatusCode::OK, &body))
}

fn mlflow_error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(status, &json!({"error_code": code, "message": message}))
}

/// The tracking service's `runs/get` and `runs/search` (`rest` after
/// `/mlflow/v1.0/subscriptions/`); `None` for its other routes.
pub(super) async fn tracking(shared: &Shared, incoming: &Incoming, rest: &str, body: Body) -> Option<Reply> {
    let tail = workspace_tail(rest)?.join("/");
    let search = match tail.as_str() {
        "api/2.0/mlflow/runs/get" => false,
        "api/2.0/mlflow/runs/search" => true,
        _ => return None,
    };
    if shared.bearer(incoming) != Bearer::Valid {
        return Some(mlflow_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "missing or invalid bearer token"));
    }
    if !search {
        let run = incoming.param("run_id").unwrap_or_default();
        let Some(job) = find_job(shared, &run) else {
            return Some(mlflow_error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", &format!("run '{run}'")));
        };
        let info = json!({"run_id": job.name, "experiment_id": job.experiment_id, "status": "FINISHED"});
        return Some(Reply::json(StatusCode::OK, &json!({"run": {"info": info, "data": {}}})));
    }
    let Ok(Some(v)) = read_json_body(body).await else {
        return Some(mlflow_error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", "a JSON body is required"));
    };
    let filter = v["filter"].as_str().unwrap_or_default();
    let Some(parent) = filter.strip_prefix("tags.mlflow.parentRunId = '").and_then(|r| r.strip_suffix('\'')) else {
        return Some(mlflow_error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", "unsupported filter"));
    };
    let Some(parent_job) = find_job(shared, parent) else {
        return Some(mlflow_error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", "no such parent"));
    };
    if v["experiment_ids"] != json!([parent_job.experiment_id]) {
        return Some(mlflow_error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "search the parent's experiment",
        ));
    }
    let world = shared.world();
    let runs: Vec<Value> = children_of(shared, parent)
        .iter()
        .map(|j| {
            let metrics: Vec<Value> = world
                .metrics
                .get(&j.name)
                .into_iter()
                .flatten()
                .filter_map(|(k, h)| h.last().map(|(step, value)| json!({"key": k, "value": value, "step": step})))
                .collect();
            let mut info = json!({"run_id": j.name, "experiment_id": j.experiment_id, "status": "FINISHED"});
            if let Some(d) = &j.display_name {
                info["run_name"] = json!(d);
            }
            json!({"info": info, "data": {"metrics": metrics,
                   "tags": [{"key": "mlflow.parentRunId", "value": parent}]}})
        })
        .collect();
    let start: usize = v["page_token"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    let mut reply = json!({"runs": runs.iter().skip(start).take(PAGE).collect::<Vec<_>>()});
    if start + PAGE < runs.len() {
        reply["next_page_token"] = json!((start + PAGE).to_string());
    }
    Some(Reply::json(StatusCode::OK, &reply))
}

//! Azure ML's MLflow-compatible tracking service: `GET /mlflow/v1.0/<W>/api/2.0/mlflow/metrics/get-history`
//! (needs the bearer token; `run_id` is the job name), paged two values at a time.

use super::arm::workspace_tail;
use super::*;

/// Values per history page (small, so paging is exercised).
const PAGE: usize = 2;

/// The job JSON's tracking endpoint: the world's override, else this emulator (plain http, as
/// the client accepts for a listed loopback host).
pub(super) fn endpoint(shared: &Shared) -> String {
    shared.world().tracking_endpoint.clone().unwrap_or_else(|| {
        format!(
            "{}/mlflow/v1.0/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}?",
            shared.base
        )
    })
}

fn mlflow_error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(status, &json!({"error_code": code, "message": message}))
}

pub(super) fn route(shared: &Shared, incoming: &Incoming, rest: &str) -> Reply {
    if shared.bearer(incoming) != Bearer::Valid {
        return mlflow_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "missing or invalid bearer token");
    }
    let Some(tail) = workspace_tail(rest) else {
        return mlflow_error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", "no such workspace");
    };
    if incoming.method != Method::GET || tail.join("/") != "api/2.0/mlflow/metrics/get-history" {
        return mlflow_error(StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND", "no such route");
    }
    let run = incoming.param("run_id").unwrap_or_default();
    if find_job(shared, &run).is_none() {
        return mlflow_error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", &format!("run '{run}' not found"));
    }
    let key = incoming.param("metric_key").unwrap_or_default();
    let history = shared.world().metrics.get(&run).and_then(|m| m.get(&key)).cloned().unwrap_or_default();
    let start: usize = incoming.param("page_token").and_then(|t| t.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = history
        .iter()
        .skip(start)
        .take(PAGE)
        .map(
            |(step, value)| json!({"key": key, "value": value, "step": step, "timestamp": 1_700_000_000_000i64 + step}),
        )
        .collect();
    let mut body = json!({});
    if !page.is_empty() {
        body["metrics"] = json!(page);
    }
    if start + PAGE < history.len() {
        body["next_page_token"] = json!((start + PAGE).to_string());
    }
    Reply::json(StatusCode::OK, &body)
}

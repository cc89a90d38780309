//! MLflow `runs/search`, page by page: the one loop behind `jobdl jobs` / `--experiment` on a
//! tracking server and the child runs of a run (`download --children`, `--top K`) on a tracking
//! server or Azure ML's MLflow-compatible tracking service. Every call is built on one REST base
//! and sent with that base's credentials only.
use super::{HistoryAt, RUNS_GET, RUNS_SEARCH, SEARCH_PAGE, endpoint_at, mlflow_pages, next_token, too_many};
use crate::error::Error;
use crate::http::{CallError, JsonRequest};
use crate::provider::children::Child;
use crate::provider::jobs::text;
use serde_json::Value;

/// POST `runs/search` with `body` on `at.base`, following `next_page_token`; `each` takes every
/// run of every page and returns `true` to stop. `fatal` maps a failed call (with `what`).
pub(crate) async fn runs_search_at(
    at: &HistoryAt<'_>,
    mut body: Value,
    what: &str,
    fatal: &impl Fn(CallError, &str) -> Error,
    mut each: impl FnMut(&Value) -> bool,
) -> Result<(), Error> {
    let mut pages = mlflow_pages();
    loop {
        let url = endpoint_at(at.base, RUNS_SEARCH, &[]);
        let req =
            JsonRequest { method: reqwest::Method::POST, url, bearer: None, body: Some(body.clone()), features: None };
        let page = at.meta.json_authorized(&req, at.auth).await.map_err(|e| fatal(e, what))?;
        if !page.is_object() {
            return Err(Error::Protocol(format!("{what}: malformed page (not an object)")));
        }
        for run in page.get("runs").and_then(Value::as_array).into_iter().flatten() {
            if each(run) {
                return Ok(());
            }
        }
        match next_token(&page, &mut pages, what)? {
            Some(t) => body["page_token"] = Value::String(t),
            None => return Ok(()),
        }
    }
}

/// A run of a `runs/search` page as a child: its id, name (`run_name`, else the
/// `mlflow.runName` tag), status and the latest value of `metric`; `None` without an id.
pub(crate) fn child(run: &Value, metric: Option<&str>) -> Option<Child> {
    let info = run.get("info")?;
    let id = text(info.get("run_id")).or_else(|| text(info.get("run_uuid")))?;
    let data = run.get("data");
    let listed = |field: &str, key: &str| {
        data.and_then(|d| d.get(field))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|m| m.get("key").and_then(Value::as_str) == Some(key))
    };
    let name = info
        .get("run_name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| listed("tags", "mlflow.runName").and_then(|t| t.get("value")).and_then(Value::as_str))
        .map(str::to_string);
    let value = metric.and_then(|m| listed("metrics", m)).and_then(|m| match m.get("value") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    });
    Some(Child { id, name, status: text(info.get("status")).unwrap_or_default(), value })
}

/// The child runs of `parent` (runs tagged `mlflow.parentRunId = parent`), searched in the
/// parent's experiment (read with `runs/get`), with the latest value of `metric` when given
/// (the server is asked to order by it; the caller ranks). At most `at.max_entries` children.
pub async fn child_runs_at(
    at: &HistoryAt<'_>,
    parent: &str,
    metric: Option<&str>,
    fatal: impl Fn(CallError, &str) -> Error,
) -> Result<Vec<Child>, Error> {
    // Both go inside a quoted filter string: a quote or backslash would change its meaning.
    if parent.contains(['\'', '\\']) {
        return Err(Error::usage(format!("run id '{}' cannot be searched for", crate::safepath::printable(parent))));
    }
    let what = format!("MLflow run '{parent}'");
    let url = endpoint_at(at.base, RUNS_GET, &[("run_id", parent)]);
    let req = JsonRequest { method: reqwest::Method::GET, url, bearer: None, body: None, features: None };
    let run = at.meta.json_authorized(&req, at.auth).await.map_err(|e| fatal(e, &what))?;
    let experiment = run
        .get("run")
        .and_then(|r| r.get("info"))
        .and_then(|i| i.get("experiment_id"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Protocol(format!("{what}: response has no run.info.experiment_id")))?;
    let mut body = serde_json::json!({
        "experiment_ids": [experiment],
        "filter": format!("tags.mlflow.parentRunId = '{parent}'"),
        "max_results": SEARCH_PAGE,
        "run_view_type": "ACTIVE_ONLY",
    });
    if let Some(m) = metric.filter(|m| !m.contains('`')) {
        body["order_by"] = serde_json::json!([format!("metrics.`{m}` DESC")]);
    }
    let what = format!("child runs of MLflow run '{parent}'");
    let mut children = Vec::new();
    let mut over = false;
    runs_search_at(at, body, &what, &fatal, |run| {
        if let Some(c) = child(run, metric) {
            children.push(c);
        }
        over = children.len() > at.max_entries;
        over
    })
    .await?;
    if over {
        return Err(Error::Protocol(format!("{what}: {}", too_many(at.max_entries))));
    }
    Ok(children)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn search_runs_become_children_defensively() {
        let run = json!({"info": {"run_id": "r1", "run_name": "", "status": "FINISHED"},
            "data": {"tags": [{"key": "mlflow.runName", "value": "trial 1"}],
                     "metrics": [{"key": "acc", "value": 0.5}, {"key": "loss", "value": "0.25"}]}});
        let c = child(&run, Some("loss")).unwrap();
        assert_eq!(
            (c.id.as_str(), c.name.as_deref(), c.status.as_str(), c.value),
            ("r1", Some("trial 1"), "FINISHED", Some(0.25))
        );
        assert_eq!(child(&run, Some("f1")).unwrap().value, None);
        assert_eq!(child(&run, None).unwrap().value, None);
        assert!(child(&json!({"info": {"status": "x"}}), None).is_none());
        assert!(child(&json!([1]), None).is_none());
        let bare = child(&json!({"info": {"run_uuid": "u", "run_name": "n"}, "data": 7}), Some("loss")).unwrap();
        assert_eq!((bare.id.as_str(), bare.name.as_deref(), bare.value), ("u", Some("n"), None));
    }
}

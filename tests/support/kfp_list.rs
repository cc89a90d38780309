//! The fake KFP API's run listings (`jobdl jobs`), a child of `kfp_api.rs`: `GET
//! apis/v2beta1/runs` over the runs added with `run` (state as a GET would answer now, without
//! advancing it) and `GET apis/v1beta1/runs` over the v1 runs. A fake with only v1 runs has no v2
//! API (404, as a KFP 1.x server). Newest `created_at` first (then by id); `page_size` runs per
//! page, `page_token` `p-<offset>`.
use super::*;

pub(super) fn runs(s: &Shared, version: &str, query: &str) -> Response {
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let mut rows: Vec<Value> = if version == "v2beta1" {
        if s.runs.is_empty() && !s.v1.is_empty() {
            return Response::builder().status(StatusCode::NOT_FOUND).body(Body::from("404 page not found")).unwrap();
        }
        s.runs
            .iter()
            .map(|(id, (states, run))| {
                let n = s.polls.get(id).copied().unwrap_or(0);
                let mut run = run.clone();
                run["run_id"] = json!(id);
                run["state"] = json!(states.get(n).or(states.last()).cloned().unwrap_or_default());
                run
            })
            .collect()
    } else {
        s.v1.values().map(|v| v["run"].clone()).collect()
    };
    // Multi-user mode (a run carries the fake-only `namespace` of its profile): the listing must
    // name a namespace (`namespace` in v2beta1, a NAMESPACE resource reference in v1beta1), as
    // the multi-user API server demands, and lists only that namespace's runs.
    let namespace_of = |r: &Value| {
        r["namespace"].as_str().map(str::to_string).or_else(|| {
            r["resource_references"].as_array().into_iter().flatten().find_map(|x| {
                (x["key"]["type"] == "NAMESPACE").then(|| x["key"]["id"].as_str().map(str::to_string)).flatten()
            })
        })
    };
    if rows.iter().any(|r| namespace_of(r).is_some()) {
        let asked = if version == "v2beta1" {
            q.get("namespace").cloned()
        } else {
            (q.get("resource_reference_key.type").map(String::as_str) == Some("NAMESPACE"))
                .then(|| q.get("resource_reference_key.id").cloned())
                .flatten()
        };
        let Some(ns) = asked.filter(|n| !n.is_empty()) else {
            return json_response(
                400,
                &json!({"error": "Invalid input error: ListRuns must filter by namespace in multi-user mode", "code": 3}),
            );
        };
        rows.retain(|r| namespace_of(r).as_deref() == Some(ns.as_str()));
    }
    let key = |r: &Value| {
        let created = r["created_at"].as_str().unwrap_or_default().to_string();
        let id = r["run_id"].as_str().or(r["id"].as_str()).unwrap_or_default().to_string();
        (created, id)
    };
    rows.sort_by_key(|r| std::cmp::Reverse(key(r)));
    let size: usize = q.get("page_size").and_then(|p| p.parse().ok()).unwrap_or(20).max(1);
    let start: usize = q.get("page_token").and_then(|t| t.strip_prefix("p-")).and_then(|t| t.parse().ok()).unwrap_or(0);
    let end = (start + size).min(rows.len());
    let mut body = json!({"runs": rows.get(start..end).map(<[Value]>::to_vec).unwrap_or_default(),
        "total_size": rows.len()});
    if end < rows.len() {
        body["next_page_token"] = json!(format!("p-{end}"));
    }
    json_response(200, &body)
}

//! Azure ML's MLflow-compatible tracking service, where Azure ML and Foundry jobs' metrics live
//! (`download --best`; docs/azure-api.md §3.10). The job names it in
//! `properties.services.Tracking.endpoint` (`azureml://<region>.api.azureml.ms/mlflow/v1.0/<W>?`);
//! the job's name is the MLflow run id, and the history is read with the MLflow REST API through
//! [`mlflow::metric_history_at`](super::mlflow::metric_history_at), with the ARM-audience token.
//!
//! The endpoint comes from a response, so it is hostile: its host must be a regional Azure ML API
//! host of the workspace's cloud (or a listed one), checked before a token is fetched for it, and
//! every call is built from that one base, so the token reaches no other origin.
use super::Job;
use super::children::Child;
use super::mlflow::search::child_runs_at;
use super::mlflow::{HistoryAt, metric_history_at};
use crate::auth::TokenSource;
use crate::best::MetricPoint;
use crate::error::Error;
use crate::hosts::AllowList;
use crate::http::{CallError, JsonRequest, MetaClient};
use serde_json::Value;
use url::Url;

/// What a call on a job's tracking service needs: the client, the tokens, the host rules, the
/// token's audience (the cloud's ARM scope) and the most entries a listing may hold (the
/// `max_list_entries` setting).
#[derive(Clone, Copy)]
pub struct Service<'a> {
    pub meta: &'a MetaClient,
    pub tokens: &'a TokenSource,
    pub allow: &'a AllowList,
    pub scope: &'a str,
    pub max_entries: usize,
}

/// What to do when the service refuses the token.
const HINT: &str = "sign in with `az login` (or set JOBDL_ACCESS_TOKEN) with an identity that can read the \
                    workspace's jobs and their metrics (e.g. the AzureML Data Scientist role)";

/// The MLflow REST base of a tracking endpoint: `azureml://H/P?` becomes `https://H/P` (`https://`
/// and, for listed loopback hosts, `http://` endpoints are taken as they are); the query is
/// dropped. The host must pass [`AllowList::check_ml_api`]; user info or a fragment is refused.
pub fn base(raw: &str, allow: &AllowList) -> Result<Url, String> {
    let raw = raw.trim();
    let shown = crate::redact::redact(raw);
    let rest = raw.get(..10).filter(|p| p.eq_ignore_ascii_case("azureml://")).map(|_| &raw[10..]);
    let parsed = match rest {
        Some(rest) => Url::parse(&format!("https://{rest}")),
        None => Url::parse(raw),
    }
    .map_err(|e| format!("tracking endpoint '{shown}' is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(format!("tracking endpoint '{shown}': expected azureml:// or https://"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.fragment().is_some() {
        return Err("the tracking endpoint must not carry user info or a fragment".into());
    }
    let mut url = parsed;
    url.set_query(None);
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    allow.check_ml_api(&url).map_err(|e| format!("tracking endpoint not allowed: {e}"))?;
    Ok(url)
}

/// The run whose metrics go with the files downloaded for `job`: a sweep's best child, a reused
/// pipeline step's original run, else the job itself.
pub fn metrics_run(job: &Job) -> &str {
    job.best_child.as_deref().or(job.reused_run.as_deref()).unwrap_or(&job.name)
}

/// `job`'s tracking base, validated, and the `Authorization` value for it (a token of `scope`,
/// fetched only once the host passed). `flag` names what needs it, for the message when the
/// job names no endpoint.
async fn authorized(
    tokens: &TokenSource,
    allow: &AllowList,
    scope: &str,
    job: &Job,
    flag: &str,
) -> Result<(Url, String), Error> {
    let Some(raw) = job.tracking.as_deref().filter(|t| !t.trim().is_empty()) else {
        return Err(Error::NotFound(format!(
            "{flag}: job '{}' names no MLflow tracking endpoint (properties.services.Tracking.endpoint), \
             so its metrics and child runs cannot be read",
            job.name
        )));
    };
    let base = base(raw, allow).map_err(|e| Error::Protocol(format!("job '{}': {e}", job.name)))?;
    let token = tokens.token(scope).await?;
    Ok((base, format!("Bearer {token}")))
}

/// Map a failed call on the tracking service to the run-ending error.
fn fatal(e: CallError, what: &str, base: &Url, tokens: &TokenSource) -> Error {
    let shown = crate::redact::url_for_display(base);
    if super::mlflow::resource_missing(&e) || e.status() == Some(404) {
        return Error::NotFound(format!("{what}: not found on {shown} ({e})"));
    }
    super::fatal_for_tokens(e, &format!("{what} on {shown}"), HINT, tokens)
}

/// Every logged value of `metric` of `job`'s run ([`metrics_run`]) from the tracking service the
/// job names, with a token of `scope` (the cloud's ARM audience); more than `max_entries` values
/// (the `max_list_entries` setting) end the call.
pub async fn metric_history(service: &Service<'_>, job: &Job, metric: &str) -> Result<Vec<MetricPoint>, Error> {
    let Service { meta, tokens, allow, scope, max_entries } = *service;
    let (base, auth) =
        authorized(tokens, allow, scope, job, &format!("--best {metric}")).await.map_err(|e| match e {
            Error::NotFound(m) => Error::NotFound(format!("{m}; pick the checkpoint with --include '<folder>/**'")),
            other => other,
        })?;
    let at = HistoryAt { meta, base: &base, auth: Some(&auth), max_entries };
    metric_history_at(&at, metrics_run(job), metric, |e, what| {
        if super::mlflow::resource_missing(&e) {
            return fatal(e, what, &base, tokens);
        }
        let shown = crate::redact::url_for_display(&base);
        super::fatal_for_tokens(e, &format!("{what} on {shown}"), HINT, tokens)
    })
    .await
}

/// The run-history URL of `run`'s children on the tracking base's host (docs/azure-api.md
/// §3.11): `https://H/mlflow/v1.0/<W>` gives `https://H/history/v1.0/<W>/runs/<run>/children`.
fn children_url(base: &Url, run: &str) -> Result<Url, String> {
    let w = base
        .path()
        .strip_prefix("/mlflow/v1.0/")
        .filter(|w| w.starts_with("subscriptions/"))
        .ok_or("the tracking endpoint does not name a workspace (/mlflow/v1.0/subscriptions/…)")?;
    let mut url = base.clone();
    url.set_path(&format!("/history/v1.0/{w}/runs/{}/children", super::azureml::enc(run)));
    Ok(url)
}

/// One run of a run-history children page: `runId`, `displayName` (else `name`), `status`.
fn history_child(v: &Value) -> Option<Child> {
    use super::foundry::{get_ci, str_ci};
    let id = super::jobs::text(get_ci(v, "runId"))?;
    let name = [str_ci(v, "displayName"), str_ci(v, "name")].into_iter().flatten().find(|s| !s.trim().is_empty());
    Some(Child {
        id,
        name: name.map(str::to_string),
        status: str_ci(v, "status").unwrap_or("").to_string(),
        value: None,
    })
}

/// `job`'s child runs from Azure ML: with `metric` (a sweep's trials for `--top`), MLflow
/// `runs/search` on the job's tracking endpoint, each with the metric's latest value; without
/// (a pipeline's steps for `--children`), run history's children of the run on the same host
/// (the route `ml_client.jobs.list(parent_job_name=…)` calls), paged by `nextLink` (or
/// `continuationToken`, sent back as `$continuationtoken`) and never off that host.
pub async fn children(service: &Service<'_>, job: &Job, metric: Option<&str>) -> Result<Vec<Child>, Error> {
    let Service { meta, tokens, allow, scope, max_entries } = *service;
    let flag = if metric.is_some() { "--top" } else { "--children" };
    let (base, auth) = authorized(tokens, allow, scope, job, flag).await?;
    if let Some(m) = metric {
        let at = HistoryAt { meta, base: &base, auth: Some(&auth), max_entries };
        return child_runs_at(&at, &job.name, Some(m), |e, what| fatal(e, what, &base, tokens)).await;
    }
    let what = format!("child runs of job '{}'", job.name);
    let first = children_url(&base, &job.name).map_err(|e| Error::Protocol(format!("job '{}': {e}", job.name)))?;
    let mut url = first.clone();
    let mut pages = crate::http::Pages::new("continuation token or next link", super::jobs::MAX_PAGES);
    let mut out = Vec::new();
    loop {
        // The token goes to the tracking host only.
        crate::http::check_origin(&url, &[&base]).map_err(|e| fatal(e, &what, &base, tokens))?;
        let req =
            JsonRequest { method: reqwest::Method::GET, url: url.clone(), bearer: None, body: None, features: None };
        let page = meta.json_authorized(&req, Some(&auth)).await.map_err(|e| fatal(e, &what, &base, tokens))?;
        if !page.is_object() {
            return Err(Error::Protocol(format!("{what}: malformed page (not an object)")));
        }
        let items = super::foundry::get_ci(&page, "value").and_then(Value::as_array);
        out.extend(items.into_iter().flatten().filter_map(history_child));
        if out.len() > max_entries {
            return Err(Error::Protocol(format!("{what}: more than {max_entries} child runs; stopping")));
        }
        let next = next_page(&page, &first, &url).map_err(|e| Error::Protocol(format!("{what}: {e}")))?;
        let Some(next) = next else { return Ok(out) };
        pages.next(Some(next.as_str())).map_err(|stop| Error::Protocol(format!("{what}: {stop}")))?;
        url = next;
    }
}

/// The next page of a run-history listing: its `nextLink` (on the current page's origin only),
/// else its `continuationToken` as `$continuationtoken` on the first page's URL; `None` at the end.
fn next_page(page: &Value, first: &Url, current: &Url) -> Result<Option<Url>, String> {
    use super::foundry::str_ci;
    if let Some(link) = str_ci(page, "nextLink").filter(|l| !l.is_empty()) {
        let next = Url::parse(link).map_err(|_| "invalid nextLink".to_string())?;
        if !crate::hosts::same_origin(&next, current) {
            return Err(format!(
                "nextLink points to another host ({}); not following it",
                crate::redact::url_for_display(&next)
            ));
        }
        return Ok(Some(next));
    }
    Ok(str_ci(page, "continuationToken").filter(|t| !t.is_empty()).map(|t| {
        let mut next = first.clone();
        next.query_pairs_mut().append_pair("$continuationtoken", t);
        next
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::Cloud;
    use serde_json::json;

    #[test]
    fn children_pages_stay_on_the_tracking_host() {
        let public = AllowList::new(Cloud::AzureCloud, &[]).unwrap();
        let b = base(&format!("azureml://eastus2.api.azureml.ms/mlflow/v1.0/{W}?"), &public).unwrap();
        let first = children_url(&b, "pipe/1").unwrap();
        assert_eq!(first.as_str(), format!("https://eastus2.api.azureml.ms/history/v1.0/{W}/runs/pipe%2F1/children"));
        let other = Url::parse("https://eastus2.api.azureml.ms/mlflow/v1.0/elsewhere").unwrap();
        assert!(children_url(&other, "p").is_err());
        let link = format!("https://eastus2.api.azureml.ms/history/v1.0/{W}/runs/p/children?x=2");
        assert_eq!(next_page(&json!({"nextLink": link}), &first, &first).unwrap().unwrap().as_str(), link);
        let tok = next_page(&json!({"value": [], "continuationToken": "a b"}), &first, &first).unwrap().unwrap();
        assert_eq!(tok.query(), Some("%24continuationtoken=a+b"));
        assert_eq!(next_page(&json!({"value": []}), &first, &first).unwrap(), None);
        let foreign = json!({"nextLink": "https://evil.invalid/history/v1.0/x"});
        assert!(next_page(&foreign, &first, &first).unwrap_err().contains("another host"));
        assert!(next_page(&json!({"nextLink": "::"}), &first, &first).is_err());
    }

    #[test]
    fn history_runs_are_read_defensively() {
        let c = history_child(&json!({"runId": "s1", "displayName": "train", "status": "Completed"})).unwrap();
        assert_eq!((c.id.as_str(), c.name.as_deref(), c.status.as_str()), ("s1", Some("train"), "Completed"));
        let c = history_child(&json!({"runId": "s2", "displayName": " ", "name": "n"})).unwrap();
        assert_eq!(c.name.as_deref(), Some("n"));
        assert!(history_child(&json!({"displayName": "x"})).is_none());
        assert!(history_child(&json!("x")).is_none());
    }

    const W: &str = "subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws";

    #[test]
    fn endpoints_become_https_bases_on_azure_ml_hosts_of_the_cloud() {
        let public = AllowList::new(Cloud::AzureCloud, &[]).unwrap();
        let b = base(&format!("azureml://eastus2.api.azureml.ms/mlflow/v1.0/{W}?"), &public).unwrap();
        assert_eq!(b.as_str(), format!("https://eastus2.api.azureml.ms/mlflow/v1.0/{W}"));
        let b = base(&format!("AzureML://eastus2.api.azureml.ms/mlflow/v1.0/{W}/?x=1"), &public).unwrap();
        assert_eq!(b.as_str(), format!("https://eastus2.api.azureml.ms/mlflow/v1.0/{W}"));
        let guid = "0123abcd-0000-0000-0000-000000000000";
        assert!(base(&format!("https://{guid}.workspace.eastus2.api.azureml.ms/mlflow/v1.0/{W}"), &public).is_ok());
        let gov = AllowList::new(Cloud::AzureUSGovernment, &[]).unwrap();
        assert!(base(&format!("azureml://usgovvirginia.api.ml.azure.us/mlflow/v1.0/{W}"), &gov).is_ok());
        for bad in [
            // Another cloud's host, a look-alike, a foreign host, an IP, a port, plain http.
            format!("azureml://usgovvirginia.api.ml.azure.us/mlflow/v1.0/{W}"),
            format!("azureml://eastus2.api.azureml.ms.evil.invalid/mlflow/v1.0/{W}"),
            format!("azureml://tracking.invalid/mlflow/v1.0/{W}"),
            format!("azureml://127.0.0.2/mlflow/v1.0/{W}"),
            format!("azureml://eastus2.api.azureml.ms:8443/mlflow/v1.0/{W}"),
            format!("http://eastus2.api.azureml.ms/mlflow/v1.0/{W}"),
            format!("azureml://user:pw@eastus2.api.azureml.ms/mlflow/v1.0/{W}"),
            format!("ftp://eastus2.api.azureml.ms/mlflow/v1.0/{W}"),
            "azureml://".to_string(),
            "not a url".to_string(),
        ] {
            let e = base(&bad, &public).unwrap_err();
            assert!(e.contains("tracking endpoint"), "{bad}: {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
        let listed = AllowList::new(Cloud::AzureCloud, &["127.0.0.1:8080".into()]).unwrap();
        assert!(base("http://127.0.0.1:8080/mlflow/v1.0/x", &listed).is_ok());
        assert!(base("http://127.0.0.1:8081/mlflow/v1.0/x", &listed).is_err());
    }

    #[test]
    fn metrics_come_from_the_run_whose_files_are_downloaded() {
        let mut job = Job { name: "sweep".into(), ..Job::default() };
        assert_eq!(metrics_run(&job), "sweep");
        job.reused_run = Some("orig".into());
        assert_eq!(metrics_run(&job), "orig");
        job.best_child = Some("child".into());
        assert_eq!(metrics_run(&job), "child");
    }
}

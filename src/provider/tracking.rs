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
use super::mlflow::{HistoryAt, metric_history_at};
use crate::auth::TokenSource;
use crate::best::MetricPoint;
use crate::error::Error;
use crate::hosts::AllowList;
use crate::http::MetaClient;
use url::Url;

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

/// Every logged value of `metric` of `job`'s run ([`metrics_run`]) from the tracking service the
/// job names, with a token of `scope` (the cloud's ARM audience); more than `max_entries` values
/// (the `max_list_entries` setting) end the call.
pub async fn metric_history(
    meta: &MetaClient,
    tokens: &TokenSource,
    allow: &AllowList,
    scope: &str,
    job: &Job,
    metric: &str,
    max_entries: usize,
) -> Result<Vec<MetricPoint>, Error> {
    let Some(raw) = job.tracking.as_deref().filter(|t| !t.trim().is_empty()) else {
        return Err(Error::NotFound(format!(
            "--best {metric}: job '{}' names no MLflow tracking endpoint (properties.services.Tracking.endpoint), \
             so its metrics cannot be read; pick the checkpoint with --include '<folder>/**'",
            job.name
        )));
    };
    let base = base(raw, allow).map_err(|e| Error::Protocol(format!("job '{}': {e}", job.name)))?;
    let token = tokens.token(scope).await?;
    let auth = format!("Bearer {token}");
    let at = HistoryAt { meta, base: &base, auth: Some(&auth), max_entries };
    let shown = crate::redact::url_for_display(&base);
    metric_history_at(&at, metrics_run(job), metric, |e, what| {
        if super::mlflow::resource_missing(&e) {
            return Error::NotFound(format!("{what}: not found on {shown} ({e})"));
        }
        super::fatal_for_tokens(e, &format!("{what} on {shown}"), HINT, tokens)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::Cloud;

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

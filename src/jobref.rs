//! Job references people paste: the page of a run in Azure ML studio, the Foundry portal, the
//! MLflow UI or the Kubeflow Pipelines UI, given where a job name goes. Each names the run and where it lives, so
//! the URL fills in the source as the flags would. A storage URL (a SAS, a blob or `s3://` URL)
//! is not a job: it is refused with a pointer to `jobdl cp`. Pure parsing; `app` applies it.
use crate::settings::SourceSettings;

/// A run named by a URL, with the source it lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRef {
    /// `https://ml.azure.com/runs/<run>?wsid=/subscriptions/<s>/resourcegroups/<g>/workspaces/<w>`.
    Studio { run: String, subscription: String, resource_group: String, workspace: String },
    /// `<tracking server>/#/experiments/<e>/runs/<run>`.
    Mlflow { tracking_uri: String, run: String },
    /// `<KFP UI>/#/runs/details/<run>` (the API answers at the same address; the central
    /// dashboard's `/_/pipeline/` is the API's `/pipeline`).
    Kfp { endpoint: String, run: String },
    /// `https://ai.azure.com/build/jobs/<job>?wsid=<project>`, the Foundry portal's job page (the
    /// job's `Studio` service endpoint). A Foundry project's `wsid`
    /// (`…/Microsoft.CognitiveServices/accounts/<a>/projects/<p>`) gives its endpoint,
    /// `https://<a>.services.ai.azure.com/api/projects/<p>`; without a `wsid` the job runs in
    /// the configured source. (A hub project's `wsid`, an Azure ML workspace, is a
    /// [`JobRef::Studio`].)
    Foundry { run: String, project_endpoint: Option<String> },
}

/// What `job` is: `None` for a plain job name, else the run a URL names or why it names none.
pub fn parse(job: &str) -> Option<Result<JobRef, String>> {
    let t = job.trim();
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("s3://") {
        return Some(Err(storage_url(t)));
    }
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let Ok(url) = url::Url::parse(t) else {
        return Some(Err(format!("'{}' is not a URL jobdl can read", crate::redact::redact(t))));
    };
    Some(parse_url(&url))
}

fn storage_url(shown: &str) -> String {
    format!("'{}' is a storage URL, not a job: to download it use `jobdl cp '<url>' DIR`", crate::redact::redact(shown))
}

fn parse_url(url: &url::Url) -> Result<JobRef, String> {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let shown = crate::redact::url_for_display(url);
    let signed = url.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("sig"));
    if signed || [".blob.core.windows.net", ".dfs.core.windows.net"].iter().any(|s| host.ends_with(s)) {
        return Err(storage_url(&shown));
    }
    if ["ml.azure.com", "ml.azure.us", "ml.azure.cn"].contains(&host.as_str()) {
        return studio(url, &shown);
    }
    let fragment = url.fragment().unwrap_or_default();
    let parts: Vec<&str> = fragment.split(['/', '?']).filter(|s| !s.is_empty()).collect();
    let base = || {
        let mut b = url.clone();
        b.set_fragment(None);
        b.set_query(None);
        let path = b.path().trim_end_matches('/').to_string();
        // Kubeflow's central dashboard shows the UI under /_/pipeline/; the API is /pipeline.
        let path = path.strip_suffix("/_/pipeline").map(|p| format!("{p}/pipeline")).unwrap_or(path);
        b.set_path(&path);
        b.as_str().trim_end_matches('/').to_string()
    };
    if let Some(run) = after(&parts, &["runs", "details"]) {
        return Ok(JobRef::Kfp { endpoint: base(), run });
    }
    if parts.first() == Some(&"experiments")
        && let Some(run) = after(&parts, &["runs"])
    {
        return Ok(JobRef::Mlflow { tracking_uri: base(), run });
    }
    if host == "ai.azure.com" {
        return foundry(url, &shown);
    }
    Err(format!(
        "'{shown}' is not a job URL jobdl knows (Azure ML studio run pages, Foundry portal job pages, MLflow `#/experiments/<e>/runs/<id>`, \
         Kubeflow `#/runs/details/<id>`): give the job name and its source"
    ))
}

/// The segment right after `marker` (consecutive segments) in `parts`, when it is a usable name.
fn after(parts: &[&str], marker: &[&str]) -> Option<String> {
    let at = parts.windows(marker.len()).position(|w| w == marker)?;
    let id = percent_encoding::percent_decode_str(parts.get(at + marker.len())?).decode_utf8().ok()?;
    let ok = !id.is_empty() && id.len() <= 256 && !id.chars().any(|c| c.is_control() || c == '/');
    ok.then(|| id.into_owned())
}

/// The `wsid` query parameter (an Azure resource id), when the URL has one.
fn wsid(url: &url::Url) -> Option<String> {
    url.query_pairs().find(|(k, _)| k.eq_ignore_ascii_case("wsid")).map(|(_, v)| v.into_owned())
}

/// The segment after the `name` segment of a resource id (`subscriptions` → the id), matched
/// case-insensitively, when it is a usable value.
fn id_field(wsid: &str, name: &str) -> Option<String> {
    let parts: Vec<&str> = wsid.split('/').filter(|s| !s.is_empty()).collect();
    parts
        .iter()
        .position(|p| p.eq_ignore_ascii_case(name))
        .and_then(|i| parts.get(i + 1))
        .map(|v| v.to_string())
        .filter(|v| !v.is_empty() && !v.chars().any(|c| c.is_control() || c.is_whitespace()))
}

/// An Azure ML workspace's run from a `wsid` naming the workspace.
fn workspace_run(run: String, wsid: &str, shown: &str) -> Result<JobRef, String> {
    match (id_field(wsid, "subscriptions"), id_field(wsid, "resourcegroups"), id_field(wsid, "workspaces")) {
        (Some(subscription), Some(resource_group), Some(workspace)) => {
            Ok(JobRef::Studio { run, subscription, resource_group, workspace })
        }
        _ => Err(format!("'{shown}': wsid is not /subscriptions/<id>/resourcegroups/<group>/workspaces/<name>")),
    }
}

fn studio(url: &url::Url, shown: &str) -> Result<JobRef, String> {
    let segments: Vec<&str> = url.path_segments().map(|s| s.filter(|p| !p.is_empty()).collect()).unwrap_or_default();
    let run = after(&segments, &["runs"]).ok_or_else(|| format!("'{shown}' names no run (…/runs/<id>)"))?;
    let wsid = wsid(url).ok_or_else(|| {
        format!(
            "'{shown}' has no wsid=…: copy the URL whole, or give the run id with --subscription, \
             --resource-group and --workspace"
        )
    })?;
    workspace_run(run, &wsid, shown)
}

/// The Foundry portal's job page, `https://ai.azure.com/build/jobs/<job>[?wsid=…]`.
fn foundry(url: &url::Url, shown: &str) -> Result<JobRef, String> {
    let segments: Vec<&str> = url.path_segments().map(|s| s.filter(|p| !p.is_empty()).collect()).unwrap_or_default();
    let Some(run) = after(&segments, &["build", "jobs"]) else {
        return Err(format!(
            "'{shown}' is not a Foundry portal job page (https://ai.azure.com/build/jobs/<job>): give the job \
             name and --project-endpoint (the project's endpoint, shown on its overview page)"
        ));
    };
    let Some(wsid) = wsid(url) else {
        return Ok(JobRef::Foundry { run, project_endpoint: None });
    };
    if id_field(&wsid, "workspaces").is_some() {
        return workspace_run(run, &wsid, shown);
    }
    match (id_field(&wsid, "accounts"), id_field(&wsid, "projects")) {
        (Some(account), Some(project))
            if account.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && project.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            Ok(JobRef::Foundry {
                run,
                project_endpoint: Some(format!("https://{account}.services.ai.azure.com/api/projects/{project}")),
            })
        }
        _ => Err(format!(
            "'{shown}': wsid names neither a Foundry project (…/accounts/<resource>/projects/<project>) nor a \
             workspace (…/workspaces/<name>)"
        )),
    }
}

impl JobRef {
    /// The run's id.
    pub fn run(&self) -> &str {
        match self {
            JobRef::Studio { run, .. }
            | JobRef::Mlflow { run, .. }
            | JobRef::Kfp { run, .. }
            | JobRef::Foundry { run, .. } => run,
        }
    }

    /// Whether the URL names the run's source (a Foundry job page without a `wsid` does not).
    pub fn names_source(&self) -> bool {
        !matches!(self, JobRef::Foundry { project_endpoint: None, .. })
    }

    /// The run, with the URL's source in place of any other (or, when the URL names none, in
    /// the configured source).
    pub fn apply(self, job: &mut String, source: &mut SourceSettings) {
        if let JobRef::Foundry { run, project_endpoint: None } = self {
            *job = run;
            return;
        }
        let s = source;
        (s.project_endpoint, s.mlflow_uri, s.kfp_endpoint) = (None, None, None);
        (s.subscription, s.resource_group, s.workspace) = (None, None, None);
        match self {
            JobRef::Studio { run, subscription, resource_group, workspace } => {
                *job = run;
                (s.subscription, s.resource_group, s.workspace) =
                    (Some(subscription), Some(resource_group), Some(workspace));
            }
            JobRef::Mlflow { tracking_uri, run } => {
                *job = run;
                s.mlflow_uri = Some(tracking_uri);
            }
            JobRef::Kfp { endpoint, run } => {
                *job = run;
                s.kfp_endpoint = Some(endpoint);
            }
            JobRef::Foundry { run, project_endpoint } => {
                *job = run;
                s.project_endpoint = project_endpoint;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> JobRef {
        parse(s).expect("a URL").expect("a job URL")
    }

    fn err(s: &str) -> String {
        parse(s).expect("a URL").expect_err("not a job URL")
    }

    #[test]
    fn plain_names_are_not_urls() {
        assert_eq!(parse("job-123"), None);
        assert_eq!(parse("sleepy_cat_x1"), None);
    }

    #[test]
    fn a_studio_run_page_names_the_run_and_its_workspace() {
        let r = ok("https://ml.azure.com/runs/brave_lamp_7x?wsid=/subscriptions/0000-11/resourcegroups/rg-ml/\
                    workspaces/ws-a&tid=72f988bf");
        assert_eq!(
            r,
            JobRef::Studio {
                run: "brave_lamp_7x".into(),
                subscription: "0000-11".into(),
                resource_group: "rg-ml".into(),
                workspace: "ws-a".into()
            }
        );
        // The experiment view of the same run, wsid percent-encoded, other casing.
        let r = ok("https://ml.azure.com/experiments/id/e1/runs/brave_lamp_7x?wsid=%2Fsubscriptions%2F0000-11%2F\
                    resourceGroups%2Frg-ml%2Fproviders%2FMicrosoft.MachineLearningServices%2Fworkspaces%2Fws-a");
        assert!(
            matches!(r, JobRef::Studio { ref run, ref workspace, .. } if run == "brave_lamp_7x" && workspace == "ws-a")
        );
        assert!(err("https://ml.azure.com/runs/x").contains("wsid"));
    }

    #[test]
    fn a_foundry_portal_job_page_names_the_job_and_its_project() {
        // The job's `Studio` service endpoint, as Foundry gives it (the azure.ai.training azd
        // extension prints it as the "Foundry Portal URI"), with the project's wsid as the
        // portal's deep links carry it.
        let r = ok("https://ai.azure.com/build/jobs/test-job?wsid=/subscriptions/0000-11/resourceGroups/rg-ai/\
                    providers/Microsoft.CognitiveServices/accounts/my-foundry/projects/proj-a&tid=72f988bf");
        assert_eq!(
            r,
            JobRef::Foundry {
                run: "test-job".into(),
                project_endpoint: Some("https://my-foundry.services.ai.azure.com/api/projects/proj-a".into())
            }
        );
        // wsid percent-encoded.
        let r = ok("https://ai.azure.com/build/jobs/test-job?wsid=%2Fsubscriptions%2F0000-11%2FresourceGroups%2Frg-ai\
                    %2Fproviders%2FMicrosoft.CognitiveServices%2Faccounts%2Fmy-foundry%2Fprojects%2Fproj-a");
        assert!(matches!(r, JobRef::Foundry { project_endpoint: Some(ref e), .. } if e.ends_with("/projects/proj-a")));
        // No wsid: the job, in the configured project.
        assert_eq!(
            ok("https://ai.azure.com/build/jobs/test-job"),
            JobRef::Foundry { run: "test-job".into(), project_endpoint: None }
        );
        // A hub-based project's wsid is its Azure ML workspace.
        let r = ok("https://ai.azure.com/build/jobs/brave_lamp_7x?wsid=/subscriptions/0000-11/resourcegroups/rg-ai/\
                    providers/Microsoft.MachineLearningServices/workspaces/hub-proj&tid=72f988bf");
        assert_eq!(
            r,
            JobRef::Studio {
                run: "brave_lamp_7x".into(),
                subscription: "0000-11".into(),
                resource_group: "rg-ai".into(),
                workspace: "hub-proj".into()
            }
        );
        // Other portal pages name no job; a wsid naming neither is refused.
        assert!(
            err("https://ai.azure.com/build/overview?wsid=/subscriptions/s/resourceGroups/g")
                .contains("--project-endpoint")
        );
        assert!(err("https://ai.azure.com/build/jobs/j?wsid=/subscriptions/s/resourceGroups/g").contains("wsid"));
    }

    #[test]
    fn a_foundry_job_url_sets_the_project_or_keeps_the_configured_one() {
        let mut job = String::new();
        let mut source = SourceSettings {
            project_endpoint: Some("https://old.services.ai.azure.com/api/projects/p".into()),
            ..SourceSettings::default()
        };
        ok("https://ai.azure.com/build/jobs/j1").apply(&mut job, &mut source);
        assert_eq!(job, "j1");
        assert_eq!(source.project_endpoint.as_deref(), Some("https://old.services.ai.azure.com/api/projects/p"));
        ok("https://ai.azure.com/build/jobs/j2?wsid=/subscriptions/s/resourceGroups/g/providers/\
            Microsoft.CognitiveServices/accounts/acct/projects/p2")
        .apply(&mut job, &mut source);
        assert_eq!(job, "j2");
        assert_eq!(source.project_endpoint.as_deref(), Some("https://acct.services.ai.azure.com/api/projects/p2"));
    }

    #[test]
    fn mlflow_and_kubeflow_ui_pages_name_their_server() {
        assert_eq!(
            ok("http://127.0.0.1:5000/#/experiments/3/runs/0a1b2c3d"),
            JobRef::Mlflow { tracking_uri: "http://127.0.0.1:5000".into(), run: "0a1b2c3d".into() }
        );
        assert_eq!(
            ok("https://mlflow.example.invalid/mlflow/#/experiments/3/runs/0a1b2c3d/artifacts"),
            JobRef::Mlflow { tracking_uri: "https://mlflow.example.invalid/mlflow".into(), run: "0a1b2c3d".into() }
        );
        assert_eq!(
            ok("http://127.0.0.1:8080/#/runs/details/6f1d-22"),
            JobRef::Kfp { endpoint: "http://127.0.0.1:8080".into(), run: "6f1d-22".into() }
        );
        assert_eq!(
            ok("https://kf.example.invalid/_/pipeline/?ns=team#/runs/details/6f1d-22"),
            JobRef::Kfp { endpoint: "https://kf.example.invalid/pipeline".into(), run: "6f1d-22".into() }
        );
    }

    #[test]
    fn storage_urls_point_to_cp_without_printing_the_signature() {
        let e = err("https://acct.blob.core.windows.net/c/model?sv=2025&sig=S3CRETsig%3D");
        assert!(e.contains("jobdl cp") && !e.contains("S3CRET"), "{e}");
        assert!(err("http://127.0.0.1:10000/devstoreaccount1/c?sig=abcdefgh").contains("jobdl cp"));
        assert!(err("s3://bucket/key").contains("jobdl cp"));
        assert!(err("https://example.invalid/some/page").contains("not a job URL"));
    }
}

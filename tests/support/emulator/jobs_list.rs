//! The emulator's job listing routes (`jobdl jobs`): Foundry
//! `GET /api/projects/{p}/jobs` and ARM `GET …/workspaces/{w}/jobs`. Both list the world's jobs
//! in the same envelope as the job GET (status without advancing a job's status script),
//! newest first: the world's N-th job was created N minutes after 2026-01-15T10:00:00Z. Pages
//! hold [`LIST_PAGE_MAX`] jobs and link to the next one with `nextLink` (`$skip`).
use super::*;

/// One listing page of the world's jobs (`arm`: with the fixture's job type, as ARM lists them).
pub(super) fn list(shared: &Shared, incoming: &Incoming, arm: bool) -> Reply {
    let jobs: Vec<_> = shared.world().jobs.iter().enumerate().rev().collect();
    let skip: usize = incoming.param("$skip").and_then(|s| s.parse().ok()).unwrap_or(0);
    let end = (skip + LIST_PAGE_MAX).min(jobs.len());
    let value: Vec<Value> = jobs
        .get(skip..end)
        .unwrap_or_default()
        .iter()
        .map(|(i, j)| {
            let job_type = if arm && !j.job_type.is_empty() { j.job_type.clone() } else { "Command".to_string() };
            let id = if arm {
                arm_job_id(&j.name)
            } else {
                format!("{ARM_PREFIX}/providers/Microsoft.MachineLearningServices/workspaces/ws/jobs/{}", j.name)
            };
            json!({
                "id": id,
                "name": j.name,
                "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                "properties": {
                    "jobType": job_type,
                    "status": shared.status(&j.name, false),
                    "experimentName": j.experiment_name,
                    "displayName": format!("{} display", j.name),
                },
                "systemData": {"createdAt": format!("2026-01-15T{:02}:{:02}:00Z", 10 + i / 60, i % 60)},
            })
        })
        .collect();
    let mut body = json!({ "value": value });
    if end < jobs.len() {
        let api = incoming.param("api-version").unwrap_or_default();
        body["nextLink"] = json!(format!("{}{}?api-version={api}&$skip={end}", shared.base, incoming.path));
    }
    Reply::json(StatusCode::OK, &body)
}

//! `jobdl jobs`: the recent jobs of a source, newest first. Shared by every provider: the row
//! type, the `--status` filter (each source's own status words, matched case-insensitively and
//! through a few cross-source synonyms), the collector that stops once enough rows are found or
//! the `max_list_entries` cap of jobs examined is reached, and the Azure job envelope reader
//! (Foundry and Azure ML list the same envelope). Every field is hostile: text is made printable
//! (control characters escaped) and timestamps normalised when read, absent fields stay absent.
use crate::error::Error;
use serde_json::Value;
use std::collections::HashSet;
use std::future::Future;
use url::Url;

/// One job of a listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobSummary {
    /// What `download`/`show` take as JOB (name, run id).
    pub name: String,
    /// Status as the service words it (printable form); empty when the service gave none.
    pub status: String,
    /// Creation (or start) time, RFC 3339 UTC.
    pub created: Option<String>,
    /// Job type (`Command`, `Pipeline`, …), where the source has one.
    pub job_type: Option<String>,
    /// Display name (run name), where the source has one.
    pub display_name: Option<String>,
    /// Experiment name (or id), where the source has one.
    pub experiment: Option<String>,
}

/// Status words that stand for the same state across sources (`--status completed` also finds
/// MLflow's `FINISHED` and Kubeflow's `SUCCEEDED`).
const SYNONYMS: &[&[&str]] = &[
    &["completed", "succeeded", "finished"],
    &["failed", "error"],
    &["canceled", "cancelled", "killed"],
    &["queued", "pending", "scheduled", "notstarted"],
];

/// Every status word some source uses (a `--status` word outside this list is still matched
/// verbatim, with a warning: it may be a typo).
const KNOWN: &[&str] = &[
    "notstarted",
    "starting",
    "provisioning",
    "preparing",
    "queued",
    "running",
    "finalizing",
    "cancelrequested",
    "completed",
    "failed",
    "canceled",
    "notresponding",
    "paused",
    "unknown",
    "scheduled",
    "finished",
    "killed",
    "pending",
    "succeeded",
    "skipped",
    "canceling",
    "cancelling",
    "cancelled",
    "error",
    "runtime_state_unspecified",
];

/// `--status`: the accepted status words, lower-cased, synonyms added. Empty: every job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusFilter {
    words: HashSet<String>,
}

impl StatusFilter {
    /// From the `--status` values (each may be a comma list). Returns the filter and the words
    /// no source uses (to warn about).
    pub fn new(raw: &[String]) -> (StatusFilter, Vec<String>) {
        let mut words = HashSet::new();
        let mut unknown = Vec::new();
        for w in raw.iter().flat_map(|r| r.split(',')).map(|w| w.trim().to_lowercase()).filter(|w| !w.is_empty()) {
            if !KNOWN.contains(&w.as_str()) && !unknown.contains(&w) {
                unknown.push(w.clone());
            }
            if let Some(group) = SYNONYMS.iter().find(|g| g.contains(&w.as_str())) {
                words.extend(group.iter().map(|s| s.to_string()));
            }
            words.insert(w);
        }
        (StatusFilter { words }, unknown)
    }

    /// Whether a job in `status` is listed.
    pub fn matches(&self, status: &str) -> bool {
        self.words.is_empty() || self.words.contains(&status.trim().to_lowercase())
    }
}

/// What to list.
#[derive(Debug, Clone)]
pub struct JobQuery {
    /// Most rows returned.
    pub limit: usize,
    /// Which statuses.
    pub statuses: StatusFilter,
    /// Most jobs examined (the `max_list_entries` setting): a filter that matches little stops
    /// here instead of reading a workspace's whole history.
    pub max_entries: usize,
    /// Only jobs of this experiment (its name, as listed; `download --experiment`).
    pub experiment: Option<String>,
}

impl JobQuery {
    /// Whether `job` is one the query selects (status and experiment).
    fn selects(&self, job: &JobSummary) -> bool {
        self.statuses.matches(&job.status)
            && self.experiment.as_ref().is_none_or(|e| job.experiment.as_deref() == Some(e.as_str()))
    }
}

/// The rows found, and why the listing stopped early (if it did).
#[derive(Debug, Default)]
pub struct JobList {
    /// Matching jobs, newest first, at most `limit`.
    pub jobs: Vec<JobSummary>,
    /// Set when the `max_list_entries` cap ended the scan before the source was exhausted.
    pub capped: Option<usize>,
    examined: usize,
}

impl JobList {
    /// Take one listed job; `true` when the listing can stop (enough rows, or the cap).
    pub fn take(&mut self, job: JobSummary, q: &JobQuery) -> bool {
        self.examined += 1;
        if q.selects(&job) && self.jobs.len() < q.limit {
            self.jobs.push(job);
        }
        if self.jobs.len() >= q.limit {
            return true;
        }
        if self.examined >= q.max_entries {
            self.capped = Some(self.examined);
            return true;
        }
        false
    }

    /// Newest first (a stable sort: the service's order breaks ties and keeps undated jobs last).
    pub fn finish(mut self) -> JobList {
        let when = |j: &JobSummary| {
            j.created
                .as_deref()
                .and_then(|c| time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok())
        };
        self.jobs.sort_by_key(|j| std::cmp::Reverse(when(j)));
        self
    }
}

/// Most pages followed in one listing.
pub use super::foundry::MAX_PAGES;

/// Follow an Azure-style paged listing (`value` + `nextLink` / `continuationToken`, read by
/// [`crate::provider::foundry::parse_page`]: never off the first page's origin) until `q` is
/// satisfied; `fetch` GETs one page with the source's credentials and error mapping.
pub async fn azure_pages<F, Fut>(first: Url, what: &str, q: &JobQuery, fetch: F) -> Result<JobList, Error>
where
    F: FnMut(Url) -> Fut,
    Fut: Future<Output = Result<Value, Error>>,
{
    let mut list = JobList::default();
    if q.limit == 0 {
        return Ok(list);
    }
    crate::provider::foundry::follow_pages(first, what, fetch, |items| {
        items.iter().filter_map(azure_job).any(|job| list.take(job, q))
    })
    .await?;
    Ok(list.finish())
}

/// A non-empty string field in printable form.
pub fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(crate::safepath::printable)
}

/// One job envelope of a Foundry or Azure ML listing (`name`, `properties.status`, `jobType`,
/// `displayName`, `experimentName`, `systemData.createdAt`); `None` without a name.
pub fn azure_job(v: &Value) -> Option<JobSummary> {
    use crate::provider::foundry::get_ci;
    let name = text(get_ci(v, "name"))?;
    let props = get_ci(v, "properties");
    let field = |k: &str| text(props.and_then(|p| get_ci(p, k)));
    let created = get_ci(v, "systemData").and_then(|d| get_ci(d, "createdAt")).and_then(Value::as_str);
    Some(JobSummary {
        name,
        status: field("status").unwrap_or_default(),
        created: crate::provider::timestamp(created),
        job_type: field("jobType"),
        display_name: field("displayName"),
        experiment: field("experimentName"),
    })
}

/// Milliseconds since the epoch (MLflow `start_time`) as RFC 3339 UTC.
pub fn from_millis(v: Option<&Value>) -> Option<String> {
    let ms = match v? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(limit: usize, statuses: &[&str], max: usize) -> JobQuery {
        let raw: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
        JobQuery { limit, statuses: StatusFilter::new(&raw).0, max_entries: max, experiment: None }
    }

    #[test]
    fn status_words_match_case_insensitively_and_across_sources() {
        let (f, unknown) = StatusFilter::new(&["Completed,running".to_string(), "CANCELLED".into()]);
        assert!(unknown.is_empty());
        for s in ["Completed", "FINISHED", "SUCCEEDED", "Running", "RUNNING", "Canceled", "KILLED"] {
            assert!(f.matches(s), "{s}");
        }
        for s in ["Failed", "Queued", ""] {
            assert!(!f.matches(s), "{s}");
        }
        let (all, _) = StatusFilter::new(&[]);
        assert!(all.matches("anything"));
        let (_, unknown) = StatusFilter::new(&["runing".to_string()]);
        assert_eq!(unknown, vec!["runing".to_string()]);
    }

    #[test]
    fn the_collector_stops_at_the_limit_or_the_cap() {
        let job = |n: &str, s: &str| JobSummary { name: n.into(), status: s.into(), ..JobSummary::default() };
        let query = q(2, &["failed"], 100);
        let mut l = JobList::default();
        assert!(!l.take(job("a", "Completed"), &query));
        assert!(!l.take(job("b", "Failed"), &query));
        assert!(l.take(job("c", "Failed"), &query));
        assert_eq!(l.jobs.len(), 2);
        assert_eq!(l.capped, None);
        let query = q(5, &["failed"], 2);
        let mut l = JobList::default();
        assert!(!l.take(job("a", "Completed"), &query));
        assert!(l.take(job("b", "Completed"), &query));
        assert_eq!(l.capped, Some(2));
    }

    #[test]
    fn an_experiment_selects_its_jobs_only() {
        let job = |n: &str, e: Option<&str>| JobSummary {
            name: n.into(),
            status: "Completed".into(),
            experiment: e.map(str::to_string),
            ..JobSummary::default()
        };
        let query = JobQuery { experiment: Some("exp-b".into()), ..q(5, &["completed"], 100) };
        let mut l = JobList::default();
        for j in [job("a", Some("exp-a")), job("b", Some("exp-b")), job("c", None), job("d", Some("exp-b"))] {
            l.take(j, &query);
        }
        let names: Vec<&str> = l.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["b", "d"]);
    }

    #[test]
    fn envelopes_are_read_defensively() {
        let v = json!({"name": "j\u{1b}[2J", "properties": {"status": "Running", "jobType": "Command",
            "displayName": "dn", "experimentName": "exp"}, "systemData": {"createdAt": "2026-01-15T12:00:00+02:00"}});
        let j = azure_job(&v).unwrap();
        assert_eq!(j.name, "j\\u{1b}[2J");
        assert_eq!(j.created.as_deref(), Some("2026-01-15T10:00:00Z"));
        assert_eq!(j.experiment.as_deref(), Some("exp"));
        let bare = azure_job(&json!({"name": "x", "properties": 3, "systemData": {"createdAt": "soon"}})).unwrap();
        assert_eq!((bare.status.as_str(), bare.created, bare.job_type), ("", None, None));
        assert!(azure_job(&json!({"properties": {}})).is_none());
        assert_eq!(from_millis(Some(&json!(1_768_471_200_000i64))).as_deref(), Some("2026-01-15T10:00:00Z"));
        assert_eq!(from_millis(Some(&json!("x"))), None);
    }

    #[test]
    fn newest_first_with_undated_last() {
        let job = |n: &str, c: Option<&str>| JobSummary {
            name: n.into(),
            created: c.map(str::to_string),
            ..JobSummary::default()
        };
        let l = JobList {
            jobs: vec![
                job("old", Some("2026-01-01T00:00:00Z")),
                job("none", None),
                job("new", Some("2026-02-01T00:00:00Z")),
            ],
            ..JobList::default()
        }
        .finish();
        let names: Vec<&str> = l.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["new", "old", "none"]);
    }
}

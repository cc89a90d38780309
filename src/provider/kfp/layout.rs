//! Pure Kubeflow Pipelines layout rules (docs/kfp-s3-api.md §1, §2): pipeline roots, go-cloud key
//! escapes, and how the keys under one run prefix group into tasks, executions and outputs.
//! No I/O: everything here is unit-tested and fuzzable.
use crate::s3::S3Object;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The multi-user default root of a namespace (profile controller ≥ 2.15).
pub fn multi_user_root(namespace: &str) -> String {
    format!("minio://mlpipeline/private-artifacts/{namespace}/v2/artifacts")
}

/// The standalone default root.
pub const DEFAULT_ROOT: &str = "minio://mlpipeline/v2/artifacts";

/// A `minio://` or `s3://` pipeline root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// The URI as given, without its query (for messages).
    pub uri: String,
    /// Bucket (the authority).
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl Root {
    /// The run prefix `<prefix>/<pipeline>/<run>/` (always ends with `/`).
    pub fn run_prefix(&self, pipeline: &str, run: &str) -> String {
        if self.prefix.is_empty() { format!("{pipeline}/{run}/") } else { format!("{}/{pipeline}/{run}/", self.prefix) }
    }
}

/// Parse a pipeline root. `minio://` and `s3://` both go through the S3 plane; a `?query` (go-cloud
/// options such as `endpoint=`) is dropped and never used: keys go only to the configured
/// endpoint. Other schemes (`gs://`, `https://`, …) are refused.
pub fn parse_root(raw: &str) -> Result<Root, String> {
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once("://").ok_or_else(|| {
        format!("pipeline root '{}' is not a URI: expected minio://BUCKET/PATH or s3://BUCKET/PATH", raw.escape_debug())
    })?;
    if !matches!(scheme.to_ascii_lowercase().as_str(), "minio" | "s3") {
        return Err(format!(
            "pipeline root '{}' uses {scheme}://, which jobdl cannot read: only minio:// and s3:// roots are supported",
            raw.escape_debug()
        ));
    }
    let without_query = rest.split(['?', '#']).next().unwrap_or_default();
    let (bucket, path) = without_query.split_once('/').unwrap_or((without_query, ""));
    let loc = crate::s3::parse_s3_url(&format!("s3://{bucket}/{path}"))
        .map_err(|e| format!("pipeline root '{}': {e}", raw.escape_debug()))?;
    let prefix = loc.key.trim_matches('/').to_string();
    if prefix.split('/').any(str::is_empty) && !prefix.is_empty() {
        return Err(format!("pipeline root '{}' has an empty path segment", raw.escape_debug()));
    }
    Ok(Root {
        uri: format!("{scheme}://{bucket}{}", if prefix.is_empty() { String::new() } else { format!("/{prefix}") }),
        bucket: loc.bucket,
        prefix,
    })
}

/// Undo go-cloud's key escapes (§1.4): every well-formed `__0x<hex>__` (lowercase or upper case
/// hex digits, 1–6 of them, a valid `char`) becomes that character; anything else stays as is.
pub fn gocloud_unescape(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    while let Some(i) = rest.find("__0x") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 4..];
        let hex_len = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        let decoded = (1..=6)
            .contains(&hex_len)
            .then(|| &after[hex_len..])
            .filter(|tail| tail.starts_with("__"))
            .and_then(|_| u32::from_str_radix(&after[..hex_len], 16).ok())
            .and_then(char::from_u32);
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[hex_len + 2..];
            }
            None => {
                out.push_str("__0x");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether `s` is a lowercase 8-4-4-4-12 UUID (a KFP ≥ 2.4 execution directory).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// Whether an output name is a task's logs (`executor-logs`, `executor-logs-<n>` since 2.17).
pub fn is_logs(output: &str) -> bool {
    output == "executor-logs"
        || output.strip_prefix("executor-logs-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// One object of a run, placed.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The task (its key in its DAG).
    pub task: String,
    /// The execution (≥ 2.4: the driver's UUID directory).
    pub exec: Option<String>,
    /// The output name (`executor-logs[-n]` for logs).
    pub output: String,
    /// The path inside a directory output (`""` for a file output).
    pub path: String,
    /// The listed object (raw key: this is what is requested).
    pub object: S3Object,
    /// Which bucket it is in (0: the run prefix's; others: cached outputs' buckets).
    pub bucket: usize,
}

/// A run prefix's objects grouped by task, execution and output.
#[derive(Debug, Default, Clone)]
pub struct Layout {
    /// Every placed object.
    pub items: Vec<Item>,
    /// Objects that cannot be placed or requested: (path relative to the run prefix, reason).
    pub failures: Vec<(String, String)>,
    /// Executions seen per task.
    pub execs: BTreeMap<String, BTreeSet<String>>,
}

impl Layout {
    /// Group the objects listed under `run_prefix`. Keys are unescaped (go-cloud) before they are
    /// split; the raw key stays what is requested. A key whose task or output segment is not a
    /// safe name fails alone.
    pub fn group(run_prefix: &str, objects: Vec<S3Object>) -> Layout {
        let mut layout = Layout::default();
        for object in objects {
            let Some(raw_rel) = object.key.strip_prefix(run_prefix) else { continue };
            let rel = gocloud_unescape(raw_rel);
            let shown = crate::safepath::printable(&rel);
            let segs: Vec<&str> = rel.split('/').collect();
            let (task, exec, output, path) = match segs.as_slice() {
                [task, exec, output, rest @ ..] if is_uuid(exec) => (*task, Some(*exec), *output, rest.join("/")),
                [_, exec] if is_uuid(exec) => {
                    layout
                        .failures
                        .push((shown, "an object where KFP keeps an execution directory; not an output".into()));
                    continue;
                }
                [task, output, rest @ ..] => (*task, None, *output, rest.join("/")),
                _ => {
                    layout.failures.push((shown, "an object directly under the run prefix; not a task output".into()));
                    continue;
                }
            };
            if let Err(e) = crate::safepath::safe_component(task).and_then(|_| crate::safepath::safe_component(output))
            {
                layout.failures.push((shown, format!("unsafe key: {e}; not requested")));
                continue;
            }
            if let Some(e) = exec {
                layout.execs.entry(task.to_string()).or_default().insert(e.to_string());
            } else {
                layout.execs.entry(task.to_string()).or_default();
            }
            layout.items.push(Item {
                task: task.to_string(),
                exec: exec.map(str::to_string),
                output: output.to_string(),
                path,
                object,
                bucket: 0,
            });
        }
        layout
    }

    /// Add the objects of an output known by its exact URI (new API, §3.6): `key` is the output's
    /// key, a file (`object.key == key`) or a directory (`key/…`). The execution is the UUID
    /// before the output name in the key, when there is one. Returns how many were added.
    pub fn add_exact(&mut self, task: &str, output: &str, key: &str, bucket: usize, objects: Vec<S3Object>) -> usize {
        if crate::safepath::safe_component(task).and_then(|_| crate::safepath::safe_component(output)).is_err() {
            self.failures.push((
                format!("{}/{}", crate::safepath::printable(task), crate::safepath::printable(output)),
                "unsafe task or output name; not requested".into(),
            ));
            return 0;
        }
        let exec = key.rsplit('/').nth(1).filter(|s| is_uuid(s)).map(str::to_string);
        let mut n = 0;
        for object in objects {
            let path = if object.key == key {
                String::new()
            } else if let Some(rest) = object.key.strip_prefix(key).and_then(|r| r.strip_prefix('/')) {
                gocloud_unescape(rest)
            } else {
                continue;
            };
            if self.items.iter().any(|i| i.bucket == bucket && i.object.key == object.key) {
                continue;
            }
            let entry = self.execs.entry(task.to_string()).or_default();
            if let Some(e) = &exec {
                entry.insert(e.clone());
            }
            self.items.push(Item {
                task: task.to_string(),
                exec: exec.clone(),
                output: output.to_string(),
                path,
                object,
                bucket,
            });
            n += 1;
        }
        n
    }

    /// Whether `task` ran more than once (ParallelFor iterations, retries with new drivers): its
    /// files then get one more level, the execution's UUID, right after the task.
    pub fn multi(&self, task: &str) -> bool {
        self.execs.get(task).is_some_and(|e| e.len() > 1)
    }

    /// The named outputs (`TASK/OUTPUT`), logs excluded, with their total listed size.
    pub fn outputs(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for i in self.items.iter().filter(|i| !is_logs(&i.output)) {
            *out.entry(format!("{}/{}", i.task, i.output)).or_insert(0) += i.object.size;
        }
        out
    }

    /// The path of an item relative to its task directory: `[<exec>/]<output>[/<path>]`.
    pub fn rel_in_task(&self, item: &Item) -> String {
        let mut rel = String::new();
        if self.multi(&item.task)
            && let Some(e) = &item.exec
        {
            rel.push_str(e);
            rel.push('/');
        }
        rel.push_str(&item.output);
        if !item.path.is_empty() {
            rel.push('/');
            rel.push_str(&item.path);
        }
        rel
    }
}

/// An output artifact of a task as the new API reports it (`tasks[].outputs.artifacts[]`, §3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskArtifact {
    /// The task's name.
    pub task: String,
    /// The task's state (`CACHED` for a reused one).
    pub state: String,
    /// The output (`artifact_key`).
    pub output: String,
    /// Its URI, when it has one (a metric may hold a value only).
    pub uri: Option<String>,
}

/// The output artifacts of `tasks[]` in a `view=FULL` run (`None` when the server has no
/// `tasks`: KFP ≤ 2.17, which lists the prefix instead).
pub fn task_artifacts(run: &Value) -> Option<Vec<TaskArtifact>> {
    let tasks = run.get("tasks")?.as_array()?;
    let mut out = Vec::new();
    for t in tasks.iter().take(100_000) {
        let Some(name) = t.get("name").and_then(Value::as_str) else { continue };
        // ROOT, DAG, LOOP and condition tasks re-list their children's outputs: only the tasks
        // that produce files count.
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("RUNTIME");
        if !matches!(kind, "RUNTIME" | "IMPORTER" | "") {
            continue;
        }
        let state = t.get("state").and_then(Value::as_str).unwrap_or_default().to_string();
        let groups = t.get("outputs").and_then(|o| o.get("artifacts")).and_then(Value::as_array);
        for g in groups.into_iter().flatten() {
            let Some(output) = g.get("artifact_key").and_then(Value::as_str) else { continue };
            // The producing task, when the group names it; else the task that lists it.
            let task = g
                .get("producer")
                .and_then(|p| p.get("task_name"))
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .unwrap_or(name);
            for a in g.get("artifacts").and_then(Value::as_array).into_iter().flatten() {
                let uri =
                    a.get("uri").and_then(Value::as_str).map(str::trim).filter(|u| !u.is_empty()).map(str::to_string);
                out.push(TaskArtifact {
                    task: task.to_string(),
                    state: state.clone(),
                    output: output.to_string(),
                    uri,
                });
            }
        }
    }
    Some(out)
}

/// The bucket and key of an output URI (`minio://` or `s3://`; a query is dropped).
pub fn parse_output_uri(uri: &str) -> Option<(String, String)> {
    let root = parse_root(uri).ok()?;
    (!root.prefix.is_empty()).then_some((root.bucket, root.prefix))
}

/// The pipeline name of a spec: `pipelineInfo.name`, also inside a `{"pipeline_spec": …,
/// "platform_spec": …}` wrapper. Only a safe single path component is accepted (it becomes part
/// of a key prefix).
pub fn pipeline_name(spec: &Value) -> Option<String> {
    let spec = spec.get("pipeline_spec").filter(|s| s.is_object()).unwrap_or(spec);
    let name = spec.get("pipelineInfo")?.get("name")?.as_str()?.trim();
    crate::safepath::safe_component(name).ok()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// The artifact outputs a spec declares, as `TASK/OUTPUT`, walking nested DAGs (a nested task is
/// keyed by its own name, the leaf). Parameters are not files and are left out.
pub fn declared_outputs(spec: &Value) -> BTreeSet<String> {
    let spec = spec.get("pipeline_spec").filter(|s| s.is_object()).unwrap_or(spec);
    let components = spec.get("components").and_then(Value::as_object);
    let mut out = BTreeSet::new();
    let mut stack: Vec<(&Value, usize)> = spec.get("root").into_iter().map(|r| (r, 0)).collect();
    while let Some((component, depth)) = stack.pop() {
        if depth > 32 {
            continue;
        }
        let Some(tasks) = component.get("dag").and_then(|d| d.get("tasks")).and_then(Value::as_object) else {
            continue;
        };
        for (task, def) in tasks {
            let Some(comp_name) = def.get("componentRef").and_then(|c| c.get("name")).and_then(Value::as_str) else {
                continue;
            };
            let Some(comp) = components.and_then(|c| c.get(comp_name)) else { continue };
            if comp.get("dag").is_some() {
                stack.push((comp, depth + 1));
                continue;
            }
            if let Some(arts) =
                comp.get("outputDefinitions").and_then(|o| o.get("artifacts")).and_then(Value::as_object)
            {
                for name in arts.keys() {
                    out.insert(format!("{task}/{name}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(key: &str, size: u64) -> S3Object {
        S3Object { key: key.into(), size, etag: None }
    }

    #[test]
    fn roots_parse_and_drop_their_query() {
        let r = parse_root("minio://mlpipeline/v2/artifacts").unwrap();
        assert_eq!((r.bucket.as_str(), r.prefix.as_str()), ("mlpipeline", "v2/artifacts"));
        assert_eq!(r.run_prefix("p", "r1"), "v2/artifacts/p/r1/");
        let r = parse_root("s3://other/kfp?endpoint=http://127.0.0.2:1&region=x").unwrap();
        assert_eq!((r.bucket.as_str(), r.prefix.as_str(), r.uri.as_str()), ("other", "kfp", "s3://other/kfp"));
        let r = parse_root("s3://bucket").unwrap();
        assert_eq!(r.run_prefix("p", "r"), "p/r/");
        for bad in ["gs://b/x", "https://example.invalid/x", "b/x", "minio://b/a/../c", "minio://B_/x", "s3://b/a//c"] {
            assert!(parse_root(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gocloud_escapes_are_undone_exactly() {
        assert_eq!(gocloud_unescape("a__0xa__b"), "a\nb");
        assert_eq!(gocloud_unescape("c__0x1__d"), "c\u{1}d");
        assert_eq!(gocloud_unescape("x..__0x2f__y"), "x../y");
        assert_eq!(gocloud_unescape("__0x2e____0x2e____0x2f__z"), "../z");
        assert_eq!(gocloud_unescape("a__0x2F__b"), "a/b");
        for kept in ["__0x__", "__0xzz__", "a__0x1", "__0x1234567__", "__0xd800__", "plain", "__0x"] {
            assert_eq!(gocloud_unescape(kept), kept);
        }
    }

    #[test]
    fn uuids_and_logs_are_recognised() {
        assert!(is_uuid("0d3c1e2a-5b6f-4a7b-8c9d-0e1f2a3b4c5d"));
        assert!(!is_uuid("0D3C1E2A-5B6F-4A7B-8C9D-0E1F2A3B4C5D"));
        assert!(!is_uuid("model"));
        assert!(is_logs("executor-logs") && is_logs("executor-logs-0") && is_logs("executor-logs-12"));
        assert!(!is_logs("executor-logs-") && !is_logs("executor-logs-x") && !is_logs("logs"));
    }

    #[test]
    fn keys_group_by_task_execution_and_output() {
        let p = "v2/artifacts/p/r/";
        let u1 = "11111111-1111-4111-8111-111111111111";
        let u2 = "22222222-2222-4222-8222-222222222222";
        let keys = [
            format!("{p}train/{u1}/model"),
            format!("{p}train/{u2}/model"),
            format!("{p}train/{u1}/executor-logs"),
            format!("{p}prep/{u1}/data/a/b.csv"),
            format!("{p}old/metrics"),
            format!("{p}stray"),
            format!("{p}t/{u1}"),
            format!("{p}t/{u1}/x__0x2f__y"),
            format!("{p}t/{u1}/x..__0x2f__y"),
            format!("{p}__0x2e____0x2e____0x2f__z/out"),
        ];
        let l = Layout::group(p, keys.iter().map(|k| obj(k, 3)).collect());
        assert!(l.multi("train") && !l.multi("prep"));
        let rels: Vec<String> = l.items.iter().map(|i| format!("{}|{}", i.task, l.rel_in_task(i))).collect();
        assert_eq!(
            rels,
            [
                format!("train|{u1}/model"),
                format!("train|{u2}/model"),
                format!("train|{u1}/executor-logs"),
                "prep|data/a/b.csv".to_string(),
                "old|metrics".to_string(),
                "t|x/y".to_string(),
            ]
        );
        // `x..` is not a traversal, but a name ending in a dot is refused everywhere (Windows
        // strips it): it fails alone like any unsafe name.
        assert_eq!(l.failures.len(), 4, "{:?}", l.failures);
        assert!(
            l.failures.iter().any(|(p, e)| p == "t/11111111-1111-4111-8111-111111111111/x../y" && e.contains("unsafe"))
        );
        assert!(l.failures.iter().any(|(p, e)| p == "../z/out" && e.contains("unsafe")));
        let outs = l.outputs();
        assert_eq!(outs.keys().cloned().collect::<Vec<_>>(), ["old/metrics", "prep/data", "t/x", "train/model"]);
        assert_eq!(outs["train/model"], 6);
    }

    #[test]
    fn the_new_api_gives_exact_output_uris() {
        let run = json!({"tasks": [
            {"name": "train", "state": "CACHED", "outputs": {"artifacts": [{"artifact_key": "model",
                "artifacts": [{"name": "model", "uri": "minio://mlpipeline/v2/artifacts/p/old/train/11111111-1111-4111-8111-111111111111/model"}]}]}},
            {"name": "eval", "state": "SUCCEEDED", "outputs": {"artifacts": [{"artifact_key": "metrics",
                "artifacts": [{"name": "metrics", "type": "Metric", "number_value": 0.9}]}]}},
            {"name": "noout"},
            {"name": "root", "type": "ROOT", "outputs": {"artifacts": [{"artifact_key": "model",
                "artifacts": [{"uri": "minio://mlpipeline/elsewhere"}]}]}},
            {"name": "for-loop-2", "type": "RUNTIME", "outputs": {"artifacts": [{"artifact_key": "m",
                "producer": {"task_name": "inner", "iteration": "1"}, "artifacts": [{"uri": "s3://b/k"}]}]}}]});
        let a = task_artifacts(&run).unwrap();
        assert_eq!(a.len(), 3, "{a:?}");
        assert_eq!(a[2].task, "inner", "the producer names the task");
        assert_eq!((a[0].task.as_str(), a[0].state.as_str(), a[0].output.as_str()), ("train", "CACHED", "model"));
        assert_eq!(a[1].uri, None);
        assert_eq!(task_artifacts(&json!({"run_id": "x"})), None);
        let (bucket, key) = parse_output_uri(a[0].uri.as_deref().unwrap()).unwrap();
        assert_eq!(bucket, "mlpipeline");
        let mut l = Layout::default();
        let objs = vec![obj(&key, 5), obj(&format!("{key}-other"), 1), obj(&format!("{key}/x__0x2f__y"), 2)];
        assert_eq!(l.add_exact("train", "model", &key, 1, objs), 2);
        assert_eq!(l.items[0].exec.as_deref(), Some("11111111-1111-4111-8111-111111111111"));
        assert_eq!(l.items[1].path, "x/y");
        assert!(parse_output_uri("https://example.invalid/x").is_none());
    }

    #[test]
    fn pipeline_names_and_declared_outputs_come_from_the_spec() {
        let spec = json!({"pipelineInfo": {"name": "train-pipeline"},
            "root": {"dag": {"tasks": {
                "train": {"componentRef": {"name": "comp-train"}},
                "inner": {"componentRef": {"name": "comp-inner"}}}}},
            "components": {
                "comp-train": {"outputDefinitions": {"artifacts": {"model": {}, "metrics": {}}, "parameters": {"p": {}}}},
                "comp-inner": {"dag": {"tasks": {"eval": {"componentRef": {"name": "comp-eval"}}}}},
                "comp-eval": {"outputDefinitions": {"artifacts": {"report": {}}}}}});
        assert_eq!(pipeline_name(&spec).as_deref(), Some("train-pipeline"));
        let wrapped = json!({"pipeline_spec": spec.clone(), "platform_spec": {}});
        assert_eq!(pipeline_name(&wrapped).as_deref(), Some("train-pipeline"));
        assert_eq!(
            declared_outputs(&wrapped).into_iter().collect::<Vec<_>>(),
            ["eval/report", "train/metrics", "train/model"]
        );
        assert_eq!(pipeline_name(&json!({"pipelineInfo": {"name": "../x"}})), None);
        assert_eq!(pipeline_name(&json!({"pipelineInfo": {"name": 3}})), None);
        assert!(declared_outputs(&json!("nope")).is_empty());
    }
}

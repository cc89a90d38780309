//! `jobdl ls <JOB>`: the plan `download` would run (output, path, size, MD5 known?), without
//! downloading. Sizes the listing does not give are probed with one HEAD per file, 8 at a time.
use super::download::{Resolution, resolve};
use crate::cli::LsArgs;
use crate::error::{EXIT_FILES_FAILED, Error};
use crate::report::{LsRow, Printer};
use crate::settings::Settings;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

/// Size probes (HEAD) in flight at once.
const PROBES: usize = 8;

/// Run `jobdl ls`.
pub async fn ls(args: LsArgs, settings: &Settings, printer: Printer, cancel: CancellationToken) -> Result<u8, Error> {
    let dl = args.to_download();
    let mut r = resolve(&dl, settings, &printer, &cancel).await?;
    probe_sizes(&mut r, &printer, &cancel).await?;
    let mut rows: Vec<LsRow> = r
        .plan
        .tasks
        .iter()
        .map(|t| {
            let (output, path) =
                if r.job.task_outputs { split_task_output(&t.display) } else { split_named(&t.display, &dl.outputs) };
            LsRow { output, path, bytes: t.size, md5_known: t.md5.is_some() }
        })
        .collect();
    // An archive's entries are known only once it is unpacked: one row, size unknown.
    for a in &r.plan.archives {
        let (output, path) = split_named(&a.display, &dl.outputs);
        rows.push(LsRow { output, path: format!("{path}/"), bytes: None, md5_known: false });
    }
    if r.plan.filtered > 0 {
        crate::log::log(1, format!("{} files left out by --include/--exclude", r.plan.filtered));
    }
    printer.ls((&r.job.name, &r.job.status), &rows, &r.plan.failures, r.partial);
    Ok(if r.plan.failures.is_empty() { 0 } else { EXIT_FILES_FAILED })
}

/// Fill in the sizes (and MD5s) the listing did not give with one HEAD per file, [`PROBES`] at a
/// time (Azure sources; MLflow listings omit the size of empty files and some stores of others,
/// which stay unknown). A failed probe leaves the size unknown, with a warning.
pub(crate) async fn probe_sizes(
    r: &mut Resolution,
    printer: &Printer,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    let unknown: Vec<usize> = if r.probe_sizes {
        (0..r.plan.tasks.len()).filter(|&i| r.plan.tasks[i].size.is_none()).collect()
    } else {
        Vec::new()
    };
    if unknown.is_empty() {
        return Ok(());
    }
    let blob = &r.blob;
    let tasks = &r.plan.tasks;
    let probes = futures_util::stream::iter(unknown.into_iter().map(|i| async move {
        let t = &tasks[i];
        let url = t.url.url();
        let signed = t.sign.as_ref().map(|s| s.0.headers("HEAD", &url)).unwrap_or_default();
        let bearer = t
            .headers
            .iter()
            .chain(&signed)
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.strip_prefix("Bearer "));
        (i, blob.properties_auth(&url, bearer).await)
    }))
    .buffer_unordered(PROBES)
    .collect::<Vec<_>>();
    let results = tokio::select! {
        r = probes => r,
        _ = cancel.cancelled() => return Err(Error::Interrupted),
    };
    for (i, res) in results {
        match res {
            Ok(p) => {
                let t = &mut r.plan.tasks[i];
                t.size = Some(p.size);
                t.md5 = t.md5.or(p.md5);
            }
            Err(e) => printer.note(&format!("warning: size of {}: {e}", r.plan.tasks[i].display)),
        }
    }
    Ok(())
}

/// [`split`], where an output name may hold `/` (an MLflow artifact path such as `a/b`): the
/// longest requested name that prefixes the path wins.
fn split_named(display: &str, requested: &[String]) -> (String, String) {
    if let Some(rest) = display.strip_prefix("named-outputs/")
        && let Some(name) = requested
            .iter()
            .map(|n| n.trim_matches('/'))
            .map(|n| (n, n.strip_prefix("models:/").map_or(n.to_string(), |r| format!("models/{r}"))))
            .filter(|(_, dir)| dir.contains('/') && rest.strip_prefix(dir.as_str()).is_some_and(|r| r.starts_with('/')))
            .max_by_key(|(_, dir)| dir.len())
    {
        return (name.0.to_string(), rest[name.1.len() + 1..].to_string());
    }
    split(display)
}

/// Kubeflow: `named-outputs/<task>/[<execution uuid>/]<output>[/…]` → (`task/output`, the rest
/// after the task); logs and the rest as [`split`].
fn split_task_output(display: &str) -> (String, String) {
    if let Some(rest) = display.strip_prefix("named-outputs/")
        && let Some((task, after)) = rest.split_once('/')
    {
        let mut parts = after.split('/');
        let first = parts.next().unwrap_or_default();
        let output = if crate::provider::kfp::layout::is_uuid(first) { parts.next().unwrap_or(first) } else { first };
        return (format!("{task}/{output}"), after.to_string());
    }
    split(display)
}

/// `named-outputs/<n>/<path>` → (`n`, path); `artifacts/<path>` → (`default`, path);
/// `hd-artifacts/<path>` (a sweep's own files) → (`hd-artifacts`, path).
fn split(display: &str) -> (String, String) {
    if let Some(rest) = display.strip_prefix("named-outputs/")
        && let Some((name, path)) = rest.split_once('/')
    {
        return (name.to_string(), path.to_string());
    }
    if let Some(path) = display.strip_prefix("artifacts/") {
        return ("default".to_string(), path.to_string());
    }
    match display.split_once('/') {
        Some((out, path)) => (out.to_string(), path.to_string()),
        None => (String::new(), display.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{split, split_named, split_task_output};

    #[test]
    fn display_paths_split_into_output_and_path() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(split("artifacts/logs/a.txt"), s("default", "logs/a.txt"));
        assert_eq!(split("named-outputs/model/w/x.bin"), s("model", "w/x.bin"));
        assert_eq!(split("hd-artifacts/x"), s("hd-artifacts", "x"));
        let req = vec!["a/b/".to_string(), "a".to_string()];
        assert_eq!(split_named("named-outputs/a/b/c.txt", &req), s("a/b", "c.txt"));
        assert_eq!(split_named("named-outputs/a/x.txt", &req), s("a", "x.txt"));
        assert_eq!(split_named("artifacts/y", &req), s("default", "y"));
        let req = vec!["models:/clf/3".to_string()];
        assert_eq!(split_named("named-outputs/models/clf/3/MLmodel", &req), s("models:/clf/3", "MLmodel"));
        let u = "0d3c1e2a-5b6f-4a7b-8c9d-000000000002";
        assert_eq!(
            split_task_output(&format!("named-outputs/train/{u}/model")),
            s("train/model", &format!("{u}/model"))
        );
        assert_eq!(split_task_output("named-outputs/prep/data/a.csv"), s("prep/data", "data/a.csv"));
        assert_eq!(split_task_output("artifacts/prep/executor-logs"), s("default", "prep/executor-logs"));
    }
}

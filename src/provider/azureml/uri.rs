//! The URI forms an Azure ML job or run history hands out (docs/azure-api.md §3.3): datastore paths
//! (short and long form), artifact-store paths, run-history asset IDs, direct blob URLs and
//! `wasbs://`/`abfss://`. Pure string logic: no HTTP, no allow-list.
use url::Url;

/// Whether a run-history asset is a data asset or a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssetKind {
    /// `…/data/<n>/versions/<v>`, resolved through the data plane.
    Data,
    /// `…/models/<n>/versions/<v>`, resolved through the model registry.
    Model,
}

/// A workspace named inside a long-form datastore URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkspaceRef {
    /// Subscription ID.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Workspace name.
    pub workspace: String,
}

/// Where a URI points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A path inside a datastore; `workspace` is `None` for the job's own workspace.
    Datastore {
        /// The workspace named by a long-form URI.
        workspace: Option<WorkspaceRef>,
        /// Datastore name.
        datastore: String,
        /// Path inside the datastore's container (may end in `/`).
        path: String,
    },
    /// A run-history asset ID, resolved with `batchGetResolvedUris`.
    Asset {
        /// Data or model.
        kind: AssetKind,
        /// The ID verbatim.
        id: String,
    },
    /// A blob (or folder) addressed by URL; read with a storage bearer token.
    BlobUrl(Url),
}

/// Whether `uri` is an unresolved pipeline template such as `${{name}}` (not a location).
pub fn is_template(uri: &str) -> bool {
    uri.contains("${{")
}

/// Parse one URI (§3.3). `Err` says why it is not a location jobdl can follow.
pub fn parse(raw: &str) -> Result<Location, String> {
    let t = raw.trim();
    if t.is_empty() {
        return Err("empty URI".into());
    }
    if is_template(t) {
        return Err(format!("'{t}' is an unresolved template, not a location"));
    }
    let t = strip_ci(t, "file:").or_else(|| strip_ci(t, "folder:")).unwrap_or(t);
    if let Some(rest) = strip_ci(t, "azureml://") {
        return parse_azureml(rest);
    }
    if strip_ci(t, "runs:/").is_some() {
        return Err(format!("'{t}' is an MLflow run URI, which jobdl does not support as an output location"));
    }
    if strip_ci(t, "azureml:").is_some() {
        return Err(format!("'{t}' is an asset reference, not an output location"));
    }
    if let Some(rest) = strip_ci(t, "wasbs://").or_else(|| strip_ci(t, "wasb://")) {
        return container_at_account(rest, "blob");
    }
    if let Some(rest) = strip_ci(t, "abfss://").or_else(|| strip_ci(t, "abfs://")) {
        return container_at_account(rest, "dfs");
    }
    if strip_ci(t, "https://").is_some() || strip_ci(t, "http://").is_some() {
        return Url::parse(t).map(Location::BlobUrl).map_err(|e| format!("invalid URL: {e}"));
    }
    Err(format!("unrecognised URI form '{t}'"))
}

/// `s` without `prefix`, compared case-insensitively.
fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// The path after a matched prefix of segments, keeping a trailing `/`.
fn rest_path(segs: &[&str]) -> String {
    segs.join("/")
}

fn parse_azureml(rest: &str) -> Result<Location, String> {
    let segs: Vec<&str> = rest.split('/').collect();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let nonempty = |s: &&str| !s.is_empty();
    match segs.as_slice() {
        [d, ds, p, tail @ ..] if eq(d, "datastores") && nonempty(ds) && eq(p, "paths") => {
            Ok(Location::Datastore { workspace: None, datastore: ds.to_string(), path: rest_path(tail) })
        }
        [d, ds, e, tail @ ..] if eq(d, "datastores") && nonempty(ds) && *e == "ExperimentRun" => {
            Ok(Location::Datastore {
                workspace: None,
                datastore: ds.to_string(),
                path: format!("ExperimentRun/{}", rest_path(tail)),
            })
        }
        [s, sub, g, rg, tail @ ..] if eq(s, "subscriptions") && eq(g, "resourcegroups") => {
            let tail = match tail {
                [p, ns, more @ ..] if eq(p, "providers") && eq(ns, "Microsoft.MachineLearningServices") => more,
                other => other,
            };
            match tail {
                [w, ws, d, ds, p, path @ ..]
                    if eq(w, "workspaces")
                        && eq(d, "datastores")
                        && eq(p, "paths")
                        && [sub, rg, ws, ds].iter().all(|x| !x.is_empty()) =>
                {
                    Ok(Location::Datastore {
                        workspace: Some(WorkspaceRef {
                            subscription: sub.to_string(),
                            resource_group: rg.to_string(),
                            workspace: ws.to_string(),
                        }),
                        datastore: ds.to_string(),
                        path: rest_path(path),
                    })
                }
                _ => Err(format!("unrecognised azureml:// URI 'azureml://{rest}'")),
            }
        }
        [j, job, o, out, ..] if eq(j, "jobs") && eq(o, "outputs") => {
            Err(format!("'azureml://{rest}' refers to another job's output ({job}/{out}), which jobdl does not follow"))
        }
        [l, _, w, _, kind, n, v, ver] if eq(l, "locations") && eq(w, "workspaces") && eq(v, "versions") => {
            let kind = if eq(kind, "data") {
                AssetKind::Data
            } else if eq(kind, "models") {
                AssetKind::Model
            } else {
                return Err(format!("unrecognised asset ID 'azureml://{rest}'"));
            };
            if n.is_empty() || ver.is_empty() {
                return Err(format!("incomplete asset ID 'azureml://{rest}'"));
            }
            Ok(Location::Asset { kind, id: format!("azureml://{rest}") })
        }
        _ => Err(format!("unrecognised azureml:// URI 'azureml://{rest}'")),
    }
}

/// `<container>@<account>.<svc>.<suffix>/<path>` → the blob endpoint URL.
fn container_at_account(rest: &str, svc: &str) -> Result<Location, String> {
    let bad = || format!("invalid storage URI (expected <container>@<account>.{svc}.<suffix>/<path>)");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (container, host) = authority.split_once('@').ok_or_else(bad)?;
    let (account, tail) = host.split_once('.').ok_or_else(bad)?;
    let suffix = tail.strip_prefix(svc).and_then(|t| t.strip_prefix('.')).ok_or_else(bad)?;
    if container.is_empty() || account.is_empty() || suffix.is_empty() {
        return Err(bad());
    }
    let url = format!("https://{account}.blob.{suffix}/{container}/{path}");
    Url::parse(&url).map(Location::BlobUrl).map_err(|e| format!("invalid storage URI: {e}"))
}

/// A path listed as a folder: with exactly one `/` appended unless it is empty or ends in `/`.
pub fn folder_prefix(path: &str) -> String {
    if path.is_empty() || path.ends_with('/') { path.to_string() } else { format!("{path}/") }
}

/// Data or model, from the asset ID first and the run-data `type` only when the ID is opaque
/// (§3.5): types compare case-insensitively with `_` removed (`UriFolder` = `uri_folder`).
pub fn classify(asset_id: &str, kind: &str) -> Option<AssetKind> {
    if let Ok(Location::Asset { kind, .. }) = parse(asset_id) {
        return Some(kind);
    }
    match normalise_type(kind).as_str() {
        "urifile" | "urifolder" | "mltable" => Some(AssetKind::Data),
        "custommodel" | "mlflowmodel" | "tritonmodel" => Some(AssetKind::Model),
        _ => None,
    }
}

/// Whether an output type names a single file (`UriFile`, `uri_file`).
pub fn is_file_type(kind: &str) -> bool {
    normalise_type(kind) == "urifile"
}

fn normalise_type(kind: &str) -> String {
    kind.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(ds: &str, path: &str) -> Location {
        Location::Datastore { workspace: None, datastore: ds.into(), path: path.into() }
    }

    #[test]
    fn short_and_artifact_store_forms() {
        assert_eq!(
            parse("azureml://datastores/workspaceblobstore/paths/azureml/job-123/model_out/"),
            Ok(ds("workspaceblobstore", "azureml/job-123/model_out/"))
        );
        assert_eq!(
            parse("azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.job-123"),
            Ok(ds("workspaceartifactstore", "ExperimentRun/dcid.job-123"))
        );
        assert_eq!(
            parse("azureml://datastores/workspaceartifactstore/paths/ExperimentRun/dcid.job-123/"),
            Ok(ds("workspaceartifactstore", "ExperimentRun/dcid.job-123/"))
        );
        assert_eq!(parse("folder:azureml://datastores/s/paths/a/b"), Ok(ds("s", "a/b")));
        assert_eq!(parse("file:azureml://datastores/s/paths/a/b.txt"), Ok(ds("s", "a/b.txt")));
        assert_eq!(parse("azureml://datastores/s/paths/"), Ok(ds("s", "")));
        assert!(parse("azureml://datastores//paths/x").is_err());
        assert!(parse("azureml://datastores/s/other/x").is_err());
    }

    #[test]
    fn long_form_keeps_its_workspace() {
        let want = |ds: &str, path: &str| Location::Datastore {
            workspace: Some(WorkspaceRef {
                subscription: "sub-1".into(),
                resource_group: "rg-1".into(),
                workspace: "ws-1".into(),
            }),
            datastore: ds.into(),
            path: path.into(),
        };
        for uri in [
            "azureml://subscriptions/sub-1/resourcegroups/rg-1/workspaces/ws-1/datastores/wbs/paths/azureml/j/out/",
            "azureml://subscriptions/sub-1/resourceGroups/rg-1/workspaces/ws-1/datastores/wbs/paths/azureml/j/out/",
            "azureml://subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/ws-1/datastores/wbs/paths/azureml/j/out/",
        ] {
            assert_eq!(parse(uri), Ok(want("wbs", "azureml/j/out/")), "{uri}");
        }
        assert!(parse("azureml://subscriptions/s/resourceGroups/r/workspaces/w/datastores/d").is_err());
    }

    #[test]
    fn asset_ids() {
        let id = "azureml://locations/eastus2/workspaces/0f1e/data/azureml_job-123_output_data_data_out/versions/1";
        assert_eq!(parse(id), Ok(Location::Asset { kind: AssetKind::Data, id: id.into() }));
        let id =
            "azureml://locations/eastus2/workspaces/0f1e/models/azureml_job-123_output_mlflow_model_out/versions/1";
        assert_eq!(parse(id), Ok(Location::Asset { kind: AssetKind::Model, id: id.into() }));
        assert!(parse("azureml://locations/eastus2/workspaces/0f1e/widgets/x/versions/1").is_err());
    }

    #[test]
    fn unsupported_forms_say_why() {
        let e = parse("azureml://jobs/job-9/outputs/out/paths/x").unwrap_err();
        assert!(e.contains("another job's output"), "{e}");
        assert!(parse("runs:/abc/model").unwrap_err().contains("MLflow"));
        assert!(parse("azureml:my-data:3").unwrap_err().contains("asset reference"));
        assert!(parse("${{parent.outputs.x}}").unwrap_err().contains("template"));
        assert!(parse("azureml://datastores/${{name}}/paths/x").unwrap_err().contains("template"));
        assert!(is_template("azureml://datastores/x/paths/${{name}}"));
        assert!(parse("").is_err());
        assert!(parse("s3://bucket/x").is_err());
    }

    #[test]
    fn blob_urls_use_the_blob_endpoint() {
        let url = |s: &str| Location::BlobUrl(Url::parse(s).unwrap());
        assert_eq!(
            parse("https://acct1.blob.core.windows.net/c/a/b.txt"),
            Ok(url("https://acct1.blob.core.windows.net/c/a/b.txt"))
        );
        assert_eq!(
            parse("wasbs://c@acct1.blob.core.windows.net/a/b"),
            Ok(url("https://acct1.blob.core.windows.net/c/a/b"))
        );
        assert_eq!(
            parse("abfss://fs@acct1.dfs.core.usgovcloudapi.net/a/"),
            Ok(url("https://acct1.blob.core.usgovcloudapi.net/fs/a/"))
        );
        assert!(parse("abfss://acct1.dfs.core.windows.net/a").is_err());
        assert!(parse("wasbs://c@acct1.dfs.core.windows.net/a").is_err());
    }

    #[test]
    fn classification_prefers_the_asset_id() {
        let data = "azureml://locations/e/workspaces/w/data/n/versions/1";
        let model = "azureml://locations/e/workspaces/w/models/n/versions/1";
        assert_eq!(classify(data, "MLFlowModel"), Some(AssetKind::Data));
        assert_eq!(classify(model, "UriFolder"), Some(AssetKind::Model));
        for t in ["UriFolder", "uri_folder", "URI_FILE", "UriFile", "MLTable", "mltable"] {
            assert_eq!(classify("opaque-id", t), Some(AssetKind::Data), "{t}");
        }
        for t in ["MLFlowModel", "mlflow_model", "CustomModel", "custom_model", "triton_model"] {
            assert_eq!(classify("opaque-id", t), Some(AssetKind::Model), "{t}");
        }
        assert_eq!(classify("opaque-id", "Widget"), None);
        assert!(is_file_type("UriFile") && is_file_type("uri_file"));
        assert!(!is_file_type("uri_folder"));
    }

    #[test]
    fn folder_prefixes() {
        assert_eq!(folder_prefix("a/b"), "a/b/");
        assert_eq!(folder_prefix("a/b/"), "a/b/");
        assert_eq!(folder_prefix(""), "");
    }
}

//! `jobdl cp <SAS-URL> <DIR>`: one blob, or every blob under a container/prefix (§4.2).
use super::{Session, absolute, execute};
use crate::blob::{BlobClient, parse_blob_url};
use crate::cli::CpArgs;
use crate::error::Error;
use crate::plan::{Filter, Plan};
use crate::provider::{Listing, RemoteFile};
use crate::report::Printer;
use crate::settings::Common;
use std::collections::HashMap;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Run `jobdl cp`.
pub async fn cp(args: CpArgs, printer: Printer, cancel: CancellationToken) -> Result<u8, Error> {
    let started = Instant::now();
    let common = Common::resolve(&args.transfer, &args.cloud, args.skip_existing)?;
    let filter = Filter::new(&args.filter.include, &args.filter.exclude)?;
    let url = url::Url::parse(args.url.trim()).map_err(|e| Error::usage(format!("invalid URL: {e}")))?;
    common.allow.check_storage(&url).map_err(|e| Error::usage(format!("URL not allowed: {e}")))?;
    let parsed = parse_blob_url(&url).map_err(Error::Usage)?;
    let client = crate::http::build_client(common.idle_timeout)?;
    let blob = BlobClient::new(client.clone(), common.meta_retry.clone());
    let container = &parsed.container;
    let path = parsed.path.clone();
    let call_err = |e: crate::http::CallError| crate::provider::fatal(e, "blob service");

    let mut listing = Listing::default();
    let single = |name: &str, size: u64, md5| RemoteFile {
        refresh: None,
        rel: name.rsplit('/').next().unwrap_or(name).to_string(),
        url: container.blob_url(name),
        size: Some(size),
        md5,
    };
    let mut done = false;
    if !path.is_empty() && !path.ends_with('/') {
        match blob.properties(&container.blob_url(&path)).await {
            Ok(p) if !p.is_folder => {
                listing.files.push(single(&path, p.size, p.md5));
                done = true;
            }
            Ok(_) => {}
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(call_err(e)),
        }
        if !done && parsed.sr.as_deref() == Some("b") {
            return Err(Error::NotFound(format!("blob '{path}' not found")));
        }
    }
    if !done {
        let prefix = if path.is_empty() || path.ends_with('/') { path.clone() } else { format!("{path}/") };
        let blobs = blob.list(container, &prefix).await.map_err(call_err)?;
        if !blobs.is_empty() {
            listing.files = blobs
                .into_iter()
                .map(|b| RemoteFile {
                    refresh: None,
                    rel: b.name[prefix.len().min(b.name.len())..].to_string(),
                    url: container.blob_url(&b.name),
                    size: Some(b.size),
                    md5: b.md5,
                })
                .collect();
        } else if !path.is_empty() && !path.ends_with('/') {
            let bare = blob.list(container, &path).await.map_err(call_err)?;
            match bare.into_iter().find(|b| b.name == path) {
                Some(b) => listing.files.push(single(&b.name, b.size, b.md5)),
                None => {
                    return Err(Error::NotFound(format!(
                        "no blob and no folder named '{path}' in container '{}'",
                        container.container
                    )));
                }
            }
        } else {
            return Err(Error::NotFound(format!("nothing under '{path}' in container '{}'", container.container)));
        }
    }
    let root = absolute(&args.dir)?;
    crate::report::set_destination(&root);
    let mut plan = Plan { filter, ..Plan::default() };
    plan.add(&root, "", listing, &mut HashMap::new());
    execute(Session { common: &common, client: &client, printer, started, cancel }, &root, plan, None).await
}

//! `jobdl cp <SAS-URL> <DIR>`: one blob, or every blob under a container/prefix (§4.2); and
//! `jobdl cp s3://BUCKET/PREFIX <DIR>`, the same for S3-compatible storage (docs/kfp-s3-api.md §6).
use super::{Session, absolute, execute};
use crate::blob::{BlobClient, ContainerRef, ParsedBlobUrl, parse_blob_url};
use crate::cli::CpArgs;
use crate::error::Error;
use crate::plan::{Filter, Plan};
use crate::provider::{Listing, Protocol, RemoteFile, S3Listed, s3_fatal};
use crate::report::Printer;
use crate::settings::Settings;
use crate::transfer::SignHook;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Run `jobdl cp`.
pub async fn cp(args: CpArgs, settings: &Settings, printer: Printer, cancel: CancellationToken) -> Result<u8, Error> {
    let started = Instant::now();
    if args.url.trim().get(..5).is_some_and(|s| s.eq_ignore_ascii_case("s3://")) {
        return cp_s3(args, settings, printer, cancel, started).await;
    }
    let common = &settings.common;
    let filter = Filter::new(&args.filter.include, &args.filter.exclude)?;
    let shard = crate::settings::shard(args.shard.as_deref(), &crate::env::var)?;
    let url = url::Url::parse(args.url.trim()).map_err(|e| Error::usage(format!("invalid URL: {e}")))?;
    common.allow.check_storage(&url).map_err(|e| Error::usage(format!("URL not allowed: {e}")))?;
    let parsed = parse_blob_url(&url).map_err(Error::Usage)?;
    let client = crate::http::build_client(common.idle_timeout)?;
    let blob = BlobClient::new(client.clone(), common.meta_retry.clone()).with_max_entries(common.max_list_entries);
    // The listing (many pages, each parsed on the blocking pool) ends at once on Ctrl+C.
    let listing = tokio::select! {
        l = blob_listing(&blob, &parsed) => l?,
        _ = cancel.cancelled() => return Err(Error::Interrupted),
    };
    let root = absolute(&args.dir)?;
    crate::report::set_destination(&root);
    let mut plan = Plan { filter, ..Plan::default() };
    plan.add(&root, "", listing, &mut HashMap::new());
    if let Some(s) = shard {
        plan.keep_shard(s);
    }
    let mut shown = url.clone();
    shown.set_query(None);
    let source = crate::redact::url_for_display(&shown);
    let session =
        Session { shard, manifest: args.manifest, ..Session::new(common, &client, printer, started, cancel, source) };
    plan_or_run(session, &root, plan, args.dry_run).await
}

/// Print the plan (`--dry-run`), or execute it.
async fn plan_or_run(session: Session<'_>, root: &std::path::Path, plan: Plan, dry_run: bool) -> Result<u8, Error> {
    super::warn_unmatched_includes(&plan);
    if dry_run {
        let actions = super::plan_actions(root, &plan.tasks, session.common.overwrite).await;
        session.printer.dry_run(root, &plan, &actions, None);
        return Ok(if plan.failures.is_empty() { 0 } else { crate::error::EXIT_FILES_FAILED });
    }
    execute(session, root, plan, None).await
}

/// The hint of a refused `cp` URL: no job or sign-in is involved, only the SAS in the URL.
const SAS_HINT: &str = "the URL needs a valid SAS: one that grants read and list (`sp=rl`; read alone for a \
                        single blob), has not expired (`se=`) and was copied whole, with every `&...` part and \
                        the URL in single quotes";

/// The files of a blob SAS URL: the one blob it names, else every blob under it as a folder.
async fn blob_listing(blob: &BlobClient, parsed: &ParsedBlobUrl) -> Result<Listing, Error> {
    let container = &parsed.container;
    let path = parsed.path.clone();
    let call_err = |e: crate::http::CallError| crate::provider::fatal_with_hint(e, "blob service", SAS_HINT);

    let mut listing = Listing::default();
    let single = |name: &str, size: u64, md5| RemoteFile {
        refresh: None,
        protocol: Protocol::AzureBlob,
        rel: name.rsplit('/').next().unwrap_or(name).to_string(),
        url: container.blob_url(name).into(),
        size: Some(size),
        md5,
        check: None,
        etag: None,
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
        let base = container.blob_base();
        let files = blob
            .list_into(container, &prefix, None, |b| RemoteFile {
                refresh: None,
                protocol: Protocol::AzureBlob,
                rel: b.name[prefix.len().min(b.name.len())..].to_string(),
                url: ContainerRef::blob_source(&base, &b.name),
                size: Some(b.size),
                md5: b.md5,
                check: None,
                etag: b.etag.clone(),
            })
            .await
            .map_err(call_err)?;
        if !files.is_empty() {
            listing.files = files;
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
    Ok(listing)
}

/// `jobdl cp s3://BUCKET/KEY-OR-PREFIX <DIR>`: HEAD the key (one object); else every object under
/// `KEY/` (or the whole bucket). Keys are never requested when a URL parser would rewrite them
/// (`.`/`..` segments) or when the plan's path checks refuse them: those fail alone.
async fn cp_s3(
    args: CpArgs,
    settings: &Settings,
    printer: Printer,
    cancel: CancellationToken,
    started: Instant,
) -> Result<u8, Error> {
    let common = &settings.common;
    let filter = Filter::new(&args.filter.include, &args.filter.exclude)?;
    let shard = crate::settings::shard(args.shard.as_deref(), &crate::env::var)?;
    let loc = crate::s3::parse_s3_url(args.url.trim()).map_err(Error::Usage)?;
    let config = settings.s3(&args.s3).config()?;
    let client = crate::http::build_client(common.idle_timeout)?;
    let s3 = crate::s3::S3Client::new(client.clone(), common.meta_retry.clone(), &config, &loc.bucket)
        .map_err(Error::Usage)?
        .with_max_entries(common.max_list_entries);
    if config.endpoint.is_none() {
        crate::hosts::check_aws_s3(s3.bucket_url()).map_err(Error::Usage)?;
    }
    let hook = SignHook(Arc::new(s3.signer().clone()));
    // The listing and the per-object checks end at once on Ctrl+C.
    let listing = tokio::select! {
        l = s3_listing(&s3, &hook, &loc) => l?,
        _ = cancel.cancelled() => return Err(Error::Interrupted),
    };
    let root = absolute(&args.dir)?;
    crate::report::set_destination(&root);
    let mut plan = Plan { filter, ..Plan::default() };
    plan.add(&root, "", listing, &mut HashMap::new());
    if let Some(s) = shard {
        plan.keep_shard(s);
    }
    let source = crate::redact::redact(args.url.trim());
    let session =
        Session { shard, manifest: args.manifest, ..Session::new(common, &client, printer, started, cancel, source) };
    plan_or_run(session, &root, plan, args.dry_run).await
}

/// The files of an `s3://` URL: the one object it names, else every object under it.
async fn s3_listing(s3: &crate::s3::S3Client, hook: &SignHook, loc: &crate::s3::S3Location) -> Result<Listing, Error> {
    let bucket = loc.bucket.as_str();
    let key = loc.key.as_str();
    let mut listing = Listing::default();
    let mut objects = Vec::new();
    let mut found = false;
    if !key.is_empty() && !key.ends_with('/') {
        match s3.head(key).await {
            Ok(p) => {
                let rel = key.rsplit('/').next().unwrap_or(key).to_string();
                // SSE-KMS / SSE-C: the ETag is not the MD5 even for a single part.
                objects.push(S3Listed {
                    key: key.to_string(),
                    rel,
                    size: p.size,
                    etag: p.etag,
                    encrypted: p.kms_or_sse_c,
                });
                found = true;
            }
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(s3_fatal(e, &format!("S3 bucket '{bucket}'"))),
        }
    }
    if !found {
        let prefix = if key.is_empty() || key.ends_with('/') { key.to_string() } else { format!("{key}/") };
        let (listed, bad) = s3.list(&prefix).await.map_err(|e| s3_fatal(e, &format!("S3 bucket '{bucket}'")))?;
        if listed.is_empty() && bad.is_empty() {
            let what = if key.is_empty() { String::new() } else { format!(" under '{}'", key.escape_debug()) };
            return Err(Error::NotFound(format!("no object{what} in bucket '{bucket}'")));
        }
        let rel_of = |k: &str| k.strip_prefix(prefix.as_str()).unwrap_or(k).to_string();
        for (k, reason) in bad {
            listing.failures.push((rel_of(&k), reason));
        }
        for o in listed {
            objects.push(S3Listed { rel: rel_of(&o.key), key: o.key, size: o.size, etag: o.etag, encrypted: false });
        }
    }
    let files = crate::provider::s3_files(objects.into_iter().map(|o| (s3, hook, o)).collect()).await;
    listing.files.extend(files.files);
    listing.failures.extend(files.failures);
    Ok(listing)
}

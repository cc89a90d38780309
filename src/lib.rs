//! jobdl: download the outputs and logged artifacts of ML training jobs, fast and safely.
//!
//! Modules in dependency order (each may use only those above it):
//! - [`error`], [`redact`], [`retry`], [`log`], [`signal`]: error categories and exit codes, secret
//!   redaction, retry policy, `-v` logging, Ctrl+C/SIGTERM as a cancellation token
//! - [`http`]: the one HTTP client, status classification, metadata calls with retries
//! - [`hosts`]: the host allow-list (which URLs may be fetched, which may receive a token)
//! - [`fs`]: the one door to the disk (directory fd, O_NOFOLLOW, part files, fsync + rename, lock)
//! - [`safepath`]: server-supplied names to safe relative paths
//! - [`blob`], [`s3`]: Azure Blob REST and S3 (URL parsing, listing, HEAD); know nothing about files
//! - [`auth`]: bearer tokens (static, or the Azure credential chain)
//! - [`provider`]: what exists and where — Foundry, Azure ML, MLflow/Databricks, Kubeflow — as
//!   listings of remote files; never prints, reads the environment or touches the disk
//! - [`jobref`]: run-page URLs pasted where a job name goes
//! - [`plan`], [`shard`]: pure planning: path safety, dedupe, filters; `--shard K/N` splits
//! - [`transfer`]: provider-blind engine moving bytes from URLs to files (and archives, unpacked
//!   into files, through a body decoder the plan supplies)
//! - [`manifest`]: `DEST/.jobdl/manifest.json`, what reruns and `jobdl verify` compare with
//! - [`report`]: progress, summary and the `--json` document; the only module that prints
//! - [`cli`], [`config`], [`settings`], [`app`]: argument parsing, configuration files, resolved
//!   settings, use cases
pub mod app;
pub mod auth;
pub mod best;
pub mod blob;
pub mod cli;
pub mod config;
pub mod env;
pub mod error;
pub mod fs;
pub mod hosts;
pub mod http;
pub mod jobref;
pub mod log;
pub mod manifest;
pub mod plan;
pub mod provider;
pub mod redact;
pub mod report;
pub mod retry;
pub mod s3;
pub mod safepath;
pub mod settings;
pub mod shard;
pub mod signal;
pub mod transfer;

//! The integration tests: one test binary (`cargo test --test it`), one module per area.
//!
//! Each module drives the built `jobdl` binary (or the library) against the project's emulators
//! (`tests/support`: the in-process Azure emulator, fake MLflow and KFP servers, and the real
//! Azurite, `mlflow server` and moto when installed). `harness` builds a sandboxed `jobdl`
//! command pointed at the emulated workspace. Run one area with `cargo test --test it cli::`, one
//! test with `cargo test --test it -- --exact cli::ls_show::ls_prints_the_plan_without_downloading`.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod architecture;
mod archive;
mod azureml;
mod azurite;
mod best_azure;
mod best_limit;
mod beyond;
mod children;
mod cli;
mod emulator_selftest;
mod engine;
mod fidelity;
mod first_contact;
mod follow;
mod fuzz;
mod hostile;
mod http2;
mod jobs;
mod kfp;
mod manifest;
mod many;
mod many_progress;
mod mlflow;
mod mlflow_real;
mod proxy;
mod python_api;
mod resume;
mod s3;
mod schema;
mod snapshots;

//! Test support shared by the integration tests (`tests/it`) and the demo: fixtures and the emulator.
//!
//! The modules under `cfg(test)` (fake MLflow and KFP servers, moto, the relay, output checks) are
//! only compiled into the test binary; the demo example builds the emulator and its worlds alone.
#![allow(dead_code, unused_imports)]

pub mod emulator;
pub mod proxy;
pub mod tls;
pub mod world;

#[cfg(test)]
pub mod check;
#[cfg(test)]
pub mod kfp_api;
#[cfg(test)]
pub mod kfp_read;
#[cfg(test)]
pub mod mlflow_fake;
#[cfg(test)]
pub mod moto;
#[cfg(test)]
pub mod relay;
#[cfg(test)]
pub mod serve;

pub use emulator::*;
pub use world::*;

//! Test support shared by the integration tests and the demo: fixtures and the emulator.
#![allow(dead_code, unused_imports)]

pub mod emulator;
pub mod proxy;
pub mod tls;
pub mod world;

pub use emulator::*;
pub use world::*;

//! Hostile-suite cases (issue 18), split by theme; see tests/hostile.rs for the shared helpers.
#[allow(unused_imports)]
use super::*;

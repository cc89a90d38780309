//! End-to-end tests of the `jobdl` binary against the in-process emulator (`tests/support`).
//!
//! Every test starts its own emulator and sandbox (see `harness`), runs the built binary with a
//! hermetic environment and fast retry/poll knobs, and checks exit codes, files on disk, the
//! `--json` document and the emulator's request log.

mod config;
mod cp;
mod default_artifacts;
mod faults;
mod gate;
mod local_files;
mod ls_show;
mod named_outputs;
mod output;
mod process;

//! The `jobdl` binary: parse → run with cancellation → exit code. All logic lives in the library.
fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(jobdl::app::main())
}

//! The `jobdl` binary: parse → run with cancellation → exit code. All logic lives in the library.
use clap::Parser;
use jobdl::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    std::process::ExitCode::from(jobdl::app::run_cli(cli))
}

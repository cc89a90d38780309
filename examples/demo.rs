//! A local demo workspace: starts the project's emulator of an Azure AI Foundry project and its
//! blob storage on 127.0.0.1 and downloads a finished job with `--all-outputs`, then shows that a
//! running job is refused (exit 5). No Azure account needed.
//!
//!     cargo run --release --example demo [-- DEST] [--model-mib N]
//!     cargo run --release --example demo -- --serve [--model-mib N]
//!
//! `--serve` only starts the emulator, prints the `export` lines that point jobdl at it, and
//! serves until Ctrl+C, so that every command of the README can be tried by hand
//! (`jobdl show job-demo-001`, `jobdl ls job-demo-001 --all-outputs`, `jobdl cp <SAS-URL> DIR`, ...).
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let mut dest: Option<PathBuf> = None;
    let mut model_mib: u64 = 300;
    let mut serve_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model-mib" => model_mib = args.next().and_then(|v| v.parse().ok()).unwrap_or(model_mib),
            "--serve" => serve_only = true,
            _ => dest = Some(PathBuf::from(a)),
        }
    }
    // Set before any thread exists (the emulator starts its own runtime below).
    // SAFETY: single-threaded at this point; nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("JOBDL_ACCESS_TOKEN", support::TOKEN);
        std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    }
    let work = match dest {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("jobdl-demo-{}", std::process::id())),
    };
    let emu = support::Emulator::start(support::demo_world(model_mib << 20));
    let endpoint = emu.project_endpoint();
    let host = emu.host_port();
    if serve_only {
        return serve(&emu);
    }
    println!("demo: a Foundry project emulator is serving {endpoint}");
    println!(
        "demo: job-demo-001 (Completed): logs, outputs, a {model_mib} MiB model, a metrics folder, an eval report\n"
    );

    let job_dir = work.join("job-demo-001");
    let argv = |job: &str, extra: &[&str]| {
        let mut v: Vec<String> = ["jobdl", "download", job, "--project-endpoint", &endpoint, "--allow-host", &host]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let path = job_dir.display().to_string();
    let cmd = argv("job-demo-001", &["--all-outputs", "-p", &path]);
    println!("$ {}", cmd.join(" "));
    let code = jobdl::app::run_from(&cmd);
    println!("exit code {code}\n");
    if code == 0 {
        print_tree(&job_dir);
    }

    let cmd2 = argv("job-demo-002", &["-p", &work.join("job-demo-002").display().to_string()]);
    println!("\n$ {}", cmd2.join(" "));
    let code2 = jobdl::app::run_from(&cmd2);
    println!("exit code {code2} (5: the job is still running; nothing was written)");
    emu.stop();
    println!("\ndemo: files are in {}", work.display());
    std::process::ExitCode::from(if code == 0 && code2 == 5 { 0 } else { 1 })
}

/// Serve the demo workspace until Ctrl+C (or stdin closes), after printing how to use it.
fn serve(emu: &support::Emulator) -> std::process::ExitCode {
    println!("# The demo workspace is serving on {}. In another shell:", emu.host_port());
    println!("export AZURE_AI_PROJECT_ENDPOINT='{}'", emu.project_endpoint());
    println!("export JOBDL_ALLOW_HOSTS='{}'", emu.host_port());
    println!("export JOBDL_ACCESS_TOKEN='{}'   # the emulator's test token", support::TOKEN);
    println!("export NO_PROXY='127.0.0.1,localhost'");
    println!("# jobs: job-demo-001 (Completed; outputs model, metrics, eval), job-demo-002 (Running)");
    println!("# a container SAS URL for `jobdl cp`:");
    println!("#   '{}'", emu.container_sas_url("models-demo", "job-demo-001-model/1/"));
    println!("# Ctrl+C (or closing stdin) stops the demo.");
    use std::io::Read;
    // Block until stdin closes; Ctrl+C ends the process (the emulator lives in it).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::ExitCode::SUCCESS
}

fn print_tree(root: &std::path::Path) {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = p.metadata() {
                files.push((p.strip_prefix(root).map(|r| r.display().to_string()).unwrap_or_default(), m.len()));
            }
        }
    }
    files.sort();
    for (f, len) in files {
        println!("  {len:>12}  {f}");
    }
}

//! A local demo workspace: starts the project's emulator of an Azure AI Foundry project and its
//! blob storage on 127.0.0.1 and downloads a finished job with `--all-outputs`, then shows that a
//! running job is refused (exit 5). No Azure account needed.
//!
//!     cargo run --release --example demo [-- DEST] [--model-mib N]
//!     cargo run --release --example demo -- --serve [--model-mib N]
//!
//! Without DEST the files go to a temporary folder that is removed at the end. `--serve` only
//! starts the emulator, prints the `export` lines that point jobdl at it, and serves until Ctrl+C
//! or SIGTERM — or until its stdin is closed, when stdin is a pipe (`sleep 1800 | demo --serve`);
//! it never reads a terminal (so `demo --serve &` is not stopped by SIGTTIN) and keeps serving with
//! stdin on /dev/null. Every command of the README can then be tried by hand.
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;

const USAGE: &str = "\
A local demo workspace for jobdl: an emulator of an Azure AI Foundry project and its blob storage
on 127.0.0.1. No Azure account needed.

Usage:
  demo [DEST] [--model-mib N]      download job-demo-001 with --all-outputs into DEST (default: a
                                   temporary folder, removed at the end), then show that the running
                                   job-demo-002 is refused with exit code 5
  demo --serve [--model-mib N]     serve the workspace and print the `export` lines that point jobdl
                                   at it; stops on Ctrl+C or SIGTERM, or when stdin (a pipe) closes
  demo --help                      this text

Options:
  --model-mib N    size of the model file of job-demo-001 in MiB (default 300)
";

fn main() -> std::process::ExitCode {
    let mut dest: Option<PathBuf> = None;
    let mut model_mib: u64 = 300;
    let mut serve_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return std::process::ExitCode::SUCCESS;
            }
            "--model-mib" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => model_mib = n,
                None => return usage_error("--model-mib needs a number of MiB"),
            },
            "--serve" => serve_only = true,
            flag if flag.starts_with('-') => return usage_error(&format!("unknown option '{flag}'")),
            _ if dest.is_some() => return usage_error("only one DEST may be given"),
            _ => dest = Some(PathBuf::from(a)),
        }
    }
    if serve_only {
        // Before any thread exists, so that every thread inherits the blocked mask and the
        // signals wait for `serve` to take them.
        block_stop_signals();
    }
    // Set before any thread exists (the emulator starts its own runtime below).
    // SAFETY: single-threaded at this point; nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("JOBDL_ACCESS_TOKEN", support::TOKEN);
        std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    }
    let keep = dest.is_some();
    let work = match dest {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("jobdl-demo-{}", std::process::id())),
    };
    let emu = support::Emulator::start(support::demo_world(model_mib << 20));
    let endpoint = emu.project_endpoint();
    let host = emu.host_port();
    if serve_only {
        return serve(emu);
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
    if keep {
        println!("\ndemo: files are in {}", work.display());
    } else {
        // The temporary folder (the model alone is --model-mib MiB) does not outlive the demo.
        match std::fs::remove_dir_all(&work) {
            Ok(()) => println!("\ndemo: removed {} (give a DEST to keep the files)", work.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("demo: cannot remove {}: {e}", work.display()),
        }
    }
    std::process::ExitCode::from(if code == 0 && code2 == 5 { 0 } else { 1 })
}

/// Serve the demo workspace until Ctrl+C, SIGTERM or the end of a piped stdin, after printing how
/// to use it.
fn serve(emu: support::Emulator) -> std::process::ExitCode {
    println!("# The demo workspace is serving on {}. In another shell:", emu.host_port());
    println!("export AZURE_AI_PROJECT_ENDPOINT='{}'", emu.project_endpoint());
    println!("export JOBDL_ALLOW_HOSTS='{}'", emu.host_port());
    println!("export JOBDL_ACCESS_TOKEN='{}'   # the emulator's test token", support::TOKEN);
    println!("export NO_PROXY='127.0.0.1,localhost'");
    println!("# jobs: job-demo-001 (Completed; outputs model, metrics, eval_report), job-demo-002 (Running)");
    println!("# a container SAS URL for `jobdl cp`:");
    println!("#   '{}'", emu.container_sas_url("models-demo", "job-demo-001-model/1/"));
    println!("# Ctrl+C or SIGTERM (or closing stdin, when it is a pipe) stops the demo.");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let (tx, rx) = std::sync::mpsc::channel::<&'static str>();
    if stdin_is_pipe() {
        // A pipe's end stops the demo (CI: `sleep 1800 | demo --serve`, or a parent closing it).
        // A terminal is never read (a background job reading it would be stopped by SIGTTIN),
        // nor is /dev/null (whose immediate end would stop the demo at once).
        let tx = tx.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _ = tx.send("stdin closed");
        });
    }
    wait_for_stop_signal(tx);
    let why = rx.recv().unwrap_or("stopped");
    emu.stop();
    println!("# demo stopped ({why})");
    std::process::ExitCode::SUCCESS
}

fn usage_error(msg: &str) -> std::process::ExitCode {
    eprintln!("demo: {msg}\n\n{USAGE}");
    std::process::ExitCode::from(2)
}

/// Whether stdin is a pipe (or a socket): the only kinds whose end means "stop".
fn stdin_is_pipe() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let Ok(meta) = std::fs::metadata("/dev/stdin") else { return false };
        let t = meta.file_type();
        t.is_fifo() || t.is_socket()
    }
    #[cfg(not(unix))]
    {
        use std::io::IsTerminal;
        !std::io::stdin().is_terminal()
    }
}

/// Block SIGINT and SIGTERM in this (still only) thread, so that every thread started later
/// inherits the mask and [`wait_for_stop_signal`] takes them.
fn block_stop_signals() {
    #[cfg(unix)]
    // SAFETY: plain libc calls on a local signal set; no other thread exists yet.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A thread that waits for Ctrl+C or SIGTERM and reports it on `tx`.
fn wait_for_stop_signal(tx: std::sync::mpsc::Sender<&'static str>) {
    #[cfg(unix)]
    std::thread::spawn(move || {
        // SAFETY: sigwait on a local set of the signals blocked by `block_stop_signals`.
        let sig = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            let mut sig: libc::c_int = 0;
            libc::sigwait(&set, &mut sig);
            sig
        };
        let _ = tx.send(if sig == libc::SIGTERM { "SIGTERM" } else { "Ctrl+C" });
    });
    #[cfg(not(unix))]
    {
        // Ctrl+C ends the process with the default handler; nothing to clean up on disk.
        std::mem::forget(tx);
    }
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

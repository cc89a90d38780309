//! The `jobdl` binary: parse → run with cancellation → exit code. All logic lives in the library.
fn main() -> std::process::ExitCode {
    // Ctrl+C / SIGTERM wait until their handlers exist (see `jobdl::signal`).
    jobdl::signal::hold();
    one_malloc_arena();
    std::process::ExitCode::from(jobdl::app::main())
}

/// glibc gives each thread that allocates its own arena (up to 8 per core), and memory freed into
/// one arena serves no other. jobdl's big allocations are the HTTP stack's read buffers, made on
/// the async workers and freed on the file's writer thread, so the extra arenas only hold freed
/// buffers, and one arena lowers peak RSS at the same speed (benches/README.md). An explicit
/// `MALLOC_ARENA_MAX` wins.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if jobdl::env::var_os(jobdl::env::MALLOC_ARENA_MAX).is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

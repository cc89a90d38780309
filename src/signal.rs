//! Ctrl+C / SIGTERM → a cancellation token; a second signal exits at once with 130.
//!
//! On Unix the two signals are held (blocked) from the first line of `main` until their handlers
//! are registered ([`hold`], then [`install`]): a signal that arrives while the process starts is
//! delivered then, and ends the run like any other (exit 130), instead of killing the process with
//! the default action before it could say so.
use tokio_util::sync::CancellationToken;

/// The signals jobdl handles.
#[cfg(unix)]
fn handled() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only initialise and fill the local set.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Block SIGINT and SIGTERM in the calling thread (and every thread it starts later). Call first
/// in `main`, before any thread exists.
pub fn hold() {
    #[cfg(unix)]
    // SAFETY: pthread_sigmask changes only the calling thread's signal mask; the set is valid.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &handled(), std::ptr::null_mut());
    }
}

/// Let the calling thread receive SIGINT and SIGTERM again (a pending one is delivered now).
fn release() {
    #[cfg(unix)]
    // SAFETY: as in `hold`.
    unsafe {
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &handled(), std::ptr::null_mut());
    }
}

/// Register the handlers, release the held signals on this thread (the one driving the run) and
/// spawn the listener; the returned token is cancelled on the first signal.
pub fn install() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    release();
    tokio::spawn(async move {
        for round in 0..2 {
            #[cfg(unix)]
            {
                async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                    match s.as_mut() {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                }
                tokio::select! {
                    _ = next(&mut int) => {}
                    _ = next(&mut term) => {}
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
            if round == 0 {
                eprintln!("jobdl: interrupted; finishing up (press Ctrl+C again to quit at once)");
                t.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
    token
}

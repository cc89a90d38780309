//! Ctrl+C / SIGTERM → a cancellation token; a second signal exits at once with 130.
use tokio_util::sync::CancellationToken;

/// Spawn the signal listener; the returned token is cancelled on the first signal.
pub fn install() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for round in 0..2 {
            #[cfg(unix)]
            {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending::<()>().await } } => {}
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

//! A loopback TCP relay that puts a far-away server behind a local port, for the WAN bench
//! (`benches/wan.sh`): every byte is held for a fixed one-way delay in each direction, and each
//! connection may be capped to a rate per direction, as a storage account caps one connection.
//!
//! ```text
//! cargo run --release --example relay -- LISTEN_PORT UPSTREAM_PORT ONE_WAY_MS [RATE_PER_CONN]
//! ```
//!
//! `RATE_PER_CONN` is bytes per second (`64M` = 64 MiB/s; `K`, `M`, `G` are powers of 1024); without
//! it a connection is not capped. A new connection costs one round trip before its first byte moves
//! (the TCP handshake), so a request on a fresh connection takes two round trips, as on a real link.
//! Each direction holds at most `WINDOW` bytes in flight (a TCP window), so memory stays bounded.
//! Runs until SIGINT/SIGTERM. Listens on 127.0.0.1 and connects to 127.0.0.1 only.
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most bytes one read takes off a socket.
const READ: usize = 256 * 1024;
/// Most bytes held in flight in one direction of one connection (reads of up to `READ` each).
const WINDOW: usize = 64 << 20;

struct Args {
    listen: u16,
    upstream: u16,
    delay: Duration,
    rate: Option<u64>,
}

fn parse_rate(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).filter(|&n| n > 0)
}

fn args() -> Result<Args, String> {
    let usage = "usage: relay LISTEN_PORT UPSTREAM_PORT ONE_WAY_MS [RATE_PER_CONN, e.g. 64M]";
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.iter().any(|s| s == "-h" || s == "--help") || !(3..=4).contains(&a.len()) {
        return Err(usage.to_string());
    }
    let port = |s: &str| s.parse::<u16>().map_err(|_| format!("not a port: {s}\n{usage}"));
    let ms = a[2].parse::<f64>().ok().filter(|m| m.is_finite() && *m >= 0.0).ok_or(format!("not a delay: {}", a[2]))?;
    let rate = match a.get(3) {
        Some(r) => Some(parse_rate(r).ok_or(format!("not a rate: {r}"))?),
        None => None,
    };
    Ok(Args { listen: port(&a[0])?, upstream: port(&a[1])?, delay: Duration::from_secs_f64(ms / 1000.0), rate })
}

/// Reads one direction and queues each piece with the moment it may leave.
async fn read_side(mut from: OwnedReadHalf, tx: mpsc::Sender<(Instant, Vec<u8>)>, delay: Duration) {
    let mut buf = vec![0u8; READ];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || tx.send((Instant::now() + delay, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
}

/// Writes each queued piece when it is due, paced to `rate` bytes per second when set.
async fn write_side(mut to: OwnedWriteHalf, mut rx: mpsc::Receiver<(Instant, Vec<u8>)>, rate: Option<u64>) {
    let started = Instant::now();
    let mut sent: u64 = 0;
    while let Some((due, data)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&data).await.is_err() {
            return;
        }
        if let Some(r) = rate {
            sent += data.len() as u64;
            // The next byte may leave once the bytes sent so far fit the rate since the start.
            tokio::time::sleep_until(started + Duration::from_secs_f64(sent as f64 / r as f64)).await;
        }
    }
    let _ = to.shutdown().await;
}

fn direction(from: OwnedReadHalf, to: OwnedWriteHalf, args: &Args) -> [tokio::task::JoinHandle<()>; 2] {
    let (tx, rx) = mpsc::channel(WINDOW / READ);
    [tokio::spawn(read_side(from, tx, args.delay)), tokio::spawn(write_side(to, rx, args.rate))]
}

async fn relay(client: TcpStream, args: &Args) {
    // The handshake: SYN one way, SYN-ACK back.
    tokio::time::sleep(args.delay).await;
    let Ok(server) = TcpStream::connect(("127.0.0.1", args.upstream)).await else { return };
    tokio::time::sleep(args.delay).await;
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let [a, b] = direction(cr, sw, args);
    let [c, d] = direction(sr, cw, args);
    let _ = tokio::join!(a, b, c, d);
}

#[tokio::main]
async fn main() {
    let args = match args() {
        Ok(a) => &*Box::leak(Box::new(a)),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", args.listen)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("relay: cannot listen on 127.0.0.1:{}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let rate = args.rate.map_or("no cap".to_string(), |r| format!("{} MiB/s per connection", r as f64 / 1048576.0));
    eprintln!(
        "relay: 127.0.0.1:{} -> 127.0.0.1:{}, {} ms each way, {rate}",
        args.listen,
        args.upstream,
        args.delay.as_secs_f64() * 1000.0
    );
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(relay(client, args));
                }
            }
        }
    }
}

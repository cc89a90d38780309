//! A tiny HTTP proxy on 127.0.0.1 for tests: relays absolute-form requests (`GET http://h:p/x`)
//! and `CONNECT h:p` tunnels to loopback targets only (`*.invalid` names mean 127.0.0.1), optionally demands Basic proxy
//! credentials, and records every request it saw (method, target, headers) for assertions.
//!
//! One thread accepts; each connection gets its own thread. Relayed requests are sent upstream
//! with `Connection: close`, so each client connection carries one request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;

/// One request the proxy received.
#[derive(Clone, Debug)]
pub struct ProxiedRequest {
    /// `GET`, `HEAD`, `POST`, `CONNECT`, ...
    pub method: String,
    /// The absolute URL (`http://127.0.0.1:P/x?y`) or, for `CONNECT`, `host:port`.
    pub target: String,
    /// Header names (lower-cased) and values, as received.
    pub headers: Vec<(String, String)>,
    /// Whether the proxy relayed it (false: refused with 407 or 403).
    pub relayed: bool,
}

impl ProxiedRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

struct State {
    log: Mutex<Vec<ProxiedRequest>>,
    /// `Basic <base64(user:pass)>` the proxy demands, if any.
    auth: Option<String>,
    stop: AtomicBool,
}

/// The running proxy; stops accepting on drop.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy that relays anything to loopback.
    pub fn start() -> Proxy {
        Proxy::start_with(None)
    }

    /// A proxy that answers 407 unless the request carries these Basic credentials.
    pub fn with_credentials(user: &str, pass: &str) -> Proxy {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        Proxy::start_with(Some(format!("Basic {token}")))
    }

    fn start_with(auth: Option<String>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy: local_addr");
        let state = Arc::new(State { log: Mutex::new(Vec::new()), auth, stop: AtomicBool::new(false) });
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("test-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let st = st.clone();
                    let _ = std::thread::Builder::new().name("test-proxy-conn".into()).spawn(move || {
                        let _ = handle(conn, &st);
                    });
                }
            })
            .expect("proxy: spawn thread");
        Proxy { addr, state, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://USER:PASS@127.0.0.1:PORT`
    pub fn url_with(&self, user: &str, pass: &str) -> String {
        format!("http://{user}:{pass}@{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.state.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request line and its headers (names lower-cased).
type Head = (String, Vec<(String, String)>);

/// Reads the request head (request line and headers) from `reader`.
fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Head>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let request_line = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok(Some((request_line, headers)))
}

fn respond(mut conn: &TcpStream, status: &str, extra: &str) -> std::io::Result<()> {
    write!(conn, "HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")?;
    conn.flush()
}

/// Only loopback targets are relayed (tests never reach another host). Names under `.invalid`
/// stand for 127.0.0.1 (the proxy is their resolver): jobdl never sends a loopback target
/// through a proxy, so proxy tests name their servers this way.
fn loopback_target(host_port: &str) -> Option<SocketAddr> {
    if let Some((host, port)) = host_port.rsplit_once(':')
        && host.to_ascii_lowercase().ends_with(".invalid")
    {
        return Some(SocketAddr::from(([127, 0, 0, 1], port.parse().ok()?)));
    }
    let addr: SocketAddr = host_port.parse().ok()?;
    addr.ip().is_loopback().then_some(addr)
}

fn handle(conn: TcpStream, st: &State) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let Some((request_line, headers)) = read_head(&mut reader)? else { return Ok(()) };
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut record = ProxiedRequest { method: method.clone(), target: target.clone(), headers, relayed: false };
    let log = |r: ProxiedRequest| st.log.lock().unwrap_or_else(|p| p.into_inner()).push(r);

    if let Some(want) = &st.auth
        && record.header("proxy-authorization") != Some(want.as_str())
    {
        log(record);
        return respond(&conn, "407 Proxy Authentication Required", "Proxy-Authenticate: Basic realm=\"test\"\r\n");
    }

    if method.eq_ignore_ascii_case("CONNECT") {
        let Some(addr) = loopback_target(&target) else {
            log(record);
            return respond(&conn, "403 Forbidden", "");
        };
        let upstream = TcpStream::connect(addr)?;
        record.relayed = true;
        log(record);
        (&conn).write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;
        // Bytes the client already sent after the head (normally none before the 200).
        let buffered = reader.buffer().to_vec();
        (&upstream).write_all(&buffered)?;
        return pipe(conn, upstream);
    }

    // Absolute form: http://host:port/path?query
    let Some(rest) = target.strip_prefix("http://") else {
        log(record);
        return respond(&conn, "400 Bad Request", "");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(addr) = loopback_target(authority) else {
        log(record);
        return respond(&conn, "403 Forbidden", "");
    };
    let mut upstream = TcpStream::connect(addr)?;
    let version = parts.next().unwrap_or("HTTP/1.1");
    let mut head = format!("{method} {path} {version}\r\n");
    for (n, v) in &record.headers {
        if matches!(n.as_str(), "proxy-authorization" | "proxy-connection" | "connection" | "keep-alive") {
            continue;
        }
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    record.relayed = true;
    let body_len: u64 = record.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    log(record);
    upstream.write_all(head.as_bytes())?;
    std::io::copy(&mut (&mut reader).take(body_len), &mut upstream)?;
    // The response, until the upstream closes (it was asked to); then close the client side.
    let mut down = upstream.try_clone()?;
    let _ = std::io::copy(&mut down, &mut &conn);
    let _ = conn.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    Ok(())
}

/// Copies both ways until either side closes, then closes both.
fn pipe(client: TcpStream, upstream: TcpStream) -> std::io::Result<()> {
    client.set_read_timeout(None)?;
    let (mut c_read, mut u_write) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream.try_clone()?, client.try_clone()?);
    let _ = std::io::copy(&mut u_read, &mut c_write);
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

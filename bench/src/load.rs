//! A closed-loop HTTP/1.1 load generator: K workers, each sends one request, reads the
//! whole response, checks it, and sends the next, until the deadline. Raw sockets with
//! pre-built request bytes keep the client cheap (it shares the 2 cores with the server).
//!
//! Every connection it opens carries a complete request straight away: `openssl ocsp`
//! (OpenSSL 3.0) spins at 100% CPU when a client connects and leaves without sending.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One server to load.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Reuse connections the server keeps open; otherwise send `Connection: close` and
    /// open a new connection per request.
    pub keep_alive: bool,
    /// Complete HTTP requests (headers and body), picked at random.
    pub requests: Arc<Vec<Vec<u8>>>,
}

impl Target {
    pub fn new(addr: SocketAddr, path: &str, keep_alive: bool, bodies: &[Vec<u8>]) -> Target {
        let requests = bodies
            .iter()
            .map(|body| {
                let mut r = format!(
                    "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/ocsp-request\r\n\
                     Content-Length: {}\r\n{}\r\n",
                    body.len(),
                    if keep_alive { "" } else { "Connection: close\r\n" }
                )
                .into_bytes();
                r.extend_from_slice(body);
                r
            })
            .collect();
        Target {
            addr,
            keep_alive,
            requests: Arc::new(requests),
        }
    }
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Sorted latencies of the successful requests, µs.
    pub latencies_us: Vec<u32>,
    pub connections: u64,
    pub first_error: Option<String>,
}

impl LoadResult {
    /// The workers' results added up (a worker that panicked counts nothing), over the time
    /// since `started`, latencies sorted.
    pub async fn gather(
        handles: Vec<tokio::task::JoinHandle<LoadResult>>,
        started: std::time::Instant,
    ) -> LoadResult {
        let mut total = LoadResult::default();
        for h in handles {
            if let Ok(r) = h.await {
                total.ok += r.ok;
                total.failed += r.failed;
                total.connections += r.connections;
                total.latencies_us.extend(r.latencies_us);
                if total.first_error.is_none() {
                    total.first_error = r.first_error;
                }
            }
        }
        total.elapsed = started.elapsed();
        total.latencies_us.sort_unstable();
        total
    }

    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    pub fn p_ms(&self, p: f64) -> f64 {
        f64::from(crate::util::percentile(&self.latencies_us, p)) / 1000.0
    }
}

/// One response: HTTP status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request on a fresh connection and returns the response (for samples).
pub async fn once(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Response> {
    let mut conn = None;
    let mut buf = Vec::new();
    let mut opened = 0;
    let (status, start) = tokio::time::timeout(
        Duration::from_secs(10),
        exchange(&mut conn, addr, request, false, &mut buf, &mut opened),
    )
    .await
    .context("no response within 10 s")??;
    Ok(Response {
        status,
        body: buf[start..].to_vec(),
    })
}

/// Runs `concurrency` workers against `target` for `duration`; `check` judges each body.
pub async fn run(
    target: &Target,
    concurrency: usize,
    duration: Duration,
    check: fn(&[u8]) -> bool,
) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::new();
    for w in 0..concurrency {
        let target = target.clone();
        handles.push(tokio::spawn(async move {
            worker(
                target,
                deadline,
                check,
                0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1),
            )
            .await
        }));
    }
    LoadResult::gather(handles, started).await
}

async fn worker(
    target: Target,
    deadline: Instant,
    check: fn(&[u8]) -> bool,
    mut rng: u64,
) -> LoadResult {
    let mut out = LoadResult {
        latencies_us: Vec::with_capacity(100_000),
        ..LoadResult::default()
    };
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(8192);
    let n = target.requests.len() as u64;
    while Instant::now() < deadline {
        // xorshift64*
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        let pick = (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % n) as usize;
        let t0 = Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            exchange(
                &mut conn,
                target.addr,
                &target.requests[pick],
                target.keep_alive,
                &mut buf,
                &mut out.connections,
            ),
        )
        .await;
        let failure = match result {
            Ok(Ok((200, start))) if check(&buf[start..]) => {
                let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                out.latencies_us.push(us);
                out.ok += 1;
                None
            }
            Ok(Ok((status, _))) => Some(format!("HTTP {status} or unexpected body")),
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some("no response within 5 s".to_string()),
        };
        if let Some(e) = failure {
            conn = None;
            out.failed += 1;
            out.first_error.get_or_insert(e);
            if out.failed > 100 {
                break;
            }
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request/response on `conn` (opened if needed). Returns the status and where the
/// body starts in `buf`. Leaves `conn` empty when the connection cannot be reused.
async fn exchange(
    conn: &mut Option<TcpStream>,
    addr: SocketAddr,
    request: &[u8],
    keep_alive: bool,
    buf: &mut Vec<u8>,
    opened: &mut u64,
) -> anyhow::Result<(u16, usize)> {
    if conn.is_none() {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        *opened += 1;
        *conn = Some(s);
    }
    let Some(s) = conn.as_mut() else {
        bail!("no connection")
    };
    // Written at once after connecting: never an idle connection.
    if let Err(e) = s.write_all(request).await {
        *conn = None;
        return Err(e.into());
    }
    buf.clear();
    let header_end = loop {
        let n = s.read_buf(buf).await?;
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
        if n == 0 {
            *conn = None;
            bail!("connection closed before a complete response head");
        }
        if buf.len() > 64 * 1024 {
            bail!("response head too large");
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let length: Option<usize> = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse().ok())
    });
    let close = head.contains("\r\nconnection: close")
        || (head.starts_with("http/1.0") && !head.contains("\r\nconnection: keep-alive"));
    match length {
        Some(len) => {
            while buf.len() < header_end + len {
                if s.read_buf(buf).await? == 0 {
                    *conn = None;
                    bail!("connection closed inside the body");
                }
            }
        }
        None => {
            while s.read_buf(buf).await? != 0 {}
            *conn = None;
        }
    }
    if close || !keep_alive {
        *conn = None;
    }
    Ok((status, header_end))
}

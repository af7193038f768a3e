//! A small HTTP/1.1 client for the runs `load` does not cover: JSON issuance requests made
//! per request (each with its own order key), and open-loop OCSP at a fixed arrival rate.
//! Keep-alive, bodies by Content-Length or chunked. Like `load`, every connection it opens
//! carries a complete request at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::load::LoadResult;

/// One connection (opened on first use, reopened when the server closes it).
#[derive(Default)]
pub struct Conn {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    pub opened: u64,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    /// Sends `request` (complete, headers and body) and reads the whole response: status
    /// and body.
    pub async fn exchange(
        &mut self,
        addr: SocketAddr,
        request: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let r = self.exchange_inner(addr, request).await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn exchange_inner(
        &mut self,
        addr: SocketAddr,
        request: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            self.opened += 1;
            self.stream = Some(s);
        }
        let s = self.stream.as_mut().context("no connection")?;
        s.write_all(request).await?;
        let buf = &mut self.buf;
        buf.clear();
        let head_end = loop {
            if let Some(p) = find(buf, b"\r\n\r\n") {
                break p + 4;
            }
            if s.read_buf(buf).await? == 0 {
                bail!("connection closed before a complete response head");
            }
            if buf.len() > 64 * 1024 {
                bail!("response head too large");
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .context("no HTTP status")?;
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let close = header("connection:").is_some_and(|v| v == "close")
            || (head.starts_with("http/1.0") && header("connection:").is_none());
        let body =
            if let Some(len) = header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
                while buf.len() < head_end + len {
                    if s.read_buf(buf).await? == 0 {
                        bail!("connection closed inside the body");
                    }
                }
                buf[head_end..head_end + len].to_vec()
            } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
                let mut body = Vec::new();
                let mut at = head_end;
                loop {
                    let line_end = loop {
                        if let Some(p) = find(&buf[at..], b"\r\n") {
                            break at + p;
                        }
                        if s.read_buf(buf).await? == 0 {
                            bail!("connection closed inside a chunk header");
                        }
                    };
                    let size_text = String::from_utf8_lossy(&buf[at..line_end]).to_string();
                    let size =
                        usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                            .with_context(|| format!("bad chunk size {size_text:?}"))?;
                    let data = line_end + 2;
                    while buf.len() < data + size + 2 {
                        if s.read_buf(buf).await? == 0 {
                            bail!("connection closed inside a chunk");
                        }
                    }
                    if size == 0 {
                        // No trailers expected: the empty line follows at once.
                        break;
                    }
                    body.extend_from_slice(&buf[data..data + size]);
                    at = data + size + 2;
                }
                body
            } else {
                while s.read_buf(buf).await? != 0 {}
                self.stream = None;
                buf[head_end..].to_vec()
            };
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}

/// A complete POST request.
pub fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Makes request number `i` (every number is used once across the runs sharing a counter).
pub type MakeRequest = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;
/// Judges a response: status and body.
pub type Check = fn(u16, &[u8]) -> bool;

/// Closed loop: `concurrency` workers on kept-alive connections, each sends request
/// `next.fetch_add(1)`, reads the answer, and sends the next, until `duration` has passed.
pub async fn closed_loop(
    addr: SocketAddr,
    make: MakeRequest,
    next: Arc<AtomicU64>,
    concurrency: usize,
    duration: Duration,
    check: Check,
) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let make = make.clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            let mut out = LoadResult::default();
            let mut conn = Conn::default();
            while Instant::now() < deadline {
                let request = make(next.fetch_add(1, Ordering::Relaxed));
                let t0 = Instant::now();
                let r =
                    tokio::time::timeout(Duration::from_secs(10), conn.exchange(addr, &request))
                        .await;
                match r {
                    Ok(Ok((status, body))) if check(status, &body) => {
                        out.ok += 1;
                        out.latencies_us
                            .push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    other => {
                        out.failed += 1;
                        out.first_error.get_or_insert_with(|| match other {
                            Ok(Ok((status, body))) => format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&body[..body.len().min(200)])
                            ),
                            Ok(Err(e)) => format!("{e:#}"),
                            Err(_) => "no response within 10 s".into(),
                        });
                        conn = Conn::default();
                        if out.failed > 100 {
                            break;
                        }
                    }
                }
            }
            out.connections = conn.opened;
            out
        }));
    }
    LoadResult::gather(handles, started).await
}

/// The resolution of tokio's timer.
const TICK: Duration = Duration::from_millis(1);

/// What an open-loop run measured.
#[derive(Debug, Default)]
pub struct OpenResult {
    /// Arrival rate asked for, requests/s.
    pub rate: f64,
    /// Connections (workers) used.
    pub connections: usize,
    pub load: LoadResult,
    /// Requests that could not leave on time because their connection was still waiting for
    /// the previous answer (timed from their scheduled time).
    pub behind: u64,
}

/// Open loop at a fixed arrival rate: `connections` workers, worker `w` sends its k-th
/// request at `start + (w + k·connections) / rate` (so the requests of all workers arrive
/// evenly at `rate`), a random one of `requests`, on a kept-alive connection. A request that
/// leaves on time is timed from when it was sent; one that is late because the previous
/// answer on its connection had not come yet is timed from its scheduled time, so waiting
/// behind a slow answer counts (no coordinated omission).
pub async fn open_loop(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    rate: f64,
    connections: usize,
    duration: Duration,
    check: Check,
) -> OpenResult {
    let started = Instant::now() + Duration::from_millis(20);
    let end = started + duration;
    let mut handles = Vec::new();
    for w in 0..connections {
        let requests = requests.clone();
        handles.push(tokio::spawn(async move {
            let mut out = LoadResult::default();
            let mut behind = 0u64;
            let mut conn = Conn::default();
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (w as u64 + 1);
            let n = requests.len() as u64;
            for k in 0u64.. {
                let at = started
                    + Duration::from_secs_f64((w as f64 + (k * connections as u64) as f64) / rate);
                if at >= end {
                    break;
                }
                // The timer ticks by the millisecond: a request due within the next tick
                // leaves now (the schedule stays absolute, so the rate does not drift).
                let now = Instant::now();
                let t0 = if now + TICK < at {
                    tokio::time::sleep_until(at.into()).await;
                    Instant::now()
                } else if now <= at {
                    now
                } else {
                    behind += 1;
                    at
                };
                rng ^= rng >> 12;
                rng ^= rng << 25;
                rng ^= rng >> 27;
                let pick = (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % n) as usize;
                let r = tokio::time::timeout(
                    Duration::from_secs(5),
                    conn.exchange(addr, &requests[pick]),
                )
                .await;
                match r {
                    Ok(Ok((status, body))) if check(status, &body) => {
                        out.ok += 1;
                        out.latencies_us
                            .push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    other => {
                        out.failed += 1;
                        out.first_error.get_or_insert_with(|| match other {
                            Ok(Ok((status, _))) => format!("HTTP {status} or unexpected body"),
                            Ok(Err(e)) => format!("{e:#}"),
                            Err(_) => "no response within 5 s".into(),
                        });
                        conn = Conn::default();
                    }
                }
            }
            out.connections = conn.opened;
            (out, behind)
        }));
    }
    let mut total = OpenResult {
        rate,
        connections,
        ..OpenResult::default()
    };
    for h in handles {
        if let Ok((r, behind)) = h.await {
            total.behind += behind;
            total.load.ok += r.ok;
            total.load.failed += r.failed;
            total.load.connections += r.connections;
            total.load.latencies_us.extend(r.latencies_us);
            if total.load.first_error.is_none() {
                total.load.first_error = r.first_error;
            }
        }
    }
    total.load.elapsed = started.elapsed();
    total.load.latencies_us.sort_unstable();
    total
}

/// The string value of `"key":"…"` in a small JSON text (no nesting of the same key),
/// with `\n`, `\/`, `\"` and `\\` unescaped.
pub fn json_str(text: &str, key: &str) -> Option<String> {
    let start = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[start..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// `s` as a JSON string literal (quotes included).
pub fn json_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

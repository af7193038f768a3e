//! The accept loop: every TCP connection the instance holds is bounded in number and in time,
//! so clients that open connections and then say nothing (or trickle bytes) cannot take the
//! sockets, file descriptors and memory that everybody else needs.
//!
//! - a request's headers must arrive within `header_read_timeout_secs` (also the longest a
//!   kept-alive connection may wait for its next request);
//! - a connection on which nothing moves (no byte read or written) for `idle_timeout_secs`
//!   is closed, whatever stage it is in (a stalled body, a reader that stopped reading);
//! - at most `max_connections` connections at once, and at most
//!   `max_connections_per_address` from one address (trusted proxies excepted: they carry
//!   everyone); a connection over a cap gets a short 503 and is closed at once, without
//!   waiting in the kernel's queue.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

use crate::Config;

/// The bounds of the connections of one instance (see the module documentation).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time to send a request's headers (and to start the next request on a kept-alive
    /// connection).
    pub header_read_timeout: Duration,
    /// Time without any byte moving before a connection is closed.
    pub idle_timeout: Duration,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_connections_per_address: usize,
    /// Addresses not capped per address (the trusted proxies).
    pub exempt: Vec<String>,
}

impl Limits {
    /// The limits configured for an instance.
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs.max(1)),
            max_connections: config.max_connections.max(1),
            max_connections_per_address: config.max_connections_per_address.max(1),
            exempt: config.trusted_proxies.clone(),
        }
    }
}

/// What a connection over a cap reads before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\nConnection: close\r\n\r\n\
Too many connections\n";

/// Open connections per address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted for its address; uncounted when dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn enter(table: &Arc<PerAddress>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut map = table.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, lets the requests in progress finish (idle connections close at once) and
/// returns when every connection is closed or after 30 s.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = Arc::new(limits);
    let all = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    // Connections watch `stop` to begin their graceful shutdown; each holds a `done`
    // receiver so the loop knows when the last one has ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = all.clone().try_acquire_owned() else {
            refuse(stream, peer, "max_connections");
            continue;
        };
        let slot = if limits.exempt.iter().any(|a| *a == peer.ip().to_string()) {
            None
        } else {
            match PerAddress::enter(&per_address, peer.ip(), limits.max_connections_per_address) {
                Some(slot) => Some(slot),
                None => {
                    refuse(stream, peer, "max_connections_per_address");
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            app.clone(),
            limits.clone(),
            (permit, slot),
            stop_rx.clone(),
            done_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    let _ = tokio::time::timeout(Duration::from_secs(30), done_tx.closed()).await;
    Ok(())
}

/// Answers 503 without reading and closes (never waits: a full send buffer loses the 503).
fn refuse(stream: TcpStream, peer: SocketAddr, cap: &'static str) {
    let _ = stream.try_write(BUSY);
    tracing::debug!(%peer, cap, "connection refused: over the cap");
}

async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    // Out of file descriptors (EMFILE) and the like: connections will close, try again soon.
    tracing::error!(error = %e, "accepting a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Arc<Limits>,
    held: (OwnedSemaphorePermit, Option<AddressSlot>),
    mut stop: watch::Receiver<bool>,
    _done: watch::Receiver<()>,
) {
    let io = TokioIo::new(Idle::new(stream, limits.idle_timeout));
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        tower::ServiceExt::oneshot(app.clone(), req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut conn = std::pin::pin!(builder.serve_connection(io, service));
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async { drop(stop.wait_for(|stop| *stop).await) } => {
            // Idle connections close at once, a request in progress is answered first.
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        tracing::trace!(%peer, error = %e, "connection ended");
    }
    drop(held);
}

/// A stream that fails with `TimedOut` once it has waited for the peer (a read or a write
/// pending) for `timeout` without any byte moving. Time spent in a handler, when nothing
/// waits on the socket, does not count.
struct Idle {
    inner: TcpStream,
    timeout: Duration,
    waiting: bool,
    timer: Pin<Box<Sleep>>,
}

impl Idle {
    fn new(inner: TcpStream, timeout: Duration) -> Idle {
        Idle {
            inner,
            timeout,
            waiting: false,
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.waiting = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !self.waiting {
                    self.waiting = true;
                    let deadline = Instant::now() + self.timeout;
                    self.timer.as_mut().reset(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connection idle for too long",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for Idle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.check(cx, poll)
    }
}

impl AsyncWrite for Idle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

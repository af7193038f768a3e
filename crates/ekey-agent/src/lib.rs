//! The local agent (`ekey agent`): lets the portal's pages use the key inserted in the
//! user's machine — list keys and certificates, sign a login challenge, read an unlock
//! challenge and apply an unlock code, run a renewal. The contract is docs/agent.md.
//!
//! - Listens on the loopback interface only ([`check_listen`]).
//! - Answers only the configured portal origin (plus `GET /status` without any `Origin`),
//!   with CORS and Private Network Access headers for it, and only to pages paired with
//!   it: a 6-digit code shown on the page and typed in the agent's terminal
//!   ([`Agent::confirm_pairing`]).
//! - Keys come from [`TokenSource`]s, looked up afresh on every call; token work runs in
//!   `spawn_blocking`.
//! - The renewal client ([`renew::renew`]) is shared with `ekey key renew`.
//!
//! In process (tests): `let agent = Agent::new(config)?;` then
//! `let listener = bind("127.0.0.1:0").await?;` and
//! `tokio::spawn(serve(agent.clone(), listener, std::future::pending()))`; or
//! `router(agent)` with `tower::ServiceExt::oneshot`.
#![forbid(unsafe_code)]

pub mod cert;
mod client;
pub mod error;
pub mod http;
pub mod pairing;
pub mod renew;
pub mod tokens;
pub mod unlock;

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::HeaderValue;

pub use error::{AgentError, Result};
pub use http::{KeyInfo, router};
pub use pairing::Confirmation;
pub use renew::{RenewOutcome, RenewParams, renew};
pub use tokens::{TokenSource, default_sources};
pub use unlock::{key_login, report_unlock};

/// The agent's default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:17480";

/// What the agent serves and to whom.
#[derive(Clone, Debug)]
pub struct Config {
    /// The portal's origin (`https://ekey.example.gov.cn`): the only origin answered, and
    /// the origin bound into login signatures.
    pub origin: String,
    /// The eKey server's base URL, for the renewal (usually the origin).
    pub server: String,
    /// Where the keys are.
    pub sources: Vec<TokenSource>,
    /// Where the pairings are kept.
    pub state_dir: PathBuf,
}

pub(crate) struct Inner {
    pub(crate) origin: String,
    pub(crate) server: String,
    pub(crate) sources: Vec<TokenSource>,
    pub(crate) pairings: pairing::Pairings,
    /// One renewal at a time.
    pub(crate) renewal: tokio::sync::Mutex<()>,
}

/// A running agent's state; cheap to clone.
#[derive(Clone)]
pub struct Agent {
    pub(crate) inner: Arc<Inner>,
}

impl Agent {
    /// Checks the configuration and loads the pairings from the state directory.
    pub fn new(config: Config) -> Result<Agent> {
        let origin = config.origin.trim_end_matches('/').to_string();
        client::check_base_url(&origin)?;
        let server = config.server.trim_end_matches('/').to_string();
        client::check_base_url(&server)?;
        let pairings = pairing::Pairings::load(&config.state_dir, &origin)?;
        Ok(Agent {
            inner: Arc::new(Inner {
                origin,
                server,
                sources: config.sources,
                pairings,
                renewal: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The portal origin answered (no trailing slash).
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    pub(crate) fn origin_matches(&self, value: &HeaderValue) -> bool {
        value.to_str().is_ok_and(|v| {
            v.trim_end_matches('/')
                .eq_ignore_ascii_case(&self.inner.origin)
        })
    }

    /// A line typed in the agent's terminal: confirms the pending pairing whose code it
    /// is. What the standard-input reader ([`spawn_stdin_reader`]) calls for each line.
    pub fn confirm_pairing(&self, line: &str) -> Confirmation {
        let outcome = self.inner.pairings.confirm(line);
        if outcome == Confirmation::Confirmed {
            tracing::info!("pairing confirmed at the terminal");
        }
        outcome
    }

    fn announce_pairing(&self, code: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "配对请求：网页显示的配对码为 {code}。如与网页一致，请在此输入该配对码并回车确认 / Pairing request: type the code shown on the page here and press Enter"
        );
        let _ = out.flush();
    }
}

/// Reads standard input line by line in a background thread; each line may confirm a
/// pending pairing ([`Agent::confirm_pairing`]).
pub fn spawn_stdin_reader(agent: Agent) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            let reply = match agent.confirm_pairing(&line) {
                Confirmation::Confirmed => "已确认配对 / Pairing confirmed",
                Confirmation::NoMatch => {
                    "没有使用该配对码的配对请求（可能已过期） / No pairing request with this code (it may have expired)"
                }
                Confirmation::Empty => continue,
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{reply}");
            let _ = out.flush();
        }
    })
}

/// Parses a listen address and refuses anything but the loopback interface (`localhost`
/// stands for 127.0.0.1).
pub fn check_listen(listen: &str) -> Result<SocketAddr> {
    let text = listen.trim();
    let text = match text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => text.to_string(),
    };
    let addr: SocketAddr = text.parse().map_err(|_| {
        AgentError::Config(format!(
            "--listen {listen:?}: expected an address like {DEFAULT_LISTEN}"
        ))
    })?;
    if !addr.ip().is_loopback() {
        return Err(AgentError::Config(format!(
            "--listen {listen:?}: the agent listens on the loopback interface only (127.0.0.1 or [::1]), never on the network"
        )));
    }
    Ok(addr)
}

/// Binds a loopback listen address (port 0: any free port).
pub async fn bind(listen: &str) -> Result<tokio::net::TcpListener> {
    let addr = check_listen(listen)?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| AgentError::Config(format!("listening on {addr}: {e}")))
}

/// Serves the agent on `listener` until `shutdown` completes.
pub async fn serve(
    agent: Agent,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(agent))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `ekey agent`: binds, prints `ekey agent listening on http://ADDR for ORIGIN`, reads
/// pairing codes from standard input, serves until `shutdown`.
pub async fn run(
    config: Config,
    listen: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let agent = Agent::new(config)?;
    let listener = bind(listen).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| AgentError::Config(format!("listening on {listen}: {e}")))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "ekey agent listening on http://{addr} for {}",
            agent.origin()
        );
        let _ = out.flush();
    }
    // The agent's window says at once whether a key is there (and where it looks).
    let sources = agent.inner.sources.clone();
    let found = tokio::task::spawn_blocking(move || tokens::open_all(&sources).len())
        .await
        .unwrap_or(0);
    {
        let mut out = std::io::stdout().lock();
        if found == 0 {
            let _ = writeln!(
                out,
                "{}\n{}",
                tokens::no_key_message(&agent.inner.sources, true),
                tokens::no_key_message(&agent.inner.sources, false)
            );
        } else {
            let _ = writeln!(out, "已检测到 {found} 把电子钥匙 / {found} key(s) present");
        }
        let _ = out.flush();
    }
    tracing::info!(%addr, origin = agent.origin(), server = %agent.inner.server, "agent serving");
    spawn_stdin_reader(agent.clone());
    serve(agent, listener, shutdown)
        .await
        .map_err(|e| AgentError::Internal(format!("serving: {e}")))
}

/// The default state directory: `$XDG_CONFIG_HOME/ekey-agent`, else
/// `$HOME/.config/ekey-agent`.
pub fn default_state_dir() -> Option<PathBuf> {
    let nonempty = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    nonempty("XDG_CONFIG_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| nonempty("HOME").map(|h| h.join(".config")))
        .map(|d| d.join("ekey-agent"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_on_loopback_only() {
        assert_eq!(
            check_listen("127.0.0.1:0").unwrap().to_string(),
            "127.0.0.1:0"
        );
        assert!(check_listen("[::1]:17480").is_ok());
        assert!(check_listen("localhost:17480").is_ok());
        for bad in ["0.0.0.0:17480", "192.168.1.2:80", "[::]:1", "nonsense"] {
            let e = check_listen(bad).unwrap_err();
            assert_eq!(e.code(), "ekey.agent.config", "{bad}");
        }
    }
}

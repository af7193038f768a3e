//! Passwords (argon2id), bearer sessions (random tokens, stored hashed, revocable) and the
//! extractor that turns a request into an authenticated actor.

use std::net::SocketAddr;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use base64::Engine;
use ekey_domain::request::{Actor, Role};
use ekey_store::Account;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// Hashes a password with argon2id and a random salt (PHC string). Slow on purpose: run it
/// on a blocking thread.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// Checks a password against a PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// Argon2 runs at most this many at a time: each holds 19 MiB for its run, so a crowd of
/// logins (or of guesses) cannot make the server allocate one block per request.
pub const ARGON2_AT_ONCE: usize = 4;
/// Callers that may wait for a turn; beyond them the answer is 503 at once.
const ARGON2_QUEUE: usize = 64;

static ARGON2_TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(ARGON2_AT_ONCE);
static ARGON2_WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// 503 `ekey.server.busy` (the answer carries `Retry-After`).
fn argon2_busy() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "ekey.server.busy",
        "服务器正忙，请稍后重试",
        "The server is busy; please retry in a few seconds",
    )
}

/// Runs `work` (an Argon2 computation) on a blocking thread when its turn comes: at most
/// [`ARGON2_AT_ONCE`] at a time, at most `ARGON2_QUEUE` waiting (for 10 s at most).
async fn argon2_turn<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    use std::sync::atomic::Ordering;
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            ARGON2_WAITING.fetch_sub(1, Ordering::SeqCst);
        }
    }
    if ARGON2_WAITING.fetch_add(1, Ordering::SeqCst) >= ARGON2_QUEUE + ARGON2_AT_ONCE {
        ARGON2_WAITING.fetch_sub(1, Ordering::SeqCst);
        return Err(argon2_busy());
    }
    let waiting = Waiting;
    let permit = tokio::time::timeout(std::time::Duration::from_secs(10), ARGON2_TURNS.acquire())
        .await
        .map_err(|_| argon2_busy())?
        .map_err(ApiError::internal)?;
    // The turn ends with the computation, not with the request: a caller that hangs up
    // does not free its turn while Argon2 still runs for it.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Argon2Job = Box::new(move || {
        let out = work();
        drop(permit);
        drop(waiting);
        let _ = tx.send(out);
    });
    argon2_workers()
        .send(job)
        .map_err(|_| ApiError::internal("the password workers stopped"))?;
    rx.await.map_err(ApiError::internal)
}

type Argon2Job = Box<dyn FnOnce() + Send>;

/// [`ARGON2_AT_ONCE`] threads of their own run the Argon2 computations: each memory block
/// is then taken and given back by the same few threads (and allocator arenas), so the
/// memory a crowd of logins leaves behind stays a few blocks, not one per blocking thread
/// that happened to run one.
fn argon2_workers() -> &'static std::sync::mpsc::SyncSender<Argon2Job> {
    static WORKERS: std::sync::OnceLock<std::sync::mpsc::SyncSender<Argon2Job>> =
        std::sync::OnceLock::new();
    WORKERS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Argon2Job>(ARGON2_AT_ONCE);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for n in 0..ARGON2_AT_ONCE {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("starting the password workers");
        }
        tx
    })
}

/// [`hash_password`] on a blocking thread, for handlers (one Argon2 turn).
pub async fn hash_password_off_thread(password: &str) -> Result<String, ApiError> {
    let password = zeroize::Zeroizing::new(password.to_string());
    argon2_turn(move || hash_password(&password))
        .await?
        .map_err(ApiError::internal)
}

/// [`verify_password`] on a blocking thread, for handlers (one Argon2 turn).
pub async fn verify_password_off_thread(password: &str, phc: &str) -> Result<bool, ApiError> {
    let password = zeroize::Zeroizing::new(password.to_string());
    let phc = phc.to_string();
    argon2_turn(move || verify_password(&password, &phc)).await
}

/// A fresh random token (256 bits, URL-safe base64).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a token: its SHA-256, hex. A database leak yields no usable token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The actor an account acts as.
pub fn actor_of(account: &Account) -> Actor {
    Actor {
        role: account.role,
        account_id: account.id.clone(),
        enterprise_id: account.enterprise_id.clone(),
        province: account.province.clone(),
    }
}

/// The caller's network address, as far as this instance can tell: the TCP peer, or, when
/// the peer is one of the configured `trusted_proxies`, the nearest address in
/// `X-Forwarded-For` that is not a trusted proxy. A header from anyone else is ignored, so
/// a client cannot choose its own address (and with it its login-failure count).
#[derive(Clone, Debug)]
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let Some(peer) = peer else {
            return Ok(ClientAddr("unknown".into()));
        };
        Ok(ClientAddr(client_address(
            &peer,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

/// The client behind `peer`: `peer` itself unless it is a trusted proxy.
pub fn client_address(peer: &str, headers: &HeaderMap, trusted: &[String]) -> String {
    let is_trusted = |a: &str| trusted.iter().any(|t| t == a);
    if !is_trusted(peer) {
        return peer.to_string();
    }
    let hops: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_string())
        .filter(|h| h.parse::<std::net::IpAddr>().is_ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|h| !is_trusted(h))
        .unwrap_or_else(|| peer.to_string())
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Auth {
    /// The account.
    pub account: Account,
    /// The account as a domain actor.
    pub actor: Actor,
    /// Hash of the bearer token used.
    pub token_hash: String,
    /// Network address.
    pub address: String,
}

impl Auth {
    /// An audit record of something this caller did to an object.
    pub fn audit(
        &self,
        at: chrono::DateTime<chrono::Utc>,
        action: &str,
        object_type: &str,
        object_id: &str,
        before: &str,
        after: &str,
    ) -> ekey_store::NewAudit {
        ekey_store::NewAudit {
            at,
            actor_id: self.account.id.clone(),
            actor_role: self.account.role.as_str().into(),
            address: self.address.clone(),
            action: action.into(),
            object_type: object_type.into(),
            object_id: object_id.into(),
            before: before.into(),
            after: after.into(),
        }
    }

    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.account.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden_role())
        }
    }
}

/// Name of the cookie that carries the session token of the web pages.
pub const SESSION_COOKIE: &str = "ekey_session";

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of a session (or of an anonymous visitor's seed cookie): a hash of the
/// secret cookie value, so it is the same on every instance and useless without the cookie.
pub fn csrf_token(seed: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"ekey-csrf\0");
    h.update(seed.as_bytes());
    hex::encode(&h.finalize()[..20])
}

/// Compares two strings in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Auth {
    /// The caller behind a session token, if the session is live.
    pub async fn from_token(
        state: &AppState,
        token: &str,
        address: String,
    ) -> Result<Option<Auth>, ApiError> {
        let hash = token_hash(token);
        let Some(account) = state
            .store
            .session_account(&hash, state.clock.now())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Auth {
            actor: actor_of(&account),
            account,
            token_hash: hash,
            address,
        }))
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    /// A bearer token; or, for the portal's own pages and scripts, the session cookie — on
    /// reads, and on writes only with the session's CSRF token in `X-CSRF-Token` (which
    /// another site can neither know nor send).
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = match bearer {
            Some(header) => header
                .strip_prefix("Bearer ")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(ApiError::unauthenticated)?
                .to_string(),
            None => {
                let token = cookie(&parts.headers, SESSION_COOKIE)
                    .ok_or_else(ApiError::unauthenticated)?
                    .to_string();
                let safe = matches!(
                    parts.method,
                    axum::http::Method::GET | axum::http::Method::HEAD
                );
                let csrf_ok = parts
                    .headers
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| same(v, &csrf_token(&token)));
                if !safe && !csrf_ok {
                    return Err(ApiError::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "ekey.auth.csrf",
                        "页面已过期或来源不明，请刷新页面后重试",
                        "The page expired or the request came from elsewhere; reload and retry",
                    ));
                }
                token
            }
        };
        let ClientAddr(address) = ClientAddr::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|e| match e {});
        Auth::from_token(state, &token, address)
            .await?
            .ok_or_else(ApiError::unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip_and_salted() {
        let a = hash_password("ekey-demo-2026").unwrap();
        let b = hash_password("ekey-demo-2026").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify_password("ekey-demo-2026", &a));
        assert!(!verify_password("ekey-demo-2027", &a));
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let t = new_token();
        assert_ne!(t, new_token());
        assert_eq!(token_hash(&t).len(), 64);
        assert_ne!(token_hash(&t), t);
    }
}

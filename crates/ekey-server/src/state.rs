//! Shared state of one server instance. Everything durable is in the store; what is kept
//! here (login failure counters, the wake-up bell of the outbox worker) may be lost at will.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ekey_domain::calendar::Calendar;
use ekey_domain::clock::Clock;
use ekey_store::Store;
use ekey_store::blob::BlobStore;
use tokio::sync::Notify;

use crate::config::Config;

/// Cheaply cloneable handle to the instance's state.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// The state itself.
pub struct Inner {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Uploaded files.
    pub blobs: Arc<dyn BlobStore>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Working-day calendar (replaced when an admin loads a year).
    pub calendar: RwLock<Calendar>,
    /// Configuration.
    pub config: Config,
    /// Rung after a transaction queued messages, so they leave at once.
    pub outbox_wake: Notify,
    /// Failed logins, for rate limiting.
    pub login_limiter: LoginLimiter,
    /// Deployment secrets (CA passphrase, provider master secret, PIN secret).
    pub secrets: crate::secrets::Secrets,
    /// The CA.
    pub ca: crate::ca::CaService,
    /// SMTP and SMS gateway (production transports).
    pub transports: crate::transport::Transports,
    /// This instance's name in claims shared with other instances (timers).
    pub instance_id: String,
    /// Fonts of the printable documents, loaded at the first document.
    pub fonts: std::sync::OnceLock<Arc<ekey_docs::Fonts>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The document fonts, loading them (once, off the async threads) on first use.
    pub async fn fonts(&self) -> Result<Arc<ekey_docs::Fonts>, ekey_docs::DocError> {
        if let Some(f) = self.fonts.get() {
            return Ok(f.clone());
        }
        let path = self.config.font.clone();
        let fonts = tokio::task::spawn_blocking(move || ekey_docs::Fonts::load(path.as_deref()))
            .await
            .expect("font loading panicked")?;
        tracing::info!(source = fonts.source(), "document fonts loaded");
        Ok(self.fonts.get_or_init(|| Arc::new(fonts)).clone())
    }

    /// Reads the calendar under its lock.
    pub fn with_calendar<T>(&self, f: impl FnOnce(&Calendar) -> T) -> T {
        let guard = self.calendar.read().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }
}

/// Counts failed logins per login name and per address within a window; refuses further
/// attempts once a limit is reached, until the window has passed.
pub struct LoginLimiter {
    window: Duration,
    per_login: usize,
    per_address: usize,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimiter {
    /// Five failures per login, twenty per address, in fifteen minutes.
    pub fn new() -> Self {
        LoginLimiter {
            window: Duration::from_secs(15 * 60),
            per_login: 5,
            per_address: 20,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn count(&self, map: &mut HashMap<String, Vec<Instant>>, key: &str) -> usize {
        let now = Instant::now();
        match map.get_mut(key) {
            Some(v) => {
                v.retain(|t| now.duration_since(*t) < self.window);
                v.len()
            }
            None => 0,
        }
    }

    /// Whether another attempt is allowed now.
    pub fn allowed(&self, login: &str, address: &str) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        self.count(&mut map, &format!("l:{login}")) < self.per_login
            && self.count(&mut map, &format!("a:{address}")) < self.per_address
    }

    /// Records a failure.
    pub fn failed(&self, login: &str, address: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.entry(format!("l:{login}")).or_default().push(now);
        map.entry(format!("a:{address}")).or_default().push(now);
    }

    /// Clears the login's failures after a success.
    pub fn succeeded(&self, login: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("l:{login}"));
    }
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new()
    }
}

//! Shared state of one server instance. Everything durable is in the store; what is kept
//! here (login failure counters, the wake-up bell of the outbox worker) may be lost at will.

use std::sync::{Arc, RwLock};

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
    /// Today in Asia/Shanghai by the instance's clock (dates typed by people are checked
    /// against it, e.g. a date of birth in an ID number).
    pub fn today(&self) -> chrono::NaiveDate {
        self.clock
            .now()
            .with_timezone(&ekey_domain::calendar::shanghai())
            .date_naive()
    }

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

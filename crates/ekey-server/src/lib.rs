//! The eKey server: JSON API, public lookups and background workers on top of the store.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod ca;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod demo;
pub mod documents;
pub mod edge;
pub mod error;
pub mod first_admin;
pub mod mailquota;
pub mod messages;
pub mod outbox;
pub mod papers;
pub mod receipt;
pub mod recount;
pub mod registration_notice;
pub mod reminders;
pub mod revoke;
pub mod routes;
pub mod secrets;
pub mod state;
pub mod throttle;
pub mod transport;
pub mod web;

use std::sync::{Arc, RwLock};

use anyhow::Context;
use ekey_domain::calendar::Calendar;
use ekey_domain::clock::{Clock, SystemClock};
use ekey_store::blob::ObjectBlobStore;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use config::Config;
pub use state::AppState;

/// Loads the built-in calendar plus any `holidays/<year>.json` files in the data directory
/// (an admin drops the State Council's new year there), warning about the current year when
/// it has no data.
pub fn load_calendar(config: &Config, now_year: i32) -> anyhow::Result<Calendar> {
    let mut calendar = Calendar::builtin();
    let dir = config.data_dir.join("holidays");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
        {
            let text = std::fs::read_to_string(&path)?;
            let year = calendar.load_year_json(&text).map_err(|e| {
                anyhow::anyhow!("{}: {}", path.display(), e.message(ekey_domain::Lang::En))
            })?;
            tracing::info!(year, file = %path.display(), "holiday data loaded");
        }
    }
    if !calendar.covers(now_year) {
        tracing::warn!(
            year = now_year,
            "no holiday data for this year: deadlines count weekends only"
        );
    }
    Ok(calendar)
}

/// Opens the store (migrating it), the blob store and the calendar: a ready instance.
pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // The store's crash points (`server.batch.before_commit`) abort like the server's own.
    ekey_store::set_fault_hook(ekey_token::fault::point);
    let store = ekey_store::open(&config.database_url)
        .await
        .with_context(|| format!("opening database {}", redact(&config.database_url)))?;
    store.migrate().await.context("migrating the database")?;
    let blobs = match config.s3_settings()? {
        None => ObjectBlobStore::local(config.data_dir.join("files")),
        Some(s3) => ObjectBlobStore::s3(&s3),
    }
    .context("opening the file storage")?;
    // A wrong bucket, endpoint or credentials stop the start, not the first upload.
    blobs
        .check()
        .await
        .context("checking the file storage (storage_url, s3_endpoint, AWS_* credentials)")?;
    tracing::info!(storage = blobs.describe(), "file storage");
    let blobs = Arc::new(blobs);
    let year = chrono::Datelike::year(
        &clock
            .now()
            .with_timezone(&ekey_domain::calendar::shanghai()),
    );
    let mut calendar = load_calendar(&config, year)?;
    cluster::apply_stored_holidays(store.as_ref(), &mut calendar)
        .await
        .context("reading the stored holiday years")?;
    // Secrets live in files beside the data (or in EKEY_* variables), never in the database.
    let secrets_dir = config.data_dir.join("secrets");
    let secrets = secrets::Secrets::load(&secrets_dir, true)?;
    if config.demo {
        secrets::Secrets::mark_demo(&secrets_dir)?;
    } else {
        let problems = secrets.production_problems(&secrets_dir, &config);
        if !problems.is_empty() {
            anyhow::bail!(
                "refusing to start in production mode (demo = false):\n  - {}\n\
                 (for a demonstration, run `ekey demo`)",
                problems.join("\n  - ")
            );
        }
    }
    let ca = ca::CaService::open(
        &config.data_dir.join("ca"),
        &secrets.ca_passphrase,
        &config.public_url(),
        true,
        clock.now(),
        match (&config.ca_pkcs11_module, &config.ca_pkcs11_token) {
            (Some(module), Some(token)) => Some((module.as_path(), token.as_str())),
            (Some(_), None) => {
                anyhow::bail!("ca_pkcs11_module needs ca_pkcs11_token (the HSM token label)")
            }
            _ => None,
        },
        &config.ca_algorithm,
    )?;
    let transports = transport::Transports::from_config(&config)?;
    Ok(AppState(Arc::new(state::Inner {
        ca,
        secrets,
        store,
        blobs,
        clock,
        calendar: RwLock::new(calendar),
        config,
        outbox_wake: Notify::new(),
        instance_id: cluster::new_instance_id(),
        fonts: std::sync::OnceLock::new(),
        transports,
    })))
}

/// Builds with the system clock.
pub async fn build_default(config: Config) -> anyhow::Result<AppState> {
    build(config, Arc::new(SystemClock)).await
}

/// Hides a password in a database URL for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Serves the instance on `listener` with its background workers until `shutdown` resolves.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let worker = outbox::spawn(state.clone());
    let crl_refresher = ca::spawn_crl_refresher(state.clone());
    let reminders = reminders::spawn(
        state.clone(),
        std::time::Duration::from_millis(state.config.reminder_poll_ms.max(50)),
    );
    let calendar_sync =
        cluster::spawn_calendar_sync(state.clone(), std::time::Duration::from_secs(5));
    let limits = connections::Limits::from_config(&state.config);
    let app = api::router(state);
    let result = connections::serve(listener, app, limits, shutdown).await;
    worker.abort();
    crl_refresher.abort();
    reminders.abort();
    calendar_sync.abort();
    result.context("serving HTTP")
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_password_only() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact("sqlite:./x.db"), "sqlite:./x.db");
    }
}

#[cfg(test)]
mod calendar_tests {
    use super::*;

    #[test]
    fn a_new_year_dropped_into_the_data_directory_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        assert!(!load_calendar(&config, 2027).unwrap().covers(2027));
        std::fs::create_dir_all(dir.path().join("holidays")).unwrap();
        std::fs::write(
            dir.path().join("holidays/2027.json"),
            r#"{"year": 2027, "papers": [], "days": [
                {"name": "元旦", "date": "2027-01-01", "isOffDay": true},
                {"name": "春节", "date": "2027-02-06", "isOffDay": false}
            ]}"#,
        )
        .unwrap();
        let calendar = load_calendar(&config, 2027).unwrap();
        assert!(calendar.covers(2027));
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(
            !calendar.is_working_day(d("2027-01-01")),
            "a Friday holiday"
        );
        assert!(
            calendar.is_working_day(d("2027-02-06")),
            "a make-up Saturday"
        );
        std::fs::write(dir.path().join("holidays/2028.json"), "not json").unwrap();
        assert!(
            load_calendar(&config, 2027).is_err(),
            "a broken file stops the start with its name"
        );
    }
}

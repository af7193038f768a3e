//! What several instances on one database share, beyond the rows of the workflow itself:
//! periodic jobs that run once across all instances (a claimed row in `timers`), and the
//! holiday calendar, which every instance reloads when an administrator stores a year.
//!
//! Sessions, the outbox (claimed with `FOR UPDATE SKIP LOCKED`), the CA's revocation
//! counter and the published CRL are in the database already; files are in the blob store.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use ekey_domain::calendar::Calendar;

use crate::state::AppState;

/// How long a claimed run may take before another instance may assume it died.
const TIMER_LEASE: Duration = Duration::from_secs(300);

/// A name for this instance, unique across restarts: host, process and a random part.
pub fn new_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}{}{}-{}",
        host,
        if host.is_empty() { "" } else { "-" },
        std::process::id(),
        &random[..8]
    )
}

/// Runs `job` when periodic job `name` is due and this instance claims it, then schedules
/// the next run `every` later. Returns whether this instance ran it.
pub async fn run_claimed<F, Fut>(
    state: &AppState,
    name: &str,
    every: Duration,
    job: F,
) -> Result<bool, ekey_store::StoreError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let now = state.clock.now();
    let lease = chrono::Duration::from_std(TIMER_LEASE).unwrap_or_default();
    if !state
        .store
        .claim_timer(name, &state.instance_id, now, now + lease)
        .await?
    {
        return Ok(false);
    }
    job().await;
    let done = state.clock.now();
    let next = now + chrono::Duration::from_std(every).unwrap_or_default();
    if !state
        .store
        .finish_timer(name, &state.instance_id, done, next)
        .await?
    {
        tracing::warn!(
            job = name,
            "a periodic run outlived its lease; another instance may have run it too"
        );
    }
    Ok(true)
}

/// Applies the holiday years stored in the database on top of `calendar`; a bad year is
/// skipped with a warning (it was checked when stored).
pub async fn apply_stored_holidays(
    store: &dyn ekey_store::Store,
    calendar: &mut Calendar,
) -> Result<(i64, i64), ekey_store::StoreError> {
    let version = store.holidays_version().await?;
    for y in store.holiday_years().await? {
        if let Err(e) = calendar.load_year_json(&y.data) {
            tracing::warn!(year = y.year, error = %e.message(ekey_domain::Lang::En), "stored holiday year");
        }
    }
    Ok(version)
}

/// Every `every`, reloads the calendar when the stored holiday years changed (on any
/// instance). Not claimed: every instance keeps its own calendar current.
pub fn spawn_calendar_sync(state: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The years stored before this instance started were applied by `build`.
        let mut seen = state.store.holidays_version().await.unwrap_or((-1, -1));
        loop {
            tokio::time::sleep(every).await;
            match state.store.holidays_version().await {
                Ok(v) if v == seen => {}
                Ok(_) => {
                    let year = chrono::Datelike::year(
                        &state
                            .clock
                            .now()
                            .with_timezone(&ekey_domain::calendar::shanghai()),
                    );
                    let mut calendar = match crate::load_calendar(&state.config, year) {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "reloading the calendar");
                            continue;
                        }
                    };
                    match apply_stored_holidays(state.store.as_ref(), &mut calendar).await {
                        Ok(v) => {
                            *state.calendar.write().unwrap_or_else(|e| e.into_inner()) = calendar;
                            tracing::info!(
                                "holiday calendar reloaded (changed by an administrator)"
                            );
                            seen = v;
                        }
                        Err(e) => tracing::warn!(error = %e, "reloading the calendar"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, at = %Utc::now(), "calendar version"),
            }
        }
    })
}

//! The outbox worker: delivers queued mail and SMS at least once, idempotently, with
//! exponential backoff and jitter, and a dead-letter state after too many failures.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ekey_store::{OutboxMessage, StoreError};
use rand::Rng;

use crate::config::MailTransport;
use crate::state::AppState;

/// Attempts before a message is given up as a dead letter.
pub const MAX_ATTEMPTS: i64 = 10;

/// Delay before the next attempt after `attempts` failures: 5 s doubling to at most an
/// hour, with up to 20 % jitter so a recovering server is not hit all at once.
pub fn backoff(attempts: i64) -> Duration {
    let base = 5u64.saturating_mul(1u64 << attempts.clamp(0, 16)).min(3600);
    let jitter = rand::rng().random_range(0..=base / 5);
    Duration::from_secs(base + jitter)
}

async fn deliver(state: &AppState, msg: &OutboxMessage) -> Result<(), String> {
    match state.config.mail_transport {
        // The dev mailbox is readable in demo mode only; anywhere else it keeps no secret.
        MailTransport::Dev if !state.config.demo => {
            let mut kept = msg.clone();
            if let Some(body) = crate::messages::redacted_after_delivery(&msg.subject, &msg.body) {
                kept.body = body;
            }
            state
                .store
                .dev_mailbox_put(&kept, state.clock.now())
                .await
                .map_err(|e| e.to_string())
        }
        MailTransport::Dev => state
            .store
            .dev_mailbox_put(msg, state.clock.now())
            .await
            .map_err(|e| e.to_string()),
        MailTransport::Log => {
            tracing::info!(
                channel = msg.channel.as_str(),
                to = %msg.recipient,
                subject = %msg.subject,
                "message delivered to log transport"
            );
            Ok(())
        }
        MailTransport::Smtp => state.transports.send(msg).await,
    }
}

/// Delivers what is due now; returns how many messages were handled.
pub async fn run_once(state: &AppState, owner: &str) -> Result<usize, ekey_store::StoreError> {
    let now = state.clock.now();
    let lease_until = now + chrono::Duration::seconds(60);
    let batch = state
        .store
        .claim_outbox(owner, now, lease_until, 50)
        .await?;
    for msg in &batch {
        // Crash point: the message leased to this worker, not sent.
        ekey_token::fault::point("server.outbox.before_send");
        match deliver(state, msg).await {
            Ok(()) => {
                // Crash point: accepted by the mail server or SMS gateway, not marked sent
                // (after the lease runs out it is sent again, with the same Message-ID).
                ekey_token::fault::point("server.outbox.after_send");
                // A secret the message carried (an unlock code) leaves the database in the
                // step that records the delivery.
                let kept = crate::messages::redacted_after_delivery(&msg.subject, &msg.body);
                mark_delivered(state, msg.id, owner, lease_until, kept.as_deref()).await?;
            }
            Err(error) => {
                let dead = msg.attempts >= MAX_ATTEMPTS;
                let retry =
                    now + chrono::Duration::from_std(backoff(msg.attempts)).unwrap_or_default();
                tracing::warn!(id = msg.id, attempts = msg.attempts, dead, %error, "delivery failed");
                state
                    .store
                    .outbox_failed(msg.id, owner, &error, retry, dead)
                    .await?;
            }
        }
    }
    Ok(batch.len())
}

/// Records a delivery, replacing the stored body with `kept` when given. While the database
/// is unreachable it tries again for as long as the lease lasts: giving up would send the
/// message a second time once the lease runs out.
async fn mark_delivered(
    state: &AppState,
    id: i64,
    owner: &str,
    lease_until: DateTime<Utc>,
    kept: Option<&str>,
) -> Result<(), StoreError> {
    loop {
        let done = match kept {
            Some(body) => {
                state
                    .store
                    .outbox_delivered_redacted(id, owner, Utc::now(), body)
                    .await
            }
            None => state.store.outbox_delivered(id, owner, Utc::now()).await,
        };
        match done {
            Ok(_) => return Ok(()),
            Err(StoreError::Unavailable(error))
                if Utc::now() + chrono::Duration::seconds(10) < lease_until =>
            {
                tracing::warn!(id, %error, "recording a delivery: database unavailable, trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs the worker until the process ends: woken after every commit that queued messages,
/// and on a timer for retries.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4());
        let poll = Duration::from_millis(state.config.outbox_poll_ms.max(50));
        loop {
            match run_once(&state, &owner).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox worker"),
            }
            tokio::select! {
                _ = state.outbox_wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) >= Duration::from_secs(5) && backoff(0) <= Duration::from_secs(6));
        assert!(backoff(3) >= Duration::from_secs(40));
        assert!(backoff(30) <= Duration::from_secs(3600 + 720));
    }
}

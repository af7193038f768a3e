//! The administrator's API, first part: the outbox (counts, dead letters, retry) and which
//! years the holiday calendar covers.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ekey_domain::request::Role;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::messages::rfc3339;
use crate::state::AppState;

/// A message given up after too many failures.
#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    /// Outbox id.
    pub id: i64,
    /// `email` or `sms`.
    pub channel: String,
    /// Address or mobile.
    pub recipient: String,
    /// Subject (empty for SMS).
    pub subject: String,
    /// Attempts made.
    pub attempts: i64,
    /// Queued at (RFC 3339).
    pub created_at: String,
    /// The last transport error.
    pub last_error: String,
}

/// The outbox at a glance.
#[derive(Serialize, ToSchema)]
pub struct OutboxOut {
    /// Waiting or being retried.
    pub pending: i64,
    /// Delivered.
    pub sent: i64,
    /// Given up.
    pub dead: i64,
    /// The latest dead letters (at most 200).
    pub dead_letters: Vec<DeadLetter>,
}

/// Outbox status and dead letters (administrator).
#[utoipa::path(get, path = "/api/v1/admin/outbox", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = OutboxOut), (status = 403, body = ErrorBody)))]
pub async fn outbox(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<OutboxOut>> {
    auth.require(&[Role::Admin])?;
    let counts = state.store.outbox_counts().await?;
    let dead = state.store.outbox_dead(200).await?;
    Ok(Json(OutboxOut {
        pending: counts.pending,
        sent: counts.sent,
        dead: counts.dead,
        dead_letters: dead
            .into_iter()
            .map(|(m, error)| DeadLetter {
                id: m.id,
                channel: m.channel.as_str().into(),
                recipient: m.recipient,
                subject: m.subject,
                attempts: m.attempts,
                created_at: rfc3339(m.created_at),
                last_error: error,
            })
            .collect(),
    }))
}

/// Put a dead letter back in the queue (administrator); it is sent at once.
#[utoipa::path(post, path = "/api/v1/admin/outbox/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    auth.require(&[Role::Admin])?;
    let now = state.clock.now();
    let audit = auth.audit(
        now,
        "outbox.retry",
        "outbox",
        &id.to_string(),
        "dead",
        "pending",
    );
    if state.store.outbox_retry(id, now, audit).await? {
        state.outbox_wake.notify_one();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "ekey.outbox.not_dead",
            "这条消息不在失败列表中（可能已重发或已送达）",
            "This message is not a dead letter (already retried or delivered)",
        ))
    }
}

//! The administrator's API, first part: the outbox (counts, dead letters, retry) and which
//! years the holiday calendar covers.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ekey_domain::request::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;

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

/// An agency's collection details.
#[derive(Deserialize, ToSchema)]
pub struct AgencyBody {
    /// Collection address.
    pub address: String,
    /// Window.
    pub window: String,
    /// Opening hours.
    pub hours: String,
    /// Hotline.
    pub hotline: String,
}

fn text(v: &str, field: &'static str) -> ApiResult<String> {
    let t = v.trim();
    if t.is_empty() {
        return Err(ekey_domain::error::DomainError::Required { field }.into());
    }
    if t.chars().count() > 200 {
        return Err(ekey_domain::error::DomainError::TooLong { field, max: 200 }.into());
    }
    Ok(t.to_string())
}

/// Change an agency's collection address, window, hours and hotline (administrator).
#[utoipa::path(put, path = "/api/v1/agencies/{province}", tag = "admin", security(("bearer" = [])),
    params(("province" = String, Path)), request_body = AgencyBody,
    responses((status = 200, body = super::public::AgencyOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_agency(
    State(state): State<AppState>,
    auth: Auth,
    Path(province): Path<String>,
    ApiJson(body): ApiJson<AgencyBody>,
) -> ApiResult<Json<super::public::AgencyOut>> {
    auth.require(&[Role::Admin])?;
    let current = state
        .store
        .agency(&province)
        .await?
        .ok_or_else(|| ApiError::not_found("ekey.agency.not_found"))?;
    let updated = ekey_store::Agency {
        address: text(&body.address, "address")?,
        window: text(&body.window, "window")?,
        hours: text(&body.hours, "hours")?,
        hotline: text(&body.hotline, "hotline")?,
        ..current.clone()
    };
    let audit = auth.audit(
        state.clock.now(),
        "agency.update",
        "agency",
        &province,
        &format!("{} {}", current.address, current.window),
        &format!("{} {}", updated.address, updated.window),
    );
    let a = state.store.update_agency(updated, audit).await?;
    let lang = crate::error::current_lang();
    Ok(Json(super::public::AgencyOut {
        province: a.province,
        name: lang.pick(&a.name_zh, &a.name_en).into(),
        address: a.address,
        window: a.window,
        hours: a.hours,
        hotline: a.hotline,
    }))
}

/// The years the calendar covers after an upload.
#[derive(Serialize, ToSchema)]
pub struct HolidaysOut {
    /// The year just loaded.
    pub year: i32,
    /// Every year with data.
    pub covered_years: Vec<i32>,
}

/// Load a year's holiday arrangement (administrator): the body is the year's JSON file in
/// the holiday-cn format. Checked before anything is kept; saved as
/// `<data_dir>/holidays/<year>.json` (other instances pick it up at their next start) and
/// used by this instance at once.
#[utoipa::path(put, path = "/api/v1/admin/holidays", tag = "admin", security(("bearer" = [])),
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, body = HolidaysOut), (status = 422, body = ErrorBody)))]
pub async fn upload_holidays(
    State(state): State<AppState>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<Json<HolidaysOut>> {
    auth.require(&[Role::Admin])?;
    let json = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.calendar.not_text",
            "节假日文件应为 UTF-8 编码的 JSON",
            "The holiday file must be UTF-8 JSON",
        )
    })?;
    // Checked on a copy first: a bad file changes nothing.
    let mut trial = state.with_calendar(|c| c.clone());
    let year = trial
        .load_year_json(json)
        .map_err(ekey_domain::error::DomainError::from)?;
    let dir = state.config.data_dir.join("holidays");
    std::fs::create_dir_all(&dir).map_err(ApiError::internal)?;
    let tmp = dir.join(format!(".{year}.json.tmp"));
    std::fs::write(&tmp, json).map_err(ApiError::internal)?;
    std::fs::rename(&tmp, dir.join(format!("{year}.json"))).map_err(ApiError::internal)?;
    let covered = trial.covered_years();
    *state.calendar.write().unwrap_or_else(|e| e.into_inner()) = trial;
    state
        .store
        .append_audit(auth.audit(
            state.clock.now(),
            "calendar.load",
            "calendar",
            &year.to_string(),
            "",
            &format!("{} bytes", json.len()),
        ))
        .await?;
    Ok(Json(HolidaysOut {
        year,
        covered_years: covered,
    }))
}

//! Public lookups (no login), health, the demo mailbox.

use axum::Json;
use axum::extract::State;

use super::ApiQuery;
use axum::http::StatusCode;
use ekey_domain::ident::CreditCode;
use ekey_domain::request::Status;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody, current_lang};
use crate::messages::rfc3339;
use crate::state::AppState;

/// Health.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// 200 when the database answers.
#[utoipa::path(get, path = "/healthz", tag = "public",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn healthz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    state.store.ping().await.map_err(|e| {
        tracing::error!(error = %e, "health check: database");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ekey.health.database",
            "数据库不可用",
            "Database unavailable",
        )
    })?;
    Ok(Json(Health {
        status: "ok".into(),
    }))
}

/// Where to collect a key.
#[derive(Serialize, ToSchema)]
pub struct CollectionOut {
    /// The agency.
    pub agency: String,
    /// Address.
    pub address: String,
    /// Window.
    pub window: String,
    /// Opening hours.
    pub hours: String,
    /// Hotline.
    pub hotline: String,
}

/// Result of the public query.
#[derive(Serialize, ToSchema)]
pub struct ResultOut {
    /// Request number.
    pub number: String,
    /// Status.
    pub status: String,
    /// Status in words.
    pub status_label: String,
    /// The key can be collected now.
    pub ready_for_collection: bool,
    /// Where.
    pub collection: CollectionOut,
    /// Last change (RFC 3339, +08:00).
    pub updated_at: String,
}

/// Query of the public result page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultQuery {
    /// Request number.
    pub number: String,
    /// Unified social credit code of the enterprise.
    pub credit_code: String,
}

fn no_match() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ekey.public.not_found",
        "未查到该申请：请核对申请编号和统一社会信用代码",
        "No request matches this number and credit code",
    )
}

/// 结果查询: where a request is and whether its key can be collected, from its number and
/// the enterprise's credit code. No login.
#[utoipa::path(get, path = "/api/v1/public/result", tag = "public", params(ResultQuery),
    responses((status = 200, body = ResultOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn result(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ResultQuery>,
) -> ApiResult<Json<ResultOut>> {
    let code = CreditCode::parse(&q.credit_code).map_err(|_| no_match())?;
    let number = q.number.trim().to_ascii_uppercase();
    if number.is_empty() || number.len() > 40 {
        return Err(no_match());
    }
    let r = state
        .store
        .request_by_number(&number)
        .await?
        .ok_or_else(no_match)?;
    let enterprise = state
        .store
        .enterprise(&r.enterprise_id)
        .await?
        .ok_or_else(no_match)?;
    if enterprise.credit_code != code.as_str() {
        return Err(no_match());
    }
    let agency = state
        .store
        .agency(&r.province)
        .await?
        .ok_or_else(no_match)?;
    let lang = current_lang();
    Ok(Json(ResultOut {
        number: r.number,
        status: r.status.as_str().into(),
        status_label: lang.pick(r.status.label_zh(), r.status.label_en()).into(),
        ready_for_collection: r.status == Status::ReadyForCollection,
        collection: CollectionOut {
            agency: lang.pick(&agency.name_zh, &agency.name_en).into(),
            address: agency.address,
            window: agency.window,
            hours: agency.hours,
            hotline: agency.hotline,
        },
        updated_at: rfc3339(r.updated_at),
    }))
}

/// An issuing agency.
#[derive(Serialize, ToSchema)]
pub struct AgencyOut {
    /// Province code.
    pub province: String,
    /// Name.
    pub name: String,
    /// Collection address.
    pub address: String,
    /// Window.
    pub window: String,
    /// Hours.
    pub hours: String,
    /// Hotline.
    pub hotline: String,
}

/// The 31 provincial issuing agencies and where to collect keys.
#[utoipa::path(get, path = "/api/v1/agencies", tag = "public", responses((status = 200, body = Vec<AgencyOut>)))]
pub async fn agencies(State(state): State<AppState>) -> ApiResult<Json<Vec<AgencyOut>>> {
    let lang = current_lang();
    Ok(Json(
        state
            .store
            .agencies()
            .await?
            .into_iter()
            .map(|a| AgencyOut {
                name: lang.pick(&a.name_zh, &a.name_en).into(),
                province: a.province,
                address: a.address,
                window: a.window,
                hours: a.hours,
                hotline: a.hotline,
            })
            .collect(),
    ))
}

/// A message in the demo mailbox.
#[derive(Serialize, ToSchema)]
pub struct MailOut {
    /// Email address or mobile number.
    pub to: String,
    /// Subject (empty for SMS).
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// When delivered (RFC 3339, +08:00).
    pub sent_at: String,
    /// email or sms.
    pub channel: String,
}

/// Demo only: every mail and SMS the system sent, newest last.
#[utoipa::path(get, path = "/api/v1/dev/mailbox", tag = "demo",
    responses((status = 200, body = Vec<MailOut>), (status = 404, body = ErrorBody)))]
pub async fn mailbox(State(state): State<AppState>) -> ApiResult<Json<Vec<MailOut>>> {
    if !state.config.demo {
        return Err(ApiError::not_found("ekey.not_found"));
    }
    Ok(Json(
        state
            .store
            .dev_mailbox()
            .await?
            .into_iter()
            .map(|m| MailOut {
                to: m.to,
                subject: m.subject,
                body: m.body,
                sent_at: rfc3339(m.sent_at),
                channel: m.channel.as_str().into(),
            })
            .collect(),
    ))
}

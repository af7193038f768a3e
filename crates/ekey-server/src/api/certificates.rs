//! The provider's certificate desk: search, revoke, and the CA's status (CRL age, what was
//! issued and revoked today).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Duration;
use ekey_ca::{RevocationReason, Serial};
use ekey_domain::calendar::shanghai;
use ekey_domain::request::Role;
use ekey_store::{CertificateRecord, Revocation, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiQuery};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::messages::rfc3339;
use crate::state::AppState;

/// A certificate as the provider sees it.
#[derive(Serialize, ToSchema)]
pub struct CertificateOut {
    /// Serial (hex).
    pub serial: String,
    /// Subject.
    pub subject: String,
    /// Issued (RFC 3339).
    pub issued_at: String,
    /// Valid until.
    pub not_after: Option<String>,
    /// Revoked at.
    pub revoked_at: Option<String>,
    /// RFC 5280 reason name.
    pub revocation_reason: Option<String>,
}

impl From<CertificateRecord> for CertificateOut {
    fn from(c: CertificateRecord) -> Self {
        CertificateOut {
            serial: c.serial,
            subject: c.subject,
            issued_at: rfc3339(c.issued_at),
            not_after: c.not_after.map(rfc3339),
            revoked_at: c.revoked_at.map(rfc3339),
            revocation_reason: c.revocation_reason,
        }
    }
}

/// Search terms.
#[derive(Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Serial (hex, colons allowed), credit code or login name.
    pub q: String,
}

/// Find certificates (provider).
#[utoipa::path(get, path = "/api/v1/certificates", tag = "ca", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = Vec<CertificateOut>), (status = 403, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<Vec<CertificateOut>>> {
    auth.require(&[Role::Provider])?;
    let q = q.q.trim();
    if q.is_empty() || q.chars().count() > 100 {
        return Ok(Json(Vec::new()));
    }
    let found = state.store.search_certificates(q, 100).await?;
    Ok(Json(found.into_iter().map(Into::into).collect()))
}

/// Why to revoke.
#[derive(Deserialize, ToSchema)]
pub struct RevokeBody {
    /// RFC 5280 reason in camelCase: keyCompromise, cessationOfOperation, superseded,
    /// affiliationChanged, …
    pub reason: String,
}

/// Revoke a certificate (provider); CRL and OCSP say so at once. Audited.
#[utoipa::path(post, path = "/api/v1/certificates/{serial}/revoke", tag = "ca", security(("bearer" = [])),
    params(("serial" = String, Path)), request_body = RevokeBody,
    responses((status = 200, body = CertificateOut), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    auth: Auth,
    Path(serial): Path<String>,
    ApiJson(body): ApiJson<RevokeBody>,
) -> ApiResult<Json<CertificateOut>> {
    auth.require(&[Role::Provider])?;
    let serial = Serial::from_hex(&serial).map_err(ApiError::from)?;
    let reason = RevocationReason::parse(body.reason.trim()).map_err(ApiError::from)?;
    let hex = serial.to_hex();
    let now = state.clock.now();
    let audit = auth.audit(now, "ca.revoke", "certificate", &hex, "", reason.as_str());
    let record = state
        .store
        .revoke(
            Revocation {
                serial: hex.clone(),
                reason: reason.as_str().into(),
                at: now,
            },
            audit,
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "ekey.certificate.not_found",
                format!("本 CA 没有签发过序列号为 {hex} 的证书"),
                format!("This CA never issued a certificate with serial {hex}"),
            ),
            StoreError::Duplicate(_) => ApiError::new(
                StatusCode::CONFLICT,
                "ekey.certificate.already_revoked",
                format!("证书 {hex} 已经吊销"),
                format!("Certificate {hex} is already revoked"),
            ),
            other => other.into(),
        })?;
    state.ca.forget_crl();
    Ok(Json(record.into()))
}

/// The CA at a glance.
#[derive(Serialize, ToSchema)]
pub struct CaStatusOut {
    /// When this instance made its current CRL (RFC 3339), if it has one.
    pub crl_made_at: Option<String>,
    /// Its nextUpdate.
    pub crl_next_update: Option<String>,
    /// Revocations recorded (all time).
    pub revocations: i64,
    /// Certificates issued since 00:00 today (Beijing time).
    pub issued_today: i64,
    /// Certificates revoked since 00:00 today.
    pub revoked_today: i64,
    /// The OCSP responder's certificate is valid now (it signs every answer).
    pub ocsp_answering: bool,
    /// Until when the OCSP responder's certificate is valid.
    pub ocsp_certificate_not_after: String,
    /// Until when the issuing CA is valid.
    pub issuing_not_after: String,
}

/// CA status (provider, admin).
#[utoipa::path(get, path = "/api/v1/ca/status", tag = "ca", security(("bearer" = [])),
    responses((status = 200, body = CaStatusOut), (status = 403, body = ErrorBody)))]
pub async fn status(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<CaStatusOut>> {
    auth.require(&[Role::Provider, Role::Admin])?;
    let now = state.clock.now();
    // Make sure there is a current CRL (this is what a client would download).
    state.ca.crl(state.store.as_ref(), now).await?;
    let made = state.ca.crl_made_at();
    let hours = i64::from(state.ca.authority().config().crl_next_update_hours);
    let (_, revocations) = state.store.ca_state().await?;
    let midnight = now
        .with_timezone(&shanghai())
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .and_then(|d| d.and_local_timezone(shanghai()).single())
        .map(|d| d.to_utc())
        .unwrap_or(now);
    let (issued_today, revoked_today) = state.store.certificate_counts(midnight).await?;
    let authority = state.ca.authority();
    Ok(Json(CaStatusOut {
        crl_made_at: made.map(rfc3339),
        crl_next_update: made.map(|m| rfc3339(m + Duration::hours(hours))),
        revocations,
        issued_today,
        revoked_today,
        ocsp_answering: authority.ocsp_cert_not_after() > now,
        ocsp_certificate_not_after: rfc3339(authority.ocsp_cert_not_after()),
        issuing_not_after: rfc3339(authority.issuing_not_after()),
    }))
}

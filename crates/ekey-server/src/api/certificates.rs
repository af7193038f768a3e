//! The provider's certificate desk: search, issue from a CSR, revoke, and the CA's status
//! (CRL age, what was issued and revoked today).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use ekey_ca::{RevocationReason, Serial};
use ekey_domain::calendar::shanghai;
use ekey_domain::error::DomainError;
use ekey_domain::ident::CreditCode;
use ekey_domain::request::Role;
use ekey_store::{CertificateRecord, StoreError};
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
#[into_params(parameter_in = Query)]
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

/// A certificate request to sign (provider).
#[derive(Deserialize, ToSchema)]
pub struct IssueBody {
    /// The PKCS#10 request: PEM (`CERTIFICATE REQUEST`) or the DER in base64. Its
    /// commonName and serialNumber, when present, must be the enterprise name and credit code.
    pub csr: String,
    /// Unified social credit code of the enterprise (18 characters).
    pub credit_code: String,
    /// Enterprise name, as it goes into the certificate (O and CN).
    pub enterprise_name: String,
    /// The client's idempotency key (1–128 characters): the same order always gives the same
    /// certificate, never a second one.
    pub order: String,
}

/// A certificate issued from a CSR.
#[derive(Serialize, ToSchema)]
pub struct IssuedOut {
    /// Serial (hex).
    pub serial: String,
    /// The certificate, PEM.
    pub certificate: String,
    /// Valid from (RFC 3339).
    pub not_before: String,
    /// Valid until (RFC 3339).
    pub not_after: String,
}

/// Longest order key accepted.
const MAX_ORDER_CHARS: usize = 128;

fn bad_order(zh: &str, en: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.certificate.order",
        format!("订单号（order）{zh}"),
        format!("The order key {en}"),
    )
}

/// A refused CSR: 400 with the CA's code (`ekey.ca.csr_malformed`, `…csr_signature`,
/// `…csr_key_unsupported`) and its message.
fn bad_csr(e: ekey_ca::CaError) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        ..ApiError::from(e)
    }
}

/// The CSR bytes: PEM as given, otherwise base64 of the DER (whitespace ignored).
fn csr_bytes(text: &str) -> Result<Vec<u8>, ApiError> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return Ok(text.as_bytes().to_vec());
    }
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| {
            bad_csr(ekey_ca::CaError::CsrMalformed {
                detail: format!("neither PEM nor base64 DER: {e}"),
            })
        })
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Issue a certificate from a CSR (provider): once per `order`, durably (serial reserved in
/// the database before signing, certificate stored, audited). 201 with the new certificate;
/// 200 with the same certificate when the order was issued before. Nothing is stored when
/// the request is refused.
#[utoipa::path(post, path = "/api/v1/certificates", tag = "ca", security(("bearer" = [])),
    request_body = IssueBody,
    responses((status = 201, body = IssuedOut, description = "issued now"),
              (status = 200, body = IssuedOut, description = "the order was issued before: the same certificate"),
              (status = 400, body = ErrorBody, description = "the CSR is malformed, its signature does not verify, or its key is not supported"),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "the order was issued for another key or enterprise"),
              (status = 422, body = ErrorBody, description = "credit code, name or order invalid, or the CSR names another enterprise")))]
pub async fn issue(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<IssueBody>,
) -> ApiResult<(StatusCode, Json<IssuedOut>)> {
    auth.require(&[Role::Provider])?;
    let order = body.order.trim();
    if order.is_empty() {
        return Err(bad_order("不能为空", "must not be empty"));
    }
    if order.chars().count() > MAX_ORDER_CHARS || order.chars().any(char::is_control) {
        return Err(bad_order(
            &format!("最多 {MAX_ORDER_CHARS} 个字符，且不能含控制字符"),
            &format!("has at most {MAX_ORDER_CHARS} characters and no control characters"),
        ));
    }
    // At most 64 characters (X.520 ub-name) and no control characters: refused here, before
    // anything is reserved, rather than by the CA after.
    let name = super::required_text(&body.enterprise_name, "enterprise_name", 64)?;
    if name.chars().any(char::is_control) {
        return Err(ekey_ca::CaError::NameInvalid {
            field: "enterprise_name",
            detail: "control characters".into(),
        }
        .into());
    }
    let code = CreditCode::parse(&body.credit_code).map_err(DomainError::from)?;
    let csr = ekey_ca::parse_csr(&csr_bytes(&body.csr)?).map_err(bad_csr)?;
    csr.check_subject(&name, code.as_str())?;

    // Whole milliseconds, as the database keeps them: a record reserved by this call carries
    // exactly this time.
    let now = state.clock.now();
    let now = DateTime::<Utc>::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    let record = state
        .ca
        .issue_for_order(
            state.store.as_ref(),
            &format!("api:{order}"),
            csr.spki_der.clone(),
            &name,
            code.as_str(),
            None,
            now,
            auth.audit(now, "ca.issue_api", "certificate", "", "", ""),
        )
        .await?;
    let der = record
        .der
        .as_deref()
        .ok_or_else(|| ApiError::internal("certificate not signed"))?;
    // The order may have been used before, for another key or enterprise: say so rather
    // than hand over a certificate that is not for this CSR.
    let issued = state
        .ca
        .authority()
        .check_issued(der)
        .map_err(|e| ApiError::internal(e.code()))?;
    if issued.spki_der != csr.spki_der || record.subject != format!("{name} {code}") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ekey.certificate.order_conflict",
            format!("订单号 {order} 已用于为其他密钥或企业签发证书，请换用新的订单号"),
            format!(
                "Order {order} was already issued for another key or enterprise; use a new order key"
            ),
        ));
    }
    let created = record.issued_at == now;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(IssuedOut {
            serial: record.serial.clone(),
            certificate: pem("CERTIFICATE", der),
            not_before: rfc3339(issued.not_before),
            not_after: rfc3339(issued.not_after),
        }),
    ))
}

/// Why to revoke.
#[derive(Deserialize, ToSchema)]
pub struct RevokeBody {
    /// RFC 5280 reason in camelCase: keyCompromise, cessationOfOperation, superseded,
    /// affiliationChanged, …
    pub reason: String,
}

/// Revoke a certificate (provider); CRL and OCSP say so at once. When it is a key's current
/// certificate, the key is revoked too, its request's history shows it and the enterprise
/// is told by mail, in the same transaction. Audited. `removeFromCRL` and `certificateHold`
/// are refused (422 `ekey.ca.reason_not_allowed`).
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
    let reason =
        RevocationReason::parse_for_revocation(body.reason.trim()).map_err(ApiError::from)?;
    let hex = serial.to_hex();
    let now = state.clock.now();
    let audit = auth.audit(now, "ca.revoke", "certificate", &hex, "", reason.as_str());
    let record = crate::revoke::revoke_by_hand(&state, &hex, reason, now, &auth.account.id, audit)
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
    /// The last CRL regeneration failed (the last good CRL is served meanwhile): when
    /// (RFC 3339), the error's code and what failed. Null when the CRL is current.
    pub crl_failure: Option<CrlFailureOut>,
    /// The root's ARL (`/crl/root.crl`): its CRL number and nextUpdate, when published.
    pub root_crl_number: Option<u64>,
    /// nextUpdate of the root's ARL (RFC 3339).
    pub root_crl_next_update: Option<String>,
    /// What needs the operator about the root's ARL (missing, unreadable, expiring within
    /// 30 days, expired: sign a new one with `ekey ca root-crl`); null when all is well.
    pub root_crl_problem: Option<String>,
}

/// A CRL regeneration that failed.
#[derive(Serialize, ToSchema)]
pub struct CrlFailureOut {
    /// When (RFC 3339).
    pub at: String,
    /// Stable error code, e.g. `ekey.ca.signer`.
    pub code: String,
    /// What failed, in the caller's language.
    pub message: String,
}

/// CA status (provider, admin).
#[utoipa::path(get, path = "/api/v1/ca/status", tag = "ca", security(("bearer" = [])),
    responses((status = 200, body = CaStatusOut), (status = 403, body = ErrorBody)))]
pub async fn status(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<CaStatusOut>> {
    auth.require(&[Role::Provider, Role::Admin])?;
    let now = state.clock.now();
    // Make sure there is a current CRL (this is what a client would download). A failure
    // is shown below, never instead of the status.
    if let Err(e) = state.ca.crl(state.store.as_ref(), now).await {
        tracing::error!(error = %e, "CA status: no CRL could be made");
    }
    let lang = crate::error::current_lang();
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
    let root_crl = state.ca.root_crl();
    let root_crl_problem = match &root_crl {
        None => Some(lang.pick(
            "根 CA 的 CRL（ARL）尚未发布：请用根密钥执行 ekey ca root-crl。",
            "The root CA's CRL (ARL) is not published: sign one with the root key (ekey ca root-crl).",
        ).to_string()),
        Some(Err(e)) => Some(e.message(lang)),
        Some(Ok(arl)) if arl.next_update <= now => Some(lang.pick(
            "根 CA 的 CRL（ARL）已过期：请立即用根密钥执行 ekey ca root-crl。",
            "The root CA's CRL (ARL) has expired: sign a new one with the root key now (ekey ca root-crl).",
        ).to_string()),
        Some(Ok(arl)) if arl.next_update - now < Duration::days(30) => Some(lang.pick(
            "根 CA 的 CRL（ARL）将在 30 天内过期：请安排用根密钥执行 ekey ca root-crl。",
            "The root CA's CRL (ARL) expires within 30 days: plan to sign a new one with the root key (ekey ca root-crl).",
        ).to_string()),
        Some(Ok(_)) => None,
    };
    let root_crl = root_crl.and_then(Result::ok);
    Ok(Json(CaStatusOut {
        root_crl_number: root_crl.as_ref().map(|a| a.number),
        root_crl_next_update: root_crl.as_ref().map(|a| rfc3339(a.next_update)),
        root_crl_problem,
        crl_made_at: made.map(rfc3339),
        crl_next_update: made.map(|m| rfc3339(m + Duration::hours(hours))),
        revocations,
        issued_today,
        revoked_today,
        ocsp_answering: authority.ocsp_cert_not_after() > now,
        ocsp_certificate_not_after: rfc3339(authority.ocsp_cert_not_after()),
        issuing_not_after: rfc3339(authority.issuing_not_after()),
        crl_failure: state.ca.crl_failure().map(|f| CrlFailureOut {
            at: rfc3339(f.at),
            code: f.code.into(),
            message: lang.pick(&f.zh, &f.en).to_string(),
        }),
    }))
}

//! What a key proves through the local agent (docs/agent.md): certificate login, the
//! renewal (one certificate per approval, installed and confirmed by the key) and the end
//! of an unlock. The key signs the messages of [`ekey_domain::keyproof`]; here they are
//! rebuilt and checked against certificates of our own CA and our records.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::Duration;
use ekey_domain::key::KeyState;
use ekey_domain::keyproof;
use ekey_domain::request::{Action, Actor, Kind, Role, Status};
use ekey_store::{
    Batch, CertificateRecord, KeyChange, KeyRecord, LoginChallenge, NewAudit, RenewalChange,
    RenewalRecord, RequestFilter, RequestRecord, Revocation, StoreError,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::ApiJson;
use crate::auth::{Auth, ClientAddr, SESSION_COOKIE, cookie};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::messages::rfc3339;
use crate::state::AppState;

use super::requests::{act_as, visible};

/// How long a login challenge can be used.
const CHALLENGE_TTL: Duration = Duration::minutes(5);

/// Unexpired challenges one client address may hold (so at most this many per
/// [`CHALLENGE_TTL`]): plenty for an office behind one address, and a bound on the table.
pub const MAX_LIVE_CHALLENGES_PER_ADDRESS: i64 = 60;

fn unauthorized(code: &'static str, zh: &str, en: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, zh, en)
}

fn challenge_invalid() -> ApiError {
    unauthorized(
        "ekey.keylogin.challenge_invalid",
        "登录挑战无效、已使用或已过期，请重新点击“使用电子钥匙登录”",
        "The login challenge is unknown, used or expired; start the key login again",
    )
}

fn certificate_unknown() -> ApiError {
    unauthorized(
        "ekey.keylogin.certificate_unknown",
        "钥匙中的证书不是本系统签发的，无法用于登录",
        "The certificate on the key was not issued by this system",
    )
}

fn signature_invalid() -> ApiError {
    unauthorized(
        "ekey.keylogin.signature_invalid",
        "钥匙签名验证失败，请重新插入钥匙后再试",
        "The key's signature does not verify; reinsert the key and try again",
    )
}

fn bad_encoding(field: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.keylogin.encoding",
        format!("{field} 不是有效的 base64 编码"),
        format!("{field} is not valid base64"),
    )
}

fn b64(field: &str, v: &str) -> ApiResult<Vec<u8>> {
    let cleaned: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    if cleaned.is_empty() || cleaned.len() > 64 * 1024 {
        return Err(bad_encoding(field));
    }
    STANDARD.decode(cleaned).map_err(|_| bad_encoding(field))
}

/// What the browser that asked for a challenge is: SHA-256 of its anonymous seed cookie
/// (or its session cookie); empty for callers without cookies (the agent, scripts).
pub(crate) fn browser_binding(headers: &HeaderMap) -> String {
    cookie(headers, crate::web::SEED_COOKIE)
        .or_else(|| cookie(headers, SESSION_COOKIE))
        .map(|v| hex::encode(Sha256::digest(v.as_bytes())))
        .unwrap_or_default()
}

fn portal_origin(state: &AppState) -> String {
    state.config.public_url().trim_end_matches('/').to_string()
}

/// A one-time login challenge.
#[derive(Serialize, ToSchema)]
pub struct ChallengeOut {
    /// Give it back with the signature.
    pub id: String,
    /// What the key signs (inside `keyproof::login_message`).
    pub challenge: String,
    /// Unusable afterwards (5 minutes).
    pub expires_at: String,
}

/// A one-time challenge for a certificate login (5 minutes, single use; bound to the
/// browser when it carries the portal's cookie). At most 60 unexpired ones per client
/// address; expired ones are deleted as new ones are made.
#[utoipa::path(post, path = "/api/v1/key-login/challenges", tag = "keys",
    responses((status = 201, body = ChallengeOut),
              (status = 429, description = "too many challenges from this address", body = ErrorBody)))]
pub async fn create_challenge(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<ChallengeOut>)> {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let now = state.clock.now();
    let c = LoginChallenge {
        id: uuid::Uuid::new_v4().to_string(),
        challenge: URL_SAFE_NO_PAD.encode(bytes),
        seed_hash: browser_binding(&headers),
        created_at: now,
        expires_at: now + CHALLENGE_TTL,
        used_at: None,
    };
    let made = state
        .store
        .create_login_challenge_from(
            c.clone(),
            &crate::throttle::address_bucket(&address),
            MAX_LIVE_CHALLENGES_PER_ADDRESS,
        )
        .await?;
    if !made {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ekey.keylogin.rate_limited",
            "登录挑战请求过于频繁，请 5 分钟后再试",
            "Too many key-login challenges from this address; try again in 5 minutes",
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(ChallengeOut {
            id: c.id,
            challenge: c.challenge,
            expires_at: rfc3339(c.expires_at),
        }),
    ))
}

/// A certificate login: the challenge signed by the key.
#[derive(Deserialize, ToSchema)]
pub struct KeyLoginBody {
    /// The challenge's id.
    pub challenge_id: String,
    /// The key's certificate, base64 of the DER.
    pub certificate: String,
    /// ECDSA signature (DER, base64) of `keyproof::login_message(origin, challenge)`.
    pub signature: String,
}

/// A session opened with a key.
#[derive(Serialize, ToSchema)]
pub struct KeySessionOut {
    /// Bearer token.
    pub token: String,
    /// Always `enterprise`.
    pub role: String,
    /// The key logged in with.
    pub key_id: String,
    /// Its certificate (lower-case hex).
    pub certificate_serial: String,
    /// Session end.
    pub expires_at: String,
}

/// A key's certificate checked, with the key it belongs to.
pub(crate) struct Proven {
    /// Our record of it.
    pub record: CertificateRecord,
    /// The key holding it (its current certificate, or the new one of a renewal).
    pub key: KeyRecord,
}

/// Checks a certificate a key presents — ours, the very one we issued, not revoked, inside
/// its validity — finds its key, and checks the signature over `message(key)`.
pub(crate) async fn prove(
    state: &AppState,
    certificate_b64: &str,
    signature_b64: &str,
    message: impl FnOnce(&KeyRecord) -> Vec<u8>,
) -> ApiResult<Proven> {
    let der = b64("certificate", certificate_b64)?;
    let signature = b64("signature", signature_b64)?;
    let presented = state
        .ca
        .authority()
        .check_issued(&der)
        .map_err(|_| certificate_unknown())?;
    let record = state
        .store
        .certificate(&presented.serial_hex)
        .await?
        .filter(|c| c.der.as_deref() == Some(&der[..]))
        .ok_or_else(certificate_unknown)?;
    if record.revoked_at.is_some() {
        return Err(unauthorized(
            "ekey.keylogin.certificate_revoked",
            "钥匙中的证书已被吊销，不能再用于登录",
            "The certificate on the key is revoked",
        ));
    }
    let now = state.clock.now();
    if now < presented.not_before || now > presented.not_after {
        return Err(unauthorized(
            "ekey.keylogin.certificate_expired",
            "钥匙中的证书不在有效期内（已过期）；如需继续使用，请申请证书更新",
            "The certificate on the key is outside its validity (expired)",
        ));
    }
    let key = match state.store.key_by_certificate(&record.serial).await? {
        Some(k) => Some(k),
        None => match state.store.renewal_by_new_serial(&record.serial).await? {
            Some(r) => state.store.key(&r.key_id).await?,
            None => None,
        },
    }
    .ok_or_else(certificate_unknown)?;
    ekey_ca::verify_signature(
        &presented.spki_der,
        presented.algorithm,
        &message(&key),
        &signature,
    )
    .map_err(|_| signature_invalid())?;
    Ok(Proven { record, key })
}

/// Log in with the key: the challenge signed through the agent. Opens a session of the
/// enterprise owning the key that remembers the key.
#[utoipa::path(post, path = "/api/v1/key-login", tag = "keys", request_body = KeyLoginBody,
    responses((status = 200, body = KeySessionOut), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn key_login(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<KeyLoginBody>,
) -> ApiResult<Json<KeySessionOut>> {
    key_login_for(&state, address, &browser_binding(&headers), body)
        .await
        .map(Json)
}

/// [`key_login`] for a caller identified by `binding` (see [`browser_binding`]).
pub(crate) async fn key_login_for(
    state: &AppState,
    address: String,
    binding: &str,
    body: KeyLoginBody,
) -> ApiResult<KeySessionOut> {
    if uuid::Uuid::parse_str(&body.challenge_id).is_err() {
        return Err(challenge_invalid());
    }
    let now = state.clock.now();
    let challenge = state
        .store
        .login_challenge(&body.challenge_id)
        .await?
        .filter(|c| c.used_at.is_none() && c.expires_at > now)
        .ok_or_else(challenge_invalid)?;
    if !challenge.seed_hash.is_empty() && challenge.seed_hash != binding {
        return Err(challenge_invalid());
    }
    // One attempt per challenge: used before anything else is checked, so neither a
    // replay nor a second guess gets through.
    if !state.store.use_login_challenge(&challenge.id, now).await? {
        return Err(challenge_invalid());
    }
    let origin = portal_origin(state);
    let proven = prove(state, &body.certificate, &body.signature, |_| {
        keyproof::login_message(&origin, &challenge.challenge)
    })
    .await;
    let proven = match proven {
        Ok(p) => p,
        Err(e) => {
            state
                .store
                .append_audit(NewAudit {
                    at: now,
                    actor_role: "anonymous".into(),
                    address: address.clone(),
                    action: "session.key_failed".into(),
                    object_type: "certificate".into(),
                    object_id: e.code.into(),
                    ..Default::default()
                })
                .await?;
            return Err(e);
        }
    };
    if proven.key.state != KeyState::Active {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "ekey.keylogin.key_inactive",
            format!(
                "这把钥匙当前状态为“{}”，不能用于登录",
                proven.key.state.label_zh()
            ),
            format!(
                "This key is {}; it cannot log in",
                proven.key.state.as_str()
            ),
        ));
    }
    let account = state
        .store
        .enterprise_account(&proven.key.enterprise_id)
        .await?
        .filter(|a| a.active)
        .ok_or_else(certificate_unknown)?;
    let (token, expires) = super::accounts::open_session(
        state,
        &account,
        Some(proven.key.id.clone()),
        NewAudit {
            address,
            action: "session.create_with_key".into(),
            object_type: "key".into(),
            object_id: proven.key.id.clone(),
            after: proven.record.serial.clone(),
            ..Default::default()
        },
    )
    .await?;
    Ok(KeySessionOut {
        token,
        role: Role::Enterprise.as_str().into(),
        key_id: proven.key.id,
        certificate_serial: proven.record.serial,
        expires_at: rfc3339(expires),
    })
}

// ------------------------------------------------------------------------ renewal --

/// One approved renewal, as the key and the portal see it.
#[derive(Serialize, ToSchema)]
pub struct RenewalOut {
    /// The renewal request.
    pub request_id: String,
    /// Its number.
    pub number: String,
    /// The key being renewed.
    pub key_id: String,
    /// Its login name.
    pub login_name: String,
    /// The certificate being replaced.
    pub old_serial: String,
    /// The new certificate, once issued.
    pub new_serial: Option<String>,
    /// `approved` (nothing issued yet), `issued`, `confirmed` or `expired`.
    pub state: String,
    /// When the renewal can no longer be run.
    pub expires_at: String,
}

/// The renewal as it stands at `now`: one past its expiry is `expired` even before the
/// background worker recorded it, so no page offers a step that can only fail.
fn renewal_out(
    r: &RequestRecord,
    key: &KeyRecord,
    rec: &RenewalRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> RenewalOut {
    let lapsed = r.status == Status::Expired
        || (matches!(rec.state.as_str(), "approved" | "issued") && now > rec.expires_at);
    RenewalOut {
        request_id: r.id.clone(),
        number: r.number.clone(),
        key_id: rec.key_id.clone(),
        login_name: key.login_name.clone(),
        old_serial: rec.old_serial.clone(),
        new_serial: rec.new_serial.clone(),
        state: if lapsed {
            "expired".into()
        } else {
            rec.state.clone()
        },
        expires_at: rfc3339(rec.expires_at),
    }
}

fn renewal_error(status: StatusCode, code: &'static str, zh: &str, en: &str) -> ApiError {
    ApiError::new(status, code, zh, en)
}

fn expired() -> ApiError {
    renewal_error(
        StatusCode::GONE,
        "ekey.renewal.expired",
        "这项证书更新已过期，钥匙继续使用原证书；如需更新请重新申请",
        "This renewal has expired; the key keeps its certificate. Apply again to renew",
    )
}

/// The key a renewal request is for: the enterprise's live key under its login name.
async fn key_of(state: &AppState, r: &RequestRecord) -> ApiResult<KeyRecord> {
    let login_name = r.login_name.as_deref().unwrap_or_default();
    state
        .store
        .keys_by_login_name(login_name)
        .await?
        .into_iter()
        .find(|k| k.enterprise_id == r.enterprise_id && !k.state.is_final())
        .ok_or_else(|| {
            renewal_error(
                StatusCode::CONFLICT,
                "ekey.renewal.no_key",
                "找不到这项更新申请对应的钥匙",
                "No key found for this renewal request",
            )
        })
}

/// The renewal record of an approved renewal request, created on first use.
async fn record_of(state: &AppState, r: &RequestRecord) -> ApiResult<(KeyRecord, RenewalRecord)> {
    if let Some(rec) = state.store.renewal(&r.id).await? {
        let key = state
            .store
            .key(&rec.key_id)
            .await?
            .ok_or_else(|| ApiError::internal("renewal without its key"))?;
        return Ok((key, rec));
    }
    let key = key_of(state, r).await?;
    let old_serial = key.certificate_serial.clone().ok_or_else(|| {
        renewal_error(
            StatusCode::CONFLICT,
            "ekey.renewal.no_key",
            "这把钥匙还没有证书，无法更新",
            "This key has no certificate to renew",
        )
    })?;
    let now = state.clock.now();
    let rec = state
        .store
        .start_renewal(RenewalRecord {
            request_id: r.id.clone(),
            key_id: key.id.clone(),
            old_serial,
            new_serial: None,
            state: "approved".into(),
            // The approval is the request's last change.
            created_at: now,
            expires_at: r.updated_at + Duration::days(state.config.renewal_ttl_days),
            issued_at: None,
            confirmed_at: None,
            old_revoked_at: None,
        })
        .await?;
    Ok((key, rec))
}

/// The key of the caller's session, when it was opened with a key.
async fn session_key(state: &AppState, auth: &Auth) -> ApiResult<Option<String>> {
    Ok(state.store.session_key(&auth.token_hash).await?)
}

fn key_session_required() -> ApiError {
    renewal_error(
        StatusCode::FORBIDDEN,
        "ekey.renewal.key_session_required",
        "请插入要更新的钥匙，并使用该钥匙登录后再进行证书更新",
        "Log in with the key being renewed first",
    )
}

/// A renewal request of the caller that the caller's key may run.
async fn renewal_request(
    state: &AppState,
    auth: &Auth,
    id: &str,
) -> ApiResult<(RequestRecord, KeyRecord, RenewalRecord)> {
    auth.require(&[Role::Enterprise])?;
    let key_id = session_key(state, auth)
        .await?
        .ok_or_else(key_session_required)?;
    let r = visible(state, auth, id).await?;
    if r.kind != Kind::Renewal {
        return Err(ApiError::not_found("ekey.request.not_found"));
    }
    if r.status != Status::Approved && state.store.renewal(&r.id).await?.is_none() {
        return Err(renewal_error(
            StatusCode::CONFLICT,
            "ekey.renewal.not_approved",
            "这项更新申请尚未通过审核",
            "This renewal request is not approved",
        ));
    }
    let (key, rec) = record_of(state, &r).await?;
    if rec.key_id != key_id {
        return Err(key_session_required());
    }
    Ok((r, key, rec))
}

/// The caller's renewals: approved ones still to run and those the key already finished
/// (with a key session: only the logged-in key's).
#[utoipa::path(get, path = "/api/v1/renewals", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = Vec<RenewalOut>), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn list_renewals(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Vec<RenewalOut>>> {
    auth.require(&[Role::Enterprise])?;
    let key_id = session_key(&state, &auth).await?;
    let requests = state
        .store
        .list_requests(&RequestFilter {
            enterprise_id: auth.account.enterprise_id.clone(),
            statuses: vec![Status::Approved, Status::Completed, Status::Expired],
            limit: 200,
            ..RequestFilter::default()
        })
        .await?;
    let now = state.clock.now();
    let mut out = Vec::new();
    for r in requests.iter().filter(|r| r.kind == Kind::Renewal) {
        if r.status != Status::Approved && state.store.renewal(&r.id).await?.is_none() {
            continue;
        }
        let Ok((key, rec)) = record_of(&state, r).await else {
            continue;
        };
        if key_id.as_ref().is_some_and(|k| *k != rec.key_id) {
            continue;
        }
        out.push(renewal_out(r, &key, &rec, now));
    }
    Ok(Json(out))
}

/// The new key's certificate request, vouched for by the old key.
#[derive(Deserialize, ToSchema)]
pub struct RenewalCsrBody {
    /// PKCS#10, base64 of the DER, signed by the new key (made on the token).
    pub csr: String,
    /// ECDSA signature (DER, base64) by the key's current certificate of
    /// `keyproof::renewal_countersign_message(number, csr)`.
    pub countersignature: String,
}

/// The renewal's one certificate.
#[derive(Serialize, ToSchema)]
pub struct RenewalCertOut {
    /// Base64 of the DER.
    pub certificate: String,
    /// Serial (lower-case hex).
    pub serial: String,
    /// Validity end.
    pub not_after: String,
}

/// Issues the renewal's certificate for the new key: exactly one per approval — asking
/// again with the same key returns the same certificate.
#[utoipa::path(post, path = "/api/v1/renewals/{id}/certificate", tag = "keys",
    security(("bearer" = [])), params(("id" = String, Path)), request_body = RenewalCsrBody,
    responses((status = 200, body = RenewalCertOut), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 410, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn renewal_certificate(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenewalCsrBody>,
) -> ApiResult<Json<RenewalCertOut>> {
    let (r, key, rec) = renewal_request(&state, &auth, &id).await?;
    let now = state.clock.now();
    if rec.state == "expired" || (rec.state != "confirmed" && now > rec.expires_at) {
        return Err(expired());
    }
    let enterprise = state
        .store
        .enterprise(&r.enterprise_id)
        .await?
        .ok_or_else(|| ApiError::not_found("ekey.enterprise.not_found"))?;
    let csr_der = b64("csr", &body.csr)?;
    let csr = ekey_ca::parse_csr(&csr_der)?;
    csr.check_subject(&enterprise.name, &enterprise.credit_code)?;
    // The old key vouches for the new one: its certificate is the one being renewed.
    let old = state
        .store
        .certificate(&rec.old_serial)
        .await?
        .and_then(|c| c.der)
        .ok_or_else(|| ApiError::internal("renewal without its old certificate"))?;
    let old = state.ca.authority().check_issued(&old)?;
    let countersignature = b64("countersignature", &body.countersignature)?;
    ekey_ca::verify_signature(
        &old.spki_der,
        old.algorithm,
        &keyproof::renewal_countersign_message(&r.number, &csr_der),
        &countersignature,
    )
    .map_err(|_| {
        renewal_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.renewal.countersignature_invalid",
            "原证书对新证书请求的签名无效：请用要更新的钥匙重新操作",
            "The old key's countersignature does not verify",
        )
    })?;
    let order = format!("renewal:{}", r.id);
    let audit = auth.audit(now, "ca.issue", "certificate", "", "", "");
    // The serial is reserved for the order first; a crash after this point issues under
    // the same reservation on the next try, never a second certificate.
    state
        .store
        .reserve_certificate(ekey_store::CertificateReservation {
            serial: ekey_ca::Serial::random()?.to_hex(),
            idempotency_key: order.clone(),
            enterprise_id: Some(enterprise.id.clone()),
            key_id: Some(key.id.clone()),
            subject: format!("{} {}", enterprise.name, enterprise.credit_code),
            at: now,
        })
        .await?;
    ekey_token::fault::point("server.renewal.after_reserve");
    let cert = state
        .ca
        .issue_for_order(
            state.store.as_ref(),
            &order,
            csr.spki_der.clone(),
            &enterprise.name,
            &enterprise.credit_code,
            Some(enterprise.id.clone()),
            now,
            audit,
        )
        .await?;
    let der = cert
        .der
        .clone()
        .ok_or_else(|| ApiError::internal("certificate not signed"))?;
    let issued = state.ca.authority().check_issued(&der)?;
    if issued.spki_der != csr.spki_der {
        return Err(renewal_error(
            StatusCode::CONFLICT,
            "ekey.renewal.other_key",
            "这次更新已为另一把新密钥签发了证书；请使用最初开始更新的那把钥匙继续",
            "This renewal already issued a certificate for another new key",
        ));
    }
    if rec.state == "approved" {
        let change = state
            .store
            .apply_batch(Batch {
                renewal: Some(RenewalChange {
                    request_id: r.id.clone(),
                    from_state: "approved".into(),
                    to_state: "issued".into(),
                    new_serial: Some(cert.serial.clone()),
                    at: now,
                    old_revoked: false,
                }),
                audits: vec![auth.audit(
                    now,
                    "renewal.issue",
                    "request",
                    &r.id,
                    &rec.old_serial,
                    &cert.serial,
                )],
                ..Batch::default()
            })
            .await;
        match change {
            // Another instance recorded it first: same certificate, nothing to do.
            Ok(_) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    ekey_token::fault::point("server.renewal.after_issue");
    tracing::info!(request = %r.number, key = %key.id, certificate = %cert.serial, "renewal certificate issued");
    Ok(Json(RenewalCertOut {
        certificate: STANDARD.encode(&der),
        serial: cert.serial,
        not_after: rfc3339(issued.not_after),
    }))
}

/// The key confirms the new certificate is active on it.
#[derive(Deserialize, ToSchema)]
pub struct RenewalConfirmBody {
    /// ECDSA signature (DER, base64) by the NEW key of
    /// `keyproof::renewal_confirm_message(number, new_serial)`.
    pub signature: String,
}

/// The renewal's outcome.
#[derive(Serialize, ToSchema)]
pub struct RenewalDoneOut {
    /// `confirmed`.
    pub state: String,
    /// The certificate replaced.
    pub old_serial: String,
    /// The key's certificate now.
    pub new_serial: String,
    /// Whether the old certificate is revoked (`superseded`) already.
    pub old_revoked: bool,
}

/// Confirms the renewal: the key has the new certificate, the request is completed, and
/// the old certificate is revoked as superseded (per `renewal_supersede`) — one
/// transaction. Asking again answers the same.
#[utoipa::path(post, path = "/api/v1/renewals/{id}/confirm", tag = "keys",
    security(("bearer" = [])), params(("id" = String, Path)), request_body = RenewalConfirmBody,
    responses((status = 200, body = RenewalDoneOut), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn confirm_renewal(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenewalConfirmBody>,
) -> ApiResult<Json<RenewalDoneOut>> {
    let (r, key, rec) = renewal_request(&state, &auth, &id).await?;
    let done = |rec: &RenewalRecord| RenewalDoneOut {
        state: "confirmed".into(),
        old_serial: rec.old_serial.clone(),
        new_serial: rec.new_serial.clone().unwrap_or_default(),
        old_revoked: rec.old_revoked_at.is_some(),
    };
    let new_serial = match (&rec.state[..], &rec.new_serial) {
        ("confirmed", _) => return Ok(Json(done(&rec))),
        ("expired", _) => return Err(expired()),
        ("issued", Some(s)) => s.clone(),
        _ => {
            return Err(renewal_error(
                StatusCode::CONFLICT,
                "ekey.renewal.not_issued",
                "新证书尚未签发，无法确认",
                "No new certificate has been issued yet",
            ));
        }
    };
    let new_cert = state
        .store
        .certificate(&new_serial)
        .await?
        .and_then(|c| c.der)
        .ok_or_else(|| ApiError::internal("renewal certificate missing"))?;
    let new = state.ca.authority().check_issued(&new_cert)?;
    let signature = b64("signature", &body.signature)?;
    ekey_ca::verify_signature(
        &new.spki_der,
        new.algorithm,
        &keyproof::renewal_confirm_message(&r.number, &new_serial),
        &signature,
    )
    .map_err(|_| {
        renewal_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.renewal.signature_invalid",
            "确认签名无效：新证书尚未在钥匙中启用",
            "The confirmation is not signed by the new key",
        )
    })?;
    let now = state.clock.now();
    let revoke_now = state.config.renewal_supersede == "confirm";
    let mut extra = Batch {
        key_changes: vec![KeyChange {
            key_id: key.id.clone(),
            expected_version: key.version,
            to: key.state,
            shipment_id: None,
            certificate_serial: Some(new_serial.clone()),
        }],
        renewal: Some(RenewalChange {
            request_id: r.id.clone(),
            from_state: "issued".into(),
            to_state: "confirmed".into(),
            new_serial: None,
            at: now,
            old_revoked: revoke_now,
        }),
        audits: vec![auth.audit(
            now,
            "key.renew",
            "key",
            &key.id,
            &rec.old_serial,
            &new_serial,
        )],
        ..Batch::default()
    };
    if revoke_now {
        let audit = auth.audit(now, "", "", "", "", "");
        supersede(&state, audit, &rec.old_serial, &mut extra).await?;
    }
    let result = act_as(
        &state,
        &auth,
        &Actor::system(),
        r.clone(),
        Action::Finish,
        None,
        Vec::new(),
        None,
        extra,
    )
    .await;
    match result {
        Ok(_) => {
            if revoke_now {
                state.ca.forget_crl();
            }
        }
        // A concurrent confirmation won: answer with what it recorded.
        Err(e) if e.status == StatusCode::CONFLICT => {}
        Err(e) => return Err(e),
    }
    ekey_token::fault::point("server.renewal.after_confirm");
    let rec = match state.store.renewal(&r.id).await? {
        Some(rec) if rec.state == "confirmed" => rec,
        // The renewal ran out while the key was confirming: its new certificate is void.
        Some(rec) if rec.state == "expired" => return Err(expired()),
        _ => return Err(ApiError::internal("renewal not confirmed")),
    };
    tracing::info!(request = %r.number, key = %key.id, old = %rec.old_serial, new = %new_serial, "renewal confirmed");
    Ok(Json(done(&rec)))
}

/// Adds the revocation of the old certificate (`superseded`) to `batch` with its audit
/// record, unless it is revoked already.
pub(super) async fn supersede(
    state: &AppState,
    audit: NewAudit,
    serial: &str,
    batch: &mut Batch,
) -> ApiResult<()> {
    if state
        .store
        .certificate(serial)
        .await?
        .is_some_and(|c| c.revoked_at.is_none())
    {
        batch.revocations.push(Revocation {
            serial: serial.into(),
            reason: "superseded".into(),
            at: audit.at,
        });
        batch.audits.push(NewAudit {
            action: "ca.revoke".into(),
            object_type: "certificate".into(),
            object_id: serial.into(),
            after: "superseded".into(),
            ..audit
        });
    }
    Ok(())
}

pub use super::renewal_expiry::expire_renewals;

// ------------------------------------------------------------------------- unlock --

/// The key's proof that an unlock was carried out.
#[derive(Deserialize, ToSchema)]
pub struct UnlockDoneBody {
    /// The key's certificate, base64 of the DER.
    pub certificate: String,
    /// ECDSA signature (DER, base64) of `keyproof::unlock_done_message(number, token_serial)`
    /// made with the new PIN.
    pub signature: String,
}

/// The unlock code was applied and the key works with its new PIN: the unlock request is
/// completed.
#[utoipa::path(post, path = "/api/v1/requests/{id}/unlock-done", tag = "keys",
    security(("bearer" = [])), params(("id" = String, Path)), request_body = UnlockDoneBody,
    responses((status = 200, body = super::requests::RequestOut), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn unlock_done(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UnlockDoneBody>,
) -> ApiResult<Json<super::requests::RequestOut>> {
    auth.require(&[Role::Enterprise])?;
    let r = visible(&state, &auth, &id).await?;
    if r.kind != Kind::Unlock {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ekey.unlock.not_unlock",
            "这不是一项解锁申请",
            "This is not an unlock request",
        ));
    }
    if r.status == Status::Completed {
        return super::requests::detail_by_id(&state, &auth, &id)
            .await
            .map(Json);
    }
    if r.status != Status::Approved {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ekey.unlock.not_approved",
            "这项解锁申请尚未通过审核",
            "This unlock request is not approved",
        ));
    }
    let number = r.number.clone();
    let proven = prove(&state, &body.certificate, &body.signature, |key| {
        keyproof::unlock_done_message(&number, key.token_serial.as_deref().unwrap_or_default())
    })
    .await?;
    if proven.key.enterprise_id != r.enterprise_id
        || Some(proven.key.login_name.as_str()) != r.login_name.as_deref()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ekey.unlock.other_key",
            "这不是该解锁申请对应的钥匙",
            "This is not the key of this unlock request",
        ));
    }
    act_as(
        &state,
        &auth,
        &Actor::system(),
        r,
        Action::Finish,
        None,
        Vec::new(),
        None,
        Batch::default(),
    )
    .await?;
    super::requests::detail_by_id(&state, &auth, &id)
        .await
        .map(Json)
}

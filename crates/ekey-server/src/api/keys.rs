//! Keys as their holders and staff see them, and the initial PIN for the enterprise.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ekey_domain::request::Role;
use ekey_store::{KeyRecord, NewAudit};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody, current_lang};
use crate::messages::rfc3339;
use crate::state::AppState;

/// A key.
#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    /// Id.
    pub id: String,
    /// Login name bound to it.
    pub login_name: String,
    /// Token serial.
    pub token_serial: Option<String>,
    /// State.
    pub state: String,
    /// State in words.
    pub state_label: String,
    /// Certificate serial (hex).
    pub certificate_serial: Option<String>,
    /// Certificate valid until (RFC 3339, +08:00).
    pub not_after: Option<String>,
    /// The request that produced it.
    pub request_id: Option<String>,
    /// The e-seal record bound to the key.
    pub eseal_id: Option<String>,
    /// A damaged key: when it was handed back (RFC 3339, +08:00), if it was.
    pub returned_at: Option<String>,
}

async fn key_out(state: &AppState, k: KeyRecord) -> ApiResult<KeyOut> {
    let not_after = match &k.certificate_serial {
        Some(serial) => state
            .store
            .certificate(serial)
            .await?
            .and_then(|c| c.not_after),
        None => None,
    };
    let lang = current_lang();
    let returned_at = if k.state == ekey_domain::key::KeyState::Damaged {
        state.store.key_return(&k.id).await?.map(rfc3339)
    } else {
        None
    };
    Ok(KeyOut {
        returned_at,
        state_label: lang.pick(k.state.label_zh(), k.state.label_en()).into(),
        state: k.state.as_str().into(),
        id: k.id,
        login_name: k.login_name,
        token_serial: k.token_serial,
        certificate_serial: k.certificate_serial,
        not_after: not_after.map(rfc3339),
        request_id: k.request_id,
        eseal_id: k.eseal_id,
    })
}

/// The caller's enterprise's keys (enterprise users).
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = Vec<KeyOut>), (status = 403, body = ErrorBody)))]
pub async fn my_keys(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Vec<KeyOut>>> {
    auth.require(&[Role::Enterprise])?;
    let enterprise = auth.account.enterprise_id.clone().unwrap_or_default();
    let mut out = Vec::new();
    for k in state.store.keys_of_enterprise(&enterprise).await? {
        out.push(key_out(&state, k).await?);
    }
    Ok(Json(out))
}

/// How many of the three keys the caller's enterprise holds, keys in progress included
/// (for the portal's pages; the same count `create` checks).
pub async fn my_holdings(
    state: &AppState,
    auth: &Auth,
) -> ApiResult<ekey_domain::request::Holdings> {
    auth.require(&[Role::Enterprise])?;
    let enterprise = auth.account.enterprise_id.clone().unwrap_or_default();
    Ok(state.store.key_holdings(&enterprise).await?)
}

/// The initial PIN.
#[derive(Serialize, ToSchema)]
pub struct InitialPinOut {
    /// Eight digits; change it at first use.
    pub initial_pin: String,
}

/// The key's initial PIN, for its enterprise only (never shown to staff). Each reading is
/// audited.
#[utoipa::path(get, path = "/api/v1/keys/{id}/initial-pin", tag = "keys", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = InitialPinOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn initial_pin(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<InitialPinOut>> {
    auth.require(&[Role::Enterprise])?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ekey.key.not_found",
            "未找到该电子钥匙",
            "No such key",
        )
    };
    let key = state.store.key(&id).await?.ok_or_else(not_found)?;
    if auth.account.enterprise_id.as_deref() != Some(key.enterprise_id.as_str()) {
        return Err(not_found());
    }
    let serial = key.token_serial.clone().ok_or_else(not_found)?;
    state
        .store
        .append_audit(NewAudit {
            at: state.clock.now(),
            actor_id: auth.account.id.clone(),
            actor_role: auth.account.role.as_str().into(),
            address: auth.address.clone(),
            action: "key.read_initial_pin".into(),
            object_type: "key".into(),
            object_id: key.id.clone(),
            ..Default::default()
        })
        .await?;
    Ok(Json(InitialPinOut {
        initial_pin: state.secrets.initial_pin(&serial).to_string(),
    }))
}

/// The certificate of a key (DER): for its enterprise, its province's agency and the provider.
#[utoipa::path(get, path = "/api/v1/keys/{id}/certificate", tag = "keys", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, content_type = "application/pkix-cert"), (status = 404, body = ErrorBody)))]
pub async fn certificate(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ekey.key.not_found",
            "未找到该电子钥匙",
            "No such key",
        )
    };
    let key = state.store.key(&id).await?.ok_or_else(not_found)?;
    let province = state
        .store
        .enterprise(&key.enterprise_id)
        .await?
        .map(|e| e.province)
        .unwrap_or_default();
    if !auth.actor.can_see(&key.enterprise_id, &province) {
        return Err(not_found());
    }
    let serial = key.certificate_serial.ok_or_else(not_found)?;
    let der = state
        .store
        .certificate(&serial)
        .await?
        .and_then(|c| c.der)
        .ok_or_else(not_found)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/pkix-cert")],
        der,
    )
        .into_response())
}

/// Records that a damaged key (its 补办 made) was handed back: by the agency of the key's
/// province when it is brought to the window, or by the provider when it reaches it. Once;
/// audited.
#[utoipa::path(post, path = "/api/v1/keys/{id}/return", tag = "keys", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = KeyOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "not damaged, or already recorded", body = ErrorBody)))]
pub async fn record_return(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<KeyOut>> {
    auth.require(&[Role::Agency, Role::Provider])?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ekey.key.not_found",
            "未找到该电子钥匙",
            "No such key",
        )
    };
    let key = state.store.key(&id).await?.ok_or_else(not_found)?;
    let province = state
        .store
        .enterprise(&key.enterprise_id)
        .await?
        .map(|e| e.province)
        .unwrap_or_default();
    if !auth.actor.can_see(&key.enterprise_id, &province) {
        return Err(not_found());
    }
    let now = state.clock.now();
    state
        .store
        .record_key_return(
            &key.id,
            now,
            auth.audit(
                now,
                "key.return_damaged",
                "key",
                &key.id,
                "damaged",
                "returned",
            ),
        )
        .await?;
    let key = state.store.key(&id).await?.ok_or_else(not_found)?;
    Ok(Json(key_out(&state, key).await?))
}

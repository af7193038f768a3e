//! What an enterprise user does for itself beyond requests: resetting a forgotten password
//! and choosing how to receive the key (window or free mailing).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Duration;
use ekey_domain::error::DomainError;
use ekey_domain::ident::{Email, IdNumber, Mobile};
use ekey_domain::key::mailing_address_matches;
use ekey_domain::request::{Role, Status};
use ekey_store::{CollectionChoice, NewAudit, NewMessage, NewPasswordReset, NewToken};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;
use super::accounts::check_password;
use super::requests::visible;
use crate::auth::{Auth, ClientAddr, hash_password_off_thread, new_token, token_hash};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::messages::{local_time, rfc3339};
use crate::state::AppState;

/// Subject of the password reset mail.
pub const RESET_SUBJECT: &str = "重置电子钥匙在线填报系统登录密码";

/// How long a reset link works.
const RESET_TTL_HOURS: i64 = 2;

/// Ask for a password reset link.
#[derive(Deserialize, ToSchema)]
pub struct ResetRequestBody {
    /// The login (an enterprise's email).
    pub login: String,
}

/// Send a password reset link to the account's email. Always 202, whether or not the login
/// exists, so it reveals nothing; earlier links stop working.
#[utoipa::path(post, path = "/api/v1/password-resets", tag = "accounts", request_body = ResetRequestBody,
    responses((status = 202), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn request_reset(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    ApiJson(body): ApiJson<ResetRequestBody>,
) -> ApiResult<StatusCode> {
    // The mail quota of the caller's address and of the login typed (whether or not it
    // exists, so the answer tells nothing).
    crate::mailquota::take(&state, &address, &body.login).await?;
    let login = body.login.trim().to_lowercase();
    // A quota of its own: never refused because of failed logins, never counted as one.
    crate::throttle::reset_requested(&state, &login, &address).await?;
    let Some(account) = state.store.account_by_login(&login).await? else {
        return Ok(StatusCode::ACCEPTED);
    };
    let Ok(email) = Email::parse(&account.email) else {
        return Ok(StatusCode::ACCEPTED);
    };
    let now = state.clock.now();
    let token = new_token();
    let hash = token_hash(&token);
    let expires = now + Duration::hours(RESET_TTL_HOURS);
    let link = format!("{}/password/reset/{token}", state.config.public_url());
    state
        .store
        .begin_password_reset(NewPasswordReset {
            account_id: account.id.clone(),
            token: NewToken {
                token_hash: hash.clone(),
                expires_at: expires,
                created_at: now,
            },
            mail: NewMessage {
                channel: ekey_store::Channel::Email,
                recipient: email.as_str().to_string(),
                subject: RESET_SUBJECT.to_string(),
                body: format!(
                    "您好：\n\n有人（可能是您本人）申请重置登录名 {} 的密码。\n\
                     请在 {} 前打开下面的链接设置新密码（链接只能使用一次）：\n\n{link}\n\n\
                     设置新密码后，所有已登录的设备都需要重新登录。\n\
                     如果不是您本人操作，请忽略本邮件，原密码仍然有效。\n\n\
                     电子钥匙服务商客服电话：{}\n",
                    account.login,
                    local_time(expires),
                    state.config.provider_hotline
                ),
                dedup_key: format!("password-reset:{}", &hash[..16]),
                created_at: now,
            },
            audit: NewAudit {
                at: now,
                actor_id: account.id.clone(),
                actor_role: account.role.as_str().into(),
                address,
                action: "password.reset_requested".into(),
                object_type: "account".into(),
                object_id: account.id.clone(),
                ..Default::default()
            },
        })
        .await?;
    state.outbox_wake.notify_one();
    Ok(StatusCode::ACCEPTED)
}

/// A new password.
#[derive(Deserialize, ToSchema)]
pub struct ResetBody {
    /// At least 8 characters with letters and digits.
    pub password: String,
}

/// The account whose password was reset.
#[derive(Serialize, ToSchema)]
pub struct ResetOut {
    /// The login to use now.
    pub login: String,
}

/// Set a new password with the link's token. Works once, for two hours; every session of
/// the account ends.
#[utoipa::path(post, path = "/api/v1/password-resets/{token}", tag = "accounts", request_body = ResetBody,
    params(("token" = String, Path, description = "token from the reset mail")),
    responses((status = 200, body = ResetOut), (status = 410, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn complete_reset(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    Path(token): Path<String>,
    ApiJson(body): ApiJson<ResetBody>,
) -> ApiResult<Json<ResetOut>> {
    check_password(&body.password)?;
    let hash = hash_password_off_thread(&body.password).await?;
    let now = state.clock.now();
    let account = state
        .store
        .complete_password_reset(
            &token_hash(&token),
            &hash,
            now,
            NewAudit {
                at: now,
                address: address.clone(),
                action: "password.reset".into(),
                object_type: "account".into(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| match e {
            ekey_store::StoreError::TokenInvalid => ApiError::new(
                StatusCode::GONE,
                "ekey.password.link_invalid",
                "重置链接无效、已使用或已过期（有效期 2 小时），请重新申请“忘记密码”",
                "This reset link is invalid, used or expired (it lasts 2 hours); ask for a new one",
            ),
            other => other.into(),
        })?;
    crate::throttle::password_was_reset(&state, &account.login, &address).await?;
    Ok(Json(ResetOut {
        login: account.login,
    }))
}

/// How the enterprise will receive its key.
#[derive(Deserialize, Serialize, ToSchema, Clone, Default)]
pub struct CollectionBody {
    /// `window` (collect at the agency's window) or `mail` (free mailing, with a disclaimer).
    pub method: String,
    /// Mailing: recipient.
    #[serde(default)]
    pub recipient: String,
    /// Mailing: address; must contain the registered address (a room or floor may be added).
    #[serde(default)]
    pub address: String,
    /// Mailing: recipient's mobile.
    #[serde(default)]
    pub mobile: String,
    /// Mailing: recipient's ID number.
    #[serde(default)]
    pub id_number: String,
}

/// The choice as recorded. (Named apart from the public result's `CollectionOut`, where
/// to collect, so that neither replaces the other in the OpenAPI document.)
#[derive(Serialize, ToSchema)]
#[schema(as = CollectionChoiceOut)]
pub struct CollectionOut {
    /// `window` or `mail`.
    pub method: String,
    /// Mailing: recipient.
    pub recipient: String,
    /// Mailing: address.
    pub address: String,
    /// Mailing: mobile.
    pub mobile: String,
    /// Mailing: ID number.
    pub id_number: String,
    /// When chosen (RFC 3339).
    pub chosen_at: String,
}

impl From<CollectionChoice> for CollectionOut {
    fn from(c: CollectionChoice) -> Self {
        CollectionOut {
            method: c.method,
            recipient: c.recipient,
            address: c.address,
            mobile: c.mobile,
            id_number: c.id_number,
            chosen_at: rfc3339(c.chosen_at),
        }
    }
}

/// A field-level problem with a collection choice.
fn invalid(code: &'static str, zh: &str, en: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, zh, en)
}

/// Choose how to receive the key: at the agency's window, or by free mailing to an address
/// that matches the registered address (the disclaimer and a stamped licence copy go to the
/// agency with it). Can be changed until the key is handed over.
#[utoipa::path(put, path = "/api/v1/requests/{id}/collection", tag = "delivery", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = CollectionBody,
    responses((status = 200, body = CollectionOut), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn choose_collection(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CollectionBody>,
) -> ApiResult<Json<CollectionOut>> {
    auth.require(&[Role::Enterprise])?;
    let r = visible(&state, &auth, &id).await?;
    if !r.kind.produces_key() || r.status.is_terminal() || r.status == Status::Draft {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ekey.collection.not_now",
            "该申请现在不能选择领取方式（仅适用于已提交、尚未领取的制钥申请）",
            "A collection method can only be chosen for a submitted key request not yet handed over",
        ));
    }
    let enterprise = state
        .store
        .enterprise(&r.enterprise_id)
        .await?
        .ok_or_else(|| ApiError::not_found("ekey.enterprise.not_found"))?;
    let choice = match body.method.trim() {
        "window" => CollectionChoice {
            request_id: r.id.clone(),
            method: "window".into(),
            recipient: String::new(),
            address: String::new(),
            mobile: String::new(),
            id_number: String::new(),
            chosen_at: state.clock.now(),
            chosen_by: auth.account.id.clone(),
        },
        "mail" => {
            let recipient = body.recipient.trim();
            if recipient.is_empty() || recipient.chars().count() > 50 {
                return Err(invalid(
                    "ekey.collection.recipient",
                    "请填写收件人姓名（不超过 50 个字）",
                    "Enter the recipient's name (at most 50 characters)",
                ));
            }
            let mobile = Mobile::parse(&body.mobile).map_err(DomainError::from)?;
            let id_number =
                IdNumber::parse_on(&body.id_number, state.today()).map_err(DomainError::from)?;
            ekey_domain::text::check_line(
                "recipient",
                recipient,
                ekey_domain::text::PERSON_NAME_MAX,
            )?;
            let address = &ekey_domain::text::check_line(
                "address",
                &body.address,
                ekey_domain::text::ADDRESS_MAX,
            )?;
            if !mailing_address_matches(address, &enterprise.address) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ekey.collection.address_mismatch",
                    format!(
                        "邮寄地址必须与营业执照上的注册（经营）地址一致：“{}”（可在其后补充楼层、房间号）",
                        enterprise.address
                    ),
                    format!(
                        "The mailing address must match the registered address on the licence: \"{}\" (a floor or room may be added)",
                        enterprise.address
                    ),
                ));
            }
            CollectionChoice {
                request_id: r.id.clone(),
                method: "mail".into(),
                recipient: recipient.to_string(),
                address: address.to_string(),
                mobile: mobile.as_str().to_string(),
                id_number: id_number.as_str().to_string(),
                chosen_at: state.clock.now(),
                chosen_by: auth.account.id.clone(),
            }
        }
        _ => {
            return Err(invalid(
                "ekey.collection.method",
                "请选择领取方式：窗口领取或免费邮寄",
                "Choose window collection or free mailing",
            ));
        }
    };
    state
        .store
        .set_collection_choice(
            choice.clone(),
            auth.audit(
                state.clock.now(),
                "collection.choose",
                "request",
                &r.id,
                "",
                &choice.method,
            ),
        )
        .await?;
    Ok(Json(choice.into()))
}

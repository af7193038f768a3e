//! Registration, activation, sessions, the caller's own account, login-name allocation.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Duration;
use ekey_domain::Lang;
use ekey_domain::error::DomainError;
use ekey_domain::ident::{CreditCode, Email, IdNumber, Mobile};
use ekey_domain::province;
use ekey_domain::request::Role;
use ekey_store::{NewAccount, NewAudit, NewEnterprise, NewRegistration, NewSession, NewToken};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;
use crate::auth::{
    Auth, ClientAddr, hash_password_off_thread, new_token, token_hash, verify_password_off_thread,
};
use crate::error::{ApiError, ApiResult, ErrorBody, current_lang};
use crate::messages::{activation_mail, rfc3339};
use crate::state::AppState;

/// Login request.
#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    /// Email for enterprise users, user name for staff.
    pub login: String,
    /// Password.
    pub password: String,
}

/// A new session.
#[derive(Serialize, ToSchema)]
pub struct SessionOut {
    /// Bearer token for `Authorization: Bearer <token>`.
    pub token: String,
    /// Role: enterprise, agency, provider, admin.
    pub role: String,
    /// When the session ends (RFC 3339, +08:00).
    pub expires_at: String,
}

// A valid hash of a random password, checked when the login is unknown so that the answer
// takes as long as for a known login.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$oVrhY6Yj8bvVnqHEPmAkZbgzY3bLmQZC3Y3mmWTn9qs";

fn not_activated() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "ekey.auth.not_activated",
        "账户尚未激活：请查收主题为“调用商务部统一用户管理平台激活企业账户”的邮件并打开其中的链接，也可以重新发送激活邮件",
        "The account is not activated yet: open the link in the activation mail, or ask for it again",
    )
}

fn bad_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "ekey.auth.invalid_credentials",
        "登录名或密码错误",
        "Wrong login or password",
    )
}

/// Log in with login and password.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "accounts", request_body = LoginBody,
    responses((status = 200, body = SessionOut), (status = 401, body = ErrorBody),
              (status = 400, description = "a login longer than 254 characters", body = ErrorBody),
              (status = 403, description = "account not activated", body = ErrorBody),
              (status = 429, description = "too many failed attempts", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Json<SessionOut>> {
    let login = body.login.trim().to_lowercase();
    // Counted before Argon2 runs, so simultaneous guesses cannot overtake the count.
    let attempt = crate::throttle::reserve_login(&state, &login, &address).await?;
    let account = state.store.account_by_login(&login).await?;
    // A registration not yet activated has no account: with the right password its owner
    // is told to activate, as for an inactive account.
    if account.is_none()
        && let Some(p) = state.store.pending_registration(&login).await?
        && verify_password_off_thread(&body.password, &p.password_hash).await?
    {
        return Err(not_activated());
    }
    let hash = account
        .as_ref()
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_string());
    let ok = verify_password_off_thread(&body.password, &hash).await?;
    let Some(account) = account.filter(|_| ok) else {
        // The reservation stays counted as the failure.
        state
            .store
            .append_audit(NewAudit {
                at: state.clock.now(),
                actor_role: "anonymous".into(),
                address: address.clone(),
                action: "session.failed".into(),
                object_type: "account".into(),
                object_id: login.clone(),
                ..Default::default()
            })
            .await?;
        return Err(bad_credentials());
    };
    if !account.active && account.role != Role::Enterprise {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "ekey.auth.disabled",
            "该账户已停用，请联系系统管理员",
            "This account is disabled; ask the administrator",
        ));
    }
    if !account.active {
        return Err(not_activated());
    }
    attempt.succeeded(&state).await?;
    let (token, expires) = open_session(
        &state,
        &account,
        None,
        NewAudit {
            address,
            action: "session.create".into(),
            object_type: "account".into(),
            object_id: account.id.clone(),
            ..Default::default()
        },
    )
    .await?;
    Ok(Json(SessionOut {
        token,
        role: account.role.as_str().into(),
        expires_at: rfc3339(expires),
    }))
}

/// Opens a session of `account` (with the key it was opened with, for a certificate
/// login) and records `audit` (actor and time filled in here); the new bearer token and
/// when it ends.
pub(crate) async fn open_session(
    state: &AppState,
    account: &ekey_store::Account,
    key_id: Option<String>,
    audit: NewAudit,
) -> ApiResult<(String, chrono::DateTime<chrono::Utc>)> {
    let token = new_token();
    let now = state.clock.now();
    let expires = now + Duration::hours(state.config.session_ttl_hours);
    state
        .store
        .create_session(
            NewSession {
                token_hash: token_hash(&token),
                account_id: account.id.clone(),
                created_at: now,
                expires_at: expires,
                key_id,
            },
            NewAudit {
                at: now,
                actor_id: account.id.clone(),
                actor_role: account.role.as_str().into(),
                ..audit
            },
        )
        .await?;
    Ok((token, expires))
}

/// Log out: the token stops working at once.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "accounts",
    security(("bearer" = [])), responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, auth: Auth) -> ApiResult<StatusCode> {
    state
        .store
        .revoke_session(&auth.token_hash, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The authorised user registering the enterprise.
#[derive(Deserialize, ToSchema)]
pub struct ContactBody {
    /// Name.
    pub name: String,
    /// Resident ID number.
    pub id_number: String,
    /// Mobile.
    pub mobile: String,
    /// Email (the login).
    pub email: String,
}

/// Registration of an enterprise.
#[derive(Deserialize, ToSchema)]
pub struct RegistrationBody {
    /// Registered name.
    pub enterprise_name: String,
    /// Unified social credit code.
    pub credit_code: String,
    /// GB/T 2260 province code, e.g. 320000.
    pub province: String,
    /// Registered or business address.
    pub address: String,
    /// Legal representative.
    pub legal_representative: String,
    /// The authorised user.
    pub contact: ContactBody,
    /// Password (at least 8 characters, letters and digits).
    pub password: String,
}

/// A registered account.
#[derive(Serialize, ToSchema)]
pub struct RegistrationOut {
    /// The new account's id.
    pub account_id: String,
}

/// Passwords too common to accept even though they have letters and digits (compared
/// without case).
const COMMON_PASSWORDS: &[&str] = &[
    "password1",
    "password12",
    "password123",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword1",
    "abc12345",
    "abc123456",
    "abcd1234",
    "abcd12345",
    "a1234567",
    "a12345678",
    "a123456789",
    "aa123456",
    "aa12345678",
    "qq123456",
    "qwe12345",
    "qwer1234",
    "qwerty12",
    "qwerty123",
    "1qaz2wsx",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "q1w2e3r4",
    "zxcv1234",
    "asdf1234",
    "zxc12345",
    "admin123",
    "admin888",
    "admin1234",
    "root1234",
    "test1234",
    "welcome1",
    "letmein1",
    "iloveyou1",
    "woaini1314",
    "woaini520",
    "5201314a",
    "a5201314",
    "changeme1",
    "secret123",
];

/// The password policy: 8 to 128 characters with letters and digits, not a common
/// password, not one character repeated, and not containing the login (or an email's name
/// part) when that is 4 characters or more.
pub(crate) fn check_password_for(p: &str, login: &str) -> Result<(), ApiError> {
    let n = p.chars().count();
    let shape = (8..=128).contains(&n)
        && p.chars().any(|c| c.is_ascii_digit())
        && p.chars().any(|c| c.is_alphabetic());
    if !shape {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.registration.weak_password",
            "密码至少 8 位，且须同时包含字母和数字",
            "The password needs at least 8 characters with letters and digits",
        ));
    }
    let lower = p.to_lowercase();
    let distinct: std::collections::BTreeSet<char> = lower.chars().collect();
    if COMMON_PASSWORDS.contains(&lower.as_str()) || distinct.len() < 4 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.registration.weak_password",
            "该密码过于常见、容易被猜中，请换一个",
            "This password is too common and easy to guess; choose another",
        ));
    }
    let login = login.trim().to_lowercase();
    let name = login.split('@').next().unwrap_or("");
    if [login.as_str(), name]
        .iter()
        .any(|part| part.chars().count() >= 4 && lower.contains(part))
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.registration.weak_password",
            "密码不能包含登录名或邮箱名",
            "The password must not contain the login or the email's name",
        ));
    }
    Ok(())
}

/// [`check_password_for`] without a login to compare with.
pub(crate) fn check_password(p: &str) -> Result<(), ApiError> {
    check_password_for(p, "")
}

/// Register an enterprise and its authorised user; sends the activation mail. The
/// registration claims neither the credit code nor the email until its link is opened
/// (the first registration activated wins). The answer is the same whether or not the
/// credit code or the email is registered already: their owners are told by mail.
#[utoipa::path(post, path = "/api/v1/registrations", tag = "accounts", request_body = RegistrationBody,
    responses((status = 201, body = RegistrationOut), (status = 422, body = ErrorBody),
              (status = 429, description = "too many mails to this address or from this client", body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    ApiJson(body): ApiJson<RegistrationBody>,
) -> ApiResult<(StatusCode, Json<RegistrationOut>)> {
    // Every name here goes into the certificate or the printed forms: the domain's one
    // check, as strict as the CA's subject check (so production cannot fail on it).
    let name = ekey_domain::text::enterprise_name(&body.enterprise_name)?;
    let credit_code = CreditCode::parse(&body.credit_code).map_err(DomainError::from)?;
    let province = province::by_code(body.province.trim())
        .ok_or_else(|| DomainError::UnknownProvince(body.province.trim().to_string()))?;
    let address_text =
        super::required_text(&body.address, "address", ekey_domain::text::ADDRESS_MAX)?;
    let legal = super::required_text(
        &body.legal_representative,
        "legal_representative",
        ekey_domain::text::PERSON_NAME_MAX,
    )?;
    let contact_name = super::required_text(
        &body.contact.name,
        "contact.name",
        ekey_domain::text::PERSON_NAME_MAX,
    )?;
    IdNumber::parse_on(&body.contact.id_number, state.today()).map_err(DomainError::from)?;
    let mobile = Mobile::parse(&body.contact.mobile).map_err(DomainError::from)?;
    let email = Email::parse(&body.contact.email).map_err(DomainError::from)?;
    check_password_for(&body.password, &body.contact.email)?;
    crate::mailquota::take(&state, &address, email.as_str()).await?;

    // Hashed in every case, so that the time taken says nothing either.
    let hash = hash_password_off_thread(&body.password).await?;
    let now = state.clock.now();
    let enterprise_id = uuid::Uuid::now_v7().to_string();
    let account_id = uuid::Uuid::now_v7().to_string();
    let created = || {
        Ok((
            StatusCode::CREATED,
            Json(RegistrationOut {
                account_id: account_id.clone(),
            }),
        ))
    };
    if state
        .store
        .account_by_login(email.as_str())
        .await?
        .is_some()
    {
        // The email has an account: its owner (the only one who reads this mail) is told,
        // the caller learns nothing.
        crate::registration_notice::email_exists(&state, &address, email.as_str(), &account_id)
            .await?;
        return created();
    }
    if let Some(existing) = state
        .store
        .enterprise_by_credit_code(credit_code.as_str())
        .await?
    {
        // The registration is kept (its link will say the enterprise is taken, unless the
        // administrator releases it first); the enterprise's owner is told.
        crate::registration_notice::credit_code_exists(&state, &address, &existing, &account_id)
            .await?;
    }
    let token = new_token();
    let expires = now + Duration::hours(state.config.activation_ttl_hours);
    let link = format!("{}/api/v1/activations/{token}", state.config.public_url());
    state
        .store
        .register_pending(
            NewRegistration {
                enterprise: NewEnterprise {
                    id: enterprise_id.clone(),
                    name: name.clone(),
                    credit_code: credit_code.as_str().into(),
                    province: province.code.into(),
                    address: address_text,
                    legal_representative: legal,
                    created_at: now,
                },
                account: NewAccount {
                    id: account_id.clone(),
                    login: email.as_str().into(),
                    email: email.as_str().into(),
                    display_name: contact_name,
                    mobile: Some(mobile.as_str().into()),
                    password_hash: hash,
                    role: Role::Enterprise,
                    enterprise_id: Some(enterprise_id.clone()),
                    province: None,
                    active: false,
                    created_at: now,
                },
                activation: NewToken {
                    token_hash: token_hash(&token),
                    expires_at: expires,
                    created_at: now,
                },
                mail: activation_mail(
                    &name,
                    email.as_str(),
                    &link,
                    expires,
                    &state.config.provider_hotline,
                    now,
                    &format!("activation:{account_id}:{}", &token_hash(&token)[..16]),
                ),
                audit: NewAudit {
                    at: now,
                    actor_id: account_id.clone(),
                    actor_role: "enterprise".into(),
                    address,
                    action: "registration.create".into(),
                    object_type: "enterprise".into(),
                    object_id: enterprise_id,
                    before: String::new(),
                    after: format!("{} {}", credit_code.as_str(), name),
                },
            },
            now - Duration::days(crate::registration_notice::FORGET_PENDING_DAYS),
        )
        .await?;
    state.outbox_wake.notify_one();
    created()
}

/// Ask for the activation mail again.
#[derive(Deserialize, ToSchema)]
pub struct ResendBody {
    /// The email registered.
    pub email: String,
}

/// Send the activation mail again (always answers 202, so it reveals nothing about which
/// emails are registered). Earlier links stop working.
#[utoipa::path(post, path = "/api/v1/registrations/resend", tag = "accounts", request_body = ResendBody,
    responses((status = 202), (status = 422, body = ErrorBody),
              (status = 429, description = "too many mails to this address or from this client", body = ErrorBody)))]
pub async fn resend_activation(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    ApiJson(body): ApiJson<ResendBody>,
) -> ApiResult<StatusCode> {
    let email = Email::parse(&body.email).map_err(DomainError::from)?;
    crate::mailquota::take(&state, &address, email.as_str()).await?;
    let account = state.store.account_by_login(email.as_str()).await?;
    if account.is_none()
        && let Some(pending) = state.store.pending_registration(email.as_str()).await?
    {
        crate::registration_notice::resend_pending(&state, &pending).await?;
    }
    if let Some(account) = account
        && !account.active
        && account.role == Role::Enterprise
    {
        let enterprise = match &account.enterprise_id {
            Some(id) => state.store.enterprise(id).await?,
            None => None,
        };
        let now = state.clock.now();
        let token = new_token();
        let expires = now + Duration::hours(state.config.activation_ttl_hours);
        let link = format!("{}/api/v1/activations/{token}", state.config.public_url());
        state
            .store
            .reissue_activation(
                &account.id,
                NewToken {
                    token_hash: token_hash(&token),
                    expires_at: expires,
                    created_at: now,
                },
                activation_mail(
                    &enterprise.map(|e| e.name).unwrap_or_default(),
                    email.as_str(),
                    &link,
                    expires,
                    &state.config.provider_hotline,
                    now,
                    &format!("activation:{}:{}", account.id, &token_hash(&token)[..16]),
                ),
            )
            .await?;
        state.outbox_wake.notify_one();
    }
    Ok(StatusCode::ACCEPTED)
}

/// Result of an activation.
#[derive(Serialize, ToSchema)]
pub struct ActivationOut {
    /// `activated`.
    pub status: String,
    /// The login to use now.
    pub login: String,
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.contains("text/html"))
        .unwrap_or(false)
}

/// Open the link of the activation mail: activates the account once. Browsers get a page,
/// other clients JSON.
#[utoipa::path(get, path = "/api/v1/activations/{token}", tag = "accounts",
    params(("token" = String, Path, description = "token from the activation mail")),
    responses((status = 200, body = ActivationOut), (status = 410, description = "invalid, used or expired", body = ErrorBody)))]
pub async fn activate(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let result = state
        .store
        .activate(
            &token_hash(&token),
            state.clock.now(),
            NewAudit {
                at: state.clock.now(),
                actor_role: "enterprise".into(),
                address,
                action: "account.activate".into(),
                object_type: "account".into(),
                before: "inactive".into(),
                after: "active".into(),
                ..Default::default()
            },
        )
        .await
        .map_err(crate::registration_notice::activation_error);
    let lang = current_lang();
    match (result, wants_html(&headers)) {
        (Ok(account), true) => Html(crate::web::message_html(
            lang,
            lang.pick("账户已激活", "Account activated"),
            &match lang {
                Lang::Zh => format!(
                    "账户 {} 已激活，现在可以登录并填写电子钥匙申请。",
                    account.login
                ),
                Lang::En => format!("Account {} is active; you can log in now.", account.login),
            },
            Some((
                &format!("/login?login={}", crate::web::encode(&account.login)),
                lang.pick("去登录", "Log in"),
            )),
        ))
        .into_response(),
        (Ok(account), false) => Json(ActivationOut {
            status: "activated".into(),
            login: account.login,
        })
        .into_response(),
        (Err(e), true) => (
            e.status,
            Html(crate::web::message_html(
                lang,
                lang.pick("无法激活", "Cannot activate"),
                if lang == Lang::Zh { &e.zh } else { &e.en },
                Some((
                    "/register/sent",
                    lang.pick("重新发送激活邮件", "Send the mail again"),
                )),
            )),
        )
            .into_response(),
        (Err(e), false) => e.into_response(),
    }
}

/// The caller's account.
#[derive(Serialize, ToSchema)]
pub struct MeOut {
    /// Account id.
    pub id: String,
    /// Login.
    pub login: String,
    /// Name shown.
    pub display_name: String,
    /// Role.
    pub role: String,
    /// Province (agency staff).
    pub province: Option<String>,
    /// Enterprise (enterprise users).
    pub enterprise: Option<EnterpriseOut>,
}

/// An enterprise.
#[derive(Serialize, ToSchema)]
pub struct EnterpriseOut {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Unified social credit code.
    pub credit_code: String,
    /// Province code.
    pub province: String,
    /// Address.
    pub address: String,
    /// Legal representative.
    pub legal_representative: String,
}

impl From<ekey_store::Enterprise> for EnterpriseOut {
    fn from(e: ekey_store::Enterprise) -> Self {
        EnterpriseOut {
            id: e.id,
            name: e.name,
            credit_code: e.credit_code,
            province: e.province,
            address: e.address,
            legal_representative: e.legal_representative,
        }
    }
}

/// Who am I.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = MeOut), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<MeOut>> {
    let enterprise = match &auth.account.enterprise_id {
        Some(id) => state.store.enterprise(id).await?.map(EnterpriseOut::from),
        None => None,
    };
    Ok(Json(MeOut {
        id: auth.account.id,
        login: auth.account.login,
        display_name: auth.account.display_name,
        role: auth.account.role.as_str().into(),
        province: auth.account.province,
        enterprise,
    }))
}

/// A new password for the logged-in user.
#[derive(Deserialize, ToSchema)]
pub struct PasswordChangeBody {
    /// The current password.
    pub current_password: String,
    /// The new password (policy as at registration).
    pub new_password: String,
}

/// The password was changed.
#[derive(Serialize, ToSchema)]
pub struct PasswordChangeOut {
    /// How many other sessions of the account were ended.
    pub ended_sessions: u64,
}

/// Change the caller's password. The current password is checked (a wrong one counts as a
/// failed login); every other session of the account ends, this one stays.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "accounts", security(("bearer" = [])),
    request_body = PasswordChangeBody,
    responses((status = 200, body = PasswordChangeOut), (status = 401, body = ErrorBody),
              (status = 422, description = "wrong current password, or a weak new one", body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<PasswordChangeBody>,
) -> ApiResult<Json<PasswordChangeOut>> {
    let login = auth.account.login.clone();
    let attempt = crate::throttle::reserve_login(&state, &login, &auth.address).await?;
    let ok =
        verify_password_off_thread(&body.current_password, &auth.account.password_hash).await?;
    if !ok {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.auth.wrong_password",
            "当前密码不正确",
            "The current password is wrong",
        ));
    }
    check_password_for(&body.new_password, &login)?;
    if body.new_password == body.current_password {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.registration.weak_password",
            "新密码不能与当前密码相同",
            "The new password must differ from the current one",
        ));
    }
    let new_hash = hash_password_off_thread(&body.new_password).await?;
    let now = state.clock.now();
    let audit = auth.audit(now, "password.change", "account", &auth.account.id, "", "");
    let ended = state
        .store
        .change_password(&auth.account.id, &new_hash, &auth.token_hash, now, audit)
        .await?;
    attempt.succeeded(&state).await?;
    Ok(Json(PasswordChangeOut {
        ended_sessions: ended,
    }))
}

/// A reserved login name.
#[derive(Serialize, ToSchema)]
pub struct LoginNameOut {
    /// The name, unique system-wide, reserved for the caller's enterprise.
    pub login_name: String,
}

/// 获取登录名: allocate and reserve a unique login name for the caller's enterprise; use
/// it with `login_name: {"mode": "allocate", "value": …}`.
#[utoipa::path(post, path = "/api/v1/login-names", tag = "requests", security(("bearer" = [])),
    responses((status = 201, body = LoginNameOut), (status = 403, body = ErrorBody),
              (status = 409, description = "three reserved login names are still unused", body = ErrorBody)))]
pub async fn reserve_login_name(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<(StatusCode, Json<LoginNameOut>)> {
    auth.require(&[Role::Enterprise])?;
    let enterprise_id = auth
        .account
        .enterprise_id
        .clone()
        .ok_or_else(ApiError::forbidden_role)?;
    let enterprise = state
        .store
        .enterprise(&enterprise_id)
        .await?
        .ok_or_else(|| ApiError::not_found("ekey.enterprise.not_found"))?;
    let name = state
        .store
        .reserve_login_name(&enterprise_id, &enterprise.province, state.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(LoginNameOut { login_name: name })))
}

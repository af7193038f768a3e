//! The administrator releases or transfers an enterprise account: the remedy when someone
//! registered (and activated) an enterprise that is not theirs. Both are audited and the
//! enterprise is told by mail.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Duration;
use ekey_domain::error::DomainError;
use ekey_domain::ident::{CreditCode, Email};
use ekey_domain::request::Role;
use ekey_store::{Account, Channel, Enterprise, NewMessage, NewToken, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;
use crate::auth::{Auth, new_token, token_hash};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::messages::local_time;
use crate::state::AppState;

/// How long the new owner's link to set a password works after a transfer.
const TRANSFER_LINK_HOURS: i64 = 72;

/// Subject of the mails about a release or a transfer.
pub const ACCOUNT_CHANGE_SUBJECT: &str = "电子钥匙企业账户变更通知";

/// Why the administrator releases an enterprise account.
#[derive(Deserialize, ToSchema)]
pub struct ReleaseBody {
    /// The reason, kept in the audit log and told to the enterprise.
    pub reason: String,
}

/// Transfer an enterprise account to another email.
#[derive(Deserialize, ToSchema)]
pub struct TransferBody {
    /// The new owner's email (the new login).
    pub email: String,
    /// The reason, kept in the audit log and told to both.
    pub reason: String,
}

/// The enterprise account after the change.
#[derive(Serialize, ToSchema)]
pub struct EnterpriseAccountOut {
    /// Enterprise id.
    pub enterprise_id: String,
    /// The credit code concerned.
    pub credit_code: String,
    /// `released` or `transferred`.
    pub status: String,
    /// The account's login now (transfer), or null (release).
    pub login: Option<String>,
}

async fn find(state: &AppState, code: &str) -> ApiResult<(CreditCode, Enterprise, Account)> {
    let code = CreditCode::parse(code).map_err(DomainError::from)?;
    let enterprise = state
        .store
        .enterprise_by_credit_code(code.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("ekey.enterprise.not_found"))?;
    let account = state
        .store
        .enterprise_account(&enterprise.id)
        .await?
        .ok_or_else(|| ApiError::not_found("ekey.enterprise.not_found"))?;
    Ok((code, enterprise, account))
}

fn mail(to: &str, body: String, dedup: String, at: chrono::DateTime<chrono::Utc>) -> NewMessage {
    NewMessage {
        channel: Channel::Email,
        recipient: to.to_string(),
        subject: ACCOUNT_CHANGE_SUBJECT.to_string(),
        body,
        dedup_key: dedup,
        created_at: at,
    }
}

/// Release an enterprise account (administrator): the credit code is free for a new
/// registration, the account can no longer log in; the enterprise is told by mail.
#[utoipa::path(post, path = "/api/v1/admin/enterprises/{credit_code}/release", tag = "admin",
    security(("bearer" = [])), params(("credit_code" = String, Path)), request_body = ReleaseBody,
    responses((status = 200, body = EnterpriseAccountOut), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    auth: Auth,
    Path(credit_code): Path<String>,
    ApiJson(body): ApiJson<ReleaseBody>,
) -> ApiResult<Json<EnterpriseAccountOut>> {
    auth.require(&[Role::Admin])?;
    let reason = ekey_domain::text::check_line("reason", &body.reason, 200)?;
    let (code, enterprise, account) = find(&state, &credit_code).await?;
    let now = state.clock.now();
    let text = format!(
        "{}：\n\n系统管理员已于 {} 释放贵单位在电子钥匙在线填报系统的企业账户（统一社会信用代码 {}，登录名 {}）。\n\
         原因：{reason}\n\n该账户已不能登录；该统一社会信用代码可以重新注册。\n\
         如有疑问请致电服务商：{}\n",
        enterprise.name,
        local_time(now),
        code.as_str(),
        account.login,
        state.config.provider_hotline
    );
    let released = state
        .store
        .release_enterprise(
            &enterprise.id,
            now,
            vec![mail(
                &account.email,
                text,
                format!("enterprise-release:{}", enterprise.id),
                now,
            )],
            auth.audit(
                now,
                "enterprise.release",
                "enterprise",
                &enterprise.id,
                &format!("{} {}", code.as_str(), account.login),
                &format!("released: {reason}"),
            ),
        )
        .await?;
    state.outbox_wake.notify_one();
    Ok(Json(EnterpriseAccountOut {
        enterprise_id: released.id,
        credit_code: code.as_str().into(),
        status: "released".into(),
        login: None,
    }))
}

/// Transfer an enterprise account to another email (administrator): the new owner gets a
/// link to set a password, the old password and every session end, both are told by mail.
#[utoipa::path(post, path = "/api/v1/admin/enterprises/{credit_code}/transfer", tag = "admin",
    security(("bearer" = [])), params(("credit_code" = String, Path)), request_body = TransferBody,
    responses((status = 200, body = EnterpriseAccountOut), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn transfer(
    State(state): State<AppState>,
    auth: Auth,
    Path(credit_code): Path<String>,
    ApiJson(body): ApiJson<TransferBody>,
) -> ApiResult<Json<EnterpriseAccountOut>> {
    auth.require(&[Role::Admin])?;
    let reason = ekey_domain::text::check_line("reason", &body.reason, 200)?;
    let email = Email::parse(&body.email).map_err(DomainError::from)?;
    let (code, enterprise, account) = find(&state, &credit_code).await?;
    let now = state.clock.now();
    let token = new_token();
    let hash = token_hash(&token);
    let expires = now + Duration::hours(TRANSFER_LINK_HOURS);
    let link = format!("{}/password/reset/{token}", state.config.public_url());
    let to_new = format!(
        "{}：\n\n系统管理员已于 {} 将该企业（统一社会信用代码 {}）在电子钥匙在线填报系统的企业账户转移给本邮箱，\
         登录名为 {}。\n原因：{reason}\n\n请在 {} 前打开下面的链接设置密码（链接只能使用一次）：\n\n{link}\n\n\
         如有疑问请致电服务商：{}\n",
        enterprise.name,
        local_time(now),
        code.as_str(),
        email.as_str(),
        local_time(expires),
        state.config.provider_hotline
    );
    let to_old = format!(
        "{}：\n\n系统管理员已于 {} 将该企业（统一社会信用代码 {}）的企业账户从本邮箱（登录名 {}）转移给其他邮箱。\n\
         原因：{reason}\n\n本邮箱已不能再登录该账户。如有疑问请致电服务商：{}\n",
        enterprise.name,
        local_time(now),
        code.as_str(),
        account.login,
        state.config.provider_hotline
    );
    let mut mails = vec![mail(
        email.as_str(),
        to_new,
        format!("enterprise-transfer:{}:new", &hash[..16]),
        now,
    )];
    if account.email != email.as_str() {
        mails.push(mail(
            &account.email,
            to_old,
            format!("enterprise-transfer:{}:old", &hash[..16]),
            now,
        ));
    }
    let moved = state
        .store
        .transfer_enterprise_account(
            &account.id,
            email.as_str(),
            NewToken {
                token_hash: hash,
                expires_at: expires,
                created_at: now,
            },
            mails,
            auth.audit(
                now,
                "enterprise.transfer",
                "enterprise",
                &enterprise.id,
                &account.login,
                &format!("{}: {reason}", email.as_str()),
            ),
        )
        .await
        .map_err(|e| match e {
            StoreError::Duplicate(_) => ApiError::new(
                StatusCode::CONFLICT,
                "ekey.enterprise.email_taken",
                "该邮箱已是其他账户的登录名，不能转移到该邮箱",
                "This email is already another account's login",
            ),
            other => other.into(),
        })?;
    state.outbox_wake.notify_one();
    Ok(Json(EnterpriseAccountOut {
        enterprise_id: enterprise.id,
        credit_code: code.as_str().into(),
        status: "transferred".into(),
        login: Some(moved.login),
    }))
}

//! Registration without squatting and without telling strangers what exists: a
//! registration claims nothing until its link is opened; when the email or the credit
//! code named is registered already, the caller gets the usual answer and the owner a
//! mail saying someone tried.

use axum::http::StatusCode;
use chrono::Duration;
use ekey_store::{
    Channel, Enterprise, NewAudit, NewMessage, NewToken, PendingRegistration, StoreError,
};

use crate::auth::{new_token, token_hash};
use crate::error::{ApiError, ApiResult};
use crate::messages::{activation_mail, local_time};
use crate::state::AppState;

/// Pending registrations whose link expired this many days ago are deleted (until then a
/// resend can still give them a new link).
pub const FORGET_PENDING_DAYS: i64 = 30;

/// Subject of the mail telling an owner that someone tried to register what they hold.
pub const ATTEMPT_SUBJECT: &str = "有人尝试使用您的信息注册电子钥匙企业账户";

async fn notice(
    state: &AppState,
    address: &str,
    to: &str,
    body: String,
    dedup: String,
    (object_type, object_id, action): (&str, &str, &str),
) -> ApiResult<()> {
    let now = state.clock.now();
    state
        .store
        .append_audit(NewAudit {
            at: now,
            actor_role: "anonymous".into(),
            address: address.to_string(),
            action: action.into(),
            object_type: object_type.into(),
            object_id: object_id.into(),
            ..Default::default()
        })
        .await?;
    // The caller's own request already took from this recipient's quota when the mail goes
    // to the address the caller typed; a notice to another owner takes from theirs, and is
    // dropped when that is used up (refusing would tell the caller something).
    state
        .store
        .enqueue(vec![NewMessage {
            channel: Channel::Email,
            recipient: to.to_string(),
            subject: ATTEMPT_SUBJECT.to_string(),
            body,
            dedup_key: dedup,
            created_at: now,
        }])
        .await?;
    state.outbox_wake.notify_one();
    Ok(())
}

/// Someone registered with an email that already has an account: its owner is told.
pub async fn email_exists(
    state: &AppState,
    address: &str,
    email: &str,
    attempt_id: &str,
) -> ApiResult<()> {
    let now = state.clock.now();
    let body = format!(
        "您好：\n\n{} 有人使用本邮箱 {email} 在电子钥匙在线填报系统注册企业账户。\n\
         本邮箱已有企业账户，此次注册未生效。\n\
         如果是您本人操作，请直接登录；忘记密码可在登录页点击“忘记密码”。\n\
         如果不是您本人操作，请忽略本邮件，您的账户不受影响。\n\n\
         电子钥匙服务商客服电话：{}\n",
        local_time(now),
        state.config.provider_hotline
    );
    notice(
        state,
        address,
        email,
        body,
        format!("registration-attempt:{attempt_id}"),
        ("account", email, "registration.email_exists"),
    )
    .await
}

/// Someone registered a credit code that has an enterprise account: the account's owner
/// is told (within their own mail quota).
pub async fn credit_code_exists(
    state: &AppState,
    address: &str,
    enterprise: &Enterprise,
    attempt_id: &str,
) -> ApiResult<()> {
    let Some(owner) = state.store.enterprise_account(&enterprise.id).await? else {
        return Ok(());
    };
    if !crate::mailquota::take_notice(state, &owner.email).await? {
        return Ok(());
    }
    let now = state.clock.now();
    let body = format!(
        "{}：\n\n{} 有人以贵单位的统一社会信用代码 {} 在电子钥匙在线填报系统提交了新的企业账户注册。\n\
         贵单位已有企业账户（登录名 {}），该注册不会生效，贵单位的账户不受影响。\n\
         如果这是贵单位的其他人员，请使用现有账户办理；如有疑问请致电服务商。\n\n\
         电子钥匙服务商客服电话：{}\n",
        enterprise.name,
        local_time(now),
        enterprise.credit_code,
        owner.login,
        state.config.provider_hotline
    );
    notice(
        state,
        address,
        &owner.email,
        body,
        format!("registration-attempt:{attempt_id}"),
        (
            "enterprise",
            &enterprise.id,
            "registration.credit_code_exists",
        ),
    )
    .await
}

/// A new activation link for a pending registration (the older one stops working).
pub async fn resend_pending(state: &AppState, pending: &PendingRegistration) -> ApiResult<()> {
    let now = state.clock.now();
    let token = new_token();
    let expires = now + Duration::hours(state.config.activation_ttl_hours);
    let link = format!("{}/api/v1/activations/{token}", state.config.public_url());
    state
        .store
        .reissue_pending_activation(
            &pending.id,
            NewToken {
                token_hash: token_hash(&token),
                expires_at: expires,
                created_at: now,
            },
            activation_mail(
                &pending.enterprise_name,
                &pending.email,
                &link,
                expires,
                &state.config.provider_hotline,
                now,
                &format!("activation:{}:{}", pending.id, &token_hash(&token)[..16]),
            ),
        )
        .await?;
    state.outbox_wake.notify_one();
    Ok(())
}

/// What an activation link answers when another registration of the same credit code or
/// email was activated first.
pub fn activation_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Duplicate("credit_code") => ApiError::new(
            StatusCode::CONFLICT,
            "ekey.registration.enterprise_taken",
            "无法激活：该统一社会信用代码已有企业账户（另一份注册已先激活），本次注册未生效。如该账户不属于贵单位，请致电服务商，系统管理员核实后可释放或转移该企业账户",
            "Cannot activate: another registration of this credit code was activated first, so this one has no effect. If that account is not yours, call the provider: the administrator can release or transfer it",
        ),
        StoreError::Duplicate("login") => ApiError::new(
            StatusCode::CONFLICT,
            "ekey.registration.email_taken",
            "无法激活：该邮箱已有激活的企业账户，本次注册未生效；请直接登录，忘记密码可点击“忘记密码”",
            "Cannot activate: this email already has an active account; log in, or reset the password",
        ),
        other => other.into(),
    }
}

//! `ekey admin create`: an administrator made from the command line, so that a production
//! install (which has no demo accounts) gets its first one. The same rules as an account made
//! by an administrator (login, password policy), audited; an existing login is never
//! replaced.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use ekey_domain::request::Role;
use ekey_store::{Account, NewAccount, NewAudit, Store, StoreError};

use crate::error::ApiError;

/// What the operator gives.
pub struct NewAdmin<'a> {
    /// The login (3–40 letters, digits, `-`, `_`, `.`).
    pub login: &'a str,
    /// Email for password-reset mails, if any.
    pub email: Option<&'a str>,
    /// Name shown (default 系统管理员).
    pub display_name: Option<&'a str>,
    /// The password, read like a PIN (never from the command line).
    pub password: &'a str,
    /// Who ran the command (the audit record's actor), e.g. `$USER`.
    pub operator: &'a str,
}

/// Creates the administrator, or refuses: a weak password or a bad login (422 codes as in
/// the API), or `ekey.user.duplicate` when the login exists — the existing account is left
/// exactly as it was.
pub async fn create_admin(
    store: &dyn Store,
    now: DateTime<Utc>,
    new: NewAdmin<'_>,
) -> Result<Account, ApiError> {
    let login = crate::api::admin::staff_login(new.login)?;
    crate::api::accounts::check_password_for(new.password, &login)?;
    let email = match new.email.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => ekey_domain::ident::Email::parse(e)
            .map_err(ekey_domain::error::DomainError::from)?
            .as_str()
            .to_string(),
        None => String::new(),
    };
    let display_name = match new.display_name {
        Some(n) => crate::api::required_text(n, "display_name", 64)?,
        None => "系统管理员".to_string(),
    };
    let duplicate = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "ekey.user.duplicate",
            format!("登录名 {login} 已被使用，现有账户未作任何更改"),
            format!("The login {login} is taken; the existing account was not changed"),
        )
    };
    if store.account_by_login(&login).await?.is_some() {
        return Err(duplicate());
    }
    let hash = crate::auth::hash_password_off_thread(new.password).await?;
    let id = uuid::Uuid::now_v7().to_string();
    store
        .create_account(
            NewAccount {
                id: id.clone(),
                login: login.clone(),
                email,
                display_name,
                mobile: None,
                password_hash: hash,
                role: Role::Admin,
                enterprise_id: None,
                province: None,
                active: true,
                created_at: now,
            },
            NewAudit {
                at: now,
                actor_id: new.operator.to_string(),
                actor_role: "operator".into(),
                address: "cli".into(),
                action: "user.create".into(),
                object_type: "account".into(),
                object_id: id,
                after: Role::Admin.as_str().into(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| match e {
            // Created by someone else between the look-up and the insert.
            StoreError::Duplicate(_) => duplicate(),
            other => other.into(),
        })
}

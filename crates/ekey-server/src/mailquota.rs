//! Mail quotas: registration, activation resend and password reset each make the server
//! write to an address the anonymous caller types. Without a limit the server is a mail
//! cannon (anyone's mailbox flooded from our domain, our domain's reputation gone).
//!
//! Each such request takes one unit from the caller's address and one from the recipient,
//! whether or not the address belongs to an account (so the answer — 429 or not — says
//! nothing about which emails exist). Counted in the database ([`ekey_store::Store::take_quota`]),
//! so every instance counts alike and concurrent requests cannot overshoot. Notices the
//! server sends on its own initiative to an existing owner ("someone tried to register
//! your credit code") take only from the owner's quota and are dropped silently when it
//! is used up.

use axum::http::StatusCode;
use chrono::Duration;
use ekey_store::{QuotaOutcome, QuotaTake};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Mails one recipient can be sent through the public forms per [`RECIPIENT_WINDOW_HOURS`].
pub const PER_RECIPIENT: i64 = 5;
/// The recipient's window.
pub const RECIPIENT_WINDOW_HOURS: i64 = 24;
/// Mail requests one client address may make per [`ADDRESS_WINDOW_HOURS`] (an office
/// behind one address registering and resetting passwords stays well under it).
pub const PER_ADDRESS: i64 = 20;
/// The address's window.
pub const ADDRESS_WINDOW_HOURS: i64 = 1;

fn recipient_take(recipient: &str) -> QuotaTake {
    QuotaTake {
        key: format!("to:{}", recipient.trim().to_lowercase()),
        limit: PER_RECIPIENT,
        window: Duration::hours(RECIPIENT_WINDOW_HOURS),
    }
}

/// Takes one mail from the quota of the caller's `address` and of `recipient`, or refuses
/// with 429 `ekey.mail.rate_limited` naming the wait (and takes nothing).
pub async fn take(state: &AppState, address: &str, recipient: &str) -> ApiResult<()> {
    let now = state.clock.now();
    let takes = [
        QuotaTake {
            key: format!("addr:{address}"),
            limit: PER_ADDRESS,
            window: Duration::hours(ADDRESS_WINDOW_HOURS),
        },
        recipient_take(recipient),
    ];
    match state.store.take_quota(&takes, now).await? {
        QuotaOutcome::Taken => Ok(()),
        QuotaOutcome::Refused { key, until } => {
            let minutes = ((until - now).num_seconds().max(1) + 59) / 60;
            tracing::info!(key = %key, minutes, "mail quota used up");
            Err(if key.starts_with("to:") {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ekey.mail.rate_limited",
                    format!(
                        "发往该邮箱的邮件已达每日上限（{PER_RECIPIENT} 封），请 {minutes} 分钟后再试；如急需办理请致电服务商"
                    ),
                    format!(
                        "This address has been sent the most mails allowed per day ({PER_RECIPIENT}); try again in {minutes} minute(s)"
                    ),
                )
            } else {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ekey.mail.rate_limited",
                    format!("请求发送邮件过于频繁，请 {minutes} 分钟后再试"),
                    format!(
                        "Too many mail requests from your address; try again in {minutes} minute(s)"
                    ),
                )
            })
        }
    }
}

/// Takes one mail from `recipient`'s quota for a notice the server sends on its own;
/// false (send nothing) when it is used up.
pub async fn take_notice(state: &AppState, recipient: &str) -> ApiResult<bool> {
    let outcome = state
        .store
        .take_quota(&[recipient_take(recipient)], state.clock.now())
        .await?;
    Ok(outcome == QuotaOutcome::Taken)
}

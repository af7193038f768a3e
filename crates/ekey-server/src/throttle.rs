//! Failed-login throttling with back-off, per login name and per client address, counted
//! in the database so that every instance refuses alike (N instances do not allow N times
//! the guesses).
//!
//! The first few failures are free; from then on each further attempt must wait, the wait
//! doubling with every failure up to an hour. A successful login clears the login's count
//! (not the address's); a day without failures forgets either. A password reset request
//! counts like a failure, so a flood of reset mails is refused like a flood of guesses.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How many failures are free and how the wait grows after them.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Failures before the first wait.
    pub free: i64,
    /// The first wait.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

/// Per login name: five free failures, then 1, 2, 4 … minutes, at most an hour.
pub const PER_LOGIN: Policy = Policy {
    free: 5,
    base: Duration::from_secs(60),
    max: Duration::from_secs(3600),
};

/// Per client address: twenty free failures (an office behind one address), then the same.
pub const PER_ADDRESS: Policy = Policy {
    free: 20,
    base: Duration::from_secs(60),
    max: Duration::from_secs(3600),
};

/// Failures older than this are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

impl Policy {
    /// The wait after the last of `failures` failures before the next attempt.
    pub fn wait(&self, failures: i64) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free).clamp(0, 20) as u32;
        self.base.saturating_mul(1 << doublings).min(self.max)
    }
}

fn login_key(login: &str) -> String {
    format!("login:{}", login.trim().to_lowercase())
}

fn address_key(address: &str) -> String {
    format!("addr:{address}")
}

/// When the next attempt for `login` from `address` is allowed, if not now.
pub async fn locked_until(
    state: &AppState,
    login: &str,
    address: &str,
) -> ApiResult<Option<DateTime<Utc>>> {
    let now = state.clock.now();
    let keys = [login_key(login), address_key(address)];
    let counts = state.store.login_failures(&keys).await?;
    let forget = chrono::Duration::from_std(FORGET_AFTER).unwrap_or_default();
    let mut until: Option<DateTime<Utc>> = None;
    for (key, failures, last_at) in counts {
        if last_at + forget < now {
            continue;
        }
        let policy = if key.starts_with("login:") {
            PER_LOGIN
        } else {
            PER_ADDRESS
        };
        let wait = chrono::Duration::from_std(policy.wait(failures)).unwrap_or_default();
        let end = last_at + wait;
        if end > now && until.is_none_or(|u| end > u) {
            until = Some(end);
        }
    }
    Ok(until)
}

/// Refuses with 429 `ekey.auth.rate_limited` (naming the wait) while `login` or `address`
/// must wait.
pub async fn check(state: &AppState, login: &str, address: &str) -> ApiResult<()> {
    let Some(until) = locked_until(state, login, address).await? else {
        return Ok(());
    };
    let seconds = (until - state.clock.now()).num_seconds().max(1);
    let minutes = (seconds + 59) / 60;
    Err(ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "ekey.auth.rate_limited",
        format!("登录失败次数过多，请 {minutes} 分钟后再试，或使用“忘记密码”"),
        format!("Too many failed logins; try again in {minutes} minute(s), or reset the password"),
    ))
}

/// Counts a failure for `login` and for `address`.
pub async fn failed(state: &AppState, login: &str, address: &str) -> ApiResult<()> {
    let now = state.clock.now();
    let forget = chrono::Duration::from_std(FORGET_AFTER).unwrap_or_default();
    state
        .store
        .record_login_failure(&[login_key(login), address_key(address)], now, now - forget)
        .await?;
    Ok(())
}

/// Clears the failures of `login` after it logged in.
pub async fn succeeded(state: &AppState, login: &str) -> ApiResult<()> {
    state.store.clear_login_failures(&login_key(login)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_after_the_free_failures_up_to_an_hour() {
        let waits: Vec<u64> = (0..14).map(|n| PER_LOGIN.wait(n).as_secs()).collect();
        assert_eq!(
            waits,
            [
                0, 0, 0, 0, 0, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600
            ]
        );
        assert_eq!(PER_ADDRESS.wait(19), Duration::ZERO);
        assert_eq!(PER_ADDRESS.wait(20).as_secs(), 60);
        assert_eq!(PER_LOGIN.wait(i64::MAX).as_secs(), 3600);
    }
}

//! Failed-login throttling with back-off, counted in the database so that every instance
//! refuses alike (N instances do not allow N times the guesses).
//!
//! An attempt is **reserved before the password is checked**: one transaction checks every
//! count that applies and, only when none must wait, counts the attempt under all of them.
//! So a hundred simultaneous guesses cannot all pass a check made before any was counted;
//! the ones beyond the free quota are refused before Argon2 runs. A right password gives the
//! reservation back.
//!
//! What is counted, so that nobody can lock someone else out:
//! - per login **and** client address ([`PER_LOGIN_AND_ADDRESS`]): the small free quota and
//!   the back-off. Failures from one address never stop the right password from another.
//! - per login across all addresses ([`PER_LOGIN`]): a much higher ceiling, against guessing
//!   one password from many addresses.
//! - per client address across all logins ([`PER_ADDRESS`]): against one address trying
//!   many logins; high enough for an office behind one NAT.
//!
//! Password-reset requests have their own counts ([`RESETS_PER_LOGIN`],
//! [`RESETS_PER_ADDRESS`]): they are never refused because of failed logins, and failed
//! logins are never refused because of them. Certificate (key) logins are not counted here
//! at all: a key has its own PIN counter, and a challenge is good for one attempt.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use ekey_domain::throttle::Attempt;
pub use ekey_domain::throttle::Policy;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// Per login and client address: five free failures, then 1, 2, 4 … minutes, at most an hour.
pub const PER_LOGIN_AND_ADDRESS: Policy = Policy {
    free: 5,
    base: MINUTE,
    max: HOUR,
};

/// Per login across every address: fifty free failures (ten addresses using up their own
/// quota), then the same back-off.
pub const PER_LOGIN: Policy = Policy {
    free: 50,
    base: MINUTE,
    max: HOUR,
};

/// Per client address across every login: twenty free failures (an office behind one
/// address), then the same back-off.
pub const PER_ADDRESS: Policy = Policy {
    free: 20,
    base: MINUTE,
    max: HOUR,
};

/// Password-reset requests per login: five a day free, then 1, 2, 4 … minutes apart.
pub const RESETS_PER_LOGIN: Policy = Policy {
    free: 5,
    base: MINUTE,
    max: HOUR,
};

/// Password-reset requests per client address: twenty a day free, then the same.
pub const RESETS_PER_ADDRESS: Policy = Policy {
    free: 20,
    base: MINUTE,
    max: HOUR,
};

/// Counts older than this are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The address as counted: an IPv6 client owns a whole /64, so it is counted as one.
pub(crate) fn address_bucket(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        _ => address.to_string(),
    }
}

fn normal_login(login: &str) -> String {
    login.trim().to_lowercase()
}

fn login_key(login: &str) -> String {
    format!("login:{}", normal_login(login))
}

fn address_key(address: &str) -> String {
    format!("addr:{}", address_bucket(address))
}

fn pair_key(login: &str, address: &str) -> String {
    format!(
        "login-addr:{} {}",
        address_bucket(address),
        normal_login(login)
    )
}

fn reset_login_key(login: &str) -> String {
    format!("reset:{}", normal_login(login))
}

fn reset_address_key(address: &str) -> String {
    format!("reset-addr:{}", address_bucket(address))
}

/// A password check that may go ahead: counted as a failure until [`LoginAttempt::succeeded`].
#[must_use = "a right password must give the reservation back"]
pub struct LoginAttempt {
    login: String,
    address: String,
}

impl LoginAttempt {
    /// The password was right: the reservation is given back and this address's failures
    /// for the login are forgotten (other addresses' failures stay counted).
    pub async fn succeeded(self, state: &AppState) -> ApiResult<()> {
        state
            .store
            .release_attempt(
                &[login_key(&self.login), address_key(&self.address)],
                &[pair_key(&self.login, &self.address)],
            )
            .await?;
        Ok(())
    }
}

async fn reserve(
    state: &AppState,
    buckets: Vec<(String, Policy)>,
) -> ApiResult<Result<(), DateTime<Utc>>> {
    let now = state.clock.now();
    let forget = chrono::Duration::from_std(FORGET_AFTER).unwrap_or_default();
    Ok(
        match state
            .store
            .reserve_attempt(&buckets, now, now - forget)
            .await?
        {
            Attempt::Reserved => Ok(()),
            Attempt::WaitUntil(until) => Err(until),
        },
    )
}

fn minutes_until(state: &AppState, until: DateTime<Utc>) -> i64 {
    let seconds = (until - state.clock.now()).num_seconds().max(1);
    (seconds + 59) / 60
}

/// The longest login there can be: an email address (RFC 5321: 254 characters).
pub const MAX_LOGIN_CHARS: usize = 254;

/// Refuses a login longer than any account's (400 `ekey.auth.login_too_long`) before the
/// back-off table or the audit log is touched, so that neither grows by what a caller types.
pub fn check_login_length(login: &str) -> ApiResult<()> {
    if login.trim().chars().count() > MAX_LOGIN_CHARS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ekey.auth.login_too_long",
            format!("登录名过长：最多 {MAX_LOGIN_CHARS} 个字符"),
            format!("The login is too long: at most {MAX_LOGIN_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Reserves one password check of `login` from `address`, or refuses with 429
/// `ekey.auth.rate_limited` (naming the wait) before anything is checked; a login longer
/// than [`MAX_LOGIN_CHARS`] is refused first and counts nowhere.
pub async fn reserve_login(
    state: &AppState,
    login: &str,
    address: &str,
) -> ApiResult<LoginAttempt> {
    check_login_length(login)?;
    let buckets = vec![
        (pair_key(login, address), PER_LOGIN_AND_ADDRESS),
        (login_key(login), PER_LOGIN),
        (address_key(address), PER_ADDRESS),
    ];
    match reserve(state, buckets).await? {
        Ok(()) => Ok(LoginAttempt {
            login: login.to_string(),
            address: address.to_string(),
        }),
        Err(until) => {
            let minutes = minutes_until(state, until);
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ekey.auth.rate_limited",
                format!("登录失败次数过多，请 {minutes} 分钟后再试，或使用“忘记密码”"),
                format!(
                    "Too many failed logins; try again in {minutes} minute(s), or reset the password"
                ),
            ))
        }
    }
}

/// Counts one password-reset request of `login` from `address`, or refuses with 429
/// `ekey.auth.rate_limited` (naming the wait). Failed logins play no part. A login longer
/// than [`MAX_LOGIN_CHARS`] is refused first and counts nowhere.
pub async fn reset_requested(state: &AppState, login: &str, address: &str) -> ApiResult<()> {
    check_login_length(login)?;
    let buckets = vec![
        (reset_login_key(login), RESETS_PER_LOGIN),
        (reset_address_key(address), RESETS_PER_ADDRESS),
    ];
    match reserve(state, buckets).await? {
        Ok(()) => Ok(()),
        Err(until) => {
            let minutes = minutes_until(state, until);
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ekey.auth.rate_limited",
                format!("重置密码的请求过于频繁，请 {minutes} 分钟后再试"),
                format!("Too many password reset requests; try again in {minutes} minute(s)"),
            ))
        }
    }
}

/// A password was reset through a mailed link (proof of the mailbox): the login's failures,
/// across all addresses and from this one, are forgotten.
pub async fn password_was_reset(state: &AppState, login: &str, address: &str) -> ApiResult<()> {
    state
        .store
        .release_attempt(&[], &[login_key(login), pair_key(login, address)])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_after_the_free_failures_up_to_an_hour() {
        let waits: Vec<u64> = (0..14)
            .map(|n| PER_LOGIN_AND_ADDRESS.wait(n).as_secs())
            .collect();
        assert_eq!(
            waits,
            [
                0, 0, 0, 0, 0, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600
            ]
        );
        assert_eq!(PER_ADDRESS.wait(19), Duration::ZERO);
        assert_eq!(PER_ADDRESS.wait(20).as_secs(), 60);
        assert_eq!(PER_LOGIN.wait(49), Duration::ZERO);
        assert_eq!(PER_LOGIN.wait(i64::MAX).as_secs(), 3600);
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_bit_prefix() {
        assert_eq!(
            address_bucket("2001:db8:1:2:aaaa::1"),
            address_bucket("2001:db8:1:2:bbbb::2")
        );
        assert_ne!(
            address_bucket("2001:db8:1:2::1"),
            address_bucket("2001:db8:1:3::1")
        );
        assert_eq!(address_bucket("::ffff:203.0.113.5"), "203.0.113.5");
        assert_eq!(address_bucket("203.0.113.5"), "203.0.113.5");
        assert_eq!(address_bucket("unknown"), "unknown");
    }
}

//! Back-off of repeated attempts (failed logins, reset requests): the first few are free,
//! then each further attempt must wait, the wait doubling up to a ceiling. The counts live
//! in the database (every instance refuses alike); the rule lives here.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How many attempts are free and how the wait grows after them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Attempts before the first wait.
    pub free: i64,
    /// The first wait.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Policy {
    /// The wait after the last of `count` counted attempts before the next one.
    pub fn wait(&self, count: i64) -> Duration {
        if count < self.free {
            return Duration::ZERO;
        }
        let doublings = (count - self.free).clamp(0, 20) as u32;
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// When the next attempt is allowed after `count` attempts, the last at `last_at`;
    /// `None` when it is allowed at `now`. Counts whose last attempt is older than `forget`
    /// are forgotten.
    pub fn next_allowed(
        &self,
        count: i64,
        last_at: DateTime<Utc>,
        now: DateTime<Utc>,
        forget: Duration,
    ) -> Option<DateTime<Utc>> {
        let forget = chrono::Duration::from_std(forget).unwrap_or(chrono::Duration::MAX);
        if last_at.checked_add_signed(forget).is_some_and(|t| t < now) {
            return None;
        }
        let wait = self.wait(count);
        // Below the free quota nothing waits, even when a concurrent attempt recorded a
        // `last_at` later than our `now` (taken before we waited for its row lock).
        if wait.is_zero() {
            return None;
        }
        let wait = chrono::Duration::from_std(wait).unwrap_or_default();
        let end = last_at.checked_add_signed(wait)?;
        (end > now).then_some(end)
    }
}

/// The answer to "may I try once more?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Counted in advance: the attempt may go ahead.
    Reserved,
    /// Not counted: nothing may be tried before this instant.
    WaitUntil(DateTime<Utc>),
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        free: 5,
        base: Duration::from_secs(60),
        max: Duration::from_secs(3600),
    };

    #[test]
    fn the_wait_doubles_after_the_free_attempts_and_is_forgotten_after_a_day() {
        let waits: Vec<u64> = (0..14).map(|n| P.wait(n).as_secs()).collect();
        assert_eq!(
            waits,
            [
                0, 0, 0, 0, 0, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600
            ]
        );
        assert_eq!(P.wait(i64::MAX).as_secs(), 3600);
        let t = DateTime::parse_from_rfc3339("2026-02-12T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(P.next_allowed(4, t, t, day), None);
        assert_eq!(
            P.next_allowed(5, t, t, day),
            Some(t + chrono::Duration::seconds(60))
        );
        assert_eq!(
            P.next_allowed(5, t, t + chrono::Duration::seconds(60), day),
            None
        );
        assert_eq!(
            P.next_allowed(99, t, t + chrono::Duration::hours(25), day),
            None
        );
    }

    #[test]
    fn a_free_attempt_is_not_refused_when_a_concurrent_one_was_recorded_later() {
        // `now` is read before the row lock is taken; a concurrent attempt may have written
        // a later `last_at` meanwhile. Below the quota that must not make anyone wait.
        let t = DateTime::parse_from_rfc3339("2026-02-12T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let day = Duration::from_secs(24 * 3600);
        let later = t + chrono::Duration::milliseconds(30);
        assert_eq!(P.next_allowed(3, later, t, day), None);
        assert_eq!(
            P.next_allowed(5, later, t, day),
            Some(later + chrono::Duration::seconds(60))
        );
    }
}

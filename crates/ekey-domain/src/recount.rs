//! Recounting a running deadline when the calendar changes (a year's official holiday
//! arrangement loaded after deadlines were counted on the statutory holidays alone): which
//! step's clock runs, and since when, read from the request's history through the one
//! transition table.

use chrono::{DateTime, Utc};

use crate::request::{Deadline, Kind, Status};

/// One line of a request's history as the recount needs it.
#[derive(Clone, Copy, Debug)]
pub struct Step<'a> {
    /// Status before (none at creation).
    pub from: Option<Status>,
    /// The action's machine name (`agency_approve`, …; other lines are skipped).
    pub action: &'a str,
    /// When.
    pub at: DateTime<Utc>,
}

/// The start and the limit (working days) of the deadline running after `history` (oldest
/// first): the latest step whose rule started a clock, followed only by steps that kept it
/// (复核 then production keep the 5 days started by 验核通过). `None` when no clock runs.
pub fn running_since(kind: Kind, history: &[Step<'_>]) -> Option<(DateTime<Utc>, u32)> {
    for step in history.iter().rev() {
        // Creation: nothing ran before it.
        let from = step.from?;
        let Some(rule) = kind
            .rules()
            .find(|r| r.from == from && r.action.as_str() == step.action)
        else {
            // Not a status change of the table (a recount, a revocation note): skip it.
            continue;
        };
        match rule.deadline {
            Deadline::Start(n) => return Some((step.at, n)),
            Deadline::Keep => continue,
            Deadline::Clear => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, 2, 0, 0).unwrap()
    }

    #[test]
    fn the_clock_of_the_current_step() {
        let s = |from, action, day| Step {
            from: Some(from),
            action,
            at: at(day),
        };
        let created = Step {
            from: None,
            action: "create",
            at: at(1),
        };
        let mut h = vec![
            created,
            s(Status::Draft, "submit", 2),
            s(Status::AwaitingMaterials, "confirm_upload", 3),
        ];
        assert_eq!(running_since(Kind::First, &h), Some((at(3), 2)));
        h.push(s(Status::AgencyReview, "deadline_recomputed", 4));
        assert_eq!(running_since(Kind::First, &h), Some((at(3), 2)));
        h.push(s(Status::AgencyReview, "agency_approve", 7));
        assert_eq!(running_since(Kind::First, &h), Some((at(7), 5)));
        // Production keeps the 5 days started by 验核通过.
        h.push(s(Status::ProviderReview, "provider_approve", 8));
        assert_eq!(running_since(Kind::First, &h), Some((at(7), 5)));
        h.push(s(Status::InProduction, "ship", 9));
        assert_eq!(running_since(Kind::First, &h), None);
        assert_eq!(running_since(Kind::First, &h[..2]), None);
        // Unlock: 3 days for the provider from 确认上传.
        let u = [
            created,
            s(Status::Draft, "submit", 2),
            s(Status::AwaitingMaterials, "confirm_upload", 3),
        ];
        assert_eq!(running_since(Kind::Unlock, &u), Some((at(3), 3)));
    }
}

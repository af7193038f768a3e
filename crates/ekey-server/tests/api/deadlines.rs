//! Deadlines on real dates, worked out by hand from the State Council's 2026 Spring Festival
//! arrangement (off 2/15–2/23; Saturdays 2/14 and 2/28 are make-up workdays). The day of the
//! event never counts; a step of N working days is overdue from 00:00 after its Nth working
//! day (Asia/Shanghai). See docs/deadlines.md.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub async fn spring_festival_deadlines_match_the_hand_worked_dates(db: Db) {
    // Confirmed on Friday 2026-02-13 at 16:30.
    let s = TestServer::start_at(db, at("2026-02-13T16:30:00+08:00")).await;
    let ent = s.login("demo@ekey.example").await;
    let id = request_in_agency_review(&s, &ent).await;
    // 验核, 2 working days: (Fri 2/13 does not count) Sat 2/14 make-up workday = 1,
    // 2/15–2/23 holiday, Tue 2/24 = 2 → overdue from 00:00 on Wed 2/25.
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["due_at"], "2026-02-25T00:00:00+08:00", "{r}");
    assert_eq!(r["overdue"], false);

    // One minute before the end of 2/24 it is not overdue; at 00:00 on 2/25 it is.
    // (Sessions last 12 hours: log in again after moving the clock.)
    s.clock.set(at("2026-02-24T23:59:00+08:00"));
    let ent = s.login("demo@ekey.example").await;
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["overdue"], false, "{r}");
    s.clock.set(at("2026-02-25T00:00:00+08:00"));
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["overdue"], true, "{r}");

    // The agency approves on Wed 2/25 at 09:00; 复核 + production, 5 working days:
    // Thu 2/26 = 1, Fri 2/27 = 2, Sat 2/28 make-up = 3, Mon 3/2 = 4, Tue 3/3 = 5
    // → overdue from 00:00 on Wed 3/4.
    s.clock.set(at("2026-02-25T09:00:00+08:00"));
    let agency = s.login("agency-320000").await;
    let (status, r) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&agency),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["due_at"], "2026-03-04T00:00:00+08:00", "{r}");

    // The enterprise's request page shows the same date.
    let p = crate::pages::PageClient::new(&s);
    p.login("demo@ekey.example", PASSWORD).await;
    let page = p.get(&format!("/portal/requests/{id}")).await;
    assert!(
        page.body.contains("2026年3月4日 00:00"),
        "the request page shows the due time"
    );
    s.stop().await;
}

on_both_databases!(spring_festival_deadlines_match_the_hand_worked_dates);

//! Deadlines that reach into a year whose official holiday arrangement is not loaded yet
//! (issue 16 item 4): counted on the holidays the law fixes (元旦 2027-01-01 is not a working
//! day), marked provisional wherever a user reads them (API, portal, console, the clerks'
//! digest), counted by the administrator's page, and recounted — with a history line — when
//! the year's file is loaded.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

const NOTE: &str = "2027年节假日安排尚未发布，本时限暂按法定节日计算，可能调整";

/// A hypothetical 2027 arrangement: 1/1–1/4 off (so the count moves by one day).
const FILE_2027: &str = r#"{"year": 2027, "papers": ["https://example.invalid/2027"], "days": [
    {"name": "元旦", "date": "2027-01-01", "isOffDay": true},
    {"name": "元旦", "date": "2027-01-02", "isOffDay": true},
    {"name": "元旦", "date": "2027-01-03", "isOffDay": true},
    {"name": "元旦", "date": "2027-01-04", "isOffDay": true}]}"#;

async fn digest_body(s: &TestServer, to: &str) -> Option<String> {
    for _ in 0..100 {
        let found =
            s.mailbox().await.into_iter().find(|m| {
                m["to"] == to && m["subject"].as_str().unwrap_or("").contains("今日待办")
            });
        if let Some(m) = found {
            return m["body"].as_str().map(str::to_string);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

pub async fn deadlines_into_2027_are_provisional_until_its_file_is_loaded(db: Db) {
    // Confirmed on Wednesday 2026-12-30: 验核, 2 working days — Thu 12/31 = 1, Fri 1/1 元旦
    // (by the law, although 2027's arrangement is not loaded), weekend, Mon 1/4 = 2 → overdue
    // from 00:00 on Tue 2027-01-05.
    let s = TestServer::start_with(db, at("2026-12-30T10:00:00+08:00"), |c| {
        c.reminder_poll_ms = 50
    })
    .await;
    let ent = s.login("demo@ekey.example").await;
    let id = request_in_agency_review(&s, &ent).await;
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["due_at"], "2027-01-05T00:00:00+08:00", "{r}");
    assert_eq!(r["due_note"], NOTE, "{r}");
    let (_, list) = s.get("/api/v1/requests", Some(&ent)).await;
    assert_eq!(list[0]["due_note"], NOTE, "{list}");

    // The enterprise's pages and the agency's console say so.
    let p = crate::pages::PageClient::new(&s);
    p.login("demo@ekey.example", PASSWORD).await;
    let page = p.get(&format!("/portal/requests/{id}")).await;
    assert!(page.body.contains("2027年1月5日 00:00"), "{}", page.body);
    assert!(
        page.body.contains(NOTE),
        "the request page marks it provisional"
    );
    assert!(p.get("/portal").await.body.contains(NOTE), "home");
    let clerk = crate::pages::PageClient::new(&s);
    clerk.login("agency-320000", PASSWORD).await;
    assert!(
        clerk
            .get(&format!("/console/requests/{id}"))
            .await
            .body
            .contains(NOTE),
        "console request"
    );
    assert!(
        clerk.get("/console/queue").await.body.contains(NOTE),
        "console queue"
    );

    // The administrator sees how many running deadlines reach into a year without data.
    let admin = s.login("admin").await;
    let (status, cal) = s.get("/api/v1/admin/holidays", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{cal}");
    assert_eq!(cal["provisional_deadlines"], 1, "{cal}");
    assert_eq!(cal["provisional_years"], serde_json::json!([2027]), "{cal}");
    let admin_page = crate::pages::PageClient::new(&s);
    admin_page.login("admin", PASSWORD).await;
    let home = admin_page.get("/console/admin").await;
    assert!(
        home.body.contains("尚无节假日安排的年份") && home.body.contains("2027"),
        "{}",
        home.body
    );

    // Monday 2027-01-04 is the last day: the clerks' digest lists it, marked provisional.
    s.clock.set(at("2027-01-04T08:30:00+08:00"));
    let body = digest_body(&s, "agency-320000@ekey.example")
        .await
        .expect("a digest on Monday 2027-01-04");
    assert!(body.contains(NOTE), "{body}");

    // The year's file is loaded: the deadline is recounted (Tue 1/5 = 2 now), the history
    // says so, and nothing is provisional any more.
    let admin = s.login("admin").await;
    let (status, v) = s
        .put_bytes(
            "/api/v1/admin/holidays",
            Some(&admin),
            "application/json",
            FILE_2027.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["recomputed"], 1, "{v}");
    let ent = s.login("demo@ekey.example").await;
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["due_at"], "2027-01-06T00:00:00+08:00", "{r}");
    assert_eq!(r["due_note"], Value::Null, "{r}");
    assert_eq!(r["status"], "agency_review");
    let last = r["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "deadline_recomputed", "{last}");
    let remark = last["remark"].as_str().unwrap();
    assert!(remark.contains("2027年节假日安排已载入"), "{remark}");
    assert!(remark.contains("2027年1月6日 00:00"), "{remark}");
    assert!(remark.contains("原为 2027年1月5日 00:00"), "{remark}");
    let (_, cal) = s.get("/api/v1/admin/holidays", Some(&admin)).await;
    assert_eq!(cal["provisional_deadlines"], 0, "{cal}");
    // Loading the same year again changes nothing and writes nothing.
    let (_, v) = s
        .put_bytes(
            "/api/v1/admin/holidays",
            Some(&admin),
            "application/json",
            FILE_2027.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(v["recomputed"], 0, "{v}");
    // The page's timeline names the step.
    let p = crate::pages::PageClient::new(&s);
    p.login("demo@ekey.example", PASSWORD).await;
    let page = p.get(&format!("/portal/requests/{id}")).await;
    assert!(page.body.contains("办理时限已重新计算"), "{}", page.body);
    assert!(!page.body.contains(NOTE));
    assert_eq!(s.verify_audit().await.first_broken, None);
    s.stop().await;
}

on_both_databases!(deadlines_into_2027_are_provisional_until_its_file_is_loaded);

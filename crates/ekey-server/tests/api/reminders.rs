//! Timed messages: the clerks' digest on working days, and certificate expiry reminders at
//! 60, 30 and 7 days, each once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

async fn mails_to(s: &TestServer, to: &str, needle: &str) -> Vec<Value> {
    s.mailbox()
        .await
        .into_iter()
        .filter(|m| m["to"] == to && m["subject"].as_str().unwrap_or("").contains(needle))
        .collect()
}

/// Waits (real time) until `to` has `n` messages whose subject contains `needle`.
async fn wait_count(s: &TestServer, to: &str, needle: &str, n: usize) {
    for _ in 0..100 {
        if mails_to(s, to, needle).await.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And a moment more, to see that nothing extra comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = mails_to(s, to, needle).await;
    assert_eq!(got.len(), n, "{to} / {needle}: {got:#?}");
}

pub async fn digests_on_working_days_and_expiry_reminders_once_each(db: Db) {
    let s = TestServer::start_with(db, default_start(), |c| c.reminder_poll_ms = 50).await;
    let clerk = "agency-320000@ekey.example";
    let ent = s.login("demo@ekey.example").await;
    // Confirmed Thu 2026-02-12: 验核 due 2026-02-15 00:00.
    request_in_agency_review(&s, &ent).await;
    wait_count(&s, clerk, "今日待办", 0).await;
    // Sat 2/14 is a make-up workday and the last day: the digest says "due today".
    s.clock.set(at("2026-02-14T08:30:00+08:00"));
    wait_count(&s, clerk, "今日待办", 1).await;
    let digest = &mails_to(&s, clerk, "今日待办").await[0];
    assert_eq!(digest["subject"], "今日待办：1 件今日到期，0 件已超时");
    // Sun 2/15 is a holiday: no digest. Tue 2/24, working again: overdue.
    s.clock.set(at("2026-02-15T09:00:00+08:00"));
    wait_count(&s, clerk, "今日待办", 1).await;
    s.clock.set(at("2026-02-24T09:00:00+08:00"));
    wait_count(&s, clerk, "今日待办", 2).await;
    assert!(
        mails_to(&s, clerk, "1 件已超时").await.len() == 1,
        "the overdue one"
    );
    s.stop().await;

    // Expiry: an active key's certificate.
    let s = TestServer::start_with(db, default_start(), |c| c.reminder_poll_ms = 50).await;
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let id = request_in_agency_review(&s, &ent).await;
    let key = crate::lifecycle::approve_and_produce(&s, &id, &ent, &agency, &provider).await;
    let (status, v) = s
        .post(
            "/api/v1/shipments",
            Some(&provider),
            json!({"courier": "EMS", "tracking_number": "EM1", "request_ids": [id]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let shipment = v["id"].as_str().unwrap().to_string();
    for path in [
        format!("/api/v1/shipments/{shipment}/receive"),
        format!("/api/v1/shipments/{shipment}/notify"),
    ] {
        let (status, v) = s.post(&path, Some(&agency), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
    }
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/handover"),
            Some(&agency),
            json!({"method": "pickup", "collector_name": "李明",
                   "collector_id_number": "11010519491231002X", "introduction_letter": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    assert_eq!(keys[0]["state"], "active");
    let not_after = at(keys[0]["not_after"].as_str().unwrap());
    let to = "demo@ekey.example";
    wait_count(&s, to, "到期", 0).await;
    for (days_before, expected) in [(50, 1), (45, 1), (20, 2), (3, 3), (1, 3)] {
        s.clock.set(not_after - chrono::Duration::days(days_before));
        wait_count(&s, to, "到期", expected).await;
    }
    let subjects: Vec<String> = mails_to(&s, to, "到期")
        .await
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect();
    assert!(
        subjects[0].contains("60 天")
            && subjects[1].contains("30 天")
            && subjects[2].contains("7 天"),
        "{subjects:?}"
    );
    assert!(
        mails_to(&s, to, "7 天").await[0]["body"]
            .as_str()
            .unwrap()
            .contains(key["login_name"].as_str().unwrap())
    );
    s.stop().await;
}

on_both_databases!(digests_on_working_days_and_expiry_reminders_once_each);

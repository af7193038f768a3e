//! Digests and counters tell the truth (issue 16, item 7): the agency clerks' morning
//! digest lists only steps that wait on the agency, the provider gets its own digest of
//! what waits on the provider, and the "已超时" count of the console counts all the
//! reader's overdue work whatever tab is open.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::pages::PageClient;
use crate::support::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

async fn digests_to(s: &TestServer, to: &str) -> Vec<Value> {
    s.mailbox()
        .await
        .into_iter()
        .filter(|m| m["to"] == to && m["subject"].as_str().unwrap_or("").contains("今日待办"))
        .collect()
}

/// Waits (real time) for `to`'s first digest.
async fn first_digest(s: &TestServer, to: &str) -> Value {
    for _ in 0..100 {
        if let Some(m) = digests_to(s, to).await.into_iter().next() {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no digest for {to}: {:#?}", s.mailbox().await);
}

async fn number_of(s: &TestServer, token: &str, id: &str) -> String {
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(token)).await;
    r["number"].as_str().unwrap().to_string()
}

/// The "N 件已超时" badge of the queue page, or 0 when there is none.
fn overdue_badge(html: &str) -> usize {
    let Some(end) = html.find(" 件已超时</span>") else {
        return 0;
    };
    let start = html[..end].rfind('>').unwrap() + 1;
    html[start..end].trim().parse().unwrap()
}

pub async fn digests_and_counters_show_each_reader_their_own_work(db: Db) {
    let s = TestServer::start_with(db, default_start(), |c| c.reminder_poll_ms = 50).await;
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    // A: approved by the agency at once, so it waits on the provider (复核 and production).
    let a = request_in_agency_review(&s, &ent).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{a}/decision"),
            Some(&agency),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "provider_review");
    // B: another enterprise's request, waiting on the agency (验核).
    let other = s
        .register_and_login(
            "乙丙进出口有限公司",
            &ekey_testkit::ident::credit_code(5001),
            "320000",
            "b5001@digest.example",
        )
        .await;
    let b = request_in_agency_review(&s, &other).await;
    let (na, nb) = (
        number_of(&s, &ent, &a).await,
        number_of(&s, &other, &b).await,
    );

    // Monday 2026-03-02: both steps are overdue.
    s.clock.set(at("2026-03-02T08:30:00+08:00"));
    let clerk = first_digest(&s, "agency-320000@ekey.example").await;
    let body = clerk["body"].as_str().unwrap();
    assert_eq!(
        clerk["subject"], "今日待办：0 件今日到期，1 件已超时",
        "{body}"
    );
    assert!(body.contains(&nb), "{body}");
    assert!(
        !body.contains(&na),
        "the provider's step is not the agency's: {body}"
    );

    let provider = first_digest(&s, "provider@ekey.example").await;
    let body = provider["body"].as_str().unwrap();
    assert_eq!(
        provider["subject"], "今日待办：0 件今日到期，1 件已超时",
        "{body}"
    );
    assert!(body.contains(&na), "{body}");
    assert!(!body.contains(&nb), "{body}");
    assert!(body.contains("/console/queue"), "{body}");

    // The console: whichever tab is open, "已超时" counts all the reader's overdue work.
    for (login, tabs) in [
        ("agency-320000", &["review", "shipped", "ready"][..]),
        ("provider", &["review", "production", "shipped"][..]),
    ] {
        let p = PageClient::new(&s);
        p.login(login, PASSWORD).await;
        for tab in tabs {
            let page = p.get(&format!("/console/queue?tab={tab}")).await;
            assert_eq!(page.status, StatusCode::OK);
            assert_eq!(overdue_badge(&page.body), 1, "{login} on {tab}");
        }
    }
    s.stop().await;
}

on_both_databases!(digests_and_counters_show_each_reader_their_own_work);

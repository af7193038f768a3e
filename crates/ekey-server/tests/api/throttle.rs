//! The login back-off under attack, with real concurrency: attempts are counted before the
//! password is checked, so a burst of simultaneous guesses gets no more password checks
//! than the free quota; and the counts are kept per login *and* address, so nobody can lock
//! someone else out — not of the password login from another address, not of the
//! forgotten-password form, not of the certificate (key) login.

use ekey_testkit::scenario::{self, Portal};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Row;

use crate::agent::{RunningAgent, key_login};
use crate::support::*;

/// Behind a trusted proxy (127.0.0.1), so that the test can speak from many addresses.
async fn start(db: Db) -> TestServer {
    TestServer::start_with(db, default_start(), |c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await
}

/// `POST /api/v1/sessions` from `address`.
async fn login_from(
    s: &TestServer,
    address: &str,
    login: &str,
    password: &str,
) -> (StatusCode, serde_json::Value) {
    let res = s
        .client
        .post(s.url("/api/v1/sessions"))
        .header("x-forwarded-for", address)
        .json(&json!({"login": login, "password": password}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or_default())
}

/// All of `attempts` (address, login, password) at once; the answers' statuses.
async fn burst(s: &TestServer, attempts: Vec<(String, String, String)>) -> Vec<StatusCode> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(attempts.len()));
    let mut tasks = Vec::new();
    for (address, login, password) in attempts {
        let client = s.client.clone();
        let url = s.url("/api/v1/sessions");
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            client
                .post(url)
                .header("x-forwarded-for", address)
                .json(&json!({"login": login, "password": password}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn count(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// Failed logins of `login` in the audit log: one per password actually checked and wrong.
async fn audited_failures(s: &TestServer, login: &str) -> usize {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'session.failed' AND object_id = $1",
    )
    .bind(login)
    .fetch_one(s.raw().pool())
    .await
    .unwrap()
    .try_get::<i64, _>("n")
    .unwrap() as usize
}

/// Answers that went past the back-off (a password check was at least allowed): anything but
/// 429. Only a 401 means Argon2 ran and said no.
fn checked(statuses: &[StatusCode]) -> usize {
    statuses.len() - count(statuses, StatusCode::TOO_MANY_REQUESTS)
}

/// A hundred simultaneous wrong guesses on one login: five password checks from one
/// address, five per address from several, and never more than the per-login ceiling (50)
/// from a hundred addresses; every other guess is refused with 429 before Argon2 runs.
/// (Evidence without timing: a 401 is a password Argon2 checked and found wrong, and each is
/// audited as `session.failed`; a 429 is refused by the back-off before any check.)
async fn simultaneous_guesses_get_the_free_quota_and_no_more(db: Db) {
    let s = start(db).await;
    let guess = |address: String| (address, "provider".to_string(), "Wrong-2026".to_string());
    let mut wrong = 0;

    // One address.
    let got = burst(&s, (0..100).map(|_| guess("203.0.113.5".into())).collect()).await;
    assert_eq!(checked(&got), 5, "{got:?}");
    let checks = count(&got, StatusCode::UNAUTHORIZED);
    assert!((1..=5).contains(&checks), "{got:?}");
    wrong += checks;
    assert_eq!(audited_failures(&s, "provider").await, wrong);
    // The reservations stayed counted: the next guess, and the right password, wait.
    let (status, v) = login_from(&s, "203.0.113.5", "provider", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["code"], "ekey.auth.rate_limited");

    // Four more addresses, 25 guesses each, all at once: five checks each.
    let attempts = (0..100)
        .map(|n| guess(format!("198.51.100.{}", n % 4)))
        .collect();
    let got = burst(&s, attempts).await;
    assert_eq!(checked(&got), 20, "{got:?}");
    wrong += count(&got, StatusCode::UNAUTHORIZED);
    assert_eq!(audited_failures(&s, "provider").await, wrong);

    // A hundred fresh addresses, one guess each: the per-login ceiling (50 attempts) holds
    // under concurrency too — 25 more, not 100.
    let attempts = (0..100).map(|n| guess(format!("192.0.2.{n}"))).collect();
    let got = burst(&s, attempts).await;
    assert_eq!(checked(&got), 25, "{got:?}");
    wrong += count(&got, StatusCode::UNAUTHORIZED);
    assert_eq!(audited_failures(&s, "provider").await, wrong);
    assert!(wrong <= 50);
    s.stop().await;
}
on_both_databases!(simultaneous_guesses_get_the_free_quota_and_no_more);

/// An attacker guessing from one address locks out nobody but itself: the owner logs in
/// from another address, the forgotten-password form answers (with its own quota, which in
/// turn blocks no login), and when many addresses together reach the per-login ceiling,
/// the certificate (key) login still works.
async fn failed_logins_lock_out_nobody_else(db: Db) {
    let s = start(db).await;
    let key = scenario::active_key(&Portal::new(&s.base)).await.unwrap();
    let victim = "demo@ekey.example";
    let attacker = "203.0.113.66";

    for n in 0..5 {
        let (status, v) = login_from(&s, attacker, victim, "Wrong-2026").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {n}: {v}");
    }
    let (status, v) = login_from(&s, attacker, victim, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // The owner, elsewhere, is not locked out.
    let (status, v) = login_from(&s, "198.51.100.7", victim, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Nor is the forgotten-password form, even from the attacker's address.
    let reset = |address: &'static str| {
        s.client
            .post(s.url("/api/v1/password-resets"))
            .header("x-forwarded-for", address)
            .json(&json!({"login": victim}))
            .send()
    };
    let res = reset(attacker).await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    s.wait_message(victim, "重置").await;
    // Reset requests have a quota of their own (a few a day per login) …
    let mut refused = None;
    for n in 1..=6 {
        let res = reset("198.51.100.8").await.unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(n);
            break;
        }
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    assert!(
        refused.is_some(),
        "the sixth reset request of a login waits"
    );
    // … and a flood of them blocks no login.
    let (status, v) = login_from(&s, "198.51.100.8", victim, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // Twelve addresses guessing together pass the per-login ceiling: the password login is
    // then refused from everywhere for a while …
    let attempts = (0..60)
        .map(|n| {
            (
                format!("192.0.2.{}", n % 12),
                victim.to_string(),
                "Wrong-2026".to_string(),
            )
        })
        .collect();
    let got = burst(&s, attempts).await;
    assert!(
        count(&got, StatusCode::TOO_MANY_REQUESTS) >= 10,
        "the ceiling: {got:?}"
    );
    let (status, v) = login_from(&s, "198.51.100.9", victim, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // … but never the certificate login: the key has its own PIN counter.
    let agent = RunningAgent::start(&s).await;
    let (status, session) = key_login(&s, &agent, &key.token_serial, &key.pin).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["role"], "enterprise");
    s.stop().await;
}
on_both_databases!(failed_logins_lock_out_nobody_else);

async fn rows(s: &TestServer, table: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {table}"
    )))
    .fetch_one(s.raw().pool())
    .await
    .unwrap()
    .try_get("n")
    .unwrap()
}

/// What an anonymous caller can make the server store is bounded: a login longer than an
/// email address is refused before the back-off table or the audit log grows; key-login
/// challenges are limited per address and expired ones deleted; a search longer than the
/// limit is refused rather than dropped (which answered every request).
async fn growth_is_bounded(db: Db) {
    let s = start(db).await;

    // Logins: 254 characters is an email's limit and counted as usual; 255 is refused.
    let long = format!("{}@example.com", "a".repeat(255 - 12));
    assert_eq!(long.chars().count(), 255);
    let before = (s.snapshot().await, rows(&s, "login_failures").await);
    let (status, v) = login_from(&s, "203.0.113.7", &long, "Wrong-2026").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "ekey.auth.login_too_long");
    let res = s
        .client
        .post(s.url("/api/v1/password-resets"))
        .json(&json!({"login": long}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["code"], "ekey.auth.login_too_long");
    assert_eq!(
        before,
        (s.snapshot().await, rows(&s, "login_failures").await),
        "nothing stored, nothing audited"
    );
    let (status, v) = login_from(&s, "203.0.113.7", &long[1..], "Wrong-2026").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");

    // Key-login challenges: 60 live ones per address, then 429; another address is not
    // affected; once they expire, the next one deletes them.
    let challenge = |address: &'static str| {
        s.client
            .post(s.url("/api/v1/key-login/challenges"))
            .header("x-forwarded-for", address)
            .json(&json!({}))
            .send()
    };
    for n in 0..60 {
        let res = challenge("203.0.113.8").await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "challenge {n}");
    }
    let res = challenge("203.0.113.8").await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["code"], "ekey.keylogin.rate_limited");
    assert_eq!(
        challenge("203.0.113.9").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(rows(&s, "key_login_challenges").await, 61);
    s.clock.advance(chrono::Duration::seconds(301));
    assert_eq!(
        challenge("203.0.113.8").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        rows(&s, "key_login_challenges").await,
        1,
        "expired ones deleted"
    );

    // Searches: 100 characters are searched (nothing matches); 101 are refused, where they
    // used to be dropped and every request answered.
    let provider = s.login("provider").await;
    let ent = s.login("demo@ekey.example").await;
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            first_request("liming@example.com"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, v) = s
        .get(
            &format!("/api/v1/requests?q={}", "无".repeat(100)),
            Some(&provider),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, json!([]));
    let (status, v) = s
        .get(
            &format!("/api/v1/requests?q={}", "无".repeat(101)),
            Some(&provider),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "ekey.search.too_long");
    s.stop().await;
}
on_both_databases!(growth_is_bounded);

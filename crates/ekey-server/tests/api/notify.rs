//! Notifications through real transports: mail to an SMTP server (Python's aiosmtpd, a
//! separate process on 127.0.0.1) and SMS to an HTTP gateway (an axum receiver). The SMTP
//! server is stopped while messages are queued and started again: every message arrives,
//! exactly once, with its Chinese subject intact.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ekey_server::config::MailTransport;
use reqwest::StatusCode;
use serde_json::{Value, json};

use ekey_testkit::smtp::SmtpSink;

use crate::support::*;

const SMS_SECRET: &str = "test-sms-secret-0123456789";

/// The requests an SMS gateway received: headers and body.
type Received = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// An SMS gateway: records every request it receives.
struct SmsReceiver {
    url: String,
    got: Received,
    handle: tokio::task::JoinHandle<()>,
}

impl SmsReceiver {
    async fn start() -> SmsReceiver {
        let got: Received = Arc::default();
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/sms",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let sink = sink.clone();
                    async move {
                        sink.lock().unwrap().push((headers, body.to_vec()));
                        "ok"
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sms", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        SmsReceiver { url, got, handle }
    }
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool, clock: &TestServer) {
    for _ in 0..200 {
        if ok() {
            return;
        }
        // Retries are scheduled on the server's clock: move it on so they come due.
        clock.clock.advance(chrono::Duration::minutes(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn activation_link_in(body: &str) -> String {
    body.split_whitespace()
        .find(|w| w.contains("/api/v1/activations/"))
        .unwrap_or_else(|| panic!("no link in {body}"))
        .to_string()
}

pub async fn no_message_is_lost_or_doubled_across_an_smtp_outage(db: Db) {
    let mut smtp = SmtpSink::new();
    smtp.start();
    let sms = SmsReceiver::start().await;
    let (smtp_port, sms_url) = (smtp.port, sms.url.clone());
    let s = TestServer::start_with(db, default_start(), move |c| {
        c.mail_transport = MailTransport::Smtp;
        c.smtp_url = Some(format!("smtp://127.0.0.1:{smtp_port}"));
        c.sms_url = Some(sms_url);
        c.sms_secret = Some(SMS_SECRET.into());
    })
    .await;

    // A registration: its activation mail arrives over SMTP, Chinese subject intact.
    let a = "a@notify.example";
    let (status, v) = s
        .post(
            "/api/v1/registrations",
            None,
            registration(
                "甲贸易有限公司",
                &credit_code("91320100MA1NTFY13"),
                "320000",
                a,
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    wait_for(
        "the first activation mail",
        || smtp.messages().len() == 1,
        &s,
    )
    .await;
    let first = smtp.messages().remove(0);
    assert_eq!(first["to"], a);
    assert_eq!(first["subject"], "调用商务部统一用户管理平台激活企业账户");
    assert!(
        first["from"].as_str().unwrap().contains("电子钥匙在线办理"),
        "{first}"
    );
    let link = activation_link_in(first["body"].as_str().unwrap());
    assert_eq!(
        s.client.get(&link).send().await.unwrap().status(),
        StatusCode::OK
    );
    let token = s.login_with(a, "Secret-2026").await;
    let id = request_in_agency_review(&s, &token).await;
    // 确认上传 sends its receipt, by mail and SMS (issue 16, item 19).
    let receipt_sent = sms.got.clone();
    wait_for(
        "the receipt of 确认上传",
        || smtp.messages().len() == 2 && receipt_sent.lock().map(|g| g.len() == 1).unwrap_or(false),
        &s,
    )
    .await;

    // The mail server goes away; two registrations and a return decision queue 3 mails
    // and 1 SMS. The SMS gateway is up: the SMS leaves at once.
    smtp.stop();
    for (email, code) in [
        ("b@notify.example", "91320100MA1NTFY21"),
        ("c@notify.example", "91320100MA1NTFY3X"),
    ] {
        let (status, v) = s
            .post(
                "/api/v1/registrations",
                None,
                registration("乙丙贸易有限公司", &credit_code(code), "320000", email),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let agency = s.login("agency-320000").await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&agency),
            json!({"approve": false, "remark": "营业执照扫描件不清晰"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let pool = s.raw().pool().clone();
    let failed = || {
        let pool = pool.clone();
        async move {
            use sqlx::Row;
            sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE attempts > 0 AND sent_at IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<i64, _>("n")
        }
    };
    for _ in 0..100 {
        if failed().await >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        failed().await >= 3,
        "the three mails failed while the server was down"
    );
    // The SMS does not wait for mail: it leaves while the mail server is down.
    let got = sms.got.clone();
    wait_for(
        "the SMS, while mail is down",
        || got.lock().map(|g| g.len() == 2).unwrap_or(false),
        &s,
    )
    .await;

    // The mail server comes back: every queued mail arrives once.
    smtp.start();
    wait_for("all five mails", || smtp.messages().len() >= 5, &s).await;
    // Give the worker more chances to send anything twice.
    for _ in 0..10 {
        s.clock.advance(chrono::Duration::hours(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mails = smtp.messages();
    assert_eq!(mails.len(), 5, "exactly once each: {mails:#?}");
    let mut ids: Vec<&str> = mails
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "one Message-ID per event");
    let mut to: Vec<&str> = mails.iter().map(|m| m["to"].as_str().unwrap()).collect();
    to.sort();
    // The return decision goes to the request's authorised user.
    assert_eq!(
        to,
        [
            a,
            "b@notify.example",
            "c@notify.example",
            "liming@example.com",
            "liming@example.com"
        ]
    );
    assert!(
        mails.iter().any(|m| m["to"] == "liming@example.com"
            && m["body"].as_str().unwrap().contains("营业执照扫描件不清晰")),
        "the return mail carries the remark"
    );
    let pending = {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get::<i64, _>("n")
    };
    assert_eq!(pending, 0, "nothing left pending or dead");

    // The SMS: signed with the shared secret, the mobile and the remark's news in Chinese.
    let got = sms.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "the receipt and the return, once each");
    let (headers, body) = &got[1];
    let signature = headers["x-ekey-signature"].to_str().unwrap();
    assert_eq!(
        signature,
        format!(
            "sha256={}",
            ekey_server::transport::sms_signature(SMS_SECRET, body)
        )
    );
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["to"], "13912345678");
    assert!(
        v["text"].as_str().unwrap().contains("退回")
            || v["text"].as_str().unwrap().contains("未通过"),
        "{v}"
    );
    assert_eq!(headers["x-ekey-message-id"].to_str().unwrap(), v["id"]);

    sms.handle.abort();
    s.stop().await;
}

on_both_databases!(no_message_is_lost_or_doubled_across_an_smtp_outage);

pub async fn an_administrator_retries_a_dead_letter_from_the_console(db: Db) {
    let mut smtp = SmtpSink::new();
    let smtp_port = smtp.port;
    let s = TestServer::start_with(db, default_start(), move |c| {
        c.mail_transport = MailTransport::Smtp;
        c.smtp_url = Some(format!("smtp://127.0.0.1:{smtp_port}"));
    })
    .await;
    // No mail server at all: the activation mail is tried until it is given up.
    let email = "dead@notify.example";
    let (status, _) = s
        .post(
            "/api/v1/registrations",
            None,
            registration(
                "丁贸易有限公司",
                &credit_code("91320100MA1NTFY48"),
                "320000",
                email,
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let mut dead = Value::Null;
    for _ in 0..300 {
        s.clock.advance(chrono::Duration::hours(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let admin = s.login("admin").await; // sessions last 12 h of the moving clock
        let (_, v) = s.get("/api/v1/admin/outbox", Some(&admin)).await;
        if v["dead"] == 1 {
            dead = v;
            break;
        }
    }
    assert_eq!(dead["dead"], 1, "given up after its attempts: {dead}");
    let letter = &dead["dead_letters"][0];
    assert_eq!(letter["recipient"], email);
    assert!(
        !letter["last_error"].as_str().unwrap().is_empty(),
        "{letter}"
    );

    // The console lists it with its error; the server is back; one click sends it once.
    let p = crate::pages::PageClient::new(&s);
    p.login("admin", PASSWORD).await;
    let page = p.get("/console/admin").await;
    assert!(
        page.body.contains(email) && page.body.contains("重新发送"),
        "{}",
        page.body
    );
    smtp.start();
    let csrf = p.csrf("/console/admin").await;
    let id = letter["id"].as_i64().unwrap();
    let a = p
        .post(
            &format!("/console/admin/outbox/{id}/retry"),
            &[("csrf", &csrf)],
        )
        .await;
    assert!(a.location.contains("done=retried"), "{}", a.location);
    wait_for("the retried mail", || smtp.messages().len() == 1, &s).await;
    // A second click finds nothing to retry.
    let a = p
        .post(
            &format!("/console/admin/outbox/{id}/retry"),
            &[("csrf", &csrf)],
        )
        .await;
    assert!(a.location.contains("error="), "{}", a.location);
    for _ in 0..5 {
        s.clock.advance(chrono::Duration::hours(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(smtp.messages().len(), 1, "sent once");
    let admin = s.login("admin").await;
    let (_, v) = s.get("/api/v1/admin/outbox", Some(&admin)).await;
    assert_eq!(
        (v["dead"].as_i64(), v["sent"].as_i64()),
        (Some(0), Some(1)),
        "{v}"
    );
    s.stop().await;
}

on_both_databases!(an_administrator_retries_a_dead_letter_from_the_console);

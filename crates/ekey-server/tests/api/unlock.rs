//! PIN unlock end to end: a real software token locked by six wrong PINs, its challenge in
//! the unlock request, the provider's approval mailing “电子钥匙密码重置” with a code that
//! unlocks that key once.

use ekey_server::config::MailTransport;
use ekey_testkit::smtp::SmtpSink;
use ekey_token::Token;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Row;

use crate::support::*;

pub async fn an_approved_unlock_mails_a_code_that_unlocks_the_key_once(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let first = request_in_agency_review(&s, &ent).await;
    let key = crate::lifecycle::approve_and_produce(&s, &first, &ent, &agency, &provider).await;
    let login_name = key["login_name"].as_str().unwrap().to_string();
    let (_, v) = s
        .get(
            &format!("/api/v1/keys/{}/initial-pin", key["id"].as_str().unwrap()),
            Some(&ent),
        )
        .await;
    let pin = v["initial_pin"].as_str().unwrap().to_string();
    let token = ekey_token::SoftToken::open(
        s.data_dir
            .join("tokens")
            .join(format!("{}.token", key["token_serial"].as_str().unwrap())),
    )
    .unwrap();
    for _ in 0..6 {
        assert!(token.sign("000000", "sign", b"x").is_err());
    }
    assert!(
        token.sign(&pin, "sign", b"x").is_err(),
        "locked after six wrong PINs"
    );
    let challenge = hex::encode(token.unlock_challenge().unwrap());

    // A challenge that is not hex is refused when the form is saved.
    let unlock = |c: Option<&str>| {
        json!({"kind": "unlock", "login_name": {"mode": "original", "value": login_name},
               "authorised_user": person("unlock@example.com"), "unlock_challenge": c})
    };
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            unlock(Some("not-a-challenge")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.unlock.challenge_format");

    // Without a challenge the request cannot even be submitted (and nothing changes) …
    let (status, v) = s.post("/api/v1/requests", Some(&ent), unlock(None)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let before = s.snapshot().await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/submit"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.unlock.challenge_missing");
    assert_eq!(
        before,
        s.snapshot().await,
        "a refused submission changes nothing"
    );

    // … so the enterprise adds the challenge (pasted with spaces and in capitals) and
    // submits; the upload goes to the provider.
    let pasted = format!(" {} {} ", &challenge[..8].to_uppercase(), &challenge[8..]);
    let (status, v) = s
        .patch(
            &format!("/api/v1/requests/{id}"),
            Some(&ent),
            json!({"unlock_challenge": pasted}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["form"]["unlock_challenge"], challenge);
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/submit"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    upload_all(&s, &ent, &id, &["unlock_form", "business_licence"]).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // Returned, the challenge cleared: it cannot go back to the provider without one.
    let (status, _) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&provider),
            json!({"approve": false, "remark": "请核对营业执照"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = s
        .patch(
            &format!("/api/v1/requests/{id}"),
            Some(&ent),
            json!({"unlock_challenge": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.unlock.challenge_missing");
    let (status, _) = s
        .patch(
            &format!("/api/v1/requests/{id}"),
            Some(&ent),
            json!({"unlock_challenge": pasted}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // The operator approves on the console page, which shows the challenge.
    let op = crate::pages::PageClient::new(&s);
    op.login("provider", PASSWORD).await;
    let page = op.get(&format!("/console/requests/{id}")).await;
    assert!(page.body.contains(&challenge), "the challenge is shown");
    let csrf = crate::pages::csrf_of(&page.body);
    let a = op
        .post(
            &format!("/console/requests/{id}/decision"),
            &[("csrf", csrf.as_str()), ("verdict", "approve")],
        )
        .await;
    assert!(a.location.ends_with("done=approved"), "{}", a.location);
    let (_, v) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(v["status"], "approved");
    // The decision mail says the code comes separately; the code mail has its own subject.
    s.wait_message("unlock@example.com", "另行发送").await;
    let code = s.unlock_code("unlock@example.com").await;
    let mail = s
        .mailbox()
        .await
        .into_iter()
        .find(|m| m["to"] == "unlock@example.com" && m["subject"] == "电子钥匙密码重置")
        .unwrap();
    let body = mail["body"].as_str().unwrap();
    assert!(
        body.contains(key["token_serial"].as_str().unwrap()),
        "{body}"
    );

    // Demo mode: the dev mailbox keeps the code readable, but the delivered outbox row
    // does not keep it.
    let (_, stored) = delivered_unlock_mail(&s, "unlock@example.com").await;
    assert!(!stored.contains(&code), "{stored}");

    // The code unlocks this key with a new PIN, once.
    token.apply_unlock(&code, "New-pin-2026").unwrap();
    token.sign("New-pin-2026", "sign", b"after unlock").unwrap();
    assert!(
        token.apply_unlock(&code, "Other-pin-2026").is_err(),
        "an unlock code works once"
    );
    s.stop().await;
}

on_both_databases!(an_approved_unlock_mails_a_code_that_unlocks_the_key_once);

/// The outbox row of the mail “电子钥匙密码重置” to `to` once it is marked sent: its status
/// and the body the database keeps.
async fn delivered_unlock_mail(s: &TestServer, to: &str) -> (String, String) {
    for _ in 0..200 {
        let row =
            sqlx::query("SELECT status, body FROM outbox WHERE recipient = $1 AND subject = $2")
                .bind(to)
                .bind("电子钥匙密码重置")
                .fetch_optional(s.raw().pool())
                .await
                .unwrap();
        if let Some(row) = row {
            let status: String = row.try_get("status").unwrap();
            if status == "sent" {
                return (status, row.try_get("body").unwrap());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the unlock mail to {to} was never marked sent");
}

/// The unlock code is a secret: mailed over SMTP, then gone from the database — the outbox
/// row keeps the mail without the code, no dev mailbox row holds it — while the code still
/// unlocks the key.
pub async fn a_mailed_unlock_code_is_not_kept_in_the_database(db: Db) {
    let mut smtp = SmtpSink::new();
    smtp.start();
    let smtp_port = smtp.port;
    let s = TestServer::start_with(db, default_start(), move |c| {
        c.mail_transport = MailTransport::Smtp;
        c.smtp_url = Some(format!("smtp://127.0.0.1:{smtp_port}"));
    })
    .await;
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let first = request_in_agency_review(&s, &ent).await;
    let key = crate::lifecycle::approve_and_produce(&s, &first, &ent, &agency, &provider).await;
    let token = ekey_token::SoftToken::open(
        s.data_dir
            .join("tokens")
            .join(format!("{}.token", key["token_serial"].as_str().unwrap())),
    )
    .unwrap();
    for _ in 0..6 {
        assert!(token.sign("000000", "sign", b"x").is_err());
    }
    let challenge = hex::encode(token.unlock_challenge().unwrap());
    let p = ekey_testkit::scenario::Portal::new(&s.base);
    let id = p
        .request_under_review(
            &ent,
            json!({"kind": "unlock", "login_name": {"mode": "original", "value": key["login_name"]},
                   "authorised_user": person("secret@example.com"), "unlock_challenge": challenge}),
            &["unlock_form", "business_licence"],
        )
        .await
        .unwrap();
    p.approve(&provider, &id).await.unwrap();

    // The mail arrives over SMTP with the code, and no command line in it names the code.
    let mut mail = None;
    for _ in 0..200 {
        mail = smtp
            .messages()
            .into_iter()
            .find(|m| m["to"] == "secret@example.com" && m["subject"] == "电子钥匙密码重置");
        if mail.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mail = mail.expect("the mail “电子钥匙密码重置” over SMTP");
    let body = mail["body"].as_str().unwrap();
    let code = body
        .lines()
        .find_map(|l| l.strip_prefix("解锁码："))
        .expect("the code line")
        .trim()
        .to_string();
    assert_eq!(code.len(), 34, "{body}");
    assert_eq!(body.matches(&code).count(), 1, "{body}");
    assert!(!body.contains("--code"), "{body}");

    // Delivered: the database keeps the mail, not the code.
    let (_, stored) = delivered_unlock_mail(&s, "secret@example.com").await;
    assert!(!stored.contains(&code), "{stored}");
    assert!(
        stored.contains("解锁码：（已随邮件发出，系统不保存）"),
        "{stored}"
    );
    assert!(
        stored.contains(key["token_serial"].as_str().unwrap()),
        "{stored}"
    );
    for table in ["outbox", "dev_mailbox"] {
        let bodies: Vec<String> =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT body FROM {table}")))
                .fetch_all(s.raw().pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get("body").unwrap())
                .collect();
        assert!(
            bodies.iter().all(|b| !b.contains(&code)),
            "{table} keeps the code"
        );
    }

    // The code still does its job.
    token.apply_unlock(&code, "New-pin-2026").unwrap();
    token.sign("New-pin-2026", "sign", b"after unlock").unwrap();
    smtp.stop();
    s.stop().await;
}

on_both_databases!(a_mailed_unlock_code_is_not_kept_in_the_database);

//! PIN unlock end to end: a real software token locked by six wrong PINs, its challenge in
//! the unlock request, the provider's approval mailing “电子钥匙密码重置” with a code that
//! unlocks that key once.

use ekey_token::Token;
use reqwest::StatusCode;
use serde_json::json;

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

    // Without a challenge the provider cannot approve (and nothing changes) …
    let (status, v) = s.post("/api/v1/requests", Some(&ent), unlock(None)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    s.post(
        &format!("/api/v1/requests/{id}/submit"),
        Some(&ent),
        json!({}),
    )
    .await;
    upload_all(&s, &ent, &id, &["unlock_form", "business_licence"]).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let before = s.snapshot().await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&provider),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.unlock.no_challenge");
    assert_eq!(
        before,
        s.snapshot().await,
        "a refused approval changes nothing"
    );

    // … so it goes back; the enterprise adds the challenge (pasted with spaces and in
    // capitals) and confirms again; the approval mails the code.
    let (status, _) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&provider),
            json!({"approve": false, "remark": "请填写钥匙的解锁挑战码"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
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
    s.post(
        &format!("/api/v1/requests/{id}/confirm-upload"),
        Some(&ent),
        json!({}),
    )
    .await;
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

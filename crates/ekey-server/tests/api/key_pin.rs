//! The key helper and the key's PIN from the enterprise's side (issue 16 items 15, 16): an
//! unlock request needs the locked key's challenge before it can be submitted, and the
//! unlock form explains in plain words how to get the key helper running.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

pub async fn an_unlock_request_needs_the_challenge_before_submission(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let first = request_in_agency_review(&s, &ent).await;
    let key = crate::lifecycle::approve_and_produce(&s, &first, &ent, &agency, &provider).await;
    let login_name = key["login_name"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            json!({"kind": "unlock", "login_name": {"mode": "original", "value": login_name},
                   "authorised_user": person("helper@example.com")}),
        )
        .await;
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
    assert!(
        v["message"].as_str().unwrap().contains("电子钥匙助手"),
        "{v}"
    );
    assert_eq!(before, s.snapshot().await, "nothing changed");

    // The page: the refusal shown, and how to start the key helper in plain words.
    let p = crate::pages::PageClient::new(&s);
    p.login("demo@ekey.example", PASSWORD).await;
    let form = p
        .get(&format!(
            "/portal/requests/new?kind=unlock&login_name={login_name}"
        ))
        .await;
    for words in [
        "没有挑战码，申请不能提交",
        "启动“电子钥匙助手”",
        "输入 ekey agent 后回车",
        "6 位配对码",
        "ekey key challenge",
    ] {
        assert!(form.body.contains(words), "{words}:\n{}", form.body);
    }
    let page = p.get(&format!("/portal/requests/{id}")).await;
    let csrf = crate::pages::csrf_of(&page.body);
    let a = p
        .post(
            &format!("/portal/requests/{id}/submit"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    let back = p.get(&a.location).await;
    assert!(
        back.body.contains("请先填写钥匙的解锁挑战码"),
        "{}",
        back.body
    );

    // With the challenge it is submitted.
    let (status, _) = s
        .patch(
            &format!("/api/v1/requests/{id}"),
            Some(&ent),
            json!({"unlock_challenge": "AB".repeat(16)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/submit"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "awaiting_materials");
    s.stop().await;
}

on_both_databases!(an_unlock_request_needs_the_challenge_before_submission);

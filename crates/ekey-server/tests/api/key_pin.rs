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

pub async fn the_initial_pin_on_the_keys_page_owner_only_and_audited(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let first = request_in_agency_review(&s, &ent).await;
    let key = crate::lifecycle::approve_and_produce(&s, &first, &ent, &agency, &provider).await;
    let key_id = key["id"].as_str().unwrap().to_string();
    let (_, v) = s
        .get(&format!("/api/v1/keys/{key_id}/initial-pin"), Some(&ent))
        .await;
    let pin = v["initial_pin"].as_str().unwrap().to_string();

    let p = crate::pages::PageClient::new(&s);
    p.login("demo@ekey.example", PASSWORD).await;
    // The home page links the key to its page.
    assert!(
        p.get("/portal")
            .await
            .body
            .contains(&format!("/portal/keys/{key_id}"))
    );
    let page = p.get(&format!("/portal/keys/{key_id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("查看初始PIN码"), "{}", page.body);
    assert!(!page.body.contains(&pin), "shown only when asked");
    assert!(page.body.contains("修改PIN码") && page.body.contains("data-pin-change"));
    let count = || async {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'key.read_initial_pin' AND object_id = $1",
        )
        .bind(&key_id)
        .fetch_one(s.raw().pool())
        .await
        .unwrap();
        sqlx::Row::try_get::<i64, _>(&row, "n").unwrap()
    };
    let before = count().await;
    let csrf = crate::pages::csrf_of(&page.body);
    let shown = p
        .post(
            &format!("/portal/keys/{key_id}/initial-pin"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert!(shown.body.contains(&pin), "{}", shown.body);
    assert!(
        shown.body.contains("请在第一次使用钥匙时立即修改PIN码"),
        "{}",
        shown.body
    );
    assert_eq!(count().await, before + 1, "each reading is audited");
    // Without the page's token: refused, nothing shown.
    let forged = p
        .post(
            &format!("/portal/keys/{key_id}/initial-pin"),
            &[("csrf", "forged")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(!forged.body.contains(&pin));

    // Another enterprise, and staff, see nothing of it.
    let other = "pin-other@example.com";
    s.register_and_login(
        "苏州别家贸易有限公司",
        &ekey_testkit::ident::credit_code(2001),
        "320000",
        other,
    )
    .await;
    let o = crate::pages::PageClient::new(&s);
    o.login(other, "Secret-2026").await;
    let page = o.get(&format!("/portal/keys/{key_id}")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    let csrf = crate::pages::csrf_of(&o.get("/portal").await.body);
    let tried = o
        .post(
            &format!("/portal/keys/{key_id}/initial-pin"),
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(tried.status, StatusCode::NOT_FOUND);
    assert!(!tried.body.contains(&pin));
    let (status, _) = s
        .get(&format!("/api/v1/keys/{key_id}/initial-pin"), Some(&agency))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(count().await, before + 1);
    s.stop().await;
}

on_both_databases!(the_initial_pin_on_the_keys_page_owner_only_and_audited);

/// In Chromium: the provisional deadline on the request page, the key's page showing its
/// initial PIN when asked, and the unlock form's steps to start the key helper (screenshots
/// `h2-*` kept with the other browser artifacts).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provisional_deadline_initial_pin_and_helper_steps_in_a_browser() {
    use crate::browser::{Browser, log_in};
    let s = TestServer::start_at(
        Db::Sqlite,
        chrono::DateTime::parse_from_rfc3339("2026-12-30T10:00:00+08:00")
            .unwrap()
            .to_utc(),
    )
    .await;
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let first = request_in_agency_review(&s, &ent).await;
    let b = Browser::start().await;
    log_in(&b, &s, "demo@ekey.example", PASSWORD).await;
    b.goto(&s.url(&format!("/portal/requests/{first}"))).await;
    let note = b
        .wait_text("[data-due-note]", "2027年节假日安排尚未发布")
        .await;
    assert!(note.contains("可能调整"), "{note}");
    b.shot_at("h2-provisional-due", "[data-due-note]").await;

    let key = crate::lifecycle::approve_and_produce(&s, &first, &ent, &agency, &provider).await;
    let key_id = key["id"].as_str().unwrap().to_string();
    let (_, v) = s
        .get(&format!("/api/v1/keys/{key_id}/initial-pin"), Some(&ent))
        .await;
    let pin = v["initial_pin"].as_str().unwrap().to_string();
    b.goto(&s.url("/portal")).await;
    b.click(&format!("a[href='/portal/keys/{key_id}']")).await;
    b.click("[data-initial-pin] button[type=submit]").await;
    let shown = b.wait_text("[data-pin]", &pin).await;
    assert_eq!(shown.trim(), pin);
    assert!(b.body().await.contains("请在第一次使用钥匙时立即修改PIN码"));
    b.shot_at("h2-key-initial-pin", "[data-initial-pin]").await;

    b.goto(&s.url(&format!(
        "/portal/requests/new?kind=unlock&login_name={}",
        key["login_name"].as_str().unwrap()
    )))
    .await;
    let help = b.text("[data-agent-help]").await;
    assert!(help.contains("ekey agent"), "{help}");
    b.shot_at("h2-unlock-helper-steps", "[data-agent-help]")
        .await;
    b.close().await;
    s.stop().await;
}

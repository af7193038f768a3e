//! 补办 (replacement) through the API on both databases: only for a key the enterprise
//! holds (never a login name merely reserved by 获取登录名), the three-key limit counted one
//! way, one 补办 or 注销 per key at a time (also when two arrive at once), and the
//! enterprise saying whether the key is lost or damaged.

use ekey_testkit::ident::credit_code;
use ekey_testkit::scenario::{self, Portal};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn replacement(login_name: &str) -> Value {
    json!({"kind": "replacement", "licence_types": ["import_licence"], "reason": "钥匙遗失",
           "key_lost": true, "login_name": {"mode": "original", "value": login_name},
           "authorised_user": person("liming@example.com")})
}

fn cancellation(login_name: &str) -> Value {
    json!({"kind": "cancellation", "login_name": {"mode": "original", "value": login_name},
           "authorised_user": person("liming@example.com")})
}

fn additional() -> Value {
    json!({"kind": "additional", "licence_types": ["import_licence"], "reason": "新增口岸业务",
           "login_name": {"mode": "allocate"}, "authorised_user": person("liming@example.com")})
}

async fn replacement_needs_a_key_of_the_enterprise(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s
        .register_and_login(
            "扬子江外贸有限公司",
            &credit_code(1001),
            "320000",
            "keys@yangtze-trade.example",
        )
        .await;
    // 获取登录名 reserves a name; the enterprise has no key at all.
    let (status, v) = s.post("/api/v1/login-names", Some(&ent), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let reserved = v["login_name"].as_str().unwrap().to_string();
    let before = s.snapshot().await;
    let (status, v) = s
        .post("/api/v1/requests", Some(&ent), replacement(&reserved))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a reserved name is no key to replace: {v}"
    );
    assert_eq!(v["code"], "ekey.replacement.no_key");
    assert!(v["message"].as_str().unwrap().contains("获取登录名"), "{v}");
    assert_eq!(s.snapshot().await, before, "a refusal changes nothing");

    // The demo enterprise with one key in use: 补办 of a reserved name would be a key more
    // outside the count; 补办 of its real key is fine.
    let key = scenario::active_key(&Portal::new(&s.base)).await.unwrap();
    let demo = s.login("demo@ekey.example").await;
    let (_, v) = s.post("/api/v1/login-names", Some(&demo), json!({})).await;
    let reserved = v["login_name"].as_str().unwrap().to_string();
    let (status, v) = s
        .post("/api/v1/requests", Some(&demo), replacement(&reserved))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.replacement.no_key");
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&demo),
            replacement(&key.login_name),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    s.stop().await;
}
on_both_databases!(replacement_needs_a_key_of_the_enterprise);

async fn the_limit_counts_open_requests_and_replacements_alike(db: Db) {
    let s = TestServer::start(db).await;
    let key = scenario::active_key(&Portal::new(&s.base)).await.unwrap();
    let demo = s.login("demo@ekey.example").await;
    // One key in use + two 增办 in progress = three.
    for _ in 0..2 {
        let (status, v) = s.post("/api/v1/requests", Some(&demo), additional()).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let (status, v) = s.post("/api/v1/requests", Some(&demo), additional()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.request.too_many_keys");
    assert!(v["message"].as_str().unwrap().contains('3'), "{v}");
    // 补办 of the key in use replaces it: allowed at the limit.
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&demo),
            replacement(&key.login_name),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    s.stop().await;
}
on_both_databases!(the_limit_counts_open_requests_and_replacements_alike);

async fn one_replacement_or_cancellation_per_key(db: Db) {
    let s = TestServer::start(db).await;
    let key = scenario::active_key(&Portal::new(&s.base)).await.unwrap();
    let demo = s.login("demo@ekey.example").await;
    let (status, first) = s
        .post(
            "/api/v1/requests",
            Some(&demo),
            replacement(&key.login_name),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let number = first["number"].as_str().unwrap().to_string();
    let before = s.snapshot().await;
    for body in [replacement(&key.login_name), cancellation(&key.login_name)] {
        let (status, v) = s.post("/api/v1/requests", Some(&demo), body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["code"], "ekey.replacement.in_progress");
        assert!(
            v["message"].as_str().unwrap().contains(&number),
            "the message names the request in progress: {v}"
        );
    }
    let (status, v) = s
        .post_lang(
            "/api/v1/requests",
            Some(&demo),
            replacement(&key.login_name),
            "en",
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("already in progress"),
        "{v}"
    );
    assert_eq!(s.snapshot().await, before, "refusals change nothing");
    // Withdrawn, the key is free again.
    let id = first["id"].as_str().unwrap();
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/withdraw"),
            Some(&demo),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&demo),
            cancellation(&key.login_name),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    s.stop().await;
}
on_both_databases!(one_replacement_or_cancellation_per_key);

async fn two_replacements_at_once_make_one(db: Db) {
    let s = TestServer::start(db).await;
    let key = scenario::active_key(&Portal::new(&s.base)).await.unwrap();
    let demo = s.login("demo@ekey.example").await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        let body = replacement(&key.login_name);
        let (a, b, c) = tokio::join!(
            s.post("/api/v1/requests", Some(&demo), body.clone()),
            s.post("/api/v1/requests", Some(&demo), body.clone()),
            s.post(
                "/api/v1/requests",
                Some(&demo),
                cancellation(&key.login_name)
            ),
        );
        codes.extend([a.0, b.0, c.0]);
    }
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::CREATED).count(),
        1,
        "{codes:?}"
    );
    assert!(
        codes
            .iter()
            .all(|c| *c == StatusCode::CREATED || *c == StatusCode::CONFLICT),
        "{codes:?}"
    );
    let (_, list) = s.get("/api/v1/requests", Some(&demo)).await;
    let open: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "replacement" || r["kind"] == "cancellation")
        .collect();
    assert_eq!(open.len(), 1, "{list}");
    s.stop().await;
}
on_both_databases!(two_replacements_at_once_make_one);

/// The replacement of `key_lost` (lost / damaged) for the demo's active key, approved and
/// produced; returns the original key and its certificate as the provider finds them, and
/// the replacement's id.
pub(crate) async fn replaced(s: &TestServer, key_lost: bool) -> (Value, Value, String) {
    let key = scenario::active_key(&Portal::new(&s.base)).await.unwrap();
    let demo = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let mut body = replacement(&key.login_name);
    body["key_lost"] = json!(key_lost);
    let (status, v) = s.post("/api/v1/requests", Some(&demo), body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    s.post(
        &format!("/api/v1/requests/{id}/submit"),
        Some(&demo),
        json!({}),
    )
    .await;
    upload_all(s, &demo, &id, SIX).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&demo),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    crate::lifecycle::approve_and_produce(s, &id, &demo, &agency, &provider).await;
    let (_, keys) = s.get("/api/v1/keys", Some(&demo)).await;
    let original = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key.key_id.as_str())
        .cloned()
        .unwrap();
    let (_, certs) = s
        .get(
            &format!("/api/v1/certificates?q={}", key.certificate_serial),
            Some(&provider),
        )
        .await;
    (original, certs[0].clone(), id)
}

async fn a_replacement_says_whether_the_key_is_lost_or_damaged(db: Db) {
    let s = TestServer::start(db).await;
    let key = scenario::active_key(&Portal::new(&s.base)).await.unwrap();
    let demo = s.login("demo@ekey.example").await;
    let mut body = replacement(&key.login_name);
    body.as_object_mut().unwrap().remove("key_lost");
    let before = s.snapshot().await;
    let (status, v) = s.post("/api/v1/requests", Some(&demo), body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.replacement.condition_required");
    assert!(
        v["message"].as_str().unwrap().contains("遗失还是损坏"),
        "{v}"
    );
    assert_eq!(s.snapshot().await, before, "a refusal changes nothing");
    s.stop().await;

    // Damaged: the original is marked damaged, its certificate superseded.
    let s = TestServer::start(db).await;
    let (original, cert, _) = replaced(&s, false).await;
    assert_eq!(original["state"], "damaged", "{original}");
    assert_eq!(cert["revocation_reason"], "superseded", "{cert}");
    assert_eq!(original["returned_at"], Value::Null, "not back yet");
    // The damaged key arrives at the agency's window: recorded once, by staff only.
    let key_id = original["id"].as_str().unwrap();
    let url = format!("/api/v1/keys/{key_id}/return");
    let demo = s.login("demo@ekey.example").await;
    let beijing = s.login("agency-110000").await;
    let agency = s.login("agency-320000").await;
    let (status, _) = s.post(&url, Some(&demo), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s.post(&url, Some(&beijing), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another province's key");
    let (status, v) = s.post(&url, Some(&agency), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["returned_at"].as_str().is_some(), "{v}");
    let provider = s.login("provider").await;
    let before = s.snapshot().await;
    let (status, v) = s.post(&url, Some(&provider), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "ekey.key.already_returned");
    assert_eq!(s.snapshot().await, before, "recorded once");
    let (_, keys) = s.get("/api/v1/keys", Some(&demo)).await;
    let listed = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id)
        .unwrap();
    assert!(listed["returned_at"].as_str().is_some(), "{listed}");
    let report = s.verify_audit().await;
    assert_eq!(report.first_broken, None);
    s.stop().await;
    // Lost: marked lost, revoked for key compromise.
    let s = TestServer::start(db).await;
    let (original, cert, _) = replaced(&s, true).await;
    assert_eq!(original["state"], "lost", "{original}");
    assert_eq!(cert["revocation_reason"], "keyCompromise", "{cert}");
    // A lost key cannot come back.
    let provider = s.login("provider").await;
    let (status, v) = s
        .post(
            &format!("/api/v1/keys/{}/return", original["id"].as_str().unwrap()),
            Some(&provider),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "ekey.key.not_damaged");
    s.stop().await;
}
on_both_databases!(a_replacement_says_whether_the_key_is_lost_or_damaged);

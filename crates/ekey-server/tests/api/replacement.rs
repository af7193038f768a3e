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

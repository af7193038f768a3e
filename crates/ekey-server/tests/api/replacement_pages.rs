//! The enterprise's pages around the three-key limit (issue 16, item 14): the limit said
//! where it bites (home count with keys in progress, 增办 not offered at the limit, a
//! refused fourth key explained at the top of the form).

use ekey_testkit::scenario::{self, DEMO_PASSWORD, Portal};
use reqwest::StatusCode;
use serde_json::json;

use crate::pages::PageClient;
use crate::support::*;

/// The first `<p class="alert" …>` of the page.
fn top_alert(html: &str) -> String {
    let at = html
        .find("class=\"alert\"")
        .unwrap_or_else(|| panic!("no alert"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    rest[start..start + rest[start..].find("</p>").unwrap()].to_string()
}

async fn the_limit_is_said_where_it_bites(db: Db) {
    let s = TestServer::start(db).await;
    scenario::active_key(&Portal::new(&s.base)).await.unwrap();
    let demo = s.login("demo@ekey.example").await;
    let p = PageClient::new(&s);
    p.login("demo@ekey.example", DEMO_PASSWORD).await;
    let home = p.get("/portal").await;
    assert!(home.body.contains("1 / 3"), "one key in use");
    // Two 增办 in progress count toward the three.
    for _ in 0..2 {
        let (status, v) = s
            .post(
                "/api/v1/requests",
                Some(&demo),
                json!({"kind": "additional", "licence_types": ["import_licence"], "reason": "新增口岸业务",
                       "login_name": {"mode": "allocate"}, "authorised_user": person("liming@example.com")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let home = p.get("/portal").await;
    assert!(
        home.body.contains("3 / 3"),
        "keys in progress count on the home page"
    );
    assert!(home.body.contains("已达上限"), "the limit is said");
    let apply = p.get("/portal/apply").await;
    assert!(
        !apply.body.contains("/portal/requests/new?kind=additional"),
        "增办 is not offered at the limit"
    );
    assert!(apply.body.contains("已达每家企业最多 3 把的上限"));
    assert!(
        apply.body.contains("/portal/requests/new?kind=replacement"),
        "补办 still is"
    );
    // Typed in anyway: the form says why at its top, and keeps what was typed.
    let csrf = p.csrf("/portal/requests/new?kind=additional").await;
    let a = p
        .post(
            "/portal/requests/new?kind=additional",
            &[
                ("csrf", &csrf),
                ("kind", "additional"),
                ("licence_types", "import_licence"),
                ("login_mode", "allocate"),
                ("login_name", ""),
                ("reason", "第四把钥匙的理由"),
                ("au_name", "李明"),
                ("au_id_number", "11010519491231002X"),
                ("au_mobile", "13912345678"),
                ("au_email", "liming@example.com"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let alert = top_alert(&a.body);
    assert!(
        alert.contains("最多持有 3 个电子钥匙") && alert.contains("已有 3 个"),
        "the real reason at the top: {alert}"
    );
    assert!(a.body.contains("第四把钥匙的理由"), "the reason is kept");
    s.stop().await;
}
on_both_databases!(the_limit_is_said_where_it_bites);

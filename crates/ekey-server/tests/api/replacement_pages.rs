//! The enterprise's pages around the three-key limit and its forms (issue 16, items 14 and
//! 17): the limit said where it bites (home count with keys in progress, 增办 not offered
//! at the limit, a refused fourth key explained at the top of the form), and nothing typed
//! lost (a refused mailing choice shown again with what was typed and the problem at its
//! field; registration keeps what was typed; mobiles typed in groups accepted).

use ekey_testkit::ident::credit_code;
use ekey_testkit::scenario::{self, DEMO_PASSWORD, Portal};
use reqwest::StatusCode;
use serde_json::json;

use crate::pages::PageClient;
use crate::support::*;

/// The text of the first `<small class="err" role="alert">` after `id="<id>"`.
fn error_after(html: &str, id: &str) -> String {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id}"));
    let rest = &html[at..];
    let marker = "class=\"err\" role=\"alert\">";
    let start = rest.find(marker).unwrap() + marker.len();
    rest[start..start + rest[start..].find('<').unwrap()].to_string()
}

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

async fn a_refused_mailing_choice_keeps_what_was_typed(db: Db) {
    let s = TestServer::start(db).await;
    let demo = s.login("demo@ekey.example").await;
    let id = request_in_agency_review(&s, &demo).await;
    let p = PageClient::new(&s);
    p.login("demo@ekey.example", DEMO_PASSWORD).await;
    let path = format!("/portal/requests/{id}");
    let csrf = p.csrf(&path).await;
    let before = s.snapshot().await;
    let typed = [
        ("csrf", csrf.as_str()),
        ("method", "mail"),
        ("recipient", "王收件"),
        ("mobile", "139 8765 4321"),
        ("id_number", "11010519491231002X"),
        ("address", "上海市浦东新区世纪大道 100 号"),
    ];
    let a = p.post(&format!("{path}/collection"), &typed).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.location);
    let h = &a.body;
    for v in ["王收件", "139 8765 4321", "上海市浦东新区世纪大道 100 号"] {
        assert!(h.contains(&format!("value=\"{v}\"")), "{v} kept");
    }
    assert!(
        h.contains("name=\"method\" value=\"mail\" checked"),
        "mailing stays chosen"
    );
    let e = error_after(h, "c-address");
    assert!(e.contains("注册"), "the problem at the address: {e:?}");
    assert_eq!(error_after(h, "c-recipient"), "");
    assert_eq!(before, s.snapshot().await, "nothing saved");
    // A wrong mobile: said at the mobile.
    let mut wrong = typed;
    wrong[3] = ("mobile", "139 8765 432");
    wrong[5] = ("address", "南京市建邺区江东中路 100 号");
    let a = p.post(&format!("{path}/collection"), &wrong).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_after(&a.body, "c-mobile").contains("手机"), "mobile");
    // Corrected: saved, the mobile typed in groups accepted.
    let mut right = typed;
    right[5] = ("address", "南京市建邺区江东中路 100 号 3 楼");
    let a = p.post(&format!("{path}/collection"), &right).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&demo)).await;
    assert_eq!(r["collection"]["mobile"], "13987654321", "{r}");
    s.stop().await;
}
on_both_databases!(a_refused_mailing_choice_keeps_what_was_typed);

async fn registration_keeps_what_was_typed_and_takes_grouped_mobiles(db: Db) {
    let s = TestServer::start(db).await;
    let p = PageClient::new(&s);
    let csrf = p.csrf("/register").await;
    let code = credit_code(1101);
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("enterprise_name", "无锡分组号码有限公司"),
        ("credit_code", code.as_str()),
        ("province", "320000"),
        ("address", "无锡市梁溪区中山路 8 号"),
        ("legal_representative", "顾伟"),
        ("contact_name", "沈洁"),
        ("id_number", "11010519491231002X"),
        ("mobile", "139-1234-5678"),
        ("email", "grouped@pages.example"),
        ("password", "Secret-2026"),
        ("password2", "Other-2026"),
    ];
    // A password mismatch: everything else comes back as typed, passwords do not.
    let a = p.post("/register", &form).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    for (k, v) in &form[1..10] {
        if *k == "province" {
            assert!(
                a.body.contains("value=\"320000\" selected"),
                "province kept"
            );
        } else {
            assert!(a.body.contains(&format!("value=\"{v}\"")), "{k} kept");
        }
    }
    assert!(!a.body.contains("Secret-2026") && !a.body.contains("Other-2026"));
    assert!(
        a.body.contains("id=\"e-mobile\" role=\"alert\"></small>"),
        "the grouped mobile is fine"
    );
    assert!(
        !a.body
            .contains("id=\"e-password2\" role=\"alert\"></small>"),
        "the mismatch is said"
    );
    form[11] = ("password2", "Secret-2026");
    let a = p.post("/register", &form).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    // The API takes a mobile in groups too, and stores it without the spaces.
    let mut body = registration(
        "无锡空格号码有限公司",
        &credit_code(1102),
        "320000",
        "spaced@pages.example",
    );
    body["contact"]["mobile"] = json!("+86 139 1234 5678");
    let (status, v) = s.post("/api/v1/registrations", None, body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    s.stop().await;
}
on_both_databases!(registration_keeps_what_was_typed_and_takes_grouped_mobiles);

async fn the_replacement_form_asks_lost_or_damaged(db: Db) {
    let s = TestServer::start(db).await;
    let key = scenario::active_key(&Portal::new(&s.base)).await.unwrap();
    let p = PageClient::new(&s);
    p.login("demo@ekey.example", DEMO_PASSWORD).await;
    let path = format!(
        "/portal/requests/new?kind=replacement&login_name={}",
        key.login_name
    );
    let page = p.get(&path).await;
    assert!(
        page.body.contains("name=\"key_condition\" value=\"lost\"")
            && page
                .body
                .contains("name=\"key_condition\" value=\"damaged\""),
        "the form asks"
    );
    let csrf = p.csrf(&path).await;
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("kind", "replacement"),
        ("licence_types", "import_licence"),
        ("login_mode", "original"),
        ("login_name", key.login_name.as_str()),
        ("reason", "钥匙插口断裂"),
        ("au_name", "李明"),
        ("au_id_number", "11010519491231002X"),
        ("au_mobile", "13912345678"),
        ("au_email", "liming@example.com"),
    ];
    let a = p.post("/portal/requests/new?kind=replacement", &form).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.location);
    let e = error_after(&a.body, "f-key_condition");
    assert!(e.contains("遗失还是损坏"), "said at the choice: {e:?}");
    assert!(a.body.contains("钥匙插口断裂"), "the reason is kept");
    form.push(("key_condition", "damaged"));
    let a = p.post("/portal/requests/new?kind=replacement", &form).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let id = a
        .location
        .trim_start_matches("/portal/requests/")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let demo = s.login("demo@ekey.example").await;
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&demo)).await;
    assert_eq!(r["form"]["key_lost"], false, "damaged: {r}");
    s.stop().await;
}
on_both_databases!(the_replacement_form_asks_lost_or_damaged);

/// In Chromium: the home count and the apply page at the limit, and a refused mailing
/// choice shown again with what was typed (screenshots `h1-*.png` with browser.rs's).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_and_a_refused_mailing_choice_in_a_browser() {
    use crate::browser::{Browser, log_in};
    let s = TestServer::start(Db::Sqlite).await;
    scenario::active_key(&Portal::new(&s.base)).await.unwrap();
    let demo = s.login("demo@ekey.example").await;
    // One 增办 under review (its collection can be chosen), one in draft: three in all.
    let additional = json!({"kind": "additional", "licence_types": ["import_licence"],
        "reason": "新增口岸业务", "login_name": {"mode": "allocate"},
        "authorised_user": person("liming@example.com")});
    let (_, v) = s
        .post("/api/v1/requests", Some(&demo), additional.clone())
        .await;
    let id = v["id"].as_str().unwrap().to_string();
    s.post(
        &format!("/api/v1/requests/{id}/submit"),
        Some(&demo),
        json!({}),
    )
    .await;
    upload_all(&s, &demo, &id, SIX).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&demo),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = s.post("/api/v1/requests", Some(&demo), additional).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");

    let b = Browser::start().await;
    log_in(&b, &s, "demo@ekey.example", DEMO_PASSWORD).await;
    b.goto(&s.url("/portal")).await;
    assert_eq!(b.text(".key-count").await, "3 / 3");
    assert!(b.body().await.contains("已达上限"));
    b.shot("h1-01-home-at-the-limit").await;
    b.goto(&s.url("/portal/apply")).await;
    let text = b.body().await;
    assert!(text.contains("已达每家企业最多 3 把的上限"), "{text}");
    b.shot_at("h1-02-apply-no-additional", ".at-limit").await;

    b.goto(&s.url(&format!("/portal/requests/{id}"))).await;
    b.click("input[name=method][value=mail]").await;
    b.fill("recipient", "王收件").await;
    b.fill("mobile", "139 8765 4321").await;
    b.fill("id_number", "11010519491231002X").await;
    b.fill("address", "上海市浦东新区世纪大道 100 号").await;
    b.click("#collection button[type=submit]").await;
    let err = b.wait_text("#collection .has-error .err", "注册").await;
    assert!(err.contains("南京市建邺区江东中路"), "{err}");
    for (name, typed) in [
        ("recipient", "王收件"),
        ("mobile", "139 8765 4321"),
        ("address", "上海市浦东新区世纪大道 100 号"),
    ] {
        let value = b
            .css(&format!("#collection [name={name}]"))
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default();
        assert_eq!(value, typed, "{name} kept");
    }
    b.shot_at("h1-03-mailing-refused-kept", "#collection").await;
    b.close().await;
    s.stop().await;
}

async fn the_agency_records_the_damaged_keys_return_from_its_console(db: Db) {
    let s = TestServer::start(db).await;
    let (original, _, id) = crate::replacement::replaced(&s, false).await;
    let p = PageClient::new(&s);
    p.login("agency-320000", DEMO_PASSWORD).await;
    let path = format!("/console/requests/{id}");
    let page = p.get(&path).await;
    assert!(page.body.contains("尚未交回"), "not back yet");
    let key_id = original["id"].as_str().unwrap();
    let action = format!("/console/keys/{key_id}/return");
    assert!(page.body.contains(&action), "the button is there");
    let csrf = crate::pages::csrf_of(&page.body);
    let a = p
        .post(
            &action,
            &[("csrf", csrf.as_str()), ("request_id", id.as_str())],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location, format!("{path}?done=key_returned"));
    let page = p.get(&a.location).await;
    assert!(page.body.contains("class=\"key-returned\""), "recorded");
    assert!(!page.body.contains(&action), "once");
    s.stop().await;
}
on_both_databases!(the_agency_records_the_damaged_keys_return_from_its_console);

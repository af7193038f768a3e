//! The portal's pages over plain HTTP (no browser): CSRF on every form, every field checked
//! on the server with the reason next to it, free text shown as text, password reset,
//! collection choice, language switch, and who may see what. Each on SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ekey_server::web::encode;
use ekey_store::Store as _;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

/// A browser-like client: keeps cookies, does not follow redirects.
pub struct PageClient<'a> {
    s: &'a TestServer,
    client: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
}

pub struct Answer {
    pub status: StatusCode,
    pub location: String,
    pub body: String,
}

impl<'a> PageClient<'a> {
    pub fn new(s: &'a TestServer) -> Self {
        PageClient {
            s,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn answer(&self, res: reqwest::Response) -> Answer {
        for v in res.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            let mut jar = self.cookies.lock().unwrap();
            if val.is_empty() {
                jar.remove(k);
            } else {
                jar.insert(k.to_string(), val.to_string());
            }
        }
        Answer {
            status: res.status(),
            location: res
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body: res.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        let res = self
            .client
            .get(self.s.url(path))
            .header("cookie", self.cookie_header())
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        self.answer(res).await
    }

    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let res = self
            .client
            .post(self.s.url(path))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.answer(res).await
    }

    /// The CSRF token a page gave its forms.
    pub async fn csrf(&self, path: &str) -> String {
        let page = self.get(path).await;
        csrf_of(&page.body)
    }

    pub async fn login(&self, login: &str, password: &str) {
        let csrf = self.csrf("/login").await;
        let a = self
            .post(
                "/login",
                &[("csrf", &csrf), ("login", login), ("password", password)],
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    }
}

pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {html}"));
    let rest = &html[at + 19..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The text of the element after `id="e-<field>"`, i.e. the error shown next to a field.
fn field_error(html: &str, field: &str) -> String {
    let marker = format!("id=\"e-{field}\" role=\"alert\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no error slot for {field}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('<').unwrap()].to_string()
}

fn registration_form<'a>(csrf: &'a str, code: &'a str, email: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("enterprise_name", "苏州页面测试有限公司"),
        ("credit_code", code),
        ("province", "320000"),
        ("address", "苏州市姑苏区人民路 100 号"),
        ("legal_representative", "周强"),
        ("contact_name", "陈静"),
        ("id_number", "11010519491231002X"),
        ("mobile", "13912345678"),
        ("email", email),
        ("password", "Secret-2026"),
        ("password2", "Secret-2026"),
    ]
}

pub async fn forms_without_their_csrf_token_change_nothing(db: Db) {
    let s = TestServer::start(db).await;
    let p = PageClient::new(&s);
    let code = credit_code("91320500MA1PAGE76");
    let before = s.snapshot().await;
    // No token, and a token of another visitor.
    let other = PageClient::new(&s).csrf("/register").await;
    let _ = p.get("/register").await;
    for token in ["", other.as_str()] {
        let a = p
            .post(
                "/register",
                &registration_form(token, &code, "x@pages.example"),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        assert!(a.body.contains("页面已过期"), "{}", a.body);
        let a = p
            .post(
                "/login",
                &[
                    ("csrf", token),
                    ("login", "demo@ekey.example"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(before, s.snapshot().await, "refused forms changed nothing");

    // Logged in, the cookie alone does not let another site's script write through the API.
    p.login("demo@ekey.example", PASSWORD).await;
    let res = s
        .client
        .post(s.url("/api/v1/login-names"))
        .header("cookie", p.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["code"], "ekey.auth.csrf");
    // With the page's token it works; reads need none.
    let token = p.csrf("/portal").await;
    let res = s
        .client
        .post(s.url("/api/v1/login-names"))
        .header("cookie", p.cookie_header())
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = s
        .client
        .get(s.url("/api/v1/me"))
        .header("cookie", p.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    s.stop().await;
}

pub async fn registration_explains_every_bad_field_next_to_it(db: Db) {
    let s = TestServer::start(db).await;
    let p = PageClient::new(&s);
    let csrf = p.csrf("/register").await;
    let before = s.snapshot().await;
    let a = p
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("enterprise_name", "苏州<b>页面</b>测试有限公司"),
                ("credit_code", "91320500MA1PAGE769"),
                ("province", "999999"),
                ("address", ""),
                ("legal_representative", "周强"),
                ("contact_name", "陈静"),
                ("id_number", "110105194912310021"),
                ("mobile", "12345"),
                ("email", "not-an-email"),
                ("password", "short"),
                ("password2", "other"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let h = &a.body;
    for (field, needle) in [
        ("credit_code", "统一社会信用代码"),
        ("address", "请填写"),
        ("id_number", "身份证"),
        ("mobile", "手机"),
        ("email", "邮箱"),
        ("password", "至少 8 位"),
        ("password2", "不一致"),
    ] {
        let e = field_error(h, field);
        assert!(e.contains(needle), "{field}: {e:?}");
    }
    assert!(h.contains("请选择所在省份"), "province");
    assert!(
        h.contains("苏州&lt;b&gt;页面") && !h.contains("<b>页面"),
        "the name is kept, as text"
    );
    assert!(!h.contains("value=\"short\""), "passwords are never echoed");
    assert_eq!(before, s.snapshot().await, "nothing stored");

    // A registered credit code gets the same answer as a new one (the owner is told by
    // mail, the visitor nothing).
    let code = credit_code("91320500MA1PAGE76");
    let a = p
        .post(
            "/register",
            &registration_form(&csrf, &code, "first@pages.example"),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let a = p
        .post(
            "/register",
            &registration_form(&csrf, &code, "second@pages.example"),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(a.location.starts_with("/register/sent"), "{}", a.location);
    s.stop().await;
}

pub async fn free_text_is_shown_as_text_and_requests_stay_private(db: Db) {
    let s = TestServer::start(db).await;
    let p = PageClient::new(&s);
    // Not logged in: the portal asks for a login and comes back.
    let a = p.get("/portal").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location, "/login?next=%2Fportal");

    p.login("demo@ekey.example", PASSWORD).await;
    let csrf = p.csrf("/portal/requests/new?kind=first").await;
    let xss = "<script>alert('x')</script>";
    let a = p
        .post(
            "/portal/requests/new?kind=first",
            &[
                ("csrf", &csrf),
                ("kind", "first"),
                ("licence_types", "import_licence"),
                ("licence_types", "textiles"),
                ("login_mode", "allocate"),
                ("reason", xss),
                ("au_name", "<img src=x onerror=alert(1)>"),
                ("au_id_number", "11010519491231002X"),
                ("au_mobile", "13912345678"),
                ("au_email", "a@example.com"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let page = p.get(&a.location).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script>alert"), "script shown as text");
    assert!(page.body.contains("&lt;script&gt;alert("), "{}", page.body);
    assert!(!page.body.contains("<img src=x"), "markup shown as text");
    assert!(page.body.contains("进口许可证、纺织品"), "both boxes kept");

    // Another enterprise opens the same page: it does not exist for them.
    let other = PageClient::new(&s);
    s.register_and_login(
        "无锡别家有限公司",
        &credit_code("91320200MA1QTHE81"),
        "320000",
        "other@pages.example",
    )
    .await;
    other.login("other@pages.example", "Secret-2026").await;
    let a = other.get(&a.location).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body.contains("未找到该申请"), "{}", a.body);
    // Staff are not enterprise users.
    let agency = PageClient::new(&s);
    agency.login("agency-320000", PASSWORD).await;
    assert_eq!(agency.get("/portal").await.status, StatusCode::FORBIDDEN);
    s.stop().await;
}

pub async fn a_forgotten_password_is_reset_from_the_mail_once(db: Db) {
    let s = TestServer::start(db).await;
    let p = PageClient::new(&s);
    let old = s.login("demo@ekey.example").await;
    let csrf = p.csrf("/password/forgot").await;
    let a = p
        .post(
            "/password/forgot",
            &[("csrf", &csrf), ("login", "demo@ekey.example")],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("如果该登录名存在"), "{}", a.body);
    // The same answer for a login that does not exist, and no mail for it.
    let a = p
        .post(
            "/password/forgot",
            &[("csrf", &csrf), ("login", "nobody@pages.example")],
        )
        .await;
    assert!(a.body.contains("如果该登录名存在"));
    let mail = s.wait_message("demo@ekey.example", "重置").await;
    assert!(
        s.mailbox()
            .await
            .iter()
            .all(|m| m["to"] != "nobody@pages.example")
    );
    let link = mail["body"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .find(|w| w.contains("/password/reset/"))
        .unwrap()
        .to_string();
    let path = link.trim_start_matches(&s.base).to_string();
    let csrf = p.csrf(&path).await;
    let a = p
        .post(
            &path,
            &[("csrf", &csrf), ("password", "abc"), ("password2", "abc")],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_error(&a.body, "password").contains("至少 8 位"));
    let a = p
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("password", "New-pass-2026"),
                ("password2", "New-pass-2026"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(a.location.starts_with("/login?done=reset"));
    // The old session is over; the new password works; the link does not work twice.
    let (status, _) = s.get("/api/v1/me", Some(&old)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.login_with("demo@ekey.example", "New-pass-2026").await;
    let a = p
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("password", "Other-pass-2026"),
                ("password2", "Other-pass-2026"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("重置链接无效"), "{}", a.body);
    s.stop().await;
}

pub async fn mailing_is_only_to_the_registered_address(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s
        .register_and_login(
            "常州邮寄测试有限公司",
            &credit_code("91320400MA1MAXL90"),
            "320000",
            "mail@pages.example",
        )
        .await;
    let id = request_in_agency_review(&s, &ent).await;
    let url = format!("/api/v1/requests/{id}/collection");
    let before = s.snapshot().await;
    let (status, v) = s
        .put_json(
            &url,
            Some(&ent),
            json!({"method": "mail", "recipient": "李明", "address": "上海市浦东新区世纪大道 1 号",
                   "mobile": "13912345678", "id_number": "11010519491231002X"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.collection.address_mismatch");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("南京市鼓楼区中山北路"),
        "{v}"
    );
    let (status, v) = s
        .put_json(
            &url,
            Some(&ent),
            json!({"method": "mail", "recipient": "李明", "address": "南京市鼓楼区中山北路 1 号",
                   "mobile": "123", "id_number": "11010519491231002X"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(
        before,
        s.snapshot().await,
        "refused choices changed nothing"
    );
    // A room number may be added.
    let (status, v) = s
        .put_json(
            &url,
            Some(&ent),
            json!({"method": "mail", "recipient": "李明", "address": "南京市鼓楼区中山北路1号 502 室",
                   "mobile": "13912345678", "id_number": "11010519491231002X"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["collection"]["method"], "mail", "{r}");
    // The agency sees the choice; another enterprise cannot make one.
    let agency = s.login("agency-320000").await;
    let (_, r) = s
        .get(&format!("/api/v1/requests/{id}"), Some(&agency))
        .await;
    assert_eq!(r["collection"]["recipient"], "李明");
    let demo = s.login("demo@ekey.example").await;
    let (status, _) = s
        .put_json(&url, Some(&demo), json!({"method": "window"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

pub async fn english_is_one_click_away(db: Db) {
    let s = TestServer::start(db).await;
    let p = PageClient::new(&s);
    let a = p.get("/login").await;
    assert!(a.body.contains("<html lang=\"zh-CN\">") && a.body.contains("忘记密码"));
    let a = p.get("/lang/en?next=%2Flogin").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location, "/login");
    let a = p.get("/login").await;
    assert!(a.body.contains("<html lang=\"en\">"), "{}", a.body);
    assert!(a.body.contains("Forgot your password?"));
    // Only paths of this site are followed after switching.
    let a = p.get("/lang/zh?next=%2F%2Fevil.example").await;
    assert_eq!(a.location, "/");
    s.stop().await;
}

pub async fn the_blank_cancellation_form_needs_no_account(db: Db) {
    let s = TestServer::start(db).await;
    let res = s
        .client
        .get(s.url("/api/v1/documents/cancellation-form.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = crate::flow::pdf_text(&res.bytes().await.unwrap());
    assert!(text.contains("注销"), "{text}");
    s.stop().await;
}

on_both_databases!(forms_without_their_csrf_token_change_nothing);
on_both_databases!(registration_explains_every_bad_field_next_to_it);
on_both_databases!(free_text_is_shown_as_text_and_requests_stay_private);
on_both_databases!(a_forgotten_password_is_reset_from_the_mail_once);
on_both_databases!(mailing_is_only_to_the_registered_address);
on_both_databases!(english_is_one_click_away);
on_both_databases!(the_blank_cancellation_form_needs_no_account);
on_both_databases!(a_changed_password_ends_every_other_session);

/// 修改密码 from the page: a wrong current password and a weak new one are explained next
/// to their fields and change nothing; then the new password takes effect, every other
/// session of the account ends (API tokens, other browsers), this browser stays logged in.
pub async fn a_changed_password_ends_every_other_session(db: Db) {
    let s = TestServer::start(db).await;
    let elsewhere = s.login("agency-320000").await;
    let other_browser = PageClient::new(&s);
    other_browser.login("agency-320000", PASSWORD).await;
    let page = PageClient::new(&s);
    page.login("agency-320000", PASSWORD).await;
    let csrf = page.csrf("/account/password").await;

    let a = page
        .post(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current_password", "not-my-password-1"),
                ("password", "Quite-New-2026"),
                ("password2", "Quite-New-2026"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        field_error(&a.body, "current_password").contains("当前密码不正确"),
        "{}",
        a.body
    );
    for (weak, why) in [
        ("abcd1234", "过于常见"),
        ("agency-320000x1", "不能包含登录名"),
        ("short1", "至少 8 位"),
    ] {
        let a = page
            .post(
                "/account/password",
                &[
                    ("csrf", &csrf),
                    ("current_password", PASSWORD),
                    ("password", weak),
                    ("password2", weak),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{weak}");
        assert!(
            field_error(&a.body, "password").contains(why),
            "{weak}: {}",
            a.body
        );
    }
    // Nothing changed so far: the old password and the other sessions still work.
    assert_eq!(
        s.get("/api/v1/me", Some(&elsewhere)).await.0,
        StatusCode::OK
    );

    let a = page
        .post(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current_password", PASSWORD),
                ("password", "Quite-New-2026"),
                ("password2", "Quite-New-2026"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("新密码已生效"), "{}", a.body);
    assert!(a.body.contains("已退出其他设备上的登录：2"), "{}", a.body);
    // The API token and the other browser are logged out; this browser is not.
    assert_eq!(
        s.get("/api/v1/me", Some(&elsewhere)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let other = other_browser.get("/console/queue").await;
    assert_eq!(other.status, StatusCode::SEE_OTHER);
    assert!(other.location.starts_with("/login"), "{}", other.location);
    assert_eq!(page.get("/console/queue").await.status, StatusCode::OK);
    // The old password no longer logs in; the new one does.
    let (status, _) = s
        .post(
            "/api/v1/sessions",
            None,
            json!({"login": "agency-320000", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.login_with("agency-320000", "Quite-New-2026").await;
    let report = s.verify_audit().await;
    assert_eq!(report.first_broken, None);
    s.stop().await;
}

pub async fn a_cancellation_is_received_at_the_window_and_completed_from_the_consoles(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let first = request_in_agency_review(&s, &ent).await;
    let key = crate::lifecycle::approve_and_produce(&s, &first, &ent, &agency, &provider).await;
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            json!({"kind": "cancellation",
                   "login_name": {"mode": "original", "value": key["login_name"]},
                   "authorised_user": person("a@example.com")}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (_, v) = s
        .post(
            &format!("/api/v1/requests/{id}/submit"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(v["status"], "awaiting_handover");

    // The clerk ticks only the form: refused, with what is missing.
    let clerk = PageClient::new(&s);
    clerk.login("agency-320000", PASSWORD).await;
    let page = clerk.get(&format!("/console/requests/{id}")).await;
    assert!(page.body.contains("注销受理"), "the intake form is offered");
    let csrf = csrf_of(&page.body);
    let before = s.snapshot().await;
    let a = clerk
        .post(
            &format!("/console/requests/{id}/receive"),
            &[("csrf", &csrf), ("form_received", "on")],
        )
        .await;
    let shown = clerk.get(&a.location).await;
    assert!(shown.body.contains("电子钥匙本身"), "{}", shown.body);
    assert_eq!(before, s.snapshot().await, "nothing recorded");
    clerk
        .post(
            &format!("/console/requests/{id}/receive"),
            &[
                ("csrf", &csrf),
                ("form_received", "on"),
                ("key_received", "on"),
            ],
        )
        .await;
    let a = clerk
        .post(
            &format!("/console/requests/{id}/decision"),
            &[("csrf", &csrf), ("verdict", "approve")],
        )
        .await;
    assert!(a.location.ends_with("done=approved"), "{}", a.location);

    // The provider completes it: the certificate is revoked, the key terminated.
    let op = PageClient::new(&s);
    op.login("provider", PASSWORD).await;
    let csrf = op.csrf(&format!("/console/requests/{id}")).await;
    let a = op
        .post(
            &format!("/console/requests/{id}/decision"),
            &[("csrf", &csrf), ("verdict", "approve")],
        )
        .await;
    assert!(a.location.ends_with("done=approved"), "{}", a.location);
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["status"], "completed", "{r}");
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    assert_eq!(keys[0]["state"], "revoked", "{keys}");
    let serial = key["certificate_serial"].as_str().unwrap();
    let cert = ekey_store::Store::certificate(s.raw(), serial)
        .await
        .unwrap()
        .expect("the certificate");
    assert!(cert.revoked_at.is_some(), "revoked");
    assert_eq!(
        cert.revocation_reason.as_deref(),
        Some("cessationOfOperation")
    );
    s.stop().await;
}

on_both_databases!(a_cancellation_is_received_at_the_window_and_completed_from_the_consoles);

pub async fn the_provider_finds_and_revokes_a_certificate_from_its_page(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let first = request_in_agency_review(&s, &ent).await;
    let key = crate::lifecycle::approve_and_produce(&s, &first, &ent, &agency, &provider).await;
    let serial = key["certificate_serial"].as_str().unwrap().to_string();

    let op = PageClient::new(&s);
    op.login("provider", PASSWORD).await;
    let page = op.get("/console/certificates").await;
    assert_eq!(page.status, StatusCode::OK);
    let (_, st) = s.get("/api/v1/ca/status", Some(&provider)).await;
    assert_eq!(st["issued_today"], 1, "{st}");
    assert_eq!(st["ocsp_answering"], true, "{st}");
    assert!(st["crl_made_at"].is_string(), "{st}");
    // Found by credit code, by login name and by serial (with colons, in capitals).
    let colons = serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    for q in [
        "91320106MA1XYW0A36".to_string(),
        key["login_name"].as_str().unwrap().to_string(),
        colons,
    ] {
        let page = op
            .get(&format!("/console/certificates?q={}", encode(&q)))
            .await;
        assert!(page.body.contains(&serial), "{q}: not found");
    }
    let csrf = csrf_of(&page.body);
    let before = s.snapshot().await;
    let a = op
        .post(
            &format!("/console/certificates/{serial}/revoke"),
            &[("csrf", &csrf), ("q", &serial), ("reason", "noSuchReason")],
        )
        .await;
    assert!(a.location.contains("error="), "{}", a.location);
    assert_eq!(before, s.snapshot().await, "a bad reason changes nothing");
    let a = op
        .post(
            &format!("/console/certificates/{serial}/revoke"),
            &[("csrf", &csrf), ("q", &serial), ("reason", "keyCompromise")],
        )
        .await;
    assert!(a.location.contains("done=revoked"), "{}", a.location);
    let cert = ekey_store::Store::certificate(s.raw(), &serial)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cert.revocation_reason.as_deref(), Some("keyCompromise"));
    let (status, v) = s
        .post(
            &format!("/api/v1/certificates/{serial}/revoke"),
            Some(&provider),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, _) = s
        .post(
            "/api/v1/certificates/0badc0de0badc0de/revoke",
            Some(&provider),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, st) = s.get("/api/v1/ca/status", Some(&provider)).await;
    assert_eq!(st["revoked_today"], 1, "{st}");
    // Nobody else revokes.
    let (status, _) = s
        .post(
            &format!("/api/v1/certificates/{serial}/revoke"),
            Some(&agency),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let clerk = PageClient::new(&s);
    clerk.login("agency-320000", PASSWORD).await;
    assert_eq!(
        clerk.get("/console/certificates").await.status,
        StatusCode::FORBIDDEN
    );
    s.stop().await;
}

on_both_databases!(the_provider_finds_and_revokes_a_certificate_from_its_page);

pub async fn the_administrator_edits_an_agency_and_loads_a_new_year(db: Db) {
    let s = TestServer::start(db).await;
    let admin = PageClient::new(&s);
    admin.login("admin", PASSWORD).await;
    let page = admin.get("/console/admin").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = csrf_of(&page.body);
    let a = admin
        .post(
            "/console/admin/agencies/320000",
            &[
                ("csrf", &csrf),
                ("address", "南京市鼓楼区北京西路 <b>69</b> 号"),
                ("window", "B2 窗口"),
                ("hours", "工作日 9:00–17:00"),
                ("hotline", "025-12345678"),
            ],
        )
        .await;
    assert!(a.location.contains("done=agency"), "{}", a.location);
    let a = admin
        .post(
            "/console/admin/agencies/320000",
            &[
                ("csrf", &csrf),
                ("address", ""),
                ("window", "x"),
                ("hours", "x"),
                ("hotline", "x"),
            ],
        )
        .await;
    assert!(a.location.contains("error="), "an empty address is refused");
    // The enterprise's footer and the public list show the new details, as text.
    let ent = PageClient::new(&s);
    ent.login("demo@ekey.example", PASSWORD).await;
    let home = ent.get("/portal").await;
    assert!(home.body.contains("B2 窗口") && home.body.contains("025-12345678"));
    assert!(home.body.contains("&lt;b&gt;69&lt;&#x2f;b&gt;") || home.body.contains("&lt;b&gt;69"));

    // A new year's holiday file: checked, kept, used.
    let token = s.login("admin").await;
    let put = |body: &'static str| {
        s.client
            .put(s.url("/api/v1/admin/holidays"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let res = put("{\"year\": 2027, \"days\": [{\"name\": \"x\", \"date\": \"2026-13-01\"}]}")
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        s.raw().holiday_years().await.unwrap().is_empty(),
        "nothing kept"
    );
    let res = put(r#"{"year": 2027, "papers": [], "days": [
            {"name": "元旦", "date": "2027-01-01", "isOffDay": true},
            {"name": "春节", "date": "2027-02-06", "isOffDay": false}]}"#)
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["year"], 2027);
    assert!(
        v["covered_years"]
            .as_array()
            .unwrap()
            .contains(&json!(2027))
    );
    // Kept in the database, where every instance (and the next start) finds it.
    let stored = s.raw().holiday_years().await.unwrap();
    assert_eq!(stored.iter().map(|y| y.year).collect::<Vec<_>>(), [2027]);
    let covered: serde_json::Value = s
        .client
        .get(s.url("/api/v1/admin/holidays"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        covered["covered_years"]
            .as_array()
            .unwrap()
            .contains(&json!(2027))
    );
    let page = admin.get("/console/admin").await;
    assert!(page.body.contains("2027"), "coverage shown");
    s.stop().await;
}

on_both_databases!(the_administrator_edits_an_agency_and_loads_a_new_year);

async fn new_staff(admin: &PageClient<'_>, csrf: &str, role: &str, province: &str) -> Answer {
    admin
        .post(
            "/console/admin/users",
            &[
                ("csrf", csrf),
                ("login", "bj-clerk-2"),
                ("display_name", "赵敏"),
                ("email", "zhaomin@example.gov.cn"),
                ("role", role),
                ("province", province),
                ("password", "Clerk-pass-2026"),
            ],
        )
        .await
}

pub async fn staff_accounts_are_created_and_disabled_by_the_administrator(db: Db) {
    let s = TestServer::start(db).await;
    let admin = PageClient::new(&s);
    admin.login("admin", PASSWORD).await;
    let csrf = admin.csrf("/console/admin").await;
    // An agency clerk needs a province.
    let a = new_staff(&admin, &csrf, "agency", "").await;
    assert!(a.location.contains("error="), "{}", a.location);
    let a = new_staff(&admin, &csrf, "agency", "110000").await;
    assert!(a.location.contains("done=user"), "{}", a.location);
    let a = new_staff(&admin, &csrf, "provider", "").await;
    assert!(a.location.contains("error="), "a taken login");

    // The new clerk works in Beijing …
    let token = s.login_with("bj-clerk-2", "Clerk-pass-2026").await;
    let (status, me) = s.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (me["role"].as_str(), me["province"].as_str()),
        (Some("agency"), Some("110000"))
    );
    // … until disabled: the session ends at once and logging in says why.
    let admin_token = s.login("admin").await;
    let (_, users) = s.get("/api/v1/admin/users", Some(&admin_token)).await;
    let id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["login"] == "bj-clerk-2")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = admin
        .post(
            &format!("/console/admin/users/{id}/active"),
            &[("csrf", &csrf), ("active", "false")],
        )
        .await;
    assert!(a.location.contains("done=user"), "{}", a.location);
    let (status, _) = s.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, v) = s
        .post(
            "/api/v1/sessions",
            None,
            json!({"login": "bj-clerk-2", "password": "Clerk-pass-2026"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(v["code"], "ekey.auth.disabled");
    // The administrator cannot lock themselves out.
    let me = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["login"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = s
        .post(
            &format!("/api/v1/admin/users/{me}/active"),
            Some(&admin_token),
            json!({"active": false}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    s.stop().await;
}

on_both_databases!(staff_accounts_are_created_and_disabled_by_the_administrator);

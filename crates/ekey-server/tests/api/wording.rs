//! Words as the procedure and the officials say them (issue 16, items 6, 12 and 18): the
//! agency's discretion over 增办 is "不同意增办"; the forms' titles, legal basis and limits;
//! mail and SMS signed by the agency with its hotline and address; English pages without
//! internal names or raw timestamps. Each on SQLite and PostgreSQL.

use ekey_testkit::scenario::Portal;
use reqwest::StatusCode;
use serde_json::json;

use crate::pages::PageClient;
use crate::support::*;

/// Every message (mail and SMS) sent to `to`, as one text per message.
async fn messages_to(s: &TestServer, to: &str) -> Vec<String> {
    s.mailbox()
        .await
        .into_iter()
        .filter(|m| m["to"] == to)
        .map(|m| {
            format!(
                "{}\n{}",
                m["subject"].as_str().unwrap_or(""),
                m["body"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Waits until `to` has a message containing `needle`; returns it.
async fn message_with(s: &TestServer, to: &str, needle: &str) -> String {
    let m = s.wait_message(to, needle).await;
    format!(
        "{}\n{}",
        m["subject"].as_str().unwrap_or(""),
        m["body"].as_str().unwrap_or("")
    )
}

// ---------------------------------------------------------------------------------------
// Item 6: 不同意增办.

async fn an_additional_key_not_granted_is_said_in_those_words(db: Db) {
    let s = TestServer::start(db).await;
    // 增办 needs a key already held: the demo enterprise gets one.
    ekey_testkit::scenario::active_key(&Portal::new(&s.base))
        .await
        .unwrap();
    let ent = s.login("demo@ekey.example").await;
    let mut body = first_request("zengban-user@wording.example");
    body["kind"] = json!("additional");
    body["reason"] = json!("新增一名业务员办理许可证申领");
    body["authorised_user"]["mobile"] = json!("13912340001");
    let (status, v) = s.post("/api/v1/requests", Some(&ent), body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/submit"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    upload_all(&s, &ent, &id, SIX).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // The agency's console offers it in those words.
    let clerk = PageClient::new(&s);
    clerk.login("agency-320000", PASSWORD).await;
    let page = clerk.get(&format!("/console/requests/{id}")).await;
    assert!(page.body.contains("不同意增办"), "{}", page.body);
    assert!(!page.body.contains("不予"), "{}", page.body);

    let agency = s.login("agency-320000").await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&agency),
            json!({"approve": false, "refuse": true, "remark": "本企业业务量不需要第二把钥匙"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "refused");
    assert_eq!(v["status_label"], "不同意增办", "{v}");
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["status_label"], "不同意增办", "{r}");

    // The enterprise's page, mail and SMS say the same.
    let p = PageClient::new(&s);
    p.login("demo@ekey.example", PASSWORD).await;
    let page = p.get(&format!("/portal/requests/{id}")).await;
    assert!(page.body.contains("不同意增办"), "{}", page.body);
    assert!(!page.body.contains("不予受理"), "{}", page.body);
    let mail = message_with(&s, "zengban-user@wording.example", "不同意增办").await;
    assert!(mail.contains("本企业业务量不需要第二把钥匙"), "{mail}");
    let sms = message_with(&s, "13912340001", "不同意增办").await;
    assert!(
        sms.contains(&r["number"].as_str().unwrap().to_string()),
        "{sms}"
    );
    for m in messages_to(&s, "zengban-user@wording.example")
        .await
        .into_iter()
        .chain(messages_to(&s, "13912340001").await)
    {
        assert!(!m.contains("不予受理"), "{m}");
    }
    s.stop().await;
}
on_both_databases!(an_additional_key_not_granted_is_said_in_those_words);

// ---------------------------------------------------------------------------------------
// Item 12: the forms' words.

async fn pdf(s: &TestServer, token: &str, path: &str) -> String {
    let res = s
        .client
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    crate::flow::pdf_text(&res.bytes().await.unwrap())
}

/// pdftotext -layout spreads a title over spaces; compare without them.
fn squeezed(t: &str) -> String {
    t.chars().filter(|c| !c.is_whitespace()).collect()
}

async fn the_forms_say_what_the_procedure_says(db: Db) {
    let s = TestServer::start_with(db, default_start(), |c| {
        c.provider_name = "测试数字认证有限公司".into();
    })
    .await;
    let ent = s
        .register_and_login(
            "苏州表格措辞测试有限公司",
            &ekey_testkit::ident::credit_code(4002),
            "320000",
            "forms@wording.example",
        )
        .await;
    let id = submitted_request(&s, &ent).await;
    let base = format!("/api/v1/requests/{id}/documents");

    let form = pdf(&s, &ent, &format!("{base}/application-form.pdf")).await;
    let title = form.lines().map(str::trim).find(|l| !l.is_empty()).unwrap();
    let flat = squeezed(&form);
    assert!(
        squeezed(title).contains("货物进出口行政许可电子认证证书和电子钥匙申请表"),
        "title: {title}\n{form}"
    );
    assert!(!flat.contains("一式两份"), "{form}");
    assert!(!flat.contains("eKey"), "no product name: {form}");
    assert!(flat.contains("在线填报系统"), "{form}");
    assert!(flat.contains("商务部公告2016年第82号"), "{form}");

    let letter = squeezed(&pdf(&s, &ent, &format!("{base}/confirmation-letter.pdf")).await);
    assert!(letter.contains("致：测试数字认证有限公司"), "{letter}");
    assert!(!letter.contains("eKey"), "{letter}");

    // The request page no longer asks for two copies.
    let p = PageClient::new(&s);
    p.login("forms@wording.example", "Secret-2026").await;
    let page = p.get(&format!("/portal/requests/{id}")).await;
    assert!(!page.body.contains("一式两份"), "{}", page.body);

    // The unlock form: its limit in the procedure's words.
    let (_, first) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    let login_name = first["login_name"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            json!({"kind": "unlock", "login_name": {"mode": "original", "value": login_name},
                   "authorised_user": person("forms@wording.example"),
                   "unlock_challenge": "AB".repeat(16)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let unlock = v["id"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{unlock}/submit"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let text = squeezed(
        &pdf(
            &s,
            &ent,
            &format!("/api/v1/requests/{unlock}/documents/unlock-form.pdf"),
        )
        .await,
    );
    assert!(text.contains("每张图片小于200KB"), "{text}");
    assert!(
        text.contains("货物进出口行政许可电子认证证书和电子钥匙申请表（解锁）"),
        "{text}"
    );
    assert!(text.contains("商务部公告2016年第82号"), "{text}");
    assert!(!text.contains("eKey"), "{text}");
    s.stop().await;
}
on_both_databases!(the_forms_say_what_the_procedure_says);

// ---------------------------------------------------------------------------------------
// Item 12: the collection notice is signed by the agency, with its hotline and address.

async fn the_collection_notice_comes_from_the_agency(db: Db) {
    let s = TestServer::start(db).await;
    let portal = Portal::new(&s.base);
    ekey_testkit::scenario::active_key(&portal).await.unwrap();
    let sms = message_with(&s, "13912345678", "领取").await;
    assert!(sms.starts_with("\n【江苏省商务厅】"), "{sms}");
    assert!(sms.contains("025-83666306"), "{sms}");
    assert!(sms.contains("汉中门大街145号"), "{sms}");
    let mail = message_with(&s, "liming@example.com", "可领取").await;
    assert!(mail.contains("025-83666306"), "{mail}");
    assert!(mail.contains("汉中门大街145号"), "{mail}");
    assert!(mail.contains("江苏省商务厅"), "{mail}");
    s.stop().await;
}
on_both_databases!(the_collection_notice_comes_from_the_agency);

async fn a_return_sms_is_signed_by_the_agency(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s
        .register_and_login(
            "南通退回短信测试有限公司",
            &ekey_testkit::ident::credit_code(4003),
            "320000",
            "return@wording.example",
        )
        .await;
    let id = request_in_agency_review(&s, &ent).await;
    let agency = s.login("agency-320000").await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&agency),
            json!({"approve": false, "remark": "营业执照扫描件不清晰"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let sms = message_with(&s, "13912345678", "验核未通过").await;
    assert!(sms.starts_with("\n【江苏省商务厅】"), "{sms}");
    assert!(sms.contains("025-83666306"), "{sms}");
    s.stop().await;
}
on_both_databases!(a_return_sms_is_signed_by_the_agency);

// ---------------------------------------------------------------------------------------
// Item 18: English is English.

/// The text a reader sees: tags, scripts, styles, `<code>` and attribute values left out, entities
/// of the usual kinds decoded.
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        out.push(' ');
        let after = &rest[lt..];
        let lower = after.get(..8).unwrap_or("").to_ascii_lowercase();
        let close = if lower.starts_with("<script") {
            "</script>"
        } else if lower.starts_with("<style") {
            "</style>"
        } else if lower.starts_with("<code") {
            // Text to be typed as shown (a file's header), not prose.
            "</code>"
        } else {
            ">"
        };
        match after.find(close) {
            Some(end) => rest = &after[end + close.len()..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
}

/// Words like `import_licence` and instants like `2026-02-12T10:00:00+08:00` or
/// `2026-02-12 10:00` in a page's visible text.
fn internal_words(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for word in text.split(|c: char| {
        !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ':' || c == '+')
    }) {
        let w = word.trim_matches(|c: char| c == '-' || c == ':' || c == '+');
        let parts: Vec<&str> = w.split('_').collect();
        if parts.len() > 1
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        {
            found.push(w.to_string());
        }
        // YYYY-MM-DD followed by T or a time: a raw timestamp.
        let b = w.as_bytes();
        if b.len() >= 11
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
        {
            found.push(w.to_string());
        }
    }
    let b = text.as_bytes();
    for i in 0..b.len().saturating_sub(16) {
        let s = &b[i..i + 16];
        let d = |r: std::ops::Range<usize>| s[r].iter().all(u8::is_ascii_digit);
        if d(0..4)
            && s[4] == b'-'
            && d(5..7)
            && s[7] == b'-'
            && d(8..10)
            && s[10] == b' '
            && d(11..13)
            && s[13] == b':'
            && d(14..16)
        {
            found.push(String::from_utf8_lossy(s).into_owned());
        }
    }
    found
}

#[test]
fn the_checker_finds_what_it_should() {
    assert_eq!(
        internal_words(&visible_text(
            "<p title=\"a_b\">Licences: import_licence, due 2026-02-25T00:00:00+08:00 and 2026-02-25 00:00</p><script>var x_y = 1;</script>"
        )),
        [
            "import_licence",
            "2026-02-25T00:00:00+08:00",
            "2026-02-25 00:00"
        ]
    );
    assert!(
        internal_words(&visible_text(
            "<p>25 February 2026, 00:00 · EK-2026 · a-b</p>"
        ))
        .is_empty()
    );
}

async fn english_pages_show_no_internal_names_or_raw_timestamps(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login("demo@ekey.example").await;
    let id = request_in_agency_review(&s, &ent).await;
    let agency = s.login("agency-320000").await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&agency),
            json!({"approve": false, "remark": "Please rescan the licence", "concerns": ["business_licence"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut bad = Vec::new();
    for (login, pages) in [
        (
            "demo@ekey.example",
            vec![
                "/portal".to_string(),
                "/portal/apply".into(),
                "/portal/requests/new?kind=first".into(),
                "/portal/requests/new?kind=additional".into(),
                format!("/portal/requests/{id}"),
                format!("/portal/requests/{id}/edit"),
                "/account/password".into(),
            ],
        ),
        (
            "agency-320000",
            vec![
                "/console/queue".to_string(),
                "/console/dashboard".into(),
                format!("/console/requests/{id}"),
                "/console/shipments".into(),
            ],
        ),
        (
            "provider",
            vec![
                "/console/queue".to_string(),
                "/console/certificates".into(),
                "/console/shipments".into(),
            ],
        ),
        ("admin", vec!["/console/admin".to_string()]),
    ] {
        let p = PageClient::new(&s);
        p.login(login, PASSWORD).await;
        p.get("/lang/en?next=%2F").await;
        for path in pages {
            let a = p.get(&path).await;
            assert_eq!(a.status, StatusCode::OK, "{login} {path}: {}", a.body);
            assert!(a.body.contains("<html lang=\"en\">"), "{path}");
            for w in internal_words(&visible_text(&a.body)) {
                bad.push(format!("{login} {path}: {w}"));
            }
        }
    }
    for path in ["/", "/login", "/register", "/password/forgot", "/result"] {
        let p = PageClient::new(&s);
        p.get("/lang/en?next=%2F").await;
        let a = p.get(path).await;
        for w in internal_words(&visible_text(&a.body)) {
            bad.push(format!("public {path}: {w}"));
        }
    }
    assert!(
        bad.is_empty(),
        "internal words on English pages:\n{}",
        bad.join("\n")
    );

    // Dates as people read them, in both languages: Thu 12 February 2026, 10:00.
    let p = PageClient::new(&s);
    p.login("demo@ekey.example", PASSWORD).await;
    let zh = p.get(&format!("/portal/requests/{id}")).await;
    assert!(zh.body.contains("2026年2月12日 10:00"), "{}", zh.body);
    p.get("/lang/en?next=%2F").await;
    let en = p.get(&format!("/portal/requests/{id}")).await;
    assert!(en.body.contains("12 February 2026, 10:00"), "{}", en.body);
    s.stop().await;
}
on_both_databases!(english_pages_show_no_internal_names_or_raw_timestamps);

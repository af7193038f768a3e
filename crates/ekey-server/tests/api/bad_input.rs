//! The bad-input matrix: what a clerk, an integrator or an attacker sends wrong. Every case
//! gets a 4xx with its stable `ekey.*` code and a Chinese sentence (English on request), and
//! changes nothing: no row, no audit record, no mail, no request version, no stored file.
//! The one exception is a failed login, which is audited (SPEC §8) and nothing else.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const ENTERPRISE: &str = "demo@ekey.example";
/// The demo enterprise's credit code (see `ekey_server::demo`).
const DEMO_CREDIT_CODE: &str = "91320106MA1XYW0A36";

/// Sends `$call` and checks that it is refused with `$status` and `$code`, a Chinese
/// message, and that the database (and the file store) is exactly as before. Evaluates to
/// the message.
macro_rules! refused {
    ($s:expr, $call:expr, $status:expr, $code:expr) => {
        refused_in!(true, $s, $call, $status, $code)
    };
}

/// Like `refused!`, for a call sent with `Accept-Language: en`: the message is English.
macro_rules! refused_en {
    ($s:expr, $call:expr, $status:expr, $code:expr) => {
        refused_in!(false, $s, $call, $status, $code)
    };
}

macro_rules! refused_in {
    ($chinese:expr, $s:expr, $call:expr, $status:expr, $code:expr) => {{
        let before = $s.snapshot().await;
        let files = stored_files(&$s);
        let got = $call.await;
        let message = expect_error(&got, $status, $code);
        assert_eq!(
            has_cjk(&message),
            $chinese,
            "{}: message in the wrong language: {message}",
            $code
        );
        assert_eq!(
            before,
            $s.snapshot().await,
            "{} ({}) changed the database",
            $code,
            got.1
        );
        assert_eq!(files, stored_files(&$s), "{} left a file behind", $code);
        message
    }};
}

/// Every file under the instance's data directory (uploaded scans land there).
fn stored_files(s: &TestServer) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&s.data_dir, &mut out);
    out.sort();
    out
}

fn has_cjk(s: &str) -> bool {
    s.chars()
        .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c))
}

/// Checks status, code and a non-empty message; returns the message.
fn expect_error(got: &(StatusCode, Value), status: StatusCode, code: &str) -> String {
    let (actual, body) = got;
    assert!(
        actual.is_client_error(),
        "{code}: expected a 4xx, got {actual}: {body}"
    );
    assert_eq!(*actual, status, "{code}: {body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {body}"));
    assert!(!message.trim().is_empty(), "{code}: empty message");
    message.to_string()
}

async fn send(b: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let res = b.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, v)
}

fn bearer(b: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => b.bearer_auth(t),
        None => b,
    }
}

/// A GET with an `Accept-Language`.
async fn get_lang(
    s: &TestServer,
    path: &str,
    token: Option<&str>,
    lang: &str,
) -> (StatusCode, Value) {
    send(bearer(s.client.get(s.url(path)), token).header("accept-language", lang)).await
}

/// A POST whose body is sent as is, with the given content type (or none).
async fn post_raw(
    s: &TestServer,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut b = bearer(s.client.post(s.url(path)), token).body(body.to_string());
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    send(b).await
}

/// An upload with an `Accept-Language`.
async fn put_lang(
    s: &TestServer,
    path: &str,
    token: &str,
    content_type: &str,
    bytes: Vec<u8>,
    lang: &str,
) -> (StatusCode, Value) {
    send(
        s.client
            .put(s.url(path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .header("accept-language", lang)
            .body(bytes),
    )
    .await
}

/// A valid PNG of exactly `len` bytes (`png(n)` is within a few bytes of `n`).
fn png_exact(len: usize) -> Vec<u8> {
    let off = png(len).len() as isize - len as isize;
    let v = png((len as isize - off) as usize);
    assert_eq!(v.len(), len);
    v
}

/// A valid resident ID number from its first 17 digits (GB 11643-1999, mod 11).
fn id_number(prefix17: &str) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = prefix17
        .chars()
        .zip(W)
        .map(|(c, w)| c.to_digit(10).unwrap() * w)
        .sum();
    format!(
        "{prefix17}{}",
        "10X98765432".as_bytes()[(sum % 11) as usize] as char
    )
}

/// Another valid code whose last (check) character is wrong.
fn wrong_check(code: &str) -> String {
    let mut s = code.to_string();
    let last = s.pop().unwrap();
    s.push(if last == '0' { '1' } else { '0' });
    s
}

fn request_body(kind: &str, licences: &[&str], login_name: Value, reason: Option<&str>) -> Value {
    let mut v = json!({
        "kind": kind,
        "licence_types": licences,
        "login_name": login_name,
        "authorised_user": person("liming@example.com"),
    });
    if let Some(r) = reason {
        v["reason"] = json!(r);
    }
    v
}

fn allocate() -> Value {
    json!({"mode": "allocate"})
}

async fn create(s: &TestServer, token: &str, body: Value) -> String {
    let (status, v) = s.post("/api/v1/requests", Some(token), body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------
// 1. Registration

async fn registration_refusals(db: Db) {
    let s = TestServer::start(db).await;
    let reg = "/api/v1/registrations";
    let code = credit_code("91320100MA1N2P3Q0");
    let email = "clerk@jinling-trade.example";
    let good = || registration("金陵贸易有限公司", &code, "320000", email);
    let with = |path: &[&str], value: Value| {
        let mut v = good();
        let mut at = &mut v;
        for p in &path[..path.len() - 1] {
            at = at.get_mut(*p).unwrap();
        }
        at[path[path.len() - 1]] = value;
        v
    };
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;

    // Credit code: wrong check character, forbidden letters (also typed in lower case).
    let m = refused!(
        s,
        s.post(reg, None, with(&["credit_code"], json!(wrong_check(&code)))),
        unprocessable,
        "ekey.ident.credit_code"
    );
    assert!(m.contains("校验位"), "{m}");
    let m = refused_en!(
        s,
        s.post_lang(
            reg,
            None,
            with(&["credit_code"], json!(wrong_check(&code))),
            "en"
        ),
        unprocessable,
        "ekey.ident.credit_code"
    );
    assert!(m.contains("check character"), "{m}");
    for letter in ['I', 'O', 'Z', 'S', 'V', 'i', 'o'] {
        let mut bad: Vec<char> = code.chars().collect();
        bad[9] = letter; // "91320100M?…": the letter after the registration authority code
        let bad: String = bad.into_iter().collect();
        let m = refused!(
            s,
            s.post(reg, None, with(&["credit_code"], json!(bad))),
            unprocessable,
            "ekey.ident.credit_code"
        );
        assert!(
            m.contains(letter.to_ascii_uppercase()) && m.contains("第10位"),
            "{letter}: {m}"
        );
    }
    refused!(
        s,
        s.post(reg, None, with(&["credit_code"], json!(&code[..17]))),
        unprocessable,
        "ekey.ident.credit_code"
    );

    // The authorised user's identifiers.
    let m = refused!(
        s,
        s.post(
            reg,
            None,
            with(&["contact", "id_number"], json!("110105194912310021"))
        ),
        unprocessable,
        "ekey.ident.id_number"
    );
    assert!(m.contains("校验位"), "{m}");
    refused!(
        s,
        s.post(
            reg,
            None,
            with(&["contact", "id_number"], json!("110105194902300028"))
        ),
        unprocessable,
        "ekey.ident.id_number"
    );
    for mobile in [
        "12912345678",
        "1391234567",
        "139123456789",
        "+8613912345678x",
        "",
    ] {
        refused!(
            s,
            s.post(reg, None, with(&["contact", "mobile"], json!(mobile))),
            unprocessable,
            "ekey.ident.mobile"
        );
    }
    refused!(
        s,
        s.post(
            reg,
            None,
            with(&["contact", "email"], json!("clerk@localhost"))
        ),
        unprocessable,
        "ekey.ident.email"
    );

    // Province, required fields, password.
    let m = refused!(
        s,
        s.post(reg, None, with(&["province"], json!("990000"))),
        unprocessable,
        "ekey.province.unknown"
    );
    assert!(m.contains("990000"), "{m}");
    let m = refused!(
        s,
        s.post(reg, None, with(&["enterprise_name"], json!("   "))),
        unprocessable,
        "ekey.input.required"
    );
    assert!(m.contains("企业名称"), "{m}");
    let m = refused_en!(
        s,
        s.post_lang(reg, None, with(&["enterprise_name"], json!("")), "en"),
        unprocessable,
        "ekey.input.required"
    );
    assert!(m.contains("Enterprise name"), "{m}");
    refused!(
        s,
        s.post(reg, None, with(&["address"], json!(""))),
        unprocessable,
        "ekey.input.required"
    );
    refused!(
        s,
        s.post(
            reg,
            None,
            with(&["enterprise_name"], json!("公".repeat(101)))
        ),
        unprocessable,
        "ekey.input.too_long"
    );
    for weak in ["short1", "onlyletters", "1234567890", ""] {
        refused!(
            s,
            s.post(reg, None, with(&["password"], json!(weak))),
            unprocessable,
            "ekey.registration.weak_password"
        );
    }

    // Not JSON, wrong types, missing fields: 400; no JSON content type: 415.
    let good_text = good().to_string();
    for (what, body) in [
        ("cut short", &good_text[..good_text.len() - 5]),
        ("not JSON", "enterprise_name=金陵贸易"),
        ("empty", ""),
        ("an array", "[]"),
    ] {
        let m = refused!(
            s,
            post_raw(&s, reg, None, Some("application/json"), body),
            StatusCode::BAD_REQUEST,
            "ekey.input.malformed"
        );
        assert!(!m.is_empty(), "{what}");
    }
    for body in [
        with(&["province"], json!(320000)),
        with(&["contact"], json!("李明 13912345678")),
        with(&["password"], Value::Null),
        {
            let mut v = good();
            v.as_object_mut().unwrap().remove("credit_code");
            v
        },
    ] {
        refused!(
            s,
            s.post(reg, None, body),
            StatusCode::BAD_REQUEST,
            "ekey.input.malformed"
        );
    }
    refused!(
        s,
        post_raw(&s, reg, None, None, &good_text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "ekey.input.content_type"
    );
    refused!(
        s,
        post_raw(&s, reg, None, Some("text/plain"), &good_text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "ekey.input.content_type"
    );

    // The body used above is fine: it registers (and queues one mail).
    let (status, v) = s.post(reg, None, good()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");

    // Duplicates: the credit code (this one, the demo enterprise's), the email (in any
    // case) get the same answer as a fresh registration (201 and an id), so an anonymous
    // caller learns nothing; the owners are told by mail (doors::registrations_claim_
    // nothing_and_tell_nothing).
    let other_code = credit_code("91320100MA1N2P308");
    for (code_, email_) in [
        (code.as_str(), "other@jinling-trade.example"),
        (DEMO_CREDIT_CODE, "other2@jinling-trade.example"),
        (other_code.as_str(), email),
        (other_code.as_str(), "Clerk@Jinling-Trade.example"),
        (other_code.as_str(), ENTERPRISE),
    ] {
        let (status, v) = s
            .post(
                reg,
                None,
                registration("金陵贸易二部", code_, "320000", email_),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{code_} {email_}: {v}");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["account_id"], "{v}");
    }
}
on_both_databases!(registration_refusals);

// ---------------------------------------------------------------------------------------
// 2. Requests

async fn request_refusals(db: Db) {
    let s = TestServer::start(db).await;
    let a = s.login(ENTERPRISE).await;
    let b_code = credit_code("91320500MA1B2C3D8");
    let b = s
        .register_and_login(
            "苏州样例贸易有限公司",
            &b_code,
            "320000",
            "clerk@suzhou-sample.example",
        )
        .await;
    let agency = s.login("agency-320000").await;
    let path = "/api/v1/requests";
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let ordinary = &["import_licence", "export_licence"];

    // Form errors an enterprise with no key yet can make.
    let m = refused!(
        s,
        s.post(
            path,
            Some(&a),
            request_body("gift", ordinary, allocate(), None)
        ),
        unprocessable,
        "ekey.request.unknown_kind"
    );
    assert!(m.contains("gift"), "{m}");
    refused!(
        s,
        s.post(path, Some(&a), request_body("first", &[], allocate(), None)),
        unprocessable,
        "ekey.request.no_licence_type"
    );
    let mut no_field = request_body("first", &[], allocate(), None);
    no_field.as_object_mut().unwrap().remove("licence_types");
    refused!(
        s,
        s.post(path, Some(&a), no_field),
        unprocessable,
        "ekey.request.no_licence_type"
    );
    let m = refused!(
        s,
        s.post(
            path,
            Some(&a),
            request_body(
                "first",
                &["import_licence", "fishing_licence"],
                allocate(),
                None
            )
        ),
        unprocessable,
        "ekey.request.unknown_licence_type"
    );
    assert!(m.contains("fishing_licence"), "{m}");
    for reason in [None, Some("   ")] {
        let m = refused!(
            s,
            s.post(
                path,
                Some(&a),
                request_body("additional", ordinary, allocate(), reason)
            ),
            unprocessable,
            "ekey.request.reason_required"
        );
        assert!(m.contains("增办"), "{m}");
    }
    let m = refused!(
        s,
        s.post(
            path,
            Some(&a),
            request_body(
                "replacement",
                ordinary,
                json!({"mode": "original", "value": "ek320000001"}),
                None
            )
        ),
        unprocessable,
        "ekey.request.reason_required"
    );
    assert!(m.contains("补办"), "{m}");
    refused!(
        s,
        s.post(
            path,
            Some(&a),
            request_body(
                "first",
                ordinary,
                json!({"mode": "existing", "value": "jd_import_01"}),
                None
            )
        ),
        unprocessable,
        "ekey.login_name.existing_needs_mechanical"
    );
    refused!(
        s,
        s.post(
            path,
            Some(&a),
            request_body("first", ordinary, json!({"mode": "guess"}), None)
        ),
        unprocessable,
        "ekey.login_name.mode"
    );
    refused!(
        s,
        s.post(
            path,
            Some(&a),
            request_body(
                "first",
                &["auto_import_mechanical"],
                json!({"mode": "existing"}),
                None
            )
        ),
        unprocessable,
        "ekey.login_name.required"
    );
    refused!(
        s,
        s.post(
            path,
            Some(&a),
            request_body(
                "first",
                &["auto_import_mechanical"],
                json!({"mode": "existing", "value": "jd import/01"}),
                None
            )
        ),
        unprocessable,
        "ekey.login_name.format"
    );
    // The authorised user on the confirmation letter is someone else (name, or ID number).
    let other_id = id_number("32010219800101001");
    for letter_user in [
        json!({"name": "王小明", "id_number": "11010519491231002X", "mobile": "13912345678", "email": "liming@example.com"}),
        json!({"name": "李明", "id_number": other_id, "mobile": "13912345678", "email": "liming@example.com"}),
    ] {
        let mut body = request_body("first", ordinary, allocate(), None);
        body["confirmation_letter_user"] = letter_user;
        let m = refused!(
            s,
            s.post(path, Some(&a), body),
            unprocessable,
            "ekey.request.authorised_user_mismatch"
        );
        assert!(m.contains("同一人"), "{m}");
    }
    // The same person with a different mobile is fine on the letter (checked below by the
    // successful first issue carrying it).
    let mut person_bad = request_body("first", ordinary, allocate(), None);
    person_bad["authorised_user"]["id_number"] = json!("110105194912310021");
    refused!(
        s,
        s.post(path, Some(&a), person_bad),
        unprocessable,
        "ekey.ident.id_number"
    );
    let mut person_bad = request_body("first", ordinary, allocate(), None);
    person_bad["authorised_user"]["mobile"] = json!("10012345678");
    refused!(
        s,
        s.post(path, Some(&a), person_bad),
        unprocessable,
        "ekey.ident.mobile"
    );
    let mut person_bad = request_body("first", ordinary, allocate(), None);
    person_bad["authorised_user"]["name"] = json!("  ");
    refused!(
        s,
        s.post(path, Some(&a), person_bad),
        unprocessable,
        "ekey.input.required"
    );
    let mut no_user = request_body("first", ordinary, allocate(), None);
    no_user.as_object_mut().unwrap().remove("authorised_user");
    refused!(
        s,
        s.post(path, Some(&a), no_user),
        StatusCode::BAD_REQUEST,
        "ekey.input.malformed"
    );
    refused!(
        s,
        s.post(
            path,
            Some(&agency),
            request_body("first", ordinary, allocate(), None)
        ),
        StatusCode::FORBIDDEN,
        "ekey.auth.wrong_role"
    );

    // A first issue in progress; then a second first issue is refused.
    let mut first = request_body("first", ordinary, allocate(), None);
    first["confirmation_letter_user"] = json!({"name": "李明", "id_number": "11010519491231002X", "mobile": "13800000000", "email": "liming@example.com"});
    create(&s, &a, first).await;
    let m = refused!(
        s,
        s.post(
            path,
            Some(&a),
            request_body("first", ordinary, allocate(), None)
        ),
        unprocessable,
        "ekey.request.not_first"
    );
    assert!(m.contains("增办"), "{m}");

    // Two 增办 (one claiming an electromechanical importer's existing login name): three
    // keys in progress. A fourth is refused, saying three is the limit.
    create(
        &s,
        &a,
        request_body(
            "additional",
            &["auto_import_mechanical"],
            json!({"mode": "existing", "value": "jd_import_01"}),
            Some("机电产品进口业务需要单独的钥匙"),
        ),
    )
    .await;
    create(
        &s,
        &a,
        request_body("additional", ordinary, allocate(), Some("分公司报关员需要")),
    )
    .await;
    let fourth = request_body("additional", ordinary, allocate(), Some("再要一个"));
    let m = refused!(
        s,
        s.post(path, Some(&a), fourth.clone()),
        unprocessable,
        "ekey.request.too_many_keys"
    );
    assert!(m.contains('3'), "{m}");
    let m = refused_en!(
        s,
        s.post_lang(path, Some(&a), fourth, "en"),
        unprocessable,
        "ekey.request.too_many_keys"
    );
    assert!(m.contains("at most 3"), "{m}");

    // Login names: A's existing name claims nothing before the agency approves (the first
    // approval binds it: doors::login_names_cannot_be_squatted and the store's contract
    // tests), and nobody may take it as "reserved" or as the original of a replacement.
    let m = refused!(
        s,
        s.post(
            path,
            Some(&b),
            request_body(
                "first",
                ordinary,
                json!({"mode": "allocate", "value": "jd_import_01"}),
                None
            )
        ),
        unprocessable,
        "ekey.login_name.not_owned"
    );
    assert!(m.contains("登录名"), "{m}");
    for name in ["jd_import_01", "ek329999999"] {
        let mut body = request_body(
            "replacement",
            ordinary,
            json!({"mode": "original", "value": name}),
            Some("钥匙遗失"),
        );
        body["key_lost"] = json!(true);
        refused!(
            s,
            s.post(path, Some(&b), body),
            unprocessable,
            "ekey.login_name.not_owned"
        );
    }
}
on_both_databases!(request_refusals);

// ---------------------------------------------------------------------------------------
// 3. Materials and 4. decisions, on one first-issue request

async fn material_and_decision_refusals(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login(ENTERPRISE).await;
    let agency = s.login("agency-320000").await;
    let beijing = s.login("agency-110000").await;
    let provider = s.login("provider").await;
    let other = s
        .register_and_login(
            "苏州样例贸易有限公司",
            &credit_code("91320500MA1B2C3D8"),
            "320000",
            "clerk@suzhou-sample.example",
        )
        .await;
    let id = create(&s, &ent, first_request("liming@example.com")).await;
    let item = |name: &str| format!("/api/v1/requests/{id}/materials/{name}");
    let decide = format!("/api/v1/requests/{id}/decision");
    let confirm = format!("/api/v1/requests/{id}/confirm-upload");

    // While a draft: no uploads yet, and nothing to decide.
    refused!(
        s,
        s.put_bytes(
            &item("application_form"),
            Some(&ent),
            "image/png",
            png(2000)
        ),
        StatusCode::CONFLICT,
        "ekey.material.locked"
    );
    refused!(
        s,
        s.post(
            &decide,
            Some(&agency),
            json!({"approve": true, "remark": "ok"})
        ),
        StatusCode::CONFLICT,
        "ekey.request.wrong_state"
    );
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/submit"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // Uploads in awaiting_materials.
    let m = refused!(
        s,
        s.put_bytes(&item("passport"), Some(&ent), "image/png", png(2000)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.material.unknown_item"
    );
    assert!(m.contains("passport"), "{m}");
    let m = refused!(
        s,
        s.put_bytes(&item("unlock_form"), Some(&ent), "image/png", png(2000)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.material.not_in_checklist"
    );
    assert!(m.contains("首次申领") && m.contains("解锁申请表"), "{m}");
    refused!(
        s,
        s.put_bytes(&item("id_card"), Some(&ent), "image/png", Vec::new()),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.material.empty"
    );
    refused!(
        s,
        s.put_bytes(
            &item("id_card"),
            Some(&ent),
            "image/jpeg",
            "这不是扫描件，只是一段文字。\n".repeat(20).into_bytes()
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "ekey.material.unsupported_type"
    );
    refused!(
        s,
        s.put_bytes(
            &item("id_card"),
            Some(&ent),
            "image/png",
            png(2000)[..1000].to_vec()
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "ekey.material.unsupported_type"
    );
    let m = refused!(
        s,
        s.put_bytes(
            &item("business_licence"),
            Some(&ent),
            "image/png",
            png_exact(1024 * 1024 + 1)
        ),
        StatusCode::PAYLOAD_TOO_LARGE,
        "ekey.material.too_large"
    );
    assert!(m.contains("上限"), "{m}");
    let m = refused_en!(
        s,
        put_lang(
            &s,
            &item("business_licence"),
            &ent,
            "image/png",
            png_exact(1024 * 1024 + 1),
            "en"
        ),
        StatusCode::PAYLOAD_TOO_LARGE,
        "ekey.material.too_large"
    );
    assert!(m.contains("too large"), "{m}");
    refused!(
        s,
        s.put_bytes(
            &item("business_licence"),
            Some(&ent),
            "image/png",
            png(9 * 1024 * 1024)
        ),
        StatusCode::PAYLOAD_TOO_LARGE,
        "ekey.material.too_large"
    );
    // Nobody else uploads to this request: another enterprise and another province's agency
    // are told it does not exist; the own agency may not upload for a first issue.
    for token in [&other, &beijing] {
        refused!(
            s,
            s.put_bytes(&item("id_card"), Some(token), "image/png", png(2000)),
            StatusCode::NOT_FOUND,
            "ekey.request.not_found"
        );
    }
    refused!(
        s,
        s.put_bytes(&item("id_card"), Some(&agency), "image/png", png(2000)),
        StatusCode::FORBIDDEN,
        "ekey.auth.wrong_role"
    );
    refused!(
        s,
        s.put_bytes(
            "/api/v1/requests/not-a-uuid/materials/id_card",
            Some(&ent),
            "image/png",
            png(2000)
        ),
        StatusCode::NOT_FOUND,
        "ekey.request.not_found"
    );

    // What is accepted: exactly 1 MB; a PNG labelled JPEG is stored as the PNG it is.
    let (status, v) = s
        .put_bytes(
            &item("application_form"),
            Some(&ent),
            "image/png",
            png_exact(1024 * 1024),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["size"], 1024 * 1024);
    let (status, v) = s
        .put_bytes(
            &item("business_licence"),
            Some(&ent),
            "image/jpeg",
            png(3000),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["content_type"], "image/png");
    upload_all(&s, &ent, &id, &SIX[2..5]).await;

    // Confirm with the user agreement missing: refused, naming it.
    let m = refused!(
        s,
        s.post(&confirm, Some(&ent), json!({})),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.material.missing"
    );
    assert!(m.contains("数字证书用户协议书"), "{m}");
    assert!(!m.contains("营业执照"), "only the missing item: {m}");
    let m = refused_en!(
        s,
        s.post_lang(&confirm, Some(&ent), json!({}), "en"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.material.missing"
    );
    assert!(m.contains("user agreement"), "{m}");
    upload_all(&s, &ent, &id, &SIX[5..]).await;
    let (status, v) = s.post(&confirm, Some(&ent), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "agency_review");

    // In review the materials are locked.
    let m = refused!(
        s,
        s.put_bytes(&item("id_card"), Some(&ent), "image/png", png(2000)),
        StatusCode::CONFLICT,
        "ekey.material.locked"
    );
    assert!(m.contains("发证机构验核中"), "{m}");

    // Decisions.
    refused!(
        s,
        s.post(&decide, Some(&ent), json!({"approve": true})),
        StatusCode::FORBIDDEN,
        "ekey.auth.wrong_role"
    );
    let admin = s.login("admin").await;
    refused!(
        s,
        s.post(&decide, Some(&admin), json!({"approve": true})),
        StatusCode::FORBIDDEN,
        "ekey.auth.wrong_role"
    );
    refused!(
        s,
        s.post(&decide, Some(&other), json!({"approve": true})),
        StatusCode::FORBIDDEN,
        "ekey.auth.wrong_role"
    );
    // Beijing learns nothing: the same answer as for an id that does not exist.
    let hidden = refused!(
        s,
        s.post(
            &decide,
            Some(&beijing),
            json!({"approve": true, "remark": "ok"})
        ),
        StatusCode::NOT_FOUND,
        "ekey.request.not_found"
    );
    let (status, v) = s
        .get(&format!("/api/v1/requests/{id}"), Some(&beijing))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "ekey.request.not_found");
    let missing_id = uuid_like_missing();
    for bad_id in [missing_id.as_str(), "not-a-uuid", "1", "%E4%B8%AD"] {
        let m = refused!(
            s,
            s.post(
                &format!("/api/v1/requests/{bad_id}/decision"),
                Some(&agency),
                json!({"approve": true, "remark": "ok"})
            ),
            StatusCode::NOT_FOUND,
            "ekey.request.not_found"
        );
        assert_eq!(m, hidden, "{bad_id}");
    }
    let m = refused!(
        s,
        s.post(&decide, Some(&provider), json!({"approve": true})),
        StatusCode::CONFLICT,
        "ekey.request.wrong_state"
    );
    assert!(m.contains("发证机构验核中"), "{m}");
    let m = refused_en!(
        s,
        s.post_lang(
            &decide,
            Some(&provider),
            json!({"approve": false, "remark": "不清楚"}),
            "en"
        ),
        StatusCode::CONFLICT,
        "ekey.request.wrong_state"
    );
    assert!(m.contains("agency review"), "{m}");
    for body in [
        json!({"approve": false}),
        json!({"approve": false, "remark": null}),
        json!({"approve": false, "remark": "  \n "}),
    ] {
        let m = refused!(
            s,
            s.post(&decide, Some(&agency), body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.request.remark_required"
        );
        assert!(m.contains("备注"), "{m}");
    }
    refused!(
        s,
        s.post(
            &decide,
            Some(&agency),
            json!({"approve": false, "remark": "退".repeat(501)})
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.input.too_long"
    );
    let m = refused!(
        s,
        s.post(
            &decide,
            Some(&agency),
            json!({"approve": false, "refuse": true, "remark": "材料不真实"})
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.request.not_applicable"
    );
    assert!(m.contains("首次申领") && m.contains("不同意增办"), "{m}");
    for body in [
        json!({"approve": "yes"}),
        json!({"remark": "ok"}),
        json!([true]),
    ] {
        refused!(
            s,
            s.post(&decide, Some(&agency), body),
            StatusCode::BAD_REQUEST,
            "ekey.input.malformed"
        );
    }
    refused!(
        s,
        post_raw(&s, &decide, Some(&agency), None, r#"{"approve": true}"#),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "ekey.input.content_type"
    );
}
on_both_databases!(material_and_decision_refusals);

/// A well-formed request id that no request has.
fn uuid_like_missing() -> String {
    "01890a5d-ac96-774b-bcce-b302099a8057".to_string()
}

// ---------------------------------------------------------------------------------------
// 5. Authentication and 6. the public result query

/// Everything but the audit log is as before, and the log grew by exactly `n` records.
fn assert_only_audit_grew(before: &[(String, String)], after: &[(String, String)], n: i64) {
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(after) {
        assert_eq!(b.0, a.0);
        match b.0.as_str() {
            "audit_log" => assert_eq!(
                a.1.parse::<i64>().unwrap(),
                b.1.parse::<i64>().unwrap() + n,
                "audit records"
            ),
            "audit_head" => assert_eq!(
                a.1.split(':').next().unwrap().parse::<i64>().unwrap(),
                b.1.split(':').next().unwrap().parse::<i64>().unwrap() + n,
                "audit head"
            ),
            _ => assert_eq!(b, a),
        }
    }
}

/// Action and object of the newest audit record.
async fn last_audit(s: &TestServer) -> (String, String) {
    use sqlx::Row;
    let row = sqlx::query("SELECT action, object_id FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_one(s.raw().pool())
        .await
        .unwrap();
    (
        row.try_get("action").unwrap(),
        row.try_get("object_id").unwrap(),
    )
}

async fn auth_and_public_refusals(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login(ENTERPRISE).await;
    let other_code = credit_code("91320500MA1B2C3D8");
    let other = s
        .register_and_login(
            "苏州样例贸易有限公司",
            &other_code,
            "320000",
            "clerk@suzhou-sample.example",
        )
        .await;
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            first_request("liming@example.com"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let number = v["number"].as_str().unwrap().to_string();
    let request = format!("/api/v1/requests/{id}");

    // No token, a garbage token, another scheme, an empty bearer.
    let m = refused!(
        s,
        s.get("/api/v1/requests", None),
        StatusCode::UNAUTHORIZED,
        "ekey.auth.required"
    );
    assert!(m.contains("登录"), "{m}");
    refused!(
        s,
        s.get(&request, Some("not-a-token")),
        StatusCode::UNAUTHORIZED,
        "ekey.auth.required"
    );
    let m = refused_en!(
        s,
        get_lang(&s, &request, Some(&format!("{ent}x")), "en"),
        StatusCode::UNAUTHORIZED,
        "ekey.auth.required"
    );
    assert!(m.contains("log in"), "{m}");
    for header in [
        format!("Basic {ent}"),
        format!("bearer{ent}"),
        "Bearer ".to_string(),
    ] {
        refused!(
            s,
            send(
                s.client
                    .get(s.url(&request))
                    .header("authorization", header)
            ),
            StatusCode::UNAUTHORIZED,
            "ekey.auth.required"
        );
    }
    refused!(
        s,
        s.post(
            "/api/v1/requests",
            None,
            first_request("liming@example.com")
        ),
        StatusCode::UNAUTHORIZED,
        "ekey.auth.required"
    );

    // Another enterprise reads, edits, submits the request: it does not exist for it.
    refused!(
        s,
        s.get(&request, Some(&other)),
        StatusCode::NOT_FOUND,
        "ekey.request.not_found"
    );
    refused!(
        s,
        s.patch(&request, Some(&other), json!({"reason": "改一下"})),
        StatusCode::NOT_FOUND,
        "ekey.request.not_found"
    );
    refused!(
        s,
        s.post(&format!("{request}/submit"), Some(&other), json!({})),
        StatusCode::NOT_FOUND,
        "ekey.request.not_found"
    );

    // Log out: the token is dead at once.
    let token = s.login(ENTERPRISE).await;
    let (status, _) = send(
        s.client
            .delete(s.url("/api/v1/sessions/current"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    refused!(
        s,
        s.get("/api/v1/me", Some(&token)),
        StatusCode::UNAUTHORIZED,
        "ekey.auth.required"
    );
    refused!(
        s,
        s.get(&request, Some(&token)),
        StatusCode::UNAUTHORIZED,
        "ekey.auth.required"
    );
    refused!(
        s,
        send(
            s.client
                .delete(s.url("/api/v1/sessions/current"))
                .bearer_auth(&token)
        ),
        StatusCode::UNAUTHORIZED,
        "ekey.auth.required"
    );
    // The other session of the same account still works.
    let (status, _) = s.get(&request, Some(&ent)).await;
    assert_eq!(status, StatusCode::OK);

    // Wrong password, unknown login: the same answer; no session. Every failed login is
    // audited (SPEC §8: every login), so the audit log is the one thing that grows.
    let sessions = "/api/v1/sessions";
    let mut answers = Vec::new();
    for login in ["provider", "nobody-here", "nobody@ekey.example"] {
        let before = s.snapshot().await;
        let got = s
            .post(
                sessions,
                None,
                json!({"login": login, "password": "ekey-demo-2025"}),
            )
            .await;
        let m = expect_error(
            &got,
            StatusCode::UNAUTHORIZED,
            "ekey.auth.invalid_credentials",
        );
        assert!(has_cjk(&m), "{m}");
        assert_only_audit_grew(&before, &s.snapshot().await, 1);
        assert_eq!(
            last_audit(&s).await,
            ("session.failed".to_string(), login.to_string())
        );
        answers.push(got.1);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    for body in [
        json!({"login": "provider"}),
        json!({"login": "provider", "password": 2026}),
    ] {
        refused!(
            s,
            s.post(sessions, None, body),
            StatusCode::BAD_REQUEST,
            "ekey.input.malformed"
        );
    }

    // Four more wrong passwords for `provider` (five in the window), then the sixth attempt
    // is refused without checking the password — and so is the right password.
    for _ in 0..4 {
        let before = s.snapshot().await;
        let got = s
            .post(
                sessions,
                None,
                json!({"login": "Provider ", "password": "wrong-2026"}),
            )
            .await;
        expect_error(
            &got,
            StatusCode::UNAUTHORIZED,
            "ekey.auth.invalid_credentials",
        );
        assert_only_audit_grew(&before, &s.snapshot().await, 1);
    }
    let m = refused!(
        s,
        s.post(
            sessions,
            None,
            json!({"login": "provider", "password": "wrong-2026"})
        ),
        StatusCode::TOO_MANY_REQUESTS,
        "ekey.auth.rate_limited"
    );
    assert!(m.contains("请 1 分钟后再试"), "{m}");
    refused!(
        s,
        s.post(
            sessions,
            None,
            json!({"login": "provider", "password": PASSWORD})
        ),
        StatusCode::TOO_MANY_REQUESTS,
        "ekey.auth.rate_limited"
    );
    let m = refused_en!(
        s,
        s.post_lang(
            sessions,
            None,
            json!({"login": "PROVIDER", "password": PASSWORD}),
            "en"
        ),
        StatusCode::TOO_MANY_REQUESTS,
        "ekey.auth.rate_limited"
    );
    assert!(m.contains("1 minute"), "{m}");
    // The lock is per login: the Jiangsu clerk still logs in.
    s.login("agency-320000").await;
    // The wait is over after a minute; one more wrong password then doubles it (the
    // failures are counted in the database, so every instance refuses alike).
    s.clock.advance(chrono::Duration::seconds(61));
    let got = s
        .post(
            sessions,
            None,
            json!({"login": "provider", "password": "wrong-2026"}),
        )
        .await;
    expect_error(
        &got,
        StatusCode::UNAUTHORIZED,
        "ekey.auth.invalid_credentials",
    );
    let m = refused!(
        s,
        s.post(
            sessions,
            None,
            json!({"login": "provider", "password": PASSWORD})
        ),
        StatusCode::TOO_MANY_REQUESTS,
        "ekey.auth.rate_limited"
    );
    assert!(m.contains("请 2 分钟后再试"), "{m}");
    s.clock.advance(chrono::Duration::seconds(121));
    // The right password then works and clears the count: one wrong password later the
    // account is not locked.
    s.login("provider").await;
    let got = s
        .post(
            sessions,
            None,
            json!({"login": "provider", "password": "wrong-2026"}),
        )
        .await;
    expect_error(
        &got,
        StatusCode::UNAUTHORIZED,
        "ekey.auth.invalid_credentials",
    );
    s.login("provider").await;

    // Public result query: found with the right pair; otherwise one and the same 404.
    let result = |n: &str, c: &str| {
        format!(
            "/api/v1/public/result?number={}&credit_code={}",
            urlencode(n),
            urlencode(c)
        )
    };
    let (status, v) = s.get(&result(&number, DEMO_CREDIT_CODE), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let wrong = wrong_check(DEMO_CREDIT_CODE);
    let nines = "9".repeat(41);
    let mut answers = Vec::new();
    for (n, c) in [
        (number.as_str(), other_code.as_str()),
        (number.as_str(), wrong.as_str()),
        (number.as_str(), &DEMO_CREDIT_CODE[..17]),
        (number.as_str(), "not a code"),
        (number.as_str(), ""),
        ("EK32202602129999", DEMO_CREDIT_CODE),
        ("", DEMO_CREDIT_CODE),
        (nines.as_str(), DEMO_CREDIT_CODE),
    ] {
        let m = refused!(
            s,
            s.get(&result(n, c), None),
            StatusCode::NOT_FOUND,
            "ekey.public.not_found"
        );
        answers.push(m);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let m = refused_en!(
        s,
        get_lang(&s, &result(&number, &other_code), None, "en"),
        StatusCode::NOT_FOUND,
        "ekey.public.not_found"
    );
    assert!(m.contains("No request matches"), "{m}");
}
on_both_databases!(auth_and_public_refusals);

/// Twenty failed logins from one address, whatever the login names, and that address must
/// wait too — even with a right password; the wait ends after a minute. The
/// forgotten-password form still answers.
async fn one_address_guessing_many_logins_is_slowed(db: Db) {
    let s = TestServer::start(db).await;
    for n in 0..20 {
        let got = s
            .post(
                "/api/v1/sessions",
                None,
                json!({"login": format!("guess-{n}@example.com"), "password": "Guess-2026"}),
            )
            .await;
        expect_error(
            &got,
            StatusCode::UNAUTHORIZED,
            "ekey.auth.invalid_credentials",
        );
    }
    let m = refused!(
        s,
        s.post(
            "/api/v1/sessions",
            None,
            json!({"login": "admin", "password": PASSWORD})
        ),
        StatusCode::TOO_MANY_REQUESTS,
        "ekey.auth.rate_limited"
    );
    assert!(m.contains("1 分钟"), "{m}");
    // The password-reset form has a quota of its own: failed logins never block it, so the
    // owner of an account someone is guessing at can always ask for a new password.
    let (status, v) = s
        .post(
            "/api/v1/password-resets",
            None,
            json!({"login": "demo@ekey.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    s.wait_message("demo@ekey.example", "重置").await;
    s.clock.advance(chrono::Duration::seconds(61));
    s.login("admin").await;
    s.stop().await;
}

on_both_databases!(one_address_guessing_many_logins_is_slowed);

/// Behind a trusted reverse proxy the client is the address the proxy forwards: one
/// guessing client waits, another behind the same proxy does not. From anyone else the
/// header is ignored, so a client cannot dodge its count by sending a new address each time.
async fn the_address_behind_a_trusted_proxy_is_counted(db: Db) {
    let s = TestServer::start_with(db, default_start(), |c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let login_from = |client: &str, login: &str, password: &str| {
        s.client
            .post(s.url("/api/v1/sessions"))
            .header("x-forwarded-for", format!("198.51.100.9, {client}"))
            .json(&json!({"login": login, "password": password}))
            .send()
    };
    for n in 0..20 {
        let res = login_from(
            "203.0.113.5",
            &format!("guess-{n}@example.com"),
            "Guess-2026",
        )
        .await
        .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = login_from("203.0.113.5", "admin", PASSWORD).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let res = login_from("203.0.113.6", "admin", PASSWORD).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "another client behind the proxy"
    );
    s.stop().await;

    // Without the setting, the same header changes nothing: the TCP peer is counted.
    let s = TestServer::start(db).await;
    for n in 0..20 {
        let res = s
            .client
            .post(s.url("/api/v1/sessions"))
            .header("x-forwarded-for", format!("192.0.2.{n}"))
            .json(&json!({"login": format!("guess-{n}@example.com"), "password": "Guess-2026"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = s
        .client
        .post(s.url("/api/v1/sessions"))
        .header("x-forwarded-for", "192.0.2.200")
        .json(&json!({"login": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    s.stop().await;
}

on_both_databases!(the_address_behind_a_trusted_proxy_is_counted);

// ---------------------------------------------------------------------------------------
// What the web framework refuses before a handler runs: the contract says errors are JSON
// `{code, message}` in the caller's language, so these must be too.

/// A query string that does not deserialise (missing or mistyped parameter).
async fn query_string_refusals(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login(ENTERPRISE).await;
    refused!(
        s,
        s.get("/api/v1/public/result?number=EK1", None),
        StatusCode::BAD_REQUEST,
        "ekey.input.malformed"
    );
    refused!(
        s,
        s.get("/api/v1/requests?limit=many", Some(&ent)),
        StatusCode::BAD_REQUEST,
        "ekey.input.malformed"
    );
}
on_both_databases!(query_string_refusals);

/// A method the path does not have.
async fn method_not_allowed(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login(ENTERPRISE).await;
    let before = s.snapshot().await;
    let (status, v) = send(s.client.delete(s.url("/api/v1/requests")).bearer_auth(&ent)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    let code = v["code"].as_str().unwrap_or_default();
    assert!(code.starts_with("ekey."), "no JSON error code: {v}");
    assert!(has_cjk(v["message"].as_str().unwrap_or_default()), "{v}");
    assert_eq!(before, s.snapshot().await);
}
on_both_databases!(method_not_allowed);

/// A path parameter the framework cannot parse (a letter where a number belongs, `%FF`
/// where UTF-8 belongs) and a raw body over the limit: JSON errors, not the framework's
/// plain text (found by schemathesis).
async fn path_and_raw_body_refusals(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login(ENTERPRISE).await;
    let admin = s.login("admin").await;
    refused!(
        s,
        post_raw(&s, "/api/v1/admin/outbox/abc/retry", Some(&admin), None, ""),
        StatusCode::BAD_REQUEST,
        "ekey.input.malformed"
    );
    refused!(
        s,
        s.get("/api/v1/requests/%FF", Some(&ent)),
        StatusCode::BAD_REQUEST,
        "ekey.input.malformed"
    );
    let message = refused_en!(
        s,
        get_lang(&s, "/api/v1/shipments/%FF%FE", Some(&admin), "en"),
        StatusCode::BAD_REQUEST,
        "ekey.input.malformed"
    );
    assert!(message.contains("UTF-8"), "{message}");
    refused!(
        s,
        send(
            s.client
                .put(s.url("/api/v1/admin/holidays"))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body(vec![b' '; 300 * 1024])
        ),
        StatusCode::PAYLOAD_TOO_LARGE,
        "ekey.input.too_large"
    );
}
on_both_databases!(path_and_raw_body_refusals);

/// A NUL character anywhere: PostgreSQL cannot store one, and the search and the login
/// answered 500 there.
async fn nul_characters_are_refused(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login(ENTERPRISE).await;
    refused!(
        s,
        s.get("/api/v1/requests?q=%00", Some(&ent)),
        StatusCode::BAD_REQUEST,
        "ekey.input.nul"
    );
    refused!(
        s,
        s.get("/api/v1/keys/a%00b/certificate", Some(&ent)),
        StatusCode::BAD_REQUEST,
        "ekey.input.nul"
    );
    refused!(
        s,
        s.post(
            "/api/v1/sessions",
            None,
            json!({"login": "demo\u{0}@ekey.example", "password": "x"})
        ),
        StatusCode::BAD_REQUEST,
        "ekey.input.nul"
    );
    refused!(
        s,
        post_raw(
            &s,
            "/api/v1/requests",
            Some(&ent),
            Some("application/json; charset=utf-8"),
            r#"{"kind": "first", "reason": "a\u0000"}"#
        ),
        StatusCode::BAD_REQUEST,
        "ekey.input.nul"
    );
    // An escaped backslash before "u0000" is text, not a NUL.
    let (status, v) = s
        .post(
            "/api/v1/sessions",
            None,
            json!({"login": "a\\u0000b", "password": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
}
on_both_databases!(nul_characters_are_refused);

/// A JSON body over the 256 KB limit is too large (413), not "malformed" with the
/// framework's English text inside the Chinese message.
async fn oversize_json_body(db: Db) {
    let s = TestServer::start(db).await;
    let body = registration(
        &"公".repeat(100_000),
        &credit_code("91320100MA1N2P3Q0"),
        "320000",
        "big@jinling-trade.example",
    );
    let before = s.snapshot().await;
    let (status, v) = s.post("/api/v1/registrations", None, body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let code = v["code"].as_str().unwrap_or_default();
    assert!(code.starts_with("ekey.input."), "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(has_cjk(message) && !message.contains("Failed"), "{v}");
    assert_eq!(before, s.snapshot().await);
}
on_both_databases!(oversize_json_body);

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

//! The authorisation matrix: every route of an instance (the OpenAPI document plus the
//! recorded page and CA routes, [`ekey_server::api::route_list`]) × seven callers —
//! anonymous, enterprise A, enterprise B, the agency of A's province, an agency of another
//! province, the provider, the administrator — on objects that belong to enterprise A.
//!
//! Every route needs a row in [`EXPECTED`]; a route added without one fails the test. For
//! each cell the caller is either allowed (any answer but a refusal or a 5xx: the request
//! may still be refused for its state or its content) or refused (401, 403, 404 or the
//! login redirect) with nothing changed and nothing of A's in the answer. Page forms are
//! sent with the caller's own CSRF token, so a refusal is the role's, not the token's; then
//! every page form and every API write is sent once more by an allowed caller without the
//! token and must change nothing.

use ekey_server::web::encode;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// The callers, as one letter each.
const ROLES: &[(char, &str)] = &[
    ('n', "anonymous"),
    ('a', "enterprise A (owner)"),
    ('b', "enterprise B (same province)"),
    ('j', "agency of A's province"),
    ('o', "agency of another province"),
    ('p', "provider"),
    ('d', "administrator"),
];

/// Who may call a route.
#[derive(Clone, Copy)]
enum Who {
    /// Anyone, logged in or not (public pages and endpoints, by design).
    Public,
    /// Only these callers (letters of [`ROLES`]); an empty string: none of the seven (the
    /// route needs a key session, which no password session is).
    Only(&'static str),
}

use Who::{Only, Public};

/// Every route and who may call it, on A's objects.
const EXPECTED: &[(&str, &str, Who)] = &[
    // Accounts and sessions.
    ("POST", "/api/v1/sessions", Public),
    ("DELETE", "/api/v1/sessions/current", Only("abjopd")),
    ("GET", "/api/v1/me", Only("abjopd")),
    ("POST", "/api/v1/me/password", Only("abjopd")),
    ("POST", "/api/v1/registrations", Public),
    ("POST", "/api/v1/registrations/resend", Public),
    ("GET", "/api/v1/activations/{token}", Public),
    ("POST", "/api/v1/password-resets", Public),
    ("POST", "/api/v1/password-resets/{token}", Public),
    ("POST", "/api/v1/login-names", Only("ab")),
    ("POST", "/api/v1/key-login/challenges", Public),
    ("POST", "/api/v1/key-login", Public),
    // Requests: the owner, the agency of its province, the provider; the administrator
    // reads for support.
    ("GET", "/api/v1/requests", Only("abjopd")),
    ("POST", "/api/v1/requests", Only("ab")),
    ("GET", "/api/v1/requests/{id}", Only("ajpd")),
    ("PATCH", "/api/v1/requests/{id}", Only("a")),
    ("POST", "/api/v1/requests/{id}/submit", Only("a")),
    ("POST", "/api/v1/requests/{id}/confirm-upload", Only("a")),
    ("POST", "/api/v1/requests/{id}/withdraw", Only("a")),
    ("PUT", "/api/v1/requests/{id}/collection", Only("a")),
    ("PUT", "/api/v1/requests/{id}/materials/{item}", Only("a")),
    (
        "GET",
        "/api/v1/requests/{id}/materials/{item}",
        Only("ajpd"),
    ),
    (
        "GET",
        "/api/v1/requests/{id}/documents/application-form.pdf",
        Only("ajpd"),
    ),
    (
        "GET",
        "/api/v1/requests/{id}/documents/confirmation-letter.pdf",
        Only("ajpd"),
    ),
    (
        "GET",
        "/api/v1/requests/{id}/documents/unlock-form.pdf",
        Only("ajpd"),
    ),
    (
        "GET",
        "/api/v1/requests/{id}/documents/cancellation-form.pdf",
        Only("ajpd"),
    ),
    (
        "GET",
        "/api/v1/requests/{id}/documents/power-of-attorney.pdf",
        Only("ajpd"),
    ),
    (
        "GET",
        "/api/v1/requests/{id}/documents/user-agreement.pdf",
        Only("ajpd"),
    ),
    (
        "GET",
        "/api/v1/requests/{id}/documents/mailing-disclaimer.pdf",
        Only("ajpd"),
    ),
    (
        "GET",
        "/api/v1/requests/{id}/documents/introduction-letter.pdf",
        Only("ajpd"),
    ),
    ("GET", "/api/v1/documents/cancellation-form.pdf", Public),
    ("POST", "/api/v1/requests/{id}/decision", Only("jp")),
    ("POST", "/api/v1/requests/{id}/receive", Only("j")),
    ("POST", "/api/v1/requests/{id}/produce", Only("p")),
    ("POST", "/api/v1/requests/{id}/notify", Only("j")),
    ("POST", "/api/v1/requests/{id}/handover", Only("j")),
    ("POST", "/api/v1/requests/{id}/unlock-done", Only("a")),
    // Keys and renewal.
    ("GET", "/api/v1/keys", Only("ab")),
    ("GET", "/api/v1/keys/{id}/initial-pin", Only("a")),
    ("GET", "/api/v1/keys/{id}/certificate", Only("ajpd")),
    ("POST", "/api/v1/keys/{id}/return", Only("jp")),
    ("POST", "/console/keys/{id}/return", Only("jp")),
    ("GET", "/api/v1/renewals", Only("ab")),
    ("POST", "/api/v1/renewals/{id}/certificate", Only("")),
    ("POST", "/api/v1/renewals/{id}/confirm", Only("")),
    // Shipments: the provider packs, the agency of the destination receives.
    ("GET", "/api/v1/shipments", Only("jopd")),
    ("POST", "/api/v1/shipments", Only("p")),
    ("GET", "/api/v1/shipments/{id}", Only("jpd")),
    (
        "GET",
        "/api/v1/shipments/{id}/packing-list.pdf",
        Only("jpd"),
    ),
    ("POST", "/api/v1/shipments/{id}/receive", Only("j")),
    ("POST", "/api/v1/shipments/{id}/notify", Only("j")),
    // The CA.
    ("GET", "/api/v1/ca/status", Only("pd")),
    ("GET", "/api/v1/certificates", Only("p")),
    ("POST", "/api/v1/certificates", Only("p")),
    ("POST", "/api/v1/certificates/{serial}/revoke", Only("p")),
    // Administration.
    ("GET", "/api/v1/admin/outbox", Only("d")),
    ("POST", "/api/v1/admin/outbox/{id}/retry", Only("d")),
    ("GET", "/api/v1/admin/users", Only("d")),
    ("POST", "/api/v1/admin/users", Only("d")),
    ("POST", "/api/v1/admin/users/{id}/active", Only("d")),
    (
        "POST",
        "/api/v1/admin/enterprises/{credit_code}/release",
        Only("d"),
    ),
    (
        "POST",
        "/api/v1/admin/enterprises/{credit_code}/transfer",
        Only("d"),
    ),
    ("GET", "/api/v1/admin/holidays", Only("d")),
    ("PUT", "/api/v1/admin/holidays", Only("d")),
    ("PUT", "/api/v1/agencies/{province}", Only("d")),
    ("PUT", "/api/v1/admin/agencies", Only("d")),
    // Public information.
    ("GET", "/healthz", Public),
    ("GET", "/api/v1/openapi.json", Public),
    ("GET", "/api/v1/public/result", Public),
    ("GET", "/api/v1/agencies", Public),
    ("GET", "/api/v1/dev/mailbox", Public),
    ("GET", "/ca/root.crt", Public),
    ("GET", "/ca/issuing.crt", Public),
    ("GET", "/crl/issuing.crl", Public),
    ("GET", "/crl/root.crl", Public),
    ("POST", "/ocsp", Public),
    ("GET", "/ocsp/{*request}", Public),
    // Public pages.
    ("GET", "/", Public),
    ("GET", "/static/{name}", Public),
    ("GET", "/lang/{lang}", Public),
    ("GET", "/login", Public),
    ("POST", "/login", Public),
    ("POST", "/login/key", Public),
    ("POST", "/logout", Public),
    ("GET", "/register", Public),
    ("POST", "/register", Public),
    ("GET", "/register/sent", Public),
    ("POST", "/register/resend", Public),
    ("GET", "/password/forgot", Public),
    ("POST", "/password/forgot", Public),
    ("GET", "/password/reset/{token}", Public),
    ("POST", "/password/reset/{token}", Public),
    ("GET", "/result", Public),
    ("GET", "/dev/mailbox", Public),
    ("GET", "/account/password", Only("abjopd")),
    ("POST", "/account/password", Only("abjopd")),
    // The enterprise portal.
    ("GET", "/portal", Only("ab")),
    ("GET", "/portal/apply", Only("ab")),
    ("GET", "/portal/renewal", Only("ab")),
    ("GET", "/portal/keys/{id}", Only("a")),
    ("POST", "/portal/keys/{id}/initial-pin", Only("a")),
    ("GET", "/portal/requests/new", Only("ab")),
    ("POST", "/portal/requests/new", Only("ab")),
    ("GET", "/portal/requests/{id}", Only("a")),
    ("GET", "/portal/requests/{id}/edit", Only("a")),
    ("POST", "/portal/requests/{id}/edit", Only("a")),
    ("POST", "/portal/requests/{id}/submit", Only("a")),
    ("POST", "/portal/requests/{id}/confirm", Only("a")),
    ("POST", "/portal/requests/{id}/withdraw", Only("a")),
    ("POST", "/portal/requests/{id}/collection", Only("a")),
    // The staff consoles.
    // A dispatcher: sends everyone to their own home (or to log in).
    ("GET", "/console", Public),
    ("GET", "/console/queue", Only("jop")),
    ("GET", "/console/dashboard", Only("jopd")),
    ("GET", "/console/requests/{id}", Only("jp")),
    ("POST", "/console/requests/{id}/decision", Only("jp")),
    ("POST", "/console/requests/{id}/receive", Only("j")),
    ("POST", "/console/requests/{id}/produce", Only("p")),
    ("POST", "/console/requests/{id}/notify", Only("j")),
    ("POST", "/console/requests/{id}/handover", Only("j")),
    ("GET", "/console/shipments", Only("jop")),
    ("POST", "/console/shipments", Only("p")),
    ("GET", "/console/shipments/{id}", Only("jp")),
    ("POST", "/console/shipments/{id}/receive", Only("j")),
    ("POST", "/console/shipments/{id}/notify", Only("j")),
    ("GET", "/console/certificates", Only("p")),
    ("POST", "/console/certificates/{serial}/revoke", Only("p")),
    ("GET", "/console/admin", Only("d")),
    ("POST", "/console/admin/outbox/{id}/retry", Only("d")),
    ("POST", "/console/admin/agencies/{province}", Only("d")),
    ("POST", "/console/admin/agencies", Only("d")),
    ("POST", "/console/admin/users", Only("d")),
    ("POST", "/console/admin/users/{id}/active", Only("d")),
    ("POST", "/console/admin/enterprises", Only("d")),
];

/// Routes after which the caller's session has ended (log out).
const ENDS_SESSION: &[(&str, &str)] =
    &[("DELETE", "/api/v1/sessions/current"), ("POST", "/logout")];

/// A's objects, and what identifies them in an answer.
struct Objects {
    request: String,
    request_number: String,
    key: String,
    serial: String,
    shipment: String,
    outbox: String,
    user: String,
    credit_code: String,
}

/// What is sent to one route.
enum Body {
    None,
    Json(Value),
    Bytes(&'static str, Vec<u8>),
    Form(Vec<(&'static str, String)>),
}

fn body_for(method: &str, path: &str, o: &Objects) -> Body {
    let page = !path.starts_with("/api/") && path != "/ocsp";
    if method == "GET" || method == "DELETE" {
        return Body::None;
    }
    if page {
        let fields: Vec<(&'static str, String)> = match path {
            "/login" => vec![
                ("login", "nobody@example.com".into()),
                ("password", "x".into()),
            ],
            "/register" | "/register/resend" | "/password/forgot" => {
                vec![("email", "nobody@example.com".into())]
            }
            "/account/password" => vec![
                ("current_password", "wrong-password-1".into()),
                ("password", "short".into()),
                ("password2", "short".into()),
            ],
            "/console/requests/{id}/decision" => {
                vec![("approve", "false".into()), ("remark", "材料不清晰".into())]
            }
            "/console/certificates/{serial}/revoke" => vec![("reason", "".into())],
            "/console/shipments" => vec![("courier", "".into())],
            "/console/admin/users" => vec![("login", "".into())],
            "/console/admin/users/{id}/active" => vec![("active", "false".into())],
            "/console/admin/agencies/{province}" => vec![("address", "".into())],
            "/console/admin/agencies" => vec![("csv", "province\n".into())],
            _ => vec![],
        };
        return Body::Form(fields);
    }
    let id = &o.request;
    match path {
        "/ocsp" => Body::Bytes("application/ocsp-request", b"\x30\x03\x02\x01\x00".to_vec()),
        "/api/v1/sessions" => Body::Json(json!({"login": "nobody@example.com", "password": "x"})),
        "/api/v1/me/password" => Body::Json(json!({
            "current_password": "wrong-password-1", "new_password": "short"})),
        "/api/v1/registrations" => Body::Json(json!({})),
        "/api/v1/registrations/resend" | "/api/v1/password-resets" => {
            Body::Json(json!({"email": "nobody@example.com", "login": "nobody@example.com"}))
        }
        "/api/v1/password-resets/{token}" => Body::Json(json!({"password": "Another-2026"})),
        "/api/v1/key-login" => Body::Json(json!({
            "challenge_id": "x", "certificate": "", "signature": ""})),
        "/api/v1/requests" => Body::Json(json!({
            "kind": "first", "licence_types": [], "login_name": {"mode": "allocate"},
            "authorised_user": person("x@example.com")})),
        "/api/v1/requests/{id}" => Body::Json(json!({"reason": "x"})),
        "/api/v1/requests/{id}/collection" => Body::Json(json!({"method": "nowhere"})),
        "/api/v1/requests/{id}/materials/{item}" => Body::Bytes("image/png", png(2000)),
        "/api/v1/requests/{id}/decision" => {
            Body::Json(json!({"approve": false, "remark": "材料不清晰"}))
        }
        "/api/v1/requests/{id}/receive" => Body::Json(json!({"form_received": false})),
        "/api/v1/requests/{id}/handover" => Body::Json(json!({"method": "nowhere"})),
        "/api/v1/requests/{id}/unlock-done" => {
            Body::Json(json!({"certificate": "", "signature": ""}))
        }
        "/api/v1/renewals/{id}/certificate" => {
            Body::Json(json!({"csr": "", "countersignature": ""}))
        }
        "/api/v1/renewals/{id}/confirm" => Body::Json(json!({"signature": ""})),
        "/api/v1/shipments" => Body::Json(json!({
            "courier": "", "tracking_number": "", "request_ids": [id]})),
        "/api/v1/certificates" => Body::Json(json!({
            "csr": "", "credit_code": o.credit_code, "enterprise_name": "x", "order": ""})),
        "/api/v1/certificates/{serial}/revoke" => Body::Json(json!({"reason": "noSuchReason"})),
        "/api/v1/admin/users" => Body::Json(json!({
            "login": "", "display_name": "", "email": "", "role": "nobody", "password": ""})),
        "/api/v1/admin/users/{id}/active" => Body::Json(json!({"active": false})),
        "/api/v1/admin/enterprises/{credit_code}/release" => Body::Json(json!({"reason": ""})),
        "/api/v1/admin/enterprises/{credit_code}/transfer" => {
            Body::Json(json!({"email": "", "reason": ""}))
        }
        "/api/v1/admin/holidays" => Body::Bytes("application/json", b"{}".to_vec()),
        "/api/v1/admin/agencies" => Body::Bytes("text/csv", b"province\n".to_vec()),
        "/api/v1/agencies/{province}" => Body::Json(json!({
            "address": "", "window": "", "hours": "", "hotline": ""})),
        _ => Body::Json(json!({})),
    }
}

/// The concrete path of a route on A's objects.
fn concrete(path: &str, o: &Objects) -> String {
    let id = match path {
        p if p.contains("/keys/{id}") => o.key.as_str(),
        p if p.contains("/shipments/{id}") => o.shipment.as_str(),
        p if p.contains("/outbox/{id}") => o.outbox.as_str(),
        p if p.contains("/users/{id}") => o.user.as_str(),
        _ => o.request.as_str(),
    };
    let token = "0123456789abcdef0123456789abcdef";
    path.replace("{id}", id)
        .replace("{item}", "id_card")
        .replace("{serial}", &o.serial)
        .replace("{credit_code}", &o.credit_code)
        .replace("{province}", "320000")
        .replace("{token}", token)
        .replace("{name}", "app.css")
        .replace("{lang}", "en")
        .replace("{*request}", "MAMCAQA%3D")
        + if path == "/api/v1/certificates" {
            "?q=demo"
        } else {
            ""
        }
}

/// One caller: its session token (none for anonymous).
struct Caller {
    letter: char,
    token: Option<String>,
}

const SEED: &str = "authz-anonymous-seed";

async fn call(
    s: &TestServer,
    caller: &Caller,
    method: &str,
    path: &str,
    body: &Body,
    csrf: bool,
) -> (StatusCode, String, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let page = !path.starts_with("/api/") && !path.starts_with("/ocsp");
    let mut b = client.request(method, s.url(path));
    // The API is called with the bearer token, the pages with the session cookie (as a
    // browser does); anonymous visitors carry a CSRF seed cookie.
    let seed = caller.token.clone().unwrap_or_else(|| SEED.to_string());
    if page {
        b = match &caller.token {
            Some(t) => b.header(
                "cookie",
                format!("{}={t}", ekey_server::auth::SESSION_COOKIE),
            ),
            None => b.header(
                "cookie",
                format!("{}={SEED}", ekey_server::web::SEED_COOKIE),
            ),
        };
    } else if let Some(t) = &caller.token {
        b = b.bearer_auth(t);
    }
    b = match body {
        Body::None => b,
        Body::Json(v) => b.json(v),
        Body::Bytes(ct, bytes) => b.header("content-type", *ct).body(bytes.clone()),
        Body::Form(fields) => {
            let mut fields: Vec<(&str, String)> =
                fields.iter().map(|(k, v)| (*k, v.clone())).collect();
            if csrf {
                fields.push(("csrf", ekey_server::auth::csrf_token(&seed)));
            }
            let encoded = fields
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            b.header("content-type", "application/x-www-form-urlencoded")
                .body(encoded)
        }
    };
    let res = b.send().await.unwrap();
    let status = res.status();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = String::from_utf8_lossy(&res.bytes().await.unwrap()).into_owned();
    (status, location, text)
}

/// Whether an answer is a refusal: not logged in, not allowed, not visible.
fn refused(status: StatusCode, location: &str, body: &str) -> bool {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => true,
        // "Not found" for what the caller may not see; a 404 that names something else
        // (a document not made for this kind of request) means the caller got past the
        // check.
        StatusCode::NOT_FOUND => {
            let code = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_string));
            match code {
                Some(c) => c.ends_with("not_found"),
                None => true,
            }
        }
        StatusCode::SEE_OTHER | StatusCode::FOUND | StatusCode::TEMPORARY_REDIRECT => {
            location.starts_with("/login")
        }
        _ => false,
    }
}

async fn login_all(s: &TestServer, b_email: &str) -> Vec<Caller> {
    // The matrix makes many failed logins from 127.0.0.1 on purpose; their back-off is
    // tested elsewhere and is not what this test is about.
    sqlx::query("DELETE FROM login_failures")
        .execute(s.raw().pool())
        .await
        .unwrap();
    let mut out = Vec::new();
    for (letter, _) in ROLES {
        let token = match letter {
            'n' => None,
            'a' => Some(s.login("demo@ekey.example").await),
            'b' => Some(s.login_with(b_email, "Secret-2026").await),
            'j' => Some(s.login("agency-320000").await),
            'o' => Some(s.login("agency-110000").await),
            'p' => Some(s.login("provider").await),
            'd' => Some(s.login("admin").await),
            _ => unreachable!(),
        };
        out.push(Caller {
            letter: *letter,
            token,
        });
    }
    out
}

async fn objects(s: &TestServer) -> Objects {
    let portal = ekey_testkit::scenario::Portal::new(&s.base);
    let key = ekey_testkit::scenario::active_key(&portal).await.unwrap();
    let ent = s.login("demo@ekey.example").await;
    // A second request of A's, waiting for the agency: the object of every request route.
    let request = portal
        .request_under_review(
            &ent,
            json!({"kind": "additional", "licence_types": ["export_licence"],
                   "login_name": {"mode": "allocate"}, "reason": "出口业务另设专人办理",
                   "authorised_user": person("liming@example.com")}),
            SIX,
        )
        .await
        .unwrap();
    let (_, r) = s
        .get(&format!("/api/v1/requests/{request}"), Some(&ent))
        .await;
    let provider = s.login("provider").await;
    let (_, shipments) = s.get("/api/v1/shipments", Some(&provider)).await;
    let shipment = shipments
        .as_array()
        .and_then(|a| a.first())
        .map(|v| v["id"].as_str().unwrap().to_string())
        .expect("the scenario's shipment");
    let admin = s.login("admin").await;
    // A delivered message: the administrator may ask for it again (and is told it went).
    let outbox: i64 = sqlx::query_scalar("SELECT MIN(id) FROM outbox")
        .fetch_one(s.raw().pool())
        .await
        .unwrap();
    let outbox = outbox.to_string();
    let (status, user) = s
        .post(
            "/api/v1/admin/users",
            Some(&admin),
            json!({"login": "clerk-authz", "display_name": "测试", "email": "clerk@example.com",
                   "role": "agency", "province": "320000", "password": "Clerk-Authz-2026"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let (_, me) = s.get("/api/v1/me", Some(&ent)).await;
    Objects {
        request,
        request_number: r["number"].as_str().unwrap().to_string(),
        key: key.key_id,
        serial: key.certificate_serial,
        shipment,
        outbox,
        user: user["id"].as_str().unwrap().to_string(),
        credit_code: me["enterprise"]["credit_code"]
            .as_str()
            .unwrap_or("91320000MA1X2Y3Q4J")
            .to_string(),
    }
}

async fn every_route_checks_who_calls_it(db: Db) {
    // 1. The table covers exactly the routes the instance serves.
    let served: std::collections::BTreeSet<(String, String)> =
        ekey_server::api::route_list().into_iter().collect();
    let listed: std::collections::BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = served.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&served).collect();
    let mut wrong = Vec::new();
    if !missing.is_empty() || !stale.is_empty() {
        wrong.push(format!(
            "routes without an expectation in authz.rs: {missing:?}; expectations without a route: {stale:?}"
        ));
    }
    assert_eq!(listed.len(), EXPECTED.len(), "a route is listed twice");
    let expected: Vec<&(&str, &str, Who)> = EXPECTED
        .iter()
        .filter(|(m, p, _)| served.contains(&(m.to_string(), p.to_string())))
        .collect();

    let s = TestServer::start(db).await;
    let b_email = "b-authz@example.com";
    s.register_and_login(
        "无锡乙方贸易有限公司",
        &credit_code("91320200MA1Q2W3E4"),
        "320000",
        b_email,
    )
    .await;
    let o = objects(&s).await;
    let mut callers = login_all(&s, b_email).await;

    for (method, path, who) in expected.iter().copied() {
        let url = concrete(path, &o);
        let body = body_for(method, path, &o);
        // Refused callers first, so that an allowed caller's change comes after them.
        let mut order: Vec<usize> = (0..callers.len()).collect();
        order.sort_by_key(|i| match who {
            Public => 1,
            Only(allowed) => allowed.contains(callers[*i].letter) as u8,
        });
        for i in order {
            let caller = &callers[i];
            let allowed = match who {
                Public => true,
                Only(list) => list.contains(caller.letter),
            };
            let before = if allowed || *method == "GET" {
                None
            } else {
                Some(s.snapshot().await)
            };
            let (status, location, text) = call(&s, caller, method, &url, &body, true).await;
            let cell = format!("{method} {path} as {}", caller.letter);
            if status.is_server_error() {
                wrong.push(format!("{cell}: {status} {}", clip(&text)));
                continue;
            }
            let was_refused = refused(status, &location, &text);
            if allowed && was_refused && !matches!(who, Public) {
                wrong.push(format!(
                    "{cell}: allowed but refused, {status} {}",
                    clip(&text)
                ));
            }
            if !allowed {
                if !was_refused {
                    wrong.push(format!(
                        "{cell}: should be refused, got {status} {location} {}",
                        clip(&text)
                    ));
                }
                for secret in [&o.request_number, &o.credit_code, &o.serial] {
                    if text.contains(secret.as_str()) {
                        wrong.push(format!("{cell}: the refusal shows A's {secret}"));
                    }
                }
                if let Some(before) = before
                    && s.snapshot().await != before
                {
                    wrong.push(format!("{cell}: a refused call changed the database"));
                }
            }
        }
        if ENDS_SESSION.contains(&(*method, *path)) {
            callers = login_all(&s, b_email).await;
        }
    }

    // 2. Without its CSRF token, no page form and no cookie-borne API write of an allowed
    // caller changes anything.
    for (method, path, who) in expected.iter().copied() {
        if *method == "GET" {
            continue;
        }
        let Only(allowed) = who else { continue };
        let Some(letter) = allowed.chars().next() else {
            continue;
        };
        let caller = callers.iter().find(|c| c.letter == letter).unwrap();
        let url = concrete(path, &o);
        let before = s.snapshot().await;
        let page = !path.starts_with("/api/");
        let (status, text) = if page {
            let body = body_for(method, path, &o);
            let (status, _, text) = call(&s, caller, method, &url, &body, false).await;
            (status, text)
        } else {
            // The API with the session cookie, as the pages' scripts call it, but without
            // X-CSRF-Token.
            let client = reqwest::Client::new();
            let res = client
                .request(Method::from_bytes(method.as_bytes()).unwrap(), s.url(&url))
                .header(
                    "cookie",
                    format!(
                        "{}={}",
                        ekey_server::auth::SESSION_COOKIE,
                        caller.token.as_ref().unwrap()
                    ),
                )
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = res.status();
            (status, res.text().await.unwrap())
        };
        let cell = format!("{method} {path} as {letter} without CSRF token");
        if status != StatusCode::FORBIDDEN || !text.contains("ekey.auth.csrf") && !page {
            wrong.push(format!("{cell}: {status} {}", clip(&text)));
        }
        if page && !text.contains("页面已过期或来源不明") {
            wrong.push(format!("{cell}: no CSRF message: {status} {}", clip(&text)));
        }
        if s.snapshot().await != before {
            wrong.push(format!("{cell}: changed the database"));
        }
    }

    assert!(
        wrong.is_empty(),
        "{} cells of the authorisation matrix are wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let report = s.verify_audit().await;
    assert_eq!(report.first_broken, None);
    s.stop().await;
}

fn clip(s: &str) -> String {
    let s: String = s.chars().take(160).collect();
    s.replace('\n', " ")
}

on_both_databases!(every_route_checks_who_calls_it);

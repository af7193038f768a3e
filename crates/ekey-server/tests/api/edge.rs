//! The edge doors an outside audit tried: where a page sends the browser next (`next=` of the
//! language switch, the password login and the certificate login, one rule for all), bytes
//! that are not text in any page or API address or form (400, never 500, on PostgreSQL
//! too), and the headers of an https instance (HSTS, `__Host-` cookies, `no-store` on the
//! API's answers).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// `next` values that would leave the site in some browser, as the browser sends them
/// (decoded once).
const TRICKS: &[&str] = &[
    "//evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/%2f%2fevil.example",
    "/%2F/evil.example",
    "/%5cevil.example",
    "/%09/evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/%0d%0aSet-Cookie:x=1",
    "https://evil.example/",
    "javascript:alert(1)",
    "/\u{ff0f}evil.example",
];

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

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// An anonymous visitor's seed cookie (from the login page) and its CSRF token.
async fn seed(client: &reqwest::Client, s: &TestServer) -> (String, String) {
    let res = client.get(s.url("/login")).send().await.unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
    let pair = set.split(';').next().unwrap().to_string();
    let value = pair.split_once('=').unwrap().1.to_string();
    (pair, ekey_server::auth::csrf_token(&value))
}

async fn every_door_keeps_the_browser_on_this_site(db: Db) {
    let s = TestServer::start(db).await;
    let client = no_redirects();

    // The language switch.
    for trick in TRICKS
        .iter()
        .chain(&["%2f%2fevil.example", "/%252f%252fevil.example"])
    {
        let res = client
            .get(s.url(&format!("/lang/en?next={}", urlencode(trick))))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_redirection(), "{trick:?}: {}", res.status());
        assert_eq!(location(&res), "/", "{trick:?}");
    }
    // Bytes that are no text at all: refused, never a 500.
    for raw in ["%FF", "%00", "/%C0%AF"] {
        let res = client
            .get(s.url(&format!("/lang/en?next={raw}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{raw}");
    }
    let res = client
        .get(s.url(&format!(
            "/lang/en?next={}",
            urlencode("/result?number=1&x=%E4%B8%AD")
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/result?number=1&x=%E4%B8%AD");

    // The login page carries on only a target it would follow.
    for trick in TRICKS {
        let html = client
            .get(s.url(&format!("/login?next={}", urlencode(trick))))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("data-next=\"\""), "{trick:?}");
        assert!(!html.contains("name=\"next\" value=\"/"), "{trick:?}");
    }

    // The password login.
    let (cookie, csrf) = seed(&client, &s).await;
    let login = |next: String| {
        client
            .post(s.url("/login"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "csrf={csrf}&login=provider&password={PASSWORD}&next={}",
                urlencode(&next)
            ))
            .send()
    };
    for trick in TRICKS {
        let res = login(trick.to_string()).await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{trick:?}");
        assert_eq!(location(&res), "/console", "{trick:?}");
    }
    let res = login("/console/queue?tab=mine".into()).await.unwrap();
    assert_eq!(location(&res), "/console/queue?tab=mine");

    // The certificate login (the page's script follows the `redirect` it is answered).
    let key = ekey_testkit::scenario::active_key(&ekey_testkit::scenario::Portal::new(&s.base))
        .await
        .unwrap();
    let agent = crate::agent::RunningAgent::start(&s).await;
    for (next, expected) in [
        ("//evil.example", "/portal"),
        ("/%5cevil.example", "/portal"),
        ("/portal/apply?kind=renewal", "/portal/apply?kind=renewal"),
    ] {
        let c: Value = s
            .client
            .post(s.url("/api/v1/key-login/challenges"))
            .header("cookie", &cookie)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (status, signed) = agent
            .call(
                "POST",
                &format!("/keys/{}/login-signature", key.token_serial),
                Some(json!({"challenge": c["challenge"], "pin": key.pin})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{signed}");
        let res = client
            .post(s.url(&format!("/login/key?next={}", urlencode(next))))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(
                &json!({"challenge_id": c["id"], "certificate": signed["certificate"],
                          "signature": signed["signature"]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{next}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["redirect"], expected, "{next}");
    }
    s.stop().await;
}
on_both_databases!(every_door_keeps_the_browser_on_this_site);

/// Checks a refusal: 400 with `code` in the page or the JSON, and nothing stored.
async fn refused(s: &TestServer, res: reqwest::Response, code: &str, what: &str) {
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{what}");
    let body = res.text().await.unwrap();
    assert!(body.contains(code), "{what}: {body}");
    let _ = s;
}

async fn bad_characters_in_any_page_or_address_answer_400(db: Db) {
    let s = TestServer::start(db).await;
    let client = no_redirects();
    let ent = s.login("demo@ekey.example").await;
    let provider = s.login("provider").await;
    let id = request_in_agency_review(&s, &ent).await;
    let ent_cookie = format!("{}={ent}", ekey_server::auth::SESSION_COOKIE);
    let provider_cookie = format!("{}={provider}", ekey_server::auth::SESSION_COOKIE);
    let before = s.snapshot().await;

    // Page queries and path segments, anonymous and logged in.
    for (path, cookie, code) in [
        (
            "/result?credit_code=%00".to_string(),
            None,
            "ekey.input.nul",
        ),
        (
            "/result?number=%FF".to_string(),
            None,
            "ekey.input.malformed",
        ),
        (
            "/login?next=%E4%B8".to_string(),
            None,
            "ekey.input.malformed",
        ),
        (
            "/console/certificates?q=a%00".to_string(),
            Some(&provider_cookie),
            "ekey.input.nul",
        ),
        (
            "/console/queue?q=%C0%AF".to_string(),
            Some(&provider_cookie),
            "ekey.input.malformed",
        ),
        (
            "/portal/requests/%00".to_string(),
            Some(&ent_cookie),
            "ekey.input.nul",
        ),
        (
            format!("/portal/requests/{id}%FF"),
            Some(&ent_cookie),
            "ekey.input.malformed",
        ),
        ("/password/reset/%00abc".to_string(), None, "ekey.input.nul"),
        (
            "/api/v1/requests?q=%FF".to_string(),
            Some(&ent_cookie),
            "ekey.input.malformed",
        ),
        (
            "/api/v1/public/result?number=%FE".to_string(),
            None,
            "ekey.input.malformed",
        ),
    ] {
        let mut b = client.get(s.url(&path));
        if let Some(c) = cookie {
            b = b.header("cookie", c.as_str());
        }
        refused(&s, b.send().await.unwrap(), code, &path).await;
    }

    // Forms: a NUL or a byte that is not UTF-8 in any field.
    let (cookie, csrf) = seed(&client, &s).await;
    for (path, body, code) in [
        (
            "/login",
            format!("csrf={csrf}&login=provider%FF&password=x"),
            "ekey.input.malformed",
        ),
        (
            "/password/forgot",
            format!("csrf={csrf}&login=demo%C3%28%40ekey.example"),
            "ekey.input.malformed",
        ),
        (
            "/register",
            format!("csrf={csrf}&name=%E9%87%91%00&email=a%40b.example"),
            "ekey.input.nul",
        ),
    ] {
        let res = client
            .post(s.url(path))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        refused(&s, res, code, &body).await;
    }
    let res = client
        .post(s.url(&format!("/portal/requests/{id}/withdraw")))
        .header("cookie", ent_cookie.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}&reason=%FF%FE",
            ekey_server::auth::csrf_token(&ent)
        ))
        .send()
        .await
        .unwrap();
    refused(&s, res, "ekey.input.malformed", "withdraw").await;

    assert_eq!(before, s.snapshot().await, "nothing changed");
    s.stop().await;
}
on_both_databases!(bad_characters_in_any_page_or_address_answer_400);

async fn an_https_instance_pins_https_and_its_cookies(db: Db) {
    let s = TestServer::start_with(db, default_start(), |c| {
        c.public_url = Some("https://ekey.example".into());
    })
    .await;
    let client = no_redirects();
    let host = |name: &str| format!("__Host-{name}");
    let session = host(ekey_server::auth::SESSION_COOKIE);
    let seed_name = host(ekey_server::web::SEED_COOKIE);

    // Every answer pins https.
    for path in ["/", "/login", "/healthz", "/crl/issuing.crl"] {
        let res = client.get(s.url(path)).send().await.unwrap();
        assert_eq!(
            res.headers()["strict-transport-security"],
            "max-age=31536000",
            "{path}"
        );
    }

    // The seed, the session and the language cookies carry the __Host- prefix (Secure,
    // Path=/, no Domain), and are read back under that name.
    let res = client.get(s.url("/login")).send().await.unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with(&format!("{seed_name}=")), "{set}");
    assert!(set.contains("; Secure") && set.contains("Path=/") && !set.contains("Domain"));
    let seed_value = set.split(';').next().unwrap().split_once('=').unwrap().1;
    let csrf = ekey_server::auth::csrf_token(seed_value);
    let res = client
        .post(s.url("/login"))
        .header("cookie", format!("{seed_name}={seed_value}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&login=demo%40ekey.example&password={PASSWORD}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "the seed was read back"
    );
    let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with(&format!("{session}=")), "{set}");
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly"),
        "{set}"
    );
    let token = set
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();

    let res = client
        .get(s.url("/portal"))
        .header("cookie", format!("{session}={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the session is read back");
    // A cookie under the plain name (which any neighbouring host could set) is ignored.
    let res = client
        .get(s.url("/portal"))
        .header(
            "cookie",
            format!("{}={token}", ekey_server::auth::SESSION_COOKIE),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "to the login page");

    // The language switch and the logout (a clearing cookie is Secure too, or the browser
    // would ignore it).
    let res = client.get(s.url("/lang/en?next=/")).send().await.unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.starts_with("__Host-ekey_lang=en") && set.contains("; Secure"),
        "{set}"
    );
    let res = client
        .get(s.url("/login"))
        .header("cookie", "__Host-ekey_lang=en")
        .send()
        .await
        .unwrap();
    let html = res.text().await.unwrap();
    assert!(
        html.contains("lang=\"en\""),
        "the language cookie is read back"
    );
    let res = client
        .post(s.url("/logout"))
        .header("cookie", format!("{session}={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}", ekey_server::auth::csrf_token(&token)))
        .send()
        .await
        .unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.starts_with(&format!("{session}=;")) && set.contains("; Secure"),
        "{set}"
    );
    s.stop().await;
}
on_both_databases!(an_https_instance_pins_https_and_its_cookies);

async fn api_answers_with_personal_data_are_not_stored(db: Db) {
    let s = TestServer::start(db).await;
    let key = ekey_testkit::scenario::active_key(&ekey_testkit::scenario::Portal::new(&s.base))
        .await
        .unwrap();
    let ent = s.login("demo@ekey.example").await;
    let id = key.request_id.clone();
    let paths = [
        "/api/v1/me".to_string(),
        format!("/api/v1/requests/{id}"),
        "/api/v1/requests".to_string(),
        "/api/v1/keys".to_string(),
        format!("/api/v1/keys/{}/initial-pin", key.key_id),
        format!("/api/v1/requests/{id}/materials/id_card"),
    ];
    for path in &paths {
        let res = s
            .client
            .get(s.url(path))
            .bearer_auth(&ent)
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success() || res.status().is_client_error(),
            "{path}"
        );
        let cache = res.headers()["cache-control"].to_str().unwrap();
        assert!(cache.contains("no-store"), "{path}: {cache}");
    }
    // A new session's token, too.
    let res = s
        .client
        .post(s.url("/api/v1/sessions"))
        .json(&json!({"login": "provider", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    s.stop().await;
}
on_both_databases!(api_answers_with_personal_data_are_not_stored);

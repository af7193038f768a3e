//! What every answer tells the browser: pages run only our own script files (a CSP without
//! inline script, no inline handlers), nothing is framed by another site, types are not
//! sniffed, cookies are HttpOnly and SameSite (and Secure behind https), and an uploaded
//! scan is a download unless a page previews it — never markup, never script.

use reqwest::StatusCode;

use crate::support::*;

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The login form posted by an anonymous visitor with its seed cookie and CSRF token;
/// `login` is sent as given (already URL-encoded), with the demo password.
async fn page_login(
    client: &reqwest::Client,
    s: &TestServer,
    seed: &str,
    login: &str,
) -> reqwest::Response {
    client
        .post(s.url("/login"))
        .header(
            "cookie",
            format!("__Host-{}={seed}", ekey_server::web::SEED_COOKIE),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}&login={login}&password={PASSWORD}",
            ekey_server::auth::csrf_token(seed)
        ))
        .send()
        .await
        .unwrap()
}

async fn every_answer_carries_the_security_headers(db: Db) {
    // Served as https (behind a TLS proxy): the cookies are Secure.
    let s = TestServer::start_with(db, default_start(), |c| {
        c.public_url = Some("https://ekey.example".into());
    })
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let ent = s.login("demo@ekey.example").await;
    let id = request_in_agency_review(&s, &ent).await;
    // Over https the cookies carry the `__Host-` prefix (doors.rs tests it in full).
    let cookie = format!("__Host-{}={ent}", ekey_server::auth::SESSION_COOKIE);

    // Pages: each one the portal, the console and the public side show.
    let agency = s.login("agency-320000").await;
    let agency_cookie = format!("__Host-{}={agency}", ekey_server::auth::SESSION_COOKIE);
    for (path, cookie) in [
        ("/".to_string(), None),
        ("/login".to_string(), None),
        ("/register".to_string(), None),
        ("/result".to_string(), None),
        ("/portal".to_string(), Some(&cookie)),
        (format!("/portal/requests/{id}"), Some(&cookie)),
        ("/account/password".to_string(), Some(&cookie)),
        (format!("/console/requests/{id}"), Some(&agency_cookie)),
        ("/console/queue".to_string(), Some(&agency_cookie)),
    ] {
        let mut b = client.get(s.url(&path));
        if let Some(c) = cookie {
            b = b.header("cookie", c.as_str());
        }
        let res = b.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let csp = header(&res, "content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("object-src 'none'"), "{path}: {csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{path}: {csp}"
        );
        assert_eq!(header(&res, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&res, "referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header(&res, "cache-control"), "no-store", "{path}");
        let set_cookie = header(&res, "set-cookie");
        if !set_cookie.is_empty() {
            assert!(
                set_cookie.contains("HttpOnly")
                    && set_cookie.contains("SameSite=Lax")
                    && set_cookie.contains("Secure"),
                "{path}: {set_cookie}"
            );
        }
        let html = res.text().await.unwrap();
        // Only script files of our own: no inline <script> body, no on…= handler.
        for (at, _) in html.match_indices("<script") {
            let tag = &html[at..at + html[at..].find('>').unwrap()];
            assert!(
                tag.contains("src=\"/static/"),
                "{path}: inline script {tag}"
            );
        }
        let lower = html.to_lowercase();
        for handler in [
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!lower.contains(handler), "{path}: {handler}");
        }
    }

    // The session cookie of a page login.
    let seed = client.get(s.url("/login")).send().await.unwrap();
    let seed_cookie = header(&seed, "set-cookie");
    let seed_value = seed_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let res = page_login(&client, &s, &seed_value, "provider").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = header(&res, "set-cookie");
    assert!(
        session.starts_with(&format!("__Host-{}", ekey_server::auth::SESSION_COOKIE))
            && session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Secure"),
        "{session}"
    );

    // JSON answers may load and run nothing and be framed by nobody.
    let res = client
        .get(s.url("/api/v1/me"))
        .bearer_auth(&ent)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&res, "content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");

    // An uploaded scan: a download with its judged type; the preview is inline only for
    // an image or a PDF and runs nothing.
    let url = s.url(&format!("/api/v1/requests/{id}/materials/id_card"));
    let res = client.get(&url).bearer_auth(&ent).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type"), "image/png");
    assert!(
        header(&res, "content-disposition").starts_with("attachment;"),
        "{}",
        header(&res, "content-disposition")
    );
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    let res = client
        .get(format!("{url}?inline=true"))
        .bearer_auth(&ent)
        .send()
        .await
        .unwrap();
    assert!(header(&res, "content-disposition").starts_with("inline;"));
    let csp = header(&res, "content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'self'"),
        "{csp}"
    );
    // The console's preview uses the inline form; nothing links to the bare download
    // inline.
    let page = client
        .get(s.url(&format!("/console/requests/{id}")))
        .header("cookie", agency_cookie.as_str())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("/materials/id_card?preview=true"),
        "the console previews the scan (a picture the server made of it)"
    );

    // A form with a NUL character is refused as such (PostgreSQL cannot store one).
    let res = page_login(&client, &s, &seed_value, "provider%00").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("ekey.input.nul"));
    s.stop().await;
}

on_both_databases!(every_answer_carries_the_security_headers);

//! Origin rules, CORS, pairing, and the key calls.

use axum::http::{Method, StatusCode};
use ekey_agent::Confirmation;
use ekey_domain::keyproof;
use ekey_token::Token;

use crate::support::*;

#[tokio::test]
async fn status_without_origin_everything_else_only_from_the_portal() {
    let s = Setup::new();
    // curl diagnostics: /status answers without any Origin.
    let r = call(&s.agent, Method::GET, "/status", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["agent"], "ekey-agent");
    assert_eq!(r.json["origin"], ORIGIN);
    assert_eq!(r.json["paired"], false);
    assert!(r.json["version"].is_string());
    assert!(r.headers.get("access-control-allow-origin").is_none());

    // Anything else needs the portal's Origin.
    for (method, path) in [
        (Method::GET, "/keys"),
        (Method::POST, "/pairings"),
        (Method::POST, "/keys/EK0001/unlock-challenge"),
    ] {
        let r = call(&s.agent, method.clone(), path, &[], None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(r.json["code"], "ekey.agent.origin");
        assert!(r.json["message"].as_str().unwrap().contains("电子钥匙助手"));
    }
    // Another site, even for /status, is refused and gets no CORS header.
    for origin in ["https://evil.example", "http://portal.test:8081", "null"] {
        let r = call(
            &s.agent,
            Method::GET,
            "/status",
            &[("origin", origin)],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(r.json["code"], "ekey.agent.origin");
        assert!(r.headers.get("access-control-allow-origin").is_none());
    }
    // The portal gets its origin back, with Vary.
    let r = call(
        &s.agent,
        Method::GET,
        "/status",
        &[("origin", ORIGIN)],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["access-control-allow-origin"], ORIGIN);
    assert_eq!(r.headers["vary"], "Origin");
    // A page of another site whose name was rebound to 127.0.0.1 is refused by name.
    let r = call(
        &s.agent,
        Method::GET,
        "/status",
        &[("host", "evil.example:17480")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json["code"], "ekey.agent.host");
    let r = call(
        &s.agent,
        Method::GET,
        "/status",
        &[("host", "127.0.0.1:17480")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn preflight_allows_the_portal_and_the_private_network() {
    let s = Setup::new();
    let r = call(
        &s.agent,
        Method::OPTIONS,
        "/keys/EK0001/login-signature",
        &[
            ("origin", ORIGIN),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,x-ekey-pairing",
            ),
            ("access-control-request-private-network", "true"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let h = &r.headers;
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(
        h["access-control-allow-headers"],
        "Content-Type, X-Ekey-Pairing"
    );
    assert_eq!(h["access-control-allow-private-network"], "true");
    assert_eq!(h["vary"], "Origin");

    let r = call(
        &s.agent,
        Method::OPTIONS,
        "/keys",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert!(
        r.headers
            .get("access-control-allow-private-network")
            .is_none()
    );
}

#[tokio::test]
async fn pairing_needs_the_code_typed_at_the_terminal_and_survives_a_restart() {
    let s = Setup::new();
    let o = [("origin", ORIGIN)];

    // Unpaired: refused, in Chinese or English.
    let r = call(&s.agent, Method::GET, "/keys", &o, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["code"], "ekey.agent.not_paired");
    assert!(r.json["message"].as_str().unwrap().contains("配对"));
    let r = call(
        &s.agent,
        Method::GET,
        "/keys",
        &[("origin", ORIGIN), ("accept-language", "en-GB,en;q=0.8")],
        None,
    )
    .await;
    assert!(r.json["message"].as_str().unwrap().contains("not paired"));

    let r = call(&s.agent, Method::POST, "/pairings", &o, None).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.headers["access-control-allow-origin"], ORIGIN);
    let id = r.json["id"].as_str().unwrap().to_string();
    let code = r.json["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 6);
    let poll = format!("/pairings/{id}");
    let r = call(&s.agent, Method::GET, &poll, &o, None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.json["state"], "pending");
    assert!(r.json.get("secret").is_none());

    // A wrong line typed at the terminal confirms nothing.
    let wrong = if code == "111111" { "222222" } else { "111111" };
    assert_eq!(s.agent.confirm_pairing(wrong), Confirmation::NoMatch);
    let r = call(&s.agent, Method::GET, &poll, &o, None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    // The right code: the page gets the secret, once.
    assert_eq!(
        s.agent.confirm_pairing(&format!("{code}\n")),
        Confirmation::Confirmed
    );
    let r = call(&s.agent, Method::GET, &poll, &o, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["state"], "paired");
    let secret = r.json["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 43, "32 bytes, base64url without padding");
    let r = call(&s.agent, Method::GET, &poll, &o, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["code"], "ekey.agent.pairing_unknown");

    // Paired calls are accepted; a wrong secret is not.
    let paired = [("origin", ORIGIN), ("x-ekey-pairing", secret.as_str())];
    let r = call(&s.agent, Method::GET, "/keys", &paired, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    assert_eq!(r.headers["access-control-allow-origin"], ORIGIN);
    let r = call(&s.agent, Method::GET, "/status", &paired, None).await;
    assert_eq!(r.json["paired"], true);
    let r = call(
        &s.agent,
        Method::GET,
        "/keys",
        &[("origin", ORIGIN), ("x-ekey-pairing", "not-the-secret")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["code"], "ekey.agent.not_paired");

    // The secret is kept hashed only.
    let file = std::fs::read_to_string(s.state_dir.join("pairings.json")).unwrap();
    assert!(!file.contains(&secret));
    assert!(file.contains(ORIGIN));

    // A new agent with the same state directory knows the pairing.
    let again = agent(&s.token_dir, &s.state_dir, "http://127.0.0.1:9");
    let r = call(&again, Method::GET, "/keys", &paired, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
}

#[tokio::test]
async fn keys_list_what_is_inserted_now() {
    let s = Setup::new();
    let secret = s.pair().await;
    let h = [("origin", ORIGIN), ("x-ekey-pairing", secret.as_str())];

    let r = call(&s.agent, Method::GET, "/keys", &h, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let keys = r.json.as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    let cert = active_certificate(&s.token);
    assert_eq!(k["serial"], "EK0001");
    assert_eq!(k["label"], "Key EK0001");
    assert_eq!(k["locked"], false);
    assert_eq!(k["pin_tries_left"], 6);
    assert_eq!(b64(&k["certificate"]), cert);
    assert_eq!(k["certificate_serial"], serial_of(&cert));
    assert!(k["subject"].as_str().unwrap().contains(ENTERPRISE));
    assert!(k["subject"].as_str().unwrap().contains(CREDIT_CODE));
    assert!(k["not_after"].as_str().unwrap().ends_with('Z'));
    assert_eq!(k["renewal_in_progress"], false);

    // A key "plugged in" later appears; one with a renewal under way says so.
    let second = make_token(&s.ca, &s.token_dir.join("b.token"), "EK0002");
    second.generate_key(PIN, "renew-9").unwrap();
    std::fs::write(s.token_dir.join("notes.txt"), "not a token").unwrap();
    let r = call(&s.agent, Method::GET, "/keys", &h, None).await;
    let keys = r.json.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1]["serial"], "EK0002");
    assert_eq!(keys[1]["renewal_in_progress"], true);
}

#[tokio::test]
async fn login_signature_verifies_and_a_wrong_pin_counts() {
    let s = Setup::new();
    let secret = s.pair().await;
    let h = [("origin", ORIGIN), ("x-ekey-pairing", secret.as_str())];
    let challenge = "q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng";

    let r = call(
        &s.agent,
        Method::POST,
        "/keys/EK0001/login-signature",
        &h,
        Some(serde_json::json!({ "challenge": challenge, "pin": PIN })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    let cert = b64(&r.json["certificate"]);
    assert_eq!(cert, active_certificate(&s.token));
    let sig = b64(&r.json["signature"]);
    assert!(verify(
        &cert,
        &keyproof::login_message(ORIGIN, challenge),
        &sig
    ));
    assert!(!verify(
        &cert,
        &keyproof::login_message("https://evil.example", challenge),
        &sig
    ));

    // Wrong PIN: the token's code, the tries left, in Chinese by default …
    let r = call(
        &s.agent,
        Method::POST,
        "/keys/EK0001/login-signature",
        &h,
        Some(serde_json::json!({ "challenge": challenge, "pin": "87654321" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json["code"], "ekey.token.pin_incorrect");
    assert_eq!(r.json["tries_left"], 5);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("还可尝试 5 次")
    );
    // … English when asked.
    let r = call(
        &s.agent,
        Method::POST,
        "/keys/EK0001/login-signature",
        &[
            ("origin", ORIGIN),
            ("x-ekey-pairing", secret.as_str()),
            ("accept-language", "en"),
        ],
        Some(serde_json::json!({ "challenge": challenge, "pin": "87654321" })),
    )
    .await;
    assert_eq!(r.json["code"], "ekey.token.pin_incorrect");
    assert_eq!(r.json["tries_left"], 4);
    assert!(r.json["message"].as_str().unwrap().contains("4 tries left"));
    assert_eq!(s.token.status().unwrap().pin_tries_left, 4);

    // An unknown key, a malformed body, a body too large.
    let r = call(
        &s.agent,
        Method::POST,
        "/keys/NOPE/login-signature",
        &h,
        Some(serde_json::json!({ "challenge": challenge, "pin": PIN })),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["code"], "ekey.token.not_found");
    let router = ekey_agent::router(s.agent.clone());
    let r = call_raw(
        &router,
        Method::POST,
        "/keys/EK0001/login-signature",
        &h,
        Some(b"{\"challenge\": 1}".to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["code"], "ekey.agent.bad_request");
    let big = serde_json::to_vec(&serde_json::json!({
        "challenge": "x".repeat(100 * 1024), "pin": PIN
    }))
    .unwrap();
    let r = call_raw(
        &router,
        Method::POST,
        "/keys/EK0001/login-signature",
        &h,
        Some(big),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json["code"], "ekey.agent.too_large");
    let r = call(&s.agent, Method::GET, "/nothing", &h, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["code"], "ekey.agent.not_found");
}

#[tokio::test]
async fn unlock_applies_the_code_and_proves_the_new_pin() {
    let s = Setup::new();
    let secret = s.pair().await;
    let h = [("origin", ORIGIN), ("x-ekey-pairing", secret.as_str())];
    for _ in 0..6 {
        let _ = s.token.sign("00000000", "sign", b"x");
    }
    assert!(s.token.status().unwrap().locked);

    let r = call(
        &s.agent,
        Method::POST,
        "/keys/EK0001/unlock-challenge",
        &h,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    assert_eq!(r.json["serial"], "EK0001");
    let challenge = hex::decode(r.json["challenge"].as_str().unwrap()).unwrap();
    let code = ekey_token::admin::unlock_response(MASTER, "EK0001", &challenge).unwrap();

    let r = call(
        &s.agent,
        Method::POST,
        "/keys/EK0001/unlock",
        &h,
        Some(serde_json::json!({
            "code": code, "new_pin": "newpin99", "request_number": "JS-2026-0007"
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    let cert = b64(&r.json["certificate"]);
    assert!(verify(
        &cert,
        &keyproof::unlock_done_message("JS-2026-0007", "EK0001"),
        &b64(&r.json["signature"])
    ));
    let st = s.token.status().unwrap();
    assert!(!st.locked);
    assert_eq!(st.pin_tries_left, 6);

    // The code works once.
    let r = call(
        &s.agent,
        Method::POST,
        "/keys/EK0001/unlock",
        &h,
        Some(serde_json::json!({
            "code": code, "new_pin": "newpin99", "request_number": "JS-2026-0007"
        })),
    )
    .await;
    assert_eq!(r.json["code"], "ekey.token.unlock_invalid");
}

/// The agent offers the PIN change the key's page advises at first use (issue 16 item 15):
/// the current PIN, then the new one; a wrong current PIN is refused and counted.
#[tokio::test]
async fn the_pin_can_be_changed_through_the_agent() {
    let s = Setup::new();
    let secret = s.pair().await;
    let h = [("origin", ORIGIN), ("x-ekey-pairing", secret.as_str())];
    let r = call(
        &s.agent,
        Method::POST,
        "/keys/EK0001/pin",
        &h,
        Some(serde_json::json!({ "pin": "87654321", "new_pin": "Neu-2026-pin" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.json);
    assert_eq!(r.json["code"], "ekey.token.pin_incorrect");
    let r = call(
        &s.agent,
        Method::POST,
        "/keys/EK0001/pin",
        &h,
        Some(serde_json::json!({ "pin": PIN, "new_pin": "Neu-2026-pin" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    assert_eq!(r.json["changed"], true);
    // The key signs with the new PIN only.
    let t = ekey_token::SoftToken::open(s.token_dir.join("a.token")).unwrap();
    t.sign("Neu-2026-pin", "sign", b"x").unwrap();
    assert!(t.sign(PIN, "sign", b"x").is_err());
    // Not without the pairing.
    let r = call(
        &s.agent,
        Method::POST,
        "/keys/EK0001/pin",
        &[("origin", ORIGIN)],
        Some(serde_json::json!({ "pin": "Neu-2026-pin", "new_pin": "Other-2026" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

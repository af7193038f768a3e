//! The renewal client against the stand-in server: a whole run through the agent, a wrong
//! PIN that changes nothing, and runs interrupted at the server that the next run finishes.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use ekey_agent::{RenewParams, renew};
use ekey_domain::Lang;
use ekey_token::Token;

use crate::mock_server::{self, Mock, REQUEST_ID};
use crate::support::*;

async fn setup() -> (Setup, Arc<Mock>, String) {
    let mut s = Setup::new();
    let (url, mock) = mock_server::start(ORIGIN, active_certificate(&s.token)).await;
    s.agent = agent(&s.token_dir, &s.state_dir, &url);
    (s, mock, url)
}

fn params(url: &str) -> RenewParams {
    RenewParams {
        server: url.into(),
        origin: ORIGIN.into(),
        request_id: None,
        lang: Lang::Zh,
    }
}

fn containers(t: &dyn Token) -> Vec<String> {
    t.status()
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect()
}

#[tokio::test]
async fn renewal_through_the_agent_replaces_key_and_certificate() {
    let (s, mock, url) = setup().await;
    let secret = s.pair().await;
    let h = [("origin", ORIGIN), ("x-ekey-pairing", secret.as_str())];
    let old_cert = active_certificate(&s.token);
    let old_spki = s.token.status().unwrap().containers[0]
        .public_key_spki
        .clone();

    let r = call(
        &s.agent,
        Method::POST,
        "/keys/EK0001/renewal",
        &h,
        Some(serde_json::json!({ "pin": PIN })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    assert_eq!(r.json["state"], "confirmed");
    assert_eq!(r.json["old_serial"], serial_of(&old_cert));
    let new_cert = active_certificate(&s.token);
    assert_eq!(r.json["new_serial"], serial_of(&new_cert));
    assert_ne!(new_cert, old_cert);

    // The key now holds only `sign`, with a new key pair and the issued certificate.
    assert_eq!(containers(&s.token), ["sign"]);
    let st = s.token.status().unwrap();
    assert_ne!(st.containers[0].public_key_spki, old_spki);
    assert_eq!(st.pin_tries_left, 6);
    {
        let m = mock.state.lock().unwrap();
        assert_eq!(m.state, "confirmed");
        assert_eq!(m.issued.as_deref(), Some(new_cert.as_slice()));
        assert_eq!(m.certificate_requests, 1);
        assert!(m.old_revoked);
    }
    let r = call(&s.agent, Method::GET, "/keys", &h, None).await;
    assert_eq!(r.json[0]["certificate_serial"], serial_of(&new_cert));
    assert_eq!(r.json[0]["renewal_in_progress"], false);

    // A second run finds the renewal done and answers the same.
    let again = renew(Arc::new(s.token.clone()), PIN, &params(&url))
        .await
        .unwrap();
    assert_eq!(again.new_serial, serial_of(&new_cert));
    assert_eq!(again.old_serial, serial_of(&old_cert));
    assert_eq!(active_certificate(&s.token), new_cert);
    assert_eq!(mock.state.lock().unwrap().certificate_requests, 1);
}

#[tokio::test]
async fn a_wrong_pin_stops_before_any_change() {
    let (s, mock, url) = setup().await;
    let e = renew(Arc::new(s.token.clone()), "87654321", &params(&url))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ekey.token.pin_incorrect");
    assert_eq!(e.tries_left(), Some(5));
    assert_eq!(containers(&s.token), ["sign"]);
    let m = mock.state.lock().unwrap();
    assert_eq!(m.certificate_requests, 0);
    assert_eq!(m.state, "approved");
}

#[tokio::test]
async fn server_errors_keep_their_code() {
    let (s, _mock, url) = setup().await;
    let mut p = params(&url);
    p.request_id = Some("8".into());
    let e = renew(Arc::new(s.token.clone()), PIN, &p).await.unwrap_err();
    assert_eq!(e.code(), "ekey.agent.no_renewal");

    // A key the server does not know: its refusal is passed on with its code.
    let other = make_token(&s.ca, &s.dir.path().join("other.token"), "EK0009");
    let e = renew(Arc::new(other), PIN, &params(&url))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ekey.keylogin.certificate_unknown");
    assert_eq!(e.status(), StatusCode::UNAUTHORIZED);

    // Nobody there.
    let e = renew(
        Arc::new(s.token.clone()),
        PIN,
        &params("http://127.0.0.1:9"),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "ekey.agent.server_unreachable");
}

#[tokio::test]
async fn a_run_resumes_with_the_key_pair_generated_earlier() {
    let (s, mock, url) = setup().await;
    // As if an earlier run stopped right after generating the new key pair.
    let pending = format!("renew-{REQUEST_ID}");
    let spki = s.token.generate_key(PIN, &pending).unwrap();

    let out = renew(Arc::new(s.token.clone()), PIN, &params(&url))
        .await
        .unwrap();
    let st = s.token.status().unwrap();
    assert_eq!(containers(&s.token), ["sign"]);
    assert_eq!(st.containers[0].public_key_spki.as_ref(), Some(&spki));
    assert_eq!(out.new_serial, serial_of(&active_certificate(&s.token)));
    assert_eq!(mock.state.lock().unwrap().state, "confirmed");
}

#[tokio::test]
async fn a_lost_certificate_answer_is_asked_again_and_the_same_certificate_comes_back() {
    let (s, mock, url) = setup().await;
    mock.state.lock().unwrap().fail_after_issue_once = true;
    let e = renew(Arc::new(s.token.clone()), PIN, &params(&url))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ekey.internal");
    assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
    let issued = mock.state.lock().unwrap().issued.clone().unwrap();
    // The old key still works; the new key pair waits in its container.
    assert_eq!(containers(&s.token), ["renew-7", "sign"]);
    assert_ne!(active_certificate(&s.token), issued);

    let out = renew(Arc::new(s.token.clone()), PIN, &params(&url))
        .await
        .unwrap();
    assert_eq!(active_certificate(&s.token), issued);
    assert_eq!(out.new_serial, serial_of(&issued));
    let m = mock.state.lock().unwrap();
    assert_eq!(m.certificate_requests, 2);
    assert_eq!(m.state, "confirmed");
}

#[tokio::test]
async fn a_failed_confirmation_is_sent_again_with_the_new_key() {
    let (s, mock, url) = setup().await;
    let old = active_certificate(&s.token);
    mock.state.lock().unwrap().fail_confirm_once = true;
    let e = renew(Arc::new(s.token.clone()), PIN, &params(&url))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ekey.unavailable");
    // Promoted already: the key signs with the new certificate.
    let new = active_certificate(&s.token);
    assert_ne!(new, old);
    assert_eq!(containers(&s.token), ["sign"]);
    assert_eq!(mock.state.lock().unwrap().state, "issued");

    // The next run logs in with the new certificate and only confirms.
    let out = renew(Arc::new(s.token.clone()), PIN, &params(&url))
        .await
        .unwrap();
    assert_eq!(out.new_serial, serial_of(&new));
    assert_eq!(out.old_serial, serial_of(&old));
    let m = mock.state.lock().unwrap();
    assert_eq!(m.state, "confirmed");
    assert_eq!(m.certificate_requests, 1);
    assert_eq!(m.confirms, 1);
}

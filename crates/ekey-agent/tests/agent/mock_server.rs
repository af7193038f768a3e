//! A stand-in for the eKey server's key login and renewal API (docs/agent.md, "Server
//! API"), with one key and one approved renewal, checking every signature the way the
//! server does. Faults can be switched on to interrupt a run.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ekey_domain::keyproof;
use serde_json::{Value, json};
use x509_parser::prelude::FromDer;

use crate::support::{TestCa, serial_of, subject, verify};

pub const REQUEST_ID: &str = "7";
pub const NUMBER: &str = "GX-2026-0007";

#[derive(Default)]
pub struct MockState {
    challenges: HashMap<String, String>,
    sessions: HashSet<String>,
    /// Certificates that may log in (the key's current one; the new one once issued).
    pub login_certs: Vec<Vec<u8>>,
    /// The certificate of the key when the renewal was approved.
    pub old_cert: Vec<u8>,
    /// The certificate issued for the renewal.
    pub issued: Option<Vec<u8>>,
    /// `approved` → `issued` → `confirmed`.
    pub state: String,
    pub old_revoked: bool,
    /// Certificate requests received.
    pub certificate_requests: usize,
    pub confirms: usize,
    /// Faults: answer 500 once after issuing; answer 503 once instead of confirming.
    pub fail_after_issue_once: bool,
    pub fail_confirm_once: bool,
}

pub struct Mock {
    pub origin: String,
    ca: TestCa,
    pub state: Mutex<MockState>,
}

type S = State<Arc<Mock>>;

fn err(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({ "code": code, "message": format!("mock: {code}") })),
    )
        .into_response()
}

fn b64(v: &Value) -> Option<Vec<u8>> {
    STANDARD.decode(v.as_str()?).ok()
}

fn authorized(m: &Mock, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| m.state.lock().unwrap().sessions.contains(t))
}

async fn challenge(State(m): S) -> Response {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let challenge = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    m.state
        .lock()
        .unwrap()
        .challenges
        .insert(id.clone(), challenge.clone());
    (
        StatusCode::CREATED,
        Json(json!({ "id": id, "challenge": challenge, "expires_at": "2099-01-01T00:00:00Z" })),
    )
        .into_response()
}

async fn key_login(State(m): S, Json(body): Json<Value>) -> Response {
    let mut st = m.state.lock().unwrap();
    let Some(challenge) = body["challenge_id"]
        .as_str()
        .and_then(|id| st.challenges.remove(id))
    else {
        return err(StatusCode::UNAUTHORIZED, "ekey.keylogin.challenge_invalid");
    };
    let Some(cert) = b64(&body["certificate"]) else {
        return err(StatusCode::BAD_REQUEST, "mock.bad_request");
    };
    if !st.login_certs.contains(&cert) {
        return err(
            StatusCode::UNAUTHORIZED,
            "ekey.keylogin.certificate_unknown",
        );
    }
    let sig = b64(&body["signature"]).unwrap_or_default();
    if !verify(&cert, &keyproof::login_message(&m.origin, &challenge), &sig) {
        return err(StatusCode::UNAUTHORIZED, "ekey.keylogin.signature_invalid");
    }
    let token = hex::encode(rand::random::<[u8; 16]>());
    st.sessions.insert(token.clone());
    Json(json!({
        "token": token, "role": "enterprise", "key_id": "k1",
        "certificate_serial": serial_of(&cert),
    }))
    .into_response()
}

async fn renewals(State(m): S, headers: HeaderMap) -> Response {
    if !authorized(&m, &headers) {
        return err(StatusCode::UNAUTHORIZED, "ekey.auth.unauthenticated");
    }
    let st = m.state.lock().unwrap();
    Json(json!([{
        "request_id": REQUEST_ID, "number": NUMBER, "key_id": "k1", "login_name": "demo",
        "old_serial": serial_of(&st.old_cert),
        "new_serial": st.issued.as_deref().map(serial_of),
        "state": st.state, "expires_at": "2099-01-01T00:00:00Z",
    }]))
    .into_response()
}

fn csr_key(csr: &[u8]) -> Option<Vec<u8>> {
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(csr).ok()?;
    Some(
        req.certification_request_info
            .subject_pki
            .subject_public_key
            .data
            .to_vec(),
    )
}

fn cert_key(cert: &[u8]) -> Vec<u8> {
    ekey_agent::cert::parse(cert).unwrap().public_key
}

async fn certificate(
    State(m): S,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&m, &headers) {
        return err(StatusCode::UNAUTHORIZED, "ekey.auth.unauthenticated");
    }
    let mut st = m.state.lock().unwrap();
    st.certificate_requests += 1;
    if id != REQUEST_ID || st.state == "confirmed" {
        return err(StatusCode::CONFLICT, "ekey.renewal.not_approved");
    }
    let (Some(csr), Some(counter)) = (b64(&body["csr"]), b64(&body["countersignature"])) else {
        return err(StatusCode::BAD_REQUEST, "mock.bad_request");
    };
    if !verify(
        &st.old_cert,
        &keyproof::renewal_countersign_message(NUMBER, &csr),
        &counter,
    ) {
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.renewal.countersignature_invalid",
        );
    }
    let Some(key) = csr_key(&csr) else {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "ekey.ca.csr_invalid");
    };
    let cert = match &st.issued {
        Some(issued) if cert_key(issued) == key => issued.clone(),
        Some(_) => return err(StatusCode::CONFLICT, "ekey.renewal.other_key"),
        None => {
            let cert = m.ca.issue(&csr);
            let parsed = ekey_agent::cert::parse(&cert).unwrap();
            if parsed.csr_subject != subject() {
                return err(StatusCode::UNPROCESSABLE_ENTITY, "ekey.ca.csr_subject");
            }
            st.issued = Some(cert.clone());
            st.login_certs.push(cert.clone());
            st.state = "issued".into();
            if st.fail_after_issue_once {
                st.fail_after_issue_once = false;
                return err(StatusCode::INTERNAL_SERVER_ERROR, "ekey.internal");
            }
            cert
        }
    };
    Json(json!({
        "certificate": STANDARD.encode(&cert), "serial": serial_of(&cert),
        "not_after": "2099-01-01T00:00:00Z",
    }))
    .into_response()
}

async fn confirm(
    State(m): S,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&m, &headers) {
        return err(StatusCode::UNAUTHORIZED, "ekey.auth.unauthenticated");
    }
    let mut st = m.state.lock().unwrap();
    if id != REQUEST_ID {
        return err(StatusCode::NOT_FOUND, "ekey.request.not_found");
    }
    let Some(issued) = st.issued.clone() else {
        return err(StatusCode::CONFLICT, "ekey.renewal.not_issued");
    };
    let new_serial = serial_of(&issued);
    let sig = b64(&body["signature"]).unwrap_or_default();
    if !verify(
        &issued,
        &keyproof::renewal_confirm_message(NUMBER, &new_serial),
        &sig,
    ) {
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.renewal.confirmation_invalid",
        );
    }
    if st.fail_confirm_once {
        st.fail_confirm_once = false;
        return err(StatusCode::SERVICE_UNAVAILABLE, "ekey.unavailable");
    }
    st.confirms += 1;
    st.state = "confirmed".into();
    st.old_revoked = true;
    let old = st.old_cert.clone();
    st.login_certs.retain(|c| *c != old);
    Json(json!({
        "state": "confirmed", "old_serial": serial_of(&old), "new_serial": new_serial,
        "old_revoked": true,
    }))
    .into_response()
}

/// Starts the stand-in on 127.0.0.1 for a key whose certificate is `cert`; returns its
/// URL and its state.
pub async fn start(origin: &str, cert: Vec<u8>) -> (String, Arc<Mock>) {
    let mock = Arc::new(Mock {
        origin: origin.into(),
        ca: TestCa::new(),
        state: Mutex::new(MockState {
            login_certs: vec![cert.clone()],
            old_cert: cert,
            state: "approved".into(),
            ..MockState::default()
        }),
    });
    let app = Router::new()
        .route("/api/v1/key-login/challenges", post(challenge))
        .route("/api/v1/key-login", post(key_login))
        .route("/api/v1/renewals", get(renewals))
        .route("/api/v1/renewals/{id}/certificate", post(certificate))
        .route("/api/v1/renewals/{id}/confirm", post(confirm))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, mock)
}

//! The local agent (`ekey_agent`, on 127.0.0.1 like on a user's machine) against a real
//! server: certificate login (replays refused), a locked key unlocked with the mailed code,
//! and an online renewal — all through the agent's HTTP API as the portal's pages call it.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ekey_agent::{Agent, Config as AgentConfig, TokenSource};
use ekey_testkit::scenario::{self, Portal};
use ekey_token::Token;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// An agent serving the server's software tokens, paired like a page would pair it.
pub struct RunningAgent {
    pub base: String,
    pub origin: String,
    pub agent: Agent,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    secret: String,
    client: reqwest::Client,
    _state: Option<tempfile::TempDir>,
}

/// A listener for an agent, bound before the server starts (the pages must know where
/// the agent is).
pub async fn agent_listener() -> (tokio::net::TcpListener, String) {
    let listener = ekey_agent::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

impl RunningAgent {
    /// On a port of its own, paired through the API.
    pub async fn start(s: &TestServer) -> RunningAgent {
        let (listener, _) = agent_listener().await;
        let state = tempfile::tempdir().unwrap();
        let mut a = Self::start_on(listener, s, &s.base, state.path()).await;
        a._state = Some(state);
        a.pair().await;
        a
    }

    /// On `listener`, talking to the server at `server` (the portal's origin stays the
    /// test server's), with pairings kept in `state`; not paired yet.
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        s: &TestServer,
        server: &str,
        state: &std::path::Path,
    ) -> RunningAgent {
        let sources = vec![TokenSource::Dir(s.data_dir.join("tokens"))];
        Self::start_with_sources(listener, s, server, state, sources).await
    }

    /// On a port of its own with these key sources (e.g. a PKCS#11 token), paired.
    pub async fn start_paired_with(s: &TestServer, sources: Vec<TokenSource>) -> RunningAgent {
        let (listener, _) = agent_listener().await;
        let state = tempfile::tempdir().unwrap();
        let mut a = Self::start_with_sources(listener, s, &s.base, state.path(), sources).await;
        a._state = Some(state);
        a.pair().await;
        a
    }

    async fn start_with_sources(
        listener: tokio::net::TcpListener,
        s: &TestServer,
        server: &str,
        state: &std::path::Path,
        sources: Vec<TokenSource>,
    ) -> RunningAgent {
        let agent = Agent::new(AgentConfig {
            origin: s.base.clone(),
            server: server.to_string(),
            sources,
            state_dir: state.to_path_buf(),
        })
        .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(ekey_agent::serve(
            agent.clone(),
            listener,
            std::future::pending(),
        ));
        RunningAgent {
            base,
            origin: s.base.clone(),
            agent,
            task,
            secret: String::new(),
            client: reqwest::Client::new(),
            _state: None,
        }
    }

    /// Stops it as if its process died: the listener closes, nothing more is answered.
    pub fn kill(self) -> std::net::SocketAddr {
        self.task.abort();
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    async fn pair(&mut self) {
        // Pairing: the page asks, the user types the code shown into the agent's terminal.
        let (status, p) = self.call("POST", "/pairings", None).await;
        assert_eq!(status, StatusCode::CREATED, "{p}");
        let (status, _) = self
            .call(
                "GET",
                &format!("/pairings/{}", p["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "pending until confirmed");
        assert_eq!(
            self.agent.confirm_pairing(p["code"].as_str().unwrap()),
            ekey_agent::Confirmation::Confirmed
        );
        let (status, v) = self
            .call(
                "GET",
                &format!("/pairings/{}", p["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        self.secret = v["secret"].as_str().unwrap().to_string();
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut b = self
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.base),
            )
            .header("Origin", &self.origin);
        if !self.secret.is_empty() {
            b = b.header("X-Ekey-Pairing", &self.secret);
        }
        if let Some(body) = body {
            b = b.json(&body);
        }
        let res = b.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

pub fn soft_token(s: &TestServer, serial: &str) -> Arc<dyn Token> {
    Arc::new(
        ekey_token::SoftToken::open(s.data_dir.join("tokens").join(format!("{serial}.token")))
            .unwrap(),
    )
}

/// Challenge → agent signature → session, as the login page does it.
pub async fn key_login(
    s: &TestServer,
    agent: &RunningAgent,
    serial: &str,
    pin: &str,
) -> (StatusCode, Value) {
    let (status, c) = s
        .post("/api/v1/key-login/challenges", None, json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let (status, signed) = agent
        .call(
            "POST",
            &format!("/keys/{serial}/login-signature"),
            Some(json!({"challenge": c["challenge"], "pin": pin})),
        )
        .await;
    if status != StatusCode::OK {
        return (status, signed);
    }
    s.post(
        "/api/v1/key-login",
        None,
        json!({"challenge_id": c["id"], "certificate": signed["certificate"], "signature": signed["signature"]}),
    )
    .await
}

pub async fn certificates(s: &TestServer, provider: &str, q: &str) -> Vec<Value> {
    let (status, v) = s
        .get(&format!("/api/v1/certificates?q={q}"), Some(provider))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

pub async fn a_key_logs_in_through_the_agent_once_per_challenge(db: Db) {
    let s = TestServer::start(db).await;
    let key = scenario::active_key(&Portal::new(&s.base)).await.unwrap();
    let agent = RunningAgent::start(&s).await;

    // The agent lists the key with its certificate.
    let (status, keys) = agent.call("GET", "/keys", None).await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    let listed = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["serial"] == key.token_serial.as_str())
        .expect("the key is listed");
    assert_eq!(
        listed["certificate_serial"],
        key.certificate_serial.as_str()
    );
    assert_eq!(listed["locked"], false);

    let (status, session) = key_login(&s, &agent, &key.token_serial, &key.pin).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["role"], "enterprise");
    assert_eq!(session["key_id"], key.key_id.as_str());
    let token = session["token"].as_str().unwrap();
    let (status, mine) = s.get("/api/v1/keys", Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == key.key_id.as_str()),
        "the key session is the enterprise's"
    );

    // A challenge works once: the same signed answer again is refused.
    let (_, c) = s
        .post("/api/v1/key-login/challenges", None, json!({}))
        .await;
    let (_, signed) = agent
        .call(
            "POST",
            &format!("/keys/{}/login-signature", key.token_serial),
            Some(json!({"challenge": c["challenge"], "pin": key.pin})),
        )
        .await;
    let answer = json!({"challenge_id": c["id"], "certificate": signed["certificate"], "signature": signed["signature"]});
    let (status, _) = s.post("/api/v1/key-login", None, answer.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = s.post("/api/v1/key-login", None, answer).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["code"], "ekey.keylogin.challenge_invalid");
    assert!(v["message"].as_str().unwrap().contains("重新"), "{v}");

    // A signature made for another site does not log in here.
    let (_, c) = s
        .post("/api/v1/key-login/challenges", None, json!({}))
        .await;
    let t = soft_token(&s, &key.token_serial);
    let elsewhere = ekey_domain::keyproof::login_message(
        "https://phishing.example",
        c["challenge"].as_str().unwrap(),
    );
    let sig = t.sign(&key.pin, "sign", &elsewhere).unwrap();
    let (status, v) = s
        .post(
            "/api/v1/key-login",
            None,
            json!({"challenge_id": c["id"], "certificate": signed["certificate"],
                   "signature": STANDARD.encode(sig)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["code"], "ekey.keylogin.signature_invalid");

    // A challenge asked by one browser cannot be used by another.
    let res = s
        .client
        .post(s.url("/api/v1/key-login/challenges"))
        .header("Cookie", "ekey_seed=browser-one")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let c: Value = res.json().await.unwrap();
    let (_, signed) = agent
        .call(
            "POST",
            &format!("/keys/{}/login-signature", key.token_serial),
            Some(json!({"challenge": c["challenge"], "pin": key.pin})),
        )
        .await;
    let (status, v) = s
        .post(
            "/api/v1/key-login",
            None,
            json!({"challenge_id": c["id"], "certificate": signed["certificate"], "signature": signed["signature"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["code"], "ekey.keylogin.challenge_invalid");

    // A wrong PIN says how many tries are left, in the agent's answer.
    let (status, v) = key_login(&s, &agent, &key.token_serial, "000000").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.token.pin_incorrect");
    assert_eq!(v["tries_left"], 5);
    s.stop().await;
}

on_both_databases!(a_key_logs_in_through_the_agent_once_per_challenge);

pub async fn a_locked_key_is_unlocked_through_the_agent_with_the_mailed_code(db: Db) {
    let s = TestServer::start(db).await;
    let p = Portal::new(&s.base);
    let key = scenario::active_key(&p).await.unwrap();
    let agent = RunningAgent::start(&s).await;
    let ent = s.login("demo@ekey.example").await;
    let provider = s.login("provider").await;

    for left in (0..6).rev() {
        let (status, v) = key_login(&s, &agent, &key.token_serial, "999999").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["tries_left"], left);
    }
    let (_, v) = key_login(&s, &agent, &key.token_serial, &key.pin).await;
    assert_eq!(
        v["code"], "ekey.token.locked",
        "the right PIN no longer opens it: {v}"
    );

    // The unlock request carries the challenge the agent read from the key.
    let (status, c) = agent
        .call(
            "POST",
            &format!("/keys/{}/unlock-challenge", key.token_serial),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["serial"], key.token_serial.as_str());
    let id = p
        .request_under_review(
            &ent,
            json!({"kind": "unlock", "login_name": {"mode": "original", "value": key.login_name},
                   "authorised_user": person("unlock@example.com"), "unlock_challenge": c["challenge"]}),
            &["unlock_form", "business_licence"],
        )
        .await
        .unwrap();
    p.approve(&provider, &id).await.unwrap();
    let code = s.unlock_code("unlock@example.com").await;
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    let number = r["number"].as_str().unwrap().to_string();

    let (status, proof) = agent
        .call(
            "POST",
            &format!("/keys/{}/unlock", key.token_serial),
            Some(json!({"code": code, "new_pin": "New-pin-2026", "request_number": number})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/unlock-done"),
            Some(&ent),
            proof.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");

    // The code is dead; the new PIN logs in.
    let (status, v) = agent
        .call(
            "POST",
            &format!("/keys/{}/unlock", key.token_serial),
            Some(json!({"code": code, "new_pin": "Other-pin-2026", "request_number": number})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.token.unlock_invalid");
    let (status, v) = key_login(&s, &agent, &key.token_serial, "New-pin-2026").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    s.stop().await;
}

on_both_databases!(a_locked_key_is_unlocked_through_the_agent_with_the_mailed_code);

pub async fn a_key_renews_its_certificate_through_the_agent(db: Db) {
    let s = TestServer::start(db).await;
    let p = Portal::new(&s.base);
    let key = scenario::active_key(&p).await.unwrap();
    let provider = s.login("provider").await;
    let ent = s.login("demo@ekey.example").await;
    let (id, _number) = scenario::approved_renewal(&p, &key).await.unwrap();
    let agent = RunningAgent::start(&s).await;
    let before = certificates(&s, &provider, &key.login_name).await.len();

    // Logged in with the key, the renewal is offered.
    let (_, session) = key_login(&s, &agent, &key.token_serial, &key.pin).await;
    let (status, offered) = s.get("/api/v1/renewals", session["token"].as_str()).await;
    assert_eq!(status, StatusCode::OK, "{offered}");
    assert_eq!(offered[0]["request_id"], id.as_str());
    assert_eq!(offered[0]["state"], "approved");
    // A password session cannot run it: the key must log in.
    let (status, v) = s
        .post(
            &format!("/api/v1/renewals/{id}/certificate"),
            Some(&ent),
            json!({"csr": "AA==", "countersignature": "AA=="}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "ekey.renewal.key_session_required");

    let (status, done) = agent
        .call(
            "POST",
            &format!("/keys/{}/renewal", key.token_serial),
            Some(json!({"pin": key.pin})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["state"], "confirmed");
    assert_eq!(done["old_serial"], key.certificate_serial.as_str());
    let new_serial = done["new_serial"].as_str().unwrap().to_string();
    assert_ne!(new_serial, key.certificate_serial);

    // The key holds exactly the new certificate and signs with it; the server agrees.
    let t = soft_token(&s, &key.token_serial);
    let status_after = t.status().unwrap();
    let names: Vec<_> = status_after
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["sign"], "no pending container left");
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    let k = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key.key_id.as_str())
        .unwrap();
    assert_eq!(k["certificate_serial"], new_serial.as_str());
    assert_eq!(k["state"], "active");
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["status"], "completed");
    let certs = certificates(&s, &provider, &key.login_name).await;
    assert_eq!(certs.len(), before + 1, "one new certificate: {certs:?}");
    let old = certs
        .iter()
        .find(|c| c["serial"] == key.certificate_serial.as_str())
        .unwrap();
    assert_eq!(old["revocation_reason"], "superseded");
    let (status, v) = key_login(&s, &agent, &key.token_serial, &key.pin).await;
    assert_eq!(status, StatusCode::OK, "the new certificate logs in: {v}");
    assert_eq!(v["certificate_serial"], new_serial.as_str());

    // Running it again changes nothing and issues nothing.
    let (status, again) = agent
        .call(
            "POST",
            &format!("/keys/{}/renewal", key.token_serial),
            Some(json!({"pin": key.pin, "request_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["new_serial"], new_serial.as_str());
    assert_eq!(
        certificates(&s, &provider, &key.login_name).await.len(),
        before + 1
    );
    s.stop().await;
}

on_both_databases!(a_key_renews_its_certificate_through_the_agent);

pub async fn with_supersede_at_expiry_the_old_certificate_lives_until_the_record_expires(db: Db) {
    let s = TestServer::start_with(db, default_start(), |c| {
        c.renewal_supersede = "expiry".into();
        c.renewal_ttl_days = 10;
        c.reminder_poll_ms = 50;
    })
    .await;
    let p = Portal::new(&s.base);
    let key = scenario::active_key(&p).await.unwrap();
    let provider = s.login("provider").await;
    scenario::approved_renewal(&p, &key).await.unwrap();
    let agent = RunningAgent::start(&s).await;
    let (status, done) = agent
        .call(
            "POST",
            &format!("/keys/{}/renewal", key.token_serial),
            Some(json!({"pin": key.pin})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["state"], "confirmed", "{done}");
    let old = |certs: &[Value]| {
        certs
            .iter()
            .find(|c| c["serial"] == key.certificate_serial.as_str())
            .cloned()
            .unwrap()
    };
    let certs = certificates(&s, &provider, &key.login_name).await;
    assert!(
        old(&certs)["revoked_at"].is_null(),
        "still valid after the confirmation"
    );
    // Past the record's expiry the background worker revokes it as superseded.
    s.clock.advance(chrono::Duration::days(11));
    let provider = s.login("provider").await;
    for _ in 0..100 {
        let certs = certificates(&s, &provider, &key.login_name).await;
        if old(&certs)["revocation_reason"] == "superseded" {
            s.stop().await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the old certificate was not superseded at the renewal record's expiry");
}

on_both_databases!(with_supersede_at_expiry_the_old_certificate_lives_until_the_record_expires);

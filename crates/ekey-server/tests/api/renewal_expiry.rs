//! A renewal that runs out never bricks the key: issued but never confirmed, the renewal's
//! new certificate (never installed) is revoked at the record's expiry, the key keeps its
//! valid certificate and still logs in, the portal stops offering the renewal, and the
//! enterprise can apply again and renew. Time moves on the server's clock only.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ekey_domain::keyproof;
use ekey_testkit::scenario::{self, Portal};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::agent::{RunningAgent, certificates, key_login, soft_token};
use crate::pages::PageClient;
use crate::support::*;

async fn request_status(s: &TestServer, token: &str, id: &str) -> Value {
    let (status, v) = s.get(&format!("/api/v1/requests/{id}"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// Waits for the background worker to expire request `id`.
async fn wait_expired(s: &TestServer, token: &str, id: &str) -> Value {
    for _ in 0..200 {
        let v = request_status(s, token, id).await;
        if v["status"] == "expired" {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("renewal {id} never expired");
}

pub async fn an_unconfirmed_renewal_that_expires_leaves_the_key_working(db: Db) {
    let s = TestServer::start_with(db, default_start(), |c| {
        c.renewal_ttl_days = 10;
        c.reminder_poll_ms = 50;
    })
    .await;
    let p = Portal::new(&s.base);
    let key = scenario::active_key(&p).await.unwrap();
    let (id, number) = scenario::approved_renewal(&p, &key).await.unwrap();
    let agent = RunningAgent::start(&s).await;

    // The key starts the renewal: a new key pair, its certificate issued — and then the
    // key goes away before it installs and confirms it.
    let (status, session) = key_login(&s, &agent, &key.token_serial, &key.pin).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let session = session["token"].as_str().unwrap().to_string();
    let t = soft_token(&s, &key.token_serial);
    let pending = format!("renew-{id}");
    t.generate_key(&key.pin, &pending).unwrap();
    let active = t
        .status()
        .unwrap()
        .containers
        .into_iter()
        .find(|c| c.name == "sign")
        .and_then(|c| c.certificate_der)
        .unwrap();
    let subject = ekey_agent::cert::parse(&active).unwrap().csr_subject;
    let csr = ekey_token::csr_with_subject(t.as_ref(), &key.pin, &pending, &subject).unwrap();
    let countersignature = t
        .sign(
            &key.pin,
            "sign",
            &keyproof::renewal_countersign_message(&number, &csr),
        )
        .unwrap();
    let (status, issued) = s
        .post(
            &format!("/api/v1/renewals/{id}/certificate"),
            Some(&session),
            json!({"csr": STANDARD.encode(&csr), "countersignature": STANDARD.encode(countersignature)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let unused = issued["serial"].as_str().unwrap().to_string();
    let (_, listed) = s.get("/api/v1/renewals", Some(&session)).await;
    assert_eq!(listed[0]["state"], "issued", "{listed}");

    // Past the record's expiry the worker ends it.
    s.clock.advance(chrono::Duration::days(11));
    let ent = s.login("demo@ekey.example").await;
    let r = wait_expired(&s, &ent, &id).await;
    assert_eq!(
        r["history"].as_array().unwrap().last().unwrap()["action"],
        "expire",
        "{r}"
    );

    // The certificate never installed is revoked; the key's own one is still valid.
    let provider = s.login("provider").await;
    let certs = certificates(&s, &provider, &key.login_name).await;
    let cert = |serial: &str| {
        certs
            .iter()
            .find(|c| c["serial"] == serial)
            .cloned()
            .unwrap_or_else(|| panic!("{serial} not listed: {certs:?}"))
    };
    assert!(
        cert(&key.certificate_serial)["revoked_at"].is_null(),
        "the key's certificate stays valid: {:?}",
        cert(&key.certificate_serial)
    );
    assert_eq!(cert(&unused)["revocation_reason"], "cessationOfOperation");
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    let k = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key.key_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(k["state"], "active", "{k}");
    assert_eq!(k["certificate_serial"], key.certificate_serial.as_str());
    s.wait_message("liming@example.com", "逾期未办理").await;

    // The key still logs in; the renewal is shown as expired and cannot be run any more.
    let (status, session) = key_login(&s, &agent, &key.token_serial, &key.pin).await;
    assert_eq!(status, StatusCode::OK, "the key still works: {session}");
    let session = session["token"].as_str().unwrap().to_string();
    let (_, listed) = s.get("/api/v1/renewals", Some(&session)).await;
    assert_eq!(listed[0]["state"], "expired", "{listed}");
    let (status, v) = s
        .post(
            &format!("/api/v1/renewals/{id}/certificate"),
            Some(&session),
            json!({"csr": STANDARD.encode(&csr), "countersignature": "AA=="}),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{v}");
    assert_eq!(v["code"], "ekey.renewal.expired");
    let page = PageClient::new(&s);
    page.login("demo@ekey.example", PASSWORD).await;
    let home = page.get("/portal").await;
    assert!(home.body.contains("使用中"), "{}", home.body);
    assert!(
        !home.body.contains("开始 CA证书更新"),
        "no renewal is offered: {}",
        home.body
    );
    let shown = page.get(&format!("/portal/requests/{id}")).await;
    assert!(shown.body.contains("逾期未办理，已失效"), "{}", shown.body);

    // The enterprise applies again, and this time the key renews.
    let (again, _) = scenario::approved_renewal(&p, &key).await.unwrap();
    let (status, done) = agent
        .call(
            "POST",
            &format!("/keys/{}/renewal", key.token_serial),
            Some(json!({"pin": key.pin})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["state"], "confirmed", "{done}");
    assert_ne!(done["new_serial"], unused.as_str());
    let r = request_status(&s, &ent, &again).await;
    assert_eq!(r["status"], "completed", "{r}");

    // An approved renewal the key never even started runs out the same way.
    let (idle, _) = scenario::approved_renewal(&p, &key).await.unwrap();
    s.clock.advance(chrono::Duration::days(11));
    let ent = s.login("demo@ekey.example").await;
    wait_expired(&s, &ent, &idle).await;
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == key.key_id.as_str() && k["state"] == "active"),
        "{keys}"
    );
    s.stop().await;
}

on_both_databases!(an_unconfirmed_renewal_that_expires_leaves_the_key_working);

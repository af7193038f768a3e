//! Revocation as the CA's doors take it (issue 15): only reasons a full CRL may carry are
//! accepted (API, the provider's console form), and `/crl/issuing.crl` keeps answering
//! whatever the records hold — a reason an older version accepted reads as `unspecified`, and
//! a regeneration that fails serves the last good CRL and shows on the CA status and page.
//! Each on SQLite and PostgreSQL.

use chrono::Duration;
use ekey_domain::clock::Clock as _;
use ekey_store::{CertificateReservation, NewAudit, Revocation, Store as _};
use reqwest::StatusCode;
use serde_json::json;

use crate::csr_issue::make_csr;
use crate::pages::{PageClient, csrf_of};
use crate::support::*;

const NAME: &str = "苏州吊销测试有限公司";

/// `openssl crl -text` of the CRL the instance serves now (which must answer 200).
pub async fn served_crl(s: &TestServer, dir: &std::path::Path, path: &str) -> String {
    let res = s.client.get(s.url(path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path} must keep answering");
    assert_eq!(
        res.headers()["content-type"],
        "application/pkix-crl",
        "{path}"
    );
    let file = dir.join("served.crl");
    std::fs::write(&file, res.bytes().await.unwrap()).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{path} is not a CRL");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issues a certificate through the API for a fresh CSR; returns its serial.
pub async fn issue(s: &TestServer, provider: &str, dir: &std::path::Path, order: &str) -> String {
    let code = credit_code("91320500MA1REKKK5");
    let csr = make_csr(dir, order, NAME, &code);
    let (status, v) = s
        .post(
            "/api/v1/certificates",
            Some(provider),
            json!({"csr": csr, "credit_code": code, "enterprise_name": NAME, "order": order}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["serial"].as_str().unwrap().to_string()
}

async fn revocation_reasons_and_a_crl_that_keeps_answering(db: Db) {
    let s = TestServer::start(db).await;
    let dir = tempfile::tempdir().unwrap();
    let provider = s.login("provider").await;
    let serial = issue(&s, &provider, dir.path(), "rev-1").await;
    let (first, _) = ekey_testkit::crl::number_and_serials(
        &served_crl(&s, dir.path(), "/crl/issuing.crl").await,
    );

    // The API refuses the two reasons, whatever their case, and changes nothing.
    let before = s.snapshot().await;
    for reason in ["removeFromCRL", "REMOVEFROMCRL", "certificateHold"] {
        let (status, v) = s
            .post(
                &format!("/api/v1/certificates/{serial}/revoke"),
                Some(&provider),
                json!({ "reason": reason }),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reason}: {v}");
        assert_eq!(v["code"], "ekey.ca.reason_not_allowed", "{v}");
        assert!(
            v["message"].as_str().unwrap().contains("removeFromCRL"),
            "{v}"
        );
    }
    assert_eq!(
        before,
        s.snapshot().await,
        "a refused reason changes nothing"
    );
    // So does the provider's form.
    let op = PageClient::new(&s);
    op.login("provider", PASSWORD).await;
    let page = op.get(&format!("/console/certificates?q={serial}")).await;
    assert!(!page.body.contains("removeFromCRL") && !page.body.contains("certificateHold"));
    let csrf = csrf_of(&page.body);
    let before = s.snapshot().await;
    for reason in ["removeFromCRL", "certificateHold"] {
        let a = op
            .post(
                &format!("/console/certificates/{serial}/revoke"),
                &[("csrf", &csrf), ("q", &serial), ("reason", reason)],
            )
            .await;
        assert!(a.location.contains("error="), "{reason}: {}", a.location);
    }
    assert_eq!(
        before,
        s.snapshot().await,
        "a refused reason changes nothing"
    );
    let cert = s.raw().certificate(&serial).await.unwrap().unwrap();
    assert!(cert.revoked_at.is_none());

    // A record an older version accepted (removeFromCRL) does not take the CRL down: the
    // certificate is listed as revoked, without a reason a full CRL must not carry.
    let now = s.clock.now();
    s.raw()
        .revoke(
            Revocation {
                serial: serial.clone(),
                reason: "removeFromCRL".into(),
                at: now,
            },
            audit(now),
        )
        .await
        .unwrap();
    let text = served_crl(&s, dir.path(), "/crl/issuing.crl").await;
    let (second, listed) = ekey_testkit::crl::number_and_serials(&text);
    assert!(second > first, "a new CRL was made: {text}");
    assert_eq!(listed, vec![serial.trim_start_matches('0').to_string()]);
    assert!(!text.contains("Remove From CRL"), "{text}");
    let (_, st) = s.get("/api/v1/ca/status", Some(&provider)).await;
    assert!(st["crl_failure"].is_null(), "{st}");

    // A regeneration that fails (a revoked record whose serial cannot be read): the last
    // good CRL is still served, the failure shows on the CA status and the provider's page.
    let broken = "not-a-hex-serial";
    s.raw()
        .reserve_certificate(CertificateReservation {
            serial: broken.into(),
            idempotency_key: "broken-record".into(),
            enterprise_id: None,
            key_id: None,
            subject: "broken".into(),
            at: now,
        })
        .await
        .unwrap();
    s.raw()
        .complete_certificate(
            broken,
            b"\x30\x00",
            now,
            now + Duration::days(1),
            audit(now),
        )
        .await
        .unwrap();
    s.clock.advance(Duration::seconds(5));
    s.raw()
        .revoke(
            Revocation {
                serial: broken.into(),
                reason: "keyCompromise".into(),
                at: now,
            },
            audit(now),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        let text = served_crl(&s, dir.path(), "/crl/issuing.crl").await;
        assert_eq!(
            ekey_testkit::crl::number_and_serials(&text).0,
            second,
            "the last good CRL: {text}"
        );
    }
    let (status, st) = s.get("/api/v1/ca/status", Some(&provider)).await;
    assert_eq!(status, StatusCode::OK, "{st}");
    assert_eq!(st["crl_failure"]["code"], "ekey.ca.serial_invalid", "{st}");
    assert!(st["crl_made_at"].is_string(), "{st}");
    let page = op.get("/console/certificates").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("CRL 更新失败"), "{}", page.body);
    s.stop().await;
}

fn openssl(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is required for these tests");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Saves what the instance serves at `path` as PEM (`kind` is `x509` or `crl`).
async fn fetch_pem(s: &TestServer, dir: &std::path::Path, path: &str, kind: &str) -> String {
    let res = s.client.get(s.url(path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    let name = path.trim_start_matches('/').replace('/', "_");
    let der = dir.join(format!("{name}.der"));
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&der, res.bytes().await.unwrap()).unwrap();
    let text = openssl(&[
        kind,
        "-inform",
        "DER",
        "-in",
        der.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ]);
    assert!(pem.exists(), "{path}: {text}");
    pem.to_str().unwrap().to_string()
}

/// Issue 15, item 6: the issuing CA carries a CRL distribution point to the root's ARL,
/// which is served at `/crl/root.crl`, and `openssl verify -crl_check_all` checks an
/// enterprise certificate with both CRLs (and sees its revocation).
async fn openssl_checks_the_whole_chain_with_both_crls(db: Db) {
    // The real clock: openssl checks the CRLs' nextUpdate against it.
    let s = TestServer::start_at(db, chrono::Utc::now()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let provider = s.login("provider").await;
    let code = credit_code("91320500MA1CHANN4");
    let csr = make_csr(d, "chain", NAME, &code);
    let (status, v) = s
        .post(
            "/api/v1/certificates",
            Some(&provider),
            json!({"csr": csr, "credit_code": code, "enterprise_name": NAME, "order": "chain-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let serial = v["serial"].as_str().unwrap().to_string();
    let cert = d.join("cert.pem");
    std::fs::write(&cert, v["certificate"].as_str().unwrap()).unwrap();

    let root = fetch_pem(&s, d, "/ca/root.crt", "x509").await;
    let issuing = fetch_pem(&s, d, "/ca/issuing.crt", "x509").await;
    let text = openssl(&["x509", "-in", &issuing, "-noout", "-text"]);
    assert!(
        text.contains(&format!("URI:{}/crl/root.crl", s.base)),
        "no CRL distribution point on the issuing CA: {text}"
    );
    let arl = fetch_pem(&s, d, "/crl/root.crl", "crl").await;
    let verify = |crl: &str| {
        openssl(&[
            "verify",
            "-crl_check_all",
            "-x509_strict",
            "-CAfile",
            &root,
            "-untrusted",
            &issuing,
            "-CRLfile",
            &arl,
            "-CRLfile",
            crl,
            cert.to_str().unwrap(),
        ])
    };
    let crl = fetch_pem(&s, d, "/crl/issuing.crl", "crl").await;
    let text = verify(&crl);
    assert!(text.contains(": OK"), "{text}");
    let (_, st) = s.get("/api/v1/ca/status", Some(&provider)).await;
    assert_eq!(st["root_crl_number"], 1, "{st}");
    assert!(st["root_crl_problem"].is_null(), "{st}");
    assert!(st["root_crl_next_update"].is_string(), "{st}");

    let (status, v) = s
        .post(
            &format!("/api/v1/certificates/{serial}/revoke"),
            Some(&provider),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let crl = fetch_pem(&s, d, "/crl/issuing.crl", "crl").await;
    let text = verify(&crl);
    assert!(text.contains("certificate revoked"), "{text}");

    // Without the ARL, -crl_check_all cannot vouch for the issuing CA.
    let text = openssl(&[
        "verify",
        "-crl_check_all",
        "-CAfile",
        &root,
        "-untrusted",
        &issuing,
        "-CRLfile",
        &crl,
        cert.to_str().unwrap(),
    ]);
    assert!(!text.contains(": OK"), "{text}");
    s.stop().await;
}

/// A CSR for the existing key `key` naming `name` and `code`; returns its PEM.
fn csr_for_key(
    dir: &std::path::Path,
    key: &std::path::Path,
    file: &str,
    name: &str,
    code: &str,
) -> String {
    let out = dir.join(format!("{file}.csr"));
    let text = openssl(&[
        "req",
        "-new",
        "-utf8",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        &format!("/C=CN/O={name}/CN={name}/serialNumber={code}"),
        "-out",
        out.to_str().unwrap(),
    ]);
    std::fs::read_to_string(&out).unwrap_or_else(|_| panic!("{text}"))
}

async fn certificate_rows(s: &TestServer) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM certificates")
        .fetch_one(s.raw().pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

/// Issue 15, item 4: through `POST /api/v1/certificates`, a key certified for one
/// enterprise is refused for another (the first may have it again), and a key once revoked
/// as keyCompromise is refused for everyone; a refusal stores nothing.
async fn a_key_is_certified_for_one_enterprise_and_never_after_compromise(db: Db) {
    let s = TestServer::start(db).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let provider = s.login("provider").await;
    let code_a = credit_code("91320500MA1KEYAA1");
    let code_b = credit_code("91320500MA1KEYBB6");
    let other = "无锡另一家贸易有限公司";
    let csr_a = make_csr(d, "k", NAME, &code_a);
    let key = d.join("k.key");
    let issue = |csr: String, name: &'static str, code: String, order: &'static str| {
        let s = &s;
        let provider = provider.clone();
        async move {
            s.post(
                "/api/v1/certificates",
                Some(&provider),
                json!({"csr": csr, "credit_code": code, "enterprise_name": name, "order": order}),
            )
            .await
        }
    };
    let (status, first) = issue(csr_a.clone(), NAME, code_a.clone(), "h-1").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");

    let rows = certificate_rows(&s).await;
    let csr_b = csr_for_key(d, &key, "kb", other, &code_b);
    let (status, v) = issue(csr_b.clone(), other, code_b.clone(), "h-2").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.ca.key_other_enterprise", "{v}");
    assert!(v["message"].as_str().unwrap().contains("另一家企业"), "{v}");
    assert_eq!(certificate_rows(&s).await, rows, "a refusal stores nothing");

    // The same enterprise may have the key certified again (a re-issue).
    let (status, v) = issue(csr_a.clone(), NAME, code_a.clone(), "h-3").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let serial = v["serial"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            &format!("/api/v1/certificates/{serial}/revoke"),
            Some(&provider),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let rows = certificate_rows(&s).await;
    for (csr, name, code, order) in [
        (csr_a.clone(), NAME, code_a.clone(), "h-4"),
        (csr_b.clone(), other, code_b.clone(), "h-5"),
    ] {
        let (status, v) = issue(csr, name, code, order).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        // Compromised comes first: the key is refused to everyone.
        assert_eq!(v["code"], "ekey.ca.key_compromised", "{name}: {v}");
    }
    assert_eq!(certificate_rows(&s).await, rows, "a refusal stores nothing");
    // A new key is fine.
    let fresh = make_csr(d, "fresh", NAME, &code_a);
    let (status, v) = issue(fresh, NAME, code_a.clone(), "h-6").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    s.stop().await;
}

/// Issue 15, item 5: a key's certificate revoked from the provider's certificate page
/// revokes the key (no longer 使用中), shows in the history of the request that produced
/// it and tells the enterprise by mail — the same transaction as the revocation.
async fn a_certificate_revoked_by_hand_revokes_its_key_and_tells_the_enterprise(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let id = request_in_agency_review(&s, &ent).await;
    let key = crate::lifecycle::approve_and_produce(&s, &id, &ent, &agency, &provider).await;
    let serial = key["certificate_serial"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            "/api/v1/shipments",
            Some(&provider),
            json!({"courier": "EMS", "tracking_number": "EM123456789CN", "request_ids": [id]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let shipment = v["id"].as_str().unwrap().to_string();
    for step in ["receive", "notify"] {
        let (status, v) = s
            .post(
                &format!("/api/v1/shipments/{shipment}/{step}"),
                Some(&agency),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{step}: {v}");
    }
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/handover"),
            Some(&agency),
            json!({"method": "pickup", "collector_name": "李明", "collector_id_number": "11010519491231002X", "introduction_letter": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    let mine = |keys: &serde_json::Value| {
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| k["certificate_serial"] == serial.as_str())
            .cloned()
            .unwrap()
    };
    assert_eq!(mine(&keys)["state_label"], "使用中", "{keys}");

    let op = PageClient::new(&s);
    op.login("provider", PASSWORD).await;
    let page = op.get(&format!("/console/certificates?q={serial}")).await;
    let csrf = csrf_of(&page.body);
    let a = op
        .post(
            &format!("/console/certificates/{serial}/revoke"),
            &[("csrf", &csrf), ("q", &serial), ("reason", "keyCompromise")],
        )
        .await;
    assert!(a.location.contains("done=revoked"), "{}", a.location);

    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    let k = mine(&keys);
    assert_eq!(k["state"], "revoked", "{k}");
    assert_ne!(k["state_label"], "使用中", "{k}");
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["status"], "completed", "{r}");
    let last = r["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "certificate_revoked", "{r}");
    assert!(
        last["remark"]
            .as_str()
            .unwrap_or_default()
            .contains(&serial),
        "{last}"
    );
    let mail = s.wait_message("demo@ekey.example", "证书已吊销").await;
    assert!(
        mail["body"].as_str().unwrap().contains(&serial)
            && mail["body"].as_str().unwrap().contains("密钥泄露"),
        "{mail}"
    );
    // The enterprise's page shows it in the request's timeline.
    let portal = PageClient::new(&s);
    portal.login("demo@ekey.example", PASSWORD).await;
    let page = portal.get(&format!("/portal/requests/{id}")).await;
    assert!(page.body.contains("证书已被服务商吊销"), "{}", page.body);
    let report = s.verify_audit().await;
    assert!(report.first_broken.is_none(), "{report:?}");
    s.stop().await;
}

fn audit(at: chrono::DateTime<chrono::Utc>) -> NewAudit {
    NewAudit {
        at,
        actor_id: "test".into(),
        actor_role: "operator".into(),
        address: "test".into(),
        action: "ca.revoke".into(),
        object_type: "certificate".into(),
        ..Default::default()
    }
}

on_both_databases!(revocation_reasons_and_a_crl_that_keeps_answering);
on_both_databases!(openssl_checks_the_whole_chain_with_both_crls);
on_both_databases!(a_key_is_certified_for_one_enterprise_and_never_after_compromise);
on_both_databases!(a_certificate_revoked_by_hand_revokes_its_key_and_tells_the_enterprise);

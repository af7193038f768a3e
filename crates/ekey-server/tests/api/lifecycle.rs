//! A key's whole life through the API, checked by real clients: production on a software
//! token, shipment, arrival, collection notice, handover → completed with a certificate that
//! `openssl verify` accepts and OCSP calls good; then 补办 (the lost original revoked as
//! keyCompromise before the replacement is made) and 注销 (cessationOfOperation), with the
//! CRL and OCSP saying so at once.

use std::path::Path;
use std::process::Command;

use ekey_domain::clock::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is required for these tests (apt-get install openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn bytes(s: &TestServer, path: &str, token: Option<&str>) -> Vec<u8> {
    let mut b = s.client.get(s.url(path));
    if let Some(t) = token {
        b = b.bearer_auth(t);
    }
    let res = b.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    res.bytes().await.unwrap().to_vec()
}

fn der_to_pem(dir: &Path, name: &str, der: &[u8]) -> String {
    let der_path = dir.join(format!("{name}.der"));
    let pem_path = dir.join(format!("{name}.pem"));
    std::fs::write(&der_path, der).unwrap();
    let (ok, text) = openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        der_path.to_str().unwrap(),
        "-out",
        pem_path.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    pem_path.to_str().unwrap().to_string()
}

/// `openssl ocsp` against the running responder (POST): returns its whole output.
fn ocsp_status(base: &str, root: &str, issuing: &str, cert: &str) -> String {
    let (ok, text) = openssl(&[
        "ocsp",
        "-issuer",
        issuing,
        "-cert",
        cert,
        "-url",
        &format!("{base}/ocsp"),
        "-CAfile",
        root,
        "-nonce",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    text
}

/// Asks the responder over GET (standard base64, URL-encoded) without a nonce — the kind of
/// request whose answer is cached — and lets openssl check the response.
async fn ocsp_get(
    s: &TestServer,
    dir: &Path,
    root: &str,
    issuing: &str,
    cert: &str,
    name: &str,
) -> String {
    use base64::Engine;
    let req = dir.join(format!("{name}-req.der"));
    let (ok, text) = openssl(&[
        "ocsp",
        "-issuer",
        issuing,
        "-cert",
        cert,
        "-reqout",
        req.to_str().unwrap(),
        "-no_nonce",
    ]);
    assert!(ok, "{text}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&req).unwrap());
    let encoded: String = b64
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_string(),
            '/' => "%2F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect();
    let resp = dir.join(format!("{name}-resp.der"));
    std::fs::write(&resp, bytes(s, &format!("/ocsp/{encoded}"), None).await).unwrap();
    let (ok, text) = openssl(&[
        "ocsp",
        "-respin",
        resp.to_str().unwrap(),
        "-issuer",
        issuing,
        "-cert",
        cert,
        "-CAfile",
        root,
    ]);
    assert!(ok && text.contains("Response verify OK"), "{text}");
    text
}

async fn decide(s: &TestServer, id: &str, token: &str) -> Value {
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(token),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// Agency and provider approve; the provider produces; returns the key as the enterprise sees it.
pub(crate) async fn approve_and_produce(
    s: &TestServer,
    id: &str,
    ent: &str,
    agency: &str,
    provider: &str,
) -> Value {
    decide(s, id, agency).await;
    let v = decide(s, id, provider).await;
    assert_eq!(v["status"], "in_production");
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/produce"),
            Some(provider),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, keys) = s.get("/api/v1/keys", Some(ent)).await;
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["request_id"] == id)
        .cloned()
        .expect("the produced key is listed")
}

async fn lifecycle(db: Db) {
    // OpenSSL judges OCSP response times by the real clock: run this life in the present.
    let s = TestServer::start_at(db, chrono::Utc::now()).await;
    let dir = tempfile::tempdir().unwrap();
    // From registration: a new enterprise registers and activates through its mail.
    let code = credit_code("91320100MA1R2T3U8");
    let ent = s
        .register_and_login(
            "金陵进出口贸易有限公司",
            &code,
            "320000",
            "keys@jinling-trade.example",
        )
        .await;
    let agency = s.login("agency-320000").await;
    let beijing = s.login("agency-110000").await;
    let provider = s.login("provider").await;

    let root = der_to_pem(dir.path(), "root", &bytes(&s, "/ca/root.crt", None).await);
    let issuing = der_to_pem(
        dir.path(),
        "issuing",
        &bytes(&s, "/ca/issuing.crt", None).await,
    );

    // ---- first issue to production ----
    let id = request_in_agency_review(&s, &ent).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/produce"),
            Some(&provider),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "no key before 复核: {v}");
    let key = approve_and_produce(&s, &id, &ent, &agency, &provider).await;
    assert_eq!(key["state"], "personalised");
    assert!(
        key["eseal_id"]
            .as_str()
            .is_some_and(|e| e.starts_with("ES")),
        "e-seal bound: {key}"
    );
    let serial = key["certificate_serial"].as_str().unwrap().to_string();
    // Producing again changes nothing: one key, one certificate per order.
    let (status, _) = s
        .post(
            &format!("/api/v1/requests/{id}/produce"),
            Some(&provider),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["certificate_serial"], serial.as_str());

    let key_id = key["id"].as_str().unwrap().to_string();
    let cert = der_to_pem(
        dir.path(),
        "cert",
        &bytes(
            &s,
            &format!("/api/v1/keys/{key_id}/certificate"),
            Some(&ent),
        )
        .await,
    );
    let (ok, text) = openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        &root,
        "-untrusted",
        &issuing,
        &cert,
    ]);
    assert!(ok, "{text}");
    let (_, text) = openssl(&[
        "x509", "-in", &cert, "-noout", "-subject", "-nameopt", "utf8",
    ]);
    assert!(
        text.contains("金陵进出口贸易有限公司") && text.contains(&code),
        "{text}"
    );
    assert!(ocsp_status(&s.base, &root, &issuing, &cert).contains(": good"));

    // The key on the token opens with the initial PIN only the enterprise can read.
    let (status, _) = s
        .get(
            &format!("/api/v1/keys/{key_id}/initial-pin"),
            Some(&provider),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the operator never sees the PIN"
    );
    let (status, v) = s
        .get(&format!("/api/v1/keys/{key_id}/initial-pin"), Some(&ent))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let pin = v["initial_pin"].as_str().unwrap().to_string();
    let token_file = s
        .data_dir
        .join("tokens")
        .join(format!("{}.token", key["token_serial"].as_str().unwrap()));
    {
        use ekey_token::Token;
        let token = ekey_token::SoftToken::open(&token_file).unwrap();
        token.sign(&pin, "sign", b"login challenge").unwrap();
        let status = token.status().unwrap();
        assert!(
            status
                .containers
                .iter()
                .any(|c| c.certificate_der.is_some()),
            "certificate written to the token"
        );
    }

    // ---- shipment, arrival, notice, handover ----
    let (status, v) = s
        .post(
            "/api/v1/shipments",
            Some(&provider),
            json!({"courier": "EMS", "tracking_number": "EM123456789CN", "request_ids": [id]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let shipment = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["requests"][0]["status"], "shipped");
    let (status, _) = s
        .post(
            &format!("/api/v1/shipments/{shipment}/receive"),
            Some(&beijing),
            json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another province's shipment does not exist for Beijing"
    );
    let (status, v) = s
        .post(
            &format!("/api/v1/shipments/{shipment}/receive"),
            Some(&agency),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["status"], "at_agency");
    // Notify within 3 working days of arrival.
    let due = ekey_domain::calendar::Calendar::builtin()
        .due_at(s.clock.now(), 3)
        .at;
    assert_eq!(
        r["due_at"],
        due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let (status, _) = s
        .post(
            &format!("/api/v1/shipments/{shipment}/receive"),
            Some(&agency),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "received once");
    let (status, v) = s
        .post(
            &format!("/api/v1/shipments/{shipment}/notify"),
            Some(&agency),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mail = s.wait_message("liming@example.com", "可领取").await;
    assert!(
        mail["body"]
            .as_str()
            .unwrap()
            .contains("南京市汉中门大街145号"),
        "{mail}"
    );
    s.wait_message("13912345678", "领取").await;
    let number = r["number"].as_str().unwrap();
    let (_, public) = s
        .get(
            &format!("/api/v1/public/result?number={number}&credit_code={code}"),
            None,
        )
        .await;
    assert_eq!(public["ready_for_collection"], true, "{public}");

    let pickup = |letter: bool| json!({"method": "pickup", "collector_name": "李明", "collector_id_number": "11010519491231002X", "introduction_letter": letter});
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/handover"),
            Some(&agency),
            pickup(false),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.handover.incomplete");
    let mail_to_elsewhere = json!({"method": "mail", "disclaimer_received": true, "licence_copy_received": true,
        "recipient": "李明", "mobile": "13912345678", "id_number": "11010519491231002X",
        "address": "上海市浦东新区世纪大道100号", "courier": "EMS", "tracking_number": "EM1"});
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/handover"),
            Some(&agency),
            mail_to_elsewhere,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.handover.address_mismatch");
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/handover"),
            Some(&agency),
            pickup(true),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    assert_eq!(keys[0]["state"], "active");

    // The same nonce-less request twice: the second answer comes from the cache.
    for _ in 0..2 {
        let text = ocsp_get(&s, dir.path(), &root, &issuing, &cert, "orig").await;
        assert!(text.contains(": good"), "{text}");
    }

    // ---- 补办: the key is lost ----
    let login_name = keys[0]["login_name"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            json!({"kind": "replacement", "licence_types": ["import_licence"], "reason": "钥匙遗失",
                   "key_lost": true, "login_name": {"mode": "original", "value": login_name},
                   "authorised_user": person("liming@example.com")}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let rid = v["id"].as_str().unwrap().to_string();
    s.post(
        &format!("/api/v1/requests/{rid}/submit"),
        Some(&ent),
        json!({}),
    )
    .await;
    upload_all(&s, &ent, &rid, SIX).await;
    s.post(
        &format!("/api/v1/requests/{rid}/confirm-upload"),
        Some(&ent),
        json!({}),
    )
    .await;
    let replacement = approve_and_produce(&s, &rid, &ent, &agency, &provider).await;
    let new_serial = replacement["certificate_serial"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_serial, serial);
    assert_eq!(
        replacement["login_name"],
        login_name.as_str(),
        "补办 keeps the login name"
    );
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    let original = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id.as_str())
        .unwrap();
    assert_eq!(original["state"], "lost");
    let text = ocsp_status(&s.base, &root, &issuing, &cert);
    assert!(
        text.contains(": revoked") && text.contains("keyCompromise"),
        "{text}"
    );
    let crl_path = dir.path().join("issuing.crl");
    std::fs::write(&crl_path, bytes(&s, "/crl/issuing.crl", None).await).unwrap();
    let (ok, text) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl_path.to_str().unwrap(),
        "-CAfile",
        &issuing,
        "-noout",
        "-text",
    ]);
    assert!(ok && text.contains("verify OK"), "CRL signature: {text}");
    assert!(
        text.to_uppercase().contains(&serial.to_uppercase()),
        "CRL lists the lost key: {text}"
    );
    assert!(text.contains("Key Compromise"), "{text}");

    // The replacement is delivered before anything else is done to it: a 注销 while its
    // 补办 is in progress is refused (one 补办 or 注销 per key at a time).
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            json!({"kind": "cancellation", "login_name": {"mode": "original", "value": login_name},
                   "authorised_user": person("liming@example.com")}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "ekey.replacement.in_progress");
    let (status, v) = s
        .post(
            "/api/v1/shipments",
            Some(&provider),
            json!({"courier": "EMS", "tracking_number": "EM123456790CN", "request_ids": [rid]}),
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
            &format!("/api/v1/requests/{rid}/handover"),
            Some(&agency),
            pickup(true),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");

    // ---- 注销 of the replacement ----
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            json!({"kind": "cancellation", "login_name": {"mode": "original", "value": login_name},
                   "authorised_user": person("liming@example.com")}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let cid = v["id"].as_str().unwrap().to_string();
    let (_, v) = s
        .post(
            &format!("/api/v1/requests/{cid}/submit"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(v["status"], "awaiting_handover");
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{cid}/receive"),
            Some(&agency),
            json!({"form_received": true}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the key itself is needed: {v}"
    );
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{cid}/receive"),
            Some(&agency),
            json!({"form_received": true, "key_received": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "agency_review");
    decide(&s, &cid, &agency).await;
    let v = decide(&s, &cid, &provider).await;
    assert_eq!(v["status"], "completed");
    let new_cert = der_to_pem(
        dir.path(),
        "new",
        &bytes(
            &s,
            &format!(
                "/api/v1/keys/{}/certificate",
                replacement["id"].as_str().unwrap()
            ),
            Some(&ent),
        )
        .await,
    );
    let text = ocsp_status(&s.base, &root, &issuing, &new_cert);
    assert!(
        text.contains(": revoked") && text.contains("cessationOfOperation"),
        "{text}"
    );
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .all(|k| k["state"] != "active"),
        "{keys}"
    );

    // OCSP over GET (RFC 6960 appendix A) answers the same.
    let text = ocsp_get(&s, dir.path(), &root, &issuing, &new_cert, "new").await;
    assert!(text.contains(": revoked"), "{text}");

    // A serial this CA never issued: the running responder says unknown (signed, verified).
    let (ok, text) = openssl(&[
        "ocsp",
        "-issuer",
        &issuing,
        "-serial",
        "0x7e57ab1e0000c0de",
        "-url",
        &format!("{}/ocsp", s.base),
        "-CAfile",
        &root,
        "-nonce",
    ]);
    assert!(
        ok && text.contains("Response verify OK") && text.contains(": unknown"),
        "{text}"
    );

    // Garbage to the responder: a proper OCSP error, not an HTTP error page.
    let res = s
        .client
        .post(s.url("/ocsp"))
        .header("content-type", "application/ocsp-request")
        .body("not a request")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let garbage = dir.path().join("garbage-resp.der");
    std::fs::write(&garbage, res.bytes().await.unwrap()).unwrap();
    let (_, text) = openssl(&[
        "ocsp",
        "-respin",
        garbage.to_str().unwrap(),
        "-resp_text",
        "-noverify",
    ]);
    assert!(
        text.to_lowercase().contains("malformedrequest (1)"),
        "{text}"
    );

    assert_eq!(s.verify_audit().await.first_broken, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_sqlite() {
    lifecycle(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_postgres() {
    lifecycle(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_rsa_2048_ca_issues_verifiable_certificates() {
    let s = TestServer::start_with(Db::Sqlite, chrono::Utc::now(), |c| {
        c.ca_algorithm = "rsa2048".into()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let root = der_to_pem(dir.path(), "root", &bytes(&s, "/ca/root.crt", None).await);
    let issuing = der_to_pem(
        dir.path(),
        "issuing",
        &bytes(&s, "/ca/issuing.crt", None).await,
    );
    let (_, text) = openssl(&["x509", "-in", &issuing, "-noout", "-text"]);
    assert!(
        text.contains("rsaEncryption") && text.contains("2048 bit"),
        "{text}"
    );
    let id = request_in_agency_review(&s, &ent).await;
    let key = approve_and_produce(&s, &id, &ent, &agency, &provider).await;
    let cert = der_to_pem(
        dir.path(),
        "cert",
        &bytes(
            &s,
            &format!("/api/v1/keys/{}/certificate", key["id"].as_str().unwrap()),
            Some(&ent),
        )
        .await,
    );
    let (ok, text) = openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        &root,
        "-untrusted",
        &issuing,
        &cert,
    ]);
    assert!(ok, "{text}");
    let (_, text) = openssl(&["x509", "-in", &cert, "-noout", "-text"]);
    assert!(text.contains("sha256WithRSAEncryption"), "{text}");
    assert!(ocsp_status(&s.base, &root, &issuing, &cert).contains(": good"));
}

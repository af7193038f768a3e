//! Issuing from a CSR through the API (`POST /api/v1/certificates`, provider only): the
//! certificate is stored and verifies with `openssl verify` against the CA's own chain; the
//! same order gives the same certificate; a refused call (wrong role, bad CSR, CSR naming
//! another enterprise, bad credit code or order, an order reused for another key) gets its
//! stable code and stores nothing.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use crate::support::*;

const NAME: &str = "苏州测试进出口有限公司";

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

/// A P-256 CSR made by `openssl req` with subject C/O/CN/serialNumber; returns its PEM.
pub fn make_csr(dir: &Path, file: &str, name: &str, code: &str) -> String {
    let csr = dir.join(format!("{file}.csr"));
    let key = dir.join(format!("{file}.key"));
    let (ok, text) = openssl(&[
        "req",
        "-new",
        "-utf8",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-subj",
        &format!("/C=CN/O={name}/CN={name}/serialNumber={code}"),
        "-out",
        csr.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    std::fs::read_to_string(&csr).unwrap()
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn b64(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// The CA certificate at `path` of the running instance, written as PEM into `dir`.
async fn ca_cert(s: &TestServer, dir: &Path, path: &str, name: &str) -> String {
    let res = s.client.get(s.url(path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    let der = dir.join(format!("{name}.der"));
    std::fs::write(&der, res.bytes().await.unwrap()).unwrap();
    let pem = dir.join(format!("{name}.pem"));
    let (ok, text) = openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        der.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    pem.to_str().unwrap().to_string()
}

/// Rows in `certificates` and the end of the audit chain.
async fn stored(s: &TestServer) -> (i64, i64, String) {
    let certs: i64 = sqlx::query("SELECT COUNT(*) AS n FROM certificates")
        .fetch_one(s.raw().pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(s.raw().pool())
        .await
        .unwrap();
    (
        certs,
        head.try_get::<i64, _>("seq").unwrap(),
        head.try_get::<String, _>("hash").unwrap(),
    )
}

fn issue_body(csr: &str, code: &str, order: &str) -> Value {
    json!({"csr": csr, "credit_code": code, "enterprise_name": NAME, "order": order})
}

/// Sends a refused issuance and checks its status, code, message language and that nothing
/// was stored (no certificate row, no audit record).
async fn refused(
    s: &TestServer,
    token: Option<&str>,
    body: Value,
    status: StatusCode,
    code: &str,
) -> String {
    let before = stored(s).await;
    let (got, v) = s.post("/api/v1/certificates", token, body).await;
    assert_eq!(got, status, "{code}: {v}");
    assert_eq!(v["code"], code, "{v}");
    let message = v["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "{code}: not Chinese: {message}"
    );
    assert_eq!(before, stored(s).await, "{code} stored something");
    message
}

async fn issue_from_csr(db: Db) {
    let s = TestServer::start(db).await;
    let dir = tempfile::tempdir().unwrap();
    let provider = s.login("provider").await;
    let enterprise = s.login("demo@ekey.example").await;
    let code = credit_code("91320500MA1TEXT06");
    let csr = make_csr(dir.path(), "a", NAME, &code);

    // Issued, stored, audited; verifies against the instance's own root and issuing CA.
    let before = stored(&s).await;
    let (status, v) = s
        .post(
            "/api/v1/certificates",
            Some(&provider),
            issue_body(&csr, &code, "order-1"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let serial = v["serial"].as_str().unwrap().to_string();
    let pem = v["certificate"].as_str().unwrap().to_string();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    assert!(v["not_before"].as_str().is_some() && v["not_after"].as_str().is_some());
    let after = stored(&s).await;
    assert_eq!(after.0, before.0 + 1, "one certificate row");
    assert!(after.1 > before.1, "audited");
    let root = ca_cert(&s, dir.path(), "/ca/root.crt", "root").await;
    let issuing = ca_cert(&s, dir.path(), "/ca/issuing.crt", "issuing").await;
    let cert = dir.path().join("a.pem");
    std::fs::write(&cert, &pem).unwrap();
    let (ok, text) = openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        &root,
        "-untrusted",
        &issuing,
        cert.to_str().unwrap(),
    ]);
    assert!(ok && text.contains(": OK"), "{text}");
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-subject",
        "-serial",
        "-nameopt",
        "utf8,sep_comma_plus",
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("CN={NAME}")) && text.contains(&code),
        "{text}"
    );
    let printed = text
        .lines()
        .find_map(|l| l.strip_prefix("serial="))
        .unwrap_or_default()
        .to_lowercase();
    assert_eq!(
        printed.trim_start_matches('0'),
        serial.trim_start_matches('0'),
        "{text}"
    );
    let (status, found) = s
        .get(&format!("/api/v1/certificates?q={serial}"), Some(&provider))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found[0]["serial"], serial.as_str(), "{found}");

    // The same order later: the same certificate, 200, nothing new.
    s.clock.advance(chrono::Duration::seconds(30));
    let (status, again) = s
        .post(
            "/api/v1/certificates",
            Some(&provider),
            issue_body(&csr, &code, "order-1"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["serial"], serial.as_str());
    assert_eq!(again["certificate"], pem.as_str());
    assert_eq!(stored(&s).await, after, "a repeated order stores nothing");

    // The CSR as base64 DER, a new order: a new certificate.
    let (status, other) = s
        .post(
            "/api/v1/certificates",
            Some(&provider),
            issue_body(&b64(&pem_to_der(&csr)), &code, "order-2"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    assert_ne!(other["serial"], serial.as_str());

    // An order reused for another key.
    let csr_b = make_csr(dir.path(), "b", NAME, &code);
    refused(
        &s,
        Some(&provider),
        issue_body(&csr_b, &code, "order-1"),
        StatusCode::CONFLICT,
        "ekey.certificate.order_conflict",
    )
    .await;

    // Refusals before anything is reserved.
    refused(
        &s,
        Some(&enterprise),
        issue_body(&csr_b, &code, "order-3"),
        StatusCode::FORBIDDEN,
        "ekey.auth.wrong_role",
    )
    .await;
    refused(
        &s,
        None,
        issue_body(&csr_b, &code, "order-3"),
        StatusCode::UNAUTHORIZED,
        "ekey.auth.required",
    )
    .await;
    refused(
        &s,
        Some(&provider),
        issue_body("not a CSR", &code, "order-3"),
        StatusCode::BAD_REQUEST,
        "ekey.ca.csr_malformed",
    )
    .await;
    refused(
        &s,
        Some(&provider),
        issue_body(&b64(b"\x30\x03\x02\x01\x00"), &code, "order-3"),
        StatusCode::BAD_REQUEST,
        "ekey.ca.csr_malformed",
    )
    .await;
    // A CSR whose self-signature does not verify (last octet of the signature changed).
    let mut broken = pem_to_der(&csr_b);
    let last = broken.len() - 1;
    broken[last] ^= 0x01;
    refused(
        &s,
        Some(&provider),
        issue_body(&b64(&broken), &code, "order-3"),
        StatusCode::BAD_REQUEST,
        "ekey.ca.csr_signature",
    )
    .await;
    // A CSR naming another enterprise.
    let other_code = credit_code("91110000MA1ANTHE5");
    let csr_other = make_csr(dir.path(), "c", "另一家进出口有限公司", &other_code);
    refused(
        &s,
        Some(&provider),
        issue_body(&csr_other, &code, "order-3"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.ca.csr_subject_mismatch",
    )
    .await;
    let mut wrong_code = code.clone();
    wrong_code.replace_range(17.., if code.ends_with('0') { "1" } else { "0" });
    refused(
        &s,
        Some(&provider),
        issue_body(&csr_b, &wrong_code, "order-3"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.ident.credit_code",
    )
    .await;
    refused(
        &s,
        Some(&provider),
        issue_body(&csr_b, &code, "  "),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.certificate.order",
    )
    .await;
    refused(
        &s,
        Some(&provider),
        issue_body(&csr_b, &code, &"x".repeat(129)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.certificate.order",
    )
    .await;
    refused(
        &s,
        Some(&provider),
        json!({"csr": csr_b, "credit_code": code, "enterprise_name": "", "order": "order-3"}),
        StatusCode::UNPROCESSABLE_ENTITY,
        "ekey.input.required",
    )
    .await;

    // English on request.
    let (status, v) = s
        .post_lang(
            "/api/v1/certificates",
            Some(&provider),
            issue_body("not a CSR", &code, "order-3"),
            "en",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "ekey.ca.csr_malformed");
    assert!(v["message"].as_str().unwrap().is_ascii(), "{v}");

    let report = s.verify_audit().await;
    assert!(report.first_broken.is_none(), "audit chain: {report:?}");
    s.stop().await;
}

on_both_databases!(issue_from_csr);

//! Helpers: a software token holding a certificate of a test CA, calls to the router
//! without a socket, signature checks.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use ekey_agent::{Agent, Config, TokenSource};
use ekey_token::{CsrSubject, SoftToken, Token};
use http_body_util::BodyExt;
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SerialNumber};
use tower::ServiceExt;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The provider master secret of the tests.
pub const MASTER: &[u8] = b"test master secret of the provider, 32+ bytes";
/// The initial PIN of every test token.
pub const PIN: &str = "12345678";
/// The portal origin the test agents serve.
pub const ORIGIN: &str = "http://portal.test:8080";
/// The enterprise of the test certificates.
pub const ENTERPRISE: &str = "测试进出口有限公司";
/// Its unified social credit code.
pub const CREDIT_CODE: &str = "91320000MA1XY1234E";

/// A throwaway certification authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "eKey Test CA");
        TestCa {
            issuer: Issuer::new(params, key),
        }
    }

    /// Issues a certificate for a CSR (its subject and key), with a random serial.
    pub fn issue(&self, csr_der: &[u8]) -> Vec<u8> {
        let der = rustls_pki_types::CertificateSigningRequestDer::from(csr_der);
        let mut csr = rcgen::CertificateSigningRequestParams::from_der(&der).unwrap();
        let mut serial: [u8; 16] = rand::random();
        serial[0] = (serial[0] & 0x7f) | 0x10;
        csr.params.serial_number = Some(SerialNumber::from(serial.to_vec()));
        csr.signed_by(&self.issuer).unwrap().der().to_vec()
    }
}

/// The enterprise subject of a key's certificate.
pub fn subject() -> CsrSubject {
    CsrSubject {
        country: Some("CN".into()),
        organization: Some(ENTERPRISE.into()),
        common_name: ENTERPRISE.into(),
        serial_number: Some(CREDIT_CODE.into()),
    }
}

/// A personalised software token at `path` with a key pair and certificate in `sign`.
pub fn make_token(ca: &TestCa, path: &Path, serial: &str) -> SoftToken {
    let t = SoftToken::create(path, serial, &format!("Key {serial}"), PIN, MASTER).unwrap();
    t.generate_key(PIN, "sign").unwrap();
    let csr = ekey_token::csr_with_subject(&t, PIN, "sign", &subject()).unwrap();
    t.put_certificate(PIN, "sign", &ca.issue(&csr)).unwrap();
    t
}

/// The certificate in a token's `sign` container.
pub fn active_certificate(t: &dyn Token) -> Vec<u8> {
    t.status()
        .unwrap()
        .containers
        .into_iter()
        .find(|c| c.name == "sign")
        .and_then(|c| c.certificate_der)
        .expect("certificate in sign")
}

/// Verifies an ECDSA P-256 / SHA-256 DER signature with a certificate's public key.
pub fn verify(cert_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (_, cert) = X509Certificate::from_der(cert_der).unwrap();
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(cert.public_key().raw).unwrap();
    let Ok(sig) = p256::ecdsa::Signature::from_der(signature) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

/// The serial of a certificate, lower-case hex.
pub fn serial_of(cert_der: &[u8]) -> String {
    ekey_agent::cert::parse(cert_der).unwrap().serial
}

/// A test directory with a CA and one token, and an agent serving it.
pub struct Setup {
    pub _dir: tempfile::TempDir,
    pub ca: TestCa,
    pub token: SoftToken,
    pub token_dir: PathBuf,
    pub state_dir: PathBuf,
    pub agent: Agent,
}

impl Setup {
    pub fn new() -> Setup {
        Setup::with_server("http://127.0.0.1:9")
    }

    pub fn with_server(server: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let token_dir = dir.path().join("keys");
        std::fs::create_dir_all(&token_dir).unwrap();
        let token = make_token(&ca, &token_dir.join("a.token"), "EK0001");
        let state_dir = dir.path().join("state");
        let agent = agent(&token_dir, &state_dir, server);
        Setup {
            _dir: dir,
            ca,
            token,
            token_dir,
            state_dir,
            agent,
        }
    }

    /// Pairs a page with the agent and returns the secret.
    pub async fn pair(&self) -> String {
        let r = call(
            &self.agent,
            Method::POST,
            "/pairings",
            &[("origin", ORIGIN)],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
        let code = r.json["code"].as_str().unwrap().to_string();
        let id = r.json["id"].as_str().unwrap().to_string();
        assert_eq!(
            self.agent.confirm_pairing(&code),
            ekey_agent::Confirmation::Confirmed
        );
        let r = call(
            &self.agent,
            Method::GET,
            &format!("/pairings/{id}"),
            &[("origin", ORIGIN)],
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        r.json["secret"].as_str().unwrap().to_string()
    }
}

/// An agent for the tokens in `token_dir`.
pub fn agent(token_dir: &Path, state_dir: &Path, server: &str) -> Agent {
    Agent::new(Config {
        origin: ORIGIN.into(),
        server: server.into(),
        sources: vec![TokenSource::Dir(token_dir.to_path_buf())],
        state_dir: state_dir.to_path_buf(),
    })
    .unwrap()
}

/// An answer of the router.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: serde_json::Value,
}

/// Calls the agent's router without a socket.
pub async fn call(
    agent: &Agent,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> Answer {
    call_raw(
        &ekey_agent::router(agent.clone()),
        method,
        path,
        headers,
        body.map(|b| serde_json::to_vec(&b).unwrap()),
    )
    .await
}

/// Calls a router with a raw body (sent as JSON).
pub async fn call_raw(
    router: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Body::from(body.unwrap_or_default())).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes)))
    };
    Answer {
        status,
        headers,
        json,
    }
}

/// Standard base64 decoding.
pub fn b64(text: &serde_json::Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_str().expect("base64 string"))
        .unwrap()
}

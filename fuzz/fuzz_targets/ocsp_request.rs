//! OCSP requests (`POST /ocsp`, `GET /ocsp/{base64}`): any bytes are parsed and answered
//! with a DER OCSP response, never a panic; the answer agrees with what the parser said
//! about the request.
//!
//! The CA is built once per process with a fixed issuing key (`fixtures/issuing-p256.pk8`,
//! a test key made for this target) and fixed names, so the CertID hashes of the seeds in
//! `seeds/ocsp_request` (made with `openssl ocsp -reqout` against this CA) are ours.
//! `EKEY_FUZZ_WRITE_ISSUER=FILE` writes the issuing CA certificate (PEM) there at start,
//! for `seeds/make-seeds` to make new ones.
#![no_main]

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use der::Decode;
use ekey_ca::{
    Authority, CaConfig, CaError, CertStatus, FileKey, KeyAlgorithm, OcspErrorStatus,
    RevocationReason, Serial, ocsp_error_response,
};
use libfuzzer_sys::fuzz_target;
use x509_ocsp::{BasicOcspResponse, OcspRequest, OcspResponse, OcspResponseStatus};

const OID_BASIC: &str = "1.3.6.1.5.5.7.48.1.1";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
}

fn authority() -> &'static Authority {
    static CA: OnceLock<Authority> = OnceLock::new();
    CA.get_or_init(|| {
        let issuing = FileKey::from_pkcs8_der(
            include_bytes!("../fixtures/issuing-p256.pk8"),
            "fuzz issuing key",
        )
        .expect("fixture key");
        let root = FileKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let ocsp = FileKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let ca = Authority::build(
            &CaConfig::default(),
            start,
            &root,
            Arc::new(issuing),
            Arc::new(ocsp),
        )
        .expect("fuzz CA");
        if let Some(path) = std::env::var_os("EKEY_FUZZ_WRITE_ISSUER") {
            std::fs::write(path, ca.issuing_pem()).expect("writing the issuing certificate");
        }
        ca
    })
}

/// What the store says about a serial, from its last octet: every status gets answered.
fn lookup(serial: &Serial) -> CertStatus {
    let last = serial.as_bytes().last().copied().unwrap_or(0);
    match last % 3 {
        0 => CertStatus::Good,
        1 => CertStatus::Revoked {
            at: now() - chrono::Duration::days(i64::from(last)),
            reason: if last % 2 == 0 {
                RevocationReason::KeyCompromise
            } else {
                RevocationReason::Unspecified
            },
        },
        _ => CertStatus::Unknown,
    }
}

fuzz_target!(init: { authority(); }, |data: &[u8]| {
    let ca = authority();
    let info = ca.ocsp_request_info(data);
    let response = ca.ocsp_response(data, now(), &lookup);
    match info {
        Err(CaError::OcspMalformed { .. }) => {
            assert_eq!(response, ocsp_error_response(OcspErrorStatus::MalformedRequest));
        }
        Err(CaError::OcspUnauthorized) => {
            assert_eq!(response, ocsp_error_response(OcspErrorStatus::Unauthorized));
        }
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(info) => {
            // A request we parsed gets a signed answer, one SingleResponse per CertID,
            // with its nonce when it has one.
            let parsed = OcspResponse::from_der(&response).expect("response is DER");
            assert_eq!(parsed.response_status, OcspResponseStatus::Successful);
            let bytes = parsed.response_bytes.expect("response bytes");
            assert_eq!(bytes.response_type.to_string(), OID_BASIC);
            let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
                .expect("basic response is DER");
            let answer = basic.tbs_response_data;
            let request = OcspRequest::from_der(data).expect("a request we parsed");
            assert_eq!(answer.responses.len(), request.tbs_request.request_list.len());
            assert!(info.serials.len() <= answer.responses.len());
            assert_eq!(answer.response_extensions.is_some(), info.has_nonce);
        }
    }
});

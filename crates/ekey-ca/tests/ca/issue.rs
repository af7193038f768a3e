//! Issuance checked by OpenSSL and pkilint.

use chrono::Utc;
use ekey_ca::{KeyAlgorithm, parse_csr};

use crate::support::*;

fn verify_chain(fx: &Fixture, cert: &std::path::Path) -> String {
    run_ok(openssl(&[
        "verify",
        "-x509_strict",
        "-purpose",
        "sslclient",
        "-CAfile",
        fx.root_pem().to_str().unwrap(),
        "-untrusted",
        fx.issuing_pem().to_str().unwrap(),
        cert.to_str().unwrap(),
    ]))
}

#[test]
fn p256_certificate_verifies_and_carries_the_profile() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let csr_path = fx.openssl_csr("ent", P256, &[]);
    let csr = parse_csr(&std::fs::read(&csr_path).unwrap()).unwrap();
    assert_eq!(csr.algorithm, KeyAlgorithm::EcdsaP256);
    assert_eq!(csr.subject_cn.as_deref(), Some(ENTERPRISE));
    assert_eq!(csr.subject_serial_number.as_deref(), Some(CREDIT_CODE));
    csr.check_subject(ENTERPRISE, CREDIT_CODE).unwrap();

    let issued = fx.issue_spki(csr.spki_der.clone(), Utc::now());
    assert_eq!(issued.serial_hex.len(), 32);
    assert_eq!((issued.not_after - issued.not_before).num_days(), 730);
    let cert = write(&fx.path("ent.pem"), issued.pem().as_bytes());

    let out = verify_chain(&fx, &cert);
    assert!(out.contains(": OK"), "{out}");

    let text = run_ok(openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-text",
        "-nameopt",
        "utf8,sep_comma_plus_space",
    ]));
    for expected in [
        &format!("Subject: C=CN, O={ENTERPRISE}, CN={ENTERPRISE}, serialNumber={CREDIT_CODE}"),
        "X509v3 Key Usage: critical",
        "Digital Signature, Non Repudiation",
        "TLS Web Client Authentication, E-mail Protection",
        "CA:FALSE",
        "X509v3 CRL Distribution Points",
        "URI:http://127.0.0.1:8080/crl/issuing.crl",
        "OCSP - URI:http://127.0.0.1:8080/ocsp",
        "CA Issuers - URI:http://127.0.0.1:8080/ca/issuing.crt",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
        "ecdsa-with-SHA256",
        "Issuer: C=CN, O=某某电子认证服务有限公司, CN=测试签发证书",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // The serial OpenSSL shows is ours.
    let serial = run_ok(openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-serial",
    ]));
    assert_eq!(
        serial.trim(),
        format!("serial={}", issued.serial_hex.to_uppercase())
    );

    // pkilint on every certificate the CA makes.
    let ocsp = write(&fx.path("ocsp.der"), fx.ca.ocsp_der());
    let issuing = write(&fx.path("issuing.der"), fx.ca.issuing_der());
    let root = write(&fx.path("root.der"), fx.ca.root_der());
    for file in [&cert, &issuing, &ocsp, &root] {
        let notes = pkilint("lint_pkix_cert", &[], file);
        eprintln!("pkilint {}:\n{notes}", file.display());
    }
}

#[test]
fn csr_with_unknown_extensions_is_accepted_and_they_are_dropped() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let csr_path = fx.openssl_csr(
        "ext",
        P256,
        &[
            "-addext",
            "1.2.3.4.5.6.7=ASN1:UTF8String:ignored",
            "-addext",
            "1.2.3.4.5.6.8=critical,ASN1:NULL",
            "-addext",
            "subjectAltName=DNS:evil.example",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    let text = run_ok(openssl(&[
        "req",
        "-in",
        csr_path.to_str().unwrap(),
        "-noout",
        "-text",
    ]));
    assert!(
        text.contains("1.2.3.4.5.6.7"),
        "the CSR should carry the extension:\n{text}"
    );

    let csr = parse_csr(&std::fs::read(&csr_path).unwrap()).unwrap();
    let issued = fx.issue_spki(csr.spki_der, Utc::now());
    let cert = write(&fx.path("ext.pem"), issued.pem().as_bytes());
    let out = verify_chain(&fx, &cert);
    assert!(out.contains(": OK"), "{out}");
    let text = run_ok(openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-text",
    ]));
    for absent in ["1.2.3.4.5.6", "evil.example", "CA:TRUE"] {
        assert!(
            !text.contains(absent),
            "{absent} leaked into the certificate:\n{text}"
        );
    }
}

#[test]
fn der_csr_is_accepted_too() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let csr_path = fx.openssl_csr("der", P256, &["-outform", "DER"]);
    let csr = parse_csr(&std::fs::read(&csr_path).unwrap()).unwrap();
    assert_eq!(csr.key_bits, 256);
}

#[test]
fn rsa_ca_issues_for_rsa_and_p256_keys() {
    let fx = Fixture::new(KeyAlgorithm::Rsa2048);
    assert_eq!(fx.ca.algorithm(), KeyAlgorithm::Rsa2048);
    let (_, rsa_cert) = fx.issue_for_new_key(
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (_, ec_cert) = fx.issue_for_new_key("ec", P256);
    for cert in [&rsa_cert, &ec_cert] {
        let out = verify_chain(&fx, cert);
        assert!(out.contains(": OK"), "{out}");
        let text = run_ok(openssl(&[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-noout",
            "-text",
        ]));
        assert!(text.contains("sha256WithRSAEncryption"), "{text}");
        pkilint("lint_pkix_cert", &[], cert);
    }
    for (name, der) in [
        ("root.der", fx.ca.root_der()),
        ("issuing.der", fx.ca.issuing_der()),
        ("ocsp.der", fx.ca.ocsp_der()),
    ] {
        pkilint("lint_pkix_cert", &[], &write(&fx.path(name), der));
    }

    // CRL and OCSP signed with RSA keys verify as well.
    crate::crl::check_crl_round_trip(&fx);
    crate::ocsp::check_good_response(&fx, &ec_cert);
}

//! CRLs checked by OpenSSL and pkilint.

use chrono::{Duration, Utc};
use ekey_ca::{KeyAlgorithm, RevocationReason, RevokedEntry, Serial};

use crate::support::*;

/// Issues two certificates, revokes one of them and two other serials, and checks the
/// CRL with `openssl crl -verify`, `openssl verify -crl_check` and pkilint.
pub fn check_crl_round_trip(fx: &Fixture) {
    let (revoked, revoked_pem) = fx.issue_for_new_key("revoked", P256);
    let (_, good_pem) = fx.issue_for_new_key("good", P256);
    let now = Utc::now();
    let other1 = Serial::random().unwrap();
    let other2 = Serial::from_hex("7F:00:00:00:00:00:00:00:00:01").unwrap();
    let entries = vec![
        RevokedEntry {
            serial: Serial::from_hex(&revoked.serial_hex).unwrap(),
            revoked_at: now - Duration::minutes(5),
            reason: RevocationReason::KeyCompromise,
        },
        RevokedEntry {
            serial: other1.clone(),
            revoked_at: now - Duration::days(1),
            reason: RevocationReason::Superseded,
        },
        RevokedEntry {
            serial: other2.clone(),
            revoked_at: now - Duration::days(2),
            reason: RevocationReason::CessationOfOperation,
        },
    ];
    let der = fx.ca.crl(&entries, 7, now).unwrap();
    let crl_der = write(&fx.path("issuing.crl"), &der);
    let crl_pem = fx.path("issuing.crl.pem");
    crl_to_pem(&crl_der, &crl_pem);

    let chain = fx.chain_pem();
    let out = run_ok(openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl_der.to_str().unwrap(),
        "-CAfile",
        chain.to_str().unwrap(),
        "-noout",
        "-verify",
    ]));
    assert!(out.contains("verify OK"), "{out}");

    let text = run_ok(openssl(&[
        "crl",
        "-in",
        crl_pem.to_str().unwrap(),
        "-noout",
        "-text",
    ]));
    for expected in [
        format!("Serial Number: {}", revoked.serial_hex.to_uppercase()),
        format!("Serial Number: {}", other1.to_hex().to_uppercase()),
        format!("Serial Number: {}", other2.to_hex().to_uppercase()),
        "Key Compromise".to_string(),
        "Superseded".to_string(),
        "Cessation Of Operation".to_string(),
        "X509v3 CRL Number: \n                7".to_string(),
        "Version 2 (0x1)".to_string(),
        "X509v3 Authority Key Identifier".to_string(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }

    let verify = |cert: &std::path::Path| {
        openssl(&[
            "verify",
            "-x509_strict",
            "-crl_check",
            "-CAfile",
            fx.root_pem().to_str().unwrap(),
            "-untrusted",
            fx.issuing_pem().to_str().unwrap(),
            "-CRLfile",
            crl_pem.to_str().unwrap(),
            cert.to_str().unwrap(),
        ])
    };
    let out = verify(&revoked_pem);
    let text = output_text(&out);
    assert!(!out.status.success(), "revoked certificate passed:\n{text}");
    assert!(text.contains("certificate revoked"), "{text}");
    let text = run_ok(verify(&good_pem));
    assert!(text.contains(": OK"), "{text}");

    let notes = pkilint("lint_crl", &["-t", "CRL", "-p", "PKIX"], &crl_der);
    eprintln!("pkilint notes:\n{notes}");
}

#[test]
fn crl_verifies_lists_reasons_and_revokes() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    check_crl_round_trip(&fx);
}

#[test]
fn empty_crl_verifies_and_lints() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let der = fx.ca.crl(&[], 1, Utc::now()).unwrap();
    let crl = write(&fx.path("empty.crl"), &der);
    let chain = fx.chain_pem();
    let out = run_ok(openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl.to_str().unwrap(),
        "-CAfile",
        chain.to_str().unwrap(),
        "-noout",
        "-verify",
        "-nextupdate",
        "-lastupdate",
    ]));
    assert!(out.contains("verify OK"), "{out}");
    pkilint("lint_crl", &["-t", "CRL", "-p", "PKIX"], &crl);
}

#[test]
fn crl_next_update_follows_the_config() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let this_update = chrono::DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z")
        .unwrap()
        .with_timezone(&Utc);
    let der = fx.ca.crl(&[], 2, this_update).unwrap();
    let crl = write(&fx.path("n.crl"), &der);
    let out = run_ok(openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl.to_str().unwrap(),
        "-noout",
        "-lastupdate",
        "-nextupdate",
    ]));
    assert!(out.contains("lastUpdate=Jan  2 03:04:05 2030 GMT"), "{out}");
    assert!(out.contains("nextUpdate=Jan  3 03:04:05 2030 GMT"), "{out}");
}

#[test]
fn remove_from_crl_is_refused_in_a_full_crl() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let entry = RevokedEntry {
        serial: Serial::random().unwrap(),
        revoked_at: Utc::now(),
        reason: RevocationReason::RemoveFromCrl,
    };
    let err = fx.ca.crl(&[entry], 3, Utc::now()).unwrap_err();
    assert_eq!(err.code(), "ekey.ca.crl_reason");
}

#[test]
fn crl_with_many_entries_encodes_and_verifies() {
    // Size, not speed: speed is measured in bench/, not in tests.
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let now = Utc::now();
    let entries: Vec<RevokedEntry> = (0..20_000)
        .map(|_| RevokedEntry {
            serial: Serial::random().unwrap(),
            revoked_at: now,
            reason: RevocationReason::KeyCompromise,
        })
        .collect();
    let der = fx.ca.crl(&entries, 9, now).unwrap();
    let crl = write(&fx.path("big.crl"), &der);
    let chain = fx.chain_pem();
    let out = run_ok(openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl.to_str().unwrap(),
        "-CAfile",
        chain.to_str().unwrap(),
        "-noout",
        "-verify",
    ]));
    assert!(out.contains("verify OK"), "{out}");
}

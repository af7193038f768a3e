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

/// Issue 15, item 6: a new CA publishes the root's CRL (ARL), which OpenSSL and pkilint
/// accept; the issuing CA points to it; the root key can be written elsewhere (and the CA
/// still opens without it); `renew_root_crl` signs the next one with the root key only;
/// a CA made before the ARL existed gets one at start while its root key is at hand.
#[test]
fn the_root_crl_is_signed_ahead_and_the_root_key_can_live_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let offline = dir.path().join("offline");
    let cfg = config(KeyAlgorithm::EcdsaP256);
    let root_pass = ekey_ca::Passphrase::new("another passphrase for the root").unwrap();
    let now = Utc::now();
    let ca = ekey_ca::Authority::create_with_root_key(
        &ca_dir,
        &passphrase(),
        &cfg,
        now,
        Some((&offline, &root_pass)),
    )
    .unwrap();
    assert!(!ca_dir.join("root.key.pem").exists());
    assert!(offline.join("root.key.pem").exists());
    let arl = ekey_ca::read_root_crl(
        ca.root_der(),
        &std::fs::read(ca_dir.join("root.crl")).unwrap(),
    )
    .unwrap();
    assert_eq!(arl.number, 1);
    assert_eq!(
        arl.next_update - arl.this_update,
        Duration::days(i64::from(ekey_ca::DEFAULT_ROOT_CRL_DAYS))
    );
    let root_pem = write(&dir.path().join("root.pem"), ca.root_pem().as_bytes());
    let out = run_ok(openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        ca_dir.join("root.crl").to_str().unwrap(),
        "-CAfile",
        root_pem.to_str().unwrap(),
        "-noout",
        "-text",
    ]));
    assert!(out.contains("verify OK"), "{out}");
    pkilint(
        "lint_crl",
        &["-t", "CRL", "-p", "PKIX"],
        &ca_dir.join("root.crl"),
    );
    let issuing = write(&dir.path().join("issuing.pem"), ca.issuing_pem().as_bytes());
    let text = run_ok(openssl(&[
        "x509",
        "-in",
        issuing.to_str().unwrap(),
        "-noout",
        "-text",
    ]));
    assert!(
        text.contains("X509v3 CRL Distribution Points") && text.contains("/crl/root.crl"),
        "{text}"
    );
    pkilint("lint_pkix_cert", &[], &issuing);
    // The CA opens without its root key.
    ekey_ca::Authority::load(&ca_dir, &passphrase(), &cfg).unwrap();
    // Nothing to do at start: the root key is not there.
    assert_eq!(
        ekey_ca::ensure_root_crl(&ca_dir, &passphrase(), now).unwrap(),
        None
    );

    // The next ARL, with the root key only: the CA passphrase does not open it, the
    // issuing key is not the root's.
    let later = now + Duration::days(300);
    let wrong = ekey_ca::renew_root_crl(
        &ca_dir,
        &offline.join("root.key.pem"),
        &passphrase(),
        later,
        365,
        None,
    )
    .unwrap_err();
    assert_eq!(wrong.code(), "ekey.ca.passphrase");
    let not_root = ekey_ca::renew_root_crl(
        &ca_dir,
        &ca_dir.join("issuing.key.pem"),
        &passphrase(),
        later,
        365,
        None,
    )
    .unwrap_err();
    assert_eq!(not_root.code(), "ekey.ca.key_mismatch");
    let next = ekey_ca::renew_root_crl(
        &ca_dir,
        &offline.join("root.key.pem"),
        &root_pass,
        later,
        400,
        None,
    )
    .unwrap();
    assert_eq!(next.number, 2);
    assert_eq!(next.next_update - next.this_update, Duration::days(400));
    let served = ekey_ca::read_root_crl(
        ca.root_der(),
        &std::fs::read(ca_dir.join("root.crl")).unwrap(),
    )
    .unwrap();
    assert_eq!(served, next);

    // A CA made before ARLs (root key beside the others, no root.crl) gets one at start,
    // and only when it needs one.
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    std::fs::remove_file(fx.ca_dir().join("root.crl")).unwrap();
    let made = ekey_ca::ensure_root_crl(&fx.ca_dir(), &passphrase(), now)
        .unwrap()
        .unwrap();
    assert_eq!(made.number, 1);
    assert_eq!(
        ekey_ca::ensure_root_crl(&fx.ca_dir(), &passphrase(), now + Duration::days(100)).unwrap(),
        None
    );
    let renewed = ekey_ca::ensure_root_crl(&fx.ca_dir(), &passphrase(), now + Duration::days(200))
        .unwrap()
        .unwrap();
    assert_eq!(renewed.number, 2);
}

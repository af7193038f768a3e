//! OCSP responses checked by `openssl ocsp` and pkilint.

use std::path::Path;

use chrono::{Duration, Utc};
use ekey_ca::{
    CertStatus, KeyAlgorithm, OcspErrorStatus, RevocationReason, Serial, ocsp_error_response,
};

use crate::support::*;

/// `openssl ocsp -reqout` for `certs` issued by `fx`'s issuing CA.
fn request(fx: &Fixture, name: &str, certs: &[&Path], extra: &[&str]) -> std::path::PathBuf {
    let req = fx.path(&format!("{name}.req"));
    let issuing = fx.issuing_pem();
    let mut args = vec!["ocsp", "-issuer", issuing.to_str().unwrap()];
    args.extend_from_slice(extra);
    for cert in certs {
        args.extend_from_slice(&["-cert", cert.to_str().unwrap()]);
    }
    args.extend_from_slice(&["-reqout", req.to_str().unwrap()]);
    run_ok(openssl(&args));
    req
}

/// Checks a response with `openssl ocsp` twice: against the request file (`-reqin`:
/// signature, chain and nonce echo), then against `certs` to print each status.
/// (With `-cert`, openssl builds its own request and ignores `-reqin`, so one run
/// cannot do both.) `extra` goes to the second run (digest, time checks).
fn check(fx: &Fixture, req: &Path, resp: &Path, certs: &[&Path], extra: &[&str]) -> String {
    let chain = fx.chain_pem();
    let issuing = fx.issuing_pem();
    let verified = run_ok(openssl(&[
        "ocsp",
        "-reqin",
        req.to_str().unwrap(),
        "-respin",
        resp.to_str().unwrap(),
        "-CAfile",
        chain.to_str().unwrap(),
    ]));
    assert!(verified.contains("Response verify OK"), "{verified}");
    assert!(!verified.contains("WARNING"), "{verified}");
    let mut args = vec![
        "ocsp",
        "-respin",
        resp.to_str().unwrap(),
        "-issuer",
        issuing.to_str().unwrap(),
        "-CAfile",
        chain.to_str().unwrap(),
        "-no_nonce",
    ];
    args.extend_from_slice(extra);
    for cert in certs {
        args.extend_from_slice(&["-cert", cert.to_str().unwrap()]);
    }
    format!("{verified}{}", run_ok(openssl(&args)))
}

pub fn check_good_response(fx: &Fixture, cert: &Path) {
    let req = request(fx, "one", &[cert], &["-nonce"]);
    let der = fx
        .ca
        .ocsp_response(&std::fs::read(&req).unwrap(), Utc::now(), &|_| {
            CertStatus::Good
        });
    let resp = write(&fx.path("one.resp"), &der);
    let out = check(fx, &req, &resp, &[cert], &[]);
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains(": good"), "{out}");
    let notes = pkilint("lint_ocsp_response", &[], &resp);
    eprintln!("pkilint notes:\n{notes}");
}

#[test]
fn good_revoked_unknown_with_nonce() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let (good, good_pem) = fx.issue_for_new_key("good", P256);
    let (revoked, revoked_pem) = fx.issue_for_new_key("revoked", P256);
    let (_, unknown_pem) = fx.issue_for_new_key("unknown", P256);
    let good_serial = Serial::from_hex(&good.serial_hex).unwrap();
    let revoked_serial = Serial::from_hex(&revoked.serial_hex).unwrap();
    let revoked_at = Utc::now() - Duration::hours(2);
    let lookup = |s: &Serial| {
        if *s == good_serial {
            CertStatus::Good
        } else if *s == revoked_serial {
            CertStatus::Revoked {
                at: revoked_at,
                reason: RevocationReason::KeyCompromise,
            }
        } else {
            CertStatus::Unknown
        }
    };
    let certs = [
        good_pem.as_path(),
        revoked_pem.as_path(),
        unknown_pem.as_path(),
    ];

    for digest in ["-sha1", "-sha256"] {
        let req = request(&fx, &format!("three{digest}"), &certs, &[digest, "-nonce"]);
        let req_der = std::fs::read(&req).unwrap();
        let info = fx.ca.ocsp_request_info(&req_der).unwrap();
        assert!(info.has_nonce);
        assert_eq!(info.serials.len(), 3);
        assert_eq!(info.serials[0], good_serial);
        assert_eq!(fx.ca.ocsp_request_serials(&req_der).unwrap(), info.serials);

        let resp = write(
            &fx.path(&format!("three{digest}.resp")),
            &fx.ca.ocsp_response(&req_der, Utc::now(), &lookup),
        );
        // -reqin makes openssl check that the nonce is echoed.
        let out = check(
            &fx,
            &req,
            &resp,
            &certs,
            &[digest, "-validity_period", "5", "-status_age", "3600"],
        );
        assert!(out.contains("Response verify OK"), "{digest}: {out}");
        assert!(
            out.contains(&format!("{}: good", good_pem.display())),
            "{out}"
        );
        assert!(
            out.contains(&format!("{}: revoked", revoked_pem.display())),
            "{out}"
        );
        assert!(out.contains("Reason: keyCompromise"), "{out}");
        assert!(
            out.contains(&format!("{}: unknown", unknown_pem.display())),
            "{out}"
        );
        assert!(!out.contains("WARNING"), "{out}");

        let text = run_ok(openssl(&[
            "ocsp",
            "-respin",
            resp.to_str().unwrap(),
            "-resp_text",
            "-noverify",
        ]));
        assert!(text.contains("OCSP Nonce"), "{text}");
        assert!(text.contains("Responder Id:"), "{text}");
        assert!(
            text.contains("OCSP Signing"),
            "responder certificate included:\n{text}"
        );
        pkilint("lint_ocsp_response", &[], &resp);
    }

    // Without a nonce the response has none, and still verifies.
    let req = request(&fx, "plain", &[good_pem.as_path()], &["-no_nonce"]);
    let req_der = std::fs::read(&req).unwrap();
    assert!(!fx.ca.ocsp_request_info(&req_der).unwrap().has_nonce);
    let resp = write(
        &fx.path("plain.resp"),
        &fx.ca.ocsp_response(&req_der, Utc::now(), &lookup),
    );
    let out = check(&fx, &req, &resp, &[good_pem.as_path()], &[]);
    assert!(
        out.contains("Response verify OK") && out.contains(": good"),
        "{out}"
    );
    let text = run_ok(openssl(&[
        "ocsp",
        "-respin",
        resp.to_str().unwrap(),
        "-resp_text",
        "-noverify",
    ]));
    assert!(!text.contains("OCSP Nonce"), "{text}");
}

#[test]
fn nonce_mismatch_is_detected_by_openssl() {
    // Guards the test above: openssl really compares nonces with -reqin.
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let (_, cert) = fx.issue_for_new_key("c", P256);
    let req1 = request(&fx, "r1", &[cert.as_path()], &["-nonce"]);
    let req2 = request(&fx, "r2", &[cert.as_path()], &["-nonce"]);
    let der = fx
        .ca
        .ocsp_response(&std::fs::read(&req1).unwrap(), Utc::now(), &|_| {
            CertStatus::Good
        });
    let resp = write(&fx.path("r1.resp"), &der);
    let chain = fx.chain_pem();
    let out = output_text(&openssl(&[
        "ocsp",
        "-reqin",
        req2.to_str().unwrap(),
        "-respin",
        resp.to_str().unwrap(),
        "-CAfile",
        chain.to_str().unwrap(),
    ]));
    assert!(out.contains("Nonce Verify error"), "{out}");
}

#[test]
fn garbage_is_malformed_request() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    for garbage in [
        &b""[..],
        b"hello",
        &[0x30, 0x03, 0x02, 0x01],
        &[0x30, 0x00],
        &[0xff; 64],
    ] {
        let der = fx
            .ca
            .ocsp_response(garbage, Utc::now(), &|_| CertStatus::Good);
        assert_eq!(der, ocsp_error_response(OcspErrorStatus::MalformedRequest));
        let err = fx.ca.ocsp_request_serials(garbage).unwrap_err();
        assert_eq!(err.code(), "ekey.ca.ocsp_malformed");
    }
    let resp = write(
        &fx.path("malformed.resp"),
        &fx.ca
            .ocsp_response(b"garbage", Utc::now(), &|_| CertStatus::Good),
    );
    let text = output_text(&openssl(&[
        "ocsp",
        "-respin",
        resp.to_str().unwrap(),
        "-resp_text",
        "-noverify",
    ]));
    assert!(text.contains("malformedrequest (1)"), "{text}");
    pkilint("lint_ocsp_response", &[], &resp);
}

#[test]
fn another_cas_certificate_is_unauthorized() {
    let ours = Fixture::new(KeyAlgorithm::EcdsaP256);
    let theirs = Fixture::new(KeyAlgorithm::EcdsaP256);
    let (_, foreign) = theirs.issue_for_new_key("foreign", P256);
    let req = request(&theirs, "foreign", &[foreign.as_path()], &["-nonce"]);
    let req_der = std::fs::read(&req).unwrap();
    let called = std::cell::Cell::new(false);
    let der = ours.ca.ocsp_response(&req_der, Utc::now(), &|_| {
        called.set(true);
        CertStatus::Good
    });
    assert!(
        !called.get(),
        "the store must not be asked about another CA's serials"
    );
    assert_eq!(der, ocsp_error_response(OcspErrorStatus::Unauthorized));
    let resp = write(&ours.path("foreign.resp"), &der);
    let text = output_text(&openssl(&[
        "ocsp",
        "-respin",
        resp.to_str().unwrap(),
        "-resp_text",
        "-noverify",
    ]));
    assert!(text.contains("unauthorized (6)"), "{text}");
    pkilint("lint_ocsp_response", &[], &resp);
    assert_eq!(
        ours.ca.ocsp_request_serials(&req_der).unwrap_err().code(),
        "ekey.ca.ocsp_unauthorized"
    );
    // The right CA answers the same request.
    let der = theirs
        .ca
        .ocsp_response(&req_der, Utc::now(), &|_| CertStatus::Good);
    let resp = write(&theirs.path("foreign.resp"), &der);
    let out = check(&theirs, &req, &resp, &[foreign.as_path()], &[]);
    assert!(
        out.contains("Response verify OK") && out.contains(": good"),
        "{out}"
    );
}

#[test]
fn revoked_without_reason_for_unspecified() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let (_, cert) = fx.issue_for_new_key("u", P256);
    let req = request(&fx, "u", &[cert.as_path()], &[]);
    let der = fx
        .ca
        .ocsp_response(&std::fs::read(&req).unwrap(), Utc::now(), &|_| {
            CertStatus::Revoked {
                at: Utc::now(),
                reason: RevocationReason::Unspecified,
            }
        });
    let resp = write(&fx.path("u.resp"), &der);
    let out = check(&fx, &req, &resp, &[cert.as_path()], &[]);
    assert!(out.contains(": revoked"), "{out}");
    assert!(!out.contains("Reason:"), "{out}");
    pkilint("lint_ocsp_response", &[], &resp);
}

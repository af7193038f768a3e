//! Bad input gets a clear, distinct error and changes nothing.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use ekey_ca::{CaError, IssueRequest, KeyAlgorithm, Serial, parse_csr};
use ekey_domain::Lang;

use crate::support::*;

fn csr_error(input: &[u8]) -> CaError {
    parse_csr(input).expect_err("must be refused")
}

fn assert_messages(err: &CaError) {
    let zh = err.message(Lang::Zh);
    let en = err.message(Lang::En);
    assert!(
        !zh.is_empty() && !en.is_empty() && zh != en,
        "{}: {zh} / {en}",
        err.code()
    );
    assert!(err.code().starts_with("ekey.ca."), "{}", err.code());
}

#[test]
fn csr_with_a_bad_signature() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let csr = fx.openssl_csr("sig", P256, &["-outform", "DER"]);
    let good = std::fs::read(&csr).unwrap();
    parse_csr(&good).unwrap();

    // Last octet: inside the signature's s value.
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0x01;
    let err = csr_error(&bad);
    assert_eq!(err.code(), "ekey.ca.csr_signature");
    assert_messages(&err);

    // The subject changed after signing (the credit code's last character).
    let mut bad = good.clone();
    let at = bad
        .windows(CREDIT_CODE.len())
        .position(|w| w == CREDIT_CODE.as_bytes())
        .unwrap()
        + CREDIT_CODE.len()
        - 1;
    bad[at] = b'Y';
    assert_eq!(csr_error(&bad).code(), "ekey.ca.csr_signature");
}

#[test]
fn csr_with_a_wrong_key_type() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    for (name, args, shown) in [
        (
            "p384",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
            "P-384",
        ),
        ("ed25519", &["-algorithm", "ED25519"][..], "Ed25519"),
        (
            "rsa1024",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"][..],
            "RSA-1024",
        ),
    ] {
        let csr = fx.openssl_csr(name, args, &[]);
        let err = csr_error(&std::fs::read(csr).unwrap());
        assert_eq!(err.code(), "ekey.ca.csr_key_unsupported", "{name}: {err}");
        assert!(err.to_string().contains(shown), "{name}: {err}");
        assert!(
            err.message(Lang::Zh).contains(shown),
            "{}",
            err.message(Lang::Zh)
        );
        assert_messages(&err);
    }
}

#[test]
fn csr_garbage() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let (_, cert_pem) = fx.issue_for_new_key("a-cert", P256);
    let cert = std::fs::read(cert_pem).unwrap();
    let mut random = vec![0x30u8, 0x82, 0x01, 0x00];
    random.extend((0..256u32).map(|i| (i * 37 % 251) as u8));
    for garbage in [
        &b""[..],
        b"hello",
        b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n",
        &[0x30, 0x00],
        &random,
        &cert, // a certificate is not a request
        &vec![b'A'; ekey_ca::MAX_CSR_LEN + 1],
    ] {
        let err = csr_error(garbage);
        assert_eq!(err.code(), "ekey.ca.csr_malformed", "{err}");
        assert_messages(&err);
    }
}

#[test]
fn csr_for_another_enterprise() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let csr = parse_csr(&std::fs::read(fx.openssl_csr("m", P256, &[])).unwrap()).unwrap();
    let err = csr.check_subject("另一家公司", CREDIT_CODE).unwrap_err();
    assert_eq!(err.code(), "ekey.ca.csr_subject_mismatch");
    assert!(err.to_string().contains("commonName"));
    let err = csr
        .check_subject(ENTERPRISE, "91110000600037341L")
        .unwrap_err();
    assert_eq!(err.code(), "ekey.ca.csr_subject_mismatch");
    assert!(err.to_string().contains("serialNumber"));
    csr.check_subject(ENTERPRISE, &CREDIT_CODE.to_lowercase())
        .unwrap();
}

#[test]
fn issue_refuses_bad_keys_names_and_validity() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let csr = parse_csr(&std::fs::read(fx.openssl_csr("k", P256, &[])).unwrap()).unwrap();
    let request = |spki: Vec<u8>, name: &str, code: &str| IssueRequest {
        spki_der: spki,
        enterprise_name: name.to_string(),
        credit_code: code.to_string(),
        common_name: None,
        serial: Serial::random().unwrap(),
        not_before: Utc::now(),
    };
    let cases: Vec<(IssueRequest, &str)> = vec![
        (
            request(b"junk".to_vec(), ENTERPRISE, CREDIT_CODE),
            "ekey.ca.public_key",
        ),
        (
            request(Vec::new(), ENTERPRISE, CREDIT_CODE),
            "ekey.ca.public_key",
        ),
        (
            request(csr.spki_der.clone(), "", CREDIT_CODE),
            "ekey.ca.name_invalid",
        ),
        (
            request(csr.spki_der.clone(), " 有空格 ", CREDIT_CODE),
            "ekey.ca.name_invalid",
        ),
        (
            request(csr.spki_der.clone(), &"长".repeat(65), CREDIT_CODE),
            "ekey.ca.name_invalid",
        ),
        (
            request(csr.spki_der.clone(), "换行\n公司", CREDIT_CODE),
            "ekey.ca.name_invalid",
        ),
        (
            request(csr.spki_der.clone(), ENTERPRISE, "信用代码"),
            "ekey.ca.name_invalid",
        ),
        (
            request(csr.spki_der.clone(), ENTERPRISE, ""),
            "ekey.ca.name_invalid",
        ),
        (
            IssueRequest {
                not_before: Utc::now() + Duration::days(3650),
                ..request(csr.spki_der.clone(), ENTERPRISE, CREDIT_CODE)
            },
            "ekey.ca.validity",
        ),
        (
            IssueRequest {
                not_before: Utc::now() - Duration::days(2),
                ..request(csr.spki_der.clone(), ENTERPRISE, CREDIT_CODE)
            },
            "ekey.ca.validity",
        ),
        (
            IssueRequest {
                common_name: Some(String::new()),
                ..request(csr.spki_der.clone(), ENTERPRISE, CREDIT_CODE)
            },
            "ekey.ca.name_invalid",
        ),
    ];
    for (req, code) in cases {
        let err = fx.ca.issue(req.clone()).unwrap_err();
        assert_eq!(err.code(), code, "{req:?}: {err}");
        assert_messages(&err);
    }
    // A P-384 key handed over directly (not through a CSR) is refused as well.
    let p384 = fx.openssl_csr(
        "p384",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        &[],
    );
    let key = fx.path("p384.key");
    let spki = run_ok_bytes(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
    ]);
    let _ = p384;
    let err = fx
        .ca
        .issue(request(spki, ENTERPRISE, CREDIT_CODE))
        .unwrap_err();
    assert_eq!(err.code(), "ekey.ca.public_key");
    // A valid request still works after all that.
    fx.ca
        .issue(request(csr.spki_der, ENTERPRISE, CREDIT_CODE))
        .unwrap();
}

fn run_ok_bytes(args: &[&str]) -> Vec<u8> {
    let out = openssl(args);
    assert!(out.status.success(), "{}", output_text(&out));
    out.stdout
}

#[test]
fn serial_from_hex_rejects_junk() {
    for junk in [
        "",
        "xyz",
        "0x",
        "12 34",
        "-1",
        "0",
        "0000",
        &"ff".repeat(20),
        "1:",
        "é1",
    ] {
        let err = Serial::from_hex(junk).unwrap_err();
        assert_eq!(err.code(), "ekey.ca.serial_invalid", "{junk:?}");
        assert_messages(&err);
    }
    let s = Serial::from_hex("3A:0F:9c").unwrap();
    assert_eq!(s.to_hex(), "3a0f9c");
    assert_eq!("3a0f9c".parse::<Serial>().unwrap(), s);
}

#[test]
fn ten_thousand_random_serials_are_unique_and_positive() {
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let s = Serial::random().unwrap();
        let bytes = s.as_bytes();
        assert_eq!(bytes.len(), 16, "{s}");
        assert!(bytes[0] < 0x80 && bytes[0] != 0, "{s}");
        assert_eq!(s.to_der_integer(), bytes, "no padding octet needed");
        assert_eq!(Serial::from_hex(&s.to_hex()).unwrap(), s);
        assert!(seen.insert(s.to_hex()), "duplicate serial {s}");
    }
}

#[test]
fn csr_subject_in_bmpstring_is_read_too() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let cnf = fx.path("bmp.cnf");
    std::fs::write(
        &cnf,
        "[req]\nprompt = no\nutf8 = yes\nstring_mask = default\ndistinguished_name = dn\n[dn]\nCN = 另一家公司\n",
    )
    .unwrap();
    let key = fx.path("bmp.key");
    let csr = fx.path("bmp.csr");
    let mut args = vec!["genpkey"];
    args.extend_from_slice(P256);
    args.extend_from_slice(&["-out", key.to_str().unwrap()]);
    run_ok(openssl(&args));
    run_ok(openssl(&[
        "req",
        "-new",
        "-config",
        cnf.to_str().unwrap(),
        "-key",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]));
    let asn1 = run_ok(openssl(&["asn1parse", "-in", csr.to_str().unwrap()]));
    assert!(asn1.contains("BMPSTRING"), "{asn1}");
    let parsed = parse_csr(&std::fs::read(&csr).unwrap()).unwrap();
    assert_eq!(parsed.subject_cn.as_deref(), Some("另一家公司"));
    let err = parsed.check_subject(ENTERPRISE, CREDIT_CODE).unwrap_err();
    assert_eq!(err.code(), "ekey.ca.csr_subject_mismatch");
    parsed.check_subject("另一家公司", CREDIT_CODE).unwrap();
}

//! Properties of the CA's input parsers over generated values: serial numbers in every
//! written form, and PKCS#10 requests whose subject is written in every ASN.1 string type
//! (a name in BMPString or UniversalString must read as the same name as in UTF8String, so
//! that it can neither slip past nor wrongly fail the subject check). The fuzz targets
//! `fuzz/fuzz_targets/csr.rs` and `ocsp_request.rs` explore arbitrary bytes.

use ekey_ca::{KeyAlgorithm, Serial, parse_csr};
use proptest::prelude::*;
use rcgen::string::{BmpString, PrintableString, UniversalString};
use rcgen::{CertificateParams, DnType, DnValue, KeyPair};

/// A serial's magnitude: 1 to 20 octets, no leading zero, top bit clear at 20 octets.
fn magnitude() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..=20).prop_filter_map("a valid serial", |mut v| {
        if v[0] == 0 {
            v[0] = 1;
        }
        if v.len() == 20 && v[0] & 0x80 != 0 {
            v[0] &= 0x7f;
            if v[0] == 0 {
                v[0] = 1;
            }
        }
        Some(v)
    })
}

/// Hex as people write serials: with colons between octets, upper case, a `0x` prefix,
/// leading zeros, surrounding blanks.
fn written(hex: &str, colons: bool, upper: bool, prefix: bool, zeros: usize) -> String {
    let mut body = format!("{}{hex}", "0".repeat(zeros * 2));
    if colons {
        body = body
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
    }
    if upper {
        body = body.to_uppercase();
    }
    let prefix = if prefix { "0x" } else { "" };
    format!(" {prefix}{body}\t")
}

/// Names as enterprises have them: Chinese, Latin, digits, brackets (full- and half-width).
fn name() -> impl Strategy<Value = String> {
    "[某上海进出口贸易有限公司（）()A-Za-z0-9 .&-]{1,40}"
        .prop_map(|s| s.trim().to_string())
        .prop_filter("not blank", |s| !s.is_empty())
}

/// A P-256 CSR whose subject has `cn` as commonName, in the given string type
/// (0 UTF8String, 1 BMPString, 2 UniversalString, 3 PrintableString when ASCII).
fn csr_with_cn(cn: &str, string_type: u8) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![]).unwrap();
    let value = match string_type {
        1 => DnValue::BmpString(BmpString::try_from(cn).unwrap()),
        2 => DnValue::UniversalString(UniversalString::try_from(cn).unwrap()),
        3 => match PrintableString::try_from(cn) {
            Ok(p) => DnValue::PrintableString(p),
            Err(_) => DnValue::Utf8String(cn.to_string()),
        },
        _ => DnValue::Utf8String(cn.to_string()),
    };
    params.distinguished_name.push(DnType::CommonName, value);
    params
        .serialize_request(&key)
        .unwrap()
        .der()
        .as_ref()
        .to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_serial_reads_back_from_any_written_form(
        bytes in magnitude(),
        colons in any::<bool>(),
        upper in any::<bool>(),
        prefix in any::<bool>(),
        zeros in 0usize..3,
    ) {
        let serial = Serial::from_magnitude(&bytes).unwrap();
        let hex = serial.to_hex();
        prop_assert_eq!(Serial::from_hex(&hex).unwrap(), serial.clone());
        let text = written(&hex, colons, upper, prefix, zeros);
        prop_assert_eq!(Serial::from_hex(&text).unwrap(), serial.clone());
        prop_assert_eq!(Serial::from_der_integer(&serial.to_der_integer()).unwrap(), serial.clone());
        prop_assert!(serial.to_der_integer().len() <= 20);
    }

    #[test]
    fn no_text_makes_the_serial_parser_panic(text in "[0-9a-fA-FxX: \u{3000}g-]{0,50}|\\PC{0,60}") {
        if let Ok(serial) = Serial::from_hex(&text) {
            prop_assert_eq!(Serial::from_hex(&serial.to_hex()).unwrap(), serial.clone());
            prop_assert!(serial.to_der_integer().len() <= 20);
        }
    }

    #[test]
    fn der_integers_that_are_not_positive_serials_are_refused(content in proptest::collection::vec(any::<u8>(), 0..24)) {
        match Serial::from_der_integer(&content) {
            Ok(serial) => {
                prop_assert!(content[0] & 0x80 == 0);
                prop_assert!(content.iter().any(|b| *b != 0));
                prop_assert_eq!(serial.as_bytes().first().copied().unwrap_or(0) != 0, true);
            }
            Err(e) => prop_assert_eq!(e.code(), "ekey.ca.serial_invalid"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_csr_subject_reads_the_same_in_every_string_type(
        cn in name(),
        string_type in 0u8..4,
        pem in any::<bool>(),
    ) {
        let der = csr_with_cn(&cn, string_type);
        let input = if pem {
            let b64 = base64_lines(&der);
            format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}-----END CERTIFICATE REQUEST-----\n")
                .into_bytes()
        } else {
            der.clone()
        };
        let csr = parse_csr(&input).unwrap();
        prop_assert_eq!(csr.algorithm, KeyAlgorithm::EcdsaP256);
        prop_assert_eq!(csr.key_bits, 256);
        prop_assert_eq!(csr.subject_cn.as_deref(), Some(cn.as_str()));
        prop_assert!(csr.check_subject(&cn, "91310000MA1FL5LX4N").is_ok());
        let other = format!("{cn}X");
        prop_assert!(csr.check_subject(&other, "91310000MA1FL5LX4N").is_err());
    }

    #[test]
    fn a_csr_cut_short_or_with_one_byte_changed_is_refused(
        cn in name(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let der = csr_with_cn(&cn, 0);
        let short = &der[..cut.index(der.len())];
        prop_assert!(parse_csr(short).is_err());
        // A change anywhere is either malformed DER or a signature that no longer verifies
        // (a flipped bit in the signature's own encoding included).
        let mut changed = der.clone();
        changed[flip.index(der.len())] ^= 1 << bit;
        if let Ok(csr) = parse_csr(&changed) {
            // Only an equivalent re-reading survives: the same key, the same name.
            let original = parse_csr(&der).unwrap();
            prop_assert_eq!(csr.spki_der, original.spki_der);
            prop_assert_eq!(csr.subject_cn, original.subject_cn);
        }
    }
}

/// Standard base64 in 64-character lines, as PEM wants it.
fn base64_lines(der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    let mut out = String::new();
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out
}

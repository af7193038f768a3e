//! Reading what `openssl crl -noout -text` prints, the peer the tests check our CRLs with.

/// The CRL number and the revoked serials (lower-case hex without leading zeros, as the
/// server writes them) of `openssl crl -noout -text` output. Panics, naming the text, when
/// it holds no CRL number.
pub fn number_and_serials(text: &str) -> (u64, Vec<String>) {
    let number = text
        .lines()
        .skip_while(|l| !l.contains("X509v3 CRL Number"))
        .nth(1)
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    let number = u64::from_str_radix(number.trim_start_matches("0x"), 16)
        .or_else(|_| number.parse())
        .unwrap_or_else(|_| panic!("CRL number in {text}"));
    let serials = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| {
            s.trim()
                .to_ascii_lowercase()
                .trim_start_matches('0')
                .to_string()
        })
        .collect();
    (number, serials)
}

#[cfg(test)]
mod tests {
    #[test]
    fn number_and_serials_are_read_from_openssl_text() {
        let text = "Certificate Revocation List (CRL):\n        CRL extensions:\n            \
                    X509v3 CRL Number: \n                12\nRevoked Certificates:\n    \
                    Serial Number: 00AB12\n        Revocation Date: x\n    Serial Number: 7F\n";
        assert_eq!(
            super::number_and_serials(text),
            (0x12, vec!["ab12".to_string(), "7f".to_string()])
        );
    }
}

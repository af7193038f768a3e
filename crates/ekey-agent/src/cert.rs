//! What the agent reads from a certificate: serial, subject, expiry, public key.

use ekey_token::{CsrSubject, TokenError};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

/// The parts of a certificate the agent shows or uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number, lower-case hex of its magnitude (no leading zero octets), as the
    /// server stores and shows it.
    pub serial: String,
    /// The subject as text (`C=CN, O=…, CN=…, serialNumber=…`).
    pub subject: String,
    /// End of validity, RFC 3339 (UTC).
    pub not_after: String,
    /// The subject fields, for a renewal CSR with the same subject.
    pub csr_subject: CsrSubject,
    /// The public key point (the BIT STRING content of the SubjectPublicKeyInfo).
    pub public_key: Vec<u8>,
}

/// Parses a DER certificate.
pub fn parse(der: &[u8]) -> Result<CertInfo, TokenError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| TokenError::CertificateInvalid)?;
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    let common_name = first(&mut subject.iter_common_name()).unwrap_or_default();
    let csr_subject = CsrSubject {
        country: first(&mut subject.iter_country()),
        organization: first(&mut subject.iter_organization()),
        common_name,
        serial_number: first(
            &mut subject.iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER),
        ),
    };
    let not_after = chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    Ok(CertInfo {
        serial: serial_hex(cert.raw_serial()),
        subject: subject.to_string(),
        not_after,
        csr_subject,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

/// The public key point of a SubjectPublicKeyInfo (DER), to compare keys whatever the
/// encoding details of the parameters.
pub fn spki_point(spki: &[u8]) -> Option<Vec<u8>> {
    SubjectPublicKeyInfo::from_der(spki)
        .ok()
        .map(|(_, s)| s.subject_public_key.data.to_vec())
}

/// Lower-case hex of a DER INTEGER's magnitude, without leading zero octets.
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    hex::encode(&raw[start..])
}

/// A serial as text in one form (lower case, no `:`, no leading zeros), to compare
/// serials written by different programs.
pub fn normalize_serial(text: &str) -> String {
    let digits: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    digits.trim_start_matches('0').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_in_one_form() {
        assert_eq!(serial_hex(&[0x00, 0x8a, 0x01]), "8a01");
        assert_eq!(normalize_serial("00:8A:01"), "8a01");
        assert_eq!(
            normalize_serial("8a01"),
            normalize_serial(&serial_hex(&[0, 0x8a, 1]))
        );
    }
}

//! PKCS#10 certificate requests: verified with x509-parser, and only the public key is
//! kept (rcgen's CSR parser refuses unknown extensions; we ignore them instead).

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use crate::certgen::pem_or_der;
use crate::error::{CaError, Result};
use crate::signer::{KeyAlgorithm, KeyRefusal, inspect_parsed_spki};

/// Largest CSR accepted (a 8192-bit RSA CSR with extensions is well under 8 KiB).
pub const MAX_CSR_LEN: usize = 64 * 1024;

/// What the CA takes from a verified certificate request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csr {
    /// The subject public key as a canonical DER SubjectPublicKeyInfo, ready for
    /// [`crate::IssueRequest::spki_der`].
    pub spki_der: Vec<u8>,
    /// The first commonName of the CSR subject, if any.
    pub subject_cn: Option<String>,
    /// The first serialNumber (2.5.4.5) of the CSR subject, if any.
    pub subject_serial_number: Option<String>,
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// Key size in bits (256 for P-256, the modulus size for RSA).
    pub key_bits: u32,
}

impl Csr {
    /// Refuses a request whose subject names another enterprise: a commonName present must
    /// equal `expected_cn` (normally the enterprise name), a serialNumber present must equal
    /// the credit code (case-insensitive). Absent attributes are fine: tokens often make
    /// CSRs with an empty subject, and the CA writes the subject itself.
    pub fn check_subject(&self, expected_cn: &str, credit_code: &str) -> Result<()> {
        if let Some(cn) = &self.subject_cn
            && cn.trim() != expected_cn.trim()
        {
            return Err(CaError::CsrSubjectMismatch {
                field: "commonName",
            });
        }
        if let Some(sn) = &self.subject_serial_number
            && !sn.trim().eq_ignore_ascii_case(credit_code.trim())
        {
            return Err(CaError::CsrSubjectMismatch {
                field: "serialNumber",
            });
        }
        Ok(())
    }
}

/// Parses and verifies a PEM (`CERTIFICATE REQUEST`) or DER PKCS#10 request.
///
/// Errors, each with its own code: not a CSR → `ekey.ca.csr_malformed`; a key other than
/// ECDSA P-256 or RSA 2048–8192 → `ekey.ca.csr_key_unsupported`; a self-signature that
/// does not verify → `ekey.ca.csr_signature`. Unknown extensions and attributes are ignored.
pub fn parse_csr(pem_or_der_input: &[u8]) -> Result<Csr> {
    let malformed = |detail: String| CaError::CsrMalformed { detail };
    if pem_or_der_input.len() > MAX_CSR_LEN {
        return Err(malformed(format!("larger than {MAX_CSR_LEN} bytes")));
    }
    let der = pem_or_der(
        pem_or_der_input,
        &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"],
    )
    .map_err(malformed)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| malformed(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(malformed("trailing bytes after the request".into()));
    }
    let info = &csr.certification_request_info;
    if info.version.0 != 0 {
        return Err(malformed(format!("version {}", info.version.0)));
    }
    let key = inspect_parsed_spki(&info.subject_pki).map_err(|r| match r {
        KeyRefusal::Unsupported(detail) => CaError::CsrKeyUnsupported { detail },
        KeyRefusal::Malformed(detail) => malformed(detail),
    })?;
    csr.verify_signature().map_err(|_| CaError::CsrSignature)?;
    Ok(Csr {
        spki_der: key.spki_der(),
        subject_cn: first_attribute(&info.subject, "2.5.4.3"),
        subject_serial_number: first_attribute(&info.subject, "2.5.4.5"),
        algorithm: key.algorithm,
        key_bits: key.bits,
    })
}

fn first_attribute(name: &X509Name<'_>, oid: &str) -> Option<String> {
    name.iter_attributes()
        .find(|a| a.attr_type().to_id_string() == oid)
        .map(attribute_text)
}

/// The attribute's text whatever its string type, so that a name in BMPString cannot slip
/// past [`Csr::check_subject`]; undecodable content becomes U+FFFD (and then mismatches).
fn attribute_text(attr: &AttributeTypeAndValue<'_>) -> String {
    if let Ok(s) = attr.as_str() {
        return s.to_string();
    }
    let data = attr.as_slice();
    match attr.attr_value().header.tag() {
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        Tag::UniversalString => data
            .chunks(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                char::from_u32(u32::from_be_bytes(b)).unwrap_or('\u{fffd}')
            })
            .collect(),
        Tag::T61String => data.iter().map(|b| char::from(*b)).collect(),
        _ => String::from_utf8_lossy(data).into_owned(),
    }
}

//! Certificate profiles and the bridge to rcgen: names, extensions rcgen lacks (AIA,
//! OCSP no-check), and a signing adapter that lints every TBS before the CA key signs it.

use std::cell::RefCell;

use chrono::{DateTime, TimeZone, Utc};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, KeyIdMethod,
    PublicKeyData, SignatureAlgorithm, SigningKey,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use yasna::models::ObjectIdentifier;

use crate::error::{CaError, Result};
use crate::lint::{LintContext, lint_tbs};
use crate::signer::{CaSigner, KeyRefusal, PublicKeyInfo, inspect_spki, verify_signature};

/// Upper bound of X.520 name attributes (ub-common-name, ub-organization-name, ub-serial-number).
pub(crate) const UB_NAME: usize = 64;

const OID_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];
const OID_AIA: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
const OID_AD_OCSP: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1];
const OID_AD_CA_ISSUERS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 2];
const OID_OCSP_NOCHECK: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5];

/// Checks a UTF-8 name attribute (enterprise or CA name): trimmed, 1–64 characters,
/// no control characters.
pub(crate) fn check_name(field: &'static str, value: &str) -> Result<()> {
    let invalid = |detail: &str| CaError::NameInvalid {
        field,
        detail: detail.to_string(),
    };
    if value.trim().is_empty() {
        return Err(invalid("empty"));
    }
    if value.trim() != value {
        return Err(invalid("leading or trailing spaces"));
    }
    if value.chars().count() > UB_NAME {
        return Err(invalid("longer than 64 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("control characters"));
    }
    Ok(())
}

/// Checks a value that must be a PrintableString (the credit code as subject serialNumber).
pub(crate) fn check_printable(field: &'static str, value: &str) -> Result<()> {
    let invalid = |detail: &str| CaError::NameInvalid {
        field,
        detail: detail.to_string(),
    };
    if value.is_empty() {
        return Err(invalid("empty"));
    }
    if value.len() > UB_NAME {
        return Err(invalid("longer than 64 characters"));
    }
    let printable = |c: char| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c);
    if !value.chars().all(printable) {
        return Err(invalid("only letters, digits and ' ()+,-./:=? are allowed"));
    }
    Ok(())
}

fn printable(value: &str) -> Result<DnValue> {
    Ok(DnValue::PrintableString(
        value.try_into().map_err(CaError::encoding)?,
    ))
}

/// `C=CN, O=organization, CN=common_name[, serialNumber=serial]`: C and serialNumber as
/// PrintableString, O and CN as UTF8String (Chinese names).
pub(crate) fn subject_dn(
    organization: &str,
    common_name: &str,
    serial_number: Option<&str>,
) -> Result<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, printable("CN")?);
    dn.push(
        DnType::OrganizationName,
        DnValue::Utf8String(organization.to_string()),
    );
    dn.push(
        DnType::CommonName,
        DnValue::Utf8String(common_name.to_string()),
    );
    if let Some(serial) = serial_number {
        dn.push(
            DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec()),
            printable(serial)?,
        );
    }
    Ok(dn)
}

/// authorityInfoAccess (RFC 5280 §4.2.2.1) with an optional OCSP URI and a caIssuers URI.
pub(crate) fn aia_extension(ocsp_url: Option<&str>, ca_issuers_url: &str) -> CustomExtension {
    let content = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            let mut access = |method: &[u64], uri: &str| {
                w.next().write_sequence(|w| {
                    w.next().write_oid(&ObjectIdentifier::from_slice(method));
                    // uniformResourceIdentifier [6] IMPLICIT IA5String
                    w.next()
                        .write_tagged_implicit(yasna::Tag::context(6), |w| w.write_ia5_string(uri));
                });
            };
            if let Some(url) = ocsp_url {
                access(OID_AD_OCSP, url);
            }
            access(OID_AD_CA_ISSUERS, ca_issuers_url);
        })
    });
    CustomExtension::from_oid_content(OID_AIA, content)
}

/// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): value NULL, not critical.
pub(crate) fn ocsp_nocheck_extension() -> CustomExtension {
    CustomExtension::from_oid_content(OID_OCSP_NOCHECK, vec![0x05, 0x00])
}

/// Base parameters shared by every profile: validity, serial, RFC 7093 SKI.
pub(crate) fn base_params(
    subject_key: &PublicKeyInfo,
    serial: &crate::Serial,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.not_before = to_offset(not_before)?;
    params.not_after = to_offset(not_after)?;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(serial.as_bytes()));
    params.distinguished_name = DistinguishedName::new();
    params.key_identifier_method = KeyIdMethod::PreSpecified(subject_key.key_id());
    Ok(params)
}

pub(crate) fn to_offset(t: DateTime<Utc>) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| CaError::Validity {
        detail: format!("time out of range: {e}"),
    })
}

/// Truncates to whole seconds (certificates, CRLs and OCSP carry no fractions).
pub(crate) fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp(), 0).single().unwrap_or(t)
}

pub(crate) fn from_timestamp(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A subject public key as rcgen wants it.
pub(crate) struct SubjectKey {
    algorithm: &'static SignatureAlgorithm,
    subject_public_key: Vec<u8>,
}

impl SubjectKey {
    pub(crate) fn new(info: &PublicKeyInfo) -> SubjectKey {
        SubjectKey {
            algorithm: info.algorithm.rcgen(),
            subject_public_key: info.subject_public_key.clone(),
        }
    }
}

impl PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.subject_public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

/// Puts a [`CaSigner`] behind rcgen's `SigningKey`, optionally linting each TBS first.
/// rcgen's error type cannot carry ours, so the real cause is parked here and picked up
/// with [`RcgenKey::error_from`].
pub(crate) struct RcgenKey<'a> {
    signer: &'a dyn CaSigner,
    public: SubjectKey,
    lint: Option<&'a LintContext>,
    failure: RefCell<Option<CaError>>,
}

impl<'a> RcgenKey<'a> {
    pub(crate) fn new(signer: &'a dyn CaSigner, lint: Option<&'a LintContext>) -> Result<Self> {
        let info = inspect_spki(signer.spki_der()).map_err(|r| CaError::KeyUnsupported {
            detail: match r {
                KeyRefusal::Malformed(d) | KeyRefusal::Unsupported(d) => d,
            },
        })?;
        if info.algorithm != signer.algorithm() {
            return Err(CaError::KeyUnsupported {
                detail: "signer algorithm does not match its public key".into(),
            });
        }
        Ok(RcgenKey {
            signer,
            public: SubjectKey::new(&info),
            lint,
            failure: RefCell::new(None),
        })
    }

    pub(crate) fn error_from(&self, e: rcgen::Error) -> CaError {
        self.failure
            .borrow_mut()
            .take()
            .unwrap_or_else(|| CaError::encoding(e))
    }
}

impl PublicKeyData for RcgenKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.public.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.public.algorithm
    }
}

impl SigningKey for RcgenKey<'_> {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        if let Some(ctx) = self.lint {
            let findings = lint_tbs(msg, ctx);
            if !findings.is_empty() {
                *self.failure.borrow_mut() = Some(CaError::Lint(findings));
                return Err(rcgen::Error::RemoteKeyError);
            }
        }
        self.signer.sign(msg).map_err(|e| {
            *self.failure.borrow_mut() = Some(e);
            rcgen::Error::RemoteKeyError
        })
    }
}

/// Builds, lints and signs a certificate issued by the CA certificate `issuer_der`
/// (whose key is `signer`), then checks the signature with the issuer's public key.
pub(crate) fn sign_issued(
    params: &CertificateParams,
    subject: &PublicKeyInfo,
    issuer_der: &[u8],
    signer: &dyn CaSigner,
    lint: &LintContext,
) -> Result<Vec<u8>> {
    let key = RcgenKey::new(signer, Some(lint))?;
    let issuer = rcgen::Issuer::from_ca_cert_der(&CertificateDer::from(issuer_der), key)
        .map_err(|e| CaError::ca_cert(format!("issuer certificate not usable: {e}")))?;
    let cert = params
        .signed_by(&SubjectKey::new(subject), &issuer)
        .map_err(|e| issuer.key().error_from(e))?;
    let der = cert.der().to_vec();
    check_signature(&der, signer)?;
    Ok(der)
}

/// Builds, lints and self-signs a root certificate.
pub(crate) fn sign_self(
    params: &CertificateParams,
    signer: &dyn CaSigner,
    lint: &LintContext,
) -> Result<Vec<u8>> {
    let key = RcgenKey::new(signer, Some(lint))?;
    let cert = params.self_signed(&key).map_err(|e| key.error_from(e))?;
    let der = cert.der().to_vec();
    check_signature(&der, signer)?;
    Ok(der)
}

/// The signature of a freshly signed certificate must verify with the signer's public
/// key: catches a key backend that returns a wrong encoding (e.g. raw `r‖s`).
fn check_signature(cert_der: &[u8], signer: &dyn CaSigner) -> Result<()> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(CaError::encoding)?;
    verify_signature(
        signer.spki_der(),
        signer.algorithm(),
        cert.tbs_certificate.as_ref(),
        &cert.signature_value.data,
    )
}

/// PEM with the given label (64-column base64, LF line ends).
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> Result<String> {
    pkcs8::der::pem::encode_string(label, pkcs8::der::pem::LineEnding::LF, der)
        .map_err(CaError::encoding)
}

/// Accepts plain DER (a SEQUENCE, taken as is) or text holding one PEM block with one
/// of `labels` (surrounding text allowed).
pub(crate) fn pem_or_der(input: &[u8], labels: &[&str]) -> std::result::Result<Vec<u8>, String> {
    if input.first() == Some(&0x30) {
        return Ok(input.to_vec());
    }
    let text = std::str::from_utf8(input).map_err(|_| "neither PEM nor DER".to_string())?;
    let Some(start) = text.find("-----BEGIN") else {
        return Err("neither PEM nor DER".into());
    };
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(&input[start..]).map_err(|e| format!("bad PEM: {e}"))?;
    if !labels.contains(&pem.label.as_str()) {
        return Err(format!(
            "PEM label {:?}, expected {}",
            pem.label,
            labels.join(" or ")
        ));
    }
    Ok(pem.contents)
}

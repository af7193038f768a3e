//! Our own RFC 5280 checks, run on every `TBSCertificate` *before* it is signed (the
//! signer refuses to sign a TBS that has findings), in the spirit of boulder's
//! "lint before sign". pkilint runs over the same outputs in the test suite; these checks
//! are the ones that must hold in production, without Python.

use std::collections::HashSet;
use std::fmt;

use x509_parser::certificate::{TbsCertificate, X509Certificate};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::error::{CaError, Result};
use crate::signer::{KeyAlgorithm, KeyRefusal, inspect_parsed_spki, key_id};

/// The kind of certificate being linted; each has its own required extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Self-signed root CA.
    Root,
    /// The issuing (subordinate) CA.
    SubordinateCa,
    /// The delegated OCSP responder (id-kp-OCSPSigning, id-pkix-ocsp-nocheck).
    OcspResponder,
    /// An enterprise (end-entity) certificate.
    Enterprise,
}

impl Profile {
    fn is_ca(self) -> bool {
        matches!(self, Profile::Root | Profile::SubordinateCa)
    }
}

/// One broken rule. `code` is stable (e.g. `serial.negative`), `detail` is for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LintFinding {
    /// Stable identifier of the rule.
    pub code: &'static str,
    /// What exactly is wrong.
    pub detail: String,
}

impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// What the lint needs to know about the issuer.
#[derive(Clone, Debug)]
pub struct LintContext {
    profile: Profile,
    algorithm: KeyAlgorithm,
    /// DER of the issuer's subject Name; `None` for a self-signed root (issuer = subject).
    issuer_subject: Option<Vec<u8>>,
    /// Issuer validity (Unix seconds); `None` for a root.
    issuer_validity: Option<(i64, i64)>,
    /// The issuer's subject key identifier, which the AKI must repeat.
    issuer_key_id: Option<Vec<u8>>,
}

impl LintContext {
    /// Context for a certificate of `profile` issued by the CA certificate `issuer_der`.
    pub fn for_issuer(issuer_der: &[u8], profile: Profile) -> Result<LintContext> {
        let (_, issuer) = X509Certificate::from_der(issuer_der)
            .map_err(|e| CaError::ca_cert(format!("issuer certificate unreadable: {e}")))?;
        let info = inspect_parsed_spki(issuer.public_key()).map_err(|r| match r {
            KeyRefusal::Malformed(d) | KeyRefusal::Unsupported(d) => {
                CaError::KeyUnsupported { detail: d }
            }
        })?;
        let issuer_key_id = subject_key_id(&issuer.tbs_certificate)
            .unwrap_or_else(|| key_id(&issuer.public_key().subject_public_key.data));
        Ok(LintContext {
            profile,
            algorithm: info.algorithm,
            issuer_subject: Some(issuer.subject().as_raw().to_vec()),
            issuer_validity: Some((
                issuer.validity().not_before.timestamp(),
                issuer.validity().not_after.timestamp(),
            )),
            issuer_key_id: Some(issuer_key_id),
        })
    }

    /// Context for a self-signed root made with a key of `algorithm`.
    pub fn self_signed(algorithm: KeyAlgorithm) -> LintContext {
        LintContext {
            profile: Profile::Root,
            algorithm,
            issuer_subject: None,
            issuer_validity: None,
            issuer_key_id: None,
        }
    }

    /// The profile linted against.
    pub fn profile(&self) -> Profile {
        self.profile
    }
}

fn subject_key_id(tbs: &TbsCertificate<'_>) -> Option<Vec<u8>> {
    tbs.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

/// Lints a signed certificate's TBS part (for tests and imports).
pub fn lint_certificate(cert_der: &[u8], ctx: &LintContext) -> Vec<LintFinding> {
    match X509Certificate::from_der(cert_der) {
        Ok((_, cert)) => lint_tbs(cert.tbs_certificate.as_ref(), ctx),
        Err(e) => vec![finding(
            "tbs.malformed",
            format!("unreadable certificate: {e}"),
        )],
    }
}

fn finding(code: &'static str, detail: impl Into<String>) -> LintFinding {
    LintFinding {
        code,
        detail: detail.into(),
    }
}

/// Extensions this CA knows and may mark critical.
const KNOWN_EXTENSIONS: &[&str] = &[
    "2.5.29.14",            // subjectKeyIdentifier
    "2.5.29.35",            // authorityKeyIdentifier
    "2.5.29.15",            // keyUsage
    "2.5.29.37",            // extKeyUsage
    "2.5.29.19",            // basicConstraints
    "2.5.29.31",            // cRLDistributionPoints
    "1.3.6.1.5.5.7.1.1",    // authorityInfoAccess
    "1.3.6.1.5.5.7.48.1.5", // id-pkix-ocsp-nocheck
    "2.5.29.17",            // subjectAltName
    "2.5.29.32",            // certificatePolicies
];

const OID_COUNTRY: &str = "2.5.4.6";
const OID_COMMON_NAME: &str = "2.5.4.3";
const OID_ORGANIZATION: &str = "2.5.4.10";
const OID_SERIAL_NUMBER: &str = "2.5.4.5";
const OID_AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";
const OID_AD_CA_ISSUERS: &str = "1.3.6.1.5.5.7.48.2";

/// Lints a DER `TBSCertificate`. An empty result means the certificate may be signed.
pub fn lint_tbs(tbs_der: &[u8], ctx: &LintContext) -> Vec<LintFinding> {
    let tbs = match TbsCertificate::from_der(tbs_der) {
        Ok(([], tbs)) => tbs,
        Ok(_) => {
            return vec![finding(
                "tbs.malformed",
                "trailing bytes after TBSCertificate",
            )];
        }
        Err(e) => {
            return vec![finding(
                "tbs.malformed",
                format!("unreadable TBSCertificate: {e}"),
            )];
        }
    };
    let mut out = Vec::new();

    if tbs.version.0 != 2 {
        out.push(finding(
            "version.not_v3",
            format!("version {}", tbs.version.0 + 1),
        ));
    }
    lint_serial(tbs.raw_serial(), &mut out);
    lint_signature_algorithm(&tbs, ctx, &mut out);

    // Issuer.
    let subject_raw = tbs.subject.as_raw();
    let expected_issuer = ctx.issuer_subject.as_deref().unwrap_or(subject_raw);
    if tbs.issuer.as_raw() != expected_issuer {
        out.push(finding(
            "issuer.mismatch",
            "issuer name differs from the CA's subject name",
        ));
    }
    if tbs.issuer.iter_attributes().next().is_none() {
        out.push(finding("issuer.empty", "issuer name is empty"));
    }

    // Validity.
    let nb = tbs.validity.not_before.timestamp();
    let na = tbs.validity.not_after.timestamp();
    if nb >= na {
        out.push(finding(
            "validity.order",
            "notBefore is not before notAfter",
        ));
    }
    if let Some((inb, ina)) = ctx.issuer_validity
        && (nb < inb || na > ina)
    {
        out.push(finding(
            "validity.outside_issuer",
            "validity is not within the issuing CA's validity",
        ));
    }

    lint_subject(&tbs.subject, ctx.profile, &mut out);

    // Public key.
    let spk = tbs.subject_pki.subject_public_key.data.as_ref();
    if let Err(KeyRefusal::Malformed(d) | KeyRefusal::Unsupported(d)) =
        inspect_parsed_spki(&tbs.subject_pki)
    {
        out.push(finding("spki.unsupported", d));
    }

    lint_extensions(&tbs, ctx, spk, &mut out);
    out
}

fn lint_serial(raw: &[u8], out: &mut Vec<LintFinding>) {
    match raw {
        [] => out.push(finding("serial.empty", "serial number has no octets")),
        [first, ..] if first & 0x80 != 0 => {
            out.push(finding("serial.negative", "serial number is negative"))
        }
        _ if raw.iter().all(|b| *b == 0) => {
            out.push(finding("serial.zero", "serial number is zero"))
        }
        [0, second, ..] if second & 0x80 == 0 => out.push(finding(
            "serial.not_minimal",
            "serial number has a redundant leading zero",
        )),
        _ => {}
    }
    if raw.len() > 20 {
        out.push(finding(
            "serial.too_long",
            format!("serial number of {} octets, at most 20 allowed", raw.len()),
        ));
    }
}

fn lint_signature_algorithm(
    tbs: &TbsCertificate<'_>,
    ctx: &LintContext,
    out: &mut Vec<LintFinding>,
) {
    let oid = tbs.signature.algorithm.to_id_string();
    let expected = match ctx.algorithm {
        KeyAlgorithm::EcdsaP256 => "1.2.840.10045.4.3.2",
        KeyAlgorithm::Rsa2048 => "1.2.840.113549.1.1.11",
    };
    if oid != expected {
        out.push(finding(
            "signature.algorithm_mismatch",
            format!("TBS signature algorithm {oid}, the CA key signs {expected}"),
        ));
    }
    let params_ok = match (ctx.algorithm, &tbs.signature.parameters) {
        (KeyAlgorithm::EcdsaP256, None) => true,
        (KeyAlgorithm::Rsa2048, Some(p)) => p.tag() == x509_parser::der_parser::asn1_rs::Tag::Null,
        _ => false,
    };
    if !params_ok {
        out.push(finding(
            "signature.parameters",
            "signature AlgorithmIdentifier parameters are not as RFC 5758 / RFC 4055 require",
        ));
    }
}

fn lint_subject(subject: &X509Name<'_>, profile: Profile, out: &mut Vec<LintFinding>) {
    let mut any = false;
    let mut has_cn = false;
    let mut has_serial = false;
    for attr in subject.iter_attributes() {
        any = true;
        let oid = attr.attr_type().to_id_string();
        let tag = attr.attr_value().header.tag();
        let value = attr.as_str().unwrap_or_default();
        let chars = value.chars().count();
        let printable = tag == x509_parser::der_parser::asn1_rs::Tag::PrintableString;
        match oid.as_str() {
            OID_COUNTRY
                if !printable || chars != 2 || !value.chars().all(|c| c.is_ascii_uppercase()) =>
            {
                out.push(finding(
                    "subject.country_invalid",
                    "countryName must be a two-letter PrintableString",
                ));
            }
            OID_SERIAL_NUMBER => {
                has_serial = true;
                if !printable {
                    out.push(finding(
                        "subject.serial_number_type",
                        "serialNumber must be a PrintableString",
                    ));
                }
                if chars == 0 || chars > 64 {
                    out.push(finding(
                        "subject.attribute_length",
                        "serialNumber length not in 1..=64",
                    ));
                }
            }
            OID_COMMON_NAME | OID_ORGANIZATION => {
                if oid == OID_COMMON_NAME {
                    has_cn = true;
                }
                if chars == 0 || chars > 64 {
                    out.push(finding(
                        "subject.attribute_length",
                        format!("attribute {oid} length {chars} not in 1..=64"),
                    ));
                }
            }
            _ => {}
        }
    }
    if !any {
        out.push(finding("subject.empty", "subject name is empty"));
    } else if !has_cn {
        out.push(finding(
            "subject.no_common_name",
            "subject has no commonName",
        ));
    }
    if profile == Profile::Enterprise && !has_serial {
        out.push(finding(
            "subject.no_serial_number",
            "enterprise subject lacks serialNumber (credit code)",
        ));
    }
}

fn lint_extensions(
    tbs: &TbsCertificate<'_>,
    ctx: &LintContext,
    spk: &[u8],
    out: &mut Vec<LintFinding>,
) {
    let profile = ctx.profile;
    let exts = tbs.extensions();
    if exts.is_empty() {
        out.push(finding(
            "extensions.absent",
            "certificate has no extensions",
        ));
        return;
    }
    let mut seen = HashSet::new();
    for ext in exts {
        let id = ext.oid.to_id_string();
        if !seen.insert(id.clone()) {
            out.push(finding(
                "extensions.duplicate",
                format!("extension {id} appears twice"),
            ));
        }
        if ext.critical && !KNOWN_EXTENSIONS.contains(&id.as_str()) {
            out.push(finding(
                "extensions.unknown_critical",
                format!("unknown extension {id} marked critical"),
            ));
        }
        if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
            out.push(finding(
                "extensions.malformed",
                format!("extension {id}: {error}"),
            ));
        }
    }

    let mut ski = None;
    let mut aki = None;
    let mut ku = None;
    let mut eku = None;
    let mut bc = None;
    let mut crl_dp = false;
    let mut aia = None;
    let mut nocheck = false;
    for ext in exts {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => {
                ski = Some(k.0);
                if ext.critical {
                    out.push(finding(
                        "ski.critical",
                        "subjectKeyIdentifier must not be critical",
                    ));
                }
            }
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = Some(a);
                if ext.critical {
                    out.push(finding(
                        "aki.critical",
                        "authorityKeyIdentifier must not be critical",
                    ));
                }
            }
            ParsedExtension::KeyUsage(k) => ku = Some((k, ext.critical)),
            ParsedExtension::ExtendedKeyUsage(e) => eku = Some(e),
            ParsedExtension::BasicConstraints(b) => bc = Some((b, ext.critical)),
            ParsedExtension::CRLDistributionPoints(_) => crl_dp = true,
            ParsedExtension::AuthorityInfoAccess(a) => aia = Some(a),
            _ => {}
        }
        if ext.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5" {
            nocheck = true;
            if ext.value != [0x05, 0x00] {
                out.push(finding(
                    "ocsp_nocheck.value",
                    "id-pkix-ocsp-nocheck value must be NULL",
                ));
            }
        }
    }

    // Key identifiers (RFC 7093 method 1 for the keys we certify).
    match ski {
        None => out.push(finding("ski.missing", "subjectKeyIdentifier is missing")),
        Some([]) => out.push(finding("ski.empty", "subjectKeyIdentifier is empty")),
        Some(k) if k != key_id(spk).as_slice() => out.push(finding(
            "ski.not_rfc7093",
            "subjectKeyIdentifier is not the RFC 7093 method 1 identifier of the key",
        )),
        Some(_) => {}
    }
    match (aki, &ctx.issuer_key_id) {
        (None, Some(_)) => out.push(finding("aki.missing", "authorityKeyIdentifier is missing")),
        (Some(a), expected) => {
            let got = a.key_identifier.as_ref().map(|k| k.0);
            let want = expected.as_deref().or(ski);
            if got.is_none() {
                out.push(finding(
                    "aki.no_key_identifier",
                    "authorityKeyIdentifier lacks keyIdentifier",
                ));
            } else if got != want {
                out.push(finding(
                    "aki.mismatch",
                    "authorityKeyIdentifier is not the issuer's key id",
                ));
            }
        }
        (None, None) => {}
    }

    // Basic constraints.
    match (bc, profile.is_ca()) {
        (None, true) => out.push(finding(
            "basic_constraints.missing",
            "CA without basicConstraints",
        )),
        (Some((b, critical)), true) => {
            if !b.ca {
                out.push(finding(
                    "basic_constraints.not_ca",
                    "CA certificate with cA FALSE",
                ));
            }
            if !critical {
                out.push(finding(
                    "basic_constraints.not_critical",
                    "basicConstraints of a CA must be critical",
                ));
            }
        }
        (Some((b, _)), false) => {
            if b.ca {
                out.push(finding(
                    "basic_constraints.ca_on_end_entity",
                    "end-entity certificate with cA TRUE",
                ));
            }
            if b.path_len_constraint.is_some() {
                out.push(finding(
                    "basic_constraints.path_len_on_end_entity",
                    "pathLenConstraint on an end entity",
                ));
            }
        }
        (None, false) => {}
    }

    // Key usage, and its consistency with the CA flag and the EKU.
    match ku {
        None => out.push(finding("key_usage.missing", "keyUsage is missing")),
        Some((k, critical)) => {
            if !critical {
                out.push(finding(
                    "key_usage.not_critical",
                    "keyUsage should be critical",
                ));
            }
            if k.flags == 0 {
                out.push(finding("key_usage.empty", "keyUsage has no bit set"));
            }
            if profile.is_ca() {
                if !k.key_cert_sign() {
                    out.push(finding(
                        "key_usage.ca_without_cert_sign",
                        "CA without keyCertSign",
                    ));
                }
            } else if k.key_cert_sign() || k.crl_sign() {
                out.push(finding(
                    "key_usage.ca_bits_on_end_entity",
                    "keyCertSign or cRLSign on a certificate that is not a CA",
                ));
            }
            if let Some(e) = eku
                && (e.client_auth || e.email_protection || e.ocsp_signing)
                && !k.digital_signature()
            {
                out.push(finding(
                    "key_usage.eku_inconsistent",
                    "clientAuth, emailProtection or OCSPSigning need digitalSignature",
                ));
            }
            // An uncompressed P-256 point starts with 04; an RSAPublicKey with 30.
            let ec_key = spk.first() == Some(&0x04);
            if ec_key && (k.key_encipherment() || k.data_encipherment()) {
                out.push(finding(
                    "key_usage.encipherment_on_ec",
                    "keyEncipherment/dataEncipherment are meaningless for an EC key",
                ));
            }
        }
    }
    if let Some(e) = eku {
        if e.any {
            out.push(finding(
                "eku.any",
                "anyExtendedKeyUsage is not issued by this CA",
            ));
        }
        if profile.is_ca() {
            out.push(finding(
                "eku.on_ca",
                "this CA does not put extendedKeyUsage on CA certificates",
            ));
        }
    }

    match profile {
        Profile::Enterprise => {
            if !eku.is_some_and(|e| e.client_auth) {
                out.push(finding(
                    "eku.client_auth_missing",
                    "enterprise certificate lacks clientAuth",
                ));
            }
            if eku.is_some_and(|e| e.ocsp_signing || e.server_auth) {
                out.push(finding(
                    "eku.unexpected",
                    "enterprise certificate with serverAuth or OCSPSigning",
                ));
            }
            if !crl_dp {
                out.push(finding(
                    "crl_dp.missing",
                    "cRLDistributionPoints is missing",
                ));
            }
            let methods: Vec<String> = aia
                .map(|a| {
                    a.accessdescs
                        .iter()
                        .filter(|d| matches!(d.access_location, GeneralName::URI(_)))
                        .map(|d| d.access_method.to_id_string())
                        .collect()
                })
                .unwrap_or_default();
            if !methods.iter().any(|m| m == OID_AD_OCSP) {
                out.push(finding(
                    "aia.ocsp_missing",
                    "authorityInfoAccess lacks an OCSP URI",
                ));
            }
            if !methods.iter().any(|m| m == OID_AD_CA_ISSUERS) {
                out.push(finding(
                    "aia.ca_issuers_missing",
                    "authorityInfoAccess lacks a caIssuers URI",
                ));
            }
        }
        Profile::OcspResponder => {
            let only_ocsp = eku.is_some_and(|e| {
                e.ocsp_signing
                    && !(e.any || e.server_auth || e.client_auth || e.code_signing)
                    && !(e.email_protection || e.time_stamping)
                    && e.other.is_empty()
            });
            if !only_ocsp {
                out.push(finding(
                    "eku.ocsp_signing_only",
                    "OCSP responder must have exactly id-kp-OCSPSigning",
                ));
            }
            if !nocheck {
                out.push(finding(
                    "ocsp_nocheck.missing",
                    "OCSP responder lacks id-pkix-ocsp-nocheck",
                ));
            }
        }
        Profile::Root | Profile::SubordinateCa => {}
    }
    if nocheck && profile != Profile::OcspResponder {
        out.push(finding(
            "ocsp_nocheck.unexpected",
            "id-pkix-ocsp-nocheck outside an OCSP responder",
        ));
    }
}

//! OCSP responder (RFC 6960): parses requests, answers for the issuing CA's certificates,
//! signs with the delegated OCSP responder key. x509-ocsp and its `der` 0.7 /
//! `x509-cert` 0.2 types stay inside this module: only DER crosses its boundary.

use chrono::{DateTime, Utc};
use der::asn1::{BitString, GeneralizedTime, OctetString};
use der::{Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, OcspGeneralizedTime, OcspRequest, OcspResponse, ResponderId, ResponseData,
    RevokedInfo, SingleResponse,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::authority::{Authority, OCSP_RESPONSE_VALIDITY};
use crate::certgen::whole_seconds;
use crate::error::{CaError, Result};
use crate::reason::RevocationReason;
use crate::serial::Serial;
use crate::signer::{KeyAlgorithm, sha1, sha256};

/// Largest OCSP request accepted.
pub const MAX_OCSP_REQUEST_LEN: usize = 16 * 1024;
/// Most certificates asked about in one request.
pub const MAX_OCSP_SINGLE_REQUESTS: usize = 50;
/// Largest nonce extension value echoed (RFC 8954: refuse nonces over 128 octets).
const MAX_NONCE_EXTENSION_LEN: usize = 130;

const OID_SHA1: &str = "1.3.14.3.2.26";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_OCSP_NONCE: &str = "1.3.6.1.5.5.7.48.1.2";

/// What the caller's store says about one serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked at `at` for `reason`.
    Revoked {
        /// When the CA revoked it.
        at: DateTime<Utc>,
        /// Why (`unspecified` is sent without a reason).
        reason: RevocationReason,
    },
    /// Never issued by this CA (as far as the store knows).
    Unknown,
}

/// The unsuccessful OCSP response statuses (RFC 6960 §4.2.1), as ready-made DER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcspErrorStatus {
    /// `malformedRequest` (1).
    MalformedRequest,
    /// `internalError` (2).
    InternalError,
    /// `tryLater` (3), e.g. when the store cannot be reached.
    TryLater,
    /// `unauthorized` (6): not a certificate of this CA.
    Unauthorized,
}

/// The DER `OCSPResponse` with only an error status.
pub fn ocsp_error_response(status: OcspErrorStatus) -> Vec<u8> {
    let code = match status {
        OcspErrorStatus::MalformedRequest => 1,
        OcspErrorStatus::InternalError => 2,
        OcspErrorStatus::TryLater => 3,
        OcspErrorStatus::Unauthorized => 6,
    };
    // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED }
    vec![0x30, 0x03, 0x0a, 0x01, code]
}

/// What a request asks, for callers that cache responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspRequestInfo {
    /// The serials asked about, in request order (CertIDs with a serial that cannot be
    /// ours — zero, negative, over 20 octets — are left out).
    pub serials: Vec<Serial>,
    /// Whether the request carries a nonce (its response must then not be cached).
    pub has_nonce: bool,
}

/// Precomputed identifiers of the issuing CA and the responder.
pub(crate) struct OcspIdentity {
    name_sha1: [u8; 20],
    key_sha1: [u8; 20],
    name_sha256: [u8; 32],
    key_sha256: [u8; 32],
    responder_key_hash: [u8; 20],
    responder_cert: x509_cert::Certificate,
    signature_algorithm: AlgorithmIdentifierOwned,
}

impl OcspIdentity {
    pub(crate) fn new(
        issuing_der: &[u8],
        ocsp_der: &[u8],
        algorithm: KeyAlgorithm,
    ) -> Result<OcspIdentity> {
        let (_, issuing) = X509Certificate::from_der(issuing_der).map_err(CaError::encoding)?;
        let (_, responder) = X509Certificate::from_der(ocsp_der).map_err(CaError::encoding)?;
        let name = issuing.subject().as_raw();
        let key = issuing.public_key().subject_public_key.data.as_ref();
        Ok(OcspIdentity {
            name_sha1: sha1(name),
            key_sha1: sha1(key),
            name_sha256: sha256(name),
            key_sha256: sha256(key),
            responder_key_hash: sha1(responder.public_key().subject_public_key.data.as_ref()),
            responder_cert: x509_cert::Certificate::from_der(ocsp_der)
                .map_err(CaError::encoding)?,
            signature_algorithm: AlgorithmIdentifierOwned::from_der(
                algorithm.signature_algorithm_der(),
            )
            .map_err(CaError::encoding)?,
        })
    }
}

enum Refusal {
    Malformed(String),
    Unauthorized,
}

struct ParsedRequest {
    items: Vec<(x509_ocsp::CertId, Option<Serial>)>,
    nonce: Option<Extension>,
}

impl Authority {
    fn parse_ocsp(&self, der: &[u8]) -> std::result::Result<ParsedRequest, Refusal> {
        if der.len() > MAX_OCSP_REQUEST_LEN {
            return Err(Refusal::Malformed(format!(
                "larger than {MAX_OCSP_REQUEST_LEN} bytes"
            )));
        }
        // der 0.7 allocates a primitive value's announced length before reading it: a
        // 108-byte request announcing a 235 MB serial made it allocate 235 MB. Every length
        // is checked against what its parent holds first.
        if !der_lengths_fit(der, 0) {
            return Err(Refusal::Malformed(
                "a DER length exceeds the bytes that hold it".into(),
            ));
        }
        let request = OcspRequest::from_der(der).map_err(|e| Refusal::Malformed(e.to_string()))?;
        let tbs = request.tbs_request;
        if tbs.request_list.is_empty() {
            return Err(Refusal::Malformed("empty request list".into()));
        }
        if tbs.request_list.len() > MAX_OCSP_SINGLE_REQUESTS {
            return Err(Refusal::Malformed(format!(
                "more than {MAX_OCSP_SINGLE_REQUESTS} certificates in one request"
            )));
        }
        let mut nonce = None;
        for ext in tbs.request_extensions.iter().flatten() {
            if ext.extn_id.to_string() == OID_OCSP_NONCE {
                let len = ext.extn_value.as_bytes().len();
                if len == 0 || len > MAX_NONCE_EXTENSION_LEN {
                    return Err(Refusal::Malformed(format!("nonce of {len} octets")));
                }
                nonce = Some(Extension {
                    extn_id: ext.extn_id,
                    critical: false,
                    extn_value: ext.extn_value.clone(),
                });
            } else if ext.critical {
                return Err(Refusal::Malformed(format!(
                    "unsupported critical extension {}",
                    ext.extn_id
                )));
            }
        }
        let id = &self.ocsp_identity;
        let mut items = Vec::with_capacity(tbs.request_list.len());
        for single in tbs.request_list {
            if single
                .single_request_extensions
                .iter()
                .flatten()
                .any(|e| e.critical)
            {
                return Err(Refusal::Malformed(
                    "critical single request extension".into(),
                ));
            }
            let cert_id = single.req_cert;
            let name_hash = cert_id.issuer_name_hash.as_bytes();
            let key_hash = cert_id.issuer_key_hash.as_bytes();
            let ours = match cert_id.hash_algorithm.oid.to_string().as_str() {
                OID_SHA1 => name_hash == id.name_sha1 && key_hash == id.key_sha1,
                OID_SHA256 => name_hash == id.name_sha256 && key_hash == id.key_sha256,
                _ => false,
            };
            if !ours {
                return Err(Refusal::Unauthorized);
            }
            let serial = Serial::from_der_integer(cert_id.serial_number.as_bytes()).ok();
            items.push((cert_id, serial));
        }
        Ok(ParsedRequest { items, nonce })
    }

    /// Parses a DER OCSP request: which serials it asks about and whether it has a nonce.
    /// A request that is not DER OCSP → `ekey.ca.ocsp_malformed`; one about another CA's
    /// certificates → `ekey.ca.ocsp_unauthorized`.
    pub fn ocsp_request_info(&self, request_der: &[u8]) -> Result<OcspRequestInfo> {
        match self.parse_ocsp(request_der) {
            Ok(p) => Ok(OcspRequestInfo {
                serials: p.items.into_iter().filter_map(|(_, s)| s).collect(),
                has_nonce: p.nonce.is_some(),
            }),
            Err(Refusal::Malformed(detail)) => Err(CaError::OcspMalformed { detail }),
            Err(Refusal::Unauthorized) => Err(CaError::OcspUnauthorized),
        }
    }

    /// The serials a DER OCSP request asks about (see [`Authority::ocsp_request_info`]).
    pub fn ocsp_request_serials(&self, request_der: &[u8]) -> Result<Vec<Serial>> {
        self.ocsp_request_info(request_der).map(|i| i.serials)
    }

    /// Answers a DER OCSP request with a DER OCSP response, never failing: garbage →
    /// `malformedRequest`; a CertID of another CA → `unauthorized`; otherwise a basic
    /// response signed by the delegated responder (certificate included), one
    /// SingleResponse per CertID as `lookup` says, thisUpdate = producedAt = `now`,
    /// nextUpdate one hour later, the request's nonce echoed. `lookup` is not called for
    /// serials that cannot be ours (answered `unknown`).
    pub fn ocsp_response(
        &self,
        request_der: &[u8],
        now: DateTime<Utc>,
        lookup: &dyn Fn(&Serial) -> CertStatus,
    ) -> Vec<u8> {
        let parsed = match self.parse_ocsp(request_der) {
            Ok(p) => p,
            Err(Refusal::Malformed(_)) => {
                return ocsp_error_response(OcspErrorStatus::MalformedRequest);
            }
            Err(Refusal::Unauthorized) => {
                return ocsp_error_response(OcspErrorStatus::Unauthorized);
            }
        };
        self.sign_ocsp(parsed, now, lookup)
            .unwrap_or_else(|_| ocsp_error_response(OcspErrorStatus::InternalError))
    }

    fn sign_ocsp(
        &self,
        parsed: ParsedRequest,
        now: DateTime<Utc>,
        lookup: &dyn Fn(&Serial) -> CertStatus,
    ) -> Result<Vec<u8>> {
        let now = whole_seconds(now);
        let this_update = generalized(now)?;
        let next_update = generalized(now + OCSP_RESPONSE_VALIDITY)?;
        let mut responses = Vec::with_capacity(parsed.items.len());
        for (cert_id, serial) in parsed.items {
            let status = serial.as_ref().map_or(CertStatus::Unknown, lookup);
            let cert_status = match status {
                CertStatus::Good => x509_ocsp::CertStatus::good(),
                CertStatus::Unknown => x509_ocsp::CertStatus::unknown(),
                CertStatus::Revoked { at, reason } => x509_ocsp::CertStatus::Revoked(RevokedInfo {
                    revocation_time: generalized(whole_seconds(at))?,
                    revocation_reason: crl_reason(reason),
                }),
            };
            responses.push(SingleResponse {
                cert_id,
                cert_status,
                this_update,
                next_update: Some(next_update),
                single_extensions: None,
            });
        }
        let id = &self.ocsp_identity;
        let tbs = ResponseData {
            version: x509_ocsp::Version::V1,
            responder_id: ResponderId::ByKey(
                OctetString::new(id.responder_key_hash.to_vec()).map_err(CaError::encoding)?,
            ),
            produced_at: this_update,
            responses,
            response_extensions: parsed.nonce.map(|n| vec![n]),
        };
        let tbs_der = tbs.to_der().map_err(CaError::encoding)?;
        let signature = self.ocsp_signer().sign(&tbs_der)?;
        let basic = BasicOcspResponse {
            tbs_response_data: tbs,
            signature_algorithm: id.signature_algorithm.clone(),
            signature: BitString::from_bytes(&signature).map_err(CaError::encoding)?,
            certs: Some(vec![id.responder_cert.clone()]),
        };
        OcspResponse::successful(basic)
            .and_then(|r| r.to_der())
            .map_err(CaError::encoding)
    }
}

fn generalized(t: DateTime<Utc>) -> Result<OcspGeneralizedTime> {
    let secs = u64::try_from(t.timestamp()).map_err(|_| CaError::Validity {
        detail: "time before 1970".into(),
    })?;
    let dt = der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map_err(CaError::encoding)?;
    Ok(OcspGeneralizedTime(GeneralizedTime::from_date_time(dt)))
}

fn crl_reason(reason: RevocationReason) -> Option<CrlReason> {
    Some(match reason {
        // RFC 5280 §5.3.1: leave the reason out rather than say "unspecified".
        RevocationReason::Unspecified => return None,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::CaCompromise => CrlReason::CaCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::CertificateHold => CrlReason::CertificateHold,
        RevocationReason::RemoveFromCrl => CrlReason::RemoveFromCRL,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => CrlReason::AaCompromise,
    })
}

/// Whether `der` is a sequence of TLVs whose lengths each fit in the bytes that follow them,
/// recursively inside constructed values (and, at most 32 levels deep). Checked before a DER
/// decoder that allocates an announced length up front sees the bytes.
fn der_lengths_fit(mut der: &[u8], depth: usize) -> bool {
    if depth > 32 {
        return false;
    }
    while !der.is_empty() {
        let tag = der[0];
        let mut at = 1;
        if tag & 0x1f == 0x1f {
            // High tag numbers: base-128 continuation bytes.
            while at < der.len() && der[at] & 0x80 != 0 {
                at += 1;
            }
            at += 1;
        }
        let Some(&first) = der.get(at) else {
            return false;
        };
        at += 1;
        let len = if first & 0x80 == 0 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || at + n > der.len() {
                return false;
            }
            let len = der[at..at + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            at += n;
            len
        };
        if len > der.len() - at {
            return false;
        }
        let value = &der[at..at + len];
        if tag & 0x20 != 0 && !der_lengths_fit(value, depth + 1) {
            return false;
        }
        der = &der[at + len..];
    }
    true
}

#[cfg(test)]
mod der_tests {
    use super::der_lengths_fit;

    #[test]
    fn a_length_larger_than_its_parent_is_refused_before_decoding() {
        // From the fuzz smoke (ocsp_request, out-of-memory): a serial announcing 235 MB.
        let oom: &[u8] = &[
            0x30, 0x6a, 0x30, 0x68, 0x30, 0x41, 0x30, 0x3f, 0x30, 0x3d, 0x30, 0x09, 0x06, 0x05,
            0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14, 0x9d, 0x89, 0xb7, 0x83, 0xf1,
            0x6c, 0x79, 0x3b, 0x5b, 0xed, 0x35, 0x01, 0x9f, 0xbc, 0x5b, 0x70, 0xa7, 0xbf, 0x78,
            0xf1, 0x04, 0x14, 0x6b, 0x91, 0x93, 0x86, 0xee, 0xe0, 0x32, 0xff, 0xa8, 0x1d, 0x2c,
            0x4a, 0xa5, 0x71, 0x37, 0x0f, 0xb9, 0xf4, 0x31, 0x39, 0x02, 0x84, 0x0e, 0x03, 0x02,
            0x1a, 0x05, 0x00, 0x04, 0x14, 0x9d, 0x89, 0x30, 0x0d, 0x06, 0x09, 0x74, 0x00, 0x00,
            0x00, 0x4d, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x51, 0x84, 0x2c, 0xa4, 0x51, 0xa5,
            0x14, 0x8a, 0xd0, 0x20, 0x51, 0x59, 0xd4, 0x49, 0x6d, 0xae,
        ];
        assert!(!der_lengths_fit(oom, 0));
        // A well-formed nesting passes: SEQUENCE { INTEGER 5, OCTET STRING "ab" }.
        assert!(der_lengths_fit(
            &[0x30, 0x07, 0x02, 0x01, 0x05, 0x04, 0x02, b'a', b'b'],
            0
        ));
        // A long-form length that runs past the end.
        assert!(!der_lengths_fit(&[0x30, 0x82, 0x01], 0));
        assert!(!der_lengths_fit(&[0x30, 0x03, 0x02, 0x05, 0x00], 0));
    }
}

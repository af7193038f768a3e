//! PKCS#10 certificate requests signed by a token: rcgen builds the request around a
//! [`rcgen::SigningKey`] whose `sign` asks the token.

use std::cell::RefCell;

use rcgen::string::PrintableString;
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, PublicKeyData, SigningKey};

use crate::Token;
use crate::crypto;
use crate::error::{Result, TokenError};

/// The subject of a request. The enterprise profile uses C=CN, O = enterprise name,
/// CN, and serialNumber = unified social credit code; only `common_name` is required.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsrSubject {
    /// `countryName` (two letters, e.g. `CN`).
    pub country: Option<String>,
    /// `organizationName`.
    pub organization: Option<String>,
    /// `commonName`.
    pub common_name: String,
    /// `serialNumber` (X.520 2.5.4.5), printable characters only.
    pub serial_number: Option<String>,
}

/// A PKCS#10 request (DER) for the key pair in `container`, subject `CN = subject_cn`,
/// signed by the token (one PIN attempt).
pub fn csr(token: &dyn Token, pin: &str, container: &str, subject_cn: &str) -> Result<Vec<u8>> {
    csr_with_subject(
        token,
        pin,
        container,
        &CsrSubject {
            common_name: subject_cn.into(),
            ..CsrSubject::default()
        },
    )
}

/// A PKCS#10 request (DER) for the key pair in `container` with the given subject,
/// signed by the token (one PIN attempt). Signature algorithm ecdsa-with-SHA256.
pub fn csr_with_subject(
    token: &dyn Token,
    pin: &str,
    container: &str,
    subject: &CsrSubject,
) -> Result<Vec<u8>> {
    let status = token.status()?;
    let spki = status
        .containers
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.public_key_spki.clone())
        .ok_or_else(|| TokenError::ContainerNotFound(container.into()))?;
    let public = crypto::public_from_spki(&spki)
        .ok_or_else(|| TokenError::Corrupt(format!("public key of {container:?}")))?;

    let mut dn = DistinguishedName::new();
    let printable = |v: &str| {
        PrintableString::try_from(v)
            .map(DnValue::PrintableString)
            .map_err(|_| TokenError::Unsupported(format!("not a PrintableString: {v:?}")))
    };
    if let Some(c) = &subject.country {
        dn.push(DnType::CountryName, printable(c)?);
    }
    if let Some(o) = &subject.organization {
        dn.push(DnType::OrganizationName, DnValue::Utf8String(o.clone()));
    }
    dn.push(
        DnType::CommonName,
        DnValue::Utf8String(subject.common_name.clone()),
    );
    if let Some(sn) = &subject.serial_number {
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), printable(sn)?);
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;

    let signer = TokenSigner {
        token,
        pin,
        container,
        point: crypto::sec1(&public, false),
        error: RefCell::new(None),
    };
    match params.serialize_request(&signer) {
        Ok(req) => Ok(req.der().to_vec()),
        Err(e) => Err(signer
            .error
            .into_inner()
            .unwrap_or_else(|| TokenError::Crypto(format!("PKCS#10 encoding: {e}")))),
    }
}

/// Adapts a token container to rcgen's signer; keeps the token's own error so the
/// caller sees `ekey.token.pin_incorrect` rather than an rcgen error.
struct TokenSigner<'a> {
    token: &'a dyn Token,
    pin: &'a str,
    container: &'a str,
    point: Vec<u8>,
    error: RefCell<Option<TokenError>>,
}

impl PublicKeyData for TokenSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for TokenSigner<'_> {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        self.token.sign(self.pin, self.container, msg).map_err(|e| {
            *self.error.borrow_mut() = Some(e);
            rcgen::Error::RemoteKeyError
        })
    }
}

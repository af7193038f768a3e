//! The eKey certificate authority engine: a root and an issuing CA, enterprise
//! certificate issuance (build → lint → sign), serial numbers, revocation reasons, CRLs
//! and an OCSP responder, with CA keys in encrypted PKCS#8 files, on a PKCS#11 module
//! ([`Pkcs11Key`], [`Authority::create_in_hsm`]) or behind any other [`CaSigner`].
//!
//! A pure library: no requests, databases or HTTP. The caller stores serials, revocations
//! and CRL numbers, and serves the DER this crate produces.
//!
//! ```no_run
//! use chrono::Utc;
//! use ekey_ca::*;
//!
//! # fn main() -> ekey_ca::Result<()> {
//! let pass = Passphrase::from_env_or_file(PASSPHRASE_ENV, None)?;
//! let cfg = CaConfig {
//!     base_url: "https://ekey.example.cn".into(),
//!     ..CaConfig::default()
//! };
//! let ca = Authority::create(std::path::Path::new("/var/lib/ekey/ca"), &pass, &cfg)?;
//!
//! let csr = parse_csr(&std::fs::read("request.pem").unwrap())?;
//! csr.check_subject("某某进出口有限公司", "91310000MA1FL5LX4N")?;
//! let issued = ca.issue(IssueRequest::new(
//!     csr.spki_der,
//!     "某某进出口有限公司",
//!     "91310000MA1FL5LX4N",
//!     Serial::random()?,
//!     Utc::now(),
//! ))?;
//!
//! let revoked = [RevokedEntry {
//!     serial: Serial::from_hex(&issued.serial_hex)?,
//!     revoked_at: Utc::now(),
//!     reason: RevocationReason::KeyCompromise,
//! }];
//! let crl_der = ca.crl(&revoked, 1, Utc::now())?;
//! let ocsp_der = ca.ocsp_response(b"request DER", Utc::now(), &|_serial| CertStatus::Good);
//! # let _ = (crl_der, ocsp_der);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod arl;
mod authority;
mod certgen;
mod crl;
mod csr;
mod error;
pub mod lint;
mod ocsp;
mod passphrase;
mod pkcs11;
mod reason;
mod serial;
mod signer;

pub use arl::{
    DEFAULT_ROOT_CRL_DAYS, RootCrl, ensure_root_crl, read_root_crl, renew_root_crl, sign_root_crl,
};
pub use authority::{
    Authority, CaConfig, CaImport, IssueRequest, Issued, OCSP_CERT_RENEW_BEFORE,
    OCSP_RESPONSE_VALIDITY, PresentedCertificate, files,
};
pub use crl::RevokedEntry;
pub use csr::{Csr, MAX_CSR_LEN, parse_csr};
pub use error::{CaError, Result};
pub use ocsp::{
    CertStatus, MAX_OCSP_REQUEST_LEN, MAX_OCSP_SINGLE_REQUESTS, OcspErrorStatus, OcspRequestInfo,
    ocsp_error_response,
};
pub use passphrase::{MIN_NEW_PASSPHRASE_CHARS, PASSPHRASE_ENV, Passphrase};
pub use pkcs11::{HsmConfig, PKCS11_PIN_ENV, Pkcs11Key, hsm_labels};
pub use reason::RevocationReason;
pub use serial::Serial;
pub use signer::{
    CaSigner, DEFAULT_PBKDF2_ITERATIONS, FileKey, KeyAlgorithm, MIN_PBKDF2_ITERATIONS,
    ecdsa_signature_from_raw, rsa_pkcs1_sha256_digest_info, sha256, verify_signature,
};

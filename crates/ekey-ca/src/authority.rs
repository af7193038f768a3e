//! The CA itself: a root, an issuing CA and a delegated OCSP responder, their keys, and
//! issuance of enterprise certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CrlDistributionPoint, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::certgen::{
    aia_extension, base_params, check_name, check_printable, from_timestamp,
    ocsp_nocheck_extension, pem_encode, pem_or_der, sign_issued, sign_self, subject_dn,
    whole_seconds,
};
use crate::error::{CaError, Result};
use crate::lint::{LintContext, Profile};
use crate::ocsp::OcspIdentity;
use crate::passphrase::Passphrase;
use crate::serial::Serial;
use crate::signer::{
    CaSigner, DEFAULT_PBKDF2_ITERATIONS, FileKey, KeyAlgorithm, KeyRefusal, MIN_PBKDF2_ITERATIONS,
    PublicKeyInfo, check_signer_matches, inspect_parsed_spki, inspect_spki, write_new_file,
};

/// File names inside a CA directory.
pub mod files {
    /// Root CA certificate (PEM).
    pub const ROOT_CERT: &str = "root.crt";
    /// Issuing CA certificate (PEM).
    pub const ISSUING_CERT: &str = "issuing.crt";
    /// Delegated OCSP responder certificate (PEM).
    pub const OCSP_CERT: &str = "ocsp.crt";
    /// Root CA key (encrypted PKCS#8 PEM). Absent after an import: the root key stays
    /// offline with its owner.
    pub const ROOT_KEY: &str = "root.key.pem";
    /// Issuing CA key (encrypted PKCS#8 PEM).
    pub const ISSUING_KEY: &str = "issuing.key.pem";
    /// OCSP responder key (encrypted PKCS#8 PEM).
    pub const OCSP_KEY: &str = "ocsp.key.pem";
    /// The root's CRL (ARL, DER), signed ahead of time with the root key and served as
    /// `/crl/root.crl`.
    pub const ROOT_CRL: &str = "root.crl";
}

/// Lifetime of OCSP responses (nextUpdate − thisUpdate).
pub const OCSP_RESPONSE_VALIDITY: Duration = Duration::hours(1);

/// CA certificates start this long before their creation, against clock skew of clients.
const CA_BACKDATE: Duration = Duration::minutes(5);

/// The OCSP responder certificate is renewed when it has less than this left.
pub const OCSP_CERT_RENEW_BEFORE: Duration = Duration::days(30);

/// A certificate of this CA as presented back by a key ([`Authority::check_issued`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentedCertificate {
    /// Serial, lower-case hex without leading zero octets (as the records keep it).
    pub serial_hex: String,
    /// The subject public key (SubjectPublicKeyInfo DER).
    pub spki_der: Vec<u8>,
    /// Its algorithm.
    pub algorithm: KeyAlgorithm,
    /// Validity start.
    pub not_before: DateTime<Utc>,
    /// Validity end.
    pub not_after: DateTime<Utc>,
}

fn hex_lower(bytes: &[u8]) -> String {
    let bytes = match bytes.iter().position(|b| *b != 0) {
        Some(i) => &bytes[i..],
        None => bytes,
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Settings of the CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaConfig {
    /// Public base URL of this service, e.g. `http://127.0.0.1:8080` (no trailing slash
    /// needed). Certificates point at `{base}/crl/issuing.crl`, `{base}/ocsp` and
    /// `{base}/ca/issuing.crt` (`{base}/ca/root.crt` for the issuing CA).
    pub base_url: String,
    /// Algorithm of new CA keys (default ECDSA P-256).
    pub algorithm: KeyAlgorithm,
    /// Validity of enterprise certificates in days (default 730).
    pub enterprise_validity_days: u32,
    /// nextUpdate of CRLs, in hours after thisUpdate (default 24).
    pub crl_next_update_hours: u32,
    /// commonName of the root CA (Chinese allowed).
    pub root_name: String,
    /// commonName of the issuing CA (Chinese allowed).
    pub issuing_name: String,
    /// organizationName of the CA certificates (Chinese allowed).
    pub organization: String,
    /// Validity of a new root CA in days (default 7305, 20 years).
    pub root_validity_days: u32,
    /// Validity of a new issuing CA in days (default 3652, 10 years).
    pub issuing_validity_days: u32,
    /// Validity of the OCSP responder certificate in days (default 365); it is renewed
    /// automatically by [`Authority::load`] when less than 30 days are left.
    pub ocsp_validity_days: u32,
    /// PBKDF2-HMAC-SHA256 iterations protecting new key files (default 600,000; at least
    /// 10,000). Opening a key costs the same, so tests may lower it.
    pub pbkdf2_iterations: u32,
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            base_url: "http://127.0.0.1:8080".into(),
            algorithm: KeyAlgorithm::EcdsaP256,
            enterprise_validity_days: 730,
            crl_next_update_hours: 24,
            root_name: "eKey Root CA".into(),
            issuing_name: "eKey Issuing CA".into(),
            organization: "eKey".into(),
            root_validity_days: 7305,
            issuing_validity_days: 3652,
            ocsp_validity_days: 365,
            pbkdf2_iterations: DEFAULT_PBKDF2_ITERATIONS,
        }
    }
}

impl CaConfig {
    fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    /// `{base}/crl/issuing.crl`, the CRL distribution point of enterprise certificates.
    pub fn crl_url(&self) -> String {
        format!("{}/crl/issuing.crl", self.base())
    }

    /// `{base}/crl/root.crl`, the CRL distribution point of the issuing CA (the root's ARL).
    pub fn root_crl_url(&self) -> String {
        format!("{}/crl/root.crl", self.base())
    }

    /// `{base}/ocsp`, the OCSP responder.
    pub fn ocsp_url(&self) -> String {
        format!("{}/ocsp", self.base())
    }

    /// `{base}/ca/issuing.crt`, where the issuing CA certificate is served (DER).
    pub fn issuing_cert_url(&self) -> String {
        format!("{}/ca/issuing.crt", self.base())
    }

    /// `{base}/ca/root.crt`, where the root CA certificate is served (DER).
    pub fn root_cert_url(&self) -> String {
        format!("{}/ca/root.crt", self.base())
    }

    /// Checks every field; called by every constructor of [`Authority`].
    pub fn validate(&self) -> Result<()> {
        let config = |field: &'static str, detail: &str| CaError::Config {
            field,
            detail: detail.to_string(),
        };
        let base = self.base();
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .ok_or_else(|| config("base_url", "must start with http:// or https://"))?;
        if rest.is_empty()
            || !base.chars().all(|c| c.is_ascii_graphic())
            || base.contains(['?', '#'])
        {
            return Err(config(
                "base_url",
                "must be an ASCII URL without spaces, query or fragment",
            ));
        }
        if self.enterprise_validity_days == 0 {
            return Err(config("enterprise_validity_days", "must be at least 1"));
        }
        if !(1..=24 * 366).contains(&self.crl_next_update_hours) {
            return Err(config("crl_next_update_hours", "must be 1 to 8784"));
        }
        if self.root_validity_days == 0 || self.issuing_validity_days == 0 {
            return Err(config("root/issuing_validity_days", "must be at least 1"));
        }
        if self.issuing_validity_days > self.root_validity_days {
            return Err(config(
                "issuing_validity_days",
                "must not exceed root_validity_days",
            ));
        }
        if self.ocsp_validity_days == 0 {
            return Err(config("ocsp_validity_days", "must be at least 1"));
        }
        if self.pbkdf2_iterations < MIN_PBKDF2_ITERATIONS {
            return Err(config("pbkdf2_iterations", "must be at least 10000"));
        }
        check_name("root_name", &self.root_name)?;
        check_name("issuing_name", &self.issuing_name)?;
        check_name("organization", &self.organization)?;
        if self.ocsp_responder_name().chars().count() > crate::certgen::UB_NAME {
            return Err(config(
                "issuing_name",
                "too long to derive the OCSP responder name",
            ));
        }
        Ok(())
    }

    fn ocsp_responder_name(&self) -> String {
        format!("{} OCSP", self.issuing_name)
    }
}

/// An enterprise certificate to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueRequest {
    /// The enterprise's public key, DER SubjectPublicKeyInfo (from [`crate::Csr`] or a token).
    pub spki_der: Vec<u8>,
    /// Enterprise name: subject organizationName, and commonName unless `common_name` is given.
    pub enterprise_name: String,
    /// Unified social credit code: subject serialNumber (2.5.4.5).
    pub credit_code: String,
    /// Another commonName than the enterprise name, if wanted.
    pub common_name: Option<String>,
    /// Serial number, normally [`Serial::random`]; its uniqueness is the store's job.
    pub serial: Serial,
    /// Start of validity; the end is `enterprise_validity_days` later.
    pub not_before: DateTime<Utc>,
}

impl IssueRequest {
    /// A request with the enterprise name as commonName.
    pub fn new(
        spki_der: Vec<u8>,
        enterprise_name: impl Into<String>,
        credit_code: impl Into<String>,
        serial: Serial,
        not_before: DateTime<Utc>,
    ) -> IssueRequest {
        IssueRequest {
            spki_der,
            enterprise_name: enterprise_name.into(),
            credit_code: credit_code.into(),
            common_name: None,
            serial,
            not_before,
        }
    }
}

/// An issued certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its serial, lower-case hex ([`Serial::to_hex`]).
    pub serial_hex: String,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

impl Issued {
    /// The certificate as PEM.
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der).unwrap_or_default()
    }
}

/// An existing root + issuing CA pair to take over (the root key is not needed).
#[derive(Clone, Copy, Debug)]
pub struct CaImport<'a> {
    /// Root CA certificate, PEM or DER.
    pub root_cert: &'a [u8],
    /// Issuing CA certificate, PEM or DER, signed by the root.
    pub issuing_cert: &'a [u8],
    /// Issuing CA private key: PKCS#8 PEM, encrypted (`ENCRYPTED PRIVATE KEY`) or not.
    pub issuing_key_pem: &'a str,
    /// Passphrase of `issuing_key_pem` when it is encrypted.
    pub issuing_key_passphrase: &'a Passphrase,
}

/// The certificate authority: root, issuing CA and OCSP responder. Shareable across
/// threads (`Send + Sync`); all operations take `&self`.
pub struct Authority {
    cfg: CaConfig,
    root_der: Vec<u8>,
    issuing_der: Vec<u8>,
    ocsp_der: Vec<u8>,
    issuing: Arc<dyn CaSigner>,
    ocsp: Arc<dyn CaSigner>,
    issuing_key_id: Vec<u8>,
    issuing_validity: (i64, i64),
    ocsp_not_after: i64,
    pub(crate) ocsp_identity: OcspIdentity,
    enterprise_lint: LintContext,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("base_url", &self.cfg.base_url)
            .field("algorithm", &self.issuing.algorithm())
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Creates a new CA in `dir` (created if missing): root, issuing and OCSP keys
    /// (encrypted under `passphrase`, at least 12 characters) and certificates. Refuses to
    /// overwrite any existing CA file.
    pub fn create(dir: &Path, passphrase: &Passphrase, cfg: &CaConfig) -> Result<Authority> {
        Authority::create_at(dir, passphrase, cfg, Utc::now())
    }

    /// [`Authority::create`] with the time as a parameter.
    pub fn create_at(
        dir: &Path,
        passphrase: &Passphrase,
        cfg: &CaConfig,
        now: DateTime<Utc>,
    ) -> Result<Authority> {
        Authority::create_with_root_key(dir, passphrase, cfg, now, None)
    }

    /// [`Authority::create_at`], with the root key written to `root_key_out` (a directory
    /// other than `dir`, e.g. removable media; encrypted under its own passphrase) instead
    /// of `dir`: the server never needs it. Either way the root's first ARL
    /// ([`files::ROOT_CRL`], valid [`crate::DEFAULT_ROOT_CRL_DAYS`] days) is written to
    /// `dir`; later ones are signed with `ekey ca root-crl` ([`crate::renew_root_crl`]).
    pub fn create_with_root_key(
        dir: &Path,
        passphrase: &Passphrase,
        cfg: &CaConfig,
        now: DateTime<Utc>,
        root_key_out: Option<(&Path, &Passphrase)>,
    ) -> Result<Authority> {
        cfg.validate()?;
        passphrase.check_strength()?;
        let names = [
            files::ROOT_CERT,
            files::ISSUING_CERT,
            files::OCSP_CERT,
            files::ROOT_KEY,
            files::ISSUING_KEY,
            files::OCSP_KEY,
            files::ROOT_CRL,
        ];
        refuse_existing(dir, &names)?;
        if let Some((out, root_pass)) = root_key_out {
            root_pass.check_strength()?;
            refuse_existing(out, &[files::ROOT_KEY])?;
        }
        let root = FileKey::generate(cfg.algorithm)?;
        let issuing = Arc::new(FileKey::generate(cfg.algorithm)?);
        let ocsp = Arc::new(FileKey::generate(cfg.algorithm)?);
        let authority = Authority::build(cfg, now, &root, issuing.clone(), ocsp.clone())?;
        let arl = crate::arl::sign_root_crl(
            &authority.root_der,
            &root,
            1,
            now,
            crate::arl::DEFAULT_ROOT_CRL_DAYS,
        )?;

        // Everything is built and checked in memory; only now touch the disk.
        let iterations = cfg.pbkdf2_iterations;
        let mut contents: Vec<(&str, Vec<u8>, bool)> = Vec::new();
        let offline_key = match root_key_out {
            None => {
                contents.push((
                    files::ROOT_KEY,
                    root.to_encrypted_pem(passphrase, iterations)?.into_bytes(),
                    true,
                ));
                None
            }
            Some((out, root_pass)) => {
                let pem = root.to_encrypted_pem(root_pass, iterations)?.into_bytes();
                write_all_or_nothing(out, &[(files::ROOT_KEY, pem, true)])?;
                Some(out.join(files::ROOT_KEY))
            }
        };
        contents.extend([
            (files::ROOT_CRL, arl, false),
            (
                files::ISSUING_KEY,
                issuing
                    .to_encrypted_pem(passphrase, iterations)?
                    .into_bytes(),
                true,
            ),
            (
                files::OCSP_KEY,
                ocsp.to_encrypted_pem(passphrase, iterations)?.into_bytes(),
                true,
            ),
        ]);
        contents.extend(authority.certificate_files()?);
        if let Err(e) = write_all_or_nothing(dir, &contents) {
            if let Some(key) = offline_key {
                let _ = std::fs::remove_file(key);
            }
            return Err(e);
        }
        Ok(authority)
    }

    /// Builds a CA from three signers (any backend, e.g. PKCS#11): makes the root
    /// (self-signed with `root`), the issuing CA and the OCSP responder certificates.
    /// Nothing is written anywhere; the caller stores the certificates
    /// ([`Authority::root_der`] …) and keys.
    pub fn build(
        cfg: &CaConfig,
        now: DateTime<Utc>,
        root: &dyn CaSigner,
        issuing: Arc<dyn CaSigner>,
        ocsp: Arc<dyn CaSigner>,
    ) -> Result<Authority> {
        cfg.validate()?;
        let start = whole_seconds(now) - CA_BACKDATE;
        let root_info = signer_key(root)?;
        let issuing_info = signer_key(issuing.as_ref())?;

        // Root.
        let root_end = start + Duration::days(i64::from(cfg.root_validity_days));
        let mut params = base_params(&root_info, &Serial::random()?, start, root_end)?;
        params.distinguished_name = subject_dn(&cfg.organization, &cfg.root_name, None)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root_der = sign_self(&params, root, &LintContext::self_signed(root.algorithm()))?;

        // Issuing CA.
        let issuing_end = start + Duration::days(i64::from(cfg.issuing_validity_days));
        let mut params = base_params(&issuing_info, &Serial::random()?, start, issuing_end)?;
        params.distinguished_name = subject_dn(&cfg.organization, &cfg.issuing_name, None)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![cfg.root_crl_url()],
        }];
        params
            .custom_extensions
            .push(aia_extension(None, &cfg.root_cert_url()));
        let lint = LintContext::for_issuer(&root_der, Profile::SubordinateCa)?;
        let issuing_der = sign_issued(&params, &issuing_info, &root_der, root, &lint)?;

        let ocsp_der = issue_ocsp_cert(cfg, start, &issuing_der, issuing.as_ref(), ocsp.as_ref())?;
        Authority::from_parts(cfg, root_der, issuing_der, issuing, ocsp_der, ocsp)
    }

    /// Assembles a CA from its certificates (DER) and the signers of the issuing CA and
    /// the OCSP responder. Checks the chain (root self-signed, issuing CA signed by the
    /// root, OCSP certificate signed by the issuing CA with id-kp-OCSPSigning) and that
    /// each signer holds the key of its certificate.
    pub fn from_parts(
        cfg: &CaConfig,
        root_der: Vec<u8>,
        issuing_der: Vec<u8>,
        issuing: Arc<dyn CaSigner>,
        ocsp_der: Vec<u8>,
        ocsp: Arc<dyn CaSigner>,
    ) -> Result<Authority> {
        cfg.validate()?;
        let (issuing_key_id, issuing_validity) = check_chain(&root_der, &issuing_der)?;
        let ocsp_not_after = {
            let (_, issuing_cert) = parse_cert(&issuing_der, "issuing")?;
            let (_, cert) = parse_cert(&ocsp_der, "OCSP")?;
            if cert.issuer().as_raw() != issuing_cert.subject().as_raw() {
                return Err(CaError::ca_cert(
                    "OCSP certificate not issued by the issuing CA",
                ));
            }
            cert.verify_signature(Some(issuing_cert.public_key()))
                .map_err(|_| CaError::ca_cert("OCSP certificate signature does not verify"))?;
            let eku = cert.extended_key_usage().ok().flatten();
            if !eku.is_some_and(|e| e.value.ocsp_signing) {
                return Err(CaError::ca_cert("OCSP certificate lacks id-kp-OCSPSigning"));
            }
            cert.validity().not_after.timestamp()
        };
        check_signer_matches(issuing.as_ref(), &spki_of(&issuing_der)?, "issuing")?;
        check_signer_matches(ocsp.as_ref(), &spki_of(&ocsp_der)?, "ocsp")?;
        let ocsp_identity = OcspIdentity::new(&issuing_der, &ocsp_der, ocsp.algorithm())?;
        let enterprise_lint = LintContext::for_issuer(&issuing_der, Profile::Enterprise)?;
        Ok(Authority {
            cfg: cfg.clone(),
            root_der,
            issuing_der,
            ocsp_der,
            issuing,
            ocsp,
            issuing_key_id,
            issuing_validity,
            ocsp_not_after,
            ocsp_identity,
            enterprise_lint,
        })
    }

    /// Opens the CA in `dir` (made by [`Authority::create`] or [`Authority::import`]).
    /// When the OCSP responder certificate has less than 30 days left it is renewed (same
    /// key) and `ocsp.crt` is replaced.
    pub fn load(dir: &Path, passphrase: &Passphrase, cfg: &CaConfig) -> Result<Authority> {
        Authority::load_at(dir, passphrase, cfg, Utc::now())
    }

    /// [`Authority::load`] with the time as a parameter.
    pub fn load_at(
        dir: &Path,
        passphrase: &Passphrase,
        cfg: &CaConfig,
        now: DateTime<Utc>,
    ) -> Result<Authority> {
        cfg.validate()?;
        let root_der = read_cert(&dir.join(files::ROOT_CERT))?;
        let issuing_der = read_cert(&dir.join(files::ISSUING_CERT))?;
        let ocsp_der = read_cert(&dir.join(files::OCSP_CERT))?;
        let issuing = Arc::new(FileKey::load(&dir.join(files::ISSUING_KEY), passphrase)?);
        let ocsp = Arc::new(FileKey::load(&dir.join(files::OCSP_KEY), passphrase)?);
        let mut authority =
            Authority::from_parts(cfg, root_der, issuing_der, issuing, ocsp_der, ocsp)?;
        authority.refresh_ocsp_cert(dir, now)?;
        Ok(authority)
    }

    /// Takes over an existing root + issuing CA: checks the pair, re-encrypts the issuing
    /// key under `passphrase`, makes a new OCSP responder key and certificate, and writes
    /// the CA directory (without a root key). `cfg.algorithm` is not used: the algorithm
    /// is the issuing key's, and the OCSP key gets the same. The issuing CA certificate
    /// must carry a subjectKeyIdentifier, keyCertSign and cRLSign, and be valid now.
    pub fn import(
        dir: &Path,
        passphrase: &Passphrase,
        cfg: &CaConfig,
        source: CaImport<'_>,
    ) -> Result<Authority> {
        Authority::import_at(dir, passphrase, cfg, source, Utc::now())
    }

    /// [`Authority::import`] with the time as a parameter.
    pub fn import_at(
        dir: &Path,
        passphrase: &Passphrase,
        cfg: &CaConfig,
        source: CaImport<'_>,
        now: DateTime<Utc>,
    ) -> Result<Authority> {
        cfg.validate()?;
        passphrase.check_strength()?;
        let names = [
            files::ROOT_CERT,
            files::ISSUING_CERT,
            files::OCSP_CERT,
            files::ROOT_KEY,
            files::ISSUING_KEY,
            files::OCSP_KEY,
        ];
        refuse_existing(dir, &names)?;
        let root_der = pem_or_der(source.root_cert, &["CERTIFICATE"])
            .map_err(|e| CaError::ca_cert(format!("root certificate: {e}")))?;
        let issuing_der = pem_or_der(source.issuing_cert, &["CERTIFICATE"])
            .map_err(|e| CaError::ca_cert(format!("issuing certificate: {e}")))?;
        let (_, validity) = check_chain(&root_der, &issuing_der)?;
        let now_s = whole_seconds(now);
        if now_s.timestamp() < validity.0 || now_s.timestamp() >= validity.1 {
            return Err(CaError::ca_cert(
                "the issuing CA certificate is not valid now",
            ));
        }
        {
            let (_, cert) = parse_cert(&issuing_der, "issuing")?;
            let has_ski = cert
                .extensions()
                .iter()
                .any(|e| e.oid.to_id_string() == "2.5.29.14");
            if !has_ski {
                return Err(CaError::ca_cert(
                    "the issuing CA certificate has no subjectKeyIdentifier",
                ));
            }
        }
        let issuing = Arc::new(FileKey::from_pem(
            source.issuing_key_pem,
            source.issuing_key_passphrase,
            "imported issuing key",
        )?);
        check_signer_matches(issuing.as_ref(), &spki_of(&issuing_der)?, "issuing")?;
        let ocsp = Arc::new(FileKey::generate(issuing.algorithm())?);
        let ocsp_der = issue_ocsp_cert(
            cfg,
            now_s - CA_BACKDATE,
            &issuing_der,
            issuing.as_ref(),
            ocsp.as_ref(),
        )?;
        let authority = Authority::from_parts(
            cfg,
            root_der,
            issuing_der,
            issuing.clone(),
            ocsp_der,
            ocsp.clone(),
        )?;
        let iterations = cfg.pbkdf2_iterations;
        let mut contents: Vec<(&str, Vec<u8>, bool)> = vec![
            (
                files::ISSUING_KEY,
                issuing
                    .to_encrypted_pem(passphrase, iterations)?
                    .into_bytes(),
                true,
            ),
            (
                files::OCSP_KEY,
                ocsp.to_encrypted_pem(passphrase, iterations)?.into_bytes(),
                true,
            ),
        ];
        contents.extend(authority.certificate_files()?);
        write_all_or_nothing(dir, &contents)?;
        Ok(authority)
    }

    /// Renews the OCSP responder certificate (same key) when it has less than 30 days
    /// left, and replaces `dir/ocsp.crt`.
    /// Returns whether it renewed.
    pub fn refresh_ocsp_cert(&mut self, dir: &Path, now: DateTime<Utc>) -> Result<bool> {
        let now = whole_seconds(now);
        if self.ocsp_not_after - now.timestamp() > OCSP_CERT_RENEW_BEFORE.num_seconds() {
            return Ok(false);
        }
        let der = issue_ocsp_cert(
            &self.cfg,
            now - CA_BACKDATE,
            &self.issuing_der,
            self.issuing.as_ref(),
            self.ocsp.as_ref(),
        )?;
        let pem = pem_encode("CERTIFICATE", &der)?;
        let path = dir.join(files::OCSP_CERT);
        let tmp = dir.join(format!("{}.new", files::OCSP_CERT));
        let _ = std::fs::remove_file(&tmp);
        write_new_file(&tmp, pem.as_bytes(), false)?;
        std::fs::rename(&tmp, &path).map_err(|e| CaError::io(&path, e))?;
        let refreshed = Authority::from_parts(
            &self.cfg,
            self.root_der.clone(),
            self.issuing_der.clone(),
            self.issuing.clone(),
            der,
            self.ocsp.clone(),
        )?;
        *self = refreshed;
        Ok(true)
    }

    /// Checks that `cert_der` is a certificate this issuing CA signed (issuer name and
    /// signature) and returns what a relying party needs from it: certificate login and
    /// renewal use it on what a key presents. Validity against the clock and revocation
    /// are for the caller, who has the clock and the records.
    pub fn check_issued(&self, cert_der: &[u8]) -> Result<PresentedCertificate> {
        let (rest, cert) = parse_cert(cert_der, "presented")?;
        if !rest.is_empty() {
            return Err(CaError::ca_cert("trailing bytes after the certificate"));
        }
        let (_, issuing) = parse_cert(&self.issuing_der, "issuing")?;
        if cert.issuer().as_raw() != issuing.subject().as_raw() {
            return Err(CaError::ca_cert("not issued by this CA"));
        }
        cert.verify_signature(Some(issuing.public_key()))
            .map_err(|_| CaError::ca_cert("signature does not verify"))?;
        let spki_der = cert.public_key().raw.to_vec();
        let algorithm = inspect_spki(&spki_der)
            .map_err(|r| CaError::PublicKey {
                detail: match r {
                    KeyRefusal::Malformed(d) | KeyRefusal::Unsupported(d) => d,
                },
            })?
            .algorithm;
        let time = |t: i64| {
            DateTime::<Utc>::from_timestamp(t, 0)
                .ok_or_else(|| CaError::ca_cert("validity out of range"))
        };
        Ok(PresentedCertificate {
            serial_hex: hex_lower(cert.raw_serial()),
            spki_der,
            algorithm,
            not_before: time(cert.validity().not_before.timestamp())?,
            not_after: time(cert.validity().not_after.timestamp())?,
        })
    }

    /// Issues an enterprise certificate: build → lint → sign → verify.
    ///
    /// Subject `C=CN, O=<enterprise>, CN=<enterprise or common_name>,
    /// serialNumber=<credit code>`; keyUsage digitalSignature + nonRepudiation (critical);
    /// extKeyUsage clientAuth + emailProtection; basicConstraints CA:FALSE; CRL
    /// distribution point; AIA with OCSP and caIssuers; RFC 7093 key identifiers.
    pub fn issue(&self, req: IssueRequest) -> Result<Issued> {
        check_name("enterprise_name", &req.enterprise_name)?;
        check_printable("credit_code", &req.credit_code)?;
        let common_name = req.common_name.as_deref().unwrap_or(&req.enterprise_name);
        check_name("common_name", common_name)?;
        let subject = inspect_spki(&req.spki_der).map_err(|r| CaError::PublicKey {
            detail: match r {
                KeyRefusal::Malformed(d) | KeyRefusal::Unsupported(d) => d,
            },
        })?;
        let not_before = whole_seconds(req.not_before);
        let not_after = not_before + Duration::days(i64::from(self.cfg.enterprise_validity_days));
        let (ca_start, ca_end) = self.issuing_validity;
        if not_before.timestamp() < ca_start {
            return Err(CaError::Validity {
                detail: format!(
                    "notBefore {not_before} is before the issuing CA's {}",
                    from_timestamp(ca_start)
                ),
            });
        }
        if not_after.timestamp() > ca_end {
            return Err(CaError::Validity {
                detail: format!(
                    "notAfter {not_after} is after the issuing CA expires ({}); renew the issuing CA",
                    from_timestamp(ca_end)
                ),
            });
        }

        let params = self.enterprise_params(
            &subject,
            &req.serial,
            (not_before, not_after),
            &req.enterprise_name,
            common_name,
            &req.credit_code,
        )?;
        let der = sign_issued(
            &params,
            &subject,
            &self.issuing_der,
            self.issuing.as_ref(),
            &self.enterprise_lint,
        )?;
        Ok(Issued {
            der,
            serial_hex: req.serial.to_hex(),
            not_before,
            not_after,
        })
    }

    /// The enterprise certificate profile (see [`Authority::issue`]).
    pub(crate) fn enterprise_params(
        &self,
        subject: &PublicKeyInfo,
        serial: &Serial,
        (not_before, not_after): (DateTime<Utc>, DateTime<Utc>),
        enterprise_name: &str,
        common_name: &str,
        credit_code: &str,
    ) -> Result<rcgen::CertificateParams> {
        let mut params = base_params(subject, serial, not_before, not_after)?;
        params.distinguished_name = subject_dn(enterprise_name, common_name, Some(credit_code))?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::EmailProtection,
        ];
        params.use_authority_key_identifier_extension = true;
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![self.cfg.crl_url()],
        }];
        params.custom_extensions.push(aia_extension(
            Some(&self.cfg.ocsp_url()),
            &self.cfg.issuing_cert_url(),
        ));
        Ok(params)
    }

    /// The three CA certificates as PEM files to write (`root.crt`, `issuing.crt`,
    /// `ocsp.crt`; not secret), for [`write_all_or_nothing`].
    pub(crate) fn certificate_files(&self) -> Result<Vec<(&'static str, Vec<u8>, bool)>> {
        Ok(vec![
            (
                files::ROOT_CERT,
                pem_encode("CERTIFICATE", &self.root_der)?.into_bytes(),
                false,
            ),
            (
                files::ISSUING_CERT,
                pem_encode("CERTIFICATE", &self.issuing_der)?.into_bytes(),
                false,
            ),
            (
                files::OCSP_CERT,
                pem_encode("CERTIFICATE", &self.ocsp_der)?.into_bytes(),
                false,
            ),
        ])
    }

    /// The configuration the CA runs with.
    pub fn config(&self) -> &CaConfig {
        &self.cfg
    }

    /// Root CA certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// Issuing CA certificate, DER.
    pub fn issuing_der(&self) -> &[u8] {
        &self.issuing_der
    }

    /// OCSP responder certificate, DER.
    pub fn ocsp_der(&self) -> &[u8] {
        &self.ocsp_der
    }

    /// Root CA certificate, PEM.
    pub fn root_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.root_der).unwrap_or_default()
    }

    /// Issuing CA certificate, PEM.
    pub fn issuing_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.issuing_der).unwrap_or_default()
    }

    /// Algorithm of the issuing CA key.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.issuing.algorithm()
    }

    /// The issuing CA's key identifier (its SKI; the AKI of everything it signs).
    pub fn issuing_key_id(&self) -> &[u8] {
        &self.issuing_key_id
    }

    /// End of the issuing CA's validity.
    pub fn issuing_not_after(&self) -> DateTime<Utc> {
        from_timestamp(self.issuing_validity.1)
    }

    /// End of the OCSP responder certificate's validity.
    pub fn ocsp_cert_not_after(&self) -> DateTime<Utc> {
        from_timestamp(self.ocsp_not_after)
    }

    pub(crate) fn issuing_signer(&self) -> &dyn CaSigner {
        self.issuing.as_ref()
    }

    pub(crate) fn ocsp_signer(&self) -> &dyn CaSigner {
        self.ocsp.as_ref()
    }
}

fn issue_ocsp_cert(
    cfg: &CaConfig,
    start: DateTime<Utc>,
    issuing_der: &[u8],
    issuing: &dyn CaSigner,
    ocsp: &dyn CaSigner,
) -> Result<Vec<u8>> {
    let (_, issuing_cert) = parse_cert(issuing_der, "issuing")?;
    // Within the issuing CA's validity, whoever made it (an imported CA may be minutes old).
    let start = start.max(from_timestamp(
        issuing_cert.validity().not_before.timestamp(),
    ));
    let ca_end = from_timestamp(issuing_cert.validity().not_after.timestamp());
    let end = (start + Duration::days(i64::from(cfg.ocsp_validity_days))).min(ca_end);
    let ocsp_info = signer_key(ocsp)?;
    let mut params = base_params(&ocsp_info, &Serial::random()?, start, end)?;
    params.distinguished_name = subject_dn(&cfg.organization, &cfg.ocsp_responder_name(), None)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
    params.use_authority_key_identifier_extension = true;
    params.custom_extensions.push(ocsp_nocheck_extension());
    let lint = LintContext::for_issuer(issuing_der, Profile::OcspResponder)?;
    sign_issued(&params, &ocsp_info, issuing_der, issuing, &lint)
}

fn signer_key(signer: &dyn CaSigner) -> Result<PublicKeyInfo> {
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
    Ok(info)
}

fn parse_cert<'a>(der: &'a [u8], what: &str) -> Result<(&'a [u8], X509Certificate<'a>)> {
    X509Certificate::from_der(der)
        .map_err(|e| CaError::ca_cert(format!("{what} certificate unreadable: {e}")))
}

fn spki_of(cert_der: &[u8]) -> Result<Vec<u8>> {
    let (_, cert) = parse_cert(cert_der, "CA")?;
    Ok(cert.public_key().raw.to_vec())
}

/// Checks root and issuing CA certificates; returns the issuing CA's key id and validity.
fn check_chain(root_der: &[u8], issuing_der: &[u8]) -> Result<(Vec<u8>, (i64, i64))> {
    let (rest, root) = parse_cert(root_der, "root")?;
    if !rest.is_empty() {
        return Err(CaError::ca_cert(
            "trailing bytes after the root certificate",
        ));
    }
    let (rest, issuing) = parse_cert(issuing_der, "issuing")?;
    if !rest.is_empty() {
        return Err(CaError::ca_cert(
            "trailing bytes after the issuing certificate",
        ));
    }
    if !root.is_ca() {
        return Err(CaError::ca_cert("the root certificate is not a CA"));
    }
    if root.subject().as_raw() != root.issuer().as_raw() {
        return Err(CaError::ca_cert("the root certificate is not self-issued"));
    }
    root.verify_signature(None)
        .map_err(|_| CaError::ca_cert("the root certificate's self-signature does not verify"))?;
    if !issuing.is_ca() {
        return Err(CaError::ca_cert("the issuing certificate is not a CA"));
    }
    if issuing.issuer().as_raw() != root.subject().as_raw() {
        return Err(CaError::ca_cert(
            "the issuing CA was not issued by this root",
        ));
    }
    issuing
        .verify_signature(Some(root.public_key()))
        .map_err(|_| {
            CaError::ca_cert("the issuing CA's signature does not verify with the root key")
        })?;
    let ku = issuing.key_usage().ok().flatten();
    if !ku.is_some_and(|k| k.value.key_cert_sign() && k.value.crl_sign()) {
        return Err(CaError::ca_cert(
            "the issuing CA lacks keyCertSign and cRLSign",
        ));
    }
    let info = inspect_parsed_spki(issuing.public_key()).map_err(|r| CaError::KeyUnsupported {
        detail: match r {
            KeyRefusal::Malformed(d) | KeyRefusal::Unsupported(d) => d,
        },
    })?;
    let key_id = issuing
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap_or_else(|| info.key_id());
    Ok((
        key_id,
        (
            issuing.validity().not_before.timestamp(),
            issuing.validity().not_after.timestamp(),
        ),
    ))
}

fn read_cert(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| CaError::io(path, e))?;
    pem_or_der(&bytes, &["CERTIFICATE"])
        .map_err(|e| CaError::ca_cert(format!("{}: {e}", path.display())))
}

pub(crate) fn refuse_existing(dir: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let path = dir.join(name);
        if path.exists() {
            return Err(CaError::AlreadyExists {
                path: path.display().to_string(),
            });
        }
    }
    Ok(())
}

/// Writes every file or, on the first failure, removes the ones already written.
pub(crate) fn write_all_or_nothing(dir: &Path, contents: &[(&str, Vec<u8>, bool)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| CaError::io(dir, e))?;
    let mut written: Vec<PathBuf> = Vec::new();
    for (name, bytes, secret) in contents {
        let path = dir.join(name);
        if let Err(e) = write_new_file(&path, bytes, *secret) {
            for done in &written {
                let _ = std::fs::remove_file(done);
            }
            return Err(e);
        }
        written.push(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests;

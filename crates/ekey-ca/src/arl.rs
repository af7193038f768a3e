//! The root's CRL (ARL, RFC 5280 §5): what lets a relying party check the issuing CA
//! itself (`openssl verify -crl_check_all`). The root key may live offline, so the ARL is
//! signed ahead of time with a long nextUpdate ([`DEFAULT_ROOT_CRL_DAYS`]), written beside
//! the CA certificates as [`files::ROOT_CRL`](crate::files::ROOT_CRL), and the server only
//! serves that file (`/crl/root.crl`). It lists no certificate: this root has certified only
//! the issuing CA, and revoking that is a new CA, not an ARL entry.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, SerialNumber};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::authority::files;
use crate::certgen::{RcgenKey, to_offset, whole_seconds};
use crate::error::{CaError, Result};
use crate::passphrase::Passphrase;
use crate::signer::{CaSigner, FileKey, check_signer_matches, write_new_file};

/// Default lifetime of an ARL (nextUpdate − thisUpdate): a year, so that an offline root
/// key is needed once a year.
pub const DEFAULT_ROOT_CRL_DAYS: u32 = 365;

/// An ARL as read back and checked against the root certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootCrl {
    /// CRL number.
    pub number: u64,
    /// thisUpdate.
    pub this_update: DateTime<Utc>,
    /// nextUpdate: a new ARL must be signed (`ekey ca root-crl`) and published before then.
    pub next_update: DateTime<Utc>,
}

fn time(t: i64) -> Result<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t, 0).ok_or_else(|| CaError::ca_cert("time out of range"))
}

fn root_key_id(root_der: &[u8]) -> Result<Vec<u8>> {
    let (_, root) = x509_parser::certificate::X509Certificate::from_der(root_der)
        .map_err(|e| CaError::ca_cert(format!("root certificate unreadable: {e}")))?;
    root.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| CaError::ca_cert("the root certificate has no subjectKeyIdentifier"))
}

/// Signs an empty ARL with the root key: CRL number `number`, thisUpdate `now`, nextUpdate
/// `days` later, authorityKeyIdentifier = the root's key id.
pub fn sign_root_crl(
    root_der: &[u8],
    root: &dyn CaSigner,
    number: u64,
    now: DateTime<Utc>,
    days: u32,
) -> Result<Vec<u8>> {
    if days == 0 {
        return Err(CaError::Config {
            field: "root_crl_days",
            detail: "must be at least 1".into(),
        });
    }
    let this_update = whole_seconds(now);
    let params = CertificateRevocationListParams {
        this_update: to_offset(this_update)?,
        next_update: to_offset(this_update + Duration::days(i64::from(days)))?,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::PreSpecified(root_key_id(root_der)?),
    };
    let key = RcgenKey::new(root, None)?;
    let issuer = rcgen::Issuer::from_ca_cert_der(&CertificateDer::from(root_der), key)
        .map_err(|e| CaError::ca_cert(format!("root certificate not usable: {e}")))?;
    let crl = params
        .signed_by(&issuer)
        .map_err(|e| issuer.key().error_from(e))?;
    let der = crl.der().to_vec();
    read_root_crl(root_der, &der)?;
    Ok(der)
}

/// Reads an ARL and checks it belongs to this root: issuer name and signature.
pub fn read_root_crl(root_der: &[u8], crl_der: &[u8]) -> Result<RootCrl> {
    let (_, root) = x509_parser::certificate::X509Certificate::from_der(root_der)
        .map_err(|e| CaError::ca_cert(format!("root certificate unreadable: {e}")))?;
    let (rest, crl) = CertificateRevocationList::from_der(crl_der)
        .map_err(|e| CaError::ca_cert(format!("root CRL unreadable: {e}")))?;
    if !rest.is_empty() {
        return Err(CaError::ca_cert("trailing bytes after the root CRL"));
    }
    if crl.issuer().as_raw() != root.subject().as_raw() {
        return Err(CaError::ca_cert("the root CRL is not issued by this root"));
    }
    crl.verify_signature(root.public_key())
        .map_err(|_| CaError::ca_cert("the root CRL's signature does not verify"))?;
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| CaError::ca_cert("the root CRL has no CRL number"))?;
    let next_update = crl
        .next_update()
        .ok_or_else(|| CaError::ca_cert("the root CRL has no nextUpdate"))?;
    Ok(RootCrl {
        number,
        this_update: time(crl.last_update().timestamp())?,
        next_update: time(next_update.timestamp())?,
    })
}

/// Writes `der` to `path` through a temporary file and a rename, so that a reader (the
/// server) sees the old ARL or the new one, never half of one.
pub(crate) fn write_replacing(path: &Path, der: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    write_new_file(&tmp, der, false)?;
    std::fs::rename(&tmp, path).map_err(|e| CaError::io(path, e))
}

/// `ekey ca root-crl`: signs the next ARL of the CA in `ca_dir` with the root key file
/// `root_key` (encrypted PKCS#8, e.g. on removable media) and writes it to `out` (by default
/// `ca_dir/root.crl`, which the server serves). The CRL number follows the one of the ARL
/// in `ca_dir`, if any. Refuses a key that is not the root's.
pub fn renew_root_crl(
    ca_dir: &Path,
    root_key: &Path,
    passphrase: &Passphrase,
    now: DateTime<Utc>,
    days: u32,
    out: Option<&Path>,
) -> Result<RootCrl> {
    let root_path = ca_dir.join(files::ROOT_CERT);
    let bytes = std::fs::read(&root_path).map_err(|e| CaError::io(&root_path, e))?;
    let root_der = crate::certgen::pem_or_der(&bytes, &["CERTIFICATE"])
        .map_err(|e| CaError::ca_cert(format!("{}: {e}", root_path.display())))?;
    let key = FileKey::load(root_key, passphrase)?;
    let spki = {
        let (_, root) = x509_parser::certificate::X509Certificate::from_der(&root_der)
            .map_err(|e| CaError::ca_cert(format!("root certificate unreadable: {e}")))?;
        root.public_key().raw.to_vec()
    };
    check_signer_matches(&key, &spki, "root")?;
    let current = ca_dir.join(files::ROOT_CRL);
    let previous = std::fs::read(&current)
        .ok()
        .and_then(|der| read_root_crl(&root_der, &der).ok())
        .map_or(0, |c| c.number);
    let der = sign_root_crl(&root_der, &key, previous + 1, now, days)?;
    write_replacing(out.unwrap_or(&current), &der)?;
    read_root_crl(&root_der, &der)
}

/// At the start of a server whose root key sits in its CA directory (the demo, and CAs made
/// before the key could be kept offline): signs an ARL when there is none, or when the one
/// there is past half its lifetime. `Ok(None)` when nothing was needed or the root key is
/// not there (kept offline: the operator renews with `ekey ca root-crl`).
pub fn ensure_root_crl(
    ca_dir: &Path,
    passphrase: &Passphrase,
    now: DateTime<Utc>,
) -> Result<Option<RootCrl>> {
    let key = ca_dir.join(files::ROOT_KEY);
    if !key.exists() {
        return Ok(None);
    }
    let root_path = ca_dir.join(files::ROOT_CERT);
    let bytes = std::fs::read(&root_path).map_err(|e| CaError::io(&root_path, e))?;
    let root_der = crate::certgen::pem_or_der(&bytes, &["CERTIFICATE"])
        .map_err(|e| CaError::ca_cert(format!("{}: {e}", root_path.display())))?;
    if let Ok(der) = std::fs::read(ca_dir.join(files::ROOT_CRL))
        && let Ok(current) = read_root_crl(&root_der, &der)
        && now - current.this_update < (current.next_update - current.this_update) / 2
    {
        return Ok(None);
    }
    renew_root_crl(ca_dir, &key, passphrase, now, DEFAULT_ROOT_CRL_DAYS, None).map(Some)
}

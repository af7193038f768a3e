//! Certificate revocation lists (RFC 5280 §5, version 2).

use chrono::{DateTime, Duration, Utc};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls_pki_types::CertificateDer;

use crate::authority::Authority;
use crate::certgen::{RcgenKey, to_offset, whole_seconds};
use crate::error::{CaError, Result};
use crate::reason::RevocationReason;
use crate::serial::Serial;

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Its serial number.
    pub serial: Serial,
    /// When the CA revoked it.
    pub revoked_at: DateTime<Utc>,
    /// Why. `unspecified` is written by leaving the reason code out (RFC 5280 §5.3.1).
    pub reason: RevocationReason,
}

impl RevocationReason {
    fn rcgen(self) -> rcgen::RevocationReason {
        use rcgen::RevocationReason as R;
        match self {
            RevocationReason::Unspecified => R::Unspecified,
            RevocationReason::KeyCompromise => R::KeyCompromise,
            RevocationReason::CaCompromise => R::CaCompromise,
            RevocationReason::AffiliationChanged => R::AffiliationChanged,
            RevocationReason::Superseded => R::Superseded,
            RevocationReason::CessationOfOperation => R::CessationOfOperation,
            RevocationReason::CertificateHold => R::CertificateHold,
            RevocationReason::RemoveFromCrl => R::RemoveFromCrl,
            RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
            RevocationReason::AaCompromise => R::AaCompromise,
        }
    }
}

impl Authority {
    /// Signs a full CRL of the issuing CA (DER): version 2, thisUpdate `this_update`,
    /// nextUpdate `crl_next_update_hours` later, CRL number `crl_number` (the caller keeps
    /// it increasing), authorityKeyIdentifier = the issuing CA's key id (without it
    /// `openssl verify -crl_check` cannot match the CRL to the CA).
    pub fn crl(
        &self,
        revoked: &[RevokedEntry],
        crl_number: u64,
        this_update: DateTime<Utc>,
    ) -> Result<Vec<u8>> {
        let this_update = whole_seconds(this_update);
        let next_update =
            this_update + Duration::hours(i64::from(self.config().crl_next_update_hours));
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for entry in revoked {
            if entry.reason == RevocationReason::RemoveFromCrl {
                return Err(CaError::CrlReason);
            }
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(entry.serial.as_bytes()),
                revocation_time: to_offset(entry.revoked_at)?,
                reason_code: Some(entry.reason.rcgen()),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: to_offset(this_update)?,
            next_update: to_offset(next_update)?,
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::PreSpecified(self.issuing_key_id().to_vec()),
        };
        let key = RcgenKey::new(self.issuing_signer(), None)?;
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&CertificateDer::from(self.issuing_der()), key)
                .map_err(|e| CaError::ca_cert(format!("issuing certificate not usable: {e}")))?;
        let crl = params
            .signed_by(&issuer)
            .map_err(|e| issuer.key().error_from(e))?;
        Ok(crl.der().to_vec())
    }
}

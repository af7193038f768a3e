//! Revocation reasons (RFC 5280 §5.3.1 CRLReason).

use std::fmt;
use std::str::FromStr;

use crate::error::{CaError, Result};

/// Why a certificate was revoked, with RFC 5280's code and camelCase name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// `unspecified` (0). Encoded by leaving the reason out, as RFC 5280 recommends.
    Unspecified,
    /// `keyCompromise` (1): the key was lost or may be known to others (补办 after loss).
    KeyCompromise,
    /// `cACompromise` (2).
    CaCompromise,
    /// `affiliationChanged` (3): the subject's name or other information changed.
    AffiliationChanged,
    /// `superseded` (4): replaced by a new certificate (补办 after damage).
    Superseded,
    /// `cessationOfOperation` (5): no longer needed (注销).
    CessationOfOperation,
    /// `certificateHold` (6).
    CertificateHold,
    /// `removeFromCRL` (8): only for delta CRLs, refused in full CRLs.
    RemoveFromCrl,
    /// `privilegeWithdrawn` (9).
    PrivilegeWithdrawn,
    /// `aACompromise` (10).
    AaCompromise,
}

impl RevocationReason {
    /// All reasons, in code order.
    pub const ALL: [RevocationReason; 10] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::RemoveFromCrl,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    /// The RFC 5280 CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::RemoveFromCrl => 8,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    /// The reason with this RFC 5280 code, if any (7 is unassigned).
    pub fn from_code(code: u8) -> Option<RevocationReason> {
        RevocationReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// RFC 5280's camelCase name, e.g. `keyCompromise`.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "cACompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::CertificateHold => "certificateHold",
            RevocationReason::RemoveFromCrl => "removeFromCRL",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
            RevocationReason::AaCompromise => "aACompromise",
        }
    }

    /// Parses the camelCase name. Case-insensitive, so `caCompromise` (a common spelling)
    /// and `cACompromise` (RFC 5280's) both work; anything else is
    /// [`CaError::ReasonUnknown`].
    pub fn parse(name: &str) -> Result<RevocationReason> {
        let wanted = name.trim();
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| CaError::ReasonUnknown(name.to_string()))
    }

    /// Whether a certificate may be revoked with this reason here. `removeFromCRL` only
    /// means something in a delta CRL (which this CA does not issue), and `certificateHold`
    /// would need a release this CA does not offer: both are refused, so every reason on
    /// record can be written into the full CRL and the OCSP answers.
    pub fn revocable(self) -> bool {
        !matches!(
            self,
            RevocationReason::RemoveFromCrl | RevocationReason::CertificateHold
        )
    }

    /// [`RevocationReason::parse`] for a new revocation (every door: API, console, CLI):
    /// a reason that is not [`RevocationReason::revocable`] is
    /// [`CaError::ReasonNotAllowed`].
    pub fn parse_for_revocation(name: &str) -> Result<RevocationReason> {
        let reason = RevocationReason::parse(name)?;
        if reason.revocable() {
            Ok(reason)
        } else {
            Err(CaError::ReasonNotAllowed(reason.as_str()))
        }
    }

    /// The reason of a revocation already on record, as the CRL and OCSP state it: a name
    /// that cannot be read, or `removeFromCRL` (which a full CRL must not carry, and which
    /// older versions accepted), reads as `unspecified` — the certificate stays revoked.
    pub fn from_record(name: &str) -> RevocationReason {
        match RevocationReason::parse(name) {
            Ok(RevocationReason::RemoveFromCrl) | Err(_) => RevocationReason::Unspecified,
            Ok(r) => r,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = CaError;

    fn from_str(s: &str) -> Result<RevocationReason> {
        RevocationReason::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::parse(r.as_str()).unwrap(), r);
            assert_eq!(RevocationReason::from_code(r.code()), Some(r));
        }
        assert_eq!(
            RevocationReason::parse("caCompromise").unwrap(),
            RevocationReason::CaCompromise
        );
        assert_eq!(RevocationReason::from_code(7), None);
        assert_eq!(
            RevocationReason::parse("lost").unwrap_err().code(),
            "ekey.ca.reason_unknown"
        );
    }

    #[test]
    fn only_reasons_a_full_crl_may_carry_are_accepted_for_a_revocation() {
        for name in ["removeFromCRL", "removefromcrl", "certificateHold"] {
            assert_eq!(
                RevocationReason::parse_for_revocation(name)
                    .unwrap_err()
                    .code(),
                "ekey.ca.reason_not_allowed",
                "{name}"
            );
        }
        for r in RevocationReason::ALL.into_iter().filter(|r| r.revocable()) {
            assert_eq!(
                RevocationReason::parse_for_revocation(r.as_str()).unwrap(),
                r
            );
        }
        assert_eq!(
            RevocationReason::from_record("removeFromCRL"),
            RevocationReason::Unspecified
        );
        assert_eq!(
            RevocationReason::from_record("nonsense"),
            RevocationReason::Unspecified
        );
        assert_eq!(
            RevocationReason::from_record("keyCompromise"),
            RevocationReason::KeyCompromise
        );
    }
}

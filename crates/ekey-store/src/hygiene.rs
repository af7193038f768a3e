//! Key hygiene (issue 15): the CA never certifies one public key for two enterprises, nor a
//! key that was once revoked as keyCompromise. Every certified key is remembered by the
//! SHA-256 of its SubjectPublicKeyInfo in `certified_keys`, bound to the first credit code
//! it was certified for; a keyCompromise revocation marks it for good.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use crate::Result;
use crate::sql::ms;

/// What the CA may do with a public key for an enterprise ([`crate::Store::clear_key_for_issuance`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyClearance {
    /// Never certified, or certified for this same enterprise: go ahead.
    Clear,
    /// Already certified for another enterprise (another credit code).
    OtherEnterprise,
    /// Once revoked as keyCompromise: never again.
    Compromised,
}

/// Lower-case hex SHA-256 of a SubjectPublicKeyInfo (DER), as `certified_keys` keys it.
pub fn spki_sha256(spki_der: &[u8]) -> String {
    Sha256::digest(spki_der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One DER element: (tag, content, the whole element, what follows).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((tag, input.get(head..end)?, &input[..end], &input[end..]))
}

/// The SubjectPublicKeyInfo (DER) of an X.509 certificate (DER), found by walking the
/// TBSCertificate: [0] version, serial, signature, issuer, validity, subject, SPKI.
pub fn certificate_spki(cert_der: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _, _) = tlv(cert_der)? else {
        return None;
    };
    let (0x30, mut tbs, _, _) = tlv(cert)? else {
        return None;
    };
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.3;
    }
    for _ in 0..5 {
        tbs = tlv(tbs)?.3;
    }
    let (0x30, _, spki, _) = tlv(tbs)? else {
        return None;
    };
    Some(spki)
}

/// The credit code in a certificate record's subject summary (`"<name> <credit code>"`).
fn credit_code_of(subject: &str) -> &str {
    subject.rsplit(' ').next().unwrap_or(subject)
}

/// Checks (and, for a key never certified, records) that `spki_sha256` may be certified for
/// `credit_code`, in the caller's transaction.
pub(crate) async fn clear_key(
    conn: &mut AnyConnection,
    spki_sha256: &str,
    credit_code: &str,
    at: DateTime<Utc>,
) -> Result<KeyClearance> {
    sqlx::query(
        "INSERT INTO certified_keys (spki_sha256, credit_code, first_at) VALUES ($1, $2, $3) \
         ON CONFLICT (spki_sha256) DO NOTHING",
    )
    .bind(spki_sha256)
    .bind(credit_code)
    .bind(ms(at))
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query(
        "SELECT credit_code, compromised_at FROM certified_keys WHERE spki_sha256 = $1",
    )
    .bind(spki_sha256)
    .fetch_one(&mut *conn)
    .await?;
    Ok(
        if row.try_get::<Option<i64>, _>("compromised_at")?.is_some() {
            KeyClearance::Compromised
        } else if row.try_get::<String, _>("credit_code")? != credit_code {
            KeyClearance::OtherEnterprise
        } else {
            KeyClearance::Clear
        },
    )
}

/// Marks the key of certificate `serial` as compromised (a keyCompromise revocation), in the
/// caller's transaction.
pub(crate) async fn mark_compromised(
    conn: &mut AnyConnection,
    serial: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let row = sqlx::query("SELECT subject, der FROM certificates WHERE serial = $1")
        .bind(serial)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(()) };
    let der: Option<Vec<u8>> = row.try_get("der")?;
    let subject: String = row.try_get("subject")?;
    let Some(spki) = der.as_deref().and_then(certificate_spki) else {
        tracing::warn!(
            serial,
            "keyCompromise: no public key readable in the certificate"
        );
        return Ok(());
    };
    mark(conn, &spki_sha256(spki), credit_code_of(&subject), at).await
}

async fn mark(
    conn: &mut AnyConnection,
    hash: &str,
    credit_code: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO certified_keys (spki_sha256, credit_code, first_at, compromised_at) \
         VALUES ($1, $2, $3, $3) ON CONFLICT (spki_sha256) DO UPDATE SET \
         compromised_at = COALESCE(certified_keys.compromised_at, excluded.compromised_at)",
    )
    .bind(hash)
    .bind(credit_code)
    .bind(ms(at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Fills `certified_keys` from the certificates issued before it existed (run once, with
/// migration 8): the first enterprise of each key, oldest first, and its keyCompromise
/// revocations.
pub(crate) async fn backfill(conn: &mut AnyConnection) -> Result<()> {
    let rows = sqlx::query(
        "SELECT subject, der, issued_at, revoked_at, revocation_reason FROM certificates \
         WHERE der IS NOT NULL ORDER BY issued_at, serial",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let der: Vec<u8> = row.try_get("der")?;
        let Some(spki) = certificate_spki(&der) else {
            continue;
        };
        let hash = spki_sha256(spki);
        let subject: String = row.try_get("subject")?;
        let issued = crate::sql::from_ms(row.try_get("issued_at")?);
        clear_key(conn, &hash, credit_code_of(&subject), issued).await?;
        let reason: Option<String> = row.try_get("revocation_reason")?;
        if let Some(at) = row.try_get::<Option<i64>, _>("revoked_at")?
            && reason.as_deref() == Some("keyCompromise")
        {
            mark(
                conn,
                &hash,
                credit_code_of(&subject),
                crate::sql::from_ms(at),
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_key_is_found_in_a_certificate() {
        // A synthetic certificate: only the structure up to the key matters to the walk.
        let spki: Vec<u8> = [&[
            0x30, 0x0b, 0x30, 0x05, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x03, 0x02, 0x00, 0xff,
        ][..]]
        .concat();
        let tbs_content: Vec<u8> = [
            &[0xa0, 0x03, 0x02, 0x01, 0x02][..], // [0] version
            &[0x02, 0x01, 0x07],                 // serial
            &[0x30, 0x00],                       // signature
            &[0x30, 0x00],                       // issuer
            &[0x30, 0x00],                       // validity
            &[0x30, 0x00],                       // subject
            &spki,
            &[0xa3, 0x00], // extensions
        ]
        .concat();
        let mut tbs = vec![0x30, u8::try_from(tbs_content.len()).unwrap()];
        tbs.extend(&tbs_content);
        let mut body = tbs.clone();
        body.extend([0x30, 0x00, 0x03, 0x01, 0x00]);
        let mut cert = vec![0x30, 0x81, u8::try_from(body.len()).unwrap()];
        cert.extend(&body);
        assert_eq!(certificate_spki(&cert), Some(&spki[..]));
        assert_eq!(certificate_spki(&cert[..cert.len() - 1]), None);
        assert_eq!(certificate_spki(b"\x04\x00"), None);
        assert_eq!(
            credit_code_of("某公司 91320500MA1TEXT06A"),
            "91320500MA1TEXT06A"
        );
    }
}

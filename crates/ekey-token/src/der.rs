//! Just enough DER reading to take a certificate apart into the fields a token object
//! needs (subject, issuer, serial, public key). The CA layer does real X.509 work.

use crate::error::{Result, TokenError};

/// One TLV: its tag, the whole encoding and the contents.
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
}

/// Reads one TLV from the front of `input`; returns it and the rest.
fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags do not occur in the fields we read
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some((
        Tlv {
            tag,
            whole: &input[..header + len],
            content: &rest[..len],
        },
        &rest[len..],
    ))
}

/// The fields of an X.509 certificate a token stores next to it.
pub(crate) struct CertFields<'a> {
    /// `serialNumber` INTEGER, whole TLV (as `CKA_SERIAL_NUMBER` wants it).
    pub serial: &'a [u8],
    /// `issuer` Name, DER.
    pub issuer: &'a [u8],
    /// `subject` Name, DER.
    pub subject: &'a [u8],
    /// `subjectPublicKeyInfo`, DER.
    pub spki: &'a [u8],
}

/// Splits a DER certificate; [`TokenError::CertificateInvalid`] when it is not one.
pub(crate) fn certificate_fields(cert: &[u8]) -> Result<CertFields<'_>> {
    parse(cert).ok_or(TokenError::CertificateInvalid)
}

fn parse(cert: &[u8]) -> Option<CertFields<'_>> {
    let (outer, rest) = read(cert)?;
    if outer.tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (tbs, _) = read(outer.content)?;
    if tbs.tag != 0x30 {
        return None;
    }
    let mut fields = tbs.content;
    let (first, after) = read(fields)?;
    if first.tag == 0xa0 {
        fields = after; // explicit version
    }
    let (serial, fields) = read(fields)?;
    let (sig_alg, fields) = read(fields)?;
    let (issuer, fields) = read(fields)?;
    let (validity, fields) = read(fields)?;
    let (subject, fields) = read(fields)?;
    let (spki, _) = read(fields)?;
    let shapes = [
        (serial.tag, 0x02),
        (sig_alg.tag, 0x30),
        (issuer.tag, 0x30),
        (validity.tag, 0x30),
        (subject.tag, 0x30),
        (spki.tag, 0x30),
    ];
    if shapes.iter().any(|(got, want)| got != want) {
        return None;
    }
    Some(CertFields {
        serial: serial.whole,
        issuer: issuer.whole,
        subject: subject.whole,
        spki: spki.whole,
    })
}

/// Unwraps a DER OCTET STRING (PKCS#11 `CKA_EC_POINT` is one around the SEC1 point).
pub(crate) fn octet_string(input: &[u8]) -> Option<&[u8]> {
    let (tlv, rest) = read(input)?;
    (tlv.tag == 0x04 && rest.is_empty()).then_some(tlv.content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage() {
        assert!(certificate_fields(b"").is_err());
        assert!(certificate_fields(&[0x30, 0x03, 0x02, 0x01]).is_err());
        assert!(certificate_fields(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert_eq!(
            octet_string(&[0x04, 0x02, 0xaa, 0xbb]),
            Some(&[0xaa, 0xbb][..])
        );
        assert_eq!(octet_string(&[0x04, 0x02, 0xaa]), None);
    }
}

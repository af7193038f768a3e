//! Certificate serial numbers (RFC 5280 §4.1.2.2): positive, at most 20 octets.

use std::fmt;
use std::str::FromStr;

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{CaError, Result};

/// Number of random octets in a serial made by [`Serial::random`].
const RANDOM_LEN: usize = 16;

/// A certificate serial number: a positive integer whose DER encoding fits in 20 octets.
///
/// Held as its big-endian magnitude without leading zero octets, so two serials are equal
/// exactly when the integers are equal (`00ab` and `AB` are the same serial).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// A fresh random serial: 16 random octets with the top bit cleared (a positive
    /// INTEGER, no padding octet needed) and a non-zero first octet, so every serial is
    /// exactly 16 octets and 32 hex digits long and carries about 127 bits of entropy.
    /// Uniqueness is the store's job (a database constraint); a collision is astronomically
    /// unlikely but must still be refused there.
    pub fn random() -> Result<Serial> {
        let rng = SystemRandom::new();
        let mut bytes = [0u8; RANDOM_LEN];
        loop {
            rng.fill(&mut bytes).map_err(|_| CaError::Signer {
                detail: "system random generator failed".into(),
            })?;
            bytes[0] &= 0x7f;
            if bytes[0] != 0 {
                return Ok(Serial(bytes.to_vec()));
            }
        }
    }

    /// Parses hexadecimal (any case; `:` separators and surrounding blanks allowed, an
    /// optional `0x` prefix too). Refuses junk, zero and values longer than 20 DER octets.
    pub fn from_hex(text: &str) -> Result<Serial> {
        let trimmed = text.trim();
        let trimmed = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        let digits: String = trimmed.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() {
            return Err(invalid("empty"));
        }
        if trimmed.starts_with(':') || trimmed.ends_with(':') || trimmed.contains("::") {
            return Err(invalid("misplaced ':'"));
        }
        if let Some(bad) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(invalid(format!("not a hex digit: {bad:?}")));
        }
        if digits.len() > 128 {
            return Err(invalid("too long"));
        }
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        let bytes: Vec<u8> = (0..padded.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&padded[i..i + 2], 16))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| invalid("not hexadecimal"))?;
        Serial::from_magnitude(&bytes)
    }

    /// Builds a serial from a big-endian unsigned magnitude (leading zeros allowed).
    pub fn from_magnitude(bytes: &[u8]) -> Result<Serial> {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let magnitude = &bytes[start..];
        if magnitude.is_empty() {
            return Err(invalid("zero is not a valid serial number"));
        }
        let der_len = magnitude.len() + usize::from(magnitude[0] & 0x80 != 0);
        if der_len > 20 {
            return Err(invalid(format!(
                "{der_len} octets encoded, RFC 5280 allows at most 20"
            )));
        }
        Ok(Serial(magnitude.to_vec()))
    }

    /// Builds a serial from the content octets of a DER INTEGER (two's complement), as
    /// found in a certificate or an OCSP CertID. Negative or zero values are refused.
    pub fn from_der_integer(content: &[u8]) -> Result<Serial> {
        match content.first() {
            None => Err(invalid("empty INTEGER")),
            Some(b) if b & 0x80 != 0 => Err(invalid("negative serial number")),
            Some(_) => Serial::from_magnitude(content),
        }
    }

    /// Lower-case hex of the magnitude, two digits per octet, no separators
    /// (e.g. `3a0f…`). This is the form stored and shown.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(self.0.len() * 2);
        for b in &self.0 {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// The big-endian magnitude (no leading zero octets).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The content octets of the DER INTEGER (a leading `00` when the top bit is set).
    pub fn to_der_integer(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        if self.0[0] & 0x80 != 0 {
            out.push(0);
        }
        out.extend_from_slice(&self.0);
        out
    }
}

fn invalid(detail: impl Into<String>) -> CaError {
    CaError::SerialInvalid {
        detail: detail.into(),
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

impl FromStr for Serial {
    type Err = CaError;

    fn from_str(s: &str) -> Result<Serial> {
        Serial::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms_are_equivalent() {
        let a = Serial::from_hex("0A:bC:01").unwrap();
        let b = Serial::from_hex("0x000abc01").unwrap();
        let c = Serial::from_hex("abc01").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.to_hex(), "0abc01");
    }

    #[test]
    fn junk_is_refused() {
        for junk in [
            "", " ", "xyz", "12g4", "-01", "0", "00:00", ":ab", "ab:", "a::b", "１２",
        ] {
            let err = Serial::from_hex(junk).unwrap_err();
            assert_eq!(err.code(), "ekey.ca.serial_invalid", "{junk:?}");
        }
        // 20 octets with the top bit set would need 21 octets in DER.
        assert!(Serial::from_hex(&"80".repeat(20)).is_err());
        assert!(Serial::from_hex(&"7f".repeat(20)).is_ok());
        assert!(Serial::from_hex(&"01".repeat(21)).is_err());
    }

    #[test]
    fn der_integer_round_trip() {
        let s = Serial::from_hex("80ff").unwrap();
        assert_eq!(s.to_der_integer(), vec![0, 0x80, 0xff]);
        assert_eq!(Serial::from_der_integer(&[0, 0x80, 0xff]).unwrap(), s);
        assert!(Serial::from_der_integer(&[0x80, 0xff]).is_err());
    }
}

//! The unlock protocol shared by both token kinds and the provider side
//! (see the crate documentation, "Admin unlock", for the why).
//!
//! Names: `Q` is the token's recovery public key (private half `d` only derivable by the
//! provider), `E0`/`e0` the seal point and its discarded scalar, `K` the 16-byte seal
//! secret `KDF(e0·Q) = KDF(d·E0)`, `E1`/`e1` the per-challenge ephemeral key pair.

use p256::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, b64};
use crate::error::{Result, TokenError};

/// Version byte at the start of every challenge.
const CHALLENGE_VERSION: u8 = 1;
/// A compressed P-256 point.
const POINT_LEN: usize = 33;
/// `version ‖ E1 ‖ E0`.
pub(crate) const CHALLENGE_LEN: usize = 1 + 2 * POINT_LEN;
/// Length of the seal secret `K` carried (masked) by an unlock code.
pub(crate) const SECRET_LEN: usize = 16;
/// Check bits appended to the code to catch typing mistakes.
const CODE_CHECK_BITS: usize = 12;
/// Symbols in an unlock code: (128 + 12) / 5.
const CODE_SYMBOLS: usize = (SECRET_LEN * 8 + CODE_CHECK_BITS) / 5;
/// Crockford base32: no I, L, O, U, so 0/O and 1/I/L cannot be confused.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The public unlock state kept on a token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Seal {
    /// `Q`, SEC1 compressed.
    #[serde(with = "b64")]
    pub recovery_public: Vec<u8>,
    /// `E0`, SEC1 compressed.
    #[serde(with = "b64")]
    pub seal_point: Vec<u8>,
    /// `SHA-256(… ‖ K)[..16]`: lets the token reject a wrong code before using `K`.
    #[serde(with = "b64")]
    pub check: Vec<u8>,
}

/// An outstanding challenge: the ephemeral scalar `e1` and the challenge bytes given out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PendingChallenge {
    /// `e1`; stored on the token until the challenge is used or replaced.
    #[serde(with = "b64")]
    pub secret: Vec<u8>,
    /// `version ‖ E1 ‖ E0`.
    #[serde(with = "b64")]
    pub challenge: Vec<u8>,
}

/// Makes a new seal for `serial` under the recovery public key `Q`; returns the public
/// part to store and the secret `K`, which the caller uses once and forgets.
pub(crate) fn new_seal(
    serial: &str,
    recovery_public: &[u8],
) -> Result<(Seal, Zeroizing<[u8; SECRET_LEN]>)> {
    let q = PublicKey::from_sec1_bytes(recovery_public)
        .map_err(|_| TokenError::Corrupt("recovery public key".into()))?;
    let e0 = crypto::random_secret_key()?;
    let seal_point = crypto::sec1(&e0.public_key(), true);
    let k = seal_secret(serial, &seal_point, &crypto::ecdh(&e0, &q));
    let check = seal_check(serial, &seal_point, &k).to_vec();
    Ok((
        Seal {
            recovery_public: recovery_public.to_vec(),
            seal_point,
            check,
        },
        k,
    ))
}

/// A fresh challenge for the current seal.
pub(crate) fn new_challenge(seal: &Seal) -> Result<PendingChallenge> {
    let e1 = crypto::random_secret_key()?;
    let mut challenge = Vec::with_capacity(CHALLENGE_LEN);
    challenge.push(CHALLENGE_VERSION);
    challenge.extend_from_slice(&crypto::sec1(&e1.public_key(), true));
    challenge.extend_from_slice(&seal.seal_point);
    Ok(PendingChallenge {
        secret: e1.to_bytes().to_vec(),
        challenge,
    })
}

/// Token side: recovers `K` from a typed unlock code, or refuses it.
pub(crate) fn recover_secret(
    serial: &str,
    seal: &Seal,
    pending: Option<&PendingChallenge>,
    code: &str,
) -> Result<Zeroizing<[u8; SECRET_LEN]>> {
    let masked = decode_code(code)?;
    let pending = pending.ok_or(TokenError::UnlockInvalid)?;
    let (_, e0) = parse_challenge(&pending.challenge)
        .map_err(|_| TokenError::Corrupt("stored challenge".into()))?;
    if crypto::sec1(&e0, true) != seal.seal_point {
        // Issued before the seal last changed: it cannot be answered any more.
        return Err(TokenError::UnlockInvalid);
    }
    let q = PublicKey::from_sec1_bytes(&seal.recovery_public)
        .map_err(|_| TokenError::Corrupt("recovery public key".into()))?;
    let e1 = SecretKey::from_slice(&pending.secret)
        .map_err(|_| TokenError::Corrupt("stored challenge".into()))?;
    let mask = mask(serial, &pending.challenge, &crypto::ecdh(&e1, &q));
    let mut k = Zeroizing::new([0u8; SECRET_LEN]);
    for (i, b) in k.iter_mut().enumerate() {
        *b = masked[i] ^ mask[i];
    }
    if !crypto::ct_eq(&seal_check(serial, &seal.seal_point, &k), &seal.check) {
        return Err(TokenError::UnlockInvalid);
    }
    Ok(k)
}

/// Provider side: the seal secret `K` and the unlock code for a challenge, given the
/// token's recovery private key `d`.
pub(crate) fn answer(
    serial: &str,
    recovery: &SecretKey,
    challenge: &[u8],
) -> Result<(Zeroizing<[u8; SECRET_LEN]>, String)> {
    let (e1, e0) = parse_challenge(challenge)?;
    let seal_point = crypto::sec1(&e0, true);
    let k = seal_secret(serial, &seal_point, &crypto::ecdh(recovery, &e0));
    let mask = mask(serial, challenge, &crypto::ecdh(recovery, &e1));
    let mut masked = [0u8; SECRET_LEN];
    for (i, b) in masked.iter_mut().enumerate() {
        *b = k[i] ^ mask[i];
    }
    Ok((k, encode_code(&masked)))
}

/// Splits a challenge into `(E1, E0)`.
fn parse_challenge(challenge: &[u8]) -> Result<(PublicKey, PublicKey)> {
    if challenge.len() != CHALLENGE_LEN || challenge[0] != CHALLENGE_VERSION {
        return Err(TokenError::ChallengeInvalid);
    }
    let point = |b: &[u8]| PublicKey::from_sec1_bytes(b).map_err(|_| TokenError::ChallengeInvalid);
    Ok((
        point(&challenge[1..1 + POINT_LEN])?,
        point(&challenge[1 + POINT_LEN..])?,
    ))
}

/// `K = HKDF(x(e0·Q), serial ‖ E0)`.
fn seal_secret(serial: &str, seal_point: &[u8], shared: &[u8; 32]) -> Zeroizing<[u8; SECRET_LEN]> {
    Zeroizing::new(crypto::hkdf(
        b"ekey-unlock-seal-v1",
        shared,
        &[serial.as_bytes(), &[0], seal_point],
    ))
}

/// The check value stored next to `E0`.
fn seal_check(serial: &str, seal_point: &[u8], k: &[u8; SECRET_LEN]) -> [u8; 16] {
    let h = crypto::sha256(&[
        b"ekey-unlock-seal-check-v1",
        serial.as_bytes(),
        &[0],
        seal_point,
        k,
    ]);
    h[..16].try_into().expect("16 bytes")
}

/// The one-time mask `HKDF(x(e1·Q), serial ‖ challenge)` that hides `K` in the code.
fn mask(serial: &str, challenge: &[u8], shared: &[u8; 32]) -> Zeroizing<[u8; SECRET_LEN]> {
    Zeroizing::new(crypto::hkdf(
        b"ekey-unlock-mask-v1",
        shared,
        &[serial.as_bytes(), &[0], challenge],
    ))
}

/// The PKCS#11 SO PIN that belongs to the seal secret `K`: its 128 bits as 26 Crockford
/// base32 characters.
pub(crate) fn so_pin_from_secret(k: &[u8; SECRET_LEN]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(26));
    let mut acc: u32 = 0;
    let mut nbits = 0;
    for &byte in k {
        acc = (acc << 8) | u32::from(byte);
        nbits += 8;
        while nbits >= 5 {
            nbits -= 5;
            out.push(char::from(ALPHABET[((acc >> nbits) & 31) as usize]));
        }
    }
    if nbits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - nbits)) & 31) as usize]));
    }
    out
}

/// 12 check bits over the 16 data bytes of a code.
fn code_check(data: &[u8; SECRET_LEN]) -> u16 {
    let h = crypto::sha256(&[b"ekey-unlock-code-v1", data]);
    (u16::from(h[0]) << 4) | (u16::from(h[1]) >> 4)
}

/// 16 bytes + 12 check bits as 28 Crockford base32 symbols in groups of four,
/// e.g. `7Q2M-…-K4DX` (34 characters).
pub(crate) fn encode_code(data: &[u8; SECRET_LEN]) -> String {
    let check = code_check(data);
    // 140 bits: data (128) then check (12), read 5 bits at a time.
    let mut bits: Vec<bool> = Vec::with_capacity(CODE_SYMBOLS * 5);
    for byte in data {
        for i in (0..8).rev() {
            bits.push(byte >> i & 1 == 1);
        }
    }
    for i in (0..CODE_CHECK_BITS).rev() {
        bits.push(check >> i & 1 == 1);
    }
    let mut out = String::with_capacity(CODE_SYMBOLS + CODE_SYMBOLS / 4);
    for (n, chunk) in bits.chunks(5).enumerate() {
        if n > 0 && n % 4 == 0 {
            out.push('-');
        }
        let v = chunk
            .iter()
            .fold(0usize, |acc, &b| (acc << 1) | usize::from(b));
        out.push(char::from(ALPHABET[v]));
    }
    out
}

/// Parses a typed code: case-insensitive, spaces and hyphens ignored, O read as 0 and
/// I/L as 1. Wrong length, characters or check bits give [`TokenError::UnlockCodeFormat`].
pub(crate) fn decode_code(code: &str) -> Result<[u8; SECRET_LEN]> {
    let mut bits: Vec<bool> = Vec::with_capacity(CODE_SYMBOLS * 5);
    for c in code.chars() {
        let c = match c.to_ascii_uppercase() {
            ' ' | '-' | '\t' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        let v = ALPHABET
            .iter()
            .position(|&a| char::from(a) == c)
            .ok_or(TokenError::UnlockCodeFormat)?;
        for i in (0..5).rev() {
            bits.push(v >> i & 1 == 1);
        }
    }
    if bits.len() != CODE_SYMBOLS * 5 {
        return Err(TokenError::UnlockCodeFormat);
    }
    let mut data = [0u8; SECRET_LEN];
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = bits[i * 8..i * 8 + 8]
            .iter()
            .fold(0u8, |acc, &b| (acc << 1) | u8::from(b));
    }
    let check = bits[SECRET_LEN * 8..]
        .iter()
        .fold(0u16, |acc, &b| (acc << 1) | u16::from(b));
    if check != code_check(&data) {
        return Err(TokenError::UnlockCodeFormat);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_round_trip_and_typo_detection() {
        let data: [u8; 16] = *b"0123456789abcdef";
        let code = encode_code(&data);
        assert_eq!(code.len(), 34, "{code}");
        assert!(code.len() <= 40);
        assert_eq!(decode_code(&code).unwrap(), data);
        // Lower case, spaces instead of hyphens, O for 0 and l for 1 are all accepted.
        let sloppy = code
            .to_ascii_lowercase()
            .replace('-', " ")
            .replace('0', "o")
            .replace('1', "l");
        assert_eq!(decode_code(&sloppy).unwrap(), data);
        // One wrong symbol is caught by the check bits (for this code; 1 in 4096 slips).
        let mut chars: Vec<char> = code.chars().collect();
        chars[2] = if chars[2] == 'Z' { 'Y' } else { 'Z' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(
            decode_code(&typo).unwrap_err().code(),
            "ekey.token.unlock_code_format"
        );
        assert!(decode_code("ABCD").is_err());
        assert!(decode_code(&format!("{code}U")).is_err());
    }

    #[test]
    fn answer_opens_the_seal_only_for_its_challenge() {
        let d = crypto::random_secret_key().unwrap();
        let q = crypto::sec1(&d.public_key(), true);
        let (seal, k) = new_seal("SN1", &q).unwrap();
        let pending = new_challenge(&seal).unwrap();
        let (k2, code) = answer("SN1", &d, &pending.challenge).unwrap();
        assert_eq!(*k, *k2);
        assert_eq!(
            *recover_secret("SN1", &seal, Some(&pending), &code).unwrap(),
            *k
        );
        // Another serial, another challenge, no challenge: refused.
        let (_, other_serial) = answer("SN2", &d, &pending.challenge).unwrap();
        assert!(recover_secret("SN1", &seal, Some(&pending), &other_serial).is_err());
        let newer = new_challenge(&seal).unwrap();
        assert!(recover_secret("SN1", &seal, Some(&newer), &code).is_err());
        assert!(recover_secret("SN1", &seal, None, &code).is_err());
        assert_eq!(
            answer("SN1", &d, &pending.challenge[1..])
                .unwrap_err()
                .code(),
            "ekey.token.challenge_invalid"
        );
    }
}

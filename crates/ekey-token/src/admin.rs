//! Provider side of a key's life: per-token admin key, unlock codes and the PKCS#11
//! SO PIN. Everything here needs the provider's master secret and runs only on the
//! provider's machines; the key holder's side never sees any of it.
//!
//! The master secret should be at least 32 random bytes. Each token's admin key is
//! `HKDF-SHA256(master, info = "ekey token admin key" ‖ 0 ‖ serial)`, so one token's
//! secrets say nothing about another's or about the master secret.

use p256::SecretKey;
use zeroize::Zeroizing;

use crate::crypto;
use crate::error::Result;
use crate::unlock;

/// The per-token admin key: HKDF-SHA256 over the master secret, bound to the serial.
/// Never stored on a token; everything the provider computes for that token derives
/// from it.
pub fn admin_key(master_secret: &[u8], serial: &str) -> [u8; 32] {
    crypto::hkdf(
        b"ekey-admin-key-v1",
        master_secret,
        &[b"ekey token admin key", &[0], serial.as_bytes()],
    )
}

/// The token's recovery private key `d` (P-256), derived from its admin key.
pub(crate) fn recovery_secret(master_secret: &[u8], serial: &str) -> SecretKey {
    let admin = Zeroizing::new(admin_key(master_secret, serial));
    for counter in 0u8.. {
        let candidate = Zeroizing::new(crypto::hkdf::<32>(
            b"ekey-unlock-recovery-key-v1",
            admin.as_slice(),
            &[&[counter]],
        ));
        // Out of range with probability ~2^-32 per draw.
        if let Ok(key) = SecretKey::from_slice(candidate.as_slice()) {
            return key;
        }
    }
    unreachable!("256 consecutive out-of-range HKDF outputs")
}

/// The recovery public key `Q` (SEC1 compressed, 33 bytes) written on the token at
/// personalisation. Public: it lets the token seal secrets that only the provider can
/// open, and nothing else.
pub fn recovery_public_key(master_secret: &[u8], serial: &str) -> Vec<u8> {
    crypto::sec1(&recovery_secret(master_secret, serial).public_key(), true)
}

/// The unlock code for the challenge a token produced (see [`crate::Token::unlock_challenge`]):
/// 28 Crockford base32 characters in groups of four (34 characters with hyphens), for a
/// mail titled “电子钥匙密码重置”. It works on this token, for this challenge, once.
///
/// Fails with `ekey.token.challenge_invalid` when `challenge` is not a token's challenge.
pub fn unlock_response(master_secret: &[u8], serial: &str, challenge: &[u8]) -> Result<String> {
    let (_, code) = unlock::answer(serial, &recovery_secret(master_secret, serial), challenge)?;
    Ok(code)
}

/// The current SO PIN of a PKCS#11 token personalised by eKey, computed from one of its
/// challenges (any current challenge names the token's seal point). The SO PIN changes
/// with every unlock, so a PIN learnt from an earlier unlock is worthless.
pub fn so_pin(master_secret: &[u8], serial: &str, challenge: &[u8]) -> Result<Zeroizing<String>> {
    let (k, _) = unlock::answer(serial, &recovery_secret(master_secret, serial), challenge)?;
    Ok(unlock::so_pin_from_secret(&k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_keys_are_bound_to_serial_and_master() {
        let a = admin_key(b"master-1", "SN-1");
        assert_eq!(a, admin_key(b"master-1", "SN-1"));
        assert_ne!(a, admin_key(b"master-1", "SN-2"));
        assert_ne!(a, admin_key(b"master-2", "SN-1"));
        assert_eq!(recovery_public_key(b"m", "s").len(), 33);
    }
}

//! Small cryptographic helpers shared by both token kinds and the admin side.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use p256::{PublicKey, SecretKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Result, TokenError};

/// Length of the random nonce of XChaCha20-Poly1305.
pub(crate) const NONCE_LEN: usize = 24;

/// Fills `buf` from the operating system's random source.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| TokenError::Crypto(format!("random source: {e}")))
}

/// `N` random bytes.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    fill_random(&mut out)?;
    Ok(out)
}

/// A fresh random P-256 private key.
pub(crate) fn random_secret_key() -> Result<SecretKey> {
    loop {
        let bytes = Zeroizing::new(random_array::<32>()?);
        // Fails only for 0 or values ≥ n (probability ~2^-32); draw again.
        if let Ok(key) = SecretKey::from_slice(bytes.as_slice()) {
            return Ok(key);
        }
    }
}

/// HKDF-SHA256 with the given salt and info, `N` bytes of output.
pub(crate) fn hkdf<const N: usize>(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> [u8; N] {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut out = [0u8; N];
    let info: Vec<u8> = info.concat();
    // N ≤ 255 × 32 for every caller, so expand cannot fail.
    hk.expand(&info, &mut out)
        .expect("HKDF output length within limits");
    out
}

/// SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Encrypts with XChaCha20-Poly1305 under `key`; returns (nonce, ciphertext‖tag).
pub(crate) fn seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let nonce = random_array::<NONCE_LEN>()?;
    let cipher = XChaCha20Poly1305::new(key.into());
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| TokenError::Crypto("encryption failed".into()))?;
    Ok((nonce.to_vec(), ct))
}

/// Decrypts what [`seal`] produced; `None` when the key, nonce, AAD or data are wrong.
pub(crate) fn open(
    key: &[u8; 32],
    nonce: &[u8],
    ciphertext: &[u8],
    aad: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// SubjectPublicKeyInfo DER of a P-256 public key.
pub(crate) fn spki_der(public: &PublicKey) -> Result<Vec<u8>> {
    public
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| TokenError::Crypto(format!("SPKI encoding: {e}")))
}

/// The P-256 public key in a SubjectPublicKeyInfo DER.
pub(crate) fn public_from_spki(spki: &[u8]) -> Option<PublicKey> {
    PublicKey::from_public_key_der(spki).ok()
}

/// SEC1 encoding of a public key (compressed: 33 bytes; uncompressed: 65 bytes).
pub(crate) fn sec1(public: &PublicKey, compress: bool) -> Vec<u8> {
    public.to_sec1_point(compress).as_bytes().to_vec()
}

/// x-coordinate of the ECDH shared point.
pub(crate) fn ecdh(secret: &SecretKey, public: &PublicKey) -> Zeroizing<[u8; 32]> {
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.as_affine());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(shared.raw_secret_bytes().as_slice());
    out
}

/// Converts a raw PKCS#11 ECDSA signature (r‖s, 64 bytes) to the DER form used by
/// X.509 and PKCS#10.
pub(crate) fn raw_signature_to_der(raw: &[u8]) -> Result<Vec<u8>> {
    let sig = p256::ecdsa::Signature::from_slice(raw)
        .map_err(|_| TokenError::Device("token returned a malformed ECDSA signature".into()))?;
    Ok(sig.to_der().as_bytes().to_vec())
}

/// Compares two byte strings without an early exit.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serde helper: bytes as standard base64 strings in the token file and data objects.
pub(crate) mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Vec<u8>>`.
    pub(crate) mod opt {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<Vec<u8>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(&STANDARD.encode(v)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

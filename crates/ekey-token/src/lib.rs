//! The key (token) layer of eKey: one [`Token`] trait, two implementations.
//!
//! - [`SoftToken`]: one encrypted file per key, **for demos and tests**.
//! - [`Pkcs11Token`]: a real token through a PKCS#11 module (SoftHSM2 in tests).
//!
//! No HTTP, no database. The provider-side computations (admin key, unlock codes,
//! SO PIN) live in [`admin`]; a PKCS#10 request signed by a token is built by [`csr()`].
//!
//! # PIN and retry counter
//! A user PIN is 6–16 printable ASCII characters ([`validate_pin`]). **6 consecutive
//! wrong PINs lock the key**; a correct PIN resets the counter to 6. The counter lives
//! on the token (in the file; in a public PKCS#11 data object labelled
//! `ekey-pin-counter`), so it survives restarts and is shared by every process:
//!
//! 1. take an exclusive lock (software token: `flock` on a side file `<file>.lock`;
//!    PKCS#11: `flock` on a per-module file in the temp directory, plus a per-process
//!    mutex because PKCS#11 login state is per process);
//! 2. refuse if the counter is 0 (or, PKCS#11, the device reports `CKF_USER_PIN_LOCKED`);
//! 3. write the counter **decremented** (file: temp file, fsync, rename, fsync dir);
//! 4. only then check the PIN (Argon2id + AEAD; `C_Login`), and on success write 6 back.
//!
//! A crash or a killed process between 3 and 4 therefore costs a try instead of
//! granting a free one. The 6th wrong PIN returns [`TokenError::PinIncorrect`] with
//! `tries_left: 0`; every later attempt, right PIN or not, [`TokenError::Locked`].
//! SoftHSM2 has no lockout of its own: the rule holds through this layer only (a holder
//! who talks to the module directly can rewrite the public counter object). Real tokens
//! also count by themselves, and `CKR_PIN_LOCKED` / `CKF_USER_PIN_LOCKED` are honoured.
//!
//! # Promotion
//! A renewal generates the new key pair in its own container (`renew-<id>`), writes its
//! certificate there, and then [`Token::promote`]s it to the active container (`sign`):
//! afterwards `sign` holds the new key pair and certificate, the old ones are destroyed
//! and `renew-<id>` is gone. The PIN is checked (and counted) as for every other
//! operation. A crash at any moment leaves the state before or the state after:
//! - **software token**: the promotion is one change of the file, written by one rename
//!   (the private key is re-encrypted for its new container name in the same write);
//! - **PKCS#11**: several objects must be destroyed and relabelled, which no single call
//!   does. A public journal object `ekey-promotion` (`{pending, active, key id}`) is
//!   written first; then the objects labelled `active` with another `CKA_ID` are
//!   destroyed, the pending ones relabelled, and the journal deleted. Every step is
//!   idempotent, and every operation of the token (also [`Token::status`]) first replays
//!   a journal it finds — without a PIN only for the public objects, keeping the journal
//!   until the next operation with a PIN, which moves the private key too. So an
//!   interrupted promotion always ends **forward**, at the token's next use.
//!
//! [`Token::put_certificate`] replacing a certificate is crash-safe the same way (file:
//! one rename; PKCS#11: the new certificate is created under a temporary label before
//! the old one is destroyed, and finished at the next use). The crash points
//! `token.promote.mid` and `token.put_certificate.mid` ([`fault::point`]) stop the
//! process in the middle of these writes for the fault tests.
//!
//! # Admin unlock
//! Constraints: the code must be short enough to type from a mail (≤ 40 characters),
//! valid once, for one token and one challenge; the token must hold nothing that lets
//! its holder forge a code; after the unlock the keys must still work (software token:
//! the private keys are encrypted under a PIN-derived key, so something must let the
//! token re-wrap them under the new PIN); and a PKCS#11 token can only reset a user PIN
//! with `C_InitPIN` under the SO PIN.
//!
//! Design (ECDH "sealed secret"):
//! - The provider derives per token, from its admin key ([`admin::admin_key`], HKDF of
//!   the master secret bound to the serial), a P-256 **recovery key pair** `d`/`Q`.
//!   Only `Q` is written on the token at personalisation.
//! - The token holds a **seal**: a point `E0 = e0·G` and a 16-byte secret
//!   `K = KDF(e0·Q)`; `e0` and `K` are forgotten at once, only `E0` and a check value
//!   `SHA-256(…‖K)[..16]` are kept. Only the provider can recompute `K = KDF(d·E0)`.
//!   On a software token `K` wraps the data key (so the private keys can be re-wrapped
//!   under a new PIN); on a PKCS#11 token `K` **is the SO PIN** (26 base32 characters).
//! - [`Token::unlock_challenge`] makes a fresh ephemeral pair `e1`/`E1`, stores `e1` on
//!   the token (replacing any earlier one) and returns `1 ‖ E1 ‖ E0` (67 bytes).
//! - [`admin::unlock_response`] returns `K ⊕ KDF(d·E1, serial ‖ challenge)` plus 12
//!   check bits, as 28 Crockford base32 characters (`XXXX-XXXX-…`, 34 with hyphens).
//! - [`Token::apply_unlock`] unmasks with `e1·Q`, checks `K` against the check value,
//!   uses it (re-wrap / `C_Login(SO)` + `C_InitPIN`), then **rotates the seal** (new
//!   `e0`, new `K`; software token: a new data key too; PKCS#11: `C_SetPIN` changes the
//!   SO PIN to the new `K`), resets the counter and deletes `e1`.
//!
//! Properties: a code for another token or another challenge unmasks to garbage and
//! fails the check (`ekey.token.unlock_invalid`); a second use finds no challenge; a
//! code for an older challenge finds a newer `e1`. The token stores only public values
//! plus the ephemeral `e1`, so its holder cannot forge a code (that needs `d`, i.e. the
//! master secret). A mistyped code fails its check bits (`ekey.token.unlock_code_format`)
//! and leaves the challenge usable.
//!
//! Trade-offs, stated plainly:
//! - **Software token**: for demos and tests. A copy of the file defeats the counter
//!   (offline guessing costs one Argon2id per guess, m = 19 MiB, t = 2). Its holder can
//!   read `e1` and so learn `K` from a code meant for them; the seal and the data key are
//!   rotated by the unlock, so that `K` opens nothing afterwards.
//! - **PKCS#11**: the host must hand the SO PIN to the device, so whoever controls the
//!   host during an unlock can learn that SO PIN (read `e1`, a public object, and unmask
//!   the code themselves). With it, someone who bypasses this layer can reset the user
//!   PIN again, or wipe the token with `C_InitToken` — never read a private key — until
//!   the code is applied, which rotates the SO PIN. Rotation is crash-safe: the next
//!   seal is recorded as "pending", with its secret encrypted under the current one,
//!   before `C_SetPIN`; an unlock that finds the current SO PIN refused falls back to
//!   the pending one. While such an interrupted rotation is pending, [`admin::so_pin`]
//!   returns the previous SO PIN; the next unlock resolves it. An unlock interrupted
//!   after `C_InitPIN` but before the challenge is deleted leaves its code usable to
//!   finish the job. The alternative — a fixed SO PIN given to [`Pkcs11Token`] on the
//!   provider's machine only — would make every unlock an office visit, which §3.2 of
//!   the specification (code by mail, applied by the holder) rules out.
//!
//! A challenge starts with a version byte (1), and a code answers exactly one challenge,
//! so the protocol can change later without ambiguity.
#![forbid(unsafe_code)]

pub mod admin;
mod crypto;
mod csr;
mod der;
mod error;
mod pkcs11;
mod soft;
mod unlock;

pub use csr::{CsrSubject, csr, csr_with_subject};
pub use error::{Result, TokenError};
pub use pkcs11::Pkcs11Token;
pub use soft::SoftToken;

/// Fault injection for crash-safety tests. Not part of the API; never call it outside
/// tests.
#[doc(hidden)]
pub mod fault {
    use std::sync::atomic::{AtomicBool, Ordering};

    static STOP_AFTER_SO_PIN_CHANGE: AtomicBool = AtomicBool::new(false);

    /// Makes every PKCS#11 `apply_unlock` of this process stop right after `C_SetPIN`
    /// changed the SO PIN, as if the process had died there.
    pub fn stop_after_so_pin_change(on: bool) {
        STOP_AFTER_SO_PIN_CHANGE.store(on, Ordering::SeqCst);
    }

    pub(crate) fn stops_after_so_pin_change() -> bool {
        STOP_AFTER_SO_PIN_CHANGE.load(Ordering::SeqCst)
    }

    /// A named crash point. When the environment variable `EKEY_FAULT` names this point
    /// (read once per process), the process aborts here at once — no destructors, no
    /// flushing — as a `kill -9` at exactly this step would. The fault tests of the renewal
    /// run the agent, the CLI or the server with it; production never sets it.
    pub fn point(name: &str) {
        static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let armed =
            ARMED.get_or_init(|| std::env::var("EKEY_FAULT").ok().filter(|v| !v.is_empty()));
        if armed.as_deref() == Some(name) {
            eprintln!("EKEY_FAULT: stopping at {name}");
            std::process::abort();
        }
    }
}

/// Consecutive wrong PINs that lock a key.
pub const MAX_PIN_TRIES: u8 = 6;

/// What a key shows without a PIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenStatus {
    /// The token's serial number (software token: chosen at creation; PKCS#11: the
    /// device's serial).
    pub serial: String,
    /// The token label.
    pub label: String,
    /// Wrong PINs still allowed before the key locks (0 when locked).
    pub pin_tries_left: u8,
    /// Locked: only an admin unlock opens it.
    pub locked: bool,
    /// The containers (key pairs and certificates), sorted by name.
    pub containers: Vec<ContainerInfo>,
}

/// One container on a key: a named key pair and its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Container name (e.g. `sign`, `renew-1`).
    pub name: String,
    /// Whether the container holds a key pair.
    pub has_key: bool,
    /// The public key as SubjectPublicKeyInfo DER, when there is a key pair.
    pub public_key_spki: Option<Vec<u8>>,
    /// The certificate written with [`Token::put_certificate`], DER.
    pub certificate_der: Option<Vec<u8>>,
}

/// A key (token): one interface for the software token and PKCS#11 tokens.
///
/// Every operation that takes a `pin` counts towards the 6-try rule. Keys are P-256;
/// private keys are generated on the token and never leave it.
pub trait Token: Send + Sync {
    /// The token's serial number.
    fn serial(&self) -> String;

    /// The token's label.
    fn label(&self) -> String;

    /// Counter, lock state and containers; needs no PIN.
    fn status(&self) -> Result<TokenStatus>;

    /// Generates a P-256 key pair on the token in a new container and returns the public
    /// key as SubjectPublicKeyInfo DER. Fails with `ekey.token.container_exists` if the
    /// container already holds a key.
    fn generate_key(&self, pin: &str, container: &str) -> Result<Vec<u8>>;

    /// Signs `message` with ECDSA P-256 / SHA-256 (the token hashes); the signature is
    /// DER (`ECDSA-Sig-Value`), as used in X.509 and PKCS#10.
    fn sign(&self, pin: &str, container: &str, message: &[u8]) -> Result<Vec<u8>>;

    /// Stores a certificate (DER) in a container; its public key must be the
    /// container's. Replaces an earlier certificate.
    fn put_certificate(&self, pin: &str, container: &str, cert_der: &[u8]) -> Result<()>;

    /// Deletes a container: its key pair and its certificate (e.g. the old key after a
    /// renewal).
    fn delete_container(&self, pin: &str, container: &str) -> Result<()>;

    /// Makes the container `pending` (key pair and certificate) the container `active`, as
    /// one atomic step: afterwards `active` holds the former `pending` key pair and
    /// certificate, the former `active` key pair and certificate are deleted, and `pending`
    /// no longer exists. A crash at any moment leaves either the state before or the state
    /// after (a PKCS#11 token finishes an interrupted promotion at its next use). `pending`
    /// must hold a key pair and a certificate (`ekey.token.container_not_found` /
    /// `ekey.token.certificate_missing` otherwise). Used by the renewal.
    fn promote(&self, pin: &str, pending: &str, active: &str) -> Result<()>;

    /// Changes the user PIN; `old` counts as a PIN attempt.
    fn change_pin(&self, old: &str, new: &str) -> Result<()>;

    /// Makes a fresh random unlock challenge and stores it on the token, replacing any
    /// earlier one. Works on a locked key; needs no PIN.
    fn unlock_challenge(&self) -> Result<Vec<u8>>;

    /// Applies an unlock code computed by the provider for this token's serial and its
    /// current challenge: sets `new_pin`, resets the counter, unlocks, and consumes the
    /// challenge. Anything else is refused with `ekey.token.unlock_invalid`.
    fn apply_unlock(&self, response: &str, new_pin: &str) -> Result<()>;
}

/// Checks the PIN format: 6–16 printable ASCII characters (no spaces).
pub fn validate_pin(pin: &str) -> Result<()> {
    let ok = (6..=16).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(TokenError::PinFormat)
    }
}

/// Checks a container name: 1–64 characters of `A–Z a–z 0–9 . _ -`.
pub fn validate_container_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::ContainerName)
    }
}

/// A random initial PIN of 8 digits, for personalisation (uniform, from the OS source).
pub fn generate_initial_pin() -> Result<String> {
    let mut pin = String::with_capacity(8);
    while pin.len() < 8 {
        let [b] = crypto::random_array::<1>()?;
        // 250 = 25 × 10: reject the top values so every digit is equally likely.
        if b < 250 {
            pin.push(char::from(b'0' + b % 10));
        }
    }
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekey_domain::Lang;

    #[test]
    fn pin_format() {
        assert!(validate_pin("123456").is_ok());
        assert!(validate_pin("abcdefghijklmnop").is_ok());
        for bad in ["12345", "abcdefghijklmnopq", "123 456", "密码密码密码", ""] {
            assert_eq!(
                validate_pin(bad).unwrap_err().code(),
                "ekey.token.pin_format"
            );
        }
    }

    #[test]
    fn initial_pins_are_eight_digits() {
        for _ in 0..20 {
            let pin = generate_initial_pin().unwrap();
            assert_eq!(pin.len(), 8);
            assert!(pin.bytes().all(|b| b.is_ascii_digit()));
            validate_pin(&pin).unwrap();
        }
    }

    #[test]
    fn messages_in_both_languages_say_tries_left() {
        let e = TokenError::PinIncorrect { tries_left: 3 };
        assert_eq!(e.code(), "ekey.token.pin_incorrect");
        assert!(e.message(Lang::Zh).contains('3'));
        assert!(e.message(Lang::En).contains("3 tries"));
        assert!(TokenError::Locked.message(Lang::Zh).contains("锁定"));
        let missing = TokenError::CertificateMissing("renew-1".into());
        assert_eq!(missing.code(), "ekey.token.certificate_missing");
        assert!(missing.message(Lang::Zh).contains("证书"));
        assert!(missing.message(Lang::En).contains("no certificate"));
        assert!(validate_container_name("renew-1").is_ok());
        assert!(validate_container_name("a/b").is_err());
    }
}

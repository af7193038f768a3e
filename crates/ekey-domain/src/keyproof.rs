//! The exact bytes a key signs to prove something to the server. The agent (or the CLI)
//! signs them with the token; the server rebuilds them and verifies the signature with
//! the certificate's public key (ECDSA P-256 / SHA-256, DER signature).
//!
//! Each message starts with its own purpose tag and version, so a signature made for one
//! purpose (say, a login) can never be replayed as another (say, a renewal).

/// Certificate login: the server's one-time `challenge` (as sent, base64url text) for the
/// portal `origin` (e.g. `https://ekey.example.gov.cn`, no trailing slash). Binding the
/// origin means a signature obtained by another site is worthless here.
pub fn login_message(origin: &str, challenge: &str) -> Vec<u8> {
    tagged(
        "ekey-login-v1",
        &[
            origin.trim_end_matches('/').as_bytes(),
            challenge.as_bytes(),
        ],
    )
}

/// Renewal: the old key vouches for the new key's certificate request (`csr_der`) for
/// the renewal request numbered `number`.
pub fn renewal_countersign_message(number: &str, csr_der: &[u8]) -> Vec<u8> {
    tagged("ekey-renew-v1", &[number.as_bytes(), csr_der])
}

/// Renewal: the new key, now active on the token, confirms the certificate `new_serial`
/// (lower-case hex) of renewal `number` was installed.
pub fn renewal_confirm_message(number: &str, new_serial: &str) -> Vec<u8> {
    tagged(
        "ekey-renew-done-v1",
        &[
            number.as_bytes(),
            new_serial.to_ascii_lowercase().as_bytes(),
        ],
    )
}

/// Unlock: after the unlock code was applied, the key (with its new PIN) proves it works
/// again for unlock request `number` on token `token_serial`.
pub fn unlock_done_message(number: &str, token_serial: &str) -> Vec<u8> {
    tagged(
        "ekey-unlock-done-v1",
        &[number.as_bytes(), token_serial.as_bytes()],
    )
}

/// `tag \n len(part) \n part …`: length-prefixed, so no two different part lists give the
/// same bytes.
fn tagged(tag: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + parts.iter().map(|p| p.len() + 8).sum::<usize>());
    out.extend_from_slice(tag.as_bytes());
    for p in parts {
        out.push(b'\n');
        out.extend_from_slice(p.len().to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_never_collide() {
        let a = login_message("https://x", "abc");
        let b = renewal_confirm_message("https://x", "abc");
        assert_ne!(a, b);
        assert_eq!(login_message("https://x/", "abc"), a);
        // Length prefixes: moving a boundary changes the bytes.
        assert_ne!(
            unlock_done_message("ab", "c"),
            unlock_done_message("a", "bc")
        );
        assert!(a.starts_with(b"ekey-login-v1\n"));
    }
}

//! `Token::promote` and the crash safety of the writes a renewal makes, as scenarios on
//! any [`Token`]; `soft` and `softhsm` run them on each token kind.

use std::path::Path;

use ekey_token::{MAX_PIN_TRIES, Token, TokenStatus, csr};

use crate::support::{self, code, tries_left};

/// Environment of a crashing child: the operation to run (`promote` or
/// `put_certificate`)…
pub const OP_ENV: &str = "EKEY_CRASH_OP";
/// …and, for `put_certificate`, the file holding the certificate (DER) to write.
pub const CERT_ENV: &str = "EKEY_CRASH_CERT";

/// Has the test CA in `dir` certify the key pair in `container`.
pub fn certify(token: &dyn Token, pin: &str, dir: &Path, container: &str) -> Vec<u8> {
    let req = csr(token, pin, container, container).unwrap();
    support::openssl_issue(dir, &req)
}

/// Generates a key pair in `container` and writes a certificate for it; returns both.
pub fn key_with_certificate(
    token: &dyn Token,
    pin: &str,
    dir: &Path,
    container: &str,
) -> (Vec<u8>, Vec<u8>) {
    let spki = token.generate_key(pin, container).unwrap();
    let cert = certify(token, pin, dir, container);
    token.put_certificate(pin, container, &cert).unwrap();
    (spki, cert)
}

/// Name, public key and certificate of each container.
pub type Summary = Vec<(String, Option<Vec<u8>>, Option<Vec<u8>>)>;

pub fn summary(st: &TokenStatus) -> Summary {
    st.containers
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.public_key_spki.clone(),
                c.certificate_der.clone(),
            )
        })
        .collect()
}

fn entry(name: &str, spki: &[u8], cert: &[u8]) -> (String, Option<Vec<u8>>, Option<Vec<u8>>) {
    (name.into(), Some(spki.to_vec()), Some(cert.to_vec()))
}

/// Signs with `container` and checks that the signature verifies with `key` (in process
/// and with OpenSSL) and not with `not_key`.
pub fn assert_signs_with(
    token: &dyn Token,
    pin: &str,
    dir: &Path,
    container: &str,
    key: &[u8],
    not_key: &[u8],
) {
    let message = "续期后的签名".as_bytes();
    let sig = token.sign(pin, container, message).unwrap();
    support::verify_signature(dir, key, message, &sig);
    assert!(!support::verifies(not_key, message, &sig));
}

/// The full contract of `promote`, on a fresh token.
pub fn promote_works(token: &dyn Token, pin: &str, dir: &Path) {
    let (old_spki, old_cert) = key_with_certificate(token, pin, dir, "sign");
    let new_spki = token.generate_key(pin, "renew-1").unwrap();

    // Without a certificate the new key cannot become the active one.
    assert_eq!(
        code(token.promote(pin, "renew-1", "sign")),
        "ekey.token.certificate_missing"
    );
    let new_cert = certify(token, pin, dir, "renew-1");
    token.put_certificate(pin, "renew-1", &new_cert).unwrap();
    let before = vec![
        entry("renew-1", &new_spki, &new_cert),
        entry("sign", &old_spki, &old_cert),
    ];
    assert_eq!(summary(&token.status().unwrap()), before);

    // Bad names are refused before the PIN is looked at.
    for (pending, active) in [("renew-1", "renew-1"), ("renew-1", "a/b"), ("", "sign")] {
        assert_eq!(
            code(token.promote(pin, pending, active)),
            "ekey.token.container_name"
        );
    }
    assert_eq!(
        code(token.promote("123", "renew-1", "sign")),
        "ekey.token.pin_format"
    );
    assert_eq!(token.status().unwrap().pin_tries_left, MAX_PIN_TRIES);

    // A wrong PIN counts a try and changes nothing.
    assert_eq!(tries_left(token.promote("99999999", "renew-1", "sign")), 5);
    let st = token.status().unwrap();
    assert_eq!(st.pin_tries_left, 5);
    assert_eq!(summary(&st), before);

    token.promote(pin, "renew-1", "sign").unwrap();
    let st = token.status().unwrap();
    assert_eq!(st.pin_tries_left, MAX_PIN_TRIES);
    assert_eq!(summary(&st), vec![entry("sign", &new_spki, &new_cert)]);
    assert_signs_with(token, pin, dir, "sign", &new_spki, &old_spki);
    assert_eq!(
        code(token.sign(pin, "renew-1", b"m")),
        "ekey.token.container_not_found"
    );

    // Once only: the pending container is gone.
    assert_eq!(
        code(token.promote(pin, "renew-1", "sign")),
        "ekey.token.container_not_found"
    );
    assert_eq!(
        code(token.promote(pin, "nothing", "sign")),
        "ekey.token.container_not_found"
    );
    assert_eq!(
        summary(&token.status().unwrap()),
        vec![entry("sign", &new_spki, &new_cert)]
    );

    // An absent active container is simply created; the others are not touched.
    let (spare_spki, spare_cert) = key_with_certificate(token, pin, dir, "renew-2");
    token.promote(pin, "renew-2", "spare").unwrap();
    assert_eq!(
        summary(&token.status().unwrap()),
        vec![
            entry("sign", &new_spki, &new_cert),
            entry("spare", &spare_spki, &spare_cert),
        ]
    );
    assert_signs_with(token, pin, dir, "spare", &spare_spki, &new_spki);
    assert_signs_with(token, pin, dir, "sign", &new_spki, &spare_spki);
}

/// The keys and certificates of a promotion from `renew-1` to `sign`.
pub struct Promotion {
    pub old_spki: Vec<u8>,
    pub new_spki: Vec<u8>,
    pub new_cert: Vec<u8>,
}

/// `sign` and `renew-1`, each with a key pair and a certificate: ready to promote.
pub fn prepare_promotion(token: &dyn Token, pin: &str, dir: &Path) -> Promotion {
    let (old_spki, _) = key_with_certificate(token, pin, dir, "sign");
    let (new_spki, new_cert) = key_with_certificate(token, pin, dir, "renew-1");
    Promotion {
        old_spki,
        new_spki,
        new_cert,
    }
}

/// The state after the promotion of `p`: `status()` first (no PIN), then the key.
pub fn assert_promoted(token: &dyn Token, pin: &str, dir: &Path, p: &Promotion) {
    let st = token.status().unwrap();
    assert_eq!(summary(&st), vec![entry("sign", &p.new_spki, &p.new_cert)]);
    assert_eq!((st.pin_tries_left, st.locked), (MAX_PIN_TRIES, false));
    assert_signs_with(token, pin, dir, "sign", &p.new_spki, &p.old_spki);
    assert_eq!(
        code(token.sign(pin, "renew-1", b"m")),
        "ekey.token.container_not_found"
    );
    assert_eq!(
        code(token.promote(pin, "renew-1", "sign")),
        "ekey.token.container_not_found"
    );
    let st = token.status().unwrap();
    assert_eq!(summary(&st), vec![entry("sign", &p.new_spki, &p.new_cert)]);
    assert_eq!(st.pin_tries_left, MAX_PIN_TRIES);
}

/// A key pair in `sign` with a certificate, and a second certificate for the same key.
pub struct Replacement {
    pub spki: Vec<u8>,
    pub old_cert: Vec<u8>,
    pub new_cert: Vec<u8>,
}

pub fn prepare_replacement(token: &dyn Token, pin: &str, dir: &Path) -> Replacement {
    let (spki, old_cert) = key_with_certificate(token, pin, dir, "sign");
    let new_cert = certify(token, pin, dir, "sign");
    assert_ne!(old_cert, new_cert);
    Replacement {
        spki,
        old_cert,
        new_cert,
    }
}

/// After a crash inside `put_certificate(sign, new_cert)`: `sign` holds exactly the old or
/// the new certificate, the key works, and writing the certificate again succeeds.
/// Returns the certificate found after the crash.
pub fn assert_certificate_whole(
    token: &dyn Token,
    pin: &str,
    dir: &Path,
    r: &Replacement,
) -> Vec<u8> {
    let st = token.status().unwrap();
    assert_eq!(st.containers.len(), 1, "{st:?}");
    let c = &st.containers[0];
    assert_eq!(c.name, "sign");
    assert_eq!(c.public_key_spki.as_deref(), Some(r.spki.as_slice()));
    let found = c.certificate_der.clone().expect("a certificate");
    assert!(
        found == r.old_cert || found == r.new_cert,
        "neither the old nor the new certificate"
    );
    let message = b"after the crash";
    let sig = token.sign(pin, "sign", message).unwrap();
    support::verify_signature(dir, &r.spki, message, &sig);

    token.put_certificate(pin, "sign", &r.new_cert).unwrap();
    let st = token.status().unwrap();
    assert_eq!(summary(&st), vec![entry("sign", &r.spki, &r.new_cert)]);
    assert_eq!(st.pin_tries_left, MAX_PIN_TRIES);
    // And once more, replacing a certificate that is already there.
    token.put_certificate(pin, "sign", &r.old_cert).unwrap();
    assert_eq!(
        summary(&token.status().unwrap()),
        vec![entry("sign", &r.spki, &r.old_cert)]
    );
    found
}

/// Body of a crashing child: runs the operation named by [`OP_ENV`] on `token`, which
/// must stop the process at its crash point (`EKEY_FAULT`) and so never return.
pub fn run_crashing_operation(token: &dyn Token, pin: &str) -> ! {
    let op = std::env::var(OP_ENV).expect(OP_ENV);
    let outcome = match op.as_str() {
        "promote" => token.promote(pin, "renew-1", "sign"),
        "put_certificate" => {
            let cert = std::fs::read(std::env::var_os(CERT_ENV).expect(CERT_ENV)).unwrap();
            token.put_certificate(pin, "sign", &cert)
        }
        other => panic!("unknown operation {other:?}"),
    };
    panic!("{op} returned {outcome:?} instead of stopping at its crash point");
}

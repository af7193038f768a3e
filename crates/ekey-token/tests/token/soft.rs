//! The software token.

use std::path::Path;

use ekey_token::{CsrSubject, SoftToken, Token, admin, csr, csr_with_subject};

use crate::promotion;
use crate::support::{self, MASTER, code, tries_left};

const PIN: &str = "12345678";

fn new_token(dir: &Path, serial: &str) -> SoftToken {
    SoftToken::create(
        dir.join(format!("{serial}.ekey")),
        serial,
        "测试企业",
        PIN,
        MASTER,
    )
    .unwrap()
}

#[test]
fn create_generate_sign_csr_and_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let token = new_token(dir.path(), "SN-0001");
    let st = token.status().unwrap();
    assert_eq!(
        (st.serial.as_str(), st.label.as_str()),
        ("SN-0001", "测试企业")
    );
    assert_eq!((st.pin_tries_left, st.locked), (6, false));
    assert!(st.containers.is_empty());
    assert_eq!(
        code(SoftToken::create(token.path(), "SN-0001", "x", PIN, MASTER)),
        "ekey.token.already_exists"
    );

    let spki = token.generate_key(PIN, "sign").unwrap();
    assert_eq!(
        code(token.generate_key(PIN, "sign")),
        "ekey.token.container_exists"
    );
    assert_eq!(
        code(token.generate_key(PIN, "a/b")),
        "ekey.token.container_name"
    );

    // The private key is not in the file in clear: the file holds no 32-byte value that
    // is the scalar of the public key (checked indirectly: no PKCS#8/SEC1 marker, and the
    // only key material is the encrypted blob).
    let file = std::fs::read_to_string(token.path()).unwrap();
    assert!(file.contains("\"private_key\""));
    assert!(!file.contains("PRIVATE KEY"));

    let message = "报关单 2024-0001".as_bytes();
    let sig = token.sign(PIN, "sign", message).unwrap();
    support::verify_signature(dir.path(), &spki, message, &sig);
    assert_eq!(
        code(token.sign(PIN, "nope", message)),
        "ekey.token.container_not_found"
    );

    let req = csr_with_subject(
        &token,
        PIN,
        "sign",
        &CsrSubject {
            country: Some("CN".into()),
            organization: Some("上海某某进出口有限公司".into()),
            common_name: "张三".into(),
            serial_number: Some("91310000MA1FL0XX7Y".into()),
        },
    )
    .unwrap();
    let subject = support::openssl_verify_csr(dir.path(), &req);
    assert!(subject.contains("CN=张三"), "{subject}");
    assert!(subject.contains("O=上海某某进出口有限公司"), "{subject}");
    assert!(
        subject.contains("serialNumber=91310000MA1FL0XX7Y"),
        "{subject}"
    );
    let plain = csr(&token, PIN, "sign", "李四").unwrap();
    support::openssl_verify_csr(dir.path(), &plain);
    // A wrong PIN surfaces as the token's error, not as an encoding error.
    assert_eq!(tries_left(csr(&token, "00000000", "sign", "x")), 5);

    let cert = support::openssl_issue(dir.path(), &req);
    token.put_certificate(PIN, "sign", &cert).unwrap();
    let st = token.status().unwrap();
    assert_eq!(st.pin_tries_left, 6);
    assert_eq!(st.containers.len(), 1);
    assert_eq!(
        st.containers[0].certificate_der.as_deref(),
        Some(cert.as_slice())
    );
    assert_eq!(
        st.containers[0].public_key_spki.as_deref(),
        Some(spki.as_slice())
    );

    // A certificate for another key is refused; garbage is refused.
    token.generate_key(PIN, "renew-1").unwrap();
    assert_eq!(
        code(token.put_certificate(PIN, "renew-1", &cert)),
        "ekey.token.certificate_mismatch"
    );
    assert_eq!(
        code(token.put_certificate(PIN, "renew-1", b"not a certificate")),
        "ekey.token.certificate_invalid"
    );
    token.delete_container(PIN, "renew-1").unwrap();
    assert_eq!(
        code(token.delete_container(PIN, "renew-1")),
        "ekey.token.container_not_found"
    );

    // Reopening the file gives the same token and the same key.
    let again = SoftToken::open(token.path()).unwrap();
    assert_eq!(again.serial(), "SN-0001");
    let sig = again.sign(PIN, "sign", b"again").unwrap();
    support::verify_signature(dir.path(), &spki, b"again", &sig);
    assert_eq!(
        code(SoftToken::open(dir.path().join("missing.ekey"))),
        "ekey.token.not_found"
    );
}

#[test]
fn six_wrong_pins_lock_and_the_lock_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let token = new_token(dir.path(), "SN-0002");
    token.generate_key(PIN, "sign").unwrap();

    // Five wrong, then the right one: the counter goes back to 6.
    for expected in (1..=5).rev() {
        assert_eq!(tries_left(token.sign("87654321", "sign", b"m")), expected);
        assert_eq!(token.status().unwrap().pin_tries_left, expected);
    }
    token.sign(PIN, "sign", b"m").unwrap();
    assert_eq!(token.status().unwrap().pin_tries_left, 6);

    // A PIN of the wrong shape is refused without costing a try.
    assert_eq!(
        code(token.sign("123", "sign", b"m")),
        "ekey.token.pin_format"
    );
    assert_eq!(token.status().unwrap().pin_tries_left, 6);

    // Six wrong: the sixth says it locked the key; then even the right PIN is refused.
    for expected in (0..=5).rev() {
        assert_eq!(
            tries_left(token.change_pin("87654321", "11112222")),
            expected
        );
    }
    assert_eq!(code(token.sign(PIN, "sign", b"m")), "ekey.token.locked");
    assert_eq!(code(token.generate_key(PIN, "x")), "ekey.token.locked");
    assert_eq!(code(token.change_pin(PIN, "11112222")), "ekey.token.locked");
    let st = token.status().unwrap();
    assert_eq!((st.pin_tries_left, st.locked), (0, true));

    let reopened = SoftToken::open(token.path()).unwrap();
    assert!(reopened.status().unwrap().locked);
    assert_eq!(code(reopened.sign(PIN, "sign", b"m")), "ekey.token.locked");
}

#[test]
fn change_pin() {
    let dir = tempfile::tempdir().unwrap();
    let token = new_token(dir.path(), "SN-0003");
    let spki = token.generate_key(PIN, "sign").unwrap();
    assert_eq!(
        code(token.change_pin(PIN, "short")),
        "ekey.token.pin_format"
    );
    token.change_pin(PIN, "new-pin-2024").unwrap();
    assert_eq!(tries_left(token.sign(PIN, "sign", b"m")), 5);
    let sig = token.sign("new-pin-2024", "sign", b"m").unwrap();
    support::verify_signature(dir.path(), &spki, b"m", &sig);
    assert_eq!(token.status().unwrap().pin_tries_left, 6);
}

#[test]
fn admin_unlock_once_for_this_token_and_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let token = new_token(dir.path(), "SN-0004");
    let other = new_token(dir.path(), "SN-0005");
    let spki = token.generate_key(PIN, "sign").unwrap();
    for _ in 0..6 {
        let _ = token.sign("87654321", "sign", b"m");
    }
    assert!(token.status().unwrap().locked);

    // Nothing outstanding yet.
    let stray =
        admin::unlock_response(MASTER, "SN-0004", &other.unlock_challenge().unwrap()).unwrap();
    assert_eq!(
        code(token.apply_unlock(&stray, "22223333")),
        "ekey.token.unlock_invalid"
    );

    let c1 = token.unlock_challenge().unwrap();
    assert!(c1.len() >= 16);
    let r1 = admin::unlock_response(MASTER, "SN-0004", &c1).unwrap();
    assert!(r1.len() <= 40, "{r1}");
    // A new challenge replaces the old one: the answer to c1 no longer works.
    let c2 = token.unlock_challenge().unwrap();
    assert_ne!(c1, c2);
    assert_eq!(
        code(token.apply_unlock(&r1, "22223333")),
        "ekey.token.unlock_invalid"
    );

    // Computed for another token's serial, or with another master secret: refused.
    let wrong_serial = admin::unlock_response(MASTER, "SN-0005", &c2).unwrap();
    assert_eq!(
        code(token.apply_unlock(&wrong_serial, "22223333")),
        "ekey.token.unlock_invalid"
    );
    let wrong_master = admin::unlock_response(b"another provider", "SN-0004", &c2).unwrap();
    assert_eq!(
        code(token.apply_unlock(&wrong_master, "22223333")),
        "ekey.token.unlock_invalid"
    );
    // The other token's own challenge answered for it does not open this one either.
    let c_other = other.unlock_challenge().unwrap();
    let r_other = admin::unlock_response(MASTER, "SN-0005", &c_other).unwrap();
    assert_eq!(
        code(token.apply_unlock(&r_other, "22223333")),
        "ekey.token.unlock_invalid"
    );
    // Garbage challenges are refused on the provider side.
    assert_eq!(
        code(admin::unlock_response(
            MASTER,
            "SN-0004",
            b"0123456789abcdef"
        )),
        "ekey.token.challenge_invalid"
    );

    let r2 = admin::unlock_response(MASTER, "SN-0004", &c2).unwrap();
    // A typo is reported as such, does not consume the challenge, and the new PIN's
    // format is checked first.
    let typo = &r2[..r2.len() - 1];
    assert_eq!(
        code(token.apply_unlock(typo, "22223333")),
        "ekey.token.unlock_code_format"
    );
    assert_eq!(
        code(token.apply_unlock(&r2, "2222")),
        "ekey.token.pin_format"
    );
    // Lower case with spaces is how people retype codes.
    token
        .apply_unlock(&r2.to_lowercase().replace('-', " "), "22223333")
        .unwrap();
    let st = token.status().unwrap();
    assert_eq!((st.pin_tries_left, st.locked), (6, false));

    // The keys survived: the same public key verifies a signature made with the new PIN.
    let sig = token.sign("22223333", "sign", b"after unlock").unwrap();
    support::verify_signature(dir.path(), &spki, b"after unlock", &sig);
    assert_eq!(tries_left(token.sign(PIN, "sign", b"m")), 5);

    // Used once: a replay is refused, also after a new challenge was issued.
    assert_eq!(
        code(token.apply_unlock(&r2, "33334444")),
        "ekey.token.unlock_invalid"
    );
    let c3 = token.unlock_challenge().unwrap();
    assert_eq!(
        code(token.apply_unlock(&r2, "33334444")),
        "ekey.token.unlock_invalid"
    );
    // …while the answer to the new challenge works (and keys still work after it).
    let r3 = admin::unlock_response(MASTER, "SN-0004", &c3).unwrap();
    token.apply_unlock(&r3, "33334444").unwrap();
    let sig = token.sign("33334444", "sign", b"m").unwrap();
    support::verify_signature(dir.path(), &spki, b"m", &sig);

    // The other token was never touched.
    assert_eq!(other.status().unwrap().pin_tries_left, 6);
}

/// Child mode of [`two_processes_at_once_count_every_attempt`]: one wrong PIN.
#[test]
fn child_wrong_pin_attempt() {
    if !support::is_child() {
        return; // only meaningful when started by the test below
    }
    let path = std::env::var("EKEY_TOKEN_FILE").expect("EKEY_TOKEN_FILE");
    let token = SoftToken::open(path).unwrap();
    let outcome = match token.sign("99999999", "sign", b"m") {
        Err(ekey_token::TokenError::PinIncorrect { tries_left }) => {
            format!("pin_incorrect {tries_left}")
        }
        Err(ekey_token::TokenError::Locked) => "locked".to_string(),
        other => panic!("unexpected {other:?}"),
    };
    println!("\nOUTCOME {outcome}");
}

#[test]
fn two_processes_at_once_count_every_attempt() {
    const N: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let token = new_token(dir.path(), "SN-0006");
    token.generate_key(PIN, "sign").unwrap();
    let test = "soft::child_wrong_pin_attempt";
    let children: Vec<_> = (0..N)
        .map(|_| support::spawn_child(test, &[("EKEY_TOKEN_FILE", token.path().as_os_str())]))
        .collect();
    let mut outcomes: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = support::expect_child_passed(test, c.wait_with_output().unwrap());
            out.lines()
                // libtest may print "test … ... " on the same line first.
                .find_map(|l| l.split_once("OUTCOME ").map(|(_, o)| o.trim().to_string()))
                .expect("child reported an outcome")
        })
        .collect();
    outcomes.sort();
    // Exactly six attempts counted, each seeing a distinct counter value: no lost update.
    let mut expected: Vec<String> = (0..=5).map(|n| format!("pin_incorrect {n}")).collect();
    expected.extend(std::iter::repeat_n("locked".to_string(), N - 6));
    expected.sort();
    assert_eq!(outcomes, expected);
    let st = token.status().unwrap();
    assert_eq!((st.pin_tries_left, st.locked), (0, true));
    assert_eq!(code(token.sign(PIN, "sign", b"m")), "ekey.token.locked");
}

#[test]
fn promote_makes_the_renewal_key_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let token = new_token(dir.path(), "SN-0007");
    promotion::promote_works(&token, PIN, dir.path());
    // The promoted private key was re-encrypted for its new container: it still opens
    // after the file is read again.
    let again = SoftToken::open(token.path()).unwrap();
    again.sign(PIN, "sign", b"m").unwrap();
    again.sign(PIN, "spare", b"m").unwrap();
}

/// Environment of [`child_crashing_operation`]: the token file.
const CRASH_FILE_ENV: &str = "EKEY_CRASH_TOKEN_FILE";

/// Child of the crash tests below: runs one operation under `EKEY_FAULT` and dies in it.
#[test]
#[ignore = "child process of the soft token crash tests"]
fn child_crashing_operation() {
    let Some(path) = std::env::var_os(CRASH_FILE_ENV) else {
        return; // only meaningful when started by a crash test
    };
    let token = SoftToken::open(path).unwrap();
    promotion::run_crashing_operation(&token, PIN);
}

/// Temp files the token's saves left in `dir`.
fn temp_files(dir: &Path, token_file: &str) -> Vec<std::path::PathBuf> {
    let prefix = format!(".{token_file}.tmp-");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

#[test]
fn promote_killed_at_its_crash_point_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let token = new_token(dir.path(), "SN-0008");
    let p = promotion::prepare_promotion(&token, PIN, dir.path());
    support::expect_child_aborts_at(
        "soft::child_crashing_operation",
        "token.promote.mid",
        &[
            (CRASH_FILE_ENV, token.path().as_os_str()),
            (promotion::OP_ENV, "promote".as_ref()),
        ],
    );
    // The child died right after the rename: the file holds the whole new state.
    assert!(temp_files(dir.path(), "SN-0008.ekey").is_empty());
    let token = SoftToken::open(token.path()).unwrap();
    promotion::assert_promoted(&token, PIN, dir.path(), &p);
}

#[test]
fn put_certificate_killed_before_its_rename_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let token = new_token(dir.path(), "SN-0009");
    let r = promotion::prepare_replacement(&token, PIN, dir.path());
    let cert_file = dir.path().join("new-cert.der");
    std::fs::write(&cert_file, &r.new_cert).unwrap();
    support::expect_child_aborts_at(
        "soft::child_crashing_operation",
        "token.put_certificate.mid",
        &[
            (CRASH_FILE_ENV, token.path().as_os_str()),
            (promotion::OP_ENV, "put_certificate".as_ref()),
            (promotion::CERT_ENV, cert_file.as_os_str()),
        ],
    );
    // The child died with the new state complete in its temp file, not yet renamed.
    let left = temp_files(dir.path(), "SN-0009.ekey");
    assert_eq!(left.len(), 1, "{left:?}");
    use base64::Engine;
    let new_b64 = base64::engine::general_purpose::STANDARD.encode(&r.new_cert);
    assert!(
        std::fs::read_to_string(&left[0])
            .unwrap()
            .contains(&new_b64)
    );

    // The token file was not touched; the stale temp file is ignored, then cleaned up.
    let token = SoftToken::open(token.path()).unwrap();
    let found = promotion::assert_certificate_whole(&token, PIN, dir.path(), &r);
    assert_eq!(found, r.old_cert);
    assert!(temp_files(dir.path(), "SN-0009.ekey").is_empty());
}

#[test]
fn a_handle_stays_logged_in_only_while_nothing_changed_on_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let a = new_token(dir.path(), "SN-0009");
    a.generate_key(PIN, "sign").unwrap();
    a.sign(PIN, "sign", b"m").unwrap();
    // Another handle (another process) gets a PIN wrong: the counter shows it, and the
    // first handle's next use with the right PIN checks it again and resets the counter.
    let b = SoftToken::open(a.path()).unwrap();
    assert_eq!(tries_left(b.sign("87654321", "sign", b"m")), 5);
    assert_eq!(a.status().unwrap().pin_tries_left, 5);
    a.sign(PIN, "sign", b"m").unwrap();
    assert_eq!(a.status().unwrap().pin_tries_left, 6);
    // A wrong PIN on the logged-in handle still costs a try.
    assert_eq!(tries_left(a.sign("87654321", "sign", b"m")), 5);
    a.sign(PIN, "sign", b"m").unwrap();
    // The PIN changed elsewhere: the old one no longer works on the first handle.
    b.change_pin(PIN, "11112222").unwrap();
    assert_eq!(tries_left(a.sign(PIN, "sign", b"m")), 5);
    a.sign("11112222", "sign", b"m").unwrap();
    assert_eq!(a.status().unwrap().pin_tries_left, 6);
}

//! PKCS#11 tokens on a real SoftHSM2, cross-checked with OpenSC's pkcs11-tool.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised, and environment
//! variables are per process: each test therefore re-runs itself in a child process
//! whose environment points SoftHSM2 at a fresh token directory of its own.

use std::path::Path;
use std::process::Output;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use ekey_token::{Pkcs11Token, Token, TokenError, admin, csr};

use crate::promotion;
use crate::support::{self, MASTER, code, tries_left};

const PIN: &str = "24681357";
const TRANSPORT_SO_PIN: &str = "transport-so-pin";

/// Runs `body` in a child process with its own SoftHSM2 token directory.
fn in_softhsm(test: &str, body: fn(&Path)) {
    let module = support::softhsm_module();
    if support::is_child() {
        assert!(std::env::var_os("SOFTHSM2_CONF").is_some());
        body(&module);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = support::softhsm_conf(dir.path());
    let child = support::spawn_child(test, &[("SOFTHSM2_CONF", conf.as_os_str())]);
    support::expect_child_passed(test, child.wait_with_output().unwrap());
}

fn pkcs11_tool(module: &Path, args: &[&str]) -> Output {
    std::process::Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module)
        .args(args)
        .output()
        .expect("pkcs11-tool (package opensc) must be installed")
}

fn pkcs11_tool_ok(module: &Path, args: &[&str]) -> String {
    let out = pkcs11_tool(module, args);
    assert!(
        out.status.success(),
        "pkcs11-tool {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A second, raw cryptoki view of the module in this process (the module is already
/// initialised by the token layer; this context never finalises it).
fn raw_session(module: &Path, serial: &str) -> Session {
    let ctx = Pkcs11::new(module).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().serial_number().trim_end() == serial)
        .expect("token by serial");
    ctx.open_rw_session(slot).unwrap()
}

fn so_login_result(module: &Path, serial: &str, so_pin: &str) -> Result<(), CkError> {
    let session = raw_session(module, serial);
    let r = session.login(UserType::So, Some(&AuthPin::from(so_pin)));
    if r.is_ok() {
        session.logout().unwrap();
    }
    r
}

#[test]
fn init_generate_sign_and_list_with_pkcs11_tool() {
    in_softhsm(
        "softhsm::init_generate_sign_and_list_with_pkcs11_tool",
        |module| {
            let dir = tempfile::tempdir().unwrap();
            let token =
                Pkcs11Token::init(module, "ekey-t1", TRANSPORT_SO_PIN, PIN, MASTER).unwrap();
            let serial = token.serial();
            assert!(!serial.is_empty());
            assert_eq!(token.label(), "ekey-t1");
            let st = token.status().unwrap();
            assert_eq!((st.pin_tries_left, st.locked), (6, false));
            assert!(st.containers.is_empty());

            let spki = token.generate_key(PIN, "sign").unwrap();
            assert_eq!(
                code(token.generate_key(PIN, "sign")),
                "ekey.token.container_exists"
            );
            let message = "出口报关单".as_bytes();
            let sig = token.sign(PIN, "sign", message).unwrap();
            support::verify_signature(dir.path(), &spki, message, &sig);
            let req = csr(&token, PIN, "sign", "王五").unwrap();
            support::openssl_verify_csr(dir.path(), &req);
            let cert = support::openssl_issue(dir.path(), &req);
            token.put_certificate(PIN, "sign", &cert).unwrap();
            let st = token.status().unwrap();
            assert_eq!(st.containers.len(), 1);
            assert_eq!(st.containers[0].name, "sign");
            assert_eq!(
                st.containers[0].public_key_spki.as_deref(),
                Some(spki.as_slice())
            );
            assert_eq!(
                st.containers[0].certificate_der.as_deref(),
                Some(cert.as_slice())
            );

            // pkcs11-tool, public session: our public key, certificate and counter object;
            // no private key.
            let public = pkcs11_tool_ok(module, &["--token-label", "ekey-t1", "--list-objects"]);
            println!("--- pkcs11-tool --list-objects\n{public}");
            assert!(public.contains("Public Key Object; EC"), "{public}");
            assert!(public.contains("Certificate Object"), "{public}");
            assert!(public.contains("ekey-pin-counter"), "{public}");
            assert!(public.contains("ekey-unlock-seal"), "{public}");
            assert!(public.contains("label:      sign"), "{public}");
            assert!(!public.contains("Private Key Object"), "{public}");

            // Logged in: the private key, sensitive and never extractable.
            let private = pkcs11_tool_ok(
                module,
                &[
                    "--token-label",
                    "ekey-t1",
                    "--login",
                    "--pin",
                    PIN,
                    "--list-objects",
                ],
            );
            println!("--- pkcs11-tool --login --list-objects\n{private}");
            let key_block = private
                .split("Private Key Object")
                .nth(1)
                .expect("private key listed after login");
            let key_block = key_block.split("Object").next().unwrap();
            assert!(key_block.contains("label:      sign"), "{key_block}");
            assert!(key_block.contains("sensitive"), "{key_block}");
            assert!(key_block.contains("never extractable"), "{key_block}");
            assert!(key_block.contains("local"), "{key_block}");

            // Reading the private key's value fails (pkcs11-tool cannot even try: "reading
            // private keys not (yet) supported"), so ask the module directly.
            let session = raw_session(module, &serial);
            session
                .login(UserType::User, Some(&AuthPin::from(PIN)))
                .unwrap();
            let key = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Label(b"sign".to_vec()),
                ])
                .unwrap();
            assert_eq!(key.len(), 1);
            let info = session
                .get_attribute_info_map(key[0], &[AttributeType::Value])
                .unwrap();
            assert!(matches!(
                info[&AttributeType::Value],
                AttributeInfo::Sensitive
            ));
            let attrs = session
                .get_attributes(
                    key[0],
                    &[
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::NeverExtractable,
                        AttributeType::Local,
                        AttributeType::Value,
                    ],
                )
                .unwrap();
            assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
            assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
            assert!(
                attrs.contains(&Attribute::NeverExtractable(true)),
                "{attrs:?}"
            );
            assert!(attrs.contains(&Attribute::Local(true)), "{attrs:?}");
            assert!(
                !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
                "{attrs:?}"
            );
            session.logout().unwrap();
            drop(session);

            // The transport SO PIN was replaced by the sealed one only the provider knows.
            assert!(matches!(
                so_login_result(module, &serial, TRANSPORT_SO_PIN),
                Err(CkError::Pkcs11(RvError::PinIncorrect, _))
            ));
            let challenge = token.unlock_challenge().unwrap();
            let so_pin = admin::so_pin(MASTER, &serial, &challenge).unwrap();
            so_login_result(module, &serial, &so_pin).unwrap();

            // Personalising a second token with the same label is refused.
            assert_eq!(
                code(Pkcs11Token::init(
                    module,
                    "ekey-t1",
                    TRANSPORT_SO_PIN,
                    PIN,
                    MASTER
                )),
                "ekey.token.already_exists"
            );
        },
    );
}

#[test]
fn six_try_rule_and_unlock_through_our_layer() {
    in_softhsm(
        "softhsm::six_try_rule_and_unlock_through_our_layer",
        |module| {
            let dir = tempfile::tempdir().unwrap();
            let token =
                Pkcs11Token::init(module, "ekey-t2", TRANSPORT_SO_PIN, PIN, MASTER).unwrap();
            let serial = token.serial();
            let spki = token.generate_key(PIN, "sign").unwrap();

            for expected in (1..=5).rev() {
                assert_eq!(tries_left(token.sign("11111111", "sign", b"m")), expected);
            }
            token.sign(PIN, "sign", b"m").unwrap();
            assert_eq!(token.status().unwrap().pin_tries_left, 6);
            assert_eq!(code(token.sign("1", "sign", b"m")), "ekey.token.pin_format");
            for expected in (0..=5).rev() {
                assert_eq!(tries_left(token.sign("11111111", "sign", b"m")), expected);
            }
            assert_eq!(code(token.sign(PIN, "sign", b"m")), "ekey.token.locked");
            assert!(token.status().unwrap().locked);

            // SoftHSM2 itself did not lock: the module still accepts the right PIN. Only our
            // layer refuses it.
            let session = raw_session(module, &serial);
            session
                .login(UserType::User, Some(&AuthPin::from(PIN)))
                .unwrap();
            session.logout().unwrap();
            drop(session);

            // The counter is on the token, readable by anyone (pkcs11-tool, no login).
            let out = pkcs11_tool(
                module,
                &[
                    "--token-label",
                    "ekey-t2",
                    "--read-object",
                    "--type",
                    "data",
                    "--label",
                    "ekey-pin-counter",
                ],
            );
            assert!(out.status.success());
            assert_eq!(out.stdout.len(), 9, "generation (8 bytes) and counter");
            assert_eq!(out.stdout[8], 0);

            // Still locked in a new PKCS#11 context (the module is finalised when the last
            // token of the process is dropped, and initialised again on open).
            drop(token);
            let token = Pkcs11Token::open(module, "ekey-t2").unwrap();
            assert!(token.status().unwrap().locked);
            assert_eq!(code(token.change_pin(PIN, "13572468")), "ekey.token.locked");

            // Unlock. The SO PIN before the unlock, for checking that it rotates.
            let before = token.unlock_challenge().unwrap();
            let so_before = admin::so_pin(MASTER, &serial, &before).unwrap();

            let c1 = token.unlock_challenge().unwrap();
            assert!(c1.len() >= 16);
            let r1 = admin::unlock_response(MASTER, &serial, &c1).unwrap();
            assert!(r1.len() <= 40);
            let for_other_serial = admin::unlock_response(MASTER, "0000000000000000", &c1).unwrap();
            assert_eq!(
                code(token.apply_unlock(&for_other_serial, "13572468")),
                "ekey.token.unlock_invalid"
            );
            let c2 = token.unlock_challenge().unwrap();
            assert_eq!(
                code(token.apply_unlock(&r1, "13572468")),
                "ekey.token.unlock_invalid"
            );
            let r2 = admin::unlock_response(MASTER, &serial, &c2).unwrap();
            token.apply_unlock(&r2, "13572468").unwrap();
            let st = token.status().unwrap();
            assert_eq!((st.pin_tries_left, st.locked), (6, false));
            let sig = token.sign("13572468", "sign", b"after unlock").unwrap();
            support::verify_signature(dir.path(), &spki, b"after unlock", &sig);
            assert_eq!(tries_left(token.sign(PIN, "sign", b"m")), 5);

            // Once only.
            assert_eq!(
                code(token.apply_unlock(&r2, "97531864")),
                "ekey.token.unlock_invalid"
            );
            let c3 = token.unlock_challenge().unwrap();
            assert_eq!(
                code(token.apply_unlock(&r2, "97531864")),
                "ekey.token.unlock_invalid"
            );

            // The SO PIN rotated: the old one is dead, the provider can compute the new one.
            assert!(matches!(
                so_login_result(module, &serial, &so_before),
                Err(CkError::Pkcs11(RvError::PinIncorrect, _))
            ));
            let so_now = admin::so_pin(MASTER, &serial, &c3).unwrap();
            assert_ne!(*so_now, *so_before);
            so_login_result(module, &serial, &so_now).unwrap();

            // Change PIN through the layer.
            token.change_pin("13572468", "86427531").unwrap();
            token.sign("86427531", "sign", b"m").unwrap();
            assert_eq!(tries_left(token.sign("13572468", "sign", b"m")), 5);
        },
    );
}

#[test]
fn select_by_label_or_serial_in_a_new_context() {
    in_softhsm(
        "softhsm::select_by_label_or_serial_in_a_new_context",
        |module| {
            let a = Pkcs11Token::init(module, "ekey-a", TRANSPORT_SO_PIN, PIN, MASTER).unwrap();
            let b = Pkcs11Token::init(module, "ekey-b", TRANSPORT_SO_PIN, PIN, MASTER).unwrap();
            assert_ne!(a.serial(), b.serial());
            let spki = a.generate_key(PIN, "sign").unwrap();
            let (serial_a, serial_b) = (a.serial(), b.serial());
            drop(a);
            drop(b);

            let by_label = Pkcs11Token::open(module, "ekey-a").unwrap();
            assert_eq!(by_label.serial(), serial_a);
            let st = by_label.status().unwrap();
            assert_eq!(st.containers.len(), 1);
            assert_eq!(
                st.containers[0].public_key_spki.as_deref(),
                Some(spki.as_slice())
            );
            let by_serial = Pkcs11Token::open(module, &serial_b).unwrap();
            assert_eq!(by_serial.label(), "ekey-b");
            assert!(by_serial.status().unwrap().containers.is_empty());
            assert_eq!(
                code(Pkcs11Token::open(module, "ekey-none")),
                "ekey.token.not_found"
            );
            assert_eq!(
                code(Pkcs11Token::open("/nonexistent/libpkcs11.so", "ekey-a")),
                "ekey.token.module"
            );

            // A token initialised by someone else is not an eKey token.
            support::run_ok(
                "softhsm2-util",
                &[
                    "--init-token",
                    "--free",
                    "--label",
                    "foreign",
                    "--so-pin",
                    TRANSPORT_SO_PIN,
                    "--pin",
                    PIN,
                ],
            );
            drop(by_label);
            drop(by_serial);
            assert_eq!(
                code(Pkcs11Token::open(module, "foreign")),
                "ekey.token.not_personalised"
            );
            // …until it is personalised, which needs its current SO PIN.
            assert!(Pkcs11Token::init(module, "foreign", "wrong-so-pin", PIN, MASTER).is_err());
            let foreign =
                Pkcs11Token::init(module, "foreign", TRANSPORT_SO_PIN, PIN, MASTER).unwrap();
            foreign.generate_key(PIN, "sign").unwrap();
            assert_eq!(foreign.status().unwrap().pin_tries_left, 6);
        },
    );
}

#[test]
fn unlock_interrupted_after_the_so_pin_changed_is_finished_by_the_next() {
    in_softhsm(
        "softhsm::unlock_interrupted_after_the_so_pin_changed_is_finished_by_the_next",
        |module| {
            let dir = tempfile::tempdir().unwrap();
            let token =
                Pkcs11Token::init(module, "ekey-crash", TRANSPORT_SO_PIN, PIN, MASTER).unwrap();
            let serial = token.serial();
            let spki = token.generate_key(PIN, "sign").unwrap();

            // The process "dies" between C_SetPIN (SO PIN rotated) and recording the new
            // seal as current.
            let c1 = token.unlock_challenge().unwrap();
            let so_before = admin::so_pin(MASTER, &serial, &c1).unwrap();
            let r1 = admin::unlock_response(MASTER, &serial, &c1).unwrap();
            ekey_token::fault::stop_after_so_pin_change(true);
            assert_eq!(
                code(token.apply_unlock(&r1, "11223344")),
                "ekey.token.device"
            );
            ekey_token::fault::stop_after_so_pin_change(false);
            assert!(matches!(
                so_login_result(module, &serial, &so_before),
                Err(CkError::Pkcs11(RvError::PinIncorrect, _))
            ));

            // In a new context, the next unlock still works: the token falls back to the
            // pending seal whose secret the current one encrypts, and rotates again.
            drop(token);
            let token = Pkcs11Token::open(module, &serial).unwrap();
            let c2 = token.unlock_challenge().unwrap();
            let r2 = admin::unlock_response(MASTER, &serial, &c2).unwrap();
            token.apply_unlock(&r2, "55667788").unwrap();
            let sig = token.sign("55667788", "sign", b"m").unwrap();
            support::verify_signature(dir.path(), &spki, b"m", &sig);
            let c3 = token.unlock_challenge().unwrap();
            let so_now = admin::so_pin(MASTER, &serial, &c3).unwrap();
            so_login_result(module, &serial, &so_now).unwrap();
            assert_eq!(
                code(token.apply_unlock(&r2, "55667788")),
                "ekey.token.unlock_invalid"
            );
        },
    );
}

/// Child mode of [`two_processes_at_once_on_pkcs11`]: one wrong PIN.
#[test]
fn child_pkcs11_wrong_pin() {
    if !support::is_child() || std::env::var_os("EKEY_P11_LABEL").is_none() {
        return; // only meaningful when started by the test below
    }
    let module = support::softhsm_module();
    let label = std::env::var("EKEY_P11_LABEL").unwrap();
    let token = Pkcs11Token::open(&module, &label).unwrap();
    let outcome = match token.sign("99999999", "sign", b"m") {
        Err(TokenError::PinIncorrect { tries_left }) => format!("pin_incorrect {tries_left}"),
        Err(TokenError::Locked) => "locked".to_string(),
        other => panic!("unexpected {other:?}"),
    };
    println!("\nOUTCOME {outcome}");
}

#[test]
fn two_processes_at_once_on_pkcs11() {
    in_softhsm("softhsm::two_processes_at_once_on_pkcs11", |module| {
        const N: usize = 8;
        let token = Pkcs11Token::init(module, "ekey-mp", TRANSPORT_SO_PIN, PIN, MASTER).unwrap();
        token.generate_key(PIN, "sign").unwrap();
        let test = "softhsm::child_pkcs11_wrong_pin";
        let label = std::ffi::OsString::from("ekey-mp");
        let children: Vec<_> = (0..N)
            .map(|_| support::spawn_child(test, &[("EKEY_P11_LABEL", label.as_os_str())]))
            .collect();
        let mut outcomes: Vec<String> = children
            .into_iter()
            .map(|c| {
                let out = support::expect_child_passed(test, c.wait_with_output().unwrap());
                out.lines()
                    .find_map(|l| l.split_once("OUTCOME ").map(|(_, o)| o.trim().to_string()))
                    .expect("child reported an outcome")
            })
            .collect();
        outcomes.sort();
        let mut expected: Vec<String> = (0..=5).map(|n| format!("pin_incorrect {n}")).collect();
        expected.extend(std::iter::repeat_n("locked".to_string(), N - 6));
        expected.sort();
        assert_eq!(outcomes, expected);
        assert!(token.status().unwrap().locked);
        assert_eq!(code(token.sign(PIN, "sign", b"m")), "ekey.token.locked");
    });
}

/// Sorted labels of the token objects of `class` (private keys only after `C_Login`, which
/// this does with [`PIN`]), as the module itself shows them.
fn labels(module: &Path, serial: &str, class: ObjectClass) -> Vec<String> {
    let session = raw_session(module, serial);
    session
        .login(UserType::User, Some(&AuthPin::from(PIN)))
        .unwrap();
    let mut labels: Vec<String> = session
        .find_objects(&[Attribute::Class(class), Attribute::Token(true)])
        .unwrap()
        .into_iter()
        .map(
            |h| match session.get_attributes(h, &[AttributeType::Label]).unwrap()[..] {
                [Attribute::Label(ref l)] => String::from_utf8_lossy(l).into_owned(),
                ref other => panic!("label: {other:?}"),
            },
        )
        .collect();
    session.logout().unwrap();
    labels.sort();
    labels
}

/// Private keys, public keys and certificates by label; and whether the promotion journal
/// object exists.
fn objects(module: &Path, serial: &str) -> ([Vec<String>; 3], bool) {
    let journal = !raw_session(module, serial)
        .find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Label(b"ekey-promotion".to_vec()),
        ])
        .unwrap()
        .is_empty();
    (
        [
            labels(module, serial, ObjectClass::PRIVATE_KEY),
            labels(module, serial, ObjectClass::PUBLIC_KEY),
            labels(module, serial, ObjectClass::CERTIFICATE),
        ],
        journal,
    )
}

/// One private key, public key and certificate per container, nothing else, no journal.
fn assert_tidy(module: &Path, serial: &str, containers: &[&str]) {
    let names: Vec<String> = containers.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        objects(module, serial),
        ([names.clone(), names.clone(), names], false)
    );
}

#[test]
fn promote_makes_the_renewal_key_the_active_one() {
    in_softhsm(
        "softhsm::promote_makes_the_renewal_key_the_active_one",
        |module| {
            let dir = tempfile::tempdir().unwrap();
            let token =
                Pkcs11Token::init(module, "ekey-promote", TRANSPORT_SO_PIN, PIN, MASTER).unwrap();
            promotion::promote_works(&token, PIN, dir.path());
            let serial = token.serial();
            assert_tidy(module, &serial, &["sign", "spare"]);

            // A key pair whose CKA_ID is not the one eKey sets (as a crash inside
            // generate_key can leave it) is given the right one first, then promoted.
            let (spki, cert) = promotion::key_with_certificate(&token, PIN, dir.path(), "renew-3");
            let session = raw_session(module, &serial);
            session
                .login(UserType::User, Some(&AuthPin::from(PIN)))
                .unwrap();
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                let h = session
                    .find_objects(&[
                        Attribute::Class(class),
                        Attribute::Label(b"renew-3".to_vec()),
                    ])
                    .unwrap();
                session
                    .update_attributes(h[0], &[Attribute::Id(b"foreign".to_vec())])
                    .unwrap();
            }
            session.logout().unwrap();
            drop(session);
            token.promote(PIN, "renew-3", "sign").unwrap();
            let st = token.status().unwrap();
            assert_eq!(st.containers[0].name, "sign");
            assert_eq!(
                st.containers[0].public_key_spki.as_deref(),
                Some(spki.as_slice())
            );
            assert_eq!(
                st.containers[0].certificate_der.as_deref(),
                Some(cert.as_slice())
            );
            let sig = token.sign(PIN, "sign", b"m").unwrap();
            support::verify_signature(dir.path(), &spki, b"m", &sig);
            assert_tidy(module, &serial, &["sign", "spare"]);
        },
    );
}

/// Environment of [`child_crashing_operation`]: the token label.
const CRASH_LABEL_ENV: &str = "EKEY_CRASH_TOKEN_LABEL";

/// Child of the crash tests below: runs one operation under `EKEY_FAULT` and dies in it.
/// Inherits `SOFTHSM2_CONF` from the test that starts it.
#[test]
#[ignore = "child process of the PKCS#11 crash tests"]
fn child_crashing_operation() {
    let Ok(label) = std::env::var(CRASH_LABEL_ENV) else {
        return; // only meaningful when started by a crash test
    };
    let token = Pkcs11Token::open(support::softhsm_module(), &label).unwrap();
    promotion::run_crashing_operation(&token, PIN);
}

#[test]
fn promote_killed_at_the_worst_moment_is_finished_at_the_next_use() {
    in_softhsm(
        "softhsm::promote_killed_at_the_worst_moment_is_finished_at_the_next_use",
        |module| {
            let dir = tempfile::tempdir().unwrap();
            let token =
                Pkcs11Token::init(module, "ekey-pcrash", TRANSPORT_SO_PIN, PIN, MASTER).unwrap();
            let serial = token.serial();
            let p = promotion::prepare_promotion(&token, PIN, dir.path());
            drop(token);
            support::expect_child_aborts_at(
                "softhsm::child_crashing_operation",
                "token.promote.mid",
                &[
                    (CRASH_LABEL_ENV, "ekey-pcrash".as_ref()),
                    (promotion::OP_ENV, "promote".as_ref()),
                ],
            );
            // The worst moment: the old key pair and certificate are destroyed, the new
            // ones still carry the pending label, the journal says what is left to do.
            let renew = vec![String::from("renew-1")];
            assert_eq!(
                objects(module, &serial),
                ([renew.clone(), renew.clone(), renew.clone()], true)
            );

            // A new process. status() (no PIN) already finishes the public objects; the
            // private key is invisible without a login, so the journal stays for it.
            let token = Pkcs11Token::open(module, "ekey-pcrash").unwrap();
            let st = token.status().unwrap();
            assert_eq!(
                promotion::summary(&st),
                vec![(
                    "sign".into(),
                    Some(p.new_spki.clone()),
                    Some(p.new_cert.clone())
                )]
            );
            let sign = vec![String::from("sign")];
            assert_eq!(
                objects(module, &serial),
                ([renew, sign.clone(), sign], true)
            );

            // The first operation with a PIN finishes the rest: the new key signs.
            promotion::assert_promoted(&token, PIN, dir.path(), &p);
            assert_tidy(module, &serial, &["sign"]);
        },
    );
}

#[test]
fn put_certificate_killed_halfway_is_finished_at_the_next_use() {
    in_softhsm(
        "softhsm::put_certificate_killed_halfway_is_finished_at_the_next_use",
        |module| {
            let dir = tempfile::tempdir().unwrap();
            let token =
                Pkcs11Token::init(module, "ekey-ccrash", TRANSPORT_SO_PIN, PIN, MASTER).unwrap();
            let serial = token.serial();
            let r = promotion::prepare_replacement(&token, PIN, dir.path());
            let cert_file = dir.path().join("new-cert.der");
            std::fs::write(&cert_file, &r.new_cert).unwrap();
            drop(token);
            support::expect_child_aborts_at(
                "softhsm::child_crashing_operation",
                "token.put_certificate.mid",
                &[
                    (CRASH_LABEL_ENV, "ekey-ccrash".as_ref()),
                    (promotion::OP_ENV, "put_certificate".as_ref()),
                    (promotion::CERT_ENV, cert_file.as_os_str()),
                ],
            );
            // Halfway: the new certificate exists under its temporary label, the old one
            // is still there.
            let (by_class, journal) = objects(module, &serial);
            assert!(!journal);
            assert_eq!(
                by_class[2],
                vec![
                    String::from("ekey-new-certificate:sign"),
                    String::from("sign")
                ]
            );

            let token = Pkcs11Token::open(module, "ekey-ccrash").unwrap();
            let found = promotion::assert_certificate_whole(&token, PIN, dir.path(), &r);
            assert_eq!(found, r.new_cert, "finished forward");
            assert_tidy(module, &serial, &["sign"]);
        },
    );
}

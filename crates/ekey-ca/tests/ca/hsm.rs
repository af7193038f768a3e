//! A CA whose keys live on a PKCS#11 module: real SoftHSM2, cross-checked with OpenSSL,
//! OpenSC's pkcs11-tool and pkilint.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised. Setting an environment
//! variable at run time is `unsafe` (and this workspace forbids unsafe code), so each test
//! re-runs itself in a child process whose environment points SoftHSM2 at a fresh token
//! directory of its own. Each test still uses its own token label.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use chrono::Utc;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use ekey_ca::{
    Authority, CaSigner, HsmConfig, KeyAlgorithm, Pkcs11Key, files, hsm_labels, verify_signature,
};

use crate::support::*;

const SO_PIN: &str = "so-pin-0123456789";
const USER_PIN: &str = "ca-user-pin-2468";
const CHILD_ENV: &str = "EKEY_CA_SOFTHSM_CHILD";

/// The SoftHSM2 module: `EKEY_SOFTHSM_MODULE` or the Debian path. Fails — never skips —
/// when it is missing.
fn softhsm_module() -> PathBuf {
    let path = std::env::var_os("EKEY_SOFTHSM_MODULE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    assert!(
        path.exists(),
        "SoftHSM2 module {} not found: apt-get install softhsm2 (scripts/test does) or set \
         EKEY_SOFTHSM_MODULE",
        path.display()
    );
    path
}

/// Runs `body` in a child process (this test binary, this one test) whose
/// `SOFTHSM2_CONF` points at a fresh token directory.
fn in_softhsm(test: &str, body: fn(&Path)) {
    let module = softhsm_module();
    if std::env::var_os(CHILD_ENV).is_some() {
        assert!(std::env::var_os("SOFTHSM2_CONF").is_some());
        body(&module);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
             slots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("spawn the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "child {test} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

fn hsm(module: &Path, token: &str) -> HsmConfig {
    HsmConfig::new(module, token, USER_PIN)
}

/// A fresh token and a CA created on it in a temporary directory.
fn hsm_fixture(module: &Path, token: &str, algorithm: KeyAlgorithm) -> Fixture {
    Pkcs11Key::init_token(module, token, SO_PIN, USER_PIN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::create_in_hsm(
        &dir.path().join("ca"),
        &config(algorithm),
        Utc::now(),
        &hsm(module, token),
    )
    .unwrap();
    Fixture { dir, ca }
}

fn verify_chain(fx: &Fixture, cert: &Path) {
    let out = run_ok(openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        fx.root_pem().to_str().unwrap(),
        "-untrusted",
        fx.issuing_pem().to_str().unwrap(),
        cert.to_str().unwrap(),
    ]));
    assert!(out.contains(": OK"), "{out}");
}

fn pkcs11_tool(module: &Path, args: &[&str]) -> Output {
    Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module)
        .args(args)
        .output()
        .expect("pkcs11-tool (apt-get install opensc) must be installed")
}

/// The objects on the token as pkcs11-tool lists them after logging in.
fn list_objects(module: &Path, token: &str) -> String {
    let out = pkcs11_tool(
        module,
        &[
            "--token-label",
            token,
            "--login",
            "--pin",
            USER_PIN,
            "--list-objects",
        ],
    );
    let text = output_text(&out);
    assert!(out.status.success(), "pkcs11-tool --list-objects:\n{text}");
    text
}

/// pkcs11-tool's block for the private key labelled `label`.
fn private_key_block<'a>(listing: &'a str, label: &str) -> &'a str {
    listing
        .split("Private Key Object")
        .skip(1)
        .find(|block| {
            block
                .lines()
                .any(|l| l.trim() == format!("label:      {label}"))
        })
        .unwrap_or_else(|| panic!("no private key {label} in:\n{listing}"))
}

/// The DER inside a one-certificate PEM file.
fn pem_der(pem: &[u8]) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem).unwrap().1.contents
}

/// Only certificates (and the root's ARL) in the CA directory: no key file, nothing with a
/// private key.
fn assert_only_certificates(dir: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            files::ISSUING_CERT,
            files::OCSP_CERT,
            files::ROOT_CRL,
            files::ROOT_CERT
        ],
        "unexpected files in the CA directory"
    );
    // The root's ARL, signed by the root key on the token: DER, nothing secret.
    let root = std::fs::read(dir.join(files::ROOT_CERT)).unwrap();
    let root = pem_der(&root);
    let arl = std::fs::read(dir.join(files::ROOT_CRL)).unwrap();
    assert_eq!(ekey_ca::read_root_crl(&root, &arl).unwrap().number, 1);
    names.retain(|n| n != files::ROOT_CRL);
    for name in names {
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "{name} holds a private key");
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{name}");
    }
}

#[test]
fn p256_ca_in_softhsm() {
    in_softhsm("hsm::p256_ca_in_softhsm", |module| {
        let token = "ekey-ca-p256";
        let fx = hsm_fixture(module, token, KeyAlgorithm::EcdsaP256);

        // An enterprise certificate for an OpenSSL key, signed by the HSM issuing key.
        let (issued, cert) = fx.issue_for_new_key("ent", P256);
        verify_chain(&fx, &cert);
        let notes = pkilint("lint_pkix_cert", &[], &cert);
        eprintln!("pkilint notes:\n{notes}");
        for (name, der) in [
            ("root.der", fx.ca.root_der()),
            ("issuing.der", fx.ca.issuing_der()),
        ] {
            pkilint("lint_pkix_cert", &[], &write(&fx.path(name), der));
        }

        // The keys are on the token, sensitive and never extractable; the directory
        // holds certificates only.
        assert_only_certificates(&fx.ca_dir());
        let listing = list_objects(module, token);
        for label in [hsm_labels::ROOT, hsm_labels::ISSUING, hsm_labels::OCSP] {
            let block = private_key_block(&listing, label);
            assert!(block.contains("; EC"), "{label}: {block}");
            let access = block
                .lines()
                .find(|l| l.trim_start().starts_with("Access:"))
                .unwrap_or_else(|| panic!("{label}: no Access line in {block}"));
            let flags: Vec<&str> = access
                .trim_start()
                .trim_start_matches("Access:")
                .split(',')
                .map(str::trim)
                .collect();
            for flag in [
                "sensitive",
                "always sensitive",
                "never extractable",
                "local",
            ] {
                assert!(flags.contains(&flag), "{label}: {access}");
            }
            assert!(!flags.contains(&"extractable"), "{label}: {access}");
        }
        eprintln!("pkcs11-tool --list-objects:\n{listing}");
        // CKA_ID of the issuing key is its certificate's subjectKeyIdentifier.
        let ski = run_ok(openssl(&[
            "x509",
            "-in",
            fx.issuing_pem().to_str().unwrap(),
            "-noout",
            "-ext",
            "subjectKeyIdentifier",
        ]));
        let ski: String = ski
            .lines()
            .nth(1)
            .unwrap_or_default()
            .trim()
            .replace(':', "")
            .to_lowercase();
        assert_eq!(ski.len(), 40, "{ski}");
        let block = private_key_block(&listing, hsm_labels::ISSUING);
        assert!(
            block.contains(&format!("ID:         {ski}")),
            "{ski}: {block}"
        );
        assert_eq!(
            listing.matches("Private Key Object").count(),
            3,
            "{listing}"
        );

        // CRL and OCSP signed by HSM keys.
        crate::crl::check_crl_round_trip(&fx);
        crate::ocsp::check_good_response(&fx, &cert);

        // A second CA on the same token is refused; nothing is generated or written.
        let other = fx.path("other-ca");
        let err = Authority::create_in_hsm(
            &other,
            &config(KeyAlgorithm::EcdsaP256),
            Utc::now(),
            &hsm(module, token),
        )
        .unwrap_err();
        assert_eq!(err.code(), "ekey.ca.already_exists", "{err}");
        assert!(!other.exists());
        let after = list_objects(module, token);
        assert_eq!(after.matches("Private Key Object").count(), 3, "{after}");

        // Reload: fresh `Pkcs11Key::open` by label, then the whole CA from the token.
        let issuing = Pkcs11Key::open(module, token, USER_PIN, hsm_labels::ISSUING).unwrap();
        assert_eq!(issuing.algorithm(), KeyAlgorithm::EcdsaP256);
        let sig = issuing.sign(b"hello").unwrap();
        verify_signature(issuing.spki_der(), KeyAlgorithm::EcdsaP256, b"hello", &sig).unwrap();
        let again = Authority::load_from_hsm(
            &fx.ca_dir(),
            &config(KeyAlgorithm::EcdsaP256),
            Utc::now(),
            &hsm(module, token),
        )
        .unwrap();
        assert_eq!(again.issuing_der(), fx.ca.issuing_der());
        let Fixture { dir, ca } = fx;
        drop(ca);
        let fx = Fixture { dir, ca: again };
        let (second, cert2) = fx.issue_for_new_key("ent2", P256);
        assert_ne!(second.serial_hex, issued.serial_hex);
        verify_chain(&fx, &cert2);
    });
}

#[test]
fn rsa_2048_ca_in_softhsm() {
    in_softhsm("hsm::rsa_2048_ca_in_softhsm", |module| {
        let token = "ekey-ca-rsa";
        let fx = hsm_fixture(module, token, KeyAlgorithm::Rsa2048);
        assert_eq!(fx.ca.algorithm(), KeyAlgorithm::Rsa2048);
        let (_, cert) = fx.issue_for_new_key("ent-rsa", P256);
        verify_chain(&fx, &cert);
        let text = run_ok(openssl(&[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-noout",
            "-text",
        ]));
        assert!(text.contains("sha256WithRSAEncryption"), "{text}");
        pkilint("lint_pkix_cert", &[], &cert);
        assert_only_certificates(&fx.ca_dir());
        let listing = list_objects(module, token);
        let block = private_key_block(&listing, hsm_labels::ISSUING);
        assert!(block.contains("RSA"), "{block}");
        assert!(block.contains("never extractable"), "{block}");

        // OCSP signed by the HSM's RSA OCSP key.
        crate::ocsp::check_good_response(&fx, &cert);

        // Reload from the token and issue again.
        let Fixture { dir, ca } = fx;
        drop(ca);
        let ca = Authority::load_from_hsm(
            &dir.path().join("ca"),
            &config(KeyAlgorithm::Rsa2048),
            Utc::now(),
            &hsm(module, token),
        )
        .unwrap();
        let fx = Fixture { dir, ca };
        let (_, cert) = fx.issue_for_new_key("ent-rsa-2", P256);
        verify_chain(&fx, &cert);
    });
}

#[test]
fn wrong_user_pin_is_refused() {
    in_softhsm("hsm::wrong_user_pin_is_refused", |module| {
        let token = "ekey-ca-pin";
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        Pkcs11Key::init_token(module, token, SO_PIN, USER_PIN).unwrap();
        let wrong = HsmConfig::new(module, token, "not-the-pin");
        let cfg = config(KeyAlgorithm::EcdsaP256);

        // Creating with a wrong PIN: refused, nothing on the token, nothing on disk.
        let err = Authority::create_in_hsm(&ca_dir, &cfg, Utc::now(), &wrong).unwrap_err();
        assert_eq!(err.code(), "ekey.ca.pkcs11_login", "{err}");
        assert!(!ca_dir.exists());
        assert!(!list_objects(module, token).contains("Private Key Object"));
        let err = Pkcs11Key::generate(module, token, "not-the-pin", "k", KeyAlgorithm::EcdsaP256)
            .unwrap_err();
        assert_eq!(err.code(), "ekey.ca.pkcs11_login");
        assert!(err.message(ekey_domain::Lang::En).contains("PIN"));

        // A CA made with the right PIN; once every session is closed (logged out),
        // loading with a wrong PIN is refused and nothing is issued.
        let ca = Authority::create_in_hsm(&ca_dir, &cfg, Utc::now(), &hsm(module, token)).unwrap();
        drop(ca);
        let err = Authority::load_from_hsm(&ca_dir, &cfg, Utc::now(), &wrong).unwrap_err();
        assert_eq!(err.code(), "ekey.ca.pkcs11_login", "{err}");
        let err = Pkcs11Key::open(module, token, "not-the-pin", hsm_labels::ISSUING).unwrap_err();
        assert_eq!(err.code(), "ekey.ca.pkcs11_login", "{err}");

        // Unknown token and unknown key labels.
        let err =
            Pkcs11Key::open(module, "no-such-token", USER_PIN, hsm_labels::ISSUING).unwrap_err();
        assert_eq!(err.code(), "ekey.ca.pkcs11_not_found", "{err}");
        let err = Pkcs11Key::open(module, token, USER_PIN, "no-such-key").unwrap_err();
        assert_eq!(err.code(), "ekey.ca.pkcs11_not_found", "{err}");
        let err = Pkcs11Key::init_token(module, token, SO_PIN, USER_PIN).unwrap_err();
        assert_eq!(err.code(), "ekey.ca.already_exists", "{err}");
    });
}

#[test]
fn lost_sessions_are_reopened() {
    in_softhsm("hsm::lost_sessions_are_reopened", |module| {
        let token = "ekey-ca-lost";
        Pkcs11Key::init_token(module, token, SO_PIN, USER_PIN).unwrap();
        let key = Arc::new(
            Pkcs11Key::generate(module, token, USER_PIN, "k", KeyAlgorithm::EcdsaP256).unwrap(),
        );
        let check = |key: &Pkcs11Key, message: &[u8]| {
            let sig = key.sign(message).unwrap();
            verify_signature(key.spki_der(), key.algorithm(), message, &sig).unwrap();
        };
        check(&key, b"first");

        // Another user of the module in this process (as ekey-token would be).
        let raw = Pkcs11::new(module).unwrap();
        match raw.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => panic!("C_Initialize: {e}"),
        }
        let slot = raw
            .get_slots_with_initialized_token()
            .unwrap()
            .into_iter()
            .find(|s| raw.get_token_info(*s).unwrap().label().trim_end() == token)
            .unwrap();

        // It logs out: every session of the token loses the login; we log in again.
        let session = raw.open_ro_session(slot).unwrap();
        session.logout().unwrap();
        drop(session);
        check(&key, b"after logout");

        // It finalises the module: every session is gone; we initialise again.
        raw.clone().finalize().unwrap();
        check(&key, b"after finalize");

        // Many threads at once on one key.
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let key = key.clone();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        let message = format!("thread {i} message {j}");
                        let sig = key.sign(message.as_bytes()).unwrap();
                        verify_signature(key.spki_der(), key.algorithm(), message.as_bytes(), &sig)
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }

        // A key label in use is refused.
        let err =
            Pkcs11Key::generate(module, token, USER_PIN, "k", KeyAlgorithm::Rsa2048).unwrap_err();
        assert_eq!(err.code(), "ekey.ca.already_exists", "{err}");
    });
}

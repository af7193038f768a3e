//! CA key files, loading, importing.

use chrono::Utc;
use ekey_ca::{Authority, CaImport, KeyAlgorithm, Passphrase, files};
use ekey_domain::Lang;

use crate::support::*;

#[test]
fn key_files_are_encrypted_pkcs8_that_openssl_opens_only_with_the_passphrase() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    for (key, cert) in [
        (files::ROOT_KEY, files::ROOT_CERT),
        (files::ISSUING_KEY, files::ISSUING_CERT),
        (files::OCSP_KEY, files::OCSP_CERT),
    ] {
        let key = fx.ca_dir().join(key);
        let cert = fx.ca_dir().join(cert);
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(
            pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{pem}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }

        let pass = format!("pass:{PASSPHRASE}");
        let public = run_ok(openssl(&[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-passin",
            &pass,
            "-pubout",
        ]));
        let cert_public = run_ok(openssl(&[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-noout",
            "-pubkey",
        ]));
        assert_eq!(
            public,
            cert_public,
            "{} does not hold the key of {}",
            key.display(),
            cert.display()
        );

        for wrong in ["pass:", "pass:wrong passphrase"] {
            let out = openssl(&[
                "pkey",
                "-in",
                key.to_str().unwrap(),
                "-passin",
                wrong,
                "-noout",
            ]);
            assert!(
                !out.status.success(),
                "opened with {wrong}: {}",
                output_text(&out)
            );
        }
        // No passphrase at all (stdin closed): no key either.
        let out = openssl(&["pkey", "-in", key.to_str().unwrap(), "-noout"]);
        assert!(!out.status.success(), "{}", output_text(&out));

        let asn1 = run_ok(openssl(&["asn1parse", "-in", key.to_str().unwrap()]));
        for alg in ["PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"] {
            assert!(asn1.contains(alg), "missing {alg}:\n{asn1}");
        }
    }
}

#[test]
fn load_with_the_right_passphrase_and_refuse_a_wrong_one() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let cfg = config(KeyAlgorithm::EcdsaP256);
    let loaded = Authority::load(&fx.ca_dir(), &passphrase(), &cfg).unwrap();
    assert_eq!(loaded.root_der(), fx.ca.root_der());
    assert_eq!(loaded.issuing_der(), fx.ca.issuing_der());
    assert_eq!(loaded.ocsp_der(), fx.ca.ocsp_der());
    let csr = fx.openssl_csr("after-load", P256, &[]);
    let csr = ekey_ca::parse_csr(&std::fs::read(csr).unwrap()).unwrap();
    let issued = loaded
        .issue(ekey_ca::IssueRequest::new(
            csr.spki_der,
            ENTERPRISE,
            CREDIT_CODE,
            ekey_ca::Serial::random().unwrap(),
            Utc::now(),
        ))
        .unwrap();
    let cert = write(&fx.path("after-load.pem"), issued.pem().as_bytes());
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

    let wrong = Passphrase::new("not the passphrase at all").unwrap();
    let err = Authority::load(&fx.ca_dir(), &wrong, &cfg).unwrap_err();
    assert_eq!(err.code(), "ekey.ca.passphrase");
    assert!(
        err.message(Lang::Zh).contains("口令"),
        "{}",
        err.message(Lang::Zh)
    );
    assert!(
        err.message(Lang::En).contains("passphrase"),
        "{}",
        err.message(Lang::En)
    );
    assert!(!err.message(Lang::En).contains(PASSPHRASE));

    let err = Authority::load(&fx.path("nowhere"), &passphrase(), &cfg).unwrap_err();
    assert_eq!(err.code(), "ekey.ca.io");
}

#[test]
fn create_never_overwrites_and_wants_a_real_passphrase() {
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    let cfg = config(KeyAlgorithm::EcdsaP256);
    let err = Authority::create(&fx.ca_dir(), &passphrase(), &cfg).unwrap_err();
    assert_eq!(err.code(), "ekey.ca.already_exists");
    // The existing CA is intact.
    Authority::load(&fx.ca_dir(), &passphrase(), &cfg).unwrap();

    let short = Passphrase::new("short").unwrap();
    let err = Authority::create(&fx.path("other"), &short, &cfg).unwrap_err();
    assert_eq!(err.code(), "ekey.ca.passphrase_weak");
    assert!(!fx.path("other").join(files::ROOT_CERT).exists());

    let bad = ekey_ca::CaConfig {
        base_url: "ftp://example".into(),
        ..cfg
    };
    let err = Authority::create(&fx.path("other"), &passphrase(), &bad).unwrap_err();
    assert_eq!(err.code(), "ekey.ca.config");
}

#[test]
fn passphrase_from_env_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pass.txt");
    std::fs::write(&file, format!("{PASSPHRASE}\n")).unwrap();
    // The variable is unset in this process: the file is used.
    let p = Passphrase::from_env_or_file("EKEY_CA_TEST_PASSPHRASE_UNSET", Some(&file)).unwrap();
    let fx = Fixture::new(KeyAlgorithm::EcdsaP256);
    Authority::load(&fx.ca_dir(), &p, &config(KeyAlgorithm::EcdsaP256)).unwrap();
    // PATH is always set: the variable wins over the file.
    let p = Passphrase::from_env_or_file("PATH", Some(&file)).unwrap();
    let err = Authority::load(&fx.ca_dir(), &p, &config(KeyAlgorithm::EcdsaP256)).unwrap_err();
    assert_eq!(err.code(), "ekey.ca.passphrase");
}

const OPENSSL_CA_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
string_mask = utf8only
utf8 = yes
[dn]
C = CN
O = 旧认证机构
CN = Old Root
[v3_root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_issuing]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
";

#[test]
fn import_an_existing_root_and_issuing_pair_made_by_openssl() {
    let work = tempfile::tempdir().unwrap();
    let p = |name: &str| work.path().join(name).to_str().unwrap().to_string();
    std::fs::write(p("ca.cnf"), OPENSSL_CA_CNF).unwrap();
    for key in ["root.key", "issuing.key"] {
        run_ok(openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &p(key),
        ]));
    }
    run_ok(openssl(&[
        "req",
        "-x509",
        "-new",
        "-config",
        &p("ca.cnf"),
        "-extensions",
        "v3_root",
        "-key",
        &p("root.key"),
        "-days",
        "3650",
        "-out",
        &p("root.pem"),
    ]));
    run_ok(openssl(&[
        "req",
        "-new",
        "-config",
        &p("ca.cnf"),
        "-key",
        &p("issuing.key"),
        "-utf8",
        "-subj",
        "/C=CN/O=旧认证机构/CN=Old Issuing",
        "-out",
        &p("issuing.csr"),
    ]));
    run_ok(openssl(&[
        "x509",
        "-req",
        "-in",
        &p("issuing.csr"),
        "-CA",
        &p("root.pem"),
        "-CAkey",
        &p("root.key"),
        "-set_serial",
        "0x4f2a",
        "-days",
        "1825",
        "-extfile",
        &p("ca.cnf"),
        "-extensions",
        "v3_issuing",
        "-out",
        &p("issuing.pem"),
    ]));
    run_ok(openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        &p("issuing.key"),
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:old secret",
        "-out",
        &p("issuing.enc.pem"),
    ]));

    let root = std::fs::read(p("root.pem")).unwrap();
    let issuing = std::fs::read(p("issuing.pem")).unwrap();
    let key = std::fs::read_to_string(p("issuing.enc.pem")).unwrap();
    let old = Passphrase::new("old secret").unwrap();
    let cfg = config(KeyAlgorithm::EcdsaP256);
    let dir = work.path().join("ca");

    // The wrong key is refused and nothing is written.
    let wrong_key = std::fs::read_to_string(p("root.key")).unwrap();
    let err = Authority::import(
        &dir,
        &passphrase(),
        &cfg,
        CaImport {
            root_cert: &root,
            issuing_cert: &issuing,
            issuing_key_pem: &wrong_key,
            issuing_key_passphrase: &old,
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), "ekey.ca.key_mismatch");
    assert!(!dir.join(files::ISSUING_CERT).exists());
    // The wrong import passphrase is refused.
    let err = Authority::import(
        &dir,
        &passphrase(),
        &cfg,
        CaImport {
            root_cert: &root,
            issuing_cert: &issuing,
            issuing_key_pem: &key,
            issuing_key_passphrase: &passphrase(),
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), "ekey.ca.passphrase");
    // Root and issuing swapped: not a chain.
    let err = Authority::import(
        &dir,
        &passphrase(),
        &cfg,
        CaImport {
            root_cert: &issuing,
            issuing_cert: &root,
            issuing_key_pem: &key,
            issuing_key_passphrase: &old,
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), "ekey.ca.ca_certificate");

    let ca = Authority::import(
        &dir,
        &passphrase(),
        &cfg,
        CaImport {
            root_cert: &root,
            issuing_cert: &issuing,
            issuing_key_pem: &key,
            issuing_key_passphrase: &old,
        },
    )
    .unwrap();
    assert!(
        !dir.join(files::ROOT_KEY).exists(),
        "no root key after an import"
    );
    let ca = Authority::load(&dir, &passphrase(), &cfg).unwrap_or(ca);
    let fx = Fixture { dir: work, ca };
    let (_, cert) = fx.issue_for_new_key("imported", P256);
    let out = run_ok(openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        &p_str(&fx, "root.pem"),
        "-untrusted",
        &p_str(&fx, "issuing.pem"),
        cert.to_str().unwrap(),
    ]));
    assert!(out.contains(": OK"), "{out}");
    pkilint("lint_pkix_cert", &[], &cert);
    let ocsp = write(&fx.path("imported-ocsp.der"), fx.ca.ocsp_der());
    pkilint("lint_pkix_cert", &[], &ocsp);
    crate::ocsp::check_good_response(&fx, &cert);
    crate::crl::check_crl_round_trip(&fx);
}

fn p_str(fx: &Fixture, name: &str) -> String {
    fx.path(name).to_str().unwrap().to_string()
}

#[test]
fn load_renews_an_ocsp_certificate_about_to_expire() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let cfg = config(KeyAlgorithm::EcdsaP256);
    let then = Utc::now() - chrono::Duration::days(340);
    let old = Authority::create_at(&ca_dir, &passphrase(), &cfg, then).unwrap();
    assert!(old.ocsp_cert_not_after() < Utc::now() + chrono::Duration::days(30));

    let renewed = Authority::load(&ca_dir, &passphrase(), &cfg).unwrap();
    assert_ne!(renewed.ocsp_der(), old.ocsp_der());
    assert!(renewed.ocsp_cert_not_after() > Utc::now() + chrono::Duration::days(360));
    // Written to disk: the next load does not renew again.
    let again = Authority::load(&ca_dir, &passphrase(), &cfg).unwrap();
    assert_eq!(again.ocsp_der(), renewed.ocsp_der());
    assert!(!ca_dir.join("ocsp.crt.new").exists());

    let fx = Fixture { dir, ca: again };
    let ocsp = write(&fx.path("renewed-ocsp.der"), fx.ca.ocsp_der());
    pkilint("lint_pkix_cert", &[], &ocsp);
    let (_, cert) = fx.issue_for_new_key("after-renewal", P256);
    crate::ocsp::check_good_response(&fx, &cert);
}

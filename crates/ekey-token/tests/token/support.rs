//! Helpers: child processes, OpenSSL, signature checks, the SoftHSM2 module.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ekey_token::TokenError;
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;

/// The provider master secret used by the tests.
pub const MASTER: &[u8] = b"test master secret of the provider, 32+ bytes";

/// Environment variable that puts this test binary in child mode.
pub const CHILD_ENV: &str = "EKEY_TOKEN_TEST_CHILD";

/// Whether this process is a child started by [`run_child`].
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Runs exactly one test of this binary in a new process with extra environment
/// variables (and [`CHILD_ENV`] set). Does not wait.
pub fn spawn_child(test: &str, envs: &[(&str, &std::ffi::OsStr)]) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn test binary")
}

/// Waits for a child and insists that it ran its one test and passed.
pub fn expect_child_passed(test: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "child {test} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

/// Runs one `#[ignore]`d helper test of this binary in a new process with
/// `EKEY_FAULT=point` (and [`CHILD_ENV`] and `envs` set), waits, and insists that the child
/// started its test and then died by `abort` at exactly that crash point — not by
/// finishing, failing or panicking.
pub fn expect_child_aborts_at(test: &str, point: &str, envs: &[(&str, &std::ffi::OsStr)]) {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args([
        test,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, "1")
    .env("EKEY_FAULT", point);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!(
        "child {test} at {point} ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(!out.status.success(), "{report}");
    assert!(stdout.contains("running 1 test"), "{report}");
    assert!(!stdout.contains("test result:"), "{report}");
    assert!(
        stderr.contains(&format!("EKEY_FAULT: stopping at {point}")),
        "{report}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(6), "SIGABRT expected; {report}");
    }
}

/// The SoftHSM2 module: `EKEY_SOFTHSM_MODULE` or the Debian path. Fails — never skips —
/// when it is missing.
pub fn softhsm_module() -> PathBuf {
    let path = std::env::var_os("EKEY_SOFTHSM_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    assert!(
        path.exists(),
        "SoftHSM2 module {} not found: install softhsm2 (scripts/test does) or set EKEY_SOFTHSM_MODULE",
        path.display()
    );
    path
}

/// Writes a SoftHSM2 configuration whose token directory is inside `dir`.
pub fn softhsm_conf(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    conf
}

/// Runs a program and returns its output; panics with stderr when it fails.
pub fn run_ok(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Verifies a DER ECDSA P-256/SHA-256 signature with a SubjectPublicKeyInfo, in process
/// and with `openssl dgst -verify`.
pub fn verify_signature(dir: &Path, spki: &[u8], message: &[u8], signature: &[u8]) {
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki).expect("SPKI");
    let sig = p256::ecdsa::Signature::from_der(signature).expect("DER signature");
    key.verify(message, &sig).expect("signature verifies");

    let spki_path = dir.join("pub.der");
    let msg_path = dir.join("msg.bin");
    let sig_path = dir.join("sig.der");
    std::fs::write(&spki_path, spki).unwrap();
    std::fs::write(&msg_path, message).unwrap();
    std::fs::write(&sig_path, signature).unwrap();
    let out = run_ok(
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-keyform",
            "DER",
            "-verify",
            spki_path.to_str().unwrap(),
            "-signature",
            sig_path.to_str().unwrap(),
            msg_path.to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verified OK"));
}

/// Whether a DER ECDSA P-256/SHA-256 signature verifies with a SubjectPublicKeyInfo (in
/// process only; for the negative checks).
pub fn verifies(spki: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki).expect("SPKI");
    let sig = p256::ecdsa::Signature::from_der(signature).expect("DER signature");
    key.verify(message, &sig).is_ok()
}

/// Checks a DER CSR with `openssl req -verify` and returns its subject line.
pub fn openssl_verify_csr(dir: &Path, csr: &[u8]) -> String {
    let path = dir.join("req.der");
    std::fs::write(&path, csr).unwrap();
    let out = run_ok(
        "openssl",
        &[
            "req",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-verify",
            "-noout",
            "-subject",
            "-nameopt",
            "utf8,sep_comma_plus",
        ],
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("verify OK") || all.contains("Certificate request self-signature verify OK"),
        "{all}"
    );
    all
}

/// Issues a certificate (DER) for a DER CSR from a throwaway OpenSSL CA in `dir`.
pub fn openssl_issue(dir: &Path, csr: &[u8]) -> Vec<u8> {
    let d = |name: &str| dir.join(name).to_str().unwrap().to_string();
    if !dir.join("ca.key").exists() {
        run_ok(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &d("ca.key"),
                "-out",
                &d("ca.pem"),
                "-subj",
                "/CN=Test CA",
                "-days",
                "2",
            ],
        );
    }
    std::fs::write(dir.join("issue.csr"), csr).unwrap();
    run_ok(
        "openssl",
        &[
            "x509",
            "-req",
            "-inform",
            "DER",
            "-in",
            &d("issue.csr"),
            "-CA",
            &d("ca.pem"),
            "-CAkey",
            &d("ca.key"),
            "-days",
            "1",
            "-outform",
            "DER",
            "-out",
            &d("issued.der"),
        ],
    );
    std::fs::read(dir.join("issued.der")).unwrap()
}

/// The error code of a result that must have failed.
pub fn code<T: std::fmt::Debug>(r: Result<T, TokenError>) -> &'static str {
    r.expect_err("operation must fail").code()
}

/// `tries_left` of a wrong-PIN error.
pub fn tries_left<T: std::fmt::Debug>(r: Result<T, TokenError>) -> u8 {
    match r {
        Err(TokenError::PinIncorrect { tries_left }) => tries_left,
        other => panic!("expected a wrong-PIN error, got {other:?}"),
    }
}

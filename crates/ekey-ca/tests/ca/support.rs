//! Shared helpers: CA fixtures and the real clients (OpenSSL CLI, pkilint).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use ekey_ca::{
    Authority, CaConfig, IssueRequest, Issued, KeyAlgorithm, Passphrase, Serial, parse_csr,
};

pub const PASSPHRASE: &str = "correct horse battery staple";
pub const ENTERPRISE: &str = "上海某某进出口贸易有限公司";
pub const CREDIT_CODE: &str = "91310000MA1FL5LX4N";

/// A test configuration: Chinese names, cheap key-file encryption.
pub fn config(algorithm: KeyAlgorithm) -> CaConfig {
    CaConfig {
        algorithm,
        root_name: "测试根证书".into(),
        issuing_name: "测试签发证书".into(),
        organization: "某某电子认证服务有限公司".into(),
        pbkdf2_iterations: ekey_ca::MIN_PBKDF2_ITERATIONS,
        ..CaConfig::default()
    }
}

pub fn passphrase() -> Passphrase {
    Passphrase::new(PASSPHRASE).unwrap()
}

/// A fresh CA in its own temporary directory (kept alive by the returned guard).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub ca: Authority,
}

impl Fixture {
    pub fn new(algorithm: KeyAlgorithm) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            Authority::create(&dir.path().join("ca"), &passphrase(), &config(algorithm)).unwrap();
        Fixture { dir, ca }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// `root.crt` (PEM) as written by `create`.
    pub fn root_pem(&self) -> PathBuf {
        self.ca_dir().join("root.crt")
    }

    /// `issuing.crt` (PEM) as written by `create`.
    pub fn issuing_pem(&self) -> PathBuf {
        self.ca_dir().join("issuing.crt")
    }

    /// Root and issuing CA in one PEM file.
    pub fn chain_pem(&self) -> PathBuf {
        let path = self.path("chain.pem");
        let text = format!("{}{}", self.ca.issuing_pem(), self.ca.root_pem());
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Makes a key and CSR with OpenSSL (`key_args` for `genpkey`), issues a certificate
    /// for it, writes `<name>.pem`.
    pub fn issue_for_new_key(&self, name: &str, key_args: &[&str]) -> (Issued, PathBuf) {
        let csr = self.openssl_csr(name, key_args, &[]);
        let csr = parse_csr(&std::fs::read(csr).unwrap()).unwrap();
        let issued = self.issue_spki(csr.spki_der, Utc::now());
        let path = self.path(&format!("{name}.pem"));
        std::fs::write(&path, issued.pem()).unwrap();
        (issued, path)
    }

    pub fn issue_spki(&self, spki_der: Vec<u8>, not_before: DateTime<Utc>) -> Issued {
        self.ca
            .issue(IssueRequest::new(
                spki_der,
                ENTERPRISE,
                CREDIT_CODE,
                Serial::random().unwrap(),
                not_before,
            ))
            .unwrap()
    }

    /// A key and a CSR made by OpenSSL; returns the CSR path.
    pub fn openssl_csr(&self, name: &str, key_args: &[&str], req_args: &[&str]) -> PathBuf {
        let key = self.path(&format!("{name}.key"));
        let csr = self.path(&format!("{name}.csr"));
        let mut args = vec!["genpkey"];
        args.extend_from_slice(key_args);
        args.extend_from_slice(&["-out", key.to_str().unwrap()]);
        run_ok(openssl(&args));
        let subj = format!("/CN={ENTERPRISE}/serialNumber={CREDIT_CODE}");
        let mut args = vec![
            "req",
            "-new",
            "-utf8",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &subj,
            "-out",
            csr.to_str().unwrap(),
        ];
        args.extend_from_slice(req_args);
        run_ok(openssl(&args));
        csr
    }
}

pub const P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];

/// The OpenSSL command line tool. Fails the test if it is missing.
pub fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `openssl` ({e}): install OpenSSL 3 (apt-get install -y openssl)")
        })
}

/// Runs and insists on success; returns stdout + stderr as text.
pub fn run_ok(out: Output) -> String {
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "command failed ({}):\n{text}",
        out.status
    );
    text
}

pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Directory of pkilint's console scripts: `EKEY_TOOLS_BIN`, else the repository's
/// `.venv-tools/bin` (made by `scripts/test`).
pub fn tools_bin() -> PathBuf {
    match std::env::var_os("EKEY_TOOLS_BIN") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tools/bin"),
    }
}

/// Runs a pkilint linter and fails the test on any finding of WARNING or worse.
/// Returns the lower-severity findings (NOTICE, INFO), for the record.
pub fn pkilint(tool: &str, extra: &[&str], file: &Path) -> String {
    let exe = tools_bin().join(tool);
    assert!(
        exe.exists(),
        "pkilint tool {} is missing: run scripts/test (it installs pkilint==0.13.3 into .venv-tools) \
         or set EKEY_TOOLS_BIN to the directory holding lint_pkix_cert, lint_crl and lint_ocsp_response",
        exe.display()
    );
    let out = Command::new(&exe)
        .arg("lint")
        .args(extra)
        .args(["-s", "INFO"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let text = output_text(&out);
    let bad = text
        .lines()
        .any(|l| l.contains("(ERROR)") || l.contains("(WARNING)") || l.contains("(FATAL)"));
    // pkilint's exit code is the number of findings reported (INFO ones included here), so
    // the text decides; a crash (signal, traceback) fails too.
    let exit_ok = out.status.code().is_some();
    assert!(
        !bad && exit_ok && !text.contains("Traceback"),
        "{tool} on {} reported problems (exit {}):\n{text}",
        file.display(),
        out.status
    );
    text
}

pub fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// DER → PEM file via OpenSSL.
pub fn crl_to_pem(der: &Path, pem: &Path) {
    run_ok(openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        der.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ]));
}

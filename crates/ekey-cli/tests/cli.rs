//! The `ekey` binary as an operator uses it: start the demo, stop it, verify the audit chain,
//! tamper with one byte, see the broken record named.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Row;

fn ekey() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ekey"));
    c.env("RUST_LOG", "warn");
    c
}

/// Starts `ekey demo` and returns the child and the address it printed.
fn start_demo(data: &std::path::Path) -> (Child, String) {
    let mut child = ekey()
        .args(["demo", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting ekey demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("Ctrl-C") {
                let _ = tx.send(printed.clone());
            }
        }
    });
    let printed = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("ekey demo printed its banner");
    for login in [
        "demo@ekey.example",
        "agency-320000",
        "agency-110000",
        "provider",
        "admin",
        "ekey-demo-2026",
    ] {
        assert!(printed.contains(login), "banner lacks {login}:\n{printed}");
    }
    let addr = printed
        .lines()
        .find_map(|l| l.split("http://").nth(1).filter(|_| l.contains("running")))
        .map(|rest| rest.trim_end_matches('/').to_string())
        .expect("URL in banner");
    (child, addr)
}

fn http_raw(addr: &str, request: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                s.write_all(request.as_bytes()).unwrap();
                let mut out = Vec::new();
                s.read_to_end(&mut out).unwrap();
                return out;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("connecting to {addr}: {e}"),
        }
    }
}

fn http(addr: &str, request: &str) -> String {
    String::from_utf8_lossy(&http_raw(addr, request)).into_owned()
}

fn stop(mut child: Child) {
    // SIGTERM for a graceful stop; kill as a fallback.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn demo_then_audit_verify_detects_one_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ekey-data");
    let (child, addr) = start_demo(&data);
    let health = http(
        &addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#"{"status":"ok"}"#), "{health}");
    let body = r#"{"login":"agency-320000","password":"ekey-demo-2026"}"#;
    let login = http(
        &addr,
        &format!(
            "POST /api/v1/sessions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    stop(child);

    // A second start on the same directory keeps the data and the demo accounts.
    let (child, _) = start_demo(&data);
    stop(child);

    let ok = ekey()
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("intact"), "{stdout}");

    // Change one byte of record 3.
    let db = format!("sqlite:{}", data.join("ekey.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&db).await.unwrap();
        let before: String = sqlx::query("SELECT after_state FROM audit_log WHERE seq = 3")
            .fetch_one(&pool)
            .await
            .unwrap()
            .try_get("after_state")
            .unwrap();
        assert!(!before.is_empty());
        let first = before.chars().next().unwrap();
        let replacement = if first == 'X' { "Y" } else { "X" };
        sqlx::query(
            "UPDATE audit_log SET after_state = $1 || substr(after_state, 2) WHERE seq = 3",
        )
        .bind(replacement)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    });
    let broken = ekey()
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert_eq!(broken.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("record 3"), "{stderr}");
}

#[test]
fn migrate_with_config_file_and_env_override() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ekey.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite:{}\"\n",
            dir.path().join("from-file.db").display()
        ),
    )
    .unwrap();
    let out = ekey()
        .args(["migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("from-file.db").exists());
    let env_db = dir.path().join("from-env.db");
    let out = ekey()
        .args(["migrate", "--config"])
        .arg(&config)
        .env("EKEY_DATABASE_URL", format!("sqlite:{}", env_db.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env_db.exists(), "EKEY_DATABASE_URL overrides the file");
}

#[test]
fn migrate_on_postgres_twice() {
    let url = ekey_testkit::PgCluster::shared()
        .expect("PostgreSQL is required (apt-get install postgresql)")
        .create_database("cli")
        .unwrap();
    for _ in 0..2 {
        let out = ekey()
            .arg("migrate")
            .env("EKEY_DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("Postgres"));
    }
}

#[test]
fn verify_on_missing_directory_fails_clearly() {
    let out = ekey()
        .args(["audit", "verify", "--data", "/nonexistent/ekey-data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no eKey database"));
}

fn ekey_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = ekey()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn key_commands_lock_after_six_wrong_pins_and_unlock_with_a_code() {
    use ekey_token::Token;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.token");
    let master = b"provider master secret for this test, 32+ bytes";
    let token =
        ekey_token::SoftToken::create(&path, "SK20260001", "金陵贸易", "12345678", master).unwrap();
    token.generate_key("12345678", "sign").unwrap();
    drop(token);
    let p = path.to_str().unwrap();

    let status = ekey()
        .args(["key", "status", "--token", p])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        out.contains("SK20260001") && out.contains("PIN tries left:  6"),
        "{out}"
    );

    for i in 1..=6 {
        let o = ekey_with_stdin(
            &["key", "change-pin", "--token", p],
            "00000000\n87654321\n87654321\n",
        );
        assert!(!o.status.success(), "wrong PIN {i} accepted");
    }
    // The right PIN no longer works: locked.
    let o = ekey_with_stdin(
        &["key", "change-pin", "--token", p],
        "12345678\n87654321\n87654321\n",
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ekey.token.locked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let o = ekey()
        .args(["key", "challenge", "--token", p])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let challenge = text
        .lines()
        .find_map(|l| l.strip_prefix("challenge: "))
        .unwrap()
        .trim()
        .to_string();
    let code =
        ekey_token::admin::unlock_response(master, "SK20260001", &hex::decode(&challenge).unwrap())
            .unwrap();
    // The code is a secret like a PIN: never an argument (it would show in the process
    // list); it is read like the PINs, here the first line of standard input.
    let o = ekey_with_stdin(
        &["key", "unlock", "--token", p, "--code", &code],
        "24681357\n24681357\n",
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--code"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = ekey_with_stdin(
        &["key", "unlock", "--token", p],
        &format!("{code}\n24681357\n24681357\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The code is dead after one use.
    let o = ekey_with_stdin(
        &["key", "unlock", "--token", p],
        &format!("{code}\n11112222\n11112222\n"),
    );
    assert!(!o.status.success());
    let status = ekey()
        .args(["key", "status", "--token", p])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains("PIN tries left:  6") && out.contains("locked:          no"),
        "{out}"
    );
    // And the new PIN works.
    let o = ekey_with_stdin(
        &["key", "change-pin", "--token", p],
        "24681357\n13572468\n13572468\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is required");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}: {text}");
    text
}

fn get_bytes(addr: &str, path: &str) -> Vec<u8> {
    let raw = http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{path}: {}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    raw[split..].to_vec()
}

/// A PKCS#10 request for the P-256 key in `key`, with `subject`, written to `out`.
fn csr(key: &str, subject: &str, out: &str) {
    openssl(&[
        "req", "-new", "-key", key, "-utf8", "-subj", subject, "-out", out,
    ]);
}

/// A valid unified social credit code from its first 17 characters.
fn valid_credit_code(prefix17: &str) -> String {
    assert_eq!(
        prefix17[16..].chars().next(),
        Some(ekey_testkit::ident::org_code_check(&prefix17[8..16])),
        "{prefix17}: characters 9-17 must be a valid GB 11714 organisation code"
    );
    ekey_testkit::ident::with_uscc_check(prefix17)
}

/// `ekey ca issue` on the demo directory `data` for the Suzhou test enterprise.
fn ca_issue(data: &std::path::Path, csr: &str, credit_code: &str) -> std::process::Output {
    ekey()
        .args([
            "ca",
            "issue",
            "--csr",
            csr,
            "--credit-code",
            credit_code,
            "--name",
            "苏州示例贸易有限公司",
            "--data",
        ])
        .arg(data)
        .output()
        .unwrap()
}

#[test]
fn ca_issue_and_revoke_show_in_the_running_instance() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ekey-data");
    let (child, addr) = start_demo(&data);
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(p("root.der"), get_bytes(&addr, "/ca/root.crt")).unwrap();
    std::fs::write(p("issuing.der"), get_bytes(&addr, "/ca/issuing.crt")).unwrap();
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        &p("root.der"),
        "-out",
        &p("root.pem"),
    ]);
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        &p("issuing.der"),
        "-out",
        &p("issuing.pem"),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p("k.pem"),
    ]);
    // A CSR naming another enterprise is refused; one naming this one (or none) is fine.
    csr(
        &p("k.pem"),
        "/CN=Another Co/serialNumber=91110000600037341L",
        &p("other.pem"),
    );
    csr(&p("k.pem"), "/CN=苏州示例贸易有限公司", &p("req.pem"));
    let other = ca_issue(&data, &p("other.pem"), "91320106MA1XYW0A36");
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("ekey.ca.csr_subject"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );

    let issue = |code: &str| ca_issue(&data, &p("req.pem"), code);
    let bad = issue("91320000000000000X");
    assert!(!bad.status.success(), "a wrong check character is refused");
    let out = issue("91320106MA1XYW0A36");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(p("cert.pem"), &out.stdout).unwrap();
    // Key hygiene (issue 15): the same key for another enterprise is refused.
    let elsewhere = issue(&valid_credit_code("91320500MA1KEYBB6"));
    assert!(
        !elsewhere.status.success()
            && String::from_utf8_lossy(&elsewhere.stderr).contains("ekey.ca.key_other_enterprise"),
        "{}",
        String::from_utf8_lossy(&elsewhere.stderr)
    );
    let again = issue("91320106MA1XYW0A36");
    assert_eq!(
        again.stdout, out.stdout,
        "the same CSR and subject give the same certificate"
    );
    let chain = openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        &p("root.pem"),
        "-untrusted",
        &p("issuing.pem"),
        &p("cert.pem"),
    ]);
    assert!(chain.contains("OK"), "{chain}");
    let serial = openssl(&["x509", "-in", &p("cert.pem"), "-noout", "-serial"]);
    let serial = serial.trim().trim_start_matches("serial=").to_string();
    let ocsp = |cert: &str| {
        openssl(&[
            "ocsp",
            "-issuer",
            &p("issuing.pem"),
            "-cert",
            cert,
            "-url",
            &format!("http://{addr}/ocsp"),
            "-CAfile",
            &p("root.pem"),
        ])
    };
    assert!(ocsp(&p("cert.pem")).contains(": good"));

    // Reasons a full CRL cannot carry are refused (issue 15), and nothing is revoked.
    for reason in ["removeFromCRL", "certificateHold"] {
        let refused = ekey()
            .args([
                "ca", "revoke", "--serial", &serial, "--reason", reason, "--data",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            !refused.status.success()
                && String::from_utf8_lossy(&refused.stderr).contains("ekey.ca.reason_not_allowed"),
            "{reason}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
    assert!(ocsp(&p("cert.pem")).contains(": good"));

    // Colons and lower case are accepted; the running instance sees the revocation.
    let with_colons: String = serial
        .to_lowercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_string())
        .collect::<Vec<_>>()
        .join(":");
    let out = ekey()
        .args([
            "ca",
            "revoke",
            "--serial",
            &with_colons,
            "--reason",
            "keyCompromise",
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another process revoked it: the instance re-reads the revocation counter at most every
    // 250 ms (docs/scale-out.md), so its OCSP says so within a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let text = loop {
        let text = ocsp(&p("cert.pem"));
        if text.contains(": revoked") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        text.contains(": revoked") && text.contains("keyCompromise"),
        "{text}"
    );
    std::fs::write(p("crl.der"), get_bytes(&addr, "/crl/issuing.crl")).unwrap();
    let crl = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &p("crl.der"),
        "-CAfile",
        &p("issuing.pem"),
        "-noout",
        "-text",
    ]);
    assert!(
        crl.contains("verify OK") && crl.to_uppercase().contains(&serial.to_uppercase()),
        "{crl}"
    );

    let again = ekey()
        .args([
            "ca",
            "revoke",
            "--serial",
            &serial,
            "--reason",
            "keyCompromise",
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("already revoked")
    );
    // A key revoked as compromised is never certified again.
    let compromised = ca_issue(&data, &p("req.pem"), "91320106MA1XYW0A36");
    assert!(
        !compromised.status.success()
            && String::from_utf8_lossy(&compromised.stderr).contains("ekey.ca.key_compromised"),
        "{}",
        String::from_utf8_lossy(&compromised.stderr)
    );
    let unknown = ekey()
        .args([
            "ca",
            "revoke",
            "--serial",
            "0BADC0DE",
            "--reason",
            "keyCompromise",
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        !unknown.status.success()
            && String::from_utf8_lossy(&unknown.stderr).contains("no certificate")
    );
    let bad_reason = ekey()
        .args([
            "ca", "revoke", "--serial", &serial, "--reason", "because", "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!bad_reason.status.success());
    stop(child);
}

#[test]
fn import_an_existing_ca_and_issue_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = dir.path().join("ekey-data");
    std::fs::write(
        p("ext.cnf"),
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("root.key"),
        "-out",
        &p("root.pem"),
        "-days",
        "3650",
        "-subj",
        "/O=Provincial PKI/CN=Existing Root",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("issuing.key"),
        "-out",
        &p("issuing.csr"),
        "-subj",
        "/O=Provincial PKI/CN=Existing Issuing",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("issuing.csr"),
        "-CA",
        &p("root.pem"),
        "-CAkey",
        &p("root.key"),
        "-CAcreateserial",
        "-days",
        "1825",
        "-out",
        &p("issuing.pem"),
        "-extfile",
        &p("ext.cnf"),
    ]);
    let out = ekey()
        .args([
            "ca",
            "import",
            "--root",
            &p("root.pem"),
            "--issuing",
            &p("issuing.pem"),
            "--issuing-key",
            &p("issuing.key"),
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Importing again over an existing CA is refused.
    let again = ekey()
        .args([
            "ca",
            "import",
            "--root",
            &p("root.pem"),
            "--issuing",
            &p("issuing.pem"),
            "--issuing-key",
            &p("issuing.key"),
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!again.status.success());
    // The imported key is stored encrypted under the deployment's passphrase, never as the
    // plain file it came from.
    let stored = std::fs::read_to_string(data.join("ca").join("issuing.key.pem")).unwrap();
    assert!(stored.contains("BEGIN ENCRYPTED PRIVATE KEY"), "{stored}");
    assert!(
        !stored.contains(
            std::fs::read_to_string(p("issuing.key"))
                .unwrap()
                .lines()
                .nth(1)
                .unwrap()
        )
    );
    assert!(std::fs::read_dir(data.join("ca")).unwrap().all(|e| {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        !name.ends_with(".pem")
            || name.ends_with(".key.pem")
                && std::fs::read_to_string(data.join("ca").join(&name))
                    .unwrap()
                    .contains("ENCRYPTED")
    }));
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p("k.pem"),
    ]);
    csr(&p("k.pem"), "/", &p("req.pem"));
    let out = ca_issue(&data, &p("req.pem"), "91320106MA1XYW0A36");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(p("cert.pem"), &out.stdout).unwrap();
    let chain = openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        &p("root.pem"),
        "-untrusted",
        &p("issuing.pem"),
        &p("cert.pem"),
    ]);
    assert!(chain.contains("OK"), "{chain}");
}

/// Issue 15, item 6: `ekey ca init --root-key-out` keeps the root key out of the data
/// directory; the server runs without it and serves the root's CRL (ARL) signed ahead of
/// time; `openssl verify -crl_check_all` accepts an enterprise certificate with both CRLs;
/// `ekey ca root-crl` signs the next ARL, which the running server serves at once.
#[test]
fn the_root_key_lives_offline_and_both_crls_check_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ekey-data");
    let offline = dir.path().join("usb");
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let root_pass = "a long root passphrase 2026";

    // Inside the data directory is refused.
    let inside = ekey()
        .args(["ca", "init", "--root-key-out"])
        .arg(data.join("root-key"))
        .arg("--data")
        .arg(&data)
        .env("EKEY_ROOT_KEY_PASSPHRASE", root_pass)
        .output()
        .unwrap();
    assert!(
        !inside.status.success()
            && String::from_utf8_lossy(&inside.stderr).contains("outside the data directory"),
        "{}",
        String::from_utf8_lossy(&inside.stderr)
    );
    let init = ekey()
        .args(["ca", "init", "--root-key-out"])
        .arg(&offline)
        .arg("--data")
        .arg(&data)
        .env("EKEY_ROOT_KEY_PASSPHRASE", root_pass)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    assert!(offline.join("root.key.pem").exists());
    let ca = data.join("ca");
    assert!(!ca.join("root.key.pem").exists(), "the root key stayed out");
    assert!(ca.join("root.crl").exists(), "the first ARL is published");

    let (child, addr) = start_demo(&data);
    assert!(!ca.join("root.key.pem").exists());
    for (path, file) in [
        ("/ca/root.crt", "root.der"),
        ("/ca/issuing.crt", "issuing.der"),
        ("/crl/root.crl", "root.crl"),
    ] {
        std::fs::write(p(file), get_bytes(&addr, path)).unwrap();
    }
    for name in ["root", "issuing"] {
        openssl(&[
            "x509",
            "-inform",
            "DER",
            "-in",
            &p(&format!("{name}.der")),
            "-out",
            &p(&format!("{name}.pem")),
        ]);
    }
    let issuing = openssl(&["x509", "-in", &p("issuing.pem"), "-noout", "-text"]);
    assert!(issuing.contains("/crl/root.crl"), "{issuing}");
    let arl = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &p("root.crl"),
        "-CAfile",
        &p("root.pem"),
        "-noout",
        "-text",
    ]);
    assert!(arl.contains("verify OK"), "{arl}");
    assert_eq!(ekey_testkit::crl::number_and_serials(&arl).0, 1, "{arl}");

    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p("k.pem"),
    ]);
    csr(&p("k.pem"), "/CN=苏州示例贸易有限公司", &p("req.pem"));
    let out = ca_issue(&data, &p("req.pem"), "91320106MA1XYW0A36");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(p("cert.pem"), &out.stdout).unwrap();
    let verify = |crl: &str| {
        let out = Command::new("openssl")
            .args([
                "verify",
                "-crl_check_all",
                "-CAfile",
                &p("root.pem"),
                "-untrusted",
                &p("issuing.pem"),
                "-CRLfile",
                &p("root.crl.pem"),
                "-CRLfile",
                crl,
                &p("cert.pem"),
            ])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &p("root.crl"),
        "-out",
        &p("root.crl.pem"),
    ]);
    std::fs::write(p("issuing.crl"), get_bytes(&addr, "/crl/issuing.crl")).unwrap();
    openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &p("issuing.crl"),
        "-out",
        &p("issuing.crl.pem"),
    ]);
    let text = verify(&p("issuing.crl.pem"));
    assert!(text.contains(": OK"), "{text}");

    // A wrong passphrase signs nothing.
    let wrong = ekey()
        .args(["ca", "root-crl", "--root-key"])
        .arg(offline.join("root.key.pem"))
        .arg("--data")
        .arg(&data)
        .env("EKEY_ROOT_KEY_PASSPHRASE", "not the root passphrase")
        .output()
        .unwrap();
    assert!(
        !wrong.status.success()
            && String::from_utf8_lossy(&wrong.stderr).contains("ekey.ca.passphrase"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    // The key ceremony: the next ARL, served at once by the running server.
    let renew = ekey()
        .args(["ca", "root-crl", "--days", "400", "--root-key"])
        .arg(offline.join("root.key.pem"))
        .arg("--data")
        .arg(&data)
        .env("EKEY_ROOT_KEY_PASSPHRASE", root_pass)
        .output()
        .unwrap();
    assert!(
        renew.status.success(),
        "{}",
        String::from_utf8_lossy(&renew.stderr)
    );
    std::fs::write(p("root2.crl"), get_bytes(&addr, "/crl/root.crl")).unwrap();
    let arl = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &p("root2.crl"),
        "-CAfile",
        &p("root.pem"),
        "-noout",
        "-text",
    ]);
    assert!(arl.contains("verify OK"), "{arl}");
    assert_eq!(ekey_testkit::crl::number_and_serials(&arl).0, 2, "{arl}");
    stop(child);
}

//! Fault tests of the online certificate renewal, with real processes (docs/agent.md, "The
//! renewal protocol"): `ekey key renew` — or the `ekey demo` server — is killed at each
//! step (`EKEY_FAULT=<point>` aborts the process there, as `kill -9` would) and run again.
//! Every renewal must end with exactly one new valid certificate on the key, the key
//! usable, and the server's records consistent. Also the unlock from the command line
//! against the same kind of server (`ekey key challenge`, `ekey key unlock --server`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ekey_agent::cert::{self, normalize_serial};
use ekey_testkit::scenario::{self, ActiveKey, Portal};
use ekey_token::Token;
use serde_json::{Value, json};

/// Longest any child process may run before the test kills it and fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// `std::process::abort` ends the process with SIGABRT.
const SIGABRT: i32 = 6;

/// Client-side crash points, in protocol order.
const CLIENT_POINTS: &[&str] = &[
    "renew.after_keygen",
    "renew.after_csr_sent",
    "renew.before_write",
    "token.put_certificate.mid",
    "renew.before_promote",
    "token.promote.mid",
    "renew.before_confirm",
];

/// Server-side crash points, in protocol order.
const SERVER_POINTS: &[&str] = &[
    "server.renewal.after_reserve",
    "server.renewal.after_issue",
    "server.renewal.after_confirm",
];

fn ekey() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ekey"));
    c.env_remove("EKEY_FAULT").env("LANG", "en_US.UTF-8");
    c
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits for `child` at most `timeout`; kills it (and returns `None`) when it is still
/// running then.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `cmd` with `stdin`, bounded by [`CHILD_TIMEOUT`].
fn run_bounded(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ekey");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = wait_bounded(&mut child, CHILD_TIMEOUT);
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    let Some(status) = status else {
        panic!(
            "ekey did not finish within {CHILD_TIMEOUT:?}; stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// `ekey key renew` of one renewal, the PIN on standard input.
fn renew(url: &str, token: &Path, request: &str, pin: &str, fault: Option<&str>) -> Output {
    let mut cmd = ekey();
    cmd.args(["key", "renew", "--server", url, "--token"])
        .arg(token)
        .args(["--request", request])
        .env("RUST_LOG", "info");
    if let Some(point) = fault {
        cmd.env("EKEY_FAULT", point);
    }
    run_bounded(cmd, &format!("{pin}\n"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Nothing listens on the port any more (connection refused).
fn wait_port_closed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "port {port} still answers 30 s after the server stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `ekey demo`; killed when dropped (e.g. on a failed assertion).
struct Demo {
    child: Option<Child>,
    data: PathBuf,
    port: u16,
    /// The servers' stderr (every start appends to it).
    log: PathBuf,
}

impl Demo {
    /// Starts `ekey demo` on `data` at `127.0.0.1:port`, with `EKEY_FAULT` set when
    /// `fault` is given; returns once it printed its banner.
    fn start(data: &Path, port: u16, log: &Path, fault: Option<&str>) -> Demo {
        wait_port_closed(port);
        // The listening socket of a process just reaped can linger a moment: a start that
        // cannot bind is retried a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut demo = Demo {
                child: None,
                data: data.to_path_buf(),
                port,
                log: log.to_path_buf(),
            };
            match demo.spawn(fault) {
                Ok(()) => return demo,
                Err(why) if attempt < 5 && why.contains("listening on") => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(why) => panic!("ekey demo did not start: {why}"),
            }
        }
    }

    fn spawn(&mut self, fault: Option<&str>) -> Result<(), String> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(
            log,
            "===== ekey demo start (EKEY_FAULT={}) =====",
            fault.unwrap_or("")
        )
        .unwrap();
        let log_before = std::fs::metadata(&self.log).unwrap().len();
        let mut cmd = ekey();
        cmd.args(["demo", "--data"])
            .arg(&self.data)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(point) = fault {
            cmd.env("EKEY_FAULT", point);
        }
        let mut child = cmd.spawn().expect("starting ekey demo");
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Reads to the end so the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ctrl-C") {
                    let _ = tx.send(());
                }
            }
        });
        match rx.recv_timeout(CHILD_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(mut c) = self.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                let log = std::fs::read(&self.log).unwrap_or_default();
                let start = (log_before as usize).min(log.len());
                Err(format!(
                    "no banner ({e}); its stderr:\n{}",
                    text(&log[start..])
                ))
            }
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// SIGTERM (graceful), SIGKILL after 10 s.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            if wait_bounded(&mut child, Duration::from_secs(10)).is_none() {
                eprintln!("ekey demo ignored SIGTERM for 10 s; killed");
            }
        }
        wait_port_closed(self.port);
    }

    /// How the server ended; fails if it is still running after `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        wait_bounded(&mut child, timeout).unwrap_or_else(|| {
            panic!(
                "the server did not stop within {timeout:?}; log tail:\n{}",
                self.log_tail()
            )
        })
    }

    fn log_tail(&self) -> String {
        let log = text(&std::fs::read(&self.log).unwrap_or_default());
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Body of a plain `GET` (the CA certificates are DER, not JSON).
fn get_bytes(port: u16, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{path}: {}",
        text(&raw[..raw.len().min(200)])
    );
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    raw[split..].to_vec()
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is required");
    let t = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "openssl {args:?}: {t}");
    t
}

/// The CA chain as PEM files, for `openssl verify`.
struct Chain {
    root: String,
    issuing: String,
    dir: PathBuf,
}

impl Chain {
    fn fetch(port: u16, dir: &Path) -> Chain {
        let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
        for name in ["root", "issuing"] {
            std::fs::write(
                file(&format!("{name}.der")),
                get_bytes(port, &format!("/ca/{name}.crt")),
            )
            .unwrap();
            openssl(&[
                "x509",
                "-inform",
                "DER",
                "-in",
                &file(&format!("{name}.der")),
                "-out",
                &file(&format!("{name}.pem")),
            ]);
        }
        Chain {
            root: file("root.pem"),
            issuing: file("issuing.pem"),
            dir: dir.to_path_buf(),
        }
    }

    /// `openssl verify` of a DER certificate against the chain.
    fn verify(&self, der: &[u8]) {
        let der_path = self.dir.join("leaf.der");
        let pem_path = self.dir.join("leaf.pem");
        std::fs::write(&der_path, der).unwrap();
        openssl(&[
            "x509",
            "-inform",
            "DER",
            "-in",
            der_path.to_str().unwrap(),
            "-out",
            pem_path.to_str().unwrap(),
        ]);
        let out = openssl(&[
            "verify",
            "-x509_strict",
            "-CAfile",
            &self.root,
            "-untrusted",
            &self.issuing,
            pem_path.to_str().unwrap(),
        ]);
        assert!(out.contains(": OK"), "{out}");
    }
}

impl Chain {
    /// The CA's CRL (verified with the issuing certificate) lists every certificate in
    /// `superseded` with reason Superseded, and not `current`.
    fn check_crl(&self, port: u16, superseded: &[String], current: &str) {
        let path = self.dir.join("issuing.crl");
        std::fs::write(&path, get_bytes(port, "/crl/issuing.crl")).unwrap();
        let out = openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-CAfile",
            &self.issuing,
            "-noout",
            "-text",
        ]);
        assert!(out.contains("verify OK"), "{out}");
        // serial → reason
        let mut listed: Vec<(String, String)> = Vec::new();
        let mut lines = out.lines().map(str::trim);
        while let Some(line) = lines.next() {
            if let Some(serial) = line.strip_prefix("Serial Number:") {
                listed.push((normalize_serial(serial), String::new()));
            } else if line.starts_with("X509v3 CRL Reason Code")
                && let (Some(last), Some(reason)) = (listed.last_mut(), lines.next())
            {
                last.1 = reason.to_string();
            }
        }
        for serial in superseded {
            let entry = listed
                .iter()
                .find(|(s, _)| *s == normalize_serial(serial))
                .unwrap_or_else(|| panic!("{serial} not in the CRL:\n{out}"));
            assert_eq!(entry.1, "Superseded", "{serial}:\n{out}");
        }
        assert!(
            listed.iter().all(|(s, _)| *s != normalize_serial(current)),
            "the key's certificate {current} is in the CRL:\n{out}"
        );
    }
}

/// The provider's view of the key's certificates (those issued, with their DER).
async fn certificates(p: &Portal, login_name: &str) -> Vec<Value> {
    let provider = p.login("provider").await.unwrap();
    p.expect(
        200,
        "GET",
        &format!("/api/v1/certificates?q={login_name}"),
        Some(&provider),
        None,
    )
    .await
    .unwrap()
    .as_array()
    .unwrap()
    .clone()
}

/// The key as the enterprise's key list shows it.
async fn key_record(p: &Portal, key: &ActiveKey) -> Value {
    let ent = p.login("demo@ekey.example").await.unwrap();
    let keys = p
        .expect(200, "GET", "/api/v1/keys", Some(&ent), None)
        .await
        .unwrap();
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key.key_id.as_str())
        .expect("the key is listed")
        .clone()
}

fn same_serial(a: &Value, b: &str) -> bool {
    a.as_str()
        .is_some_and(|a| normalize_serial(a) == normalize_serial(b))
}

/// State of the key before one renewal.
struct Before {
    serial: String,
    certificates: usize,
    /// The certificate on the token (DER).
    der: Vec<u8>,
}

async fn before(p: &Portal, key: &ActiveKey, token_path: &Path) -> Before {
    let k = key_record(p, key).await;
    let serial = k["certificate_serial"].as_str().unwrap().to_string();
    let status = ekey_token::SoftToken::open(token_path)
        .unwrap()
        .status()
        .unwrap();
    let der = status
        .containers
        .iter()
        .find(|c| c.name == "sign")
        .and_then(|c| c.certificate_der.clone())
        .expect("a certificate in sign");
    assert_eq!(
        normalize_serial(&cert::parse(&der).unwrap().serial),
        normalize_serial(&serial),
        "token and server agree before the renewal"
    );
    Before {
        serial,
        certificates: certificates(p, &key.login_name).await.len(),
        der,
    }
}

/// Certificate login as the login page does it: `certificate` presented, the challenge
/// signed by the key's `sign` container. The status and the answer.
async fn key_login(p: &Portal, t: &dyn Token, pin: &str, certificate: &[u8]) -> (u16, Value) {
    let c = p
        .expect(
            201,
            "POST",
            "/api/v1/key-login/challenges",
            None,
            Some(json!({})),
        )
        .await
        .unwrap();
    let message = ekey_domain::keyproof::login_message(&p.base, c["challenge"].as_str().unwrap());
    let signature = t.sign(pin, "sign", &message).unwrap();
    p.call(
        "POST",
        "/api/v1/key-login",
        None,
        Some(
            json!({"challenge_id": c["id"], "certificate": STANDARD.encode(certificate),
                    "signature": STANDARD.encode(signature)}),
        ),
    )
    .await
    .unwrap()
}

/// Never more than one new certificate, even halfway.
async fn at_most_one_new(p: &Portal, key: &ActiveKey, b: &Before, when: &str) {
    let now = certificates(p, &key.login_name).await;
    assert!(
        now.len() <= b.certificates + 1,
        "{when}: {} certificates, {} before the renewal: {now:#?}",
        now.len(),
        b.certificates
    );
}

/// Every invariant of a finished renewal `request_id` of `key`, which had `b` before it.
/// Returns the new certificate's serial.
async fn check_renewed(
    p: &Portal,
    key: &ActiveKey,
    token_path: &Path,
    request_id: &str,
    b: &Before,
    chain: &Chain,
    cli_stdout: &str,
) -> String {
    let ctx = format!("renewal {request_id}");

    // The token: exactly one container, `sign`, with a certificate for its key pair.
    let t = ekey_token::SoftToken::open(token_path).unwrap();
    let status = t.status().unwrap();
    let names: Vec<&str> = status.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["sign"], "{ctx}: containers on the token");
    assert_eq!(status.pin_tries_left, ekey_token::MAX_PIN_TRIES, "{ctx}");
    assert!(!status.locked, "{ctx}");
    let sign = &status.containers[0];
    assert!(sign.has_key, "{ctx}: no key pair in sign");
    let der = sign
        .certificate_der
        .clone()
        .unwrap_or_else(|| panic!("{ctx}: no certificate in sign"));
    let spki = sign.public_key_spki.clone().expect("public key of sign");
    let on_token = cert::parse(&der).unwrap();
    assert_eq!(
        cert::spki_point(&spki).as_deref(),
        Some(on_token.public_key.as_slice()),
        "{ctx}: the certificate on the token is not for its key pair"
    );
    let new_serial = on_token.serial.clone();
    assert_ne!(
        normalize_serial(&new_serial),
        normalize_serial(&b.serial),
        "{ctx}: the token still holds the old certificate"
    );
    assert!(
        cli_stdout.contains(&format!("new certificate: {new_serial}")),
        "{ctx}: the CLI reported another certificate: {cli_stdout}"
    );

    // The key signs with it.
    let signature = t.sign(&key.pin, "sign", b"probe").unwrap();
    ekey_ca::verify_signature(
        &spki,
        ekey_ca::KeyAlgorithm::EcdsaP256,
        b"probe",
        &signature,
    )
    .unwrap_or_else(|e| panic!("{ctx}: the key's signature does not verify: {e}"));
    chain.verify(&der);
    // It logs in with the new certificate; the old one is refused.
    let (code, v) = key_login(p, &t, &key.pin, &der).await;
    assert_eq!(code, 200, "{ctx}: key login with the new certificate: {v}");
    assert!(
        same_serial(&v["certificate_serial"], &new_serial),
        "{ctx}: {v}"
    );
    let (code, v) = key_login(p, &t, &key.pin, &b.der).await;
    assert_eq!(code, 401, "{ctx}: key login with the old certificate: {v}");
    assert_eq!(v["code"], "ekey.keylogin.certificate_revoked", "{ctx}: {v}");

    // The server: the key has the new certificate, the request is completed, the renewal
    // confirmed with these serials.
    let k = key_record(p, key).await;
    assert!(
        same_serial(&k["certificate_serial"], &new_serial),
        "{ctx}: {k}"
    );
    assert_eq!(k["state"], "active", "{ctx}: {k}");
    let ent = p.login("demo@ekey.example").await.unwrap();
    let r = p
        .expect(
            200,
            "GET",
            &format!("/api/v1/requests/{request_id}"),
            Some(&ent),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r["status"], "completed", "{ctx}: {r}");
    let renewals = p
        .expect(200, "GET", "/api/v1/renewals", Some(&ent), None)
        .await
        .unwrap();
    let rec = renewals
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["request_id"] == request_id)
        .unwrap_or_else(|| panic!("{ctx}: not in the renewals: {renewals}"));
    assert_eq!(rec["state"], "confirmed", "{ctx}: {rec}");
    assert!(same_serial(&rec["old_serial"], &b.serial), "{ctx}: {rec}");
    assert!(same_serial(&rec["new_serial"], &new_serial), "{ctx}: {rec}");

    // Exactly one new certificate; the old one superseded, the new one valid.
    let certs = certificates(p, &key.login_name).await;
    assert_eq!(
        certs.len(),
        b.certificates + 1,
        "{ctx}: one new certificate per renewal: {certs:#?}"
    );
    let find = |serial: &str| {
        certs
            .iter()
            .find(|c| same_serial(&c["serial"], serial))
            .unwrap_or_else(|| panic!("{ctx}: certificate {serial} not found: {certs:#?}"))
    };
    let old = find(&b.serial);
    assert_eq!(old["revocation_reason"], "superseded", "{ctx}: {old}");
    let new = find(&new_serial);
    assert!(new["revoked_at"].is_null(), "{ctx}: {new}");
    new_serial
}

/// No certificate reserved and never issued is left behind; the audit chain is intact.
fn check_store(data: &Path) {
    let db = format!("sqlite:{}", data.join("ekey.db").display());
    let dangling: i64 = runtime().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&db).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM certificates WHERE der IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    });
    assert_eq!(dangling, 0, "reserved certificates never issued");
    let out = ekey()
        .args(["audit", "verify", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success() && text(&out.stdout).contains("intact"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Common set-up: a demo server with an active key of the demo enterprise.
struct Setup {
    dir: tempfile::TempDir,
    data: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("ekey-data");
        let log = dir.path().join("server.log");
        Setup {
            data,
            log,
            port: ekey_testkit::free_port(),
            dir,
        }
    }

    fn token_path(&self, key: &ActiveKey) -> PathBuf {
        self.data
            .join("tokens")
            .join(format!("{}.token", key.token_serial))
    }
}

#[test]
fn renewal_finishes_after_the_client_is_killed_at_each_step() {
    let started = Instant::now();
    let rt = runtime();
    let s = Setup::new();
    let demo = Demo::start(&s.data, s.port, &s.log, None);
    let url = demo.url();
    let p = Portal::new(&url);
    let key = rt.block_on(scenario::active_key(&p)).unwrap();
    let token = s.token_path(&key);
    let chain = Chain::fetch(s.port, s.dir.path());
    let mut superseded = Vec::new();

    for point in CLIENT_POINTS {
        let b = rt.block_on(before(&p, &key, &token));
        let (id, _number) = rt.block_on(scenario::approved_renewal(&p, &key)).unwrap();

        let crashed = renew(&url, &token, &id, &key.pin, Some(point));
        let stderr = text(&crashed.stderr);
        assert_eq!(
            crashed.status.signal(),
            Some(SIGABRT),
            "{point}: the CLI was not stopped there ({:?}); stdout:\n{}\nstderr:\n{stderr}",
            crashed.status,
            text(&crashed.stdout)
        );
        assert!(
            stderr.contains(&format!("EKEY_FAULT: stopping at {point}")),
            "{point}: {stderr}"
        );
        rt.block_on(at_most_one_new(&p, &key, &b, &format!("after {point}")));

        let again = renew(&url, &token, &id, &key.pin, None);
        assert!(
            again.status.success(),
            "{point}: the second run failed ({:?}); stderr:\n{}\nserver log tail:\n{}",
            again.status,
            text(&again.stderr),
            demo.log_tail()
        );
        let new = rt.block_on(check_renewed(
            &p,
            &key,
            &token,
            &id,
            &b,
            &chain,
            &text(&again.stdout),
        ));
        // Running it again once it is done changes nothing and issues nothing.
        let done = renew(&url, &token, &id, &key.pin, None);
        assert!(
            done.status.success(),
            "{point}: a run after the end failed: {}",
            text(&done.stderr)
        );
        let same = rt.block_on(check_renewed(
            &p,
            &key,
            &token,
            &id,
            &b,
            &chain,
            &text(&done.stdout),
        ));
        assert_eq!(same, new, "{point}");
        superseded.push(b.serial.clone());
        eprintln!(
            "{point}: renewed {} → {new} ({:.1?} so far)",
            b.serial,
            started.elapsed()
        );
    }

    // One renewal whose every run dies one step further than the one before; the last
    // run, without --request (as a holder would type it), finishes it. (After
    // `token.promote.mid` the promotion is done, so a further run goes straight to the
    // confirmation and `renew.before_confirm` is no longer on its way.)
    let b = rt.block_on(before(&p, &key, &token));
    let (id, _number) = rt.block_on(scenario::approved_renewal(&p, &key)).unwrap();
    let until_promoted = CLIENT_POINTS
        .iter()
        .position(|p| *p == "token.promote.mid")
        .unwrap();
    for point in &CLIENT_POINTS[..=until_promoted] {
        let crashed = renew(&url, &token, &id, &key.pin, Some(point));
        let stderr = text(&crashed.stderr);
        assert_eq!(
            crashed.status.signal(),
            Some(SIGABRT),
            "chain, {point}: {:?}\n{stderr}",
            crashed.status
        );
        assert!(
            stderr.contains(&format!("EKEY_FAULT: stopping at {point}")),
            "chain, {point}: {stderr}"
        );
        rt.block_on(at_most_one_new(&p, &key, &b, &format!("chain, {point}")));
    }
    let mut cmd = ekey();
    cmd.args(["key", "renew", "--server", &url, "--token"])
        .arg(&token);
    let last = run_bounded(cmd, &format!("{}\n", key.pin));
    assert!(
        last.status.success(),
        "chain: the last run failed: {}\nserver log tail:\n{}",
        text(&last.stderr),
        demo.log_tail()
    );
    let current = rt.block_on(check_renewed(
        &p,
        &key,
        &token,
        &id,
        &b,
        &chain,
        &text(&last.stdout),
    ));
    superseded.push(b.serial);
    chain.check_crl(s.port, &superseded, &current);
    drop(demo);
    check_store(&s.data);
    eprintln!(
        "client faults: {} renewals in {:.1?}",
        CLIENT_POINTS.len() + 1,
        started.elapsed()
    );
}

#[test]
fn renewal_finishes_after_the_server_is_killed_at_each_step() {
    let started = Instant::now();
    let rt = runtime();
    let s = Setup::new();
    let mut demo = Demo::start(&s.data, s.port, &s.log, None);
    let url = demo.url();
    let key = rt
        .block_on(scenario::active_key(&Portal::new(&url)))
        .unwrap();
    let token = s.token_path(&key);
    let chain = Chain::fetch(s.port, s.dir.path());
    let mut superseded = Vec::new();
    let mut current = key.certificate_serial.clone();

    for point in SERVER_POINTS {
        // The same data directory and port, now with the crash point armed.
        demo.stop();
        demo = Demo::start(&s.data, s.port, &s.log, Some(point));
        let p = Portal::new(&url);
        let b = rt.block_on(before(&p, &key, &token));
        let (id, _number) = rt.block_on(scenario::approved_renewal(&p, &key)).unwrap();

        let failed = renew(&url, &token, &id, &key.pin, None);
        assert!(
            !failed.status.success(),
            "{point}: the renewal succeeded although the server died; stdout:\n{}\nserver log tail:\n{}",
            text(&failed.stdout),
            demo.log_tail()
        );
        let pid = demo.pid();
        let died = demo.wait_exit(Duration::from_secs(30));
        assert_eq!(
            died.signal(),
            Some(SIGABRT),
            "{point}: server {pid} ended with {died:?}; CLI stderr:\n{}\nserver log tail:\n{}",
            text(&failed.stderr),
            demo.log_tail()
        );
        assert!(
            demo.log_tail()
                .contains(&format!("EKEY_FAULT: stopping at {point}")),
            "{point}: {}",
            demo.log_tail()
        );

        demo = Demo::start(&s.data, s.port, &s.log, None);
        let p = Portal::new(&url);
        rt.block_on(at_most_one_new(&p, &key, &b, &format!("after {point}")));
        let again = renew(&url, &token, &id, &key.pin, None);
        assert!(
            again.status.success(),
            "{point}: the run after the server restart failed ({:?}); first run stderr:\n{}\nsecond run stderr:\n{}\nserver log tail:\n{}",
            again.status,
            text(&failed.stderr),
            text(&again.stderr),
            demo.log_tail()
        );
        let new = rt.block_on(check_renewed(
            &p,
            &key,
            &token,
            &id,
            &b,
            &chain,
            &text(&again.stdout),
        ));
        superseded.push(b.serial.clone());
        current = new.clone();
        eprintln!(
            "{point}: renewed {} → {new} ({:.1?} so far)",
            b.serial,
            started.elapsed()
        );
    }
    chain.check_crl(s.port, &superseded, &current);
    demo.stop();
    check_store(&s.data);
    eprintln!(
        "server faults: {} renewals in {:.1?}",
        SERVER_POINTS.len(),
        started.elapsed()
    );
}

/// The unlock from the command line, end to end: `ekey key challenge` reads the locked
/// key's challenge, the provider approves, `ekey key unlock --server … --request …` applies
/// the mailed code (read from standard input, never an argument) with a new PIN and
/// completes the request; the code works once.
/// Then `ekey key login` with the new PIN opens a session of the key's enterprise.
#[test]
fn a_locked_key_is_unlocked_from_the_command_line_and_then_logs_in() {
    let rt = runtime();
    let s = Setup::new();
    let demo = Demo::start(&s.data, s.port, &s.log, None);
    let url = demo.url();
    let p = Portal::new(&url);
    let key = rt.block_on(scenario::active_key(&p)).unwrap();
    let token = s.token_path(&key);
    let t = ekey_token::SoftToken::open(&token).unwrap();
    for _ in 0..6 {
        let _ = t.sign("999999", "sign", b"x");
    }
    assert!(t.status().unwrap().locked);

    let mut cmd = ekey();
    cmd.args(["key", "challenge", "--token"]).arg(&token);
    let out = run_bounded(cmd, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let challenge = text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("challenge: "))
        .expect("the challenge is printed")
        .trim()
        .to_string();
    let (id, number, code) = rt.block_on(async {
        let ent = p.login("demo@ekey.example").await.unwrap();
        let provider = p.login("provider").await.unwrap();
        let id = p
            .request_under_review(
                &ent,
                json!({"kind": "unlock", "login_name": {"mode": "original", "value": key.login_name},
                       "authorised_user": scenario::person("unlock@example.com"),
                       "unlock_challenge": challenge}),
                &["unlock_form", "business_licence"],
            )
            .await
            .unwrap();
        let v = p.approve(&provider, &id).await.unwrap();
        let number = v["number"].as_str().unwrap().to_string();
        let mut code = None;
        for _ in 0..100 {
            let mails = p
                .expect(200, "GET", "/api/v1/dev/mailbox", None, None)
                .await
                .unwrap();
            code = mails.as_array().unwrap().iter().find_map(|m| {
                (m["subject"] == "电子钥匙密码重置").then(|| {
                    m["body"]
                        .as_str()
                        .unwrap()
                        .lines()
                        .find_map(|l| l.strip_prefix("解锁码："))
                        .unwrap()
                        .trim()
                        .to_string()
                })
            });
            if code.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (id, number, code.expect("the mail “电子钥匙密码重置”"))
    });

    let unlock = || {
        let mut cmd = ekey();
        cmd.args(["key", "unlock", "--token"]).arg(&token).args([
            "--server",
            &url,
            "--request",
            &number,
        ]);
        run_bounded(cmd, &format!("{code}\nNew-pin-2026\nNew-pin-2026\n"))
    };
    let out = unlock();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&number), "{}", text(&out.stdout));
    t.sign("New-pin-2026", "sign", b"unlocked").unwrap();
    let status = rt.block_on(async {
        let ent = p.login("demo@ekey.example").await.unwrap();
        p.expect(
            200,
            "GET",
            &format!("/api/v1/requests/{id}"),
            Some(&ent),
            None,
        )
        .await
        .unwrap()["status"]
            .clone()
    });
    assert_eq!(status, "completed");
    let again = unlock();
    assert!(!again.status.success(), "an unlock code works once");
    assert!(
        text(&again.stderr).contains("ekey.token.unlock_invalid"),
        "{}",
        text(&again.stderr)
    );

    // `ekey key login` with the new PIN gives a session of the enterprise that owns the key.
    let login = |pin: &str| {
        let mut cmd = ekey();
        cmd.args(["key", "login", "--token"])
            .arg(&token)
            .args(["--server", &url]);
        run_bounded(cmd, &format!("{pin}\n"))
    };
    let wrong = login("000000");
    assert!(!wrong.status.success());
    assert!(
        text(&wrong.stderr).contains("ekey.token.pin_incorrect"),
        "{}",
        text(&wrong.stderr)
    );
    let out = login("New-pin-2026");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bearer = text(&out.stdout).trim().to_string();
    let keys = rt
        .block_on(p.expect(200, "GET", "/api/v1/keys", Some(&bearer), None))
        .unwrap();
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == key.key_id.as_str()),
        "{keys}"
    );
}

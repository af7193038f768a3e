//! Several instances on one database: three `ekey serve` processes, each with its own data
//! directory (only the CA files and the secrets are copied, as an operator would install
//! them on three hosts), on one throwaway PostgreSQL cluster and one S3 bucket (moto on
//! 127.0.0.1), every call sent to the next instance in turn like a round-robin balancer.
//!
//! Checked: a session opened on one instance works on the others and a logout anywhere
//! ends it everywhere; the whole first-issue path runs across all three (uploads stored by
//! one are read by another, the same PDF from each); every mail leaves exactly once
//! (aiosmtpd counts Message-IDs); periodic jobs run once per due time, not once per
//! instance; a revocation through one instance, or by `ekey ca revoke` beside them, shows
//! in every instance's CRL and OCSP within seconds and the CRL number never goes back;
//! concurrent decisions on the same requests sent to different instances: exactly one wins
//! each, nothing is lost or doubled; a holiday year loaded on one reaches the others; the
//! audit chain is intact at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ekey_testkit::scenario::{self, Portal};
use ekey_testkit::smtp::SmtpSink;
use ekey_testkit::{PgCluster, free_port};
use serde_json::{Value, json};

/// One `ekey serve` process.
struct Instance {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Instance {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An SMS gateway on 127.0.0.1: records the body of every request, answers 200.
struct SmsGateway {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl SmsGateway {
    fn start() -> SmsGateway {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let mut writer = conn.try_clone().unwrap();
                    let mut reader = BufReader::new(conn);
                    // Keep-alive: one request after another until the client closes.
                    loop {
                        let mut length = 0;
                        let mut first = true;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" && !first {
                                break;
                            }
                            first = false;
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        sink.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                        let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    }
                });
            }
        });
        SmsGateway { port, got }
    }
}

/// What the three instances share.
struct Cluster {
    database_url: String,
    smtp_url: String,
    sms_url: String,
    s3_endpoint: String,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn config(&self, n: usize, port: u16) -> PathBuf {
        let data = self.dir.path().join(format!("data{n}"));
        std::fs::create_dir_all(&data).unwrap();
        let path = self.dir.path().join(format!("instance{n}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"database_url = "{db}"
listen = "127.0.0.1:{port}"
data_dir = "{data}"
public_url = "http://127.0.0.1:{port}"
mail_transport = "smtp"
smtp_url = "{smtp}"
allow_software_tokens_insecure = true
sms_url = "{sms}"
storage_url = "s3://ekey-files/deployment"
s3_endpoint = "{s3}"
s3_allow_http = true
outbox_poll_ms = 100
reminder_poll_ms = 300
"#,
                db = self.database_url,
                data = data.display(),
                smtp = self.smtp_url,
                sms = self.sms_url,
                s3 = self.s3_endpoint,
            ),
        )
        .unwrap();
        path
    }

    /// Starts instance `n` and waits until `/healthz` answers 200.
    fn start(&self, n: usize) -> Instance {
        let port = free_port();
        let config = self.config(n, port);
        let log = self.dir.path().join(format!("instance{n}.log"));
        let child = ekey()
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,sqlx=warn")
            .env_remove("EKEY_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("starting ekey serve");
        let mut instance = Instance {
            child: Some(child),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(port, "/healthz").0 != 200 {
            if let Some(status) = instance.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("instance {n} exited ({status}):\n{}", instance.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "instance {n} not healthy after 60 s:\n{}",
                instance.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        instance
    }

    /// Installs instance 1's CA and secrets for instance `n` (as an operator would copy
    /// them to another host).
    fn copy_ca(&self, n: usize) {
        for part in ["ca", "secrets"] {
            let from = self.dir.path().join("data1").join(part);
            let to = self.dir.path().join(format!("data{n}")).join(part);
            std::fs::create_dir_all(&to).unwrap();
            for entry in std::fs::read_dir(&from).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
}

/// The `ekey` binary with the secrets every instance gets from its environment.
fn ekey() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ekey"));
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("EKEY_SMS_SECRET", "instances-sms-secret-0123456789");
    cmd
}

/// A plain HTTP/1.1 GET: status and body.
fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    request(port, "GET", path, "", &[])
}

fn request(port: u16, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Vec::new());
    };
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    if c.write_all(head.as_bytes()).is_err() || c.write_all(body).is_err() {
        return (0, Vec::new());
    }
    let mut reader = BufReader::new(c);
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).is_err() {
        return (0, Vec::new());
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    (status, body)
}

fn openssl(args: &[&str], input: Option<&Path>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    if let Some(p) = input {
        cmd.arg(p);
    }
    let out = cmd.output().expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CRL of instance `port`: its number and the revoked serials (lower-case hex).
fn crl_of(port: u16, dir: &Path) -> (u64, Vec<String>) {
    let (status, der) = get(port, "/crl/issuing.crl");
    assert_eq!(status, 200, "CRL from {port}");
    let path = dir.join(format!("crl-{port}.der"));
    std::fs::write(&path, der).unwrap();
    let text = openssl(
        &["crl", "-inform", "DER", "-noout", "-text", "-in"],
        Some(&path),
    );
    ekey_testkit::crl::number_and_serials(&text)
}

/// `openssl ocsp` against instance `port` for `serial`: "good" or "revoked".
fn ocsp_status(port: u16, dir: &Path, serial: &str) -> String {
    let issuer = dir.join("issuing.pem");
    let out = Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(&issuer)
        .args(["-serial", &format!("0x{serial}"), "-url"])
        .arg(format!("http://127.0.0.1:{port}/ocsp"))
        .arg("-CAfile")
        .arg(dir.join("chain.pem"))
        .output()
        .expect("openssl ocsp");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("Response verify OK"),
        "OCSP response from {port} verifies: {text}"
    );
    if text.contains(": revoked") {
        "revoked".into()
    } else if text.contains(": good") {
        "good".into()
    } else {
        panic!("OCSP answer from {port}: {text}")
    }
}

fn strip0(s: &str) -> String {
    s.to_ascii_lowercase().trim_start_matches('0').to_string()
}

/// Waits until `check` holds, at most `secs` seconds.
async fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn three_instances_on_one_postgresql_behave_as_one() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let database_url = tokio::task::spawn_blocking(|| {
        PgCluster::shared()
            .expect("PostgreSQL is required (never skipped)")
            .create_database("instances")
            .expect("a database")
    })
    .await
    .unwrap();
    let mut smtp = SmtpSink::new();
    smtp.start();
    let s3 = ekey_testkit::Moto::start().expect("moto_server (scripts/test installs it)");
    s3.create_bucket("ekey-files").unwrap();
    let sms = SmsGateway::start();
    let cluster = Cluster {
        database_url: database_url.clone(),
        smtp_url: smtp.url(),
        sms_url: format!("http://127.0.0.1:{}/sms", sms.port),
        s3_endpoint: s3.endpoint(),
        dir: tempfile::tempdir().unwrap(),
    };
    let dir = cluster.dir.path().to_path_buf();

    // The first instance creates the schema and the CA; the demo accounts are seeded into
    // the shared database; the other two get the CA files and secrets.
    let first = cluster.start(1);
    {
        let store = ekey_store::open(&database_url).await.unwrap();
        ekey_server::demo::seed(store.as_ref()).await.unwrap();
    }
    cluster.copy_ca(2);
    cluster.copy_ca(3);
    let instances = [first, cluster.start(2), cluster.start(3)];
    let urls: Vec<String> = instances.iter().map(Instance::url).collect();
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let portal = Portal::round_robin(&url_refs);
    let single: Vec<Portal> = urls.iter().map(|u| Portal::new(u)).collect();

    // --- Sessions: opened on one, valid on all; a logout on one ends it everywhere. -----
    let token = single[0].login("demo@ekey.example").await.unwrap();
    for (i, p) in single.iter().enumerate() {
        let me = p
            .expect(200, "GET", "/api/v1/me", Some(&token), None)
            .await
            .unwrap_or_else(|e| panic!("instance {} knows the session: {e}", i + 1));
        assert_eq!(me["login"], "demo@ekey.example");
    }
    single[1]
        .expect(
            204,
            "DELETE",
            "/api/v1/sessions/current",
            Some(&token),
            None,
        )
        .await
        .unwrap();
    for p in &single {
        let (status, _) = p
            .call("GET", "/api/v1/me", Some(&token), None)
            .await
            .unwrap();
        assert_eq!(status, 401, "logged out everywhere");
    }

    // --- The whole first-issue path, each call on the next instance. -------------------
    let key = scenario::active_key(&portal).await.unwrap();
    let ent = portal.login("demo@ekey.example").await.unwrap();
    // An upload stored through one instance is read through each; the PDF is the same.
    let mut pdfs = Vec::new();
    for p in &single {
        let (status, _) = p
            .call(
                "GET",
                &format!("/api/v1/requests/{}/materials/id_card", key.request_id),
                Some(&ent),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "the scan is readable on {}", p.base);
        let res = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/requests/{}/documents/application-form.pdf",
                p.base, key.request_id
            ))
            .bearer_auth(&ent)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        pdfs.push(res.bytes().await.unwrap());
    }
    assert!(pdfs[0].starts_with(b"%PDF"));
    assert!(
        pdfs.iter().all(|p| p == &pdfs[0]),
        "every instance serves the same application form"
    );

    // --- Concurrent decisions sent to different instances: one wins each. ---------------
    let agency: Vec<String> = {
        let mut v = Vec::new();
        for p in &single {
            v.push(p.login("agency-320000").await.unwrap());
        }
        v
    };
    let mut ids = Vec::new();
    // The enterprise holds one key: two more (增办) are allowed.
    for _ in 0..2 {
        let id = portal
            .request_under_review(
                &ent,
                json!({"kind": "additional", "licence_types": ["import_licence"],
                       "login_name": {"mode": "allocate"}, "reason": "业务量增加，需要第二把钥匙",
                       "authorised_user": scenario::person("liming@example.com")}),
                scenario::SIX,
            )
            .await
            .unwrap();
        ids.push(id);
    }
    let mut races = Vec::new();
    for id in &ids {
        for (i, p) in single.iter().enumerate() {
            let (p, id, token) = (p.clone(), id.clone(), agency[i].clone());
            // Instance 1 approves, 2 returns, 3 approves: one decision survives.
            let body = if i == 1 {
                json!({"approve": false, "remark": "身份证复印件不清晰", "concerns": ["id_card"]})
            } else {
                json!({"approve": true})
            };
            races.push(tokio::spawn(async move {
                let (status, v) = p
                    .call(
                        "POST",
                        &format!("/api/v1/requests/{id}/decision"),
                        Some(&token),
                        Some(body),
                    )
                    .await
                    .unwrap();
                (id, status, v)
            }));
        }
    }
    let mut wins: std::collections::BTreeMap<String, usize> = Default::default();
    for r in races {
        let (id, status, v) = r.await.unwrap();
        match status {
            200 => *wins.entry(id).or_default() += 1,
            409 => assert!(
                v["code"] == "ekey.request.conflict" || v["code"] == "ekey.request.wrong_state",
                "a losing decision says why: {v}"
            ),
            other => panic!("decision answered {other}: {v}"),
        }
    }
    for id in &ids {
        assert_eq!(wins.get(id), Some(&1), "exactly one decision on {id}");
        let r = portal
            .expect(
                200,
                "GET",
                &format!("/api/v1/requests/{id}"),
                Some(&ent),
                None,
            )
            .await
            .unwrap();
        let decisions = r["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["actor_role"] == "agency")
            .count();
        assert_eq!(decisions, 1, "one decision in the history of {id}: {r}");
    }

    // --- Every mail leaves exactly once. -------------------------------------------------
    let store = ekey_store::open(&database_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = store.outbox_counts().await.unwrap();
        if counts.pending == 0 && counts.sent > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox is not empty after 30 s: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counts = store.outbox_counts().await.unwrap();
    let mails = smtp.messages();
    let mut ids_seen = std::collections::BTreeSet::new();
    for m in &mails {
        assert!(
            ids_seen.insert(m["message_id"].as_str().unwrap().to_string()),
            "a mail arrived twice: {m}"
        );
    }
    let sent_mail = sqlx_count(
        &database_url,
        "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND channel = 'email'",
    )
    .await;
    assert_eq!(
        mails.len() as i64,
        sent_mail,
        "one mail per sent outbox row ({counts:?})"
    );
    let texts = sms.got.lock().unwrap().clone();
    let mut sms_ids = std::collections::BTreeSet::new();
    for t in &texts {
        assert!(
            sms_ids.insert(t["id"].to_string()),
            "an SMS arrived twice: {t}"
        );
    }
    let sent_sms = sqlx_count(
        &database_url,
        "SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND channel = 'sms'",
    )
    .await;
    assert!(sent_sms > 0, "the notice to collect went out by SMS too");
    assert_eq!(texts.len() as i64, sent_sms, "one SMS per sent outbox row");
    assert_eq!(counts.dead, 0);

    // --- Periodic jobs: once per due time across the three. ------------------------------
    let started = store
        .timer("reminders")
        .await
        .unwrap()
        .expect("reminders ran")
        .runs;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let timer = store.timer("reminders").await.unwrap().unwrap();
    let ran = timer.runs - started;
    let due = (t0.elapsed().as_millis() / 300) as i64 + 1;
    assert!(
        ran >= 2 && ran <= due,
        "reminders ran {ran} times in {:?} with 3 instances polling every 300 ms (at most {due})",
        t0.elapsed()
    );

    // --- Revocation: every instance's CRL and OCSP, the CRL number never going back. ----
    let ca_dir = dir.join("ca-view");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let root = get(instances[0].port, "/ca/root.crt").1;
    let issuing = get(instances[0].port, "/ca/issuing.crt").1;
    std::fs::write(ca_dir.join("root.der"), root).unwrap();
    std::fs::write(ca_dir.join("issuing.der"), issuing).unwrap();
    let root_pem = openssl(
        &["x509", "-inform", "DER", "-in"],
        Some(&ca_dir.join("root.der")),
    );
    let issuing_pem = openssl(
        &["x509", "-inform", "DER", "-in"],
        Some(&ca_dir.join("issuing.der")),
    );
    std::fs::write(ca_dir.join("issuing.pem"), &issuing_pem).unwrap();
    std::fs::write(ca_dir.join("chain.pem"), format!("{root_pem}{issuing_pem}")).unwrap();
    let serial = strip0(&key.certificate_serial);
    let mut last_number = 0;
    for inst in &instances {
        let (number, revoked) = crl_of(inst.port, &ca_dir);
        assert!(!revoked.contains(&serial));
        assert!(
            number >= last_number,
            "CRL number went back: {number} after {last_number}"
        );
        last_number = number;
        assert_eq!(ocsp_status(inst.port, &ca_dir, &serial), "good");
    }
    let before_revocation = last_number;
    let provider = single[2].login("provider").await.unwrap();
    single[2]
        .expect(
            200,
            "POST",
            &format!("/api/v1/certificates/{}/revoke", key.certificate_serial),
            Some(&provider),
            Some(json!({"reason": "keyCompromise"})),
        )
        .await
        .unwrap();
    for inst in &instances {
        let port = inst.port;
        let ca = ca_dir.clone();
        let serial = serial.clone();
        eventually("the revocation shows in OCSP", 5, || {
            ocsp_status(port, &ca, &serial) == "revoked"
        })
        .await;
        let (number, revoked) = crl_of(port, &ca_dir);
        assert!(
            revoked.contains(&serial),
            "CRL of {port} lists the revoked certificate"
        );
        assert!(number > before_revocation, "a new CRL after the revocation");
        assert!(
            number >= last_number,
            "CRL number went back: {number} after {last_number}"
        );
        last_number = number;
    }
    // Issued and revoked by the command line beside the running instances (same database).
    let csr = dir.join("cli.csr");
    let made = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-keyout"])
        .arg(dir.join("cli.key"))
        .args(["-subj", "/CN=Instance Test Co", "-out"])
        .arg(&csr)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let issued = ekey()
        .args(["ca", "issue", "--csr"])
        .arg(&csr)
        .args([
            "--credit-code",
            ekey_server::demo::DEMO_CREDIT_CODE,
            "--name",
            "Instance Test Co",
            "--config",
        ])
        .arg(cluster.config(1, instances[0].port))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&issued.stderr);
    assert!(issued.status.success(), "ekey ca issue: {stderr}");
    let other_hex = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("serial "))
        .expect("the serial on stderr")
        .trim()
        .to_string();
    let other_serial = strip0(&other_hex);
    for inst in &instances {
        assert_eq!(ocsp_status(inst.port, &ca_dir, &other_serial), "good");
    }
    let cli = ekey()
        .args([
            "ca",
            "revoke",
            "--serial",
            &other_hex,
            "--reason",
            "superseded",
            "--config",
        ])
        .arg(cluster.config(1, instances[0].port))
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "ekey ca revoke: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    for inst in &instances {
        let port = inst.port;
        let ca = ca_dir.clone();
        let serial = other_serial.clone();
        eventually("a CLI revocation shows in OCSP", 5, || {
            ocsp_status(port, &ca, &serial) == "revoked"
        })
        .await;
        let (number, revoked) = crl_of(port, &ca_dir);
        assert!(revoked.contains(&other_serial) && revoked.contains(&serial));
        assert!(
            number >= last_number,
            "CRL number went back: {number} after {last_number}"
        );
        last_number = number;
    }

    // --- A holiday year loaded on one instance reaches the others. ----------------------
    let admin = single[0].login("admin").await.unwrap();
    let year = r#"{"year": 2031, "papers": [], "days": [
        {"name": "元旦", "date": "2031-01-01", "isOffDay": true}]}"#;
    let res = reqwest::Client::new()
        .put(format!("{}/api/v1/admin/holidays", urls[0]))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(year)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    for (i, p) in single.iter().enumerate().skip(1) {
        let token = p.login("admin").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let covered = covered_years(p, &token).await;
            if covered.contains(&2031) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "instance {} never loaded 2031: {covered:?}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // --- The audit chain is intact. -----------------------------------------------------
    let out = ekey()
        .args(["audit", "verify", "--config"])
        .arg(cluster.config(1, instances[0].port))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ekey audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(instances);
}

/// The years an instance's calendar covers, as the administrator's page reads them.
async fn covered_years(p: &Portal, token: &str) -> Vec<i64> {
    let (status, v) = p
        .call("GET", "/api/v1/admin/holidays", Some(token), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{v}");
    v["covered_years"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

async fn sqlx_count(url: &str, sql: &'static str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let n: i64 = sqlx::Row::get(&sqlx::query(sql).fetch_one(&pool).await.unwrap(), 0);
    pool.close().await;
    n
}

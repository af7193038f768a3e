//! Faults at the process level: real `ekey serve` processes killed — at named crash points
//! (`EKEY_FAULT=<point>` aborts the process there, no destructors, as a `kill -9` at exactly
//! that step would) and by `SIGKILL` at random moments under load — PostgreSQL stopped and
//! started under load, a full disk under an upload, and the mail server down. After every
//! restart the tests check what a user would notice:
//!
//! - a step the server answered 2xx for is done, with exactly one history entry, one audit
//!   record and (for a decision) one queued mail; an unanswered step was done completely or
//!   not at all, and retrying it then either does it once (200) or says it is done (409);
//! - every produced key has exactly one certificate, the same on its token; a serial
//!   reserved before a crash is signed by the retry, never left without a certificate;
//! - every queued mail arrives. Delivery is at least once: a crash after the SMTP server
//!   accepted a mail and before its outbox row is marked sent makes the next attempt send
//!   it again — with the same Message-ID, so a mail client shows it once (tested: the
//!   copies are identical). Without a crash in that window each mail arrives exactly once;
//! - CRL numbers never go back, and the CRL lists every revoked serial;
//! - `ekey audit verify` passes.
//!
//! A killed process keeps the outbox messages it had claimed for its lease (60 s); the tests
//! end that lease between the kill and the restart instead of waiting for it.
//!
//! `EKEY_FAULTS_SEED=<n>` repeats the random kill moments of an earlier run (the seed used is
//! printed).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ekey_testkit::scenario::{self, Portal, SIX};
use ekey_testkit::smtp::SmtpSink;
use ekey_testkit::{PgCluster, free_port};
use serde_json::{Value, json};
use sqlx::Row;

const SIGABRT: i32 = 6;
const SIGKILL: i32 = 9;
/// Longest a server may take to come up, or to reach an armed crash point.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Crash points of a review decision, in order.
const DECISION_POINTS: &[&str] = &["server.batch.before_commit", "server.decision.after_commit"];
/// Crash points of key production (issuance inside it), in order.
const PRODUCE_POINTS: &[&str] = &[
    "server.issue.after_reserve",
    "server.issue.after_sign",
    "server.produce.after_certificate",
    "server.produce.after_token",
    "server.produce.after_key",
];
/// Crash points of CRL regeneration, in order.
const CRL_POINTS: &[&str] = &[
    "server.crl.after_number",
    "server.crl.after_sign",
    "server.crl.after_publish",
];

// ------------------------------------------------------------------------------------------
// Processes

/// The `ekey` binary without any `EKEY_*` setting of the caller's environment.
fn ekey() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ekey"));
    clean_env(&mut cmd);
    cmd
}

fn clean_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("EKEY_") {
            cmd.env_remove(&name);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits for `child` at most `timeout`; `None` when it is still running then.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One deployment: a data directory, a database, a configuration, a fixed port; its server
/// is started, killed and started again on the same data.
struct Deployment {
    dir: tempfile::TempDir,
    database_url: String,
    port: u16,
}

impl Deployment {
    /// A deployment on `database_url` (default: SQLite in its directory) mailing through
    /// `smtp`.
    fn new(database_url: Option<String>, smtp: &SmtpSink) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let database_url = database_url
            .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("ekey.db").display()));
        let port = free_port();
        std::fs::write(
            dir.path().join("ekey.toml"),
            format!(
                r#"database_url = "{database_url}"
listen = "127.0.0.1:{port}"
data_dir = "{data}"
public_url = "http://127.0.0.1:{port}"
mail_transport = "smtp"
smtp_url = "{smtp}"
allow_software_tokens_insecure = true
outbox_poll_ms = 100
reminder_poll_ms = 3600000
"#,
                data = data.display(),
                smtp = smtp.url(),
            ),
        )
        .unwrap();
        Deployment {
            dir,
            database_url,
            port,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("ekey.toml")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A fresh client (no pooled connection to an earlier process).
    fn portal(&self) -> Portal {
        Portal::new(&self.url())
    }

    /// Spawns `ekey serve` (behind `wrapper`, e.g. `unshare …`, when given), with
    /// `EKEY_FAULT=fault`; does not wait for it.
    fn spawn(&self, fault: Option<&str>, wrapper: &[String]) -> Server {
        let log_path = self.dir.path().join("server.log");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        writeln!(
            log,
            "===== ekey serve (EKEY_FAULT={}) =====",
            fault.unwrap_or("")
        )
        .unwrap();
        let from = log.metadata().unwrap().len();
        let mut cmd = match wrapper.split_first() {
            None => ekey(),
            Some((program, args)) => {
                let mut c = Command::new(program);
                clean_env(&mut c);
                c.args(args).arg(env!("CARGO_BIN_EXE_ekey"));
                c
            }
        };
        cmd.args(["serve", "--config"])
            .arg(self.config())
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some(point) = fault {
            cmd.env("EKEY_FAULT", point);
        }
        Server {
            child: Some(cmd.spawn().expect("starting ekey serve")),
            port: self.port,
            log: log_path,
            from,
        }
    }

    /// Starts the server (crash point `fault` armed) and waits until `/healthz` answers 200;
    /// retried while the port of a process just killed is not free yet.
    fn start_with(&self, fault: Option<&str>, wrapper: &[String]) -> Server {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut server = self.spawn(fault, wrapper);
            match server.wait_healthy() {
                Ok(()) => return server,
                Err(why) if attempt < 10 && why.contains("listening on") => {
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(why) => panic!("ekey serve did not start: {why}"),
            }
        }
    }

    fn start(&self) -> Server {
        self.start_with(None, &[])
    }

    /// `ekey audit verify` on this deployment: exit 0, chain intact.
    fn audit_verify(&self) {
        let out = ekey()
            .args(["audit", "verify", "--config"])
            .arg(self.config())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("intact"),
            "ekey audit verify ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A running `ekey serve`; killed when dropped.
struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    /// Where this process's part of the log starts.
    from: u64,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    fn log(&self) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let start = (self.from as usize).min(log.len());
        String::from_utf8_lossy(&log[start..]).into_owned()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if http_get(self.port, "/healthz").0 == 200 {
                return Ok(());
            }
            let child = self.child.as_mut().expect("server running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Err(format!("it exited ({status}):\n{}", self.log_tail()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not healthy after {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Whether the process is still running.
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// `kill -9`: SIGKILL, then waits until the process is gone. It must have been running.
    fn kill9(&mut self) {
        let mut child = self.child.take().expect("server running");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the server had already ended ({status}) before the kill:\n{}",
                self.log_tail()
            );
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(SIGKILL), "{status:?}");
    }

    /// SIGTERM (a graceful stop) and waits for the end.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            if wait_bounded(&mut child, Duration::from_secs(15)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Waits for the process to stop by itself at crash point `point`: SIGABRT, and the
    /// point named in its log.
    fn expect_abort_at(&mut self, point: &str) {
        let mut child = self.child.take().expect("server running");
        let Some(status) = wait_bounded(&mut child, START_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{point}: the server did not stop there within {START_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
        };
        assert_eq!(
            status.signal(),
            Some(SIGABRT),
            "{point}: the server ended with {status:?}:\n{}",
            self.log_tail()
        );
        assert!(
            self.log()
                .contains(&format!("EKEY_FAULT: stopping at {point}")),
            "{point}: {}",
            self.log_tail()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET: status and body (0 when nothing answers).
fn http_get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Vec::new());
    };
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if c.write_all(head.as_bytes()).is_err() {
        return (0, Vec::new());
    }
    let mut raw = Vec::new();
    if c.read_to_end(&mut raw).is_err() {
        return (0, Vec::new());
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, Vec::new());
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "{path}: chunked answer"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, raw[split + 4..].to_vec())
}

// ------------------------------------------------------------------------------------------
// The database, as the checks read it

struct Db(sqlx::AnyPool);

impl Db {
    async fn open(url: &str) -> Db {
        sqlx::any::install_default_drivers();
        Db(sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .unwrap())
    }

    async fn rows(&self, sql: &'static str, args: &[&str]) -> Vec<sqlx::any::AnyRow> {
        let mut q = sqlx::query(sql);
        for a in args {
            q = q.bind(a.to_string());
        }
        q.fetch_all(&self.0)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn count(&self, sql: &'static str, args: &[&str]) -> i64 {
        self.rows(sql, args).await[0].get::<i64, _>(0)
    }

    async fn exec(&self, sql: &'static str, args: &[&str]) -> u64 {
        let mut q = sqlx::query(sql);
        for a in args {
            q = q.bind(a.to_string());
        }
        q.execute(&self.0)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    /// Ends the outbox leases of a killed server at once (they would run out after 60 s).
    /// Only while no server runs.
    async fn end_dead_leases(&self) {
        self.exec(
            "UPDATE outbox SET lease_until = 0 WHERE status = 'pending' AND lease_until IS NOT NULL",
            &[],
        )
        .await;
    }

    /// Waits until every queued message left (none pending, none dead).
    async fn wait_outbox_drained(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = self
                .count("SELECT COUNT(*) FROM outbox WHERE status <> 'sent'", &[])
                .await;
            if left == 0 {
                return;
            }
            if Instant::now() >= deadline {
                let rows = self
                    .rows(
                        "SELECT dedup_key, status, attempts, last_error, lease_until, available_at FROM outbox WHERE status <> 'sent'",
                        &[],
                    )
                    .await;
                let rows: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} attempts={} {:?} lease_until={:?} available_at={} (now {})",
                            r.get::<String, _>(0),
                            r.get::<String, _>(1),
                            r.get::<i64, _>(2),
                            r.get::<Option<String>, _>(3),
                            r.get::<Option<i64>, _>(4),
                            r.get::<i64, _>(5),
                            chrono::Utc::now().timestamp_millis()
                        )
                    })
                    .collect();
                panic!("{left} messages still queued after {within:?}: {rows:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How often `action` is recorded for request `id`, checking that its history entry and
    /// its audit record are there together or not at all, and never twice.
    async fn recorded(&self, id: &str, action: &str) -> i64 {
        let history = self
            .count(
                "SELECT COUNT(*) FROM request_history WHERE request_id = $1 AND action = $2",
                &[id, action],
            )
            .await;
        let audit = self
            .count(
                "SELECT COUNT(*) FROM audit_log WHERE object_id = $1 AND action = $2",
                &[id, &format!("request.{action}")],
            )
            .await;
        assert_eq!(
            history, audit,
            "{id} {action}: {history} history entries but {audit} audit records"
        );
        assert!(history <= 1, "{id}: {action} recorded {history} times");
        history
    }

    /// Each decision on request `id` queued exactly one mail, in its transaction.
    async fn mails_match_decisions(&self, id: &str) {
        let decisions = self
            .count(
                "SELECT COUNT(*) FROM request_history WHERE request_id = $1 \
                 AND action IN ('agency_approve', 'provider_approve')",
                &[id],
            )
            .await;
        let mails = self
            .count(
                "SELECT COUNT(*) FROM outbox WHERE dedup_key LIKE $1 AND dedup_key NOT LIKE '%:receipt:%'",
                &[&format!("request:{id}:%")],
            )
            .await;
        assert_eq!(
            decisions, mails,
            "{id}: {decisions} decisions, {mails} mails"
        );
    }

    /// The key made for request `id`, if any: (token serial, certificate serial); at most one.
    async fn key_of(&self, id: &str) -> Option<(String, String)> {
        let rows = self
            .rows(
                "SELECT serial, certificate_serial FROM keys WHERE request_id = $1",
                &[id],
            )
            .await;
        assert!(rows.len() <= 1, "{id}: {} keys", rows.len());
        rows.first().map(|r| (r.get(0), r.get(1)))
    }

    /// The certificates of the production order of request `id`: (serial, DER if signed,
    /// revoked); at most one.
    async fn production_certificate(&self, id: &str) -> Option<(String, Option<Vec<u8>>, bool)> {
        let rows = self
            .rows(
                "SELECT serial, der, revoked_at FROM certificates WHERE idempotency_key = $1",
                &[&format!("production:{id}")],
            )
            .await;
        assert!(rows.len() <= 1, "{id}: {} certificates", rows.len());
        rows.first()
            .map(|r| (r.get(0), r.get(1), r.get::<Option<i64>, _>(2).is_some()))
    }

    async fn unsigned_certificates(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM certificates WHERE der IS NULL", &[])
            .await
    }

    /// Serials of every revoked certificate.
    async fn revoked(&self) -> BTreeSet<String> {
        self.rows(
            "SELECT serial FROM certificates WHERE revoked_at IS NOT NULL",
            &[],
        )
        .await
        .iter()
        .map(|r| strip0(&r.get::<String, _>(0)))
        .collect()
    }
}

/// The produced key of request `id` is complete: one key, one signed certificate of its
/// order, the key bound to it, and the same certificate in the token's signing container.
async fn check_produced(db: &Db, data: &Path, id: &str) -> String {
    let (token_serial, key_cert) = db
        .key_of(id)
        .await
        .unwrap_or_else(|| panic!("{id}: no key"));
    let (serial, der, _) = db
        .production_certificate(id)
        .await
        .unwrap_or_else(|| panic!("{id}: no certificate"));
    let der = der.unwrap_or_else(|| panic!("{id}: certificate {serial} reserved, never signed"));
    assert_eq!(key_cert, serial, "{id}: the key names another certificate");
    let token = data.join("tokens").join(format!("{token_serial}.token"));
    let token = ekey_token::SoftToken::open(&token).unwrap();
    let on_token = ekey_token::Token::status(&token)
        .unwrap()
        .containers
        .into_iter()
        .find(|c| c.name == "sign")
        .and_then(|c| c.certificate_der);
    assert_eq!(
        on_token.as_deref(),
        Some(&der[..]),
        "{id}: the token holds another certificate"
    );
    serial
}

// ------------------------------------------------------------------------------------------
// Mail

/// The hex Message-ID the transport gives the message queued under `dedup_key`.
fn message_id_of(dedup_key: &str) -> String {
    ekey_server::transport::message_id(&ekey_store::OutboxMessage {
        id: 0,
        channel: ekey_store::Channel::Email,
        recipient: String::new(),
        subject: String::new(),
        body: String::new(),
        dedup_key: dedup_key.into(),
        attempts: 0,
        created_at: chrono::Utc::now(),
    })
}

/// Every mail that arrived, by the hex part of its Message-ID (`<hex@domain>`).
fn arrived(smtp: &SmtpSink) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in smtp.messages() {
        let id = m["message_id"]
            .as_str()
            .unwrap_or_default()
            .trim_matches(['<', '>'])
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        out.entry(id).or_default().push(m);
    }
    out
}

/// Waits until the outbox is empty, then checks every queued mail arrived and nothing else
/// did; copies of one Message-ID are identical (a client shows them once). With
/// `exactly_once`, no copies at all. Returns the number of extra copies.
async fn check_mail(db: &Db, smtp: &SmtpSink, exactly_once: bool) -> usize {
    // Up to a lease: a claim whose commit was acknowledged to nobody (the database went away
    // at that instant) leaves its messages to the next claim after the lease (60 s).
    db.wait_outbox_drained(Duration::from_secs(75)).await;
    let queued: BTreeMap<String, String> = db
        .rows("SELECT dedup_key FROM outbox WHERE channel = 'email'", &[])
        .await
        .iter()
        .map(|r| {
            let key: String = r.get(0);
            (message_id_of(&key), key)
        })
        .collect();
    let got = arrived(smtp);
    let mut extra = 0;
    for (id, key) in &queued {
        let copies = got
            .get(id)
            .unwrap_or_else(|| panic!("the mail of {key} (Message-ID {id}) never arrived"));
        for c in &copies[1..] {
            for field in ["to", "subject", "body"] {
                assert_eq!(c[field], copies[0][field], "copies of {key} differ");
            }
        }
        extra += copies.len() - 1;
        if exactly_once {
            assert_eq!(
                copies.len(),
                1,
                "the mail of {key} arrived {} times",
                copies.len()
            );
        }
    }
    for id in got.keys() {
        assert!(queued.contains_key(id), "a mail nobody queued: {id}");
    }
    extra
}

// ------------------------------------------------------------------------------------------
// Accounts and requests

/// Seeds the demo accounts and `extra` more enterprises of Jiangsu (logins
/// `ent<i>@faults.example`, the demo password); returns every enterprise login.
async fn seed(database_url: &str, extra: usize) -> Vec<String> {
    use ekey_store::{NewAccount, NewAudit, NewEnterprise};
    let store = ekey_store::open(database_url).await.unwrap();
    ekey_server::demo::seed(store.as_ref()).await.unwrap();
    let hash = tokio::task::spawn_blocking(|| {
        ekey_server::auth::hash_password(scenario::DEMO_PASSWORD).unwrap()
    })
    .await
    .unwrap();
    let now = chrono::Utc::now();
    let mut logins = vec![ekey_server::demo::DEMO_ENTERPRISE_LOGIN.to_string()];
    for i in 0..extra {
        let enterprise = store
            .upsert_enterprise(NewEnterprise {
                id: format!("faults-enterprise-{i}"),
                name: format!("故障测试进出口有限公司{i}"),
                credit_code: ekey_testkit::ident::credit_code_in("320100", 91_000 + i as u32),
                province: "320000".into(),
                address: "南京市建邺区江东中路 200 号".into(),
                legal_representative: "王强".into(),
                created_at: now,
            })
            .await
            .unwrap();
        let login = format!("ent{i}@faults.example");
        store
            .upsert_account(
                NewAccount {
                    id: format!("faults-account-{i}"),
                    login: login.clone(),
                    email: login.clone(),
                    display_name: "经办人".into(),
                    mobile: Some("13912345678".into()),
                    password_hash: hash.clone(),
                    role: ekey_domain::request::Role::Enterprise,
                    enterprise_id: Some(enterprise.id),
                    province: None,
                    active: true,
                    created_at: now,
                },
                NewAudit {
                    at: now,
                    actor_role: "system".into(),
                    action: "account.seed_faults".into(),
                    object_type: "account".into(),
                    object_id: login.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        logins.push(login);
    }
    logins
}

/// Three requests (首次申领 and two 增办, the most one enterprise may hold) under 验核 for
/// each enterprise login, made concurrently; their ids, enterprise by enterprise.
async fn requests_under_review(p: &Portal, logins: &[String]) -> Vec<String> {
    let mut tasks = Vec::new();
    for login in logins {
        let (p, login) = (p.clone(), login.clone());
        tasks.push(tokio::spawn(async move {
            let token = p.login(&login).await.unwrap();
            let mut ids = Vec::new();
            for kind in ["first", "additional", "additional"] {
                let body = json!({"kind": kind, "licence_types": ["import_licence"],
                    "login_name": {"mode": "allocate"}, "reason": "业务量增加，需要更多钥匙",
                    "authorised_user": scenario::person("liming@example.com")});
                let body = if kind == "first" {
                    let mut b = body;
                    b.as_object_mut().unwrap().remove("reason");
                    b
                } else {
                    body
                };
                ids.push(p.request_under_review(&token, body, SIX).await.unwrap());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids
}

/// The request as its reviewer sees it: `status`, and exactly one history entry for each of
/// `actions`.
async fn user_sees(p: &Portal, token: &str, id: &str, status: &str, actions: &[&str]) {
    let r = p
        .expect(
            200,
            "GET",
            &format!("/api/v1/requests/{id}"),
            Some(token),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r["status"], status, "{id}: {r}");
    for action in actions {
        let n = r["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["action"] == *action)
            .count();
        assert_eq!(n, 1, "{id}: {action} is in the history {n} times: {r}");
    }
}

fn decision_path(id: &str) -> String {
    format!("/api/v1/requests/{id}/decision")
}

fn produce_path(id: &str) -> String {
    format!("/api/v1/requests/{id}/produce")
}

/// A "this was done already" answer to a repeated step.
fn says_done(status: u16, v: &Value) -> bool {
    status == 409
        && matches!(
            v["code"].as_str(),
            Some(
                "ekey.request.wrong_state"
                    | "ekey.request.conflict"
                    | "ekey.certificate.already_revoked"
            )
        )
}

// ------------------------------------------------------------------------------------------
// CRL

/// The CA certificate that signs the CRL, as PEM in `dir`.
fn issuing_pem(port: u16, dir: &Path) -> PathBuf {
    let (status, der) = http_get(port, "/ca/issuing.crt");
    assert_eq!(status, 200);
    let der_path = dir.join("issuing.der");
    std::fs::write(&der_path, der).unwrap();
    let pem = dir.join("issuing.pem");
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&der_path)
        .arg("-out")
        .arg(&pem)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pem
}

/// The server's CRL, its signature checked by `openssl crl` against `issuer`: its number
/// and revoked serials (lower-case hex without leading zeros).
fn crl_of(port: u16, issuer: &Path) -> (u64, BTreeSet<String>) {
    let (status, der) = http_get(port, "/crl/issuing.crl");
    assert_eq!(status, 200, "CRL: {}", String::from_utf8_lossy(&der));
    let path = issuer.with_file_name(format!("crl-{}.der", std::process::id()));
    std::fs::write(&path, der).unwrap();
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&path)
        .arg("-CAfile")
        .arg(issuer)
        .output()
        .expect("openssl crl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("verify OK"),
        "the CRL does not verify: {err}{text}"
    );
    let (number, serials) = ekey_testkit::crl::number_and_serials(&text);
    (number, serials.into_iter().collect())
}

fn strip0(s: &str) -> String {
    s.trim()
        .to_ascii_lowercase()
        .trim_start_matches('0')
        .to_string()
}

// ------------------------------------------------------------------------------------------
// Named crash points

/// A review decision and a key production killed at each of their steps: after the restart
/// the step is done completely or not at all, and the retry finishes it once.
#[test]
fn decisions_and_production_survive_a_crash_at_every_step() {
    let started = Instant::now();
    runtime().block_on(async {
        let mut smtp = SmtpSink::new();
        smtp.start();
        let dep = Deployment::new(None, &smtp);
        let mut server = dep.start();
        let logins = seed(&dep.database_url, 2).await;
        let db = Db::open(&dep.database_url).await;
        let p = dep.portal();
        let agency = p.login("agency-320000").await.unwrap();
        let provider = p.login("provider").await.unwrap();
        let ids = requests_under_review(&p, &logins).await;
        let (decided, produced) = ids.split_at(DECISION_POINTS.len());
        let produced = &produced[..PRODUCE_POINTS.len()];
        for id in produced {
            p.approve(&agency, id).await.unwrap();
            p.approve(&provider, id).await.unwrap();
        }

        for (point, id) in DECISION_POINTS.iter().zip(decided) {
            db.wait_outbox_drained(Duration::from_secs(20)).await;
            server.stop();
            server = dep.start_with(Some(point), &[]);
            let p = dep.portal();
            let answer = p
                .call(
                    "POST",
                    &decision_path(id),
                    Some(&agency),
                    Some(json!({"approve": true})),
                )
                .await;
            assert!(
                answer.is_err(),
                "{point}: answered by a dying server: {answer:?}"
            );
            server.expect_abort_at(point);
            db.end_dead_leases().await;
            server = dep.start();
            let p = dep.portal();

            let committed = *point == "server.decision.after_commit";
            assert_eq!(
                db.recorded(id, "agency_approve").await,
                i64::from(committed),
                "{point}"
            );
            db.mails_match_decisions(id).await;
            let (status, v) = p
                .call(
                    "POST",
                    &decision_path(id),
                    Some(&agency),
                    Some(json!({"approve": true})),
                )
                .await
                .unwrap();
            if committed {
                assert!(
                    says_done(status, &v),
                    "{point}: the retry answered {status} {v}"
                );
            } else {
                assert_eq!(status, 200, "{point}: the retry answered {v}");
            }
            assert_eq!(db.recorded(id, "agency_approve").await, 1, "{point}");
            db.mails_match_decisions(id).await;
            user_sees(&p, &agency, id, "provider_review", &["agency_approve"]).await;
            eprintln!("{point}: ok ({:.1?})", started.elapsed());
        }

        for (point, id) in PRODUCE_POINTS.iter().zip(produced) {
            db.wait_outbox_drained(Duration::from_secs(20)).await;
            server.stop();
            server = dep.start_with(Some(point), &[]);
            let p = dep.portal();
            let answer = p
                .call("POST", &produce_path(id), Some(&provider), None)
                .await;
            assert!(
                answer.is_err(),
                "{point}: answered by a dying server: {answer:?}"
            );
            server.expect_abort_at(point);
            db.end_dead_leases().await;
            server = dep.start();
            let p = dep.portal();

            // What the crash left: the order's one certificate (signed or only reserved),
            // a key only when it was recorded before the crash.
            let (serial, der, _) = db
                .production_certificate(id)
                .await
                .unwrap_or_else(|| panic!("{point}: no reservation"));
            let signed_before = !matches!(
                *point,
                "server.issue.after_reserve" | "server.issue.after_sign"
            );
            assert_eq!(
                der.is_some(),
                signed_before,
                "{point}: certificate {serial}"
            );
            let key_before = *point == "server.produce.after_key";
            assert_eq!(db.key_of(id).await.is_some(), key_before, "{point}");

            let v = p
                .expect(200, "POST", &produce_path(id), Some(&provider), None)
                .await
                .unwrap_or_else(|e| {
                    panic!("{point}: the retry failed: {e}\n{}", server.log_tail())
                });
            assert_eq!(v["status"], "in_production", "{v}");
            let issued = check_produced(&db, &dep.data(), id).await;
            assert_eq!(issued, serial, "{point}: the retry used another serial");
            // Once more: the same key, nothing new.
            p.expect(200, "POST", &produce_path(id), Some(&provider), None)
                .await
                .unwrap();
            assert_eq!(check_produced(&db, &dep.data(), id).await, serial);
            assert_eq!(db.unsigned_certificates().await, 0, "{point}");
            eprintln!("{point}: ok ({:.1?})", started.elapsed());
        }

        let copies = check_mail(&db, &smtp, false).await;
        eprintln!("decision and production faults: every mail arrived ({copies} extra copies)");
        server.stop();
        dep.audit_verify();
    });
    eprintln!(
        "decision and production faults in {:.1?}",
        started.elapsed()
    );
}

/// The outbox worker killed before sending and after the SMTP server accepted, and the CRL
/// regeneration killed after taking a number, after signing and after publishing.
#[test]
fn outbox_delivery_and_crl_regeneration_survive_a_crash_at_every_step() {
    let started = Instant::now();
    runtime().block_on(async {
        let mut smtp = SmtpSink::new();
        smtp.start();
        let dep = Deployment::new(None, &smtp);
        let mut server = dep.start();
        let logins = seed(&dep.database_url, 0).await;
        let db = Db::open(&dep.database_url).await;
        let p = dep.portal();
        let agency = p.login("agency-320000").await.unwrap();
        let provider = p.login("provider").await.unwrap();
        let ids = requests_under_review(&p, &logins).await;

        // --- Outbox: each crash point on its own decision mail. ---------------------------
        for (point, id) in ["server.outbox.before_send", "server.outbox.after_send"]
            .iter()
            .zip(&ids)
        {
            db.wait_outbox_drained(Duration::from_secs(20)).await;
            server.stop();
            server = dep.start_with(Some(point), &[]);
            let p = dep.portal();
            // The decision commits and wakes the worker, which dies on the mail: the answer
            // may or may not get out first.
            let _ = p
                .call(
                    "POST",
                    &decision_path(id),
                    Some(&agency),
                    Some(json!({"approve": true})),
                )
                .await;
            server.expect_abort_at(point);
            assert_eq!(db.recorded(id, "agency_approve").await, 1, "{point}");
            db.mails_match_decisions(id).await;
            let key: String = db
                .rows(
                    "SELECT dedup_key FROM outbox WHERE dedup_key LIKE $1 AND dedup_key NOT LIKE '%:receipt:%'",
                    &[&format!("request:{id}:%")],
                )
                .await[0]
                .get(0);
            let mid = message_id_of(&key);
            let before = arrived(&smtp).get(&mid).map_or(0, Vec::len);
            assert_eq!(
                before,
                usize::from(*point == "server.outbox.after_send"),
                "{point}"
            );
            db.end_dead_leases().await;
            server = dep.start();
            db.wait_outbox_drained(Duration::from_secs(20)).await;
            let copies = arrived(&smtp).remove(&mid).unwrap_or_default();
            let want = if *point == "server.outbox.after_send" {
                2
            } else {
                1
            };
            assert_eq!(copies.len(), want, "{point}: {copies:#?}");
            for c in &copies {
                assert_eq!(c, &copies[0], "{point}: a repeated mail is the same mail");
            }
            user_sees(
                &dep.portal(),
                &agency,
                id,
                "provider_review",
                &["agency_approve"],
            )
            .await;
            eprintln!(
                "{point}: ok, {} copies ({:.1?})",
                copies.len(),
                started.elapsed()
            );
        }
        check_mail(&db, &smtp, false).await;

        // --- CRL: a revocation, then the regeneration killed at each step. ----------------
        let mut serials = Vec::new();
        for n in 0..CRL_POINTS.len() {
            // One key and CSR each: `ekey ca issue` answers the same CSR with the same
            // certificate.
            let csr = dep.dir.path().join(format!("cli{n}.csr"));
            let made = Command::new("openssl")
                .args([
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                ])
                .arg(dep.dir.path().join(format!("cli{n}.key")))
                .args(["-subj", &format!("/CN=Faults Test Co {n}"), "-out"])
                .arg(&csr)
                .output()
                .expect("openssl req");
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
                    &format!("Faults Test Co {n}"),
                    "--config",
                ])
                .arg(dep.config())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&issued.stderr);
            assert!(issued.status.success(), "ekey ca issue: {stderr}");
            serials.push(
                stderr
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("serial "))
                    .expect("the serial on stderr")
                    .trim()
                    .to_string(),
            );
        }
        let issuer = issuing_pem(dep.port, dep.dir.path());
        let (mut last, listed) = crl_of(dep.port, &issuer);
        assert!(listed.is_empty(), "{listed:?}");
        let mut revoked = BTreeSet::new();
        for (point, serial) in CRL_POINTS.iter().zip(&serials) {
            // The CRL served now covers every revocation: the armed server starts without
            // regenerating it, revokes (answered), and dies regenerating at the next fetch.
            crl_of(dep.port, &issuer);
            server.stop();
            server = dep.start_with(Some(point), &[]);
            let p = dep.portal();
            p.expect(
                200,
                "POST",
                &format!("/api/v1/certificates/{serial}/revoke"),
                Some(&provider),
                Some(json!({"reason": "keyCompromise"})),
            )
            .await
            .unwrap();
            revoked.insert(strip0(serial));
            let (status, _) = http_get(dep.port, "/crl/issuing.crl");
            assert_eq!(status, 0, "{point}: a CRL was served by a dying server");
            server.expect_abort_at(point);
            server = dep.start();
            let (number, listed) = crl_of(dep.port, &issuer);
            assert!(number > last, "{point}: CRL number {number} after {last}");
            assert_eq!(
                listed, revoked,
                "{point}: the CRL lists every revoked serial"
            );
            assert_eq!(db.revoked().await, revoked, "{point}");
            last = number;
            eprintln!("{point}: ok, CRL {number} ({:.1?})", started.elapsed());
        }
        server.stop();
        dep.audit_verify();
    });
    eprintln!("outbox and CRL faults in {:.1?}", started.elapsed());
}

// ------------------------------------------------------------------------------------------
// kill -9 at random moments

/// A small seeded generator (SplitMix64), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

/// The steps each request of the load goes through.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    AgencyApprove,
    ProviderApprove,
    Produce,
    Revoke,
}

const STEPS: [Step; 4] = [
    Step::AgencyApprove,
    Step::ProviderApprove,
    Step::Produce,
    Step::Revoke,
];

#[derive(Clone)]
struct Load {
    agency: String,
    provider: String,
    db: Arc<Db>,
    /// Per request: how many of its steps are known done (answered 2xx, or found done).
    done: Arc<Mutex<Vec<usize>>>,
    ids: Arc<Vec<String>>,
}

impl Load {
    /// One call of `step` for request `i`: its status and answer, or `None` when the server
    /// did not answer.
    async fn call(&self, p: &Portal, i: usize, step: Step) -> Option<(u16, Value)> {
        let id = &self.ids[i];
        let approve = Some(json!({"approve": true}));
        let result = match step {
            Step::AgencyApprove => {
                p.call("POST", &decision_path(id), Some(&self.agency), approve)
                    .await
            }
            Step::ProviderApprove => {
                p.call("POST", &decision_path(id), Some(&self.provider), approve)
                    .await
            }
            Step::Produce => {
                p.call("POST", &produce_path(id), Some(&self.provider), None)
                    .await
            }
            Step::Revoke => {
                let (serial, _, _) = self
                    .db
                    .production_certificate(id)
                    .await
                    .expect("produced before revoked");
                p.call(
                    "POST",
                    &format!("/api/v1/certificates/{serial}/revoke"),
                    Some(&self.provider),
                    Some(json!({"reason": "cessationOfOperation"})),
                )
                .await
            }
        };
        result.ok()
    }

    /// Whether `step` of request `i` is recorded as done (checking it is recorded whole and
    /// at most once).
    async fn is_done(&self, i: usize, step: Step) -> bool {
        let id = &self.ids[i];
        let db = &self.db;
        db.mails_match_decisions(id).await;
        match step {
            Step::AgencyApprove => db.recorded(id, "agency_approve").await == 1,
            Step::ProviderApprove => db.recorded(id, "provider_approve").await == 1,
            Step::Produce => db.key_of(id).await.is_some(),
            Step::Revoke => {
                let Some((serial, _, revoked)) = db.production_certificate(id).await else {
                    return false;
                };
                let audited = db
                    .count(
                        "SELECT COUNT(*) FROM audit_log WHERE object_id = $1 AND action = 'ca.revoke'",
                        &[&serial],
                    )
                    .await;
                assert_eq!(
                    audited,
                    i64::from(revoked),
                    "{id}: revocation of {serial} audited {audited} times"
                );
                revoked
            }
        }
    }

    /// Works through the steps of requests `mine` until they are all done, or until the
    /// server stops answering: then returns the step left in doubt.
    async fn work(self, p: Portal, mine: Vec<usize>) -> Option<(usize, Step)> {
        for i in mine {
            loop {
                let k = self.done.lock().unwrap()[i];
                let Some(&step) = STEPS.get(k) else { break };
                match self.call(&p, i, step).await {
                    Some((200, _)) => self.done.lock().unwrap()[i] += 1,
                    Some((status, v)) => {
                        panic!("{} {step:?}: answered {status} {v}", self.ids[i])
                    }
                    None => return Some((i, step)),
                }
            }
        }
        None
    }

    /// After a restart: a step left in doubt was done whole or not at all; its retry does
    /// it (200) or says it is done (409 — 200 for production, which answers with the key).
    async fn resolve(&self, p: &Portal, i: usize, step: Step) {
        let id = &self.ids[i];
        let was_done = self.is_done(i, step).await;
        let (status, v) = self
            .call(p, i, step)
            .await
            .expect("the restarted server answers");
        if was_done && step != Step::Produce {
            assert!(
                says_done(status, &v),
                "{id} {step:?} done before: {status} {v}"
            );
        } else {
            assert_eq!(status, 200, "{id} {step:?} (done before: {was_done}): {v}");
        }
        assert!(self.is_done(i, step).await, "{id} {step:?}");
        self.done.lock().unwrap()[i] += 1;
    }

    /// Every request shows exactly the steps known done, each once; produced keys are whole.
    async fn check(&self, data: &Path) {
        let done = self.done.lock().unwrap().clone();
        for (i, id) in self.ids.iter().enumerate() {
            for (k, step) in STEPS.iter().enumerate() {
                assert_eq!(
                    self.is_done(i, *step).await,
                    k < done[i],
                    "{id}: {step:?} with {} steps known done",
                    done[i]
                );
            }
            if done[i] > 2 {
                check_produced(&self.db, data, id).await;
            }
        }
        assert_eq!(
            self.db.unsigned_certificates().await,
            0,
            "a serial reserved, never signed"
        );
    }
}

/// A load of decisions, productions and revocations (with the CRL fetched all along), and
/// the server killed with SIGKILL at a random moment of it, three times; between kills
/// every request is checked and its unanswered step retried.
#[test]
fn kill_9_at_random_moments_under_load_loses_nothing_and_does_nothing_twice() {
    let started = Instant::now();
    let rng_seed = std::env::var("EKEY_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill -9 under load: EKEY_FAULTS_SEED={rng_seed}");
    let mut rng = Rng(rng_seed);
    runtime().block_on(async {
        let database_url = tokio::task::spawn_blocking(|| {
            PgCluster::shared()
                .expect("PostgreSQL is required (never skipped)")
                .create_database("faults_kill9")
                .expect("a database")
        })
        .await
        .unwrap();
        let mut smtp = SmtpSink::new();
        smtp.start();
        let dep = Deployment::new(Some(database_url), &smtp);
        let mut server = dep.start();
        let logins = seed(&dep.database_url, 5).await;
        let p = dep.portal();
        let ids = requests_under_review(&p, &logins).await;
        let load = Load {
            agency: p.login("agency-320000").await.unwrap(),
            provider: p.login("provider").await.unwrap(),
            db: Arc::new(Db::open(&dep.database_url).await),
            done: Arc::new(Mutex::new(vec![0; ids.len()])),
            ids: Arc::new(ids),
        };
        let issuer = issuing_pem(dep.port, dep.dir.path());
        let mut last_crl = crl_of(dep.port, &issuer).0;
        eprintln!("{} requests ready ({:.1?})", load.ids.len(), started.elapsed());

        const ROUNDS: usize = 5;
        const WORKERS: usize = 3;
        for round in 0..=ROUNDS {
            let p = dep.portal();
            let mut workers = Vec::new();
            for w in 0..WORKERS {
                let mine: Vec<usize> = (w..load.ids.len()).step_by(WORKERS).collect();
                workers.push(tokio::spawn(load.clone().work(p.clone(), mine)));
            }
            // The CRL is fetched all along, so revocations regenerate it under the load.
            let stop_fetching = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let fetcher = {
                let (stop, port) = (stop_fetching.clone(), dep.port);
                tokio::task::spawn_blocking(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        http_get(port, "/crl/issuing.crl");
                        std::thread::sleep(Duration::from_millis(40));
                    }
                })
            };
            let mut in_doubt = Vec::new();
            if round < ROUNDS {
                // A random moment inside the load, whatever the machine's speed: after a
                // random share of the steps left is answered, plus a few milliseconds so
                // that the kill lands anywhere inside the calls in flight.
                let answered = || load.done.lock().unwrap().iter().sum::<usize>();
                let left = (load.ids.len() * STEPS.len() - answered()) as u64;
                let target = answered() + rng.between(2, (left / 3).max(3)) as usize;
                let jitter = Duration::from_millis(rng.between(0, 40));
                let round_start = Instant::now();
                while answered() < target {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                tokio::time::sleep(jitter).await;
                let at = answered();
                server.kill9();
                eprintln!(
                    "round {round}: kill -9 after {:.0?} ({at} steps answered of {}; {:.1?})",
                    round_start.elapsed(),
                    load.ids.len() * STEPS.len(),
                    started.elapsed()
                );
            }
            for w in workers {
                in_doubt.extend(w.await.unwrap());
            }
            stop_fetching.store(true, std::sync::atomic::Ordering::Relaxed);
            fetcher.await.unwrap();
            if round == ROUNDS {
                assert!(in_doubt.is_empty(), "no kill, yet unanswered: {in_doubt:?}");
                break;
            }
            load.db.end_dead_leases().await;
            server = dep.start();
            let p = dep.portal();
            for (i, step) in &in_doubt {
                load.resolve(&p, *i, *step).await;
            }
            load.check(&dep.data()).await;
            let (number, listed) = crl_of(dep.port, &issuer);
            assert!(number >= last_crl, "CRL number {number} after {last_crl}");
            assert_eq!(listed, load.db.revoked().await, "round {round}: the CRL lists every revocation");
            last_crl = number;
            eprintln!("round {round}: {} in doubt, resolved; checked", in_doubt.len());
        }
        load.check(&dep.data()).await;
        assert!(
            load.done.lock().unwrap().iter().all(|&d| d == STEPS.len()),
            "every request went through every step"
        );
        let (number, listed) = crl_of(dep.port, &issuer);
        assert!(number >= last_crl);
        assert_eq!(listed.len(), load.ids.len(), "every produced certificate revoked and listed");
        let copies = check_mail(&load.db, &smtp, false).await;
        eprintln!("kill -9 under load: every mail arrived ({copies} extra copies with the same Message-ID)");
        server.stop();
        dep.audit_verify();
    });
    eprintln!("kill -9 under load in {:.1?}", started.elapsed());
}

// ------------------------------------------------------------------------------------------
// PostgreSQL restarted under load

/// One call of the load and how it went.
#[derive(Debug)]
struct Call {
    what: String,
    at: Instant,
    took: Duration,
    status: Option<u16>,
    answer: Value,
}

/// PostgreSQL stopped (`pg_ctl stop -m fast`) for a while under a load of decisions and
/// reads, then started again: the server answers 503 `ekey.database.unavailable` meanwhile,
/// within a bound, never 500 and never hangs; it recovers by itself; nothing answered 2xx is
/// lost and nothing is done twice.
#[test]
fn postgresql_restarted_under_load_means_503s_then_recovery_without_a_restart() {
    let started = Instant::now();
    runtime().block_on(async {
        // Its own cluster: stopping the shared one would break the other tests.
        let pg = Arc::new(
            tokio::task::spawn_blocking(|| PgCluster::start().expect("PostgreSQL (never skipped)"))
                .await
                .unwrap(),
        );
        let database_url = {
            let pg = pg.clone();
            tokio::task::spawn_blocking(move || pg.create_database("faults_pg_restart").unwrap())
                .await
                .unwrap()
        };
        let mut smtp = SmtpSink::new();
        smtp.start();
        let dep = Deployment::new(Some(database_url), &smtp);
        let mut server = dep.start();
        let pid = server.pid();
        let logins = seed(&dep.database_url, 1).await;
        let p = dep.portal();
        let ids = requests_under_review(&p, &logins).await;
        let agency = p.login("agency-320000").await.unwrap();
        let provider = p.login("provider").await.unwrap();
        eprintln!("{} requests ready ({:.1?})", ids.len(), started.elapsed());

        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let record = |calls: &Arc<Mutex<Vec<Call>>>, what: String, at: Instant, r: anyhow::Result<(u16, Value)>| {
            let (status, answer) = match r {
                Ok((s, v)) => (Some(s), v),
                Err(e) => (None, json!(e.to_string())),
            };
            calls.lock().unwrap().push(Call { what, at, took: at.elapsed(), status, answer });
            status
        };
        // Deciders: 验核 then 复核 of each of their requests; a step that got no 2xx is tried
        // again (a 409 then means the earlier try had committed after all).
        let mut deciders = Vec::new();
        for chunk in ids.chunks(2) {
            let (p, calls, chunk) = (p.clone(), calls.clone(), chunk.to_vec());
            let (agency, provider) = (agency.clone(), provider.clone());
            deciders.push(tokio::spawn(async move {
                for id in chunk {
                    for token in [&agency, &provider] {
                        let mut retried = false;
                        loop {
                            let at = Instant::now();
                            let r = p.call("POST", &decision_path(&id), Some(token), Some(json!({"approve": true}))).await;
                            let status = record(&calls, format!("decision {id}"), at, r);
                            match status {
                                Some(200) => break,
                                Some(409) if retried => break,
                                _ => {
                                    retried = true;
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(900)).await;
                    }
                }
            }));
        }
        // Readers: the work queue and the health check, all along.
        let reader = {
            let (p, calls, stop, agency) = (p.clone(), calls.clone(), stop.clone(), agency.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let at = Instant::now();
                    let r = p.call("GET", "/api/v1/requests", Some(&agency), None).await;
                    record(&calls, "list".into(), at, r);
                    let at = Instant::now();
                    let r = p.call("GET", "/healthz", None, None).await;
                    record(&calls, "healthz".into(), at, r);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };

        tokio::time::sleep(Duration::from_millis(600)).await;
        let down_at = Instant::now();
        {
            let pg = pg.clone();
            tokio::task::spawn_blocking(move || pg.stop().unwrap()).await.unwrap();
        }
        eprintln!("PostgreSQL stopped ({:.1?})", started.elapsed());
        tokio::time::sleep(Duration::from_secs(7)).await;
        {
            let pg = pg.clone();
            tokio::task::spawn_blocking(move || pg.start_again().unwrap()).await.unwrap();
        }
        let up_at = Instant::now();
        eprintln!("PostgreSQL started again ({:.1?})", started.elapsed());
        // The server recovers by itself: healthy again within seconds, same process.
        let recovered = loop {
            if http_get(dep.port, "/healthz").0 == 200 {
                break up_at.elapsed();
            }
            assert!(up_at.elapsed() < Duration::from_secs(15), "not healthy 15 s after PostgreSQL came back:\n{}", server.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for d in deciders {
            tokio::time::timeout(Duration::from_secs(60), d).await.expect("the decisions finish").unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.await.unwrap();
        assert!(server.running() && server.pid() == pid, "the server was never restarted");

        let calls = std::mem::take(&mut *calls.lock().unwrap());
        let mut unavailable = 0;
        for c in &calls {
            assert!(
                c.took < Duration::from_secs(8),
                "{} took {:?} (started {:?} after the stop): {:?}",
                c.what, c.took, c.at.saturating_duration_since(down_at), c
            );
            match c.status {
                Some(200 | 409) => {}
                Some(503) => {
                    unavailable += 1;
                    let code = c.answer["code"].as_str().unwrap_or_default();
                    assert!(
                        code == "ekey.database.unavailable" || code == "ekey.health.database",
                        "{c:?}"
                    );
                    let message = c.answer["message"].as_str().unwrap_or_default();
                    assert!(message.contains("数据库"), "a Chinese message: {c:?}");
                    assert!(
                        c.at + c.took >= down_at && c.at <= up_at,
                        "503 outside the outage: {c:?}"
                    );
                }
                _ => panic!("answered neither 2xx nor 503 nor 409: {c:?}"),
            }
        }
        assert!(unavailable > 0, "no call met the outage");
        eprintln!(
            "{} calls, {unavailable} answered 503 during the outage; healthy {recovered:?} after PostgreSQL came back",
            calls.len()
        );

        let db = Db::open(&dep.database_url).await;
        let p = dep.portal();
        for id in &ids {
            assert_eq!(db.recorded(id, "agency_approve").await, 1, "{id}");
            assert_eq!(db.recorded(id, "provider_approve").await, 1, "{id}");
            db.mails_match_decisions(id).await;
            user_sees(&p, &provider, id, "in_production", &["agency_approve", "provider_approve"]).await;
        }
        check_mail(&db, &smtp, true).await;
        server.stop();
        dep.audit_verify();
        drop(server);
    });
    eprintln!("PostgreSQL restart under load in {:.1?}", started.elapsed());
}

// ------------------------------------------------------------------------------------------
// A full disk

/// The command that runs `ekey serve` with a `size` tmpfs on `dir`, in a mount namespace of
/// its own (the mount ends with the process): as root `unshare -m`, else `unshare -rm` (a user
/// namespace too). Panics, saying why, when neither is possible.
fn private_tmpfs(dir: &Path, size: &str) -> Vec<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let flags = if root { "-m" } else { "-rm" };
    let probe = Command::new("unshare")
        .args([flags, "sh", "-c", "mount -t tmpfs -o size=64k ekey-probe /mnt || mount -t tmpfs -o size=64k ekey-probe /tmp"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "cannot mount a tmpfs for the full-disk test (unshare {flags}: {}); run as root, or allow unprivileged user namespaces",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => {
            panic!("cannot run unshare (Debian package util-linux) for the full-disk test: {e}")
        }
    }
    vec![
        "unshare".into(),
        flags.into(),
        "sh".into(),
        "-c".into(),
        r#"mkdir -p "$1" && mount -t tmpfs -o "size=$2" ekey-faults-files "$1" && shift 2 && exec "$@""#.into(),
        "sh".into(),
        dir.display().to_string(),
        size.into(),
    ]
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Uploads `bytes` as `item` of request `id`: status and answer.
async fn upload(base: &str, token: &str, id: &str, item: &str, bytes: Vec<u8>) -> (u16, Value) {
    let res = reqwest::Client::new()
        .put(format!("{base}/api/v1/requests/{id}/materials/{item}"))
        .bearer_auth(token)
        .header("content-type", "image/png")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The request's checklist as the enterprise sees it: item → (present, size, uploaded at).
async fn checklist(p: &Portal, token: &str, id: &str) -> BTreeMap<String, Value> {
    let r = p
        .expect(
            200,
            "GET",
            &format!("/api/v1/requests/{id}"),
            Some(token),
            None,
        )
        .await
        .unwrap();
    r["materials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["item"].as_str().unwrap().to_string(),
                json!([m["present"], m["size"], m["uploaded_at"]]),
            )
        })
        .collect()
}

/// Uploads onto a full disk (a small tmpfs under the file storage): 507 with a Chinese
/// message, the checklist unchanged, no file left behind; once space is freed the same
/// upload succeeds.
#[test]
fn an_upload_onto_a_full_disk_is_refused_cleanly_and_succeeds_once_space_is_freed() {
    let started = Instant::now();
    runtime().block_on(async {
        let smtp = SmtpSink::new();
        let dep = Deployment::new(None, &smtp);
        let files = dep.data().join("files");
        let wrapper = private_tmpfs(&files, "1m");
        let mut server = dep.start_with(None, &wrapper);
        // The server's view of the storage directory: its own mount namespace.
        let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", server.pid())).unwrap();
        assert!(
            mounts
                .lines()
                .any(|l| l.contains(&format!(" {} ", files.display())) && l.contains("tmpfs")),
            "no tmpfs on {} in the server's mounts:\n{mounts}",
            files.display()
        );
        let view = PathBuf::from(format!("/proc/{}/root{}", server.pid(), files.display()));
        let logins = seed(&dep.database_url, 0).await;
        let db = Db::open(&dep.database_url).await;
        let p = dep.portal();
        let ent = p.login(&logins[0]).await.unwrap();
        let v = p
            .expect(
                201,
                "POST",
                "/api/v1/requests",
                Some(&ent),
                Some(json!({"kind": "first",
                "licence_types": ["import_licence"], "login_name": {"mode": "allocate"},
                "authorised_user": scenario::person("liming@example.com")})),
            )
            .await
            .unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        p.expect(
            200,
            "POST",
            &format!("/api/v1/requests/{id}/submit"),
            Some(&ent),
            Some(json!({})),
        )
        .await
        .unwrap();
        let (last, first_five) = SIX.split_last().unwrap();
        for item in first_five {
            let (status, v) = upload(&dep.url(), &ent, &id, item, scenario::png(3000)).await;
            assert_eq!(status, 201, "{item}: {v}");
        }
        let before = checklist(&p, &ent, &id).await;

        // Fill the disk.
        let filler = view.join("filler");
        {
            let mut f = std::fs::File::create(&filler).unwrap();
            let chunk = vec![0u8; 64 * 1024];
            loop {
                if let Err(e) = f.write_all(&chunk) {
                    assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                    break;
                }
            }
            // Whatever part of a chunk fit: fill the last bytes too.
            while f.write_all(&[0u8; 512]).is_ok() {}
        }
        let stored_before = files_under(&view);

        // A new item and a replacement of an uploaded one: both refused, clearly.
        for item in [*last, first_five[0]] {
            let (status, v) = upload(&dep.url(), &ent, &id, item, scenario::png(200_000)).await;
            assert_eq!(status, 507, "{item}: {v}");
            assert_eq!(v["code"], "ekey.storage.full", "{v}");
            assert!(v["message"].as_str().unwrap().contains("存储空间"), "{v}");
        }
        assert_eq!(
            checklist(&p, &ent, &id).await,
            before,
            "the checklist is unchanged"
        );
        assert_eq!(
            files_under(&view),
            stored_before,
            "no partial file left behind"
        );
        let (status, v) = p
            .call(
                "POST",
                &format!("/api/v1/requests/{id}/confirm-upload"),
                Some(&ent),
                Some(json!({})),
            )
            .await
            .unwrap();
        assert_eq!(status, 422, "the checklist is still incomplete: {v}");
        assert!(
            server.log().contains("no space left"),
            "{}",
            server.log_tail()
        );

        // Space again: the same uploads succeed, the request goes to review.
        std::fs::remove_file(&filler).unwrap();
        for item in [*last, first_five[0]] {
            let (status, v) = upload(&dep.url(), &ent, &id, item, scenario::png(200_000)).await;
            assert_eq!(status, 201, "{item}: {v}");
        }
        p.expect(
            200,
            "POST",
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            Some(json!({})),
        )
        .await
        .unwrap();
        let keys: BTreeSet<String> = db
            .rows(
                "SELECT blob_key FROM materials WHERE request_id = $1",
                &[&id],
            )
            .await
            .iter()
            .map(|r| r.get(0))
            .collect();
        for f in files_under(&view) {
            assert!(
                keys.contains(&f) && !f.contains('#'),
                "a file no record names: {f} ({keys:?})"
            );
        }
        server.stop();
        dep.audit_verify();
    });
    eprintln!("full disk in {:.1?}", started.elapsed());
}

// ------------------------------------------------------------------------------------------
// The mail server down

/// aiosmtpd stopped while decisions queue mails (and the server killed meanwhile): the
/// decisions succeed at once, the failed deliveries wait with a growing delay, and once
/// the mail server is back every mail arrives exactly once.
#[test]
fn with_the_mail_server_down_decisions_succeed_and_every_mail_arrives_once_it_is_back() {
    let started = Instant::now();
    runtime().block_on(async {
        let mut smtp = SmtpSink::new();
        smtp.start();
        let dep = Deployment::new(None, &smtp);
        let mut server = dep.start();
        let logins = seed(&dep.database_url, 0).await;
        let db = Db::open(&dep.database_url).await;
        let p = dep.portal();
        let ids = requests_under_review(&p, &logins).await;
        let agency = p.login("agency-320000").await.unwrap();
        db.wait_outbox_drained(Duration::from_secs(20)).await;

        smtp.stop();
        for id in &ids {
            let at = Instant::now();
            p.approve(&agency, id).await.unwrap();
            assert!(at.elapsed() < Duration::from_secs(3), "a decision waited for the mail server");
        }
        let key_of = |id: &str| format!("request:{id}:%");
        // Each mail fails once, and waits before its next attempt instead of hammering.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut first_failures = BTreeMap::new();
        while first_failures.len() < ids.len() {
            assert!(Instant::now() < deadline, "the deliveries never failed: {first_failures:?}");
            for id in &ids {
                let rows = db
                    .rows("SELECT attempts, available_at, last_error, status FROM outbox WHERE dedup_key LIKE $1 AND dedup_key NOT LIKE '%:receipt:%'", &[&key_of(id)])
                    .await;
                let r = &rows[0];
                let attempts: i64 = r.get(0);
                if attempts >= 1 && r.get::<Option<String>, _>(2).is_some() {
                    assert_eq!(r.get::<String, _>(3), "pending", "{id}");
                    let wait_ms = r.get::<i64, _>(1) - chrono::Utc::now().timestamp_millis();
                    first_failures.entry(id.clone()).or_insert((attempts, wait_ms));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (id, (attempts, wait_ms)) in &first_failures {
            assert_eq!(*attempts, 1, "{id}");
            assert!(*wait_ms >= 3_000, "{id}: the next attempt only {wait_ms} ms later");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let attempts: i64 = db
            .rows("SELECT attempts FROM outbox WHERE status = 'pending'", &[])
            .await
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .sum();
        assert_eq!(attempts, ids.len() as i64, "no retry before the delay");

        // A crash while the mails wait changes nothing.
        server.kill9();
        server = dep.start();
        smtp.start();
        let back = Instant::now();
        let copies = check_mail(&db, &smtp, true).await;
        assert_eq!(copies, 0);
        eprintln!("the mails arrived {:.1?} after the mail server came back", back.elapsed());
        for id in &ids {
            let r = &db
                .rows("SELECT attempts, last_error FROM outbox WHERE dedup_key LIKE $1 AND dedup_key NOT LIKE '%:receipt:%'", &[&key_of(id)])
                .await[0];
            assert_eq!(r.get::<i64, _>(0), 2, "{id}: one failure, one delivery");
            assert!(r.get::<Option<String>, _>(1).unwrap_or_default().contains("SMTP"), "{id}");
            user_sees(&dep.portal(), &agency, id, "provider_review", &["agency_approve"]).await;
        }
        server.stop();
        dep.audit_verify();
    });
    eprintln!("SMTP outage in {:.1?}", started.elapsed());
}

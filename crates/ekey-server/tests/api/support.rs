//! A real eKey instance on 127.0.0.1:0 (SQLite file or a fresh PostgreSQL database), demo
//! accounts for every role, a manual clock, and a client that speaks its JSON API.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ekey_domain::clock::ManualClock;
use ekey_server::Config;
use ekey_server::config::MailTransport;
use ekey_store::{SqlStore, Store};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

/// Which database the instance runs on.
#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub const PASSWORD: &str = "ekey-demo-2026";

/// Thursday 2026-02-12, 10:00 in Shanghai: two working days later crosses Spring Festival.
pub fn default_start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-02-12T10:00:00+08:00")
        .unwrap()
        .with_timezone(&Utc)
}

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub data_dir: std::path::PathBuf,
    raw: SqlStore,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(db: Db) -> TestServer {
        Self::start_at(db, default_start()).await
    }

    pub async fn start_at(db: Db, now: DateTime<Utc>) -> TestServer {
        Self::start_with(db, now, |_| {}).await
    }

    /// Starts with a configuration adjusted by `adjust` (e.g. a PKCS#11 token module).
    pub async fn start_with(
        db: Db,
        now: DateTime<Utc>,
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let db_url = match db {
            Db::Sqlite => format!("sqlite:{}", dir.path().join("ekey.db").display()),
            Db::Postgres => ekey_testkit::PgCluster::shared()
                .expect("PostgreSQL is required for these tests (apt-get install postgresql)")
                .create_database("api")
                .expect("creating a PostgreSQL database"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config {
            database_url: db_url.clone(),
            listen: addr.to_string(),
            data_dir: dir.path().join("data"),
            public_url: Some(format!("http://{addr}")),
            demo: true,
            mail_transport: MailTransport::Dev,
            outbox_poll_ms: 50,
            ..Config::default()
        };
        let mut config = config;
        adjust(&mut config);
        let clock = Arc::new(ManualClock::new(now));
        let state = ekey_server::build(config, clock.clone()).await.unwrap();
        ekey_server::demo::seed(state.store.as_ref()).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            ekey_server::serve(state, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let raw = SqlStore::connect(&db_url).await.unwrap();
        TestServer {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            clock,
            data_dir: dir.path().join("data"),
            raw,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut b = self.client.request(method, self.url(path));
        if let Some(t) = token {
            b = b.bearer_auth(t);
        }
        b
    }

    async fn send(b: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let res = b.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        Self::send(self.req(reqwest::Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        Self::send(self.req(reqwest::Method::POST, path, token).json(&body)).await
    }

    pub async fn post_lang(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
        lang: &str,
    ) -> (StatusCode, Value) {
        Self::send(
            self.req(reqwest::Method::POST, path, token)
                .header("accept-language", lang)
                .json(&body),
        )
        .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        Self::send(self.req(reqwest::Method::PATCH, path, token).json(&body)).await
    }

    pub async fn put_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        Self::send(self.req(reqwest::Method::PUT, path, token).json(&body)).await
    }

    pub async fn put_bytes(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        Self::send(
            self.req(reqwest::Method::PUT, path, token)
                .header("content-type", content_type)
                .body(bytes),
        )
        .await
    }

    /// Logs in and returns the bearer token.
    pub async fn login(&self, login: &str) -> String {
        self.login_with(login, PASSWORD).await
    }

    pub async fn login_with(&self, login: &str, password: &str) -> String {
        let (status, v) = self
            .post(
                "/api/v1/sessions",
                None,
                json!({"login": login, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {login}: {v}");
        v["token"].as_str().unwrap().to_string()
    }

    pub async fn mailbox(&self) -> Vec<Value> {
        let (status, v) = self.get("/api/v1/dev/mailbox", None).await;
        assert_eq!(status, StatusCode::OK);
        v.as_array().unwrap().clone()
    }

    /// Waits (up to 10 s) for a message to `to` whose subject or body contains `needle`.
    /// The unlock code of the mail “电子钥匙密码重置” to `to`, once it has arrived.
    pub async fn unlock_code(&self, to: &str) -> String {
        self.wait_message(to, "解锁码：").await;
        let mail = self
            .mailbox()
            .await
            .into_iter()
            .find(|m| m["to"] == to && m["subject"] == "电子钥匙密码重置")
            .expect("the mail “电子钥匙密码重置”");
        mail["body"]
            .as_str()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("解锁码："))
            .expect("the code in the mail")
            .trim()
            .to_string()
    }

    pub async fn wait_message(&self, to: &str, needle: &str) -> Value {
        for _ in 0..200 {
            if let Some(m) = self.mailbox().await.into_iter().find(|m| {
                m["to"] == to
                    && (m["subject"].as_str().unwrap_or("").contains(needle)
                        || m["body"].as_str().unwrap_or("").contains(needle))
            }) {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "no message to {to} containing {needle:?}; mailbox: {:#?}",
            self.mailbox().await
        );
    }

    /// Registers an enterprise, activates it through the link in its mail, logs in.
    pub async fn register_and_login(
        &self,
        name: &str,
        credit_code: &str,
        province: &str,
        email: &str,
    ) -> String {
        let (status, v) = self
            .post(
                "/api/v1/registrations",
                None,
                registration(name, credit_code, province, email),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        let mail = self.wait_message(email, "激活").await;
        let link = activation_link(&mail);
        let res = self.client.get(&link).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        self.login_with(email, "Secret-2026").await
    }

    /// Every table's row count plus the end of the audit chain: if two snapshots are
    /// equal, the request changed nothing.
    pub async fn snapshot(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for table in [
            "agencies",
            "enterprises",
            "accounts",
            "activation_tokens",
            "sessions",
            "login_names",
            "keys",
            "counters",
            "requests",
            "request_history",
            "materials",
            "audit_log",
            "outbox",
        ] {
            let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) AS n FROM {table}"
            )))
            .fetch_one(self.raw.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
            out.push((table.to_string(), n.to_string()));
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(self.raw.pool())
            .await
            .unwrap();
        out.push((
            "audit_head".into(),
            format!(
                "{}:{}",
                head.try_get::<i64, _>("seq").unwrap(),
                head.try_get::<String, _>("hash").unwrap()
            ),
        ));
        let versions = sqlx::query("SELECT id, status, version FROM requests ORDER BY id")
            .fetch_all(self.raw.pool())
            .await
            .unwrap();
        for r in versions {
            out.push((
                format!("request {}", r.try_get::<String, _>("id").unwrap()),
                format!(
                    "{} v{}",
                    r.try_get::<String, _>("status").unwrap(),
                    r.try_get::<i64, _>("version").unwrap()
                ),
            ));
        }
        out
    }

    pub fn raw(&self) -> &SqlStore {
        &self.raw
    }

    pub async fn verify_audit(&self) -> ekey_store::AuditReport {
        self.raw.verify_audit().await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

pub fn activation_link(mail: &Value) -> String {
    let body = mail["body"].as_str().unwrap();
    body.split_whitespace()
        .find(|w| w.starts_with("http://") && w.contains("/api/v1/activations/"))
        .unwrap_or_else(|| panic!("no activation link in {body}"))
        .to_string()
}

pub fn registration(name: &str, credit_code: &str, province: &str, email: &str) -> Value {
    json!({
        "enterprise_name": name,
        "credit_code": credit_code,
        "province": province,
        "address": "南京市鼓楼区中山北路 1 号",
        "legal_representative": "王建华",
        "contact": {"name": "李明", "id_number": "11010519491231002X", "mobile": "13912345678", "email": email},
        "password": "Secret-2026",
    })
}

/// A first-issue request body with an allocated login name.
pub fn first_request(email: &str) -> Value {
    json!({
        "kind": "first",
        "licence_types": ["import_licence", "export_licence"],
        "login_name": {"mode": "allocate"},
        "authorised_user": person(email),
    })
}

/// Computes a valid unified social credit code from its first 17 characters.
pub fn credit_code(prefix17: &str) -> String {
    let (body, check) = (&prefix17[8..16], prefix17[16..].chars().next());
    assert_eq!(
        check,
        Some(ekey_testkit::ident::org_code_check(body)),
        "{prefix17}: characters 9-17 must be a valid GB 11714 organisation code; \
         use ekey_testkit::ident::credit_code(n) in new tests"
    );
    ekey_testkit::ident::with_uscc_check(prefix17)
}

pub use ekey_testkit::scenario::{SIX, person, png};

/// Uploads a small PNG for every item.
pub async fn upload_all(s: &TestServer, token: &str, id: &str, items: &[&str]) {
    for item in items {
        let (status, v) = s
            .put_bytes(
                &format!("/api/v1/requests/{id}/materials/{item}"),
                Some(token),
                "image/png",
                png(2000),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{item}: {v}");
    }
}

/// Creates and submits (确认提交) a first-issue request; returns its id.
pub async fn submitted_request(s: &TestServer, token: &str) -> String {
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(token),
            first_request("liming@example.com"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/submit"),
            Some(token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    id
}

/// Creates, submits, uploads and confirms a first-issue request; returns its id.
pub async fn request_in_agency_review(s: &TestServer, token: &str) -> String {
    let id = submitted_request(s, token).await;
    upload_all(s, token, &id, SIX).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "agency_review");
    id
}

/// Takes a request in 验核 through both approvals, production, shipment, arrival at the
/// agency and the notice to collect, asserting each step succeeds.
pub async fn approve_to_collection(s: &TestServer, agency: &str, provider: &str, id: &str) {
    let path = format!("/api/v1/requests/{id}");
    for who in [agency, provider] {
        let (status, v) = s
            .post(
                &format!("{path}/decision"),
                Some(who),
                json!({"approve": true}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, v) = s
        .post(&format!("{path}/produce"), Some(provider), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s
        .post(
            "/api/v1/shipments",
            Some(provider),
            json!({"courier": "EMS", "tracking_number": "EM123456789CN", "request_ids": [id]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let shipment = v["id"].as_str().unwrap().to_string();
    for step in ["receive", "notify"] {
        let (status, v) = s
            .post(
                &format!("/api/v1/shipments/{shipment}/{step}"),
                Some(agency),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
}

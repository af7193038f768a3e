//! The whole first-issue path of a request over HTTP, as `active_key()` in
//! `crates/ekey-testkit/src/scenario.rs` drives it (create → submit → six uploads →
//! confirm-upload → 验核 → 复核 → produce → shipment → receive → notify → handover →
//! `completed`), by K concurrent workers against the real `ekey serve` binary: on SQLite
//! (one instance) and on PostgreSQL with one and with three instances (one throwaway
//! cluster started here with `initdb` + `pg_ctl`, fsync on). Sessions are open before the
//! clock starts; logins (argon2) are measured apart in `web.rs`.
//!
//! An enterprise may hold one first-issue request only (`validate_new_request`: `NotFirst`
//! once it has a key or an open one), so every request needs its own enterprise: a pool of
//! enterprises, each with its account and an open session, is written through the `Store`
//! API before the servers start (not timed). Afterwards the database is read back: every
//! request counted is `completed` and holds one certificate, nothing lost, nothing doubled.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::Utc;
use ekey_domain::clock::SystemClock;
use ekey_domain::request::{Role, Status};
use ekey_server::Config;
use ekey_server::config::MailTransport;
use ekey_store::{NewAccount, NewAudit, NewEnterprise, NewSession, RequestFilter, Store};
use serde_json::{Value, json};

use crate::util::{self, Bounded};

/// Concurrent clients of the timed runs.
pub const WORKERS: usize = 32;
/// How long workers start new requests (those under way then are finished and counted).
pub const DURATION: Duration = Duration::from_secs(20);
/// The single-worker run for the per-step breakdown (no contention).
pub const SOLO: Duration = Duration::from_secs(5);
/// Hard limit of one run, the drain included.
const HARD_LIMIT: Duration = Duration::from_secs(120);
/// Enterprises (each with an account and an open session) written before each run.
pub const POOL: usize = 1200;
/// Enterprises for the single-worker run (and the fsync count).
const SOLO_POOL: usize = 200;
/// Requests run with `strace` attached to count fsync calls.
pub const FSYNC_REQUESTS: usize = 5;
/// HTTP calls per request.
pub const CALLS: usize = 16;

/// Where the per-step figures go, in path order; `upload` is six calls.
pub const STEPS: &[(&str, &str)] = &[
    ("create", "`POST /api/v1/requests` (enterprise)"),
    ("submit", "`POST …/submit` (enterprise)"),
    (
        "upload",
        "`PUT …/materials/{item}`, 2 KB PNG (enterprise; six per request)",
    ),
    ("confirm", "`POST …/confirm-upload` (enterprise)"),
    ("agency", "`POST …/decision` 验核 approve (agency)"),
    ("provider", "`POST …/decision` 复核 approve (provider)"),
    (
        "produce",
        "`POST …/produce`: token, key pair, CSR, certificate (provider)",
    ),
    ("shipment", "`POST /api/v1/shipments` (provider)"),
    ("receive", "`POST /api/v1/shipments/{id}/receive` (agency)"),
    (
        "notify",
        "`POST /api/v1/shipments/{id}/notify` (agency; mail + SMS queued)",
    ),
    ("handover", "`POST …/handover` pickup → completed (agency)"),
];

// ---------------------------------------------------------------------------------------
// The eKey server processes
// ---------------------------------------------------------------------------------------

/// The `ekey` binary built next to `ekey-bench` (bench/run exports its path).
pub fn ekey_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("EKEY_BENCH_EKEY")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("ekey")))
        })
        .context("cannot locate the `ekey` binary")?;
    ensure!(
        path.is_file(),
        "no `ekey` binary at {} (bench/run builds it: cargo build --release -p ekey-cli)",
        path.display()
    );
    Ok(path)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The configuration `ekey serve` reads, and the same as a `Config` for in-process setup.
pub fn server_config(db_url: &str, listen: SocketAddr, data_dir: &Path) -> Config {
    Config {
        database_url: db_url.to_string(),
        listen: listen.to_string(),
        data_dir: data_dir.to_path_buf(),
        public_url: Some(format!("http://{listen}")),
        demo: false,
        mail_transport: MailTransport::Log,
        allow_software_tokens_insecure: true,
        ..Config::default()
    }
}

fn toml_string(s: &str) -> anyhow::Result<String> {
    ensure!(
        !s.contains(['"', '\\', '\n']),
        "unexpected characters in {s:?}"
    );
    Ok(format!("\"{s}\""))
}

/// Writes the TOML file of `ekey serve --config`.
pub fn write_config(path: &Path, c: &Config) -> anyhow::Result<()> {
    let text = format!(
        "# ekey serve, written by ekey-bench\n\
         database_url = {}\nlisten = {}\ndata_dir = {}\npublic_url = {}\nmail_transport = \"log\"\n\
         allow_software_tokens_insecure = true\n",
        toml_string(&c.database_url)?,
        toml_string(&c.listen)?,
        toml_string(&c.data_dir.display().to_string())?,
        toml_string(c.public_url.as_deref().unwrap_or_default())?,
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// One `ekey serve --config FILE` process (own process group, stopped when dropped).
pub struct Instance {
    child: Bounded,
    pub base: String,
    pub log: PathBuf,
}

impl Instance {
    /// Starts `ekey serve` and waits until `/healthz` answers 200 (60 s at most).
    pub async fn start(config: &Config, dir: &Path, name: &str) -> anyhow::Result<Instance> {
        let ekey = ekey_binary()?;
        let file = dir.join(format!("{name}.toml"));
        write_config(&file, config)?;
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(&ekey);
        cmd.arg("serve")
            .arg("--config")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(
                dir.join(format!("{name}.stderr.log")),
            )?);
        let child = Bounded::spawn(&mut cmd)?;
        let addr: SocketAddr = config.listen.parse()?;
        let mut instance = Instance {
            child,
            base: format!("http://{addr}"),
            log: dir.join(format!("{name}.stderr.log")),
        };
        let client = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = instance.child.child.try_wait()? {
                let log = std::fs::read_to_string(&instance.log).unwrap_or_default();
                bail!("ekey serve exited at start ({status}): {log}");
            }
            match client
                .get(format!("{}/healthz", instance.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                Ok(r) if r.status().as_u16() == 200 => break,
                _ if Instant::now() < until => tokio::time::sleep(Duration::from_millis(50)).await,
                other => {
                    instance.child.kill();
                    let log = std::fs::read_to_string(&instance.log).unwrap_or_default();
                    bail!("ekey serve did not answer /healthz within 60 s ({other:?}): {log}");
                }
            }
        }
        Ok(instance)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// CPU seconds used so far by the process.
    pub fn cpu_seconds(&self, ticks: f64) -> f64 {
        util::group_cpu_seconds(self.child.pid(), ticks)
    }

    /// Lines the server logged at ERROR level or a panic (colours removed), at most `max`.
    pub fn errors(&self, max: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(strip_ansi)
            .filter(|l| l.contains(" ERROR ") || l.contains("panicked"))
            .take(max)
            .collect()
    }

    /// SIGTERM (graceful shutdown), SIGKILL after 3 s.
    pub fn stop(mut self) {
        self.child.kill();
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// A throwaway PostgreSQL cluster (fsync on: the server's defaults but the address)
// ---------------------------------------------------------------------------------------

pub struct PgCluster {
    dir: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
    started: bool,
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl PgCluster {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(&self.dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        cmd
    }

    /// `initdb` into a new directory under /tmp and `pg_ctl start` on a free port of
    /// 127.0.0.1. PostgreSQL's defaults otherwise (fsync, synchronous_commit and
    /// full_page_writes on; shared_buffers 128 MB).
    pub fn start() -> anyhow::Result<PgCluster> {
        let bin = std::env::var_os("EKEY_BENCH_PG_BIN")
            .map(PathBuf::from)
            .or_else(|| {
                let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .flatten()
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("initdb").is_file())
                    .collect();
                dirs.sort();
                dirs.pop()
            })
            .context("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: apt-get install postgresql")?;
        let dir = tempfile::Builder::new()
            .prefix("ekey-bench-pg-")
            .tempdir_in("/tmp")?
            .keep();
        let as_postgres = running_as_root();
        // Root inside a user namespace (bench/run without root) cannot become `postgres`.
        let full_root = std::fs::read_to_string("/proc/self/uid_map")
            .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
            .unwrap_or(false);
        ensure!(
            !as_postgres || full_root,
            "PostgreSQL cannot run here: initdb refuses root, and inside this user namespace \
             (bench/run without root) there is no `postgres` user to switch to; run bench/run as root"
        );
        let mut cluster = PgCluster {
            data: dir.join("data"),
            dir,
            bin,
            port: 0,
            as_postgres,
            started: false,
        };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cluster.dir, std::fs::Permissions::from_mode(0o755))?;
        if as_postgres {
            util::run(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres:postgres")
                    .arg(&cluster.dir),
                Duration::from_secs(10),
            )
            .context("initdb refuses root: the cluster runs as user postgres")?;
        }
        let mut initdb = cluster.command("initdb");
        initdb.arg("-D").arg(&cluster.data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        util::run(&mut initdb, Duration::from_secs(120)).context("initdb")?;
        cluster.port = free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c max_connections=200",
            cluster.port,
            cluster.dir.display()
        );
        cluster.started = true;
        let mut start = cluster.command("pg_ctl");
        start
            .arg("start")
            .arg("-D")
            .arg(&cluster.data)
            .arg("-l")
            .arg(cluster.dir.join("server.log"))
            .args(["-w", "-t", "60", "-s", "-o", &options]);
        if let Err(e) = util::run(&mut start, Duration::from_secs(70)) {
            let log = std::fs::read_to_string(cluster.dir.join("server.log")).unwrap_or_default();
            return Err(e.context(format!("pg_ctl start: {log}")));
        }
        Ok(cluster)
    }

    /// A psql invocation template for database `db` (cloneable, for the sampler).
    pub fn psql(&self, db: &str) -> Psql {
        Psql {
            bin: self.bin.join("psql"),
            as_postgres: self.as_postgres,
            dir: self.dir.clone(),
            url: self.url(db),
        }
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let mut psql = self.command("psql");
        psql.args(["-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url("postgres"))
            .arg("-c")
            .arg(format!("CREATE DATABASE {name}"));
        util::run(&mut psql, Duration::from_secs(30))?;
        Ok(self.url(name))
    }

    /// WAL syncs so far (`pg_stat_wal.wal_sync`, PostgreSQL 14+).
    pub fn wal_syncs(&self) -> Option<i64> {
        let mut psql = self.command("psql");
        psql.args(["-X", "-q", "-A", "-t", "-w", "-d"])
            .arg(self.url("postgres"))
            .arg("-c")
            .arg("SELECT wal_sync FROM pg_stat_wal");
        util::run(&mut psql, Duration::from_secs(30))
            .ok()
            .and_then(|o| o.trim().parse().ok())
    }

    /// CPU seconds used so far by every `postgres` process (the suite runs in its own PID
    /// namespace, so these are this cluster's).
    pub fn cpu_seconds(ticks: f64) -> f64 {
        let mut total = 0u64;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                    continue;
                };
                let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                    continue;
                };
                if &stat[open + 1..close] != "postgres" {
                    continue;
                }
                let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
                let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                total += t(11) + t(12);
            }
        }
        total as f64 / ticks
    }
}

#[derive(Clone)]
pub struct Psql {
    bin: PathBuf,
    as_postgres: bool,
    dir: PathBuf,
    url: String,
}

impl Psql {
    /// `psql -A -t -c SQL` (unaligned, tuples only).
    pub fn command(&self, sql: &str) -> Command {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&self.bin);
            c
        } else {
            Command::new(&self.bin)
        };
        cmd.current_dir(&self.dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .args(["-X", "-q", "-A", "-t", "-w", "-d"])
            .arg(&self.url)
            .arg("-c")
            .arg(sql);
        cmd
    }
}

/// What the PostgreSQL backends of the eKey database were doing, sampled during a run.
#[derive(Debug, Default)]
pub struct PgWaits {
    pub samples: usize,
    /// (state and wait, backends seen over all samples), most first.
    pub states: Vec<(String, usize)>,
    /// (statement, backends seen waiting on a lock with it), most first.
    pub lock_waits: Vec<(String, usize)>,
    /// (last statement, backends seen idle in a transaction after it), most first.
    pub idle_in_tx: Vec<(String, usize)>,
}

const PG_SAMPLE_SQL: &str = "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'CPU'), \
     left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM pg_stat_activity \
     WHERE datname = current_database() AND pid <> pg_backend_pid() \
     AND state IN ('active', 'idle in transaction')";

/// Samples `pg_stat_activity` every 500 ms until `stop` is set.
async fn sample_pg(psql: Psql, stop: Arc<std::sync::atomic::AtomicBool>) -> PgWaits {
    let mut states: HashMap<String, usize> = HashMap::new();
    let mut locks: HashMap<String, usize> = HashMap::new();
    let mut idle: HashMap<String, usize> = HashMap::new();
    let mut samples = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut cmd = tokio::process::Command::from(psql.command(PG_SAMPLE_SQL));
        cmd.kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(5), cmd.output()).await;
        if let Ok(Ok(out)) = out
            && out.status.success()
        {
            samples += 1;
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let mut f = line.splitn(3, '|');
                let (Some(state), Some(wait), Some(query)) = (f.next(), f.next(), f.next()) else {
                    continue;
                };
                *states.entry(format!("{state}, {wait}")).or_default() += 1;
                if wait.starts_with("Lock:") {
                    *locks.entry(query.to_string()).or_default() += 1;
                }
                if state == "idle in transaction" {
                    *idle.entry(query.to_string()).or_default() += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let sorted = |m: HashMap<String, usize>| {
        let mut v: Vec<(String, usize)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    };
    PgWaits {
        samples,
        states: sorted(states),
        lock_waits: sorted(locks),
        idle_in_tx: sorted(idle),
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.started {
            let mut stop = self.command("pg_ctl");
            stop.arg("stop")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "-t", "20", "-s"]);
            let _ = util::run(&mut stop, Duration::from_secs(30));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------
// Setup: demo accounts and the pool of enterprises with open sessions
// ---------------------------------------------------------------------------------------

/// A valid unified social credit code for enterprise `i` (both check characters, GB 11714
/// and GB 32100).
pub fn credit_code(i: usize) -> anyhow::Result<String> {
    let org = format!("MB{:06}", i % 1_000_000);
    let org = format!("{org}{}", ekey_testkit::ident::org_code_check(&org));
    let code = ekey_testkit::ident::with_uscc_check(&format!("91320106{org}"));
    ekey_domain::ident::CreditCode::parse(&code).context("generated credit code invalid")?;
    Ok(code)
}

/// Opens a session for `account_id` as the login would (random token, stored hashed);
/// returns the bearer token.
async fn open_session(store: &dyn Store, account_id: &str, role: Role) -> anyhow::Result<String> {
    let token = ekey_server::auth::new_token();
    let now = Utc::now();
    store
        .create_session(
            NewSession {
                token_hash: ekey_server::auth::token_hash(&token),
                account_id: account_id.to_string(),
                created_at: now,
                expires_at: now + chrono::Duration::hours(12),
                key_id: None,
            },
            NewAudit {
                at: now,
                actor_id: account_id.to_string(),
                actor_role: role.as_str().into(),
                address: "127.0.0.1".into(),
                action: "session.create".into(),
                object_type: "account".into(),
                object_id: account_id.to_string(),
                ..NewAudit::default()
            },
        )
        .await?;
    Ok(token)
}

/// What setup left for the run.
pub struct Prepared {
    /// Bearer tokens of the pool's enterprise accounts (Jiangsu).
    pub enterprise_tokens: Vec<String>,
    /// Seconds it took to write the pool.
    pub pool_s: f64,
}

/// Creates the instance's database, CA and secrets in process (`ekey_server::build`, as the
/// first start of a server would), the demo accounts, and `pool` enterprises with an
/// active account and an open session each.
pub async fn prepare(config: &Config, pool: usize) -> anyhow::Result<Prepared> {
    let state = ekey_server::build(config.clone(), Arc::new(SystemClock)).await?;
    ekey_server::demo::seed(state.store.as_ref()).await?;
    let demo = state
        .store
        .account_by_login(ekey_server::demo::DEMO_ENTERPRISE_LOGIN)
        .await?
        .context("demo account")?;
    let hash = demo.password_hash.clone();
    let started = Instant::now();
    let store = state.store.clone();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let next = next.clone();
        let hash = hash.clone();
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= pool {
                    break;
                }
                let now = Utc::now();
                let enterprise = store
                    .upsert_enterprise(NewEnterprise {
                        id: uuid_like(i, "e"),
                        name: format!("南京基准测试进出口有限公司{i:05}"),
                        credit_code: credit_code(i)?,
                        province: "320000".into(),
                        address: "南京市建邺区江东中路 100 号".into(),
                        legal_representative: "张建国".into(),
                        created_at: now,
                    })
                    .await?;
                let login = format!("bench-{i:05}@ekey.example");
                let account = store
                    .create_account(
                        NewAccount {
                            id: uuid_like(i, "a"),
                            login: login.clone(),
                            email: login.clone(),
                            display_name: "李明（经办人）".into(),
                            mobile: Some("13912345678".into()),
                            password_hash: hash.clone(),
                            role: Role::Enterprise,
                            enterprise_id: Some(enterprise.id.clone()),
                            province: None,
                            active: true,
                            created_at: now,
                        },
                        NewAudit {
                            at: now,
                            actor_role: "system".into(),
                            action: "account.seed_bench".into(),
                            object_type: "account".into(),
                            object_id: login,
                            ..NewAudit::default()
                        },
                    )
                    .await?;
                tokens.push(open_session(store.as_ref(), &account.id, Role::Enterprise).await?);
            }
            anyhow::Ok(tokens)
        }));
    }
    let mut enterprise_tokens = Vec::with_capacity(pool);
    for t in tasks {
        enterprise_tokens.extend(t.await??);
    }
    let pool_s = started.elapsed().as_secs_f64();
    drop(state);
    Ok(Prepared {
        enterprise_tokens,
        pool_s,
    })
}

/// A deterministic UUID-shaped id.
fn uuid_like(i: usize, kind: &str) -> String {
    let tag = if kind == "e" { "e000" } else { "a000" };
    format!("00000000-0000-7000-{tag}-{:012x}", i)
}

// ---------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------

/// A JSON client of one or more instances, called in turn (round-robin per call).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    bases: Arc<Vec<String>>,
}

pub enum Body {
    Json(Value),
    Png(Arc<Vec<u8>>),
}

impl Client {
    pub fn new(bases: Vec<String>) -> anyhow::Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(256)
                .build()?,
            bases: Arc::new(bases),
        })
    }

    /// One call to the next instance; must answer `want`. Its JSON.
    pub async fn call(
        &self,
        turn: &mut usize,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Body,
        want: u16,
    ) -> anyhow::Result<Value> {
        let base = &self.bases[*turn % self.bases.len()];
        *turn += 1;
        let mut b = self
            .http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(token);
        b = match body {
            Body::Json(v) => b.json(&v),
            Body::Png(bytes) => b
                .header("content-type", "image/png")
                .body(bytes.as_ref().clone()),
        };
        let res = b.send().await.with_context(|| format!("{method} {path}"))?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        ensure!(
            status == want,
            "{method} {path}: HTTP {status} (wanted {want}): {}",
            text.chars().take(300).collect::<String>()
        );
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The staff sessions, logged in once over HTTP before the clock starts.
pub struct Staff {
    pub agency: String,
    pub provider: String,
}

pub async fn login(client: &Client, login: &str) -> anyhow::Result<String> {
    let v = client
        .http
        .post(format!("{}/api/v1/sessions", client.bases[0]))
        .json(&json!({"login": login, "password": ekey_server::demo::DEMO_PASSWORD}))
        .send()
        .await?
        .error_for_status()?
        .json::<Value>()
        .await?;
    Ok(v["token"].as_str().context("token")?.to_string())
}

/// Reads the server's CPU seconds between calls: only for the single-worker run, where each
/// call's share can be told apart.
pub type Sampler = Arc<dyn Fn() -> f64 + Send + Sync>;

/// One call of a request: its step, latency, and the server CPU used during it.
struct StepSample {
    step: usize,
    us: u32,
    cpu_s: f64,
}

/// Per-step figures of one request in `STEPS` order (uploads: six entries).
struct OneRequest {
    id: String,
    total_us: u32,
    steps: Vec<StepSample>,
}

struct Laps {
    sampler: Option<Sampler>,
    t: Instant,
    last: f64,
    steps: Vec<StepSample>,
}

impl Laps {
    fn new(sampler: Option<Sampler>) -> Laps {
        let last = sampler.as_ref().map_or(0.0, |s| s());
        Laps {
            sampler,
            t: Instant::now(),
            last,
            steps: Vec::with_capacity(CALLS),
        }
    }

    fn lap(&mut self, step: usize) {
        let us = us(self.t.elapsed());
        let now = self.sampler.as_ref().map_or(0.0, |s| s());
        self.steps.push(StepSample {
            step,
            us,
            cpu_s: now - self.last,
        });
        self.last = now;
        self.t = Instant::now();
    }
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

async fn one_request(
    c: &Client,
    turn: &mut usize,
    ent: &str,
    staff: &Staff,
    png: &Arc<Vec<u8>>,
    sampler: Option<Sampler>,
    created: &mut Option<String>,
) -> anyhow::Result<OneRequest> {
    use reqwest::Method;
    let started = Instant::now();
    let mut laps = Laps::new(sampler);
    let v = c
        .call(
            turn,
            Method::POST,
            "/api/v1/requests",
            ent,
            Body::Json(json!({"kind": "first", "licence_types": ["import_licence"],
                "login_name": {"mode": "allocate"},
                "authorised_user": ekey_testkit::scenario::person("liming@example.com")})),
            201,
        )
        .await?;
    laps.lap(0);
    let id = v["id"].as_str().context("request id")?.to_string();
    *created = Some(id.clone());
    let req = format!("/api/v1/requests/{id}");
    c.call(
        turn,
        Method::POST,
        &format!("{req}/submit"),
        ent,
        Body::Json(json!({})),
        200,
    )
    .await?;
    laps.lap(1);
    for item in ekey_testkit::scenario::SIX {
        c.call(
            turn,
            Method::PUT,
            &format!("{req}/materials/{item}"),
            ent,
            Body::Png(png.clone()),
            201,
        )
        .await?;
        laps.lap(2);
    }
    c.call(
        turn,
        Method::POST,
        &format!("{req}/confirm-upload"),
        ent,
        Body::Json(json!({})),
        200,
    )
    .await?;
    laps.lap(3);
    let approve = || Body::Json(json!({"approve": true}));
    c.call(
        turn,
        Method::POST,
        &format!("{req}/decision"),
        &staff.agency,
        approve(),
        200,
    )
    .await?;
    laps.lap(4);
    c.call(
        turn,
        Method::POST,
        &format!("{req}/decision"),
        &staff.provider,
        approve(),
        200,
    )
    .await?;
    laps.lap(5);
    c.call(
        turn,
        Method::POST,
        &format!("{req}/produce"),
        &staff.provider,
        Body::Json(json!({})),
        200,
    )
    .await?;
    laps.lap(6);
    let shipment = c
        .call(
            turn,
            Method::POST,
            "/api/v1/shipments",
            &staff.provider,
            Body::Json(
                json!({"courier": "EMS", "tracking_number": "EM123456789CN", "request_ids": [id]}),
            ),
            201,
        )
        .await?;
    laps.lap(7);
    let shipment = shipment["id"].as_str().context("shipment id")?.to_string();
    for (step, what) in [(8, "receive"), (9, "notify")] {
        c.call(
            turn,
            Method::POST,
            &format!("/api/v1/shipments/{shipment}/{what}"),
            &staff.agency,
            Body::Json(json!({})),
            200,
        )
        .await?;
        laps.lap(step);
    }
    let done = c
        .call(
            turn,
            Method::POST,
            &format!("{req}/handover"),
            &staff.agency,
            Body::Json(json!({"method": "pickup", "collector_name": "李明",
                "collector_id_number": "11010519491231002X", "introduction_letter": true})),
            200,
        )
        .await?;
    laps.lap(10);
    ensure!(
        done["status"] == "completed",
        "after the handover the request is {}",
        done["status"]
    );
    Ok(OneRequest {
        id,
        total_us: us(started.elapsed()),
        steps: laps.steps,
    })
}

// ---------------------------------------------------------------------------------------
// A run
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
pub struct StepStats {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Share of the summed request time spent in this step.
    pub share: f64,
    pub mean_ms: f64,
    /// Mean server CPU per call, ms (single-worker run only).
    pub cpu_ms: Option<f64>,
}

/// What the database says after a run.
#[derive(Debug, Default)]
pub struct Verification {
    pub completed_in_db: usize,
    pub other_in_db: usize,
    pub counted_not_completed: usize,
    pub certificates: i64,
    pub keys_with_certificate: usize,
    pub distinct_serials: usize,
    /// Failed requests (not counted) whose key and certificate were made.
    pub failed_with_certificate: usize,
    pub ok: bool,
}

#[derive(Debug, Default)]
pub struct RunResult {
    pub label: String,
    pub backend: &'static str,
    pub instances: usize,
    pub workers: usize,
    pub completed: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// Requests created but not completed because a call failed.
    pub failed_ids: Vec<String>,
    /// The first error the server logged, if any.
    pub server_error: Option<String>,
    pub elapsed: Duration,
    pub pool_s: f64,
    pub pool_exhausted: bool,
    /// Whole-request latencies, µs, sorted.
    pub request_us: Vec<u32>,
    pub steps: Vec<StepStats>,
    pub server_cpu_s: f64,
    pub db_cpu_s: Option<f64>,
    /// PostgreSQL WAL syncs (`pg_stat_wal.wal_sync`) during the run, the servers' start
    /// and stop included.
    pub wal_syncs: Option<i64>,
    pub pg_waits: Option<PgWaits>,
    pub client_cpu_s: f64,
    pub verification: Verification,
}

impl RunResult {
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn calls_per_second(&self) -> f64 {
        (self.completed * CALLS) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn p_ms(&self, p: f64) -> f64 {
        f64::from(util::percentile(&self.request_us, p)) / 1000.0
    }
    pub fn wal_syncs_per_request(&self) -> Option<f64> {
        self.wal_syncs
            .filter(|_| self.completed > 0)
            .map(|f| f as f64 / self.completed as f64)
    }
    /// Server CPU (eKey processes + PostgreSQL) per completed request, ms.
    pub fn cpu_ms_per_request(&self) -> f64 {
        if self.completed == 0 {
            return 0.0;
        }
        (self.server_cpu_s + self.db_cpu_s.unwrap_or(0.0)) * 1000.0 / self.completed as f64
    }
}

/// K workers take enterprises from the pool and run whole requests until `duration` has
/// passed (the requests under way are finished) or the pool is empty.
pub async fn drive(
    client: &Client,
    staff: Arc<Staff>,
    pool: Vec<String>,
    workers: usize,
    duration: Duration,
    sampler: Option<Sampler>,
) -> (RunResult, Vec<String>) {
    let pool = Arc::new(Mutex::new(pool));
    let png = Arc::new(ekey_testkit::scenario::png(2000));
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::new();
    for w in 0..workers {
        let client = client.clone();
        let staff = staff.clone();
        let pool = pool.clone();
        let png = png.clone();
        let sampler = sampler.clone();
        handles.push(tokio::spawn(async move {
            let mut done: Vec<OneRequest> = Vec::new();
            let mut failed = 0usize;
            let mut failed_ids = Vec::new();
            let mut first_error = None;
            let mut exhausted = false;
            let mut turn = w;
            while Instant::now() < deadline {
                let next = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(ent) = next else {
                    exhausted = true;
                    break;
                };
                let mut created = None;
                let one = one_request(
                    &client,
                    &mut turn,
                    &ent,
                    &staff,
                    &png,
                    sampler.clone(),
                    &mut created,
                )
                .await;
                match one {
                    Ok(r) => done.push(r),
                    Err(e) => {
                        failed += 1;
                        failed_ids.extend(created);
                        first_error.get_or_insert(format!("{e:#}"));
                        if failed > 5 {
                            break;
                        }
                    }
                }
            }
            (done, failed, failed_ids, first_error, exhausted)
        }));
    }
    let mut result = RunResult {
        workers,
        ..RunResult::default()
    };
    let mut per_step: Vec<Vec<u32>> = vec![Vec::new(); STEPS.len()];
    let mut sampled: Vec<f64> = vec![0.0; STEPS.len()];
    let mut ids = Vec::new();
    let hard = tokio::time::sleep(HARD_LIMIT);
    tokio::pin!(hard);
    let aborts: Vec<tokio::task::AbortHandle> = handles.iter().map(|h| h.abort_handle()).collect();
    for h in handles {
        let joined = tokio::select! {
            j = h => j,
            () = &mut hard => {
                result.first_error.get_or_insert("run stopped at the hard limit".into());
                for a in &aborts {
                    a.abort();
                }
                break;
            }
        };
        let Ok((done, failed, failed_ids, first_error, exhausted)) = joined else {
            result.failed += 1;
            continue;
        };
        result.failed += failed;
        result.failed_ids.extend(failed_ids);
        result.pool_exhausted |= exhausted;
        if result.first_error.is_none() {
            result.first_error = first_error;
        }
        for r in done {
            result.request_us.push(r.total_us);
            for x in r.steps {
                per_step[x.step].push(x.us);
                sampled[x.step] += x.cpu_s;
            }
            ids.push(r.id);
        }
    }
    result.elapsed = started.elapsed();
    result.completed = ids.len();
    result.request_us.sort_unstable();
    let total: f64 = per_step.iter().flatten().map(|&t| f64::from(t)).sum();
    let sampling = sampler.is_some();
    result.steps = per_step
        .iter_mut()
        .zip(&sampled)
        .map(|(v, &cpu_s)| {
            v.sort_unstable();
            let n = v.len().max(1) as f64;
            let sum: f64 = v.iter().map(|&t| f64::from(t)).sum();
            StepStats {
                p50_ms: f64::from(util::percentile(v, 50.0)) / 1000.0,
                p99_ms: f64::from(util::percentile(v, 99.0)) / 1000.0,
                share: if total > 0.0 { sum / total } else { 0.0 },
                mean_ms: sum / n / 1000.0,
                cpu_ms: sampling.then(|| cpu_s * 1000.0 / n),
            }
        })
        .collect();
    (result, ids)
}

/// Reads the database back: the counted requests are `completed`, each with its key and
/// one certificate of its own; as many completed requests and certificates as counted
/// (beyond `earlier`, the completed requests of an earlier run on the same database).
pub async fn verify(
    db_url: &str,
    counted: &[String],
    failed: &[String],
    earlier: usize,
) -> anyhow::Result<Verification> {
    let store = ekey_store::open(db_url).await?;
    let mut v = Verification::default();
    let mut offset = 0;
    loop {
        let page = store
            .list_requests(&RequestFilter {
                limit: 500,
                offset,
                ..RequestFilter::default()
            })
            .await?;
        for r in &page {
            if r.status == Status::Completed {
                v.completed_in_db += 1;
            } else {
                v.other_in_db += 1;
            }
        }
        if page.len() < 500 {
            break;
        }
        offset += 500;
    }
    let mut serials = HashMap::new();
    for id in counted {
        let r = store
            .request(id)
            .await?
            .context("a counted request is missing")?;
        if r.status != Status::Completed {
            v.counted_not_completed += 1;
        }
        if let Some(k) = store.key_by_request(id).await?
            && let Some(serial) = k.certificate_serial
        {
            v.keys_with_certificate += 1;
            *serials.entry(serial).or_insert(0usize) += 1;
        }
    }
    v.distinct_serials = serials.len();
    // A request that failed after its key was made has its certificate too.
    for id in failed {
        if let Some(k) = store.key_by_request(id).await?
            && k.certificate_serial.is_some()
        {
            v.failed_with_certificate += 1;
        }
    }
    v.certificates = store
        .certificate_counts(chrono::DateTime::<Utc>::UNIX_EPOCH)
        .await?
        .0
        - earlier as i64;
    v.completed_in_db = v.completed_in_db.saturating_sub(earlier);
    v.ok = v.counted_not_completed == 0
        && v.completed_in_db == counted.len()
        && v.keys_with_certificate == counted.len()
        && v.distinct_serials == counted.len()
        && v.certificates == (counted.len() + v.failed_with_certificate) as i64;
    Ok(v)
}

/// What one timed run is about.
struct Target<'a> {
    label: &'a str,
    backend: &'static str,
    instances: &'a [Instance],
    db_url: &'a str,
    /// Completed requests of an earlier run on the same database.
    earlier: usize,
    /// Single-worker run: sample the server's CPU around every call.
    per_call: bool,
    /// PostgreSQL: sample what its backends wait for.
    psql: Option<Psql>,
}

/// One timed run against running instances: CPU around `drive`, then the check of the
/// database.
async fn measured(
    t: Target<'_>,
    prepared: Prepared,
    workers: usize,
    duration: Duration,
    ticks: f64,
) -> anyhow::Result<RunResult> {
    let client = Client::new(t.instances.iter().map(|i| i.base.clone()).collect())?;
    let staff = Arc::new(Staff {
        agency: login(&client, "agency-320000").await?,
        provider: login(&client, "provider").await?,
    });
    let pg = t.backend == "PostgreSQL";
    let sampler: Option<Sampler> = if t.per_call {
        let pids: Vec<u32> = t.instances.iter().map(Instance::pid).collect();
        Some(Arc::new(move || {
            pids.iter()
                .map(|p| util::group_cpu_seconds(*p, ticks))
                .sum::<f64>()
                + if pg {
                    PgCluster::cpu_seconds(ticks)
                } else {
                    0.0
                }
        }))
    } else {
        None
    };
    let cpu0: f64 = t.instances.iter().map(|i| i.cpu_seconds(ticks)).sum();
    let db0 = PgCluster::cpu_seconds(ticks);
    let me0 = util::self_cpu_seconds(ticks);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let run = async {
        let out = drive(
            &client,
            staff,
            prepared.enterprise_tokens,
            workers,
            duration,
            sampler,
        )
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    };
    let waits = async {
        match t.psql.clone() {
            Some(psql) => Some(sample_pg(psql, stop.clone()).await),
            None => None,
        }
    };
    let ((mut r, ids), waits) = tokio::join!(run, waits);
    r.pg_waits = waits;
    if r.failed > 0 {
        let errors: Vec<String> = t.instances.iter().flat_map(|i| i.errors(5)).collect();
        for e in &errors {
            eprintln!("    server: {e}");
        }
        r.server_error = errors.into_iter().next();
    }
    r.server_cpu_s = t
        .instances
        .iter()
        .map(|i| i.cpu_seconds(ticks))
        .sum::<f64>()
        - cpu0;
    r.db_cpu_s = pg.then(|| PgCluster::cpu_seconds(ticks) - db0);
    r.client_cpu_s = util::self_cpu_seconds(ticks) - me0;
    r.label = t.label.to_string();
    r.backend = t.backend;
    r.instances = t.instances.len();
    r.pool_s = prepared.pool_s;
    r.verification = verify(t.db_url, &ids, &r.failed_ids, t.earlier).await?;
    eprintln!(
        "  {}: {} requests completed in {:.1} s = {} requests/s (p50 {:.0} ms, p99 {:.0} ms), \
         {} failed, verification {}",
        t.label,
        r.completed,
        r.elapsed.as_secs_f64(),
        util::num(r.per_second(), 1),
        r.p_ms(50.0),
        r.p_ms(99.0),
        r.failed,
        if r.verification.ok { "OK" } else { "FAILED" }
    );
    if let Some(e) = &r.first_error {
        eprintln!("    first error: {e}");
    }
    Ok(r)
}

/// fdatasync()s per second of one 8 KB block rewritten in place (what `pg_test_fsync`
/// calls fdatasync): the ceiling of commits that wait for each other.
fn fsync_rate(dir: &Path, duration: Duration) -> anyhow::Result<f64> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fsync-probe");
    let f = std::fs::File::create(&path)?;
    let block = [0x5au8; 8192];
    f.write_all_at(&block, 0)?;
    f.sync_all()?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        f.write_all_at(&block, 0)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

pub struct Results {
    /// One worker on SQLite: the per-step service times without contention.
    pub solo: RunResult,
    pub runs: Vec<RunResult>,
    pub cores: usize,
    /// fdatasync()s per second on the data's disk.
    pub fsync_per_s: f64,
    /// fsync calls of the SQLite server per request.
    pub fsyncs: Fsyncs,
}

/// The server's fsync()/fdatasync() calls per request, by what they flush.
#[derive(Debug, Default)]
pub struct Fsyncs {
    pub requests: usize,
    /// (what, calls per request), most first.
    pub by_kind: Vec<(String, f64)>,
    pub per_request: f64,
}

fn fsync_kind(path: &str) -> String {
    if path.ends_with(".db-wal") {
        "SQLite WAL (one per commit)".into()
    } else if path.ends_with(".db") {
        "SQLite database file (checkpoints)".into()
    } else if path.contains("/data/files") {
        "uploaded files: the file, then each directory up to `files/`".into()
    } else if path.contains("/data/tokens") {
        "software tokens: the token file and its directory".into()
    } else {
        let short = path.rsplit('/').next().unwrap_or(path);
        format!("other: `{short}`")
    }
}

/// Runs `pool.len()` single-worker requests with `strace -f` attached to the server, counting
/// its fsync-family calls by file (strace's `-y` names each descriptor's path).
async fn count_fsyncs(
    instance: &Instance,
    pool: Vec<String>,
    dir: &Path,
) -> anyhow::Result<Fsyncs> {
    let client = Client::new(vec![instance.base.clone()])?;
    let staff = Arc::new(Staff {
        agency: login(&client, "agency-320000").await?,
        provider: login(&client, "provider").await?,
    });
    let out = dir.join("strace-fsync.txt");
    let mut cmd = Command::new("strace");
    cmd.args([
        "-f",
        "-qq",
        "-y",
        "-e",
        "trace=fsync,fdatasync,sync_file_range,syncfs",
    ])
    .arg("-o")
    .arg(&out)
    .arg("-p")
    .arg(instance.pid().to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut strace = Bounded::spawn(&mut cmd)
        .context("strace (apt-get install strace) counts the server's fsync calls")?;
    // Attached to every thread once the output file exists and a moment has passed.
    let until = Instant::now() + Duration::from_secs(10);
    while !out.exists() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(status) = strace.child.try_wait()? {
        bail!("strace -p {} exited at once ({status})", instance.pid());
    }
    let (r, _) = drive(&client, staff, pool, 1, Duration::from_secs(60), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    strace.kill();
    ensure!(
        r.failed == 0 && r.completed > 0,
        "fsync count: {} completed, {} failed ({:?})",
        r.completed,
        r.failed,
        r.first_error
    );
    let text = std::fs::read_to_string(&out)?;
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let mut total = 0usize;
    for line in text.lines() {
        let Some(open) = line.find("sync") else {
            continue;
        };
        let rest = &line[open..];
        let (Some(a), Some(b)) = (rest.find('<'), rest.find('>')) else {
            continue;
        };
        if b <= a || !rest.contains(") = 0") {
            continue;
        }
        total += 1;
        *kinds.entry(fsync_kind(&rest[a + 1..b])).or_default() += 1;
    }
    let n = r.completed as f64;
    let mut by_kind: Vec<(String, f64)> =
        kinds.into_iter().map(|(k, c)| (k, c as f64 / n)).collect();
    by_kind.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    eprintln!(
        "  fsync calls per request (strace, {} requests): {:.1}",
        r.completed,
        total as f64 / n
    );
    Ok(Fsyncs {
        requests: r.completed,
        by_kind,
        per_request: total as f64 / n,
    })
}

/// A fresh data directory and listen address for one backend.
fn layout(work: &Path, name: &str) -> anyhow::Result<(PathBuf, SocketAddr)> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    Ok((dir, addr))
}

/// Every lifecycle run: SQLite (one worker for the per-step breakdown, then `WORKERS`),
/// then PostgreSQL with one and with three instances.
pub async fn run(work: &Path, ticks: f64) -> anyhow::Result<Results> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fsync_per_s = fsync_rate(work, Duration::from_secs(2))?;
    eprintln!(
        "  fdatasync of 8 KB in the work directory: {} /s",
        util::num(fsync_per_s, 0)
    );

    // SQLite, one instance.
    let (dir, addr) = layout(work, "lifecycle-sqlite")?;
    let db_url = format!("sqlite:{}", dir.join("ekey.db").display());
    let config = server_config(&db_url, addr, &dir.join("data"));
    eprintln!(
        "  SQLite: writing {} enterprises with open sessions",
        POOL + SOLO_POOL
    );
    let mut prepared = prepare(&config, POOL + SOLO_POOL).await?;
    let mut solo_pool = prepared.enterprise_tokens.split_off(POOL);
    let fsync_pool = solo_pool.split_off(solo_pool.len() - FSYNC_REQUESTS);
    let instance = Instance::start(&config, &dir, "ekey").await?;
    let instances = std::slice::from_ref(&instance);
    let solo = measured(
        Target {
            label: "SQLite, 1 instance, 1 worker",
            backend: "SQLite",
            instances,
            db_url: &db_url,
            earlier: 0,
            per_call: true,
            psql: None,
        },
        Prepared {
            enterprise_tokens: solo_pool,
            pool_s: prepared.pool_s,
        },
        1,
        SOLO,
        ticks,
    )
    .await;
    // fsync calls per request, by file: strace attached for a few more requests (not timed).
    let fsyncs = match &solo {
        Ok(_) => count_fsyncs(&instance, fsync_pool, &dir).await,
        Err(_) => Err(anyhow::anyhow!("the single-worker run failed")),
    };
    let sqlite = match (&solo, &fsyncs) {
        (Ok(solo), Ok(fsyncs)) => {
            measured(
                Target {
                    label: "SQLite, 1 instance",
                    backend: "SQLite",
                    instances,
                    db_url: &db_url,
                    earlier: solo.completed + fsyncs.requests,
                    per_call: false,
                    psql: None,
                },
                prepared,
                WORKERS,
                DURATION,
                ticks,
            )
            .await
        }
        _ => Err(anyhow::anyhow!("an earlier SQLite run failed")),
    };
    instance.stop();
    let solo = solo?;
    let fsyncs = fsyncs?;
    let mut runs = vec![sqlite?];

    // PostgreSQL: one cluster, a fresh database and data directory per configuration.
    eprintln!("  starting a throwaway PostgreSQL cluster (initdb + pg_ctl, fsync on)");
    let cluster = PgCluster::start()?;
    for n in [1usize, 3] {
        let (dir, addr) = layout(work, &format!("lifecycle-pg{n}"))?;
        let db_url = cluster.create_database(&format!("ekey_bench_{n}"))?;
        let config = server_config(&db_url, addr, &dir.join("data"));
        eprintln!("  PostgreSQL × {n}: writing {POOL} enterprises with open sessions");
        let prepared = prepare(&config, POOL).await?;
        // Closed connections have reported their WAL statistics.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let wal0 = cluster.wal_syncs();
        let mut instances = Vec::new();
        let mut started = Ok(());
        for k in 1..=n {
            // Same database and data directory (CA keys, secrets, files), own address.
            let mut c = config.clone();
            if k > 1 {
                c.listen = format!("127.0.0.1:{}", free_port()?);
            }
            match Instance::start(&c, &dir, &format!("ekey-{k}")).await {
                Ok(i) => instances.push(i),
                Err(e) => {
                    started = Err(e);
                    break;
                }
            }
        }
        let label = if n == 1 {
            "PostgreSQL, 1 instance".to_string()
        } else {
            format!("PostgreSQL, {n} instances (round-robin per call)")
        };
        let r = match started {
            Ok(()) => {
                measured(
                    Target {
                        label: &label,
                        backend: "PostgreSQL",
                        instances: &instances,
                        db_url: &db_url,
                        earlier: 0,
                        per_call: false,
                        psql: Some(cluster.psql(&format!("ekey_bench_{n}"))),
                    },
                    prepared,
                    WORKERS,
                    DURATION,
                    ticks,
                )
                .await
            }
            Err(e) => Err(e),
        };
        for i in instances {
            i.stop();
        }
        let mut r = r?;
        // The servers' backends report their WAL statistics as they exit.
        tokio::time::sleep(Duration::from_millis(500)).await;
        r.wal_syncs = match (wal0, cluster.wal_syncs()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        runs.push(r);
    }
    drop(cluster);
    Ok(Results {
        solo,
        runs,
        cores,
        fsync_per_s,
        fsyncs,
    })
}

/// The goal on SQLite, requests per second.
pub const GOAL: f64 = 200.0;

fn check_cell(v: &Verification) -> String {
    format!(
        "{} completed in the database, {} keys with a certificate ({} distinct serials), {} certificates in the database{} — {}",
        v.completed_in_db,
        v.keys_with_certificate,
        v.distinct_serials,
        v.certificates,
        match (v.counted_not_completed, v.failed_with_certificate) {
            (0, 0) => String::new(),
            (0, f) =>
                format!(" ({f} of them for failed requests that got their key before failing)"),
            (n, f) =>
                format!(", {n} counted but not completed, {f} certificates for failed requests"),
        },
        if v.ok { "OK" } else { "**MISMATCH**" }
    )
}

pub fn render(s: &mut String, r: &Results) {
    use crate::util::{num, ratio};
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "## 6. Request lifecycle: first issue, request created → completed\n\n\
         Each request runs the whole first-issue path over HTTP exactly as `active_key()` in \
         `crates/ekey-testkit/src/scenario.rs`: create (login name allocated) → submit → six \
         uploads (2 KB PNG each) → confirm-upload → 验核 approve (agency-320000) → 复核 approve \
         (provider) → produce (software token: key pair, CSR signed on the token, certificate \
         issued) → shipment → receive → notify (mail + SMS queued) → handover at the window → \
         `completed`: {CALLS} HTTP calls, each checked for its status code. The server is the \
         release `ekey serve` binary in its own process(es), `mail_transport = \"log\"`, default \
         logging. {WORKERS} concurrent workers (reqwest, keep-alive) start requests for {} s; those \
         under way then are finished and counted, so requests/s = completed / (start → last \
         completion). Sessions are open before the clock starts: the staff log in once over HTTP; \
         an enterprise may hold only one first-issue request (`validate_new_request`, \
         `NotFirst`), so every request needs its own enterprise — a pool of enterprises, each \
         with an active account and an open session (a row written the way the login writes it), \
         is written through the `Store` API before the server starts (not timed; logins are \
         measured in section 5). PostgreSQL: one throwaway cluster started by the bench \
         (`initdb` + `pg_ctl`, 127.0.0.1, PostgreSQL's defaults: fsync, synchronous_commit and \
         full_page_writes on), a fresh database per configuration; the three instances share \
         the database and the data directory (CA keys, secrets, uploaded files, tokens) and the \
         client calls them in turn, one call each. SQLite: WAL, `synchronous=FULL`. After each run \
         the database is read back: every request counted is `completed`, has its key and a \
         certificate of its own, and the database holds as many completed requests and \
         certificates as were counted. CPU is read from `/proc` (eKey processes; every \
         `postgres` process — the suite runs in its own PID namespace).\n",
        DURATION.as_secs()
    );
    let _ = writeln!(
        s,
        "| Configuration | Workers | Completed | Requests/s | HTTP calls/s | p50 per request, ms | p99 per request, ms | Server CPU per request, ms (eKey + PostgreSQL) | eKey cores | PostgreSQL cores | Client cores | PostgreSQL WAL syncs per request | Failed |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for x in std::iter::once(&r.solo).chain(&r.runs) {
        let secs = x.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.2} | {} | {} |",
            x.label,
            x.workers,
            num(x.completed as f64, 0),
            num(x.per_second(), 1),
            num(x.calls_per_second(), 0),
            num(x.p_ms(50.0), 0),
            num(x.p_ms(99.0), 0),
            num(x.cpu_ms_per_request(), 1),
            x.server_cpu_s / secs,
            x.db_cpu_s
                .map_or("—".to_string(), |d| format!("{:.2}", d / secs)),
            x.client_cpu_s / secs,
            x.wal_syncs_per_request()
                .map_or("—".to_string(), |f| num(f, 1)),
            x.failed
        );
    }
    let errors: Vec<String> = std::iter::once(&r.solo)
        .chain(&r.runs)
        .filter_map(|x| x.first_error.as_ref().map(|e| format!("{}: {e}", x.label)))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(
            s,
            "\nFirst error of each failing run: {}",
            errors.join("; ")
        );
    }
    for x in std::iter::once(&r.solo).chain(&r.runs) {
        if let Some(e) = &x.server_error {
            let _ = writeln!(s, "\nThe server logged ({}): `{}`", x.label, e.trim());
        }
    }
    let exhausted: Vec<&str> = r
        .runs
        .iter()
        .filter(|x| x.pool_exhausted)
        .map(|x| x.label.as_str())
        .collect();
    if !exhausted.is_empty() {
        let _ = writeln!(
            s,
            "\nThe pool of {POOL} enterprises ran out before {} s in: {} (the rate stands; the run was shorter).",
            DURATION.as_secs(),
            exhausted.join(", ")
        );
    }
    let _ = writeln!(s, "\nChecked in the database after each run:\n");
    let _ = writeln!(
        s,
        "| Configuration | Counted by the client | Database |\n|---|---:|---|"
    );
    for x in std::iter::once(&r.solo).chain(&r.runs) {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            x.label,
            num(x.completed as f64, 0),
            check_cell(&x.verification)
        );
    }
    let pool_s: Vec<String> = r
        .runs
        .iter()
        .map(|x| format!("{} {:.1} s", x.label, x.pool_s))
        .collect();
    let _ = writeln!(
        s,
        "\nWriting the pool (enterprise + account + session, three transactions each, 8 at a time; not timed): {}.\n",
        pool_s.join(", ")
    );

    // Comparisons.
    let _ = writeln!(
        s,
        "| Comparison | Measure | eKey | Reference | eKey / reference | Better |\n|---|---|---:|---:|---:|---|"
    );
    if let Some(sqlite) = r.runs.first() {
        let _ = writeln!(
            s,
            "| SQLite, 1 instance vs the goal | requests/s | {} | {} | {} | higher |",
            num(sqlite.per_second(), 1),
            num(GOAL, 0),
            ratio(sqlite.per_second(), GOAL)
        );
        for x in r.runs.iter().skip(1) {
            let _ = writeln!(
                s,
                "| {} vs SQLite, 1 instance | requests/s | {} | {} | {} | higher |",
                x.label,
                num(x.per_second(), 1),
                num(sqlite.per_second(), 1),
                ratio(x.per_second(), sqlite.per_second())
            );
        }
    }
    if let (Some(p1), Some(p3)) = (r.runs.get(1), r.runs.get(2)) {
        let _ = writeln!(
            s,
            "| {} vs PostgreSQL, 1 instance | requests/s | {} | {} | {} | higher |",
            p3.label,
            num(p3.per_second(), 1),
            num(p1.per_second(), 1),
            ratio(p3.per_second(), p1.per_second())
        );
    }

    // Per step.
    let _ = writeln!(
        s,
        "\nWhere a request's time goes, per HTTP call: latency seen by the client (\"share\" = the \
         step's part of the summed time of all calls). With one worker the calls run one after \
         the other, so the server CPU counted between a call's start and the next call's start \
         (eKey process, from `/proc`, 10 ms ticks averaged over every call; plus what the outbox \
         worker does meanwhile) is that call's, and the rest of its time (mean latency − CPU) was \
         spent waiting (disk, the database's locks, the network); the runs with {WORKERS} \
         workers show the same calls under load.\n"
    );
    let mut head = String::from(
        "| Step | Calls per request | 1 worker: p50 / p99 ms | share | CPU ms per call | waiting ms per call |",
    );
    let mut rule = String::from("|---|---:|---:|---:|---:|---:|");
    for x in &r.runs {
        let _ = write!(head, " {}: p50 / p99 ms | share |", x.label);
        rule.push_str("---:|---:|");
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for (i, (_, what)) in STEPS.iter().enumerate() {
        let per = if i == 2 { 6 } else { 1 };
        let solo = r.solo.steps.get(i).cloned().unwrap_or_default();
        let mut line = format!(
            "| {what} | {per} | {} / {} | {:.0}% | {} | {} |",
            num(solo.p50_ms, 1),
            num(solo.p99_ms, 1),
            solo.share * 100.0,
            solo.cpu_ms.map_or("n/a".into(), |v| num(v, 1)),
            solo.cpu_ms
                .map_or("n/a".into(), |c| num((solo.mean_ms - c).max(0.0), 1)),
        );
        for x in &r.runs {
            let st = x.steps.get(i).cloned().unwrap_or_default();
            let _ = write!(
                line,
                " {} / {} | {:.0}% |",
                num(st.p50_ms, 1),
                num(st.p99_ms, 1),
                st.share * 100.0
            );
        }
        let _ = writeln!(s, "{line}");
    }

    // PostgreSQL: what its backends were doing.
    for x in &r.runs {
        let Some(w) = &x.pg_waits else { continue };
        if w.samples == 0 {
            continue;
        }
        let n = w.samples as f64;
        let _ = writeln!(
            s,
            "\n{}: the eKey database's PostgreSQL backends, sampled {} times (every 0.5 s, \
             `pg_stat_activity`, state and wait event of every backend in a query or inside a \
             transaction): average backends per sample.\n",
            x.label, w.samples
        );
        let _ = writeln!(s, "| State, wait | Backends (average) |\n|---|---:|");
        for (k, c) in w.states.iter().take(8) {
            let _ = writeln!(s, "| {k} | {:.1} |", *c as f64 / n);
        }
        let quote = |q: &str| q.replace('|', "\\|");
        if !w.lock_waits.is_empty() {
            let _ = writeln!(
                s,
                "\nStatements seen waiting on a lock (average backends): {}.",
                w.lock_waits
                    .iter()
                    .take(3)
                    .map(|(q, c)| format!("`{}` ({:.1})", quote(q), *c as f64 / n))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        if !w.idle_in_tx.is_empty() {
            let _ = writeln!(
                s,
                "\nTransactions seen open and waiting for eKey, by their last statement (average backends): {}.",
                w.idle_in_tx
                    .iter()
                    .take(3)
                    .map(|(q, c)| format!("`{}` ({:.1})", quote(q), *c as f64 / n))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
    }

    // Findings: the two ceilings the measurements give.
    if let Some(sqlite) = r.runs.first() {
        let rate = sqlite.per_second();
        let cpu = sqlite.cpu_ms_per_request();
        let cpu_ceiling = if cpu > 0.0 {
            r.cores as f64 * 1000.0 / cpu
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "\nGoal: ≥ {} requests/s on SQLite (sessions open). Measured: **{}/s** — {}.\n",
            num(GOAL, 0),
            num(rate, 1),
            if rate >= GOAL { "met" } else { "**missed**" },
        );
        let _ = writeln!(
            s,
            "- CPU: the SQLite run cost {} ms of server CPU per request, so {} cores allow at most \
             ~{} requests/s at this cost, whatever the concurrency; {:.2} cores were busy (eKey \
             {:.2}, client {:.2}).",
            num(cpu, 1),
            r.cores,
            num(cpu_ceiling, 0),
            (sqlite.server_cpu_s + sqlite.client_cpu_s) / sqlite.elapsed.as_secs_f64().max(1e-9),
            sqlite.server_cpu_s / sqlite.elapsed.as_secs_f64().max(1e-9),
            sqlite.client_cpu_s / sqlite.elapsed.as_secs_f64().max(1e-9),
        );
        let f = &r.fsyncs;
        let wal = f
            .by_kind
            .iter()
            .find(|(k, _)| k.starts_with("SQLite WAL"))
            .map_or(0.0, |(_, c)| *c);
        let _ = writeln!(
            s,
            "- Disk: an 8 KB write + fdatasync() in the work directory completes {} times/s here \
             (~{} ms each; measured in this run, one at a time). With `strace -f` attached to the \
             SQLite server for {} more single-worker requests (not timed), a request made {} \
             fsync-family calls:{} SQLite has one writer at a time and each commit waits for its \
             WAL fsync, so the {} WAL fsyncs of a request alone allow ~{} requests/s on this disk \
             however many workers there are.",
            num(r.fsync_per_s, 0),
            num(1000.0 / r.fsync_per_s.max(1e-9), 1),
            f.requests,
            num(f.per_request, 1),
            f.by_kind
                .iter()
                .map(|(k, c)| format!(" {} {k};", num(*c, 1)))
                .collect::<String>(),
            num(wal, 1),
            num(r.fsync_per_s / wal.max(1e-9), 0)
        );
        for x in r.runs.iter().skip(1) {
            if let Some(w) = x.wal_syncs_per_request() {
                let top_lock = x
                    .pg_waits
                    .as_ref()
                    .and_then(|p| {
                        let n = p.samples.max(1) as f64;
                        p.lock_waits.first().map(|(q, c)| {
                            format!(
                                " On average {:.1} backends were waiting for a lock with `{}`.",
                                *c as f64 / n,
                                q.replace('|', "\\|")
                            )
                        })
                    })
                    .unwrap_or_default();
                let secs = x.elapsed.as_secs_f64().max(1e-9);
                let syncs_per_s = w * x.per_second();
                let _ = writeln!(
                    s,
                    "- {}: {} WAL syncs per request (`pg_stat_wal`), {} per second = {:.0}% of \
                     the one-at-a-time fdatasync rate above; {:.2} of {} cores busy (eKey {:.2}, \
                     PostgreSQL {:.2}, client {:.2}).{top_lock}",
                    x.label,
                    num(w, 1),
                    num(syncs_per_s, 0),
                    syncs_per_s * 100.0 / r.fsync_per_s.max(1e-9),
                    (x.server_cpu_s + x.db_cpu_s.unwrap_or(0.0) + x.client_cpu_s) / secs,
                    r.cores,
                    x.server_cpu_s / secs,
                    x.db_cpu_s.unwrap_or(0.0) / secs,
                    x.client_cpu_s / secs,
                );
            }
        }
        if let Some((i, st)) = r
            .solo
            .steps
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.share.total_cmp(&b.1.share))
        {
            let _ = writeln!(
                s,
                "- Slowest step with one worker: {} — {:.0}% of a request's time (p50 {} ms{}{}).",
                STEPS[i].1,
                st.share * 100.0,
                num(st.p50_ms, 1),
                st.cpu_ms
                    .map_or(String::new(), |c| format!(", {} ms CPU", num(c, 1))),
                st.cpu_ms.map_or(String::new(), |c| format!(
                    ", {} ms waiting",
                    num((st.mean_ms - c).max(0.0), 1)
                ))
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "Caveats: the client (reqwest, {WORKERS} workers, JSON) shares the {} cores with the server \
         and PostgreSQL (see Client cores); the enterprises' sessions are written through the \
         store rather than by {} logins (the argon2 check is measured in section 5); uploads are \
         2 KB PNGs (the photo-fitting path of section 4 is not exercised); mail and SMS go to the \
         log transport (the outbox still writes, claims and completes every message).\n",
        r.cores,
        num(POOL as f64, 0)
    );
}

/// `ekey-bench only web|lifecycle|both [--out FILE]`: just these sections, into FILE (for
/// working on them; `bench/run` runs everything).
pub async fn only(args: &[String]) -> anyhow::Result<()> {
    let which = args.get(1).map(String::as_str).unwrap_or("both");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| PathBuf::from("bench-sections.md"), PathBuf::from);
    let tmp = tempfile::Builder::new().prefix("ekey-bench-").tempdir()?;
    // EKEY_BENCH_KEEP=1 keeps the temporary directory (server logs) for inspection.
    let (work, _tmp) = if std::env::var("EKEY_BENCH_KEEP").is_ok_and(|v| v == "1") {
        let kept = tmp.keep();
        eprintln!("keeping {}", kept.display());
        (kept, None)
    } else {
        (tmp.path().to_path_buf(), Some(tmp))
    };
    let ticks = util::clock_ticks();
    let mut s = String::new();
    if matches!(which, "web" | "both") {
        eprintln!("portal reads and logins");
        let w = crate::web::run(&work, ticks).await?;
        crate::web::render(&mut s, &w);
    }
    if matches!(which, "lifecycle" | "both") {
        eprintln!("request lifecycle");
        let l = run(&work, ticks).await?;
        render(&mut s, &l);
    }
    std::fs::write(&out, s)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

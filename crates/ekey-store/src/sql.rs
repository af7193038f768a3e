//! The SQL store: one implementation over sqlx's `Any` driver, with the few statements that
//! differ per backend (migrations, `FOR UPDATE SKIP LOCKED`, write-transaction start) chosen
//! from [`Backend`].

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use ekey_domain::calendar::shanghai;
use ekey_domain::error::DomainError;
use ekey_domain::request::{
    Action, Holdings, Kind, Material, RequestForm, Role, Status, validate_new_request,
};
use rand::Rng;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Row, Transaction};

use crate::audit::{AuditFields, GENESIS, chain_hash};
use crate::types::*;
use crate::{Result, Store, StoreError};

const MIGRATIONS_SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_keys_certificates.sql"),
    ),
    (3, include_str!("../migrations/sqlite/0003_eseals.sql")),
    (4, include_str!("../migrations/sqlite/0004_portal.sql")),
    (5, include_str!("../migrations/sqlite/0005_agent.sql")),
    (6, include_str!("../migrations/sqlite/0006_scale.sql")),
    (7, include_str!("../migrations/sqlite/0007_security.sql")),
    (8, include_str!("../migrations/sqlite/0008_key_hygiene.sql")),
    (
        10,
        include_str!("../migrations/sqlite/0010_bounded_growth.sql"),
    ),
    (11, include_str!("../migrations/sqlite/0011_doors.sql")),
    (
        12,
        include_str!("../migrations/sqlite/0012_key_returns.sql"),
    ),
    (
        15,
        include_str!("../migrations/sqlite/0015_agency_truth.sql"),
    ),
];
const MIGRATIONS_PG: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_keys_certificates.sql"),
    ),
    (3, include_str!("../migrations/postgres/0003_eseals.sql")),
    (4, include_str!("../migrations/postgres/0004_portal.sql")),
    (5, include_str!("../migrations/postgres/0005_agent.sql")),
    (6, include_str!("../migrations/postgres/0006_scale.sql")),
    (7, include_str!("../migrations/postgres/0007_security.sql")),
    (
        8,
        include_str!("../migrations/postgres/0008_key_hygiene.sql"),
    ),
    (
        10,
        include_str!("../migrations/postgres/0010_bounded_growth.sql"),
    ),
    (11, include_str!("../migrations/postgres/0011_doors.sql")),
    (
        12,
        include_str!("../migrations/postgres/0012_key_returns.sql"),
    ),
    (
        15,
        include_str!("../migrations/postgres/0015_agency_truth.sql"),
    ),
];

/// The SQL store on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

fn renewal_from_row(r: &AnyRow) -> Result<RenewalRecord> {
    let opt = |c: &str| -> Result<Option<DateTime<Utc>>> {
        Ok(r.try_get::<Option<i64>, _>(c)?.map(from_ms))
    };
    Ok(RenewalRecord {
        request_id: r.try_get("request_id")?,
        key_id: r.try_get("key_id")?,
        old_serial: r.try_get("old_serial")?,
        new_serial: r.try_get("new_serial")?,
        state: r.try_get("state")?,
        created_at: from_ms(r.try_get("created_at")?),
        expires_at: from_ms(r.try_get("expires_at")?),
        issued_at: opt("issued_at")?,
        confirmed_at: opt("confirmed_at")?,
        old_revoked_at: opt("old_revoked_at")?,
    })
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .map(|d| d.is_unique_violation())
        .unwrap_or(false)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("unreadable value in column {what}"))
}

impl SqlStore {
    /// Connects to `sqlite:…` (created when missing) or `postgres:…`.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Backend(format!(
                "database URL must start with sqlite: or postgres: (got {url:?})"
            )));
        };
        let pool = match backend {
            Backend::Sqlite => {
                let url = if url.contains("mode=") {
                    url.to_string()
                } else if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                AnyPoolOptions::new()
                    .max_connections(8)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // WAL for concurrent readers; FULL sync so an acknowledged change
                            // survives a power cut; a generous busy timeout instead of errors.
                            sqlx::raw_sql(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                                 PRAGMA busy_timeout=15000; PRAGMA foreign_keys=ON;",
                            )
                            .execute(conn)
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    // While the server is down (restart, failover) a request waits this long
                    // for a connection, then answers 503, instead of sqlx's default 30 s.
                    .acquire_timeout(std::time::Duration::from_secs(5))
                    .connect(url)
                    .await?
            }
        };
        Ok(SqlStore { pool, backend })
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once, so two writers
    /// queue on the busy timeout instead of failing when a read lock cannot be upgraded.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// One row by one key, mapped; `None` when absent.
    async fn by_key<T>(
        &self,
        sql: &'static str,
        key: &str,
        map: fn(&AnyRow) -> Result<T>,
    ) -> Result<Option<T>> {
        sqlx::query(sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(map)
            .transpose()
    }

    /// All rows by one key, mapped.
    async fn all_by_key<T>(
        &self,
        sql: &'static str,
        key: &str,
        map: fn(&AnyRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let rows = sqlx::query(sql).bind(key).fetch_all(&self.pool).await?;
        rows.iter().map(map).collect()
    }

    /// The underlying pool (tests use it to look under the hood).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

async fn append_audit_tx(conn: &mut AnyConnection, a: &NewAudit) -> Result<()> {
    let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut *conn)
        .await?;
    let seq: i64 = head.try_get("seq")?;
    let prev: String = head.try_get("hash")?;
    let at_ms = ms(a.at);
    let hash = chain_hash(
        &prev,
        &AuditFields {
            seq,
            at_ms,
            actor_id: &a.actor_id,
            actor_role: &a.actor_role,
            address: &a.address,
            action: &a.action,
            object_type: &a.object_type,
            object_id: &a.object_id,
            before: &a.before,
            after: &a.after,
        },
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor_id, actor_role, address, action, object_type, \
         object_id, before_state, after_state, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(seq)
    .bind(at_ms)
    .bind(&a.actor_id)
    .bind(&a.actor_role)
    .bind(&a.address)
    .bind(&a.action)
    .bind(&a.object_type)
    .bind(&a.object_id)
    .bind(&a.before)
    .bind(&a.after)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn enqueue_tx(conn: &mut AnyConnection, m: &NewMessage) -> Result<()> {
    // A second message for the same event is silently not queued: delivery stays exactly
    // once per event even when an operation is retried.
    sqlx::query(
        "INSERT INTO outbox (channel, recipient, subject, body, dedup_key, created_at, available_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(m.channel.as_str())
    .bind(&m.recipient)
    .bind(&m.subject)
    .bind(&m.body)
    .bind(&m.dedup_key)
    .bind(ms(m.created_at))
    .bind(ms(m.created_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

const ACCOUNT_COLS: &str = "id, login, email, display_name, mobile, password_hash, role, \
                            enterprise_id, province, active, created_at";

fn account_from_row(r: &AnyRow) -> Result<Account> {
    let role: String = r.try_get("role")?;
    Ok(Account {
        id: r.try_get("id")?,
        login: r.try_get("login")?,
        email: r.try_get("email")?,
        display_name: r.try_get("display_name")?,
        mobile: r.try_get("mobile")?,
        password_hash: r.try_get("password_hash")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("accounts.role"))?,
        enterprise_id: r.try_get("enterprise_id")?,
        province: r.try_get("province")?,
        active: r.try_get::<i64, _>("active")? != 0,
        created_at: from_ms(r.try_get("created_at")?),
    })
}

fn enterprise_from_row(r: &AnyRow) -> Result<Enterprise> {
    Ok(Enterprise {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        credit_code: r.try_get("credit_code")?,
        province: r.try_get("province")?,
        address: r.try_get("address")?,
        legal_representative: r.try_get("legal_representative")?,
        created_at: from_ms(r.try_get("created_at")?),
    })
}

const ENTERPRISE_COLS: &str =
    "id, name, credit_code, province, address, legal_representative, created_at";

const AGENCY_COLS: &str = "province, name_zh, name_en, address, window_name, hours, hotline";

const REQUEST_COLS: &str = "id, number, kind, status, version, enterprise_id, province, \
                            login_name, form, due_at, created_at, updated_at";

fn request_from_row(r: &AnyRow) -> Result<RequestRecord> {
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    let form: String = r.try_get("form")?;
    Ok(RequestRecord {
        id: r.try_get("id")?,
        number: r.try_get("number")?,
        kind: Kind::parse(&kind).map_err(|_| corrupt("requests.kind"))?,
        status: Status::parse(&status).ok_or_else(|| corrupt("requests.status"))?,
        version: r.try_get("version")?,
        enterprise_id: r.try_get("enterprise_id")?,
        province: r.try_get("province")?,
        login_name: r.try_get("login_name")?,
        form: serde_json::from_str::<RequestForm>(&form).map_err(|_| corrupt("requests.form"))?,
        due_at: r.try_get::<Option<i64>, _>("due_at")?.map(from_ms),
        created_at: from_ms(r.try_get("created_at")?),
        updated_at: from_ms(r.try_get("updated_at")?),
    })
}

const MATERIAL_COLS: &str = "id, request_id, item, state, blob_key, content_type, size, sha256, \
                             file_name, uploaded_at, uploaded_by";

fn material_from_row(r: &AnyRow) -> Result<MaterialRecord> {
    let item: String = r.try_get("item")?;
    let state: String = r.try_get("state")?;
    Ok(MaterialRecord {
        id: r.try_get("id")?,
        request_id: r.try_get("request_id")?,
        item: Material::parse(&item).map_err(|_| corrupt("materials.item"))?,
        state: MaterialState::parse(&state),
        blob_key: r.try_get("blob_key")?,
        content_type: r.try_get("content_type")?,
        size: r.try_get("size")?,
        sha256: r.try_get("sha256")?,
        file_name: r.try_get("file_name")?,
        uploaded_at: from_ms(r.try_get("uploaded_at")?),
        uploaded_by: r.try_get("uploaded_by")?,
    })
}

fn outbox_from_row(r: &AnyRow) -> Result<OutboxMessage> {
    let channel: String = r.try_get("channel")?;
    Ok(OutboxMessage {
        id: r.try_get("id")?,
        channel: if channel == "sms" {
            Channel::Sms
        } else {
            Channel::Email
        },
        recipient: r.try_get("recipient")?,
        subject: r.try_get("subject")?,
        body: r.try_get("body")?,
        dedup_key: r.try_get("dedup_key")?,
        attempts: r.try_get("attempts")?,
        created_at: from_ms(r.try_get("created_at")?),
    })
}

/// Keys an enterprise holds now, counted as `ekey_domain::keycap` says: keys in a state
/// that counts, plus open requests that will produce one — 首次/增办/重新申领 without their
/// key yet, and a 补办 whose login name has no counting key left (a 补办 of a key that
/// counts replaces it, it does not add).
async fn holdings_tx(conn: &mut AnyConnection, enterprise_id: &str) -> Result<Holdings> {
    // The lists are the domain's own machine names, never input.
    let counted = ekey_domain::keycap::counted_states_sql();
    let terminal = ekey_domain::keycap::terminal_statuses_sql();
    let keys: i64 = sqlx::query(AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM keys WHERE enterprise_id = $1 AND status IN ({counted})"
    )))
    .bind(enterprise_id)
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?;
    let open: i64 = sqlx::query(AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM requests WHERE enterprise_id = $1 \
         AND status NOT IN ({terminal}) \
         AND NOT EXISTS (SELECT 1 FROM keys k WHERE k.request_id = requests.id) \
         AND (kind IN ('first', 'additional', 'reapplication') \
              OR (kind = 'replacement' AND NOT EXISTS (SELECT 1 FROM keys o \
                  WHERE o.enterprise_id = requests.enterprise_id \
                  AND o.login_name = requests.login_name AND o.status IN ({counted}))))"
    )))
    .bind(enterprise_id)
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?;
    Ok(Holdings {
        keys_held: u32::try_from(keys + open).unwrap_or(u32::MAX),
    })
}

/// What a new request naming `login_name` finds: the states of the enterprise's keys under
/// it, and an open 补办 or 注销 already naming it.
async fn key_target_tx(
    conn: &mut AnyConnection,
    enterprise_id: &str,
    login_name: &str,
) -> Result<ekey_domain::keycap::KeyTarget> {
    let rows = sqlx::query("SELECT status FROM keys WHERE enterprise_id = $1 AND login_name = $2")
        .bind(enterprise_id)
        .bind(login_name)
        .fetch_all(&mut *conn)
        .await?;
    let mut states = Vec::new();
    for r in &rows {
        let s: String = r.try_get("status")?;
        states.push(ekey_domain::key::KeyState::parse(&s).ok_or_else(|| corrupt("key status"))?);
    }
    let exclusive: Vec<String> = Kind::ALL
        .iter()
        .filter(|k| ekey_domain::keycap::exclusive_per_key(**k))
        .map(|k| format!("'{}'", k.as_str()))
        .collect();
    let busy_with = sqlx::query(AssertSqlSafe(format!(
        "SELECT number FROM requests WHERE enterprise_id = $1 AND login_name = $2 \
         AND kind IN ({}) AND status NOT IN ({}) ORDER BY created_at LIMIT 1",
        exclusive.join(", "),
        ekey_domain::keycap::terminal_statuses_sql()
    )))
    .bind(enterprise_id)
    .bind(login_name)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| r.try_get::<String, _>("number"))
    .transpose()?;
    Ok(ekey_domain::keycap::KeyTarget { states, busy_with })
}

fn allocate_name(province: &str) -> String {
    let mut rng = rand::rng();
    ekey_domain::request::allocated_login_name(province, rng.random_range(0..10_000_000u32))
}

/// How long a login name reserved by 获取登录名 waits for a request.
fn reservation_ttl() -> chrono::Duration {
    chrono::Duration::days(ekey_domain::request::LOGIN_NAME_RESERVATION_DAYS)
}

/// Inserts a freshly allocated login name; retries on the rare collision.
async fn allocate_login_name_tx(
    conn: &mut AnyConnection,
    enterprise_id: &str,
    province: &str,
    request_id: Option<&str>,
    at: DateTime<Utc>,
) -> Result<String> {
    for _ in 0..20 {
        let name = allocate_name(province);
        let done = sqlx::query(
            "INSERT INTO login_names (name, enterprise_id, source, request_id, created_at) \
             VALUES ($1, $2, 'allocated', $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&name)
        .bind(enterprise_id)
        .bind(request_id)
        .bind(ms(at))
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(name);
        }
    }
    Err(StoreError::Backend(
        "could not allocate a unique login name".into(),
    ))
}

async fn login_name_owner(conn: &mut AnyConnection, name: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query("SELECT enterprise_id FROM login_names WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get::<String, _>("enterprise_id"))
            .transpose()?,
    )
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            // Several instances may start at once: one migrates, the others wait.
            sqlx::query("SELECT pg_advisory_lock(7262539)")
                .execute(&mut *conn)
                .await?;
        }
        let result = async {
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
            let migrations = match self.backend {
                Backend::Sqlite => MIGRATIONS_SQLITE,
                Backend::Postgres => MIGRATIONS_PG,
            };
            for (version, sql) in migrations {
                let done = sqlx::query("SELECT 1 AS one FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *conn)
                    .await?;
                if done.is_some() {
                    continue;
                }
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                if *version == 8 {
                    crate::hygiene::backfill(&mut tx).await?;
                }
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                    .bind(*version)
                    .bind(ms(Utc::now()))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                tracing::info!(version, backend = ?self.backend, "migration applied");
            }
            for a in ekey_domain::province::agency_defaults() {
                sqlx::query(
                    "INSERT INTO agencies (province, name_zh, name_en, address, window_name, hours, hotline) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (province) DO NOTHING",
                )
                .bind(a.province_code)
                .bind(a.name_zh)
                .bind(a.name_en)
                .bind(a.address)
                .bind(a.window)
                .bind(a.hours)
                .bind(a.hotline)
                .execute(&mut *conn)
                .await?;
            }
            Ok::<_, StoreError>(())
        }
        .await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(7262539)")
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1 AS one").fetch_one(&self.pool).await?;
        Ok(())
    }

    async fn agencies(&self) -> Result<Vec<Agency>> {
        let rows = sqlx::query(sql_agencies()).fetch_all(&self.pool).await?;
        rows.iter().map(agency_from_row).collect()
    }

    async fn agency(&self, province: &str) -> Result<Option<Agency>> {
        self.by_key(sql_agency_by_province(), province, agency_from_row)
            .await
    }

    async fn update_agency(&self, a: Agency, audit: NewAudit) -> Result<Agency> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE agencies SET address = $1, window_name = $2, hours = $3, hotline = $4 \
             WHERE province = $5",
        )
        .bind(&a.address)
        .bind(&a.window)
        .bind(&a.hours)
        .bind(&a.hotline)
        .bind(&a.province)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        append_audit_tx(&mut tx, &audit).await?;
        let row = sqlx::query(sql_agency_by_province())
            .bind(&a.province)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        agency_from_row(&row)
    }

    async fn load_agencies(&self, agencies: Vec<Agency>, audit: NewAudit) -> Result<usize> {
        let mut tx = self.begin_write().await?;
        for a in &agencies {
            sqlx::query(
                "INSERT INTO agencies (province, name_zh, name_en, address, window_name, hours, hotline) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (province) DO UPDATE SET \
                 name_zh = excluded.name_zh, name_en = excluded.name_en, address = excluded.address, \
                 window_name = excluded.window_name, hours = excluded.hours, hotline = excluded.hotline",
            )
            .bind(&a.province)
            .bind(&a.name_zh)
            .bind(&a.name_en)
            .bind(&a.address)
            .bind(&a.window)
            .bind(&a.hours)
            .bind(&a.hotline)
            .execute(&mut *tx)
            .await?;
        }
        append_audit_tx(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(agencies.len())
    }

    async fn enterprise_by_credit_code(&self, credit_code: &str) -> Result<Option<Enterprise>> {
        self.by_key(
            sql_enterprise_by_credit_code(),
            credit_code,
            enterprise_from_row,
        )
        .await
    }

    async fn register_pending(
        &self,
        reg: NewRegistration,
        forget_before: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM pending_registrations WHERE expires_at < $1")
            .bind(ms(forget_before))
            .execute(&mut *tx)
            .await?;
        let (e, a, t) = (&reg.enterprise, &reg.account, &reg.activation);
        sqlx::query(
            "INSERT INTO pending_registrations (id, token_hash, enterprise_id, name, credit_code, \
             province, address, legal_representative, email, display_name, mobile, \
             password_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&a.id)
        .bind(&t.token_hash)
        .bind(&e.id)
        .bind(&e.name)
        .bind(&e.credit_code)
        .bind(&e.province)
        .bind(&e.address)
        .bind(&e.legal_representative)
        .bind(&a.email)
        .bind(&a.display_name)
        .bind(&a.mobile)
        .bind(&a.password_hash)
        .bind(ms(a.created_at))
        .bind(ms(t.expires_at))
        .execute(&mut *tx)
        .await?;
        enqueue_tx(&mut tx, &reg.mail).await?;
        append_audit_tx(&mut tx, &reg.audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pending_registration(&self, email: &str) -> Result<Option<PendingRegistration>> {
        let row = sqlx::query(
            "SELECT id, name, credit_code, email, password_hash, expires_at \
             FROM pending_registrations WHERE email = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(PendingRegistration {
                id: r.try_get("id")?,
                enterprise_name: r.try_get("name")?,
                credit_code: r.try_get("credit_code")?,
                email: r.try_get("email")?,
                password_hash: r.try_get("password_hash")?,
                expires_at: from_ms(r.try_get("expires_at")?),
            })
        })
        .transpose()
    }

    async fn reissue_pending_activation(
        &self,
        id: &str,
        token: NewToken,
        mail: NewMessage,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE pending_registrations SET token_hash = $1, expires_at = $2 WHERE id = $3",
        )
        .bind(&token.token_hash)
        .bind(ms(token.expires_at))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        enqueue_tx(&mut tx, &mail).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_quota(&self, takes: &[QuotaTake], now: DateTime<Utc>) -> Result<QuotaOutcome> {
        // Always in the same order, so two takes of the same keys cannot deadlock.
        let mut sorted: Vec<&QuotaTake> = takes.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let longest = sorted.iter().map(|t| t.window).max().unwrap_or_default();
        // Rows whose window ended long ago say nothing any more (outside the transaction,
        // so that it never waits on, or makes wait, the row locks below).
        sqlx::query("DELETE FROM mail_quota WHERE window_start < $1")
            .bind(ms(now - longest - longest))
            .execute(&self.pool)
            .await?;
        let mut tx = self.begin_write().await?;
        for t in sorted {
            // The upsert locks the row: concurrent takes of one key queue here, so the
            // count each one reads back is exact.
            let row = sqlx::query(
                "INSERT INTO mail_quota (key, window_start, used) VALUES ($1, $2, 1) \
                 ON CONFLICT (key) DO UPDATE SET \
                 used = CASE WHEN mail_quota.window_start <= $3 THEN 1 \
                             ELSE mail_quota.used + 1 END, \
                 window_start = CASE WHEN mail_quota.window_start <= $3 THEN $2 \
                                     ELSE mail_quota.window_start END \
                 RETURNING used, window_start",
            )
            .bind(&t.key)
            .bind(ms(now))
            .bind(ms(now - t.window))
            .fetch_one(&mut *tx)
            .await?;
            let used: i64 = row.try_get("used")?;
            if used > t.limit {
                let start = from_ms(row.try_get("window_start")?);
                tx.rollback().await?;
                return Ok(QuotaOutcome::Refused {
                    key: t.key.clone(),
                    until: start + t.window,
                });
            }
        }
        tx.commit().await?;
        Ok(QuotaOutcome::Taken)
    }

    async fn release_enterprise(
        &self,
        enterprise_id: &str,
        now: DateTime<Utc>,
        mails: Vec<NewMessage>,
        audit: NewAudit,
    ) -> Result<Enterprise> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE enterprises SET released_at = $1, released_credit_code = credit_code, \
             credit_code = 'released:' || id WHERE id = $2 AND released_at IS NULL",
        )
        .bind(ms(now))
        .bind(enterprise_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE revoked_at IS NULL \
             AND account_id IN (SELECT id FROM accounts WHERE enterprise_id = $2)",
        )
        .bind(ms(now))
        .bind(enterprise_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE password_resets SET used_at = $1 WHERE used_at IS NULL \
             AND account_id IN (SELECT id FROM accounts WHERE enterprise_id = $2)",
        )
        .bind(ms(now))
        .bind(enterprise_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE accounts SET active = 0, login = 'released:' || id WHERE enterprise_id = $1",
        )
        .bind(enterprise_id)
        .execute(&mut *tx)
        .await?;
        for m in &mails {
            enqueue_tx(&mut tx, m).await?;
        }
        append_audit_tx(&mut tx, &audit).await?;
        let row = sqlx::query(sql_enterprise_by_id())
            .bind(enterprise_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        enterprise_from_row(&row)
    }

    async fn transfer_enterprise_account(
        &self,
        account_id: &str,
        new_email: &str,
        reset: NewToken,
        mails: Vec<NewMessage>,
        audit: NewAudit,
    ) -> Result<Account> {
        let mut tx = self.begin_write().await?;
        // The old password stops working ('!' is no PHC string); the new owner sets one
        // with the reset link.
        let r = sqlx::query(
            "UPDATE accounts SET login = $1, email = $1, password_hash = '!', active = 1 \
             WHERE id = $2 AND role = 'enterprise' AND login NOT LIKE 'released:%'",
        )
        .bind(new_email)
        .bind(account_id)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => return Err(StoreError::NotFound),
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Duplicate("login")),
            Err(e) => return Err(e.into()),
        }
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL",
        )
        .bind(ms(reset.created_at))
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE password_resets SET used_at = $1 WHERE account_id = $2 AND used_at IS NULL",
        )
        .bind(ms(reset.created_at))
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO password_resets (token_hash, account_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&reset.token_hash)
        .bind(account_id)
        .bind(ms(reset.created_at))
        .bind(ms(reset.expires_at))
        .execute(&mut *tx)
        .await?;
        for m in &mails {
            enqueue_tx(&mut tx, m).await?;
        }
        append_audit_tx(&mut tx, &audit).await?;
        let account = fetch_account_tx(&mut tx, account_id).await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn register(&self, reg: NewRegistration) -> Result<Account> {
        let mut tx = self.begin_write().await?;
        let e = &reg.enterprise;
        let inserted = sqlx::query(
            "INSERT INTO enterprises (id, name, credit_code, province, address, legal_representative, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (credit_code) DO NOTHING",
        )
        .bind(&e.id)
        .bind(&e.name)
        .bind(&e.credit_code)
        .bind(&e.province)
        .bind(&e.address)
        .bind(&e.legal_representative)
        .bind(ms(e.created_at))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Duplicate("credit_code"));
        }
        insert_account_tx(&mut tx, &reg.account).await?;
        let t = &reg.activation;
        sqlx::query(
            "INSERT INTO activation_tokens (token_hash, account_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&t.token_hash)
        .bind(&reg.account.id)
        .bind(ms(t.created_at))
        .bind(ms(t.expires_at))
        .execute(&mut *tx)
        .await?;
        enqueue_tx(&mut tx, &reg.mail).await?;
        append_audit_tx(&mut tx, &reg.audit).await?;
        let account = fetch_account_tx(&mut tx, &reg.account.id).await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn upsert_account(&self, a: NewAccount, audit: NewAudit) -> Result<Account> {
        let mut tx = self.begin_write().await?;
        bind_account(sqlx::query(sql_upsert_account()), &a)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(sql_account_by_login())
            .bind(&a.login)
            .fetch_one(&mut *tx)
            .await?;
        let account = account_from_row(&row)?;
        append_audit_tx(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn upsert_enterprise(&self, e: NewEnterprise) -> Result<Enterprise> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO enterprises (id, name, credit_code, province, address, legal_representative, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (credit_code) DO UPDATE SET \
             name = excluded.name, province = excluded.province, address = excluded.address, \
             legal_representative = excluded.legal_representative",
        )
        .bind(&e.id)
        .bind(&e.name)
        .bind(&e.credit_code)
        .bind(&e.province)
        .bind(&e.address)
        .bind(&e.legal_representative)
        .bind(ms(e.created_at))
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(sql_enterprise_by_credit_code())
            .bind(&e.credit_code)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        enterprise_from_row(&row)
    }

    async fn account_by_login(&self, login: &str) -> Result<Option<Account>> {
        self.by_key(sql_account_by_login(), login, account_from_row)
            .await
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        self.by_key(sql_account_by_id(), id, account_from_row).await
    }

    async fn enterprise_account(&self, enterprise_id: &str) -> Result<Option<Account>> {
        self.by_key(sql_enterprise_account(), enterprise_id, account_from_row)
            .await
    }

    async fn enterprise(&self, id: &str) -> Result<Option<Enterprise>> {
        self.by_key(sql_enterprise_by_id(), id, enterprise_from_row)
            .await
    }

    async fn activate(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        mut audit: NewAudit,
    ) -> Result<Account> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE activation_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING account_id",
        )
        .bind(ms(now))
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let account = activate_pending_tx(&mut tx, token_hash, now).await?;
            audit.actor_id = account.id.clone();
            audit.object_id = account.id.clone();
            append_audit_tx(&mut tx, &audit).await?;
            tx.commit().await?;
            return Ok(account);
        };
        let account_id: String = row.try_get("account_id")?;
        sqlx::query("UPDATE accounts SET active = 1 WHERE id = $1")
            .bind(&account_id)
            .execute(&mut *tx)
            .await?;
        audit.actor_id = account_id.clone();
        audit.object_id = account_id.clone();
        append_audit_tx(&mut tx, &audit).await?;
        let account = fetch_account_tx(&mut tx, &account_id).await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn reissue_activation(
        &self,
        account_id: &str,
        token: NewToken,
        mail: NewMessage,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE activation_tokens SET used_at = $1 WHERE account_id = $2 AND used_at IS NULL",
        )
        .bind(ms(token.created_at))
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO activation_tokens (token_hash, account_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&token.token_hash)
        .bind(account_id)
        .bind(ms(token.created_at))
        .bind(ms(token.expires_at))
        .execute(&mut *tx)
        .await?;
        enqueue_tx(&mut tx, &mail).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_session(&self, s: NewSession, audit: NewAudit) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, account_id, created_at, expires_at, key_id) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.token_hash)
        .bind(&s.account_id)
        .bind(ms(s.created_at))
        .bind(ms(s.expires_at))
        .bind(&s.key_id)
        .execute(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session_account(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Account>> {
        sqlx::query(
            "SELECT a.id, a.login, a.email, a.display_name, a.mobile, a.password_hash, a.role, \
             a.enterprise_id, a.province, a.active, a.created_at \
             FROM sessions s JOIN accounts a ON a.id = s.account_id \
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(account_from_row)
        .transpose()
    }

    async fn session_key(&self, token_hash: &str) -> Result<Option<String>> {
        Ok(self
            .by_key(
                "SELECT key_id FROM sessions WHERE token_hash = $1",
                token_hash,
                |r| Ok(r.try_get::<Option<String>, _>("key_id")?),
            )
            .await?
            .flatten())
    }

    async fn create_login_challenge(&self, c: LoginChallenge) -> Result<()> {
        sqlx::query(
            "INSERT INTO key_login_challenges (id, challenge, seed_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&c.id)
        .bind(&c.challenge)
        .bind(&c.seed_hash)
        .bind(ms(c.created_at))
        .bind(ms(c.expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn create_login_challenge_from(
        &self,
        c: LoginChallenge,
        address: &str,
        max_live: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // One creator per address at a time, so the count below cannot be overtaken.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("key-login-challenge:{address}"))
                .execute(&mut *tx)
                .await?;
        }
        // Expired challenges are of no use to anyone: they go as new ones come.
        sqlx::query("DELETE FROM key_login_challenges WHERE expires_at <= $1")
            .bind(ms(c.created_at))
            .execute(&mut *tx)
            .await?;
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM key_login_challenges WHERE address = $1 AND expires_at > $2",
        )
        .bind(address)
        .bind(ms(c.created_at))
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if live >= max_live {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO key_login_challenges \
             (id, challenge, seed_hash, created_at, expires_at, address) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.id)
        .bind(&c.challenge)
        .bind(&c.seed_hash)
        .bind(ms(c.created_at))
        .bind(ms(c.expires_at))
        .bind(address)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn login_challenge(&self, id: &str) -> Result<Option<LoginChallenge>> {
        self.by_key(
            "SELECT id, challenge, seed_hash, created_at, expires_at, used_at \
             FROM key_login_challenges WHERE id = $1",
            id,
            |r| {
                Ok(LoginChallenge {
                    id: r.try_get("id")?,
                    challenge: r.try_get("challenge")?,
                    seed_hash: r.try_get("seed_hash")?,
                    created_at: from_ms(r.try_get("created_at")?),
                    expires_at: from_ms(r.try_get("expires_at")?),
                    used_at: r.try_get::<Option<i64>, _>("used_at")?.map(from_ms),
                })
            },
        )
        .await
    }

    async fn use_login_challenge(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE key_login_challenges SET used_at = $1 \
             WHERE id = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(ms(now))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn start_renewal(&self, r: RenewalRecord) -> Result<RenewalRecord> {
        sqlx::query(
            "INSERT INTO renewals (request_id, key_id, old_serial, new_serial, state, created_at, \
             expires_at) VALUES ($1, $2, $3, NULL, $4, $5, $6) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(&r.request_id)
        .bind(&r.key_id)
        .bind(&r.old_serial)
        .bind(&r.state)
        .bind(ms(r.created_at))
        .bind(ms(r.expires_at))
        .execute(&self.pool)
        .await?;
        self.renewal(&r.request_id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn renewal(&self, request_id: &str) -> Result<Option<RenewalRecord>> {
        self.by_key(sql_renewal_by_request(), request_id, renewal_from_row)
            .await
    }

    async fn renewal_by_new_serial(&self, serial: &str) -> Result<Option<RenewalRecord>> {
        self.by_key(sql_renewal_by_new_serial(), serial, renewal_from_row)
            .await
    }

    async fn renewals_due_to_expire(&self, now: DateTime<Utc>) -> Result<Vec<RenewalRecord>> {
        let rows = sqlx::query(sql_renewals_due())
            .bind(ms(now))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(renewal_from_row).collect()
    }

    async fn revoke_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
        )
        .bind(ms(now))
        .bind(token_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn begin_password_reset(&self, r: NewPasswordReset) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE password_resets SET used_at = $1 WHERE account_id = $2 AND used_at IS NULL",
        )
        .bind(ms(r.token.created_at))
        .bind(&r.account_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO password_resets (token_hash, account_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&r.token.token_hash)
        .bind(&r.account_id)
        .bind(ms(r.token.created_at))
        .bind(ms(r.token.expires_at))
        .execute(&mut *tx)
        .await?;
        enqueue_tx(&mut tx, &r.mail).await?;
        append_audit_tx(&mut tx, &r.audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn complete_password_reset(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: DateTime<Utc>,
        mut audit: NewAudit,
    ) -> Result<Account> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE password_resets SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING account_id",
        )
        .bind(ms(now))
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::TokenInvalid);
        };
        let account_id: String = row.try_get("account_id")?;
        sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(&account_id)
            .execute(&mut *tx)
            .await?;
        // Whoever knew the old password is logged out everywhere.
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL",
        )
        .bind(ms(now))
        .bind(&account_id)
        .execute(&mut *tx)
        .await?;
        audit.actor_id = account_id.clone();
        audit.object_id = account_id.clone();
        append_audit_tx(&mut tx, &audit).await?;
        let account = fetch_account_tx(&mut tx, &account_id).await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn set_collection_choice(&self, c: CollectionChoice, audit: NewAudit) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO collection_choices (request_id, method, recipient, address, mobile, \
             id_number, chosen_at, chosen_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (request_id) DO UPDATE SET method = excluded.method, \
             recipient = excluded.recipient, address = excluded.address, mobile = excluded.mobile, \
             id_number = excluded.id_number, chosen_at = excluded.chosen_at, \
             chosen_by = excluded.chosen_by",
        )
        .bind(&c.request_id)
        .bind(&c.method)
        .bind(&c.recipient)
        .bind(&c.address)
        .bind(&c.mobile)
        .bind(&c.id_number)
        .bind(ms(c.chosen_at))
        .bind(&c.chosen_by)
        .execute(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn collection_choice(&self, request_id: &str) -> Result<Option<CollectionChoice>> {
        self.by_key(
            "SELECT request_id, method, recipient, address, mobile, id_number, chosen_at, \
             chosen_by FROM collection_choices WHERE request_id = $1",
            request_id,
            |r| {
                Ok(CollectionChoice {
                    request_id: r.try_get("request_id")?,
                    method: r.try_get("method")?,
                    recipient: r.try_get("recipient")?,
                    address: r.try_get("address")?,
                    mobile: r.try_get("mobile")?,
                    id_number: r.try_get("id_number")?,
                    chosen_at: from_ms(r.try_get("chosen_at")?),
                    chosen_by: r.try_get("chosen_by")?,
                })
            },
        )
        .await
    }

    async fn reserve_login_name(
        &self,
        enterprise_id: &str,
        province: &str,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let mut tx = self.begin_write().await?;
        // Lock the enterprise: two concurrent reservations cannot both see room.
        let locked = sqlx::query("UPDATE enterprises SET version = version + 1 WHERE id = $1")
            .bind(enterprise_id)
            .execute(&mut *tx)
            .await?;
        if locked.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // Reservations no request used in time are released (everyone's, as they are met).
        sqlx::query(
            "DELETE FROM login_names WHERE source = 'allocated' AND request_id IS NULL \
             AND created_at < $1",
        )
        .bind(ms(now - reservation_ttl()))
        .execute(&mut *tx)
        .await?;
        let unused: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM login_names WHERE enterprise_id = $1 \
             AND source = 'allocated' AND request_id IS NULL",
        )
        .bind(enterprise_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if unused >= ekey_domain::request::MAX_LOGIN_NAME_RESERVATIONS {
            return Err(DomainError::TooManyLoginNameReservations.into());
        }
        let name = allocate_login_name_tx(&mut tx, enterprise_id, province, None, now).await?;
        tx.commit().await?;
        Ok(name)
    }

    async fn create_request(&self, new: NewRequest) -> Result<RequestRecord> {
        let mut tx = self.begin_write().await?;
        // Lock the enterprise first: two concurrent 增办 cannot both see room for a key.
        let locked = sqlx::query("UPDATE enterprises SET version = version + 1 WHERE id = $1")
            .bind(&new.enterprise_id)
            .execute(&mut *tx)
            .await?;
        if locked.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let holdings = holdings_tx(&mut tx, &new.enterprise_id).await?;
        validate_new_request(new.kind, &new.form, holdings)?;
        let login_name = match &new.login_name {
            LoginNameClaim::Allocate => {
                allocate_login_name_tx(
                    &mut tx,
                    &new.enterprise_id,
                    &new.province,
                    Some(&new.id),
                    new.at,
                )
                .await?
            }
            LoginNameClaim::Reserved(name) => {
                // An expired reservation is no longer the enterprise's.
                let bound = sqlx::query(
                    "UPDATE login_names SET request_id = $1 WHERE name = $2 AND enterprise_id = $3 \
                     AND source = 'allocated' AND request_id IS NULL AND created_at >= $4",
                )
                .bind(&new.id)
                .bind(name)
                .bind(&new.enterprise_id)
                .bind(ms(new.at - reservation_ttl()))
                .execute(&mut *tx)
                .await?;
                if bound.rows_affected() == 0 {
                    return Err(match login_name_owner(&mut tx, name).await? {
                        Some(owner) if owner != new.enterprise_id => DomainError::LoginNameTaken,
                        _ => DomainError::LoginNameNotOwned,
                    }
                    .into());
                }
                name.clone()
            }
            LoginNameClaim::Existing(name) => {
                // Nothing is claimed yet: the name is bound when the agency approves (see
                // `bind_existing_login_name_tx`), so an unapproved request squats nothing.
                // Refused now only when the binding could never succeed: the name is bound
                // to another enterprise, or serves one of this enterprise's open requests or
                // live keys.
                if !existing_login_name_free_tx(&mut tx, name, &new.enterprise_id, None).await? {
                    return Err(DomainError::LoginNameTaken.into());
                }
                name.clone()
            }
            LoginNameClaim::Original(name) => {
                if login_name_owner(&mut tx, name).await?.as_deref()
                    != Some(new.enterprise_id.as_str())
                {
                    return Err(DomainError::LoginNameNotOwned.into());
                }
                let target = key_target_tx(&mut tx, &new.enterprise_id, name).await?;
                ekey_domain::keycap::check_key_target(new.kind, &target, holdings)?;
                name.clone()
            }
        };
        let day = new
            .at
            .with_timezone(&shanghai())
            .format("%Y%m%d")
            .to_string();
        let counter: i64 = sqlx::query(
            "INSERT INTO counters (name, value) VALUES ($1, 1) \
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
        )
        .bind(format!("request-{day}"))
        .fetch_one(&mut *tx)
        .await?
        .try_get("value")?;
        let number = format!(
            "EK{}{}{:05}",
            new.province.get(..2).unwrap_or("00"),
            day,
            counter
        );
        let form =
            serde_json::to_string(&new.form).map_err(|e| StoreError::Backend(e.to_string()))?;
        sqlx::query(
            "INSERT INTO requests (id, number, kind, status, version, enterprise_id, province, \
             login_name, form, due_at, created_at, updated_at) \
             VALUES ($1, $2, $3, 'draft', 1, $4, $5, $6, $7, NULL, $8, $8)",
        )
        .bind(&new.id)
        .bind(&number)
        .bind(new.kind.as_str())
        .bind(&new.enterprise_id)
        .bind(&new.province)
        .bind(&login_name)
        .bind(&form)
        .bind(ms(new.at))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO request_history (request_id, seq, at, actor_id, actor_role, action, \
             from_status, to_status, remark) VALUES ($1, 1, $2, $3, 'enterprise', 'create', NULL, 'draft', NULL)",
        )
        .bind(&new.id)
        .bind(ms(new.at))
        .bind(&new.actor_id)
        .execute(&mut *tx)
        .await?;
        let mut audit = new.audit.clone();
        audit.object_type = "request".into();
        audit.object_id = new.id.clone();
        if audit.after.is_empty() {
            audit.after = format!("draft {number} {login_name}");
        }
        append_audit_tx(&mut tx, &audit).await?;
        let row = sqlx::query(sql_request_by_id())
            .bind(&new.id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        request_from_row(&row)
    }

    async fn request(&self, id: &str) -> Result<Option<RequestRecord>> {
        self.by_key(sql_request_by_id(), id, request_from_row).await
    }

    async fn request_by_number(&self, number: &str) -> Result<Option<RequestRecord>> {
        self.by_key(sql_request_by_number(), number, request_from_row)
            .await
    }

    async fn list_requests(&self, f: &RequestFilter) -> Result<Vec<RequestRecord>> {
        let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        let rows = sqlx::query(sql_list_requests())
            .bind(f.enterprise_id.as_deref())
            .bind(f.province.as_deref())
            .bind(statuses.join(","))
            .bind(if f.limit > 0 { f.limit.min(500) } else { 100 })
            .bind(f.offset.max(0))
            .bind(f.query.as_deref().map(str::trim).filter(|q| !q.is_empty()))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    async fn history_since(
        &self,
        province: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Kind, String, HistoryEntry)>> {
        let rows = sqlx::query(
            "SELECT h.request_id, r.kind, r.province, h.seq, h.at, h.actor_id, h.actor_role, \
             h.action, h.from_status, h.to_status, h.remark, h.concerns \
             FROM request_history h JOIN requests r ON r.id = h.request_id \
             WHERE (CAST($1 AS TEXT) IS NULL OR r.province = $1) AND h.at >= $2 \
             ORDER BY h.request_id, h.seq",
        )
        .bind(province)
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                Ok((
                    r.try_get("request_id")?,
                    Kind::parse(&kind).map_err(|_| corrupt("kind"))?,
                    r.try_get("province")?,
                    history_from_row(r)?,
                ))
            })
            .collect()
    }

    async fn history(&self, request_id: &str) -> Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor_id, actor_role, action, from_status, to_status, remark, \
             concerns FROM request_history WHERE request_id = $1 ORDER BY seq",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(history_from_row).collect()
    }

    async fn apply_transition(&self, t: Transition) -> Result<RequestRecord> {
        let mut batch = self
            .apply_batch(Batch {
                transitions: vec![t],
                ..Batch::default()
            })
            .await?;
        batch.pop().ok_or(StoreError::NotFound)
    }

    async fn create_key(&self, k: NewKey, audit: NewAudit) -> Result<KeyRecord> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO keys (id, enterprise_id, login_name, serial, status, created_at, updated_at, \
             request_id, token_kind, certificate_serial, version) \
             VALUES ($1, $2, $3, $4, 'personalised', $5, $5, $6, $7, $8, 1) \
             ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(&k.id)
        .bind(&k.enterprise_id)
        .bind(&k.login_name)
        .bind(&k.token_serial)
        .bind(ms(k.at))
        .bind(&k.request_id)
        .bind(&k.token_kind)
        .bind(&k.certificate_serial)
        .execute(&mut *tx)
        .await;
        let inserted = match inserted {
            Ok(done) => done.rows_affected() == 1,
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Duplicate("token_serial")),
            Err(e) => return Err(e.into()),
        };
        if inserted {
            // The e-seal record travels with the key: same enterprise, same certificate.
            sqlx::query(
                "INSERT INTO eseals (id, key_id, enterprise_id, name, certificate_serial, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&k.eseal_id)
            .bind(&k.id)
            .bind(&k.enterprise_id)
            .bind(&k.eseal_name)
            .bind(&k.certificate_serial)
            .bind(ms(k.at))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE certificates SET key_id = $1 WHERE serial = $2")
                .bind(&k.id)
                .bind(&k.certificate_serial)
                .execute(&mut *tx)
                .await?;
            append_audit_tx(&mut tx, &audit).await?;
        }
        let row = sqlx::query(sql_key_by_request())
            .bind(&k.request_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        key_from_row(&row)
    }

    async fn key(&self, id: &str) -> Result<Option<KeyRecord>> {
        self.by_key(sql_key_by_id(), id, key_from_row).await
    }

    async fn key_by_request(&self, request_id: &str) -> Result<Option<KeyRecord>> {
        self.by_key(sql_key_by_request(), request_id, key_from_row)
            .await
    }

    async fn key_by_certificate(&self, serial: &str) -> Result<Option<KeyRecord>> {
        self.by_key(sql_key_by_certificate(), serial, key_from_row)
            .await
    }

    async fn keys_by_login_name(&self, login_name: &str) -> Result<Vec<KeyRecord>> {
        self.all_by_key(sql_keys_by_login_name(), login_name, key_from_row)
            .await
    }

    async fn keys_of_enterprise(&self, enterprise_id: &str) -> Result<Vec<KeyRecord>> {
        self.all_by_key(sql_keys_of_enterprise(), enterprise_id, key_from_row)
            .await
    }

    async fn record_key_return(
        &self,
        key_id: &str,
        at: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<DateTime<Utc>> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(
            "SELECT k.status, r.returned_at FROM keys k \
             LEFT JOIN key_returns r ON r.key_id = k.id WHERE k.id = $1",
        )
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Err(StoreError::NotFound);
        };
        let status: String = row.try_get("status")?;
        let state =
            ekey_domain::key::KeyState::parse(&status).ok_or_else(|| corrupt("key status"))?;
        let returned: Option<i64> = row.try_get("returned_at")?;
        ekey_domain::keycap::check_return(state, returned.is_some())?;
        sqlx::query(
            "INSERT INTO key_returns (key_id, returned_at, recorded_by) VALUES ($1, $2, $3)",
        )
        .bind(key_id)
        .bind(ms(at))
        .bind(&audit.actor_id)
        .execute(&mut *tx)
        .await?;
        let mut audit = audit;
        audit.object_type = "key".into();
        audit.object_id = key_id.to_string();
        append_audit_tx(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(at)
    }

    async fn key_return(&self, key_id: &str) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query("SELECT returned_at FROM key_returns WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get::<i64, _>("returned_at").map(from_ms))
            .transpose()
            .map_err(Into::into)
    }

    async fn key_holdings(&self, enterprise_id: &str) -> Result<Holdings> {
        let mut conn = self.pool.acquire().await?;
        holdings_tx(&mut conn, enterprise_id).await
    }

    async fn keys_in_shipment(&self, shipment_id: &str) -> Result<Vec<KeyRecord>> {
        self.all_by_key(sql_keys_in_shipment(), shipment_id, key_from_row)
            .await
    }

    async fn reserve_certificate(&self, r: CertificateReservation) -> Result<CertificateRecord> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO certificates (serial, idempotency_key, enterprise_id, key_id, subject, issued_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&r.serial)
        .bind(&r.idempotency_key)
        .bind(&r.enterprise_id)
        .bind(&r.key_id)
        .bind(&r.subject)
        .bind(ms(r.at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Duplicate("serial")),
            Err(e) => return Err(e.into()),
        }
        let row = sqlx::query(sql_certificate_by_idempotency())
            .bind(&r.idempotency_key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        certificate_from_row(&row)
    }

    async fn complete_certificate(
        &self,
        serial: &str,
        der: &[u8],
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<CertificateRecord> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE certificates SET der = $1, not_before = $2, not_after = $3 \
             WHERE serial = $4 AND der IS NULL",
        )
        .bind(der.to_vec())
        .bind(ms(not_before))
        .bind(ms(not_after))
        .bind(serial)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            append_audit_tx(&mut tx, &audit).await?;
        }
        let row = sqlx::query(sql_certificate_by_serial())
            .bind(serial)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        certificate_from_row(&row)
    }

    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>> {
        self.by_key(sql_certificate_by_serial(), serial, certificate_from_row)
            .await
    }

    async fn clear_key_for_issuance(
        &self,
        spki_sha256: &str,
        credit_code: &str,
        at: DateTime<Utc>,
    ) -> Result<crate::KeyClearance> {
        let mut tx = self.begin_write().await?;
        let clearance = crate::hygiene::clear_key(&mut tx, spki_sha256, credit_code, at).await?;
        tx.commit().await?;
        Ok(clearance)
    }

    async fn revoke(&self, r: Revocation, audit: NewAudit) -> Result<CertificateRecord> {
        let mut tx = self.begin_write().await?;
        revoke_tx(&mut tx, &r).await?;
        append_audit_tx(&mut tx, &audit).await?;
        let row = sqlx::query(sql_certificate_by_serial())
            .bind(&r.serial)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        certificate_from_row(&row)
    }

    async fn revoke_by_hand(
        &self,
        r: Revocation,
        audit: NewAudit,
        key: Option<crate::KeyRevocation>,
    ) -> Result<CertificateRecord> {
        let mut tx = self.begin_write().await?;
        revoke_tx(&mut tx, &r).await?;
        if let Some(k) = &key {
            crate::handrevoke::follow_up(&mut tx, &r.serial, k).await?;
        }
        append_audit_tx(&mut tx, &audit).await?;
        let row = sqlx::query(sql_certificate_by_serial())
            .bind(&r.serial)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        certificate_from_row(&row)
    }

    async fn revoked(&self) -> Result<Vec<(String, DateTime<Utc>, String)>> {
        let rows = sqlx::query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("serial")?,
                    from_ms(r.try_get("revoked_at")?),
                    r.try_get::<Option<String>, _>("revocation_reason")?
                        .unwrap_or_else(|| "unspecified".into()),
                ))
            })
            .collect()
    }

    async fn ca_state(&self) -> Result<(i64, i64)> {
        let row = sqlx::query("SELECT crl_number, revocations FROM ca_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.try_get("crl_number")?, row.try_get("revocations")?))
    }

    async fn next_crl_number(&self) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let n: i64 = sqlx::query(
            "UPDATE ca_state SET crl_number = crl_number + 1 WHERE id = 1 RETURNING crl_number",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get("crl_number")?;
        tx.commit().await?;
        Ok(n)
    }

    async fn crl_state(&self) -> Result<(i64, Option<PublishedCrl>)> {
        let row = sqlx::query(
            "SELECT s.revocations AS current, c.number, c.revocations, c.made_at \
             FROM ca_state s LEFT JOIN crls c ON c.number = (SELECT MAX(number) FROM crls) \
             WHERE s.id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        let current: i64 = row.try_get("current")?;
        let number: Option<i64> = row.try_get("number")?;
        let published = match number {
            Some(number) => Some(PublishedCrl {
                number,
                revocations: row.try_get("revocations")?,
                made_at: from_ms(row.try_get("made_at")?),
            }),
            None => None,
        };
        Ok((current, published))
    }

    async fn publish_crl(&self, crl: PublishedCrl, der: &[u8]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO crls (number, revocations, made_at, der) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (number) DO NOTHING",
        )
        .bind(crl.number)
        .bind(crl.revocations)
        .bind(ms(crl.made_at))
        .bind(der)
        .execute(&mut *tx)
        .await?;
        // Keep a few: an instance may be reading the one just superseded.
        sqlx::query("DELETE FROM crls WHERE number < $1")
            .bind(crl.number - 4)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn published_crl(&self, number: i64) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT der FROM crls WHERE number = $1")
            .bind(number)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get::<Vec<u8>, _>("der").map_err(Into::into))
            .transpose()
    }

    async fn claim_timer(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO timers (name, next_run_at, runs) VALUES ($1, $2, 0) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        // One conditional UPDATE of one row: under PostgreSQL a second instance waits for
        // the first's row lock, then re-checks the condition and finds the lease taken.
        let claimed = sqlx::query(
            "UPDATE timers SET lease_owner = $1, lease_until = $2 \
             WHERE name = $3 AND next_run_at <= $4 AND (lease_until IS NULL OR lease_until < $4)",
        )
        .bind(owner)
        .bind(ms(lease_until))
        .bind(name)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(claimed.rows_affected() == 1)
    }

    async fn finish_timer(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        next_run_at: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE timers SET lease_owner = NULL, lease_until = NULL, runs = runs + 1, \
             last_run_at = $1, last_owner = $2, next_run_at = $3 \
             WHERE name = $4 AND lease_owner = $2",
        )
        .bind(ms(now))
        .bind(owner)
        .bind(ms(next_run_at))
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn timer(&self, name: &str) -> Result<Option<TimerRecord>> {
        let row = sqlx::query(
            "SELECT name, next_run_at, lease_owner, runs, last_run_at, last_owner \
             FROM timers WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TimerRecord {
                name: r.try_get("name")?,
                next_run_at: from_ms(r.try_get("next_run_at")?),
                lease_owner: r.try_get("lease_owner")?,
                runs: r.try_get("runs")?,
                last_run_at: r.try_get::<Option<i64>, _>("last_run_at")?.map(from_ms),
                last_owner: r.try_get("last_owner")?,
            })
        })
        .transpose()
    }

    async fn put_holiday_year(&self, year: HolidayYear, audit: NewAudit) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO holiday_years (year, data, loaded_at, loaded_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (year) DO UPDATE SET data = excluded.data, \
             loaded_at = excluded.loaded_at, loaded_by = excluded.loaded_by",
        )
        .bind(i64::from(year.year))
        .bind(&year.data)
        .bind(ms(year.loaded_at))
        .bind(&year.loaded_by)
        .execute(&mut *tx)
        .await?;
        append_audit_tx(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reschedule_deadline(
        &self,
        change: crate::DeadlineChange,
        audit: NewAudit,
    ) -> Result<RequestRecord> {
        let mut tx = self.begin_write().await?;
        crate::reschedule::in_tx(&mut tx, &change).await?;
        append_audit_tx(&mut tx, &audit).await?;
        let row = sqlx::query(sql_request_by_id())
            .bind(&change.request_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        request_from_row(&row)
    }

    async fn holiday_years(&self) -> Result<Vec<HolidayYear>> {
        let rows =
            sqlx::query("SELECT year, data, loaded_at, loaded_by FROM holiday_years ORDER BY year")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(HolidayYear {
                    year: i32::try_from(r.try_get::<i64, _>("year")?).unwrap_or_default(),
                    data: r.try_get("data")?,
                    loaded_at: from_ms(r.try_get("loaded_at")?),
                    loaded_by: r.try_get("loaded_by")?,
                })
            })
            .collect()
    }

    async fn holidays_version(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(MAX(loaded_at), 0) AS latest FROM holiday_years",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("latest")?))
    }

    async fn apply_batch(&self, batch: Batch) -> Result<Vec<RequestRecord>> {
        let mut tx = self.begin_write().await?;
        // Requests first: their check-and-set takes the write locks early.
        for t in &batch.transitions {
            transition_tx(&mut tx, t).await?;
        }
        if let Some(sh) = &batch.new_shipment {
            let inserted = sqlx::query(
                "INSERT INTO shipments (id, number, province, courier, tracking_number, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&sh.id)
            .bind(&sh.number)
            .bind(&sh.province)
            .bind(&sh.courier)
            .bind(&sh.tracking_number)
            .bind(ms(sh.created_at))
            .bind(&sh.created_by)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Duplicate("shipment_number"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some((id, at, by)) = &batch.shipment_received {
            let done = sqlx::query(
                "UPDATE shipments SET received_at = $1, received_by = $2 WHERE id = $3 AND received_at IS NULL",
            )
            .bind(ms(*at))
            .bind(by)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict);
            }
        }
        for k in &batch.key_changes {
            let done = sqlx::query(
                "UPDATE keys SET status = $1, version = version + 1, updated_at = $2, \
                 shipment_id = COALESCE($3, shipment_id), \
                 certificate_serial = COALESCE($6, certificate_serial) \
                 WHERE id = $4 AND version = $5",
            )
            .bind(k.to.as_str())
            .bind(ms(Utc::now()))
            .bind(&k.shipment_id)
            .bind(&k.key_id)
            .bind(k.expected_version)
            .bind(&k.certificate_serial)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict);
            }
        }
        if let Some(h) = &batch.handover {
            sqlx::query(
                "INSERT INTO handovers (request_id, method, record, at, by_account) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&h.request_id)
            .bind(&h.method)
            .bind(&h.record)
            .bind(ms(h.at))
            .bind(&h.by_account)
            .execute(&mut *tx)
            .await?;
        }
        for r in &batch.revocations {
            revoke_tx(&mut tx, r).await?;
        }
        if let Some(rc) = &batch.renewal {
            let at = ms(rc.at);
            let done = sqlx::query(
                "UPDATE renewals SET state = $1, new_serial = COALESCE($2, new_serial), \
                 issued_at = CASE WHEN $3 = 'issued' THEN $4 ELSE issued_at END, \
                 confirmed_at = CASE WHEN $3 = 'confirmed' THEN $4 ELSE confirmed_at END, \
                 old_revoked_at = CASE WHEN $5 = 1 THEN $4 ELSE old_revoked_at END \
                 WHERE request_id = $6 AND state = $7",
            )
            .bind(&rc.to_state)
            .bind(&rc.new_serial)
            .bind(&rc.to_state)
            .bind(at)
            .bind(i64::from(rc.old_revoked))
            .bind(&rc.request_id)
            .bind(&rc.from_state)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict);
            }
        }
        for a in &batch.audits {
            append_audit_tx(&mut tx, a).await?;
        }
        let mut out = Vec::with_capacity(batch.transitions.len());
        for t in &batch.transitions {
            let row = sqlx::query(sql_request_by_id())
                .bind(&t.request_id)
                .fetch_one(&mut *tx)
                .await?;
            out.push(request_from_row(&row)?);
        }
        // Crash point: the whole change written inside the transaction, not committed.
        crate::fault_point("server.batch.before_commit");
        tx.commit().await?;
        Ok(out)
    }

    async fn shipment(&self, id: &str) -> Result<Option<ShipmentRecord>> {
        self.by_key(sql_shipment_by_id(), id, shipment_from_row)
            .await
    }

    async fn shipments(&self, province: Option<&str>) -> Result<Vec<ShipmentRecord>> {
        let rows = sqlx::query(sql_shipments())
            .bind(province)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(shipment_from_row).collect()
    }

    async fn stage_material(&self, m: NewMaterial, audit: NewAudit) -> Result<MaterialRecord> {
        let mut tx = self.begin_write().await?;
        // Touch the request first: it takes the row (or database) lock, so confirm-upload
        // cannot slip between the status check and the insert.
        let touched = sqlx::query("UPDATE requests SET updated_at = $1 WHERE id = $2")
            .bind(ms(m.uploaded_at))
            .bind(&m.request_id)
            .execute(&mut *tx)
            .await?;
        if touched.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let status: String = sqlx::query("SELECT status FROM requests WHERE id = $1")
            .bind(&m.request_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("status")?;
        let status = Status::parse(&status).ok_or_else(|| corrupt("requests.status"))?;
        if !m.allowed.contains(&status) {
            return Err(DomainError::MaterialsLocked(status).into());
        }
        sqlx::query(
            "UPDATE materials SET state = 'superseded' WHERE request_id = $1 AND item = $2 AND state = 'staged'",
        )
        .bind(&m.request_id)
        .bind(m.item.as_str())
        .execute(&mut *tx)
        .await?;
        let id: i64 = sqlx::query(
            "INSERT INTO materials (request_id, item, state, blob_key, content_type, size, sha256, \
             file_name, uploaded_at, uploaded_by) \
             VALUES ($1, $2, 'staged', $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(&m.request_id)
        .bind(m.item.as_str())
        .bind(&m.blob_key)
        .bind(&m.content_type)
        .bind(m.size)
        .bind(&m.sha256)
        .bind(&m.file_name)
        .bind(ms(m.uploaded_at))
        .bind(&m.uploaded_by)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        append_audit_tx(&mut tx, &audit).await?;
        let row = sqlx::query(sql_material_by_id())
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        material_from_row(&row)
    }

    async fn materials(&self, request_id: &str) -> Result<Vec<MaterialRecord>> {
        self.all_by_key(sql_materials_of_request(), request_id, material_from_row)
            .await
    }

    async fn append_audit(&self, audit: NewAudit) -> Result<()> {
        let mut tx = self.begin_write().await?;
        append_audit_tx(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn verify_audit(&self) -> Result<AuditReport> {
        let mut prev = GENESIS.to_string();
        let mut expected_seq = 1i64;
        let mut checked = 0i64;
        const PAGE: i64 = 5000;
        // The end of the chain as it stands now: records appended while we walk are not
        // part of this verification (and must not look like a truncated log).
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let head_seq: i64 = head.try_get("seq")?;
        let head_hash: String = head.try_get("hash")?;
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, actor_id, actor_role, address, action, object_type, object_id, \
                 before_state, after_state, prev_hash, hash FROM audit_log \
                 WHERE seq >= $1 AND seq <= $3 ORDER BY seq LIMIT $2",
            )
            .bind(expected_seq)
            .bind(PAGE)
            .bind(head_seq)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                let broken = |why: &str| {
                    Ok(AuditReport {
                        records: checked,
                        first_broken: Some((seq, why.to_string())),
                    })
                };
                if seq != expected_seq {
                    return Ok(AuditReport {
                        records: checked,
                        first_broken: Some((expected_seq, "record missing".into())),
                    });
                }
                let stored_prev: String = r.try_get("prev_hash")?;
                let stored_hash: String = r.try_get("hash")?;
                if stored_prev != prev {
                    return broken("does not link to the record before it");
                }
                let fields = (
                    r.try_get::<String, _>("actor_id")?,
                    r.try_get::<String, _>("actor_role")?,
                    r.try_get::<String, _>("address")?,
                    r.try_get::<String, _>("action")?,
                    r.try_get::<String, _>("object_type")?,
                    r.try_get::<String, _>("object_id")?,
                    r.try_get::<String, _>("before_state")?,
                    r.try_get::<String, _>("after_state")?,
                );
                let computed = chain_hash(
                    &prev,
                    &AuditFields {
                        seq,
                        at_ms: r.try_get("at")?,
                        actor_id: &fields.0,
                        actor_role: &fields.1,
                        address: &fields.2,
                        action: &fields.3,
                        object_type: &fields.4,
                        object_id: &fields.5,
                        before: &fields.6,
                        after: &fields.7,
                    },
                );
                if computed != stored_hash {
                    return broken("content does not match its hash");
                }
                prev = stored_hash;
                expected_seq += 1;
                checked += 1;
            }
        }

        if head_seq != checked || head_hash != prev {
            return Ok(AuditReport {
                records: checked,
                first_broken: Some((checked + 1, "records missing at the end of the log".into())),
            });
        }
        Ok(AuditReport {
            records: checked,
            first_broken: None,
        })
    }

    async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND available_at <= $3 \
                 AND (lease_until IS NULL OR lease_until < $3) ORDER BY id LIMIT $4) \
                 RETURNING id, channel, recipient, subject, body, dedup_key, attempts, created_at"
            }
            Backend::Postgres => {
                "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND available_at <= $3 \
                 AND (lease_until IS NULL OR lease_until < $3) ORDER BY id LIMIT $4 \
                 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, channel, recipient, subject, body, dedup_key, attempts, created_at"
            }
        };
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(ms(lease_until))
            .bind(ms(now))
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut out: Vec<OutboxMessage> =
            rows.iter().map(outbox_from_row).collect::<Result<_>>()?;
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    async fn outbox_delivered(&self, id: i64, owner: &str, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $1, lease_owner = NULL, lease_until = NULL \
             WHERE id = $2 AND lease_owner = $3 AND status = 'pending'",
        )
        .bind(ms(now))
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn outbox_delivered_redacted(
        &self,
        id: i64,
        owner: &str,
        now: DateTime<Utc>,
        body: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $1, lease_owner = NULL, \
             lease_until = NULL, body = $4 \
             WHERE id = $2 AND lease_owner = $3 AND status = 'pending'",
        )
        .bind(ms(now))
        .bind(id)
        .bind(owner)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn outbox_failed(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry_at: DateTime<Utc>,
        dead: bool,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET status = $1, available_at = $2, last_error = $3, \
             lease_owner = NULL, lease_until = NULL WHERE id = $4 AND lease_owner = $5",
        )
        .bind(if dead { "dead" } else { "pending" })
        .bind(ms(retry_at))
        .bind(error)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut c = OutboxCounts::default();
        for r in rows {
            let status: String = r.try_get("status")?;
            let n: i64 = r.try_get("n")?;
            match status.as_str() {
                "pending" => c.pending = n,
                "sent" => c.sent = n,
                _ => c.dead += n,
            }
        }
        Ok(c)
    }

    async fn enqueue(&self, messages: Vec<NewMessage>) -> Result<usize> {
        let mut tx = self.begin_write().await?;
        let mut added = 0;
        for m in &messages {
            let before = sqlx::query("SELECT 1 AS one FROM outbox WHERE dedup_key = $1")
                .bind(&m.dedup_key)
                .fetch_optional(&mut *tx)
                .await?;
            if before.is_none() {
                enqueue_tx(&mut tx, m).await?;
                added += 1;
            }
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn expiring_keys(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ExpiringKey>> {
        let rows = sqlx::query(
            "SELECT k.id, k.enterprise_id, k.login_name, c.serial, c.not_after, \
             (SELECT MIN(a.email) FROM accounts a WHERE a.enterprise_id = k.enterprise_id \
              AND a.role = 'enterprise' AND a.active = 1) AS email \
             FROM keys k JOIN certificates c ON c.serial = k.certificate_serial \
             WHERE k.status IN ('active', 'locked') AND c.revoked_at IS NULL \
             AND c.not_after > $1 AND c.not_after <= $2 ORDER BY c.not_after",
        )
        .bind(ms(after))
        .bind(ms(until))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .filter_map(|r| {
                let email: Option<String> = r.try_get("email").ok().flatten();
                email.map(|email| {
                    Ok(ExpiringKey {
                        key_id: r.try_get("id")?,
                        enterprise_id: r.try_get("enterprise_id")?,
                        login_name: r.try_get("login_name")?,
                        serial: r.try_get("serial")?,
                        not_after: from_ms(r.try_get("not_after")?),
                        email,
                    })
                })
            })
            .collect()
    }

    async fn create_account(&self, a: NewAccount, audit: NewAudit) -> Result<Account> {
        let mut tx = self.begin_write().await?;
        insert_account_tx(&mut tx, &a).await?;
        append_audit_tx(&mut tx, &audit).await?;
        let account = fetch_account_tx(&mut tx, &a.id).await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn change_password(
        &self,
        account_id: &str,
        password_hash: &str,
        keep_session: &str,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(account_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        // Every other session ends: whoever knew the old password is logged out.
        let ended = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 \
             WHERE account_id = $2 AND revoked_at IS NULL AND token_hash <> $3",
        )
        .bind(ms(now))
        .bind(account_id)
        .bind(keep_session)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        append_audit_tx(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn login_failures(&self, keys: &[String]) -> Result<Vec<(String, i64, DateTime<Utc>)>> {
        let mut out = Vec::new();
        for key in keys {
            let row = sqlx::query("SELECT failures, last_at FROM login_failures WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                out.push((
                    key.clone(),
                    row.try_get::<i64, _>("failures")?,
                    from_ms(row.try_get::<i64, _>("last_at")?),
                ));
            }
        }
        Ok(out)
    }

    async fn record_login_failure(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for key in keys {
            // Failures older than `forget_before` are forgotten: the count starts again.
            sqlx::query(
                "INSERT INTO login_failures (key, failures, last_at) VALUES ($1, 1, $2) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN login_failures.last_at < $3 THEN 1 \
                                 ELSE login_failures.failures + 1 END, \
                 last_at = $2",
            )
            .bind(key)
            .bind(ms(now))
            .bind(ms(forget_before))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reserve_attempt(
        &self,
        buckets: &[(String, ekey_domain::throttle::Policy)],
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<ekey_domain::throttle::Attempt> {
        use ekey_domain::throttle::Attempt;
        // Rows are locked in one order (by key) so that two reservations cannot deadlock.
        let mut sorted: Vec<&(String, ekey_domain::throttle::Policy)> = buckets.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sorted.dedup_by(|a, b| a.0 == b.0);
        let forget = (now - forget_before).to_std().unwrap_or_default();
        let mut tx = self.begin_write().await?;
        let mut until: Option<DateTime<Utc>> = None;
        for (key, policy) in &sorted {
            // SQLite: BEGIN IMMEDIATE already serialises writers. PostgreSQL: make the row
            // exist (a concurrent insert waits for ours), then lock it until commit.
            let row = match self.backend {
                Backend::Sqlite => {
                    sqlx::query("SELECT failures, last_at FROM login_failures WHERE key = $1")
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?
                }
                Backend::Postgres => {
                    sqlx::query(
                        "INSERT INTO login_failures (key, failures, last_at) VALUES ($1, 0, $2) \
                         ON CONFLICT (key) DO NOTHING",
                    )
                    .bind(key)
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "SELECT failures, last_at FROM login_failures WHERE key = $1 FOR UPDATE",
                    )
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
            let Some(row) = row else { continue };
            let count = row.try_get::<i64, _>("failures")?;
            let last_at = from_ms(row.try_get::<i64, _>("last_at")?);
            if let Some(end) = policy.next_allowed(count, last_at, now, forget)
                && until.is_none_or(|u| end > u)
            {
                until = Some(end);
            }
        }
        if let Some(until) = until {
            tx.rollback().await?;
            return Ok(Attempt::WaitUntil(until));
        }
        for (key, _) in &sorted {
            sqlx::query(
                "INSERT INTO login_failures (key, failures, last_at) VALUES ($1, 1, $2) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN login_failures.last_at < $3 THEN 1 \
                                 ELSE login_failures.failures + 1 END, \
                 last_at = $2",
            )
            .bind(key)
            .bind(ms(now))
            .bind(ms(forget_before))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Attempt::Reserved)
    }

    async fn release_attempt(&self, decrement: &[String], clear: &[String]) -> Result<()> {
        // In key order, like reservations, so that the two cannot deadlock.
        let mut ops: Vec<(&String, bool)> = decrement
            .iter()
            .map(|k| (k, false))
            .chain(clear.iter().map(|k| (k, true)))
            .collect();
        ops.sort();
        let mut tx = self.begin_write().await?;
        for (key, clear) in ops {
            if !clear {
                sqlx::query(
                    "UPDATE login_failures SET failures = failures - 1 \
                     WHERE key = $1 AND failures > 0",
                )
                .bind(key)
                .execute(&mut *tx)
                .await?;
            }
            // A count back at zero is no row at all: the table holds only what is counted.
            let sql = if clear {
                "DELETE FROM login_failures WHERE key = $1"
            } else {
                "DELETE FROM login_failures WHERE key = $1 AND failures <= 0"
            };
            sqlx::query(sql).bind(key).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_account_active(
        &self,
        id: &str,
        active: bool,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<Account> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE accounts SET active = $1 WHERE id = $2")
            .bind(i64::from(active))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        if !active {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL",
            )
            .bind(ms(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        append_audit_tx(&mut tx, &audit).await?;
        let account = fetch_account_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn accounts_of_role(&self, role: &str) -> Result<Vec<Account>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLS} FROM accounts WHERE role = $1 ORDER BY login"
        )))
        .bind(role)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    async fn search_certificates(&self, query: &str, limit: i64) -> Result<Vec<CertificateRecord>> {
        let q = query.trim();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CERT_COLS} FROM certificates WHERE der IS NOT NULL AND ( \
             serial = LOWER($1) \
             OR enterprise_id IN (SELECT id FROM enterprises WHERE credit_code = UPPER($1)) \
             OR key_id IN (SELECT id FROM keys WHERE login_name = $1)) \
             ORDER BY issued_at DESC LIMIT $2"
        )))
        .bind(q.replace(':', ""))
        .bind(limit.clamp(1, 500))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(certificate_from_row).collect()
    }

    async fn certificate_counts(&self, since: DateTime<Utc>) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM certificates WHERE der IS NOT NULL AND issued_at >= $1) AS issued, \
             (SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL AND revoked_at >= $1) AS revoked",
        )
        .bind(ms(since))
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("issued")?, row.try_get("revoked")?))
    }

    async fn outbox_dead(&self, limit: i64) -> Result<Vec<(OutboxMessage, String)>> {
        let rows = sqlx::query(
            "SELECT id, channel, recipient, subject, body, dedup_key, attempts, created_at, \
             last_error FROM outbox WHERE status = 'dead' ORDER BY id DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let error: Option<String> = r.try_get("last_error")?;
                Ok((outbox_from_row(r)?, error.unwrap_or_default()))
            })
            .collect()
    }

    async fn outbox_retry(&self, id: i64, now: DateTime<Utc>, audit: NewAudit) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE outbox SET status = 'pending', attempts = 0, available_at = $1, \
             lease_owner = NULL, lease_until = NULL WHERE id = $2 AND status = 'dead'",
        )
        .bind(ms(now))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            append_audit_tx(&mut tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn dev_mailbox_put(&self, msg: &OutboxMessage, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO dev_mailbox (outbox_id, channel, recipient, subject, body, sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (outbox_id) DO NOTHING",
        )
        .bind(msg.id)
        .bind(msg.channel.as_str())
        .bind(&msg.recipient)
        .bind(&msg.subject)
        .bind(&msg.body)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn dev_mailbox(&self) -> Result<Vec<DevMail>> {
        let rows = sqlx::query(
            "SELECT channel, recipient, subject, body, sent_at FROM dev_mailbox ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let channel: String = r.try_get("channel")?;
                Ok(DevMail {
                    to: r.try_get("recipient")?,
                    subject: r.try_get("subject")?,
                    body: r.try_get("body")?,
                    sent_at: from_ms(r.try_get("sent_at")?),
                    channel: if channel == "sms" {
                        Channel::Sms
                    } else {
                        Channel::Email
                    },
                })
            })
            .collect()
    }
}

/// One request transition inside a transaction: check-and-set, history, materials, outbox,
/// audit. Zero rows matched → Conflict (or NotFound).
/// Whether `name` may become (or stay) `enterprise_id`'s existing login name for
/// `request_id`: not bound to another enterprise, and not serving another open request or
/// a live key of this one (one login name, one key).
async fn existing_login_name_free_tx(
    conn: &mut AnyConnection,
    name: &str,
    enterprise_id: &str,
    request_id: Option<&str>,
) -> Result<bool> {
    let row = sqlx::query("SELECT enterprise_id, request_id FROM login_names WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = &row
        && row.try_get::<String, _>("enterprise_id")? != enterprise_id
    {
        return Ok(false);
    }
    let busy = sqlx::query(
        "SELECT 1 AS one FROM requests WHERE enterprise_id = $1 AND login_name = $2 \
         AND id <> $3 AND status NOT IN ('withdrawn', 'refused') \
         UNION ALL SELECT 1 AS one FROM keys WHERE login_name = $2 \
         AND status NOT IN ('revoked', 'lost', 'damaged', 'expired')",
    )
    .bind(enterprise_id)
    .bind(name)
    .bind(request_id.unwrap_or(""))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(busy.is_none())
}

/// At the agency's approval of a request that brings an existing (机电) login name: binds
/// the name to the enterprise and the request, or refuses with `LoginNameTaken` when
/// another enterprise's approval bound it first.
async fn bind_existing_login_name_tx(conn: &mut AnyConnection, t: &Transition) -> Result<()> {
    let row = sqlx::query("SELECT enterprise_id, login_name, form FROM requests WHERE id = $1")
        .bind(&t.request_id)
        .fetch_one(&mut *conn)
        .await?;
    let form: RequestForm = serde_json::from_str(&row.try_get::<String, _>("form")?)
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let (Some(name), ekey_domain::request::LoginNameMode::Existing) = (
        row.try_get::<Option<String>, _>("login_name")?,
        form.login_name_mode,
    ) else {
        return Ok(());
    };
    let enterprise_id: String = row.try_get("enterprise_id")?;
    let inserted = sqlx::query(
        "INSERT INTO login_names (name, enterprise_id, source, request_id, created_at) \
         VALUES ($1, $2, 'existing', $3, $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&name)
    .bind(&enterprise_id)
    .bind(&t.request_id)
    .bind(ms(t.at))
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(());
    }
    if !existing_login_name_free_tx(conn, &name, &enterprise_id, Some(&t.request_id)).await? {
        return Err(DomainError::LoginNameTaken.into());
    }
    let rebound = sqlx::query(
        "UPDATE login_names SET request_id = $1 WHERE name = $2 AND enterprise_id = $3",
    )
    .bind(&t.request_id)
    .bind(&name)
    .bind(&enterprise_id)
    .execute(&mut *conn)
    .await?;
    if rebound.rows_affected() == 0 {
        return Err(DomainError::LoginNameTaken.into());
    }
    Ok(())
}

/// A request withdrawn or refused lets go of the existing login name it was bound to: the
/// name is forgotten, or (when a key of the enterprise still carries it) kept unbound.
async fn release_existing_login_name_tx(conn: &mut AnyConnection, request_id: &str) -> Result<()> {
    sqlx::query(
        "DELETE FROM login_names WHERE request_id = $1 AND source = 'existing' \
         AND NOT EXISTS (SELECT 1 FROM keys WHERE keys.login_name = login_names.name)",
    )
    .bind(request_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE login_names SET request_id = NULL WHERE request_id = $1 AND source = 'existing'",
    )
    .bind(request_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn transition_tx(conn: &mut AnyConnection, t: &Transition) -> Result<()> {
    let form = t
        .form
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let due = t.due_at.map(ms);
    let updated = match &form {
        Some(form) => {
            sqlx::query(
                "UPDATE requests SET status = $1, version = version + 1, due_at = $2, \
                 updated_at = $3, form = $4 WHERE id = $5 AND version = $6 AND status = $7",
            )
            .bind(t.to.as_str())
            .bind(due)
            .bind(ms(t.at))
            .bind(form)
            .bind(&t.request_id)
            .bind(t.expected_version)
            .bind(t.from.as_str())
            .execute(&mut *conn)
            .await?
        }
        None => {
            sqlx::query(
                "UPDATE requests SET status = $1, version = version + 1, due_at = $2, \
                 updated_at = $3 WHERE id = $4 AND version = $5 AND status = $6",
            )
            .bind(t.to.as_str())
            .bind(due)
            .bind(ms(t.at))
            .bind(&t.request_id)
            .bind(t.expected_version)
            .bind(t.from.as_str())
            .execute(&mut *conn)
            .await?
        }
    };
    if updated.rows_affected() == 0 {
        let exists = sqlx::query("SELECT 1 AS one FROM requests WHERE id = $1")
            .bind(&t.request_id)
            .fetch_optional(&mut *conn)
            .await?;
        return Err(if exists.is_some() {
            StoreError::Conflict
        } else {
            StoreError::NotFound
        });
    }
    sqlx::query(
        "INSERT INTO request_history (request_id, seq, at, actor_id, actor_role, action, \
         from_status, to_status, remark, concerns) \
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM request_history WHERE request_id = $1), \
         $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&t.request_id)
    .bind(ms(t.at))
    .bind(&t.actor_id)
    .bind(t.actor_role.as_str())
    .bind(t.action.as_str())
    .bind(t.from.as_str())
    .bind(t.to.as_str())
    .bind(&t.remark)
    .bind(t.concerns.join(","))
    .execute(&mut *conn)
    .await?;
    if t.action == Action::AgencyApprove {
        bind_existing_login_name_tx(&mut *conn, t).await?;
    }
    if matches!(t.to, Status::Withdrawn | Status::Refused) {
        release_existing_login_name_tx(&mut *conn, &t.request_id).await?;
    }
    if t.to == Status::Completed {
        apply_enterprise_change_tx(&mut *conn, t).await?;
    }
    if t.action == Action::Edit {
        // An edit records the fields it changed: a scan of a signed form that prints one of
        // them, uploaded before the change, no longer matches the form (issue 16, item 13).
        for item in ekey_domain::returns::scans_dropped_by_edit(&t.concerns) {
            sqlx::query(
                "UPDATE materials SET state = 'superseded' WHERE request_id = $1 AND item = $2 \
                 AND state = 'staged'",
            )
            .bind(&t.request_id)
            .bind(item.as_str())
            .execute(&mut *conn)
            .await?;
        }
    }
    if t.commit_materials {
        sqlx::query(
            "UPDATE materials SET state = 'superseded' WHERE request_id = $1 AND state = 'committed' \
             AND item IN (SELECT item FROM materials WHERE request_id = $1 AND state = 'staged')",
        )
        .bind(&t.request_id)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE materials SET state = 'committed' WHERE request_id = $1 AND state = 'staged'",
        )
        .bind(&t.request_id)
        .execute(&mut *conn)
        .await?;
    }
    for m in &t.outbox {
        enqueue_tx(&mut *conn, m).await?;
    }
    append_audit_tx(&mut *conn, &t.audit).await?;
    Ok(())
}

/// 重新申领（信息变更） completed: the enterprise record takes the data of the new licence
/// (see `ekey_domain::infochange`), in the transaction that completes the request.
async fn apply_enterprise_change_tx(conn: &mut AnyConnection, t: &Transition) -> Result<()> {
    let row = sqlx::query("SELECT enterprise_id, form FROM requests WHERE id = $1")
        .bind(&t.request_id)
        .fetch_one(&mut *conn)
        .await?;
    let form: String = row.try_get("form")?;
    let form: ekey_domain::request::RequestForm =
        serde_json::from_str(&form).map_err(|_| corrupt("requests.form"))?;
    let Some(change) = form.enterprise_change else {
        return Ok(());
    };
    let enterprise_id: String = row.try_get("enterprise_id")?;
    sqlx::query(
        "UPDATE enterprises SET name = $1, legal_representative = $2, address = $3, \
         version = version + 1 WHERE id = $4",
    )
    .bind(&change.after.name)
    .bind(&change.after.legal_representative)
    .bind(&change.after.address)
    .bind(&enterprise_id)
    .execute(&mut *conn)
    .await?;
    let mut audit = t.audit.clone();
    audit.action = "enterprise.info_change".into();
    audit.object_type = "enterprise".into();
    audit.object_id = enterprise_id;
    audit.before = format!(
        "{} / {} / {}",
        change.before.name, change.before.legal_representative, change.before.address
    );
    audit.after = format!(
        "{} / {} / {}",
        change.after.name, change.after.legal_representative, change.after.address
    );
    append_audit_tx(&mut *conn, &audit).await
}

/// [`enqueue_tx`] for the store's other modules.
pub(crate) async fn enqueue_in(conn: &mut AnyConnection, m: &NewMessage) -> Result<()> {
    enqueue_tx(conn, m).await
}

/// Revokes inside a transaction and bumps the revocation counter. Unknown → NotFound;
/// already revoked → Duplicate("revocation").
async fn revoke_tx(conn: &mut AnyConnection, r: &Revocation) -> Result<()> {
    let done = sqlx::query(
        "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 \
         WHERE serial = $3 AND revoked_at IS NULL AND der IS NOT NULL",
    )
    .bind(ms(r.at))
    .bind(&r.reason)
    .bind(&r.serial)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        let exists = sqlx::query(
            "SELECT revoked_at FROM certificates WHERE serial = $1 AND der IS NOT NULL",
        )
        .bind(&r.serial)
        .fetch_optional(&mut *conn)
        .await?;
        return Err(match exists {
            Some(_) => StoreError::Duplicate("revocation"),
            None => StoreError::NotFound,
        });
    }
    if r.reason == "keyCompromise" {
        crate::hygiene::mark_compromised(conn, &r.serial, r.at).await?;
    }
    sqlx::query("UPDATE ca_state SET revocations = revocations + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

const KEY_COLS: &str = "id, enterprise_id, request_id, login_name, serial, token_kind, status, \
                        certificate_serial, shipment_id, version, created_at, updated_at, \
                        (SELECT e.id FROM eseals e WHERE e.key_id = keys.id) AS eseal_id";

fn key_from_row(r: &AnyRow) -> Result<KeyRecord> {
    let state: String = r.try_get("status")?;
    Ok(KeyRecord {
        id: r.try_get("id")?,
        enterprise_id: r.try_get("enterprise_id")?,
        request_id: r.try_get("request_id")?,
        login_name: r.try_get("login_name")?,
        token_serial: r.try_get("serial")?,
        token_kind: r.try_get("token_kind")?,
        state: ekey_domain::key::KeyState::parse(&state).ok_or_else(|| corrupt("keys.status"))?,
        certificate_serial: r.try_get("certificate_serial")?,
        shipment_id: r.try_get("shipment_id")?,
        eseal_id: r.try_get("eseal_id")?,
        version: r.try_get("version")?,
        created_at: from_ms(r.try_get("created_at")?),
        updated_at: from_ms(r.try_get("updated_at")?),
    })
}

const CERT_COLS: &str = "serial, idempotency_key, enterprise_id, key_id, subject, der, not_before, \
                         not_after, issued_at, revoked_at, revocation_reason";

fn certificate_from_row(r: &AnyRow) -> Result<CertificateRecord> {
    Ok(CertificateRecord {
        serial: r.try_get("serial")?,
        idempotency_key: r.try_get("idempotency_key")?,
        enterprise_id: r.try_get("enterprise_id")?,
        key_id: r.try_get("key_id")?,
        subject: r.try_get("subject")?,
        der: r.try_get("der")?,
        not_before: r.try_get::<Option<i64>, _>("not_before")?.map(from_ms),
        not_after: r.try_get::<Option<i64>, _>("not_after")?.map(from_ms),
        issued_at: from_ms(r.try_get("issued_at")?),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(from_ms),
        revocation_reason: r.try_get("revocation_reason")?,
    })
}

const SHIPMENT_COLS: &str = "id, number, province, courier, tracking_number, created_at, created_by, received_at, received_by";

fn shipment_from_row(r: &AnyRow) -> Result<ShipmentRecord> {
    Ok(ShipmentRecord {
        id: r.try_get("id")?,
        number: r.try_get("number")?,
        province: r.try_get("province")?,
        courier: r.try_get("courier")?,
        tracking_number: r.try_get("tracking_number")?,
        created_at: from_ms(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
        received_at: r.try_get::<Option<i64>, _>("received_at")?.map(from_ms),
        received_by: r.try_get("received_by")?,
    })
}

fn agency_from_row(r: &AnyRow) -> Result<Agency> {
    Ok(Agency {
        province: r.try_get("province")?,
        name_zh: r.try_get("name_zh")?,
        name_en: r.try_get("name_en")?,
        address: r.try_get("address")?,
        window: r.try_get("window_name")?,
        hours: r.try_get("hours")?,
        hotline: r.try_get("hotline")?,
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// Binds an account's columns in [`ACCOUNT_INSERT`] order.
fn bind_account<'q>(q: AnyQuery<'q>, a: &'q NewAccount) -> AnyQuery<'q> {
    q.bind(&a.id)
        .bind(&a.login)
        .bind(&a.email)
        .bind(&a.display_name)
        .bind(&a.mobile)
        .bind(&a.password_hash)
        .bind(a.role.as_str())
        .bind(&a.enterprise_id)
        .bind(&a.province)
        .bind(i64::from(a.active))
        .bind(ms(a.created_at))
}

const ACCOUNT_INSERT: &str = "INSERT INTO accounts (id, login, email, display_name, mobile, \
    password_hash, role, enterprise_id, province, active, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ";

/// Turns the pending registration of `token_hash` (link not expired) into its enterprise
/// and active account: `TokenInvalid` when there is none, `Duplicate("credit_code")` or
/// `Duplicate("login")` when another registration was activated first (the caller's
/// transaction is then dropped, so the pending registration stays as it was).
async fn activate_pending_tx(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Account> {
    let row = sqlx::query(
        "DELETE FROM pending_registrations WHERE token_hash = $1 AND expires_at > $2 \
         RETURNING id, enterprise_id, name, credit_code, province, address, \
         legal_representative, email, display_name, mobile, password_hash, created_at",
    )
    .bind(token_hash)
    .bind(ms(now))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else {
        return Err(StoreError::TokenInvalid);
    };
    let enterprise_id: String = r.try_get("enterprise_id")?;
    let inserted = sqlx::query(
        "INSERT INTO enterprises (id, name, credit_code, province, address, legal_representative, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (credit_code) DO NOTHING",
    )
    .bind(&enterprise_id)
    .bind(r.try_get::<String, _>("name")?)
    .bind(r.try_get::<String, _>("credit_code")?)
    .bind(r.try_get::<String, _>("province")?)
    .bind(r.try_get::<String, _>("address")?)
    .bind(r.try_get::<String, _>("legal_representative")?)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Duplicate("credit_code"));
    }
    let email: String = r.try_get("email")?;
    let account = NewAccount {
        id: r.try_get("id")?,
        login: email.clone(),
        email,
        display_name: r.try_get("display_name")?,
        mobile: r.try_get("mobile")?,
        password_hash: r.try_get("password_hash")?,
        role: Role::Enterprise,
        enterprise_id: Some(enterprise_id),
        province: None,
        active: true,
        created_at: from_ms(r.try_get("created_at")?),
    };
    insert_account_tx(&mut *conn, &account).await?;
    fetch_account_tx(&mut *conn, &account.id).await
}

async fn insert_account_tx(conn: &mut AnyConnection, a: &NewAccount) -> Result<()> {
    let r = bind_account(sqlx::query(sql_insert_account()), a)
        .execute(&mut *conn)
        .await;
    match r {
        Ok(done) if done.rows_affected() == 1 => Ok(()),
        Ok(_) => Err(StoreError::Duplicate("login")),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Duplicate("login")),
        Err(e) => Err(e.into()),
    }
}

async fn fetch_account_tx(conn: &mut AnyConnection, id: &str) -> Result<Account> {
    let row = sqlx::query(sql_account_by_id())
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    account_from_row(&row)
}

// Statements built from column lists once, as 'static strings (sqlx wants SQL it can trust).
macro_rules! static_sql {
    ($name:ident, $($part:expr),+) => {
        fn $name() -> &'static str {
            static S: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            S.get_or_init(|| [$($part),+].concat()).as_str()
        }
    };
}

static_sql!(
    sql_enterprise_by_id,
    "SELECT ",
    ENTERPRISE_COLS,
    " FROM enterprises WHERE id = $1"
);
static_sql!(
    sql_enterprise_by_credit_code,
    "SELECT ",
    ENTERPRISE_COLS,
    " FROM enterprises WHERE credit_code = $1"
);
static_sql!(
    sql_agencies,
    "SELECT ",
    AGENCY_COLS,
    " FROM agencies ORDER BY province"
);
static_sql!(
    sql_agency_by_province,
    "SELECT ",
    AGENCY_COLS,
    " FROM agencies WHERE province = $1"
);
static_sql!(
    sql_insert_account,
    ACCOUNT_INSERT,
    "ON CONFLICT (login) DO NOTHING"
);
static_sql!(
    sql_upsert_account,
    ACCOUNT_INSERT,
    "ON CONFLICT (login) DO UPDATE SET email = excluded.email, \
     display_name = excluded.display_name, mobile = excluded.mobile, \
     password_hash = excluded.password_hash, role = excluded.role, \
     enterprise_id = excluded.enterprise_id, province = excluded.province, \
     active = excluded.active"
);
static_sql!(
    sql_key_by_id,
    "SELECT ",
    KEY_COLS,
    " FROM keys WHERE id = $1"
);
const RENEWAL_COLS: &str = "request_id, key_id, old_serial, new_serial, state, created_at, \
     expires_at, issued_at, confirmed_at, old_revoked_at";
static_sql!(
    sql_renewal_by_request,
    "SELECT ",
    RENEWAL_COLS,
    " FROM renewals WHERE request_id = $1"
);
static_sql!(
    sql_renewal_by_new_serial,
    "SELECT ",
    RENEWAL_COLS,
    " FROM renewals WHERE new_serial = $1"
);
static_sql!(
    sql_renewals_due,
    "SELECT ",
    RENEWAL_COLS,
    " FROM renewals WHERE expires_at <= $1 AND (state IN ('approved', 'issued') \
     OR (state = 'confirmed' AND old_revoked_at IS NULL)) ORDER BY expires_at"
);
static_sql!(
    sql_enterprise_account,
    "SELECT ",
    ACCOUNT_COLS,
    " FROM accounts WHERE enterprise_id = $1 AND role = 'enterprise' ORDER BY created_at LIMIT 1"
);
static_sql!(
    sql_key_by_certificate,
    "SELECT ",
    KEY_COLS,
    " FROM keys WHERE certificate_serial = $1"
);
static_sql!(
    sql_key_by_request,
    "SELECT ",
    KEY_COLS,
    " FROM keys WHERE request_id = $1"
);
static_sql!(
    sql_keys_by_login_name,
    "SELECT ",
    KEY_COLS,
    " FROM keys WHERE login_name = $1 ORDER BY created_at DESC"
);
static_sql!(
    sql_keys_of_enterprise,
    "SELECT ",
    KEY_COLS,
    " FROM keys WHERE enterprise_id = $1 ORDER BY created_at DESC"
);
static_sql!(
    sql_keys_in_shipment,
    "SELECT ",
    KEY_COLS,
    " FROM keys WHERE shipment_id = $1 ORDER BY created_at"
);
static_sql!(
    sql_certificate_by_serial,
    "SELECT ",
    CERT_COLS,
    " FROM certificates WHERE serial = $1"
);
static_sql!(
    sql_certificate_by_idempotency,
    "SELECT ",
    CERT_COLS,
    " FROM certificates WHERE idempotency_key = $1"
);
static_sql!(
    sql_shipment_by_id,
    "SELECT ",
    SHIPMENT_COLS,
    " FROM shipments WHERE id = $1"
);
static_sql!(
    sql_shipments,
    "SELECT ",
    SHIPMENT_COLS,
    " FROM shipments WHERE (CAST($1 AS TEXT) IS NULL OR province = $1) ORDER BY created_at DESC"
);
static_sql!(
    sql_account_by_login,
    "SELECT ",
    ACCOUNT_COLS,
    " FROM accounts WHERE login = $1"
);
static_sql!(
    sql_account_by_id,
    "SELECT ",
    ACCOUNT_COLS,
    " FROM accounts WHERE id = $1"
);
static_sql!(
    sql_request_by_id,
    "SELECT ",
    REQUEST_COLS,
    " FROM requests WHERE id = $1"
);
static_sql!(
    sql_request_by_number,
    "SELECT ",
    REQUEST_COLS,
    " FROM requests WHERE number = $1"
);
static_sql!(
    sql_list_requests,
    "SELECT ",
    REQUEST_COLS,
    " FROM requests WHERE (CAST($1 AS TEXT) IS NULL OR enterprise_id = $1) \
     AND (CAST($2 AS TEXT) IS NULL OR province = $2) \
     AND (CAST($3 AS TEXT) = '' OR (',' || $3 || ',') LIKE ('%,' || status || ',%')) \
     AND (CAST($6 AS TEXT) IS NULL OR number = UPPER($6) OR login_name = $6 \
          OR enterprise_id IN (SELECT id FROM enterprises \
                               WHERE credit_code = UPPER($6) OR name LIKE ('%' || $6 || '%'))) \
     ORDER BY CASE WHEN due_at IS NULL THEN 1 ELSE 0 END, due_at, created_at DESC \
     LIMIT $4 OFFSET $5"
);
static_sql!(
    sql_material_by_id,
    "SELECT ",
    MATERIAL_COLS,
    " FROM materials WHERE id = $1"
);
static_sql!(
    sql_materials_of_request,
    "SELECT ",
    MATERIAL_COLS,
    " FROM materials WHERE request_id = $1 AND state IN ('staged', 'committed') ORDER BY item, id"
);

fn history_from_row(r: &AnyRow) -> Result<HistoryEntry> {
    let role: String = r.try_get("actor_role")?;
    let from: Option<String> = r.try_get("from_status")?;
    let to: String = r.try_get("to_status")?;
    Ok(HistoryEntry {
        seq: r.try_get("seq")?,
        at: from_ms(r.try_get("at")?),
        actor_id: r.try_get("actor_id")?,
        actor_role: Role::parse(&role).ok_or_else(|| corrupt("actor_role"))?,
        action: r.try_get("action")?,
        from_status: from.as_deref().and_then(Status::parse),
        to_status: Status::parse(&to).ok_or_else(|| corrupt("to_status"))?,
        remark: r.try_get("remark")?,
        concerns: split_list(&r.try_get::<String, _>("concerns")?),
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

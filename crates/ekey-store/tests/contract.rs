//! The contract of [`ekey_store::Store`], written once and run against both backends: a fresh
//! SQLite file in a temporary directory (`mod sqlite`) and a fresh database on a throwaway
//! PostgreSQL cluster (`mod postgres`). PostgreSQL is required: when it cannot start, every
//! `postgres::` test fails with the reason; none is skipped.
//!
//! The tests assert what a user would notice, and after every refused operation that nothing
//! at all changed: [`snapshot`] records every table's row count and a digest of its rows,
//! plus the head of the audit chain (DESIGN.md, "The one-transaction rule").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail, ensure};
use chrono::{DateTime, Duration, TimeZone, Utc};
use ekey_domain::error::DomainError;
use ekey_domain::ident::{CreditCode, Email, IdNumber, Mobile};
use ekey_domain::request::{
    Action, Kind, LicenceType, LoginNameMode, Material, Person, RequestForm, Role, Status,
};
use ekey_store::audit::{AuditFields, chain_hash};
use ekey_store::{
    Backend, Batch, CertificateReservation, Channel, CollectionChoice, HolidayYear, KeyChange,
    LoginChallenge, LoginNameClaim, MaterialRecord, MaterialState, NewAccount, NewAudit,
    NewEnterprise, NewKey, NewMaterial, NewMessage, NewPasswordReset, NewRegistration, NewRequest,
    NewSession, NewToken, OutboxCounts, OutboxMessage, PublishedCrl, QuotaOutcome, QuotaTake,
    RenewalChange, RenewalRecord, RequestFilter, RequestRecord, Revocation, SqlStore, Store,
    StoreError, Transition,
};
use ekey_testkit::PgCluster;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, AssertSqlSafe, Row};
use tokio::sync::Barrier;

// =============================================================================================
// The two backends
// =============================================================================================

/// Writes every contract test once per backend: `$open` names the [`TestDb`] constructor.
macro_rules! contract_suite {
    ($open:ident, $backend:expr) => {
        contract_suite!(@tests $open, $backend;
            migrate_is_idempotent_and_seeds_the_agencies,
            register_writes_everything_at_once_and_duplicates_change_nothing,
            concurrent_registrations_let_exactly_one_through,
            activation_token_works_once_and_not_after_expiry,
            pending_registrations_claim_nothing_until_activated,
            concurrent_activations_of_one_credit_code_let_exactly_one_through,
            mail_quotas_hold_exactly_under_concurrency,
            an_enterprise_can_be_released_or_transferred_once,
            sessions_live_until_revoked_or_expired,
            create_request_numbers_allocates_and_records_history,
            fourth_key_is_refused_and_changes_nothing,
            concurrent_additional_requests_never_exceed_three_keys,
            login_names_are_unique_and_owned,
            concurrent_claims_of_one_existing_name_give_it_to_one_enterprise,
            login_name_reservations_are_capped_and_expire,
            transition_writes_state_history_outbox_and_audit_together,
            concurrent_transitions_exactly_one_wins,
            concurrent_transitions_of_different_requests_keep_one_chain,
            materials_stage_supersede_lock_and_commit,
            upload_racing_confirm_upload_never_leaves_a_staged_file_under_review,
            audit_chain_detects_tampering_and_deletion,
            verifying_while_records_are_appended_reports_no_break,
            outbox_dedups_leases_retries_and_dead_letters,
            list_requests_filters_and_puts_the_soonest_deadline_first,
            one_existing_login_name_serves_one_open_request,
            certificates_are_issued_once_per_order_and_revoked_once,
            a_batch_is_all_or_nothing,
            a_produced_key_is_counted_once,
            password_reset_works_once_and_ends_every_session,
            collection_choice_is_recorded_and_replaced,
            key_login_challenges_work_once_and_a_renewal_advances_once,
            a_timer_runs_once_per_due_time_across_instances,
            published_crls_and_holiday_years_are_shared,
            a_key_is_certified_for_one_enterprise_and_never_after_compromise,
            a_recounted_deadline_races_a_transition_and_one_wins,
        );
    };
    (@tests $open:ident, $backend:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() -> anyhow::Result<()> {
                let db = crate::TestDb::$open().await?;
                assert_eq!(db.store().backend(), $backend);
                crate::$test(&db).await?;
                db.store.pool().close().await;
                Ok(())
            }
        )+
    };
}

mod sqlite {
    contract_suite!(sqlite, ekey_store::Backend::Sqlite);
}

mod postgres {
    contract_suite!(postgres, ekey_store::Backend::Postgres);
}

/// One fresh, empty (not yet migrated) database and the store over it.
struct TestDb {
    store: SqlStore,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    async fn sqlite() -> Result<TestDb> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let url = format!("sqlite:{}", dir.path().join("ekey.db").display());
        let store = SqlStore::connect(&url)
            .await
            .with_context(|| format!("opening {url}"))?;
        Ok(TestDb {
            store,
            _dir: Some(dir),
        })
    }

    async fn postgres() -> Result<TestDb> {
        let url = tokio::task::spawn_blocking(|| {
            PgCluster::shared()
                .context("PostgreSQL is required by the store contract suite (never skipped)")?
                .create_database("contract")
        })
        .await
        .context("PostgreSQL set-up panicked")??;
        let store = SqlStore::connect(&url)
            .await
            .with_context(|| format!("opening {url}"))?;
        Ok(TestDb { store, _dir: None })
    }

    /// The store as the rest of eKey sees it: a trait object.
    fn store(&self) -> &dyn Store {
        &self.store
    }

    /// The raw pool, to look under the hood.
    fn pool(&self) -> &AnyPool {
        self.store.pool()
    }

    /// A handle for concurrent tasks.
    fn shared(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
}

// =============================================================================================
// Looking under the hood
// =============================================================================================

/// Everything in the database, in a form two points in time can be compared by.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Snapshot {
    /// Every table, by name: its row count and a digest of all its rows.
    tables: Vec<(String, i64, String)>,
    /// `audit_head`: sequence number and hash of the last audit record.
    audit_head: (i64, String),
}

impl Snapshot {
    /// Row counts of every table.
    fn counts(&self) -> Vec<(String, i64)> {
        self.tables
            .iter()
            .map(|(t, n, _)| (t.clone(), *n))
            .collect()
    }

    /// Row count of one table.
    fn count(&self, table: &str) -> i64 {
        self.tables
            .iter()
            .find(|(t, _, _)| t == table)
            .map(|(_, n, _)| *n)
            .unwrap_or_else(|| panic!("no table {table} in {:?}", self.counts()))
    }

    /// Tables whose row count differs in `later`, with the difference.
    fn delta(&self, later: &Snapshot) -> Vec<(String, i64)> {
        let before: BTreeMap<_, _> = self.counts().into_iter().collect();
        later
            .counts()
            .into_iter()
            .filter_map(|(t, n)| {
                let d = n - before.get(&t).copied().unwrap_or(0);
                (d != 0).then_some((t, d))
            })
            .collect()
    }

    /// Tables whose rows differ in `later` in any way.
    fn changed(&self, later: &Snapshot) -> Vec<String> {
        let before: BTreeMap<_, _> = self
            .tables
            .iter()
            .map(|(t, _, digest)| (t.clone(), digest.clone()))
            .collect();
        later
            .tables
            .iter()
            .filter(|(t, _, digest)| before.get(t) != Some(digest))
            .map(|(t, _, _)| t.clone())
            .collect()
    }
}

/// Row counts and content digests of every table, plus the audit head, via the raw pool.
async fn snapshot(db: &TestDb) -> Result<Snapshot> {
    let pool = db.pool();
    let backend = db.store().backend();
    let list = match backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        Backend::Postgres => {
            "SELECT CAST(tablename AS TEXT) AS name FROM pg_tables \
             WHERE schemaname = current_schema()"
        }
    };
    let mut names = sqlx::query(list)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("name"))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort();
    ensure!(!names.is_empty(), "no tables: was the store migrated?");
    let mut tables = Vec::new();
    for table in names {
        let sql = match backend {
            Backend::Sqlite => {
                let cols = sqlx::query("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                    .bind(&table)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|r| Ok(format!("quote(\"{}\")", r.try_get::<String, _>("name")?)))
                    .collect::<Result<Vec<_>>>()?;
                format!("SELECT {} AS r FROM \"{table}\"", cols.join(" || '|' || "))
            }
            Backend::Postgres => format!("SELECT CAST(x AS TEXT) AS r FROM \"{table}\" AS x"),
        };
        let mut rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .with_context(|| format!("reading table {table}"))?
            .iter()
            .map(|r| r.try_get::<String, _>("r"))
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort();
        let mut digest = Sha256::new();
        for row in &rows {
            digest.update(row.as_bytes());
            digest.update([0u8]);
        }
        tables.push((
            table,
            i64::try_from(rows.len())?,
            hex::encode(digest.finalize()),
        ));
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(pool)
        .await?;
    Ok(Snapshot {
        tables,
        audit_head: (head.try_get("seq")?, head.try_get("hash")?),
    })
}

/// Fails unless the database is exactly as it was in `before`.
async fn assert_unchanged(db: &TestDb, before: &Snapshot, what: &str) -> Result<()> {
    let after = snapshot(db).await?;
    ensure!(
        *before == after,
        "{what} changed the database: rows changed in {:?}, row counts changed by {:?}, \
         audit head {:?} -> {:?}",
        before.changed(&after),
        before.delta(&after),
        before.audit_head,
        after.audit_head
    );
    Ok(())
}

/// Row-count changes as `[("table", +n), …]` for comparing with `Snapshot::delta`.
fn grew(tables: &[(&str, i64)]) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = tables.iter().map(|(t, n)| (t.to_string(), *n)).collect();
    v.sort();
    v
}

/// The error of an operation that must be refused.
fn refused<T: Debug>(result: Result<T, StoreError>, what: &str) -> Result<StoreError> {
    match result {
        Ok(v) => bail!("{what} succeeded ({v:?}) but must be refused"),
        Err(e) => Ok(e),
    }
}

// =============================================================================================
// Fixtures
// =============================================================================================

/// Monday 2 March 2026, 09:30 in Shanghai.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 1, 30, 0)
        .single()
        .expect("valid time")
}

fn mins(n: i64) -> Duration {
    Duration::minutes(n)
}

/// A valid unified social credit code (GB 32100, its organisation code part GB 11714) for
/// enterprise `n` of a province.
fn credit_code(province: &str, n: u32) -> String {
    let org = format!("{n:08}");
    assert_eq!(org.len(), 8, "{org}");
    let org = format!("{org}{}", ekey_testkit::ident::org_code_check(&org));
    let code = ekey_testkit::ident::with_uscc_check(&format!("91{province}{org}"));
    CreditCode::parse(&code).unwrap_or_else(|e| panic!("generated {code} is invalid: {e}"));
    code
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// An audit record by the system; tests override fields as needed.
fn audit(at: DateTime<Utc>, action: &str, object_id: &str, after: &str) -> NewAudit {
    NewAudit {
        at,
        actor_id: String::new(),
        actor_role: "system".into(),
        address: "127.0.0.1".into(),
        action: action.into(),
        object_type: "test".into(),
        object_id: object_id.into(),
        before: String::new(),
        after: after.into(),
    }
}

fn message(dedup_key: &str, to: &str, at: DateTime<Utc>) -> NewMessage {
    NewMessage {
        channel: Channel::Email,
        recipient: to.into(),
        subject: format!("eKey 通知 {dedup_key}"),
        body: format!("您好，{dedup_key}。"),
        dedup_key: dedup_key.into(),
        created_at: at,
    }
}

/// A complete registration with fresh ids; the activation token expires after 48 hours.
fn registration(
    credit_code: &str,
    email: &str,
    province: &str,
    token: &str,
    at: DateTime<Utc>,
) -> NewRegistration {
    let enterprise_id = new_id("ent");
    let account_id = new_id("acc");
    NewRegistration {
        enterprise: NewEnterprise {
            id: enterprise_id.clone(),
            name: format!("测试进出口有限公司{}", &credit_code[8..17]),
            credit_code: credit_code.into(),
            province: province.into(),
            address: "南京市鼓楼区中山北路1号".into(),
            legal_representative: "李雷".into(),
            created_at: at,
        },
        account: NewAccount {
            id: account_id.clone(),
            login: email.into(),
            email: email.into(),
            display_name: "王小明".into(),
            mobile: Some("13912345678".into()),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
            role: Role::Enterprise,
            enterprise_id: Some(enterprise_id.clone()),
            province: None,
            active: false,
            created_at: at,
        },
        activation: NewToken {
            token_hash: token_hash(token),
            expires_at: at + Duration::hours(48),
            created_at: at,
        },
        mail: message(&format!("activation-{account_id}"), email, at),
        audit: NewAudit {
            actor_id: account_id,
            actor_role: "enterprise".into(),
            object_type: "enterprise".into(),
            ..audit(at, "account.register", &enterprise_id, credit_code)
        },
    }
}

/// A registered enterprise and its first account.
#[derive(Clone, Debug)]
struct Ent {
    id: String,
    account_id: String,
    email: String,
    province: String,
}

/// Registers enterprise `n` of `province` (activation token `token-{n}`).
async fn enterprise(db: &TestDb, n: u32, province: &str) -> Result<Ent> {
    let email = format!("user{n}@example.com");
    let reg = registration(
        &credit_code(province, n),
        &email,
        province,
        &format!("token-{n}"),
        t0(),
    );
    let account = db.store().register(reg.clone()).await?;
    Ok(Ent {
        id: reg.enterprise.id,
        account_id: account.id,
        email,
        province: province.into(),
    })
}

fn person() -> Person {
    Person {
        name: "王小明".into(),
        id_number: IdNumber::parse("11010519491231002X").expect("valid ID number"),
        mobile: Mobile::parse("13912345678").expect("valid mobile"),
        email: Email::parse("wang@example.com").expect("valid email"),
    }
}

fn form(mode: LoginNameMode, login_name: Option<&str>, reason: Option<&str>) -> RequestForm {
    RequestForm {
        unlock_challenge: None,
        enterprise_change: None,
        licence_types: vec![
            LicenceType::ImportLicence,
            LicenceType::AutoImportMechanical,
        ],
        login_name_mode: mode,
        login_name: login_name.map(str::to_string),
        reason: reason.map(str::to_string),
        authorised_user: person(),
        confirmation_letter_user: None,
        key_lost: false,
    }
}

fn new_request(
    ent: &Ent,
    kind: Kind,
    form: RequestForm,
    claim: LoginNameClaim,
    at: DateTime<Utc>,
) -> NewRequest {
    NewRequest {
        id: new_id("req"),
        kind,
        enterprise_id: ent.id.clone(),
        province: ent.province.clone(),
        form,
        login_name: claim,
        at,
        actor_id: ent.account_id.clone(),
        audit: NewAudit {
            actor_id: ent.account_id.clone(),
            actor_role: "enterprise".into(),
            object_type: "request".into(),
            ..audit(at, "request.create", "", "")
        },
    }
}

/// 首次申领 with a freshly allocated login name.
fn first(ent: &Ent, at: DateTime<Utc>) -> NewRequest {
    new_request(
        ent,
        Kind::First,
        form(LoginNameMode::Allocate, None, None),
        LoginNameClaim::Allocate,
        at,
    )
}

/// 增办 with a reason and a freshly allocated login name.
fn additional(ent: &Ent, at: DateTime<Utc>) -> NewRequest {
    new_request(
        ent,
        Kind::Additional,
        form(LoginNameMode::Allocate, None, Some("新增进口业务经办人")),
        LoginNameClaim::Allocate,
        at,
    )
}

/// The transition `action` from the request as read to `to`, by an actor of `role`.
fn step(
    req: &RequestRecord,
    action: Action,
    to: Status,
    role: Role,
    at: DateTime<Utc>,
) -> Transition {
    let actor = format!("{}-actor", role.as_str());
    Transition {
        request_id: req.id.clone(),
        expected_version: req.version,
        action,
        from: req.status,
        to,
        due_at: None,
        form: None,
        commit_materials: false,
        at,
        actor_id: actor.clone(),
        actor_role: role,
        remark: None,
        concerns: Vec::new(),
        audit: NewAudit {
            actor_id: actor,
            actor_role: role.as_str().into(),
            object_type: "request".into(),
            before: req.status.as_str().into(),
            ..audit(
                at,
                &format!("request.{}", action.as_str()),
                &req.id,
                to.as_str(),
            )
        },
        outbox: Vec::new(),
    }
}

fn upload(
    req: &RequestRecord,
    item: Material,
    blob: &str,
    allowed: &[Status],
    at: DateTime<Utc>,
) -> NewMaterial {
    NewMaterial {
        request_id: req.id.clone(),
        allowed: allowed.to_vec(),
        item,
        blob_key: blob.into(),
        content_type: "application/pdf".into(),
        size: 10_000 + i64::try_from(blob.len()).expect("short"),
        sha256: token_hash(blob),
        file_name: Some(format!("{blob}.pdf")),
        uploaded_at: at,
        uploaded_by: "enterprise-actor".into(),
    }
}

const UPLOAD_OPEN: &[Status] = &[Status::Draft, Status::AwaitingMaterials, Status::Returned];

// =============================================================================================
// 1. Migrations and agencies
// =============================================================================================

async fn migrate_is_idempotent_and_seeds_the_agencies(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let first = snapshot(db).await?;
    s.migrate().await?;
    s.migrate().await?;
    assert_unchanged(db, &first, "migrating again").await?;
    s.ping().await?;

    assert_eq!(first.count("agencies"), 31);
    assert_eq!(first.count("audit_log"), 0);
    assert_eq!(first.audit_head.0, 0);
    let agencies = s.agencies().await?;
    assert_eq!(agencies.len(), 31);
    let provinces: BTreeSet<&str> = agencies.iter().map(|a| a.province.as_str()).collect();
    assert_eq!(provinces.len(), 31, "one agency per province");
    let listed: Vec<&str> = agencies.iter().map(|a| a.province.as_str()).collect();
    assert_eq!(
        listed,
        provinces.iter().copied().collect::<Vec<_>>(),
        "by province code"
    );
    // Every agency is named; only what the procedure states is filled in (Jiangsu's
    // address, window and hotline), nothing invented (issue 16).
    for a in &agencies {
        assert!(
            !a.name_zh.is_empty() && !a.name_en.is_empty() && a.hours.is_empty(),
            "agency {a:?}"
        );
        if a.province != "320000" {
            assert!(
                a.address.is_empty() && a.window.is_empty() && a.hotline.is_empty(),
                "invented details {a:?}"
            );
        }
    }

    let js = s.agency("320000").await?.context("no agency for Jiangsu")?;
    assert_eq!(js.province, "320000");
    assert!(js.name_zh.contains("江苏"), "{js:?}");
    assert_eq!(js.address, "南京市汉中门大街145号");
    assert!(js.window.contains("A18"), "{js:?}");
    assert_eq!(js.hotline, "025-83666306");
    assert!(agencies.contains(&js));
    assert_eq!(s.agency("990000").await?, None);
    Ok(())
}

// =============================================================================================
// 2–4. Accounts, activation, sessions
// =============================================================================================

async fn register_writes_everything_at_once_and_duplicates_change_nothing(
    db: &TestDb,
) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let before = snapshot(db).await?;

    let reg = registration(
        "91110000600037341L",
        "lilei@example.com",
        "320000",
        "activate-me",
        t0(),
    );
    let account = s.register(reg.clone()).await?;
    assert_eq!(account.id, reg.account.id);
    assert_eq!(account.login, "lilei@example.com");
    assert_eq!(account.role, Role::Enterprise);
    assert_eq!(
        account.enterprise_id.as_deref(),
        Some(reg.enterprise.id.as_str())
    );
    assert!(!account.active, "a new enterprise account starts inactive");
    assert_eq!(account.created_at, t0());

    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[
            ("accounts", 1),
            ("activation_tokens", 1),
            ("audit_log", 1),
            ("enterprises", 1),
            ("outbox", 1),
        ]),
        "one registration writes enterprise, account, token, mail and audit record"
    );
    assert_eq!(
        before.changed(&after),
        [
            "accounts",
            "activation_tokens",
            "audit_head",
            "audit_log",
            "enterprises",
            "outbox"
        ],
        "and nothing else"
    );
    assert_eq!(after.audit_head.0, 1);

    let ent = s
        .enterprise(&reg.enterprise.id)
        .await?
        .context("enterprise missing")?;
    assert_eq!(ent.credit_code, "91110000600037341L");
    assert_eq!(ent.province, "320000");
    assert_eq!(ent.name, reg.enterprise.name);
    assert_eq!(
        s.account_by_login("lilei@example.com").await?,
        Some(account.clone())
    );
    assert_eq!(s.account(&account.id).await?, Some(account.clone()));

    let token =
        sqlx::query("SELECT account_id, used_at FROM activation_tokens WHERE token_hash = $1")
            .bind(token_hash("activate-me"))
            .fetch_one(db.pool())
            .await?;
    assert_eq!(token.try_get::<String, _>("account_id")?, account.id);
    assert_eq!(token.try_get::<Option<i64>, _>("used_at")?, None);
    let mail = sqlx::query("SELECT recipient, status, dedup_key FROM outbox")
        .fetch_one(db.pool())
        .await?;
    assert_eq!(mail.try_get::<String, _>("recipient")?, "lilei@example.com");
    assert_eq!(mail.try_get::<String, _>("status")?, "pending");
    assert_eq!(mail.try_get::<String, _>("dedup_key")?, reg.mail.dedup_key);
    assert_eq!(
        s.outbox_counts().await?,
        OutboxCounts {
            pending: 1,
            sent: 0,
            dead: 0
        }
    );
    let record = sqlx::query("SELECT action, object_id FROM audit_log WHERE seq = 1")
        .fetch_one(db.pool())
        .await?;
    assert_eq!(record.try_get::<String, _>("action")?, "account.register");
    assert_eq!(record.try_get::<String, _>("object_id")?, reg.enterprise.id);

    // The same credit code again (other email, other ids): refused, nothing written.
    let again = registration(
        "91110000600037341L",
        "hanmeimei@example.com",
        "320000",
        "other-token",
        t0() + mins(1),
    );
    let e = refused(
        s.register(again.clone()).await,
        "registering a credit code twice",
    )?;
    assert!(matches!(e, StoreError::Duplicate("credit_code")), "{e:?}");
    assert_unchanged(db, &after, "a refused duplicate credit code").await?;
    assert_eq!(s.account_by_login("hanmeimei@example.com").await?, None);
    assert_eq!(s.enterprise(&again.enterprise.id).await?, None);

    // The same email with another credit code: refused, the enterprise is not left behind.
    let again = registration(
        "91310110666007217T",
        "lilei@example.com",
        "310000",
        "third-token",
        t0() + mins(2),
    );
    let e = refused(
        s.register(again.clone()).await,
        "registering an email twice",
    )?;
    assert!(matches!(e, StoreError::Duplicate("login")), "{e:?}");
    assert_unchanged(db, &after, "a refused duplicate login").await?;
    assert_eq!(s.enterprise(&again.enterprise.id).await?, None);
    assert_eq!(s.account(&again.account.id).await?, None);

    // A different enterprise registers fine afterwards.
    let other = registration(
        "91440101MA5CJQ4N59",
        "guangzhou@example.com",
        "440000",
        "fourth-token",
        t0() + mins(3),
    );
    s.register(other).await?;
    let report = s.verify_audit().await?;
    assert_eq!(report.first_broken, None);
    assert_eq!(report.records, 2);
    Ok(())
}

async fn concurrent_registrations_let_exactly_one_through(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let store = db.shared();
    let race = |regs: Vec<NewRegistration>| {
        let barrier = Arc::new(Barrier::new(regs.len()));
        regs.into_iter()
            .map(|reg| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.register(reg).await
                })
            })
            .collect::<Vec<_>>()
    };

    // One enterprise registered five times at once (five different people).
    let code = credit_code("320000", 77);
    let regs = (0..5)
        .map(|i| {
            let email = format!("clerk{i}@example.com");
            registration(&code, &email, "320000", &format!("race-{i}"), t0())
        })
        .collect();
    let (mut ok, mut duplicate) = (0, 0);
    for task in race(regs) {
        match task.await? {
            Ok(_) => ok += 1,
            Err(StoreError::Duplicate("credit_code")) => duplicate += 1,
            Err(e) => bail!("unexpected error from a concurrent registration: {e:?}"),
        }
    }
    assert_eq!((ok, duplicate), (1, 4));

    // One email used by five enterprises at once.
    let regs = (0..5)
        .map(|i| {
            registration(
                &credit_code("320000", 100 + i),
                "shared@example.com",
                "320000",
                &format!("race-mail-{i}"),
                t0(),
            )
        })
        .collect();
    let (mut ok, mut duplicate) = (0, 0);
    for task in race(regs) {
        match task.await? {
            Ok(_) => ok += 1,
            Err(StoreError::Duplicate("login")) => duplicate += 1,
            Err(e) => bail!("unexpected error from a concurrent registration: {e:?}"),
        }
    }
    assert_eq!((ok, duplicate), (1, 4));

    let now = snapshot(db).await?;
    for table in [
        "enterprises",
        "accounts",
        "activation_tokens",
        "outbox",
        "audit_log",
    ] {
        assert_eq!(
            now.count(table),
            2,
            "{table}: no half-registered enterprise is left"
        );
    }
    let report = s.verify_audit().await?;
    assert_eq!(report.first_broken, None);
    assert_eq!(report.records, 2);
    Ok(())
}

async fn activation_token_works_once_and_not_after_expiry(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    let activation = |at| NewAudit {
        object_type: "account".into(),
        ..audit(at, "account.activate", "", "active")
    };

    let before = snapshot(db).await?;
    let account = s
        .activate(
            &token_hash("token-1"),
            t0() + mins(30),
            activation(t0() + mins(30)),
        )
        .await?;
    assert_eq!(account.id, a.account_id);
    assert!(account.active);
    assert!(s.account(&a.account_id).await?.context("account")?.active);
    assert!(
        s.account_by_login(&a.email)
            .await?
            .context("account by login")?
            .active
    );
    let after = snapshot(db).await?;
    assert_eq!(before.delta(&after), grew(&[("audit_log", 1)]));
    assert_eq!(
        before.changed(&after),
        ["accounts", "activation_tokens", "audit_head", "audit_log"],
        "the account, the used token and the audit record, nothing else"
    );
    let record = sqlx::query("SELECT actor_id, object_id FROM audit_log WHERE seq = $1")
        .bind(after.audit_head.0)
        .fetch_one(db.pool())
        .await?;
    assert_eq!(record.try_get::<String, _>("object_id")?, a.account_id);

    // A second use of the same token.
    let e = refused(
        s.activate(
            &token_hash("token-1"),
            t0() + mins(31),
            activation(t0() + mins(31)),
        )
        .await,
        "using an activation token twice",
    )?;
    assert!(matches!(e, StoreError::TokenInvalid), "{e:?}");
    assert_unchanged(db, &after, "a second activation").await?;

    // A token nobody issued.
    let e = refused(
        s.activate(&token_hash("made-up"), t0() + mins(31), activation(t0()))
            .await,
        "an unknown activation token",
    )?;
    assert!(matches!(e, StoreError::TokenInvalid), "{e:?}");
    assert_unchanged(db, &after, "an unknown token").await?;

    // An expired token (they live 48 hours).
    let b = enterprise(db, 2, "320000").await?;
    let before = snapshot(db).await?;
    let late = t0() + Duration::hours(49);
    let e = refused(
        s.activate(&token_hash("token-2"), late, activation(late))
            .await,
        "an expired activation token",
    )?;
    assert!(matches!(e, StoreError::TokenInvalid), "{e:?}");
    assert_unchanged(db, &before, "an expired token").await?;
    assert!(!s.account(&b.account_id).await?.context("account")?.active);

    // A reissued token replaces the older one.
    let c = enterprise(db, 3, "320000").await?;
    let before = snapshot(db).await?;
    s.reissue_activation(
        &c.account_id,
        NewToken {
            token_hash: token_hash("token-3-again"),
            expires_at: t0() + Duration::hours(50),
            created_at: t0() + Duration::hours(2),
        },
        message("activation-again-3", &c.email, t0() + Duration::hours(2)),
    )
    .await?;
    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("activation_tokens", 1), ("outbox", 1)])
    );
    let at = t0() + Duration::hours(3);
    let e = refused(
        s.activate(&token_hash("token-3"), at, activation(at)).await,
        "the replaced activation token",
    )?;
    assert!(matches!(e, StoreError::TokenInvalid), "{e:?}");
    assert_unchanged(db, &after, "the replaced token").await?;
    let account = s
        .activate(&token_hash("token-3-again"), at, activation(at))
        .await?;
    assert_eq!(account.id, c.account_id);
    assert!(account.active);
    Ok(())
}

async fn sessions_live_until_revoked_or_expired(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    let session = |token: &str| NewSession {
        token_hash: token_hash(token),
        account_id: a.account_id.clone(),
        created_at: t0(),
        expires_at: t0() + Duration::hours(8),
        key_id: None,
    };
    let login = NewAudit {
        actor_id: a.account_id.clone(),
        object_type: "session".into(),
        ..audit(t0(), "session.create", &a.account_id, "")
    };

    let before = snapshot(db).await?;
    s.create_session(session("bearer-1"), login.clone()).await?;
    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("audit_log", 1), ("sessions", 1)])
    );
    let found = s
        .session_account(&token_hash("bearer-1"), t0() + Duration::hours(1))
        .await?
        .context("live session not found")?;
    assert_eq!(found.id, a.account_id);
    assert_eq!(found.login, a.email);

    assert_eq!(
        s.session_account(&token_hash("bearer-1"), t0() + Duration::hours(9))
            .await?,
        None,
        "an expired session"
    );
    assert_eq!(
        s.session_account(&token_hash("never-issued"), t0() + mins(5))
            .await?,
        None
    );

    s.create_session(session("bearer-2"), login).await?;
    s.revoke_session(&token_hash("bearer-2"), Utc::now())
        .await?;
    assert_eq!(
        s.session_account(&token_hash("bearer-2"), t0() + mins(5))
            .await?,
        None,
        "a revoked session"
    );
    s.revoke_session(&token_hash("bearer-2"), Utc::now())
        .await?;
    assert!(
        s.session_account(&token_hash("bearer-1"), t0() + mins(5))
            .await?
            .is_some(),
        "revoking one session ends only that one"
    );
    Ok(())
}

// =============================================================================================
// 4b. Registrations that claim nothing, mail quotas, releasing and transferring enterprises
// =============================================================================================

/// Registers `reg` as pending (forgetting nothing).
async fn pending(db: &TestDb, reg: &NewRegistration) -> Result<()> {
    db.store()
        .register_pending(reg.clone(), t0() - Duration::days(365))
        .await?;
    Ok(())
}

fn activation_audit(at: DateTime<Utc>) -> NewAudit {
    NewAudit {
        object_type: "account".into(),
        ..audit(at, "account.activate", "", "active")
    }
}

async fn pending_registrations_claim_nothing_until_activated(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let code = credit_code("320000", 501);
    // Someone registers the enterprise with their own email; nothing is claimed.
    let squat = registration(&code, "squatter@example.com", "320000", "squat", t0());
    let before = snapshot(db).await?;
    pending(db, &squat).await?;
    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[
            ("audit_log", 1),
            ("outbox", 1),
            ("pending_registrations", 1)
        ]),
        "a pending registration writes itself, its mail and its audit record, no enterprise"
    );
    assert_eq!(s.enterprise_by_credit_code(&code).await?, None);
    assert_eq!(s.account_by_login("squatter@example.com").await?, None);
    let p = s
        .pending_registration("squatter@example.com")
        .await?
        .context("pending registration")?;
    assert_eq!(p.credit_code, code);
    assert_eq!(p.id, squat.account.id);

    // The real enterprise registers the same credit code, and even the same email is
    // possible for a third registration: all wait side by side.
    let real = registration(&code, "real@example.com", "320000", "real", t0() + mins(5));
    pending(db, &real).await?;
    let other = registration(
        &credit_code("320000", 502),
        "real@example.com",
        "320000",
        "real-other",
        t0() + mins(6),
    );
    pending(db, &other).await?;
    assert_eq!(
        s.pending_registration("real@example.com")
            .await?
            .context("newest")?
            .id,
        other.account.id,
        "the newest pending registration of an email"
    );

    // The real one activates first: it becomes the enterprise and its account.
    let at = t0() + mins(10);
    let account = s
        .activate(&token_hash("real"), at, activation_audit(at))
        .await?;
    assert_eq!(account.id, real.account.id);
    assert!(account.active);
    assert_eq!(account.login, "real@example.com");
    let ent = s
        .enterprise_by_credit_code(&code)
        .await?
        .context("enterprise after activation")?;
    assert_eq!(ent.id, real.enterprise.id);
    assert_eq!(account.enterprise_id.as_deref(), Some(ent.id.as_str()));

    // The squatter's link now fails, and changes nothing.
    let before = snapshot(db).await?;
    let e = refused(
        s.activate(&token_hash("squat"), at, activation_audit(at))
            .await,
        "activating a credit code activated by another registration",
    )?;
    assert!(matches!(e, StoreError::Duplicate("credit_code")), "{e:?}");
    assert_unchanged(db, &before, "a losing activation").await?;
    // The third registration (same email, other enterprise): the email is taken now.
    let e = refused(
        s.activate(&token_hash("real-other"), at, activation_audit(at))
            .await,
        "activating an email activated by another registration",
    )?;
    assert!(matches!(e, StoreError::Duplicate("login")), "{e:?}");
    assert_unchanged(db, &before, "a losing activation (email)").await?;
    assert_eq!(
        s.enterprise_by_credit_code(&credit_code("320000", 502))
            .await?,
        None,
        "no enterprise is left behind by a refused activation"
    );

    // A link works once, and not after it expired; a new link replaces the old one.
    let late = registration(
        &credit_code("320000", 503),
        "late@example.com",
        "320000",
        "late",
        t0(),
    );
    pending(db, &late).await?;
    let e = refused(
        s.activate(&token_hash("real"), at, activation_audit(at))
            .await,
        "a used link",
    )?;
    assert!(matches!(e, StoreError::TokenInvalid), "{e:?}");
    let expired = t0() + Duration::hours(49);
    let e = refused(
        s.activate(&token_hash("late"), expired, activation_audit(expired))
            .await,
        "an expired link",
    )?;
    assert!(matches!(e, StoreError::TokenInvalid), "{e:?}");
    s.reissue_pending_activation(
        &late.account.id,
        NewToken {
            token_hash: token_hash("late-again"),
            expires_at: expired + Duration::hours(48),
            created_at: expired,
        },
        message("activation-late-again", "late@example.com", expired),
    )
    .await?;
    let e = refused(
        s.activate(&token_hash("late"), expired, activation_audit(expired))
            .await,
        "the replaced link",
    )?;
    assert!(matches!(e, StoreError::TokenInvalid), "{e:?}");
    let account = s
        .activate(
            &token_hash("late-again"),
            expired,
            activation_audit(expired),
        )
        .await?;
    assert_eq!(account.id, late.account.id);

    // Pending registrations expired long ago are forgotten by the next registration.
    assert!(
        s.pending_registration("squatter@example.com")
            .await?
            .is_some()
    );
    let next = registration(
        &credit_code("320000", 504),
        "next@example.com",
        "320000",
        "next",
        t0() + Duration::days(40),
    );
    s.register_pending(next, t0() + Duration::days(10)).await?;
    assert_eq!(s.pending_registration("squatter@example.com").await?, None);
    let report = s.verify_audit().await?;
    assert_eq!(report.first_broken, None);
    Ok(())
}

async fn concurrent_activations_of_one_credit_code_let_exactly_one_through(
    db: &TestDb,
) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let code = credit_code("320000", 601);
    for i in 0..6 {
        let reg = registration(
            &code,
            &format!("race{i}@example.com"),
            "320000",
            &format!("race-{i}"),
            t0(),
        );
        pending(db, &reg).await?;
    }
    let store = db.shared();
    let barrier = Arc::new(Barrier::new(6));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let at = t0() + mins(1);
                store
                    .activate(&token_hash(&format!("race-{i}")), at, activation_audit(at))
                    .await
            })
        })
        .collect();
    let (mut ok, mut taken) = (0, 0);
    for task in tasks {
        match task.await? {
            Ok(_) => ok += 1,
            Err(StoreError::Duplicate("credit_code")) => taken += 1,
            Err(e) => bail!("unexpected error from a concurrent activation: {e:?}"),
        }
    }
    assert_eq!((ok, taken), (1, 5));
    let now = snapshot(db).await?;
    assert_eq!(now.count("enterprises"), 1);
    assert_eq!(now.count("accounts"), 1);
    assert_eq!(now.count("pending_registrations"), 5);
    Ok(())
}

async fn mail_quotas_hold_exactly_under_concurrency(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let take = |key: &str, limit| QuotaTake {
        key: key.into(),
        limit,
        window: Duration::hours(24),
    };
    // 30 requests at once for one recipient with a quota of 5: exactly 5 get through.
    let store = db.shared();
    let barrier = Arc::new(Barrier::new(30));
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let takes = vec![
                take(&format!("addr:10.0.0.{i}"), 100),
                take("to:victim@example.com", 5),
            ];
            tokio::spawn(async move {
                barrier.wait().await;
                store.take_quota(&takes, t0()).await
            })
        })
        .collect();
    let mut taken = 0;
    for task in tasks {
        match task.await?? {
            QuotaOutcome::Taken => taken += 1,
            QuotaOutcome::Refused { key, until } => {
                assert_eq!(key, "to:victim@example.com");
                assert_eq!(until, t0() + Duration::hours(24));
            }
        }
    }
    assert_eq!(
        taken, 5,
        "a quota of 5 lets exactly 5 through under concurrency"
    );

    // A refusal takes nothing from the other quotas of the same request.
    let before = snapshot(db).await?;
    let outcome = s
        .take_quota(
            &[take("addr:10.0.0.200", 1), take("to:victim@example.com", 5)],
            t0() + mins(1),
        )
        .await?;
    assert!(
        matches!(outcome, QuotaOutcome::Refused { .. }),
        "{outcome:?}"
    );
    assert_unchanged(db, &before, "a refused quota").await?;
    assert_eq!(
        s.take_quota(&[take("addr:10.0.0.200", 1)], t0() + mins(1))
            .await?,
        QuotaOutcome::Taken,
        "the address's unit was not spent by the refused request"
    );
    // The next day the recipient's window starts again.
    assert_eq!(
        s.take_quota(
            &[take("to:victim@example.com", 5)],
            t0() + Duration::hours(24)
        )
        .await?,
        QuotaOutcome::Taken
    );
    Ok(())
}

async fn an_enterprise_can_be_released_or_transferred_once(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let code = credit_code("320000", 701);
    let squat = registration(&code, "squatter@example.com", "320000", "squat", t0());
    pending(db, &squat).await?;
    let real = registration(&code, "real@example.com", "320000", "real", t0() + mins(1));
    pending(db, &real).await?;
    let at = t0() + mins(2);
    let squatter = s
        .activate(&token_hash("squat"), at, activation_audit(at))
        .await?;
    s.create_session(
        NewSession {
            token_hash: token_hash("squatter-session"),
            account_id: squatter.id.clone(),
            created_at: at,
            expires_at: at + Duration::hours(8),
            key_id: None,
        },
        audit(at, "session.create", &squatter.id, ""),
    )
    .await?;
    let e = refused(
        s.activate(&token_hash("real"), at, activation_audit(at))
            .await,
        "the real enterprise while the squatter holds the credit code",
    )?;
    assert!(matches!(e, StoreError::Duplicate("credit_code")), "{e:?}");

    // Released: the credit code is free, the squatter's login and session are gone.
    let at = t0() + mins(3);
    let before = snapshot(db).await?;
    let released = s
        .release_enterprise(
            &squat.enterprise.id,
            at,
            vec![message("release-1", "squatter@example.com", at)],
            audit(at, "enterprise.release", &squat.enterprise.id, "released"),
        )
        .await?;
    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("audit_log", 1), ("outbox", 1)])
    );
    assert_ne!(released.credit_code, code);
    assert_eq!(s.enterprise_by_credit_code(&code).await?, None);
    assert_eq!(s.account_by_login("squatter@example.com").await?, None);
    assert_eq!(
        s.session_account(&token_hash("squatter-session"), at)
            .await?,
        None,
        "the released account's sessions end"
    );
    let e = refused(
        s.release_enterprise(
            &squat.enterprise.id,
            at,
            vec![],
            audit(at, "enterprise.release", &squat.enterprise.id, "again"),
        )
        .await,
        "releasing twice",
    )?;
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
    assert_unchanged(db, &after, "a second release").await?;
    // Now the real enterprise's link works.
    let real_account = s
        .activate(&token_hash("real"), at, activation_audit(at))
        .await?;
    assert_eq!(
        s.enterprise_by_credit_code(&code).await?.map(|e| e.id),
        Some(real.enterprise.id.clone())
    );

    // Transferred: login and email change, the old password stops, a reset link is stored.
    let other = enterprise(db, 702, "320000").await?;
    let at = t0() + mins(4);
    let before = snapshot(db).await?;
    let e = refused(
        s.transfer_enterprise_account(
            &other.account_id,
            "real@example.com",
            NewToken {
                token_hash: token_hash("transfer-taken"),
                expires_at: at + Duration::hours(72),
                created_at: at,
            },
            vec![message("transfer-taken", "real@example.com", at)],
            audit(at, "enterprise.transfer", &other.id, "taken"),
        )
        .await,
        "transferring to another account's email",
    )?;
    assert!(matches!(e, StoreError::Duplicate("login")), "{e:?}");
    assert_unchanged(db, &before, "a refused transfer").await?;
    let moved = s
        .transfer_enterprise_account(
            &other.account_id,
            "owner@example.com",
            NewToken {
                token_hash: token_hash("transfer"),
                expires_at: at + Duration::hours(72),
                created_at: at,
            },
            vec![
                message("transfer-new", "owner@example.com", at),
                message("transfer-old", &other.email, at),
            ],
            audit(at, "enterprise.transfer", &other.id, "owner@example.com"),
        )
        .await?;
    assert_eq!(moved.login, "owner@example.com");
    assert_eq!(moved.email, "owner@example.com");
    assert_eq!(s.account_by_login(&other.email).await?, None);
    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("audit_log", 1), ("outbox", 2), ("password_resets", 1)])
    );
    let account = s
        .complete_password_reset(
            &token_hash("transfer"),
            "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA",
            at + mins(1),
            audit(at + mins(1), "password.reset", "", ""),
        )
        .await?;
    assert_eq!(account.id, other.account_id);
    assert_ne!(real_account.id, account.id);
    let report = s.verify_audit().await?;
    assert_eq!(report.first_broken, None);
    Ok(())
}

// =============================================================================================
// 5–6. Requests, holdings and login names
// =============================================================================================

async fn create_request_numbers_allocates_and_records_history(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    let before = snapshot(db).await?;

    let new = first(&a, t0());
    let r = s.create_request(new.clone()).await?;
    assert_eq!(r.id, new.id);
    assert_eq!(r.kind, Kind::First);
    assert_eq!(r.status, Status::Draft);
    assert_eq!(r.version, 1);
    assert_eq!(r.enterprise_id, a.id);
    assert_eq!(r.province, "320000");
    assert_eq!(r.form, new.form);
    assert_eq!(r.due_at, None);
    assert_eq!(r.created_at, t0());
    assert_eq!(r.updated_at, t0());
    assert!(
        r.number.starts_with("EK32") && r.number.contains("20260302"),
        "number {} should carry the province and the date",
        r.number
    );
    let name = r.login_name.clone().context("no login name allocated")?;
    assert!(name.starts_with("ek32"), "login name {name}");

    assert_eq!(s.request(&r.id).await?, Some(r.clone()));
    assert_eq!(s.request_by_number(&r.number).await?, Some(r.clone()));
    assert_eq!(s.request("no-such-request").await?, None);

    let history = s.history(&r.id).await?;
    assert_eq!(history.len(), 1, "{history:?}");
    let h = &history[0];
    assert_eq!(h.seq, 1);
    assert_eq!(h.action, "create");
    assert_eq!(h.from_status, None);
    assert_eq!(h.to_status, Status::Draft);
    assert_eq!(h.actor_id, a.account_id);
    assert_eq!(h.actor_role, Role::Enterprise);
    assert_eq!(h.at, t0());

    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[
            ("audit_log", 1),
            ("counters", 1),
            ("login_names", 1),
            ("request_history", 1),
            ("requests", 1),
        ])
    );
    let record = sqlx::query("SELECT object_type, object_id FROM audit_log WHERE seq = $1")
        .bind(after.audit_head.0)
        .fetch_one(db.pool())
        .await?;
    assert_eq!(record.try_get::<String, _>("object_type")?, "request");
    assert_eq!(record.try_get::<String, _>("object_id")?, r.id);
    let owner = sqlx::query("SELECT enterprise_id, request_id FROM login_names WHERE name = $1")
        .bind(&name)
        .fetch_one(db.pool())
        .await?;
    assert_eq!(owner.try_get::<String, _>("enterprise_id")?, a.id);
    assert_eq!(
        owner.try_get::<Option<String>, _>("request_id")?,
        Some(r.id.clone())
    );

    // The next request gets the next number and another login name.
    let r2 = s.create_request(additional(&a, t0() + mins(1))).await?;
    assert_ne!(r2.number, r.number);
    assert!(r2.number.starts_with("EK32"), "{}", r2.number);
    assert_ne!(r2.login_name, r.login_name);
    assert_eq!(r2.form.reason.as_deref(), Some("新增进口业务经办人"));

    // The date in the number is the date in China: 00:30 on 3 March in Shanghai is still
    // 2 March in UTC.
    let b = enterprise(db, 2, "320000").await?;
    let midnight = Utc
        .with_ymd_and_hms(2026, 3, 2, 16, 30, 0)
        .single()
        .context("valid time")?;
    let r3 = s.create_request(first(&b, midnight)).await?;
    assert!(
        r3.number.starts_with("EK32") && r3.number.contains("20260303"),
        "number {} should carry the Shanghai date 20260303",
        r3.number
    );

    // A request for an enterprise that does not exist.
    let before = snapshot(db).await?;
    let ghost = Ent {
        id: "no-such-enterprise".into(),
        ..a.clone()
    };
    let e = refused(
        s.create_request(first(&ghost, t0())).await,
        "a request of nobody",
    )?;
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
    assert_unchanged(db, &before, "a request of a missing enterprise").await?;
    Ok(())
}

async fn fourth_key_is_refused_and_changes_nothing(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    s.create_request(first(&a, t0())).await?;
    s.create_request(additional(&a, t0() + mins(1))).await?;
    let third = s.create_request(additional(&a, t0() + mins(2))).await?;

    let before = snapshot(db).await?;
    let e = refused(
        s.create_request(additional(&a, t0() + mins(3))).await,
        "a fourth key",
    )?;
    assert!(
        matches!(e, StoreError::Domain(DomainError::TooManyKeys { held: 3 })),
        "{e:?}"
    );
    assert_unchanged(db, &before, "a refused fourth key").await?;

    let reapply = new_request(
        &a,
        Kind::Reapplication,
        form(LoginNameMode::Allocate, None, None),
        LoginNameClaim::Allocate,
        t0() + mins(4),
    );
    let e = refused(
        s.create_request(reapply).await,
        "a fourth key by re-application",
    )?;
    assert!(
        matches!(e, StoreError::Domain(DomainError::TooManyKeys { .. })),
        "{e:?}"
    );
    let e = refused(
        s.create_request(first(&a, t0() + mins(4))).await,
        "a second first issue",
    )?;
    assert!(
        matches!(e, StoreError::Domain(DomainError::NotFirst)),
        "{e:?}"
    );
    assert_unchanged(db, &before, "refused requests").await?;

    // A withdrawn request no longer counts: there is room again.
    s.apply_transition(step(
        &third,
        Action::Withdraw,
        Status::Withdrawn,
        Role::Enterprise,
        t0() + mins(5),
    ))
    .await?;
    let again = s.create_request(additional(&a, t0() + mins(6))).await?;
    assert_eq!(again.status, Status::Draft);

    // An enterprise without a key cannot ask for an additional one.
    let b = enterprise(db, 2, "320000").await?;
    let before = snapshot(db).await?;
    let e = refused(
        s.create_request(additional(&b, t0() + mins(7))).await,
        "an additional key without a first",
    )?;
    assert!(
        matches!(e, StoreError::Domain(DomainError::NoKeyYet)),
        "{e:?}"
    );
    assert_unchanged(db, &before, "a refused additional key").await?;
    Ok(())
}

async fn concurrent_additional_requests_never_exceed_three_keys(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    s.create_request(first(&a, t0())).await?;

    let store = db.shared();
    let barrier = Arc::new(Barrier::new(6));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let new = additional(&a, t0() + mins(1 + i));
            tokio::spawn(async move {
                barrier.wait().await;
                store.create_request(new).await
            })
        })
        .collect();
    let (mut created, mut too_many) = (0, 0);
    for task in tasks {
        match task.await? {
            Ok(_) => created += 1,
            Err(StoreError::Domain(DomainError::TooManyKeys { .. })) => too_many += 1,
            Err(e) => bail!("unexpected error from a concurrent additional request: {e:?}"),
        }
    }
    assert_eq!(
        (created, too_many),
        (2, 4),
        "room for exactly two more keys"
    );
    let open = s
        .list_requests(&RequestFilter {
            enterprise_id: Some(a.id.clone()),
            ..RequestFilter::default()
        })
        .await?;
    assert_eq!(open.len(), 3);
    let report = s.verify_audit().await?;
    assert_eq!(report.first_broken, None);
    Ok(())
}

async fn login_names_are_unique_and_owned(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    let b = enterprise(db, 2, "320000").await?;
    let c = enterprise(db, 3, "320000").await?;

    // An electromechanical importer registers its existing login name.
    let existing = |ent: &Ent, name: &str| {
        new_request(
            ent,
            Kind::First,
            form(LoginNameMode::Existing, Some(name), None),
            LoginNameClaim::Existing(name.into()),
            t0(),
        )
    };
    let original = |ent: &Ent, name: &str| {
        new_request(
            ent,
            Kind::Replacement,
            form(LoginNameMode::Original, Some(name), Some("钥匙遗失")),
            LoginNameClaim::Original(name.into()),
            t0() + mins(1),
        )
    };
    let ra = s.create_request(existing(&a, "jdimport01")).await?;
    assert_eq!(ra.login_name.as_deref(), Some("jdimport01"));
    let bound = |name: &'static str| async move {
        sqlx::query("SELECT enterprise_id FROM login_names WHERE name = $1")
            .bind(name)
            .fetch_optional(db.pool())
            .await
            .map(|r| r.map(|r| r.get::<String, _>("enterprise_id")))
    };
    assert_eq!(
        bound("jdimport01").await?,
        None,
        "nothing is bound before approval"
    );

    // Nothing is claimed before the agency approves: B may bring the same name, and the
    // first approval wins.
    let rb = s.create_request(existing(&b, "jdimport01")).await?;
    let approve = |r: &RequestRecord, at| {
        step(
            r,
            Action::AgencyApprove,
            Status::ProviderReview,
            Role::Agency,
            at,
        )
    };
    s.apply_transition(approve(&ra, t0() + mins(1))).await?;
    assert_eq!(bound("jdimport01").await?, Some(a.id.clone()));
    let before = snapshot(db).await?;
    let e = refused(
        s.apply_transition(approve(&rb, t0() + mins(1))).await,
        "approving a name another enterprise's approval bound",
    )?;
    assert!(
        matches!(e, StoreError::Domain(DomainError::LoginNameTaken)),
        "{e:?}"
    );
    assert_unchanged(db, &before, "a refused approval").await?;
    s.apply_transition(step(
        &rb,
        Action::Withdraw,
        Status::Withdrawn,
        Role::Enterprise,
        t0() + mins(1),
    ))
    .await?;
    assert_eq!(
        bound("jdimport01").await?,
        Some(a.id.clone()),
        "B's withdrawal does not release A's name"
    );

    let before = snapshot(db).await?;
    let e = refused(
        s.create_request(existing(&b, "jdimport01")).await,
        "another enterprise's existing name",
    )?;
    assert!(
        matches!(e, StoreError::Domain(DomainError::LoginNameTaken)),
        "{e:?}"
    );
    assert_unchanged(db, &before, "a taken existing name").await?;

    let e = refused(
        s.create_request(original(&b, "jdimport01")).await,
        "a replacement for another enterprise's key",
    )?;
    assert!(
        matches!(e, StoreError::Domain(DomainError::LoginNameNotOwned)),
        "{e:?}"
    );
    let e = refused(
        s.create_request(original(&b, "nobody0001")).await,
        "a replacement for a key nobody has",
    )?;
    assert!(
        matches!(e, StoreError::Domain(DomainError::LoginNameNotOwned)),
        "{e:?}"
    );
    assert_unchanged(db, &before, "names not owned").await?;

    // The owner's name with no key of its own under it: nothing to replace (a 补办 would
    // be a key outside the three; the key case runs through the API in
    // ekey-server tests/api/replacement.rs).
    let e = refused(
        s.create_request(original(&a, "jdimport01")).await,
        "a replacement for a name without a key",
    )?;
    assert!(
        matches!(
            e,
            StoreError::Domain(DomainError::KeyCap(
                ekey_domain::keycap::KeyCapError::NothingToReplace
            ))
        ),
        "{e:?}"
    );
    assert_unchanged(db, &before, "a name without a key").await?;

    // 获取登录名: unique names, reserved for the enterprise, at most three unused at once.
    let before = snapshot(db).await?;
    let mut reserved = Vec::new();
    for _ in 0..3 {
        let name = s.reserve_login_name(&c.id, &c.province, t0()).await?;
        assert!(name.starts_with("ek32"), "{name}");
        assert!(ekey_domain::request::is_allocated_pattern(&name), "{name}");
        reserved.push(name);
    }
    let distinct: BTreeSet<&String> = reserved.iter().collect();
    assert_eq!(distinct.len(), reserved.len(), "{reserved:?}");
    let after = snapshot(db).await?;
    let e = refused(
        s.reserve_login_name(&c.id, &c.province, t0()).await,
        "a fourth unused reservation",
    )?;
    assert!(
        matches!(
            e,
            StoreError::Domain(DomainError::TooManyLoginNameReservations)
        ),
        "{e:?}"
    );
    assert_unchanged(db, &after, "a refused reservation").await?;
    assert_eq!(
        before
            .delta(&after)
            .into_iter()
            .find(|(t, _)| t == "login_names"),
        Some(("login_names".to_string(), 3))
    );

    // Another enterprise cannot use C's reservation, neither as reserved nor as existing.
    let reserved_claim = |ent: &Ent, kind: Kind, name: &str| {
        new_request(
            ent,
            kind,
            form(
                LoginNameMode::Allocate,
                Some(name),
                (kind == Kind::Additional).then_some("扩大业务"),
            ),
            LoginNameClaim::Reserved(name.into()),
            t0() + mins(2),
        )
    };
    let e = refused(
        s.create_request(reserved_claim(&b, Kind::First, &reserved[1]))
            .await,
        "another enterprise's reserved name",
    )?;
    assert!(
        matches!(e, StoreError::Domain(DomainError::LoginNameTaken)),
        "{e:?}"
    );
    let e = refused(
        s.create_request(existing(&b, &reserved[2])).await,
        "a reserved name claimed as existing",
    )?;
    assert!(
        matches!(
            e,
            StoreError::Domain(DomainError::LoginNameAllocatedPattern)
        ),
        "{e:?}"
    );
    let e = refused(
        s.create_request(reserved_claim(&b, Kind::First, "ek320000000"))
            .await,
        "a name nobody reserved",
    )?;
    assert!(
        matches!(e, StoreError::Domain(DomainError::LoginNameNotOwned)),
        "{e:?}"
    );
    assert_unchanged(db, &after, "refused reserved names").await?;

    // The owner binds its reservation; no new name is allocated.
    let rc = s
        .create_request(reserved_claim(&c, Kind::First, &reserved[0]))
        .await?;
    assert_eq!(rc.login_name.as_deref(), Some(reserved[0].as_str()));
    let bound = sqlx::query("SELECT request_id FROM login_names WHERE name = $1")
        .bind(&reserved[0])
        .fetch_one(db.pool())
        .await?;
    assert_eq!(
        bound.try_get::<Option<String>, _>("request_id")?,
        Some(rc.id.clone())
    );
    let now = snapshot(db).await?;
    assert_eq!(now.count("login_names"), after.count("login_names"));

    // A reservation binds one request only.
    let e = refused(
        s.create_request(reserved_claim(&c, Kind::Additional, &reserved[0]))
            .await,
        "binding a reservation twice",
    )?;
    assert!(
        matches!(
            e,
            StoreError::Domain(DomainError::LoginNameNotOwned | DomainError::LoginNameTaken)
        ),
        "{e:?}"
    );
    assert_unchanged(db, &now, "a reservation used twice").await?;
    Ok(())
}

async fn login_name_reservations_are_capped_and_expire(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let c = enterprise(db, 3, "320000").await?;
    let mut reserved = Vec::new();
    for _ in 0..3 {
        reserved.push(s.reserve_login_name(&c.id, &c.province, t0()).await?);
    }
    let e = refused(
        s.reserve_login_name(&c.id, &c.province, t0() + Duration::days(6))
            .await,
        "a fourth unused reservation within the week",
    )?;
    assert!(
        matches!(
            e,
            StoreError::Domain(DomainError::TooManyLoginNameReservations)
        ),
        "{e:?}"
    );
    // Unused for a week: released, and no longer usable by the enterprise.
    let later = t0() + Duration::days(8);
    let fresh = s.reserve_login_name(&c.id, &c.province, later).await?;
    let unused: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM login_names WHERE enterprise_id = $1 AND request_id IS NULL",
    )
    .bind(&c.id)
    .fetch_one(db.pool())
    .await?
    .try_get("n")?;
    assert_eq!(unused, 1, "the expired reservations were released");
    let claim = |name: &str| {
        new_request(
            &c,
            Kind::First,
            form(LoginNameMode::Allocate, Some(name), None),
            LoginNameClaim::Reserved(name.into()),
            later,
        )
    };
    let e = refused(
        s.create_request(claim(&reserved[0])).await,
        "an expired reservation",
    )?;
    assert!(
        matches!(e, StoreError::Domain(DomainError::LoginNameNotOwned)),
        "{e:?}"
    );
    let r = s.create_request(claim(&fresh)).await?;
    assert_eq!(r.login_name.as_deref(), Some(fresh.as_str()));
    Ok(())
}

async fn concurrent_claims_of_one_existing_name_give_it_to_one_enterprise(
    db: &TestDb,
) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    // Five enterprises bring the same existing name: nothing is claimed at the door, so all
    // five requests exist; their approvals race and exactly one binds the name.
    let mut requests = Vec::new();
    for n in 1..=5 {
        let ent = enterprise(db, n, "320000").await?;
        requests.push(
            s.create_request(new_request(
                &ent,
                Kind::First,
                form(LoginNameMode::Existing, Some("mech-import-7"), None),
                LoginNameClaim::Existing("mech-import-7".into()),
                t0(),
            ))
            .await?,
        );
    }
    let store = db.shared();
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .iter()
        .map(|r| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let t = step(
                r,
                Action::AgencyApprove,
                Status::ProviderReview,
                Role::Agency,
                t0() + mins(1),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                store.apply_transition(t).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut taken = 0;
    for task in tasks {
        match task.await? {
            Ok(r) => winners.push(r),
            Err(StoreError::Domain(DomainError::LoginNameTaken)) => taken += 1,
            Err(e) => bail!("unexpected error from a concurrent approval: {e:?}"),
        }
    }
    assert_eq!((winners.len(), taken), (1, 4));
    let owner = sqlx::query("SELECT enterprise_id FROM login_names WHERE name = 'mech-import-7'")
        .fetch_all(db.pool())
        .await?;
    assert_eq!(owner.len(), 1);
    assert_eq!(
        owner[0].try_get::<String, _>("enterprise_id")?,
        winners[0].enterprise_id
    );
    // The winner's request refused: the name is free again for the others.
    let refused_at = t0() + mins(2);
    s.apply_transition(step(
        &winners[0],
        Action::AgencyRefuse,
        Status::Refused,
        Role::Agency,
        refused_at,
    ))
    .await?;
    let owner = sqlx::query("SELECT enterprise_id FROM login_names WHERE name = 'mech-import-7'")
        .fetch_all(db.pool())
        .await?;
    assert!(
        owner.is_empty(),
        "a refused request releases its existing name"
    );
    let other = requests
        .iter()
        .find(|r| r.id != winners[0].id)
        .context("another request")?;
    s.apply_transition(step(
        other,
        Action::AgencyApprove,
        Status::ProviderReview,
        Role::Agency,
        t0() + mins(3),
    ))
    .await?;
    Ok(())
}

// =============================================================================================
// 7–8. The one-transaction rule
// =============================================================================================

async fn transition_writes_state_history_outbox_and_audit_together(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    let r = s.create_request(first(&a, t0())).await?;
    let before = snapshot(db).await?;

    let at = t0() + Duration::hours(1);
    let mut t = step(
        &r,
        Action::Submit,
        Status::AwaitingMaterials,
        Role::Enterprise,
        at,
    );
    t.remark = Some("表格已确认".into());
    t.outbox = vec![message(&format!("submitted-{}", r.id), &a.email, at)];
    let r2 = s.apply_transition(t.clone()).await?;

    assert_eq!(r2.status, Status::AwaitingMaterials);
    assert_eq!(r2.version, r.version + 1);
    assert_eq!(r2.updated_at, at);
    assert_eq!(r2.created_at, r.created_at);
    assert_eq!(r2.number, r.number);
    assert_eq!(r2.login_name, r.login_name);
    assert_eq!(r2.form, r.form);
    assert_eq!(r2.due_at, None);
    assert_eq!(s.request(&r.id).await?, Some(r2.clone()));

    let history = s.history(&r.id).await?;
    assert_eq!(history.len(), 2, "{history:?}");
    let h = &history[1];
    assert_eq!(h.seq, 2);
    assert_eq!(h.action, "submit");
    assert_eq!(h.from_status, Some(Status::Draft));
    assert_eq!(h.to_status, Status::AwaitingMaterials);
    assert_eq!(h.actor_id, "enterprise-actor");
    assert_eq!(h.actor_role, Role::Enterprise);
    assert_eq!(h.remark.as_deref(), Some("表格已确认"));
    assert_eq!(h.at, at);

    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("audit_log", 1), ("outbox", 1), ("request_history", 1)]),
        "status, history, outbox and audit in one go"
    );
    assert_eq!(
        before.changed(&after),
        [
            "audit_head",
            "audit_log",
            "outbox",
            "request_history",
            "requests"
        ],
        "and nothing else"
    );
    let mail = sqlx::query("SELECT recipient, subject, status FROM outbox WHERE dedup_key = $1")
        .bind(&t.outbox[0].dedup_key)
        .fetch_one(db.pool())
        .await?;
    assert_eq!(mail.try_get::<String, _>("recipient")?, a.email);
    assert_eq!(mail.try_get::<String, _>("subject")?, t.outbox[0].subject);
    assert_eq!(mail.try_get::<String, _>("status")?, "pending");
    let record = sqlx::query(
        "SELECT action, object_id, before_state, after_state FROM audit_log WHERE seq = $1",
    )
    .bind(after.audit_head.0)
    .fetch_one(db.pool())
    .await?;
    assert_eq!(record.try_get::<String, _>("action")?, "request.submit");
    assert_eq!(record.try_get::<String, _>("object_id")?, r.id);
    assert_eq!(record.try_get::<String, _>("before_state")?, "draft");
    assert_eq!(
        record.try_get::<String, _>("after_state")?,
        "awaiting_materials"
    );
    assert_eq!(s.verify_audit().await?.first_broken, None);

    // The same decision taken on the stale version: a conflict, nothing written.
    let mut stale = step(
        &r,
        Action::Withdraw,
        Status::Withdrawn,
        Role::Enterprise,
        at + mins(1),
    );
    stale.outbox = vec![message("stale-mail", &a.email, at)];
    let e = refused(s.apply_transition(stale).await, "a stale version")?;
    assert!(matches!(e, StoreError::Conflict), "{e:?}");
    assert_unchanged(db, &after, "a stale transition").await?;

    // The right version but a status that has moved on: a conflict too.
    let mut moved = step(
        &r2,
        Action::Submit,
        Status::AwaitingMaterials,
        Role::Enterprise,
        at,
    );
    moved.from = Status::Draft;
    let e = refused(s.apply_transition(moved).await, "a wrong from-status")?;
    assert!(matches!(e, StoreError::Conflict), "{e:?}");
    assert_unchanged(db, &after, "a transition from the wrong status").await?;

    // A request that does not exist.
    let mut missing = step(
        &r2,
        Action::Withdraw,
        Status::Withdrawn,
        Role::Enterprise,
        at,
    );
    missing.request_id = "no-such-request".into();
    let e = refused(s.apply_transition(missing).await, "a missing request")?;
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
    assert_unchanged(db, &after, "a transition of a missing request").await?;

    // An edit stores the new form with its version.
    let draft = s.create_request(additional(&a, t0() + mins(5))).await?;
    let mut edit = step(
        &draft,
        Action::Edit,
        Status::Draft,
        Role::Enterprise,
        t0() + mins(6),
    );
    let mut changed = draft.form.clone();
    changed.reason = Some("新增出口业务".into());
    edit.form = Some(changed.clone());
    let edited = s.apply_transition(edit).await?;
    assert_eq!(edited.version, 2);
    assert_eq!(edited.status, Status::Draft);
    assert_eq!(edited.form, changed);
    assert_eq!(
        s.request(&draft.id).await?.context("edited request")?.form,
        changed
    );
    let history = s.history(&draft.id).await?;
    assert_eq!(
        history
            .iter()
            .map(|h| h.action.as_str())
            .collect::<Vec<_>>(),
        ["create", "edit"]
    );
    Ok(())
}

async fn concurrent_transitions_exactly_one_wins(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    let r = s.create_request(first(&a, t0())).await?;
    let before = snapshot(db).await?;

    let store = db.shared();
    let barrier = Arc::new(Barrier::new(10));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let at = t0() + mins(10);
            let mut t = step(
                &r,
                Action::Submit,
                Status::AwaitingMaterials,
                Role::Enterprise,
                at,
            );
            t.outbox = vec![message(&format!("race-{i}"), &a.email, at)];
            t.audit.after = format!("awaiting_materials (task {i})");
            tokio::spawn(async move {
                barrier.wait().await;
                (i, store.apply_transition(t).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        match task.await? {
            (i, Ok(record)) => winners.push((i, record)),
            (_, Err(StoreError::Conflict)) => conflicts += 1,
            (i, Err(e)) => bail!("task {i}: unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    assert_eq!(conflicts, 9);
    let (winner, record) = &winners[0];
    assert_eq!(record.version, 2);
    assert_eq!(record.status, Status::AwaitingMaterials);

    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("audit_log", 1), ("outbox", 1), ("request_history", 1)])
    );
    assert_eq!(s.history(&r.id).await?.len(), 2);
    let queued = sqlx::query("SELECT dedup_key FROM outbox WHERE dedup_key LIKE 'race-%'")
        .fetch_all(db.pool())
        .await?;
    assert_eq!(queued.len(), 1);
    assert_eq!(
        queued[0].try_get::<String, _>("dedup_key")?,
        format!("race-{winner}"),
        "the winner's mail, not a loser's"
    );
    let last = sqlx::query("SELECT after_state FROM audit_log WHERE seq = $1")
        .bind(after.audit_head.0)
        .fetch_one(db.pool())
        .await?;
    assert_eq!(
        last.try_get::<String, _>("after_state")?,
        format!("awaiting_materials (task {winner})")
    );
    let report = s.verify_audit().await?;
    assert_eq!(report.first_broken, None);
    assert_eq!(report.records, after.count("audit_log"));
    Ok(())
}

async fn concurrent_transitions_of_different_requests_keep_one_chain(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let mut ents = Vec::new();
    for n in 1..=10 {
        ents.push(enterprise(db, n, "320000").await?);
    }
    let store = db.shared();

    // Ten enterprises create their requests at the same moment: ten distinct numbers.
    let barrier = Arc::new(Barrier::new(ents.len()));
    let tasks: Vec<_> = ents
        .iter()
        .map(|ent| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let new = first(ent, t0());
            tokio::spawn(async move {
                barrier.wait().await;
                store.create_request(new).await
            })
        })
        .collect();
    let mut requests = Vec::new();
    for task in tasks {
        requests.push(task.await??);
    }
    let numbers: BTreeSet<&str> = requests.iter().map(|r| r.number.as_str()).collect();
    assert_eq!(numbers.len(), 10, "{numbers:?}");

    // And submit them at the same moment: every audit record joins the one chain.
    let before = snapshot(db).await?;
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .iter()
        .map(|r| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let t = step(
                r,
                Action::Submit,
                Status::AwaitingMaterials,
                Role::Enterprise,
                t0() + mins(1),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                store.apply_transition(t).await
            })
        })
        .collect();
    for task in tasks {
        let record = task.await??;
        assert_eq!(record.status, Status::AwaitingMaterials);
    }
    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("audit_log", 10), ("request_history", 10)])
    );
    assert_eq!(after.audit_head.0, before.audit_head.0 + 10);
    let report = s.verify_audit().await?;
    assert_eq!(
        report.first_broken, None,
        "concurrent appends broke the chain"
    );
    assert_eq!(report.records, after.count("audit_log"));
    Ok(())
}

// =============================================================================================
// 9. Materials
// =============================================================================================

async fn materials_stage_supersede_lock_and_commit(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    let r = s.create_request(first(&a, t0())).await?;
    let r = s
        .apply_transition(step(
            &r,
            Action::Submit,
            Status::AwaitingMaterials,
            Role::Enterprise,
            t0() + mins(1),
        ))
        .await?;
    let upload_audit = |at| NewAudit {
        object_type: "material".into(),
        ..audit(at, "material.upload", &r.id, "staged")
    };
    let current = |list: &[MaterialRecord]| {
        list.iter()
            .map(|m| (m.item, m.blob_key.clone(), m.state))
            .collect::<Vec<_>>()
    };

    let before = snapshot(db).await?;
    let new = upload(
        &r,
        Material::BusinessLicence,
        "blob-1",
        UPLOAD_OPEN,
        t0() + mins(2),
    );
    let m1 = s
        .stage_material(new.clone(), upload_audit(t0() + mins(2)))
        .await?;
    assert_eq!(m1.request_id, r.id);
    assert_eq!(m1.item, Material::BusinessLicence);
    assert_eq!(m1.state, MaterialState::Staged);
    assert_eq!(m1.blob_key, "blob-1");
    assert_eq!(m1.content_type, new.content_type);
    assert_eq!(m1.size, new.size);
    assert_eq!(m1.sha256, new.sha256);
    assert_eq!(m1.file_name, new.file_name);
    assert_eq!(m1.uploaded_at, new.uploaded_at);
    assert_eq!(m1.uploaded_by, new.uploaded_by);
    assert_eq!(s.materials(&r.id).await?, vec![m1.clone()]);
    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("audit_log", 1), ("materials", 1)])
    );

    // A second file for the same item replaces the first.
    let m2 = s
        .stage_material(
            upload(
                &r,
                Material::BusinessLicence,
                "blob-2",
                UPLOAD_OPEN,
                t0() + mins(3),
            ),
            upload_audit(t0() + mins(3)),
        )
        .await?;
    assert_eq!(s.materials(&r.id).await?, vec![m2.clone()]);
    s.stage_material(
        upload(&r, Material::IdCard, "blob-3", UPLOAD_OPEN, t0() + mins(4)),
        upload_audit(t0() + mins(4)),
    )
    .await?;
    assert_eq!(
        current(&s.materials(&r.id).await?),
        [
            (
                Material::BusinessLicence,
                "blob-2".into(),
                MaterialState::Staged
            ),
            (Material::IdCard, "blob-3".into(), MaterialState::Staged),
        ]
    );

    // Not in a status that accepts files: refused, nothing written (not even a touch).
    let before = snapshot(db).await?;
    let e = refused(
        s.stage_material(
            upload(
                &r,
                Material::IdCard,
                "blob-x",
                &[Status::Draft],
                t0() + mins(5),
            ),
            upload_audit(t0() + mins(5)),
        )
        .await,
        "an upload in a locked status",
    )?;
    assert!(
        matches!(
            e,
            StoreError::Domain(DomainError::MaterialsLocked(Status::AwaitingMaterials))
        ),
        "{e:?}"
    );
    assert_unchanged(db, &before, "a refused upload").await?;
    let mut ghost = upload(&r, Material::IdCard, "blob-y", UPLOAD_OPEN, t0() + mins(5));
    ghost.request_id = "no-such-request".into();
    let e = refused(
        s.stage_material(ghost, upload_audit(t0() + mins(5))).await,
        "an upload for a missing request",
    )?;
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
    assert_unchanged(db, &before, "an upload for a missing request").await?;

    // 确认上传 commits the staged set in the same transaction.
    let mut confirm = step(
        &r,
        Action::ConfirmUpload,
        Status::AgencyReview,
        Role::Enterprise,
        t0() + mins(6),
    );
    confirm.commit_materials = true;
    confirm.due_at = Some(t0() + Duration::days(2));
    let r = s.apply_transition(confirm).await?;
    assert_eq!(r.due_at, Some(t0() + Duration::days(2)));
    assert_eq!(
        current(&s.materials(&r.id).await?),
        [
            (
                Material::BusinessLicence,
                "blob-2".into(),
                MaterialState::Committed
            ),
            (Material::IdCard, "blob-3".into(), MaterialState::Committed),
        ]
    );

    // Under review the set is locked.
    let before = snapshot(db).await?;
    let e = refused(
        s.stage_material(
            upload(
                &r,
                Material::BusinessLicence,
                "blob-z",
                UPLOAD_OPEN,
                t0() + mins(7),
            ),
            upload_audit(t0() + mins(7)),
        )
        .await,
        "an upload during review",
    )?;
    assert!(
        matches!(
            e,
            StoreError::Domain(DomainError::MaterialsLocked(Status::AgencyReview))
        ),
        "{e:?}"
    );
    assert_unchanged(db, &before, "an upload during review").await?;

    // Returned: a new scan is staged next to the committed one until it is confirmed.
    let mut back = step(
        &r,
        Action::AgencyReturn,
        Status::Returned,
        Role::Agency,
        t0() + mins(8),
    );
    back.remark = Some("营业执照扫描件不清晰".into());
    let r = s.apply_transition(back).await?;
    s.stage_material(
        upload(
            &r,
            Material::BusinessLicence,
            "blob-4",
            UPLOAD_OPEN,
            t0() + mins(9),
        ),
        upload_audit(t0() + mins(9)),
    )
    .await?;
    assert_eq!(
        current(&s.materials(&r.id).await?),
        [
            (
                Material::BusinessLicence,
                "blob-2".into(),
                MaterialState::Committed
            ),
            (
                Material::BusinessLicence,
                "blob-4".into(),
                MaterialState::Staged
            ),
            (Material::IdCard, "blob-3".into(), MaterialState::Committed),
        ]
    );
    let mut confirm = step(
        &r,
        Action::ConfirmUpload,
        Status::AgencyReview,
        Role::Enterprise,
        t0() + mins(10),
    );
    confirm.commit_materials = true;
    s.apply_transition(confirm).await?;
    assert_eq!(
        current(&s.materials(&r.id).await?),
        [
            (
                Material::BusinessLicence,
                "blob-4".into(),
                MaterialState::Committed
            ),
            (Material::IdCard, "blob-3".into(), MaterialState::Committed),
        ],
        "the new scan replaces the committed one; the other item stays"
    );
    let states = sqlx::query("SELECT blob_key, state FROM materials WHERE request_id = $1")
        .bind(&r.id)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>("blob_key")?,
                row.try_get::<String, _>("state")?,
            ))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    assert_eq!(
        states,
        BTreeMap::from([
            ("blob-1".to_string(), "superseded".to_string()),
            ("blob-2".to_string(), "superseded".to_string()),
            ("blob-3".to_string(), "committed".to_string()),
            ("blob-4".to_string(), "committed".to_string()),
        ]),
        "replaced files are kept as history"
    );
    Ok(())
}

async fn upload_racing_confirm_upload_never_leaves_a_staged_file_under_review(
    db: &TestDb,
) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let store = db.shared();
    for round in 0..8u32 {
        let ent = enterprise(db, round + 1, "320000").await?;
        let r = s.create_request(first(&ent, t0())).await?;
        let r = s
            .apply_transition(step(
                &r,
                Action::Submit,
                Status::AwaitingMaterials,
                Role::Enterprise,
                t0() + mins(1),
            ))
            .await?;
        s.stage_material(
            upload(
                &r,
                Material::BusinessLicence,
                "first",
                UPLOAD_OPEN,
                t0() + mins(2),
            ),
            audit(t0() + mins(2), "material.upload", &r.id, "staged"),
        )
        .await?;

        let barrier = Arc::new(Barrier::new(2));
        let mut confirm = step(
            &r,
            Action::ConfirmUpload,
            Status::AgencyReview,
            Role::Enterprise,
            t0() + mins(3),
        );
        confirm.commit_materials = true;
        let confirming = {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.apply_transition(confirm).await
            })
        };
        let late = upload(&r, Material::IdCard, "late", UPLOAD_OPEN, t0() + mins(3));
        let uploading = {
            let (store, barrier) = (store.clone(), barrier.clone());
            let audit = audit(t0() + mins(3), "material.upload", &r.id, "staged");
            tokio::spawn(async move {
                barrier.wait().await;
                store.stage_material(late, audit).await
            })
        };
        let confirmed = confirming.await??;
        assert_eq!(confirmed.status, Status::AgencyReview);
        match uploading.await? {
            Ok(_) | Err(StoreError::Domain(DomainError::MaterialsLocked(Status::AgencyReview))) => {
            }
            Err(e) => bail!("round {round}: unexpected upload error {e:?}"),
        }
        let materials = s.materials(&r.id).await?;
        assert!(
            materials
                .iter()
                .all(|m| m.state == MaterialState::Committed),
            "round {round}: a file under review was never confirmed: {materials:?}"
        );
    }
    Ok(())
}

// =============================================================================================
// 10. The audit chain
// =============================================================================================

/// One stored audit row, to put back after a test removed it.
async fn audit_row(db: &TestDb, seq: i64) -> Result<sqlx::any::AnyRow> {
    Ok(sqlx::query(
        "SELECT seq, at, actor_id, actor_role, address, action, object_type, object_id, \
         before_state, after_state, prev_hash, hash FROM audit_log WHERE seq = $1",
    )
    .bind(seq)
    .fetch_one(db.pool())
    .await?)
}

async fn reinsert_audit_row(db: &TestDb, row: &sqlx::any::AnyRow) -> Result<()> {
    let mut q = sqlx::query(
        "INSERT INTO audit_log (seq, at, actor_id, actor_role, address, action, object_type, \
         object_id, before_state, after_state, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(row.try_get::<i64, _>("seq")?)
    .bind(row.try_get::<i64, _>("at")?);
    for col in [
        "actor_id",
        "actor_role",
        "address",
        "action",
        "object_type",
        "object_id",
        "before_state",
        "after_state",
        "prev_hash",
        "hash",
    ] {
        q = q.bind(row.try_get::<String, _>(col)?);
    }
    q.execute(db.pool()).await?;
    Ok(())
}

async fn set_after_state(db: &TestDb, seq: i64, after: &str) -> Result<()> {
    sqlx::query("UPDATE audit_log SET after_state = $1 WHERE seq = $2")
        .bind(after)
        .bind(seq)
        .execute(db.pool())
        .await?;
    Ok(())
}

async fn audit_chain_detects_tampering_and_deletion(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?; // 1
    enterprise(db, 2, "320000").await?; // 2
    s.activate(
        &token_hash("token-1"),
        t0() + mins(1),
        audit(t0() + mins(1), "account.activate", "", "active"),
    )
    .await?; // 3
    s.create_session(
        NewSession {
            token_hash: token_hash("bearer"),
            account_id: a.account_id.clone(),
            created_at: t0() + mins(2),
            expires_at: t0() + Duration::hours(8),
            key_id: None,
        },
        audit(t0() + mins(2), "session.create", &a.account_id, "session"),
    )
    .await?; // 4
    s.append_audit(NewAudit {
        actor_id: "agency-js-1".into(),
        actor_role: "agency".into(),
        object_type: "material".into(),
        ..audit(t0() + mins(3), "material.download", "id_card", "downloaded")
    })
    .await?; // 5
    let r = s.create_request(first(&a, t0() + mins(4))).await?; // 6
    s.apply_transition(step(
        &r,
        Action::Submit,
        Status::AwaitingMaterials,
        Role::Enterprise,
        t0() + mins(5),
    ))
    .await?; // 7

    let rows = snapshot(db).await?.count("audit_log");
    assert_eq!(rows, 7);
    let report = s.verify_audit().await?;
    assert_eq!(report.first_broken, None);
    assert_eq!(report.records, rows);

    // Change one character of record 3.
    let original: String = audit_row(db, 3).await?.try_get("after_state")?;
    assert_eq!(original, "active");
    set_after_state(db, 3, "activf").await?;
    let report = s.verify_audit().await?;
    assert!(
        matches!(report.first_broken, Some((3, _))),
        "one changed character in record 3: {report:?}"
    );
    assert_eq!(report.records, 2);
    set_after_state(db, 3, &original).await?;
    assert_eq!(s.verify_audit().await?.first_broken, None);

    sqlx::query("UPDATE audit_log SET after_state = after_state || 'x' WHERE seq = 3")
        .execute(db.pool())
        .await?;
    let report = s.verify_audit().await?;
    assert!(matches!(report.first_broken, Some((3, _))), "{report:?}");
    set_after_state(db, 3, &original).await?;

    // Rewriting record 3 with a matching fresh hash breaks the link from record 4.
    let row = audit_row(db, 3).await?;
    let forged_hash = chain_hash(
        &row.try_get::<String, _>("prev_hash")?,
        &AuditFields {
            seq: 3,
            at_ms: row.try_get("at")?,
            actor_id: &row.try_get::<String, _>("actor_id")?,
            actor_role: &row.try_get::<String, _>("actor_role")?,
            address: &row.try_get::<String, _>("address")?,
            action: &row.try_get::<String, _>("action")?,
            object_type: &row.try_get::<String, _>("object_type")?,
            object_id: &row.try_get::<String, _>("object_id")?,
            before: &row.try_get::<String, _>("before_state")?,
            after: "inactive",
        },
    );
    sqlx::query("UPDATE audit_log SET after_state = 'inactive', hash = $1 WHERE seq = 3")
        .bind(&forged_hash)
        .execute(db.pool())
        .await?;
    let report = s.verify_audit().await?;
    assert!(
        matches!(report.first_broken, Some((4, _))),
        "a re-hashed record must break the next link: {report:?}"
    );
    sqlx::query("UPDATE audit_log SET after_state = $1, hash = $2 WHERE seq = 3")
        .bind(&original)
        .bind(row.try_get::<String, _>("hash")?)
        .execute(db.pool())
        .await?;
    assert_eq!(s.verify_audit().await?.first_broken, None);

    // A record removed from the middle.
    let second = audit_row(db, 2).await?;
    sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(db.pool())
        .await?;
    let report = s.verify_audit().await?;
    assert!(matches!(report.first_broken, Some((2, _))), "{report:?}");
    reinsert_audit_row(db, &second).await?;
    assert_eq!(s.verify_audit().await?.first_broken, None);

    // The last record removed.
    sqlx::query("DELETE FROM audit_log WHERE seq = 7")
        .execute(db.pool())
        .await?;
    let report = s.verify_audit().await?;
    assert!(
        matches!(report.first_broken, Some((7, _))),
        "a removed last record: {report:?}"
    );
    Ok(())
}

/// `ekey audit verify` on a live system: records keep being appended while the chain is
/// walked; a sound chain must never be reported broken.
async fn verifying_while_records_are_appended_reports_no_break(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let store = db.shared();
    let writer = tokio::spawn(async move {
        for i in 0..400 {
            store
                .append_audit(audit(t0() + mins(i), "session.create", "acc", "session"))
                .await?;
        }
        Ok::<_, StoreError>(())
    });
    let mut false_alarms = Vec::new();
    let mut runs = 0;
    while !writer.is_finished() {
        let report = s.verify_audit().await?;
        runs += 1;
        if let Some(broken) = report.first_broken {
            false_alarms.push((report.records, broken));
        }
    }
    writer.await??;
    assert!(
        false_alarms.is_empty(),
        "{} of {runs} verifications during appends reported a sound chain broken, e.g. {:?}",
        false_alarms.len(),
        false_alarms.first()
    );
    let report = s.verify_audit().await?;
    assert_eq!(report.first_broken, None);
    assert_eq!(report.records, 400);
    Ok(())
}

// =============================================================================================
// 11. The outbox
// =============================================================================================

async fn outbox_dedups_leases_retries_and_dead_letters(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?; // queues the activation mail
    let r = s.create_request(first(&a, t0())).await?;
    let at = t0() + mins(1);

    // 50 messages in one transition, one of them twice: queued once, the first one kept.
    let before = snapshot(db).await?;
    let mut t = step(&r, Action::Edit, Status::Draft, Role::Enterprise, at);
    t.outbox = (0..50)
        .map(|i| message(&format!("bulk-{i:02}"), &format!("u{i}@example.com"), at))
        .collect();
    let mut dup = message("bulk-07", "someone-else@example.com", at);
    dup.body = "a second copy".into();
    t.outbox.push(dup);
    let r = s.apply_transition(t).await?;
    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("audit_log", 1), ("outbox", 50), ("request_history", 1)])
    );
    let kept = sqlx::query("SELECT recipient FROM outbox WHERE dedup_key = 'bulk-07'")
        .fetch_all(db.pool())
        .await?;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].try_get::<String, _>("recipient")?, "u7@example.com");

    // The same event again later: still queued once.
    let mut t = step(&r, Action::Edit, Status::Draft, Role::Enterprise, at);
    t.outbox = vec![message("bulk-07", "u7@example.com", at)];
    s.apply_transition(t).await?;
    for _ in 0..2 {
        s.reissue_activation(
            &a.account_id,
            NewToken {
                token_hash: new_id("token"),
                expires_at: at + Duration::hours(48),
                created_at: at,
            },
            message("activation-reissued", &a.email, at),
        )
        .await?;
    }
    let pending: BTreeSet<i64> = sqlx::query("SELECT id FROM outbox WHERE status = 'pending'")
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>("id"))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        pending.len(),
        52,
        "activation + 50 + one reissued activation"
    );
    assert_eq!(
        s.outbox_counts().await?,
        OutboxCounts {
            pending: 52,
            sent: 0,
            dead: 0
        }
    );

    // Two workers claim concurrently in batches of 10: every message to exactly one.
    let now = t0() + Duration::hours(1);
    let lease = now + mins(5);
    let store = db.shared();
    let barrier = Arc::new(Barrier::new(2));
    let workers: Vec<_> = ["worker-a", "worker-b"]
        .into_iter()
        .map(|owner| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut got = Vec::new();
                loop {
                    let batch = store.claim_outbox(owner, now, lease, 10).await?;
                    if batch.is_empty() {
                        break;
                    }
                    assert!(batch.len() <= 10, "batch of {}", batch.len());
                    got.extend(batch);
                    tokio::task::yield_now().await;
                }
                Ok::<_, StoreError>((owner, got))
            })
        })
        .collect();
    let mut owner_of: BTreeMap<i64, &str> = BTreeMap::new();
    let mut claimed: BTreeMap<i64, OutboxMessage> = BTreeMap::new();
    let mut per_worker = Vec::new();
    for worker in workers {
        let (owner, got) = worker.await??;
        per_worker.push(got.iter().map(|m| m.id).collect::<BTreeSet<_>>());
        for m in got {
            assert_eq!(m.attempts, 1);
            if let Some(other) = owner_of.insert(m.id, owner) {
                bail!("message {} handed to both {other} and {owner}", m.id);
            }
            claimed.insert(m.id, m);
        }
    }
    assert!(per_worker[0].is_disjoint(&per_worker[1]));
    let union: BTreeSet<i64> = per_worker[0].union(&per_worker[1]).copied().collect();
    assert_eq!(union, pending, "every message claimed");
    assert!(
        s.claim_outbox("worker-c", now, lease, 10).await?.is_empty(),
        "leased messages are not handed out again"
    );

    // Delivery is recorded only by the lease owner.
    let ids: Vec<i64> = pending.iter().copied().collect();
    let (x, y, z) = (ids[0], ids[1], ids[2]);
    for &id in &ids[3..] {
        let owner = owner_of[&id];
        let stranger = if owner == "worker-a" {
            "worker-b"
        } else {
            "worker-a"
        };
        assert!(
            !s.outbox_delivered(id, stranger, now).await?,
            "{stranger} delivered {id}"
        );
        assert!(s.outbox_delivered(id, owner, now).await?);
        assert!(
            !s.outbox_delivered(id, owner, now).await?,
            "delivered twice"
        );
    }
    assert_eq!(
        s.outbox_counts().await?,
        OutboxCounts {
            pending: 3,
            sent: 49,
            dead: 0
        }
    );

    // A failure reported by someone else changes nothing.
    let before = snapshot(db).await?;
    s.outbox_failed(x, "worker-c", "not mine", now + mins(30), true)
        .await?;
    assert_unchanged(db, &before, "a failure reported by a stranger").await?;

    // A failed message waits until its retry time.
    s.outbox_failed(
        x,
        owner_of[&x],
        "451 try again later",
        now + mins(30),
        false,
    )
    .await?;
    assert!(
        s.claim_outbox("worker-c", now + mins(1), now + mins(6), 10)
            .await?
            .is_empty()
    );

    // After the lease ends, another worker may take the message; the old owner may not
    // record it any more.
    let retaken = s
        .claim_outbox("worker-c", now + mins(10), now + mins(15), 10)
        .await?;
    assert_eq!(
        retaken.iter().map(|m| m.id).collect::<Vec<_>>(),
        [y, z],
        "expired leases come back; the retried message is not due yet"
    );
    assert!(retaken.iter().all(|m| m.attempts == 2));
    assert!(!s.outbox_delivered(y, owner_of[&y], now + mins(11)).await?);
    assert!(s.outbox_delivered(y, "worker-c", now + mins(11)).await?);

    // Given up: a dead letter, never handed out again.
    s.outbox_failed(
        z,
        "worker-c",
        "550 mailbox unavailable",
        now + mins(11),
        true,
    )
    .await?;
    assert_eq!(
        s.outbox_counts().await?,
        OutboxCounts {
            pending: 1,
            sent: 50,
            dead: 1
        }
    );
    let retried = s
        .claim_outbox("worker-d", now + mins(31), now + mins(36), 10)
        .await?;
    assert_eq!(retried.iter().map(|m| m.id).collect::<Vec<_>>(), [x]);
    assert_eq!(retried[0].attempts, 2);
    assert!(s.outbox_delivered(x, "worker-d", now + mins(32)).await?);
    assert!(
        s.claim_outbox(
            "worker-d",
            now + Duration::days(1),
            now + Duration::days(2),
            10
        )
        .await?
        .is_empty()
    );
    assert_eq!(
        s.outbox_counts().await?,
        OutboxCounts {
            pending: 0,
            sent: 51,
            dead: 1
        }
    );

    // An administrator sees the dead letter with its error and puts it back once.
    let dead = s.outbox_dead(10).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0.id, z);
    assert_eq!(dead[0].1, "550 mailbox unavailable");
    let retry_audit = || NewAudit {
        object_type: "outbox".into(),
        ..audit(now + mins(40), "outbox.retry", &z.to_string(), "pending")
    };
    let before = snapshot(db).await?;
    assert!(s.outbox_retry(z, now + mins(40), retry_audit()).await?);
    let after = snapshot(db).await?;
    assert_eq!(
        before.changed(&after),
        ["audit_head", "audit_log", "outbox"],
        "the message and its audit record"
    );
    assert!(
        !s.outbox_retry(z, now + mins(41), retry_audit()).await?,
        "once"
    );
    assert!(
        !s.outbox_retry(x, now + mins(41), retry_audit()).await?,
        "a sent message stays sent"
    );
    assert_unchanged(db, &after, "retrying what is not a dead letter").await?;
    let again = s
        .claim_outbox("worker-e", now + mins(40), now + mins(45), 10)
        .await?;
    assert_eq!(
        again.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(),
        [(z, 1)]
    );
    assert!(s.outbox_delivered(z, "worker-e", now + mins(41)).await?);
    assert!(s.outbox_dead(10).await?.is_empty());

    // The development mailbox keeps one copy per outbox message.
    let mx = &claimed[&x];
    s.dev_mailbox_put(mx, now + mins(32)).await?;
    s.dev_mailbox_put(mx, now + mins(33)).await?;
    let mailbox = s.dev_mailbox().await?;
    assert_eq!(mailbox.len(), 1, "{mailbox:?}");
    assert_eq!(mailbox[0].to, mx.recipient);
    assert_eq!(mailbox[0].subject, mx.subject);
    assert_eq!(mailbox[0].body, mx.body);
    assert_eq!(mailbox[0].channel, Channel::Email);
    assert_eq!(mailbox[0].sent_at, now + mins(32));
    let my = &claimed[&y];
    s.dev_mailbox_put(my, now + mins(34)).await?;
    let mailbox = s.dev_mailbox().await?;
    assert_eq!(
        mailbox.iter().map(|m| m.to.as_str()).collect::<Vec<_>>(),
        [mx.recipient.as_str(), my.recipient.as_str()],
        "oldest first"
    );
    Ok(())
}

// =============================================================================================
// 12. Request lists
// =============================================================================================

async fn list_requests_filters_and_puts_the_soonest_deadline_first(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    let b = enterprise(db, 2, "320000").await?;
    let c = enterprise(db, 3, "310000").await?;

    // Into agency review with a deadline `days` ahead.
    let under_review = |ent: Ent, days: i64| async move {
        let r = s.create_request(first(&ent, t0())).await?;
        let r = s
            .apply_transition(step(
                &r,
                Action::Submit,
                Status::AwaitingMaterials,
                Role::Enterprise,
                t0() + mins(1),
            ))
            .await?;
        let mut confirm = step(
            &r,
            Action::ConfirmUpload,
            Status::AgencyReview,
            Role::Enterprise,
            t0() + mins(2),
        );
        confirm.due_at = Some(t0() + Duration::days(days));
        anyhow::Ok(s.apply_transition(confirm).await?)
    };
    let a1 = under_review(a.clone(), 3).await?;
    let b1 = under_review(b.clone(), 1).await?;
    let c1 = under_review(c.clone(), 2).await?;
    let a2 = s.create_request(additional(&a, t0() + mins(10))).await?;
    let b2 = s.create_request(additional(&b, t0() + mins(20))).await?;
    assert_eq!(a2.due_at, None);

    let list = |filter: RequestFilter| async move {
        anyhow::Ok(
            s.list_requests(&filter)
                .await?
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
        )
    };
    let ids = |rs: &[&RequestRecord]| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();

    // Everything: deadlines soonest first, requests without a deadline last.
    let all = list(RequestFilter::default()).await?;
    assert_eq!(all.len(), 5);
    assert_eq!(all[..3], ids(&[&b1, &c1, &a1]));
    assert_eq!(set(&all[3..]), set(&ids(&[&a2, &b2])));

    let jiangsu = list(RequestFilter {
        province: Some("320000".into()),
        ..RequestFilter::default()
    })
    .await?;
    assert_eq!(jiangsu[..2], ids(&[&b1, &a1]));
    assert_eq!(set(&jiangsu[2..]), set(&ids(&[&a2, &b2])));

    let of_a = list(RequestFilter {
        enterprise_id: Some(a.id.clone()),
        ..RequestFilter::default()
    })
    .await?;
    assert_eq!(of_a, ids(&[&a1, &a2]));

    let reviews = list(RequestFilter {
        statuses: vec![Status::AgencyReview],
        ..RequestFilter::default()
    })
    .await?;
    assert_eq!(reviews, ids(&[&b1, &c1, &a1]));

    let drafts = list(RequestFilter {
        statuses: vec![Status::Draft],
        ..RequestFilter::default()
    })
    .await?;
    assert_eq!(set(&drafts), set(&ids(&[&a2, &b2])));

    let shanghai = list(RequestFilter {
        province: Some("310000".into()),
        statuses: vec![Status::Draft, Status::AgencyReview],
        ..RequestFilter::default()
    })
    .await?;
    assert_eq!(shanghai, ids(&[&c1]));

    let a_reviews = list(RequestFilter {
        enterprise_id: Some(a.id.clone()),
        statuses: vec![Status::AgencyReview, Status::Returned],
        ..RequestFilter::default()
    })
    .await?;
    assert_eq!(a_reviews, ids(&[&a1]));

    // The dashboards' raw material: history since a time, of one province or all.
    let shanghai_history = s.history_since(Some("310000"), t0()).await?;
    assert!(
        shanghai_history
            .iter()
            .all(|(id, _, p, _)| id == &c1.id && p == "310000"),
        "{shanghai_history:?}"
    );
    assert_eq!(
        shanghai_history
            .iter()
            .map(|(_, _, _, h)| h.action.as_str())
            .collect::<Vec<_>>(),
        ["create", "submit", "confirm_upload"]
    );
    assert_eq!(s.history_since(None, t0()).await?.len(), 3 * 3 + 2);
    assert!(
        s.history_since(None, t0() + Duration::days(1))
            .await?
            .is_empty()
    );

    // Search: number, login name, credit code exactly; a part of the enterprise's name.
    let search = |q: &str| {
        list(RequestFilter {
            query: Some(q.into()),
            ..RequestFilter::default()
        })
    };
    assert_eq!(search(&b1.number.to_lowercase()).await?, ids(&[&b1]));
    assert_eq!(
        search(b1.login_name.as_deref().context("login name")?).await?,
        ids(&[&b1])
    );
    let code_b = s.enterprise(&b.id).await?.context("b")?.credit_code;
    assert_eq!(set(&search(&code_b).await?), set(&ids(&[&b1, &b2])));
    let name_c = s.enterprise(&c.id).await?.context("c")?.name;
    let part: String = name_c.chars().skip(1).take(3).collect();
    assert!(search(&part).await?.contains(&c1.id), "{part} in {name_c}");
    assert!(search("no-such-thing").await?.is_empty());
    // Search stays inside the province it is given.
    let scoped = list(RequestFilter {
        province: Some("310000".into()),
        query: Some(code_b.clone()),
        ..RequestFilter::default()
    })
    .await?;
    assert!(scoped.is_empty(), "{scoped:?}");

    let nothing = list(RequestFilter {
        statuses: vec![Status::Completed, Status::InProduction],
        ..RequestFilter::default()
    })
    .await?;
    assert!(nothing.is_empty(), "{nothing:?}");
    assert!(
        list(RequestFilter {
            province: Some("110000".into()),
            ..RequestFilter::default()
        })
        .await?
        .is_empty()
    );

    // Pages.
    let page1 = list(RequestFilter {
        limit: 2,
        ..RequestFilter::default()
    })
    .await?;
    assert_eq!(page1, ids(&[&b1, &c1]));
    let page2 = list(RequestFilter {
        limit: 2,
        offset: 2,
        ..RequestFilter::default()
    })
    .await?;
    assert_eq!(page2, all[2..4]);

    // The records listed are the full records.
    let listed = s
        .list_requests(&RequestFilter {
            enterprise_id: Some(c.id.clone()),
            ..RequestFilter::default()
        })
        .await?;
    assert_eq!(listed, vec![c1]);
    Ok(())
}

/// An enterprise cannot put its existing (electromechanical) login name on two open requests:
/// one login name, one key. Once the first request is withdrawn the name is free for it again.
async fn one_existing_login_name_serves_one_open_request(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let ent = enterprise(db, 71, "320000").await?;
    let existing = |at| {
        new_request(
            &ent,
            Kind::First,
            form(LoginNameMode::Existing, Some("jd_once_01"), None),
            LoginNameClaim::Existing("jd_once_01".into()),
            at,
        )
    };
    let r1 = s.create_request(existing(t0())).await?;
    let mut second = existing(t0() + mins(1));
    second.kind = Kind::Additional;
    second.form.reason = Some("第二个经办人".into());
    let before = snapshot(db).await?;
    let err = refused(
        s.create_request(second.clone()).await,
        "second use of one existing name",
    )?;
    assert!(
        matches!(err, StoreError::Domain(DomainError::LoginNameTaken)),
        "{err:?}"
    );
    assert_unchanged(db, &before, "second use of one existing name").await?;
    s.apply_transition(step(
        &r1,
        Action::Withdraw,
        Status::Withdrawn,
        Role::Enterprise,
        t0() + mins(2),
    ))
    .await?;
    let again = existing(t0() + mins(3));
    let r2 = s.create_request(again).await?;
    assert_eq!(r2.login_name.as_deref(), Some("jd_once_01"));
    Ok(())
}

fn reservation(serial: &str, order: &str) -> CertificateReservation {
    CertificateReservation {
        serial: serial.into(),
        idempotency_key: order.into(),
        enterprise_id: None,
        key_id: None,
        subject: "金陵贸易有限公司 91320100MA1N2P3Q0N".into(),
        at: t0(),
    }
}

/// One certificate per order: a second reservation returns the first serial, a second
/// signature does not replace the first; revocation happens once and counts.
async fn certificates_are_issued_once_per_order_and_revoked_once(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let first = s
        .reserve_certificate(reservation("0a01", "order-1"))
        .await?;
    assert_eq!(first.serial, "0a01");
    assert_eq!(first.der, None);
    let again = s
        .reserve_certificate(reservation("0a02", "order-1"))
        .await?;
    assert_eq!(again.serial, "0a01", "the order keeps its serial");
    let clash = refused(
        s.reserve_certificate(reservation("0a01", "order-2")).await,
        "serial reuse",
    )?;
    assert!(
        matches!(clash, StoreError::Duplicate("serial")),
        "{clash:?}"
    );
    // Unsigned reservations cannot be revoked: nothing was ever issued under them.
    let r = Revocation {
        serial: "0a01".into(),
        reason: "keyCompromise".into(),
        at: t0(),
    };
    assert!(matches!(
        s.revoke(r.clone(), audit(t0(), "ca.revoke", "0a01", ""))
            .await,
        Err(StoreError::NotFound)
    ));
    let done = s
        .complete_certificate(
            "0a01",
            b"first",
            t0(),
            t0() + Duration::days(730),
            audit(t0(), "ca.issue", "0a01", ""),
        )
        .await?;
    assert_eq!(done.der.as_deref(), Some(&b"first"[..]));
    let twice = s
        .complete_certificate(
            "0a01",
            b"second",
            t0(),
            t0() + Duration::days(730),
            audit(t0(), "ca.issue", "0a01", ""),
        )
        .await?;
    assert_eq!(
        twice.der.as_deref(),
        Some(&b"first"[..]),
        "the first signature wins"
    );
    let (_, revocations) = s.ca_state().await?;
    let revoked = s
        .revoke(r.clone(), audit(t0(), "ca.revoke", "0a01", "keyCompromise"))
        .await?;
    assert_eq!(revoked.revocation_reason.as_deref(), Some("keyCompromise"));
    assert_eq!(s.ca_state().await?.1, revocations + 1);
    let before = snapshot(db).await?;
    let again = refused(
        s.revoke(r, audit(t0(), "ca.revoke", "0a01", "")).await,
        "second revocation",
    )?;
    assert!(
        matches!(again, StoreError::Duplicate("revocation")),
        "{again:?}"
    );
    let unknown = Revocation {
        serial: "ffff".into(),
        reason: "unspecified".into(),
        at: t0(),
    };
    assert!(matches!(
        s.revoke(unknown, audit(t0(), "ca.revoke", "ffff", ""))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_unchanged(db, &before, "refused revocations").await?;
    assert_eq!(
        s.revoked().await?,
        vec![("0a01".to_string(), t0(), "keyCompromise".to_string())]
    );
    let n1 = s.next_crl_number().await?;
    assert_eq!(s.next_crl_number().await?, n1 + 1);
    Ok(())
}

/// A batch whose last part fails leaves even its first part undone.
async fn a_batch_is_all_or_nothing(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let ent = enterprise(db, 81, "320000").await?;
    let req = s.create_request(first(&ent, t0())).await?;
    let before = snapshot(db).await?;
    let batch = Batch {
        transitions: vec![step(
            &req,
            Action::Submit,
            Status::AwaitingMaterials,
            Role::Enterprise,
            t0(),
        )],
        key_changes: vec![KeyChange {
            key_id: "no-such-key".into(),
            expected_version: 1,
            to: ekey_domain::key::KeyState::Shipped,
            shipment_id: None,
            certificate_serial: None,
        }],
        ..Batch::default()
    };
    let err = refused(s.apply_batch(batch).await, "batch with a stale key")?;
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_unchanged(db, &before, "failed batch").await?;
    Ok(())
}

/// A request whose key has been produced counts once, not twice, against the three keys.
async fn a_produced_key_is_counted_once(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let ent = enterprise(db, 91, "320000").await?;
    let req = s.create_request(first(&ent, t0())).await?;
    let new_key = NewKey {
        id: new_id("key"),
        enterprise_id: ent.id.clone(),
        request_id: req.id.clone(),
        login_name: req.login_name.clone().unwrap(),
        token_serial: "SOFT-0001".into(),
        token_kind: "soft".into(),
        certificate_serial: "0b01".into(),
        eseal_id: "ES0B01".into(),
        eseal_name: "测试企业电子签章".into(),
        at: t0(),
    };
    let key = s
        .create_key(new_key.clone(), audit(t0(), "key.personalise", &req.id, ""))
        .await?;
    let again = s
        .create_key(
            NewKey {
                id: new_id("key"),
                ..new_key
            },
            audit(t0(), "key.personalise", &req.id, ""),
        )
        .await?;
    assert_eq!(again.id, key.id, "one key per request");
    assert_eq!(key.state, ekey_domain::key::KeyState::Personalised);
    assert_eq!(
        key.eseal_id.as_deref(),
        Some("ES0B01"),
        "the e-seal record is bound"
    );
    s.create_request(additional(&ent, t0())).await?;
    s.create_request(additional(&ent, t0())).await?;
    let err = refused(s.create_request(additional(&ent, t0())).await, "fourth key")?;
    assert!(
        matches!(
            err,
            StoreError::Domain(DomainError::TooManyKeys { held: 3 })
        ),
        "{err:?}"
    );
    assert_eq!(s.keys_of_enterprise(&ent.id).await?.len(), 1);
    assert_eq!(
        s.keys_by_login_name(key.login_name.as_str()).await?[0].id,
        key.id
    );
    Ok(())
}

async fn password_reset_works_once_and_ends_every_session(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    let session = |n: &str, at| NewSession {
        token_hash: token_hash(n),
        account_id: a.account_id.clone(),
        created_at: at,
        expires_at: at + Duration::hours(8),
        key_id: None,
    };
    s.create_session(
        session("s-1", t0()),
        audit(t0(), "session.create", &a.account_id, ""),
    )
    .await?;
    let reset = |n: &str, at: DateTime<Utc>| NewPasswordReset {
        account_id: a.account_id.clone(),
        token: NewToken {
            token_hash: token_hash(n),
            expires_at: at + Duration::hours(2),
            created_at: at,
        },
        mail: message(&format!("reset-{n}"), &a.email, at),
        audit: audit(at, "password.reset_requested", &a.account_id, ""),
    };
    let before = snapshot(db).await?;
    s.begin_password_reset(reset("r-1", t0())).await?;
    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("audit_log", 1), ("outbox", 1), ("password_resets", 1)])
    );
    // A second request replaces the first link.
    s.begin_password_reset(reset("r-2", t0() + mins(5))).await?;
    let done = |at| audit(at, "password.reset", "", "");
    let e = refused(
        s.complete_password_reset(&token_hash("r-1"), "$new", t0() + mins(6), done(t0()))
            .await,
        "the replaced reset link",
    )?;
    assert!(matches!(e, StoreError::TokenInvalid), "{e:?}");
    let before = snapshot(db).await?;
    let account = s
        .complete_password_reset(&token_hash("r-2"), "$new-hash", t0() + mins(6), done(t0()))
        .await?;
    assert_eq!(account.id, a.account_id);
    assert_eq!(account.password_hash, "$new-hash");
    let after = snapshot(db).await?;
    assert_eq!(
        before.changed(&after),
        [
            "accounts",
            "audit_head",
            "audit_log",
            "password_resets",
            "sessions"
        ],
        "password, used link, ended sessions and the audit record, nothing else"
    );
    assert!(
        s.session_account(&token_hash("s-1"), t0() + mins(7))
            .await?
            .is_none(),
        "the session opened with the old password is over"
    );
    let e = refused(
        s.complete_password_reset(&token_hash("r-2"), "$again", t0() + mins(8), done(t0()))
            .await,
        "a reset link used twice",
    )?;
    assert!(matches!(e, StoreError::TokenInvalid), "{e:?}");
    assert_unchanged(db, &after, "a second use of a reset link").await?;
    // Expired after two hours.
    s.begin_password_reset(reset("r-3", t0() + mins(10)))
        .await?;
    let before = snapshot(db).await?;
    let late = t0() + mins(10) + Duration::hours(2);
    let e = refused(
        s.complete_password_reset(&token_hash("r-3"), "$late", late, done(late))
            .await,
        "an expired reset link",
    )?;
    assert!(matches!(e, StoreError::TokenInvalid), "{e:?}");
    assert_unchanged(db, &before, "an expired reset link").await?;
    Ok(())
}

async fn collection_choice_is_recorded_and_replaced(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let ent = enterprise(db, 1, "320000").await?;
    let req = s.create_request(first(&ent, t0())).await?;
    assert!(s.collection_choice(&req.id).await?.is_none());
    let choice = CollectionChoice {
        request_id: req.id.clone(),
        method: "window".into(),
        recipient: String::new(),
        address: String::new(),
        mobile: String::new(),
        id_number: String::new(),
        chosen_at: t0(),
        chosen_by: ent.account_id.clone(),
    };
    s.set_collection_choice(
        choice.clone(),
        audit(t0(), "collection.choose", &req.id, "window"),
    )
    .await?;
    assert_eq!(s.collection_choice(&req.id).await?, Some(choice.clone()));
    let mail = CollectionChoice {
        method: "mail".into(),
        recipient: "张三".into(),
        address: "南京市鼓楼区中山路1号".into(),
        mobile: "13800138000".into(),
        id_number: "11010519491231002X".into(),
        chosen_at: t0() + mins(1),
        ..choice
    };
    let before = snapshot(db).await?;
    s.set_collection_choice(
        mail.clone(),
        audit(t0(), "collection.choose", &req.id, "mail"),
    )
    .await?;
    assert_eq!(s.collection_choice(&req.id).await?, Some(mail));
    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("audit_log", 1)]),
        "replaced, not added"
    );
    Ok(())
}

async fn key_login_challenges_work_once_and_a_renewal_advances_once(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let ent = enterprise(db, 93, "320000").await?;
    // A challenge is used once, and never after its expiry.
    let challenge = |id: &str, at: DateTime<Utc>| LoginChallenge {
        id: id.into(),
        challenge: format!("c-{id}"),
        seed_hash: String::new(),
        created_at: at,
        expires_at: at + mins(5),
        used_at: None,
    };
    s.create_login_challenge(challenge("ch-1", t0())).await?;
    s.create_login_challenge(challenge("ch-2", t0())).await?;
    assert!(s.use_login_challenge("ch-1", t0() + mins(1)).await?);
    assert!(
        !s.use_login_challenge("ch-1", t0() + mins(1)).await?,
        "twice"
    );
    assert!(s.login_challenge("ch-1").await?.unwrap().used_at.is_some());
    assert!(
        !s.use_login_challenge("ch-2", t0() + mins(6)).await?,
        "expired"
    );
    assert!(!s.use_login_challenge("ch-none", t0()).await?, "unknown");

    // A session opened with a key remembers it.
    let req = s.create_request(first(&ent, t0())).await?;
    let key = s
        .create_key(
            NewKey {
                id: new_id("key"),
                enterprise_id: ent.id.clone(),
                request_id: req.id.clone(),
                login_name: req.login_name.clone().unwrap(),
                token_serial: "SOFT-0093".into(),
                token_kind: "soft".into(),
                certificate_serial: "0b93".into(),
                eseal_id: "ES0B93".into(),
                eseal_name: "测试企业电子签章".into(),
                at: t0(),
            },
            audit(t0(), "key.personalise", &req.id, ""),
        )
        .await?;
    s.create_session(
        NewSession {
            token_hash: token_hash("key-session"),
            account_id: ent.account_id.clone(),
            created_at: t0(),
            expires_at: t0() + Duration::hours(8),
            key_id: Some(key.id.clone()),
        },
        audit(t0(), "session.create_with_key", &key.id, ""),
    )
    .await?;
    assert_eq!(
        s.session_key(&token_hash("key-session")).await?,
        Some(key.id.clone())
    );
    assert_eq!(s.key_by_certificate("0b93").await?.unwrap().id, key.id);
    assert_eq!(
        s.enterprise_account(&ent.id).await?.unwrap().id,
        ent.account_id
    );

    // One renewal record per request; the first one stays.
    let record = RenewalRecord {
        request_id: req.id.clone(),
        key_id: key.id.clone(),
        old_serial: "0b93".into(),
        new_serial: None,
        state: "approved".into(),
        created_at: t0(),
        expires_at: t0() + Duration::days(30),
        issued_at: None,
        confirmed_at: None,
        old_revoked_at: None,
    };
    s.start_renewal(record.clone()).await?;
    let again = s
        .start_renewal(RenewalRecord {
            old_serial: "ffff".into(),
            ..record.clone()
        })
        .await?;
    assert_eq!(again.old_serial, "0b93");
    // Issued once: a second change from `approved` conflicts and changes nothing.
    let issue = |serial: &str| Batch {
        renewal: Some(RenewalChange {
            request_id: req.id.clone(),
            from_state: "approved".into(),
            to_state: "issued".into(),
            new_serial: Some(serial.into()),
            at: t0() + mins(1),
            old_revoked: false,
        }),
        audits: vec![audit(t0(), "renewal.issue", &req.id, "")],
        ..Batch::default()
    };
    s.apply_batch(issue("0c01")).await?;
    let before = snapshot(db).await?;
    refused(s.apply_batch(issue("0c02")).await, "a second issuance")?;
    assert_eq!(
        before,
        snapshot(db).await?,
        "a refused batch changes nothing"
    );
    let r = s.renewal(&req.id).await?.unwrap();
    assert_eq!(
        (r.state.as_str(), r.new_serial.as_deref()),
        ("issued", Some("0c01"))
    );
    assert_eq!(r.issued_at, Some(t0() + mins(1)));
    assert_eq!(
        s.renewal_by_new_serial("0c01").await?.unwrap().request_id,
        req.id
    );
    // Past its expiry it is due; confirmed with the old certificate revoked, it is not.
    assert!(
        s.renewals_due_to_expire(t0() + Duration::days(29))
            .await?
            .is_empty()
    );
    assert_eq!(
        s.renewals_due_to_expire(t0() + Duration::days(31))
            .await?
            .len(),
        1
    );
    s.apply_batch(Batch {
        renewal: Some(RenewalChange {
            request_id: req.id.clone(),
            from_state: "issued".into(),
            to_state: "confirmed".into(),
            new_serial: None,
            at: t0() + mins(2),
            old_revoked: true,
        }),
        key_changes: vec![KeyChange {
            key_id: key.id.clone(),
            expected_version: key.version,
            to: key.state,
            shipment_id: None,
            certificate_serial: Some("0c01".into()),
        }],
        ..Batch::default()
    })
    .await?;
    let r = s.renewal(&req.id).await?.unwrap();
    assert_eq!(r.state, "confirmed");
    assert_eq!(r.old_revoked_at, Some(t0() + mins(2)));
    assert_eq!(
        s.key(&key.id).await?.unwrap().certificate_serial.as_deref(),
        Some("0c01")
    );
    assert!(
        s.renewals_due_to_expire(t0() + Duration::days(31))
            .await?
            .is_empty()
    );
    Ok(())
}

async fn a_timer_runs_once_per_due_time_across_instances(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    assert!(s.timer("reminders").await?.is_none());
    // Eight "instances" race for the same due run: exactly one gets it.
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = db.shared();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .claim_timer("reminders", &format!("i{i}"), t0(), t0() + mins(1))
                .await
        }));
    }
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await?? {
            winners.push(i);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one instance runs it: {winners:?}"
    );
    let owner = format!("i{}", winners[0]);
    // Nobody else while the lease lives; a stranger cannot finish it.
    assert!(
        !s.claim_timer("reminders", "late", t0() + mins(0), t0() + mins(1))
            .await?
    );
    assert!(
        !s.finish_timer("reminders", "late", t0(), t0() + mins(5))
            .await?
    );
    assert!(
        s.finish_timer("reminders", &owner, t0(), t0() + mins(5))
            .await?
    );
    let t = s.timer("reminders").await?.context("timer row")?;
    assert_eq!(
        (t.runs, t.last_owner.as_deref(), t.lease_owner),
        (1, Some(owner.as_str()), None)
    );
    assert_eq!(t.next_run_at, t0() + mins(5));
    // Not due yet: nobody; due: one again.
    assert!(
        !s.claim_timer("reminders", "i0", t0() + mins(4), t0() + mins(6))
            .await?
    );
    assert!(
        s.claim_timer("reminders", "i1", t0() + mins(5), t0() + mins(6))
            .await?
    );
    // An instance that died mid-run: its lease runs out and another takes over.
    assert!(
        !s.claim_timer("reminders", "i2", t0() + mins(5), t0() + mins(7))
            .await?
    );
    assert!(
        s.claim_timer("reminders", "i2", t0() + mins(7), t0() + mins(8))
            .await?
    );
    assert!(
        !s.finish_timer("reminders", "i1", t0() + mins(7), t0() + mins(9))
            .await?,
        "the dead run's owner lost its lease"
    );
    assert!(
        s.finish_timer("reminders", "i2", t0() + mins(7), t0() + mins(12))
            .await?
    );
    assert_eq!(s.timer("reminders").await?.context("timer")?.runs, 2);
    // Timers are independent of one another.
    assert!(s.claim_timer("digest", "i0", t0(), t0() + mins(1)).await?);
    Ok(())
}

async fn published_crls_and_holiday_years_are_shared(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    assert_eq!(s.crl_state().await?, (0, None));
    for n in 1..=7i64 {
        let crl = PublishedCrl {
            number: n,
            revocations: n / 2,
            made_at: t0() + mins(n),
        };
        s.publish_crl(crl, format!("crl-{n}").as_bytes()).await?;
        assert_eq!(s.crl_state().await?, (0, Some(crl)), "the newest is {n}");
    }
    // Publishing an older number late (a slower instance) does not hide the newest.
    s.publish_crl(
        PublishedCrl {
            number: 6,
            revocations: 9,
            made_at: t0(),
        },
        b"late",
    )
    .await?;
    let (_, newest) = s.crl_state().await?;
    assert_eq!(newest.map(|c| c.number), Some(7));
    assert_eq!(s.published_crl(7).await?.as_deref(), Some(&b"crl-7"[..]));
    assert_eq!(s.published_crl(6).await?.as_deref(), Some(&b"crl-6"[..]));
    assert_eq!(s.published_crl(1).await?, None, "old CRLs are pruned");

    assert_eq!(s.holidays_version().await?, (0, 0));
    let year = |y: i32, data: &str, at| HolidayYear {
        year: y,
        data: data.into(),
        loaded_at: at,
        loaded_by: "admin-1".into(),
    };
    s.put_holiday_year(
        year(2027, "{\"year\":2027}", t0()),
        audit(t0(), "holidays.load", "2027", "v1"),
    )
    .await?;
    let v1 = s.holidays_version().await?;
    s.put_holiday_year(
        year(2027, "{\"year\":2027,\"v\":2}", t0() + mins(1)),
        audit(t0() + mins(1), "holidays.load", "2027", "v2"),
    )
    .await?;
    let v2 = s.holidays_version().await?;
    assert_ne!(v1, v2, "replacing a year changes the version");
    let years = s.holiday_years().await?;
    assert_eq!(years.len(), 1);
    assert_eq!(years[0].data, "{\"year\":2027,\"v\":2}");
    assert!(s.verify_audit().await?.first_broken.is_none());
    Ok(())
}

/// A certificate-shaped DER whose SubjectPublicKeyInfo is `spki` (only the structure up to
/// the key matters to the store).
fn cert_with_spki(spki: &[u8]) -> Vec<u8> {
    let mut tbs_content = vec![0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x07];
    tbs_content.extend([0x30, 0x00, 0x30, 0x00, 0x30, 0x00, 0x30, 0x00]);
    tbs_content.extend(spki);
    let mut body = vec![0x30, u8::try_from(tbs_content.len()).unwrap()];
    body.extend(&tbs_content);
    body.extend([0x30, 0x00, 0x03, 0x01, 0x00]);
    let mut cert = vec![0x30, u8::try_from(body.len()).unwrap()];
    cert.extend(&body);
    cert
}

/// Issue 15 (key hygiene): a public key is bound to the first enterprise it is certified
/// for — under concurrency too, exactly one enterprise wins — and a keyCompromise
/// revocation (on its own or in a batch) bars the key for good, for every enterprise.
async fn a_key_is_certified_for_one_enterprise_and_never_after_compromise(
    db: &TestDb,
) -> Result<()> {
    use ekey_store::KeyClearance::*;
    let s = db.store();
    s.migrate().await?;
    let (a, b) = ("91320100MA1N2P3Q0N", "91110000600037341L");
    assert_eq!(s.clear_key_for_issuance("k1", a, t0()).await?, Clear);
    assert_eq!(s.clear_key_for_issuance("k1", a, t0()).await?, Clear);
    assert_eq!(
        s.clear_key_for_issuance("k1", b, t0()).await?,
        OtherEnterprise
    );

    // Twelve issuances of one new key for two enterprises at once: one enterprise gets it.
    let barrier = Arc::new(Barrier::new(12));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = db.store.clone();
        let barrier = barrier.clone();
        let code = if i % 2 == 0 { a } else { b };
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (code, store.clear_key_for_issuance("k2", code, t0()).await)
        }));
    }
    let mut winners = BTreeSet::new();
    for t in tasks {
        let (code, got) = t.await?;
        match got? {
            Clear => {
                winners.insert(code);
            }
            OtherEnterprise => {}
            Compromised => bail!("k2 is not compromised"),
        }
    }
    ensure!(winners.len() == 1, "one enterprise holds k2: {winners:?}");

    // keyCompromise marks the key of the certificate: no enterprise gets it again.
    let spki = [0x30, 0x06, 0x30, 0x00, 0x03, 0x02, 0x00, 0xaa];
    let hash = ekey_store::spki_sha256(&spki);
    assert_eq!(s.clear_key_for_issuance(&hash, a, t0()).await?, Clear);
    s.reserve_certificate(reservation("0b01", "hygiene-1"))
        .await?;
    s.complete_certificate(
        "0b01",
        &cert_with_spki(&spki),
        t0(),
        t0() + Duration::days(730),
        audit(t0(), "ca.issue", "0b01", ""),
    )
    .await?;
    s.revoke(
        Revocation {
            serial: "0b01".into(),
            reason: "superseded".into(),
            at: t0(),
        },
        audit(t0(), "ca.revoke", "0b01", "superseded"),
    )
    .await?;
    assert_eq!(
        s.clear_key_for_issuance(&hash, a, t0()).await?,
        Clear,
        "superseded is no compromise"
    );
    let spki2 = [0x30, 0x06, 0x30, 0x00, 0x03, 0x02, 0x00, 0xbb];
    let hash2 = ekey_store::spki_sha256(&spki2);
    s.reserve_certificate(reservation("0b02", "hygiene-2"))
        .await?;
    s.complete_certificate(
        "0b02",
        &cert_with_spki(&spki2),
        t0(),
        t0() + Duration::days(730),
        audit(t0(), "ca.issue", "0b02", ""),
    )
    .await?;
    s.apply_batch(Batch {
        revocations: vec![Revocation {
            serial: "0b02".into(),
            reason: "keyCompromise".into(),
            at: t0(),
        }],
        audits: vec![audit(t0(), "ca.revoke", "0b02", "keyCompromise")],
        ..Default::default()
    })
    .await?;
    for code in [a, b] {
        assert_eq!(
            s.clear_key_for_issuance(&hash2, code, t0()).await?,
            Compromised,
            "{code}"
        );
    }
    Ok(())
}

/// A deadline recounted after a holiday year was loaded (issue 16 item 4): the due time, a
/// `deadline_recomputed` history line (status unchanged) and the audit record together;
/// raced by a decision on the same request, exactly one of them wins and the other changes
/// nothing; a stale due time is a conflict too.
async fn a_recounted_deadline_races_a_transition_and_one_wins(db: &TestDb) -> Result<()> {
    let s = db.store();
    s.migrate().await?;
    let a = enterprise(db, 1, "320000").await?;
    let r = s.create_request(first(&a, t0())).await?;
    let due = t0() + Duration::days(3);
    let mut submit = step(
        &r,
        Action::Submit,
        Status::AwaitingMaterials,
        Role::Enterprise,
        t0(),
    );
    submit.due_at = Some(due);
    let r = s.apply_transition(submit).await?;
    let change =
        |r: &RequestRecord, old: DateTime<Utc>, new: DateTime<Utc>| ekey_store::DeadlineChange {
            request_id: r.id.clone(),
            expected_version: r.version,
            old_due_at: old,
            new_due_at: new,
            actor_id: "admin-1".into(),
            actor_role: Role::Admin,
            remark: "2027年节假日安排已载入".into(),
            at: t0() + mins(5),
        };
    let recount_audit = || audit(t0() + mins(5), "request.deadline_recomputed", &r.id, "");

    // A stale due time or version: nothing happens.
    let before = snapshot(db).await?;
    let stale = s
        .reschedule_deadline(
            change(&r, due + mins(1), due + Duration::days(1)),
            recount_audit(),
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
    assert_unchanged(db, &before, "a stale recount").await?;

    // Raced by a transition of the same version: exactly one wins.
    let store = db.shared();
    let barrier = Arc::new(Barrier::new(2));
    let recount = {
        let (store, barrier, c) = (
            store.clone(),
            barrier.clone(),
            change(&r, due, due + Duration::days(1)),
        );
        let a = recount_audit();
        tokio::spawn(async move {
            barrier.wait().await;
            store.reschedule_deadline(c, a).await
        })
    };
    let decision = {
        let (store, barrier) = (store.clone(), barrier.clone());
        let t = step(
            &r,
            Action::Withdraw,
            Status::Withdrawn,
            Role::Enterprise,
            t0() + mins(5),
        );
        tokio::spawn(async move {
            barrier.wait().await;
            store.apply_transition(t).await
        })
    };
    let (recount, decision) = (recount.await?, decision.await?);
    ensure!(
        recount.is_ok() != decision.is_ok(),
        "exactly one wins: {recount:?} / {decision:?}"
    );
    let now = s.request(&r.id).await?.context("the request")?;
    let history = s.history(&r.id).await?;
    let last = history.last().context("history")?;
    assert_eq!(now.version, r.version + 1);
    if let Ok(rec) = recount {
        assert_eq!(rec.status, Status::AwaitingMaterials, "status unchanged");
        assert_eq!(now.due_at, Some(due + Duration::days(1)));
        assert_eq!(last.action, ekey_store::DEADLINE_RECOMPUTED);
        assert_eq!(last.from_status, Some(Status::AwaitingMaterials));
        assert_eq!(last.to_status, Status::AwaitingMaterials);
        assert_eq!(last.remark.as_deref(), Some("2027年节假日安排已载入"));
    } else {
        assert!(matches!(recount, Err(StoreError::Conflict)), "{recount:?}");
        assert_eq!(now.status, Status::Withdrawn);
        assert_eq!(last.action, "withdraw");
    }
    let after = snapshot(db).await?;
    assert_eq!(
        before.delta(&after),
        grew(&[("audit_log", 1), ("request_history", 1)])
    );
    assert_eq!(s.verify_audit().await?.first_broken, None);
    Ok(())
}

//! Storage for eKey: one dyn-safe [`Store`] trait, implemented for SQLite and PostgreSQL
//! (chosen at run time from the database URL), a blob store for uploaded files, the
//! hash-chained audit log and the outbox.
//!
//! Every change of a request's state is one database transaction that checks and sets the
//! state, writes the history, appends the audit record and the outbox messages it causes
//! ([`Store::apply_transition`]); nothing else changes a request's status.
#![forbid(unsafe_code)]

pub mod audit;
pub mod blob;
mod handrevoke;
mod hygiene;
mod reschedule;
mod sql;
pub mod types;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ekey_domain::error::DomainError;
use ekey_domain::request::Kind;

pub use handrevoke::KeyRevocation;
pub use hygiene::{KeyClearance, certificate_spki, spki_sha256};
pub use reschedule::{DEADLINE_RECOMPUTED, DeadlineChange};
pub use sql::SqlStore;
pub use types::*;

/// Why a storage operation did not happen. Nothing was changed when one is returned (but
/// see [`StoreError::Unavailable`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist.
    #[error("not found")]
    NotFound,
    /// Somebody else changed the object first (version check failed).
    #[error("conflict: changed concurrently")]
    Conflict,
    /// A unique value is already taken (which one is named).
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// A domain rule checked inside the transaction failed.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// A single-use token is unknown, used or expired.
    #[error("token invalid or expired")]
    TokenInvalid,
    /// The database or file system failed.
    #[error("backend: {0}")]
    Backend(String),
    /// The file storage (local directory or S3) failed or could not be reached.
    #[error("file storage: {0}")]
    Blob(String),
    /// The database could not be reached, or it dropped the connection (restart, outage,
    /// every pooled connection busy past the wait bound). Retrying later may succeed. The
    /// one case where a change may have been committed: the connection broke during its
    /// commit, so the caller should look before it repeats the change.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// No space is left where the data goes (the file storage's disk, or SQLite's).
    #[error("no space left: {0}")]
    Full(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let code = e.as_database_error().and_then(|d| d.code());
        let unavailable = match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            _ => code
                .as_deref()
                .is_some_and(|c| pg_unavailable(c) || sqlite_primary(c) == Some(SQLITE_BUSY)),
        };
        if unavailable {
            StoreError::Unavailable(e.to_string())
        } else if code.as_deref().and_then(sqlite_primary) == Some(SQLITE_FULL) {
            StoreError::Full(e.to_string())
        } else {
            StoreError::Backend(e.to_string())
        }
    }
}

/// SQLite's primary result codes for a database still locked after the busy timeout, and
/// for a full disk.
const SQLITE_BUSY: i32 = 5;
const SQLITE_FULL: i32 = 13;

/// A PostgreSQL SQLSTATE saying the server is out of reach rather than that the statement
/// was wrong: class 08 (connection exceptions), 57P01–57P03 (shutting down, crashed,
/// starting up), 53300 (too many connections).
fn pg_unavailable(sqlstate: &str) -> bool {
    sqlstate.len() == 5
        && (sqlstate.starts_with("08") || matches!(sqlstate, "57P01" | "57P02" | "57P03" | "53300"))
}

/// The primary result code of an SQLite (extended) result code; `None` for a SQLSTATE.
fn sqlite_primary(code: &str) -> Option<i32> {
    (code.len() < 5)
        .then(|| code.parse::<i32>().ok())
        .flatten()
        .map(|c| c & 0xff)
}

/// Where [`fault_point`] reports to: set once by the server (`ekey_token::fault::point`,
/// which aborts the process when `EKEY_FAULT` names the point). Unset, the points do nothing.
static FAULT_HOOK: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

/// Installs the crash-point hook of the process-level fault tests (first call wins).
pub fn set_fault_hook(hook: fn(&str)) {
    let _ = FAULT_HOOK.set(hook);
}

/// A named crash point inside the store (see [`set_fault_hook`]).
pub(crate) fn fault_point(name: &str) {
    if let Some(hook) = FAULT_HOOK.get() {
        hook(name);
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            StoreError::Full(e.to_string())
        } else {
            StoreError::Backend(e.to_string())
        }
    }
}

/// Result of storage operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database behind eKey. Implementations: [`SqlStore`] on SQLite and PostgreSQL.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Which backend this is, for logs and metrics.
    fn backend(&self) -> Backend;
    /// Applies pending migrations and seeds the 31 provincial agencies (idempotent).
    async fn migrate(&self) -> Result<()>;
    /// Answers when the database answers.
    async fn ping(&self) -> Result<()>;

    // ----- agencies -----
    /// All agencies, by province code.
    async fn agencies(&self) -> Result<Vec<Agency>>;
    /// The agency of a province.
    async fn agency(&self, province: &str) -> Result<Option<Agency>>;
    /// Changes an agency's collection details (address, window, hours, hotline). Audited.
    async fn update_agency(&self, agency: Agency, audit: NewAudit) -> Result<Agency>;
    /// Loads the agencies file: inserts or updates every agency given (names and collection
    /// details), all or nothing, with one audit record. Agencies not named are kept.
    async fn load_agencies(&self, agencies: Vec<Agency>, audit: NewAudit) -> Result<usize>;

    // ----- accounts and sessions -----
    /// Records a new enterprise with its first (inactive) account and activation token,
    /// the audit record and the activation mail, in one transaction.
    async fn register(&self, reg: NewRegistration) -> Result<Account>;
    /// Creates or updates a staff or demo account (seeding, admin).
    async fn upsert_account(&self, account: NewAccount, audit: NewAudit) -> Result<Account>;
    /// Creates or updates an enterprise by credit code (demo seeding).
    async fn upsert_enterprise(&self, enterprise: NewEnterprise) -> Result<Enterprise>;
    /// An account by its login (email for enterprises).
    async fn account_by_login(&self, login: &str) -> Result<Option<Account>>;
    /// An account by id.
    async fn account(&self, id: &str) -> Result<Option<Account>>;
    /// The enterprise's own user account (the one that registered it).
    async fn enterprise_account(&self, enterprise_id: &str) -> Result<Option<Account>>;
    /// An enterprise by id.
    async fn enterprise(&self, id: &str) -> Result<Option<Enterprise>>;
    /// Uses a single-use activation token: marks it used and the account active; or, for
    /// a pending registration, creates its enterprise and account (see
    /// [`Store::register_pending`]).
    async fn activate(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<Account>;
    /// Issues a new activation token for an inactive account (older ones stop working),
    /// queueing its mail in the same transaction.
    async fn reissue_activation(
        &self,
        account_id: &str,
        token: NewToken,
        mail: NewMessage,
    ) -> Result<()>;
    /// An enterprise by its credit code (a released enterprise no longer has it).
    async fn enterprise_by_credit_code(&self, credit_code: &str) -> Result<Option<Enterprise>>;
    /// Records a registration that waits for its activation link, with its mail and audit
    /// record, in one transaction. It claims neither the credit code nor the email: any
    /// number may name the same ones, and [`Store::activate`] makes the first one activated
    /// the enterprise and its account (the others' links then fail with
    /// `Duplicate("credit_code")` or `Duplicate("login")`). Pending registrations whose link
    /// expired before `forget_before` are deleted.
    async fn register_pending(
        &self,
        reg: NewRegistration,
        forget_before: DateTime<Utc>,
    ) -> Result<()>;
    /// The newest pending registration naming `email`, expired or not (until forgotten).
    async fn pending_registration(&self, email: &str) -> Result<Option<PendingRegistration>>;
    /// A new link for a pending registration (the older one stops working), queueing its
    /// mail in the same transaction.
    async fn reissue_pending_activation(
        &self,
        id: &str,
        token: NewToken,
        mail: NewMessage,
    ) -> Result<()>;
    /// Takes one unit from each of `takes` at once, or none when one of them is used up
    /// (then names it). Counted in the database, so every instance counts alike; safe
    /// under concurrency (never more than `limit` units per window).
    async fn take_quota(&self, takes: &[QuotaTake], now: DateTime<Utc>) -> Result<QuotaOutcome>;
    /// Releases an enterprise (administrator): its credit code is set free for a new
    /// registration (kept as `released_credit_code`), its accounts lose their login and
    /// every session and reset link; `mails` and the audit record in the same transaction.
    /// `NotFound` when it does not exist or was released already.
    async fn release_enterprise(
        &self,
        enterprise_id: &str,
        now: DateTime<Utc>,
        mails: Vec<NewMessage>,
        audit: NewAudit,
    ) -> Result<Enterprise>;
    /// Transfers an enterprise's account to a new email (administrator): login and email
    /// change, the old password and every session end, `reset` is the new owner's link to
    /// set a password; `mails` and the audit record in the same transaction.
    /// `Duplicate("login")` when the email is another account's.
    async fn transfer_enterprise_account(
        &self,
        account_id: &str,
        new_email: &str,
        reset: NewToken,
        mails: Vec<NewMessage>,
        audit: NewAudit,
    ) -> Result<Account>;
    /// Stores a session (token hashed) and the login audit record.
    async fn create_session(&self, session: NewSession, audit: NewAudit) -> Result<()>;
    /// The account of a live session.
    async fn session_account(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Account>>;
    /// Ends a session.
    async fn revoke_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<()>;
    /// The key a live session was opened with (certificate login), if any.
    async fn session_key(&self, token_hash: &str) -> Result<Option<String>>;
    /// Stores a certificate-login challenge.
    async fn create_login_challenge(&self, c: LoginChallenge) -> Result<()>;
    /// Stores a certificate-login challenge asked for from `address`, unless that address
    /// already has `max_live` unexpired ones (false: nothing stored); expired challenges of
    /// every address are deleted on the way.
    async fn create_login_challenge_from(
        &self,
        c: LoginChallenge,
        address: &str,
        max_live: i64,
    ) -> Result<bool>;
    /// A certificate-login challenge, used or not.
    async fn login_challenge(&self, id: &str) -> Result<Option<LoginChallenge>>;
    /// Uses a challenge: true only for the one caller that marked it used while it was
    /// unused and unexpired.
    async fn use_login_challenge(&self, id: &str, now: DateTime<Utc>) -> Result<bool>;
    /// Creates the renewal record of an approved renewal request, or returns the existing
    /// one (the first one stays).
    async fn start_renewal(&self, r: RenewalRecord) -> Result<RenewalRecord>;
    /// A renewal record.
    async fn renewal(&self, request_id: &str) -> Result<Option<RenewalRecord>>;
    /// The renewal that issued certificate `serial`.
    async fn renewal_by_new_serial(&self, serial: &str) -> Result<Option<RenewalRecord>>;
    /// Renewal records whose expiry has passed and that still need something: not yet
    /// confirmed (nor expired), or confirmed with the old certificate not yet revoked.
    async fn renewals_due_to_expire(&self, now: DateTime<Utc>) -> Result<Vec<RenewalRecord>>;
    /// Starts a password reset: earlier unused links of the account stop working, the new
    /// link is stored (hashed) and its mail queued, in one transaction.
    async fn begin_password_reset(&self, reset: NewPasswordReset) -> Result<()>;
    /// Uses a reset link once: sets the new password hash and ends every session of the
    /// account. `TokenInvalid` when the link is unknown, used or expired.
    async fn complete_password_reset(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<Account>;
    /// A logged-in user's new password: sets the hash and ends every other session of the
    /// account (all but `keep_session`, a token hash), in one transaction; how many ended.
    async fn change_password(
        &self,
        account_id: &str,
        password_hash: &str,
        keep_session: &str,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<u64>;
    /// Failed logins counted under each of `keys` (absent keys have none): the count and
    /// when the last failure happened.
    async fn login_failures(&self, keys: &[String]) -> Result<Vec<(String, i64, DateTime<Utc>)>>;
    /// Counts one failed login under each of `keys`; a count whose last failure is older
    /// than `forget_before` starts again at one.
    async fn record_login_failure(
        &self,
        keys: &[String],
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<()>;
    /// Forgets the failures under `key` (after a successful login).
    async fn clear_login_failures(&self, key: &str) -> Result<()>;
    /// Reserves one attempt under every bucket at once, or under none: in one
    /// transaction, each bucket's count (forgotten when its last attempt is older than
    /// `forget_before`) is checked against its policy, and only when none must wait are all
    /// counted, so concurrent attempts cannot all pass a check made before any was counted.
    /// `WaitUntil` names the latest end of a wait and changes nothing.
    async fn reserve_attempt(
        &self,
        buckets: &[(String, ekey_domain::throttle::Policy)],
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<ekey_domain::throttle::Attempt>;
    /// Gives back a reserved attempt that turned out well: the counts under `decrement` go
    /// down by one, those under `clear` are forgotten.
    async fn release_attempt(&self, decrement: &[String], clear: &[String]) -> Result<()>;
    /// Records (or replaces) how the enterprise will receive its key.
    async fn set_collection_choice(&self, choice: CollectionChoice, audit: NewAudit) -> Result<()>;
    /// The enterprise's choice for a request, if any.
    async fn collection_choice(&self, request_id: &str) -> Result<Option<CollectionChoice>>;

    // ----- login names -----
    /// Allocates and reserves a fresh login name for the enterprise (获取登录名): at most
    /// [`ekey_domain::request::MAX_LOGIN_NAME_RESERVATIONS`] unused at once
    /// (`TooManyLoginNameReservations`); one unused for
    /// [`ekey_domain::request::LOGIN_NAME_RESERVATION_DAYS`] is released.
    async fn reserve_login_name(
        &self,
        enterprise_id: &str,
        province: &str,
        now: DateTime<Utc>,
    ) -> Result<String>;

    // ----- requests -----
    /// Creates a request in `draft`: checks the domain rules against the enterprise's
    /// holdings and the login-name registry, numbers it, and writes history, audit and
    /// outbox, all in one transaction.
    async fn create_request(&self, new: NewRequest) -> Result<RequestRecord>;
    /// A request by id.
    async fn request(&self, id: &str) -> Result<Option<RequestRecord>>;
    /// A request by its public number.
    async fn request_by_number(&self, number: &str) -> Result<Option<RequestRecord>>;
    /// Requests matching the filter, most urgent first.
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRecord>>;
    /// The history of a request, oldest first.
    async fn history(&self, request_id: &str) -> Result<Vec<HistoryEntry>>;
    /// Every history entry since `since` (of one province's requests, or all), with its
    /// request's id, kind and province, ordered by request then step: the raw material of
    /// the dashboards.
    async fn history_since(
        &self,
        province: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Kind, String, HistoryEntry)>>;
    /// The one-transaction rule: check-and-set the status by version, write history,
    /// commit staged materials if asked, append outbox messages and the audit record.
    /// Zero rows matched → [`StoreError::Conflict`].
    async fn apply_transition(&self, t: Transition) -> Result<RequestRecord>;

    // ----- materials -----
    /// Records an uploaded file (already in the blob store) as staged for its item,
    /// superseding an earlier staged file of the item, if the request is still in one
    /// of `allowed` statuses.
    async fn stage_material(&self, m: NewMaterial, audit: NewAudit) -> Result<MaterialRecord>;
    /// Current materials of a request (staged and committed), by item.
    async fn materials(&self, request_id: &str) -> Result<Vec<MaterialRecord>>;

    // ----- keys, certificates, shipments -----
    /// Records a personalised key; one per producing request (a second call for the same
    /// request returns the first key).
    async fn create_key(&self, key: NewKey, audit: NewAudit) -> Result<KeyRecord>;
    /// A key by id.
    async fn key(&self, id: &str) -> Result<Option<KeyRecord>>;
    /// The key a request produced.
    async fn key_by_request(&self, request_id: &str) -> Result<Option<KeyRecord>>;
    /// Keys bound to a login name, newest first.
    async fn keys_by_login_name(&self, login_name: &str) -> Result<Vec<KeyRecord>>;
    /// The key whose current certificate is `serial` (lower-case hex).
    async fn key_by_certificate(&self, serial: &str) -> Result<Option<KeyRecord>>;
    /// An enterprise's keys, newest first.
    async fn keys_of_enterprise(&self, enterprise_id: &str) -> Result<Vec<KeyRecord>>;
    /// How many of the three keys the enterprise holds now, counted as `create_request`
    /// counts them (keys that count plus open requests that will produce one).
    async fn key_holdings(&self, enterprise_id: &str) -> Result<ekey_domain::request::Holdings>;
    /// Records that a damaged key was handed back (after its 补办), once, with its audit
    /// record, in one transaction; refused (domain error) for a key not damaged or already
    /// returned. Returns when it was recorded.
    async fn record_key_return(
        &self,
        key_id: &str,
        at: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<DateTime<Utc>>;
    /// When a damaged key was handed back, if it was.
    async fn key_return(&self, key_id: &str) -> Result<Option<DateTime<Utc>>>;
    /// Keys travelling in a shipment.
    async fn keys_in_shipment(&self, shipment_id: &str) -> Result<Vec<KeyRecord>>;
    /// Reserves a serial for an order before the CA signs; for an order already reserved,
    /// returns that row (whatever serial was proposed). A serial already used by another
    /// order → [`StoreError::Duplicate`]`("serial")`: propose another.
    async fn reserve_certificate(&self, r: CertificateReservation) -> Result<CertificateRecord>;
    /// Stores the signed certificate of a reservation; if it was stored already, returns the
    /// stored one unchanged (the first signature wins).
    async fn complete_certificate(
        &self,
        serial: &str,
        der: &[u8],
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<CertificateRecord>;
    /// A certificate by serial (lower-case hex).
    async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>>;
    /// Key hygiene: may the CA certify the public key whose SubjectPublicKeyInfo hashes to
    /// `spki_sha256` ([`spki_sha256`]) for the enterprise `credit_code`? A key never
    /// certified is bound to that enterprise now (when two race, the first commit wins); a
    /// key certified for another credit code, or ever revoked as keyCompromise (every
    /// revocation with that reason marks it), is refused. Every issuance asks first.
    async fn clear_key_for_issuance(
        &self,
        spki_sha256: &str,
        credit_code: &str,
        at: DateTime<Utc>,
    ) -> Result<KeyClearance>;
    /// Revokes one certificate on its own (operator command). Unknown → NotFound; already
    /// revoked → Duplicate("revocation").
    async fn revoke(&self, r: Revocation, audit: NewAudit) -> Result<CertificateRecord>;
    /// Revokes one certificate by hand (provider page, API, `ekey ca revoke`) and, when it is
    /// a key's current certificate, does what follows for that key in the same transaction:
    /// its new state, a `certificate_revoked` line in its request's history, the enterprise's
    /// notice. Unknown → NotFound; already revoked → Duplicate("revocation"); the key
    /// changed since it was read → Conflict; nothing is done in any of these cases.
    async fn revoke_by_hand(
        &self,
        r: Revocation,
        audit: NewAudit,
        key: Option<KeyRevocation>,
    ) -> Result<CertificateRecord>;
    /// Certificates found by serial (hex, exact), the enterprise's credit code, or the key's
    /// login name; newest first.
    async fn search_certificates(&self, query: &str, limit: i64) -> Result<Vec<CertificateRecord>>;
    /// (certificates issued, certificates revoked) since `since`.
    async fn certificate_counts(&self, since: DateTime<Utc>) -> Result<(i64, i64)>;
    /// Every revoked certificate: (serial, when, reason).
    async fn revoked(&self) -> Result<Vec<(String, DateTime<Utc>, String)>>;
    /// (CRL number, revocation counter).
    async fn ca_state(&self) -> Result<(i64, i64)>;
    /// Takes the next CRL number.
    async fn next_crl_number(&self) -> Result<i64>;
    /// The revocation counter and the newest published CRL, in one read.
    async fn crl_state(&self) -> Result<(i64, Option<PublishedCrl>)>;
    /// Publishes a CRL to every instance (older ones beyond the last few are pruned).
    async fn publish_crl(&self, crl: PublishedCrl, der: &[u8]) -> Result<()>;
    /// The DER of published CRL `number`.
    async fn published_crl(&self, number: i64) -> Result<Option<Vec<u8>>>;
    /// Claims periodic job `name` for `owner` until `lease_until` when it is due (or new) and
    /// nobody else holds a live lease: true on exactly one instance per run.
    async fn claim_timer(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Ends `owner`'s run of `name`: counted, lease released, next run at `next_run_at`.
    async fn finish_timer(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        next_run_at: DateTime<Utc>,
    ) -> Result<bool>;
    /// A periodic job's record.
    async fn timer(&self, name: &str) -> Result<Option<TimerRecord>>;
    /// Stores an administrator's holiday year (replacing that year), audited.
    async fn put_holiday_year(&self, year: HolidayYear, audit: NewAudit) -> Result<()>;
    /// Every stored holiday year, by year.
    async fn holiday_years(&self) -> Result<Vec<HolidayYear>>;
    /// Recounts a running deadline after the calendar changed: sets the new due time while
    /// the request is still at the version and due time read, writes a
    /// [`DEADLINE_RECOMPUTED`] history line (status unchanged) and the audit record, in one
    /// transaction. Changed meanwhile → [`StoreError::Conflict`], nothing done.
    async fn reschedule_deadline(
        &self,
        change: DeadlineChange,
        audit: NewAudit,
    ) -> Result<RequestRecord>;
    /// Changes whenever a holiday year is stored: (count, newest loaded_at in ms).
    async fn holidays_version(&self) -> Result<(i64, i64)>;
    /// Applies several changes in one transaction (see [`Batch`]); returns the requests as
    /// changed, in the order of `batch.transitions`.
    async fn apply_batch(&self, batch: Batch) -> Result<Vec<RequestRecord>>;
    /// A shipment.
    async fn shipment(&self, id: &str) -> Result<Option<ShipmentRecord>>;
    /// Shipments, newest first, optionally of one province.
    async fn shipments(&self, province: Option<&str>) -> Result<Vec<ShipmentRecord>>;

    // ----- audit -----
    /// Appends one audit record on its own (logins, downloads).
    async fn append_audit(&self, audit: NewAudit) -> Result<()>;
    /// Walks the whole chain and names the first record that does not verify.
    async fn verify_audit(&self) -> Result<AuditReport>;

    // ----- outbox -----
    /// Leases up to `limit` due messages to `owner` until `lease_until`.
    async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>>;
    /// Marks a leased message delivered (only if `owner` still holds the lease).
    async fn outbox_delivered(&self, id: i64, owner: &str, now: DateTime<Utc>) -> Result<bool>;
    /// [`Store::outbox_delivered`] that also replaces the stored body with `body` — the
    /// message without the secret it carried (an unlock code) — in the same statement, so
    /// no delivered row keeps the secret.
    async fn outbox_delivered_redacted(
        &self,
        id: i64,
        owner: &str,
        now: DateTime<Utc>,
        body: &str,
    ) -> Result<bool>;
    /// Records a failed attempt; the message is retried at `retry_at` or, when `dead`,
    /// moved to the dead-letter list.
    async fn outbox_failed(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry_at: DateTime<Utc>,
        dead: bool,
    ) -> Result<()>;
    /// Queues messages outside a state change (reminders, digests); a message whose dedup
    /// key was queued before is skipped. Returns how many were new.
    async fn enqueue(&self, messages: Vec<NewMessage>) -> Result<usize>;
    /// Keys in use (active or locked) whose current, unrevoked certificate ends in
    /// `(after, until]`, with the enterprise account's email.
    async fn expiring_keys(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ExpiringKey>>;
    /// Creates an account; `Duplicate("login")` when the login exists. Audited.
    async fn create_account(&self, account: NewAccount, audit: NewAudit) -> Result<Account>;
    /// Enables or disables an account; disabling ends its sessions. Audited.
    async fn set_account_active(
        &self,
        id: &str,
        active: bool,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<Account>;
    /// Every account of a role (active or not), by login.
    async fn accounts_of_role(&self, role: &str) -> Result<Vec<Account>>;
    /// Counts of outbox messages by state.
    async fn outbox_counts(&self) -> Result<OutboxCounts>;
    /// Messages given up after too many failures, newest first, with their last error.
    async fn outbox_dead(&self, limit: i64) -> Result<Vec<(OutboxMessage, String)>>;
    /// Puts a dead letter back in the queue (attempts reset, due at `now`); false when it
    /// is not (or no longer) a dead letter. Audited.
    async fn outbox_retry(&self, id: i64, now: DateTime<Utc>, audit: NewAudit) -> Result<bool>;
    /// Stores a message in the development mailbox (demo transport).
    async fn dev_mailbox_put(&self, msg: &OutboxMessage, now: DateTime<Utc>) -> Result<()>;
    /// The development mailbox, oldest first.
    async fn dev_mailbox(&self) -> Result<Vec<DevMail>>;
}

/// Opens the store for a database URL: `sqlite:…` or `postgres:…`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_told_apart_from_a_wrong_statement() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for e in [
            sqlx::Error::Io(refused),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
        ] {
            assert!(matches!(StoreError::from(e), StoreError::Unavailable(_)));
        }
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Backend(_)
        ));
        for sqlstate in ["08006", "08001", "57P01", "57P03", "53300"] {
            assert!(pg_unavailable(sqlstate), "{sqlstate}");
        }
        for sqlstate in ["23505", "40001", "42P01", "5", "13"] {
            assert!(!pg_unavailable(sqlstate), "{sqlstate}");
        }
        // SQLite: busy and busy-timeout (extended 773) are a locked database, 13 a full disk.
        assert_eq!(sqlite_primary("5"), Some(SQLITE_BUSY));
        assert_eq!(sqlite_primary("773"), Some(SQLITE_BUSY));
        assert_eq!(sqlite_primary("13"), Some(SQLITE_FULL));
        assert_eq!(sqlite_primary("08006"), None);
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(matches!(StoreError::from(full), StoreError::Full(_)));
    }
}

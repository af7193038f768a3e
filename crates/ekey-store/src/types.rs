//! Records read from and written to the store.

use chrono::{DateTime, Utc};
use ekey_domain::request::{Action, Kind, Material, RequestForm, Role, Status};
use serde::{Deserialize, Serialize};

/// Which database is behind the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (embedded default).
    Sqlite,
    /// PostgreSQL (scale).
    Postgres,
}

/// A provincial issuing agency and where enterprises collect their keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agency {
    /// GB/T 2260 province code.
    pub province: String,
    /// Name, Chinese.
    pub name_zh: String,
    /// Name, English.
    pub name_en: String,
    /// Collection address.
    pub address: String,
    /// Collection window.
    pub window: String,
    /// Opening hours.
    pub hours: String,
    /// Hotline.
    pub hotline: String,
}

/// An enterprise as registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enterprise {
    /// Id.
    pub id: String,
    /// Registered name.
    pub name: String,
    /// Unified social credit code.
    pub credit_code: String,
    /// Province (its agency).
    pub province: String,
    /// Registered or business address.
    pub address: String,
    /// Legal representative.
    pub legal_representative: String,
    /// When registered.
    pub created_at: DateTime<Utc>,
}

/// Fields of a new enterprise.
#[derive(Clone, Debug)]
pub struct NewEnterprise {
    /// Id to give it.
    pub id: String,
    /// Registered name.
    pub name: String,
    /// Unified social credit code (validated).
    pub credit_code: String,
    /// Province code (validated).
    pub province: String,
    /// Address.
    pub address: String,
    /// Legal representative.
    pub legal_representative: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A login account of any role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Id.
    pub id: String,
    /// Login: email for enterprise users, a user name for staff.
    pub login: String,
    /// Email to write to.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Mobile for SMS, if known.
    pub mobile: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// Enterprise (enterprise users).
    pub enterprise_id: Option<String>,
    /// Province (agency staff).
    pub province: Option<String>,
    /// Activated (enterprise accounts start inactive).
    pub active: bool,
    /// When created.
    pub created_at: DateTime<Utc>,
}

/// Fields of a new account.
#[derive(Clone, Debug)]
pub struct NewAccount {
    /// Id to give it (kept if the login exists already on upsert).
    pub id: String,
    /// Login.
    pub login: String,
    /// Email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Mobile.
    pub mobile: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// Enterprise.
    pub enterprise_id: Option<String>,
    /// Province.
    pub province: Option<String>,
    /// Active at once.
    pub active: bool,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A single-use token to store (hashed).
#[derive(Clone, Debug)]
pub struct NewToken {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// When issued.
    pub created_at: DateTime<Utc>,
}

/// Everything a registration writes, in one transaction.
#[derive(Clone, Debug)]
pub struct NewRegistration {
    /// The enterprise.
    pub enterprise: NewEnterprise,
    /// Its first account (inactive).
    pub account: NewAccount,
    /// Activation token.
    pub activation: NewToken,
    /// Activation mail.
    pub mail: NewMessage,
    /// Audit record.
    pub audit: NewAudit,
}

/// A session to store.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// SHA-256 of the bearer token, hex.
    pub token_hash: String,
    /// Account.
    pub account_id: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// The key the session was opened with (certificate login), if any.
    pub key_id: Option<String>,
}

/// A one-time certificate-login challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginChallenge {
    /// Id.
    pub id: String,
    /// The challenge text the key signs (base64url of random bytes).
    pub challenge: String,
    /// SHA-256 of the browser's anonymous seed cookie; empty when not bound to a browser.
    pub seed_hash: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Unusable from then on.
    pub expires_at: DateTime<Utc>,
    /// When it was used (it works once).
    pub used_at: Option<DateTime<Utc>>,
}

/// The server's record of one approved renewal (SPEC §3.4): at most one new certificate,
/// installed on the key and confirmed, the old one superseded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RenewalRecord {
    /// The renewal request (one record per approval).
    pub request_id: String,
    /// The key being renewed.
    pub key_id: String,
    /// Its certificate when the renewal started.
    pub old_serial: String,
    /// The one certificate issued for this renewal.
    pub new_serial: Option<String>,
    /// `approved` → `issued` → `confirmed` (or `expired`).
    pub state: String,
    /// Created (the first time the key asked).
    pub created_at: DateTime<Utc>,
    /// After this the renewal can no longer run, and an issued-but-unconfirmed renewal
    /// supersedes the old certificate anyway.
    pub expires_at: DateTime<Utc>,
    /// When the new certificate was issued.
    pub issued_at: Option<DateTime<Utc>>,
    /// When the token confirmed the new certificate active.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// When the old certificate was revoked as superseded.
    pub old_revoked_at: Option<DateTime<Utc>>,
}

/// A renewal record's change inside a [`Batch`], applied only if its state is still
/// `from_state` (else the whole batch fails with `Conflict`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalChange {
    /// Renewal (request id).
    pub request_id: String,
    /// State read before deciding.
    pub from_state: String,
    /// New state.
    pub to_state: String,
    /// Set the new certificate's serial (issuance).
    pub new_serial: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// The old certificate was revoked in this batch.
    pub old_revoked: bool,
}

/// A request as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// Id.
    pub id: String,
    /// Public number: `EK`, the province's first two digits, the date in Beijing time and a
    /// daily counter, e.g. `EK322026112600001`.
    pub number: String,
    /// Kind.
    pub kind: Kind,
    /// Status.
    pub status: Status,
    /// Version for check-and-set; increases with every change.
    pub version: i64,
    /// Owning enterprise.
    pub enterprise_id: String,
    /// Enterprise's province.
    pub province: String,
    /// Login name of the key.
    pub login_name: Option<String>,
    /// The form.
    pub form: RequestForm,
    /// Deadline running now.
    pub due_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// How the login name of a new request is obtained (after domain validation).
#[derive(Clone, Debug)]
pub enum LoginNameClaim {
    /// Allocate a fresh one now.
    Allocate,
    /// Use a name this enterprise reserved with 获取登录名.
    Reserved(String),
    /// Register an existing (electromechanical) name; taken by another enterprise → error.
    Existing(String),
    /// A name the enterprise already owns (补办, renewal, unlock, cancellation).
    Original(String),
}

/// A new request with everything its creation writes.
#[derive(Clone, Debug)]
pub struct NewRequest {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: Kind,
    /// Enterprise.
    pub enterprise_id: String,
    /// Province.
    pub province: String,
    /// Form.
    pub form: RequestForm,
    /// Login name claim.
    pub login_name: LoginNameClaim,
    /// When.
    pub at: DateTime<Utc>,
    /// Actor account.
    pub actor_id: String,
    /// Audit record (object id is filled in by the store).
    pub audit: NewAudit,
}

/// Filter for request lists.
#[derive(Clone, Debug, Default)]
pub struct RequestFilter {
    /// Only this enterprise's.
    pub enterprise_id: Option<String>,
    /// Only this province's.
    pub province: Option<String>,
    /// Only these statuses (empty = all).
    pub statuses: Vec<Status>,
    /// Search: the request number, the login name or the enterprise's credit code exactly,
    /// or a part of the enterprise's name.
    pub query: Option<String>,
    /// Maximum rows.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

/// One step in a request's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// Order within the request.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Account that acted (empty for the system).
    pub actor_id: String,
    /// Its role.
    pub actor_role: Role,
    /// Action machine name (`create` for creation).
    pub action: String,
    /// Status before (none at creation).
    pub from_status: Option<Status>,
    /// Status after.
    pub to_status: Status,
    /// Remark for the enterprise.
    pub remark: Option<String>,
    /// What the remark concerns (material items or form fields), for showing it beside them.
    pub concerns: Vec<String>,
}

/// A state change to store in one transaction.
#[derive(Clone, Debug)]
pub struct Transition {
    /// Request.
    pub request_id: String,
    /// Version read before deciding; the change applies only if still current.
    pub expected_version: i64,
    /// The action.
    pub action: Action,
    /// Status before (as read).
    pub from: Status,
    /// Status after.
    pub to: Status,
    /// Deadline after.
    pub due_at: Option<DateTime<Utc>>,
    /// New form (edits).
    pub form: Option<RequestForm>,
    /// Commit the staged materials (确认上传).
    pub commit_materials: bool,
    /// When.
    pub at: DateTime<Utc>,
    /// Actor account.
    pub actor_id: String,
    /// Actor role.
    pub actor_role: Role,
    /// Remark.
    pub remark: Option<String>,
    /// What the remark concerns (material items or form fields); empty for none.
    pub concerns: Vec<String>,
    /// Audit record.
    pub audit: NewAudit,
    /// Messages caused.
    pub outbox: Vec<NewMessage>,
}

/// State of an uploaded file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialState {
    /// Uploaded, not yet confirmed.
    Staged,
    /// Confirmed with 确认上传.
    Committed,
    /// Replaced by a later file (kept as history).
    Superseded,
}

impl MaterialState {
    /// Machine name.
    pub fn as_str(self) -> &'static str {
        match self {
            MaterialState::Staged => "staged",
            MaterialState::Committed => "committed",
            MaterialState::Superseded => "superseded",
        }
    }
    pub(crate) fn parse(s: &str) -> MaterialState {
        match s {
            "staged" => MaterialState::Staged,
            "committed" => MaterialState::Committed,
            _ => MaterialState::Superseded,
        }
    }
}

/// An uploaded file's metadata (the bytes are in the blob store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MaterialRecord {
    /// Id.
    pub id: i64,
    /// Request.
    pub request_id: String,
    /// Checklist item.
    pub item: Material,
    /// State.
    pub state: MaterialState,
    /// Blob key.
    pub blob_key: String,
    /// MIME type judged from the content.
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// SHA-256, hex.
    pub sha256: String,
    /// File name as uploaded (display only).
    pub file_name: Option<String>,
    /// When uploaded.
    pub uploaded_at: DateTime<Utc>,
    /// Who uploaded.
    pub uploaded_by: String,
}

/// An uploaded file to record.
#[derive(Clone, Debug)]
pub struct NewMaterial {
    /// Request.
    pub request_id: String,
    /// Statuses in which the request accepts files.
    pub allowed: Vec<Status>,
    /// Item.
    pub item: Material,
    /// Blob key.
    pub blob_key: String,
    /// MIME type.
    pub content_type: String,
    /// Size.
    pub size: i64,
    /// SHA-256, hex.
    pub sha256: String,
    /// File name as uploaded.
    pub file_name: Option<String>,
    /// When.
    pub uploaded_at: DateTime<Utc>,
    /// Who.
    pub uploaded_by: String,
}

/// An audit record to append.
#[derive(Clone, Debug, Default)]
pub struct NewAudit {
    /// When.
    pub at: DateTime<Utc>,
    /// Account acting (empty for the system).
    pub actor_id: String,
    /// Role name.
    pub actor_role: String,
    /// Remote address.
    pub address: String,
    /// What happened (`request.agency_approve`, `session.create`, …).
    pub action: String,
    /// Object type.
    pub object_type: String,
    /// Object id.
    pub object_id: String,
    /// State before.
    pub before: String,
    /// State after.
    pub after: String,
}

/// Result of walking the audit chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Records checked.
    pub records: i64,
    /// Sequence number of the first record that does not verify, and why.
    pub first_broken: Option<(i64, String)>,
}

/// Channel of an outbox message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email.
    Email,
    /// SMS.
    Sms,
}

impl Channel {
    /// Machine name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

/// A message to queue in the outbox.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Channel.
    pub channel: Channel,
    /// Email address or mobile number.
    pub recipient: String,
    /// Subject (email).
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// One message per event: a second message with the same key is not queued.
    pub dedup_key: String,
    /// When queued.
    pub created_at: DateTime<Utc>,
}

/// A queued message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Id.
    pub id: i64,
    /// Channel.
    pub channel: Channel,
    /// Recipient.
    pub recipient: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Dedup key.
    pub dedup_key: String,
    /// Attempts so far.
    pub attempts: i64,
    /// When queued.
    pub created_at: DateTime<Utc>,
}

/// A periodic job shared by all instances (see [`crate::Store::claim_timer`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimerRecord {
    /// The job's name.
    pub name: String,
    /// When it is due next.
    pub next_run_at: DateTime<Utc>,
    /// The instance running it now, if any.
    pub lease_owner: Option<String>,
    /// How many runs have finished, on any instance.
    pub runs: i64,
    /// When the last run finished.
    pub last_run_at: Option<DateTime<Utc>>,
    /// The instance that ran it last.
    pub last_owner: Option<String>,
}

/// A CRL published to every instance (its DER is read separately: it can be large).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishedCrl {
    /// Its CRL number.
    pub number: i64,
    /// The revocation counter it covers.
    pub revocations: i64,
    /// When it was made (its thisUpdate).
    pub made_at: DateTime<Utc>,
}

/// A holiday year loaded by an administrator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolidayYear {
    /// The year.
    pub year: i32,
    /// The year's file (holiday-cn JSON).
    pub data: String,
    /// When it was loaded.
    pub loaded_at: DateTime<Utc>,
    /// Who loaded it (account id).
    pub loaded_by: String,
}

/// Outbox counts by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    /// Waiting or being retried.
    pub pending: i64,
    /// Delivered.
    pub sent: i64,
    /// Given up (dead letters).
    pub dead: i64,
}

/// A message in the development mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DevMail {
    /// Recipient (email address or mobile number).
    pub to: String,
    /// Subject (empty for SMS).
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// When delivered to the mailbox.
    pub sent_at: DateTime<Utc>,
    /// Channel.
    pub channel: Channel,
}

/// A key (token) as produced and delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    /// Id.
    pub id: String,
    /// Owning enterprise.
    pub enterprise_id: String,
    /// The request that produced it.
    pub request_id: Option<String>,
    /// Login name bound to it.
    pub login_name: String,
    /// Token serial.
    pub token_serial: Option<String>,
    /// `soft` or `pkcs11`.
    pub token_kind: String,
    /// State.
    pub state: ekey_domain::key::KeyState,
    /// Serial (hex) of its current certificate.
    pub certificate_serial: Option<String>,
    /// Shipment it travels in.
    pub shipment_id: Option<String>,
    /// The e-seal record bound to it.
    pub eseal_id: Option<String>,
    /// Version for check-and-set.
    pub version: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A personalised key to record.
#[derive(Clone, Debug)]
pub struct NewKey {
    /// Id.
    pub id: String,
    /// Enterprise.
    pub enterprise_id: String,
    /// Producing request (unique: one key per request).
    pub request_id: String,
    /// Login name.
    pub login_name: String,
    /// Token serial.
    pub token_serial: String,
    /// `soft` or `pkcs11`.
    pub token_kind: String,
    /// Certificate serial (hex).
    pub certificate_serial: String,
    /// Id of the e-seal record bound to the key.
    pub eseal_id: String,
    /// Name of the e-seal (the enterprise's name).
    pub eseal_name: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A certificate row: reserved (no DER yet) or issued, perhaps revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Serial, lower-case hex.
    pub serial: String,
    /// The order it was issued for (one certificate per order).
    pub idempotency_key: String,
    /// Enterprise.
    pub enterprise_id: Option<String>,
    /// Key.
    pub key_id: Option<String>,
    /// Subject summary (name and credit code).
    pub subject: String,
    /// DER, once signed.
    pub der: Option<Vec<u8>>,
    /// Validity start.
    pub not_before: Option<DateTime<Utc>>,
    /// Validity end.
    pub not_after: Option<DateTime<Utc>>,
    /// When reserved.
    pub issued_at: DateTime<Utc>,
    /// When revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// RFC 5280 reason name.
    pub revocation_reason: Option<String>,
}

/// A certificate serial reserved for an order before signing.
#[derive(Clone, Debug)]
pub struct CertificateReservation {
    /// Serial, lower-case hex.
    pub serial: String,
    /// The order.
    pub idempotency_key: String,
    /// Enterprise.
    pub enterprise_id: Option<String>,
    /// Key.
    pub key_id: Option<String>,
    /// Subject summary.
    pub subject: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A revocation to apply.
#[derive(Clone, Debug)]
pub struct Revocation {
    /// Serial, lower-case hex.
    pub serial: String,
    /// RFC 5280 reason name (camelCase).
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A key state change within a batch (check-and-set on the version).
#[derive(Clone, Debug)]
pub struct KeyChange {
    /// Key.
    pub key_id: String,
    /// Version read before deciding.
    pub expected_version: i64,
    /// New state.
    pub to: ekey_domain::key::KeyState,
    /// Put it into this shipment.
    pub shipment_id: Option<String>,
    /// Give it this certificate (serial, lower-case hex): a renewal.
    pub certificate_serial: Option<String>,
}

/// A shipment of keys from the provider to one agency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShipmentRecord {
    /// Id.
    pub id: String,
    /// Human number.
    pub number: String,
    /// Destination province.
    pub province: String,
    /// Courier.
    pub courier: String,
    /// Tracking number.
    pub tracking_number: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Created by.
    pub created_by: String,
    /// Received at the agency.
    pub received_at: Option<DateTime<Utc>>,
    /// Received by.
    pub received_by: Option<String>,
}

/// A handover to record.
#[derive(Clone, Debug)]
pub struct NewHandover {
    /// Request.
    pub request_id: String,
    /// `pickup` or `mail`.
    pub method: String,
    /// The record (JSON).
    pub record: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Agency clerk.
    pub by_account: String,
}

/// Several changes that must happen together or not at all (shipping twenty keys,
/// handing one over, completing a cancellation).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Request transitions (each check-and-set, with history, audit, outbox).
    pub transitions: Vec<Transition>,
    /// Key state changes.
    pub key_changes: Vec<KeyChange>,
    /// A shipment to create (before the key changes that reference it).
    pub new_shipment: Option<ShipmentRecord>,
    /// A shipment received: (id, at, by).
    pub shipment_received: Option<(String, DateTime<Utc>, String)>,
    /// A handover record.
    pub handover: Option<NewHandover>,
    /// Certificate revocations.
    pub revocations: Vec<Revocation>,
    /// Extra audit records (one per changed object not covered by a transition).
    pub audits: Vec<NewAudit>,
    /// A renewal record's change.
    pub renewal: Option<RenewalChange>,
}

/// How the enterprise will receive its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CollectionChoice {
    /// Request.
    pub request_id: String,
    /// `window` (at the agency) or `mail` (free mailing with a disclaimer).
    pub method: String,
    /// Mailing: recipient's name.
    pub recipient: String,
    /// Mailing: address (must match the registered or licence address).
    pub address: String,
    /// Mailing: recipient's mobile.
    pub mobile: String,
    /// Mailing: recipient's ID number.
    pub id_number: String,
    /// When chosen.
    pub chosen_at: DateTime<Utc>,
    /// Account that chose.
    pub chosen_by: String,
}

/// A password reset: a link mailed to the account's address.
#[derive(Clone, Debug)]
pub struct NewPasswordReset {
    /// Account.
    pub account_id: String,
    /// The link's token (hashed) and expiry.
    pub token: NewToken,
    /// The mail carrying it.
    pub mail: NewMessage,
    /// Audit record.
    pub audit: NewAudit,
}

/// A key in use whose certificate ends soon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiringKey {
    /// Key.
    pub key_id: String,
    /// Enterprise.
    pub enterprise_id: String,
    /// Login name.
    pub login_name: String,
    /// Certificate serial (hex).
    pub serial: String,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// The enterprise account's email.
    pub email: String,
}

/// One unit to take from a quota counted in the database (mail quotas): at most `limit`
/// units per `window` under `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaTake {
    /// What is counted, e.g. `to:<email>` or `addr:<ip>`.
    pub key: String,
    /// Units allowed per window.
    pub limit: i64,
    /// The window, starting at the first unit taken after the previous one ended.
    pub window: chrono::Duration,
}

/// What [`crate::Store::take_quota`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaOutcome {
    /// One unit was taken from every quota.
    Taken,
    /// None was taken: the quota under `key` is used up until `until`.
    Refused {
        /// The exhausted quota's key.
        key: String,
        /// When its window ends.
        until: DateTime<Utc>,
    },
}

/// A registration waiting for its activation link (it claims nothing yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRegistration {
    /// The id its account will get.
    pub id: String,
    /// The enterprise name given.
    pub enterprise_name: String,
    /// The credit code given.
    pub credit_code: String,
    /// The email given (the future login).
    pub email: String,
    /// The password's argon2id hash.
    pub password_hash: String,
    /// When its current link expires.
    pub expires_at: DateTime<Utc>,
}

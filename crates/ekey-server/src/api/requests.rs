//! Requests: create, read, list, edit, submit, withdraw, materials, confirm-upload, review
//! decisions. Every status change goes through `ekey_domain::request::transition` and is
//! stored by `Store::apply_transition` in one transaction.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use ekey_domain::calendar::shanghai;
use ekey_domain::error::DomainError;
use ekey_domain::ident::{Email, IdNumber, Mobile};
use ekey_domain::request::{
    Action, Context, Kind, LicenceType, LoginNameMode, Material, Person, RequestForm, RequestView,
    Role, Status, available_actions, transition,
};
use ekey_domain::upload;
use ekey_store::{
    LoginNameClaim, MaterialRecord, NewAudit, NewMaterial, NewRequest, RequestFilter,
    RequestRecord, Transition,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiQuery};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody, current_lang};
use crate::messages::{for_transition, rfc3339};
use crate::state::AppState;

/// A natural person on the form.
#[derive(Deserialize, Serialize, ToSchema, Clone)]
pub struct PersonBody {
    /// Name.
    pub name: String,
    /// Resident ID number.
    pub id_number: String,
    /// Mobile.
    pub mobile: String,
    /// Email.
    pub email: String,
}

/// How the login name is obtained.
#[derive(Deserialize, ToSchema)]
pub struct LoginNameBody {
    /// `allocate` (获取登录名), `existing` (electromechanical importers), `original`
    /// (the key concerned: 补办, renewal, unlock, cancellation).
    pub mode: String,
    /// The name typed, or one reserved with `POST /api/v1/login-names`.
    pub value: Option<String>,
}

/// A new request.
#[derive(Deserialize, ToSchema)]
pub struct CreateRequestBody {
    /// first, additional, replacement, reapplication, renewal, unlock, cancellation.
    pub kind: String,
    /// Licence businesses ticked.
    #[serde(default)]
    pub licence_types: Vec<String>,
    /// Login name.
    pub login_name: LoginNameBody,
    /// Reason (required for additional and replacement).
    pub reason: Option<String>,
    /// The authorised user (经办人).
    pub authorised_user: PersonBody,
    /// The authorised user named on the confirmation letter, if given separately; must be
    /// the same person.
    pub confirmation_letter_user: Option<PersonBody>,
    /// Replacement (required) and cancellation: the key is lost (`true`) or, for a
    /// replacement, damaged (`false`).
    #[serde(default)]
    pub key_lost: Option<bool>,
    /// Unlock: the challenge the locked key shows (hex), needed before the provider can
    /// approve; can also be added later by editing the form.
    pub unlock_challenge: Option<String>,
    /// 重新申领（信息变更）: the enterprise's data as on the new business licence (required
    /// for that kind, refused for others).
    pub enterprise_change: Option<EnterpriseFactsBody>,
}

/// Enterprise data as on the business licence.
#[derive(Deserialize, Serialize, ToSchema, Clone)]
pub struct EnterpriseFactsBody {
    /// Registered name.
    pub name: String,
    /// Legal representative.
    pub legal_representative: String,
    /// Registered address.
    pub address: String,
}

/// One line of an enterprise change, old beside new.
#[derive(Serialize, ToSchema)]
pub struct ChangeRowOut {
    /// `name`, `legal_representative` or `address`.
    pub field: String,
    /// The field in words.
    pub label: String,
    /// As registered before.
    pub before: String,
    /// As on the new licence.
    pub after: String,
    /// Whether it differs.
    pub changed: bool,
}

/// Another key of the enterprise, still naming its old data after a change.
#[derive(Serialize, ToSchema)]
pub struct OtherKeyOut {
    /// Login name.
    pub login_name: String,
    /// Key state.
    pub state: String,
    /// Certificate serial.
    pub certificate_serial: Option<String>,
}

/// Changes to a draft or returned request's form.
#[derive(Deserialize, ToSchema)]
pub struct EditRequestBody {
    /// Licence businesses ticked.
    pub licence_types: Option<Vec<String>>,
    /// Reason.
    pub reason: Option<String>,
    /// The authorised user.
    pub authorised_user: Option<PersonBody>,
    /// Cancellation: the key is lost.
    pub key_lost: Option<bool>,
    /// Unlock: the key's challenge (hex).
    pub unlock_challenge: Option<String>,
    /// 重新申领（信息变更）: the corrected new enterprise data.
    pub enterprise_change: Option<EnterpriseFactsBody>,
}

/// The answer to a creation.
#[derive(Serialize, ToSchema)]
pub struct CreatedOut {
    /// Id.
    pub id: String,
    /// Public number.
    pub number: String,
    /// Status (`draft`).
    pub status: String,
}

/// One step of the history.
#[derive(Serialize, ToSchema)]
pub struct HistoryOut {
    /// When (RFC 3339, +08:00).
    pub at: String,
    /// Role of who acted.
    pub actor_role: String,
    /// What was done.
    pub action: String,
    /// Status afterwards.
    pub status: String,
    /// Remark for the enterprise.
    pub remark: Option<String>,
    /// What the remark concerns (material items or form fields).
    pub concerns: Vec<String>,
}

/// One line of the materials checklist.
#[derive(Serialize, ToSchema)]
pub struct MaterialOut {
    /// Item.
    pub item: String,
    /// What it is and who signs / stamps it.
    pub label: String,
    /// Needed before 确认上传.
    pub required: bool,
    /// A file is there.
    pub present: bool,
    /// staged (uploaded, not confirmed) or committed.
    pub state: Option<String>,
    /// MIME type judged from the content.
    pub content_type: Option<String>,
    /// Size in bytes.
    pub size: Option<i64>,
    /// When uploaded.
    pub uploaded_at: Option<String>,
    /// Set when the upload was downscaled to fit (`?fit=1`): sizes before and after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fitted: Option<FittedOut>,
    /// The request was returned and this item must be uploaded anew before 确认上传 (the
    /// remark concerns it, or the form it prints was changed since).
    pub to_replace: bool,
    /// A new file of this item came with the answer to the latest return.
    pub changed_since_return: bool,
}

/// Sizes of an image downscaled to fit the limit.
#[derive(Serialize, ToSchema, Clone, Copy)]
pub struct FittedOut {
    /// Bytes as uploaded.
    pub before: u64,
    /// Bytes as stored.
    pub after: u64,
}

/// Options of an upload.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// `1`: an image over the limit is downscaled to fit it (upright, as JPEG, without its
    /// EXIF data) instead of being refused.
    pub fit: Option<String>,
}

/// The form as stored.
#[derive(Serialize, ToSchema)]
pub struct FormOut {
    /// Licence businesses ticked.
    pub licence_types: Vec<String>,
    /// How the login name was obtained.
    pub login_name_mode: String,
    /// Reason.
    pub reason: Option<String>,
    /// The authorised user.
    pub authorised_user: PersonBody,
    /// Cancellation: key lost.
    pub key_lost: bool,
    /// Unlock: the key's challenge (hex).
    pub unlock_challenge: Option<String>,
}

/// A request with its history.
#[derive(Serialize, ToSchema)]
pub struct RequestOut {
    /// Id.
    pub id: String,
    /// Public number.
    pub number: String,
    /// Kind.
    pub kind: String,
    /// Status.
    pub status: String,
    /// Status in words.
    pub status_label: String,
    /// Login name of the key.
    pub login_name: Option<String>,
    /// When the current step becomes overdue (00:00 after its last working day), or null.
    pub due_at: Option<String>,
    /// The current step is overdue.
    pub overdue: bool,
    /// Set when `due_at` was counted through a year whose official holiday arrangement is
    /// not loaded yet (statutory holidays only): says so, and that it may change.
    pub due_note: Option<String>,
    /// Created.
    pub created_at: String,
    /// Province of the enterprise.
    pub province: String,
    /// The enterprise.
    pub enterprise_name: String,
    /// Its credit code.
    pub credit_code: String,
    /// The form.
    pub form: FormOut,
    /// Every step so far, oldest first.
    pub history: Vec<HistoryOut>,
    /// The checklist.
    pub materials: Vec<MaterialOut>,
    /// What the caller can do now.
    pub actions: Vec<String>,
    /// How the enterprise will receive the key, once chosen.
    pub collection: Option<super::selfservice::CollectionOut>,
    /// Returned: items that must be uploaded anew before 确认上传 (what the remark concerns,
    /// and the signed forms a change of the form since the return invalidated).
    pub to_replace: Vec<String>,
    /// What the enterprise changed in answer to the latest return (items with a new file,
    /// form fields), for the reviewer; empty when never returned or not answered yet.
    pub changed_since_return: Vec<String>,
    /// 重新申领（信息变更）: the enterprise data old beside new (checked at 验核 against the
    /// new licence); empty for other kinds.
    pub enterprise_change: Vec<ChangeRowOut>,
    /// 重新申领（信息变更）: the enterprise's other keys, whose certificates name the old
    /// data, for the enterprise to renew (更新, new data) or cancel (注销).
    pub other_keys: Vec<OtherKeyOut>,
}

/// A line of a request list.
#[derive(Serialize, ToSchema)]
pub struct RequestSummary {
    /// Id.
    pub id: String,
    /// Number.
    pub number: String,
    /// Kind.
    pub kind: String,
    /// Status.
    pub status: String,
    /// Status in words.
    pub status_label: String,
    /// Province.
    pub province: String,
    /// Due (RFC 3339, +08:00).
    pub due_at: Option<String>,
    /// Overdue now.
    pub overdue: bool,
    /// Set when `due_at` is provisional (see [`RequestOut::due_note`]).
    pub due_note: Option<String>,
    /// Login name.
    pub login_name: Option<String>,
    /// Last change.
    pub updated_at: String,
}

/// A review decision.
#[derive(Deserialize, ToSchema)]
pub struct DecisionBody {
    /// Approve (通过) or not (未通过: back to the enterprise).
    pub approve: bool,
    /// Remark for the enterprise; required when not approving.
    pub remark: Option<String>,
    /// With `approve: false` on an additional key: refuse it for good instead of returning.
    #[serde(default)]
    pub refuse: bool,
    /// What the remark concerns, so the enterprise sees it beside the item to fix: material
    /// items of the request's checklist (`id_card`, …) or form fields (`licence_types`,
    /// `login_name`, `reason`, `authorised_user`, `key_lost`).
    #[serde(default)]
    pub concerns: Vec<String>,
}

/// Form fields a reviewer's remark may concern.
pub const FORM_FIELDS: &[&str] = &[
    "licence_types",
    "login_name",
    "reason",
    "authorised_user",
    "key_lost",
    "enterprise_change",
];

fn concerns(kind: Kind, given: &[String]) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in given.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        let known = FORM_FIELDS.contains(&c)
            || Material::parse(c).is_ok_and(|m| kind.accepted_materials().contains(&m));
        if !known {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ekey.request.unknown_concern",
                format!("备注所指的项目“{c}”不是该申请的材料或表单项"),
                format!("\"{c}\" is neither a material nor a form field of this request"),
            ));
        }
        if !out.iter().any(|o| o == c) {
            out.push(c.to_string());
        }
    }
    Ok(out)
}

/// The longest search of a list.
pub const MAX_SEARCH_CHARS: usize = 100;

/// Paging and filtering of lists.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Comma-separated statuses.
    pub status: Option<String>,
    /// Search: request number, login name or credit code (exact), or part of the
    /// enterprise's name; at most 100 characters (longer is refused, not ignored).
    pub q: Option<String>,
    /// Maximum rows (≤ 500, default 100).
    pub limit: Option<i64>,
    /// Rows to skip.
    pub offset: Option<i64>,
}

fn person(p: &PersonBody, today: NaiveDate) -> Result<Person, DomainError> {
    Ok(Person {
        name: p.name.trim().to_string(),
        id_number: IdNumber::parse_on(&p.id_number, today)?,
        mobile: Mobile::parse(&p.mobile)?,
        email: Email::parse(&p.email)?,
    })
}

/// An unlock request's challenge, normalised; other kinds carry none.
fn challenge(kind: Kind, text: Option<&str>) -> Result<Option<String>, DomainError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) if kind == Kind::Unlock => ekey_domain::request::normalise_challenge(t).map(Some),
        _ => Ok(None),
    }
}

fn licence_types(v: &[String]) -> Result<Vec<LicenceType>, DomainError> {
    let mut out = Vec::new();
    for t in v {
        let t = LicenceType::parse(t.trim())?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn person_out(p: &Person) -> PersonBody {
    PersonBody {
        name: p.name.clone(),
        id_number: p.id_number.as_str().into(),
        mobile: p.mobile.as_str().into(),
        email: p.email.as_str().into(),
    }
}

fn overdue(state: &AppState, r: &RequestRecord) -> bool {
    r.due_at.is_some_and(|d| d <= state.clock.now())
}

/// The words beside a provisional due time (see [`RequestOut::due_note`]).
pub(crate) fn due_note(
    state: &AppState,
    due: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<String> {
    let due = due?;
    state.with_calendar(|c| ekey_domain::statutory::due_notice(c, due, current_lang()))
}

fn status_label(s: Status) -> String {
    current_lang().pick(s.label_zh(), s.label_en()).to_string()
}

pub(crate) fn view(r: &RequestRecord) -> RequestView<'_> {
    RequestView {
        kind: r.kind,
        status: r.status,
        enterprise_id: &r.enterprise_id,
        province: &r.province,
        due_at: r.due_at.map(|d| d.with_timezone(&shanghai())),
        key_lost: r.form.key_lost,
    }
}

/// Loads a request the caller may see; anyone else is told it does not exist.
pub(crate) async fn visible(state: &AppState, auth: &Auth, id: &str) -> ApiResult<RequestRecord> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ekey.request.not_found",
            "未找到该申请",
            "No such request",
        )
    };
    // Ids are UUIDs; anything else cannot exist and is not worth a query.
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(not_found());
    }
    let r = state.store.request(id).await?.ok_or_else(not_found)?;
    if !auth.actor.can_see(&r.enterprise_id, &r.province) {
        return Err(not_found());
    }
    Ok(r)
}

fn audit(
    auth: &Auth,
    state: &AppState,
    action: &str,
    r: &RequestRecord,
    before: &str,
    after: &str,
) -> NewAudit {
    auth.audit(state.clock.now(), action, "request", &r.id, before, after)
}

/// Runs one action through the transition function and stores it in one transaction.
async fn act(
    state: &AppState,
    auth: &Auth,
    r: RequestRecord,
    action: Action,
    remark: Option<&str>,
    concerns: Vec<String>,
    form: Option<RequestForm>,
) -> ApiResult<RequestRecord> {
    act_as(
        state,
        auth,
        &auth.actor,
        r,
        action,
        remark,
        concerns,
        form,
        ekey_store::Batch::default(),
    )
    .await
}

/// Signs the SMS among `messages` with the agency of `province` (and its hotline) or with
/// the provider, as `role` says; other roles leave them unsigned.
async fn sign_sms_as(
    state: &AppState,
    role: Option<Role>,
    province: &str,
    messages: &mut [ekey_store::NewMessage],
) -> ApiResult<()> {
    if !messages
        .iter()
        .any(|m| m.channel == ekey_store::Channel::Sms)
    {
        return Ok(());
    }
    match role {
        Some(Role::Agency) => {
            if let Some(a) = state.store.agency(province).await? {
                crate::messages::sign_sms(messages, &a.name_zh, &a.hotline);
            }
        }
        Some(Role::Provider) => crate::messages::sign_sms(
            messages,
            &state.config.provider_name,
            &state.config.provider_hotline,
        ),
        _ => {}
    }
    Ok(())
}

/// [`act`] as `actor` (the system, when the key finished an unlock or a renewal for the
/// caller), with `extra` changes (key, certificate, renewal record) in the same transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn act_as(
    state: &AppState,
    auth: &Auth,
    actor: &ekey_domain::request::Actor,
    r: RequestRecord,
    action: Action,
    remark: Option<&str>,
    concerns: Vec<String>,
    form: Option<RequestForm>,
    extra: ekey_store::Batch,
) -> ApiResult<RequestRecord> {
    let now = state.clock.now();
    let mut concerns = concerns;
    let (present, to_replace) = if action == Action::ConfirmUpload {
        let materials = state.store.materials(&r.id).await?;
        let present: Vec<Material> = materials.iter().map(|m| m.item).collect();
        if r.status == Status::Returned {
            // A return must be answered: what it (or a later edit) asks for must carry a new
            // file, and the 确认上传 records what changed for the reviewer.
            let staged = staged_items(&materials);
            let history = state.store.history(&r.id).await?;
            let steps = return_steps(&history);
            concerns = ekey_domain::returns::answer(&steps, &staged);
            (
                present,
                ekey_domain::returns::to_replace(r.kind, &steps, &staged),
            )
        } else {
            (present, Vec::new())
        }
    } else {
        (Vec::new(), Vec::new())
    };
    let outcome = state.with_calendar(|calendar| {
        transition(
            &view(&r),
            action,
            actor,
            &Context {
                now,
                calendar,
                remark,
                materials_present: &present,
                materials_to_replace: &to_replace,
            },
        )
    })?;
    if !outcome.uncovered_years.is_empty() {
        tracing::warn!(years = ?outcome.uncovered_years, request = %r.number,
            "deadline counted without holiday data for these years (weekends only)");
    }
    // Every mail about a request links to the request's own page.
    let link = crate::receipt::request_link(&state.config.public_url(), &r.id);
    let mut outbox = for_transition(
        &r,
        action,
        outcome.to,
        outcome.remark.as_deref(),
        r.version + 1,
        &link,
        now,
    );
    if r.kind == Kind::Unlock && action == Action::ProviderApprove {
        outbox.push(unlock_code_mail(state, &r, now).await?);
    }
    // SMS are signed by who decided: the agency (with its hotline) or the provider. The
    // enterprise's own steps send no decision SMS.
    sign_sms_as(state, Some(actor.role), &r.province, &mut outbox).await?;
    if action == Action::ConfirmUpload {
        // The receipt's SMS is signed by whoever now holds the request.
        let mut receipts = receipt(state, &r, outcome.to, outcome.due_at, &link, now).await?;
        let holder = ekey_domain::request::waits_on(r.kind, outcome.to);
        sign_sms_as(state, holder, &r.province, &mut receipts).await?;
        outbox.extend(receipts);
    }
    crate::receipt::with_link(&mut outbox, &link);
    let queued = !outbox.is_empty();
    let transition = Transition {
        request_id: r.id.clone(),
        expected_version: r.version,
        action,
        from: outcome.from,
        to: outcome.to,
        due_at: outcome.due_at.map(|d| d.to_utc()),
        form,
        commit_materials: action == Action::ConfirmUpload,
        at: now,
        actor_id: auth.account.id.clone(),
        actor_role: actor.role,
        remark: outcome.remark.clone(),
        concerns,
        audit: audit(
            auth,
            state,
            &format!("request.{}", action.as_str()),
            &r,
            outcome.from.as_str(),
            outcome.to.as_str(),
        ),
        outbox,
    };
    // Completing a cancellation revokes the key's certificate in the same transaction.
    let mut batch = if r.kind == Kind::Cancellation && action == Action::ProviderApprove {
        cancellation_revocation(state, auth, &r).await?
    } else {
        extra
    };
    let revokes = !batch.revocations.is_empty();
    batch.transitions.insert(0, transition);
    let updated = state
        .store
        .apply_batch(batch)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("transition lost"))?;
    if revokes {
        state.ca.forget_crl();
    }
    if queued {
        state.outbox_wake.notify_one();
    }
    Ok(updated)
}

/// The receipt of a 确认上传: with whom the request now is and by when it is due.
async fn receipt(
    state: &AppState,
    r: &RequestRecord,
    to: Status,
    due: Option<chrono::DateTime<chrono::FixedOffset>>,
    link: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<Vec<ekey_store::NewMessage>> {
    let reviewer = if to == Status::AgencyReview {
        state
            .store
            .agency(&r.province)
            .await?
            .map(|a| a.name_zh)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "发证机构".into())
    } else {
        "电子钥匙服务商".into()
    };
    // SMS where it can be sent: the development mailbox and the log take it; over SMTP only
    // with an SMS gateway configured.
    let sms = state.config.mail_transport != crate::config::MailTransport::Smtp
        || state.config.sms_url.is_some();
    Ok(crate::receipt::messages(
        r,
        &reviewer,
        due.map(|d| d.to_utc()),
        link,
        sms,
        r.version + 1,
        now,
    ))
}

/// The mail “电子钥匙密码重置” with the unlock code for the key and challenge of an approved
/// unlock request. Refused (nothing changes) when the request has no usable challenge.
async fn unlock_code_mail(
    state: &AppState,
    r: &RequestRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<ekey_store::NewMessage> {
    let refuse = |zh: &str, en: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.unlock.no_challenge",
            format!("{zh}：请退回企业，让其插入被锁的钥匙并填写钥匙显示的挑战码"),
            format!("{en}: return it so the enterprise adds the challenge its locked key shows"),
        )
    };
    let challenge = r.form.unlock_challenge.as_deref().ok_or_else(|| {
        refuse(
            "申请中没有解锁挑战码",
            "The request has no unlock challenge",
        )
    })?;
    let bytes =
        hex::decode(challenge).map_err(|_| refuse("挑战码无法识别", "Unreadable challenge"))?;
    let login = r.login_name.clone().unwrap_or_default();
    let key = state
        .store
        .keys_by_login_name(&login)
        .await?
        .into_iter()
        .filter(|k| k.enterprise_id == r.enterprise_id && !k.state.is_final())
        .find(|k| k.token_serial.is_some())
        .ok_or_else(|| {
            refuse(
                "没有找到该登录名下可解锁的钥匙",
                "No key to unlock under this login name",
            )
        })?;
    let serial = key.token_serial.unwrap_or_default();
    let code = ekey_token::admin::unlock_response(&state.secrets.provider_master, &serial, &bytes)
        .map_err(|_| {
            refuse(
                "挑战码不是这把钥匙产生的",
                "The challenge does not come from this key",
            )
        })?;
    Ok(ekey_store::NewMessage {
        channel: ekey_store::Channel::Email,
        recipient: r.form.authorised_user.email.as_str().to_string(),
        subject: crate::messages::UNLOCK_SUBJECT.into(),
        body: crate::messages::unlock_mail_body(
            &r.form.authorised_user.name,
            &serial,
            &login,
            &r.number,
            &code,
            &format!("{}/portal/requests/{}", state.config.public_url(), r.id),
            &state.config.provider_hotline,
        ),
        dedup_key: format!("unlock-code:{}:{}", r.id, r.version + 1),
        created_at: now,
    })
}

/// 注销 completed by the provider: the enterprise's live key under the request's login name
/// is terminated and its certificate revoked — keyCompromise when the key was lost,
/// cessationOfOperation otherwise.
async fn cancellation_revocation(
    state: &AppState,
    auth: &Auth,
    r: &RequestRecord,
) -> ApiResult<ekey_store::Batch> {
    use ekey_domain::key::KeyEvent;
    let mut batch = ekey_store::Batch::default();
    let Some(login_name) = &r.login_name else {
        return Ok(batch);
    };
    let lost = r.form.key_lost;
    for k in state.store.keys_by_login_name(login_name).await? {
        if k.enterprise_id != r.enterprise_id || k.state.is_final() {
            continue;
        }
        let to = k.state.apply(if lost {
            KeyEvent::ReportLost
        } else {
            KeyEvent::Revoke
        })?;
        batch.key_changes.push(ekey_store::KeyChange {
            key_id: k.id.clone(),
            expected_version: k.version,
            to,
            shipment_id: None,
            certificate_serial: None,
        });
        if let Some(serial) = &k.certificate_serial
            && state
                .store
                .certificate(serial)
                .await?
                .is_some_and(|c| c.revoked_at.is_none() && c.der.is_some())
        {
            let reason = if lost {
                "keyCompromise"
            } else {
                "cessationOfOperation"
            };
            batch.revocations.push(ekey_store::Revocation {
                serial: serial.clone(),
                reason: reason.into(),
                at: state.clock.now(),
            });
            batch.audits.push(auth.audit(
                state.clock.now(),
                "ca.revoke",
                "certificate",
                serial,
                "",
                reason,
            ));
        }
    }
    Ok(batch)
}

/// Any change, to ask whether the request's kind may carry one at all.
fn placeholder_change() -> ekey_domain::infochange::EnterpriseChange {
    let facts = ekey_domain::infochange::EnterpriseFacts {
        name: String::new(),
        legal_representative: String::new(),
        address: String::new(),
    };
    ekey_domain::infochange::EnterpriseChange {
        before: facts.clone(),
        after: facts,
    }
}

/// Items with a file uploaded and not yet confirmed.
fn staged_items(materials: &[MaterialRecord]) -> Vec<Material> {
    materials
        .iter()
        .filter(|m| m.state == ekey_store::MaterialState::Staged)
        .map(|m| m.item)
        .collect()
}

/// The history as the return rules read it.
fn return_steps(history: &[ekey_store::HistoryEntry]) -> Vec<ekey_domain::returns::Step<'_>> {
    history
        .iter()
        .map(|h| ekey_domain::returns::Step {
            action: &h.action,
            from: h.from_status,
            concerns: &h.concerns,
        })
        .collect()
}

async fn detail(state: &AppState, auth: &Auth, r: RequestRecord) -> ApiResult<RequestOut> {
    let history = state.store.history(&r.id).await?;
    let materials = state.store.materials(&r.id).await?;
    let enterprise = state.store.enterprise(&r.enterprise_id).await?;
    let collection = state.store.collection_choice(&r.id).await?.map(Into::into);
    let lang = current_lang();
    let required = r.kind.required_materials(r.form.key_lost);
    let steps = return_steps(&history);
    let to_replace = if r.status == Status::Returned {
        ekey_domain::returns::to_replace(r.kind, &steps, &staged_items(&materials))
    } else {
        Vec::new()
    };
    let changed_since_return = ekey_domain::returns::changed_since_return(&steps);
    let enterprise_change: Vec<ChangeRowOut> = r
        .form
        .enterprise_change
        .as_ref()
        .map(|c| c.rows())
        .unwrap_or_default()
        .into_iter()
        .map(|row| ChangeRowOut {
            field: row.field.into(),
            label: ekey_domain::infochange::field_label(row.field, lang).into(),
            before: row.before,
            after: row.after,
            changed: row.changed,
        })
        .collect();
    let other_keys: Vec<OtherKeyOut> = if r.form.enterprise_change.is_some() {
        state
            .store
            .keys_of_enterprise(&r.enterprise_id)
            .await?
            .into_iter()
            .filter(|k| k.request_id.as_deref() != Some(r.id.as_str()))
            .filter(|k| k.state.counts_as_held())
            .map(|k| OtherKeyOut {
                login_name: k.login_name,
                state: k.state.as_str().into(),
                certificate_serial: k.certificate_serial,
            })
            .collect()
    } else {
        Vec::new()
    };
    let checklist = r
        .kind
        .accepted_materials()
        .into_iter()
        .map(|item| {
            let current = materials
                .iter()
                .filter(|m| m.item == item)
                .max_by_key(|m| m.id);
            MaterialOut {
                item: item.as_str().into(),
                label: lang.pick(item.name_zh(), item.name_en()).into(),
                required: required.contains(&item),
                present: current.is_some(),
                state: current.map(|m| m.state.as_str().into()),
                content_type: current.map(|m| m.content_type.clone()),
                size: current.map(|m| m.size),
                uploaded_at: current.map(|m| rfc3339(m.uploaded_at)),
                fitted: None,
                to_replace: to_replace.contains(&item),
                changed_since_return: changed_since_return.iter().any(|c| c == item.as_str()),
            }
        })
        .collect();
    Ok(RequestOut {
        collection,
        overdue: overdue(state, &r),
        due_note: due_note(state, r.due_at),
        actions: available_actions(&view(&r), &auth.actor)
            .into_iter()
            .map(|a| a.as_str().to_string())
            .collect(),
        id: r.id,
        number: r.number,
        kind: r.kind.as_str().into(),
        status: r.status.as_str().into(),
        status_label: status_label(r.status),
        login_name: r.login_name,
        due_at: r.due_at.map(rfc3339),
        created_at: rfc3339(r.created_at),
        province: r.province,
        enterprise_name: enterprise
            .as_ref()
            .map(|e| e.name.clone())
            .unwrap_or_default(),
        credit_code: enterprise.map(|e| e.credit_code).unwrap_or_default(),
        form: FormOut {
            licence_types: r
                .form
                .licence_types
                .iter()
                .map(|t| t.as_str().into())
                .collect(),
            login_name_mode: r.form.login_name_mode.as_str().into(),
            reason: r.form.reason.clone(),
            authorised_user: person_out(&r.form.authorised_user),
            key_lost: r.form.key_lost,
            unlock_challenge: r.form.unlock_challenge.clone(),
        },
        history: history
            .into_iter()
            .map(|h| HistoryOut {
                at: rfc3339(h.at),
                actor_role: h.actor_role.as_str().into(),
                action: h.action,
                status: h.to_status.as_str().into(),
                remark: h.remark,
                concerns: h.concerns,
            })
            .collect(),
        materials: checklist,
        to_replace: to_replace.iter().map(|m| m.as_str().to_string()).collect(),
        changed_since_return,
        enterprise_change,
        other_keys,
    })
}

/// The detail of a request the caller may see, as the API shows it.
pub(crate) async fn detail_by_id(state: &AppState, auth: &Auth, id: &str) -> ApiResult<RequestOut> {
    let r = visible(state, auth, id).await?;
    detail(state, auth, r).await
}

/// Create a request (in `draft`). Checks the rules: at most three keys, reasons for 增办
/// and 补办, login-name modes, one authorised user on form and confirmation letter.
#[utoipa::path(post, path = "/api/v1/requests", tag = "requests", security(("bearer" = [])),
    request_body = CreateRequestBody,
    responses((status = 201, body = CreatedOut), (status = 422, body = ErrorBody),
              (status = 409, description = "login name taken", body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<CreateRequestBody>,
) -> ApiResult<(StatusCode, Json<CreatedOut>)> {
    auth.require(&[Role::Enterprise])?;
    let enterprise_id = auth
        .account
        .enterprise_id
        .clone()
        .ok_or_else(ApiError::forbidden_role)?;
    let enterprise = state
        .store
        .enterprise(&enterprise_id)
        .await?
        .ok_or_else(|| ApiError::not_found("ekey.enterprise.not_found"))?;
    let kind = Kind::parse(body.kind.trim())?;
    let mode = match body.login_name.mode.trim() {
        "allocate" => LoginNameMode::Allocate,
        "existing" => LoginNameMode::Existing,
        "original" => LoginNameMode::Original,
        other => {
            return Err(DomainError::LoginNameMode {
                kind,
                mode: other.into(),
            }
            .into());
        }
    };
    let value = body
        .login_name
        .value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let form = RequestForm {
        licence_types: licence_types(&body.licence_types)?,
        login_name_mode: mode,
        login_name: value.clone(),
        reason: body
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string),
        authorised_user: person(&body.authorised_user, state.today())?,
        confirmation_letter_user: body
            .confirmation_letter_user
            .as_ref()
            .map(|p| person(p, state.today()))
            .transpose()?,
        key_lost: body.key_lost.unwrap_or(false),
        unlock_challenge: challenge(kind, body.unlock_challenge.as_deref())?,
        enterprise_change: body
            .enterprise_change
            .as_ref()
            .map(|after| {
                ekey_domain::infochange::EnterpriseChange::new(
                    ekey_domain::infochange::EnterpriseFacts {
                        name: enterprise.name.clone(),
                        legal_representative: enterprise.legal_representative.clone(),
                        address: enterprise.address.clone(),
                    },
                    &ekey_domain::infochange::EnterpriseFacts {
                        name: after.name.clone(),
                        legal_representative: after.legal_representative.clone(),
                        address: after.address.clone(),
                    },
                )
            })
            .transpose()?,
    };
    ekey_domain::infochange::check_kind(kind, form.enterprise_change.as_ref())?;
    // The form's own rules first, then the 补办's lost-or-damaged (the store checks the rest).
    ekey_domain::request::validate_form(kind, &form)?;
    ekey_domain::keycap::key_condition(kind, body.key_lost)?;
    let claim = match (mode, value) {
        (LoginNameMode::Allocate, None) => LoginNameClaim::Allocate,
        (LoginNameMode::Allocate, Some(v)) => LoginNameClaim::Reserved(v),
        (LoginNameMode::Existing, Some(v)) => LoginNameClaim::Existing(v),
        (LoginNameMode::Original, Some(v)) => LoginNameClaim::Original(v),
        (_, None) => return Err(DomainError::LoginNameRequired.into()),
    };
    let now = state.clock.now();
    let id = uuid::Uuid::now_v7().to_string();
    let r = state
        .store
        .create_request(NewRequest {
            id: id.clone(),
            kind,
            enterprise_id,
            province: enterprise.province,
            form,
            login_name: claim,
            at: now,
            actor_id: auth.account.id.clone(),
            audit: NewAudit {
                at: now,
                actor_id: auth.account.id.clone(),
                actor_role: auth.account.role.as_str().into(),
                address: auth.address.clone(),
                action: "request.create".into(),
                ..Default::default()
            },
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedOut {
            id: r.id,
            number: r.number,
            status: r.status.as_str().into(),
        }),
    ))
}

/// Requests the caller may see: an enterprise its own, an agency its province's, the
/// provider all; soonest due first.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", security(("bearer" = [])),
    params(ListQuery), responses((status = 200, body = Vec<RequestSummary>),
        (status = 400, description = "a search longer than 100 characters", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<RequestSummary>>> {
    let mut statuses = Vec::new();
    for s in q
        .status
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        statuses.push(Status::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ekey.request.unknown_status",
                format!("未知的状态“{s}”"),
                format!("Unknown status \"{s}\""),
            )
        })?);
    }
    // A search too long to match anything is refused: dropping it would answer every
    // request instead of the few asked for.
    if q.q
        .as_deref()
        .is_some_and(|v| v.trim().chars().count() > MAX_SEARCH_CHARS)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ekey.search.too_long",
            format!("搜索内容过长：最多 {MAX_SEARCH_CHARS} 个字符"),
            format!("The search is too long: at most {MAX_SEARCH_CHARS} characters"),
        ));
    }
    let mut filter = RequestFilter {
        statuses,
        query: q.q.clone(),
        limit: q.limit.unwrap_or(100),
        offset: q.offset.unwrap_or(0),
        ..Default::default()
    };
    match auth.account.role {
        Role::Enterprise => {
            filter.enterprise_id = Some(auth.account.enterprise_id.clone().unwrap_or_default())
        }
        Role::Agency => filter.province = Some(auth.account.province.clone().unwrap_or_default()),
        Role::Provider | Role::Admin | Role::System => {}
    }
    let rows = state.store.list_requests(&filter).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| RequestSummary {
                overdue: overdue(&state, &r),
                due_note: due_note(&state, r.due_at),
                id: r.id,
                number: r.number,
                kind: r.kind.as_str().into(),
                status: r.status.as_str().into(),
                status_label: status_label(r.status),
                province: r.province,
                due_at: r.due_at.map(rfc3339),
                login_name: r.login_name,
                updated_at: rfc3339(r.updated_at),
            })
            .collect(),
    ))
}

/// A request with its history, checklist, deadline and the caller's possible actions.
#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RequestOut), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<RequestOut>> {
    let r = visible(&state, &auth, &id).await?;
    Ok(Json(detail(&state, &auth, r).await?))
}

/// Change the form of a draft or returned request.
#[utoipa::path(patch, path = "/api/v1/requests/{id}", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = EditRequestBody,
    responses((status = 200, body = RequestOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EditRequestBody>,
) -> ApiResult<Json<RequestOut>> {
    let r = visible(&state, &auth, &id).await?;
    let mut form = r.form.clone();
    if let Some(t) = &body.licence_types {
        form.licence_types = licence_types(t)?;
    }
    if let Some(reason) = &body.reason {
        let reason = reason.trim();
        form.reason = (!reason.is_empty()).then(|| reason.to_string());
    }
    if let Some(p) = &body.authorised_user {
        form.authorised_user = person(p, state.today())?;
        form.confirmation_letter_user = None;
    }
    if let Some(lost) = body.key_lost {
        form.key_lost = lost;
    }
    if let Some(c) = &body.unlock_challenge {
        form.unlock_challenge = challenge(r.kind, Some(c))?;
    }
    if let Some(after) = &body.enterprise_change {
        // The data before stays what eKey held when the request was made.
        ekey_domain::infochange::check_kind(r.kind, Some(&placeholder_change()))?;
        let before = match &r.form.enterprise_change {
            Some(c) => c.before.clone(),
            None => {
                let e = state
                    .store
                    .enterprise(&r.enterprise_id)
                    .await?
                    .ok_or_else(|| ApiError::not_found("ekey.enterprise.not_found"))?;
                ekey_domain::infochange::EnterpriseFacts {
                    name: e.name,
                    legal_representative: e.legal_representative,
                    address: e.address,
                }
            }
        };
        form.enterprise_change = Some(ekey_domain::infochange::EnterpriseChange::new(
            before,
            &ekey_domain::infochange::EnterpriseFacts {
                name: after.name.clone(),
                legal_representative: after.legal_representative.clone(),
                address: after.address.clone(),
            },
        )?);
    }
    // The same form rules as at creation; the key count was checked then.
    ekey_domain::request::validate_form(
        r.kind,
        &RequestForm {
            login_name: r.login_name.clone().or(form.login_name.clone()),
            ..form.clone()
        },
    )?;
    // The history records which fields changed: after a return, the signed forms that
    // print them must be uploaded again (and a scan of them staged before is dropped).
    let changed = ekey_domain::returns::changed_fields(&r.form, &form);
    let updated = act(&state, &auth, r, Action::Edit, None, changed, Some(form)).await?;
    Ok(Json(detail(&state, &auth, updated).await?))
}

macro_rules! simple_action {
    ($(#[$m:meta])* $name:ident, $path:literal, $action:expr) => {
        $(#[$m])*
        #[utoipa::path(post, path = $path, tag = "requests", security(("bearer" = [])),
            params(("id" = String, Path)),
            responses((status = 200, body = RequestOut), (status = 404, body = ErrorBody),
                      (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
        pub async fn $name(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> ApiResult<Json<RequestOut>> {
            let r = visible(&state, &auth, &id).await?;
            let updated = act(&state, &auth, r, $action, None, Vec::new(), None).await?;
            Ok(Json(detail(&state, &auth, updated).await?))
        }
    };
}

macro_rules! checked_action {
    ($(#[$m:meta])* $name:ident, $path:literal, $action:expr) => {
        $(#[$m])*
        #[utoipa::path(post, path = $path, tag = "requests", security(("bearer" = [])),
            params(("id" = String, Path)),
            responses((status = 200, body = RequestOut), (status = 404, body = ErrorBody),
                      (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
        pub async fn $name(State(state): State<AppState>, auth: Auth, Path(id): Path<String>) -> ApiResult<Json<RequestOut>> {
            let r = visible(&state, &auth, &id).await?;
            // An unlock request goes nowhere without the locked key's challenge.
            ekey_domain::request::check_submittable(r.kind, &r.form)?;
            let updated = act(&state, &auth, r, $action, None, Vec::new(), None).await?;
            Ok(Json(detail(&state, &auth, updated).await?))
        }
    };
}

checked_action!(
    /// 确认提交: the form is final; the documents can be downloaded and printed. An unlock
    /// request needs the key's challenge first (`ekey.unlock.challenge_missing`).
    submit, "/api/v1/requests/{id}/submit", Action::Submit);
checked_action!(
    /// 确认上传: commits the uploaded set and sends the request to review; only when every
    /// required item is present (and, for an unlock, the key's challenge).
    confirm_upload, "/api/v1/requests/{id}/confirm-upload", Action::ConfirmUpload);
simple_action!(
    /// Withdraw the request before review finished.
    withdraw, "/api/v1/requests/{id}/withdraw", Action::Withdraw);

/// What the agency received for a cancellation.
#[derive(Deserialize, ToSchema)]
pub struct ReceiveBody {
    /// The stamped cancellation form (注销 ticked).
    pub form_received: bool,
    /// The key itself.
    #[serde(default)]
    pub key_received: bool,
    /// The written statement of loss (when the key is lost).
    #[serde(default)]
    pub loss_statement_received: bool,
}

/// Cancellation intake (agency): records the form and the key — or the loss statement —
/// received at the window; the 2-working-day 验核 clock starts.
#[utoipa::path(post, path = "/api/v1/requests/{id}/receive", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ReceiveBody,
    responses((status = 200, body = RequestOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn receive(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReceiveBody>,
) -> ApiResult<Json<RequestOut>> {
    auth.require(&[Role::Agency])?;
    let r = visible(&state, &auth, &id).await?;
    let missing = if !body.form_received {
        Some(("盖章的注销申请表", "the stamped cancellation form"))
    } else if r.form.key_lost && !body.loss_statement_received {
        Some(("钥匙遗失的书面说明", "the written statement of loss"))
    } else if !r.form.key_lost && !body.key_received {
        Some(("电子钥匙本身", "the key itself"))
    } else {
        None
    };
    if let Some((zh, en)) = missing {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.cancellation.incomplete",
            format!("注销材料不全：尚未收到{zh}"),
            format!("Cancellation papers incomplete: {en} not received"),
        ));
    }
    let updated = act(&state, &auth, r, Action::Receive, None, Vec::new(), None).await?;
    Ok(Json(detail(&state, &auth, updated).await?))
}

/// Review decision by the reviewer of the current stage: the agency in `agency_review`
/// (验核), the provider in `provider_review` (复核).
#[utoipa::path(post, path = "/api/v1/requests/{id}/decision", tag = "requests", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = DecisionBody,
    responses((status = 200, body = RequestOut), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn decision(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> ApiResult<Json<RequestOut>> {
    auth.require(&[Role::Agency, Role::Provider])?;
    let r = visible(&state, &auth, &id).await?;
    // The action follows from who decides, not from the status read a moment ago: a clerk
    // whose click arrives after a colleague's gets "no longer in 验核" (409), not a
    // puzzling "only the provider may".
    let action = match (auth.account.role, body.approve, body.refuse) {
        (Role::Agency, true, _) => Action::AgencyApprove,
        (Role::Agency, false, false) => Action::AgencyReturn,
        (Role::Agency, false, true) => Action::AgencyRefuse,
        (_, true, _) => Action::ProviderApprove,
        (_, false, _) => Action::ProviderReturn,
    };
    let concerns = concerns(r.kind, &body.concerns)?;
    let updated = act(
        &state,
        &auth,
        r,
        action,
        body.remark.as_deref(),
        concerns,
        None,
    )
    .await?;
    // Crash point: the decision committed (history, audit, mail), no answer sent yet.
    ekey_token::fault::point("server.decision.after_commit");
    Ok(Json(detail(&state, &auth, updated).await?))
}

fn material_item(item: &str) -> Result<Material, DomainError> {
    Material::parse(item)
}

/// Statuses in which `role` may upload files for a request of `kind`.
fn upload_statuses(kind: Kind, role: Role) -> Vec<Status> {
    match (kind, role) {
        (Kind::Cancellation, Role::Enterprise) => {
            vec![Status::Draft, Status::AwaitingHandover, Status::Returned]
        }
        (Kind::Cancellation, Role::Agency) => vec![Status::AwaitingHandover, Status::AgencyReview],
        (_, Role::Enterprise) => vec![Status::AwaitingMaterials, Status::Returned],
        _ => Vec::new(),
    }
}

/// Upload one scan into the staging area. The body is the file; its type is judged by
/// content (JPEG, PNG or PDF), never by name or header. Limit 1 MB per file, 200 KB for
/// unlock scans; with `?fit=1` an image over the limit is downscaled to fit instead.
/// `X-File-Name` (percent-encoded) may carry the original name for display.
#[utoipa::path(put, path = "/api/v1/requests/{id}/materials/{item}", tag = "materials", security(("bearer" = [])),
    params(("id" = String, Path), ("item" = String, Path, description = "application_form, business_licence, …"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = MaterialOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload_material(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, item)): Path<(String, String)>,
    ApiQuery(options): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<MaterialOut>)> {
    let r = visible(&state, &auth, &id).await?;
    let item = material_item(&item)?;
    if !r.kind.accepted_materials().contains(&item) {
        return Err(DomainError::MaterialNotInChecklist { kind: r.kind, item }.into());
    }
    let allowed = upload_statuses(r.kind, auth.account.role);
    if allowed.is_empty() {
        return Err(ApiError::forbidden_role());
    }
    if !allowed.contains(&r.status) {
        return Err(DomainError::MaterialsLocked(r.status).into());
    }
    let limit = r.kind.upload_limit();
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ekey.material.too_large",
                format!(
                    "文件过大，上限 {}",
                    upload::human_size(limit, ekey_domain::Lang::Zh)
                ),
                format!(
                    "File too large; the limit is {}",
                    upload::human_size(limit, ekey_domain::Lang::En)
                ),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "ekey.input.malformed",
                "上传的文件读取失败，请重试",
                format!("Could not read the upload: {}", e.body_text()),
            )
        }
    })?;
    let kind = upload::detect(&bytes)
        .map_err(DomainError::from)
        .map_err(|e| {
            let mut api = ApiError::from(e);
            if api.code == "ekey.material.unsupported_type" {
                api.status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            }
            api
        })?;
    let mut fitted = None;
    let (bytes, kind) = match upload::SizeLimit::for_kind(r.kind).check(kind, bytes.len() as u64) {
        Ok(()) => (bytes, kind),
        Err(_) if kind.is_image() && options.fit.as_deref() == Some("1") => {
            let input = bytes.clone();
            let out = super::scans::media_turn(move || ekey_media::fit(&input, limit)).await?;
            fitted = Some(FittedOut {
                before: out.before,
                after: out.after,
            });
            let fitted_bytes = Bytes::from(out.bytes);
            let kind = upload::detect(&fitted_bytes).map_err(DomainError::from)?;
            (fitted_bytes, kind)
        }
        Err(e) => {
            let mut api = ApiError::from(DomainError::from(e));
            if api.code == "ekey.material.too_large" {
                api.status = StatusCode::PAYLOAD_TOO_LARGE;
                if kind.is_image() {
                    api.zh.push_str("；图片可自动压缩后上传");
                    api.en.push_str("; an image can be downscaled to fit");
                }
            }
            return Err(api);
        }
    };
    // Every image, fitted or not: a small file can announce a giant that would take a
    // reviewer's browser (or the preview) gigabytes.
    if kind.is_image() {
        super::scans::check_pixels(&bytes)?;
    }
    let file_name = headers
        .get("x-file-name")
        .and_then(|v| v.to_str().ok())
        // encodeURIComponent never writes `+`, so decoding it as a space changes nothing.
        .map(crate::web::percent_decode)
        .map(|v| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        });
    let sha = hex::encode(Sha256::digest(&bytes));
    let blob_key = format!(
        "materials/{}/{}/{}.{}",
        r.id,
        item.as_str(),
        uuid::Uuid::now_v7(),
        kind.extension()
    );
    state.blobs.put(&blob_key, &bytes).await?;
    let now = state.clock.now();
    let staged = state
        .store
        .stage_material(
            NewMaterial {
                request_id: r.id.clone(),
                allowed,
                item,
                blob_key: blob_key.clone(),
                content_type: kind.mime().into(),
                size: bytes.len() as i64,
                sha256: sha.clone(),
                file_name,
                uploaded_at: now,
                uploaded_by: auth.account.id.clone(),
            },
            audit(
                &auth,
                &state,
                "material.upload",
                &r,
                "",
                &format!("{} {} {}", item.as_str(), kind.mime(), sha),
            ),
        )
        .await;
    let m = match staged {
        Ok(m) => m,
        Err(e) => {
            // The metadata was not recorded (e.g. confirm-upload won the race): the file is
            // nobody's, remove it rather than leave it behind.
            if let Err(cleanup) = state.blobs.delete(&blob_key).await {
                tracing::warn!(error = %cleanup, key = %blob_key, "removing an unrecorded upload");
            }
            return Err(e.into());
        }
    };
    let mut out = material_out(&r, &m);
    out.fitted = fitted;
    Ok((StatusCode::CREATED, Json(out)))
}

fn material_out(r: &RequestRecord, m: &MaterialRecord) -> MaterialOut {
    let lang = current_lang();
    MaterialOut {
        item: m.item.as_str().into(),
        label: lang.pick(m.item.name_zh(), m.item.name_en()).into(),
        required: r.kind.required_materials(r.form.key_lost).contains(&m.item),
        present: true,
        state: Some(m.state.as_str().into()),
        content_type: Some(m.content_type.clone()),
        size: Some(m.size),
        uploaded_at: Some(rfc3339(m.uploaded_at)),
        fitted: None,
        to_replace: false,
        changed_since_return: false,
    }
}

/// The current file of one item (staged or committed). Downloads are audited.
#[utoipa::path(get, path = "/api/v1/requests/{id}/materials/{item}", tag = "materials", security(("bearer" = [])),
    params(("id" = String, Path), ("item" = String, Path), DownloadQuery),
    responses((status = 200, description = "the file, with the type judged from its content at upload; \
               `Content-Disposition: attachment` unless `inline=true` (the pages' preview)",
               content(("image/jpeg"), ("image/png"), ("application/pdf"))),
              (status = 404, body = ErrorBody)))]
pub async fn download_material(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, item)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<DownloadQuery>,
) -> ApiResult<Response> {
    let r = visible(&state, &auth, &id).await?;
    let item = material_item(&item)?;
    let m = state
        .store
        .materials(&r.id)
        .await?
        .into_iter()
        .filter(|m| m.item == item)
        .max_by_key(|m| m.id)
        .ok_or_else(|| ApiError::not_found("ekey.material.not_found"))?;
    let bytes = state.blobs.get(&m.blob_key).await?;
    state
        .store
        .append_audit(audit(
            &auth,
            &state,
            "material.download",
            &r,
            "",
            &format!("{} {}", item.as_str(), m.sha256),
        ))
        .await?;
    // The staff's preview of a picture: made here, at a safe size, as a JPEG.
    if query.preview && matches!(m.content_type.as_str(), "image/jpeg" | "image/png") {
        let jpeg = super::scans::media_turn(move || ekey_media::preview(&bytes)).await?;
        return Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("inline; filename=\"{}-preview.jpg\"", item.as_str()),
                ),
                (header::CACHE_CONTROL, "private, no-store".to_string()),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; \
                     frame-ancestors 'self'"
                        .to_string(),
                ),
            ],
            jpeg,
        )
            .into_response());
    }
    // A download by default. Inline only for the pages' preview, and only for the three types
    // the content was judged to be at upload (never markup); the answer's own CSP lets it
    // run nothing and be framed only by our pages.
    let previewable = matches!(
        m.content_type.as_str(),
        "image/jpeg" | "image/png" | "application/pdf"
    );
    let disposition = if (query.inline || query.preview) && previewable {
        "inline"
    } else {
        "attachment"
    };
    Ok((
        [
            (header::CONTENT_TYPE, m.content_type.clone()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "{disposition}; filename=\"{}.{}\"",
                    item.as_str(),
                    m.blob_key.rsplit('.').next().unwrap_or("bin")
                ),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
            (
                header::CONTENT_SECURITY_POLICY,
                if m.content_type == "application/pdf" {
                    // The browser's PDF viewer must still work in the console's frame.
                    "frame-ancestors 'self'"
                } else {
                    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; \
                     frame-ancestors 'self'"
                }
                .to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// How a material is sent.
#[derive(Deserialize, utoipa::IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// `true`: shown in the browser (a scan's preview) instead of downloaded.
    #[serde(default)]
    pub inline: bool,
    /// `true`: for a picture, a JPEG the server made of it at a safe size (long side at
    /// most 1600 pixels), shown in the browser; a PDF is sent as with `inline`.
    #[serde(default)]
    pub preview: bool,
}

/// The printable documents of a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DocKind {
    ApplicationForm,
    ConfirmationLetter,
    UnlockForm,
    CancellationForm,
    /// ⑤ 授权委托书
    PowerOfAttorney,
    /// ⑥ 数字证书用户协议书
    UserAgreement,
    /// 免责声明 for free mailing
    MailingDisclaimer,
    /// 单位介绍信 for window pickup
    IntroductionLetter,
}

impl DocKind {
    fn stem(self) -> &'static str {
        match self {
            DocKind::ApplicationForm => "application-form",
            DocKind::ConfirmationLetter => "confirmation-letter",
            DocKind::UnlockForm => "unlock-form",
            DocKind::CancellationForm => "cancellation-form",
            DocKind::PowerOfAttorney => "power-of-attorney",
            DocKind::UserAgreement => "user-agreement",
            DocKind::MailingDisclaimer => "mailing-disclaimer",
            DocKind::IntroductionLetter => "introduction-letter",
        }
    }

    fn file(self) -> String {
        format!("{}.pdf", self.stem())
    }

    fn applies_to(self, kind: Kind) -> bool {
        match self {
            DocKind::ApplicationForm | DocKind::ConfirmationLetter => {
                !matches!(kind, Kind::Unlock | Kind::Cancellation)
            }
            DocKind::UnlockForm => kind == Kind::Unlock,
            DocKind::CancellationForm => kind == Kind::Cancellation,
            DocKind::PowerOfAttorney => kind
                .required_materials(false)
                .contains(&Material::PowerOfAttorney),
            DocKind::UserAgreement => kind
                .required_materials(false)
                .contains(&Material::UserAgreement),
            DocKind::MailingDisclaimer | DocKind::IntroductionLetter => kind.produces_key(),
        }
    }
}

fn doc_error(e: ekey_docs::DocError) -> ApiError {
    tracing::error!(error = %e, "making a document");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        e.code(),
        e.message(ekey_domain::Lang::Zh),
        e.message(ekey_domain::Lang::En),
    )
}

/// A PDF answer; `inline` opens in the browser's viewer, the name keeps the number.
fn pdf_response(bytes: Vec<u8>, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
        bytes,
    )
        .into_response()
}

async fn document(state: AppState, auth: Auth, id: String, which: DocKind) -> ApiResult<Response> {
    let r = visible(&state, &auth, &id).await?;
    if !which.applies_to(r.kind) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ekey.document.not_for_kind",
            format!("{}申请没有这份文件", r.kind.name_zh()),
            format!("A {} request has no such document", r.kind.name_en()),
        ));
    }
    if r.status == Status::Draft {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ekey.document.not_final",
            "请先“确认提交”申请表，再下载打印",
            "Submit the form first, then download it for printing",
        ));
    }
    let enterprise = state
        .store
        .enterprise(&r.enterprise_id)
        .await?
        .ok_or_else(|| ApiError::not_found("ekey.enterprise.not_found"))?;
    let agency = state.store.agency(&r.province).await?;
    let desk_agency = agency.clone();
    let key_serial = match (&r.login_name, r.kind.targets_existing_key()) {
        (Some(name), true) => state
            .store
            .keys_by_login_name(name)
            .await?
            .into_iter()
            .filter(|k| k.enterprise_id == r.enterprise_id)
            .filter_map(|k| k.token_serial)
            .next_back(),
        _ => None,
    };
    let a = &r.form.authorised_user;
    // 重新申领（信息变更）: the forms print the data of the new licence.
    let (enterprise_name, address, legal_representative) = match &r.form.enterprise_change {
        Some(c) => (
            c.after.name.clone(),
            c.after.address.clone(),
            c.after.legal_representative.clone(),
        ),
        None => (
            enterprise.name,
            enterprise.address,
            enterprise.legal_representative,
        ),
    };
    let doc = ekey_docs::RequestDoc {
        number: r.number.clone(),
        kind: r.kind,
        enterprise_name,
        credit_code: enterprise.credit_code,
        address,
        legal_representative,
        province_name: ekey_domain::province::by_code(&r.province)
            .map(|p| p.name_zh.to_string())
            .unwrap_or_default(),
        agency_name: agency.map(|a| a.name_zh).unwrap_or_default(),
        licence_types: r.form.licence_types.clone(),
        login_name: r.login_name.clone(),
        reason: r.form.reason.clone(),
        authorised_user: ekey_docs::Person {
            name: a.name.clone(),
            id_number: a.id_number.as_str().into(),
            mobile: a.mobile.as_str().into(),
            email: a.email.as_str().into(),
        },
        key_serial,
        key_lost: r.form.key_lost,
        date: state.clock.now().with_timezone(&shanghai()).date_naive(),
        provider_name: state.config.provider_name.clone(),
    };
    let choice = match which {
        DocKind::MailingDisclaimer => state.store.collection_choice(&r.id).await?,
        _ => None,
    };
    let (desk, mailing) =
        crate::papers::desk_and_mailing(desk_agency.as_ref(), &doc, choice.as_ref());
    let agreement = state.config.provider_agreement.clone();
    // What the document prints beyond the request is part of its name too.
    let extra = match which {
        DocKind::UserAgreement => Some(agreement.clone().unwrap_or_default()),
        DocKind::MailingDisclaimer => Some(format!("{desk:?}{mailing:?}")),
        DocKind::IntroductionLetter => Some(format!("{desk:?}")),
        _ => None,
    };
    // Made once, then served from the blob store (see crate::documents).
    let key = crate::documents::request_doc_key(
        &r.id,
        &crate::papers::stem(which.stem(), extra.as_deref()),
        &doc,
    );
    let make = async {
        let fonts = state.fonts().await.map_err(doc_error)?;
        tokio::task::spawn_blocking(move || match which {
            DocKind::ApplicationForm => ekey_docs::application_form(&fonts, &doc),
            DocKind::ConfirmationLetter => ekey_docs::confirmation_letter(&fonts, &doc),
            DocKind::UnlockForm => ekey_docs::unlock_form(&fonts, &doc),
            DocKind::CancellationForm => ekey_docs::cancellation_form(&fonts, Some(&doc)),
            DocKind::PowerOfAttorney => ekey_docs::power_of_attorney(&fonts, &doc),
            DocKind::UserAgreement => ekey_docs::user_agreement(&fonts, &doc, agreement.as_deref()),
            DocKind::MailingDisclaimer => {
                ekey_docs::mailing_disclaimer(&fonts, &doc, &mailing, &desk)
            }
            DocKind::IntroductionLetter => ekey_docs::introduction_letter(&fonts, &doc, &desk),
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(doc_error)
    };
    let bytes = crate::documents::kept(state.blobs.as_ref(), &key, make).await?;
    // The documents carry personal data (ID number, mobile): downloads are audited.
    state
        .store
        .append_audit(audit(
            &auth,
            &state,
            "document.download",
            &r,
            "",
            &which.file(),
        ))
        .await?;
    Ok(pdf_response(
        bytes,
        &format!("{}-{}", r.number, which.file()),
    ))
}

/// The application form as an A4 PDF (after 确认提交).
#[utoipa::path(get, path = "/api/v1/requests/{id}/documents/application-form.pdf", tag = "documents",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, content_type = "application/pdf"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn application_form(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    document(state, auth, id, DocKind::ApplicationForm).await
}

/// The e-seal confirmation letter as an A4 PDF (after 确认提交).
#[utoipa::path(get, path = "/api/v1/requests/{id}/documents/confirmation-letter.pdf", tag = "documents",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, content_type = "application/pdf"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn confirmation_letter(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    document(state, auth, id, DocKind::ConfirmationLetter).await
}

/// ⑤ 授权委托书 as an A4 PDF, filled in (after 确认提交).
#[utoipa::path(get, path = "/api/v1/requests/{id}/documents/power-of-attorney.pdf", tag = "documents",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, content_type = "application/pdf"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn power_of_attorney(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    document(state, auth, id, DocKind::PowerOfAttorney).await
}

/// ⑥ 数字证书用户协议书 (the configured provider and text) as an A4 PDF (after 确认提交).
#[utoipa::path(get, path = "/api/v1/requests/{id}/documents/user-agreement.pdf", tag = "documents",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, content_type = "application/pdf"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn user_agreement(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    document(state, auth, id, DocKind::UserAgreement).await
}

/// 免责声明 for free mailing as an A4 PDF: the chosen recipient, else the authorised user at
/// the registered address (after 确认提交).
#[utoipa::path(get, path = "/api/v1/requests/{id}/documents/mailing-disclaimer.pdf", tag = "documents",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, content_type = "application/pdf"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn mailing_disclaimer(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    document(state, auth, id, DocKind::MailingDisclaimer).await
}

/// 单位介绍信 for collecting the key at the agency's window, as an A4 PDF (after 确认提交).
#[utoipa::path(get, path = "/api/v1/requests/{id}/documents/introduction-letter.pdf", tag = "documents",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, content_type = "application/pdf"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn introduction_letter(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    document(state, auth, id, DocKind::IntroductionLetter).await
}

/// The unlock form as an A4 PDF (unlock requests, after 确认提交).
#[utoipa::path(get, path = "/api/v1/requests/{id}/documents/unlock-form.pdf", tag = "documents",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, content_type = "application/pdf"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn unlock_form(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    document(state, auth, id, DocKind::UnlockForm).await
}

/// The cancellation form (注销 ticked) as an A4 PDF, filled in (after 确认提交).
#[utoipa::path(get, path = "/api/v1/requests/{id}/documents/cancellation-form.pdf", tag = "documents",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, content_type = "application/pdf"), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn cancellation_form(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    document(state, auth, id, DocKind::CancellationForm).await
}

/// The blank cancellation form (注销 ticked, nothing filled in), for printing without an
/// account. No login.
#[utoipa::path(get, path = "/api/v1/documents/cancellation-form.pdf", tag = "documents",
    responses((status = 200, content_type = "application/pdf")))]
pub async fn blank_cancellation_form(State(state): State<AppState>) -> ApiResult<Response> {
    let fonts = state.fonts().await.map_err(doc_error)?;
    let bytes = tokio::task::spawn_blocking(move || ekey_docs::cancellation_form(&fonts, None))
        .await
        .map_err(ApiError::internal)?
        .map_err(doc_error)?;
    Ok(pdf_response(bytes, "cancellation-form-blank.pdf"))
}

//! The administrator's API, first part: the outbox (counts, dead letters, retry) and which
//! years the holiday calendar covers.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ekey_domain::request::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::messages::rfc3339;
use crate::state::AppState;

/// A message given up after too many failures.
#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    /// Outbox id.
    pub id: i64,
    /// `email` or `sms`.
    pub channel: String,
    /// Address or mobile.
    pub recipient: String,
    /// Subject (empty for SMS).
    pub subject: String,
    /// Attempts made.
    pub attempts: i64,
    /// Queued at (RFC 3339).
    pub created_at: String,
    /// The last transport error.
    pub last_error: String,
}

/// The outbox at a glance.
#[derive(Serialize, ToSchema)]
pub struct OutboxOut {
    /// Waiting or being retried.
    pub pending: i64,
    /// Delivered.
    pub sent: i64,
    /// Given up.
    pub dead: i64,
    /// The latest dead letters (at most 200).
    pub dead_letters: Vec<DeadLetter>,
}

/// Outbox status and dead letters (administrator).
#[utoipa::path(get, path = "/api/v1/admin/outbox", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = OutboxOut), (status = 403, body = ErrorBody)))]
pub async fn outbox(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<OutboxOut>> {
    auth.require(&[Role::Admin])?;
    let counts = state.store.outbox_counts().await?;
    let dead = state.store.outbox_dead(200).await?;
    Ok(Json(OutboxOut {
        pending: counts.pending,
        sent: counts.sent,
        dead: counts.dead,
        dead_letters: dead
            .into_iter()
            .map(|(m, error)| DeadLetter {
                id: m.id,
                channel: m.channel.as_str().into(),
                recipient: m.recipient,
                subject: m.subject,
                attempts: m.attempts,
                created_at: rfc3339(m.created_at),
                last_error: error,
            })
            .collect(),
    }))
}

/// Put a dead letter back in the queue (administrator); it is sent at once.
#[utoipa::path(post, path = "/api/v1/admin/outbox/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    auth.require(&[Role::Admin])?;
    let now = state.clock.now();
    let audit = auth.audit(
        now,
        "outbox.retry",
        "outbox",
        &id.to_string(),
        "dead",
        "pending",
    );
    if state.store.outbox_retry(id, now, audit).await? {
        state.outbox_wake.notify_one();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "ekey.outbox.not_dead",
            "这条消息不在失败列表中（可能已重发或已送达）",
            "This message is not a dead letter (already retried or delivered)",
        ))
    }
}

/// An agency's collection details.
#[derive(Deserialize, ToSchema)]
pub struct AgencyBody {
    /// Collection address.
    pub address: String,
    /// Window.
    pub window: String,
    /// Opening hours.
    pub hours: String,
    /// Hotline.
    pub hotline: String,
}

fn text(v: &str, field: &'static str) -> ApiResult<String> {
    Ok(super::required_text(v, field, 200)?)
}

fn optional_text(v: &str, field: &'static str) -> ApiResult<String> {
    if v.trim().is_empty() {
        Ok(String::new())
    } else {
        text(v, field)
    }
}

/// Change an agency's collection address, window, hours and hotline (administrator).
#[utoipa::path(put, path = "/api/v1/agencies/{province}", tag = "admin", security(("bearer" = [])),
    params(("province" = String, Path)), request_body = AgencyBody,
    responses((status = 200, body = super::public::AgencyOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_agency(
    State(state): State<AppState>,
    auth: Auth,
    Path(province): Path<String>,
    ApiJson(body): ApiJson<AgencyBody>,
) -> ApiResult<Json<super::public::AgencyOut>> {
    auth.require(&[Role::Admin])?;
    let current = state
        .store
        .agency(&province)
        .await?
        .ok_or_else(|| ApiError::not_found("ekey.agency.not_found"))?;
    let updated = ekey_store::Agency {
        address: text(&body.address, "address")?,
        // Only the address is required: a window, hours or hotline not yet published
        // stay empty rather than invented.
        window: optional_text(&body.window, "window")?,
        hours: optional_text(&body.hours, "hours")?,
        hotline: optional_text(&body.hotline, "hotline")?,
        ..current.clone()
    };
    let audit = auth.audit(
        state.clock.now(),
        "agency.update",
        "agency",
        &province,
        &format!("{} {}", current.address, current.window),
        &format!("{} {}", updated.address, updated.window),
    );
    let a = state.store.update_agency(updated, audit).await?;
    let lang = crate::error::current_lang();
    Ok(Json(super::public::AgencyOut {
        province: a.province,
        name: lang.pick(&a.name_zh, &a.name_en).into(),
        address: a.address,
        window: a.window,
        hours: a.hours,
        hotline: a.hotline,
    }))
}

/// Load the agencies file (administrator): every agency and its published collection
/// details as CSV (`ekey_domain::agency_file`). The whole file is checked first; a single bad
/// line refuses it with every problem and its line number, and nothing changes. Loaded in
/// one transaction with one audit record.
#[utoipa::path(put, path = "/api/v1/admin/agencies", tag = "admin", security(("bearer" = [])),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = Vec<super::public::AgencyOut>), (status = 422, body = ErrorBody)))]
pub async fn load_agencies(
    State(state): State<AppState>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<Json<Vec<super::public::AgencyOut>>> {
    auth.require(&[Role::Admin])?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.agency.file",
            "发证机构文件应为 UTF-8 编码的 CSV（在表格软件中另存为“CSV UTF-8”）",
            "The agencies file must be UTF-8 CSV (save as \"CSV UTF-8\" in the spreadsheet)",
        )
    })?;
    let rows = ekey_domain::agency_file::parse(text).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.code(),
            e.message(ekey_domain::Lang::Zh),
            e.message(ekey_domain::Lang::En),
        )
    })?;
    let now = state.clock.now();
    let audit = auth.audit(
        now,
        "agency.load_file",
        "agency",
        "*",
        "",
        &format!("{} agencies, {} bytes", rows.len(), text.len()),
    );
    state
        .store
        .load_agencies(rows.into_iter().map(agency_of_row).collect(), audit)
        .await?;
    super::public::agencies(State(state)).await
}

/// The store's agency for a row of the agencies file.
pub fn agency_of_row(r: ekey_domain::agency_file::AgencyRow) -> ekey_store::Agency {
    ekey_store::Agency {
        name_en: if r.name_en.is_empty() {
            r.name_zh.clone()
        } else {
            r.name_en
        },
        province: r.province,
        name_zh: r.name_zh,
        address: r.address,
        window: r.window,
        hours: r.hours,
        hotline: r.hotline,
    }
}

/// The years the calendar covers after an upload.
#[derive(Serialize, ToSchema)]
pub struct HolidaysOut {
    /// The year just loaded.
    pub year: i32,
    /// Every year with data.
    pub covered_years: Vec<i32>,
    /// Running deadlines recounted on the new data (their histories say so).
    pub recomputed: usize,
}

/// The years the working-day calendar of this instance covers.
#[derive(Serialize, ToSchema)]
pub struct CalendarOut {
    /// Every year with holiday data, built in or loaded.
    pub covered_years: Vec<i32>,
    /// Running deadlines that reach into a year without data (counted on the statutory
    /// holidays alone, shown as provisional).
    pub provisional_deadlines: usize,
    /// The years without data those deadlines reach into.
    pub provisional_years: Vec<i32>,
}

/// The years this instance's calendar covers (administrator). A year loaded on any instance
/// shows here within seconds.
#[utoipa::path(get, path = "/api/v1/admin/holidays", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = CalendarOut), (status = 403, body = ErrorBody)))]
pub async fn holidays(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<CalendarOut>> {
    auth.require(&[Role::Admin])?;
    let (provisional_deadlines, provisional_years) =
        crate::recount::provisional_count(&state).await?;
    Ok(Json(CalendarOut {
        covered_years: state.with_calendar(|c| c.covered_years()),
        provisional_deadlines,
        provisional_years,
    }))
}

/// Load a year's holiday arrangement (administrator): the body is the year's JSON file in
/// the holiday-cn format. Checked before anything is kept; stored in the database (every
/// other instance reloads its calendar within seconds) and used by this instance at once.
#[utoipa::path(put, path = "/api/v1/admin/holidays", tag = "admin", security(("bearer" = [])),
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, body = HolidaysOut), (status = 422, body = ErrorBody)))]
pub async fn upload_holidays(
    State(state): State<AppState>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<Json<HolidaysOut>> {
    auth.require(&[Role::Admin])?;
    let json = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.calendar.not_text",
            "节假日文件应为 UTF-8 编码的 JSON",
            "The holiday file must be UTF-8 JSON",
        )
    })?;
    // Checked on a copy first: a bad file changes nothing.
    let mut trial = state.with_calendar(|c| c.clone());
    let year = trial
        .load_year_json(json)
        .map_err(ekey_domain::error::DomainError::from)?;
    let covered = trial.covered_years();
    // Stored in the database, so every instance loads it (within seconds) and keeps it
    // across restarts; the audit record is written in the same transaction.
    let now = state.clock.now();
    state
        .store
        .put_holiday_year(
            ekey_store::HolidayYear {
                year,
                data: json.to_string(),
                loaded_at: now,
                loaded_by: auth.account.id.clone(),
            },
            auth.audit(
                now,
                "calendar.load",
                "calendar",
                &year.to_string(),
                "",
                &format!("{} bytes", json.len()),
            ),
        )
        .await?;
    let old = state.with_calendar(|c| c.clone());
    *state.calendar.write().unwrap_or_else(|e| e.into_inner()) = trial.clone();
    // Every running deadline is counted again on the new data; each changed one (or one
    // that reached into this year) gets a history line, one transaction per request.
    let recomputed = crate::recount::recount(
        &state,
        &old,
        &trial,
        Some(year),
        &crate::recount::Recounter {
            actor_id: &auth.account.id,
            role: auth.account.role,
            address: &auth.address,
        },
    )
    .await?;
    Ok(Json(HolidaysOut {
        year,
        covered_years: covered,
        recomputed,
    }))
}

/// A staff account.
#[derive(Serialize, ToSchema)]
pub struct UserOut {
    /// Id.
    pub id: String,
    /// Login.
    pub login: String,
    /// Name shown.
    pub display_name: String,
    /// Email (digests and notices).
    pub email: String,
    /// agency, provider or admin.
    pub role: String,
    /// Province (agency clerks).
    pub province: Option<String>,
    /// Can log in.
    pub active: bool,
}

impl From<ekey_store::Account> for UserOut {
    fn from(a: ekey_store::Account) -> Self {
        UserOut {
            id: a.id,
            login: a.login,
            display_name: a.display_name,
            email: a.email,
            role: a.role.as_str().into(),
            province: a.province,
            active: a.active,
        }
    }
}

/// Staff accounts: agency clerks, provider operators, administrators (administrator).
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<UserOut>), (status = 403, body = ErrorBody)))]
pub async fn users(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Vec<UserOut>>> {
    auth.require(&[Role::Admin])?;
    let mut out = Vec::new();
    for role in ["agency", "provider", "admin"] {
        out.extend(
            state
                .store
                .accounts_of_role(role)
                .await?
                .into_iter()
                .map(UserOut::from),
        );
    }
    Ok(Json(out))
}

/// A new staff account.
#[derive(Deserialize, ToSchema)]
pub struct NewUserBody {
    /// Login (letters, digits, `-`, `_`, `.`; 3–40).
    pub login: String,
    /// Name shown.
    pub display_name: String,
    /// Email.
    pub email: String,
    /// agency, provider or admin.
    pub role: String,
    /// Province code (required for an agency clerk).
    pub province: Option<String>,
    /// Initial password (at least 8 characters, letters and digits).
    pub password: String,
}

/// A staff login as stored (lower case), or `ekey.user.login`: 3–40 letters, digits, `-`,
/// `_`, `.` — for accounts made by an administrator and by `ekey admin create`.
pub(crate) fn staff_login(raw: &str) -> ApiResult<String> {
    let login = raw.trim().to_lowercase();
    let ok_login = (3..=40).contains(&login.len())
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok_login {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ekey.user.login",
            "登录名为 3–40 位字母、数字或 - _ .",
            "A login has 3–40 letters, digits or - _ .",
        ));
    }
    Ok(login)
}

/// Create a staff account (administrator).
#[utoipa::path(post, path = "/api/v1/admin/users", tag = "admin", security(("bearer" = [])),
    request_body = NewUserBody,
    responses((status = 201, body = UserOut), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<NewUserBody>,
) -> ApiResult<(StatusCode, Json<UserOut>)> {
    auth.require(&[Role::Admin])?;
    let login = staff_login(&body.login)?;
    let role = match body.role.as_str() {
        "agency" => Role::Agency,
        "provider" => Role::Provider,
        "admin" => Role::Admin,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ekey.user.role",
                "角色应为发证机构、服务商或管理员",
                "The role must be agency, provider or admin",
            ));
        }
    };
    let province = match (role, body.province.as_deref().map(str::trim)) {
        (Role::Agency, Some(p)) if ekey_domain::province::by_code(p).is_some() => {
            Some(p.to_string())
        }
        (Role::Agency, _) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ekey.user.province",
                "发证机构账户须选择所属省份",
                "An agency clerk needs a province",
            ));
        }
        _ => None,
    };
    let email = ekey_domain::ident::Email::parse(&body.email)
        .map_err(ekey_domain::error::DomainError::from)?;
    let name = text(&body.display_name, "display_name")?;
    super::accounts::check_password(&body.password)?;
    let hash = crate::auth::hash_password_off_thread(&body.password).await?;
    let now = state.clock.now();
    let id = uuid::Uuid::now_v7().to_string();
    let account = state
        .store
        .create_account(
            ekey_store::NewAccount {
                id: id.clone(),
                login: login.clone(),
                email: email.as_str().into(),
                display_name: name,
                mobile: None,
                password_hash: hash,
                role,
                enterprise_id: None,
                province,
                active: true,
                created_at: now,
            },
            auth.audit(now, "user.create", "account", &id, "", role.as_str()),
        )
        .await
        .map_err(|e| match e {
            ekey_store::StoreError::Duplicate(_) => ApiError::new(
                StatusCode::CONFLICT,
                "ekey.user.duplicate",
                format!("登录名 {login} 已被使用"),
                format!("The login {login} is taken"),
            ),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(account.into())))
}

/// Enable or disable.
#[derive(Deserialize, ToSchema)]
pub struct ActiveBody {
    /// Can log in.
    pub active: bool,
}

/// Enable or disable a staff account (administrator); disabling ends its sessions at once.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/active", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ActiveBody,
    responses((status = 200, body = UserOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn set_active(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ActiveBody>,
) -> ApiResult<Json<UserOut>> {
    auth.require(&[Role::Admin])?;
    if id == auth.account.id && !body.active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ekey.user.self",
            "不能停用自己的账户",
            "You cannot disable your own account",
        ));
    }
    let target = state
        .store
        .account(&id)
        .await?
        .filter(|a| a.role != Role::Enterprise)
        .ok_or_else(|| ApiError::not_found("ekey.user.not_found"))?;
    let now = state.clock.now();
    let (before, after) = if body.active {
        ("inactive", "active")
    } else {
        ("active", "inactive")
    };
    let account = state
        .store
        .set_account_active(
            &target.id,
            body.active,
            now,
            auth.audit(now, "user.active", "account", &target.id, before, after),
        )
        .await?;
    Ok(Json(account.into()))
}

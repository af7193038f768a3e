//! Delivery of produced keys: shipments from the provider to an agency, their arrival,
//! the notice to collect (mail, SMS, public result query) and the handover at the window or
//! by mail. Every step changes requests and keys together in one transaction.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use ekey_domain::calendar::shanghai;
use ekey_domain::error::DomainError;
use ekey_domain::ident::{IdNumber, Mobile};
use ekey_domain::key::{Handover, KeyEvent};
use ekey_domain::request::{Action, Context, RequestView, Role, Status, transition};
use ekey_store::{
    Batch, Channel, KeyChange, KeyRecord, NewAudit, NewHandover, NewMessage, RequestRecord,
    ShipmentRecord, Transition,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::messages::rfc3339;
use crate::state::AppState;

/// A shipment as shown to staff.
#[derive(Serialize, ToSchema)]
pub struct ShipmentOut {
    /// Id.
    pub id: String,
    /// Number.
    pub number: String,
    /// Destination province.
    pub province: String,
    /// Courier.
    pub courier: String,
    /// Tracking number.
    pub tracking_number: String,
    /// Created (RFC 3339, +08:00).
    pub created_at: String,
    /// Received at the agency.
    pub received_at: Option<String>,
    /// Requests whose keys travel in it.
    pub requests: Vec<ShipmentItem>,
}

/// One key in a shipment.
#[derive(Serialize, ToSchema)]
pub struct ShipmentItem {
    /// Request id.
    pub request_id: String,
    /// Request number.
    pub number: String,
    /// Request status.
    pub status: String,
    /// Login name of the key.
    pub login_name: String,
    /// Token serial.
    pub token_serial: Option<String>,
    /// Key state.
    pub key_state: String,
}

/// A new shipment.
#[derive(Deserialize, ToSchema)]
pub struct NewShipmentBody {
    /// Courier company.
    pub courier: String,
    /// Tracking number.
    pub tracking_number: String,
    /// Requests (in production, keys personalised, one province) whose keys go in it.
    pub request_ids: Vec<String>,
}

fn view(r: &RequestRecord) -> RequestView<'_> {
    RequestView {
        kind: r.kind,
        status: r.status,
        enterprise_id: &r.enterprise_id,
        province: &r.province,
        due_at: r.due_at.map(|d| d.with_timezone(&shanghai())),
        key_lost: r.form.key_lost,
    }
}

fn audit(
    state: &AppState,
    auth: &Auth,
    action: &str,
    object_type: &str,
    id: &str,
    before: &str,
    after: &str,
) -> NewAudit {
    auth.audit(state.clock.now(), action, object_type, id, before, after)
}

/// Decides one request's step through the transition table and returns what to store.
fn step(
    state: &AppState,
    auth: &Auth,
    r: &RequestRecord,
    action: Action,
    outbox: Vec<NewMessage>,
) -> Result<Transition, ApiError> {
    let now = state.clock.now();
    let outcome = state.with_calendar(|calendar| {
        transition(
            &view(r),
            action,
            &auth.actor,
            &Context {
                now,
                calendar,
                remark: None,
                materials_present: &[],
                materials_to_replace: &[],
            },
        )
    })?;
    Ok(Transition {
        request_id: r.id.clone(),
        expected_version: r.version,
        action,
        from: outcome.from,
        to: outcome.to,
        due_at: outcome.due_at.map(|d| d.to_utc()),
        form: None,
        commit_materials: false,
        at: now,
        actor_id: auth.account.id.clone(),
        actor_role: auth.account.role,
        remark: None,
        concerns: Vec::new(),
        audit: audit(
            state,
            auth,
            &format!("request.{}", action.as_str()),
            "request",
            &r.id,
            outcome.from.as_str(),
            outcome.to.as_str(),
        ),
        outbox,
    })
}

fn key_change(
    k: &KeyRecord,
    event: KeyEvent,
    shipment_id: Option<String>,
) -> Result<KeyChange, ApiError> {
    Ok(KeyChange {
        key_id: k.id.clone(),
        expected_version: k.version,
        to: k.state.apply(event)?,
        shipment_id,
        certificate_serial: None,
    })
}

fn not_found_request() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ekey.request.not_found",
        "未找到该申请",
        "No such request",
    )
}

fn not_found_shipment() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ekey.shipment.not_found",
        "未找到该寄送批次",
        "No such shipment",
    )
}

async fn visible_shipment(state: &AppState, auth: &Auth, id: &str) -> ApiResult<ShipmentRecord> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(not_found_shipment());
    }
    let s = state
        .store
        .shipment(id)
        .await?
        .ok_or_else(not_found_shipment)?;
    let ok = match auth.account.role {
        Role::Provider | Role::Admin => true,
        Role::Agency => auth.account.province.as_deref() == Some(s.province.as_str()),
        _ => false,
    };
    if ok { Ok(s) } else { Err(not_found_shipment()) }
}

async fn key_of(state: &AppState, r: &RequestRecord) -> ApiResult<KeyRecord> {
    state.store.key_by_request(&r.id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "ekey.key.not_produced",
            format!("申请 {} 的电子钥匙尚未制作", r.number),
            format!("The key of request {} has not been produced yet", r.number),
        )
    })
}

async fn shipment_out(state: &AppState, s: ShipmentRecord) -> ApiResult<ShipmentOut> {
    let mut requests = Vec::new();
    for k in state.store.keys_in_shipment(&s.id).await? {
        let Some(rid) = &k.request_id else { continue };
        if let Some(r) = state.store.request(rid).await? {
            requests.push(ShipmentItem {
                request_id: r.id,
                number: r.number,
                status: r.status.as_str().into(),
                login_name: k.login_name.clone(),
                token_serial: k.token_serial.clone(),
                key_state: k.state.as_str().into(),
            });
        }
    }
    Ok(ShipmentOut {
        id: s.id,
        number: s.number,
        province: s.province,
        courier: s.courier,
        tracking_number: s.tracking_number,
        created_at: rfc3339(s.created_at),
        received_at: s.received_at.map(rfc3339),
        requests,
    })
}

/// Ship produced keys to one agency (provider): their requests become `shipped`.
#[utoipa::path(post, path = "/api/v1/shipments", tag = "delivery", security(("bearer" = [])),
    request_body = NewShipmentBody,
    responses((status = 201, body = ShipmentOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_shipment(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<NewShipmentBody>,
) -> ApiResult<(StatusCode, Json<ShipmentOut>)> {
    auth.require(&[Role::Provider])?;
    let courier = super::required_text(&body.courier, "courier", 100)?;
    let tracking = super::required_text(&body.tracking_number, "tracking_number", 100)?;
    if body.request_ids.is_empty() {
        return Err(DomainError::Required {
            field: "request_ids",
        }
        .into());
    }
    let now = state.clock.now();
    let shipment_id = uuid::Uuid::now_v7().to_string();
    let mut province: Option<String> = None;
    let mut batch = Batch::default();
    for id in &body.request_ids {
        let r = super::requests::visible(&state, &auth, id).await?;
        match &province {
            None => province = Some(r.province.clone()),
            Some(p) if *p != r.province => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ekey.shipment.mixed_provinces",
                    "一个寄送批次只能寄往一个发证机构",
                    "One shipment goes to one agency only",
                ));
            }
            Some(_) => {}
        }
        let key = key_of(&state, &r).await?;
        batch
            .key_changes
            .push(key_change(&key, KeyEvent::Ship, Some(shipment_id.clone()))?);
        batch
            .transitions
            .push(step(&state, &auth, &r, Action::Ship, Vec::new())?);
    }
    let province = province.unwrap_or_default();
    // SH + minute + 6 random hex digits; on the rare collision the whole batch is refused
    // by the unique index and tried again with another number.
    let number = || {
        format!(
            "SH{}{}",
            now.with_timezone(&shanghai()).format("%Y%m%d%H%M"),
            &uuid::Uuid::new_v4().simple().to_string()[..6].to_uppercase()
        )
    };
    let mut record = ShipmentRecord {
        id: shipment_id.clone(),
        number: number(),
        province,
        courier,
        tracking_number: tracking,
        created_at: now,
        created_by: auth.account.id.clone(),
        received_at: None,
        received_by: None,
    };
    batch.audits.push(audit(
        &state,
        &auth,
        "shipment.create",
        "shipment",
        &shipment_id,
        "",
        &record.number,
    ));
    batch.new_shipment = Some(record.clone());
    let mut attempts = 0;
    loop {
        match state.store.apply_batch(batch.clone()).await {
            Err(ekey_store::StoreError::Duplicate("shipment_number")) if attempts < 5 => {
                attempts += 1;
                record.number = number();
                if let Some(a) = batch.audits.last_mut() {
                    a.after = record.number.clone();
                }
                batch.new_shipment = Some(record.clone());
            }
            result => {
                result?;
                break;
            }
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(shipment_out(&state, record).await?),
    ))
}

/// Shipments: the provider sees all, an agency those coming to it.
#[utoipa::path(get, path = "/api/v1/shipments", tag = "delivery", security(("bearer" = [])),
    responses((status = 200, body = Vec<ShipmentOut>), (status = 403, body = ErrorBody)))]
pub async fn list_shipments(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Vec<ShipmentOut>>> {
    auth.require(&[Role::Provider, Role::Agency, Role::Admin])?;
    let province = (auth.account.role == Role::Agency)
        .then(|| auth.account.province.clone().unwrap_or_default());
    let mut out = Vec::new();
    for s in state.store.shipments(province.as_deref()).await? {
        out.push(shipment_out(&state, s).await?);
    }
    Ok(Json(out))
}

/// A shipment with its keys.
#[utoipa::path(get, path = "/api/v1/shipments/{id}", tag = "delivery", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ShipmentOut), (status = 404, body = ErrorBody)))]
pub async fn get_shipment(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ShipmentOut>> {
    let s = visible_shipment(&state, &auth, &id).await?;
    Ok(Json(shipment_out(&state, s).await?))
}

/// The agency received a shipment: every request in it becomes `at_agency` (notify within 3
/// working days).
#[utoipa::path(post, path = "/api/v1/shipments/{id}/receive", tag = "delivery", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ShipmentOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn receive_shipment(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ShipmentOut>> {
    auth.require(&[Role::Agency])?;
    let s = visible_shipment(&state, &auth, &id).await?;
    if s.received_at.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ekey.shipment.already_received",
            "该寄送批次已签收",
            "This shipment was already received",
        ));
    }
    let mut batch = Batch::default();
    for k in state.store.keys_in_shipment(&s.id).await? {
        let Some(rid) = &k.request_id else { continue };
        let r = state
            .store
            .request(rid)
            .await?
            .ok_or_else(not_found_request)?;
        batch.transitions.push(step(
            &state,
            &auth,
            &r,
            Action::ReceiveShipment,
            Vec::new(),
        )?);
        batch
            .key_changes
            .push(key_change(&k, KeyEvent::Arrive, None)?);
    }
    batch.shipment_received = Some((s.id.clone(), state.clock.now(), auth.account.id.clone()));
    batch.audits.push(audit(
        &state,
        &auth,
        "shipment.receive",
        "shipment",
        &s.id,
        "",
        "received",
    ));
    state.store.apply_batch(batch).await?;
    let s = state
        .store
        .shipment(&s.id)
        .await?
        .ok_or_else(not_found_shipment)?;
    Ok(Json(shipment_out(&state, s).await?))
}

fn collection_messages(
    state: &AppState,
    r: &RequestRecord,
    agency: &ekey_store::Agency,
    at: DateTime<Utc>,
) -> Vec<NewMessage> {
    let who = &r.form.authorised_user;
    // An agency whose details are not yet published is named, never given an empty place.
    let place = if agency.address.is_empty() {
        format!("{}（领取地址尚未公布，请先向该机构确认）", agency.name_zh)
    } else {
        format!("{}{}", agency.address, agency.window)
    };
    let hours = if agency.hours.is_empty() {
        String::new()
    } else {
        format!("（{}）", agency.hours)
    };
    let hotline = if agency.hotline.is_empty() {
        String::new()
    } else {
        format!("，咨询电话 {}", agency.hotline)
    };
    vec![
        NewMessage {
            channel: Channel::Email,
            recipient: who.email.as_str().into(),
            subject: format!("电子钥匙可领取：申请 {}", r.number),
            body: format!(
                "{}：\n\n您申请的电子钥匙（申请编号 {}，用户登录名 {}）已到{}，可以领取。\n\n\
                 窗口领取：请领取人携带单位介绍信和本人身份证到 {place}{hours}领取{hotline}。\n\
                 免费邮寄：请将加盖公章的免责声明和营业执照复印件寄到以上地址；免责声明须写明企业自担风险、\
                 收件人（申请人）姓名、收件地址（须与营业执照上的注册地或经营地一致）、手机号和身份证号。\n\n\
                 查询进度：{}\n",
                who.name,
                r.number,
                r.login_name.clone().unwrap_or_default(),
                agency.name_zh,
                crate::receipt::request_link(&state.config.public_url(), &r.id),
            ),
            dedup_key: format!("request:{}:ready:email", r.id),
            created_at: at,
        },
        NewMessage {
            channel: Channel::Sms,
            recipient: who.mobile.as_str().into(),
            subject: String::new(),
            body: format!(
                "【{}】您的申请{}的电子钥匙已到{}，请携带单位介绍信和身份证到{place}领取，或按系统提示申请免费邮寄{hotline}。",
                agency.name_zh, r.number, agency.name_zh
            ),
            dedup_key: format!("request:{}:ready:sms", r.id),
            created_at: at,
        },
    ]
}

async fn notify_one(state: &AppState, auth: &Auth, r: &RequestRecord) -> ApiResult<Transition> {
    let agency = state
        .store
        .agency(&r.province)
        .await?
        .ok_or_else(not_found_request)?;
    let messages = collection_messages(state, r, &agency, state.clock.now());
    step(state, auth, r, Action::NotifyCollection, messages)
}

/// Tell the enterprise its key can be collected (mail + SMS + public result query).
#[utoipa::path(post, path = "/api/v1/requests/{id}/notify", tag = "delivery", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "ready for collection"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn notify_collection(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<super::requests::RequestOut>> {
    auth.require(&[Role::Agency])?;
    let r = super::requests::visible(&state, &auth, &id).await?;
    let t = notify_one(&state, &auth, &r).await?;
    state
        .store
        .apply_batch(Batch {
            transitions: vec![t],
            ..Batch::default()
        })
        .await?;
    state.outbox_wake.notify_one();
    super::requests::detail_by_id(&state, &auth, &id)
        .await
        .map(Json)
}

/// Notify every enterprise whose key arrived in this shipment and is still waiting.
#[utoipa::path(post, path = "/api/v1/shipments/{id}/notify", tag = "delivery", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ShipmentOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn notify_shipment(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ShipmentOut>> {
    auth.require(&[Role::Agency])?;
    let s = visible_shipment(&state, &auth, &id).await?;
    let mut batch = Batch::default();
    for k in state.store.keys_in_shipment(&s.id).await? {
        let Some(rid) = &k.request_id else { continue };
        let r = state
            .store
            .request(rid)
            .await?
            .ok_or_else(not_found_request)?;
        if r.status == Status::AtAgency {
            batch.transitions.push(notify_one(&state, &auth, &r).await?);
        }
    }
    if !batch.transitions.is_empty() {
        state.store.apply_batch(batch).await?;
        state.outbox_wake.notify_one();
    }
    Ok(Json(shipment_out(&state, s).await?))
}

/// The handover record.
#[derive(Deserialize, ToSchema)]
pub struct HandoverBody {
    /// `pickup` (window) or `mail`.
    pub method: String,
    /// Pickup: collector's name.
    pub collector_name: Option<String>,
    /// Pickup: collector's resident ID number.
    pub collector_id_number: Option<String>,
    /// Pickup: the introduction letter was seen.
    #[serde(default)]
    pub introduction_letter: bool,
    /// Mail: the stamped disclaimer was received.
    #[serde(default)]
    pub disclaimer_received: bool,
    /// Mail: the stamped licence copy was received.
    #[serde(default)]
    pub licence_copy_received: bool,
    /// Mail: recipient.
    pub recipient: Option<String>,
    /// Mail: recipient's mobile.
    pub mobile: Option<String>,
    /// Mail: recipient's ID number.
    pub id_number: Option<String>,
    /// Mail: address (must match the registered or business address).
    pub address: Option<String>,
    /// Mail: courier.
    pub courier: Option<String>,
    /// Mail: tracking number.
    pub tracking_number: Option<String>,
}

fn handover_from(body: &HandoverBody, today: NaiveDate) -> Result<Handover, DomainError> {
    let text = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_string();
    match body.method.as_str() {
        "pickup" => Ok(Handover::Pickup {
            collector_name: text(&body.collector_name),
            collector_id_number: IdNumber::parse_on(&text(&body.collector_id_number), today)?,
            introduction_letter: body.introduction_letter,
        }),
        "mail" => Ok(Handover::Mail {
            disclaimer_received: body.disclaimer_received,
            licence_copy_received: body.licence_copy_received,
            recipient: text(&body.recipient),
            mobile: Mobile::parse(&text(&body.mobile))?,
            id_number: IdNumber::parse_on(&text(&body.id_number), today)?,
            address: text(&body.address),
            courier: text(&body.courier),
            tracking_number: text(&body.tracking_number),
        }),
        _ => Err(DomainError::Required { field: "method" }),
    }
}

/// Record the handover (window pickup or mailing): the request is `completed` and the key
/// becomes active.
#[utoipa::path(post, path = "/api/v1/requests/{id}/handover", tag = "delivery", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = HandoverBody,
    responses((status = 200, description = "completed"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn handover(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<HandoverBody>,
) -> ApiResult<Json<super::requests::RequestOut>> {
    auth.require(&[Role::Agency])?;
    let r = super::requests::visible(&state, &auth, &id).await?;
    let record = handover_from(&body, state.today())?;
    let enterprise = state
        .store
        .enterprise(&r.enterprise_id)
        .await?
        .ok_or_else(not_found_request)?;
    record.validate(&enterprise.address)?;
    let key = key_of(&state, &r).await?;
    let t = step(&state, &auth, &r, Action::HandOver, Vec::new())?;
    let now = state.clock.now();
    state
        .store
        .apply_batch(Batch {
            transitions: vec![t],
            key_changes: vec![key_change(&key, KeyEvent::HandOver, None)?],
            handover: Some(NewHandover {
                request_id: r.id.clone(),
                method: body.method.clone(),
                record: serde_json::to_string(&record).map_err(ApiError::internal)?,
                at: now,
                by_account: auth.account.id.clone(),
            }),
            audits: vec![audit(
                &state,
                &auth,
                "key.hand_over",
                "key",
                &key.id,
                key.state.as_str(),
                "active",
            )],
            ..Batch::default()
        })
        .await?;
    super::requests::detail_by_id(&state, &auth, &id)
        .await
        .map(Json)
}

/// The packing list (发货单) of a shipment as A4 PDF pages: its keys, courier and
/// receipt signatures. For the provider and the receiving agency.
#[utoipa::path(get, path = "/api/v1/shipments/{id}/packing-list.pdf", tag = "delivery",
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, content_type = "application/pdf"), (status = 404, body = ErrorBody)))]
pub async fn packing_list(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let s = visible_shipment(&state, &auth, &id).await?;
    let out = shipment_out(&state, s.clone()).await?;
    let agency = state.store.agency(&out.province).await?;
    let mut keys = Vec::new();
    for item in &out.requests {
        let enterprise = match state.store.request(&item.request_id).await? {
            Some(r) => state.store.enterprise(&r.enterprise_id).await?,
            None => None,
        };
        keys.push(ekey_docs::PackedKey {
            request_number: item.number.clone(),
            enterprise_name: enterprise.map(|e| e.name).unwrap_or_default(),
            login_name: item.login_name.clone(),
            token_serial: item.token_serial.clone().unwrap_or_default(),
        });
    }
    let list = ekey_docs::PackingList {
        number: out.number.clone(),
        agency_name: agency.map(|a| a.name_zh).unwrap_or_default(),
        courier: out.courier.clone(),
        tracking_number: out.tracking_number.clone(),
        date: s
            .created_at
            .with_timezone(&ekey_domain::calendar::shanghai())
            .date_naive(),
        keys,
    };
    let doc_error = |e: ekey_docs::DocError| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.code(),
            e.message(ekey_domain::Lang::Zh),
            e.message(ekey_domain::Lang::En),
        )
    };
    // Made once, then served from the blob store (see crate::documents).
    let key = crate::documents::packing_list_key(&s.id, &list);
    let make = async {
        let fonts = state.fonts().await.map_err(doc_error)?;
        tokio::task::spawn_blocking(move || ekey_docs::packing_list(&fonts, &list))
            .await
            .map_err(ApiError::internal)?
            .map_err(doc_error)
    };
    let pdf = crate::documents::kept(state.blobs.as_ref(), &key, make).await?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/pdf".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{}-packing-list.pdf\"", out.number),
            ),
        ],
        pdf,
    )
        .into_response())
}

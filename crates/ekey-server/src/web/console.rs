//! The staff consoles, first part: the work queue of an agency clerk (their province only)
//! or a provider operator, sorted by due time with "due today", "overdue" and ageing; search;
//! the request detail with the form, every material inline, the history and earlier remarks;
//! review decisions with remark templates and the items a remark concerns; production.

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::Datelike;
use ekey_domain::Lang;
use ekey_domain::calendar::shanghai;
use ekey_domain::request::{
    Kind, LicenceType, Material, Role, Status, statuses_waiting_on, waits_on,
};
use minijinja::context;
use serde::Serialize;

use super::portal::{Q, q};
use super::{Form, Page, error_page, see_other, v};
use crate::api::ApiQuery;
use crate::api::requests::{self, DecisionBody, ListQuery, RequestOut, RequestSummary};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

const STAFF: &[Role] = &[Role::Agency, Role::Provider];

fn staff(page: &Page) -> Result<Auth, Response> {
    page.require(STAFF).cloned()
}

fn staff_post(page: &Page, form: &Form) -> Result<Auth, Response> {
    let auth = staff(page)?;
    page.check_csrf(form)?;
    Ok(auth)
}

/// A tab of the work queue: its statuses and label.
struct Tab {
    key: &'static str,
    zh: &'static str,
    en: &'static str,
    statuses: &'static [Status],
}

const AGENCY_TABS: &[Tab] = &[
    Tab {
        key: "review",
        zh: "待验核",
        en: "To review",
        statuses: &[Status::AgencyReview],
    },
    Tab {
        key: "handover",
        zh: "注销待受理",
        en: "Cancellations to receive",
        statuses: &[Status::AwaitingHandover],
    },
    Tab {
        key: "shipped",
        zh: "在途钥匙",
        en: "Keys on the way",
        statuses: &[Status::Shipped],
    },
    Tab {
        key: "arrived",
        zh: "待通知领取",
        en: "To notify",
        statuses: &[Status::AtAgency],
    },
    Tab {
        key: "ready",
        zh: "待领取",
        en: "Ready for collection",
        statuses: &[Status::ReadyForCollection],
    },
];

const PROVIDER_TABS: &[Tab] = &[
    Tab {
        key: "review",
        zh: "待复核",
        en: "To review",
        statuses: &[Status::ProviderReview],
    },
    Tab {
        key: "production",
        zh: "待制作",
        en: "To produce",
        statuses: &[Status::InProduction],
    },
    Tab {
        key: "shipped",
        zh: "已寄出",
        en: "Shipped",
        statuses: &[Status::Shipped],
    },
];

fn tabs(role: Role) -> &'static [Tab] {
    if role == Role::Agency {
        AGENCY_TABS
    } else {
        PROVIDER_TABS
    }
}

/// Common reasons for returning a request, offered as templates (the clerk can edit them).
fn remark_templates(lang: Lang) -> Vec<&'static str> {
    match lang {
        Lang::Zh => vec![
            "营业执照扫描件不清晰，请重新扫描上传。",
            "申请表未加盖企业公章或法定代表人未签字。",
            "授权用户身份证复印件不清晰或缺少反面。",
            "申请表与电子签章申请确认函上的授权用户不一致。",
            "授权委托书未加盖企业公章。",
            "数字证书用户协议书未由授权用户签字。",
            "勾选的许可证业务与企业经营范围不符，请核对后重新勾选。",
        ],
        Lang::En => vec![
            "The business licence scan is not legible; please rescan it.",
            "The application form lacks the company seal or the legal representative's signature.",
            "The ID card copy is not legible or lacks the back side.",
            "The authorised user differs between the form and the confirmation letter.",
            "The power of attorney lacks the company seal.",
            "The certificate user agreement is not signed by the authorised user.",
            "The ticked licence businesses do not match the business scope.",
        ],
    }
}

#[derive(Serialize)]
struct Row {
    #[serde(flatten)]
    r: RequestSummary,
    kind_label: &'static str,
    due_today: bool,
    age_days: i64,
}

/// The work queue.
pub async fn queue(State(state): State<AppState>, page: Page, query: Q) -> Response {
    let auth = match staff(&page) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let lang = page.lang;
    let tabs = tabs(auth.account.role);
    let search = q(&query, "q");
    let tab_key = q(&query, "tab");
    let current = tabs.iter().find(|t| t.key == tab_key).unwrap_or(&tabs[0]);
    let list = |statuses: &[Status], search: Option<String>| {
        let state = state.clone();
        let auth = auth.clone();
        let status = statuses
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",");
        async move {
            requests::list(
                State(state),
                auth,
                ApiQuery(ListQuery {
                    status: (!status.is_empty()).then_some(status),
                    q: search,
                    limit: Some(500),
                    offset: None,
                }),
            )
            .await
            .map(|j| j.0)
        }
    };
    // With a search, every status; else the tab's.
    let rows = if search.is_empty() {
        list(current.statuses, None).await
    } else {
        list(&[], Some(search.clone())).await
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return error_page(lang, e),
    };
    let mut counts = Vec::new();
    for t in tabs {
        let n = match list(t.statuses, None).await {
            Ok(r) => r.len(),
            Err(e) => return error_page(lang, e),
        };
        counts.push(context! { key => t.key, label => lang.pick(t.zh, t.en), count => n, current => t.key == current.key && search.is_empty() });
    }
    let now = state.clock.now().with_timezone(&shanghai());
    let tomorrow = now.date_naive().succ_opt().unwrap_or(now.date_naive());
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|r| {
            // Due today: overdue from 00:00 tomorrow, i.e. today is its last working day.
            let due_today = !r.overdue && due_on(&r, tomorrow);
            let age_days = chrono::DateTime::parse_from_rfc3339(&r.updated_at)
                .map(|u| (now.date_naive() - u.with_timezone(&shanghai()).date_naive()).num_days())
                .unwrap_or(0);
            Row {
                kind_label: Kind::parse(&r.kind)
                    .map(|k| lang.pick(k.name_zh(), k.name_en()))
                    .unwrap_or(""),
                due_today,
                age_days,
                r,
            }
        })
        .collect();
    // The counts are of all the reader's work (every step waiting on their role), not of
    // the tab or the search shown.
    let role = auth.account.role;
    let mine = match list(&statuses_waiting_on(role), None).await {
        Ok(r) => r,
        Err(e) => return error_page(lang, e),
    };
    let mine: Vec<&RequestSummary> = mine
        .iter()
        .filter(|r| {
            let kind = Kind::parse(&r.kind).ok();
            let status = Status::parse(&r.status);
            kind.zip(status).and_then(|(k, s)| waits_on(k, s)) == Some(role)
        })
        .collect();
    let overdue = mine.iter().filter(|r| r.overdue).count();
    let due_today = mine
        .iter()
        .filter(|r| !r.overdue && due_on(r, tomorrow))
        .count();
    page.render(
        &state,
        "console_queue.html",
        context! {
            tabs => counts,
            rows => v(&rows),
            search => search,
            overdue => overdue,
            due_today => due_today,
            today => format!("{}-{:02}-{:02}", now.year(), now.month(), now.day()),
        },
    )
    .await
}

/// Whether the request's step becomes overdue at 00:00 of `day` (Asia/Shanghai).
fn due_on(r: &RequestSummary, day: chrono::NaiveDate) -> bool {
    r.due_at
        .as_deref()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .is_some_and(|d| d.with_timezone(&shanghai()).date_naive() == day)
}

async fn load(state: &AppState, auth: &Auth, id: &str) -> Result<RequestOut, ApiError> {
    requests::get(State(state.clone()), auth.clone(), Path(id.to_string()))
        .await
        .map(|j| j.0)
}

/// A request as staff see it, with the decision form when it is theirs to decide.
pub async fn detail(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    query: Q,
) -> Response {
    let auth = match staff(&page) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let lang = page.lang;
    let r = match load(&state, &auth, &id).await {
        Ok(r) => r,
        Err(e) => return error_page(lang, e),
    };
    let kind = Kind::parse(&r.kind).unwrap_or(Kind::First);
    let can_decide = r.actions.iter().any(|a| {
        matches!(
            a.as_str(),
            "agency_approve" | "agency_return" | "provider_approve" | "provider_return"
        )
    });
    let can_refuse = r.actions.iter().any(|a| a == "agency_refuse");
    let can_produce =
        auth.account.role == Role::Provider && r.status == "in_production" && kind.produces_key();
    let is_agency = auth.account.role == Role::Agency;
    let can_notify = is_agency && r.status == "at_agency";
    let can_handover = is_agency && r.status == "ready_for_collection";
    let can_receive = is_agency && r.status == "awaiting_handover";
    let enterprise = state
        .store
        .request(&r.id)
        .await
        .ok()
        .flatten()
        .map(|rec| rec.enterprise_id);
    let enterprise = match enterprise {
        Some(eid) => state.store.enterprise(&eid).await.ok().flatten(),
        None => None,
    };
    let materials: Vec<_> = r
        .materials
        .iter()
        .map(|m| {
            let item = Material::parse(&m.item).ok();
            context! {
                is_image => m.content_type.as_deref().is_some_and(|t| t.starts_with("image/")),
                name => item.map(|i| lang.pick(i.name_zh(), i.name_en())).unwrap_or(""),
                ..v(m)
            }
        })
        .collect();
    // What the enterprise changed in answer to the latest return, in words.
    let changed_since_return: Vec<String> = r
        .changed_since_return
        .iter()
        .map(|c| ekey_domain::returns::concern_label(c, lang))
        .collect();
    let licence_labels: Vec<&str> = r
        .form
        .licence_types
        .iter()
        .filter_map(|t| LicenceType::parse(t).ok())
        .map(|t| match lang {
            Lang::Zh => t.name_zh(),
            Lang::En => t.name_en(),
        })
        .collect();
    let history = super::timeline(lang, &r.history);
    let damaged_keys = match damaged_originals(&state, &auth, kind, &r).await {
        Ok(k) => k,
        Err(e) => return error_page(lang, e),
    };
    let notice = match q(&query, "done").as_str() {
        "key_returned" => lang.pick(
            "已登记损坏的钥匙交回。",
            "The damaged key's return is recorded.",
        ),
        "approved" => lang.pick("已通过。", "Approved."),
        "returned" => lang.pick(
            "已退回企业修改，企业会收到邮件和短信。",
            "Returned; the enterprise gets a mail and an SMS.",
        ),
        "refused" => lang.pick("已决定不同意增办。", "The additional key is not granted."),
        "produced" => lang.pick(
            "电子钥匙已制作：证书已签发并写入钥匙。",
            "Key produced: certificate issued and written to the key.",
        ),
        "notified" => lang.pick(
            "已通知企业领取（邮件、短信、结果查询）。",
            "The enterprise was notified (mail, SMS, result query).",
        ),
        "received" => lang.pick(
            "已受理注销材料，请在 2 个工作日内验核并转服务商。",
            "Cancellation papers received; review and forward within 2 working days.",
        ),
        "handed_over" => lang.pick(
            "已记录交付，钥匙已启用。",
            "Handover recorded; the key is active.",
        ),
        _ => "",
    };
    page.render(
        &state,
        "console_request.html",
        context! {
            r => v(&r),
            kind_label => lang.pick(kind.name_zh(), kind.name_en()),
            enterprise => v(enterprise),
            materials => materials,
            changed_since_return => changed_since_return,
            history => history,
            licence_labels => licence_labels,
            can_decide => can_decide,
            can_refuse => can_refuse,
            refuse_label => lang.pick(ekey_domain::request::Action::AgencyRefuse.label_zh(), ekey_domain::request::Action::AgencyRefuse.label_en()),
            can_produce => can_produce,
            can_notify => can_notify,
            can_handover => can_handover,
            can_receive => can_receive,
            templates => remark_templates(lang),
            form_fields => v(requests::FORM_FIELDS),
            notice => notice,
            error => q(&query, "error"),
            damaged_keys => damaged_keys,
        },
    )
    .await
}

/// A 补办 of a damaged key: the damaged original(s) under its login name, with when each
/// was handed back, for the agency and the provider to record the return.
async fn damaged_originals(
    state: &AppState,
    auth: &crate::auth::Auth,
    kind: Kind,
    r: &requests::RequestOut,
) -> Result<Vec<minijinja::Value>, crate::error::ApiError> {
    if kind != Kind::Replacement
        || r.form.key_lost
        || !matches!(auth.account.role, Role::Agency | Role::Provider)
    {
        return Ok(Vec::new());
    }
    let Some(record) = state.store.request(&r.id).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for k in state
        .store
        .keys_by_login_name(r.login_name.as_deref().unwrap_or_default())
        .await?
    {
        if k.enterprise_id == record.enterprise_id && k.state == ekey_domain::key::KeyState::Damaged
        {
            let returned_at = state.store.key_return(&k.id).await?;
            out.push(context! {
                id => k.id,
                token_serial => k.token_serial,
                returned_at => returned_at.map(|t| t.to_rfc3339()),
            });
        }
    }
    Ok(out)
}

/// The agency or the provider records that a damaged key was handed back; back to the
/// request page it was recorded from.
pub async fn key_returned(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let auth = match page.require(&[Role::Agency, Role::Provider]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let back: String = form
        .get("request_id")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let result = crate::api::keys::record_return(State(state.clone()), auth, Path(id)).await;
    super::after(
        page.lang,
        result,
        &format!("/console/requests/{back}?done=key_returned"),
        &format!("/console/requests/{back}"),
    )
}

/// 验核 / 复核: approve, return with a remark (and what it concerns), or refuse (增办).
pub async fn decide(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let auth = match staff_post(&page, &form) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let verdict = form.get("verdict");
    let body = DecisionBody {
        approve: verdict == "approve",
        remark: Some(form.get("remark").trim().to_string()).filter(|r| !r.is_empty()),
        refuse: verdict == "refuse",
        concerns: form.all("concerns"),
    };
    let done = match verdict {
        "approve" => "approved",
        "refuse" => "refused",
        _ => "returned",
    };
    let result = requests::decision(
        State(state.clone()),
        auth,
        Path(id.clone()),
        crate::api::ApiJson(body),
    )
    .await;
    super::after(
        page.lang,
        result,
        &format!("/console/requests/{id}?done={done}"),
        &format!("/console/requests/{id}"),
    )
}

/// Personalise the key (provider).
pub async fn produce(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let auth = match staff_post(&page, &form) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let result =
        crate::api::production::produce(State(state.clone()), auth, Path(id.clone())).await;
    super::after(
        page.lang,
        result,
        &format!("/console/requests/{id}?done=produced"),
        &format!("/console/requests/{id}"),
    )
}

/// `/console`: where each role starts.
pub async fn home(page: Page) -> Response {
    match page.auth.as_ref().map(|a| a.account.role) {
        Some(Role::Agency | Role::Provider) => see_other("/console/queue"),
        Some(Role::Enterprise) => see_other("/portal"),
        Some(_) => see_other("/console/admin"),
        None => see_other("/login?next=%2Fconsole"),
    }
}

/// Cancellation intake at the window: what the agency received.
pub async fn receive(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let auth = match page.require(&[Role::Agency]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let body = requests::ReceiveBody {
        form_received: form.get("form_received") == "on",
        key_received: form.get("key_received") == "on",
        loss_statement_received: form.get("loss_statement_received") == "on",
    };
    let result = requests::receive(
        State(state.clone()),
        auth,
        Path(id.clone()),
        crate::api::ApiJson(body),
    )
    .await;
    super::after(
        page.lang,
        result,
        &format!("/console/requests/{id}?done=received"),
        &format!("/console/requests/{id}"),
    )
}

//! The consoles' delivery pages: the provider packs produced keys into a shipment to an
//! agency; the agency signs for a whole shipment, notifies every enterprise in it at once,
//! notifies one, and records the handover (window pickup or mailing).

use axum::extract::{Path, State};
use axum::response::Response;
use ekey_domain::request::{Role, Status};
use minijinja::context;

use super::portal::{Q, q};
use super::{Form, Page, error_page, see_other, v};
use crate::api::delivery::{self, HandoverBody, NewShipmentBody};
use crate::api::requests::{self, ListQuery};
use crate::api::{ApiJson, ApiQuery};
use crate::auth::Auth;
use crate::state::AppState;

fn staff(page: &Page) -> Result<Auth, Response> {
    page.require(&[Role::Agency, Role::Provider]).cloned()
}

fn post_as(page: &Page, form: &Form, role: Role) -> Result<Auth, Response> {
    let auth = page.require(&[role])?.clone();
    page.check_csrf(form)?;
    Ok(auth)
}

/// Shipments; for the provider also the keys ready to pack.
pub async fn shipments(State(state): State<AppState>, page: Page, query: Q) -> Response {
    let auth = match staff(&page) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let lang = page.lang;
    let list = match delivery::list_shipments(State(state.clone()), auth.clone()).await {
        Ok(j) => j.0,
        Err(e) => return error_page(lang, e),
    };
    // Produced keys not yet shipped (provider only).
    let mut ready = Vec::new();
    if auth.account.role == Role::Provider {
        let rows = match requests::list(
            State(state.clone()),
            auth.clone(),
            ApiQuery(ListQuery {
                status: Some(Status::InProduction.as_str().into()),
                q: None,
                limit: Some(500),
                offset: None,
            }),
        )
        .await
        {
            Ok(j) => j.0,
            Err(e) => return error_page(lang, e),
        };
        for r in rows {
            if let Ok(Some(k)) = state.store.key_by_request(&r.id).await {
                let province = ekey_domain::province::by_code(&r.province)
                    .map(|p| lang.pick(p.name_zh, p.name_en))
                    .unwrap_or("");
                ready.push(context! {
                    token_serial => k.token_serial,
                    province_name => province,
                    ..v(&r)
                });
            }
        }
    }
    page.render(
        &state,
        "console_shipments.html",
        context! {
            shipments => v(&list),
            ready => ready,
            error => q(&query, "error"),
        },
    )
    .await
}

/// One shipment with its keys and the agency's bulk actions.
pub async fn shipment(
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
    let s = match delivery::get_shipment(State(state.clone()), auth.clone(), Path(id)).await {
        Ok(j) => j.0,
        Err(e) => return error_page(lang, e),
    };
    let waiting = s
        .requests
        .iter()
        .filter(|r| r.status == "at_agency")
        .count();
    let items: Vec<_> = s
        .requests
        .iter()
        .map(|r| {
            let label = Status::parse(&r.status)
                .map(|st| lang.pick(st.label_zh(), st.label_en()))
                .unwrap_or("");
            context! { status_label => label, ..v(r) }
        })
        .collect();
    let notice = match q(&query, "done").as_str() {
        "created" => lang.pick(
            "发货单已创建，钥匙状态为“已寄出”。",
            "Shipment created; its keys are on the way.",
        ),
        "received" => lang.pick(
            "已签收整批钥匙，请在 3 个工作日内通知企业领取。",
            "Signed for; notify the enterprises within 3 working days.",
        ),
        "notified" => lang.pick(
            "已通知本批全部企业（邮件、短信、结果查询）。",
            "Every enterprise in it was notified (mail, SMS, result query).",
        ),
        _ => "",
    };
    let is_agency = auth.account.role == Role::Agency;
    page.render(
        &state,
        "console_shipment.html",
        context! {
            s => v(&s),
            items => items,
            can_receive => is_agency && s.received_at.is_none(),
            can_notify => is_agency && waiting > 0,
            waiting => waiting,
            notice => notice,
            error => q(&query, "error"),
        },
    )
    .await
}

/// The provider packs the ticked keys.
pub async fn create(State(state): State<AppState>, page: Page, form: Form) -> Response {
    let auth = match post_as(&page, &form, Role::Provider) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body = NewShipmentBody {
        courier: form.get("courier").into(),
        tracking_number: form.get("tracking_number").into(),
        request_ids: form.all("request_ids"),
    };
    match delivery::create_shipment(State(state.clone()), auth, ApiJson(body)).await {
        Ok((_, j)) => see_other(&format!("/console/shipments/{}?done=created", j.0.id)),
        Err(e) => super::after::<()>(page.lang, Err(e), "", "/console/shipments"),
    }
}

/// The agency signs for a whole shipment.
pub async fn receive(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let auth = match post_as(&page, &form, Role::Agency) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let to = format!("/console/shipments/{id}");
    super::after(
        page.lang,
        delivery::receive_shipment(State(state.clone()), auth, Path(id)).await,
        &format!("{to}?done=received"),
        &to,
    )
}

/// The agency notifies every enterprise of a shipment at once.
pub async fn notify_all(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let auth = match post_as(&page, &form, Role::Agency) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let to = format!("/console/shipments/{id}");
    super::after(
        page.lang,
        delivery::notify_shipment(State(state.clone()), auth, Path(id)).await,
        &format!("{to}?done=notified"),
        &to,
    )
}

/// The agency notifies one enterprise.
pub async fn notify_one(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let auth = match post_as(&page, &form, Role::Agency) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let to = format!("/console/requests/{id}");
    super::after(
        page.lang,
        delivery::notify_collection(State(state.clone()), auth, Path(id)).await,
        &format!("{to}?done=notified"),
        &to,
    )
}

/// The agency records the handover: pickup at the window or mailing.
pub async fn handover(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let auth = match post_as(&page, &form, Role::Agency) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let opt = |k: &str| Some(form.get(k).trim().to_string()).filter(|v| !v.is_empty());
    let body = HandoverBody {
        method: form.get("method").into(),
        collector_name: opt("collector_name"),
        collector_id_number: opt("collector_id_number"),
        introduction_letter: form.get("introduction_letter") == "on",
        disclaimer_received: form.get("disclaimer_received") == "on",
        licence_copy_received: form.get("licence_copy_received") == "on",
        recipient: opt("recipient"),
        mobile: opt("mobile"),
        id_number: opt("id_number"),
        address: opt("address"),
        courier: opt("courier"),
        tracking_number: opt("tracking_number"),
    };
    let to = format!("/console/requests/{id}");
    super::after(
        page.lang,
        delivery::handover(State(state.clone()), auth, Path(id), ApiJson(body)).await,
        &format!("{to}?done=handed_over"),
        &to,
    )
}

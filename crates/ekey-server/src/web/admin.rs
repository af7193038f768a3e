//! The administrator's console, first part: the outbox (counts, dead letters with their
//! errors, retry), the holiday years covered, and the agencies' collection details.

use axum::extract::{Path, State};
use axum::response::Response;
use ekey_domain::request::Role;
use minijinja::context;

use super::portal::{Q, q};
use super::{Form, Page, error_page, v};
use crate::api::admin;
use crate::state::AppState;

/// The admin console.
pub async fn home(State(state): State<AppState>, page: Page, query: Q) -> Response {
    let auth = match page.require(&[Role::Admin]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let lang = page.lang;
    let outbox = match admin::outbox(State(state.clone()), auth.clone()).await {
        Ok(j) => j.0,
        Err(e) => return error_page(lang, e),
    };
    let years = state.with_calendar(|c| c.covered_years());
    let (provisional_deadlines, provisional_years) =
        match crate::recount::provisional_count(&state).await {
            Ok(c) => c,
            Err(e) => return error_page(lang, e.into()),
        };
    let now_year = chrono::Datelike::year(
        &state
            .clock
            .now()
            .with_timezone(&ekey_domain::calendar::shanghai()),
    );
    let users = match admin::users(State(state.clone()), auth).await {
        Ok(j) => j.0,
        Err(e) => return error_page(lang, e),
    };
    let provinces: Vec<_> = ekey_domain::province::all()
        .iter()
        .map(|p| context! { code => p.code, name => lang.pick(p.name_zh, p.name_en) })
        .collect();
    let agencies = match crate::api::public::agencies(State(state.clone())).await {
        Ok(j) => j.0,
        Err(e) => return error_page(lang, e),
    };
    let notice = match q(&query, "done").as_str() {
        "retried" => lang.pick("已重新排队发送。", "Queued again."),
        "agency" => lang.pick("发证机构信息已更新。", "Agency details saved."),
        "agencies" => lang.pick("发证机构文件已载入。", "The agencies file was loaded."),
        "holidays" => lang.pick("节假日数据已载入。", "Holiday data loaded."),
        "user" => lang.pick("账户已保存。", "Account saved."),
        "released" => lang.pick(
            "企业账户已释放，已邮件通知该企业。",
            "The enterprise account was released; the enterprise was told by mail.",
        ),
        "transferred" => lang.pick(
            "企业账户已转移，新邮箱已收到设置密码的链接。",
            "The enterprise account was transferred; the new email got a link to set a password.",
        ),
        _ => "",
    };
    page.render(
        &state,
        "console_admin.html",
        context! {
            outbox => v(&outbox),
            years => years.clone(),
            provisional_deadlines => provisional_deadlines,
            provisional_years => provisional_years,
            this_year => now_year,
            this_year_covered => years.contains(&now_year),
            next_year_covered => years.contains(&(now_year + 1)),
            agencies => v(&agencies),
            users => users
                .iter()
                .map(|u| {
                    let role = ekey_domain::request::Role::parse(&u.role)
                        .map(|r| lang.pick(r.label_zh(), r.label_en()))
                        .unwrap_or("");
                    let province = u
                        .province
                        .as_deref()
                        .and_then(ekey_domain::province::by_code)
                        .map(|p| lang.pick(p.name_zh, p.name_en));
                    context! { role_label => role, province_name => province, ..v(u) }
                })
                .collect::<Vec<_>>(),
            provinces => provinces,
            notice => notice,
            error => q(&query, "error"),
        },
    )
    .await
}

/// Retry one dead letter.
pub async fn retry(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<i64>,
    form: Form,
) -> Response {
    let auth = match page.require(&[Role::Admin]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    super::after(
        page.lang,
        admin::retry(State(state.clone()), auth, Path(id)).await,
        "/console/admin?done=retried#outbox",
        "/console/admin#outbox",
    )
}

/// Save an agency's collection details.
pub async fn agency(
    State(state): State<AppState>,
    page: Page,
    Path(province): Path<String>,
    form: Form,
) -> Response {
    let auth = match page.require(&[Role::Admin]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let body = admin::AgencyBody {
        address: form.get("address").into(),
        window: form.get("window").into(),
        hours: form.get("hours").into(),
        hotline: form.get("hotline").into(),
    };
    let result = admin::update_agency(
        State(state.clone()),
        auth,
        Path(province.clone()),
        crate::api::ApiJson(body),
    )
    .await;
    super::after(
        page.lang,
        result,
        &format!("/console/admin?done=agency#a-{province}"),
        &format!("/console/admin#a-{province}"),
    )
}

/// Load the agencies file (pasted, or read into the text area from a chosen file).
pub async fn agencies_file(State(state): State<AppState>, page: Page, form: Form) -> Response {
    let auth = match page.require(&[Role::Admin]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let body = axum::body::Bytes::from(form.get("csv").as_bytes().to_vec());
    let result = admin::load_agencies(State(state.clone()), auth, body).await;
    super::after(
        page.lang,
        result,
        "/console/admin?done=agencies#ag-h",
        "/console/admin#ag-file",
    )
}

/// Create a staff account.
pub async fn create_user(State(state): State<AppState>, page: Page, form: Form) -> Response {
    let auth = match page.require(&[Role::Admin]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let body = admin::NewUserBody {
        login: form.get("login").into(),
        display_name: form.get("display_name").into(),
        email: form.get("email").into(),
        role: form.get("role").into(),
        province: Some(form.get("province").to_string()).filter(|p| !p.is_empty()),
        password: form.get("password").into(),
    };
    super::after(
        page.lang,
        admin::create_user(State(state.clone()), auth, crate::api::ApiJson(body)).await,
        "/console/admin?done=user#users",
        "/console/admin#users",
    )
}

/// Enable or disable a staff account.
pub async fn set_active(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let auth = match page.require(&[Role::Admin]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let body = admin::ActiveBody {
        active: form.get("active") == "true",
    };
    super::after(
        page.lang,
        admin::set_active(
            State(state.clone()),
            auth,
            Path(id),
            crate::api::ApiJson(body),
        )
        .await,
        "/console/admin?done=user#users",
        "/console/admin#users",
    )
}

/// Release or transfer an enterprise account (the form of the "企业账户" section).
pub async fn enterprise_account(State(state): State<AppState>, page: Page, form: Form) -> Response {
    use crate::api::enterprise_admin;
    let auth = match page.require(&[Role::Admin]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let code = Path(form.get("credit_code").trim().to_string());
    let reason = form.get("reason").to_string();
    let back = "/console/admin#enterprises";
    if form.get("action") == "transfer" {
        let body = enterprise_admin::TransferBody {
            email: form.get("email").into(),
            reason,
        };
        let result =
            enterprise_admin::transfer(State(state.clone()), auth, code, crate::api::ApiJson(body))
                .await;
        super::after(
            page.lang,
            result,
            "/console/admin?done=transferred#enterprises",
            back,
        )
    } else {
        let body = enterprise_admin::ReleaseBody { reason };
        let result =
            enterprise_admin::release(State(state.clone()), auth, code, crate::api::ApiJson(body))
                .await;
        super::after(
            page.lang,
            result,
            "/console/admin?done=released#enterprises",
            back,
        )
    }
}

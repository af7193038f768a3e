//! What the enterprise does with the key itself, through the local agent (`ekey agent`):
//! certificate login, and “CA证书更新”. The page scripts (`static/agent.js`) talk to the
//! agent; these handlers talk to the scripts.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ekey_domain::request::Role;
use minijinja::context;

use super::{Page, error_page};
use crate::api::ApiJson;
use crate::api::keyauth::{self, KeyLoginBody};
use crate::auth::{ClientAddr, same};
use crate::error::ApiError;
use crate::state::AppState;

/// The login page's script posts the challenge signed by the key here (JSON, with the
/// page's CSRF token in `X-CSRF-Token`); the session goes into the cookie.
pub async fn key_login(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    page: Page,
    query: super::portal::Q,
    ApiJson(body): ApiJson<KeyLoginBody>,
) -> Response {
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !same(token, &page.csrf) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "ekey.auth.csrf",
            "页面已过期或来源不明，请刷新页面后重试",
            "The page expired or the request came from elsewhere; reload and retry",
        )
        .into_response();
    }
    let binding = keyauth::browser_binding(&headers);
    match keyauth::key_login_for(&state, address, &binding, body).await {
        Ok(session) => {
            // Where the login page was asked to go next (`?next=`), under the one rule.
            let next = super::portal::q(&query, "next");
            let redirect = ekey_domain::redirect::safe_next(&next).unwrap_or("/portal");
            let mut res = axum::Json(serde_json::json!({"redirect": redirect})).into_response();
            super::public::set_cookie(
                &mut res,
                super::public::session_cookie(&state, &session.token),
            );
            res
        }
        Err(e) => e.into_response(),
    }
}

/// “CA证书更新”: the approved renewals of the key logged in with, run through the agent.
pub async fn renewal(State(state): State<AppState>, page: Page) -> Response {
    let auth = match page.require(&[Role::Enterprise]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let lang = page.lang;
    let key_id = match state.store.session_key(&auth.token_hash).await {
        Ok(k) => k,
        Err(e) => return error_page(lang, e.into()),
    };
    let key = match &key_id {
        Some(id) => match state.store.key(id).await {
            Ok(k) => k,
            Err(e) => return error_page(lang, e.into()),
        },
        None => None,
    };
    let renewals = match keyauth::list_renewals(State(state.clone()), auth.clone()).await {
        Ok(axum::Json(r)) => r,
        Err(e) => return error_page(lang, e),
    };
    let rows: Vec<_> = renewals
        .iter()
        .map(|r| {
            let label = match r.state.as_str() {
                "approved" => lang.pick("已批准，待更新", "Approved, not started"),
                "issued" => lang.pick(
                    "新证书已签发，尚未写入钥匙（可继续更新）",
                    "New certificate issued, not yet on the key (continue)",
                ),
                "confirmed" => lang.pick("已完成", "Done"),
                _ => lang.pick(
                    "已过期：钥匙继续使用原证书，可照常使用；如需更新，请重新提交更新申请",
                    "Expired: the key keeps its current certificate and works as before; \
                     apply again to renew",
                ),
            };
            context! { state_label => label, ..super::v(r) }
        })
        .collect();
    page.render(
        &state,
        "renewal.html",
        context! {
            key_session => key.is_some(),
            key => super::v(key.map(|k| serde_json::json!({
                "token_serial": k.token_serial,
                "login_name": k.login_name,
                "certificate_serial": k.certificate_serial,
            }))),
            renewals => rows,
        },
    )
    .await
}

//! The key's own page in the portal (issue 16 item 15): what the key is, its initial PIN —
//! shown only to its enterprise, only when asked (a form post, audited by the API), with the
//! advice to change it at first use — and the PIN change through the local agent.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ekey_domain::request::Role;
use minijinja::context;

use super::{Form, Page, error_page, v};
use crate::api::keys;
use crate::error::ApiError;
use crate::state::AppState;

async fn render(state: &AppState, page: &Page, id: &str, pin: Option<String>) -> Response {
    let auth = match page.require(&[Role::Enterprise]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let mine = match keys::my_keys(State(state.clone()), auth).await {
        Ok(j) => j.0,
        Err(e) => return error_page(page.lang, e),
    };
    let Some(key) = mine.into_iter().find(|k| k.id == id) else {
        return error_page(page.lang, ApiError::not_found("ekey.key.not_found"));
    };
    let shown = pin.is_some();
    let mut res = page
        .render(
            state,
            "key.html",
            context! { key => v(&key), pin => pin, shown => shown },
        )
        .await;
    // A page with a PIN on it is kept by no cache.
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

/// The key's page.
pub async fn show(State(state): State<AppState>, page: Page, Path(id): Path<String>) -> Response {
    render(&state, &page, &id, None).await
}

/// “查看初始PIN码”: the page again, with the initial PIN (each reading audited).
pub async fn initial_pin(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    if let Err(r) = page.require(&[Role::Enterprise]) {
        return r;
    }
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let auth = match page.require(&[Role::Enterprise]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    match keys::initial_pin(State(state.clone()), auth, Path(id.clone())).await {
        Ok(j) => render(&state, &page, &id, Some(j.0.initial_pin)).await,
        Err(e) => error_page(page.lang, e).into_response(),
    }
}

//! The provider's certificate page: CA status, search, revoke with an RFC 5280 reason.

use axum::extract::{Path, State};
use axum::response::Response;
use ekey_domain::request::Role;
use minijinja::context;

use super::portal::{Q, q};
use super::{Form, Page, error_page, v};
use crate::api::certificates::{self, RevokeBody, SearchQuery};
use crate::api::{ApiJson, ApiQuery};
use crate::state::AppState;

/// Reasons offered when revoking by hand, with their Chinese names.
const REASONS: &[(&str, &str)] = &[
    ("keyCompromise", "密钥泄露（钥匙遗失、被盗）"),
    ("cessationOfOperation", "停止使用（注销）"),
    ("superseded", "已被替代（补办、更新）"),
    ("affiliationChanged", "企业信息变更"),
];

/// CA status and certificate search.
pub async fn page(State(state): State<AppState>, page: Page, query: Q) -> Response {
    let auth = match page.require(&[Role::Provider]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let lang = page.lang;
    let status = match certificates::status(State(state.clone()), auth.clone()).await {
        Ok(j) => j.0,
        Err(e) => return error_page(lang, e),
    };
    let search = q(&query, "q");
    let found = if search.is_empty() {
        Vec::new()
    } else {
        match certificates::search(
            State(state.clone()),
            auth,
            ApiQuery(SearchQuery { q: search.clone() }),
        )
        .await
        {
            Ok(j) => j.0,
            Err(e) => return error_page(lang, e),
        }
    };
    let reasons: Vec<_> = REASONS
        .iter()
        .map(|&(code, zh)| context! { code => code, label => lang.pick(zh, code) })
        .collect();
    page.render(
        &state,
        "console_certificates.html",
        context! {
            status => v(&status),
            search => search,
            found => v(&found),
            reasons => reasons,
            notice => match q(&query, "done").as_str() {
                "revoked" => lang.pick("证书已吊销，CRL 和 OCSP 已同步。", "Revoked; CRL and OCSP say so now."),
                _ => "",
            },
            error => q(&query, "error"),
        },
    )
    .await
}

/// Revoke one certificate.
pub async fn revoke(
    State(state): State<AppState>,
    page: Page,
    Path(serial): Path<String>,
    form: Form,
) -> Response {
    let auth = match page.require(&[Role::Provider]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let back = format!("/console/certificates?q={}", super::encode(form.get("q")));
    let result = certificates::revoke(
        State(state.clone()),
        auth,
        Path(serial),
        ApiJson(RevokeBody {
            reason: form.get("reason").into(),
        }),
    )
    .await;
    super::after(page.lang, result, &format!("{back}&done=revoked"), &back)
}

//! The HTTP surface: JSON API under `/api/v1` (documented by the OpenAPI document generated
//! from the handlers), `/healthz`, and the few pages the foundation needs.

pub mod accounts;
pub mod admin;
pub mod certificates;
pub mod delivery;
pub mod keyauth;
pub mod keys;
pub mod production;
pub mod public;
pub mod requests;
pub mod selfservice;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use ekey_domain::Lang;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, LANG};
use crate::state::AppState;

/// A required text field: trimmed, not empty, at most `max` characters.
pub(crate) fn required_text(
    value: &str,
    field: &'static str,
    max: usize,
) -> Result<String, ekey_domain::error::DomainError> {
    use ekey_domain::error::DomainError;
    let v = value.trim();
    if v.is_empty() {
        return Err(DomainError::Required { field });
    }
    if v.chars().count() > max {
        return Err(DomainError::TooLong { field, max });
    }
    Ok(v.to_string())
}

/// Chinese words for the framework's (English) description of a malformed input; the
/// English message keeps the detail.
fn malformed(detail: &str) -> ApiError {
    let zh = if let Some(field) = detail
        .split("missing field `")
        .nth(1)
        .and_then(|r| r.split('`').next())
    {
        format!("提交的数据缺少字段“{field}”")
    } else if detail.contains("invalid type")
        || detail.contains("invalid digit")
        || detail.contains("expected")
    {
        "提交的数据中有字段类型不正确（例如应为数字或文字），请检查后重新提交".to_string()
    } else {
        "提交的数据格式不正确，请检查后重新提交".to_string()
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "ekey.input.malformed",
        zh,
        format!("Malformed input: {detail}"),
    )
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "ekey.input.too_large",
        "提交的数据过大",
        "The request body is too large",
    )
}

/// JSON body extractor whose rejections are our JSON errors, in the caller's language.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "ekey.input.content_type",
                "请以 JSON 提交（Content-Type: application/json）",
                "Send JSON (Content-Type: application/json)",
            )),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(malformed(&e.body_text())),
        }
    }
}

/// Query-string extractor whose rejections are our JSON errors.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| malformed(&e.body_text()))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "eKey API", version = "1", description = "CA electronic keys for import/export enterprises: registration, requests, review, public lookups."),
    modifiers(&BearerScheme),
    tags((name = "accounts"), (name = "requests"), (name = "materials"), (name = "documents"), (name = "production"), (name = "delivery"), (name = "keys"), (name = "public"), (name = "admin"), (name = "ca"), (name = "demo"))
)]
struct ApiDoc;

struct BearerScheme;
impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Sets the language of error messages and pages: the language chosen on the pages
/// (cookie) first; then `Accept-Language` for the API and Chinese for pages (anything a
/// browser opens as HTML, such as the activation link).
async fn localize(req: Request, next: Next) -> Response {
    let lang = match crate::auth::cookie(req.headers(), crate::web::LANG_COOKIE) {
        Some("en") => Lang::En,
        Some("zh") => Lang::Zh,
        // The JSON API follows Accept-Language; the pages are Chinese until switched.
        _ if req.uri().path().starts_with("/api/")
            && !req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html")) =>
        {
            Lang::from_accept_language(
                req.headers()
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok()),
            )
        }
        _ => Lang::Zh,
    };
    LANG.scope(lang, next.run(req)).await
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "ekey.method_not_allowed",
        "该接口不支持此请求方法",
        "This endpoint does not support this method",
    )
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ekey.not_found",
        "页面或接口不存在",
        "No such page or endpoint",
    )
}

/// The OpenAPI document of the whole API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    build().1
}

fn build() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    // Uploads are read in full up to 8 MB so an oversize scan gets a helpful message with its
    // size; the per-kind limits (1 MB, 200 KB) are checked after.
    let uploads = OpenApiRouter::new()
        .routes(routes!(
            requests::upload_material,
            requests::download_material
        ))
        .layer(DefaultBodyLimit::max(8 * 1024 * 1024));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(public::healthz))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::resend_activation))
        .routes(routes!(accounts::activate))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::reserve_login_name))
        .routes(routes!(certificates::search, certificates::issue))
        .routes(routes!(certificates::revoke))
        .routes(routes!(certificates::status))
        .routes(routes!(admin::outbox))
        .routes(routes!(admin::retry))
        .routes(routes!(admin::update_agency))
        .routes(routes!(admin::holidays, admin::upload_holidays))
        .routes(routes!(admin::users, admin::create_user))
        .routes(routes!(admin::set_active))
        .routes(routes!(selfservice::request_reset))
        .routes(routes!(selfservice::complete_reset))
        .routes(routes!(selfservice::choose_collection))
        .routes(routes!(requests::create, requests::list))
        .routes(routes!(requests::get, requests::edit))
        .routes(routes!(requests::submit))
        .routes(routes!(requests::confirm_upload))
        .routes(routes!(requests::withdraw))
        .routes(routes!(requests::decision))
        .routes(routes!(requests::receive))
        .routes(routes!(requests::application_form))
        .routes(routes!(requests::confirmation_letter))
        .routes(routes!(requests::unlock_form))
        .routes(routes!(requests::cancellation_form))
        .routes(routes!(requests::blank_cancellation_form))
        .routes(routes!(production::produce))
        .routes(routes!(delivery::create_shipment, delivery::list_shipments))
        .routes(routes!(delivery::get_shipment))
        .routes(routes!(delivery::packing_list))
        .routes(routes!(delivery::receive_shipment))
        .routes(routes!(delivery::notify_shipment))
        .routes(routes!(delivery::notify_collection))
        .routes(routes!(delivery::handover))
        .routes(routes!(keyauth::create_challenge))
        .routes(routes!(keyauth::key_login))
        .routes(routes!(keyauth::list_renewals))
        .routes(routes!(keyauth::renewal_certificate))
        .routes(routes!(keyauth::confirm_renewal))
        .routes(routes!(keyauth::unlock_done))
        .routes(routes!(keys::my_keys))
        .routes(routes!(keys::initial_pin))
        .routes(routes!(keys::certificate))
        .routes(routes!(public::result))
        .routes(routes!(public::agencies))
        .routes(routes!(public::mailbox))
        .merge(uploads)
        .layer(DefaultBodyLimit::max(256 * 1024))
        .split_for_parts()
}

/// The complete router of one instance.
pub fn router(state: AppState) -> Router {
    let (api, doc) = build();
    let doc = std::sync::Arc::new(doc);
    api.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { axum::Json((*doc).clone()) }
        }),
    )
    .merge(crate::web::router())
    .route("/ca/root.crt", get(crate::ca::root_crt))
    .route("/ca/issuing.crt", get(crate::ca::issuing_crt))
    .route("/crl/issuing.crl", get(crate::ca::issuing_crl))
    .route("/ocsp", axum::routing::post(crate::ca::ocsp_post))
    .route("/ocsp/{*request}", get(crate::ca::ocsp_get))
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .layer(middleware::from_fn(localize))
    .layer(middleware::from_fn(security_headers))
    .layer(tower_http::trace::TraceLayer::new_for_http())
    .with_state(state)
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        // Our own pages may show our own files (a PDF scan in the console); pages themselves
        // also say `frame-ancestors 'none'` in their CSP.
        header::HeaderValue::from_static("SAMEORIGIN"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    res
}

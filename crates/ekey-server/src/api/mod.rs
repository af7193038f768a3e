//! The HTTP surface: JSON API under `/api/v1` (documented by the OpenAPI document generated
//! from the handlers), `/healthz`, and the few pages the foundation needs.

pub mod accounts;
pub mod admin;
pub mod certificates;
pub mod delivery;
pub mod enterprise_admin;
pub mod keyauth;
pub mod keys;
pub mod production;
pub mod public;
pub(crate) mod renewal_expiry;
pub mod requests;
pub mod scans;
pub mod selfservice;
mod shared_errors;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ekey_domain::Lang;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, LANG};
use crate::routes::Routes;
use crate::state::AppState;

/// A required text field: trimmed, not empty, at most `max` characters.
pub(crate) fn required_text(
    value: &str,
    field: &'static str,
    max: usize,
) -> Result<String, ekey_domain::error::DomainError> {
    ekey_domain::text::check_line(field, value, max)
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

/// The body limit of every JSON route (uploads, the only larger bodies, are binary).
const JSON_LIMIT: usize = 256 * 1024;

/// No field of the API takes a NUL character, and PostgreSQL cannot store one in text (the
/// query fails: a 500). Refused for the whole JSON API: `%00` in the path or query, and the
/// JSON escape `\u0000` in a JSON body (a raw NUL byte is not JSON at all). Uploads are
/// binary and are not looked into.
async fn reject_nul(req: Request, next: Next) -> Response {
    let nul = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "ekey.input.nul",
            "提交的内容含有不允许的空字符（NUL），请删除后重试",
            "The input contains a NUL character, which is not allowed",
        )
        .into_response()
    };
    let uri = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
    if uri.contains("%00") {
        return nul();
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    if !json {
        return next.run(req).await;
    }
    // JSON bodies go to routes that take at most `JSON_LIMIT`: no more is read here, and a
    // body announced larger is refused before a byte of it is read.
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if announced.is_some_and(|n| n > JSON_LIMIT) {
        return too_large().into_response();
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, JSON_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => return too_large().into_response(),
    };
    if json_has_nul(&bytes) {
        return nul();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Whether JSON text holds the escape `\u0000` (a backslash that is itself escaped does
/// not start one).
fn json_has_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json[i + 1..].starts_with(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// The framework's own refusals are plain text (a path parameter that does not parse, such as
/// a letter where a number belongs or `%FF` where UTF-8 belongs; a raw body it cannot read);
/// every answer of the JSON API is JSON, so on its routes they become our errors here. The
/// handlers' own errors are JSON already and pass unchanged.
async fn json_refusals(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let plain = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !res.status().is_client_error() || !plain {
        return res;
    }
    let status = res.status();
    let detail = axum::body::to_bytes(res.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let err = match status {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "ekey.input.content_type",
            "提交的数据类型不受支持",
            format!("Unsupported content type: {detail}"),
        ),
        _ => ApiError::new(
            status,
            "ekey.input.malformed",
            "网址中的参数或提交的数据格式不正确，请检查后重试",
            format!("Malformed input: {detail}"),
        ),
    };
    err.into_response()
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
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(public::healthz))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::resend_activation))
        .routes(routes!(accounts::activate))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::change_password))
        .routes(routes!(accounts::reserve_login_name))
        .routes(routes!(certificates::search, certificates::issue))
        .routes(routes!(certificates::revoke))
        .routes(routes!(certificates::status))
        .routes(routes!(admin::outbox))
        .routes(routes!(admin::retry))
        .routes(routes!(admin::update_agency))
        .routes(routes!(admin::load_agencies))
        .routes(routes!(admin::holidays, admin::upload_holidays))
        .routes(routes!(admin::users, admin::create_user))
        .routes(routes!(admin::set_active))
        .routes(routes!(enterprise_admin::release))
        .routes(routes!(enterprise_admin::transfer))
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
        .routes(routes!(requests::power_of_attorney))
        .routes(routes!(requests::user_agreement))
        .routes(routes!(requests::mailing_disclaimer))
        .routes(routes!(requests::introduction_letter))
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
        .routes(routes!(keys::record_return))
        .routes(routes!(public::result))
        .routes(routes!(public::agencies))
        .routes(routes!(public::mailbox))
        .merge(uploads)
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .layer(middleware::from_fn(json_refusals))
        .layer(middleware::from_fn(reject_nul))
        .split_for_parts();
    shared_errors::document(&mut doc);
    (router, doc)
}

/// The routes outside the OpenAPI document: the pages, the CA's files and OCSP.
fn fixed_routes() -> Routes {
    crate::web::routes().merge(
        Routes::new()
            .get("/ca/root.crt", crate::ca::root_crt)
            .get("/ca/issuing.crt", crate::ca::issuing_crt)
            .get("/crl/issuing.crl", crate::ca::issuing_crl)
            .get("/crl/root.crl", crate::ca::root_crl)
            .post("/ocsp", crate::ca::ocsp_post)
            .get("/ocsp/{*request}", crate::ca::ocsp_get),
    )
}

/// Path of the OpenAPI document itself.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Every method and path an instance serves, as (upper-case method, path template): the
/// operations of the OpenAPI document, the document itself, and the fixed routes.
pub fn route_list() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (path, item) in &openapi().paths.paths {
        let ops = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
        ];
        for (method, present) in ops {
            if present {
                out.push((method.to_string(), path.clone()));
            }
        }
    }
    out.push(("GET".into(), OPENAPI_PATH.into()));
    let (_, fixed) = fixed_routes().into_parts();
    out.extend(
        fixed
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string())),
    );
    out.sort();
    out
}

/// The complete router of one instance.
pub fn router(state: AppState) -> Router {
    let (api, doc) = build();
    let doc = std::sync::Arc::new(doc);
    let (fixed, _) = fixed_routes().into_parts();
    api.route(
        OPENAPI_PATH,
        get(move || {
            let doc = doc.clone();
            async move { axum::Json((*doc).clone()) }
        }),
    )
    // Page forms and OCSP requests are small: the same limit as the JSON routes.
    .merge(fixed.layer(DefaultBodyLimit::max(JSON_LIMIT)))
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .layer(middleware::from_fn(crate::edge::check_input))
    .layer(middleware::from_fn(localize))
    .layer(middleware::from_fn(security_headers))
    .layer(middleware::from_fn_with_state(
        state.clone(),
        crate::edge::cookies_and_headers,
    ))
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
    // Pages and previews set their own policy; everything else (JSON, certificates, CRLs)
    // may load nothing, run nothing and be framed by nobody. PDFs are left to the browser's
    // viewer, which a `default-src 'none'` can blank; they are downloads or framed previews.
    let pdf = h
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/pdf"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) && !pdf {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    res
}

//! The web pages: the enterprise portal and the public pages (register, log in, result
//! query, dev mailbox), server-rendered from templates compiled into the binary, Chinese
//! first with English switchable, every asset served by eKey itself.
//!
//! Pages use a session cookie (HttpOnly, SameSite=Lax). Every form carries a CSRF token
//! derived from the secret cookie value; the page scripts send the same token in
//! `X-CSRF-Token` when they call the JSON API (see [`crate::auth`]).

// Page helpers answer "stop here" with the finished page (a redirect or an error page);
// boxing every such Response would only add noise to the handlers.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod certs;
pub mod console;
pub mod dashboard;
pub mod delivery;
pub mod keypages;
pub mod keypin;
pub mod portal;
pub mod public;

use std::sync::OnceLock;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use ekey_domain::Lang;
use ekey_domain::request::Role;
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, State as TplState};
use serde::Serialize;

use crate::auth::{Auth, ClientAddr, SESSION_COOKIE, cookie, csrf_token, new_token, same};
use crate::error::{ApiError, current_lang};
use crate::routes::Routes;
use crate::state::AppState;

/// Cookie holding the chosen language (`zh` or `en`).
pub const LANG_COOKIE: &str = "ekey_lang";
/// Cookie holding an anonymous visitor's CSRF seed (forms before login).
pub const SEED_COOKIE: &str = "ekey_seed";

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("index.html", include_str!("templates/index.html")),
    ("message.html", include_str!("templates/message.html")),
    ("login.html", include_str!("templates/login.html")),
    ("register.html", include_str!("templates/register.html")),
    ("registered.html", include_str!("templates/registered.html")),
    ("forgot.html", include_str!("templates/forgot.html")),
    ("reset.html", include_str!("templates/reset.html")),
    ("password.html", include_str!("templates/password.html")),
    ("result.html", include_str!("templates/result.html")),
    ("mailbox.html", include_str!("templates/mailbox.html")),
    ("home.html", include_str!("templates/home.html")),
    ("apply.html", include_str!("templates/apply.html")),
    (
        "request_form.html",
        include_str!("templates/request_form.html"),
    ),
    ("request.html", include_str!("templates/request.html")),
    ("renewal.html", include_str!("templates/renewal.html")),
    ("key.html", include_str!("templates/key.html")),
    (
        "console_queue.html",
        include_str!("templates/console_queue.html"),
    ),
    (
        "console_request.html",
        include_str!("templates/console_request.html"),
    ),
    (
        "console_certificates.html",
        include_str!("templates/console_certificates.html"),
    ),
    (
        "console_dashboard.html",
        include_str!("templates/console_dashboard.html"),
    ),
    (
        "console_admin.html",
        include_str!("templates/console_admin.html"),
    ),
    (
        "console_shipments.html",
        include_str!("templates/console_shipments.html"),
    ),
    (
        "console_shipment.html",
        include_str!("templates/console_shipment.html"),
    ),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Every template is HTML: escape everything, whatever the file is called.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env.add_function("t", translate);
        env.add_filter("when", when);
        env.add_filter("size", size);
        env
    })
}

/// `t("中文", "English")`: the text in the page's language.
fn translate(state: &TplState, zh: String, en: String) -> String {
    match state.lookup("lang").as_ref().and_then(|v| v.as_str()) {
        Some("en") => en,
        _ => zh,
    }
}

/// `"2026-02-25T00:00:00+08:00" | when` → `2026年2月25日 00:00` / `25 February 2026, 00:00`;
/// `"2026-02-25" | when` → `2026年2月25日` / `25 February 2026` ([`ekey_domain::when`]).
fn when(state: &TplState, v: String) -> String {
    let lang = match state.lookup("lang").as_ref().and_then(|v| v.as_str()) {
        Some("en") => Lang::En,
        _ => Lang::Zh,
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&v) {
        return ekey_domain::when::datetime(&t, lang);
    }
    match chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d") {
        Ok(d) => ekey_domain::when::date(d, lang),
        Err(_) => v,
    }
}

/// Bytes in words (KB / MB).
fn size(state: &TplState, v: i64) -> String {
    let lang = match state.lookup("lang").as_ref().and_then(|v| v.as_str()) {
        Some("en") => Lang::En,
        _ => Lang::Zh,
    };
    ekey_domain::upload::human_size(v.max(0) as u64, lang)
}

/// A serialisable value for a template.
pub fn v<T: Serialize>(x: T) -> Value {
    Value::from(Serde(x))
}

/// Everything a page handler knows about the visitor.
pub struct Page {
    /// Language of the page.
    pub lang: Lang,
    /// The logged-in caller, if any.
    pub auth: Option<Auth>,
    /// CSRF token for forms on this page.
    pub csrf: String,
    /// A new anonymous seed to set as a cookie with the answer.
    new_seed: Option<String>,
    /// Path and query of this page (for the language switch and "log in, then come back").
    pub path: String,
    /// Origin of the local agent the page's scripts may call (`connect-src`).
    pub agent_origin: String,
    /// `; Secure` when the portal is served over TLS (cookies then never go out in clear).
    pub cookie_secure: &'static str,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let ClientAddr(address) = ClientAddr::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|e| match e {});
        let mut auth = None;
        let mut seed = None;
        if let Some(token) = cookie(&parts.headers, SESSION_COOKIE) {
            auth = Auth::from_token(state, token, address)
                .await
                .map_err(|e| error_page(current_lang(), e))?;
            if auth.is_some() {
                seed = Some(token.to_string());
            }
        }
        let mut new_seed = None;
        let seed = match seed.or_else(|| cookie(&parts.headers, SEED_COOKIE).map(str::to_string)) {
            Some(s) => s,
            None => {
                let s = new_token();
                new_seed = Some(s.clone());
                s
            }
        };
        Ok(Page {
            lang: current_lang(),
            auth,
            csrf: csrf_token(&seed),
            new_seed,
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            agent_origin: agent_origin(&state.config.agent_url),
            cookie_secure: secure_flag(state),
        })
    }
}

/// The footer's collection details: the agency of the visitor's province.
#[derive(Serialize, Default)]
pub struct FooterAgency {
    name: String,
    address: String,
    window: String,
    hours: String,
    hotline: String,
}

impl Page {
    /// The caller, or a redirect to the login page that comes back here.
    pub fn require(&self, roles: &[Role]) -> Result<&Auth, Response> {
        match &self.auth {
            Some(a) if roles.contains(&a.account.role) => Ok(a),
            Some(_) => Err(error_page(self.lang, ApiError::forbidden_role())),
            None => {
                Err(Redirect::to(&format!("/login?next={}", encode(&self.path))).into_response())
            }
        }
    }

    /// Refuses a form whose CSRF token is not this visitor's.
    pub fn check_csrf(&self, form: &Form) -> Result<(), Response> {
        if same(form.get("csrf"), &self.csrf) {
            Ok(())
        } else {
            Err(error_page(
                self.lang,
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "ekey.auth.csrf",
                    "页面已过期或来源不明，请返回刷新页面后重试",
                    "The page expired or the form came from elsewhere; go back, reload and retry",
                ),
            ))
        }
    }

    /// Renders `template` with `ctx` plus what every page needs.
    pub async fn render(&self, state: &AppState, template: &str, ctx: Value) -> Response {
        self.render_status(state, StatusCode::OK, template, ctx)
            .await
    }

    /// Renders with a status (e.g. 422 for a form shown again with its errors).
    pub async fn render_status(
        &self,
        state: &AppState,
        status: StatusCode,
        template: &str,
        ctx: Value,
    ) -> Response {
        // The visitor's agency: a clerk's own, an enterprise's by its registered province.
        let province = match &self.auth {
            Some(a) => match (&a.account.province, &a.account.enterprise_id) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(e)) => state
                    .store
                    .enterprise(e)
                    .await
                    .ok()
                    .flatten()
                    .map(|e| e.province),
                _ => None,
            },
            None => None,
        };
        let footer = match province {
            Some(p) => state.store.agency(&p).await.ok().flatten(),
            None => None,
        }
        .map(|a| FooterAgency {
            name: self.lang.pick(&a.name_zh, &a.name_en).to_string(),
            address: a.address,
            window: a.window,
            hours: a.hours,
            hotline: a.hotline,
        });
        let user = self.auth.as_ref().map(|a| {
            minijinja::context! {
                login => a.account.login.clone(),
                name => a.account.display_name.clone(),
                role => a.account.role.as_str(),
                role_label => self.lang.pick(a.account.role.label_zh(), a.account.role.label_en()),
            }
        });
        let base = minijinja::context! {
            lang => self.lang.pick("zh", "en"),
            csrf => self.csrf.clone(),
            path => self.path.clone(),
            path_enc => encode(&self.path),
            user => user,
            demo => state.config.demo,
            footer_agency => v(footer),
            provider_hotline => state.config.provider_hotline.clone(),
            agent_url => self.agent_origin.clone(),
        };
        let merged = minijinja::context! { ..ctx, ..base };
        let body = match env().get_template(template).and_then(|t| t.render(merged)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, template, "rendering a page");
                // Debug builds (tests) also print the template's own account of the problem.
                #[cfg(debug_assertions)]
                eprintln!("rendering {template}: {e:#}");
                return error_page(self.lang, ApiError::internal("template"));
            }
        };
        let mut res = (status, Html(body)).into_response();
        self.finish(&mut res);
        res
    }

    /// Adds the headers every page answer carries.
    pub fn finish(&self, res: &mut Response) {
        if let Some(seed) = &self.new_seed
            && let Ok(v) = HeaderValue::from_str(&format!(
                "{SEED_COOKIE}={seed}; Path=/; HttpOnly; SameSite=Lax{}",
                self.cookie_secure
            ))
        {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The local agent (`ekey agent`) is the only other place scripts may talk to.
        let csp = format!(
            "default-src 'self'; connect-src 'self' {}; img-src 'self' blob: data:; \
             object-src 'none'; frame-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self'",
            self.agent_origin
        );
        if let Ok(v) = HeaderValue::from_str(&csp) {
            res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
}

/// A form posted by a page, as ordered pairs (checkboxes repeat their name).
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// The first value of `name`, trimmed of nothing, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The pairs as a map for showing the form again (secrets left out).
    pub fn values(&self) -> Value {
        let mut map = std::collections::BTreeMap::new();
        for (k, v) in &self.0 {
            if k != "password" && k != "password2" && k != "csrf" {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        v(map)
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Form {
    type Rejection = Response;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        // The form's bytes are checked as they will be read: a `%FF` would otherwise become
        // a replacement character silently, a `%00` a NUL (refused as such below too).
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::Bytes::from_request(
            axum::extract::Request::from_parts(parts.clone(), body),
            state,
        )
        .await
        {
            Ok(b) => b,
            Err(e) => return Err(e.into_response()),
        };
        if let Err(bad) = crate::edge::check_urlencoded(&bytes) {
            return Err(error_page(current_lang(), bad.error()));
        }
        let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
        match axum::Form::<Vec<(String, String)>>::from_request(req, state).await {
            // A NUL character is never text a person typed (and PostgreSQL refuses it).
            Ok(axum::Form(v))
                if v.iter()
                    .any(|(k, val)| k.contains('\0') || val.contains('\0')) =>
            {
                Err(error_page(
                    current_lang(),
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "ekey.input.nul",
                        "提交的内容含有不可见的控制字符（NUL），请删除后重试",
                        "The form contains an invisible control character (NUL); remove it and retry",
                    ),
                ))
            }
            Ok(axum::Form(v)) => Ok(Form(v)),
            Err(e) => Err(error_page(
                current_lang(),
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "ekey.input.malformed",
                    "提交的表单无法读取，请返回重试",
                    format!("Could not read the form: {}", e.body_text()),
                ),
            )),
        }
    }
}

/// Percent-encodes a value for a URL query.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Field errors of a form: field name → message in the page's language.
#[derive(Default, Serialize)]
pub struct FieldErrors(pub std::collections::BTreeMap<String, String>);

impl FieldErrors {
    /// Records the first problem of `field`.
    pub fn add(&mut self, field: &str, message: String) {
        self.0.entry(field.to_string()).or_insert(message);
    }
    /// No problems.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An error shown as a page (status kept), in the visitor's language.
pub fn error_page(lang: Lang, e: ApiError) -> Response {
    let ctx = minijinja::context! {
        lang => lang.pick("zh", "en"),
        title => lang.pick("出错了", "Something went wrong"),
        message => lang.pick(&e.zh, &e.en),
        code => e.code,
    };
    match env()
        .get_template("message.html")
        .and_then(|t| t.render(ctx))
    {
        Ok(body) => (e.status, Html(body)).into_response(),
        Err(_) => (e.status, lang.pick(&e.zh, &e.en).to_string()).into_response(),
    }
}

/// A plain page with a title, a message and optionally a link onwards, in the site's frame.
pub fn message_html(lang: Lang, title: &str, message: &str, link: Option<(&str, &str)>) -> String {
    let ctx = minijinja::context! {
        lang => lang.pick("zh", "en"),
        title => title,
        message => message,
        link => link.map(|l| l.0),
        link_text => link.map(|l| l.1),
    };
    env()
        .get_template("message.html")
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|_| message.to_string())
}

/// A request's history for the timeline of a page: the action, the role and the status
/// after it, in words.
pub fn timeline(lang: Lang, history: &[crate::api::requests::HistoryOut]) -> Vec<Value> {
    use ekey_domain::request::{Status, TABLE};
    history
        .iter()
        .map(|h| {
            let action = TABLE
                .iter()
                .map(|rule| rule.action)
                .find(|a| a.as_str() == h.action)
                .map(|a| lang.pick(a.label_zh(), a.label_en()).to_string())
                .unwrap_or_else(|| match h.action.as_str() {
                    "create" => lang.pick("创建申请", "Created").to_string(),
                    "certificate_revoked" => lang
                        .pick("证书已被服务商吊销", "Certificate revoked by the provider")
                        .to_string(),
                    ekey_store::DEADLINE_RECOMPUTED => lang
                        .pick("办理时限已重新计算", "Deadline recounted")
                        .to_string(),
                    other => other.to_string(),
                });
            let role = Role::parse(&h.actor_role)
                .map(|r| lang.pick(r.label_zh(), r.label_en()))
                .unwrap_or("");
            let status_label = Status::parse(&h.status)
                .map(|s| lang.pick(s.label_zh(), s.label_en()))
                .unwrap_or("");
            minijinja::context! { action => action, role => role, status_label => status_label, ..v(h) }
        })
        .collect()
}

/// Whether an error says the caller may not do this at all (not logged in, not allowed,
/// not visible): such a form post answers with the error page and its status, not with a
/// redirect to a page the caller could not open either.
pub fn is_refusal(e: &ApiError) -> bool {
    matches!(
        e.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    )
}

/// After a form post: to `ok` when the API call worked, else back to `back` with the
/// caller's message in `error=` (shown on the page); a refusal is the error page.
pub fn after<T>(lang: Lang, result: Result<T, ApiError>, ok: &str, back: &str) -> Response {
    match result {
        Ok(_) => see_other(ok),
        Err(e) if is_refusal(&e) => error_page(lang, e),
        Err(e) => {
            let (path, anchor) = back.split_once('#').unwrap_or((back, ""));
            let sep = if path.contains('?') { '&' } else { '?' };
            let anchor = if anchor.is_empty() {
                String::new()
            } else {
                format!("#{anchor}")
            };
            see_other(&format!(
                "{path}{sep}error={}{anchor}",
                encode(lang.pick(&e.zh, &e.en))
            ))
        }
    }
}

/// Redirects after a successful POST (303: the browser GETs the target).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// `scheme://host:port` of the agent URL (no path), as CSP and CORS compare it; a
/// malformed setting falls back to the default agent address.
fn agent_origin(url: &str) -> String {
    let ok = |u: &str| {
        (u.starts_with("http://") || u.starts_with("https://"))
            && u.bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
    };
    let url = url.trim().trim_end_matches('/');
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let origin_len = url.len() - rest.len() + rest.find('/').unwrap_or(rest.len());
    let origin = &url[..origin_len];
    if ok(origin) && !rest.is_empty() {
        origin.to_string()
    } else {
        "http://127.0.0.1:17480".into()
    }
}

async fn static_file(Path(name): Path<String>) -> Response {
    let (body, ty): (&'static str, &str) = match name.as_str() {
        "app.css" => (include_str!("static/app.css"), "text/css; charset=utf-8"),
        "app.js" => (
            include_str!("static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "agent.js" => (
            include_str!("static/agent.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn switch_lang(Path(lang): Path<String>, page: Page) -> Response {
    let next = page
        .path
        .split_once("next=")
        .map(|(_, n)| percent_decode(n.split('&').next().unwrap_or("/")))
        .filter(|n| ekey_domain::redirect::safe_next(n).is_some())
        .unwrap_or_else(|| "/".into());
    let value = if lang == "en" { "en" } else { "zh" };
    let mut res = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={value}; Path=/; Max-Age=31536000; SameSite=Lax{}",
        page.cookie_secure
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// Decodes `%XX` escapes and `+`.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `; Secure` for cookies when the portal's public URL is https, else nothing.
pub fn secure_flag(state: &AppState) -> &'static str {
    if state.config.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// The routes of the pages.
pub fn routes() -> Routes {
    Routes::new()
        .get("/", public::index)
        .get("/static/{name}", static_file)
        .get("/lang/{lang}", switch_lang)
        .get("/login", public::login_page)
        .post("/login", public::login)
        .post("/login/key", keypages::key_login)
        .get("/portal/renewal", keypages::renewal)
        .get("/portal/keys/{id}", keypin::show)
        .post("/portal/keys/{id}/initial-pin", keypin::initial_pin)
        .post("/logout", public::logout)
        .get("/register", public::register_page)
        .post("/register", public::register)
        .get("/register/sent", public::registered)
        .post("/register/resend", public::resend)
        .get("/password/forgot", public::forgot_page)
        .post("/password/forgot", public::forgot)
        .get("/password/reset/{token}", public::reset_page)
        .post("/password/reset/{token}", public::reset)
        .get("/account/password", public::password_page)
        .post("/account/password", public::change_password)
        .get("/result", public::result)
        .get("/dev/mailbox", public::mailbox)
        .get("/console", console::home)
        .get("/console/queue", console::queue)
        .get("/console/admin", admin::home)
        .get("/console/dashboard", dashboard::dashboard)
        .get("/console/certificates", certs::page)
        .post("/console/certificates/{serial}/revoke", certs::revoke)
        .post("/console/admin/outbox/{id}/retry", admin::retry)
        .post("/console/admin/agencies/{province}", admin::agency)
        .post("/console/admin/agencies", admin::agencies_file)
        .post("/console/admin/users", admin::create_user)
        .post("/console/admin/users/{id}/active", admin::set_active)
        .post("/console/admin/enterprises", admin::enterprise_account)
        .get("/console/requests/{id}", console::detail)
        .post("/console/requests/{id}/decision", console::decide)
        .post("/console/requests/{id}/produce", console::produce)
        .post("/console/requests/{id}/notify", delivery::notify_one)
        .post("/console/requests/{id}/receive", console::receive)
        .post("/console/keys/{id}/return", console::key_returned)
        .post("/console/requests/{id}/handover", delivery::handover)
        .get("/console/shipments", delivery::shipments)
        .post("/console/shipments", delivery::create)
        .get("/console/shipments/{id}", delivery::shipment)
        .post("/console/shipments/{id}/receive", delivery::receive)
        .post("/console/shipments/{id}/notify", delivery::notify_all)
        .get("/portal", portal::home)
        .get("/portal/apply", portal::apply)
        .get("/portal/requests/new", portal::new_page)
        .post("/portal/requests/new", portal::create)
        .get("/portal/requests/{id}", portal::show)
        .get("/portal/requests/{id}/edit", portal::edit_page)
        .post("/portal/requests/{id}/edit", portal::edit)
        .post("/portal/requests/{id}/submit", portal::submit)
        .post("/portal/requests/{id}/confirm", portal::confirm)
        .post("/portal/requests/{id}/withdraw", portal::withdraw)
        .post("/portal/requests/{id}/collection", portal::collection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_file_is_compiled_in_and_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/templates");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut known: Vec<String> = TEMPLATES.iter().map(|(n, _)| n.to_string()).collect();
        known.sort();
        assert_eq!(files, known, "templates on disk and in TEMPLATES differ");
        for (name, _) in TEMPLATES {
            env().get_template(name).unwrap();
        }
    }

    #[test]
    fn percent_decoding_reads_what_browsers_write() {
        assert_eq!(percent_decode("%E8%90%A5%E4%B8%9A.jpg"), "营业.jpg");
        assert_eq!(percent_decode("a%20b+c%2B"), "a b c+");
        assert_eq!(percent_decode("100%"), "100%", "a stray % stays");
        assert_eq!(
            percent_decode(&encode("/portal?x=1&y=中")),
            "/portal?x=1&y=中"
        );
    }

    #[test]
    fn text_is_escaped_in_every_template() {
        let html = message_html(Lang::Zh, "<b>x</b>", "<script>alert(1)</script>", None);
        assert!(!html.contains("<script>alert") && html.contains("&lt;script&gt;"));
    }
}

//! Pages anyone can open: the landing page, register, activate (via the API's page),
//! log in and out, forgotten password, the public result query and the demo mailbox.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use ekey_domain::error::DomainError;
use ekey_domain::ident::{CreditCode, Email, IdNumber, Mobile};
use ekey_domain::request::Role;
use ekey_domain::{Lang, province};
use minijinja::context;
use serde::Serialize;

use super::{FieldErrors, Form, Page, error_page, see_other};
use crate::api::ApiJson;
use crate::api::accounts::{self, ContactBody, LoginBody, RegistrationBody, ResendBody};
use crate::api::selfservice::{self, ResetBody, ResetRequestBody};
use crate::auth::{ClientAddr, SESSION_COOKIE};
use crate::error::ApiError;
use crate::state::AppState;

/// The landing page; a logged-in enterprise goes straight to its portal.
pub async fn index(State(state): State<AppState>, page: Page) -> Response {
    if page
        .auth
        .as_ref()
        .is_some_and(|a| a.account.role == ekey_domain::request::Role::Enterprise)
    {
        return see_other("/portal");
    }
    page.render(&state, "index.html", context! {}).await
}

/// Which form field an API error code is about.
pub fn field_of(code: &str) -> &'static str {
    const FIELDS: &[(&str, &str)] = &[
        ("credit_code", "credit_code"),
        ("duplicate_enterprise", "credit_code"),
        ("duplicate_email", "email"),
        ("id_number", "id_number"),
        ("mobile", "mobile"),
        ("email", "email"),
        ("password", "password"),
        ("province", "province"),
        ("login_name", "login_name"),
        ("licence_type", "licence_types"),
        ("reason", "reason"),
        // Not a field's fault: said at the top of the form.
        ("too_many_keys", "_form"),
        ("replacement.no_key", "login_name"),
        ("replacement.condition_required", "key_condition"),
        ("authorised_user", "au_name"),
        ("unlock", "unlock_challenge"),
        ("info_change", "enterprise_change"),
    ];
    FIELDS
        .iter()
        .find(|(needle, _)| code.contains(needle))
        .map(|(_, f)| *f)
        .unwrap_or("_form")
}

fn msg(lang: Lang, e: &ApiError) -> String {
    lang.pick(&e.zh, &e.en).to_string()
}

/// Checks one identifier field, recording its problem in words.
pub fn check<T>(
    errors: &mut FieldErrors,
    lang: Lang,
    field: &str,
    r: Result<T, ekey_domain::ident::IdentError>,
) {
    if let Err(e) = r {
        errors.add(field, DomainError::from(e).message(lang));
    }
}

/// Records `field` as required when empty or too long.
pub fn need(errors: &mut FieldErrors, lang: Lang, field: &'static str, value: &str, max: usize) {
    match ekey_domain::text::check_line(field, value, max) {
        Ok(_) => {}
        Err(DomainError::Required { .. }) => {
            errors.add(field, lang.pick("请填写此项", "Required").to_string())
        }
        Err(DomainError::TooLong { .. }) => errors.add(
            field,
            match lang {
                Lang::Zh => format!("过长，最多 {max} 个字"),
                Lang::En => format!("Too long: at most {max} characters"),
            },
        ),
        Err(_) => errors.add(
            field,
            lang.pick(
                "含有不允许的字符（控制字符、换行、文字方向控制符或不可见字符）",
                "Holds characters that are not allowed (control characters, line breaks, text-direction overrides or invisible characters)",
            )
            .to_string(),
        ),
    }
}

/// The password rules, and the repetition matching.
fn password_errors(form: &Form, lang: Lang, errors: &mut FieldErrors) {
    if let Err(e) = accounts::check_password(form.get("password")) {
        errors.add("password", msg(lang, &e));
    }
    if form.get("password") != form.get("password2") {
        errors.add(
            "password2",
            lang.pick("两次输入的密码不一致", "The passwords differ")
                .into(),
        );
    }
}

/// The `Set-Cookie` value of a new session (`Secure` when the portal is served over TLS).
pub(crate) fn session_cookie(state: &AppState, token: &str) -> String {
    let secure = super::secure_flag(state);
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

pub(crate) fn set_cookie(res: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The login form.
pub async fn login_page(
    State(state): State<AppState>,
    page: Page,
    query: super::portal::Q,
) -> Response {
    let get = |k: &str| super::portal::q(&query, k);
    let notice = match get("done").as_str() {
        "reset" => page.lang.pick(
            "新密码已生效，请用新密码登录。",
            "Your new password is set; log in with it.",
        ),
        "logout" => page.lang.pick("您已退出登录。", "You are logged out."),
        _ => "",
    };
    page.render(
        &state,
        "login.html",
        context! {
            // Only a target that will be followed is carried on (the form and the key
            // login's script send it back).
            next => ekey_domain::redirect::safe_next(&get("next")).unwrap_or_default(),
            notice => notice,
            values => context!{ login => get("login") },
        },
    )
    .await
}

/// Logs in: the session token goes into an HttpOnly cookie.
pub async fn login(
    State(state): State<AppState>,
    addr: ClientAddr,
    page: Page,
    form: Form,
) -> Response {
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let result = accounts::login(
        State(state.clone()),
        addr,
        ApiJson(LoginBody {
            login: form.get("login").to_string(),
            password: form.get("password").to_string(),
        }),
    )
    .await;
    match result {
        Ok(axum::Json(session)) => {
            let target = ekey_domain::redirect::safe_next(form.get("next"))
                .map(str::to_string)
                .unwrap_or_else(|| {
                    if session.role == "enterprise" {
                        "/portal".into()
                    } else {
                        "/console".into()
                    }
                });
            let mut res = see_other(&target);
            set_cookie(&mut res, session_cookie(&state, &session.token));
            res
        }
        Err(e) => {
            let status = e.status;
            page.render_status(
                &state,
                status,
                "login.html",
                context! {
                    error => msg(page.lang, &e),
                    error_code => e.code,
                    next => ekey_domain::redirect::safe_next(form.get("next")).unwrap_or_default(),
                    values => form.values(),
                },
            )
            .await
        }
    }
}

/// Logs out: the session ends on the server and the cookie is cleared.
pub async fn logout(State(state): State<AppState>, page: Page, form: Form) -> Response {
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    if let Some(auth) = &page.auth
        && let Err(e) = state
            .store
            .revoke_session(&auth.token_hash, state.clock.now())
            .await
    {
        return error_page(page.lang, e.into());
    }
    let mut res = see_other("/login?done=logout");
    set_cookie(
        &mut res,
        format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
    );
    res
}

#[derive(Serialize)]
struct ProvinceOpt {
    code: &'static str,
    name: &'static str,
}

fn provinces(lang: Lang) -> Vec<ProvinceOpt> {
    province::all()
        .iter()
        .map(|p| ProvinceOpt {
            code: p.code,
            name: lang.pick(p.name_zh, p.name_en),
        })
        .collect()
}

/// The registration form.
pub async fn register_page(State(state): State<AppState>, page: Page) -> Response {
    page.render(
        &state,
        "register.html",
        context! { provinces => super::v(provinces(page.lang)), values => context!{}, errors => context!{} },
    )
    .await
}

/// Registers: every field checked here (all problems at once, next to their fields), then
/// by the API, which checks them again and stores the registration.
pub async fn register(
    State(state): State<AppState>,
    addr: ClientAddr,
    page: Page,
    form: Form,
) -> Response {
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let lang = page.lang;
    let mut errors = FieldErrors::default();
    need(
        &mut errors,
        lang,
        "enterprise_name",
        form.get("enterprise_name"),
        ekey_domain::text::CERT_NAME_MAX,
    );
    check(
        &mut errors,
        lang,
        "credit_code",
        CreditCode::parse(form.get("credit_code")),
    );
    if province::by_code(form.get("province")).is_none() {
        errors.add(
            "province",
            lang.pick("请选择所在省份", "Choose a province").into(),
        );
    }
    need(&mut errors, lang, "address", form.get("address"), 200);
    need(
        &mut errors,
        lang,
        "legal_representative",
        form.get("legal_representative"),
        50,
    );
    need(
        &mut errors,
        lang,
        "contact_name",
        form.get("contact_name"),
        50,
    );
    check(
        &mut errors,
        lang,
        "id_number",
        IdNumber::parse_on(form.get("id_number"), state.today()),
    );
    check(
        &mut errors,
        lang,
        "mobile",
        Mobile::parse(form.get("mobile")),
    );
    check(&mut errors, lang, "email", Email::parse(form.get("email")));
    password_errors(&form, lang, &mut errors);
    if errors.is_empty() {
        let result = accounts::register(
            State(state.clone()),
            addr,
            ApiJson(RegistrationBody {
                enterprise_name: form.get("enterprise_name").into(),
                credit_code: form.get("credit_code").into(),
                province: form.get("province").into(),
                address: form.get("address").into(),
                legal_representative: form.get("legal_representative").into(),
                contact: ContactBody {
                    name: form.get("contact_name").into(),
                    id_number: form.get("id_number").into(),
                    mobile: form.get("mobile").into(),
                    email: form.get("email").into(),
                },
                password: form.get("password").into(),
            }),
        )
        .await;
        match result {
            Ok(_) => {
                let email = Email::parse(form.get("email"))
                    .map(|e| e.as_str().to_string())
                    .unwrap_or_default();
                return see_other(&format!("/register/sent?email={}", super::encode(&email)));
            }
            Err(e) => errors.add(field_of(e.code), msg(lang, &e)),
        }
    }
    page.render_status(
        &state,
        StatusCode::UNPROCESSABLE_ENTITY,
        "register.html",
        context! { provinces => super::v(provinces(lang)), values => form.values(), errors => super::v(errors) },
    )
    .await
}

/// "Check your mail", with a resend form.
pub async fn registered(
    State(state): State<AppState>,
    page: Page,
    query: super::portal::Q,
) -> Response {
    let get = |k: &str| super::portal::q(&query, k);
    let notice = if get("resent") == "1" {
        page.lang.pick(
            "已重新发送激活邮件，之前的链接已失效。",
            "The activation mail was sent again; earlier links no longer work.",
        )
    } else {
        ""
    };
    page.render(
        &state,
        "registered.html",
        context! { email => get("email"), notice => notice },
    )
    .await
}

/// Sends the activation mail again.
pub async fn resend(
    State(state): State<AppState>,
    addr: ClientAddr,
    page: Page,
    form: Form,
) -> Response {
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let email = form.get("email").trim().to_string();
    match accounts::resend_activation(
        State(state.clone()),
        addr,
        ApiJson(ResendBody {
            email: email.clone(),
        }),
    )
    .await
    {
        Ok(_) => see_other(&format!(
            "/register/sent?resent=1&email={}",
            super::encode(&email)
        )),
        Err(e) => error_page(page.lang, e),
    }
}

/// The "forgot password" form.
pub async fn forgot_page(State(state): State<AppState>, page: Page) -> Response {
    page.render(&state, "forgot.html", context! { values => context!{} })
        .await
}

/// Sends a reset link (the same answer whether or not the login exists).
pub async fn forgot(
    State(state): State<AppState>,
    addr: ClientAddr,
    page: Page,
    form: Form,
) -> Response {
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    match selfservice::request_reset(
        State(state.clone()),
        addr,
        ApiJson(ResetRequestBody {
            login: form.get("login").into(),
        }),
    )
    .await
    {
        Ok(_) => {
            page.render(&state, "forgot.html", context! { sent => true })
                .await
        }
        Err(e) => {
            page.render_status(
                &state,
                e.status,
                "forgot.html",
                context! { error => msg(page.lang, &e), values => form.values() },
            )
            .await
        }
    }
}

/// The new-password form of a reset link.
pub async fn reset_page(
    State(state): State<AppState>,
    page: Page,
    Path(token): Path<String>,
) -> Response {
    page.render(
        &state,
        "reset.html",
        context! { token => token, errors => context!{} },
    )
    .await
}

/// Sets the new password and sends the user to log in.
pub async fn reset(
    State(state): State<AppState>,
    addr: ClientAddr,
    page: Page,
    Path(token): Path<String>,
    form: Form,
) -> Response {
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let lang = page.lang;
    let mut errors = FieldErrors::default();
    password_errors(&form, lang, &mut errors);
    if errors.is_empty() {
        match selfservice::complete_reset(
            State(state.clone()),
            addr,
            Path(token.clone()),
            ApiJson(ResetBody {
                password: form.get("password").into(),
            }),
        )
        .await
        {
            Ok(axum::Json(out)) => {
                let mut res = see_other(&format!(
                    "/login?done=reset&login={}",
                    super::encode(&out.login)
                ));
                set_cookie(
                    &mut res,
                    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
                );
                return res;
            }
            Err(e) => errors.add(field_of(e.code), msg(lang, &e)),
        }
    }
    page.render_status(
        &state,
        StatusCode::UNPROCESSABLE_ENTITY,
        "reset.html",
        context! { token => token, errors => super::v(errors) },
    )
    .await
}

const EVERYONE: &[Role] = &[Role::Enterprise, Role::Agency, Role::Provider, Role::Admin];

/// The change-password form of a logged-in user.
pub async fn password_page(State(state): State<AppState>, page: Page) -> Response {
    if let Err(r) = page.require(EVERYONE) {
        return r;
    }
    page.render(
        &state,
        "password.html",
        context! { errors => context!{}, notice => "" },
    )
    .await
}

/// Changes the password; every other session of the account ends.
pub async fn change_password(State(state): State<AppState>, page: Page, form: Form) -> Response {
    let auth = match page.require(EVERYONE) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    if let Err(r) = page.check_csrf(&form) {
        return r;
    }
    let lang = page.lang;
    let mut errors = FieldErrors::default();
    if form.get("password") != form.get("password2") {
        errors.add(
            "password2",
            lang.pick("两次输入的密码不一致", "The passwords differ")
                .into(),
        );
    }
    if errors.is_empty() {
        let result = accounts::change_password(
            State(state.clone()),
            auth,
            ApiJson(accounts::PasswordChangeBody {
                current_password: form.get("current_password").into(),
                new_password: form.get("password").into(),
            }),
        )
        .await;
        match result {
            Ok(axum::Json(out)) => {
                let notice = if out.ended_sessions > 0 {
                    format!(
                        "{}{}",
                        lang.pick(
                            "新密码已生效。已退出其他设备上的登录：",
                            "Your new password is set. Sessions ended elsewhere: "
                        ),
                        out.ended_sessions
                    )
                } else {
                    lang.pick("新密码已生效。", "Your new password is set.")
                        .to_string()
                };
                return page
                    .render(
                        &state,
                        "password.html",
                        context! { errors => context!{}, notice => notice },
                    )
                    .await;
            }
            Err(e) => {
                let field = match e.code {
                    "ekey.auth.wrong_password" => "current_password",
                    "ekey.registration.weak_password" => "password",
                    _ => "_form",
                };
                let status = e.status;
                errors.add(field, msg(lang, &e));
                return page
                    .render_status(
                        &state,
                        status,
                        "password.html",
                        context! { errors => super::v(errors), notice => "" },
                    )
                    .await;
            }
        }
    }
    page.render_status(
        &state,
        StatusCode::UNPROCESSABLE_ENTITY,
        "password.html",
        context! { errors => super::v(errors), notice => "" },
    )
    .await
}

/// The public result query: request number + credit code, no login.
pub async fn result(
    State(state): State<AppState>,
    page: Page,
    query: super::portal::Q,
) -> Response {
    let get = |k: &str| super::portal::q(&query, k);
    let (number, credit_code) = (get("number"), get("credit_code"));
    let mut result = None;
    let mut error = None;
    if !number.is_empty() || !credit_code.is_empty() {
        match crate::api::public::result(
            State(state.clone()),
            crate::api::ApiQuery(crate::api::public::ResultQuery {
                number: number.clone(),
                credit_code: credit_code.clone(),
            }),
        )
        .await
        {
            Ok(axum::Json(r)) => result = Some(r),
            Err(e) => error = Some(msg(page.lang, &e)),
        }
    }
    let agencies = match crate::api::public::agencies(State(state.clone())).await {
        Ok(axum::Json(a)) => a,
        Err(e) => return error_page(page.lang, e),
    };
    let status = if error.is_some() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    page.render_status(
        &state,
        status,
        "result.html",
        context! {
            number => number, credit_code => credit_code,
            result => super::v(result), error => error, agencies => super::v(agencies),
        },
    )
    .await
}

#[derive(Serialize)]
struct Part {
    text: String,
    link: bool,
}

#[derive(Serialize)]
struct Mail {
    to: String,
    subject: String,
    sent_at: String,
    sms: bool,
    parts: Vec<Part>,
}

/// Splits a plain-text body so its links can be clicked (everything else stays text).
fn linkify(body: &str, base: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find(base) {
        if i > 0 {
            parts.push(Part {
                text: rest[..i].to_string(),
                link: false,
            });
        }
        let end = rest[i..]
            .find(|c: char| c.is_whitespace())
            .map(|e| i + e)
            .unwrap_or(rest.len());
        parts.push(Part {
            text: rest[i..end].to_string(),
            link: true,
        });
        rest = &rest[end..];
    }
    if !rest.is_empty() {
        parts.push(Part {
            text: rest.to_string(),
            link: false,
        });
    }
    parts
}

/// The dev mailbox as a page (demo mode only), newest first, links clickable.
pub async fn mailbox(State(state): State<AppState>, page: Page) -> Response {
    if !state.config.demo {
        return error_page(page.lang, ApiError::not_found("ekey.not_found"));
    }
    let messages = match state.store.dev_mailbox().await {
        Ok(m) => m,
        Err(e) => return error_page(page.lang, e.into()),
    };
    let base = state.config.public_url();
    let mails: Vec<Mail> = messages
        .into_iter()
        .rev()
        .map(|m| Mail {
            sms: m.channel == ekey_store::Channel::Sms,
            parts: linkify(&m.body, &base),
            to: m.to,
            subject: m.subject,
            sent_at: crate::messages::rfc3339(m.sent_at),
        })
        .collect();
    page.render(
        &state,
        "mailbox.html",
        context! { messages => super::v(mails) },
    )
    .await
}

//! The enterprise portal: home (keys and requests), one form per request kind, the request
//! page (timeline, remarks, documents, uploads, collection choice). Every action goes through
//! the same API handlers as the JSON API, so the rules are checked in one place.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::NaiveDate;
use ekey_domain::Lang;
use ekey_domain::ident::{Email, IdNumber, Mobile};
use ekey_domain::request::{Kind, LicenceType, Material, Role, Status};
use minijinja::context;
use serde::Serialize;

use super::public::{check, field_of, need};
use super::{FieldErrors, Form, Page, error_page, see_other};
use crate::api::requests::{
    self, CreateRequestBody, EditRequestBody, ListQuery, LoginNameBody, PersonBody, RequestOut,
};
use crate::api::selfservice::{self, CollectionBody};
use crate::api::{ApiJson, ApiQuery, accounts, keys};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// A query string as ordered pairs.
pub(super) type Q = Query<Vec<(String, String)>>;

/// The (trimmed) value of `k` in a query string, or "".
pub(super) fn q(query: &Q, k: &str) -> String {
    query
        .0
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

fn kind_name(kind: Kind, lang: Lang) -> &'static str {
    lang.pick(kind.name_zh(), kind.name_en())
}

/// What the enterprise has to do (or wait for) next, in words.
pub fn next_step(kind: Kind, status: Status, lang: Lang) -> &'static str {
    use Status::*;
    match status {
        Draft => lang.pick(
            "核对申请表内容，无误后点击“确认提交”",
            "Check the form, then press “Submit”",
        ),
        AwaitingMaterials => lang.pick(
            "下载打印申请材料，签字盖章后拍照或扫描上传，再点击“确认上传”",
            "Print the documents, sign and stamp them, upload the scans, then press “Confirm upload”",
        ),
        AwaitingHandover => lang.pick(
            "打印注销申请表并盖章，连同电子钥匙（遗失的附书面说明）交到发证机构窗口",
            "Print and stamp the cancellation form; bring it with the key (or a statement of loss) to the agency's window",
        ),
        AgencyReview => lang.pick(
            "等待发证机构验核",
            "Waiting for the agency's review",
        ),
        ProviderReview => lang.pick(
            "等待电子钥匙服务商复核",
            "Waiting for the key provider's review",
        ),
        Returned => lang.pick(
            "审核未通过：请按审核备注修改申请表或重新上传材料，然后再次“确认上传”",
            "Returned: fix the form or the scans as the remark says, then confirm the upload again",
        ),
        InProduction => lang.pick(
            "服务商正在制作电子钥匙",
            "The provider is making your key",
        ),
        Shipped => lang.pick(
            "电子钥匙已寄往发证机构",
            "The key is on its way to the agency",
        ),
        AtAgency => lang.pick(
            "电子钥匙已到发证机构，等待领取通知",
            "The key is at the agency; a collection notice follows",
        ),
        ReadyForCollection => lang.pick(
            "可以领取：携带介绍信到发证机构窗口领取，或等待免费邮寄",
            "Ready: collect it at the agency's window with an introduction letter, or wait for the mail",
        ),
        Approved if kind == Kind::Unlock => lang.pick(
            "已批准：请查收主题为“电子钥匙密码重置”的邮件，用其中的解锁码设置新 PIN",
            "Approved: use the unlock code in the mail “电子钥匙密码重置” to set a new PIN",
        ),
        Approved => lang.pick(
            "已批准：插入该电子钥匙登录后，点击“CA证书更新”",
            "Approved: log in with the key inserted and run “CA certificate renewal”",
        ),
        Completed => lang.pick("已办结", "Completed"),
        Refused => lang.pick("申请未获批准（见审核备注）", "Refused (see the remark)"),
        Withdrawn => lang.pick("已撤回", "Withdrawn"),
        Expired => lang.pick(
            "逾期未用钥匙完成，已失效；钥匙继续使用原证书。如需更新，请重新提交更新申请",
            "Not finished with the key in time; the key keeps its certificate. Apply again to renew",
        ),
    }
}

/// What an item of the checklist is, and who signs and stamps it.
fn material_help(item: Material, lang: Lang) -> &'static str {
    use Material::*;
    match item {
        ApplicationForm => lang.pick(
            "本页下载的申请表，打印后由法定代表人签字并加盖企业公章",
            "The application form downloaded here, signed by the legal representative and stamped",
        ),
        BusinessLicence => lang.pick(
            "营业执照副本复印件（含统一社会信用代码），加盖企业公章",
            "A copy of the business licence with the credit code, stamped",
        ),
        ConfirmationLetter => lang.pick(
            "本页下载的电子签章申请确认函，由授权用户签字并加盖企业公章",
            "The e-seal confirmation letter downloaded here, signed by the authorised user and stamped",
        ),
        IdCard => lang.pick(
            "授权用户身份证正反面复印在同一页，加盖企业公章",
            "Both sides of the authorised user's ID card on one page, stamped",
        ),
        PowerOfAttorney => lang.pick(
            "企业出具给授权用户的授权委托书，加盖企业公章",
            "The enterprise's power of attorney for the authorised user, stamped",
        ),
        UserAgreement => lang.pick(
            "数字证书用户协议书，由授权用户签字并加盖企业公章",
            "The certificate user agreement, signed by the authorised user and stamped",
        ),
        UnlockForm => lang.pick(
            "本页下载的解锁申请表，加盖企业公章；每张图片小于200KB",
            "The unlock form downloaded here, stamped; each picture under 200 KB",
        ),
        CancellationForm => lang.pick(
            "本页下载的注销申请表，勾选“注销”并加盖企业公章",
            "The cancellation form downloaded here, 注销 ticked, stamped",
        ),
        LossStatement => lang.pick(
            "钥匙遗失时的书面说明，写明遗失经过，加盖企业公章",
            "If the key is lost: a written statement of the loss, stamped",
        ),
    }
}

#[derive(Serialize)]
struct Doc {
    name: &'static str,
    href: String,
}

fn documents(r: &RequestOut, kind: Kind, lang: Lang) -> Vec<Doc> {
    let base = format!("/api/v1/requests/{}/documents", r.id);
    let doc = |zh, en, file: &str| Doc {
        name: lang.pick(zh, en),
        href: format!("{base}/{file}"),
    };
    match kind {
        Kind::Unlock => vec![doc("解锁申请表", "Unlock form", "unlock-form.pdf")],
        Kind::Cancellation => vec![doc(
            "注销申请表",
            "Cancellation form",
            "cancellation-form.pdf",
        )],
        _ => vec![
            doc("申请表", "Application form", "application-form.pdf"),
            doc(
                "电子签章申请确认函",
                "E-seal confirmation letter",
                "confirmation-letter.pdf",
            ),
        ],
    }
}

fn enterprise_auth(page: &Page) -> Result<&Auth, Response> {
    page.require(&[Role::Enterprise])
}

/// A form posted by an enterprise user: logged in, with this page's CSRF token.
fn enterprise_post(page: &Page, form: &Form) -> Result<Auth, Response> {
    let auth = enterprise_auth(page)?.clone();
    page.check_csrf(form)?;
    Ok(auth)
}

/// Home: my keys (state, expiry) and my requests (status, next step, due date).
pub async fn home(State(state): State<AppState>, page: Page) -> Response {
    let auth = match enterprise_auth(&page) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let lang = page.lang;
    let me = match accounts::me(State(state.clone()), auth.clone()).await {
        Ok(axum::Json(m)) => m,
        Err(e) => return error_page(lang, e),
    };
    let keys = match keys::my_keys(State(state.clone()), auth.clone()).await {
        Ok(axum::Json(k)) => k,
        Err(e) => return error_page(lang, e),
    };
    let holdings = match keys::my_holdings(&state, &auth).await {
        Ok(h) => h,
        Err(e) => return error_page(lang, e),
    };
    let list = match requests::list(
        State(state.clone()),
        auth.clone(),
        ApiQuery(ListQuery {
            status: None,
            q: None,
            limit: Some(200),
            offset: None,
        }),
    )
    .await
    {
        Ok(axum::Json(l)) => l,
        Err(e) => return error_page(lang, e),
    };
    let renewal_ready = list
        .iter()
        .any(|r| r.kind == Kind::Renewal.as_str() && r.status == Status::Approved.as_str());
    let rows: Vec<_> = list
        .into_iter()
        .map(|r| {
            let kind = Kind::parse(&r.kind).unwrap_or(Kind::First);
            let status = Status::parse(&r.status).unwrap_or(Status::Draft);
            context! {
                next => next_step(kind, status, lang),
                kind_label => kind_name(kind, lang),
                open => !status.is_terminal(),
                ..super::v(&r)
            }
        })
        .collect();
    page.render(
        &state,
        "home.html",
        context! {
            me => super::v(me), keys => super::v(keys), requests => rows, renewal_ready => renewal_ready,
            held => holdings.keys_held,
            max_keys => ekey_domain::request::MAX_KEYS,
            room => ekey_domain::keycap::room_for_another(holdings),
        },
    )
    .await
}

#[derive(Serialize)]
struct KindCard {
    kind: &'static str,
    name: &'static str,
    what: &'static str,
    reviewers: &'static str,
    needs_key: bool,
    /// The kind takes a place under the three keys (增办, 重新申领).
    adds_place: bool,
}

fn kind_cards(lang: Lang) -> Vec<KindCard> {
    let card = |kind: Kind,
                what: (&'static str, &'static str),
                rev: (&'static str, &'static str)| KindCard {
        kind: kind.as_str(),
        name: kind_name(kind, lang),
        what: lang.pick(what.0, what.1),
        reviewers: lang.pick(rev.0, rev.1),
        needs_key: kind.targets_existing_key(),
        adds_place: ekey_domain::keycap::takes_a_place(kind),
    };
    let both = ("发证机构验核 → 服务商复核", "agency, then provider");
    vec![
        card(
            Kind::First,
            ("企业第一次申领电子钥匙", "Your enterprise's first key"),
            both,
        ),
        card(
            Kind::Additional,
            (
                "已有钥匙，再增加一把（每家企业最多 3 把，须说明原因）",
                "Another key (at most 3 per enterprise; give a reason)",
            ),
            both,
        ),
        card(
            Kind::Replacement,
            (
                "钥匙遗失或损坏，补办一把；原钥匙将先被作废",
                "A lost or damaged key; the original is revoked first",
            ),
            both,
        ),
        card(
            Kind::Reapplication,
            (
                "企业名称、法定代表人等信息变更后重新申领",
                "After the enterprise's name or legal representative changed",
            ),
            both,
        ),
        card(
            Kind::Renewal,
            (
                "证书即将到期，在线更新证书",
                "Renew a certificate that is about to expire",
            ),
            ("服务商审批", "provider"),
        ),
        card(
            Kind::Unlock,
            (
                "连续输错 6 次 PIN 码后钥匙被锁，申请解锁",
                "Unlock a key locked after 6 wrong PINs",
            ),
            ("服务商审核（3个工作日）", "provider (3 working days)"),
        ),
        card(
            Kind::Cancellation,
            (
                "不再使用电子钥匙，注销证书",
                "Cancel a key you no longer use",
            ),
            ("发证机构受理 → 服务商注销", "agency, then provider"),
        ),
    ]
}

/// Choose what to apply for.
pub async fn apply(State(state): State<AppState>, page: Page) -> Response {
    let auth = match enterprise_auth(&page) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let has_keys = match keys::my_keys(State(state.clone()), auth.clone()).await {
        Ok(axum::Json(k)) => k.iter().any(|k| k.state != "revoked" && k.state != "lost"),
        Err(e) => return error_page(page.lang, e),
    };
    let holdings = match keys::my_holdings(&state, &auth).await {
        Ok(h) => h,
        Err(e) => return error_page(page.lang, e),
    };
    page.render(
        &state,
        "apply.html",
        context! {
            kinds => super::v(kind_cards(page.lang)), has_keys => has_keys,
            held => holdings.keys_held,
            max_keys => ekey_domain::request::MAX_KEYS,
            room => ekey_domain::keycap::room_for_another(holdings),
        },
    )
    .await
}

#[derive(Serialize)]
struct LicenceOpt {
    value: &'static str,
    label: &'static str,
}

fn licence_options(lang: Lang) -> Vec<LicenceOpt> {
    LicenceType::ALL
        .iter()
        .map(|t| LicenceOpt {
            value: t.as_str(),
            label: match lang {
                Lang::Zh => t.name_zh(),
                Lang::En => t.name_en(),
            },
        })
        .collect()
}

async fn form_context(
    state: &AppState,
    page: &Page,
    auth: &Auth,
    kind: Kind,
    values: minijinja::Value,
    errors: &FieldErrors,
    editing: Option<&RequestOut>,
) -> Result<minijinja::Value, Response> {
    let key_names: Vec<String> = match keys::my_keys(State(state.clone()), auth.clone()).await {
        Ok(axum::Json(k)) => k
            .into_iter()
            .filter(|k| k.state != "revoked" && k.state != "lost")
            .map(|k| k.login_name)
            .collect(),
        Err(e) => return Err(error_page(page.lang, e)),
    };
    // 重新申领（信息变更）: the new data starts from what is registered.
    let current = if kind == Kind::Reapplication {
        state
            .store
            .enterprise(auth.account.enterprise_id.as_deref().unwrap_or(""))
            .await
            .ok()
            .flatten()
            .map(|e| {
                context! { name => e.name, legal_representative => e.legal_representative,
                address => e.address }
            })
    } else {
        None
    };
    Ok(context! {
        current => current,
        kind => kind.as_str(),
        kind_label => kind_name(kind, page.lang),
        needs_licence_types => kind.needs_licence_types(),
        needs_reason => kind.needs_reason(),
        targets_key => kind.targets_existing_key(),
        licence_options => super::v(licence_options(page.lang)),
        key_names => key_names,
        values => values,
        errors => super::v(errors),
        editing => editing.map(super::v),
    })
}

/// The form of a new request of one kind.
pub async fn new_page(State(state): State<AppState>, page: Page, query: Q) -> Response {
    let auth = match enterprise_auth(&page) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let kind = match Kind::parse(&q(&query, "kind")) {
        Ok(k) => k,
        Err(_) => return see_other("/portal/apply"),
    };
    let login_name = q(&query, "login_name");
    let values = context! {
        au_name => auth.account.display_name.clone(),
        au_mobile => auth.account.mobile.clone(),
        au_email => auth.account.email.clone(),
        login_mode => if kind.targets_existing_key() { "original" } else { "allocate" },
        login_name => login_name,
    };
    match form_context(
        &state,
        &page,
        &auth,
        kind,
        values,
        &FieldErrors::default(),
        None,
    )
    .await
    {
        Ok(ctx) => page.render(&state, "request_form.html", ctx).await,
        Err(r) => r,
    }
}

fn person_errors(form: &Form, lang: Lang, today: NaiveDate, errors: &mut FieldErrors) {
    need(errors, lang, "au_name", form.get("au_name"), 50);
    check(
        errors,
        lang,
        "au_id_number",
        IdNumber::parse_on(form.get("au_id_number"), today),
    );
    check(
        errors,
        lang,
        "au_mobile",
        Mobile::parse(form.get("au_mobile")),
    );
    check(errors, lang, "au_email", Email::parse(form.get("au_email")));
}

fn person_body(form: &Form) -> PersonBody {
    PersonBody {
        name: form.get("au_name").into(),
        id_number: form.get("au_id_number").into(),
        mobile: form.get("au_mobile").into(),
        email: form.get("au_email").into(),
    }
}

fn common_errors(kind: Kind, form: &Form, lang: Lang, today: NaiveDate, errors: &mut FieldErrors) {
    if kind.needs_licence_types() && form.all("licence_types").is_empty() {
        errors.add(
            "licence_types",
            lang.pick(
                "请至少勾选一项许可证业务",
                "Tick at least one licence business",
            )
            .into(),
        );
    }
    if kind.needs_reason() && form.get("reason").trim().is_empty() {
        errors.add(
            "reason",
            lang.pick("请填写申请原因", "Give the reason").into(),
        );
    }
    if form.get("reason").chars().count() > 500 {
        errors.add(
            "reason",
            lang.pick("原因最多 500 个字", "At most 500 characters")
                .into(),
        );
    }
    person_errors(form, lang, today, errors);
}

/// Creates the request (a draft) and shows it.
pub async fn create(State(state): State<AppState>, page: Page, query: Q, form: Form) -> Response {
    let auth = match enterprise_post(&page, &form) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let lang = page.lang;
    let kind = match Kind::parse(
        if form.get("kind").is_empty() {
            q(&query, "kind")
        } else {
            form.get("kind").to_string()
        }
        .as_str(),
    ) {
        Ok(k) => k,
        Err(e) => return error_page(lang, e.into()),
    };
    let mut errors = FieldErrors::default();
    common_errors(kind, &form, lang, state.today(), &mut errors);
    let mode = form.get("login_mode").to_string();
    let value = form.get("login_name").trim().to_string();
    if (mode == "existing" || mode == "original") && value.is_empty() {
        errors.add(
            "login_name",
            lang.pick("请填写登录名", "Enter the login name").into(),
        );
    }
    if errors.is_empty() {
        let result = requests::create(
            State(state.clone()),
            auth.clone(),
            ApiJson(CreateRequestBody {
                kind: kind.as_str().into(),
                licence_types: form.all("licence_types"),
                login_name: LoginNameBody {
                    mode,
                    value: (!value.is_empty()).then_some(value),
                },
                reason: Some(form.get("reason").to_string()),
                authorised_user: person_body(&form),
                confirmation_letter_user: None,
                key_lost: key_lost_typed(kind, &form),
                unlock_challenge: Some(form.get("unlock_challenge").to_string()),
                enterprise_change: (kind == Kind::Reapplication).then(|| {
                    requests::EnterpriseFactsBody {
                        name: form.get("new_name").to_string(),
                        legal_representative: form.get("new_legal_representative").to_string(),
                        address: form.get("new_address").to_string(),
                    }
                }),
            }),
        )
        .await;
        match result {
            Ok((_, axum::Json(created))) => {
                return see_other(&format!("/portal/requests/{}?done=created", created.id));
            }
            Err(e) => errors.add(field_of(e.code), lang.pick(&e.zh, &e.en).to_string()),
        }
    }
    match form_context(&state, &page, &auth, kind, form.values(), &errors, None).await {
        Ok(ctx) => {
            page.render_status(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                "request_form.html",
                ctx,
            )
            .await
        }
        Err(r) => r,
    }
}

async fn load(state: &AppState, auth: &Auth, id: &str) -> Result<RequestOut, ApiError> {
    requests::get(State(state.clone()), auth.clone(), Path(id.to_string()))
        .await
        .map(|j| j.0)
}

/// What the form says of the key: a 补办 chooses lost or damaged (nothing chosen: `None`,
/// refused), a 注销 ticks "lost".
fn key_lost_typed(kind: Kind, form: &Form) -> Option<bool> {
    match kind {
        Kind::Replacement => match form.get("key_condition") {
            "lost" => Some(true),
            "damaged" => Some(false),
            _ => None,
        },
        Kind::Cancellation => Some(form.get("key_lost") == "on"),
        _ => None,
    }
}

/// The request: status, next step, due date, form, documents, uploads, collection, timeline.
pub async fn show(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    query: Q,
) -> Response {
    show_with(state, page, id, query, None).await
}

/// A collection choice typed but refused: what was typed, and the problem at its field.
struct CollectionTyped {
    values: minijinja::Value,
    errors: FieldErrors,
}

/// The field of the collection form an error code concerns.
fn collection_field(code: &str) -> &'static str {
    ["recipient", "mobile", "id_number", "address"]
        .into_iter()
        .find(|f| code.contains(f))
        .unwrap_or("_form")
}

async fn show_with(
    state: AppState,
    page: Page,
    id: String,
    query: Q,
    typed: Option<CollectionTyped>,
) -> Response {
    let auth = match enterprise_auth(&page) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let lang = page.lang;
    let r = match load(&state, &auth, &id).await {
        Ok(r) => r,
        Err(e) => return error_page(lang, e),
    };
    let kind = Kind::parse(&r.kind).unwrap_or(Kind::First);
    let status = Status::parse(&r.status).unwrap_or(Status::Draft);
    let enterprise = state
        .store
        .enterprise(auth.account.enterprise_id.as_deref().unwrap_or(""))
        .await
        .ok()
        .flatten();
    // The latest return: its remark is shown next to what it concerns.
    // (By its action: an edit while returned also ends in `returned`, without a remark.)
    let last_return = r
        .history
        .iter()
        .rev()
        .find(|h| {
            matches!(
                h.action.as_str(),
                "agency_return" | "provider_return" | "agency_refuse"
            )
        })
        .filter(|_| matches!(status, Status::Returned | Status::Refused));
    let concerns: Vec<String> = last_return.map(|h| h.concerns.clone()).unwrap_or_default();
    let remark = last_return.and_then(|h| h.remark.clone());
    let can_upload = match (kind, status) {
        (Kind::Cancellation, Status::Draft | Status::AwaitingHandover | Status::Returned) => true,
        (Kind::Cancellation, _) => false,
        (_, Status::AwaitingMaterials | Status::Returned) => true,
        _ => false,
    };
    let complete = r.materials.iter().all(|m| !m.required || m.present) && r.to_replace.is_empty();
    // A return must be answered: what to upload anew, in words.
    let to_replace: Vec<String> = r
        .to_replace
        .iter()
        .map(|c| ekey_domain::returns::concern_label(c, lang))
        .collect();
    let can_confirm = r.actions.iter().any(|a| a == "confirm_upload");
    let collection_open = kind.produces_key()
        && !status.is_terminal()
        && !matches!(status, Status::Draft | Status::AwaitingMaterials);
    let materials: Vec<_> = r
        .materials
        .iter()
        .map(|m| {
            let item = Material::parse(&m.item).unwrap_or(Material::ApplicationForm);
            // The papers eKey prints for an item of the checklist, linked beside it.
            let paper = match item {
                Material::PowerOfAttorney => Some("power-of-attorney.pdf"),
                Material::UserAgreement => Some("user-agreement.pdf"),
                _ => None,
            }
            .filter(|_| status != Status::Draft)
            .map(|f| format!("/api/v1/requests/{}/documents/{f}", r.id));
            context! {
                help => material_help(item, lang),
                paper => paper,
                flagged => concerns.contains(&m.item),
                ..super::v(m)
            }
        })
        .collect();
    let history = super::timeline(lang, &r.history);
    let notice = match q(&query, "done").as_str() {
        "created" => lang.pick(
            "申请已保存为草稿。请核对下面的内容，无误后点击“确认提交”。",
            "Saved as a draft. Check it, then press “Submit”.",
        ),
        "submitted" => lang.pick(
            "已确认提交。请下载打印申请材料，签字盖章后上传扫描件。",
            "Submitted. Download and print the documents, sign and stamp them, then upload the scans.",
        ),
        "confirmed" => lang.pick(
            "已确认上传，申请已送审。审核结果会通过邮件通知您。",
            "Upload confirmed; the request is under review. You will get a mail with the result.",
        ),
        "edited" => lang.pick("申请表已修改。", "The form was changed."),
        "collection" => lang.pick("领取方式已保存。", "Collection method saved."),
        "withdrawn" => lang.pick("申请已撤回。", "The request was withdrawn."),
        _ => "",
    };
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
    let error = q(&query, "error");
    // An approved unlock is finished with the locked key: the page's script needs its serial.
    let unlock_serial = if kind == Kind::Unlock && status == Status::Approved {
        match state
            .store
            .keys_by_login_name(r.login_name.as_deref().unwrap_or_default())
            .await
        {
            Ok(keys) => keys
                .into_iter()
                .find(|k| Some(&k.enterprise_id) == auth.account.enterprise_id.as_ref())
                .and_then(|k| k.token_serial),
            Err(e) => return error_page(lang, e.into()),
        }
    } else {
        None
    };
    page.render(
        &state,
        "request.html",
        context! {
            r => super::v(&r),
            kind_label => kind_name(kind, lang),
            next => next_step(kind, status, lang),
            documents => super::v(if status == Status::Draft { vec![] } else { documents(&r, kind, lang) }),
            can_upload => can_upload,
            can_confirm => can_confirm,
            complete => complete,
            limit => kind.upload_limit(),
            limit_words => ekey_domain::upload::SizeLimit::for_kind(kind).words(lang),
            materials => materials,
            history => history,
            remark => remark,
            concerns => concerns,
            to_replace => to_replace,
            notice => notice,
            error => error,
            licence_labels => licence_labels,
            can_edit => r.actions.iter().any(|a| a == "edit"),
            can_submit => r.actions.iter().any(|a| a == "submit"),
            can_withdraw => r.actions.iter().any(|a| a == "withdraw"),
            collection_open => collection_open,
            registered_address => enterprise.map(|e| e.address),
            unlock_serial => unlock_serial,
            typed_collection => typed.as_ref().map(|t| t.values.clone()),
            collection_errors => typed.as_ref().map(|t| super::v(&t.errors)),
        },
    )
    .await
}

/// The form of a draft or returned request, to correct it.
pub async fn edit_page(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
) -> Response {
    let auth = match enterprise_auth(&page) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let r = match load(&state, &auth, &id).await {
        Ok(r) => r,
        Err(e) => return error_page(page.lang, e),
    };
    let kind = Kind::parse(&r.kind).unwrap_or(Kind::First);
    let values = context! {
        licence_types => r.form.licence_types.clone(),
        reason => r.form.reason.clone(),
        au_name => r.form.authorised_user.name.clone(),
        au_id_number => r.form.authorised_user.id_number.clone(),
        au_mobile => r.form.authorised_user.mobile.clone(),
        au_email => r.form.authorised_user.email.clone(),
        key_lost => if r.form.key_lost { "on" } else { "" },
        key_condition => if r.form.key_lost { "lost" } else { "damaged" },
        unlock_challenge => r.form.unlock_challenge.clone(),
        login_name => r.login_name.clone(),
        new_name => r.enterprise_change.iter().find(|c| c.field == "name").map(|c| c.after.clone()),
        new_legal_representative => r.enterprise_change.iter().find(|c| c.field == "legal_representative").map(|c| c.after.clone()),
        new_address => r.enterprise_change.iter().find(|c| c.field == "address").map(|c| c.after.clone()),
    };
    match form_context(
        &state,
        &page,
        &auth,
        kind,
        values,
        &FieldErrors::default(),
        Some(&r),
    )
    .await
    {
        Ok(ctx) => page.render(&state, "request_form.html", ctx).await,
        Err(r) => r,
    }
}

/// Saves the corrected form.
pub async fn edit(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let auth = match enterprise_post(&page, &form) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let lang = page.lang;
    let r = match load(&state, &auth, &id).await {
        Ok(r) => r,
        Err(e) => return error_page(lang, e),
    };
    let kind = Kind::parse(&r.kind).unwrap_or(Kind::First);
    let mut errors = FieldErrors::default();
    common_errors(kind, &form, lang, state.today(), &mut errors);
    if errors.is_empty() {
        let result = requests::edit(
            State(state.clone()),
            auth.clone(),
            Path(id.clone()),
            ApiJson(EditRequestBody {
                licence_types: kind
                    .needs_licence_types()
                    .then(|| form.all("licence_types")),
                reason: Some(form.get("reason").to_string()),
                authorised_user: Some(person_body(&form)),
                key_lost: key_lost_typed(kind, &form),
                unlock_challenge: (kind == Kind::Unlock)
                    .then(|| form.get("unlock_challenge").to_string()),
                enterprise_change: (kind == Kind::Reapplication).then(|| {
                    requests::EnterpriseFactsBody {
                        name: form.get("new_name").to_string(),
                        legal_representative: form.get("new_legal_representative").to_string(),
                        address: form.get("new_address").to_string(),
                    }
                }),
            }),
        )
        .await;
        match result {
            Ok(_) => return see_other(&format!("/portal/requests/{id}?done=edited")),
            Err(e) => errors.add(field_of(e.code), lang.pick(&e.zh, &e.en).to_string()),
        }
    }
    let values = context! {
        licence_types => form.all("licence_types"),
        login_name => r.login_name.clone(),
        ..form.values()
    };
    match form_context(&state, &page, &auth, kind, values, &errors, Some(&r)).await {
        Ok(ctx) => {
            page.render_status(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                "request_form.html",
                ctx,
            )
            .await
        }
        Err(r) => r,
    }
}

type ActionFn = fn(
    State<AppState>,
    Auth,
    Path<String>,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<axum::Json<RequestOut>, ApiError>> + Send>,
>;

async fn simple(
    state: AppState,
    page: Page,
    id: String,
    form: Form,
    action: ActionFn,
    done: &str,
    already: &[Status],
) -> Response {
    let auth = match enterprise_post(&page, &form) {
        Ok(a) => a,
        Err(r) => return r,
    };
    match action(State(state.clone()), auth.clone(), Path(id.clone())).await {
        Ok(_) => see_other(&format!("/portal/requests/{id}?done={done}")),
        Err(e) if super::is_refusal(&e) => super::error_page(page.lang, e),
        Err(e) => {
            // A second click of the same button (double-click, back and resubmit) finds the
            // step already done: show the request, not an error.
            if let Ok(r) = load(&state, &auth, &id).await
                && Status::parse(&r.status).is_some_and(|s| already.contains(&s))
            {
                return see_other(&format!("/portal/requests/{id}"));
            }
            see_other(&format!(
                "/portal/requests/{id}?error={}",
                super::encode(page.lang.pick(&e.zh, &e.en))
            ))
        }
    }
}

/// 确认提交.
pub async fn submit(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    simple(
        state,
        page,
        id,
        form,
        |s, a, p| Box::pin(requests::submit(s, a, p)),
        "submitted",
        &[Status::AwaitingMaterials, Status::AwaitingHandover],
    )
    .await
}

/// 确认上传.
pub async fn confirm(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    simple(
        state,
        page,
        id,
        form,
        |s, a, p| Box::pin(requests::confirm_upload(s, a, p)),
        "confirmed",
        &[Status::AgencyReview, Status::ProviderReview],
    )
    .await
}

/// Withdraw.
pub async fn withdraw(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    simple(
        state,
        page,
        id,
        form,
        |s, a, p| Box::pin(requests::withdraw(s, a, p)),
        "withdrawn",
        &[Status::Withdrawn],
    )
    .await
}

/// Window collection or free mailing.
pub async fn collection(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    let auth = match enterprise_post(&page, &form) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body = CollectionBody {
        method: form.get("method").into(),
        recipient: form.get("recipient").into(),
        address: form.get("address").into(),
        mobile: form.get("mobile").into(),
        id_number: form.get("id_number").into(),
    };
    let result =
        selfservice::choose_collection(State(state.clone()), auth, Path(id.clone()), ApiJson(body))
            .await;
    match result {
        Err(e) if !super::is_refusal(&e) => {
            // Shown again with everything typed and the problem at its field.
            let mut errors = FieldErrors::default();
            errors.add(
                collection_field(e.code),
                page.lang.pick(&e.zh, &e.en).to_string(),
            );
            let status = e.status;
            let typed = CollectionTyped {
                values: form.values(),
                errors,
            };
            let mut response = show_with(state, page, id, Query(Vec::new()), Some(typed)).await;
            if response.status() == StatusCode::OK {
                *response.status_mut() = status;
            }
            response
        }
        result => super::after(
            page.lang,
            result,
            &format!("/portal/requests/{id}?done=collection#collection"),
            &format!("/portal/requests/{id}#collection"),
        ),
    }
}

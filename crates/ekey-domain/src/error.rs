//! The one error type of the domain rules. Every variant has a stable machine code and a
//! sentence for people in Chinese and English.

use crate::Lang;
use crate::calendar::CalendarError;
use crate::ident::IdentError;
use crate::key::{KeyEvent, KeyState};
use crate::request::{Action, Kind, Material, Role, Status};
use crate::upload::UploadError;

/// How the edge should treat an error (HTTP status, page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The caller sent something invalid (400/422).
    Invalid,
    /// The caller may not do this (403).
    Forbidden,
    /// The object is not there or not visible to the caller (404).
    NotFound,
    /// The object is not in a state that allows this (409).
    Conflict,
}

/// A rule of the domain was broken; nothing has been changed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DomainError {
    /// An identifier (credit code, ID number, mobile, email) is malformed.
    #[error(transparent)]
    Ident(#[from] IdentError),
    /// An uploaded file is of a type we do not accept, empty, or too large.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// A holiday calendar file could not be used.
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    /// A request naming an existing key breaks the key-limit or one-at-a-time rules.
    #[error(transparent)]
    KeyCap(#[from] crate::keycap::KeyCapError),
    /// The province code is not one of the 31 provincial-level divisions.
    #[error("unknown province {0}")]
    UnknownProvince(String),
    /// The request kind name is unknown.
    #[error("unknown request kind {0}")]
    UnknownKind(String),
    /// The licence type name is unknown.
    #[error("unknown licence type {0}")]
    UnknownLicenceType(String),
    /// The material item name is unknown.
    #[error("unknown material item {0}")]
    UnknownMaterial(String),
    /// The unlock challenge is not what a key prints (hex, as `ekey key challenge` shows it).
    #[error("unlock challenge malformed")]
    UnlockChallengeFormat,
    /// An unlock request is submitted without the locked key's challenge: the provider
    /// could not compute its unlock code.
    #[error("unlock challenge missing")]
    UnlockChallengeMissing,
    /// A required field is empty.
    #[error("field {field} is required")]
    Required {
        /// Machine name of the field.
        field: &'static str,
    },
    /// A text field is longer than allowed.
    #[error("field {field} longer than {max}")]
    TooLong {
        /// Machine name of the field.
        field: &'static str,
        /// The maximum number of characters.
        max: usize,
    },
    /// A name or address holds a control character, a bidirectional override or an
    /// invisible character (see [`crate::text::is_forbidden_char`]).
    #[error("field {field} holds forbidden characters")]
    ForbiddenCharacters {
        /// Machine name of the field.
        field: &'static str,
    },
    /// No licence business was ticked on the form.
    #[error("no licence type chosen")]
    NoLicenceType,
    /// 增办 and 补办 need a reason.
    #[error("a reason is required for {0:?}")]
    ReasonRequired(Kind),
    /// The enterprise would hold more than three keys.
    #[error("enterprise already holds {held} keys")]
    TooManyKeys {
        /// Keys active or in progress now.
        held: u32,
    },
    /// A first issue was asked by an enterprise that already holds or awaits a key.
    #[error("enterprise already has a key: use additional")]
    NotFirst,
    /// An additional key was asked by an enterprise that holds none.
    #[error("no key held: use first issue")]
    NoKeyYet,
    /// The login-name mode does not fit the request kind.
    #[error("login name mode {mode} not allowed for {kind:?}")]
    LoginNameMode {
        /// The request kind.
        kind: Kind,
        /// The mode given.
        mode: String,
    },
    /// A login name was required but not given.
    #[error("login name required")]
    LoginNameRequired,
    /// The login name has characters or a length we do not accept.
    #[error("login name malformed")]
    LoginNameFormat,
    /// The login name is registered to someone else.
    #[error("login name taken")]
    LoginNameTaken,
    /// A name of the registry's allocation namespace was typed in as an existing one.
    #[error("login name in the allocation namespace")]
    LoginNameAllocatedPattern,
    /// The enterprise holds the most unused reserved login names already.
    #[error("too many reserved login names")]
    TooManyLoginNameReservations,
    /// The login name is not one of this enterprise's.
    #[error("login name not owned by the enterprise")]
    LoginNameNotOwned,
    /// Only electromechanical importers bring an existing login name.
    #[error("existing login name needs the mechanical import licence type")]
    ExistingNameNeedsMechanical,
    /// The authorised user on the confirmation letter is not the one on the form.
    #[error("authorised user differs between form and confirmation letter")]
    AuthorisedUserMismatch,
    /// The action is not possible in the request's current status.
    #[error("action {action:?} not possible in status {status:?}")]
    WrongState {
        /// Current status.
        status: Status,
        /// Action attempted.
        action: Action,
    },
    /// The action does not exist for this kind of request.
    #[error("action {action:?} does not apply to {kind:?}")]
    NotApplicable {
        /// The request kind.
        kind: Kind,
        /// The action attempted.
        action: Action,
    },
    /// The actor's role may not take this action.
    #[error("role {actual:?} may not; {required:?} may")]
    WrongRole {
        /// The role that may take it.
        required: Role,
        /// The role that tried.
        actual: Role,
    },
    /// The actor's scope (own enterprise, own province) does not cover the request.
    #[error("out of scope")]
    OutOfScope,
    /// Returning or refusing needs a remark for the enterprise.
    #[error("remark required")]
    RemarkRequired,
    /// Confirm-upload with items of the checklist missing.
    #[error("materials missing: {0:?}")]
    MaterialsMissing(Vec<Material>),
    /// Confirm-upload after a return while items the return (or a later change of the
    /// form) asks to be uploaded anew still carry the old file.
    #[error("materials to replace after the return: {0:?}")]
    MaterialsToReplace(Vec<Material>),
    /// 重新申领（信息变更） whose new enterprise data equals what eKey holds.
    #[error("enterprise change changes nothing")]
    InfoChangeUnchanged,
    /// Changed enterprise data on a request of another kind than 重新申领（信息变更）.
    #[error("enterprise change on a {0:?} request")]
    InfoChangeNotReapplication(Kind),
    /// The item is not part of this kind's checklist.
    #[error("material {item:?} not in checklist of {kind:?}")]
    MaterialNotInChecklist {
        /// The request kind.
        kind: Kind,
        /// The item uploaded.
        item: Material,
    },
    /// Materials can only change while the request waits for them.
    #[error("materials locked in status {0:?}")]
    MaterialsLocked(Status),
    /// The key is not in a state where this can happen to it.
    #[error("key in state {state:?} cannot {event:?}")]
    KeyWrongState {
        /// Current state.
        state: KeyState,
        /// What was attempted.
        event: KeyEvent,
    },
    /// A handover record lacks a paper the rules require (named).
    #[error("handover incomplete: {0}")]
    HandoverIncomplete(&'static str),
    /// The mailing address is not the registered or business address.
    #[error("mailing address does not match the registered address")]
    MailingAddressMismatch,
}

impl DomainError {
    /// Stable machine code, `ekey.<area>.<what>`.
    pub fn code(&self) -> &'static str {
        use DomainError::*;
        match self {
            Ident(e) => e.code(),
            Upload(e) => e.code(),
            Calendar(e) => e.code(),
            KeyCap(e) => e.code(),
            UnknownProvince(_) => "ekey.province.unknown",
            UnknownKind(_) => "ekey.request.unknown_kind",
            UnknownLicenceType(_) => "ekey.request.unknown_licence_type",
            UnknownMaterial(_) => "ekey.material.unknown_item",
            UnlockChallengeFormat => "ekey.unlock.challenge_format",
            UnlockChallengeMissing => "ekey.unlock.challenge_missing",
            Required { .. } => "ekey.input.required",
            TooLong { .. } => "ekey.input.too_long",
            ForbiddenCharacters { .. } => "ekey.input.forbidden_characters",
            NoLicenceType => "ekey.request.no_licence_type",
            ReasonRequired(_) => "ekey.request.reason_required",
            TooManyKeys { .. } => "ekey.request.too_many_keys",
            NotFirst => "ekey.request.not_first",
            NoKeyYet => "ekey.request.no_key_yet",
            LoginNameMode { .. } => "ekey.login_name.mode",
            LoginNameRequired => "ekey.login_name.required",
            LoginNameFormat => "ekey.login_name.format",
            LoginNameTaken => "ekey.login_name.taken",
            LoginNameAllocatedPattern => "ekey.login_name.allocated_pattern",
            TooManyLoginNameReservations => "ekey.login_name.too_many_reservations",
            LoginNameNotOwned => "ekey.login_name.not_owned",
            ExistingNameNeedsMechanical => "ekey.login_name.existing_needs_mechanical",
            AuthorisedUserMismatch => "ekey.request.authorised_user_mismatch",
            WrongState { .. } => "ekey.request.wrong_state",
            NotApplicable { .. } => "ekey.request.not_applicable",
            WrongRole { .. } => "ekey.auth.wrong_role",
            OutOfScope => "ekey.auth.out_of_scope",
            RemarkRequired => "ekey.request.remark_required",
            MaterialsMissing(_) => "ekey.material.missing",
            MaterialsToReplace(_) => "ekey.material.replace_after_return",
            InfoChangeUnchanged => "ekey.info_change.unchanged",
            InfoChangeNotReapplication(_) => "ekey.info_change.wrong_kind",
            MaterialNotInChecklist { .. } => "ekey.material.not_in_checklist",
            MaterialsLocked(_) => "ekey.material.locked",
            KeyWrongState { .. } => "ekey.key.wrong_state",
            HandoverIncomplete(_) => "ekey.handover.incomplete",
            MailingAddressMismatch => "ekey.handover.address_mismatch",
        }
    }

    /// How the edge should answer.
    pub fn class(&self) -> ErrorClass {
        use DomainError::*;
        match self {
            WrongRole { .. } | OutOfScope => ErrorClass::Forbidden,
            KeyCap(e) if e.is_conflict() => ErrorClass::Conflict,
            WrongState { .. }
            | MaterialsLocked(_)
            | LoginNameTaken
            | TooManyLoginNameReservations
            | KeyWrongState { .. } => ErrorClass::Conflict,
            _ => ErrorClass::Invalid,
        }
    }

    /// A sentence for the person who caused it.
    pub fn message(&self, lang: Lang) -> String {
        use DomainError::*;
        let zh = lang == Lang::Zh;
        match self {
            Ident(e) => e.message(lang),
            Upload(e) => e.message(lang),
            Calendar(e) => e.message(lang),
            KeyCap(e) => e.message(lang),
            UnknownProvince(p) => {
                if zh {
                    format!("未知的省份代码“{p}”：请填写六位行政区划代码，如江苏 320000")
                } else {
                    format!("Unknown province code \"{p}\": use the six-digit GB/T 2260 code, e.g. 320000 for Jiangsu")
                }
            }
            UnknownKind(k) => {
                if zh {
                    format!("未知的申请类型“{k}”")
                } else {
                    format!("Unknown request kind \"{k}\"")
                }
            }
            UnknownLicenceType(t) => {
                if zh {
                    format!("未知的许可证业务类型“{t}”")
                } else {
                    format!("Unknown licence type \"{t}\"")
                }
            }
            UnknownMaterial(m) => {
                if zh {
                    format!("未知的材料项目“{m}”")
                } else {
                    format!("Unknown material item \"{m}\"")
                }
            }
            UnlockChallengeMissing => {
                if zh {
                    "请先填写钥匙的解锁挑战码再确认提交：启动电子钥匙助手并插入被锁的钥匙，点击“从插入的钥匙读取”，或把助手窗口显示的挑战码复制到这里".into()
                } else {
                    "Add the key's unlock challenge before submitting: start the key helper, insert the locked key and press “Read it from the inserted key”, or paste the challenge the helper's window shows".into()
                }
            }
            UnlockChallengeFormat => {
                if zh {
                    "解锁挑战码格式不正确：请插入被锁的钥匙，原样复制助手或 `ekey key challenge` 显示的挑战码（十六进制）".into()
                } else {
                    "The unlock challenge is malformed: copy it exactly as the agent or `ekey key challenge` shows it (hex)".into()
                }
            }
            Required { field } => {
                if zh {
                    format!("请填写{}", field_zh(field))
                } else {
                    format!("{} is required", field_en(field))
                }
            }
            TooLong { field, max } => {
                if zh {
                    format!("{}过长，最多 {max} 个字", field_zh(field))
                } else {
                    format!("{} is too long: at most {max} characters", field_en(field))
                }
            }
            ForbiddenCharacters { field } => {
                if zh {
                    format!(
                        "{}含有不允许的字符（控制字符、换行、文字方向控制符或不可见字符），请删除后重新填写",
                        field_zh(field)
                    )
                } else {
                    format!(
                        "{} holds characters that are not allowed (control characters, line breaks, text-direction overrides or invisible characters)",
                        field_en(field)
                    )
                }
            }
            NoLicenceType => lang
                .pick(
                    "请至少勾选一项许可证业务类型",
                    "Tick at least one licence business type",
                )
                .into(),
            ReasonRequired(kind) => {
                if zh {
                    format!("{}申请必须在申请表中写明理由", kind.name_zh())
                } else {
                    format!("A {} request must state its reason", kind.name_en())
                }
            }
            TooManyKeys { held } => {
                if zh {
                    format!(
                        "每家企业最多持有 3 个电子钥匙（含办理中），贵单位已有 {held} 个，不能再增办"
                    )
                } else {
                    format!(
                        "An enterprise holds at most 3 keys (including those in progress); you have {held}"
                    )
                }
            }
            NotFirst => lang
                .pick(
                    "贵单位已持有或正在申领电子钥匙，请选择“增办”",
                    "Your enterprise already holds or is applying for a key: choose \"additional\"",
                )
                .into(),
            NoKeyYet => lang
                .pick(
                    "贵单位尚未持有电子钥匙，请选择“首次申领”",
                    "Your enterprise holds no key yet: choose \"first issue\"",
                )
                .into(),
            LoginNameMode { kind, mode } => {
                if zh {
                    format!(
                        "{}申请不能使用此登录名方式（{mode}）：{}",
                        kind.name_zh(),
                        login_rule_zh(*kind)
                    )
                } else {
                    format!(
                        "Login-name mode \"{mode}\" does not fit a {} request: {}",
                        kind.name_en(),
                        login_rule_en(*kind)
                    )
                }
            }
            LoginNameRequired => lang
                .pick("请填写用户登录名", "Enter the login name")
                .into(),
            LoginNameFormat => lang
                .pick(
                    "用户登录名应为 3–32 位字母、数字、下划线、点或连字符",
                    "A login name has 3–32 letters, digits, underscores, dots or hyphens",
                )
                .into(),
            LoginNameTaken => lang
                .pick(
                    "该用户登录名已被使用（一个登录名只能对应一个电子钥匙），请核对或点击“获取登录名”",
                    "This login name is already in use (one login name, one key)",
                )
                .into(),
            LoginNameAllocatedPattern => lang
                .pick(
                    "以“ek”加九位数字组成的登录名由系统分配，不能作为已有用户名录入；请点击“获取登录名”，或录入机电产品进口单证系统中的原用户名",
                    "Names of \"ek\" and nine digits are allocated by the system and cannot be entered as an existing name; get one allocated instead",
                )
                .into(),
            TooManyLoginNameReservations => lang
                .pick(
                    "贵单位已获取的登录名尚未使用的已达上限（3 个），请先在申请中使用已获取的登录名；未使用的登录名 7 天后自动释放",
                    "Your enterprise already holds the most unused reserved login names (3); use one in a request first (unused ones are released after 7 days)",
                )
                .into(),
            LoginNameNotOwned => lang
                .pick(
                    "该用户登录名不属于贵单位的电子钥匙，请核对原用户登录名",
                    "This login name does not belong to one of your keys",
                )
                .into(),
            ExistingNameNeedsMechanical => lang
                .pick(
                    "只有机电进口企业可以录入已有的机电产品进口单证系统用户名（请勾选“自动进口许可证（机电）”），其他企业请点击“获取登录名”",
                    "Only electromechanical importers (tick auto_import_mechanical) may bring an existing login name; others get one allocated",
                )
                .into(),
            AuthorisedUserMismatch => lang
                .pick(
                    "申请表与电子签章申请确认函上的授权用户必须是同一人（姓名和身份证号一致）",
                    "The authorised user on the form and on the confirmation letter must be the same person",
                )
                .into(),
            WrongState { status, action } => {
                if zh {
                    format!(
                        "申请当前状态为“{}”，不能执行“{}”",
                        status.label_zh(),
                        action.label_zh()
                    )
                } else {
                    format!(
                        "The request is \"{}\"; \"{}\" is not possible now",
                        status.label_en(),
                        action.label_en()
                    )
                }
            }
            NotApplicable { kind, action } => {
                if zh {
                    format!("{}申请没有“{}”这一步", kind.name_zh(), action.label_zh())
                } else {
                    format!(
                        "A {} request has no \"{}\" step",
                        kind.name_en(),
                        action.label_en()
                    )
                }
            }
            WrongRole { required, .. } => {
                if zh {
                    format!("这一步只能由{}办理", required.label_zh())
                } else {
                    format!("Only {} can take this step", required.label_en())
                }
            }
            OutOfScope => lang
                .pick(
                    "无权办理该申请：不属于您的单位或辖区",
                    "You may not act on this request: it is outside your enterprise or province",
                )
                .into(),
            RemarkRequired => lang
                .pick(
                    "退回或不同意增办时必须填写备注，说明原因和修改要求",
                    "Returning or not granting an additional key needs a remark telling the enterprise why",
                )
                .into(),
            MaterialsMissing(items) => {
                if zh {
                    let names: Vec<_> = items.iter().map(|m| m.name_zh()).collect();
                    format!("材料不全，还缺：{}", names.join("、"))
                } else {
                    let names: Vec<_> = items.iter().map(|m| m.name_en()).collect();
                    format!("Materials incomplete; missing: {}", names.join(", "))
                }
            }
            MaterialsToReplace(items) => {
                if zh {
                    let names: Vec<_> = items.iter().map(|m| m.name_zh()).collect();
                    format!(
                        "申请已被退回：请先重新上传以下材料（退回意见所指的材料，以及修改申请表后须重新签字盖章的材料），再点击“确认上传”：{}",
                        names.join("、")
                    )
                } else {
                    let names: Vec<_> = items.iter().map(|m| m.name_en()).collect();
                    format!(
                        "The request was returned: upload these again (the items the remark concerns, and the signed documents a change of the form invalidated) before confirming: {}",
                        names.join(", ")
                    )
                }
            }
            InfoChangeUnchanged => lang
                .pick(
                    "重新申领（信息变更）须填写变更后的企业信息：企业名称、法定代表人、注册地址至少一项与现有信息不同",
                    "A re-application for changed data needs the new data: name, legal representative or address must differ from what is registered",
                )
                .into(),
            InfoChangeNotReapplication(kind) => {
                if zh {
                    format!(
                        "企业信息变更只能通过“重新申领（信息变更）”办理，{}申请不能变更企业信息",
                        kind.name_zh()
                    )
                } else {
                    format!(
                        "Enterprise data changes go through a re-application; a {} request cannot change them",
                        kind.name_en()
                    )
                }
            }
            MaterialNotInChecklist { kind, item } => {
                if zh {
                    format!("{}申请不需要“{}”", kind.name_zh(), item.name_zh())
                } else {
                    format!("A {} request does not take \"{}\"", kind.name_en(), item.name_en())
                }
            }
            MaterialsLocked(status) => {
                if zh {
                    format!("申请当前状态为“{}”，材料不能再修改", status.label_zh())
                } else {
                    format!(
                        "The request is \"{}\"; its materials can no longer change",
                        status.label_en()
                    )
                }
            }
            KeyWrongState { state, event } => {
                if zh {
                    format!("电子钥匙当前状态为“{}”，不能进行此操作（{}）", state.label_zh(), event.as_str())
                } else {
                    format!("The key is {}; \"{}\" is not possible now", state.label_en(), event.as_str())
                }
            }
            HandoverIncomplete(what) => {
                let (zh_what, en_what) = match *what {
                    "introduction_letter" => ("单位介绍信", "the introduction letter"),
                    "disclaimer" => ("加盖公章的免责声明", "the stamped disclaimer"),
                    "licence_copy" => ("加盖公章的营业执照复印件", "the stamped copy of the business licence"),
                    other => (other, other),
                };
                if zh {
                    format!("尚未收到{zh_what}，不能交付电子钥匙")
                } else {
                    format!("The key cannot be handed over without {en_what}")
                }
            }
            MailingAddressMismatch => lang
                .pick(
                    "邮寄地址必须与营业执照上的注册地或经营地一致（可补充楼层、房间号）",
                    "The mailing address must be the registered or business address on the licence (a floor or room may be added)",
                )
                .into(),
        }
    }
}

fn login_rule_zh(kind: Kind) -> &'static str {
    match kind {
        Kind::Replacement => "补办须录入遗失或损坏钥匙的原用户登录名",
        Kind::Renewal | Kind::Unlock | Kind::Cancellation => "须录入所涉电子钥匙的用户登录名",
        _ => "请点击“获取登录名”，机电进口企业可录入已有用户名",
    }
}

fn login_rule_en(kind: Kind) -> &'static str {
    match kind {
        Kind::Replacement => "a replacement names the login name of the lost or damaged key",
        Kind::Renewal | Kind::Unlock | Kind::Cancellation => {
            "name the login name of the key concerned"
        }
        _ => "get one allocated, or bring an existing electromechanical import login name",
    }
}

/// Chinese label of a form field named in errors.
pub fn field_zh(field: &str) -> &str {
    match field {
        "enterprise_name" => "企业名称",
        "address" => "企业地址",
        "legal_representative" => "法定代表人",
        "enterprise_change" => "变更后的企业信息",
        "contact.name" | "authorised_user.name" => "授权用户姓名",
        "password" => "密码",
        "reason" => "申请理由",
        "remark" => "备注",
        "login" => "登录名",
        other => other,
    }
}

/// English label of a form field named in errors.
pub fn field_en(field: &str) -> &str {
    match field {
        "enterprise_name" => "Enterprise name",
        "address" => "Address",
        "legal_representative" => "Legal representative",
        "enterprise_change" => "The changed enterprise data",
        "contact.name" | "authorised_user.name" => "Authorised user's name",
        "password" => "Password",
        "reason" => "Reason",
        "remark" => "Remark",
        "login" => "Login",
        other => other,
    }
}

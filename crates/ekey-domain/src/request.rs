//! Requests (申请): the seven kinds, their states, the one transition table, and the rules
//! checked when a request is created. Every change of a request's status anywhere in eKey
//! goes through [`transition`].

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::error::DomainError;
use crate::ident::{Email, IdNumber, Mobile};

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }, $err:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The machine name used in the API and the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }

            /// Parses the machine name.
            pub fn parse(s: &str) -> Result<Self, DomainError> {
                match s { $($s => Ok($name::$v),)+ other => Err(DomainError::$err(other.to_string())) }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// The kind of a request.
    Kind {
        /// 首次申领
        First = "first",
        /// 增办
        Additional = "additional",
        /// 补办 (lost or damaged)
        Replacement = "replacement",
        /// 重新申领 / 信息变更
        Reapplication = "reapplication",
        /// 更新
        Renewal = "renewal",
        /// 解锁
        Unlock = "unlock",
        /// 注销
        Cancellation = "cancellation",
    },
    UnknownKind
);

named_enum!(
    /// Licence business a key is for (the checkboxes at the top of the form).
    LicenceType {
        /// 进口许可证
        ImportLicence = "import_licence",
        /// 出口许可证
        ExportLicence = "export_licence",
        /// 自动进口许可证（机电）
        AutoImportMechanical = "auto_import_mechanical",
        /// 自动进口许可证（非机电）
        AutoImportOther = "auto_import_other",
        /// 两用物项和技术进出口
        DualUse = "dual_use",
        /// 农产品进口关税配额
        AgriTariffQuota = "agri_tariff_quota",
        /// 化肥进口关税配额
        FertilizerTariffQuota = "fertilizer_tariff_quota",
        /// 纺织品
        Textiles = "textiles",
    },
    UnknownLicenceType
);

named_enum!(
    /// One item of a request's checklist of scanned materials.
    Material {
        /// ① 申请表
        ApplicationForm = "application_form",
        /// ② 营业执照
        BusinessLicence = "business_licence",
        /// ③ 电子签章申请确认函
        ConfirmationLetter = "confirmation_letter",
        /// ④ 授权用户身份证正反面
        IdCard = "id_card",
        /// ⑤ 授权委托书
        PowerOfAttorney = "power_of_attorney",
        /// ⑥ 数字证书用户协议书
        UserAgreement = "user_agreement",
        /// 解锁申请表
        UnlockForm = "unlock_form",
        /// 注销申请表
        CancellationForm = "cancellation_form",
        /// 钥匙遗失书面说明
        LossStatement = "loss_statement",
    },
    UnknownMaterial
);

/// The agency's decision not to grant an additional key (增办), in the procedure's words
/// ("受理机构根据企业实际情况决定是否同意企业增办的申请"): the one label of the status, the
/// action, the console's choice, the mail and the SMS. Not "不予受理": the request was
/// received and considered; only the extra key is not granted.
pub const REFUSE_ADDITIONAL_ZH: &str = "不同意增办";
/// English of [`REFUSE_ADDITIONAL_ZH`].
pub const REFUSE_ADDITIONAL_EN: &str = "additional key not granted";

/// Status of a request. The first-issue path is `draft` → `awaiting_materials` →
/// `agency_review` → `provider_review` → `in_production` → `shipped` → `at_agency` →
/// `ready_for_collection` → `completed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being filled in; can still change.
    Draft,
    /// Form final; scans being uploaded.
    AwaitingMaterials,
    /// Cancellation: waiting for the enterprise to hand form and key to its agency.
    AwaitingHandover,
    /// With the agency for 验核.
    AgencyReview,
    /// With the provider for 复核 (or approval of unlock / renewal / cancellation).
    ProviderReview,
    /// The key is being made.
    InProduction,
    /// The key is on its way to the agency.
    Shipped,
    /// The agency holds the key and must notify the enterprise.
    AtAgency,
    /// The enterprise may collect the key or have it mailed.
    ReadyForCollection,
    /// Unlock / renewal approved; the enterprise finishes it with the key.
    Approved,
    /// Done.
    Completed,
    /// Sent back to the enterprise with a remark; it corrects and confirms again.
    Returned,
    /// Refused for good (an agency may refuse an additional key).
    Refused,
    /// Withdrawn by the enterprise before review finished.
    Withdrawn,
    /// Renewal: approved but not finished with the key before its deadline; nothing of it
    /// stays in force (the key keeps its certificate), and the enterprise may apply again.
    Expired,
}

impl Status {
    /// Every status.
    pub const ALL: &'static [Status] = &[
        Status::Draft,
        Status::AwaitingMaterials,
        Status::AwaitingHandover,
        Status::AgencyReview,
        Status::ProviderReview,
        Status::InProduction,
        Status::Shipped,
        Status::AtAgency,
        Status::ReadyForCollection,
        Status::Approved,
        Status::Completed,
        Status::Returned,
        Status::Refused,
        Status::Withdrawn,
        Status::Expired,
    ];

    /// Machine name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::AwaitingMaterials => "awaiting_materials",
            Status::AwaitingHandover => "awaiting_handover",
            Status::AgencyReview => "agency_review",
            Status::ProviderReview => "provider_review",
            Status::InProduction => "in_production",
            Status::Shipped => "shipped",
            Status::AtAgency => "at_agency",
            Status::ReadyForCollection => "ready_for_collection",
            Status::Approved => "approved",
            Status::Completed => "completed",
            Status::Returned => "returned",
            Status::Refused => "refused",
            Status::Withdrawn => "withdrawn",
            Status::Expired => "expired",
        }
    }

    /// Parses a machine name (as stored in the database).
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.iter().copied().find(|st| st.as_str() == s)
    }

    /// Chinese label as a clerk reads it.
    pub fn label_zh(self) -> &'static str {
        match self {
            Status::Draft => "草稿",
            Status::AwaitingMaterials => "待上传材料",
            Status::AwaitingHandover => "待递交注销材料",
            Status::AgencyReview => "发证机构验核中",
            Status::ProviderReview => "服务商复核中",
            Status::InProduction => "钥匙制作中",
            Status::Shipped => "已寄往发证机构",
            Status::AtAgency => "发证机构已收到钥匙",
            Status::ReadyForCollection => "可领取",
            Status::Approved => "已批准，待办理",
            Status::Completed => "已办结",
            Status::Returned => "已退回，待修改",
            Status::Refused => REFUSE_ADDITIONAL_ZH,
            Status::Withdrawn => "已撤回",
            Status::Expired => "逾期未办理，已失效",
        }
    }

    /// English label.
    pub fn label_en(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::AwaitingMaterials => "awaiting materials",
            Status::AwaitingHandover => "awaiting hand-over at the agency",
            Status::AgencyReview => "agency review",
            Status::ProviderReview => "provider review",
            Status::InProduction => "in production",
            Status::Shipped => "shipped to the agency",
            Status::AtAgency => "at the agency",
            Status::ReadyForCollection => "ready for collection",
            Status::Approved => "approved, to be finished",
            Status::Completed => "completed",
            Status::Returned => "returned for correction",
            Status::Refused => REFUSE_ADDITIONAL_EN,
            Status::Withdrawn => "withdrawn",
            Status::Expired => "expired, not finished in time",
        }
    }

    /// No action leads out of this status.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Refused | Status::Withdrawn | Status::Expired
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An enterprise user (授权用户 / 经办人).
    Enterprise,
    /// Staff of a provincial issuing agency (发证机构).
    Agency,
    /// An operator of the key provider (电子钥匙服务商).
    Provider,
    /// The platform administrator.
    Admin,
    /// eKey itself (workers, the agent finishing an unlock or renewal).
    System,
}

impl Role {
    /// Machine name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Enterprise => "enterprise",
            Role::Agency => "agency",
            Role::Provider => "provider",
            Role::Admin => "admin",
            Role::System => "system",
        }
    }

    /// Parses a machine name.
    pub fn parse(s: &str) -> Option<Role> {
        [
            Role::Enterprise,
            Role::Agency,
            Role::Provider,
            Role::Admin,
            Role::System,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Chinese label.
    pub fn label_zh(self) -> &'static str {
        match self {
            Role::Enterprise => "企业用户",
            Role::Agency => "发证机构",
            Role::Provider => "电子钥匙服务商",
            Role::Admin => "平台管理员",
            Role::System => "系统",
        }
    }

    /// English label.
    pub fn label_en(self) -> &'static str {
        match self {
            Role::Enterprise => "the enterprise",
            Role::Agency => "the issuing agency",
            Role::Provider => "the key provider",
            Role::Admin => "the administrator",
            Role::System => "the system",
        }
    }
}

/// The person or process acting, with the scope that limits it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Role of the actor.
    pub role: Role,
    /// Account id (empty for the system).
    pub account_id: String,
    /// For enterprise users: their enterprise.
    pub enterprise_id: Option<String>,
    /// For agency staff: their province (GB/T 2260 code).
    pub province: Option<String>,
}

impl Actor {
    /// The system itself.
    pub fn system() -> Actor {
        Actor {
            role: Role::System,
            account_id: String::new(),
            enterprise_id: None,
            province: None,
        }
    }

    /// Whether this actor may see the request at all (an enterprise its own, an agency its
    /// province's, provider and admin all).
    pub fn can_see(&self, enterprise_id: &str, province: &str) -> bool {
        match self.role {
            Role::Enterprise => self.enterprise_id.as_deref() == Some(enterprise_id),
            Role::Agency => self.province.as_deref() == Some(province),
            Role::Provider | Role::Admin | Role::System => true,
        }
    }
}

/// A step that changes a request's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Enterprise: the form is final (确认提交).
    Submit,
    /// Enterprise: change the form while it is a draft or returned.
    Edit,
    /// Enterprise: commit the uploaded set and send it to review (确认上传).
    ConfirmUpload,
    /// Enterprise: withdraw before review finished.
    Withdraw,
    /// Agency: record the cancellation papers and key (or loss statement) received.
    Receive,
    /// Agency: 验核通过 (for a cancellation: verified and forwarded to the provider).
    AgencyApprove,
    /// Agency: 验核未通过, back to the enterprise with a remark.
    AgencyReturn,
    /// Agency: refuse an additional key for good.
    AgencyRefuse,
    /// Provider: 复核通过 (or approval of unlock, renewal, cancellation).
    ProviderApprove,
    /// Provider: 复核未通过, back to the enterprise with a remark.
    ProviderReturn,
    /// Provider: the key is shipped to the agency.
    Ship,
    /// Agency: the shipment with the key arrived.
    ReceiveShipment,
    /// Agency: the enterprise was told the key can be collected.
    NotifyCollection,
    /// Agency: the key was handed over (window or mail).
    HandOver,
    /// System: the approved unlock or renewal was carried out with the key.
    Finish,
    /// System: an approved renewal was not finished with the key before its deadline.
    Expire,
}

impl Action {
    /// Machine name, as written in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Edit => "edit",
            Action::ConfirmUpload => "confirm_upload",
            Action::Withdraw => "withdraw",
            Action::Receive => "receive",
            Action::AgencyApprove => "agency_approve",
            Action::AgencyReturn => "agency_return",
            Action::AgencyRefuse => "agency_refuse",
            Action::ProviderApprove => "provider_approve",
            Action::ProviderReturn => "provider_return",
            Action::Ship => "ship",
            Action::ReceiveShipment => "receive_shipment",
            Action::NotifyCollection => "notify_collection",
            Action::HandOver => "hand_over",
            Action::Finish => "finish",
            Action::Expire => "expire",
        }
    }

    /// Chinese label, the words the seed uses where it has them.
    pub fn label_zh(self) -> &'static str {
        match self {
            Action::Submit => "确认提交",
            Action::Edit => "修改申请表",
            Action::ConfirmUpload => "确认上传",
            Action::Withdraw => "撤回",
            Action::Receive => "接收注销材料",
            Action::AgencyApprove => "验核通过",
            Action::AgencyReturn => "验核未通过",
            Action::AgencyRefuse => REFUSE_ADDITIONAL_ZH,
            Action::ProviderApprove => "复核通过",
            Action::ProviderReturn => "复核未通过",
            Action::Ship => "寄出钥匙",
            Action::ReceiveShipment => "收到钥匙",
            Action::NotifyCollection => "通知领取",
            Action::HandOver => "领取 / 寄送完成",
            Action::Finish => "办理完成",
            Action::Expire => "逾期失效",
        }
    }

    /// English label.
    pub fn label_en(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Edit => "edit",
            Action::ConfirmUpload => "confirm upload",
            Action::Withdraw => "withdraw",
            Action::Receive => "receive papers",
            Action::AgencyApprove => "agency approves",
            Action::AgencyReturn => "agency returns",
            Action::AgencyRefuse => REFUSE_ADDITIONAL_EN,
            Action::ProviderApprove => "provider approves",
            Action::ProviderReturn => "provider returns",
            Action::Ship => "ship",
            Action::ReceiveShipment => "receive shipment",
            Action::NotifyCollection => "notify collection",
            Action::HandOver => "hand over",
            Action::Finish => "finish",
            Action::Expire => "expire",
        }
    }

    /// Whether the action needs a remark for the enterprise.
    pub fn needs_remark(self) -> bool {
        matches!(
            self,
            Action::AgencyReturn | Action::AgencyRefuse | Action::ProviderReturn
        )
    }
}

/// What happens to the deadline clock on a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// A new step starts: due N working days after now.
    Start(u32),
    /// The running deadline continues (e.g. 5 days cover 复核 and production).
    Keep,
    /// No deadline runs in the new status.
    Clear,
}

/// One row of the transition table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Kinds the row applies to.
    pub kinds: &'static [Kind],
    /// Status the request must be in.
    pub from: Status,
    /// The action.
    pub action: Action,
    /// Status afterwards.
    pub to: Status,
    /// Role that may take it.
    pub role: Role,
    /// Effect on the deadline.
    pub deadline: Deadline,
}

/// Kinds that produce a new key and go through 验核 then 复核.
pub const KEY_PRODUCING: &[Kind] = &[
    Kind::First,
    Kind::Additional,
    Kind::Replacement,
    Kind::Reapplication,
];
const ALL_KINDS: &[Kind] = Kind::ALL;
const UPLOAD_KINDS: &[Kind] = &[
    Kind::First,
    Kind::Additional,
    Kind::Replacement,
    Kind::Reapplication,
    Kind::Renewal,
    Kind::Unlock,
];
const PROVIDER_ONLY: &[Kind] = &[Kind::Renewal, Kind::Unlock];
const REVIEWED: &[Kind] = &[
    Kind::First,
    Kind::Additional,
    Kind::Replacement,
    Kind::Reapplication,
    Kind::Renewal,
    Kind::Unlock,
    Kind::Cancellation,
];

/// Working days the agency has for 验核 (and for verifying a cancellation).
pub const AGENCY_REVIEW_DAYS: u32 = 2;
/// Working days for 复核 plus production.
pub const PROVIDER_REVIEW_AND_PRODUCTION_DAYS: u32 = 5;
/// Working days for the agency to notify the enterprise after the key arrived.
pub const NOTIFY_DAYS: u32 = 3;
/// Working days for the provider to verify an unlock request.
pub const UNLOCK_REVIEW_DAYS: u32 = 3;
/// Working days for the provider to complete a cancellation.
pub const CANCELLATION_PROVIDER_DAYS: u32 = 2;

macro_rules! rule {
    ($kinds:expr, $from:ident --$action:ident--> $to:ident, $role:ident, $deadline:expr) => {
        Rule {
            kinds: $kinds,
            from: Status::$from,
            action: Action::$action,
            to: Status::$to,
            role: Role::$role,
            deadline: $deadline,
        }
    };
}

/// The transition table: every way a request's status can change. Nothing else changes it.
pub const TABLE: &[Rule] = &[
    // The enterprise fills, submits, uploads.
    rule!(UPLOAD_KINDS, Draft --Submit--> AwaitingMaterials, Enterprise, Deadline::Clear),
    rule!(&[Kind::Cancellation], Draft --Submit--> AwaitingHandover, Enterprise, Deadline::Clear),
    rule!(&[Kind::Cancellation], Returned --Submit--> AwaitingHandover, Enterprise, Deadline::Clear),
    rule!(ALL_KINDS, Draft --Edit--> Draft, Enterprise, Deadline::Clear),
    rule!(ALL_KINDS, Returned --Edit--> Returned, Enterprise, Deadline::Clear),
    rule!(KEY_PRODUCING, AwaitingMaterials --ConfirmUpload--> AgencyReview, Enterprise, Deadline::Start(AGENCY_REVIEW_DAYS)),
    rule!(KEY_PRODUCING, Returned --ConfirmUpload--> AgencyReview, Enterprise, Deadline::Start(AGENCY_REVIEW_DAYS)),
    rule!(&[Kind::Unlock], AwaitingMaterials --ConfirmUpload--> ProviderReview, Enterprise, Deadline::Start(UNLOCK_REVIEW_DAYS)),
    rule!(&[Kind::Unlock], Returned --ConfirmUpload--> ProviderReview, Enterprise, Deadline::Start(UNLOCK_REVIEW_DAYS)),
    rule!(&[Kind::Renewal], AwaitingMaterials --ConfirmUpload--> ProviderReview, Enterprise, Deadline::Clear),
    rule!(&[Kind::Renewal], Returned --ConfirmUpload--> ProviderReview, Enterprise, Deadline::Clear),
    rule!(ALL_KINDS, Draft --Withdraw--> Withdrawn, Enterprise, Deadline::Clear),
    rule!(UPLOAD_KINDS, AwaitingMaterials --Withdraw--> Withdrawn, Enterprise, Deadline::Clear),
    rule!(&[Kind::Cancellation], AwaitingHandover --Withdraw--> Withdrawn, Enterprise, Deadline::Clear),
    rule!(ALL_KINDS, Returned --Withdraw--> Withdrawn, Enterprise, Deadline::Clear),
    // The agency: 验核, cancellation intake.
    rule!(&[Kind::Cancellation], AwaitingHandover --Receive--> AgencyReview, Agency, Deadline::Start(AGENCY_REVIEW_DAYS)),
    rule!(KEY_PRODUCING, AgencyReview --AgencyApprove--> ProviderReview, Agency, Deadline::Start(PROVIDER_REVIEW_AND_PRODUCTION_DAYS)),
    rule!(&[Kind::Cancellation], AgencyReview --AgencyApprove--> ProviderReview, Agency, Deadline::Start(CANCELLATION_PROVIDER_DAYS)),
    rule!(&[Kind::First, Kind::Additional, Kind::Replacement, Kind::Reapplication, Kind::Cancellation], AgencyReview --AgencyReturn--> Returned, Agency, Deadline::Clear),
    rule!(&[Kind::Additional], AgencyReview --AgencyRefuse--> Refused, Agency, Deadline::Clear),
    // The provider: 复核, approvals, production.
    rule!(KEY_PRODUCING, ProviderReview --ProviderApprove--> InProduction, Provider, Deadline::Keep),
    rule!(PROVIDER_ONLY, ProviderReview --ProviderApprove--> Approved, Provider, Deadline::Clear),
    rule!(&[Kind::Cancellation], ProviderReview --ProviderApprove--> Completed, Provider, Deadline::Clear),
    rule!(REVIEWED, ProviderReview --ProviderReturn--> Returned, Provider, Deadline::Clear),
    rule!(KEY_PRODUCING, InProduction --Ship--> Shipped, Provider, Deadline::Clear),
    // Delivery at the agency.
    rule!(KEY_PRODUCING, Shipped --ReceiveShipment--> AtAgency, Agency, Deadline::Start(NOTIFY_DAYS)),
    rule!(KEY_PRODUCING, AtAgency --NotifyCollection--> ReadyForCollection, Agency, Deadline::Clear),
    rule!(KEY_PRODUCING, ReadyForCollection --HandOver--> Completed, Agency, Deadline::Clear),
    // Unlock and renewal are finished with the key itself.
    rule!(PROVIDER_ONLY, Approved --Finish--> Completed, System, Deadline::Clear),
    rule!(&[Kind::Renewal], Approved --Expire--> Expired, System, Deadline::Clear),
];

impl Kind {
    /// Chinese name.
    pub fn name_zh(self) -> &'static str {
        match self {
            Kind::First => "首次申领",
            Kind::Additional => "增办",
            Kind::Replacement => "补办",
            Kind::Reapplication => "重新申领（信息变更）",
            Kind::Renewal => "更新",
            Kind::Unlock => "解锁",
            Kind::Cancellation => "注销",
        }
    }

    /// English name.
    pub fn name_en(self) -> &'static str {
        match self {
            Kind::First => "first issue",
            Kind::Additional => "additional key",
            Kind::Replacement => "replacement",
            Kind::Reapplication => "re-application",
            Kind::Renewal => "renewal",
            Kind::Unlock => "PIN unlock",
            Kind::Cancellation => "cancellation",
        }
    }

    /// Whether the request produces a new key (and so counts against the limit of three).
    pub fn produces_key(self) -> bool {
        KEY_PRODUCING.contains(&self)
    }

    /// Whether the form must state a reason.
    pub fn needs_reason(self) -> bool {
        matches!(self, Kind::Additional | Kind::Replacement)
    }

    /// Whether the form carries the licence checkboxes.
    pub fn needs_licence_types(self) -> bool {
        matches!(
            self,
            Kind::First
                | Kind::Additional
                | Kind::Replacement
                | Kind::Reapplication
                | Kind::Renewal
        )
    }

    /// Whether the request acts on a key the enterprise already holds, named by its login name.
    pub fn targets_existing_key(self) -> bool {
        matches!(
            self,
            Kind::Replacement | Kind::Renewal | Kind::Unlock | Kind::Cancellation
        )
    }

    /// The checklist: items that must be present before 确认上传.
    pub fn required_materials(self, key_lost: bool) -> Vec<Material> {
        use Material::*;
        match self {
            Kind::First | Kind::Additional | Kind::Replacement | Kind::Reapplication => vec![
                ApplicationForm,
                BusinessLicence,
                ConfirmationLetter,
                IdCard,
                PowerOfAttorney,
                UserAgreement,
            ],
            Kind::Renewal => vec![
                ApplicationForm,
                BusinessLicence,
                ConfirmationLetter,
                UserAgreement,
            ],
            Kind::Unlock => vec![UnlockForm, BusinessLicence],
            Kind::Cancellation if key_lost => vec![CancellationForm, LossStatement],
            Kind::Cancellation => vec![CancellationForm],
        }
    }

    /// Items that may be uploaded for this kind (the checklist plus optional ones).
    pub fn accepted_materials(self) -> Vec<Material> {
        match self {
            Kind::Cancellation => vec![Material::CancellationForm, Material::LossStatement],
            other => other.required_materials(false),
        }
    }

    /// Largest accepted file per item, in bytes: under 200 KB for unlock scans, 1 MB
    /// otherwise (the rule is [`crate::upload::SizeLimit::for_kind`]).
    pub fn upload_limit(self) -> u64 {
        crate::upload::SizeLimit::for_kind(self).largest()
    }

    /// The rows of the table for this kind.
    pub fn rules(self) -> impl Iterator<Item = &'static Rule> {
        TABLE.iter().filter(move |r| r.kinds.contains(&self))
    }
}

impl LicenceType {
    /// Chinese label of the checkbox.
    pub fn name_zh(self) -> &'static str {
        match self {
            LicenceType::ImportLicence => "进口许可证",
            LicenceType::ExportLicence => "出口许可证",
            LicenceType::AutoImportMechanical => "自动进口许可证（机电）",
            LicenceType::AutoImportOther => "自动进口许可证（非机电）",
            LicenceType::DualUse => "两用物项和技术进出口",
            LicenceType::AgriTariffQuota => "农产品进口关税配额",
            LicenceType::FertilizerTariffQuota => "化肥进口关税配额",
            LicenceType::Textiles => "纺织品",
        }
    }

    /// English label of the checkbox (never the machine name: pages in English show this).
    pub fn name_en(self) -> &'static str {
        match self {
            LicenceType::ImportLicence => "import licence",
            LicenceType::ExportLicence => "export licence",
            LicenceType::AutoImportMechanical => {
                "automatic import licence (mechanical and electronic)"
            }
            LicenceType::AutoImportOther => "automatic import licence (other goods)",
            LicenceType::DualUse => "dual-use items and technologies",
            LicenceType::AgriTariffQuota => "tariff quota for farm products",
            LicenceType::FertilizerTariffQuota => "tariff quota for fertilisers",
            LicenceType::Textiles => "textiles",
        }
    }
}

impl Material {
    /// Chinese name, as on the checklist.
    pub fn name_zh(self) -> &'static str {
        match self {
            Material::ApplicationForm => "申请表（法定代表人签字并加盖公章）",
            Material::BusinessLicence => "营业执照（含统一社会信用代码，加盖公章）",
            Material::ConfirmationLetter => "电子签章申请确认函（授权用户签字并加盖公章）",
            Material::IdCard => "授权用户身份证正反面（加盖公章）",
            Material::PowerOfAttorney => "授权委托书（加盖公章）",
            Material::UserAgreement => "数字证书用户协议书（授权用户签字并加盖公章）",
            Material::UnlockForm => "解锁申请表（加盖公章）",
            Material::CancellationForm => "注销申请表（勾选“注销”并加盖公章）",
            Material::LossStatement => "钥匙遗失书面说明（加盖公章）",
        }
    }

    /// English name.
    pub fn name_en(self) -> &'static str {
        match self {
            Material::ApplicationForm => {
                "application form (signed by the legal representative, sealed)"
            }
            Material::BusinessLicence => "business licence (sealed)",
            Material::ConfirmationLetter => {
                "e-seal confirmation letter (signed by the authorised user, sealed)"
            }
            Material::IdCard => "authorised user's ID card, both sides (sealed)",
            Material::PowerOfAttorney => "power of attorney (sealed)",
            Material::UserAgreement => "certificate user agreement (signed, sealed)",
            Material::UnlockForm => "unlock form (sealed)",
            Material::CancellationForm => "cancellation form (注销 ticked, sealed)",
            Material::LossStatement => "written statement of loss (sealed)",
        }
    }
}

/// What the transition function needs to know about a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// Kind of request.
    pub kind: Kind,
    /// Current status.
    pub status: Status,
    /// Owning enterprise.
    pub enterprise_id: &'a str,
    /// Province of the enterprise (its agency).
    pub province: &'a str,
    /// Deadline now running, if any.
    pub due_at: Option<DateTime<FixedOffset>>,
    /// Cancellation: the key was lost (a loss statement replaces it).
    pub key_lost: bool,
}

/// The circumstances of a transition.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// When it happens.
    pub now: DateTime<Utc>,
    /// Working-day calendar for deadlines.
    pub calendar: &'a Calendar,
    /// Remark for the enterprise (required when returning or refusing).
    pub remark: Option<&'a str>,
    /// Items with a file uploaded (staged or committed).
    pub materials_present: &'a [Material],
    /// Items a return asks to be uploaded anew and not yet replaced
    /// ([`crate::returns::to_replace`]); 确认上传 waits for them.
    pub materials_to_replace: &'a [Material],
}

/// The result of a permitted transition; the caller stores it in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The action taken.
    pub action: Action,
    /// Status before.
    pub from: Status,
    /// Status after.
    pub to: Status,
    /// Deadline running after the transition.
    pub due_at: Option<DateTime<FixedOffset>>,
    /// Years the deadline count crossed without holiday data (weekends only there).
    pub uncovered_years: Vec<i32>,
    /// Remark, trimmed, if one was given.
    pub remark: Option<String>,
}

/// Longest remark accepted.
pub const MAX_REMARK: usize = 500;

/// The one function that decides whether `actor` may take `action` on a request now, and
/// what follows. It checks the table, the role, the scope, the remark and the checklist.
pub fn transition(
    req: &RequestView<'_>,
    action: Action,
    actor: &Actor,
    ctx: &Context<'_>,
) -> Result<Outcome, DomainError> {
    // Scope first: someone outside the request's enterprise or province learns nothing else.
    match actor.role {
        Role::Enterprise if actor.enterprise_id.as_deref() != Some(req.enterprise_id) => {
            return Err(DomainError::OutOfScope);
        }
        Role::Agency if actor.province.as_deref() != Some(req.province) => {
            return Err(DomainError::OutOfScope);
        }
        _ => {}
    }
    let for_kind: Vec<_> = req.kind.rules().filter(|r| r.action == action).collect();
    let Some(first) = for_kind.first() else {
        return Err(DomainError::NotApplicable {
            kind: req.kind,
            action,
        });
    };
    // The role next: a caller who may never take this step is told so, whatever the
    // request's state (the state is not theirs to learn from the answer).
    let rule_for = |r: &&Rule| r.role == actor.role;
    if !for_kind.iter().any(rule_for) {
        let required = for_kind
            .iter()
            .find(|r| r.from == req.status)
            .unwrap_or(first)
            .role;
        return Err(DomainError::WrongRole {
            required,
            actual: actor.role,
        });
    }
    let Some(rule) = for_kind
        .iter()
        .find(|r| r.from == req.status && r.role == actor.role)
    else {
        return Err(DomainError::WrongState {
            status: req.status,
            action,
        });
    };
    let remark = ctx
        .remark
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    if let Some(r) = &remark
        && r.chars().count() > MAX_REMARK
    {
        return Err(DomainError::TooLong {
            field: "remark",
            max: MAX_REMARK,
        });
    }
    if action.needs_remark() && remark.is_none() {
        return Err(DomainError::RemarkRequired);
    }
    if action == Action::ConfirmUpload && !ctx.materials_to_replace.is_empty() {
        return Err(DomainError::MaterialsToReplace(
            ctx.materials_to_replace.to_vec(),
        ));
    }
    if action == Action::ConfirmUpload {
        let missing: Vec<Material> = req
            .kind
            .required_materials(req.key_lost)
            .into_iter()
            .filter(|m| !ctx.materials_present.contains(m))
            .collect();
        if !missing.is_empty() {
            return Err(DomainError::MaterialsMissing(missing));
        }
    }
    let (due_at, uncovered_years) = match rule.deadline {
        Deadline::Start(n) => {
            let due = ctx.calendar.due_at(ctx.now, n);
            (Some(due.at), due.uncovered_years)
        }
        Deadline::Keep => (req.due_at, Vec::new()),
        Deadline::Clear => (None, Vec::new()),
    };
    Ok(Outcome {
        action,
        from: req.status,
        to: rule.to,
        due_at,
        uncovered_years,
        remark,
    })
}

/// Whose step a request of `kind` in `status` waits on: the role of the table's row that
/// moves it on (the enterprise's own edits and withdrawal and the system's steps aside).
/// `None` when no person's step runs (approved and finished with the key, or closed).
/// Digests and overdue counts list a request only for the role it waits on.
pub fn waits_on(kind: Kind, status: Status) -> Option<Role> {
    kind.rules()
        .filter(|r| r.from == status && r.role != Role::System)
        .find(|r| !matches!(r.action, Action::Edit | Action::Withdraw))
        .map(|r| r.role)
}

/// The statuses in which some request waits on `role` (for listing that role's work).
pub fn statuses_waiting_on(role: Role) -> Vec<Status> {
    Status::ALL
        .iter()
        .copied()
        .filter(|&s| Kind::ALL.iter().any(|&k| waits_on(k, s) == Some(role)))
        .collect()
}

/// The actions `actor` could take on the request now (for buttons and the API).
pub fn available_actions(req: &RequestView<'_>, actor: &Actor) -> Vec<Action> {
    if !actor.can_see(req.enterprise_id, req.province) {
        return Vec::new();
    }
    req.kind
        .rules()
        .filter(|r| r.from == req.status && r.role == actor.role)
        .map(|r| r.action)
        .collect()
}

/// A natural person named on the form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Full name.
    pub name: String,
    /// Resident ID number.
    pub id_number: IdNumber,
    /// Mobile number.
    pub mobile: Mobile,
    /// Email address.
    pub email: Email,
}

/// How the login name of the key is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginNameMode {
    /// 获取登录名: the registry allocates a unique one.
    Allocate,
    /// An electromechanical importer's existing login name.
    Existing,
    /// The login name of the enterprise's key concerned (补办, renewal, unlock, cancellation).
    Original,
}

impl LoginNameMode {
    /// Machine name.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginNameMode::Allocate => "allocate",
            LoginNameMode::Existing => "existing",
            LoginNameMode::Original => "original",
        }
    }
}

/// The form of a request as the enterprise fills it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestForm {
    /// Licence businesses ticked.
    pub licence_types: Vec<LicenceType>,
    /// How the login name is obtained.
    pub login_name_mode: LoginNameMode,
    /// The login name typed (existing / original) or reserved beforehand (allocate).
    pub login_name: Option<String>,
    /// Reason (增办, 补办: required).
    pub reason: Option<String>,
    /// The authorised user (经办人).
    pub authorised_user: Person,
    /// The authorised user as named on the confirmation letter, when given separately.
    pub confirmation_letter_user: Option<Person>,
    /// Cancellation: the key is lost, a written statement replaces it.
    #[serde(default)]
    pub key_lost: bool,
    /// Unlock: the challenge the locked key produced (hex), from which the provider
    /// computes the unlock code on approval.
    #[serde(default)]
    pub unlock_challenge: Option<String>,
    /// 重新申领（信息变更）: the enterprise's data before and after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise_change: Option<crate::infochange::EnterpriseChange>,
}

/// Checks an unlock challenge as typed or pasted: hex (spaces and case ignored), 16 to 512
/// bytes. Returns it normalised (lower-case, no spaces).
pub fn normalise_challenge(text: &str) -> Result<String, DomainError> {
    let t: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let ok = t.len().is_multiple_of(2)
        && (32..=1024).contains(&t.len())
        && t.chars().all(|c| c.is_ascii_hexdigit());
    if ok {
        Ok(t)
    } else {
        Err(DomainError::UnlockChallengeFormat)
    }
}

/// Checks that a request can be made final (确认提交): an unlock request needs the locked
/// key's challenge, without which the provider cannot compute the unlock code.
pub fn check_submittable(kind: Kind, form: &RequestForm) -> Result<(), DomainError> {
    if kind == Kind::Unlock
        && form
            .unlock_challenge
            .as_deref()
            .is_none_or(|c| c.trim().is_empty())
    {
        return Err(DomainError::UnlockChallengeMissing);
    }
    Ok(())
}

/// What the store knows about the enterprise when a request is created.
#[derive(Clone, Copy, Debug, Default)]
pub struct Holdings {
    /// Keys active or in progress: issued and not revoked/lost/expired, plus open requests
    /// that will produce one.
    pub keys_held: u32,
}

/// The most keys an enterprise may hold, active plus in progress.
pub const MAX_KEYS: u32 = 3;
/// Longest reason accepted.
pub const MAX_REASON: usize = 500;

/// At most this many login names reserved by 获取登录名 and not yet used by a request may
/// an enterprise hold at once (it holds at most [`MAX_KEYS`] keys).
pub const MAX_LOGIN_NAME_RESERVATIONS: i64 = 3;
/// A login name reserved by 获取登录名 and not used by a request within this many days is
/// released.
pub const LOGIN_NAME_RESERVATION_DAYS: i64 = 7;

/// The login name the registry allocates for `province` from the number `n` (0–9,999,999):
/// `ek`, the province's first two digits, seven digits. Only the registry makes these.
pub fn allocated_login_name(province: &str, n: u32) -> String {
    let prefix = province.get(..2).unwrap_or("00");
    format!("ek{prefix}{:07}", n % 10_000_000)
}

/// Whether `name` is in the registry's allocation namespace (`ek` and nine digits, any
/// case): such a name cannot be typed in as an existing one, or someone could claim a
/// name the registry is about to give another enterprise.
pub fn is_allocated_pattern(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower
        .strip_prefix("ek")
        .is_some_and(|rest| rest.len() == 9 && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks a login name's form: 3–32 of `[A-Za-z0-9_.-]`.
pub fn check_login_name(name: &str) -> Result<(), DomainError> {
    let ok = (3..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::LoginNameFormat)
    }
}

/// Checks the rules of a request's form that need no database: names, licence types,
/// reasons, login-name modes, one authorised user on form and confirmation letter.
pub fn validate_form(kind: Kind, form: &RequestForm) -> Result<(), DomainError> {
    crate::text::check_line(
        "authorised_user.name",
        &form.authorised_user.name,
        crate::text::PERSON_NAME_MAX,
    )?;
    if let Some(other) = &form.confirmation_letter_user
        && (other.id_number != form.authorised_user.id_number
            || other.name.trim() != form.authorised_user.name.trim())
    {
        return Err(DomainError::AuthorisedUserMismatch);
    }
    if kind.needs_licence_types() && form.licence_types.is_empty() {
        return Err(DomainError::NoLicenceType);
    }
    let reason = form.reason.as_deref().map(str::trim).unwrap_or("");
    if kind.needs_reason() && reason.is_empty() {
        return Err(DomainError::ReasonRequired(kind));
    }
    crate::text::check_paragraph("reason", reason, MAX_REASON)?;
    let mode_ok = match kind {
        Kind::First | Kind::Additional | Kind::Reapplication => matches!(
            form.login_name_mode,
            LoginNameMode::Allocate | LoginNameMode::Existing
        ),
        Kind::Replacement | Kind::Renewal | Kind::Unlock | Kind::Cancellation => {
            form.login_name_mode == LoginNameMode::Original
        }
    };
    if !mode_ok {
        return Err(DomainError::LoginNameMode {
            kind,
            mode: form.login_name_mode.as_str().into(),
        });
    }
    match (form.login_name_mode, form.login_name.as_deref()) {
        (LoginNameMode::Allocate, None) => {}
        (LoginNameMode::Allocate, Some(name)) => check_login_name(name)?,
        (_, None) => return Err(DomainError::LoginNameRequired),
        (_, Some(name)) => check_login_name(name)?,
    }
    if form.login_name_mode == LoginNameMode::Existing
        && !form
            .licence_types
            .contains(&LicenceType::AutoImportMechanical)
    {
        return Err(DomainError::ExistingNameNeedsMechanical);
    }
    if form.login_name_mode == LoginNameMode::Existing
        && form.login_name.as_deref().is_some_and(is_allocated_pattern)
    {
        return Err(DomainError::LoginNameAllocatedPattern);
    }
    Ok(())
}

/// Checks a new request: its form, and against `holdings` the key count (at most three,
/// active plus in progress; a first issue only without keys; 增办 only with one). Ownership
/// of an original login name and uniqueness of an existing one are checked by the store in
/// the same transaction that records the request.
pub fn validate_new_request(
    kind: Kind,
    form: &RequestForm,
    holdings: Holdings,
) -> Result<(), DomainError> {
    validate_form(kind, form)?;
    match kind {
        Kind::First if holdings.keys_held > 0 => return Err(DomainError::NotFirst),
        Kind::Additional if holdings.keys_held == 0 => return Err(DomainError::NoKeyYet),
        kind if crate::keycap::takes_a_place(kind)
            && !crate::keycap::room_for_another(holdings) =>
        {
            return Err(DomainError::TooManyKeys {
                held: holdings.keys_held,
            });
        }
        _ => {}
    }
    Ok(())
}

/// The state diagram of one kind as Mermaid text, generated from [`TABLE`] (docs/ holds the
/// rendered file; a test keeps it in step with the table).
pub fn mermaid(kind: Kind) -> String {
    let mut out = format!(
        "```mermaid\n%% {} ({})\nstateDiagram-v2\n    [*] --> draft\n",
        kind.name_en(),
        kind.name_zh()
    );
    for r in kind.rules() {
        let deadline = match r.deadline {
            Deadline::Start(n) => format!(", due in {n} working days"),
            Deadline::Keep => ", deadline continues".to_string(),
            Deadline::Clear => String::new(),
        };
        out.push_str(&format!(
            "    {} --> {}: {} ({}{})\n",
            r.from.as_str(),
            r.to.as_str(),
            r.action.as_str(),
            r.role.as_str(),
            deadline
        ));
    }
    for s in Status::ALL.iter().filter(|s| s.is_terminal()) {
        if kind.rules().any(|r| r.to == *s) {
            out.push_str(&format!("    {} --> [*]\n", s.as_str()));
        }
    }
    out.push_str("```\n");
    out
}

/// The whole of `docs/state-machine.md`, generated from the table.
pub fn state_machine_doc() -> String {
    let mut out = String::from(
        "# Request state machines\n\n\
         Generated from `TABLE` in `crates/ekey-domain/src/request.rs` by \
         `EKEY_REGENERATE_DOCS=1 cargo test -p ekey-domain --test docs`; \
         the test fails when this file and the table disagree.\n\n\
         Each arrow: action (role that may take it, effect on the deadline). \
         Working days count as described in the README.\n",
    );
    for kind in Kind::ALL {
        out.push_str(&format!("\n## {} — {}\n\n", kind.name_zh(), kind.name_en()));
        out.push_str(&mermaid(*kind));
    }
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod additional_refusal_wording {
    use super::*;

    #[test]
    fn the_agency_does_not_grant_an_additional_key_in_the_procedures_words() {
        assert_eq!(Status::Refused.label_zh(), "不同意增办");
        assert_eq!(Action::AgencyRefuse.label_zh(), "不同意增办");
        assert_eq!(Status::Refused.label_en(), "additional key not granted");
        // Only 增办 can end there.
        for rule in TABLE.iter().filter(|r| r.action == Action::AgencyRefuse) {
            assert_eq!(rule.kinds, &[Kind::Additional]);
        }
    }
}

//! eKey printable documents: the application form (申请表), the e-seal application
//! confirmation letter (电子签章申请确认函), the unlock form (解锁申请表) and the cancellation
//! form (注销申请表), each one A4 portrait page of PDF in Chinese, ready to print, sign and
//! stamp: bordered table grid with grey label cells, vector checkboxes and ticks, signature
//! and seal boxes, the request number as text and as a QR code, fonts embedded as subsets.
//!
//! Load the fonts once at start ([`Fonts::load`]; the system CJK fonts are ~20 MB files) and
//! share them through an `Arc`; each document then takes a few milliseconds.
//!
//! ```no_run
//! # fn demo(doc: &ekey_docs::RequestDoc) -> Result<(), ekey_docs::DocError> {
//! let fonts = ekey_docs::Fonts::load(None)?; // explicit path, system fonts, or bundled
//! let pdf: Vec<u8> = ekey_docs::application_form(&fonts, doc)?;
//! # Ok(()) }
//! ```

mod fonts;
mod forms;
mod layout;
mod render;

use std::path::PathBuf;

use ekey_domain::Lang;
use ekey_domain::request::{Kind, LicenceType};

pub use fonts::{BUNDLED_NAME, FONT_ENV, Fonts};
pub use forms::{
    Desk, Mailing, application_form, cancellation_form, confirmation_letter, default_agreement,
    introduction_letter, mailing_disclaimer, packing_list, power_of_attorney, unlock_form,
    user_agreement,
};

/// A person on a form (the authorised user, 授权用户 / 经办人).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Person {
    /// 姓名
    pub name: String,
    /// 身份证号码
    pub id_number: String,
    /// 手机号码
    pub mobile: String,
    /// 电子邮箱
    pub email: String,
}

/// Everything a request's documents print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestDoc {
    /// Request number, e.g. `EK2026021200001`: printed and as a QR code.
    pub number: String,
    /// Which kind box is ticked.
    pub kind: Kind,
    /// 企业名称
    pub enterprise_name: String,
    /// 统一社会信用代码
    pub credit_code: String,
    /// Registered address (注册地址).
    pub address: String,
    /// 法定代表人
    pub legal_representative: String,
    /// Province, e.g. "江苏省".
    pub province_name: String,
    /// Issuing agency, e.g. "江苏省商务厅".
    pub agency_name: String,
    /// Ticked licence businesses (all eight are printed).
    pub licence_types: Vec<LicenceType>,
    /// 用户登录名, when known.
    pub login_name: Option<String>,
    /// 增办/补办 reason, unlock or cancellation remarks.
    pub reason: Option<String>,
    /// 授权用户 / 经办人
    pub authorised_user: Person,
    /// Unlock / cancellation: the key's serial.
    pub key_serial: Option<String>,
    /// Cancellation: the key is lost (a written statement goes instead of the key).
    pub key_lost: bool,
    /// Date printed on the form (填表日期).
    pub date: chrono::NaiveDate,
    /// The key provider as the letters address it (e.g. "国富安"); empty: "电子钥匙服务商".
    pub provider_name: String,
}

/// One key in a shipment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedKey {
    /// The request that produced it.
    pub request_number: String,
    /// The enterprise.
    pub enterprise_name: String,
    /// Login name bound to the key.
    pub login_name: String,
    /// Token serial.
    pub token_serial: String,
}

/// A shipment's packing list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackingList {
    /// Shipment number (printed and as a QR code).
    pub number: String,
    /// The receiving agency.
    pub agency_name: String,
    /// Courier.
    pub courier: String,
    /// Tracking number.
    pub tracking_number: String,
    /// Date shipped.
    pub date: chrono::NaiveDate,
    /// The keys.
    pub keys: Vec<PackedKey>,
}

/// A document could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// A font file could not be used.
    #[error("font {path} cannot be used: {reason}")]
    Font {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The request number cannot be put into a QR code.
    #[error("QR code of the request number: {0}")]
    Qr(String),
    /// The content does not fit on one page even in the smallest type.
    #[error("the document does not fit on one A4 page")]
    Overflow,
    /// The PDF writer failed.
    #[error("PDF writing failed: {0}")]
    Pdf(String),
}

impl DocError {
    /// Stable machine code, `ekey.document.<what>`.
    pub fn code(&self) -> &'static str {
        match self {
            DocError::Font { .. } => "ekey.document.font",
            DocError::Qr(_) => "ekey.document.qr",
            DocError::Overflow => "ekey.document.overflow",
            DocError::Pdf(_) => "ekey.document.pdf",
        }
    }

    /// A sentence for people.
    pub fn message(&self, lang: Lang) -> String {
        let zh = lang == Lang::Zh;
        match self {
            DocError::Font { path, reason } => {
                if zh {
                    format!("无法使用字体文件 {}：{reason}", path.display())
                } else {
                    format!("Cannot use the font file {}: {reason}", path.display())
                }
            }
            DocError::Qr(e) => {
                if zh {
                    format!("申请编号无法生成二维码：{e}")
                } else {
                    format!("The request number cannot be made into a QR code: {e}")
                }
            }
            DocError::Overflow => {
                if zh {
                    "填写内容过长，无法排入一页A4纸，请精简后重试".into()
                } else {
                    "The content is too long to fit on one A4 page; shorten it and try again".into()
                }
            }
            DocError::Pdf(e) => {
                if zh {
                    format!("生成PDF文件失败：{e}")
                } else {
                    format!("Writing the PDF failed: {e}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(reason_len: usize) -> RequestDoc {
        RequestDoc {
            number: "EK2026021200001".into(),
            kind: Kind::Additional,
            enterprise_name: "江苏鑫达国际贸易有限公司".into(),
            credit_code: "91320106MA1NXXXXXC".into(),
            address: "江苏省南京市建邺区江东中路108号".into(),
            legal_representative: "张建国".into(),
            province_name: "江苏省".into(),
            agency_name: "江苏省商务厅".into(),
            licence_types: vec![LicenceType::ImportLicence],
            login_name: None,
            reason: Some("新增业务员。".chars().cycle().take(reason_len).collect()),
            authorised_user: Person::default(),
            key_serial: None,
            key_lost: false,
            date: chrono::NaiveDate::from_ymd_opt(2026, 2, 12).unwrap(),
            provider_name: "国富安".into(),
        }
    }

    #[test]
    fn same_input_same_bytes() {
        let fonts = Fonts::bundled();
        let a = application_form(&fonts, &doc(20)).unwrap();
        let b = application_form(&fonts, &doc(20)).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with(b"%PDF-"));
    }

    #[test]
    fn far_too_long_content_is_refused_not_cut() {
        let fonts = Fonts::bundled();
        let e = application_form(&fonts, &doc(5000)).unwrap_err();
        assert!(matches!(e, DocError::Overflow));
        assert_eq!(e.code(), "ekey.document.overflow");
        assert!(e.message(Lang::Zh).contains("一页A4纸"));
        assert!(e.message(Lang::En).contains("one A4 page"));
    }

    #[test]
    fn every_error_has_a_code_and_two_messages() {
        let all = [
            DocError::Font {
                path: "/x.ttf".into(),
                reason: "missing".into(),
            },
            DocError::Qr("too long".into()),
            DocError::Overflow,
            DocError::Pdf("x".into()),
        ];
        for e in all {
            assert!(e.code().starts_with("ekey.document."));
            assert_ne!(e.message(Lang::Zh), e.message(Lang::En));
        }
    }
}

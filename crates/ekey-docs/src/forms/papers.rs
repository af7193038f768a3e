//! The other papers of the checklist, so that an enterprise can print every one of them
//! from eKey filled with what it knows: ⑤ 授权委托书, ⑥ 数字证书用户协议书, the 免责声明
//! for free mailing (the procedure: "免责声明（无模版）内容需包含企业自担风险声明、收件人
//! (即申请人）信息、收件地址（应与企业营业执照中注册或经营地相符）、手机号、身份证号等") and the
//! 单位介绍信 for collecting the key at the window. One A4 page each, like the forms.

use super::{
    CONTENT_W, Content, FORM_TITLE, LEGAL_BASIS, LW, Page, SIGN_H, cell, date_row, enterprise_rows,
    full, header, make, opt, pair, section, user_rows,
};
use crate::fonts::Fonts;
use crate::{DocError, RequestDoc};

/// The recipient of a mailed key, as the enterprise chose it (or, before it chose, the
/// authorised user at the registered address).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mailing {
    /// 收件人 (the applicant, 申请人).
    pub recipient: String,
    /// 收件人身份证号码
    pub id_number: String,
    /// 收件人手机号码
    pub mobile: String,
    /// 收件地址
    pub address: String,
}

/// Where the agency hands keys over; empty fields are left to write in by hand.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desk {
    /// Street address.
    pub address: String,
    /// Window, e.g. "A18窗口".
    pub window: String,
    /// Telephone for questions.
    pub hotline: String,
}

/// The provider as the papers name it; empty: "电子钥匙服务商".
fn provider(doc: &RequestDoc) -> &str {
    match doc.provider_name.trim() {
        "" => "电子钥匙服务商",
        p => p,
    }
}

/// The text of the user agreement when none is configured: what the user agrees to, one
/// clause a line.
pub fn default_agreement(provider: &str) -> String {
    format!(
        "一、本协议由数字证书用户（即上述企业，以下简称“用户”）与电子认证服务机构{provider}（以下简称“服务商”）订立。用户申请、领取和使用服务商签发的货物进出口行政许可电子认证证书（以下简称“证书”）及CA电子钥匙，即表示同意本协议全部条款。\n\
         二、用户保证所填写的信息及提交的申请材料真实、准确、完整；企业名称、法定代表人、授权用户等信息变更时，应及时申请重新申领或注销。因信息不实造成的损失由用户承担。\n\
         三、证书及电子签章仅用于商务部货物进出口许可证件联网申领等相关业务。依据《中华人民共和国电子签名法》，用户使用证书签署的电子文件视同用户签字盖章确认，由用户承担相应法律责任。\n\
         四、用户应妥善保管CA电子钥匙及其PIN码，不得转借他人使用；首次使用时应修改初始PIN码。PIN码连续输错6次钥匙将被锁定，须按规定申请解锁。\n\
         五、钥匙遗失、损坏或怀疑PIN码泄露时，用户应立即申请补办或注销；注销前因他人使用钥匙造成的后果由用户承担。\n\
         六、证书有效期届满前用户应及时办理证书更新；证书注销或吊销后不得再使用。\n\
         七、服务商按其电子认证业务规则签发和管理证书，依法保护用户的个人信息，仅为办理证书业务使用。\n\
         八、本协议自授权用户签字并加盖企业公章之日起生效，至证书失效时终止。"
    )
}

/// ⑤ 授权委托书: the enterprise authorises its authorised user (经办人) to apply for,
/// collect and use the key. One page.
pub fn power_of_attorney(fonts: &Fonts, doc: &RequestDoc) -> Result<Vec<u8>, DocError> {
    make(fonts, "授权委托书", |p| {
        power_of_attorney_layout(p, doc)
    })
}

pub(super) fn power_of_attorney_layout(p: &mut Page<'_>, doc: &RequestDoc) -> Result<(), DocError> {
    header(p, "授权委托书", None, Some(&doc.number), Some(doc.date))?;
    let body = p.sz.body() * 1.05;
    p.y += 4.0;
    p.paragraph(&format!("致：{}", doc.agency_name), body, true, 0.0);
    p.y += 2.0;
    p.table_start();
    section(p, "一、委托单位");
    enterprise_rows(p, Some(doc), p.sz.row());
    section(p, "二、受托人（授权用户 / 经办人）");
    user_rows(p, Some(doc), p.sz.row());
    pair(
        p,
        "申请类型",
        doc.kind.name_zh().into(),
        "用户登录名",
        opt(&doc.login_name),
        p.sz.row(),
    );
    p.table_end();
    p.y += 6.0;
    p.paragraph(
        &format!(
            "兹委托上述受托人作为本单位的授权用户（经办人），代表本单位办理{FORM_TITLE}所列电子认证证书和CA电子钥匙的{}申请、材料提交、领取及相关手续，并持有和使用本单位的该CA电子钥匙及电子签章。受托人在委托权限内签署的文件和办理的事项，本单位均予承认，并承担相应的法律责任。受托人无转委托权。",
            doc.kind.name_zh()
        ),
        body,
        false,
        2.0,
    );
    p.paragraph(
        "委托期限：自本委托书签署之日起，至该电子钥匙注销或本单位书面撤销委托之日止。",
        body,
        false,
        2.0,
    );
    p.y += 6.0;
    p.table_start();
    p.row_min(
        &[
            cell(CONTENT_W * 0.3, Content::Sign("法定代表人签字：".into())),
            cell(CONTENT_W * 0.3, Content::Sign("受托人签字：".into())),
            cell(0.0, Content::Seal("企业公章：".into())),
        ],
        SIGN_H,
    );
    date_row(p);
    p.table_end();
    p.notes(
        "注：",
        &[
            format!("依据{LEGAL_BASIS}办理，为申请材料⑤。由法定代表人、受托人签字并加盖企业公章。"),
            "扫描或拍照后登录在线填报系统上传（每张图片大小不超于1MB）；受托人身份证正反面复印件另行上传。".into(),
        ],
    );
    Ok(())
}

/// ⑥ 数字证书用户协议书: the provider's agreement, `text` as configured (one clause a
/// line) or [`default_agreement`]. One page.
pub fn user_agreement(
    fonts: &Fonts,
    doc: &RequestDoc,
    text: Option<&str>,
) -> Result<Vec<u8>, DocError> {
    let title = format!("{}数字证书用户协议书", provider(doc));
    make(fonts, &title, |p| user_agreement_layout(p, doc, text))
}

pub(super) fn user_agreement_layout(
    p: &mut Page<'_>,
    doc: &RequestDoc,
    text: Option<&str>,
) -> Result<(), DocError> {
    let title = format!("{}数字证书用户协议书", provider(doc));
    header(p, &title, None, Some(&doc.number), Some(doc.date))?;
    p.table_start();
    section(p, "用户信息");
    full(p, "企业名称", doc.enterprise_name.clone());
    pair(
        p,
        "统一社会信用代码",
        doc.credit_code.clone(),
        "用户登录名",
        opt(&doc.login_name),
        p.sz.row(),
    );
    user_rows(p, Some(doc), p.sz.row());
    p.table_end();
    p.y += 5.0;
    let size = p.sz.body() * 0.95;
    let default = default_agreement(provider(doc));
    let text = text.filter(|t| !t.trim().is_empty()).unwrap_or(&default);
    for clause in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        p.paragraph(clause, size, false, 0.0);
    }
    p.y += 2.0;
    p.paragraph(
        "用户已阅读并理解本协议全部条款，同意遵守。",
        size,
        true,
        0.0,
    );
    p.y += 5.0;
    p.table_start();
    p.row_min(
        &[
            cell(CONTENT_W * 0.5, Content::Sign("授权用户签字：".into())),
            cell(0.0, Content::Seal("企业公章：".into())),
        ],
        SIGN_H,
    );
    date_row(p);
    p.table_end();
    p.notes(
        "注：",
        &[format!(
            "依据{LEGAL_BASIS}办理，为申请材料⑥。由授权用户签字并加盖企业公章后，扫描或拍照登录在线填报系统上传（每张图片大小不超于1MB）。"
        )],
    );
    Ok(())
}

/// 免责声明 for free mailing: the enterprise bears the risk; the recipient is the
/// applicant; the address matches the licence; mobile and ID number. One page.
pub fn mailing_disclaimer(
    fonts: &Fonts,
    doc: &RequestDoc,
    mailing: &Mailing,
    desk: &Desk,
) -> Result<Vec<u8>, DocError> {
    make(fonts, "免责声明", |p| {
        mailing_disclaimer_layout(p, doc, mailing, desk)
    })
}

pub(super) fn mailing_disclaimer_layout(
    p: &mut Page<'_>,
    doc: &RequestDoc,
    mailing: &Mailing,
    desk: &Desk,
) -> Result<(), DocError> {
    header(
        p,
        "免责声明",
        Some("（电子钥匙免费邮寄）"),
        Some(&doc.number),
        Some(doc.date),
    )?;
    let body = p.sz.body() * 1.05;
    p.y += 4.0;
    p.paragraph(&format!("致：{}", doc.agency_name), body, true, 0.0);
    p.paragraph(
        &format!(
            "本单位{}（统一社会信用代码：{}）申请的CA电子钥匙（申请编号：{}），申请由{}免费邮寄至下列收件人。本单位声明：电子钥匙交寄后，邮寄过程中发生的遗失、损毁、延误、被他人冒领等一切风险及由此产生的后果，均由本单位自行承担，与{}无关。收件人为本单位的申请人（授权用户），收件地址与本单位营业执照上的注册地或经营地相符。",
            doc.enterprise_name, doc.credit_code, doc.number, doc.agency_name, doc.agency_name
        ),
        body,
        false,
        2.0,
    );
    p.y += 4.0;
    p.table_start();
    section(p, "收件信息");
    pair(
        p,
        "收件人（申请人）",
        mailing.recipient.clone(),
        "手机号码",
        mailing.mobile.clone(),
        p.sz.row(),
    );
    full(p, "身份证号码", mailing.id_number.clone());
    full(p, "收件地址", mailing.address.clone());
    full(p, "营业执照注册地址", doc.address.clone());
    full(p, "授权用户", doc.authorised_user.name.clone());
    p.table_end();
    p.y += 4.0;
    p.paragraph("特此声明。", body, false, 2.0);
    p.y += 4.0;
    p.table_start();
    p.row_min(
        &[
            cell(CONTENT_W * 0.3, Content::Sign("法定代表人签字：".into())),
            cell(CONTENT_W * 0.3, Content::Sign("收件人签字：".into())),
            cell(0.0, Content::Seal("企业公章：".into())),
        ],
        SIGN_H,
    );
    date_row(p);
    p.table_end();
    let to = match (desk.address.trim(), desk.hotline.trim()) {
        ("", _) => doc.agency_name.clone(),
        (a, "") => format!("{a}（{}收）", doc.agency_name),
        (a, h) => format!("{a}（{}收，电话{h}）", doc.agency_name),
    };
    p.notes(
        "注：",
        &[
            format!("依据{LEGAL_BASIS}及发证机构的领取要求，选择免费邮寄时提交本声明。"),
            format!("本声明和营业执照复印件均须加盖企业公章，一并邮寄至{to}。"),
        ],
    );
    Ok(())
}

/// 单位介绍信 for collecting the key at the agency's window: the authorised user collects
/// with this letter and the ID card. One page.
pub fn introduction_letter(
    fonts: &Fonts,
    doc: &RequestDoc,
    desk: &Desk,
) -> Result<Vec<u8>, DocError> {
    make(fonts, "单位介绍信", |p| {
        introduction_letter_layout(p, doc, desk)
    })
}

pub(super) fn introduction_letter_layout(
    p: &mut Page<'_>,
    doc: &RequestDoc,
    desk: &Desk,
) -> Result<(), DocError> {
    header(
        p,
        "单位介绍信",
        Some("（领取电子钥匙）"),
        Some(&doc.number),
        Some(doc.date),
    )?;
    let body = p.sz.body() * 1.1;
    let who = &doc.authorised_user;
    p.y += 6.0;
    p.paragraph(&format!("{}：", doc.agency_name), body, true, 0.0);
    p.paragraph(
        &format!(
            "兹介绍我单位{}同志（身份证号码：{}）前往贵处领取我单位申请的CA电子钥匙（申请编号：{}，用户登录名：{}），请予接洽办理。",
            who.name,
            who.id_number,
            doc.number,
            opt(&doc.login_name)
        ),
        body,
        false,
        2.0,
    );
    p.paragraph("此致", body, false, 2.0);
    p.paragraph("敬礼", body, false, 0.0);
    p.y += 6.0;
    p.table_start();
    full(p, "介绍单位", doc.enterprise_name.clone());
    pair(
        p,
        "统一社会信用代码",
        doc.credit_code.clone(),
        "申请编号",
        doc.number.clone(),
        p.sz.row(),
    );
    pair(
        p,
        "领取人",
        who.name.clone(),
        "手机号码",
        who.mobile.clone(),
        p.sz.row(),
    );
    full(p, "领取人身份证号码", who.id_number.clone());
    let place = format!("{}{}", desk.address.trim(), desk.window.trim());
    if place.is_empty() {
        p.row(&[
            cell(LW, Content::Label("领取地点".into())),
            cell(0.0, Content::Ruled(1)),
        ]);
    } else {
        full(p, "领取地点", place);
    }
    p.row_min(
        &[
            cell(CONTENT_W * 0.5, Content::Sign("单位负责人签字：".into())),
            cell(0.0, Content::Seal("企业公章：".into())),
        ],
        SIGN_H,
    );
    date_row(p);
    p.table_end();
    let mut notes = vec![format!(
        "依据{LEGAL_BASIS}及发证机构的领取要求，领取人须携带本介绍信（加盖企业公章）和本人身份证原件，到发证机构窗口领取电子钥匙，并当场核对钥匙序列号。"
    )];
    if !desk.hotline.trim().is_empty() {
        notes.push(format!(
            "{}领取钥匙咨询电话：{}。",
            doc.agency_name,
            desk.hotline.trim()
        ));
    }
    p.notes("注：", &notes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fonts::Metrics;
    use crate::layout::{BOTTOM, MARGIN_TOP, MARGIN_X, Op, Rect};
    use crate::{Person, RequestDoc};
    use ekey_domain::request::{Kind, LicenceType};

    fn doc() -> RequestDoc {
        RequestDoc {
            number: "EK2026021200001".into(),
            kind: Kind::First,
            enterprise_name: "江苏省南京市某某国际贸易进出口集团有限责任公司".into(),
            credit_code: "91320000MA1XXXXX0X".into(),
            address: "江苏省南京市建邺区江东中路108号万达广场C座2601室".into(),
            legal_representative: "张三".into(),
            province_name: "江苏省".into(),
            agency_name: "江苏省商务厅".into(),
            licence_types: vec![LicenceType::ImportLicence],
            login_name: Some("js_trade_0001".into()),
            reason: None,
            authorised_user: Person {
                name: "李四".into(),
                id_number: "11010519491231002X".into(),
                mobile: "13812345678".into(),
                email: "lisi@example.com.cn".into(),
            },
            key_serial: None,
            key_lost: false,
            date: chrono::NaiveDate::from_ymd_opt(2026, 2, 12).unwrap(),
            provider_name: "国富安CA".into(),
        }
    }

    /// Every text of the page, joined.
    fn text(ops: &[Op]) -> String {
        ops.iter()
            .filter_map(|o| match o {
                Op::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    type Build<'d> = Box<dyn Fn(&mut Page<'_>) -> Result<(), DocError> + 'd>;

    #[test]
    fn the_papers_fit_and_say_what_they_must() {
        let fonts = Fonts::bundled();
        let m = Metrics::new(&fonts);
        let page = Rect::new(
            MARGIN_X - 0.6,
            MARGIN_TOP - 0.6,
            CONTENT_W + 1.2,
            BOTTOM - MARGIN_TOP + 1.2,
        );
        let d = doc();
        let mailing = Mailing {
            recipient: "李四".into(),
            id_number: "11010519491231002X".into(),
            mobile: "13812345678".into(),
            address: "江苏省南京市建邺区江东中路108号万达广场C座2601室".into(),
        };
        let desk = Desk {
            address: "南京市汉中门大街145号".into(),
            window: "A18窗口".into(),
            hotline: "025-83666306".into(),
        };
        let long = "第一条 很长的协议条款。".repeat(60);
        let all: [(&str, &[&str], Build<'_>); 5] = [
            (
                "attorney",
                &["授权委托书", "致：江苏省商务厅", "受托人签字", "委托期限"],
                Box::new(|p| power_of_attorney_layout(p, &d)),
            ),
            (
                "agreement",
                &[
                    "国富安CA数字证书用户协议书",
                    "妥善保管",
                    "PIN",
                    "电子签名法",
                ],
                Box::new(|p| user_agreement_layout(p, &d, None)),
            ),
            (
                "agreement-long",
                &["很长的协议条款"],
                Box::new(|p| user_agreement_layout(p, &d, Some(&long))),
            ),
            (
                "disclaimer",
                &[
                    "免责声明",
                    "自行承担",
                    "收件人（申请人）",
                    "025-83666306",
                    "营业执照",
                ],
                Box::new(|p| mailing_disclaimer_layout(p, &d, &mailing, &desk)),
            ),
            (
                "letter",
                &[
                    "单位介绍信",
                    "江苏省商务厅：",
                    "南京市汉中门大街145号A18窗口",
                    "身份证",
                ],
                Box::new(|p| introduction_letter_layout(p, &d, &desk)),
            ),
        ];
        for (what, words, build) in &all {
            let ops = super::super::fitted(&m, build.as_ref()).unwrap();
            for op in &ops {
                assert!(page.contains(&op.bounds()), "{what}: outside: {op:?}");
            }
            let t = text(&ops);
            for w in *words {
                assert!(t.contains(w), "{what} lacks {w}: {t}");
            }
            assert!(t.contains(LEGAL_BASIS), "{what}: no legal basis");
            assert!(!t.contains("eKey"), "{what}: product name on a paper");
        }
        // Unknown desk details are left to write in, never invented.
        let ops =
            super::super::fitted(&m, &|p| introduction_letter_layout(p, &d, &Desk::default()))
                .unwrap();
        assert!(!text(&ops).contains("咨询电话"), "{}", text(&ops));
    }

    #[test]
    fn the_forms_words_are_the_procedures() {
        let fonts = Fonts::bundled();
        let m = Metrics::new(&fonts);
        let mut d = doc();
        let ops =
            super::super::fitted(&m, &|p| super::super::application_form_layout(p, &d)).unwrap();
        let t = text(&ops);
        assert!(t.contains(FORM_TITLE), "{t}");
        assert!(!t.contains("一式两份") && !t.contains("eKey"), "{t}");
        assert!(t.contains("在线填报系统") && t.contains(LEGAL_BASIS), "{t}");
        let ops =
            super::super::fitted(&m, &|p| super::super::confirmation_letter_layout(p, &d)).unwrap();
        assert!(text(&ops).contains("致：国富安CA"), "{}", text(&ops));
        d.kind = Kind::Unlock;
        let ops = super::super::fitted(&m, &|p| super::super::unlock_form_layout(p, &d)).unwrap();
        let t = text(&ops);
        assert!(t.contains("每张图片小于200KB"), "{t}");
        assert!(t.contains(&format!("{FORM_TITLE}（解锁）")), "{t}");
    }
}

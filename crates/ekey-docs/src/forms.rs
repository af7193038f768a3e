//! The four documents. Each is laid out at full size first; if it would run past the
//! bottom margin (a long name, address or reason), the type is made smaller step by step
//! until it fits on the one page.

use ekey_domain::request::{Kind, LicenceType};

use crate::fonts::{Fonts, Metrics};
use crate::layout::{CONTENT_W, Cell, Content, MARGIN_TOP, MARGIN_X, MM, Op, PAGE_W, Page, cell};
use crate::{DocError, RequestDoc};

mod papers;
pub use papers::{
    Desk, Mailing, default_agreement, introduction_letter, mailing_disclaimer, power_of_attorney,
    user_agreement,
};

/// Width of a label column.
const LW: f32 = 88.0;
/// Width of a value column in a two-pair row.
const VW: f32 = (CONTENT_W - 2.0 * LW) / 2.0;
/// Side of the QR code block (quiet zone included), top right.
const QR: f32 = 23.0 * MM;
/// Height of the signature and seal boxes (a company seal is 40–42 mm across).
const SIGN_H: f32 = 52.0 * MM;
/// Scales tried, largest first.
const SCALES: [f32; 7] = [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7];

/// The form's title, as the procedure and the officials name it.
pub(crate) const FORM_TITLE: &str = "货物进出口行政许可电子认证证书和电子钥匙申请表";
/// The rule the forms are made under, cited where they cite rules.
pub(crate) const LEGAL_BASIS: &str = "商务部公告2016年第82号";

/// 货物进出口行政许可电子认证证书和电子钥匙申请表 (the online 企业CA电子钥匙申请表): one page.
pub fn application_form(fonts: &Fonts, doc: &RequestDoc) -> Result<Vec<u8>, DocError> {
    make(fonts, FORM_TITLE, |p| application_form_layout(p, doc))
}

fn application_form_layout(p: &mut Page<'_>, doc: &RequestDoc) -> Result<(), DocError> {
    header(p, FORM_TITLE, None, Some(&doc.number), Some(doc.date))?;
    p.table_start();
    kind_row(p, doc.kind);
    section(p, "一、企业信息");
    enterprise_rows(p, Some(doc), p.sz.row());
    section(p, "二、业务信息");
    full(p, "用户登录名", opt(&doc.login_name));
    p.row(&[
        cell(LW, Content::Label("许可业务类型\n（可多选）".into())),
        cell(0.0, Content::Checks(licence_items(&doc.licence_types))),
    ]);
    let reason_label = match doc.kind {
        Kind::Additional => "增办理由",
        Kind::Replacement => "补办原因",
        _ => "申请说明",
    };
    p.row_min(
        &[
            cell(LW, Content::Label(reason_label.into())),
            cell(0.0, Content::Value(opt(&doc.reason))),
        ],
        p.sz.row() * 1.7,
    );
    section(p, "三、授权用户（经办人）信息");
    user_rows(p, Some(doc), p.sz.row());
    section(p, "四、企业承诺");
    para(
        p,
        "本企业申请办理货物进出口行政许可电子认证证书和CA电子钥匙，郑重承诺：本表所填写的信息及所提交的全部申请材料真实、准确、完整，授权用户已获本企业合法授权；本企业将妥善保管和使用CA电子钥匙及电子签章，因填报不实或保管、使用不当造成的一切后果及法律责任由本企业承担。",
    );
    p.row_min(
        &[
            cell(CONTENT_W * 0.3, Content::Sign("法定代表人签字：".into())),
            cell(CONTENT_W * 0.3, Content::Sign("授权用户签字：".into())),
            cell(0.0, Content::Seal("企业公章：".into())),
        ],
        SIGN_H,
    );
    date_row(p);
    p.table_end();
    p.notes(
            "注：",
            &[
                format!("依据{LEGAL_BASIS}办理。在线填报系统中“确认提交”后下载本表，用A4纸原大打印（不要缩放），由法定代表人签字、授权用户签字并加盖企业公章。"),
                "将签字盖章后的本表扫描或拍照（JPEG/PNG/PDF，每张图片大小不超于1MB），登录在线填报系统上传，并务必点击“确认上传”。".into(),
                "授权用户须与《电子签章申请确认函》中的授权用户为同一人；增办须写明理由，补办须写明原因。".into(),
            ],
        );
    Ok(())
}

/// 电子签章申请确认函: one page.
pub fn confirmation_letter(fonts: &Fonts, doc: &RequestDoc) -> Result<Vec<u8>, DocError> {
    make(fonts, "电子签章申请确认函", |p| {
        confirmation_letter_layout(p, doc)
    })
}

fn confirmation_letter_layout(p: &mut Page<'_>, doc: &RequestDoc) -> Result<(), DocError> {
    header(
        p,
        "电子签章申请确认函",
        None,
        Some(&doc.number),
        Some(doc.date),
    )?;
    p.y += 4.0;
    let body = p.sz.body() * 1.05;
    let provider = if doc.provider_name.trim().is_empty() {
        "电子钥匙服务商"
    } else {
        doc.provider_name.trim()
    };
    p.paragraph(&format!("致：{provider}"), body, true, 0.0);
    p.paragraph(
            &format!(
                "我单位{}（统一社会信用代码：{}）因办理货物进出口许可业务需要，现申请制作与本单位CA电子钥匙绑定的电子签章，用于在商务部许可证联网申领系统中对许可证申领等电子文件进行签名盖章。该CA电子钥匙及电子签章由以下授权用户持有和使用：",
                doc.enterprise_name, doc.credit_code
            ),
            body,
            false,
            2.0,
        );
    p.y += 4.0;
    p.table_start();
    section(p, "授权用户（电子钥匙持有人）信息");
    full(p, "企业名称", doc.enterprise_name.clone());
    pair(
        p,
        "统一社会信用代码",
        doc.credit_code.clone(),
        "申请类型",
        doc.kind.name_zh().into(),
        p.sz.row(),
    );
    user_rows(p, Some(doc), p.sz.row());
    pair(
        p,
        "用户登录名",
        opt(&doc.login_name),
        "申请编号",
        doc.number.clone(),
        p.sz.row(),
    );
    full(
        p,
        "发证机构",
        format!("{}　{}", doc.province_name, doc.agency_name),
    );
    p.table_end();
    p.y += 6.0;
    p.paragraph(
            "我单位确认：上述授权用户为本单位正式授权的电子钥匙持有人，其使用该电子签章签署的电子文件视同本单位盖章确认，由本单位承担相应法律责任。电子钥匙及其PIN码由授权用户妥善保管；授权用户变更或离职时，我单位将及时申请变更或注销。",
            body,
            false,
            2.0,
        );
    p.paragraph("特此确认。", body, false, 2.0);
    p.y += 6.0;
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
            &[
                format!("依据{LEGAL_BASIS}办理。用A4纸原大打印，由授权用户签字并加盖企业公章后，扫描或拍照（每张图片大小不超于1MB）登录在线填报系统上传。"),
                format!("本函中的授权用户须与《{FORM_TITLE}》中的授权用户为同一人。"),
            ],
        );
    Ok(())
}

/// 货物进出口行政许可电子认证证书和电子钥匙申请表（解锁）: one page.
pub fn unlock_form(fonts: &Fonts, doc: &RequestDoc) -> Result<Vec<u8>, DocError> {
    make(
        fonts,
        "货物进出口行政许可电子认证证书和电子钥匙申请表（解锁）",
        |p| unlock_form_layout(p, doc),
    )
}

fn unlock_form_layout(p: &mut Page<'_>, doc: &RequestDoc) -> Result<(), DocError> {
    header(
        p,
        FORM_TITLE,
        Some("（解锁）"),
        Some(&doc.number),
        Some(doc.date),
    )?;
    p.table_start();
    section(p, "一、企业信息");
    enterprise_rows(p, Some(doc), p.sz.row());
    section(p, "二、需解锁的电子钥匙");
    pair(
        p,
        "用户登录名",
        opt(&doc.login_name),
        "钥匙序列号",
        opt(&doc.key_serial),
        p.sz.row(),
    );
    reason_row(p, "解锁原因", doc.reason.as_deref());
    section(p, "三、授权用户（经办人）信息");
    user_rows(p, Some(doc), p.sz.row());
    section(p, "四、企业承诺");
    para(
        p,
        "本企业确认上述电子钥匙为本单位合法持有，因PIN码连续输错被锁定，申请解锁并重置PIN码。解锁码将以“电子钥匙密码重置”为主题的邮件发送至上述授权用户的电子邮箱，仅对该电子钥匙有效且只能使用一次。本表所填信息真实有效，由此产生的后果由本企业承担。",
    );
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
        &[
            format!("依据{LEGAL_BASIS}办理。本表签字并加盖企业公章后扫描或拍照上传，每张图片小于200KB（JPEG/PNG）。"),
            "同时上传含统一社会信用代码的营业执照扫描件（加盖公章），每张图片小于200KB。".into(),
            "上传后请务必点击“确认上传”；电子钥匙服务商验核无误后，3个工作日内发送主题为“电子钥匙密码重置”的邮件。"
                .into(),
        ],
    );
    Ok(())
}

/// 电子钥匙注销申请表: one page; `None` gives the blank form (注销 ticked, no QR code).
pub fn cancellation_form(fonts: &Fonts, doc: Option<&RequestDoc>) -> Result<Vec<u8>, DocError> {
    make(fonts, "电子钥匙注销申请表", |p| {
        cancellation_form_layout(p, doc)
    })
}

fn cancellation_form_layout(p: &mut Page<'_>, doc: Option<&RequestDoc>) -> Result<(), DocError> {
    header(
        p,
        "电子钥匙注销申请表",
        Some("（货物进出口行政许可电子认证证书和电子钥匙申请表·注销）"),
        doc.map(|d| d.number.as_str()),
        doc.map(|d| d.date),
    )?;
    // Rows to write in by hand are taller.
    let rh = if doc.is_some() {
        p.sz.row()
    } else {
        p.sz.row() * 1.45
    };
    let field = |f: fn(&RequestDoc) -> String| doc.map(f).unwrap_or_default();
    p.table_start();
    kind_row(p, Kind::Cancellation);
    section(p, "一、企业信息");
    enterprise_rows(p, doc, rh);
    section(p, "二、注销的电子钥匙");
    pair(
        p,
        "用户登录名",
        field(|d| opt(&d.login_name)),
        "钥匙序列号",
        field(|d| opt(&d.key_serial)),
        rh,
    );
    match doc {
        Some(d) => reason_row(p, "注销原因", d.reason.as_deref()),
        None => {
            let h = p.sz.row() * 2.6;
            p.row_min(
                &[
                    cell(LW, Content::Label("注销原因".into())),
                    cell(0.0, Content::Ruled(3)),
                ],
                h,
            );
        }
    }
    let lost = doc.map(|d| d.key_lost);
    p.row_min(
        &[
            cell(LW, Content::Label("钥匙交回".into())),
            cell(
                0.0,
                Content::Checks(vec![
                    ("随表交回钥匙".into(), lost == Some(false)),
                    ("钥匙遗失（附书面说明）".into(), lost == Some(true)),
                ]),
            ),
        ],
        rh,
    );
    section(p, "三、经办人（授权用户）信息");
    user_rows(p, doc, rh);
    section(p, "四、企业声明");
    para(
        p,
        "本企业申请注销上述电子钥匙及其数字证书。注销后该电子钥匙、数字证书及电子签章永久失效，不可恢复；注销前已签署的电子文件不受影响。本表所填信息真实有效，由此产生的后果由本企业承担。",
    );
    p.row_min(
        &[
            cell(CONTENT_W * 0.3, Content::Sign("法定代表人签字：".into())),
            cell(CONTENT_W * 0.3, Content::Sign("经办人签字：".into())),
            cell(0.0, Content::Seal("企业公章：".into())),
        ],
        SIGN_H,
    );
    date_row(p);
    p.table_end();
    p.notes(
            "注：",
            &[
                format!("依据{LEGAL_BASIS}办理。请勾选“注销”并加盖企业公章，连同电子钥匙（遗失的附加盖公章的书面说明）提交所在地省级商务主管部门。"),
                "发证机构2个工作日内验核后寄送电子钥匙服务商，服务商收到后2个工作日内完成注销，证书随即吊销。".into(),
            ],
        );
    Ok(())
}

/// Lays out with the largest type that fits, then renders.
/// Keys listed per page of a packing list.
const PACKING_ROWS: usize = 20;

/// 电子钥匙发货单（装箱清单）: as many A4 pages as the keys need, each with the shipment
/// number (and its QR code), the courier and page numbers; receipt signatures on the last.
pub fn packing_list(fonts: &Fonts, list: &crate::PackingList) -> Result<Vec<u8>, DocError> {
    let m = Metrics::new(fonts);
    let chunks: Vec<&[crate::PackedKey]> = if list.keys.is_empty() {
        vec![&[]]
    } else {
        list.keys.chunks(PACKING_ROWS).collect()
    };
    let total = chunks.len();
    let mut pages = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let first = i * PACKING_ROWS;
        let last_page = i + 1 == total;
        let ops = fitted(&m, &|p: &mut Page<'_>| {
            packing_page(p, list, chunk, first, i + 1, total, last_page)
        })?;
        pages.push(ops);
    }
    crate::render::render_pages(fonts, &m, "电子钥匙发货单", &pages)
}

fn packing_page(
    p: &mut Page<'_>,
    list: &crate::PackingList,
    keys: &[crate::PackedKey],
    first: usize,
    page: usize,
    pages: usize,
    last: bool,
) -> Result<(), DocError> {
    header_with(
        p,
        "电子钥匙发货单（装箱清单）",
        Some(&format!("第 {page} 页，共 {pages} 页")),
        Some(&list.number),
        Some(list.date),
        ("发货单号：", "发货日期："),
    )?;
    p.table_start();
    pair(
        p,
        "收货单位",
        list.agency_name.clone(),
        "钥匙数量",
        format!("{} 把", list.keys.len()),
        p.sz.row(),
    );
    pair(
        p,
        "快递公司",
        list.courier.clone(),
        "运单号",
        list.tracking_number.clone(),
        p.sz.row(),
    );
    // The serial column fits 14 capital hex characters without wrapping.
    let cols = [10.0 * MM, 38.0 * MM, 0.0, 28.0 * MM, 40.0 * MM];
    p.row(&[
        cell(cols[0], Content::Label("序号".into())),
        cell(cols[1], Content::Label("申请编号".into())),
        cell(
            CONTENT_W - cols[0] - cols[1] - cols[3] - cols[4],
            Content::Label("企业名称".into()),
        ),
        cell(cols[3], Content::Label("用户登录名".into())),
        cell(cols[4], Content::Label("钥匙序列号".into())),
    ]);
    for (n, k) in keys.iter().enumerate() {
        p.row(&[
            cell(cols[0], Content::Value(format!("{}", first + n + 1))),
            cell(cols[1], Content::Value(k.request_number.clone())),
            cell(
                CONTENT_W - cols[0] - cols[1] - cols[3] - cols[4],
                Content::Value(k.enterprise_name.clone()),
            ),
            cell(cols[3], Content::Value(k.login_name.clone())),
            cell(cols[4], Content::Value(k.token_serial.clone())),
        ]);
    }
    if last {
        p.row_min(
            &[
                cell(CONTENT_W / 2.0, Content::Sign("发货人签字：".into())),
                cell(0.0, Content::Sign("收货单位签收（签字、盖章）：".into())),
            ],
            30.0 * MM,
        );
        p.row(&[
            cell(LW, Content::Label("签收日期".into())),
            cell(0.0, Content::Date(None)),
        ]);
    }
    p.table_end();
    if last {
        p.notes(
            "注：",
            &[
                "收货单位逐把核对钥匙序列号与本清单一致后签收，并在eKey系统中对本发货单“整批签收”。".into(),
                "签收后须在3个工作日内通知企业领取。".into(),
            ],
        );
    }
    Ok(())
}

fn make(
    fonts: &Fonts,
    title: &str,
    build: impl Fn(&mut Page<'_>) -> Result<(), DocError>,
) -> Result<Vec<u8>, DocError> {
    let m = Metrics::new(fonts);
    let ops = fitted(&m, &build)?;
    crate::render::render(fonts, &m, title, &ops)
}

/// The operations at the largest scale that fits on the page.
pub(crate) fn fitted(
    m: &Metrics<'_>,
    build: &dyn Fn(&mut Page<'_>) -> Result<(), DocError>,
) -> Result<Vec<Op>, DocError> {
    for scale in SCALES {
        let mut p = Page::new(m, scale);
        build(&mut p)?;
        if p.fits() {
            return Ok(p.ops);
        }
    }
    Err(DocError::Overflow)
}

/// Title, QR code of the number with the number under it (top right), number and date.
fn header(
    p: &mut Page<'_>,
    title: &str,
    subtitle: Option<&str>,
    number: Option<&str>,
    date: Option<chrono::NaiveDate>,
) -> Result<(), DocError> {
    header_with(
        p,
        title,
        subtitle,
        number,
        date,
        ("申请编号：", "填表日期："),
    )
}

/// [`header`] with other words before the number and the date.
fn header_with(
    p: &mut Page<'_>,
    title: &str,
    subtitle: Option<&str>,
    number: Option<&str>,
    date: Option<chrono::NaiveDate>,
    labels: (&str, &str),
) -> Result<(), DocError> {
    let top = p.y;
    let mut qr_bottom = top;
    let qr_x = PAGE_W - MARGIN_X - QR;
    if let Some(n) = number {
        p.qr(qr_x, top, QR, n)?;
        let s = 7.5;
        let w = p.text_width(n, s, false);
        p.text_at(qr_x + (QR - w) / 2.0, top + QR + 1.0, n, s, false, 0, None);
        qr_bottom = top + QR + 4.0;
    }
    p.y = top + 4.0;
    p.title(title, subtitle);
    p.y += 4.0;
    let s = p.sz.value();
    let base = p.y + s;
    let mut x = MARGIN_X;
    x += p.text_at(x, base, labels.0, s, false, 0, None);
    match number {
        Some(n) => {
            x += p.text_at(x, base, n, s, false, 0, None);
        }
        None => {
            p.ops.push(crate::layout::Op::Line {
                x1: x,
                y1: base + 2.0,
                x2: x + 9.0 * s,
                y2: base + 2.0,
                width: 0.5,
                grey: 0,
                dash: false,
            });
            x += 9.0 * s;
        }
    }
    x += 2.0 * s;
    x += p.text_at(x, base, labels.1, s, false, 0, None);
    p.date_fill(x, base, s, date, None);
    p.y = (base + s * 0.6).max(qr_bottom) + 5.0;
    debug_assert!(MARGIN_TOP <= top);
    Ok(())
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn section(p: &mut Page<'_>, text: &str) {
    p.row_min(&[cell(CONTENT_W, Content::Section(text.into()))], 0.0);
}

fn para(p: &mut Page<'_>, text: &str) {
    p.row_min(&[cell(CONTENT_W, Content::Para(text.into()))], 0.0);
}

fn full(p: &mut Page<'_>, label: &str, value: String) {
    let h = p.sz.row();
    full_h(p, label, value, h);
}

fn full_h(p: &mut Page<'_>, label: &str, value: String, h: f32) {
    p.row_min(
        &[
            cell(LW, Content::Label(label.into())),
            cell(0.0, Content::Value(value)),
        ],
        h,
    );
}

fn pair(p: &mut Page<'_>, l1: &str, v1: String, l2: &str, v2: String, h: f32) {
    let cells: [Cell; 4] = [
        cell(LW, Content::Label(l1.into())),
        cell(VW, Content::Value(v1)),
        cell(LW, Content::Label(l2.into())),
        cell(0.0, Content::Value(v2)),
    ];
    p.row_min(&cells, h);
}

fn kind_row(p: &mut Page<'_>, kind: Kind) {
    let items = Kind::ALL
        .iter()
        .map(|k| (k.name_zh().to_string(), *k == kind))
        .collect();
    p.row(&[
        cell(LW, Content::Label("申请类型".into())),
        cell(0.0, Content::Checks(items)),
    ]);
}

fn licence_items(ticked: &[LicenceType]) -> Vec<(String, bool)> {
    LicenceType::ALL
        .iter()
        .map(|l| (l.name_zh().to_string(), ticked.contains(l)))
        .collect()
}

fn enterprise_rows(p: &mut Page<'_>, doc: Option<&RequestDoc>, h: f32) {
    let f = |g: fn(&RequestDoc) -> &str| doc.map(|d| g(d).to_string()).unwrap_or_default();
    full_h(p, "企业名称", f(|d| &d.enterprise_name), h);
    pair(
        p,
        "统一社会信用代码",
        f(|d| &d.credit_code),
        "法定代表人",
        f(|d| &d.legal_representative),
        h,
    );
    full_h(p, "注册地址", f(|d| &d.address), h);
    pair(
        p,
        "所在省份",
        f(|d| &d.province_name),
        "发证机构",
        f(|d| &d.agency_name),
        h,
    );
}

fn user_rows(p: &mut Page<'_>, doc: Option<&RequestDoc>, h: f32) {
    let f = |g: fn(&RequestDoc) -> &str| doc.map(|d| g(d).to_string()).unwrap_or_default();
    pair(
        p,
        "姓名",
        f(|d| &d.authorised_user.name),
        "身份证号码",
        f(|d| &d.authorised_user.id_number),
        h,
    );
    pair(
        p,
        "手机号码",
        f(|d| &d.authorised_user.mobile),
        "电子邮箱",
        f(|d| &d.authorised_user.email),
        h,
    );
}

/// A reason: the text wrapped, or two ruled lines to write on.
fn reason_row(p: &mut Page<'_>, label: &str, reason: Option<&str>) {
    let content = match reason {
        Some(r) if !r.trim().is_empty() => Content::Value(r.to_string()),
        _ => Content::Ruled(2),
    };
    let h = p.sz.row() * 1.7;
    p.row_min(
        &[cell(LW, Content::Label(label.into())), cell(0.0, content)],
        h,
    );
}

fn date_row(p: &mut Page<'_>) {
    p.row(&[
        cell(LW, Content::Label("签署日期".into())),
        cell(0.0, Content::Date(None)),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{BOTTOM, Rect};

    type Build<'d> = Box<dyn Fn(&mut Page<'_>) -> Result<(), DocError> + 'd>;
    use crate::{Person, RequestDoc};

    fn sample(kind: Kind, name_len: usize, reason_len: usize) -> RequestDoc {
        let base = "江苏省南京市某某国际贸易进出口集团有限责任公司";
        let name: String = base.chars().cycle().take(name_len.max(4)).collect();
        let reason: String = "因业务扩展需要新增一名业务员办理许可证申领，"
            .chars()
            .cycle()
            .take(reason_len)
            .collect();
        RequestDoc {
            number: "EK2026021200001".into(),
            kind,
            enterprise_name: name,
            credit_code: "91320000MA1XXXXX9L".into(),
            address: "江苏省南京市建邺区江东中路108号万达广场C座2601室".into(),
            legal_representative: "张三".into(),
            province_name: "江苏省".into(),
            agency_name: "江苏省商务厅".into(),
            licence_types: vec![LicenceType::ImportLicence, LicenceType::DualUse],
            login_name: Some("js_trade_0001".into()),
            reason: (reason_len > 0).then_some(reason),
            authorised_user: Person {
                name: "李四".into(),
                id_number: "11010519491231002X".into(),
                mobile: "13812345678".into(),
                email: "lisi@example.com.cn".into(),
            },
            key_serial: Some("GFA2026000123".into()),
            key_lost: false,
            date: chrono::NaiveDate::from_ymd_opt(2026, 2, 12).unwrap(),
            provider_name: "国富安".into(),
        }
    }

    #[test]
    fn texts_stay_in_their_cells_and_margins() {
        let fonts = Fonts::bundled();
        let m = Metrics::new(&fonts);
        // Strokes on the margin line may reach half their width (≤ 0.6 pt) beyond it.
        let page = Rect::new(
            MARGIN_X - 0.6,
            MARGIN_TOP - 0.6,
            CONTENT_W + 1.2,
            BOTTOM - MARGIN_TOP + 1.2,
        );
        for (name_len, reason_len) in [(10, 0), (60, 200), (60, 500)] {
            for kind in [
                Kind::First,
                Kind::Additional,
                Kind::Unlock,
                Kind::Cancellation,
            ] {
                let doc = sample(kind, name_len, reason_len);
                let all: [(&str, Build<'_>); 5] = [
                    (
                        "application",
                        Box::new(|p| application_form_layout(p, &doc)),
                    ),
                    ("letter", Box::new(|p| confirmation_letter_layout(p, &doc))),
                    ("unlock", Box::new(|p| unlock_form_layout(p, &doc))),
                    (
                        "cancellation",
                        Box::new(|p| cancellation_form_layout(p, Some(&doc))),
                    ),
                    ("blank", Box::new(|p| cancellation_form_layout(p, None))),
                ];
                for (what, build) in &all {
                    let ops = fitted(&m, build.as_ref()).unwrap();
                    for op in &ops {
                        assert!(
                            page.contains(&op.bounds()),
                            "{what}: outside the margins: {op:?}"
                        );
                        if let Op::Text {
                            within: Some(c), ..
                        } = op
                        {
                            assert!(
                                c.contains(&op.bounds()),
                                "{what}: text leaves its cell: {op:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The labels of the ticked boxes, in order (a ticked box is followed by its label).
    fn ticked(ops: &[Op]) -> Vec<String> {
        let mut out = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if let Op::Check { r, ticked: true } = op {
                let Some(Op::Text { x, text, .. }) = ops.get(i + 1) else {
                    panic!("a box without its label");
                };
                assert!(
                    *x > r.right() && *x < r.right() + 5.0,
                    "label not next to its box"
                );
                out.push(text.clone());
            }
        }
        out
    }

    #[test]
    fn the_right_boxes_are_ticked() {
        let fonts = Fonts::bundled();
        let m = Metrics::new(&fonts);
        for kind in Kind::ALL {
            let mut doc = sample(*kind, 10, 0);
            doc.licence_types = vec![LicenceType::ExportLicence, LicenceType::Textiles];
            let ops = fitted(&m, &|p| application_form_layout(p, &doc)).unwrap();
            assert_eq!(ticked(&ops), [kind.name_zh(), "出口许可证", "纺织品"]);
        }
        let mut doc = sample(Kind::Cancellation, 10, 0);
        let ops = fitted(&m, &|p| cancellation_form_layout(p, Some(&doc))).unwrap();
        assert_eq!(ticked(&ops), ["注销", "随表交回钥匙"]);
        doc.key_lost = true;
        let ops = fitted(&m, &|p| cancellation_form_layout(p, Some(&doc))).unwrap();
        assert_eq!(ticked(&ops), ["注销", "钥匙遗失（附书面说明）"]);
        let ops = fitted(&m, &|p| cancellation_form_layout(p, None)).unwrap();
        assert_eq!(ticked(&ops), ["注销"]);
        assert!(
            !ops.iter().any(|o| matches!(o, Op::Qr { .. })),
            "blank form has a QR code"
        );
    }

    #[test]
    fn seal_box_holds_a_42_mm_seal() {
        let fonts = Fonts::bundled();
        let m = Metrics::new(&fonts);
        let doc = sample(Kind::Additional, 60, 500);
        let ops = fitted(&m, &|p| application_form_layout(p, &doc)).unwrap();
        let radius = ops
            .iter()
            .find_map(|o| match o {
                Op::Circle { radius, .. } => Some(*radius),
                _ => None,
            })
            .unwrap();
        assert!(
            radius * 2.0 >= 40.0 * MM,
            "seal circle only {} mm",
            radius * 2.0 / MM
        );
    }

    #[test]
    fn wrapping_keeps_words_and_punctuation_rules() {
        let fonts = Fonts::bundled();
        let m = Metrics::new(&fonts);
        let lines = crate::layout::wrap(
            &m,
            "请务必点击“确认上传”。",
            10.0 * 10.0 + 1.0,
            10.0,
            false,
            0.0,
        );
        assert!(
            lines
                .iter()
                .all(|l| !l.starts_with('”') && !l.starts_with('。')),
            "{lines:?}"
        );
        assert_eq!(lines.concat(), "请务必点击“确认上传”。");
        let lines = crate::layout::wrap(
            &m,
            "邮箱 lixiaoming@example.com 可用",
            120.0,
            10.0,
            false,
            0.0,
        );
        assert!(
            lines.iter().any(|l| l.contains("lixiaoming@example")),
            "{lines:?}"
        );
        for l in &lines {
            assert!(m.width(l, 10.0, false) <= 120.01, "{l} too wide");
        }
    }
}

//! The documents checked with the Debian PDF tools, as a printer or a clerk would meet
//! them: `qpdf --check` (structure), `pdfinfo` (one A4 page), `pdffonts` (every font
//! embedded and subsetted), `pdftotext -layout` (the Chinese words are real text), and the
//! QR code rendered by `pdftoppm` and decoded by `rqrr` (a pure-Rust QR reader).
//! A missing tool fails the test with the name of the Debian package to install.
//!
//! Each document is also rendered once to PNG (80 dpi) into
//! `$CARGO_TARGET_DIR/ekey-artifacts/docs/` for people to look at.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use chrono::NaiveDate;
use ekey_docs::{
    Desk, DocError, Fonts, Mailing, Person, RequestDoc, application_form, cancellation_form,
    confirmation_letter, introduction_letter, mailing_disclaimer, power_of_attorney, unlock_form,
    user_agreement,
};
use ekey_domain::request::{Kind, LicenceType};

fn fonts() -> &'static Fonts {
    static F: OnceLock<Fonts> = OnceLock::new();
    F.get_or_init(|| Fonts::load(None).expect("fonts"))
}

/// Runs a Debian tool; fails naming the package when it is not installed.
fn tool(name: &str, package: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{name}` ({e}): install the Debian package `{package}` (apt-get install {package})")
    });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sample(kind: Kind) -> RequestDoc {
    RequestDoc {
        number: "EK2026021200001".into(),
        kind,
        enterprise_name: "江苏鑫达国际贸易有限公司".into(),
        credit_code: "91320106MA1NXXXXXC".into(),
        address: "江苏省南京市建邺区江东中路108号万达广场C座2601室".into(),
        legal_representative: "张建国".into(),
        province_name: "江苏省".into(),
        agency_name: "江苏省商务厅".into(),
        licence_types: vec![
            LicenceType::ImportLicence,
            LicenceType::AutoImportMechanical,
            LicenceType::DualUse,
        ],
        login_name: Some("jsxd_trade01".into()),
        reason: match kind {
            Kind::Additional => Some("公司新设进口业务部，需为新增业务员单独配置电子钥匙。".into()),
            Kind::Unlock => Some("经办人连续输错PIN码6次，电子钥匙被锁定。".into()),
            Kind::Cancellation => Some("经办人离职，该电子钥匙不再使用。".into()),
            _ => None,
        },
        authorised_user: Person {
            name: "李晓明".into(),
            id_number: "11010519491231002X".into(),
            mobile: "13812345678".into(),
            email: "lixiaoming@jsxd-trade.com.cn".into(),
        },
        key_serial: Some("GFA2026000123".into()),
        key_lost: false,
        date: NaiveDate::from_ymd_opt(2026, 2, 12).unwrap(),
        provider_name: "国富安CA".into(),
    }
}

/// A 60-character name, a 100-character address and a 200-character reason.
fn long(kind: Kind) -> RequestDoc {
    let mut d = sample(kind);
    d.enterprise_name =
        "江苏省南京市鑫达国际贸易进出口集团有限责任公司机电产品进出口分公司第一业务部门联合体"
            .chars()
            .cycle()
            .take(60)
            .collect();
    d.address = "江苏省南京市建邺区江东中路108号万达广场C座2601室（邮政编码210019）"
        .chars()
        .cycle()
        .take(100)
        .collect();
    d.reason = Some(
        "因公司进出口业务规模扩大，新设立机电产品进口部和两用物项出口部，需为新增的两名业务员分别配置电子钥匙，以便分别办理进口许可证和两用物项出口许可证的网上申领工作，"
            .chars()
            .cycle()
            .take(200)
            .collect(),
    );
    d.authorised_user.email =
        "a.very.long.mailbox.name.for.testing@subsidiary.jsxd-trade.com.cn".into();
    d
}

/// Makes the request of a kind.
type MakeDoc = dyn Fn(Kind) -> RequestDoc;

/// [`long`] with the longest reason the domain accepts (500 characters).
fn max_reason(kind: Kind) -> RequestDoc {
    let mut d = long(kind);
    d.reason = Some(
        d.reason
            .clone()
            .unwrap()
            .chars()
            .cycle()
            .take(ekey_domain::request::MAX_REASON)
            .collect(),
    );
    d
}

struct Made {
    name: &'static str,
    title: &'static str,
    pdf: Vec<u8>,
    /// The data printed (`None`: the blank form).
    doc: Option<RequestDoc>,
}

/// The five documents; the unlock and cancellation forms are made from the request as an
/// unlock or cancellation request (`of(kind)`), the others from `of(kind)`.
fn all_documents(fonts: &Fonts, kind: Kind, of: &MakeDoc) -> Result<Vec<Made>, DocError> {
    let doc = of(kind);
    let mailing = Mailing {
        recipient: doc.authorised_user.name.clone(),
        id_number: doc.authorised_user.id_number.clone(),
        mobile: doc.authorised_user.mobile.clone(),
        address: doc.address.clone(),
    };
    let desk = Desk {
        address: "南京市汉中门大街145号".into(),
        window: "A18窗口".into(),
        hotline: "025-83666306".into(),
    };
    let unlock = of(Kind::Unlock);
    let cancel = of(Kind::Cancellation);
    Ok(vec![
        Made {
            name: "application_form",
            title: "货物进出口行政许可电子认证证书和电子钥匙申请表",
            pdf: application_form(fonts, &doc)?,
            doc: Some(doc.clone()),
        },
        Made {
            name: "confirmation_letter",
            title: "电子签章申请确认函",
            pdf: confirmation_letter(fonts, &doc)?,
            doc: Some(doc.clone()),
        },
        Made {
            name: "unlock_form",
            title: "货物进出口行政许可电子认证证书和电子钥匙申请表（解锁）",
            pdf: unlock_form(fonts, &unlock)?,
            doc: Some(unlock),
        },
        Made {
            name: "cancellation_form",
            title: "电子钥匙注销申请表",
            pdf: cancellation_form(fonts, Some(&cancel))?,
            doc: Some(cancel),
        },
        Made {
            name: "power_of_attorney",
            title: "授权委托书",
            pdf: power_of_attorney(fonts, &doc)?,
            doc: Some(doc.clone()),
        },
        Made {
            name: "user_agreement",
            title: "国富安CA数字证书用户协议书",
            pdf: user_agreement(fonts, &doc, None)?,
            doc: Some(doc.clone()),
        },
        Made {
            name: "mailing_disclaimer",
            title: "免责声明",
            pdf: mailing_disclaimer(fonts, &doc, &mailing, &desk)?,
            doc: Some(doc.clone()),
        },
        Made {
            name: "introduction_letter",
            title: "单位介绍信",
            pdf: introduction_letter(fonts, &doc, &desk)?,
            doc: Some(doc.clone()),
        },
        Made {
            name: "cancellation_form_blank",
            title: "电子钥匙注销申请表",
            pdf: cancellation_form(fonts, None)?,
            doc: None,
        },
    ])
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn write(dir: &Path, name: &str, pdf: &[u8]) -> PathBuf {
    let p = dir.join(format!("{name}.pdf"));
    std::fs::write(&p, pdf).unwrap();
    p
}

fn qpdf_check(path: &Path) {
    let (ok, out, err) = tool("qpdf", "qpdf", &["--check", path.to_str().unwrap()]);
    assert!(ok, "qpdf --check {}: {out}{err}", path.display());
    assert!(out.contains("No syntax or stream encoding errors"), "{out}");
}

fn pdfinfo(path: &Path) -> String {
    let (ok, out, err) = tool("pdfinfo", "poppler-utils", &[path.to_str().unwrap()]);
    assert!(ok, "pdfinfo: {err}");
    out
}

fn assert_one_a4_page(path: &Path) {
    let info = pdfinfo(path);
    assert!(
        info.lines()
            .any(|l| l.starts_with("Pages:") && l.trim_end().ends_with(" 1")),
        "{}: not one page:\n{info}",
        path.display()
    );
    let size = info
        .lines()
        .find(|l| l.starts_with("Page size:"))
        .expect("page size line");
    assert!(
        size.contains("595.2") && size.contains("x 841.8") && size.contains("(A4)"),
        "{}: not A4: {size}",
        path.display()
    );
}

/// Every font embedded and subsetted (`ABCDEF+Name`).
fn assert_fonts_embedded_subsetted(path: &Path) {
    let (ok, out, err) = tool("pdffonts", "poppler-utils", &[path.to_str().unwrap()]);
    assert!(ok, "pdffonts: {err}");
    let rows: Vec<&str> = out
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!rows.is_empty(), "no fonts at all:\n{out}");
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let name = cols[0];
        let (prefix, rest) = name.split_once('+').unwrap_or(("", ""));
        assert!(
            prefix.len() == 6 && prefix.chars().all(|c| c.is_ascii_uppercase()) && !rest.is_empty(),
            "font not marked as a subset: {row}"
        );
        // name type… encoding emb sub uni object ID: emb, sub, uni are the 5th–3rd from the end.
        let n = cols.len();
        assert_eq!(cols[n - 5], "yes", "font not embedded: {row}");
        assert_eq!(cols[n - 4], "yes", "font not subsetted: {row}");
        assert_eq!(cols[n - 3], "yes", "font without ToUnicode: {row}");
    }
}

fn text(path: &Path) -> String {
    let (ok, out, err) = tool(
        "pdftotext",
        "poppler-utils",
        &["-layout", path.to_str().unwrap(), "-"],
    );
    assert!(ok, "pdftotext: {err}");
    out
}

/// Renders the page in grey at `dpi` and returns (width, height, pixels).
fn render_grey(path: &Path, dpi: u32) -> (usize, usize, Vec<u8>) {
    let dir = tmp();
    let prefix = dir.path().join("page");
    let (ok, _, err) = tool(
        "pdftoppm",
        "poppler-utils",
        &[
            "-r",
            &dpi.to_string(),
            "-gray",
            "-singlefile",
            path.to_str().unwrap(),
            prefix.to_str().unwrap(),
        ],
    );
    assert!(ok, "pdftoppm: {err}");
    let data = std::fs::read(dir.path().join("page.pgm")).expect("pgm written");
    parse_pgm(&data)
}

/// A binary PGM (P5, maxval 255).
fn parse_pgm(data: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while data[i].is_ascii_whitespace() {
            i += 1;
        }
        if data[i] == b'#' {
            while data[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while !data[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&data[start..i]).into_owned());
    }
    assert_eq!(fields[0], "P5");
    let w: usize = fields[1].parse().unwrap();
    let h: usize = fields[2].parse().unwrap();
    assert_eq!(fields[3], "255");
    let pixels = data[i + 1..i + 1 + w * h].to_vec();
    (w, h, pixels)
}

fn decode_qr(path: &Path) -> Vec<String> {
    let (w, h, px) = render_grey(path, 150);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| px[y * w + x]);
    img.detect_grids()
        .iter()
        .filter_map(|g| g.decode().ok().map(|(_, s)| s))
        .collect()
}

fn compact(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .expect("target dir")
                .to_path_buf()
        });
    let dir = target.join("ekey-artifacts").join("docs");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

fn check_document(dir: &Path, m: &Made, tag: &str, long: bool) {
    let path = write(dir, &format!("{}-{tag}", m.name), &m.pdf);
    qpdf_check(&path);
    assert_one_a4_page(&path);
    assert_fonts_embedded_subsetted(&path);
    let t = text(&path);
    let flat = compact(&t);
    assert!(flat.contains(m.title), "{}: title missing in:\n{t}", m.name);
    match &m.doc {
        Some(doc) => {
            if long {
                // Wrapped over lines in its cell: the first part is on one line.
                let head: String = doc.enterprise_name.chars().take(12).collect();
                assert!(flat.contains(&head), "{}: name missing in:\n{t}", m.name);
            } else {
                assert!(
                    t.contains(&doc.enterprise_name),
                    "{}: name missing in:\n{t}",
                    m.name
                );
            }
            assert!(
                t.contains(&doc.credit_code),
                "{}: credit code missing in:\n{t}",
                m.name
            );
            assert!(
                t.contains(&doc.number),
                "{}: number missing in:\n{t}",
                m.name
            );
            assert!(
                t.contains(&doc.authorised_user.name),
                "{}: user missing",
                m.name
            );
            let found = decode_qr(&path);
            assert_eq!(found, vec![doc.number.clone()], "{}: QR code", m.name);
        }
        None => {
            assert!(!t.contains("EK20"), "blank form carries a number:\n{t}");
            assert!(flat.contains("注销") && flat.contains("盖章处"));
            assert!(
                decode_qr(&path).is_empty(),
                "{}: unexpected QR code",
                m.name
            );
        }
    }
    if m.name == "application_form" {
        assert!(
            !flat.contains("一式两份") && !flat.contains("eKey"),
            "application form with 一式两份 or a product name:\n{t}"
        );
        assert!(flat.contains("商务部公告2016年第82号"), "{t}");
        assert!(flat.contains("盖章处") && flat.contains("法定代表人签字"));
    }
    if m.name == "unlock_form" {
        assert!(
            flat.contains("每张图片小于200KB"),
            "unlock form without the 200 KB note:\n{t}"
        );
    }
}

#[test]
fn every_document_passes_the_pdf_tools() {
    let dir = tmp();
    for kind in [Kind::First, Kind::Additional] {
        for m in all_documents(fonts(), kind, &sample).unwrap() {
            check_document(dir.path(), &m, kind.as_str(), false);
        }
    }
}

#[test]
fn long_values_still_fit_on_one_page() {
    let dir = tmp();
    for m in all_documents(fonts(), Kind::Additional, &long).unwrap() {
        check_document(dir.path(), &m, "long", true);
        // The reason is printed wrapped over lines, not cut: its last characters are there.
        if let Some(doc) = &m.doc {
            let flat = compact(&text(&dir.path().join(format!("{}-long.pdf", m.name))));
            let reason = doc.reason.as_deref().unwrap();
            let tail: String = reason.chars().skip(reason.chars().count() - 4).collect();
            if ["application_form", "unlock_form", "cancellation_form"].contains(&m.name) {
                assert!(
                    flat.contains(&tail),
                    "{}: end of the reason missing",
                    m.name
                );
            }
        }
    }
    // The longest reason the domain accepts (500 characters) fits too.
    for m in all_documents(fonts(), Kind::Additional, &max_reason).unwrap() {
        let path = write(dir.path(), &format!("{}-max", m.name), &m.pdf);
        assert_one_a4_page(&path);
    }
}

#[test]
fn kind_boxes_and_key_return_boxes() {
    let dir = tmp();
    // The ticked boxes are vector marks, not text: compare the rendered pixels of the kind
    // row between two kinds — they must differ, and the text is the same.
    let a = application_form(fonts(), &sample(Kind::First)).unwrap();
    let b = application_form(fonts(), &sample(Kind::Renewal)).unwrap();
    let pa = write(dir.path(), "kind-a", &a);
    let pb = write(dir.path(), "kind-b", &b);
    assert_ne!(render_grey(&pa, 50).2, render_grey(&pb, 50).2);
    let mut lost = sample(Kind::Cancellation);
    lost.key_lost = true;
    let l = cancellation_form(fonts(), Some(&lost)).unwrap();
    let r = cancellation_form(fonts(), Some(&sample(Kind::Cancellation))).unwrap();
    let pl = write(dir.path(), "lost", &l);
    let pr = write(dir.path(), "returned", &r);
    assert!(compact(&text(&pl)).contains("钥匙遗失（附书面说明）"));
    assert_ne!(render_grey(&pl, 50).2, render_grey(&pr, 50).2);
}

#[test]
fn bundled_font_alone_makes_readable_documents() {
    let fonts = Fonts::bundled();
    assert!(fonts.source().starts_with("bundled"));
    let dir = tmp();
    for m in all_documents(&fonts, Kind::Additional, &sample).unwrap() {
        check_document(dir.path(), &m, "bundled", false);
    }
}

#[test]
fn explicit_font_file_is_used() {
    let path = Path::new("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc");
    let f = Fonts::load(Some(path))
        .unwrap_or_else(|e| panic!("{e}: install the Debian package `fonts-wqy-microhei`"));
    assert!(f.source().contains("wqy-microhei.ttc#0"), "{}", f.source());
    let dir = tmp();
    let doc = sample(Kind::First);
    let pdf = application_form(&f, &doc).unwrap();
    let p = write(dir.path(), "wqy", &pdf);
    assert_fonts_embedded_subsetted(&p);
    let (_, out, _) = tool("pdffonts", "poppler-utils", &[p.to_str().unwrap()]);
    assert!(out.contains("WenQuanYi"), "{out}");
    assert!(text(&p).contains(&doc.enterprise_name));
}

#[test]
fn system_fonts_are_preferred_with_real_bold() {
    let f = fonts();
    assert!(
        f.source().contains("NotoSansCJK-Regular.ttc#2")
            && f.source().contains("NotoSansCJK-Bold.ttc#2"),
        "install the Debian package `fonts-noto-cjk`; fonts in use: {}",
        f.source()
    );
}

/// Renders every document at 80 dpi into the artifacts folder (for people to look at).
#[test]
fn artifacts_for_review() {
    let out = artifacts_dir();
    let dir = tmp();
    let bundled = Fonts::bundled();
    let docs: [(&str, &Fonts, Kind, &MakeDoc); 4] = [
        ("", fonts(), Kind::Additional, &sample),
        ("-long", fonts(), Kind::Replacement, &long),
        ("-max", fonts(), Kind::Additional, &max_reason),
        ("-bundled-font", &bundled, Kind::First, &sample),
    ];
    for (tag, fonts, kind, of) in docs {
        for m in all_documents(fonts, kind, of).unwrap() {
            let pdf = write(dir.path(), &format!("{}{tag}", m.name), &m.pdf);
            std::fs::copy(&pdf, out.join(format!("{}{tag}.pdf", m.name))).unwrap();
            let prefix = out.join(format!("{}{tag}", m.name));
            let (ok, _, err) = tool(
                "pdftoppm",
                "poppler-utils",
                &[
                    "-r",
                    "80",
                    "-png",
                    "-singlefile",
                    pdf.to_str().unwrap(),
                    prefix.to_str().unwrap(),
                ],
            );
            assert!(ok, "pdftoppm: {err}");
            assert!(out.join(format!("{}{tag}.png", m.name)).exists());
        }
    }
}

#[test]
fn a_packing_list_runs_over_as_many_pages_as_its_keys_need() {
    let keys: Vec<ekey_docs::PackedKey> = (1..=45)
        .map(|i| ekey_docs::PackedKey {
            request_number: format!("EK32202602120{i:04}"),
            enterprise_name: if i == 7 {
                "江苏省南京市某某国际贸易与进出口物流集团股份有限公司第二分公司".into()
            } else {
                format!("南京第{i}进出口有限公司")
            },
            login_name: format!("ek3200{i:05}"),
            // Letters are wider than digits: the widest serials must not wrap either.
            token_serial: if i % 2 == 0 {
                format!("SK{i:012X}")
            } else {
                format!("SKDDDDDDDDDD{i:02X}")
            },
        })
        .collect();
    let list = ekey_docs::PackingList {
        number: "SH2026021210000ABC".into(),
        agency_name: "江苏省商务厅".into(),
        courier: "中国邮政EMS".into(),
        tracking_number: "EA123456789CN".into(),
        date: NaiveDate::from_ymd_opt(2026, 2, 12).unwrap(),
        keys,
    };
    let pdf = ekey_docs::packing_list(fonts(), &list).unwrap();
    let dir = tmp();
    let path = write(dir.path(), "packing.pdf", &pdf);
    qpdf_check(&path);
    assert_fonts_embedded_subsetted(&path);
    let info = pdfinfo(&path);
    assert!(
        info.lines()
            .any(|l| l.starts_with("Pages:") && l.trim_end().ends_with(" 3")),
        "45 keys, 20 a page: {info}"
    );
    let t = compact(&text(&path));
    for i in [20, 22, 44] {
        assert!(t.contains(&format!("SK{i:012X}")), "key {i} listed");
    }
    // Each serial on one line of the layout text (not wrapped in its cell).
    let layout = text(&path);
    for i in [1, 21, 45] {
        let serial = format!("SKDDDDDDDDDD{i:02X}");
        assert!(layout.contains(&serial), "{serial} unwrapped in: {layout}");
    }
    assert!(
        t.contains("第3页，共3页") && t.contains("收货单位签收"),
        "{t}"
    );
    assert_eq!(decode_qr(&path), ["SH2026021210000ABC"]);
    std::fs::write(artifacts_dir().join("packing_list.pdf"), &pdf).unwrap();
}

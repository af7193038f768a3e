//! Every paper the checklist asks for can be printed from eKey (issue 16, item 11): the
//! 授权委托书 (⑤), the 数字证书用户协议书 (⑥, provider and text configurable), the 免责声明
//! for free mailing and the 单位介绍信 for window pickup — filled with what eKey knows, A4,
//! fonts embedded, each linked beside its checklist item. Checked with poppler's
//! `pdftotext`, `pdffonts` and `pdfinfo`. Each on SQLite and PostgreSQL.

use reqwest::StatusCode;
use serde_json::json;

use crate::pages::PageClient;
use crate::support::*;

fn poppler(tool: &str, pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new(tool)
        .arg(&path)
        .output()
        .unwrap_or_else(|_| panic!("{tool} is missing: apt-get install -y poppler-utils"));
    assert!(out.status.success(), "{tool} could not read the PDF");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text without spaces and line breaks (pdftotext spreads table cells).
fn squeezed(t: &str) -> String {
    t.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Fetches a document, checks it is one A4 page with every font embedded, and returns its
/// text (squeezed).
async fn paper(s: &TestServer, token: &str, path: &str) -> String {
    let res = s
        .client
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/pdf"
    );
    let bytes = res.bytes().await.unwrap();
    let info = poppler("pdfinfo", &bytes);
    assert!(info.contains("(A4)"), "{path} not A4:\n{info}");
    assert!(
        info.lines()
            .any(|l| l.starts_with("Pages:") && l.ends_with(" 1")),
        "{path}: {info}"
    );
    let fonts = poppler("pdffonts", &bytes);
    let rows: Vec<&str> = fonts.lines().skip(2).collect();
    assert!(!rows.is_empty(), "{path}: no fonts\n{fonts}");
    for row in rows {
        // name type encoding emb sub uni object ID: emb is the 4th column from the end
        // of "yes/no yes/no yes/no N 0".
        let cols: Vec<&str> = row.split_whitespace().collect();
        let emb = cols[cols.len() - 5];
        assert_eq!(emb, "yes", "{path}: font not embedded: {row}");
    }
    squeezed(&crate::flow::pdf_text(&bytes))
}

async fn every_paper_of_the_checklist_can_be_printed(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s
        .register_and_login(
            "扬州纸质材料测试有限公司",
            &ekey_testkit::ident::credit_code(4101),
            "320000",
            "papers@papers.example",
        )
        .await;
    let id = request_in_agency_review(&s, &ent).await;
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    let number = r["number"].as_str().unwrap().to_string();
    let code = ekey_testkit::ident::credit_code(4101);
    let base = format!("/api/v1/requests/{id}/documents");

    // ⑤ 授权委托书: the enterprise authorises the user, both filled in.
    let t = paper(&s, &ent, &format!("{base}/power-of-attorney.pdf")).await;
    for want in [
        "授权委托书",
        "扬州纸质材料测试有限公司",
        code.as_str(),
        "王建华",
        "李明",
        "11010519491231002X",
        "13912345678",
        number.as_str(),
        "江苏省商务厅",
        "法定代表人",
        "企业公章",
    ] {
        assert!(t.contains(want), "power of attorney lacks {want}: {t}");
    }

    // ⑥ 数字证书用户协议书: the default provider and a text that says what is agreed.
    let t = paper(&s, &ent, &format!("{base}/user-agreement.pdf")).await;
    for want in [
        "国富安CA数字证书用户协议书",
        "扬州纸质材料测试有限公司",
        "李明",
        "PIN",
        "妥善保管",
        "注销",
        "授权用户签字",
    ] {
        assert!(t.contains(want), "user agreement lacks {want}: {t}");
    }

    // 单位介绍信 for the window: to the agency, who collects what.
    let t = paper(&s, &ent, &format!("{base}/introduction-letter.pdf")).await;
    for want in [
        "介绍信",
        "江苏省商务厅",
        "扬州纸质材料测试有限公司",
        "李明",
        "11010519491231002X",
        number.as_str(),
        "领取",
        "企业公章",
    ] {
        assert!(t.contains(want), "introduction letter lacks {want}: {t}");
    }

    // 免责声明 for free mailing, before a choice: the authorised user and the registered
    // address; after the choice: what was chosen.
    let t = paper(&s, &ent, &format!("{base}/mailing-disclaimer.pdf")).await;
    for want in [
        "免责声明",
        "自行承担",
        "南京市鼓楼区中山北路1号",
        "李明",
        "13912345678",
        "11010519491231002X",
        "营业执照",
    ] {
        assert!(t.contains(want), "disclaimer lacks {want}: {t}");
    }
    let (status, v) = s
        .put_json(
            &format!("/api/v1/requests/{id}/collection"),
            Some(&ent),
            json!({"method": "mail", "recipient": "李明", "address": "南京市鼓楼区中山北路1号 502 室",
                   "mobile": "13912340002", "id_number": "11010519491231002X"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let t = paper(&s, &ent, &format!("{base}/mailing-disclaimer.pdf")).await;
    assert!(t.contains("502室") && t.contains("13912340002"), "{t}");

    // Another enterprise cannot print them.
    let demo = s.login("demo@ekey.example").await;
    let res = s
        .client
        .get(s.url(&format!("{base}/power-of-attorney.pdf")))
        .bearer_auth(&demo)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Each is linked beside its checklist item on the request page.
    let p = PageClient::new(&s);
    p.login("papers@papers.example", "Secret-2026").await;
    // Attribute values are HTML-escaped (`/` as `&#x2f;`), as a browser reads them.
    let page = p
        .get(&format!("/portal/requests/{id}"))
        .await
        .body
        .replace("&#x2f;", "/");
    for (item, file) in [
        ("power_of_attorney", "power-of-attorney.pdf"),
        ("user_agreement", "user-agreement.pdf"),
    ] {
        let at = page
            .find(&format!("data-item=\"{item}\""))
            .unwrap_or_else(|| panic!("no item {item}"));
        let end = at + page[at..].find("</li>").unwrap();
        assert!(
            page[at..end].contains(&format!("{base}/{file}")),
            "{item} without its paper: {}",
            &page[at..end]
        );
    }
    let at = page.find("id=\"collection\"").expect("collection section");
    let section = &page[at..at + page[at..].find("</section>").unwrap()];
    assert!(
        section.contains(&format!("{base}/introduction-letter.pdf")),
        "{section}"
    );
    assert!(
        section.contains(&format!("{base}/mailing-disclaimer.pdf")),
        "{section}"
    );
    s.stop().await;
}
on_both_databases!(every_paper_of_the_checklist_can_be_printed);

async fn the_provider_and_its_agreement_are_configured(db: Db) {
    let s = TestServer::start_with(db, default_start(), |c| {
        c.provider_name = "测试数字认证有限公司".into();
        c.provider_agreement =
            Some("第一条 本协议由测试条款组成。\n\n第二条 用户同意测试条款。".into());
    })
    .await;
    let ent = s
        .register_and_login(
            "泰州协议配置测试有限公司",
            &ekey_testkit::ident::credit_code(4102),
            "320000",
            "agreement@papers.example",
        )
        .await;
    let id = submitted_request(&s, &ent).await;
    let t = paper(
        &s,
        &ent,
        &format!("/api/v1/requests/{id}/documents/user-agreement.pdf"),
    )
    .await;
    assert!(t.contains("测试数字认证有限公司数字证书用户协议书"), "{t}");
    assert!(t.contains("第一条本协议由测试条款组成。"), "{t}");
    assert!(t.contains("第二条用户同意测试条款。"), "{t}");
    assert!(!t.contains("国富安"), "{t}");
    s.stop().await;
}
on_both_databases!(the_provider_and_its_agreement_are_configured);

//! The enterprise's path through the portal in a real browser (Debian chromium driven by
//! chromedriver over WebDriver): register → activate from the dev mailbox → apply for a
//! first key → download both PDFs → upload six scans (one oversize, downscaled) → confirm
//! → agency review pending; a returned request fixed and resubmitted; the public result
//! query. Every page is saved as a screenshot under
//! `$CARGO_TARGET_DIR/ekey-artifacts/browser/` (or the system temp dir).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use ekey_store::Store as _;

use crate::support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session; chromedriver is killed when dropped.
pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

fn artifacts() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("ekey-artifacts").join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        // The test binary links rustls with both ring (lettre) and aws-lc-rs (fantoccini):
        // name the provider once for the process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser tests need Debian's {package} (apt-get install -y {package})"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--lang=zh-CN",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        shots: artifacts(),
                        _profile: profile,
                    };
                }
                Err(e) => {
                    last = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("chromedriver did not answer on {url}: {last:?}");
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// A screenshot with `selector` scrolled to the middle of the window.
    pub(crate) async fn shot_at(&self, name: &str, selector: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView({block: 'center'});",
                vec![json!(selector)],
            )
            .await
            .unwrap();
        self.shot(name).await;
    }

    pub(crate) async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    pub(crate) async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no element {selector}: {e}"))
    }

    pub(crate) async fn click(&self, selector: &str) {
        self.css(selector).await.click().await.unwrap();
    }

    pub(crate) async fn fill(&self, name: &str, value: &str) {
        let el = self.css(&format!("[name=\"{name}\"]")).await;
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    pub(crate) async fn fill_css(&self, selector: &str, value: &str) {
        let el = self.css(selector).await;
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    pub(crate) async fn text(&self, selector: &str) -> String {
        self.css(selector).await.text().await.unwrap()
    }

    pub(crate) async fn body(&self) -> String {
        self.text("body").await
    }

    pub(crate) async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    /// Waits until `selector`'s text contains `needle`.
    pub(crate) async fn wait_text(&self, selector: &str, needle: &str) -> String {
        for _ in 0..150 {
            if let Ok(el) = self.client.find(Locator::Css(selector)).await
                && let Ok(t) = el.text().await
                && t.contains(needle)
            {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{selector} never showed {needle:?}; page: {}",
            self.body().await
        );
    }

    /// The session cookie the browser holds, for fetching what a click would download.
    pub(crate) async fn cookie_header(&self) -> String {
        self.client
            .get_all_cookies()
            .await
            .unwrap()
            .iter()
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub(crate) async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// A phone photo of a stamped page: big, noisy, over 1 MB.
fn big_photo() -> Vec<u8> {
    use image::{ImageBuffer, Rgb};
    let (w, h) = (2400u32, 1800u32);
    let mut seed = 0x2545_f491_u32;
    let img = ImageBuffer::from_fn(w, h, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed % 48) as i32 - 24;
        let ink = if (y / 40) % 3 == 0 && (x / 7) % 5 != 0 {
            -140
        } else {
            0
        };
        let base = 220 + n + ink;
        let c = |d: i32| (base + d).clamp(0, 255) as u8;
        Rgb([c(0), c(-4), c(-10)])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
        .encode_image(&img)
        .unwrap();
    assert!(
        out.len() > 1024 * 1024 && out.len() < 8 * 1024 * 1024,
        "test photo of {} bytes",
        out.len()
    );
    out
}

pub(crate) fn pdftotext(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new("pdftotext")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext is missing: apt-get install -y poppler-utils");
    assert!(out.status.success(), "pdftotext failed on the download");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_enterprise_applies_uploads_is_returned_fixes_and_resubmits_in_a_browser() {
    let s = TestServer::start(Db::Sqlite).await;
    let b = Browser::start().await;
    let files = tempfile::tempdir().unwrap();
    let code = credit_code("91320100MA1B7W2K0");
    let email = "clerk@browser-test.example";

    // Register; a wrong credit code is explained next to its field, in Chinese.
    b.goto(&s.url("/register")).await;
    b.shot("01-register").await;
    b.fill("enterprise_name", "南京浏览器测试贸易有限公司")
        .await;
    let mut wrong = code.clone();
    wrong.pop();
    wrong.push(if code.ends_with('0') { '1' } else { '0' });
    b.fill("credit_code", &wrong).await;
    b.css("#f-province")
        .await
        .select_by_value("320000")
        .await
        .unwrap();
    b.fill("address", "南京市鼓楼区中山北路 1 号").await;
    b.fill("legal_representative", "王建华").await;
    b.fill("contact_name", "李明").await;
    b.fill("id_number", "11010519491231002X").await;
    b.fill("mobile", "13912345678").await;
    b.fill("email", email).await;
    b.fill("password", "Secret-2026").await;
    b.fill("password2", "Secret-2026").await;
    b.click("form[data-validate] button[type=submit]").await;
    let err = b.wait_text(".has-error .err", "校验").await;
    assert!(err.contains("校验位"), "the reason in words: {err}");
    b.shot_at("02-register-error", "#f-credit_code").await;
    assert!(
        s.mailbox().await.iter().all(|m| m["to"] != email),
        "nothing sent for a refused registration"
    );
    b.fill("credit_code", &code).await;
    b.fill("password", "Secret-2026").await;
    b.fill("password2", "Secret-2026").await;
    b.click("form[data-validate] button[type=submit]").await;
    b.wait_text("h1", "请查收激活邮件").await;
    b.shot("03-registered").await;

    // Activate from the dev mailbox page.
    s.wait_message(email, "激活").await;
    b.goto(&s.url("/dev/mailbox")).await;
    b.wait_text("body", "调用商务部统一用户管理平台激活企业账户")
        .await;
    b.shot("04-mailbox").await;
    b.click("a[href*='/api/v1/activations/']").await;
    b.wait_text("h1", "账户已激活").await;
    b.shot("05-activated").await;

    // Log in (the login is filled in by the activation page's link).
    b.click("a[href^='/login']").await;
    b.fill("password", "Secret-2026").await;
    b.click("form.card button[type=submit]").await;
    b.wait_text("h1", "南京浏览器测试贸易有限公司").await;
    assert_eq!(b.path().await, "/portal");
    b.shot("06-home-empty").await;

    // Apply for the first key: licence boxes, 获取登录名, the authorised user's ID.
    b.click("a[href='/portal/apply']").await;
    b.wait_text("h1", "您要办理什么业务").await;
    b.shot("07-apply").await;
    b.click("a[href='/portal/requests/new?kind=first']").await;
    b.wait_text("h1", "首次申领").await;
    // Submitting with nothing ticked: the server explains next to the boxes.
    b.click("form[data-validate] button[type=submit]").await;
    b.wait_text("#f-licence_types .err", "许可证业务").await;
    b.shot_at("08-form-errors", "#f-licence_types").await;
    b.click("input[value='import_licence']").await;
    b.click("input[value='auto_import_mechanical']").await;
    b.click("[data-get-login-name]").await;
    let allocated = b.wait_text("#allocated", "已为您保留").await;
    let login_name = allocated.rsplit('：').next().unwrap().trim().to_string();
    assert!(!login_name.is_empty(), "{allocated}");
    b.fill("au_id_number", "11010519491231002X").await;
    b.shot("09-form-filled").await;
    b.click("form[data-validate] button[type=submit]").await;
    b.wait_text(".notice", "已保存为草稿").await;
    let request_path = b.path().await;
    let id = request_path.rsplit('/').next().unwrap().to_string();
    b.shot("10-draft").await;
    assert!(
        b.body().await.contains(&login_name),
        "the reserved name is the request's"
    );

    // 确认提交: the documents appear; both PDFs download with the request's data.
    b.click("form[action$='/submit'] button").await;
    b.wait_text(".notice", "已确认提交").await;
    b.shot("11-submitted").await;
    let number = b.text("h1 .number").await;
    let cookie = b.cookie_header().await;
    for link in ["application-form.pdf", "confirmation-letter.pdf"] {
        let href = b
            .css(&format!("a[href$='{link}']"))
            .await
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        let res = s
            .client
            .get(s.url(&href))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{link}");
        assert_eq!(res.headers()["content-type"], "application/pdf");
        let pdf = res.bytes().await.unwrap();
        assert!(pdf.starts_with(b"%PDF-"), "{link} is a PDF");
        let text = pdftotext(&pdf);
        assert!(text.contains(&number), "{link} shows the number: {text}");
        assert!(
            text.contains("南京浏览器测试贸易有限公司"),
            "{link}: {text}"
        );
    }

    // Upload six scans; the photo over 1 MB is offered a downscale and then fits.
    let small = |name: &str, n: usize| {
        let p = files.path().join(name);
        std::fs::write(&p, png(3000 + n)).unwrap();
        p
    };
    let photo = files.path().join("营业执照-手机拍照.jpg");
    let photo_bytes = big_photo();
    std::fs::write(&photo, &photo_bytes).unwrap();
    let upload = |item: &'static str, path: PathBuf| {
        let b = &b;
        async move {
            let input = b
                .css(&format!("li[data-item='{item}'] input[data-file]"))
                .await;
            input.send_keys(path.to_str().unwrap()).await.unwrap();
        }
    };
    assert_eq!(
        b.css("#confirm-upload")
            .await
            .prop("disabled")
            .await
            .unwrap()
            .as_deref(),
        Some("true"),
        "确认上传 waits for the whole list"
    );
    for (n, item) in SIX.iter().enumerate() {
        if *item == "business_licence" {
            continue;
        }
        upload(item, small(&format!("{item}.png"), n)).await;
        b.wait_text(&format!("li[data-item='{item}'] [data-msg]"), "上传成功")
            .await;
    }
    upload("business_licence", photo.clone()).await;
    let msg = b
        .wait_text("li[data-item='business_licence'] [data-msg]", "自动压缩")
        .await;
    assert!(msg.contains("1 MB"), "the limit is named: {msg}");
    b.shot_at("12-oversize-offer", "li[data-item='business_licence']")
        .await;
    // The refused photo took nothing away: the five others are still there, and 确认上传
    // still waits for the missing item.
    let present = b
        .client
        .execute(
            "return document.querySelectorAll('li[data-present=\"yes\"]').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(present, json!(5), "a failed upload keeps the others");
    assert_eq!(
        b.css("#confirm-upload")
            .await
            .prop("disabled")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    b.click("li[data-item='business_licence'] [data-fit]").await;
    let done = b
        .wait_text("li[data-item='business_licence'] [data-msg]", "已自动压缩")
        .await;
    assert!(done.contains('→'), "before and after sizes: {done}");
    let stored = s
        .client
        .get(s.url(&format!("/api/v1/requests/{id}/materials/business_licence")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(stored.len() <= 1024 * 1024 && stored.len() < photo_bytes.len());
    assert!(stored.starts_with(&[0xFF, 0xD8]), "a JPEG");
    b.shot_at("13-uploaded", "#confirm-upload").await;
    assert_eq!(
        b.css("#confirm-upload")
            .await
            .prop("disabled")
            .await
            .unwrap()
            .as_deref(),
        Some("false")
    );

    // 确认上传 clicked twice quickly: one confirmation.
    b.client
        .execute(
            "const f = document.querySelector('form[action$=\"/confirm\"]'); \
             f.requestSubmit(); f.requestSubmit();",
            vec![],
        )
        .await
        .unwrap();
    b.wait_text(".notice", "已确认上传").await;
    b.wait_text(".badge", "验核").await;
    let body = b.body().await;
    assert!(body.contains("等待发证机构验核"), "{body}");
    assert!(body.contains("办理时限"), "a due date is shown: {body}");
    b.shot("14-agency-review").await;
    let token = s.login_with(email, "Secret-2026").await;
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&token)).await;
    let confirmations = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "confirm_upload")
        .count();
    assert_eq!(confirmations, 1, "{r}");

    // The agency returns it about the ID card; the remark (with markup) shows as text next
    // to the ID card.
    let agency = s.login("agency-320000").await;
    let remark = "身份证复印件不清晰，请重新上传 <img src=x onerror=alert(1)>";
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&agency),
            json!({"approve": false, "remark": remark, "concerns": ["id_card"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    b.goto(&s.url(&request_path)).await;
    b.wait_text(".next .remark", "身份证复印件不清晰").await;
    let flagged = b.text("li.flagged").await;
    assert!(
        flagged.contains("身份证") && flagged.contains("<img src=x"),
        "{flagged}"
    );
    let injected = b
        .client
        .execute(
            "return document.querySelectorAll('img[src=\"x\"]').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!(0), "markup in a remark is text, never HTML");
    b.shot("15-returned").await;
    b.shot_at("15b-returned-item", "li.flagged").await;

    // Replace the ID card scan and confirm again: back to 验核, the old file kept.
    upload("id_card", small("id_card-clear.png", 99)).await;
    b.wait_text("li[data-item='id_card'] [data-msg]", "上传成功")
        .await;
    b.click("#confirm-upload").await;
    b.wait_text(".notice", "已确认上传").await;
    b.shot("16-resubmitted").await;
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&token)).await;
    assert_eq!(r["status"], "agency_review", "{r}");
    let files_kept = sqlx::query(
        "SELECT COUNT(*) AS n FROM materials WHERE request_id = $1 AND item = 'id_card'",
    )
    .bind(&id)
    .fetch_one(s.raw().pool())
    .await
    .unwrap();
    use sqlx::Row;
    assert_eq!(
        files_kept.get::<i64, _>("n"),
        2,
        "the replaced scan is kept as history"
    );

    // Home lists the request with its status and next step.
    b.goto(&s.url("/portal")).await;
    let home = b.body().await;
    assert!(
        home.contains(&number) && home.contains("发证机构验核"),
        "{home}"
    );
    b.shot("17-home").await;

    // The public result query, logged out.
    b.click("form[action='/logout'] button").await;
    b.wait_text(".notice", "已退出").await;
    b.goto(&s.url("/result")).await;
    b.fill("number", &number).await;
    b.fill("credit_code", &code.to_lowercase()).await;
    b.click("form[action='/result'] button").await;
    b.wait_text(".result", "验核").await;
    b.shot("18-result").await;
    b.fill("credit_code", &wrong).await;
    b.click("form[action='/result'] button").await;
    b.wait_text(".alert", "").await;
    b.shot("19-result-no-match").await;

    // A phone-sized screen: the request page reads without sideways scrolling.
    b.client.set_window_size(390, 1200).await.unwrap();
    b.goto(&s.url("/login")).await;
    b.fill("login", email).await;
    b.fill("password", "Secret-2026").await;
    b.click("form.card button[type=submit]").await;
    b.wait_text("h1", "南京浏览器测试贸易有限公司").await;
    b.shot("20-home-phone").await;
    b.goto(&s.url(&request_path)).await;
    let overflow = b
        .client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap_or(99) <= 0,
        "no sideways scroll: {overflow}"
    );
    b.shot("21-request-phone").await;

    b.close().await;
    s.stop().await;
}

/// Logs in through the login form.
pub(crate) async fn log_in(b: &Browser, s: &TestServer, login: &str, password: &str) {
    b.goto(&s.url("/login")).await;
    b.fill("login", login).await;
    b.fill("password", password).await;
    b.click("form.card button[type=submit]").await;
}

pub(crate) async fn log_out(b: &Browser) {
    b.click("form[action='/logout'] button").await;
    b.wait_text(".notice", "已退出").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_agency_and_the_provider_review_and_produce_from_their_consoles() {
    let s = TestServer::start(Db::Sqlite).await;
    let ent = s.login("demo@ekey.example").await;
    let id = request_in_agency_review(&s, &ent).await;
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    let number = r["number"].as_str().unwrap().to_string();
    let b = Browser::start().await;

    // The Jiangsu clerk: the queue shows the request with its due time.
    log_in(&b, &s, "agency-320000", PASSWORD).await;
    b.wait_text("h1", "工作台").await;
    let queue = b.wait_text("table.queue", &number).await;
    assert!(
        queue.contains("2026年2月15日 00:00"),
        "due time in the queue: {queue}"
    );
    b.shot("30-agency-queue").await;
    // Search by the enterprise's credit code finds it too.
    b.fill("q", "91320106MA1XYW0A36").await;
    b.click("form.search button").await;
    b.wait_text("table.queue", &number).await;
    b.click(&format!("a[href='/console/requests/{id}']")).await;
    b.wait_text("h1", "首次申领").await;
    let images = b
        .client
        .execute(
            "return document.querySelectorAll('.gallery img').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(images, json!(6), "every scan shown inline");
    b.shot("31-agency-detail").await;
    b.click("form[action$='/decision'] button[type=submit]")
        .await;
    b.wait_text(".notice", "已通过").await;
    b.shot("32-agency-approved").await;
    log_out(&b).await;

    // Another province's clerk neither sees it nor can open it.
    log_in(&b, &s, "agency-110000", PASSWORD).await;
    b.wait_text("h1", "工作台").await;
    b.fill("q", &number).await;
    b.click("form.search button").await;
    b.wait_text("main", "0").await;
    assert!(!b.body().await.contains(&format!("/console/requests/{id}")));
    b.goto(&s.url(&format!("/console/requests/{id}"))).await;
    b.wait_text("body", "未找到该申请").await;
    b.goto(&s.url("/")).await;
    log_out(&b).await;

    // The provider: 复核 with a template remark would return it; approve, then produce.
    log_in(&b, &s, "provider", PASSWORD).await;
    b.wait_text("table.queue", &number).await;
    b.click(&format!("a[href='/console/requests/{id}']")).await;
    b.wait_text("h1", "首次申领").await;
    b.click("form[action$='/decision'] button[type=submit]")
        .await;
    b.wait_text(".notice", "已通过").await;
    b.click("form[action$='/produce'] button").await;
    b.wait_text(".notice", "电子钥匙已制作").await;
    b.shot("33-provider-produced").await;
    let (_, keys) = s
        .get("/api/v1/keys", Some(&s.login("demo@ekey.example").await))
        .await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "one key made: {keys}");
    assert!(keys[0]["certificate_serial"].is_string(), "{keys}");

    // The provider packs it into a shipment to Jiangsu.
    b.goto(&s.url("/console/shipments")).await;
    b.click(&format!("input[name='request_ids'][value='{id}']"))
        .await;
    b.fill("courier", "中国邮政EMS").await;
    b.fill("tracking_number", "EA123456789CN").await;
    b.shot("34-provider-pack").await;
    b.click("form[action='/console/shipments'] button[type=submit]")
        .await;
    b.wait_text(".notice", "发货单已创建").await;
    // The packing list prints the key with its serial and the receipt boxes.
    let href = b
        .css("a[href$='packing-list.pdf']")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let res = s
        .client
        .get(s.url(&href))
        .header("cookie", b.cookie_header().await)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = pdftotext(&res.bytes().await.unwrap());
    let serial = keys[0]["token_serial"].as_str().unwrap();
    assert!(text.contains(serial) && text.contains(&number), "{text}");
    assert!(text.contains("收货单位签收"), "{text}");
    log_out(&b).await;

    // The Jiangsu clerk signs for the whole shipment, notifies everyone in it, and records
    // the pickup at the window.
    log_in(&b, &s, "agency-320000", PASSWORD).await;
    b.wait_text("h1", "工作台").await;
    b.goto(&s.url("/console/shipments")).await;
    b.click("table.list a[href^='/console/shipments/']").await;
    b.click("form[action$='/receive'] button").await;
    b.wait_text(".notice", "已签收整批钥匙").await;
    b.click("form[action$='/notify'] button").await;
    b.wait_text(".notice", "已通知本批全部企业").await;
    b.shot("35-agency-shipment").await;
    s.wait_message("13912345678", &number).await;
    let (_, result) = s
        .get(
            &format!("/api/v1/public/result?number={number}&credit_code=91320106MA1XYW0A36"),
            None,
        )
        .await;
    assert_eq!(result["ready_for_collection"], true, "{result}");
    b.goto(&s.url(&format!("/console/requests/{id}"))).await;
    b.fill("collector_name", "李明").await;
    b.fill("collector_id_number", "11010519491231002X").await;
    // Without the introduction letter the handover is refused, with the reason.
    b.click("form[action$='/handover'] button").await;
    b.wait_text(".alert", "介绍信").await;
    b.fill("collector_name", "李明").await;
    b.fill("collector_id_number", "11010519491231002X").await;
    b.click("input[name='introduction_letter']").await;
    b.shot("36-agency-handover").await;
    b.click("form[action$='/handover'] button").await;
    b.wait_text(".notice", "已记录交付").await;
    let (_, keys) = s
        .get("/api/v1/keys", Some(&s.login("demo@ekey.example").await))
        .await;
    assert_eq!(keys[0]["state"], "active", "{keys}");

    // The clerk's dashboard draws real figures: the review was on time, one completed.
    b.goto(&s.url("/console/dashboard")).await;
    b.wait_text("h1", "统计").await;
    let charts = b
        .client
        .execute(
            "return document.querySelectorAll('svg.chart').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(charts, json!(5), "five charts");
    let text = b.body().await;
    assert!(
        text.contains("验核（2个工作日） 1 1"),
        "one review, on time: {text}"
    );
    b.shot("37-dashboard").await;
    log_out(&b).await;

    // The administrator loads next year's holiday arrangement from a file on the page.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("2027.json");
    std::fs::write(
        &file,
        r#"{"year": 2027, "papers": [], "days": [
            {"name": "元旦", "date": "2027-01-01", "isOffDay": true},
            {"name": "春节", "date": "2027-02-06", "isOffDay": false}]}"#,
    )
    .unwrap();
    log_in(&b, &s, "admin", PASSWORD).await;
    b.wait_text("h1", "系统管理").await;
    b.css("[data-holiday-upload]")
        .await
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    b.wait_text(".notice", "节假日数据已载入").await;
    assert!(b.body().await.contains("2027"), "2027 listed as covered");
    assert_eq!(
        s.raw()
            .holiday_years()
            .await
            .unwrap()
            .iter()
            .map(|y| y.year)
            .collect::<Vec<_>>(),
        [2027],
        "kept in the database for every instance"
    );
    b.shot("38-admin-holidays").await;

    b.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unlock_approval_and_cancellation_from_the_consoles_in_a_browser() {
    use ekey_token::Token;
    let s = TestServer::start(Db::Sqlite).await;
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let first = request_in_agency_review(&s, &ent).await;
    let key = crate::lifecycle::approve_and_produce(&s, &first, &ent, &agency, &provider).await;
    let login_name = key["login_name"].as_str().unwrap().to_string();
    // The key is locked by six wrong PINs; its challenge goes into the unlock request.
    let token = ekey_token::SoftToken::open(
        s.data_dir
            .join("tokens")
            .join(format!("{}.token", key["token_serial"].as_str().unwrap())),
    )
    .unwrap();
    for _ in 0..6 {
        assert!(token.sign("000000", "sign", b"x").is_err());
    }
    let challenge = hex::encode(token.unlock_challenge().unwrap());
    let (_, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            json!({"kind": "unlock", "login_name": {"mode": "original", "value": login_name},
                   "authorised_user": person("unlock@example.com"), "unlock_challenge": challenge}),
        )
        .await;
    let unlock = v["id"].as_str().unwrap().to_string();
    s.post(
        &format!("/api/v1/requests/{unlock}/submit"),
        Some(&ent),
        json!({}),
    )
    .await;
    upload_all(&s, &ent, &unlock, &["unlock_form", "business_licence"]).await;
    s.post(
        &format!("/api/v1/requests/{unlock}/confirm-upload"),
        Some(&ent),
        json!({}),
    )
    .await;
    // And a cancellation of the same key, handed in at the window.
    let (_, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            json!({"kind": "cancellation", "login_name": {"mode": "original", "value": login_name},
                   "authorised_user": person("a@example.com")}),
        )
        .await;
    let cancel = v["id"].as_str().unwrap().to_string();
    s.post(
        &format!("/api/v1/requests/{cancel}/submit"),
        Some(&ent),
        json!({}),
    )
    .await;

    let b = Browser::start().await;
    // The provider approves the unlock: the code mail goes out, and it unlocks the key.
    log_in(&b, &s, "provider", PASSWORD).await;
    b.wait_text("h1", "工作台").await;
    b.goto(&s.url(&format!("/console/requests/{unlock}"))).await;
    b.wait_text("main", &challenge[..16]).await;
    b.shot("40-provider-unlock").await;
    b.click("form[action$='/decision'] button[type=submit]")
        .await;
    b.wait_text(".notice", "已通过").await;
    let code = s.wait_message("unlock@example.com", "解锁码：").await["body"]
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("解锁码："))
        .unwrap()
        .trim()
        .to_string();
    token.apply_unlock(&code, "New-pin-2026").unwrap();
    token.sign("New-pin-2026", "sign", b"ok").unwrap();
    log_out(&b).await;

    // The clerk receives the cancellation papers and the key, and forwards it.
    log_in(&b, &s, "agency-320000", PASSWORD).await;
    b.wait_text("h1", "工作台").await;
    b.click("a[href='/console/queue?tab=handover']").await;
    b.click(&format!("a[href='/console/requests/{cancel}']"))
        .await;
    b.click("input[name='form_received']").await;
    b.click("input[name='key_received']").await;
    b.shot("41-agency-cancellation-intake").await;
    b.click("form[action$='/receive'] button").await;
    b.wait_text(".notice", "已受理注销材料").await;
    b.click("form[action$='/decision'] button[type=submit]")
        .await;
    b.wait_text(".notice", "已通过").await;
    log_out(&b).await;

    // The provider completes it: the certificate is revoked.
    log_in(&b, &s, "provider", PASSWORD).await;
    b.wait_text("h1", "工作台").await;
    b.goto(&s.url(&format!("/console/requests/{cancel}"))).await;
    b.click("form[action$='/decision'] button[type=submit]")
        .await;
    b.wait_text(".notice", "已通过").await;
    b.wait_text(".badge", "已办结").await;
    b.shot("42-provider-cancellation-done").await;
    let serial = key["certificate_serial"].as_str().unwrap();
    let cert = ekey_store::Store::certificate(s.raw(), serial)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cert.revocation_reason.as_deref(),
        Some("cessationOfOperation")
    );

    b.close().await;
    s.stop().await;
}

/// A reverse proxy in front of the server for the agent: it forwards everything, but the
/// first renewal certificate request is cut after the server answered (the certificate is
/// issued, the agent never gets it) — as a connection lost mid-renewal. Sends on `cut`.
async fn cutting_proxy(target: String) -> (String, tokio::sync::mpsc::Receiver<()>) {
    use axum::body::Bytes;
    use axum::http::{Method, StatusCode as S, Uri};
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let cut_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: axum::http::HeaderMap, body: Bytes| {
            let (client, target, tx, cut_done) =
                (client.clone(), target.clone(), tx.clone(), cut_done.clone());
            async move {
                let mut req = client.request(
                    reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
                    format!("{target}{uri}"),
                );
                for name in ["authorization", "content-type", "accept-language"] {
                    if let Some(v) = headers.get(name) {
                        req = req.header(name, v.to_str().unwrap());
                    }
                }
                let res = req.body(body).send().await.unwrap();
                let status = res.status().as_u16();
                let text = res.text().await.unwrap();
                if uri.path().ends_with("/certificate")
                    && !cut_done.swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    let _ = tx.send(()).await;
                    return (S::BAD_GATEWAY, "connection lost".to_string());
                }
                (S::from_u16(status).unwrap(), text)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_logs_in_renews_after_an_interruption_and_is_unlocked_in_a_browser() {
    use crate::agent::{RunningAgent, agent_listener, certificates, soft_token};
    use ekey_testkit::scenario::{self, Portal};

    let (listener, agent_url) = agent_listener().await;
    let s = TestServer::start_with(Db::Sqlite, default_start(), |c| {
        c.agent_url = agent_url.clone();
    })
    .await;
    let p = Portal::new(&s.base);
    let key = scenario::active_key(&p).await.unwrap();
    let (renewal_id, _) = scenario::approved_renewal(&p, &key).await.unwrap();
    let provider = s.login("provider").await;
    let issued_before = certificates(&s, &provider, &key.login_name).await.len();
    let (proxy, mut cut) = cutting_proxy(s.base.clone()).await;
    let state = tempfile::tempdir().unwrap();
    let agent = RunningAgent::start_on(listener, &s, &proxy, state.path()).await;
    let b = Browser::start().await;

    // ---- certificate login: pair once, then PIN ----
    b.goto(&s.url("/login")).await;
    b.wait_text("[data-key-login] [data-agent-box]", "配对")
        .await;
    b.shot_at("50-key-login-pairing", "[data-key-login]").await;
    b.click("[data-key-login] [data-agent-box] button").await;
    let code = b
        .css("[data-pair-code]")
        .await
        .attr("data-pair-code")
        .await
        .unwrap()
        .unwrap();
    b.shot_at("51-key-login-pair-code", "[data-key-login]")
        .await;
    assert_eq!(
        agent.agent.confirm_pairing(&code),
        ekey_agent::Confirmation::Confirmed
    );
    b.wait_text("[data-key-login] [data-agent-box]", "已连接")
        .await;
    let option = b.text("[data-key-select] option").await;
    assert!(option.contains(&key.token_serial), "{option}");
    b.fill_css("[data-key-pin]", "000000").await;
    b.click("[data-key-go]").await;
    b.wait_text("[data-key-err]", "还可").await;
    b.shot_at("52-key-login-wrong-pin", "[data-key-login]")
        .await;
    b.fill_css("[data-key-pin]", &key.pin).await;
    b.click("[data-key-go]").await;
    b.wait_text(".renewal-ready", "CA证书更新").await;
    assert_eq!(b.path().await, "/portal");
    b.shot("53-home-renewal-offered").await;

    // ---- renewal: the connection is lost after issuance ----
    b.click(".renewal-ready a").await;
    b.wait_text("[data-renewal] [data-agent-box]", "已连接")
        .await;
    b.fill_css("[data-renew-pin]", &key.pin).await;
    b.click("[data-renew-go]").await;
    tokio::time::timeout(Duration::from_secs(30), cut.recv())
        .await
        .expect("the certificate request reached the proxy");
    let failed = b.wait_text("[data-renew-failed]", "继续更新").await;
    assert!(failed.contains("原证书仍可正常使用"), "{failed}");
    b.shot_at("54-renewal-interrupted", "[data-renewal]").await;
    // The key still works with its old certificate; the new key waits in its container.
    let token = soft_token(&s, &key.token_serial);
    let st = token.status().unwrap();
    let names: Vec<_> = st.containers.iter().map(|c| c.name.clone()).collect();
    assert_eq!(names, ["renew-".to_string() + &renewal_id, "sign".into()]);
    token.sign(&key.pin, "sign", b"still usable").unwrap();

    // ---- the agent dies and is started again; the page continues ----
    let addr = agent.kill();
    let mut again = None;
    for _ in 0..50 {
        if let Ok(l) = ekey_agent::bind(&addr.to_string()).await {
            again = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agent =
        RunningAgent::start_on(again.expect("port free again"), &s, &s.base, state.path()).await;
    b.fill_css("[data-renew-pin]", &key.pin).await;
    b.click("[data-renew-go]").await;
    let done = b.wait_text("[data-renew-done]", "证书更新完成").await;
    b.shot_at("55-renewal-done", "[data-renewal]").await;
    let certs = certificates(&s, &provider, &key.login_name).await;
    assert_eq!(
        certs.len(),
        issued_before + 1,
        "exactly one new certificate"
    );
    let st = token.status().unwrap();
    assert_eq!(st.containers.len(), 1);
    let new_serial = done.rsplit('：').next().unwrap().trim().to_string();
    assert!(
        certs
            .iter()
            .any(|c| c["serial"] == new_serial.as_str() && c["revoked_at"].is_null()),
        "{new_serial} in {certs:?}"
    );

    // ---- six wrong PINs lock the key; the login page says so and links to the unlock ----
    log_out(&b).await;
    for _ in 0..6 {
        let _ = token.sign("999999", "sign", b"x");
    }
    b.goto(&s.url("/login")).await;
    b.wait_text("[data-key-login] [data-agent-box]", "已连接")
        .await;
    b.fill_css("[data-key-pin]", &key.pin).await;
    b.click("[data-key-go]").await;
    b.wait_text("[data-key-err]", "已锁定").await;
    b.shot_at("56-key-locked", "[data-key-login]").await;
    assert_eq!(
        b.css("[data-key-err] a")
            .await
            .attr("href")
            .await
            .unwrap()
            .unwrap(),
        "/portal/requests/new?kind=unlock"
    );

    // The unlock form reads the challenge from the locked key.
    log_in(&b, &s, "demo@ekey.example", PASSWORD).await;
    b.goto(&s.url(&format!(
        "/portal/requests/new?kind=unlock&login_name={}",
        key.login_name
    )))
    .await;
    b.click("[data-read-challenge]").await;
    b.wait_text("[data-read-challenge] + [data-agent-box]", "已从钥匙")
        .await;
    let challenge = b
        .css("[name='unlock_challenge']")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(
        challenge.len() > 100 && challenge.bytes().all(|c| c.is_ascii_hexdigit()),
        "{challenge}"
    );
    b.shot_at("57-unlock-challenge-read", "[name='unlock_challenge']")
        .await;
    let ent = s.login("demo@ekey.example").await;
    let unlock_id = p
        .request_under_review(
            &ent,
            json!({"kind": "unlock", "login_name": {"mode": "original", "value": key.login_name},
                   "authorised_user": scenario::person("unlock@example.com"), "unlock_challenge": challenge}),
            &["unlock_form", "business_licence"],
        )
        .await
        .unwrap();
    p.approve(&provider, &unlock_id).await.unwrap();
    let code = s.unlock_code("unlock@example.com").await;

    // The request page applies the mailed code with a new PIN through the agent.
    b.goto(&s.url(&format!("/portal/requests/{unlock_id}")))
        .await;
    b.wait_text("[data-unlock-apply] [data-agent-box]", "已连接")
        .await;
    b.fill_css("[data-unlock-code]", &code).await;
    b.fill_css("[data-unlock-pin]", "New-pin-2026").await;
    b.fill_css("[data-unlock-pin2]", "New-pin-2026").await;
    b.shot_at("58-unlock-code", "[data-unlock-apply]").await;
    b.click("[data-unlock-go]").await;
    b.wait_text(".page-head", "已办结").await;
    b.shot("59-unlocked").await;
    token.sign("New-pin-2026", "sign", b"unlocked").unwrap();
    drop(agent);
    b.close().await;
    s.stop().await;
}

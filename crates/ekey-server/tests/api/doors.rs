//! The public doors that send mail or claim something: names that cannot fail at
//! production, mail quotas, registrations that claim nothing until activated and say
//! nothing about what exists, and the administrator's release and transfer.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::pages::PageClient;
use crate::support::*;

const REG: &str = "/api/v1/registrations";

/// The mails to `to`, oldest first.
async fn mails_to(s: &TestServer, to: &str) -> Vec<Value> {
    s.mailbox()
        .await
        .into_iter()
        .filter(|m| m["to"] == to)
        .collect()
}

/// Waits until `to` has `n` mails (the outbox delivers asynchronously), then a moment more
/// so that an (n+1)th would have shown.
async fn settle(s: &TestServer, to: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        if mails_to(s, to).await.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    mails_to(s, to).await
}

fn reset_link(mail: &Value) -> String {
    let body = mail["body"].as_str().unwrap();
    body.split_whitespace()
        .find(|w| w.contains("/password/reset/"))
        .unwrap_or_else(|| panic!("no reset link in {body}"))
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Item 13: names refuse control and bidi characters, with the CA's limits.

async fn names_refuse_control_and_bidi_characters(db: Db) {
    let s = TestServer::start(db).await;
    let code = credit_code("91320100MA1BD000X");
    let good = || registration("金陵贸易有限公司", &code, "320000", "bidi@example.com");
    let before = s.snapshot().await;
    for bad in [
        "\u{202E}", "\u{202A}", "\u{2066}", "\u{2069}", "\u{200E}", "\u{200F}", "\n", "\u{0}",
        "\u{7}",
    ] {
        for path in [
            &["enterprise_name"][..],
            &["address"],
            &["legal_representative"],
            &["contact", "name"],
        ] {
            let mut body = good();
            let mut at = &mut body;
            for p in &path[..path.len() - 1] {
                at = at.get_mut(*p).unwrap();
            }
            let field = path[path.len() - 1];
            at[field] = json!(format!("金陵{bad}贸易"));
            let (status, v) = s.post(REG, None, body).await;
            if bad == "\u{0}" {
                // A NUL never reaches a handler (refused by the body reader on every database).
                assert!(status.is_client_error(), "{path:?} {bad:?}: {status} {v}");
                continue;
            }
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path:?} {bad:?}: {v}"
            );
            assert_eq!(
                v["code"], "ekey.input.forbidden_characters",
                "{path:?}: {v}"
            );
            assert!(
                v["message"].as_str().unwrap().contains("不允许的字符"),
                "{v}"
            );
        }
    }
    // The enterprise name is the certificate's O and CN: at most 64 characters, as the CA.
    let mut body = good();
    body["enterprise_name"] = json!("公".repeat(65));
    let (status, v) = s.post(REG, None, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.input.too_long");
    assert!(v["message"].as_str().unwrap().contains("64"), "{v}");
    assert_eq!(
        s.snapshot().await,
        before,
        "refused registrations change nothing"
    );
    let mut body = good();
    body["enterprise_name"] = json!("公".repeat(64));
    let (status, v) = s.post(REG, None, body).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "64 characters fit a certificate: {v}"
    );

    // The page says it next to the field, and keeps nothing.
    let p = PageClient::new(&s);
    let csrf = p.csrf("/register").await;
    let a = p
        .post(
            "/register",
            &[
                ("csrf", &csrf),
                ("enterprise_name", "苏州\u{202E}司公限有"),
                ("credit_code", &credit_code("91320500MA1BD000X")),
                ("province", "320000"),
                ("address", "苏州市姑苏区人民路 1 号"),
                ("legal_representative", "王建华"),
                ("contact_name", "李明"),
                ("id_number", "11010519491231002X"),
                ("mobile", "13912345678"),
                ("email", "page-bidi@example.com"),
                ("password", "Secret-2026"),
                ("password2", "Secret-2026"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("不允许的字符"), "{}", a.body);
    assert!(mails_to(&s, "page-bidi@example.com").await.is_empty());

    // The request form's authorised user and reason: the same rule.
    let ent = s.login("demo@ekey.example").await;
    let mut req = first_request("wang@example.com");
    req["authorised_user"]["name"] = json!("王\u{200F}小明");
    let (status, v) = s.post("/api/v1/requests", Some(&ent), req).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.input.forbidden_characters");
    let mut req = first_request("wang@example.com");
    req["kind"] = json!("additional");
    req["reason"] = json!("业务扩大\u{202E}需要");
    let (status, v) = s.post("/api/v1/requests", Some(&ent), req).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.input.forbidden_characters");
    s.stop().await;
}
on_both_databases!(names_refuse_control_and_bidi_characters);

// ---------------------------------------------------------------------------------------
// Item 13: mail quotas per recipient and per address, counted in the database.

async fn mail_quotas_per_recipient_and_per_address(db: Db) {
    let s = TestServer::start(db).await;
    // Five reset mails a day to one recipient; the sixth request is refused, the same way
    // for a login that does not exist (the answer tells nothing).
    for login in ["demo@ekey.example", "ghost@example.com"] {
        for n in 0..5 {
            let (status, v) = s
                .post("/api/v1/password-resets", None, json!({"login": login}))
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{login} #{n}: {v}");
        }
        let (status, v) = s
            .post("/api/v1/password-resets", None, json!({"login": login}))
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{login}: {v}");
        assert_eq!(v["code"], "ekey.mail.rate_limited");
        assert!(v["message"].as_str().unwrap().contains("每日上限"), "{v}");
    }
    let resets = settle(&s, "demo@ekey.example", 5).await;
    assert_eq!(resets.len(), 5, "five mails reached the victim, not more");

    // A day later the recipient may be written to again.
    s.clock.advance(chrono::Duration::hours(24));
    let (status, v) = s
        .post(
            "/api/v1/password-resets",
            None,
            json!({"login": "demo@ekey.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");

    // One address may ask for 20 mails an hour, to anyone.
    s.clock.advance(chrono::Duration::hours(2));
    for n in 0..20 {
        let (status, v) = s
            .post(
                "/api/v1/registrations/resend",
                None,
                json!({"email": format!("someone{n}@example.com")}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "#{n}: {v}");
    }
    let (status, v) = s
        .post(
            "/api/v1/registrations/resend",
            None,
            json!({"email": "fresh@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["code"], "ekey.mail.rate_limited");
    s.clock.advance(chrono::Duration::minutes(61));

    // Thirty registrations naming one email at once: five are accepted, five activation
    // mails arrive, the rest are refused.
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (client, url) = (s.client.clone(), s.url(REG));
            let body = registration(
                "并发贸易有限公司",
                &ekey_testkit::ident::credit_code_in("320100", 90_000 + i),
                "320000",
                "target@example.com",
            );
            tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap().status() })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected answer {other}"),
        }
    }
    assert_eq!(created, 5, "the recipient's quota holds under concurrency");
    assert_eq!(settle(&s, "target@example.com", 5).await.len(), 5);
    s.stop().await;
}
on_both_databases!(mail_quotas_per_recipient_and_per_address);

// ---------------------------------------------------------------------------------------
// Items 12 and 21: a registration claims nothing until activated and tells nothing.

async fn registrations_claim_nothing_and_tell_nothing(db: Db) {
    let s = TestServer::start(db).await;
    let code = credit_code("91320100MA1QUAT08");
    // Someone registers the enterprise before it does; the enterprise can still register.
    let (status, squat) = s
        .post(
            REG,
            None,
            registration("金陵贸易有限公司", &code, "320000", "squatter@example.com"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{squat}");
    let (status, real) = s
        .post(
            REG,
            None,
            registration("金陵贸易有限公司", &code, "320000", "real@jinling.example"),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a pending registration claims nothing: {real}"
    );
    let squat_link = activation_link(&s.wait_message("squatter@example.com", "激活").await);
    let real_link = activation_link(&s.wait_message("real@jinling.example", "激活").await);
    // Unactivated: told so with the right password, not before.
    let (status, v) = s
        .post(
            "/api/v1/sessions",
            None,
            json!({"login": "real@jinling.example", "password": "Secret-2026"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "ekey.auth.not_activated");

    // The enterprise activates first and wins; the squatter's link then says why it fails.
    let res = s.client.get(&real_link).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = s.client.get(&squat_link).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["code"], "ekey.registration.enterprise_taken", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("已有企业账户"),
        "{v}"
    );
    let res = s
        .client
        .get(&squat_link)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res.text().await.unwrap().contains("已有企业账户"));
    s.login_with("real@jinling.example", "Secret-2026").await;
    // The squatter has no account: its registration still waits on a link that cannot win.
    let (status, v) = s
        .post(
            "/api/v1/sessions",
            None,
            json!({"login": "squatter@example.com", "password": "Secret-2026"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "ekey.auth.not_activated");

    // The same answer whether or not the credit code or the email exists: the owners are
    // told by mail, the caller nothing.
    let fresh = s
        .post(
            REG,
            None,
            registration(
                "新公司",
                &credit_code("91320100MA1FRE008"),
                "320000",
                "fresh@example.com",
            ),
        )
        .await;
    let code_taken = s
        .post(
            REG,
            None,
            registration("金陵贸易有限公司", &code, "320000", "third@example.com"),
        )
        .await;
    let email_taken = s
        .post(
            REG,
            None,
            registration(
                "又一家公司",
                &credit_code("91320100MA1FRE016"),
                "320000",
                "demo@ekey.example",
            ),
        )
        .await;
    for (status, v) in [&fresh, &code_taken, &email_taken] {
        assert_eq!(*status, StatusCode::CREATED, "{v}");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["account_id"], "{v}");
    }
    let notice = s.wait_message("real@jinling.example", "有人").await;
    assert!(notice["body"].as_str().unwrap().contains(&code), "{notice}");
    assert!(
        !notice["body"]
            .as_str()
            .unwrap()
            .contains("/api/v1/activations/")
    );
    let notice = s.wait_message("demo@ekey.example", "有人").await;
    assert!(
        notice["body"].as_str().unwrap().contains("已有企业账户"),
        "{notice}"
    );
    assert!(
        !notice["body"]
            .as_str()
            .unwrap()
            .contains("/api/v1/activations/")
    );
    // The owner of the email keeps their account and password.
    s.login("demo@ekey.example").await;
    s.stop().await;
}
on_both_databases!(registrations_claim_nothing_and_tell_nothing);

// ---------------------------------------------------------------------------------------
// Item 12: the administrator releases or transfers an enterprise account.

async fn the_administrator_releases_and_transfers_enterprise_accounts(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.login("admin").await;
    let code = credit_code("91320100MA1QUAT16");
    // A squatter registered and activated the enterprise; the real one cannot.
    let squatter = s
        .register_and_login("金陵贸易有限公司", &code, "320000", "squatter@example.com")
        .await;
    let (status, _) = s
        .post(
            REG,
            None,
            registration("金陵贸易有限公司", &code, "320000", "real@jinling.example"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let real_link = activation_link(&s.wait_message("real@jinling.example", "激活").await);
    assert_eq!(
        s.client.get(&real_link).send().await.unwrap().status(),
        StatusCode::CONFLICT
    );

    // Only the administrator may release, with a reason.
    let release = format!("/api/v1/admin/enterprises/{code}/release");
    let (status, _) = s
        .post(&release, Some(&squatter), json!({"reason": "冒名注册"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, v) = s.post(&release, Some(&admin), json!({"reason": " "})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, v) = s
        .post(
            &release,
            Some(&admin),
            json!({"reason": "经核实为冒名注册"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "released");
    // The squatter is out and told; the real enterprise's link works now.
    let (status, _) = s.get("/api/v1/me", Some(&squatter)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the released account's sessions end"
    );
    let told = s.wait_message("squatter@example.com", "释放").await;
    assert!(told["body"].as_str().unwrap().contains("经核实为冒名注册"));
    assert_eq!(
        s.client.get(&real_link).send().await.unwrap().status(),
        StatusCode::OK
    );
    s.login_with("real@jinling.example", "Secret-2026").await;
    let (status, v) = s
        .post(&release, Some(&admin), json!({"reason": "again"}))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the real enterprise can be released too: {v}"
    );

    // Transfer: the new email gets a link to set a password, the old login ends.
    let code = credit_code("91320100MA1MUWE09");
    let old = s
        .register_and_login("苏州迁移贸易有限公司", &code, "320000", "old@example.com")
        .await;
    let transfer = format!("/api/v1/admin/enterprises/{code}/transfer");
    let (status, v) = s
        .post(
            &transfer,
            Some(&admin),
            json!({"email": "demo@ekey.example", "reason": "变更联系人"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "ekey.enterprise.email_taken");
    let (status, v) = s
        .post(
            &transfer,
            Some(&admin),
            json!({"email": "new@example.com", "reason": "变更联系人"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["login"], "new@example.com");
    let (status, _) = s.get("/api/v1/me", Some(&old)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .post(
            "/api/v1/sessions",
            None,
            json!({"login": "old@example.com", "password": "Secret-2026"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.wait_message("old@example.com", "转移").await;
    let link = reset_link(&s.wait_message("new@example.com", "转移").await);
    let token = link.rsplit('/').next().unwrap();
    let (status, v) = s
        .post(
            &format!("/api/v1/password-resets/{token}"),
            None,
            json!({"password": "Moved-2026x"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let new = s.login_with("new@example.com", "Moved-2026x").await;
    let (_, me) = s.get("/api/v1/me", Some(&new)).await;
    assert_eq!(me["enterprise"]["credit_code"], code.as_str());

    // The console's form does the same, for the administrator only.
    let p = PageClient::new(&s);
    p.login("admin", PASSWORD).await;
    let csrf = p.csrf("/console/admin").await;
    let a = p
        .post(
            "/console/admin/enterprises",
            &[
                ("csrf", &csrf),
                ("credit_code", &code),
                ("action", "release"),
                ("reason", "企业申请注销账户"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(a.location.contains("done=released"), "{}", a.location);
    let (status, _) = s.get("/api/v1/me", Some(&new)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.wait_message("new@example.com", "释放").await;
    assert_eq!(s.verify_audit().await.first_broken, None);
    s.stop().await;
}
on_both_databases!(the_administrator_releases_and_transfers_enterprise_accounts);

// ---------------------------------------------------------------------------------------
// Item 18: login names cannot be squatted.

async fn login_names_cannot_be_squatted(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s
        .register_and_login(
            "常州机电进口有限公司",
            &credit_code("91320400MA1NAME03"),
            "320000",
            "names@example.com",
        )
        .await;
    // The allocation namespace cannot be typed in as an existing (机电) name.
    let mut req = first_request("wang@example.com");
    req["licence_types"] = json!(["auto_import_mechanical"]);
    req["login_name"] = json!({"mode": "existing", "value": "ek320001234"});
    let (status, v) = s.post("/api/v1/requests", Some(&ent), req.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.login_name.allocated_pattern");
    // An existing name claims nothing at the door: another enterprise may bring it too.
    req["login_name"] = json!({"mode": "existing", "value": "jd_import_77"});
    let (status, v) = s.post("/api/v1/requests", Some(&ent), req.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let demo = s.login("demo@ekey.example").await;
    let mut other = req.clone();
    other["kind"] = json!("additional");
    other["reason"] = json!("新增机电进口业务");
    let (status, v) = s.post("/api/v1/requests", Some(&demo), other).await;
    assert_ne!(status, StatusCode::CONFLICT, "nothing was claimed: {v}");

    // 获取登录名: three unused at once, released after a week.
    for n in 0..3 {
        let (status, v) = s.post("/api/v1/login-names", Some(&ent), json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "#{n}: {v}");
    }
    let (status, v) = s.post("/api/v1/login-names", Some(&ent), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "ekey.login_name.too_many_reservations");
    s.clock.advance(chrono::Duration::days(8));
    let ent = s.login_with("names@example.com", "Secret-2026").await;
    let (status, v) = s.post("/api/v1/login-names", Some(&ent), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    s.stop().await;
}
on_both_databases!(login_names_cannot_be_squatted);

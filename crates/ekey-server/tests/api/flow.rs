//! The first-issue path end to end, as an enterprise, its agency and the provider live it.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

async fn first_issue_to_production(db: Db) {
    let s = TestServer::start(db).await;
    let code = credit_code("91320100MA1N2P3Q0");
    let email = "clerk@jinling-trade.example";

    // Register: the activation mail arrives with the seed's subject; no login before it.
    let (status, v) = s
        .post(
            "/api/v1/registrations",
            None,
            registration("金陵贸易有限公司", &code, "320000", email),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let mail = s.wait_message(email, "激活").await;
    assert_eq!(mail["subject"], "调用商务部统一用户管理平台激活企业账户");
    let (status, v) = s
        .post(
            "/api/v1/sessions",
            None,
            json!({"login": email, "password": "Secret-2026"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(v["code"], "ekey.auth.not_activated");
    let link = activation_link(&mail);
    let res = s.client.get(&link).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = s.client.get(&link).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::GONE,
        "an activation link works once"
    );
    let ent = s.login_with(email, "Secret-2026").await;
    let agency = s.login("agency-320000").await;
    let beijing = s.login("agency-110000").await;
    let provider = s.login("provider").await;

    // Fill the form; the login name is allocated.
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            first_request("liming@example.com"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "draft");
    let id = v["id"].as_str().unwrap().to_string();
    let number = v["number"].as_str().unwrap().to_string();
    assert!(number.starts_with("EK3220260212"), "{number}");
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    let login_name = r["login_name"].as_str().unwrap().to_string();
    assert!(login_name.starts_with("ek32"), "{login_name}");
    assert_eq!(r["due_at"], serde_json::Value::Null);

    // Documents exist (in the API) once the form is final.
    let (status, v) = s
        .get(
            &format!("/api/v1/requests/{id}/documents/application-form.pdf"),
            Some(&ent),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/submit"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "awaiting_materials");
    for doc in ["application-form.pdf", "confirmation-letter.pdf"] {
        let url = s.url(&format!("/api/v1/requests/{id}/documents/{doc}"));
        let res = s.client.get(&url).bearer_auth(&ent).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{doc}");
        assert_eq!(res.headers()["content-type"], "application/pdf");
        let pdf = res.bytes().await.unwrap();
        let text = pdf_text(&pdf);
        assert!(
            text.contains(&number),
            "{doc} carries the request number: {text}"
        );
        assert!(
            text.contains("11010519491231002X"),
            "{doc} names the authorised user"
        );
        // Another province's agency is told it does not exist.
        let res = s
            .client
            .get(&url)
            .bearer_auth(&beijing)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{doc} out of scope");
    }
    // An unlock form is not among a first issue's documents.
    let (status, v) = s
        .get(
            &format!("/api/v1/requests/{id}/documents/unlock-form.pdf"),
            Some(&ent),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["code"], "ekey.document.not_for_kind");

    // Five of six scans: confirm is refused and names the missing one.
    upload_all(&s, &ent, &id, &SIX[..5]).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["code"], "ekey.material.missing");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("数字证书用户协议书"),
        "{v}"
    );
    upload_all(&s, &ent, &id, &SIX[5..]).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "agency_review");
    // Thu 2026-02-12 + 2 working days: Fri 13th and the make-up Saturday 14th.
    assert_eq!(v["due_at"], "2026-02-15T00:00:00+08:00");

    // Another province's clerk cannot see it; the provider cannot pre-review it.
    let (status, v) = s
        .get(&format!("/api/v1/requests/{id}"), Some(&beijing))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&provider),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "ekey.request.wrong_state");
    // The enterprise cannot decide at all.
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&ent),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");

    // 验核未通过 with a remark: back to the enterprise, which is told by mail and SMS.
    let remark = "营业执照扫描件不清晰，请重新扫描上传";
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&agency),
            json!({"approve": false, "remark": remark}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "returned");
    assert_eq!(v["due_at"], serde_json::Value::Null);
    let m = s.wait_message("liming@example.com", "验核未通过").await;
    assert!(m["body"].as_str().unwrap().contains(remark));
    s.wait_message("13912345678", &number).await;

    // The enterprise replaces the scan and confirms again: 验核 again.
    let (status, v) = s
        .put_bytes(
            &format!("/api/v1/requests/{id}/materials/business_licence"),
            Some(&ent),
            "image/jpeg",
            png(5000),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["content_type"], "image/png",
        "type judged by content, not header"
    );
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "agency_review");

    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&agency),
            json!({"approve": true, "remark": "材料齐全"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "provider_review");
    // 5 working days for 复核 + production: 13th, 14th, then after the holiday 24th–26th.
    assert_eq!(v["due_at"], "2026-02-27T00:00:00+08:00");

    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&provider),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "in_production");
    assert_eq!(
        v["due_at"], "2026-02-27T00:00:00+08:00",
        "production keeps the 复核 clock"
    );
    s.wait_message("liming@example.com", "复核通过").await;

    // The history tells the whole story, with roles and the remark.
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    let steps: Vec<(String, String)> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["action"].as_str().unwrap().into(),
                h["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [
        ("create", "draft"),
        ("submit", "awaiting_materials"),
        ("confirm_upload", "agency_review"),
        ("agency_return", "returned"),
        ("confirm_upload", "agency_review"),
        ("agency_approve", "provider_review"),
        ("provider_approve", "in_production"),
    ];
    assert_eq!(steps, expected.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(r["history"][3]["remark"], remark);
    assert_eq!(r["history"][3]["actor_role"], "agency");
    assert!(r["history"][0]["at"].as_str().unwrap().ends_with("+08:00"));

    // Public result query: number + credit code, no login.
    let (status, v) = s
        .get(
            &format!("/api/v1/public/result?number={number}&credit_code={code}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "in_production");
    assert_eq!(v["ready_for_collection"], false);
    assert_eq!(v["collection"]["address"], "南京市汉中门大街145号");
    assert_eq!(v["collection"]["hotline"], "025-83666306");
    assert!(v["collection"]["window"].as_str().unwrap().contains("A18"));
    let other = credit_code("91320100MA1N2P308");
    let (status, v) = s
        .get(
            &format!("/api/v1/public/result?number={number}&credit_code={other}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");

    let report = s.verify_audit().await;
    assert_eq!(report.first_broken, None);
    assert!(report.records >= 10, "{report:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_issue_to_production_sqlite() {
    first_issue_to_production(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_issue_to_production_postgres() {
    first_issue_to_production(Db::Postgres).await;
}

async fn concurrent_decisions_one_wins(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login("demo@ekey.example").await;
    let id = request_in_agency_review(&s, &ent).await;
    let tokens = [
        s.login("agency-320000").await,
        s.login("agency-320000").await,
    ];
    let before = s.verify_audit().await.records;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = s.client.clone();
        let url = s.url(&format!("/api/v1/requests/{id}/decision"));
        let token = tokens[i % 2].clone();
        // Half approve, half return: whichever commits first decides; the rest must fail.
        let body = if i % 2 == 0 {
            json!({"approve": true})
        } else {
            json!({"approve": false, "remark": "材料不全"})
        };
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status();
            let v: serde_json::Value = res.json().await.unwrap();
            (status, v)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        if status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(status, StatusCode::CONFLICT, "{v}");
            let code = v["code"].as_str().unwrap();
            assert!(
                code == "ekey.request.conflict" || code == "ekey.request.wrong_state",
                "{v}"
            );
        }
    }
    assert_eq!(ok, 1, "exactly one decision wins");
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    let decisions = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "agency_approve" || h["action"] == "agency_return")
        .count();
    assert_eq!(decisions, 1, "{r:#}");
    let report = s.verify_audit().await;
    assert_eq!(report.first_broken, None);
    // Logins add audit records too; the decisions add exactly one.
    assert_eq!(report.records, before + 1, "one decision audited");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decisions_one_wins_sqlite() {
    concurrent_decisions_one_wins(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decisions_one_wins_postgres() {
    concurrent_decisions_one_wins(Db::Postgres).await;
}

async fn activation_expires_and_resend_replaces_the_link(db: Db) {
    let s = TestServer::start(db).await;
    let email = "late@example.com";
    let code = credit_code("91320200MA1P2Q3R3");
    let (status, _) = s
        .post(
            "/api/v1/registrations",
            None,
            registration("无锡迟到贸易有限公司", &code, "320000", email),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let first = activation_link(&s.wait_message(email, "激活").await);
    // 49 hours later the 48-hour link is dead.
    s.clock.advance(chrono::Duration::hours(49));
    let res = s
        .client
        .get(&first)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::GONE);
    let page = res.text().await.unwrap();
    assert!(page.contains("已过期"), "{page}");
    // Resend: a new link; the answer is the same for unknown emails (no enumeration).
    let (status, _) = s
        .post(
            "/api/v1/registrations/resend",
            None,
            json!({"email": email}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = s
        .post(
            "/api/v1/registrations/resend",
            None,
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut second = None;
    for _ in 0..100 {
        let links: Vec<String> = s
            .mailbox()
            .await
            .iter()
            .filter(|m| m["to"] == email)
            .map(activation_link)
            .collect();
        if links.len() == 2 {
            second = Some(links[1].clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let second = second.expect("a second activation mail");
    assert_ne!(first, second);
    let res = s
        .client
        .get(&second)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("已激活"));
    s.login_with(email, "Secret-2026").await;
    assert!(
        s.mailbox()
            .await
            .iter()
            .all(|m| m["to"] != "nobody@example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activation_expires_and_resend_replaces_the_link_sqlite() {
    activation_expires_and_resend_replaces_the_link(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activation_expires_and_resend_replaces_the_link_postgres() {
    activation_expires_and_resend_replaces_the_link(Db::Postgres).await;
}

async fn everyone_sees_only_their_own(db: Db) {
    let s = TestServer::start(db).await;
    let jiangsu = s.login("demo@ekey.example").await;
    let beijing_ent = s
        .register_and_login(
            "北京燕京贸易有限公司",
            &credit_code("91110000MA0A1B2C2"),
            "110000",
            "bj@example.com",
        )
        .await;
    let js_id = request_in_agency_review(&s, &jiangsu).await;
    let bj_id = request_in_agency_review(&s, &beijing_ent).await;
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = s.get("/api/v1/requests", Some(&jiangsu)).await;
    assert_eq!(ids(&v), vec![js_id.clone()]);
    let (_, v) = s
        .get("/api/v1/requests", Some(&s.login("agency-320000").await))
        .await;
    assert_eq!(ids(&v), vec![js_id.clone()]);
    let (_, v) = s
        .get(
            "/api/v1/requests?status=agency_review",
            Some(&s.login("agency-110000").await),
        )
        .await;
    assert_eq!(ids(&v), vec![bj_id.clone()]);
    let (_, v) = s
        .get("/api/v1/requests", Some(&s.login("provider").await))
        .await;
    assert_eq!(ids(&v).len(), 2);
    let (status, _) = s
        .get(&format!("/api/v1/requests/{bj_id}"), Some(&jiangsu))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .get(
            &format!("/api/v1/requests/{js_id}/materials/id_card"),
            Some(&beijing_ent),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The owner downloads the scan it uploaded, byte for byte.
    let res = s
        .client
        .get(s.url(&format!("/api/v1/requests/{js_id}/materials/id_card")))
        .bearer_auth(&jiangsu)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.bytes().await.unwrap().to_vec(), png(2000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn everyone_sees_only_their_own_sqlite() {
    everyone_sees_only_their_own(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn everyone_sees_only_their_own_postgres() {
    everyone_sees_only_their_own(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edit_and_withdraw_a_draft() {
    let s = TestServer::start(Db::Sqlite).await;
    let ent = s.login("demo@ekey.example").await;
    let (_, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            first_request("a@example.com"),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_string();
    let (status, v) = s
        .patch(
            &format!("/api/v1/requests/{id}"),
            Some(&ent),
            json!({"licence_types": ["textiles", "dual_use"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["form"]["licence_types"], json!(["textiles", "dual_use"]));
    assert_eq!(v["status"], "draft");
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/withdraw"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "withdrawn");
    // A withdrawn request no longer counts: a new first issue is possible.
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            first_request("a@example.com"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_documents_every_public_path() {
    let s = TestServer::start(Db::Sqlite).await;
    let (status, doc) = s.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/healthz",
        "/api/v1/sessions",
        "/api/v1/registrations",
        "/api/v1/requests",
        "/api/v1/requests/{id}",
        "/api/v1/requests/{id}/submit",
        "/api/v1/requests/{id}/documents/application-form.pdf",
        "/api/v1/requests/{id}/documents/confirmation-letter.pdf",
        "/api/v1/requests/{id}/documents/unlock-form.pdf",
        "/api/v1/requests/{id}/documents/cancellation-form.pdf",
        "/api/v1/documents/cancellation-form.pdf",
        "/api/v1/password-resets",
        "/api/v1/requests/{id}/collection",
        "/api/v1/requests/{id}/materials/{item}",
        "/api/v1/requests/{id}/confirm-upload",
        "/api/v1/requests/{id}/decision",
        "/api/v1/public/result",
        "/api/v1/dev/mailbox",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lacks {p}");
    }
    // What schemathesis found wrong in the document: query parameters declared as path
    // parameters, the refusals of a secured operation missing, and the enterprise's
    // collection choice and the public result's collection sharing one schema name.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let name = p["name"].as_str().unwrap();
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: `{name}` is no path parameter"
                    );
                }
            }
            if op["security"].is_array() {
                for status in ["400", "401"] {
                    assert!(
                        op["responses"][status]["content"]["application/json"].is_object(),
                        "{method} {path} does not document {status}"
                    );
                }
            }
        }
    }
    let result = &paths["/api/v1/public/result"]["get"]["parameters"];
    assert!(
        result
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["in"] == "query"),
        "{result}"
    );
    let schemas = &doc["components"]["schemas"];
    let choice = paths["/api/v1/requests/{id}/collection"]["put"]["responses"]["200"]["content"]
        ["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    assert!(
        schemas[choice]["properties"]["method"].is_object(),
        "{choice}"
    );
    assert!(schemas["CollectionOut"]["properties"]["hotline"].is_object());
    let (status, v) = s.get("/api/v1/no-such-thing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["code"], "ekey.not_found");
}

async fn unlock_scans_are_limited_to_200_kb(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login("demo@ekey.example").await;
    // The enterprise's key (its login name) comes from a first issue.
    let (_, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            first_request("a@example.com"),
        )
        .await;
    let (_, first) = s
        .get(
            &format!("/api/v1/requests/{}", v["id"].as_str().unwrap()),
            Some(&ent),
        )
        .await;
    let login_name = first["login_name"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&ent),
            json!({"kind": "unlock", "login_name": {"mode": "original", "value": login_name},
                   "authorised_user": person("a@example.com"), "unlock_challenge": "ab".repeat(16)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    s.post(
        &format!("/api/v1/requests/{id}/submit"),
        Some(&ent),
        json!({}),
    )
    .await;
    let path = format!("/api/v1/requests/{id}/materials/unlock_form");
    let (status, v) = s
        .put_bytes(&path, Some(&ent), "image/png", png(200 * 1024 + 1))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["message"].as_str().unwrap().contains("200 KB"), "{v}");
    // "每张图片小于200KB": exactly 200 KB is refused too, one byte less is accepted.
    let (status, v) = s
        .put_bytes(&path, Some(&ent), "image/png", png(200 * 1024))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("须小于 200 KB"),
        "{v}"
    );
    let (status, v) = s
        .put_bytes(&path, Some(&ent), "image/png", png(200 * 1024 - 1))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    // Only the unlock form and the licence: the first-issue items are not asked for.
    let (status, v) = s
        .put_bytes(
            &format!("/api/v1/requests/{id}/materials/id_card"),
            Some(&ent),
            "image/png",
            png(1000),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    s.put_bytes(
        &format!("/api/v1/requests/{id}/materials/business_licence"),
        Some(&ent),
        "image/png",
        png(1000),
    )
    .await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v["status"], "provider_review",
        "unlock goes straight to the provider"
    );
    // Thu 2026-02-12 + 3 working days: 13th, 14th (make-up Saturday), then 24th after Spring Festival.
    assert_eq!(v["due_at"], "2026-02-25T00:00:00+08:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unlock_scans_are_limited_to_200_kb_sqlite() {
    unlock_scans_are_limited_to_200_kb(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unlock_scans_are_limited_to_200_kb_postgres() {
    unlock_scans_are_limited_to_200_kb(Db::Postgres).await;
}

/// The text of a PDF, by poppler's pdftotext.
pub fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext is missing: apt-get install -y poppler-utils");
    assert!(out.status.success(), "pdftotext could not read the PDF");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

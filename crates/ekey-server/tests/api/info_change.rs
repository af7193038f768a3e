//! 重新申领（信息变更） changes something (issue 16, item 5): the form takes the new
//! enterprise data, 验核 shows it old beside new, the new certificate and (on completion)
//! the enterprise record carry it, and the enterprise's other keys are listed.

use ekey_store::Store as _;
use ekey_testkit::ident::credit_code;
use serde_json::{Value, json};

use crate::support::{Db, SIX, TestServer, first_request, person, upload_all};

const NEW_NAME: &str = "南京新名称进出口有限公司";
const NEW_REP: &str = "赵新民";
const NEW_ADDRESS: &str = "南京市玄武区珠江路 88 号";

/// Submits, uploads, confirms; then 验核, 复核, production, shipment, collection and the
/// handover, stopping before the handover when `hand_over` is false. Returns the request.
async fn drive(s: &TestServer, token: &str, body: Value, hand_over: bool) -> Value {
    let (status, v) = s.post("/api/v1/requests", Some(token), body).await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/requests/{id}");
    let (status, v) = s
        .post(&format!("{path}/submit"), Some(token), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    upload_all(s, token, &id, SIX).await;
    let (status, v) = s
        .post(&format!("{path}/confirm-upload"), Some(token), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    crate::support::approve_to_collection(s, &agency, &provider, &id).await;
    if hand_over {
        hand_over_key(s, &id).await;
    }
    s.get(&path, Some(token)).await.1
}

async fn hand_over_key(s: &TestServer, id: &str) {
    let agency = s.login("agency-320000").await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/handover"),
            Some(&agency),
            json!({"method": "pickup", "collector_name": "李明",
                   "collector_id_number": "11010519491231002X", "introduction_letter": true}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "completed");
}

fn reapplication(email: &str, change: Value) -> Value {
    json!({
        "kind": "reapplication",
        "licence_types": ["import_licence"],
        "login_name": {"mode": "allocate"},
        "authorised_user": person(email),
        "enterprise_change": change,
    })
}

/// The subject's O of a DER certificate, read by OpenSSL.
fn subject_o(der: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cert.der");
    std::fs::write(&path, der).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-subject", "-nameopt"])
        .arg("utf8,sep_multiline,lname")
        .arg("-in")
        .arg(&path)
        .output()
        .expect("openssl");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("organizationName="))
        .unwrap_or_else(|| panic!("no O in {text}"))
        .to_string()
}

async fn a_reapplication_changes_the_enterprise_and_the_new_certificate(db: Db) {
    let s = TestServer::start(db).await;
    let code = credit_code(3101);
    let old_name = "南京旧名称贸易有限公司";
    let token = s
        .register_and_login(old_name, &code, "320000", "ic3101@example.com")
        .await;
    let first = drive(&s, &token, first_request("ic3101-a@example.com"), true).await;
    assert_eq!(first["status"], "completed");
    let first_login = first["login_name"].as_str().unwrap().to_string();

    // Without the new data, with nothing changed, or on another kind: refused, nothing kept.
    let before = s.snapshot().await;
    let mut body = reapplication("ic3101-b@example.com", Value::Null);
    let (status, v) = s.post("/api/v1/requests", Some(&token), body.clone()).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["code"], "ekey.input.required", "{v}");
    body["enterprise_change"] = json!({"name": old_name, "legal_representative": "王建华",
        "address": "南京市鼓楼区中山北路 1 号"});
    let (status, v) = s.post("/api/v1/requests", Some(&token), body).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["code"], "ekey.info_change.unchanged", "{v}");
    let mut additional = first_request("ic3101-b@example.com");
    additional["kind"] = json!("additional");
    additional["reason"] = json!("业务需要");
    additional["enterprise_change"] =
        json!({"name": NEW_NAME, "legal_representative": NEW_REP, "address": NEW_ADDRESS});
    let (status, v) = s.post("/api/v1/requests", Some(&token), additional).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["code"], "ekey.info_change.wrong_kind", "{v}");
    assert_eq!(s.snapshot().await, before, "refusals change nothing");

    // The re-application with the new data, up to the key at the agency.
    let change = json!({"name": NEW_NAME, "legal_representative": NEW_REP, "address": NEW_ADDRESS});
    let r = drive(
        &s,
        &token,
        reapplication("ic3101-b@example.com", change),
        false,
    )
    .await;
    let id = r["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/requests/{id}");

    // Both forms print the new data, for the legal representative and the user to sign.
    for doc in ["application-form", "confirmation-letter"] {
        let pdf = s
            .client
            .get(s.url(&format!("{path}/documents/{doc}.pdf")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let text: String = crate::browser::pdftotext(&pdf)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        assert!(text.contains(NEW_NAME), "{doc}: {text}");
        assert!(
            !text.contains(old_name),
            "{doc} names the old enterprise: {text}"
        );
        if doc == "application-form" {
            assert!(
                text.contains(NEW_REP) && text.contains("珠江路88号"),
                "{text}"
            );
        }
    }

    // 验核 sees old beside new.
    let agency = s.login("agency-320000").await;
    let (_, seen) = s.get(&path, Some(&agency)).await;
    let rows = seen["enterprise_change"].as_array().unwrap();
    let name_row = rows.iter().find(|r| r["field"] == "name").unwrap();
    assert_eq!(name_row["before"], old_name);
    assert_eq!(name_row["after"], NEW_NAME);
    assert_eq!(name_row["changed"], true);
    let rep_row = rows
        .iter()
        .find(|r| r["field"] == "legal_representative")
        .unwrap();
    assert_eq!(rep_row["after"], NEW_REP);

    // The new certificate names the new enterprise.
    let (_, keys) = s.get("/api/v1/keys", Some(&token)).await;
    let key = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["request_id"] == id.as_str())
        .expect("the new key")
        .clone();
    let der = s
        .client
        .get(s.url(&format!(
            "/api/v1/keys/{}/certificate",
            key["id"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(subject_o(&der), NEW_NAME);

    // The record changes with the completion, not before.
    let e = s
        .raw()
        .enterprise_by_credit_code(&code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.name, old_name, "the record waits for the completion");
    hand_over_key(&s, &id).await;
    let e = s
        .raw()
        .enterprise_by_credit_code(&code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            e.name.as_str(),
            e.legal_representative.as_str(),
            e.address.as_str()
        ),
        (NEW_NAME, NEW_REP, NEW_ADDRESS)
    );
    let (_, done) = s.get(&path, Some(&token)).await;
    assert_eq!(done["enterprise_name"], NEW_NAME);

    // The other key (its certificate names the old data) is listed to renew or cancel.
    let others = done["other_keys"].as_array().unwrap();
    assert_eq!(others.len(), 1, "{done}");
    assert_eq!(others[0]["login_name"], first_login.as_str());
    assert!(s.verify_audit().await.first_broken.is_none());
}
on_both_databases!(a_reapplication_changes_the_enterprise_and_the_new_certificate);

/// In the browser: the form starts from the registered data and takes the new; 验核 shows
/// old beside new; after completion the enterprise sees its other keys to renew or cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reapplication_in_the_browser() {
    use crate::browser::{Browser, log_in, log_out};
    let s = TestServer::start(Db::Sqlite).await;
    let old_name = "南京浏览器旧名贸易有限公司";
    let token = s
        .register_and_login(old_name, &credit_code(3102), "320000", "ic3102@example.com")
        .await;
    let first = drive(&s, &token, first_request("ic3102-a@example.com"), true).await;
    let first_login = first["login_name"].as_str().unwrap().to_string();

    let b = Browser::start().await;
    log_in(&b, &s, "ic3102@example.com", "Secret-2026").await;
    b.wait_text("h1", "").await;
    b.goto(&s.url("/portal/requests/new?kind=reapplication"))
        .await;
    let prefilled = b
        .css("#f-new_name")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(
        prefilled, old_name,
        "the new data starts from the registered data"
    );
    b.fill("new_name", NEW_NAME).await;
    b.click("input[name='licence_types'][value='import_licence']")
        .await;
    b.fill("au_name", "李明").await;
    b.fill("au_id_number", "11010519491231002X").await;
    b.fill("au_mobile", "13912345678").await;
    b.fill("au_email", "ic3102-b@example.com").await;
    b.shot_at("info-change-01-form", "#enterprise-change").await;
    b.click("form button[type=submit]").await;
    b.wait_text(".notice", "草稿").await;
    let path = b.path().await;
    let id = path.rsplit('/').next().unwrap().to_string();
    let shown = b.text("#enterprise-change").await;
    assert!(
        shown.contains(old_name) && shown.contains(NEW_NAME),
        "{shown}"
    );
    log_out(&b).await;

    // Through the API up to 验核; the agency's page shows old beside new.
    let api = format!("/api/v1/requests/{id}");
    let (status, v) = s
        .post(&format!("{api}/submit"), Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    upload_all(&s, &token, &id, SIX).await;
    let (status, v) = s
        .post(&format!("{api}/confirm-upload"), Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    log_in(&b, &s, "agency-320000", crate::support::PASSWORD).await;
    b.wait_text("h1", "").await;
    b.goto(&s.url(&format!("/console/requests/{id}"))).await;
    let row = b
        .wait_text("#enterprise-change tr[data-field='name']", NEW_NAME)
        .await;
    assert!(row.contains(old_name) && row.contains("变更"), "{row}");
    let rep = b
        .text("#enterprise-change tr[data-field='legal_representative']")
        .await;
    assert!(
        !rep.contains("变更"),
        "unchanged fields are not marked: {rep}"
    );
    b.shot_at("info-change-02-review", "#enterprise-change")
        .await;
    log_out(&b).await;

    // On to completion; the enterprise's page lists its other key to renew or cancel.
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    for who in [&agency, &provider] {
        let (status, v) = s
            .post(
                &format!("{api}/decision"),
                Some(who),
                json!({"approve": true}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, v) = s
        .post(&format!("{api}/produce"), Some(&provider), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s
        .post(
            "/api/v1/shipments",
            Some(&provider),
            json!({"courier": "EMS", "tracking_number": "EM123456789CN", "request_ids": [id]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let shipment = v["id"].as_str().unwrap().to_string();
    for step in ["receive", "notify"] {
        let (status, v) = s
            .post(
                &format!("/api/v1/shipments/{shipment}/{step}"),
                Some(&agency),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    hand_over_key(&s, &id).await;
    log_in(&b, &s, "ic3102@example.com", "Secret-2026").await;
    b.wait_text("h1", "").await;
    b.goto(&s.url(&format!("/portal/requests/{id}"))).await;
    let others = b.wait_text("#other-keys", &first_login).await;
    assert!(
        others.contains("更新证书") && others.contains("注销"),
        "{others}"
    );
    b.shot_at("info-change-03-other-keys", "#other-keys").await;
    b.click(&format!(
        "#other-keys li[data-login='{first_login}'] a[href*='kind=renewal']"
    ))
    .await;
    b.wait_text("h1", "更新").await;
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/portal/requests/new");
    assert!(
        url.query()
            .unwrap_or("")
            .contains(&format!("login_name={first_login}")),
        "{url}"
    );
    b.close().await;
}

/// 验核 returns the new data as not matching the licence: the enterprise corrects it, and
/// the forms that print it must be signed and uploaded again.
async fn a_returned_change_is_corrected_and_its_forms_signed_again(db: Db) {
    let s = TestServer::start(db).await;
    let token = s
        .register_and_login(
            "南京退回变更贸易有限公司",
            &credit_code(3103),
            "320000",
            "ic3103@example.com",
        )
        .await;
    let change = json!({"name": NEW_NAME, "legal_representative": NEW_REP, "address": "南京市玄武区珠江路 8 号"});
    let (status, v) = s
        .post(
            "/api/v1/requests",
            Some(&token),
            reapplication("ic3103-b@example.com", change),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/requests/{id}");
    let (status, v) = s
        .post(&format!("{path}/submit"), Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    upload_all(&s, &token, &id, SIX).await;
    let (status, v) = s
        .post(&format!("{path}/confirm-upload"), Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let agency = s.login("agency-320000").await;
    let (status, v) = s
        .post(
            &format!("{path}/decision"),
            Some(&agency),
            json!({"approve": false, "remark": "注册地址与新营业执照不一致（应为 88 号）",
                   "concerns": ["enterprise_change"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, r) = s.get(&path, Some(&token)).await;
    let mut owed: Vec<&str> = r["to_replace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    owed.sort();
    assert_eq!(owed, ["application_form", "confirmation_letter"], "{r}");

    let fixed = json!({"name": NEW_NAME, "legal_representative": NEW_REP, "address": NEW_ADDRESS});
    let (status, v) = s
        .patch(&path, Some(&token), json!({"enterprise_change": fixed}))
        .await;
    assert_eq!(status, 200, "{v}");
    let address = v["enterprise_change"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["field"] == "address")
        .unwrap()
        .clone();
    assert_eq!(
        address["before"], "南京市鼓楼区中山北路 1 号",
        "before stays as registered"
    );
    assert_eq!(address["after"], NEW_ADDRESS);
    upload_all(
        &s,
        &token,
        &id,
        &["application_form", "confirmation_letter"],
    )
    .await;
    let (status, v) = s
        .post(&format!("{path}/confirm-upload"), Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, seen) = s.get(&path, Some(&agency)).await;
    let changed: Vec<&str> = seen["changed_since_return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(changed.contains(&"enterprise_change"), "{seen}");
}
on_both_databases!(a_returned_change_is_corrected_and_its_forms_signed_again);

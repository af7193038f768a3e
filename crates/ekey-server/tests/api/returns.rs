//! A return must be answered (issue 16, item 13) and 确认上传 gives a receipt (item 19).

use ekey_testkit::ident::credit_code;
use serde_json::{Value, json};

use crate::support::{Db, SIX, TestServer, first_request, png, upload_all};

/// A fresh enterprise of Jiangsu with one first-issue request in 验核; returns the token and
/// the request id.
async fn in_review(s: &TestServer, n: u32, email: &str) -> (String, String) {
    let token = s
        .register_and_login(
            &format!("退回测试{n}有限公司"),
            &credit_code(n),
            "320000",
            &format!("reg{n}@example.com"),
        )
        .await;
    let (status, v) = s
        .post("/api/v1/requests", Some(&token), first_request(email))
        .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/submit"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    upload_all(s, &token, &id, SIX).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "agency_review");
    (token, id)
}

fn strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

fn flagged(r: &Value, field: &str) -> Vec<String> {
    let mut out: Vec<String> = r["materials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m[field] == true)
        .map(|m| m["item"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

async fn confirm(s: &TestServer, token: &str, id: &str) -> (reqwest::StatusCode, Value) {
    s.post(
        &format!("/api/v1/requests/{id}/confirm-upload"),
        Some(token),
        json!({}),
    )
    .await
}

async fn put(s: &TestServer, token: &str, id: &str, item: &str, seed: usize) {
    let (status, v) = s
        .put_bytes(
            &format!("/api/v1/requests/{id}/materials/{item}"),
            Some(token),
            "image/png",
            png(2000 + seed),
        )
        .await;
    assert_eq!(status, 201, "{item}: {v}");
}

async fn a_return_must_be_answered(db: Db) {
    let s = TestServer::start(db).await;
    let (token, id) = in_review(&s, 3001, "ret3001@example.com").await;
    let agency = s.login("agency-320000").await;
    let path = format!("/api/v1/requests/{id}");

    // 验核未通过 about the ID card.
    let (status, v) = s
        .post(
            &format!("{path}/decision"),
            Some(&agency),
            json!({"approve": false, "remark": "身份证复印件不清晰", "concerns": ["id_card"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "returned");

    // The enterprise sees what to replace; confirming again with the same files is refused
    // and changes nothing.
    let (_, r) = s.get(&path, Some(&token)).await;
    assert_eq!(strings(&r["to_replace"]), sorted(&["id_card"]), "{r}");
    assert_eq!(flagged(&r, "to_replace"), sorted(&["id_card"]));
    let before = s.snapshot().await;
    let (status, v) = confirm(&s, &token, &id).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["code"], "ekey.material.replace_after_return", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("重新上传") && msg.contains("身份证"), "{msg}");
    assert_eq!(
        s.snapshot().await,
        before,
        "a refused confirmation changes nothing"
    );

    // A new ID card scan answers the remark …
    put(&s, &token, &id, "id_card", 1).await;
    let (_, r) = s.get(&path, Some(&token)).await;
    assert!(strings(&r["to_replace"]).is_empty(), "{r}");

    // … but a change of the form after the return invalidates the signed forms that print
    // it: the application form and the confirmation letter must be signed and uploaded again.
    let mut user = first_request("ret3001@example.com")["authorised_user"].clone();
    user["mobile"] = json!("13900001111");
    let (status, v) = s
        .patch(&path, Some(&token), json!({"authorised_user": user}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        strings(&v["to_replace"]),
        sorted(&["application_form", "confirmation_letter"]),
        "{v}"
    );
    let (status, v) = confirm(&s, &token, &id).await;
    assert_eq!(status, 422, "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("申请表") && msg.contains("确认函") && !msg.contains("身份证"),
        "{msg}"
    );

    // A new application form staged, then the form changed again: the scan was signed before
    // the change and no longer counts.
    put(&s, &token, &id, "application_form", 2).await;
    let (status, v) = s
        .patch(
            &path,
            Some(&token),
            json!({"licence_types": ["import_licence"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        strings(&v["to_replace"]),
        sorted(&["application_form", "confirmation_letter"]),
        "{v}"
    );
    // An edit that changes nothing asks for nothing more.
    let (status, v) = s
        .patch(
            &path,
            Some(&token),
            json!({"licence_types": ["import_licence"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");

    put(&s, &token, &id, "application_form", 3).await;
    put(&s, &token, &id, "confirmation_letter", 4).await;
    let (status, v) = confirm(&s, &token, &id).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "agency_review");

    // The reviewer sees what changed since the return: new scans and changed fields.
    let (_, r) = s.get(&path, Some(&agency)).await;
    assert_eq!(
        strings(&r["changed_since_return"]),
        sorted(&[
            "id_card",
            "application_form",
            "confirmation_letter",
            "authorised_user",
            "licence_types"
        ]),
        "{r}"
    );
    assert_eq!(
        flagged(&r, "changed_since_return"),
        sorted(&["application_form", "confirmation_letter", "id_card"])
    );
    assert!(strings(&r["to_replace"]).is_empty());

    // 复核未通过 about the licence: the same holds after the provider's return.
    let (status, v) = s
        .post(
            &format!("{path}/decision"),
            Some(&agency),
            json!({"approve": true}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let provider = s.login("provider").await;
    let (status, v) = s
        .post(
            &format!("{path}/decision"),
            Some(&provider),
            json!({"approve": false, "remark": "营业执照已过期", "concerns": ["business_licence"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = confirm(&s, &token, &id).await;
    assert_eq!(status, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("营业执照"), "{v}");
    put(&s, &token, &id, "business_licence", 5).await;
    let (status, v) = confirm(&s, &token, &id).await;
    assert_eq!(status, 200, "{v}");
    let (_, r) = s.get(&path, Some(&agency)).await;
    assert_eq!(
        strings(&r["changed_since_return"]),
        sorted(&["business_licence"]),
        "{r}"
    );
    assert!(
        s.verify_audit().await.first_broken.is_none(),
        "audit chain intact"
    );
}
on_both_databases!(a_return_must_be_answered);

/// The pages of a return: the enterprise sees what to upload again (and cannot confirm
/// before), the reviewer sees what changed since the return.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_return_in_the_browser_shows_what_to_replace_and_what_changed() {
    use crate::browser::{Browser, log_in, log_out};
    let s = TestServer::start(Db::Sqlite).await;
    let (token, id) = in_review(&s, 3002, "ret3002@example.com").await;
    let agency = s.login("agency-320000").await;
    let path = format!("/api/v1/requests/{id}");
    let (status, v) = s
        .post(
            &format!("{path}/decision"),
            Some(&agency),
            json!({"approve": false, "remark": "身份证复印件不清晰", "concerns": ["id_card"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");

    let b = Browser::start().await;
    log_in(&b, &s, "reg3002@example.com", "Secret-2026").await;
    b.wait_text("h1", "").await;
    b.goto(&s.url(&format!("/portal/requests/{id}"))).await;
    let owed = b.wait_text("#to-replace", "身份证").await;
    assert!(owed.contains("重新上传"), "{owed}");
    let state = b.text("li[data-item='id_card'] [data-state]").await;
    assert!(state.contains("须重新上传"), "{state}");
    let disabled = b
        .css("#confirm-upload")
        .await
        .attr("disabled")
        .await
        .unwrap();
    assert!(disabled.is_some(), "确认上传 waits for the new scan");
    b.shot_at("returns-01-to-replace", "#to-replace").await;

    // The enterprise changes the authorised user's mobile: the signed forms are owed too.
    let mut user = first_request("ret3002@example.com")["authorised_user"].clone();
    user["mobile"] = json!("13900002222");
    let (status, v) = s
        .patch(&path, Some(&token), json!({"authorised_user": user}))
        .await;
    assert_eq!(status, 200, "{v}");
    b.goto(&s.url(&format!("/portal/requests/{id}"))).await;
    let owed = b.wait_text("#to-replace", "确认函").await;
    assert!(owed.contains("申请表") && owed.contains("身份证"), "{owed}");
    let remark = b.text(".next .remark").await;
    assert!(
        remark.contains("身份证复印件不清晰"),
        "the remark stays after an edit: {remark}"
    );
    b.shot_at("returns-02-after-edit", "#materials").await;

    for (i, item) in ["id_card", "application_form", "confirmation_letter"]
        .iter()
        .enumerate()
    {
        put(&s, &token, &id, item, 10 + i).await;
    }
    b.goto(&s.url(&format!("/portal/requests/{id}"))).await;
    b.wait_text("h1", "").await;
    assert!(
        b.client
            .find(fantoccini::Locator::Css("#to-replace"))
            .await
            .is_err()
    );
    let disabled = b
        .css("#confirm-upload")
        .await
        .attr("disabled")
        .await
        .unwrap();
    assert!(disabled.is_none(), "everything replaced: 确认上传 is open");
    b.click("#confirm-upload").await;
    b.wait_text(".notice", "已确认上传").await;
    log_out(&b).await;

    log_in(&b, &s, "agency-320000", crate::support::PASSWORD).await;
    b.wait_text("h1", "").await;
    b.goto(&s.url(&format!("/console/requests/{id}"))).await;
    let changed = b
        .wait_text("#changed-since-return", "退回后企业已修改")
        .await;
    assert!(
        changed.contains("授权用户") && changed.contains("身份证") && changed.contains("确认函"),
        "{changed}"
    );
    let fig = b.text("figure[data-item='id_card'] figcaption").await;
    assert!(fig.contains("退回后重新上传"), "{fig}");
    let fig = b
        .text("figure[data-item='business_licence'] figcaption")
        .await;
    assert!(!fig.contains("退回后重新上传"), "{fig}");
    b.shot("returns-03-reviewer-sees-changes").await;
    b.close().await;
}

/// `2026-02-25T00:00:00+08:00` as the mails write it: `2026-02-25 00:00`.
fn as_written(rfc3339: &str) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
    ekey_domain::when::datetime(&t, ekey_domain::Lang::Zh)
}

/// 确认上传 sends a receipt (mail and SMS) naming who has the request and by when it is
/// due; every mail about the request links to its page.
async fn a_receipt_and_a_link_in_every_request_mail(db: Db) {
    let s = TestServer::start(db).await;
    let email = "ret3003@example.com";
    let mobile = "13912345678";
    let (token, id) = in_review(&s, 3003, email).await;
    let path = format!("/api/v1/requests/{id}");
    let link = s.url(&format!("/portal/requests/{id}"));
    let (_, r) = s.get(&path, Some(&token)).await;
    let number = r["number"].as_str().unwrap().to_string();
    let due = as_written(r["due_at"].as_str().unwrap());

    let mail = s.wait_message(email, "已收到").await;
    let (subject, body) = (
        mail["subject"].as_str().unwrap(),
        mail["body"].as_str().unwrap(),
    );
    assert!(subject.contains(&number), "{subject}");
    assert!(body.contains("江苏省商务厅"), "with whom: {body}");
    assert!(
        body.contains(&due) && body.contains("工作日"),
        "by when: {body}"
    );
    assert!(body.contains(&link), "the request's page: {body}");
    let sms = s.wait_message(mobile, "已收到").await;
    assert_eq!(sms["channel"], "sms");
    let text = sms["body"].as_str().unwrap();
    assert!(text.contains(&number) && text.contains(&due), "{text}");

    // Return, answer, and on to collection: every mail about the request carries its link.
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let (status, v) = s
        .post(
            &format!("{path}/decision"),
            Some(&agency),
            json!({"approve": false, "remark": "营业执照不清晰", "concerns": ["business_licence"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    put(&s, &token, &id, "business_licence", 7).await;
    let (status, v) = confirm(&s, &token, &id).await;
    assert_eq!(status, 200, "{v}");
    let receipts = || async {
        s.mailbox()
            .await
            .into_iter()
            .filter(|m| m["to"] == email && m["subject"].as_str().unwrap().contains("已收到"))
            .count()
    };
    for _ in 0..100 {
        if receipts().await == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(receipts().await, 2, "a receipt for each 确认上传");
    crate::support::approve_to_collection(&s, &agency, &provider, &id).await;
    s.wait_message(email, "可以领取").await;
    let mails: Vec<Value> = s
        .mailbox()
        .await
        .into_iter()
        .filter(|m| m["channel"] == "email" && m["to"] == email)
        .filter(|m| {
            m["subject"].as_str().unwrap().contains(&number)
                || m["body"].as_str().unwrap().contains(&number)
        })
        .collect();
    assert!(
        mails.len() >= 6,
        "receipts, return, approvals, collection: {mails:#?}"
    );
    for m in &mails {
        assert!(
            m["body"].as_str().unwrap().contains(&link),
            "every mail about the request links to its page: {m:#}"
        );
    }
}
on_both_databases!(a_receipt_and_a_link_in_every_request_mail);

//! Words as the procedure and the officials say them (issue 16, items 6, 12 and 18): the
//! agency's discretion over 增办 is "不同意增办"; the forms' titles, legal basis and limits;
//! mail and SMS signed by the agency with its hotline and address; English pages without
//! internal names or raw timestamps. Each on SQLite and PostgreSQL.

use ekey_testkit::scenario::Portal;
use reqwest::StatusCode;
use serde_json::json;

use crate::pages::PageClient;
use crate::support::*;

/// Every message (mail and SMS) sent to `to`, as one text per message.
async fn messages_to(s: &TestServer, to: &str) -> Vec<String> {
    s.mailbox()
        .await
        .into_iter()
        .filter(|m| m["to"] == to)
        .map(|m| {
            format!(
                "{}\n{}",
                m["subject"].as_str().unwrap_or(""),
                m["body"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Waits until `to` has a message containing `needle`; returns it.
async fn message_with(s: &TestServer, to: &str, needle: &str) -> String {
    let m = s.wait_message(to, needle).await;
    format!(
        "{}\n{}",
        m["subject"].as_str().unwrap_or(""),
        m["body"].as_str().unwrap_or("")
    )
}

// ---------------------------------------------------------------------------------------
// Item 6: 不同意增办.

async fn an_additional_key_not_granted_is_said_in_those_words(db: Db) {
    let s = TestServer::start(db).await;
    // 增办 needs a key already held: the demo enterprise gets one.
    ekey_testkit::scenario::active_key(&Portal::new(&s.base))
        .await
        .unwrap();
    let ent = s.login("demo@ekey.example").await;
    let mut body = first_request("zengban-user@wording.example");
    body["kind"] = json!("additional");
    body["reason"] = json!("新增一名业务员办理许可证申领");
    body["authorised_user"]["mobile"] = json!("13912340001");
    let (status, v) = s.post("/api/v1/requests", Some(&ent), body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/submit"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    upload_all(&s, &ent, &id, SIX).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // The agency's console offers it in those words.
    let clerk = PageClient::new(&s);
    clerk.login("agency-320000", PASSWORD).await;
    let page = clerk.get(&format!("/console/requests/{id}")).await;
    assert!(page.body.contains("不同意增办"), "{}", page.body);
    assert!(!page.body.contains("不予"), "{}", page.body);

    let agency = s.login("agency-320000").await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/decision"),
            Some(&agency),
            json!({"approve": false, "refuse": true, "remark": "本企业业务量不需要第二把钥匙"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "refused");
    assert_eq!(v["status_label"], "不同意增办", "{v}");
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    assert_eq!(r["status_label"], "不同意增办", "{r}");

    // The enterprise's page, mail and SMS say the same.
    let p = PageClient::new(&s);
    p.login("demo@ekey.example", PASSWORD).await;
    let page = p.get(&format!("/portal/requests/{id}")).await;
    assert!(page.body.contains("不同意增办"), "{}", page.body);
    assert!(!page.body.contains("不予受理"), "{}", page.body);
    let mail = message_with(&s, "zengban-user@wording.example", "不同意增办").await;
    assert!(mail.contains("本企业业务量不需要第二把钥匙"), "{mail}");
    let sms = message_with(&s, "13912340001", "不同意增办").await;
    assert!(
        sms.contains(&r["number"].as_str().unwrap().to_string()),
        "{sms}"
    );
    for m in messages_to(&s, "zengban-user@wording.example")
        .await
        .into_iter()
        .chain(messages_to(&s, "13912340001").await)
    {
        assert!(!m.contains("不予受理"), "{m}");
    }
    s.stop().await;
}
on_both_databases!(an_additional_key_not_granted_is_said_in_those_words);

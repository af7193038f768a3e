//! The receipt of 确认上传 (issue 16, item 19), and the link to the request's own page that
//! every mail about a request carries.

use chrono::{DateTime, Utc};
use ekey_store::{Channel, NewMessage, RequestRecord};

use crate::messages::local_time;

/// The enterprise's page of a request.
pub fn request_link(public_url: &str, request_id: &str) -> String {
    format!(
        "{}/portal/requests/{request_id}",
        public_url.trim_end_matches('/')
    )
}

/// Appends the request's link to every mail of `outbox` that does not carry it yet.
pub fn with_link(outbox: &mut [NewMessage], link: &str) {
    for m in outbox
        .iter_mut()
        .filter(|m| m.channel == Channel::Email && !m.body.contains(link))
    {
        if !m.body.ends_with('\n') {
            m.body.push('\n');
        }
        m.body.push_str(&format!("\n查看申请：{link}\n"));
    }
}

/// What the enterprise is told when its 确认上传 went through: with whom the request now
/// is (`reviewer`) and by when that step is due. The SMS goes only where SMS can be sent
/// (`sms`).
#[allow(clippy::too_many_arguments)]
pub fn messages(
    req: &RequestRecord,
    reviewer: &str,
    due: Option<DateTime<Utc>>,
    link: &str,
    sms: bool,
    new_version: i64,
    at: DateTime<Utc>,
) -> Vec<NewMessage> {
    let who = &req.form.authorised_user;
    let kind = req.kind.name_zh();
    let when = due
        .map(|d| {
            format!(
                "办理时限：{} 前（按工作日计算，节假日顺延）。",
                local_time(d)
            )
        })
        .unwrap_or_else(|| "审核完成后会通知您。".into());
    let mut out = vec![NewMessage {
        channel: Channel::Email,
        recipient: who.email.as_str().to_string(),
        subject: format!(
            "电子钥匙{kind}申请 {}：已收到，{reviewer}审核中",
            req.number
        ),
        body: format!(
            "{}：\n\n您的电子钥匙{kind}申请（编号 {}）已于 {} 确认上传，申请材料已送达{reviewer}审核。\n\
             {when}\n审核期间材料不能修改；审核结果会通过邮件通知您。\n\n查看申请：{link}\n",
            who.name,
            req.number,
            local_time(at),
        ),
        dedup_key: format!("request:{}:v{new_version}:receipt:email", req.id),
        created_at: at,
    }];
    if sms {
        let due_text = due
            .map(|d| format!("，办理时限{}前", local_time(d)))
            .unwrap_or_default();
        out.push(NewMessage {
            channel: Channel::Sms,
            recipient: who.mobile.as_str().to_string(),
            subject: String::new(),
            body: format!(
                "【电子钥匙】您的申请{}已收到，{reviewer}审核中{due_text}。",
                req.number
            ),
            dedup_key: format!("request:{}:v{new_version}:receipt:sms", req.id),
            created_at: at,
        });
    }
    out
}

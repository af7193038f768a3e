//! Texts of the mails and SMS eKey sends (Chinese, as the people receiving them read them).

use chrono::{DateTime, SecondsFormat, Utc};
use ekey_domain::calendar::shanghai;
use ekey_domain::request::{Action, Kind, Status};
use ekey_store::{Channel, NewMessage, RequestRecord};

/// Subject of the unlock-code mail, as the seed names it.
pub const UNLOCK_SUBJECT: &str = "电子钥匙密码重置";
/// The line of that mail that carries the unlock code.
pub const UNLOCK_CODE_LINE: &str = "解锁码：";
/// What stands in for the code once the mail is delivered.
const UNLOCK_CODE_REDACTED: &str = "（已随邮件发出，系统不保存）";

/// The body to keep once a message is delivered: the mail “电子钥匙密码重置” without its
/// unlock code (a secret that opens a key: it is kept in the database only until the mail
/// left); `None` for messages that carry no such secret.
pub fn redacted_after_delivery(subject: &str, body: &str) -> Option<String> {
    if subject != UNLOCK_SUBJECT {
        return None;
    }
    let code = body
        .lines()
        .find_map(|l| l.strip_prefix(UNLOCK_CODE_LINE))
        .map(str::trim)
        .filter(|c| !c.is_empty() && *c != UNLOCK_CODE_REDACTED)?;
    Some(body.replace(code, UNLOCK_CODE_REDACTED))
}

/// Subject of the activation mail, as the seed names it.
pub const ACTIVATION_SUBJECT: &str = "调用商务部统一用户管理平台激活企业账户";

/// Formats an instant for people: `2026-02-25 00:00`, Beijing time.
pub fn local_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&shanghai())
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// Formats an instant for the API: RFC 3339 with the +08:00 offset.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.with_timezone(&shanghai())
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The activation mail.
pub fn activation_mail(
    enterprise: &str,
    login: &str,
    link: &str,
    expires: DateTime<Utc>,
    hotline: &str,
    at: DateTime<Utc>,
    dedup: &str,
) -> NewMessage {
    NewMessage {
        channel: Channel::Email,
        recipient: login.to_string(),
        subject: ACTIVATION_SUBJECT.to_string(),
        body: format!(
            "{enterprise}：\n\n\
             您已在电子钥匙在线填报系统注册企业账户，登录名为 {login}。\n\
             请在 {} 前打开下面的链接激活账户（链接只能使用一次）：\n\n{link}\n\n\
             激活后即可登录并在线填写电子钥匙申请表。\n\
             如果不是您本人注册，请忽略本邮件。\n\n\
             电子钥匙服务商客服电话：{hotline}\n",
            local_time(expires)
        ),
        dedup_key: dedup.to_string(),
        created_at: at,
    }
}

/// Mail and SMS that a transition causes. Only decisions that the enterprise must know
/// about produce messages; the dedup key ties each to the request's new version.
pub fn for_transition(
    req: &RequestRecord,
    action: Action,
    to: Status,
    remark: Option<&str>,
    new_version: i64,
    portal: &str,
    at: DateTime<Utc>,
) -> Vec<NewMessage> {
    let who = &req.form.authorised_user;
    let step = match action {
        Action::AgencyApprove if req.kind == Kind::Cancellation => "注销申请已验核，转服务商办理",
        Action::AgencyApprove => "验核通过",
        Action::AgencyReturn => "验核未通过",
        Action::AgencyRefuse => Action::AgencyRefuse.label_zh(),
        Action::ProviderApprove => "复核通过",
        Action::ProviderReturn => "复核未通过",
        _ => return Vec::new(),
    };
    let next = match to {
        Status::Returned => "请登录系统，按备注修改申请表或重新上传材料后再次点击“确认上传”。",
        Status::ProviderReview => "申请已转电子钥匙服务商复核。",
        Status::InProduction => {
            "服务商正在制作电子钥匙，制作完成后将寄送至发证机构，届时会通知您领取。"
        }
        Status::Approved if req.kind == Kind::Renewal => {
            "请插入要更新的电子钥匙登录系统，点击“CA证书更新”，按提示完成证书更新（中断后可继续，不会重复签发）。"
        }
        Status::Approved if req.kind == Kind::Unlock => {
            "解锁码已通过主题为“电子钥匙密码重置”的邮件另行发送，请插入该钥匙按邮件提示解锁。"
        }
        Status::Approved => "请按系统提示继续办理。",
        Status::Refused => "如有疑问请联系发证机构。",
        _ => "",
    };
    let remark_line = remark.map(|r| format!("备注：{r}\n")).unwrap_or_default();
    let mut out = vec![NewMessage {
        channel: Channel::Email,
        recipient: who.email.as_str().to_string(),
        subject: format!("电子钥匙{}申请 {}：{step}", req.kind.name_zh(), req.number),
        body: format!(
            "{}：\n\n您的电子钥匙{}申请（编号 {}）{step}。\n{remark_line}{next}\n\n查看进度：{portal}\n",
            who.name,
            req.kind.name_zh(),
            req.number
        ),
        dedup_key: format!("request:{}:v{new_version}:email", req.id),
        created_at: at,
    }];
    if to == Status::Returned || to == Status::Refused {
        out.push(NewMessage {
            channel: Channel::Sms,
            recipient: who.mobile.as_str().to_string(),
            subject: String::new(),
            body: format!(
                "【电子钥匙】您的申请{}{step}，{}请登录系统查看备注。",
                req.number,
                if to == Status::Returned {
                    "需修改后重新提交，"
                } else {
                    ""
                }
            ),
            dedup_key: format!("request:{}:v{new_version}:sms", req.id),
            created_at: at,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_unlock_mail_keeps_no_code() {
        let body = "李明：\n\n解锁码：ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345\n\n请输入 ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345\n";
        let kept = redacted_after_delivery(UNLOCK_SUBJECT, body).unwrap();
        assert!(!kept.contains("ABCD-EFGH"), "{kept}");
        assert!(
            kept.contains("解锁码：（已随邮件发出，系统不保存）"),
            "{kept}"
        );
        // Redacting again changes nothing; other mails are kept as they are.
        assert_eq!(redacted_after_delivery(UNLOCK_SUBJECT, &kept), None);
        assert_eq!(redacted_after_delivery("其他邮件", body), None);
    }
}

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

/// Formats an instant for people reading Chinese: `2026年2月25日 00:00`, Beijing time
/// (the one rule is [`ekey_domain::when`]).
pub fn local_time(t: DateTime<Utc>) -> String {
    ekey_domain::when::datetime(&t, ekey_domain::Lang::Zh)
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

/// How an SMS is signed before [`sign_sms`] names who sends it.
const SMS_UNSIGNED: &str = "【电子钥匙】";

/// Signs the SMS among `messages` with the name of who sends them (the agency for its
/// decisions, the provider for its own) and ends them with that sender's hotline, so that
/// the enterprise knows who wrote and whom to call.
pub fn sign_sms(messages: &mut [NewMessage], sender: &str, hotline: &str) {
    for m in messages.iter_mut().filter(|m| m.channel == Channel::Sms) {
        if let Some(rest) = m.body.strip_prefix(SMS_UNSIGNED)
            && !sender.trim().is_empty()
        {
            m.body = format!("【{}】{rest}", sender.trim());
        }
        let hotline = hotline.trim();
        if !hotline.is_empty() && !m.body.contains(hotline) {
            m.body.push_str(&format!("咨询电话：{hotline}"));
        }
    }
}

/// The mail "电子钥匙密码重置": the code and what to do with it, in plain words (no
/// command line: the reader is an enterprise clerk).
#[allow(clippy::too_many_arguments)]
pub fn unlock_mail_body(
    name: &str,
    serial: &str,
    login: &str,
    number: &str,
    code: &str,
    request_link: &str,
    hotline: &str,
) -> String {
    format!(
        "{name}：\n\n您申请解锁的电子钥匙（序列号 {serial}，登录名 {login}，申请编号 {number}）已审核通过。\n\n\
         {UNLOCK_CODE_LINE}{code}\n\n\
         请按以下步骤解锁：\n\
         1. 把被锁定的电子钥匙插入电脑，并打开电脑上的“电子钥匙助手”（安装后在桌面或开始菜单中可以找到）。\n\
         2. 用浏览器打开下面的链接，登录后进入本次解锁申请的页面：\n{request_link}\n\
         3. 在“输入解锁码”一栏填入上面的解锁码，设置新的PIN码（6–16位，输入两次），点击“解锁钥匙”。\n\
         看到“解锁成功”即可用新的PIN码使用钥匙。\n\n\
         解锁码只对这把钥匙和本次申请有效，只能使用一次；请勿转发本邮件。\n\
         如遇问题，请致电电子钥匙服务商客服电话：{hotline}\n"
    )
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

    #[test]
    fn the_unlock_mail_says_what_to_do_in_plain_words() {
        let body = unlock_mail_body(
            "李明",
            "SN0001",
            "ek32000001",
            "EK3220260212000001",
            "ABCD-EFGH",
            "https://ekey.example/portal/requests/r1",
            "010-58103599",
        );
        assert!(!body.contains("ekey "), "no command line: {body}");
        for want in [
            "解锁码：ABCD-EFGH",
            "插入电脑",
            "电子钥匙助手",
            "https://ekey.example/portal/requests/r1",
            "输入解锁码",
            "新的PIN码",
            "010-58103599",
        ] {
            assert!(body.contains(want), "{want}: {body}");
        }
        // The code stays findable for the redaction after delivery.
        let kept = redacted_after_delivery(UNLOCK_SUBJECT, &body).unwrap();
        assert!(!kept.contains("ABCD-EFGH"));
    }

    #[test]
    fn sms_are_signed_by_their_sender_with_its_hotline() {
        let mut m = vec![NewMessage {
            channel: Channel::Sms,
            recipient: "13912345678".into(),
            subject: String::new(),
            body: "【电子钥匙】您的申请EK1验核未通过，请登录系统查看备注。".into(),
            dedup_key: "d".into(),
            created_at: Utc::now(),
        }];
        sign_sms(&mut m, "江苏省商务厅", "025-83666306");
        assert_eq!(
            m[0].body,
            "【江苏省商务厅】您的申请EK1验核未通过，请登录系统查看备注。咨询电话：025-83666306"
        );
    }
}

//! The few HTML pages of the foundation: the landing page and simple message pages. The
//! portal and consoles come with their own issue; everything here is escaped and self-contained.

use axum::extract::State;
use axum::response::Html;
use ekey_domain::Lang;

use crate::error::current_lang;
use crate::state::AppState;

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn shell(lang: Lang, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · eKey</title><style>\
         body{{font-family:system-ui,'Noto Sans CJK SC','Microsoft YaHei',sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.6;color:#1a1a1a}}\
         h1{{font-size:1.5rem}} a{{color:#0b57d0}} code{{background:#f2f2f2;padding:0 .3em}}\
         footer{{margin-top:3rem;font-size:.9rem;color:#555;border-top:1px solid #ddd;padding-top:1rem}}\
         </style></head><body>{}<footer>{}</footer></body></html>",
        lang.pick("zh-CN", "en"),
        escape(title),
        body,
        lang.pick(
            "电子钥匙服务商客服电话：010-58103599 · 商务部配额许可证事务局：xkzj.mofcom.gov.cn",
            "Key provider hotline: 010-58103599 · Licence bureau: xkzj.mofcom.gov.cn"
        )
    )
}

/// A page with a heading and one message.
pub fn message_page(lang: Lang, title: &str, message: &str) -> String {
    shell(
        lang,
        title,
        &format!(
            "<h1>{}</h1><p>{}</p><p><a href=\"/\">{}</a></p>",
            escape(title),
            escape(message),
            lang.pick("返回首页", "Home")
        ),
    )
}

/// The landing page: what runs here and where to go.
pub async fn index(State(state): State<AppState>) -> Html<String> {
    let lang = current_lang();
    let demo = if state.config.demo {
        lang.pick(
            "<p>演示模式：所有邮件和短信进入 <a href=\"/api/v1/dev/mailbox\">开发邮箱</a>。演示账号密码均为 <code>ekey-demo-2026</code>：企业 <code>demo@ekey.example</code>，发证机构 <code>agency-320000</code>（江苏）、<code>agency-110000</code>（北京），服务商 <code>provider</code>，管理员 <code>admin</code>。</p>",
            "<p>Demo mode: all mail and SMS go to the <a href=\"/api/v1/dev/mailbox\">dev mailbox</a>. Demo logins, password <code>ekey-demo-2026</code>: enterprise <code>demo@ekey.example</code>, agencies <code>agency-320000</code> (Jiangsu) and <code>agency-110000</code> (Beijing), provider <code>provider</code>, admin <code>admin</code>.</p>",
        )
    } else {
        ""
    };
    let body = format!(
        "<h1>{}</h1><p>{}</p>{demo}<ul>\
         <li><a href=\"/api/v1/openapi.json\">{}</a></li>\
         <li><a href=\"/api/v1/agencies\">{}</a></li>\
         <li><a href=\"/healthz\">{}</a></li></ul>",
        lang.pick("eKey 电子钥匙办理系统", "eKey — CA electronic keys"),
        lang.pick(
            "企业CA电子钥匙的注册、申领、验核、复核、制作、领取、解锁、注销与更新。",
            "Registration, requests, review, production, delivery, unlock, cancellation and renewal of enterprise CA keys."
        ),
        lang.pick("接口文档（OpenAPI）", "API documentation (OpenAPI)"),
        lang.pick("各省发证机构及领取地址", "Issuing agencies and collection addresses"),
        lang.pick("运行状态", "Health"),
    );
    Html(shell(lang, lang.pick("首页", "Home"), &body))
}

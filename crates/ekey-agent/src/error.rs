//! The one error type of the agent, with stable codes (`ekey.agent.*`, token errors keep
//! their `ekey.token.*` codes, the server's errors theirs) and messages for people.

use axum::http::StatusCode;
use ekey_domain::Lang;
use ekey_token::TokenError;

/// Everything that can go wrong in the agent or in a renewal run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The key refused or failed (wrong PIN, locked, …): its own code and message.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The request does not come from the configured portal origin.
    #[error("request from another origin")]
    Origin,
    /// The request was addressed to a host name other than the loopback (DNS rebinding).
    #[error("request for another host")]
    Host,
    /// No valid pairing secret (`X-Ekey-Pairing`).
    #[error("not paired")]
    NotPaired,
    /// No such pairing request (unknown, expired, or its secret already handed out).
    #[error("pairing request unknown or expired")]
    PairingUnknown,
    /// The request body or a field is not what the call expects.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request body exceeds the limit.
    #[error("request body too large")]
    TooLarge,
    /// No such call.
    #[error("no such call")]
    NotFound,
    /// The key's `sign` container has no certificate.
    #[error("the key holds no certificate")]
    NoCertificate,
    /// The eKey server answered with an error; its code and message are passed on.
    #[error("server error {status} {code}: {message}")]
    Server {
        /// HTTP status of the server's answer.
        status: u16,
        /// The server's code, e.g. `ekey.renewal.expired`.
        code: String,
        /// The server's message (in the language asked for).
        message: String,
    },
    /// The eKey server cannot be reached.
    #[error("server unreachable: {0}")]
    ServerUnreachable(String),
    /// The eKey server answered something the agent does not understand.
    #[error("unexpected server answer: {0}")]
    ServerResponse(String),
    /// No approved renewal for this key.
    #[error("no approved renewal for this key")]
    NoRenewal,
    /// The unlock request named is not one of the enterprise's (its number or id).
    #[error("no unlock request {0}")]
    NoUnlock(String),
    /// Several approved renewals for this key and none was chosen (their numbers).
    #[error("several renewals: {0:?}")]
    RenewalAmbiguous(Vec<String>),
    /// The chosen renewal belongs to another key (its number).
    #[error("renewal {0} is for another key")]
    RenewalOtherKey(String),
    /// The certificate the server issued is not for the key pair generated for it.
    #[error("issued certificate does not match the new key pair")]
    CertificateMismatch,
    /// A renewal is already running on this agent.
    #[error("a renewal is already running")]
    Busy,
    /// The agent's configuration is invalid (listen address, origin, server URL).
    #[error("configuration: {0}")]
    Config(String),
    /// The agent's state directory could not be read or written.
    #[error("state directory: {0}")]
    State(String),
    /// Anything else (a task panicked, …).
    #[error("internal error: {0}")]
    Internal(String),
}

impl AgentError {
    /// Stable machine code.
    pub fn code(&self) -> &str {
        use AgentError::*;
        match self {
            Token(e) => e.code(),
            Origin => "ekey.agent.origin",
            Host => "ekey.agent.host",
            NotPaired => "ekey.agent.not_paired",
            PairingUnknown => "ekey.agent.pairing_unknown",
            BadRequest(_) => "ekey.agent.bad_request",
            TooLarge => "ekey.agent.too_large",
            NotFound => "ekey.agent.not_found",
            NoCertificate => "ekey.agent.no_certificate",
            Server { code, .. } => code,
            ServerUnreachable(_) => "ekey.agent.server_unreachable",
            ServerResponse(_) => "ekey.agent.server_response",
            NoRenewal => "ekey.agent.no_renewal",
            NoUnlock(_) => "ekey.agent.no_unlock",
            RenewalAmbiguous(_) => "ekey.agent.renewal_ambiguous",
            RenewalOtherKey(_) => "ekey.agent.renewal_other_key",
            CertificateMismatch => "ekey.agent.certificate_mismatch",
            Busy => "ekey.agent.busy",
            Config(_) => "ekey.agent.config",
            State(_) => "ekey.agent.state",
            Internal(_) => "ekey.agent.internal",
        }
    }

    /// HTTP status of the agent's answer.
    pub fn status(&self) -> StatusCode {
        use AgentError::*;
        match self {
            Token(TokenError::NotFound(_)) => StatusCode::NOT_FOUND,
            Token(
                TokenError::Io(_)
                | TokenError::Module(_)
                | TokenError::Device(_)
                | TokenError::Crypto(_),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            Token(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Origin | Host => StatusCode::FORBIDDEN,
            NotPaired => StatusCode::UNAUTHORIZED,
            PairingUnknown | NotFound | NoRenewal | NoUnlock(_) => StatusCode::NOT_FOUND,
            BadRequest(_) => StatusCode::BAD_REQUEST,
            TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            NoCertificate | RenewalAmbiguous(_) | RenewalOtherKey(_) | Busy => StatusCode::CONFLICT,
            // A refusal of the server is the caller's business (same status); the server
            // failing is a bad gateway for the page.
            Server { status, .. } => match StatusCode::from_u16(*status) {
                Ok(s) if s.is_client_error() => s,
                _ => StatusCode::BAD_GATEWAY,
            },
            ServerUnreachable(_) | ServerResponse(_) | CertificateMismatch => {
                StatusCode::BAD_GATEWAY
            }
            Config(_) | State(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Wrong PINs still allowed, for `ekey.token.pin_incorrect`.
    pub fn tries_left(&self) -> Option<u8> {
        match self {
            AgentError::Token(TokenError::PinIncorrect { tries_left }) => Some(*tries_left),
            _ => None,
        }
    }

    /// A sentence for the key holder; no internal detail.
    pub fn message(&self, lang: Lang) -> String {
        use AgentError::*;
        let zh = lang == Lang::Zh;
        let s = |zh: &str, en: &str| lang.pick(zh, en).to_string();
        match self {
            Token(e) => e.message(lang),
            Origin => s(
                "电子钥匙助手只接受本系统网页的请求",
                "The key agent answers the eKey portal's pages only",
            ),
            Host => s(
                "电子钥匙助手只能通过 127.0.0.1 访问",
                "The key agent is reachable at 127.0.0.1 only",
            ),
            NotPaired => s(
                "本网页尚未与电子钥匙助手配对，请先完成配对",
                "This page is not paired with the key agent; please pair first",
            ),
            PairingUnknown => s(
                "配对请求不存在或已过期，请重新发起配对",
                "The pairing request is unknown or has expired; please start pairing again",
            ),
            BadRequest(_) => s("请求格式不正确", "The request is malformed"),
            TooLarge => s("请求内容过大", "The request is too large"),
            NotFound => s("电子钥匙助手没有此功能", "The key agent has no such call"),
            NoCertificate => s("电子钥匙中没有证书", "The key holds no certificate"),
            Server { message, .. } => message.clone(),
            ServerUnreachable(_) => s(
                "无法连接电子钥匙服务系统，请检查网络后重试",
                "The eKey server cannot be reached; please check the network and retry",
            ),
            ServerResponse(_) => s(
                "电子钥匙服务系统的应答无法识别，请稍后重试",
                "The eKey server's answer was not understood; please retry later",
            ),
            NoRenewal => s(
                "这把电子钥匙没有已批准的证书更新申请",
                "There is no approved certificate renewal for this key",
            ),
            NoUnlock(n) => {
                if zh {
                    format!("找不到解锁申请 {n}，请核对申请编号")
                } else {
                    format!("No unlock request {n}; check the request number")
                }
            }
            RenewalAmbiguous(numbers) => {
                if zh {
                    format!(
                        "这把电子钥匙有多个已批准的证书更新申请（{}），请选择其中一个",
                        numbers.join("、")
                    )
                } else {
                    format!(
                        "This key has several approved renewals ({}); please choose one",
                        numbers.join(", ")
                    )
                }
            }
            RenewalOtherKey(number) => {
                if zh {
                    format!("证书更新申请 {number} 不属于这把电子钥匙")
                } else {
                    format!("Renewal {number} is not for this key")
                }
            }
            CertificateMismatch => s(
                "签发的新证书与电子钥匙中的新密钥不匹配，请联系服务机构",
                "The new certificate does not match the new key pair on the key; please contact your service provider",
            ),
            Busy => s(
                "正在进行证书更新，请等待完成",
                "A renewal is already running; please wait for it to finish",
            ),
            Config(_) => s("电子钥匙助手配置有误", "The key agent is misconfigured"),
            State(_) => s(
                "电子钥匙助手无法保存配对信息",
                "The key agent cannot store its pairings",
            ),
            Internal(_) => s(
                "电子钥匙助手内部错误，请重试",
                "The key agent failed internally; please retry",
            ),
        }
    }

    /// `message (code)`, for the command line.
    pub fn report(&self, lang: Lang) -> String {
        format!("{} ({})", self.message(lang), self.code())
    }
}

/// Result of agent operations.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

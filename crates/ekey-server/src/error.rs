//! The one error type at the HTTP edge: a status, a stable code and a message in the
//! caller's language (`Accept-Language`), as `{"code", "message"}`. Internals never leak.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ekey_domain::Lang;
use ekey_domain::error::{DomainError, ErrorClass};
use ekey_store::StoreError;
use serde::Serialize;

tokio::task_local! {
    /// Language of the request being answered (set by the `localize` middleware).
    pub static LANG: Lang;
}

/// The language of the current request.
pub fn current_lang() -> Lang {
    LANG.try_with(|l| *l).unwrap_or_default()
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine code.
    pub code: &'static str,
    /// Chinese message.
    pub zh: String,
    /// English message.
    pub en: String,
}

/// JSON body of an error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine code, `ekey.<area>.<what>`.
    pub code: String,
    /// Message for people (Chinese unless English was asked for).
    pub message: String,
}

impl ApiError {
    /// An error with both messages.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        zh: impl Into<String>,
        en: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            zh: zh.into(),
            en: en.into(),
        }
    }

    /// The object does not exist or is not visible to the caller.
    pub fn not_found(code: &'static str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, "未找到该记录", "Not found")
    }

    /// No valid session.
    pub fn unauthenticated() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ekey.auth.required",
            "请先登录",
            "Please log in",
        )
    }

    /// Role not allowed here.
    pub fn forbidden_role() -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "ekey.auth.wrong_role",
            "您的账户角色无权进行此操作",
            "Your role may not do this",
        )
    }

    /// Something broke inside; logged, not shown.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ekey.internal",
            "系统内部错误，请稍后重试；如持续出现请联系客服",
            "Internal error; please retry later",
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let status = match e.class() {
            ErrorClass::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorClass::Forbidden => StatusCode::FORBIDDEN,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.code(), e.message(Lang::Zh), e.message(Lang::En))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Domain(d) => d.into(),
            StoreError::NotFound => ApiError::not_found("ekey.not_found"),
            StoreError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "ekey.request.conflict",
                "该申请刚刚已被他人处理，请刷新后查看最新状态",
                "Someone else changed this request just now; reload to see its current state",
            ),
            StoreError::Duplicate("credit_code") => ApiError::new(
                StatusCode::CONFLICT,
                "ekey.registration.duplicate_enterprise",
                "该统一社会信用代码已注册过企业账户，请直接登录或找回密码",
                "An enterprise with this credit code is already registered",
            ),
            StoreError::Duplicate("login") => ApiError::new(
                StatusCode::CONFLICT,
                "ekey.registration.duplicate_email",
                "该邮箱已注册，请直接登录或换用其他邮箱",
                "This email is already registered",
            ),
            StoreError::Duplicate(what) => ApiError::new(
                StatusCode::CONFLICT,
                "ekey.duplicate",
                format!("记录已存在（{what}）"),
                format!("Already exists ({what})"),
            ),
            StoreError::TokenInvalid => ApiError::new(
                StatusCode::GONE,
                "ekey.token.invalid",
                "链接无效、已使用或已过期，请重新申请发送",
                "The link is invalid, used or expired; ask for a new one",
            ),
            StoreError::Blob(detail) => {
                // The detail (bucket, endpoint, S3's answer) is for the log, not the user.
                tracing::error!(error = %detail, "file storage failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ekey.storage.unavailable",
                    "文件存储暂时不可用，请稍后重试；如持续出现请联系客服",
                    "File storage is unavailable just now; please retry later",
                )
            }
            StoreError::Unavailable(detail) => {
                tracing::error!(error = %detail, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ekey.database.unavailable",
                    "系统数据库暂时不可用，请稍后重试；刚才的操作如未显示结果，请刷新页面确认是否已办理",
                    "The database is unavailable just now; please retry later (reload first to see whether your last step went through)",
                )
            }
            StoreError::Full(detail) => {
                tracing::error!(error = %detail, "no space left");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "ekey.storage.full",
                    "服务器存储空间已满，本次操作未保存，请稍后重试；如持续出现请联系客服",
                    "The server's storage is full; nothing was saved. Please retry later",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<ekey_ca::CaError> for ApiError {
    fn from(e: ekey_ca::CaError) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.code(),
            e.message(Lang::Zh),
            e.message(Lang::En),
        )
    }
}

impl From<ekey_token::TokenError> for ApiError {
    fn from(e: ekey_token::TokenError) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.code(),
            e.message(Lang::Zh),
            e.message(Lang::En),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match current_lang() {
            Lang::Zh => self.zh,
            Lang::En => self.en,
        };
        (
            self.status,
            Json(ErrorBody {
                code: self.code.to_string(),
                message,
            }),
        )
            .into_response()
    }
}

/// Result of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

//! The one error type of the token layer, with stable codes and messages for people.

use ekey_domain::Lang;

/// Result of a token operation.
pub type Result<T, E = TokenError> = std::result::Result<T, E>;

/// Everything that can go wrong on a key. Each variant has a stable machine code
/// (`ekey.token.*`, see [`TokenError::code`]) and a Chinese and an English sentence
/// ([`TokenError::message`]). `Display` is for logs and may carry technical detail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// A PIN is not 6–16 printable ASCII characters. Not counted as a wrong attempt.
    #[error("PIN must be 6 to 16 printable ASCII characters")]
    PinFormat,
    /// The PIN is wrong. The attempt has already been counted on the token;
    /// `tries_left` is 0 when this attempt locked the key.
    #[error("PIN incorrect, {tries_left} tries left")]
    PinIncorrect {
        /// Attempts left before the key locks (0: locked by this attempt).
        tries_left: u8,
    },
    /// The key is locked (6 wrong PINs in a row, or locked by the device itself);
    /// only an admin unlock opens it again.
    #[error("key locked")]
    Locked,
    /// The unlock code is not valid for this key and its current challenge: computed for
    /// another key or another challenge, already used, or no challenge is outstanding.
    #[error("unlock code not valid for this key and challenge")]
    UnlockInvalid,
    /// The unlock code is not well formed (wrong length, characters or check digits):
    /// most likely a typing mistake.
    #[error("unlock code malformed")]
    UnlockCodeFormat,
    /// The unlock challenge handed to the provider is not one a token produced.
    #[error("unlock challenge malformed")]
    ChallengeInvalid,
    /// A container name is empty, too long or has characters other than
    /// `A–Z a–z 0–9 . _ -`.
    #[error("invalid container name")]
    ContainerName,
    /// The named container does not exist on the key or holds no key pair.
    #[error("container {0:?} not found")]
    ContainerNotFound(String),
    /// The named container already holds a key pair; keys are never overwritten.
    #[error("container {0:?} already holds a key")]
    ContainerExists(String),
    /// The certificate cannot be parsed as X.509 DER.
    #[error("certificate is not valid DER X.509")]
    CertificateInvalid,
    /// The certificate's public key is not the key pair in the container.
    #[error("certificate does not match the container's key")]
    CertificateMismatch,
    /// The named container holds a key pair but no certificate yet (e.g. a renewal key
    /// that cannot be promoted before its certificate is written).
    #[error("container {0:?} holds no certificate")]
    CertificateMissing(String),
    /// No key (token file or PKCS#11 token) matches the given path, label or serial.
    #[error("token not found: {0}")]
    NotFound(String),
    /// Several PKCS#11 tokens carry the given label; select by serial instead.
    #[error("several tokens match {0:?}")]
    Ambiguous(String),
    /// A token already exists at that path or with that label.
    #[error("token already exists: {0}")]
    AlreadyExists(String),
    /// No slot holds an uninitialised token to personalise.
    #[error("no free slot with an uninitialised token")]
    NoFreeSlot,
    /// The key was not personalised by eKey (its counter or unlock objects are missing).
    #[error("token not personalised by eKey: {0}")]
    NotPersonalised(String),
    /// The token's data is damaged or inconsistent (file or on-token objects).
    #[error("token data corrupt: {0}")]
    Corrupt(String),
    /// The device cannot do what eKey needs (mechanism or PIN length).
    #[error("token unsupported: {0}")]
    Unsupported(String),
    /// Reading or writing the software token file failed.
    #[error("token file I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("PKCS#11 module: {0}")]
    Module(String),
    /// A PKCS#11 call failed.
    #[error("PKCS#11: {0}")]
    Device(String),
    /// A cryptographic operation failed unexpectedly (random source, encoding).
    #[error("crypto: {0}")]
    Crypto(String),
}

impl TokenError {
    /// Stable machine code, e.g. `ekey.token.locked`.
    pub fn code(&self) -> &'static str {
        use TokenError::*;
        match self {
            PinFormat => "ekey.token.pin_format",
            PinIncorrect { .. } => "ekey.token.pin_incorrect",
            Locked => "ekey.token.locked",
            UnlockInvalid => "ekey.token.unlock_invalid",
            UnlockCodeFormat => "ekey.token.unlock_code_format",
            ChallengeInvalid => "ekey.token.challenge_invalid",
            ContainerName => "ekey.token.container_name",
            ContainerNotFound(_) => "ekey.token.container_not_found",
            ContainerExists(_) => "ekey.token.container_exists",
            CertificateInvalid => "ekey.token.certificate_invalid",
            CertificateMismatch => "ekey.token.certificate_mismatch",
            CertificateMissing(_) => "ekey.token.certificate_missing",
            NotFound(_) => "ekey.token.not_found",
            Ambiguous(_) => "ekey.token.ambiguous",
            AlreadyExists(_) => "ekey.token.already_exists",
            NoFreeSlot => "ekey.token.no_free_slot",
            NotPersonalised(_) => "ekey.token.not_personalised",
            Corrupt(_) => "ekey.token.corrupt",
            Unsupported(_) => "ekey.token.unsupported",
            Io(_) => "ekey.token.io",
            Module(_) => "ekey.token.module",
            Device(_) => "ekey.token.device",
            Crypto(_) => "ekey.token.crypto",
        }
    }

    /// A sentence for the key holder or operator; no internal detail.
    pub fn message(&self, lang: Lang) -> String {
        use TokenError::*;
        let zh = lang == Lang::Zh;
        match self {
            PinFormat => lang
                .pick(
                    "PIN 码应为 6 至 16 位字母、数字或符号",
                    "The PIN must have 6 to 16 letters, digits or symbols",
                )
                .into(),
            PinIncorrect { tries_left: 0 } => lang
                .pick(
                    "PIN 码错误，电子钥匙已锁定，请申请解锁",
                    "Wrong PIN. The key is now locked; please apply for an unlock",
                )
                .into(),
            PinIncorrect { tries_left } => {
                if zh {
                    format!("PIN 码错误，还可尝试 {tries_left} 次，全部用完后电子钥匙将被锁定")
                } else {
                    format!(
                        "Wrong PIN. {tries_left} {} left before the key locks",
                        if *tries_left == 1 { "try" } else { "tries" }
                    )
                }
            }
            Locked => lang
                .pick(
                    "电子钥匙已锁定（连续 6 次 PIN 码错误），请申请解锁",
                    "The key is locked (6 wrong PINs in a row); please apply for an unlock",
                )
                .into(),
            UnlockInvalid => lang
                .pick(
                    "解锁码无效：它不属于这把电子钥匙或当前的解锁请求，或已被使用过",
                    "The unlock code is not valid: it belongs to another key or another unlock request, or it has already been used",
                )
                .into(),
            UnlockCodeFormat => lang
                .pick(
                    "解锁码格式不正确，请核对邮件中的解锁码后重新输入",
                    "The unlock code is malformed; please check it against the mail and type it again",
                )
                .into(),
            ChallengeInvalid => lang
                .pick(
                    "解锁请求数据无效，请重新从电子钥匙读取",
                    "The unlock challenge is not valid; please read it from the key again",
                )
                .into(),
            ContainerName => lang
                .pick(
                    "容器名称无效：只能使用 1 至 64 位字母、数字、点、下划线或连字符",
                    "Invalid container name: use 1 to 64 letters, digits, dots, underscores or hyphens",
                )
                .into(),
            ContainerNotFound(name) => {
                if zh {
                    format!("电子钥匙中没有名为“{name}”的密钥")
                } else {
                    format!("The key has no key pair named \"{name}\"")
                }
            }
            ContainerExists(name) => {
                if zh {
                    format!("电子钥匙中名为“{name}”的容器已有密钥，不能覆盖")
                } else {
                    format!("The container \"{name}\" already holds a key pair and cannot be overwritten")
                }
            }
            CertificateInvalid => lang
                .pick("证书格式无效", "The certificate is not valid")
                .into(),
            CertificateMismatch => lang
                .pick(
                    "证书与电子钥匙中的密钥不匹配",
                    "The certificate does not match the key pair on the key",
                )
                .into(),
            CertificateMissing(name) => {
                if zh {
                    format!("电子钥匙中名为“{name}”的容器还没有证书")
                } else {
                    format!("The container \"{name}\" on the key holds no certificate yet")
                }
            }
            NotFound(_) => lang
                .pick(
                    "未找到电子钥匙，请确认已插入",
                    "The key was not found; please check that it is inserted",
                )
                .into(),
            Ambiguous(_) => lang
                .pick(
                    "找到多把同名电子钥匙，请按序列号选择",
                    "Several keys carry this name; please select one by serial number",
                )
                .into(),
            AlreadyExists(_) => lang
                .pick("电子钥匙已存在", "The key already exists")
                .into(),
            NoFreeSlot => lang
                .pick(
                    "没有可初始化的空白电子钥匙",
                    "No blank key is available for personalisation",
                )
                .into(),
            NotPersonalised(_) => lang
                .pick(
                    "这把电子钥匙尚未由本系统制作",
                    "This key has not been personalised by eKey",
                )
                .into(),
            Corrupt(_) => lang
                .pick(
                    "电子钥匙数据已损坏，请联系服务机构",
                    "The key's data is damaged; please contact your service provider",
                )
                .into(),
            Unsupported(_) => lang
                .pick(
                    "此电子钥匙型号不受支持",
                    "This kind of key is not supported",
                )
                .into(),
            Io(_) | Module(_) | Device(_) | Crypto(_) => lang
                .pick(
                    "电子钥匙操作失败，请重新插入后再试",
                    "The key operation failed; please reinsert the key and try again",
                )
                .into(),
        }
    }
}

impl From<cryptoki::error::Error> for TokenError {
    fn from(e: cryptoki::error::Error) -> Self {
        TokenError::Device(e.to_string())
    }
}

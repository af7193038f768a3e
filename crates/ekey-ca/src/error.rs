//! The one error type of the CA engine. Every variant has a stable machine code
//! (`ekey.ca.*`) and a sentence for people in Chinese and English.

use ekey_domain::Lang;

use crate::lint::LintFinding;

/// Result alias of this crate.
pub type Result<T, E = CaError> = std::result::Result<T, E>;

/// Something the CA could not do; nothing was issued, signed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The passphrase does not open the key file (wrong passphrase, or a damaged file:
    /// the two cannot be told apart by design).
    #[error("wrong passphrase or damaged key file {path}")]
    Passphrase {
        /// The key file (or a description of the key source).
        path: String,
    },
    /// No passphrase was given: neither the environment variable nor the file.
    #[error("no CA passphrase: set {var} or give a passphrase file")]
    PassphraseMissing {
        /// The environment variable that was looked at.
        var: String,
    },
    /// The passphrase is too short to protect a new CA key file.
    #[error("CA passphrase shorter than {min} characters")]
    PassphraseWeak {
        /// Minimum number of characters.
        min: usize,
    },
    /// A key file could be decrypted but does not hold a usable private key, or is not
    /// a PKCS#8 PEM file at all.
    #[error("unusable key file {path}: {detail}")]
    KeyFile {
        /// The key file (or a description of the key source).
        path: String,
        /// What is wrong, for the log.
        detail: String,
    },
    /// A CA key is of a type or size the CA does not use.
    #[error("unsupported CA key: {detail}")]
    KeyUnsupported {
        /// What is wrong, for the log.
        detail: String,
    },
    /// A private key does not belong to the certificate it is paired with.
    #[error("the {what} key does not match its certificate")]
    KeyMismatch {
        /// Which pair (root, issuing, ocsp).
        what: &'static str,
    },
    /// A file of the CA directory could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `create` or `import` would overwrite an existing CA file.
    #[error("{path} already exists; refusing to overwrite a CA")]
    AlreadyExists {
        /// The file that already exists.
        path: String,
    },
    /// A CA certificate (root, issuing or OCSP) is malformed or unfit for its role.
    #[error("unusable CA certificate: {detail}")]
    CaCertificate {
        /// What is wrong, for the log.
        detail: String,
    },
    /// The CA configuration is invalid.
    #[error("invalid CA configuration {field}: {detail}")]
    Config {
        /// The configuration field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The certificate request is not a well-formed PKCS#10 CSR.
    #[error("malformed certificate request: {detail}")]
    CsrMalformed {
        /// What is wrong, for the log.
        detail: String,
    },
    /// The certificate request's self-signature does not verify.
    #[error("certificate request signature does not verify")]
    CsrSignature,
    /// The certificate request holds a key type or size the CA does not certify.
    #[error("unsupported key in certificate request: {detail}")]
    CsrKeyUnsupported {
        /// The key found.
        detail: String,
    },
    /// The certificate request names another enterprise.
    #[error("certificate request subject {field} does not match the enterprise")]
    CsrSubjectMismatch {
        /// `commonName` or `serialNumber`.
        field: &'static str,
    },
    /// The public key given for issuance is malformed or of an unsupported type.
    #[error("unusable public key: {detail}")]
    PublicKey {
        /// What is wrong, for the log.
        detail: String,
    },
    /// A certificate serial number is malformed, zero, or longer than 20 octets.
    #[error("invalid serial number: {detail}")]
    SerialInvalid {
        /// What is wrong.
        detail: String,
    },
    /// A revocation reason name is not one of RFC 5280's.
    #[error("unknown revocation reason {0}")]
    ReasonUnknown(String),
    /// A revocation reason this CA does not revoke with (`removeFromCRL`, `certificateHold`).
    #[error("revocation reason {0} is not accepted")]
    ReasonNotAllowed(&'static str),
    /// The public key was already certified by this CA for another enterprise (another
    /// credit code): one key, one enterprise.
    #[error("this public key is already certified for another enterprise")]
    KeyOtherEnterprise,
    /// The public key was once revoked as keyCompromise: it is never certified again.
    #[error("this public key was revoked as compromised")]
    KeyCompromised,
    /// A name for the certificate subject is empty, too long or has forbidden characters.
    #[error("invalid {field}: {detail}")]
    NameInvalid {
        /// `enterprise_name`, `credit_code`, `common_name`, `root_name`, …
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The requested validity does not fit (e.g. beyond the issuing CA's own validity).
    #[error("validity not possible: {detail}")]
    Validity {
        /// What is wrong.
        detail: String,
    },
    /// The certificate built failed the RFC 5280 lint and was not signed.
    #[error("certificate failed the lint: {}", format_findings(.0))]
    Lint(Vec<LintFinding>),
    /// The CA key backend failed to sign, or produced a signature that does not verify.
    #[error("CA signer failed: {detail}")]
    Signer {
        /// What happened, for the log.
        detail: String,
    },
    /// An internal encoding step failed.
    #[error("encoding failed: {detail}")]
    Encoding {
        /// What happened, for the log.
        detail: String,
    },
    /// `removeFromCRL` is only meaningful in delta CRLs, which this CA does not issue.
    #[error("reason removeFromCRL cannot appear in a full CRL")]
    CrlReason,
    /// An OCSP request could not be parsed.
    #[error("malformed OCSP request: {detail}")]
    OcspMalformed {
        /// What is wrong, for the log.
        detail: String,
    },
    /// An OCSP request asks about certificates of another CA.
    #[error("OCSP request is not for this CA")]
    OcspUnauthorized,
    /// The PKCS#11 module holding CA keys could not be loaded, or a call into it failed.
    #[error("PKCS#11: {detail}")]
    Pkcs11 {
        /// What happened (module path, PKCS#11 function and return value), for the log.
        detail: String,
    },
    /// The user PIN of the CA's PKCS#11 token was refused, or the token's PIN is locked.
    #[error("PKCS#11 token {token}: user PIN refused{}", if *.locked { " (PIN locked)" } else { "" })]
    Pkcs11Login {
        /// The token label.
        token: String,
        /// The token reports its user PIN as locked.
        locked: bool,
    },
    /// No token with this label in the module, or no key with this label on the token.
    #[error("PKCS#11 {what} {name:?} not found")]
    Pkcs11NotFound {
        /// `token` or `key`.
        what: &'static str,
        /// The label looked for.
        name: String,
    },
}

fn format_findings(findings: &[LintFinding]) -> String {
    findings
        .iter()
        .map(|f| format!("{} ({})", f.code, f.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

impl CaError {
    /// Stable machine code, e.g. `ekey.ca.passphrase`.
    pub fn code(&self) -> &'static str {
        match self {
            CaError::Passphrase { .. } => "ekey.ca.passphrase",
            CaError::PassphraseMissing { .. } => "ekey.ca.passphrase_missing",
            CaError::PassphraseWeak { .. } => "ekey.ca.passphrase_weak",
            CaError::KeyFile { .. } => "ekey.ca.key_file",
            CaError::KeyUnsupported { .. } => "ekey.ca.key_unsupported",
            CaError::KeyMismatch { .. } => "ekey.ca.key_mismatch",
            CaError::Io { .. } => "ekey.ca.io",
            CaError::AlreadyExists { .. } => "ekey.ca.already_exists",
            CaError::CaCertificate { .. } => "ekey.ca.ca_certificate",
            CaError::Config { .. } => "ekey.ca.config",
            CaError::CsrMalformed { .. } => "ekey.ca.csr_malformed",
            CaError::CsrSignature => "ekey.ca.csr_signature",
            CaError::CsrKeyUnsupported { .. } => "ekey.ca.csr_key_unsupported",
            CaError::CsrSubjectMismatch { .. } => "ekey.ca.csr_subject_mismatch",
            CaError::PublicKey { .. } => "ekey.ca.public_key",
            CaError::SerialInvalid { .. } => "ekey.ca.serial_invalid",
            CaError::ReasonUnknown(_) => "ekey.ca.reason_unknown",
            CaError::ReasonNotAllowed(_) => "ekey.ca.reason_not_allowed",
            CaError::KeyOtherEnterprise => "ekey.ca.key_other_enterprise",
            CaError::KeyCompromised => "ekey.ca.key_compromised",
            CaError::NameInvalid { .. } => "ekey.ca.name_invalid",
            CaError::Validity { .. } => "ekey.ca.validity",
            CaError::Lint(_) => "ekey.ca.lint",
            CaError::Signer { .. } => "ekey.ca.signer",
            CaError::Encoding { .. } => "ekey.ca.encoding",
            CaError::CrlReason => "ekey.ca.crl_reason",
            CaError::OcspMalformed { .. } => "ekey.ca.ocsp_malformed",
            CaError::OcspUnauthorized => "ekey.ca.ocsp_unauthorized",
            CaError::Pkcs11 { .. } => "ekey.ca.pkcs11",
            CaError::Pkcs11Login { .. } => "ekey.ca.pkcs11_login",
            CaError::Pkcs11NotFound { .. } => "ekey.ca.pkcs11_not_found",
        }
    }

    /// A sentence for people. It never contains key material, passphrases or internal
    /// details beyond what the operator needs to act.
    pub fn message(&self, lang: Lang) -> String {
        let zh = lang == Lang::Zh;
        match self {
            CaError::Passphrase { .. } => pick(
                zh,
                "CA 密钥文件口令错误，或密钥文件已损坏。",
                "Wrong CA passphrase, or the key file is damaged.",
            ),
            CaError::PassphraseMissing { var } => {
                if zh {
                    format!("未提供 CA 口令：请设置环境变量 {var} 或指定口令文件。")
                } else {
                    format!("No CA passphrase: set {var} or give a passphrase file.")
                }
            }
            CaError::PassphraseWeak { min } => {
                if zh {
                    format!("CA 口令太短，至少需要 {min} 个字符。")
                } else {
                    format!("The CA passphrase is too short: at least {min} characters.")
                }
            }
            CaError::KeyFile { .. } => pick(
                zh,
                "CA 密钥文件无法使用（不是受支持的 PKCS#8 私钥）。",
                "The CA key file cannot be used (not a supported PKCS#8 private key).",
            ),
            CaError::KeyUnsupported { detail } => {
                if zh {
                    format!("不支持的 CA 密钥：{detail}。仅支持 ECDSA P-256 和 RSA（≥2048 位）。")
                } else {
                    format!(
                        "Unsupported CA key: {detail}. Only ECDSA P-256 and RSA (at least 2048 bits) are supported."
                    )
                }
            }
            CaError::KeyMismatch { what } => {
                if zh {
                    format!("{what} 私钥与其证书不匹配。")
                } else {
                    format!("The {what} private key does not match its certificate.")
                }
            }
            CaError::Io { path, .. } => {
                if zh {
                    format!("无法读写 CA 文件 {path}。")
                } else {
                    format!("Cannot read or write the CA file {path}.")
                }
            }
            CaError::AlreadyExists { path } => {
                if zh {
                    format!("{path} 已存在，不会覆盖现有 CA。")
                } else {
                    format!("{path} already exists; an existing CA is never overwritten.")
                }
            }
            CaError::CaCertificate { detail } => {
                if zh {
                    format!("CA 证书不可用：{detail}")
                } else {
                    format!("The CA certificate cannot be used: {detail}")
                }
            }
            CaError::Config { field, detail } => {
                if zh {
                    format!("CA 配置项 {field} 无效：{detail}")
                } else {
                    format!("Invalid CA setting {field}: {detail}")
                }
            }
            CaError::CsrMalformed { .. } => pick(
                zh,
                "证书请求（CSR）格式错误，无法解析。",
                "The certificate request (CSR) is malformed.",
            ),
            CaError::CsrSignature => pick(
                zh,
                "证书请求（CSR）签名验证失败。",
                "The certificate request (CSR) signature does not verify.",
            ),
            CaError::CsrKeyUnsupported { detail } => {
                if zh {
                    format!(
                        "证书请求中的密钥不受支持（{detail}）：仅支持 ECDSA P-256 和 RSA（≥2048 位）。"
                    )
                } else {
                    format!(
                        "The key in the certificate request is not supported ({detail}): only ECDSA P-256 and RSA (at least 2048 bits)."
                    )
                }
            }
            CaError::CsrSubjectMismatch { field } => {
                if zh {
                    format!("证书请求主题中的 {field} 与企业信息不符。")
                } else {
                    format!(
                        "The certificate request subject {field} does not match the enterprise."
                    )
                }
            }
            CaError::PublicKey { .. } => pick(
                zh,
                "公钥格式错误或类型不受支持。",
                "The public key is malformed or of an unsupported type.",
            ),
            CaError::SerialInvalid { detail } => {
                if zh {
                    format!("证书序列号无效：{detail}")
                } else {
                    format!("Invalid certificate serial number: {detail}")
                }
            }
            CaError::ReasonUnknown(name) => {
                if zh {
                    format!("未知的吊销原因 {name}。")
                } else {
                    format!("Unknown revocation reason {name}.")
                }
            }
            CaError::ReasonNotAllowed(name) => {
                if zh {
                    format!(
                        "不能以 {name} 为原因吊销证书：removeFromCRL 只用于增量 CRL，本 CA 也不提供证书冻结（certificateHold）。请选择 keyCompromise、cessationOfOperation、superseded、affiliationChanged 等原因。"
                    )
                } else {
                    format!(
                        "A certificate cannot be revoked with reason {name}: removeFromCRL belongs only in delta CRLs, and this CA offers no certificate hold. Choose keyCompromise, cessationOfOperation, superseded, affiliationChanged or another RFC 5280 reason."
                    )
                }
            }
            CaError::KeyOtherEnterprise => pick(
                zh,
                "该公钥已由本 CA 为另一家企业（不同的统一社会信用代码）签发过证书，不能再为本企业签发：请生成新的密钥。",
                "This public key is already certified by this CA for another enterprise (another credit code); generate a new key.",
            ),
            CaError::KeyCompromised => pick(
                zh,
                "该公钥曾因密钥泄露（keyCompromise）被吊销，不能再签发证书：请生成新的密钥。",
                "This public key was once revoked as compromised (keyCompromise) and is never certified again; generate a new key.",
            ),
            CaError::NameInvalid { field, detail } => {
                if zh {
                    format!("{field} 无效：{detail}")
                } else {
                    format!("Invalid {field}: {detail}")
                }
            }
            CaError::Validity { detail } => {
                if zh {
                    format!("证书有效期不可行：{detail}")
                } else {
                    format!("The certificate validity is not possible: {detail}")
                }
            }
            CaError::Lint(findings) => {
                let list = format_findings(findings);
                if zh {
                    format!("证书未通过 RFC 5280 检查，未签发：{list}")
                } else {
                    format!("The certificate failed the RFC 5280 checks and was not signed: {list}")
                }
            }
            CaError::Signer { .. } => pick(
                zh,
                "CA 签名失败，请检查密钥设备。",
                "The CA could not sign; check the key backend.",
            ),
            CaError::Encoding { .. } => pick(
                zh,
                "CA 内部编码错误。",
                "Internal encoding error in the CA.",
            ),
            CaError::CrlReason => pick(
                zh,
                "完整 CRL 中不能使用吊销原因 removeFromCRL。",
                "The reason removeFromCRL cannot appear in a full CRL.",
            ),
            CaError::OcspMalformed { .. } => {
                pick(zh, "OCSP 请求格式错误。", "The OCSP request is malformed.")
            }
            CaError::OcspUnauthorized => pick(
                zh,
                "OCSP 请求查询的不是本 CA 签发的证书。",
                "The OCSP request asks about certificates of another CA.",
            ),
            CaError::Pkcs11 { detail } => {
                if zh {
                    format!("CA 密钥设备（PKCS#11）操作失败：{detail}")
                } else {
                    format!("The CA key device (PKCS#11) failed: {detail}")
                }
            }
            CaError::Pkcs11Login { token, locked } => {
                if *locked {
                    if zh {
                        format!("CA 密钥设备 {token} 的用户 PIN 已锁定，请由安全管理员解锁。")
                    } else {
                        format!(
                            "The user PIN of the CA key device {token} is locked; the security officer must unlock it."
                        )
                    }
                } else if zh {
                    format!("CA 密钥设备 {token} 的用户 PIN 错误。")
                } else {
                    format!("Wrong user PIN for the CA key device {token}.")
                }
            }
            CaError::Pkcs11NotFound { what, name } => {
                let zh_what = if *what == "token" {
                    "设备（令牌）"
                } else {
                    "密钥"
                };
                if zh {
                    format!("未找到标签为 {name} 的 CA {zh_what}。")
                } else {
                    format!("No CA {what} labelled {name} was found in the PKCS#11 module.")
                }
            }
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        CaError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn encoding(detail: impl std::fmt::Display) -> Self {
        CaError::Encoding {
            detail: detail.to_string(),
        }
    }

    pub(crate) fn ca_cert(detail: impl Into<String>) -> Self {
        CaError::CaCertificate {
            detail: detail.into(),
        }
    }
}

fn pick(zh: bool, zh_text: &str, en_text: &str) -> String {
    if zh { zh_text } else { en_text }.to_string()
}

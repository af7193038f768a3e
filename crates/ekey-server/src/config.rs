//! Server configuration: a TOML file, then `EKEY_*` environment variables on top.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// How queued mail and SMS leave the system.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MailTransport {
    /// Into the development mailbox (`/api/v1/dev/mailbox`); demo mode.
    Dev,
    /// Into the log only (a deployment without a mail server yet).
    Log,
    /// Mail over SMTP (`smtp_url`), SMS through the HTTP gateway (`sms_url`).
    Smtp,
}

/// Everything the server needs to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite:…` or `postgres:…`.
    pub database_url: String,
    /// Address to listen on.
    pub listen: String,
    /// Seconds a client has to send a request's headers, and the longest a kept-alive
    /// connection waits for its next request (`EKEY_HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may wait on the client (a stalled body, a reader that stopped
    /// reading) before it is closed (`EKEY_IDLE_TIMEOUT_SECS`).
    pub idle_timeout_secs: u64,
    /// Connections held at once; more are answered 503 and closed (`EKEY_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Connections held at once from one address, trusted proxies excepted
    /// (`EKEY_MAX_CONNECTIONS_PER_ADDRESS`).
    pub max_connections_per_address: usize,
    /// Directory for files (uploads) and extra holiday files (`holidays/*.json`).
    pub data_dir: PathBuf,
    /// Public base URL used in mail links; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Demo mode: dev mailbox endpoint on, mail into it.
    pub demo: bool,
    /// Mail transport.
    pub mail_transport: MailTransport,
    /// Session lifetime.
    pub session_ttl_hours: i64,
    /// Activation link lifetime.
    pub activation_ttl_hours: i64,
    /// How often the outbox worker looks for due messages when not woken.
    pub outbox_poll_ms: u64,
    /// How often expiry reminders and the clerks' digest are looked for.
    pub reminder_poll_ms: u64,
    /// The key provider's customer hotline (shown in footers and mails).
    pub provider_hotline: String,
    /// The key provider as the papers name it: the confirmation letter is addressed to it
    /// and the user agreement is titled "<name>数字证书用户协议书" (`EKEY_PROVIDER_NAME`).
    pub provider_name: String,
    /// The text of the user agreement (数字证书用户协议书), one clause a line; absent: a
    /// default text saying what the user agrees to.
    pub provider_agreement: Option<String>,
    /// Personalise keys on PKCS#11 tokens through this module (e.g. SoftHSM2, a vendor's
    /// USB-key library) instead of software tokens.
    pub token_pkcs11_module: Option<PathBuf>,
    /// Key algorithm of a CA created here: `p256` (default) or `rsa2048`.
    pub ca_algorithm: String,
    /// Keep the CA's signing keys in this PKCS#11 module (HSM) instead of encrypted files;
    /// the user PIN comes from `EKEY_CA_PKCS11_PIN`.
    pub ca_pkcs11_module: Option<PathBuf>,
    /// Label of the HSM token holding the CA keys.
    pub ca_pkcs11_token: Option<String>,
    /// Transport SO PIN of blank PKCS#11 tokens (replaced by a sealed one at
    /// personalisation); `EKEY_TOKEN_SO_PIN` overrides it.
    pub token_transport_so_pin: String,
    /// SMTP server for `mail_transport = "smtp"`: `smtp://host:25`, `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS) or `smtps://user:pass@host:465`. Holds a password: prefer `EKEY_SMTP_URL`.
    pub smtp_url: Option<String>,
    /// Sender of the mails, e.g. `电子钥匙在线办理 <noreply@ekey.example.gov.cn>`.
    pub mail_from: String,
    /// SMS gateway endpoint (`http://…`), called with a JSON body signed with `sms_secret`.
    pub sms_url: Option<String>,
    /// Key of the HMAC-SHA256 signature of SMS requests; prefer `EKEY_SMS_SECRET`.
    pub sms_secret: Option<String>,
    /// Font for the printable documents (a CJK TTF/OTF/TTC); default: the system's Noto Sans
    /// CJK SC or WenQuanYi, else the subset bundled in the binary. `EKEY_FONT` overrides it.
    pub font: Option<PathBuf>,
    /// Where the portal's pages find the local agent (`ekey agent`) on the user's machine;
    /// allowed in the pages' `connect-src`. `EKEY_AGENT_URL` overrides it.
    pub agent_url: String,
    /// When the old certificate of a renewed key is revoked as `superseded`: `confirm` (as
    /// soon as the key confirms the new one is active) or `expiry` (when the renewal record
    /// expires). Either way it is revoked at the latest at the record's expiry.
    pub renewal_supersede: String,
    /// Days an approved renewal can be run with the key before its record expires.
    pub renewal_ttl_days: i64,
    /// Where uploaded files and generated documents live: absent = the local directory
    /// `<data_dir>/files`; `s3://bucket[/prefix]` = an S3 bucket (`EKEY_STORAGE_URL`).
    pub storage_url: Option<String>,
    /// Endpoint of an S3-compatible service, e.g. `https://minio.internal:9000` or
    /// `http://127.0.0.1:5000`; AWS when absent. Requests are path-style (`EKEY_S3_ENDPOINT`).
    pub s3_endpoint: Option<String>,
    /// S3 region (`EKEY_S3_REGION`).
    pub s3_region: String,
    /// Allow a plain-http `s3_endpoint` that is not a loopback address (`EKEY_S3_ALLOW_HTTP`).
    pub s3_allow_http: bool,
    /// S3 access key id: from `AWS_ACCESS_KEY_ID` only, never from the file (not a TOML key).
    #[serde(skip)]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key: from `AWS_SECRET_ACCESS_KEY` only.
    #[serde(skip)]
    pub s3_secret_access_key: Option<String>,
    /// S3 session token of temporary credentials: from `AWS_SESSION_TOKEN` only.
    #[serde(skip)]
    pub s3_session_token: Option<String>,
    /// Addresses of the reverse proxies in front of this instance
    /// (`EKEY_TRUSTED_PROXIES`, comma-separated). Only from these is `X-Forwarded-For`
    /// believed; the client is then the nearest address in it that is not one of them.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Production only: personalise keys as **software tokens** (key files written by this
    /// server, not hardware keys) when no `token_pkcs11_module` is set. Off by default:
    /// `ekey serve` refuses to start without one or the other, so that nobody ships software
    /// keys by mistake. For test installations (`EKEY_ALLOW_SOFTWARE_TOKENS_INSECURE`).
    pub allow_software_tokens_insecure: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite:./ekey-data/ekey.db".into(),
            listen: "127.0.0.1:8080".into(),
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 4096,
            max_connections_per_address: 256,
            data_dir: PathBuf::from("./ekey-data"),
            public_url: None,
            demo: false,
            mail_transport: MailTransport::Log,
            session_ttl_hours: 12,
            activation_ttl_hours: 48,
            outbox_poll_ms: 1000,
            reminder_poll_ms: 600_000,
            provider_hotline: "010-58103599".into(),
            provider_name: "国富安CA".into(),
            provider_agreement: None,
            font: None,
            smtp_url: None,
            mail_from: "电子钥匙在线办理 <noreply@ekey.example>".into(),
            sms_url: None,
            sms_secret: None,
            token_pkcs11_module: None,
            ca_algorithm: "p256".into(),
            ca_pkcs11_module: None,
            ca_pkcs11_token: None,
            token_transport_so_pin: "12345678".into(),
            agent_url: "http://127.0.0.1:17480".into(),
            renewal_supersede: "confirm".into(),
            renewal_ttl_days: 30,
            storage_url: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_allow_http: false,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_session_token: None,
            trusted_proxies: Vec::new(),
            allow_software_tokens_insecure: false,
        }
    }
}

impl Config {
    /// Reads `file` (if given) and applies `EKEY_*` overrides from the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config {}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Applies `EKEY_DATABASE_URL`, `EKEY_LISTEN`, `EKEY_DATA_DIR`, `EKEY_PUBLIC_URL`,
    /// `EKEY_DEMO`, `EKEY_MAIL_TRANSPORT` and the others listed in README.md, and takes the
    /// S3 credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = get("EKEY_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("EKEY_LISTEN") {
            self.listen = v;
        }
        for (name, value) in [
            (
                "EKEY_HEADER_READ_TIMEOUT_SECS",
                &mut self.header_read_timeout_secs,
            ),
            ("EKEY_IDLE_TIMEOUT_SECS", &mut self.idle_timeout_secs),
        ] {
            if let Some(v) = get(name) {
                *value = v
                    .parse()
                    .with_context(|| format!("{name} must be a number of seconds"))?;
            }
        }
        for (name, value) in [
            ("EKEY_MAX_CONNECTIONS", &mut self.max_connections),
            (
                "EKEY_MAX_CONNECTIONS_PER_ADDRESS",
                &mut self.max_connections_per_address,
            ),
        ] {
            if let Some(v) = get(name) {
                *value = v
                    .parse()
                    .with_context(|| format!("{name} must be a number"))?;
            }
        }
        if let Some(v) = get("EKEY_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("EKEY_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = get("EKEY_TRUSTED_PROXIES") {
            self.trusted_proxies = v
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect();
        }
        if let Some(v) = get("EKEY_ALLOW_SOFTWARE_TOKENS_INSECURE") {
            self.allow_software_tokens_insecure = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = get("EKEY_DEMO") {
            self.demo = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = get("EKEY_CA_ALGORITHM") {
            self.ca_algorithm = v;
        }
        if let Some(v) = get("EKEY_CA_PKCS11_MODULE") {
            self.ca_pkcs11_module = Some(v.into());
        }
        if let Some(v) = get("EKEY_CA_PKCS11_TOKEN") {
            self.ca_pkcs11_token = Some(v);
        }
        if let Some(v) = get("EKEY_TOKEN_SO_PIN") {
            self.token_transport_so_pin = v;
        }
        if let Some(v) = get("EKEY_FONT") {
            self.font = Some(v.into());
        }
        if let Some(v) = get("EKEY_TOKEN_PKCS11_MODULE") {
            self.token_pkcs11_module = Some(v.into());
        }
        if let Some(v) = get("EKEY_MAIL_TRANSPORT") {
            self.mail_transport = match v.as_str() {
                "dev" => MailTransport::Dev,
                "log" => MailTransport::Log,
                "smtp" => MailTransport::Smtp,
                other => {
                    anyhow::bail!("EKEY_MAIL_TRANSPORT must be dev, log or smtp, not {other:?}")
                }
            };
        }
        if let Some(v) = get("EKEY_PROVIDER_NAME") {
            self.provider_name = v;
        }
        if let Some(v) = get("EKEY_AGENT_URL") {
            self.agent_url = v;
        }
        if let Some(v) = get("EKEY_RENEWAL_SUPERSEDE") {
            self.renewal_supersede = v;
        }
        if !matches!(self.renewal_supersede.as_str(), "confirm" | "expiry") {
            anyhow::bail!(
                "renewal_supersede must be \"confirm\" or \"expiry\", not {:?}",
                self.renewal_supersede
            );
        }
        if let Some(v) = get("EKEY_SMTP_URL") {
            self.smtp_url = Some(v);
        }
        if let Some(v) = get("EKEY_MAIL_FROM") {
            self.mail_from = v;
        }
        if let Some(v) = get("EKEY_SMS_URL") {
            self.sms_url = Some(v);
        }
        if let Some(v) = get("EKEY_SMS_SECRET") {
            self.sms_secret = Some(v);
        }
        if let Some(v) = get("EKEY_STORAGE_URL") {
            self.storage_url = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = get("EKEY_S3_ENDPOINT") {
            self.s3_endpoint = Some(v).filter(|v| !v.is_empty());
        }
        if let Some(v) = get("EKEY_S3_REGION") {
            self.s3_region = v;
        }
        if let Some(v) = get("EKEY_S3_ALLOW_HTTP") {
            self.s3_allow_http = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = get("AWS_ACCESS_KEY_ID") {
            self.s3_access_key_id = Some(v);
        }
        if let Some(v) = get("AWS_SECRET_ACCESS_KEY") {
            self.s3_secret_access_key = Some(v);
        }
        if let Some(v) = get("AWS_SESSION_TOKEN") {
            self.s3_session_token = Some(v);
        }
        Ok(())
    }

    /// Where files live: `None` for the local directory `<data_dir>/files`, else the S3
    /// bucket of `storage_url` with the endpoint, region and credentials set here.
    pub fn s3_settings(&self) -> anyhow::Result<Option<ekey_store::blob::S3Settings>> {
        let Some(url) = &self.storage_url else {
            return Ok(None);
        };
        let base = ekey_store::blob::S3Settings::from_url(url).map_err(|e| {
            anyhow::anyhow!(
                "storage_url: {e} (absent for <data_dir>/files, or s3://bucket[/prefix])"
            )
        })?;
        Ok(Some(ekey_store::blob::S3Settings {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            allow_http: self.s3_allow_http,
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            session_token: self.s3_session_token.clone(),
            ..base
        }))
    }

    /// Base URL for links in messages.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file() {
        let mut c: Config = toml::from_str("database_url = \"sqlite:a.db\"\ndemo = false").unwrap();
        c.apply_env(|k| match k {
            "EKEY_DATABASE_URL" => Some("postgres://x/y".into()),
            "EKEY_DEMO" => Some("true".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.database_url, "postgres://x/y");
        assert!(c.demo);
        assert!(toml::from_str::<Config>("no_such_key = 1").is_err());
    }

    #[test]
    fn storage_is_local_unless_an_s3_url_is_given() {
        let c = Config::default();
        assert!(c.s3_settings().unwrap().is_none());

        let mut c: Config = toml::from_str(
            "storage_url = \"s3://ekey-files/prod\"\ns3_endpoint = \"http://127.0.0.1:5000\"",
        )
        .unwrap();
        c.apply_env(|k| match k {
            "EKEY_S3_REGION" => Some("cn-north-1".into()),
            "AWS_ACCESS_KEY_ID" => Some("AKID".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("SECRET".into()),
            _ => None,
        })
        .unwrap();
        let s = c.s3_settings().unwrap().unwrap();
        assert_eq!(s.bucket, "ekey-files");
        assert_eq!(s.prefix.as_deref(), Some("prod"));
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(s.region, "cn-north-1");
        assert_eq!(s.access_key_id.as_deref(), Some("AKID"));
        assert_eq!(s.secret_access_key.as_deref(), Some("SECRET"));

        // The environment alone is enough; the region defaults to us-east-1.
        let mut c = Config::default();
        c.apply_env(|k| (k == "EKEY_STORAGE_URL").then(|| "s3://bucket-a".to_string()))
            .unwrap();
        assert_eq!(c.s3_settings().unwrap().unwrap().region, "us-east-1");

        // Secrets are not configuration-file keys.
        for secret in [
            "s3_secret_access_key = \"x\"",
            "s3_access_key_id = \"x\"",
            "s3_session_token = \"x\"",
        ] {
            assert!(toml::from_str::<Config>(secret).is_err(), "{secret}");
        }
        let bad: Config = toml::from_str("storage_url = \"/var/lib/files\"").unwrap();
        assert!(bad.s3_settings().is_err());
    }
}

//! Where queued messages go in production: mail over SMTP (lettre; plain, STARTTLS or TLS
//! as the URL says) and SMS through an HTTP gateway. Each message carries an identity
//! derived from its outbox dedup key (`Message-ID` for mail, `X-Ekey-Message-Id` for SMS)
//! so that a receiver can drop the rare repeat after a crash between "accepted" and
//! "marked delivered".

use anyhow::{Context, bail};
use ekey_store::{Channel, OutboxMessage};
use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sha2::{Digest, Sha256};

use crate::config::{Config, MailTransport};

/// The production transports, built once at start.
pub struct Transports {
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Option<Mailbox>,
    sms: Option<SmsGateway>,
}

struct SmsGateway {
    url: String,
    secret: String,
    client: reqwest::Client,
}

/// The stable identity of a message: the same for every attempt of one outbox row.
pub fn message_id(msg: &OutboxMessage) -> String {
    hex::encode(&Sha256::digest(msg.dedup_key.as_bytes())[..16])
}

/// Signature of an SMS request body: hex HMAC-SHA256 with the shared secret.
pub fn sms_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

impl Transports {
    /// Builds what the configuration asks for; with `mail_transport = "smtp"` an SMTP URL
    /// is required, and an SMS gateway needs its secret.
    pub fn from_config(config: &Config) -> anyhow::Result<Transports> {
        if config.mail_transport != MailTransport::Smtp {
            return Ok(Transports {
                smtp: None,
                from: None,
                sms: None,
            });
        }
        let url = config
            .smtp_url
            .as_deref()
            .context("mail_transport = \"smtp\" needs smtp_url (or EKEY_SMTP_URL)")?;
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("smtp_url: {e}"))?
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        let from: Mailbox = config
            .mail_from
            .parse()
            .map_err(|e| anyhow::anyhow!("mail_from {:?}: {e}", config.mail_from))?;
        let sms = match &config.sms_url {
            None => None,
            Some(url) => {
                if !url.starts_with("http://") {
                    bail!("sms_url must be an http:// endpoint of the SMS gateway (got {url:?})");
                }
                let secret = config
                    .sms_secret
                    .clone()
                    .filter(|s| s.len() >= 16)
                    .context(
                        "sms_url needs sms_secret (EKEY_SMS_SECRET), at least 16 characters",
                    )?;
                Some(SmsGateway {
                    url: url.clone(),
                    secret,
                    client: reqwest::Client::builder()
                        .timeout(std::time::Duration::from_secs(15))
                        .build()?,
                })
            }
        };
        Ok(Transports {
            smtp: Some(smtp),
            from: Some(from),
            sms,
        })
    }

    /// Sends one message; an error is retried later by the outbox.
    pub async fn send(&self, msg: &OutboxMessage) -> Result<(), String> {
        match msg.channel {
            Channel::Email => self.send_mail(msg).await,
            Channel::Sms => self.send_sms(msg).await,
        }
    }

    async fn send_mail(&self, msg: &OutboxMessage) -> Result<(), String> {
        let (Some(smtp), Some(from)) = (&self.smtp, &self.from) else {
            return Err("no SMTP transport configured".into());
        };
        let to: Mailbox = msg
            .recipient
            .parse()
            .map_err(|e| format!("recipient {:?}: {e}", msg.recipient))?;
        let domain = from.email.domain().to_string();
        let email = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(msg.subject.clone())
            .message_id(Some(format!("<{}@{domain}>", message_id(msg))))
            .header(ContentType::TEXT_PLAIN)
            .body(msg.body.clone())
            .map_err(|e| format!("building the mail: {e}"))?;
        smtp.send(email)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }

    async fn send_sms(&self, msg: &OutboxMessage) -> Result<(), String> {
        let Some(gw) = &self.sms else {
            return Err("no SMS gateway configured (sms_url)".into());
        };
        let id = message_id(msg);
        let body = serde_json::to_vec(&serde_json::json!({
            "id": id,
            "to": msg.recipient,
            "text": msg.body,
        }))
        .map_err(|e| e.to_string())?;
        let res = gw
            .client
            .post(&gw.url)
            .header("content-type", "application/json; charset=utf-8")
            .header("x-ekey-message-id", &id)
            .header(
                "x-ekey-signature",
                format!("sha256={}", sms_signature(&gw.secret, &body)),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("SMS gateway: {e}"))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!("SMS gateway answered {}", res.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp_config() -> Config {
        Config {
            mail_transport: MailTransport::Smtp,
            smtp_url: Some("smtp://127.0.0.1:2525".into()),
            ..Config::default()
        }
    }

    fn refused(c: &Config) -> String {
        match Transports::from_config(c) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    // lettre's connection pool starts a task when it is built: inside a runtime, as in `build`.
    #[tokio::test]
    async fn a_half_configured_transport_refuses_to_start_and_says_what_is_missing() {
        assert!(
            refused(&Config {
                smtp_url: None,
                ..smtp_config()
            })
            .contains("smtp_url")
        );
        assert!(
            refused(&Config {
                mail_from: "not a mailbox".into(),
                ..smtp_config()
            })
            .contains("mail_from")
        );
        let sms = |url: &str, secret: Option<&str>| Config {
            sms_url: Some(url.into()),
            sms_secret: secret.map(str::to_string),
            ..smtp_config()
        };
        assert!(
            refused(&sms("https://gw.example/sms", Some("0123456789abcdef"))).contains("http://")
        );
        assert!(refused(&sms("http://gw.example/sms", Some("short"))).contains("sms_secret"));
        assert!(refused(&sms("http://gw.example/sms", None)).contains("sms_secret"));
        assert!(
            Transports::from_config(&sms("http://gw.example/sms", Some("0123456789abcdef")))
                .is_ok()
        );
    }

    #[test]
    fn signatures_depend_on_secret_and_body() {
        let a = sms_signature("k1", b"body");
        assert_eq!(a.len(), 64);
        assert_ne!(a, sms_signature("k2", b"body"));
        assert_ne!(a, sms_signature("k1", b"body2"));
    }
}

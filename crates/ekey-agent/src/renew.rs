//! The renewal client (docs/agent.md, "The renewal protocol"), used by the agent's
//! `POST /keys/{serial}/renewal` and by `ekey key renew`.
//!
//! State lives in two places only: the server's renewal record and the token (containers
//! `sign` and `renew-<request_id>`). Every run starts from the top and skips what is done,
//! so a run interrupted anywhere — crash points `renew.*` — is finished by the next one.

use std::sync::Arc;

use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ekey_domain::{Lang, keyproof};
use ekey_token::{Token, TokenError, TokenStatus, fault};
use serde::{Deserialize, Serialize};

use crate::cert::{self, normalize_serial};
use crate::client::Server;
use crate::error::{AgentError, Result};

/// The container that holds the key pair and certificate in use.
pub const ACTIVE: &str = "sign";

/// The container of the new key pair of renewal `request_id`.
pub fn pending_container(request_id: &str) -> String {
    format!("renew-{request_id}")
}

/// Where and how to renew.
#[derive(Clone, Debug)]
pub struct RenewParams {
    /// Base URL of the eKey server's API (e.g. `https://ekey.example.gov.cn`).
    pub server: String,
    /// The portal's public origin, bound into the login signature (the server's
    /// `public_url`); usually the same as `server`.
    pub origin: String,
    /// The renewal to carry out; `None`: the only approved one of the key.
    pub request_id: Option<String>,
    /// Language of the server's messages.
    pub lang: Lang,
}

/// A finished renewal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewOutcome {
    /// Always `confirmed`.
    pub state: String,
    /// The serial of the certificate replaced.
    pub old_serial: String,
    /// The serial of the certificate now on the key.
    pub new_serial: String,
}

/// One renewal as `GET /api/v1/renewals` lists it.
#[derive(Clone, Debug, Deserialize)]
struct Renewal {
    request_id: String,
    number: String,
    #[serde(default)]
    old_serial: Option<String>,
    #[serde(default)]
    new_serial: Option<String>,
    state: String,
}

#[derive(Deserialize)]
struct Challenge {
    id: String,
    challenge: String,
}

#[derive(Deserialize)]
struct Session {
    token: String,
}

#[derive(Deserialize)]
struct Issued {
    certificate: String,
    serial: String,
}

#[derive(Deserialize)]
struct Confirmed {
    #[serde(default)]
    old_serial: Option<String>,
    new_serial: String,
}

/// Runs a token operation off the async runtime (Argon2, PKCS#11 are slow and blocking).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, TokenError> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Internal(format!("token task: {e}")))?
        .map_err(AgentError::from)
}

/// Signs `message` with the key in `container` (one PIN use).
pub(crate) async fn sign(
    token: &Arc<dyn Token>,
    pin: &str,
    container: &str,
    message: Vec<u8>,
) -> Result<Vec<u8>> {
    let (token, pin, container) = (token.clone(), pin.to_string(), container.to_string());
    blocking(move || token.sign(&pin, &container, &message)).await
}

pub(crate) async fn status(token: &Arc<dyn Token>) -> Result<TokenStatus> {
    let token = token.clone();
    blocking(move || token.status()).await
}

fn container<'a>(s: &'a TokenStatus, name: &str) -> Option<&'a ekey_token::ContainerInfo> {
    s.containers.iter().find(|c| c.name == name)
}

/// The certificate in the active container (DER).
pub(crate) fn active_certificate(s: &TokenStatus) -> Result<Vec<u8>> {
    container(s, ACTIVE)
        .filter(|c| c.has_key)
        .and_then(|c| c.certificate_der.clone())
        .ok_or(AgentError::NoCertificate)
}

/// Certificate login with the key: challenge, signature by `sign`, session. The first PIN
/// use of a run: a wrong PIN stops everything here, before any change.
pub(crate) async fn login(
    server: &mut Server,
    token: &Arc<dyn Token>,
    pin: &str,
    origin: &str,
    certificate: &[u8],
) -> Result<String> {
    let challenge: Challenge = server
        .call(
            Method::POST,
            "/api/v1/key-login/challenges",
            Some(&serde_json::json!({})),
        )
        .await?;
    let signature = sign(
        token,
        pin,
        ACTIVE,
        keyproof::login_message(origin, &challenge.challenge),
    )
    .await?;
    let session: Session = server
        .call(
            Method::POST,
            "/api/v1/key-login",
            Some(&serde_json::json!({
                "challenge_id": challenge.id,
                "certificate": STANDARD.encode(certificate),
                "signature": STANDARD.encode(signature),
            })),
        )
        .await?;
    server.set_bearer(session.token.clone());
    Ok(session.token)
}

/// Picks the renewal to carry out among those listed for the key whose active
/// certificate has serial `active`.
fn choose(list: Vec<Renewal>, wanted: Option<&str>, active: &str) -> Result<Renewal> {
    let active = normalize_serial(active);
    let ours = |r: &Renewal| {
        [&r.old_serial, &r.new_serial]
            .into_iter()
            .flatten()
            .any(|s| normalize_serial(s) == active)
    };
    if let Some(id) = wanted {
        let r = list
            .into_iter()
            .find(|r| r.request_id == id || r.number == id)
            .ok_or(AgentError::NoRenewal)?;
        return if ours(&r) {
            Ok(r)
        } else {
            Err(AgentError::RenewalOtherKey(r.number))
        };
    }
    // An expired renewal can no longer run (the key kept its certificate): not a candidate.
    let (open, done): (Vec<Renewal>, Vec<Renewal>) = list
        .into_iter()
        .filter(ours)
        .filter(|r| r.state != "expired")
        .partition(|r| r.state != "confirmed");
    match open.len() {
        1 => Ok(open.into_iter().next().expect("one")),
        0 => {
            // Confirmed already (e.g. the server confirmed but its answer was lost): asking
            // again answers the same.
            done.into_iter()
                .find(|r| r.new_serial.as_deref().map(normalize_serial) == Some(active.clone()))
                .ok_or(AgentError::NoRenewal)
        }
        _ => Err(AgentError::RenewalAmbiguous(
            open.into_iter().map(|r| r.number).collect(),
        )),
    }
}

/// Carries out (or finishes) a renewal of `token` (see the module documentation and
/// docs/agent.md): log in with the key, find the approved renewal, generate the new key
/// pair in `renew-<request_id>`, have the certificate issued (CSR by the new key,
/// countersigned by the old), write it, promote it to `sign`, confirm. Every PIN use goes
/// through the token and counts towards its 6 tries.
pub async fn renew(token: Arc<dyn Token>, pin: &str, params: &RenewParams) -> Result<RenewOutcome> {
    let mut server = Server::new(&params.server, params.lang)?;

    // 1. Log in with the key: the old certificate, or the new one if promoted earlier.
    let before = status(&token).await?;
    let active_der = active_certificate(&before)?;
    let active = cert::parse(&active_der)?;
    login(&mut server, &token, pin, &params.origin, &active_der).await?;
    tracing::info!(serial = %token.serial(), certificate = %active.serial, "renewal: logged in with the key");

    // 2. The approved renewal.
    let list: Vec<Renewal> = server
        .call(Method::GET, "/api/v1/renewals", None::<&()>)
        .await?;
    let renewal = choose(list, params.request_id.as_deref(), &active.serial)?;
    // The id names a container and a URL path: only safe characters.
    ekey_token::validate_container_name(&pending_container(&renewal.request_id))
        .map_err(|_| AgentError::ServerResponse(format!("renewal id {:?}", renewal.request_id)))?;
    let number = renewal.number.clone();
    let pending = pending_container(&renewal.request_id);
    tracing::info!(%number, state = %renewal.state, "renewal: found");

    // 3. Already promoted: only the confirmation is missing.
    let promoted = renewal
        .new_serial
        .as_deref()
        .is_some_and(|s| normalize_serial(s) == normalize_serial(&active.serial));
    let (old_serial, new_serial) = if promoted {
        let old = renewal.old_serial.clone().unwrap_or_default();
        (old, renewal.new_serial.clone().unwrap_or_default())
    } else {
        let new_serial = install(&server, &token, pin, &renewal, &pending, &before).await?;

        // 7. Promote: the new key pair and certificate become `sign`, atomically.
        fault::point("renew.before_promote");
        {
            let (token, pin, pending) = (token.clone(), pin.to_string(), pending.clone());
            blocking(move || token.promote(&pin, &pending, ACTIVE)).await?;
        }
        tracing::info!(%number, %new_serial, "renewal: new key and certificate active");
        fault::point("renew.before_confirm");
        (active.serial.clone(), new_serial)
    };

    // 8. Confirm with the now active key.
    let signature = sign(
        &token,
        pin,
        ACTIVE,
        keyproof::renewal_confirm_message(&number, &new_serial),
    )
    .await?;
    let confirmed: Confirmed = server
        .call(
            Method::POST,
            &format!("/api/v1/renewals/{}/confirm", renewal.request_id),
            Some(&serde_json::json!({ "signature": STANDARD.encode(signature) })),
        )
        .await?;
    tracing::info!(%number, new_serial = %confirmed.new_serial, "renewal: confirmed");
    Ok(RenewOutcome {
        state: "confirmed".into(),
        old_serial: confirmed.old_serial.unwrap_or(old_serial),
        new_serial: confirmed.new_serial,
    })
}

/// Steps 4–6: the new key pair, its certificate, written into the pending container.
/// Returns the new certificate's serial.
async fn install(
    server: &Server,
    token: &Arc<dyn Token>,
    pin: &str,
    renewal: &Renewal,
    pending: &str,
    before: &TokenStatus,
) -> Result<String> {
    let number = renewal.number.as_str();
    // 4. The new key pair, unless an earlier run made it.
    let public_key = match container(before, pending).and_then(|c| c.public_key_spki.clone()) {
        Some(spki) => {
            if let Some(der) = container(before, pending).and_then(|c| c.certificate_der.clone()) {
                // 6 was done by an earlier run: straight to the promotion.
                let issued = cert::parse(&der)?;
                return Ok(renewal.new_serial.clone().unwrap_or(issued.serial));
            }
            spki
        }
        None => {
            let (t, p, c) = (token.clone(), pin.to_string(), pending.to_string());
            let spki = blocking(move || t.generate_key(&p, &c)).await?;
            tracing::info!(%number, container = %pending, "renewal: new key pair generated on the key");
            fault::point("renew.after_keygen");
            spki
        }
    };
    let public_key = cert::spki_point(&public_key).ok_or_else(|| {
        AgentError::Token(TokenError::Corrupt(format!("public key of {pending}")))
    })?;

    // 5. CSR by the new key with the subject of the active certificate; countersignature
    //    by the old key. The server issues one certificate per approval; a repeat with the
    //    same key returns it.
    let active = cert::parse(&active_certificate(before)?)?;
    let mut subject = active.csr_subject.clone();
    subject.country.get_or_insert_with(|| "CN".into());
    let csr = {
        let (t, p, c) = (token.clone(), pin.to_string(), pending.to_string());
        blocking(move || ekey_token::csr_with_subject(t.as_ref(), &p, &c, &subject)).await?
    };
    let countersignature = sign(
        token,
        pin,
        ACTIVE,
        keyproof::renewal_countersign_message(number, &csr),
    )
    .await?;
    let resp = server
        .send(
            Method::POST,
            &format!("/api/v1/renewals/{}/certificate", renewal.request_id),
            Some(&serde_json::json!({
                "csr": STANDARD.encode(&csr),
                "countersignature": STANDARD.encode(countersignature),
            })),
        )
        .await?;
    fault::point("renew.after_csr_sent");
    let issued: Issued = server.read(resp).await?;
    let der = STANDARD
        .decode(issued.certificate.trim())
        .map_err(|e| AgentError::ServerResponse(format!("certificate not base64: {e}")))?;
    let parsed = cert::parse(&der)
        .map_err(|_| AgentError::ServerResponse("certificate not X.509 DER".into()))?;
    if parsed.public_key != public_key {
        return Err(AgentError::CertificateMismatch);
    }
    tracing::info!(%number, serial = %parsed.serial, "renewal: certificate issued");

    // 6. Write it next to its key.
    fault::point("renew.before_write");
    {
        let (t, p, c) = (token.clone(), pin.to_string(), pending.to_string());
        blocking(move || t.put_certificate(&p, &c, &der)).await?;
    }
    Ok(if issued.serial.is_empty() {
        parsed.serial
    } else {
        issued.serial
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, old: &str, new: Option<&str>, state: &str) -> Renewal {
        Renewal {
            request_id: id.into(),
            number: format!("N-{id}"),
            old_serial: Some(old.into()),
            new_serial: new.map(Into::into),
            state: state.into(),
        }
    }

    #[test]
    fn choosing_the_renewal() {
        // The only open one.
        let got = choose(vec![r("1", "aa", None, "approved")], None, "AA").unwrap();
        assert_eq!(got.request_id, "1");
        // Another key's renewals do not count.
        assert!(matches!(
            choose(vec![r("1", "bb", None, "approved")], None, "aa"),
            Err(AgentError::NoRenewal)
        ));
        // Two open ones: the holder must choose.
        let two = vec![r("1", "aa", None, "approved"), r("2", "aa", None, "issued")];
        let Err(AgentError::RenewalAmbiguous(numbers)) = choose(two.clone(), None, "aa") else {
            panic!("ambiguous expected")
        };
        assert_eq!(numbers, ["N-1", "N-2"]);
        assert_eq!(
            choose(two.clone(), Some("2"), "aa").unwrap().request_id,
            "2"
        );
        assert_eq!(choose(two, Some("N-1"), "aa").unwrap().request_id, "1");
        // Named, but for another key.
        assert!(matches!(
            choose(vec![r("1", "bb", None, "approved")], Some("1"), "aa"),
            Err(AgentError::RenewalOtherKey(_))
        ));
        // Promoted and confirmed already (the answer was lost): found by its new serial.
        let got = choose(vec![r("1", "aa", Some("cc"), "confirmed")], None, "cc").unwrap();
        assert_eq!(got.request_id, "1");
        // An expired one beside a new approval: the new one, no ambiguity.
        let got = choose(
            vec![
                r("1", "aa", Some("cc"), "expired"),
                r("2", "aa", None, "approved"),
            ],
            None,
            "aa",
        )
        .unwrap();
        assert_eq!(got.request_id, "2");
        // A confirmed renewal of the old certificate is not a renewal to do.
        assert!(matches!(
            choose(vec![r("1", "aa", Some("cc"), "confirmed")], None, "aa"),
            Err(AgentError::NoRenewal)
        ));
    }
}

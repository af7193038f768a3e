//! What the command line does with the server besides the renewal: a certificate login
//! (`ekey key login`), and telling the server an unlock was carried out (`ekey key unlock
//! --server …`; the portal's page posts the agent's proof itself).

use std::sync::Arc;

use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ekey_domain::{Lang, keyproof};
use ekey_token::Token;
use serde::Deserialize;

use crate::client::Server;
use crate::error::{AgentError, Result};
use crate::renew::{ACTIVE, active_certificate, login, sign, status};

/// Logs in with the key (its certificate in `sign`, signed after `pin`): the bearer
/// token of an enterprise session that remembers the key.
pub async fn key_login(
    token: Arc<dyn Token>,
    pin: &str,
    server_url: &str,
    origin: &str,
    lang: Lang,
) -> Result<String> {
    let mut server = Server::new(server_url, lang)?;
    let certificate = active_certificate(&status(&token).await?)?;
    login(&mut server, &token, pin, origin, &certificate).await
}

#[derive(Deserialize)]
struct Summary {
    id: String,
    number: String,
    kind: String,
}

/// After `apply_unlock`: logs in with the key and its new PIN, and completes the unlock
/// request `request` (its number or id) with the key's proof
/// (`keyproof::unlock_done_message`). Returns the request's number.
pub async fn report_unlock(
    token: Arc<dyn Token>,
    new_pin: &str,
    server_url: &str,
    origin: &str,
    request: &str,
    lang: Lang,
) -> Result<String> {
    let mut server = Server::new(server_url, lang)?;
    let certificate = active_certificate(&status(&token).await?)?;
    login(&mut server, &token, new_pin, origin, &certificate).await?;
    let query: String = request
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let found: Vec<Summary> = server
        .call(
            Method::GET,
            &format!("/api/v1/requests?q={query}"),
            None::<&()>,
        )
        .await?;
    let r = found
        .into_iter()
        .find(|r| r.kind == "unlock" && (r.id == request || r.number == request))
        .ok_or_else(|| AgentError::NoUnlock(request.to_string()))?;
    let message = keyproof::unlock_done_message(&r.number, &token.serial());
    let signature = sign(&token, new_pin, ACTIVE, message).await?;
    let _: serde_json::Value = server
        .call(
            Method::POST,
            &format!("/api/v1/requests/{}/unlock-done", r.id),
            Some(&serde_json::json!({
                "certificate": STANDARD.encode(&certificate),
                "signature": STANDARD.encode(signature),
            })),
        )
        .await?;
    Ok(r.number)
}

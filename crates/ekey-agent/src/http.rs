//! The agent's HTTP API (docs/agent.md, "Agent API"): origin check, CORS with Private
//! Network Access, pairing, and the key calls.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ekey_domain::{Lang, keyproof};
use ekey_token::{Token, TokenError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Agent;
use crate::error::AgentError;
use crate::pairing::PairingState;
use crate::renew::{self, ACTIVE, RenewParams};
use crate::tokens;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The header carrying the pairing secret.
pub const PAIRING_HEADER: &str = "x-ekey-pairing";

tokio::task_local! {
    static LANG: Lang;
}

fn current_lang() -> Lang {
    LANG.try_with(|l| *l).unwrap_or_default()
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tries_left: Option<u8>,
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        }
        (
            status,
            Json(ErrorBody {
                code: self.code(),
                message: self.message(current_lang()),
                tries_left: self.tries_left(),
            }),
        )
            .into_response()
    }
}

/// `Json` whose refusals are agent errors (`{code, message}`).
struct JsonBody<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = AgentError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AgentError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(AgentError::TooLarge),
            Err(e) => Err(AgentError::BadRequest(e.body_text())),
        }
    }
}

type ApiResult<T> = Result<T, AgentError>;

/// The router of an agent (no socket: `serve` it, or `oneshot` it in tests).
pub fn router(agent: Agent) -> Router {
    let paired = Router::new()
        .route("/keys", get(keys))
        .route("/keys/{serial}/login-signature", post(login_signature))
        .route("/keys/{serial}/unlock-challenge", post(unlock_challenge))
        .route("/keys/{serial}/unlock", post(unlock))
        .route("/keys/{serial}/pin", post(change_pin))
        .route("/keys/{serial}/renewal", post(renewal))
        .route_layer(middleware::from_fn_with_state(
            agent.clone(),
            require_pairing,
        ));
    Router::new()
        .route("/status", get(status))
        .route("/pairings", post(start_pairing))
        .route("/pairings/{id}", get(poll_pairing))
        .merge(paired)
        .fallback(|| async { AgentError::NotFound })
        .method_not_allowed_fallback(|| async { AgentError::NotFound })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(agent.clone(), guard))
        .layer(middleware::from_fn(localize))
        .with_state(agent)
}

/// Language of the answer: English when `Accept-Language` starts with it.
async fn localize(req: Request, next: Next) -> Response {
    let lang = Lang::from_accept_language(
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    LANG.scope(lang, next.run(req)).await
}

fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}

/// Only the portal's origin (and `GET /status` without any `Origin`, for curl); only
/// loopback host names (a page of another site that rebinds its name to 127.0.0.1 sends
/// its own name). CORS and Private Network Access headers for the origin.
async fn guard(State(agent): State<Agent>, req: Request, next: Next) -> Response {
    if let Some(host) = req.headers().get(header::HOST)
        && !host.to_str().is_ok_and(loopback_host)
    {
        return AgentError::Host.into_response();
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = match &origin {
        None if req.method() == Method::GET && req.uri().path() == "/status" => next.run(req).await,
        None => return AgentError::Origin.into_response(),
        Some(o) if !agent.origin_matches(o) => return AgentError::Origin.into_response(),
        Some(_) if req.method() == Method::OPTIONS => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            let h = resp.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Content-Type, X-Ekey-Pairing"),
            );
            h.insert(
                "access-control-allow-private-network",
                HeaderValue::from_static("true"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            resp
        }
        Some(_) => next.run(req).await,
    };
    let h = resp.headers_mut();
    if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn pairing_secret(headers: &HeaderMap) -> Option<&str> {
    headers.get(PAIRING_HEADER).and_then(|v| v.to_str().ok())
}

async fn require_pairing(State(agent): State<Agent>, req: Request, next: Next) -> Response {
    match pairing_secret(req.headers()) {
        Some(s) if agent.inner.pairings.is_paired(s) => next.run(req).await,
        _ => AgentError::NotPaired.into_response(),
    }
}

#[derive(Serialize)]
struct StatusBody<'a> {
    agent: &'static str,
    version: &'static str,
    origin: &'a str,
    paired: bool,
    /// How many keys are present now.
    keys: usize,
    /// Where the agent looks for keys.
    looking_in: Vec<String>,
    /// While no key is present: what to do, in words (Chinese unless English is asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// `paired`: whether this request carries a valid pairing secret.
/// `keys`: how many keys are present now; `message` says what to do while there is none.
async fn status(State(agent): State<Agent>, headers: HeaderMap) -> Response {
    let sources = agent.inner.sources.clone();
    let keys = tokio::task::spawn_blocking(move || crate::tokens::open_all(&sources).len())
        .await
        .unwrap_or(0);
    let sources = &agent.inner.sources;
    Json(StatusBody {
        agent: "ekey-agent",
        version: env!("CARGO_PKG_VERSION"),
        origin: &agent.inner.origin,
        paired: pairing_secret(&headers).is_some_and(|s| agent.inner.pairings.is_paired(s)),
        keys,
        looking_in: sources
            .iter()
            .map(crate::tokens::TokenSource::describe)
            .collect(),
        message: (keys == 0)
            .then(|| crate::tokens::no_key_message(sources, current_lang() == Lang::Zh)),
    })
    .into_response()
}

async fn start_pairing(State(agent): State<Agent>) -> Response {
    let (id, code) = agent.inner.pairings.start();
    tracing::info!("pairing requested");
    agent.announce_pairing(&code);
    (
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id, "code": code })),
    )
        .into_response()
}

async fn poll_pairing(State(agent): State<Agent>, Path(id): Path<String>) -> ApiResult<Response> {
    match agent.inner.pairings.poll(&id)? {
        PairingState::Pending => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "state": "pending" })),
        )
            .into_response()),
        PairingState::Paired(secret) => {
            tracing::info!("pairing confirmed and handed to the page");
            Ok(Json(serde_json::json!({ "state": "paired", "secret": secret })).into_response())
        }
    }
}

/// Runs blocking token work off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Internal(format!("token task: {e}")))?
}

fn find(agent: &Agent, serial: &str) -> Result<Arc<dyn Token>, AgentError> {
    Ok(tokens::find(&agent.inner.sources, serial)?)
}

/// One key as `GET /keys` lists it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Token serial.
    pub serial: String,
    /// Token label.
    pub label: String,
    /// Locked (6 wrong PINs).
    pub locked: bool,
    /// Wrong PINs still allowed.
    pub pin_tries_left: u8,
    /// The active certificate, standard base64 of the DER.
    pub certificate: Option<String>,
    /// Its serial, lower-case hex.
    pub certificate_serial: Option<String>,
    /// Its subject.
    pub subject: Option<String>,
    /// Its end of validity, RFC 3339.
    pub not_after: Option<String>,
    /// A renewal has started on the key (a `renew-*` container exists).
    pub renewal_in_progress: bool,
}

fn key_info(t: &dyn Token) -> Result<KeyInfo, TokenError> {
    let s = t.status()?;
    let der = s
        .containers
        .iter()
        .find(|c| c.name == ACTIVE)
        .and_then(|c| c.certificate_der.clone());
    let parsed = der.as_deref().and_then(|d| crate::cert::parse(d).ok());
    Ok(KeyInfo {
        serial: s.serial,
        label: s.label,
        locked: s.locked,
        pin_tries_left: s.pin_tries_left,
        certificate: der.map(|d| STANDARD.encode(d)),
        certificate_serial: parsed.as_ref().map(|p| p.serial.clone()),
        subject: parsed.as_ref().map(|p| p.subject.clone()),
        not_after: parsed.map(|p| p.not_after),
        renewal_in_progress: s.containers.iter().any(|c| c.name.starts_with("renew-")),
    })
}

async fn keys(State(agent): State<Agent>) -> ApiResult<Json<Vec<KeyInfo>>> {
    let list = blocking(move || {
        Ok(tokens::open_all(&agent.inner.sources)
            .iter()
            .filter_map(|t| match key_info(t.as_ref()) {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::debug!(serial = %t.serial(), error = %e, "key not readable");
                    None
                }
            })
            .collect())
    })
    .await?;
    Ok(Json(list))
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), AgentError> {
    if value.is_empty() || value.len() > max {
        return Err(AgentError::BadRequest(format!("{field}: 1 to {max} bytes")));
    }
    Ok(())
}

/// A signature and the certificate that verifies it.
#[derive(Serialize, Deserialize, Debug)]
pub struct SignatureBody {
    /// The active certificate, standard base64 of the DER.
    pub certificate: String,
    /// The signature, standard base64 of the DER.
    pub signature: String,
}

fn sign_with_certificate(
    t: &dyn Token,
    pin: &str,
    message: &[u8],
) -> Result<SignatureBody, AgentError> {
    let s = t.status()?;
    let cert = s
        .containers
        .iter()
        .find(|c| c.name == ACTIVE)
        .and_then(|c| c.certificate_der.clone())
        .ok_or(AgentError::NoCertificate)?;
    let signature = t.sign(pin, ACTIVE, message)?;
    Ok(SignatureBody {
        certificate: STANDARD.encode(cert),
        signature: STANDARD.encode(signature),
    })
}

#[derive(Deserialize)]
struct LoginSignatureRequest {
    challenge: String,
    pin: String,
}

async fn login_signature(
    State(agent): State<Agent>,
    Path(serial): Path<String>,
    JsonBody(req): JsonBody<LoginSignatureRequest>,
) -> ApiResult<Json<SignatureBody>> {
    check_len("challenge", &req.challenge, 256)?;
    let body = blocking(move || {
        let t = find(&agent, &serial)?;
        let message = keyproof::login_message(&agent.inner.origin, &req.challenge);
        sign_with_certificate(t.as_ref(), &req.pin, &message)
    })
    .await?;
    Ok(Json(body))
}

async fn unlock_challenge(
    State(agent): State<Agent>,
    Path(serial): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let body = blocking(move || {
        let t = find(&agent, &serial)?;
        let challenge = t.unlock_challenge()?;
        Ok(serde_json::json!({ "serial": t.serial(), "challenge": hex::encode(challenge) }))
    })
    .await?;
    Ok(Json(body))
}

#[derive(Deserialize)]
struct UnlockRequest {
    code: String,
    new_pin: String,
    request_number: String,
}

async fn unlock(
    State(agent): State<Agent>,
    Path(serial): Path<String>,
    JsonBody(req): JsonBody<UnlockRequest>,
) -> ApiResult<Json<SignatureBody>> {
    check_len("code", &req.code, 128)?;
    check_len("request_number", &req.request_number, 64)?;
    let body = blocking(move || {
        let t = find(&agent, &serial)?;
        t.apply_unlock(&req.code, &req.new_pin)?;
        tracing::info!(serial = %t.serial(), "unlock code applied");
        let message = keyproof::unlock_done_message(&req.request_number, &t.serial());
        sign_with_certificate(t.as_ref(), &req.new_pin, &message)
    })
    .await?;
    Ok(Json(body))
}

#[derive(Deserialize)]
struct PinChange {
    pin: String,
    new_pin: String,
}

/// Changes the key's PIN (the initial PIN at first use): the current PIN, then the new one.
/// A wrong current PIN counts against the key's tries, like any other.
async fn change_pin(
    State(agent): State<Agent>,
    Path(serial): Path<String>,
    JsonBody(req): JsonBody<PinChange>,
) -> ApiResult<Json<serde_json::Value>> {
    check_len("pin", &req.pin, 64)?;
    check_len("new_pin", &req.new_pin, 64)?;
    let body = blocking(move || {
        let t = find(&agent, &serial)?;
        t.change_pin(&req.pin, &req.new_pin)?;
        tracing::info!(serial = %t.serial(), "PIN changed");
        Ok(serde_json::json!({ "serial": t.serial(), "changed": true }))
    })
    .await?;
    Ok(Json(body))
}

#[derive(Deserialize)]
struct RenewalRequest {
    pin: String,
    #[serde(default)]
    request_id: Option<String>,
}

async fn renewal(
    State(agent): State<Agent>,
    Path(serial): Path<String>,
    JsonBody(req): JsonBody<RenewalRequest>,
) -> ApiResult<Json<renew::RenewOutcome>> {
    if let Some(id) = &req.request_id {
        check_len("request_id", id, 64)?;
        ekey_token::validate_container_name(&renew::pending_container(id))?;
    }
    let _running = agent
        .inner
        .renewal
        .try_lock()
        .map_err(|_| AgentError::Busy)?;
    let token = {
        let agent = agent.clone();
        blocking(move || find(&agent, &serial)).await?
    };
    let params = RenewParams {
        server: agent.inner.server.clone(),
        origin: agent.inner.origin.clone(),
        request_id: req.request_id,
        lang: current_lang(),
    };
    let outcome = renew::renew(token, &req.pin, &params).await?;
    Ok(Json(outcome))
}

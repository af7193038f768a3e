//! The agent's HTTP client to the eKey server (http for a local demo, https — rustls with
//! ring, the system's trusted roots or, lacking those, the Mozilla roots — for a portal).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use ekey_domain::Lang;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{AgentError, Result};

/// Time allowed for one exchange with the server.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read from the server.
const MAX_ANSWER: usize = 1 << 20;

type Http = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// TLS settings, made once per process (loading the system roots reads files). The HTTP
/// client itself is made per run: its pooled connections belong to the runtime that
/// opened them.
fn tls_config() -> Result<rustls::ClientConfig> {
    use hyper_rustls::ConfigBuilderExt;
    static CONFIG: OnceLock<std::result::Result<rustls::ClientConfig, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?;
            Ok(match builder.clone().with_native_roots() {
                Ok(b) => b.with_no_client_auth(),
                Err(e) => {
                    tracing::warn!(error = %e, "no system CA certificates; using the Mozilla roots");
                    builder.with_webpki_roots().with_no_client_auth()
                }
            })
        })
        .clone()
        .map_err(AgentError::Internal)
}

fn http() -> Result<Http> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config()?)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// One server, one language, optionally one session.
pub(crate) struct Server {
    base: String,
    lang: Lang,
    bearer: Option<String>,
    http: Http,
}

impl Server {
    /// A client for the server at `base` (`http://` or `https://`, no path needed).
    pub(crate) fn new(base: &str, lang: Lang) -> Result<Server> {
        let base = base.trim_end_matches('/').to_string();
        check_base_url(&base)?;
        Ok(Server {
            base,
            lang,
            bearer: None,
            http: http()?,
        })
    }

    /// Sends the session token with every later call.
    pub(crate) fn set_bearer(&mut self, token: String) {
        self.bearer = Some(token);
    }

    /// Sends a request; returns once the server has answered (status and headers).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Response<Incoming>> {
        let body = match body {
            Some(b) => {
                Bytes::from(serde_json::to_vec(b).map_err(|e| AgentError::Internal(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json")
            .header(
                header::ACCEPT_LANGUAGE,
                match self.lang {
                    Lang::Zh => "zh-CN",
                    Lang::En => "en",
                },
            )
            .header(
                header::USER_AGENT,
                concat!("ekey-agent/", env!("CARGO_PKG_VERSION")),
            );
        if !body.is_empty() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.bearer {
            let value = HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| AgentError::ServerResponse("session token not a header".into()))?;
            req = req.header(header::AUTHORIZATION, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| AgentError::Internal(e.to_string()))?;
        match tokio::time::timeout(TIMEOUT, self.http.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(AgentError::ServerUnreachable(format!(
                "{}{path}: {e}",
                self.base
            ))),
            Err(_) => Err(AgentError::ServerUnreachable(format!(
                "{}{path}: no answer within {TIMEOUT:?}",
                self.base
            ))),
        }
    }

    /// Reads an answer: the JSON of a success, or the server's `{code, message}` as
    /// [`AgentError::Server`].
    pub(crate) async fn read<T: DeserializeOwned>(&self, resp: Response<Incoming>) -> Result<T> {
        let status = resp.status();
        let bytes = tokio::time::timeout(
            TIMEOUT,
            Limited::new(resp.into_body(), MAX_ANSWER).collect(),
        )
        .await
        .map_err(|_| AgentError::ServerUnreachable("answer not received in time".into()))?
        .map_err(|e| AgentError::ServerUnreachable(format!("reading the answer: {e}")))?
        .to_bytes();
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| AgentError::ServerResponse(format!("{status}: {e}")));
        }
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            code: String,
            message: String,
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => Err(AgentError::Server {
                status: status.as_u16(),
                code: e.code,
                message: e.message,
            }),
            Err(_) if status == StatusCode::NOT_FOUND => Err(AgentError::ServerResponse(
                "404 without an error body: is --server an eKey server?".into(),
            )),
            Err(_) => Err(AgentError::ServerResponse(format!(
                "{status} without an error body"
            ))),
        }
    }

    /// `send` then `read`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let resp = self.send(method, path, body).await?;
        self.read(resp).await
    }
}

/// An `http://` or `https://` URL with a host and no path, query or fragment.
pub(crate) fn check_base_url(url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| AgentError::Config(format!("{url:?}: not an http:// or https:// URL")))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(AgentError::Config(format!(
            "{url:?}: expected scheme://host[:port] without a path"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_compiled_in_and_urls_are_checked() {
        // ring as provider, roots from the system or the Mozilla list: never a panic for
        // want of a process-wide provider.
        assert!(tls_config().is_ok());
        for ok in ["http://127.0.0.1:8080", "https://ekey.example.gov.cn/"] {
            check_base_url(ok).unwrap();
        }
        for bad in ["ftp://x", "https://", "https://x/api", "https://u@x", "x"] {
            assert_eq!(check_base_url(bad).unwrap_err().code(), "ekey.agent.config");
        }
    }
}

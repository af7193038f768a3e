//! The CA as the server runs it: the authority loaded from its key files, issuance that
//! happens once per order (serial reserved in the database before signing), the CRL
//! regenerated whenever the revocation counter moved or it is half-way to its nextUpdate,
//! and OCSP answers from the database. The CA signing key never enters the database.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use ekey_ca::{
    Authority, CaConfig, CertStatus, IssueRequest, Passphrase, RevocationReason, RevokedEntry,
    Serial,
};
use ekey_store::{CertificateRecord, CertificateReservation, NewAudit, Store, StoreError};
use sha2::Digest;

use crate::error::ApiError;
use crate::state::AppState;

struct CrlCache {
    revocations: i64,
    made_at: DateTime<Utc>,
    der: Arc<Vec<u8>>,
}

/// Signed OCSP responses to requests without a nonce, valid while nothing was revoked.
#[derive(Default)]
struct OcspCache {
    revocations: i64,
    responses: std::collections::HashMap<[u8; 32], CachedResponse>,
}

/// When a response was signed, and the response.
type CachedResponse = (DateTime<Utc>, Arc<Vec<u8>>);

/// How long a cached OCSP response is served (its nextUpdate is an hour).
const OCSP_CACHE_FOR: i64 = 300;
/// Most cached OCSP responses.
const OCSP_CACHE_MAX: usize = 10_000;

/// The CA of one deployment.
pub struct CaService {
    authority: Authority,
    crl: Mutex<Option<CrlCache>>,
    ocsp_cache: Mutex<OcspCache>,
}

impl std::fmt::Debug for CaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaService { .. }")
    }
}

/// Why issuance did not happen.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The CA refused (lint, key type, …).
    #[error(transparent)]
    Ca(#[from] ekey_ca::CaError),
    /// The database refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Store(s) => s.into(),
            IssueError::Ca(c) => c.into(),
        }
    }
}

/// The CA configuration of a deployment: names, validity, the public base URL its
/// certificates point to (CRL, OCSP, caIssuers) and the key algorithm.
pub fn ca_config(base_url: &str, algorithm: &str) -> anyhow::Result<CaConfig> {
    Ok(CaConfig {
        base_url: base_url.to_string(),
        root_name: "eKey 根证书 Root CA".into(),
        issuing_name: "eKey 企业电子钥匙 Issuing CA".into(),
        organization: "eKey".into(),
        algorithm: ekey_ca::KeyAlgorithm::parse(algorithm)
            .map_err(|e| anyhow::anyhow!("ca_algorithm: {}", e.message(ekey_domain::Lang::En)))?,
        ..CaConfig::default()
    })
}

impl CaService {
    /// Loads the CA from `dir`, creating it there first when `create` and it is absent.
    pub fn open(
        dir: &Path,
        passphrase: &str,
        base_url: &str,
        create: bool,
        now: DateTime<Utc>,
        hsm: Option<(&Path, &str)>,
        algorithm: &str,
    ) -> anyhow::Result<CaService> {
        let passphrase =
            Passphrase::new(passphrase.to_string()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let cfg = ca_config(base_url, algorithm)?;
        let exists = dir.join("root.crt").exists();
        let en = |e: ekey_ca::CaError| {
            anyhow::anyhow!("{} ({})", e.message(ekey_domain::Lang::En), e.code())
        };
        let authority = match hsm {
            Some((module, token)) => {
                let hsm = ekey_ca::HsmConfig::from_env(module, token).map_err(en)?;
                if exists {
                    Authority::load_from_hsm(dir, &cfg, now, &hsm)
                } else if create {
                    std::fs::create_dir_all(dir)?;
                    tracing::info!(dir = %dir.display(), token, "creating the root and issuing CA in the HSM");
                    Authority::create_in_hsm(dir, &cfg, now, &hsm)
                } else {
                    anyhow::bail!("no CA in {}: run `ekey ca init` first", dir.display());
                }
            }
            None if exists => Authority::load_at(dir, &passphrase, &cfg, now),
            None if create => {
                std::fs::create_dir_all(dir)?;
                tracing::info!(dir = %dir.display(), "creating the root and issuing CA");
                Authority::create_at(dir, &passphrase, &cfg, now)
            }
            None => anyhow::bail!("no CA in {}: run `ekey ca init` first", dir.display()),
        }
        .map_err(en)
        .with_context(|| format!("opening the CA in {}", dir.display()))?;
        Ok(CaService {
            authority,
            crl: Mutex::new(None),
            ocsp_cache: Mutex::new(OcspCache::default()),
        })
    }

    /// The authority (certificates, issuance).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Issues the one certificate of `order` for `spki`: a second call for the same order
    /// returns the certificate issued the first time.
    #[allow(clippy::too_many_arguments)]
    pub async fn issue_for_order(
        &self,
        store: &dyn Store,
        order: &str,
        spki_der: Vec<u8>,
        enterprise_name: &str,
        credit_code: &str,
        enterprise_id: Option<String>,
        now: DateTime<Utc>,
        audit: NewAudit,
    ) -> Result<CertificateRecord, IssueError> {
        let mut reserved = None;
        for _ in 0..5 {
            let serial = Serial::random()?;
            match store
                .reserve_certificate(CertificateReservation {
                    serial: serial.to_hex(),
                    idempotency_key: order.to_string(),
                    enterprise_id: enterprise_id.clone(),
                    key_id: None,
                    subject: format!("{enterprise_name} {credit_code}"),
                    at: now,
                })
                .await
            {
                Ok(r) => {
                    reserved = Some(r);
                    break;
                }
                Err(StoreError::Duplicate("serial")) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let reserved = reserved.ok_or(StoreError::Duplicate("serial"))?;
        if reserved.der.is_some() {
            return Ok(reserved);
        }
        let issued = self.authority.issue(IssueRequest::new(
            spki_der,
            enterprise_name,
            credit_code,
            Serial::from_hex(&reserved.serial)?,
            now,
        ))?;
        let mut audit = audit;
        audit.object_type = "certificate".into();
        audit.object_id = reserved.serial.clone();
        audit.after = format!(
            "issued {enterprise_name} {credit_code} until {}",
            issued.not_after.to_rfc3339()
        );
        Ok(store
            .complete_certificate(
                &reserved.serial,
                &issued.der,
                issued.not_before,
                issued.not_after,
                audit,
            )
            .await?)
    }

    /// The current CRL (DER), regenerated after any revocation and at half its lifetime.
    pub async fn crl(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<Arc<Vec<u8>>, IssueError> {
        let (_, revocations) = store.ca_state().await?;
        let refresh_after =
            Duration::hours(i64::from(self.authority.config().crl_next_update_hours)) / 2;
        if let Some(c) = self.crl.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && c.revocations == revocations
            && now - c.made_at < refresh_after
        {
            return Ok(c.der.clone());
        }
        let mut entries = Vec::new();
        for (serial, at, reason) in store.revoked().await? {
            entries.push(RevokedEntry {
                serial: Serial::from_hex(&serial)?,
                revoked_at: at,
                reason: RevocationReason::parse(&reason).unwrap_or(RevocationReason::Unspecified),
            });
        }
        let number = store.next_crl_number().await?;
        let der = Arc::new(self.authority.crl(
            &entries,
            u64::try_from(number).unwrap_or(0),
            now,
        )?);
        *self.crl.lock().unwrap_or_else(|e| e.into_inner()) = Some(CrlCache {
            revocations,
            made_at: now,
            der: der.clone(),
        });
        Ok(der)
    }

    /// When this instance made the CRL it serves, if it has one.
    pub fn crl_made_at(&self) -> Option<DateTime<Utc>> {
        self.crl
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.made_at)
    }

    /// Drops the cached CRL (after a revocation by this instance; others see the counter).
    pub fn forget_crl(&self) {
        *self.crl.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.ocsp_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .responses
            .clear();
    }

    /// Answers an OCSP request: from the cache for a nonce-less request asked before, unless
    /// anything was revoked since (the revocation counter moved), else from the database.
    pub async fn ocsp(&self, store: &dyn Store, request_der: &[u8], now: DateTime<Utc>) -> Vec<u8> {
        let Ok(info) = self.authority.ocsp_request_info(request_der) else {
            // Malformed or not ours: the authority answers with the right error status.
            return self
                .authority
                .ocsp_response(request_der, now, &|_| CertStatus::Unknown);
        };
        let revocations = match store.ca_state().await {
            Ok((_, r)) => r,
            Err(e) => {
                tracing::error!(error = %e, "OCSP: reading the CA state");
                return ekey_ca::ocsp_error_response(ekey_ca::OcspErrorStatus::TryLater);
            }
        };
        let key: [u8; 32] = sha2::Sha256::digest(request_der).into();
        if !info.has_nonce {
            let mut cache = self.ocsp_cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.revocations != revocations {
                cache.responses.clear();
                cache.revocations = revocations;
            }
            if let Some((made, resp)) = cache.responses.get(&key)
                && (now - *made).num_seconds() < OCSP_CACHE_FOR
            {
                return resp.to_vec();
            }
        }
        let response = self
            .lookup_and_sign(store, request_der, info.serials, now)
            .await;
        if !info.has_nonce {
            let mut cache = self.ocsp_cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.revocations == revocations {
                if cache.responses.len() >= OCSP_CACHE_MAX {
                    cache.responses.clear();
                }
                cache
                    .responses
                    .insert(key, (now, Arc::new(response.clone())));
            }
        }
        response
    }

    async fn lookup_and_sign(
        &self,
        store: &dyn Store,
        request_der: &[u8],
        serials: Vec<Serial>,
        now: DateTime<Utc>,
    ) -> Vec<u8> {
        let mut known = Vec::new();
        for s in serials {
            let status = match store.certificate(&s.to_hex()).await {
                Ok(Some(c)) if c.der.is_some() => match (c.revoked_at, c.revocation_reason) {
                    (Some(at), reason) => CertStatus::Revoked {
                        at,
                        reason: reason
                            .as_deref()
                            .and_then(|r| RevocationReason::parse(r).ok())
                            .unwrap_or(RevocationReason::Unspecified),
                    },
                    (None, _) => CertStatus::Good,
                },
                Ok(_) => CertStatus::Unknown,
                Err(e) => {
                    tracing::error!(error = %e, "OCSP lookup");
                    return ekey_ca::ocsp_error_response(ekey_ca::OcspErrorStatus::TryLater);
                }
            };
            known.push((s, status));
        }
        self.authority.ocsp_response(request_der, now, &|serial| {
            known
                .iter()
                .find(|(s, _)| s == serial)
                .map(|(_, st)| *st)
                .unwrap_or(CertStatus::Unknown)
        })
    }
}

/// Keeps the CRL fresh without waiting for a request: regenerates it when anything was
/// revoked (by any instance) and at half its lifetime. Checks every 30 seconds.
pub fn spawn_crl_refresher(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = state.ca.crl(state.store.as_ref(), state.clock.now()).await {
                tracing::warn!(error = %e, "CRL refresh");
            }
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }
    })
}

fn der(content_type: &'static str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        bytes,
    )
        .into_response()
}

/// `GET /ca/root.crt` (DER).
pub async fn root_crt(State(state): State<AppState>) -> Response {
    der(
        "application/pkix-cert",
        state.ca.authority().root_der().to_vec(),
    )
}

/// `GET /ca/issuing.crt` (DER).
pub async fn issuing_crt(State(state): State<AppState>) -> Response {
    der(
        "application/pkix-cert",
        state.ca.authority().issuing_der().to_vec(),
    )
}

/// `GET /crl/issuing.crl` (DER).
pub async fn issuing_crl(State(state): State<AppState>) -> Result<Response, ApiError> {
    let crl = state
        .ca
        .crl(state.store.as_ref(), state.clock.now())
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pkix-crl"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        crl.to_vec(),
    )
        .into_response())
}

fn ocsp_reply(bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/ocsp-response"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response()
}

/// `POST /ocsp` (RFC 6960).
pub async fn ocsp_post(State(state): State<AppState>, body: Bytes) -> Response {
    ocsp_reply(
        state
            .ca
            .ocsp(state.store.as_ref(), &body, state.clock.now())
            .await,
    )
}

/// `GET /ocsp/{base64-request}` (RFC 6960 appendix A: standard base64, URL-encoded).
pub async fn ocsp_get(
    State(state): State<AppState>,
    UrlPath(encoded): UrlPath<String>,
) -> Response {
    // axum has already percent-decoded the path segment.
    let request = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap_or_default();
    ocsp_reply(
        state
            .ca
            .ocsp(state.store.as_ref(), &request, state.clock.now())
            .await,
    )
}

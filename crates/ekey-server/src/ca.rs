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
use ekey_store::{
    CertificateRecord, CertificateReservation, NewAudit, PublishedCrl, Store, StoreError,
};
use sha2::Digest;

use crate::error::ApiError;
use crate::state::AppState;

/// The published CRL this instance holds in memory.
struct CrlCache {
    number: i64,
    made_at: DateTime<Utc>,
    der: Arc<Vec<u8>>,
}

/// What `/ocsp` keeps in memory, all of it valid only while the revocation counter stays
/// where it was when read: signed responses to requests without a nonce, and the status of
/// the certificates asked about (issued ones only; a serial the database does not know is
/// looked up again next time, as it may be issued meanwhile).
#[derive(Default)]
struct OcspCache {
    revocations: i64,
    /// When this instance last read the counter (it re-reads at most every
    /// [`COUNTER_READ_EVERY`]; a revocation through this instance clears the cache at once).
    counter_read: Option<std::time::Instant>,
    responses: std::collections::HashMap<[u8; 32], CachedResponse>,
    statuses: std::collections::HashMap<Serial, CertStatus>,
}

/// When a response was signed, and the response.
type CachedResponse = (DateTime<Utc>, Arc<Vec<u8>>);

/// How long a cached OCSP response is served (its nextUpdate is an hour).
const OCSP_CACHE_FOR: i64 = 300;
/// Most cached OCSP responses, and most cached certificate statuses.
const OCSP_CACHE_MAX: usize = 10_000;
const STATUS_CACHE_MAX: usize = 200_000;
/// How stale this instance's view of the revocation counter may be: a revocation made
/// through another instance (or `ekey ca revoke`) shows in this one's OCSP answers within
/// this time, and in its CRL at the next request.
const COUNTER_READ_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The CA of one deployment.
pub struct CaService {
    authority: Authority,
    /// The CA directory (certificates, the root's ARL).
    dir: std::path::PathBuf,
    crl: Mutex<Option<CrlCache>>,
    ocsp_cache: Mutex<OcspCache>,
    crl_failure: Mutex<Option<CrlFailure>>,
}

/// The last CRL regeneration that failed (cleared by the next one that works): the last
/// good CRL is served meanwhile, and the provider's CA status shows this.
#[derive(Clone, Debug)]
pub struct CrlFailure {
    /// When it failed (the server's clock).
    pub at: DateTime<Utc>,
    /// When it failed, for the retry back-off.
    tried: std::time::Instant,
    /// Stable code of the error (`ekey.ca.*`, `ekey.store.*`).
    pub code: &'static str,
    /// What failed, Chinese.
    pub zh: String,
    /// What failed, English.
    pub en: String,
}

/// While a regeneration keeps failing, it is tried again at most this often (every request
/// for the CRL would otherwise take a CRL number and sign in vain).
const CRL_RETRY_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(5);

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
        // The root's ARL: signed here only when the root key is at hand (in the CA directory,
        // or on the HSM); an offline root's ARL is signed ahead with `ekey ca root-crl`.
        let arl = match hsm {
            None => ekey_ca::ensure_root_crl(dir, &passphrase, now),
            Some((module, token)) => ekey_ca::HsmConfig::from_env(module, token)
                .and_then(|hsm| Authority::ensure_root_crl_in_hsm(dir, &hsm, now)),
        };
        match arl {
            Ok(Some(arl)) => tracing::info!(
                number = arl.number,
                next_update = %arl.next_update,
                "signed a new root CRL (ARL)"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(
                error = %e.message(ekey_domain::Lang::En),
                code = e.code(),
                "could not sign the root CRL (ARL)"
            ),
        }
        Ok(CaService {
            dir: dir.to_path_buf(),
            authority,
            crl: Mutex::new(None),
            ocsp_cache: Mutex::new(OcspCache::default()),
            crl_failure: Mutex::new(None),
        })
    }

    /// The authority (certificates, issuance).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The root's ARL as published in the CA directory (DER), if there is one.
    pub fn root_crl_der(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(ekey_ca::files::ROOT_CRL)).ok()
    }

    /// The published ARL, read and checked against the root; `Err` says what is wrong.
    pub fn root_crl(&self) -> Option<Result<ekey_ca::RootCrl, ekey_ca::CaError>> {
        self.root_crl_der()
            .map(|der| ekey_ca::read_root_crl(self.authority.root_der(), &der))
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
        // Key hygiene, before anything is reserved or signed: one key, one enterprise, and
        // never a key once revoked as compromised. Every door (production, renewal, the API,
        // `ekey ca issue`) issues through here.
        match store
            .clear_key_for_issuance(&ekey_store::spki_sha256(&spki_der), credit_code, now)
            .await?
        {
            ekey_store::KeyClearance::Clear => {}
            ekey_store::KeyClearance::OtherEnterprise => {
                return Err(ekey_ca::CaError::KeyOtherEnterprise.into());
            }
            ekey_store::KeyClearance::Compromised => {
                return Err(ekey_ca::CaError::KeyCompromised.into());
            }
        }
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
        // Crash point: the serial reserved for the order, nothing signed.
        ekey_token::fault::point("server.issue.after_reserve");
        let issued = self.authority.issue(IssueRequest::new(
            spki_der,
            enterprise_name,
            credit_code,
            Serial::from_hex(&reserved.serial)?,
            now,
        ))?;
        // Crash point: signed, not stored (the next try signs again under the same serial).
        ekey_token::fault::point("server.issue.after_sign");
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

    /// The CRL to serve (DER): the current one ([`CaService::fresh_crl`]) or, when making
    /// it fails, the last good one — this instance's, else the newest any instance
    /// published — so that relying parties never lose the CRL to a failure here. The
    /// failure is logged and kept for the CA status ([`CaService::crl_failure`]). Fails
    /// only when no CRL was ever made.
    pub async fn crl(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<Arc<Vec<u8>>, IssueError> {
        let backing_off = self
            .crl_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|f| f.tried.elapsed() < CRL_RETRY_AFTER_FAILURE);
        let error = if backing_off {
            None
        } else {
            match self.fresh_crl(store, now).await {
                Ok(der) => {
                    *self.crl_failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    return Ok(der);
                }
                Err(e) => Some(e),
            }
        };
        if let Some(e) = &error {
            let (code, zh, en) = match e {
                IssueError::Ca(c) => (
                    c.code(),
                    c.message(ekey_domain::Lang::Zh),
                    c.message(ekey_domain::Lang::En),
                ),
                IssueError::Store(s) => (
                    "ekey.store.backend",
                    format!("数据库错误：{s}"),
                    format!("database error: {s}"),
                ),
            };
            tracing::error!(error = %e, code, "CRL regeneration failed; serving the last good CRL");
            *self.crl_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(CrlFailure {
                at: now,
                tried: std::time::Instant::now(),
                code,
                zh,
                en,
            });
        }
        let cached = self
            .crl
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.der.clone());
        if let Some(der) = cached {
            return Ok(der);
        }
        if let (_, Some(newest)) = store.crl_state().await?
            && let Some(der) = store.published_crl(newest.number).await?
        {
            return Ok(self.keep_crl(newest, der));
        }
        match error {
            Some(e) => Err(e),
            // Backing off with nothing to serve: try once more.
            None => self.fresh_crl(store, now).await,
        }
    }

    /// The last CRL regeneration that failed, unless one worked since.
    pub fn crl_failure(&self) -> Option<CrlFailure> {
        self.crl_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current CRL (DER), shared by every instance: the newest published CRL when it
    /// covers the current revocation counter and is less than half its lifetime old, else a
    /// new one (the next CRL number, signed here and published for the others).
    async fn fresh_crl(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<Arc<Vec<u8>>, IssueError> {
        let refresh_after =
            Duration::hours(i64::from(self.authority.config().crl_next_update_hours)) / 2;
        let (revocations, published) = store.crl_state().await?;
        if let Some(p) = published
            && p.revocations == revocations
            && now - p.made_at < refresh_after
        {
            if let Some(der) = self.cached_crl(p.number) {
                return Ok(der);
            }
            if let Some(der) = store.published_crl(p.number).await? {
                return Ok(self.keep_crl(p, der));
            }
        }
        let mut entries = Vec::new();
        for (serial, at, reason) in store.revoked().await? {
            entries.push(RevokedEntry {
                serial: Serial::from_hex(&serial)?,
                revoked_at: at,
                reason: RevocationReason::from_record(&reason),
            });
        }
        let number = store.next_crl_number().await?;
        // Crash point: a CRL number taken, nothing signed (the number stays unused).
        ekey_token::fault::point("server.crl.after_number");
        let der = self
            .authority
            .crl(&entries, u64::try_from(number).unwrap_or(0), now)?;
        // Crash point: the CRL signed, not published.
        ekey_token::fault::point("server.crl.after_sign");
        let made = PublishedCrl {
            number,
            revocations,
            made_at: now,
        };
        store.publish_crl(made, &der).await?;
        // Crash point: the CRL published, not served yet.
        ekey_token::fault::point("server.crl.after_publish");
        // Another instance may have published a newer one meanwhile: serve the newest, so
        // that a client never sees the CRL number go back from one request to the next.
        if let (_, Some(newest)) = store.crl_state().await?
            && newest.number > number
            && let Some(der) = store.published_crl(newest.number).await?
        {
            return Ok(self.keep_crl(newest, der));
        }
        Ok(self.keep_crl(made, der))
    }

    fn cached_crl(&self, number: i64) -> Option<Arc<Vec<u8>>> {
        let cache = self.crl.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .as_ref()
            .filter(|c| c.number == number)
            .map(|c| c.der.clone())
    }

    fn keep_crl(&self, crl: PublishedCrl, der: Vec<u8>) -> Arc<Vec<u8>> {
        let der = Arc::new(der);
        *self.crl.lock().unwrap_or_else(|e| e.into_inner()) = Some(CrlCache {
            number: crl.number,
            made_at: crl.made_at,
            der: der.clone(),
        });
        der
    }

    /// When the CRL this instance serves was made, if it has one.
    pub fn crl_made_at(&self) -> Option<DateTime<Utc>> {
        self.crl
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.made_at)
    }

    /// Drops what this instance keeps about revocations (after a revocation through it;
    /// others see the counter move).
    pub fn forget_crl(&self) {
        *self.crl.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // A new revocation is worth a new try at once, even right after a failure.
        if let Some(f) = self
            .crl_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            && let Some(earlier) = f.tried.checked_sub(CRL_RETRY_AFTER_FAILURE)
        {
            f.tried = earlier;
        }
        let mut cache = self.ocsp_cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.responses.clear();
        cache.statuses.clear();
        cache.counter_read = None;
    }

    /// The revocation counter, read from the database at most every
    /// [`COUNTER_READ_EVERY`]; when it moved, every cached answer is dropped.
    async fn revocation_counter(&self, store: &dyn Store) -> Result<i64, StoreError> {
        {
            let cache = self.ocsp_cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = cache.counter_read
                && at.elapsed() < COUNTER_READ_EVERY
            {
                return Ok(cache.revocations);
            }
        }
        let (_, revocations) = store.ca_state().await?;
        let mut cache = self.ocsp_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.revocations != revocations {
            cache.responses.clear();
            cache.statuses.clear();
            cache.revocations = revocations;
        }
        cache.counter_read = Some(std::time::Instant::now());
        Ok(revocations)
    }

    /// Answers an OCSP request: from the cache for a nonce-less request asked before, unless
    /// anything was revoked since (the revocation counter moved), else signed afresh with
    /// the statuses from memory or the database.
    pub async fn ocsp(&self, store: &dyn Store, request_der: &[u8], now: DateTime<Utc>) -> Vec<u8> {
        let Ok(info) = self.authority.ocsp_request_info(request_der) else {
            // Malformed or not ours: the authority answers with the right error status.
            return self
                .authority
                .ocsp_response(request_der, now, &|_| CertStatus::Unknown);
        };
        let revocations = match self.revocation_counter(store).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "OCSP: reading the CA state");
                return ekey_ca::ocsp_error_response(ekey_ca::OcspErrorStatus::TryLater);
            }
        };
        let key: [u8; 32] = sha2::Sha256::digest(request_der).into();
        if !info.has_nonce {
            let cache = self.ocsp_cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.revocations == revocations
                && let Some((made, resp)) = cache.responses.get(&key)
                && (now - *made).num_seconds() < OCSP_CACHE_FOR
            {
                return resp.to_vec();
            }
        }
        let response = self
            .lookup_and_sign(store, request_der, info.serials, revocations, now)
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
        revocations: i64,
        now: DateTime<Utc>,
    ) -> Vec<u8> {
        let mut known = Vec::new();
        for s in serials {
            let cached = {
                let cache = self.ocsp_cache.lock().unwrap_or_else(|e| e.into_inner());
                (cache.revocations == revocations)
                    .then(|| cache.statuses.get(&s).copied())
                    .flatten()
            };
            if let Some(status) = cached {
                known.push((s, status));
                continue;
            }
            let status = match store.certificate(&s.to_hex()).await {
                Ok(Some(c)) if c.der.is_some() => match (c.revoked_at, c.revocation_reason) {
                    (Some(at), reason) => CertStatus::Revoked {
                        at,
                        reason: reason
                            .as_deref()
                            .map(RevocationReason::from_record)
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
            if status != CertStatus::Unknown {
                let mut cache = self.ocsp_cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.revocations == revocations {
                    if cache.statuses.len() >= STATUS_CACHE_MAX {
                        cache.statuses.clear();
                    }
                    cache.statuses.insert(s.clone(), status);
                }
            }
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

/// `GET /crl/issuing.crl` (DER). Never a 4xx: a failed regeneration serves the last good
/// CRL; only when none was ever made (or the database is down) it is 503 with Retry-After.
pub async fn issuing_crl(State(state): State<AppState>) -> Result<Response, ApiError> {
    let crl = match state.ca.crl(state.store.as_ref(), state.clock.now()).await {
        Ok(crl) => crl,
        Err(e) => {
            tracing::error!(error = %e, "no CRL to serve");
            let mut answer = ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "ekey.ca.crl_unavailable",
                "CRL 暂时无法提供，请稍后再试",
                "The CRL is not available right now; try again shortly",
            )
            .into_response();
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
            return Ok(answer);
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/pkix-crl"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        crl.to_vec(),
    )
        .into_response())
}

/// `GET /crl/root.crl` (DER): the root's ARL, as signed ahead of time (`ekey ca init`,
/// `ekey ca root-crl`) and placed in the CA directory; a new file is served at once.
pub async fn root_crl(State(state): State<AppState>) -> Response {
    match state.ca.root_crl_der() {
        Some(der) => (
            [
                (header::CONTENT_TYPE, "application/pkix-crl"),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            der,
        )
            .into_response(),
        None => ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "ekey.ca.root_crl_missing",
            "根 CA 的 CRL 尚未发布（运营方须用根密钥执行 ekey ca root-crl）",
            "The root CA's CRL is not published yet (the operator signs it with `ekey ca root-crl`)",
        )
        .into_response(),
    }
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

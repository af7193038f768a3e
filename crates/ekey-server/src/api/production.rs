//! Key production by the provider: a token is personalised for an approved request — key
//! pair generated on the token, CSR signed by the token, certificate issued once for the
//! order, written back to the token, login name bound. For a replacement (补办) the original
//! key's certificate is revoked first. Every step can be repeated after a crash: the token
//! is found again by its serial (derived from the request), the certificate by its order.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ekey_domain::key::KeyState;
use ekey_domain::request::{Kind, Role, Status};
use ekey_store::{
    Batch, KeyChange, KeyRecord, NewAudit, NewKey, RequestRecord, Revocation, StoreError,
};
use ekey_token::{CsrSubject, Pkcs11Token, SoftToken, Token};
use sha2::{Digest, Sha256};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

use super::requests::{RequestOut, detail_by_id};

/// The container holding the signing key and certificate on every eKey token.
pub const SIGN_CONTAINER: &str = "sign";

/// The name a request's token is made under — a software token's serial, a PKCS#11 token's
/// label (the device keeps its own serial): stable, so a retry after a crash finds the same
/// token.
pub fn token_serial_for(request_id: &str) -> String {
    let digest = Sha256::digest(request_id.as_bytes());
    format!("SK{}", hex::encode_upper(&digest[..6]))
}

/// Where the software token of a serial lives.
pub fn token_path(state: &AppState, serial: &str) -> PathBuf {
    state
        .config
        .data_dir
        .join("tokens")
        .join(format!("{serial}.token"))
}

fn audit(
    state: &AppState,
    auth: &Auth,
    action: &str,
    object_type: &str,
    id: &str,
    after: &str,
) -> NewAudit {
    auth.audit(state.clock.now(), action, object_type, id, "", after)
}

/// 补办: the original key(s) under the login name are revoked — keyCompromise when lost,
/// superseded when damaged — and marked lost / damaged, before anything new is issued.
async fn retire_original(state: &AppState, auth: &Auth, r: &RequestRecord) -> ApiResult<()> {
    let Some(login_name) = &r.login_name else {
        return Ok(());
    };
    let lost = r.form.key_lost;
    for k in state.store.keys_by_login_name(login_name).await? {
        if k.enterprise_id != r.enterprise_id {
            continue;
        }
        // The brand-new key of another request still in progress is not the original.
        let made_by_open_request = match k.request_id.as_deref() {
            Some(rid) if rid != r.id => state
                .store
                .request(rid)
                .await?
                .is_some_and(|other| !other.status.is_terminal()),
            _ => false,
        };
        if !ekey_domain::keycap::is_original_to_retire(
            k.state,
            k.request_id.as_deref() == Some(r.id.as_str()),
            made_by_open_request,
        ) {
            continue;
        }
        let (event, reason) = ekey_domain::keycap::retirement(lost);
        let to = k.state.apply(event).unwrap_or(if lost {
            KeyState::Lost
        } else {
            KeyState::Damaged
        });
        let mut batch = Batch {
            key_changes: vec![KeyChange {
                key_id: k.id.clone(),
                expected_version: k.version,
                to,
                shipment_id: None,
                certificate_serial: None,
            }],
            audits: vec![audit(
                state,
                auth,
                "key.retire_for_replacement",
                "key",
                &k.id,
                to.as_str(),
            )],
            ..Batch::default()
        };
        if let Some(serial) = &k.certificate_serial
            && state
                .store
                .certificate(serial)
                .await?
                .is_some_and(|c| c.revoked_at.is_none())
        {
            batch.revocations.push(Revocation {
                serial: serial.clone(),
                reason: reason.into(),
                at: state.clock.now(),
            });
            batch.audits.push(audit(
                state,
                auth,
                "ca.revoke",
                "certificate",
                serial,
                reason,
            ));
        }
        state.store.apply_batch(batch).await?;
        state.ca.forget_crl();
    }
    Ok(())
}

/// Opens or personalises the request's token — a software token file whose serial is
/// `serial`, or a PKCS#11 token labelled `serial` when a module is configured — and returns
/// it with the public key of its signing container (generated on the token on first use).
/// The key's identity from then on is the token's own serial ([`Token::serial`]: a PKCS#11
/// device has its own), which the key record, the initial PIN and the unlock codes use.
fn personalise_token(
    state: &AppState,
    serial: &str,
    label: &str,
) -> Result<(Box<dyn Token>, Vec<u8>), ApiError> {
    let token: Box<dyn Token> = match &state.config.token_pkcs11_module {
        Some(module) => match Pkcs11Token::open(module, serial) {
            Ok(t) => Box::new(t),
            Err(_) => Box::new(Pkcs11Token::init_with_pin(
                module,
                serial,
                &state.config.token_transport_so_pin,
                |device_serial| state.secrets.initial_pin(device_serial),
                &state.secrets.provider_master,
            )?),
        },
        None => {
            let path = token_path(state, serial);
            if path.exists() {
                Box::new(SoftToken::open(&path)?)
            } else {
                std::fs::create_dir_all(path.parent().expect("tokens dir"))
                    .map_err(ApiError::internal)?;
                Box::new(SoftToken::create(
                    &path,
                    serial,
                    label,
                    &state.secrets.initial_pin(serial),
                    &state.secrets.provider_master,
                )?)
            }
        }
    };
    let pin = state.secrets.initial_pin(&token.serial());
    let existing = token
        .status()?
        .containers
        .into_iter()
        .find(|c| c.name == SIGN_CONTAINER && c.has_key)
        .and_then(|c| c.public_key_spki);
    let spki = match existing {
        Some(spki) => spki,
        None => token.generate_key(&pin, SIGN_CONTAINER)?,
    };
    Ok((token, spki))
}

/// Personalise the key of an approved request (provider): token, key pair, certificate,
/// login name. Repeating it returns the key made the first time.
#[utoipa::path(post, path = "/api/v1/requests/{id}/produce", tag = "production", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = RequestOut), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn produce(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<RequestOut>> {
    auth.require(&[Role::Provider])?;
    let r = super::requests::visible(&state, &auth, &id).await?;
    if state.store.key_by_request(&r.id).await?.is_some() {
        return detail_by_id(&state, &auth, &id).await.map(Json);
    }
    if r.status != Status::InProduction {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ekey.production.not_approved",
            format!(
                "申请当前状态为“{}”，复核通过后才能制作钥匙",
                r.status.label_zh()
            ),
            format!(
                "The request is \"{}\"; keys are made after 复核 approval",
                r.status.label_en()
            ),
        ));
    }
    let mut enterprise = state
        .store
        .enterprise(&r.enterprise_id)
        .await?
        .ok_or_else(|| ApiError::not_found("ekey.enterprise.not_found"))?;
    // 重新申领（信息变更）: the new certificate (subject O, CN) and e-seal carry the data of
    // the new licence, checked at 验核; the enterprise record takes it on completion.
    if let Some(change) = &r.form.enterprise_change {
        enterprise.name = change.after.name.clone();
    }
    if r.kind == Kind::Replacement {
        retire_original(&state, &auth, &r).await?;
    }
    let login_name = r.login_name.clone().unwrap_or_default();
    let name = token_serial_for(&r.id);
    let label: String = enterprise.name.chars().take(30).collect();

    // Token work is slow (memory-hard KDF) and touches files: off the async threads.
    let (spki, csr_der, token) = {
        let state = state.clone();
        let enterprise_name = enterprise.name.clone();
        let credit_code = enterprise.credit_code.clone();
        tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let (token, spki) = personalise_token(&state, &name, &label)?;
            let pin = state.secrets.initial_pin(&token.serial());
            let csr = ekey_token::csr_with_subject(
                token.as_ref(),
                &pin,
                SIGN_CONTAINER,
                &CsrSubject {
                    country: Some("CN".into()),
                    organization: Some(enterprise_name.clone()),
                    common_name: enterprise_name,
                    serial_number: Some(credit_code),
                },
            )?;
            Ok((spki, csr, Arc::<dyn Token>::from(token)))
        })
        .await
        .map_err(ApiError::internal)??
    };
    // The token's own serial: what the key shows, the agent lists and the portal prints.
    let serial = token.serial();
    // The CA takes the key from a CSR whose signature it checked: proof the token holds it.
    let csr = ekey_ca::parse_csr(&csr_der)?;
    if csr.spki_der != spki {
        return Err(ApiError::internal(
            "token CSR key differs from the generated key",
        ));
    }
    let cert = state
        .ca
        .issue_for_order(
            state.store.as_ref(),
            &format!("production:{}", r.id),
            csr.spki_der,
            &enterprise.name,
            &enterprise.credit_code,
            Some(enterprise.id.clone()),
            state.clock.now(),
            audit(&state, &auth, "ca.issue", "certificate", "", ""),
        )
        .await?;
    // Crash point: the certificate stored, not yet on the token, no key recorded.
    ekey_token::fault::point("server.produce.after_certificate");
    let der = cert
        .der
        .clone()
        .ok_or_else(|| ApiError::internal("certificate not signed"))?;
    {
        let token = token.clone();
        let pin = state.secrets.initial_pin(&serial);
        tokio::task::spawn_blocking(move || {
            let has_it = token
                .status()
                .map(|s| {
                    s.containers.iter().any(|c| {
                        c.name == SIGN_CONTAINER && c.certificate_der.as_deref() == Some(&der[..])
                    })
                })
                .unwrap_or(false);
            if has_it {
                Ok(())
            } else {
                token.put_certificate(&pin, SIGN_CONTAINER, &der)
            }
        })
        .await
        .map_err(ApiError::internal)??;
    }
    // Crash point: the certificate on the token, the key not recorded yet.
    ekey_token::fault::point("server.produce.after_token");
    let key_id = uuid::Uuid::now_v7().to_string();
    let key: KeyRecord = match state
        .store
        .create_key(
            NewKey {
                id: key_id.clone(),
                enterprise_id: enterprise.id.clone(),
                request_id: r.id.clone(),
                login_name: login_name.clone(),
                token_serial: serial.clone(),
                token_kind: if state.config.token_pkcs11_module.is_some() {
                    "pkcs11"
                } else {
                    "soft"
                }
                .into(),
                certificate_serial: cert.serial.clone(),
                eseal_id: format!(
                    "ES{}",
                    &cert.serial.to_uppercase()[..16.min(cert.serial.len())]
                ),
                eseal_name: format!("{}电子签章", enterprise.name),
                at: state.clock.now(),
            },
            audit(
                &state,
                &auth,
                "key.personalise",
                "key",
                &key_id,
                &format!("{serial} {login_name} {}", cert.serial),
            ),
        )
        .await
    {
        Ok(k) => k,
        Err(StoreError::Duplicate(_)) => state
            .store
            .key_by_request(&r.id)
            .await?
            .ok_or_else(|| ApiError::internal("key vanished"))?,
        Err(e) => return Err(e.into()),
    };
    // Crash point: the key recorded, no answer sent yet.
    ekey_token::fault::point("server.produce.after_key");
    tracing::info!(request = %r.number, token = %serial, certificate = %cert.serial, key = %key.id, "key personalised");
    detail_by_id(&state, &auth, &id).await.map(Json)
}

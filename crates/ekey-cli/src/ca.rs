//! `ekey ca …`: the operator's CA commands. Each opens the instance (database and CA key
//! files) it names, acts through the same code as the server, and is audited.

use std::process::ExitCode;

use anyhow::Context;
use ekey_ca::{RevocationReason, Serial};
use ekey_domain::ident::CreditCode;
use ekey_server::Config;
use ekey_store::{NewAudit, Revocation, StoreError};
use sha2::{Digest, Sha256};

use crate::{CaCommand, Target};

fn operator_audit(action: &str, after: &str) -> NewAudit {
    NewAudit {
        at: chrono::Utc::now(),
        actor_id: std::env::var("USER").unwrap_or_else(|_| "operator".into()),
        actor_role: "operator".into(),
        address: "cli".into(),
        action: action.into(),
        object_type: "certificate".into(),
        after: after.into(),
        ..Default::default()
    }
}

/// Runs a CA command against the instance `config_of` names.
pub async fn run(
    cmd: CaCommand,
    config_of: fn(&Target) -> anyhow::Result<Config>,
) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCommand::Init(target) => {
            let state = ekey_server::build_default(config_of(&target)?).await?;
            let a = state.ca.authority();
            for (name, der) in [
                ("root", a.root_der()),
                ("issuing", a.issuing_der()),
                ("ocsp", a.ocsp_der()),
            ] {
                println!(
                    "{name:<8} SHA-256 {}",
                    hex::encode_upper(Sha256::digest(der))
                );
            }
            println!("CA files in {}", state.config.data_dir.join("ca").display());
        }
        CaCommand::Issue {
            csr,
            credit_code,
            name,
            target,
        } => {
            let code = CreditCode::parse(&credit_code).map_err(|e| {
                anyhow::anyhow!("{} ({})", e.message(ekey_domain::Lang::Zh), e.code())
            })?;
            let name = name.trim().to_string();
            anyhow::ensure!(!name.is_empty(), "--name must not be empty");
            let bytes =
                std::fs::read(&csr).with_context(|| format!("reading {}", csr.display()))?;
            let parsed = ekey_ca::parse_csr(&bytes).map_err(|e| {
                anyhow::anyhow!("{} ({})", e.message(ekey_domain::Lang::Zh), e.code())
            })?;
            parsed.check_subject(&name, code.as_str()).map_err(|e| {
                anyhow::anyhow!("{} ({})", e.message(ekey_domain::Lang::Zh), e.code())
            })?;
            let state = ekey_server::build_default(config_of(&target)?).await?;
            // The order is the CSR with its subject: the same command twice gives the same
            // certificate, not two.
            let order = format!(
                "cli:{}",
                hex::encode(Sha256::digest(
                    [bytes.as_slice(), code.as_str().as_bytes(), name.as_bytes()].concat()
                ))
            );
            let cert = state
                .ca
                .issue_for_order(
                    state.store.as_ref(),
                    &order,
                    parsed.spki_der,
                    &name,
                    code.as_str(),
                    None,
                    state.clock.now(),
                    operator_audit("ca.issue_cli", ""),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let der = cert.der.context("certificate not signed")?;
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            println!("-----BEGIN CERTIFICATE-----");
            for chunk in b64.as_bytes().chunks(64) {
                println!("{}", String::from_utf8_lossy(chunk));
            }
            println!("-----END CERTIFICATE-----");
            eprintln!("serial {}", cert.serial);
        }
        CaCommand::Revoke {
            serial,
            reason,
            target,
        } => {
            let serial = Serial::from_hex(&serial).map_err(|e| {
                anyhow::anyhow!("{} ({})", e.message(ekey_domain::Lang::En), e.code())
            })?;
            let reason = RevocationReason::parse(&reason).map_err(|e| {
                anyhow::anyhow!("{} ({})", e.message(ekey_domain::Lang::En), e.code())
            })?;
            let state = ekey_server::build_default(config_of(&target)?).await?;
            let hex = serial.to_hex();
            let mut audit = operator_audit("ca.revoke", reason.as_str());
            audit.object_id = hex.clone();
            match state
                .store
                .revoke(
                    Revocation {
                        serial: hex.clone(),
                        reason: reason.as_str().into(),
                        at: state.clock.now(),
                    },
                    audit,
                )
                .await
            {
                Ok(_) => println!("revoked {hex} ({})", reason.as_str()),
                Err(StoreError::NotFound) => {
                    anyhow::bail!("no certificate with serial {hex} was issued by this CA")
                }
                Err(StoreError::Duplicate(_)) => {
                    anyhow::bail!("certificate {hex} is already revoked")
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

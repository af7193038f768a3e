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
        CaCommand::Import {
            root,
            issuing,
            issuing_key,
            target,
        } => {
            let config = config_of(&target)?;
            let dir = config.data_dir.join("ca");
            anyhow::ensure!(
                !dir.join("root.crt").exists(),
                "a CA already exists in {}; import only into a new deployment",
                dir.display()
            );
            let secrets =
                ekey_server::secrets::Secrets::load(&config.data_dir.join("secrets"), true)?;
            let passphrase = ekey_ca::Passphrase::new(secrets.ca_passphrase.to_string())
                .map_err(|e| anyhow::anyhow!("{}", e.message(ekey_domain::Lang::En)))?;
            let key_pass = ekey_ca::Passphrase::new(
                std::env::var("EKEY_IMPORT_KEY_PASSPHRASE")
                    .ok()
                    .filter(|p| !p.is_empty())
                    // An unencrypted key needs none; the value is then never used.
                    .unwrap_or_else(|| "unencrypted-key".into()),
            )
            .map_err(|e| anyhow::anyhow!("{}", e.message(ekey_domain::Lang::En)))?;
            let root =
                std::fs::read(&root).with_context(|| format!("reading {}", root.display()))?;
            let issuing = std::fs::read(&issuing)
                .with_context(|| format!("reading {}", issuing.display()))?;
            let key = std::fs::read_to_string(&issuing_key)
                .with_context(|| format!("reading {}", issuing_key.display()))?;
            std::fs::create_dir_all(&dir)?;
            let cfg = ekey_server::ca::ca_config(&config.public_url(), &config.ca_algorithm)?;
            let authority = ekey_ca::Authority::import(
                &dir,
                &passphrase,
                &cfg,
                ekey_ca::CaImport {
                    root_cert: &root,
                    issuing_cert: &issuing,
                    issuing_key_pem: &key,
                    issuing_key_passphrase: &key_pass,
                },
            )
            .map_err(|e| anyhow::anyhow!("{} ({})", e.message(ekey_domain::Lang::Zh), e.code()))?;
            println!(
                "imported; issuing CA SHA-256 {}",
                hex::encode_upper(Sha256::digest(authority.issuing_der()))
            );
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

//! `ekey ca …`: the operator's CA commands. Each opens the instance (database and CA key
//! files) it names, acts through the same code as the server, and is audited.

use std::process::ExitCode;

use anyhow::Context;
use ekey_ca::{RevocationReason, Serial};
use ekey_domain::ident::CreditCode;
use ekey_server::Config;
use ekey_store::{NewAudit, StoreError};
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

/// Where the passphrase of an offline root key comes from (else it is asked for).
const ROOT_PASSPHRASE_ENV: &str = "EKEY_ROOT_KEY_PASSPHRASE";

/// The offline root key's passphrase: `EKEY_ROOT_KEY_PASSPHRASE`, else asked for without
/// echo on a terminal (twice when it protects a new key), else the first line of stdin.
fn root_passphrase(new: bool) -> anyhow::Result<ekey_ca::Passphrase> {
    use std::io::{BufRead, IsTerminal};
    let en = |e: ekey_ca::CaError| {
        anyhow::anyhow!("{} ({})", e.message(ekey_domain::Lang::En), e.code())
    };
    if let Some(p) = std::env::var(ROOT_PASSPHRASE_ENV)
        .ok()
        .filter(|p| !p.is_empty())
    {
        return ekey_ca::Passphrase::new(p).map_err(en);
    }
    let text = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("root key passphrase: ")?;
        if new {
            let again = rpassword::prompt_password("root key passphrase (again): ")?;
            anyhow::ensure!(first == again, "the two passphrases differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    anyhow::ensure!(
        !text.is_empty(),
        "no root key passphrase: set {ROOT_PASSPHRASE_ENV} or type it"
    );
    ekey_ca::Passphrase::new(text).map_err(en)
}

/// `ekey ca init --root-key-out DIR`: creates the CA with the root key in `out` (outside
/// the data directory) instead of beside the other CA files.
fn create_with_offline_root(config: &Config, out: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.ca_pkcs11_module.is_none(),
        "--root-key-out is for file keys; with ca_pkcs11_module the root key stays on the HSM"
    );
    let dir = config.data_dir.join("ca");
    anyhow::ensure!(
        !dir.join(ekey_ca::files::ROOT_CERT).exists(),
        "a CA already exists in {}; --root-key-out only applies to a new CA",
        dir.display()
    );
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::create_dir_all(&config.data_dir)?;
    let (data, out_abs) = (config.data_dir.canonicalize()?, out.canonicalize()?);
    anyhow::ensure!(
        !out_abs.starts_with(&data),
        "--root-key-out must be outside the data directory {}",
        data.display()
    );
    let secrets = ekey_server::secrets::Secrets::load(&config.data_dir.join("secrets"), true)?;
    let en = |e: ekey_ca::CaError| {
        anyhow::anyhow!("{} ({})", e.message(ekey_domain::Lang::Zh), e.code())
    };
    let passphrase = ekey_ca::Passphrase::new(secrets.ca_passphrase.to_string()).map_err(en)?;
    let root_pass = root_passphrase(true)?;
    let cfg = ekey_server::ca::ca_config(&config.public_url(), &config.ca_algorithm)?;
    std::fs::create_dir_all(&dir)?;
    ekey_ca::Authority::create_with_root_key(
        &dir,
        &passphrase,
        &cfg,
        chrono::Utc::now(),
        Some((out, &root_pass)),
    )
    .map_err(en)?;
    Ok(())
}

/// Runs a CA command against the instance `config_of` names.
pub async fn run(
    cmd: CaCommand,
    config_of: fn(&Target) -> anyhow::Result<Config>,
) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCommand::Init {
            root_key_out,
            target,
        } => {
            let config = config_of(&target)?;
            if let Some(out) = &root_key_out {
                create_with_offline_root(&config, out)?;
            }
            let state = ekey_server::build_default(config).await?;
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
            if let Some(out) = root_key_out {
                println!(
                    "root key in {} — keep it offline; sign the root CRL before {} days with `ekey ca root-crl`",
                    out.join(ekey_ca::files::ROOT_KEY).display(),
                    ekey_ca::DEFAULT_ROOT_CRL_DAYS
                );
            }
        }
        CaCommand::RootCrl {
            root_key,
            days,
            out,
            target,
        } => {
            let config = config_of(&target)?;
            let dir = config.data_dir.join("ca");
            let own_key = root_key
                .canonicalize()
                .ok()
                .zip(dir.join(ekey_ca::files::ROOT_KEY).canonicalize().ok())
                .is_some_and(|(a, b)| a == b);
            let passphrase = if own_key && std::env::var_os(ROOT_PASSPHRASE_ENV).is_none() {
                let secrets =
                    ekey_server::secrets::Secrets::load(&config.data_dir.join("secrets"), false)?;
                ekey_ca::Passphrase::new(secrets.ca_passphrase.to_string())
                    .map_err(|e| anyhow::anyhow!("{}", e.message(ekey_domain::Lang::En)))?
            } else {
                root_passphrase(false)?
            };
            let arl = ekey_ca::renew_root_crl(
                &dir,
                &root_key,
                &passphrase,
                chrono::Utc::now(),
                days,
                out.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("{} ({})", e.message(ekey_domain::Lang::Zh), e.code()))?;
            println!(
                "root CRL number {} signed, next update {}; written to {}",
                arl.number,
                arl.next_update.to_rfc3339(),
                out.unwrap_or_else(|| dir.join(ekey_ca::files::ROOT_CRL))
                    .display()
            );
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
                .map_err(|e| match e {
                    ekey_server::ca::IssueError::Ca(c) => {
                        anyhow::anyhow!("{} ({})", c.message(ekey_domain::Lang::Zh), c.code())
                    }
                    other => anyhow::anyhow!("{other}"),
                })?;
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
            let reason = RevocationReason::parse_for_revocation(&reason).map_err(|e| {
                anyhow::anyhow!("{} ({})", e.message(ekey_domain::Lang::En), e.code())
            })?;
            let state = ekey_server::build_default(config_of(&target)?).await?;
            let hex = serial.to_hex();
            let mut audit = operator_audit("ca.revoke", reason.as_str());
            audit.object_id = hex.clone();
            // The same transaction as the provider's page: the key, its history, the mail.
            match ekey_server::revoke::revoke_by_hand(
                &state,
                &hex,
                reason,
                state.clock.now(),
                "",
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

//! `ekey admin …`: the first administrator of a production install. The password is never
//! taken as an argument (it would show in the process list and the shell history): it is
//! read from the terminal without echo (twice), or as one line of standard input in scripts.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::Subcommand;
use ekey_server::Config;
use ekey_server::first_admin::{NewAdmin, create_admin};

use crate::Target;

/// Administrator commands.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an administrator (asks for the password); refuses if the login exists.
    Create {
        /// The login (3–40 letters, digits, - _ .).
        #[arg(long)]
        login: String,
        /// Email for password-reset mails.
        #[arg(long)]
        email: Option<String>,
        /// Name shown (default 系统管理员).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Load every issuing agency from one CSV file (header
    /// province,name_zh,name_en,address,window,hours,hotline); all or nothing, audited.
    Agencies {
        /// The CSV file (UTF-8).
        #[arg(long)]
        file: std::path::PathBuf,
        #[command(flatten)]
        target: Target,
    },
}

fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        anyhow::ensure!(
            !password.is_empty(),
            "expected the password as one line on standard input"
        );
        return Ok(password);
    }
    let first = rpassword::prompt_password("新密码 / new password: ")?;
    let again = rpassword::prompt_password("再次输入 / the same password again: ")?;
    anyhow::ensure!(
        first == again,
        "the two passwords differ; nothing was changed"
    );
    Ok(first)
}

/// Runs an administrator command against the instance `config_of` names.
pub async fn run(
    cmd: AdminCommand,
    config_of: fn(&Target) -> anyhow::Result<Config>,
) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCommand::Agencies { file, target } => {
            let config = config_of(&target)?;
            let bytes = std::fs::read(&file)?;
            let Ok(text) = std::str::from_utf8(&bytes) else {
                eprintln!(
                    "error: 发证机构文件应为 UTF-8 编码的 CSV / the agencies file must be UTF-8 CSV (ekey.agency.file)"
                );
                return Ok(ExitCode::from(1));
            };
            let rows = match ekey_domain::agency_file::parse(text) {
                Ok(rows) => rows,
                Err(e) => {
                    eprintln!("{}", e.message(ekey_domain::Lang::Zh));
                    eprintln!("{}", e.message(ekey_domain::Lang::En));
                    eprintln!("({})", e.code());
                    return Ok(ExitCode::from(1));
                }
            };
            std::fs::create_dir_all(&config.data_dir)?;
            let store = ekey_store::open(&config.database_url).await?;
            store.migrate().await?;
            let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            let audit = ekey_store::NewAudit {
                at: chrono::Utc::now(),
                actor_id: operator,
                actor_role: "operator".into(),
                address: "cli".into(),
                action: "agency.load_file".into(),
                object_type: "agency".into(),
                object_id: "*".into(),
                after: format!("{} agencies from {}", rows.len(), file.display()),
                ..Default::default()
            };
            let n = store
                .load_agencies(
                    rows.into_iter()
                        .map(ekey_server::api::admin::agency_of_row)
                        .collect(),
                    audit,
                )
                .await?;
            println!("{n} agencies loaded / 已载入 {n} 个发证机构");
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::Create {
            login,
            email,
            name,
            target,
        } => {
            let config = config_of(&target)?;
            let password = read_password()?;
            // As `ekey serve` would on its first start: the data directory (and with it a
            // SQLite database inside it) may not exist yet.
            std::fs::create_dir_all(&config.data_dir)?;
            let store = ekey_store::open(&config.database_url).await?;
            // A fresh install may run this before its first start.
            store.migrate().await?;
            let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            let created = create_admin(
                store.as_ref(),
                chrono::Utc::now(),
                NewAdmin {
                    login: &login,
                    email: email.as_deref(),
                    display_name: name.as_deref(),
                    password: &password,
                    operator: &operator,
                },
            )
            .await;
            match created {
                Ok(account) => {
                    println!(
                        "administrator {} created (id {})",
                        account.login, account.id
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {} / {} ({})", e.zh, e.en, e.code);
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

//! `ekey key …`: what a token holder or an operator does with a key from the command line.
//! PINs and unlock codes are never taken as arguments (they would show in the process
//! list): they are read from the terminal without echo, or one per line from standard
//! input in scripts.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use ekey_domain::Lang;
use ekey_token::{Pkcs11Token, SoftToken, Token, TokenError};

/// Which token.
#[derive(Args, Clone)]
pub struct TokenArgs {
    /// A software token file.
    #[arg(long, conflicts_with = "module")]
    pub token: Option<PathBuf>,
    /// A PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so) …
    #[arg(long, requires = "label")]
    pub module: Option<PathBuf>,
    /// … and the token's label or serial in it.
    #[arg(long)]
    pub label: Option<String>,
}

/// Key commands.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// Serial, PIN tries left, locked or not, containers and certificates.
    Status(TokenArgs),
    /// Change the PIN (asks for the current and the new PIN).
    ChangePin(TokenArgs),
    /// Print the unlock challenge of a locked key (to give to the provider).
    Challenge(TokenArgs),
    /// Apply the unlock code from the mail "电子钥匙密码重置" and set a new PIN. The code is
    /// a secret like a PIN: it is asked for (or read as the first line of standard input),
    /// never taken as an argument.
    Unlock {
        #[command(flatten)]
        token: TokenArgs,
        /// Also tell this eKey server the unlock is done (logs in with the key and its new
        /// PIN; completes the unlock request named by --request).
        #[arg(long, requires = "request")]
        server: Option<String>,
        /// The unlock request's number (from the mail) or id.
        #[arg(long, requires = "server")]
        request: Option<String>,
    },
    /// Log in to an eKey server with the key (certificate login) and print the session's
    /// bearer token, for scripts calling the API as the key's enterprise.
    Login {
        #[command(flatten)]
        token: TokenArgs,
        /// The eKey server (e.g. https://ekey.example.gov.cn).
        #[arg(long)]
        server: String,
    },
    /// Carry out the approved certificate renewal of the key ("CA证书更新"): new key pair
    /// on the key, new certificate, confirmation. Resumes an interrupted renewal.
    Renew {
        #[command(flatten)]
        token: TokenArgs,
        /// The eKey server (e.g. https://ekey.example.gov.cn).
        #[arg(long)]
        server: String,
        /// The portal's public URL bound into the login signature, when it differs from
        /// --server (e.g. the server reached at an internal address).
        #[arg(long)]
        origin: Option<String>,
        /// The renewal request (id or number), when the key has several approved ones.
        #[arg(long)]
        request: Option<String>,
    },
}

fn open(args: &TokenArgs) -> anyhow::Result<Box<dyn Token>> {
    match (&args.token, &args.module, &args.label) {
        (Some(path), _, _) => Ok(Box::new(SoftToken::open(path)?)),
        (None, Some(module), Some(label)) => Ok(Box::new(Pkcs11Token::open(module, label)?)),
        _ => anyhow::bail!("name the token: --token FILE, or --module PATH --label LABEL"),
    }
}

/// Reads secrets: without echo from a terminal, else one per line from standard input.
struct PinReader {
    lines: Option<std::io::Lines<std::io::StdinLock<'static>>>,
}

impl PinReader {
    fn new() -> Self {
        let stdin = std::io::stdin();
        PinReader {
            lines: (!stdin.is_terminal()).then(|| stdin.lock().lines()),
        }
    }

    fn read(&mut self, prompt: &str) -> anyhow::Result<String> {
        match &mut self.lines {
            Some(lines) => Ok(lines
                .next()
                .ok_or_else(|| anyhow::anyhow!("expected a line on standard input for: {prompt}"))??
                .trim()
                .to_string()),
            None => Ok(rpassword::prompt_password(format!("{prompt}: "))?),
        }
    }
}

fn lang() -> Lang {
    Lang::from_accept_language(
        std::env::var("LANG")
            .ok()
            .as_deref()
            .map(|l| if l.starts_with("zh") { "zh" } else { "en" }),
    )
}

fn report(e: TokenError) -> anyhow::Error {
    anyhow::anyhow!("{} ({})", e.message(lang()), e.code())
}

/// Runs a key command.
pub async fn run(cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    let mut pins = PinReader::new();
    match cmd {
        KeyCommand::Status(args) => {
            let t = open(&args)?;
            let s = t.status().map_err(report)?;
            println!("serial:          {}", s.serial);
            println!("label:           {}", s.label);
            println!("PIN tries left:  {}", s.pin_tries_left);
            println!(
                "locked:          {}",
                if s.locked {
                    "yes — apply an unlock code"
                } else {
                    "no"
                }
            );
            for c in s.containers {
                println!(
                    "container {}:    key {}, certificate {}",
                    c.name,
                    if c.has_key { "yes" } else { "no" },
                    if c.certificate_der.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                );
            }
        }
        KeyCommand::ChangePin(args) => {
            let t = open(&args)?;
            let old = pins.read("current PIN")?;
            let new = pins.read("new PIN (6–16 characters)")?;
            let again = pins.read("new PIN again")?;
            anyhow::ensure!(new == again, "the two new PINs differ; nothing changed");
            t.change_pin(&old, &new).map_err(report)?;
            println!("PIN changed.");
        }
        KeyCommand::Challenge(args) => {
            let t = open(&args)?;
            let c = t.unlock_challenge().map_err(report)?;
            println!("serial:    {}", t.serial());
            println!("challenge: {}", hex::encode(c));
        }
        KeyCommand::Unlock {
            token,
            server,
            request,
        } => {
            let t: Arc<dyn Token> = Arc::from(open(&token)?);
            let code = pins.read("unlock code (from the mail)")?;
            let new = pins.read("new PIN (6–16 characters)")?;
            let again = pins.read("new PIN again")?;
            anyhow::ensure!(new == again, "the two new PINs differ; nothing changed");
            t.apply_unlock(&code, &new).map_err(report)?;
            println!("Key unlocked; the new PIN is set and the retry counter reset.");
            if let (Some(server), Some(request)) = (server, request) {
                let number = ekey_agent::report_unlock(t, &new, &server, &server, &request, lang())
                    .await
                    .map_err(|e| anyhow::anyhow!(e.report(lang())))?;
                println!("Unlock request {number} completed on the server.");
            }
        }
        KeyCommand::Login { token, server } => {
            let t: Arc<dyn Token> = Arc::from(open(&token)?);
            let pin = pins.read("PIN")?;
            let bearer = ekey_agent::key_login(t, &pin, &server, &server, lang())
                .await
                .map_err(|e| anyhow::anyhow!(e.report(lang())))?;
            println!("{bearer}");
        }
        KeyCommand::Renew {
            token,
            server,
            origin,
            request,
        } => {
            let t: Arc<dyn Token> = Arc::from(open(&token)?);
            let pin = pins.read("PIN")?;
            let params = ekey_agent::RenewParams {
                origin: origin.unwrap_or_else(|| server.clone()),
                server,
                request_id: request,
                lang: lang(),
            };
            let out = ekey_agent::renew(t, &pin, &params)
                .await
                .map_err(|e| anyhow::anyhow!(e.report(lang())))?;
            println!("Renewal confirmed.");
            println!("old certificate: {}", out.old_serial);
            println!("new certificate: {}", out.new_serial);
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `ekey`: the one binary. `demo` runs everything on one machine with demo data; `serve`
//! and `migrate` run a production instance from a TOML config; `audit verify` checks the
//! audit hash chain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ekey_server::Config;
use ekey_server::demo::{DEMO_LOGINS, DEMO_PASSWORD};

mod admin;
mod ca;
mod key;

#[derive(Parser)]
#[command(
    name = "ekey",
    version,
    about = "eKey — CA electronic keys for import/export enterprises"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One-command start: SQLite, files and demo accounts under DIR; serves and prints where to click.
    Demo {
        /// Data directory (created when missing).
        #[arg(long, default_value = "./ekey-data")]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Production server (TOML config; EKEY_* environment overrides).
    Serve {
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Apply database migrations and exit.
    Migrate {
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The local agent on 127.0.0.1 that lets the portal's pages use the keys inserted here.
    Agent(AgentArgs),
    /// Key (token) commands for holders and operators: status, PIN change, unlock, renewal.
    Key {
        #[command(subcommand)]
        command: key::KeyCommand,
    },
    /// CA commands: create, issue outside the request flow, revoke.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Administrator commands: create the first administrator of a production install.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Audit log commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// `ekey agent`.
#[derive(Args)]
struct AgentArgs {
    /// Address to listen on: the loopback interface only.
    #[arg(long, default_value = ekey_agent::DEFAULT_LISTEN)]
    listen: String,
    /// The portal's origin: the only web origin answered.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    origin: String,
    /// The eKey server for renewals (default: the origin).
    #[arg(long)]
    server: Option<String>,
    /// A software token file (repeatable). Without --token, --token-dir or --module the
    /// agent looks in the default places (see `ekey_agent::default_sources`).
    #[arg(long = "token")]
    tokens: Vec<PathBuf>,
    /// A directory of software tokens: every *.token file in it, looked at on each call.
    #[arg(long)]
    token_dir: Option<PathBuf>,
    /// A PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so) …
    #[arg(long, requires = "labels")]
    module: Option<PathBuf>,
    /// … and the label or serial of a token in it (repeatable).
    #[arg(long = "label", requires = "module")]
    labels: Vec<String>,
    /// Where pairings are kept (default: $XDG_CONFIG_HOME/ekey-agent or ~/.config/ekey-agent).
    #[arg(long)]
    state: Option<PathBuf>,
}

impl AgentArgs {
    fn config(self) -> anyhow::Result<ekey_agent::Config> {
        let mut sources: Vec<ekey_agent::TokenSource> = self
            .tokens
            .into_iter()
            .map(ekey_agent::TokenSource::File)
            .collect();
        sources.extend(self.token_dir.map(ekey_agent::TokenSource::Dir));
        if let Some(module) = self.module {
            sources.extend(
                self.labels
                    .into_iter()
                    .map(|label| ekey_agent::TokenSource::Pkcs11 {
                        module: module.clone(),
                        label,
                    }),
            );
        }
        let state_dir = match self.state {
            Some(dir) => dir,
            None => ekey_agent::default_state_dir()
                .context("no --state, and neither XDG_CONFIG_HOME nor HOME is set")?,
        };
        // No key named (`ekey agent` as the portal says to start it): look in the default
        // places; `/status` and the window say while no key is present.
        if sources.is_empty() {
            sources = ekey_agent::default_sources(&state_dir);
        }
        Ok(ekey_agent::Config {
            server: self.server.unwrap_or_else(|| self.origin.clone()),
            origin: self.origin,
            sources,
            state_dir,
        })
    }
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the root and issuing CA (if absent) and print their certificates' fingerprints.
    Init {
        /// Write the root CA key into this directory (e.g. removable media kept offline)
        /// instead of the data directory; encrypted under EKEY_ROOT_KEY_PASSPHRASE (asked
        /// for when not set). The server never needs it; the root's CRL is then signed
        /// ahead of time with `ekey ca root-crl`.
        #[arg(long)]
        root_key_out: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Sign the root's next CRL (ARL) with the root key and publish it where the server
    /// serves it (/crl/root.crl), or write it to --out to carry it there.
    RootCrl {
        /// The root key file (root.key.pem; passphrase from EKEY_ROOT_KEY_PASSPHRASE, asked
        /// for when not set; the CA passphrase when the key is the instance's own).
        #[arg(long)]
        root_key: PathBuf,
        /// Days until its nextUpdate (the next signing must happen before then).
        #[arg(long, default_value_t = ekey_ca::DEFAULT_ROOT_CRL_DAYS)]
        days: u32,
        /// Write the ARL (DER) here instead of the instance's CA directory.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Import an existing root and issuing CA instead of creating one (before the first
    /// start); the issuing key's passphrase, if any, from EKEY_IMPORT_KEY_PASSPHRASE.
    Import {
        /// Root CA certificate (PEM or DER).
        #[arg(long)]
        root: PathBuf,
        /// Issuing CA certificate (PEM or DER), signed by the root.
        #[arg(long)]
        issuing: PathBuf,
        /// Issuing CA private key, PKCS#8 PEM (encrypted or not).
        #[arg(long)]
        issuing_key: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Issue a certificate for a CSR (audited); prints the certificate PEM.
    Issue {
        /// The CSR (PEM or DER); its signature is checked, only its key is used.
        #[arg(long)]
        csr: PathBuf,
        /// Unified social credit code (subject serialNumber).
        #[arg(long)]
        credit_code: String,
        /// Enterprise name (subject O and CN).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a certificate; CRL and OCSP of every instance show it within seconds.
    Revoke {
        /// Serial in hex (any case, colons allowed).
        #[arg(long)]
        serial: String,
        /// RFC 5280 reason in camelCase, e.g. keyCompromise, cessationOfOperation, superseded.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; exit 0 if intact, 1 naming the first broken record.
    Verify(Target),
}

#[derive(Args)]
struct Target {
    /// Data directory of a demo instance.
    #[arg(long, conflicts_with = "config")]
    data: Option<PathBuf>,
    /// Config file of a production instance.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn demo_config(data: PathBuf, listen: String) -> Config {
    let db = data.join("ekey.db");
    let mut config = Config {
        database_url: format!("sqlite:{}", db.display()),
        listen,
        data_dir: data,
        demo: true,
        mail_transport: ekey_server::config::MailTransport::Dev,
        ..Config::default()
    };
    config.public_url = Some(format!("http://{}", config.listen));
    config
}

/// The configuration of the instance a command acts on: a demo directory (whose first start
/// recorded the address it serves at, which its certificates point to) or a config file.
fn target_config(t: &Target) -> anyhow::Result<Config> {
    match (&t.data, &t.config) {
        (Some(data), _) => {
            let mut config = demo_config(data.clone(), "127.0.0.1:8080".into());
            if let Ok(url) = std::fs::read_to_string(data.join("public-url")) {
                config.public_url = Some(url.trim().to_string());
            }
            Ok(config)
        }
        (None, config) => Config::load(config.as_deref()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo { data, listen } => {
            let config = demo_config(data.clone(), listen.clone());
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen} (is another ekey running? try --listen 127.0.0.1:8081)"))?;
            let addr = listener.local_addr()?;
            let mut config = config;
            config.public_url = Some(format!("http://{addr}"));
            std::fs::create_dir_all(&data)?;
            if !data.join("public-url").exists() {
                std::fs::write(data.join("public-url"), format!("http://{addr}\n"))?;
            }
            let state = ekey_server::build_default(config).await?;
            ekey_server::demo::seed(state.store.as_ref()).await?;
            println!();
            println!("  eKey demo is running: http://{addr}/");
            println!("  data directory:       {}", data.display());
            println!("  log in:               http://{addr}/login");
            println!("  dev mailbox:          http://{addr}/dev/mailbox");
            println!("  API (OpenAPI):        http://{addr}/api/v1/openapi.json");
            println!();
            println!("  demo logins (password {DEMO_PASSWORD}):");
            for (login, what) in DEMO_LOGINS {
                println!("    {login:<20} {what}");
            }
            println!();
            println!(
                "  keys made here are software tokens in {}/tokens; to log in with one,",
                data.display()
            );
            println!("  renew or unlock it from the pages, run the key agent in another terminal:");
            println!(
                "    ekey agent --origin http://{addr} --token-dir {}/tokens",
                data.display()
            );
            println!();
            println!("  Ctrl-C to stop.");
            ekey_server::serve(state, listener, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            let listen = config.listen.clone();
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let state = ekey_server::build_default(config).await?;
            tracing::info!(addr = %listener.local_addr()?, backend = ?state.store.backend(), "eKey serving");
            ekey_server::serve(state, listener, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { config } => {
            let config = Config::load(config.as_deref())?;
            let store = ekey_store::open(&config.database_url).await?;
            store.migrate().await?;
            println!("migrations applied ({:?})", store.backend());
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(args) => {
            let listen = args.listen.clone();
            let config = args.config()?;
            ekey_agent::run(config, &listen, shutdown_signal())
                .await
                .map_err(|e| anyhow::anyhow!("{e} ({})", e.code()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Key { command } => key::run(command).await,
        Command::Ca { command } => ca::run(command, target_config).await,
        Command::Admin { command } => admin::run(command, target_config).await,
        Command::Audit {
            command: AuditCommand::Verify(target),
        } => {
            let config = target_config(&target)?;
            if let Some(data) = &target.data
                && !data.join("ekey.db").exists()
            {
                anyhow::bail!("no eKey database in {}", data.display());
            }
            let store = ekey_store::open(&config.database_url).await?;
            let report = store.verify_audit().await?;
            match report.first_broken {
                None => {
                    println!("audit chain intact: {} records", report.records);
                    Ok(ExitCode::SUCCESS)
                }
                Some((seq, why)) => {
                    eprintln!(
                        "audit chain BROKEN at record {seq}: {why} ({} records before it verify)",
                        report.records
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

fn main() -> ExitCode {
    // Structured logs on stderr; EKEY_LOG_FORMAT=json for log shippers, RUST_LOG for levels.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("EKEY_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

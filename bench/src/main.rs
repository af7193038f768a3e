//! eKey benchmarks against real peers, measured side by side in one run; writes
//! `bench/RESULTS.md`. Run it through `bench/run` (release build, peer checks, and a
//! private network namespace so `openssl ocsp`, which listens on all interfaces, is only
//! reachable on loopback).
//!
//! ```text
//! ekey-bench run --out bench/RESULTS.md   the whole suite
//! ekey-bench serve …                      (internal) the eKey server for the OCSP load
//! ekey-bench crl …                        (internal) one CRL generation, for peak memory
//! ekey-bench only web|lifecycle [--out F]  just the portal-read / lifecycle sections
//! ekey-bench only ca [http|ocsp] [--out F] just the HTTP issuance / OCSP peer comparisons
//! ```

mod cfssl;
mod client;
mod crl;
mod issuance;
mod lifecycle;
mod load;
mod ocsp;
mod portal;
mod report;
mod util;
mod web;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use chrono::{DateTime, Utc};
use ekey_domain::clock::SystemClock;
use ekey_server::Config;
use ekey_server::config::MailTransport;
use ekey_store::{NewAudit, Revocation};

/// Everything the scenarios share.
pub struct Ctx {
    pub work: PathBuf,
    pub data_dir: PathBuf,
    pub db_url: String,
    pub public_url: String,
    pub ca_dir: PathBuf,
    pub passphrase: String,
    pub passphrase_file: PathBuf,
    pub root_cert: PathBuf,
    pub issuing_cert: PathBuf,
    pub ocsp_cert: PathBuf,
    pub chain: PathBuf,
    /// Decrypted copies for openssl (inside the temporary directory only).
    pub issuing_key: PathBuf,
    pub ocsp_key: PathBuf,
    pub exe: PathBuf,
    pub ticks: f64,
}

/// A certificate of the OCSP set.
pub struct Issued {
    pub serial_hex: String,
    pub not_after: DateTime<Utc>,
    pub revoked: Option<(DateTime<Utc>, &'static str)>,
}

/// Issuance through the server's CA service into SQLite (the OCSP set).
pub struct StoreIssuance {
    pub count: usize,
    pub per_s: f64,
    pub revoked: usize,
}

pub fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(b64.trim())?)
}

pub fn der_to_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn flag(args: &[String], name: &str) -> anyhow::Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .with_context(|| format!("missing {name}"))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => {
            let out =
                PathBuf::from(flag(&args, "--out").unwrap_or_else(|_| "bench/RESULTS.md".into()));
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(run_all(out))
        }
        Some("serve") => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(&args)),
        Some("crl") => crl::child(&args),
        Some("only") if args.get(1).is_some_and(|a| a == "ca") => {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(issuance::only_ca(&args))
        }
        Some("only") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(lifecycle::only(&args)),
        _ => bail!("usage: ekey-bench run [--out bench/RESULTS.md] (see bench/run)"),
    }
}

fn server_config(data_dir: &std::path::Path, db_url: &str, public_url: &str) -> Config {
    Config {
        database_url: db_url.to_string(),
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        public_url: Some(public_url.to_string()),
        demo: false,
        mail_transport: MailTransport::Log,
        allow_software_tokens_insecure: true,
        ..Config::default()
    }
}

/// `ekey-bench serve`: the eKey server on 127.0.0.1:0 until stdin closes.
async fn serve(args: &[String]) -> anyhow::Result<()> {
    let config = server_config(
        &PathBuf::from(flag(args, "--data-dir")?),
        &flag(args, "--db")?,
        &flag(args, "--public-url")?,
    );
    let state = ekey_server::build(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    ekey_server::serve(state, listener, async {
        let _ = stdin_closed.await;
    })
    .await
}

fn export_for_openssl(ctx: &Ctx) -> anyhow::Result<()> {
    let mut chain = std::fs::read_to_string(&ctx.root_cert)?;
    chain.push_str(&std::fs::read_to_string(&ctx.issuing_cert)?);
    std::fs::write(&ctx.chain, chain)?;
    for (from, to) in [
        (ekey_ca::files::ISSUING_KEY, &ctx.issuing_key),
        (ekey_ca::files::OCSP_KEY, &ctx.ocsp_key),
    ] {
        util::run(
            std::process::Command::new("openssl")
                .arg("pkey")
                .arg("-in")
                .arg(ctx.ca_dir.join(from))
                .arg("-passin")
                .arg(format!("file:{}", ctx.passphrase_file.display()))
                .arg("-out")
                .arg(to),
            Duration::from_secs(60),
        )?;
    }
    Ok(())
}

/// Issues the OCSP set through `CaService::issue_for_order` (serial reserved in SQLite,
/// signed, completed, audited), then revokes every 20th.
async fn issue_through_store(
    state: &ekey_server::AppState,
    csrs: &[issuance::CsrItem],
) -> anyhow::Result<(Vec<Issued>, StoreIssuance)> {
    let mut spkis = Vec::with_capacity(csrs.len());
    for c in csrs {
        spkis.push(ekey_ca::parse_csr(c.pem.as_bytes())?.spki_der);
    }
    let started = Instant::now();
    let mut issued = Vec::with_capacity(csrs.len());
    for (i, (c, spki)) in csrs.iter().zip(spkis).enumerate() {
        let record = state
            .ca
            .issue_for_order(
                state.store.as_ref(),
                &format!("bench:{i}"),
                spki,
                &c.name,
                &c.code,
                None,
                Utc::now(),
                NewAudit {
                    at: Utc::now(),
                    actor_id: "bench".into(),
                    actor_role: "operator".into(),
                    address: "bench".into(),
                    action: "ca.issue_bench".into(),
                    ..NewAudit::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        issued.push(Issued {
            serial_hex: record.serial.clone(),
            not_after: record.not_after.context("no notAfter")?,
            revoked: None,
        });
    }
    let per_s = issued.len() as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "  CaService::issue_for_order (SQLite): {} certificates/s",
        util::num(per_s, 0)
    );
    let reasons = [
        "keyCompromise",
        "superseded",
        "cessationOfOperation",
        "affiliationChanged",
    ];
    let mut revoked = 0;
    for (i, c) in issued.iter_mut().enumerate().filter(|(i, _)| i % 20 == 0) {
        let reason = reasons[(i / 20) % reasons.len()];
        let record = state
            .store
            .revoke(
                Revocation {
                    serial: c.serial_hex.clone(),
                    reason: reason.into(),
                    at: Utc::now(),
                },
                NewAudit {
                    at: Utc::now(),
                    actor_id: "bench".into(),
                    actor_role: "operator".into(),
                    address: "bench".into(),
                    action: "ca.revoke".into(),
                    object_type: "certificate".into(),
                    object_id: c.serial_hex.clone(),
                    after: reason.into(),
                    ..NewAudit::default()
                },
            )
            .await?;
        c.revoked = Some((record.revoked_at.context("not revoked")?, reason));
        revoked += 1;
    }
    let count = issued.len();
    Ok((
        issued,
        StoreIssuance {
            count,
            per_s,
            revoked,
        },
    ))
}

async fn run_all(out: PathBuf) -> anyhow::Result<()> {
    let begun = Instant::now();
    let started_at = Utc::now();
    let machine = report::Machine::collect();
    let tmp = tempfile::Builder::new().prefix("ekey-bench-").tempdir()?;
    let work = tmp.path().to_path_buf();
    // EKEY_BENCH_KEEP=1 keeps the temporary directory for inspection.
    let _tmp = if std::env::var("EKEY_BENCH_KEEP").is_ok_and(|v| v == "1") {
        let _ = tmp.keep();
        None
    } else {
        Some(tmp)
    };
    eprintln!(
        "setting up an eKey instance (SQLite, CA created by the server) in {}",
        work.display()
    );
    let (ctx, state) = setup_instance(&work).await?;

    eprintln!("1. issuance");
    let csrs = issuance::make_csrs(issuance::CSRS)?;
    let issuance = issuance::run(&ctx, state.ca.authority(), &csrs)?;
    let (issued, store_issuance) = issue_through_store(&state, &csrs).await?;

    eprintln!("2. OCSP");
    let bodies = ocsp::build_requests(&ctx, &issued)?;
    let breakdown = ocsp::breakdown(&state, &issued, &bodies).await?;
    drop(state);
    let ocsp = ocsp::run(&ctx, &issued, &bodies, breakdown).await?;
    eprintln!("1b. issuance through HTTP (eKey API, cfssl serve)");
    let http_issuance = issuance::http(&ctx, &csrs).await?;

    eprintln!("3. CRL");
    let crl = crl::run(&ctx)?;
    eprintln!("portal: documents and photo fitting");
    let portal = portal::run(&ctx.work)?;
    eprintln!("5. portal reads and logins (wrk, nginx)");
    let web = web::run(&ctx.work, ctx.ticks).await?;
    eprintln!("6. request lifecycle (SQLite; PostgreSQL with 1 and 3 instances)");
    let lifecycle = lifecycle::run(&ctx.work, ctx.ticks).await?;

    let text = report::render(&report::All {
        machine,
        started_at,
        total: begun.elapsed(),
        issuance,
        store_issuance,
        http_issuance,
        ocsp,
        crl,
        portal,
        web,
        lifecycle,
    });
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} in {:.0} s",
        out.display(),
        begun.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A work directory's eKey instance for the benchmarks: SQLite, the CA created by the
/// server, its keys exported for the openssl peers; the context and the built state.
pub(crate) async fn setup_instance(
    work: &std::path::Path,
) -> anyhow::Result<(Ctx, ekey_server::AppState)> {
    let work = work.to_path_buf();
    let data_dir = work.join("data");
    let ca_dir = data_dir.join("ca");
    let ctx_base = |passphrase: String| Ctx {
        work: work.clone(),
        data_dir: data_dir.clone(),
        db_url: format!("sqlite:{}", work.join("ekey.db").display()),
        public_url: "http://127.0.0.1:8080".into(),
        ca_dir: ca_dir.clone(),
        passphrase,
        passphrase_file: data_dir.join("secrets").join("ca-passphrase"),
        root_cert: ca_dir.join(ekey_ca::files::ROOT_CERT),
        issuing_cert: ca_dir.join(ekey_ca::files::ISSUING_CERT),
        ocsp_cert: ca_dir.join(ekey_ca::files::OCSP_CERT),
        chain: work.join("chain.pem"),
        issuing_key: work.join("issuing.key"),
        ocsp_key: work.join("ocsp.key"),
        exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ekey-bench")),
        ticks: util::clock_ticks(),
    };
    let probe = ctx_base(String::new());
    let state = ekey_server::build(
        server_config(&probe.data_dir, &probe.db_url, &probe.public_url),
        Arc::new(SystemClock),
    )
    .await?;
    let passphrase = std::fs::read_to_string(&probe.passphrase_file)?
        .trim()
        .to_string();
    let ctx = ctx_base(passphrase);
    export_for_openssl(&ctx)?;
    Ok((ctx, state))
}

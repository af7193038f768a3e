//! CRL generation: `Authority::crl` (in a child process, `ekey-bench crl`, so its peak
//! memory is its own) against `openssl ca -gencrl`, both reading the same index file of
//! N revoked certificates, both measured by `/usr/bin/time -v`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{NaiveDateTime, Utc};
use ekey_ca::{Authority, CaConfig, Passphrase, RevocationReason, RevokedEntry, Serial};
use ring::rand::{SecureRandom, SystemRandom};

use crate::Ctx;
use crate::ocsp::index_time;
use crate::util::{self, mb};

/// Sizes measured.
pub const SIZES: [usize; 2] = [100_000, 1_000_000];
/// Longest a CRL generation may take before it is stopped and reported as capped.
pub const CAP: Duration = Duration::from_secs(60);

const REASONS: [&str; 4] = [
    "keyCompromise",
    "superseded",
    "cessationOfOperation",
    "affiliationChanged",
];

/// One side of one size.
#[derive(Default)]
pub struct Side {
    pub wall_s: f64,
    pub capped: bool,
    pub max_rss_kb: Option<u64>,
    pub der_len: usize,
    pub entries: Option<usize>,
    pub verify: String,
    /// eKey only: figures printed by the child.
    pub read_s: f64,
    pub sign_s: f64,
    pub work_s: f64,
    pub hwm_before_kb: u64,
}

pub struct SizeResult {
    pub n: usize,
    pub ours: Side,
    pub openssl: Side,
}

/// Writes an index of `n` revoked certificates with random 16-octet serials.
fn write_index(path: &Path, n: usize) -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    let now = Utc::now();
    let expiry = index_time(now + chrono::Duration::days(365));
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut random = vec![0u8; 16 * 4096];
    for i in 0..n {
        if i % 4096 == 0 {
            rng.fill(&mut random).map_err(|_| anyhow::anyhow!("rng"))?;
        }
        let s = &mut random[(i % 4096) * 16..(i % 4096 + 1) * 16];
        s[0] &= 0x7f;
        if s[0] == 0 {
            s[0] = 1;
        }
        let serial: String = s.iter().map(|b| format!("{b:02X}")).collect();
        let at = index_time(now - chrono::Duration::seconds(i as i64));
        writeln!(
            f,
            "R\t{expiry}\t{at},{}\t{serial}\tunknown\t/CN=revoked {i}",
            REASONS[i % REASONS.len()]
        )?;
    }
    f.flush()?;
    std::fs::write(
        path.with_file_name("index.txt.attr"),
        "unique_subject = no\n",
    )?;
    Ok(())
}

/// `ekey-bench crl`: reads the index, builds and signs the CRL, writes it; prints figures.
pub fn child(args: &[String]) -> anyhow::Result<()> {
    let get = |flag: &str| -> anyhow::Result<String> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .with_context(|| format!("missing {flag}"))
    };
    let ca_dir = PathBuf::from(get("--ca-dir")?);
    let pass = std::fs::read_to_string(get("--passphrase-file")?)?;
    let cfg = CaConfig {
        base_url: get("--public-url")?,
        ..CaConfig::default()
    };
    let authority = Authority::load(&ca_dir, &Passphrase::new(pass.trim().to_string())?, &cfg)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hwm_before = util::self_status_kb("VmHWM:");

    let started = Instant::now();
    let mut entries = Vec::new();
    for line in BufReader::with_capacity(1 << 20, std::fs::File::open(get("--index")?)?).lines() {
        let line = line?;
        let f: Vec<&str> = line.split('\t').collect();
        if f.first() != Some(&"R") || f.len() < 4 {
            continue;
        }
        let (at, reason) = f[2].split_once(',').unwrap_or((f[2], "unspecified"));
        let at = NaiveDateTime::parse_from_str(at.trim_end_matches('Z'), "%y%m%d%H%M%S")?.and_utc();
        entries.push(RevokedEntry {
            serial: Serial::from_hex(f[3])?,
            revoked_at: at,
            reason: RevocationReason::parse(reason)?,
        });
    }
    let read = started.elapsed();
    let t = Instant::now();
    let der = authority.crl(&entries, 1, Utc::now())?;
    let sign = t.elapsed();
    std::fs::write(get("--out")?, &der)?;
    let work = started.elapsed();
    println!(
        "entries={} read_s={:.4} sign_s={:.4} work_s={:.4} bytes={} hwm_before_kb={} hwm_after_kb={}",
        entries.len(),
        read.as_secs_f64(),
        sign.as_secs_f64(),
        work.as_secs_f64(),
        der.len(),
        hwm_before,
        util::self_status_kb("VmHWM:")
    );
    Ok(())
}

fn kv(text: &str, key: &str) -> Option<f64> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

fn count_entries(der: &[u8]) -> Option<usize> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).ok()?;
    Some(crl.iter_revoked_certificates().count())
}

fn verify(ctx: &Ctx, file: &Path, form: &str) -> String {
    let out = util::run(
        Command::new("openssl")
            .args(["crl", "-inform", form, "-in"])
            .arg(file)
            .arg("-CAfile")
            .arg(&ctx.chain)
            .args(["-noout", "-verify"]),
        Duration::from_secs(120),
    );
    match out {
        Ok(_) => "verify OK".into(),
        Err(e) => {
            let msg = format!("{e:#}");
            if msg.contains("verify OK") {
                "verify OK".into()
            } else {
                format!("FAILED: {}", msg.lines().last().unwrap_or(""))
            }
        }
    }
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<SizeResult>> {
    let mut results = Vec::new();
    for n in SIZES {
        let dir = ctx.work.join(format!("crl-{n}"));
        std::fs::create_dir_all(&dir)?;
        let index = dir.join("index.txt");
        write_index(&index, n)?;
        let cnf = crate::issuance::openssl_ca_dir(ctx, &dir)?;

        // eKey.
        let ours_file = dir.join("ekey.crl");
        let exe = ctx.exe.display().to_string();
        let t = util::time_v(
            &exe,
            &[
                "crl",
                "--ca-dir",
                &ctx.ca_dir.display().to_string(),
                "--passphrase-file",
                &ctx.passphrase_file.display().to_string(),
                "--public-url",
                &ctx.public_url,
                "--index",
                &index.display().to_string(),
                "--out",
                &ours_file.display().to_string(),
            ],
            &dir,
            CAP,
        )?;
        let mut ours = Side {
            wall_s: t.wall.as_secs_f64(),
            capped: t.status.is_none(),
            max_rss_kb: t.max_rss_kb,
            ..Side::default()
        };
        if let Some(status) = t.status {
            if !status.success() {
                bail!("ekey-bench crl failed: {}", t.stderr);
            }
            ours.read_s = kv(&t.stdout, "read_s").unwrap_or(0.0);
            ours.sign_s = kv(&t.stdout, "sign_s").unwrap_or(0.0);
            ours.work_s = kv(&t.stdout, "work_s").unwrap_or(0.0);
            ours.hwm_before_kb = kv(&t.stdout, "hwm_before_kb").unwrap_or(0.0) as u64;
            let der = std::fs::read(&ours_file)?;
            ours.der_len = der.len();
            ours.entries = count_entries(&der);
            ours.verify = verify(ctx, &ours_file, "DER");
        } else {
            ours.verify = format!("not run: stopped after {} s", CAP.as_secs());
        }
        eprintln!(
            "  eKey CRL {n}: {:.2} s (sign {:.2} s), {} MB peak, {} bytes, {}",
            ours.work_s,
            ours.sign_s,
            ours.max_rss_kb.map(mb).unwrap_or_default(),
            ours.der_len,
            ours.verify
        );

        // openssl ca -gencrl.
        let pem_file = dir.join("openssl.crl.pem");
        let t = util::time_v(
            "openssl",
            &[
                "ca",
                "-config",
                &cnf.display().to_string(),
                "-gencrl",
                "-out",
                &pem_file.display().to_string(),
            ],
            &dir,
            CAP,
        )?;
        let mut peer = Side {
            wall_s: t.wall.as_secs_f64(),
            capped: t.status.is_none(),
            max_rss_kb: t.max_rss_kb,
            ..Side::default()
        };
        if let Some(status) = t.status {
            if !status.success() {
                bail!("openssl ca -gencrl failed: {}", t.stderr);
            }
            let der = crate::pem_to_der(&std::fs::read_to_string(&pem_file)?)?;
            peer.der_len = der.len();
            peer.entries = count_entries(&der);
            peer.verify = verify(ctx, &pem_file, "PEM");
        } else {
            peer.verify = format!("not run: stopped after {} s", CAP.as_secs());
        }
        eprintln!(
            "  openssl ca -gencrl {n}: {:.2} s{}, {} MB peak, {} bytes, {}",
            peer.wall_s,
            if peer.capped { " (CAPPED)" } else { "" },
            peer.max_rss_kb.map(mb).unwrap_or_default(),
            peer.der_len,
            peer.verify
        );
        // The big files are not needed any more.
        let _ = std::fs::remove_file(&index);
        results.push(SizeResult {
            n,
            ours,
            openssl: peer,
        });
    }
    Ok(results)
}

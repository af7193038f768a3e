//! The cfssl peers (Debian `golang-cfssl`): `cfssl serve` (the sign API, with and without
//! its SQLite certificate database) and `cfssl ocspserve` (pre-signed OCSP responses made by
//! `cfssl ocsprefresh` from that database and dumped by `cfssl ocspdump`). Each runs in its
//! own process group, bounded in time, killed when dropped.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use chrono::{DateTime, Utc};
use sqlx::Connection;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::util::{self, Bounded};
use crate::{Ctx, Issued};

/// cfssl's own schema for SQLite (certdb/sqlite/migrations/001_CreateCertificates.sql of
/// the cfssl revision Debian packages, 7fb22c8; the package does not ship it). Reproduced
/// as data: the tables `cfssl serve -db-config` and `cfssl ocsprefresh` expect.
pub const SCHEMA: &str = "\
CREATE TABLE certificates (
  serial_number            bytea NOT NULL,
  authority_key_identifier bytea NOT NULL,
  ca_label                 bytea,
  status                   bytea NOT NULL,
  reason                   int,
  expiry                   timestamp,
  revoked_at               timestamp,
  pem                      bytea NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
CREATE TABLE ocsp_responses (
  serial_number            bytea NOT NULL,
  authority_key_identifier bytea NOT NULL,
  body                     bytea NOT NULL,
  expiry                   timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier),
  FOREIGN KEY(serial_number, authority_key_identifier) REFERENCES certificates(serial_number, authority_key_identifier)
);
";

/// `cfssl version`, first line and runtime, e.g. `1.2.0 (go1.19.8)`.
pub fn version() -> String {
    let out = Command::new("cfssl").arg("version").output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    match (field("Version:"), field("Runtime:")) {
        (Some(v), Some(r)) => format!("{v} ({r})"),
        (Some(v), None) => v,
        _ => "unknown".into(),
    }
}

/// A fresh cfssl SQLite database at `path` with cfssl's schema; returns the `-db-config`
/// file written beside it.
pub async fn create_db(path: &Path) -> anyhow::Result<PathBuf> {
    let _ = std::fs::remove_file(path);
    let mut conn = sqlx::sqlite::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true),
    )
    .await?;
    sqlx::raw_sql(SCHEMA).execute(&mut conn).await?;
    conn.close().await?;
    let config = path.with_extension("json");
    std::fs::write(
        &config,
        format!(
            "{{\"driver\":\"sqlite3\",\"data_source\":\"{}\"}}\n",
            path.display()
        ),
    )?;
    Ok(config)
}

/// Rows in the `certificates` table.
pub async fn count_certificates(path: &Path) -> anyhow::Result<i64> {
    let mut conn = sqlx::sqlite::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .read_only(true),
    )
    .await?;
    let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM certificates")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(n.0)
}

/// Decimal digits of a big-endian unsigned integer (Go's `big.Int.String()`, which cfssl
/// uses as the serial number key).
fn decimal(bytes: &[u8]) -> String {
    let mut n: Vec<u8> = bytes.to_vec();
    let mut digits = Vec::new();
    while n.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8_lossy(&digits).into_owned()
}

/// cfssl's timestamp text (as its SQLite driver writes `time.Time`).
fn cfssl_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.9f+00:00").to_string()
}

/// The issuing CA's subject key identifier, lower-case hex (what cfssl keys records by).
fn issuing_ski(ctx: &Ctx) -> anyhow::Result<String> {
    let der = crate::pem_to_der(&std::fs::read_to_string(&ctx.issuing_cert)?)?;
    let (_, cert) = X509Certificate::from_der(&der)?;
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectKeyIdentifier(kid) = ext.parsed_extension() {
            return Ok(kid.0.iter().map(|b| format!("{b:02x}")).collect());
        }
    }
    bail!("the issuing CA has no subject key identifier")
}

/// Pre-signs one OCSP response per certificate the way a cfssl deployment does: the
/// certificates (with their status, reason and revocation time) go into cfssl's SQLite
/// database, `cfssl ocsprefresh` signs a response for each with the responder certificate
/// and key, `cfssl ocspdump` writes them out (base64, one per line) for `ocspserve`.
pub async fn presign_ocsp(
    ctx: &Ctx,
    issued: &[Issued],
    ders: &[Vec<u8>],
) -> anyhow::Result<PathBuf> {
    let dir = ctx.work.join("cfssl-ocsp");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("certdb.db");
    let db_config = create_db(&db).await?;
    let aki = issuing_ski(ctx)?;
    let mut conn = sqlx::sqlite::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&db),
    )
    .await?;
    // A preparation step, not measured: WAL (kept in the file) so that ocsprefresh's one
    // transaction per response does not wait for a rollback-journal fsync each.
    sqlx::raw_sql("PRAGMA journal_mode=WAL")
        .execute(&mut conn)
        .await?;
    let mut tx = conn.begin().await?;
    for (c, der) in issued.iter().zip(ders) {
        let serial = ekey_ca::Serial::from_hex(&c.serial_hex)?;
        let (status, reason, revoked_at) = match &c.revoked {
            Some((at, reason)) => (
                "revoked",
                i64::from(ekey_ca::RevocationReason::parse(reason)?.code()),
                cfssl_time(*at),
            ),
            // cfssl writes the zero time, never NULL, for a certificate not revoked.
            None => ("good", 0, "0001-01-01 00:00:00+00:00".to_string()),
        };
        sqlx::query(
            "INSERT INTO certificates (serial_number, authority_key_identifier, ca_label, status, \
             reason, expiry, revoked_at, pem) VALUES (?, ?, '', ?, ?, ?, ?, ?)",
        )
        .bind(decimal(serial.as_bytes()))
        .bind(&aki)
        .bind(status)
        .bind(reason)
        .bind(cfssl_time(c.not_after))
        .bind(revoked_at)
        .bind(crate::der_to_pem("CERTIFICATE", der))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    conn.close().await?;

    let started = Instant::now();
    util::run(
        Command::new("cfssl")
            .arg("ocsprefresh")
            .arg("-db-config")
            .arg(&db_config)
            .arg("-ca")
            .arg(&ctx.issuing_cert)
            .arg("-responder")
            .arg(&ctx.ocsp_cert)
            .arg("-responder-key")
            .arg(&ctx.ocsp_key)
            .args(["-loglevel", "2"]),
        Duration::from_secs(120),
    )?;
    eprintln!(
        "  cfssl ocsprefresh: {} responses signed in {:.2} s",
        issued.len(),
        started.elapsed().as_secs_f64()
    );
    let dump = util::run(
        Command::new("cfssl")
            .arg("ocspdump")
            .arg("-db-config")
            .arg(&db_config)
            .args(["-loglevel", "2"]),
        Duration::from_secs(60),
    )?;
    let n = dump.lines().filter(|l| !l.trim().is_empty()).count();
    ensure!(
        n == issued.len(),
        "cfssl ocspdump wrote {n} responses for {} certificates",
        issued.len()
    );
    let file = dir.join("responses.b64");
    std::fs::write(&file, dump)?;
    Ok(file)
}

/// The signing profile for `cfssl serve`, as close to eKey's enterprise profile as cfssl
/// 1.2 can say it: 730 days, keyUsage digitalSignature + nonRepudiation ("content
/// committment", cfssl's spelling), extKeyUsage clientAuth + emailProtection, CRL
/// distribution point, OCSP and caIssuers URLs. cfssl copies the CSR's subject.
pub fn sign_config(ctx: &Ctx) -> String {
    let base = &ctx.public_url;
    format!(
        "{{\"signing\":{{\"default\":{{\"expiry\":\"17520h\",\
         \"usages\":[\"digital signature\",\"content committment\",\"client auth\",\"email protection\"],\
         \"crl_url\":\"{base}/crl/issuing.crl\",\"ocsp_url\":\"{base}/ocsp\",\
         \"issuer_urls\":[\"{base}/ca/issuing.crt\"]}}}}}}\n"
    )
}

/// A running cfssl server.
pub struct Server {
    pub child: Bounded,
    pub addr: SocketAddr,
}

/// Longest any cfssl server may live.
pub const SERVER_LIMIT: Duration = Duration::from_secs(120);

impl Server {
    /// Runs `cfssl <args> -address 127.0.0.1 -port P -loglevel 2` under `timeout`
    /// ([`SERVER_LIMIT`]), so it is bounded even if this process dies without dropping it.
    fn start(ctx: &Ctx, name: &str, args: &[&OsStr]) -> anyhow::Result<Server> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let log_path = ctx.work.join(format!("{name}-{port}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut bounded = Command::new("timeout");
        bounded
            .arg("--kill-after=5")
            .arg(SERVER_LIMIT.as_secs().to_string())
            .arg("cfssl")
            .args(args)
            .args(["-address", "127.0.0.1", "-port"])
            .arg(port.to_string())
            .args(["-loglevel", "2"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = Bounded::spawn(&mut bounded)?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        // A Go server does not mind a bare connect: wait until it accepts.
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > until {
                bail!(
                    "{name} did not listen within 15 s: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Server { child, addr })
    }

    /// `cfssl serve` with the issuing CA's (decrypted) key and [`sign_config`], with the
    /// certificate database when `db_config` is given.
    pub fn sign(ctx: &Ctx, config: &Path, db_config: Option<&Path>) -> anyhow::Result<Server> {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("serve"),
            OsStr::new("-ca"),
            ctx.issuing_cert.as_os_str(),
            OsStr::new("-ca-key"),
            ctx.issuing_key.as_os_str(),
            OsStr::new("-config"),
            config.as_os_str(),
        ];
        if let Some(db) = db_config {
            args.push(OsStr::new("-db-config"));
            args.push(db.as_os_str());
        }
        let name = if db_config.is_some() {
            "cfssl-serve-db"
        } else {
            "cfssl-serve"
        };
        Server::start(ctx, name, &args)
    }

    /// `cfssl ocspserve` answering from `responses`.
    pub fn ocsp(ctx: &Ctx, responses: &Path) -> anyhow::Result<Server> {
        Server::start(
            ctx,
            "cfssl-ocspserve",
            &[
                OsStr::new("ocspserve"),
                OsStr::new("-responses"),
                responses.as_os_str(),
            ],
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_of_big_endian() {
        assert_eq!(super::decimal(&[]), "0");
        assert_eq!(super::decimal(&[0x01, 0x00]), "256");
        assert_eq!(
            super::decimal(&[0xff; 16]),
            u128::MAX.to_string(),
            "2^128 - 1"
        );
    }
}

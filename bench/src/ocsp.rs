//! OCSP: the eKey server's `/ocsp` against `openssl ocsp` and `cfssl ocspserve` on the same
//! certificates, the same responder certificate and key, driven by the same closed-loop
//! client; and eKey's latency at half its peak rate, open loop.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use ring::rand::{SecureRandom, SystemRandom};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::client::{self, OpenResult};
use crate::load::{self, Target};
use crate::util::{self, Bounded, tlv};
use crate::{Ctx, Issued, cfssl};

/// Concurrent connections of the client.
pub const CONCURRENCY: usize = 8;
/// Measured duration per server.
pub const DURATION: Duration = Duration::from_secs(5);
/// Warm-up before each measurement (not counted).
pub const WARMUP: Duration = Duration::from_secs(1);

/// One measured server.
pub struct Row {
    pub server: String,
    pub mode: &'static str,
    pub result: load::LoadResult,
    pub server_cpu_s: f64,
    pub client_cpu_s: f64,
}

impl Row {
    pub fn server_cores(&self) -> f64 {
        self.server_cpu_s / self.result.elapsed.as_secs_f64()
    }
    pub fn client_cores(&self) -> f64 {
        self.client_cpu_s / self.result.elapsed.as_secs_f64()
    }
    /// Responses per second of server CPU.
    pub fn per_cpu_second(&self) -> f64 {
        if self.server_cpu_s > 0.0 {
            self.result.ok as f64 / self.server_cpu_s
        } else {
            0.0
        }
    }
}

/// A sampled response checked by `openssl ocsp -respin`.
pub struct Sample {
    pub server: String,
    pub expected: &'static str,
    pub verdict: String,
    pub ok: bool,
}

pub struct Results {
    pub certificates: usize,
    pub revoked: usize,
    pub rows: Vec<Row>,
    pub samples: Vec<Sample>,
    pub request_len: usize,
    pub response_len: Vec<(String, usize)>,
    pub breakdown: Breakdown,
    /// Like for like with cfssl: requests without a nonce, so eKey answers from its cache
    /// of signed responses and cfssl from its pre-signed ones.
    pub like: Vec<Row>,
    /// Open loop at half of a measured peak.
    pub open: Vec<OpenRow>,
    pub request_len_no_nonce: usize,
    pub cfssl_version: String,
    /// Seconds `cfssl ocsprefresh` took to sign the whole set.
    pub cfssl_presign_s: f64,
}

/// One open-loop run: arrivals at `result.rate` = half of `peak`.
pub struct OpenRow {
    pub server: String,
    pub mode: &'static str,
    pub peak: f64,
    pub result: OpenResult,
    pub server_cpu_s: f64,
    pub client_cpu_s: f64,
}

/// Measured duration of an open-loop run.
pub const OPEN_DURATION: Duration = Duration::from_secs(5);
/// Fewest kept-alive connections of the open-loop client (more than the closed loop's, so
/// that one slow answer holds back few others).
pub const OPEN_CONNECTIONS: usize = 32;
/// Shortest time between two requests on one open-loop connection: more connections at
/// higher rates, so the client timer's 1 ms resolution does not make requests late.
pub const OPEN_MIN_INTERVAL: Duration = Duration::from_millis(4);

/// DER OCSPRequest for one serial: SHA-1 CertID (as most clients send) and, if given, a
/// nonce.
pub fn request(
    issuer_name_hash: &[u8],
    issuer_key_hash: &[u8],
    serial: &[u8],
    nonce: Option<&[u8]>,
) -> Vec<u8> {
    let sha1 = [
        0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00,
    ];
    let mut serial_content = Vec::new();
    if serial[0] & 0x80 != 0 {
        serial_content.push(0);
    }
    serial_content.extend_from_slice(serial);
    let cert_id = tlv(
        0x30,
        &[
            &sha1[..],
            &tlv(0x04, issuer_name_hash),
            &tlv(0x04, issuer_key_hash),
            &tlv(0x02, &serial_content),
        ]
        .concat(),
    );
    let request_list = tlv(0x30, &tlv(0x30, &cert_id));
    let Some(nonce) = nonce else {
        return tlv(0x30, &tlv(0x30, &request_list));
    };
    let nonce_oid = [
        0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02,
    ];
    let nonce_ext = tlv(
        0x30,
        &[&nonce_oid[..], &tlv(0x04, &tlv(0x04, nonce))].concat(),
    );
    let extensions = tlv(0xa2, &tlv(0x30, &nonce_ext));
    tlv(0x30, &tlv(0x30, &[request_list, extensions].concat()))
}

/// An OCSPResponse with responseStatus successful(0) and response bytes.
pub fn successful(body: &[u8]) -> bool {
    if body.len() < 8 || body[0] != 0x30 {
        return false;
    }
    let header = if body[1] < 0x80 {
        2
    } else {
        2 + usize::from(body[1] & 0x7f)
    };
    body.len() > header + 3 && body[header..header + 3] == [0x0a, 0x01, 0x00]
}

/// openssl's index time format.
pub fn index_time(t: DateTime<Utc>) -> String {
    t.format("%y%m%d%H%M%SZ").to_string()
}

/// Writes the `openssl ca` / `openssl ocsp` index of the issued certificates.
fn write_index(path: &Path, issued: &[Issued]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (i, c) in issued.iter().enumerate() {
        match &c.revoked {
            Some((at, reason)) => writeln!(
                f,
                "R\t{}\t{},{}\t{}\tunknown\t/CN=bench {i}",
                index_time(c.not_after),
                index_time(*at),
                reason,
                c.serial_hex.to_uppercase()
            )?,
            None => writeln!(
                f,
                "V\t{}\t\t{}\tunknown\t/CN=bench {i}",
                index_time(c.not_after),
                c.serial_hex.to_uppercase()
            )?,
        }
    }
    f.flush()?;
    std::fs::write(
        path.with_file_name("index.txt.attr"),
        "unique_subject = no\n",
    )?;
    Ok(())
}

/// The eKey server in a child process (`ekey-bench serve`), stopped by closing its stdin.
pub(crate) struct EkeyServer {
    pub child: Bounded,
    pub addr: SocketAddr,
}

impl EkeyServer {
    fn start(ctx: &Ctx) -> anyhow::Result<EkeyServer> {
        Self::start_on(ctx, &ctx.db_url)
    }

    /// The server on database `db_url` (the CA and secrets of `ctx.data_dir`).
    pub(crate) fn start_on(ctx: &Ctx, db_url: &str) -> anyhow::Result<EkeyServer> {
        let mut cmd = Command::new(&ctx.exe);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&ctx.data_dir)
            .arg("--db")
            .arg(db_url)
            .arg("--public-url")
            .arg(&ctx.public_url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = Bounded::spawn(&mut cmd)?;
        let stdout = child.child.stdout.take().context("server stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .context("eKey server did not start within 60 s")?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .with_context(|| format!("unexpected first line from the server: {line:?}"))?
            .parse()?;
        Ok(EkeyServer { child, addr })
    }

    pub(crate) fn stop(mut self) {
        drop(self.child.child.stdin.take());
        let _ = self.child.wait_limited(Duration::from_secs(5));
    }
}

/// `openssl ocsp` as a responder; killed (with its children) when dropped.
struct OpensslResponder {
    child: Bounded,
    addr: SocketAddr,
}

impl OpensslResponder {
    async fn start(
        ctx: &Ctx,
        index: &Path,
        multi: Option<u32>,
        probe: &[u8],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log_path = ctx.work.join(format!("openssl-ocsp-{port}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new("openssl");
        cmd.arg("ocsp")
            .arg("-index")
            .arg(index)
            .arg("-port")
            .arg(port.to_string())
            .arg("-rsigner")
            .arg(&ctx.ocsp_cert)
            .arg("-rkey")
            .arg(&ctx.ocsp_key)
            .arg("-CA")
            .arg(&ctx.issuing_cert)
            .args(["-nmin", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.try_clone()?);
        if let Some(n) = multi {
            cmd.arg("-multi").arg(n.to_string());
        }
        let child = Bounded::spawn(&mut cmd)?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let probe = Target::new(addr, "/", false, &[probe.to_vec()]).requests[0].clone();
        // Ready when a real request is answered. Never a bare connect: that wedges it.
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            match load::once(addr, &probe).await {
                Ok(r) if r.status == 200 && successful(&r.body) => break,
                Ok(r) => bail!("openssl ocsp answered HTTP {} to the probe", r.status),
                Err(_) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    return Err(
                        e.context(format!("openssl ocsp did not come up within 15 s: {log}"))
                    );
                }
            }
        }
        Ok(OpensslResponder { child, addr })
    }
}

/// A free port on 127.0.0.1 (for `openssl ocsp -port`, which takes a number only).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn measure(ctx: &Ctx, server: &str, mode: &'static str, pgid: u32, target: &Target) -> Row {
    let _ = load::run(target, CONCURRENCY, WARMUP, successful).await;
    let s0 = util::group_cpu_seconds(pgid, ctx.ticks);
    let c0 = util::self_cpu_seconds(ctx.ticks);
    let result = load::run(target, CONCURRENCY, DURATION, successful).await;
    let server_cpu_s = util::group_cpu_seconds(pgid, ctx.ticks) - s0;
    let client_cpu_s = util::self_cpu_seconds(ctx.ticks) - c0;
    eprintln!(
        "  {server} ({mode}): {} responses/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
        util::num(result.per_second(), 0),
        result.p_ms(50.0),
        result.p_ms(99.0),
        result.failed
    );
    Row {
        server: server.to_string(),
        mode,
        result,
        server_cpu_s,
        client_cpu_s,
    }
}

/// Fetches one response for `serial` and has `openssl ocsp -respin` verify it.
async fn sample(
    ctx: &Ctx,
    server: &str,
    target: &Target,
    body_index: usize,
    serial_hex: &str,
    expected: &'static str,
) -> anyhow::Result<(Sample, usize)> {
    let r = load::once(target.addr, &target.requests[body_index]).await?;
    ensure!(r.status == 200, "{server}: HTTP {}", r.status);
    let file = ctx.work.join(format!(
        "resp-{}-{expected}.der",
        server.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ));
    std::fs::write(&file, &r.body)?;
    let out = Command::new("openssl")
        .arg("ocsp")
        .arg("-respin")
        .arg(&file)
        .arg("-issuer")
        .arg(&ctx.issuing_cert)
        .arg("-CAfile")
        .arg(&ctx.chain)
        .arg("-serial")
        .arg(format!("0x{serial_hex}"))
        .arg("-no_nonce")
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status_line = text
        .lines()
        .find(|l| l.starts_with("0x"))
        .unwrap_or("")
        .to_string();
    let reason = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Reason: "))
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let verified = text.contains("Response verify OK");
    let ok = out.status.success() && verified && status_line.ends_with(&format!(": {expected}"));
    Ok((
        Sample {
            server: server.to_string(),
            expected,
            verdict: format!(
                "{}{}{reason}",
                if verified {
                    "Response verify OK, "
                } else {
                    "VERIFY FAILED, "
                },
                status_line.split(": ").nth(1).unwrap_or("no status")
            ),
            ok,
        },
        r.body.len(),
    ))
}

/// In-process figures of eKey's OCSP path, one task on one thread, no HTTP.
pub struct Breakdown {
    /// `Authority::ocsp_response` with the status given (parse, encode, sign).
    pub response_per_s: f64,
    /// `Store::certificate` (one SQLite lookup through sqlx).
    pub lookup_per_s: f64,
    /// `CaService::ocsp` (lookup + response): what `/ocsp` runs per request.
    pub service_per_s: f64,
}

/// Measuring time of each breakdown loop.
pub const BREAKDOWN_LOOP: Duration = Duration::from_secs(2);

pub async fn breakdown(
    state: &ekey_server::AppState,
    issued: &[Issued],
    bodies: &[Vec<u8>],
) -> anyhow::Result<Breakdown> {
    let authority = state.ca.authority();
    let n = bodies.len();
    let started = Instant::now();
    let mut i = 0usize;
    while started.elapsed() < BREAKDOWN_LOOP {
        let r = authority.ocsp_response(&bodies[i % n], Utc::now(), &|_| ekey_ca::CertStatus::Good);
        ensure!(successful(&r), "Authority::ocsp_response did not succeed");
        i += 1;
    }
    let response_per_s = i as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut j = 0usize;
    while started.elapsed() < BREAKDOWN_LOOP {
        let c = state.store.certificate(&issued[j % n].serial_hex).await?;
        ensure!(c.is_some(), "certificate not found");
        j += 1;
    }
    let lookup_per_s = j as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut k = 0usize;
    while started.elapsed() < BREAKDOWN_LOOP {
        let r = state
            .ca
            .ocsp(state.store.as_ref(), &bodies[k % n], Utc::now())
            .await;
        ensure!(successful(&r), "CaService::ocsp did not succeed");
        k += 1;
    }
    let service_per_s = k as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "  in process: Authority::ocsp_response {}/s, Store::certificate {}/s, CaService::ocsp {}/s",
        util::num(response_per_s, 0),
        util::num(lookup_per_s, 0),
        util::num(service_per_s, 0)
    );
    Ok(Breakdown {
        response_per_s,
        lookup_per_s,
        service_per_s,
    })
}

/// One DER request per certificate, each with its own nonce.
pub fn build_requests(ctx: &Ctx, issued: &[Issued]) -> anyhow::Result<Vec<Vec<u8>>> {
    build(ctx, issued, true)
}

fn build(ctx: &Ctx, issued: &[Issued], with_nonce: bool) -> anyhow::Result<Vec<Vec<u8>>> {
    let issuing = std::fs::read(&ctx.issuing_cert)?;
    let issuing_der = crate::pem_to_der(&String::from_utf8_lossy(&issuing))?;
    let (_, cert) = X509Certificate::from_der(&issuing_der)?;
    let name_hash = digest(&SHA1_FOR_LEGACY_USE_ONLY, cert.subject().as_raw());
    let key_hash = digest(
        &SHA1_FOR_LEGACY_USE_ONLY,
        cert.public_key().subject_public_key.data.as_ref(),
    );
    let rng = SystemRandom::new();
    let mut bodies = Vec::with_capacity(issued.len());
    for c in issued {
        let mut nonce = [0u8; 16];
        rng.fill(&mut nonce).map_err(|_| anyhow::anyhow!("rng"))?;
        let serial = ekey_ca::Serial::from_hex(&c.serial_hex)?;
        bodies.push(request(
            name_hash.as_ref(),
            key_hash.as_ref(),
            serial.as_bytes(),
            with_nonce.then_some(&nonce[..]),
        ));
    }
    Ok(bodies)
}

pub async fn run(
    ctx: &Ctx,
    issued: &[Issued],
    bodies: &[Vec<u8>],
    breakdown: Breakdown,
) -> anyhow::Result<Results> {
    let index: PathBuf = ctx.work.join("ocsp").join("index.txt");
    std::fs::create_dir_all(index.parent().context("index dir")?)?;
    write_index(&index, issued)?;
    let good = issued
        .iter()
        .position(|c| c.revoked.is_none())
        .context("no good certificate")?;
    let revoked = issued
        .iter()
        .position(|c| c.revoked.is_some())
        .context("no revoked certificate")?;

    let mut rows = Vec::new();
    let mut samples = Vec::new();
    let mut response_len = Vec::new();
    let mut like = Vec::new();
    let mut open = Vec::new();
    let plain = build(ctx, issued, false)?;

    // eKey.
    let server = EkeyServer::start(ctx)?;
    let pgid = server.child.pid();
    for (keep_alive, mode) in [(true, "keep-alive"), (false, "new connection per request")] {
        let target = Target::new(server.addr, "/ocsp", keep_alive, bodies);
        rows.push(measure(ctx, "eKey /ocsp", mode, pgid, &target).await);
    }
    // Like for like with cfssl's pre-signed responses: no nonce, answered from eKey's cache
    // of signed responses (the warm-up fills it; every answer still checks the revocation
    // counter in the database).
    for (keep_alive, mode) in [
        (true, "keep-alive, no nonce"),
        (false, "new connection per request, no nonce"),
    ] {
        let target = Target::new(server.addr, "/ocsp", keep_alive, &plain);
        like.push(measure(ctx, "eKey /ocsp", mode, pgid, &target).await);
    }
    // Latency at half the peak: open loop at a fixed arrival rate.
    let peak_nonce = rows[0].result.per_second();
    let peak_plain = like[0].result.per_second();
    for (peak, reqs, mode) in [
        (peak_nonce, bodies, "keep-alive, nonce (signed per request)"),
        (peak_plain, &plain[..], "keep-alive, no nonce (cached)"),
    ] {
        let target = Target::new(server.addr, "/ocsp", true, reqs);
        open.push(open_row(ctx, "eKey /ocsp", mode, peak, pgid, &target).await);
    }
    let target = Target::new(server.addr, "/ocsp", false, bodies);
    for (i, expected) in [(good, "good"), (revoked, "revoked")] {
        let (s, len) = sample(
            ctx,
            "eKey /ocsp",
            &target,
            i,
            &issued[i].serial_hex,
            expected,
        )
        .await?;
        samples.push(s);
        if expected == "good" {
            response_len.push(("eKey /ocsp".to_string(), len));
        }
    }
    server.stop();

    // openssl ocsp: one process, then `-multi 2` (one per core).
    for multi in [None, Some(2)] {
        let name = match multi {
            None => "openssl ocsp".to_string(),
            Some(n) => format!("openssl ocsp -multi {n}"),
        };
        let responder = OpensslResponder::start(ctx, &index, multi, &bodies[good]).await?;
        let target = Target::new(responder.addr, "/", false, bodies);
        let pgid = responder.child.pid();
        rows.push(
            measure(
                ctx,
                &name,
                "new connection per request (openssl's only mode)",
                pgid,
                &target,
            )
            .await,
        );
        if multi.is_none() {
            for (i, expected) in [(good, "good"), (revoked, "revoked")] {
                let (s, len) =
                    sample(ctx, &name, &target, i, &issued[i].serial_hex, expected).await?;
                samples.push(s);
                if expected == "good" {
                    response_len.push((name.clone(), len));
                }
            }
        }
        drop(responder);
    }

    // cfssl ocspserve: responses pre-signed by `cfssl ocsprefresh` with the same responder
    // certificate and key; it looks the serial up in memory and ignores nonces.
    let ders = certificate_ders(ctx, issued).await?;
    let started = Instant::now();
    let responses = cfssl::presign_ocsp(ctx, issued, &ders).await?;
    let cfssl_presign_s = started.elapsed().as_secs_f64();
    let name = "cfssl ocspserve";
    let responder = cfssl::Server::ocsp(ctx, &responses)?;
    let pgid = responder.pid();
    for (keep_alive, mode) in [
        (true, "keep-alive, no nonce"),
        (false, "new connection per request, no nonce"),
    ] {
        let target = Target::new(responder.addr, "/", keep_alive, &plain);
        like.push(measure(ctx, name, mode, pgid, &target).await);
    }
    let peak = like
        .iter()
        .find(|r| r.server == name)
        .map_or(0.0, |r| r.result.per_second());
    let target = Target::new(responder.addr, "/", true, &plain);
    open.push(
        open_row(
            ctx,
            name,
            "keep-alive, no nonce (pre-signed)",
            peak,
            pgid,
            &target,
        )
        .await,
    );
    let target = Target::new(responder.addr, "/", false, &plain);
    for (i, expected) in [(good, "good"), (revoked, "revoked")] {
        let (s, len) = sample(ctx, name, &target, i, &issued[i].serial_hex, expected).await?;
        samples.push(s);
        if expected == "good" {
            response_len.push((name.to_string(), len));
        }
    }
    drop(responder);

    Ok(Results {
        certificates: issued.len(),
        revoked: issued.iter().filter(|c| c.revoked.is_some()).count(),
        rows,
        samples,
        request_len: bodies[good].len(),
        response_len,
        breakdown,
        like,
        open,
        request_len_no_nonce: plain[good].len(),
        cfssl_version: cfssl::version(),
        cfssl_presign_s,
    })
}

/// The DER of every certificate of the set, from eKey's database.
async fn certificate_ders(ctx: &Ctx, issued: &[Issued]) -> anyhow::Result<Vec<Vec<u8>>> {
    let store = ekey_store::open(&ctx.db_url).await?;
    let mut ders = Vec::with_capacity(issued.len());
    for c in issued {
        let record = store
            .certificate(&c.serial_hex)
            .await?
            .with_context(|| format!("certificate {} not in the database", c.serial_hex))?;
        ders.push(record.der.context("certificate not signed")?);
    }
    Ok(ders)
}

fn ocsp_ok(status: u16, body: &[u8]) -> bool {
    status == 200 && successful(body)
}

/// Open loop against `target` (kept-alive connections) at half of `peak`; `pgid` is the
/// server's process group (for its CPU).
async fn open_row(
    ctx: &Ctx,
    server: &str,
    mode: &'static str,
    peak: f64,
    pgid: u32,
    target: &Target,
) -> OpenRow {
    let rate = (peak / 2.0).max(1.0);
    let connections =
        OPEN_CONNECTIONS.max((rate * OPEN_MIN_INTERVAL.as_secs_f64()).ceil() as usize);
    let s0 = util::group_cpu_seconds(pgid, ctx.ticks);
    let c0 = util::self_cpu_seconds(ctx.ticks);
    let result = client::open_loop(
        target.addr,
        target.requests.clone(),
        rate,
        connections,
        OPEN_DURATION,
        ocsp_ok,
    )
    .await;
    let server_cpu_s = util::group_cpu_seconds(pgid, ctx.ticks) - s0;
    let client_cpu_s = util::self_cpu_seconds(ctx.ticks) - c0;
    eprintln!(
        "  {server} ({mode}), open loop at {} /s (half of {}) on {connections} connections: {} responses/s, p50 {:.2} ms, p99 {:.2} ms, {} behind schedule, {} failed",
        util::num(rate, 0),
        util::num(peak, 0),
        util::num(result.load.per_second(), 0),
        result.load.p_ms(50.0),
        result.load.p_ms(99.0),
        result.behind,
        result.load.failed
    );
    OpenRow {
        server: server.to_string(),
        mode,
        peak,
        result,
        server_cpu_s,
        client_cpu_s,
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**missed**" }
}

/// The cfssl comparison, the open-loop latency and the goals of the OCSP section (after
/// the openssl tables in RESULTS.md).
pub fn render(s: &mut String, o: &Results) {
    use std::fmt::Write;
    let num = util::num;
    let _ = writeln!(
        s,
        "### Like for like with `cfssl ocspserve`: requests without a nonce\n\n\
         `cfssl ocspserve` ({}) does not sign anything while it serves: it answers from responses \
         signed beforehand, looked up by serial in memory, and **ignores nonces** (a request with a \
         nonce gets the same pre-signed response, without the nonce). Its responses were made the way \
         a cfssl deployment makes them: the same {} certificates (PEM, status, reason, revocation \
         time) were written into cfssl's SQLite certificate database (its own schema), `cfssl \
         ocsprefresh` signed a response for each with **the same delegated responder certificate \
         and key** ({:.2} s for the set, default 96 h validity) and `cfssl ocspdump` wrote them to \
         the `-responses` file. So that both sides do the same work, eKey is measured here with the \
         same requests **without a nonce** ({} bytes): eKey then answers from its cache of signed \
         responses (filled during the warm-up; each answer still reads the revocation counter in \
         SQLite, so a revocation is seen at once; cfssl's answers change only when responses are \
         signed and loaded again). Same client, {} connections, {} s warm-up + {} s each. Go's \
         HTTP server keeps connections alive, so both are measured kept-alive and with a new \
         connection per request.\n",
        o.cfssl_version,
        o.certificates,
        o.cfssl_presign_s,
        o.request_len_no_nonce,
        CONCURRENCY,
        WARMUP.as_secs(),
        DURATION.as_secs(),
    );
    crate::report::ocsp_table(s, &o.like);
    let like = |server: &str, keep: bool| {
        o.like
            .iter()
            .find(|r| r.server == server && r.mode.starts_with("keep-alive") == keep)
    };
    let _ = writeln!(
        s,
        "\n| Comparison (no nonce) | Measure | eKey | cfssl ocspserve | eKey / cfssl | Better |\n|---|---|---:|---:|---:|---|"
    );
    for keep in [true, false] {
        if let (Some(e), Some(c)) = (like("eKey /ocsp", keep), like("cfssl ocspserve", keep)) {
            let conn = if keep {
                "keep-alive"
            } else {
                "new connection per request"
            };
            for (measure, ours, peer, higher) in [
                (
                    "responses/s",
                    e.result.per_second(),
                    c.result.per_second(),
                    true,
                ),
                (
                    "p99 latency, ms",
                    e.result.p_ms(99.0),
                    c.result.p_ms(99.0),
                    false,
                ),
                (
                    "responses per server CPU-second",
                    e.per_cpu_second(),
                    c.per_cpu_second(),
                    true,
                ),
            ] {
                let f = |v: f64| {
                    if higher { num(v, 0) } else { format!("{v:.2}") }
                };
                let _ = writeln!(
                    s,
                    "| {conn} | {measure} | {} | {} | {} | {} |",
                    f(ours),
                    f(peer),
                    util::ratio(ours, peer),
                    if higher { "higher" } else { "lower" }
                );
            }
        }
    }

    let _ = writeln!(
        s,
        "\n### Latency at half of the peak rate (open loop)\n\n\
         The closed-loop client above sends as fast as answers come, so its latencies are those of \
         a saturated server. Here requests arrive at a fixed rate, half of the peak the same server \
         reached kept-alive above, on C kept-alive connections (at least {}, and enough that each \
         sends at most one request every {} ms): connection `w` sends its k-th request at \
         `(w + k·C) / rate` seconds (a request due within the next millisecond, the client \
         timer's resolution, leaves at once), a random one of the {} requests, for {} s. A request \
         that leaves on time is timed from when it was sent; one held back because the previous \
         answer on its connection had not come yet (\"behind schedule\") is timed from its \
         scheduled time, so queueing shows in the percentiles (no coordinated omission).\n",
        OPEN_CONNECTIONS,
        OPEN_MIN_INTERVAL.as_millis(),
        o.certificates,
        OPEN_DURATION.as_secs()
    );
    let _ = writeln!(
        s,
        "| Server | Requests | Peak (closed loop), /s | Offered rate, /s | Connections | Answered, /s | p50 ms | p99 ms | p99.9 ms | Behind schedule | Server CPU (cores) | Client CPU (cores) | Failed |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &o.open {
        let l = &r.result.load;
        let secs = l.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {}{} |",
            r.server,
            r.mode,
            num(r.peak, 0),
            num(r.result.rate, 0),
            r.result.connections,
            num(l.per_second(), 0),
            l.p_ms(50.0),
            l.p_ms(99.0),
            l.p_ms(99.9),
            num(r.result.behind as f64, 0),
            r.server_cpu_s / secs,
            r.client_cpu_s / secs,
            l.failed,
            l.first_error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }

    // Goals (issue 7).
    let rate = |rows: &[Row], server: &str, keep: bool| {
        rows.iter()
            .find(|r| r.server == server && r.mode.starts_with("keep-alive") == keep)
            .map_or(0.0, |r| r.result.per_second())
    };
    let e_ka = rate(&o.rows[..], "eKey /ocsp", true);
    let e_nc = rate(&o.rows[..], "eKey /ocsp", false);
    let p1 = rate(&o.rows[..], "openssl ocsp", false);
    let p2 = rate(&o.rows[..], "openssl ocsp -multi 2", false);
    let l_ka = rate(&o.like[..], "eKey /ocsp", true);
    let l_nc = rate(&o.like[..], "eKey /ocsp", false);
    let c_ka = rate(&o.like[..], "cfssl ocspserve", true);
    let c_nc = rate(&o.like[..], "cfssl ocspserve", false);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let _ = writeln!(
        s,
        "\n### OCSP goals\n\n| Goal | Measured | Verdict |\n|---|---|---|"
    );
    let _ = writeln!(
        s,
        "| Responses/s ≥ 3× `openssl ocsp` (both sign every response) | eKey kept-alive: {} of `openssl ocsp`, {} of `-multi 2`; eKey with a new connection per request (openssl's only mode): {} and {} | {} |",
        util::ratio(e_ka, p1),
        util::ratio(e_ka, p2),
        util::ratio(e_nc, p1),
        util::ratio(e_nc, p2),
        verdict(ratio(e_ka, p1) >= 3.0 && ratio(e_ka, p2) >= 3.0)
    );
    let _ = writeln!(
        s,
        "| Responses/s ≥ 2× `cfssl ocspserve` (no nonce: eKey's cache vs cfssl's pre-signed responses) | kept-alive {}; new connection per request {} | {} |",
        util::ratio(l_ka, c_ka),
        util::ratio(l_nc, c_nc),
        verdict(ratio(l_ka, c_ka) >= 2.0)
    );
    for r in o.open.iter().filter(|r| r.server == "eKey /ocsp") {
        let p99 = r.result.load.p_ms(99.0);
        let _ = writeln!(
            s,
            "| p99 ≤ 2 ms at half of the peak ({}) | p99 {p99:.2} ms at {} /s | {} |",
            r.mode,
            num(r.result.rate, 0),
            verdict(p99 <= 2.0 && r.result.load.failed == 0)
        );
    }
    // Why 3× openssl is out of reach here: the CPU budget per response it would need.
    if let Some(e) = o
        .rows
        .iter()
        .find(|r| r.server == "eKey /ocsp" && r.mode == "keep-alive")
        .filter(|_| p1 > 0.0)
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        let server_us = 1e6 / e.per_cpu_second().max(1e-9);
        let client_us = e.client_cpu_s / (e.result.ok.max(1) as f64) * 1e6;
        let budget = cores * 1e6 / (3.0 * p1) - client_us;
        let sign_us = 1e6 / o.breakdown.response_per_s.max(1e-9);
        let _ = writeln!(
            s,
            "\nWhat 3× `openssl ocsp` would take on this machine: {} responses/s on {cores:.0} cores \
             shared with the client (which spends ~{client_us:.0} µs per request) leaves at most \
             ~{budget:.0} µs of server CPU per response. eKey's server spent {server_us:.0} µs per \
             response kept-alive, of which ~{sign_us:.0} µs is `Authority::ocsp_response` alone \
             (parse, build, sign, encode); `openssl ocsp` without `-multi` uses one core at most. The \
             open-loop percentiles are sensitive to anything else running on the machine (another \
             process preempting the server for a scheduler slice shows up as milliseconds in p99); \
             cfssl's row above was measured the same way.",
            num(3.0 * p1, 0),
        );
    }
    s.push('\n');
}

//! Issuance: `Authority::issue` against raw P-256 signing with the same CA key, against
//! `openssl speed`, and CSR-to-certificate against `openssl ca -infiles` on the same CSRs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use chrono::Utc;
use ekey_ca::{Authority, CaSigner, FileKey, IssueRequest, Passphrase, Serial, parse_csr};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Ctx;
use crate::util::{self, Bounded};

/// How long each in-process loop runs.
pub const LOOP: Duration = Duration::from_secs(3);
/// CSRs for the `openssl ca` comparison (and certificates for the OCSP set).
pub const CSRS: usize = 1000;

/// One enterprise's CSR.
pub struct CsrItem {
    pub name: String,
    pub code: String,
    pub pem: String,
}

pub struct Results {
    pub issue_per_s: f64,
    pub issue_count: u64,
    pub cert_len: usize,
    pub ring_sign_per_s: f64,
    pub ring_verify_per_s: f64,
    pub speed_sign_per_s: f64,
    pub speed_verify_per_s: f64,
    pub csr_issue_per_s: f64,
    pub openssl_ca_per_s: f64,
    pub openssl_ca_secs: f64,
    pub openssl_ca_cert_len: usize,
    pub verify_ours: String,
    pub verify_openssl: String,
}

/// A valid unified social credit code from 17 characters.
pub fn credit_code(prefix17: &str) -> String {
    const CS: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    let mut sum = 0usize;
    let mut w = 1usize;
    for c in prefix17.chars() {
        sum += CS.find(c).unwrap_or(0) * w;
        w = w * 3 % 31;
    }
    let check = (31 - sum % 31) % 31;
    format!("{prefix17}{}", CS.as_bytes()[check] as char)
}

/// `n` P-256 CSRs with the enterprise subject (C, O, CN, serialNumber), each its own key.
pub fn make_csrs(n: usize) -> anyhow::Result<Vec<CsrItem>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("基准测试第{i:04}号进出口有限公司");
        let code = credit_code(&format!("91310000MA1{i:06}"));
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CountryName,
            DnValue::PrintableString("CN".try_into()?),
        );
        dn.push(DnType::OrganizationName, DnValue::Utf8String(name.clone()));
        dn.push(DnType::CommonName, DnValue::Utf8String(name.clone()));
        dn.push(
            DnType::CustomDnType(vec![2, 5, 4, 5]),
            DnValue::PrintableString(code.as_str().try_into()?),
        );
        params.distinguished_name = dn;
        let pem = params.serialize_request(&key)?.pem()?;
        out.push(CsrItem { name, code, pem });
    }
    Ok(out)
}

/// The `openssl ca` configuration for the eKey issuing CA, the same profile as eKey's
/// enterprise certificates (key usage, EKU, CRL DP, AIA, key identifiers, 730 days).
pub fn openssl_ca_config(ctx: &Ctx, database: &Path) -> String {
    let base = &ctx.public_url;
    format!(
        "[ ca ]\ndefault_ca = bench\n\n[ bench ]\ndatabase = {db}\nnew_certs_dir = {dir}/newcerts\n\
         certificate = {cert}\nprivate_key = {key}\nrand_serial = yes\ncrlnumber = {dir}/crlnumber\n\
         default_days = 730\ndefault_crl_hours = 24\ndefault_md = sha256\npolicy = enterprise\n\
         unique_subject = no\nemail_in_dn = no\ncopy_extensions = none\nx509_extensions = enterprise_ext\n\
         crl_extensions = crl_ext\nutf8 = yes\nstring_mask = utf8only\n\n\
         [ enterprise ]\ncountryName = optional\norganizationName = optional\ncommonName = supplied\n\
         serialNumber = optional\n\n\
         [ enterprise_ext ]\nbasicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, nonRepudiation\n\
         extendedKeyUsage = clientAuth, emailProtection\nsubjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid:always\ncrlDistributionPoints = URI:{base}/crl/issuing.crl\n\
         authorityInfoAccess = OCSP;URI:{base}/ocsp, caIssuers;URI:{base}/ca/issuing.crt\n\n\
         [ crl_ext ]\nauthorityKeyIdentifier = keyid:always\n",
        db = database.display(),
        dir = database
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        cert = ctx.issuing_cert.display(),
        key = ctx.issuing_key.display(),
    )
}

/// Prepares an `openssl ca` directory around `database`.
pub fn openssl_ca_dir(ctx: &Ctx, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir.join("newcerts"))?;
    let db = dir.join("index.txt");
    if !db.exists() {
        std::fs::write(&db, "")?;
    }
    std::fs::write(dir.join("index.txt.attr"), "unique_subject = no\n")?;
    std::fs::write(dir.join("crlnumber"), "01\n")?;
    std::fs::write(dir.join("ca.cnf"), openssl_ca_config(ctx, &db))?;
    Ok(dir.join("ca.cnf"))
}

fn verify_cert(ctx: &Ctx, pem: &Path) -> String {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-x509_strict")
        .arg("-CAfile")
        .arg(&ctx.root_cert)
        .arg("-untrusted")
        .arg(&ctx.issuing_cert)
        .arg(pem)
        .output();
    match out {
        Ok(o) if o.status.success() => "OK".into(),
        Ok(o) => format!(
            "FAILED: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ),
        Err(e) => format!("FAILED: {e}"),
    }
}

pub fn run(ctx: &Ctx, authority: &Authority, csrs: &[CsrItem]) -> anyhow::Result<Results> {
    let subject = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&subject);
    let name = "某某进出口有限公司";
    let code = "91310000MA1FL5LX3X";

    // a. Authority::issue, one thread.
    let now = Utc::now();
    let started = Instant::now();
    let mut count = 0u64;
    let mut last = Vec::new();
    while started.elapsed() < LOOP {
        let issued = authority.issue(IssueRequest::new(
            spki.clone(),
            name,
            code,
            Serial::random()?,
            now,
        ))?;
        count += 1;
        if count == 1 {
            last = issued.der;
        }
    }
    let issue_per_s = count as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "  Authority::issue: {} certificates/s",
        util::num(issue_per_s, 0)
    );
    let ours_pem = ctx.work.join("ours-first.pem");
    std::fs::write(&ours_pem, crate::der_to_pem("CERTIFICATE", &last))?;
    let verify_ours = verify_cert(ctx, &ours_pem);

    // b. Raw P-256 signing with the same CA key, of a real TBSCertificate.
    let key = FileKey::load(
        &ctx.ca_dir.join(ekey_ca::files::ISSUING_KEY),
        &Passphrase::new(ctx.passphrase.clone())?,
    )?;
    let (_, cert) = X509Certificate::from_der(&last)?;
    let tbs = cert.tbs_certificate.as_ref().to_vec();
    let started = Instant::now();
    let mut signs = 0u64;
    while started.elapsed() < LOOP {
        for _ in 0..64 {
            std::hint::black_box(key.sign(std::hint::black_box(&tbs))?);
        }
        signs += 64;
    }
    let ring_sign_per_s = signs as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "  raw P-256 sign (ring): {}/s",
        util::num(ring_sign_per_s, 0)
    );

    // b'. The check every issuance ends with: verify the new signature with the CA key.
    let signature = cert.signature_value.data.to_vec();
    let spki = key.spki_der().to_vec();
    let started = Instant::now();
    let mut verifies = 0u64;
    while started.elapsed() < LOOP {
        for _ in 0..64 {
            ekey_ca::verify_signature(
                std::hint::black_box(&spki),
                ekey_ca::KeyAlgorithm::EcdsaP256,
                &tbs,
                &signature,
            )?;
        }
        verifies += 64;
    }
    let ring_verify_per_s = verifies as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "  P-256 verify (ekey_ca::verify_signature): {}/s",
        util::num(ring_verify_per_s, 0)
    );

    // c. openssl speed, one process.
    let speed = util::run(
        Command::new("openssl").args(["speed", "-seconds", "3", "-mr", "ecdsap256"]),
        Duration::from_secs(30),
    )?;
    let f4 = speed
        .lines()
        .find(|l| l.starts_with("+F4:"))
        .context("no +F4 line in openssl speed -mr output")?;
    let parts: Vec<&str> = f4.split(':').collect();
    ensure!(parts.len() >= 5, "unexpected openssl speed line {f4}");
    let speed_sign_per_s: f64 = parts[3].parse()?;
    let speed_verify_per_s: f64 = parts[4].parse()?;
    eprintln!(
        "  openssl speed ecdsap256: sign {}/s",
        util::num(speed_sign_per_s, 0)
    );

    // d. The same CSRs: parse + verify + subject check + issue, in process.
    // Round after round over the same CSRs for the loop time (one round is ~0.2 s).
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < LOOP {
        for c in csrs {
            let csr = parse_csr(c.pem.as_bytes())?;
            csr.check_subject(&c.name, &c.code)?;
            std::hint::black_box(authority.issue(IssueRequest::new(
                csr.spki_der,
                c.name.as_str(),
                c.code.as_str(),
                Serial::random()?,
                now,
            ))?);
        }
        done += csrs.len() as u64;
    }
    let csr_issue_per_s = done as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "  parse_csr + issue: {} certificates/s",
        util::num(csr_issue_per_s, 0)
    );

    // e. openssl ca, one process, -infiles with all CSRs; best of two fresh CA directories
    // (a single run of ~1 s varies by up to 2× on this VM).
    let mut best: Option<(f64, String)> = None;
    for round in 0..2 {
        let dir = ctx.work.join(format!("openssl-ca-{round}"));
        let cnf = openssl_ca_dir(ctx, &dir)?;
        let csr_dir = dir.join("csr");
        std::fs::create_dir_all(&csr_dir)?;
        let mut files = Vec::new();
        for (i, c) in csrs.iter().enumerate() {
            let p = csr_dir.join(format!("{i:04}.csr"));
            std::fs::write(&p, &c.pem)?;
            files.push(p);
        }
        let mut cmd = Command::new("openssl");
        cmd.arg("ca")
            .arg("-batch")
            .arg("-config")
            .arg(&cnf)
            .arg("-notext")
            .arg("-infiles")
            .args(&files)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let out = Bounded::spawn(&mut cmd)?.wait_output(Duration::from_secs(120))?;
        let secs = started.elapsed().as_secs_f64();
        ensure!(
            out.status.success(),
            "openssl ca failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Certificates on stdout: OpenSSL 3.0's `-out` keeps only the last of `-infiles`.
        let issued = String::from_utf8_lossy(&out.stdout).into_owned();
        if best.as_ref().is_none_or(|(b, _)| secs < *b) {
            best = Some((secs, issued));
        }
    }
    let (openssl_ca_secs, issued) = best.context("openssl ca did not run")?;
    let n = issued.matches("-----BEGIN CERTIFICATE-----").count();
    ensure!(
        n == csrs.len(),
        "openssl ca issued {n} of {} certificates",
        csrs.len()
    );
    let openssl_ca_per_s = n as f64 / openssl_ca_secs;
    eprintln!(
        "  openssl ca -infiles: {} certificates/s",
        util::num(openssl_ca_per_s, 0)
    );
    let first_end = issued
        .find("-----END CERTIFICATE-----")
        .context("no certificate")?
        + "-----END CERTIFICATE-----".len();
    let first = &issued[..first_end];
    let openssl_first = ctx.work.join("openssl-first.pem");
    std::fs::write(&openssl_first, format!("{first}\n"))?;
    let verify_openssl = verify_cert(ctx, &openssl_first);
    let openssl_ca_cert_len = crate::pem_to_der(first)?.len();

    Ok(Results {
        issue_per_s,
        issue_count: count,
        cert_len: last.len(),
        ring_sign_per_s,
        ring_verify_per_s,
        speed_sign_per_s,
        speed_verify_per_s,
        csr_issue_per_s,
        openssl_ca_per_s,
        openssl_ca_secs,
        openssl_ca_cert_len,
        verify_ours,
        verify_openssl,
    })
}

//! Portal reads: the enterprise's request status page (HTML, session cookie) and
//! `GET /api/v1/requests/{id}` (bearer token) served by `ekey serve` on SQLite, against nginx
//! serving the very bytes of that page as a static file, all loaded by wrk with the same
//! settings. Logins (`POST /api/v1/sessions`, argon2id on purpose) are measured apart, next to
//! the raw argon2 rate in process with the server's own function and parameters.
//!
//! wrk is only ever pointed at eKey and nginx: its address probe wedges `openssl ocsp`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::lifecycle::{self, Instance};
use crate::util::{self, Bounded};

pub const THREADS: usize = 2;
pub const CONNECTIONS: usize = 64;
pub const DURATION: Duration = Duration::from_secs(8);
pub const WARMUP: Duration = Duration::from_secs(2);
pub const LOGIN_CONNECTIONS: usize = 8;
pub const LOGIN_DURATION: Duration = Duration::from_secs(5);
/// In-process argon2 loops.
pub const ARGON2_LOOP: Duration = Duration::from_secs(3);

/// What wrk printed, parsed.
#[derive(Clone, Debug, Default)]
pub struct Wrk {
    pub requests: u64,
    pub seconds: f64,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub bytes_read: f64,
    pub non_2xx_3xx: u64,
    pub socket_errors: u64,
    /// CPU seconds the server (all its processes) used during the measured run.
    pub server_cpu_s: f64,
    /// Of which in the kernel.
    pub server_sys_s: f64,
    /// Context switches of the server's threads during the run.
    pub server_ctxt: u64,
}

impl Wrk {
    pub fn per_cpu_second(&self) -> f64 {
        if self.server_cpu_s > 0.0 {
            self.requests as f64 / self.server_cpu_s
        } else {
            0.0
        }
    }
    pub fn server_cores(&self) -> f64 {
        self.server_cpu_s / self.seconds.max(1e-9)
    }
    /// Server CPU per request, µs.
    pub fn cpu_us_per_request(&self) -> f64 {
        self.server_cpu_s * 1e6 / (self.requests.max(1) as f64)
    }
    pub fn kernel_share(&self) -> f64 {
        self.server_sys_s / self.server_cpu_s.max(1e-9)
    }
    pub fn ctxt_per_request(&self) -> f64 {
        self.server_ctxt as f64 / (self.requests.max(1) as f64)
    }
}

/// CPU (user + kernel), kernel CPU and context switches of a process group so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStat {
    pub cpu_s: f64,
    pub sys_s: f64,
    pub ctxt: u64,
}

/// Sums /proc for every live process of group `pgid` (context switches: every live thread).
pub fn group_stat(pgid: u32, ticks: f64) -> ProcStat {
    let mut out = ProcStat::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        if get(2) != u64::from(pgid) {
            continue;
        }
        out.cpu_s += (get(11) + get(12)) as f64 / ticks;
        out.sys_s += get(12) as f64 / ticks;
        if let Ok(tasks) = std::fs::read_dir(e.path().join("task")) {
            for t in tasks.flatten() {
                let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                for line in status.lines() {
                    if let Some(v) = line
                        .strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                    {
                        out.ctxt += v.trim().parse::<u64>().unwrap_or(0);
                    }
                }
            }
        }
    }
    out
}

pub struct Row {
    pub name: String,
    pub server: &'static str,
    /// Bytes of one response (head + body) as probed before the run.
    pub response_bytes: usize,
    pub wrk: Wrk,
}

pub struct Results {
    pub page_bytes: usize,
    pub rows: Vec<Row>,
    pub logins: Wrk,
    pub argon2_params: String,
    pub argon2_one_thread: f64,
    pub argon2_all_threads: f64,
    pub threads: usize,
    pub nginx_version: String,
    pub wrk_version: String,
}

fn parse_time_ms(v: &str) -> Option<f64> {
    let v = v.trim();
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => return None,
    })
}

fn parse_bytes(v: &str) -> Option<f64> {
    let v = v.trim().trim_end_matches(',');
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let k = 1024f64;
    Some(match unit {
        "B" => n,
        "KB" => n * k,
        "MB" => n * k * k,
        "GB" => n * k * k * k,
        "TB" => n * k * k * k * k,
        _ => return None,
    })
}

/// Parses wrk 4's report (with `--latency`).
pub fn parse_wrk(out: &str) -> anyhow::Result<Wrk> {
    let mut w = Wrk::default();
    for line in out.lines().map(str::trim) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["50%", v] => w.p50_ms = parse_time_ms(v).context("p50")?,
            ["99%", v] => w.p99_ms = parse_time_ms(v).context("p99")?,
            [n, "requests", "in", secs, bytes, "read"] => {
                w.requests = n.parse()?;
                w.seconds = parse_time_ms(secs.trim_end_matches(',')).context("duration")? / 1000.0;
                w.bytes_read = parse_bytes(bytes).context("bytes read")?;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => w.non_2xx_3xx = n.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                w.socket_errors = rest
                    .iter()
                    .filter_map(|t| t.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            ["Requests/sec:", v] => w.per_s = v.parse()?,
            _ => {}
        }
    }
    ensure!(
        w.requests > 0 && w.per_s > 0.0,
        "no requests in wrk's report:\n{out}"
    );
    ensure!(
        w.p99_ms > 0.0,
        "no latency distribution in wrk's report:\n{out}"
    );
    Ok(w)
}

/// Runs wrk against `url` (127.0.0.1 only) for `duration`; the server's CPU is read from
/// `server_cpu` before and after.
fn wrk(
    url: &str,
    threads: usize,
    connections: usize,
    duration: Duration,
    headers: &[String],
    script: Option<&Path>,
    server: &dyn Fn() -> ProcStat,
) -> anyhow::Result<Wrk> {
    ensure!(
        url.starts_with("http://127.0.0.1:"),
        "wrk only loads 127.0.0.1"
    );
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs()))
        .arg("--latency")
        .args(["--timeout", "10s"]);
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let before = server();
    let out = Bounded::spawn(&mut cmd)?.wait_output(duration + Duration::from_secs(30))?;
    let after = server();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "wrk failed ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut w = parse_wrk(&text)?;
    w.server_cpu_s = after.cpu_s - before.cpu_s;
    w.server_sys_s = after.sys_s - before.sys_s;
    w.server_ctxt = after.ctxt.saturating_sub(before.ctxt);
    Ok(w)
}

/// One URL loaded by wrk, and how to read its server's CPU.
struct LoadTarget<'a> {
    name: &'static str,
    server: &'static str,
    url: String,
    headers: Vec<String>,
    /// Bytes of one 200 response (head + body).
    bytes: usize,
    stat: &'a dyn Fn() -> ProcStat,
}

/// One probe with reqwest: status, bytes of head + body, body.
async fn probe(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, String)],
) -> anyhow::Result<(u16, usize, Vec<u8>)> {
    let mut b = client.get(url);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    let res = b.send().await?;
    let status = res.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .len()
        + 2;
    for (k, v) in res.headers() {
        head += k.as_str().len() + 2 + v.len() + 2;
    }
    let body = res.bytes().await?.to_vec();
    Ok((status.as_u16(), head + body.len(), body))
}

/// nginx with a minimal configuration in its own directory, serving `www/` on 127.0.0.1.
struct Nginx {
    child: Bounded,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Nginx {
    fn binary() -> String {
        std::env::var("EKEY_BENCH_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into())
    }

    fn start(file_name: &str, content: &[u8]) -> anyhow::Result<Nginx> {
        use std::os::unix::fs::PermissionsExt;
        // Its own directory under /tmp, world-readable: workers run as `nobody` when the
        // master is root.
        let dir = tempfile::Builder::new()
            .prefix("ekey-bench-nginx-")
            .tempdir_in("/tmp")?
            .keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let www = dir.join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o755))?;
        std::fs::write(www.join(file_name), content)?;
        std::fs::set_permissions(www.join(file_name), std::fs::Permissions::from_mode(0o644))?;
        let port = lifecycle::free_port()?;
        // In a user namespace (bench/run without root) `nobody` is not mapped: stay root there.
        let full_root = std::fs::read_to_string("/proc/self/uid_map")
            .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
            .unwrap_or(false);
        let user = if full_root { "" } else { "user root root;\n" };
        let conf = format!(
            "{user}worker_processes 2;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n\
             \x20 types {{ text/html html; }}\n  default_type application/octet-stream;\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    root {dir}/www;\n  }}\n}}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), &conf)?;
        let mut cmd = Command::new(Self::binary());
        cmd.arg("-p")
            .arg(format!("{}/", dir.display()))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log"))?);
        let child = Bounded::spawn(&mut cmd)?;
        Ok(Nginx {
            child,
            addr: format!("127.0.0.1:{port}").parse()?,
            dir,
        })
    }

    fn stat(&self, ticks: f64) -> ProcStat {
        group_stat(self.child.pid(), ticks)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.child.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn version_line(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Raw argon2 verifications per second with the server's own function and the demo
/// account's hash, on `threads` threads at once.
fn argon2_rate(hash: &str, threads: usize) -> f64 {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let hash = hash.to_string();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut n = 0u64;
                while started.elapsed() < ARGON2_LOOP {
                    assert!(ekey_server::auth::verify_password(
                        ekey_server::demo::DEMO_PASSWORD,
                        &hash
                    ));
                    n += 1;
                }
                n as f64 / started.elapsed().as_secs_f64()
            })
        })
        .collect();
    handles.into_iter().filter_map(|h| h.join().ok()).sum()
}

fn check_row(name: &str, w: &Wrk, response_bytes: usize) -> anyhow::Result<()> {
    ensure!(
        w.non_2xx_3xx == 0,
        "{name}: wrk saw {} non-2xx/3xx responses",
        w.non_2xx_3xx
    );
    ensure!(
        w.socket_errors == 0,
        "{name}: wrk saw {} socket errors",
        w.socket_errors
    );
    // wrk counts a 3xx as a success: every response must also be as long as the probed 200.
    let per = w.bytes_read / w.requests as f64;
    let expected = response_bytes as f64;
    ensure!(
        (per - expected).abs() <= expected * 0.05 + 16.0,
        "{name}: {per:.0} bytes per response under load, {expected:.0} in the 200 probe: not all responses were that page"
    );
    Ok(())
}

pub async fn run(work: &Path, ticks: f64) -> anyhow::Result<Results> {
    let dir = work.join("portal-reads");
    std::fs::create_dir_all(&dir)?;
    let addr: SocketAddr = format!("127.0.0.1:{}", lifecycle::free_port()?).parse()?;
    let db_url = format!("sqlite:{}", dir.join("ekey.db").display());
    let config = lifecycle::server_config(&db_url, addr, &dir.join("data"));
    lifecycle::prepare(&config, 0).await?;
    let instance = Instance::start(&config, &dir, "ekey").await?;
    let result = measure(&instance, &dir, ticks).await;
    instance.stop();
    result
}

async fn measure(instance: &Instance, dir: &Path, ticks: f64) -> anyhow::Result<Results> {
    let base = instance.base.clone();
    let client = lifecycle::Client::new(vec![base.clone()])?;
    let token = lifecycle::login(&client, ekey_server::demo::DEMO_ENTERPRISE_LOGIN).await?;
    // One request as the demo enterprise, up to "awaiting review": history, the checklist
    // with six items, the printable documents.
    let mut turn = 0;
    let v = client
        .call(
            &mut turn,
            reqwest::Method::POST,
            "/api/v1/requests",
            &token,
            lifecycle::Body::Json(json!({"kind": "first", "licence_types": ["import_licence"],
                "login_name": {"mode": "allocate"},
                "authorised_user": ekey_testkit::scenario::person("liming@example.com")})),
            201,
        )
        .await?;
    let id = v["id"].as_str().context("request id")?.to_string();
    let number = v["number"].as_str().context("request number")?.to_string();
    let png = std::sync::Arc::new(ekey_testkit::scenario::png(2000));
    client
        .call(
            &mut turn,
            reqwest::Method::POST,
            &format!("/api/v1/requests/{id}/submit"),
            &token,
            lifecycle::Body::Json(json!({})),
            200,
        )
        .await?;
    for item in ekey_testkit::scenario::SIX {
        client
            .call(
                &mut turn,
                reqwest::Method::PUT,
                &format!("/api/v1/requests/{id}/materials/{item}"),
                &token,
                lifecycle::Body::Png(png.clone()),
                201,
            )
            .await?;
    }
    client
        .call(
            &mut turn,
            reqwest::Method::POST,
            &format!("/api/v1/requests/{id}/confirm-upload"),
            &token,
            lifecycle::Body::Json(json!({})),
            200,
        )
        .await?;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page_path = format!("/portal/requests/{id}");
    let api_path = format!("/api/v1/requests/{id}");
    let cookie = format!("{}={token}", ekey_server::auth::SESSION_COOKIE);
    let bearer = format!("Bearer {token}");
    let (status, page_bytes_total, page) = probe(
        &http,
        &format!("{base}{page_path}"),
        &[("cookie", cookie.clone())],
    )
    .await?;
    let page_text = String::from_utf8_lossy(&page);
    ensure!(
        status == 200 && page_text.contains(&number),
        "the status page answered HTTP {status} without the request number"
    );
    let (status, api_bytes, api_body) = probe(
        &http,
        &format!("{base}{api_path}"),
        &[("authorization", bearer.clone())],
    )
    .await?;
    let api_json: Value = serde_json::from_slice(&api_body).unwrap_or(Value::Null);
    ensure!(
        status == 200 && api_json["id"] == id.as_str(),
        "GET {api_path} answered HTTP {status}"
    );

    let nginx = Nginx::start("status.html", &page)?;
    let nginx_url = format!("http://{}/status.html", nginx.addr);
    let until = Instant::now() + Duration::from_secs(15);
    let nginx_bytes = loop {
        match probe(&http, &nginx_url, &[]).await {
            Ok((200, n, body)) if body == page => break n,
            Ok((s, _, _)) => bail!("nginx answered HTTP {s} or another body"),
            Err(_) if Instant::now() < until => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => {
                let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
                return Err(e.context(format!("nginx did not come up within 15 s: {log}")));
            }
        }
    };

    let ekey_cpu = || group_stat(instance.pid(), ticks);
    let nginx_cpu = || nginx.stat(ticks);
    let targets = [
        LoadTarget {
            name: "request status page (HTML, session cookie)",
            server: "eKey",
            url: format!("{base}{page_path}"),
            headers: vec![format!("Cookie: {cookie}")],
            bytes: page_bytes_total,
            stat: &ekey_cpu,
        },
        LoadTarget {
            name: "`GET /api/v1/requests/{id}` (JSON, bearer token)",
            server: "eKey",
            url: format!("{base}{api_path}"),
            headers: vec![format!("Authorization: {bearer}")],
            bytes: api_bytes,
            stat: &ekey_cpu,
        },
        LoadTarget {
            name: "the status page's HTML as a static file",
            server: "nginx",
            url: nginx_url.clone(),
            headers: Vec::new(),
            bytes: nginx_bytes,
            stat: &nginx_cpu,
        },
    ];
    let mut rows = Vec::new();
    for LoadTarget {
        name,
        server,
        url,
        headers,
        bytes,
        stat: cpu,
    } in targets
    {
        // Warm-up (not counted), then the measured run.
        wrk(&url, THREADS, CONNECTIONS, WARMUP, &headers, None, cpu)
            .with_context(|| format!("{name}: warm-up"))?;
        let w = wrk(&url, THREADS, CONNECTIONS, DURATION, &headers, None, cpu)
            .with_context(|| format!("{name}: wrk"))?;
        check_row(name, &w, bytes)?;
        eprintln!(
            "  {server} {name}: {} requests/s (p50 {:.2} ms, p99 {:.2} ms)",
            util::num(w.per_s, 0),
            w.p50_ms,
            w.p99_ms
        );
        rows.push(Row {
            name: name.to_string(),
            server,
            response_bytes: bytes,
            wrk: w,
        });
    }
    drop(nginx);
    // Still the page after the load (the session did not end under it).
    let (status, _, _) = probe(
        &http,
        &format!("{base}{page_path}"),
        &[("cookie", cookie.clone())],
    )
    .await?;
    ensure!(
        status == 200,
        "the status page answered HTTP {status} after the load"
    );

    // Logins, apart: wrk POSTs the demo enterprise's credentials.
    let script = dir.join("login.lua");
    let mut f = std::fs::File::create(&script)?;
    writeln!(
        f,
        "wrk.method = \"POST\"\nwrk.body = '{}'\nwrk.headers[\"Content-Type\"] = \"application/json\"",
        json!({"login": ekey_server::demo::DEMO_ENTERPRISE_LOGIN,
               "password": ekey_server::demo::DEMO_PASSWORD})
    )?;
    drop(f);
    let logins = wrk(
        &format!("{base}/api/v1/sessions"),
        THREADS,
        LOGIN_CONNECTIONS,
        LOGIN_DURATION,
        &[],
        Some(&script),
        &ekey_cpu,
    )
    .context("logins: wrk")?;
    ensure!(
        logins.non_2xx_3xx == 0 && logins.socket_errors == 0,
        "logins: {} non-2xx/3xx responses, {} socket errors (a 401/429 means the login failed \
         or the limiter refused)",
        logins.non_2xx_3xx,
        logins.socket_errors
    );
    eprintln!(
        "  eKey logins: {} /s (p50 {:.0} ms, p99 {:.0} ms)",
        util::num(logins.per_s, 1),
        logins.p50_ms,
        logins.p99_ms
    );

    // The argon2 reference, in this process, same function and hash as the server's check.
    let store = ekey_store::open(&format!("sqlite:{}", dir.join("ekey.db").display())).await?;
    let hash = store
        .account_by_login(ekey_server::demo::DEMO_ENTERPRISE_LOGIN)
        .await?
        .context("demo account")?
        .password_hash;
    drop(store);
    let argon2_params = hash
        .split('$')
        .find(|p| p.starts_with("m="))
        .unwrap_or("?")
        .to_string();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let argon2_one_thread = tokio::task::spawn_blocking({
        let hash = hash.clone();
        move || argon2_rate(&hash, 1)
    })
    .await?;
    let argon2_all_threads =
        tokio::task::spawn_blocking(move || argon2_rate(&hash, threads)).await?;
    eprintln!(
        "  argon2id ({argon2_params}) verifications: {} /s on one thread, {} /s on {threads}",
        util::num(argon2_one_thread, 1),
        util::num(argon2_all_threads, 1)
    );

    Ok(Results {
        page_bytes: page.len(),
        rows,
        logins,
        argon2_params,
        argon2_one_thread,
        argon2_all_threads,
        threads,
        nginx_version: version_line(&Nginx::binary(), "-v"),
        wrk_version: version_line("wrk", "--version"),
    })
}

/// The goal for the status page: at least this share of nginx's static rate.
pub const PAGE_GOAL: f64 = 0.30;

pub fn render(s: &mut String, r: &Results) {
    use crate::util::{num, ratio};
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "## 5. Portal reads and logins\n\n\
         `ekey serve` (the release binary, SQLite, its own process) with the demo data and one \
         first-issue request of the demo enterprise (`demo@ekey.example`) taken to \"awaiting \
         review\" (created, submitted, six items uploaded, confirmed). wrk ({}) with {THREADS} threads \
         and {CONNECTIONS} keep-alive connections, {} s warm-up then {} s measured per target, \
         `--latency`, loads: the enterprise's request page `/portal/requests/{{id}}` (server-rendered \
         HTML, `Cookie: ekey_session=…` from a login), the API `GET /api/v1/requests/{{id}}` \
         (`Authorization: Bearer …`), and **nginx** ({}; `worker_processes 2`, `access_log off`, \
         `sendfile on`, 127.0.0.1) serving the very bytes of that page ({} bytes) as a static file. \
         Every run must have no non-2xx response and no socket error, and since wrk counts a 3xx \
         as success, the bytes read per response must match the 200 response probed before \
         (a redirect to the login page would be ~200 bytes); the page is probed again after \
         the load. Server CPU is read from `/proc` for the server's whole process group.\n",
        r.wrk_version,
        WARMUP.as_secs(),
        DURATION.as_secs(),
        r.nginx_version,
        num(r.page_bytes as f64, 0)
    );
    let _ = writeln!(
        s,
        "| Server | Target | Response (head + body) | Requests/s | p50 ms | p99 ms | Server CPU (cores) | Requests per server CPU-second | Server CPU per request, µs | of which kernel | Server context switches per request |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in &r.rows {
        let w = &row.wrk;
        let _ = writeln!(
            s,
            "| {} | {} | {} bytes | {} | {:.2} | {:.2} | {:.2} | {} | {} | {:.0}% | {:.1} |",
            row.server,
            row.name,
            num(row.response_bytes as f64, 0),
            num(w.per_s, 0),
            w.p50_ms,
            w.p99_ms,
            w.server_cores(),
            num(w.per_cpu_second(), 0),
            num(w.cpu_us_per_request(), 0),
            w.kernel_share() * 100.0,
            w.ctxt_per_request()
        );
    }
    let nginx = r.rows.iter().find(|x| x.server == "nginx");
    if let Some(n) = nginx {
        let _ = writeln!(
            s,
            "\n| Comparison | Measure | eKey | nginx | eKey / nginx | Better |\n|---|---|---:|---:|---:|---|"
        );
        for row in r.rows.iter().filter(|x| x.server == "eKey") {
            let (o, p) = (&row.wrk, &n.wrk);
            let _ = writeln!(
                s,
                "| {} vs static file | requests/s | {} | {} | {} | higher |",
                row.name,
                num(o.per_s, 0),
                num(p.per_s, 0),
                ratio(o.per_s, p.per_s)
            );
            let _ = writeln!(
                s,
                "| {} vs static file | p99 latency, ms | {:.2} | {:.2} | {} | lower |",
                row.name,
                o.p99_ms,
                p.p99_ms,
                ratio(o.p99_ms, p.p99_ms)
            );
            let _ = writeln!(
                s,
                "| {} vs static file | requests per server CPU-second | {} | {} | {} | higher |",
                row.name,
                num(o.per_cpu_second(), 0),
                num(p.per_cpu_second(), 0),
                ratio(o.per_cpu_second(), p.per_cpu_second())
            );
        }
        if let Some(page) = r.rows.first() {
            let share = page.wrk.per_s / n.wrk.per_s.max(1e-9);
            let _ = writeln!(
                s,
                "\nGoal: the status page at ≥ {:.0}% of nginx's static rate. Measured: **{:.0}%** — {}.\n",
                PAGE_GOAL * 100.0,
                share * 100.0,
                if share >= PAGE_GOAL {
                    "met"
                } else {
                    "**missed**"
                }
            );
            let budget_us = page.wrk.server_cores() * 1e6 / (PAGE_GOAL * n.wrk.per_s).max(1e-9);
            let _ = writeln!(
                s,
                "Why: a status page cost the server {} µs of CPU ({:.0}% of it in the kernel, {:.1} \
                 context switches per page), a static file cost nginx {} µs. At the {:.2} cores the \
                 server used, {:.0}% of nginx's rate would need ≤ {} µs per page. The page's data \
                 comes from SQLite through sqlx, which runs each SQLite connection on its own \
                 thread: every query crosses from the async worker to that thread and back (two \
                 wake-ups), which is where the kernel time and the context switches come from; \
                 the JSON of `GET /api/v1/requests/{{id}}` costs {} µs on the same data.\n",
                num(page.wrk.cpu_us_per_request(), 0),
                page.wrk.kernel_share() * 100.0,
                page.wrk.ctxt_per_request(),
                num(n.wrk.cpu_us_per_request(), 1),
                page.wrk.server_cores(),
                PAGE_GOAL * 100.0,
                num(budget_us, 0),
                r.rows
                    .get(1)
                    .map_or("n/a".into(), |a| num(a.wrk.cpu_us_per_request(), 0))
            );
        }
    }
    let l = &r.logins;
    let _ = writeln!(
        s,
        "Logins, apart (slow on purpose): wrk with {THREADS} threads and {LOGIN_CONNECTIONS} connections \
         for {} s POSTs the demo enterprise's login and password to `POST /api/v1/sessions` \
         (each: argon2id check on a blocking thread, then a session row and an audit record in one \
         transaction). The reference is the raw rate of the very check the server runs \
         (`ekey_server::auth::verify_password`, argon2 `Argon2::default()`: argon2id v19, {}) in \
         this process, {} s loops. The login throttle (`ekey_server::throttle`) reads two rows of \
         failure counts per attempt and clears the login's row after a success; it counts failures only (back-off after 5 per login, 20 per \
         address), so successful logins are not refused by it; nothing was changed for the \
         bench.\n",
        LOGIN_DURATION.as_secs(),
        r.argon2_params,
        ARGON2_LOOP.as_secs()
    );
    let _ = writeln!(
        s,
        "| Measure | eKey logins | Reference | Reference figure | eKey / reference | Better |\n|---|---:|---|---:|---:|---|"
    );
    let _ = writeln!(
        s,
        "| Logins/s, {LOGIN_CONNECTIONS} connections (p50 {:.0} ms, p99 {:.0} ms; server {:.2} cores, {} ms CPU per login, {:.0}% of it in the kernel) | {} | argon2id verifications/s, {} threads at once (the machine's cores) | {} | {} | higher |",
        l.p50_ms,
        l.p99_ms,
        l.server_cores(),
        num(l.cpu_us_per_request() / 1000.0, 1),
        l.kernel_share() * 100.0,
        num(l.per_s, 1),
        r.threads,
        num(r.argon2_all_threads, 1),
        ratio(l.per_s, r.argon2_all_threads)
    );
    let _ = writeln!(
        s,
        "| Logins per server CPU-second | {} | argon2id verifications per CPU-second (one thread) | {} | {} | higher |",
        num(l.per_cpu_second(), 1),
        num(r.argon2_one_thread, 1),
        ratio(l.per_cpu_second(), r.argon2_one_thread)
    );
    let _ = writeln!(s);
}

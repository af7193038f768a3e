//! Throwaway PostgreSQL clusters for tests.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// Appended to every startup error.
const HINT: &str = "hint: PostgreSQL server binaries (initdb, pg_ctl, psql) are required; \
     install Debian package postgresql (apt-get install -y postgresql), \
     or set EKEY_TEST_PG_URL to a server where databases may be created";

/// Environment variable naming an existing server to use from [`PgCluster::shared`].
const EXTERNAL_URL_ENV: &str = "EKEY_TEST_PG_URL";

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 40;

static DB_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A PostgreSQL server for tests: either one this process started in a
/// temporary directory (stopped and removed on drop, or by a reaper process
/// once the test process exits), or an external one named by `EKEY_TEST_PG_URL`.
pub struct PgCluster {
    /// URL of the default `postgres` database (or the external URL as given).
    url: String,
    psql: PathBuf,
    owned: Option<Owned>,
}

/// State of a cluster this process started.
struct Owned {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
    /// `runuser`, when this process is root and so must run initdb and
    /// pg_ctl as the `postgres` user.
    runuser: Option<PathBuf>,
    /// Whether `pg_ctl start` has been attempted (so drop must stop it).
    started: bool,
    reaper: Option<Child>,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("url", &self.url)
            .field("dir", &self.owned.as_ref().map(|o| &o.dir))
            .finish()
    }
}

impl PgCluster {
    /// Starts a fresh cluster: `initdb` into a new directory under `/tmp`,
    /// `pg_ctl start` on a free 127.0.0.1 port, and waits until it accepts
    /// connections. Stopped and removed when dropped.
    pub fn start() -> anyhow::Result<PgCluster> {
        start_owned().map_err(|e| anyhow!("starting throwaway PostgreSQL failed: {e:#}\n{HINT}"))
    }

    /// The cluster shared by every test in this process, started on first
    /// use (concurrent callers wait for it). With `EKEY_TEST_PG_URL` set,
    /// that server is used instead of starting one.
    ///
    /// A startup failure is remembered: later calls return the same error
    /// instead of trying again.
    pub fn shared() -> anyhow::Result<&'static PgCluster> {
        static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let external = std::env::var(EXTERNAL_URL_ENV)
                    .ok()
                    .filter(|u| !u.trim().is_empty());
                match external {
                    Some(url) => PgCluster::external(url.trim()),
                    None => PgCluster::start(),
                }
                .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| anyhow!("{e}"))
    }

    /// Uses an existing server at `url`; checks it answers `select 1`.
    fn external(url: &str) -> anyhow::Result<PgCluster> {
        let psql = find_binary("psql").ok_or_else(|| {
            anyhow!("`psql` not found on PATH or in /usr/lib/postgresql/*/bin\n{HINT}")
        })?;
        let cluster = PgCluster {
            url: url.to_owned(),
            psql,
            owned: None,
        };
        let out = cluster.psql(url, "select 1").with_context(|| {
            format!("{EXTERNAL_URL_ENV}={url} is set but that server does not answer `select 1`")
        })?;
        if out != "1" {
            bail!("{EXTERNAL_URL_ENV}={url}: `select 1` printed {out:?}");
        }
        Ok(cluster)
    }

    /// URL of the default `postgres` database,
    /// `postgres://postgres@127.0.0.1:PORT/postgres` for a started cluster.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// TCP port of a started cluster (`None` for an external server).
    pub fn port(&self) -> Option<u16> {
        self.owned.as_ref().map(|o| o.port)
    }

    /// Temporary directory of a started cluster (`None` for an external
    /// server). Holds `data/`, the unix socket and `server.log`.
    pub fn dir(&self) -> Option<&Path> {
        self.owned.as_ref().map(|o| o.dir.as_path())
    }

    /// Creates a fresh, uniquely named database (`<prefix>_<pid>_<n>`,
    /// lowercased, restricted to `[a-z0-9_]`) and returns its URL.
    pub fn create_database(&self, name_prefix: &str) -> anyhow::Result<String> {
        let prefix = sanitize_prefix(name_prefix);
        let pid = std::process::id();
        let mut last_err = None;
        // A name can only collide on an external server that still holds a
        // database from an earlier process with the same pid: take the next
        // counter value and try again.
        for _ in 0..5 {
            let n = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("{prefix}_{pid}_{n}");
            match self.psql(&self.url, &format!("CREATE DATABASE \"{name}\"")) {
                Ok(_) => return Ok(with_database(&self.url, &name)),
                Err(e) if format!("{e:#}").contains("already exists") => last_err = Some(e),
                Err(e) => return Err(e.context(format!("creating test database {name}"))),
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context("creating a uniquely named test database"))
    }

    /// Runs `sql` with `psql` against `url` (any database URL of this
    /// server) and returns the unaligned, tuples-only output.
    pub fn psql(&self, url: &str, sql: &str) -> anyhow::Result<String> {
        run_psql(&self.psql, url, sql)
    }

    /// Stops a started cluster (`pg_ctl stop -m fast`: open sessions are ended, as in an
    /// operator's restart); [`PgCluster::start_again`] brings it back on the same port.
    /// Fails for an external server, which a test must not stop.
    pub fn stop(&self) -> anyhow::Result<()> {
        let owned = self.owned_or_fail("stop")?;
        let mut cmd = owned.command(&owned.pg_ctl);
        cmd.arg("stop")
            .arg("-D")
            .arg(&owned.data)
            .args(["-m", "fast", "-w", "-t", "30"]);
        let out = run(&mut cmd)?;
        if !out.status.success() {
            bail!("`pg_ctl stop -m fast` failed: {}", output_text(&out));
        }
        Ok(())
    }

    /// Starts a cluster stopped by [`PgCluster::stop`] again, same port and settings, and
    /// waits until it accepts connections.
    pub fn start_again(&self) -> anyhow::Result<()> {
        let owned = self.owned_or_fail("start")?;
        let mut cmd = owned.command(&owned.pg_ctl);
        cmd.arg("start")
            .arg("-D")
            .arg(&owned.data)
            .arg("-l")
            .arg(owned.log_path())
            .args([
                "-w",
                "-t",
                &READY_TIMEOUT.as_secs().to_string(),
                "-o",
                &owned.server_options(),
            ]);
        let out = run(&mut cmd)?;
        if !out.status.success() {
            bail!(
                "`pg_ctl start` failed: {}\n{}",
                output_text(&out),
                owned.log_tail()
            );
        }
        let started_at = Instant::now();
        loop {
            match run_psql(&self.psql, &self.url, "select 1") {
                Ok(out) if out == "1" => return Ok(()),
                Ok(_) | Err(_) if started_at.elapsed() < READY_TIMEOUT => {
                    thread::sleep(Duration::from_millis(100));
                }
                Ok(out) => bail!("`select 1` printed {out:?}"),
                Err(e) => return Err(e.context(owned.log_tail())),
            }
        }
    }

    fn owned_or_fail(&self, what: &str) -> anyhow::Result<&Owned> {
        self.owned.as_ref().ok_or_else(|| {
            anyhow!(
                "cannot {what} the external server {}: use PgCluster::start()",
                self.url
            )
        })
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let Some(owned) = self.owned.as_mut() else {
            return;
        };
        if let Some(mut reaper) = owned.reaper.take() {
            let _ = reaper.kill();
            let _ = reaper.wait();
        }
        if owned.started {
            let mut cmd = owned.command(&owned.pg_ctl);
            cmd.arg("stop").arg("-D").arg(&owned.data).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                "10",
                "-s",
            ]);
            let _ = run(&mut cmd);
        }
        let _ = fs::remove_dir_all(&owned.dir);
    }
}

impl Owned {
    /// A command run as the `postgres` user when this process is root
    /// (initdb and pg_ctl refuse to run as root).
    fn command(&self, program: &Path) -> Command {
        let mut cmd = if let Some(runuser) = &self.runuser {
            let mut c = Command::new(runuser);
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.current_dir(&self.dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        cmd
    }

    /// The command the reaper runs to stop the server.
    fn stop_argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(runuser) = &self.runuser {
            argv.push(runuser.display().to_string());
            argv.extend(["-u", "postgres", "--"].map(String::from));
        }
        argv.push(self.pg_ctl.display().to_string());
        argv.extend(["stop", "-D"].map(String::from));
        argv.push(self.data.display().to_string());
        argv.extend(["-m", "immediate", "-w", "-t", "10"].map(String::from));
        argv
    }

    /// Spawns a detached `sh` loop that waits for this process to exit and
    /// then stops the server and removes the directory, so a panicking or
    /// killed test process leaves nothing behind. It also ends once the
    /// directory is gone (i.e. after `Drop` cleaned up).
    ///
    /// `initdb` and `pg_ctl start` run with the directory as their working
    /// directory and outlive a killed test process; the reaper waits (up to
    /// 45 s) until no process has that working directory any more, so it
    /// neither races `initdb` nor stops a server before `pg_ctl start` has
    /// brought it up.
    fn spawn_reaper(&mut self) -> anyhow::Result<()> {
        const SCRIPT: &str = r#"pid=$1; dir=$2; shift 2
while kill -0 "$pid" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
[ -d "$dir" ] || exit 0
busy() {
  for c in /proc/[0-9]*/cwd; do
    [ "$(readlink "$c" 2>/dev/null)" = "$dir" ] && return 0
  done
  return 1
}
i=0
while [ "$i" -lt 90 ] && busy; do sleep 0.5; i=$((i + 1)); done
"$@" >/dev/null 2>&1
for i in 1 2 3; do rm -rf "$dir" 2>/dev/null; [ -e "$dir" ] || exit 0; sleep 1; done"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("ekey-pg-reaper")
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .args(self.stop_argv())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: not hit by Ctrl-C or by a test runner
            // killing the test's process group.
            .process_group(0)
            .spawn()
            .context("spawning the cleanup reaper (sh)")?;
        self.reaper = Some(child);
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The `postgres` options of every start: the port, the socket in the directory, no
    /// durability (throwaway data), room for many test connections.
    fn server_options(&self) -> String {
        format!(
            "-c listen_addresses=127.0.0.1 -p {} -c 'unix_socket_directories={}' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.display()
        )
    }

    fn log_tail(&self) -> String {
        let path = self.log_path();
        match fs::read_to_string(&path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
                format!(
                    "--- tail of server log {} ---\n{tail}\n--- end of server log ---",
                    path.display()
                )
            }
            Err(e) => format!("(no server log at {}: {e})", path.display()),
        }
    }
}

fn start_owned() -> anyhow::Result<PgCluster> {
    let initdb = find_binary("initdb")
        .ok_or_else(|| anyhow!("`initdb` not found on PATH or in /usr/lib/postgresql/*/bin"))?;
    // Resolve symlinks (e.g. /usr/local/bin/initdb) to find the sibling
    // binaries of the same version.
    let initdb = fs::canonicalize(&initdb).unwrap_or(initdb);
    let bin_dir = initdb.parent().map(Path::to_path_buf).unwrap_or_default();
    let sibling = |name: &str| {
        let p = bin_dir.join(name);
        if p.is_file() {
            Some(p)
        } else {
            find_binary(name)
        }
    };
    let pg_ctl = sibling("pg_ctl")
        .ok_or_else(|| anyhow!("`pg_ctl` not found next to {}", initdb.display()))?;
    let psql = sibling("psql")
        .ok_or_else(|| anyhow!("`psql` not found next to {} or on PATH", initdb.display()))?;

    let as_postgres = running_as_root()?;
    let runuser = if as_postgres {
        let runuser = find_binary("runuser")
            .or_else(|| {
                ["/usr/sbin/runuser", "/sbin/runuser"]
                    .into_iter()
                    .map(PathBuf::from)
                    .find(|p| is_executable(p))
            })
            .ok_or_else(|| {
                anyhow!("running as root, so initdb/pg_ctl must run as user `postgres` via `runuser`, which was not found (Debian package util-linux)")
            })?;
        let ok = Command::new("id")
            .args(["-u", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            bail!(
                "running as root, so initdb/pg_ctl must run as user `postgres`, but that user does not exist"
            );
        }
        Some(runuser)
    } else {
        None
    };

    let base = if Path::new("/tmp").is_dir() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix("ekey-pg-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a temporary directory under {}", base.display()))?
        .keep();
    // The reaper compares it with /proc/*/cwd.
    let dir = fs::canonicalize(&dir).unwrap_or(dir);
    let mut cluster = PgCluster {
        url: String::new(),
        psql: psql.clone(),
        owned: Some(Owned {
            data: dir.join("data"),
            dir,
            port: 0,
            pg_ctl,
            runuser,
            started: false,
            reaper: None,
        }),
    };
    // From here on, dropping `cluster` (on any error) cleans up.
    let owned = cluster.owned.as_mut().expect("just set");
    owned.spawn_reaper()?;
    fs::set_permissions(&owned.dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 0755 {}", owned.dir.display()))?;
    if as_postgres {
        let out = run(Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(&owned.dir))?;
        if !out.status.success() {
            bail!(
                "chown -R postgres:postgres {} failed: {}",
                owned.dir.display(),
                output_text(&out)
            );
        }
    }

    let mut cmd = owned.command(&initdb);
    cmd.arg("-D").arg(&owned.data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    let out = run(&mut cmd)?;
    if !out.status.success() {
        bail!(
            "`{} -D {}` failed ({}): {}",
            initdb.display(),
            owned.data.display(),
            out.status,
            output_text(&out)
        );
    }

    let socket_dir = owned.dir.display().to_string();
    if socket_dir.contains(['\'', '"', ',', '\\']) {
        bail!("unusable characters in temporary directory {socket_dir}");
    }
    let mut failures = Vec::new();
    for attempt in 1..=START_ATTEMPTS {
        let port = free_port();
        owned.port = port;
        owned.started = true;
        let options = owned.server_options();
        let started_at = Instant::now();
        let mut cmd = owned.command(&owned.pg_ctl);
        cmd.arg("start")
            .arg("-D")
            .arg(&owned.data)
            .arg("-l")
            .arg(owned.log_path())
            .args([
                "-w",
                "-t",
                &READY_TIMEOUT.as_secs().to_string(),
                "-o",
                &options,
            ]);
        let out = run(&mut cmd)?;
        if !out.status.success() {
            failures.push(format!(
                "attempt {attempt}: `pg_ctl start` on port {port} failed ({}): {}",
                out.status,
                output_text(&out)
            ));
            // It may have come up after pg_ctl gave up waiting.
            let mut stop = owned.command(&owned.pg_ctl);
            stop.arg("stop")
                .arg("-D")
                .arg(&owned.data)
                .args(["-m", "immediate", "-w", "-s"]);
            let _ = run(&mut stop);
            continue;
        }

        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let mut last = None;
        while started_at.elapsed() < READY_TIMEOUT {
            match run_psql(&psql, &url, "select 1") {
                Ok(out) if out == "1" => {
                    cluster.url = url;
                    return Ok(cluster);
                }
                Ok(out) => last = Some(anyhow!("`select 1` printed {out:?}")),
                Err(e) => last = Some(e),
            }
            thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "server started on port {port} but did not accept connections within {}s: {:#}\n{}",
            READY_TIMEOUT.as_secs(),
            last.unwrap_or_else(|| anyhow!("no attempt")),
            owned.log_tail()
        );
    }
    bail!(
        "`pg_ctl start` failed {START_ATTEMPTS} times:\n{}\n{}",
        failures.join("\n"),
        owned.log_tail()
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0 and
/// read back the port the kernel chose).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

fn running_as_root() -> anyhow::Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("running `id -u`")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Finds a PostgreSQL binary on PATH, else in the newest
/// `/usr/lib/postgresql/<version>/bin`. Symlinks are kept as found: Debian's
/// `/usr/bin/psql` links to `pg_wrapper`, which only works under its link name
/// (and exits 0 when invoked under its own name).
fn find_binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    });
    on_path.or_else(|| {
        let mut versions: Vec<(Vec<u64>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version = entry
                    .file_name()
                    .to_str()?
                    .split('.')
                    .map(|part| part.parse::<u64>().ok())
                    .collect::<Option<Vec<u64>>>()?;
                let bin = entry.path().join("bin").join(name);
                is_executable(&bin).then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn run_psql(psql: &Path, url: &str, sql: &str) -> anyhow::Result<String> {
    let mut cmd = Command::new(psql);
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-w",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        url,
        "-c",
        sql,
    ])
    .env("PGCONNECT_TIMEOUT", "10")
    .stdin(Stdio::null());
    let out = run(&mut cmd)?;
    if !out.status.success() {
        bail!(
            "psql -d {url} -c {sql:?} failed ({}): {}",
            out.status,
            output_text(&out)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    cmd.output().with_context(|| format!("running {cmd:?}"))
}

fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stdout.trim());
    }
    text
}

/// Lowercase, `[a-z0-9_]` only, starts with a letter or `_`, short enough
/// that `<prefix>_<pid>_<n>` stays within PostgreSQL's 63-byte identifiers.
fn sanitize_prefix(prefix: &str) -> String {
    let mut name: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        name.insert_str(0, "db_");
    }
    name
}

/// `url` with its database (path) replaced by `db`; query string kept.
fn with_database(url: &str, db: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (url, None),
    };
    let authority_start = main.find("://").map_or(0, |i| i + 3);
    let path_start = main[authority_start..]
        .find('/')
        .map_or(main.len(), |i| authority_start + i);
    let mut out = format!("{}/{db}", &main[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_sanitized() {
        assert_eq!(sanitize_prefix("Store-Roundtrip"), "store_roundtrip");
        assert_eq!(sanitize_prefix("9lives"), "db_9lives");
        assert_eq!(sanitize_prefix(""), "db_");
        assert!(sanitize_prefix(&"x".repeat(100)).len() <= 30);
    }

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1?sslmode=disable", "t1"),
            "postgres://u:p@h:1/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://h/db?application_name=x/y", "t2"),
            "postgresql://h/t2?application_name=x/y"
        );
    }
}

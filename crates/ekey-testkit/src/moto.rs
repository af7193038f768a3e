//! A local S3 emulator for tests: `moto_server` (PyPI `moto[server]`, installed into
//! `.venv-tools` by scripts/test) on a free port of 127.0.0.1, stopped when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::free_port;

const HINT: &str = "hint: run scripts/test, which installs moto[server] into .venv-tools \
     (or set EKEY_TOOLS_BIN to a directory holding moto_server)";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Access key id and secret the tests sign with (moto accepts any).
pub const MOTO_ACCESS_KEY_ID: &str = "ekey-test-access-key";
/// See [`MOTO_ACCESS_KEY_ID`].
pub const MOTO_SECRET_ACCESS_KEY: &str = "ekey-test-secret-key";

/// A running `moto_server`.
pub struct Moto {
    port: u16,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moto").field("port", &self.port).finish()
    }
}

/// Where `moto_server` is: `$EKEY_TOOLS_BIN/moto_server`, else the repository's
/// `.venv-tools/bin/moto_server`.
pub fn moto_server_path() -> PathBuf {
    std::env::var_os("EKEY_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tools/bin"))
        .join("moto_server")
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p <free port>` and waits until it answers. An
    /// error (never a skip) when moto is not installed.
    pub fn start() -> anyhow::Result<Moto> {
        let program = moto_server_path();
        if !program.exists() {
            bail!("{} not found\n{HINT}", program.display());
        }
        let mut last = None;
        // A port found free can be taken before moto binds it: try another one.
        for _ in 0..3 {
            match Self::start_on(&program, free_port()) {
                Ok(m) => return Ok(m),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no attempt")))
    }

    fn start_on(program: &PathBuf, port: u16) -> anyhow::Result<Moto> {
        let log = tempfile::NamedTempFile::new()?;
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen()?)
            .stderr(log.reopen()?)
            .spawn()
            .with_context(|| format!("starting {}\n{HINT}", program.display()))?;
        let mut moto = Moto { port, child, log };
        let started = Instant::now();
        loop {
            if let Some(status) = moto.child.try_wait()? {
                bail!(
                    "moto_server exited ({status}) before answering on port {port}:\n{}",
                    moto.log_text()
                );
            }
            if matches!(moto.request("GET", "/"), Ok(200)) {
                return Ok(moto);
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "moto_server did not answer on port {port} within {} s:\n{}",
                    READY_TIMEOUT.as_secs(),
                    moto.log_text()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (an unsigned `PUT /<bucket>`, which moto accepts; object_store
    /// cannot create buckets).
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        match self.request("PUT", &format!("/{bucket}"))? {
            200 => Ok(()),
            status => bail!("creating bucket {bucket}: HTTP {status}"),
        }
    }

    /// Sends a bodiless request; returns the status code.
    fn request(&self, method: &str, path: &str) -> anyhow::Result<u16> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        text.lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("no HTTP status in {:?}", text.lines().next()))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

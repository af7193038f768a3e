//! A real SMTP server for tests: Python's aiosmtpd (installed into `.venv-tools` by
//! `scripts/test`), a separate process on a free port of 127.0.0.1 writing every message it
//! accepts into a Maildir, read back with Python's email package.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The Python of `.venv-tools` (or `$EKEY_TOOLS_BIN/python`); panics with the fix when it
/// cannot import `module`.
pub fn tools_python(module: &str) -> PathBuf {
    let bin = std::env::var_os("EKEY_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tools/bin"));
    let python = bin.join("python");
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import {module}: run scripts/test (it installs the test tools into .venv-tools)",
        python.display()
    );
    python
}

/// aiosmtpd writing every message it accepts into a Maildir.
pub struct SmtpSink {
    /// Its port on 127.0.0.1.
    pub port: u16,
    maildir: tempfile::TempDir,
    child: Option<Child>,
}

impl SmtpSink {
    /// A sink on a free port, not started yet.
    pub fn new() -> SmtpSink {
        SmtpSink {
            port: crate::free_port(),
            maildir: tempfile::tempdir().expect("temporary directory"),
            child: None,
        }
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until it listens.
    pub fn start(&mut self) {
        let child = Command::new(tools_python("aiosmtpd"))
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(self.maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting aiosmtpd");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("aiosmtpd did not listen on {}", self.port);
    }

    /// Stops the server (messages already stored stay readable).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every stored message, decoded: to, from, subject, message_id, body.
    pub fn messages(&self) -> Vec<Value> {
        let script = r#"
import json, mailbox, sys
from email import policy
from email.parser import BytesParser
out = []
try:
    box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
    for key in box.keys():
        m = BytesParser(policy=policy.default).parsebytes(box.get_bytes(key))
        out.append({"to": str(m["To"]), "from": str(m["From"]), "subject": str(m["Subject"]),
                    "message_id": str(m["Message-ID"]), "body": m.get_content()})
except mailbox.NoSuchMailboxError:
    pass
print(json.dumps(out))
"#;
        let out = Command::new(tools_python("aiosmtpd"))
            .args(["-c", script])
            .arg(self.maildir.path().join("mail"))
            .output()
            .expect("running python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("sink JSON")
    }
}

impl Default for SmtpSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

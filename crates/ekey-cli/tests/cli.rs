//! The `ekey` binary as an operator uses it: start the demo, stop it, verify the audit chain,
//! tamper with one byte, see the broken record named.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Row;

fn ekey() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ekey"));
    c.env("RUST_LOG", "warn");
    c
}

/// Starts `ekey demo` and returns the child and the address it printed.
fn start_demo(data: &std::path::Path) -> (Child, String) {
    let mut child = ekey()
        .args(["demo", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting ekey demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("Ctrl-C") {
                let _ = tx.send(printed.clone());
            }
        }
    });
    let printed = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("ekey demo printed its banner");
    for login in [
        "demo@ekey.example",
        "agency-320000",
        "agency-110000",
        "provider",
        "admin",
        "ekey-demo-2026",
    ] {
        assert!(printed.contains(login), "banner lacks {login}:\n{printed}");
    }
    let addr = printed
        .lines()
        .find_map(|l| l.split("http://").nth(1).filter(|_| l.contains("running")))
        .map(|rest| rest.trim_end_matches('/').to_string())
        .expect("URL in banner");
    (child, addr)
}

fn http(addr: &str, request: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                s.write_all(request.as_bytes()).unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                return out;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("connecting to {addr}: {e}"),
        }
    }
}

fn stop(mut child: Child) {
    // SIGTERM for a graceful stop; kill as a fallback.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn demo_then_audit_verify_detects_one_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ekey-data");
    let (child, addr) = start_demo(&data);
    let health = http(
        &addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#"{"status":"ok"}"#), "{health}");
    let body = r#"{"login":"agency-320000","password":"ekey-demo-2026"}"#;
    let login = http(
        &addr,
        &format!(
            "POST /api/v1/sessions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    stop(child);

    // A second start on the same directory keeps the data and the demo accounts.
    let (child, _) = start_demo(&data);
    stop(child);

    let ok = ekey()
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("intact"), "{stdout}");

    // Change one byte of record 3.
    let db = format!("sqlite:{}", data.join("ekey.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&db).await.unwrap();
        let before: String = sqlx::query("SELECT after_state FROM audit_log WHERE seq = 3")
            .fetch_one(&pool)
            .await
            .unwrap()
            .try_get("after_state")
            .unwrap();
        assert!(!before.is_empty());
        let first = before.chars().next().unwrap();
        let replacement = if first == 'X' { "Y" } else { "X" };
        sqlx::query(
            "UPDATE audit_log SET after_state = $1 || substr(after_state, 2) WHERE seq = 3",
        )
        .bind(replacement)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    });
    let broken = ekey()
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert_eq!(broken.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("record 3"), "{stderr}");
}

#[test]
fn migrate_with_config_file_and_env_override() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ekey.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite:{}\"\n",
            dir.path().join("from-file.db").display()
        ),
    )
    .unwrap();
    let out = ekey()
        .args(["migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("from-file.db").exists());
    let env_db = dir.path().join("from-env.db");
    let out = ekey()
        .args(["migrate", "--config"])
        .arg(&config)
        .env("EKEY_DATABASE_URL", format!("sqlite:{}", env_db.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env_db.exists(), "EKEY_DATABASE_URL overrides the file");
}

#[test]
fn migrate_on_postgres_twice() {
    let url = ekey_testkit::PgCluster::shared()
        .expect("PostgreSQL is required (apt-get install postgresql)")
        .create_database("cli")
        .unwrap();
    for _ in 0..2 {
        let out = ekey()
            .arg("migrate")
            .env("EKEY_DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("Postgres"));
    }
}

#[test]
fn verify_on_missing_directory_fails_clearly() {
    let out = ekey()
        .args(["audit", "verify", "--data", "/nonexistent/ekey-data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no eKey database"));
}

fn ekey_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = ekey()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn key_commands_lock_after_six_wrong_pins_and_unlock_with_a_code() {
    use ekey_token::Token;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.token");
    let master = b"provider master secret for this test, 32+ bytes";
    let token =
        ekey_token::SoftToken::create(&path, "SK20260001", "金陵贸易", "12345678", master).unwrap();
    token.generate_key("12345678", "sign").unwrap();
    drop(token);
    let p = path.to_str().unwrap();

    let status = ekey()
        .args(["key", "status", "--token", p])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        out.contains("SK20260001") && out.contains("PIN tries left:  6"),
        "{out}"
    );

    for i in 1..=6 {
        let o = ekey_with_stdin(
            &["key", "change-pin", "--token", p],
            "00000000\n87654321\n87654321\n",
        );
        assert!(!o.status.success(), "wrong PIN {i} accepted");
    }
    // The right PIN no longer works: locked.
    let o = ekey_with_stdin(
        &["key", "change-pin", "--token", p],
        "12345678\n87654321\n87654321\n",
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ekey.token.locked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let o = ekey()
        .args(["key", "challenge", "--token", p])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let challenge = text
        .lines()
        .find_map(|l| l.strip_prefix("challenge: "))
        .unwrap()
        .trim()
        .to_string();
    let code =
        ekey_token::admin::unlock_response(master, "SK20260001", &hex::decode(&challenge).unwrap())
            .unwrap();
    let o = ekey_with_stdin(
        &["key", "unlock", "--token", p, "--code", &code],
        "24681357\n24681357\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The code is dead after one use.
    let o = ekey_with_stdin(
        &["key", "unlock", "--token", p, "--code", &code],
        "11112222\n11112222\n",
    );
    assert!(!o.status.success());
    let status = ekey()
        .args(["key", "status", "--token", p])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains("PIN tries left:  6") && out.contains("locked:          no"),
        "{out}"
    );
    // And the new PIN works.
    let o = ekey_with_stdin(
        &["key", "change-pin", "--token", p],
        "24681357\n13572468\n13572468\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

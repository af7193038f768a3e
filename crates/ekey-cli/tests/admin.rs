//! `ekey admin create`: the first administrator of a production install (no demo database),
//! the password read like a PIN (standard input here, no echo on a terminal), the password
//! policy applied, audited; a second run for the same login refuses and changes nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Row;

fn ekey() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ekey"));
    for var in [
        "EKEY_CA_PASSPHRASE",
        "EKEY_PROVIDER_MASTER",
        "EKEY_PIN_SECRET",
        "EKEY_DEMO",
        "EKEY_DATABASE_URL",
    ] {
        c.env_remove(var);
        c.env_remove(format!("{var}_FILE"));
    }
    c.env("RUST_LOG", "warn");
    c
}

/// `ekey admin create --login LOGIN --config CONFIG` with `stdin`: success and what it printed.
fn admin_create(config: &Path, login: &str, stdin: &str) -> (bool, String) {
    let mut child = ekey()
        .args(["admin", "create", "--login", login, "--config"])
        .arg(config)
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
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn post(port: u16, path: &str, json: &str) -> (u16, String) {
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    );
    if c.write_all(head.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn the_first_administrator_is_created_from_the_command_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = ekey_testkit::free_port();
    let config = dir.path().join("ekey.toml");
    ekey_testkit::config::write_production_config(&config, &data, port);
    let password = "Harbour-Lantern-8273";

    // The password policy applies: too short, or containing the login.
    let (ok, text) = admin_create(&config, "chief-admin", "short1\n");
    assert!(!ok, "{text}");
    assert!(text.contains("ekey.registration.weak_password"), "{text}");
    let (ok, text) = admin_create(&config, "chief-admin", "Chief-Admin-2026\n");
    assert!(!ok, "{text}");
    assert!(text.contains("ekey.registration.weak_password"), "{text}");
    let (ok, text) = admin_create(&config, "bad login!", &format!("{password}\n"));
    assert!(!ok, "{text}");
    assert!(text.contains("ekey.user.login"), "{text}");

    // Created, on a database that did not exist yet (no demo, no `ekey migrate` before).
    let (ok, text) = admin_create(&config, "Chief-Admin", &format!("{password}\n"));
    assert!(ok, "{text}");
    assert!(text.contains("administrator chief-admin created"), "{text}");
    assert!(!text.contains(password), "the password was printed: {text}");

    // A second run for the same login refuses, non-zero, and replaces nothing.
    let (ok, text) = admin_create(&config, "chief-admin", "Another-Secret-5510\n");
    assert!(!ok, "{text}");
    assert!(
        text.contains("ekey.user.duplicate") && text.contains("not changed"),
        "{text}"
    );

    // Audited: one account made, by the operator at the command line.
    let db = format!("sqlite:{}", data.join("ekey.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&db).await.unwrap();
        let rows = sqlx::query(
            "SELECT actor_role, address, after_state FROM audit_log WHERE action = 'user.create'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].try_get::<String, _>("actor_role").unwrap(),
            "operator"
        );
        assert_eq!(rows[0].try_get::<String, _>("address").unwrap(), "cli");
        assert_eq!(
            rows[0].try_get::<String, _>("after_state").unwrap(),
            "admin"
        );
        let admins: i64 = sqlx::query("SELECT COUNT(*) AS n FROM accounts WHERE role = 'admin'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(admins, 1, "no demo administrator, only ours");
        pool.close().await;
    });
    let out = ekey()
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // The production server lets the new administrator in, with the first password only.
    let mut child = ekey()
        .args(["serve", "--config"])
        .arg(&config)
        .env("EKEY_CA_PASSPHRASE", "ca-passphrase-for-admin-test-5c1e")
        .env("EKEY_PROVIDER_MASTER", "provider-master-for-admin-test-77a")
        .env("EKEY_PIN_SECRET", "pin-secret-for-admin-test-90d3b")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let login = |p: &str| {
        post(
            port,
            "/api/v1/sessions",
            &format!(r#"{{"login": "chief-admin", "password": "{p}"}}"#),
        )
    };
    let (status, text) = loop {
        let got = login(password);
        if got.0 != 0 {
            break got;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("ekey serve stopped ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "ekey serve did not answer");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""role":"admin""#), "{text}");
    assert_eq!(login("Another-Secret-5510").0, 401);
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    child.wait().unwrap();
}

/// `ekey admin agencies --file`: the agencies file loaded from the command line, all or
/// nothing, audited (issue 16, item 10).
#[test]
fn the_agencies_file_is_loaded_from_the_command_line_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.path().join("ekey.toml");
    ekey_testkit::config::write_production_config(&config, &data, ekey_testkit::free_port());
    let file = |hotline: &str| {
        let mut csv = format!("{}\n", ekey_domain::agency_file::HEADER);
        for a in ekey_domain::province::agency_defaults() {
            let (address, hotline) = if a.province_code == "110000" {
                ("北京市东城区示例路 1 号", hotline)
            } else {
                (a.address, a.hotline)
            };
            csv.push_str(&format!(
                "{},{},\"{}\",{address},{},{},{hotline}\n",
                a.province_code, a.name_zh, a.name_en, a.window, a.hours
            ));
        }
        csv.push_str("660000,新疆生产建设兵团商务局,XPCC Commerce Bureau,,,,\n");
        let path = dir.path().join(format!("agencies-{}.csv", hotline.len()));
        std::fs::write(&path, csv).unwrap();
        path
    };
    let run = |path: &Path| {
        let out = ekey()
            .args(["admin", "agencies", "--file"])
            .arg(path)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = run(&file("电话待定"));
    assert!(!ok, "{text}");
    assert!(
        text.contains("第 2 行") && text.contains("ekey.agency.file"),
        "{text}"
    );
    let (ok, text) = run(&file("010-12345678"));
    assert!(ok, "{text}");
    assert!(text.contains("32 agencies loaded"), "{text}");

    let db = format!("sqlite:{}", data.join("ekey.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&db).await.unwrap();
        let row = sqlx::query("SELECT address, hotline FROM agencies WHERE province = '110000'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>("address"), "北京市东城区示例路 1 号");
        assert_eq!(row.get::<String, _>("hotline"), "010-12345678");
        let n: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'agency.load_file'")
                .fetch_one(&pool)
                .await
                .unwrap()
                .get("n");
        assert_eq!(n, 1, "one audit record, none for the refused file");
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM agencies WHERE province = '660000'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get("n");
        assert_eq!(n, 1);
    });
}

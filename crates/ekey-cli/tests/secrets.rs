//! The secrets of a production instance (`ekey serve`): the CA key passphrase and the token
//! master secret come from the environment or from files the environment names, never show
//! in the logs, and an instance refuses to start in production mode with the secrets of a
//! demo.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    c
}

/// Runs `cmd` until it exits (at most 60 s): exit success and everything it printed.
fn run_to_end(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("running ekey");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// One HTTP/1.1 request with `Connection: close`: the status (0 when nothing answers).
fn http(port: u16, method: &str, path: &str, json: &str) -> (u16, Vec<u8>) {
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Vec::new());
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    );
    if c.write_all(head.as_bytes()).is_err() {
        return (0, Vec::new());
    }
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let status = String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[test]
fn production_refuses_the_secrets_of_a_demo() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    // A demo's first start makes its data directory, CA and secrets; stop it at once.
    let port = ekey_testkit::free_port();
    let mut demo = ekey()
        .args(["demo", "--data"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = demo.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.contains("Ctrl-C") {
            break;
        }
    }
    demo.kill().unwrap();
    demo.wait().unwrap();

    // The same directory under `ekey serve`: refused, saying why, before it listens.
    let config = dir.path().join("prod.toml");
    ekey_testkit::config::write_production_config(&config, &data, ekey_testkit::free_port());
    let (ok, text) = run_to_end(ekey().args(["serve", "--config"]).arg(&config));
    assert!(!ok, "ekey serve started on demo secrets:\n{text}");
    assert!(
        text.contains("refusing to start in production mode") && text.contains("`ekey demo`"),
        "{text}"
    );

    // Weak values from the environment are refused too, by name and never by value.
    let fresh = dir.path().join("fresh");
    let config = dir.path().join("fresh.toml");
    ekey_testkit::config::write_production_config(&config, &fresh, ekey_testkit::free_port());
    let (ok, text) = run_to_end(
        ekey()
            .args(["serve", "--config"])
            .arg(&config)
            .env("EKEY_CA_PASSPHRASE", "changeme")
            .env("EKEY_PROVIDER_MASTER", "0123456789abcdef-master")
            .env("EKEY_PIN_SECRET", "0123456789abcdef-pin"),
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("EKEY_CA_PASSPHRASE (CA key passphrase) is a well-known"),
        "{text}"
    );
    assert!(!text.contains("changeme"), "the value was printed:\n{text}");
}

#[test]
fn production_secrets_come_from_the_environment_and_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = ekey_testkit::free_port();
    let config = dir.path().join("ekey.toml");
    ekey_testkit::config::write_production_config(&config, &data, port);
    let ca_passphrase = "ca-passphrase-from-env-4f1d9a7c2b";
    let master = "provider-master-from-file-8e3b6d0a91";
    let pin_secret = "pin-secret-from-env-27c5f0e4d1";
    let master_file = dir.path().join("master.secret");
    std::fs::write(&master_file, format!("{master}\n")).unwrap();

    let log = dir.path().join("serve.log");
    let mut child = ekey()
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .env("EKEY_CA_PASSPHRASE", ca_passphrase)
        .env("EKEY_PROVIDER_MASTER_FILE", &master_file)
        .env("EKEY_PIN_SECRET", pin_secret)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("serve.err")).unwrap())
        .spawn()
        .unwrap();
    // Serving: the health check answers and a failed login is refused.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http(port, "GET", "/healthz", "").0 == 200 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "ekey serve stopped: {}",
            std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "ekey serve did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = format!(r#"{{"login": "admin", "password": "{ca_passphrase}"}}"#);
    assert_eq!(http(port, "POST", "/api/v1/sessions", &body).0, 401);
    assert_eq!(http(port, "GET", "/crl/issuing.crl", "").0, 200);
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    child.wait().unwrap();

    // Nothing was written beside the data: the secrets stayed outside.
    for name in ["ca-passphrase", "provider-master", "pin-secret"] {
        assert!(
            !data.join("secrets").join(name).exists(),
            "{name} was written to the data directory"
        );
    }
    let logged = format!(
        "{}{}",
        std::fs::read_to_string(&log).unwrap(),
        std::fs::read_to_string(dir.path().join("serve.err")).unwrap()
    );
    assert!(
        logged.len() > 200,
        "trace logging produced output: {logged}"
    );
    for secret in [ca_passphrase, master, pin_secret] {
        assert!(!logged.contains(secret), "{secret} appears in the log");
    }

    // The CA key files are sealed with that passphrase: another one does not open them.
    let (ok, text) = run_to_end(
        ekey()
            .args(["serve", "--config"])
            .arg(&config)
            .env("EKEY_CA_PASSPHRASE", "another-passphrase-0123456789")
            .env("EKEY_PROVIDER_MASTER_FILE", &master_file)
            .env("EKEY_PIN_SECRET", pin_secret),
    );
    assert!(!ok, "started with the wrong CA passphrase:\n{text}");
    assert!(!text.contains("another-passphrase"), "{text}");
}

/// Production personalises hardware keys: without a PKCS#11 token module, `ekey serve`
/// refuses to start unless software tokens are allowed in so many words (in the file, or
/// `EKEY_ALLOW_SOFTWARE_TOKENS_INSECURE`); the demo needs no such setting.
#[test]
fn production_refuses_software_tokens_unless_allowed_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = ekey_testkit::free_port();
    let config = dir.path().join("ekey.toml");
    ekey_testkit::config::write_production_config(&config, &data, port);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("allow_software_tokens_insecure = true\n", ""),
    )
    .unwrap();
    let serve = || {
        let mut c = ekey();
        c.args(["serve", "--config"])
            .arg(&config)
            .env("EKEY_CA_PASSPHRASE", "ca-passphrase-software-tokens-3e8a")
            .env("EKEY_PROVIDER_MASTER", "provider-master-software-tokens-51")
            .env("EKEY_PIN_SECRET", "pin-secret-software-tokens-0c7f2d");
        c
    };
    let (ok, text) = run_to_end(&mut serve());
    assert!(!ok, "ekey serve started with software tokens:\n{text}");
    assert!(
        text.contains("refusing to start in production mode")
            && text.contains("software tokens")
            && text.contains("allow_software_tokens_insecure = true")
            && text.contains("EKEY_TOKEN_PKCS11_MODULE"),
        "{text}"
    );
    assert_eq!(http(port, "GET", "/healthz", "").0, 0, "nothing listens");

    // Allowed by the environment variable: it serves.
    let mut child = serve()
        .env("EKEY_ALLOW_SOFTWARE_TOKENS_INSECURE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/healthz", "").0 != 200 {
        assert!(child.try_wait().unwrap().is_none(), "ekey serve stopped");
        assert!(Instant::now() < deadline, "ekey serve did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    child.wait().unwrap();
}

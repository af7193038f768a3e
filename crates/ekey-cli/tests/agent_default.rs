//! `ekey agent` started as the portal's instructions write it — no key named — runs, looks
//! for keys in its default places and says on `/status` and in its window that no key is
//! present yet, instead of exiting with a usage error (issue 16 item 16).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn get_status(addr: &str, lang: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\nAccept-Language: {lang}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_agent_without_named_keys_runs_and_says_no_key_is_present() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ekey"))
        .args(["agent", "--listen", "127.0.0.1:0"])
        .current_dir(home.path())
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ekey agent");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("key helper is running") || line.contains("key(s) present") {
                let _ = tx.send(printed.clone());
            }
        }
    });
    let printed = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(p) => p,
        Err(_) => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "ekey agent printed no banner; status {:?}, stderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    assert!(
        printed.contains("尚未检测到电子钥匙"),
        "the window says no key is present:\n{printed}"
    );
    let addr = printed
        .lines()
        .find_map(|l| {
            l.split("http://")
                .nth(1)
                .filter(|_| l.contains("listening"))
        })
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .expect("address in the banner");
    let tokens = home.path().join(".config/ekey-agent/tokens");
    assert!(printed.contains(&tokens.display().to_string()), "{printed}");

    let answer = get_status(&addr, "zh-CN");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["agent"], "ekey-agent", "{v}");
    assert_eq!(v["keys"], 0, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("尚未检测到电子钥匙"),
        "{v}"
    );
    assert!(
        v["looking_in"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str() == Some(&tokens.display().to_string())),
        "{v}"
    );
    let en = get_status(&addr, "en");
    assert!(en.contains("no key is present yet"), "{en}");

    // Still running: it did not exit.
    assert!(child.try_wait().unwrap().is_none(), "the agent exited");
    let _ = child.kill();
    let _ = child.wait();
}

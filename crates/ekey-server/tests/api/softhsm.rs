//! The first-issue path with the key personalised on a PKCS#11 token (SoftHSM2): the key
//! pair is generated on the token and never leaves it; `pkcs11-tool` sees our objects; the
//! enterprise's initial PIN opens it; the certificate verifies with OpenSSL.

use std::path::PathBuf;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

const CA_PIN: &str = "ca-user-pin-2026";
const CA_TOKEN: &str = "ekey-ca-hsm";

/// The PKCS#11 module (SoftHSM2). Fails, never skips, when it is missing.
fn softhsm() -> PathBuf {
    let module = PathBuf::from(
        std::env::var("EKEY_SOFTHSM_MODULE")
            .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into()),
    );
    assert!(
        module.exists(),
        "SoftHSM2 is required: apt-get install softhsm2 ({} missing)",
        module.display()
    );
    module
}

/// SoftHSM2 reads SOFTHSM2_CONF, a process-wide setting this crate may not change at run
/// time: the test runs itself again as a child process with its own token directory.
fn in_child_with_softhsm(test: &str) -> bool {
    if std::env::var_os("EKEY_SOFTHSM_CHILD").is_some() {
        return true;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env("SOFTHSM2_CONF", &conf)
        .env("EKEY_SOFTHSM_CHILD", "1")
        .env("EKEY_CA_PKCS11_PIN", CA_PIN)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
    false
}

async fn first_issue_on_softhsm(db: Db) {
    let module = softhsm();
    // The CA's keys live in the HSM too: a token for them, initialised like an operator would.
    ekey_ca::Pkcs11Key::init_token(&module, CA_TOKEN, "ca-so-pin-2026", CA_PIN).unwrap();
    let s = TestServer::start_with(db, chrono::Utc::now(), |c| {
        c.token_pkcs11_module = Some(module.clone());
        c.ca_pkcs11_module = Some(module.clone());
        c.ca_pkcs11_token = Some(CA_TOKEN.into());
    })
    .await;
    // Only certificates on disk: no CA key file.
    let ca_files: Vec<String> = std::fs::read_dir(s.data_dir.join("ca"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        ca_files
            .iter()
            .all(|f| f.ends_with(".crt") || f == "root.crl"),
        "{ca_files:?}"
    );
    let out = Command::new("pkcs11-tool")
        .args([
            "--module",
            module.to_str().unwrap(),
            "--token-label",
            CA_TOKEN,
            "--login",
            "--pin",
            CA_PIN,
            "--list-objects",
            "--type",
            "privkey",
        ])
        .output()
        .expect("pkcs11-tool is required (apt-get install opensc)");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("ekey-ca-issuing") && listing.contains("never extractable"),
        "{listing}"
    );
    let ent = s.login("demo@ekey.example").await;
    let agency = s.login("agency-320000").await;
    let provider = s.login("provider").await;
    let id = request_in_agency_review(&s, &ent).await;
    for t in [&agency, &provider] {
        let (status, v) = s
            .post(
                &format!("/api/v1/requests/{id}/decision"),
                Some(t),
                json!({"approve": true}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/produce"),
            Some(&provider),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    let key = keys[0].clone();
    // The portal names the token by its serial; pkcs11-tool finds it by its label.
    let label = {
        use ekey_token::Token;
        ekey_token::Pkcs11Token::open(&module, key["token_serial"].as_str().unwrap())
            .unwrap()
            .label()
    };
    let key_id = key["id"].as_str().unwrap().to_string();
    let (_, v) = s
        .get(&format!("/api/v1/keys/{key_id}/initial-pin"), Some(&ent))
        .await;
    let pin = v["initial_pin"].as_str().unwrap().to_string();

    // pkcs11-tool sees the key we generated on the token, the private half never extractable.
    let out = Command::new("pkcs11-tool")
        .args([
            "--module",
            module.to_str().unwrap(),
            "--token-label",
            &label,
            "--login",
            "--pin",
            &pin,
            "--list-objects",
        ])
        .output()
        .expect("pkcs11-tool is required (apt-get install opensc)");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{listing} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listing.contains("Private Key Object; EC"), "{listing}");
    assert!(listing.contains("never extractable"), "{listing}");
    assert!(listing.contains("Certificate Object"), "{listing}");

    // The initial PIN opens the token and it signs.
    {
        use ekey_token::Token;
        let token = ekey_token::Pkcs11Token::open(&module, &label).unwrap();
        token.sign(&pin, "sign", b"hello").unwrap();
    }

    // The certificate verifies against the CA.
    let dir = tempfile::tempdir().unwrap();
    let fetch = |path: String, token: Option<String>| {
        let s = &s;
        async move {
            let mut b = s.client.get(s.url(&path));
            if let Some(t) = token {
                b = b.bearer_auth(t);
            }
            b.send().await.unwrap().bytes().await.unwrap().to_vec()
        }
    };
    for (name, der) in [
        ("root", fetch("/ca/root.crt".into(), None).await),
        ("issuing", fetch("/ca/issuing.crt".into(), None).await),
        (
            "cert",
            fetch(
                format!("/api/v1/keys/{key_id}/certificate"),
                Some(ent.clone()),
            )
            .await,
        ),
    ] {
        std::fs::write(dir.path().join(format!("{name}.der")), der).unwrap();
        let ok = Command::new("openssl")
            .args(["x509", "-inform", "DER", "-in"])
            .arg(dir.path().join(format!("{name}.der")))
            .arg("-out")
            .arg(dir.path().join(format!("{name}.pem")))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(dir.path().join("root.pem"))
        .arg("-untrusted")
        .arg(dir.path().join("issuing.pem"))
        .arg(dir.path().join("cert.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Delivery to completed, exactly as with a software token.
    let (status, v) = s
        .post(
            "/api/v1/shipments",
            Some(&provider),
            json!({"courier": "顺丰", "tracking_number": "SF100", "request_ids": [id]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let shipment = v["id"].as_str().unwrap().to_string();
    s.post(
        &format!("/api/v1/shipments/{shipment}/receive"),
        Some(&agency),
        json!({}),
    )
    .await;
    s.post(
        &format!("/api/v1/requests/{id}/notify"),
        Some(&agency),
        json!({}),
    )
    .await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/handover"),
            Some(&agency),
            json!({"method": "mail", "disclaimer_received": true, "licence_copy_received": true,
                   "recipient": "李明", "mobile": "13912345678", "id_number": "11010519491231002X",
                   "address": "江苏省南京市建邺区江东中路100号 5楼", "courier": "EMS", "tracking_number": "EM2"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");
    let (_, keys) = s.get("/api/v1/keys", Some(&ent)).await;
    assert_eq!(keys[0]["state"], "active");

    unlock_on_softhsm(&s, &module, &key, &pin).await;
}

/// The full unlock of a hardware key: six wrong PINs lock it; the agent reads its
/// challenge; the unlock request carries it; the provider's approval mails the code; the
/// agent applies it with a new PIN and the key signs again. The serial the portal shows is
/// the one the key and the agent show.
async fn unlock_on_softhsm(
    s: &TestServer,
    module: &std::path::Path,
    key: &serde_json::Value,
    pin: &str,
) {
    use ekey_token::Token;
    let p = ekey_testkit::scenario::Portal::new(&s.base);
    let ent = s.login("demo@ekey.example").await;
    let provider = s.login("provider").await;
    let portal_serial = key["token_serial"].as_str().unwrap().to_string();
    let token = ekey_token::Pkcs11Token::open(module, &portal_serial).unwrap();
    assert_eq!(
        token.serial(),
        portal_serial,
        "the portal shows the key's own serial"
    );
    let agent = crate::agent::RunningAgent::start_paired_with(
        s,
        vec![ekey_agent::TokenSource::Pkcs11 {
            module: module.to_path_buf(),
            label: portal_serial.clone(),
        }],
    )
    .await;
    let (status, listed) = agent.call("GET", "/keys", None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed[0]["serial"], portal_serial.as_str(), "{listed}");
    let home = crate::pages::PageClient::new(s);
    home.login("demo@ekey.example", PASSWORD).await;
    let page = home.get("/portal").await;
    assert!(page.body.contains(&portal_serial), "{}", page.body);

    for _ in 0..6 {
        assert!(token.sign("000000", "sign", b"x").is_err());
    }
    assert_eq!(
        token.sign(pin, "sign", b"x").unwrap_err().code(),
        "ekey.token.locked"
    );
    let (status, c) = agent
        .call(
            "POST",
            &format!("/keys/{portal_serial}/unlock-challenge"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let id = p
        .request_under_review(
            &ent,
            json!({"kind": "unlock", "login_name": {"mode": "original", "value": key["login_name"]},
                   "authorised_user": person("hsm-unlock@example.com"), "unlock_challenge": c["challenge"]}),
            &["unlock_form", "business_licence"],
        )
        .await
        .unwrap();
    p.approve(&provider, &id).await.unwrap();
    let code = s.unlock_code("hsm-unlock@example.com").await;
    let mail = s
        .mailbox()
        .await
        .into_iter()
        .find(|m| m["to"] == "hsm-unlock@example.com" && m["subject"] == "电子钥匙密码重置")
        .unwrap();
    assert!(
        mail["body"].as_str().unwrap().contains(&portal_serial),
        "the mail names the key by the serial it shows: {mail}"
    );
    let (_, r) = s.get(&format!("/api/v1/requests/{id}"), Some(&ent)).await;
    let number = r["number"].as_str().unwrap().to_string();
    let (status, proof) = agent
        .call(
            "POST",
            &format!("/keys/{portal_serial}/unlock"),
            Some(json!({"code": code, "new_pin": "Hsm-pin-2026", "request_number": number})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/unlock-done"),
            Some(&ent),
            proof,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");
    // The key signs with its new PIN; the old one is refused.
    token.sign("Hsm-pin-2026", "sign", b"after unlock").unwrap();
    assert_eq!(
        token.sign(pin, "sign", b"x").unwrap_err().code(),
        "ekey.token.pin_incorrect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_issue_on_softhsm_sqlite() {
    if in_child_with_softhsm("softhsm::first_issue_on_softhsm_sqlite") {
        first_issue_on_softhsm(Db::Sqlite).await;
    }
}

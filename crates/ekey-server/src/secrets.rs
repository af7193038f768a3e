//! Secrets the server needs and never stores in the database: the CA key passphrase, the
//! provider master secret (per-token admin keys derive from it) and the secret initial PINs
//! derive from. Each comes from an environment variable or a file readable by the service
//! only; `ekey demo` creates the files (mode 0600) on first start.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The secrets of one deployment.
pub struct Secrets {
    /// Passphrase of the CA key files.
    pub ca_passphrase: Zeroizing<String>,
    /// Provider master secret for per-token admin keys (unlock).
    pub provider_master: Zeroizing<Vec<u8>>,
    /// Secret for deriving initial PINs.
    pub pin_secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

/// Where a secret came from (for messages; never the value).
fn read_or_create(
    dir: &Path,
    name: &str,
    env: &str,
    create: bool,
    get_env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Zeroizing<String>> {
    if let Some(v) = get_env(env)
        && !v.trim().is_empty()
    {
        return Ok(Zeroizing::new(v.trim().to_string()));
    }
    // `<NAME>_FILE`: a file holding the secret (a container or systemd credential).
    let file_env = format!("{env}_FILE");
    if let Some(file) = get_env(&file_env)
        && !file.trim().is_empty()
    {
        let v = std::fs::read_to_string(file.trim())
            .with_context(|| format!("reading the secret named by {file_env} ({})", file.trim()))?;
        if v.trim().is_empty() {
            anyhow::bail!(
                "the secret file named by {file_env} ({}) is empty",
                file.trim()
            );
        }
        return Ok(Zeroizing::new(v.trim().to_string()));
    }
    let path: PathBuf = dir.join(name);
    if path.exists() {
        let v = std::fs::read_to_string(&path)
            .with_context(|| format!("reading secret {}", path.display()))?;
        return Ok(Zeroizing::new(v.trim().to_string()));
    }
    if !create {
        anyhow::bail!(
            "secret missing: set {env} or {file_env}, or create {} (mode 0600)",
            path.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, value.as_bytes())?;
    Ok(Zeroizing::new(value))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("creating secret {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

impl Secrets {
    /// Loads from `EKEY_CA_PASSPHRASE`, `EKEY_PROVIDER_MASTER`, `EKEY_PIN_SECRET` or the
    /// files of the same purpose in `dir`; with `create`, missing ones are generated.
    pub fn load(dir: &Path, create: bool) -> anyhow::Result<Secrets> {
        Self::load_with(dir, create, &|name| std::env::var(name).ok())
    }

    /// [`Secrets::load`] reading the environment through `get_env`. Each secret comes from
    /// `EKEY_<NAME>` (the value), `EKEY_<NAME>_FILE` (a file holding it) or the file
    /// `<name>` in `dir`, in that order.
    pub fn load_with(
        dir: &Path,
        create: bool,
        get_env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Secrets> {
        let get = |name: &str, env: &str| read_or_create(dir, name, env, create, get_env);
        Ok(Secrets {
            ca_passphrase: get("ca-passphrase", "EKEY_CA_PASSPHRASE")?,
            provider_master: Zeroizing::new(
                get("provider-master", "EKEY_PROVIDER_MASTER")?
                    .as_bytes()
                    .to_vec(),
            ),
            pin_secret: Zeroizing::new(get("pin-secret", "EKEY_PIN_SECRET")?.as_bytes().to_vec()),
        })
    }

    /// Marks `dir` as holding the secrets of a demo instance: `ekey serve` (production)
    /// refuses them.
    pub fn mark_demo(dir: &Path) -> anyhow::Result<()> {
        let marker = dir.join(DEMO_MARKER);
        if !marker.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::write(
                &marker,
                "These secrets were made by `ekey demo`; `ekey serve` refuses them.\n",
            )
            .with_context(|| format!("writing {}", marker.display()))?;
        }
        Ok(())
    }

    /// Why these secrets (and `config`) must not run a production instance; empty when
    /// they may. Names the setting, never a value.
    pub fn production_problems(&self, dir: &Path, config: &crate::Config) -> Vec<String> {
        let mut out = Vec::new();
        if dir.join(DEMO_MARKER).exists() {
            out.push(format!(
                "the secrets in {} were made by `ekey demo`; give this instance its own \
                 (EKEY_CA_PASSPHRASE, EKEY_PROVIDER_MASTER, EKEY_PIN_SECRET or their _FILE \
                 variants, or new files) and a CA made with them",
                dir.display()
            ));
        }
        let checks: [(&str, &[u8]); 3] = [
            (
                "EKEY_CA_PASSPHRASE (CA key passphrase)",
                self.ca_passphrase.as_bytes(),
            ),
            (
                "EKEY_PROVIDER_MASTER (token master secret)",
                &self.provider_master,
            ),
            ("EKEY_PIN_SECRET (initial PIN secret)", &self.pin_secret),
        ];
        for (name, value) in checks {
            if let Some(why) = weak_secret(value) {
                out.push(format!("{name} {why}"));
            }
        }
        if config.mail_transport == crate::config::MailTransport::Dev {
            out.push(
                "mail_transport = \"dev\" keeps every mail in the demo mailbox; use \"smtp\" \
                 with smtp_url"
                    .into(),
            );
        }
        if config.token_pkcs11_module.is_some()
            && config.token_transport_so_pin == crate::Config::default().token_transport_so_pin
        {
            out.push(
                "token_transport_so_pin is the default; set EKEY_TOKEN_SO_PIN to the \
                 transport PIN the key supplier gave you"
                    .into(),
            );
        }
        if config.token_pkcs11_module.is_none() && !config.allow_software_tokens_insecure {
            out.push(
                "no token_pkcs11_module (EKEY_TOKEN_PKCS11_MODULE): keys would be personalised \
                 as software tokens, key files on this server instead of hardware keys; name the \
                 key vendor's PKCS#11 library, or, for a test installation only, set \
                 allow_software_tokens_insecure = true (EKEY_ALLOW_SOFTWARE_TOKENS_INSECURE=1)"
                    .into(),
            );
        }
        if config.sms_url.is_some()
            && config
                .sms_secret
                .as_deref()
                .is_none_or(|v| weak_secret(v.as_bytes()).is_some())
        {
            out.push("sms_url needs EKEY_SMS_SECRET of 16 characters or more".into());
        }
        out
    }
}

/// File in the secrets directory that marks demo secrets.
pub const DEMO_MARKER: &str = "DEMO-SECRETS";

/// Values that must never guard production keys.
const KNOWN_WEAK: &[&str] = &[
    "changeme",
    "change-me",
    "secret",
    "password",
    "demo",
    "ekey",
    "ekey-demo",
    "ekey-demo-2026",
    "test",
    "testing",
    "12345678",
    "00000000",
    "passphrase",
];

/// Why a secret is too weak for production, if it is.
fn weak_secret(value: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(value).trim().to_lowercase();
    if KNOWN_WEAK.contains(&text.as_str()) {
        return Some("is a well-known demo or default value");
    }
    if value.len() < 16 {
        return Some("is shorter than 16 characters");
    }
    None
}

impl Secrets {
    /// The initial PIN of a token: eight digits derived from the token serial. Nobody stores
    /// it; the enterprise reads it on its portal and changes it on first use; the provider's
    /// operator never sees it.
    pub fn initial_pin(&self, token_serial: &str) -> Zeroizing<String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.pin_secret).expect("any key length");
        mac.update(b"ekey initial pin\0");
        mac.update(token_serial.as_bytes());
        let out = mac.finalize().into_bytes();
        let n = u64::from_be_bytes(out[..8].try_into().expect("8 bytes")) % 100_000_000;
        Zeroizing::new(format!("{n:08}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = Secrets::load(dir.path(), true).unwrap();
        let b = Secrets::load(dir.path(), false).unwrap();
        assert_eq!(*a.ca_passphrase, *b.ca_passphrase);
        assert_eq!(a.initial_pin("SK0001").len(), 8);
        assert_eq!(*a.initial_pin("SK0001"), *b.initial_pin("SK0001"));
        assert_ne!(*a.initial_pin("SK0001"), *a.initial_pin("SK0002"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca-passphrase"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let empty = tempfile::tempdir().unwrap();
        assert!(Secrets::load(empty.path(), false).is_err());
    }

    #[test]
    fn a_secret_comes_from_its_variable_or_the_file_its_file_variable_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("master.txt");
        std::fs::write(&file, "from-a-file-0123456789\n").unwrap();
        let file_name = file.display().to_string();
        let env = move |name: &str| match name {
            "EKEY_CA_PASSPHRASE" => Some("from-the-environment-0123".to_string()),
            "EKEY_PROVIDER_MASTER_FILE" => Some(file_name.clone()),
            "EKEY_PIN_SECRET" => Some("pin-secret-0123456789abcdef".to_string()),
            _ => None,
        };
        let s = Secrets::load_with(&dir.path().join("secrets"), false, &env).unwrap();
        assert_eq!(*s.ca_passphrase, "from-the-environment-0123");
        assert_eq!(&*s.provider_master, b"from-a-file-0123456789");
        // Nothing was written: all three came from outside the data directory.
        assert!(!dir.path().join("secrets").exists());
        // A _FILE variable naming a missing file stops the start, naming the variable.
        let missing = |name: &str| {
            (name == "EKEY_CA_PASSPHRASE_FILE").then(|| "/nonexistent/ekey-secret".to_string())
        };
        let e = Secrets::load_with(dir.path(), false, &missing).unwrap_err();
        assert!(
            format!("{e:#}").contains("EKEY_CA_PASSPHRASE_FILE"),
            "{e:#}"
        );
        // The Debug form shows no value.
        assert_eq!(format!("{s:?}"), "Secrets { .. }");
    }

    #[test]
    fn production_refuses_demo_secrets_and_demo_settings() {
        let dir = tempfile::tempdir().unwrap();
        let secrets_dir = dir.path().join("secrets");
        let good = Secrets::load(&secrets_dir, true).unwrap();
        let config = crate::Config {
            mail_transport: crate::config::MailTransport::Smtp,
            smtp_url: Some("smtp://127.0.0.1:25".into()),
            allow_software_tokens_insecure: true,
            ..crate::Config::default()
        };
        assert!(good.production_problems(&secrets_dir, &config).is_empty());
        // Software tokens only when allowed in so many words.
        let software = crate::Config {
            allow_software_tokens_insecure: false,
            ..config.clone()
        };
        let problems = good.production_problems(&secrets_dir, &software);
        assert!(
            problems.len() == 1 && problems[0].contains("allow_software_tokens_insecure"),
            "{problems:?}"
        );

        // Made by `ekey demo`.
        Secrets::mark_demo(&secrets_dir).unwrap();
        let problems = good.production_problems(&secrets_dir, &config);
        assert!(problems[0].contains("ekey demo"), "{problems:?}");
        std::fs::remove_file(secrets_dir.join(DEMO_MARKER)).unwrap();

        // Well-known or short values, the demo mailbox, the default transport PIN.
        let env = |name: &str| match name {
            "EKEY_CA_PASSPHRASE" => Some("changeme".to_string()),
            "EKEY_PROVIDER_MASTER" => Some("short".to_string()),
            _ => None,
        };
        let weak = Secrets::load_with(&secrets_dir, false, &env).unwrap();
        let config = crate::Config {
            mail_transport: crate::config::MailTransport::Dev,
            token_pkcs11_module: Some("/usr/lib/softhsm/libsofthsm2.so".into()),
            sms_url: Some("http://127.0.0.1:9/sms".into()),
            ..crate::Config::default()
        };
        let problems = weak.production_problems(&secrets_dir, &config).join("\n");
        for needle in [
            "EKEY_CA_PASSPHRASE (CA key passphrase) is a well-known",
            "EKEY_PROVIDER_MASTER (token master secret) is shorter than 16",
            "mail_transport = \"dev\"",
            "token_transport_so_pin",
            "EKEY_SMS_SECRET",
        ] {
            assert!(problems.contains(needle), "{needle} in {problems}");
        }
        // No message repeats a value.
        assert!(
            !problems.contains("changeme") && !problems.contains("short\""),
            "{problems}"
        );
    }
}

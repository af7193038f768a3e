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

fn read_or_create(
    dir: &Path,
    name: &str,
    env: &str,
    create: bool,
) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(v) = std::env::var(env)
        && !v.trim().is_empty()
    {
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
            "secret missing: set {env} or create {} (mode 0600)",
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
        Ok(Secrets {
            ca_passphrase: read_or_create(dir, "ca-passphrase", "EKEY_CA_PASSPHRASE", create)?,
            provider_master: Zeroizing::new(
                read_or_create(dir, "provider-master", "EKEY_PROVIDER_MASTER", create)?
                    .as_bytes()
                    .to_vec(),
            ),
            pin_secret: Zeroizing::new(
                read_or_create(dir, "pin-secret", "EKEY_PIN_SECRET", create)?
                    .as_bytes()
                    .to_vec(),
            ),
        })
    }

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
}

//! The software token: one JSON file per key, for demos and tests.
//!
//! Layout of the file (all binary fields base64):
//! - a random 32-byte **data key** encrypts each private key (XChaCha20-Poly1305, AAD
//!   binds serial and container name);
//! - the data key is wrapped twice: under `Argon2id(PIN)` (m = 19 MiB, t = 2, p = 1,
//!   parameters stored so they can be raised later) and under `HKDF(K)`, where `K` is
//!   the unlock seal secret that only the provider can recompute (see the crate docs);
//! - the PIN counter, the public seal, an outstanding challenge, public keys and
//!   certificates are stored in clear.
//!
//! Every change takes an exclusive `flock` on `<file>.lock` (a side file, because the
//! token file itself is replaced by rename) and rewrites the file atomically: temp file,
//! fsync, rename, fsync of the directory. A promotion (renaming the `pending` container
//! to `active`, dropping the old `active`, re-encrypting the private key under its new
//! name) is one such rewrite. A temp file left by a process that died before its rename
//! is never read and is removed by the next save.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use p256::SecretKey;
use p256::ecdsa::signature::Signer;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, b64};
use crate::der;
use crate::error::{Result, TokenError};
use crate::unlock::{self, PendingChallenge, Seal};
use crate::{ContainerInfo, MAX_PIN_TRIES, Token, TokenStatus, admin};

/// Value of the `format` field; anything else is refused.
const FORMAT: &str = "ekey-soft-token/1";
/// Argon2id memory in KiB (19 MiB, the OWASP minimum for Argon2id).
const ARGON2_M_KIB: u32 = 19 * 1024;
/// Argon2id passes.
const ARGON2_T: u32 = 2;
/// Argon2id lanes.
const ARGON2_P: u32 = 1;

#[derive(Serialize, Deserialize)]
struct FileState {
    format: String,
    serial: String,
    label: String,
    pin_tries_left: u8,
    pin: PinWrap,
    seal: Seal,
    /// The data key under `HKDF(K)` of the current seal.
    data_key_by_seal: Wrapped,
    challenge: Option<PendingChallenge>,
    containers: Vec<Container>,
}

#[derive(Serialize, Deserialize)]
struct PinWrap {
    #[serde(with = "b64")]
    salt: Vec<u8>,
    m_kib: u32,
    t: u32,
    p: u32,
    /// The data key under `Argon2id(PIN, salt)`.
    data_key: Wrapped,
}

#[derive(Serialize, Deserialize)]
struct Wrapped {
    #[serde(with = "b64")]
    nonce: Vec<u8>,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Container {
    name: String,
    #[serde(with = "b64")]
    public_key_spki: Vec<u8>,
    /// The 32-byte P-256 scalar under the data key.
    private_key: Wrapped,
    #[serde(with = "b64::opt", default)]
    certificate: Option<Vec<u8>>,
}

type DataKey = Zeroizing<[u8; 32]>;

/// A software token: a file holding encrypted key pairs, certificates, the PIN counter
/// and the unlock seal. **For demos and tests**: whoever copies the file can guess PINs
/// offline (see the crate documentation).
#[derive(Debug, Clone)]
pub struct SoftToken {
    path: PathBuf,
    serial: String,
    label: String,
    /// The PIN this handle last verified, like a PKCS#11 session that stays logged in: the
    /// same PIN again on the same handle skips the Argon2 derivation and the counter writes,
    /// as long as the file's PIN wrap is unchanged and no failure was counted since.
    session: std::sync::Arc<std::sync::Mutex<Option<PinSession>>>,
}

/// A verified PIN and the key it derives (zeroed on drop; never printed).
struct PinSession {
    salt: Vec<u8>,
    pin: Zeroizing<String>,
    kek: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for PinSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinSession { .. }")
    }
}

fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The exclusive lock on a token file and the state read under it.
struct Guard {
    _lock: File,
    path: PathBuf,
    state: FileState,
}

impl SoftToken {
    /// Personalises a new software token at `path` (provider side): sets the initial PIN
    /// and the unlock seal for the recovery key derived from `master_secret` and
    /// `serial`. The master secret itself is not stored. Fails with
    /// `ekey.token.already_exists` if the file exists.
    pub fn create(
        path: impl AsRef<Path>,
        serial: &str,
        label: &str,
        initial_pin: &str,
        master_secret: &[u8],
    ) -> Result<SoftToken> {
        crate::validate_pin(initial_pin)?;
        for (what, v) in [("serial", serial), ("label", label)] {
            if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) {
                return Err(TokenError::Unsupported(format!(
                    "{what} must be 1–64 characters"
                )));
            }
        }
        let path = path.as_ref().to_path_buf();
        let lock = lock_file(&path)?;
        if path.exists() {
            return Err(TokenError::AlreadyExists(path.display().to_string()));
        }
        let data_key: DataKey = Zeroizing::new(crypto::random_array()?);
        let (pin, kek) = wrap_under_pin_with_kek(serial, initial_pin, &data_key)?;
        // The handle that set the PIN starts logged in with it.
        let session = PinSession {
            salt: pin.salt.clone(),
            pin: Zeroizing::new(initial_pin.to_string()),
            kek,
        };
        let recovery_public = admin::recovery_public_key(master_secret, serial);
        let (seal, data_key_by_seal) = new_seal_wrapping(serial, &recovery_public, &data_key)?;
        let state = FileState {
            format: FORMAT.into(),
            serial: serial.into(),
            label: label.into(),
            pin_tries_left: MAX_PIN_TRIES,
            pin,
            seal,
            data_key_by_seal,
            challenge: None,
            containers: Vec::new(),
        };
        let guard = Guard {
            _lock: lock,
            path: path.clone(),
            state,
        };
        guard.save()?;
        Ok(SoftToken {
            path,
            serial: serial.into(),
            label: label.into(),
            session: std::sync::Arc::new(std::sync::Mutex::new(Some(session))),
        })
    }

    /// Opens an existing token file (`ekey.token.not_found` if there is none).
    pub fn open(path: impl AsRef<Path>) -> Result<SoftToken> {
        let path = path.as_ref().to_path_buf();
        let state = read_state(&path)?;
        Ok(SoftToken {
            path,
            serial: state.serial,
            label: state.label,
            session: Default::default(),
        })
    }

    /// The token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> Result<Guard> {
        let lock = lock_file(&self.path)?;
        let state = read_state(&self.path)?;
        if state.serial != self.serial {
            return Err(TokenError::Corrupt(
                "the file now holds another token".into(),
            ));
        }
        Ok(Guard {
            _lock: lock,
            path: self.path.clone(),
            state,
        })
    }
}

/// Where [`Guard::save_with`] stops the process for a crash test (see [`crate::fault`]).
#[derive(Clone, Copy)]
enum CrashPoint {
    None,
    /// The new state is complete and synced in the temp file, the token file is still the
    /// old one.
    BeforeRename(&'static str),
    /// The token file has just been replaced (the directory is not yet synced).
    AfterRename(&'static str),
}

impl Guard {
    /// Writes the state atomically (temp file, fsync, rename, fsync directory).
    fn save(&self) -> Result<()> {
        self.save_with(CrashPoint::None)
    }

    /// [`Guard::save`] with a named crash point. The temp file is
    /// `.<name>.tmp-<pid>`; one left behind by a process that died before its rename is
    /// never read (only the token file is), is truncated if a later process gets the same
    /// pid, and is removed by the next successful save (every save holds the lock, so
    /// any other temp file then present is stale).
    fn save_with(&self, crash: CrashPoint) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| TokenError::Corrupt(format!("encoding: {e}")))?;
        let dir = parent_dir(&self.path);
        let name = self
            .path
            .file_name()
            .ok_or_else(|| TokenError::NotFound(self.path.display().to_string()))?
            .to_string_lossy()
            .into_owned();
        let tmp_prefix = format!(".{name}.tmp-");
        let tmp = dir.join(format!("{tmp_prefix}{}", std::process::id()));
        {
            let mut opts = OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
        }
        if let CrashPoint::BeforeRename(point) = crash {
            crate::fault::point(point);
        }
        fs::rename(&tmp, &self.path)?;
        if let CrashPoint::AfterRename(point) = crash {
            crate::fault::point(point);
        }
        #[cfg(unix)]
        File::open(&dir)?.sync_all()?;
        remove_stale_temp_files(&dir, &tmp_prefix);
        Ok(())
    }

    /// The PIN check with the counter written first (see the crate docs); returns the
    /// data key.
    fn verify_pin(
        &mut self,
        pin: &str,
        session: &std::sync::Mutex<Option<PinSession>>,
    ) -> Result<DataKey> {
        crate::validate_pin(pin)?;
        let left = self.state.pin_tries_left;
        if left == 0 {
            return Err(TokenError::Locked);
        }
        let aad = pin_aad(&self.state.serial);
        if left == MAX_PIN_TRIES {
            let session = session.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = session.as_ref()
                && s.salt == self.state.pin.salt
                && same_secret(s.pin.as_bytes(), pin.as_bytes())
            {
                let w = &self.state.pin.data_key;
                if let Some(dk) = crypto::open(&s.kek, &w.nonce, &w.ciphertext, &aad) {
                    let dk: [u8; 32] = dk
                        .as_slice()
                        .try_into()
                        .map_err(|_| TokenError::Corrupt("data key length".into()))?;
                    return Ok(Zeroizing::new(dk));
                }
            }
        }
        self.state.pin_tries_left = left - 1;
        self.save()?;
        let kek = pin_kek(pin, &self.state.pin)?;
        let w = &self.state.pin.data_key;
        match crypto::open(&kek, &w.nonce, &w.ciphertext, &aad) {
            Some(dk) => {
                let dk: [u8; 32] = dk
                    .as_slice()
                    .try_into()
                    .map_err(|_| TokenError::Corrupt("data key length".into()))?;
                self.state.pin_tries_left = MAX_PIN_TRIES;
                self.save()?;
                *session.lock().unwrap_or_else(|e| e.into_inner()) = Some(PinSession {
                    salt: self.state.pin.salt.clone(),
                    pin: Zeroizing::new(pin.to_string()),
                    kek,
                });
                Ok(Zeroizing::new(dk))
            }
            None => Err(TokenError::PinIncorrect {
                tries_left: left - 1,
            }),
        }
    }

    fn container(&self, name: &str) -> Result<&Container> {
        self.state
            .containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| TokenError::ContainerNotFound(name.into()))
    }

    fn private_key(&self, data_key: &DataKey, c: &Container) -> Result<SecretKey> {
        let aad = key_aad(&self.state.serial, &c.name);
        let bytes = crypto::open(
            data_key,
            &c.private_key.nonce,
            &c.private_key.ciphertext,
            &aad,
        )
        .ok_or_else(|| TokenError::Corrupt(format!("private key of {:?}", c.name)))?;
        SecretKey::from_slice(&bytes)
            .map_err(|_| TokenError::Corrupt(format!("private key of {:?}", c.name)))
    }
}

impl Token for SoftToken {
    fn serial(&self) -> String {
        self.serial.clone()
    }

    fn label(&self) -> String {
        self.label.clone()
    }

    fn status(&self) -> Result<TokenStatus> {
        // The file is only ever replaced by rename, so a plain read sees one whole state.
        let state = read_state(&self.path)?;
        let mut containers: Vec<ContainerInfo> = state
            .containers
            .iter()
            .map(|c| ContainerInfo {
                name: c.name.clone(),
                has_key: true,
                public_key_spki: Some(c.public_key_spki.clone()),
                certificate_der: c.certificate.clone(),
            })
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(TokenStatus {
            serial: state.serial,
            label: state.label,
            pin_tries_left: state.pin_tries_left,
            locked: state.pin_tries_left == 0,
            containers,
        })
    }

    fn generate_key(&self, pin: &str, container: &str) -> Result<Vec<u8>> {
        crate::validate_container_name(container)?;
        let mut g = self.lock()?;
        let dk = g.verify_pin(pin, &self.session)?;
        if g.state.containers.iter().any(|c| c.name == container) {
            return Err(TokenError::ContainerExists(container.into()));
        }
        let key = crypto::random_secret_key()?;
        let spki = crypto::spki_der(&key.public_key())?;
        let (nonce, ciphertext) =
            crypto::seal(&dk, &key.to_bytes(), &key_aad(&g.state.serial, container))?;
        g.state.containers.push(Container {
            name: container.into(),
            public_key_spki: spki.clone(),
            private_key: Wrapped { nonce, ciphertext },
            certificate: None,
        });
        g.state.containers.sort_by(|a, b| a.name.cmp(&b.name));
        g.save()?;
        Ok(spki)
    }

    fn sign(&self, pin: &str, container: &str, message: &[u8]) -> Result<Vec<u8>> {
        crate::validate_container_name(container)?;
        let mut g = self.lock()?;
        let dk = g.verify_pin(pin, &self.session)?;
        let key = g.private_key(&dk, g.container(container)?)?;
        let signer = p256::ecdsa::SigningKey::from(&key);
        let sig: p256::ecdsa::Signature = signer.sign(message);
        Ok(sig.to_der().as_bytes().to_vec())
    }

    fn put_certificate(&self, pin: &str, container: &str, cert_der: &[u8]) -> Result<()> {
        crate::validate_container_name(container)?;
        let fields = der::certificate_fields(cert_der)?;
        let cert_key =
            crypto::public_from_spki(fields.spki).ok_or(TokenError::CertificateMismatch)?;
        let mut g = self.lock()?;
        g.verify_pin(pin, &self.session)?;
        let c = g.container(container)?;
        if crypto::public_from_spki(&c.public_key_spki) != Some(cert_key) {
            return Err(TokenError::CertificateMismatch);
        }
        let c = g
            .state
            .containers
            .iter_mut()
            .find(|c| c.name == container)
            .expect("found above");
        c.certificate = Some(cert_der.to_vec());
        g.save_with(CrashPoint::BeforeRename("token.put_certificate.mid"))
    }

    fn promote(&self, pin: &str, pending: &str, active: &str) -> Result<()> {
        crate::validate_container_name(pending)?;
        crate::validate_container_name(active)?;
        if pending == active {
            return Err(TokenError::ContainerName);
        }
        let mut g = self.lock()?;
        let dk = g.verify_pin(pin, &self.session)?;
        let c = g.container(pending)?;
        if c.certificate.is_none() {
            return Err(TokenError::CertificateMissing(pending.into()));
        }
        // The private key's AAD names its container: re-encrypt it under the new name.
        let key = g.private_key(&dk, c)?;
        let (nonce, ciphertext) =
            crypto::seal(&dk, &key.to_bytes(), &key_aad(&g.state.serial, active))?;
        g.state.containers.retain(|c| c.name != active);
        let c = g
            .state
            .containers
            .iter_mut()
            .find(|c| c.name == pending)
            .expect("found above");
        c.name = active.into();
        c.private_key = Wrapped { nonce, ciphertext };
        g.state.containers.sort_by(|a, b| a.name.cmp(&b.name));
        // One state, one rename: the file holds either the state before or the state after.
        g.save_with(CrashPoint::AfterRename("token.promote.mid"))
    }

    fn delete_container(&self, pin: &str, container: &str) -> Result<()> {
        crate::validate_container_name(container)?;
        let mut g = self.lock()?;
        g.verify_pin(pin, &self.session)?;
        g.container(container)?;
        g.state.containers.retain(|c| c.name != container);
        g.save()
    }

    fn change_pin(&self, old: &str, new: &str) -> Result<()> {
        crate::validate_pin(new)?;
        let mut g = self.lock()?;
        let dk = g.verify_pin(old, &self.session)?;
        g.state.pin = wrap_under_pin(&g.state.serial, new, &dk)?;
        g.save()
    }

    fn unlock_challenge(&self) -> Result<Vec<u8>> {
        let mut g = self.lock()?;
        let pending = unlock::new_challenge(&g.state.seal)?;
        let challenge = pending.challenge.clone();
        g.state.challenge = Some(pending);
        g.save()?;
        Ok(challenge)
    }

    fn apply_unlock(&self, response: &str, new_pin: &str) -> Result<()> {
        crate::validate_pin(new_pin)?;
        let mut g = self.lock()?;
        let serial = g.state.serial.clone();
        let k =
            unlock::recover_secret(&serial, &g.state.seal, g.state.challenge.as_ref(), response)?;
        let w = &g.state.data_key_by_seal;
        let old_dk: DataKey = crypto::open(
            &seal_kek(&serial, &k),
            &w.nonce,
            &w.ciphertext,
            &seal_aad(&serial),
        )
        .and_then(|dk| <[u8; 32]>::try_from(dk.as_slice()).ok())
        .map(Zeroizing::new)
        .ok_or_else(|| TokenError::Corrupt("data key under the unlock seal".into()))?;

        // New data key, new seal: whatever was learnt from this code opens nothing later.
        let new_dk: DataKey = Zeroizing::new(crypto::random_array()?);
        let mut rewrapped = Vec::with_capacity(g.state.containers.len());
        for c in &g.state.containers {
            let key = g.private_key(&old_dk, c)?;
            let (nonce, ciphertext) =
                crypto::seal(&new_dk, &key.to_bytes(), &key_aad(&serial, &c.name))?;
            rewrapped.push(Wrapped { nonce, ciphertext });
        }
        for (c, w) in g.state.containers.iter_mut().zip(rewrapped) {
            c.private_key = w;
        }
        let recovery_public = g.state.seal.recovery_public.clone();
        let (seal, by_seal) = new_seal_wrapping(&serial, &recovery_public, &new_dk)?;
        g.state.pin = wrap_under_pin(&serial, new_pin, &new_dk)?;
        g.state.seal = seal;
        g.state.data_key_by_seal = by_seal;
        g.state.challenge = None;
        g.state.pin_tries_left = MAX_PIN_TRIES;
        g.save()
    }
}

/// Opens (creating if needed) and exclusively locks `<file>.lock`; blocks until free.
fn lock_file(path: &Path) -> Result<File> {
    let name = path
        .file_name()
        .ok_or_else(|| TokenError::NotFound(path.display().to_string()))?
        .to_string_lossy()
        .into_owned();
    let lock_path = parent_dir(path).join(format!("{name}.lock"));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)?;
    f.lock()?;
    Ok(f)
}

/// Removes temp files `<dir>/<prefix><pid>` left by processes that died before their
/// rename. Called with the lock held, after our own temp file was renamed. Best effort.
fn remove_stale_temp_files(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let stale = name.to_str().is_some_and(|n| {
            n.strip_prefix(prefix)
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        });
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read_state(path: &Path) -> Result<FileState> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TokenError::NotFound(path.display().to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    let state: FileState = serde_json::from_slice(&bytes)
        .map_err(|e| TokenError::Corrupt(format!("{}: {e}", path.display())))?;
    if state.format != FORMAT {
        return Err(TokenError::Corrupt(format!(
            "unknown format {:?}",
            state.format
        )));
    }
    Ok(state)
}

fn pin_aad(serial: &str) -> Vec<u8> {
    [b"ekey-soft-dk-pin\0".as_slice(), serial.as_bytes()].concat()
}

fn seal_aad(serial: &str) -> Vec<u8> {
    [b"ekey-soft-dk-seal\0".as_slice(), serial.as_bytes()].concat()
}

fn key_aad(serial: &str, container: &str) -> Vec<u8> {
    [
        b"ekey-soft-key\0".as_slice(),
        serial.as_bytes(),
        b"\0",
        container.as_bytes(),
    ]
    .concat()
}

/// The key-encryption key derived from a PIN with the stored Argon2id parameters.
fn pin_kek(pin: &str, w: &PinWrap) -> Result<Zeroizing<[u8; 32]>> {
    let params = Params::new(w.m_kib, w.t, w.p, Some(32))
        .map_err(|e| TokenError::Corrupt(format!("Argon2 parameters: {e}")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pin.as_bytes(), &w.salt, out.as_mut_slice())
        .map_err(|e| TokenError::Crypto(format!("Argon2: {e}")))?;
    Ok(out)
}

fn wrap_under_pin(serial: &str, pin: &str, data_key: &DataKey) -> Result<PinWrap> {
    wrap_under_pin_with_kek(serial, pin, data_key).map(|(w, _)| w)
}

/// [`wrap_under_pin`], also returning the key derived from the PIN.
fn wrap_under_pin_with_kek(
    serial: &str,
    pin: &str,
    data_key: &DataKey,
) -> Result<(PinWrap, Zeroizing<[u8; 32]>)> {
    let mut w = PinWrap {
        salt: crypto::random_array::<16>()?.to_vec(),
        m_kib: ARGON2_M_KIB,
        t: ARGON2_T,
        p: ARGON2_P,
        data_key: Wrapped {
            nonce: Vec::new(),
            ciphertext: Vec::new(),
        },
    };
    let kek = pin_kek(pin, &w)?;
    let (nonce, ciphertext) = crypto::seal(&kek, data_key.as_slice(), &pin_aad(serial))?;
    w.data_key = Wrapped { nonce, ciphertext };
    Ok((w, kek))
}

fn seal_kek(serial: &str, k: &[u8; unlock::SECRET_LEN]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(crypto::hkdf(
        b"ekey-soft-seal-kek-v1",
        k,
        &[serial.as_bytes()],
    ))
}

/// A new seal and the data key wrapped under its secret.
fn new_seal_wrapping(
    serial: &str,
    recovery_public: &[u8],
    data_key: &DataKey,
) -> Result<(Seal, Wrapped)> {
    let (seal, k) = unlock::new_seal(serial, recovery_public)?;
    let (nonce, ciphertext) = crypto::seal(
        &seal_kek(serial, &k),
        data_key.as_slice(),
        &seal_aad(serial),
    )?;
    Ok((seal, Wrapped { nonce, ciphertext }))
}

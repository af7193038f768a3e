//! CA keys on a PKCS#11 module (an HSM; SoftHSM2 in tests).
//!
//! [`Pkcs11Key`] is a [`CaSigner`] whose private key is generated on the token
//! (`CKA_TOKEN`, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`) and never leaves it. It signs
//! the way every module can: ECDSA P-256 as `CKM_ECDSA` over a SHA-256 computed here (the
//! raw `r‖s` is turned into DER), RSA as `CKM_RSA_PKCS` over a SHA-256 `DigestInfo`. Every
//! signature is verified with the public key before it is returned, so a faulty device
//! cannot put a bad signature into a certificate, CRL or OCSP response.
//!
//! [`Authority::create_in_hsm`] and [`Authority::load_from_hsm`] run a whole CA on one
//! token: the three keys are found by their `CKA_LABEL` ([`hsm_labels`]), the
//! certificates (public) are files in the CA directory ([`files`]), and no private key is
//! ever written to disk.
//!
//! Module handling follows `ekey-token`: tokens are selected by label, never by slot id
//! (slot ids change between processes); a module is loaded and initialised once per
//! process and never finalised; every call sequence into a module holds the host-wide
//! lock file `<tmp>/ekey-pkcs11-<hash of the module path>.lock` (the same file
//! `ekey-token` uses), because SoftHSM2 fails a process that reads token files while
//! another one writes them. Each key keeps one logged-in session; when the session is
//! lost (closed, logged out, module finalised by another library of the process, token
//! re-inserted) it is reopened and the user logs in again, once per signature.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use chrono::{DateTime, Utc};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::authority::{Authority, CaConfig, files, refuse_existing, write_all_or_nothing};
use crate::certgen::pem_or_der;
use crate::error::{CaError, Result};
use crate::signer::{
    CaSigner, KeyAlgorithm, KeyRefusal, ecdsa_signature_from_raw, inspect_spki, key_id,
    rsa_pkcs1_sha256_digest_info, sha256, spki_der, verify_signature,
};

/// Environment variable holding the user PIN of the CA token (see [`HsmConfig::from_env`]).
pub const PKCS11_PIN_ENV: &str = "EKEY_CA_PKCS11_PIN";

/// `CKA_LABEL`s of the CA keys on the token ([`Authority::create_in_hsm`] makes them,
/// [`Authority::load_from_hsm`] finds them). One CA per token.
pub mod hsm_labels {
    /// Root CA key pair. Only used to make the issuing CA certificate; not opened by
    /// [`Authority::load_from_hsm`](crate::Authority::load_from_hsm).
    pub const ROOT: &str = "ekey-ca-root";
    /// Issuing CA key pair: signs enterprise certificates and CRLs.
    pub const ISSUING: &str = "ekey-ca-issuing";
    /// Delegated OCSP responder key pair.
    pub const OCSP: &str = "ekey-ca-ocsp";
}

/// DER OID prime256v1 (1.2.840.10045.3.1.7), the `CKA_EC_PARAMS` of P-256 keys.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// RSA public exponent 65537.
const RSA_EXPONENT: &[u8] = &[0x01, 0x00, 0x01];
/// Longest key label accepted.
const MAX_KEY_LABEL: usize = 64;
/// PKCS#11 token labels are 32 bytes.
const MAX_TOKEN_LABEL: usize = 32;

// ------------------------------------------------------------------- HsmConfig --

/// Where a CA's keys live: a PKCS#11 module, a token in it (by label) and the token's
/// user PIN. The PIN is wiped from memory on drop and never printed.
#[derive(Clone)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// `CKA_LABEL` of the token (PKCS#11 token label, at most 32 bytes).
    pub token_label: String,
    /// The token's user PIN.
    pub user_pin: Zeroizing<String>,
}

impl fmt::Debug for HsmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmConfig")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("user_pin", &"<redacted>")
            .finish()
    }
}

impl HsmConfig {
    /// A configuration with the PIN given.
    pub fn new(
        module: impl Into<PathBuf>,
        token_label: impl Into<String>,
        user_pin: &str,
    ) -> HsmConfig {
        HsmConfig {
            module: module.into(),
            token_label: token_label.into(),
            user_pin: Zeroizing::new(user_pin.to_string()),
        }
    }

    /// A configuration with the PIN from [`PKCS11_PIN_ENV`] (`EKEY_CA_PKCS11_PIN`);
    /// `ekey.ca.config` when it is unset or empty.
    pub fn from_env(
        module: impl Into<PathBuf>,
        token_label: impl Into<String>,
    ) -> Result<HsmConfig> {
        let pin = Zeroizing::new(std::env::var(PKCS11_PIN_ENV).unwrap_or_default());
        if pin.is_empty() {
            return Err(CaError::Config {
                field: "ca_pkcs11_pin",
                detail: format!("set {PKCS11_PIN_ENV} to the user PIN of the CA token"),
            });
        }
        Ok(HsmConfig::new(module, token_label, &pin))
    }
}

// ------------------------------------------------------------------ Authority --

impl Authority {
    /// Creates a new CA whose keys are generated on the token of `hsm` (algorithm
    /// `cfg.algorithm`; labels [`hsm_labels`]), and writes its certificates to `dir`
    /// (`root.crt`, `issuing.crt`, `ocsp.crt`; no key files). Refuses when any CA file
    /// exists in `dir` or any of the three labels exists on the token. On failure the
    /// keys generated so far are destroyed and no file is left behind.
    pub fn create_in_hsm(
        dir: &Path,
        cfg: &CaConfig,
        now: DateTime<Utc>,
        hsm: &HsmConfig,
    ) -> Result<Authority> {
        cfg.validate()?;
        refuse_existing(
            dir,
            &[
                files::ROOT_CERT,
                files::ISSUING_CERT,
                files::OCSP_CERT,
                files::ROOT_KEY,
                files::ISSUING_KEY,
                files::OCSP_KEY,
            ],
        )?;
        let mut made: Vec<Arc<Pkcs11Key>> = Vec::with_capacity(3);
        let result = (|| {
            for label in [hsm_labels::ROOT, hsm_labels::ISSUING, hsm_labels::OCSP] {
                made.push(Arc::new(Pkcs11Key::generate(
                    &hsm.module,
                    &hsm.token_label,
                    &hsm.user_pin,
                    label,
                    cfg.algorithm,
                )?));
            }
            let authority =
                Authority::build(cfg, now, made[0].as_ref(), made[1].clone(), made[2].clone())?;
            // The root's first ARL, signed by the root key on the token.
            let arl = crate::arl::sign_root_crl(
                authority.root_der(),
                made[0].as_ref(),
                1,
                now,
                crate::arl::DEFAULT_ROOT_CRL_DAYS,
            )?;
            let mut contents = authority.certificate_files()?;
            contents.push((files::ROOT_CRL, arl, false));
            write_all_or_nothing(dir, &contents)?;
            Ok(authority)
        })();
        if result.is_err() {
            for key in &made {
                // Best effort: the original error is the one to report.
                let _ = key.destroy_on_token();
            }
        }
        result
    }

    /// [`crate::ensure_root_crl`] for a CA whose root key is on the HSM: signs the root's
    /// ARL with it when there is none in `dir` or the one there is past half its lifetime.
    pub fn ensure_root_crl_in_hsm(
        dir: &Path,
        hsm: &HsmConfig,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::RootCrl>> {
        let root_der = read_cert(&dir.join(files::ROOT_CERT))?;
        let current = std::fs::read(dir.join(files::ROOT_CRL))
            .ok()
            .and_then(|der| crate::read_root_crl(&root_der, &der).ok());
        if let Some(c) = &current
            && now - c.this_update < (c.next_update - c.this_update) / 2
        {
            return Ok(None);
        }
        let root = Pkcs11Key::open(
            &hsm.module,
            &hsm.token_label,
            &hsm.user_pin,
            hsm_labels::ROOT,
        )?;
        let number = current.map_or(0, |c| c.number) + 1;
        let der = crate::arl::sign_root_crl(
            &root_der,
            &root,
            number,
            now,
            crate::arl::DEFAULT_ROOT_CRL_DAYS,
        )?;
        crate::arl::write_replacing(&dir.join(files::ROOT_CRL), &der)?;
        crate::read_root_crl(&root_der, &der).map(Some)
    }

    /// Opens the CA in `dir` made by [`Authority::create_in_hsm`]: the certificates from
    /// the files, the issuing and OCSP keys from the token by label. As
    /// [`Authority::load`], renews the OCSP responder certificate (same key) when it has
    /// less than 30 days left, replacing `ocsp.crt`.
    pub fn load_from_hsm(
        dir: &Path,
        cfg: &CaConfig,
        now: DateTime<Utc>,
        hsm: &HsmConfig,
    ) -> Result<Authority> {
        cfg.validate()?;
        let root_der = read_cert(&dir.join(files::ROOT_CERT))?;
        let issuing_der = read_cert(&dir.join(files::ISSUING_CERT))?;
        let ocsp_der = read_cert(&dir.join(files::OCSP_CERT))?;
        let open = |label: &str| {
            Pkcs11Key::open(&hsm.module, &hsm.token_label, &hsm.user_pin, label).map(Arc::new)
        };
        let issuing = open(hsm_labels::ISSUING)?;
        let ocsp = open(hsm_labels::OCSP)?;
        let mut authority =
            Authority::from_parts(cfg, root_der, issuing_der, issuing, ocsp_der, ocsp)?;
        authority.refresh_ocsp_cert(dir, now)?;
        Ok(authority)
    }
}

fn read_cert(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| CaError::io(path, e))?;
    pem_or_der(&bytes, &["CERTIFICATE"])
        .map_err(|e| CaError::ca_cert(format!("{}: {e}", path.display())))
}

// --------------------------------------------------------------------- module --

/// One loaded and initialised PKCS#11 module. Kept for the life of the process and never
/// finalised: other libraries of the process (e.g. `ekey-token`) may use it too.
struct Module {
    /// Canonical path: one entry, and one lock file, however the path is spelt.
    path: PathBuf,
    ctx: Pkcs11,
    /// Serialises re-initialisation after someone else called `C_Finalize`.
    init: Mutex<()>,
}

impl Module {
    fn initialize(&self) -> Result<()> {
        let _init = lock(&self.init);
        match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
            Err(e) => Err(CaError::Pkcs11 {
                detail: format!("{}: {e}", self.path.display()),
            }),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The module at `path`, loaded and initialised on first use.
fn load_module(path: &Path) -> Result<Arc<Module>> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
    let canonical = std::fs::canonicalize(path).map_err(|e| CaError::Pkcs11 {
        detail: format!("module {}: {e}", path.display()),
    })?;
    let mut map = lock(MODULES.get_or_init(Default::default));
    if let Some(module) = map.get(&canonical) {
        return Ok(module.clone());
    }
    let _host = host_lock(&canonical)?;
    let ctx = Pkcs11::new(&canonical).map_err(|e| CaError::Pkcs11 {
        detail: format!("cannot load module {}: {e}", canonical.display()),
    })?;
    let module = Arc::new(Module {
        path: canonical.clone(),
        ctx,
        init: Mutex::new(()),
    });
    module.initialize()?;
    map.insert(canonical, module.clone());
    Ok(module)
}

/// Exclusive lock on `<tmp>/ekey-pkcs11-<first 8 bytes of SHA-256 of the canonical
/// module path, hex>.lock` — the file `ekey-token` locks for the same module.
fn host_lock(module_path: &Path) -> Result<File> {
    let digest = sha256(module_path.as_os_str().as_encoded_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let path = std::env::temp_dir().join(format!("ekey-pkcs11-{name}.lock"));
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        // Created by another user of this host: a read-only descriptor locks as well.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(&path),
        other => other,
    }
    .map_err(|e| CaError::io(&path, e))?;
    file.lock().map_err(|e| CaError::io(&path, e))?;
    Ok(file)
}

fn ck(e: CkError) -> CaError {
    CaError::Pkcs11 {
        detail: e.to_string(),
    }
}

fn check_label(what: &'static str, label: &str, max: usize) -> Result<()> {
    if label.is_empty() || label.len() > max || label.chars().any(char::is_control) {
        return Err(CaError::Config {
            field: what,
            detail: format!("1 to {max} bytes, no control characters"),
        });
    }
    Ok(())
}

/// The one initialised token labelled `label`.
fn find_token(ctx: &Pkcs11, label: &str) -> Result<Slot> {
    let mut found = Vec::new();
    for slot in ctx.get_slots_with_initialized_token().map_err(ck)? {
        if ctx.get_token_info(slot).map_err(ck)?.label().trim_end() == label {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(CaError::Pkcs11NotFound {
            what: "token",
            name: label.into(),
        }),
        _ => Err(CaError::Pkcs11 {
            detail: format!("several tokens are labelled {label:?}"),
        }),
    }
}

/// `C_Login` as the user. Already logged in (by another session of this process) is
/// fine: PKCS#11 login state is per token and process.
fn login_user(ctx: &Pkcs11, session: &Session, slot: Slot, token: &str, pin: &str) -> Result<()> {
    let refused = |locked| CaError::Pkcs11Login {
        token: token.into(),
        locked,
    };
    if ctx.get_token_info(slot).map_err(ck)?.user_pin_locked() {
        return Err(refused(true));
    }
    match session.login(UserType::User, Some(&AuthPin::from(pin))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
            _,
        )) => Err(refused(false)),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(refused(true)),
        Err(e) => Err(ck(e)),
    }
}

fn find_objects(session: &Session, class: ObjectClass, label: &str) -> Result<Vec<ObjectHandle>> {
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(ck)
}

fn single(handles: Vec<ObjectHandle>, what: &str, label: &str) -> Result<ObjectHandle> {
    match handles.as_slice() {
        [h] => Ok(*h),
        [] => Err(CaError::Pkcs11NotFound {
            what: "key",
            name: label.into(),
        }),
        _ => Err(CaError::Pkcs11 {
            detail: format!("several {what} objects are labelled {label:?}"),
        }),
    }
}

fn pkcs11_uri(token: &str, key: &str) -> String {
    format!("pkcs11:token={token};object={key}")
}

// ------------------------------------------------------------------ Pkcs11Key --

/// A CA key pair on a PKCS#11 token, found by the token's label and the key's
/// `CKA_LABEL`. `Send + Sync`: signatures are serialised on one logged-in session.
pub struct Pkcs11Key {
    module: Arc<Module>,
    token_label: String,
    key_label: String,
    user_pin: Zeroizing<String>,
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
    live: Mutex<Option<Live>>,
}

/// A logged-in session and the private key's handle in it. Sessions are opened
/// "no drop": one that is known to be dead is forgotten, not closed (after a
/// re-initialisation its handle number may belong to someone else's session).
struct Live {
    session: Session,
    key: ObjectHandle,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("module", &self.module.path)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Drop for Pkcs11Key {
    fn drop(&mut self) {
        if let Some(live) = lock(&self.live).take() {
            let _ = live.session.close();
        }
    }
}

impl Pkcs11Key {
    /// Generates a key pair on the token labelled `token_label` (logging in with
    /// `user_pin`): ECDSA P-256 (`CKM_EC_KEY_PAIR_GEN`) or RSA-2048 with exponent 65537
    /// (`CKM_RSA_PKCS_KEY_PAIR_GEN`). Both halves are token objects labelled `key_label`
    /// with `CKA_ID` = the RFC 7093 key identifier (the SKI of its certificates); the
    /// private key is private, sensitive, not extractable and can only sign.
    /// `ekey.ca.already_exists` when an object with `key_label` is already on the token.
    pub fn generate(
        module: &Path,
        token_label: &str,
        user_pin: &str,
        key_label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<Pkcs11Key> {
        check_label("token_label", token_label, MAX_TOKEN_LABEL)?;
        check_label("key_label", key_label, MAX_KEY_LABEL)?;
        let module = load_module(module)?;
        let (spki, live) = {
            let _host = host_lock(&module.path)?;
            let ctx = &module.ctx;
            let slot = find_token(ctx, token_label)?;
            let session = ctx.open_rw_session_no_drop(slot).map_err(ck)?;
            match generate_on(
                ctx,
                &session,
                slot,
                token_label,
                user_pin,
                key_label,
                algorithm,
            ) {
                Ok((spki, key)) => (spki, Live { session, key }),
                Err(e) => {
                    let _ = session.close();
                    return Err(e);
                }
            }
        };
        Ok(Pkcs11Key {
            module,
            token_label: token_label.into(),
            key_label: key_label.into(),
            user_pin: Zeroizing::new(user_pin.into()),
            algorithm,
            spki,
            live: Mutex::new(Some(live)),
        })
    }

    /// Opens the key pair labelled `key_label` on the token labelled `token_label`:
    /// logs in, finds the private key (which must be sensitive and not extractable) and
    /// reads the public key object of the same label for the SubjectPublicKeyInfo.
    /// `ekey.ca.pkcs11_login` for a refused PIN, `ekey.ca.pkcs11_not_found` when the
    /// token or key is missing, `ekey.ca.key_unsupported` for other key types.
    ///
    /// PKCS#11 login state belongs to the token and the process: while another session
    /// of this process is logged in to the token (another open key), the module does not
    /// check `user_pin` again.
    pub fn open(
        module: &Path,
        token_label: &str,
        user_pin: &str,
        key_label: &str,
    ) -> Result<Pkcs11Key> {
        check_label("token_label", token_label, MAX_TOKEN_LABEL)?;
        check_label("key_label", key_label, MAX_KEY_LABEL)?;
        let module = load_module(module)?;
        let (algorithm, spki, live) = {
            let _host = host_lock(&module.path)?;
            let ctx = &module.ctx;
            let slot = find_token(ctx, token_label)?;
            let session = ctx.open_ro_session_no_drop(slot).map_err(ck)?;
            let opened = (|| {
                login_user(ctx, &session, slot, token_label, user_pin)?;
                let key = single(
                    find_objects(&session, ObjectClass::PRIVATE_KEY, key_label)?,
                    "private key",
                    key_label,
                )?;
                let algorithm = key_algorithm(&session, key)?;
                check_private_key(&session, key, key_label)?;
                let public = single(
                    find_objects(&session, ObjectClass::PUBLIC_KEY, key_label)?,
                    "public key",
                    key_label,
                )?;
                let (spki, _) = read_spki(&session, public, algorithm)?;
                Ok((algorithm, spki, key))
            })();
            match opened {
                Ok((algorithm, spki, key)) => (algorithm, spki, Live { session, key }),
                Err(e) => {
                    let _ = session.close();
                    return Err(e);
                }
            }
        };
        let key = Pkcs11Key {
            module,
            token_label: token_label.into(),
            key_label: key_label.into(),
            user_pin: Zeroizing::new(user_pin.into()),
            algorithm,
            spki,
            live: Mutex::new(Some(live)),
        };
        // The public key object must belong to the private key.
        key.sign(b"ekey-ca pkcs11 key check").map_err(|e| match e {
            CaError::Signer { .. } => CaError::Pkcs11 {
                detail: format!(
                    "the public key object of {} does not belong to its private key",
                    pkcs11_uri(token_label, key_label)
                ),
            },
            other => other,
        })?;
        Ok(key)
    }

    /// Initialises a token for CA keys in the first free slot of the module
    /// (`C_InitToken` with `so_pin` and `token_label`, then `C_InitPIN` with
    /// `user_pin`). For SoftHSM2 in tests and `ekey ca init --pkcs11`; real HSMs are
    /// usually initialised with their vendor's tools. `ekey.ca.already_exists` when a
    /// token with this label exists, `ekey.ca.pkcs11` when no slot is free.
    pub fn init_token(
        module: &Path,
        token_label: &str,
        so_pin: &str,
        user_pin: &str,
    ) -> Result<()> {
        check_label("token_label", token_label, MAX_TOKEN_LABEL)?;
        let module = load_module(module)?;
        let _host = host_lock(&module.path)?;
        let ctx = &module.ctx;
        let mut free = None;
        for slot in ctx.get_slots_with_token().map_err(ck)? {
            let info = ctx.get_token_info(slot).map_err(ck)?;
            if !info.token_initialized() {
                free = free.or(Some(slot));
            } else if info.label().trim_end() == token_label {
                return Err(CaError::AlreadyExists {
                    path: format!("pkcs11:token={token_label}"),
                });
            }
        }
        let slot = free.ok_or_else(|| CaError::Pkcs11 {
            detail: format!(
                "no free slot (uninitialised token) in {}",
                module.path.display()
            ),
        })?;
        ctx.init_token(slot, &AuthPin::from(so_pin), token_label)
            .map_err(ck)?;
        // The slot id may change once the token is initialised: look it up by label.
        let slot = find_token(ctx, token_label)?;
        let session = ctx.open_rw_session_no_drop(slot).map_err(ck)?;
        let result = (|| {
            session
                .login(UserType::So, Some(&AuthPin::from(so_pin)))
                .map_err(ck)?;
            let set = session.init_pin(&AuthPin::from(user_pin)).map_err(ck);
            let _ = session.logout();
            set
        })();
        let _ = session.close();
        result
    }

    /// Label of the token holding the key.
    pub fn token_label(&self) -> &str {
        &self.token_label
    }

    /// `CKA_LABEL` of the key pair.
    pub fn key_label(&self) -> &str {
        &self.key_label
    }

    /// Opens a session on the token, logs in and finds the private key.
    /// The caller holds the host lock.
    fn connect(&self) -> Result<Live> {
        let ctx = &self.module.ctx;
        let slot = find_token(ctx, &self.token_label)?;
        let session = ctx.open_ro_session_no_drop(slot).map_err(ck)?;
        let found =
            login_user(ctx, &session, slot, &self.token_label, &self.user_pin).and_then(|()| {
                single(
                    find_objects(&session, ObjectClass::PRIVATE_KEY, &self.key_label)?,
                    "private key",
                    &self.key_label,
                )
            });
        match found {
            Ok(key) => Ok(Live { session, key }),
            Err(e) => {
                let _ = session.close();
                Err(e)
            }
        }
    }

    /// Runs `op` on the live session, reconnecting (and logging in) once if the session
    /// was lost.
    fn with_live<R>(&self, op: impl Fn(&Live) -> cryptoki::error::Result<R>) -> Result<R> {
        let mut live = lock(&self.live);
        let _host = host_lock(&self.module.path)?;
        let mut retried = false;
        loop {
            if live.is_none() {
                *live = Some(self.connect()?);
            }
            let current = live.as_ref().expect("connected above");
            let (rv, function) = match op(current) {
                Ok(value) => return Ok(value),
                Err(CkError::Pkcs11(rv, function)) => (rv, function),
                Err(e) => return Err(ck(e)),
            };
            let lost = matches!(
                rv,
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::CryptokiNotInitialized
                    | RvError::DeviceRemoved
                    | RvError::TokenNotPresent
                    | RvError::UserNotLoggedIn
                    | RvError::KeyHandleInvalid
                    | RvError::ObjectHandleInvalid
            );
            if retried || !lost {
                return Err(ck(CkError::Pkcs11(rv, function)));
            }
            retried = true;
            let old = live.take().expect("connected above");
            match rv {
                // The session is still open: close it before starting over.
                RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid => {
                    let _ = old.session.close();
                }
                // Someone finalised the module: initialise it again.
                RvError::CryptokiNotInitialized => self.module.initialize()?,
                // The session is gone: forget it.
                _ => {}
            }
        }
    }

    /// Destroys both halves of the key pair (after a failed CA creation).
    fn destroy_on_token(&self) -> Result<()> {
        let mut live = lock(&self.live);
        if let Some(old) = live.take() {
            let _ = old.session.close();
        }
        let _host = host_lock(&self.module.path)?;
        let ctx = &self.module.ctx;
        let slot = find_token(ctx, &self.token_label)?;
        let session = ctx.open_rw_session_no_drop(slot).map_err(ck)?;
        let result = (|| {
            login_user(ctx, &session, slot, &self.token_label, &self.user_pin)?;
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                for h in find_objects(&session, class, &self.key_label)? {
                    session.destroy_object(h).map_err(ck)?;
                }
            }
            Ok(())
        })();
        let _ = session.close();
        result
    }
}

impl CaSigner for Pkcs11Key {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        // CKM_ECDSA_SHA256 / CKM_SHA256_RSA_PKCS are not offered by every module
        // (SoftHSM2 lacks the former): hash here, sign the digest.
        let (mechanism, input) = match self.algorithm {
            KeyAlgorithm::EcdsaP256 => (Mechanism::Ecdsa, sha256(message).to_vec()),
            KeyAlgorithm::Rsa2048 => (Mechanism::RsaPkcs, rsa_pkcs1_sha256_digest_info(message)),
        };
        let raw = self.with_live(|live| live.session.sign(&mechanism, live.key, &input))?;
        let signature = match self.algorithm {
            KeyAlgorithm::EcdsaP256 => ecdsa_signature_from_raw(&raw)?,
            KeyAlgorithm::Rsa2048 => raw,
        };
        verify_signature(&self.spki, self.algorithm, message, &signature).map_err(|_| {
            CaError::Signer {
                detail: format!(
                    "PKCS#11 key {} returned a signature that does not verify",
                    pkcs11_uri(&self.token_label, &self.key_label)
                ),
            }
        })?;
        Ok(signature)
    }
}

/// Logs in and generates the key pair in the read-write `session`; returns its SPKI and
/// the private key's handle. Destroys a generated pair that fails the checks.
fn generate_on(
    ctx: &Pkcs11,
    session: &Session,
    slot: Slot,
    token_label: &str,
    user_pin: &str,
    key_label: &str,
    algorithm: KeyAlgorithm,
) -> Result<(Vec<u8>, ObjectHandle)> {
    login_user(ctx, session, slot, token_label, user_pin)?;
    let existing = find_objects(session, ObjectClass::PRIVATE_KEY, key_label)?.len()
        + find_objects(session, ObjectClass::PUBLIC_KEY, key_label)?.len();
    if existing > 0 {
        return Err(CaError::AlreadyExists {
            path: pkcs11_uri(token_label, key_label),
        });
    }
    let label = Attribute::Label(key_label.as_bytes().to_vec());
    let mut public_template = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        label.clone(),
    ];
    let private_template = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        label,
    ];
    let mechanism = match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            public_template.push(Attribute::EcParams(P256_PARAMS.to_vec()));
            Mechanism::EccKeyPairGen
        }
        KeyAlgorithm::Rsa2048 => {
            public_template.push(Attribute::ModulusBits(2048.into()));
            public_template.push(Attribute::PublicExponent(RSA_EXPONENT.to_vec()));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    let (public, private) = session
        .generate_key_pair(&mechanism, &public_template, &private_template)
        .map_err(ck)?;
    let finish = (|| {
        check_private_key(session, private, key_label)?;
        let (spki, id) = read_spki(session, public, algorithm)?;
        session
            .update_attributes(public, &[Attribute::Id(id.clone())])
            .map_err(ck)?;
        session
            .update_attributes(private, &[Attribute::Id(id)])
            .map_err(ck)?;
        Ok(spki)
    })();
    match finish {
        Ok(spki) => Ok((spki, private)),
        Err(e) => {
            let _ = session.destroy_object(private);
            let _ = session.destroy_object(public);
            Err(e)
        }
    }
}

/// The private key must stay on the token: sensitive, not extractable, a token object.
fn check_private_key(session: &Session, key: ObjectHandle, label: &str) -> Result<()> {
    let attributes = session
        .get_attributes(
            key,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Token,
                AttributeType::Sign,
            ],
        )
        .map_err(ck)?;
    let (mut sensitive, mut extractable, mut token, mut sign) = (false, true, false, false);
    for a in attributes {
        match a {
            Attribute::Sensitive(v) => sensitive = v,
            Attribute::Extractable(v) => extractable = v,
            Attribute::Token(v) => token = v,
            Attribute::Sign(v) => sign = v,
            _ => {}
        }
    }
    if !(sensitive && !extractable && token && sign) {
        return Err(CaError::KeyUnsupported {
            detail: format!(
                "PKCS#11 private key {label:?} must be a sensitive, non-extractable token \
                 object that can sign (sensitive={sensitive}, extractable={extractable}, \
                 token={token}, sign={sign})"
            ),
        });
    }
    Ok(())
}

fn key_algorithm(session: &Session, key: ObjectHandle) -> Result<KeyAlgorithm> {
    let attributes = session
        .get_attributes(key, &[AttributeType::KeyType])
        .map_err(ck)?;
    match attributes.first() {
        Some(Attribute::KeyType(t)) if *t == KeyType::EC => Ok(KeyAlgorithm::EcdsaP256),
        Some(Attribute::KeyType(t)) if *t == KeyType::RSA => Ok(KeyAlgorithm::Rsa2048),
        Some(Attribute::KeyType(t)) => Err(CaError::KeyUnsupported {
            detail: format!("PKCS#11 key type {t}"),
        }),
        _ => Err(CaError::Pkcs11 {
            detail: "private key without CKA_KEY_TYPE".into(),
        }),
    }
}

/// The DER SubjectPublicKeyInfo of a public key object, checked like any CA key
/// (P-256 point on the curve; RSA 2048–8192 bits, odd exponent), and its RFC 7093 key
/// identifier.
fn read_spki(
    session: &Session,
    public: ObjectHandle,
    algorithm: KeyAlgorithm,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let unsupported = |detail: String| CaError::KeyUnsupported { detail };
    let spki = match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            let mut params = None;
            let mut point = None;
            for a in session
                .get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])
                .map_err(ck)?
            {
                match a {
                    Attribute::EcParams(v) => params = Some(v),
                    Attribute::EcPoint(v) => point = Some(v),
                    _ => {}
                }
            }
            if params.as_deref() != Some(P256_PARAMS) {
                return Err(unsupported("PKCS#11 EC key not on P-256".into()));
            }
            let point =
                point.ok_or_else(|| unsupported("PKCS#11 EC key without CKA_EC_POINT".into()))?;
            // CKA_EC_POINT is a DER OCTET STRING; some older modules give the raw point.
            let raw = match point.as_slice() {
                [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
                other => other,
            };
            spki_der(KeyAlgorithm::EcdsaP256, raw)
        }
        KeyAlgorithm::Rsa2048 => {
            let mut modulus = None;
            let mut exponent = None;
            for a in session
                .get_attributes(
                    public,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(ck)?
            {
                match a {
                    Attribute::Modulus(v) => modulus = Some(v),
                    Attribute::PublicExponent(v) => exponent = Some(v),
                    _ => {}
                }
            }
            let (Some(n), Some(e)) = (modulus, exponent) else {
                return Err(unsupported(
                    "PKCS#11 RSA key without modulus or exponent".into(),
                ));
            };
            let rsa_public_key = yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next().write_bigint_bytes(&n, true);
                    w.next().write_bigint_bytes(&e, true);
                })
            });
            spki_der(KeyAlgorithm::Rsa2048, &rsa_public_key)
        }
    };
    match inspect_spki(&spki) {
        Ok(info) if info.algorithm == algorithm => Ok((spki, key_id(&info.subject_public_key))),
        Ok(_) => Err(unsupported(
            "PKCS#11 public key of another algorithm".into(),
        )),
        Err(KeyRefusal::Malformed(d) | KeyRefusal::Unsupported(d)) => {
            Err(unsupported(format!("PKCS#11 public key: {d}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs11_key_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Pkcs11Key>();
    }

    #[test]
    fn hsm_config_hides_the_pin() {
        let cfg = HsmConfig::new("/x.so", "ca", "123456-secret");
        assert!(!format!("{cfg:?}").contains("123456-secret"));
    }

    #[test]
    fn a_missing_module_is_a_clear_error() {
        let err =
            Pkcs11Key::open(Path::new("/nonexistent/libnone.so"), "ca", "1234", "k").unwrap_err();
        assert_eq!(err.code(), "ekey.ca.pkcs11");
    }
}

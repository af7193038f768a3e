//! PKCS#11 tokens through cryptoki (SoftHSM2 in tests).
//!
//! Objects eKey keeps on a token, besides key pairs and certificates (`CKA_LABEL` =
//! container name, `CKA_ID` = first 20 bytes of SHA-256 of the EC point):
//! - `ekey-pin-counter` (`CKO_DATA`, public): one byte, wrong PINs left;
//! - `ekey-unlock-seal` (`CKO_DATA`, public, JSON): the recovery public key, the seal
//!   point and check value, and a pending next seal while the SO PIN is being rotated;
//! - `ekey-unlock-challenge` (`CKO_DATA`, public, JSON): the outstanding challenge;
//! - `ekey-promotion` (`CKO_DATA`, public, JSON), only while a promotion is under way:
//!   the journal `{pending, active, id}` (see below);
//! - a certificate labelled `ekey-new-certificate:<container>`, only while
//!   `put_certificate` replaces a certificate (see below).
//!
//! Each data object's `CKA_VALUE` is an 8-byte big-endian generation followed by the
//! payload: data object values cannot be modified in place, so they are replaced by a
//! newer generation (see `write_data`).
//!
//! Tokens are always found by serial (or, when opening, by label), never by slot id:
//! slot ids change between processes. Every call into a module happens under a
//! per-module mutex (login state is per process in PKCS#11) and a per-module lock file in
//! the temp directory: two processes on one host cannot interleave counter updates, and
//! SoftHSM2 does not fail a reader while another process writes its token files.
//!
//! Writes that touch several objects are made restartable, and every operation (also
//! `status`, without a PIN) first finishes one that a crash interrupted (`recover`):
//! - `put_certificate` creates the new certificate under the temporary label
//!   `ekey-new-certificate:<container>` (not a valid container name), then destroys the
//!   container's earlier certificates, then relabels the new one. A temporary certificate
//!   found later is finished the same way: the container ends with the new certificate.
//! - `promote` checks `pending` (one private key, one public key, one certificate, all
//!   for the same key), writes the journal `ekey-promotion` = `{pending, active, id}`
//!   (`id` = the pending key's `CKA_ID`), then (a) destroys every key and certificate
//!   labelled `active` whose `CKA_ID` is not `id`, (b) relabels the objects labelled
//!   `pending` with `CKA_ID` = `id` to `active`, (c) deletes the journal. Each step is
//!   idempotent, so a journal found later is simply replayed. Private keys are only
//!   visible after `C_Login`: without a PIN (`status`, `unlock_challenge`, …) the replay
//!   covers public keys and certificates and keeps the journal; the next operation with a
//!   PIN finishes the private key and deletes the journal.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use p256::PublicKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, b64};
use crate::der;
use crate::error::{Result, TokenError};
use crate::unlock::{self, PendingChallenge, Seal};
use crate::{ContainerInfo, MAX_PIN_TRIES, Token, TokenStatus, admin};

const COUNTER_LABEL: &str = "ekey-pin-counter";
const SEAL_LABEL: &str = "ekey-unlock-seal";
const CHALLENGE_LABEL: &str = "ekey-unlock-challenge";
const PROMOTION_LABEL: &str = "ekey-promotion";
/// Label of a certificate being written, before its container's label (`:` is not
/// allowed in container names, so it never names a container).
const NEW_CERTIFICATE_PREFIX: &str = "ekey-new-certificate:";
const APPLICATION: &str = "ekey";
/// DER OID prime256v1 (1.2.840.10045.3.1.7), the `CKA_EC_PARAMS` of P-256 keys.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// Length of the SO PIN eKey sets (26 base32 characters of the seal secret).
const SO_PIN_LEN: usize = 26;

/// The unlock state on a PKCS#11 token.
#[derive(Serialize, Deserialize)]
struct SealObject {
    /// The seal whose secret is the SO PIN.
    current: Seal,
    /// During an SO PIN rotation: the next seal, and its secret encrypted under the
    /// current one, so an interrupted rotation can be finished (see the crate docs).
    #[serde(default)]
    pending: Option<PendingSeal>,
}

#[derive(Serialize, Deserialize)]
struct PendingSeal {
    seal: Seal,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
    #[serde(with = "b64")]
    secret: Vec<u8>,
}

/// The promotion journal (`ekey-promotion`): what an interrupted promotion still has to do.
#[derive(Serialize, Deserialize)]
struct Promotion {
    pending: String,
    active: String,
    /// `CKA_ID` of the key pair being promoted.
    #[serde(with = "b64")]
    id: Vec<u8>,
}

/// One loaded and initialised PKCS#11 module, shared by every token of this process.
struct Module {
    path: PathBuf,
    ctx: Pkcs11,
    /// Whether we called `C_Initialize` (and so call `C_Finalize` when the last token
    /// goes); another library in this process may have initialised the module first.
    owns_init: bool,
    /// Serialises operations: PKCS#11 login state is shared by all sessions of a process.
    op: Mutex<()>,
}

/// Held while talking to a module: the in-process mutex, then the host-wide file lock.
struct Exclusive<'a> {
    _op: MutexGuard<'a, ()>,
    _host: File,
}

impl Module {
    fn exclusive(&self) -> Result<Exclusive<'_>> {
        let op = self.op.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Exclusive {
            _op: op,
            _host: host_lock(&self.path)?,
        })
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if self.owns_init {
            // Under the registry lock, so a concurrent open cannot initialise in between.
            let _registry = registry();
            let _ = self.ctx.clone().finalize();
        }
    }
}

type Registry = HashMap<PathBuf, Weak<Module>>;

fn registry() -> MutexGuard<'static, Registry> {
    static MODULES: OnceLock<Mutex<Registry>> = OnceLock::new();
    MODULES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The module at `path`, loading and initialising it on first use.
fn load_module(path: &Path) -> Result<Arc<Module>> {
    // One module, one entry (and one lock file), however the path is spelt.
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut map = registry();
    if let Some(m) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(m);
    }
    if !path.exists() {
        return Err(TokenError::Module(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let _host = host_lock(&key)?;
    let ctx =
        Pkcs11::new(path).map_err(|e| TokenError::Module(format!("{}: {e}", path.display())))?;
    let owns_init = match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => true,
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
        Err(e) => return Err(TokenError::Module(format!("C_Initialize: {e}"))),
    };
    let module = Arc::new(Module {
        path: key.clone(),
        ctx,
        owns_init,
        op: Mutex::new(()),
    });
    map.insert(key, Arc::downgrade(&module));
    Ok(module)
}

/// A key behind a PKCS#11 module, found by serial.
pub struct Pkcs11Token {
    module: Arc<Module>,
    module_path: PathBuf,
    serial: String,
    label: String,
}

impl std::fmt::Debug for Pkcs11Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Token")
            .field("module", &self.module_path)
            .field("serial", &self.serial)
            .field("label", &self.label)
            .finish()
    }
}

impl Pkcs11Token {
    /// Personalises a blank token (provider side): `C_InitToken` with `label` and the
    /// transport SO PIN `so_pin` — on the token already labelled `label` if it is not
    /// personalised by eKey (a vendor-initialised token, or an interrupted earlier run;
    /// then `so_pin` must be its current SO PIN), otherwise on the first uninitialised
    /// one; `C_InitPIN` with `initial_pin`; writes the PIN counter (6) and the unlock seal
    /// for the recovery key derived from `master_secret` and the device's serial; finally
    /// changes the SO PIN to the sealed one, which only the provider can recompute
    /// ([`admin::so_pin`]). Until that last step the token can be personalised again with
    /// `so_pin`. The serial is the device's own (PKCS#11 cannot choose it).
    pub fn init(
        module_path: impl AsRef<Path>,
        label: &str,
        so_pin: &str,
        initial_pin: &str,
        master_secret: &[u8],
    ) -> Result<Pkcs11Token> {
        crate::validate_pin(initial_pin)?;
        Self::init_with_pin(
            module_path,
            label,
            so_pin,
            |_| Zeroizing::new(initial_pin.to_string()),
            master_secret,
        )
    }

    /// [`Pkcs11Token::init`] with the initial PIN derived from the device's serial, which
    /// is known only once the token is initialised: `initial_pin(serial)`. The provider
    /// derives everything it keeps for a token (initial PIN, unlock codes) from that one
    /// serial, the one [`Token::serial`] and the agent show.
    pub fn init_with_pin(
        module_path: impl AsRef<Path>,
        label: &str,
        so_pin: &str,
        initial_pin: impl FnOnce(&str) -> Zeroizing<String>,
        master_secret: &[u8],
    ) -> Result<Pkcs11Token> {
        if label.is_empty() || label.len() > 32 {
            return Err(TokenError::Unsupported("label must be 1–32 bytes".into()));
        }
        let module_path = module_path.as_ref().to_path_buf();
        let module = load_module(&module_path)?;
        let guard = module.exclusive()?;
        let ctx = &module.ctx;

        // The target: a token already carrying `label` but not (fully) personalised by
        // eKey — an interrupted personalisation, or a vendor-initialised token — else
        // the first uninitialised one. C_InitToken on an initialised token needs its
        // current SO PIN, so `so_pin` must be that token's transport SO PIN.
        let mut labelled = None;
        let mut free = None;
        for slot in ctx.get_slots_with_token()? {
            let info = ctx.get_token_info(slot)?;
            if info.token_initialized() {
                if info.label().trim_end() == label {
                    let session = ctx.open_ro_session(slot)?;
                    if read_seal(&session).is_ok() {
                        return Err(TokenError::AlreadyExists(label.into()));
                    }
                    labelled = Some((slot, info.max_pin_length()));
                }
            } else if free.is_none() {
                free = Some((slot, info.max_pin_length()));
            }
        }
        let (target, max_pin) = labelled.or(free).ok_or(TokenError::NoFreeSlot)?;
        if max_pin < SO_PIN_LEN {
            return Err(TokenError::Unsupported(format!(
                "the SO PIN needs {SO_PIN_LEN} characters, the token allows {max_pin}"
            )));
        }
        ctx.init_token(target, &AuthPin::from(so_pin), label)?;

        // The slot id may change once the token is initialised: look it up by label.
        let (slot, serial) = find_slot(ctx, label)?;
        let initial_pin = initial_pin(&serial);
        crate::validate_pin(&initial_pin)?;
        let session = ctx.open_rw_session(slot)?;
        session.login(UserType::So, Some(&AuthPin::from(so_pin)))?;
        let result = (|| -> Result<()> {
            session.init_pin(&AuthPin::from(initial_pin.as_str()))?;
            write_data(&session, COUNTER_LABEL, &[MAX_PIN_TRIES])?;
            let recovery_public = admin::recovery_public_key(master_secret, &serial);
            let (seal, k) = unlock::new_seal(&serial, &recovery_public)?;
            write_seal(
                &session,
                &SealObject {
                    current: seal,
                    pending: None,
                },
            )?;
            let sealed_so_pin = unlock::so_pin_from_secret(&k);
            session.set_pin(
                &AuthPin::from(so_pin),
                &AuthPin::from(sealed_so_pin.as_str()),
            )?;
            Ok(())
        })();
        let _ = session.logout();
        result?;
        drop(session);
        drop(guard);
        Ok(Pkcs11Token {
            module,
            module_path,
            serial,
            label: label.into(),
        })
    }

    /// Opens a token personalised by eKey, selected by serial or label (never by slot
    /// id). `ekey.token.ambiguous` when several tokens carry the label.
    pub fn open(module_path: impl AsRef<Path>, serial_or_label: &str) -> Result<Pkcs11Token> {
        let module_path = module_path.as_ref().to_path_buf();
        let module = load_module(&module_path)?;
        let guard = module.exclusive()?;
        let ctx = &module.ctx;
        let mut found = Vec::new();
        for slot in ctx.get_slots_with_initialized_token()? {
            let info = ctx.get_token_info(slot)?;
            let serial = info.serial_number().trim_end().to_string();
            let label = info.label().trim_end().to_string();
            if serial == serial_or_label || label == serial_or_label {
                found.push((slot, serial, label));
            }
        }
        let (slot, serial, label) = match found.len() {
            0 => return Err(TokenError::NotFound(serial_or_label.into())),
            1 => found.remove(0),
            _ => return Err(TokenError::Ambiguous(serial_or_label.into())),
        };
        let session = ctx.open_ro_session(slot)?;
        read_counter(&session)?;
        drop(session);
        drop(guard);
        Ok(Pkcs11Token {
            module,
            module_path,
            serial,
            label,
        })
    }

    /// The module this token is reached through.
    pub fn module_path(&self) -> &Path {
        &self.module_path
    }

    fn slot(&self) -> Result<Slot> {
        let ctx = &self.module.ctx;
        for slot in ctx.get_slots_with_initialized_token()? {
            if ctx.get_token_info(slot)?.serial_number().trim_end() == self.serial {
                return Ok(slot);
            }
        }
        Err(TokenError::NotFound(self.serial.clone()))
    }

    /// Runs `f` in a read-write session with both locks held, after finishing what an
    /// interrupted write left (as far as a session without login can, see `recover`).
    fn with_session<R>(&self, f: impl FnOnce(&Session, Slot) -> Result<R>) -> Result<R> {
        let _guard = self.module.exclusive()?;
        let slot = self.slot()?;
        let session = self.module.ctx.open_rw_session(slot)?;
        recover(&session, false)?;
        f(&session, slot)
    }

    /// Runs `f` logged in as the user, after the counted PIN check and after finishing an
    /// interrupted promotion completely.
    fn with_user<R>(&self, pin: &str, f: impl FnOnce(&Session) -> Result<R>) -> Result<R> {
        crate::validate_pin(pin)?;
        self.with_session(|session, slot| {
            self.login_user(session, slot, pin)?;
            let result = recover(session, true).and_then(|()| f(session));
            let _ = session.logout();
            result
        })
    }

    /// The PIN check with the counter written first (see the crate docs).
    fn login_user(&self, session: &Session, slot: Slot, pin: &str) -> Result<()> {
        let info = self.module.ctx.get_token_info(slot)?;
        let left = read_counter(session)?;
        if info.user_pin_locked() {
            if left != 0 {
                write_data(session, COUNTER_LABEL, &[0])?;
            }
            return Err(TokenError::Locked);
        }
        if left == 0 {
            return Err(TokenError::Locked);
        }
        write_data(session, COUNTER_LABEL, &[left - 1])?;
        let auth = AuthPin::from(pin);
        let mut outcome = session.login(UserType::User, Some(&auth));
        if let Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) = outcome {
            // Left over by someone else in this process: start from a clean state.
            let _ = session.logout();
            outcome = session.login(UserType::User, Some(&auth));
        }
        match outcome {
            Ok(()) => {
                write_data(session, COUNTER_LABEL, &[MAX_PIN_TRIES])?;
                Ok(())
            }
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                Err(TokenError::PinIncorrect {
                    tries_left: left - 1,
                })
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                write_data(session, COUNTER_LABEL, &[0])?;
                Err(TokenError::Locked)
            }
            Err(e) => {
                // Not a PIN verdict (device error): give the try back.
                let _ = write_data(session, COUNTER_LABEL, &[left]);
                Err(e.into())
            }
        }
    }
}

impl Token for Pkcs11Token {
    fn serial(&self) -> String {
        self.serial.clone()
    }

    fn label(&self) -> String {
        self.label.clone()
    }

    fn status(&self) -> Result<TokenStatus> {
        let _guard = self.module.exclusive()?;
        let slot = self.slot()?;
        let ctx = &self.module.ctx;
        let info = ctx.get_token_info(slot)?;
        let session = ctx.open_ro_session(slot)?;
        if needs_recovery(&session)? {
            recover(&ctx.open_rw_session(slot)?, false)?;
        }
        let mut left = read_counter(&session)?;
        if info.user_pin_locked() {
            left = 0;
        }
        let mut containers: BTreeMap<String, ContainerInfo> = BTreeMap::new();
        fn entry(map: &mut BTreeMap<String, ContainerInfo>, name: String) -> &mut ContainerInfo {
            map.entry(name.clone()).or_insert_with(|| ContainerInfo {
                name,
                has_key: false,
                public_key_spki: None,
                certificate_der: None,
            })
        }
        for h in session.find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Token(true),
        ])? {
            let Some(name) = label_of(&session, h)? else {
                continue;
            };
            let spki = crypto::spki_der(&public_key_of(&session, h)?)?;
            let c = entry(&mut containers, name);
            c.has_key = true;
            c.public_key_spki = Some(spki);
        }
        for h in session.find_objects(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Token(true),
        ])? {
            let Some(name) = label_of(&session, h)? else {
                continue;
            };
            let value = attribute_bytes(&session, h, AttributeType::Value)?;
            entry(&mut containers, name).certificate_der = value;
        }
        Ok(TokenStatus {
            serial: self.serial.clone(),
            label: self.label.clone(),
            pin_tries_left: left,
            locked: left == 0,
            containers: containers.into_values().collect(),
        })
    }

    fn generate_key(&self, pin: &str, container: &str) -> Result<Vec<u8>> {
        crate::validate_container_name(container)?;
        self.with_user(pin, |session| {
            let existing = find_by_label(session, ObjectClass::PUBLIC_KEY, container)?.len()
                + find_by_label(session, ObjectClass::PRIVATE_KEY, container)?.len();
            if existing > 0 {
                return Err(TokenError::ContainerExists(container.into()));
            }
            let label = Attribute::Label(container.as_bytes().to_vec());
            let public_template = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::Encrypt(false),
                Attribute::Wrap(false),
                Attribute::Derive(false),
                Attribute::EcParams(P256_PARAMS.to_vec()),
                label.clone(),
            ];
            let private_template = [
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
            let (public_h, private_h) = session.generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &public_template,
                &private_template,
            )?;
            let public = public_key_of(session, public_h)?;
            let id = key_id(&public);
            session.update_attributes(public_h, &[Attribute::Id(id.clone())])?;
            session.update_attributes(private_h, &[Attribute::Id(id)])?;
            crypto::spki_der(&public)
        })
    }

    fn sign(&self, pin: &str, container: &str, message: &[u8]) -> Result<Vec<u8>> {
        crate::validate_container_name(container)?;
        self.with_user(pin, |session| {
            let key = single(
                find_by_label(session, ObjectClass::PRIVATE_KEY, container)?,
                container,
            )?;
            // CKM_ECDSA_SHA256 is not offered by every module (SoftHSM2): hash here.
            let digest = crypto::sha256(&[message]);
            let raw = session.sign(&Mechanism::Ecdsa, key, &digest)?;
            crypto::raw_signature_to_der(&raw)
        })
    }

    fn put_certificate(&self, pin: &str, container: &str, cert_der: &[u8]) -> Result<()> {
        crate::validate_container_name(container)?;
        let fields = der::certificate_fields(cert_der)?;
        let cert_key =
            crypto::public_from_spki(fields.spki).ok_or(TokenError::CertificateMismatch)?;
        self.with_user(pin, |session| {
            let public_h = single(
                find_by_label(session, ObjectClass::PUBLIC_KEY, container)?,
                container,
            )?;
            let public = public_key_of(session, public_h)?;
            if public != cert_key {
                return Err(TokenError::CertificateMismatch);
            }
            // New first, under a temporary label; then the old ones go (see the module docs).
            let new = session.create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(format!("{NEW_CERTIFICATE_PREFIX}{container}").into_bytes()),
                Attribute::Id(key_id(&public)),
                Attribute::Subject(fields.subject.to_vec()),
                Attribute::Issuer(fields.issuer.to_vec()),
                Attribute::SerialNumber(fields.serial.to_vec()),
                Attribute::Value(cert_der.to_vec()),
            ])?;
            crate::fault::point("token.put_certificate.mid");
            finish_certificate(session, new, container)
        })
    }

    fn promote(&self, pin: &str, pending: &str, active: &str) -> Result<()> {
        crate::validate_container_name(pending)?;
        crate::validate_container_name(active)?;
        if pending == active {
            return Err(TokenError::ContainerName);
        }
        self.with_user(pin, |session| {
            let private_h = single(
                find_by_label(session, ObjectClass::PRIVATE_KEY, pending)?,
                pending,
            )?;
            let public_h = single(
                find_by_label(session, ObjectClass::PUBLIC_KEY, pending)?,
                pending,
            )?;
            let cert_h = match find_by_label(session, ObjectClass::CERTIFICATE, pending)?[..] {
                [] => return Err(TokenError::CertificateMissing(pending.into())),
                [h] => h,
                _ => {
                    return Err(TokenError::Corrupt(format!(
                        "several certificates for {pending:?}"
                    )));
                }
            };
            let public = public_key_of(session, public_h)?;
            let cert_der = attribute_bytes(session, cert_h, AttributeType::Value)?
                .ok_or_else(|| TokenError::Corrupt(format!("certificate of {pending:?}")))?;
            let fields = der::certificate_fields(&cert_der)?;
            if crypto::public_from_spki(fields.spki) != Some(public) {
                return Err(TokenError::CertificateMismatch);
            }
            // The journal names the pending objects by CKA_ID: make sure all three carry
            // it (a crash inside generate_key can leave a key pair without one).
            let id = key_id(&public);
            for h in [private_h, public_h, cert_h] {
                if id_of(session, h)?.as_deref() != Some(id.as_slice()) {
                    session.update_attributes(h, &[Attribute::Id(id.clone())])?;
                }
            }
            let journal = Promotion {
                pending: pending.into(),
                active: active.into(),
                id,
            };
            write_json(session, PROMOTION_LABEL, &journal)?;
            destroy_replaced(session, &journal, true)?;
            crate::fault::point("token.promote.mid");
            relabel_promoted(session, &journal, true)?;
            delete_data(session, PROMOTION_LABEL)
        })
    }

    fn delete_container(&self, pin: &str, container: &str) -> Result<()> {
        crate::validate_container_name(container)?;
        self.with_user(pin, |session| {
            let mut handles = Vec::new();
            for class in [
                ObjectClass::PRIVATE_KEY,
                ObjectClass::PUBLIC_KEY,
                ObjectClass::CERTIFICATE,
            ] {
                handles.extend(find_by_label(session, class, container)?);
            }
            if handles.is_empty() {
                return Err(TokenError::ContainerNotFound(container.into()));
            }
            for h in handles {
                session.destroy_object(h)?;
            }
            Ok(())
        })
    }

    fn change_pin(&self, old: &str, new: &str) -> Result<()> {
        crate::validate_pin(new)?;
        self.with_user(old, |session| {
            session.set_pin(&AuthPin::from(old), &AuthPin::from(new))?;
            Ok(())
        })
    }

    fn unlock_challenge(&self) -> Result<Vec<u8>> {
        self.with_session(|session, _| {
            let seal = read_seal(session)?;
            let pending = unlock::new_challenge(&seal.current)?;
            write_json(session, CHALLENGE_LABEL, &pending)?;
            Ok(pending.challenge)
        })
    }

    fn apply_unlock(&self, response: &str, new_pin: &str) -> Result<()> {
        crate::validate_pin(new_pin)?;
        self.with_session(|session, _| {
            let seal = read_seal(session)?;
            let challenge: Option<PendingChallenge> = read_json(session, CHALLENGE_LABEL)?;
            let k =
                unlock::recover_secret(&self.serial, &seal.current, challenge.as_ref(), response)?;

            // Log in as SO with the sealed SO PIN; after an interrupted rotation it may
            // already be the pending one, whose secret is encrypted under `k`.
            let mut active = (seal.current.clone(), k);
            let mut logged_in = so_login(session, &active.1)?;
            if !logged_in && let Some(p) = &seal.pending {
                let next = crypto::open(
                    &pending_kek(&self.serial, &active.1),
                    &p.nonce,
                    &p.secret,
                    b"",
                )
                .and_then(|s| <[u8; unlock::SECRET_LEN]>::try_from(s.as_slice()).ok())
                .map(Zeroizing::new)
                .ok_or_else(|| TokenError::Corrupt("pending unlock seal".into()))?;
                active = (p.seal.clone(), next);
                logged_in = so_login(session, &active.1)?;
            }
            if !logged_in {
                return Err(TokenError::Corrupt(
                    "SO PIN does not match the unlock seal".into(),
                ));
            }
            let result = (|| -> Result<()> {
                session.init_pin(&AuthPin::from(new_pin))?;
                // Rotate: record the next seal (its secret under the active one) before
                // the SO PIN changes, then make it current.
                let (next_seal, next_k) =
                    unlock::new_seal(&self.serial, &active.0.recovery_public)?;
                let (nonce, secret) = crypto::seal(
                    &pending_kek(&self.serial, &active.1),
                    next_k.as_slice(),
                    b"",
                )?;
                write_seal(
                    session,
                    &SealObject {
                        current: active.0.clone(),
                        pending: Some(PendingSeal {
                            seal: next_seal.clone(),
                            nonce,
                            secret,
                        }),
                    },
                )?;
                let old_so = unlock::so_pin_from_secret(&active.1);
                let new_so = unlock::so_pin_from_secret(&next_k);
                session.set_pin(
                    &AuthPin::from(old_so.as_str()),
                    &AuthPin::from(new_so.as_str()),
                )?;
                if crate::fault::stops_after_so_pin_change() {
                    return Err(TokenError::Device("simulated crash after C_SetPIN".into()));
                }
                write_seal(
                    session,
                    &SealObject {
                        current: next_seal,
                        pending: None,
                    },
                )?;
                delete_data(session, CHALLENGE_LABEL)?;
                write_data(session, COUNTER_LABEL, &[MAX_PIN_TRIES])?;
                Ok(())
            })();
            let _ = session.logout();
            result
        })
    }
}

/// Whether a crash left something for [`recover`] to finish.
fn needs_recovery(session: &Session) -> Result<bool> {
    Ok(!new_certificates(session)?.is_empty()
        || !data_objects(session, PROMOTION_LABEL)?.is_empty())
}

/// Finishes what an interrupted `put_certificate` or `promote` left (see the module docs).
/// Without a login (`logged_in` false) private keys are invisible: a promotion is then
/// replayed for the public objects only and its journal kept for the next login.
fn recover(session: &Session, logged_in: bool) -> Result<()> {
    for (h, container) in new_certificates(session)? {
        finish_certificate(session, h, &container)?;
    }
    if let Some(journal) = read_json::<Promotion>(session, PROMOTION_LABEL)? {
        destroy_replaced(session, &journal, logged_in)?;
        relabel_promoted(session, &journal, logged_in)?;
        if logged_in {
            delete_data(session, PROMOTION_LABEL)?;
        }
    }
    Ok(())
}

/// Certificates written by `put_certificate` under the temporary label, with the container
/// each is for.
fn new_certificates(session: &Session) -> Result<Vec<(ObjectHandle, String)>> {
    let mut out = Vec::new();
    for h in session.find_objects(&[
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::Token(true),
    ])? {
        if let Some(label) = label_of(session, h)?
            && let Some(container) = label.strip_prefix(NEW_CERTIFICATE_PREFIX)
        {
            out.push((h, container.to_string()));
        }
    }
    Ok(out)
}

/// The second half of `put_certificate`: destroys the container's other certificates and
/// gives the new one (temporary label) the container's label. Idempotent.
fn finish_certificate(session: &Session, new: ObjectHandle, container: &str) -> Result<()> {
    for old in find_by_label(session, ObjectClass::CERTIFICATE, container)? {
        if old != new {
            session.destroy_object(old)?;
        }
    }
    session.update_attributes(new, &[Attribute::Label(container.as_bytes().to_vec())])?;
    Ok(())
}

/// The classes a promotion moves; private keys only when logged in (else invisible).
fn promotion_classes(logged_in: bool) -> &'static [ObjectClass] {
    if logged_in {
        &[
            ObjectClass::PRIVATE_KEY,
            ObjectClass::PUBLIC_KEY,
            ObjectClass::CERTIFICATE,
        ]
    } else {
        &[ObjectClass::PUBLIC_KEY, ObjectClass::CERTIFICATE]
    }
}

/// Promotion step (a): destroys the keys and certificates labelled `active` that are not
/// the promoted key's (`CKA_ID`). Idempotent.
fn destroy_replaced(session: &Session, journal: &Promotion, logged_in: bool) -> Result<()> {
    for class in promotion_classes(logged_in) {
        for h in find_by_label(session, *class, &journal.active)? {
            if id_of(session, h)?.as_deref() != Some(journal.id.as_slice()) {
                session.destroy_object(h)?;
            }
        }
    }
    Ok(())
}

/// Promotion step (b): relabels the promoted key's objects from `pending` to `active`.
/// Idempotent.
fn relabel_promoted(session: &Session, journal: &Promotion, logged_in: bool) -> Result<()> {
    let label = Attribute::Label(journal.active.as_bytes().to_vec());
    for class in promotion_classes(logged_in) {
        for h in find_by_label(session, *class, &journal.pending)? {
            if id_of(session, h)?.as_deref() == Some(journal.id.as_slice()) {
                session.update_attributes(h, std::slice::from_ref(&label))?;
            }
        }
    }
    Ok(())
}

/// `C_Login(SO)` with the SO PIN of seal secret `k`; `false` when the PIN is wrong.
fn so_login(session: &Session, k: &[u8; unlock::SECRET_LEN]) -> Result<bool> {
    let so_pin = unlock::so_pin_from_secret(k);
    match session.login(UserType::So, Some(&AuthPin::from(so_pin.as_str()))) {
        Ok(()) => Ok(true),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn pending_kek(serial: &str, k: &[u8; unlock::SECRET_LEN]) -> [u8; 32] {
    crypto::hkdf(b"ekey-pkcs11-pending-seal-v1", k, &[serial.as_bytes()])
}

/// The initialised token with this label, and its serial.
fn find_slot(ctx: &Pkcs11, label: &str) -> Result<(Slot, String)> {
    let mut found = Vec::new();
    for slot in ctx.get_slots_with_initialized_token()? {
        let info = ctx.get_token_info(slot)?;
        if info.label().trim_end() == label {
            found.push((slot, info.serial_number().trim_end().to_string()));
        }
    }
    match found.len() {
        0 => Err(TokenError::NotFound(label.into())),
        1 => Ok(found.remove(0)),
        _ => Err(TokenError::Ambiguous(label.into())),
    }
}

/// Exclusive lock on `<tmp>/ekey-pkcs11-<hash of module path>.lock`, held by every call
/// into the module: counter updates must not interleave, and SoftHSM2 returns
/// `CKR_GENERAL_ERROR` to a process that reads token files while another writes them.
fn host_lock(module_path: &Path) -> Result<File> {
    let digest = crypto::sha256(&[module_path.as_os_str().as_encoded_bytes()]);
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let path = std::env::temp_dir().join(format!("ekey-pkcs11-{name}.lock"));
    let f = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        // Created by another user of this host: a read-only descriptor locks as well.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => File::open(&path)?,
        other => other?,
    };
    f.lock()?;
    Ok(f)
}

fn key_id(public: &PublicKey) -> Vec<u8> {
    crypto::sha256(&[&crypto::sec1(public, false)])[..20].to_vec()
}

fn find_by_label(session: &Session, class: ObjectClass, label: &str) -> Result<Vec<ObjectHandle>> {
    Ok(session.find_objects(&[
        Attribute::Class(class),
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?)
}

fn single(handles: Vec<ObjectHandle>, container: &str) -> Result<ObjectHandle> {
    match handles.as_slice() {
        [h] => Ok(*h),
        [] => Err(TokenError::ContainerNotFound(container.into())),
        _ => Err(TokenError::Corrupt(format!(
            "several objects for {container:?}"
        ))),
    }
}

fn attribute_bytes(
    session: &Session,
    h: ObjectHandle,
    t: AttributeType,
) -> Result<Option<Vec<u8>>> {
    for a in session.get_attributes(h, &[t])? {
        match a {
            Attribute::Value(v)
            | Attribute::Label(v)
            | Attribute::EcPoint(v)
            | Attribute::Id(v) => {
                return Ok(Some(v));
            }
            _ => {}
        }
    }
    Ok(None)
}

fn label_of(session: &Session, h: ObjectHandle) -> Result<Option<String>> {
    Ok(attribute_bytes(session, h, AttributeType::Label)?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .filter(|l| !l.is_empty()))
}

fn id_of(session: &Session, h: ObjectHandle) -> Result<Option<Vec<u8>>> {
    attribute_bytes(session, h, AttributeType::Id)
}

/// The P-256 public key of a public key object (`CKA_EC_POINT`, DER OCTET STRING, or a
/// raw point from older modules).
fn public_key_of(session: &Session, h: ObjectHandle) -> Result<PublicKey> {
    let point = attribute_bytes(session, h, AttributeType::EcPoint)?
        .ok_or_else(|| TokenError::Corrupt("public key without CKA_EC_POINT".into()))?;
    let raw = der::octet_string(&point).unwrap_or(&point);
    PublicKey::from_sec1_bytes(raw).map_err(|_| TokenError::Unsupported("not a P-256 key".into()))
}

/// Our data objects with this label: handle, generation and payload.
fn data_objects(session: &Session, label: &str) -> Result<Vec<(ObjectHandle, u64, Vec<u8>)>> {
    let handles = session.find_objects(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?;
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        let value = attribute_bytes(session, h, AttributeType::Value)?.unwrap_or_default();
        if value.len() < 8 {
            return Err(TokenError::Corrupt(format!("{label} object")));
        }
        let (generation, payload) = value.split_at(8);
        let generation = u64::from_be_bytes(generation.try_into().expect("8 bytes"));
        out.push((h, generation, payload.to_vec()));
    }
    Ok(out)
}

/// The newest payload of a data object.
fn read_data(session: &Session, label: &str) -> Result<Option<Vec<u8>>> {
    Ok(data_objects(session, label)?
        .into_iter()
        .max_by_key(|(_, generation, _)| *generation)
        .map(|(_, _, payload)| payload))
}

/// Replaces a public data object. PKCS#11 does not let `CKA_VALUE` of a data object be
/// modified, so a new object (next generation) is created first and the old ones are
/// destroyed afterwards: a crash in between leaves two, and readers take the newest.
fn write_data(session: &Session, label: &str, payload: &[u8]) -> Result<()> {
    let old = data_objects(session, label)?;
    let generation = old.iter().map(|(_, g, _)| *g).max().map_or(1, |g| g + 1);
    let mut value = generation.to_be_bytes().to_vec();
    value.extend_from_slice(payload);
    session.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Application(APPLICATION.as_bytes().to_vec()),
        Attribute::Value(value),
    ])?;
    for (h, _, _) in old {
        session.destroy_object(h)?;
    }
    Ok(())
}

fn delete_data(session: &Session, label: &str) -> Result<()> {
    for (h, _, _) in data_objects(session, label)? {
        session.destroy_object(h)?;
    }
    Ok(())
}

fn read_counter(session: &Session) -> Result<u8> {
    match read_data(session, COUNTER_LABEL)? {
        Some(v) if v.len() == 1 && v[0] <= MAX_PIN_TRIES => Ok(v[0]),
        Some(_) => Err(TokenError::Corrupt("PIN counter".into())),
        None => Err(TokenError::NotPersonalised("no PIN counter object".into())),
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(session: &Session, label: &str) -> Result<Option<T>> {
    read_data(session, label)?
        .map(|v| {
            serde_json::from_slice(&v).map_err(|e| TokenError::Corrupt(format!("{label}: {e}")))
        })
        .transpose()
}

fn write_json<T: Serialize>(session: &Session, label: &str, value: &T) -> Result<()> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| TokenError::Corrupt(format!("{label}: {e}")))?;
    write_data(session, label, &bytes)
}

fn read_seal(session: &Session) -> Result<SealObject> {
    read_json(session, SEAL_LABEL)?
        .ok_or_else(|| TokenError::NotPersonalised("no unlock seal object".into()))
}

fn write_seal(session: &Session, seal: &SealObject) -> Result<()> {
    write_json(session, SEAL_LABEL, seal)
}

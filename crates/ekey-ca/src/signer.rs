//! CA key backends: the [`CaSigner`] trait and its encrypted-file implementation
//! [`FileKey`]. A PKCS#11 backend implements the same trait (see the helpers at the end of
//! this module for tokens that only sign digests).

use std::fmt;
use std::io::Write;
use std::path::Path;

use pkcs8::der::pem::LineEnding;
use pkcs8::pkcs5::pbes2;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    self as ring_sig, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair,
    KeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use crate::error::{CaError, Result};
use crate::passphrase::Passphrase;

/// Default PBKDF2-HMAC-SHA256 iteration count for new key files (OWASP 2023 advice).
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 600_000;
/// The lowest iteration count accepted for new key files.
pub const MIN_PBKDF2_ITERATIONS: u32 = 10_000;

/// The public-key algorithm of a CA or subject key, and the signature it makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256 (the default).
    #[default]
    EcdsaP256,
    /// RSA with PKCS#1 v1.5 signatures over SHA-256. New keys have 2048 bits; imported CA
    /// keys may have up to 4096 bits (*ring*'s limit), subject keys up to 8192.
    Rsa2048,
}

impl KeyAlgorithm {
    /// Stable name: `ecdsa-p256` or `rsa-2048`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
        }
    }

    /// Parses `ecdsa-p256` / `p256` / `ec` or `rsa-2048` / `rsa2048` / `rsa` (any case).
    pub fn parse(name: &str) -> Result<KeyAlgorithm> {
        match name.trim().to_ascii_lowercase().as_str() {
            "ecdsa-p256" | "p256" | "p-256" | "ec" | "ecdsa" => Ok(KeyAlgorithm::EcdsaP256),
            "rsa-2048" | "rsa2048" | "rsa" => Ok(KeyAlgorithm::Rsa2048),
            other => Err(CaError::Config {
                field: "algorithm",
                detail: format!("unknown key algorithm {other:?} (ecdsa-p256 or rsa-2048)"),
            }),
        }
    }

    pub(crate) fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// DER of the signature AlgorithmIdentifier this algorithm produces
    /// (`ecdsa-with-SHA256`, or `sha256WithRSAEncryption` with NULL parameters).
    pub fn signature_algorithm_der(self) -> &'static [u8] {
        match self {
            // SEQUENCE { OID 1.2.840.10045.4.3.2 }
            KeyAlgorithm::EcdsaP256 => &[
                0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
            ],
            // SEQUENCE { OID 1.2.840.113549.1.1.11, NULL }
            KeyAlgorithm::Rsa2048 => &[
                0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05,
                0x00,
            ],
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CA signing key, wherever it lives (encrypted file, PKCS#11 token, …).
///
/// `sign` receives the exact bytes to be signed (a DER `TBSCertificate`, `TBSCertList`
/// or OCSP `ResponseData`) and returns the X.509 signature value:
/// - [`KeyAlgorithm::EcdsaP256`]: SHA-256 the message, ECDSA-sign, return the DER
///   `Ecdsa-Sig-Value` (`SEQUENCE { r INTEGER, s INTEGER }`). A PKCS#11 token with only
///   `CKM_ECDSA` signs [`sha256`]`(message)` and converts its raw `r‖s` with
///   [`ecdsa_signature_from_raw`].
/// - [`KeyAlgorithm::Rsa2048`]: RSASSA-PKCS1-v1_5 with SHA-256. A token with only
///   `CKM_RSA_PKCS` signs [`rsa_pkcs1_sha256_digest_info`]`(message)`.
///
/// The CA checks every certificate signature against the issuer's public key before it
/// hands the certificate out, so a backend that returns a wrong encoding is caught.
pub trait CaSigner: Send + Sync {
    /// The key's algorithm.
    fn algorithm(&self) -> KeyAlgorithm;
    /// The key's DER `SubjectPublicKeyInfo`.
    fn spki_der(&self) -> &[u8];
    /// Signs `message` as described on the trait.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>>;
}

enum RingKey {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A CA key kept in an encrypted PKCS#8 PEM file (`-----BEGIN ENCRYPTED PRIVATE KEY-----`,
/// PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, readable by
/// `openssl pkey -in FILE -passin …`). In memory the key is held by *ring*; the plain
/// PKCS#8 copy (kept to re-encrypt) is wiped on drop.
pub struct FileKey {
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
    pkcs8: Zeroizing<Vec<u8>>,
    key: RingKey,
    rng: SystemRandom,
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl FileKey {
    /// Generates a new key. RSA keys have 2048 bits.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<FileKey> {
        let rng = SystemRandom::new();
        let pkcs8 = match algorithm {
            KeyAlgorithm::EcdsaP256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                    .map_err(|_| CaError::Signer {
                        detail: "P-256 key generation failed".into(),
                    })?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
            KeyAlgorithm::Rsa2048 => {
                use pkcs8::EncodePrivateKey;
                let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).map_err(|e| {
                    CaError::Signer {
                        detail: format!("RSA key generation failed: {e}"),
                    }
                })?;
                let doc = key.to_pkcs8_der().map_err(CaError::encoding)?;
                Zeroizing::new(doc.as_bytes().to_vec())
            }
        };
        FileKey::from_pkcs8_der(&pkcs8, "generated key")
    }

    /// Loads a plain (unencrypted) PKCS#8 DER private key: ECDSA P-256 or RSA
    /// (2048–4096 bits). `source` names it in errors.
    pub fn from_pkcs8_der(der: &[u8], source: &str) -> Result<FileKey> {
        let rng = SystemRandom::new();
        let (algorithm, key, public) =
            if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng) {
                let point = k.public_key().as_ref().to_vec();
                (KeyAlgorithm::EcdsaP256, RingKey::Ec(k), point)
            } else {
                match RsaKeyPair::from_pkcs8(der) {
                    Ok(k) => {
                        let public = k.public().as_ref().to_vec();
                        (KeyAlgorithm::Rsa2048, RingKey::Rsa(k), public)
                    }
                    Err(e) => {
                        return Err(CaError::KeyFile {
                            path: source.to_string(),
                            detail: format!(
                                "not an ECDSA P-256 or RSA (2048–4096 bit) PKCS#8 private key ({e})"
                            ),
                        });
                    }
                }
            };
        let spki = spki_der(algorithm, &public);
        Ok(FileKey {
            algorithm,
            spki,
            pkcs8: Zeroizing::new(der.to_vec()),
            key,
            rng,
        })
    }

    /// Decrypts an `ENCRYPTED PRIVATE KEY` PEM. A plain `PRIVATE KEY` PEM is accepted
    /// too (for imports of keys made elsewhere); the CA itself never writes one.
    /// A wrong passphrase is `ekey.ca.passphrase`.
    pub fn from_pem(pem: &str, passphrase: &Passphrase, source: &str) -> Result<FileKey> {
        let key_file = |detail: String| CaError::KeyFile {
            path: source.to_string(),
            detail,
        };
        let (label, doc) = pkcs8::der::SecretDocument::from_pem(pem.trim_start())
            .map_err(|e| key_file(format!("not a PEM private key: {e}")))?;
        match label {
            "ENCRYPTED PRIVATE KEY" => {
                let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(doc.as_bytes())
                    .map_err(|e| key_file(format!("malformed EncryptedPrivateKeyInfo: {e}")))?;
                let plain = info
                    .decrypt(passphrase.expose())
                    .map_err(|_| CaError::Passphrase {
                        path: source.to_string(),
                    })?;
                // A wrong passphrase can, rarely, still yield valid padding; the garbage
                // then fails to parse as a key: report it as a wrong passphrase too.
                FileKey::from_pkcs8_der(plain.as_bytes(), source).map_err(|_| CaError::Passphrase {
                    path: source.to_string(),
                })
            }
            "PRIVATE KEY" => FileKey::from_pkcs8_der(doc.as_bytes(), source),
            other => Err(key_file(format!(
                "PEM label {other:?}: convert it to PKCS#8 with `openssl pkcs8 -topk8`"
            ))),
        }
    }

    /// Reads and decrypts a key file.
    pub fn load(path: &Path, passphrase: &Passphrase) -> Result<FileKey> {
        let pem = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| CaError::io(path, e))?);
        FileKey::from_pem(&pem, passphrase, &path.display().to_string())
    }

    /// Encrypts the key under `passphrase` (PBES2: PBKDF2-HMAC-SHA256 with
    /// `pbkdf2_iterations` and a random 16-octet salt, AES-256-CBC) as PEM.
    pub fn to_encrypted_pem(
        &self,
        passphrase: &Passphrase,
        pbkdf2_iterations: u32,
    ) -> Result<String> {
        if pbkdf2_iterations < MIN_PBKDF2_ITERATIONS {
            return Err(CaError::Config {
                field: "pbkdf2_iterations",
                detail: format!("at least {MIN_PBKDF2_ITERATIONS}"),
            });
        }
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        self.rng
            .fill(&mut salt)
            .and_then(|()| self.rng.fill(&mut iv))
            .map_err(|_| CaError::Signer {
                detail: "system random generator failed".into(),
            })?;
        let params =
            pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(pbkdf2_iterations, &salt, iv)
                .map_err(CaError::encoding)?;
        let info =
            pkcs8::PrivateKeyInfoRef::try_from(self.pkcs8.as_slice()).map_err(CaError::encoding)?;
        let encrypted = info
            .encrypt_with_params(params, passphrase.expose())
            .map_err(CaError::encoding)?;
        let pem = encrypted
            .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            .map_err(CaError::encoding)?;
        Ok(pem.to_string())
    }

    /// Writes the encrypted key to a new file (mode 0600 on Unix). Refuses to overwrite.
    pub fn save(&self, path: &Path, passphrase: &Passphrase, pbkdf2_iterations: u32) -> Result<()> {
        let pem = self.to_encrypted_pem(passphrase, pbkdf2_iterations)?;
        write_new_file(path, pem.as_bytes(), true)
    }
}

impl CaSigner for FileKey {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = || CaError::Signer {
            detail: "ring signing failed".into(),
        };
        match &self.key {
            RingKey::Ec(k) => k
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| failed()),
            RingKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(|_| failed())?;
                Ok(sig)
            }
        }
    }
}

/// Writes a new file; refuses to overwrite. `secret` files get mode 0600 on Unix.
pub(crate) fn write_new_file(path: &Path, content: &[u8], secret: bool) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CaError::AlreadyExists {
                path: path.display().to_string(),
            }
        } else {
            CaError::io(path, e)
        }
    })?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(|e| CaError::io(path, e))
}

// ---------------------------------------------------------------- DER helpers --

const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
const OID_RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];

/// Builds a DER SubjectPublicKeyInfo from the raw public key (uncompressed EC point, or
/// DER `RSAPublicKey`).
pub(crate) fn spki_der(algorithm: KeyAlgorithm, public: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| match algorithm {
                KeyAlgorithm::EcdsaP256 => {
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(
                            OID_EC_PUBLIC_KEY,
                        ));
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(OID_P256));
                }
                KeyAlgorithm::Rsa2048 => {
                    w.next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(
                            OID_RSA_ENCRYPTION,
                        ));
                    w.next().write_null();
                }
            });
            w.next().write_bitvec_bytes(public, public.len() * 8);
        })
    })
}

/// A public key the CA can certify or verify with.
#[derive(Clone, Debug)]
pub(crate) struct PublicKeyInfo {
    pub algorithm: KeyAlgorithm,
    /// Modulus bits for RSA, 256 for P-256.
    pub bits: u32,
    /// The `subjectPublicKey` BIT STRING content (EC point or DER `RSAPublicKey`).
    pub subject_public_key: Vec<u8>,
}

impl PublicKeyInfo {
    /// Re-encodes the canonical SPKI (RSA with NULL parameters).
    pub fn spki_der(&self) -> Vec<u8> {
        spki_der(self.algorithm, &self.subject_public_key)
    }

    /// RFC 7093 method 1 key identifier: the leftmost 160 bits of SHA-256 over the
    /// `subjectPublicKey` bits.
    pub fn key_id(&self) -> Vec<u8> {
        key_id(&self.subject_public_key)
    }
}

/// RFC 7093 method 1 key identifier of a `subjectPublicKey` BIT STRING content.
pub(crate) fn key_id(subject_public_key: &[u8]) -> Vec<u8> {
    sha256(subject_public_key)[..20].to_vec()
}

/// Why a public key was refused: the detail for the error, and whether the key was
/// structurally readable at all (type refused) or not (malformed).
pub(crate) enum KeyRefusal {
    Malformed(String),
    Unsupported(String),
}

/// Checks a DER SubjectPublicKeyInfo: ECDSA P-256 (a valid uncompressed point) or RSA
/// with 2048–8192 bits and an odd exponent ≥ 3. Anything else is refused.
pub(crate) fn inspect_spki(der: &[u8]) -> std::result::Result<PublicKeyInfo, KeyRefusal> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| KeyRefusal::Malformed(format!("not a SubjectPublicKeyInfo: {e}")))?;
    if !rest.is_empty() {
        return Err(KeyRefusal::Malformed(
            "trailing bytes after SubjectPublicKeyInfo".into(),
        ));
    }
    inspect_parsed_spki(&spki)
}

pub(crate) fn inspect_parsed_spki(
    spki: &SubjectPublicKeyInfo<'_>,
) -> std::result::Result<PublicKeyInfo, KeyRefusal> {
    let alg = spki.algorithm.algorithm.to_id_string();
    let data = spki.subject_public_key.data.as_ref();
    match alg.as_str() {
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" => {}
                "1.3.132.0.34" => return Err(KeyRefusal::Unsupported("ECDSA P-384".into())),
                "1.3.132.0.35" => return Err(KeyRefusal::Unsupported("ECDSA P-521".into())),
                "1.2.156.10197.1.301" => {
                    return Err(KeyRefusal::Unsupported("SM2 (not yet supported)".into()));
                }
                "" => return Err(KeyRefusal::Malformed("EC key without named curve".into())),
                other => return Err(KeyRefusal::Unsupported(format!("EC curve {other}"))),
            }
            if data.len() != 65 || data[0] != 0x04 {
                return Err(KeyRefusal::Unsupported(
                    "P-256 point not in uncompressed form".into(),
                ));
            }
            if !p256_point_is_valid(data) {
                return Err(KeyRefusal::Malformed(
                    "P-256 point is not on the curve".into(),
                ));
            }
            Ok(PublicKeyInfo {
                algorithm: KeyAlgorithm::EcdsaP256,
                bits: 256,
                subject_public_key: data.to_vec(),
            })
        }
        "1.2.840.113549.1.1.1" => {
            let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                return Err(KeyRefusal::Malformed("unreadable RSA public key".into()));
            };
            let modulus = strip_zeros(rsa.modulus);
            let bits = match modulus.first() {
                Some(first) => (modulus.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
                None => 0,
            };
            if bits < 2048 {
                return Err(KeyRefusal::Unsupported(format!("RSA-{bits}")));
            }
            if bits > 8192 {
                return Err(KeyRefusal::Unsupported(format!(
                    "RSA-{bits} (over 8192 bits)"
                )));
            }
            let exponent = rsa.try_exponent().unwrap_or(0);
            if exponent < 3 || exponent % 2 == 0 {
                return Err(KeyRefusal::Unsupported(format!("RSA exponent {exponent}")));
            }
            Ok(PublicKeyInfo {
                algorithm: KeyAlgorithm::Rsa2048,
                bits,
                subject_public_key: data.to_vec(),
            })
        }
        "1.3.101.112" => Err(KeyRefusal::Unsupported("Ed25519".into())),
        "1.3.101.113" => Err(KeyRefusal::Unsupported("Ed448".into())),
        "1.2.840.113549.1.1.10" => Err(KeyRefusal::Unsupported("RSA-PSS".into())),
        "1.2.840.10040.4.1" => Err(KeyRefusal::Unsupported("DSA".into())),
        other => Err(KeyRefusal::Unsupported(format!("key algorithm {other}"))),
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// On the curve and not the identity (SEC 1 §3.2.2.1 partial validation; the cofactor
/// of P-256 is 1, so this is full validation).
fn p256_point_is_valid(point: &[u8]) -> bool {
    p256::PublicKey::from_sec1_bytes(point).is_ok()
}

/// Verifies `signature` over `message` with the key in `spki_der` and the signature
/// scheme of `algorithm` (the X.509 encodings described on [`CaSigner`]).
pub fn verify_signature(
    spki_der: &[u8],
    algorithm: KeyAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<()> {
    let info = inspect_spki(spki_der).map_err(|r| CaError::PublicKey {
        detail: match r {
            KeyRefusal::Malformed(d) | KeyRefusal::Unsupported(d) => d,
        },
    })?;
    if info.algorithm != algorithm {
        return Err(CaError::Signer {
            detail: "signature algorithm does not match the key".into(),
        });
    }
    let alg: &dyn ring_sig::VerificationAlgorithm = match algorithm {
        KeyAlgorithm::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        KeyAlgorithm::Rsa2048 => &RSA_PKCS1_2048_8192_SHA256,
    };
    ring_sig::UnparsedPublicKey::new(alg, &info.subject_public_key)
        .verify(message, signature)
        .map_err(|_| CaError::Signer {
            detail: "signature does not verify with the certificate's public key".into(),
        })
}

/// Signs a fixed probe with `signer` and verifies it against `spki_der` (the public key
/// of the certificate the signer is meant to stand behind).
pub(crate) fn check_signer_matches(
    signer: &dyn CaSigner,
    cert_spki_der: &[u8],
    what: &'static str,
) -> Result<()> {
    let probe = b"ekey-ca key check";
    let signature = signer.sign(probe)?;
    verify_signature(cert_spki_der, signer.algorithm(), probe, &signature)
        .map_err(|_| CaError::KeyMismatch { what })
}

// ------------------------------------------------ helpers for token backends --

/// SHA-256 of `message`.
pub fn sha256(message: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, message);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SHA-1 of `message` (only for OCSP CertIDs and responder key hashes).
pub(crate) fn sha1(message: &[u8]) -> [u8; 20] {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, message);
    let mut out = [0u8; 20];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Converts a raw P-256 ECDSA signature `r‖s` (64 octets, as PKCS#11 `CKM_ECDSA`
/// returns it) to the DER `Ecdsa-Sig-Value` X.509 expects.
pub fn ecdsa_signature_from_raw(raw: &[u8]) -> Result<Vec<u8>> {
    if raw.len() != 64 {
        return Err(CaError::Signer {
            detail: format!("raw P-256 signature of {} octets, expected 64", raw.len()),
        });
    }
    let (r, s) = raw.split_at(32);
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_bigint_bytes(r, true);
            w.next().write_bigint_bytes(s, true);
        })
    }))
}

/// The DER `DigestInfo` (SHA-256) of `message`, the input of a raw PKCS#1 v1.5 signature
/// (`CKM_RSA_PKCS`).
pub fn rsa_pkcs1_sha256_digest_info(message: &[u8]) -> Vec<u8> {
    const PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let mut out = PREFIX.to_vec();
    out.extend_from_slice(&sha256(message));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_conversion_verifies() {
        // Sign with ring in fixed (raw) form, convert, verify in ASN.1 form.
        let rng = SystemRandom::new();
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            doc.as_ref(),
            &rng,
        )
        .unwrap();
        let raw = key.sign(&rng, b"message").unwrap();
        let der = ecdsa_signature_from_raw(raw.as_ref()).unwrap();
        let spki = spki_der(KeyAlgorithm::EcdsaP256, key.public_key().as_ref());
        verify_signature(&spki, KeyAlgorithm::EcdsaP256, b"message", &der).unwrap();
        assert!(verify_signature(&spki, KeyAlgorithm::EcdsaP256, b"other", &der).is_err());
    }

    #[test]
    fn invalid_point_is_refused() {
        let mut point = vec![0x04];
        point.extend_from_slice(&[1u8; 64]);
        let spki = spki_der(KeyAlgorithm::EcdsaP256, &point);
        assert!(matches!(inspect_spki(&spki), Err(KeyRefusal::Malformed(_))));
    }

    #[test]
    fn file_key_round_trip_and_wrong_passphrase() {
        let key = FileKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pass = Passphrase::new("a long enough passphrase").unwrap();
        let pem = key.to_encrypted_pem(&pass, MIN_PBKDF2_ITERATIONS).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let back = FileKey::from_pem(&pem, &pass, "test").unwrap();
        assert_eq!(back.spki_der(), key.spki_der());
        let sig = back.sign(b"m").unwrap();
        verify_signature(key.spki_der(), KeyAlgorithm::EcdsaP256, b"m", &sig).unwrap();
        let wrong = Passphrase::new("another passphrase!").unwrap();
        let err = FileKey::from_pem(&pem, &wrong, "test").unwrap_err();
        assert_eq!(err.code(), "ekey.ca.passphrase");
    }
}

//! Pairing a portal page with the agent: the page asks, the agent prints a 6-digit code in
//! its terminal, the person at the machine types it there, and the page then receives a
//! secret once. Secrets are kept only as SHA-256 in `<state dir>/pairings.json`, so
//! reading the file does not let anyone act as a paired page.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng, TryRngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{AgentError, Result};

/// How long a pairing request waits for its code to be typed (and, once confirmed, for
/// the page to collect the secret).
pub const PENDING_TTL: Duration = Duration::from_secs(5 * 60);

/// Pending pairing requests kept at once; a new one pushes out the oldest.
pub const MAX_PENDING: usize = 4;

const FILE_NAME: &str = "pairings.json";

/// The state of a pairing request, as `GET /pairings/{id}` reports it.
#[derive(Debug, PartialEq, Eq)]
pub enum PairingState {
    /// The code has not been typed yet.
    Pending,
    /// Confirmed: the secret, handed out this once.
    Paired(String),
}

/// What typing a line in the agent's terminal did.
#[derive(Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// The line was the code of a pending request, which is now confirmed.
    Confirmed,
    /// No pending request has this code.
    NoMatch,
    /// An empty line.
    Empty,
}

struct Pending {
    id: String,
    code: String,
    since: Instant,
    confirmed: bool,
}

#[derive(Serialize, Deserialize, Clone)]
struct Saved {
    /// SHA-256 of the secret, hex.
    secret_sha256: String,
    origin: String,
    /// When the pairing was made, RFC 3339.
    created_at: String,
}

#[derive(Serialize, Deserialize, Default)]
struct SavedFile {
    pairings: Vec<Saved>,
}

struct Inner {
    saved: Vec<Saved>,
    pending: Vec<Pending>,
}

/// The pairings of one agent: pending requests in memory, confirmed ones on disk.
pub struct Pairings {
    path: PathBuf,
    origin: String,
    inner: Mutex<Inner>,
}

impl Pairings {
    /// Loads the pairings kept in `state_dir` (none when the file does not exist yet).
    pub fn load(state_dir: &Path, origin: &str) -> Result<Pairings> {
        let path = state_dir.join(FILE_NAME);
        let saved = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<SavedFile>(&bytes)
                    .map_err(|e| AgentError::State(format!("{}: {e}", path.display())))?
                    .pairings
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(AgentError::State(format!("{}: {e}", path.display()))),
        };
        Ok(Pairings {
            path,
            origin: origin.to_string(),
            inner: Mutex::new(Inner {
                saved,
                pending: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every change is one
        // assignment or push), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a pairing request: returns its id and code.
    pub fn start(&self) -> (String, String) {
        let mut inner = self.lock();
        expire(&mut inner.pending);
        let waiting = inner.pending.iter().filter(|p| !p.confirmed).count();
        if waiting >= MAX_PENDING
            && let Some(oldest) = inner.pending.iter().position(|p| !p.confirmed)
        {
            inner.pending.remove(oldest);
        }
        let mut rng = rand::rng();
        let code = loop {
            let code = format!("{:06}", rng.random_range(0..1_000_000u32));
            if !inner.pending.iter().any(|p| p.code == code) {
                break code;
            }
        };
        let id = hex::encode(rng.random::<[u8; 16]>());
        inner.pending.push(Pending {
            id: id.clone(),
            code: code.clone(),
            since: Instant::now(),
            confirmed: false,
        });
        (id, code)
    }

    /// A line typed in the agent's terminal: confirms the pending request with this code.
    pub fn confirm(&self, line: &str) -> Confirmation {
        let line = line.trim();
        if line.is_empty() {
            return Confirmation::Empty;
        }
        let mut inner = self.lock();
        expire(&mut inner.pending);
        match inner
            .pending
            .iter_mut()
            .find(|p| !p.confirmed && p.code == line)
        {
            Some(p) => {
                p.confirmed = true;
                p.since = Instant::now();
                Confirmation::Confirmed
            }
            None => Confirmation::NoMatch,
        }
    }

    /// The state of a request. Once confirmed, the first call makes the secret, records
    /// its hash on disk and returns it; the request is then gone.
    pub fn poll(&self, id: &str) -> Result<PairingState> {
        let mut inner = self.lock();
        expire(&mut inner.pending);
        let index = inner
            .pending
            .iter()
            .position(|p| p.id == id)
            .ok_or(AgentError::PairingUnknown)?;
        if !inner.pending[index].confirmed {
            return Ok(PairingState::Pending);
        }
        let mut secret = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut secret)
            .map_err(|e| AgentError::Internal(format!("random source: {e}")))?;
        let secret = URL_SAFE_NO_PAD.encode(secret);
        let mut saved = inner.saved.clone();
        saved.push(Saved {
            secret_sha256: hash(&secret),
            origin: self.origin.clone(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        write_atomically(
            &self.path,
            &serde_json::to_vec_pretty(&SavedFile {
                pairings: saved.clone(),
            })
            .map_err(|e| AgentError::Internal(e.to_string()))?,
        )
        .map_err(|e| AgentError::State(format!("{}: {e}", self.path.display())))?;
        inner.saved = saved;
        inner.pending.remove(index);
        Ok(PairingState::Paired(secret))
    }

    /// Whether `secret` belongs to a pairing with this agent's origin.
    pub fn is_paired(&self, secret: &str) -> bool {
        if secret.is_empty() {
            return false;
        }
        let h = hash(secret);
        self.lock()
            .saved
            .iter()
            .any(|s| s.origin == self.origin && s.secret_sha256 == h)
    }
}

fn expire(pending: &mut Vec<Pending>) {
    pending.retain(|p| p.since.elapsed() < PENDING_TTL);
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Writes a file so that it holds the old or the new content after a crash, never a mix:
/// temporary file, fsync, rename, fsync of the directory. Owner-only permissions.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_confirms_once_and_secret_is_handed_out_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pairings::load(dir.path(), "http://portal").unwrap();
        let (id, code) = p.start();
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(p.poll(&id).unwrap(), PairingState::Pending);
        assert_eq!(p.confirm(""), Confirmation::Empty);
        let wrong = if code == "000000" { "000001" } else { "000000" };
        assert_eq!(p.confirm(wrong), Confirmation::NoMatch);
        assert_eq!(p.confirm(&format!(" {code}\n")), Confirmation::Confirmed);
        assert_eq!(p.confirm(&code), Confirmation::NoMatch);
        let PairingState::Paired(secret) = p.poll(&id).unwrap() else {
            panic!("not paired")
        };
        assert!(matches!(p.poll(&id), Err(AgentError::PairingUnknown)));
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), 32);
        assert!(p.is_paired(&secret));
        assert!(!p.is_paired("x"));
        let file = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!file.contains(&secret), "the secret itself is never stored");
        // Another origin's agent with the same state directory does not accept it.
        let other = Pairings::load(dir.path(), "http://elsewhere").unwrap();
        assert!(!other.is_paired(&secret));
    }

    #[test]
    fn pending_requests_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pairings::load(dir.path(), "http://portal").unwrap();
        let first = p.start();
        for _ in 0..MAX_PENDING {
            p.start();
        }
        assert!(matches!(p.poll(&first.0), Err(AgentError::PairingUnknown)));
        assert_eq!(p.lock().pending.len(), MAX_PENDING);
    }
}

//! The passphrase that protects the CA key files.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{CaError, Result};

/// Minimum length (in characters) of a passphrase that protects a *new* key file.
pub const MIN_NEW_PASSPHRASE_CHARS: usize = 12;

/// The environment variable the binaries read the passphrase from by convention.
pub const PASSPHRASE_ENV: &str = "EKEY_CA_PASSPHRASE";

/// A CA key passphrase. Wiped from memory when dropped; never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase. Empty passphrases are refused (`ekey.ca.passphrase_missing`).
    pub fn new(text: impl Into<String>) -> Result<Passphrase> {
        let text = Zeroizing::new(text.into());
        if text.is_empty() {
            return Err(CaError::PassphraseMissing {
                var: PASSPHRASE_ENV.to_string(),
            });
        }
        Ok(Passphrase(text))
    }

    /// Reads the passphrase from the environment variable `var` when it is set and not
    /// empty, otherwise from `file` (its first line; a trailing newline is not part of the
    /// passphrase). Neither → `ekey.ca.passphrase_missing`; an unreadable file →
    /// `ekey.ca.io`.
    pub fn from_env_or_file(var: &str, file: Option<&Path>) -> Result<Passphrase> {
        if let Some(value) = std::env::var_os(var) {
            let value = Zeroizing::new(value.to_string_lossy().into_owned());
            if !value.is_empty() {
                return Passphrase::new(value.as_str());
            }
        }
        let Some(path) = file else {
            return Err(CaError::PassphraseMissing {
                var: var.to_string(),
            });
        };
        let content =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| CaError::io(path, e))?);
        let line = content.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(CaError::PassphraseMissing {
                var: var.to_string(),
            });
        }
        Passphrase::new(line)
    }

    /// Refuses passphrases too short to protect a new key file.
    pub(crate) fn check_strength(&self) -> Result<()> {
        if self.0.chars().count() < MIN_NEW_PASSPHRASE_CHARS {
            return Err(CaError::PassphraseWeak {
                min: MIN_NEW_PASSPHRASE_CHARS,
            });
        }
        Ok(())
    }

    pub(crate) fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_first_line_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "correct horse battery\n").unwrap();
        let p = Passphrase::from_env_or_file("EKEY_CA_TEST_UNSET_VAR_4711", Some(&path)).unwrap();
        assert_eq!(p.expose(), b"correct horse battery");
        assert_eq!(format!("{p:?}"), "Passphrase(***)");
    }

    #[test]
    fn nothing_given() {
        let err = Passphrase::from_env_or_file("EKEY_CA_TEST_UNSET_VAR_4712", None).unwrap_err();
        assert_eq!(err.code(), "ekey.ca.passphrase_missing");
        assert_eq!(
            Passphrase::new("").unwrap_err().code(),
            "ekey.ca.passphrase_missing"
        );
        assert_eq!(
            Passphrase::new("short")
                .unwrap()
                .check_strength()
                .unwrap_err()
                .code(),
            "ekey.ca.passphrase_weak"
        );
    }
}

//! The keys "inserted": software token files, a directory of them, PKCS#11 tokens. Looked
//! up afresh on every call, so a key plugged in (a file copied in) later appears and a
//! key pulled out disappears. Blocking: call from `spawn_blocking`.

use std::path::PathBuf;
use std::sync::Arc;

use ekey_token::{Pkcs11Token, SoftToken, Token, TokenError};

/// Where the agent looks for keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// One software token file.
    File(PathBuf),
    /// Every `*.token` file in a directory (re-scanned on each call).
    Dir(PathBuf),
    /// A PKCS#11 token, by label or serial, behind a module. The token crate offers no
    /// listing of a module's tokens, so each one is named.
    Pkcs11 {
        /// The module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
        module: PathBuf,
        /// The token's label or serial.
        label: String,
    },
}

impl TokenSource {
    /// Where this source looks, for people (`/status`, the agent's window).
    pub fn describe(&self) -> String {
        match self {
            TokenSource::File(p) | TokenSource::Dir(p) => p.display().to_string(),
            TokenSource::Pkcs11 { module, label } => format!("{} ({label})", module.display()),
        }
    }
}

/// Where the agent looks when started without naming any key (`ekey agent` as the portal's
/// instructions say): the `tokens` folder of its own settings directory, and the `tokens`
/// folder of the demo's data directory (`./ekey-data/tokens`, where `ekey demo` writes its
/// keys). Keys copied there later are found at the next call.
pub fn default_sources(state_dir: &std::path::Path) -> Vec<TokenSource> {
    let demo = std::env::current_dir()
        .map(|d| d.join("ekey-data").join("tokens"))
        .unwrap_or_else(|_| PathBuf::from("ekey-data/tokens"));
    vec![
        TokenSource::Dir(state_dir.join("tokens")),
        TokenSource::Dir(demo),
    ]
}

/// What the agent says while no key is found, in Chinese or English.
pub fn no_key_message(sources: &[TokenSource], zh: bool) -> String {
    let places: Vec<String> = sources.iter().map(TokenSource::describe).collect();
    if zh {
        format!(
            "电子钥匙助手正在运行，但尚未检测到电子钥匙：请插入钥匙（软件钥匙请把钥匙文件放到 {} ），插入后无需重启。",
            places.join(" 或 ")
        )
    } else {
        format!(
            "The key helper is running, but no key is present yet: insert the key (for a software key, put its file into {}); no restart needed.",
            places.join(" or ")
        )
    }
}

/// Opens every key that is there now. A source that yields nothing (file missing, token
/// absent, unreadable) is skipped; the reason goes to the log. A serial seen twice counts
/// once (the first source wins).
pub fn open_all(sources: &[TokenSource]) -> Vec<Arc<dyn Token>> {
    let mut out: Vec<Arc<dyn Token>> = Vec::new();
    let mut push = |t: Arc<dyn Token>| {
        if !out.iter().any(|o| o.serial() == t.serial()) {
            out.push(t);
        }
    };
    for source in sources {
        match source {
            TokenSource::File(path) => match SoftToken::open(path) {
                Ok(t) => push(Arc::new(t)),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "token file not usable")
                }
            },
            TokenSource::Dir(dir) => {
                let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
                    Ok(entries) => entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "token") && p.is_file())
                        .collect(),
                    Err(e) => {
                        tracing::debug!(dir = %dir.display(), error = %e, "token directory not readable");
                        Vec::new()
                    }
                };
                files.sort();
                for path in files {
                    match SoftToken::open(&path) {
                        Ok(t) => push(Arc::new(t)),
                        Err(e) => {
                            tracing::debug!(path = %path.display(), error = %e, "token file not usable")
                        }
                    }
                }
            }
            TokenSource::Pkcs11 { module, label } => match Pkcs11Token::open(module, label) {
                Ok(t) => push(Arc::new(t)),
                Err(e) => {
                    tracing::debug!(module = %module.display(), %label, error = %e, "PKCS#11 token not usable")
                }
            },
        }
    }
    out
}

/// The key with this serial, if inserted (`ekey.token.not_found` otherwise).
pub fn find(sources: &[TokenSource], serial: &str) -> Result<Arc<dyn Token>, TokenError> {
    open_all(sources)
        .into_iter()
        .find(|t| t.serial() == serial)
        .ok_or_else(|| TokenError::NotFound(serial.to_string()))
}

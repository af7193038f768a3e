//! Blob storage for uploaded files. Keys are ASCII paths; the real file name stays in the
//! database. A write is durable (fsync of file and directory) before it returns, so a file
//! whose metadata was committed is never missing after a crash.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::{Result, StoreError};

/// Where file contents live.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` under `key`, durably.
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Reads the bytes under `key`.
    async fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Removes `key` (a file whose metadata was never committed); absent is fine.
    async fn delete(&self, key: &str) -> Result<()>;
}

/// Blobs in a local directory.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    /// Blobs under `root` (created when missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(LocalBlobStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        let ok = !key.is_empty()
            && key.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            });
        if !ok {
            return Err(StoreError::Backend(format!("invalid blob key {key:?}")));
        }
        Ok(self.root.join(key))
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
        std::process::id()
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))??;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_and_reject_path_tricks() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::new(dir.path()).unwrap();
        store.put("materials/r1/id_card/1", b"abc").await.unwrap();
        assert_eq!(store.get("materials/r1/id_card/1").await.unwrap(), b"abc");
        assert!(store.put("../escape", b"x").await.is_err());
        assert!(store.put("/abs", b"x").await.is_err());
        assert!(matches!(
            store.get("materials/none").await,
            Err(StoreError::NotFound)
        ));
    }
}

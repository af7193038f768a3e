//! Blob storage for uploaded files and generated documents, through `object_store`: a local
//! directory by default, S3 (or an S3-compatible service) when configured. Keys are ASCII
//! paths (`object_store` percent-encodes anything else); the real file name stays in the
//! database.
//!
//! A put is durable before it returns, so that a committed database row never points at a
//! lost file. S3 answers a PUT only once the object is stored. On a local directory
//! `object_store` writes a temporary file and renames it into place without any fsync, so
//! after its put we fsync the file, then every directory from the file's up to the root (the
//! put may have created directories, and each one's entry lives in its parent).

mod http;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use crate::{Result, StoreError};

/// Where file contents live.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` under `key` (replacing what was there), durably.
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Stores `bytes` under `key` unless the key already holds something, durably. True when
    /// these bytes were stored, false when the key was taken (its content is left as it was).
    async fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool>;
    /// Reads the bytes under `key`; [`StoreError::NotFound`] when there are none.
    async fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Removes `key` (a file whose metadata was never committed); absent is fine.
    async fn delete(&self, key: &str) -> Result<()>;
}

/// Checks a blob key: `/`-separated segments of ASCII letters, digits, `-`, `_` and `.`,
/// none empty, `.` or `..` (no absolute paths, no way out of the root or the prefix).
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::Backend(format!("invalid blob key {key:?}")))
    }
}

/// Where an S3 store is and how to reach it. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), never from a file.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (without slashes at either end), if any.
    pub prefix: Option<String>,
    /// Endpoint of an S3-compatible service (`https://minio.internal:9000`,
    /// `http://127.0.0.1:5000`); AWS itself when absent. Requests are path-style.
    pub endpoint: Option<String>,
    /// Region (`us-east-1`, `cn-north-1`…).
    pub region: String,
    /// Allow a plain-http endpoint that is not a loopback address.
    pub allow_http: bool,
    /// Access key id; without one, the EC2 instance role's credentials (instance metadata).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl S3Settings {
    /// Bucket and prefix from `s3://bucket[/prefix]`; the rest at its defaults.
    pub fn from_url(url: &str) -> Result<S3Settings> {
        let bad = |why: &str| StoreError::Backend(format!("storage URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://bucket[/prefix]"))?;
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (rest, ""),
        };
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'));
        if !bucket_ok {
            return Err(bad(
                "the bucket name must be 3–63 lowercase letters, digits, '-' or '.'",
            ));
        }
        if !prefix.is_empty() {
            check_key(prefix).map_err(|_| {
                bad("the prefix may only hold ASCII letters, digits, '-', '_', '.' and '/'")
            })?;
        }
        Ok(S3Settings {
            bucket: bucket.to_string(),
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            region: "us-east-1".into(),
            ..S3Settings::default()
        })
    }
}

/// Whether `endpoint` may be used: https always, plain http only on a loopback address
/// unless `allow_http`.
fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<()> {
    let bad = |why: String| StoreError::Backend(format!("S3 endpoint {endpoint:?}: {why}"));
    let url = url::Url::parse(endpoint).map_err(|e| bad(e.to_string()))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback || allow_http {
                Ok(())
            } else {
                Err(bad(
                    "plain http is allowed only on 127.0.0.1, ::1 or localhost (set s3_allow_http = true to allow it elsewhere)".into(),
                ))
            }
        }
        other => Err(bad(format!("unsupported scheme {other:?}"))),
    }
}

/// The blob store: any `object_store` backend behind the [`BlobStore`] interface.
#[derive(Clone)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local store, whose writes are fsynced after each put.
    local_root: Option<PathBuf>,
    /// For logs and errors: `local /var/lib/ekey/files`, `s3://bucket/prefix`.
    describe: String,
}

impl std::fmt::Debug for ObjectBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBlobStore")
            .field("store", &self.describe)
            .finish()
    }
}

impl ObjectBlobStore {
    /// Blobs in the local directory `root` (created when missing).
    pub fn local(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let root = std::fs::canonicalize(&root)?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", root.display())))?;
        Ok(ObjectBlobStore {
            store: Arc::new(store),
            describe: format!("local {}", root.display()),
            local_root: Some(root),
        })
    }

    /// Blobs in an S3 bucket. Nothing is contacted yet: a wrong endpoint or credentials show
    /// at the first put or get, as a [`StoreError::Blob`].
    pub fn s3(s: &S3Settings) -> Result<Self> {
        if let Some(endpoint) = &s.endpoint {
            check_endpoint(endpoint, s.allow_http)?;
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_virtual_hosted_style_request(false)
            .with_http_connector(http::RustlsConnector)
            .with_client_options(
                ClientOptions::new()
                    // check_endpoint has allowed an http endpoint (loopback or allow_http).
                    .with_allow_http(
                        s.endpoint
                            .as_deref()
                            .is_some_and(|e| e.starts_with("http://")),
                    ),
            )
            // A user waits on the other end of an upload or a download: fail within
            // seconds rather than the default three minutes of retries.
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &s.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        match (&s.access_key_id, &s.secret_access_key) {
            (Some(id), Some(secret)) => {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                if let Some(token) = &s.session_token {
                    builder = builder.with_token(token);
                }
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Backend(
                    "S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together"
                        .into(),
                ));
            }
        }
        let s3 = builder
            .build()
            .map_err(|e| StoreError::Backend(format!("S3 bucket {}: {e}", s.bucket)))?;
        let describe = match &s.prefix {
            Some(p) => format!("s3://{}/{p}", s.bucket),
            None => format!("s3://{}", s.bucket),
        };
        let store: Arc<dyn ObjectStore> = match &s.prefix {
            Some(p) => Arc::new(PrefixStore::new(s3, p.as_str())),
            None => Arc::new(s3),
        };
        Ok(ObjectBlobStore {
            store,
            local_root: None,
            describe,
        })
    }

    /// Blobs in any other `object_store` backend (no fsync after puts: the backend's own
    /// durability applies).
    pub fn from_object_store(store: Arc<dyn ObjectStore>, describe: impl Into<String>) -> Self {
        ObjectBlobStore {
            store,
            local_root: None,
            describe: describe.into(),
        }
    }

    /// `local /dir` or `s3://bucket[/prefix]`.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Every key under `prefix` (a whole segment, e.g. `documents/r1`), sorted. For
    /// operations and tests; the application finds its blobs through the database.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        check_key(prefix)?;
        let prefix = ObjectPath::from(prefix);
        let mut keys: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(|e| self.error(prefix.as_ref(), e))?;
        keys.sort();
        Ok(keys)
    }

    /// Lists one key of the store: a wrong bucket, endpoint or credentials show here, at
    /// start, rather than at the first upload.
    /// A local directory was checked when opened (created, resolved): nothing to do.
    pub async fn check(&self) -> Result<()> {
        use futures_util::StreamExt;
        if self.local_root.is_some() {
            return Ok(());
        }
        match self.store.list(None).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(StoreError::Blob(format!("{}: {e}", self.describe))),
        }
    }

    fn error(&self, key: &str, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound,
            other => StoreError::Blob(format!("{} ({key}): {other}", self.describe)),
        }
    }

    async fn write(&self, key: &str, bytes: &[u8], mode: PutMode) -> Result<bool> {
        check_key(key)?;
        let location = ObjectPath::from(key);
        let payload = PutPayload::from(bytes.to_vec());
        // The deepest directory that exists before the write: the put may create the ones
        // below it, whose entries then have to reach the disk too.
        let existed = self
            .local_root
            .as_ref()
            .map(|root| deepest_existing(root, &root.join(key)));
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self.store.put_opts(&location, payload, opts).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
            // Not NotFound even on a 404 (a missing bucket): a write failed. (A local put
            // removes its temporary file when the write fails.)
            Err(e) => {
                let detail = format!("{} ({key}): {e}", self.describe);
                return Err(if no_space_left(&e) {
                    StoreError::Full(detail)
                } else {
                    StoreError::Blob(detail)
                });
            }
        }
        if let Some(root) = &self.local_root {
            let root = root.clone();
            let path = root.join(key);
            let existed = existed.unwrap_or_else(|| root.clone());
            tokio::task::spawn_blocking(move || sync_path(&existed, &path))
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))?
                .map_err(|e| StoreError::Blob(format!("{} ({key}): fsync: {e}", self.describe)))?;
        }
        Ok(true)
    }
}

/// Whether a failed write ran out of space (an `ENOSPC` or quota error anywhere in its chain).
fn no_space_left(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The deepest ancestor directory of `path` (at most `root`) that exists now.
fn deepest_existing(root: &Path, path: &Path) -> PathBuf {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || d.is_dir() {
            return d.to_path_buf();
        }
        dir = d.parent();
    }
    root.to_path_buf()
}

/// Flushes `path` and the directory entries that changed to disk: its own directory's, and
/// those of the directories created for it, up to `existed` (the deepest directory that
/// existed before). A file in an existing directory costs two fsyncs.
fn sync_path(existed: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    let mut dir = path.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
        if d == existed || !d.starts_with(existed) {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.write(key, bytes, PutMode::Overwrite).await.map(|_| ())
    }

    async fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        self.write(key, bytes, PutMode::Create).await
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>> {
        check_key(key)?;
        let location = ObjectPath::from(key);
        let got = self
            .store
            .get(&location)
            .await
            .map_err(|e| self.error(key, e))?;
        let bytes = got.bytes().await.map_err(|e| self.error(key, e))?;
        Ok(bytes.to_vec())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_ascii_paths() {
        for ok in [
            "a",
            "materials/r1/id_card/1.jpg",
            "documents/x/application-form-v1.pdf",
        ] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/abs", "a/", "a//b", "../x", "a/../b", "./a", "a/./b", "é", "a b", "a\\b", "a#1",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn s3_urls_and_endpoints() {
        let s = S3Settings::from_url("s3://ekey-files").unwrap();
        assert_eq!((s.bucket.as_str(), s.prefix), ("ekey-files", None));
        assert_eq!(s.region, "us-east-1");
        let s = S3Settings::from_url("s3://ekey-files/prod/eu/").unwrap();
        assert_eq!(s.prefix.as_deref(), Some("prod/eu"));
        for bad in [
            "ekey-files",
            "s3://",
            "s3://UPPER",
            "s3://b",
            "s3://ok-bucket/../x",
        ] {
            assert!(S3Settings::from_url(bad).is_err(), "{bad}");
        }
        assert!(check_endpoint("https://s3.example.com", false).is_ok());
        assert!(check_endpoint("http://127.0.0.1:5000", false).is_ok());
        assert!(check_endpoint("http://[::1]:5000", false).is_ok());
        assert!(check_endpoint("http://localhost:9000", false).is_ok());
        assert!(check_endpoint("http://minio.internal:9000", false).is_err());
        assert!(check_endpoint("http://127.0.0.1@minio.internal:9000", false).is_err());
        assert!(check_endpoint("http://minio.internal:9000", true).is_ok());
        assert!(check_endpoint("ftp://127.0.0.1", true).is_err());
        let debug = format!(
            "{:?}",
            S3Settings {
                secret_access_key: Some("very-secret".into()),
                ..S3Settings::default()
            }
        );
        assert!(!debug.contains("very-secret"), "{debug}");
    }
}

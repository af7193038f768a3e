//! Pictures enterprises upload, as the server handles them: every image's pixel dimensions
//! are checked at upload (a small file can announce a giant), the staff's pages show a
//! preview the server made at a safe size, and the CPU- and memory-heavy work (fitting a
//! photo under its limit, making a preview) runs a bounded number at a time.

use axum::http::StatusCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use ekey_media::MediaError;

use crate::error::ApiError;

/// Picture jobs running at once: each may hold a few hundred MB for a 50-megapixel image.
pub const MEDIA_AT_ONCE: usize = 2;

static MEDIA_TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MEDIA_AT_ONCE);
static MEDIA_RUNNING: AtomicUsize = AtomicUsize::new(0);
static MEDIA_PEAK: AtomicUsize = AtomicUsize::new(0);

/// The most picture jobs this process has run at once (never above [`MEDIA_AT_ONCE`]).
pub fn media_jobs_peak() -> usize {
    MEDIA_PEAK.load(Ordering::SeqCst)
}

/// The media error as an answer: the uploader's mistake is 422, a bug 500.
pub(crate) fn media_error(e: MediaError) -> ApiError {
    ApiError::new(
        if e.code() == "ekey.media.internal" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        },
        e.code(),
        e.message(ekey_domain::Lang::Zh),
        e.message(ekey_domain::Lang::En),
    )
}

/// Refuses an image whose header announces more pixels than eKey handles (or that cannot
/// be read at all), whatever its size in bytes. Reads the header only.
pub(crate) fn check_pixels(bytes: &[u8]) -> Result<(), ApiError> {
    ekey_media::probe(bytes).map(|_| ()).map_err(media_error)
}

/// Runs a picture job on a blocking thread when its turn comes ([`MEDIA_AT_ONCE`] at a
/// time; after 30 s of waiting, 503). The turn ends with the job, even if the caller
/// hangs up.
pub(crate) async fn media_turn<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, MediaError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = tokio::time::timeout(std::time::Duration::from_secs(30), MEDIA_TURNS.acquire())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ekey.server.busy",
                "服务器正忙，请稍后重试",
                "The server is busy; please retry in a few seconds",
            )
        })?
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || {
        let running = MEDIA_RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        MEDIA_PEAK.fetch_max(running, Ordering::SeqCst);
        let out = work();
        MEDIA_RUNNING.fetch_sub(1, Ordering::SeqCst);
        drop(permit);
        out
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(media_error)
}

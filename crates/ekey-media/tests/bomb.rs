//! Decompression bombs are refused from their header, without taking the memory their
//! pixels would need. A file of its own: the peak memory of this test process is checked.

mod common;

use std::time::{Duration, Instant};

use ekey_media::{MAX_PIXELS, MAX_SIDE, MediaError, fit, probe};
use image::ExtendedColorType;

/// Resets the peak resident memory of this process to its current resident memory
/// (Linux: writing 5 to `clear_refs`).
fn reset_peak_memory() {
    std::fs::write("/proc/self/clear_refs", "5")
        .expect("reset VmHWM through /proc/self/clear_refs");
}

/// The peak resident memory of this process, in bytes (Linux `VmHWM`).
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kb * 1024
}

#[test]
fn bombs_are_refused_from_the_header() {
    // 30000×30000 announced (900 megapixels, 0.9 GB of grey, 3.6 GB as RGBA), a few
    // dozen bytes of data.
    let bomb = common::png_bomb_header(30_000, 30_000);
    assert!(bomb.len() < 100);
    let start = Instant::now();
    let err = fit(&bomb, 1024 * 1024).unwrap_err();
    assert_eq!(
        err,
        MediaError::TooManyPixels {
            width: 30_000,
            height: 30_000
        }
    );
    assert_eq!(err.code(), "ekey.media.too_many_pixels");
    assert!(err.message(ekey_domain::Lang::Zh).contains("30000×30000"));
    assert_eq!(
        probe(&bomb).unwrap_err().code(),
        "ekey.media.too_many_pixels"
    );
    // One side too long, however few pixels in all.
    let strip = common::png_bomb_header(MAX_SIDE + 1, 10);
    assert_eq!(
        fit(&strip, 1024).unwrap_err().code(),
        "ekey.media.too_many_pixels"
    );
    assert!(start.elapsed() < Duration::from_secs(1));

    // A real, highly compressible bomb: 7200×7200 all-white grey (51.8 megapixels, just
    // over the limit), a few dozen kilobytes as PNG.
    let (w, h) = (7200u32, 7200u32);
    assert!(u64::from(w) * u64::from(h) > MAX_PIXELS);
    let white = common::png(&vec![255u8; (w * h) as usize], w, h, ExtendedColorType::L8);
    assert!(white.len() < 1024 * 1024, "{} bytes", white.len());
    // Forget the peak of making the file (its raw pixels are freed by now).
    reset_peak_memory();
    let before = peak_memory();
    let err = fit(&white, 1024 * 1024).unwrap_err();
    assert_eq!(
        err,
        MediaError::TooManyPixels {
            width: w,
            height: h
        }
    );
    let after = peak_memory();
    // Decoding it would take 52 MB; nothing like that was taken.
    assert!(
        after.saturating_sub(before) < 16 * 1024 * 1024,
        "peak memory grew from {before} to {after}"
    );
}

//! Fitting a 4 MB 4032×3024 phone photo of a form under 1 MB and under 200 KB, ours
//! against ImageMagick doing the same on the same file:
//!
//! ```text
//! convert in.jpg -auto-orient -resize 2480x2480> -quality 85 -strip -define jpeg:extent=1MB out.jpg
//! ```
//!
//! (`jpeg:extent` makes ImageMagick search the quality for the size; it never scales
//! further.) ImageMagick runs as a process, as a server shelling out to it would; it uses
//! both cores (OpenMP), ours uses both for the resize only.
//!
//! Run: `cargo bench -p ekey-media --bench fit`. After criterion's groups, a summary line
//! per limit gives the median of separate runs and the ratio.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const LIMITS: [(&str, u64, &str); 2] =
    [("1MB", 1024 * 1024, "1MB"), ("200KB", 200 * 1024, "200KB")];

/// The real ImageMagick binary: this machine's PATH starts with a Python stand-in
/// (`/usr/local/bin/convert`) that forwards to it, and timing the interpreter start-up
/// would be unfair to the peer.
fn convert_binary() -> PathBuf {
    let real = Path::new("/usr/bin/convert");
    if real.exists() {
        real.to_path_buf()
    } else {
        PathBuf::from("convert")
    }
}

/// ImageMagick fits `input` under `extent`; returns the output size.
fn magick(input: &Path, output: &Path, extent: &str) -> u64 {
    let status = Command::new(convert_binary())
        .arg(input)
        .args([
            "-auto-orient",
            "-resize",
            "2480x2480>",
            "-quality",
            "85",
            "-strip",
            "-define",
        ])
        .arg(format!("jpeg:extent={extent}"))
        .arg(output)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "ImageMagick's `convert` cannot be run ({e}); install the Debian package \
                 `imagemagick` (apt-get install -y imagemagick)"
            )
        });
    assert!(status.success(), "convert failed");
    std::fs::metadata(output).unwrap().len()
}

/// The JPEG quality ImageMagick estimates for a file (`identify -format %Q`).
fn magick_quality(path: &Path) -> String {
    let out = Command::new("identify")
        .args(["-format", "%Q"])
        .arg(path)
        .output()
        .expect("ImageMagick's identify (apt-get install -y imagemagick)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn benches(c: &mut Criterion) {
    let photo = common::phone_photo();
    let dir = std::env::temp_dir().join(format!("ekey-media-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.jpg");
    let output = dir.join("out.jpg");
    std::fs::write(&input, &photo).unwrap();
    println!(
        "input: {}×{} JPEG, {} bytes",
        common::PHONE.0,
        common::PHONE.1,
        photo.len()
    );

    let mut ours = c.benchmark_group("fit_4mb_photo/ekey_media");
    ours.sample_size(20);
    ours.measurement_time(Duration::from_secs(8));
    for (name, limit, _) in LIMITS {
        ours.bench_function(name, |b| b.iter(|| ekey_media::fit(&photo, limit).unwrap()));
    }
    ours.finish();
    let mut theirs = c.benchmark_group("fit_4mb_photo/imagemagick");
    theirs.sample_size(10);
    theirs.measurement_time(Duration::from_secs(15));
    for (name, _, extent) in LIMITS {
        theirs.bench_function(name, |b| b.iter(|| magick(&input, &output, extent)));
    }
    theirs.finish();

    // The summary: medians of separate runs, the sizes reached, and the ratio.
    for (name, limit, extent) in LIMITS {
        let ours = ekey_media::fit(&photo, limit).unwrap();
        let theirs_size = magick(&input, &output, extent);
        let theirs = image::image_dimensions(&output).unwrap();
        let their_quality = magick_quality(&output);
        let t_ours = median(
            || {
                ekey_media::fit(&photo, limit).unwrap();
            },
            15,
        );
        let t_theirs = median(
            || {
                magick(&input, &output, extent);
            },
            15,
        );
        println!(
            "summary {name}: ekey-media p50 {:.1} ms ({} bytes, {}×{}, q{}) | ImageMagick p50 {:.1} ms ({} bytes, {}×{}, q{}) | ImageMagick / ours = {:.2}",
            t_ours.as_secs_f64() * 1e3,
            ours.after,
            ours.width,
            ours.height,
            ours.quality,
            t_theirs.as_secs_f64() * 1e3,
            theirs_size,
            theirs.0,
            theirs.1,
            their_quality,
            t_theirs.as_secs_f64() / t_ours.as_secs_f64(),
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group!(fit_benches, benches);
criterion_main!(fit_benches);

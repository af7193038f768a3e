//! `fit` and `probe` on pictures made in code, cross-checked with ImageMagick's
//! `identify` (a real, independent JPEG reader).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use ekey_domain::Lang;
use ekey_domain::upload::FileKind;
use ekey_media::{
    Fitted, MAX_LONG_SIDE, MIN_LONG_SIDE, MediaError, QUALITY_MAX, QUALITY_MIN, fit, probe,
};
use image::{ExtendedColorType, GenericImageView};

const MB: u64 = 1024 * 1024;
const KB: u64 = 1024;

/// The 4 MB phone photo, made once for all tests of this file.
fn phone_photo() -> &'static [u8] {
    static PHOTO: OnceLock<Vec<u8>> = OnceLock::new();
    PHOTO.get_or_init(common::phone_photo)
}

/// ImageMagick's view of a file: format, width, height, orientation, and whether any
/// EXIF property is present. Fails (never skips) when ImageMagick is missing.
fn identify(path: &Path) -> (String, u32, u32, String, bool) {
    let run = |args: &[&str]| {
        let out = Command::new("identify")
            .args(args)
            .arg(path)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "ImageMagick's `identify` cannot be run ({e}); install the Debian package \
                     `imagemagick` (apt-get install -y imagemagick)"
                )
            });
        assert!(
            out.status.success(),
            "identify {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let line = run(&["-format", "%m %w %h %[orientation]"]);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "unexpected identify output {line:?}");
    let verbose = run(&["-verbose"]);
    let has_exif = verbose.lines().any(|l| l.trim_start().starts_with("exif:"));
    (
        fields[0].to_string(),
        fields[1].parse().unwrap(),
        fields[2].parse().unwrap(),
        fields[3].to_string(),
        has_exif,
    )
}

/// Checks the output with ImageMagick: a JPEG of the stated size, no orientation tag, no
/// EXIF.
fn cross_check(fitted: &Fitted) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jpg");
    std::fs::write(&path, &fitted.bytes).unwrap();
    let (format, width, height, orientation, has_exif) = identify(&path);
    assert_eq!(format, "JPEG");
    assert_eq!((width, height), (fitted.width, fitted.height));
    assert_eq!(
        orientation, "Undefined",
        "the output must carry no orientation"
    );
    assert!(!has_exif, "ImageMagick found EXIF properties in the output");
    // ImageMagick (libjpeg) and the `image` crate (zune-jpeg) see the same pixels.
    let theirs = magick_rgb(&path);
    let ours = image::load_from_memory(&fitted.bytes).unwrap().to_rgb8();
    assert_eq!(theirs.len(), ours.as_raw().len());
    let diff: u64 = theirs
        .iter()
        .zip(ours.as_raw())
        .map(|(&a, &b)| u64::from(a.abs_diff(b)))
        .sum();
    let mean = diff as f64 / theirs.len() as f64;
    assert!(
        mean < 1.0,
        "libjpeg and zune-jpeg disagree: mean difference {mean}"
    );
}

/// The pixels ImageMagick decodes, as 8-bit RGB.
fn magick_rgb(path: &Path) -> Vec<u8> {
    let out = Command::new("convert")
        .arg(path)
        .args(["-colorspace", "sRGB", "-depth", "8", "rgb:-"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "ImageMagick's `convert` cannot be run ({e}); install the Debian package \
                 `imagemagick` (apt-get install -y imagemagick)"
            )
        });
    assert!(
        out.status.success(),
        "convert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Checks what holds for every output: within the limit, a JPEG that decodes to the
/// stated size, no EXIF, sizes reported right.
fn check_output(input: &[u8], fitted: &Fitted, limit: u64) -> image::DynamicImage {
    assert!(fitted.after <= limit, "{} > {limit}", fitted.after);
    assert_eq!(fitted.after, fitted.bytes.len() as u64);
    assert_eq!(fitted.before, input.len() as u64);
    assert!((QUALITY_MIN..=QUALITY_MAX).contains(&fitted.quality));
    assert_eq!(
        image::guess_format(&fitted.bytes).unwrap(),
        image::ImageFormat::Jpeg
    );
    assert!(!common::has_exif(&fitted.bytes), "the output carries EXIF");
    let decoded = image::load_from_memory(&fitted.bytes).unwrap();
    assert_eq!(decoded.dimensions(), (fitted.width, fitted.height));
    decoded
}

/// The output keeps the aspect ratio of the (upright) original to within a pixel.
fn check_aspect(fitted: &Fitted) {
    let expected = f64::from(fitted.original_height) / f64::from(fitted.original_width)
        * f64::from(fitted.width);
    assert!(
        (f64::from(fitted.height) - expected).abs() <= 1.0,
        "{}×{} from {}×{}",
        fitted.width,
        fitted.height,
        fitted.original_width,
        fitted.original_height
    );
}

#[test]
fn the_generated_phone_photo_is_about_4_mb() {
    let photo = phone_photo();
    let size = photo.len() as u64;
    assert!((3_500_000..=4_500_000).contains(&size), "{size} bytes");
    let info = probe(photo).unwrap();
    assert_eq!((info.width, info.height), common::PHONE);
    assert_eq!(info.kind, FileKind::Jpeg);
    assert_eq!(info.orientation, 1);
}

#[test]
fn a_4_mb_phone_photo_fits_in_1_mb_at_a4_300_dpi() {
    let photo = phone_photo();
    let fitted = fit(photo, MB).unwrap();
    check_output(photo, &fitted, MB);
    check_aspect(&fitted);
    assert_eq!(
        (fitted.original_width, fitted.original_height),
        common::PHONE
    );
    // 1 MB is enough for the full A4-at-300-dpi size and a good quality.
    assert_eq!(fitted.width, MAX_LONG_SIDE);
    assert!(fitted.quality >= 75, "quality {}", fitted.quality);
    // Not wastefully far under the limit.
    assert!(fitted.after > MB / 2, "{} bytes", fitted.after);
    cross_check(&fitted);
}

#[test]
fn a_4_mb_phone_photo_fits_in_200_kb_for_an_unlock_scan() {
    let photo = phone_photo();
    let fitted = fit(photo, 200 * KB).unwrap();
    check_output(photo, &fitted, 200 * KB);
    check_aspect(&fitted);
    // Smaller than A4 at 300 dpi, but still readable, and using most of the allowance.
    assert!(fitted.width.max(fitted.height) >= 1200, "{}", fitted.width);
    assert!(fitted.width <= MAX_LONG_SIDE);
    assert!(fitted.after > 150 * KB, "{} bytes", fitted.after);
    cross_check(&fitted);
}

#[test]
fn exif_orientation_6_is_applied_and_the_exif_dropped() {
    // Stored landscape, 1600×1200, with a black block in the stored top-left corner.
    let (w, h) = (1600u32, 1200u32);
    let mut pixels = common::form_photo(w, h, 4, 11);
    for y in 0..200 {
        for x in 0..300 {
            let i = ((y * w + x) * 3) as usize;
            pixels[i..i + 3].copy_from_slice(&[0, 0, 0]);
        }
    }
    let exif = common::exif_orientation(6);
    let input = common::jpeg_with_app1(&pixels, w, h, 92, Some(exif));
    assert!(common::has_exif(&input));

    let info = probe(&input).unwrap();
    assert_eq!((info.width, info.height, info.orientation), (w, h, 6));
    assert_eq!(info.upright_dimensions(), (h, w));

    let fitted = fit(&input, MB).unwrap();
    let out = check_output(&input, &fitted, MB);
    // Upright: portrait, and the stored top-left corner turned a quarter clockwise lands
    // at the top right.
    assert_eq!((fitted.width, fitted.height), (h, w));
    assert_eq!((fitted.original_width, fitted.original_height), (h, w));
    let luma = out.to_luma8();
    let (ow, _) = luma.dimensions();
    let mean = |x0: u32, y0: u32| {
        let mut sum = 0u32;
        for y in y0..y0 + 50 {
            for x in x0..x0 + 50 {
                sum += u32::from(luma.get_pixel(x, y)[0]);
            }
        }
        sum / 2500
    };
    assert!(
        mean(ow - 150, 50) < 40,
        "top right should be the black block"
    );
    assert!(mean(50, 50) > 120, "top left should be paper");
    // The output reads upright without EXIF, and has none.
    let again = probe(&fitted.bytes).unwrap();
    assert_eq!(again.orientation, 1);
    cross_check(&fitted);
}

#[test]
fn a_png_with_transparency_becomes_a_jpeg_on_white() {
    // 1000×800 RGBA: left half transparent, right half opaque dark blue.
    let (w, h) = (1000u32, 800u32);
    let mut rgba = vec![0u8; (w * h * 4) as usize];
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 4) as usize;
            let px = if x < w / 2 {
                [0, 0, 0, 0]
            } else {
                [20, 30, 120, 255]
            };
            rgba[i..i + 4].copy_from_slice(&px);
        }
    }
    let input = common::png(&rgba, w, h, ExtendedColorType::Rgba8);
    assert_eq!(probe(&input).unwrap().kind, FileKind::Png);
    let fitted = fit(&input, 200 * KB).unwrap();
    let out = check_output(&input, &fitted, 200 * KB).to_rgb8();
    assert_eq!((fitted.width, fitted.height), (w, h));
    let left = out.get_pixel(100, 400);
    assert!(
        left.0.iter().all(|&c| c >= 250),
        "transparent became {left:?}"
    );
    let right = out.get_pixel(900, 400);
    assert!(
        (i32::from(right[2]) - 120).abs() < 12 && right[0] < 40,
        "{right:?}"
    );
    cross_check(&fitted);
}

#[test]
fn a_grey_png_scan_becomes_a_grey_jpeg() {
    let (w, h) = (3508u32, 2480u32); // A4 landscape at 300 dpi
    let rgb = common::form_photo(w, h, 3, 5);
    let grey: Vec<u8> = rgb.chunks_exact(3).map(|p| p[1]).collect();
    let input = common::png(&grey, w, h, ExtendedColorType::L8);
    let fitted = fit(&input, MB).unwrap();
    let out = check_output(&input, &fitted, MB);
    assert_eq!(out.color(), image::ColorType::L8);
    assert_eq!(fitted.width, MAX_LONG_SIDE);
    check_aspect(&fitted);
    cross_check(&fitted);
}

#[test]
fn progressive_jpegs_and_16_bit_pngs_are_read_too() {
    let (w, h) = (1500u32, 1100u32);
    let rgb = common::form_photo(w, h, 6, 13);
    // Progressive 4:2:0, as some phone apps and editors save.
    let mut progressive = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut progressive, 92);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder.set_progressive(true);
    encoder
        .encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    let fitted = fit(&progressive, 200 * KB).unwrap();
    check_output(&progressive, &fitted, 200 * KB);
    check_aspect(&fitted);
    cross_check(&fitted);
    // 16 bits per channel with alpha: scaled to 8 bits and laid over white.
    let rgba16: Vec<u8> = rgb
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[0], p[1], p[1], p[2], p[2], 0xFF, 0xFF])
        .collect();
    let png = common::png(&rgba16, w, h, ExtendedColorType::Rgba16);
    let fitted = fit(&png, 300 * KB).unwrap();
    check_output(&png, &fitted, 300 * KB);
    assert_eq!((fitted.width, fitted.height), (w, h));
}

#[test]
fn an_image_under_the_limit_is_re_encoded_and_stays_under() {
    let (w, h) = (800u32, 600u32);
    let input = common::jpeg(&common::form_photo(w, h, 2, 9), w, h, 80);
    assert!((input.len() as u64) < 200 * KB);
    let fitted = fit(&input, 200 * KB).unwrap();
    check_output(&input, &fitted, 200 * KB);
    assert_eq!((fitted.width, fitted.height), (w, h));
    assert_eq!(fitted.quality, QUALITY_MAX);
}

#[test]
fn a_limit_too_small_for_a_legible_picture_is_refused() {
    let photo = phone_photo();
    let err = fit(photo, 20 * KB).unwrap_err();
    assert_eq!(err.code(), "ekey.media.cannot_fit");
    match err {
        MediaError::CannotFit {
            limit,
            smallest,
            width,
            height,
        } => {
            assert_eq!(limit, 20 * KB);
            assert!(smallest > limit);
            assert_eq!(width.max(height), MIN_LONG_SIDE);
        }
        other => panic!("{other:?}"),
    }
    // A tiny picture is never scaled up, and still refused when it cannot fit.
    let tiny = common::jpeg(&common::form_photo(64, 48, 40, 1), 64, 48, 90);
    assert_eq!(fit(&tiny, 100).unwrap_err().code(), "ekey.media.cannot_fit");
}

#[test]
fn a_truncated_jpeg_is_corrupt() {
    let photo = phone_photo();
    let cut = &photo[..photo.len() / 2];
    let err = fit(cut, MB).unwrap_err();
    assert_eq!(err.code(), "ekey.media.corrupt");
    assert_eq!(probe(cut).unwrap_err().code(), "ekey.media.corrupt");
    // Only the start of the signature.
    assert_eq!(
        fit(&[0xFF, 0xD8], MB).unwrap_err().code(),
        "ekey.media.corrupt"
    );
}

#[test]
fn a_jpeg_with_a_damaged_header_is_corrupt() {
    // SOI, garbage instead of the segments, EOI.
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    bytes.extend(std::iter::repeat_n(0x5A, 4000));
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    let err = fit(&bytes, MB).unwrap_err();
    assert_eq!(err.code(), "ekey.media.corrupt", "{err:?}");
    // A PNG whose image data is not zlib.
    let mut png = common::png_bomb_header(16, 16);
    let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
    png[idat + 4] = 0x00;
    let err = fit(&png, MB).unwrap_err();
    assert_eq!(err.code(), "ekey.media.corrupt", "{err:?}");
}

#[test]
fn pdfs_and_other_files_are_not_images() {
    let pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
    let err = fit(pdf, MB).unwrap_err();
    assert_eq!(err, MediaError::Pdf);
    assert_eq!(err.code(), "ekey.media.not_image");
    assert!(err.message(Lang::Zh).contains("PDF"));
    assert!(err.message(Lang::En).contains("smaller PDF"));
    for other in [&b"hello, this is text"[..], b"", b"GIF89a\x01\x00\x01\x00"] {
        let err = fit(other, MB).unwrap_err();
        assert_eq!(err, MediaError::NotImage);
        assert_eq!(err.code(), "ekey.media.not_image");
        assert_eq!(probe(other).unwrap_err(), MediaError::NotImage);
    }
}

#[test]
fn every_error_has_a_stable_code_and_both_languages() {
    let cases = [
        (MediaError::NotImage, "ekey.media.not_image"),
        (MediaError::Pdf, "ekey.media.not_image"),
        (
            MediaError::Corrupt {
                kind: FileKind::Jpeg,
                detail: "x".into(),
            },
            "ekey.media.corrupt",
        ),
        (
            MediaError::TooManyPixels {
                width: 30000,
                height: 30000,
            },
            "ekey.media.too_many_pixels",
        ),
        (
            MediaError::CannotFit {
                limit: 200 * KB,
                smallest: 300 * KB,
                width: 800,
                height: 600,
            },
            "ekey.media.cannot_fit",
        ),
        (MediaError::Internal("x".into()), "ekey.media.internal"),
    ];
    for (err, code) in cases {
        assert_eq!(err.code(), code);
        let zh = err.message(Lang::Zh);
        let en = err.message(Lang::En);
        assert!(
            zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
            "{zh}"
        );
        assert!(
            en.is_ascii() || en.contains('–') || en.contains('×'),
            "{en}"
        );
        assert_ne!(zh, en);
    }
    let fit_err = MediaError::CannotFit {
        limit: 200 * KB,
        smallest: 300 * KB,
        width: 800,
        height: 600,
    };
    assert!(fit_err.message(Lang::Zh).contains("200 KB"));
    assert!(fit_err.message(Lang::En).contains("rescan"));
}

//! Inputs the fuzz target `fuzz/fuzz_targets/media_decode.rs` found, kept as regression
//! tests: each was accepted, or cost far more than its size, before the fix named beside it.

mod common;

use std::time::{Duration, Instant};

use ekey_domain::upload::FileKind;
use ekey_media::{MediaError, fit, probe};
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

const MB: u64 = 1024 * 1024;

fn unhex(lines: &[&str]) -> Vec<u8> {
    let hex: String = lines.concat();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Checks that `bytes` is refused as damaged by both `probe` and `fit`, at once.
fn refused_as_cut_short(bytes: &[u8], kind: FileKind) {
    let start = Instant::now();
    for err in [probe(bytes).unwrap_err(), fit(bytes, MB).unwrap_err()] {
        match &err {
            MediaError::Corrupt { kind: k, detail } => {
                assert_eq!(*k, kind);
                assert!(detail.contains("cannot hold"), "{detail}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(err.code(), "ekey.media.corrupt");
    }
    // Refused from the header: nothing was decoded.
    assert!(start.elapsed() < Duration::from_millis(500));
}

/// Found by the fuzzer (a slow unit): 624 bytes whose frame header announces 766×4096
/// pixels. The JPEG decoder filled the missing data in with grey, so `fit` decoded,
/// resized and encoded 3 megapixels for it, and accepted the result. Fixed by refusing a
/// file too small for the pixels it announces (`max_pixels_per_byte`).
#[test]
fn fuzz_jpeg_624_bytes_announcing_766x4096() {
    let bytes = unhex(&[
        "ffd8ffe100220a00000000000000006a00260800000000000100263c3c62452f08000101120003040000010006000000",
        "000000ffe000104a46494600010100000100010000ffdb0043000604050605040606050607070608100a0a0a09090a14",
        "0e0f0c1017141818171416161a0000000000000000000000000000000000001d251fece4dce3e9e9dfd32a2326192929",
        "27201f2d352d283025282928ffdb0043010707070a080a130a0a13281a161a2828282828282808282828282828282801",
        "0000022828282828282828284028282828282828282828280028282822282828282828ffc0001108100002fe03012200",
        "021101031101ffc400160001010100000000000000000000000000000607ffc400161000030000000000000000000000",
        "000000001461ffc40014010100000000000000000000000000000006ffc4001611000300000000000000000000000000",
        "00001662ffda000c03010002110311003f00cadca1ca4f374b0100000100010000ffdb00430006040506050400000000",
        "0000000000005c5c5c5c8080808080808080808080808080808080808080808080808080802880808080808080808000",
        "0600000000870000ffe000104a46494600010100000100010000ffdb0043000604050605004300060405060504060605",
        "0607070608100a0a0a09090a140e0f0c1017141818171416161a0000000000000000000000000000000000001d251fec",
        "e4dce3e9e9dfd32a232619292927201f2d342d283025282928ffdb0043010707070a080a130a0a13281a161a28282828",
        "282828082828282828282828010000022828282828280000000000000000000000000000001461ffc48923d73a3fffd9",
    ]);
    assert_eq!(bytes.len(), 624);
    refused_as_cut_short(&bytes, FileKind::Jpeg);
}

/// The same shape taken to the limit: a complete 16×16 JPEG whose frame header is patched
/// to announce 12000×4166 (just under 50 megapixels) — 150 MB of pixels and a full fit for
/// a few hundred bytes, accepted as a grey picture before the fix.
#[test]
fn a_small_jpeg_announcing_fifty_megapixels_is_refused() {
    let mut bytes = common::jpeg(&common::form_photo(16, 16, 4, 3), 16, 16, 80);
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    bytes[sof + 5..sof + 7].copy_from_slice(&4166u16.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&12000u16.to_be_bytes());
    refused_as_cut_short(&bytes, FileKind::Jpeg);
}

/// A 69-byte PNG announcing 7000×7000 grey pixels (under the pixel limit): the decoder took
/// 49 MB for its output before finding the data missing. Now refused before that.
#[test]
fn a_small_png_announcing_49_megapixels_is_refused() {
    let bytes = common::png_bomb_header(7000, 7000);
    assert!(bytes.len() < 100);
    refused_as_cut_short(&bytes, FileKind::Png);
}

/// The bound never refuses a real file: the most compressible pictures there are (all
/// white, 12 megapixels) still fit.
#[test]
fn the_most_compressible_real_pictures_still_fit() {
    let (w, h) = (4032u32, 3024u32);
    let white = vec![255u8; (w * h * 3) as usize];
    let jpeg = common::jpeg(&white, w, h, 60);
    assert!(fit(&jpeg, MB).is_ok());
    let grey = vec![255u8; (w * h) as usize];
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Best, PngFilter::NoFilter)
        .write_image(&grey, w, h, ExtendedColorType::L8)
        .unwrap();
    // Deflate at its best: several hundred pixels a byte.
    assert!(u64::from(w * h) / png.len() as u64 > 500, "{}", png.len());
    assert_eq!(probe(&png).unwrap().width, w);
    assert!(fit(&png, MB).is_ok());
}

/// Found by the fuzzer (a crash): a 734-byte JPEG of 16×11280 pixels. Bringing its long
/// side down to 2480 asked the resizer for source rows 0 to 2480 × (11280 / 2480), which in
/// floating point is a hair over 11280: "crop box out of the image boundaries", and `fit`
/// answered `Internal` (“图片处理出错”). Fixed in `resize`: a band's source rows are
/// clamped to the source.
#[test]
fn fuzz_jpeg_734_bytes_16x11280_resizes() {
    let bytes = unhex(&[
        "ffd8ffe10022457869660000000000000000000000000000000044aeffffff484300ff00000000000000000000000000",
        "000000000000000000000000000000ffffffffffffffff00000000002627292a29191f0d09302d283025282928ffdb00",
        "0200000000000080130a0a1300013012000300000001000600000000dd0000ffe000104a464946000101000001000000",
        "000000000d0000000000000000006e732e61646f62652e636f6d2f7861702f312e302f0000010000ffe000104a464946",
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000010100000100010000ffdb0043003f040506050406060506070706080aa110",
        "0a0a09090a140e0f0c1017141818171416161a0000000000000002000000ffffffffffffffff00060504060605060707",
        "06080a100a0a09090a140e0f0c1017141818171416161a00000000000000000000000000000d00000000000000000000",
        "0000000000000020000000001000001d251fece4dce3f1e9dfd320232627292a29191f2d302d283025282928ffdb0043",
        "010707070a080ab10a0a13281a161a2828687474703a2f2f6e732e61646f62652e636f6d2f7861702f312e302f002828",
        "28282828282828280028282822282828282828ffc00011082c10001003012200021101031101ffc40016000101010000",
        "0000000000000000000000000607ffc400161000030000000000000000000000000000001461ffc40014010100000000",
        "000000000000000000000006ffc4001611000300000000000000000000000000005dfd1662ffda000c03010002110311",
        "003f00cadca1ca4f39430100000100ba03000000f9ff00000000000000000000000000fc000000030000000000000000",
        "0000000000000000000000000000000000000000000000000000000000001662ffda000c03010002110311003f00cadc",
        "a1ca4f946089d73043233a3fffd9",
    ]);
    assert_eq!(bytes.len(), 734);
    assert_eq!(
        (probe(&bytes).unwrap().width, probe(&bytes).unwrap().height),
        (16, 11280)
    );
    match fit(&bytes, MB) {
        Ok(fitted) => assert_eq!((fitted.width, fitted.height), (4, 2480)),
        Err(e) => assert_eq!(e.code(), "ekey.media.corrupt", "{e:?}"),
    }
}

/// The same rounding on an ordinary scan: about one size in twenty-five over the
/// 2480-pixel cap failed this way, e.g. 2481×1335 (resized in two halves).
#[test]
fn scans_of_any_size_over_the_cap_are_resized() {
    for (w, h) in [(2481u32, 1335u32), (2481, 1920), (1335, 2481)] {
        let bytes = common::jpeg(&common::form_photo(w, h, 4, 11), w, h, 85);
        let fitted = fit(&bytes, MB).unwrap_or_else(|e| panic!("{w}×{h}: {e:?}"));
        assert_eq!(fitted.width.max(fitted.height), 2480, "{w}×{h}");
    }
}

//! Decoding and downscaling uploaded photos (`PUT …/materials/{item}?fit=1`): any bytes are
//! probed and fitted or refused with an error. A decompression bomb or an absurd size must
//! be refused from the header: `scripts/fuzz-smoke` runs this target with a malloc limit,
//! so an allocation the limits should have prevented counts as a crash.
#![no_main]

use ekey_domain::upload::FileKind;
use ekey_media::{MAX_PIXELS, MAX_SIDE, MediaError, fit, probe};
use libfuzzer_sys::fuzz_target;

/// The limits `fit` is called with: a material slot, an unlock scan, and one small enough
/// that most pictures must be scaled down (or cannot fit).
const LIMITS: [u64; 3] = [1024 * 1024, 200 * 1024, 3000];

fuzz_target!(|data: &[u8]| {
    let info = probe(data);
    if let Ok(info) = &info {
        assert!(info.width <= MAX_SIDE && info.height <= MAX_SIDE);
        assert!(u64::from(info.width) * u64::from(info.height) <= MAX_PIXELS);
        assert!((1..=8).contains(&info.orientation));
        // No more pixels than the file can hold (a JPEG codes every 8×8 block in at least
        // a bit, deflate expands at most 1032 times), twice over: else it is a bomb.
        let per_byte = match info.kind {
            FileKind::Jpeg => 2 * 512,
            _ => 2 * 8 * 1032,
        };
        assert!(u64::from(info.width) * u64::from(info.height) <= data.len() as u64 * per_byte);
    }
    let limit = LIMITS[data.len() % LIMITS.len()];
    match fit(data, limit) {
        Ok(fitted) => {
            let info = info.expect("fit accepted what probe refused");
            assert!(fitted.after <= limit && fitted.after == fitted.bytes.len() as u64);
            assert_eq!(
                (fitted.original_width, fitted.original_height),
                info.upright_dimensions()
            );
            // The output is a plain upright JPEG of the size it claims.
            let out = probe(&fitted.bytes).expect("fit made an unreadable JPEG");
            assert_eq!(out.kind, FileKind::Jpeg);
            assert_eq!((out.width, out.height), (fitted.width, fitted.height));
            assert_eq!(out.orientation, 1);
        }
        Err(MediaError::Internal(detail)) => panic!("internal error: {detail}"),
        Err(e) => {
            assert!(e.code().starts_with("ekey.media."));
            if let Err(p) = &info {
                // Both read the same header: a refusal there is the same refusal here.
                assert_eq!(p.code(), e.code());
            }
        }
    }
});

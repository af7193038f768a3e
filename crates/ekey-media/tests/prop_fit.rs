//! `fit` on pictures of any size over the 2480-pixel cap, fitted under a roomy and a tight
//! limit (which makes it scale down further): always a picture of the expected shape,
//! never an `Internal` error. The rounding of band boundaries in the resizer made about one
//! size in twenty-five fail before (see `fuzz_regressions.rs`).

mod common;

use ekey_media::{MIN_LONG_SIDE, MediaError, fit};
use image::ExtendedColorType;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_size_over_the_cap_fits_in_shape(
        long in 2481u32..3600,
        short in 1u32..3600,
        wide in any::<bool>(),
        tight in any::<bool>(),
    ) {
        let short = short.min(long);
        let (w, h) = if wide { (long, short) } else { (short, long) };
        // A grey scan with some texture, as PNG (so that nothing is lost before `fit`).
        let rgb = common::form_photo(w, h, 6, u64::from(w * 31 + h));
        let grey: Vec<u8> = rgb.chunks_exact(3).map(|p| p[1]).collect();
        let png = common::png(&grey, w, h, ExtendedColorType::L8);
        let limit = if tight { 60 * 1024 } else { 1024 * 1024 };
        match fit(&png, limit) {
            Ok(fitted) => {
                prop_assert!(fitted.after <= limit);
                let out_long = fitted.width.max(fitted.height);
                prop_assert!((MIN_LONG_SIDE..=2480).contains(&out_long), "{}×{}", fitted.width, fitted.height);
                prop_assert_eq!(fitted.width >= fitted.height, w >= h);
                // The aspect ratio is kept, to a pixel of rounding.
                let expected_short = f64::from(w.min(h)) * f64::from(out_long) / f64::from(long);
                let out_short = f64::from(fitted.width.min(fitted.height));
                prop_assert!((out_short - expected_short.max(1.0)).abs() <= 1.0,
                    "{}×{} from {}×{}", fitted.width, fitted.height, w, h);
            }
            Err(MediaError::CannotFit { .. }) => prop_assert!(tight),
            Err(e) => prop_assert!(false, "{}×{}: {:?}", w, h, e),
        }
    }
}

//! Previews for the staff's screens: made by the server at a safe size, upright, without
//! metadata, and never from a decompression bomb.

mod common;

use ekey_media::{MediaError, PREVIEW_LONG_SIDE, preview};

fn dimensions(jpeg: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg).unwrap();
    (img.width(), img.height())
}

#[test]
fn a_big_photo_is_previewed_upright_at_a_safe_size() {
    // Stored 3000×2000 with EXIF orientation 6 (turn 90°): displayed 2000×3000.
    let data = common::form_photo(3000, 2000, 4, 3);
    let photo = common::jpeg_with_app1(&data, 3000, 2000, 90, Some(common::exif_orientation(6)));
    let out = preview(&photo).unwrap();
    assert_eq!(dimensions(&out), (1067, PREVIEW_LONG_SIDE));
    assert!(!common::has_exif(&out), "no metadata in the preview");
    assert!(out.len() < photo.len());
}

#[test]
fn a_small_picture_keeps_its_size() {
    let data = common::form_photo(640, 480, 4, 5);
    let png = common::png(&data, 640, 480, image::ExtendedColorType::Rgb8);
    assert_eq!(dimensions(&preview(&png).unwrap()), (640, 480));
}

#[test]
fn bombs_and_pdfs_get_no_preview() {
    let bomb = common::png_bomb_header(30_000, 30_000);
    assert!(matches!(
        preview(&bomb),
        Err(MediaError::TooManyPixels { .. })
    ));
    assert_eq!(
        preview(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n"),
        Err(MediaError::Pdf)
    );
}

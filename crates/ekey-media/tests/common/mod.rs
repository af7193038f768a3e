//! Test pictures made in code: phone photos of printed forms, PNGs with transparency, EXIF
//! blocks. Shared by the integration tests and the benchmark (`#[path]`-included).
#![allow(dead_code)]

use jpeg_encoder::{ColorType, Encoder};

/// A small deterministic generator (xorshift64*), so every run sees the same pictures.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// RGB pixels of a photographed form: paper lit unevenly, sensor noise, lines of
/// high-contrast "print" and a red stamp. `noise` is the noise amplitude (± levels).
pub fn form_photo(width: u32, height: u32, noise: u8, seed: u64) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut rng = Rng::new(seed);
    let mut data = vec![0u8; w * h * 3];
    let line_pitch = (h / 60).max(8);
    let stroke = (line_pitch / 6).max(1);
    let (cx, cy, r) = (w as i64 * 3 / 4, h as i64 * 4 / 5, (w.min(h) / 8) as i64);
    let span = u64::from(noise) * 2 + 1;
    for y in 0..h {
        // Each text line is a row of "words": dark runs with gaps, like print.
        let in_line = y % line_pitch < stroke && y > h / 12 && y < h * 11 / 12;
        let word_seed = (y / line_pitch) as u64;
        for x in 0..w {
            let i = (y * w + x) * 3;
            // Paper: brighter in the middle, darker at the corners (vignetting).
            let dx = x as i64 - w as i64 / 2;
            let dy = y as i64 - h as i64 / 2;
            let d = ((dx * dx + dy * dy) * 40 / (w as i64 * w as i64 / 4 + 1)) as i32;
            let mut rgb = [225 - d, 222 - d, 212 - d];
            let word = ((x / 37) as u64).wrapping_mul(2654435761) ^ word_seed.wrapping_mul(97);
            let margin = x > w / 12 && x < w * 11 / 12;
            if in_line && margin && !word.is_multiple_of(5) {
                rgb = [35, 35, 45];
            }
            // Vertical strokes: table rules every eighth of the width.
            if x % (w / 8).max(1) < stroke && y > h / 12 && y < h * 11 / 12 {
                rgb = [30, 30, 30];
            }
            // The stamp: a red ring.
            let (sx, sy) = (x as i64 - cx, y as i64 - cy);
            let rr = sx * sx + sy * sy;
            if rr < r * r && rr > (r - r / 10) * (r - r / 10) {
                rgb = [200, 30, 40];
            }
            let n = (rng.next() % span) as i32 - i32::from(noise);
            for c in 0..3 {
                // Luminance noise mostly, a little colour noise.
                let chroma = ((rng.next() >> 40) % 7) as i32 - 3;
                data[i + c] = (rgb[c] + n + chroma).clamp(0, 255) as u8;
            }
        }
    }
    data
}

/// Encodes RGB pixels as a JPEG (quality ≥ 90 keeps full chroma, like phone cameras).
pub fn jpeg(data: &[u8], width: u32, height: u32, quality: u8) -> Vec<u8> {
    jpeg_with_app1(data, width, height, quality, None)
}

/// Encodes RGB pixels as a JPEG with an APP1 segment (the bytes after the length).
pub fn jpeg_with_app1(
    data: &[u8],
    width: u32,
    height: u32,
    quality: u8,
    app1: Option<Vec<u8>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, quality);
    if let Some(app1) = app1 {
        encoder.add_app_segment(1, app1).unwrap();
    }
    encoder
        .encode(data, width as u16, height as u16, ColorType::Rgb)
        .unwrap();
    out
}

/// The 4032×3024 photo of a form a phone takes (12 megapixels, quality 90, about 4 MB).
pub fn phone_photo() -> Vec<u8> {
    let (w, h) = PHONE;
    jpeg(&form_photo(w, h, PHONE_NOISE, 7), w, h, 90)
}

/// Size of [`phone_photo`].
pub const PHONE: (u32, u32) = (4032, 3024);
/// Noise of [`phone_photo`], tuned so that it encodes to about 4 MB.
pub const PHONE_NOISE: u8 = 10;

/// An EXIF block (the APP1 payload: `Exif\0\0` and a big-endian TIFF structure) whose only
/// entry is the orientation.
pub fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut b = b"Exif\0\0".to_vec();
    // TIFF header: big-endian, magic 42, first IFD at offset 8.
    b.extend_from_slice(b"MM\0\x2A\0\0\0\x08");
    // IFD0 with one entry: tag 0x0112 (Orientation), type 3 (SHORT), count 1, the value in
    // the first two bytes of the four-byte value field.
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&0x0112u16.to_be_bytes());
    b.extend_from_slice(&3u16.to_be_bytes());
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&orientation.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    // No next IFD.
    b.extend_from_slice(&0u32.to_be_bytes());
    b
}

/// Whether a JPEG holds an EXIF block (an APP1 segment starting `Exif\0\0`).
pub fn has_exif(jpeg: &[u8]) -> bool {
    jpeg.windows(4 + 6)
        .any(|w| w[0] == 0xFF && w[1] == 0xE1 && &w[4..] == b"Exif\0\0")
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A tiny PNG whose header announces `width`×`height` grey pixels but whose data is a
/// few bytes: the shape of a decompression bomb.
pub fn png_bomb_header(width: u32, height: u32) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // An empty zlib stream (one final stored block of length 0), adler32 of nothing = 1.
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0, 0, 0, 1],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Encodes pixels as a PNG with the `image` crate.
pub fn png(data: &[u8], width: u32, height: u32, color: image::ExtendedColorType) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(data, width, height, color)
        .unwrap();
    out
}

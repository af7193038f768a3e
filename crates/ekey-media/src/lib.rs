//! Fitting an uploaded scan under a size limit.
//!
//! Enterprise clerks photograph signed and stamped forms with their phones; a 4032×3024
//! photo is 3–5 MB while a material slot takes at most 1 MB (200 KB for an unlock scan).
//! [`fit`] turns such a JPEG or PNG into a JPEG no larger than the limit that still reads
//! well:
//!
//! * the long side is first brought down to at most [`MAX_LONG_SIDE`] pixels (an A4 page
//!   at 300 dpi), which keeps small print legible;
//! * then the JPEG quality is chosen, from [`QUALITY_MAX`] down to [`QUALITY_MIN`];
//! * only when even the lowest quality is too big is the picture scaled down further, never
//!   below a long side of [`MIN_LONG_SIDE`] pixels (then [`MediaError::CannotFit`]).
//!
//! Sizes are predicted rather than found by trial: encoding a stratified sample of the
//! picture (every n-th band of 16 rows, about a seventh of it) costs a fraction of a full
//! encode and predicts the full size within a few per cent, so the common case needs one
//! full encode (two when a prediction misses). The quality for a size follows from a fit
//! of size ≈ A·(100 − q)^−β through two sampled qualities; the scale from size ≈ c·long^γ,
//! γ learnt as the picture shrinks. Big pictures are resized and encoded in two halves on
//! two threads (the JPEG halves joined by a restart marker), with the same result as in one
//! piece.
//!
//! The output is baseline JPEG, 4:2:0 with averaged chroma (red stamps keep clean edges)
//! and the standard Huffman tables: what every reader decodes.
//!
//! The output is always upright (the EXIF orientation is applied to the pixels), carries
//! no EXIF or other metadata (no GPS position, no camera details), and transparency is
//! laid over white. The type of the input is read from its bytes by
//! [`ekey_domain::upload::detect`]; PDFs cannot be downscaled here.
//!
//! Decompression bombs are refused from the header, before any pixel memory is taken:
//! at most [`MAX_SIDE`] pixels a side and [`MAX_PIXELS`] pixels in all, and no more pixels
//! than the file's size can hold (a few hundred bytes announcing megapixels are a file cut
//! short, or a bomb: [`MediaError::Corrupt`]).

use std::borrow::Cow;
use std::io::Cursor;

use ekey_domain::Lang;
use ekey_domain::upload::{self, FileKind, UploadError};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use jpeg_encoder::{ChromaSubsamplingMethod, ColorType, Encoder, SamplingFactor};

/// The longest side, in pixels, the output starts from: A4 (297 mm) at 300 dpi.
pub const MAX_LONG_SIDE: u32 = 2480;
/// The shortest long side, in pixels, the output may be scaled down to; below it a form
/// is no longer legible and [`MediaError::CannotFit`] is returned instead.
pub const MIN_LONG_SIDE: u32 = 800;
/// The JPEG quality tried first.
pub const QUALITY_MAX: u8 = 85;
/// The lowest JPEG quality used before the picture is scaled down further.
pub const QUALITY_MIN: u8 = 60;
/// The largest width or height accepted, in pixels.
pub const MAX_SIDE: u32 = 12_000;
/// The largest number of pixels accepted (a 48-megapixel phone photo passes).
pub const MAX_PIXELS: u64 = 50_000_000;

/// The most memory the decoders may take, in bytes (50 megapixels of 16-bit RGBA).
const MAX_ALLOC: u64 = 512 * 1024 * 1024;
/// Predictions aim this far under the limit, so that a slightly optimistic one still fits.
const TARGET_SHARE: f64 = 0.96;
/// Rows per sampled band: one row of 4:2:0 MCUs.
const BAND: u32 = 16;
/// Roughly how many bands a sample holds; a picture with fewer than twice as many is
/// encoded whole instead.
const SAMPLE_BANDS: u32 = 16;
/// The bytes of a JPEG that do not grow with the picture (markers, tables), for scaling a
/// sample's size up to the whole picture.
const HEADER_BYTES: f64 = 620.0;
/// Pictures from this many output pixels on are resized and encoded on two threads.
const PARALLEL_PIXELS: u64 = 1_000_000;
/// A bound on fitting rounds; each round lowers the quality or the size, so it is never
/// reached in practice.
const MAX_ROUNDS: u32 = 64;

/// A picture fitted under a size limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fitted {
    /// The JPEG file: upright, no metadata.
    pub bytes: Vec<u8>,
    /// The size of the input, in bytes.
    pub before: u64,
    /// The size of the output (`bytes.len()`), at most the limit.
    pub after: u64,
    /// The output width, in pixels.
    pub width: u32,
    /// The output height, in pixels.
    pub height: u32,
    /// The input width as displayed (after its EXIF orientation), in pixels.
    pub original_width: u32,
    /// The input height as displayed (after its EXIF orientation), in pixels.
    pub original_height: u32,
    /// The JPEG quality of the output, [`QUALITY_MIN`] to [`QUALITY_MAX`].
    pub quality: u8,
}

/// What an image file holds, read from its header only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// JPEG or PNG.
    pub kind: FileKind,
    /// The stored width, in pixels (before the orientation is applied).
    pub width: u32,
    /// The stored height, in pixels (before the orientation is applied).
    pub height: u32,
    /// The EXIF orientation, 1 (upright) to 8; 1 when there is none.
    pub orientation: u8,
}

impl ImageInfo {
    /// The width and height as displayed, after the orientation is applied.
    pub fn upright_dimensions(&self) -> (u32, u32) {
        if swaps_axes(self.orientation) {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// An uploaded file cannot be fitted under its limit.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaError {
    /// The content is neither a JPEG nor a PNG image (or the file is empty).
    #[error("not a JPEG or PNG image")]
    NotImage,
    /// The content is a PDF, which cannot be downscaled here: the user must export or scan
    /// a smaller one.
    #[error("a PDF cannot be made smaller automatically")]
    Pdf,
    /// The image is cut short or damaged and cannot be decoded.
    #[error("{} image is damaged or incomplete: {detail}", kind.label())]
    Corrupt {
        /// What the file claims to be.
        kind: FileKind,
        /// What is wrong, for logs.
        detail: String,
    },
    /// The header announces more pixels than [`MAX_SIDE`] or [`MAX_PIXELS`] allow (a
    /// decompression bomb, or a photo of absurd resolution). Nothing was decoded.
    #[error("image too large: {width}×{height} pixels")]
    TooManyPixels {
        /// The announced width.
        width: u32,
        /// The announced height.
        height: u32,
    },
    /// Even at quality [`QUALITY_MIN`] and a long side of [`MIN_LONG_SIDE`] pixels (or the
    /// picture's own size, when smaller) the JPEG is larger than the limit.
    #[error("cannot fit under {limit} bytes: {smallest} bytes at {width}×{height}")]
    CannotFit {
        /// The limit, in bytes.
        limit: u64,
        /// The smallest size reached (or, when nothing was encoded whole, predicted), in
        /// bytes.
        smallest: u64,
        /// The width of that smallest attempt.
        width: u32,
        /// The height of that smallest attempt.
        height: u32,
    },
    /// The resizer or the encoder failed on data this crate prepared itself; a bug.
    #[error("internal image processing error: {0}")]
    Internal(String),
}

impl MediaError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::NotImage | MediaError::Pdf => "ekey.media.not_image",
            MediaError::Corrupt { .. } => "ekey.media.corrupt",
            MediaError::TooManyPixels { .. } => "ekey.media.too_many_pixels",
            MediaError::CannotFit { .. } => "ekey.media.cannot_fit",
            MediaError::Internal(_) => "ekey.media.internal",
        }
    }

    /// A sentence for the person who uploaded the file.
    pub fn message(&self, lang: Lang) -> String {
        let zh = lang == Lang::Zh;
        match self {
            MediaError::NotImage => lang
                .pick(
                    "只能自动压缩 JPEG 或 PNG 图片：请上传扫描件或拍照的图片",
                    "Only JPEG or PNG images can be made smaller automatically; please upload a scan or photo",
                )
                .into(),
            MediaError::Pdf => lang
                .pick(
                    "PDF 文件无法自动压缩：请降低扫描分辨率（如 150–200 dpi）重新扫描，或导出较小的 PDF 后上传",
                    "A PDF cannot be made smaller automatically; please rescan at a lower resolution (e.g. 150–200 dpi) or export a smaller PDF",
                )
                .into(),
            MediaError::Corrupt { kind, .. } => {
                if zh {
                    format!(
                        "图片已损坏或不完整（{}），无法读取：请重新拍照或扫描后上传",
                        kind.label()
                    )
                } else {
                    format!(
                        "The {} image is damaged or incomplete and cannot be read; please take the photo or scan again",
                        kind.label()
                    )
                }
            }
            MediaError::TooManyPixels { width, height } => {
                if zh {
                    format!(
                        "图片像素过多（{width}×{height}），无法处理：请以较低分辨率重新拍照或扫描（每边不超过 {MAX_SIDE} 像素，总计不超过 5000 万像素）"
                    )
                } else {
                    format!(
                        "The image has too many pixels ({width}×{height}); please take the photo or scan again at a lower resolution (at most {MAX_SIDE} pixels a side, 50 megapixels in all)"
                    )
                }
            }
            MediaError::CannotFit { limit, .. } => {
                let limit = upload::human_size(*limit, lang);
                if zh {
                    format!(
                        "图片无法压缩到 {limit} 以内而不影响清晰度：请以较低分辨率重新扫描，或裁掉空白边缘后上传"
                    )
                } else {
                    format!(
                        "The image cannot be brought under {limit} and stay legible; please rescan at a lower resolution or crop the blank margins"
                    )
                }
            }
            MediaError::Internal(_) => lang
                .pick(
                    "图片处理出错，请稍后重试；如仍失败请联系客服",
                    "The image could not be processed; please try again later, and contact support if it keeps failing",
                )
                .into(),
        }
    }
}

/// Reads what an image file is from its header, without decoding its pixels.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, MediaError> {
    let kind = sniff(bytes)?;
    let mut decoder = open(bytes, kind)?;
    let (width, height) = decoder.dimensions();
    // As in `fit`: a damaged EXIF block counts as no orientation.
    let orientation = decoder
        .orientation()
        .unwrap_or(Orientation::NoTransforms)
        .to_exif();
    Ok(ImageInfo {
        kind,
        width,
        height,
        orientation,
    })
}

/// Turns a JPEG or PNG into an upright JPEG without metadata of at most `limit` bytes
/// (see the crate documentation for how). An image already under the limit is re-encoded
/// too (which strips its metadata); callers that want to keep such a file as it is should
/// not call this.
///
/// CPU-bound: about 0.12–0.15 s for a 12-megapixel photo, on up to two threads (big
/// pictures are resized and encoded in two halves), and 4–8 bytes of memory per input
/// pixel (about 70 MB at the peak for a 12-megapixel JPEG). Call it from a blocking
/// context (`tokio::task::spawn_blocking`), not on an async executor thread.
pub fn fit(bytes: &[u8], limit: u64) -> Result<Fitted, MediaError> {
    let kind = sniff(bytes)?;
    let (raster, orientation) = decode(bytes, kind)?;
    let (original_width, original_height) = if swaps_axes(orientation.to_exif()) {
        (raster.height, raster.width)
    } else {
        (raster.width, raster.height)
    };

    // Bring the long side down to the cap in the stored orientation (the long side is the
    // same either way), then turn the smaller picture upright.
    let long = raster.long_side();
    let base = if long > MAX_LONG_SIDE {
        let (w, h) = scaled(raster.width, raster.height, MAX_LONG_SIDE);
        resize(&raster, w, h)?
    } else {
        raster
    };
    let base = orient(base, orientation);
    let floor = MIN_LONG_SIDE.min(base.long_side());
    let target = limit as f64 * TARGET_SHARE;

    let mut long = base.long_side();
    let mut ceiling = QUALITY_MAX;
    // Actual size over predicted size, learnt from each full encode.
    let mut correction = 1.0;
    let mut smallest: Option<(u64, u32, u32)> = None;
    let mut shrink = Shrink::default();
    for _ in 0..MAX_ROUNDS {
        let picture = if long == base.long_side() {
            Cow::Borrowed(&base)
        } else {
            let (w, h) = scaled(base.width, base.height, long);
            Cow::Owned(resize(&base, w, h)?)
        };
        let mut predictor = Predictor::new(&picture);
        let (quality, predicted) =
            match choose_quality(&mut predictor, ceiling, target, correction)? {
                Ok(found) => found,
                Err(at_min) => {
                    // Too big even at the lowest quality: scale down.
                    if long <= floor {
                        return Err(cannot_fit(limit, smallest, at_min, &picture));
                    }
                    long = shrink.next(long, at_min, target, floor);
                    ceiling = QUALITY_MIN;
                    continue;
                }
            };
        let jpeg = predictor.full(quality)?;
        let after = jpeg.len() as u64;
        if after <= limit {
            return Ok(Fitted {
                bytes: jpeg,
                before: bytes.len() as u64,
                after,
                width: picture.width,
                height: picture.height,
                original_width,
                original_height,
                quality,
            });
        }
        // The prediction was optimistic: learn by how much, then try again just below.
        if smallest.is_none_or(|(s, _, _)| after < s) {
            smallest = Some((after, picture.width, picture.height));
        }
        correction = after as f64 / predicted;
        if quality > QUALITY_MIN {
            ceiling = quality - 1;
        } else if long <= floor {
            return Err(cannot_fit(limit, smallest, after as f64, &picture));
        } else {
            long = shrink.next(long, after as f64, target, floor);
        }
    }
    Err(MediaError::Internal("fitting did not converge".into()))
}

/// The longest side, in pixels, of a [`preview`]: enough to read a form on a screen, small
/// enough (under 3 megapixels) that no reviewer's browser has to decode a giant.
pub const PREVIEW_LONG_SIDE: u32 = 1600;

/// The JPEG quality of a [`preview`].
const PREVIEW_QUALITY: u8 = 80;

/// A picture for the staff's screens, made by the server: the image upright, its long side
/// at most [`PREVIEW_LONG_SIDE`] pixels, as a baseline JPEG without metadata. The same
/// header checks as [`fit`] (no decompression bombs); CPU-bound like it.
pub fn preview(bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    let kind = sniff(bytes)?;
    let (raster, orientation) = decode(bytes, kind)?;
    let picture = if raster.long_side() > PREVIEW_LONG_SIDE {
        let (w, h) = scaled(raster.width, raster.height, PREVIEW_LONG_SIDE);
        resize(&raster, w, h)?
    } else {
        raster
    };
    encode(&orient(picture, orientation), PREVIEW_QUALITY)
}

/// Picks the next long side when a picture is too big at the lowest quality.
#[derive(Default)]
struct Shrink {
    /// The previous long side and the size at the lowest quality there.
    last: Option<(u32, f64)>,
}

impl Shrink {
    /// The long side at which `size` (at `long`) should come down to `target`: JPEG size
    /// goes about as `long^γ`, γ ≈ 1.6 for photos of paper (less than 2, as detail gets
    /// denser when the picture shrinks), learnt from the last two sides when there are.
    fn next(&mut self, long: u32, size: f64, target: f64, floor: u32) -> u32 {
        let gamma = match self.last {
            Some((l0, s0)) if l0 > long && s0 > size => {
                ((s0 / size).ln() / (f64::from(l0) / f64::from(long)).ln()).clamp(1.0, 2.2)
            }
            _ => 1.6,
        };
        self.last = Some((long, size));
        let factor = (target / size).powf(1.0 / gamma).clamp(0.3, 0.97);
        ((f64::from(long) * factor) as u32).clamp(floor, long - 1)
    }
}

fn cannot_fit(
    limit: u64,
    smallest: Option<(u64, u32, u32)>,
    predicted: f64,
    picture: &Raster,
) -> MediaError {
    let (smallest, width, height) =
        smallest.unwrap_or((predicted.round() as u64, picture.width, picture.height));
    MediaError::CannotFit {
        limit,
        smallest,
        width,
        height,
    }
}

/// The highest quality from `ceiling` down to [`QUALITY_MIN`] whose predicted size is at
/// most `target`, with that prediction (divided by `correction`, i.e. as the predictor
/// said); or, when none is, the predicted size at [`QUALITY_MIN`] (corrected).
fn choose_quality(
    predictor: &mut Predictor,
    ceiling: u8,
    target: f64,
    correction: f64,
) -> Result<Result<(u8, f64), f64>, MediaError> {
    let mut predict = |q: u8| predictor.predict(q).map(|p| (p, p * correction));
    let (raw_top, top) = predict(ceiling)?;
    if top <= target {
        return Ok(Ok((ceiling, raw_top)));
    }
    if ceiling <= QUALITY_MIN {
        return Ok(Err(top));
    }
    let (raw_bottom, bottom) = predict(QUALITY_MIN)?;
    if bottom > target {
        return Ok(Err(bottom));
    }
    // Size against quality follows size ≈ A·(100 − q)^−β closely between 60 and 90: fit it
    // through the two ends and solve for the target.
    let span = f64::from(100 - QUALITY_MIN);
    let beta = (top / bottom).ln() / (span / f64::from(100 - ceiling)).ln();
    let mut q = if beta > 0.0 {
        let q = 100.0 - span * (bottom / target).powf(1.0 / beta);
        (q.floor() as u8).clamp(QUALITY_MIN, ceiling - 1)
    } else {
        QUALITY_MIN
    };
    while q > QUALITY_MIN {
        let (raw, p) = predict(q)?;
        if p <= target {
            return Ok(Ok((q, raw)));
        }
        // Step down by what the miss says, at least one.
        let miss = (p / target).ln();
        let step = ((miss / (beta.max(0.5) / f64::from(100 - q))).ceil() as u8).max(1);
        q = q.saturating_sub(step).max(QUALITY_MIN);
    }
    Ok(Ok((QUALITY_MIN, raw_bottom)))
}

/// Predicts the JPEG size of a picture at a quality from a stratified sample of its rows,
/// or encodes it whole when it is small.
struct Predictor<'a> {
    picture: &'a Raster,
    /// The sample and how many times more rows the picture has; `None` when the picture
    /// is encoded whole.
    sample: Option<(Raster, f64)>,
    /// The last whole encode, by quality, so that choosing it does not encode twice.
    last_full: Option<(u8, Vec<u8>)>,
}

impl<'a> Predictor<'a> {
    fn new(picture: &'a Raster) -> Self {
        let bands = picture.height / BAND;
        let sample = if bands >= 2 * SAMPLE_BANDS {
            let stride = bands / SAMPLE_BANDS;
            let row = picture.row_bytes();
            let band = BAND as usize * row;
            let mut data = Vec::with_capacity(SAMPLE_BANDS as usize * band);
            let mut rows = 0;
            // Start mid-stride so that the sample is centred, not stuck to the top edge.
            let mut b = stride / 2;
            while b < bands {
                let start = b as usize * band;
                data.extend_from_slice(&picture.data[start..start + band]);
                rows += BAND;
                b += stride;
            }
            let ratio = f64::from(picture.height) / f64::from(rows);
            let raster = Raster {
                data,
                width: picture.width,
                height: rows,
                channels: picture.channels,
            };
            Some((raster, ratio))
        } else {
            None
        };
        Predictor {
            picture,
            sample,
            last_full: None,
        }
    }

    fn predict(&mut self, quality: u8) -> Result<f64, MediaError> {
        match &self.sample {
            Some((sample, ratio)) => {
                let len = encode(sample, quality)?.len() as f64;
                Ok((len - HEADER_BYTES).max(0.0) * ratio + HEADER_BYTES)
            }
            None => {
                #[cfg(test)]
                tests::count_full_encode();
                let jpeg = encode(self.picture, quality)?;
                let len = jpeg.len() as f64;
                self.last_full = Some((quality, jpeg));
                Ok(len)
            }
        }
    }

    fn full(&mut self, quality: u8) -> Result<Vec<u8>, MediaError> {
        match self.last_full.take() {
            Some((q, jpeg)) if q == quality => Ok(jpeg),
            _ => {
                #[cfg(test)]
                tests::count_full_encode();
                encode(self.picture, quality)
            }
        }
    }
}

/// 8-bit pixels, grey (1 channel) or RGB (3 channels), rows packed.
#[derive(Clone)]
struct Raster {
    data: Vec<u8>,
    width: u32,
    height: u32,
    channels: u8,
}

impl Raster {
    fn long_side(&self) -> u32 {
        self.width.max(self.height)
    }

    fn row_bytes(&self) -> usize {
        self.width as usize * usize::from(self.channels)
    }

    fn pixel_type(&self) -> PixelType {
        if self.channels == 1 {
            PixelType::U8
        } else {
            PixelType::U8x3
        }
    }
}

/// The kind of an image file; PDFs and anything else are refused.
fn sniff(bytes: &[u8]) -> Result<FileKind, MediaError> {
    match upload::detect(bytes) {
        Ok(FileKind::Pdf) => Err(MediaError::Pdf),
        Ok(kind) => Ok(kind),
        Err(UploadError::Incomplete {
            kind: FileKind::Pdf,
        }) => Err(MediaError::Pdf),
        Err(UploadError::Incomplete { kind }) => Err(MediaError::Corrupt {
            kind,
            detail: "the file is cut short (no end marker)".into(),
        }),
        Err(_) => Err(MediaError::NotImage),
    }
}

fn corrupt(kind: FileKind, error: &image::ImageError) -> MediaError {
    MediaError::Corrupt {
        kind,
        detail: error.to_string(),
    }
}

/// The most pixels a complete file of `kind` can hold per byte of it, with a margin of two.
/// A JPEG codes every 8×8 block of its full-resolution component in at least one bit (at
/// most 512 pixels a byte). A PNG's deflate stream expands at most 1032 times, and a pixel
/// takes at least an eighth of a byte (1-bit grey): at most about 8,300 pixels a byte. Real
/// scans and photos hold far fewer (a blank white 12-megapixel JPEG: about 60).
fn max_pixels_per_byte(kind: FileKind) -> u64 {
    match kind {
        FileKind::Jpeg => 2 * 512,
        FileKind::Png | FileKind::Pdf => 2 * 8 * 1032,
    }
}

/// A decoder that has read the header and checked the announced size, and has taken no
/// pixel memory yet.
fn open(bytes: &[u8], kind: FileKind) -> Result<impl ImageDecoder + '_, MediaError> {
    let format = match kind {
        FileKind::Jpeg => ImageFormat::Jpeg,
        FileKind::Png => ImageFormat::Png,
        FileKind::Pdf => return Err(MediaError::Pdf),
    };
    // Only the memory cap while reading the header; the dimensions are judged below, so
    // that the error can name them.
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(|e| corrupt(kind, &e))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if width > MAX_SIDE || height > MAX_SIDE || pixels > MAX_PIXELS {
        return Err(MediaError::TooManyPixels { width, height });
    }
    // A file too small to hold the pixels it announces is cut short, or a bomb within the
    // size limits (a few hundred bytes announcing 50 megapixels, which the JPEG decoder
    // would fill in with grey): refused before the decoder takes memory for them.
    let most = (bytes.len() as u64).saturating_mul(max_pixels_per_byte(kind));
    if pixels > most {
        return Err(MediaError::Corrupt {
            kind,
            detail: format!(
                "{} bytes cannot hold {width}×{height} pixels: cut short or damaged",
                bytes.len()
            ),
        });
    }
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    decoder
        .set_limits(limits)
        .map_err(|_| MediaError::TooManyPixels { width, height })?;
    Ok(decoder)
}

/// Decodes to 8-bit grey or RGB (transparency laid over white), with the orientation the
/// file asks for (not yet applied).
fn decode(bytes: &[u8], kind: FileKind) -> Result<(Raster, Orientation), MediaError> {
    let mut decoder = open(bytes, kind)?;
    // A damaged EXIF block is no reason to refuse a readable picture.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(|e| corrupt(kind, &e))?;
    let (width, height) = (image.width(), image.height());
    let (data, channels) = match image {
        DynamicImage::ImageLuma8(b) => (b.into_raw(), 1),
        DynamicImage::ImageRgb8(b) => (b.into_raw(), 3),
        DynamicImage::ImageLumaA8(b) => (flatten(&b.into_raw(), 1), 1),
        DynamicImage::ImageRgba8(b) => (flatten(&b.into_raw(), 3), 3),
        other => {
            let color = other.color();
            match (color.has_color(), color.has_alpha()) {
                (false, false) => (other.to_luma8().into_raw(), 1),
                (true, false) => (other.to_rgb8().into_raw(), 3),
                (false, true) => (flatten(&other.to_luma_alpha8().into_raw(), 1), 1),
                (true, true) => (flatten(&other.to_rgba8().into_raw(), 3), 3),
            }
        }
    };
    let raster = Raster {
        data,
        width,
        height,
        channels,
    };
    Ok((raster, orientation))
}

/// Lays pixels with an alpha channel (after `colors` colour channels) over white.
fn flatten(data: &[u8], colors: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / (colors + 1) * colors);
    for pixel in data.chunks_exact(colors + 1) {
        let alpha = u32::from(pixel[colors]);
        for &c in &pixel[..colors] {
            let v = (u32::from(c) * alpha + 255 * (255 - alpha) + 127) / 255;
            out.push(v as u8);
        }
    }
    out
}

/// Whether an EXIF orientation turns the picture a quarter turn (5 to 8).
fn swaps_axes(orientation: u8) -> bool {
    (5..=8).contains(&orientation)
}

/// Width and height with the long side brought to `long`, keeping the aspect ratio.
fn scaled(width: u32, height: u32, long: u32) -> (u32, u32) {
    let (w, h) = (f64::from(width), f64::from(height));
    let scale = f64::from(long) / w.max(h);
    let side = |v: f64| ((v * scale).round() as u32).max(1);
    if width >= height {
        (long, side(h))
    } else {
        (side(w), long)
    }
}

/// Resizes with Lanczos (which keeps the strokes of small print crisp), the top and bottom
/// halves on two threads for big pictures. Each half maps to its exact band of the source
/// and the filter reads source rows across the cut, so the result is the same as in one
/// piece.
fn resize(src: &Raster, width: u32, height: u32) -> Result<Raster, MediaError> {
    let pixel_type = src.pixel_type();
    let view = ImageRef::new(src.width, src.height, &src.data, pixel_type).map_err(internal)?;
    let row = width as usize * usize::from(src.channels);
    let mut data = vec![0u8; row * height as usize];
    let scale = f64::from(src.height) / f64::from(height);
    let band = |dst: &mut [u8], top: u32, rows: u32| -> Result<(), MediaError> {
        let mut dst = Image::from_slice_u8(width, rows, dst, pixel_type).map_err(internal)?;
        // The band's source rows. In floating point the last band can end a hair past the
        // source's last row (2480 × (11280 / 2480) > 11280), which the resizer refuses.
        let src_top = f64::from(top) * scale;
        let src_rows = (f64::from(rows) * scale).min(f64::from(src.height) - src_top);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .crop(0.0, src_top, f64::from(src.width), src_rows);
        Resizer::new()
            .resize(&view, &mut dst, &options)
            .map_err(internal)
    };
    if u64::from(width) * u64::from(height) < PARALLEL_PIXELS {
        band(&mut data, 0, height)?;
    } else {
        let top_rows = height / 2;
        let (top, bottom) = data.split_at_mut(row * top_rows as usize);
        std::thread::scope(|scope| {
            let lower = scope.spawn(|| band(bottom, top_rows, height - top_rows));
            let upper = band(top, 0, top_rows);
            let lower = lower
                .join()
                .unwrap_or_else(|_| Err(MediaError::Internal("resize thread panicked".into())));
            upper.and(lower)
        })?;
    }
    Ok(Raster {
        data,
        width,
        height,
        channels: src.channels,
    })
}

fn internal(error: impl std::fmt::Display) -> MediaError {
    MediaError::Internal(error.to_string())
}

/// Applies an EXIF orientation to the pixels: turns and flips them so that the picture
/// displays upright without the tag.
fn orient(raster: Raster, orientation: Orientation) -> Raster {
    let exif = orientation.to_exif();
    if exif == 1 {
        return raster;
    }
    let (w, h) = (raster.width as isize, raster.height as isize);
    // Output pixel (x, y) is input pixel number base + x·dx + y·dy.
    let (base, dx, dy) = match exif {
        2 => (w - 1, -1, w),                // mirror
        3 => ((h - 1) * w + w - 1, -1, -w), // half turn
        4 => ((h - 1) * w, 1, -w),          // mirror upside down
        5 => (0, w, 1),                     // transpose
        6 => ((h - 1) * w, -w, 1),          // quarter turn clockwise
        7 => ((h - 1) * w + w - 1, -w, -1), // transverse
        8 => (w - 1, w, -1),                // quarter turn anticlockwise
        _ => return raster,
    };
    let (width, height) = if swaps_axes(exif) {
        (raster.height, raster.width)
    } else {
        (raster.width, raster.height)
    };
    let data = if raster.channels == 1 {
        remap::<1>(&raster.data, width, height, base, dx, dy)
    } else {
        remap::<3>(&raster.data, width, height, base, dx, dy)
    };
    Raster {
        data,
        width,
        height,
        channels: raster.channels,
    }
}

/// Builds a `width`×`height` picture of `C`-byte pixels whose pixel (x, y) is `src` pixel
/// number `base + x·dx + y·dy`, in 64×64 tiles so that a quarter turn reads the source
/// from cache rather than a row per pixel.
fn remap<const C: usize>(
    src: &[u8],
    width: u32,
    height: u32,
    base: isize,
    dx: isize,
    dy: isize,
) -> Vec<u8> {
    const TILE: usize = 64;
    let (w, h) = (width as usize, height as usize);
    let mut out = vec![0u8; w * h * C];
    for ty in (0..h).step_by(TILE) {
        for tx in (0..w).step_by(TILE) {
            for y in ty..(ty + TILE).min(h) {
                let row = base + y as isize * dy;
                let dst_row = &mut out[(y * w + tx) * C..(y * w + (tx + TILE).min(w)) * C];
                for (i, dst) in dst_row.chunks_exact_mut(C).enumerate() {
                    let s = (row + (tx + i) as isize * dx) as usize * C;
                    dst.copy_from_slice(&src[s..s + C]);
                }
            }
        }
    }
    out
}

/// Encodes a picture; big ones in two halves on two threads, joined by a restart marker
/// (the JPEG way of cutting the entropy-coded data into independent pieces: the DC
/// predictions start again after it). The halves meet on an MCU row, so every block is
/// coded exactly as in one piece and decoders see the same pixels.
fn encode(raster: &Raster, quality: u8) -> Result<Vec<u8>, MediaError> {
    // One grey block per MCU; a 16×16 luma square (4:2:0) in colour.
    let mcu = if raster.channels == 1 { 8 } else { 16 };
    let mcu_rows = raster.height.div_ceil(mcu);
    let per_row = raster.width.div_ceil(mcu);
    // The larger half on top: the restart interval is its MCU count, and the bottom half
    // must not reach it (or a second marker would be expected).
    let top_rows = mcu_rows.div_ceil(2);
    let interval = u16::try_from(per_row * top_rows).ok();
    let pixels = u64::from(raster.width) * u64::from(raster.height);
    let (Some(interval), true) = (interval, pixels >= PARALLEL_PIXELS && mcu_rows >= 2) else {
        return encode_piece(
            &raster.data,
            raster.width,
            raster.height,
            raster.channels,
            quality,
        );
    };
    let top_height = top_rows * mcu;
    let (top, bottom) = raster
        .data
        .split_at(top_height as usize * raster.row_bytes());
    let (top, bottom) = std::thread::scope(|scope| {
        let lower = scope.spawn(|| {
            encode_piece(
                bottom,
                raster.width,
                raster.height - top_height,
                raster.channels,
                quality,
            )
        });
        let upper = encode_piece(top, raster.width, top_height, raster.channels, quality);
        let lower = lower
            .join()
            .unwrap_or_else(|_| Err(MediaError::Internal("encoder thread panicked".into())));
        (upper, lower)
    });
    join_pieces(&top?, &bottom?, raster.height, interval)
}

/// Encodes baseline JPEG, 4:2:0 with averaged chroma, the standard Huffman tables, and
/// nothing but the JFIF header as metadata.
///
/// Not optimised Huffman tables: jpeg-encoder then writes one scan per component
/// (non-interleaved), which is valid but which zune-jpeg 0.5 (the `image` crate's decoder)
/// decodes with wrong colours when chroma is subsampled; plain interleaved baseline is
/// what every reader handles. It costs about 10 % in size, and saves time. (Fixed tables
/// are also what lets two halves share one header in [`join_pieces`].)
fn encode_piece(
    data: &[u8],
    width: u32,
    height: u32,
    channels: u8,
    quality: u8,
) -> Result<Vec<u8>, MediaError> {
    let width = u16::try_from(width).map_err(internal)?;
    let height = u16::try_from(height).map_err(internal)?;
    let mut out = Vec::with_capacity(data.len() / 8);
    let mut encoder = Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(SamplingFactor::F_2_2);
    encoder.set_chroma_subsampling_method(ChromaSubsamplingMethod::Average);
    let color = if channels == 1 {
        ColorType::Luma
    } else {
        ColorType::Rgb
    };
    encoder
        .encode(data, width, height, color)
        .map_err(internal)?;
    Ok(out)
}

/// Where the frame header (SOF0) and the scan header (SOS) start in a JPEG from
/// [`encode_piece`], and where the entropy-coded data starts.
fn scan_layout(jpeg: &[u8]) -> Result<(usize, usize, usize), MediaError> {
    let bad = || MediaError::Internal("unexpected JPEG layout from the encoder".into());
    if !jpeg.starts_with(&[0xFF, 0xD8]) || !jpeg.ends_with(&[0xFF, 0xD9]) {
        return Err(bad());
    }
    let mut sof = None;
    let mut at = 2;
    while at + 4 <= jpeg.len() {
        if jpeg[at] != 0xFF {
            return Err(bad());
        }
        let marker = jpeg[at + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        match marker {
            0xC0 => sof = Some(at),
            0xDA => return Ok((sof.ok_or_else(bad)?, at, at + 2 + len)),
            _ => {}
        }
        at += 2 + len;
    }
    Err(bad())
}

/// Joins the JPEGs of a top and a bottom half into one of `height` rows: the top's
/// headers with the height patched and a restart interval of the top's MCU count, the
/// top's scan, RST0, the bottom's entropy-coded data, EOI.
fn join_pieces(
    top: &[u8],
    bottom: &[u8],
    height: u32,
    interval: u16,
) -> Result<Vec<u8>, MediaError> {
    let height = u16::try_from(height).map_err(internal)?;
    let (sof, sos, _) = scan_layout(top)?;
    let (_, _, bottom_data) = scan_layout(bottom)?;
    let mut out = Vec::with_capacity(top.len() + bottom.len());
    out.extend_from_slice(&top[..sos]);
    // SOF0: marker, length, precision, then the height.
    out[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    // DRI: restart interval, in MCUs.
    out.extend_from_slice(&[0xFF, 0xDD, 0x00, 0x04]);
    out.extend_from_slice(&interval.to_be_bytes());
    out.extend_from_slice(&top[sos..top.len() - 2]);
    out.extend_from_slice(&[0xFF, 0xD0]);
    out.extend_from_slice(&bottom[bottom_data..bottom.len() - 2]);
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod common;

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        static FULL_ENCODES: Cell<u32> = const { Cell::new(0) };
    }

    pub(crate) fn count_full_encode() {
        FULL_ENCODES.with(|c| c.set(c.get() + 1));
    }

    /// `fit`, and how many whole-picture encodes it made.
    fn fit_counting(bytes: &[u8], limit: u64) -> (Fitted, u32) {
        FULL_ENCODES.with(|c| c.set(0));
        let fitted = fit(bytes, limit).unwrap();
        (fitted, FULL_ENCODES.with(Cell::get))
    }

    fn photo_raster(width: u32, height: u32, noise: u8) -> Raster {
        Raster {
            data: common::form_photo(width, height, noise, 3),
            width,
            height,
            channels: 3,
        }
    }

    #[test]
    fn the_phone_photo_needs_at_most_two_whole_encodes() {
        let photo = common::phone_photo();
        for limit in [1024 * 1024, 200 * 1024] {
            let (fitted, encodes) = fit_counting(&photo, limit);
            assert!(fitted.after <= limit);
            assert!(
                encodes <= 2,
                "{encodes} whole encodes for a limit of {limit}"
            );
        }
    }

    #[test]
    fn resizing_in_two_halves_equals_resizing_in_one_piece() {
        let src = photo_raster(1600, 1200, 10);
        let (w, h) = (1237, 928);
        assert!(u64::from(w) * u64::from(h) >= PARALLEL_PIXELS);
        let split = resize(&src, w, h).unwrap();
        // The same resize in one piece.
        let view = ImageRef::new(src.width, src.height, &src.data, PixelType::U8x3).unwrap();
        let mut whole = Image::new(w, h, PixelType::U8x3);
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
        Resizer::new().resize(&view, &mut whole, &options).unwrap();
        assert!(
            split.data == whole.buffer(),
            "the two halves differ from one piece"
        );
    }

    #[test]
    fn a_sample_predicts_the_whole_size_within_eight_per_cent() {
        for (noise, (w, h)) in [(0, (2480, 1754)), (6, (1754, 2480)), (14, (2000, 1500))] {
            let picture = photo_raster(w, h, noise);
            let mut predictor = Predictor::new(&picture);
            assert!(predictor.sample.is_some());
            for q in [QUALITY_MIN, 72, QUALITY_MAX] {
                let predicted = predictor.predict(q).unwrap();
                let actual = encode(&picture, q).unwrap().len() as f64;
                let error = (predicted / actual - 1.0).abs();
                assert!(
                    error < 0.08,
                    "noise {noise}, quality {q}: predicted {predicted}, actual {actual}"
                );
            }
        }
    }

    #[test]
    fn small_pictures_are_encoded_whole_and_not_twice() {
        let picture = photo_raster(640, 480, 6);
        let mut predictor = Predictor::new(&picture);
        assert!(predictor.sample.is_none());
        let predicted = predictor.predict(80).unwrap();
        FULL_ENCODES.with(|c| c.set(0));
        let jpeg = predictor.full(80).unwrap();
        assert_eq!(jpeg.len() as f64, predicted);
        assert_eq!(FULL_ENCODES.with(Cell::get), 0);
    }

    #[test]
    fn encoding_in_two_halves_decodes_to_the_same_pixels_as_in_one_piece() {
        // Colour and grey; heights on, and off, an MCU row; widths off a block.
        for (channels, width, height) in [(3u8, 1241, 1000), (3, 1600, 1203), (1, 1203, 1777)] {
            let rgb = common::form_photo(width, height, 8, 21);
            let data = if channels == 3 {
                rgb
            } else {
                rgb.chunks_exact(3).map(|p| p[1]).collect()
            };
            let raster = Raster {
                data,
                width,
                height,
                channels,
            };
            let joined = encode(&raster, 80).unwrap();
            let whole = encode_piece(&raster.data, width, height, channels, 80).unwrap();
            assert!(
                joined.windows(2).any(|w| w == [0xFF, 0xD0]),
                "no restart marker"
            );
            assert!(
                joined.len().abs_diff(whole.len()) < 256,
                "{} vs {}",
                joined.len(),
                whole.len()
            );
            let a = image::load_from_memory(&joined).unwrap();
            let b = image::load_from_memory(&whole).unwrap();
            assert_eq!((a.width(), a.height()), (width, height));
            assert!(
                a.as_bytes() == b.as_bytes(),
                "{channels} channels {width}×{height}"
            );
        }
    }

    #[test]
    fn orient_matches_the_image_crate_for_all_eight_orientations() {
        for channels in [1u8, 3] {
            let (width, height) = (37u32, 23u32);
            let mut rng = common::Rng::new(5);
            let data: Vec<u8> = (0..width * height * u32::from(channels))
                .map(|_| rng.next() as u8)
                .collect();
            for exif in 1..=8u8 {
                let orientation = Orientation::from_exif(exif).unwrap();
                let raster = Raster {
                    data: data.clone(),
                    width,
                    height,
                    channels,
                };
                let ours = orient(raster, orientation);
                let mut theirs = if channels == 1 {
                    DynamicImage::ImageLuma8(
                        image::GrayImage::from_raw(width, height, data.clone()).unwrap(),
                    )
                } else {
                    DynamicImage::ImageRgb8(
                        image::RgbImage::from_raw(width, height, data.clone()).unwrap(),
                    )
                };
                theirs.apply_orientation(orientation);
                assert_eq!((ours.width, ours.height), (theirs.width(), theirs.height()));
                assert!(
                    ours.data == theirs.as_bytes(),
                    "orientation {exif}, {channels}"
                );
            }
        }
    }

    #[test]
    fn scaled_keeps_the_aspect_ratio() {
        assert_eq!(scaled(4032, 3024, 2480), (2480, 1860));
        assert_eq!(scaled(3024, 4032, 2480), (1860, 2480));
        assert_eq!(scaled(5000, 10, 800), (800, 2));
        assert_eq!(scaled(10, 5000, 800), (2, 800));
    }

    #[test]
    fn flatten_lays_alpha_over_white() {
        // Opaque black, transparent black, half-transparent red.
        let rgba = [0, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 128];
        assert_eq!(
            flatten(&rgba, 3),
            vec![0, 0, 0, 255, 255, 255, 255, 127, 127]
        );
        assert_eq!(flatten(&[0, 255, 0, 0], 1), vec![0, 255]);
    }

    #[test]
    fn shrink_learns_how_size_falls() {
        let mut shrink = Shrink::default();
        // First step: assumes γ = 1.6.
        let l1 = shrink.next(2480, 400_000.0, 200_000.0, 800);
        let expected = (2480.0 * 0.5f64.powf(1.0 / 1.6)) as u32;
        assert_eq!(l1, expected);
        // Size fell only as long^1.0: the next step is bigger.
        let s1 = 400_000.0 * f64::from(l1) / 2480.0;
        let l2 = shrink.next(l1, s1, 200_000.0, 800);
        let want = f64::from(l1) * (200_000.0 / s1);
        assert!((f64::from(l2) - want).abs() <= 1.0, "{l2} vs {want}");
        // Never below the floor; at least 3 % smaller.
        assert_eq!(Shrink::default().next(900, 1e9, 1.0, 800), 800);
        assert_eq!(Shrink::default().next(1000, 100.0, 99.9, 800), 970);
    }
}

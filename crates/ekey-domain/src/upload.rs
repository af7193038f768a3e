//! Judging uploaded scans by their content. Only JPEG, PNG and PDF are accepted, and the
//! type is read from the bytes themselves: the file name (and its extension) is never
//! consulted, so a PNG named `licence.jpg` is a PNG and a text file named `scan.pdf` is
//! refused. A file cut short (an interrupted upload or a damaged scan) is refused too.

use serde::{Deserialize, Serialize};

use crate::Lang;
use crate::request::Kind;

/// A kind of file accepted as a material scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A JPEG image.
    Jpeg,
    /// A PNG image.
    Png,
    /// A PDF document.
    Pdf,
}

impl FileKind {
    /// The media type, e.g. `image/jpeg`.
    pub fn mime(self) -> &'static str {
        match self {
            FileKind::Jpeg => "image/jpeg",
            FileKind::Png => "image/png",
            FileKind::Pdf => "application/pdf",
        }
    }

    /// The usual file extension, without the dot, e.g. `jpg`.
    pub fn extension(self) -> &'static str {
        match self {
            FileKind::Jpeg => "jpg",
            FileKind::Png => "png",
            FileKind::Pdf => "pdf",
        }
    }

    /// Whether it is an image (JPEG or PNG).
    pub fn is_image(self) -> bool {
        matches!(self, FileKind::Jpeg | FileKind::Png)
    }

    /// The name people know it by: `JPEG`, `PNG`, `PDF`.
    pub fn label(self) -> &'static str {
        match self {
            FileKind::Jpeg => "JPEG",
            FileKind::Png => "PNG",
            FileKind::Pdf => "PDF",
        }
    }
}

/// An uploaded file cannot be accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadError {
    /// The file has no content.
    #[error("file is empty")]
    Empty,
    /// The content is neither JPEG, PNG nor PDF.
    #[error("unsupported file type")]
    UnsupportedType,
    /// The content starts like a JPEG, PNG or PDF but is cut short or damaged (no end
    /// marker, incomplete header).
    #[error("{} file is incomplete or damaged", kind.label())]
    Incomplete {
        /// What the file claims to be.
        kind: FileKind,
    },
    /// The file is larger than the limit of its checklist item.
    #[error("file too large: {size} bytes, limit {limit}")]
    TooLarge {
        /// What the file is.
        kind: FileKind,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
        /// The file must be smaller than `limit` ([`SizeLimit::Under`]), not merely not
        /// larger.
        under: bool,
    },
}

impl UploadError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            UploadError::Empty => "ekey.material.empty",
            UploadError::UnsupportedType | UploadError::Incomplete { .. } => {
                "ekey.material.unsupported_type"
            }
            UploadError::TooLarge { .. } => "ekey.material.too_large",
        }
    }

    /// A sentence for the person who uploaded the file.
    pub fn message(&self, lang: Lang) -> String {
        let zh = lang == Lang::Zh;
        match self {
            UploadError::Empty => lang
                .pick(
                    "文件为空，请重新选择扫描件上传",
                    "The file is empty; please choose the scan again",
                )
                .into(),
            UploadError::UnsupportedType => lang
                .pick(
                    "文件格式不支持：只接受 JPEG、PNG 图片或 PDF 文件（按文件内容判断，与文件名无关）",
                    "Unsupported file type: only JPEG or PNG images and PDF files are accepted (judged by the content, not the file name)",
                )
                .into(),
            UploadError::Incomplete { kind } => {
                if zh {
                    format!(
                        "文件不完整或已损坏（{}）：可能上传中断或扫描件保存不完整，请重新扫描或导出后上传",
                        kind.label()
                    )
                } else {
                    format!(
                        "The {} file is incomplete or damaged (perhaps the upload was interrupted); please scan or export it again",
                        kind.label()
                    )
                }
            }
            UploadError::TooLarge {
                size,
                limit,
                under: true,
                ..
            } => {
                let (size, limit) = (human_size(*size, lang), human_size(*limit, lang));
                if zh {
                    format!("文件过大：{size}，须小于 {limit}")
                } else {
                    format!("The file is too large: {size}; it must be under {limit}")
                }
            }
            UploadError::TooLarge { size, limit, .. } => {
                let (size, limit) = sizes(*size, *limit, lang);
                if zh {
                    format!("文件过大：{size}，上限 {limit}")
                } else {
                    format!("The file is too large: {size}; the limit is {limit}")
                }
            }
        }
    }
}

/// PNG file signature.
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];
/// The IEND chunk type and its (constant) CRC, the last 8 bytes of every PNG.
const PNG_IEND: [u8; 8] = [b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];
/// How far from the end the end marker of a JPEG or PNG is looked for.
const IMAGE_TAIL: usize = 1024;
/// How far from the end `%%EOF` is looked for in a PDF.
const PDF_TAIL: usize = 2048;

/// What the bytes are. Only the content counts; trailing bytes after an image's end marker
/// are tolerated (some scanners add them).
pub fn detect(bytes: &[u8]) -> Result<FileKind, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return check_jpeg(bytes);
    }
    if bytes.starts_with(&PNG_SIGNATURE) {
        return check_png(bytes);
    }
    if bytes.starts_with(b"%PDF-1.") || bytes.starts_with(b"%PDF-2.") {
        return check_pdf(bytes);
    }
    // Too short to tell, but the start of one of ours: a truncated file.
    for (prefix, kind) in [
        (&[0xFF, 0xD8, 0xFF][..], FileKind::Jpeg),
        (&PNG_SIGNATURE[..], FileKind::Png),
        (&b"%PDF-1."[..], FileKind::Pdf),
        (&b"%PDF-2."[..], FileKind::Pdf),
    ] {
        if prefix.starts_with(bytes) {
            return Err(UploadError::Incomplete { kind });
        }
    }
    Err(UploadError::UnsupportedType)
}

/// The last `n` bytes (or all of them), but never the first `skip`.
fn tail(bytes: &[u8], n: usize, skip: usize) -> &[u8] {
    let start = bytes.len().saturating_sub(n).max(skip.min(bytes.len()));
    &bytes[start..]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn check_jpeg(bytes: &[u8]) -> Result<FileKind, UploadError> {
    // The EOI marker FF D9 must come after the SOI and the first marker's FF.
    if contains(tail(bytes, IMAGE_TAIL, 3), &[0xFF, 0xD9]) {
        Ok(FileKind::Jpeg)
    } else {
        Err(UploadError::Incomplete {
            kind: FileKind::Jpeg,
        })
    }
}

fn check_png(bytes: &[u8]) -> Result<FileKind, UploadError> {
    // Signature, then the IHDR chunk: length 13, type, 13 bytes of data, CRC.
    let incomplete = Err(UploadError::Incomplete {
        kind: FileKind::Png,
    });
    if bytes.len() < 8 + 8 + 13 + 4 {
        return incomplete;
    }
    if bytes[8..12] != [0, 0, 0, 13] || &bytes[12..16] != b"IHDR" {
        return Err(UploadError::UnsupportedType);
    }
    let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    if width == 0 || height == 0 {
        return Err(UploadError::UnsupportedType);
    }
    if !contains(tail(bytes, IMAGE_TAIL, 33), &PNG_IEND) {
        return incomplete;
    }
    Ok(FileKind::Png)
}

fn check_pdf(bytes: &[u8]) -> Result<FileKind, UploadError> {
    if contains(tail(bytes, PDF_TAIL, 8), b"%%EOF") {
        Ok(FileKind::Pdf)
    } else {
        Err(UploadError::Incomplete {
            kind: FileKind::Pdf,
        })
    }
}

/// Checks a file's size against a limit that the file may reach (exactly the limit is
/// accepted). An empty file is refused whatever the limit. The limit of a request kind's
/// scans is [`SizeLimit::for_kind`].
pub fn check_size(kind: FileKind, len: u64, limit: u64) -> Result<(), UploadError> {
    SizeLimit::AtMost(limit).check(kind, len)
}

/// How large a scan may be, in the procedure's words: "每张图片大小不超于1MB" for the
/// application materials (1 MB itself is accepted), "每张图片小于200KB" for the unlock
/// materials (under 200 KB: a file of exactly 200 KB is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeLimit {
    /// At most this many bytes.
    AtMost(u64),
    /// Fewer than this many bytes.
    Under(u64),
}

/// 1 MB: the limit of an application's scans.
const ONE_MB: u64 = 1024 * 1024;
/// 200 KB: the unlock scans must be smaller.
const UNLOCK_KB200: u64 = 200 * 1024;

impl SizeLimit {
    /// The limit of the scans of a request kind.
    pub fn for_kind(kind: Kind) -> SizeLimit {
        match kind {
            Kind::Unlock => SizeLimit::Under(UNLOCK_KB200),
            _ => SizeLimit::AtMost(ONE_MB),
        }
    }

    /// The limit as the procedure states it (1 MB, 200 KB).
    pub fn stated(self) -> u64 {
        match self {
            SizeLimit::AtMost(n) | SizeLimit::Under(n) => n,
        }
    }

    /// The largest size accepted, in bytes (what a picture is downscaled to fit).
    pub fn largest(self) -> u64 {
        match self {
            SizeLimit::AtMost(n) => n,
            SizeLimit::Under(n) => n.saturating_sub(1),
        }
    }

    /// Checks a file's size; an empty file is refused whatever the limit.
    pub fn check(self, kind: FileKind, len: u64) -> Result<(), UploadError> {
        if len == 0 {
            return Err(UploadError::Empty);
        }
        if len > self.largest() {
            return Err(UploadError::TooLarge {
                kind,
                size: len,
                limit: self.stated(),
                under: matches!(self, SizeLimit::Under(_)),
            });
        }
        Ok(())
    }

    /// The limit in words: `不超过 1 MB` / `小于 200 KB`, `at most 1 MB` / `under 200 KB`.
    pub fn words(self, lang: Lang) -> String {
        let n = human_size(self.stated(), lang);
        match (self, lang) {
            (SizeLimit::AtMost(_), Lang::Zh) => format!("不超过 {n}"),
            (SizeLimit::AtMost(_), Lang::En) => format!("at most {n}"),
            (SizeLimit::Under(_), Lang::Zh) => format!("小于 {n}"),
            (SizeLimit::Under(_), Lang::En) => format!("under {n}"),
        }
    }
}

/// A byte count for people: `812 字节`, `200 KB`, `1.3 MB` (1 KB = 1024 bytes), one
/// decimal at most.
pub fn human_size(bytes: u64, lang: Lang) -> String {
    const KB: u64 = 1024;
    const MB: u64 = 1024 * 1024;
    if bytes < KB {
        return format!("{bytes} {}", lang.pick("字节", "bytes"));
    }
    let (unit, name) = if bytes < MB { (KB, "KB") } else { (MB, "MB") };
    // Tenths, rounded half up, in integers to stay exact.
    let tenths = (u128::from(bytes) * 10 + u128::from(unit) / 2) / u128::from(unit);
    if tenths % 10 == 0 {
        format!("{} {name}", tenths / 10)
    } else {
        format!("{}.{} {name}", tenths / 10, tenths % 10)
    }
}

/// A size and its limit for a message. When rounding would make them look equal (1 MB
/// and one byte against 1 MB), both are given in bytes.
fn sizes(size: u64, limit: u64, lang: Lang) -> (String, String) {
    let (s, l) = (human_size(size, lang), human_size(limit, lang));
    if s == l {
        let unit = lang.pick("字节", "bytes");
        (format!("{size} {unit}"), format!("{limit} {unit}"))
    } else {
        (s, l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc32(data: &[u8]) -> u32 {
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

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }

    /// A complete, valid 1×1 grey PNG (zlib stream with one stored block).
    fn png() -> Vec<u8> {
        let mut out = PNG_SIGNATURE.to_vec();
        // width 1, height 1, bit depth 8, colour type 0 (grey), deflate, filter 0, no interlace
        chunk(&mut out, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
        let raw = [0u8, 0x80]; // filter type 0, one grey pixel
        let mut z = vec![0x78, 0x01, 0x01, 0x02, 0x00, 0xFD, 0xFF];
        z.extend_from_slice(&raw);
        z.extend_from_slice(&adler32(&raw).to_be_bytes());
        chunk(&mut out, b"IDAT", &z);
        chunk(&mut out, b"IEND", &[]);
        out
    }

    /// A complete, valid baseline 1×1 grey JPEG: SOI, DQT, SOF0, DHT (DC and AC, one code
    /// each), SOS, two bits of entropy-coded data, EOI.
    fn jpeg() -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        out.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
        out.extend_from_slice(&[1u8; 64]);
        out.extend_from_slice(&[
            0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01, 0x11, 0x00,
        ]);
        for class in [0x00u8, 0x10] {
            out.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x14, class, 0x01]);
            out.extend_from_slice(&[0u8; 15]);
            out.push(0x00);
        }
        out.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
        out.push(0x3F); // DC diff 0 ("0"), AC end of block ("0"), padded with ones
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    /// A complete one-page PDF with a correct cross-reference table.
    fn pdf() -> Vec<u8> {
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
        ];
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(b"xref\n0 4\n0000000000 65535 f \n");
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
        );
        out
    }

    #[test]
    fn kinds() {
        assert_eq!(FileKind::Jpeg.mime(), "image/jpeg");
        assert_eq!(FileKind::Png.mime(), "image/png");
        assert_eq!(FileKind::Pdf.mime(), "application/pdf");
        assert_eq!(FileKind::Jpeg.extension(), "jpg");
        assert_eq!(FileKind::Png.extension(), "png");
        assert_eq!(FileKind::Pdf.extension(), "pdf");
        assert!(FileKind::Jpeg.is_image() && FileKind::Png.is_image());
        assert!(!FileKind::Pdf.is_image());
        assert_eq!(serde_json::to_string(&FileKind::Png).unwrap(), r#""png""#);
    }

    #[test]
    fn valid_files_detected() {
        assert_eq!(detect(&jpeg()), Ok(FileKind::Jpeg));
        assert_eq!(detect(&png()), Ok(FileKind::Png));
        assert_eq!(detect(&pdf()), Ok(FileKind::Pdf));
        let mut pdf2 = pdf();
        pdf2[5] = b'2';
        assert_eq!(detect(&pdf2), Ok(FileKind::Pdf));
    }

    #[test]
    fn names_are_irrelevant() {
        // A PNG uploaded as "营业执照.jpg": `detect` sees only the bytes, so it is a PNG, and
        // stored with its real type and extension.
        let (_name, bytes) = ("营业执照.jpg", png());
        let kind = detect(&bytes).unwrap();
        assert_eq!(kind, FileKind::Png);
        assert_eq!(kind.extension(), "png");
        // Text named "申请表.pdf" is still text.
        let (_name, bytes) = ("申请表.pdf", b"just some text\n".to_vec());
        assert_eq!(detect(&bytes), Err(UploadError::UnsupportedType));
    }

    #[test]
    fn trailing_bytes_after_end_marker_tolerated() {
        let mut j = jpeg();
        j.extend_from_slice(&[0u8; 300]);
        assert_eq!(detect(&j), Ok(FileKind::Jpeg));
        let mut p = png();
        p.extend_from_slice(b"scanner trailer");
        assert_eq!(detect(&p), Ok(FileKind::Png));
        let mut d = pdf();
        d.extend_from_slice(&[b'\n'; 100]);
        assert_eq!(detect(&d), Ok(FileKind::Pdf));
        // …but not too many: the end marker must be near the end.
        let mut j = jpeg();
        j.extend_from_slice(&[0u8; 2000]);
        assert!(detect(&j).is_err());
    }

    #[test]
    fn other_content_rejected() {
        let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
        let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00";
        let html = b"<!DOCTYPE html><html></html>";
        let bmp = b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00";
        for bytes in [
            &gif[..],
            zip,
            html,
            bmp,
            b"%PDF-3.0\n%%EOF",
            b"\xEF\xBB\xBF%PDF-1.4 %%EOF",
        ] {
            assert_eq!(detect(bytes), Err(UploadError::UnsupportedType));
        }
        assert_eq!(detect(b""), Err(UploadError::Empty));
        assert_eq!(UploadError::Empty.code(), "ekey.material.empty");
        assert_eq!(
            UploadError::UnsupportedType.code(),
            "ekey.material.unsupported_type"
        );
        // A PNG signature without an IHDR chunk is not a PNG.
        let mut bad = png();
        bad[12..16].copy_from_slice(b"IDAT");
        assert_eq!(detect(&bad), Err(UploadError::UnsupportedType));
    }

    #[test]
    fn truncated_files_rejected() {
        for (full, kind) in [
            (jpeg(), FileKind::Jpeg),
            (png(), FileKind::Png),
            (pdf(), FileKind::Pdf),
        ] {
            // Every prefix that ends before the end marker is refused (a PDF cut after its
            // `%%EOF` is complete).
            let end = match kind {
                FileKind::Pdf => full.windows(5).rposition(|w| w == b"%%EOF").unwrap() + 5,
                _ => full.len(),
            };
            for len in 1..end {
                let r = detect(&full[..len]);
                assert!(r.is_err(), "{kind:?} cut at {len}");
                if len >= 3 {
                    assert_eq!(
                        r,
                        Err(UploadError::Incomplete { kind }),
                        "{kind:?} cut at {len}"
                    );
                }
            }
        }
        let e = UploadError::Incomplete {
            kind: FileKind::Png,
        };
        assert_eq!(e.code(), "ekey.material.unsupported_type");
        assert!(e.message(Lang::Zh).contains("不完整"));
    }

    #[test]
    fn size_limits() {
        const MB: u64 = 1024 * 1024;
        assert_eq!(check_size(FileKind::Jpeg, MB, MB), Ok(()));
        assert_eq!(check_size(FileKind::Jpeg, 1, MB), Ok(()));
        assert_eq!(
            check_size(FileKind::Jpeg, MB + 1, MB),
            Err(UploadError::TooLarge {
                kind: FileKind::Jpeg,
                size: MB + 1,
                limit: MB,
                under: false,
            })
        );
        assert_eq!(check_size(FileKind::Png, 0, MB), Err(UploadError::Empty));
        let kb200 = 200 * 1024;
        assert_eq!(check_size(FileKind::Png, kb200, kb200), Ok(()));
        assert!(check_size(FileKind::Png, kb200 + 1, kb200).is_err());
        assert_eq!(
            check_size(FileKind::Pdf, MB + 1, MB).unwrap_err().code(),
            "ekey.material.too_large"
        );
    }

    #[test]
    fn unlock_scans_must_be_under_200_kb_and_applications_at_most_1_mb() {
        const MB: u64 = 1024 * 1024;
        let kb200 = 200 * 1024;
        let unlock = SizeLimit::for_kind(Kind::Unlock);
        assert_eq!(unlock, SizeLimit::Under(kb200));
        // "每张图片小于200KB": exactly 200 KB is refused, one byte less is accepted.
        let e = unlock.check(FileKind::Png, kb200).unwrap_err();
        assert_eq!(e.code(), "ekey.material.too_large");
        assert_eq!(e.message(Lang::Zh), "文件过大：200 KB，须小于 200 KB");
        assert_eq!(
            e.message(Lang::En),
            "The file is too large: 200 KB; it must be under 200 KB"
        );
        assert_eq!(unlock.check(FileKind::Png, kb200 - 1), Ok(()));
        assert_eq!(unlock.largest(), kb200 - 1);
        assert_eq!(unlock.words(Lang::Zh), "小于 200 KB");
        // "每张图片大小不超于1MB": 1 MB itself is accepted.
        for kind in [
            Kind::First,
            Kind::Additional,
            Kind::Renewal,
            Kind::Cancellation,
        ] {
            let l = SizeLimit::for_kind(kind);
            assert_eq!(l.check(FileKind::Jpeg, MB), Ok(()));
            assert!(l.check(FileKind::Jpeg, MB + 1).is_err());
            assert_eq!(l.words(Lang::Zh), "不超过 1 MB");
        }
        assert_eq!(unlock.check(FileKind::Png, 0), Err(UploadError::Empty));
    }

    #[test]
    fn size_messages() {
        const MB: u64 = 1024 * 1024;
        let e = check_size(FileKind::Jpeg, 1_363_149, MB).unwrap_err();
        assert_eq!(e.message(Lang::Zh), "文件过大：1.3 MB，上限 1 MB");
        assert_eq!(
            e.message(Lang::En),
            "The file is too large: 1.3 MB; the limit is 1 MB"
        );
        let e = check_size(FileKind::Jpeg, 250 * 1024, 200 * 1024).unwrap_err();
        assert_eq!(e.message(Lang::Zh), "文件过大：250 KB，上限 200 KB");
        // One byte over must not read "1 MB, limit 1 MB".
        let e = check_size(FileKind::Jpeg, MB + 1, MB).unwrap_err();
        assert_eq!(
            e.message(Lang::Zh),
            "文件过大：1048577 字节，上限 1048576 字节"
        );
        assert_eq!(human_size(812, Lang::Zh), "812 字节");
        assert_eq!(human_size(812, Lang::En), "812 bytes");
        assert_eq!(human_size(1024, Lang::En), "1 KB");
        assert_eq!(human_size(1536, Lang::En), "1.5 KB");
        assert_eq!(human_size(5 * MB / 2, Lang::En), "2.5 MB");
        assert_eq!(human_size(u64::MAX, Lang::En), "17592186044416 MB");
    }

    #[test]
    fn messages_in_both_languages() {
        let msg = UploadError::UnsupportedType.message(Lang::Zh);
        assert_eq!(
            msg,
            "文件格式不支持：只接受 JPEG、PNG 图片或 PDF 文件（按文件内容判断，与文件名无关）"
        );
        for e in [
            UploadError::Empty,
            UploadError::UnsupportedType,
            UploadError::Incomplete {
                kind: FileKind::Pdf,
            },
            UploadError::TooLarge {
                kind: FileKind::Png,
                size: 300 * 1024,
                limit: 200 * 1024,
                under: true,
            },
        ] {
            assert!(!e.message(Lang::En).is_empty());
            assert_ne!(e.message(Lang::Zh), e.message(Lang::En));
        }
    }
}

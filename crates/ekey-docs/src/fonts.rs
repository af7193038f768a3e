//! The fonts of the documents: found once at start, shared by every document.
//!
//! Order: an explicit file (configuration / `EKEY_FONT`), then the Debian system fonts
//! (Noto Sans CJK SC regular + bold, then WenQuanYi Micro Hei), then the subset of Noto Sans
//! SC built into the binary (all GB2312 characters). When the chosen font is not the bundled
//! one, the bundled one stays behind it for any character the chosen font lacks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::raw::{FileRef, TableProvider};
use skrifa::string::StringId;
use skrifa::{FontRef, MetadataProvider};

use crate::DocError;

/// The environment variable a caller may read for [`Fonts::load`]'s explicit path.
pub const FONT_ENV: &str = "EKEY_FONT";

/// Noto Sans SC (from Noto Sans CJK SC Regular), cut to ASCII, CJK punctuation, full-width
/// forms and the 7,445 GB2312 characters. See `fonts/README.md`.
static BUNDLED: &[u8] = include_bytes!("../fonts/NotoSansSC-GB2312-subset.otf");
/// File name of the bundled font, for [`Fonts::source`].
pub const BUNDLED_NAME: &str = "NotoSansSC-GB2312-subset.otf";

/// System fonts tried in order: (regular, bold).
const SYSTEM: &[(&str, Option<&str>)] = &[
    // Debian / Ubuntu fonts-noto-cjk
    (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        Some("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"),
    ),
    // Fedora google-noto-sans-cjk-fonts, Arch noto-fonts-cjk
    (
        "/usr/share/fonts/google-noto-sans-cjk-fonts/NotoSansCJK-Regular.ttc",
        Some("/usr/share/fonts/google-noto-sans-cjk-fonts/NotoSansCJK-Bold.ttc"),
    ),
    (
        "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
        Some("/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc"),
    ),
    // Debian fonts-wqy-microhei (no bold: the title is emboldened with a stroke)
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", None),
];

/// Characters a usable font must have: the words of every title.
const PROBE: &str = "企业电子钥匙申请表确认函解锁注销";

#[derive(Clone)]
enum Bytes {
    Static(&'static [u8]),
    Shared(Arc<Vec<u8>>),
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            Bytes::Static(b) => b,
            Bytes::Shared(v) => v.as_slice(),
        }
    }
}

/// One face of a font file, ready for measuring and for krilla.
#[derive(Clone)]
pub(crate) struct Face {
    bytes: Bytes,
    index: u32,
    pub(crate) pdf: krilla::text::Font,
    upem: f32,
}

impl Face {
    fn new(bytes: Bytes, index: u32) -> Option<Face> {
        let font = FontRef::from_index(bytes.as_ref(), index).ok()?;
        let upem = f32::from(font.head().ok()?.units_per_em());
        let data: krilla::Data = match &bytes {
            Bytes::Static(b) => krilla::Data::from(*b),
            Bytes::Shared(v) => krilla::Data::from(v.clone()),
        };
        let pdf = krilla::text::Font::new(data, index)?;
        Some(Face {
            bytes,
            index,
            pdf,
            upem,
        })
    }

    fn font_ref(&self) -> FontRef<'_> {
        // Checked in `new`.
        FontRef::from_index(self.bytes.as_ref(), self.index).expect("face checked at load")
    }

    fn covers(&self, text: &str) -> bool {
        let cmap = self.font_ref().charmap();
        text.chars().all(|c| cmap.map(c).is_some())
    }
}

/// The fonts of the documents. Load once ([`Fonts::load`]), share through an `Arc`.
#[derive(Clone)]
pub struct Fonts {
    pub(crate) regular: Face,
    /// A real bold face; `None` means the bold text is drawn with a thin outline.
    pub(crate) bold: Option<Face>,
    /// The bundled font behind a system or explicit font, for characters it lacks.
    pub(crate) fallback: Option<Face>,
    source: String,
}

impl fmt::Debug for Fonts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fonts")
            .field("source", &self.source)
            .finish()
    }
}

impl Fonts {
    /// Finds the fonts: `explicit` when given (an error if it cannot be used: the operator
    /// asked for it), else the first system font present, else the bundled subset.
    pub fn load(explicit: Option<&Path>) -> Result<Fonts, DocError> {
        if let Some(path) = explicit {
            let regular = load_file(path)?;
            return Ok(Fonts::with_fallback(regular, None).described(path, None));
        }
        for (regular, bold) in SYSTEM {
            let Ok(face) = load_file(Path::new(regular)) else {
                continue;
            };
            let bold_face = bold.and_then(|b| load_file(Path::new(b)).ok());
            let bold_path = bold_face.as_ref().and(*bold).map(Path::new);
            return Ok(
                Fonts::with_fallback(face, bold_face).described(Path::new(regular), bold_path)
            );
        }
        Ok(Fonts::bundled())
    }

    /// Only the bundled subset (GB2312), never a file.
    pub fn bundled() -> Fonts {
        let face = Face::new(Bytes::Static(BUNDLED), 0).expect("the bundled font is valid");
        Fonts {
            regular: face,
            bold: None,
            fallback: None,
            source: format!("bundled {BUNDLED_NAME}"),
        }
    }

    /// Where the fonts came from, for logs: file paths (with the face index of a
    /// collection), or `bundled …`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `c` can be printed (by the main font or the bundled one behind it).
    pub fn covers(&self, c: char) -> bool {
        let mut buf = [0u8; 4];
        let s: &str = c.encode_utf8(&mut buf);
        self.regular.covers(s) || self.fallback.as_ref().is_some_and(|f| f.covers(s))
    }

    fn with_fallback(regular: Face, bold: Option<Face>) -> Fonts {
        let fallback = Face::new(Bytes::Static(BUNDLED), 0);
        Fonts {
            regular,
            bold,
            fallback,
            source: String::new(),
        }
    }

    fn described(mut self, regular: &Path, bold: Option<&Path>) -> Fonts {
        let mut s = format!("{}#{}", regular.display(), self.regular.index);
        if let (Some(b), Some(face)) = (bold, &self.bold) {
            s.push_str(&format!(" + bold {}#{}", b.display(), face.index));
        }
        s.push_str(&format!(
            " (+ bundled {BUNDLED_NAME} for missing characters)"
        ));
        self.source = s;
        self
    }
}

/// Reads a font file and picks its Simplified Chinese face.
fn load_file(path: &Path) -> Result<Face, DocError> {
    let err = |reason: String| DocError::Font {
        path: PathBuf::from(path),
        reason,
    };
    let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let index = pick_face(&data).ok_or_else(|| {
        err("no face with Chinese characters (不含中文字形) / not an OpenType font".into())
    })?;
    Face::new(Bytes::Shared(Arc::new(data)), index)
        .ok_or_else(|| err("unreadable font face".into()))
}

/// The face to use in a file: in a collection, the Simplified Chinese, proportional one
/// ("Noto Sans CJK SC" is face 2 of Debian's TTC); else the first that has Chinese.
fn pick_face(data: &[u8]) -> Option<u32> {
    let faces: Vec<FontRef<'_>> = match FileRef::new(data).ok()? {
        FileRef::Font(f) => vec![f],
        FileRef::Collection(c) => c.iter().filter_map(Result::ok).collect(),
    };
    let has_chinese = |f: &FontRef<'_>| {
        let cmap = f.charmap();
        PROBE.chars().all(|c| cmap.map(c).is_some())
    };
    let family = |f: &FontRef<'_>| {
        f.localized_strings(StringId::FAMILY_NAME)
            .english_or_first()
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    let usable: Vec<(u32, String)> = faces
        .iter()
        .enumerate()
        .filter(|(_, f)| has_chinese(f))
        .map(|(i, f)| (i as u32, family(f)))
        .collect();
    usable
        .iter()
        .find(|(_, name)| name.ends_with(" SC") && !name.contains("Mono"))
        .or_else(|| usable.iter().find(|(_, name)| !name.contains("Mono")))
        .or_else(|| usable.first())
        .map(|(i, _)| *i)
}

/// Which face draws a piece of text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Regular,
    Bold,
    Fallback,
}

/// Per-document view of the fonts for measuring and splitting text into runs.
pub(crate) struct Metrics<'a> {
    regular: Measured<'a>,
    bold: Option<Measured<'a>>,
    fallback: Option<Measured<'a>>,
}

struct Measured<'a> {
    cmap: skrifa::charmap::Charmap<'a>,
    glyphs: GlyphMetrics<'a>,
    upem: f32,
}

impl<'a> Measured<'a> {
    fn new(face: &'a Face) -> Measured<'a> {
        let font = face.font_ref();
        Measured {
            cmap: font.charmap(),
            glyphs: font.glyph_metrics(Size::unscaled(), LocationRef::default()),
            upem: face.upem,
        }
    }

    /// Glyph and advance in em.
    fn glyph(&self, c: char) -> Option<(u32, f32)> {
        let g = self.cmap.map(c)?;
        let adv = self.glyphs.advance_width(g).unwrap_or(self.upem) / self.upem;
        Some((g.to_u32(), adv))
    }
}

/// One glyph placed: which face, glyph id, advance in em, byte range in the text.
#[derive(Clone, Debug)]
pub(crate) struct Placed {
    pub(crate) face: Which,
    pub(crate) glyph: u32,
    pub(crate) advance: f32,
    pub(crate) range: std::ops::Range<usize>,
}

impl<'a> Metrics<'a> {
    pub(crate) fn new(fonts: &'a Fonts) -> Metrics<'a> {
        Metrics {
            regular: Measured::new(&fonts.regular),
            bold: fonts.bold.as_ref().map(Measured::new),
            fallback: fonts.fallback.as_ref().map(Measured::new),
        }
    }

    /// Places each character: the asked face if it has the glyph, else the bundled one,
    /// else the asked face's "missing" glyph.
    pub(crate) fn place(&self, text: &str, bold: bool) -> Vec<Placed> {
        let (main, main_which) = match (&self.bold, bold) {
            (Some(b), true) => (b, Which::Bold),
            _ => (&self.regular, Which::Regular),
        };
        text.char_indices()
            .map(|(i, c)| {
                let range = i..i + c.len_utf8();
                let c = visible(c);
                if let Some((glyph, advance)) = main.glyph(c) {
                    return Placed {
                        face: main_which,
                        glyph,
                        advance,
                        range,
                    };
                }
                if let Some((glyph, advance)) = self.fallback.as_ref().and_then(|f| f.glyph(c)) {
                    return Placed {
                        face: Which::Fallback,
                        glyph,
                        advance,
                        range,
                    };
                }
                Placed {
                    face: main_which,
                    glyph: 0,
                    advance: main.glyphs.advance_width(0u32.into()).unwrap_or(main.upem)
                        / main.upem,
                    range,
                }
            })
            .collect()
    }

    /// Width of `text` in points at `size`.
    pub(crate) fn width(&self, text: &str, size: f32, bold: bool) -> f32 {
        self.place(text, bold)
            .iter()
            .map(|p| p.advance)
            .sum::<f32>()
            * size
    }

    /// Width of one character in points at `size`.
    pub(crate) fn char_width(&self, c: char, size: f32, bold: bool) -> f32 {
        let mut buf = [0u8; 4];
        self.width(c.encode_utf8(&mut buf), size, bold)
    }
}

/// Tabs and other control characters print as a space.
fn visible(c: char) -> char {
    if c.is_control() { ' ' } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fonts_are_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Fonts>();
    }

    #[test]
    fn bundled_covers_the_forms() {
        let f = Fonts::bundled();
        let printed = [include_str!("forms.rs"), include_str!("layout.rs")].concat();
        let names: String = ekey_domain::request::Kind::ALL
            .iter()
            .map(|k| k.name_zh())
            .chain(
                ekey_domain::request::LicenceType::ALL
                    .iter()
                    .map(|l| l.name_zh()),
            )
            .collect();
        for c in printed
            .chars()
            .chain(names.chars())
            .filter(|c| !c.is_ascii())
        {
            assert!(
                f.covers(c),
                "bundled font lacks {c}: regenerate it (fonts/README.md)"
            );
        }
        // GB2312 samples from the first and last rows of its hanzi, and symbols.
        for c in "啊阿埃齄鼾鼢鑫琪璐（）：，。、“”①№·".chars() {
            assert!(f.covers(c), "bundled font lacks {c}");
        }
        assert_eq!(f.source(), "bundled NotoSansSC-GB2312-subset.otf");
    }

    #[test]
    fn missing_characters_come_from_the_bundled_font_then_notdef() {
        let path = Path::new("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc");
        let f = Fonts::load(Some(path)).expect("install the Debian package fonts-wqy-microhei");
        let m = Metrics::new(&f);
        // 〜 (U+301C) is not in WenQuanYi Micro Hei but is in the bundled Noto subset; 🧿 is
        // in neither and prints as the main font's .notdef box.
        let p = m.place("中〜🧿", false);
        assert_eq!((p[0].face, p[0].glyph != 0), (Which::Regular, true));
        assert_eq!((p[1].face, p[1].glyph != 0), (Which::Fallback, true));
        assert_eq!((p[2].face, p[2].glyph), (Which::Regular, 0));
        assert_eq!(p[2].range, "中〜".len().."中〜🧿".len());
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = Fonts::load(Some(Path::new("/nonexistent/font.ttf"))).unwrap_err();
        assert_eq!(e.code(), "ekey.document.font");
    }
}

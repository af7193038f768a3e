//! Draws the layout's operations into a one-page PDF with krilla: vector lines and boxes,
//! glyphs placed from our own measurement (so the wrapping and the print agree), fonts
//! embedded as subsets.

use krilla::Document;
use krilla::color::luma;
use krilla::geom::{PathBuilder, Point};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule, LineCap, LineJoin, Stroke, StrokeDash};
use krilla::surface::Surface;
use krilla::text::{GlyphId, KrillaGlyph};

use crate::DocError;
use crate::fonts::{Fonts, Metrics, Which};
use crate::layout::{Op, PAGE_H, PAGE_W, Rect};

fn grey_fill(grey: u8) -> Fill {
    Fill {
        paint: luma::Color::new(grey).into(),
        opacity: NormalizedF32::ONE,
        rule: FillRule::NonZero,
    }
}

fn stroke(width: f32, grey: u8, dash: Option<f32>) -> Stroke {
    Stroke {
        paint: luma::Color::new(grey).into(),
        width,
        miter_limit: 4.0,
        line_cap: LineCap::Butt,
        line_join: LineJoin::Miter,
        opacity: NormalizedF32::ONE,
        dash: dash.map(|d| StrokeDash {
            array: vec![d, d],
            offset: 0.0,
        }),
    }
}

fn rect_path(pb: &mut PathBuilder, r: Rect) {
    if let Some(k) = krilla::geom::Rect::from_xywh(r.x, r.y, r.w, r.h) {
        pb.push_rect(k);
    }
}

/// Renders one page into PDF bytes.
pub(crate) fn render(
    fonts: &Fonts,
    m: &Metrics<'_>,
    title: &str,
    ops: &[Op],
) -> Result<Vec<u8>, DocError> {
    render_pages(fonts, m, title, &[ops.to_vec()])
}

/// Renders several pages into one PDF.
pub(crate) fn render_pages(
    fonts: &Fonts,
    m: &Metrics<'_>,
    title: &str,
    pages: &[Vec<Op>],
) -> Result<Vec<u8>, DocError> {
    let mut doc = Document::new();
    doc.set_metadata(
        Metadata::new()
            .title(title.to_string())
            .language("zh-CN".to_string())
            .creator("eKey".to_string()),
    );
    for ops in pages {
        let settings =
            PageSettings::from_wh(PAGE_W, PAGE_H).ok_or(DocError::Pdf("page size".into()))?;
        let mut page = doc.start_page_with(settings);
        let mut s = page.surface();
        // Fills first (label shading), then everything else on top.
        for op in ops.iter().filter(|o| matches!(o, Op::Fill { .. })) {
            draw(&mut s, fonts, m, op);
        }
        for op in ops.iter().filter(|o| !matches!(o, Op::Fill { .. })) {
            draw(&mut s, fonts, m, op);
        }
        s.finish();
        page.finish();
    }
    doc.finish().map_err(|e| DocError::Pdf(format!("{e:?}")))
}

fn draw(s: &mut Surface<'_>, fonts: &Fonts, m: &Metrics<'_>, op: &Op) {
    match op {
        Op::Fill { r, grey } => {
            let mut pb = PathBuilder::new();
            rect_path(&mut pb, *r);
            if let Some(p) = pb.finish() {
                s.set_stroke(None);
                s.set_fill(Some(grey_fill(*grey)));
                s.draw_path(&p);
            }
        }
        Op::Frame { r, width } => {
            let mut pb = PathBuilder::new();
            rect_path(&mut pb, *r);
            if let Some(p) = pb.finish() {
                s.set_fill(None);
                s.set_stroke(Some(stroke(*width, 0, None)));
                s.draw_path(&p);
            }
        }
        Op::Line {
            x1,
            y1,
            x2,
            y2,
            width,
            grey,
            dash,
        } => {
            let mut pb = PathBuilder::new();
            pb.move_to(*x1, *y1);
            pb.line_to(*x2, *y2);
            if let Some(p) = pb.finish() {
                s.set_fill(None);
                s.set_stroke(Some(stroke(*width, *grey, dash.then_some(2.0))));
                s.draw_path(&p);
            }
        }
        Op::Check { r, ticked } => {
            let mut pb = PathBuilder::new();
            rect_path(&mut pb, *r);
            if let Some(p) = pb.finish() {
                s.set_fill(None);
                s.set_stroke(Some(stroke(0.7, 0, None)));
                s.draw_path(&p);
            }
            if *ticked {
                // A check mark from the left middle, down to the bottom third, up past the
                // top right corner (as drawn by hand).
                let (x, y, w) = (r.x, r.y, r.w);
                let mut pb = PathBuilder::new();
                pb.move_to(x + 0.18 * w, y + 0.52 * w);
                pb.line_to(x + 0.42 * w, y + 0.80 * w);
                pb.line_to(x + 0.92 * w, y + 0.08 * w);
                if let Some(p) = pb.finish() {
                    s.set_fill(None);
                    let mut st = stroke((w * 0.16).max(1.1), 0, None);
                    st.line_cap = LineCap::Round;
                    st.line_join = LineJoin::Round;
                    s.set_stroke(Some(st));
                    s.draw_path(&p);
                }
            }
        }
        Op::Circle {
            cx,
            cy,
            radius,
            grey,
        } => {
            // Four cubic arcs.
            const K: f32 = 0.552_284_8;
            let (cx, cy, r) = (*cx, *cy, *radius);
            let k = K * r;
            let mut pb = PathBuilder::new();
            pb.move_to(cx + r, cy);
            pb.cubic_to(cx + r, cy + k, cx + k, cy + r, cx, cy + r);
            pb.cubic_to(cx - k, cy + r, cx - r, cy + k, cx - r, cy);
            pb.cubic_to(cx - r, cy - k, cx - k, cy - r, cx, cy - r);
            pb.cubic_to(cx + k, cy - r, cx + r, cy - k, cx + r, cy);
            pb.close();
            if let Some(p) = pb.finish() {
                s.set_fill(None);
                s.set_stroke(Some(stroke(0.6, *grey, Some(3.0))));
                s.draw_path(&p);
            }
        }
        Op::Qr {
            x,
            y,
            module,
            n,
            dark,
        } => {
            // Each horizontal run of dark modules is one rectangle; all in one path.
            let mut pb = PathBuilder::new();
            for row in 0..*n {
                let mut col = 0;
                while col < *n {
                    if dark[row * n + col] {
                        let start = col;
                        while col < *n && dark[row * n + col] {
                            col += 1;
                        }
                        rect_path(
                            &mut pb,
                            Rect::new(
                                x + start as f32 * module,
                                y + row as f32 * module,
                                (col - start) as f32 * module,
                                *module,
                            ),
                        );
                    } else {
                        col += 1;
                    }
                }
            }
            if let Some(p) = pb.finish() {
                s.set_stroke(None);
                s.set_fill(Some(grey_fill(0)));
                s.draw_path(&p);
            }
        }
        Op::Text {
            x,
            y,
            size,
            bold,
            grey,
            text,
            ..
        } => draw_text(s, fonts, m, *x, *y, *size, *bold, *grey, text),
    }
}

#[allow(clippy::too_many_arguments)]
fn draw_text(
    s: &mut Surface<'_>,
    fonts: &Fonts,
    m: &Metrics<'_>,
    x: f32,
    y: f32,
    size: f32,
    bold: bool,
    grey: u8,
    text: &str,
) {
    let placed = m.place(text, bold);
    s.set_fill(Some(grey_fill(grey)));
    let mut cx = x;
    let mut i = 0;
    while i < placed.len() {
        // A run of glyphs from one face.
        let face = placed[i].face;
        let mut j = i;
        while j < placed.len() && placed[j].face == face {
            j += 1;
        }
        let start = placed[i].range.start;
        let end = placed[j - 1].range.end;
        let run_text = &text[start..end];
        let glyphs: Vec<KrillaGlyph> = placed[i..j]
            .iter()
            .map(|p| {
                KrillaGlyph::new(
                    GlyphId::new(p.glyph),
                    p.advance,
                    0.0,
                    0.0,
                    0.0,
                    p.range.start - start..p.range.end - start,
                    None,
                )
            })
            .collect();
        let font = match face {
            Which::Regular => &fonts.regular,
            Which::Bold => fonts.bold.as_ref().unwrap_or(&fonts.regular),
            Which::Fallback => fonts.fallback.as_ref().unwrap_or(&fonts.regular),
        };
        // Bold without a bold face: fill plus a thin outline of the same colour.
        let faux_bold = bold && face != Which::Bold;
        s.set_stroke(faux_bold.then(|| {
            let mut st = stroke(size * 0.035, grey, None);
            st.line_join = LineJoin::Round;
            st
        }));
        s.draw_glyphs(
            Point::from_xy(cx, y),
            &glyphs,
            font.pdf.clone(),
            run_text,
            size,
            false,
        );
        cx += placed[i..j].iter().map(|p| p.advance).sum::<f32>() * size;
        i = j;
    }
    s.set_stroke(None);
}

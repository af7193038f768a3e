//! Page layout: a cursor down an A4 page that lays out titles, bordered tables with grey
//! label cells, ticked boxes, wrapped text and QR codes into a list of drawing operations.
//! Nothing here touches the PDF; [`crate::render`] draws the operations.

use crate::fonts::Metrics;

/// Points per millimetre.
pub(crate) const MM: f32 = 72.0 / 25.4;
/// A4 portrait, points.
pub(crate) const PAGE_W: f32 = 210.0 * MM;
pub(crate) const PAGE_H: f32 = 297.0 * MM;
/// Margins: at least 15 mm on every side (printers cannot reach the edge).
pub(crate) const MARGIN_X: f32 = 18.0 * MM;
pub(crate) const MARGIN_TOP: f32 = 15.0 * MM;
pub(crate) const MARGIN_BOTTOM: f32 = 15.0 * MM;
pub(crate) const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN_X;
pub(crate) const BOTTOM: f32 = PAGE_H - MARGIN_BOTTOM;

/// Distance from the baseline up to the middle of a CJK glyph's em box, in em
/// (ascent 0.88, descent 0.12 in Noto Sans CJK).
const EM_MIDDLE: f32 = 0.38;
/// Line height, in em.
const LEADING: f32 = 1.32;
/// Inner padding of a table cell.
const PAD_X: f32 = 4.0;
const PAD_Y: f32 = 3.5;

/// Grey of label cells and of section headings.
pub(crate) const LABEL_GREY: u8 = 232;
pub(crate) const SECTION_GREY: u8 = 208;
/// Grey of helper marks (the dashed seal circle and its 盖章处, writing lines).
pub(crate) const GUIDE_GREY: u8 = 110;

/// A rectangle: left, top, width, height.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rect {
    pub(crate) x: f32,
    pub(crate) y: f32,
    pub(crate) w: f32,
    pub(crate) h: f32,
}

impl Rect {
    pub(crate) fn new(x: f32, y: f32, w: f32, h: f32) -> Rect {
        Rect { x, y, w, h }
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn right(&self) -> f32 {
        self.x + self.w
    }

    pub(crate) fn bottom(&self) -> f32 {
        self.y + self.h
    }

    #[cfg_attr(not(test), allow(dead_code))]
    /// Whether `other` lies inside (with a hair of tolerance).
    pub(crate) fn contains(&self, other: &Rect) -> bool {
        const E: f32 = 0.01;
        other.x >= self.x - E
            && other.y >= self.y - E
            && other.right() <= self.right() + E
            && other.bottom() <= self.bottom() + E
    }
}

#[cfg_attr(not(test), allow(dead_code))]
/// One drawing operation. `y` grows downwards from the top of the page.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// Text on one line; `y` is the baseline, `w` the measured width.
    Text {
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        grey: u8,
        text: String,
        w: f32,
        /// The box the text must stay in (its cell), checked by the tests.
        within: Option<Rect>,
    },
    /// A filled rectangle.
    Fill { r: Rect, grey: u8 },
    /// A stroked rectangle.
    Frame { r: Rect, width: f32 },
    /// A straight line.
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: f32,
        grey: u8,
        dash: bool,
    },
    /// An empty checkbox of side `r.w`, ticked when `ticked`.
    Check { r: Rect, ticked: bool },
    /// A dashed circle.
    Circle {
        cx: f32,
        cy: f32,
        radius: f32,
        grey: u8,
    },
    /// A QR code: `n`×`n` modules, `dark` row by row, each module `module` points.
    Qr {
        x: f32,
        y: f32,
        module: f32,
        n: usize,
        dark: Vec<bool>,
    },
}

#[cfg_attr(not(test), allow(dead_code))]
impl Op {
    /// The area the operation paints.
    pub(crate) fn bounds(&self) -> Rect {
        match self {
            Op::Text { x, y, size, w, .. } => Rect::new(*x, y - 0.88 * size, *w, *size),
            Op::Fill { r, .. } | Op::Check { r, .. } => *r,
            Op::Frame { r, width } => Rect::new(
                r.x - width / 2.0,
                r.y - width / 2.0,
                r.w + width,
                r.h + width,
            ),
            Op::Line {
                x1,
                y1,
                x2,
                y2,
                width,
                ..
            } => Rect::new(
                x1.min(*x2) - width / 2.0,
                y1.min(*y2) - width / 2.0,
                (x2 - x1).abs() + width,
                (y2 - y1).abs() + width,
            ),
            Op::Circle { cx, cy, radius, .. } => Rect::new(
                cx - radius - 0.5,
                cy - radius - 0.5,
                2.0 * radius + 1.0,
                2.0 * radius + 1.0,
            ),
            Op::Qr {
                x, y, module, n, ..
            } => Rect::new(*x, *y, *module * *n as f32, *module * *n as f32),
        }
    }
}

/// Font sizes of a document, all multiplied by the fitting scale.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    pub(crate) scale: f32,
}

impl Sizes {
    pub(crate) fn title(&self) -> f32 {
        20.0 * self.scale.max(0.9)
    }
    pub(crate) fn subtitle(&self) -> f32 {
        9.5 * self.scale
    }
    pub(crate) fn section(&self) -> f32 {
        10.5 * self.scale
    }
    pub(crate) fn label(&self) -> f32 {
        9.5 * self.scale
    }
    pub(crate) fn value(&self) -> f32 {
        10.0 * self.scale
    }
    pub(crate) fn body(&self) -> f32 {
        10.5 * self.scale
    }
    pub(crate) fn small(&self) -> f32 {
        (8.5 * self.scale).max(7.5)
    }
    /// Smallest row of a table.
    pub(crate) fn row(&self) -> f32 {
        21.0 * self.scale
    }
}

/// What a table cell holds.
#[derive(Clone, Debug)]
pub(crate) enum Content {
    /// A grey label, centred.
    Label(String),
    /// A value, left-aligned, wrapped.
    Value(String),
    /// A row of checkboxes, wrapped.
    Checks(Vec<(String, bool)>),
    /// A paragraph (wrapped, first line indented by two characters).
    Para(String),
    /// A bold heading on a darker grey.
    Section(String),
    /// Empty, with `n` ruled lines to write on.
    Ruled(usize),
    /// A box to sign in: its label at the top left.
    Sign(String),
    /// A box for the company seal: label at the top, a dashed 42 mm circle marked 盖章处.
    Seal(String),
    /// "____年__月__日" to fill in by hand (or the date, when given), after a label.
    Date(Option<chrono::NaiveDate>),
}

/// A cell: its width and content.
#[derive(Clone, Debug)]
pub(crate) struct Cell {
    pub(crate) w: f32,
    pub(crate) content: Content,
}

pub(crate) fn cell(w: f32, content: Content) -> Cell {
    Cell { w, content }
}

/// The layout of one page.
pub(crate) struct Page<'a> {
    pub(crate) m: &'a Metrics<'a>,
    pub(crate) ops: Vec<Op>,
    /// Cursor: top of the next thing.
    pub(crate) y: f32,
    pub(crate) sz: Sizes,
    table_top: Option<f32>,
}

impl<'a> Page<'a> {
    pub(crate) fn new(m: &'a Metrics<'a>, scale: f32) -> Page<'a> {
        Page {
            m,
            ops: Vec::with_capacity(256),
            y: MARGIN_TOP,
            sz: Sizes { scale },
            table_top: None,
        }
    }

    /// Whether everything lies above the bottom margin.
    pub(crate) fn fits(&self) -> bool {
        self.y <= BOTTOM + 0.01
    }

    pub(crate) fn text_width(&self, text: &str, size: f32, bold: bool) -> f32 {
        self.m.width(text, size, bold)
    }

    /// One line of text at a baseline.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn text_at(
        &mut self,
        x: f32,
        baseline: f32,
        text: &str,
        size: f32,
        bold: bool,
        grey: u8,
        within: Option<Rect>,
    ) -> f32 {
        let w = self.text_width(text, size, bold);
        if !text.is_empty() {
            self.ops.push(Op::Text {
                x,
                y: baseline,
                size,
                bold,
                grey,
                text: text.to_string(),
                w,
                within,
            });
        }
        w
    }

    /// Centred title (and optional subtitle) across the content width; moves the cursor.
    pub(crate) fn title(&mut self, title: &str, subtitle: Option<&str>) {
        // A long title (货物进出口行政许可电子认证证书和电子钥匙申请表) is set smaller so
        // that, centred, it stays clear of the QR code in the top right corner.
        let max_w = PAGE_W - 2.0 * (MARGIN_X + 24.0 * MM);
        let full = self.sz.title();
        let size = (full * max_w / self.text_width(title, full, true)).min(full);
        let w = self.text_width(title, size, true);
        let top = self.y;
        self.text_at(
            (PAGE_W - w) / 2.0,
            top + size * 0.95,
            title,
            size,
            true,
            0,
            None,
        );
        self.y = top + size * 1.35;
        if let Some(sub) = subtitle {
            let s = self.sz.subtitle();
            let w = self.text_width(sub, s, false);
            self.text_at(
                (PAGE_W - w) / 2.0,
                self.y + s * 0.95,
                sub,
                s,
                false,
                0,
                None,
            );
            self.y += s * 1.6;
        }
    }

    /// A QR code of `data` with its quiet zone, top left at (x, y), `size` points wide
    /// including the quiet zone of four modules.
    pub(crate) fn qr(
        &mut self,
        x: f32,
        y: f32,
        size: f32,
        data: &str,
    ) -> Result<(), crate::DocError> {
        let code = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M)
            .map_err(|e| crate::DocError::Qr(e.to_string()))?;
        let n = code.width();
        let module = size / (n + 8) as f32;
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == qrcode::Color::Dark)
            .collect();
        self.ops.push(Op::Qr {
            x: x + 4.0 * module,
            y: y + 4.0 * module,
            module,
            n,
            dark,
        });
        Ok(())
    }

    /// Lines of `text` wrapped to `width`.
    pub(crate) fn wrap(&self, text: &str, width: f32, size: f32, bold: bool) -> Vec<String> {
        wrap(self.m, text, width, size, bold, 0.0)
    }

    /// Starts a bordered table at the cursor.
    pub(crate) fn table_start(&mut self) {
        self.table_top = Some(self.y);
    }

    /// Ends the table: a heavier outer frame.
    pub(crate) fn table_end(&mut self) {
        if let Some(top) = self.table_top.take() {
            self.ops.push(Op::Frame {
                r: Rect::new(MARGIN_X, top, CONTENT_W, self.y - top),
                width: 1.1,
            });
        }
    }

    /// A table row across the content width. The last cell takes what is left.
    pub(crate) fn row(&mut self, cells: &[Cell]) {
        self.row_min(cells, self.sz.row());
    }

    /// A table row with a given smallest height.
    pub(crate) fn row_min(&mut self, cells: &[Cell], min_h: f32) {
        let top = self.y;
        let mut widths: Vec<f32> = cells.iter().map(|c| c.w).collect();
        if let Some(last) = widths.last_mut() {
            let used: f32 = cells.iter().rev().skip(1).map(|c| c.w).sum();
            *last = CONTENT_W - used;
        }
        let h = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| self.content_height(&c.content, *w))
            .fold(min_h, f32::max);
        // Each grid line once: the cells' right edges and the row's bottom edge (the table's
        // outer frame draws the top and the sides).
        let rule = |x1, y1, x2, y2| Op::Line {
            x1,
            y1,
            x2,
            y2,
            width: 0.6,
            grey: 0,
            dash: false,
        };
        let mut x = MARGIN_X;
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            let r = Rect::new(x, top, *w, h);
            self.draw_content(&c.content, r);
            if i + 1 < cells.len() {
                self.ops.push(rule(x + w, top, x + w, top + h));
            }
            x += w;
        }
        self.ops
            .push(rule(MARGIN_X, top + h, MARGIN_X + CONTENT_W, top + h));
        self.y = top + h;
    }

    fn lh(size: f32) -> f32 {
        size * LEADING
    }

    /// Height a content needs in a cell of width `w` (padding included).
    fn content_height(&self, c: &Content, w: f32) -> f32 {
        let inner = w - 2.0 * PAD_X;
        let sz = self.sz;
        match c {
            Content::Label(t) => {
                let n = self.wrap(t, inner, sz.label(), false).len();
                n as f32 * Self::lh(sz.label()) + 2.0 * PAD_Y
            }
            Content::Value(t) => {
                let n = self.wrap(t, inner, sz.value(), false).len().max(1);
                n as f32 * Self::lh(sz.value()) + 2.0 * PAD_Y
            }
            Content::Para(t) => {
                let n = wrap(self.m, t, inner, sz.body(), false, 2.0 * sz.body()).len();
                n as f32 * Self::lh(sz.body()) * 1.05 + 2.0 * PAD_Y + 2.0
            }
            Content::Checks(items) => {
                let n = self.check_lines(items, inner).len();
                n as f32 * Self::lh(sz.value()) * 1.1 + 2.0 * PAD_Y
            }
            Content::Section(_) => Self::lh(sz.section()) + 2.0 * PAD_Y,
            Content::Ruled(n) => *n as f32 * 22.0 * sz.scale,
            Content::Sign(_) | Content::Seal(_) => 0.0,
            Content::Date(_) => Self::lh(sz.value()) + 2.0 * PAD_Y,
        }
    }

    /// Checkbox items placed on lines: (item, x offset) per item on each line. All on one
    /// line when they fit; else in aligned columns (as many as fit).
    fn check_lines(&self, items: &[(String, bool)], inner: f32) -> Vec<Vec<(usize, f32)>> {
        let size = self.sz.value();
        let gap = size * 1.1;
        let widths: Vec<f32> = items
            .iter()
            .map(|(label, _)| size * 0.85 + size * 0.3 + self.text_width(label, size, false))
            .collect();
        let n = items.len().max(1);
        for cols in (1..=n).rev() {
            let mut col_w = vec![0.0f32; cols];
            for (i, w) in widths.iter().enumerate() {
                let c = i % cols;
                col_w[c] = col_w[c].max(*w);
            }
            let used = col_w.iter().sum::<f32>() + gap * (cols - 1) as f32;
            if used <= inner + 0.01 || cols == 1 {
                let mut lines: Vec<Vec<(usize, f32)>> = Vec::new();
                for i in 0..items.len() {
                    let (line, c) = (i / cols, i % cols);
                    if line == lines.len() {
                        lines.push(Vec::new());
                    }
                    let x = col_w[..c].iter().sum::<f32>() + gap * c as f32;
                    lines[line].push((i, x));
                }
                if lines.is_empty() {
                    lines.push(Vec::new());
                }
                return lines;
            }
        }
        vec![Vec::new()]
    }

    /// Baselines of `n` lines of `size`, centred vertically in `r`.
    fn baselines(r: Rect, n: usize, lh: f32, size: f32) -> Vec<f32> {
        let block = n as f32 * lh;
        let top = r.y + (r.h - block) / 2.0;
        (0..n)
            .map(|i| top + i as f32 * lh + lh / 2.0 + EM_MIDDLE * size)
            .collect()
    }

    fn inner(r: Rect) -> Rect {
        Rect::new(
            r.x + PAD_X,
            r.y + PAD_Y,
            r.w - 2.0 * PAD_X,
            r.h - 2.0 * PAD_Y,
        )
    }

    fn draw_content(&mut self, c: &Content, r: Rect) {
        let sz = self.sz;
        let inner = Self::inner(r);
        match c {
            Content::Label(t) => {
                self.ops.push(Op::Fill {
                    r,
                    grey: LABEL_GREY,
                });
                let size = sz.label();
                let lines = self.wrap(t, inner.w, size, false);
                let bases = Self::baselines(r, lines.len(), Self::lh(size), size);
                for (line, b) in lines.iter().zip(bases) {
                    let w = self.text_width(line, size, false);
                    self.text_at(r.x + (r.w - w) / 2.0, b, line, size, false, 0, Some(inner));
                }
            }
            Content::Value(t) => {
                let size = sz.value();
                let lines = self.wrap(t, inner.w, size, false);
                let bases = Self::baselines(r, lines.len(), Self::lh(size), size);
                for (line, b) in lines.iter().zip(bases) {
                    self.text_at(inner.x, b, line, size, false, 0, Some(inner));
                }
            }
            Content::Para(t) => {
                let size = sz.body();
                let indent = 2.0 * size;
                let lines = wrap(self.m, t, inner.w, size, false, indent);
                let lh = Self::lh(size) * 1.05;
                let bases = Self::baselines(r, lines.len(), lh, size);
                for (i, (line, b)) in lines.iter().zip(bases).enumerate() {
                    let x = if i == 0 { inner.x + indent } else { inner.x };
                    self.text_at(x, b, line, size, false, 0, Some(inner));
                }
            }
            Content::Section(t) => {
                self.ops.push(Op::Fill {
                    r,
                    grey: SECTION_GREY,
                });
                let size = sz.section();
                let b = Self::baselines(r, 1, Self::lh(size), size)[0];
                self.text_at(inner.x, b, t, size, true, 0, Some(inner));
            }
            Content::Checks(items) => {
                let size = sz.value();
                let lines = self.check_lines(items, inner.w);
                let lh = Self::lh(size) * 1.1;
                let bases = Self::baselines(r, lines.len(), lh, size);
                let bx = size * 0.85;
                for (line, b) in lines.iter().zip(bases) {
                    for (i, dx) in line {
                        let (label, ticked) = &items[*i];
                        let x = inner.x + dx;
                        let middle = b - EM_MIDDLE * size;
                        self.ops.push(Op::Check {
                            r: Rect::new(x, middle - bx / 2.0, bx, bx),
                            ticked: *ticked,
                        });
                        self.text_at(x + bx + size * 0.3, b, label, size, false, 0, Some(inner));
                    }
                }
            }
            Content::Ruled(n) => {
                // Writing lines, each about where a handwritten line's baseline falls.
                let step = r.h / *n as f32;
                for i in 0..*n {
                    let y = r.y + step * (i as f32 + 0.78);
                    self.ops.push(Op::Line {
                        x1: inner.x,
                        y1: y,
                        x2: inner.x + inner.w,
                        y2: y,
                        width: 0.4,
                        grey: 150,
                        dash: true,
                    });
                }
            }
            Content::Sign(label) => {
                let size = sz.label();
                self.text_at(inner.x, inner.y + size, label, size, true, 0, Some(inner));
            }
            Content::Seal(label) => {
                let size = sz.label();
                self.text_at(inner.x, inner.y + size, label, size, true, 0, Some(inner));
                // A company seal is 40–42 mm across; the circle shows where it goes.
                let top = inner.y + size * 1.5;
                let avail_h = inner.bottom() - top;
                let radius = (21.0 * MM).min(avail_h / 2.0).min(inner.w / 2.0) - 1.0;
                let (cx, cy) = (r.x + r.w / 2.0, top + avail_h / 2.0);
                self.ops.push(Op::Circle {
                    cx,
                    cy,
                    radius,
                    grey: GUIDE_GREY,
                });
                let s = sz.label();
                let t = "盖章处";
                let w = self.text_width(t, s, false);
                self.text_at(
                    cx - w / 2.0,
                    cy + EM_MIDDLE * s,
                    t,
                    s,
                    false,
                    GUIDE_GREY,
                    Some(inner),
                );
            }
            Content::Date(date) => {
                let size = sz.value();
                let b = Self::baselines(r, 1, Self::lh(size), size)[0];
                self.date_fill(inner.x, b, size, *date, Some(inner));
            }
        }
    }

    /// "____年__月__日" with drawn lines to write on, or the date itself; returns the width.
    pub(crate) fn date_fill(
        &mut self,
        x: f32,
        baseline: f32,
        size: f32,
        date: Option<chrono::NaiveDate>,
        within: Option<Rect>,
    ) -> f32 {
        use chrono::Datelike;
        let fields: [(Option<String>, f32, &str); 3] = match date {
            Some(d) => [
                (Some(d.year().to_string()), 3.0, "年"),
                (Some(format!("{:02}", d.month())), 2.0, "月"),
                (Some(format!("{:02}", d.day())), 2.0, "日"),
            ],
            None => [(None, 4.0, "年"), (None, 2.5, "月"), (None, 2.5, "日")],
        };
        let mut cx = x;
        for (value, blank_em, unit) in fields {
            let blank = blank_em * size;
            match value {
                Some(v) => {
                    let w = self.text_width(&v, size, false);
                    self.text_at(cx + (blank - w) / 2.0, baseline, &v, size, false, 0, within);
                }
                None => self.ops.push(Op::Line {
                    x1: cx + 1.0,
                    y1: baseline + 2.0,
                    x2: cx + blank - 1.0,
                    y2: baseline + 2.0,
                    width: 0.5,
                    grey: 0,
                    dash: false,
                }),
            }
            cx += blank;
            cx += self.text_at(cx, baseline, unit, size, false, 0, within);
        }
        cx - x
    }

    /// A free paragraph across the content width (first line indented by `indent` em);
    /// moves the cursor.
    pub(crate) fn paragraph(&mut self, text: &str, size: f32, bold: bool, indent: f32) {
        let lh = size * 1.6;
        let ind = indent * size;
        let area = Rect::new(MARGIN_X, self.y, CONTENT_W, 1000.0);
        for (i, line) in wrap(self.m, text, CONTENT_W, size, bold, ind)
            .iter()
            .enumerate()
        {
            let b = self.y + lh / 2.0 + EM_MIDDLE * size;
            let x = if i == 0 { MARGIN_X + ind } else { MARGIN_X };
            self.text_at(x, b, line, size, bold, 0, Some(area));
            self.y += lh;
        }
    }

    /// Notes under a table: each item wrapped with a hanging indent after its number.
    pub(crate) fn notes(&mut self, head: &str, items: &[String]) {
        let size = self.sz.small();
        let lh = size * 1.45;
        self.y += 6.0;
        let head_w = self.text_width(head, size, true);
        let mut first = true;
        for (i, item) in items.iter().enumerate() {
            let num = format!("{}. ", i + 1);
            let num_w = self.text_width(&num, size, false);
            let x0 = MARGIN_X + head_w;
            let avail = CONTENT_W - head_w - num_w;
            let area = Rect::new(MARGIN_X, self.y, CONTENT_W, 1000.0);
            for (j, line) in self.wrap(item, avail, size, false).iter().enumerate() {
                let b = self.y + lh / 2.0 + EM_MIDDLE * size;
                if first {
                    self.text_at(MARGIN_X, b, head, size, true, 0, Some(area));
                    first = false;
                }
                if j == 0 {
                    self.text_at(x0, b, &num, size, false, 0, Some(area));
                }
                self.text_at(x0 + num_w, b, line, size, false, 0, Some(area));
                self.y += lh;
            }
        }
    }
}

/// Characters that must not begin a line (closing punctuation).
fn no_line_start(c: char) -> bool {
    "，。、；：？！）》」』】”’…%,.;:?!)]}".contains(c)
}

/// Characters that must not end a line (opening punctuation).
fn no_line_end(c: char) -> bool {
    "（《「『【“‘([{".contains(c)
}

/// Wraps `text` into lines no wider than `width` (the first line `indent` narrower).
/// Chinese breaks between any two characters; runs of Latin letters and digits stay
/// together unless longer than a line; closing punctuation never starts a line and opening
/// punctuation never ends one. `\n` forces a break.
pub(crate) fn wrap(
    m: &Metrics<'_>,
    text: &str,
    width: f32,
    size: f32,
    bold: bool,
    indent: f32,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for para in text.split('\n') {
        // Tokens: one CJK character, one space, or a run of other non-space characters.
        let mut tokens: Vec<String> = Vec::new();
        let mut word = String::new();
        for c in para.chars() {
            let latin = c.is_ascii_graphic() && !no_line_start(c) && !no_line_end(c);
            if latin {
                word.push(c);
                continue;
            }
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            tokens.push(c.to_string());
        }
        if !word.is_empty() {
            tokens.push(word);
        }

        let mut lines: Vec<(String, f32)> = vec![(String::new(), 0.0)];
        let avail = |n: usize| {
            if n == 0 && out.is_empty() {
                width - indent
            } else {
                width
            }
        };
        for tok in tokens {
            let tw = m.width(&tok, size, bold);
            let n = lines.len() - 1;
            if lines[n].1 + tw <= avail(n) + 0.01 {
                lines[n].0.push_str(&tok);
                lines[n].1 += tw;
                continue;
            }
            if tok == " " {
                // A space at a break disappears.
                lines.push((String::new(), 0.0));
                continue;
            }
            let first = tok.chars().next().unwrap_or(' ');
            if no_line_start(first) && !lines[n].0.is_empty() {
                // Carry the last character down with the punctuation (and any closing
                // punctuation before it, so that "上传”。" moves as "传”。").
                let mut carried = String::new();
                while let Some(last) = lines[n].0.pop() {
                    carried.insert(0, last);
                    if !no_line_start(last) {
                        break;
                    }
                }
                lines[n].1 = m.width(&lines[n].0, size, bold);
                carried.push_str(&tok);
                let nw = m.width(&carried, size, bold);
                lines.push((carried, nw));
                continue;
            }
            if lines[n].0.chars().last().is_some_and(no_line_end) {
                let last = lines[n].0.pop().expect("non-empty");
                let cw = m.char_width(last, size, bold);
                lines[n].1 -= cw;
                lines.push((last.to_string(), cw));
            } else if !lines[n].0.is_empty() {
                lines.push((String::new(), 0.0));
            }
            // The token on a fresh line; a word longer than a line is cut by characters.
            for c in tok.chars() {
                let cw = m.char_width(c, size, bold);
                let n = lines.len() - 1;
                if lines[n].1 + cw > avail(n) + 0.01 && !lines[n].0.is_empty() {
                    lines.push((c.to_string(), cw));
                } else {
                    lines[n].0.push(c);
                    lines[n].1 += cw;
                }
            }
        }
        for (l, _) in lines {
            out.push(l.trim_end().to_string());
        }
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

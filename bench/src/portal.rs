//! The enterprise portal's two heavy steps: making the printable PDFs and fitting a phone
//! photo under the upload limit. The photo is fitted by eKey in process and by ImageMagick
//! (`convert`, the usual tool for this) on the same file in the same run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use ekey_domain::request::{Kind, LicenceType};

/// Debian's ImageMagick.
pub const CONVERT: &str = "/usr/bin/convert";

/// Runs per document.
pub const DOC_RUNS: usize = 200;
/// Runs of each photo fit (eKey and ImageMagick).
pub const PHOTO_RUNS: usize = 15;

pub struct DocResult {
    pub name: &'static str,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub bytes: usize,
}

pub struct FitResult {
    pub limit: u64,
    pub ours_p50_ms: f64,
    pub ours_bytes: u64,
    pub peer_p50_ms: f64,
    pub peer_bytes: u64,
    pub peer_command: String,
}

pub struct Results {
    pub font_source: String,
    pub font_load_ms: f64,
    pub docs: Vec<DocResult>,
    pub photo_bytes: usize,
    pub photo_dims: (u32, u32),
    pub fits: Vec<FitResult>,
}

fn p(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * q).round() as usize]
}

fn timed<T>(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Vec<f64>, T)> {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        last = Some(out);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((times, last.context("no runs")?))
}

fn sample() -> ekey_docs::RequestDoc {
    ekey_docs::RequestDoc {
        number: "EK322026021200001".into(),
        kind: Kind::First,
        enterprise_name: "江苏鑫达国际贸易有限公司".into(),
        credit_code: "91320106MA1XYW0A36".into(),
        address: "江苏省南京市建邺区江东中路108号万达广场C座2601室".into(),
        legal_representative: "张建国".into(),
        province_name: "江苏省".into(),
        agency_name: "江苏省商务厅".into(),
        licence_types: vec![
            LicenceType::ImportLicence,
            LicenceType::AutoImportMechanical,
            LicenceType::DualUse,
        ],
        login_name: Some("ek320000123".into()),
        reason: Some("公司新设进口业务部，需为新增业务员单独配置电子钥匙。".into()),
        authorised_user: ekey_docs::Person {
            name: "李晓明".into(),
            id_number: "11010519491231002X".into(),
            mobile: "13812345678".into(),
            email: "lixiaoming@example.com".into(),
        },
        key_serial: Some("SK0A1B2C3D4E5F".into()),
        key_lost: false,
        date: chrono::NaiveDate::from_ymd_opt(2026, 2, 12).unwrap_or_default(),
        provider_name: "国富安CA".into(),
    }
}

/// A 4032×3024 phone photo of a printed page (paper grain, lines of "text"), ~4 MB as JPEG.
fn photo() -> anyhow::Result<Vec<u8>> {
    use image::{ImageBuffer, Rgb};
    let (w, h) = (4032u32, 3024u32);
    let mut seed = 0x9e37_79b9_u32;
    let img = ImageBuffer::from_fn(w, h, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let grain = (seed % 40) as i32 - 20;
        let ink = if (y / 36) % 3 == 0 && (x / 9) % 6 != 0 && x > 300 && x < 3700 {
            -150
        } else {
            0
        };
        let shade = (x as i32 + y as i32) / 200;
        let v = |d: i32| (228 - shade + grain + ink + d).clamp(0, 255) as u8;
        Rgb([v(0), v(-3), v(-9)])
    });
    // The size phones produce for such a page: about 4 MB.
    for quality in (70..=92).rev().step_by(2) {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode_image(&img)?;
        if out.len() <= 4_200_000 {
            return Ok(out);
        }
    }
    bail!("could not make a ~4 MB test photo")
}

fn convert_once(input: &Path, output: &Path, limit: u64) -> anyhow::Result<u64> {
    // Debian's ImageMagick by its path: a `convert` earlier on PATH may be something else.
    let status = Command::new(CONVERT)
        .arg(input)
        .args(["-auto-orient", "-resize", "2480x2480>", "-strip"])
        .arg("-define")
        .arg(format!("jpeg:extent={}KB", limit / 1024))
        .arg(output)
        .status()
        .context("running ImageMagick convert (apt-get install imagemagick)")?;
    if !status.success() {
        bail!("convert failed: {status}");
    }
    Ok(std::fs::metadata(output)?.len())
}

pub fn run(work: &Path) -> anyhow::Result<Results> {
    let t = Instant::now();
    let fonts = ekey_docs::Fonts::load(None)?;
    let font_load_ms = t.elapsed().as_secs_f64() * 1e3;
    let doc = sample();
    let mut docs = Vec::new();
    type Make =
        fn(&ekey_docs::Fonts, &ekey_docs::RequestDoc) -> Result<Vec<u8>, ekey_docs::DocError>;
    let makers: [(&'static str, Make); 5] = [
        ("application form (申请表)", ekey_docs::application_form),
        (
            "e-seal confirmation letter (确认函)",
            ekey_docs::confirmation_letter,
        ),
        ("unlock form (解锁申请表)", ekey_docs::unlock_form),
        ("cancellation form (注销申请表)", |f, d| {
            ekey_docs::cancellation_form(f, Some(d))
        }),
        ("blank cancellation form", |f, _| {
            ekey_docs::cancellation_form(f, None)
        }),
    ];
    for (name, make) in makers {
        let (times, bytes) = timed(DOC_RUNS, || Ok(make(&fonts, &doc)?))?;
        eprintln!("  {name}: p50 {:.1} ms", p(&times, 0.5));
        docs.push(DocResult {
            name,
            p50_ms: p(&times, 0.5),
            p95_ms: p(&times, 0.95),
            bytes: bytes.len(),
        });
    }

    let jpeg = photo()?;
    let dims = image::load_from_memory(&jpeg)?;
    let input = work.join("photo.jpg");
    std::fs::write(&input, &jpeg)?;
    let mut fits = Vec::new();
    for limit in [1024 * 1024u64, 200 * 1024] {
        let (ours, fitted) = timed(PHOTO_RUNS, || Ok(ekey_media::fit(&jpeg, limit)?))?;
        if fitted.after > limit {
            bail!("eKey's fit exceeded the limit: {} > {limit}", fitted.after);
        }
        let output = work.join(format!("convert-{limit}.jpg"));
        let (peer, peer_bytes) = timed(PHOTO_RUNS, || convert_once(&input, &output, limit))?;
        eprintln!(
            "  fit to {} KB: eKey p50 {:.0} ms, ImageMagick p50 {:.0} ms",
            limit / 1024,
            p(&ours, 0.5),
            p(&peer, 0.5)
        );
        fits.push(FitResult {
            limit,
            ours_p50_ms: p(&ours, 0.5),
            ours_bytes: fitted.after,
            peer_p50_ms: p(&peer, 0.5),
            peer_bytes,
            peer_command: format!(
                "/usr/bin/convert photo.jpg -auto-orient -resize 2480x2480> -strip -define jpeg:extent={}KB out.jpg",
                limit / 1024
            ),
        });
    }
    Ok(Results {
        font_source: fonts.source().to_string(),
        font_load_ms,
        docs,
        photo_bytes: jpeg.len(),
        photo_dims: (dims.width(), dims.height()),
        fits,
    })
}

pub fn render(s: &mut String, r: &Results) {
    use crate::util::{num, ratio};
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "## 4. Portal: printable documents and photo uploads\n\n\
         Documents: each made {DOC_RUNS} times in process with the fonts loaded once ({}; loading took \
         {:.0} ms at start). Target: p50 ≤ 30 ms. No peer is run for the PDFs: the alternative in \
         use today is a Word template filled and printed by hand.\n",
        r.font_source, r.font_load_ms
    );
    let _ = writeln!(s, "| Document | p50 | p95 | Size |\n|---|---:|---:|---:|");
    for d in &r.docs {
        let _ = writeln!(
            s,
            "| {} | {:.1} ms | {:.1} ms | {} KB |",
            d.name,
            d.p50_ms,
            d.p95_ms,
            num(d.bytes as f64 / 1024.0, 0)
        );
    }
    let _ = writeln!(
        s,
        "\nPhoto: a {}×{} JPEG of {} MB (a phone photo of a stamped page), fitted {PHOTO_RUNS} times \
         each by `ekey_media::fit` (decode, EXIF orientation, resize to ≤ 2480 px, JPEG under the limit) \
         and by ImageMagick `convert` (one process per run, its start included). Target: ≤ 150 ms to 1 MB.\n",
        r.photo_dims.0,
        r.photo_dims.1,
        num(r.photo_bytes as f64 / 1048576.0, 1)
    );
    let _ = writeln!(
        s,
        "| Limit | eKey p50 | eKey output | ImageMagick p50 | ImageMagick output | eKey / peer (time) | Better |\n|---|---:|---:|---:|---:|---:|---|"
    );
    for f in &r.fits {
        let _ = writeln!(
            s,
            "| {} KB | {:.0} ms | {} KB | {:.0} ms | {} KB | {} | lower |",
            f.limit / 1024,
            f.ours_p50_ms,
            num(f.ours_bytes as f64 / 1024.0, 0),
            f.peer_p50_ms,
            num(f.peer_bytes as f64 / 1024.0, 0),
            ratio(f.ours_p50_ms, f.peer_p50_ms)
        );
    }
    if let Some(f) = r.fits.first() {
        let _ = writeln!(s, "\nPeer command: `{}`.\n", f.peer_command);
    }
}

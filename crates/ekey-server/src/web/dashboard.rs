//! Dashboards for staff: requests by state, on-time share per timed step (and per agency
//! for 验核), the ageing of open requests and weekly throughput, drawn as SVG on the server
//! from the database (no chart library, nothing fetched from elsewhere).

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::response::Response;
use chrono::{Datelike, Duration};
use ekey_domain::Lang;
use ekey_domain::calendar::shanghai;
use ekey_domain::request::{Kind, Role, Status};
use ekey_store::{HistoryEntry, RequestFilter};
use minijinja::context;
use minijinja::value::Value;

use super::{Page, error_page};
use crate::state::AppState;

/// Weeks shown.
const WEEKS: i64 = 12;

/// Escapes text for SVG/HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart: one row per (label, value); `suffix` after each value.
pub fn hbar(title: &str, rows: &[(String, f64)], max: Option<f64>, suffix: &str) -> String {
    let max = max
        .unwrap_or_else(|| rows.iter().map(|r| r.1).fold(0.0, f64::max))
        .max(1.0);
    let (label_w, bar_w, row_h) = (170.0, 300.0, 26.0);
    let h = 30.0 + row_h * rows.len().max(1) as f64;
    let mut s = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {} {h}\" aria-label=\"{}\"><title>{}</title>",
        label_w + bar_w + 80.0,
        esc(title),
        esc(title)
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = 20.0 + row_h * i as f64;
        let w = (value / max * bar_w).max(if *value > 0.0 { 2.0 } else { 0.0 });
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"lbl\">{}</text>\
             <rect x=\"{}\" y=\"{}\" width=\"{w:.1}\" height=\"18\" class=\"bar\"/>\
             <text x=\"{}\" y=\"{}\" class=\"val\">{}{}</text>",
            label_w - 8.0,
            y + 13.0,
            esc(label),
            label_w,
            y,
            label_w + w + 6.0,
            y + 13.0,
            fmt_num(*value),
            esc(suffix)
        );
    }
    if rows.is_empty() {
        s.push_str("<text x=\"10\" y=\"40\" class=\"lbl\">—</text>");
    }
    s.push_str("</svg>");
    s
}

/// A vertical bar chart: one column per (label, value).
pub fn vbar(title: &str, cols: &[(String, f64)]) -> String {
    let max = cols.iter().map(|c| c.1).fold(0.0, f64::max).max(1.0);
    let (col_w, chart_h, top) = (44.0, 140.0, 20.0);
    let w = 20.0 + col_w * cols.len().max(1) as f64;
    let mut s = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {w} {}\" aria-label=\"{}\"><title>{}</title>",
        chart_h + top + 40.0,
        esc(title),
        esc(title)
    );
    let base = top + chart_h;
    let _ = write!(
        s,
        "<line x1=\"10\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" class=\"axis\"/>",
        w - 10.0
    );
    for (i, (label, value)) in cols.iter().enumerate() {
        let x = 14.0 + col_w * i as f64;
        let h = value / max * chart_h;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{:.1}\" width=\"{}\" height=\"{h:.1}\" class=\"bar\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"val\">{}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"lbl small\">{}</text>",
            base - h,
            col_w - 10.0,
            x + (col_w - 10.0) / 2.0,
            base - h - 4.0,
            fmt_num(*value),
            x + (col_w - 10.0) / 2.0,
            base + 16.0,
            esc(label)
        );
    }
    s.push_str("</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// A timed step: which entry starts it, which ends it, and its limit in working days.
struct Step {
    zh: &'static str,
    en: &'static str,
    starts: fn(Kind, &HistoryEntry) -> bool,
    ends: &'static [&'static str],
    days: u32,
    agency: bool,
}

const STEPS: &[Step] = &[
    Step {
        zh: "验核（2个工作日）",
        en: "Agency review (2 wd)",
        starts: |_, h| h.to_status == Status::AgencyReview,
        ends: &["agency_approve", "agency_return", "agency_refuse"],
        days: 2,
        agency: true,
    },
    Step {
        zh: "复核与制作（5个工作日）",
        en: "Provider review + production (5 wd)",
        starts: |k, h| k.produces_key() && h.action == "agency_approve",
        ends: &["ship", "provider_return"],
        days: 5,
        agency: false,
    },
    Step {
        zh: "通知领取（3个工作日）",
        en: "Notify (3 wd)",
        starts: |_, h| h.action == "receive_shipment",
        ends: &["notify_collection"],
        days: 3,
        agency: true,
    },
    Step {
        zh: "解锁审核（3个工作日）",
        en: "Unlock review (3 wd)",
        starts: |k, h| k == Kind::Unlock && h.to_status == Status::ProviderReview,
        ends: &["provider_approve", "provider_return"],
        days: 3,
        agency: false,
    },
    Step {
        zh: "注销办结（2个工作日）",
        en: "Cancellation at the provider (2 wd)",
        starts: |k, h| k == Kind::Cancellation && h.action == "agency_approve",
        ends: &["provider_approve", "provider_return"],
        days: 2,
        agency: false,
    },
];

/// The dashboard of the caller's scope (an agency: its province; others: everything).
pub async fn dashboard(State(state): State<AppState>, page: Page) -> Response {
    let auth = match page.require(&[Role::Agency, Role::Provider, Role::Admin]) {
        Ok(a) => a.clone(),
        Err(r) => return r,
    };
    let lang = page.lang;
    let province = (auth.account.role == Role::Agency)
        .then(|| auth.account.province.clone().unwrap_or_default());
    let now = state.clock.now();
    let since = now - Duration::weeks(WEEKS);
    let history = match state.store.history_since(province.as_deref(), since).await {
        Ok(h) => h,
        Err(e) => return error_page(lang, e.into()),
    };
    let open = match state
        .store
        .list_requests(&RequestFilter {
            province: province.clone(),
            limit: 500,
            ..RequestFilter::default()
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return error_page(lang, e.into()),
    };
    let figures = state.with_calendar(|calendar| {
        compute(lang, now, &history, &open, |at, n| {
            calendar.due_at(at, n).at
        })
    });
    let chart = |svg: String| Value::from_safe_string(svg);
    page.render(
        &state,
        "console_dashboard.html",
        context! {
            by_status => chart(hbar(lang.pick("各状态申请数", "Requests by state"), &figures.by_status, None, "")),
            on_time => chart(hbar(lang.pick("按时办结比例", "On time"), &figures.on_time, Some(100.0), "%")),
            by_agency => chart(hbar(lang.pick("各发证机构验核按时率", "Agency review on time, by agency"), &figures.by_agency, Some(100.0), "%")),
            ageing => chart(vbar(lang.pick("在办申请停留天数", "Days waiting"), &figures.ageing)),
            throughput => chart(vbar(lang.pick("每周办结数", "Completed per week"), &figures.throughput)),
            step_counts => super::v(&figures.step_counts),
            open_total => figures.open_total,
            scope => province.as_deref().and_then(ekey_domain::province::by_code).map(|p| lang.pick(p.name_zh, p.name_en)),
        },
    )
    .await
}

/// The dashboard's figures.
pub struct Figures {
    /// (state label, open requests).
    pub by_status: Vec<(String, f64)>,
    /// (step, % on time).
    pub on_time: Vec<(String, f64)>,
    /// (province, % of 验核 on time).
    pub by_agency: Vec<(String, f64)>,
    /// (bucket, open requests).
    pub ageing: Vec<(String, f64)>,
    /// (week starting, completed).
    pub throughput: Vec<(String, f64)>,
    /// (step, done, on time).
    pub step_counts: Vec<(String, usize, usize)>,
    /// Open requests.
    pub open_total: usize,
}

/// Works the figures out of the history and the open requests.
pub fn compute(
    lang: Lang,
    now: chrono::DateTime<chrono::Utc>,
    history: &[(String, Kind, String, HistoryEntry)],
    requests: &[ekey_store::RequestRecord],
    due: impl Fn(chrono::DateTime<chrono::Utc>, u32) -> chrono::DateTime<chrono::FixedOffset>,
) -> Figures {
    let open: Vec<_> = requests
        .iter()
        .filter(|r| !r.status.is_terminal())
        .collect();
    let mut by_status: BTreeMap<usize, (String, f64)> = BTreeMap::new();
    for r in &open {
        let i = Status::ALL.iter().position(|s| *s == r.status).unwrap_or(0);
        by_status
            .entry(i)
            .or_insert_with(|| {
                (
                    lang.pick(r.status.label_zh(), r.status.label_en())
                        .to_string(),
                    0.0,
                )
            })
            .1 += 1.0;
    }
    let buckets: [(&str, &str, i64, i64); 5] = [
        ("0–1天", "0–1 d", 0, 1),
        ("2–3天", "2–3 d", 2, 3),
        ("4–7天", "4–7 d", 4, 7),
        ("8–14天", "8–14 d", 8, 14),
        ("15天以上", "15+ d", 15, i64::MAX),
    ];
    let today = now.with_timezone(&shanghai()).date_naive();
    let mut ageing: Vec<(String, f64)> = buckets
        .iter()
        .map(|b| (lang.pick(b.0, b.1).to_string(), 0.0))
        .collect();
    for r in &open {
        let days = (today - r.updated_at.with_timezone(&shanghai()).date_naive()).num_days();
        if let Some(i) = buckets.iter().position(|b| days >= b.2 && days <= b.3) {
            ageing[i].1 += 1.0;
        }
    }
    // Weekly throughput: requests reaching `completed`, by the Monday of their week.
    let this_monday = today - Duration::days(today.weekday().num_days_from_monday() as i64);
    let mut throughput: Vec<(String, f64)> = (0..WEEKS)
        .rev()
        .map(|w| {
            let d = this_monday - Duration::weeks(w);
            (format!("{}/{}", d.month(), d.day()), 0.0)
        })
        .collect();
    for (_, _, _, h) in history
        .iter()
        .filter(|(_, _, _, h)| h.to_status == Status::Completed)
    {
        let d = h.at.with_timezone(&shanghai()).date_naive();
        let weeks_ago = (this_monday - d).num_days().div_euclid(7) + i64::from(d < this_monday);
        let idx = WEEKS - 1 - weeks_ago.max(0);
        if (0..WEEKS).contains(&idx) {
            throughput[idx as usize].1 += 1.0;
        }
    }
    // On time per step: pair each start with the next end of the same request.
    let mut step_counts = Vec::new();
    let mut on_time = Vec::new();
    let mut agency_rates: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for step in STEPS {
        let (mut done, mut ok) = (0usize, 0usize);
        let mut start: Option<(&str, chrono::DateTime<chrono::Utc>)> = None;
        for (id, kind, province, h) in history {
            if start.is_some_and(|(sid, _)| sid != id.as_str()) {
                start = None;
            }
            if (step.starts)(*kind, h) {
                start = Some((id.as_str(), h.at));
            } else if let Some((_, began)) = start
                && step.ends.contains(&h.action.as_str())
            {
                done += 1;
                let in_time = h.at < due(began, step.days).to_utc();
                ok += usize::from(in_time);
                if step.agency && step.days == 2 {
                    let e = agency_rates.entry(province.clone()).or_default();
                    e.0 += 1;
                    e.1 += usize::from(in_time);
                }
                start = None;
            }
        }
        let label = lang.pick(step.zh, step.en).to_string();
        if done > 0 {
            on_time.push((label.clone(), 100.0 * ok as f64 / done as f64));
        }
        step_counts.push((label, done, ok));
    }
    let by_agency = agency_rates
        .into_iter()
        .map(|(p, (done, ok))| {
            let name = ekey_domain::province::by_code(&p)
                .map(|x| lang.pick(x.name_zh, x.name_en).to_string())
                .unwrap_or(p);
            (name, 100.0 * ok as f64 / done.max(1) as f64)
        })
        .collect();
    Figures {
        by_status: by_status.into_values().collect(),
        on_time,
        by_agency,
        ageing,
        throughput,
        step_counts,
        open_total: open.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, at: &str, action: &str, to: Status) -> HistoryEntry {
        HistoryEntry {
            seq,
            at: chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc(),
            actor_id: String::new(),
            actor_role: Role::Agency,
            action: action.into(),
            from_status: None,
            to_status: to,
            remark: None,
            concerns: Vec::new(),
        }
    }

    #[test]
    fn agency_review_on_time_is_judged_by_working_days() {
        let calendar = ekey_domain::calendar::Calendar::builtin();
        let h =
            |id: &str, p: &str, e: HistoryEntry| (id.to_string(), Kind::First, p.to_string(), e);
        // Confirmed Fri 2026-02-13: due 2026-02-25 00:00 (Spring Festival in between).
        let history = vec![
            h(
                "a",
                "320000",
                entry(
                    1,
                    "2026-02-13T10:00:00+08:00",
                    "confirm_upload",
                    Status::AgencyReview,
                ),
            ),
            h(
                "a",
                "320000",
                entry(
                    2,
                    "2026-02-24T16:00:00+08:00",
                    "agency_approve",
                    Status::ProviderReview,
                ),
            ),
            h(
                "b",
                "110000",
                entry(
                    1,
                    "2026-02-13T10:00:00+08:00",
                    "confirm_upload",
                    Status::AgencyReview,
                ),
            ),
            h(
                "b",
                "110000",
                entry(
                    2,
                    "2026-02-25T09:00:00+08:00",
                    "agency_return",
                    Status::Returned,
                ),
            ),
        ];
        let now = chrono::DateTime::parse_from_rfc3339("2026-02-26T12:00:00+08:00")
            .unwrap()
            .to_utc();
        let f = compute(Lang::Zh, now, &history, &[], |at, n| {
            calendar.due_at(at, n).at
        });
        assert_eq!(f.step_counts[0].1, 2, "two reviews done");
        assert_eq!(
            f.step_counts[0].2, 1,
            "one on time (2/24), one late (2/25 09:00)"
        );
        assert_eq!(f.on_time[0].1, 50.0);
        assert_eq!(
            f.by_agency,
            [("北京市".to_string(), 0.0), ("江苏省".to_string(), 100.0)]
        );
    }

    #[test]
    fn charts_escape_their_text_and_scale_to_the_largest_value() {
        let svg = hbar("<t>", &[("a<b".into(), 5.0), ("c".into(), 10.0)], None, "");
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert!(
            svg.contains("width=\"150.0\"") && svg.contains("width=\"300.0\""),
            "{svg}"
        );
        let svg = vbar("w", &[("1/5".into(), 0.0), ("1/12".into(), 3.0)]);
        assert!(svg.contains("height=\"140.0\""), "{svg}");
    }
}

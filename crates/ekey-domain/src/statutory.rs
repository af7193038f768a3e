//! The public holidays the law itself fixes (《全国年节及纪念日放假办法》, as amended by
//! State Council Decree No. 795 of 2024, in force since 1 January 2025), for a year whose
//! official arrangement (the State Council's yearly notice) has not been loaded yet:
//!
//! - 元旦 1 day (1 January); 春节 4 days (农历除夕 and 正月初一 to 初三); 清明 1 day (the day
//!   of the solar term); 劳动节 2 days (1–2 May); 端午 1 day (农历五月初五); 中秋 1 day
//!   (农历八月十五); 国庆 3 days (1–3 October);
//! - a holiday day that falls on a Saturday or Sunday is made up on a working day (第六条:
//!   “应当在工作日补假”): here the first working day after the festival, the custom of every
//!   arrangement so far. A day on which two festivals fall (中秋 on 1 October) is made up
//!   the same way.
//!
//! What the law leaves to the yearly notice — swapped weekends (调休) and longer breaks — is
//! not guessed: without the notice, Saturdays and Sundays stay days off. Deadlines that
//! count through such a year are provisional, and say so ([`notice`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use crate::Lang;
use crate::calendar::{Calendar, shanghai};
use crate::lunar;

/// The first year the current rules (in force since 2025) are applied to.
pub const FIRST_YEAR: i32 = 2025;
/// The last year the lunar table reaches.
pub const LAST_YEAR: i32 = lunar::LAST_YEAR;

/// One festival of a year.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Festival {
    /// Name in Chinese (元旦, 春节, …).
    pub name_zh: &'static str,
    /// Name in English.
    pub name_en: &'static str,
    /// The days off the law gives it, in order.
    pub days: Vec<NaiveDate>,
}

fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

/// The seven festivals of `year` with the days the law gives them (without make-up days),
/// in calendar order; `None` outside [`FIRST_YEAR`]–[`LAST_YEAR`].
pub fn festivals(year: i32) -> Option<Vec<Festival>> {
    if !(FIRST_YEAR..=LAST_YEAR).contains(&year) {
        return None;
    }
    let spring = lunar::new_year(year)?;
    let spring_days = (-1..=2)
        .map(|i| spring.checked_add_signed(Duration::days(i)))
        .collect::<Option<Vec<_>>>()?;
    let f = |name_zh, name_en, days: Vec<NaiveDate>| Festival {
        name_zh,
        name_en,
        days,
    };
    let mut out = vec![
        f("元旦", "New Year's Day", vec![ymd(year, 1, 1)?]),
        f("春节", "Spring Festival", spring_days),
        f("清明节", "Qingming Festival", vec![lunar::qingming(year)?]),
        f(
            "劳动节",
            "Labour Day",
            vec![ymd(year, 5, 1)?, ymd(year, 5, 2)?],
        ),
        f(
            "端午节",
            "Dragon Boat Festival",
            vec![lunar::to_solar(year, 5, 5)?],
        ),
        f(
            "中秋节",
            "Mid-Autumn Festival",
            vec![lunar::to_solar(year, 8, 15)?],
        ),
        f(
            "国庆节",
            "National Day",
            vec![ymd(year, 10, 1)?, ymd(year, 10, 2)?, ymd(year, 10, 3)?],
        ),
    ];
    out.sort_by_key(|f| f.days[0]);
    Some(out)
}

fn weekend(d: NaiveDate) -> bool {
    d.weekday().number_from_monday() > 5
}

/// Every day off the law gives in `year`: the festivals' days and the make-up days of those
/// falling on a weekend (or on another festival's day).
fn compute(year: i32) -> Option<BTreeSet<NaiveDate>> {
    let mut off = BTreeSet::new();
    for festival in festivals(year)? {
        let mut owed = 0;
        for d in &festival.days {
            if weekend(*d) || !off.insert(*d) {
                owed += 1;
            }
            off.insert(*d);
        }
        let mut d = *festival.days.last()?;
        while owed > 0 {
            d = d.succ_opt()?;
            if !weekend(d) && off.insert(d) {
                owed -= 1;
            }
        }
    }
    Some(off)
}

/// The days off the law fixes for `year` (festivals plus make-up days for those on a
/// weekend); `None` outside [`FIRST_YEAR`]–[`LAST_YEAR`]. Computed once.
pub fn days_off(year: i32) -> Option<&'static BTreeSet<NaiveDate>> {
    static ALL: OnceLock<BTreeMap<i32, BTreeSet<NaiveDate>>> = OnceLock::new();
    ALL.get_or_init(|| {
        (FIRST_YEAR..=LAST_YEAR)
            .filter_map(|y| Some((y, compute(y)?)))
            .collect()
    })
    .get(&year)
}

/// The longest limit of any step, in working days: how far back from its last working day
/// a deadline's count can have started.
const LONGEST_LIMIT: u32 = crate::request::PROVIDER_REVIEW_AND_PRODUCTION_DAYS;

/// The years without an official arrangement that a deadline ending at `due` (00:00 after
/// its last working day) may have been counted through — empty when it is final. Looks back
/// from the last working day over the longest limit of any step.
pub fn provisional_years(calendar: &Calendar, due: DateTime<Utc>) -> Vec<i32> {
    let Some(last) = due.with_timezone(&shanghai()).date_naive().pred_opt() else {
        return Vec::new();
    };
    let mut earliest = last;
    let mut seen = 0;
    let mut d = last;
    // Back over the longest limit's working days, then over the days off before them.
    for _ in 0..400 {
        let working = calendar.is_working_day(d);
        if working && seen == LONGEST_LIMIT {
            break;
        }
        if working {
            seen += 1;
        }
        earliest = d;
        match d.pred_opt() {
            Some(p) => d = p,
            None => break,
        }
    }
    (earliest.year()..=last.year())
        .filter(|y| !calendar.covers(*y))
        .collect()
}

/// What a user reads beside a deadline counted through years without an official
/// arrangement, e.g. “2027年节假日安排尚未发布，本时限暂按法定节日计算，可能调整”;
/// `None` when `years` is empty.
pub fn notice(years: &[i32], lang: Lang) -> Option<String> {
    if years.is_empty() {
        return None;
    }
    Some(match lang {
        Lang::Zh => {
            let list: Vec<String> = years.iter().map(|y| y.to_string()).collect();
            format!(
                "{}年节假日安排尚未发布，本时限暂按法定节日计算，可能调整",
                list.join("、")
            )
        }
        Lang::En => {
            let list: Vec<String> = years.iter().map(|y| y.to_string()).collect();
            format!(
                "The official {} holiday arrangement is not published yet: this deadline counts the statutory holidays for now and may change",
                list.join(" and ")
            )
        }
    })
}

/// [`notice`] for a deadline ending at `due`, as the calendar stands.
pub fn due_notice(calendar: &Calendar, due: DateTime<Utc>, lang: Lang) -> Option<String> {
    notice(&provisional_years(calendar, due), lang)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn off(year: i32) -> Vec<NaiveDate> {
        days_off(year).unwrap().iter().copied().collect()
    }

    #[test]
    fn the_days_off_of_2027_by_the_law() {
        // 元旦 Fri 1/1. 春节: 除夕 Fri 2/5, 初一 Sat 2/6, 初二 Sun 2/7, 初三 Mon 2/8; two
        // weekend days made up on Tue 2/9 and Wed 2/10. 清明 Mon 4/5. 劳动节 Sat 5/1 and
        // Sun 5/2, made up Mon 5/3 and Tue 5/4. 端午 Wed 6/9. 中秋 Wed 9/15. 国庆 Fri 10/1,
        // Sat 10/2, Sun 10/3, made up Mon 10/4 and Tue 10/5.
        assert_eq!(
            off(2027),
            vec![
                d(2027, 1, 1),
                d(2027, 2, 5),
                d(2027, 2, 6),
                d(2027, 2, 7),
                d(2027, 2, 8),
                d(2027, 2, 9),
                d(2027, 2, 10),
                d(2027, 4, 5),
                d(2027, 5, 1),
                d(2027, 5, 2),
                d(2027, 5, 3),
                d(2027, 5, 4),
                d(2027, 6, 9),
                d(2027, 9, 15),
                d(2027, 10, 1),
                d(2027, 10, 2),
                d(2027, 10, 3),
                d(2027, 10, 4),
                d(2027, 10, 5),
            ]
        );
        let names: Vec<_> = festivals(2027).unwrap().iter().map(|f| f.name_zh).collect();
        assert_eq!(
            names,
            [
                "元旦",
                "春节",
                "清明节",
                "劳动节",
                "端午节",
                "中秋节",
                "国庆节"
            ]
        );
    }

    #[test]
    fn mid_autumn_on_national_day_is_made_up() {
        // 2031: 中秋 falls on 1 October (a Wednesday): 10/1–10/3 are 国庆, the second
        // holiday on 10/1 is made up on the next working day, Monday 10/6 (10/4–10/5 are
        // the weekend).
        let y = off(2031);
        assert!(y.contains(&d(2031, 10, 1)));
        assert!(y.contains(&d(2031, 10, 3)));
        assert!(!y.contains(&d(2031, 10, 4)));
        assert!(y.contains(&d(2031, 10, 6)));
        assert!(!y.contains(&d(2031, 10, 7)));
    }

    #[test]
    fn the_law_is_within_every_official_arrangement_2025_2026() {
        // Each day the law gives is off (or, for a weekend made-up day, some nearby day is)
        // in the State Council's arrangement: the statutory festival days themselves are
        // all off in the official files.
        let official = Calendar::builtin();
        for year in [2025, 2026] {
            for f in festivals(year).unwrap() {
                for day in f.days {
                    assert!(
                        !official.is_working_day(day),
                        "{year} {} {day} is a working day in the official arrangement",
                        f.name_zh
                    );
                }
            }
        }
    }

    #[test]
    fn every_year_has_thirteen_days_off_on_weekdays() {
        for year in FIRST_YEAR..=LAST_YEAR {
            let fs = festivals(year).unwrap();
            let days: usize = fs.iter().map(|f| f.days.len()).sum();
            assert_eq!(days, 13, "{year}"); // 1 + 4 + 1 + 2 + 1 + 1 + 3
            let all = days_off(year).unwrap();
            // The festival days that fall on a weekday and no other festival's day, plus one
            // make-up day for each of the others: always 13 weekdays off.
            let weekdays = all.iter().filter(|d| !weekend(**d)).count();
            assert_eq!(weekdays, 13, "{year}: {all:?}");
            assert!(all.iter().all(|d| d.year() == year));
        }
        assert_eq!(days_off(2024), None);
        assert_eq!(days_off(2101), None);
    }

    #[test]
    fn notice_words() {
        assert_eq!(notice(&[], Lang::Zh), None);
        assert_eq!(
            notice(&[2027], Lang::Zh).unwrap(),
            "2027年节假日安排尚未发布，本时限暂按法定节日计算，可能调整"
        );
        assert_eq!(
            notice(&[2027, 2028], Lang::Zh).unwrap(),
            "2027、2028年节假日安排尚未发布，本时限暂按法定节日计算，可能调整"
        );
        assert!(notice(&[2027], Lang::En).unwrap().contains("2027"));
    }

    #[test]
    fn which_deadlines_are_provisional() {
        let cal = Calendar::builtin();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        // Counted within 2026 only.
        assert!(provisional_years(&cal, at("2026-12-24T00:00:00+08:00")).is_empty());
        assert!(provisional_years(&cal, at("2026-12-31T00:00:00+08:00")).is_empty());
        // Its last working day in 2027.
        assert_eq!(
            provisional_years(&cal, at("2027-01-05T00:00:00+08:00")),
            vec![2027]
        );
        // Ends 2026-12-31 (due 2027-01-01 00:00): the count stayed in 2026.
        assert!(provisional_years(&cal, at("2027-01-01T00:00:00+08:00")).is_empty());
        assert!(due_notice(&cal, at("2027-01-05T00:00:00+08:00"), Lang::Zh).is_some());
        let mut loaded = cal.clone();
        loaded
            .load_year_json(
                r#"{"year": 2027, "papers": [], "days": [
                {"name": "元旦", "date": "2027-01-01", "isOffDay": true}]}"#,
            )
            .unwrap();
        assert!(provisional_years(&loaded, at("2027-01-05T00:00:00+08:00")).is_empty());
    }
}

//! The Chinese working-day calendar: weekends and official public holidays are off,
//! make-up working days (调休) are on. Deadlines are counted in working days, Asia/Shanghai
//! time.
//!
//! The State Council's arrangements for 2020–2026, as transcribed by the open `holiday-cn`
//! data set (MIT licence, `data/holiday-cn/`), are built in; an administrator can load a
//! further year in the same format with [`Calendar::load_year_json`]. A year without data is
//! counted on weekends and the holidays the law itself fixes ([`crate::statutory`]: 元旦,
//! 春节, 清明, 劳动节, 端午, 中秋, 国庆, lunar dates computed, without 调休), and every
//! computation that passes through such a year says so (`uncovered_years`) so that callers
//! can mark the result provisional.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Lang;

/// The built-in yearly files, byte-identical copies of the `holiday-cn` data.
const BUILTIN: [&str; 7] = [
    include_str!("../data/holiday-cn/2020.json"),
    include_str!("../data/holiday-cn/2021.json"),
    include_str!("../data/holiday-cn/2022.json"),
    include_str!("../data/holiday-cn/2023.json"),
    include_str!("../data/holiday-cn/2024.json"),
    include_str!("../data/holiday-cn/2025.json"),
    include_str!("../data/holiday-cn/2026.json"),
];

/// Years a file may name.
const YEAR_RANGE: std::ops::RangeInclusive<i64> = 1900..=9999;

/// How far outside its own year a file may list a date (2023's file lists 2022-12-31, the
/// first day of the 2023 New Year break).
const NEIGHBOUR_DAYS: i64 = 31;

/// UTC+08:00. China has used it all year round, without daylight saving, since 1991.
const SHANGHAI: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+08:00 is a valid offset"),
};

/// The time zone of every deadline: Asia/Shanghai, which is UTC+08:00 without daylight
/// saving time (since 1991), so a fixed offset is exact for every date the product handles.
pub fn shanghai() -> FixedOffset {
    SHANGHAI
}

/// A holiday file could not be used; the calendar is unchanged.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CalendarError {
    /// The text is not JSON of the expected shape (`year`, `papers`, `days`).
    #[error("holiday file is not valid JSON: {detail}")]
    InvalidJson {
        /// The parser's explanation, with line and column.
        detail: String,
    },
    /// The file has no `year`.
    #[error("holiday file has no year")]
    MissingYear,
    /// The `year` is not between 1900 and 9999.
    #[error("holiday file year {year} out of range")]
    YearOutOfRange {
        /// The year given.
        year: i64,
    },
    /// The file lists no day at all.
    #[error("holiday file for {year} lists no days")]
    NoDays {
        /// The year of the file.
        year: i32,
    },
    /// A `date` is not a real date written `YYYY-MM-DD`.
    #[error("holiday file has invalid date {value:?}")]
    BadDate {
        /// The text found.
        value: String,
    },
    /// A date lies outside the file's year (more than a month before or after it).
    #[error("date {date} does not belong to the {year} arrangement")]
    DateOutsideYear {
        /// The date.
        date: NaiveDate,
        /// The year of the file.
        year: i32,
    },
    /// The same date is listed both as a day off and as a working day.
    #[error("date {date} is listed both as a day off and as a working day")]
    Conflict {
        /// The date.
        date: NaiveDate,
    },
}

impl CalendarError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        "ekey.calendar.invalid_file"
    }

    /// A sentence for the administrator who loaded the file.
    pub fn message(&self, lang: Lang) -> String {
        use CalendarError::*;
        let zh = lang == Lang::Zh;
        match self {
            InvalidJson { detail } => {
                if zh {
                    format!(
                        "节假日文件格式不正确：应为含 year、papers、days 的 JSON 文件（{detail}）"
                    )
                } else {
                    format!(
                        "The holiday file is not valid: expected JSON with year, papers and days ({detail})"
                    )
                }
            }
            MissingYear => lang
                .pick(
                    "节假日文件缺少年份（year）",
                    "The holiday file does not say which year it is for (year)",
                )
                .into(),
            YearOutOfRange { year } => {
                if zh {
                    format!("节假日文件的年份 {year} 无效，应在 1900–9999 之间")
                } else {
                    format!("The holiday file's year {year} is invalid; it must be 1900–9999")
                }
            }
            NoDays { year } => {
                if zh {
                    format!("{year} 年的节假日文件没有列出任何日期")
                } else {
                    format!("The holiday file for {year} lists no days")
                }
            }
            BadDate { value } => {
                if zh {
                    format!("节假日文件中的日期“{value}”无效，应为 YYYY-MM-DD 格式的真实日期")
                } else {
                    format!(
                        "The date \"{value}\" in the holiday file is invalid; use a real date as YYYY-MM-DD"
                    )
                }
            }
            DateOutsideYear { date, year } => {
                if zh {
                    format!("日期 {date} 不属于 {year} 年的节假日安排")
                } else {
                    format!("The date {date} does not belong to the {year} holiday arrangement")
                }
            }
            Conflict { date } => {
                if zh {
                    format!("日期 {date} 同时被标为放假和调休上班")
                } else {
                    format!("The date {date} is listed both as a day off and as a working day")
                }
            }
        }
    }
}

/// The result of counting working days forward.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkingDay {
    /// The working day reached.
    pub date: NaiveDate,
    /// Years without holiday data that the count passed through (counted on weekends
    /// alone); empty when every year was covered.
    pub uncovered_years: Vec<i32>,
}

/// When a step with a limit in working days becomes overdue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Due {
    /// The instant the step becomes overdue: 00:00 Shanghai time after the last working day
    /// (that is, 24:00 of the last working day).
    pub at: DateTime<FixedOffset>,
    /// The last working day of the limit.
    pub last_working_day: NaiveDate,
    /// Years without holiday data that the count passed through; empty when all covered.
    pub uncovered_years: Vec<i32>,
}

/// The days one yearly file declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct YearData {
    /// Public holiday days off.
    off: BTreeSet<NaiveDate>,
    /// Make-up working days.
    work: BTreeSet<NaiveDate>,
}

/// A working-day calendar: per year, the official days off and make-up working days.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calendar {
    years: BTreeMap<i32, YearData>,
}

#[derive(Deserialize)]
struct RawFile {
    year: Option<serde_json::Value>,
    #[allow(dead_code)]
    papers: Vec<String>,
    days: Vec<RawDay>,
}

#[derive(Deserialize)]
struct RawDay {
    #[allow(dead_code)]
    name: String,
    date: String,
    #[serde(rename = "isOffDay")]
    is_off_day: bool,
}

impl Calendar {
    /// A calendar without any holiday data: weekends only.
    pub fn empty() -> Self {
        Calendar::default()
    }

    /// The calendar with the built-in arrangements for 2020–2026.
    pub fn builtin() -> Self {
        let mut cal = Calendar::empty();
        for json in BUILTIN {
            // The built-in files are fixed and covered by tests.
            cal.load_year_json(json)
                .expect("built-in holiday data is valid");
        }
        cal
    }

    /// Reads one yearly file in the `holiday-cn` format
    /// (`{"year": 2026, "papers": [...], "days": [{"name", "date", "isOffDay"}]}`),
    /// checks it and adds the year, replacing any data held for it. Returns the year.
    pub fn load_year_json(&mut self, json: &str) -> Result<i32, CalendarError> {
        let raw: RawFile = serde_json::from_str(json).map_err(|e| CalendarError::InvalidJson {
            detail: e.to_string(),
        })?;
        let year = match raw.year {
            None | Some(serde_json::Value::Null) => return Err(CalendarError::MissingYear),
            Some(v) => v.as_i64().ok_or_else(|| CalendarError::InvalidJson {
                detail: format!("year must be an integer, found {v}"),
            })?,
        };
        if !YEAR_RANGE.contains(&year) {
            return Err(CalendarError::YearOutOfRange { year });
        }
        let year = year as i32;
        if raw.days.is_empty() {
            return Err(CalendarError::NoDays { year });
        }
        let (first, last) = match (
            NaiveDate::from_ymd_opt(year, 1, 1),
            NaiveDate::from_ymd_opt(year, 12, 31),
        ) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err(CalendarError::YearOutOfRange { year: year.into() }),
        };
        let mut data = YearData::default();
        for day in &raw.days {
            let date = parse_date(&day.date).ok_or_else(|| CalendarError::BadDate {
                value: day.date.clone(),
            })?;
            let before = (first - date).num_days();
            let after = (date - last).num_days();
            if before > NEIGHBOUR_DAYS || after > NEIGHBOUR_DAYS {
                return Err(CalendarError::DateOutsideYear { date, year });
            }
            let (mine, other) = if day.is_off_day {
                (&mut data.off, &data.work)
            } else {
                (&mut data.work, &data.off)
            };
            if other.contains(&date) {
                return Err(CalendarError::Conflict { date });
            }
            mine.insert(date);
        }
        self.years.insert(year, data);
        Ok(year)
    }

    /// The years with holiday data, ascending.
    pub fn covered_years(&self) -> Vec<i32> {
        self.years.keys().copied().collect()
    }

    /// Whether holiday data is held for `year`.
    pub fn covers(&self, year: i32) -> bool {
        self.years.contains_key(&year)
    }

    /// What the data says about `d`: `Some(true)` a make-up working day, `Some(false)` a
    /// holiday day off, `None` nothing. The file of the date's own year wins over a
    /// neighbouring year's file.
    fn declared(&self, d: NaiveDate) -> Option<bool> {
        let y = d.year();
        [Some(y), y.checked_add(1), y.checked_sub(1)]
            .into_iter()
            .flatten()
            .filter_map(|y| self.years.get(&y))
            .find_map(|data| {
                if data.work.contains(&d) {
                    Some(true)
                } else if data.off.contains(&d) {
                    Some(false)
                } else {
                    None
                }
            })
    }

    /// Whether `d` is a working day: a make-up working day is, a holiday day off is not,
    /// otherwise Monday to Friday are.
    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        self.declared(d)
            .or_else(|| self.statutory_off(d).then_some(false))
            .unwrap_or_else(|| is_weekday(d))
    }

    /// Whether `d` lies in a year without data and is a day off the law itself fixes there.
    fn statutory_off(&self, d: NaiveDate) -> bool {
        !self.covers(d.year())
            && crate::statutory::days_off(d.year()).is_some_and(|off| off.contains(&d))
    }

    /// The number of working days `d` with `from < d <= to`; negative (minus the number
    /// with `to < d <= from`) when `to` is before `from`, 0 when they are equal. For ageing
    /// ("waiting 3 working days") and lateness ("overdue by 2 working days").
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> i64 {
        if to < from {
            return -self.working_days_between(to, from);
        }
        let mut count = weekdays_through(to) - weekdays_through(from);
        // Correct for every date in (from, to] some file declares.
        let mut declared = BTreeSet::new();
        let years = from.year().saturating_sub(1)..=to.year().saturating_add(1);
        for data in self.years.range(years).map(|(_, d)| d) {
            for set in [&data.off, &data.work] {
                declared.extend(
                    set.range((
                        std::ops::Bound::Excluded(from),
                        std::ops::Bound::Included(to),
                    ))
                    .copied(),
                );
            }
        }
        // And for the statutory holidays of the years without data.
        let statutory = crate::statutory::FIRST_YEAR.max(from.year())
            ..=crate::statutory::LAST_YEAR.min(to.year());
        for y in statutory.filter(|y| !self.covers(*y)) {
            if let Some(off) = crate::statutory::days_off(y) {
                declared.extend(
                    off.range((
                        std::ops::Bound::Excluded(from),
                        std::ops::Bound::Included(to),
                    ))
                    .copied(),
                );
            }
        }
        for d in declared {
            count += i64::from(self.is_working_day(d)) - i64::from(is_weekday(d));
        }
        count
    }

    /// The `n`th working day after `start` (`start` itself never counts; `n = 0` gives
    /// `start`). Saturates at the last representable date for absurdly large `n`.
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> WorkingDay {
        if n == 0 {
            return WorkingDay {
                date: start,
                uncovered_years: Vec::new(),
            };
        }
        let n = i64::from(n);
        let base = day_number(start);
        let max = day_number(NaiveDate::MAX);
        let count_to = |offset: i64| self.working_days_between(start, date_at(base + offset));
        // Find an offset far enough, then the first day at which the count reaches n.
        let mut lo = 0i64; // count(lo) < n
        let mut hi = n * 7 / 5 + 14;
        loop {
            if base + hi >= max {
                hi = max - base;
                if hi <= 0 || count_to(hi) < n {
                    return self.reached(start, NaiveDate::MAX);
                }
                break;
            }
            if count_to(hi) >= n {
                break;
            }
            lo = hi;
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if count_to(mid) >= n {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        self.reached(start, date_at(base + hi))
    }

    /// The result of a count from `start` (exclusive) that ended at `date`.
    fn reached(&self, start: NaiveDate, date: NaiveDate) -> WorkingDay {
        let first = start.succ_opt().unwrap_or(start).year();
        let uncovered_years = (first..=date.year()).filter(|y| !self.covers(*y)).collect();
        WorkingDay {
            date,
            uncovered_years,
        }
    }

    /// When a step with a limit of `n` working days, started by `event`, becomes overdue:
    /// the event's day is taken in Shanghai time and does not count; the step is due by
    /// 24:00 of the `n`th working day after it.
    pub fn due_at(&self, event: DateTime<Utc>, n: u32) -> Due {
        let tz = shanghai();
        // Checked, so that an instant at the very end of chrono's range cannot panic.
        let day = event
            .naive_utc()
            .checked_add_offset(tz)
            .map_or(NaiveDate::MAX, |local| local.date());
        let WorkingDay {
            date,
            uncovered_years,
        } = self.add_working_days(day, n);
        let at = date
            .succ_opt()
            .and_then(|next| {
                next.and_time(NaiveTime::MIN)
                    .and_local_timezone(tz)
                    .single()
            })
            .unwrap_or_else(|| DateTime::<Utc>::MAX_UTC.with_timezone(&tz));
        Due {
            at,
            last_working_day: date,
            uncovered_years,
        }
    }
}

/// Strictly `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Monday to Friday.
fn is_weekday(d: NaiveDate) -> bool {
    d.weekday().number_from_monday() <= 5
}

/// Days since 0000-12-31 (0001-01-01, a Monday, is day 1).
fn day_number(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce())
}

/// The date of a day number that lies between the numbers of `NaiveDate::MIN` and `MAX`.
fn date_at(n: i64) -> NaiveDate {
    i32::try_from(n)
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .unwrap_or(NaiveDate::MAX)
}

/// The number of Mondays to Fridays from a fixed origin through `d`; differences give the
/// count over a range.
fn weekdays_through(d: NaiveDate) -> i64 {
    let n = day_number(d);
    // Day 1 is a Monday, so day n is a weekday when n mod 7 is 1..=5.
    5 * n.div_euclid(7) + n.rem_euclid(7).min(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// What the raw built-in files say about a date (`Some(is_working)`), read independently
    /// of `Calendar`.
    fn raw_declared(date: NaiveDate) -> Option<bool> {
        let mut found = None;
        for json in BUILTIN {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            for day in v["days"].as_array().unwrap() {
                if day["date"] == date.format("%Y-%m-%d").to_string() {
                    found = Some(!day["isOffDay"].as_bool().unwrap());
                }
            }
        }
        found
    }

    /// Day-by-day reference for `working_days_between`.
    fn slow_between(cal: &Calendar, from: NaiveDate, to: NaiveDate) -> i64 {
        let (a, b, sign) = if from <= to {
            (from, to, 1)
        } else {
            (to, from, -1)
        };
        let mut n = 0;
        let mut x = a;
        while x < b {
            x = x.succ_opt().unwrap();
            n += i64::from(cal.is_working_day(x));
        }
        sign * n
    }

    #[test]
    fn shanghai_is_utc_plus_8() {
        assert_eq!(shanghai().local_minus_utc(), 8 * 3600);
    }

    #[test]
    fn builtin_covers_2020_to_2026() {
        let cal = Calendar::builtin();
        assert_eq!(cal.covered_years(), (2020..=2026).collect::<Vec<_>>());
        assert!(cal.covers(2026));
        assert!(!cal.covers(2027));
        assert!(!cal.covers(2019));
    }

    #[test]
    fn builtin_agrees_with_the_files() {
        let cal = Calendar::builtin();
        for json in BUILTIN {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            for day in v["days"].as_array().unwrap() {
                let date = parse_date(day["date"].as_str().unwrap()).unwrap();
                let off = day["isOffDay"].as_bool().unwrap();
                assert_eq!(cal.is_working_day(date), !off, "{date}");
            }
        }
    }

    #[test]
    fn spring_festival_2026() {
        let cal = Calendar::builtin();
        // The facts, as the data file states them.
        assert_eq!(raw_declared(d(2026, 2, 14)), Some(true));
        assert_eq!(raw_declared(d(2026, 2, 28)), Some(true));
        for day in 15..=23 {
            assert_eq!(raw_declared(d(2026, 2, day)), Some(false));
            assert!(!cal.is_working_day(d(2026, 2, day)));
        }
        assert!(cal.is_working_day(d(2026, 2, 14))); // Saturday worked
        assert!(cal.is_working_day(d(2026, 2, 28))); // Saturday worked
        assert!(!cal.is_working_day(d(2026, 2, 16))); // Monday off
        assert!(cal.is_working_day(d(2026, 2, 24)));

        let wd = cal.add_working_days(d(2026, 2, 13), 2);
        assert_eq!(wd.date, d(2026, 2, 24));
        assert!(wd.uncovered_years.is_empty());
        assert_eq!(cal.add_working_days(d(2026, 2, 13), 1).date, d(2026, 2, 14));

        let due = cal.due_at(utc("2026-02-13T01:00:00Z"), 2);
        assert_eq!(due.last_working_day, d(2026, 2, 24));
        assert_eq!(
            due.at,
            DateTime::parse_from_rfc3339("2026-02-25T00:00:00+08:00").unwrap()
        );
        assert_eq!(due.at.to_rfc3339(), "2026-02-25T00:00:00+08:00");
        assert!(due.uncovered_years.is_empty());

        // 20:00 UTC on the 12th is 04:00 on the 13th in Shanghai.
        let due2 = cal.due_at(utc("2026-02-12T20:00:00Z"), 2);
        assert_eq!(due2, due);
        // 15:59 UTC on the 12th is still the 12th (Thursday) in Shanghai.
        let due3 = cal.due_at(utc("2026-02-12T15:59:59Z"), 2);
        assert_eq!(due3.last_working_day, d(2026, 2, 14));

        assert_eq!(cal.working_days_between(d(2026, 2, 13), d(2026, 2, 24)), 2);
        assert_eq!(cal.working_days_between(d(2026, 2, 24), d(2026, 2, 13)), -2);
        assert_eq!(cal.working_days_between(d(2026, 2, 14), d(2026, 2, 23)), 0);
    }

    #[test]
    fn national_day_2025() {
        let cal = Calendar::builtin();
        assert_eq!(raw_declared(d(2025, 9, 28)), Some(true));
        assert_eq!(raw_declared(d(2025, 10, 11)), Some(true));
        for day in 1..=8 {
            assert_eq!(raw_declared(d(2025, 10, day)), Some(false));
            assert!(!cal.is_working_day(d(2025, 10, day)));
        }
        assert!(cal.is_working_day(d(2025, 9, 28))); // Sunday worked
        assert!(cal.is_working_day(d(2025, 10, 11))); // Saturday worked
        assert_eq!(cal.add_working_days(d(2025, 9, 26), 1).date, d(2025, 9, 28));
        assert_eq!(cal.add_working_days(d(2025, 9, 30), 1).date, d(2025, 10, 9));
        assert_eq!(
            cal.add_working_days(d(2025, 9, 30), 2).date,
            d(2025, 10, 10)
        );
        assert_eq!(
            cal.add_working_days(d(2025, 9, 30), 3).date,
            d(2025, 10, 11)
        );
        assert_eq!(
            cal.add_working_days(d(2025, 9, 30), 4).date,
            d(2025, 10, 13)
        );
        assert_eq!(cal.working_days_between(d(2025, 9, 30), d(2025, 10, 13)), 4);
    }

    #[test]
    fn spring_festival_2024() {
        let cal = Calendar::builtin();
        assert_eq!(raw_declared(d(2024, 2, 4)), Some(true));
        assert_eq!(raw_declared(d(2024, 2, 18)), Some(true));
        for day in 10..=17 {
            assert_eq!(raw_declared(d(2024, 2, day)), Some(false));
        }
        assert_eq!(cal.add_working_days(d(2024, 2, 8), 1).date, d(2024, 2, 9));
        assert_eq!(cal.add_working_days(d(2024, 2, 9), 1).date, d(2024, 2, 18));
        assert_eq!(cal.add_working_days(d(2024, 2, 9), 2).date, d(2024, 2, 19));
        assert_eq!(cal.add_working_days(d(2024, 2, 2), 1).date, d(2024, 2, 4));
    }

    #[test]
    fn labour_day_2023() {
        let cal = Calendar::builtin();
        assert_eq!(raw_declared(d(2023, 4, 23)), Some(true));
        assert_eq!(raw_declared(d(2023, 5, 6)), Some(true));
        for (m, day) in [(4, 29), (4, 30), (5, 1), (5, 2), (5, 3)] {
            assert_eq!(raw_declared(d(2023, m, day)), Some(false));
        }
        assert_eq!(cal.add_working_days(d(2023, 4, 28), 1).date, d(2023, 5, 4));
        assert_eq!(cal.add_working_days(d(2023, 4, 28), 3).date, d(2023, 5, 6));
        assert_eq!(cal.add_working_days(d(2023, 4, 28), 4).date, d(2023, 5, 8));
        assert_eq!(cal.add_working_days(d(2023, 4, 21), 1).date, d(2023, 4, 23));
    }

    #[test]
    fn neighbouring_year_date_2022_12_31() {
        // 2023.json lists 2022-12-31 (a Saturday) as the first day of the New Year break.
        assert_eq!(raw_declared(d(2022, 12, 31)), Some(false));
        let mut cal = Calendar::empty();
        cal.load_year_json(BUILTIN[3]).unwrap();
        assert_eq!(cal.covered_years(), vec![2023]);
        assert!(!cal.is_working_day(d(2022, 12, 31)));
        assert!(!cal.is_working_day(d(2023, 1, 2)));
    }

    #[test]
    fn year_without_data_counts_weekends_and_statutory_holidays() {
        let cal = Calendar::builtin();
        // 2031-03-06 is a Thursday.
        let wd = cal.add_working_days(d(2031, 3, 6), 3);
        assert_eq!(wd.date, d(2031, 3, 11));
        assert_eq!(wd.uncovered_years, vec![2031]);
        // 2031-10-01 is National Day (and Mid-Autumn): off by the law, without any 调休.
        assert!(!cal.is_working_day(d(2031, 10, 1)));
        assert!(!cal.is_working_day(d(2031, 10, 4)));
        let due = cal.due_at(utc("2031-03-06T02:00:00Z"), 3);
        assert_eq!(due.uncovered_years, vec![2031]);
        assert_eq!(due.at.to_rfc3339(), "2031-03-12T00:00:00+08:00");

        // 2027-01-01 (元旦, a Friday) is not a working day even before 2027's file exists.
        assert!(!cal.is_working_day(d(2027, 1, 1)));
        // Counting across the end of the data: Thu 12/31 = 1, Fri 1/1 元旦, Mon 1/4 = 2 …
        let wd = cal.add_working_days(d(2026, 12, 30), 5);
        assert_eq!(wd.date, d(2027, 1, 7));
        assert_eq!(wd.uncovered_years, vec![2027]);
        let due = cal.due_at(utc("2026-12-30T02:00:00Z"), 2);
        assert_eq!(due.at.to_rfc3339(), "2027-01-05T00:00:00+08:00");
        assert_eq!(due.uncovered_years, vec![2027]);
        // Spring Festival 2027 by the law: 2/5–2/10 off (with two make-up days).
        assert_eq!(cal.add_working_days(d(2027, 2, 4), 1).date, d(2027, 2, 11));
        // Within 2026 only: nothing to report.
        assert!(
            cal.add_working_days(d(2026, 12, 29), 2)
                .uncovered_years
                .is_empty()
        );
        // Passing through several uncovered years.
        let wd = cal.add_working_days(d(2026, 12, 31), 600);
        assert_eq!(wd.uncovered_years, vec![2027, 2028, 2029]);
    }

    #[test]
    fn zero_and_properties() {
        let cal = Calendar::builtin();
        let sat = d(2026, 3, 7);
        assert_eq!(
            cal.add_working_days(sat, 0),
            WorkingDay {
                date: sat,
                uncovered_years: vec![]
            }
        );
        let due = cal.due_at(utc("2026-03-07T03:00:00Z"), 0);
        assert_eq!(due.at.to_rfc3339(), "2026-03-08T00:00:00+08:00");
        // Every start in the covered range, n in 1..=6: the result is a working day, exactly
        // n working days after the start, and the first such day.
        let mut start = d(2019, 12, 20);
        while start < d(2027, 1, 10) {
            for n in 1..=6u32 {
                let r = cal.add_working_days(start, n).date;
                assert!(cal.is_working_day(r), "{start} + {n}");
                assert_eq!(cal.working_days_between(start, r), i64::from(n));
                assert_eq!(
                    cal.working_days_between(start, r.pred_opt().unwrap()),
                    i64::from(n) - 1
                );
            }
            start = start.succ_opt().unwrap();
        }
    }

    #[test]
    fn between_matches_day_by_day_count() {
        let cal = Calendar::builtin();
        let mut from = d(2019, 11, 1);
        while from < d(2027, 3, 1) {
            for span in [0i64, 1, 2, 6, 7, 13, 40, 400] {
                let to = from + chrono::Duration::days(span);
                assert_eq!(
                    cal.working_days_between(from, to),
                    slow_between(&cal, from, to),
                    "{from}..{to}"
                );
                assert_eq!(
                    cal.working_days_between(to, from),
                    slow_between(&cal, to, from)
                );
            }
            from += chrono::Duration::days(3);
        }
        // Whole weeks without data: five per week, less the law's 13 weekdays off but
        // 元旦 (1/1, before the range).
        assert_eq!(
            cal.working_days_between(d(2031, 1, 5), d(2031, 12, 28)),
            51 * 5 - 12
        );
    }

    #[test]
    fn huge_counts_saturate() {
        let cal = Calendar::empty();
        let wd = cal.add_working_days(d(2026, 1, 1), u32::MAX);
        assert_eq!(wd.date, NaiveDate::MAX);
        let wd = cal.add_working_days(NaiveDate::MAX, 1);
        assert_eq!(wd.date, NaiveDate::MAX);
        let due = cal.due_at(DateTime::<Utc>::MAX_UTC, 1);
        assert_eq!(due.last_working_day, NaiveDate::MAX);
        let far = cal.add_working_days(d(2026, 1, 1), 5_000_000);
        assert!(far.date.year() > 20_000);
        assert_eq!(cal.working_days_between(d(2026, 1, 1), far.date), 5_000_000);
    }

    const FILE_2027: &str = r#"{
        "year": 2027,
        "papers": ["https://example.invalid/hypothetical"],
        "days": [
            {"name": "元旦", "date": "2027-01-01", "isOffDay": true},
            {"name": "春节", "date": "2027-02-06", "isOffDay": false},
            {"name": "春节", "date": "2027-02-08", "isOffDay": true},
            {"name": "春节", "date": "2027-02-09", "isOffDay": true}
        ]
    }"#;

    #[test]
    fn load_year_round_trip() {
        let mut cal = Calendar::builtin();
        // Before the file: the law's days off, no 调休 (Saturday 2/6 is 初一).
        assert!(!cal.is_working_day(d(2027, 1, 1)));
        assert!(!cal.is_working_day(d(2027, 2, 6)));
        assert!(!cal.is_working_day(d(2027, 2, 9)));
        assert_eq!(cal.load_year_json(FILE_2027), Ok(2027));
        assert!(cal.covers(2027));
        assert_eq!(cal.covered_years(), (2020..=2027).collect::<Vec<_>>());
        assert!(!cal.is_working_day(d(2027, 1, 1))); // Friday off
        assert!(cal.is_working_day(d(2027, 2, 6))); // Saturday worked
        assert!(!cal.is_working_day(d(2027, 2, 8))); // Monday off
        let wd = cal.add_working_days(d(2026, 12, 30), 2);
        assert_eq!(wd.date, d(2027, 1, 4));
        assert!(wd.uncovered_years.is_empty());
        assert_eq!(cal.add_working_days(d(2027, 2, 5), 1).date, d(2027, 2, 6));
        assert_eq!(cal.add_working_days(d(2027, 2, 6), 1).date, d(2027, 2, 10));

        // Loading the year again replaces it.
        let replacement = r#"{"year": 2027, "papers": [], "days": [
            {"name": "元旦", "date": "2027-01-01", "isOffDay": true}]}"#;
        assert_eq!(cal.load_year_json(replacement), Ok(2027));
        assert!(!cal.is_working_day(d(2027, 1, 1)));
        assert!(!cal.is_working_day(d(2027, 2, 6)));
        assert!(cal.is_working_day(d(2027, 2, 8)));
    }

    #[test]
    fn invalid_files_rejected() {
        let mut cal = Calendar::builtin();
        let before = cal.clone();
        type Check = fn(&CalendarError) -> bool;
        let cases: Vec<(&str, Check)> = vec![
            ("not json", |e| {
                matches!(e, CalendarError::InvalidJson { .. })
            }),
            ("[]", |e| matches!(e, CalendarError::InvalidJson { .. })),
            (r#"{"year": 2027, "papers": []}"#, |e| {
                matches!(e, CalendarError::InvalidJson { .. })
            }),
            (
                r#"{"year": "2027", "papers": [], "days": [{"name": "x", "date": "2027-01-01", "isOffDay": true}]}"#,
                |e| matches!(e, CalendarError::InvalidJson { .. }),
            ),
            (
                r#"{"papers": [], "days": [{"name": "x", "date": "2027-01-01", "isOffDay": true}]}"#,
                |e| *e == CalendarError::MissingYear,
            ),
            (
                r#"{"year": 27, "papers": [], "days": [{"name": "x", "date": "0027-01-01", "isOffDay": true}]}"#,
                |e| *e == CalendarError::YearOutOfRange { year: 27 },
            ),
            (r#"{"year": 2027, "papers": [], "days": []}"#, |e| {
                *e == CalendarError::NoDays { year: 2027 }
            }),
            (
                r#"{"year": 2027, "papers": [], "days": [{"name": "x", "date": "2027-02-30", "isOffDay": true}]}"#,
                |e| matches!(e, CalendarError::BadDate { value } if value == "2027-02-30"),
            ),
            (
                r#"{"year": 2027, "papers": [], "days": [{"name": "x", "date": "2027-2-3", "isOffDay": true}]}"#,
                |e| matches!(e, CalendarError::BadDate { .. }),
            ),
            (
                r#"{"year": 2027, "papers": [], "days": [{"name": "x", "date": "2025-10-01", "isOffDay": true}]}"#,
                |e| {
                    *e == CalendarError::DateOutsideYear {
                        date: NaiveDate::from_ymd_opt(2025, 10, 1).unwrap(),
                        year: 2027,
                    }
                },
            ),
            (
                r#"{"year": 2027, "papers": [], "days": [
                    {"name": "x", "date": "2027-10-01", "isOffDay": true},
                    {"name": "y", "date": "2027-10-01", "isOffDay": false}]}"#,
                |e| {
                    *e == CalendarError::Conflict {
                        date: NaiveDate::from_ymd_opt(2027, 10, 1).unwrap(),
                    }
                },
            ),
        ];
        for (json, check) in cases {
            let e = cal.load_year_json(json).unwrap_err();
            assert!(check(&e), "{json}: {e:?}");
            assert_eq!(e.code(), "ekey.calendar.invalid_file");
            assert!(!e.message(Lang::Zh).is_empty());
            assert!(!e.message(Lang::En).is_empty());
            assert_eq!(cal, before, "calendar changed by a rejected file");
        }
        // A date listed twice the same way is fine.
        let dup = r#"{"year": 2027, "papers": [], "days": [
            {"name": "x", "date": "2027-10-01", "isOffDay": true},
            {"name": "x", "date": "2027-10-01", "isOffDay": true}]}"#;
        assert_eq!(cal.load_year_json(dup), Ok(2027));
    }

    #[test]
    fn error_messages() {
        let e = CalendarError::Conflict {
            date: d(2027, 10, 1),
        };
        assert_eq!(
            e.message(Lang::Zh),
            "日期 2027-10-01 同时被标为放假和调休上班"
        );
        assert_eq!(
            e.message(Lang::En),
            "The date 2027-10-01 is listed both as a day off and as a working day"
        );
    }
}

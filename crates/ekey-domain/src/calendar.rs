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
mod tests;

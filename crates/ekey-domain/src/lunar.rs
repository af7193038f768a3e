//! The Chinese lunisolar calendar (农历) for 2000–2100, as far as the statutory holidays
//! need it: the Gregorian date of a lunar month's day, and the solar term 清明.
//!
//! One number per lunar year, in the widely used encoding of the Purple Mountain
//! Observatory's tables (the same as the Hong Kong Observatory's conversion tables, with the
//! 2033 correction: 闰十一月, not 闰七月):
//! bits 0–3 the leap month (0 = none), bits 4–15 the lengths of months 12 down to 1
//! (bit 15 is month 1; set = 30 days, clear = 29), bit 16 the length of the leap month.
//! The year starts (正月初一) where the previous one ended; 2000 started on 2000-02-05.
//! Unit tests check the table against published dates of 春节, 端午 and 中秋, against the
//! State Council's arrangements of 2020–2026, and 清明 against a published solar-term table.

use chrono::{Duration, NaiveDate};

/// The first lunar year in the table.
pub const FIRST_YEAR: i32 = 2000;
/// The last lunar year in the table.
pub const LAST_YEAR: i32 = 2100;

/// 正月初一 of [`FIRST_YEAR`].
const FIRST_NEW_YEAR: (i32, u32, u32) = (2000, 2, 5);

#[rustfmt::skip]
const YEARS: [u32; (LAST_YEAR - FIRST_YEAR + 1) as usize] = [
    0x0c960, 0x0d954, 0x0d4a0, 0x0da50, 0x07552, 0x056a0, 0x0abb7, 0x025d0, 0x092d0, 0x0cab5, // 2000–2009
    0x0a950, 0x0b4a0, 0x0baa4, 0x0ad50, 0x055d9, 0x04ba0, 0x0a5b0, 0x15176, 0x052b0, 0x0a930, // 2010–2019
    0x07954, 0x06aa0, 0x0ad50, 0x05b52, 0x04b60, 0x0a6e6, 0x0a4e0, 0x0d260, 0x0ea65, 0x0d530, // 2020–2029
    0x05aa0, 0x076a3, 0x096d0, 0x04afb, 0x04ad0, 0x0a4d0, 0x1d0b6, 0x0d250, 0x0d520, 0x0dd45, // 2030–2039
    0x0b5a0, 0x056d0, 0x055b2, 0x049b0, 0x0a577, 0x0a4b0, 0x0aa50, 0x1b255, 0x06d20, 0x0ada0, // 2040–2049
    0x14b63, 0x09370, 0x049f8, 0x04970, 0x064b0, 0x168a6, 0x0ea50, 0x06b20, 0x1a6c4, 0x0aae0, // 2050–2059
    0x092e0, 0x0d2e3, 0x0c960, 0x0d557, 0x0d4a0, 0x0da50, 0x05d55, 0x056a0, 0x0a6d0, 0x055d4, // 2060–2069
    0x052d0, 0x0a9b8, 0x0a950, 0x0b4a0, 0x0b6a6, 0x0ad50, 0x055a0, 0x0aba4, 0x0a5b0, 0x052b0, // 2070–2079
    0x0b273, 0x06930, 0x07337, 0x06aa0, 0x0ad50, 0x14b55, 0x04b60, 0x0a570, 0x054e4, 0x0d160, // 2080–2089
    0x0e968, 0x0d520, 0x0daa0, 0x16aa6, 0x056d0, 0x04ae0, 0x0a9d4, 0x0a2d0, 0x0d150, 0x0f252, // 2090–2099
    0x0d520, // 2100
];

/// One lunar month of a year, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Month {
    number: u32,
    leap: bool,
    days: i64,
}

fn code(year: i32) -> Option<u32> {
    let i = usize::try_from(year.checked_sub(FIRST_YEAR)?).ok()?;
    YEARS.get(i).copied()
}

/// The months of a lunar year, leap month after its namesake.
fn months(year: i32) -> Option<Vec<Month>> {
    let c = code(year)?;
    let leap = c & 0xf;
    let mut out = Vec::with_capacity(13);
    for number in 1..=12u32 {
        let long = c & (0x10000 >> number) != 0;
        out.push(Month {
            number,
            leap: false,
            days: if long { 30 } else { 29 },
        });
        if number == leap {
            out.push(Month {
                number,
                leap: true,
                days: if c & 0x10000 != 0 { 30 } else { 29 },
            });
        }
    }
    Some(out)
}

/// The number of days of a lunar year.
fn year_days(year: i32) -> Option<i64> {
    Some(months(year)?.iter().map(|m| m.days).sum())
}

/// 正月初一 (Spring Festival) of lunar `year`, 2000–2100.
pub fn new_year(year: i32) -> Option<NaiveDate> {
    code(year)?;
    let (y, m, d) = FIRST_NEW_YEAR;
    let mut date = NaiveDate::from_ymd_opt(y, m, d)?;
    for earlier in FIRST_YEAR..year {
        date = date.checked_add_signed(Duration::days(year_days(earlier)?))?;
    }
    Some(date)
}

/// The Gregorian date of day `day` of the (ordinary, not leap) lunar month `month` of lunar
/// `year`; `None` outside 2000–2100 or for a day the month does not have.
pub fn to_solar(year: i32, month: u32, day: u32) -> Option<NaiveDate> {
    let mut date = new_year(year)?;
    for m in months(year)? {
        if m.number == month && !m.leap {
            if day == 0 || i64::from(day) > m.days {
                return None;
            }
            return date.checked_add_signed(Duration::days(i64::from(day) - 1));
        }
        date = date.checked_add_signed(Duration::days(m.days))?;
    }
    None
}

/// 除夕: the last day of lunar `year` - 1, the eve of [`new_year`]`(year)`.
pub fn new_years_eve(year: i32) -> Option<NaiveDate> {
    new_year(year)?.pred_opt()
}

/// 清明, the solar term at which the Sun reaches 15° of longitude, as a date in China
/// (UTC+8), for 2000–2100: 4 or 5 April. The classic formula of the 21st century
/// (`⌊0.2422·Y + 4.81⌋ − L`, Y the year within the century, L the leap days since 2000),
/// checked in the tests against a published table of the solar terms for every year.
pub fn qingming(year: i32) -> Option<NaiveDate> {
    if !(FIRST_YEAR..=LAST_YEAR).contains(&year) {
        return None;
    }
    let y = f64::from(year - 2000);
    let leaps = |y: i32| y / 4 - y / 100 + y / 400;
    let day = (y * 0.2422 + 4.81).floor() as i32 - (leaps(year) - leaps(2000));
    NaiveDate::from_ymd_opt(year, 4, u32::try_from(day).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn spring_festival_dates() {
        let published = [
            (2000, 2, 5),
            (2020, 1, 25),
            (2021, 2, 12),
            (2022, 2, 1),
            (2023, 1, 22),
            (2024, 2, 10),
            (2025, 1, 29),
            (2026, 2, 17),
            (2027, 2, 6),
            (2028, 1, 26),
            (2029, 2, 13),
            (2030, 2, 3),
            (2031, 1, 23),
            (2032, 2, 11),
            (2033, 1, 31),
            (2034, 2, 19),
            (2035, 2, 8),
            (2036, 1, 28),
            (2037, 2, 15),
            (2038, 2, 4),
            (2039, 1, 24),
            (2040, 2, 12),
            (2041, 2, 1),
            (2042, 1, 22),
            (2043, 2, 10),
            (2044, 1, 30),
            (2045, 2, 17),
            (2046, 2, 6),
            (2047, 1, 26),
            (2048, 2, 14),
            (2049, 2, 2),
            (2050, 1, 23),
        ];
        for (y, m, day) in published {
            assert_eq!(new_year(y), Some(d(y, m, day)), "春节 {y}");
            assert_eq!(to_solar(y, 1, 1), Some(d(y, m, day)));
        }
        assert_eq!(new_years_eve(2027), Some(d(2027, 2, 5)));
        assert_eq!(new_years_eve(2026), Some(d(2026, 2, 16)));
    }

    #[test]
    fn dragon_boat_and_mid_autumn() {
        let published = [
            (2025, (5, 31), (10, 6)),
            (2026, (6, 19), (9, 25)),
            (2027, (6, 9), (9, 15)),
            (2028, (5, 28), (10, 3)),
            (2029, (6, 16), (9, 22)),
            (2030, (6, 5), (9, 12)),
            (2031, (6, 24), (10, 1)),
            // 2033 has its leap month after the 11th month (the "2033 problem").
            (2033, (6, 1), (9, 8)),
        ];
        for (y, (dm, dd), (mm, md)) in published {
            assert_eq!(to_solar(y, 5, 5), Some(d(y, dm, dd)), "端午 {y}");
            assert_eq!(to_solar(y, 8, 15), Some(d(y, mm, md)), "中秋 {y}");
        }
        assert_eq!(new_year(2034), Some(d(2034, 2, 19)));
    }

    #[test]
    fn every_year_is_a_lunar_year_long() {
        for y in FIRST_YEAR..=LAST_YEAR {
            let n = months(y).unwrap().len();
            let days = year_days(y).unwrap();
            match n {
                12 => assert!((353..=355).contains(&days), "{y}: {days}"),
                13 => assert!((383..=385).contains(&days), "{y}: {days}"),
                _ => panic!("{y}: {n} months"),
            }
            let ny = new_year(y).unwrap();
            // 春节 falls between 21 January and 20 February.
            assert!(ny >= d(y, 1, 21) && ny <= d(y, 2, 20), "{y}: {ny}");
        }
        assert_eq!(new_year(1999), None);
        assert_eq!(new_year(2101), None);
        assert_eq!(to_solar(2027, 13, 1), None);
        assert_eq!(to_solar(2027, 1, 31), None);
        assert_eq!(to_solar(2027, 1, 0), None);
    }

    #[test]
    fn qingming_matches_the_published_solar_terms() {
        // The day in April of 清明 for 2000, 2001, …, 2100, as a published table of the 24
        // solar terms (Purple Mountain Observatory data) gives it.
        const TABLE: &str = "45554555445544554455445544554455445544554445444544454445444544454445444544444444444444444444444444445";
        assert_eq!(TABLE.len(), 101);
        for (i, c) in TABLE.chars().enumerate() {
            let y = FIRST_YEAR + i as i32;
            let day = c.to_digit(10).unwrap();
            assert_eq!(qingming(y), Some(d(y, 4, day)), "清明 {y}");
        }
        assert_eq!(qingming(2027), Some(d(2027, 4, 5)));
        assert_eq!(qingming(2101), None);
    }
}

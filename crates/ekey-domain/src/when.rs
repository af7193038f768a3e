//! Dates and times as people read them, the one place they are written for people (pages,
//! mails, SMS): `2026年12月8日 14:30` in Chinese, `8 December 2026, 14:30` in English, in
//! Beijing time. Machines get RFC 3339 elsewhere.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike};

use crate::Lang;
use crate::calendar::shanghai;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A day: `2026年12月8日` / `8 December 2026`.
pub fn date(d: NaiveDate, lang: Lang) -> String {
    match lang {
        Lang::Zh => format!("{}年{}月{}日", d.year(), d.month(), d.day()),
        Lang::En => format!("{} {} {}", d.day(), MONTHS[d.month0() as usize], d.year()),
    }
}

/// An instant in Beijing time: `2026年12月8日 14:30` / `8 December 2026, 14:30`.
pub fn datetime<Tz: TimeZone>(t: &DateTime<Tz>, lang: Lang) -> String {
    let local = t.with_timezone(&shanghai());
    let day = date(local.date_naive(), lang);
    let sep = match lang {
        Lang::Zh => " ",
        Lang::En => ", ",
    };
    format!("{day}{sep}{:02}:{:02}", local.hour(), local.minute())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_people_read_them() {
        let t = DateTime::parse_from_rfc3339("2026-12-08T06:30:00Z").unwrap();
        assert_eq!(datetime(&t, Lang::Zh), "2026年12月8日 14:30");
        assert_eq!(datetime(&t, Lang::En), "8 December 2026, 14:30");
        let d = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        assert_eq!(date(d, Lang::Zh), "2027年1月1日");
        assert_eq!(date(d, Lang::En), "1 January 2027");
        // Midnight in Beijing is the evening before in UTC.
        let t = DateTime::parse_from_rfc3339("2026-02-24T16:00:00Z").unwrap();
        assert_eq!(datetime(&t, Lang::Zh), "2026年2月25日 00:00");
    }
}

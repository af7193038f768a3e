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

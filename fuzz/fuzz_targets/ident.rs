//! The text parsers of registration and request forms: unified social credit code, resident
//! ID number, mobile, email, province code, login name, unlock challenge, the machine names
//! of kinds and states, and the holiday file an administrator uploads. Any text is accepted
//! or refused, never a panic; what is accepted is normalised for good (parsing it again gives
//! the same value, and so does a JSON round trip).
#![no_main]

use std::fmt::Debug;

use chrono::{Datelike, NaiveDate};
use ekey_domain::Lang;
use ekey_domain::calendar::Calendar;
use ekey_domain::ident::{CreditCode, Email, IdNumber, IdentError, Mobile};
use ekey_domain::province;
use ekey_domain::request::{
    Kind, LicenceType, Role, Status, check_login_name, normalise_challenge,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses `text`; when accepted, checks that the value is a fixed point of `parse` and of
/// a JSON round trip, and that the error otherwise speaks both languages.
fn check<T>(text: &str, parse: fn(&str) -> Result<T, IdentError>, show: fn(&T) -> &str) -> Option<T>
where
    T: Debug + PartialEq + Serialize + DeserializeOwned,
{
    match parse(text) {
        Ok(v) => {
            assert_eq!(parse(show(&v)).as_ref(), Ok(&v), "{text:?}");
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v);
            Some(v)
        }
        Err(e) => {
            assert!(e.code().starts_with("ekey.ident."));
            assert!(!e.message(Lang::Zh).is_empty());
            assert_ne!(e.message(Lang::Zh), e.message(Lang::En));
            // Deserialising refuses it too (a value read from JSON is as valid as one typed).
            let json = serde_json::to_string(text).unwrap();
            assert!(serde_json::from_str::<T>(&json).is_err());
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    if let Some(code) = check(text, CreditCode::parse, CreditCode::as_str) {
        let s = code.as_str();
        assert_eq!(s.len(), 18);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        );
    }
    if let Some(id) = check(text, IdNumber::parse, IdNumber::as_str) {
        assert!(id.birth_date().year() >= 1900);
        let masked = id.masked();
        assert_eq!(masked.len(), 18);
        assert!(masked[6..14].bytes().all(|b| b == b'*'));
    }
    if let Some(mobile) = check(text, Mobile::parse, Mobile::as_str) {
        assert_eq!(mobile.as_str().len(), 11);
        assert_eq!(mobile.masked().len(), 11);
    }
    if let Some(email) = check(text, Email::parse, Email::as_str) {
        assert!(email.domain().contains('.'));
        assert!(email.as_str().chars().count() <= 254);
    }

    if let Some(p) = province::by_code(text) {
        assert_eq!(p.code, text.trim());
        assert!(province::agency_defaults_for(text).is_some());
    }
    if check_login_name(text).is_ok() {
        assert!((3..=32).contains(&text.len()));
    }
    if let Ok(challenge) = normalise_challenge(text) {
        assert_eq!(normalise_challenge(&challenge).as_ref(), Ok(&challenge));
    }
    if let Ok(kind) = Kind::parse(text) {
        assert_eq!(kind.as_str(), text);
    }
    if let Ok(licence) = LicenceType::parse(text) {
        assert_eq!(licence.as_str(), text);
    }
    if let Some(status) = Status::parse(text) {
        assert_eq!(status.as_str(), text);
    }
    if let Some(role) = Role::parse(text) {
        assert_eq!(role.as_str(), text);
    }
    let _ = Lang::from_accept_language(Some(text));

    // The holiday file of `PUT /api/v1/admin/holidays`; then a count of working days
    // across the year it declares agrees with the working day it lands on.
    let mut calendar = Calendar::empty();
    match calendar.load_year_json(text) {
        Ok(year) => {
            assert!(calendar.covers(year));
            let start = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
            let n = u32::from(data.len() as u8);
            let reached = calendar.add_working_days(start, n);
            assert_eq!(
                calendar.working_days_between(start, reached.date),
                i64::from(n)
            );
        }
        Err(e) => {
            assert_ne!(e.message(Lang::Zh), e.message(Lang::En));
        }
    }
});

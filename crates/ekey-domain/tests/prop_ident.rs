//! Properties of the identifier parsers over generated values: every well-formed identifier
//! is accepted however it is typed (blanks, case, full-width forms) and comes back the same;
//! every single wrong character and every wrong check character is refused; no text at all
//! makes a parser panic, and what a parser accepts it accepts again unchanged (also through
//! JSON). The fuzz target `fuzz/fuzz_targets/ident.rs` explores arbitrary bytes; these
//! properties say what the right answers are.

use chrono::{Datelike, NaiveDate};
use ekey_domain::Lang;
use ekey_domain::ident::{CreditCode, Email, IdNumber, IdentError, Mobile};
use ekey_domain::request::{check_login_name, normalise_challenge};
use proptest::prelude::*;
use proptest::sample::select;

/// The 31 characters of the credit code alphabet, in value order (GB 32100-2015).
const CREDIT_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

fn credit_check(first17: &[u8]) -> u8 {
    let mut weight = 1u32;
    let mut sum = 0u32;
    for &c in first17 {
        let value = CREDIT_CHARSET.iter().position(|&x| x == c).unwrap() as u32;
        sum += value * weight;
        weight = weight * 3 % 31;
    }
    CREDIT_CHARSET[((31 - sum % 31) % 31) as usize]
}

fn id_check(first17: &[u8]) -> u8 {
    let sum: u32 = first17
        .iter()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * ((1u32 << (17 - i)) % 11))
        .sum();
    b"10X98765432"[(sum % 11) as usize]
}

/// The GB 11714 check character of an organisation code body (characters 9–16).
fn org_check(body: &[u8]) -> u8 {
    const W: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body
        .iter()
        .zip(W)
        .map(|(&b, w)| char::from(b).to_digit(36).unwrap() * w)
        .sum();
    match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        d => b'0' + d as u8,
    }
}

/// A valid credit code: 16 characters of the alphabet, the organisation code's check
/// character (GB 11714) and the code's own check character (GB 32100).
fn credit_code() -> impl Strategy<Value = String> {
    proptest::collection::vec(select(&CREDIT_CHARSET[..]), 16).prop_map(|mut chars| {
        chars.push(org_check(&chars[8..16]));
        let check = credit_check(&chars);
        chars.push(check);
        String::from_utf8(chars).unwrap()
    })
}

/// A valid ID number: region, a real date of birth from 1900 on, sequence, check.
fn id_number() -> impl Strategy<Value = String> {
    (100_000u32..=999_999, 0i64..(365 * 130), 0u32..=999).prop_map(|(region, days, sequence)| {
        let birth = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + chrono::Duration::days(days);
        let first17 = format!("{region}{}{sequence:03}", birth.format("%Y%m%d"));
        let check = id_check(first17.as_bytes());
        format!("{first17}{}", char::from(check))
    })
}

fn mobile() -> impl Strategy<Value = String> {
    (3u8..=9, 0u64..1_000_000_000).prop_map(|(second, rest)| format!("1{second}{rest:09}"))
}

fn email() -> impl Strategy<Value = String> {
    (
        "[a-z0-9]([a-z0-9._+-]{0,20}[a-z0-9])?",
        proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 2..4),
    )
        .prop_filter("no doubled dot", |(local, _)| !local.contains(".."))
        .prop_map(|(local, labels)| format!("{local}@{}", labels.join(".")))
}

/// ASCII as a Chinese input method types it: full-width forms.
fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap(),
            _ => c,
        })
        .collect()
}

/// Surrounding blanks as pasted from a document: spaces, tabs, the ideographic space.
fn blanks() -> impl Strategy<Value = String> {
    proptest::collection::vec(select(vec![' ', '\t', '\u{3000}', '\n']), 0..3)
        .prop_map(|v| v.into_iter().collect())
}

/// Text that is mostly made of what identifiers are made of, so that near misses are common.
fn identifier_like() -> impl Strategy<Value = String> {
    let pieces = select(vec![
        "0", "1", "9", "X", "x", "A", "Y", "I", "O", "@", ".", "-", "+86", "86", " ", "\u{3000}",
        "９", "Ｘ", "ｘ", "＠", "İ", "ß", "码", "\u{0}", "..", "a", "com", "\u{FF10}",
    ]);
    prop_oneof![
        proptest::collection::vec(pieces, 0..24).prop_map(|v| v.concat()),
        any::<String>(),
        "\\PC{0,300}",
    ]
}

/// The checks every parser's outcome must pass: an accepted value is a fixed point of
/// `parse` and of JSON; a refusal has a code and a message in both languages.
fn fixed_point<T>(
    text: &str,
    parse: fn(&str) -> Result<T, IdentError>,
    show: fn(&T) -> &str,
) -> Result<(), TestCaseError>
where
    T: std::fmt::Debug + PartialEq + serde::Serialize + serde::de::DeserializeOwned,
{
    match parse(text) {
        Ok(v) => {
            let again = parse(show(&v));
            prop_assert_eq!(again.as_ref(), Ok(&v));
            let json = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v);
        }
        Err(e) => {
            prop_assert!(e.code().starts_with("ekey.ident."));
            prop_assert!(!e.message(Lang::Zh).is_empty());
            prop_assert_ne!(e.message(Lang::Zh), e.message(Lang::En));
            let json = serde_json::to_string(text).unwrap();
            prop_assert!(serde_json::from_str::<T>(&json).is_err());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_valid_credit_code_is_accepted_however_typed(
        code in credit_code(),
        before in blanks(),
        after in blanks(),
        lower in any::<bool>(),
        wide in any::<bool>(),
    ) {
        let mut typed = if lower { code.to_lowercase() } else { code.clone() };
        if wide {
            typed = full_width(&typed);
        }
        let parsed = CreditCode::parse(&format!("{before}{typed}{after}")).unwrap();
        prop_assert_eq!(parsed.as_str(), code.as_str());
        prop_assert_eq!(parsed.to_string().parse::<CreditCode>().unwrap(), parsed);
    }

    #[test]
    fn a_credit_code_with_a_wrong_check_character_is_refused(
        code in credit_code(),
        wrong in select(&CREDIT_CHARSET[..]),
    ) {
        prop_assume!(code.as_bytes()[17] != wrong);
        let bad = format!("{}{}", &code[..17], char::from(wrong));
        prop_assert_eq!(CreditCode::parse(&bad), Err(IdentError::CreditCodeCheck));
    }

    #[test]
    fn one_wrong_character_or_a_swap_in_a_credit_code_is_refused(
        code in credit_code(),
        position in 0usize..18,
        replacement in select(&CREDIT_CHARSET[..]),
        swap in any::<bool>(),
    ) {
        let mut bytes = code.clone().into_bytes();
        if swap {
            // Two neighbours exchanged: the weights differ, so the sum does.
            let at = position.min(16);
            prop_assume!(bytes[at] != bytes[at + 1]);
            bytes.swap(at, at + 1);
        } else {
            prop_assume!(bytes[position] != replacement);
            bytes[position] = replacement;
        }
        let bad = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(CreditCode::parse(&bad), Err(IdentError::CreditCodeCheck));
    }

    #[test]
    fn a_valid_id_number_is_accepted_however_typed(
        id in id_number(),
        before in blanks(),
        after in blanks(),
        wide in any::<bool>(),
    ) {
        let mut typed = id.replace('X', "x");
        if wide {
            typed = full_width(&typed);
        }
        let parsed = IdNumber::parse(&format!("{before}{typed}{after}")).unwrap();
        prop_assert_eq!(parsed.as_str(), id.as_str());
        let birth = &id[6..14];
        prop_assert_eq!(parsed.birth_date().format("%Y%m%d").to_string(), birth);
        prop_assert!(parsed.birth_date().year() >= 1900);
        prop_assert_eq!(parsed.masked(), format!("{}********{}", &id[..6], &id[14..]));
    }

    #[test]
    fn an_id_number_with_one_wrong_character_is_refused(
        id in id_number(),
        position in 0usize..18,
        digit in 0u8..=10,
    ) {
        let replacement = if digit == 10 { b'X' } else { b'0' + digit };
        let mut bytes = id.clone().into_bytes();
        prop_assume!(bytes[position] != replacement);
        bytes[position] = replacement;
        let bad = String::from_utf8(bytes).unwrap();
        // A wrong check character, a date that is no date, an X out of place: refused.
        prop_assert!(IdNumber::parse(&bad).is_err(), "{} accepted", bad);
    }

    #[test]
    fn a_valid_mobile_is_accepted_with_or_without_the_country_code(
        number in mobile(),
        prefix in select(vec!["", "+86", "86", "+86 ", "86-", "+86-"]),
        wide in any::<bool>(),
    ) {
        let mut typed = format!("{prefix}{number}");
        if wide {
            typed = full_width(&typed);
        }
        let parsed = Mobile::parse(&typed).unwrap();
        prop_assert_eq!(parsed.as_str(), number.as_str());
        prop_assert_eq!(parsed.masked(), format!("{}****{}", &number[..3], &number[7..]));
    }

    #[test]
    fn a_mobile_with_a_digit_too_many_or_too_few_is_refused(number in mobile(), more in any::<bool>()) {
        let bad = if more { format!("{number}0") } else { number[..10].to_string() };
        prop_assert_eq!(Mobile::parse(&bad), Err(IdentError::MobileInvalid));
    }

    #[test]
    fn a_valid_email_is_accepted_in_any_case(address in email(), upper in any::<bool>()) {
        let typed = if upper { address.to_uppercase() } else { address.clone() };
        let parsed = Email::parse(&typed).unwrap();
        prop_assert_eq!(parsed.as_str(), address.as_str());
        prop_assert_eq!(parsed.domain(), address.split_once('@').unwrap().1);
    }

    #[test]
    fn an_email_without_exactly_one_at_is_refused(address in email(), twice in any::<bool>()) {
        let bad = if twice { format!("{address}@x.cn") } else { address.replace('@', "") };
        prop_assert!(Email::parse(&bad).is_err());
    }

    #[test]
    fn no_text_makes_a_parser_panic_and_accepted_values_are_fixed_points(
        text in identifier_like(),
    ) {
        fixed_point(&text, CreditCode::parse, CreditCode::as_str)?;
        fixed_point(&text, IdNumber::parse, IdNumber::as_str)?;
        fixed_point(&text, Mobile::parse, Mobile::as_str)?;
        fixed_point(&text, Email::parse, Email::as_str)?;
        if check_login_name(&text).is_ok() {
            prop_assert!((3..=32).contains(&text.len()));
        }
        if let Ok(challenge) = normalise_challenge(&text) {
            prop_assert_eq!(normalise_challenge(&challenge), Ok(challenge.clone()));
            prop_assert!(challenge.len() % 2 == 0);
        }
        let _ = ekey_domain::province::by_code(&text);
    }
}

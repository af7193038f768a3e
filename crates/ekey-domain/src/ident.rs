//! Identifier types that can only hold valid values: the unified social credit code
//! (GB 32100-2015), the resident ID number (GB 11643-1999), a mainland mobile number and an
//! email address.
//!
//! Every type is built through `parse`, which normalises the input (trims it, upper- or
//! lower-cases it, turns full-width ASCII into half-width) and then checks it. Deserialising
//! goes through `parse` as well, so a value read from JSON or from the database is as valid as
//! one typed by a user.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::Lang;

/// An identifier could not be accepted. Nothing is revealed that would help to forge a
/// check character.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentError {
    /// The unified social credit code does not have 18 characters.
    #[error("credit code must have 18 characters, {len} given")]
    CreditCodeLength {
        /// Number of characters given (after trimming).
        len: usize,
    },
    /// The unified social credit code holds a character outside its alphabet
    /// (digits and upper-case letters except I, O, Z, S, V).
    #[error("credit code has invalid character {ch:?} at position {position}")]
    CreditCodeChar {
        /// The offending character (after normalisation).
        ch: char,
        /// 1-based position of the character.
        position: usize,
    },
    /// The check character (the 18th) of the unified social credit code is wrong.
    #[error("credit code check character is wrong")]
    CreditCodeCheck,
    /// Characters 9–17 of the unified social credit code (the organisation code, GB 11714)
    /// fail their own check character, the 17th.
    #[error("credit code organisation code check character is wrong")]
    CreditCodeOrgCheck,
    /// The resident ID number does not have 18 characters.
    #[error("ID number must have 18 characters, {len} given")]
    IdNumberLength {
        /// Number of characters given (after trimming).
        len: usize,
    },
    /// The resident ID number holds a character that is not a digit (or X in the last place).
    #[error("ID number has invalid character {ch:?} at position {position}")]
    IdNumberChar {
        /// The offending character (after normalisation).
        ch: char,
        /// 1-based position of the character.
        position: usize,
    },
    /// Characters 7–14 of the resident ID number are not a real date of birth on or after
    /// 1900-01-01.
    #[error("ID number birth date {digits} is not a valid date")]
    IdNumberBirthDate {
        /// The eight digits found there (YYYYMMDD).
        digits: String,
    },
    /// Characters 7–14 of the resident ID number are a date of birth after today.
    #[error("ID number birth date {digits} is in the future")]
    IdNumberBirthFuture {
        /// The eight digits found there (YYYYMMDD).
        digits: String,
    },
    /// The check character (the 18th) of the resident ID number is wrong.
    #[error("ID number check character is wrong")]
    IdNumberCheck,
    /// Not an 11-digit mainland mobile number starting with 13–19.
    #[error("not a mainland mobile number")]
    MobileInvalid,
    /// The email address is longer than 254 characters, or its local part longer than 64.
    #[error("email address too long")]
    EmailTooLong,
    /// The email address is not of the form `name@example.com`.
    #[error("email address malformed")]
    EmailMalformed,
}

impl IdentError {
    /// Stable machine code, one per identifier type.
    pub fn code(&self) -> &'static str {
        use IdentError::*;
        match self {
            CreditCodeLength { .. }
            | CreditCodeChar { .. }
            | CreditCodeCheck
            | CreditCodeOrgCheck => "ekey.ident.credit_code",
            IdNumberLength { .. }
            | IdNumberChar { .. }
            | IdNumberBirthDate { .. }
            | IdNumberBirthFuture { .. }
            | IdNumberCheck => "ekey.ident.id_number",
            MobileInvalid => "ekey.ident.mobile",
            EmailTooLong | EmailMalformed => "ekey.ident.email",
        }
    }

    /// A sentence for the clerk who typed the value.
    pub fn message(&self, lang: Lang) -> String {
        use IdentError::*;
        let zh = lang == Lang::Zh;
        match self {
            CreditCodeLength { len: 0 } => lang
                .pick(
                    "请填写18位统一社会信用代码",
                    "Enter the 18-character unified social credit code",
                )
                .into(),
            CreditCodeLength { len } => {
                if zh {
                    format!("统一社会信用代码应为18位，当前为{len}位")
                } else {
                    format!(
                        "The unified social credit code must have 18 characters; {len} given"
                    )
                }
            }
            CreditCodeChar { ch, position } => {
                if zh {
                    format!(
                        "统一社会信用代码第{position}位的“{ch}”不是有效字符：只能使用数字和大写字母（不含 I、O、Z、S、V）"
                    )
                } else {
                    format!(
                        "Character {position} of the unified social credit code, \"{ch}\", is not allowed: only digits and capital letters except I, O, Z, S, V"
                    )
                }
            }
            CreditCodeCheck => lang
                .pick(
                    "统一社会信用代码校验位不正确，请核对营业执照上的代码",
                    "The check character of the unified social credit code is wrong; please compare with the business licence",
                )
                .into(),
            CreditCodeOrgCheck => lang
                .pick(
                    "统一社会信用代码第9–17位（组织机构代码）校验不正确，请核对营业执照上的代码",
                    "Characters 9–17 of the unified social credit code (the organisation code) do not check out; please compare with the business licence",
                )
                .into(),
            IdNumberLength { len: 0 } => lang
                .pick(
                    "请填写18位居民身份证号码",
                    "Enter the 18-character resident ID number",
                )
                .into(),
            IdNumberLength { len } => {
                if zh {
                    format!("居民身份证号码应为18位，当前为{len}位")
                } else {
                    format!("The resident ID number must have 18 characters; {len} given")
                }
            }
            IdNumberChar { ch, position } => {
                if zh {
                    format!(
                        "身份证号码第{position}位的“{ch}”不是有效字符：前17位应为数字，最后一位为数字或 X"
                    )
                } else {
                    format!(
                        "Character {position} of the ID number, \"{ch}\", is not allowed: the first 17 are digits, the last a digit or X"
                    )
                }
            }
            IdNumberBirthDate { digits } => {
                if zh {
                    format!(
                        "身份证号码第7–14位（出生日期 {digits}）不是有效日期，请核对身份证"
                    )
                } else {
                    format!(
                        "Characters 7–14 of the ID number (date of birth {digits}) are not a valid date; please compare with the ID card"
                    )
                }
            }
            IdNumberBirthFuture { digits } => {
                if zh {
                    format!(
                        "身份证号码第7–14位的出生日期 {digits} 晚于今天，请核对身份证"
                    )
                } else {
                    format!(
                        "The date of birth in characters 7–14 of the ID number ({digits}) is after today; please compare with the ID card"
                    )
                }
            }
            IdNumberCheck => lang
                .pick(
                    "身份证号码校验位不正确，请核对身份证上的号码",
                    "The check character of the ID number is wrong; please compare with the ID card",
                )
                .into(),
            MobileInvalid => lang
                .pick(
                    "手机号码不正确：应为11位中国大陆手机号码，以13–19开头",
                    "Not a valid mobile number: 11 digits of a mainland China mobile, starting with 13–19",
                )
                .into(),
            EmailTooLong => lang
                .pick(
                    "电子邮箱地址过长：最多254个字符，@ 前最多64个字符",
                    "The email address is too long: at most 254 characters, 64 before the @",
                )
                .into(),
            EmailMalformed => lang
                .pick(
                    "电子邮箱地址格式不正确，应形如 name@example.com",
                    "The email address is malformed; it should look like name@example.com",
                )
                .into(),
        }
    }
}

/// Trims the input and turns full-width ASCII forms (Ａ, １, ＋, the ideographic space …)
/// into their half-width equivalents, as Chinese input methods often produce them.
fn normalise(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Implements the string plumbing shared by every identifier type.
macro_rules! string_ident {
    ($ty:ident) => {
        impl $ty {
            /// The normalised text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $ty {
            type Err = IdentError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = IdentError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = IdentError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Unified social credit code
// ---------------------------------------------------------------------------------------------

/// The 31 characters of the credit code alphabet, in value order.
const CREDIT_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Weights of positions 1–17: 3^i mod 31.
const CREDIT_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// A unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters of
/// `0-9 A-Y` without I, O, Z, S, V; the 18th is a mod-31 check character.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CreditCode(String);

string_ident!(CreditCode);

fn credit_value(c: char) -> Option<u32> {
    CREDIT_CHARSET
        .iter()
        .position(|&b| char::from(b) == c)
        .map(|p| p as u32)
}

impl CreditCode {
    /// Checks and normalises (trim, full-width to half-width, upper case) a credit code.
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        let code = normalise(s).to_uppercase();
        let chars: Vec<char> = code.chars().collect();
        if chars.len() != 18 {
            return Err(IdentError::CreditCodeLength { len: chars.len() });
        }
        let mut values = [0u32; 18];
        for (i, &c) in chars.iter().enumerate() {
            values[i] = credit_value(c).ok_or(IdentError::CreditCodeChar {
                ch: c,
                position: i + 1,
            })?;
        }
        let sum: u32 = values[..17]
            .iter()
            .zip(CREDIT_WEIGHTS)
            .map(|(v, w)| v * w)
            .sum();
        let check = (31 - sum % 31) % 31;
        if values[17] != check {
            return Err(IdentError::CreditCodeCheck);
        }
        // All characters are ASCII of the alphabet here.
        let org = &code.as_bytes()[8..17];
        if org_code_check(&org[..8]) != Some(org[8]) {
            return Err(IdentError::CreditCodeOrgCheck);
        }
        Ok(CreditCode(code))
    }
}

/// The GB 11714 check character of the eight-character body of an organisation code:
/// characters worth 0–9 and A=10 … Z=35, weights 3, 7, 9, 10, 5, 8, 4, 2,
/// check = 11 − sum mod 11, written `X` for 10 and `0` for 11. `None` for a character
/// outside 0–9, A–Z.
fn org_code_check(body: &[u8]) -> Option<u8> {
    const WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let mut sum = 0u32;
    for (&b, w) in body.iter().zip(WEIGHTS) {
        sum += char::from(b).to_digit(36)? * w;
    }
    Some(match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        d => b'0' + d as u8,
    })
}

// ---------------------------------------------------------------------------------------------
// Resident ID number
// ---------------------------------------------------------------------------------------------

/// Check characters indexed by the weighted sum mod 11.
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// A resident identity card number (居民身份证号码, GB 11643-1999): 17 digits (region,
/// date of birth, sequence) and a mod-11 check character, digit or X.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdNumber(String);

string_ident!(IdNumber);

impl IdNumber {
    /// Checks and normalises (trim, full-width to half-width, `x` to `X`) an ID number.
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        let id = normalise(s).to_uppercase();
        let chars: Vec<char> = id.chars().collect();
        if chars.len() != 18 {
            return Err(IdentError::IdNumberLength { len: chars.len() });
        }
        for (i, &c) in chars.iter().enumerate() {
            let ok = c.is_ascii_digit() || (i == 17 && c == 'X');
            if !ok {
                return Err(IdentError::IdNumberChar {
                    ch: c,
                    position: i + 1,
                });
            }
        }
        // All ASCII from here on: byte indices are character indices.
        if birth_date(&id).is_none() {
            return Err(IdentError::IdNumberBirthDate {
                digits: id[6..14].to_string(),
            });
        }
        let sum: u32 = id.as_bytes()[..17]
            .iter()
            .enumerate()
            .map(|(i, b)| u32::from(b - b'0') * ((1u32 << (17 - i)) % 11))
            .sum();
        if id.as_bytes()[17] != ID_CHECK[(sum % 11) as usize] {
            return Err(IdentError::IdNumberCheck);
        }
        Ok(IdNumber(id))
    }

    /// [`IdNumber::parse`], and the date of birth must not be after `today` (the day in
    /// Asia/Shanghai by the caller's clock). Every number typed by a person goes through
    /// this; `parse` alone serves values already accepted (JSON, the database).
    pub fn parse_on(s: &str, today: NaiveDate) -> Result<Self, IdentError> {
        let id = Self::parse(s)?;
        if id.birth_date() > today {
            return Err(IdentError::IdNumberBirthFuture {
                digits: id.0[6..14].to_string(),
            });
        }
        Ok(id)
    }

    /// The date of birth held in characters 7–14.
    pub fn birth_date(&self) -> NaiveDate {
        // `parse` guarantees the date; the fallback is never taken.
        birth_date(&self.0).unwrap_or_default()
    }

    /// The number with the date of birth hidden, for pages and logs: the first 6 and the
    /// last 4 characters stay, e.g. `110105********002X`.
    pub fn masked(&self) -> String {
        format!("{}********{}", &self.0[..6], &self.0[14..])
    }
}

/// The date in characters 7–14 of an all-ASCII 18-character ID number, if real and ≥ 1900.
fn birth_date(id: &str) -> Option<NaiveDate> {
    let year: i32 = id.get(6..10)?.parse().ok()?;
    let month: u32 = id.get(10..12)?.parse().ok()?;
    let day: u32 = id.get(12..14)?.parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day).filter(|d| d.year() >= 1900)
}

// ---------------------------------------------------------------------------------------------
// Mobile
// ---------------------------------------------------------------------------------------------

/// A mainland China mobile number, stored as its 11 digits (`^1[3-9]\d{9}$`). Accepts a
/// leading `+86` or `86`, optionally followed by a space or a dash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mobile(String);

string_ident!(Mobile);

impl Mobile {
    /// Checks and normalises a mobile number.
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        // People write numbers in groups: "138 1234 5678", "138-1234-5678".
        let s: String = normalise(s)
            .chars()
            .filter(|c| {
                !c.is_whitespace() && !matches!(c, '-' | '\u{2010}'..='\u{2015}' | '\u{2212}')
            })
            .collect();
        let mut rest = s.as_str();
        if let Some(r) = rest.strip_prefix("+86") {
            rest = r;
        } else if rest.len() == 13
            && let Some(r) = rest.strip_prefix("86")
        {
            rest = r;
        }
        let b = rest.as_bytes();
        let ok = b.len() == 11
            && b[0] == b'1'
            && (b'3'..=b'9').contains(&b[1])
            && b.iter().all(u8::is_ascii_digit);
        if !ok {
            return Err(IdentError::MobileInvalid);
        }
        Ok(Mobile(rest.to_string()))
    }

    /// The number with the middle four digits hidden: `138****5678`.
    pub fn masked(&self) -> String {
        format!("{}****{}", &self.0[..3], &self.0[7..])
    }
}

// ---------------------------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------------------------

/// An email address, stored lower-cased. The check is pragmatic, not RFC 5322: one `@`,
/// a local part of 1–64 characters of letters, digits and ``.!#$%&'*+/=?^_`{|}~-`` (no
/// leading, trailing or doubled dot), a domain of at least two dot-separated labels of
/// letters, digits and hyphens, 254 characters at most.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

string_ident!(Email);

impl Email {
    /// Checks and normalises (trim, lower case) an email address.
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        let email = normalise(s).to_lowercase();
        if email.chars().count() > 254 {
            return Err(IdentError::EmailTooLong);
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(IdentError::EmailMalformed);
        };
        if local.chars().count() > 64 {
            return Err(IdentError::EmailTooLong);
        }
        let local_ok = !local.is_empty()
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._%+-!#$&'*/=?^`{|}~".contains(&b));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !local_ok || !domain_ok {
            return Err(IdentError::EmailMalformed);
        }
        Ok(Email(email))
    }

    /// The domain part, after the `@`.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;

//! Pure rules of eKey: identifiers, request kinds and their state machines, who may do
//! what, and the working-day calendar. No I/O, no async, no SQL, no HTTP.
#![forbid(unsafe_code)]

pub mod agency_file;
pub mod calendar;
pub mod clock;
pub mod error;
pub mod ident;
pub mod infochange;
pub mod key;
pub mod keycap;
pub mod keyproof;
pub mod lunar;
pub mod province;
pub mod recount;
pub mod redirect;
pub mod request;
pub mod returns;
pub mod statutory;
pub mod text;
pub mod throttle;
pub mod upload;
pub mod when;

/// Language of a user-facing message. Chinese first; English when the caller asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lang {
    /// Simplified Chinese (default).
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    /// Picks the language from an `Accept-Language` header value: English only when the
    /// first listed language is English, Chinese otherwise.
    pub fn from_accept_language(value: Option<&str>) -> Lang {
        let first = value
            .and_then(|v| v.split(',').next())
            .map(|s| s.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if first.starts_with("en") {
            Lang::En
        } else {
            Lang::Zh
        }
    }

    /// Chooses between a Chinese and an English text.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

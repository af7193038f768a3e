//! Free text typed by people that ends up in a certificate, a printed document or a mail:
//! enterprise names, addresses, person names. One check for every door (registration, the
//! request forms, the consoles, the CLI), at least as strict as what the CA accepts in a
//! subject (`ekey-ca`: 1–64 characters, trimmed, no control characters), so that nothing
//! accepted at the door can fail later at production.

use crate::error::DomainError;

/// The upper bound of an X.520 name attribute (ub-organization-name, ub-common-name): the
/// most characters of anything that is written into a certificate (the enterprise name is
/// the subject's O and CN).
pub const CERT_NAME_MAX: usize = 64;
/// The most characters of a person's name (legal representative, authorised user).
pub const PERSON_NAME_MAX: usize = 50;
/// The most characters of an address.
pub const ADDRESS_MAX: usize = 200;

/// Characters refused in any name or address: control characters (C0, DEL, C1, so also
/// line breaks and tabs), the bidirectional overrides, embeddings, isolates and marks
/// (U+202A–202E, U+2066–2069, U+200E/F, U+061C) that make a name read differently from
/// what it is, and the invisible ones (zero-width spaces and joiners, word joiner, BOM,
/// line and paragraph separators, interlinear annotation marks).
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// Checks a one-line text field: trimmed, not empty, at most `max` characters, none of
/// [`is_forbidden_char`]. Returns the trimmed value.
pub fn check_line(field: &'static str, value: &str, max: usize) -> Result<String, DomainError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(DomainError::Required { field });
    }
    if v.chars().any(is_forbidden_char) {
        return Err(DomainError::ForbiddenCharacters { field });
    }
    if v.chars().count() > max {
        return Err(DomainError::TooLong { field, max });
    }
    Ok(v.to_string())
}

/// [`check_line`] for a text that may be empty (an optional field): `None` when empty.
pub fn check_optional_line(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<Option<String>, DomainError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    check_line(field, value, max).map(Some)
}

/// Checks a multi-line text (a reason printed on a form): line breaks and tabs are
/// allowed, every other forbidden character is not; at most `max` characters.
pub fn check_paragraph(field: &'static str, value: &str, max: usize) -> Result<(), DomainError> {
    if value
        .chars()
        .any(|c| is_forbidden_char(c) && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(DomainError::ForbiddenCharacters { field });
    }
    if value.trim().chars().count() > max {
        return Err(DomainError::TooLong { field, max });
    }
    Ok(())
}

/// An enterprise name as it will appear in the certificate (subject O and CN).
pub fn enterprise_name(value: &str) -> Result<String, DomainError> {
    check_line("enterprise_name", value, CERT_NAME_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_bidi_or_control_characters_are_refused() {
        for bad in [
            "苏州\u{202E}公司",
            "苏州\u{202A}公司",
            "苏州\u{202B}公司",
            "苏州\u{202C}公司",
            "苏州\u{202D}公司",
            "苏州\u{2066}公司",
            "苏州\u{2067}公司",
            "苏州\u{2068}公司",
            "苏州\u{2069}公司",
            "苏州\u{200E}公司",
            "苏州\u{200F}公司",
            "苏州\u{200B}公司",
            "苏州\u{FEFF}公司",
            "苏州\u{0000}公司",
            "苏州\n公司",
            "苏州\t公司",
            "苏州\u{007F}公司",
            "苏州\u{0085}公司",
            "苏州\u{2028}公司",
        ] {
            assert_eq!(
                enterprise_name(bad),
                Err(DomainError::ForbiddenCharacters {
                    field: "enterprise_name"
                }),
                "{bad:?}"
            );
        }
        assert_eq!(
            enterprise_name("  苏州江南精密机械有限公司 ").unwrap(),
            "苏州江南精密机械有限公司"
        );
        assert_eq!(
            enterprise_name("Suzhou (Jiangnan) Co., Ltd. & 北京-1").unwrap(),
            "Suzhou (Jiangnan) Co., Ltd. & 北京-1"
        );
    }

    #[test]
    fn a_certificate_name_has_at_most_64_characters() {
        let ok = "公".repeat(64);
        assert_eq!(enterprise_name(&ok).unwrap(), ok);
        assert_eq!(
            enterprise_name(&"公".repeat(65)),
            Err(DomainError::TooLong {
                field: "enterprise_name",
                max: 64
            })
        );
        assert_eq!(
            enterprise_name("   "),
            Err(DomainError::Required {
                field: "enterprise_name"
            })
        );
    }

    #[test]
    fn paragraphs_keep_their_line_breaks_but_not_overrides() {
        assert!(check_paragraph("reason", "第一行\r\n第二行\t。", 500).is_ok());
        assert!(check_paragraph("reason", "丢失\u{202E}", 500).is_err());
        assert!(check_paragraph("reason", "丢失\u{0007}", 500).is_err());
        assert_eq!(check_optional_line("x", "  ", 5), Ok(None));
    }
}

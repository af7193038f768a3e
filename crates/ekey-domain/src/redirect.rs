//! Where a page may send the browser after a step (`next=` of the login, the language
//! switch and the certificate login): only a path of this site. One rule for every door, so
//! that a link such as `/login?next=//evil.example` cannot turn eKey into a springboard to
//! a look-alike site.

/// The longest `next` that is followed.
pub const MAX_NEXT_LEN: usize = 2048;

/// `next` when it is a path of this site to send the browser to, else `None` (the caller
/// then uses its default page).
///
/// Accepted: `/` followed by visible ASCII only (a path, query and fragment as a browser
/// writes them; other characters arrive percent-encoded). Refused, because a browser may
/// read them as another host: a second `/` or a `\` anywhere (browsers treat `\` as `/`),
/// spaces and control characters (browsers drop tabs and newlines, so `/\t/evil` is
/// `//evil`), and percent escapes of `/`, `\`, `%`, spaces or control characters (a second
/// decoding along the way would rebuild the same tricks), as well as malformed escapes.
/// Escapes of other characters (`%E4%B8%AD`, …) are kept.
pub fn safe_next(next: &str) -> Option<&str> {
    let b = next.as_bytes();
    if b.first() != Some(&b'/') || b.len() > MAX_NEXT_LEN || b.get(1) == Some(&b'/') {
        return None;
    }
    let plain = |c: u8| (0x21..0x7f).contains(&c) && c != b'\\';
    if !b.iter().all(|&c| plain(c)) {
        return None;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if v < 0x80 && (!plain(v) || v == b'/' || v == b'%') {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn paths_of_this_site_pass_and_tricks_do_not() {
        for ok in [
            "/",
            "/portal",
            "/portal/requests/0b6e?tab=materials&x=1#top",
            "/console/certificates?q=%E4%B8%AD%E5%9B%BD",
            "/a%2Eb",
        ] {
            assert_eq!(safe_next(ok), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "portal",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/%2f%2fevil.example",
            "/%2F/evil.example",
            "/%5cevil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/%0d%0aSet-Cookie:x=1",
            "/%252f%252fevil.example",
            "/%zz",
            "/%",
            "/%+1",
            "/ /evil",
            "/中",
            "/\u{ff0f}evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/\0",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(3000))), None);
    }
}

//! The `next` rule against a real URL parser (the WHATWG algorithm browsers use, from the
//! `url` crate): whatever string is accepted, a browser resolving it on our page stays on
//! our origin — including the backslashes, tabs and newlines browsers rewrite or drop.

use ekey_domain::redirect::safe_next;
use proptest::prelude::*;

const BASE: &str = "https://ekey.example/login?next=x";

/// Pieces that make up the known tricks, shuffled together.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/",
        "//",
        "\\",
        "/\\",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "%09",
        "\t",
        "\n",
        "\r",
        "%0a",
        "%0d",
        "%00",
        "\0",
        "%25",
        "%",
        "%2",
        "evil.example",
        "@",
        ":",
        "http:",
        "https:",
        "javascript:",
        ".",
        "..",
        "%2e",
        "?",
        "#",
        "&",
        "=",
        " ",
        "%20",
        "\u{3000}",
        "\u{ff0f}",
        "\u{ff3c}",
        "a",
        "portal",
        "%E4%B8%AD",
        "中",
        "\u{202e}",
        "+",
    ])
}

fn tricky() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..10).prop_map(|v| v.concat())
}

fn check(s: &str) -> Result<(), TestCaseError> {
    if let Some(next) = safe_next(s) {
        prop_assert_eq!(next, s);
        let base = url::Url::parse(BASE).unwrap();
        let to = base.join(next);
        prop_assert!(to.is_ok(), "{:?} does not parse", s);
        let to = to.unwrap();
        prop_assert_eq!(
            to.origin(),
            base.origin(),
            "{:?} leaves the site: {}",
            s,
            to
        );
        // The Location header can carry it as it is.
        prop_assert!(s.bytes().all(|b| (0x21..0x7f).contains(&b)));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn accepted_targets_stay_on_the_site(s in tricky()) {
        check(&s)?;
    }

    #[test]
    fn arbitrary_text_never_leaves_the_site(s in any::<String>()) {
        check(&s)?;
    }

    #[test]
    fn a_path_with_a_slash_or_backslash_after_the_first_is_refused(
        rest in "[a-z./]{0,12}", sep in prop::sample::select(vec!["/", "\\", "%2f", "%5c", "%09", "\t"])
    ) {
        let s = format!("/{sep}{rest}");
        prop_assert_eq!(safe_next(&s), None);
    }

    #[test]
    fn plain_paths_are_kept(segments in prop::collection::vec("[a-z0-9_-]{1,8}", 1..5), q in "[a-z0-9=&]{0,12}") {
        let s = format!("/{}{}{}", segments.join("/"), if q.is_empty() { "" } else { "?" }, q);
        prop_assert_eq!(safe_next(&s), Some(s.as_str()));
    }
}

//! Identifiers for fixtures that satisfy every check the standards define.
//!
//! A unified social credit code (GB 32100-2015) is 18 characters: the
//! registering department (1), the organisation type (1), the administrative
//! division (6), the organisation code (9, GB 11714: eight body characters and
//! a check character) and a check character over the first 17. Fixtures made
//! here pass both checks, so a test never depends on the validator being lax.

const USCC_CHARSET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/// The GB 11714 check character of an 8-character organisation code body.
pub fn org_code_check(body8: &str) -> char {
    const W: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body8
        .chars()
        .zip(W)
        .map(|(c, w)| c.to_digit(36).expect("0-9 or A-Z") * w)
        .sum();
    match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        d => char::from_digit(d, 10).expect("digit"),
    }
}

/// Appends the GB 32100 check character to the first 17 characters.
pub fn with_uscc_check(prefix17: &str) -> String {
    let mut sum = 0usize;
    let mut w = 1usize;
    for c in prefix17.chars() {
        sum += USCC_CHARSET.find(c).expect("USCC charset") * w;
        w = w * 3 % 31;
    }
    let check = (31 - sum % 31) % 31;
    format!("{prefix17}{}", USCC_CHARSET.as_bytes()[check] as char)
}

/// A valid credit code of an enterprise (`91`) registered in `division`
/// (six digits, e.g. `"320106"` for Nanjing), distinct for each `n`.
pub fn credit_code_in(division: &str, n: u32) -> String {
    assert_eq!(division.len(), 6, "administrative division has 6 digits");
    let body = format!("MA{:06}", n % 1_000_000);
    let org = format!("{body}{}", org_code_check(&body));
    with_uscc_check(&format!("91{division}{org}"))
}

/// A valid credit code of a Jiangsu (Nanjing) enterprise, distinct for each `n`.
pub fn credit_code(n: u32) -> String {
    credit_code_in("320106", n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_check() {
        assert_eq!(org_code_check("60003734"), '1'); // of 91110000600037341L
        let c = credit_code(42);
        assert_eq!(c.len(), 18);
        assert_ne!(credit_code(1), credit_code(2));
        assert_eq!(&c[..8], "91320106");
    }
}

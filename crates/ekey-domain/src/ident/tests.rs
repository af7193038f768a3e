use super::*;

const CODES: [&str; 3] = [
    "91110000600037341L",
    "91310110666007217T",
    "91440101MA5CJQ4N59",
];
const ID: &str = "11010519491231002X";

#[test]
fn weights_are_powers_of_three() {
    let mut w = 1u32;
    for expected in CREDIT_WEIGHTS {
        assert_eq!(w, expected);
        w = w * 3 % 31;
    }
    assert_eq!(CREDIT_CHARSET.len(), 31);
    for bad in [b'I', b'O', b'Z', b'S', b'V'] {
        assert!(!CREDIT_CHARSET.contains(&bad));
    }
}

#[test]
fn valid_credit_codes() {
    for c in CODES {
        let code = CreditCode::parse(c).unwrap();
        assert_eq!(code.as_str(), c);
        assert_eq!(code.to_string(), c);
        assert_eq!(c.parse::<CreditCode>().unwrap(), code);
    }
}

#[test]
fn credit_code_normalisation() {
    let code = CreditCode::parse("  91440101ma5cjq4n59\t").unwrap();
    assert_eq!(code.as_str(), "91440101MA5CJQ4N59");
    // Full-width characters from a Chinese input method.
    let code = CreditCode::parse("９１４４０１０１ＭＡ５ＣＪＱ４Ｎ５９").unwrap();
    assert_eq!(code.as_str(), "91440101MA5CJQ4N59");
}

#[test]
fn credit_code_failures() {
    assert_eq!(
        CreditCode::parse("91110000600037341"),
        Err(IdentError::CreditCodeLength { len: 17 })
    );
    assert_eq!(
        CreditCode::parse(""),
        Err(IdentError::CreditCodeLength { len: 0 })
    );
    assert_eq!(
        CreditCode::parse("91110000600037341LL"),
        Err(IdentError::CreditCodeLength { len: 19 })
    );
    assert_eq!(
        CreditCode::parse("9111000060003734IL"),
        Err(IdentError::CreditCodeChar {
            ch: 'I',
            position: 17
        })
    );
    assert_eq!(
        CreditCode::parse("o1110000600037341L"),
        Err(IdentError::CreditCodeChar {
            ch: 'O',
            position: 1
        })
    );
    assert_eq!(
        CreditCode::parse("91110000600037341M"),
        Err(IdentError::CreditCodeCheck)
    );
    // Chinese characters count as one character each.
    assert_eq!(
        CreditCode::parse("91110000600037341码"),
        Err(IdentError::CreditCodeChar {
            ch: '码',
            position: 18
        })
    );
}

#[test]
fn credit_code_single_mutations_rejected() {
    for c in CODES {
        let chars: Vec<char> = c.chars().collect();
        for pos in 0..18 {
            for &b in CREDIT_CHARSET {
                let r = char::from(b);
                if r == chars[pos] {
                    continue;
                }
                let mut m = chars.clone();
                m[pos] = r;
                let m: String = m.into_iter().collect();
                assert_eq!(
                    CreditCode::parse(&m),
                    Err(IdentError::CreditCodeCheck),
                    "{m}"
                );
            }
        }
    }
}

#[test]
fn credit_code_org_part_checked() {
    // The GB 32100 check character is right, but positions 9–17 (the organisation
    // code, GB 11714) are not: MA1XYW0A would need the check character 3, not 1.
    let e = CreditCode::parse("91320106MA1XYW0A10").unwrap_err();
    assert_eq!(e, IdentError::CreditCodeOrgCheck);
    assert_eq!(e.code(), "ekey.ident.credit_code");
    assert!(
        e.message(Lang::Zh).contains("第9–17位"),
        "{}",
        e.message(Lang::Zh)
    );
    assert!(e.message(Lang::En).contains("9–17"));
    assert_eq!(
        CreditCode::parse("91320106MA1XYW0A36").unwrap().as_str(),
        "91320106MA1XYW0A36"
    );
    // Check characters X (10) and 0 (11) of the organisation code.
    assert_eq!(org_code_check(b"MA1XXXXX"), Some(b'9'));
    for (body, check) in [(b"00000000", b'0'), (b"MA1NXXXX", b'X')] {
        assert_eq!(org_code_check(body), Some(check));
    }
}

#[test]
fn id_number_birth_date_not_in_the_future() {
    let today = NaiveDate::from_ymd_opt(2026, 12, 8).unwrap();
    // Born today: accepted (a newborn can hold a number).
    let id = IdNumber::parse_on(&with_id_check("11010520261208001"), today).unwrap();
    assert_eq!(id.birth_date(), today);
    let tomorrow = with_id_check("11010520261209001");
    assert!(IdNumber::parse(&tomorrow).is_ok());
    let e = IdNumber::parse_on(&tomorrow, today).unwrap_err();
    assert_eq!(
        e,
        IdentError::IdNumberBirthFuture {
            digits: "20261209".into()
        }
    );
    assert_eq!(e.code(), "ekey.ident.id_number");
    assert!(
        e.message(Lang::Zh).contains("晚于今天"),
        "{}",
        e.message(Lang::Zh)
    );
    assert!(e.message(Lang::En).contains("after today"));
    // Impossible dates are refused whatever the day.
    assert!(matches!(
        IdNumber::parse_on(&with_id_check("11010520250229001"), today),
        Err(IdentError::IdNumberBirthDate { .. })
    ));
    assert!(IdNumber::parse_on(ID, today).is_ok());
}

fn with_id_check(first17: &str) -> String {
    let sum: u32 = first17
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * ((1u32 << (17 - i)) % 11))
        .sum();
    format!("{first17}{}", char::from(ID_CHECK[(sum % 11) as usize]))
}

#[test]
fn credit_code_messages() {
    let e = IdentError::CreditCodeLength { len: 17 };
    assert_eq!(e.code(), "ekey.ident.credit_code");
    assert_eq!(e.message(Lang::Zh), "统一社会信用代码应为18位，当前为17位");
    assert_eq!(
        e.message(Lang::En),
        "The unified social credit code must have 18 characters; 17 given"
    );
    let e = CreditCode::parse("91110000600037341M").unwrap_err();
    assert_eq!(
        e.message(Lang::Zh),
        "统一社会信用代码校验位不正确，请核对营业执照上的代码"
    );
    // The expected check character is not revealed.
    assert!(!e.message(Lang::Zh).contains('L'));
    assert!(!e.message(Lang::En).contains(" L"));
    assert!(!format!("{e} {e:?}").contains('L'));
    let e = CreditCode::parse("9111000060003734IL").unwrap_err();
    assert!(e.message(Lang::Zh).contains("第17位的“I”"));
    assert!(e.message(Lang::En).contains("Character 17"));
}

#[test]
fn valid_id_number() {
    let id = IdNumber::parse(ID).unwrap();
    assert_eq!(id.as_str(), ID);
    assert_eq!(
        id.birth_date(),
        NaiveDate::from_ymd_opt(1949, 12, 31).unwrap()
    );
    assert_eq!(id.masked(), "110105********002X");
    // Lower-case x and surrounding blanks are normalised.
    let id = IdNumber::parse(" 11010519491231002x ").unwrap();
    assert_eq!(id.as_str(), ID);
    // A digit check character.
    assert_eq!(
        IdNumber::parse("110101199003070011").unwrap().as_str(),
        "110101199003070011"
    );
}

#[test]
fn id_number_failures() {
    assert_eq!(
        IdNumber::parse("11010519491231002"),
        Err(IdentError::IdNumberLength { len: 17 })
    );
    assert_eq!(
        IdNumber::parse("110105194912310"),
        Err(IdentError::IdNumberLength { len: 15 })
    );
    assert_eq!(
        IdNumber::parse("1101051949123100X2"),
        Err(IdentError::IdNumberChar {
            ch: 'X',
            position: 17
        })
    );
    assert_eq!(
        IdNumber::parse("11010519491231002Y"),
        Err(IdentError::IdNumberChar {
            ch: 'Y',
            position: 18
        })
    );
    assert_eq!(
        IdNumber::parse("110105194913310021"),
        Err(IdentError::IdNumberBirthDate {
            digits: "19491331".into()
        })
    );
    assert_eq!(
        IdNumber::parse("110105190002290021"),
        Err(IdentError::IdNumberBirthDate {
            digits: "19000229".into()
        })
    );
    assert_eq!(
        IdNumber::parse("110105189912310021"),
        Err(IdentError::IdNumberBirthDate {
            digits: "18991231".into()
        })
    );
    assert_eq!(
        IdNumber::parse("110105194912310021"),
        Err(IdentError::IdNumberCheck)
    );
    let e = IdNumber::parse("110105194912310021").unwrap_err();
    assert_eq!(e.code(), "ekey.ident.id_number");
    assert!(!e.message(Lang::Zh).contains('X'));
    assert!(
        IdNumber::parse("110105194913310021")
            .unwrap_err()
            .message(Lang::Zh)
            .contains("19491331")
    );
}

#[test]
fn id_number_single_mutations_rejected() {
    for valid in [ID, "110101199003070011"] {
        let chars: Vec<char> = valid.chars().collect();
        for pos in 0..18 {
            let alphabet: &[u8] = if pos == 17 {
                b"0123456789X"
            } else {
                b"0123456789"
            };
            for &b in alphabet {
                let r = char::from(b);
                if r == chars[pos] {
                    continue;
                }
                let mut m = chars.clone();
                m[pos] = r;
                let m: String = m.into_iter().collect();
                assert!(IdNumber::parse(&m).is_err(), "{m}");
            }
        }
    }
}

#[test]
fn mobiles() {
    for s in [
        "13812345678",
        "+8613812345678",
        "8613812345678",
        "+86 13812345678",
        "+86-13812345678",
        "86 13812345678",
        " 13812345678 ",
        "138 1234 5678",
        "138-1234-5678",
        "+86 138 1234 5678",
        "+86  13812345678",
        "１３８ １２３４ ５６７８",
        "138\u{2013}1234\u{2013}5678",
    ] {
        assert_eq!(Mobile::parse(s).unwrap().as_str(), "13812345678", "{s}");
    }
    assert_eq!(
        Mobile::parse("19912345678").unwrap().as_str(),
        "19912345678"
    );
    for s in [
        "",
        "12812345678",
        "1381234567",
        "138123456789",
        "+85213812345678",
        "+86 138 1234 567",
        "138.1234.5678",
        "1381234567a",
        "+86",
    ] {
        assert_eq!(Mobile::parse(s), Err(IdentError::MobileInvalid), "{s}");
    }
    assert_eq!(
        Mobile::parse("13812345678").unwrap().masked(),
        "138****5678"
    );
    let e = IdentError::MobileInvalid;
    assert_eq!(e.code(), "ekey.ident.mobile");
    assert!(e.message(Lang::Zh).contains("11位"));
}

#[test]
fn emails() {
    let e = Email::parse("  Zhang.San+ekey@Example.COM.cn ").unwrap();
    assert_eq!(e.as_str(), "zhang.san+ekey@example.com.cn");
    assert_eq!(e.domain(), "example.com.cn");
    assert!(Email::parse("a@b.cn").is_ok());
    assert!(Email::parse("o'brien@mail-server.example.org").is_ok());
    for s in [
        "",
        "plain",
        "@example.com",
        "a@@example.com",
        "a@b@example.com",
        "a b@example.com",
        "a@example",
        "a@example..com",
        "a@.example.com",
        "a@example.com.",
        "a@-example.com",
        "a@exa_mple.com",
        ".a@example.com",
        "a.@example.com",
        "a..b@example.com",
        "a<b>@example.com",
        "张三@example.com",
    ] {
        assert_eq!(Email::parse(s), Err(IdentError::EmailMalformed), "{s}");
    }
    let long_local = format!("{}@example.com", "a".repeat(65));
    assert_eq!(Email::parse(&long_local), Err(IdentError::EmailTooLong));
    assert!(Email::parse(&format!("{}@example.com", "a".repeat(64))).is_ok());
    let long = format!("a@{}.com", vec!["b".repeat(60); 5].join("."));
    assert!(long.len() > 254);
    assert_eq!(Email::parse(&long), Err(IdentError::EmailTooLong));
    assert_eq!(IdentError::EmailMalformed.code(), "ekey.ident.email");
    assert_eq!(IdentError::EmailTooLong.code(), "ekey.ident.email");
}

#[test]
fn serde_round_trip() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Form {
        code: CreditCode,
        id: IdNumber,
        mobile: Mobile,
        email: Email,
    }
    let form = Form {
        code: CreditCode::parse(CODES[2]).unwrap(),
        id: IdNumber::parse(ID).unwrap(),
        mobile: Mobile::parse("+86 13812345678").unwrap(),
        email: Email::parse("Li@Example.com").unwrap(),
    };
    let json = serde_json::to_string(&form).unwrap();
    assert_eq!(
        json,
        r#"{"code":"91440101MA5CJQ4N59","id":"11010519491231002X","mobile":"13812345678","email":"li@example.com"}"#
    );
    assert_eq!(serde_json::from_str::<Form>(&json).unwrap(), form);
    // Deserialising normalises and validates.
    let code: CreditCode = serde_json::from_str(r#"" 91440101ma5cjq4n59 ""#).unwrap();
    assert_eq!(code.as_str(), "91440101MA5CJQ4N59");
    assert!(serde_json::from_str::<CreditCode>(r#""91440101MA5CJQ4N58""#).is_err());
    assert!(serde_json::from_str::<IdNumber>(r#""110105194912310021""#).is_err());
    assert!(serde_json::from_str::<Mobile>(r#""12345""#).is_err());
    assert!(serde_json::from_str::<Email>(r#""x""#).is_err());
}

#[test]
fn every_error_has_both_languages() {
    let all = [
        IdentError::CreditCodeLength { len: 0 },
        IdentError::CreditCodeLength { len: 3 },
        IdentError::CreditCodeChar {
            ch: 'I',
            position: 3,
        },
        IdentError::CreditCodeCheck,
        IdentError::CreditCodeOrgCheck,
        IdentError::IdNumberLength { len: 0 },
        IdentError::IdNumberLength { len: 3 },
        IdentError::IdNumberChar {
            ch: 'A',
            position: 3,
        },
        IdentError::IdNumberBirthDate {
            digits: "19491331".into(),
        },
        IdentError::IdNumberBirthFuture {
            digits: "20991231".into(),
        },
        IdentError::IdNumberCheck,
        IdentError::MobileInvalid,
        IdentError::EmailTooLong,
        IdentError::EmailMalformed,
    ];
    for e in all {
        let zh = e.message(Lang::Zh);
        let en = e.message(Lang::En);
        assert!(!zh.is_empty() && !en.is_empty() && zh != en);
        assert!(e.code().starts_with("ekey.ident."));
    }
}

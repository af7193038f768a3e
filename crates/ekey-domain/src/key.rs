//! The key (token) as the system tracks it: its states from blank to revoked, and how it is
//! handed over to the enterprise (window pickup or free mailing).

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::ident::{IdNumber, Mobile};

/// State of a key (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Not yet personalised.
    Blank,
    /// Key pair, certificate, login name and e-seal on it; at the provider.
    Personalised,
    /// In a shipment to the agency.
    Shipped,
    /// At the agency, waiting for the enterprise.
    AtAgency,
    /// Handed over and in use.
    Active,
    /// Six wrong PINs: locked until an admin unlock.
    Locked,
    /// Certificate revoked (cancellation, replacement of a damaged key).
    Revoked,
    /// Reported lost (certificate revoked as keyCompromise).
    Lost,
    /// Reported damaged.
    Damaged,
    /// Certificate expired without renewal.
    Expired,
}

/// A change of a key's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyEvent {
    /// The provider personalised it.
    Personalise,
    /// It left in a shipment.
    Ship,
    /// The agency received the shipment.
    Arrive,
    /// The enterprise received it (window or mail).
    HandOver,
    /// Six consecutive wrong PINs.
    Lock,
    /// An admin unlock code was applied.
    Unlock,
    /// Reported lost.
    ReportLost,
    /// Reported damaged.
    ReportDamaged,
    /// Certificate revoked (cancellation).
    Revoke,
    /// Certificate expired.
    Expire,
}

impl KeyState {
    /// Every state.
    pub const ALL: &'static [KeyState] = &[
        KeyState::Blank,
        KeyState::Personalised,
        KeyState::Shipped,
        KeyState::AtAgency,
        KeyState::Active,
        KeyState::Locked,
        KeyState::Revoked,
        KeyState::Lost,
        KeyState::Damaged,
        KeyState::Expired,
    ];

    /// Machine name (API, database).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Blank => "blank",
            KeyState::Personalised => "personalised",
            KeyState::Shipped => "shipped",
            KeyState::AtAgency => "at_agency",
            KeyState::Active => "active",
            KeyState::Locked => "locked",
            KeyState::Revoked => "revoked",
            KeyState::Lost => "lost",
            KeyState::Damaged => "damaged",
            KeyState::Expired => "expired",
        }
    }

    /// Parses a machine name.
    pub fn parse(s: &str) -> Option<KeyState> {
        KeyState::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Chinese label.
    pub fn label_zh(self) -> &'static str {
        match self {
            KeyState::Blank => "空白",
            KeyState::Personalised => "已制作",
            KeyState::Shipped => "寄送中",
            KeyState::AtAgency => "发证机构待领取",
            KeyState::Active => "使用中",
            KeyState::Locked => "已锁定（PIN 码连续输错 6 次）",
            KeyState::Revoked => "已注销",
            KeyState::Lost => "已挂失",
            KeyState::Damaged => "已损坏",
            KeyState::Expired => "证书已过期",
        }
    }

    /// English label.
    pub fn label_en(self) -> &'static str {
        match self {
            KeyState::Blank => "blank",
            KeyState::Personalised => "personalised",
            KeyState::Shipped => "shipped",
            KeyState::AtAgency => "at the agency",
            KeyState::Active => "active",
            KeyState::Locked => "locked (six wrong PINs)",
            KeyState::Revoked => "revoked",
            KeyState::Lost => "lost",
            KeyState::Damaged => "damaged",
            KeyState::Expired => "expired",
        }
    }

    /// Whether the key counts against the enterprise's limit of three (anything not ended).
    pub fn counts_as_held(self) -> bool {
        !matches!(
            self,
            KeyState::Blank
                | KeyState::Revoked
                | KeyState::Lost
                | KeyState::Damaged
                | KeyState::Expired
        )
    }

    /// Whether nothing can happen to the key any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            KeyState::Revoked | KeyState::Lost | KeyState::Damaged | KeyState::Expired
        )
    }

    /// The state after `event`, or why it cannot happen.
    pub fn apply(self, event: KeyEvent) -> Result<KeyState, DomainError> {
        use KeyEvent as E;
        use KeyState as S;
        let next = match (self, event) {
            (S::Blank, E::Personalise) => S::Personalised,
            (S::Personalised, E::Ship) => S::Shipped,
            (S::Shipped, E::Arrive) => S::AtAgency,
            (S::AtAgency, E::HandOver) => S::Active,
            (S::Active, E::Lock) => S::Locked,
            (S::Locked, E::Unlock) => S::Active,
            (S::Active | S::Locked | S::AtAgency | S::Shipped, E::ReportLost) => S::Lost,
            (S::Active | S::Locked | S::AtAgency, E::ReportDamaged) => S::Damaged,
            (S::Personalised | S::Shipped | S::AtAgency | S::Active | S::Locked, E::Revoke) => {
                S::Revoked
            }
            (S::Active | S::Locked, E::Expire) => S::Expired,
            (state, event) => return Err(DomainError::KeyWrongState { state, event }),
        };
        Ok(next)
    }
}

impl KeyEvent {
    /// Machine name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEvent::Personalise => "personalise",
            KeyEvent::Ship => "ship",
            KeyEvent::Arrive => "arrive",
            KeyEvent::HandOver => "hand_over",
            KeyEvent::Lock => "lock",
            KeyEvent::Unlock => "unlock",
            KeyEvent::ReportLost => "report_lost",
            KeyEvent::ReportDamaged => "report_damaged",
            KeyEvent::Revoke => "revoke",
            KeyEvent::Expire => "expire",
        }
    }
}

/// How the key reached the enterprise, as the agency records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Handover {
    /// Collected at the agency's window.
    Pickup {
        /// Who collected it.
        collector_name: String,
        /// The collector's resident ID number (checked against the ID card).
        collector_id_number: IdNumber,
        /// The enterprise's introduction letter (单位介绍信) was seen.
        introduction_letter: bool,
    },
    /// Mailed free of charge at the enterprise's own risk.
    Mail {
        /// The stamped disclaimer (免责声明) was received.
        disclaimer_received: bool,
        /// The stamped copy of the business licence was received.
        licence_copy_received: bool,
        /// Recipient (the applicant).
        recipient: String,
        /// Recipient's mobile.
        mobile: Mobile,
        /// Recipient's resident ID number.
        id_number: IdNumber,
        /// Mailing address: must match the registered or business address.
        address: String,
        /// Courier company.
        courier: String,
        /// Tracking number.
        tracking_number: String,
    },
}

/// Normalises an address for comparison: full-width to half-width, no spaces or
/// punctuation, and without a leading province-level name (江苏省, 北京市, …).
pub fn normalise_address(address: &str) -> String {
    let mut s: String = address
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        })
        .filter(|c| !c.is_whitespace() && !",.;:()（），。；：、-—_#".contains(*c))
        .collect();
    for p in crate::province::all() {
        let short = p
            .name_zh
            .trim_end_matches("维吾尔自治区")
            .trim_end_matches("壮族自治区")
            .trim_end_matches("回族自治区")
            .trim_end_matches("自治区")
            .trim_end_matches('省')
            .trim_end_matches('市');
        for prefix in [p.name_zh, short] {
            if !prefix.is_empty()
                && let Some(rest) = s.strip_prefix(prefix)
            {
                // "南京市…" must not lose "南京" when the province is "江苏"; only strip a
                // province name that is followed by more address.
                if !rest.is_empty() {
                    s = rest.to_string();
                }
                return s;
            }
        }
    }
    s
}

/// Whether a mailing address matches the registered or business address: after
/// normalisation it must contain it (a room or floor may be added, nothing else changed).
pub fn mailing_address_matches(mailing: &str, registered: &str) -> bool {
    let m = normalise_address(mailing);
    let r = normalise_address(registered);
    !r.is_empty() && m.contains(&r)
}

impl Handover {
    /// Checks the record against the rules of SPEC §3.1 step 7; `registered_address` is the
    /// enterprise's registered or business address.
    pub fn validate(&self, registered_address: &str) -> Result<(), DomainError> {
        match self {
            Handover::Pickup {
                collector_name,
                introduction_letter,
                ..
            } => {
                if collector_name.trim().is_empty() {
                    return Err(DomainError::Required {
                        field: "collector_name",
                    });
                }
                if !introduction_letter {
                    return Err(DomainError::HandoverIncomplete("introduction_letter"));
                }
            }
            Handover::Mail {
                disclaimer_received,
                licence_copy_received,
                recipient,
                address,
                courier,
                tracking_number,
                ..
            } => {
                if !disclaimer_received {
                    return Err(DomainError::HandoverIncomplete("disclaimer"));
                }
                if !licence_copy_received {
                    return Err(DomainError::HandoverIncomplete("licence_copy"));
                }
                for (value, field) in [
                    (recipient, "recipient"),
                    (courier, "courier"),
                    (tracking_number, "tracking_number"),
                    (address, "address"),
                ] {
                    if value.trim().is_empty() {
                        return Err(DomainError::Required { field });
                    }
                }
                if !mailing_address_matches(address, registered_address) {
                    return Err(DomainError::MailingAddressMismatch);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_issue_life_of_a_key() {
        let mut k = KeyState::Blank;
        for e in [
            KeyEvent::Personalise,
            KeyEvent::Ship,
            KeyEvent::Arrive,
            KeyEvent::HandOver,
            KeyEvent::Lock,
            KeyEvent::Unlock,
            KeyEvent::Revoke,
        ] {
            k = k.apply(e).unwrap();
        }
        assert_eq!(k, KeyState::Revoked);
        assert!(k.is_final());
        assert!(!k.counts_as_held());
    }

    #[test]
    fn impossible_steps_are_refused() {
        assert!(KeyState::Blank.apply(KeyEvent::HandOver).is_err());
        assert!(KeyState::Revoked.apply(KeyEvent::Unlock).is_err());
        assert!(KeyState::Active.apply(KeyEvent::Unlock).is_err());
        for s in KeyState::ALL.iter().filter(|s| s.is_final()) {
            for e in [KeyEvent::Revoke, KeyEvent::HandOver, KeyEvent::Unlock] {
                assert!(s.apply(e).is_err(), "{s:?} {e:?}");
            }
        }
    }

    #[test]
    fn addresses_match_with_province_prefix_and_room_added() {
        let reg = "南京市鼓楼区中山北路 1 号";
        assert!(mailing_address_matches(
            "江苏省南京市鼓楼区中山北路1号3楼前台",
            reg
        ));
        assert!(mailing_address_matches("南京市鼓楼区中山北路１号", reg));
        assert!(!mailing_address_matches("南京市玄武区中山路2号", reg));
        assert!(!mailing_address_matches("上海市浦东新区世纪大道100号", reg));
        // A municipality keeps its city name when it is the whole address start.
        assert!(mailing_address_matches(
            "北京市朝阳区建国路 88 号 B 座",
            "北京市朝阳区建国路88号"
        ));
    }

    #[test]
    fn handover_rules() {
        let reg = "南京市鼓楼区中山北路1号";
        let pickup = Handover::Pickup {
            collector_name: "李明".into(),
            collector_id_number: IdNumber::parse("11010519491231002X").unwrap(),
            introduction_letter: true,
        };
        pickup.validate(reg).unwrap();
        let no_letter = Handover::Pickup {
            collector_name: "李明".into(),
            collector_id_number: IdNumber::parse("11010519491231002X").unwrap(),
            introduction_letter: false,
        };
        assert_eq!(
            no_letter.validate(reg),
            Err(DomainError::HandoverIncomplete("introduction_letter"))
        );
        let mail = |address: &str, disclaimer: bool| Handover::Mail {
            disclaimer_received: disclaimer,
            licence_copy_received: true,
            recipient: "李明".into(),
            mobile: Mobile::parse("13912345678").unwrap(),
            id_number: IdNumber::parse("11010519491231002X").unwrap(),
            address: address.into(),
            courier: "EMS".into(),
            tracking_number: "1234567890".into(),
        };
        mail("江苏省南京市鼓楼区中山北路1号", true)
            .validate(reg)
            .unwrap();
        assert_eq!(
            mail("江苏省南京市鼓楼区中山北路1号", false).validate(reg),
            Err(DomainError::HandoverIncomplete("disclaimer"))
        );
        assert_eq!(
            mail("苏州市工业园区星湖街1号", true).validate(reg),
            Err(DomainError::MailingAddressMismatch)
        );
    }
}

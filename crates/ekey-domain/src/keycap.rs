//! The limit of three keys and the rules of 补办 (replacement) that keep it: which key
//! states count, which keys a 补办 may name, one 补办 or 注销 per key at a time, and which
//! key a replacement retires. The store, the pages and the templates ask these functions;
//! none of them keeps its own list of states.

use crate::Lang;
use crate::error::DomainError;
use crate::key::KeyState;
use crate::request::{Holdings, Kind, MAX_KEYS, Status};

/// Whether a key in `state` counts against the enterprise's three keys: every key that is
/// made and not ended (personalised, shipped, at the agency, active, locked).
pub fn counts_toward_cap(state: KeyState) -> bool {
    state.counts_as_held()
}

/// The key states that count against the three keys, as a SQL list of quoted machine
/// names (`'personalised', 'shipped', …`), for the store's queries.
pub fn counted_states_sql() -> String {
    states_sql(
        KeyState::ALL
            .iter()
            .copied()
            .filter(|s| counts_toward_cap(*s)),
    )
}

/// The request statuses in which a request is over, as a SQL list of quoted names.
pub fn terminal_statuses_sql() -> String {
    let names: Vec<String> = Status::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    names.join(", ")
}

fn states_sql(states: impl Iterator<Item = KeyState>) -> String {
    let names: Vec<String> = states.map(|s| format!("'{}'", s.as_str())).collect();
    names.join(", ")
}

/// Whether a 补办 may name a key in `state`: one the enterprise was given and uses (active,
/// also when locked by wrong PINs), or one already recorded lost or damaged. Never a key
/// still being made or shipped, and never a login name that has no key at all (a name
/// merely reserved by 获取登录名).
pub fn replaceable(state: KeyState) -> bool {
    matches!(
        state,
        KeyState::Active | KeyState::Locked | KeyState::Lost | KeyState::Damaged
    )
}

/// The kinds of which only one may be in progress for a key at a time: a 补办 and a 注销
/// both end the key they name, so a second of either would act on the first's result.
pub fn exclusive_per_key(kind: Kind) -> bool {
    matches!(kind, Kind::Replacement | Kind::Cancellation)
}

/// What the store knows about the key a new request names by its login name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyTarget {
    /// States of the enterprise's own keys bound to the login name (empty: none).
    pub states: Vec<KeyState>,
    /// The number of an open 补办 or 注销 already naming this login name.
    pub busy_with: Option<String>,
}

impl KeyTarget {
    /// Whether a key under the name counts against the three keys now.
    pub fn has_counted_key(&self) -> bool {
        self.states.iter().any(|s| counts_toward_cap(*s))
    }
}

/// Whether an open 补办 adds a key to the enterprise's count: when no key under its login
/// name counts any more (the original was already lost, damaged or cancelled), the new key
/// takes a place of its own; otherwise it replaces the one that counts.
pub fn replacement_adds_key(target: &KeyTarget) -> bool {
    !target.has_counted_key()
}

/// Checks a new request that names an existing key (补办, 注销, …) against that key:
/// only one 补办 or 注销 per key at a time; a 补办 only for a key the enterprise holds
/// (active, locked, lost or damaged), and when that key no longer counts, only if there is
/// room under the three keys.
pub fn check_key_target(
    kind: Kind,
    target: &KeyTarget,
    holdings: Holdings,
) -> Result<(), DomainError> {
    if exclusive_per_key(kind)
        && let Some(number) = &target.busy_with
    {
        return Err(KeyCapError::KeyBusy {
            number: number.clone(),
        }
        .into());
    }
    if kind == Kind::Replacement {
        if !target.states.iter().any(|s| replaceable(*s)) {
            return Err(KeyCapError::NothingToReplace.into());
        }
        if replacement_adds_key(target) && holdings.keys_held >= MAX_KEYS {
            return Err(DomainError::TooManyKeys {
                held: holdings.keys_held,
            });
        }
    }
    Ok(())
}

/// Whether a 补办 retires a key found under its login name: not its own new key, not a key
/// already ended, and never the brand-new key of another request still in progress.
pub fn is_original_to_retire(
    key_state: KeyState,
    made_by_this_request: bool,
    made_by_open_request: bool,
) -> bool {
    !made_by_this_request && !made_by_open_request && !key_state.is_final()
}

/// Whether a request of `kind` takes a place of its own under the three keys at creation
/// (增办, 重新申领): refused, and not offered, when no place is left.
pub fn takes_a_place(kind: Kind) -> bool {
    matches!(kind, Kind::Additional | Kind::Reapplication)
}

/// Whether the enterprise may ask for another key (增办) with `holdings`.
pub fn room_for_another(holdings: Holdings) -> bool {
    holdings.keys_held < MAX_KEYS
}

/// What the enterprise says of the key a 补办 replaces (required for a 补办): `Some(true)`
/// lost, `Some(false)` damaged. Returns whether it is lost; other kinds default to not lost.
pub fn key_condition(kind: Kind, key_lost: Option<bool>) -> Result<bool, DomainError> {
    match (kind, key_lost) {
        (Kind::Replacement, None) => Err(KeyCapError::ConditionRequired.into()),
        (_, lost) => Ok(lost.unwrap_or(false)),
    }
}

/// What a 补办 does to the original: a lost key is reported lost and its certificate revoked
/// for keyCompromise (someone may hold it); a damaged key is marked damaged and its
/// certificate revoked as superseded.
pub fn retirement(key_lost: bool) -> (crate::key::KeyEvent, &'static str) {
    if key_lost {
        (crate::key::KeyEvent::ReportLost, "keyCompromise")
    } else {
        (crate::key::KeyEvent::ReportDamaged, "superseded")
    }
}

/// Whether the return of a key in `state` may be recorded: only a damaged key (a lost one
/// cannot come back; others are in use or ended otherwise), and only once.
pub fn check_return(state: KeyState, already_returned: bool) -> Result<(), DomainError> {
    if state != KeyState::Damaged {
        return Err(KeyCapError::NotDamaged.into());
    }
    if already_returned {
        return Err(KeyCapError::AlreadyReturned.into());
    }
    Ok(())
}

/// Why a request naming an existing key was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyCapError {
    /// A 补办 named a login name with no key of the enterprise that can be replaced.
    #[error("no key of the enterprise to replace under this login name")]
    NothingToReplace,
    /// A 补办 or 注销 is already in progress for the key.
    #[error("request {number} is already in progress for this key")]
    KeyBusy {
        /// The number of the request in progress.
        number: String,
    },
    /// A return was recorded for a key that is not damaged.
    #[error("only a damaged key is handed back")]
    NotDamaged,
    /// The damaged key's return is already recorded.
    #[error("the key's return is already recorded")]
    AlreadyReturned,
    /// A 补办 did not say whether the key is lost or damaged.
    #[error("a replacement must say whether the key is lost or damaged")]
    ConditionRequired,
}

impl KeyCapError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            KeyCapError::NothingToReplace => "ekey.replacement.no_key",
            KeyCapError::KeyBusy { .. } => "ekey.replacement.in_progress",
            KeyCapError::ConditionRequired => "ekey.replacement.condition_required",
            KeyCapError::NotDamaged => "ekey.key.not_damaged",
            KeyCapError::AlreadyReturned => "ekey.key.already_returned",
        }
    }

    /// Whether the error is a conflict with something in progress (409) rather than bad
    /// input (422).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            KeyCapError::KeyBusy { .. } | KeyCapError::NotDamaged | KeyCapError::AlreadyReturned
        )
    }

    /// A sentence for the person who caused it.
    pub fn message(&self, lang: Lang) -> String {
        match self {
            KeyCapError::NothingToReplace => lang
                .pick(
                    "补办只能针对贵单位已领取的电子钥匙（使用中、已挂失或已损坏）：请填写遗失或损坏钥匙的原用户登录名。通过“获取登录名”预留、尚未制作钥匙的登录名不能补办，如需新增钥匙请申请增办",
                    "A replacement is only for a key your enterprise received (active, lost or damaged): enter the original login name of the lost or damaged key. A login name only reserved with \"get login name\" has no key to replace; ask for an additional key instead",
                )
                .into(),
            KeyCapError::NotDamaged => lang
                .pick(
                    "只有补办后记为“已损坏”的钥匙才能登记交回",
                    "Only a key recorded as damaged after its replacement can be recorded as handed back",
                )
                .into(),
            KeyCapError::AlreadyReturned => lang
                .pick(
                    "这把损坏的钥匙已登记交回",
                    "This damaged key's return is already recorded",
                )
                .into(),
            KeyCapError::ConditionRequired => lang
                .pick(
                    "请选择原钥匙是遗失还是损坏：遗失的钥匙证书按密钥泄露（keyCompromise）吊销；损坏的钥匙证书作废（superseded）",
                    "Say whether the original key is lost or damaged: a lost key's certificate is revoked for key compromise, a damaged key's as superseded",
                )
                .into(),
            KeyCapError::KeyBusy { number } => match lang {
                Lang::Zh => format!(
                    "这把钥匙已有正在办理的补办或注销申请（申请编号 {number}），请等该申请办结或先撤回后再提交"
                ),
                Lang::En => format!(
                    "A replacement or cancellation of this key is already in progress (request {number}); wait until it is finished or withdraw it first"
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(states: &[KeyState], busy: Option<&str>) -> KeyTarget {
        KeyTarget {
            states: states.to_vec(),
            busy_with: busy.map(str::to_string),
        }
    }

    const ONE: Holdings = Holdings { keys_held: 1 };
    const FULL: Holdings = Holdings { keys_held: 3 };

    #[test]
    fn a_reserved_name_without_a_key_cannot_be_replaced() {
        let err = check_key_target(Kind::Replacement, &target(&[], None), ONE).unwrap_err();
        assert_eq!(err.code(), "ekey.replacement.no_key");
        for s in [KeyState::Personalised, KeyState::Shipped, KeyState::Revoked] {
            assert!(
                check_key_target(Kind::Replacement, &target(&[s], None), ONE).is_err(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn keys_in_use_lost_or_damaged_can_be_replaced_without_a_new_place() {
        for s in [KeyState::Active, KeyState::Locked] {
            check_key_target(Kind::Replacement, &target(&[s], None), FULL).unwrap();
        }
        // A lost or damaged key no longer counts: its replacement takes a place of its own.
        for s in [KeyState::Lost, KeyState::Damaged] {
            check_key_target(Kind::Replacement, &target(&[s], None), ONE).unwrap();
            assert_eq!(
                check_key_target(Kind::Replacement, &target(&[s], None), FULL)
                    .unwrap_err()
                    .code(),
                "ekey.request.too_many_keys"
            );
        }
        // Original lost and its replacement active: replacing again replaces the active one.
        check_key_target(
            Kind::Replacement,
            &target(&[KeyState::Lost, KeyState::Active], None),
            FULL,
        )
        .unwrap();
    }

    #[test]
    fn one_replacement_or_cancellation_per_key_at_a_time() {
        for kind in [Kind::Replacement, Kind::Cancellation] {
            let err = check_key_target(kind, &target(&[KeyState::Active], Some("EK32x")), ONE)
                .unwrap_err();
            assert_eq!(err.code(), "ekey.replacement.in_progress");
            assert!(err.message(Lang::Zh).contains("EK32x"));
        }
        // Unlock and renewal are not held up by a replacement.
        check_key_target(
            Kind::Unlock,
            &target(&[KeyState::Locked], Some("EK32x")),
            ONE,
        )
        .unwrap();
    }

    #[test]
    fn a_replacement_never_retires_another_requests_new_key() {
        assert!(is_original_to_retire(KeyState::Active, false, false));
        assert!(is_original_to_retire(KeyState::Locked, false, false));
        assert!(!is_original_to_retire(KeyState::Personalised, false, true));
        assert!(!is_original_to_retire(KeyState::AtAgency, false, true));
        assert!(!is_original_to_retire(KeyState::Active, true, false));
        assert!(!is_original_to_retire(KeyState::Lost, false, false));
    }

    #[test]
    fn a_replacement_says_lost_or_damaged_and_each_retires_its_own_way() {
        assert_eq!(
            key_condition(Kind::Replacement, None).unwrap_err().code(),
            "ekey.replacement.condition_required"
        );
        assert!(key_condition(Kind::Replacement, Some(true)).unwrap());
        assert!(!key_condition(Kind::Replacement, Some(false)).unwrap());
        assert!(!key_condition(Kind::Cancellation, None).unwrap());
        let (event, reason) = retirement(true);
        assert_eq!(KeyState::Active.apply(event).unwrap(), KeyState::Lost);
        assert_eq!(reason, "keyCompromise");
        let (event, reason) = retirement(false);
        assert_eq!(KeyState::Active.apply(event).unwrap(), KeyState::Damaged);
        assert_eq!(reason, "superseded");
    }

    #[test]
    fn only_a_damaged_key_is_handed_back_once() {
        check_return(KeyState::Damaged, false).unwrap();
        for (state, returned, code) in [
            (KeyState::Damaged, true, "ekey.key.already_returned"),
            (KeyState::Lost, false, "ekey.key.not_damaged"),
            (KeyState::Active, false, "ekey.key.not_damaged"),
        ] {
            assert_eq!(
                check_return(state, returned).unwrap_err().code(),
                code,
                "{state:?}"
            );
        }
    }

    #[test]
    fn the_counted_states_are_the_keys_made_and_not_ended() {
        let sql = counted_states_sql();
        for s in KeyState::ALL {
            assert_eq!(
                sql.contains(&format!("'{}'", s.as_str())),
                counts_toward_cap(*s),
                "{s:?}"
            );
        }
        assert!(sql.contains("'active'") && !sql.contains("'lost'"));
        assert!(terminal_statuses_sql().contains("'expired'"));
        assert!(room_for_another(Holdings { keys_held: 2 }));
        assert!(!room_for_another(FULL));
    }
}

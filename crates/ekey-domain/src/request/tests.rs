use super::*;
use chrono::TimeZone;

fn person() -> Person {
    Person {
        name: "王小明".into(),
        id_number: IdNumber::parse("11010519491231002X").unwrap(),
        mobile: Mobile::parse("13912345678").unwrap(),
        email: Email::parse("wang@example.com").unwrap(),
    }
}

fn form(mode: LoginNameMode, name: Option<&str>) -> RequestForm {
    RequestForm {
        unlock_challenge: None,
        enterprise_change: None,
        licence_types: vec![LicenceType::ImportLicence],
        login_name_mode: mode,
        login_name: name.map(str::to_string),
        reason: None,
        authorised_user: person(),
        confirmation_letter_user: None,
        key_lost: false,
    }
}

fn enterprise() -> Actor {
    Actor {
        role: Role::Enterprise,
        account_id: "a1".into(),
        enterprise_id: Some("e1".into()),
        province: None,
    }
}

fn agency(province: &str) -> Actor {
    Actor {
        role: Role::Agency,
        account_id: "g1".into(),
        enterprise_id: None,
        province: Some(province.into()),
    }
}

fn provider() -> Actor {
    Actor {
        role: Role::Provider,
        account_id: "p1".into(),
        enterprise_id: None,
        province: None,
    }
}

fn view(kind: Kind, status: Status) -> RequestView<'static> {
    RequestView {
        kind,
        status,
        enterprise_id: "e1",
        province: "320000",
        due_at: None,
        key_lost: false,
    }
}

fn ctx<'a>(cal: &'a Calendar, remark: Option<&'a str>, present: &'a [Material]) -> Context<'a> {
    Context {
        // Friday 2026-02-13, 10:00 in Shanghai: the last working day before Spring Festival
        // apart from the make-up Saturday 2026-02-14.
        now: Utc.with_ymd_and_hms(2026, 2, 13, 2, 0, 0).unwrap(),
        calendar: cal,
        remark,
        materials_present: present,
        materials_to_replace: &[],
    }
}

const SIX: &[Material] = &[
    Material::ApplicationForm,
    Material::BusinessLicence,
    Material::ConfirmationLetter,
    Material::IdCard,
    Material::PowerOfAttorney,
    Material::UserAgreement,
];

#[test]
fn first_issue_happy_path_to_completed() {
    let cal = Calendar::builtin();
    let steps: &[(Status, Action, Actor, Status)] = &[
        (
            Status::Draft,
            Action::Submit,
            enterprise(),
            Status::AwaitingMaterials,
        ),
        (
            Status::AwaitingMaterials,
            Action::ConfirmUpload,
            enterprise(),
            Status::AgencyReview,
        ),
        (
            Status::AgencyReview,
            Action::AgencyApprove,
            agency("320000"),
            Status::ProviderReview,
        ),
        (
            Status::ProviderReview,
            Action::ProviderApprove,
            provider(),
            Status::InProduction,
        ),
        (
            Status::InProduction,
            Action::Ship,
            provider(),
            Status::Shipped,
        ),
        (
            Status::Shipped,
            Action::ReceiveShipment,
            agency("320000"),
            Status::AtAgency,
        ),
        (
            Status::AtAgency,
            Action::NotifyCollection,
            agency("320000"),
            Status::ReadyForCollection,
        ),
        (
            Status::ReadyForCollection,
            Action::HandOver,
            agency("320000"),
            Status::Completed,
        ),
    ];
    for (from, action, actor, to) in steps {
        let out = transition(
            &view(Kind::First, *from),
            *action,
            actor,
            &ctx(&cal, None, SIX),
        )
        .unwrap_or_else(|e| panic!("{action:?} from {from:?}: {e}"));
        assert_eq!(out.to, *to);
    }
}

#[test]
fn agency_review_due_crosses_spring_festival_2026() {
    let cal = Calendar::builtin();
    let out = transition(
        &view(Kind::First, Status::AwaitingMaterials),
        Action::ConfirmUpload,
        &enterprise(),
        &ctx(&cal, None, SIX),
    )
    .unwrap();
    // Sat 2/14 is a make-up workday, 2/15–2/23 are off: the 2nd working day is Tue 2/24.
    assert_eq!(
        out.due_at.unwrap().to_rfc3339(),
        "2026-02-25T00:00:00+08:00"
    );
}

#[test]
fn production_keeps_the_five_day_clock_of_review() {
    let cal = Calendar::builtin();
    let out = transition(
        &view(Kind::First, Status::AgencyReview),
        Action::AgencyApprove,
        &agency("320000"),
        &ctx(&cal, None, SIX),
    )
    .unwrap();
    let mut v = view(Kind::First, Status::ProviderReview);
    v.due_at = out.due_at;
    let prod = transition(
        &v,
        Action::ProviderApprove,
        &provider(),
        &ctx(&cal, None, SIX),
    )
    .unwrap();
    assert_eq!(prod.due_at, out.due_at);
    assert!(prod.due_at.is_some());
}

#[test]
fn confirm_upload_refuses_incomplete_checklist_and_names_what_is_missing() {
    let cal = Calendar::builtin();
    let err = transition(
        &view(Kind::First, Status::AwaitingMaterials),
        Action::ConfirmUpload,
        &enterprise(),
        &ctx(&cal, None, &SIX[..5]),
    )
    .unwrap_err();
    assert_eq!(
        err,
        DomainError::MaterialsMissing(vec![Material::UserAgreement])
    );
    assert!(err.message(crate::Lang::Zh).contains("数字证书用户协议书"));
}

#[test]
fn unlock_needs_only_its_two_items_and_goes_to_the_provider() {
    let cal = Calendar::builtin();
    let out = transition(
        &view(Kind::Unlock, Status::AwaitingMaterials),
        Action::ConfirmUpload,
        &enterprise(),
        &ctx(
            &cal,
            None,
            &[Material::UnlockForm, Material::BusinessLicence],
        ),
    )
    .unwrap();
    assert_eq!(out.to, Status::ProviderReview);
    assert!(out.due_at.is_some());
}

#[test]
fn returning_needs_a_remark_and_resubmission_goes_through_agency_again() {
    let cal = Calendar::builtin();
    let err = transition(
        &view(Kind::First, Status::ProviderReview),
        Action::ProviderReturn,
        &provider(),
        &ctx(&cal, Some("  "), SIX),
    )
    .unwrap_err();
    assert_eq!(err, DomainError::RemarkRequired);
    let out = transition(
        &view(Kind::First, Status::ProviderReview),
        Action::ProviderReturn,
        &provider(),
        &ctx(&cal, Some(" 营业执照不清晰 "), SIX),
    )
    .unwrap();
    assert_eq!(out.to, Status::Returned);
    assert_eq!(out.remark.as_deref(), Some("营业执照不清晰"));
    let again = transition(
        &view(Kind::First, Status::Returned),
        Action::ConfirmUpload,
        &enterprise(),
        &ctx(&cal, None, SIX),
    )
    .unwrap();
    assert_eq!(again.to, Status::AgencyReview);
}

#[test]
fn a_return_must_be_answered_before_confirm_upload() {
    let cal = Calendar::builtin();
    let returned = view(Kind::First, Status::Returned);
    let owed = [Material::ApplicationForm, Material::IdCard];
    let err = transition(
        &returned,
        Action::ConfirmUpload,
        &enterprise(),
        &Context {
            materials_to_replace: &owed,
            ..ctx(&cal, None, SIX)
        },
    )
    .unwrap_err();
    assert_eq!(err, DomainError::MaterialsToReplace(owed.to_vec()));
    assert_eq!(err.code(), "ekey.material.replace_after_return");
    let zh = err.message(crate::Lang::Zh);
    assert!(
        zh.contains("重新上传") && zh.contains("授权用户身份证"),
        "{zh}"
    );
    // Editing and withdrawing stay possible meanwhile.
    for a in [Action::Edit, Action::Withdraw] {
        transition(
            &returned,
            a,
            &enterprise(),
            &Context {
                materials_to_replace: &owed,
                ..ctx(&cal, None, SIX)
            },
        )
        .unwrap();
    }
}

#[test]
fn wrong_role_wrong_province_wrong_state_are_refused() {
    let cal = Calendar::builtin();
    let c = ctx(&cal, None, SIX);
    let v = view(Kind::First, Status::AgencyReview);
    assert_eq!(
        transition(&v, Action::AgencyApprove, &agency("110000"), &c).unwrap_err(),
        DomainError::OutOfScope
    );
    assert!(matches!(
        transition(&v, Action::AgencyApprove, &provider(), &c).unwrap_err(),
        DomainError::WrongRole {
            required: Role::Agency,
            ..
        }
    ));
    assert!(matches!(
        transition(&v, Action::ProviderApprove, &provider(), &c).unwrap_err(),
        DomainError::WrongState { .. }
    ));
    let mut other = enterprise();
    other.enterprise_id = Some("e2".into());
    assert_eq!(
        transition(
            &view(Kind::First, Status::Draft),
            Action::Submit,
            &other,
            &c
        )
        .unwrap_err(),
        DomainError::OutOfScope
    );
}

#[test]
fn only_additional_can_be_refused() {
    let cal = Calendar::builtin();
    let c = ctx(&cal, Some("已持有钥匙足够使用"), SIX);
    assert!(matches!(
        transition(
            &view(Kind::First, Status::AgencyReview),
            Action::AgencyRefuse,
            &agency("320000"),
            &c
        ),
        Err(DomainError::NotApplicable { .. })
    ));
    let out = transition(
        &view(Kind::Additional, Status::AgencyReview),
        Action::AgencyRefuse,
        &agency("320000"),
        &c,
    )
    .unwrap();
    assert_eq!(out.to, Status::Refused);
}

#[test]
fn cancellation_intake_and_two_day_clocks() {
    let cal = Calendar::builtin();
    let c = ctx(&cal, None, &[]);
    let g = agency("320000");
    let steps = [
        (
            Status::Draft,
            Action::Submit,
            enterprise(),
            Status::AwaitingHandover,
        ),
        (
            Status::AwaitingHandover,
            Action::Receive,
            g.clone(),
            Status::AgencyReview,
        ),
        (
            Status::AgencyReview,
            Action::AgencyApprove,
            g,
            Status::ProviderReview,
        ),
        (
            Status::ProviderReview,
            Action::ProviderApprove,
            provider(),
            Status::Completed,
        ),
    ];
    for (from, action, actor, to) in steps {
        let out = transition(&view(Kind::Cancellation, from), action, &actor, &c).unwrap();
        assert_eq!(out.to, to);
    }
}

#[test]
fn every_non_terminal_status_of_each_kind_is_reachable_and_has_a_way_out() {
    for &kind in Kind::ALL {
        let mut reached = vec![Status::Draft];
        let mut i = 0;
        while i < reached.len() {
            let here = reached[i];
            for r in kind.rules().filter(|r| r.from == here) {
                if !reached.contains(&r.to) {
                    reached.push(r.to);
                }
            }
            i += 1;
        }
        assert!(
            reached.contains(&Status::Completed),
            "{kind:?} never completes"
        );
        for s in &reached {
            assert!(
                s.is_terminal() || kind.rules().any(|r| r.from == *s && r.to != *s),
                "{kind:?} stuck in {s:?}"
            );
        }
    }
}

#[test]
fn terminal_states_have_no_exit() {
    for r in TABLE {
        assert!(!r.from.is_terminal(), "{r:?}");
    }
}

#[test]
fn new_request_rules() {
    let none = Holdings { keys_held: 0 };
    let one = Holdings { keys_held: 1 };
    let three = Holdings { keys_held: 3 };
    let f = form(LoginNameMode::Allocate, None);
    validate_new_request(Kind::First, &f, none).unwrap();
    assert_eq!(
        validate_new_request(Kind::First, &f, one),
        Err(DomainError::NotFirst)
    );
    assert_eq!(
        validate_new_request(Kind::Additional, &f, one),
        Err(DomainError::ReasonRequired(Kind::Additional))
    );
    let mut with_reason = f.clone();
    with_reason.reason = Some("新增业务员".into());
    validate_new_request(Kind::Additional, &with_reason, one).unwrap();
    assert_eq!(
        validate_new_request(Kind::Additional, &with_reason, three),
        Err(DomainError::TooManyKeys { held: 3 })
    );
    assert_eq!(
        validate_new_request(Kind::Additional, &with_reason, none),
        Err(DomainError::NoKeyYet)
    );
    let mut no_types = f.clone();
    no_types.licence_types.clear();
    assert_eq!(
        validate_new_request(Kind::First, &no_types, none),
        Err(DomainError::NoLicenceType)
    );
}

#[test]
fn login_name_rules() {
    let none = Holdings::default();
    let existing = form(LoginNameMode::Existing, Some("jd_import01"));
    assert_eq!(
        validate_new_request(Kind::First, &existing, none),
        Err(DomainError::ExistingNameNeedsMechanical)
    );
    let mut mech = existing.clone();
    mech.licence_types.push(LicenceType::AutoImportMechanical);
    validate_new_request(Kind::First, &mech, none).unwrap();
    assert_eq!(
        validate_new_request(Kind::First, &form(LoginNameMode::Existing, None), none),
        Err(DomainError::LoginNameRequired)
    );
    let mut replacement = form(LoginNameMode::Allocate, None);
    replacement.reason = Some("钥匙遗失".into());
    assert!(matches!(
        validate_new_request(Kind::Replacement, &replacement, none),
        Err(DomainError::LoginNameMode { .. })
    ));
    replacement.login_name_mode = LoginNameMode::Original;
    replacement.login_name = Some("e3200001234".into());
    validate_new_request(Kind::Replacement, &replacement, Holdings { keys_held: 3 }).unwrap();
    assert_eq!(check_login_name("a b"), Err(DomainError::LoginNameFormat));
    assert_eq!(check_login_name("ab"), Err(DomainError::LoginNameFormat));
}

#[test]
fn the_allocation_namespace_cannot_be_typed_in_as_existing() {
    let allocated = allocated_login_name("320000", 1234);
    assert_eq!(allocated, "ek320001234");
    assert!(is_allocated_pattern(&allocated));
    assert!(is_allocated_pattern("EK110000001"));
    assert!(!is_allocated_pattern("ek32000123"));
    assert!(!is_allocated_pattern("ek3200012345"));
    assert!(!is_allocated_pattern("jd_import01"));
    for name in [allocated.as_str(), "EK320009999", "Ek110000000"] {
        let mut f = form(LoginNameMode::Existing, Some(name));
        f.licence_types.push(LicenceType::AutoImportMechanical);
        assert_eq!(
            validate_new_request(Kind::First, &f, Holdings::default()),
            Err(DomainError::LoginNameAllocatedPattern),
            "{name}"
        );
        // Reserved beforehand, the same name is fine with mode allocate.
        let reserved = form(LoginNameMode::Allocate, Some(name));
        validate_new_request(Kind::First, &reserved, Holdings::default()).unwrap();
    }
}

#[test]
fn an_unlock_request_needs_its_challenge_before_submission() {
    let mut f = form(LoginNameMode::Original, Some("ek320000001"));
    assert_eq!(
        check_submittable(Kind::Unlock, &f),
        Err(DomainError::UnlockChallengeMissing)
    );
    f.unlock_challenge = Some("  ".into());
    assert_eq!(
        check_submittable(Kind::Unlock, &f),
        Err(DomainError::UnlockChallengeMissing)
    );
    f.unlock_challenge = Some("00".repeat(16));
    assert_eq!(check_submittable(Kind::Unlock, &f), Ok(()));
    let e = DomainError::UnlockChallengeMissing;
    assert_eq!(e.code(), "ekey.unlock.challenge_missing");
    assert!(e.message(crate::Lang::Zh).contains("电子钥匙助手"));
    // Other kinds carry no challenge.
    assert_eq!(
        check_submittable(Kind::First, &form(LoginNameMode::Allocate, None)),
        Ok(())
    );
}

#[test]
fn same_authorised_user_on_form_and_letter() {
    let mut f = form(LoginNameMode::Allocate, None);
    let mut other = person();
    other.id_number = IdNumber::parse("110105194912310037").unwrap_or(other.id_number);
    other.name = "李四".into();
    f.confirmation_letter_user = Some(other);
    assert_eq!(
        validate_new_request(Kind::First, &f, Holdings::default()),
        Err(DomainError::AuthorisedUserMismatch)
    );
    f.confirmation_letter_user = Some(person());
    validate_new_request(Kind::First, &f, Holdings::default()).unwrap();
}

#[test]
fn every_error_has_a_code_and_both_messages() {
    let samples = [
        DomainError::NoLicenceType,
        DomainError::ForbiddenCharacters {
            field: "enterprise_name",
        },
        DomainError::LoginNameAllocatedPattern,
        DomainError::TooManyLoginNameReservations,
        DomainError::TooManyKeys { held: 3 },
        DomainError::WrongState {
            status: Status::Draft,
            action: Action::AgencyApprove,
        },
        DomainError::MaterialsMissing(vec![Material::IdCard]),
        DomainError::OutOfScope,
    ];
    for e in samples {
        assert!(e.code().starts_with("ekey."));
        assert!(!e.message(crate::Lang::Zh).is_empty());
        assert!(e.message(crate::Lang::En).is_ascii() || e.message(crate::Lang::En).contains('“'));
    }
}

#[test]
fn each_step_waits_on_one_role() {
    use Status::*;
    for kind in KEY_PRODUCING {
        assert_eq!(waits_on(*kind, AgencyReview), Some(Role::Agency));
        assert_eq!(waits_on(*kind, ProviderReview), Some(Role::Provider));
        assert_eq!(waits_on(*kind, InProduction), Some(Role::Provider));
        assert_eq!(waits_on(*kind, AtAgency), Some(Role::Agency));
        assert_eq!(waits_on(*kind, AwaitingMaterials), Some(Role::Enterprise));
        assert_eq!(waits_on(*kind, Returned), Some(Role::Enterprise));
        assert_eq!(waits_on(*kind, Completed), None);
    }
    assert_eq!(waits_on(Kind::Unlock, ProviderReview), Some(Role::Provider));
    assert_eq!(waits_on(Kind::Unlock, Approved), None);
    assert_eq!(
        waits_on(Kind::Cancellation, AwaitingHandover),
        Some(Role::Agency)
    );
    // Every step with a running deadline waits on someone.
    for rule in TABLE {
        if matches!(rule.deadline, Deadline::Start(_) | Deadline::Keep) {
            for kind in rule.kinds {
                assert!(waits_on(*kind, rule.to).is_some(), "{kind:?} {:?}", rule.to);
            }
        }
    }
    let agency = statuses_waiting_on(Role::Agency);
    assert!(agency.contains(&AgencyReview) && !agency.contains(&ProviderReview));
    let provider = statuses_waiting_on(Role::Provider);
    assert!(provider.contains(&ProviderReview) && provider.contains(&InProduction));
    assert!(!provider.contains(&AgencyReview));
}

//! A return must be answered (验核未通过 / 复核未通过).
//!
//! After a return the enterprise may not simply press 确认上传 again with the same files:
//!
//! * every checklist item the reviewer's remark concerns must be uploaded anew;
//! * a form field the remark concerns is printed on signed and stamped documents
//!   (申请表, 确认函, …): a corrected form needs those documents signed and stamped again;
//! * any change of the form after the return makes the signed scans of the documents
//!   that print the changed fields worthless, so they must be uploaded again too — after
//!   the change (the store drops a scan of such a document staged before the change).
//!
//! When the enterprise answers, its 确认上传 records what it changed (new scans, changed
//! fields), so the reviewer sees exactly that instead of checking everything again.
//!
//! The rules here are data for [`crate::request::transition`], which refuses 确认上传 while
//! [`to_replace`] names anything.

use crate::request::{Action, Kind, Material, RequestForm, Status};

/// One step of a request's history, as far as these rules need it.
#[derive(Clone, Copy, Debug)]
pub struct Step<'a> {
    /// Action machine name (`agency_return`, `edit`, `confirm_upload`, …).
    pub action: &'a str,
    /// Status before the step.
    pub from: Option<Status>,
    /// For a return: the items and fields the remark concerns. For an edit: the fields it
    /// changed. For a 确认上传 after a return: what was changed since (items and fields).
    pub concerns: &'a [String],
}

fn is_return(action: &str) -> bool {
    action == Action::AgencyReturn.as_str() || action == Action::ProviderReturn.as_str()
}

/// The steps since the latest return, and that return; `None` when the request was never
/// returned, or the latest return was already answered with 确认上传.
fn open_return<'h, 'a>(history: &'h [Step<'a>]) -> Option<(&'h Step<'a>, &'h [Step<'a>])> {
    let at = history.iter().rposition(|s| is_return(s.action))?;
    let after = &history[at + 1..];
    if after
        .iter()
        .any(|s| s.action == Action::ConfirmUpload.as_str())
    {
        return None;
    }
    Some((&history[at], after))
}

/// The signed and stamped documents that print the form field `field` (a scan of them no
/// longer matches the form once the field changes), whatever the kind.
pub fn documents_printing(field: &str) -> &'static [Material] {
    use Material::*;
    match field {
        "licence_types" | "reason" => &[ApplicationForm, UnlockForm, CancellationForm],
        "login_name" | "authorised_user" => &[
            ApplicationForm,
            ConfirmationLetter,
            UnlockForm,
            CancellationForm,
        ],
        "key_lost" => &[CancellationForm],
        // 重新申领（信息变更）: the new enterprise data is printed on both forms.
        "enterprise_change" => &[ApplicationForm, ConfirmationLetter],
        _ => &[],
    }
}

/// [`documents_printing`] among the checklist of a `kind` request.
pub fn scans_printing(kind: Kind, field: &str) -> Vec<Material> {
    let accepted = kind.accepted_materials();
    documents_printing(field)
        .iter()
        .copied()
        .filter(|m| accepted.contains(m))
        .collect()
}

/// The form fields whose values differ between `old` and `new` (machine names as a
/// reviewer's remark names them).
pub fn changed_fields(old: &RequestForm, new: &RequestForm) -> Vec<String> {
    let mut out = Vec::new();
    let mut old_types = old.licence_types.clone();
    let mut new_types = new.licence_types.clone();
    old_types.sort();
    new_types.sort();
    if old_types != new_types {
        out.push("licence_types".to_string());
    }
    if old.reason.as_deref().map(str::trim) != new.reason.as_deref().map(str::trim) {
        out.push("reason".to_string());
    }
    if old.authorised_user != new.authorised_user {
        out.push("authorised_user".to_string());
    }
    if old.key_lost != new.key_lost {
        out.push("key_lost".to_string());
    }
    if old.unlock_challenge != new.unlock_challenge {
        out.push("unlock_challenge".to_string());
    }
    if old.enterprise_change != new.enterprise_change {
        out.push("enterprise_change".to_string());
    }
    out
}

/// What must be uploaded anew before 确认上传 is possible, given the history and the items
/// with a file uploaded since the return (staged, not yet confirmed). Empty when nothing is
/// owed (no open return, or everything replaced).
pub fn to_replace(kind: Kind, history: &[Step<'_>], staged: &[Material]) -> Vec<Material> {
    let Some((ret, after)) = open_return(history) else {
        return Vec::new();
    };
    let accepted = kind.accepted_materials();
    let mut owed: Vec<Material> = Vec::new();
    let mut add = |m: Material| {
        if accepted.contains(&m) && !owed.contains(&m) {
            owed.push(m);
        }
    };
    for c in ret.concerns {
        match Material::parse(c) {
            Ok(m) => add(m),
            Err(_) => scans_printing(kind, c).into_iter().for_each(&mut add),
        }
    }
    for s in after.iter().filter(|s| s.action == Action::Edit.as_str()) {
        for f in s.concerns {
            scans_printing(kind, f).into_iter().for_each(&mut add);
        }
    }
    // Keep the checklist's order, so the message reads like the list on the page.
    accepted
        .into_iter()
        .filter(|m| owed.contains(m) && !staged.contains(m))
        .collect()
}

/// What a 确认上传 answering a return records as changed: the items with a new file and
/// the fields changed by edits since the return. Empty when no return is open.
pub fn answer(history: &[Step<'_>], staged: &[Material]) -> Vec<String> {
    let Some((_, after)) = open_return(history) else {
        return Vec::new();
    };
    let mut out: Vec<String> = staged.iter().map(|m| m.as_str().to_string()).collect();
    for s in after.iter().filter(|s| s.action == Action::Edit.as_str()) {
        for f in s.concerns {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
    }
    out
}

/// What the enterprise changed since the latest return, for the reviewer: the record of the
/// 确认上传 that answered it. Empty if the request was never returned or not answered yet.
pub fn changed_since_return(history: &[Step<'_>]) -> Vec<String> {
    let Some(at) = history.iter().rposition(|s| is_return(s.action)) else {
        return Vec::new();
    };
    history[at + 1..]
        .iter()
        .find(|s| s.action == Action::ConfirmUpload.as_str() && s.from == Some(Status::Returned))
        .map(|s| s.concerns.to_vec())
        .unwrap_or_default()
}

/// The documents whose staged (not yet confirmed) scans an edit that changed `fields`
/// makes worthless: they were signed before the change.
pub fn scans_dropped_by_edit(fields: &[String]) -> Vec<Material> {
    let mut out = Vec::new();
    for f in fields {
        for m in documents_printing(f) {
            if !out.contains(m) {
                out.push(*m);
            }
        }
    }
    out
}

/// What a concern (a checklist item or a form field) is called for people.
pub fn concern_label(concern: &str, lang: crate::Lang) -> String {
    if let Ok(m) = Material::parse(concern) {
        return lang.pick(m.name_zh(), m.name_en()).to_string();
    }
    let (zh, en) = match concern {
        "licence_types" => ("许可证业务", "licence businesses"),
        "login_name" => ("用户登录名", "login name"),
        "reason" => ("原因 / 说明", "reason"),
        "authorised_user" => ("授权用户信息", "authorised user"),
        "key_lost" => ("钥匙是否遗失", "key lost"),
        "unlock_challenge" => ("解锁挑战码", "unlock challenge"),
        "enterprise_change" => ("变更后的企业信息", "changed enterprise data"),
        other => (other, other),
    };
    lang.pick(zh, en).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Material::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn concerned_items_and_printed_forms_must_be_replaced() {
        let none: Vec<String> = Vec::new();
        let ret = s(&["id_card", "authorised_user"]);
        let h = [
            Step {
                action: "confirm_upload",
                from: Some(Status::AwaitingMaterials),
                concerns: &none,
            },
            Step {
                action: "agency_return",
                from: Some(Status::AgencyReview),
                concerns: &ret,
            },
        ];
        assert_eq!(
            to_replace(Kind::First, &h, &[]),
            vec![ApplicationForm, ConfirmationLetter, IdCard]
        );
        assert_eq!(
            to_replace(Kind::First, &h, &[IdCard, ApplicationForm]),
            vec![ConfirmationLetter]
        );
        assert!(
            to_replace(
                Kind::First,
                &h,
                &[IdCard, ApplicationForm, ConfirmationLetter]
            )
            .is_empty()
        );
    }

    #[test]
    fn an_edit_after_the_return_invalidates_the_forms_that_print_it() {
        let none: Vec<String> = Vec::new();
        let ret = s(&["business_licence"]);
        let edit = s(&["licence_types"]);
        let h = [
            Step {
                action: "provider_return",
                from: Some(Status::ProviderReview),
                concerns: &ret,
            },
            Step {
                action: "edit",
                from: Some(Status::Returned),
                concerns: &edit,
            },
        ];
        assert_eq!(
            to_replace(Kind::First, &h, &[BusinessLicence]),
            vec![ApplicationForm]
        );
        // An edit that changed nothing asks for nothing.
        let h2 = [
            h[0],
            Step {
                action: "edit",
                from: Some(Status::Returned),
                concerns: &none,
            },
        ];
        assert!(to_replace(Kind::First, &h2, &[BusinessLicence]).is_empty());
        assert_eq!(
            answer(&h, &[BusinessLicence, ApplicationForm]),
            s(&["business_licence", "application_form", "licence_types"])
        );
    }

    #[test]
    fn an_answered_return_asks_nothing_and_the_reviewer_sees_the_answer() {
        let ret = s(&["id_card"]);
        let ans = s(&["id_card"]);
        let h = [
            Step {
                action: "agency_return",
                from: Some(Status::AgencyReview),
                concerns: &ret,
            },
            Step {
                action: "confirm_upload",
                from: Some(Status::Returned),
                concerns: &ans,
            },
        ];
        assert!(to_replace(Kind::First, &h, &[]).is_empty());
        assert_eq!(changed_since_return(&h), ans);
        assert!(changed_since_return(&h[..1]).is_empty());
        assert!(to_replace(Kind::First, &[], &[]).is_empty());
    }

    #[test]
    fn only_the_kinds_own_documents_are_asked_for() {
        assert_eq!(
            scans_printing(Kind::Unlock, "authorised_user"),
            vec![UnlockForm]
        );
        assert_eq!(
            scans_printing(Kind::Renewal, "authorised_user"),
            vec![ApplicationForm, ConfirmationLetter]
        );
        assert!(scans_printing(Kind::First, "unlock_challenge").is_empty());
    }
}

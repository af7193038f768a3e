//! 重新申领（信息变更）: a new key because the enterprise's registered data changed.
//!
//! The procedure names the case (the enterprise's name, legal representative or address
//! changed, and its business licence with it) but not what follows from it. eKey decides:
//!
//! * the form carries the changed data, beside the data eKey held when the request was made,
//!   and must change at least one of them; the unified social credit code never changes
//!   (the same legal person keeps it), so a different code is a different enterprise that
//!   registers itself;
//! * the agency checks the new data against the new licence scan at 验核, shown side by side
//!   old → new; the application form and the confirmation letter print the new data;
//! * the new key's certificate is issued with the new data (subject O and CN), and the
//!   enterprise record takes the new data when the request completes (key handed over), in
//!   the same transaction;
//! * the enterprise's other keys keep working: their certificates still name the old data
//!   and are not revoked by eKey (that would stop the other users' licence work at once, and
//!   the procedure does not ask for it). They are listed on the request for the enterprise to
//!   replace (更新: a new certificate on the same key, with the new data) or cancel (注销).

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::request::Kind;
use crate::text::{ADDRESS_MAX, CERT_NAME_MAX, PERSON_NAME_MAX, check_line};

/// The enterprise data a change concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnterpriseFacts {
    /// Registered name (the certificate's subject O and CN).
    pub name: String,
    /// Legal representative.
    pub legal_representative: String,
    /// Registered address.
    pub address: String,
}

/// The change a 重新申领（信息变更） asks for: the data before (as eKey held it when the
/// request was made) and after (as on the new licence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnterpriseChange {
    /// As eKey held it.
    pub before: EnterpriseFacts,
    /// As on the new licence.
    pub after: EnterpriseFacts,
}

/// One line of the side-by-side view: field, old value, new value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangeRow {
    /// `name`, `legal_representative` or `address`.
    pub field: &'static str,
    /// Before.
    pub before: String,
    /// After.
    pub after: String,
    /// Whether it changed.
    pub changed: bool,
}

impl EnterpriseChange {
    /// Checks the new data against what eKey holds: each field a clean line of its length,
    /// at least one different. Returns the change with the new values trimmed.
    pub fn new(
        before: EnterpriseFacts,
        after: &EnterpriseFacts,
    ) -> Result<EnterpriseChange, DomainError> {
        let after = EnterpriseFacts {
            name: check_line("enterprise_name", &after.name, CERT_NAME_MAX)?,
            legal_representative: check_line(
                "legal_representative",
                &after.legal_representative,
                PERSON_NAME_MAX,
            )?,
            address: check_line("address", &after.address, ADDRESS_MAX)?,
        };
        let change = EnterpriseChange { before, after };
        if change.rows().iter().all(|r| !r.changed) {
            return Err(DomainError::InfoChangeUnchanged);
        }
        Ok(change)
    }

    /// The side-by-side view, every field in the order of the licence.
    pub fn rows(&self) -> Vec<ChangeRow> {
        let row = |field, before: &str, after: &str| ChangeRow {
            field,
            before: before.to_string(),
            after: after.to_string(),
            changed: before.trim() != after.trim(),
        };
        vec![
            row("name", &self.before.name, &self.after.name),
            row(
                "legal_representative",
                &self.before.legal_representative,
                &self.after.legal_representative,
            ),
            row("address", &self.before.address, &self.after.address),
        ]
    }
}

/// Whether `kind` carries an enterprise change: only 重新申领（信息变更）, and it must.
pub fn check_kind(kind: Kind, change: Option<&EnterpriseChange>) -> Result<(), DomainError> {
    match (kind, change) {
        (Kind::Reapplication, None) => Err(DomainError::Required {
            field: "enterprise_change",
        }),
        (Kind::Reapplication, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(DomainError::InfoChangeNotReapplication(kind)),
    }
}

/// Chinese label of a changed field.
pub fn field_label(field: &str, lang: crate::Lang) -> &'static str {
    match field {
        "name" => lang.pick("企业名称", "Enterprise name"),
        "legal_representative" => lang.pick("法定代表人", "Legal representative"),
        _ => lang.pick("注册地址", "Registered address"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str, rep: &str, addr: &str) -> EnterpriseFacts {
        EnterpriseFacts {
            name: name.into(),
            legal_representative: rep.into(),
            address: addr.into(),
        }
    }

    #[test]
    fn a_change_must_change_something_and_be_clean() {
        let old = facts("南京甲贸易有限公司", "王建华", "南京市鼓楼区中山北路 1 号");
        let err = EnterpriseChange::new(old.clone(), &old).unwrap_err();
        assert_eq!(err, DomainError::InfoChangeUnchanged);
        assert_eq!(err.code(), "ekey.info_change.unchanged");
        let c = EnterpriseChange::new(
            old.clone(),
            &facts(
                " 南京乙贸易有限公司 ",
                "王建华",
                "南京市鼓楼区中山北路 1 号",
            ),
        )
        .unwrap();
        assert_eq!(c.after.name, "南京乙贸易有限公司");
        let changed: Vec<_> = c.rows().into_iter().filter(|r| r.changed).collect();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].before, "南京甲贸易有限公司");
        let long = "公".repeat(CERT_NAME_MAX + 1);
        assert!(EnterpriseChange::new(old.clone(), &facts(&long, "王建华", "x")).is_err());
        assert!(EnterpriseChange::new(old, &facts("甲\u{202e}乙", "王建华", "x")).is_err());
    }

    #[test]
    fn only_a_reapplication_carries_a_change_and_it_must() {
        let old = facts("甲", "王", "南京");
        let c = EnterpriseChange::new(old, &facts("乙", "王", "南京")).unwrap();
        assert!(check_kind(Kind::Reapplication, Some(&c)).is_ok());
        assert!(check_kind(Kind::Reapplication, None).is_err());
        assert!(check_kind(Kind::First, Some(&c)).is_err());
        assert!(check_kind(Kind::First, None).is_ok());
    }
}

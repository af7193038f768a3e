//! Demo data: one account for every role, exactly as API.md lists them. Idempotent.

use chrono::Utc;
use ekey_domain::request::Role;
use ekey_store::{NewAccount, NewAudit, NewEnterprise, Store};

use crate::auth::hash_password;

/// Password of every demo account.
pub const DEMO_PASSWORD: &str = "ekey-demo-2026";
/// The demo enterprise's login.
pub const DEMO_ENTERPRISE_LOGIN: &str = "demo@ekey.example";
/// The demo enterprise's credit code (valid check character).
pub const DEMO_CREDIT_CODE: &str = "91320106MA1XYW0A36";

/// Logins of the demo accounts with what they are, for printing.
pub const DEMO_LOGINS: &[(&str, &str)] = &[
    (
        DEMO_ENTERPRISE_LOGIN,
        "企业用户（江苏）/ enterprise (Jiangsu)",
    ),
    ("agency-320000", "江苏省商务厅 / agency clerk, Jiangsu"),
    ("agency-110000", "北京市商务局 / agency clerk, Beijing"),
    ("provider", "电子钥匙服务商 / provider operator"),
    ("admin", "平台管理员 / administrator"),
];

/// Creates or refreshes the demo enterprise and the five demo accounts.
pub async fn seed(store: &dyn Store) -> anyhow::Result<()> {
    let now = Utc::now();
    let hash = tokio::task::spawn_blocking(|| hash_password(DEMO_PASSWORD)).await??;
    let enterprise = store
        .upsert_enterprise(NewEnterprise {
            id: uuid::Uuid::now_v7().to_string(),
            name: "南京示例进出口有限公司".into(),
            credit_code: DEMO_CREDIT_CODE.into(),
            province: "320000".into(),
            address: "南京市建邺区江东中路 100 号".into(),
            legal_representative: "张建国".into(),
            created_at: now,
        })
        .await?;
    let accounts = [
        (
            DEMO_ENTERPRISE_LOGIN,
            "李明（经办人）",
            Role::Enterprise,
            Some(enterprise.id.clone()),
            None,
        ),
        (
            "agency-320000",
            "江苏省商务厅 验核岗",
            Role::Agency,
            None,
            Some("320000"),
        ),
        (
            "agency-110000",
            "北京市商务局 验核岗",
            Role::Agency,
            None,
            Some("110000"),
        ),
        ("provider", "服务商 操作员", Role::Provider, None, None),
        ("admin", "平台管理员", Role::Admin, None, None),
    ];
    for (login, name, role, enterprise_id, province) in accounts {
        store
            .upsert_account(
                NewAccount {
                    id: uuid::Uuid::now_v7().to_string(),
                    login: login.into(),
                    email: if login.contains('@') {
                        login.into()
                    } else {
                        format!("{login}@ekey.example")
                    },
                    display_name: name.into(),
                    mobile: (role == Role::Enterprise).then(|| "13912345678".to_string()),
                    password_hash: hash.clone(),
                    role,
                    enterprise_id,
                    province: province.map(str::to_string),
                    active: true,
                    created_at: now,
                },
                NewAudit {
                    at: now,
                    actor_role: "system".into(),
                    action: "account.seed_demo".into(),
                    object_type: "account".into(),
                    object_id: login.into(),
                    after: role.as_str().into(),
                    ..Default::default()
                },
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_credit_code_is_valid() {
        ekey_domain::ident::CreditCode::parse(super::DEMO_CREDIT_CODE).unwrap();
    }
}

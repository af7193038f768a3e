//! A certificate revoked by hand — from the provider's certificate page, the API or
//! `ekey ca revoke` (which runs beside the server and goes through here too): when it is a
//! key's current certificate, the key is revoked with it (no longer "使用中"), the request
//! that produced the key shows it in its history, and the enterprise is told by mail, all in
//! the revocation's one transaction.

use chrono::{DateTime, Utc};
use ekey_ca::RevocationReason;
use ekey_domain::key::KeyState;
use ekey_domain::request::Role;
use ekey_store::{
    CertificateRecord, Channel, KeyRevocation, NewAudit, NewMessage, Revocation, StoreError,
};

use crate::messages::local_time;
use crate::state::AppState;

/// The reason in the enterprise's words.
fn reason_zh(reason: RevocationReason) -> &'static str {
    match reason {
        RevocationReason::KeyCompromise => "密钥泄露（钥匙遗失、被盗或可能被他人掌握）",
        RevocationReason::CessationOfOperation => "停止使用",
        RevocationReason::Superseded => "已被新证书替代",
        RevocationReason::AffiliationChanged => "企业信息变更",
        RevocationReason::PrivilegeWithdrawn => "使用资格被撤销",
        RevocationReason::CaCompromise | RevocationReason::AaCompromise => "CA 密钥泄露",
        _ => "未说明",
    }
}

/// Revokes certificate `serial` (lower-case hex) with `reason` for `actor_id` (empty for an
/// operator at the command line), and its key with it (see the module). The CRL and OCSP
/// of this instance forget what they held; others see the revocation counter move.
pub async fn revoke_by_hand(
    state: &AppState,
    serial: &str,
    reason: RevocationReason,
    at: DateTime<Utc>,
    actor_id: &str,
    audit: NewAudit,
) -> Result<CertificateRecord, StoreError> {
    let revocation = Revocation {
        serial: serial.to_string(),
        reason: reason.as_str().into(),
        at,
    };
    // A key changed between reading it and revoking (a handover, a lock) is read again.
    let mut tries = 0;
    let record = loop {
        tries += 1;
        let follow = key_follow_up(state, serial, reason, at, actor_id).await?;
        match state
            .store
            .revoke_by_hand(revocation.clone(), audit.clone(), follow)
            .await
        {
            Err(StoreError::Conflict) if tries < 5 => continue,
            other => break other?,
        }
    };
    state.ca.forget_crl();
    Ok(record)
}

async fn key_follow_up(
    state: &AppState,
    serial: &str,
    reason: RevocationReason,
    at: DateTime<Utc>,
    actor_id: &str,
) -> Result<Option<KeyRevocation>, StoreError> {
    let Some(key) = state.store.key_by_certificate(serial).await? else {
        return Ok(None);
    };
    if !key.state.counts_as_held() {
        return Ok(None);
    }
    let enterprise = state.store.enterprise(&key.enterprise_id).await?;
    let account = state.store.enterprise_account(&key.enterprise_id).await?;
    let name = enterprise.map(|e| e.name).unwrap_or_default();
    let outbox = account
        .map(|a| NewMessage {
            channel: Channel::Email,
            recipient: a.email,
            subject: format!("电子钥匙证书已吊销（登录名 {}）", key.login_name),
            body: format!(
                "{name}：\n\n\
                 您登录名为 {} 的电子钥匙的证书（序列号 {serial}）已于 {} 被电子钥匙服务商吊销，\
                 原因：{}。\n\
                 这把钥匙从现在起不能再用于登录或签名。如需继续使用电子钥匙，请登录系统申请补办；\
                 如有疑问，请联系电子钥匙服务商。\n\n查看电子钥匙：{}/portal\n",
                key.login_name,
                local_time(at),
                reason_zh(reason),
                state.config.public_url().trim_end_matches('/'),
            ),
            dedup_key: format!("certificate:{serial}:revoked"),
            created_at: at,
        })
        .into_iter()
        .collect();
    Ok(Some(KeyRevocation {
        key_id: key.id,
        expected_version: key.version,
        to: KeyState::Revoked,
        request_id: key.request_id,
        actor_id: actor_id.to_string(),
        actor_role: Role::Provider,
        remark: format!("证书 {serial} 已吊销（{}）", reason.as_str()),
        at,
        outbox,
    }))
}

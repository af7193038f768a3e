//! Renewals that run out (`renewal_ttl_days` after the approval). A renewal the key never
//! confirmed must not take the key's working certificate with it: the key still signs
//! with its old certificate, so that one stays valid, and the new one — issued but never
//! confirmed as installed — is revoked. The request ends as `expired` (history, audit and
//! a mail to the enterprise in the same transaction), so nothing offers a step that can
//! only fail and the enterprise can apply again. A confirmed renewal with
//! `renewal_supersede = "expiry"` has its old certificate revoked as `superseded` then.

use ekey_domain::request::{Action, Actor, Context, Kind, Role, Status, transition};
use ekey_store::{
    Batch, NewAudit, NewMessage, RenewalChange, RenewalRecord, RequestFilter, RequestRecord,
    Revocation, StoreError, Transition,
};

use crate::messages::local_time;
use crate::state::AppState;

/// Why an issued but never confirmed renewal certificate is revoked: it never went into
/// use (RFC 5280 `cessationOfOperation`).
pub const UNUSED_RENEWAL_REASON: &str = "cessationOfOperation";

fn system(
    at: chrono::DateTime<chrono::Utc>,
    action: &str,
    object_type: &str,
    id: &str,
    before: &str,
    after: &str,
) -> NewAudit {
    NewAudit {
        at,
        actor_role: Role::System.as_str().into(),
        action: action.into(),
        object_type: object_type.into(),
        object_id: id.into(),
        before: before.into(),
        after: after.into(),
        ..Default::default()
    }
}

/// Renewal records and approved renewal requests past their expiry: see the module
/// documentation. Called by the background worker; returns how many were handled.
pub async fn expire_renewals(state: &AppState) -> anyhow::Result<usize> {
    let now = state.clock.now();
    let mut handled = 0;
    for rec in state.store.renewals_due_to_expire(now).await? {
        let done = if rec.state == "confirmed" {
            supersede_old(state, &rec, now).await?
        } else {
            let Some(r) = state.store.request(&rec.request_id).await? else {
                continue;
            };
            lapse(state, &r, Some(&rec), now).await?
        };
        handled += usize::from(done);
    }
    // Approved renewals the key never started have no record yet; they run out all the same.
    let approved = state
        .store
        .list_requests(&RequestFilter {
            statuses: vec![Status::Approved],
            limit: 1000,
            ..RequestFilter::default()
        })
        .await?;
    for r in approved.iter().filter(|r| {
        r.kind == Kind::Renewal
            && r.updated_at + chrono::Duration::days(state.config.renewal_ttl_days) <= now
    }) {
        if state.store.renewal(&r.id).await?.is_none() {
            handled += usize::from(lapse(state, r, None, now).await?);
        }
    }
    Ok(handled)
}

/// `renewal_supersede = "expiry"`: the confirmed renewal's old certificate is revoked now.
async fn supersede_old(
    state: &AppState,
    rec: &RenewalRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<bool> {
    let mut batch = Batch::default();
    super::keyauth::supersede(
        state,
        system(now, "", "", "", "", ""),
        &rec.old_serial,
        &mut batch,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.code))?;
    batch.renewal = Some(RenewalChange {
        request_id: rec.request_id.clone(),
        from_state: rec.state.clone(),
        to_state: "confirmed".into(),
        new_serial: None,
        at: now,
        old_revoked: true,
    });
    batch.audits.push(system(
        now,
        "renewal.expire",
        "request",
        &rec.request_id,
        &rec.state,
        "confirmed",
    ));
    apply(state, batch, true).await
}

/// A renewal not finished in time: its unconfirmed certificate (if any) revoked, its record
/// and its request expired, the enterprise told — one transaction.
async fn lapse(
    state: &AppState,
    r: &RequestRecord,
    rec: Option<&RenewalRecord>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<bool> {
    let mut batch = Batch::default();
    let mut revoked = None;
    if let Some(rec) = rec {
        if let Some(new) = &rec.new_serial
            && state
                .store
                .certificate(new)
                .await?
                .is_some_and(|c| c.revoked_at.is_none())
        {
            batch.revocations.push(Revocation {
                serial: new.clone(),
                reason: UNUSED_RENEWAL_REASON.into(),
                at: now,
            });
            batch.audits.push(system(
                now,
                "ca.revoke",
                "certificate",
                new,
                "",
                UNUSED_RENEWAL_REASON,
            ));
            revoked = Some(new.clone());
        }
        batch.renewal = Some(RenewalChange {
            request_id: rec.request_id.clone(),
            from_state: rec.state.clone(),
            to_state: "expired".into(),
            new_serial: None,
            at: now,
            old_revoked: false,
        });
        batch.audits.push(system(
            now,
            "renewal.expire",
            "request",
            &rec.request_id,
            &rec.state,
            "expired",
        ));
    }
    if r.status == Status::Approved {
        let outcome = state.with_calendar(|calendar| {
            transition(
                &super::requests::view(r),
                Action::Expire,
                &Actor::system(),
                &Context {
                    now,
                    calendar,
                    remark: None,
                    materials_present: &[],
                    materials_to_replace: &[],
                },
            )
        })?;
        batch.transitions.push(Transition {
            request_id: r.id.clone(),
            expected_version: r.version,
            action: Action::Expire,
            from: outcome.from,
            to: outcome.to,
            due_at: None,
            form: None,
            commit_materials: false,
            at: now,
            actor_id: String::new(),
            actor_role: Role::System,
            remark: outcome.remark.clone(),
            concerns: Vec::new(),
            audit: system(
                now,
                "request.expire",
                "request",
                &r.id,
                outcome.from.as_str(),
                outcome.to.as_str(),
            ),
            outbox: vec![expiry_mail(state, r, revoked.as_deref(), now)],
        });
    }
    if batch.transitions.is_empty() && batch.renewal.is_none() {
        return Ok(false);
    }
    let done = apply(state, batch, revoked.is_some()).await?;
    if done {
        tracing::info!(request = %r.number, unused_certificate = ?revoked, "renewal expired; the key keeps its certificate");
    }
    Ok(done)
}

async fn apply(state: &AppState, batch: Batch, revokes: bool) -> anyhow::Result<bool> {
    let mails = batch.transitions.iter().any(|t| !t.outbox.is_empty());
    match state.store.apply_batch(batch).await {
        Ok(_) => {
            if revokes {
                state.ca.forget_crl();
            }
            if mails {
                state.outbox_wake.notify_one();
            }
            Ok(true)
        }
        // Another instance (or the key confirming just now) got there first.
        Err(StoreError::Conflict) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The mail telling the enterprise the renewal ran out and what that means for its key.
fn expiry_mail(
    state: &AppState,
    r: &RequestRecord,
    revoked: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> NewMessage {
    let who = &r.form.authorised_user;
    let unused = revoked
        .map(|s| format!("本次已签发但未写入钥匙的新证书（序列号 {s}）已作废。"))
        .unwrap_or_default();
    NewMessage {
        channel: ekey_store::Channel::Email,
        recipient: who.email.as_str().to_string(),
        subject: format!("电子钥匙更新申请 {}：逾期未办理，已失效", r.number),
        body: format!(
            "{}：\n\n您的电子钥匙证书更新申请（编号 {}）未在期限内用钥匙完成，已于 {} 失效。\
             钥匙中原有的证书继续有效，可照常使用。{unused}\n\
             如仍需更新证书，请登录系统重新提交“更新”申请。\n\n查看：{}\n",
            who.name,
            r.number,
            local_time(now),
            crate::receipt::request_link(&state.config.public_url(), &r.id)
        ),
        dedup_key: format!("request:{}:v{}:email", r.id, r.version + 1),
        created_at: now,
    }
}

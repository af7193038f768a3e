//! Timed messages nobody clicks for: certificate expiry reminders at 60, 30 and 7 days
//! (one per threshold and certificate; a renewed key has a new certificate and is skipped),
//! and the morning digests of what is due today or overdue (working days only): the agency
//! clerks' of the steps waiting on their agency, the provider operators' of the steps
//! waiting on the provider. Messages go through the outbox with dedup keys, so running this on several
//! instances, or twice, sends nothing twice.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use ekey_domain::calendar::shanghai;
use ekey_domain::request::{Role, statuses_waiting_on, waits_on};
use ekey_store::{Channel, NewMessage, RequestFilter};

use crate::messages::local_time;
use crate::state::AppState;

/// Days before the end of a certificate at which its holder is reminded.
pub const THRESHOLDS: [i64; 3] = [7, 30, 60];

/// Queues whatever is due now; returns how many messages were new.
pub async fn run_once(state: &AppState) -> Result<usize, ekey_store::StoreError> {
    let now = state.clock.now();
    let mut messages = Vec::new();
    let horizon = now + chrono::Duration::days(THRESHOLDS[THRESHOLDS.len() - 1]);
    for k in state.store.expiring_keys(now, horizon).await? {
        let days_left = (k.not_after - now).num_days();
        // The tightest threshold reached: a key 25 days from its end gets the 30-day mail.
        let Some(threshold) = THRESHOLDS.iter().copied().find(|t| days_left < *t) else {
            continue;
        };
        messages.push(NewMessage {
            channel: Channel::Email,
            recipient: k.email.clone(),
            subject: format!("电子钥匙证书将于 {} 天内到期，请及时更新", threshold),
            body: format!(
                "您好：\n\n登录名为 {} 的电子钥匙，其数字证书（序列号 {}）将于 {} 到期，\
                 到期后将无法在许可证系统中签名。\n\n请登录 {}/portal ，对该钥匙申请“更新”，\
                 服务商审批后插入钥匙即可在线更新证书。\n\n电子钥匙服务商客服电话：{}\n",
                k.login_name,
                k.serial,
                local_time(k.not_after),
                state.config.public_url(),
                state.config.provider_hotline
            ),
            dedup_key: format!("expiry:{}:{threshold}", k.serial),
            created_at: now,
        });
    }
    // The digests, once per working day from 08:00: each agency clerk gets the steps of
    // their province that wait on the agency, each provider operator the steps that wait
    // on the provider.
    let local = now.with_timezone(&shanghai());
    let working = state.with_calendar(|c| c.is_working_day(local.date_naive()));
    if working && local.hour() >= 8 {
        for role in [Role::Agency, Role::Provider] {
            let readers = state.store.accounts_of_role(role.as_str()).await?;
            for reader in readers.into_iter().filter(|a| a.active) {
                let province = match role {
                    Role::Agency => match &reader.province {
                        Some(p) => Some(p.clone()),
                        None => continue,
                    },
                    _ => None,
                };
                let open = state
                    .store
                    .list_requests(&RequestFilter {
                        province,
                        statuses: statuses_waiting_on(role),
                        limit: 500,
                        ..RequestFilter::default()
                    })
                    .await?;
                let mine = open
                    .iter()
                    .filter(|r| waits_on(r.kind, r.status) == Some(role));
                if let Some(m) = digest(state, &reader, mine, now) {
                    messages.push(m);
                }
            }
        }
    }
    let added = state.store.enqueue(messages).await?;
    if added > 0 {
        state.outbox_wake.notify_one();
    }
    Ok(added)
}

/// Runs the reminders (and the renewal expiry) every `interval` until the process ends.
/// Every instance ticks; each run is claimed in the database, so with several instances
/// each run still happens once (and the outbox's dedup keys guard the messages besides).
pub fn spawn(state: AppState, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let reminders = crate::cluster::run_claimed(&state, "reminders", interval, || async {
                if let Err(e) = run_once(&state).await {
                    tracing::warn!(error = %e, at = %Utc::now(), "reminders");
                }
            });
            if let Err(e) = reminders.await {
                tracing::warn!(error = %e, "claiming the reminders run");
            }
            // Renewals past their expiry supersede the old certificate at the latest then.
            let expiry =
                crate::cluster::run_claimed(&state, "renewal-expiry", interval, || async {
                    if let Err(e) = crate::api::keyauth::expire_renewals(&state).await {
                        tracing::warn!(error = %e, at = %Utc::now(), "renewal expiry");
                    }
                });
            if let Err(e) = expiry.await {
                tracing::warn!(error = %e, "claiming the renewal expiry run");
            }
            tokio::time::sleep(interval).await;
        }
    })
}

/// A reader's digest of the steps waiting on them that are overdue or due today; `None`
/// when there are none.
fn digest<'a>(
    state: &AppState,
    reader: &ekey_store::Account,
    requests: impl Iterator<Item = &'a ekey_store::RequestRecord>,
    now: DateTime<Utc>,
) -> Option<NewMessage> {
    let local = now.with_timezone(&shanghai());
    let tomorrow = local.date_naive().succ_opt().unwrap_or(local.date_naive());
    let (mut overdue, mut today) = (Vec::new(), Vec::new());
    for r in requests {
        let Some(due) = r.due_at else { continue };
        if due <= now {
            overdue.push(r);
        } else if due.with_timezone(&shanghai()).date_naive() == tomorrow {
            today.push(r);
        }
    }
    if overdue.is_empty() && today.is_empty() {
        return None;
    }
    let line = |r: &&ekey_store::RequestRecord| {
        // A due date that reaches into a year without official data says so.
        let note = r
            .due_at
            .and_then(|d| {
                state.with_calendar(|c| {
                    ekey_domain::statutory::due_notice(c, d, ekey_domain::Lang::Zh)
                })
            })
            .map(|n| format!("（{n}）"))
            .unwrap_or_default();
        format!(
            "  {}  {}  {}  截止 {}{note}",
            r.number,
            r.kind.name_zh(),
            r.status.label_zh(),
            r.due_at.map(local_time).unwrap_or_default()
        )
    };
    Some(NewMessage {
        channel: Channel::Email,
        recipient: reader.email.clone(),
        subject: format!(
            "今日待办：{} 件今日到期，{} 件已超时",
            today.len(),
            overdue.len()
        ),
        body: format!(
            "{}：\n\n已超时（{}）：\n{}\n\n今日到期（{}）：\n{}\n\n工作台：{}/console/queue\n",
            reader.display_name,
            overdue.len(),
            overdue.iter().map(line).collect::<Vec<_>>().join("\n"),
            today.len(),
            today.iter().map(line).collect::<Vec<_>>().join("\n"),
            state.config.public_url()
        ),
        dedup_key: format!("digest:{}:{}", reader.id, local.date_naive()),
        created_at: now,
    })
}

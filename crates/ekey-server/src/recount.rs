//! Running deadlines counted again when the working-day calendar changes (issue 16 item 4):
//! a deadline counted through a year without its official arrangement used the statutory
//! holidays alone; once the year's file is loaded, each running deadline is recounted from
//! the step that started it, and the request's history says what changed — one transaction
//! per request.

use chrono::{DateTime, Utc};
use ekey_domain::Lang;
use ekey_domain::calendar::Calendar;
use ekey_domain::recount::{Step, running_since};
use ekey_domain::request::{Deadline, Role, Status, TABLE};
use ekey_domain::statutory::{notice, provisional_years};
use ekey_store::{DeadlineChange, RequestFilter, RequestRecord, StoreError};

use crate::messages::local_time;
use crate::state::AppState;

/// Who recounts: the administrator who loaded the year (or the system at start-up).
pub struct Recounter<'a> {
    /// Account id (empty for the system).
    pub actor_id: &'a str,
    /// Role.
    pub role: Role,
    /// Network address, for the audit record.
    pub address: &'a str,
}

/// Statuses in which a deadline can run: those a rule enters starting or keeping a clock.
fn running_statuses() -> Vec<Status> {
    let mut out: Vec<Status> = Vec::new();
    for r in TABLE {
        if matches!(r.deadline, Deadline::Start(_) | Deadline::Keep) && !out.contains(&r.to) {
            out.push(r.to);
        }
    }
    out
}

/// Every request with a running deadline.
pub async fn running(state: &AppState) -> Result<Vec<RequestRecord>, StoreError> {
    let mut out = Vec::new();
    let page = 500;
    let mut offset = 0;
    loop {
        let rows = state
            .store
            .list_requests(&RequestFilter {
                statuses: running_statuses(),
                limit: page,
                offset,
                ..RequestFilter::default()
            })
            .await?;
        let n = rows.len() as i64;
        out.extend(rows.into_iter().filter(|r| r.due_at.is_some()));
        if n < page {
            return Ok(out);
        }
        offset += page;
    }
}

/// How many running deadlines reach into a year without official data, and those years.
pub async fn provisional_count(state: &AppState) -> Result<(usize, Vec<i32>), StoreError> {
    let rows = running(state).await?;
    let mut years: Vec<i32> = Vec::new();
    let mut n = 0;
    state.with_calendar(|c| {
        for r in &rows {
            let ys = provisional_years(c, r.due_at.unwrap_or_default());
            if !ys.is_empty() {
                n += 1;
            }
            for y in ys {
                if !years.contains(&y) {
                    years.push(y);
                }
            }
        }
    });
    years.sort_unstable();
    Ok((n, years))
}

/// The history line's words.
fn remark(year: Option<i32>, old: DateTime<Utc>, new: DateTime<Utc>, still: &[i32]) -> String {
    let why = match year {
        Some(y) => format!("{y}年节假日安排已载入"),
        None => "节假日安排已更新".to_string(),
    };
    let what = if old == new {
        format!("本环节办理时限经重新计算不变：{} 前", local_time(new))
    } else {
        format!(
            "本环节办理时限重新计算为 {} 前（原为 {} 前）",
            local_time(new),
            local_time(old)
        )
    };
    match notice(still, Lang::Zh) {
        Some(n) => format!("{why}，{what}；{n}"),
        None => format!("{why}，{what}"),
    }
}

/// Recounts every running deadline on `new` (the calendar `old` counted it on) and records
/// those that changed, or that reached into `year` (the year just loaded). Returns how many
/// requests' histories gained a line.
pub async fn recount(
    state: &AppState,
    old: &Calendar,
    new: &Calendar,
    year: Option<i32>,
    by: &Recounter<'_>,
) -> Result<usize, StoreError> {
    let mut done = 0;
    for r in running(state).await? {
        let mut r = r;
        // A request changed by someone else meanwhile is read again (a few times at most).
        for _attempt in 0..3 {
            let Some(old_due) = r.due_at else { break };
            let history = state.store.history(&r.id).await?;
            let steps: Vec<Step<'_>> = history
                .iter()
                .map(|h| Step {
                    from: h.from_status,
                    action: &h.action,
                    at: h.at,
                })
                .collect();
            let Some((start, n)) = running_since(r.kind, &steps) else {
                break;
            };
            let new_due = new.due_at(start, n).at.to_utc();
            let was = provisional_years(old, old_due);
            let affected = new_due != old_due || year.is_some_and(|y| was.contains(&y));
            if !affected {
                break;
            }
            let still = provisional_years(new, new_due);
            let now = state.clock.now();
            let change = DeadlineChange {
                request_id: r.id.clone(),
                expected_version: r.version,
                old_due_at: old_due,
                new_due_at: new_due,
                actor_id: by.actor_id.to_string(),
                actor_role: by.role,
                remark: remark(year, old_due, new_due, &still),
                at: now,
            };
            let audit = ekey_store::NewAudit {
                at: now,
                actor_id: by.actor_id.to_string(),
                actor_role: by.role.as_str().into(),
                address: by.address.to_string(),
                action: "request.deadline_recomputed".into(),
                object_type: "request".into(),
                object_id: r.id.clone(),
                before: crate::messages::rfc3339(old_due),
                after: crate::messages::rfc3339(new_due),
            };
            match state.store.reschedule_deadline(change, audit).await {
                Ok(_) => {
                    done += 1;
                    break;
                }
                Err(StoreError::Conflict) => match state.store.request(&r.id).await? {
                    Some(fresh) => r = fresh,
                    None => break,
                },
                Err(e) => return Err(e),
            }
        }
    }
    Ok(done)
}

//! A running deadline counted again because the calendar changed (an administrator loaded a
//! year's holiday arrangement, issue 16 item 4): the new due time, a `deadline_recomputed`
//! line in the request's history (status unchanged) and the audit record, in one
//! transaction per request.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use crate::sql::ms;
use crate::{Result, StoreError};

/// The history action of a recomputed deadline.
pub const DEADLINE_RECOMPUTED: &str = "deadline_recomputed";

/// A running deadline recounted.
#[derive(Clone, Debug)]
pub struct DeadlineChange {
    /// The request.
    pub request_id: String,
    /// Its version as read; changed meanwhile → [`StoreError::Conflict`], nothing done.
    pub expected_version: i64,
    /// The due time as read (the update applies only while it is still this one).
    pub old_due_at: DateTime<Utc>,
    /// The due time recounted.
    pub new_due_at: DateTime<Utc>,
    /// Who loaded the year (account id).
    pub actor_id: String,
    /// Their role.
    pub actor_role: ekey_domain::request::Role,
    /// The history line's remark (what changed and why).
    pub remark: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The request part, in the caller's transaction.
pub(crate) async fn in_tx(conn: &mut AnyConnection, c: &DeadlineChange) -> Result<()> {
    let updated = sqlx::query(
        "UPDATE requests SET due_at = $1, version = version + 1, updated_at = $2 \
         WHERE id = $3 AND version = $4 AND due_at = $5",
    )
    .bind(ms(c.new_due_at))
    .bind(ms(c.at))
    .bind(&c.request_id)
    .bind(c.expected_version)
    .bind(ms(c.old_due_at))
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Conflict);
    }
    sqlx::query(
        "INSERT INTO request_history (request_id, seq, at, actor_id, actor_role, action, \
         from_status, to_status, remark, concerns) \
         SELECT $1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM request_history WHERE request_id = $1), \
         $2, $3, $4, $5, status, status, $6, '' FROM requests WHERE id = $1",
    )
    .bind(&c.request_id)
    .bind(ms(c.at))
    .bind(&c.actor_id)
    .bind(c.actor_role.as_str())
    .bind(DEADLINE_RECOMPUTED)
    .bind(&c.remark)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

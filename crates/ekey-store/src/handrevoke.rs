//! A certificate revoked by hand (the provider's certificate page, the API, `ekey ca revoke`)
//! and what follows for the key that carries it (issue 15): the key's state, a line in the
//! history of the request that produced it, and the enterprise's notice — all in the
//! revocation's transaction.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use crate::sql::ms;
use crate::types::NewMessage;
use crate::{Result, StoreError};

/// What a revocation by hand does to the key whose current certificate it revokes.
#[derive(Clone, Debug)]
pub struct KeyRevocation {
    /// The key.
    pub key_id: String,
    /// Its version as read; a key changed meanwhile → [`StoreError::Conflict`], nothing done.
    pub expected_version: i64,
    /// Its state afterwards (normally `revoked`).
    pub to: ekey_domain::key::KeyState,
    /// The request that produced it: its history gains a `certificate_revoked` line
    /// (status unchanged).
    pub request_id: Option<String>,
    /// Who revoked (account id; empty for an operator at the command line).
    pub actor_id: String,
    /// Their role (the provider's, also for an operator at the command line).
    pub actor_role: ekey_domain::request::Role,
    /// The history line's remark (reason, serial).
    pub remark: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The enterprise's notice.
    pub outbox: Vec<NewMessage>,
}

/// The key part of a revocation by hand, in the caller's transaction (after the
/// certificate was revoked in it).
pub(crate) async fn follow_up(
    conn: &mut AnyConnection,
    serial: &str,
    k: &KeyRevocation,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE keys SET status = $1, version = version + 1, updated_at = $2 \
         WHERE id = $3 AND version = $4 AND certificate_serial = $5",
    )
    .bind(k.to.as_str())
    .bind(ms(k.at))
    .bind(&k.key_id)
    .bind(k.expected_version)
    .bind(serial)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict);
    }
    if let Some(request_id) = &k.request_id
        && let Some(row) = sqlx::query("SELECT status FROM requests WHERE id = $1")
            .bind(request_id)
            .fetch_optional(&mut *conn)
            .await?
    {
        let status: String = row.try_get("status")?;
        sqlx::query(
            "INSERT INTO request_history (request_id, seq, at, actor_id, actor_role, action, \
             from_status, to_status, remark) \
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM request_history WHERE request_id = $1), \
             $2, $3, $4, 'certificate_revoked', $5, $5, $6)",
        )
        .bind(request_id)
        .bind(ms(k.at))
        .bind(&k.actor_id)
        .bind(k.actor_role.as_str())
        .bind(&status)
        .bind(&k.remark)
        .execute(&mut *conn)
        .await?;
    }
    for m in &k.outbox {
        crate::sql::enqueue_in(conn, m).await?;
    }
    Ok(())
}

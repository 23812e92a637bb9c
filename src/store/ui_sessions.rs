//! Operator console sessions: server-side, expiring, keyed by the SHA-256
//! of the session id (the cookie's value never reaches the database), so
//! any replica on the same database serves a session another one opened.

use sqlx::{AnyConnection, Row};

use super::StoreError;
use crate::domain::Timestamp;

/// A live session as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSession {
    /// The name the operator gave at login, if any.
    pub operator_name: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Records a new session.
pub async fn create(
    conn: &mut AnyConnection,
    id_hash: &str,
    operator_name: Option<&str>,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ui_sessions (id_hash, operator_name, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id_hash)
    .bind(operator_name)
    .bind(now.0)
    .bind(expires_at.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The session with this hash, unless there is none or it has expired at `now`.
pub async fn find_live(
    conn: &mut AnyConnection,
    id_hash: &str,
    now: Timestamp,
) -> Result<Option<UiSession>, StoreError> {
    let row = sqlx::query(
        "SELECT operator_name, created_at, expires_at FROM ui_sessions WHERE id_hash = $1",
    )
    .bind(id_hash)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let session = UiSession {
        operator_name: row.try_get("operator_name")?,
        created_at: Timestamp(row.try_get("created_at")?),
        expires_at: Timestamp(row.try_get("expires_at")?),
    };
    Ok((session.expires_at.0 > now.0).then_some(session))
}

/// Ends a session (logout); ending an unknown one is not an error.
pub async fn delete(conn: &mut AnyConnection, id_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Removes the sessions expired at `now`; returns how many.
pub async fn delete_expired(conn: &mut AnyConnection, now: Timestamp) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
        .bind(now.0)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

//! Operator console sessions: server-side, expiring, keyed by the SHA-256
//! of the session id (the cookie's value never reaches the database), so
//! any replica on the same database serves a session another one opened.

use sqlx::AnyConnection;

use super::StoreError;
use crate::domain::Timestamp;

/// Records a new session.
pub async fn create(
    conn: &mut AnyConnection,
    id_hash: &str,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO ui_sessions (id_hash, created_at, expires_at) VALUES ($1, $2, $3)")
        .bind(id_hash)
        .bind(now.0)
        .bind(expires_at.0)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether a session with this hash exists and has not expired at `now`.
pub async fn is_valid(
    conn: &mut AnyConnection,
    id_hash: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT expires_at FROM ui_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some_and(|expires_at| expires_at > now.0))
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

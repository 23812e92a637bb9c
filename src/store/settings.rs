//! Small named values the service keeps for itself.

use sqlx::AnyConnection;

use super::StoreError;

pub async fn get(conn: &mut AnyConnection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

pub async fn set(conn: &mut AnyConnection, name: &str, value: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name)
    .bind(value)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Returns the stored value, or stores `make()` if there is none yet. Safe
/// when several replicas race: the first write wins and everyone reads it.
pub async fn get_or_init(
    conn: &mut AnyConnection,
    name: &str,
    make: impl FnOnce() -> String,
) -> Result<String, StoreError> {
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(make())
        .execute(&mut *conn)
        .await?;
    get(conn, name)
        .await?
        .ok_or(StoreError::NotFound("setting"))
}

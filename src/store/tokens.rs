//! Issued SCIM bearer tokens: stored by id with a hash of the secret, never
//! the secret itself, so they can be listed and revoked.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::StoreError;
use super::identities::parse_uuid;
use crate::domain::{SourceName, Timestamp};

/// A token as stored (without any secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub id: Uuid,
    pub source: SourceName,
    /// Hex SHA-256 of the token string.
    pub token_hash: String,
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

fn token_from_row(row: &AnyRow) -> Result<StoredToken, StoreError> {
    Ok(StoredToken {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        source: SourceName(row.try_get("source")?),
        token_hash: row.try_get("token_hash")?,
        description: row.try_get("description")?,
        created_at: Timestamp(row.try_get("created_at")?),
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
    })
}

const COLUMNS: &str = "id, source, token_hash, description, created_at, expires_at, revoked_at";

pub async fn insert(conn: &mut AnyConnection, token: &StoredToken) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO scim_tokens (id, source, token_hash, description, created_at, expires_at, \
         revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token.id.to_string())
    .bind(token.source.as_str().to_string())
    .bind(token.token_hash.clone())
    .bind(token.description.clone())
    .bind(token.created_at.0)
    .bind(token.expires_at.map(|t| t.0))
    .bind(token.revoked_at.map(|t| t.0))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut AnyConnection, id: Uuid) -> Result<Option<StoredToken>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM scim_tokens WHERE id = $1");
    sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(token_from_row)
        .transpose()
}

/// Every token, oldest first (optionally of one source).
pub async fn list(
    conn: &mut AnyConnection,
    source: Option<&SourceName>,
) -> Result<Vec<StoredToken>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM scim_tokens WHERE ($1 IS NULL OR source = $1) \
         ORDER BY created_at, id"
    );
    sqlx::query(&sql)
        .bind(source.map(|s| s.as_str().to_string()))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
}

/// Marks a token revoked; returns false when there is no such token.
pub async fn revoke(conn: &mut AnyConnection, id: Uuid) -> Result<bool, StoreError> {
    let result =
        sqlx::query("UPDATE scim_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
            .bind(Timestamp::now().0)
            .bind(id.to_string())
            .execute(&mut *conn)
            .await?;
    Ok(result.rows_affected() > 0)
}

/// Token rows read recently, so that a SCIM request does not pay a database
/// round trip for its token. Only rows of tokens whose signature was already
/// verified are kept (so only issued tokens, never attacker input).
/// A revocation through this process's [`super::Store`] applies at once
/// ([`TokenCache::forget`]); one made by another process (the CLI, another
/// replica) applies within [`TOKEN_CACHE_TTL`].
#[derive(Debug, Default)]
pub struct TokenCache {
    rows: std::sync::Mutex<std::collections::HashMap<Uuid, (StoredToken, std::time::Instant)>>,
}

/// How long a cached token row is trusted.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl TokenCache {
    fn fresh(&self, id: Uuid) -> Option<StoredToken> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.get(&id)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(row, _)| row.clone())
    }

    fn keep(&self, row: &StoredToken) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
        rows.insert(row.id, (row.clone(), std::time::Instant::now()));
    }

    /// Drops a token's row (after it was revoked).
    pub fn forget(&self, id: Uuid) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.remove(&id);
    }
}

/// [`get`] through the store's [`TokenCache`]; revoked rows are never
/// cached, so a revocation seen once is seen on every later call.
pub async fn get_cached(store: &super::Store, id: Uuid) -> Result<Option<StoredToken>, StoreError> {
    let cache = store.token_cache();
    if let Some(row) = cache.fresh(id) {
        return Ok(Some(row));
    }
    let mut conn = store.pool().acquire().await?;
    let row = get(&mut conn, id).await?;
    if let Some(row) = row.as_ref().filter(|r| r.revoked_at.is_none()) {
        cache.keep(row);
    }
    Ok(row)
}

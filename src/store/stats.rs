//! Read-only figures for `/admin/v1/status` and `/metrics`, read from the
//! database so every replica reports the same values.

use sqlx::{AnyConnection, Row};

use super::StoreError;
use crate::domain::{SourceName, Timestamp};

/// What the store holds for one identity source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    pub users: i64,
    pub groups: i64,
    /// When the source's newest identity-change event was recorded.
    pub last_event_at: Option<Timestamp>,
}

pub async fn source_summary(
    conn: &mut AnyConnection,
    source: &SourceName,
) -> Result<SourceSummary, StoreError> {
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM identity_users WHERE source = $1")
        .bind(source.as_str())
        .fetch_one(&mut *conn)
        .await?;
    let groups: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM identity_groups WHERE source = $1")
        .bind(source.as_str())
        .fetch_one(&mut *conn)
        .await?;
    // Newest first by sequence: stops at the source's latest event.
    let last_event_at: Option<i64> = sqlx::query_scalar(
        "SELECT created_at FROM identity_events WHERE source = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(source.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(SourceSummary {
        users,
        groups,
        last_event_at: last_event_at.map(Timestamp),
    })
}

/// Identity-change events ever recorded, by (source, kind), sorted.
pub async fn event_counts(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    sqlx::query(
        "SELECT source, kind, COUNT(*) AS n FROM identity_events GROUP BY source, kind \
         ORDER BY source, kind",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get("source")?,
            row.try_get("kind")?,
            row.try_get("n")?,
        ))
    })
    .collect()
}

/// The newest sync run that applied cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRun {
    pub id: String,
    /// `full` or `events`.
    pub kind: String,
    pub steps_applied: i64,
    pub finished_at: Timestamp,
}

pub async fn last_applied_run(conn: &mut AnyConnection) -> Result<Option<AppliedRun>, StoreError> {
    let row = sqlx::query(
        "SELECT id, kind, steps_applied, finished_at FROM sync_runs \
         WHERE status = 'applied' AND finished_at IS NOT NULL \
         ORDER BY finished_at DESC, id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(AppliedRun {
            id: row.try_get("id")?,
            kind: row.try_get("kind")?,
            steps_applied: row.try_get("steps_applied")?,
            finished_at: Timestamp(row.try_get("finished_at")?),
        })
    })
    .transpose()
}

/// Runs held by the mass-change guard, waiting for approval.
pub async fn held_runs(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM sync_runs WHERE status = 'held'")
            .fetch_one(&mut *conn)
            .await?,
    )
}

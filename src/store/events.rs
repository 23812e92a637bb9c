//! The outbox of identity-change events.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::StoreError;
use super::identities::parse_uuid;
use crate::domain::{EventKind, IdentityEvent, NewIdentityEvent, SourceName, Timestamp};

/// The PostgreSQL channel notified (on commit) when events are appended:
/// a trigger on `identity_events` sends it (migration
/// `20261130000600_outbox_notify_trigger`), which PostgreSQL delivers only if
/// and when the inserting transaction commits, waking the leader on any
/// replica.
pub const OUTBOX_CHANNEL: &str = "tyk_idsync_outbox";

/// Appends an event; call it inside the transaction that makes the change.
pub async fn append(conn: &mut AnyConnection, event: &NewIdentityEvent) -> Result<i64, StoreError> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO identity_events (source, kind, subject_id, email, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
    )
    .bind(event.source.as_str())
    .bind(event.kind.as_str())
    .bind(event.subject_id.map(|id| id.to_string()))
    .bind(event.email.as_deref())
    .bind(event.detail.to_string())
    .bind(Timestamp::now().0)
    .fetch_one(&mut *conn)
    .await?;
    Ok(seq)
}

fn event_from_row(row: &AnyRow) -> Result<IdentityEvent, StoreError> {
    let kind: String = row.try_get("kind")?;
    let subject: Option<String> = row.try_get("subject_id")?;
    let detail: String = row.try_get("detail")?;
    Ok(IdentityEvent {
        seq: row.try_get("seq")?,
        source: SourceName(row.try_get("source")?),
        kind: EventKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("bad event kind {kind:?}")))?,
        subject_id: subject.as_deref().map(parse_uuid).transpose()?,
        email: row.try_get("email")?,
        detail: serde_json::from_str(&detail)
            .map_err(|e| StoreError::Corrupt(format!("bad event detail: {e}")))?,
        created_at: Timestamp(row.try_get("created_at")?),
        processed_at: row
            .try_get::<Option<i64>, _>("processed_at")?
            .map(Timestamp),
    })
}

/// The oldest unprocessed events, in order.
pub async fn pending(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<IdentityEvent>, StoreError> {
    sqlx::query(
        "SELECT seq, source, kind, subject_id, email, detail, created_at, processed_at \
         FROM identity_events WHERE processed_at IS NULL ORDER BY seq LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(event_from_row)
    .collect()
}

/// All events of a source after a sequence number (for tests and audits).
pub async fn since(
    conn: &mut AnyConnection,
    source: &SourceName,
    after_seq: i64,
) -> Result<Vec<IdentityEvent>, StoreError> {
    sqlx::query(
        "SELECT seq, source, kind, subject_id, email, detail, created_at, processed_at \
         FROM identity_events WHERE source = $1 AND seq > $2 ORDER BY seq",
    )
    .bind(source.as_str())
    .bind(after_seq)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(event_from_row)
    .collect()
}

/// Marks these events processed: one statement per 500 events (a bulk
/// load settles thousands at once; one commit each was most of its time on
/// PostgreSQL).
pub async fn mark_processed(conn: &mut AnyConnection, seqs: &[i64]) -> Result<(), StoreError> {
    let now = Timestamp::now().0;
    for chunk in seqs.chunks(500) {
        let sql = format!(
            "UPDATE identity_events SET processed_at = $1 WHERE seq IN ({})",
            super::bulk::placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(now);
        for seq in chunk {
            query = query.bind(*seq);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Number of unprocessed events and the creation time of the oldest one.
pub async fn depth(conn: &mut AnyConnection) -> Result<(i64, Option<Timestamp>), StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM identity_events \
         WHERE processed_at IS NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((
        row.try_get("n")?,
        row.try_get::<Option<i64>, _>("oldest")?.map(Timestamp),
    ))
}

//! Consuming the identity-event outbox with leases: a worker claims a batch
//! of pending events (a lease with an expiry), applies them, then marks them
//! processed. A crashed worker's lease expires and the events are claimed
//! again (at-least-once). Events of people whose steps failed are released
//! with a retry time, never marked processed. On PostgreSQL the claim uses
//! `FOR UPDATE SKIP LOCKED` so several replicas can share the outbox; SQLite
//! serialises writers and runs a single worker.

use sqlx::{AnyConnection, Row};

use super::{Backend, StoreError};
use crate::domain::{EventKind, SourceName, Timestamp};

/// The part of an event the sync worker needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEvent {
    pub seq: i64,
    pub source: SourceName,
    pub kind: EventKind,
    /// Lower-cased e-mail of the affected person; `None` for group and
    /// mapping events (the worker finds the people they affect).
    pub email: Option<String>,
    /// The user or group the event is about (a group's id for group
    /// events and for a nested group's membership change).
    pub subject_id: Option<uuid::Uuid>,
    /// How many times this event has been claimed (1 on the first claim).
    pub attempts: i64,
}

/// Claims up to `limit` pending events not leased by anyone, until `until`.
/// Call inside a transaction from [`Store::begin_write`] (on SQLite it must
/// hold the write lock before it reads) and commit it straight away.
///
/// [`Store::begin_write`]: super::Store::begin_write
pub async fn claim(
    conn: &mut AnyConnection,
    backend: Backend,
    holder: &str,
    limit: i64,
    now: Timestamp,
    until: Timestamp,
) -> Result<Vec<ClaimedEvent>, StoreError> {
    claim_filtered(conn, backend, holder, limit, now, until, None).await
}

/// [`claim`] beside event runs in flight: only events naming a person
/// (`held` says, of a lower-cased e-mail, whether a run in flight has the
/// person; their events are left for later), and none after the first
/// pending event naming nobody (a group or mapping event, whose people
/// are found only once it is claimed: it waits until no run is in flight,
/// and nothing overtakes it meanwhile).
pub async fn claim_beside(
    conn: &mut AnyConnection,
    backend: Backend,
    holder: &str,
    limit: i64,
    now: Timestamp,
    until: Timestamp,
    held: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<ClaimedEvent>, StoreError> {
    claim_filtered(conn, backend, holder, limit, now, until, Some(held)).await
}

async fn claim_filtered(
    conn: &mut AnyConnection,
    backend: Backend,
    holder: &str,
    limit: i64,
    now: Timestamp,
    until: Timestamp,
    held: Option<&(dyn Fn(&str) -> bool + Sync)>,
) -> Result<Vec<ClaimedEvent>, StoreError> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE OF e SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let rows = sqlx::query(&format!(
        "SELECT e.seq, e.source, e.kind, e.email, e.subject_id FROM identity_events e \
         WHERE e.processed_at IS NULL AND NOT EXISTS \
         (SELECT 1 FROM sync_event_leases l WHERE l.seq = e.seq AND l.until_at > $1) \
         ORDER BY e.seq LIMIT $2{lock}"
    ))
    .bind(now.0)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let rows = match held {
        None => rows,
        Some(held) => {
            let mut free = Vec::with_capacity(rows.len());
            for row in rows {
                match row.try_get::<Option<String>, _>("email")? {
                    None => break,
                    Some(email) if held(&crate::domain::fold_key(&email)) => {}
                    Some(_) => free.push(row),
                }
            }
            free
        }
    };
    let mut claimed = lease(conn, &rows, holder, now, until).await?;
    // The same people's later pending events come along (up to `limit`
    // more), so one plan covers each person however their events are
    // spread over the outbox (a bulk load creates users, then groups).
    let emails: Vec<String> = claimed
        .iter()
        .filter_map(|e| e.email.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let Some(last) = claimed.iter().map(|e| e.seq).max() else {
        return Ok(claimed);
    };
    let mut extra = 0;
    for chunk in emails.chunks(200) {
        if extra >= limit {
            break;
        }
        let list = super::bulk::placeholders(4, chunk.len());
        let sql = format!(
            "SELECT e.seq, e.source, e.kind, e.email, e.subject_id FROM identity_events e \
             WHERE e.processed_at IS NULL AND e.seq > $1 AND e.email IN ({list}) AND NOT EXISTS \
             (SELECT 1 FROM sync_event_leases l WHERE l.seq = e.seq AND l.until_at > $2) \
             ORDER BY e.seq LIMIT $3{lock}"
        );
        let mut query = sqlx::query(&sql).bind(last).bind(now.0).bind(limit - extra);
        for email in chunk {
            query = query.bind(email.as_str());
        }
        let rows = query.fetch_all(&mut *conn).await?;
        let more = lease(conn, &rows, holder, now, until).await?;
        extra += i64::try_from(more.len()).unwrap_or(i64::MAX);
        claimed.extend(more);
    }
    Ok(claimed)
}

/// Leases the selected events to `holder`, in multi-row statements, and
/// returns those it got (in the order selected); an event another claimer
/// holds is left out. The conditional upsert is what makes a claim
/// exclusive: it waits for a concurrent claimer's insert and re-checks
/// its lease, which the SELECT before it (a snapshot) cannot do.
async fn lease(
    conn: &mut AnyConnection,
    rows: &[sqlx::any::AnyRow],
    holder: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<Vec<ClaimedEvent>, StoreError> {
    let mut attempts_of: std::collections::HashMap<i64, i64> =
        std::collections::HashMap::with_capacity(rows.len());
    let per_statement = super::bulk::rows_per_statement(conn, 2);
    for chunk in rows.chunks(per_statement) {
        // Parameters: $1 holder, $2 until, $3 now, then one seq per row.
        let values = (0..chunk.len())
            .map(|n| format!("(${}, $1, $2, 1)", n + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO sync_event_leases (seq, holder, until_at, attempts) VALUES {values} \
             ON CONFLICT (seq) DO UPDATE SET holder = excluded.holder, \
             until_at = excluded.until_at, attempts = sync_event_leases.attempts + 1 \
             WHERE sync_event_leases.until_at <= $3 RETURNING seq, attempts"
        );
        let mut query = sqlx::query(&sql).bind(holder).bind(until.0).bind(now.0);
        for row in chunk {
            query = query.bind(row.try_get::<i64, _>("seq")?);
        }
        for leased in query.fetch_all(&mut *conn).await? {
            attempts_of.insert(leased.try_get("seq")?, leased.try_get("attempts")?);
        }
    }
    let mut claimed = Vec::with_capacity(attempts_of.len());
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        let Some(&attempts) = attempts_of.get(&seq) else {
            continue;
        };
        let kind: String = row.try_get("kind")?;
        claimed.push(ClaimedEvent {
            seq,
            source: SourceName(row.try_get("source")?),
            kind: EventKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("bad event kind {kind:?}")))?,
            email: row.try_get("email")?,
            subject_id: row
                .try_get::<Option<String>, _>("subject_id")?
                .as_deref()
                .map(super::identities::parse_uuid)
                .transpose()?,
            attempts,
        });
    }
    Ok(claimed)
}

/// Events settled per statement (well under SQLite's bound-parameter limit).
const SETTLE_CHUNK: usize = 500;

/// Marks events processed and drops their leases. Call it inside a
/// transaction from [`Store::begin`] or [`Store::begin_write`] (which
/// cannot be left half-open by a cancelled run, as a `begin` here on a
/// pooled connection could): a crash then leaves either both done or
/// neither (the events are claimed again once their leases run out), never
/// a lease on a processed event.
///
/// [`Store::begin`]: super::Store::begin
/// [`Store::begin_write`]: super::Store::begin_write
pub async fn complete(tx: &mut AnyConnection, seqs: &[i64]) -> Result<(), StoreError> {
    if seqs.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now().0;
    for chunk in seqs.chunks(SETTLE_CHUNK) {
        let sql = format!(
            "UPDATE identity_events SET processed_at = $1 WHERE seq IN ({})",
            super::bulk::placeholders(2, chunk.len())
        );
        let mut processed = sqlx::query(&sql).bind(now);
        for seq in chunk {
            processed = processed.bind(*seq);
        }
        processed.execute(&mut *tx).await?;
        let sql = format!(
            "DELETE FROM sync_event_leases WHERE seq IN ({})",
            super::bulk::placeholders(1, chunk.len())
        );
        let mut unleased = sqlx::query(&sql);
        for seq in chunk {
            unleased = unleased.bind(*seq);
        }
        unleased.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Deletes leases left on events already processed (or gone), as a
/// settlement interrupted before [`complete`] was one transaction could
/// leave; returns how many. A new leader calls it on taking over.
pub async fn remove_stale_leases(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let result = sqlx::query(
        "DELETE FROM sync_event_leases WHERE NOT EXISTS \
         (SELECT 1 FROM identity_events e WHERE e.seq = sync_event_leases.seq \
          AND e.processed_at IS NULL)",
    )
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

/// Frees events leased by any other holder (a leader that died or lost the
/// lead), so a new leader need not wait for their leases to run out, and
/// removes leases left on processed events ([`remove_stale_leases`]);
/// returns how many events it freed. Safe because only the leader claims,
/// a new leader calls it only once its predecessor's lease has run out (no
/// write of the predecessor can start any more), and every step is
/// idempotent.
pub async fn release_others(
    conn: &mut AnyConnection,
    holder: &str,
    now: Timestamp,
) -> Result<u64, StoreError> {
    remove_stale_leases(conn).await?;
    let result = sqlx::query(
        "UPDATE sync_event_leases SET holder = '', until_at = $1 \
         WHERE holder <> $2 AND holder <> '' AND until_at > $1",
    )
    .bind(now.0)
    .bind(holder)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

/// Frees every leased event (whoever claimed it: a dead leader, or this
/// replica's own runs abandoned when it lost the lead) and removes leases
/// left on processed events; returns how many events it freed. For a
/// worker taking the lead, with no run of its own in flight, once its
/// predecessor's lease has run out.
pub async fn release_all(conn: &mut AnyConnection, now: Timestamp) -> Result<u64, StoreError> {
    remove_stale_leases(conn).await?;
    let result = sqlx::query(
        "UPDATE sync_event_leases SET holder = '', until_at = $1 \
         WHERE holder <> '' AND until_at > $1",
    )
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected())
}

/// Gives events back unprocessed; nobody claims them before `retry_at`.
pub async fn release(
    conn: &mut AnyConnection,
    seqs: &[i64],
    retry_at: Timestamp,
) -> Result<(), StoreError> {
    for seq in seqs {
        sqlx::query("UPDATE sync_event_leases SET holder = '', until_at = $1 WHERE seq = $2")
            .bind(retry_at.0)
            .bind(*seq)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

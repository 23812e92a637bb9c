//! Sync runs (planned, held, applied…) and the audit log of applied steps.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::StoreError;
use super::identities::parse_uuid;
use crate::domain::Timestamp;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// The periodic (or `sync --once`) reconcile of everyone.
    Full,
    /// Outbox events for just the affected people.
    Events,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Planned,
    /// Stopped by the mass-change guard, waiting for approval.
    Held,
    Approved,
    Applying,
    Applied,
    /// Some steps failed (the people concerned are retried later).
    Failed,
    /// A newer plan made a held run moot.
    Superseded,
    /// An operator refused a held run (nothing of it was applied).
    Rejected,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Full => "full",
            RunKind::Events => "events",
        }
    }
    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "full" => Ok(RunKind::Full),
            "events" => Ok(RunKind::Events),
            other => Err(StoreError::Corrupt(format!("bad run kind {other:?}"))),
        }
    }
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Planned,
        RunStatus::Held,
        RunStatus::Approved,
        RunStatus::Applying,
        RunStatus::Applied,
        RunStatus::Failed,
        RunStatus::Superseded,
        RunStatus::Rejected,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Planned => "planned",
            RunStatus::Held => "held",
            RunStatus::Approved => "approved",
            RunStatus::Applying => "applying",
            RunStatus::Applied => "applied",
            RunStatus::Failed => "failed",
            RunStatus::Superseded => "superseded",
            RunStatus::Rejected => "rejected",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    pub id: Uuid,
    pub kind: RunKind,
    pub status: RunStatus,
    pub event_seqs: Vec<i64>,
    pub steps_planned: i64,
    pub steps_applied: i64,
    pub steps_failed: i64,
    pub people_removed: i64,
    pub managed_users: i64,
    /// The plan as JSON, kept for held runs so approval applies exactly it.
    pub plan: Option<serde_json::Value>,
    pub message: Option<String>,
    pub approved_by: Option<String>,
    pub approved_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// A run to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSyncRun {
    pub kind: RunKind,
    pub status: RunStatus,
    pub event_seqs: Vec<i64>,
    pub steps_planned: i64,
    pub people_removed: i64,
    pub managed_users: i64,
    pub plan: Option<serde_json::Value>,
    pub message: Option<String>,
}

const RUN_COLUMNS: &str = "id, kind, status, event_seqs, steps_planned, steps_applied, \
     steps_failed, people_removed, managed_users, plan, message, approved_by, approved_at, \
     created_at, finished_at";

fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("bad {what}: {e}")))
}

fn run_from_row(row: &AnyRow) -> Result<SyncRun, StoreError> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let plan: Option<String> = row.try_get("plan")?;
    let seqs: String = row.try_get("event_seqs")?;
    Ok(SyncRun {
        id: parse_uuid(&id)?,
        kind: RunKind::parse(&row.try_get::<String, _>("kind")?)?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("bad run status {status:?}")))?,
        event_seqs: parse_json(&seqs, "run event_seqs")?,
        steps_planned: row.try_get("steps_planned")?,
        steps_applied: row.try_get("steps_applied")?,
        steps_failed: row.try_get("steps_failed")?,
        people_removed: row.try_get("people_removed")?,
        managed_users: row.try_get("managed_users")?,
        plan: plan
            .as_deref()
            .map(|p| parse_json(p, "run plan"))
            .transpose()?,
        message: row.try_get("message")?,
        approved_by: row.try_get("approved_by")?,
        approved_at: row.try_get::<Option<i64>, _>("approved_at")?.map(Timestamp),
        created_at: Timestamp(row.try_get("created_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
    })
}

pub async fn create_run(conn: &mut AnyConnection, run: &NewSyncRun) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO sync_runs (id, kind, status, event_seqs, steps_planned, steps_applied, \
         steps_failed, people_removed, managed_users, plan, message, created_at) \
         VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $7, $8, $9, $10)",
    )
    .bind(id.to_string())
    .bind(run.kind.as_str())
    .bind(run.status.as_str())
    .bind(json_text(&run.event_seqs))
    .bind(run.steps_planned)
    .bind(run.people_removed)
    .bind(run.managed_users)
    .bind(run.plan.as_ref().map(json_text))
    .bind(run.message.as_deref())
    .bind(Timestamp::now().0)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// Records the end (or a new stage) of a run.
pub async fn finish_run(
    conn: &mut AnyConnection,
    id: Uuid,
    status: RunStatus,
    applied: i64,
    failed: i64,
    message: Option<&str>,
) -> Result<(), StoreError> {
    let finished = matches!(
        status,
        RunStatus::Applied | RunStatus::Failed | RunStatus::Superseded
    );
    let done = sqlx::query(
        "UPDATE sync_runs SET status = $1, steps_applied = $2, steps_failed = $3, \
         message = COALESCE($4, message), finished_at = $5 WHERE id = $6",
    )
    .bind(status.as_str())
    .bind(applied)
    .bind(failed)
    .bind(message)
    .bind(finished.then(|| Timestamp::now().0))
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("sync run"));
    }
    Ok(())
}

pub async fn get_run(conn: &mut AnyConnection, id: Uuid) -> Result<Option<SyncRun>, StoreError> {
    sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM sync_runs WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(run_from_row)
    .transpose()
}

/// Newest first; `status` narrows to one status.
pub async fn list_runs(
    conn: &mut AnyConnection,
    status: Option<RunStatus>,
    limit: i64,
) -> Result<Vec<SyncRun>, StoreError> {
    sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM sync_runs \
         WHERE (CAST($1 AS TEXT) IS NULL OR status = CAST($1 AS TEXT)) \
         ORDER BY created_at DESC, id LIMIT $2"
    ))
    .bind(status.map(RunStatus::as_str))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(run_from_row)
    .collect()
}

/// Approves a held run exactly once and returns it (with its plan);
/// `Conflict` if the run exists but is not held.
pub async fn approve_run(
    conn: &mut AnyConnection,
    id: Uuid,
    approved_by: &str,
) -> Result<SyncRun, StoreError> {
    let changed = sqlx::query(
        "UPDATE sync_runs SET status = 'approved', approved_by = $1, approved_at = $2 \
         WHERE id = $3 AND status = 'held'",
    )
    .bind(approved_by)
    .bind(Timestamp::now().0)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    decided(conn, id, changed.rows_affected(), "sync run approval").await
}

/// Refuses a held run: it turns `rejected`, finished now, its message
/// saying who and why. Conflict when the run is no longer held.
pub async fn reject_run(
    conn: &mut AnyConnection,
    id: Uuid,
    message: &str,
) -> Result<SyncRun, StoreError> {
    let changed = sqlx::query(
        "UPDATE sync_runs SET status = 'rejected', message = $1, finished_at = $2 \
         WHERE id = $3 AND status = 'held'",
    )
    .bind(message)
    .bind(Timestamp::now().0)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    decided(conn, id, changed.rows_affected(), "sync run rejection").await
}

/// The run after an approval or a rejection that changed `changed` rows:
/// `Conflict` when none (the run was no longer held), `NotFound` without it.
async fn decided(
    conn: &mut AnyConnection,
    id: Uuid,
    changed: u64,
    entity: &'static str,
) -> Result<SyncRun, StoreError> {
    let run = get_run(conn, id)
        .await?
        .ok_or(StoreError::NotFound("sync run"))?;
    if changed == 0 {
        return Err(StoreError::Conflict {
            entity,
            detail: format!("run {id} is {}, not held", run.status.as_str()),
        });
    }
    Ok(run)
}

/// Marks every still-held run as superseded (a newer plan replaces them).
pub async fn supersede_held_runs(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE sync_runs SET status = 'superseded', finished_at = $1 WHERE status = 'held'",
    )
    .bind(Timestamp::now().0)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

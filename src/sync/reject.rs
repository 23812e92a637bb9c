//! Rejecting a held run: the operator's "no" to the mass-change guard's
//! question. The run turns `rejected` (nothing of its plan is applied) and
//! the audit log records who and why, in one transaction. The difference
//! the run would have fixed stays; the next full reconcile plans it again
//! and, if the guard still objects, holds a new run.

use uuid::Uuid;

use super::worker::SyncError;
use crate::domain::Timestamp;
use crate::store::sync_audit::{self, NewAuditEntry};
use crate::store::sync_runs::{self, SyncRun};
use crate::store::{Store, StoreError};

/// The audit step kind of a rejection.
pub const REJECT_STEP: &str = "reject_run";

/// Rejects held run `id` on behalf of `actor`, for `reason`.
pub async fn reject_held_run(
    store: &Store,
    id: Uuid,
    actor: &str,
    reason: &str,
) -> Result<SyncRun, SyncError> {
    let mut tx = store.begin_write().await?;
    let message = format!("rejected by {actor}: {reason}");
    let run = match sync_runs::reject_run(&mut tx, id, &message).await {
        Ok(run) => run,
        Err(StoreError::NotFound(_)) => return Err(SyncError::RunNotFound(id)),
        Err(StoreError::Conflict { detail, .. }) => return Err(SyncError::NotApprovable(detail)),
        Err(e) => return Err(e.into()),
    };
    let entry = NewAuditEntry {
        run_id: Some(id),
        at: Timestamp::now(),
        actor: actor.to_string(),
        step_kind: REJECT_STEP.to_string(),
        org_id: String::new(),
        email: None,
        tyk_id: None,
        before: None,
        after: None,
        event_seqs: run.event_seqs.clone(),
        rule: None,
        ok: true,
        message: Some(reason.to_string()),
    };
    sync_audit::append(&mut tx, &entry).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(run_id = %id, actor, "held sync run rejected");
    Ok(run)
}

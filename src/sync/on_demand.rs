//! Provision on demand: sync one person now. The person's change goes
//! through the outbox and the worker's event run — the same per-people
//! planning ([`super::plan_for_people`]), guard and applier as any SCIM or
//! LDAP change — and the result is read back from the audit log, one row
//! per step.

use uuid::Uuid;

use super::worker::{StateSource, SyncError, SyncStatus, SyncWorker, Trigger};
use super::writer::TykWriter;
use crate::domain::{EventKind, NewIdentityEvent, SourceName, Timestamp, fold_key};
use crate::store::StoreError;
use crate::store::events;
use crate::store::sync_audit::{self, AuditEntry, AuditFilter};

/// The source name the outbox records for an on-demand sync.
pub const ON_DEMAND_SOURCE: &str = "on-demand";

/// How many event runs an on-demand sync makes at most: the outbox may hold
/// older changes that the worker takes first (in order).
const MAX_RUNS: usize = 5;

/// What syncing one person did.
#[derive(Debug, Clone)]
pub struct OnDemandResult {
    /// The event runs made (the last one took this person's event).
    pub runs: Vec<SyncStatus>,
    /// The audit rows written for this person since the request.
    pub steps: Vec<AuditEntry>,
    /// The outbox event recorded for the request.
    pub event_seq: i64,
}

/// Plans and applies `email` now, through the outbox and event runs.
pub async fn sync_person<W: TykWriter, S: StateSource>(
    worker: &SyncWorker<W, S>,
    email: &str,
    actor: &str,
) -> Result<OnDemandResult, SyncError> {
    let email = fold_key(email.trim());
    let started = Timestamp(Timestamp::now().0 - 1);
    let event = NewIdentityEvent {
        source: SourceName::new(ON_DEMAND_SOURCE),
        kind: EventKind::UserUpdated,
        subject_id: None,
        email: Some(email.clone()),
        detail: serde_json::json!({ "on_demand": true, "actor": actor }),
    };
    let event_seq = {
        let mut tx = worker.store().begin_write().await?;
        let seq = events::append(&mut tx, &event).await?;
        tx.commit().await.map_err(StoreError::from)?;
        seq
    };
    let mut runs = Vec::new();
    for _ in 0..MAX_RUNS {
        let status = worker.run_once(Trigger::Events).await?;
        let idle = status.outcome == super::worker::Outcome::Idle;
        runs.push(status);
        if idle || processed(worker, event_seq).await? {
            break;
        }
    }
    let steps = steps_since(worker, &email, started).await?;
    Ok(OnDemandResult {
        runs,
        steps,
        event_seq,
    })
}

async fn processed<W: TykWriter, S: StateSource>(
    worker: &SyncWorker<W, S>,
    seq: i64,
) -> Result<bool, SyncError> {
    let mut conn = worker
        .store()
        .pool()
        .acquire()
        .await
        .map_err(StoreError::from)?;
    let source = SourceName::new(ON_DEMAND_SOURCE);
    let after = events::since(&mut conn, &source, seq - 1).await?;
    Ok(after
        .iter()
        .find(|e| e.seq == seq)
        .is_none_or(|e| e.processed_at.is_some()))
}

async fn steps_since<W: TykWriter, S: StateSource>(
    worker: &SyncWorker<W, S>,
    email: &str,
    since: Timestamp,
) -> Result<Vec<AuditEntry>, SyncError> {
    let mut conn = worker
        .store()
        .pool()
        .acquire()
        .await
        .map_err(StoreError::from)?;
    let filter = AuditFilter {
        email: Some(email.to_string()),
        since: Some(since),
        limit: 100,
        ..AuditFilter::default()
    };
    let mut steps = sync_audit::list(&mut conn, &filter).await?;
    steps.reverse();
    Ok(steps)
}

/// The run ids among `result`'s runs (for links).
pub fn run_ids(result: &OnDemandResult) -> Vec<Uuid> {
    result.runs.iter().filter_map(|r| r.run_id).collect()
}

//! Provision on demand: sync one person now. The person's change goes
//! through the outbox and the worker's event run — the same per-people
//! planning ([`super::plan_for_people`]), guard and applier as any SCIM or
//! LDAP change — and the result is read back from the audit log, one row
//! per step.

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
/// How long an on-demand sync waits for a run of the worker's own loop
/// that claimed the person's event first.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const SETTLE_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// What syncing one person did.
#[derive(Debug, Clone)]
pub struct OnDemandResult {
    /// The event runs this request made (none when the worker's own loop
    /// took the person's event first).
    pub runs: Vec<SyncStatus>,
    /// The audit rows written for this person since the request.
    pub steps: Vec<AuditEntry>,
    /// The outbox event recorded for the request.
    pub event_seq: i64,
    /// Whether that event was settled (applied, or held) before we answered.
    pub settled: bool,
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
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    while !processed(worker, event_seq).await? {
        if runs.len() >= MAX_RUNS || tokio::time::Instant::now() >= deadline {
            break;
        }
        let status = worker.run_once(Trigger::Events).await?;
        if status.outcome == super::worker::Outcome::Idle {
            // The worker's own loop claimed the event first: wait for that
            // run to settle it, so the steps below are its steps.
            tokio::time::sleep(SETTLE_POLL).await;
        } else {
            let failed = status.failed_people.iter().any(|(_, e)| *e == email);
            runs.push(status);
            if failed {
                // Released with a backoff: the result is in, the retry later.
                break;
            }
        }
    }
    let settled = processed(worker, event_seq).await?;
    let steps = steps_since(worker, &email, started).await?;
    Ok(OnDemandResult {
        runs,
        steps,
        event_seq,
        settled,
    })
}

async fn processed<W: TykWriter, S: StateSource>(
    worker: &SyncWorker<W, S>,
    seq: i64,
) -> Result<bool, SyncError> {
    let mut conn = worker.store().acquire().await?;
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
    let mut conn = worker.store().acquire().await?;
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

//! What the `tyk-idsync` subcommands print, as functions returning text so
//! `main` stays thin: `plan [--json]`, `sync --once`, `runs list`,
//! `runs approve <id>`, `audit [filters] [--json]`.

use uuid::Uuid;

use super::render::{audit_table, plan_json, plan_table, runs_table};
use super::worker::{Outcome, StateSource, SyncError, SyncStatus, SyncWorker, Trigger};
use super::writer::TykWriter;
use crate::store::sync_audit::{self, AuditFilter};
use crate::store::sync_runs::{self, RunStatus};
use crate::store::{Store, StoreError};

impl SyncStatus {
    /// `sync --once` exit code: 0 applied (or nothing to do), 1 some steps
    /// failed, 2 held by the mass-change guard.
    pub fn exit_code(&self) -> i32 {
        match self.outcome {
            Outcome::Applied | Outcome::Idle => 0,
            Outcome::PartlyFailed => 1,
            Outcome::Held => 2,
        }
    }

    /// One line for the terminal.
    pub fn describe(&self) -> String {
        let run = self
            .run_id
            .map(|id| format!(" (run {id})"))
            .unwrap_or_default();
        let line = self.describe_outcome(&run);
        if self.skipped_quarantined > 0 {
            format!(
                "{line}; {}",
                super::worker::skipped_note(self.skipped_quarantined)
            )
        } else {
            line
        }
    }

    fn describe_outcome(&self, run: &str) -> String {
        match self.outcome {
            Outcome::Idle => "nothing to do".to_string(),
            Outcome::Applied => format!(
                "applied {} steps with {} Tyk writes{run}",
                self.applied, self.tyk_writes
            ),
            Outcome::PartlyFailed => format!(
                "applied {}, failed {}{run}: {}",
                self.applied,
                self.failed,
                self.errors.join("; ")
            ),
            Outcome::Held => format!(
                "held by the mass-change guard{run}; approve with `tyk-idsync runs approve <id>`"
            ),
        }
    }
}

/// `tyk-idsync plan [--json]`.
pub async fn plan_command<W: TykWriter, S: StateSource>(
    worker: &SyncWorker<W, S>,
    json: bool,
) -> Result<String, SyncError> {
    let (plan, verdict) = worker.preview().await?;
    Ok(if json {
        format!("{:#}\n", plan_json(&plan, &verdict))
    } else {
        plan_table(&plan, &verdict)
    })
}

/// `tyk-idsync sync --once`: the status (print `describe()`, exit with `exit_code()`).
pub async fn sync_once_command<W: TykWriter, S: StateSource>(
    worker: &SyncWorker<W, S>,
) -> Result<SyncStatus, SyncError> {
    worker.run_once(Trigger::Full).await
}

/// `tyk-idsync runs list [--status held] [--limit N]`.
pub async fn runs_list_command(
    store: &Store,
    status: Option<RunStatus>,
    limit: i64,
) -> Result<String, StoreError> {
    let mut conn = store.pool().acquire().await?;
    let runs = sync_runs::list_runs(&mut conn, status, limit).await?;
    Ok(runs_table(&runs))
}

/// `tyk-idsync runs approve <id>` (actor `cli:approve`).
pub async fn runs_approve_command<W: TykWriter, S: StateSource>(
    worker: &SyncWorker<W, S>,
    id: Uuid,
) -> Result<SyncStatus, SyncError> {
    worker.approve_run(id, "cli:approve").await
}

/// `tyk-idsync audit [--email E] [--run ID] [--org O] [--step K] [--limit N] [--json]`.
pub async fn audit_command(
    store: &Store,
    filter: &AuditFilter,
    json: bool,
) -> Result<String, StoreError> {
    let mut conn = store.pool().acquire().await?;
    let entries = sync_audit::list(&mut conn, filter).await?;
    Ok(if json {
        format!("{:#}\n", serde_json::json!({ "entries": entries }))
    } else {
        let rule_names = crate::store::mappings::list(&mut conn)
            .await?
            .into_iter()
            .map(|stored| (stored.rule.id, stored.rule.name))
            .collect();
        audit_table(&entries, &rule_names)
    })
}

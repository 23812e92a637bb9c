//! Counters the worker keeps for `/metrics` (Prometheus text) and `/status`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::worker::{Outcome, SyncError, SyncStatus};
use crate::domain::Timestamp;

#[derive(Debug, Default)]
pub struct SyncMetrics {
    runs_applied: AtomicU64,
    runs_partly_failed: AtomicU64,
    runs_held: AtomicU64,
    runs_errored: AtomicU64,
    steps_applied: AtomicU64,
    steps_failed: AtomicU64,
    tyk_writes: AtomicU64,
    /// People the last held run would have removed (0 when nothing is held).
    held_would_remove: AtomicU64,
    last_success_ms: AtomicI64,
    /// People quarantined (Tyk refused them), as the last run counted.
    quarantined: AtomicI64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl SyncMetrics {
    /// Records the result of one run (idle event polls are not counted).
    pub fn observe(&self, result: &Result<SyncStatus, SyncError>) {
        let status = match result {
            Ok(status) => status,
            Err(_) => {
                self.runs_errored.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        add(&self.steps_applied, status.applied);
        add(&self.steps_failed, status.failed);
        add(&self.tyk_writes, status.tyk_writes);
        match status.outcome {
            Outcome::Idle => {}
            Outcome::Applied => {
                self.runs_applied.fetch_add(1, Ordering::Relaxed);
                self.last_success_ms
                    .store(Timestamp::now().0, Ordering::Relaxed);
            }
            Outcome::PartlyFailed => {
                self.runs_partly_failed.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Held => {
                self.runs_held.fetch_add(1, Ordering::Relaxed);
                let removed = u64::try_from(status.summary.people_removed).unwrap_or(u64::MAX);
                self.held_would_remove.store(removed, Ordering::Relaxed);
            }
        }
        if status.outcome == Outcome::Applied && status.run_id.is_some() {
            // An applied run means nothing is held any more (approved or superseded).
            self.held_would_remove.store(0, Ordering::Relaxed);
        }
    }

    /// A held run was rejected: nothing is held any more.
    pub fn held_rejected(&self) {
        self.held_would_remove.store(0, Ordering::Relaxed);
    }

    /// When a run last applied cleanly on this replica (a run with nothing
    /// to change counts: Tyk was in step).
    pub fn last_success(&self) -> Option<Timestamp> {
        let ms = self.last_success_ms.load(Ordering::Relaxed);
        (ms > 0).then_some(Timestamp(ms))
    }

    /// How many people are quarantined now (see `sync::quarantine`).
    pub fn set_quarantined(&self, people: i64) {
        self.quarantined.store(people, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str("# HELP tyk_idsync_sync_runs_total Sync runs by outcome.\n");
        out.push_str("# TYPE tyk_idsync_sync_runs_total counter\n");
        for (outcome, counter) in [
            ("applied", &self.runs_applied),
            ("partly_failed", &self.runs_partly_failed),
            ("held", &self.runs_held),
            ("error", &self.runs_errored),
        ] {
            out.push_str(&format!(
                "tyk_idsync_sync_runs_total{{outcome=\"{outcome}\"}} {}\n",
                get(counter)
            ));
        }
        for (name, help, counter) in [
            (
                "tyk_idsync_sync_steps_applied_total",
                "Plan steps applied.",
                &self.steps_applied,
            ),
            (
                "tyk_idsync_sync_steps_failed_total",
                "Plan steps that failed.",
                &self.steps_failed,
            ),
            (
                "tyk_idsync_tyk_writes_total",
                "Write calls made to Tyk (retries included).",
                &self.tyk_writes,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                get(counter)
            ));
        }
        out.push_str(&format!(
            "# HELP tyk_idsync_sync_held_would_remove People the held run would remove (0: nothing held).\n\
             # TYPE tyk_idsync_sync_held_would_remove gauge\ntyk_idsync_sync_held_would_remove {}\n",
            get(&self.held_would_remove)
        ));
        out.push_str(&format!(
            "# HELP tyk_idsync_sync_last_success_timestamp_ms When a run last applied cleanly.\n\
             # TYPE tyk_idsync_sync_last_success_timestamp_ms gauge\ntyk_idsync_sync_last_success_timestamp_ms {}\n",
            self.last_success_ms.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP tyk_idsync_sync_quarantined_people People Tyk refused for good, not retried until they change (`tyk-idsync sync failures`).\n\
             # TYPE tyk_idsync_sync_quarantined_people gauge\ntyk_idsync_sync_quarantined_people {}\n",
            self.quarantined.load(Ordering::Relaxed)
        ));
        out
    }
}

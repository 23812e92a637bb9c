//! The sync worker: glue between the outbox, the state loaders, the
//! planner, the guard, the applier and the run records.
//!
//! - `run_once(Trigger::Events)` claims a batch of outbox events, plans for
//!   just the people they name (everyone if an event names nobody, e.g. a
//!   group or mapping change), applies, then marks processed the events of
//!   people who succeeded and releases the others with a backoff.
//! - `run_once(Trigger::Full)` plans everyone (the periodic drift fix and
//!   `tyk-idsync sync --once`).
//! - A plan the guard holds is recorded as a held run (with its plan) and
//!   not applied; `approve_run` re-plans against the current state and
//!   applies if it removes no one the held plan did not.
//! - `run` loops: events on a signal or a short poll, full on the interval.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

use super::actual::{ActualGroup, ActualUser};
use super::apply::ApplyReport;
use super::config::SyncConfig;
use super::guard::{GuardVerdict, guard};
use super::metrics::SyncMetrics;
use super::ownership::Ownership;
use super::plan::plan;
use super::step::{Plan, PlanSummary};
use super::stream_plan::StreamedPlanner;
use super::writer::TykWriter;
use crate::domain::Timestamp;
use crate::store::{Store, StoreError, sync_state};

use super::worker_types::status;
pub use super::worker_types::{
    ActualScope, LoadError, Outcome, StateSource, SyncError, SyncStatus, Trigger,
};

pub struct SyncWorker<W, S> {
    pub(super) store: Store,
    pub(super) writer: W,
    pub(super) source: S,
    pub(super) config: SyncConfig,
    pub(super) holder: String,
    wake: Arc<Notify>,
    pub(super) metrics: Arc<SyncMetrics>,
}

impl<W: TykWriter, S: StateSource> SyncWorker<W, S> {
    pub fn new(store: Store, writer: W, source: S, config: SyncConfig) -> Self {
        Self {
            store,
            writer,
            source,
            config,
            holder: format!("worker-{}", Uuid::new_v4()),
            wake: Arc::new(Notify::new()),
            metrics: Arc::new(SyncMetrics::default()),
        }
    }

    /// Signal this after committing an outbox event to apply it at once.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Counters for `/metrics` (`prometheus()`).
    pub fn metrics(&self) -> Arc<SyncMetrics> {
        Arc::clone(&self.metrics)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    pub(super) async fn ownership(&self) -> Result<(Ownership, usize), SyncError> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        sync_state::prune_pending_creates(&mut conn).await?;
        let ownership = sync_state::load_ownership(&mut conn).await?;
        let managed = ownership.users.len();
        Ok((ownership, managed))
    }

    /// What we manage for these people only, and how many users we manage
    /// in all (the guard's base).
    pub(super) async fn ownership_of(
        &self,
        emails: &std::collections::BTreeSet<String>,
    ) -> Result<(Ownership, usize), SyncError> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        let ownership = sync_state::load_ownership_for(&mut conn, emails).await?;
        let managed = sync_state::count_users(&mut conn).await?;
        Ok((ownership, usize::try_from(managed).unwrap_or(0)))
    }

    /// The full plan and the guard's verdict, without applying (`tyk-idsync plan`).
    pub async fn preview(&self) -> Result<(Plan, GuardVerdict), SyncError> {
        let desired = self.source.desired().await?;
        let actual = self.source.actual(&ActualScope::Everyone).await?;
        let (ownership, managed) = self.ownership().await?;
        let plan = plan(
            &desired,
            &actual,
            &ownership,
            &self.config.policy(),
            Timestamp::now(),
        );
        let verdict = guard(&plan, managed, self.config.guard);
        Ok((plan, verdict))
    }

    pub async fn run_once(&self, trigger: Trigger) -> Result<SyncStatus, SyncError> {
        let started = std::time::Instant::now();
        let result = match trigger {
            Trigger::Full => self.run_full().await,
            Trigger::Events => self.run_events().await,
        };
        self.metrics.observe(&result);
        // Idle event polls (nothing claimed) are not runs.
        if !matches!(&result, Ok(s) if s.outcome == Outcome::Idle) {
            let trigger = match trigger {
                Trigger::Full => "full",
                Trigger::Events => "events",
            };
            metrics::histogram!("tyk_idsync_sync_run_duration_seconds", "trigger" => trigger)
                .record(started.elapsed().as_secs_f64());
        }
        result
    }

    /// The full reconcile: Tyk's listing planned window by window as it
    /// streams in (see [`super::stream_plan`]), then guarded and applied
    /// as one plan.
    async fn run_full(&self) -> Result<SyncStatus, SyncError> {
        let desired = self.source.desired().await?;
        let (ownership, managed) = self.ownership().await?;
        let policy = self.config.policy();
        let now = Timestamp::now();
        let mut planner: Option<StreamedPlanner<'_>> = None;
        let groups = {
            let mut each = |groups: &[ActualGroup], users: Vec<ActualUser>| {
                planner
                    .get_or_insert_with(|| {
                        StreamedPlanner::new(&desired, groups.to_vec(), &ownership, &policy, now)
                    })
                    .window(users);
            };
            self.source.actual_in_windows(&mut each).await?
        };
        let planner = planner
            .unwrap_or_else(|| StreamedPlanner::new(&desired, groups, &ownership, &policy, now));
        tracing::debug!(users = planner.users_listed(), "full reconcile listed Tyk");
        let (plan, actual) = planner.finish();
        self.guard_and_apply(
            Trigger::Full,
            plan,
            &actual,
            managed,
            BTreeMap::new(),
            vec![],
        )
        .await
    }

    /// Runs until `shutdown` resolves: events on a signal (or every
    /// `poll_interval`), a full reconcile every `interval` — but only while
    /// `is_leader()` holds. A replica that loses the lead abandons the run
    /// in flight at once (as a crash would: every step is idempotent); one
    /// that gains it first frees the events its predecessor had claimed.
    pub async fn run(&self, shutdown: impl Future<Output = ()>, is_leader: impl Fn() -> bool) {
        let mut full = tokio::time::interval(self.config.interval);
        full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut leading = false;
        loop {
            let trigger = tokio::select! {
                () = &mut shutdown => return,
                _ = full.tick() => Trigger::Full,
                () = self.wake.notified() => Trigger::Events,
                () = tokio::time::sleep(self.config.poll_interval) => Trigger::Events,
            };
            if is_leader() && !leading {
                self.take_over().await;
            }
            leading = is_leader();
            while is_leader() {
                let result = tokio::select! {
                    result = self.run_once(trigger) => result,
                    () = lost_lead(&is_leader) => {
                        tracing::warn!(?trigger, "lost the lead; the run in flight is abandoned");
                        leading = false;
                        break;
                    }
                };
                match result {
                    Ok(s) if trigger == Trigger::Events && s.outcome != Outcome::Idle => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, ?trigger, "sync run failed");
                        break;
                    }
                }
            }
        }
    }

    /// Frees outbox events other holders had claimed (see
    /// [`sync_outbox::release_others`]).
    async fn take_over(&self) {
        let freed = async {
            let mut conn = self.store.pool().acquire().await?;
            crate::store::sync_outbox::release_others(&mut conn, &self.holder, Timestamp::now())
                .await
        };
        match freed.await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "took over events claimed by a previous leader"),
            Err(e) => tracing::warn!(error = %e, "cannot free events of a previous leader"),
        }
    }
}

/// Resolves once `is_leader()` turns false (checked every 100 ms).
async fn lost_lead(is_leader: &impl Fn() -> bool) {
    while is_leader() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;

pub(super) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn idle_status() -> SyncStatus {
    status(
        None,
        Trigger::Events,
        Outcome::Idle,
        PlanSummary::default(),
        &ApplyReport::default(),
        GuardVerdict::Proceed,
    )
}

//! The sync worker: glue between the outbox, the state loaders, the
//! planner, the guard, the applier and the run records.
//!
//! - `run_once(Trigger::Events)` claims a batch of outbox events, plans for
//!   just the people they can affect (found from the store, also for group
//!   and mapping changes; see `events::affected_people`), applies, then
//!   marks processed the events of people who succeeded and releases the
//!   others with a backoff.
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

use futures::stream::{FuturesUnordered, StreamExt};
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
use crate::store::{Store, sync_state};

mod events;
mod group_turn;
mod in_flight;
mod runs;
mod types;

use group_turn::GroupTurn;
pub(crate) use runs::skipped_note;
use types::status;
pub use types::{ActualScope, LoadError, Outcome, StateSource, SyncError, SyncStatus, Trigger};

pub struct SyncWorker<W, S> {
    pub(super) store: Store,
    pub(super) writer: W,
    pub(super) source: S,
    pub(super) config: SyncConfig,
    pub(super) holder: String,
    wake: Arc<Notify>,
    pub(super) metrics: Arc<SyncMetrics>,
    /// When an event run last planned each person (lower-cased e-mail): a
    /// full reconcile running meanwhile leaves them to the event runs.
    pub(super) planned_by_events: std::sync::Mutex<BTreeMap<String, std::time::Instant>>,
    /// The group-writes turn (see [`group_turn`]): Tyk does not keep group
    /// names unique, so two runs planning from views that both lack a group
    /// must not both create it. Held only around group steps.
    pub(super) group_writes: tokio::sync::Mutex<()>,
    /// Groups this worker created or adopted, by (org, name): their Tyk id
    /// and when (see [`group_turn`]).
    pub(super) groups_created:
        std::sync::Mutex<BTreeMap<(String, String), (String, std::time::Instant)>>,
    /// Held by a full reconcile or an approval for its whole run: one at a
    /// time.
    full_runs: tokio::sync::Mutex<()>,
    /// The people of the event runs in flight (see [`in_flight`]).
    pub(super) in_flight: in_flight::InFlight,
    /// Held by an event run from its claim until its people are registered.
    pub(super) claiming: tokio::sync::Mutex<()>,
    /// When a take-over's pass over abandoned audit intents could not read
    /// Tyk (or the store): the next run after this instant tries again.
    intents_retry_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long after a failed pass over abandoned audit intents a run tries again.
const INTENTS_RETRY_AFTER: Duration = Duration::from_secs(10);

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
            planned_by_events: std::sync::Mutex::new(BTreeMap::new()),
            group_writes: tokio::sync::Mutex::new(()),
            groups_created: std::sync::Mutex::new(BTreeMap::new()),
            full_runs: tokio::sync::Mutex::new(()),
            in_flight: in_flight::InFlight::default(),
            claiming: tokio::sync::Mutex::new(()),
            intents_retry_at: std::sync::Mutex::new(None),
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
        let mut conn = self.store.acquire().await?;
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
        let mut conn = self.store.acquire().await?;
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
        let retry_due = self
            .intents_retry_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| started >= at);
        if retry_due {
            // A take-over could not resolve every abandoned intent.
            self.resolve_intents(Duration::ZERO).await;
        }
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
        let _one_at_a_time = self.full_runs.lock().await;
        // Intents this replica's own abandoned runs left (a dropped request,
        // a result the audit log refused) while it kept the lead.
        self.resolve_intents(super::apply::audit::ABANDONED_AFTER)
            .await;
        let started = std::time::Instant::now();
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
        let (mut plan, actual) = planner.finish();
        self.leave_to_event_runs(&mut plan, started);
        self.guard_and_apply(
            Trigger::Full,
            plan,
            &actual,
            managed,
            (BTreeMap::new(), vec![]),
            GroupTurn::Take {
                listed_after: started,
            },
        )
        .await
    }

    /// Runs until `shutdown` resolves: events on a signal (or every
    /// `poll_interval`), a full reconcile every `interval` — but only while
    /// `is_leader()` holds. The full reconcile runs alongside the event
    /// runs (it can take minutes on a large Tyk), so a change arriving
    /// meanwhile is applied at once; the reconcile leaves alone the people
    /// event runs planned since it started (see [`Self::run_full`]). A
    /// replica that loses the lead abandons the runs in flight at once (as
    /// a crash would: every step is idempotent); one that gains it first
    /// frees the events its predecessor had claimed.
    pub async fn run(&self, shutdown: impl Future<Output = ()>, is_leader: impl Fn() -> bool) {
        type Run<'r> =
            std::pin::Pin<Box<dyn Future<Output = Result<SyncStatus, SyncError>> + Send + 'r>>;
        fn finished(result: Result<SyncStatus, SyncError>) {
            if let Err(e) = result {
                tracing::error!(error = %e, trigger = ?Trigger::Full, "sync run failed");
            }
        }
        let mut full = tokio::time::interval(self.config.interval);
        full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut leading = false;
        let mut reconcile: Option<Run<'_>> = None;
        loop {
            let trigger = tokio::select! {
                () = &mut shutdown => return,
                result = async { reconcile.as_mut().expect("checked").await }, if reconcile.is_some() => {
                    reconcile = None;
                    finished(result);
                    continue;
                }
                _ = full.tick(), if reconcile.is_none() => Trigger::Full,
                () = self.wake.notified() => Trigger::Events,
                () = tokio::time::sleep(self.config.poll_interval) => Trigger::Events,
            };
            if is_leader() && !leading {
                self.take_over().await;
            }
            leading = is_leader();
            if !leading {
                if reconcile.take().is_some() {
                    tracing::warn!("lost the lead; the full reconcile in flight is abandoned");
                }
                continue;
            }
            if trigger == Trigger::Full {
                reconcile = Some(Box::pin(self.run_once(Trigger::Full)));
                continue;
            }
            // Event runs until one finds nothing: one at a time, and a
            // second beside it once the first has its people in hand and
            // more events are waiting (see [`in_flight`]).
            let mut runs: FuturesUnordered<Run<'_>> = FuturesUnordered::new();
            runs.push(Box::pin(self.run_once(Trigger::Events)));
            // Cleared when a run finds nothing to claim: no second run
            // until a run in flight ends with work done.
            let mut more_waiting = true;
            let abandoned = loop {
                tokio::select! {
                    Some(result) = runs.next(), if !runs.is_empty() => {
                        match result {
                            Ok(s) if s.outcome != Outcome::Idle => {
                                more_waiting = true;
                                runs.push(Box::pin(self.run_once(Trigger::Events)));
                            }
                            Ok(_) => more_waiting = false,
                            Err(e) => {
                                tracing::error!(error = %e, trigger = ?Trigger::Events, "sync run failed");
                                more_waiting = false;
                            }
                        }
                        if runs.is_empty() {
                            break false;
                        }
                    }
                    () = self.wake.notified(), if more_waiting && runs.len() < 2 => {
                        runs.push(Box::pin(self.run_once(Trigger::Events)));
                    }
                    result = async { reconcile.as_mut().expect("checked").await }, if reconcile.is_some() => {
                        reconcile = None;
                        finished(result);
                    }
                    () = lost_lead(&is_leader) => break true,
                }
            };
            if abandoned {
                tracing::warn!("lost the lead; the runs in flight are abandoned");
                leading = false;
                reconcile = None;
            }
        }
    }

    /// Notes that an event run planned these people now.
    pub(super) fn note_planned_by_events(&self, emails: &std::collections::BTreeSet<String>) {
        let now = std::time::Instant::now();
        let mut planned = self
            .planned_by_events
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // A reconcile older than an hour has long finished.
        planned.retain(|_, at| now.duration_since(*at) < Duration::from_secs(3600));
        for email in emails {
            planned.insert(email.clone(), now);
        }
    }

    /// Whether an event run planned this person (a lower-cased e-mail) at
    /// or after `since`.
    pub(super) fn planned_by_events_since(&self, email: &str, since: std::time::Instant) -> bool {
        self.planned_by_events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(email)
            .is_some_and(|at| *at >= since)
    }

    /// Drops from a full reconcile's plan the people an event run planned
    /// after `started` (the reconcile's view of them may predate that
    /// change; the event runs have them in hand), and then the group
    /// deletions, which counted on those people's steps; and the deletion
    /// of any group created after `started`.
    fn leave_to_event_runs(&self, plan: &mut Plan, started: std::time::Instant) {
        let before = plan.steps.len();
        plan.steps.retain(|s| {
            !s.email()
                .is_some_and(|email| self.planned_by_events_since(email, started))
        });
        if plan.steps.len() != before {
            tracing::info!(
                steps = before - plan.steps.len(),
                "full reconcile leaves people changed meanwhile to the event runs"
            );
            plan.steps
                .retain(|s| !matches!(s, super::step::PlanStep::DeleteGroup { .. }));
        }
        // A group an event run created after the reconcile started was
        // desired by then (its rule was added meanwhile): the reconcile's
        // older desired state must not delete it (it lists and owns it,
        // yet does not want it).
        let created = self.groups_created_since(started);
        plan.steps.retain(|s| match s {
            super::step::PlanStep::DeleteGroup { group_id, name, .. } => {
                let new = created.values().any(|id| id == group_id);
                if new {
                    tracing::info!(group = %name, "full reconcile leaves a group created meanwhile");
                }
                !new
            }
            _ => true,
        });
    }

    /// Frees every claimed outbox event: a previous leader's, and this
    /// worker's own runs abandoned when it lost the lead (none is in
    /// flight now; see [`sync_outbox::release_all`]).
    async fn take_over(&self) {
        // A predecessor (or this replica, before it lost the lead) may have
        // created groups the cached listing does not show: list afresh,
        // or a pending group creation would be repeated.
        self.source.groups_changed();
        // Writes a predecessor may have made without auditing the result.
        self.resolve_intents(Duration::ZERO).await;
        // Right after a failover the pool may hold dead sessions.
        let freed = crate::store::retry::retry_transient(|| async {
            let mut conn = self.store.pool().acquire().await?;
            crate::store::sync_outbox::release_all(&mut conn, Timestamp::now()).await
        });
        match freed.await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "took over events claimed by a previous leader"),
            Err(e) => tracing::warn!(error = %e, "cannot free events of a previous leader"),
        }
    }
}

impl<W: TykWriter, S: StateSource> SyncWorker<W, S> {
    /// One pass over the audit intents abandoned runs left open (older
    /// than `min_age`; none of this process's steps in flight). When Tyk or
    /// the store fails, the next run after [`INTENTS_RETRY_AFTER`] tries
    /// again instead of waiting for the next take-over.
    pub(super) async fn resolve_intents(&self, min_age: Duration) {
        let pass = crate::store::retry::retry_transient(|| {
            super::apply::audit::resolve_abandoned_intents(&self.store, &self.writer, min_age)
        })
        .await;
        let incomplete = match pass {
            Ok(pass) => {
                if pass.resolved > 0 {
                    tracing::info!(
                        intents = pass.resolved,
                        "audited writes an abandoned run left unresolved"
                    );
                }
                pass.incomplete
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot resolve audit intents of an abandoned run; trying again later");
                true
            }
        };
        let mut retry_at = self
            .intents_retry_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if incomplete {
            *retry_at = Some(std::time::Instant::now() + INTENTS_RETRY_AFTER);
        } else if min_age.is_zero() {
            *retry_at = None;
        }
    }

    /// Whether a pass over abandoned intents is due again (tests).
    #[cfg(test)]
    pub(super) fn intents_retry_pending(&self) -> bool {
        self.intents_retry_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Makes a pending retry due now (tests).
    #[cfg(test)]
    pub(super) fn intents_retry_now(&self) {
        let mut at = self
            .intents_retry_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if at.is_some() {
            *at = Some(std::time::Instant::now());
        }
    }

    /// What a new leader does first (exposed to tests).
    #[cfg(test)]
    pub(super) async fn take_over_now(&self) {
        self.take_over().await;
    }
}

/// Resolves once `is_leader()` turns false (checked every 100 ms).
async fn lost_lead(is_leader: &impl Fn() -> bool) {
    while is_leader() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
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

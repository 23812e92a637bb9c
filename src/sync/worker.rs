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

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

use super::actual::ActualState;
use super::apply::{Applier, ApplyContext, ApplyReport};
use super::config::SyncConfig;
use super::guard::{GuardVerdict, guard};
use super::ownership::Ownership;
use super::plan::plan;
use super::scope::plan_for_people;
use super::step::{Plan, PlanSummary};
use super::writer::TykWriter;
use crate::domain::{DesiredState, Timestamp};
use crate::store::sync_outbox::{self, ClaimedEvent};
use crate::store::sync_runs::{self, NewSyncRun, RunKind, RunStatus};
use crate::store::{Store, StoreError, sync_state};

/// A loader failed (mapping, Tyk listing…); the run is not attempted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// Who the actual state is needed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActualScope {
    Everyone,
    /// Lower-cased e-mails; the loader may list everyone anyway.
    People(BTreeSet<String>),
}

/// Where desired and actual state come from; the lead implements it over
/// the mapping and the Tyk Dashboard client (paged listing).
pub trait StateSource: Send + Sync {
    fn desired(&self) -> impl Future<Output = Result<DesiredState, LoadError>> + Send;
    fn actual(
        &self,
        scope: &ActualScope,
    ) -> impl Future<Output = Result<ActualState, LoadError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot load state: {0}")]
    Load(#[from] LoadError),
    #[error("run {0} not found")]
    RunNotFound(Uuid),
    #[error("{0}")]
    NotApprovable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Full,
    Events,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No events waiting (event trigger only).
    Idle,
    Applied,
    /// Some steps failed; the people concerned are retried.
    PartlyFailed,
    Held,
}

/// What a run did (for logs, metrics, `/status` and the CLI exit code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncStatus {
    pub run_id: Option<Uuid>,
    pub trigger: Trigger,
    pub outcome: Outcome,
    pub summary: PlanSummary,
    pub applied: usize,
    pub failed: usize,
    pub tyk_writes: usize,
    pub errors: Vec<String>,
    /// (org, e-mail) of people with a failed step (retried later).
    pub failed_people: BTreeSet<(String, String)>,
    pub verdict: GuardVerdict,
}

pub struct SyncWorker<W, S> {
    store: Store,
    writer: W,
    source: S,
    config: SyncConfig,
    holder: String,
    wake: Arc<Notify>,
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
        }
    }

    /// Signal this after committing an outbox event to apply it at once.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
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

    async fn ownership(&self) -> Result<(Ownership, usize), SyncError> {
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
        match trigger {
            Trigger::Full => self.run_full().await,
            Trigger::Events => self.run_events().await,
        }
    }

    async fn run_full(&self) -> Result<SyncStatus, SyncError> {
        let desired = self.source.desired().await?;
        let actual = self.source.actual(&ActualScope::Everyone).await?;
        let (ownership, managed) = self.ownership().await?;
        let now = Timestamp::now();
        let plan = plan(&desired, &actual, &ownership, &self.config.policy(), now);
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

    async fn claim(&self) -> Result<Vec<ClaimedEvent>, SyncError> {
        let now = Timestamp::now();
        let until = Timestamp(now.0 + millis(self.config.event_lease));
        let mut tx = self.store.begin().await?;
        let claimed = sync_outbox::claim(
            &mut tx,
            self.store.backend(),
            &self.holder,
            i64::from(self.config.event_batch),
            now,
            until,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(claimed)
    }

    async fn run_events(&self) -> Result<SyncStatus, SyncError> {
        let events = self.claim().await?;
        if events.is_empty() {
            return Ok(idle_status());
        }
        let result = self.apply_events(&events).await;
        if result.is_err() {
            // Nothing was decided: give the events back for a prompt retry.
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            let retry_at = Timestamp(Timestamp::now().0 + millis(self.config.retry_max_delay));
            let mut conn = self
                .store
                .pool()
                .acquire()
                .await
                .map_err(StoreError::from)?;
            sync_outbox::release(&mut conn, &seqs, retry_at).await?;
        }
        result
    }

    async fn apply_events(&self, events: &[ClaimedEvent]) -> Result<SyncStatus, SyncError> {
        let everyone = events.iter().any(|e| e.email.is_none());
        let emails: BTreeSet<String> = events
            .iter()
            .filter_map(|e| e.email.as_ref().map(|m| m.to_lowercase()))
            .collect();
        let scope = if everyone {
            ActualScope::Everyone
        } else {
            ActualScope::People(emails.clone())
        };
        let desired = self.source.desired().await?;
        let actual = self.source.actual(&scope).await?;
        let (ownership, managed) = self.ownership().await?;
        let now = Timestamp::now();
        let policy = self.config.policy();
        let plan = match &scope {
            ActualScope::Everyone => plan(&desired, &actual, &ownership, &policy, now),
            ActualScope::People(people) => {
                plan_for_people(&desired, &actual, &ownership, &policy, now, people)
            }
        };
        let mut by_email: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for event in events {
            if let Some(email) = &event.email {
                by_email
                    .entry(email.to_lowercase())
                    .or_default()
                    .push(event.seq);
            }
        }
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        let status = self
            .guard_and_apply(Trigger::Events, plan, &actual, managed, by_email, seqs)
            .await?;
        self.settle_events(events, &status).await?;
        Ok(status)
    }

    /// Marks processed the events whose people succeeded (or whose run was
    /// held: the held plan carries the change); releases the rest with backoff.
    async fn settle_events(
        &self,
        events: &[ClaimedEvent],
        status: &SyncStatus,
    ) -> Result<(), SyncError> {
        let failed: BTreeSet<&str> = status
            .failed_people
            .iter()
            .map(|(_, email)| email.as_str())
            .collect();
        let (mut done, mut retry) = (Vec::new(), Vec::new());
        for event in events {
            let person_failed = match &event.email {
                Some(email) => failed.contains(email.to_lowercase().as_str()),
                None => status.failed > 0,
            };
            if person_failed {
                retry.push(event)
            } else {
                done.push(event.seq)
            }
        }
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        sync_outbox::complete(&mut conn, &done).await?;
        for event in retry {
            let delay = self.config.limits().retry.delay(
                u32::try_from(event.attempts).unwrap_or(u32::MAX).min(16),
                None,
            );
            let retry_at =
                Timestamp(Timestamp::now().0 + millis(delay.max(self.config.retry_base_delay)));
            sync_outbox::release(&mut conn, &[event.seq], retry_at).await?;
        }
        Ok(())
    }

    async fn guard_and_apply(
        &self,
        trigger: Trigger,
        plan: Plan,
        actual: &ActualState,
        managed: usize,
        events_by_email: BTreeMap<String, Vec<i64>>,
        run_events: Vec<i64>,
    ) -> Result<SyncStatus, SyncError> {
        let verdict = guard(&plan, managed, self.config.guard);
        let summary = plan.summary();
        if let GuardVerdict::Hold { .. } = verdict {
            let run_id = self
                .hold(trigger, &plan, managed, &verdict, &run_events)
                .await?;
            return Ok(status(
                run_id,
                trigger,
                Outcome::Held,
                summary,
                &ApplyReport::default(),
                verdict,
            ));
        }
        if plan.is_empty() {
            return Ok(status(
                None,
                trigger,
                Outcome::Applied,
                summary,
                &ApplyReport::default(),
                verdict,
            ));
        }
        let run_id = self
            .record_run(
                trigger,
                RunStatus::Applying,
                &plan,
                managed,
                &run_events,
                None,
                None,
            )
            .await?;
        let context = ApplyContext {
            run_id: Some(run_id),
            events_by_email,
            run_events,
            adopt_existing: self.config.adopt_existing,
            ..ApplyContext::new("sync", Timestamp::now())
        };
        self.apply_recorded(run_id, trigger, &plan, actual, &context, verdict)
            .await
    }

    async fn apply_recorded(
        &self,
        run_id: Uuid,
        trigger: Trigger,
        plan: &Plan,
        actual: &ActualState,
        context: &ApplyContext,
        verdict: GuardVerdict,
    ) -> Result<SyncStatus, SyncError> {
        let report = Applier::new(&self.writer, &self.store, self.config.limits())
            .apply(plan, actual, context)
            .await;
        let (run_status, outcome) = if report.succeeded() {
            (RunStatus::Applied, Outcome::Applied)
        } else {
            (RunStatus::Failed, Outcome::PartlyFailed)
        };
        let message = (!report.errors.is_empty()).then(|| report.errors.join("; "));
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        sync_runs::finish_run(
            &mut conn,
            run_id,
            run_status,
            count(report.applied),
            count(report.failed),
            message.as_deref(),
        )
        .await?;
        tracing::info!(%run_id, ?trigger, applied = report.applied, failed = report.failed, tyk_writes = report.tyk_writes, "sync run finished");
        Ok(status(
            Some(run_id),
            trigger,
            outcome,
            plan.summary(),
            &report,
            verdict,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_run(
        &self,
        trigger: Trigger,
        run_status: RunStatus,
        plan: &Plan,
        managed: usize,
        seqs: &[i64],
        keep_plan: Option<serde_json::Value>,
        message: Option<String>,
    ) -> Result<Uuid, SyncError> {
        let summary = plan.summary();
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        Ok(sync_runs::create_run(
            &mut conn,
            &NewSyncRun {
                kind: match trigger {
                    Trigger::Full => RunKind::Full,
                    Trigger::Events => RunKind::Events,
                },
                status: run_status,
                event_seqs: seqs.to_vec(),
                steps_planned: count(plan.steps.len()),
                people_removed: count(summary.people_removed),
                managed_users: count(managed),
                plan: keep_plan,
                message,
            },
        )
        .await?)
    }

    /// Records a held run, unless the same plan is already held.
    async fn hold(
        &self,
        trigger: Trigger,
        plan: &Plan,
        managed: usize,
        verdict: &GuardVerdict,
        seqs: &[i64],
    ) -> Result<Option<Uuid>, SyncError> {
        let json =
            serde_json::to_value(plan).map_err(|e| SyncError::NotApprovable(e.to_string()))?;
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        let held = sync_runs::list_runs(&mut conn, Some(RunStatus::Held), 1).await?;
        if let Some(existing) = held.first().filter(|r| r.plan.as_ref() == Some(&json)) {
            return Ok(Some(existing.id));
        }
        sync_runs::supersede_held_runs(&mut conn).await?;
        drop(conn);
        let message = match verdict {
            GuardVerdict::Hold {
                would_remove,
                managed,
                threshold,
            } => format!(
                "held by the mass-change guard: would remove {would_remove} of {managed} managed users (threshold {threshold}); approve with `tyk-idsync runs approve <id>`"
            ),
            GuardVerdict::Proceed => String::new(),
        };
        let id = self
            .record_run(
                trigger,
                RunStatus::Held,
                plan,
                managed,
                seqs,
                Some(json),
                Some(message.clone()),
            )
            .await?;
        tracing::warn!(run_id = %id, "{message}");
        Ok(Some(id))
    }

    /// Approves a held run: re-plans against the current state and applies
    /// that plan if it removes nobody the held plan did not; otherwise the
    /// new plan is held in its place.
    pub async fn approve_run(&self, id: Uuid, actor: &str) -> Result<SyncStatus, SyncError> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
        let run = match sync_runs::approve_run(&mut conn, id, actor).await {
            Ok(run) => run,
            Err(StoreError::NotFound(_)) => return Err(SyncError::RunNotFound(id)),
            Err(StoreError::Conflict { detail, .. }) => {
                return Err(SyncError::NotApprovable(detail));
            }
            Err(e) => return Err(e.into()),
        };
        drop(conn);
        let held: Plan = run
            .plan
            .clone()
            .and_then(|p| serde_json::from_value(p).ok())
            .ok_or_else(|| SyncError::NotApprovable(format!("run {id} has no readable plan")))?;
        let desired = self.source.desired().await?;
        let actual = self.source.actual(&ActualScope::Everyone).await?;
        let (ownership, managed) = self.ownership().await?;
        let fresh = plan(
            &desired,
            &actual,
            &ownership,
            &self.config.policy(),
            Timestamp::now(),
        );
        let approved_removals = removed_people(&held);
        if !removed_people(&fresh).is_subset(&approved_removals) {
            let verdict = guard(&fresh, managed, self.config.guard);
            let new_id = self
                .hold(Trigger::Full, &fresh, managed, &verdict, &run.event_seqs)
                .await?;
            return Err(SyncError::NotApprovable(format!(
                "the plan changed since run {id} was held and would remove other people; new held run {}",
                new_id.map(|i| i.to_string()).unwrap_or_default()
            )));
        }
        let context = ApplyContext {
            run_id: Some(id),
            run_events: run.event_seqs.clone(),
            adopt_existing: self.config.adopt_existing,
            ..ApplyContext::new(actor, Timestamp::now())
        };
        self.apply_recorded(
            id,
            Trigger::Full,
            &fresh,
            &actual,
            &context,
            GuardVerdict::Proceed,
        )
        .await
    }

    /// Runs until `shutdown` resolves: events on a signal (or every
    /// `poll_interval`), a full reconcile every `interval`.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let mut full = tokio::time::interval(self.config.interval);
        full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            let trigger = tokio::select! {
                () = &mut shutdown => return,
                _ = full.tick() => Trigger::Full,
                () = self.wake.notified() => Trigger::Events,
                () = tokio::time::sleep(self.config.poll_interval) => Trigger::Events,
            };
            loop {
                match self.run_once(trigger).await {
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
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;

fn removed_people(plan: &Plan) -> BTreeSet<(String, String)> {
    plan.steps
        .iter()
        .filter(|s| s.removes_access())
        .filter_map(|s| s.email().map(|e| (s.org_id().to_string(), e.to_string())))
        .collect()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn idle_status() -> SyncStatus {
    status(
        None,
        Trigger::Events,
        Outcome::Idle,
        PlanSummary::default(),
        &ApplyReport::default(),
        GuardVerdict::Proceed,
    )
}

fn status(
    run_id: Option<Uuid>,
    trigger: Trigger,
    outcome: Outcome,
    summary: PlanSummary,
    report: &ApplyReport,
    verdict: GuardVerdict,
) -> SyncStatus {
    SyncStatus {
        run_id,
        trigger,
        outcome,
        summary,
        applied: report.applied,
        failed: report.failed,
        tyk_writes: report.tyk_writes,
        errors: report.errors.clone(),
        failed_people: report.failed_people.clone(),
        verdict,
    }
}

//! The applier: runs a plan against Tyk through a [`TykWriter`].
//!
//! - Group steps first, one at a time; then people, several at once (up to
//!   `max_concurrency`, all requests paced to `requests_per_second`); then
//!   group deletions, only if nobody failed.
//! - One person's failure stops only that person's remaining steps; the
//!   report names them so their outbox events stay pending.
//! - A person's profile, group and reactivation changes go out as ONE
//!   `PUT` of the whole user: one write per changed user.
//! - Ownership is recorded as soon as Tyk confirms a creation, and a pending
//!   record is written before the `POST`, so a crash anywhere leaves neither
//!   a duplicate nor an orphan (see `store::sync_state`).
//! - Every step, applied or failed, gets an audit entry; a step that writes
//!   to Tyk gets an intent first (see `audit`), so a run abandoned
//!   between a request and its result still leaves a trace the next leader
//!   resolves.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use uuid::Uuid;

use crate::domain::Timestamp;
use crate::store::sync_audit::{self, NewAuditEntry};
use crate::store::{Store, StoreError, sync_state};
use crate::sync::actual::{ActualState, ActualUser};
use crate::sync::ownership::ManagedGroup;
use crate::sync::retry::{Pacer, Retried, RetryPolicy, with_retry};
use crate::sync::step::{Plan, PlanStep};
use crate::sync::writer::{GroupRecord, TykWriter, WriteError};
use audit::{audit_kind, before_after};

pub(crate) mod audit;
mod batch;
mod person;
#[cfg(test)]
mod tests;

/// Limits toward Tyk (from `SyncConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyLimits {
    pub retry: RetryPolicy,
    pub max_concurrency: usize,
    pub requests_per_second: Option<u32>,
}

impl Default for ApplyLimits {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            max_concurrency: 8,
            requests_per_second: Some(50),
        }
    }
}

/// Who and what a run applies for (recorded in the audit log).
#[derive(Debug, Clone)]
pub struct ApplyContext {
    pub run_id: Option<Uuid>,
    /// `sync`, `cli:approve`, `api:approve`…
    pub actor: String,
    /// Outbox events behind each person (lower-cased e-mail).
    pub events_by_email: BTreeMap<String, Vec<i64>>,
    /// Events behind the run as a whole (group and mapping changes).
    pub run_events: Vec<i64>,
    pub adopt_existing: bool,
    pub now: Timestamp,
}

impl ApplyContext {
    pub fn new(actor: impl Into<String>, now: Timestamp) -> Self {
        Self {
            run_id: None,
            actor: actor.into(),
            events_by_email: BTreeMap::new(),
            run_events: Vec::new(),
            adopt_existing: false,
            now,
        }
    }

    pub(super) fn events_for(&self, email: Option<&str>) -> Vec<i64> {
        email
            .and_then(|e| self.events_by_email.get(e))
            .cloned()
            .unwrap_or_else(|| self.run_events.clone())
    }
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub applied: usize,
    pub failed: usize,
    /// Tyk write calls made (retries included).
    pub tyk_writes: usize,
    /// (org, e-mail) of people with a failed step: retry them later.
    pub failed_people: BTreeSet<(String, String)>,
    pub failed_groups: BTreeSet<(String, String)>,
    /// (org, e-mail) of people Tyk refused for good (see `sync::quarantine`).
    pub refused: BTreeMap<(String, String), crate::sync::quarantine::Refusal>,
    /// One line per failure, for logs and the run record.
    pub errors: Vec<String>,
}

impl ApplyReport {
    pub fn succeeded(&self) -> bool {
        self.failed == 0
    }

    pub(super) fn merge(&mut self, other: ApplyReport) {
        self.applied += other.applied;
        self.failed += other.failed;
        self.tyk_writes += other.tyk_writes;
        self.failed_people.extend(other.failed_people);
        self.failed_groups.extend(other.failed_groups);
        self.refused.extend(other.refused);
        self.errors.extend(other.errors);
    }
}

/// Failure of one step, as far as the applier is concerned.
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    #[error(transparent)]
    Tyk(#[from] WriteError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Blocked(String),
    /// Nothing for us to do after all (a creation met an e-mail Tyk
    /// already has, of a user we must not touch): audited, not a failure.
    #[error("{0}")]
    LeftAlone(String),
}

pub struct Applier<'a, W> {
    pub(super) writer: &'a W,
    pub(super) store: &'a Store,
    pub(super) retry: RetryPolicy,
    pub(super) pacer: Pacer,
    max_concurrency: usize,
    /// Step results the audit log could not take: their intents stay open
    /// (see `audit`).
    pub(super) audit_failures: std::sync::atomic::AtomicUsize,
    /// People applied whose store rows wait to be written (see `batch`).
    settlements: std::sync::Mutex<Vec<batch::Settlement>>,
    /// People whose store rows could not be written: failed after all.
    pub(super) settle_failures: std::sync::Mutex<ApplyReport>,
}

/// A person's steps and what preparing them gave.
type PreparedPerson<'p> = (Vec<&'p PlanStep>, batch::Prepared);

/// Group ids created in this run, by (org, name).
pub(super) type CreatedGroups = BTreeMap<(String, String), String>;

impl<'a, W: TykWriter> Applier<'a, W> {
    pub fn new(writer: &'a W, store: &'a Store, limits: ApplyLimits) -> Self {
        Self {
            writer,
            store,
            retry: limits.retry,
            pacer: Pacer::new(if writer.paces_itself() {
                None
            } else {
                limits.requests_per_second
            }),
            max_concurrency: limits.max_concurrency.max(1),
            audit_failures: std::sync::atomic::AtomicUsize::new(0),
            settlements: std::sync::Mutex::new(Vec::new()),
            settle_failures: std::sync::Mutex::new(ApplyReport::default()),
        }
    }

    /// Applies the plan; `actual` is the state it was planned from (the
    /// whole user is re-sent on updates, so no extra read is needed).
    pub async fn apply(
        &self,
        plan: &Plan,
        actual: &ActualState,
        ctx: &ApplyContext,
    ) -> ApplyReport {
        let mut report = ApplyReport::default();
        let users: BTreeMap<&str, &ActualUser> =
            actual.users.iter().map(|u| (u.id.as_str(), u)).collect();
        let mut created = CreatedGroups::new();
        let (group_steps, people, trailing) = split_plan(plan);
        for step in group_steps {
            self.apply_group_step_audited(step, &mut created, ctx, &mut report)
                .await;
        }
        report.merge(self.apply_people(people, &users, &created, ctx).await);
        for step in trailing {
            if !report.failed_people.is_empty() {
                tracing::info!(step = step.kind(), "group deletion left for a later run");
                continue;
            }
            self.apply_group_step_audited(step, &mut created, ctx, &mut report)
                .await;
        }
        report
    }

    /// Applies the people's steps, up to `max_concurrency` people at once,
    /// each chunk of [`PREPARE_PEOPLE`] prepared (their before-rows
    /// written) while the previous chunk's requests are in flight, and
    /// their after-rows written in batches (see `batch`).
    async fn apply_people(
        &self,
        people: Vec<Vec<&PlanStep>>,
        users: &BTreeMap<&str, &ActualUser>,
        created: &CreatedGroups,
        ctx: &ApplyContext,
    ) -> ApplyReport {
        use batch::PREPARE_PEOPLE;
        use futures::future::BoxFuture;
        use std::collections::VecDeque;

        let mut report = ApplyReport::default();
        let mut chunks = people.chunks(PREPARE_PEOPLE).map(|chunk| chunk.to_vec());
        let mut ready: VecDeque<PreparedPerson<'_>> = VecDeque::new();
        let mut preparing: Option<BoxFuture<'_, Vec<PreparedPerson<'_>>>> = None;
        let mut in_flight = futures::stream::FuturesUnordered::new();
        loop {
            while in_flight.len() < self.max_concurrency
                && let Some((steps, prepared)) = ready.pop_front()
            {
                in_flight.push(self.apply_prepared_person(steps, prepared, users, created, ctx));
            }
            // The next chunk is prepared before this one runs dry.
            if preparing.is_none()
                && ready.len() <= self.max_concurrency
                && let Some(chunk) = chunks.next()
            {
                preparing = Some(Box::pin(async move {
                    let prepared = self.prepare(&chunk, ctx).await;
                    chunk.into_iter().zip(prepared).collect()
                }));
            }
            match (&mut preparing, in_flight.is_empty()) {
                (None, true) if ready.is_empty() => break,
                (None, _) => {
                    if let Some(outcome) = in_flight.next().await {
                        report.merge(outcome);
                    }
                }
                (Some(next), true) => {
                    ready.extend(next.await);
                    preparing = None;
                }
                (Some(next), false) => {
                    match futures::future::select(next, in_flight.next()).await {
                        futures::future::Either::Left((prepared, _)) => {
                            ready.extend(prepared);
                            preparing = None;
                        }
                        futures::future::Either::Right((outcome, _)) => {
                            if let Some(outcome) = outcome {
                                report.merge(outcome);
                            }
                        }
                    }
                }
            }
        }
        self.settle_waiting().await;
        report.merge(std::mem::take(
            &mut *self
                .settle_failures
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        ));
        report
    }

    /// Counts and logs one step's result and audits it now.
    pub(super) async fn record_outcome(
        &self,
        step: &PlanStep,
        result: Result<Option<String>, StepError>,
        ctx: &ApplyContext,
        report: &mut ApplyReport,
    ) {
        let Some(entry) = self.outcome_entry(step, result, ctx, report).await else {
            return;
        };
        if let Err(e) = self.append_audit(&entry).await {
            self.audit_failures
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tracing::error!(error = %e, "could not write the audit log");
        }
    }

    /// Counts and logs one step's result; its audit entry (`None`: a
    /// resumed creation audited already).
    pub(super) async fn outcome_entry(
        &self,
        step: &PlanStep,
        result: Result<Option<String>, StepError>,
        ctx: &ApplyContext,
        report: &mut ApplyReport,
    ) -> Option<NewAuditEntry> {
        let (ok, tyk_id, message) = match &result {
            Ok(id) => (true, id.clone(), None),
            Err(StepError::LeftAlone(why)) => (true, None, Some(why.clone())),
            Err(e) => (false, None, Some(e.to_string())),
        };
        let left_alone = matches!(result, Err(StepError::LeftAlone(_)));
        metrics::counter!(
            "tyk_idsync_sync_plan_steps_total",
            "kind" => step.kind(),
            "result" => match (ok, left_alone) {
                (true, false) => "applied",
                (true, true) => "left_alone",
                (false, _) => "failed",
            }
        )
        .increment(1);
        if left_alone {
            tracing::info!(
                step = step.kind(),
                org = step.org_id(),
                email = step.email(),
                reason = message.as_deref().unwrap_or(""),
                "sync step left alone"
            );
        } else if ok {
            report.applied += 1;
        } else {
            report.failed += 1;
            let line = format!(
                "{} {} {}: {}",
                step.kind(),
                step.org_id(),
                step.email()
                    .map_or_else(|| group_name(step), str::to_string),
                message.as_deref().unwrap_or("")
            );
            tracing::warn!(step = step.kind(), org = step.org_id(), email = step.email(), error = %line, "sync step failed");
            report.errors.push(line);
            match step.email() {
                Some(email) => {
                    report
                        .failed_people
                        .insert((step.org_id().to_string(), email.to_string()));
                }
                None => {
                    report
                        .failed_groups
                        .insert((step.org_id().to_string(), group_name(step)));
                }
            }
        }
        if ok && self.creation_audited_already(step).await {
            return None;
        }
        let (before, after) = before_after(step);
        Some(NewAuditEntry {
            run_id: ctx.run_id,
            at: Timestamp::now(),
            actor: ctx.actor.clone(),
            step_kind: audit_kind(step).to_string(),
            org_id: step.org_id().to_string(),
            email: step.email().map(str::to_string),
            tyk_id: tyk_id.or_else(|| step.user_id().map(str::to_string)),
            before,
            after,
            event_seqs: ctx.events_for(step.email()),
            rule: step.rule().map(str::to_string),
            ok,
            message,
        })
    }

    pub(super) async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        let mut conn = self.store.pool().acquire().await?;
        sync_audit::append(&mut conn, entry).await.map(|_| ())
    }

    /// Calls Tyk with retries; returns the result and the number of calls.
    pub(super) async fn call<T, F, Fut>(&self, op: F) -> Retried<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, WriteError>>,
    {
        with_retry(&self.retry, &self.pacer, op).await
    }

    /// Returns the step result (with the Tyk id touched) and the Tyk calls made.
    pub(super) async fn apply_group_step(
        &self,
        step: &PlanStep,
        created: &mut CreatedGroups,
        ctx: &ApplyContext,
    ) -> (Result<Option<String>, StepError>, usize) {
        let mut conn = match self.store.pool().acquire().await {
            Ok(conn) => conn,
            Err(e) => return (Err(StoreError::from(e).into()), 0),
        };
        match step {
            PlanStep::CreateGroup {
                org_id,
                name,
                description,
                permissions,
            } => {
                let record = GroupRecord {
                    org_id: org_id.clone(),
                    name: name.clone(),
                    description: description.clone(),
                    permissions: permissions.clone(),
                };
                if let Err(e) =
                    sync_state::begin_group_create(&mut conn, org_id, name, ctx.now).await
                {
                    return (Err(e.into()), 0);
                }
                // Tyk does not keep group names unique: a failure that may
                // hide a success is not retried here; the pending record lets
                // the next run recognise the group if it was created.
                let out = self
                    .call(|| async {
                        match self.writer.create_group(&record).await {
                            Err(WriteError::Retryable {
                                message,
                                retry_after: None,
                            }) => Err(WriteError::Permanent {
                                status: None,
                                message: format!("{message} (not retried: may have been applied)"),
                            }),
                            other => other,
                        }
                    })
                    .await;
                let calls = out.attempts as usize;
                let result = match out.result {
                    Ok(id) => {
                        let managed = ManagedGroup {
                            org_id: org_id.clone(),
                            tyk_group_id: id.clone(),
                            name: name.clone(),
                        };
                        created.insert((org_id.clone(), name.clone()), id.clone());
                        sync_state::record_group(&mut conn, &managed, ctx.now)
                            .await
                            .map(|()| Some(id))
                            .map_err(StepError::from)
                    }
                    Err(e) => Err(e.into()),
                };
                (result, calls)
            }
            PlanStep::AdoptGroup {
                org_id,
                group_id,
                name,
            } => {
                let managed = ManagedGroup {
                    org_id: org_id.clone(),
                    tyk_group_id: group_id.clone(),
                    name: name.clone(),
                };
                let result = sync_state::record_group(&mut conn, &managed, ctx.now).await;
                (
                    result.map(|()| Some(group_id.clone())).map_err(Into::into),
                    0,
                )
            }
            PlanStep::UpdateGroupPermissions {
                org_id,
                group_id,
                name,
                after,
                description_after,
                ..
            } => {
                let record = GroupRecord {
                    org_id: org_id.clone(),
                    name: name.clone(),
                    description: description_after.clone(),
                    permissions: after.clone(),
                };
                let out = self
                    .call(|| self.writer.update_group(group_id, &record))
                    .await;
                (
                    out.result
                        .map(|()| Some(group_id.clone()))
                        .map_err(Into::into),
                    out.attempts as usize,
                )
            }
            PlanStep::DeleteGroup {
                org_id, group_id, ..
            } => {
                let out = self
                    .call(|| self.writer.delete_group(org_id, group_id))
                    .await;
                let calls = out.attempts as usize;
                let result = match out.result {
                    Ok(()) => sync_state::forget_group(&mut conn, group_id)
                        .await
                        .map(|()| Some(group_id.clone()))
                        .map_err(StepError::from),
                    Err(e) => Err(e.into()),
                };
                (result, calls)
            }
            other => (
                Err(StepError::Blocked(format!(
                    "{} is not a group step",
                    other.kind()
                ))),
                0,
            ),
        }
    }
}

fn group_name(step: &PlanStep) -> String {
    match step {
        PlanStep::CreateGroup { name, .. }
        | PlanStep::AdoptGroup { name, .. }
        | PlanStep::UpdateGroupPermissions { name, .. }
        | PlanStep::DeleteGroup { name, .. } => name.clone(),
        _ => String::new(),
    }
}

/// Splits a plan into leading group steps, per-person step lists (the
/// planner keeps a person's steps together) and trailing group deletions.
fn split_plan(plan: &Plan) -> (Vec<&PlanStep>, Vec<Vec<&PlanStep>>, Vec<&PlanStep>) {
    let mut groups = Vec::new();
    let mut people: Vec<Vec<&PlanStep>> = Vec::new();
    let mut trailing = Vec::new();
    for step in &plan.steps {
        match step.email() {
            None if matches!(step, PlanStep::DeleteGroup { .. }) => trailing.push(step),
            None => groups.push(step),
            Some(email) => match people.last_mut() {
                Some(last)
                    if last.first().is_some_and(|s| {
                        s.email() == Some(email) && s.org_id() == step.org_id()
                    }) =>
                {
                    last.push(step)
                }
                _ => people.push(vec![step]),
            },
        }
    }
    (groups, people, trailing)
}

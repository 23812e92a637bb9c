//! Guarded application and the run records: apply or hold a plan, record
//! the run, approve a held run.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::SyncWorker;
use super::group_turn::GroupTurn;
use super::types::{ActualScope, Outcome, StateSource, SyncError, SyncStatus, Trigger, status};
use crate::domain::Timestamp;
use crate::store::StoreError;
use crate::store::sync_runs::{self, NewSyncRun, RunKind, RunStatus};
use crate::sync::actual::ActualState;
use crate::sync::apply::{ApplyContext, ApplyReport};
use crate::sync::guard::{GuardVerdict, guard};
use crate::sync::plan::plan;
use crate::sync::step::Plan;
use crate::sync::writer::TykWriter;

impl<W: TykWriter, S: StateSource> SyncWorker<W, S> {
    pub(super) async fn guard_and_apply(
        &self,
        trigger: Trigger,
        plan: Plan,
        actual: &ActualState,
        managed: usize,
        (events_by_email, run_events): (BTreeMap<String, Vec<i64>>, Vec<i64>),
        turn: GroupTurn,
    ) -> Result<SyncStatus, SyncError> {
        let mut plan = plan;
        let skipped = self
            .leave_quarantined(&mut plan, actual, trigger, turn.listed_after())
            .await?
            .len();
        let verdict = guard(&plan, managed, self.config.guard);
        let summary = plan.summary();
        if let GuardVerdict::Hold { .. } = verdict {
            let run_id = self
                .hold(trigger, &plan, managed, &verdict, &run_events)
                .await?;
            return Ok(SyncStatus {
                skipped_quarantined: skipped,
                ..status(
                    run_id,
                    trigger,
                    Outcome::Held,
                    summary,
                    &ApplyReport::default(),
                    verdict,
                )
            });
        }
        if plan.is_empty() {
            return Ok(SyncStatus {
                skipped_quarantined: skipped,
                ..status(
                    None,
                    trigger,
                    Outcome::Applied,
                    summary,
                    &ApplyReport::default(),
                    verdict,
                )
            });
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
        self.apply_recorded(
            run_id, trigger, &plan, actual, &context, verdict, turn, skipped,
        )
        .await
    }

    /// Applies a recorded run's plan; `skipped` people were left out of it
    /// as quarantined (said in the run's message and its status).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn apply_recorded(
        &self,
        run_id: Uuid,
        trigger: Trigger,
        plan: &Plan,
        actual: &ActualState,
        context: &ApplyContext,
        verdict: GuardVerdict,
        turn: GroupTurn,
        skipped: usize,
    ) -> Result<SyncStatus, SyncError> {
        let report = self.apply_plan(plan, actual, context, turn).await;
        if let Err(e) = self.quarantine_refused(plan, actual, &report).await {
            tracing::error!(error = %e, "cannot record the people Tyk refused");
        }
        if plan.steps.iter().any(|s| s.email().is_none()) {
            // We wrote Tyk's groups: a cached copy is out of date.
            self.source.groups_changed();
        }
        let (run_status, outcome) = if report.succeeded() {
            (RunStatus::Applied, Outcome::Applied)
        } else {
            (RunStatus::Failed, Outcome::PartlyFailed)
        };
        let mut notes = report.errors.clone();
        if skipped > 0 {
            notes.push(skipped_note(skipped));
        }
        let message = (!notes.is_empty()).then(|| notes.join("; "));
        let mut conn = self.store.acquire().await?;
        sync_runs::finish_run(
            &mut conn,
            run_id,
            run_status,
            count(report.applied),
            count(report.failed),
            message.as_deref(),
        )
        .await?;
        tracing::info!(%run_id, ?trigger, applied = report.applied, failed = report.failed, tyk_writes = report.tyk_writes, skipped_quarantined = skipped, "sync run finished");
        Ok(SyncStatus {
            skipped_quarantined: skipped,
            ..status(
                Some(run_id),
                trigger,
                outcome,
                plan.summary(),
                &report,
                verdict,
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record_run(
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
        let mut conn = self.store.acquire().await?;
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
    pub(super) async fn hold(
        &self,
        trigger: Trigger,
        plan: &Plan,
        managed: usize,
        verdict: &GuardVerdict,
        seqs: &[i64],
    ) -> Result<Option<Uuid>, SyncError> {
        let json =
            serde_json::to_value(plan).map_err(|e| SyncError::NotApprovable(e.to_string()))?;
        let mut conn = self.store.acquire().await?;
        let held = sync_runs::list_runs(&mut conn, Some(RunStatus::Held), 1).await?;
        if let Some(existing) = held.first().filter(|r| r.plan.as_ref() == Some(&json)) {
            return Ok(Some(existing.id));
        }
        sync_runs::supersede_held_runs(&mut conn).await?;
        drop(conn);
        let message = match verdict {
            held @ GuardVerdict::Hold { .. } => format!(
                "held by the mass-change guard: {}; approve with `tyk-idsync runs approve <id>`",
                held.reason()
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
        let result = self.approve_and_apply(id, actor).await;
        if !matches!(
            result,
            Err(SyncError::RunNotFound(_) | SyncError::NotApprovable(_))
        ) {
            self.metrics.observe(&result);
        }
        result
    }

    async fn approve_and_apply(&self, id: Uuid, actor: &str) -> Result<SyncStatus, SyncError> {
        let _one_at_a_time = self.full_runs.lock().await;
        let started = std::time::Instant::now();
        // Check and re-plan first: a run only turns `approved` when it is
        // about to be applied (a failed load leaves it held).
        let run = self.held_run(id).await?;
        let held: Plan = run
            .plan
            .clone()
            .and_then(|p| serde_json::from_value(p).ok())
            .ok_or_else(|| SyncError::NotApprovable(format!("run {id} has no readable plan")))?;
        let desired = self.source.desired().await?;
        let actual = self.source.actual(&ActualScope::Everyone).await?;
        let (ownership, managed) = self.ownership().await?;
        let mut fresh = plan(
            &desired,
            &actual,
            &ownership,
            &self.config.policy(),
            Timestamp::now(),
        );
        // As in any run: quarantined people whose steps Tyk refused are
        // not tried again by approving.
        let skipped = self
            .leave_quarantined(&mut fresh, &actual, Trigger::Full, Some(started))
            .await?
            .len();
        if !removed_people(&fresh).is_subset(&removed_people(&held)) {
            let verdict = guard(&fresh, managed, self.config.guard);
            // Supersedes the old held run.
            let new_id = self
                .hold(Trigger::Full, &fresh, managed, &verdict, &run.event_seqs)
                .await?;
            return Err(SyncError::NotApprovable(format!(
                "the plan changed since run {id} was held and would remove other people; new held run {}",
                new_id.map(|i| i.to_string()).unwrap_or_default()
            )));
        }
        let mut conn = self.store.acquire().await?;
        match sync_runs::approve_run(&mut conn, id, actor).await {
            Ok(_) => {}
            Err(StoreError::Conflict { detail, .. }) => {
                return Err(SyncError::NotApprovable(detail));
            }
            Err(e) => return Err(e.into()),
        }
        drop(conn);
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
            GroupTurn::Take {
                listed_after: started,
            },
            skipped,
        )
        .await
    }
}

impl<W: TykWriter, S: StateSource> SyncWorker<W, S> {
    async fn held_run(&self, id: Uuid) -> Result<sync_runs::SyncRun, SyncError> {
        let mut conn = self.store.acquire().await?;
        let run = sync_runs::get_run(&mut conn, id)
            .await?
            .ok_or(SyncError::RunNotFound(id))?;
        if run.status != RunStatus::Held {
            return Err(SyncError::NotApprovable(format!(
                "run {id} is {}, not held",
                run.status.as_str()
            )));
        }
        Ok(run)
    }
}

fn removed_people(plan: &Plan) -> BTreeSet<(String, String)> {
    plan.steps
        .iter()
        .filter(|s| s.removes_access())
        .filter_map(|s| s.email().map(|e| (s.org_id().to_string(), e.to_string())))
        .collect()
}

/// The run record's note on the people it left out.
pub(crate) fn skipped_note(people: usize) -> String {
    format!("skipped {people} quarantined people (see `tyk-idsync sync failures`)")
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

//! Event-driven runs: claim outbox events, plan for the people they name,
//! apply, then settle each event (processed, or released with backoff).

use std::collections::{BTreeMap, BTreeSet};

use super::group_turn::{self, GroupTurn};
use super::in_flight::Beside;
use super::types::{ActualScope, StateSource, SyncError, SyncStatus, Trigger};
use super::{SyncWorker, idle_status, millis};
use crate::domain::{DesiredState, EventKind, Timestamp};
use crate::store::StoreError;
use crate::store::sync_outbox::{self, ClaimedEvent};
use crate::store::sync_scope;
use crate::sync::actual::ActualState;
use crate::sync::guard::{GuardVerdict, guard};
use crate::sync::ownership::Ownership;
use crate::sync::plan::plan;
use crate::sync::scope::plan_for_people;
use crate::sync::step::Plan;
use crate::sync::writer::TykWriter;

/// What an event run plans from.
struct PlanInputs {
    desired: DesiredState,
    actual: ActualState,
    ownership: Ownership,
    /// Users we manage in all (the guard's base).
    managed: usize,
}

/// An event run's plan and what it was planned from.
struct EventPlan {
    plan: Plan,
    inputs: PlanInputs,
}

/// Tyk's answer to a write naming a group it does not have (CONTRACT.md
/// §2.8: `PUT /api/usergroups/{id}` and the user writes).
pub(super) const MISSING_GROUP: &str = "Group ID does not exist";

impl<W: TykWriter, S: StateSource> SyncWorker<W, S> {
    /// Claims a batch of events: any, or beside runs in flight only those
    /// naming other people (see [`super::in_flight`]).
    pub(super) async fn claim(&self) -> Result<Vec<ClaimedEvent>, SyncError> {
        let beside = self.in_flight.beside();
        if beside == Beside::Everyone {
            return Ok(Vec::new());
        }
        let now = Timestamp::now();
        let until = Timestamp(now.0 + millis(self.config.event_lease));
        let limit = i64::from(self.config.event_batch);
        let backend = self.store.backend();
        let mut tx = self.store.begin_write().await?;
        let claimed = match beside {
            Beside::Nothing => {
                sync_outbox::claim(&mut tx, backend, &self.holder, limit, now, until).await?
            }
            _ => {
                let held = |email: &str| self.in_flight.holds(email);
                sync_outbox::claim_beside(&mut tx, backend, &self.holder, limit, now, until, &held)
                    .await?
            }
        };
        tx.commit().await.map_err(StoreError::from)?;
        Ok(claimed)
    }

    pub(super) async fn run_events(&self) -> Result<SyncStatus, SyncError> {
        // One run at a time claims and registers its people, so the next
        // claim (beside it) knows whom to leave alone.
        let claiming = self.claiming.lock().await;
        let events = self.claim().await?;
        if events.is_empty() {
            return Ok(idle_status());
        }
        let result = match self.affected_people(&events).await {
            Ok(people) => {
                let scope = people.map_or(ActualScope::Everyone, ActualScope::People);
                let _in_hand = self.in_flight.register(&scope);
                drop(claiming);
                if events.len() >= usize::try_from(self.config.event_batch).unwrap_or(usize::MAX) {
                    // A full batch: more are likely waiting, and the run
                    // loop may start the next run beside this one.
                    self.wake.notify_one();
                }
                self.apply_events(&events, &scope).await
            }
            Err(e) => {
                drop(claiming);
                Err(e)
            }
        };
        if result.is_err() {
            // Nothing was decided (Tyk or the store failed even after the
            // request's own retries): give the events back, to be retried
            // soon the first time and later as the batch keeps failing.
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            let attempts = events.iter().map(|e| e.attempts).max().unwrap_or(1);
            let retry_at = self.retry_at(attempts);
            let mut conn = self.store.acquire().await?;
            sync_outbox::release(&mut conn, &seqs, retry_at).await?;
        }
        result
    }

    /// Plans and applies one batch of events for `scope` (the people they
    /// can affect). A write that meets a group Tyk no longer has ("Group
    /// ID does not exist": the cached groups were stale) drops the group
    /// cache and runs the batch once more.
    pub(super) async fn apply_events(
        &self,
        events: &[ClaimedEvent],
        scope: &ActualScope,
    ) -> Result<SyncStatus, SyncError> {
        let mut status = self.plan_and_apply_events(events, scope).await?;
        if status.errors.iter().any(|e| e.contains(MISSING_GROUP)) {
            tracing::info!("a cached Tyk group is gone; re-listing groups and retrying once");
            self.source.groups_changed();
            status = self.plan_and_apply_events(events, scope).await?;
        }
        self.settle_events(events, &status).await?;
        Ok(status)
    }

    async fn plan_and_apply_events(
        &self,
        events: &[ClaimedEvent],
        scope: &ActualScope,
    ) -> Result<SyncStatus, SyncError> {
        // One plan per person, however many of their events the batch holds.
        if let ActualScope::People(people) = scope {
            self.note_planned_by_events(people);
        }
        let mut planned = self.plan_scope(scope).await?;
        // A plan that writes groups was made from cached groups: planned
        // again from a fresh group listing (the people as read) and applied
        // under the group-writes turn, so it neither duplicates a group a
        // full reconcile (or an earlier run) just created nor waits for that
        // reconcile's listing.
        let turn = if group_turn::writes_groups(&planned.plan) {
            let turn = self.group_writes.lock().await;
            self.source.groups_changed();
            let fresh = self
                .source
                .actual(&ActualScope::People(BTreeSet::new()))
                .await?;
            planned.inputs.actual.groups = fresh.groups;
            planned = self.replan(scope, planned.inputs).await?;
            Some(turn)
        } else {
            None
        };
        let mut by_email: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for event in events {
            if let Some(email) = &event.email {
                by_email
                    .entry(crate::domain::fold_key(email))
                    .or_default()
                    .push(event.seq);
            }
        }
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        let status = self
            .guard_and_apply(
                Trigger::Events,
                planned.plan,
                &planned.inputs.actual,
                planned.inputs.managed,
                (by_email, seqs),
                GroupTurn::Held,
            )
            .await;
        drop(turn);
        // Also once written: a reconcile that listed them before this
        // write must not apply its older view after it.
        if let ActualScope::People(people) = scope {
            self.note_planned_by_events(people);
        }
        status
    }

    /// The plan of an event run for `scope` (see [`Self::replan`]).
    async fn plan_scope(&self, scope: &ActualScope) -> Result<EventPlan, SyncError> {
        let desired = match scope {
            ActualScope::Everyone => self.source.desired().await?,
            ActualScope::People(people) => self.source.desired_for(people).await?,
        };
        let actual = self.source.actual(scope).await?;
        let (ownership, managed) = match scope {
            ActualScope::Everyone => self.ownership().await?,
            ActualScope::People(people) => self.ownership_of(people).await?,
        };
        self.replan(
            scope,
            PlanInputs {
                desired,
                actual,
                ownership,
                managed,
            },
        )
        .await
    }

    /// Plans `scope` from these inputs, guarded: a plan of some people the
    /// guard would hold becomes everyone's plan, so the held run carries
    /// every pending removal — also those of earlier held event runs, which
    /// it supersedes — and approving it applies them all.
    async fn replan(
        &self,
        scope: &ActualScope,
        inputs: PlanInputs,
    ) -> Result<EventPlan, SyncError> {
        let now = Timestamp::now();
        let policy = self.config.policy();
        let PlanInputs {
            desired,
            actual,
            ownership,
            managed,
        } = &inputs;
        let plan = match scope {
            ActualScope::Everyone => plan(desired, actual, ownership, &policy, now),
            ActualScope::People(people) => {
                plan_for_people(desired, actual, ownership, &policy, now, people)
            }
        };
        if *scope != ActualScope::Everyone
            && matches!(
                guard(&plan, *managed, self.config.guard),
                GuardVerdict::Hold { .. }
            )
        {
            return Box::pin(self.plan_scope(&ActualScope::Everyone)).await;
        }
        Ok(EventPlan { plan, inputs })
    }

    /// The people a batch of events can affect (lower-cased e-mails), or
    /// `None` when that takes everyone, all found from the store:
    /// - a user event names its person;
    /// - a group's update and a nested group's membership change: the
    ///   people in that group, directly or nested;
    /// - a group's creation: nobody (each member has an event of its own);
    /// - a group's deletion: its former members, recorded in the event
    ///   when the group was deleted (see `sync_scope::deleted_group_detail`);
    /// - a mapping rule change: the people in groups the rule matched
    ///   before or matches now (those it placed, and those it may place), and
    ///   everyone if the rule's group is where unmatched people go
    ///   (`unmapped_policy = "default"`).
    ///
    /// Events from before their detail carried this (and a user event
    /// without an e-mail) still take everyone.
    async fn affected_people(
        &self,
        events: &[ClaimedEvent],
    ) -> Result<Option<BTreeSet<String>>, SyncError> {
        let mut emails = BTreeSet::new();
        let mut conn = self.store.acquire().await?;
        for event in events {
            match (&event.email, event.kind, event.subject_id) {
                (Some(email), _, _) => {
                    emails.insert(crate::domain::fold_key(email));
                }
                (None, EventKind::GroupCreated, Some(_)) => {}
                (None, EventKind::GroupUpdated | EventKind::MembershipChanged, Some(group)) => {
                    emails
                        .extend(sync_scope::member_emails(&mut conn, &event.source, group).await?);
                }
                (None, EventKind::GroupDeleted, Some(_)) => {
                    let detail = sync_scope::event_detail(&mut conn, event.seq).await?;
                    match detail.as_ref().and_then(|d| d.get("members")) {
                        Some(serde_json::Value::Array(members)) => emails.extend(
                            members
                                .iter()
                                .filter_map(serde_json::Value::as_str)
                                .map(crate::domain::fold_key),
                        ),
                        _ => return Ok(None),
                    }
                }
                (None, EventKind::MappingChanged, _) => {
                    let detail = sync_scope::event_detail(&mut conn, event.seq).await?;
                    match self.rule_change_people(&mut conn, detail.as_ref()).await? {
                        Some(people) => emails.extend(people),
                        None => return Ok(None),
                    }
                }
                (None, _, _) => return Ok(None),
            }
        }
        Ok(Some(emails))
    }

    /// The people a mapping rule change can affect (see
    /// [`Self::affected_people`]); `None` for everyone.
    async fn rule_change_people(
        &self,
        conn: &mut sqlx::AnyConnection,
        detail: Option<&serde_json::Value>,
    ) -> Result<Option<BTreeSet<String>>, SyncError> {
        let Some(detail) = detail else {
            return Ok(None);
        };
        let (Some(ids), Some(before)) = (
            detail.get("rules").and_then(|r| r.as_array()),
            detail.get("before").and_then(|b| b.as_array()),
        ) else {
            return Ok(None);
        };
        // (org, group name, mappingsSSO) of each rule, before and now.
        let mut rules: Vec<(String, String, Vec<String>)> = Vec::new();
        for old in before {
            let text = |key: &str| old.get(key).and_then(|v| v.as_str()).map(str::to_string);
            let (Some(org), Some(name)) = (text("org_id"), text("name")) else {
                return Ok(None);
            };
            let sso = old
                .get("mappings_sso")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            rules.push((org, name, sso));
        }
        for id in ids.iter().filter_map(|v| v.as_str()) {
            if let Some(stored) = crate::store::mappings::get(&mut *conn, id).await? {
                let rule = stored.rule;
                rules.push((rule.org_id, rule.name, rule.mappings_sso));
            }
        }
        if rules
            .iter()
            .any(|(org, name, _)| self.source.takes_unmapped_people(org, name))
        {
            return Ok(None);
        }
        let patterns: Vec<crate::mapping::SsoPattern> = rules
            .iter()
            .flat_map(|(_, _, sso)| sso.iter())
            .filter_map(|entry| crate::mapping::SsoPattern::parse(entry).ok())
            .collect();
        if patterns.is_empty() {
            return Ok(Some(BTreeSet::new()));
        }
        let people = sync_scope::people_in_groups_matching(&mut *conn, |group| {
            patterns.iter().any(|p| p.matches(group))
        })
        .await?;
        Ok(Some(people))
    }

    /// Marks processed the events whose people succeeded (or whose run was
    /// held: the held plan carries the change), and those of people now
    /// quarantined (Tyk refused them for good: retrying cannot help, and a
    /// change to them queues a new event); releases the rest with backoff.
    pub(super) async fn settle_events(
        &self,
        events: &[ClaimedEvent],
        status: &SyncStatus,
    ) -> Result<(), SyncError> {
        let quarantined = self.quarantined_emails(&status.failed_people).await?;
        let failed: BTreeSet<String> = status
            .failed_people
            .iter()
            .map(|(_, email)| crate::domain::fold_key(email))
            .filter(|email| !quarantined.contains(email))
            .collect();
        let only_quarantined_failed = !status.failed_people.is_empty() && failed.is_empty();
        let (mut done, mut retry) = (Vec::new(), Vec::new());
        for event in events {
            let person_failed = match &event.email {
                Some(email) => failed.contains(&crate::domain::fold_key(email)),
                None => status.failed > 0 && !only_quarantined_failed,
            };
            if person_failed {
                retry.push(event)
            } else {
                done.push(event.seq)
            }
        }
        let mut tx = self.store.begin_write().await?;
        sync_outbox::complete(&mut tx, &done).await?;
        for event in retry {
            sync_outbox::release(&mut tx, &[event.seq], self.retry_at(event.attempts)).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// When an event claimed `attempts` times is retried: the retry
    /// policy's backoff (jittered, doubling from `sync.retry_base_delay` up
    /// to `sync.retry_max_delay`), at least the base delay.
    fn retry_at(&self, attempts: i64) -> Timestamp {
        let delay = self
            .config
            .limits()
            .retry
            .delay(u32::try_from(attempts).unwrap_or(u32::MAX).min(16), None);
        Timestamp(Timestamp::now().0 + millis(delay.max(self.config.retry_base_delay)))
    }

    /// The folded e-mails of those of `people` quarantined now.
    async fn quarantined_emails(
        &self,
        people: &BTreeSet<(String, String)>,
    ) -> Result<BTreeSet<String>, SyncError> {
        let mut quarantined = BTreeSet::new();
        if people.is_empty() {
            return Ok(quarantined);
        }
        let mut conn = self.store.acquire().await?;
        for (_, email) in people {
            let key = crate::domain::fold_key(email);
            if !crate::store::sync_quarantine::find(&mut conn, &key)
                .await?
                .is_empty()
            {
                quarantined.insert(key);
            }
        }
        Ok(quarantined)
    }
}

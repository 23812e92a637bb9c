//! Event-driven runs: claim outbox events, plan for the people they name,
//! apply, then settle each event (processed, or released with backoff).

use std::collections::{BTreeMap, BTreeSet};

use super::types::{ActualScope, StateSource, SyncError, SyncStatus, Trigger};
use super::{SyncWorker, idle_status, millis};
use crate::domain::{EventKind, Timestamp};
use crate::store::StoreError;
use crate::store::sync_outbox::{self, ClaimedEvent};
use crate::store::sync_scope;
use crate::sync::guard::{GuardVerdict, guard};
use crate::sync::plan::plan;
use crate::sync::scope::plan_for_people;
use crate::sync::writer::TykWriter;

/// Tyk's answer to a write naming a group it does not have (CONTRACT.md
/// §2.8: `PUT /api/usergroups/{id}` and the user writes).
pub(super) const MISSING_GROUP: &str = "Group ID does not exist";

impl<W: TykWriter, S: StateSource> SyncWorker<W, S> {
    pub(super) async fn claim(&self) -> Result<Vec<ClaimedEvent>, SyncError> {
        let now = Timestamp::now();
        let until = Timestamp(now.0 + millis(self.config.event_lease));
        let mut tx = self.store.begin_write().await?;
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

    pub(super) async fn run_events(&self) -> Result<SyncStatus, SyncError> {
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

    /// Plans and applies one batch of events. A write that meets a group
    /// Tyk no longer has ("Group ID does not exist": the cached groups were
    /// stale) drops the group cache and runs the batch once more.
    pub(super) async fn apply_events(
        &self,
        events: &[ClaimedEvent],
    ) -> Result<SyncStatus, SyncError> {
        let mut status = self.plan_and_apply_events(events).await?;
        if status.errors.iter().any(|e| e.contains(MISSING_GROUP)) {
            tracing::info!("a cached Tyk group is gone; re-listing groups and retrying once");
            self.source.groups_changed();
            status = self.plan_and_apply_events(events).await?;
        }
        self.settle_events(events, &status).await?;
        Ok(status)
    }

    async fn plan_and_apply_events(
        &self,
        events: &[ClaimedEvent],
    ) -> Result<SyncStatus, SyncError> {
        // Group writes (planned from the groups as listed) only when no full
        // reconcile is under way: taken before planning, held to the end.
        let group_writes = self.group_writes.try_lock().ok();
        // One plan per person, however many of their events the batch holds.
        let scope = match self.affected_people(events).await? {
            Some(emails) => ActualScope::People(emails),
            None => ActualScope::Everyone,
        };
        if let ActualScope::People(people) = &scope {
            self.note_planned_by_events(people);
        }
        let mut desired = match &scope {
            ActualScope::Everyone => self.source.desired().await?,
            ActualScope::People(people) => self.source.desired_for(people).await?,
        };
        let mut actual = self.source.actual(&scope).await?;
        let (mut ownership, managed) = match &scope {
            ActualScope::Everyone => self.ownership().await?,
            ActualScope::People(people) => self.ownership_of(people).await?,
        };
        let now = Timestamp::now();
        let policy = self.config.policy();
        let mut plan = match &scope {
            ActualScope::Everyone => plan(&desired, &actual, &ownership, &policy, now),
            ActualScope::People(people) => {
                plan_for_people(&desired, &actual, &ownership, &policy, now, people)
            }
        };
        if scope != ActualScope::Everyone
            && matches!(
                guard(&plan, managed, self.config.guard),
                GuardVerdict::Hold { .. }
            )
        {
            // Held: hold everyone's plan, so the held run carries every
            // pending removal — also those of earlier held event runs,
            // which it supersedes — and approving it applies them all.
            desired = self.source.desired().await?;
            actual = self.source.actual(&ActualScope::Everyone).await?;
            ownership = self.ownership().await?.0;
            plan = crate::sync::plan::plan(&desired, &actual, &ownership, &policy, now);
        }
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
        if group_writes.is_none() {
            // A full reconcile is under way and has the groups in hand;
            // people waiting for a new group are retried after it.
            plan.steps.retain(|s| s.email().is_some());
        }
        let status = self
            .guard_and_apply(Trigger::Events, plan, &actual, managed, by_email, seqs)
            .await;
        // Also once written: a reconcile that listed them before this
        // write must not apply its older view after it.
        if let ActualScope::People(people) = &scope {
            self.note_planned_by_events(people);
        }
        status
    }

    /// The people a batch of events can affect (lower-cased e-mails), or
    /// `None` when that takes everyone: a group's update and a nested
    /// group's membership change affect the people in that group (found in
    /// the store); a group's creation nobody (each member has a membership
    /// event of its own); a mapping change, a group deletion (its members
    /// may be gone already) and a user event without an e-mail affect
    /// everyone.
    async fn affected_people(
        &self,
        events: &[ClaimedEvent],
    ) -> Result<Option<BTreeSet<String>>, SyncError> {
        let mut emails = BTreeSet::new();
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
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
                (None, _, _) => return Ok(None),
            }
        }
        Ok(Some(emails))
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

    /// The folded e-mails of those of `people` quarantined now.
    async fn quarantined_emails(
        &self,
        people: &BTreeSet<(String, String)>,
    ) -> Result<BTreeSet<String>, SyncError> {
        let mut quarantined = BTreeSet::new();
        if people.is_empty() {
            return Ok(quarantined);
        }
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::from)?;
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

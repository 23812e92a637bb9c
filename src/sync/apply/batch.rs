//! The store side of applying many people: their rows written in batches.
//!
//! Each person's steps need rows before their first Tyk request (audit
//! intents; a pending-creation mark before a `POST`) and after their last
//! (the audit rows of the results, the ownership of a created user, the
//! intents closed). Written person by person that was about ten
//! autocommit statements per created user, which at a bulk load's pace
//! kept the database busier than Tyk's limiter kept the sync. Instead:
//!
//! - **Before**: the people are prepared [`PREPARE_PEOPLE`] at a time, one
//!   transaction of multi-row statements each, the next chunk while the
//!   previous one's requests are in flight.
//! - **After**: a person's results wait in a [`Settlement`]; every
//!   [`SETTLE_PEOPLE`] people (and at the end of the run) they go in one
//!   transaction — ownership, ended pending creations, audit rows and the
//!   closing of their intents together, so a result is never audited
//!   without its intent closing or the reverse.
//!
//! Crash safety is unchanged in kind: a pending-creation mark still
//! precedes every `POST` and an intent every write, so a run killed with
//! settlements unwritten leaves users whose creation the next run resumes
//! (found by e-mail, then recorded) and intents the next leader resolves by
//! reading Tyk — at most a chunk and a settlement's worth of them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::audit::{InFlight, intent_entry, writes_tyk};
use super::{Applier, ApplyContext, ApplyReport};
use crate::store::sync_audit::{self, NewAuditEntry};
use crate::store::{StoreError, sync_state};
use crate::sync::ownership::ManagedUser;
use crate::sync::step::PlanStep;
use crate::sync::writer::TykWriter;

/// People whose before-rows go in one transaction.
pub(super) const PREPARE_PEOPLE: usize = 64;

/// People whose after-rows go in one transaction.
pub(super) const SETTLE_PEOPLE: usize = 32;

/// A person prepared to be applied: the ids of their intents, or why
/// nothing of theirs may be sent.
pub(super) type Prepared = Result<Vec<i64>, String>;

/// What one person's applied steps leave for the store.
pub(super) struct Settlement {
    /// (org, e-mail) of the person.
    pub(super) person: (String, String),
    /// Their steps' results, for the audit log.
    pub(super) audit: Vec<NewAuditEntry>,
    /// Users created for them, to record as managed.
    pub(super) recorded: Vec<ManagedUser>,
    /// Pending creations to drop (nothing was created, for sure).
    pub(super) ended_creates: Vec<(String, String)>,
    intents: Vec<i64>,
    /// Keeps the intents from being resolved as abandoned until written.
    _in_flight: InFlight,
}

impl Settlement {
    pub(super) fn new(person: (String, String), intents: Vec<i64>, in_flight: InFlight) -> Self {
        Self {
            person,
            audit: Vec::new(),
            recorded: Vec::new(),
            ended_creates: Vec::new(),
            intents,
            _in_flight: in_flight,
        }
    }
}

/// The (org, e-mail) a person's steps are about.
fn person_of(steps: &[&PlanStep]) -> Option<(String, String)> {
    let first = steps.first()?;
    Some((first.org_id().to_string(), first.email()?.to_string()))
}

/// Whether this step will send a `POST` for the person (a pending-creation
/// mark must precede it). An e-mail Tyk would refuse is never sent.
fn creates(step: &PlanStep) -> Option<(&str, &str)> {
    match step {
        PlanStep::CreateUser { org_id, email, .. }
            if crate::domain::email::validate(email).is_ok() =>
        {
            Some((org_id, email))
        }
        _ => None,
    }
}

impl<W: TykWriter> Applier<'_, W> {
    /// Writes the before-rows of these people in one transaction: their
    /// intents and their pending creations. One entry per person, in order.
    pub(super) async fn prepare(
        &self,
        people: &[Vec<&PlanStep>],
        ctx: &ApplyContext,
    ) -> Vec<Prepared> {
        match self.write_before_rows(people, ctx).await {
            Ok(prepared) => prepared,
            Err(e) => {
                let why = format!("cannot record audit intents: {e}");
                people.iter().map(|_| Err(why.clone())).collect()
            }
        }
    }

    async fn write_before_rows(
        &self,
        people: &[Vec<&PlanStep>],
        ctx: &ApplyContext,
    ) -> Result<Vec<Prepared>, StoreError> {
        let entries: Vec<NewAuditEntry> = people
            .iter()
            .flatten()
            .filter(|s| writes_tyk(s))
            .map(|s| intent_entry(s, ctx))
            .collect();
        let creations: Vec<(&str, &str)> =
            people.iter().flatten().filter_map(|s| creates(s)).collect();
        if entries.is_empty() && creations.is_empty() {
            return Ok(people.iter().map(|_| Ok(Vec::new())).collect());
        }
        let mut tx = self.store.begin_write().await?;
        let recorded = sync_audit::record_intents_of_people(&mut tx, &entries).await?;
        sync_state::begin_creates(&mut tx, &creations, ctx.now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        let mut by_person: BTreeMap<(String, Option<String>), Vec<i64>> = BTreeMap::new();
        for (id, org_id, email) in recorded {
            by_person.entry((org_id, email)).or_default().push(id);
        }
        Ok(people
            .iter()
            .map(|steps| {
                let key = steps
                    .first()
                    .map(|s| (s.org_id().to_string(), s.email().map(str::to_string)));
                Ok(key
                    .and_then(|key| by_person.remove(&key))
                    .unwrap_or_default())
            })
            .collect())
    }

    /// One person, prepared: their steps applied, their after-rows queued
    /// (written with others' once enough wait, or at the run's end).
    pub(super) async fn apply_prepared_person(
        &self,
        steps: Vec<&PlanStep>,
        prepared: Prepared,
        users: &BTreeMap<&str, &crate::sync::actual::ActualUser>,
        created: &super::CreatedGroups,
        ctx: &ApplyContext,
    ) -> ApplyReport {
        let intents = match prepared {
            Ok(ids) => ids,
            Err(why) => return super::audit::not_started(&steps, &why),
        };
        let Some(person) = person_of(&steps) else {
            return super::audit::not_started(&steps, "steps without a person");
        };
        let in_flight = InFlight::new(self.store, &intents);
        let mut settlement = Settlement::new(person, intents, in_flight);
        let report = self
            .apply_person(steps, users, created, ctx, &mut settlement)
            .await;
        let full = {
            let mut waiting = self.settlements.lock().unwrap_or_else(|e| e.into_inner());
            waiting.push(settlement);
            (waiting.len() >= SETTLE_PEOPLE).then(|| std::mem::take(&mut *waiting))
        };
        if let Some(batch) = full {
            self.write_after_rows(batch).await;
        }
        report
    }

    /// Writes whatever settlements still wait (the end of a run).
    pub(super) async fn settle_waiting(&self) {
        let batch =
            std::mem::take(&mut *self.settlements.lock().unwrap_or_else(|e| e.into_inner()));
        if !batch.is_empty() {
            self.write_after_rows(batch).await;
        }
    }

    /// One transaction for these people's after-rows. If it fails, nothing
    /// of it is written: their intents stay open (the next leader audits
    /// what Tyk shows), their pending creations stay (the next run resumes
    /// them) and they count as failed, so their events are retried.
    async fn write_after_rows(&self, batch: Vec<Settlement>) {
        let written = async {
            let recorded: Vec<ManagedUser> = batch
                .iter()
                .flat_map(|s| s.recorded.iter().cloned())
                .collect();
            let ended: Vec<(&str, &str)> = batch
                .iter()
                .flat_map(|s| s.ended_creates.iter())
                .map(|(org, email)| (org.as_str(), email.as_str()))
                .collect();
            let audit: Vec<NewAuditEntry> =
                batch.iter().flat_map(|s| s.audit.iter().cloned()).collect();
            let intents: Vec<i64> = batch
                .iter()
                .flat_map(|s| s.intents.iter().copied())
                .collect();
            let mut tx = self.store.begin_write().await?;
            sync_state::end_creates(&mut tx, &ended).await?;
            sync_state::record_users(&mut tx, &recorded).await?;
            sync_audit::append_many(&mut tx, &audit).await?;
            sync_audit::close_intents(&mut tx, &intents).await?;
            tx.commit().await.map_err(StoreError::from)
        };
        let Err(e) = written.await else {
            return;
        };
        self.audit_failures.fetch_add(1, Ordering::SeqCst);
        tracing::error!(error = %e, people = batch.len(), "could not record the results of applied steps; their events stay pending");
        let mut failures = self
            .settle_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for settlement in &batch {
            let (org, email) = &settlement.person;
            failures.failed += 1;
            failures.failed_people.insert(settlement.person.clone());
            failures
                .errors
                .push(format!("{org} {email}: results not recorded: store: {e}"));
        }
    }
}

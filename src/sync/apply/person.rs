//! Applying one person's steps, in order, stopping at the first failure.

use std::collections::BTreeMap;

use super::batch::Settlement;
use super::{Applier, ApplyContext, ApplyReport, CreatedGroups, StepError};
use crate::store::sync_state;
use crate::sync::actual::ActualUser;
use crate::sync::ownership::ManagedUser;
use crate::sync::step::{GroupRef, PlanStep};
use crate::sync::writer::{TykWriter, UserRecord, WriteError};

type StepResult = Result<Option<String>, StepError>;

fn is_user_update(step: &PlanStep) -> bool {
    matches!(
        step,
        PlanStep::Reactivate { .. }
            | PlanStep::RevertEmail { .. }
            | PlanStep::UpdateUserProfile { .. }
            | PlanStep::MoveToGroup { .. }
            | PlanStep::UpdateUserPermissions { .. }
    )
}

fn resolve_group(
    org_id: &str,
    group: &GroupRef,
    created: &CreatedGroups,
) -> Result<String, StepError> {
    match group {
        GroupRef::Id(id) => Ok(id.clone()),
        GroupRef::New(name) => created
            .get(&(org_id.to_string(), name.clone()))
            .cloned()
            .ok_or_else(|| StepError::Blocked(format!("group {name:?} was not created"))),
    }
}

impl<W: TykWriter> Applier<'_, W> {
    pub(super) async fn apply_person(
        &self,
        steps: Vec<&PlanStep>,
        users: &BTreeMap<&str, &ActualUser>,
        created: &CreatedGroups,
        ctx: &ApplyContext,
        settlement: &mut Settlement,
    ) -> ApplyReport {
        let mut report = ApplyReport::default();
        let mut index = 0;
        while index < steps.len() {
            let batch: Vec<&PlanStep> = if is_user_update(steps[index]) {
                steps[index..]
                    .iter()
                    .take_while(|s| is_user_update(s))
                    .copied()
                    .collect()
            } else {
                vec![steps[index]]
            };
            index += batch.len();
            let (result, calls) = match batch[..] {
                [single] if !is_user_update(single) => {
                    self.apply_user_step(single, users, created, ctx, settlement)
                        .await
                }
                _ => self.apply_user_update(&batch, users, created).await,
            };
            report.tyk_writes += calls;
            let failed = result.is_err();
            if let (Err(StepError::Tyk(e)), Some(email)) = (&result, batch[0].email())
                && let Some(why) = crate::sync::quarantine::refusal(e)
            {
                report
                    .refused
                    .insert((batch[0].org_id().to_string(), email.to_string()), why);
            }
            for step in &batch {
                let each = match &result {
                    Ok(id) => Ok(id.clone()),
                    Err(StepError::LeftAlone(why)) => Err(StepError::LeftAlone(why.clone())),
                    Err(e) => Err(StepError::Blocked(e.to_string())),
                };
                if let Some(entry) = self.outcome_entry(step, each, ctx, &mut report).await {
                    settlement.audit.push(entry);
                }
            }
            if failed {
                break;
            }
        }
        report
    }

    /// Reactivation, profile, group and permission changes as ONE `PUT`.
    async fn apply_user_update(
        &self,
        batch: &[&PlanStep],
        users: &BTreeMap<&str, &ActualUser>,
        created: &CreatedGroups,
    ) -> (StepResult, usize) {
        let Some(user_id) = batch.first().and_then(|s| s.user_id()) else {
            return (
                Err(StepError::Blocked("update without a user id".into())),
                0,
            );
        };
        let Some(current) = users.get(user_id) else {
            return (
                Err(StepError::Blocked(format!(
                    "user {user_id} not in the listing"
                ))),
                0,
            );
        };
        let mut record = UserRecord::from(*current);
        let mut reactivated = false;
        for step in batch {
            match step {
                PlanStep::Reactivate { .. } => {
                    record.active = true;
                    reactivated = true;
                }
                PlanStep::RevertEmail { email, .. } => record.email = email.clone(),
                PlanStep::UpdateUserProfile { after, .. } => {
                    record.first_name = after.first_name.clone();
                    record.last_name = after.last_name.clone();
                }
                PlanStep::MoveToGroup {
                    org_id,
                    to,
                    permissions,
                    ..
                } => {
                    match resolve_group(org_id, to, created) {
                        Ok(id) => record.group_id = Some(id),
                        Err(e) => return (Err(e), 0),
                    }
                    record.permissions = permissions.clone();
                }
                PlanStep::UpdateUserPermissions { after, .. } => record.permissions = after.clone(),
                _ => {}
            }
        }
        let out = self
            .call(|| self.writer.update_user(user_id, &record))
            .await;
        let calls = out.attempts as usize;
        if let Err(e) = out.result {
            return (Err(e.into()), calls);
        }
        if reactivated && let Err(e) = self.set_deactivated_at(user_id, None).await {
            return (Err(e), calls);
        }
        (Ok(Some(user_id.to_string())), calls)
    }

    async fn set_deactivated_at(
        &self,
        user_id: &str,
        at: Option<crate::domain::Timestamp>,
    ) -> Result<(), StepError> {
        let mut conn = self.store.acquire().await?;
        Ok(sync_state::set_deactivated_at(&mut conn, user_id, at).await?)
    }

    async fn set_access_key_reset_at(
        &self,
        user_id: &str,
        at: crate::domain::Timestamp,
    ) -> Result<(), StepError> {
        let mut conn = self.store.acquire().await?;
        Ok(sync_state::set_access_key_reset_at(&mut conn, user_id, at).await?)
    }

    /// One transaction: ending the pending creation and recording the
    /// user happen together or not at all (a crash in between would orphan it).
    async fn record_managed(&self, user: &ManagedUser) -> Result<(), StepError> {
        let mut tx = self.store.begin().await?;
        sync_state::record_user(&mut tx, user).await?;
        tx.commit().await.map_err(crate::store::StoreError::from)?;
        Ok(())
    }

    async fn apply_user_step(
        &self,
        step: &PlanStep,
        users: &BTreeMap<&str, &ActualUser>,
        created: &CreatedGroups,
        ctx: &ApplyContext,
        settlement: &mut Settlement,
    ) -> (StepResult, usize) {
        match step {
            PlanStep::CreateUser { .. } => self.create_user(step, created, ctx, settlement).await,
            PlanStep::AdoptUser {
                org_id,
                email,
                user_id,
                resumed_creation,
                ..
            } => {
                let managed = managed_user(org_id, email, user_id, !resumed_creation, ctx);
                (
                    self.record_managed(&managed)
                        .await
                        .map(|()| Some(user_id.clone())),
                    0,
                )
            }
            PlanStep::Deactivate { user_id, .. } => {
                let Some(current) = users.get(user_id.as_str()) else {
                    return (
                        Err(StepError::Blocked(format!(
                            "user {user_id} not in the listing"
                        ))),
                        0,
                    );
                };
                let record = UserRecord {
                    active: false,
                    ..UserRecord::from(*current)
                };
                let out = self
                    .call(|| self.writer.update_user(user_id, &record))
                    .await;
                let calls = out.attempts as usize;
                let result = match out.result {
                    Ok(()) => self
                        .set_deactivated_at(user_id, Some(ctx.now))
                        .await
                        .map(|()| Some(user_id.clone())),
                    Err(e) => Err(e.into()),
                };
                (result, calls)
            }
            PlanStep::RecordDeactivation { user_id, .. } => (
                self.set_deactivated_at(user_id, Some(ctx.now))
                    .await
                    .map(|()| Some(user_id.clone())),
                0,
            ),
            PlanStep::Delete {
                org_id, user_id, ..
            } => {
                let out = self.call(|| self.writer.delete_user(org_id, user_id)).await;
                let calls = out.attempts as usize;
                let result = match out.result {
                    Ok(()) => self.forget(user_id).await.map(|()| Some(user_id.clone())),
                    Err(e) => Err(e.into()),
                };
                (result, calls)
            }
            PlanStep::ForgetUser { user_id, .. } => (
                self.forget(user_id).await.map(|()| Some(user_id.clone())),
                0,
            ),
            PlanStep::ResetAccessKey {
                org_id, user_id, ..
            } => {
                let out = self
                    .call(|| self.writer.reset_user_key(org_id, user_id))
                    .await;
                let calls = out.attempts as usize;
                let result = match out.result {
                    Ok(()) => self
                        .set_access_key_reset_at(user_id, ctx.now)
                        .await
                        .map(|()| Some(user_id.clone())),
                    Err(e) => Err(e.into()),
                };
                (result, calls)
            }
            other => (
                Err(StepError::Blocked(format!(
                    "{} is not a user step",
                    other.kind()
                ))),
                0,
            ),
        }
    }

    async fn forget(&self, user_id: &str) -> Result<(), StepError> {
        let mut conn = self.store.acquire().await?;
        Ok(sync_state::forget_user(&mut conn, user_id).await?)
    }

    /// Creates a user idempotently: a pending record first (written when
    /// the person was prepared, see `batch`), then the `POST`, then
    /// ownership (with the person's settlement). `EmailAlreadyExists` looks
    /// the user up and continues as an update when the user is ours (or
    /// adopts it when allowed).
    async fn create_user(
        &self,
        step: &PlanStep,
        created: &CreatedGroups,
        ctx: &ApplyContext,
        settlement: &mut Settlement,
    ) -> (StepResult, usize) {
        let PlanStep::CreateUser {
            org_id,
            email,
            profile,
            group,
            permissions,
            ..
        } = step
        else {
            return (Err(StepError::Blocked("not a creation".into())), 0);
        };
        // The planner never plans this; a plan held for approval since
        // before e-mails were checked could still carry one.
        if let Err(problem) = crate::domain::email::validate(email) {
            return (
                Err(StepError::Blocked(format!("{problem}: never sent to Tyk"))),
                0,
            );
        }
        let group_id = match resolve_group(org_id, group, created) {
            Ok(id) => id,
            Err(e) => {
                settlement
                    .ended_creates
                    .push((org_id.clone(), email.clone()));
                return (Err(e), 0);
            }
        };
        let record = UserRecord {
            org_id: org_id.clone(),
            email: email.clone(),
            first_name: profile.first_name.clone(),
            last_name: profile.last_name.clone(),
            active: true,
            group_id: Some(group_id),
            permissions: permissions.clone(),
        };
        let out = self.call(|| self.writer.create_user(&record)).await;
        let mut calls = out.attempts as usize;
        match out.result {
            Ok(id) => {
                settlement
                    .recorded
                    .push(managed_user(org_id, email, &id, false, ctx));
                (Ok(Some(id)), calls)
            }
            Err(WriteError::EmailAlreadyExists) => {
                let (result, more) = self
                    .continue_existing(&record, out.maybe_applied_before, ctx)
                    .await;
                calls += more;
                (result, calls)
            }
            Err(e) => {
                // A retryable last error (a timeout) may hide a success:
                // keep the pending record so the next run recognises it.
                if !out.maybe_applied_before && !e.is_retryable() {
                    // Nothing can have been created: drop the pending record.
                    settlement
                        .ended_creates
                        .push((org_id.clone(), email.clone()));
                }
                (Err(e.into()), calls)
            }
        }
    }

    async fn end_create(&self, org_id: &str, email: &str) -> Result<(), StepError> {
        let mut conn = self.store.acquire().await?;
        Ok(sync_state::end_create(&mut conn, org_id, email).await?)
    }

    /// The e-mail already exists: ours (recorded, or our own earlier attempt
    /// may have landed) → record and update; someone else's → adopt if
    /// allowed, else leave it alone.
    async fn continue_existing(
        &self,
        record: &UserRecord,
        maybe_ours: bool,
        ctx: &ApplyContext,
    ) -> (StepResult, usize) {
        let (org_id, email) = (&record.org_id, &record.email);
        let found = self
            .call(|| self.writer.find_user_by_email(org_id, email))
            .await;
        let mut calls = found.attempts as usize;
        let existing = match found.result {
            Ok(Some(user)) => user,
            Ok(None) => {
                return (
                    Err(StepError::Blocked(
                        "Tyk says the e-mail exists but cannot find it".into(),
                    )),
                    calls,
                );
            }
            Err(e) => return (Err(e.into()), calls),
        };
        if existing.is_admin {
            let _ = self.end_create(org_id, email).await;
            return (
                Err(StepError::LeftAlone(format!(
                    "{email} is a Tyk admin; left alone"
                ))),
                calls,
            );
        }
        let recorded = match self.managed_id(org_id, email).await {
            Ok(id) => id.as_deref() == Some(existing.id.as_str()),
            Err(e) => return (Err(e), calls),
        };
        let ours = recorded || maybe_ours;
        if !ours && !ctx.adopt_existing {
            let _ = self.end_create(org_id, email).await;
            return (
                Err(StepError::LeftAlone(format!(
                    "{email} exists in Tyk and is not managed by tyk-idsync; left alone"
                ))),
                calls,
            );
        }
        let managed = managed_user(org_id, email, &existing.id, !ours, ctx);
        if let Err(e) = self.record_managed(&managed).await {
            return (Err(e), calls);
        }
        if !ours {
            // An adoption, as auditable as one the planner foresaw.
            let entry = crate::store::sync_audit::NewAuditEntry {
                run_id: ctx.run_id,
                at: crate::domain::Timestamp::now(),
                actor: ctx.actor.clone(),
                step_kind: "adopt_user".into(),
                org_id: org_id.clone(),
                email: Some(email.clone()),
                tyk_id: Some(existing.id.clone()),
                before: Some(serde_json::json!({ "managed": false })),
                after: Some(serde_json::json!({ "managed": true, "resumed_creation": false })),
                event_seqs: ctx.events_by_email.get(email).cloned().unwrap_or_default(),
                rule: None,
                ok: true,
                message: Some("found by a creation that met the e-mail".into()),
            };
            if let Err(e) = self.append_audit(&entry).await {
                tracing::error!(error = %e, "could not write the audit log");
            }
        }
        tracing::info!(org = %org_id, email = %email, user_id = %existing.id, adopted = !ours, "create met an existing user; continuing as an update");
        if UserRecord::from(&existing) == *record {
            return (Ok(Some(existing.id)), calls);
        }
        let out = self
            .call(|| self.writer.update_user(&existing.id, record))
            .await;
        calls += out.attempts as usize;
        (
            out.result.map(|()| Some(existing.id)).map_err(Into::into),
            calls,
        )
    }

    async fn managed_id(&self, org_id: &str, email: &str) -> Result<Option<String>, StepError> {
        let mut conn = self.store.acquire().await?;
        Ok(sync_state::find_user_by_email(&mut conn, org_id, email)
            .await?
            .map(|m| m.tyk_user_id))
    }
}

fn managed_user(
    org_id: &str,
    email: &str,
    user_id: &str,
    adopted: bool,
    ctx: &ApplyContext,
) -> ManagedUser {
    ManagedUser {
        org_id: org_id.to_string(),
        tyk_user_id: user_id.to_string(),
        email: email.to_string(),
        managed_since: ctx.now,
        adopted,
        deactivated_at: None,
        access_key_reset_at: None,
    }
}

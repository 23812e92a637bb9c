//! What the audit log says about a step: before/after values in a small,
//! readable JSON shape per step kind, and the entry itself.
//!
//! Every step that writes to Tyk is recorded as an *intent* before its
//! first request and the intent closed once the step's result is audited.
//! A run abandoned in between (a kill, a lost lead) leaves the intent; the
//! next leader reads the person's user in Tyk and audits what it found
//! ([`resolve_abandoned_intents`]), so a change Tyk applied is never
//! missing from the audit log.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::actual::ActualUser;
use super::apply::{Applier, ApplyContext, ApplyReport, CreatedGroups};
use super::step::{GroupRef, PlanStep};
use super::writer::TykWriter;
use crate::domain::Timestamp;
use crate::store::sync_audit::{self, NewAuditEntry};
use crate::store::{Store, StoreError};

fn group_ref(group: &GroupRef) -> Value {
    match group {
        GroupRef::Id(id) => json!({ "group_id": id }),
        GroupRef::New(name) => json!({ "group_name": name }),
    }
}

/// The (before, after) pair recorded for a step.
pub fn before_after(step: &PlanStep) -> (Option<Value>, Option<Value>) {
    match step {
        PlanStep::CreateGroup {
            name,
            description,
            permissions,
            ..
        } => (
            None,
            Some(json!({ "name": name, "description": description, "permissions": permissions })),
        ),
        PlanStep::AdoptGroup { name, .. } => (
            Some(json!({ "managed": false, "name": name })),
            Some(json!({ "managed": true, "name": name })),
        ),
        PlanStep::UpdateGroupPermissions {
            before,
            after,
            description_before,
            description_after,
            ..
        } => (
            Some(json!({ "permissions": before, "description": description_before })),
            Some(json!({ "permissions": after, "description": description_after })),
        ),
        PlanStep::CreateUser {
            profile,
            group,
            permissions,
            ..
        } => (
            None,
            Some(
                json!({ "profile": profile, "group": group_ref(group), "permissions": permissions, "active": true }),
            ),
        ),
        PlanStep::AdoptUser {
            resumed_creation, ..
        } => (
            Some(json!({ "managed": false })),
            Some(json!({ "managed": true, "resumed_creation": resumed_creation })),
        ),
        PlanStep::Reactivate { .. } => (
            Some(json!({ "active": false })),
            Some(json!({ "active": true })),
        ),
        PlanStep::RevertEmail { email, found, .. } => (
            Some(json!({ "email_address": found })),
            Some(json!({ "email_address": email })),
        ),
        PlanStep::UpdateUserProfile { before, after, .. } => {
            (Some(json!(before)), Some(json!(after)))
        }
        PlanStep::MoveToGroup {
            from,
            to,
            permissions,
            ..
        } => (
            Some(json!({ "group_id": from })),
            Some(json!({ "group": group_ref(to), "permissions": permissions })),
        ),
        PlanStep::UpdateUserPermissions { before, after, .. } => (
            Some(json!({ "permissions": before })),
            Some(json!({ "permissions": after })),
        ),
        PlanStep::Deactivate { reason, .. } => (
            Some(json!({ "active": true })),
            Some(json!({ "active": false, "reason": reason })),
        ),
        PlanStep::RecordDeactivation { .. } => {
            (None, Some(json!({ "grace_period_started": true })))
        }
        PlanStep::Delete { deactivated_at, .. } => (
            Some(json!({ "active": false, "deactivated_at": deactivated_at })),
            None,
        ),
        PlanStep::ResetAccessKey { .. } => (None, Some(json!({ "access_key": "reset" }))),
        PlanStep::ForgetUser { .. } => (Some(json!({ "managed": true })), None),
        PlanStep::DeleteGroup { name, .. } => (Some(json!({ "name": name })), None),
    }
}

/// The kind a step is audited as: a user this bridge created but whose
/// answer was lost (picked up again as an adoption of a pending creation)
/// is a `create_user`, not an adoption.
pub fn audit_kind(step: &PlanStep) -> &'static str {
    match step {
        PlanStep::AdoptUser {
            resumed_creation: true,
            ..
        } => "create_user",
        other => other.kind(),
    }
}

/// Whether applying the step sends a write to Tyk (and so needs an intent).
fn writes_tyk(step: &PlanStep) -> bool {
    !matches!(
        step,
        PlanStep::AdoptUser { .. }
            | PlanStep::AdoptGroup { .. }
            | PlanStep::RecordDeactivation { .. }
            | PlanStep::ForgetUser { .. }
    )
}

/// The audit entry a step's intent carries (the step's own entry, not yet
/// with a result).
fn intent_entry(step: &PlanStep, ctx: &ApplyContext) -> NewAuditEntry {
    let (before, after) = before_after(step);
    NewAuditEntry {
        run_id: ctx.run_id,
        at: Timestamp::now(),
        actor: ctx.actor.clone(),
        step_kind: audit_kind(step).to_string(),
        org_id: step.org_id().to_string(),
        email: step.email().map(str::to_string),
        tyk_id: step.user_id().map(str::to_string),
        before,
        after,
        event_seqs: ctx.events_for(step.email()),
        rule: step.rule().map(str::to_string),
        ok: false,
        message: Some("intent: about to write to Tyk".into()),
    }
}

impl<W: TykWriter> Applier<'_, W> {
    /// Records intents for these steps; their ids, or the store's error.
    async fn record_intents(
        &self,
        steps: &[&PlanStep],
        ctx: &ApplyContext,
    ) -> Result<Vec<i64>, StoreError> {
        let entries: Vec<NewAuditEntry> = steps
            .iter()
            .filter(|s| writes_tyk(s))
            .map(|s| intent_entry(s, ctx))
            .collect();
        if entries.is_empty() {
            return Ok(vec![]);
        }
        let mut conn = self.store.pool().acquire().await?;
        sync_audit::record_intents(&mut conn, &entries).await
    }

    /// Closes intents once their steps' results are audited. If any step
    /// result of this applier failed to reach the audit log since
    /// `failures_before` (perhaps one of these), they stay open for the
    /// next leader to resolve: one audit row too many, never one missing.
    async fn close_intents(&self, ids: &[i64], failures_before: usize) {
        if ids.is_empty() {
            return;
        }
        if self.audit_failures.load(Ordering::SeqCst) != failures_before {
            tracing::warn!(
                intents = ids.len(),
                "step results missing from the audit log; their intents stay open"
            );
            return;
        }
        let closed = async {
            let mut conn = self.store.pool().acquire().await?;
            sync_audit::close_intents(&mut conn, ids).await
        };
        // Left open, an intent is resolved by the next leader (one more
        // audit row, never a missing one).
        if let Err(e) = closed.await {
            tracing::warn!(error = %e, "could not close audit intents");
        }
    }

    /// One person's steps, their intents recorded before any request and
    /// closed once each step's result is audited. Without intents, nothing
    /// is sent: the person fails for now (their events stay pending).
    pub(super) async fn apply_person_with_intents(
        &self,
        steps: Vec<&PlanStep>,
        users: &BTreeMap<&str, &ActualUser>,
        created: &CreatedGroups,
        ctx: &ApplyContext,
    ) -> ApplyReport {
        let ids = match self.record_intents(&steps, ctx).await {
            Ok(ids) => ids,
            Err(e) => return not_started(&steps, &e),
        };
        let failures_before = self.audit_failures.load(Ordering::SeqCst);
        let report = self.apply_person(steps, users, created, ctx).await;
        self.close_intents(&ids, failures_before).await;
        report
    }

    /// One group step, as [`Self::apply_person_with_intents`] does a
    /// person's: intent, write, audited result, intent closed.
    pub(super) async fn apply_group_step_audited(
        &self,
        step: &PlanStep,
        created: &mut CreatedGroups,
        ctx: &ApplyContext,
        report: &mut ApplyReport,
    ) {
        let ids = match self.record_intents(&[step], ctx).await {
            Ok(ids) => ids,
            Err(e) => {
                self.record_outcome(step, Err(e.into()), ctx, report).await;
                return;
            }
        };
        let failures_before = self.audit_failures.load(Ordering::SeqCst);
        let (result, calls) = self.apply_group_step(step, created, ctx).await;
        report.tyk_writes += calls;
        self.record_outcome(step, result, ctx, report).await;
        self.close_intents(&ids, failures_before).await;
    }
}

/// The report of a person none of whose steps was started.
fn not_started(steps: &[&PlanStep], error: &StoreError) -> ApplyReport {
    let mut report = ApplyReport::default();
    if let Some(first) = steps.first() {
        let line = format!(
            "{} {} {}: cannot record audit intents: {error}",
            first.kind(),
            first.org_id(),
            first.email().unwrap_or_default()
        );
        tracing::warn!(error = %line, "sync steps not started");
        report.failed = steps.len();
        report.errors.push(line);
        if let Some(email) = first.email() {
            report
                .failed_people
                .insert((first.org_id().to_string(), email.to_string()));
        }
    }
    report
}

/// How many open intents one pass of [`resolve_abandoned_intents`] reads.
const INTENTS_PER_PASS: i64 = 100;

/// Resolves the intents runs abandoned between a Tyk request and its
/// result: reads each person's user in Tyk and audits what it found
/// (`ok` when Tyk shows the step applied). Call it with no run in flight
/// (a new leader, taking over). Returns how many it resolved; a failed
/// Tyk read leaves the rest for the next take-over.
pub(crate) async fn resolve_abandoned_intents<W: TykWriter>(
    store: &Store,
    writer: &W,
) -> Result<usize, StoreError> {
    let mut resolved = 0;
    loop {
        let open = {
            let mut conn = store.pool().acquire().await?;
            sync_audit::open_intents(&mut conn, INTENTS_PER_PASS).await?
        };
        if open.is_empty() {
            return Ok(resolved);
        }
        for (id, intent) in open {
            let found = match &intent.email {
                Some(email) => match writer.find_user_by_email(&intent.org_id, email).await {
                    Ok(user) => Some(user),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read Tyk to resolve an audit intent");
                        return Ok(resolved);
                    }
                },
                None => None,
            };
            let entry = resolution(intent, found);
            let mut conn = store.pool().acquire().await?;
            sync_audit::resolve_intent(&mut conn, id, &entry).await?;
            resolved += 1;
        }
    }
}

/// The audit entry resolving an intent, from what Tyk shows: `found` is
/// `None` for a group step (not read back), else the person's user.
pub(crate) fn resolution(
    intent: NewAuditEntry,
    found: Option<Option<ActualUser>>,
) -> NewAuditEntry {
    let (applied, shows, tyk_id) = match &found {
        None => (
            None,
            "nothing read back (the next full reconcile re-plans the group)".to_string(),
            intent.tyk_id.clone(),
        ),
        Some(None) => (
            applied(&intent, None),
            "no such user".to_string(),
            intent.tyk_id.clone(),
        ),
        Some(Some(user)) => (
            applied(&intent, Some(user)),
            json!({
                "id": user.id,
                "active": user.active,
                "group_id": user.group_id,
                "permissions": user.permissions,
            })
            .to_string(),
            Some(user.id.clone()),
        ),
    };
    let verdict = match applied {
        Some(true) => "applied",
        Some(false) => "not applied",
        None => "cannot tell whether it was applied",
    };
    NewAuditEntry {
        at: Timestamp::now(),
        tyk_id,
        ok: applied == Some(true),
        message: Some(format!(
            "resolved after a run abandoned mid-write: {verdict}; Tyk shows {shows}"
        )),
        ..intent
    }
}

/// Whether Tyk shows the intended step, where the user tells.
fn applied(intent: &NewAuditEntry, user: Option<&ActualUser>) -> Option<bool> {
    let after = intent.after.as_ref();
    match intent.step_kind.as_str() {
        "create_user" | "revert_email" => Some(user.is_some()),
        "delete" => Some(user.is_none()),
        "deactivate" => Some(user.is_some_and(|u| !u.active)),
        "reactivate" => Some(user.is_some_and(|u| u.active)),
        "move_to_group" => {
            let wanted = after?.get("group")?.get("group_id")?.as_str()?;
            Some(user.is_some_and(|u| u.group_id.as_deref() == Some(wanted)))
        }
        "update_user_permissions" => {
            let wanted = after?.get("permissions")?;
            Some(user.is_some_and(|u| json!(u.permissions) == *wanted))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::store::StoreOptions;
    use crate::sync::ActualState;
    use crate::sync::apply::ApplyLimits;
    use crate::sync::fake_tyk::FakeTyk;
    use crate::sync::retry::RetryPolicy;
    use crate::sync::step::Plan;
    use crate::sync::writer::{GroupRecord, UserRecord, WriteError};

    const ORG: &str = "org1";

    /// Tyk applies each write, but its answer never comes (the run is
    /// then abandoned, as a kill or a lost lead would).
    struct AnswerNeverComes(Arc<FakeTyk>);

    impl TykWriter for AnswerNeverComes {
        async fn create_group(&self, group: &GroupRecord) -> Result<String, WriteError> {
            self.0.create_group(group).await?;
            std::future::pending().await
        }
        async fn update_group(&self, id: &str, group: &GroupRecord) -> Result<(), WriteError> {
            self.0.update_group(id, group).await?;
            std::future::pending().await
        }
        async fn delete_group(&self, org: &str, id: &str) -> Result<(), WriteError> {
            self.0.delete_group(org, id).await?;
            std::future::pending().await
        }
        async fn create_user(&self, user: &UserRecord) -> Result<String, WriteError> {
            self.0.create_user(user).await?;
            std::future::pending().await
        }
        async fn update_user(&self, id: &str, user: &UserRecord) -> Result<(), WriteError> {
            self.0.update_user(id, user).await?;
            std::future::pending().await
        }
        async fn delete_user(&self, org: &str, id: &str) -> Result<(), WriteError> {
            self.0.delete_user(org, id).await?;
            std::future::pending().await
        }
        async fn reset_user_key(&self, org: &str, id: &str) -> Result<(), WriteError> {
            self.0.reset_user_key(org, id).await?;
            std::future::pending().await
        }
        async fn find_user_by_email(
            &self,
            org: &str,
            email: &str,
        ) -> Result<Option<ActualUser>, WriteError> {
            self.0.find_user_by_email(org, email).await
        }
    }

    async fn sqlite_store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/audit.db", dir.path().display());
        let store = Store::connect(&StoreOptions::new(url))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        (store, dir)
    }

    fn perms(level: &str) -> BTreeMap<String, String> {
        [("apis".to_string(), level.to_string())].into()
    }

    fn user_in(group: &str) -> ActualUser {
        ActualUser {
            id: "u1".into(),
            org_id: ORG.into(),
            email: "ada@x.io".into(),
            first_name: "Ada".into(),
            last_name: "L".into(),
            active: true,
            group_id: Some(group.into()),
            permissions: perms("read"),
            is_admin: false,
        }
    }

    fn move_to(group: &str) -> Plan {
        Plan {
            steps: vec![PlanStep::MoveToGroup {
                org_id: ORG.into(),
                email: "ada@x.io".into(),
                user_id: "u1".into(),
                from: Some("g-old".into()),
                to: GroupRef::Id(group.into()),
                permissions: perms("write"),
                rule: Some("admins".into()),
            }],
            ..Plan::default()
        }
    }

    fn limits() -> ApplyLimits {
        ApplyLimits {
            retry: RetryPolicy {
                max_attempts: 2,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
            },
            max_concurrency: 2,
            requests_per_second: None,
        }
    }

    async fn audit_of(store: &Store, kind: &str) -> Vec<NewAuditEntry> {
        let mut conn = store.pool().acquire().await.expect("conn");
        let filter = sync_audit::AuditFilter {
            step_kind: Some(kind.into()),
            limit: 100,
            ..Default::default()
        };
        sync_audit::list(&mut conn, &filter)
            .await
            .expect("audit")
            .into_iter()
            .map(|e| e.entry)
            .collect()
    }

    async fn open(store: &Store) -> usize {
        let mut conn = store.pool().acquire().await.expect("conn");
        sync_audit::open_intents(&mut conn, 100)
            .await
            .expect("intents")
            .len()
    }

    #[tokio::test]
    async fn a_write_tyk_applied_before_the_run_was_abandoned_is_audited_by_the_next_leader() {
        let (store, _dir) = sqlite_store().await;
        let tyk = Arc::new(FakeTyk::default());
        tyk.add_user(user_in("g-old"));
        let actual = ActualState {
            users: vec![user_in("g-old")],
            groups: vec![],
        };
        let ctx = ApplyContext::new("sync", Timestamp::now());

        let hanging = AnswerNeverComes(tyk.clone());
        let applier = Applier::new(&hanging, &store, limits());
        let abandoned = tokio::time::timeout(
            Duration::from_millis(200),
            applier.apply(&move_to("g-admins"), &actual, &ctx),
        )
        .await;
        assert!(abandoned.is_err(), "the run is abandoned mid-write");
        assert_eq!(tyk.lock().users["u1"].group_id.as_deref(), Some("g-admins"));
        assert!(audit_of(&store, "move_to_group").await.is_empty());
        assert_eq!(open(&store).await, 1, "the intent is left");

        let resolved = resolve_abandoned_intents(&store, &tyk)
            .await
            .expect("resolve");
        assert_eq!(resolved, 1);
        let audited = audit_of(&store, "move_to_group").await;
        assert_eq!(audited.len(), 1, "{audited:?}");
        assert!(audited[0].ok, "Tyk shows the move: {audited:?}");
        assert_eq!(audited[0].tyk_id.as_deref(), Some("u1"));
        let message = audited[0].message.as_deref().unwrap_or_default();
        assert!(message.contains("applied"), "{message}");
        assert!(message.contains("g-admins"), "what Tyk showed: {message}");
        assert_eq!(open(&store).await, 0);
        // Resolved once only.
        assert_eq!(
            resolve_abandoned_intents(&store, &tyk)
                .await
                .expect("again"),
            0
        );
    }

    #[tokio::test]
    async fn an_intent_whose_write_never_reached_tyk_is_audited_as_not_applied() {
        let (store, _dir) = sqlite_store().await;
        let tyk = Arc::new(FakeTyk::default());
        tyk.add_user(user_in("g-old"));
        tyk.lock().max_latency = Duration::from_secs(3600);
        let actual = ActualState {
            users: vec![user_in("g-old")],
            groups: vec![],
        };
        let ctx = ApplyContext::new("sync", Timestamp::now());
        let applier = Applier::new(&tyk, &store, limits());
        let abandoned = tokio::time::timeout(
            Duration::from_millis(100),
            applier.apply(&move_to("g-admins"), &actual, &ctx),
        )
        .await;
        assert!(abandoned.is_err());
        tyk.lock().max_latency = Duration::ZERO;

        resolve_abandoned_intents(&store, &tyk)
            .await
            .expect("resolve");
        let audited = audit_of(&store, "move_to_group").await;
        assert_eq!(audited.len(), 1);
        assert!(!audited[0].ok, "{audited:?}");
        assert!(
            audited[0]
                .message
                .as_deref()
                .unwrap_or_default()
                .contains("not applied")
        );
    }

    #[tokio::test]
    async fn a_finished_run_leaves_no_intent_open() {
        let (store, _dir) = sqlite_store().await;
        let tyk = Arc::new(FakeTyk::default());
        tyk.add_user(user_in("g-old"));
        let actual = ActualState {
            users: vec![user_in("g-old")],
            groups: vec![],
        };
        let ctx = ApplyContext::new("sync", Timestamp::now());
        let report = Applier::new(&tyk, &store, limits())
            .apply(&move_to("g-admins"), &actual, &ctx)
            .await;
        assert_eq!(report.applied, 1, "{report:?}");
        assert_eq!(open(&store).await, 0);
        assert_eq!(audit_of(&store, "move_to_group").await.len(), 1);
    }

    #[tokio::test]
    async fn a_result_the_audit_log_refused_keeps_its_intent_open() {
        let (store, _dir) = sqlite_store().await;
        let tyk = Arc::new(FakeTyk::default());
        tyk.add_user(user_in("g-old"));
        let actual = ActualState {
            users: vec![user_in("g-old")],
            groups: vec![],
        };
        let mut conn = store.pool().acquire().await.expect("conn");
        sqlx::query(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON sync_audit \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .execute(&mut *conn)
        .await
        .expect("trigger");
        drop(conn);
        let ctx = ApplyContext::new("sync", Timestamp::now());
        let report = Applier::new(&tyk, &store, limits())
            .apply(&move_to("g-admins"), &actual, &ctx)
            .await;
        assert_eq!(report.applied, 1, "applied in Tyk: {report:?}");
        assert_eq!(open(&store).await, 1, "no audit row, so the intent stays");

        let mut conn = store.pool().acquire().await.expect("conn");
        sqlx::query("DROP TRIGGER refuse_audit")
            .execute(&mut *conn)
            .await
            .expect("drop trigger");
        drop(conn);
        resolve_abandoned_intents(&store, &tyk)
            .await
            .expect("resolve");
        let audited = audit_of(&store, "move_to_group").await;
        assert_eq!(audited.len(), 1);
        assert!(audited[0].ok);
    }

    #[test]
    fn a_resumed_creation_is_audited_as_a_creation() {
        let resumed = PlanStep::AdoptUser {
            org_id: ORG.into(),
            email: "ada@x.io".into(),
            user_id: "u1".into(),
            rule: None,
            resumed_creation: true,
        };
        assert_eq!(audit_kind(&resumed), "create_user");
        let adopted = PlanStep::AdoptUser {
            org_id: ORG.into(),
            email: "ada@x.io".into(),
            user_id: "u1".into(),
            rule: None,
            resumed_creation: false,
        };
        assert_eq!(audit_kind(&adopted), "adopt_user");
    }
}

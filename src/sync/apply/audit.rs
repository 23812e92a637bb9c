//! What the audit log says about a step: before/after values in a small,
//! readable JSON shape per step kind, and the entry itself.
//!
//! Every step that writes to Tyk is recorded as an *intent* before its
//! first request and the intent closed once the step's result is audited.
//! A run abandoned in between (a kill, a lost lead) leaves the intent; the
//! next leader — or this one, at its next full reconcile, for its own
//! abandoned runs — reads the person's user (or the organisation's groups)
//! in Tyk and audits what it found ([`resolve_abandoned_intents`]), so a
//! change Tyk applied is never missing from the audit log.
//!
//! Intents of steps in flight in this process are never resolved: they are
//! kept in a process-wide set from their recording until their step is
//! done or its future dropped (an abandoned run), see [`InFlight`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Applier, ApplyContext, ApplyReport, CreatedGroups};
use crate::domain::Timestamp;
use crate::store::sync_audit::{self, NewAuditEntry};
use crate::store::{Store, StoreError};
use crate::sync::actual::{ActualGroup, ActualUser};
use crate::sync::step::{GroupRef, PlanStep};
use crate::sync::writer::TykWriter;

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
pub(super) fn writes_tyk(step: &PlanStep) -> bool {
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
pub(super) fn intent_entry(step: &PlanStep, ctx: &ApplyContext) -> NewAuditEntry {
    let (before, after) = before_after(step);
    NewAuditEntry {
        run_id: ctx.run_id,
        at: Timestamp::now(),
        actor: ctx.actor.clone(),
        step_kind: audit_kind(step).to_string(),
        org_id: step.org_id().to_string(),
        email: step.email().map(str::to_string),
        tyk_id: step
            .user_id()
            .or_else(|| group_id_of(step))
            .map(str::to_string),
        before,
        after,
        event_seqs: ctx.events_for(step.email()),
        rule: step.rule().map(str::to_string),
        ok: false,
        message: Some("intent: about to write to Tyk".into()),
    }
}

/// The Tyk id of the existing group a group step writes to.
fn group_id_of(step: &PlanStep) -> Option<&str> {
    match step {
        PlanStep::UpdateGroupPermissions { group_id, .. }
        | PlanStep::DeleteGroup { group_id, .. } => Some(group_id),
        _ => None,
    }
}

/// Intent ids whose steps are in flight in this process (recorded, not yet
/// done). A resolving pass leaves them alone: their run has not been
/// abandoned, it is still writing.
/// Keyed by the database (its URL) and the intent's id there.
static IN_FLIGHT: LazyLock<Mutex<BTreeSet<(String, i64)>>> =
    LazyLock::new(|| Mutex::new(BTreeSet::new()));

fn in_flight() -> std::sync::MutexGuard<'static, BTreeSet<(String, i64)>> {
    IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which database a store's intents live in (stores of one database share it).
fn database_key(store: &Store) -> String {
    store.pool().connect_options().database_url.to_string()
}

/// Marks intents in flight until dropped: when the step is done, or when
/// its run's future is dropped (abandoned), which makes them resolvable.
pub(crate) struct InFlight {
    database: String,
    ids: Vec<i64>,
}

impl InFlight {
    pub(super) fn new(store: &Store, ids: &[i64]) -> Self {
        let database = database_key(store);
        in_flight().extend(ids.iter().map(|id| (database.clone(), *id)));
        Self {
            database,
            ids: ids.to_vec(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut set = in_flight();
        for id in &self.ids {
            set.remove(&(self.database.clone(), *id));
        }
    }
}

impl<W: TykWriter> Applier<'_, W> {
    /// Whether `step` resumes a creation whose `create_user` row is in the
    /// audit log already (a leader resolved the abandoned creation's intent
    /// first): its own row would be a second `create_user` for one user.
    pub(super) async fn creation_audited_already(&self, step: &PlanStep) -> bool {
        let PlanStep::AdoptUser {
            org_id,
            email,
            user_id,
            resumed_creation: true,
            ..
        } = step
        else {
            return false;
        };
        let found = async {
            let mut conn = self.store.pool().acquire().await?;
            sync_audit::creation_audited_since(&mut conn, org_id, email, user_id, Timestamp(0))
                .await
        };
        // In doubt, audit (one row too many, never one missing).
        found.await.unwrap_or(false)
    }

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
        if entries.len() <= sync_audit::INTENTS_PER_STATEMENT {
            let mut conn = self.store.pool().acquire().await?;
            return sync_audit::record_intents(&mut conn, &entries).await;
        }
        let mut tx = self.store.begin().await?;
        let ids = sync_audit::record_intents(&mut tx, &entries).await?;
        tx.commit().await?;
        Ok(ids)
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

    /// One group step: intent, write, audited result, intent closed.
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
        let _in_flight = InFlight::new(self.store, &ids);
        let failures_before = self.audit_failures.load(Ordering::SeqCst);
        let (result, calls) = self.apply_group_step(step, created, ctx).await;
        report.tyk_writes += calls;
        self.record_outcome(step, result, ctx, report).await;
        self.close_intents(&ids, failures_before).await;
    }
}

/// The report of a person none of whose steps was started.
pub(super) fn not_started(steps: &[&PlanStep], error: &str) -> ApplyReport {
    let mut report = ApplyReport::default();
    if let Some(first) = steps.first() {
        let line = format!(
            "{} {} {}: {error}",
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

/// How long an intent of another process must have been open before a
/// leader's periodic pass resolves it (a one-shot command beside the
/// server on SQLite may still be writing); take-over passes wait for none.
pub(crate) const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// What one resolving pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IntentPass {
    pub resolved: usize,
    /// Tyk could not be read: some intents are left for a later pass.
    pub incomplete: bool,
}

/// What Tyk showed for an intent's step.
#[derive(Debug, Clone)]
pub(crate) enum Found {
    /// The person's user (or that Tyk has none).
    User(Option<ActualUser>),
    /// The organisation's groups, read afresh.
    Groups(Vec<ActualGroup>),
    /// Nothing could be read back for this step.
    Nothing,
}

/// Resolves the intents runs abandoned between a Tyk request and its
/// result: reads each person's user (for a group step, the organisation's
/// groups) in Tyk and audits what it found (`ok` when Tyk shows the step
/// applied). Intents of steps in flight in this process are skipped, as
/// are those younger than `min_age`. A failed Tyk read stops the pass
/// (`incomplete`); call again later.
pub(crate) async fn resolve_abandoned_intents<W: TykWriter>(
    store: &Store,
    writer: &W,
    min_age: Duration,
) -> Result<IntentPass, StoreError> {
    let mut pass = IntentPass::default();
    let cutoff = Timestamp::now().0 - i64::try_from(min_age.as_millis()).unwrap_or(i64::MAX);
    let mut after = 0;
    let mut groups: BTreeMap<String, Vec<ActualGroup>> = BTreeMap::new();
    let database = database_key(store);
    loop {
        let open = {
            let mut conn = store.pool().acquire().await?;
            sync_audit::open_intents_after(&mut conn, after, INTENTS_PER_PASS).await?
        };
        let Some((last, _)) = open.last() else {
            return Ok(pass);
        };
        after = *last;
        for (id, intent) in open {
            if in_flight().contains(&(database.clone(), id)) || intent.at.0 > cutoff {
                continue;
            }
            let found = match read_back(writer, &intent, &mut groups).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read Tyk to resolve an audit intent; trying again later");
                    pass.incomplete = true;
                    return Ok(pass);
                }
            };
            let mut tx = store.begin_write().await?;
            if creation_already_audited(&mut tx, &intent, &found).await? {
                // The creation was picked up again (a resumed creation) and
                // audited as `create_user`: one row, not two.
                sync_audit::drop_intent(&mut tx, id).await?;
            } else {
                sync_audit::resolve_intent(&mut tx, id, &resolution(intent, found)).await?;
            }
            tx.commit().await.map_err(StoreError::from)?;
            pass.resolved += 1;
        }
    }
}

/// Reads what Tyk holds for an intent's step (groups once per org a pass).
async fn read_back<W: TykWriter>(
    writer: &W,
    intent: &NewAuditEntry,
    groups: &mut BTreeMap<String, Vec<ActualGroup>>,
) -> Result<Found, crate::sync::writer::WriteError> {
    if let Some(email) = &intent.email {
        return Ok(Found::User(
            writer.find_user_by_email(&intent.org_id, email).await?,
        ));
    }
    if !GROUP_STEPS.contains(&intent.step_kind.as_str()) {
        return Ok(Found::Nothing);
    }
    if let Some(known) = groups.get(&intent.org_id) {
        return Ok(Found::Groups(known.clone()));
    }
    match writer.read_groups(&intent.org_id).await? {
        Some(read) => {
            groups.insert(intent.org_id.clone(), read.clone());
            Ok(Found::Groups(read))
        }
        None => Ok(Found::Nothing),
    }
}

const GROUP_STEPS: [&str; 3] = ["create_group", "update_group_permissions", "delete_group"];

/// Whether an `ok` `create_user` row for this person and the user Tyk
/// shows was audited since the intent was recorded (the creation resumed
/// and audited by a later run).
async fn creation_already_audited(
    conn: &mut sqlx::AnyConnection,
    intent: &NewAuditEntry,
    found: &Found,
) -> Result<bool, StoreError> {
    let (Found::User(Some(user)), "create_user", Some(email)) =
        (found, intent.step_kind.as_str(), &intent.email)
    else {
        return Ok(false);
    };
    sync_audit::creation_audited_since(conn, &intent.org_id, email, &user.id, intent.at).await
}

/// The audit entry resolving an intent, from what Tyk shows.
pub(crate) fn resolution(intent: NewAuditEntry, found: Found) -> NewAuditEntry {
    let (applied, shows, tyk_id) = match &found {
        Found::Nothing => (
            None,
            "nothing read back (the next full reconcile re-plans the group)".to_string(),
            intent.tyk_id.clone(),
        ),
        Found::User(None) => (
            applied(&intent, None),
            "no such user".to_string(),
            intent.tyk_id.clone(),
        ),
        Found::User(Some(user)) => (
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
        Found::Groups(groups) => {
            let group = intent_group(&intent, groups);
            (
                group_applied(&intent, group),
                match group {
                    Some(g) => json!({
                        "id": g.id,
                        "name": g.name,
                        "permissions": g.permissions,
                    })
                    .to_string(),
                    None => "no such group".to_string(),
                },
                group
                    .map(|g| g.id.clone())
                    .or_else(|| intent.tyk_id.clone()),
            )
        }
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

/// The group an intent's step wrote to: by its id when the step had one,
/// else (a creation) by the name it was to get.
fn intent_group<'g>(intent: &NewAuditEntry, groups: &'g [ActualGroup]) -> Option<&'g ActualGroup> {
    match &intent.tyk_id {
        Some(id) => groups.iter().find(|g| &g.id == id),
        None => {
            let name = intent.after.as_ref()?.get("name")?.as_str()?;
            groups.iter().find(|g| g.name == name)
        }
    }
}

/// Whether Tyk's groups show the intended group step.
fn group_applied(intent: &NewAuditEntry, group: Option<&ActualGroup>) -> Option<bool> {
    match intent.step_kind.as_str() {
        "create_group" => Some(group.is_some()),
        "delete_group" => Some(group.is_none()),
        "update_group_permissions" => {
            let wanted = intent.after.as_ref()?.get("permissions")?;
            Some(group.is_some_and(|g| json!(g.permissions) == *wanted))
        }
        _ => None,
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

    use super::super::tests::{perms, sqlite_store};

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

    /// Tyk holding Ada in `g-old`, and the state read from it.
    fn ada_in_the_old_group() -> (Arc<FakeTyk>, ActualState) {
        let tyk = Arc::new(FakeTyk::default());
        tyk.add_user(user_in("g-old"));
        let actual = ActualState {
            users: vec![user_in("g-old")],
            groups: vec![],
        };
        (tyk, actual)
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
        let (tyk, actual) = ada_in_the_old_group();
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

        let resolved = resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
            .await
            .expect("resolve")
            .resolved;
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
            resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
                .await
                .expect("again")
                .resolved,
            0
        );
    }

    #[tokio::test]
    async fn an_intent_whose_write_never_reached_tyk_is_audited_as_not_applied() {
        let (store, _dir) = sqlite_store().await;
        let (tyk, actual) = ada_in_the_old_group();
        tyk.lock().max_latency = Duration::from_secs(3600);
        let ctx = ApplyContext::new("sync", Timestamp::now());
        let applier = Applier::new(&tyk, &store, limits());
        let abandoned = tokio::time::timeout(
            Duration::from_millis(100),
            applier.apply(&move_to("g-admins"), &actual, &ctx),
        )
        .await;
        assert!(abandoned.is_err());
        tyk.lock().max_latency = Duration::ZERO;

        resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
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
        let (tyk, actual) = ada_in_the_old_group();
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
        let (tyk, actual) = ada_in_the_old_group();
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
        resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
            .await
            .expect("resolve");
        let audited = audit_of(&store, "move_to_group").await;
        assert_eq!(audited.len(), 1);
        assert!(audited[0].ok);
    }

    fn create_ada() -> Plan {
        Plan {
            steps: vec![PlanStep::CreateUser {
                org_id: ORG.into(),
                email: "ada@x.io".into(),
                profile: crate::sync::step::Profile {
                    first_name: "Ada".into(),
                    last_name: "L".into(),
                },
                group: GroupRef::Id("g1".into()),
                permissions: perms("read"),
                rule: None,
            }],
            ..Plan::default()
        }
    }

    fn resume_ada(user_id: &str) -> Plan {
        Plan {
            steps: vec![PlanStep::AdoptUser {
                org_id: ORG.into(),
                email: "ada@x.io".into(),
                user_id: user_id.into(),
                rule: None,
                resumed_creation: true,
            }],
            ..Plan::default()
        }
    }

    /// Runs `plan` against a Tyk that applies and never answers, then
    /// abandons the run (drops it).
    async fn abandon(store: &Store, tyk: &Arc<FakeTyk>, plan: &Plan) {
        let hanging = AnswerNeverComes(tyk.clone());
        let applier = Applier::new(&hanging, store, limits());
        let ctx = ApplyContext::new("sync", Timestamp::now());
        let actual = tyk.actual();
        let abandoned = tokio::time::timeout(
            Duration::from_millis(200),
            applier.apply(plan, &actual, &ctx),
        )
        .await;
        assert!(abandoned.is_err(), "abandoned mid-write");
    }

    #[tokio::test]
    async fn intents_in_flight_or_younger_than_the_minimum_age_are_left_alone() {
        let (store, _dir) = sqlite_store().await;
        let (tyk, actual) = ada_in_the_old_group();
        let ctx = ApplyContext::new("sync", Timestamp::now());
        let hanging = AnswerNeverComes(tyk.clone());
        let applier = Applier::new(&hanging, &store, limits());
        let plan = move_to("g-admins");
        {
            let run = applier.apply(&plan, &actual, &ctx);
            tokio::pin!(run);
            // Driven until its write is sent, and still running.
            assert!(
                tokio::time::timeout(Duration::from_millis(200), &mut run)
                    .await
                    .is_err()
            );
            assert_eq!(open(&store).await, 1);
            let pass = resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
                .await
                .expect("pass");
            assert_eq!(pass.resolved, 0, "a step in flight is not abandoned");
            assert!(audit_of(&store, "move_to_group").await.is_empty());
        } // The run is dropped: abandoned.
        let pass = resolve_abandoned_intents(&store, &tyk, ABANDONED_AFTER)
            .await
            .expect("pass");
        assert_eq!(
            pass.resolved, 0,
            "abandoned, but younger than the minimum age"
        );
        let pass = resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
            .await
            .expect("pass");
        assert_eq!(
            pass,
            IntentPass {
                resolved: 1,
                incomplete: false
            }
        );
        assert_eq!(audit_of(&store, "move_to_group").await.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_tyk_read_leaves_the_intent_for_a_later_pass() {
        let (store, _dir) = sqlite_store().await;
        let tyk = Arc::new(FakeTyk::default());
        tyk.add_user(user_in("g-old"));
        abandon(&store, &tyk, &move_to("g-admins")).await;
        tyk.lock()
            .read_faults
            .push_back(crate::sync::fake_tyk::retryable(None));
        let pass = resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
            .await
            .expect("pass");
        assert_eq!(
            pass,
            IntentPass {
                resolved: 0,
                incomplete: true
            }
        );
        assert_eq!(open(&store).await, 1);
        let pass = resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
            .await
            .expect("pass");
        assert_eq!(
            pass,
            IntentPass {
                resolved: 1,
                incomplete: false
            }
        );
        assert!(audit_of(&store, "move_to_group").await[0].ok);
    }

    #[tokio::test]
    async fn an_abandoned_group_creation_is_read_back_and_audited_as_found() {
        let (store, _dir) = sqlite_store().await;
        let tyk = Arc::new(FakeTyk::default());
        let create = Plan {
            steps: vec![PlanStep::CreateGroup {
                org_id: ORG.into(),
                name: "Admins".into(),
                description: None,
                permissions: perms("write"),
            }],
            ..Plan::default()
        };
        abandon(&store, &tyk, &create).await;
        let id = tyk
            .lock()
            .groups
            .keys()
            .next()
            .cloned()
            .expect("created in Tyk");
        resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
            .await
            .expect("pass");
        let audited = audit_of(&store, "create_group").await;
        assert_eq!(audited.len(), 1, "{audited:?}");
        assert!(audited[0].ok, "{audited:?}");
        assert_eq!(audited[0].tyk_id.as_deref(), Some(id.as_str()));
        let message = audited[0].message.as_deref().unwrap_or_default();
        assert!(
            message.contains(": applied;") && message.contains(&id),
            "{message}"
        );

        // A permissions update that never reached Tyk: read back, not applied.
        tyk.lock().max_latency = Duration::from_secs(3600);
        let update = Plan {
            steps: vec![PlanStep::UpdateGroupPermissions {
                org_id: ORG.into(),
                group_id: id.clone(),
                name: "Admins".into(),
                before: perms("write"),
                after: perms("read"),
                description_before: None,
                description_after: None,
            }],
            ..Plan::default()
        };
        let applier = Applier::new(&*tyk, &store, limits());
        let ctx = ApplyContext::new("sync", Timestamp::now());
        let actual = ActualState::default();
        assert!(
            tokio::time::timeout(
                Duration::from_millis(100),
                applier.apply(&update, &actual, &ctx)
            )
            .await
            .is_err()
        );
        tyk.lock().max_latency = Duration::ZERO;
        resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
            .await
            .expect("pass");
        let audited = audit_of(&store, "update_group_permissions").await;
        assert_eq!(audited.len(), 1, "{audited:?}");
        assert!(!audited[0].ok);
        let message = audited[0].message.as_deref().unwrap_or_default();
        assert!(
            message.contains("not applied") && message.contains("write"),
            "{message}"
        );
    }

    async fn resumed_creation_is_one_create_user_row(resolve_first: bool) {
        let (store, _dir) = sqlite_store().await;
        let tyk = Arc::new(FakeTyk::default());
        abandon(&store, &tyk, &create_ada()).await;
        let id = tyk
            .lock()
            .users
            .keys()
            .next()
            .cloned()
            .expect("created in Tyk");
        let resume = || async {
            let report = Applier::new(&tyk, &store, limits())
                .apply(
                    &resume_ada(&id),
                    &ActualState::default(),
                    &ApplyContext::new("sync", Timestamp::now()),
                )
                .await;
            assert_eq!(report.applied, 1, "{report:?}");
        };
        if resolve_first {
            resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
                .await
                .expect("pass");
            resume().await;
        } else {
            resume().await;
            let pass = resolve_abandoned_intents(&store, &tyk, Duration::ZERO)
                .await
                .expect("pass");
            assert_eq!(pass.resolved, 1);
        }
        let rows = audit_of(&store, "create_user").await;
        assert_eq!(rows.len(), 1, "one creation, one row: {rows:?}");
        assert!(rows[0].ok);
        assert_eq!(rows[0].tyk_id.as_deref(), Some(id.as_str()));
        assert!(audit_of(&store, "adopt_user").await.is_empty());
        assert_eq!(open(&store).await, 0);
    }

    #[tokio::test]
    async fn a_resumed_creation_after_its_intent_was_resolved_adds_no_second_row() {
        resumed_creation_is_one_create_user_row(true).await;
    }

    #[tokio::test]
    async fn an_intent_resolved_after_its_creation_resumed_adds_no_second_row() {
        resumed_creation_is_one_create_user_row(false).await;
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

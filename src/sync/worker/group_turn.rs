//! Group writes, serialised briefly: Tyk does not keep group names unique,
//! so two runs planning from views that both lack a group must not both
//! create it. Only the group steps themselves take the worker's
//! `group_writes` turn — not a full reconcile's listing or its people —
//! so a change arriving during a reconcile is neither dropped nor held
//! behind it:
//!
//! - an event run whose plan writes groups takes the turn, re-plans from a
//!   fresh group listing and applies under it (event runs are small);
//! - a full reconcile (or an approval) plans without it and takes it only
//!   for its group steps, dropping the creation of any group this worker
//!   created after the reconcile's listing (an event run got there first)
//!   and pointing its people at that group instead.

use std::collections::BTreeMap;
use std::time::Instant;

use super::SyncWorker;
use super::types::{StateSource, SyncError};
use crate::store::sync_state;
use crate::sync::actual::ActualState;
use crate::sync::apply::{Applier, ApplyContext, ApplyReport};
use crate::sync::step::{GroupRef, Plan, PlanStep};
use crate::sync::writer::TykWriter;

/// Who takes the group-writes turn for a plan's group steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupTurn {
    /// The caller holds it (an event run that re-planned under it).
    Held,
    /// The applier takes it for the group steps; the plan's view of Tyk's
    /// groups was listed after this instant.
    Take { listed_after: Instant },
}

impl GroupTurn {
    /// When the plan's view of Tyk was listed, for a run that listed.
    pub(super) fn listed_after(self) -> Option<Instant> {
        match self {
            GroupTurn::Held => None,
            GroupTurn::Take { listed_after } => Some(listed_after),
        }
    }
}

/// Groups (org, name) → Tyk id.
type GroupIds = BTreeMap<(String, String), String>;

/// Whether a plan writes a group before its people (creation, adoption,
/// permissions): the steps the turn serialises. Deletions come last and
/// are left to the "Group ID does not exist" retry.
pub(super) fn writes_groups(plan: &Plan) -> bool {
    plan.steps.iter().any(is_leading_group_step)
}

fn is_leading_group_step(step: &PlanStep) -> bool {
    step.email().is_none() && !matches!(step, PlanStep::DeleteGroup { .. })
}

impl<W: TykWriter, S: StateSource> SyncWorker<W, S> {
    /// Applies `plan`: its group steps first, under the group-writes turn
    /// (see the module documentation), then its people and deletions.
    pub(super) async fn apply_plan(
        &self,
        plan: &Plan,
        actual: &ActualState,
        context: &ApplyContext,
        turn: GroupTurn,
    ) -> ApplyReport {
        let applier = Applier::new(&self.writer, &self.store, self.config.limits());
        if !writes_groups(plan) {
            return applier.apply(plan, actual, context).await;
        }
        let (mut group_steps, mut rest): (Vec<PlanStep>, Vec<PlanStep>) =
            plan.steps.iter().cloned().partition(is_leading_group_step);
        let held = match turn {
            GroupTurn::Held => None,
            GroupTurn::Take { .. } => Some(self.group_writes.lock().await),
        };
        if let GroupTurn::Take { listed_after } = turn {
            let since = self.groups_created_since(listed_after);
            let before = group_steps.len();
            group_steps.retain(|s| match s {
                PlanStep::CreateGroup { org_id, name, .. } => {
                    !since.contains_key(&(org_id.clone(), name.clone()))
                }
                _ => true,
            });
            if group_steps.len() != before {
                tracing::info!(
                    groups = before - group_steps.len(),
                    "groups created meanwhile by an event run are not created again"
                );
            }
            point_at_existing(&mut rest, &since);
        }
        let known = self.managed_groups().await;
        let group_plan = Plan {
            steps: group_steps,
            skipped: Vec::new(),
        };
        let mut report = applier.apply(&group_plan, actual, context).await;
        // Unreadable records leave the references unresolved: those people
        // fail ("group was not created") and their events are retried.
        let created: GroupIds = match (known, self.managed_groups().await) {
            (Ok(known), Ok(now_known)) => now_known
                .into_iter()
                .filter(|(key, id)| known.get(key) != Some(id))
                .collect(),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read the managed groups after writing groups");
                GroupIds::new()
            }
        };
        self.note_groups_created(&created);
        drop(held);
        self.source.groups_changed();
        point_at_existing(&mut rest, &created);
        let people = Plan {
            steps: rest,
            skipped: plan.skipped.clone(),
        };
        report.merge(applier.apply(&people, actual, context).await);
        report
    }

    async fn managed_groups(&self) -> Result<GroupIds, SyncError> {
        let mut conn = self.store.acquire().await?;
        Ok(sync_state::list_groups(&mut conn)
            .await?
            .into_iter()
            .map(|g| ((g.org_id, g.name), g.tyk_group_id))
            .collect())
    }

    fn note_groups_created(&self, created: &GroupIds) {
        if created.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut recent = self
            .groups_created
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // A reconcile older than an hour has long finished.
        recent.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 3600);
        for (key, id) in created {
            recent.insert(key.clone(), (id.clone(), now));
        }
    }

    /// The groups this worker created (or adopted) after `instant`.
    pub(super) fn groups_created_since(&self, instant: Instant) -> GroupIds {
        self.groups_created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (_, at))| *at >= instant)
            .map(|(key, (id, _))| (key.clone(), id.clone()))
            .collect()
    }
}

/// Rewrites references to a group "created earlier in this plan" into the
/// Tyk id of a group that now exists.
fn point_at_existing(steps: &mut [PlanStep], groups: &GroupIds) {
    if groups.is_empty() {
        return;
    }
    for step in steps {
        let (org_id, group) = match step {
            PlanStep::CreateUser { org_id, group, .. } => (org_id.clone(), group),
            PlanStep::MoveToGroup { org_id, to, .. } => (org_id.clone(), to),
            _ => continue,
        };
        if let GroupRef::New(name) = group
            && let Some(id) = groups.get(&(org_id, name.clone()))
        {
            *group = GroupRef::Id(id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::step::Profile;

    fn create_user(group: GroupRef) -> PlanStep {
        PlanStep::CreateUser {
            org_id: "org".into(),
            email: "ada@example.org".into(),
            profile: Profile {
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
            },
            group,
            permissions: Default::default(),
            rule: None,
        }
    }

    #[test]
    fn references_to_a_group_now_existing_become_its_id() {
        let mut steps = vec![
            create_user(GroupRef::New("Ops".into())),
            create_user(GroupRef::New("Other".into())),
            create_user(GroupRef::Id("g0".into())),
        ];
        let groups = GroupIds::from([(("org".into(), "Ops".into()), "g1".to_string())]);
        point_at_existing(&mut steps, &groups);
        let refs: Vec<GroupRef> = steps
            .into_iter()
            .map(|s| match s {
                PlanStep::CreateUser { group, .. } => group,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            refs,
            vec![
                GroupRef::Id("g1".into()),
                GroupRef::New("Other".into()),
                GroupRef::Id("g0".into())
            ]
        );
    }
}

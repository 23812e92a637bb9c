//! Planning for "just the affected people": the event-driven path plans the
//! people named by outbox events with the same planner, on inputs narrowed
//! to their e-mails. Groups stay in full so group references resolve; group
//! deletions are left to the full reconcile (a narrowed view cannot tell
//! whether a group is empty).

use std::collections::BTreeSet;

use super::actual::ActualState;
use super::ownership::{Ownership, SyncPolicy};
use super::plan::plan;
use super::step::{Plan, PlanStep, SkipReason};
use crate::domain::{DesiredState, Timestamp};

/// Keeps only the users (desired, actual and managed) whose e-mail key
/// (`domain::fold_key`) is in `emails`, in every org; groups are kept whole.
pub fn restrict_to_people(
    desired: &DesiredState,
    actual: &ActualState,
    ownership: &Ownership,
    emails: &BTreeSet<String>,
) -> (DesiredState, ActualState, Ownership) {
    let wanted = |email: &str| emails.contains(&crate::domain::fold_key(email));
    // Users we manage under a wanted e-mail, whatever e-mail Tyk shows now.
    let managed_ids: BTreeSet<&str> = ownership
        .users
        .values()
        .filter(|m| wanted(&m.email))
        .map(|m| m.tyk_user_id.as_str())
        .collect();
    let desired = DesiredState {
        groups: desired.groups.clone(),
        users: desired
            .users
            .iter()
            .filter(|u| wanted(&u.email))
            .cloned()
            .collect(),
    };
    let actual = ActualState {
        groups: actual.groups.clone(),
        users: actual
            .users
            .iter()
            .filter(|u| wanted(&u.email) || managed_ids.contains(u.id.as_str()))
            .cloned()
            .collect(),
    };
    let ownership = Ownership {
        groups: ownership.groups.clone(),
        users: ownership
            .users
            .iter()
            .filter(|(_, m)| wanted(&m.email))
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect(),
        pending_creates: ownership
            .pending_creates
            .iter()
            .filter(|(_, email)| wanted(email))
            .cloned()
            .collect(),
        pending_group_creates: ownership.pending_group_creates.clone(),
    };
    (desired, actual, ownership)
}

/// The plan for the given people only (see the module documentation).
pub fn plan_for_people(
    desired: &DesiredState,
    actual: &ActualState,
    ownership: &Ownership,
    policy: &SyncPolicy,
    now: Timestamp,
    emails: &BTreeSet<String>,
) -> Plan {
    let (desired, actual, ownership) = restrict_to_people(desired, actual, ownership, emails);
    let mut plan = plan(&desired, &actual, &ownership, policy, now);
    plan.steps
        .retain(|s| !matches!(s, PlanStep::DeleteGroup { .. }));
    plan.skipped
        .retain(|s| s.reason != SkipReason::GroupStillHasMembers);
    plan
}

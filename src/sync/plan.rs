//! The planner: desired state (from the mapping) + actual state (from Tyk) +
//! ownership (from our store) → an ordered [`Plan`]. Pure: no I/O, no clock
//! (the caller passes `now`), deterministic for equal inputs.
//!
//! Safety rules, in order of importance:
//! - a Tyk administrator (`IsAdmin` or an empty permission map) is never
//!   changed, even when we manage it;
//! - a Tyk user we do not manage is never changed, unless `adopt_existing`
//!   is on and an active desired person has its e-mail (then `AdoptUser`
//!   comes first and is audited);
//! - no user is ever created with an empty or admin permission map, and no
//!   e-mail that already exists in the org is created again;
//! - deprovisioning deactivates first; deletion only under the `delete`
//!   policy, once the grace period since deactivation has passed, and in a
//!   later run than the deactivation;
//! - a managed group nobody wants is deleted only when no Tyk user at all is
//!   left in it after the plan (unmanaged groups are never deleted).

use std::collections::{BTreeMap, BTreeSet};

use super::actual::{ActualGroup, ActualState, ActualUser};
use super::ownership::{Ownership, SyncPolicy};
use super::step::{
    DeprovisionReason, GroupRef, Permissions, Plan, PlanStep, Profile, SkipReason, Skipped,
};
use crate::domain::{DesiredState, DesiredUser, Timestamp, fold_key};

type OrgKey = (String, String);

mod groups;

/// Computes the plan. See the module documentation for the rules.
pub fn plan(
    desired: &DesiredState,
    actual: &ActualState,
    ownership: &Ownership,
    policy: &SyncPolicy,
    now: Timestamp,
) -> Plan {
    let mut planner = Planner::new(actual, ownership, policy, now);
    let targets = planner.plan_groups(&desired.groups);
    planner.plan_forgotten_users();
    let mut desired_people = BTreeSet::new();
    for user in &desired.users {
        let key = (user.org_id.clone(), fold_key(&user.email));
        if crate::domain::email::validate(&key.1).is_err() {
            // The mapping never wants such a person; should one get here
            // all the same, no Tyk user is ever created or changed with it.
            planner.skip(&key.0, &key.1, SkipReason::InvalidEmail);
            continue;
        }
        if desired_people.insert(key.clone()) {
            planner.plan_desired_person(&key, user, &targets);
        }
    }
    planner.plan_departures(&desired_people);
    planner.plan_group_deletions(&desired.groups);
    planner.finish()
}

/// Where a desired group's members go, and with which permissions.
#[derive(Debug, Clone)]
struct GroupTarget {
    group: GroupRef,
    permissions: Permissions,
}

struct Planner<'a> {
    actual_users: BTreeMap<OrgKey, Vec<&'a ActualUser>>,
    actual_groups: &'a [ActualGroup],
    actual_user_ids: BTreeSet<&'a str>,
    ownership: &'a Ownership,
    policy: &'a SyncPolicy,
    now: Timestamp,
    group_steps: Vec<PlanStep>,
    person_steps: BTreeMap<OrgKey, Vec<PlanStep>>,
    trailing_steps: Vec<PlanStep>,
    skipped: Vec<Skipped>,
}

impl<'a> Planner<'a> {
    fn new(
        actual: &'a ActualState,
        ownership: &'a Ownership,
        policy: &'a SyncPolicy,
        now: Timestamp,
    ) -> Self {
        // A user we manage is keyed by the e-mail we manage it under (its
        // Tyk id is what identifies it): an e-mail changed in Tyk by hand
        // is reverted, not taken for another person.
        let mut actual_users: BTreeMap<OrgKey, Vec<&ActualUser>> = BTreeMap::new();
        for user in &actual.users {
            let email = match ownership.users.get(&user.id) {
                Some(managed) if managed.org_id == user.org_id => fold_key(&managed.email),
                _ => fold_key(&user.email),
            };
            actual_users
                .entry((user.org_id.clone(), email))
                .or_default()
                .push(user);
        }
        Self {
            actual_users,
            actual_groups: &actual.groups,
            actual_user_ids: actual.users.iter().map(|u| u.id.as_str()).collect(),
            ownership,
            policy,
            now,
            group_steps: Vec::new(),
            person_steps: BTreeMap::new(),
            trailing_steps: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn finish(self) -> Plan {
        let mut steps = self.group_steps;
        steps.extend(self.person_steps.into_values().flatten());
        steps.extend(self.trailing_steps);
        Plan {
            steps,
            skipped: self.skipped,
        }
    }

    fn skip(&mut self, org_id: &str, subject: &str, reason: SkipReason) {
        self.skipped.push(Skipped {
            org_id: org_id.to_string(),
            subject: subject.to_string(),
            reason,
        });
    }

    fn push_person_step(&mut self, key: &OrgKey, step: PlanStep) {
        self.person_steps.entry(key.clone()).or_default().push(step);
    }

    /// Managed users whose Tyk record is gone: forget them first, so that the
    /// person can be created afresh.
    fn plan_forgotten_users(&mut self) {
        let gone: Vec<_> = self
            .ownership
            .users
            .values()
            .filter(|m| !self.actual_user_ids.contains(m.tyk_user_id.as_str()))
            .cloned()
            .collect();
        for managed in gone {
            let key = (managed.org_id.clone(), fold_key(&managed.email));
            self.push_person_step(
                &key,
                PlanStep::ForgetUser {
                    org_id: managed.org_id,
                    email: key.1.clone(),
                    user_id: managed.tyk_user_id,
                },
            );
        }
    }

    /// The Tyk user with that e-mail, preferring one we manage.
    fn find_user(&self, key: &OrgKey) -> Option<&'a ActualUser> {
        let candidates = self.actual_users.get(key)?;
        candidates
            .iter()
            .find(|u| self.ownership.manages_user(&u.id))
            .or(candidates.first())
            .copied()
    }

    fn plan_desired_person(
        &mut self,
        key: &OrgKey,
        user: &DesiredUser,
        targets: &BTreeMap<OrgKey, GroupTarget>,
    ) {
        let target = user
            .group
            .as_ref()
            .and_then(|name| targets.get(&(user.org_id.clone(), name.clone())));
        let Some(existing) = self.find_user(key) else {
            if !user.active {
                return;
            }
            match target {
                Some(target) => self.push_person_step(key, create_user(key, user, target)),
                None => self.skip(&key.0, &key.1, SkipReason::NoUsableGroup),
            }
            return;
        };
        if existing.is_admin {
            return self.skip(&key.0, &key.1, SkipReason::Admin);
        }
        if !self.ownership.manages_user(&existing.id) {
            let resumed_creation = self.ownership.creation_pending(&key.0, &key.1);
            let adoptable = self.policy.adopt_existing && user.active;
            if !(resumed_creation || adoptable) {
                return self.skip(&key.0, &key.1, SkipReason::UnmanagedUser);
            }
            self.push_person_step(
                key,
                PlanStep::AdoptUser {
                    org_id: key.0.clone(),
                    email: key.1.clone(),
                    user_id: existing.id.clone(),
                    rule: user.rule.clone(),
                    resumed_creation,
                },
            );
        }
        if !user.active {
            return self.deprovision(key, existing, DeprovisionReason::InactiveInSource);
        }
        match target {
            Some(target) => self.converge_active(key, existing, user, target),
            None => self.skip(&key.0, &key.1, SkipReason::NoUsableGroup),
        }
    }

    fn converge_active(
        &mut self,
        key: &OrgKey,
        existing: &ActualUser,
        user: &DesiredUser,
        target: &GroupTarget,
    ) {
        let ids = (key.0.clone(), key.1.clone(), existing.id.clone());
        if fold_key(&existing.email) != key.1 {
            self.push_person_step(
                key,
                PlanStep::RevertEmail {
                    org_id: ids.0.clone(),
                    email: ids.1.clone(),
                    user_id: ids.2.clone(),
                    found: existing.email.clone(),
                },
            );
        }
        if !existing.active {
            self.push_person_step(
                key,
                PlanStep::Reactivate {
                    org_id: ids.0.clone(),
                    email: ids.1.clone(),
                    user_id: ids.2.clone(),
                },
            );
        }
        let before = Profile {
            first_name: existing.first_name.clone(),
            last_name: existing.last_name.clone(),
        };
        let after = Profile {
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
        };
        if before != after {
            self.push_person_step(
                key,
                PlanStep::UpdateUserProfile {
                    org_id: ids.0.clone(),
                    email: ids.1.clone(),
                    user_id: ids.2.clone(),
                    before,
                    after,
                },
            );
        }
        let in_target =
            matches!(&target.group, GroupRef::Id(id) if existing.group_id.as_deref() == Some(id));
        if !in_target {
            self.push_person_step(
                key,
                PlanStep::MoveToGroup {
                    org_id: ids.0,
                    email: ids.1,
                    user_id: ids.2,
                    from: existing.group_id.clone(),
                    to: target.group.clone(),
                    permissions: target.permissions.clone(),
                    rule: user.rule.clone(),
                },
            );
        } else if !permissions_match(&existing.permissions, &target.permissions) {
            self.push_person_step(
                key,
                PlanStep::UpdateUserPermissions {
                    org_id: ids.0,
                    email: ids.1,
                    user_id: ids.2,
                    before: existing.permissions.clone(),
                    after: target.permissions.clone(),
                },
            );
        }
    }

    fn deprovision(&mut self, key: &OrgKey, existing: &ActualUser, reason: DeprovisionReason) {
        let (org_id, email, user_id) = (key.0.clone(), key.1.clone(), existing.id.clone());
        let managed = self.ownership.users.get(&existing.id);
        let deactivated_at = managed.and_then(|m| m.deactivated_at);
        // A deactivated Dashboard user's API key still works: reset it once
        // per deactivation (again after a failed reset).
        let key_reset_due = self.policy.reset_access_key
            && managed.is_some_and(|m| match (m.access_key_reset_at, m.deactivated_at) {
                (None, _) => true,
                (Some(reset), Some(deactivated)) => reset < deactivated,
                (Some(_), None) => false,
            });
        let reset_key = PlanStep::ResetAccessKey {
            org_id: org_id.clone(),
            email: email.clone(),
            user_id: user_id.clone(),
        };
        let step = match (existing.active, deactivated_at) {
            (true, _) => PlanStep::Deactivate {
                org_id,
                email,
                user_id,
                reason,
            },
            (false, None) => PlanStep::RecordDeactivation {
                org_id,
                email,
                user_id,
            },
            (false, Some(at)) if self.policy.delete_due(at, self.now) => PlanStep::Delete {
                org_id,
                email,
                user_id,
                deactivated_at: at.0,
            },
            (false, Some(_)) if key_reset_due => reset_key.clone(),
            (false, Some(_)) => return,
        };
        let then_reset = key_reset_due
            && matches!(
                step,
                PlanStep::Deactivate { .. } | PlanStep::RecordDeactivation { .. }
            );
        self.push_person_step(key, step);
        if then_reset {
            self.push_person_step(key, reset_key);
        }
    }

    /// Managed Tyk users no desired person matches.
    fn plan_departures(&mut self, desired_people: &BTreeSet<OrgKey>) {
        let departed: Vec<(OrgKey, &ActualUser)> = self
            .actual_users
            .iter()
            .filter(|(key, _)| !desired_people.contains(*key))
            .flat_map(|(key, users)| users.iter().map(move |u| (key.clone(), *u)))
            .filter(|(key, u)| {
                self.ownership.manages_user(&u.id)
                    || self.ownership.creation_pending(&key.0, &key.1)
            })
            .collect();
        for (key, user) in departed {
            if user.is_admin {
                self.skip(&key.0, &key.1, SkipReason::Admin);
                continue;
            }
            if !self.ownership.manages_user(&user.id) {
                // Created by us just before a crash, and gone from the
                // sources since: ours to deprovision.
                self.push_person_step(
                    &key,
                    PlanStep::AdoptUser {
                        org_id: key.0.clone(),
                        email: key.1.clone(),
                        user_id: user.id.clone(),
                        rule: None,
                        resumed_creation: true,
                    },
                );
            }
            self.deprovision(&key, user, DeprovisionReason::NotDesired);
        }
    }
}

fn create_user(key: &OrgKey, user: &DesiredUser, target: &GroupTarget) -> PlanStep {
    PlanStep::CreateUser {
        org_id: key.0.clone(),
        email: key.1.clone(),
        profile: Profile {
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
        },
        group: target.group.clone(),
        permissions: target.permissions.clone(),
        rule: user.rule.clone(),
    }
}

/// A permission map we may give a group or user: not empty (empty means
/// admin in Tyk) and without the admin-only keys.
pub fn permissions_usable(permissions: &Permissions) -> bool {
    !permissions.is_empty()
        && !permissions.contains_key("IsAdmin")
        && !permissions.contains_key("ResetPassword")
}

/// Tyk materialises a group's permissions on its members, possibly without
/// the `deny` entries; both forms count as in step.
pub fn permissions_match(user: &Permissions, group: &Permissions) -> bool {
    user == group
        || user
            .iter()
            .eq(group.iter().filter(|(_, level)| level.as_str() != "deny"))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

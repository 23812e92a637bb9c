//! The planner's group half: which Tyk group each desired group maps to
//! (created, adopted, updated or used as it is), and which managed groups
//! nobody wants any more can be deleted.

use std::collections::{BTreeMap, BTreeSet};

use super::{GroupTarget, OrgKey, Planner, permissions_usable};
use crate::domain::DesiredGroup;
use crate::sync::actual::ActualGroup;
use crate::sync::step::{GroupRef, PlanStep, SkipReason};

impl<'a> Planner<'a> {
    /// The existing group of that name, preferring one we manage.
    fn find_group(&self, org_id: &str, name: &str) -> Option<&'a ActualGroup> {
        let mut candidates = self
            .actual_groups
            .iter()
            .filter(|g| g.org_id == org_id && g.name == name);
        let first = candidates.clone().next();
        candidates
            .find(|g| self.ownership.manages_group(&g.id))
            .or(first)
    }

    pub(super) fn plan_groups(
        &mut self,
        desired: &[DesiredGroup],
    ) -> BTreeMap<OrgKey, GroupTarget> {
        let mut targets = BTreeMap::new();
        for group in desired {
            let key = (group.org_id.clone(), group.name.clone());
            if targets.contains_key(&key) {
                continue;
            }
            if let Some(target) = self.plan_group(group) {
                targets.insert(key, target);
            }
        }
        targets
    }

    fn plan_group(&mut self, group: &DesiredGroup) -> Option<GroupTarget> {
        let wanted_valid = permissions_usable(&group.permissions);
        if !wanted_valid {
            self.skip(
                &group.org_id,
                &group.name,
                SkipReason::GroupPermissionsInvalid,
            );
        }
        let Some(existing) = self.find_group(&group.org_id, &group.name) else {
            if !wanted_valid {
                return None;
            }
            self.group_steps.push(PlanStep::CreateGroup {
                org_id: group.org_id.clone(),
                name: group.name.clone(),
                description: group.description.clone(),
                permissions: group.permissions.clone(),
            });
            return Some(GroupTarget {
                group: GroupRef::New(group.name.clone()),
                permissions: group.permissions.clone(),
            });
        };
        let mut managed = self.ownership.manages_group(&existing.id);
        let resumed = self
            .ownership
            .group_creation_pending(&group.org_id, &group.name);
        if !managed && wanted_valid && (self.policy.adopt_existing || resumed) {
            self.group_steps.push(PlanStep::AdoptGroup {
                org_id: group.org_id.clone(),
                group_id: existing.id.clone(),
                name: group.name.clone(),
            });
            managed = true;
        }
        if managed && wanted_valid {
            self.update_group_if_drifted(existing, group);
            return Some(GroupTarget {
                group: GroupRef::Id(existing.id.clone()),
                permissions: group.permissions.clone(),
            });
        }
        if !managed && wanted_valid && existing.permissions != group.permissions {
            self.skip(
                &group.org_id,
                &group.name,
                SkipReason::UnmanagedGroupDiffers,
            );
        }
        // Used as it is; members get the group's own permissions.
        permissions_usable(&existing.permissions).then(|| GroupTarget {
            group: GroupRef::Id(existing.id.clone()),
            permissions: existing.permissions.clone(),
        })
    }

    fn update_group_if_drifted(&mut self, existing: &ActualGroup, group: &DesiredGroup) {
        let description_before = non_empty(&existing.description);
        let description_after = non_empty(&group.description);
        if existing.permissions == group.permissions && description_before == description_after {
            return;
        }
        self.group_steps.push(PlanStep::UpdateGroupPermissions {
            org_id: group.org_id.clone(),
            group_id: existing.id.clone(),
            name: group.name.clone(),
            before: existing.permissions.clone(),
            after: group.permissions.clone(),
            description_before,
            description_after,
        });
    }

    /// Managed groups no longer desired, deleted once nobody is left in them.
    pub(super) fn plan_group_deletions(&mut self, desired: &[DesiredGroup]) {
        let wanted: BTreeSet<(&str, &str)> = desired
            .iter()
            .map(|g| (g.org_id.as_str(), g.name.as_str()))
            .collect();
        let leaving = self.users_leaving_their_group();
        for group in self.actual_groups {
            if !self.ownership.manages_group(&group.id)
                || wanted.contains(&(group.org_id.as_str(), group.name.as_str()))
            {
                continue;
            }
            let still_in = self.actual_users.values().flatten().any(|u| {
                u.group_id.as_deref() == Some(group.id.as_str()) && !leaving.contains(u.id.as_str())
            });
            if still_in {
                self.skip(&group.org_id, &group.name, SkipReason::GroupStillHasMembers);
                continue;
            }
            self.trailing_steps.push(PlanStep::DeleteGroup {
                org_id: group.org_id.clone(),
                group_id: group.id.clone(),
                name: group.name.clone(),
            });
        }
    }

    fn users_leaving_their_group(&self) -> BTreeSet<String> {
        self.person_steps
            .values()
            .flatten()
            .filter(|s| matches!(s, PlanStep::MoveToGroup { .. } | PlanStep::Delete { .. }))
            .filter_map(|s| s.user_id().map(str::to_string))
            .collect()
    }
}

fn non_empty(text: &Option<String>) -> Option<String> {
    text.as_ref().filter(|t| !t.is_empty()).cloned()
}

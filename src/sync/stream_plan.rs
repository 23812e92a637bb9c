//! The full reconcile, planned window by window as Tyk's listing streams
//! in: each window of listed users is planned on its own (the people in it,
//! with every group), and only the steps — and the users they change — are
//! kept, so memory is bounded by a window of pages plus the plan, not the
//! whole listing. A last pass plans what no window showed (people to
//! create, managed users Tyk no longer has), the groups, and the group
//! deletions (from the groups the listed users stay in). The result is the
//! plan [`plan`] makes from the whole listing, in another order of people;
//! the guard then judges it whole, as before.

use std::collections::{BTreeMap, BTreeSet};

use super::actual::{ActualGroup, ActualState, ActualUser};
use super::ownership::{Ownership, SyncPolicy};
use super::plan::plan;
use super::step::{Plan, PlanStep, Skipped};
use crate::domain::{DesiredState, DesiredUser, Timestamp};

type OrgKey = (String, String);

pub struct StreamedPlanner<'a> {
    desired: &'a DesiredState,
    by_email: BTreeMap<String, Vec<&'a DesiredUser>>,
    ownership: &'a Ownership,
    policy: &'a SyncPolicy,
    now: Timestamp,
    groups: Vec<ActualGroup>,
    person_steps: Vec<PlanStep>,
    skipped: Vec<Skipped>,
    /// Users some step changes (the applier re-sends them whole).
    kept: Vec<ActualUser>,
    /// People planned in a window (their key as the planner sees them).
    seen_people: BTreeSet<OrgKey>,
    seen_ids: BTreeSet<String>,
    /// Groups some listed user stays in after the plan.
    in_use: BTreeSet<String>,
    users_listed: usize,
}

impl<'a> StreamedPlanner<'a> {
    pub fn new(
        desired: &'a DesiredState,
        groups: Vec<ActualGroup>,
        ownership: &'a Ownership,
        policy: &'a SyncPolicy,
        now: Timestamp,
    ) -> Self {
        let mut by_email: BTreeMap<String, Vec<&DesiredUser>> = BTreeMap::new();
        for user in &desired.users {
            by_email
                .entry(crate::domain::fold_key(&user.email))
                .or_default()
                .push(user);
        }
        Self {
            desired,
            by_email,
            ownership,
            policy,
            now,
            groups,
            person_steps: Vec::new(),
            skipped: Vec::new(),
            kept: Vec::new(),
            seen_people: BTreeSet::new(),
            seen_ids: BTreeSet::new(),
            in_use: BTreeSet::new(),
            users_listed: 0,
        }
    }

    /// The key a listed user is planned under: the e-mail we manage it
    /// under when it is ours (the Tyk id is what identifies it).
    fn key(&self, user: &ActualUser) -> OrgKey {
        match self.ownership.users.get(&user.id) {
            Some(m) if m.org_id == user.org_id => {
                (user.org_id.clone(), crate::domain::fold_key(&m.email))
            }
            _ => (user.org_id.clone(), crate::domain::fold_key(&user.email)),
        }
    }

    /// Plans the people of one window of listed users.
    pub fn window(&mut self, users: Vec<ActualUser>) {
        self.users_listed += users.len();
        let keys: BTreeSet<OrgKey> = users.iter().map(|u| self.key(u)).collect();
        let emails: BTreeSet<&str> = keys.iter().map(|(_, e)| e.as_str()).collect();
        let desired = DesiredState {
            groups: self.desired.groups.clone(),
            users: emails
                .iter()
                .flat_map(|e| self.by_email.get(*e).into_iter().flatten())
                .filter(|u| keys.contains(&(u.org_id.clone(), crate::domain::fold_key(&u.email))))
                .map(|u| (*u).clone())
                .collect(),
        };
        let ids: BTreeSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let ownership = Ownership {
            users: self
                .ownership
                .users
                .iter()
                .filter(|(id, _)| ids.contains(id.as_str()))
                .map(|(id, m)| (id.clone(), m.clone()))
                .collect(),
            groups: self.ownership.groups.clone(),
            pending_creates: self
                .ownership
                .pending_creates
                .iter()
                .filter(|k| keys.contains(*k))
                .cloned()
                .collect(),
            pending_group_creates: self.ownership.pending_group_creates.clone(),
        };
        let actual = ActualState {
            users,
            groups: self.groups.clone(),
        };
        let planned = plan(&desired, &actual, &ownership, self.policy, self.now);
        let changed: BTreeSet<&str> = planned.steps.iter().filter_map(|s| s.user_id()).collect();
        let leaving: BTreeSet<&str> = planned
            .steps
            .iter()
            .filter(|s| matches!(s, PlanStep::MoveToGroup { .. } | PlanStep::Delete { .. }))
            .filter_map(|s| s.user_id())
            .collect();
        for user in &actual.users {
            if let Some(group) = &user.group_id
                && !leaving.contains(user.id.as_str())
            {
                self.in_use.insert(group.clone());
            }
            self.seen_ids.insert(user.id.clone());
        }
        self.kept.extend(
            actual
                .users
                .iter()
                .filter(|u| changed.contains(u.id.as_str()))
                .cloned(),
        );
        self.person_steps
            .extend(planned.steps.into_iter().filter(|s| s.email().is_some()));
        self.skipped.extend(
            planned
                .skipped
                .into_iter()
                .filter(|s| keys.contains(&(s.org_id.clone(), s.subject.clone()))),
        );
        self.seen_people.extend(keys);
    }

    /// Users listed so far.
    pub fn users_listed(&self) -> usize {
        self.users_listed
    }

    /// The whole plan, and the listed users it changes.
    pub fn finish(mut self) -> (Plan, ActualState) {
        let unseen_desired: Vec<DesiredUser> = self
            .desired
            .users
            .iter()
            .filter(|u| {
                !self
                    .seen_people
                    .contains(&(u.org_id.clone(), crate::domain::fold_key(&u.email)))
            })
            .cloned()
            .collect();
        let unseen_keys: BTreeSet<OrgKey> = unseen_desired
            .iter()
            .map(|u| (u.org_id.clone(), crate::domain::fold_key(&u.email)))
            .collect();
        let ownership = Ownership {
            users: self
                .ownership
                .users
                .iter()
                .filter(|(id, _)| !self.seen_ids.contains(*id))
                .map(|(id, m)| (id.clone(), m.clone()))
                .collect(),
            groups: self.ownership.groups.clone(),
            pending_creates: self
                .ownership
                .pending_creates
                .iter()
                .filter(|k| unseen_keys.contains(*k))
                .cloned()
                .collect(),
            pending_group_creates: self.ownership.pending_group_creates.clone(),
        };
        // Stand-ins for the listed users, so that group deletion sees who
        // stays in which group (never planned: no e-mail anyone wants).
        let members: Vec<ActualUser> = self
            .in_use
            .iter()
            .filter_map(|group_id| {
                let group = self.groups.iter().find(|g| &g.id == group_id)?;
                Some(ActualUser {
                    id: format!("listed-member-of-{group_id}"),
                    org_id: group.org_id.clone(),
                    email: String::new(),
                    first_name: String::new(),
                    last_name: String::new(),
                    active: true,
                    group_id: Some(group_id.clone()),
                    permissions: BTreeMap::new(),
                    is_admin: true,
                })
            })
            .collect();
        let desired = DesiredState {
            groups: self.desired.groups.clone(),
            users: unseen_desired,
        };
        let actual = ActualState {
            users: members,
            groups: self.groups.clone(),
        };
        let last = plan(&desired, &actual, &ownership, self.policy, self.now);
        let (mut group_steps, mut people, mut trailing) = (Vec::new(), Vec::new(), Vec::new());
        for step in last.steps {
            match (&step, step.email()) {
                (PlanStep::DeleteGroup { .. }, _) => trailing.push(step),
                (_, None) => group_steps.push(step),
                (_, Some(_)) => people.push(step),
            }
        }
        group_steps.append(&mut self.person_steps);
        group_steps.append(&mut people);
        group_steps.append(&mut trailing);
        let mut skipped = last.skipped;
        skipped.retain(|s| !s.subject.is_empty());
        skipped.append(&mut self.skipped);
        (
            Plan {
                steps: group_steps,
                skipped,
            },
            ActualState {
                users: self.kept,
                groups: self.groups,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DesiredGroup;
    use crate::sync::ownership::{ManagedGroup, ManagedUser};

    fn perms(level: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("apis".to_string(), level.to_string())])
    }

    fn duser(email: &str, group: &str, active: bool) -> DesiredUser {
        DesiredUser {
            org_id: "o".into(),
            email: email.into(),
            first_name: "F".into(),
            last_name: "L".into(),
            active,
            group: Some(group.into()),
            rule: None,
            sources: vec![],
        }
    }

    fn auser(id: &str, email: &str, group: Option<&str>, level: &str) -> ActualUser {
        ActualUser {
            id: id.into(),
            org_id: "o".into(),
            email: email.into(),
            first_name: "F".into(),
            last_name: "L".into(),
            active: true,
            group_id: group.map(str::to_string),
            permissions: perms(level),
            is_admin: false,
        }
    }

    fn muser(id: &str, email: &str) -> ManagedUser {
        ManagedUser {
            org_id: "o".into(),
            tyk_user_id: id.into(),
            email: email.into(),
            managed_since: Timestamp(0),
            adopted: false,
            deactivated_at: None,
            access_key_reset_at: None,
        }
    }

    /// Steps as a sorted list of JSON texts: the same steps, whatever order.
    fn step_set(plan: &Plan) -> Vec<String> {
        let mut steps: Vec<String> = plan
            .steps
            .iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default())
            .collect();
        steps.sort();
        steps
    }

    #[test]
    fn window_by_window_plans_what_the_whole_listing_plans() {
        let group = |name: &str, level: &str| DesiredGroup {
            org_id: "o".into(),
            name: name.into(),
            description: None,
            permissions: perms(level),
        };
        let desired = DesiredState {
            groups: vec![group("dev", "write"), group("new", "read")],
            users: vec![
                duser("same@x.io", "dev", true),
                duser("moved@x.io", "new", true),
                duser("renamed@x.io", "dev", true),
                duser("gone-inactive@x.io", "dev", false),
                duser("created@x.io", "dev", true),
                duser("deleted-by-hand@x.io", "dev", true),
            ],
        };
        let groups = vec![
            ActualGroup {
                id: "g1".into(),
                org_id: "o".into(),
                name: "dev".into(),
                description: None,
                permissions: perms("write"),
            },
            ActualGroup {
                id: "g-old".into(),
                org_id: "o".into(),
                name: "old".into(),
                description: None,
                permissions: perms("read"),
            },
        ];
        let users = vec![
            auser("u1", "same@x.io", Some("g1"), "write"),
            auser("u2", "moved@x.io", Some("g1"), "write"),
            auser("u3", "hand@x.io", Some("g1"), "write"),
            auser("u4", "gone-inactive@x.io", Some("g1"), "write"),
            auser("u5", "departed@x.io", Some("g-old"), "read"),
            auser("u6", "stranger@x.io", None, "read"),
        ];
        let ownership = Ownership::from_parts(
            [
                muser("u1", "same@x.io"),
                muser("u2", "moved@x.io"),
                muser("u3", "renamed@x.io"),
                muser("u4", "gone-inactive@x.io"),
                muser("u5", "departed@x.io"),
                muser("u9", "deleted-by-hand@x.io"),
            ],
            [
                ManagedGroup {
                    org_id: "o".into(),
                    tyk_group_id: "g1".into(),
                    name: "dev".into(),
                },
                ManagedGroup {
                    org_id: "o".into(),
                    tyk_group_id: "g-old".into(),
                    name: "old".into(),
                },
            ],
        );
        let policy = SyncPolicy::default();
        let whole = plan(
            &desired,
            &ActualState {
                users: users.clone(),
                groups: groups.clone(),
            },
            &ownership,
            &policy,
            Timestamp(1),
        );
        for window in [1, 2, 4, 6] {
            let mut streamed =
                StreamedPlanner::new(&desired, groups.clone(), &ownership, &policy, Timestamp(1));
            for chunk in users.chunks(window) {
                streamed.window(chunk.to_vec());
            }
            let (plan, actual) = streamed.finish();
            assert_eq!(step_set(&plan), step_set(&whole), "window {window}");
            let mut kept: Vec<&str> = actual.users.iter().map(|u| u.id.as_str()).collect();
            kept.sort();
            assert_eq!(kept, vec!["u2", "u3", "u4", "u5"], "window {window}");
        }
        assert!(
            whole
                .steps
                .iter()
                .any(|s| matches!(s, PlanStep::RevertEmail { .. })),
            "{whole:?}"
        );
    }
}

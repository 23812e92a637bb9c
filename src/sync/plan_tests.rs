//! Planner tests: table-style cases for each rule, then properties over
//! random inputs (idempotence after applying, safety, ordering).

use std::collections::BTreeMap;
use std::time::Duration;

use pretty_assertions::assert_eq;
use proptest::prelude::*;

use super::*;
use crate::domain::{DesiredGroup, DesiredUser, SourceName};
use crate::sync::guard::{GuardConfig, GuardVerdict, guard};
use crate::sync::ownership::{Deprovision, ManagedGroup, ManagedUser};

const ORG: &str = "org1";
const NOW: Timestamp = Timestamp(1_800_000_000_000);
const DAY_MS: i64 = 24 * 3600 * 1000;

fn perms(pairs: &[(&str, &str)]) -> Permissions {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn dev_perms() -> Permissions {
    perms(&[("apis", "read"), ("analytics", "read")])
}

fn ops_perms() -> Permissions {
    perms(&[("apis", "write"), ("keys", "write")])
}

fn dgroup(name: &str, p: Permissions) -> DesiredGroup {
    DesiredGroup {
        org_id: ORG.into(),
        name: name.into(),
        description: None,
        permissions: p,
    }
}

fn duser(email: &str, group: Option<&str>, active: bool) -> DesiredUser {
    DesiredUser {
        org_id: ORG.into(),
        email: email.into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        active,
        group: group.map(str::to_string),
        rule: Some("rule-1".into()),
        sources: vec![SourceName::new("okta")],
    }
}

fn agroup(id: &str, name: &str, p: Permissions) -> ActualGroup {
    ActualGroup {
        id: id.into(),
        org_id: ORG.into(),
        name: name.into(),
        description: None,
        permissions: p,
    }
}

fn auser(id: &str, email: &str, group: Option<&str>, p: Permissions) -> ActualUser {
    ActualUser {
        id: id.into(),
        org_id: ORG.into(),
        email: email.into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        active: true,
        group_id: group.map(str::to_string),
        is_admin: ActualUser::permissions_mean_admin(&p),
        permissions: p,
    }
}

fn muser(id: &str, email: &str, deactivated_at: Option<i64>) -> ManagedUser {
    ManagedUser {
        org_id: ORG.into(),
        tyk_user_id: id.into(),
        email: email.into(),
        managed_since: Timestamp(0),
        adopted: false,
        deactivated_at: deactivated_at.map(Timestamp),
        access_key_reset_at: None,
    }
}

fn mgroup(id: &str, name: &str) -> ManagedGroup {
    ManagedGroup {
        org_id: ORG.into(),
        tyk_group_id: id.into(),
        name: name.into(),
    }
}

fn delete_policy(grace_days: u64) -> SyncPolicy {
    SyncPolicy {
        deprovision: Deprovision::Delete,
        grace_period: Duration::from_secs(grace_days * 24 * 3600),
        adopt_existing: false,
        reset_access_key: false,
    }
}

fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.steps.iter().map(PlanStep::kind).collect()
}

fn one_group_world() -> (DesiredState, ActualState, Ownership) {
    let desired = DesiredState {
        groups: vec![dgroup("dev", dev_perms())],
        users: vec![duser("ada@example.com", Some("dev"), true)],
    };
    let actual = ActualState {
        groups: vec![agroup("g1", "dev", dev_perms())],
        users: vec![auser("u1", "ada@example.com", Some("g1"), dev_perms())],
    };
    let ownership = Ownership::from_parts(
        [muser("u1", "ada@example.com", None)],
        [mgroup("g1", "dev")],
    );
    (desired, actual, ownership)
}

#[test]
fn nothing_to_do_when_tyk_matches() {
    let (desired, actual, ownership) = one_group_world();
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(plan, Plan::default());
}

#[test]
fn a_new_person_in_a_new_group_creates_the_group_first_and_references_it_by_name() {
    let desired = DesiredState {
        groups: vec![dgroup("dev", dev_perms())],
        users: vec![duser("ada@example.com", Some("dev"), true)],
    };
    let plan = plan(
        &desired,
        &ActualState::default(),
        &Ownership::default(),
        &SyncPolicy::default(),
        NOW,
    );
    assert_eq!(kinds(&plan), vec!["create_group", "create_user"]);
    let PlanStep::CreateUser {
        group,
        permissions,
        rule,
        ..
    } = &plan.steps[1]
    else {
        panic!("expected create_user, got {:?}", plan.steps[1]);
    };
    assert_eq!(group, &GroupRef::New("dev".into()));
    assert_eq!(permissions, &dev_perms());
    assert_eq!(rule.as_deref(), Some("rule-1"));
}

#[test]
fn a_new_person_in_an_existing_group_gets_its_id() {
    let (desired, mut actual, _) = one_group_world();
    actual.users.clear();
    let ownership = Ownership::from_parts([], [mgroup("g1", "dev")]);
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert!(
        matches!(&plan.steps[..], [PlanStep::CreateUser { group: GroupRef::Id(id), .. }] if id == "g1")
    );
}

#[test]
fn a_membership_change_moves_the_user_with_the_new_groups_permissions() {
    let (mut desired, mut actual, mut ownership) = one_group_world();
    desired.groups.push(dgroup("ops", ops_perms()));
    desired.users[0].group = Some("ops".into());
    actual.groups.push(agroup("g2", "ops", ops_perms()));
    ownership.groups.insert("g2".into(), mgroup("g2", "ops"));
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(
        plan.steps,
        vec![PlanStep::MoveToGroup {
            org_id: ORG.into(),
            email: "ada@example.com".into(),
            user_id: "u1".into(),
            from: Some("g1".into()),
            to: GroupRef::Id("g2".into()),
            permissions: ops_perms(),
            rule: Some("rule-1".into()),
        }]
    );
}

#[test]
fn an_email_changed_by_hand_in_tyk_is_reverted_not_taken_for_a_new_person() {
    let (desired, mut actual, ownership) = one_group_world();
    actual.users[0].email = "someone-else@example.com".into();
    for scoped in [false, true] {
        let plan = if scoped {
            let people = BTreeSet::from(["ada@example.com".to_string()]);
            crate::sync::plan_for_people(
                &desired,
                &actual,
                &ownership,
                &SyncPolicy::default(),
                NOW,
                &people,
            )
        } else {
            plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW)
        };
        assert_eq!(kinds(&plan), vec!["revert_email"], "scoped: {scoped}");
        assert!(matches!(
            &plan.steps[0],
            PlanStep::RevertEmail { email, user_id, found, .. }
                if email == "ada@example.com" && user_id == "u1" && found == "someone-else@example.com"
        ));
    }
}

#[test]
fn name_changes_and_permission_drift_are_corrected() {
    let (mut desired, mut actual, ownership) = one_group_world();
    desired.users[0].last_name = "King".into();
    actual.users[0].permissions = perms(&[("apis", "write")]);
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(
        kinds(&plan),
        vec!["update_user_profile", "update_user_permissions"]
    );
}

#[test]
fn group_permissions_without_deny_entries_count_as_in_step() {
    let with_deny = perms(&[("apis", "read"), ("keys", "deny")]);
    let (mut desired, mut actual, ownership) = one_group_world();
    desired.groups[0].permissions = with_deny.clone();
    actual.groups[0].permissions = with_deny;
    actual.users[0].permissions = perms(&[("apis", "read")]);
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(plan, Plan::default());
}

#[test]
fn a_hand_edited_group_gets_its_permissions_back() {
    let (desired, mut actual, ownership) = one_group_world();
    actual.groups[0].permissions = perms(&[("apis", "write")]);
    actual.users[0].permissions = perms(&[("apis", "write")]);
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(
        kinds(&plan),
        vec!["update_group_permissions", "update_user_permissions"]
    );
}

#[test]
fn admins_are_never_touched_even_when_managed() {
    let (mut desired, mut actual, ownership) = one_group_world();
    actual.users[0].permissions = perms(&[("IsAdmin", "admin")]);
    actual.users[0].is_admin = true;
    desired.users[0].last_name = "Changed".into();
    let active = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    desired.users.clear();
    let departed = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    for plan in [active, departed] {
        assert!(
            plan.steps.iter().all(|s| s.user_id() != Some("u1")),
            "{plan:?}"
        );
        assert_eq!(plan.skipped[0].reason, SkipReason::Admin);
    }
}

#[test]
fn unmanaged_users_are_left_alone_and_never_duplicated() {
    let (desired, mut actual, _) = one_group_world();
    actual.users[0].last_name = "Other".into();
    let ownership = Ownership::from_parts([], [mgroup("g1", "dev")]);
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(plan.steps, vec![]);
    assert_eq!(plan.skipped[0].reason, SkipReason::UnmanagedUser);
}

#[test]
fn unmanaged_users_not_desired_are_not_deactivated() {
    let (mut desired, actual, _) = one_group_world();
    desired.users.clear();
    let ownership = Ownership::from_parts([], [mgroup("g1", "dev")]);
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(plan.steps, vec![]);
}

#[test]
fn adoption_takes_over_a_matching_user_before_updating_it() {
    let (desired, mut actual, _) = one_group_world();
    actual.users[0].group_id = None;
    let ownership = Ownership::from_parts([], [mgroup("g1", "dev")]);
    let policy = SyncPolicy {
        adopt_existing: true,
        ..SyncPolicy::default()
    };
    let plan = plan(&desired, &actual, &ownership, &policy, NOW);
    assert_eq!(kinds(&plan), vec!["adopt_user", "move_to_group"]);
}

#[test]
fn an_interrupted_creation_is_resumed_as_ours_without_adopt_existing() {
    let (desired, actual, _) = one_group_world();
    let mut ownership = Ownership::from_parts([], [mgroup("g1", "dev")]);
    ownership
        .pending_creates
        .insert((ORG.into(), "ada@example.com".into()));
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert!(matches!(
        &plan.steps[..],
        [PlanStep::AdoptUser { resumed_creation: true, user_id, .. }] if user_id == "u1"
    ));
}

#[test]
fn an_interrupted_group_creation_is_resumed_not_duplicated() {
    let (desired, mut actual, _) = one_group_world();
    actual.users.clear();
    let mut ownership = Ownership::default();
    ownership
        .pending_group_creates
        .insert((ORG.into(), "dev".into()));
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(kinds(&plan), vec!["adopt_group", "create_user"]);
}

#[test]
fn an_interrupted_creation_of_someone_since_removed_is_deactivated() {
    let (mut desired, actual, _) = one_group_world();
    desired.users.clear();
    let mut ownership = Ownership::from_parts([], [mgroup("g1", "dev")]);
    ownership
        .pending_creates
        .insert((ORG.into(), "ada@example.com".into()));
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(kinds(&plan), vec!["adopt_user", "deactivate"]);
}

#[test]
fn a_person_gone_from_every_source_is_deactivated() {
    let (mut desired, actual, ownership) = one_group_world();
    desired.users.clear();
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(
        plan.steps,
        vec![PlanStep::Deactivate {
            org_id: ORG.into(),
            email: "ada@example.com".into(),
            user_id: "u1".into(),
            reason: DeprovisionReason::NotDesired,
        }]
    );
}

#[test]
fn a_person_inactive_in_the_source_is_deactivated() {
    let (mut desired, actual, ownership) = one_group_world();
    desired.users[0].active = false;
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert!(matches!(
        &plan.steps[..],
        [PlanStep::Deactivate {
            reason: DeprovisionReason::InactiveInSource,
            ..
        }]
    ));
}

#[test]
fn deletion_waits_for_deactivation_and_the_grace_period() {
    // (user active in Tyk, deactivated_at days ago, policy) → step kinds
    let cases: &[(bool, Option<i64>, SyncPolicy, &[&str])] = &[
        (true, None, delete_policy(30), &["deactivate"]),
        (true, Some(40), delete_policy(30), &["deactivate"]),
        (false, None, delete_policy(30), &["record_deactivation"]),
        (false, Some(10), delete_policy(30), &[]),
        (false, Some(30), delete_policy(30), &["delete"]),
        (false, Some(400), SyncPolicy::default(), &[]),
    ];
    for (active, days_ago, policy, expected) in cases {
        let (mut desired, mut actual, _) = one_group_world();
        desired.users.clear();
        actual.users[0].active = *active;
        let since = days_ago.map(|d| NOW.0 - d * DAY_MS);
        let ownership = Ownership::from_parts(
            [muser("u1", "ada@example.com", since)],
            [mgroup("g1", "dev")],
        );
        let plan = plan(&desired, &actual, &ownership, policy, NOW);
        assert_eq!(
            &kinds(&plan)[..],
            *expected,
            "active={active} days_ago={days_ago:?}"
        );
    }
}

/// With `reset_access_key`, every deprovisioning ends with a new access
/// key, once per deactivation: (active in Tyk, deactivated days ago, key
/// reset days ago, delete policy?) → step kinds.
#[test]
fn a_deprovisioned_user_gets_a_new_access_key_once_per_deactivation() {
    type Case = (
        bool,
        Option<i64>,
        Option<i64>,
        bool,
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (true, None, None, false, &["deactivate", "reset_access_key"]),
        // Reactivated earlier (reset cleared) and deprovisioned again.
        (
            true,
            Some(40),
            None,
            false,
            &["deactivate", "reset_access_key"],
        ),
        // Deactivated by hand: our record starts the grace period, and the key.
        (
            false,
            None,
            None,
            false,
            &["record_deactivation", "reset_access_key"],
        ),
        // A reset that failed last time is retried.
        (false, Some(2), None, false, &["reset_access_key"]),
        // A reset from before the current deactivation does not count.
        (false, Some(2), Some(5), false, &["reset_access_key"]),
        // Done: nothing more to do.
        (false, Some(2), Some(1), false, &[]),
        // Due for deletion: deleting ends the key too.
        (false, Some(40), None, true, &["delete"]),
    ];
    for (active, deactivated, reset, delete, expected) in cases {
        let (mut desired, mut actual, _) = one_group_world();
        desired.users.clear();
        actual.users[0].active = *active;
        let mut managed = muser(
            "u1",
            "ada@example.com",
            deactivated.map(|d| NOW.0 - d * DAY_MS),
        );
        managed.access_key_reset_at = reset.map(|d| Timestamp(NOW.0 - d * DAY_MS));
        let ownership = Ownership::from_parts([managed], [mgroup("g1", "dev")]);
        let mut policy = if *delete {
            delete_policy(30)
        } else {
            SyncPolicy::default()
        };
        policy.reset_access_key = true;
        let plan = plan(&desired, &actual, &ownership, &policy, NOW);
        assert_eq!(
            &kinds(&plan)[..],
            *expected,
            "active={active} deactivated={deactivated:?} reset={reset:?}"
        );
    }
    // Off: no key step at all.
    let (mut desired, actual, ownership) = one_group_world();
    desired.users.clear();
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(kinds(&plan), vec!["deactivate"]);
}

#[test]
fn a_returning_person_inside_the_grace_period_is_reactivated_not_recreated() {
    let (desired, mut actual, _) = one_group_world();
    actual.users[0].active = false;
    let ownership = Ownership::from_parts(
        [muser("u1", "ada@example.com", Some(NOW.0 - DAY_MS))],
        [mgroup("g1", "dev")],
    );
    let plan = plan(&desired, &actual, &ownership, &delete_policy(30), NOW);
    assert_eq!(kinds(&plan), vec!["reactivate"]);
}

#[test]
fn groups_that_would_make_admins_are_refused_with_their_members() {
    for bad in [perms(&[]), perms(&[("IsAdmin", "admin")])] {
        let desired = DesiredState {
            groups: vec![dgroup("root", bad)],
            users: vec![duser("ada@example.com", Some("root"), true)],
        };
        let plan = plan(
            &desired,
            &ActualState::default(),
            &Ownership::default(),
            &SyncPolicy::default(),
            NOW,
        );
        assert_eq!(plan.steps, vec![]);
        let reasons: Vec<_> = plan.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(
            reasons,
            vec![
                SkipReason::GroupPermissionsInvalid,
                SkipReason::NoUsableGroup
            ]
        );
    }
}

#[test]
fn an_existing_unmanaged_group_is_used_but_not_changed() {
    let desired = DesiredState {
        groups: vec![dgroup("dev", dev_perms())],
        users: vec![duser("ada@example.com", Some("dev"), true)],
    };
    let actual = ActualState {
        groups: vec![agroup("g9", "dev", ops_perms())],
        users: vec![],
    };
    let plan = plan(
        &desired,
        &actual,
        &Ownership::default(),
        &SyncPolicy::default(),
        NOW,
    );
    assert!(matches!(
        &plan.steps[..],
        [PlanStep::CreateUser { group: GroupRef::Id(id), permissions, .. }] if id == "g9" && *permissions == ops_perms()
    ));
    assert_eq!(plan.skipped[0].reason, SkipReason::UnmanagedGroupDiffers);
}

#[test]
fn a_managed_group_no_longer_wanted_is_deleted_after_its_members_move() {
    let (mut desired, mut actual, mut ownership) = one_group_world();
    desired.groups = vec![dgroup("ops", ops_perms())];
    desired.users[0].group = Some("ops".into());
    actual.groups.push(agroup("g2", "ops", ops_perms()));
    ownership.groups.insert("g2".into(), mgroup("g2", "ops"));
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(kinds(&plan), vec!["move_to_group", "delete_group"]);
}

#[test]
fn a_group_still_holding_someone_is_kept() {
    let (mut desired, mut actual, ownership) = one_group_world();
    desired.groups.clear();
    desired.users.clear();
    actual
        .users
        .push(auser("u9", "bob@example.com", Some("g1"), dev_perms()));
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(kinds(&plan), vec!["deactivate"]);
    assert!(
        plan.skipped
            .iter()
            .any(|s| s.reason == SkipReason::GroupStillHasMembers)
    );
}

#[test]
fn a_managed_user_deleted_by_hand_is_forgotten_then_recreated() {
    let (desired, mut actual, ownership) = one_group_world();
    actual.users.clear();
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(kinds(&plan), vec!["forget_user", "create_user"]);
}

#[test]
fn emails_match_case_insensitively() {
    let (desired, mut actual, ownership) = one_group_world();
    actual.users[0].email = "Ada@Example.COM".into();
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(plan, Plan::default());
}

#[test]
fn the_guard_holds_a_run_removing_half_the_users_and_passes_small_ones() {
    let config = GuardConfig {
        min_count: 5,
        max_percent: 10,
        ..GuardConfig::default()
    };
    let mut desired = DesiredState {
        groups: vec![dgroup("dev", dev_perms())],
        users: vec![],
    };
    let mut actual = ActualState {
        groups: vec![agroup("g1", "dev", dev_perms())],
        users: vec![],
    };
    let mut managed = vec![];
    for i in 0..100 {
        let email = format!("p{i}@example.com");
        let id = format!("u{i}");
        if i % 2 == 0 {
            desired.users.push(duser(&email, Some("dev"), true));
        }
        actual
            .users
            .push(auser(&id, &email, Some("g1"), dev_perms()));
        managed.push(muser(&id, &email, None));
    }
    let ownership = Ownership::from_parts(managed, [mgroup("g1", "dev")]);
    let half = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(
        guard(&half, 100, config),
        GuardVerdict::Hold {
            would_remove: 50,
            managed: 100,
            threshold: 10,
            would_recreate: 0,
            recreate_threshold: 20,
        }
    );
    desired.users = (0..95)
        .map(|i| duser(&format!("p{i}@example.com"), Some("dev"), true))
        .collect();
    let few = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(few.summary().people_removed, 5);
    assert_eq!(guard(&few, 100, config), GuardVerdict::Proceed);
}

#[test]
fn a_tyk_listing_that_comes_back_empty_by_mistake_is_held_not_forgotten() {
    let managed: Vec<_> = (0..50)
        .map(|i| muser(&format!("u{i}"), &format!("p{i}@example.com"), None))
        .collect();
    let desired = DesiredState {
        groups: vec![dgroup("dev", dev_perms())],
        users: (0..50)
            .map(|i| duser(&format!("p{i}@example.com"), Some("dev"), true))
            .collect(),
    };
    let ownership = Ownership::from_parts(managed, [mgroup("g1", "dev")]);
    let plan = plan(
        &desired,
        &ActualState::default(),
        &ownership,
        &SyncPolicy::default(),
        NOW,
    );
    // Held as re-creations, not removals: nobody loses access.
    assert!(matches!(
        guard(&plan, 50, GuardConfig::default()),
        GuardVerdict::Hold {
            would_remove: 0,
            would_recreate: 50,
            ..
        }
    ));
    assert_eq!(plan.summary().people_removed, 0);
}

#[test]
fn guard_threshold_is_the_larger_of_count_and_percent() {
    let config = GuardConfig {
        min_count: 10,
        max_percent: 5,
        ..GuardConfig::default()
    };
    assert_eq!(config.threshold(0), 10);
    assert_eq!(config.threshold(100), 10);
    assert_eq!(config.threshold(1_000), 50);
    assert_eq!(config.threshold(1_001), 51);
}

#[test]
fn planning_for_people_leaves_others_and_group_deletions_alone() {
    let (mut desired, mut actual, mut ownership) = one_group_world();
    desired
        .users
        .push(duser("bob@example.com", Some("dev"), true));
    desired.users[0].last_name = "King".into();
    actual.groups.push(agroup("g7", "old", dev_perms()));
    ownership.groups.insert("g7".into(), mgroup("g7", "old"));
    let people = ["bob@example.com".to_string()].into_iter().collect();
    let plan = crate::sync::plan_for_people(
        &desired,
        &actual,
        &ownership,
        &SyncPolicy::default(),
        NOW,
        &people,
    );
    assert_eq!(kinds(&plan), vec!["create_user"]);
    assert_eq!(plan.steps[0].email(), Some("bob@example.com"));
}

// ---- properties -------------------------------------------------------

/// Applies a plan to a model of Tyk and of our ownership records, as a
/// correct applier would; used to check that planning converges.
pub(crate) fn simulate(
    plan: &Plan,
    actual: &mut ActualState,
    ownership: &mut Ownership,
    now: Timestamp,
) {
    let mut next_id = actual.users.len() + actual.groups.len() + 1000;
    let mut new_groups: BTreeMap<(String, String), String> = BTreeMap::new();
    let resolve = |org: &str, g: &GroupRef, new_groups: &BTreeMap<(String, String), String>| match g
    {
        GroupRef::Id(id) => id.clone(),
        GroupRef::New(name) => new_groups[&(org.to_string(), name.clone())].clone(),
    };
    for step in &plan.steps {
        let user = |actual: &mut ActualState, id: &str| -> usize {
            actual
                .users
                .iter()
                .position(|u| u.id == id)
                .expect("user in model")
        };
        match step {
            PlanStep::CreateGroup {
                org_id,
                name,
                description,
                permissions,
            } => {
                next_id += 1;
                let id = format!("new{next_id}");
                actual.groups.push(ActualGroup {
                    id: id.clone(),
                    org_id: org_id.clone(),
                    name: name.clone(),
                    description: description.clone(),
                    permissions: permissions.clone(),
                });
                ownership.groups.insert(
                    id.clone(),
                    ManagedGroup {
                        org_id: org_id.clone(),
                        tyk_group_id: id.clone(),
                        name: name.clone(),
                    },
                );
                new_groups.insert((org_id.clone(), name.clone()), id);
            }
            PlanStep::AdoptGroup {
                org_id,
                group_id,
                name,
            } => {
                ownership.groups.insert(
                    group_id.clone(),
                    ManagedGroup {
                        org_id: org_id.clone(),
                        tyk_group_id: group_id.clone(),
                        name: name.clone(),
                    },
                );
            }
            PlanStep::UpdateGroupPermissions {
                group_id,
                after,
                description_after,
                ..
            } => {
                let g = actual
                    .groups
                    .iter_mut()
                    .find(|g| &g.id == group_id)
                    .expect("group");
                g.permissions = after.clone();
                g.description = description_after.clone();
            }
            PlanStep::CreateUser {
                org_id,
                email,
                profile,
                group,
                permissions,
                ..
            } => {
                next_id += 1;
                let id = format!("new{next_id}");
                actual.users.push(ActualUser {
                    id: id.clone(),
                    org_id: org_id.clone(),
                    email: email.clone(),
                    first_name: profile.first_name.clone(),
                    last_name: profile.last_name.clone(),
                    active: true,
                    group_id: Some(resolve(org_id, group, &new_groups)),
                    permissions: permissions.clone(),
                    is_admin: false,
                });
                ownership.users.insert(
                    id.clone(),
                    ManagedUser {
                        org_id: org_id.clone(),
                        tyk_user_id: id,
                        email: email.clone(),
                        managed_since: now,
                        adopted: false,
                        deactivated_at: None,
                        access_key_reset_at: None,
                    },
                );
            }
            PlanStep::AdoptUser {
                org_id,
                email,
                user_id,
                ..
            } => {
                ownership.users.insert(
                    user_id.clone(),
                    ManagedUser {
                        org_id: org_id.clone(),
                        tyk_user_id: user_id.clone(),
                        email: email.clone(),
                        managed_since: now,
                        adopted: true,
                        deactivated_at: None,
                        access_key_reset_at: None,
                    },
                );
            }
            PlanStep::Reactivate { user_id, .. } => {
                let i = user(actual, user_id);
                actual.users[i].active = true;
                if let Some(m) = ownership.users.get_mut(user_id) {
                    m.deactivated_at = None;
                }
            }
            PlanStep::RevertEmail { user_id, email, .. } => {
                let i = user(actual, user_id);
                actual.users[i].email = email.clone();
            }
            PlanStep::UpdateUserProfile { user_id, after, .. } => {
                let i = user(actual, user_id);
                actual.users[i].first_name = after.first_name.clone();
                actual.users[i].last_name = after.last_name.clone();
            }
            PlanStep::MoveToGroup {
                org_id,
                user_id,
                to,
                permissions,
                ..
            } => {
                let i = user(actual, user_id);
                actual.users[i].group_id = Some(resolve(org_id, to, &new_groups));
                actual.users[i].permissions = permissions.clone();
            }
            PlanStep::UpdateUserPermissions { user_id, after, .. } => {
                let i = user(actual, user_id);
                actual.users[i].permissions = after.clone();
            }
            PlanStep::Deactivate { user_id, .. } => {
                let i = user(actual, user_id);
                actual.users[i].active = false;
                ownership
                    .users
                    .get_mut(user_id)
                    .expect("managed")
                    .deactivated_at = Some(now);
            }
            PlanStep::RecordDeactivation { user_id, .. } => {
                ownership
                    .users
                    .get_mut(user_id)
                    .expect("managed")
                    .deactivated_at = Some(now);
            }
            PlanStep::Delete { user_id, .. } => {
                let i = user(actual, user_id);
                assert!(!actual.users[i].active, "deleting an active user");
                actual.users.retain(|u| &u.id != user_id);
                ownership.users.remove(user_id);
            }
            PlanStep::ForgetUser { user_id, .. } => {
                ownership.users.remove(user_id);
            }
            PlanStep::ResetAccessKey { user_id, .. } => {
                if let Some(m) = ownership.users.get_mut(user_id) {
                    m.access_key_reset_at = m.deactivated_at;
                }
            }
            PlanStep::DeleteGroup { group_id, .. } => {
                assert!(
                    actual
                        .users
                        .iter()
                        .all(|u| u.group_id.as_deref() != Some(group_id)),
                    "group still has members"
                );
                actual.groups.retain(|g| &g.id != group_id);
                ownership.groups.remove(group_id);
            }
        }
    }
}

const EMAILS: [&str; 6] = ["a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io", "f@x.io"];
const GROUPS: [&str; 3] = ["dev", "ops", "sec"];

fn perm_strategy() -> impl Strategy<Value = Permissions> {
    prop_oneof![
        4 => Just(dev_perms()),
        4 => Just(ops_perms()),
        1 => Just(perms(&[])),
        1 => Just(perms(&[("IsAdmin", "admin")])),
    ]
}

fn world() -> impl Strategy<Value = (DesiredState, ActualState, Ownership, SyncPolicy, Vec<bool>)> {
    let desired_groups = proptest::collection::vec((0..3usize, perm_strategy()), 0..4);
    let desired_users = proptest::collection::vec(
        (
            0..6usize,
            proptest::option::of(0..3usize),
            any::<bool>(),
            0..2usize,
        ),
        0..7,
    );
    let actual_groups =
        proptest::collection::vec((0..3usize, perm_strategy(), any::<bool>()), 0..4);
    let actual_users = proptest::collection::vec(
        (
            0..6usize,
            proptest::option::of(0..4usize),
            perm_strategy(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(0..60i64),
        ),
        0..7,
    );
    (
        desired_groups,
        desired_users,
        actual_groups,
        actual_users,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(dg, du, ag, au, adopt, delete)| {
            let desired = DesiredState {
                groups: dg.into_iter().map(|(g, p)| dgroup(GROUPS[g], p)).collect(),
                users: du
                    .into_iter()
                    .map(|(e, g, active, name)| {
                        let mut u = duser(EMAILS[e], g.map(|g| GROUPS[g]), active);
                        u.first_name = ["Ada", "Bob"][name].into();
                        u
                    })
                    .collect(),
            };
            let mut ownership = Ownership::default();
            let groups: Vec<ActualGroup> = ag
                .into_iter()
                .enumerate()
                .map(|(i, (g, p, managed))| {
                    let id = format!("g{i}");
                    if managed {
                        ownership.groups.insert(id.clone(), mgroup(&id, GROUPS[g]));
                    }
                    agroup(&id, GROUPS[g], p)
                })
                .collect();
            let mut managed_flags = vec![];
            // Tyk keeps e-mails unique per org.
            let mut seen = BTreeSet::new();
            let au: Vec<_> = au.into_iter().filter(|u| seen.insert(u.0)).collect();
            let users = au
                .into_iter()
                .enumerate()
                .map(|(i, (e, g, p, active, managed, days))| {
                    let id = format!("u{i}");
                    let mut u = auser(&id, EMAILS[e], g.map(|g| format!("g{g}")).as_deref(), p);
                    u.active = active;
                    if managed {
                        ownership.users.insert(
                            id.clone(),
                            muser(&id, EMAILS[e], days.map(|d| NOW.0 - d * DAY_MS)),
                        );
                    }
                    managed_flags.push(managed);
                    u
                })
                .collect();
            let policy = SyncPolicy {
                adopt_existing: adopt,
                ..if delete {
                    delete_policy(30)
                } else {
                    SyncPolicy::default()
                }
            };
            (
                desired,
                ActualState { users, groups },
                ownership,
                policy,
                managed_flags,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Applying a plan and planning again yields nothing to write to Tyk
    /// (deletions may follow later, once their grace period has run).
    #[test]
    fn planning_converges_after_one_application((desired, mut actual, mut ownership, policy, _) in world()) {
        let first = plan(&desired, &actual, &ownership, &policy, NOW);
        simulate(&first, &mut actual, &mut ownership, NOW);
        let second = plan(&desired, &actual, &ownership, &policy, NOW);
        prop_assert!(second.steps.iter().all(|s| !s.writes_to_tyk() || matches!(s, PlanStep::Delete { .. })), "second plan: {:?}", second.steps);
        simulate(&second, &mut actual, &mut ownership, NOW);
        let third = plan(&desired, &actual, &ownership, &policy, NOW);
        prop_assert_eq!(third.steps, vec![]);
    }

    /// Admins and unmanaged users are only ever touched through adoption,
    /// and creations never duplicate an e-mail.
    #[test]
    fn plans_are_safe((desired, actual, ownership, policy, _) in world()) {
        let plan = plan(&desired, &actual, &ownership, &policy, NOW);
        let mut adopted = BTreeSet::new();
        let mut created_groups = BTreeSet::new();
        let mut deactivated = BTreeSet::new();
        for step in &plan.steps {
            match step {
                PlanStep::AdoptUser { user_id, resumed_creation, .. } => { prop_assert!(policy.adopt_existing || *resumed_creation); adopted.insert(user_id.clone()); }
                PlanStep::CreateGroup { name, permissions, .. } => { prop_assert!(permissions_usable(permissions)); created_groups.insert(name.clone()); }
                PlanStep::CreateUser { email, permissions, group, .. } => {
                    prop_assert!(permissions_usable(permissions));
                    prop_assert!(!actual.users.iter().any(|u| u.email.eq_ignore_ascii_case(email)), "duplicate {}", email);
                    if let GroupRef::New(name) = group { prop_assert!(created_groups.contains(name), "group {} used before creation", name); }
                }
                PlanStep::MoveToGroup { to: GroupRef::New(name), permissions, .. } => { prop_assert!(permissions_usable(permissions)); prop_assert!(created_groups.contains(name)); }
                PlanStep::Deactivate { user_id, .. } => { deactivated.insert(user_id.clone()); }
                PlanStep::Delete { user_id, .. } => {
                    prop_assert!(!deactivated.contains(user_id), "deactivated and deleted in one run");
                    prop_assert!(actual.users.iter().any(|u| &u.id == user_id && !u.active));
                }
                _ => {}
            }
            if let Some(id) = step.user_id().filter(|_| !matches!(step, PlanStep::ForgetUser { .. })) {
                let user = actual.users.iter().find(|u| u.id == id).expect("user step on a listed user");
                prop_assert!(!user.is_admin, "admin touched: {:?}", step);
                prop_assert!(ownership.manages_user(id) || adopted.contains(id), "unmanaged touched: {:?}", step);
            }
        }
    }
}

#[test]
fn a_tyk_login_spelled_differently_is_the_same_person() {
    let (desired, mut actual, mut ownership) = one_group_world();
    // The mapping's key is folded; Tyk holds another spelling of it.
    actual.users[0].email = "ADA@Example.COM".into();
    ownership = Ownership::from_parts(
        [muser("u1", "Ada@example.com", None)],
        ownership.groups.into_values(),
    );
    let same = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(kinds(&same), Vec::<&str>::new());
    let desired = DesiredState {
        users: vec![duser("jos\u{e9}@example.com", Some("dev"), true)],
        ..desired
    };
    let actual = ActualState {
        users: vec![auser("u2", "JOSE\u{301}@example.com", None, dev_perms())],
        ..actual
    };
    let policy = SyncPolicy {
        adopt_existing: true,
        ..SyncPolicy::default()
    };
    let ownership = Ownership::from_parts([], [mgroup("g1", "dev")]);
    let plan = plan(&desired, &actual, &ownership, &policy, NOW);
    assert_eq!(kinds(&plan), vec!["adopt_user", "move_to_group"]);
}

#[test]
fn an_invalid_email_is_never_planned_for_tyk() {
    let (mut desired, actual, ownership) = one_group_world();
    desired.users.push(duser("not-an-email", Some("dev"), true));
    desired.users.push(duser("nu\0l@x.io", Some("dev"), true));
    let plan = plan(&desired, &actual, &ownership, &SyncPolicy::default(), NOW);
    assert_eq!(kinds(&plan), Vec::<&str>::new());
    let skipped: Vec<_> = plan
        .skipped
        .iter()
        .map(|s| (s.subject.as_str(), s.reason))
        .collect();
    assert_eq!(
        skipped,
        vec![
            ("not-an-email", SkipReason::InvalidEmail),
            ("nu\0l@x.io", SkipReason::InvalidEmail),
        ]
    );
}

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::mapping::reasoning::explain;

fn g(source: &str, name: &str) -> GroupRef {
    GroupRef {
        source: SourceName::new(source),
        display_name: name.into(),
        external_id: None,
    }
}

fn person(source: &str, email: &str, groups: Vec<GroupRef>) -> PersonIdentity {
    PersonIdentity {
        source: SourceName::new(source),
        user_name: email.into(),
        email: Some(email.into()),
        given_name: Some(format!("{source}-first")),
        family_name: Some(format!("{source}-last")),
        display_name: None,
        active: true,
        groups,
    }
}

fn rule(id: &str, org: &str, name: &str, priority: i64, sso: &[&str]) -> MappingRule {
    MappingRule {
        id: id.into(),
        org_id: org.into(),
        name: name.into(),
        description: None,
        priority,
        mappings_sso: sso.iter().map(|s| s.to_string()).collect(),
        permissions: BTreeMap::from([("apis".into(), "read".into())]),
    }
}

fn only_user(state: &DesiredState) -> &DesiredUser {
    assert_eq!(state.users.len(), 1, "{state:?}");
    &state.users[0]
}

#[test]
fn look_alike_emails_are_one_person_and_invalid_ones_none() {
    let people = [
        person("okta", "Jose\u{301}@X.io", vec![g("okta", "Dev")]),
        person("entra", "JOS\u{c9}@x.io", vec![g("entra", "Dev")]),
        person("okta", "not-an-email", vec![g("okta", "Dev")]),
        person("okta", "nu\0l@x.io", vec![g("okta", "Dev")]),
    ];
    let rules = [rule("r1", "org", "Developers", 10, &["Dev"])];
    let state = desired_state(&people, &rules, &ResolveOptions::default());
    let user = only_user(&state);
    assert_eq!(user.email, "jos\u{e9}@x.io");
    assert_eq!(user.sources.len(), 2, "{user:?}");
}

#[test]
fn highest_priority_wins() {
    let people = [person(
        "okta",
        "a@x.org",
        vec![g("okta", "Dev"), g("okta", "Ops")],
    )];
    let rules = [
        rule("r1", "org", "Developers", 10, &["Dev"]),
        rule("r2", "org", "Operators", 20, &["Ops"]),
    ];
    let state = desired_state(&people, &rules, &ResolveOptions::default());
    assert_eq!(only_user(&state).group.as_deref(), Some("Operators"));
    assert_eq!(only_user(&state).rule.as_deref(), Some("r2"));
    assert_eq!(state.groups.len(), 2);
}

#[test]
fn equal_priority_prefers_smaller_group_name() {
    let people = [person(
        "okta",
        "a@x.org",
        vec![g("okta", "Dev"), g("okta", "Ops")],
    )];
    let rules = [
        rule("r1", "org", "Zeta", 5, &["Dev"]),
        rule("r2", "org", "Alpha", 5, &["Ops"]),
    ];
    let state = desired_state(&people, &rules, &ResolveOptions::default());
    assert_eq!(only_user(&state).group.as_deref(), Some("Alpha"));
}

#[test]
fn person_is_provisioned_in_each_matching_org() {
    let people = [person("okta", "a@x.org", vec![g("okta", "Dev")])];
    let rules = [
        rule("r1", "org-a", "Developers", 1, &["Dev"]),
        rule("r2", "org-b", "Readers", 1, &["dev"]),
    ];
    let state = desired_state(&people, &rules, &ResolveOptions::default());
    let orgs: Vec<_> = state
        .users
        .iter()
        .map(|u| (u.org_id.as_str(), u.group.as_deref()))
        .collect();
    assert_eq!(
        orgs,
        vec![("org-a", Some("Developers")), ("org-b", Some("Readers"))]
    );
}

#[test]
fn source_qualifier_restricts_matching() {
    let people = [person(
        "ldap-corp",
        "a@x.org",
        vec![g("ldap-corp", "Platform Team")],
    )];
    let rules = [rule("r1", "org", "Platform", 1, &["okta:Platform Team"])];
    let state = desired_state(&people, &rules, &ResolveOptions::default());
    assert!(state.users.is_empty());
}

#[test]
fn unmapped_policies() {
    let people = [person("okta", "a@x.org", vec![g("okta", "Nobody")])];
    let rules = [rule("r1", "org", "Readers", 1, &["Dev"])];
    let options = |policy| ResolveOptions {
        unmapped_policy: policy,
        default_org_id: Some("org".into()),
        default_group: Some("Readers".into()),
        source_order: vec![],
    };
    let ignore = desired_state(&people, &rules, &options(UnmappedPolicy::Ignore));
    assert!(ignore.users.is_empty());

    let deactivate = desired_state(&people, &rules, &options(UnmappedPolicy::Deactivate));
    let user = only_user(&deactivate);
    assert!(!user.active);
    assert_eq!(user.group, None);

    let default = desired_state(&people, &rules, &options(UnmappedPolicy::Default));
    let user = only_user(&default);
    assert!(user.active);
    assert_eq!(user.group.as_deref(), Some("Readers"));
    assert_eq!(user.rule, None);

    let mut missing = options(UnmappedPolicy::Default);
    missing.default_group = Some("Ghost".into());
    assert!(desired_state(&people, &rules, &missing).users.is_empty());
}

#[test]
fn multi_source_merge_combines_groups_and_activity() {
    let mut ldap = person("ldap-corp", "A@X.org", vec![g("ldap-corp", "Ops")]);
    ldap.active = false;
    let okta = person("okta", "a@x.org", vec![g("okta", "Dev")]);
    let rules = [
        rule("r1", "org", "Developers", 1, &["okta:Dev"]),
        rule("r2", "org", "Operators", 2, &["ldap-corp:Ops"]),
    ];
    let options = ResolveOptions {
        source_order: vec!["okta".into(), "ldap-corp".into()],
        ..ResolveOptions::default()
    };
    let state = desired_state(&[ldap.clone(), okta.clone()], &rules, &options);
    let user = only_user(&state);
    assert_eq!(user.email, "a@x.org");
    assert_eq!(user.group.as_deref(), Some("Operators"));
    assert!(user.active, "active while any source has them active");
    assert_eq!(user.first_name, "okta-first");
    assert_eq!(
        user.sources,
        vec![SourceName::new("ldap-corp"), SourceName::new("okta")]
    );

    let reversed = ResolveOptions {
        source_order: vec!["ldap-corp".into()],
        ..ResolveOptions::default()
    };
    let state = desired_state(&[ldap.clone(), okta], &rules, &reversed);
    assert_eq!(only_user(&state).first_name, "ldap-corp-first");

    let state = desired_state(&[ldap], &rules, &options);
    assert!(!only_user(&state).active);
}

#[test]
fn people_without_email_are_skipped() {
    let mut nobody = person("okta", "x", vec![g("okta", "Dev")]);
    nobody.email = None;
    let rules = [rule("r1", "org", "Developers", 1, &["Dev"])];
    assert!(
        desired_state(&[nobody], &rules, &ResolveOptions::default())
            .users
            .is_empty()
    );
}

#[test]
fn explain_names_winner_and_losers() {
    let people = [person(
        "okta",
        "a@x.org",
        vec![g("okta", "Dev"), g("okta", "Ops")],
    )];
    let rules = [
        rule("r1", "org", "Developers", 10, &["Dev"]),
        rule("r2", "org", "Operators", 20, &["Ops", "Op*"]),
    ];
    let explanation = explain("A@x.org", &people, &rules, &ResolveOptions::default());
    assert_eq!(explanation.matches.len(), 2);
    assert!(explanation.matches[0].won);
    assert_eq!(explanation.matches[0].rule_id, "r2");
    assert_eq!(explanation.matches[0].matched_by.len(), 2);
    assert!(!explanation.matches[1].won);
    assert_eq!(explanation.users.len(), 1);
}

fn arb_input() -> impl Strategy<Value = (Vec<PersonIdentity>, Vec<MappingRule>)> {
    let names = prop::sample::select(vec!["Dev", "Ops", "dev", "Admins", "QA"]);
    let sources = prop::sample::select(vec!["okta", "ldap-corp"]);
    let emails = prop::sample::select(vec!["a@x.org", "A@x.org", "b@x.org", "c@x.org"]);
    let identity = (
        sources.clone(),
        emails,
        prop::collection::vec((sources, names.clone()), 0..4),
        any::<bool>(),
    )
        .prop_map(|(source, email, groups, active)| {
            let mut p = person(
                source,
                email,
                groups.into_iter().map(|(s, n)| g(s, n)).collect(),
            );
            p.active = active;
            p
        });
    let rule_strategy = (
        prop::sample::select(vec!["o1", "o2"]),
        prop::sample::select(vec!["G1", "G2", "G3"]),
        0i64..3,
        prop::collection::vec(names, 1..3),
    );
    (
        prop::collection::vec(identity, 0..6),
        prop::collection::vec(rule_strategy, 0..5).prop_map(|rules| {
            let mut seen = std::collections::BTreeSet::new();
            rules
                .into_iter()
                .filter(|(org, name, _, _)| seen.insert((*org, *name)))
                .map(|(org, name, priority, sso)| {
                    rule(&format!("{org}/{name}"), org, name, priority, &sso)
                })
                .collect()
        }),
    )
}

proptest! {
    #[test]
    fn order_of_input_does_not_change_the_result(
        (people, rules) in arb_input(),
        seed in any::<u64>(),
        policy in prop::sample::select(vec![UnmappedPolicy::Ignore, UnmappedPolicy::Deactivate, UnmappedPolicy::Default]),
    ) {
        let options = ResolveOptions {
            unmapped_policy: policy,
            default_org_id: Some("o1".into()),
            default_group: Some("G1".into()),
            source_order: vec!["ldap-corp".into()],
        };
        let expected = desired_state(&people, &rules, &options);
        let mut shuffled_people = people.clone();
        let mut shuffled_rules = rules.clone();
        shuffle(&mut shuffled_people, seed);
        shuffle(&mut shuffled_rules, seed.rotate_left(17));
        for person in &mut shuffled_people {
            shuffle(&mut person.groups, seed ^ 0x5555);
        }
        let actual = desired_state(&shuffled_people, &shuffled_rules, &options);
        prop_assert_eq!(&actual, &expected);
        // Sorted, and at most one user per (org, email).
        let keys: Vec<_> = actual.users.iter().map(|u| (u.org_id.clone(), u.email.clone())).collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(keys, unique);
    }
}

/// Deterministic Fisher–Yates driven by a simple LCG, so proptest can shrink.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = (state >> 33) as usize % (i + 1);
        items.swap(i, j);
    }
}

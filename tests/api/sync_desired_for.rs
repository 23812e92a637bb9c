//! `load_desired_for` (an event run's desired state, read in batches
//! through the store's indexes) equals `load_desired` (everyone's)
//! restricted to the same people: identities in two sources merged by
//! e-mail, groups nested three deep with a cycle.

use std::collections::BTreeSet;

use pretty_assertions::assert_eq;
use serde_json::json;
use tyk_idsync::domain::{
    GroupMember, IdentityGroup, IdentityUser, MemberKind, SourceName, Timestamp,
};
use tyk_idsync::mapping::{
    ConfigRule, MappingConfig, load_desired, load_desired_for, sync_config_rules,
};
use tyk_idsync::store::identities;
use uuid::Uuid;

use crate::both_backends;
use crate::support::{Db, fresh_store};

fn user(source: &str, n: usize) -> IdentityUser {
    let now = Timestamp::now();
    IdentityUser {
        id: Uuid::new_v4(),
        source: SourceName::new(source),
        external_id: None,
        user_name: format!("{source}-u{n}"),
        // Stored folded, as every writer stores it (`domain::email_key`).
        email: Some(format!("u{n}@example.org")),
        email_problem: None,
        given_name: Some(format!("{source}{n}")),
        family_name: Some("Test".into()),
        display_name: None,
        active: !n.is_multiple_of(7),
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

fn group(source: &str, name: &str) -> IdentityGroup {
    let now = Timestamp::now();
    IdentityGroup {
        id: Uuid::new_v4(),
        source: SourceName::new(source),
        external_id: Some(format!("cn={name},dc=example,dc=org")),
        display_name: name.into(),
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

fn rule(name: &str, priority: i64, sso: &str) -> ConfigRule {
    ConfigRule {
        org_id: "org1".into(),
        name: name.into(),
        description: None,
        priority,
        mappings_sso: vec![sso.into()],
        permissions: [("apis".to_string(), "read".to_string())].into(),
    }
}

async fn desired_for_equals_everyones_restricted(db: Db) {
    const PEOPLE: usize = 40;
    let (store, _dir) = fresh_store(db).await;
    // ldap: leaf ⊂ middle ⊂ top, and top ⊂ leaf (a cycle); okta: ops.
    let (leaf, middle, top) = (
        group("ldap", "leaf"),
        group("ldap", "middle"),
        group("ldap", "top"),
    );
    let ops = group("okta", "ops");
    let mut tx = store.begin().await.expect("tx");
    for g in [&leaf, &middle, &top, &ops] {
        identities::insert_group(&mut tx, g).await.expect("group");
    }
    let member = |id, kind| GroupMember { id, kind };
    for (parent, child) in [(&middle, &leaf), (&top, &middle), (&leaf, &top)] {
        identities::add_members(&mut tx, parent.id, &[member(child.id, MemberKind::Group)])
            .await
            .expect("nested");
    }
    for n in 0..PEOPLE {
        let ldap = user("ldap", n);
        identities::insert_user(&mut tx, &ldap, &[])
            .await
            .expect("user");
        let home = match n % 3 {
            0 => &leaf,
            1 => &middle,
            _ => &top,
        };
        if n % 5 != 4 {
            identities::add_members(&mut tx, home.id, &[member(ldap.id, MemberKind::User)])
                .await
                .expect("member");
        }
        if n.is_multiple_of(2) {
            let okta = user("okta", n);
            identities::insert_user(&mut tx, &okta, &[])
                .await
                .expect("user");
            if n.is_multiple_of(4) {
                identities::add_members(&mut tx, ops.id, &[member(okta.id, MemberKind::User)])
                    .await
                    .expect("member");
            }
        }
    }
    tx.commit().await.expect("commit");
    let config = MappingConfig {
        rules: vec![
            rule("Top", 5, "ldap:top"),
            rule("Middle", 10, "ldap:middle"),
            rule("Ops", 20, "okta:ops"),
        ],
        default_org_id: Some("org1".into()),
        unmapped_policy: tyk_idsync::mapping::UnmappedPolicy::Deactivate,
        ..MappingConfig::default()
    };
    sync_config_rules(&store, &config).await.expect("rules");

    let everyone = load_desired(&store, &config).await.expect("everyone");
    assert_eq!(everyone.users.len(), PEOPLE, "{everyone:#?}");
    let subsets: Vec<BTreeSet<String>> = vec![
        (0..PEOPLE).map(|n| format!("u{n}@example.org")).collect(),
        [0, 1, 2, 4, 9, 39]
            .map(|n| format!("u{n}@example.org"))
            .into(),
        ["nobody@example.org".to_string()].into(),
    ];
    for emails in subsets {
        let some = load_desired_for(&store, &config, &emails)
            .await
            .expect("some");
        let mut expected = everyone.clone();
        expected.users.retain(|u| emails.contains(&u.email));
        assert_eq!(some, expected, "{emails:?}");
    }
}
both_backends!(desired_for, desired_for_equals_everyones_restricted);

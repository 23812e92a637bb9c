//! Mapping rules in the store: config reload (SIGHUP), CLI apply/export,
//! and the resolution input loaded from real identities with nested groups.

use pretty_assertions::assert_eq;
use serde_json::json;
use tyk_idsync::domain::{
    EventKind, GroupMember, IdentityGroup, IdentityUser, MemberKind, SourceName, Timestamp,
};
use tyk_idsync::mapping::explain::explain_email;
use tyk_idsync::mapping::input::load_people;
use tyk_idsync::mapping::{
    ConfigRule, MappingConfig, MappingError, apply_file, desired_state, export, list,
    sync_config_rules,
};
use tyk_idsync::store::mappings::RuleOrigin;
use tyk_idsync::store::{Store, events, identities};
use uuid::Uuid;

use crate::both_backends;
use crate::support::{Db, fresh_store};

fn config_rule(name: &str, priority: i64, sso: &[&str]) -> ConfigRule {
    ConfigRule {
        org_id: "org1".into(),
        name: name.into(),
        description: None,
        priority,
        mappings_sso: sso.iter().map(|s| s.to_string()).collect(),
        permissions: [("apis".to_string(), "read".to_string())].into(),
    }
}

async fn mapping_events(store: &Store) -> usize {
    let mut conn = store.pool().acquire().await.expect("conn");
    events::pending(&mut conn, 100)
        .await
        .expect("pending")
        .iter()
        .filter(|e| e.kind == EventKind::MappingChanged)
        .count()
}

async fn config_reload(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let mut config = MappingConfig {
        rules: vec![
            config_rule("Readers", 0, &["*"]),
            config_rule("Devs", 10, &["Dev"]),
        ],
        ..MappingConfig::default()
    };
    let first = sync_config_rules(&store, &config).await.expect("start");
    assert_eq!(first.added.len(), 2);
    assert_eq!(mapping_events(&store).await, 1);

    let again = sync_config_rules(&store, &config).await.expect("reload");
    assert!(!again.changed());
    assert_eq!(again.unchanged, 2);
    assert_eq!(
        mapping_events(&store).await,
        1,
        "no event when nothing changed"
    );

    // An API rule survives reloads; one named by the config is taken over.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rules.json");
    let api_rules = json!([
        {"orgId": "org1", "name": "Ops", "priority": 5, "mappingsSSO": ["Ops"], "permissions": {"apis": "read"}},
        {"orgId": "org1", "name": "Admins", "priority": 50, "mappingsSSO": ["Adm"], "permissions": {"apis": "write"}}
    ]);
    std::fs::write(&file, api_rules.to_string()).expect("write");
    apply_file(&store, &file, &[]).await.expect("apply");

    config.rules[1].priority = 20;
    config.rules.remove(0);
    config.rules.push(config_rule("Admins", 60, &["Adm"]));
    let report = sync_config_rules(&store, &config).await.expect("reload");
    assert_eq!(
        (
            report.added.len(),
            report.updated.len(),
            report.removed.len()
        ),
        (0, 2, 1)
    );
    let stored: Vec<_> = list(&store)
        .await
        .expect("list")
        .into_iter()
        .map(|s| (s.rule.name, s.rule.priority, s.origin))
        .collect();
    assert_eq!(
        stored,
        vec![
            ("Admins".into(), 60, RuleOrigin::Config),
            ("Devs".into(), 20, RuleOrigin::Config),
            ("Ops".into(), 5, RuleOrigin::Api),
        ]
    );
    assert_eq!(mapping_events(&store).await, 3);

    // An invalid config changes nothing.
    let mut bad = config.clone();
    bad.rules[0]
        .permissions
        .insert("IsAdmin".into(), "admin".into());
    let error = sync_config_rules(&store, &bad).await.expect_err("invalid");
    assert!(matches!(error, MappingError::Invalid(_)), "{error}");
    assert_eq!(list(&store).await.expect("list").len(), 3);
    assert_eq!(mapping_events(&store).await, 3);
}
both_backends!(mapping_config_reload, config_reload);

async fn apply_and_export(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rules.json");
    std::fs::write(
        &file,
        json!([{"orgId": "org1", "name": "Ops", "priority": 5, "mappingsSSO": ["Ops"], "permissions": {"apis": "read"}}]).to_string(),
    )
    .expect("write");
    let report = apply_file(&store, &file, &[]).await.expect("apply");
    assert_eq!(report.added.len(), 1);
    let exported = export(&store).await.expect("export");
    let exported_file = dir.path().join("export.json");
    std::fs::write(&exported_file, &exported).expect("write");
    let again = apply_file(&store, &exported_file, &[])
        .await
        .expect("re-apply");
    assert!(!again.changed(), "export applies back unchanged");

    std::fs::write(
        &file,
        json!([{"orgId": "org1", "name": "New", "mappingsSSO": ["x"]}, {"orgId": "org1", "name": "Bad", "permissions": {"nope": "read"}}]).to_string(),
    )
    .expect("write");
    let error = apply_file(&store, &file, &[]).await.expect_err("invalid");
    assert!(
        error.to_string().contains("[1].permissions.nope"),
        "{error}"
    );
    assert_eq!(
        list(&store).await.expect("list").len(),
        1,
        "nothing applied"
    );

    std::fs::write(&file, "not json").expect("write");
    assert!(matches!(
        apply_file(&store, &file, &[]).await,
        Err(MappingError::File { .. })
    ));
}
both_backends!(mapping_apply_and_export, apply_and_export);

fn user(source: &str, name: &str, email: Option<&str>) -> IdentityUser {
    let now = Timestamp::now();
    IdentityUser {
        id: Uuid::new_v4(),
        source: SourceName::new(source),
        external_id: None,
        user_name: name.into(),
        email: email.map(str::to_string),
        email_problem: None,
        given_name: Some(name.into()),
        family_name: Some("Test".into()),
        display_name: None,
        active: true,
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

fn group(source: &str, name: &str, dn: Option<&str>) -> IdentityGroup {
    let now = Timestamp::now();
    IdentityGroup {
        id: Uuid::new_v4(),
        source: SourceName::new(source),
        external_id: dn.map(str::to_string),
        display_name: name.into(),
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

async fn nested_groups_from_store(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let alice = user("ldap-corp", "alice", Some("alice@example.org"));
    let alice_okta = user("okta", "alice-okta", Some("alice@example.org"));
    let nomail = user("ldap-corp", "svc", None);
    let team = group(
        "ldap-corp",
        "team-a",
        Some("cn=team-a,ou=groups,dc=example,dc=org"),
    );
    let admins = group(
        "ldap-corp",
        "api-admins",
        Some("cn=api-admins,ou=groups,dc=example,dc=org"),
    );
    let mut tx = store.begin().await.expect("tx");
    for u in [&alice, &alice_okta, &nomail] {
        identities::insert_user(&mut tx, u, &[])
            .await
            .expect("user");
    }
    for g in [&team, &admins] {
        identities::insert_group(&mut tx, g).await.expect("group");
    }
    let member = |id, kind| GroupMember { id, kind };
    identities::add_members(
        &mut tx,
        team.id,
        &[
            member(alice.id, MemberKind::User),
            member(nomail.id, MemberKind::User),
        ],
    )
    .await
    .expect("members");
    // team-a is nested in api-admins, and (a cycle) api-admins in team-a.
    identities::add_members(&mut tx, admins.id, &[member(team.id, MemberKind::Group)])
        .await
        .expect("nested");
    identities::add_members(&mut tx, team.id, &[member(admins.id, MemberKind::Group)])
        .await
        .expect("cycle");
    tx.commit().await.expect("commit");

    let config = MappingConfig {
        rules: vec![config_rule(
            "Admins",
            10,
            &["ldap-corp:CN=API-Admins,OU=Groups,DC=example,DC=org"],
        )],
        ..MappingConfig::default()
    };
    sync_config_rules(&store, &config).await.expect("sync");
    let mut conn = store.pool().acquire().await.expect("conn");
    let people = load_people(&mut conn).await.expect("load");
    assert_eq!(people.len(), 3);
    let rules: Vec<_> = list(&store)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.rule)
        .collect();
    let state = desired_state(&people, &rules, &config.resolve_options());
    assert_eq!(state.users.len(), 1, "{state:?}");
    assert_eq!(state.users[0].email, "alice@example.org");
    assert_eq!(state.users[0].group.as_deref(), Some("Admins"));
    assert_eq!(state.users[0].sources.len(), 2);

    let explanation = explain_email(&store, &config, "Alice@Example.org")
        .await
        .expect("explain");
    assert_eq!(explanation.identities.len(), 2);
    assert!(explanation.matches[0].won);
    assert_eq!(explanation.users.len(), 1);
}
both_backends!(mapping_nested_groups_from_store, nested_groups_from_store);

#[derive(serde::Deserialize)]
struct FileWithMapping {
    mapping: MappingConfig,
}

fn read_mapping_section(path: &std::path::Path) -> MappingConfig {
    let text = std::fs::read_to_string(path).expect("read config");
    let file: FileWithMapping = toml::from_str(&text).expect("valid TOML");
    assert_eq!(file.mapping.validate("mapping"), vec![]);
    file.mapping
}

/// What the service does at start and on SIGHUP: read the file, apply it.
async fn config_file_reload(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tyk-idsync.toml");
    let version_one = r#"
[mapping]
unmapped_policy = "ignore"

[[mapping.rules]]
org_id = "org1"
name = "Developers"
priority = 10
mappings_sso = ["okta:Platform Team"]
permissions = { apis = "write" }
"#;
    std::fs::write(&path, version_one).expect("write");
    let report = sync_config_rules(&store, &read_mapping_section(&path))
        .await
        .expect("start");
    assert_eq!(report.added.len(), 1);

    let version_two = version_one.replace("priority = 10", "priority = 30")
        + r#"
[[mapping.rules]]
org_id = "org1"
name = "Readers"
mappings_sso = ["ldap-corp:cn=*,ou=groups,dc=example,dc=org"]
permissions = { apis = "read" }
"#;
    std::fs::write(&path, version_two).expect("rewrite");
    let report = sync_config_rules(&store, &read_mapping_section(&path))
        .await
        .expect("SIGHUP");
    assert_eq!(
        (
            report.added.len(),
            report.updated.len(),
            report.removed.len()
        ),
        (1, 1, 0)
    );
    let stored: Vec<_> = list(&store)
        .await
        .expect("list")
        .into_iter()
        .map(|s| (s.rule.name, s.rule.priority))
        .collect();
    assert_eq!(
        stored,
        vec![("Developers".into(), 30), ("Readers".into(), 0)]
    );
    assert_eq!(mapping_events(&store).await, 2);
}
both_backends!(mapping_config_file_reload, config_file_reload);

//! Groups, memberships, nesting, disabled users and incremental polls
//! against a real slapd, into a real store (SQLite and PostgreSQL).

use std::collections::{BTreeMap, BTreeSet};

use secrecy::SecretString;
use tyk_idsync::domain::{EventKind, SourceName};
use tyk_idsync::ldap::config::{LdapSourceConfig, MembershipMode};
use tyk_idsync::ldap::poller::{PollKind, PollOptions, run_once, run_poll};
use tyk_idsync::store::{Store, events, identities};

use crate::both_backends;
use crate::support::slapd::{SUFFIX, Slapd};
use crate::support::{Db, fresh_store};

pub fn ldap_config(slapd: &Slapd) -> LdapSourceConfig {
    LdapSourceConfig {
        url: slapd.url(),
        bind_dn: slapd.bind_dn().into(),
        bind_password: Some(SecretString::from(slapd.bind_password().to_string())),
        user_base: format!("ou=people,{SUFFIX}"),
        group_base: format!("ou=groups,{SUFFIX}"),
        page_size: 3,
        disabled_filter: Some("(employeeType=disabled)".into()),
        ..LdapSourceConfig::default()
    }
}

pub fn person(uid: &str, extra: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\n\
         cn: {uid} Person\ngivenName: {uid}\nsn: Person\nmail: {uid}@example.org\n{extra}\n"
    )
}

fn directory() -> String {
    let mut ldif: String = ["u0", "u1", "u2", "u3", "u4"]
        .iter()
        .map(|u| person(u, ""))
        .collect();
    ldif.push_str(&person("gone", "employeeType: disabled\n"));
    ldif.push_str(&format!(
        "dn: ou=emea,ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: emea\n\n\
         dn: cn=eng,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: eng\n\
         member: uid=u0,ou=people,{SUFFIX}\n\n\
         dn: cn=backend,ou=groups,{SUFFIX}\nobjectClass: groupOfUniqueNames\ncn: backend\n\
         uniqueMember: uid=u1,ou=people,{SUFFIX}\nuniqueMember: cn=eng,ou=groups,{SUFFIX}\n\n\
         dn: cn=posix,ou=groups,{SUFFIX}\nobjectClass: posixGroup\ncn: posix\ngidNumber: 5000\n\
         memberUid: u2\nmemberUid: nobody\n\n\
         dn: cn=ops,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: ops\n\
         member: uid=u3,ou=people,{SUFFIX}\n\n\
         dn: cn=ops,ou=emea,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: ops\n\
         member: uid=u4,ou=people,{SUFFIX}\n\n"
    ));
    // eng ∋ backend closes the cycle eng → backend → eng.
    ldif.push_str(&format!(
        "dn: cn=all,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: all\n\
         member: cn=backend,ou=groups,{SUFFIX}\n\n"
    ));
    ldif
}

/// Group display name → sorted member names (logins, or group names).
pub async fn memberships(store: &Store, source: &SourceName) -> BTreeMap<String, BTreeSet<String>> {
    let mut conn = store.pool().acquire().await.expect("conn");
    let users = identities::list_users(&mut conn, source)
        .await
        .expect("users");
    let groups = identities::list_groups(&mut conn, source)
        .await
        .expect("groups");
    let mut names: BTreeMap<uuid::Uuid, String> =
        users.iter().map(|u| (u.id, u.user_name.clone())).collect();
    names.extend(
        groups
            .iter()
            .map(|g| (g.id, format!("group:{}", g.display_name))),
    );
    let mut out = BTreeMap::new();
    for g in &groups {
        let members = identities::list_members(&mut conn, g.id)
            .await
            .expect("members");
        out.insert(
            g.display_name.clone(),
            members.iter().map(|m| names[&m.id].clone()).collect(),
        );
    }
    out
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn active_of(store: &Store, source: &SourceName, login: &str) -> Option<bool> {
    let mut conn = store.pool().acquire().await.expect("conn");
    identities::find_user_by_user_name(&mut conn, source, login)
        .await
        .expect("find")
        .map(|u| u.active)
}

async fn pending(store: &Store) -> Vec<(EventKind, Option<String>)> {
    let mut conn = store.pool().acquire().await.expect("conn");
    events::pending(&mut conn, 10_000)
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.kind, e.email))
        .collect()
}

async fn groups_and_memberships(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let slapd = Slapd::start();
    slapd.add(&directory());
    let cfg = ldap_config(&slapd);
    let pw = SecretString::from(slapd.bind_password().to_string());
    let source = SourceName::new("corp");

    let report = run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
        .await
        .expect("first poll");
    assert_eq!(
        (report.users_read, report.groups_read),
        (6, 6),
        "{report:?}"
    );
    assert_eq!(report.groups.groups_created, 6);
    assert!(
        report.cycles.is_empty(),
        "no cycle yet: {:?}",
        report.cycles
    );
    let emea_ops = format!("cn=ops,ou=emea,ou=groups,{SUFFIX}");
    let ops = format!("cn=ops,ou=groups,{SUFFIX}");
    let expected = BTreeMap::from([
        ("eng".to_string(), set(&["u0"])),
        ("backend".to_string(), set(&["u1", "group:eng"])),
        ("posix".to_string(), set(&["u2"])),
        (ops.clone(), set(&["u3"])),
        (emea_ops.clone(), set(&["u4"])),
        ("all".to_string(), set(&["group:backend"])),
    ]);
    assert_eq!(memberships(&store, &source).await, expected);
    assert_eq!(
        active_of(&store, &source, "gone").await,
        Some(false),
        "disabled filter"
    );
    assert_eq!(active_of(&store, &source, "u0").await, Some(true));

    // Nested groups reach the mapping: u0 is in eng, backend (∋ eng) and all.
    let mut conn = store.pool().acquire().await.expect("conn");
    let people = tyk_idsync::mapping::input::load_people(&mut conn)
        .await
        .expect("people");
    drop(conn);
    let u0 = people.iter().find(|p| p.user_name == "u0").expect("u0");
    let groups: BTreeSet<String> = u0.groups.iter().map(|g| g.display_name.clone()).collect();
    assert_eq!(groups, set(&["eng", "backend", "all"]));

    // A cycle (eng ∋ all ∋ backend ∋ eng) is reported and tolerated.
    slapd.modify(&format!(
        "dn: cn=eng,ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\nmember: cn=all,ou=groups,{SUFFIX}\n"
    ));
    let report = run_once(&store, &source, &cfg, &pw, PollKind::Incremental, false)
        .await
        .expect("cycle poll");
    assert!(!report.cycles.is_empty(), "{report:?}");
    assert_eq!(report.groups.members_added, 1);

    // A removed membership is applied on the next poll, with an event that
    // names the person, so the sync worker looks at just them.
    let before = pending(&store).await.len();
    slapd.modify(&format!(
        "dn: cn=eng,ou=groups,{SUFFIX}\nchangetype: modify\ndelete: member\nmember: uid=u0,ou=people,{SUFFIX}\n"
    ));
    let report = run_once(&store, &source, &cfg, &pw, PollKind::Incremental, false)
        .await
        .expect("removal poll");
    assert_eq!(report.groups.members_removed, 1, "{report:?}");
    assert!(!memberships(&store, &source).await["eng"].contains("u0"));
    let new_events = pending(&store).await.split_off(before);
    assert_eq!(
        new_events,
        vec![(
            EventKind::MembershipChanged,
            Some("u0@example.org".to_string())
        )]
    );

    // A disabled account is deactivated, then reactivated.
    slapd.modify(&format!(
        "dn: uid=u2,ou=people,{SUFFIX}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n"
    ));
    run_once(&store, &source, &cfg, &pw, PollKind::Incremental, false)
        .await
        .expect("disable poll");
    assert_eq!(active_of(&store, &source, "u2").await, Some(false));
    slapd.modify(&format!(
        "dn: uid=u2,ou=people,{SUFFIX}\nchangetype: modify\ndelete: employeeType\n"
    ));
    run_once(&store, &source, &cfg, &pw, PollKind::Incremental, false)
        .await
        .expect("enable poll");
    assert_eq!(active_of(&store, &source, "u2").await, Some(true));

    // A deleted group disappears with its memberships.
    slapd.delete(&emea_ops);
    let report = run_once(&store, &source, &cfg, &pw, PollKind::Incremental, false)
        .await
        .expect("group deletion poll");
    assert_eq!(report.groups.groups_deleted, 1);
    let now = memberships(&store, &source).await;
    assert!(!now.contains_key(&emea_ops));
    // With the clash gone, the remaining ops group takes its plain name.
    assert_eq!(now.get("ops"), Some(&set(&["u3"])), "{now:?}");

    // Nothing changed: a poll writes nothing.
    let before = pending(&store).await.len();
    let report = run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
        .await
        .expect("idle poll");
    assert_eq!(
        (report.changes, report.groups.changes()),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(pending(&store).await.len(), before);
}
both_backends!(ldap_groups, groups_and_memberships);

async fn incremental_polls_read_only_changed_users(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let slapd = Slapd::start();
    let ldif: String = (0..20).map(|i| person(&format!("p{i}"), "")).collect();
    slapd.add(&ldif);
    let cfg = ldap_config(&slapd);
    let pw = SecretString::from(slapd.bind_password().to_string());
    let source = SourceName::new("corp");
    let full = PollOptions {
        kind: PollKind::Full,
        force: false,
        since: None,
    };
    run_poll(&store, &source, &cfg, &pw, full)
        .await
        .expect("full");
    // slapd's modifyTimestamp has one-second resolution.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let since = tyk_idsync::domain::Timestamp::now();
    slapd.modify(&format!(
        "dn: uid=p7,ou=people,{SUFFIX}\nchangetype: modify\nreplace: mail\nmail: seven@example.org\n"
    ));
    slapd.delete(&format!("uid=p8,ou=people,{SUFFIX}"));
    let incremental = PollOptions {
        kind: PollKind::Incremental,
        force: false,
        since: Some(since),
    };
    let report = run_poll(&store, &source, &cfg, &pw, incremental)
        .await
        .expect("incremental");
    assert_eq!((report.users_read, report.changes), (1, 1), "{report:?}");
    let mut conn = store.pool().acquire().await.expect("conn");
    let p7 = identities::find_user_by_user_name(&mut conn, &source, "p7")
        .await
        .expect("find")
        .expect("p7");
    assert_eq!(p7.email.as_deref(), Some("seven@example.org"));
    assert_eq!(
        identities::count_users(&mut conn, &source)
            .await
            .expect("count"),
        20
    );
    drop(conn);
    let report = run_poll(&store, &source, &cfg, &pw, full)
        .await
        .expect("full");
    assert_eq!((report.users_read, report.changes), (19, 1));
}
both_backends!(ldap_incremental, incremental_polls_read_only_changed_users);

async fn member_of_mode(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let slapd = Slapd::start();
    slapd.add(&directory());
    let cfg = LdapSourceConfig {
        membership: MembershipMode::MemberOf,
        ..ldap_config(&slapd)
    };
    let pw = SecretString::from(slapd.bind_password().to_string());
    let source = SourceName::new("corp");
    run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
        .await
        .expect("poll");
    // The memberof overlay covers groupOfNames only.
    let m = memberships(&store, &source).await;
    assert_eq!(m["eng"], set(&["u0"]));
    assert_eq!(m[&format!("cn=ops,ou=groups,{SUFFIX}")], set(&["u3"]));
    assert_eq!(
        m["all"],
        set(&["group:backend"]),
        "nested via the group's memberOf: {m:?}"
    );
}
both_backends!(ldap_member_of, member_of_mode);

async fn slapd_killed_in_the_middle_of_a_poll(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let mut slapd = Slapd::start();
    let ldif: String = (0..1500).map(|i| person(&format!("k{i}"), "")).collect();
    slapd.add(&ldif);
    let cfg = LdapSourceConfig {
        page_size: 5,
        max_removal_percent: 100,
        ..ldap_config(&slapd)
    };
    let pw = SecretString::from(slapd.bind_password().to_string());
    let source = SourceName::new("corp");
    run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
        .await
        .expect("first poll");
    let count = |store: Store| async move {
        let mut conn = store.pool().acquire().await.expect("conn");
        identities::count_users(&mut conn, &SourceName::new("corp"))
            .await
            .expect("count")
    };
    assert_eq!(count(store.clone()).await, 1500);
    let events_before = pending(&store).await.len();

    // Kill slapd while a full poll is reading its 300 pages. A strict read
    // fails; a lenient one would see a third of the directory and delete
    // the rest (the guard is off here: 100%).
    let mut failed_mid_poll = false;
    for delay_ms in [30, 15, 5, 1] {
        let (store2, source2, cfg2, pw2) = (store.clone(), source.clone(), cfg.clone(), pw.clone());
        let poll = tokio::spawn(async move {
            run_once(&store2, &source2, &cfg2, &pw2, PollKind::Full, false).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        slapd.kill();
        let result = poll.await.expect("join");
        assert_eq!(
            count(store.clone()).await,
            1500,
            "nobody removed ({result:?})"
        );
        slapd.restart();
        if result.is_err() {
            failed_mid_poll = true;
            break;
        }
    }
    assert!(failed_mid_poll, "slapd was never killed during a poll");
    assert_eq!(
        pending(&store).await.len(),
        events_before,
        "no event written"
    );
    let report = run_once(&store, &source, &cfg, &pw, PollKind::Full, false)
        .await
        .expect("poll after restart");
    assert_eq!((report.users_read, report.changes), (1500, 0));
}
both_backends!(ldap_killed_mid_poll, slapd_killed_in_the_middle_of_a_poll);

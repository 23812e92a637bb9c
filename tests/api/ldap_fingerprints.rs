//! A full poll reads back only users and member lists whose fingerprint
//! differs from what the directory says: the fingerprints must never hide
//! a change, whether it happened in the directory or in the store.

use std::collections::BTreeMap;

use secrecy::SecretString;
use tyk_idsync::domain::{MemberKind, SourceName};
use tyk_idsync::ldap::poller::{PollKind, PollReport, run_once};
use tyk_idsync::store::{Store, identities};

use crate::both_backends;
use crate::ldap_groups::{ldap_config, memberships, person, set};
use crate::support::slapd::{SUFFIX, Slapd};
use crate::support::{Db, fresh_store};

fn directory() -> String {
    let mut ldif: String = ["a", "b", "c"].iter().map(|u| person(u, "")).collect();
    ldif.push_str(&format!(
        "dn: cn=eng,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: eng\n\
         member: uid=a,ou=people,{SUFFIX}\nmember: uid=b,ou=people,{SUFFIX}\n\n\
         dn: cn=ops,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: ops\n\
         member: uid=c,ou=people,{SUFFIX}\n\n"
    ));
    ldif
}

fn changes(report: &PollReport) -> (usize, usize, usize) {
    (
        report.changes,
        report.groups.members_added,
        report.groups.members_removed,
    )
}

async fn user(store: &Store, source: &SourceName, login: &str) -> tyk_idsync::domain::IdentityUser {
    let mut conn = store.pool().acquire().await.expect("conn");
    identities::find_user_by_user_name(&mut conn, source, login)
        .await
        .expect("find")
        .expect("stored")
}

async fn fingerprints_never_hide_changes(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let slapd = Slapd::start();
    slapd.add(&directory());
    let cfg = ldap_config(&slapd);
    let pw = SecretString::from(slapd.bind_password().to_string());
    let source = SourceName::new("corp");
    let full = || run_once(&store, &source, &cfg, &pw, PollKind::Full, false);

    let report = full().await.expect("first poll");
    assert_eq!(changes(&report), (3, 3, 0), "{report:?}");
    let report = full().await.expect("nothing changed");
    assert_eq!(changes(&report), (0, 0, 0), "{report:?}");
    assert!(!report.wrote());

    // Changed in the directory between polls: attributes and memberships.
    slapd.modify(&format!(
        "dn: uid=a,ou=people,{SUFFIX}\nchangetype: modify\nreplace: mail\nmail: A.New@Example.org\n-\n\
         replace: givenName\ngivenName: Alicia\n\n\
         dn: uid=b,ou=people,{SUFFIX}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n\n\
         dn: cn=eng,ou=groups,{SUFFIX}\nchangetype: modify\ndelete: member\nmember: uid=b,ou=people,{SUFFIX}\n-\n\
         add: member\nmember: uid=c,ou=people,{SUFFIX}\n"
    ));
    let report = full().await.expect("after ldapmodify");
    assert_eq!(changes(&report), (2, 1, 1), "{report:?}");
    let a = user(&store, &source, "a").await;
    assert_eq!(
        (a.email.as_deref(), a.given_name.as_deref()),
        (Some("a.new@example.org"), Some("Alicia"))
    );
    assert!(!user(&store, &source, "b").await.active, "deactivated");
    let expected = BTreeMap::from([
        ("eng".to_string(), set(&["a", "c"])),
        ("ops".to_string(), set(&["c"])),
    ]);
    assert_eq!(memberships(&store, &source).await, expected);
    assert_eq!(changes(&full().await.expect("settled")), (0, 0, 0));

    // Changed in the store by another path: the fingerprints are dropped
    // with the change, so the next full poll compares and repairs.
    let mut tampered = user(&store, &source, "c").await;
    tampered.given_name = Some("Mallory".into());
    tampered.version += 1;
    let mut conn = store.pool().acquire().await.expect("conn");
    identities::update_user(&mut conn, &tampered, &[], None)
        .await
        .expect("update");
    let ops = identities::list_groups(&mut conn, &source)
        .await
        .expect("groups")
        .into_iter()
        .find(|g| g.display_name == "ops")
        .expect("ops");
    identities::remove_members(&mut conn, ops.id, &[tampered.id])
        .await
        .expect("remove");
    let eng = identities::list_groups(&mut conn, &source)
        .await
        .expect("groups")
        .into_iter()
        .find(|g| g.display_name == "eng")
        .expect("eng");
    let b = user(&store, &source, "b").await;
    identities::add_members(
        &mut conn,
        eng.id,
        &[tyk_idsync::domain::GroupMember {
            id: b.id,
            kind: MemberKind::User,
        }],
    )
    .await
    .expect("add");
    drop(conn);
    let report = full().await.expect("repair");
    assert_eq!(changes(&report), (1, 1, 1), "{report:?}");
    assert_eq!(
        user(&store, &source, "c").await.given_name.as_deref(),
        Some("c")
    );
    assert_eq!(memberships(&store, &source).await, expected);

    // Fingerprints lost altogether (e.g. a store from before they existed):
    // everything is compared once, nothing changes, and they are written.
    let mut conn = store.pool().acquire().await.expect("conn");
    for table in ["ldap_user_fingerprints", "ldap_group_fingerprints"] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *conn)
            .await
            .expect("delete");
    }
    drop(conn);
    assert_eq!(changes(&full().await.expect("no prints")), (0, 0, 0));
    let mut conn = store.pool().acquire().await.expect("conn");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ldap_user_fingerprints")
        .fetch_one(&mut *conn)
        .await
        .expect("count");
    drop(conn);
    assert_eq!(count, 3);

    // A user whose fingerprint is current but who is gone is still deleted.
    slapd.delete(&format!("uid=a,ou=people,{SUFFIX}"));
    let report = full().await.expect("deleted");
    assert_eq!(report.changes, 1, "{report:?}");
    assert_eq!(memberships(&store, &source).await["eng"], set(&["c"]));
}

both_backends!(ldap_fingerprint_changes, fingerprints_never_hide_changes);

//! Issue #16, in the store: the database itself refuses a group member that
//! is not a user or group of the group's source, whoever writes it (plain
//! SQL included), removes a deleted user's or group's memberships, and the
//! migration that brought the rule removed the rows that broke it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use pretty_assertions::assert_eq;
use serde_json::json;
use sqlx::AnyPool;
use tyk_idsync::domain::{
    GroupMember, IdentityGroup, IdentityUser, MemberKind, SourceName, Timestamp,
};
use tyk_idsync::store::{Store, StoreOptions, bulk, identities};
use uuid::Uuid;

use crate::both_backends;
use crate::support::{Db, fresh_database_url, fresh_store};

fn user(source: &str, name: &str) -> IdentityUser {
    let now = Timestamp::now();
    IdentityUser {
        id: Uuid::new_v4(),
        source: SourceName::new(source),
        external_id: None,
        user_name: name.into(),
        email: Some(format!("{name}@example.org")),
        email_problem: None,
        given_name: None,
        family_name: None,
        display_name: None,
        active: true,
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
        external_id: None,
        display_name: name.into(),
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// Source `a` with user `ua` and groups `ga`, `nested`; source `b` with
/// user `ub` and group `gb`.
struct People {
    ua: IdentityUser,
    ub: IdentityUser,
    ga: IdentityGroup,
    nested: IdentityGroup,
    gb: IdentityGroup,
}

/// Inserts the people with plain SQL (so it works on any schema version).
async fn insert_people(pool: &AnyPool) -> People {
    let people = People {
        ua: user("a", "ua"),
        ub: user("b", "ub"),
        ga: group("a", "ga"),
        nested: group("a", "nested"),
        gb: group("b", "gb"),
    };
    for u in [&people.ua, &people.ub] {
        sqlx::query(
            "INSERT INTO identity_users (id, source, user_name, user_name_lc, active, \
             attributes, version, created_at, updated_at) VALUES ($1, $2, $3, $3, 1, '{}', 1, 0, 0)",
        )
        .bind(u.id.to_string())
        .bind(u.source.as_str())
        .bind(&u.user_name)
        .execute(pool)
        .await
        .expect("user");
    }
    for g in [&people.ga, &people.nested, &people.gb] {
        sqlx::query(
            "INSERT INTO identity_groups (id, source, display_name, display_name_lc, \
             attributes, version, created_at, updated_at) VALUES ($1, $2, $3, $3, '{}', 1, 0, 0)",
        )
        .bind(g.id.to_string())
        .bind(g.source.as_str())
        .bind(&g.display_name)
        .execute(pool)
        .await
        .expect("group");
    }
    people
}

async fn insert_member(
    pool: &AnyPool,
    group: Uuid,
    member: Uuid,
    kind: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO identity_group_members (group_id, member_id, member_kind) VALUES ($1, $2, $3)",
    )
    .bind(group.to_string())
    .bind(member.to_string())
    .bind(kind)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Every member row, as (group, member, kind), sorted.
async fn member_rows(pool: &AnyPool) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT group_id, member_id, member_kind FROM identity_group_members")
            .fetch_all(pool)
            .await
            .expect("rows");
    rows.sort();
    rows
}

fn row(group: Uuid, member: Uuid, kind: &str) -> (String, String, String) {
    (group.to_string(), member.to_string(), kind.to_string())
}

async fn the_database_refuses_members_outside_the_source(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let pool = store.pool();
    let p = insert_people(pool).await;
    insert_member(pool, p.ga.id, p.ua.id, "User")
        .await
        .expect("own user");
    insert_member(pool, p.ga.id, p.nested.id, "Group")
        .await
        .expect("own group");
    let refused = [
        (p.ub.id, "User", "another source's user"),
        (p.gb.id, "Group", "another source's group"),
        (Uuid::new_v4(), "User", "an id naming nobody"),
        (Uuid::new_v4(), "Group", "an id naming no group"),
        (p.ub.id, "Group", "another source's user as a group"),
    ];
    for (member, kind, what) in refused {
        let error = insert_member(pool, p.ga.id, member, kind)
            .await
            .expect_err(what);
        let error = tyk_idsync::store::StoreError::from(error);
        let named = error.member_outside_source();
        assert!(named.is_some(), "{what}: {error}");
        if matches!(db, Db::Postgres) {
            assert_eq!(named, Some(Some(member.to_string())), "{what}");
        }
    }
    // A user of the source stored as a group (the kind must be right too).
    let other_ua = user("a", "ua2");
    identities::insert_user(&mut pool.acquire().await.expect("conn"), &other_ua, &[])
        .await
        .expect("user");
    assert!(
        insert_member(pool, p.ga.id, other_ua.id, "Group")
            .await
            .is_err()
    );
    // Moving a valid row elsewhere is refused as well.
    let moved =
        sqlx::query("UPDATE identity_group_members SET member_id = $1 WHERE member_id = $2")
            .bind(p.ub.id.to_string())
            .bind(p.ua.id.to_string())
            .execute(pool)
            .await;
    assert!(moved.is_err(), "an update to another source's user");
    // So is giving a user or group another source.
    for table in ["identity_users", "identity_groups"] {
        let changed = sqlx::query(&format!(
            "UPDATE {table} SET source = 'b' WHERE source = 'a'"
        ))
        .execute(pool)
        .await;
        assert!(changed.is_err(), "{table}: a member's source cannot change");
    }
    // The multi-row insert the LDAP poller uses obeys the same rule: its
    // statement is refused as a whole.
    let mut conn = pool.acquire().await.expect("conn");
    let edges = [
        (
            p.nested.id,
            GroupMember {
                id: p.ua.id,
                kind: MemberKind::User,
            },
        ),
        (
            p.nested.id,
            GroupMember {
                id: p.ub.id,
                kind: MemberKind::User,
            },
        ),
    ];
    assert!(bulk::add_members(&mut conn, &edges).await.is_err());
    assert!(bulk::add_members(&mut conn, &edges[..1]).await.is_ok());
    drop(conn);
    assert_eq!(member_rows(pool).await, {
        let mut rows = vec![
            row(p.ga.id, p.ua.id, "User"),
            row(p.ga.id, p.nested.id, "Group"),
            row(p.nested.id, p.ua.id, "User"),
        ];
        rows.sort();
        rows
    });

    // Deleting a user or a group removes its memberships, whoever deletes.
    sqlx::query("DELETE FROM identity_users WHERE id = $1")
        .bind(p.ua.id.to_string())
        .execute(pool)
        .await
        .expect("delete user");
    assert_eq!(
        member_rows(pool).await,
        vec![row(p.ga.id, p.nested.id, "Group")]
    );
    sqlx::query("DELETE FROM identity_groups WHERE id = $1")
        .bind(p.nested.id.to_string())
        .execute(pool)
        .await
        .expect("delete group");
    assert_eq!(member_rows(pool).await, vec![]);
}
both_backends!(
    members_within_source,
    the_database_refuses_members_outside_the_source
);

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The migrations before `20261202000100_members_within_source`, for this
/// engine, in a directory of their own.
fn earlier_migrations(db: Db) -> tempfile::TempDir {
    let dialect = match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    };
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(&from).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.as_bytes() < b"20261202000100".as_slice() {
            std::fs::copy(&path, dir.path().join(name)).expect("copy");
        }
    }
    dir
}

async fn the_migration_removes_cross_source_and_dangling_members(db: Db) {
    let (url, _guard) = fresh_database_url(db).await;
    let store = Store::connect(&StoreOptions::new(url))
        .await
        .expect("connect");
    let earlier = earlier_migrations(db);
    sqlx::migrate::Migrator::new(earlier.path())
        .await
        .expect("migrator")
        .run(store.pool())
        .await
        .expect("earlier migrations");
    let pool = store.pool();
    let p = insert_people(pool).await;
    let nobody = Uuid::new_v4();
    // Rows the old schema let in: the escalation of issue #16 and a
    // dangling member with its kept member object.
    insert_member(pool, p.ga.id, p.ua.id, "User")
        .await
        .expect("own");
    insert_member(pool, p.ga.id, p.nested.id, "Group")
        .await
        .expect("own group");
    insert_member(pool, p.ga.id, p.ub.id, "User")
        .await
        .expect("cross-source user");
    insert_member(pool, p.ga.id, p.gb.id, "Group")
        .await
        .expect("cross-source group");
    insert_member(pool, p.ga.id, nobody, "User")
        .await
        .expect("dangling");
    insert_member(pool, p.gb.id, p.ub.id, "User")
        .await
        .expect("b's own");
    sqlx::query("INSERT INTO scim_member_refs (group_id, member_id, body) VALUES ($1, $2, '{}')")
        .bind(p.ga.id.to_string())
        .bind(nobody.to_string())
        .execute(pool)
        .await
        .expect("kept member object");
    let events_before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM identity_events")
        .fetch_one(pool)
        .await
        .expect("events");

    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let removed = {
        let _default = tracing::subscriber::set_default(subscriber);
        store
            .migrate_counting_removed_members()
            .await
            .expect("migrate")
    };
    assert_eq!(removed, 3);
    let logged = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8");
    assert!(
        logged.contains("WARN")
            && logged.contains("removed 3 cross-source or dangling group members"),
        "{logged}"
    );
    let mut kept = vec![
        row(p.ga.id, p.ua.id, "User"),
        row(p.ga.id, p.nested.id, "Group"),
        row(p.gb.id, p.ub.id, "User"),
    ];
    kept.sort();
    assert_eq!(member_rows(pool).await, kept);
    // The kept member objects went with the table (20261203000100).
    let refs = sqlx::query("SELECT COUNT(*) FROM scim_member_refs")
        .fetch_one(pool)
        .await;
    assert!(refs.is_err(), "scim_member_refs still exists");
    // One membership event per removed row, with no e-mail (so the sync
    // worker looks at everyone and moves an escalated person back).
    let mut events: Vec<(String, String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT source, kind, subject_id, email FROM identity_events ORDER BY seq")
            .fetch_all(pool)
            .await
            .expect("events");
    let events = events.split_off(usize::try_from(events_before).expect("count"));
    let mut subjects: Vec<Option<String>> = events.iter().map(|e| e.2.clone()).collect();
    subjects.sort();
    let mut expected: Vec<Option<String>> = [p.ub.id, p.gb.id, nobody]
        .iter()
        .map(|id| Some(id.to_string()))
        .collect();
    expected.sort();
    assert_eq!(subjects, expected);
    assert!(
        events
            .iter()
            .all(|e| e.0 == "a" && e.1 == "membership_changed" && e.3.is_none()),
        "{events:?}"
    );
    // And the rule holds from now on; a second run removes nothing.
    assert!(insert_member(pool, p.ga.id, p.ub.id, "User").await.is_err());
    assert_eq!(
        store
            .migrate_counting_removed_members()
            .await
            .expect("again"),
        0
    );
}
both_backends!(
    migration_removes_members_outside_the_source,
    the_migration_removes_cross_source_and_dangling_members
);

/// PostgreSQL, concurrently: a member being deleted and a membership naming
/// it being added never leave a row naming nobody, whichever comes first
/// (the check locks the member as a foreign key check would).
#[tokio::test]
async fn a_concurrent_delete_of_the_member_never_leaves_a_dangling_row() {
    let (store, _guard) = fresh_store(Db::Postgres).await;
    let pool = store.pool().clone();
    let p = insert_people(&pool).await;
    let waiting = std::time::Duration::from_millis(300);

    // The delete first: the insert waits for it, then finds no member.
    let mut deleting = pool.begin().await.expect("begin");
    sqlx::query("DELETE FROM identity_users WHERE id = $1")
        .bind(p.ua.id.to_string())
        .execute(&mut *deleting)
        .await
        .expect("delete");
    let insert = tokio::spawn({
        let pool = pool.clone();
        let (group, member) = (p.ga.id, p.ua.id);
        async move { insert_member(&pool, group, member, "User").await }
    });
    tokio::time::sleep(waiting).await;
    assert!(!insert.is_finished(), "the insert waits for the delete");
    deleting.commit().await.expect("commit");
    let refused = insert.await.expect("join").expect_err("no member any more");
    assert!(
        tyk_idsync::store::StoreError::from(refused)
            .member_outside_source()
            .is_some()
    );

    // The insert first: the delete waits for it, then removes the row too.
    let mut inserting = pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO identity_group_members (group_id, member_id, member_kind) \
         VALUES ($1, $2, 'Group')",
    )
    .bind(p.ga.id.to_string())
    .bind(p.nested.id.to_string())
    .execute(&mut *inserting)
    .await
    .expect("insert");
    let delete = tokio::spawn({
        let pool = pool.clone();
        let group = p.nested.id;
        async move {
            sqlx::query("DELETE FROM identity_groups WHERE id = $1")
                .bind(group.to_string())
                .execute(&pool)
                .await
        }
    });
    tokio::time::sleep(waiting).await;
    assert!(!delete.is_finished(), "the delete waits for the insert");
    inserting.commit().await.expect("commit");
    delete.await.expect("join").expect("delete");
    assert_eq!(member_rows(&pool).await, vec![]);
}

/// Reads check the rule too: with the database's check switched off and
/// cross-source rows put in by hand, the mapping, a source's memberships
/// and a member's groups still never cross sources.
async fn membership_reads_never_cross_sources(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let pool = store.pool();
    let p = insert_people(pool).await;
    insert_member(pool, p.ga.id, p.ua.id, "User")
        .await
        .expect("own");
    insert_member(pool, p.gb.id, p.ub.id, "User")
        .await
        .expect("b's own");
    let switch_off = match db {
        Db::Sqlite => "DROP TRIGGER identity_group_members_within_source_insert",
        Db::Postgres => {
            "ALTER TABLE identity_group_members \
             DISABLE TRIGGER identity_group_members_within_source_insert"
        }
    };
    sqlx::query(switch_off)
        .execute(pool)
        .await
        .expect("switch off");
    // a's group names b's user directly, and b's group as a nested group.
    insert_member(pool, p.ga.id, p.ub.id, "User")
        .await
        .expect("bad row");
    insert_member(pool, p.nested.id, p.gb.id, "Group")
        .await
        .expect("bad row");

    let mut conn = pool.acquire().await.expect("conn");
    let people = tyk_idsync::mapping::input::load_people(&mut conn)
        .await
        .expect("people");
    let groups_of = |name: &str| -> Vec<(String, String)> {
        let person = people.iter().find(|p| p.user_name == name).expect("person");
        let mut groups: Vec<(String, String)> = person
            .groups
            .iter()
            .map(|g| (g.source.as_str().to_string(), g.display_name.clone()))
            .collect();
        groups.sort();
        groups
    };
    assert_eq!(groups_of("ub"), vec![("b".to_string(), "gb".to_string())]);
    assert_eq!(groups_of("ua"), vec![("a".to_string(), "ga".to_string())]);
    let a_memberships = identities::list_memberships(&mut conn, &SourceName::new("a"))
        .await
        .expect("memberships");
    assert_eq!(
        a_memberships
            .iter()
            .map(|(group, m)| (*group, m.id))
            .collect::<Vec<_>>(),
        vec![(p.ga.id, p.ua.id)]
    );
    let of_ub = identities::groups_of_member(&mut conn, &SourceName::new("a"), p.ub.id)
        .await
        .expect("groups");
    assert!(of_ub.is_empty(), "{of_ub:?}");
}
both_backends!(
    membership_reads_within_source,
    membership_reads_never_cross_sources
);

//! `tyk-idsync migrate-store`: SQLite → PostgreSQL → SQLite, nothing lost,
//! and a service runs on the copy.

use std::process::Command;

use serde_json::json;
use tyk_idsync::domain::{
    EventKind, GroupMember, IdentityGroup, IdentityUser, MemberKind, NewIdentityEvent, SourceName,
    Timestamp,
};
use tyk_idsync::store::{Store, StoreOptions, events, identities, settings};
use uuid::Uuid;

use crate::support::app::{spawn_app_with, test_config};
use crate::support::{Db, fresh_database_url};

const BIN: &str = env!("CARGO_BIN_EXE_tyk-idsync");

async fn populate(store: &Store) {
    let mut tx = store.begin().await.expect("begin");
    let src = SourceName::new("okta");
    let group = IdentityGroup {
        id: Uuid::new_v4(),
        source: src.clone(),
        external_id: Some("g-1".into()),
        display_name: "Platform".into(),
        attributes: json!({"displayName": "Platform"}),
        version: 3,
        created_at: Timestamp(1),
        updated_at: Timestamp(2),
    };
    identities::insert_group(&mut tx, &group)
        .await
        .expect("group");
    for i in 0..25 {
        let user = IdentityUser {
            id: Uuid::new_v4(),
            source: src.clone(),
            external_id: (i % 2 == 0).then(|| format!("ext-{i}")),
            user_name: format!("user{i}@example.org"),
            email: Some(format!("user{i}@example.org")),
            email_problem: None,
            given_name: None,
            family_name: Some("Ü-ñíçødé".into()),
            display_name: None,
            active: i % 3 != 0,
            attributes: json!({"i": i, "nested": {"k": [1, "two"]}}),
            version: 1,
            created_at: Timestamp(1_700_000_000_000 + i),
            updated_at: Timestamp(1_700_000_000_000 + i),
        };
        identities::insert_user(&mut tx, &user, &[format!("user{i}@example.org")])
            .await
            .expect("user");
        identities::add_members(
            &mut tx,
            group.id,
            &[GroupMember {
                id: user.id,
                kind: MemberKind::User,
            }],
        )
        .await
        .expect("member");
        events::append(
            &mut tx,
            &NewIdentityEvent {
                source: src.clone(),
                kind: EventKind::UserCreated,
                subject_id: Some(user.id),
                email: user.email.clone(),
                detail: json!({}),
            },
        )
        .await
        .expect("event");
    }
    settings::set(&mut tx, "scim.signing_key", "k3y")
        .await
        .expect("setting");
    tx.commit().await.expect("commit");
}

async fn snapshot(store: &Store) -> serde_json::Value {
    let mut conn = store.pool().acquire().await.expect("conn");
    let src = SourceName::new("okta");
    let users = identities::list_users(&mut conn, &src)
        .await
        .expect("users");
    let groups = identities::list_groups(&mut conn, &src)
        .await
        .expect("groups");
    let memberships = identities::list_memberships(&mut conn, &src)
        .await
        .expect("members");
    let events: Vec<_> = events::since(&mut conn, &src, 0)
        .await
        .expect("events")
        .into_iter()
        .map(|e| {
            (
                e.seq,
                e.kind.as_str(),
                e.subject_id,
                e.processed_at.map(|t| t.0),
            )
        })
        .collect();
    json!({
        "users": users,
        "groups": groups,
        "memberships": memberships.iter().map(|(g, m)| (g, m.id, m.kind.as_str())).collect::<Vec<_>>(),
        "events": events,
        "setting": settings::get(&mut conn, "scim.signing_key").await.expect("setting"),
    })
}

async fn open(url: &str) -> Store {
    let store = Store::connect(&StoreOptions::new(url))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn migrate_store(from: &str, to: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["migrate-store", "--from", from, "--to", to])
        .env_remove("TYK_IDSYNC_CONFIG")
        .output()
        .expect("run migrate-store")
}

#[tokio::test]
async fn state_survives_sqlite_to_postgres_and_back_and_a_service_runs_on_the_copy() {
    let (sqlite_url, _guard) = fresh_database_url(Db::Sqlite).await;
    let (pg_url, _) = fresh_database_url(Db::Postgres).await;
    let original = open(&sqlite_url).await;
    populate(&original).await;
    let expected = snapshot(&original).await;
    original.close().await;

    let out = migrate_store(&sqlite_url, &pg_url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("identity_users: 25 rows"), "{stdout}");
    let pg = open(&pg_url).await;
    assert_eq!(snapshot(&pg).await, expected);

    // The outbox sequence continues after the copied events.
    let mut conn = pg.pool().acquire().await.expect("conn");
    let next = events::append(
        &mut conn,
        &NewIdentityEvent {
            source: SourceName::new("okta"),
            kind: EventKind::MappingChanged,
            subject_id: None,
            email: None,
            detail: json!({}),
        },
    )
    .await
    .expect("append after copy");
    assert_eq!(next, 26);
    drop(conn);

    // A second copy into the now non-empty target is refused.
    let again = migrate_store(&sqlite_url, &pg_url);
    assert_eq!(again.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&again.stderr).contains("copy into an empty database"));

    // A service runs on the copied store.
    let (mut config, _) = test_config(Db::Postgres).await;
    config.database.url = pg_url.clone();
    let app = spawn_app_with(config, None).await;
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );

    // And back to a fresh SQLite file.
    let (back_url, _guard2) = fresh_database_url(Db::Sqlite).await;
    let out = migrate_store(&pg_url, &back_url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = open(&back_url).await;
    let mut round_trip = snapshot(&back).await;
    // The extra event appended on PostgreSQL came along too.
    let events = round_trip["events"].as_array_mut().expect("events");
    let extra = events.pop().expect("the event appended on PostgreSQL");
    assert_eq!(extra[0], 26);
    assert_eq!(extra[1], "mapping_changed");
    assert_eq!(round_trip, expected);
}

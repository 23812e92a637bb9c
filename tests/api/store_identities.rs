use pretty_assertions::assert_eq;
use serde_json::json;
use tyk_idsync::domain::{
    EventKind, GroupMember, IdentityGroup, IdentityUser, MemberKind, NewIdentityEvent, SourceName,
    Timestamp,
};
use tyk_idsync::store::{StoreError, events, identities};
use uuid::Uuid;

use crate::both_backends;
use crate::support::{Db, fresh_store};

fn user(source: &str, user_name: &str, email: &str) -> IdentityUser {
    let now = Timestamp::now();
    IdentityUser {
        id: Uuid::new_v4(),
        source: SourceName::new(source),
        external_id: Some(format!("ext-{user_name}")),
        user_name: user_name.into(),
        email: Some(email.into()),
        email_problem: None,
        given_name: Some("Ada".into()),
        family_name: None,
        display_name: Some("Ada L".into()),
        active: true,
        attributes: json!({"userName": user_name, "urn:x:ext": {"k": [1, 2]}}),
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

async fn users_round_trip_and_stay_inside_their_source(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    let okta = SourceName::new("okta");
    let ada = user("okta", "Ada@Example.org", "ada@example.org");
    identities::insert_user(&mut conn, &ada, &["ada@example.org".into()])
        .await
        .expect("insert");

    let read = identities::get_user(&mut conn, &okta, ada.id)
        .await
        .expect("get");
    assert_eq!(read.as_ref(), Some(&ada));
    // Another source cannot see it, by id or by name.
    let entra = SourceName::new("entra");
    assert_eq!(
        identities::get_user(&mut conn, &entra, ada.id)
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        identities::find_user_by_user_name(&mut conn, &entra, "ada@example.org")
            .await
            .expect("find"),
        None
    );
    // userName is unique per source, case-insensitively.
    let clash = user("okta", "ADA@EXAMPLE.ORG", "x@example.org");
    let err = identities::insert_user(&mut conn, &clash, &[])
        .await
        .expect_err("duplicate userName");
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                entity: "userName",
                ..
            }
        ),
        "{err:?}"
    );
    // ...but the same name in another source is fine.
    identities::insert_user(
        &mut conn,
        &user("entra", "ada@example.org", "ada@example.org"),
        &[],
    )
    .await
    .expect("other source");
    assert_eq!(
        identities::users_by_email(&mut conn, "ADA@example.org")
            .await
            .expect("by email")
            .len(),
        2
    );
}
both_backends!(
    users_round_trip,
    users_round_trip_and_stay_inside_their_source
);

async fn optimistic_update_rejects_a_stale_version(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    let mut ada = user("okta", "ada", "ada@example.org");
    identities::insert_user(&mut conn, &ada, &[])
        .await
        .expect("insert");
    ada.active = false;
    ada.version = 2;
    identities::update_user(&mut conn, &ada, &[], Some(1))
        .await
        .expect("first update");
    let stale = identities::update_user(&mut conn, &ada, &[], Some(1)).await;
    assert!(
        matches!(
            stale,
            Err(StoreError::Conflict {
                entity: "version",
                ..
            })
        ),
        "{stale:?}"
    );
    let read = identities::get_user(&mut conn, &ada.source, ada.id)
        .await
        .expect("get")
        .expect("some");
    assert!(!read.active);
    assert_eq!(read.version, 2);
}
both_backends!(optimistic_update, optimistic_update_rejects_a_stale_version);

async fn memberships_are_added_removed_and_cleaned_up(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    let src = SourceName::new("okta");
    let ada = user("okta", "ada", "ada@example.org");
    let bob = user("okta", "bob", "bob@example.org");
    let eng = group("okta", "Engineering");
    let platform = group("okta", "Platform");
    for u in [&ada, &bob] {
        identities::insert_user(&mut conn, u, &[])
            .await
            .expect("user");
    }
    for g in [&eng, &platform] {
        identities::insert_group(&mut conn, g).await.expect("group");
    }
    let dup = identities::insert_group(&mut conn, &group("okta", "engineering")).await;
    assert!(matches!(
        dup,
        Err(StoreError::Conflict {
            entity: "displayName",
            ..
        })
    ));

    let members = [
        GroupMember {
            id: ada.id,
            kind: MemberKind::User,
        },
        GroupMember {
            id: bob.id,
            kind: MemberKind::User,
        },
        GroupMember {
            id: platform.id,
            kind: MemberKind::Group,
        },
    ];
    let added = identities::add_members(&mut conn, eng.id, &members)
        .await
        .expect("add");
    assert_eq!(added.len(), 3);
    let again = identities::add_members(&mut conn, eng.id, &members[..1])
        .await
        .expect("add");
    assert!(again.is_empty(), "adding an existing member is a no-op");
    let removed = identities::remove_members(&mut conn, eng.id, &[bob.id, Uuid::new_v4()])
        .await
        .expect("remove");
    assert_eq!(removed, vec![bob.id]);
    let groups = identities::groups_of_member(&mut conn, &src, ada.id)
        .await
        .expect("groups");
    assert_eq!(
        groups.iter().map(|g| g.id).collect::<Vec<_>>(),
        vec![eng.id]
    );

    assert!(
        identities::delete_user(&mut conn, &src, ada.id)
            .await
            .expect("delete")
    );
    assert!(
        identities::delete_group(&mut conn, &src, platform.id)
            .await
            .expect("delete")
    );
    assert_eq!(
        identities::list_members(&mut conn, eng.id)
            .await
            .expect("members"),
        vec![]
    );
}
both_backends!(memberships, memberships_are_added_removed_and_cleaned_up);

async fn events_are_appended_in_order_and_marked_processed(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let mut tx = store.begin().await.expect("begin");
    let src = SourceName::new("ldap-corp");
    let mut seqs = Vec::new();
    for kind in [EventKind::UserCreated, EventKind::MembershipChanged] {
        seqs.push(
            events::append(
                &mut tx,
                &NewIdentityEvent {
                    source: src.clone(),
                    kind,
                    subject_id: Some(Uuid::new_v4()),
                    email: Some("ada@example.org".into()),
                    detail: json!({"why": "test"}),
                },
            )
            .await
            .expect("append"),
        );
    }
    tx.commit().await.expect("commit");
    let mut conn = store.pool().acquire().await.expect("conn");
    let pending = events::pending(&mut conn, 10).await.expect("pending");
    assert_eq!(pending.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(pending[1].kind, EventKind::MembershipChanged);
    assert_eq!(events::depth(&mut conn).await.expect("depth").0, 2);
    events::mark_processed(&mut conn, &seqs[..1])
        .await
        .expect("mark");
    assert_eq!(events::depth(&mut conn).await.expect("depth").0, 1);
}
both_backends!(
    events_outbox,
    events_are_appended_in_order_and_marked_processed
);

async fn a_rolled_back_change_leaves_no_event(db: Db) {
    let (store, _guard) = fresh_store(db).await;
    let mut tx = store.begin().await.expect("begin");
    let ada = user("okta", "ada", "ada@example.org");
    identities::insert_user(&mut tx, &ada, &[])
        .await
        .expect("insert");
    events::append(
        &mut tx,
        &NewIdentityEvent {
            source: ada.source.clone(),
            kind: EventKind::UserCreated,
            subject_id: Some(ada.id),
            email: ada.email.clone(),
            detail: json!({}),
        },
    )
    .await
    .expect("append");
    tx.rollback().await.expect("rollback");
    let mut conn = store.pool().acquire().await.expect("conn");
    assert_eq!(events::depth(&mut conn).await.expect("depth").0, 0);
    assert_eq!(
        identities::count_users(&mut conn, &ada.source)
            .await
            .expect("count"),
        0
    );
}
both_backends!(transactional_outbox, a_rolled_back_change_leaves_no_event);

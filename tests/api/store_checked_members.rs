//! The batched member PATCH's one-statement write on PostgreSQL: it applies
//! everything only while the group is at the version the batch read, and
//! nothing at all once that version has moved, or if it names a member
//! outside the group's source (the database refuses the statement).

use pretty_assertions::assert_eq;
use serde_json::json;
use tyk_idsync::domain::{
    EventKind, GroupMember, IdentityGroup, IdentityUser, MemberKind, NewIdentityEvent, SourceName,
    Timestamp,
};
use tyk_idsync::store::checked_members::{CheckedMemberWrites, write_if_unchanged};
use tyk_idsync::store::{events, identities, scim_query};
use uuid::Uuid;

use crate::support::{Db, fresh_store};

fn member(id: Uuid, kind: MemberKind) -> GroupMember {
    GroupMember { id, kind }
}

fn event(source: &SourceName, group: Uuid, member: Uuid, change: &str) -> NewIdentityEvent {
    NewIdentityEvent {
        source: source.clone(),
        kind: EventKind::MembershipChanged,
        subject_id: Some(member),
        email: None,
        detail: json!({"group": group.to_string(), "change": change}),
    }
}

fn new_group(source: &SourceName, name: &str) -> IdentityGroup {
    let now = Timestamp::now();
    IdentityGroup {
        id: Uuid::new_v4(),
        source: source.clone(),
        external_id: None,
        display_name: name.into(),
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// A stored user of `source` with id `id`.
async fn stored_user(conn: &mut sqlx::AnyConnection, source: &SourceName, id: Uuid) {
    let now = Timestamp::now();
    let user = IdentityUser {
        id,
        source: source.clone(),
        external_id: None,
        user_name: format!("user-{id}"),
        email: None,
        email_problem: None,
        given_name: None,
        family_name: None,
        display_name: None,
        active: true,
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    identities::insert_user(conn, &user, &[])
        .await
        .expect("user");
}

/// (member id, kind) of the group, ordered by id.
async fn members(
    conn: &mut sqlx::AnyConnection,
    source: &SourceName,
    group: Uuid,
) -> Vec<(Uuid, MemberKind)> {
    scim_query::member_views(conn, source, &group.to_string())
        .await
        .expect("members")
        .into_iter()
        .map(|v| (v.member.id, v.member.kind))
        .collect()
}

#[tokio::test]
async fn checked_member_write_applies_only_at_the_expected_version() {
    let (store, _guard) = fresh_store(Db::Postgres).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    let okta = SourceName::new("okta");
    let now = Timestamp::now();
    let group = new_group(&okta, "Admins");
    identities::insert_group(&mut conn, &group)
        .await
        .expect("group");
    let mut ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    ids.sort();
    let (gone, kept, added) = (ids[0], ids[1], ids[2]);
    for id in [gone, kept, added] {
        stored_user(&mut conn, &okta, id).await;
    }
    let nested = new_group(&okta, "Nested");
    identities::insert_group(&mut conn, &nested)
        .await
        .expect("nested group");
    identities::add_members(
        &mut conn,
        group.id,
        &[
            member(gone, MemberKind::User),
            member(kept, MemberKind::User),
        ],
    )
    .await
    .expect("members");
    let before = members(&mut conn, &okta, group.id).await;
    let seq_before = events::since(&mut conn, &okta, 0)
        .await
        .expect("events")
        .len();

    let after = IdentityGroup {
        version: 3,
        updated_at: Timestamp(now.0 + 1),
        ..group.clone()
    };
    let upserts = [
        member(added, MemberKind::User),
        // Both deleted and upserted: one statement must not touch a row
        // twice, so it is only upserted.
        member(kept, MemberKind::User),
        member(nested.id, MemberKind::Group),
    ];
    let batch_events = [
        event(&okta, group.id, gone, "removed"),
        event(&okta, group.id, added, "added"),
        event(&okta, group.id, nested.id, "added"),
    ];
    let deletes = [gone, kept];
    let writes = |expected_version| CheckedMemberWrites {
        group: &after,
        expected_version,
        delete_members: &deletes,
        upsert_members: &upserts,
        events: &batch_events,
        list_members: true,
    };

    // A version that moved: nothing is written.
    assert!(
        write_if_unchanged(&mut conn, &writes(2))
            .await
            .expect("write")
            .is_none()
    );
    assert_eq!(members(&mut conn, &okta, group.id).await, before);
    assert_eq!(
        events::since(&mut conn, &okta, 0)
            .await
            .expect("events")
            .len(),
        seq_before
    );

    // The version read: everything is written, and the members as they
    // were come back.
    let listed = write_if_unchanged(&mut conn, &writes(1))
        .await
        .expect("write")
        .expect("version matched");
    let listed: Vec<_> = listed
        .into_iter()
        .map(|v| (v.member.id, v.member.kind))
        .collect();
    assert_eq!(listed, before);
    let mut expected = vec![
        (kept, MemberKind::User),
        (added, MemberKind::User),
        (nested.id, MemberKind::Group),
    ];
    expected.sort();
    assert_eq!(members(&mut conn, &okta, group.id).await, expected);
    let stored = identities::get_group(&mut conn, &okta, group.id)
        .await
        .expect("get")
        .expect("group");
    assert_eq!((stored.version, stored.updated_at), (3, after.updated_at));
    let appended: Vec<_> = events::since(&mut conn, &okta, 0)
        .await
        .expect("events")
        .into_iter()
        .skip(seq_before)
        .map(|e| (e.kind, e.subject_id, e.detail["change"].clone()))
        .collect();
    assert_eq!(
        appended,
        vec![
            (EventKind::MembershipChanged, Some(gone), json!("removed")),
            (EventKind::MembershipChanged, Some(added), json!("added")),
            (
                EventKind::MembershipChanged,
                Some(nested.id),
                json!("added")
            ),
        ]
    );

    // Replaying the same batch finds the version moved: no second write.
    assert!(
        write_if_unchanged(&mut conn, &writes(1))
            .await
            .expect("write")
            .is_none()
    );
    assert_eq!(
        events::since(&mut conn, &okta, 0)
            .await
            .expect("events")
            .len(),
        seq_before + 3
    );
}

/// The batch path's backstop: should a batch name a member outside the
/// group's source (its lookup raced a change), the database refuses the
/// whole statement, naming the member, and nothing of it is written.
#[tokio::test]
async fn checked_member_write_outside_the_source_writes_nothing() {
    let (store, _guard) = fresh_store(Db::Postgres).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    let (okta, other) = (SourceName::new("okta"), SourceName::new("other"));
    let group = new_group(&okta, "Admins");
    identities::insert_group(&mut conn, &group)
        .await
        .expect("group");
    let (own, foreign) = (Uuid::new_v4(), Uuid::new_v4());
    stored_user(&mut conn, &okta, own).await;
    stored_user(&mut conn, &other, foreign).await;
    let foreign_group = new_group(&other, "Theirs");
    identities::insert_group(&mut conn, &foreign_group)
        .await
        .expect("other group");
    let seq_before = events::since(&mut conn, &okta, 0)
        .await
        .expect("events")
        .len();
    let after = IdentityGroup {
        version: 2,
        ..group.clone()
    };
    for outsider in [
        member(foreign, MemberKind::User),
        member(foreign_group.id, MemberKind::Group),
        member(Uuid::new_v4(), MemberKind::User),
        // A user of the source, but stored as a group: refused too.
        member(own, MemberKind::Group),
    ] {
        let upserts = [member(own, MemberKind::User), outsider.clone()];
        let batch_events = [
            event(&okta, group.id, own, "added"),
            event(&okta, group.id, outsider.id, "added"),
        ];
        let writes = CheckedMemberWrites {
            group: &after,
            expected_version: 1,
            delete_members: &[],
            upsert_members: if outsider.id == own {
                &upserts[1..]
            } else {
                &upserts
            },
            events: &batch_events,
            list_members: false,
        };
        let refused = write_if_unchanged(&mut conn, &writes)
            .await
            .expect_err("a member outside the source is refused");
        assert_eq!(
            refused.member_outside_source(),
            Some(Some(outsider.id.to_string())),
            "{refused}"
        );
        assert_eq!(members(&mut conn, &okta, group.id).await, vec![]);
        let stored = identities::get_group(&mut conn, &okta, group.id)
            .await
            .expect("get")
            .expect("group");
        assert_eq!(stored.version, 1, "the version did not move");
        assert_eq!(
            events::since(&mut conn, &okta, 0)
                .await
                .expect("events")
                .len(),
            seq_before
        );
    }
}

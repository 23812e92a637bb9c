//! The batched member PATCH's one-statement write on PostgreSQL: it applies
//! everything only while the group is at the version the batch read, and
//! nothing at all once that version has moved.

use pretty_assertions::assert_eq;
use serde_json::json;
use tyk_idsync::domain::{
    EventKind, GroupMember, IdentityGroup, MemberKind, NewIdentityEvent, SourceName, Timestamp,
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

/// (member id, kind, kept object) of the group, ordered by id.
async fn members(
    conn: &mut sqlx::AnyConnection,
    source: &SourceName,
    group: Uuid,
) -> Vec<(Uuid, MemberKind, Option<serde_json::Value>)> {
    scim_query::member_views(conn, source, &group.to_string())
        .await
        .expect("members")
        .into_iter()
        .map(|v| (v.member.id, v.member.kind, v.sent))
        .collect()
}

#[tokio::test]
async fn checked_member_write_applies_only_at_the_expected_version() {
    let (store, _guard) = fresh_store(Db::Postgres).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    let okta = SourceName::new("okta");
    let now = Timestamp::now();
    let group = IdentityGroup {
        id: Uuid::new_v4(),
        source: okta.clone(),
        external_id: None,
        display_name: "Admins".into(),
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    identities::insert_group(&mut conn, &group)
        .await
        .expect("group");
    let mut ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    ids.sort();
    let (gone, kept, added, unresolved) = (ids[0], ids[1], ids[2], ids[3]);
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
    scim_query::set_member_ref(
        &mut conn,
        &group.id.to_string(),
        &gone.to_string(),
        &json!({"value": gone.to_string()}),
    )
    .await
    .expect("ref");
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
        // Its kind changes: deleted and upserted by one statement.
        member(kept, MemberKind::Group),
        member(unresolved, MemberKind::User),
    ];
    let refs = [(unresolved, json!({"value": unresolved.to_string(), "x": 1}))];
    let batch_events = [
        event(&okta, group.id, gone, "removed"),
        event(&okta, group.id, added, "added"),
        event(&okta, group.id, unresolved, "added"),
    ];
    let (deletes, forgotten) = ([gone, kept], [gone]);
    let writes = |expected_version| CheckedMemberWrites {
        group: &after,
        expected_version,
        delete_members: &deletes,
        upsert_members: &upserts,
        delete_refs: &forgotten,
        set_refs: &refs,
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
        .map(|v| (v.member.id, v.member.kind, v.sent))
        .collect();
    assert_eq!(listed, before);
    assert_eq!(
        members(&mut conn, &okta, group.id).await,
        vec![
            (kept, MemberKind::Group, None),
            (added, MemberKind::User, None),
            (
                unresolved,
                MemberKind::User,
                Some(json!({"value": unresolved.to_string(), "x": 1}))
            ),
        ]
    );
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
                Some(unresolved),
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

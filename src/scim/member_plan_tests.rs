use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::json;

use super::*;
use crate::domain::SourceName;
use crate::scim::members::WantedMember;

fn group() -> IdentityGroup {
    IdentityGroup {
        id: Uuid::from_u128(100),
        source: SourceName::new("okta"),
        external_id: None,
        display_name: "eng".into(),
        attributes: json!({"displayName": "eng"}),
        version: 5,
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
    }
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn add(ids: &[u128]) -> MemberChange {
    MemberChange::Add(
        ids.iter()
            .map(|n| WantedMember {
                id: id(*n),
                value: id(*n).to_string(),
            })
            .collect(),
    )
}

fn remove(ids: &[u128]) -> MemberChange {
    MemberChange::Remove(ids.iter().map(|n| id(*n)).collect())
}

/// Users 1..=3 (user 1 already a member), group 50; anything else unknown.
fn known() -> KnownRows {
    let mut known = KnownRows::default();
    for n in 1..=3 {
        known.users.insert(id(n), Some(format!("u{n}@example.org")));
        known.names.insert(id(n), format!("User {n}"));
    }
    known.groups.insert(id(50));
    known.names.insert(id(50), "Nested".into());
    known.members.insert(id(1), MemberKind::User);
    known
}

fn run(
    known: &KnownRows,
    patches: &[(HeaderMap, Vec<MemberChange>)],
) -> (Vec<PatchOutcome>, GroupWrites) {
    let planned: Vec<PlannedPatch<'_>> = patches
        .iter()
        .map(|(headers, changes)| PlannedPatch {
            headers,
            changes,
            wants_members: true,
        })
        .collect();
    plan(&group(), known, &planned, Timestamp(9))
}

fn versions(outcomes: &[PatchOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| match o {
            PatchOutcome::Applied(g, _) => g.version.to_string(),
            PatchOutcome::Refused(e) => format!("refused: {e}"),
        })
        .collect()
}

fn events(writes: &GroupWrites) -> Vec<(Uuid, String, Option<String>)> {
    writes
        .events
        .iter()
        .map(|e| {
            (
                e.subject_id.expect("subject"),
                e.detail["change"].as_str().unwrap_or_default().to_string(),
                e.email.clone(),
            )
        })
        .collect()
}

#[test]
fn each_patch_gets_its_own_version_and_the_rows_are_the_net_change() {
    let none = HeaderMap::new();
    let patches = vec![
        (none.clone(), vec![add(&[2])]),
        (none.clone(), vec![remove(&[1])]),
        (none.clone(), vec![add(&[3]), remove(&[2])]),
    ];
    let (outcomes, writes) = run(&known(), &patches);
    assert_eq!(versions(&outcomes), ["6", "7", "8"]);
    assert_eq!(writes.group.as_ref().map(|g| g.version), Some(8));
    assert_eq!(
        writes.group.as_ref().map(|g| g.updated_at),
        Some(Timestamp(9))
    );
    assert_eq!(writes.delete_members, vec![id(1)]);
    assert_eq!(
        writes.insert_members,
        vec![GroupMember {
            id: id(3),
            kind: MemberKind::User
        }]
    );
    assert_eq!(
        events(&writes),
        vec![
            (id(2), "added".into(), Some("u2@example.org".into())),
            (id(1), "removed".into(), Some("u1@example.org".into())),
            (id(3), "added".into(), Some("u3@example.org".into())),
            (id(2), "removed".into(), Some("u2@example.org".into())),
        ]
    );
}

#[test]
fn add_then_remove_of_one_member_writes_no_row_but_both_events() {
    let none = HeaderMap::new();
    let patches = vec![
        (none.clone(), vec![add(&[2])]),
        (none.clone(), vec![remove(&[2])]),
        (none.clone(), vec![add(&[2])]),
        (none.clone(), vec![remove(&[2])]),
    ];
    let (outcomes, writes) = run(&known(), &patches);
    assert_eq!(versions(&outcomes), ["6", "7", "8", "9"]);
    assert!(writes.insert_members.is_empty() && writes.delete_members.is_empty());
    assert_eq!(writes.events.len(), 4);
}

#[test]
fn removing_a_non_member_is_accepted_and_changes_nothing_but_the_version() {
    let none = HeaderMap::new();
    let patches = vec![
        (none.clone(), vec![add(&[2])]),
        // Adds 3, then removes 9, who is not a member: 3 stays added.
        (none.clone(), vec![add(&[3]), remove(&[9])]),
        (none.clone(), vec![remove(&[2])]),
        // Concurrent clients: a second removal of 2.
        (none.clone(), vec![remove(&[2])]),
    ];
    let (outcomes, writes) = run(&known(), &patches);
    assert_eq!(versions(&outcomes), ["6", "7", "8", "9"]);
    assert_eq!(
        writes.insert_members,
        vec![GroupMember {
            id: id(3),
            kind: MemberKind::User
        }]
    );
    assert!(writes.delete_members.is_empty());
    assert_eq!(
        events(&writes)
            .iter()
            .map(|(id, change, _)| (*id, change.clone()))
            .collect::<Vec<_>>(),
        vec![
            (id(2), "added".into()),
            (id(3), "added".into()),
            (id(2), "removed".into())
        ]
    );
}

#[test]
fn if_match_is_checked_against_the_version_the_previous_patches_left() {
    let matching = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_str(v).expect("header"));
        h
    };
    let patches = vec![
        (matching("W/\"5\""), vec![add(&[2])]),
        // Stale: the first PATCH made it 6.
        (matching("W/\"5\""), vec![add(&[3])]),
        (matching("W/\"6\""), vec![add(&[3])]),
    ];
    let (outcomes, writes) = run(&known(), &patches);
    assert_eq!(
        versions(&outcomes),
        [
            "6",
            "refused: the resource was changed: its version no longer matches If-Match",
            "7"
        ]
    );
    assert_eq!(writes.insert_members.len(), 2);
}

#[test]
fn adding_an_id_outside_the_source_refuses_that_patch_only() {
    let none = HeaderMap::new();
    // 7 is no user or group of the source (another source's, or nobody's):
    // the PATCH naming it is refused whole (3 is not added either).
    let patches = vec![
        (none.clone(), vec![add(&[2])]),
        (none.clone(), vec![add(&[3, 7])]),
        (none.clone(), vec![add(&[50])]),
    ];
    let (outcomes, writes) = run(&known(), &patches);
    let refused = format!(
        "refused: member value \"{}\" is not a user or group of this source",
        id(7)
    );
    assert_eq!(versions(&outcomes), ["6".to_string(), refused, "7".into()]);
    assert!(matches!(
        &outcomes[1],
        PatchOutcome::Refused(ScimError::InvalidValue(_))
    ));
    assert_eq!(
        writes.insert_members,
        vec![
            GroupMember {
                id: id(2),
                kind: MemberKind::User
            },
            GroupMember {
                id: id(50),
                kind: MemberKind::Group
            },
        ]
    );
    assert_eq!(
        events(&writes)
            .iter()
            .map(|(id, change, _)| (*id, change.clone()))
            .collect::<Vec<_>>(),
        vec![(id(2), "added".into()), (id(50), "added".into())]
    );
}

#[test]
fn a_batch_of_only_outside_ids_writes_nothing() {
    let none = HeaderMap::new();
    let (outcomes, writes) = run(&known(), &[(none, vec![add(&[7])])]);
    assert!(matches!(
        outcomes[0],
        PatchOutcome::Refused(ScimError::InvalidValue(_))
    ));
    assert!(writes.group.is_none());
    assert!(writes.insert_members.is_empty() && writes.events.is_empty());
}

#[test]
fn each_patch_sees_the_named_members_as_it_left_them() {
    let none = HeaderMap::new();
    let patches = vec![
        (none.clone(), vec![add(&[2])]),
        (none.clone(), vec![remove(&[1, 2])]),
    ];
    let (outcomes, _) = run(&known(), &patches);
    let members = |o: &PatchOutcome| match o {
        PatchOutcome::Applied(_, named) => {
            let mut members: Vec<_> = named
                .iter()
                .filter(|m| m.kind.is_some())
                .map(|m| (m.id, m.name.clone()))
                .collect();
            members.sort();
            members
        }
        other => panic!("not applied: {other:?}"),
    };
    assert_eq!(
        members(&outcomes[0]),
        vec![(id(1), "User 1".to_string()), (id(2), "User 2".to_string())]
    );
    assert_eq!(members(&outcomes[1]), vec![]);
}

#[test]
fn nothing_applied_writes_nothing() {
    let mut stale = HeaderMap::new();
    stale.insert(header::IF_MATCH, HeaderValue::from_static("W/\"1\""));
    let (outcomes, writes) = run(&known(), &[(stale, vec![remove(&[1])])]);
    assert!(matches!(outcomes[0], PatchOutcome::Refused(_)));
    assert!(writes.group.is_none());
    assert!(writes.events.is_empty());
    assert!(writes.delete_members.is_empty());
}

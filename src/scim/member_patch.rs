//! The fast path of the PATCH real provisioning clients send most: adding
//! and removing group members (`add` to `members`, `remove` of
//! `members[value eq "…"]` or of `members` with a value list). It touches
//! only the named members, so its cost does not grow with the group; any
//! other operation goes through the general path. Normally these PATCHes
//! are group-committed (`member_batch`); [`apply`] runs one on its own when
//! its batch failed, and hands a removal of someone who is not a member to
//! the general path (which accepts it as a no-op, as the batch does).

use serde_json::Value;
use sqlx::AnyConnection;
use uuid::Uuid;

use super::error::ScimError;
use super::filter::{AttrPath, CompareOp, Filter};
use super::members::{WantedMembers, add_member, parse_member, remove_member};
use super::patch::{OpKind, PatchOp, PatchPath};
use super::resource::check_if_match;
use super::schema::GROUP_SCHEMA;
use crate::domain::{IdentityGroup, SourceName, Timestamp};
use crate::store::{Store, StoreError, identities, scim_query};

/// One member operation.
#[derive(Debug, Clone)]
pub(super) enum MemberChange {
    Add(WantedMembers),
    Remove(Vec<Uuid>),
}

/// The operations as member changes, or `None` if any is something else.
pub(super) fn member_only(ops: &[PatchOp]) -> Option<Vec<MemberChange>> {
    ops.iter().map(member_change).collect()
}

fn is_members(path: &PatchPath) -> bool {
    path.attr.eq_ignore_ascii_case("members")
        && path.sub.is_none()
        && path
            .uri
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(GROUP_SCHEMA))
}

fn member_change(op: &PatchOp) -> Option<MemberChange> {
    let path = op.path.as_ref().filter(|p| is_members(p))?;
    match (op.kind, &path.filter, &op.value) {
        (OpKind::Add, None, Some(Value::Array(items))) if !items.is_empty() => items
            .iter()
            .map(|item| parse_member(item).ok())
            .collect::<Option<Vec<_>>>()
            .map(MemberChange::Add),
        (OpKind::Remove, Some(filter), None) => {
            value_eq(filter).map(|id| MemberChange::Remove(vec![id]))
        }
        (OpKind::Remove, None, Some(Value::Array(items))) if !items.is_empty() => items
            .iter()
            .map(|item| parse_member(item).ok().map(|member| member.id))
            .collect::<Option<Vec<_>>>()
            .map(MemberChange::Remove),
        _ => None,
    }
}

/// `value eq "<uuid>"` (the attribute name in any case).
fn value_eq(filter: &Filter) -> Option<Uuid> {
    match filter {
        Filter::Compare {
            path:
                AttrPath {
                    uri: None,
                    attr,
                    sub: None,
                },
            op: CompareOp::Eq,
            value: Value::String(id),
        } if attr.eq_ignore_ascii_case("value") => Uuid::parse_str(id).ok(),
        _ => None,
    }
}

/// Applies `changes` to group `id` in one transaction. `Ok(None)` means the
/// fast path does not apply (a removal target is not a member): nothing was
/// written and the caller takes the general path.
pub(super) async fn apply(
    store: &Store,
    source: &SourceName,
    id: Uuid,
    headers: &axum::http::HeaderMap,
    changes: &[MemberChange],
) -> Result<Option<IdentityGroup>, ScimError> {
    let mut tx = store.begin_write().await?;
    let id_text = id.to_string();
    scim_query::lock_for_update(&mut tx, source, &id_text, false).await?;
    let before = identities::get_group(&mut tx, source, id)
        .await?
        .ok_or_else(|| ScimError::NotFound("group".into()))?;
    check_if_match(headers, before.version)?;
    for change in changes {
        if !apply_change(&mut tx, &before, change).await? {
            return Ok(None);
        }
    }
    let after = IdentityGroup {
        version: before.version + 1,
        updated_at: Timestamp::now(),
        ..before.clone()
    };
    identities::update_group(&mut tx, &after, Some(before.version)).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(source = %source, group_id = %id, "SCIM group members changed");
    Ok(Some(after))
}

/// False when a removal names someone who is not a member.
async fn apply_change(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
    change: &MemberChange,
) -> Result<bool, ScimError> {
    match change {
        MemberChange::Add(wanted) => {
            for member in wanted {
                add_member(conn, group, member).await?;
            }
        }
        MemberChange::Remove(ids) => {
            for member_id in ids {
                if !remove_member(conn, group, *member_id).await? {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::patch::parse_ops;

    fn classify(ops: Value) -> Option<Vec<&'static str>> {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": ops,
        });
        let ops = parse_ops(body.as_object().expect("object")).expect("valid ops");
        member_only(&ops).map(|changes| {
            changes
                .iter()
                .map(|c| match c {
                    MemberChange::Add(_) => "add",
                    MemberChange::Remove(_) => "remove",
                })
                .collect()
        })
    }

    /// The unbatched path (a PATCH whose batch failed) refuses an added
    /// member outside the group's source as the batch does, writing nothing.
    #[tokio::test]
    async fn the_unbatched_path_refuses_members_outside_the_source() {
        use crate::domain::{IdentityUser, MemberKind};
        use crate::scim::members::WantedMember;
        use crate::store::StoreOptions;

        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::connect(&StoreOptions::new(url))
            .await
            .expect("store");
        store.migrate().await.expect("migrate");
        let now = Timestamp::now();
        let (a, b) = (SourceName::new("a"), SourceName::new("b"));
        let group = IdentityGroup {
            id: Uuid::new_v4(),
            source: a.clone(),
            external_id: None,
            display_name: "Escalate".into(),
            attributes: json!({}),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let user = |source: &SourceName, name: &str| IdentityUser {
            id: Uuid::new_v4(),
            source: source.clone(),
            external_id: None,
            user_name: name.into(),
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
        let (own, foreign) = (user(&a, "own"), user(&b, "foreign"));
        let mut tx = store.begin_write().await.expect("tx");
        identities::insert_group(&mut tx, &group)
            .await
            .expect("group");
        for u in [&own, &foreign] {
            identities::insert_user(&mut tx, u, &[])
                .await
                .expect("user");
        }
        tx.commit().await.expect("commit");

        let wanted = |id: Uuid| WantedMember {
            id,
            value: id.to_string(),
        };
        let headers = axum::http::HeaderMap::new();
        for outsider in [foreign.id, Uuid::new_v4()] {
            let changes = [MemberChange::Add(vec![wanted(own.id), wanted(outsider)])];
            let refused = apply(&store, &a, group.id, &headers, &changes)
                .await
                .expect_err("refused");
            assert!(
                matches!(&refused, ScimError::InvalidValue(detail) if detail.contains(&outsider.to_string())),
                "{refused:?}"
            );
        }
        let mut conn = store.pool().acquire().await.expect("conn");
        assert!(
            identities::list_members(&mut conn, group.id)
                .await
                .expect("members")
                .is_empty()
        );
        let stored = identities::get_group(&mut conn, &a, group.id)
            .await
            .expect("get")
            .expect("group");
        assert_eq!(stored.version, 1);
        drop(conn);
        // An own member still goes in.
        let changes = [MemberChange::Add(vec![wanted(own.id)])];
        let patched = apply(&store, &a, group.id, &headers, &changes)
            .await
            .expect("applied")
            .expect("fast path");
        assert_eq!(patched.version, 2);
        let mut conn = store.pool().acquire().await.expect("conn");
        let members = identities::list_members(&mut conn, group.id)
            .await
            .expect("members");
        assert_eq!(
            members.iter().map(|m| (m.id, m.kind)).collect::<Vec<_>>(),
            vec![(own.id, MemberKind::User)]
        );
    }

    #[test]
    fn member_operations_take_the_fast_path_and_others_do_not() {
        let id = "6a1f0c1e-3b53-4a43-9d4b-2f0d3c1b9e11";
        let cases = [
            (
                json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
                Some(vec!["add"]),
            ),
            (
                json!([{"op": "Add", "path": "Members", "value": [{"value": id}, {"value": id}]}]),
                Some(vec!["add"]),
            ),
            (
                json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]),
                Some(vec!["remove"]),
            ),
            (
                json!([{"op": "Remove", "path": "members", "value": [{"value": id}]}]),
                Some(vec!["remove"]),
            ),
            (
                json!([
                    {"op": "add", "path": "members", "value": [{"value": id}]},
                    {"op": "remove", "path": format!("members[value eq \"{id}\"]")}
                ]),
                Some(vec!["add", "remove"]),
            ),
            // Everything else: the general path.
            (json!([{"op": "remove", "path": "members"}]), None),
            (
                json!([{"op": "replace", "path": "members", "value": [{"value": id}]}]),
                None,
            ),
            (
                json!([{"op": "add", "path": "members", "value": [{"value": "not-an-id"}]}]),
                None,
            ),
            (
                json!([{"op": "remove", "path": "members[display eq \"Ada\"]"}]),
                None,
            ),
            (
                json!([{"op": "remove", "path": format!("members[value ne \"{id}\"]")}]),
                None,
            ),
            (
                json!([{"op": "replace", "path": "displayName", "value": "x"}]),
                None,
            ),
            (
                json!([{"op": "add", "value": {"members": [{"value": id}]}}]),
                None,
            ),
            (
                json!([
                    {"op": "add", "path": "members", "value": [{"value": id}]},
                    {"op": "replace", "path": "displayName", "value": "x"}
                ]),
                None,
            ),
        ];
        for (ops, expected) in cases {
            assert_eq!(classify(ops.clone()), expected, "{ops}");
        }
    }
}

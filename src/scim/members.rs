//! Group members as clients send them: parsing, resolving ids within the
//! source, and applying the difference row by row with one
//! membership-change event per affected member.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::error::ScimError;
use crate::domain::{
    EventKind, GroupMember, IdentityGroup, MemberKind, NewIdentityEvent, SourceName,
};
use crate::store::{events, identities, scim_query};

/// Member ids a client asked for, with the type it gave, if any.
pub(super) type WantedMembers = Vec<(Uuid, Option<MemberKind>, Value)>;

pub(super) fn parse_member(item: &Value) -> Result<(Uuid, Option<MemberKind>, Value), ScimError> {
    let value = item
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::InvalidValue("each member needs a string value".into()))?;
    let id = Uuid::parse_str(value)
        .map_err(|_| ScimError::InvalidValue(format!("member value {value:?} is not an id")))?;
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .and_then(MemberKind::parse);
    Ok((id, kind, item.clone()))
}

/// Resolves a wanted member to a user or group of this source. An id this
/// source does not know is kept as a reference of the type the client gave
/// (clients may send members before the members themselves); it never
/// reaches another source's data, as every lookup is scoped by source.
async fn resolve_member(
    conn: &mut AnyConnection,
    source: &SourceName,
    id: Uuid,
    given: Option<MemberKind>,
) -> Result<(GroupMember, bool), ScimError> {
    if identities::get_user(conn, source, id).await?.is_some() {
        return Ok((
            GroupMember {
                id,
                kind: MemberKind::User,
            },
            true,
        ));
    }
    if identities::get_group(conn, source, id).await?.is_some() {
        return Ok((
            GroupMember {
                id,
                kind: MemberKind::Group,
            },
            true,
        ));
    }
    Ok((
        GroupMember {
            id,
            kind: given.unwrap_or(MemberKind::User),
        },
        false,
    ))
}

pub(super) async fn membership_event(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
    member: Uuid,
    change: &str,
) -> Result<(), ScimError> {
    let email = identities::get_user(conn, &group.source, member)
        .await?
        .and_then(|u| u.email);
    let event = NewIdentityEvent {
        source: group.source.clone(),
        kind: EventKind::MembershipChanged,
        subject_id: Some(member),
        email,
        detail: json!({"group": group.id.to_string(), "change": change}),
    };
    events::append(conn, &event).await?;
    Ok(())
}

/// Brings the member rows to `wanted` by inserting and deleting the
/// difference, with one membership event per affected member.
pub(super) async fn sync_members(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
    wanted: &[(Uuid, Option<MemberKind>, Value)],
) -> Result<(), ScimError> {
    let current: Vec<Uuid> = identities::list_members(conn, group.id)
        .await?
        .iter()
        .map(|m| m.id)
        .collect();
    let wanted_ids: BTreeMap<Uuid, (Option<MemberKind>, &Value)> = wanted
        .iter()
        .map(|(id, kind, body)| (*id, (*kind, body)))
        .collect();
    for (id, (given, body)) in wanted_ids.iter().filter(|(id, _)| !current.contains(id)) {
        add_member(conn, group, *id, *given, body).await?;
    }
    for id in current.iter().filter(|id| !wanted_ids.contains_key(id)) {
        remove_member(conn, group, *id).await?;
    }
    Ok(())
}

/// Adds one member, resolved within the group's source (an id the source
/// does not know yet is kept with what the client sent), with a
/// membership event. False if it was a member already.
pub(super) async fn add_member(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
    id: Uuid,
    given: Option<MemberKind>,
    body: &Value,
) -> Result<bool, ScimError> {
    let (member, known) = resolve_member(conn, &group.source, id, given).await?;
    if !known {
        scim_query::set_member_ref(conn, &group.id.to_string(), &id.to_string(), body).await?;
    }
    if identities::add_members(conn, group.id, &[member])
        .await?
        .is_empty()
    {
        return Ok(false);
    }
    membership_event(conn, group, id, "added").await?;
    Ok(true)
}

/// Removes one member, its stored reference and with a membership event.
/// False if it was not a member.
pub(super) async fn remove_member(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
    id: Uuid,
) -> Result<bool, ScimError> {
    if identities::remove_members(conn, group.id, &[id])
        .await?
        .is_empty()
    {
        return Ok(false);
    }
    scim_query::delete_member_refs(conn, &group.id.to_string(), Some(&id.to_string())).await?;
    membership_event(conn, group, id, "removed").await?;
    Ok(true)
}

//! Group members as clients send them: parsing, resolving ids within the
//! source (refusing any other), and applying the difference row by row with one
//! membership-change event per affected member.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::error::ScimError;
use crate::domain::{
    EventKind, GroupMember, IdentityGroup, MemberKind, NewIdentityEvent, SourceName,
};
use crate::store::{events, identities};

/// A member a client asked for: its id, and its value as sent (errors name
/// what the client sent). The `type` a client gives is not needed: the id
/// itself says whether it is a user or a group of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WantedMember {
    pub id: Uuid,
    pub value: String,
}

/// Members a client asked for.
pub(super) type WantedMembers = Vec<WantedMember>;

pub(super) fn parse_member(item: &Value) -> Result<WantedMember, ScimError> {
    let value = item
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::InvalidValue("each member needs a string value".into()))?;
    let id = Uuid::parse_str(value)
        .map_err(|_| ScimError::InvalidValue(format!("member value {value:?} is not an id")))?;
    Ok(WantedMember {
        id,
        value: value.to_string(),
    })
}

/// Resolves a wanted member to a user or group of this source. Any other
/// id (another source's user or group, or nobody's) is refused: membership
/// never crosses sources and never names nobody. The store refuses such a
/// row too; checking here first lets the error name the value.
async fn resolve_member(
    conn: &mut AnyConnection,
    source: &SourceName,
    wanted: &WantedMember,
) -> Result<GroupMember, ScimError> {
    let id = wanted.id;
    if identities::get_user(conn, source, id).await?.is_some() {
        return Ok(GroupMember {
            id,
            kind: MemberKind::User,
        });
    }
    if identities::get_group(conn, source, id).await?.is_some() {
        return Ok(GroupMember {
            id,
            kind: MemberKind::Group,
        });
    }
    Err(ScimError::member_outside_source(&wanted.value))
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
/// difference, with one membership event per affected member. Fails (and
/// the caller's transaction writes nothing) if a new member is not a user
/// or group of the group's source.
pub(super) async fn sync_members(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
    wanted: &[WantedMember],
) -> Result<(), ScimError> {
    let current: BTreeSet<Uuid> = identities::list_members(conn, group.id)
        .await?
        .iter()
        .map(|m| m.id)
        .collect();
    let wanted_ids: BTreeMap<Uuid, &WantedMember> = wanted.iter().map(|w| (w.id, w)).collect();
    for wanted in wanted_ids.values().filter(|w| !current.contains(&w.id)) {
        add_member(conn, group, wanted).await?;
    }
    for id in current.iter().filter(|id| !wanted_ids.contains_key(id)) {
        remove_member(conn, group, *id).await?;
    }
    Ok(())
}

/// Adds one member, a user or group of the group's source (anything else
/// is refused), with a membership event. False if it was a member already.
pub(super) async fn add_member(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
    wanted: &WantedMember,
) -> Result<bool, ScimError> {
    let member = resolve_member(conn, &group.source, wanted).await?;
    if identities::add_members(conn, group.id, &[member])
        .await?
        .is_empty()
    {
        return Ok(false);
    }
    membership_event(conn, group, wanted.id, "added").await?;
    Ok(true)
}

/// Removes one member, with a membership event. False if it was not a
/// member.
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
    membership_event(conn, group, id, "removed").await?;
    Ok(true)
}

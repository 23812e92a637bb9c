//! What a batch of member PATCHes to one group does, worked out in memory
//! from the few rows the batch names (pure: state in, writes out). The
//! PATCHes apply one after another, exactly as if each had its own
//! transaction: each sees the members the previous ones left, checks its
//! `If-Match` against the version the previous ones left, and gets its own
//! version. Removing someone who is not a member changes nothing but is
//! accepted (and still moves the version), as on the general path: clients
//! retry removals, and concurrent clients interleave their adds and removes.
//! Adding an id that is not a user or group of the group's source (another
//! source's, or nobody's) refuses that PATCH with 400 `invalidValue` naming
//! the value, as the general path does: the batch's one lookup of the named
//! ids already tells which ids those are.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use axum::http::HeaderMap;
use serde_json::json;
use uuid::Uuid;

use super::error::ScimError;
use super::member_patch::MemberChange;
use super::resource::check_if_match;
use crate::domain::{
    EventKind, GroupMember, IdentityGroup, MemberKind, NewIdentityEvent, Timestamp,
};

/// What the store holds about the ids a batch names.
#[derive(Debug, Default)]
pub(super) struct KnownRows {
    /// Users of the group's source, with their e-mail.
    pub users: HashMap<Uuid, Option<String>>,
    /// Groups of the group's source.
    pub groups: HashSet<Uuid>,
    /// Which of the ids are members of the group now, and as what.
    pub members: HashMap<Uuid, MemberKind>,
    /// Display names of the ids that are users or groups of the source.
    pub names: HashMap<Uuid, String>,
}

/// One PATCH of the batch: its member changes and its request headers
/// (for `If-Match`).
pub(super) struct PlannedPatch<'a> {
    pub headers: &'a HeaderMap,
    pub changes: &'a [MemberChange],
    /// Whether its answer shows the members (see [`NamedMember`]).
    pub wants_members: bool,
}

/// One id the batch names, as a PATCH left it: its membership, if any.
/// With the group's members as the batch left them, these give the members
/// as that PATCH left them (only the named ids change within a batch).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NamedMember {
    pub id: Uuid,
    pub kind: Option<MemberKind>,
    pub name: String,
}

/// What became of one PATCH.
#[derive(Debug)]
pub(super) enum PatchOutcome {
    /// Applied; the group as this PATCH left it, and the named ids as it
    /// left them (empty unless it wants its members).
    Applied(IdentityGroup, Vec<NamedMember>),
    /// Refused (`If-Match` does not match, or it adds someone outside the
    /// source); nothing of it is in the plan.
    Refused(ScimError),
}

/// The rows to write for the whole batch.
#[derive(Debug, Default)]
pub(super) struct GroupWrites {
    /// The group as the last applied PATCH left it (`None`: none applied).
    pub group: Option<IdentityGroup>,
    pub insert_members: Vec<GroupMember>,
    pub delete_members: Vec<Uuid>,
    /// One membership event per member added or removed, in order.
    pub events: Vec<NewIdentityEvent>,
}

/// The ids the PATCHes name, each once, in first-seen order.
pub(super) fn named_ids(patches: &[PlannedPatch<'_>]) -> Vec<Uuid> {
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    let all = patches.iter().flat_map(|p| p.changes.iter());
    for change in all {
        let named: Vec<Uuid> = match change {
            MemberChange::Add(wanted) => wanted.iter().map(|member| member.id).collect(),
            MemberChange::Remove(removed) => removed.clone(),
        };
        ids.extend(named.into_iter().filter(|id| seen.insert(*id)));
    }
    ids
}

/// The simulated state of the named members while the PATCHes apply.
struct Working {
    members: HashMap<Uuid, MemberKind>,
}

pub(super) fn plan(
    before: &IdentityGroup,
    known: &KnownRows,
    patches: &[PlannedPatch<'_>],
    now: Timestamp,
) -> (Vec<PatchOutcome>, GroupWrites) {
    let mut state = Working {
        members: known.members.clone(),
    };
    let ids = named_ids(patches);
    let mut events = Vec::new();
    let mut group = before.clone();
    let mut applied = None;
    let mut outcomes = Vec::with_capacity(patches.len());
    for patch in patches {
        let checked = check_if_match(patch.headers, group.version)
            .and_then(|()| check_within_source(known, patch.changes));
        if let Err(refused) = checked {
            outcomes.push(PatchOutcome::Refused(refused));
            continue;
        }
        apply_patch(&mut state, &mut events, known, &group, patch.changes);
        group = IdentityGroup {
            version: group.version + 1,
            updated_at: now,
            ..group
        };
        applied = Some(group.clone());
        let named = if patch.wants_members {
            named_members(&ids, known, &state)
        } else {
            Vec::new()
        };
        outcomes.push(PatchOutcome::Applied(group.clone(), named));
    }
    let writes = writes(known, state, events, applied);
    (outcomes, writes)
}

/// Refuses a PATCH adding an id that is not a user or group of the
/// group's source, naming the first such value.
fn check_within_source(known: &KnownRows, changes: &[MemberChange]) -> Result<(), ScimError> {
    let outside = changes
        .iter()
        .filter_map(|change| match change {
            MemberChange::Add(wanted) => Some(wanted),
            MemberChange::Remove(_) => None,
        })
        .flatten()
        .find(|member| kind_in_source(known, member.id).is_none());
    match outside {
        Some(member) => Err(ScimError::member_outside_source(&member.value)),
        None => Ok(()),
    }
}

/// What `id` is in the group's source, if anything.
fn kind_in_source(known: &KnownRows, id: Uuid) -> Option<MemberKind> {
    if known.users.contains_key(&id) {
        Some(MemberKind::User)
    } else if known.groups.contains(&id) {
        Some(MemberKind::Group)
    } else {
        None
    }
}

/// Applies one PATCH's changes to `state`, with an event per member added
/// or removed. Its added ids are users or groups of the source
/// ([`check_within_source`]).
fn apply_patch(
    state: &mut Working,
    events: &mut Vec<NewIdentityEvent>,
    known: &KnownRows,
    group: &IdentityGroup,
    changes: &[MemberChange],
) {
    for change in changes {
        match change {
            MemberChange::Add(wanted) => {
                for member in wanted {
                    let Some(kind) = kind_in_source(known, member.id) else {
                        continue; // refused before: not reached
                    };
                    if let Entry::Vacant(absent) = state.members.entry(member.id) {
                        absent.insert(kind);
                        events.push(membership_event(known, group, member.id, "added"));
                    }
                }
            }
            MemberChange::Remove(ids) => {
                for id in ids {
                    if state.members.remove(id).is_none() {
                        continue; // not a member: nothing to do
                    }
                    events.push(membership_event(known, group, *id, "removed"));
                }
            }
        }
    }
}

/// Every named id as the state now has it.
fn named_members(ids: &[Uuid], known: &KnownRows, state: &Working) -> Vec<NamedMember> {
    ids.iter()
        .map(|&id| NamedMember {
            id,
            kind: state.members.get(&id).copied(),
            name: known.names.get(&id).cloned().unwrap_or_default(),
        })
        .collect()
}

fn membership_event(
    known: &KnownRows,
    group: &IdentityGroup,
    member: Uuid,
    change: &str,
) -> NewIdentityEvent {
    NewIdentityEvent {
        source: group.source.clone(),
        kind: EventKind::MembershipChanged,
        subject_id: Some(member),
        email: known.users.get(&member).cloned().flatten(),
        detail: json!({"group": group.id.to_string(), "change": change}),
    }
}

/// The net row changes: a member removed and added again in one batch is
/// written once (or not at all), but both events are kept.
fn writes(
    known: &KnownRows,
    state: Working,
    events: Vec<NewIdentityEvent>,
    group: Option<IdentityGroup>,
) -> GroupWrites {
    let mut out = GroupWrites {
        group,
        events,
        ..GroupWrites::default()
    };
    let mut touched: Vec<Uuid> = known
        .members
        .keys()
        .chain(state.members.keys())
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    touched.sort();
    for id in touched {
        let (was, is) = (known.members.get(&id), state.members.get(&id));
        if was == is {
            continue;
        }
        if was.is_some() {
            out.delete_members.push(id);
        }
        if let Some(kind) = is {
            out.insert_members.push(GroupMember { id, kind: *kind });
        }
    }
    out
}

#[cfg(test)]
#[path = "member_plan_tests.rs"]
mod tests;

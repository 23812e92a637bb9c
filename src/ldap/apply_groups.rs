//! Brings a source's stored groups and direct memberships to what the
//! directory says, on the caller's transaction, with one outbox event per
//! change. Groups are read in full on every poll, so a group missing from
//! a successful read is gone; member lists are compared per group.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::json;
use sqlx::AnyConnection;
use uuid::Uuid;

use super::fingerprint::members_fingerprint;
use super::translate::{DirectorySnapshot, dn_key, unique_group_names};
use crate::domain::{
    EventKind, GroupMember, IdentityGroup, MemberKind, NewIdentityEvent, SourceName, Timestamp,
};
use crate::store::{StoreError, bulk, identities, ldap_fingerprints};

/// Above this many groups to compare, all the source's memberships are read
/// in one query instead of group by group.
const BULK_MEMBER_READ: usize = 500;

/// A user of the source as memberships see them.
#[derive(Debug, Clone)]
pub struct UserRef {
    pub id: Uuid,
    pub email: Option<String>,
}

/// What changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupReport {
    pub groups_created: usize,
    pub groups_renamed: usize,
    pub groups_deleted: usize,
    pub members_added: usize,
    pub members_removed: usize,
}

impl GroupReport {
    pub fn changes(&self) -> usize {
        self.groups_created
            + self.groups_renamed
            + self.groups_deleted
            + self.members_added
            + self.members_removed
    }
}

/// A source's stored groups and their member-list fingerprints.
#[derive(Debug, Clone, Default)]
pub struct StoredGroups {
    pub groups: Vec<IdentityGroup>,
    pub prints: BTreeMap<Uuid, i64>,
}

impl StoredGroups {
    pub async fn load(conn: &mut AnyConnection, source: &SourceName) -> Result<Self, StoreError> {
        Ok(Self {
            groups: identities::list_groups(conn, source).await?,
            prints: ldap_fingerprints::group_fingerprints(conn, source).await?,
        })
    }
}

/// `users` maps user DN keys to stored users. `stored` is what
/// [`StoredGroups::load`] gives, if already read in this state (else it is
/// read here). With `only_users`, member
/// edges to other users are left as stored (an incremental `memberOf`
/// poll knows the memberships of the users it read, not of the others).
pub async fn apply_groups(
    conn: &mut AnyConnection,
    source: &SourceName,
    snap: &DirectorySnapshot,
    users: &BTreeMap<String, UserRef>,
    only_users: Option<&BTreeSet<Uuid>>,
    stored: Option<StoredGroups>,
) -> Result<GroupReport, StoreError> {
    let StoredGroups {
        groups: stored_groups,
        prints,
    } = match stored {
        Some(stored) => stored,
        None => StoredGroups::load(conn, source).await?,
    };
    let mut report = GroupReport::default();
    let mut new_events = bulk::EventWriter::default();
    let group_ids = sync_groups(
        conn,
        source,
        stored_groups,
        snap,
        &mut report,
        &mut new_events,
    )
    .await?;
    // Each group's wanted member set, all of this source: `users` holds only
    // its users and `group_ids` only its groups (the database refuses any
    // other member, and a poll naming one would fail whole). Only those
    // whose fingerprint differs from the stored one (what the poller last
    // wrote, dropped by any other change) are read back and compared. (A prefetched fingerprint may
    // still name users this transaction deleted: then it cannot match.)
    let mut stale: Vec<(Uuid, BTreeMap<Uuid, MemberKind>)> = Vec::new();
    for (key, group_id) in &group_ids {
        let mut wanted: BTreeMap<Uuid, MemberKind> = BTreeMap::new();
        for user in snap.user_members.get(key).into_iter().flatten() {
            if let Some(u) = users.get(user) {
                wanted.insert(u.id, MemberKind::User);
            }
        }
        for group in snap.group_members.get(key).into_iter().flatten() {
            if let Some(id) = group_ids.get(group).filter(|id| *id != group_id) {
                wanted.insert(*id, MemberKind::Group);
            }
        }
        if prints.get(group_id) != Some(&members_fingerprint(&wanted)) {
            stale.push((*group_id, wanted));
        }
    }
    let stored = if stale.len() > BULK_MEMBER_READ {
        stored_members(conn, source).await?
    } else {
        let ids: Vec<Uuid> = stale.iter().map(|(id, _)| *id).collect();
        ldap_fingerprints::members_of_groups(conn, &ids).await?
    };
    let no_members = BTreeMap::new();
    let mut new_prints = Vec::with_capacity(stale.len());
    let mut diffs = Vec::with_capacity(stale.len());
    let mut edges: Vec<(Uuid, GroupMember)> = Vec::new();
    for (group_id, wanted) in &stale {
        let current = stored.get(group_id).unwrap_or(&no_members);
        let managed = |id: &Uuid, kind: MemberKind| match (only_users, kind) {
            (Some(set), MemberKind::User) => set.contains(id),
            _ => true,
        };
        let add: Vec<GroupMember> = wanted
            .iter()
            .filter(|(id, _)| !current.contains_key(*id))
            .map(|(id, kind)| GroupMember {
                id: *id,
                kind: *kind,
            })
            .collect();
        let remove: Vec<(Uuid, MemberKind)> = current
            .iter()
            .filter(|(id, kind)| !wanted.contains_key(*id) && managed(id, **kind))
            .map(|(id, kind)| (*id, *kind))
            .collect();
        if !remove.is_empty() {
            let ids: Vec<Uuid> = remove.iter().map(|(id, _)| *id).collect();
            let removed = identities::remove_members(conn, *group_id, &ids).await?;
            report.members_removed += removed.len();
        }
        let mut after = current.clone();
        for (id, _) in &remove {
            after.remove(id);
        }
        after.extend(add.iter().map(|m| (m.id, m.kind)));
        new_prints.push((*group_id, members_fingerprint(&after)));
        edges.extend(add.iter().map(|m| (*group_id, m.clone())));
        diffs.push((*group_id, add, remove));
    }
    // Every group's new members in a few multi-row statements.
    let added: BTreeSet<(Uuid, Uuid)> =
        bulk::add_members(conn, &edges).await?.into_iter().collect();
    drop(edges);
    report.members_added += added.len();
    let emails: BTreeMap<Uuid, Option<&str>> = if diffs.is_empty() {
        BTreeMap::new()
    } else {
        users.values().map(|u| (u.id, u.email.as_deref())).collect()
    };
    for (group_id, add, remove) in diffs {
        let changes = add
            .iter()
            .filter(|m| added.contains(&(group_id, m.id)))
            .map(|m| (m.id, m.kind, "added"))
            .chain(remove.iter().map(|(id, kind)| (*id, *kind, "removed")));
        for (member, kind, change) in changes {
            // A nested group's members are many people: let the sync
            // worker look at everyone (no e-mail on the event).
            let email = match kind {
                MemberKind::User => emails.get(&member).copied().flatten().map(str::to_string),
                MemberKind::Group => None,
            };
            let event = NewIdentityEvent {
                source: source.clone(),
                kind: EventKind::MembershipChanged,
                subject_id: Some(member),
                email,
                detail: json!({"group": group_id.to_string(), "change": change}),
            };
            new_events.push(conn, event).await?;
        }
    }
    new_events.flush(conn).await?;
    ldap_fingerprints::put_group_fingerprints(conn, &new_prints).await?;
    Ok(report)
}

/// Creates, renames and deletes groups; returns every group's id by DN key.
async fn sync_groups(
    conn: &mut AnyConnection,
    source: &SourceName,
    stored: Vec<IdentityGroup>,
    snap: &DirectorySnapshot,
    report: &mut GroupReport,
    events: &mut bulk::EventWriter,
) -> Result<BTreeMap<String, Uuid>, StoreError> {
    let names = unique_group_names(&snap.groups);
    let stored: BTreeMap<String, IdentityGroup> = stored
        .into_iter()
        .map(|g| (dn_key(g.external_id.as_deref().unwrap_or_default()), g))
        .collect();
    let now = Timestamp::now();
    let mut ids = BTreeMap::new();
    for (key, group) in &stored {
        if !snap.groups.contains_key(key) {
            // Who the deletion can affect, read before the memberships go.
            let detail = crate::store::sync_scope::deleted_group_detail(
                conn,
                source,
                group.id,
                &group.display_name,
            )
            .await?;
            identities::delete_group(conn, source, group.id).await?;
            events
                .push(
                    conn,
                    NewIdentityEvent {
                        detail,
                        ..group_event(EventKind::GroupDeleted, group)
                    },
                )
                .await?;
            report.groups_deleted += 1;
        }
    }
    // Renames go through the (unique) DN first, so two groups swapping
    // names never collide on the per-source unique display name.
    let mut renamed = Vec::new();
    for (key, group) in &stored {
        let (Some(found), Some(name)) = (snap.groups.get(key), names.get(key)) else {
            continue;
        };
        ids.insert(key.clone(), group.id);
        if group.display_name != *name || group.external_id.as_deref() != Some(&found.dn) {
            let mut row = IdentityGroup {
                display_name: found.dn.clone(),
                external_id: Some(found.dn.clone()),
                version: group.version + 1,
                updated_at: now,
                ..group.clone()
            };
            identities::update_group(conn, &row, None).await?;
            row.display_name = name.clone();
            renamed.push(row);
        }
    }
    for row in renamed {
        identities::update_group(conn, &row, None).await?;
        events
            .push(conn, group_event(EventKind::GroupUpdated, &row))
            .await?;
        report.groups_renamed += 1;
    }
    let mut new_rows = Vec::new();
    for (key, found) in &snap.groups {
        if stored.contains_key(key) {
            continue;
        }
        let row = IdentityGroup {
            id: Uuid::new_v4(),
            source: source.clone(),
            external_id: Some(found.dn.clone()),
            display_name: names.get(key).cloned().unwrap_or_else(|| found.dn.clone()),
            attributes: json!({ "dn": found.dn, "cn": found.name }),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        ids.insert(key.clone(), row.id);
        report.groups_created += 1;
        new_rows.push(row);
    }
    for chunk in new_rows.chunks(500) {
        bulk::insert_groups(conn, chunk).await?;
        for row in chunk {
            events
                .push(conn, group_event(EventKind::GroupCreated, row))
                .await?;
        }
    }
    Ok(ids)
}

async fn stored_members(
    conn: &mut AnyConnection,
    source: &SourceName,
) -> Result<BTreeMap<Uuid, BTreeMap<Uuid, MemberKind>>, StoreError> {
    let mut out: BTreeMap<Uuid, BTreeMap<Uuid, MemberKind>> = BTreeMap::new();
    for (group, member) in identities::list_memberships(conn, source).await? {
        out.entry(group).or_default().insert(member.id, member.kind);
    }
    Ok(out)
}

fn group_event(kind: EventKind, group: &IdentityGroup) -> NewIdentityEvent {
    NewIdentityEvent {
        source: group.source.clone(),
        kind,
        subject_id: Some(group.id),
        email: None,
        detail: json!({"displayName": group.display_name}),
    }
}

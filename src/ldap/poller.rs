//! One poll of one source: read the directory, compare with the store,
//! apply the differences (users, groups, memberships) with their events in
//! one transaction — or, when the mass-removal guard trips, nothing.

use std::collections::{BTreeMap, BTreeSet};

use secrecy::SecretString;
use serde::Serialize;
use uuid::Uuid;

use super::apply::apply_user_changes;
use super::apply_groups::{GroupReport, UserRef, apply_groups};
use super::config::{LdapSourceConfig, MembershipMode};
use super::diff::{Held, UserChange, check_removals, diff_users, stored_dn};
use super::error::LdapError;
use super::nested;
use super::read::{DirectoryRead, read_directory};
use super::translate::{DirectorySnapshot, dn_key, translate};
use crate::domain::{IdentityUser, SourceName, Timestamp};
use crate::store::{Store, StoreError, identities};

/// Full polls may delete users; incremental ones read only changed users
/// and never delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PollKind {
    Full,
    Incremental,
}

/// How to poll.
#[derive(Debug, Clone, Copy)]
pub struct PollOptions {
    pub kind: PollKind,
    /// Apply even if the mass-removal guard trips (operator approval).
    pub force: bool,
    /// Incremental polls: read users changed at or after this time.
    pub since: Option<Timestamp>,
}

/// What a poll did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PollReport {
    pub kind: PollKind,
    pub users_read: usize,
    pub groups_read: usize,
    /// User changes (created, updated, deactivated, reactivated, deleted).
    pub changes: usize,
    pub groups: GroupReport,
    /// Groups found on a membership cycle (tolerated, reported).
    pub cycles: Vec<String>,
    /// Set when the mass-removal guard held the poll: nothing was applied.
    pub held: Option<Held>,
}

impl PollReport {
    /// Whether anything was written (so the sync worker has work).
    pub fn wrote(&self) -> bool {
        self.held.is_none() && (self.changes > 0 || self.groups.changes() > 0)
    }
}

/// Polls `source` once, reading every user (`kind` decides whether users
/// missing from the directory are deleted). See [`run_poll`].
pub async fn run_once(
    store: &Store,
    source: &SourceName,
    cfg: &LdapSourceConfig,
    password: &SecretString,
    kind: PollKind,
    force: bool,
) -> Result<PollReport, LdapError> {
    let options = PollOptions {
        kind,
        force,
        since: None,
    };
    run_poll(store, source, cfg, password, options).await
}

/// Polls `source` once. Any LDAP error fails the poll before anything is
/// written; the store is changed in one transaction or not at all.
pub async fn run_poll(
    store: &Store,
    source: &SourceName,
    cfg: &LdapSourceConfig,
    password: &SecretString,
    options: PollOptions,
) -> Result<PollReport, LdapError> {
    let since = match options.kind {
        PollKind::Full => None,
        PollKind::Incremental => options.since,
    };
    let read = read_directory(cfg, password, since).await?;
    let mut tx = store.begin_write().await?;
    let stored = identities::list_users(&mut tx, source).await?;
    // Consumes the raw entries, the largest thing a poll holds, so they are
    // freed before the store reads memberships.
    let snap = snapshot(cfg, read, &stored);
    let full = options.kind == PollKind::Full;
    let changes = diff_users(&stored, snap.users.values(), full);
    let cycles = nested::cycles(&snap.group_members);
    if !cycles.is_empty() {
        tracing::warn!(source = %source, groups = ?cycles, "LDAP groups nest in a cycle; each is counted once");
    }
    let mut report = PollReport {
        kind: options.kind,
        users_read: snap.users.len(),
        groups_read: snap.groups.len(),
        changes: changes.len(),
        groups: GroupReport::default(),
        cycles: cycles.into_iter().collect(),
        held: None,
    };
    let guard = check_removals(
        &changes,
        stored.len(),
        cfg.max_removal_percent,
        cfg.max_removal_min,
    );
    if let (Err(held), false) = (guard, options.force) {
        tracing::warn!(source = %source, removals = held.removals, stored = held.stored, "LDAP poll held by the mass-removal guard");
        report.held = Some(held);
        return Ok(report);
    }
    let created = apply_user_changes(&mut tx, source, &stored, &changes).await?;
    let users = user_refs(&stored, &snap, &created, &changes);
    let only_users = (cfg.membership == MembershipMode::MemberOf && !full).then(|| {
        snap.users
            .keys()
            .filter_map(|key| users.get(key).map(|u| u.id))
            .collect::<BTreeSet<Uuid>>()
    });
    report.groups = apply_groups(&mut tx, source, &snap, &users, only_users.as_ref()).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(report)
}

/// The read translated, with what the config adds: users matched by the
/// disabled filter are inactive; in-chain members replace member lists.
fn snapshot(
    cfg: &LdapSourceConfig,
    read: DirectoryRead,
    stored: &[IdentityUser],
) -> DirectorySnapshot {
    let known: Vec<(String, String)> = stored
        .iter()
        .filter_map(|u| stored_dn(u).map(|dn| (dn_key(dn), u.user_name.clone())))
        .collect();
    let mut snap = translate(cfg, &read.users, &read.groups, &known);
    for key in &read.disabled {
        if let Some(user) = snap.users.get_mut(key) {
            user.active = false;
        }
    }
    if cfg.membership == MembershipMode::AdInChain {
        snap.user_members = read.in_chain;
        snap.group_members.clear();
    }
    snap
}

/// Every user of the source after the changes, by DN key.
fn user_refs(
    stored: &[IdentityUser],
    snap: &DirectorySnapshot,
    created: &[(String, Uuid)],
    changes: &[UserChange],
) -> BTreeMap<String, UserRef> {
    let deleted: BTreeSet<Uuid> = changes
        .iter()
        .filter_map(|c| match c {
            UserChange::Delete { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let mut refs: BTreeMap<String, UserRef> = stored
        .iter()
        .filter(|u| !deleted.contains(&u.id))
        .filter_map(|u| {
            let r = UserRef {
                id: u.id,
                email: u.email.clone(),
            };
            stored_dn(u).map(|dn| (dn_key(dn), r))
        })
        .collect();
    let by_stable: BTreeMap<&str, Uuid> = stored
        .iter()
        .filter_map(|u| u.external_id.as_deref().map(|x| (x, u.id)))
        .collect();
    let created: BTreeMap<String, Uuid> =
        created.iter().map(|(dn, id)| (dn_key(dn), *id)).collect();
    for (key, user) in &snap.users {
        let id = by_stable
            .get(user.stable_id.as_str())
            .or_else(|| created.get(key))
            .copied();
        if let Some(id) = id {
            refs.insert(
                key.clone(),
                UserRef {
                    id,
                    email: user.email.clone(),
                },
            );
        }
    }
    refs
}

//! One poll of one source: read the directory, compare with the store,
//! apply the differences (users, groups, memberships) with their events in
//! one transaction — or, when the mass-removal guard trips, nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use secrecy::SecretString;
use serde::Serialize;
use sqlx::AnyConnection;
use uuid::Uuid;

use super::apply::apply_user_changes;
use super::apply_groups::{GroupReport, StoredGroups, UserRef, apply_groups};
use super::config::{LdapSourceConfig, MembershipMode};
use super::diff::{
    Held, ReadCounts, UserChange, check_empty_read, check_removals, diff_users, removals,
};
use super::error::LdapError;
use super::fingerprint::user_fingerprint;
use super::nested;
use super::read::{TranslatedRead, read_translated};
use super::translate::{DirectorySnapshot, DirectoryUser, KnownUsers, dn_key};
use crate::domain::{IdentityUser, SourceName, Timestamp};
use crate::store::ldap_fingerprints::{self, UserDigest, UserKeys};
use crate::store::{Store, StoreError};

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
    /// Set when the poll was held (the mass-removal guard, or a read that
    /// found no users or no groups): nothing was applied.
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
    let full = options.kind == PollKind::Full;
    let since = if full { None } else { options.since };
    // User entries are translated as they arrive and dropped. A full poll
    // reads the stored state it compares with while the
    // directory is read, outside the write transaction; it is used only if
    // no poll of the source committed in between (else read again below).
    // Its failure only costs that second read.
    let (read, prefetched) = if full {
        // Its own task, so it runs beside the read on another thread.
        let task = tokio::spawn({
            let (store, source) = (store.clone(), source.clone());
            async move { prefetch(&store, &source).await }
        });
        let read = read_translated(cfg, password, since).await;
        let prefetched = match read {
            Ok(_) => task.await.ok().and_then(Result::ok),
            Err(_) => {
                task.abort();
                None
            }
        };
        (read?, prefetched)
    } else {
        (read_translated(cfg, password, since).await?, None)
    };
    apply_read(store, source, cfg, options, read, prefetched).await
}

/// The write half of a poll: what was read (and perhaps prefetched)
/// compared and applied in one transaction.
async fn apply_read(
    store: &Store,
    source: &SourceName,
    cfg: &LdapSourceConfig,
    options: PollOptions,
    read: TranslatedRead,
    prefetched: Option<Prefetched>,
) -> Result<PollReport, LdapError> {
    let full = options.kind == PollKind::Full;
    // Whether this poll read every user: a full one (or an incremental one
    // without `since`) read them whole; an incremental `member_of` poll read
    // every user's `memberOf` (how many entries that found).
    let every_user_read = full || options.since.is_none();
    let member_of_users = read.rest.member_of.as_ref().map(|m| m.users);
    let mut tx = store.begin_write().await?;
    let generation = ldap_fingerprints::bump_generation(&mut tx, source).await?;
    let prefetched = prefetched.filter(|p| p.generation == generation);
    let plan = if full {
        plan_full(&mut tx, source, cfg, read, prefetched).await?
    } else {
        plan_incremental(&mut tx, source, cfg, read).await?
    };
    let Plan {
        snap,
        stored,
        stored_count,
        changes,
        unchanged_prints,
        by_stable,
        stored_groups,
        all_users,
    } = plan;
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
    let stored_group_count = match (&stored_groups, snap.groups.is_empty()) {
        // Counted only when it matters: no group was read.
        (_, false) => 0,
        (Some(stored), true) => stored.groups.len(),
        (None, true) => ldap_fingerprints::count_groups(&mut tx, source).await?,
    };
    let counts = ReadCounts {
        users: if every_user_read {
            Some(snap.users.len())
        } else {
            member_of_users
        },
        stored_users: stored_count,
        groups: snap.groups.len(),
        stored_groups: stored_group_count,
    };
    let guard =
        check_empty_read(counts, removals(&changes), cfg.max_removal_percent).and_then(|()| {
            check_removals(
                &changes,
                stored_count,
                cfg.max_removal_percent,
                cfg.max_removal_min,
            )
        });
    if let (Err(held), false) = (guard, options.force) {
        tracing::warn!(source = %source, reason = %held.reason, removals = held.removals, stored = held.stored, "LDAP poll held");
        report.held = Some(held);
        return Ok(report);
    }
    let created = apply_user_changes(&mut tx, source, &stored, &changes).await?;
    ldap_fingerprints::put_user_fingerprints(&mut tx, &unchanged_prints).await?;
    let users = match &by_stable {
        Some(by_stable) => full_user_refs(by_stable, &snap, &created),
        None => user_refs(&all_users, &snap, &created),
    };
    // Every poll knows every membership (an incremental `member_of` poll
    // read every user's `memberOf`), so member lists are replaced whole.
    report.groups = apply_groups(&mut tx, source, &snap, &users, None, stored_groups).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(report)
}

/// What a poll will do, worked out on the write transaction.
struct Plan {
    snap: DirectorySnapshot,
    /// The stored rows `changes` refer to (full polls: only those).
    stored: Vec<IdentityUser>,
    /// Every stored user of the source (for the mass-removal guard).
    stored_count: usize,
    changes: Vec<UserChange>,
    /// Fingerprints to record for users that were compared but unchanged.
    unchanged_prints: Vec<(Uuid, i64)>,
    /// Full polls: every stored user's id by stable id.
    by_stable: Option<HashMap<String, Uuid>>,
    /// The stored groups, if read already.
    stored_groups: Option<StoredGroups>,
    /// Incremental polls: every stored user's keys (full polls: empty).
    all_users: Vec<UserKeys>,
}

/// What a full poll compares with, read before its write transaction.
struct Prefetched {
    /// Read first: the rest is current if the generation still is.
    generation: i64,
    users: Vec<UserDigest>,
    groups: StoredGroups,
}

async fn prefetch(store: &Store, source: &SourceName) -> Result<Prefetched, StoreError> {
    let mut conn = store.pool().acquire().await?;
    let generation = ldap_fingerprints::generation(&mut conn, source).await?;
    let users = ldap_fingerprints::user_digests(&mut conn, source).await?;
    let groups = StoredGroups::load(&mut conn, source).await?;
    Ok(Prefetched {
        generation,
        users,
        groups,
    })
}

/// A full poll reads back only users whose fingerprint does not match what
/// the directory says (or who are gone from it), and compares those.
async fn plan_full(
    conn: &mut AnyConnection,
    source: &SourceName,
    cfg: &LdapSourceConfig,
    read: TranslatedRead,
    prefetched: Option<Prefetched>,
) -> Result<Plan, LdapError> {
    // Every stored user not read is deleted, so none needs resolving as a
    // member by its stored DN or login.
    let snap = snapshot(cfg, read, &[]);
    let (digests, stored_groups) = match prefetched {
        Some(p) => (p.users, Some(p.groups)),
        None => (ldap_fingerprints::user_digests(conn, source).await?, None),
    };
    let stored_count = digests.len();
    let by_stable: HashMap<String, (Uuid, Option<i64>)> = digests
        .into_iter()
        .filter_map(|d| d.external_id.map(|x| (x, (d.id, d.fingerprint))))
        .collect();
    let mut seen: HashSet<&str> = HashSet::with_capacity(snap.users.len());
    let mut found: Vec<&DirectoryUser> = Vec::new();
    let mut compare: Vec<Uuid> = Vec::new();
    let mut prints: Vec<(Uuid, i64)> = Vec::new();
    for user in snap.users.values() {
        seen.insert(user.stable_id.as_str());
        match by_stable.get(user.stable_id.as_str()) {
            None => found.push(user),
            Some((id, stored)) => {
                let print = user_fingerprint(user);
                if *stored != Some(print) {
                    found.push(user);
                    compare.push(*id);
                    prints.push((*id, print));
                }
            }
        }
    }
    compare.extend(
        by_stable
            .iter()
            .filter(|(x, _)| !seen.contains(x.as_str()))
            .map(|(_, (id, _))| *id),
    );
    let stored = ldap_fingerprints::users_by_ids(conn, source, &compare).await?;
    let changes = diff_users(&stored, found.iter().copied(), true);
    let changed: BTreeSet<Uuid> = changes.iter().filter_map(UserChange::id).collect();
    prints.retain(|(id, _)| !changed.contains(id));
    let by_stable = by_stable.into_iter().map(|(x, (id, _))| (x, id)).collect();
    Ok(Plan {
        snap,
        stored,
        stored_count,
        changes,
        unchanged_prints: prints,
        by_stable: Some(by_stable),
        stored_groups,
        all_users: Vec::new(),
    })
}

/// An incremental poll compares the users it read with their stored rows;
/// group member lists may name any stored user, so every stored user's
/// keys are read (condensed, like a full poll's digests).
async fn plan_incremental(
    conn: &mut AnyConnection,
    source: &SourceName,
    cfg: &LdapSourceConfig,
    read: TranslatedRead,
) -> Result<Plan, LdapError> {
    let all_users = ldap_fingerprints::user_keys(conn, source).await?;
    let known: Vec<(String, String)> = all_users
        .iter()
        .filter_map(|u| u.dn.as_deref().map(|dn| (dn_key(dn), u.user_name.clone())))
        .collect();
    let snap = snapshot(cfg, read, &known);
    drop(known);
    let by_stable: HashMap<&str, Uuid> = all_users
        .iter()
        .filter_map(|u| u.external_id.as_deref().map(|x| (x, u.id)))
        .collect();
    let read_ids: Vec<Uuid> = snap
        .users
        .values()
        .filter_map(|u| by_stable.get(u.stable_id.as_str()).copied())
        .collect();
    drop(by_stable);
    let stored = ldap_fingerprints::users_by_ids(conn, source, &read_ids).await?;
    let changes = diff_users(&stored, snap.users.values(), false);
    Ok(Plan {
        snap,
        stored_count: all_users.len(),
        stored,
        changes,
        unchanged_prints: Vec::new(),
        by_stable: None,
        stored_groups: None,
        all_users,
    })
}

/// The read translated, with what the config adds: users matched by the
/// disabled filter are inactive; in-chain members replace member lists, as
/// do every user's `memberOf` when an incremental poll read them.
fn snapshot(cfg: &LdapSourceConfig, read: TranslatedRead, known: &KnownUsers) -> DirectorySnapshot {
    let TranslatedRead {
        users,
        groups,
        mut rest,
    } = read;
    let mut snap = users.finish_prepared(&groups, known);
    if let Some(all) = rest.member_of.take() {
        // Keyed by DN: the poll resolves users it did not read by their
        // stored DN.
        snap.user_members.clear();
        for (user, groups) in all.memberships {
            for group in groups {
                if snap.groups.contains_key(&group) {
                    snap.user_members
                        .entry(group)
                        .or_default()
                        .insert(user.clone());
                }
            }
        }
    }
    for key in &rest.disabled {
        if let Some(user) = snap.users.get_mut(key) {
            user.active = false;
        }
    }
    if cfg.membership == MembershipMode::AdInChain {
        snap.user_members = rest.in_chain;
        snap.group_members.clear();
    }
    snap
}

/// Full polls: every user read, after the changes, by DN key (a stored
/// user not read was deleted).
fn full_user_refs(
    by_stable: &HashMap<String, Uuid>,
    snap: &DirectorySnapshot,
    created: &[(String, Uuid)],
) -> BTreeMap<String, UserRef> {
    let created: BTreeMap<String, Uuid> =
        created.iter().map(|(dn, id)| (dn_key(dn), *id)).collect();
    snap.users
        .iter()
        .filter_map(|(key, user)| {
            let id = by_stable
                .get(user.stable_id.as_str())
                .or_else(|| created.get(key))?;
            let r = UserRef {
                id: *id,
                email: user.email.clone(),
            };
            Some((key.clone(), r))
        })
        .collect()
}

/// Incremental polls (which delete nobody): every user of the source
/// after the changes, by DN key.
fn user_refs(
    all_users: &[UserKeys],
    snap: &DirectorySnapshot,
    created: &[(String, Uuid)],
) -> BTreeMap<String, UserRef> {
    let mut refs: BTreeMap<String, UserRef> = all_users
        .iter()
        .filter_map(|u| {
            let r = UserRef {
                id: u.id,
                email: u.email.clone(),
            };
            u.dn.as_deref().map(|dn| (dn_key(dn), r))
        })
        .collect();
    let by_stable: BTreeMap<&str, Uuid> = all_users
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldap::read::DirectoryRead;
    use crate::ldap::translate::{RawEntry, Translator};
    use crate::store::{StoreOptions, identities};

    fn read_of(cfg: &LdapSourceConfig, uids: &[&str]) -> TranslatedRead {
        let mut users = Translator::new(cfg);
        for uid in uids {
            let attrs = [
                ("entryUUID".to_string(), vec![format!("id-{uid}")]),
                ("uid".to_string(), vec![uid.to_string()]),
                ("mail".to_string(), vec![format!("{uid}@x.org")]),
            ];
            users.push_user(&RawEntry::new(format!("uid={uid},dc=x"), attrs));
        }
        TranslatedRead {
            users,
            groups: Vec::new(),
            rest: DirectoryRead::default(),
        }
    }

    /// Two full polls read the store before either writes: the second to
    /// apply must see the generation moved and compare with what the first
    /// wrote (else it would create the same users again).
    #[tokio::test]
    async fn a_prefetch_overtaken_by_another_poll_is_not_used() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::connect(&StoreOptions::new(url))
            .await
            .expect("store");
        store.migrate().await.expect("migrate");
        let cfg = LdapSourceConfig::default();
        let source = SourceName::new("corp");
        let options = PollOptions {
            kind: PollKind::Full,
            force: false,
            since: None,
        };
        let first = prefetch(&store, &source).await.expect("prefetch");
        let second = prefetch(&store, &source).await.expect("prefetch");
        let report = apply_read(
            &store,
            &source,
            &cfg,
            options,
            read_of(&cfg, &["a", "b"]),
            Some(first),
        )
        .await
        .expect("first");
        assert_eq!(report.changes, 2);
        let report = apply_read(
            &store,
            &source,
            &cfg,
            options,
            read_of(&cfg, &["a", "b", "c"]),
            Some(second),
        )
        .await
        .expect("second");
        assert_eq!(report.changes, 1, "{report:?}");
        let mut conn = store.pool().acquire().await.expect("conn");
        assert_eq!(
            identities::count_users(&mut conn, &source)
                .await
                .expect("count"),
            3
        );
        // A current prefetch is used as is.
        drop(conn);
        let current = prefetch(&store, &source).await.expect("prefetch");
        assert_eq!(current.users.len(), 3);
        let report = apply_read(
            &store,
            &source,
            &cfg,
            options,
            read_of(&cfg, &["a", "b", "c"]),
            Some(current),
        )
        .await
        .expect("third");
        assert_eq!(report.changes, 0, "{report:?}");
    }
}

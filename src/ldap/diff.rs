//! Directory snapshot vs stored users → the changes to apply, and the
//! mass-removal guard. Pure. Users are matched by stable id (`external_id`).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::translate::DirectoryUser;
use crate::domain::IdentityUser;

/// One change to a user.
#[derive(Debug, Clone, PartialEq)]
pub enum UserChange {
    Create(DirectoryUser),
    /// Attributes changed; `active` is unchanged.
    Update {
        id: Uuid,
        user: DirectoryUser,
    },
    Deactivate {
        id: Uuid,
        user: DirectoryUser,
    },
    Reactivate {
        id: Uuid,
        user: DirectoryUser,
    },
    /// Gone from the directory (full polls only).
    Delete {
        id: Uuid,
        email: Option<String>,
    },
}

impl UserChange {
    /// The stored user changed (none for a creation).
    pub fn id(&self) -> Option<Uuid> {
        match self {
            UserChange::Create(_) => None,
            UserChange::Update { id, .. }
            | UserChange::Deactivate { id, .. }
            | UserChange::Reactivate { id, .. }
            | UserChange::Delete { id, .. } => Some(*id),
        }
    }
}

/// Compares `found` with `stored`. `full` allows deletions: an incremental
/// poll sees only changed entries, so absence means nothing there.
pub fn diff_users<'a>(
    stored: &[IdentityUser],
    found: impl IntoIterator<Item = &'a DirectoryUser>,
    full: bool,
) -> Vec<UserChange> {
    let by_id: BTreeMap<&str, &IdentityUser> = stored
        .iter()
        .filter_map(|u| u.external_id.as_deref().map(|x| (x, u)))
        .collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut changes = Vec::new();
    for user in found {
        if full {
            seen.insert(user.stable_id.as_str());
        }
        match by_id.get(user.stable_id.as_str()) {
            None => changes.push(UserChange::Create(user.clone())),
            Some(old) => {
                // Unchanged users (most of them, most polls) are not cloned.
                let id = old.id;
                match (old.active, user.active) {
                    (true, false) => changes.push(UserChange::Deactivate {
                        id,
                        user: user.clone(),
                    }),
                    (false, true) => changes.push(UserChange::Reactivate {
                        id,
                        user: user.clone(),
                    }),
                    _ if differs(old, user) => changes.push(UserChange::Update {
                        id,
                        user: user.clone(),
                    }),
                    _ => {}
                }
            }
        }
    }
    if full {
        for (ext, old) in &by_id {
            if !seen.contains(ext) {
                changes.push(UserChange::Delete {
                    id: old.id,
                    email: old.email.clone(),
                });
            }
        }
    }
    changes
}

fn differs(old: &IdentityUser, new: &DirectoryUser) -> bool {
    old.user_name != new.login
        || old.email != new.email
        || old.email_problem != new.email_problem
        || old.given_name != new.given_name
        || old.family_name != new.family_name
        || old.display_name != new.display_name
        || stored_dn(old).is_some_and(|dn| dn != new.dn)
}

/// The DN a user was stored with (LDAP users keep it in `attributes.dn`).
pub fn stored_dn(user: &IdentityUser) -> Option<&str> {
    user.attributes.get("dn").and_then(|v| v.as_str())
}

/// Why a poll was held instead of applied.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// For the operator: what tripped and what to check.
    pub reason: String,
    /// Users the poll would delete or deactivate.
    pub removals: usize,
    /// Users of the source in the store.
    pub stored: usize,
    pub max_percent: u8,
}

/// Users deleted or deactivated by `changes`.
pub fn removals(changes: &[UserChange]) -> usize {
    changes
        .iter()
        .filter(|c| matches!(c, UserChange::Delete { .. } | UserChange::Deactivate { .. }))
        .count()
}

/// The guard: more than `max_percent` of `stored` users deleted or
/// deactivated, and more than `min` of them, holds the poll.
pub fn check_removals(
    changes: &[UserChange],
    stored: usize,
    max_percent: u8,
    min: u32,
) -> Result<(), Held> {
    let removals = removals(changes);
    let over_share = removals * 100 > stored * usize::from(max_percent);
    if over_share && removals > min as usize {
        return Err(Held {
            reason: format!(
                "would remove {removals} of {stored} users (more than {max_percent}% and more \
                 than {min}); not applied"
            ),
            removals,
            stored,
            max_percent,
        });
    }
    Ok(())
}

/// What a poll read of the whole directory, for [`check_empty_read`].
#[derive(Debug, Clone, Copy)]
pub struct ReadCounts {
    /// Users read by a read of every user (`None`: this poll read only
    /// changed users, so none is not suspicious).
    pub users: Option<usize>,
    /// Users of the source in the store.
    pub stored_users: usize,
    /// Groups read (every poll reads every group).
    pub groups: usize,
    /// Groups of the source in the store.
    pub stored_groups: usize,
}

/// A read of every user that found none, or of every group that found
/// none, where the store has some, is a wrong filter or base far more
/// often than an emptied directory: held whatever the removal thresholds
/// say (a small directory is below `max_removal_min`).
pub fn check_empty_read(counts: ReadCounts, removals: usize, max_percent: u8) -> Result<(), Held> {
    let mut reasons = Vec::new();
    if counts.users == Some(0) && counts.stored_users > 0 {
        reasons.push(format!(
            "read 0 users where the source has {}: check user_filter/user_base",
            counts.stored_users
        ));
    }
    if counts.groups == 0 && counts.stored_groups > 0 {
        reasons.push(format!(
            "read 0 groups where the source has {}: check group_filter/group_base",
            counts.stored_groups
        ));
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Held {
        reason: format!("{}; not applied", reasons.join("; ")),
        removals,
        stored: counts.stored_users,
        max_percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SourceName;

    fn dir_user(id: &str, active: bool) -> DirectoryUser {
        DirectoryUser {
            dn: format!("uid={id},dc=x"),
            stable_id: id.into(),
            login: id.into(),
            email: Some(format!("{id}@x.org")),
            email_problem: None,
            given_name: None,
            family_name: None,
            display_name: None,
            active,
        }
    }

    fn stored(id: &str, active: bool) -> IdentityUser {
        IdentityUser {
            id: Uuid::new_v4(),
            source: SourceName::new("ldap"),
            external_id: Some(id.into()),
            user_name: id.into(),
            email: Some(format!("{id}@x.org")),
            email_problem: None,
            given_name: None,
            family_name: None,
            display_name: None,
            active,
            attributes: serde_json::json!({}),
            version: 1,
            created_at: crate::domain::Timestamp(0),
            updated_at: crate::domain::Timestamp(0),
        }
    }

    fn kinds(changes: &[UserChange]) -> Vec<&'static str> {
        changes
            .iter()
            .map(|c| match c {
                UserChange::Create(_) => "create",
                UserChange::Update { .. } => "update",
                UserChange::Deactivate { .. } => "deactivate",
                UserChange::Reactivate { .. } => "reactivate",
                UserChange::Delete { .. } => "delete",
            })
            .collect()
    }

    #[test]
    fn each_kind_of_change_is_detected() {
        let old = [
            stored("same", true),
            stored("off", true),
            stored("on", false),
            stored("gone", true),
            stored("mail", true),
        ];
        let mut changed_mail = dir_user("mail", true);
        changed_mail.email = Some("new@x.org".into());
        let found = [
            dir_user("same", true),
            dir_user("off", false),
            dir_user("on", true),
            dir_user("new", true),
            changed_mail,
        ];
        assert_eq!(
            kinds(&diff_users(&old, &found, true)),
            ["deactivate", "reactivate", "create", "update", "delete"]
        );
        assert_eq!(
            kinds(&diff_users(&old, &found, false)),
            ["deactivate", "reactivate", "create", "update"]
        );
    }

    #[test]
    fn the_guard_holds_large_removals_only() {
        let deletes = |n: usize| {
            (0..n)
                .map(|_| UserChange::Delete {
                    id: Uuid::nil(),
                    email: None,
                })
                .collect::<Vec<_>>()
        };
        assert!(
            check_removals(&deletes(20), 100, 20, 5).is_ok(),
            "exactly 20% is allowed"
        );
        assert_eq!(
            check_removals(&deletes(21), 100, 20, 5),
            Err(Held {
                reason: "would remove 21 of 100 users (more than 20% and more than 5); not applied"
                    .into(),
                removals: 21,
                stored: 100,
                max_percent: 20
            })
        );
        assert!(
            check_removals(&deletes(3), 4, 20, 5).is_ok(),
            "below the absolute minimum"
        );
    }

    #[test]
    fn an_empty_read_is_held_whatever_the_thresholds() {
        let counts = |users, stored_users, groups, stored_groups| ReadCounts {
            users,
            stored_users,
            groups,
            stored_groups,
        };
        let held = check_empty_read(counts(Some(0), 6, 2, 2), 6, 100).expect_err("held");
        assert_eq!(
            held.reason,
            "read 0 users where the source has 6: check user_filter/user_base; not applied"
        );
        assert_eq!((held.removals, held.stored), (6, 6));
        let held = check_empty_read(counts(Some(6), 6, 0, 3), 0, 20).expect_err("held");
        assert!(
            held.reason
                .starts_with("read 0 groups where the source has 3"),
            "{held:?}"
        );
        // An empty source, or an incremental read of changed users only.
        assert!(check_empty_read(counts(Some(0), 0, 0, 0), 0, 20).is_ok());
        assert!(check_empty_read(counts(None, 6, 2, 2), 0, 20).is_ok());
        assert!(check_empty_read(counts(Some(1), 6, 1, 2), 5, 20).is_ok());
    }
}

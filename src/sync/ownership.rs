//! Which Tyk users and groups tyk-idsync manages, and the policy knobs the
//! planner follows. Loaded from the store (`store::sync_state`) before each
//! plan; the planner never changes a Tyk user that is not in here (unless
//! adopting by e-mail is switched on).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::Timestamp;

/// A Tyk user we manage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedUser {
    pub org_id: String,
    pub tyk_user_id: String,
    pub email: String,
    pub managed_since: Timestamp,
    /// Taken over from an existing Tyk user rather than created by us.
    pub adopted: bool,
    /// When we (or a hand change we noticed) deactivated the user; the grace
    /// period before deletion counts from here.
    pub deactivated_at: Option<Timestamp>,
    /// When we last gave the (deactivated) user a new Dashboard API access
    /// key; cleared when the user is reactivated.
    #[serde(default)]
    pub access_key_reset_at: Option<Timestamp>,
}

/// A Tyk user group we manage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedGroup {
    pub org_id: String,
    pub tyk_group_id: String,
    pub name: String,
}

/// Managed users and groups, keyed by Tyk id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    pub users: BTreeMap<String, ManagedUser>,
    pub groups: BTreeMap<String, ManagedGroup>,
    /// (org, e-mail) of creations sent to Tyk whose id we never recorded
    /// (crash in between): the Tyk user with that e-mail is ours.
    #[serde(default)]
    pub pending_creates: BTreeSet<(String, String)>,
    /// (org, group name) of group creations whose id we never recorded.
    #[serde(default)]
    pub pending_group_creates: BTreeSet<(String, String)>,
}

impl Ownership {
    pub fn from_parts(
        users: impl IntoIterator<Item = ManagedUser>,
        groups: impl IntoIterator<Item = ManagedGroup>,
    ) -> Self {
        Self {
            users: users
                .into_iter()
                .map(|u| (u.tyk_user_id.clone(), u))
                .collect(),
            groups: groups
                .into_iter()
                .map(|g| (g.tyk_group_id.clone(), g))
                .collect(),
            pending_creates: BTreeSet::new(),
            pending_group_creates: BTreeSet::new(),
        }
    }

    pub fn manages_user(&self, tyk_user_id: &str) -> bool {
        self.users.contains_key(tyk_user_id)
    }

    /// Whether a creation for this person was interrupted.
    pub fn creation_pending(&self, org_id: &str, email: &str) -> bool {
        self.pending_creates
            .contains(&(org_id.to_string(), crate::domain::fold_key(email)))
    }

    /// Whether a creation of this group was interrupted.
    pub fn group_creation_pending(&self, org_id: &str, name: &str) -> bool {
        self.pending_group_creates
            .contains(&(org_id.to_string(), name.to_string()))
    }

    pub fn manages_group(&self, tyk_group_id: &str) -> bool {
        self.groups.contains_key(tyk_group_id)
    }
}

/// What happens to a person no source wants any more (or who is inactive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deprovision {
    /// Set `active: false` and keep the user (default).
    #[default]
    Deactivate,
    /// Deactivate, then delete once the grace period has passed.
    Delete,
}

/// The planner's policy knobs (from `SyncConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPolicy {
    pub deprovision: Deprovision,
    pub grace_period: Duration,
    pub adopt_existing: bool,
    /// Reset a deprovisioned user's Dashboard API access key
    /// (`sync.reset_access_key_on_deactivate`).
    pub reset_access_key: bool,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self {
            deprovision: Deprovision::Deactivate,
            grace_period: Duration::from_secs(30 * 24 * 3600),
            adopt_existing: false,
            reset_access_key: false,
        }
    }
}

impl SyncPolicy {
    /// Whether a user deactivated at `since` may be deleted at `now`.
    pub fn delete_due(&self, since: Timestamp, now: Timestamp) -> bool {
        let grace = i64::try_from(self.grace_period.as_millis()).unwrap_or(i64::MAX);
        self.deprovision == Deprovision::Delete && now.0.saturating_sub(since.0) >= grace
    }
}

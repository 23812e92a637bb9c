//! The desired Tyk state: what the mapping computes from identities and
//! rules, and what the sync planner compares with Tyk's actual state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SourceName;

/// A Tyk user group the mapping wants to exist, keyed by (org, name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DesiredGroup {
    pub org_id: String,
    pub name: String,
    pub description: Option<String>,
    /// Tyk `user_permissions` (section → `read`/`write`/`deny`); never `IsAdmin`.
    pub permissions: BTreeMap<String, String>,
}

/// A Tyk Dashboard user the mapping wants, keyed by (org, lower-cased email).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DesiredUser {
    pub org_id: String,
    /// Lower-cased, as Tyk stores it.
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// False when every source has the person inactive, or when the
    /// unmapped policy is `deactivate`.
    pub active: bool,
    /// Name of the Tyk user group (in `org_id`) the person belongs in;
    /// `None` only for a deactivated person with no group.
    pub group: Option<String>,
    /// The mapping rule that decided the group, for explain and the audit log.
    pub rule: Option<String>,
    /// Sources that currently know the person.
    pub sources: Vec<SourceName>,
}

/// Everything the mapping wants in Tyk, sorted, so that the same input in
/// any order gives an equal value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub groups: Vec<DesiredGroup>,
    pub users: Vec<DesiredUser>,
}

//! The planner's view of Tyk: users and user groups as the Dashboard lists
//! them, per organisation. Plain data, filled by whoever talks to Tyk (the
//! Dashboard client pages through `/api/users` and `/api/usergroups`), so the
//! planner has no dependency on HTTP.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A Tyk Dashboard user as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualUser {
    /// 24-hex Tyk id.
    pub id: String,
    pub org_id: String,
    /// Lower-cased (Tyk stores e-mails lower-cased; we lower again to be sure).
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub active: bool,
    /// `None` when Tyk reports `group_id: ""`.
    pub group_id: Option<String>,
    pub permissions: BTreeMap<String, String>,
    /// `user_permissions.IsAdmin == "admin"` or an empty permission map
    /// (both mean admin in Tyk). Admins are never touched.
    pub is_admin: bool,
}

impl ActualUser {
    /// Whether Tyk treats a permission map as an administrator's.
    pub fn permissions_mean_admin(permissions: &BTreeMap<String, String>) -> bool {
        permissions.is_empty() || permissions.get("IsAdmin").is_some_and(|v| v == "admin")
    }
}

/// A Tyk user group as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualGroup {
    /// 24-hex Tyk id.
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub description: Option<String>,
    pub permissions: BTreeMap<String, String>,
}

/// Everything the planner knows about Tyk, for every organisation in scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualState {
    pub users: Vec<ActualUser>,
    pub groups: Vec<ActualGroup>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_is_admin_permissions_mean_admin() {
        let mut perms = BTreeMap::new();
        assert!(ActualUser::permissions_mean_admin(&perms));
        perms.insert("apis".to_string(), "read".to_string());
        assert!(!ActualUser::permissions_mean_admin(&perms));
        perms.insert("IsAdmin".to_string(), "admin".to_string());
        assert!(ActualUser::permissions_mean_admin(&perms));
    }
}

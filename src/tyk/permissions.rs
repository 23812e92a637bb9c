//! `user_permissions`: a map of section → level. Levels are `read`, `write`,
//! `deny`, and `admin` for the special keys `IsAdmin` and `ResetPassword`.
//! Unknown sections and unknown levels round-trip unchanged, so a GET-modify-PUT
//! never loses what a newer Dashboard added.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The key whose value `admin` makes a user a Dashboard admin.
pub const IS_ADMIN: &str = "IsAdmin";

/// One permission level.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PermissionLevel {
    Read,
    Write,
    Deny,
    Admin,
    /// A level this client does not know; kept verbatim.
    Other(String),
}

impl PermissionLevel {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Deny => "deny",
            Self::Admin => "admin",
            Self::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "read" => Self::Read,
            "write" => Self::Write,
            "deny" => Self::Deny,
            "admin" => Self::Admin,
            other => Self::Other(other.to_string()),
        }
    }
}

impl fmt::Display for PermissionLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PermissionLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PermissionLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

/// A typed `user_permissions` map (ordered, so wire output is stable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Permissions(BTreeMap<String, PermissionLevel>);

impl Permissions {
    pub fn new() -> Self {
        Self::default()
    }

    /// The permissions of a Dashboard admin: `{"IsAdmin":"admin"}`.
    pub fn admin() -> Self {
        Self::new().with(IS_ADMIN, PermissionLevel::Admin)
    }

    pub fn with(mut self, section: impl Into<String>, level: PermissionLevel) -> Self {
        self.0.insert(section.into(), level);
        self
    }

    pub fn set(&mut self, section: impl Into<String>, level: PermissionLevel) {
        self.0.insert(section.into(), level);
    }

    pub fn get(&self, section: &str) -> Option<&PermissionLevel> {
        self.0.get(section)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &PermissionLevel)> {
        self.0.iter()
    }

    /// True for `IsAdmin: admin`. The Dashboard also treats an empty map as
    /// admin; callers that must never touch admins should check
    /// [`Permissions::grants_admin`] instead.
    pub fn is_admin(&self) -> bool {
        self.0.get(IS_ADMIN) == Some(&PermissionLevel::Admin)
    }

    /// True when the Dashboard would treat the holder as an admin: an
    /// explicit `IsAdmin: admin` or an empty map.
    pub fn grants_admin(&self) -> bool {
        self.is_admin() || self.is_empty()
    }

    /// Whether the map allows reading (`read` or `write`) a section.
    pub fn can_read(&self, section: &str) -> bool {
        self.grants_admin()
            || matches!(
                self.0.get(section),
                Some(PermissionLevel::Read | PermissionLevel::Write)
            )
    }

    /// Whether the map allows writing a section.
    pub fn can_write(&self, section: &str) -> bool {
        self.grants_admin() || self.0.get(section) == Some(&PermissionLevel::Write)
    }
}

impl FromIterator<(String, PermissionLevel)> for Permissions {
    fn from_iter<T: IntoIterator<Item = (String, PermissionLevel)>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_levels_round_trip() {
        let wire = r#"{"IsAdmin":"admin","apis":"write","governance":"read","mcp":"custom-level","users":"deny"}"#;
        let perms: Permissions = serde_json::from_str(wire).expect("parse");
        assert_eq!(
            perms.get("mcp"),
            Some(&PermissionLevel::Other("custom-level".into()))
        );
        assert_eq!(perms.get("users"), Some(&PermissionLevel::Deny));
        assert_eq!(serde_json::to_string(&perms).expect("serialise"), wire);
    }

    #[test]
    fn admin_detection() {
        let cases = [
            (r#"{"IsAdmin":"admin"}"#, true, true),
            (r#"{}"#, false, true),
            (r#"{"IsAdmin":"true"}"#, false, false),
            (r#"{"users":"write"}"#, false, false),
        ];
        for (wire, is_admin, grants) in cases {
            let perms: Permissions = serde_json::from_str(wire).expect("parse");
            assert_eq!(perms.is_admin(), is_admin, "{wire}");
            assert_eq!(perms.grants_admin(), grants, "{wire}");
        }
    }

    #[test]
    fn read_write_deny() {
        let perms = Permissions::new()
            .with("users", PermissionLevel::Read)
            .with("user_groups", PermissionLevel::Write)
            .with("apis", PermissionLevel::Deny);
        assert!(perms.can_read("users") && !perms.can_write("users"));
        assert!(perms.can_read("user_groups") && perms.can_write("user_groups"));
        assert!(!perms.can_read("apis") && !perms.can_read("keys"));
    }
}

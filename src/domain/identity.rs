//! A person or group as one identity source (a SCIM client or an LDAP
//! directory) knows them. Each source owns its own rows: ids are global, but
//! every lookup is scoped by source so one source never sees another's data.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{EmailProblem, Timestamp};

/// The configured name of an identity source, e.g. `okta` or `ldap-corp`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceName(pub String);

impl SourceName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SourceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user as stored for one source.
///
/// `attributes` is the source's full document (the SCIM resource minus
/// server-managed parts, or the LDAP attributes we read), kept opaque so that
/// extension attributes a client sends are returned unchanged. The typed
/// columns beside it are what the mapping and the indexes need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityUser {
    pub id: Uuid,
    pub source: SourceName,
    pub external_id: Option<String>,
    pub user_name: String,
    /// Primary e-mail as its join key ([`crate::domain::email_key`]: folded
    /// with [`crate::domain::fold_key`]); `None` when the source sent none or
    /// one that is not an address (then `email_problem` says why).
    pub email: Option<String>,
    /// Why the primary e-mail the source sent cannot be provisioned.
    #[serde(default)]
    pub email_problem: Option<EmailProblem>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    pub attributes: serde_json::Value,
    /// Incremented on every change; the SCIM ETag is derived from it.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a member of a group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemberKind {
    User,
    Group,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::User => "User",
            MemberKind::Group => "Group",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "User" => Some(MemberKind::User),
            "Group" => Some(MemberKind::Group),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupMember {
    pub id: Uuid,
    pub kind: MemberKind,
}

/// A group as stored for one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityGroup {
    pub id: Uuid,
    pub source: SourceName,
    /// SCIM `externalId`, or the full DN for LDAP groups.
    pub external_id: Option<String>,
    pub display_name: String,
    pub attributes: serde_json::Value,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

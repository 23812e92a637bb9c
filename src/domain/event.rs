//! Identity-change events: the durable outbox between the sources (SCIM,
//! LDAP, mapping edits) and the sync worker. An event is written in the same
//! transaction as the change it describes, so nothing accepted is ever lost.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SourceName, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    UserCreated,
    UserUpdated,
    UserDeactivated,
    UserReactivated,
    UserDeleted,
    GroupCreated,
    GroupUpdated,
    GroupDeleted,
    MembershipChanged,
    MappingChanged,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::UserCreated,
        EventKind::UserUpdated,
        EventKind::UserDeactivated,
        EventKind::UserReactivated,
        EventKind::UserDeleted,
        EventKind::GroupCreated,
        EventKind::GroupUpdated,
        EventKind::GroupDeleted,
        EventKind::MembershipChanged,
        EventKind::MappingChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::UserCreated => "user_created",
            EventKind::UserUpdated => "user_updated",
            EventKind::UserDeactivated => "user_deactivated",
            EventKind::UserReactivated => "user_reactivated",
            EventKind::UserDeleted => "user_deleted",
            EventKind::GroupCreated => "group_created",
            EventKind::GroupUpdated => "group_updated",
            EventKind::GroupDeleted => "group_deleted",
            EventKind::MembershipChanged => "membership_changed",
            EventKind::MappingChanged => "mapping_changed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// An event to append to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIdentityEvent {
    pub source: SourceName,
    pub kind: EventKind,
    /// The user or group the event is about.
    pub subject_id: Option<Uuid>,
    /// Lower-cased e-mail of the affected person, when known: the sync
    /// worker reconciles per person, keyed by e-mail.
    pub email: Option<String>,
    pub detail: serde_json::Value,
}

/// An event as stored, with its position in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityEvent {
    pub seq: i64,
    pub source: SourceName,
    pub kind: EventKind,
    pub subject_id: Option<Uuid>,
    pub email: Option<String>,
    pub detail: serde_json::Value,
    pub created_at: Timestamp,
    pub processed_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("user_exploded"), None);
    }
}

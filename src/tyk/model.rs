//! Wire types of the Dashboard and Admin APIs, shared by the client and the
//! stand-in. Unknown fields are kept in `extra` so GET-modify-PUT round-trips
//! what this crate does not model.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::permissions::Permissions;

/// The zero time the Dashboard reports for "never" (`last_login_date`).
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `ApiResponse` (Dashboard) / `ApiError` (Admin): the non-list envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "Status", default)]
    pub status: String,
    #[serde(rename = "Message", default)]
    pub message: String,
    /// Polymorphic: null, an id string, or a whole user object.
    #[serde(rename = "Meta", default)]
    pub meta: Value,
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Envelope {
    pub fn ok(message: impl Into<String>, meta: Value) -> Self {
        Self {
            status: "OK".into(),
            message: message.into(),
            meta,
            id: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            status: "Error".into(),
            message: message.into(),
            meta: Value::Null,
            id: None,
        }
    }
}

/// A Dashboard user as returned by `GET /api/users/{id}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct User {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub org_id: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub email_address: String,
    #[serde(default)]
    pub active: bool,
    /// `""` when the user is in no group.
    #[serde(default)]
    pub group_id: String,
    #[serde(default)]
    pub user_permissions: Permissions,
    /// Everything else (`access_key`, `api_model`, dates, `PWHistory`…).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl User {
    /// The Dashboard API key of this user, when the server shows it.
    pub fn access_key(&self) -> Option<&str> {
        self.extra
            .get("access_key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
    }
}

/// Body of `POST /api/users` and `POST /admin/users`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewUser {
    pub first_name: String,
    pub last_name: String,
    pub email_address: String,
    pub user_permissions: Permissions,
    #[serde(default)]
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
}

/// A user group (`/api/usergroups`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UserGroup {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub org_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub password_max_days: i64,
    #[serde(default)]
    pub user_permissions: Permissions,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `POST /api/usergroups`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewUserGroup {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub active: bool,
    pub user_permissions: Permissions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
}

/// An organisation (`OrganisationDocument`); unmodelled fields in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Organisation {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub owner_name: String,
    #[serde(default)]
    pub owner_slug: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `POST /admin/organisations`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NewOrganisation {
    pub owner_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner_slug: String,
}

/// One page of a list, with the server's total page count (may be 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub pages: u32,
}

/// `{"users": [...]|null, "pages": n}` (list and search).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsersList {
    #[serde(default)]
    pub users: Option<Vec<User>>,
    #[serde(default)]
    pub pages: i64,
}

/// `{"groups": [...]|null, "pages": n}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupsList {
    #[serde(default)]
    pub groups: Option<Vec<UserGroup>>,
    #[serde(default)]
    pub pages: i64,
}

/// `{"organisations": [...]|null, "pages": n}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrgsList {
    #[serde(default)]
    pub organisations: Option<Vec<Organisation>>,
    #[serde(default)]
    pub pages: i64,
}

/// Negative page counts are nonsense; treat them as zero.
pub(crate) fn page_count(pages: i64) -> u32 {
    u32::try_from(pages.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_missing_lists_are_empty() {
        for wire in [r#"{"users":null,"pages":0}"#, r#"{"pages":1}"#, r#"{}"#] {
            let list: UsersList = serde_json::from_str(wire).expect("parse");
            assert!(list.users.unwrap_or_default().is_empty(), "{wire}");
        }
    }

    #[test]
    fn user_round_trips_unknown_fields() {
        let wire = r#"{"id":"6649a9e85715ec4c96cbef2f","org_id":"o","first_name":"a","last_name":"b","email_address":"a@b.c","active":true,"group_id":"","user_permissions":{"IsAdmin":"admin"},"access_key":"k","api_model":{},"last_login_date":"0001-01-01T00:00:00Z"}"#;
        let user: User = serde_json::from_str(wire).expect("parse");
        assert_eq!(user.access_key(), Some("k"));
        let back: Value = serde_json::to_value(&user).expect("serialise");
        let orig: Value = serde_json::from_str(wire).expect("parse");
        assert_eq!(back, orig);
    }
}

//! The applier's view of Tyk's write side: a small trait the lead adapts
//! the Dashboard client to, and the error classification retries rely on.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::actual::{ActualGroup, ActualUser};
use super::step::Permissions;

/// A whole Tyk user as sent on `POST /api/users` and `PUT /api/users/{id}`
/// (Tyk's PUT is safest with the full object; `group_id: ""` for none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub org_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub active: bool,
    pub group_id: Option<String>,
    pub permissions: Permissions,
}

impl From<&ActualUser> for UserRecord {
    fn from(user: &ActualUser) -> Self {
        Self {
            org_id: user.org_id.clone(),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            active: user.active,
            group_id: user.group_id.clone(),
            permissions: user.permissions.clone(),
        }
    }
}

/// A Tyk user group as sent on `POST`/`PUT /api/usergroups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub org_id: String,
    pub name: String,
    pub description: Option<String>,
    pub permissions: Permissions,
}

/// How a write to Tyk failed, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Timeout, transport error, 429 (with its `Retry-After`), 5xx.
    #[error("temporary Tyk failure: {message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 403 `User email already exists for this org.`
    #[error("a Tyk user with this e-mail already exists in the org")]
    EmailAlreadyExists,
    /// A 4xx refusing the data itself (400 `User object validation
    /// failed.`; not 401/403/404/408/409/429): the same request can never
    /// succeed, so the person is quarantined (`sync::quarantine`).
    #[error("Tyk refused the data ({status}): {message}")]
    Refused { status: u16, message: String },
    /// Anything else (401, 403, 404…): retrying will not help.
    #[error("Tyk refused the change: {message}")]
    Permanent {
        status: Option<u16>,
        message: String,
    },
}

impl WriteError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, WriteError::Retryable { .. })
    }
}

/// Tyk's write side (plus the one lookup idempotent creation needs). The
/// lead implements it over the Dashboard client; tests use an in-memory fake.
pub trait TykWriter: Send + Sync {
    /// Returns the new group id.
    fn create_group(
        &self,
        group: &GroupRecord,
    ) -> impl Future<Output = Result<String, WriteError>> + Send;
    fn update_group(
        &self,
        group_id: &str,
        group: &GroupRecord,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
    fn delete_group(
        &self,
        org_id: &str,
        group_id: &str,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
    /// Returns the new user id.
    fn create_user(
        &self,
        user: &UserRecord,
    ) -> impl Future<Output = Result<String, WriteError>> + Send;
    fn update_user(
        &self,
        user_id: &str,
        user: &UserRecord,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
    fn delete_user(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
    /// Gives the user a new Dashboard API access key.
    fn reset_user_key(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;
    /// Only called after `EmailAlreadyExists`, to see whose user it is.
    fn find_user_by_email(
        &self,
        org_id: &str,
        email: &str,
    ) -> impl Future<Output = Result<Option<ActualUser>, WriteError>> + Send;
    /// Whether this writer paces its requests itself (the Tyk client's one
    /// limiter does), so the applier must not pace them a second time.
    fn paces_itself(&self) -> bool {
        false
    }
    /// The organisation's user groups as Tyk holds them now, read afresh
    /// (no cache): how an abandoned group step's audit intent is resolved.
    /// `Ok(None)`: this writer cannot read groups.
    fn read_groups(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<ActualGroup>>, WriteError>> + Send {
        let _ = org_id;
        async { Ok(None) }
    }
}

/// A shared writer is a writer (the worker owns one; tests keep a handle).
impl<T: TykWriter> TykWriter for std::sync::Arc<T> {
    fn paces_itself(&self) -> bool {
        (**self).paces_itself()
    }
    fn create_group(
        &self,
        group: &GroupRecord,
    ) -> impl Future<Output = Result<String, WriteError>> + Send {
        (**self).create_group(group)
    }
    fn update_group(
        &self,
        group_id: &str,
        group: &GroupRecord,
    ) -> impl Future<Output = Result<(), WriteError>> + Send {
        (**self).update_group(group_id, group)
    }
    fn delete_group(
        &self,
        org_id: &str,
        group_id: &str,
    ) -> impl Future<Output = Result<(), WriteError>> + Send {
        (**self).delete_group(org_id, group_id)
    }
    fn create_user(
        &self,
        user: &UserRecord,
    ) -> impl Future<Output = Result<String, WriteError>> + Send {
        (**self).create_user(user)
    }
    fn update_user(
        &self,
        user_id: &str,
        user: &UserRecord,
    ) -> impl Future<Output = Result<(), WriteError>> + Send {
        (**self).update_user(user_id, user)
    }
    fn delete_user(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<(), WriteError>> + Send {
        (**self).delete_user(org_id, user_id)
    }
    fn reset_user_key(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<(), WriteError>> + Send {
        (**self).reset_user_key(org_id, user_id)
    }
    fn find_user_by_email(
        &self,
        org_id: &str,
        email: &str,
    ) -> impl Future<Output = Result<Option<ActualUser>, WriteError>> + Send {
        (**self).find_user_by_email(org_id, email)
    }
    fn read_groups(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<ActualGroup>>, WriteError>> + Send {
        (**self).read_groups(org_id)
    }
}

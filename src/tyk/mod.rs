//! Client for the Tyk Dashboard API (`/api/...`, raw-key `authorization`
//! header) and the Dashboard Admin API (`/admin/...`, `admin-auth` header),
//! following `shared/tyk/CONTRACT.md`. The client never retries by itself:
//! every error says whether a retry makes sense, and the sync worker decides.

mod admin;
mod client;
mod config;
mod error;
pub mod failure_log;
mod model;
mod permissions;
mod transport;

pub use admin::AdminClient;
pub use client::{RequestLimits, TykClient, WriteGate};
pub use config::TykConfig;
pub use error::TykError;
pub use model::{
    Envelope, GroupsList, NewOrganisation, NewUser, NewUserGroup, Organisation, OrgsList, Page,
    User, UserGroup, UsersList, ZERO_TIME,
};
pub use permissions::{PermissionLevel, Permissions};

/// Exact Dashboard API message for a duplicate email (note the period).
pub const MSG_EMAIL_EXISTS_DASHBOARD: &str = "User email already exists for this org.";
/// Exact Admin API message for a duplicate email (capital O, no period).
pub const MSG_EMAIL_EXISTS_ADMIN: &str = "User email already exists for this Org";

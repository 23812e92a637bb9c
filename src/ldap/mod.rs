//! LDAP poller: reads users, groups and memberships from OpenLDAP or
//! Active Directory on a schedule and writes the differences as identity
//! changes (the same events SCIM writes).
//!
//! `read` (strict paged searches, disabled filter, AD range retrieval and
//! in-chain membership) → `translate` (entries → a pure snapshot) →
//! `diff` (users, mass-removal guard) → `apply`/`apply_groups` (one
//! transaction with events). `schedule` chooses full vs incremental polls
//! from the stored state and runs them while this replica leads; `api`
//! and the CLI trigger them on demand.
//!
//! Membership design: the store holds *direct* members (users and
//! group→group edges); the mapping expands nesting, cycle-safely.

pub mod api;
pub mod apply;
pub mod apply_groups;
pub mod client;
pub mod config;
pub mod diff;
pub mod error;
pub mod escape;
pub mod fingerprint;
pub mod nested;
pub mod poller;
pub mod read;
pub mod schedule;
pub mod translate;

pub use config::{LdapConfig, LdapSourceConfig};
pub use error::LdapError;

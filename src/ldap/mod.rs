//! LDAP poller: reads users and groups from OpenLDAP or Active Directory.
//!
//! Status: configuration, the strict paged client, RFC 4515 escaping,
//! entry translation, nested-group expansion and the user diff with its
//! mass-removal guard are in place; `poller::run_once` applies the *user*
//! diff in one transaction with events. Not yet: groups and memberships in
//! the poller, incremental filtering by modifyTimestamp, poll state table,
//! scheduler, benchmark.
//!
//! Membership design: the store is meant to hold *direct* members (users
//! and group→group edges); [`nested::expand`] resolves nesting cycle-safely.

pub mod api;
pub mod apply;
pub mod apply_groups;
pub mod client;
pub mod config;
pub mod diff;
pub mod error;
pub mod escape;
pub mod nested;
pub mod poller;
pub mod read;
pub mod schedule;
pub mod translate;

pub use config::{LdapConfig, LdapSourceConfig};
pub use error::LdapError;

//! LDAP poller: reads users and groups from OpenLDAP or Active Directory.
//!
//! Status: configuration, the strict paged client, RFC 4515 escaping,
//! entry translation, nested-group expansion and the user diff with its
//! mass-removal guard are in place. The poller that applies a diff in one
//! transaction with events, its state table and the scheduler are not yet.
//!
//! Membership design: the store is meant to hold *direct* members (users
//! and group→group edges); [`nested::expand`] resolves nesting cycle-safely.

pub mod client;
pub mod config;
pub mod diff;
pub mod error;
pub mod escape;
pub mod nested;
pub mod translate;

pub use config::{LdapConfig, LdapSourceConfig};
pub use error::LdapError;

//! LDAP poller: reads users and groups from OpenLDAP or Active Directory.
//!
//! Status: the pure building blocks (configuration, RFC 4515 escaping and
//! nested-group expansion with cycle detection) are in place; the client,
//! translation, diff and poller are still to be written.

pub mod client;
pub mod config;
pub mod error;
pub mod escape;
pub mod nested;
pub mod translate;

pub use config::{LdapConfig, LdapSourceConfig};

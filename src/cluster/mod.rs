//! Which replica leads. Any number of replicas serve SCIM and the admin API;
//! exactly one at a time runs the LDAP pollers and the sync worker.
//!
//! # Theory of operation
//! On PostgreSQL, leadership is a session-level advisory lock held on a
//! dedicated connection (never a pooled one, whose session could be reused).
//! PostgreSQL releases the lock the moment that session ends — the leader's
//! process dies, or its connection drops — so a follower, retrying every
//! `retry_interval`, takes over within about one interval. The leader checks
//! its connection every `retry_interval` too; if the check fails it steps
//! down at once, before it could apply anything more. Workers ask
//! [`Leadership::is_leader`] before each unit of work.
//!
//! On SQLite there is only one process by construction (the file is local),
//! so it always leads.

mod elector;
mod notify;

pub use elector::{Leadership, Role, campaign};
pub use notify::listen_for_outbox;

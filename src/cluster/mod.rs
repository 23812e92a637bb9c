//! Which replica leads. Any number of replicas serve SCIM and the admin API;
//! exactly one at a time runs the LDAP pollers and the sync worker.
//!
//! # Theory of operation
//! On PostgreSQL, leadership is a session-level advisory lock held on a
//! dedicated connection (never a pooled one, whose session could be reused).
//! PostgreSQL releases the lock the moment that session ends — the leader's
//! process dies, or its connection drops — so a follower, retrying every
//! `retry_interval`, takes over within about one interval.
//!
//! A leader cannot learn at once that its session ended, so it writes only
//! under a lease: each answer of the lock's session (confirmed twice per
//! interval) lets it write until one interval after the question was
//! sent, and every write to Tyk asks [`Leadership::may_write`] first. A
//! new leader waits one interval plus [`TAKEOVER_MARGIN`] after winning the
//! lock before its first write: by then every predecessor's lease has run
//! out (it was last confirmed before the lock was free). Workers also ask
//! [`Leadership::is_leader`] before each unit of work.
//!
//! On SQLite there is only one process by construction (the file is local),
//! so it always leads.

mod elector;
mod notify;

pub use elector::{
    CommandLock, CommandLockError, LEADER_LOCK_KEY, Leadership, NotLeading, Role, TAKEOVER_MARGIN,
    campaign,
};
pub use notify::listen_for_outbox;

/// Drives a [`Leadership`]'s lease in other modules' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::time::{Duration, Instant};

    use super::Leadership;

    pub fn gain(leadership: &Leadership, at: Instant, check_interval: Duration) {
        leadership.gained(at, at, check_interval);
    }

    pub fn confirm(leadership: &Leadership, at: Instant, check_interval: Duration) {
        leadership.confirmed(at, check_interval);
    }
}

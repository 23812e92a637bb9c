use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use crate::tasks::Shutdown;

/// The advisory-lock key every replica of one deployment contends for
/// (an arbitrary constant: "tyk-idsync" in ASCII, folded to 63 bits).
pub const LEADER_LOCK_KEY: i64 = 0x7479_6b2d_6964_7379;

/// Added to the check interval a new leader waits before its first write:
/// it covers the time between an old leader's last fence check and its
/// request reaching Tyk, and clock-rate differences between hosts.
pub const TAKEOVER_MARGIN: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
}

/// The window in which this replica may write to Tyk: from `writes_from`
/// (a new leader waits out its predecessor) until `valid_until` (the last
/// lock confirmation plus the check interval).
#[derive(Debug, Clone, Copy, Default)]
struct Lease {
    writes_from: Option<Instant>,
    valid_until: Option<Instant>,
}

/// A cheap, shared view of this replica's role and lease.
#[derive(Debug, Clone)]
pub struct Leadership {
    leader: Arc<AtomicBool>,
    /// `None`: a replica that always leads (no lease to check).
    lease: Option<Arc<Mutex<Lease>>>,
}

/// Why this replica may not write to Tyk right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotLeading {
    #[error("this replica is not the leader")]
    Follower,
    #[error("this replica has just become the leader and waits out its predecessor")]
    WaitingOutPredecessor,
    #[error("this replica has not confirmed its leader lock recently")]
    LeaseExpired,
}

impl Leadership {
    /// A replica that always leads (SQLite, or tests).
    pub fn always() -> Self {
        Self {
            leader: Arc::new(AtomicBool::new(true)),
            lease: None,
        }
    }

    /// A replica that follows until [`campaign`] wins the lock.
    pub fn follower() -> Self {
        Self {
            leader: Arc::new(AtomicBool::new(false)),
            lease: Some(Arc::new(Mutex::new(Lease::default()))),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    pub fn role(&self) -> Role {
        if self.is_leader() {
            Role::Leader
        } else {
            Role::Follower
        }
    }

    /// Whether a write to Tyk may start now (see [`Self::may_write_at`]).
    pub fn may_write(&self) -> Result<(), NotLeading> {
        self.may_write_at(Instant::now())
    }

    /// Whether a write to Tyk may start at `now`: this replica leads, has
    /// waited out its predecessor, and confirmed its lock within the check
    /// interval. Decided from instants alone, so a hung election task (or
    /// a dead lock connection not yet noticed) stops writes all the same.
    pub fn may_write_at(&self, now: Instant) -> Result<(), NotLeading> {
        if !self.is_leader() {
            return Err(NotLeading::Follower);
        }
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        let lease = *lease.lock().unwrap_or_else(|e| e.into_inner());
        match (lease.writes_from, lease.valid_until) {
            (Some(from), _) if now < from => Err(NotLeading::WaitingOutPredecessor),
            (Some(_), Some(until)) if now < until => Ok(()),
            (None, _) => Err(NotLeading::Follower),
            _ => Err(NotLeading::LeaseExpired),
        }
    }

    /// When this replica's first write may start, if it leads.
    pub fn writes_from(&self) -> Option<Instant> {
        let lease = self.lease.as_ref()?;
        lease.lock().unwrap_or_else(|e| e.into_inner()).writes_from
    }

    /// The lock was won: the answer came at `acquired_at`, the question was
    /// sent at `asked_at`. Writes may start once the longest time a
    /// previous leader could still believe it leads (`check_interval` plus
    /// [`TAKEOVER_MARGIN`]) has passed.
    pub(super) fn gained(&self, asked_at: Instant, acquired_at: Instant, check_interval: Duration) {
        if let Some(lease) = &self.lease {
            *lease.lock().unwrap_or_else(|e| e.into_inner()) = Lease {
                writes_from: Some(acquired_at + check_interval + TAKEOVER_MARGIN),
                valid_until: Some(asked_at + check_interval),
            };
        }
        self.set(true);
    }

    /// The lock's session answered a query sent at `asked_at`: it held the
    /// lock then, so writes may go on until `asked_at + check_interval`.
    pub(super) fn confirmed(&self, asked_at: Instant, check_interval: Duration) {
        if let Some(lease) = &self.lease {
            let mut lease = lease.lock().unwrap_or_else(|e| e.into_inner());
            let until = asked_at + check_interval;
            lease.valid_until = Some(lease.valid_until.map_or(until, |u| u.max(until)));
        }
    }

    /// Steps down: the lease ends at once.
    pub(super) fn lost(&self) {
        if let Some(lease) = &self.lease {
            *lease.lock().unwrap_or_else(|e| e.into_inner()) = Lease::default();
        }
        self.set(false);
    }

    fn set(&self, leader: bool) {
        let was = self.leader.swap(leader, Ordering::SeqCst);
        if was != leader {
            metrics::gauge!("tyk_idsync_leader").set(if leader { 1.0 } else { 0.0 });
            if leader {
                tracing::info!("This replica is now the leader.");
            } else {
                tracing::warn!("This replica is no longer the leader.");
            }
        }
    }
}

/// Contends for leadership until shutdown. Run it as a background task.
/// `retry_interval` is `database.leader_check_interval`: how often a
/// follower tries the lock, and how long one confirmation of a held lock
/// lets this replica write (the leader confirms twice per interval).
pub async fn campaign(
    url: String,
    leadership: Leadership,
    retry_interval: Duration,
    mut shutdown: Shutdown,
) {
    while !shutdown.is_requested() {
        match PgConnection::connect(&url).await {
            Ok(conn) => hold_or_wait(conn, &leadership, retry_interval, &mut shutdown).await,
            Err(e) => {
                leadership.lost();
                tracing::warn!(error = %e, "Leader election cannot reach PostgreSQL.");
            }
        }
        if !shutdown.sleep(retry_interval).await {
            break;
        }
    }
    leadership.lost();
}

/// On one connection: try the lock until it is ours, then keep confirming
/// it. Returns when the connection fails or shutdown is requested.
async fn hold_or_wait(
    mut conn: PgConnection,
    leadership: &Leadership,
    retry_interval: Duration,
    shutdown: &mut Shutdown,
) {
    // A leader confirms twice per interval, so that its lease (one
    // interval from a confirmation) never lapses between two checks.
    let confirm_every = (retry_interval / 2).max(Duration::from_millis(1));
    loop {
        let leading = leadership.is_leader();
        let asked_at = Instant::now();
        let check = async {
            if leading {
                sqlx::query_scalar::<_, i32>("SELECT 1")
                    .fetch_one(&mut conn)
                    .await
                    .map(|_| true)
            } else {
                sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                    .bind(LEADER_LOCK_KEY)
                    .fetch_one(&mut conn)
                    .await
            }
        };
        // A connection that hangs (network partition) counts as lost; the
        // lease runs out one interval after the last answer all the same,
        // so a slow answer stops writes without costing the lead.
        match tokio::time::timeout(retry_interval, check).await {
            Ok(Ok(true)) if leading => leadership.confirmed(asked_at, retry_interval),
            Ok(Ok(true)) => leadership.gained(asked_at, Instant::now(), retry_interval),
            Ok(Ok(false)) => leadership.lost(),
            Ok(Err(e)) => {
                leadership.lost();
                tracing::warn!(error = %e, "Leader election connection failed.");
                return;
            }
            Err(_) => {
                leadership.lost();
                tracing::warn!("Leader election connection did not answer in time.");
                return;
            }
        }
        let pause = if leadership.is_leader() {
            confirm_every
        } else {
            retry_interval
        };
        if !shutdown.sleep(pause).await {
            // Stop writing first, then close the session: that releases
            // the lock for the next leader at once.
            leadership.lost();
            let _ = conn.close().await;
            return;
        }
    }
}

/// The leader lock taken by a one-shot command (`sync --once`) for its
/// duration, so that it never writes to Tyk beside a running leader: while
/// it holds the lock no replica leads, and its writes are fenced by the
/// same lease (confirmed twice per interval on the lock's session).
#[derive(Debug)]
pub struct CommandLock {
    leadership: Leadership,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    keeper: tokio::task::JoinHandle<()>,
}

/// Why a one-shot command could not take the leader lock.
#[derive(Debug, thiserror::Error)]
pub enum CommandLockError {
    #[error(
        "another tyk-idsync replica leads (it holds the leader lock on this database); \
         nothing was written: the leader syncs on its own, or stop the replicas and run this again"
    )]
    Held,
    #[error("cannot take the leader lock: {0}")]
    Database(String),
}

impl CommandLock {
    /// Takes the leader lock on a dedicated connection to `url`, or fails
    /// at once with [`CommandLockError::Held`] when a leader holds it.
    /// Returns once writes may start: like any new leader, it waits out a
    /// predecessor's lease (`check_interval` + [`TAKEOVER_MARGIN`]).
    pub async fn acquire(url: &str, check_interval: Duration) -> Result<Self, CommandLockError> {
        let db = |e: sqlx::Error| CommandLockError::Database(e.to_string());
        let mut conn = PgConnection::connect(url).await.map_err(db)?;
        let asked_at = Instant::now();
        let won = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK_KEY)
            .fetch_one(&mut conn)
            .await
            .map_err(db)?;
        if !won {
            let _ = conn.close().await;
            return Err(CommandLockError::Held);
        }
        let leadership = Leadership::follower();
        leadership.gained(asked_at, Instant::now(), check_interval);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let keeper = tokio::spawn(keep_command_lock(
            conn,
            leadership.clone(),
            check_interval,
            stopped,
        ));
        if let Some(from) = leadership.writes_from() {
            tokio::time::sleep_until(from.into()).await;
        }
        Ok(Self {
            leadership,
            stop: Some(stop),
            keeper,
        })
    }

    /// The lease the command's writes are fenced by.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// Stops writing and frees the lock (closing its session).
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.keeper).await;
    }
}

/// Confirms the command's lock until told to stop or the session fails
/// (then the lease ends at once and the command's writes are refused).
async fn keep_command_lock(
    mut conn: PgConnection,
    leadership: Leadership,
    check_interval: Duration,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let confirm_every = (check_interval / 2).max(Duration::from_millis(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(confirm_every) => {}
            _ = &mut stopped => break,
        }
        let asked_at = Instant::now();
        let check = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut conn);
        match tokio::time::timeout(check_interval, check).await {
            Ok(Ok(_)) => leadership.confirmed(asked_at, check_interval),
            _ => {
                leadership.lost();
                tracing::warn!("The command's leader lock connection failed; writes stop.");
                return;
            }
        }
    }
    leadership.lost();
    let _ = conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK: Duration = Duration::from_secs(1);

    #[test]
    fn a_new_leader_waits_out_its_predecessor_before_writing() {
        let leadership = Leadership::follower();
        let t0 = Instant::now();
        assert_eq!(leadership.may_write_at(t0), Err(NotLeading::Follower));
        leadership.gained(t0, t0, CHECK);
        assert!(leadership.is_leader());
        assert_eq!(
            leadership.may_write_at(t0 + CHECK),
            Err(NotLeading::WaitingOutPredecessor)
        );
        // Confirmed meanwhile: writes start once the wait is over.
        leadership.confirmed(t0 + CHECK, CHECK);
        assert_eq!(
            leadership.may_write_at(t0 + CHECK + TAKEOVER_MARGIN),
            Ok(())
        );
    }

    #[test]
    fn an_unconfirmed_lease_expires_one_interval_after_the_last_confirmation() {
        let leadership = Leadership::follower();
        let t0 = Instant::now();
        leadership.gained(t0, t0, CHECK);
        let c = t0 + CHECK + TAKEOVER_MARGIN;
        leadership.confirmed(c, CHECK);
        assert_eq!(leadership.may_write_at(c + CHECK / 2), Ok(()));
        // Still flagged leader (the election task has not noticed), but
        // the confirmation is stale: no write.
        assert!(leadership.is_leader());
        assert_eq!(
            leadership.may_write_at(c + CHECK),
            Err(NotLeading::LeaseExpired)
        );
        // A late confirmation of an older question does not shorten it.
        leadership.confirmed(c - CHECK, CHECK);
        assert_eq!(leadership.may_write_at(c + CHECK / 2), Ok(()));
    }

    #[test]
    fn stepping_down_ends_the_lease_at_once() {
        let leadership = Leadership::follower();
        let t0 = Instant::now();
        leadership.gained(t0, t0, CHECK);
        leadership.confirmed(t0 + CHECK, CHECK);
        leadership.lost();
        assert_eq!(
            leadership.may_write_at(t0 + CHECK + TAKEOVER_MARGIN),
            Err(NotLeading::Follower)
        );
        assert_eq!(leadership.writes_from(), None);
    }

    #[test]
    fn an_always_leader_may_always_write() {
        assert_eq!(Leadership::always().may_write(), Ok(()));
    }
}

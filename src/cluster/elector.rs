use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::tasks::Shutdown;

/// The advisory-lock key every replica of one deployment contends for
/// (an arbitrary constant: "tyk-idsync" in ASCII, folded to 63 bits).
pub const LEADER_LOCK_KEY: i64 = 0x7479_6b2d_6964_7379;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
}

/// A cheap, shared view of this replica's role.
#[derive(Debug, Clone)]
pub struct Leadership {
    leader: Arc<AtomicBool>,
}

impl Leadership {
    /// A replica that always leads (SQLite, or tests).
    pub fn always() -> Self {
        Self {
            leader: Arc::new(AtomicBool::new(true)),
        }
    }

    /// A replica that follows until [`campaign`] wins the lock.
    pub fn follower() -> Self {
        Self {
            leader: Arc::new(AtomicBool::new(false)),
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
                leadership.set(false);
                tracing::warn!(error = %e, "Leader election cannot reach PostgreSQL.");
            }
        }
        if !shutdown.sleep(retry_interval).await {
            break;
        }
    }
    leadership.set(false);
}

/// On one connection: try the lock until it is ours, then keep checking the
/// connection. Returns when the connection fails or shutdown is requested.
async fn hold_or_wait(
    mut conn: PgConnection,
    leadership: &Leadership,
    retry_interval: Duration,
    shutdown: &mut Shutdown,
) {
    loop {
        let leading = leadership.is_leader();
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
        // A connection that hangs (network partition) counts as lost.
        match tokio::time::timeout(retry_interval, check).await {
            Ok(Ok(holds)) => leadership.set(holds),
            Ok(Err(e)) => {
                leadership.set(false);
                tracing::warn!(error = %e, "Leader election connection failed.");
                return;
            }
            Err(_) => {
                leadership.set(false);
                return;
            }
        }
        if !shutdown.sleep(retry_interval).await {
            // Closing the session releases the lock for the next leader now.
            leadership.set(false);
            let _ = conn.close().await;
            return;
        }
    }
}

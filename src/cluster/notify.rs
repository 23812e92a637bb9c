//! Wakes the sync worker when any replica appends to the outbox, through
//! PostgreSQL `LISTEN/NOTIFY`, instead of polling the table tightly.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use crate::store::events::OUTBOX_CHANNEL;
use crate::tasks::Shutdown;

/// Listens until shutdown, reconnecting after failures. Every notification
/// (and every reconnect, since notifications may have been missed) pokes
/// `wakeup`.
pub async fn listen_for_outbox(url: String, wakeup: Arc<Notify>, mut shutdown: Shutdown) {
    while !shutdown.is_requested() {
        match PgListener::connect(&url).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(OUTBOX_CHANNEL).await {
                    tracing::warn!(error = %e, "Cannot LISTEN for outbox events.");
                } else {
                    wakeup.notify_one();
                    loop {
                        tokio::select! {
                            received = listener.recv() => match received {
                                Ok(_) => wakeup.notify_one(),
                                Err(e) => {
                                    tracing::warn!(error = %e, "Outbox listener lost its connection.");
                                    break;
                                }
                            },
                            _ = shutdown.requested() => return,
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Outbox listener cannot reach PostgreSQL."),
        }
        if !shutdown.sleep(Duration::from_secs(1)).await {
            return;
        }
    }
}

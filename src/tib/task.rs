//! The background task: on the leader only, re-render every `interval` (or
//! when poked) and push on a difference; read every profile back every
//! `verify_interval` to correct hand edits. A failed push is retried
//! sooner, with a doubling delay capped at `interval`.

use std::sync::Arc;
use std::time::Duration;

use super::service::TibService;
use crate::cluster::Leadership;
use crate::tasks::Shutdown;

pub async fn run(service: Arc<TibService>, leadership: Leadership, mut shutdown: Shutdown) {
    let wakeup = service.waker();
    let mut failures: u32 = 0;
    loop {
        while !leadership.is_leader() {
            if !shutdown.sleep(Duration::from_secs(1)).await {
                return;
            }
        }
        match service.run_once().await {
            Ok(Some(report)) if !report.ok => failures = failures.saturating_add(1),
            Ok(_) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "TIB profiles not rendered; retrying later");
            }
        }
        let delay = service.backoff(failures);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = wakeup.notified() => {}
            _ = shutdown.requested() => return,
        }
    }
}

//! The background task: on the leader only, re-render every `interval` (or
//! when poked, or as soon as the rules or the Tyk groups the sync manages
//! change in the store, checked every second) and push on a difference;
//! read every profile back every `verify_interval` to correct hand edits.
//! A failed push is retried sooner, with a doubling delay capped at
//! `interval`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::push::TibError;
use super::service::TibService;
use crate::cluster::Leadership;
use crate::tasks::Shutdown;

/// How often the store fingerprint is compared between runs.
const STORE_CHECK: Duration = Duration::from_secs(1);

pub async fn run(service: Arc<TibService>, leadership: Leadership, mut shutdown: Shutdown) {
    let wakeup = service.waker();
    let mut failures: u32 = 0;
    loop {
        while !leadership.is_leader() {
            if !shutdown.sleep(Duration::from_secs(1)).await {
                return;
            }
        }
        // A new leader writes only once its predecessor's lease ran out
        // (the service's write gate would refuse until then).
        if let Some(from) = leadership.writes_from() {
            let wait = from.saturating_duration_since(std::time::Instant::now());
            if !wait.is_zero() && !shutdown.sleep(wait).await {
                return;
            }
        }
        let mut seen = service.store_fingerprint().await.ok();
        match service.run_once().await {
            Ok(Some(report)) if !report.ok => failures = failures.saturating_add(1),
            Ok(_) => failures = 0,
            Err(e @ TibError::Fenced(_)) => {
                failures = failures.saturating_add(1);
                tracing::info!(error = %e, "TIB profiles not pushed: this replica does not lead");
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "TIB profiles not rendered; retrying later");
            }
        }
        let deadline = Instant::now() + service.backoff(failures);
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let step = STORE_CHECK.min(deadline - now);
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = wakeup.notified() => break,
                _ = shutdown.requested() => return,
            }
            let current = service.store_fingerprint().await.ok();
            if current.is_some() && current != seen {
                seen = current;
                break;
            }
        }
    }
}

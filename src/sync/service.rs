//! The sync worker as the service runs it: Tyk through [`TykGateway`], the
//! desired state from the mapping over the store, and a loop that only
//! applies while this replica leads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::actual::ActualState;
use super::tyk_gateway::TykGateway;
use super::worker::{ActualScope, LoadError, Outcome, StateSource, SyncWorker, Trigger};
use crate::cluster::Leadership;
use crate::domain::DesiredState;
use crate::store::Store;
use crate::tasks::Shutdown;

type DesiredFuture = Pin<Box<dyn Future<Output = Result<DesiredState, LoadError>> + Send>>;

/// Computes the desired Tyk state from the store (the mapping).
pub type DesiredLoader = Arc<dyn Fn(Store) -> DesiredFuture + Send + Sync>;

/// Where the service's worker gets desired and actual state.
pub struct ServiceSource {
    store: Store,
    gateway: TykGateway,
    desired: DesiredLoader,
}

impl ServiceSource {
    pub fn new(store: Store, gateway: TykGateway, desired: DesiredLoader) -> Self {
        Self {
            store,
            gateway,
            desired,
        }
    }
}

impl StateSource for ServiceSource {
    async fn desired(&self) -> Result<DesiredState, LoadError> {
        (self.desired)(self.store.clone()).await
    }

    /// Tyk has no lookup by e-mail cheaper than its listing, so every scope
    /// lists everyone; the planner narrows it.
    async fn actual(&self, _scope: &ActualScope) -> Result<ActualState, LoadError> {
        self.gateway
            .list_actual()
            .await
            .map_err(|e| LoadError(format!("listing Tyk users and groups: {e}")))
    }
}

/// The worker the service runs.
pub type ServiceWorker = SyncWorker<TykGateway, ServiceSource>;

/// Runs the worker until shutdown: outbox events as soon as `wakeup` fires
/// (or every `poll_interval`), a full reconcile every `interval` — but only
/// while this replica leads; a replica that loses the lead stops at once.
pub async fn run(worker: Arc<ServiceWorker>, leadership: Leadership, mut shutdown: Shutdown) {
    let config = worker.config().clone();
    let wakeup = worker.waker();
    let mut full = tokio::time::interval(config.interval);
    full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let trigger = tokio::select! {
            () = shutdown.requested() => return,
            _ = full.tick() => Trigger::Full,
            () = wakeup.notified() => Trigger::Events,
            () = tokio::time::sleep(config.poll_interval) => Trigger::Events,
        };
        while leadership.is_leader() && !shutdown.is_requested() {
            match worker.run_once(trigger).await {
                Ok(status) if trigger == Trigger::Events && status.outcome != Outcome::Idle => {}
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, ?trigger, "Sync run failed; retrying later.");
                    break;
                }
            }
        }
    }
}

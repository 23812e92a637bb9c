//! The sync worker as the service runs it: Tyk through [`TykGateway`], the
//! desired state from the mapping over the store, and a loop that only
//! applies while this replica leads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::actual::ActualState;
use super::tyk_gateway::TykGateway;
use super::worker::{ActualScope, LoadError, StateSource, SyncWorker};
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

/// Runs the worker until shutdown, applying only while this replica leads.
pub async fn run(worker: Arc<ServiceWorker>, leadership: Leadership, mut shutdown: Shutdown) {
    worker
        .run(shutdown.requested(), || leadership.is_leader())
        .await;
}

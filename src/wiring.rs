//! Builds the boundaries' runtime parts from the configuration: the SCIM
//! state, the mapping's live config, the sync worker over the Tyk client,
//! and the routes each contributes. `startup` and `cli` both use it, so
//! `serve` and the one-shot commands see the same objects.

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Notify;

use crate::cluster::Leadership;
use crate::config::Config;
use crate::mapping::MappingConfig;
use crate::scim::ScimState;
use crate::store::{Store, StoreError};
use crate::sync::SyncWorker;
use crate::sync::fenced::Fenced;
use crate::sync::service::{DesiredLoader, ServiceSource, ServiceWorker, UnmappedGroup};
use crate::sync::tyk_gateway::TykGateway;
use crate::sync::worker::LoadError;
use crate::tyk::{RequestLimits, TykClient, TykError, WriteGate};

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the Tyk client: {0}")]
    Tyk(#[from] TykError),
    #[error("mapping: {0}")]
    Mapping(#[from] crate::mapping::MappingError),
    #[error("tib: {0}")]
    Tib(#[from] crate::tib::TibError),
}

/// The mapping section as the running service sees it; SIGHUP replaces it.
pub type LiveMapping = Arc<RwLock<MappingConfig>>;

pub fn live_mapping(config: &Config) -> LiveMapping {
    Arc::new(RwLock::new(config.mapping.clone()))
}

fn read(mapping: &LiveMapping) -> MappingConfig {
    mapping
        .read()
        .map(|c| c.clone())
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
}

/// Replaces the live mapping config (after the store took its rules).
pub fn replace(mapping: &LiveMapping, config: MappingConfig) {
    match mapping.write() {
        Ok(mut guard) => *guard = config,
        Err(poisoned) => *poisoned.into_inner() = config,
    }
}

/// The desired state from the store through the live mapping config.
pub fn desired_loader(mapping: LiveMapping) -> DesiredLoader {
    Arc::new(move |store: Store, people| {
        let config = read(&mapping);
        Box::pin(async move {
            match people {
                None => crate::mapping::load_desired(&store, &config).await,
                Some(emails) => crate::mapping::load_desired_for(&store, &config, &emails).await,
            }
            .map_err(|e| LoadError(format!("mapping: {e}")))
        })
    })
}

/// The desired state as a dry run sees it: the store's rules with the
/// config file's rules merged in memory, nothing written
/// ([`crate::mapping::service::load_desired_dry_run`]).
pub fn dry_run_loader(mapping: LiveMapping) -> DesiredLoader {
    Arc::new(move |store: Store, people| {
        let config = read(&mapping);
        Box::pin(async move {
            crate::mapping::service::load_desired_dry_run(&store, &config, people.as_ref())
                .await
                .map_err(|e| LoadError(format!("mapping: {e}")))
        })
    })
}

/// The sync worker, when a Tyk Dashboard is configured.
pub fn sync_worker(
    config: &Config,
    store: &Store,
    mapping: &LiveMapping,
    leadership: &Leadership,
) -> Result<Option<Arc<ServiceWorker>>, WiringError> {
    let live = mapping.clone();
    let unmapped: UnmappedGroup = Arc::new(move || unmapped_group(&read(&live)));
    sync_worker_placing(
        config,
        store,
        desired_loader(mapping.clone()),
        unmapped,
        leadership,
    )
}

/// Where `unmapped_policy = "default"` puts people no rule matches:
/// (default org, default group).
fn unmapped_group(mapping: &MappingConfig) -> Option<(String, String)> {
    let options = mapping.resolve_options();
    match (
        options.unmapped_policy,
        options.default_org_id,
        options.default_group,
    ) {
        (crate::mapping::UnmappedPolicy::Default, Some(org), Some(group)) => Some((org, group)),
        _ => None,
    }
}

/// The sync worker with this desired-state loader (`plan` passes
/// [`dry_run_loader`]). Every write to Tyk is fenced by `leadership`'s
/// lease, twice: before each attempt ([`Fenced`]) and right before the
/// request leaves the client (its write gate).
pub fn sync_worker_with(
    config: &Config,
    store: &Store,
    loader: DesiredLoader,
    leadership: &Leadership,
) -> Result<Option<Arc<ServiceWorker>>, WiringError> {
    let mapping = config.mapping.clone();
    let unmapped: UnmappedGroup = Arc::new(move || unmapped_group(&mapping));
    sync_worker_placing(config, store, loader, unmapped, leadership)
}

/// The sync worker, told where unmapped people go (see
/// [`ServiceSource::placing_unmapped_people`]).
fn sync_worker_placing(
    config: &Config,
    store: &Store,
    loader: DesiredLoader,
    unmapped: UnmappedGroup,
    leadership: &Leadership,
) -> Result<Option<Arc<ServiceWorker>>, WiringError> {
    let Some(tyk) = &config.tyk else {
        return Ok(None);
    };
    let limits = RequestLimits {
        requests_per_second: config.sync.requests_per_second,
        max_concurrency: config.sync.max_concurrency.min(tyk.max_concurrency.max(1)),
    };
    let client = TykClient::with_limits(tyk, limits)?.with_write_gate(write_gate(leadership));
    let gateway = TykGateway::new(client)
        .with_retry(config.sync.limits().retry)
        .trusting_own_writes(config.sync.trust_own_writes)
        .with_listing_concurrency(config.sync.max_concurrency);
    let source = ServiceSource::new(store.clone(), gateway.clone(), loader)
        .placing_unmapped_people(unmapped);
    Ok(Some(Arc::new(SyncWorker::new(
        store.clone(),
        Fenced::new(gateway, leadership.clone()),
        source,
        config.sync.clone(),
    ))))
}

/// The SCIM state, when SCIM is enabled.
pub async fn scim_state(config: &Config, store: &Store) -> Result<Option<ScimState>, WiringError> {
    if !config.scim.enabled {
        return Ok(None);
    }
    let key = crate::problem::resolve_secret(
        "scim.token_signing_key",
        config.scim.token_signing_key.as_ref(),
        config.scim.token_signing_key_file.as_deref(),
    )
    .ok()
    .flatten();
    Ok(Some(
        ScimState::new(store.clone(), &config.scim, key.as_ref()).await?,
    ))
}

/// Routes that are not documented through utoipa (they come as plain axum
/// routers from their modules), listed in the OpenAPI document by hand in
/// [`crate::http::openapi`].
/// After an accepted write (SCIM, mapping rules), wakes the sync worker so the change
/// reaches Tyk at once rather than at the next outbox poll.
async fn wake_after_write(request: Request, next: Next, wakeup: Arc<Notify>) -> Response {
    let writes = request.method() != Method::GET && request.method() != Method::HEAD;
    let response = next.run(request).await;
    if writes && response.status().is_success() {
        wakeup.notify_one();
    }
    response
}

pub struct PlainRoutes {
    /// Public routes (SCIM has its own bearer-token authentication).
    pub public: Router,
    /// Admin routes, full paths under `/admin/v1`; the admin token guards them.
    pub admin: Router,
    /// The LDAP pollers, for the console's "poll now".
    pub ldap: crate::ldap::schedule::LdapPollers,
    /// Wakes the TIB re-render (with a `[tib]` section), for the console's
    /// rule changes as for the admin API's.
    pub tib_wakeup: Option<Arc<Notify>>,
}

#[allow(clippy::too_many_arguments)]
pub fn plain_routes(
    config: &Config,
    store: &Store,
    scim: Option<ScimState>,
    mapping: &LiveMapping,
    worker: Option<Arc<ServiceWorker>>,
    sync_wakeup: Arc<Notify>,
    ldap: crate::ldap::schedule::LdapPollers,
    tib: Option<Arc<crate::tib::TibService>>,
) -> PlainRoutes {
    let waking = |router: Router| {
        let wakeup = sync_wakeup.clone();
        router.layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let wakeup = wakeup.clone();
                async move { wake_after_write(request, next, wakeup).await }
            },
        ))
    };
    let public = match scim {
        Some(state) => waking(crate::scim::router(state)),
        None => Router::new(),
    };
    let mapping_state = crate::mapping::api::MappingApiState {
        store: store.clone(),
        config: mapping.clone(),
        tib_logins: crate::tib::config::logins(config.tib.as_ref()),
        tyk_side: worker.clone().map(crate::mapping::explain::tyk_side_of),
    };
    let pollers = ldap.clone();
    let mut admin = crate::mapping::api::router(mapping_state)
        .nest("/admin/v1", crate::ldap::api::router(ldap));
    if let Some(worker) = worker {
        admin = admin.nest("/admin/v1", crate::sync::admin::router(worker));
    }
    let mut admin = waking(admin);
    let tib_wakeup = tib.as_ref().map(|service| service.waker());
    if let Some(service) = &tib {
        // A rule change may change a TIB profile: re-render now.
        let wakeup = service.waker();
        admin = admin.layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let wakeup = wakeup.clone();
                async move { wake_after_write(request, next, wakeup).await }
            },
        ));
    }
    let admin = admin.merge(crate::tib::api::router(crate::tib::api::TibApiState {
        store: store.clone(),
        config: config.tib.clone(),
        service: tib,
    }));
    PlainRoutes {
        public,
        admin,
        ldap: pollers,
        tib_wakeup,
    }
}

/// The gate every write to Tyk or TIB asks right before it leaves: open
/// while `leadership` holds its lease (a replica's, or a one-shot command's
/// lock), so a writer that lost the lead writes nothing more.
pub fn write_gate(leadership: &Leadership) -> WriteGate {
    let leadership = leadership.clone();
    Arc::new(move || leadership.may_write().map_err(|e| e.to_string()))
}

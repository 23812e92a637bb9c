//! Building and running the application: open the store, migrate, bind the
//! listener, serve until a shutdown signal, then drain in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;

use crate::admin::AdminAuth;
use crate::cluster::{self, Leadership};
use crate::config::{Config, ConfigProblem};
use crate::http::{self, AppState, SharedState};
use crate::store::{Backend, Store, StoreError, StoreOptions};
use crate::tasks::{self, Shutdown, Task};
use crate::wiring::{self, LiveMapping, PlainRoutes};

#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Wiring(#[from] wiring::WiringError),
    #[error("config error: {0}")]
    Config(#[from] ConfigProblem),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// A built application, bound to its port but not yet serving.
pub struct Application {
    listener: TcpListener,
    state: SharedState,
    tasks: Vec<Task>,
    plain_routes: Option<PlainRoutes>,
}

/// Opens the store described by the config (without migrating), for a
/// one-shot command.
pub async fn open_store(config: &Config) -> Result<Store, StartupError> {
    open_store_as(config, "command").await
}

/// Opens the store; its PostgreSQL sessions are named
/// `tyk-idsync/<role>/<server.listen>` in `pg_stat_activity`.
pub async fn open_store_as(config: &Config, role: &str) -> Result<Store, StartupError> {
    let url = config.database.effective_url()?;
    let mut options = StoreOptions::new(url);
    options.max_connections = config.database.max_connections;
    options.application_name = Some(crate::store::application_name(role, &config.server.listen));
    Ok(Store::connect(&options).await?)
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_config_file(config, None).await
    }

    /// As [`Application::build`]; `config_file` is re-read on SIGHUP to
    /// reload the mapping section.
    pub async fn build_with_config_file(
        config: Config,
        config_file: Option<PathBuf>,
    ) -> Result<Self, StartupError> {
        let store = open_store_as(&config, "pool").await?;
        if config.database.run_migrations {
            store.migrate().await?;
        }
        let addr = config.server.listen_addr()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;

        let mapping = wiring::live_mapping(&config);
        if store.migration_status().await?.is_current() {
            crate::mapping::sync_config_rules(&store, &config.mapping)
                .await
                .map_err(wiring::WiringError::from)?;
        } else {
            // Not ready (see /readyz); `migrate` then SIGHUP applies the rules.
            tracing::warn!(
                "Migrations are pending; mapping rules from the config are not applied yet."
            );
        }
        let scim = wiring::scim_state(&config, &store).await?;
        // The sync worker's writes are fenced by this replica's lease.
        let leadership = match store.backend() {
            Backend::Sqlite => Leadership::always(),
            Backend::Postgres => Leadership::follower(),
        };
        let sync = wiring::sync_worker(&config, &store, &mapping, &leadership)?;
        let sync_wakeup = match &sync {
            Some(worker) => worker.waker(),
            None => Arc::new(tokio::sync::Notify::new()),
        };

        let mut tasks = Vec::new();
        match store.backend() {
            Backend::Sqlite => {}
            Backend::Postgres => {
                let url = config.database.effective_url()?;
                let named = |role: &str| {
                    let name = crate::store::application_name(role, &config.server.listen);
                    crate::store::with_application_name(&url, &name)
                };
                let (u, url) = (named("leader-lock"), named("outbox-listener"));
                let interval = config.database.leader_check_interval;
                let l = leadership.clone();
                tasks.push(Task::new("leader-election", move |shutdown| {
                    cluster::campaign(u, l, interval, shutdown)
                }));
                let wakeup = sync_wakeup.clone();
                tasks.push(Task::new("outbox-listener", move |shutdown| {
                    cluster::listen_for_outbox(url, wakeup, shutdown)
                }));
            }
        }
        let ldap = crate::ldap::schedule::pollers(&config.ldap, &store, sync_wakeup.clone())?;
        for poller in ldap.values() {
            let (poller, leadership) = (poller.clone(), leadership.clone());
            let name = format!("ldap-poller-{}", poller.source);
            tasks.push(Task::new(name, move |shutdown| {
                poller.run(leadership, shutdown)
            }));
        }
        if let Some(worker) = &sync {
            let (worker, leadership) = (worker.clone(), leadership.clone());
            tasks.push(Task::new("sync-worker", move |shutdown| {
                crate::sync::service::run(worker, leadership, shutdown)
            }));
        }
        // TIB profile writes are fenced by the leader lease, as Tyk writes are.
        let tib = crate::tib::TibService::new_gated(
            config.tib.as_ref(),
            config.tyk.as_ref(),
            &store,
            &mapping,
            Some(wiring::write_gate(&leadership)),
        )
        .map_err(wiring::WiringError::from)?;
        if let Some(service) = &tib {
            let (service, leadership) = (service.clone(), leadership.clone());
            tasks.push(Task::new("tib-profiles", move |shutdown| {
                crate::tib::task::run(service, leadership, shutdown)
            }));
        }
        if let Some(path) = config_file {
            let (store, mapping) = (store.clone(), mapping.clone());
            tasks.push(Task::new("config-reload", move |shutdown| {
                reload_on_sighup(path, store, mapping, shutdown)
            }));
        }
        let plain_routes = wiring::plain_routes(
            &config,
            &store,
            scim,
            &mapping,
            sync.clone(),
            sync_wakeup.clone(),
            ldap,
            tib,
        );
        let state = Arc::new(AppState {
            store,
            config,
            sync_wakeup,
            leadership,
            mapping,
            sync,
        });
        Ok(Self {
            listener,
            state,
            tasks,
            plain_routes: Some(plain_routes),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> SharedState {
        self.state.clone()
    }

    /// Adds a background task that runs while the server serves.
    pub fn add_task(&mut self, task: Task) {
        self.tasks.push(task);
    }

    /// Serves until `shutdown` resolves, then stops accepting connections and
    /// waits up to `server.shutdown_timeout` for in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let server_config = self.state.config.server.clone();
        let admin_auth = AdminAuth::new(self.state.config.admin.token_hash()?);
        let plain = self.plain_routes.unwrap_or_else(|| PlainRoutes {
            public: axum::Router::new(),
            admin: axum::Router::new(),
            ldap: Default::default(),
            tib_wakeup: None,
        });
        let router = http::router(
            self.state.clone(),
            admin_auth,
            plain,
            server_config.request_timeout,
        );
        let (trigger, task_shutdown) = tasks::shutdown_pair();
        let running = tasks::spawn_all(self.tasks, &task_shutdown);
        let mut stopping = task_shutdown.clone();
        let limits = http::ConnectionLimits {
            header_read_timeout: server_config.header_read_timeout,
            idle_timeout: server_config.idle_timeout,
            max_connections: server_config.max_connections,
        };
        let serve = http::serve(self.listener, router, limits, async move {
            shutdown.await;
            tracing::info!("Shutdown requested; finishing in-flight requests.");
            trigger.trigger();
        });
        let mut serve = std::pin::pin!(serve);
        tokio::select! {
            result = &mut serve => result.map_err(StartupError::Serve)?,
            _ = async {
                stopping.requested().await;
                tokio::time::sleep(server_config.shutdown_timeout).await;
            } => {
                tracing::warn!(
                    timeout = ?server_config.shutdown_timeout,
                    "In-flight requests did not finish in time; stopping anyway."
                );
            }
        }
        running.join(server_config.shutdown_timeout).await;
        self.state.store.close().await;
        tracing::info!("Stopped.");
        Ok(())
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// On SIGHUP: re-reads the config file and applies its mapping section (the
/// declarative rules and the resolution settings). A file that no longer
/// validates changes nothing and is reported.
async fn reload_on_sighup(
    path: PathBuf,
    store: Store,
    mapping: LiveMapping,
    mut shutdown: Shutdown,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("Cannot listen for SIGHUP; config reload is off.");
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.requested() => return,
                _ = hangups.recv() => reload_mapping(&path, &store, &mapping).await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, store, mapping);
        shutdown.requested().await;
    }
}

pub async fn reload_mapping(path: &std::path::Path, store: &Store, mapping: &LiveMapping) {
    let config = match crate::config::load(Some(path)) {
        Ok(config) => config,
        Err(errors) => {
            tracing::error!(%errors, "Config reload refused; keeping the running configuration.");
            return;
        }
    };
    match crate::mapping::sync_config_rules(store, &config.mapping).await {
        Ok(report) => {
            wiring::replace(mapping, config.mapping);
            tracing::info!(
                changed = report.changed(),
                "Mapping configuration reloaded."
            );
        }
        Err(e) => tracing::error!(error = %e, "Mapping reload failed; nothing changed."),
    }
}

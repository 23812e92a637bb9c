//! A stateful stand-in for the Tyk Dashboard API and Admin API, faithful to
//! `shared/tyk/CONTRACT.md` (exact paths, headers, envelopes, messages,
//! paging and id formats), with fault injection and a request log for tests.
//! Runs in-process ([`StandIn::spawn`]) or as the `tyk-standin` binary.

mod admin;
mod dashboard;
mod faults;
mod groups;
mod ids;
mod state;
pub mod tib;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use faults::{Fault, FaultRates, LoggedRequest};
pub use state::{ApiError, Directory, UserFields};

use crate::tyk::{Envelope, Organisation, Permissions, User};

/// How a stand-in is set up.
#[derive(Debug, Clone)]
pub struct StandInOptions {
    /// Items per page of `p`-paged lists (Tyk's `page_size`, default 10).
    pub page_size: usize,
    /// The Admin API secret (`admin-auth`). Empty disables the Admin API.
    pub admin_secret: String,
}

impl Default for StandInOptions {
    fn default() -> Self {
        Self {
            page_size: 10,
            admin_secret: "standin-admin-secret".into(),
        }
    }
}

/// State shared by the handlers and the test handle.
#[derive(Debug, Default)]
pub struct Shared {
    options: StandInOptions,
    directory: Mutex<Directory>,
    faults: Mutex<faults::Faults>,
    log: Mutex<Vec<LoggedRequest>>,
    in_flight: faults::Gauge,
}

impl Shared {
    /// The directory; a poisoned lock (a panicked handler) is still usable
    /// because every operation leaves it consistent.
    fn dir(&self) -> MutexGuard<'_, Directory> {
        self.directory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(Envelope::error(self.message))).into_response()
    }
}

/// The stand-in's routes, with fault injection and the request log.
pub fn router(shared: Arc<Shared>) -> Router {
    use dashboard as d;
    use groups as g;
    Router::new()
        .route("/api/users", get(d::list_users).post(d::create_user))
        .route("/api/users/search", post(d::search_users))
        .route(
            "/api/users/{id}",
            get(d::get_user).put(d::update_user).delete(d::delete_user),
        )
        .route("/api/users/{id}/actions/revoke", put(d::revoke_user))
        .route("/api/users/{id}/actions/key/reset", put(d::reset_user_key))
        .route("/api/usergroups", get(g::list_groups).post(g::create_group))
        .route(
            "/api/usergroups/{id}",
            get(g::get_group)
                .put(g::update_group)
                .delete(g::delete_group),
        )
        .route("/admin/users", post(admin::create_user))
        .route(
            "/admin/users/{id}",
            get(admin::get_user).put(admin::update_user),
        )
        .route(
            "/admin/organisations",
            get(admin::list_orgs).post(admin::create_org),
        )
        .route("/admin/organisations/{id}", get(admin::get_org))
        .fallback(|| async { ApiError::new(404, "Not found") })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            faults::faults_and_log,
        ))
        .with_state(shared)
}

/// A running stand-in. Dropping it stops the server.
#[derive(Debug)]
pub struct StandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl StandIn {
    /// Binds 127.0.0.1 on a free port and serves on the current runtime.
    pub async fn spawn(options: StandInOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Self::serve(listener, options))
    }

    /// Serves on an already bound listener (the binary binds `--listen`).
    pub fn serve(listener: TcpListener, options: StandInOptions) -> Self {
        let shared = Arc::new(Shared {
            options,
            ..Shared::default()
        });
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(shared.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "tyk stand-in stopped");
            }
        });
        Self {
            shared,
            addr,
            stop: Some(stop),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn admin_secret(&self) -> &str {
        &self.shared.options.admin_secret
    }

    /// Every request served so far, in order.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    pub fn clear_request_log(&self) {
        if let Ok(mut log) = self.shared.log.lock() {
            log.clear();
        }
    }

    /// The most requests this stand-in has served at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.in_flight.max()
    }

    pub fn reset_max_in_flight(&self) {
        self.shared.in_flight.reset();
    }

    /// Standing fault rates for all later requests.
    pub fn set_fault_rates(&self, rates: FaultRates) {
        if let Ok(mut f) = self.shared.faults.lock() {
            f.set_rates(rates);
        }
    }

    /// One fault for the next request (carrying `only_credential` in
    /// `authorization` or `admin-auth`, when given).
    pub fn inject(&self, fault: Fault, only_credential: Option<&str>) {
        if let Ok(mut f) = self.shared.faults.lock() {
            f.push(fault, only_credential.map(str::to_string));
        }
    }

    /// Direct access to the data, e.g. to seed users or inspect results.
    pub fn with_directory<T>(&self, f: impl FnOnce(&mut Directory) -> T) -> T {
        f(&mut self.shared.dir())
    }

    /// Creates an organisation and returns it.
    /// Every user, in id order (what a test inspects after a sync).
    pub fn users(&self) -> Vec<User> {
        self.with_directory(|d| d.users.values().cloned().collect())
    }

    /// Every user group, in id order.
    pub fn groups(&self) -> Vec<crate::tyk::UserGroup> {
        self.with_directory(|d| d.groups.values().cloned().collect())
    }

    pub fn seed_org(&self, owner_name: &str) -> Organisation {
        self.with_directory(|d| d.create_org(owner_name, serde_json::Map::new()))
    }

    /// Creates an active user straight in the data (no HTTP), e.g. an admin
    /// whose `access_key` a test then uses as its Dashboard API key.
    pub fn seed_user(&self, org_id: &str, email: &str, permissions: Permissions) -> User {
        self.with_directory(|d| {
            d.insert_user(
                org_id,
                UserFields {
                    first_name: Some("Seed".into()),
                    last_name: Some("User".into()),
                    email_address: Some(email.to_lowercase()),
                    active: Some(true),
                    user_permissions: Some(permissions),
                    ..UserFields::default()
                },
            )
        })
    }

    /// Sets a user's Dashboard API key (the binary's `--api-key`).
    pub fn set_access_key(&self, user_id: &str, key: &str) {
        self.with_directory(|d| {
            if let Some(u) = d.users.get_mut(user_id) {
                u.extra.insert("access_key".into(), serde_json::json!(key));
            }
        });
    }

    /// Stops serving (also done on drop).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

//! The HTTP edge: the router every boundary mounts its routes on, request
//! ids and tracing, body and time limits.

mod body;
mod error;
mod health;
mod metrics;
mod openapi;
mod serve;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Request, StatusCode};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use openapi::{ADMIN_TOKEN, SCIM_TOKEN, plain_route_list};
pub use serve::{ConnectionLimits, serve};

/// A router that documents its routes in the OpenAPI document.
pub type ApiRouter = utoipa_axum::router::OpenApiRouter<SharedState>;

use crate::admin::AdminAuth;
use crate::config::Config;
use crate::store::Store;

/// State shared by every handler.
pub struct AppState {
    pub store: Store,
    pub config: Config,
    /// Poked after every accepted identity change so the sync worker runs
    /// at once instead of waiting for its timer.
    pub sync_wakeup: Arc<tokio::sync::Notify>,
    /// Whether this replica runs the pollers and the sync worker.
    pub leadership: crate::cluster::Leadership,
    /// The mapping section in force (SIGHUP replaces it).
    pub mapping: crate::wiring::LiveMapping,
    /// The sync worker, when a Tyk Dashboard is configured.
    pub sync: Option<Arc<crate::sync::service::ServiceWorker>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("leadership", &self.leadership)
            .field("sync", &self.sync.is_some())
            .finish_non_exhaustive()
    }
}

pub type SharedState = Arc<AppState>;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application router: the documented routes, plus the plain
/// routes of the boundaries (`plain.admin` behind the admin token too).
pub fn router(
    state: SharedState,
    admin_auth: AdminAuth,
    plain: crate::wiring::PlainRoutes,
    request_timeout: Duration,
) -> Router {
    // Installing the recorder here makes every counter below it count.
    let _ = crate::telemetry::metrics_handle();
    let auth = Arc::new(admin_auth.clone());
    let state_for_ui = state.clone();
    let (router, mut doc) = ApiRouter::with_openapi(openapi::base())
        .merge(health::router())
        .merge(crate::admin::router(admin_auth.clone(), ApiRouter::new()))
        .split_for_parts();
    openapi::add_plain_routes(&mut doc, state.config.scim.enabled, state.sync.is_some());
    let doc = Arc::new(doc);
    let admin_plain = plain
        .admin
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            crate::admin::require_admin_token,
        ));
    router
        .route("/metrics", axum::routing::get(metrics::render))
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .with_state(state)
        .merge(admin_plain)
        .merge(plain.public)
        .merge(crate::ui::router(
            state_for_ui,
            admin_auth,
            plain.ldap,
            plain.tib_wakeup,
        ))
        .route_layer(axum::middleware::from_fn(metrics::track))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                // The path only: query strings may carry filters with user data.
                tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = %request_id,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::from_fn(body::drain_unread_bodies))
}

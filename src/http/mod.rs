//! The HTTP edge: the router every boundary mounts its routes on, request
//! ids and tracing, body and time limits.

mod error;
mod health;
mod metrics;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Request, StatusCode};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::admin::AdminAuth;
use crate::config::Config;
use crate::store::Store;

/// State shared by every handler.
#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    pub config: Config,
    /// Poked after every accepted identity change so the sync worker runs
    /// at once instead of waiting for its timer.
    pub sync_wakeup: Arc<tokio::sync::Notify>,
    /// Whether this replica runs the pollers and the sync worker.
    pub leadership: crate::cluster::Leadership,
}

pub type SharedState = Arc<AppState>;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application router.
pub fn router(state: SharedState, admin_auth: AdminAuth, request_timeout: Duration) -> Router {
    // Installing the recorder here makes every counter below it count.
    let _ = crate::telemetry::metrics_handle();
    Router::new()
        .merge(health::router())
        .merge(crate::admin::router(admin_auth, Router::new()))
        .route("/metrics", axum::routing::get(metrics::render))
        .with_state(state)
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
}

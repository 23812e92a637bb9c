//! Liveness and readiness.
//!
//! `/healthz` answers 200 while the process serves requests. `/readyz`
//! answers 200 only when the database answers and every embedded migration
//! is applied, so a load balancer keeps traffic away until then.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa_axum::routes;

use super::{ApiRouter, SharedState};

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// Liveness: 200 while the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive")))]
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: 200 when the database answers and migrations are applied.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready; reports the database and this replica's role"),
        (status = 503, description = "Not ready, with the reason"),
    )
)]
async fn readyz(State(state): State<SharedState>) -> (StatusCode, Json<Value>) {
    let backend = state.store.backend().as_str();
    let role = state.leadership.role();
    match state.store.migration_status().await {
        Ok(status) if status.is_current() => (
            StatusCode::OK,
            Json(json!({
                "status": "ready",
                "database": backend,
                "migrations": status.applied,
                "role": role,
            })),
        ),
        Ok(status) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not ready",
                "database": backend,
                "reason": "migrations pending",
                "pending": status.pending,
            })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "Readiness check cannot reach the database.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "not ready",
                    "database": backend,
                    "reason": "database unreachable",
                })),
            )
        }
    }
}

//! Liveness and readiness.
//!
//! `/healthz` answers 200 while the process serves requests. `/readyz`
//! answers 200 only when the database answers and every embedded migration
//! is applied, so a load balancer keeps traffic away until then.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::SharedState;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

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

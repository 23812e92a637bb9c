//! `GET /admin/v1/status`: what an operator checks first.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::domain::Timestamp;
use crate::http::{ApiError, ApiRouter, SharedState};
use crate::store::events;

pub fn router() -> ApiRouter {
    ApiRouter::new().routes(routes!(status))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    pub version: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// `leader` or `follower`.
    pub role: String,
    pub outbox: OutboxStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxStatus {
    /// Identity-change events not yet applied to Tyk.
    pub depth: i64,
    /// Age of the oldest pending event, in seconds.
    pub oldest_age_seconds: Option<f64>,
}

/// Service status: database, role, outbox depth.
#[utoipa::path(
    get,
    path = "/status",
    tag = "admin",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Status", body = StatusResponse),
        (status = 401, description = "Missing or wrong admin token"),
    )
)]
async fn status(State(state): State<SharedState>) -> Result<Json<StatusResponse>, ApiError> {
    let mut conn = state
        .store
        .pool()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let (depth, oldest) = events::depth(&mut conn).await.map_err(ApiError::internal)?;
    let oldest_age_seconds = oldest.map(|t| (Timestamp::now().0 - t.0).max(0) as f64 / 1000.0);
    Ok(Json(StatusResponse {
        version: env!("CARGO_PKG_VERSION").to_string(),
        database: state.store.backend().as_str().to_string(),
        role: format!("{:?}", state.leadership.role()).to_lowercase(),
        outbox: OutboxStatus {
            depth,
            oldest_age_seconds,
        },
    }))
}

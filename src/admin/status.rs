//! `GET /admin/v1/status`: what an operator checks first.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::domain::Timestamp;
use crate::http::{ApiError, SharedState};
use crate::store::events;

pub fn router() -> Router<SharedState> {
    Router::new().route("/status", get(status))
}

async fn status(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    let mut conn = state
        .store
        .pool()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let (depth, oldest) = events::depth(&mut conn).await.map_err(ApiError::internal)?;
    let oldest_age_seconds = oldest.map(|t| (Timestamp::now().0 - t.0).max(0) as f64 / 1000.0);
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "database": state.store.backend().as_str(),
        "outbox": {"depth": depth, "oldest_age_seconds": oldest_age_seconds},
    })))
}

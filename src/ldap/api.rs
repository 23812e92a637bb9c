//! The LDAP part of the admin API (nested under `/admin/v1`, behind the
//! admin token):
//!
//! `GET  /ldap/sources`                 every source: URL, bases, poll state
//! `POST /ldap/sources/{source}/poll`   poll now; body `{"full", "force"}`
//!                                      (both optional; forcing a held full
//!                                      poll runs a full poll) → the report

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::LdapError;
use super::schedule::{LdapPollers, PollRequest};
use crate::domain::SourceName;

pub fn router(pollers: LdapPollers) -> Router {
    Router::new()
        .route("/ldap/sources", get(list))
        .route("/ldap/sources/{source}/poll", post(poll))
        .with_state(pollers)
}

struct ApiError(LdapError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            LdapError::UnknownSource(_) => StatusCode::NOT_FOUND,
            LdapError::Connect { .. } | LdapError::Search { .. } => StatusCode::BAD_GATEWAY,
            LdapError::Config(_) | LdapError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // LDAP errors carry no secret (the bind password is never in them).
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

async fn list(State(pollers): State<LdapPollers>) -> Result<Json<Value>, ApiError> {
    let mut sources = Vec::new();
    for poller in pollers.values() {
        let state = poller.state().await.map_err(ApiError)?;
        sources.push(json!({
            "source": poller.source.as_str(),
            "url": poller.cfg.url,
            "userBase": poller.cfg.user_base,
            "groupBase": poller.cfg.group_base,
            "interval": humantime::format_duration(poller.cfg.interval).to_string(),
            "fullEvery": poller.cfg.full_every,
            "state": state,
        }));
    }
    Ok(Json(json!({ "sources": sources })))
}

async fn poll(
    State(pollers): State<LdapPollers>,
    Path(source): Path<String>,
    body: Option<Json<PollRequest>>,
) -> Result<Json<Value>, ApiError> {
    let poller = pollers
        .get(&SourceName::new(&source))
        .ok_or_else(|| ApiError(LdapError::UnknownSource(source.clone())))?;
    let request = body.map(|Json(r)| r).unwrap_or_default();
    let report = poller.poll(request).await.map_err(ApiError)?;
    Ok(Json(json!({ "source": source, "report": report })))
}

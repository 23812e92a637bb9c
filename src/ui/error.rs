//! The console's one error type, answered as an HTML page: 4xx pages say
//! what went wrong; 5xx pages stay opaque (the cause is logged once here).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the form's security token is missing or wrong")]
    Csrf,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// Tyk (or another service the page needs) did not answer usefully.
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Internal(String),
}

impl From<sqlx::Error> for UiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match &self {
            UiError::Csrf => (
                StatusCode::FORBIDDEN,
                "Request refused",
                "The form's security token is missing or does not belong to your session, so \
                 nothing was changed. Reload the page and submit the form again."
                    .to_string(),
            ),
            UiError::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", what.clone()),
            UiError::BadRequest(what) => (StatusCode::BAD_REQUEST, "Bad request", what.clone()),
            UiError::Upstream(what) => {
                tracing::warn!(error = %what, "console request: upstream failure");
                (
                    StatusCode::BAD_GATEWAY,
                    "Tyk did not answer",
                    format!("Nothing was decided; the change stays queued and is retried. {what}"),
                )
            }
            UiError::Store(_) | UiError::Internal(_) => {
                tracing::error!(error = %self, "console request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "The request failed on our side; the service log has the cause.".to_string(),
                )
            }
        };
        let body = html! {
            h1 { (title) }
            p role="alert" { (detail) }
            p { a href="/ui/" { "Back to the status page" } }
        };
        (status, layout::bare(title, body)).into_response()
    }
}

//! SCIM errors and their RFC 7644 §3.12 bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Everything a SCIM request can fail with, mapped to HTTP at the edge.
#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    #[error("{0}")]
    InvalidFilter(String),
    #[error("{0}")]
    InvalidSyntax(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    NoTarget(String),
    #[error("{0}")]
    Mutability(String),
    #[error("{0}")]
    Uniqueness(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("the resource was changed: its version no longer matches If-Match")]
    PreconditionFailed,
    #[error("the resource has not changed")]
    NotModified,
    #[error("{0}")]
    Unauthorized(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    NotImplemented(String),
    #[error("internal error")]
    Store(#[from] StoreError),
}

impl ScimError {
    /// A group member value that is not a user or group of the caller's
    /// source (another source's, or nobody's): 400 `invalidValue` naming it.
    pub(super) fn member_outside_source(value: &str) -> Self {
        ScimError::InvalidValue(format!(
            "member value {value:?} is not a user or group of this source"
        ))
    }

    fn status_and_type(&self) -> (StatusCode, Option<&'static str>) {
        match self {
            ScimError::InvalidFilter(_) => (StatusCode::BAD_REQUEST, Some("invalidFilter")),
            ScimError::InvalidSyntax(_) => (StatusCode::BAD_REQUEST, Some("invalidSyntax")),
            ScimError::InvalidValue(_) => (StatusCode::BAD_REQUEST, Some("invalidValue")),
            ScimError::InvalidPath(_) => (StatusCode::BAD_REQUEST, Some("invalidPath")),
            ScimError::NoTarget(_) => (StatusCode::BAD_REQUEST, Some("noTarget")),
            ScimError::Mutability(_) => (StatusCode::BAD_REQUEST, Some("mutability")),
            ScimError::Uniqueness(_) => (StatusCode::CONFLICT, Some("uniqueness")),
            ScimError::NotFound(_) => (StatusCode::NOT_FOUND, None),
            ScimError::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, None),
            ScimError::NotModified => (StatusCode::NOT_MODIFIED, None),
            ScimError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, None),
            ScimError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
            ScimError::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, None),
            ScimError::Store(e) if e.is_unique_violation() => {
                (StatusCode::CONFLICT, Some("uniqueness"))
            }
            ScimError::Store(StoreError::NotFound(_)) => (StatusCode::NOT_FOUND, None),
            // The store's own refusal, should a member get past the
            // handlers' checks (they name the value first).
            ScimError::Store(e) if e.member_outside_source().is_some() => {
                (StatusCode::BAD_REQUEST, Some("invalidValue"))
            }
            // Still failing after the handlers' retries on fresh
            // connections: the client may retry (Retry-After).
            ScimError::Store(e) if e.is_transient() => (StatusCode::SERVICE_UNAVAILABLE, None),
            ScimError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        }
    }

    fn detail(&self) -> String {
        match self {
            ScimError::Store(e) if e.is_unique_violation() => e.to_string(),
            ScimError::Store(StoreError::NotFound(what)) => format!("{what} not found"),
            ScimError::Store(e) if e.member_outside_source().is_some() => {
                match e.member_outside_source().flatten() {
                    Some(id) => ScimError::member_outside_source(&id).to_string(),
                    None => "a member is not a user or group of this source".into(),
                }
            }
            ScimError::Store(e) if e.is_transient() => {
                "the database is briefly unavailable; retry the request".into()
            }
            other => other.to_string(),
        }
    }
}

/// Seconds a client is asked to wait after a 503 (the database was
/// unreachable even after the retries; a failover takes about a second).
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The RFC 7644 §3.12 body for a status and optional `scimType`.
pub fn error_body(status: StatusCode, scim_type: Option<&str>, detail: &str) -> serde_json::Value {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    body
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let (status, scim_type) = self.status_and_type();
        if status == StatusCode::INTERNAL_SERVER_ERROR || status == StatusCode::SERVICE_UNAVAILABLE
        {
            // The client sees only "internal error"; the log needs the cause.
            match &self {
                ScimError::Store(cause) => tracing::error!(error = %cause, "SCIM request failed"),
                other => tracing::error!(error = %other, "SCIM request failed"),
            }
        }
        if status == StatusCode::NOT_MODIFIED {
            return status.into_response();
        }
        let body = error_body(status, scim_type, &self.detail());
        let mut response = (status, super::wire::ScimJson(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scim\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store's refusal of a member outside the group's source, as
    /// each engine words it (PostgreSQL names the member, SQLite cannot).
    async fn refused(message: &str) -> StoreError {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        let trigger = format!(
            "CREATE TABLE t (x); CREATE TRIGGER r BEFORE INSERT ON t \
             BEGIN SELECT RAISE(ABORT, '{message}'); END;"
        );
        sqlx::raw_sql(&trigger)
            .execute(&mut conn)
            .await
            .expect("schema");
        let error = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut conn)
            .await
            .expect_err("refused");
        StoreError::from(error)
    }

    #[tokio::test]
    async fn the_stores_member_refusal_is_400_invalid_value_naming_the_member() {
        let id = "0b8f1d9e-2c4a-4d5e-9f60-7a1b2c3d4e5f";
        let named =
            ScimError::Store(refused(&format!("group member outside its source: {id}")).await);
        assert_eq!(
            named.status_and_type(),
            (StatusCode::BAD_REQUEST, Some("invalidValue"))
        );
        assert_eq!(
            named.detail(),
            format!("member value \"{id}\" is not a user or group of this source")
        );
        let unnamed = ScimError::Store(refused("group member outside its source").await);
        assert_eq!(
            unnamed.status_and_type(),
            (StatusCode::BAD_REQUEST, Some("invalidValue"))
        );
        assert_eq!(
            unnamed.detail(),
            "a member is not a user or group of this source"
        );
        // Any other database error stays a 500.
        let other = ScimError::Store(refused("something else").await);
        assert_eq!(other.status_and_type().0, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_database_still_unreachable_after_the_retries_is_503_with_retry_after() {
        let lost = ScimError::Store(StoreError::Database(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "connection closed by the server",
        ))));
        let response = lost.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
    }

    #[test]
    fn error_bodies_follow_rfc7644() {
        let body = error_body(StatusCode::CONFLICT, Some("uniqueness"), "taken");
        assert_eq!(
            body,
            json!({"schemas": [ERROR_SCHEMA], "status": "409", "scimType": "uniqueness", "detail": "taken"})
        );
    }
}

//! Bearer-token check for the admin API: the presented token is hashed and
//! compared with the configured hash in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What the middleware checks against; `None` disables the admin API.
#[derive(Clone)]
pub struct AdminAuth {
    token_hash: Option<[u8; 32]>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("configured", &self.token_hash.is_some())
            .finish()
    }
}

impl AdminAuth {
    pub fn new(token_hash: Option<[u8; 32]>) -> Self {
        Self { token_hash }
    }

    /// Whether `presented` is the admin token (constant-time on its hash).
    pub fn accepts(&self, presented: &str) -> bool {
        match &self.token_hash {
            Some(expected) => bool::from(hash_token(presented).ct_eq(expected)),
            None => false,
        }
    }
}

fn unauthorized(detail: &str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": "unauthorized", "detail": detail})),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tyk-idsync-admin\""),
    );
    response
}

/// Middleware: lets the request through only with `Authorization: Bearer
/// <admin token>`.
pub async fn require_admin_token(
    State(auth): State<Arc<AdminAuth>>,
    request: Request,
    next: Next,
) -> Response {
    if auth.token_hash.is_none() {
        return unauthorized("the admin API is disabled: no admin token is configured");
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        None => unauthorized("missing bearer token"),
        Some(token) if auth.accepts(token) => next.run(request).await,
        Some(_) => unauthorized("invalid admin token"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_token_is_accepted() {
        let auth = AdminAuth::new(Some(hash_token("correct horse battery staple 0123")));
        assert!(auth.accepts("correct horse battery staple 0123"));
        assert!(!auth.accepts("correct horse battery staple 0124"));
        assert!(!auth.accepts(""));
        assert!(!AdminAuth::new(None).accepts("anything"));
    }
}

//! The `Authorization: Bearer` check: every SCIM request acts for exactly
//! one identity source, taken from its token.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::ScimState;
use super::error::ScimError;
use super::tokens::{TokenError, validate_token};
use crate::domain::SourceName;

/// The identity source the request's token belongs to.
#[derive(Debug, Clone)]
pub struct Caller(pub SourceName);

impl FromRequestParts<ScimState> for Caller {
    type Rejection = ScimError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ScimState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ScimError::Unauthorized("a bearer token is required".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| ScimError::Unauthorized("use the Bearer scheme".into()))?;
        if !super::oauth::is_own_token(token) && !state.oauth.is_empty() {
            return oauth_caller(state, token).await;
        }
        let sources = &state.sources;
        let validate = || {
            validate_token(&state.store, &state.signing_key, token, |s| {
                sources.iter().any(|c| c.as_str() == s)
            })
        };
        // A session the server closed (a failover) is retried on a fresh
        // connection, as the handlers' writes are.
        let mut attempt = 1;
        let validated = loop {
            match validate().await {
                Err(TokenError::Store(e))
                    if e.is_transient() && attempt < crate::store::retry::TRANSIENT_ATTEMPTS =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10 * u64::from(attempt)))
                        .await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        match validated {
            Ok(source) => Ok(Caller(source)),
            Err(TokenError::Store(e)) => Err(ScimError::Store(e)),
            Err(e) => {
                tracing::info!(reason = %e, "SCIM token rejected");
                Err(ScimError::Unauthorized(e.to_string()))
            }
        }
    }
}

/// An identity provider's access token: the first configured source whose
/// issuer, audience and keys accept it.
async fn oauth_caller(state: &ScimState, token: &str) -> Result<Caller, ScimError> {
    let mut last = None;
    for verifier in state.oauth.iter() {
        match verifier.verify(token).await {
            Ok(()) => return Ok(Caller(verifier.source().clone())),
            Err(e) => last = Some(e),
        }
    }
    let reason = last.map(|e| e.to_string()).unwrap_or_default();
    tracing::info!(%reason, "SCIM access token rejected");
    Err(ScimError::Unauthorized(reason))
}

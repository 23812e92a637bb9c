//! `/admin/v1/tokens`: the SCIM bearer tokens of the identity sources, as
//! `tyk-idsync token create|list|revoke` manages them (the same functions in
//! [`crate::scim::tokens`]). A token's secret is in the create answer only.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::{SourceName, Timestamp};
use crate::http::{ApiError, ApiRouter, SharedState};
use crate::scim::tokens::{self, TokenError};
use crate::store::tokens::StoredToken;

/// The lifetime `token create` defaults to.
use crate::scim::tokens::DEFAULT_TOKEN_LIFETIME as DEFAULT_LIFETIME;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

/// A token without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    /// The token's id (UUID), for revocation.
    pub id: String,
    /// The identity source the token acts for.
    pub source: String,
    pub label: Option<String>,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339; `null`: never.
    pub expires: Option<String>,
    /// RFC 3339; `null`: not revoked.
    pub revoked: Option<String>,
    /// Neither revoked nor expired.
    pub active: bool,
}

impl From<StoredToken> for TokenInfo {
    fn from(t: StoredToken) -> Self {
        let now = Timestamp::now();
        Self {
            id: t.id.to_string(),
            source: t.source.0,
            label: t.description,
            created: t.created_at.to_rfc3339(),
            expires: t.expires_at.map(Timestamp::to_rfc3339),
            revoked: t.revoked_at.map(Timestamp::to_rfc3339),
            active: t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the tokens of this source.
    pub source: Option<String>,
}

/// A lifetime: a duration such as `365d`, `12h`, `90m`, or a number of
/// seconds.
// Documents `expires`; the handler reads the JSON value itself, for clear errors.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Lifetime {
    Duration(String),
    Seconds(u64),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// A configured SCIM source (`[scim.sources.<name>]`).
    pub source: String,
    /// How long the token is valid; default 365 days.
    #[serde(default)]
    #[schema(value_type = Option<Lifetime>)]
    pub expires: Option<Value>,
    /// A free-text note shown in the list.
    #[serde(default, alias = "description")]
    pub label: Option<String>,
}

/// A new token: `token` is shown here once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: String,
    pub source: String,
    pub label: Option<String>,
    /// RFC 3339.
    pub expires: String,
    /// The bearer token for the SCIM client.
    pub token: String,
}

fn token_error(e: TokenError) -> ApiError {
    ApiError::internal(e)
}

fn parse_lifetime(value: Option<&Value>) -> Result<Duration, ApiError> {
    let bad = |e: tokens::LifetimeError| ApiError::bad_request("expires", e.to_string());
    match value {
        None | Some(Value::Null) => Ok(DEFAULT_LIFETIME),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(seconds) => tokens::check_lifetime(Duration::from_secs(seconds)).map_err(bad),
            None => Err(bad(tokens::LifetimeError(format!(
                "{n} is not a whole number of seconds"
            )))),
        },
        Some(Value::String(text)) => tokens::parse_lifetime(text).map_err(bad),
        Some(other) => Err(bad(tokens::LifetimeError(format!(
            "{other} is not a duration"
        )))),
    }
}

fn unknown_source(state: &SharedState, source: &str) -> ApiError {
    let configured: Vec<&str> = state
        .config
        .scim
        .sources
        .keys()
        .map(String::as_str)
        .collect();
    let known = if configured.is_empty() {
        "none is configured".to_string()
    } else {
        format!("configured: {}", configured.join(", "))
    };
    ApiError::bad_request(
        "source",
        format!("source {source:?} is not a configured SCIM source ({known})"),
    )
}

/// Every SCIM token (never the secret), oldest first.
#[utoipa::path(
    get,
    path = "/tokens",
    operation_id = "list_scim_tokens",
    tag = "admin",
    params(ListQuery),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The tokens, without their secrets", body = TokenList),
        (status = 401, description = "Missing or wrong admin token"),
    )
)]
async fn list(
    State(state): State<SharedState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<TokenList>, ApiError> {
    let source = query.source.map(SourceName::new);
    let tokens = tokens::list_tokens(&state.store, source.as_ref())
        .await
        .map_err(token_error)?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(TokenInfo::from).collect(),
    }))
}

/// Issues a SCIM bearer token for a configured source; the answer is the
/// only place the token appears.
#[utoipa::path(
    post,
    path = "/tokens",
    operation_id = "create_scim_token",
    tag = "admin",
    request_body = CreateTokenRequest,
    security(("adminToken" = [])),
    responses(
        (status = 201, description = "The token, shown once", body = CreatedToken),
        (status = 400, description = "Unknown source, bad lifetime or malformed body"),
        (status = 401, description = "Missing or wrong admin token"),
    )
)]
async fn create(
    State(state): State<SharedState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let Json(body) =
        body.map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
    let request: CreateTokenRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let lifetime = parse_lifetime(request.expires.as_ref())?;
    let issued = tokens::issue_for_source(
        &state.store,
        &state.config.scim,
        &request.source,
        lifetime,
        request.label.clone(),
    )
    .await
    .map_err(|e| match e {
        TokenError::UnknownSource(source) => unknown_source(&state, &source),
        e => token_error(e),
    })?;
    tracing::info!(id = %issued.id, source = %request.source, "SCIM token issued through the admin API");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: issued.id.to_string(),
            source: request.source,
            label: request.label,
            expires: issued.expires_at.to_rfc3339(),
            token: issued.token,
        }),
    ))
}

/// Revokes a SCIM token by id; it is refused from then on.
#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    operation_id = "revoke_scim_token",
    tag = "admin",
    params(("id" = String, Path, description = "The token's id (UUID)")),
    security(("adminToken" = [])),
    responses(
        (status = 204, description = "Revoked (or already revoked)"),
        (status = 401, description = "Missing or wrong admin token"),
        (status = 404, description = "No such token"),
    )
)]
async fn revoke(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::not_found(format!("token {id}: no such token"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    match tokens::revoke_token(&state.store, uuid)
        .await
        .map_err(token_error)?
    {
        true => {
            tracing::info!(id = %uuid, "SCIM token revoked through the admin API");
            Ok(StatusCode::NO_CONTENT)
        }
        false => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifetimes_are_durations_or_seconds() {
        let ok = |v: Value| parse_lifetime(Some(&v)).expect("valid").as_secs();
        assert_eq!(ok(json!("365d")), 365 * 24 * 3600);
        assert_eq!(ok(json!("12h")), 12 * 3600);
        assert_eq!(ok(json!(3600)), 3600);
        assert_eq!(ok(json!("3600")), 3600);
        assert_eq!(ok(Value::Null), DEFAULT_LIFETIME.as_secs());
        assert_eq!(ok(json!("3650d")), 315_360_000);
        assert_eq!(parse_lifetime(None).expect("default"), DEFAULT_LIFETIME);
        for bad in [
            json!(0),
            json!("0s"),
            json!(-5),
            json!(1.5),
            json!("soon"),
            json!(true),
            json!(9_223_372_036_854_775_807u64),
            json!("1000000000d"),
            json!("3651d"),
            json!(315_360_001),
        ] {
            let e = parse_lifetime(Some(&bad)).expect_err("invalid");
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(e.field.as_deref(), Some("expires"));
        }
    }
}

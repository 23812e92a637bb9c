//! Admin REST API for the mapping table, modelled on Unleash's groups API:
//! `GET/POST /admin/v1/mappings`, `GET/PUT/DELETE /admin/v1/mappings/{id}`
//! and `GET /admin/v1/explain/{email}`. No authentication here: the caller
//! mounts the router behind the admin-token middleware.
//!
//! Errors are JSON: `{"error": "...", "field": "mappingsSSO[2]", "errors":
//! [{"field", "message"}]}` with 400 (bad input), 404 (unknown id), 409
//! (duplicate rule, or a rule owned by the config file).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::MappingConfig;
use super::explain::explain_email;
use super::rule::MappingRule;
use super::service::{self, MappingError};
use crate::store::Store;
use crate::store::mappings::{RuleOrigin, StoredRule};

/// What the mapping API needs. The lead replaces the config on reload
/// (`*state.config.write() = new`), so extra permission keys and the
/// unmapped policy follow the file.
#[derive(Clone)]
pub struct MappingApiState {
    pub store: Store,
    pub config: Arc<RwLock<MappingConfig>>,
    /// TIB profiles, for explain's login-time caveat.
    pub tib_logins: Vec<super::explain::TibLogin>,
    /// What Tyk holds for a person (explain's other side), when a Tyk
    /// Dashboard is configured.
    pub tyk_side: Option<super::explain::TykSideLookup>,
}

impl MappingApiState {
    pub fn new(store: Store, config: MappingConfig) -> Self {
        Self {
            store,
            config: Arc::new(RwLock::new(config)),
            tib_logins: Vec::new(),
            tyk_side: None,
        }
    }

    fn config(&self) -> MappingConfig {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

/// The mapping routes.
pub fn router(state: MappingApiState) -> Router {
    Router::new()
        .route("/admin/v1/mappings", get(list).post(create))
        .route(
            "/admin/v1/mappings/{id}",
            get(show).put(replace).delete(remove),
        )
        .route("/admin/v1/explain/{email}", get(explain))
        .with_state(state)
}

/// A rule as the API returns it.
#[derive(Serialize)]
struct RuleBody {
    #[serde(flatten)]
    rule: MappingRule,
    origin: RuleOrigin,
}

impl From<StoredRule> for RuleBody {
    fn from(stored: StoredRule) -> Self {
        Self {
            rule: stored.rule,
            origin: stored.origin,
        }
    }
}

/// A rule as the API accepts it: the rule fields, plus the read-only `id`
/// and `origin` a client may send back unchanged from a GET (ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleRequest {
    #[serde(default, rename = "id")]
    _id: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "origin")]
    _origin: Option<serde::de::IgnoredAny>,
    org_id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    priority: i64,
    #[serde(rename = "mappingsSSO", default)]
    mappings_sso: Vec<String>,
    #[serde(default)]
    permissions: BTreeMap<String, String>,
}

impl RuleRequest {
    fn into_rule(self, id: String) -> MappingRule {
        MappingRule {
            id,
            org_id: self.org_id,
            name: self.name,
            description: self.description,
            priority: self.priority,
            mappings_sso: self.mappings_sso,
            permissions: self.permissions,
        }
    }
}

/// An error as the API returns it.
pub struct ApiError(MappingError);

impl From<MappingError> for ApiError {
    fn from(error: MappingError) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.0.to_string();
        let (status, body) = match &self.0 {
            MappingError::Invalid(errors) => (
                StatusCode::BAD_REQUEST,
                json!({
                    "error": message,
                    "field": errors.first().map(|e| e.field.as_str()),
                    "errors": errors.iter().map(|e| json!({"field": e.field, "message": e.message})).collect::<Vec<_>>(),
                }),
            ),
            MappingError::NotFound(_) => (StatusCode::NOT_FOUND, json!({ "error": message })),
            MappingError::Conflict(_) | MappingError::ConfigOwned(_) => {
                (StatusCode::CONFLICT, json!({ "error": message }))
            }
            MappingError::File { .. } | MappingError::Store(_) => {
                tracing::error!(error = %message, "mapping API failure");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": "internal error; see the server log" }),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

fn bad_body(rejection: JsonRejection) -> Response {
    let body = json!({ "error": format!("invalid JSON body: {}", rejection.body_text()) });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn list(State(state): State<MappingApiState>) -> Result<Response, ApiError> {
    let rules: Vec<RuleBody> = service::list(&state.store)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(json!({ "mappings": rules })).into_response())
}

async fn show(
    State(state): State<MappingApiState>,
    Path(id): Path<String>,
) -> Result<Json<RuleBody>, ApiError> {
    Ok(Json(service::get(&state.store, &id).await?.into()))
}

async fn create(
    State(state): State<MappingApiState>,
    body: Result<Json<RuleRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let rule = match body {
        Ok(Json(body)) => body.into_rule(String::new()),
        Err(rejection) => return Ok(bad_body(rejection)),
    };
    let extra = state.config().extra_permission_keys;
    let rule = service::create(&state.store, rule, &extra).await?;
    let body = RuleBody {
        rule,
        origin: RuleOrigin::Api,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn replace(
    State(state): State<MappingApiState>,
    Path(id): Path<String>,
    body: Result<Json<RuleRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let rule = match body {
        Ok(Json(body)) => body.into_rule(id),
        Err(rejection) => return Ok(bad_body(rejection)),
    };
    let extra = state.config().extra_permission_keys;
    let rule = service::update(&state.store, rule, &extra).await?;
    Ok(Json(RuleBody {
        rule,
        origin: RuleOrigin::Api,
    })
    .into_response())
}

async fn remove(
    State(state): State<MappingApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    service::delete(&state.store, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn explain(
    State(state): State<MappingApiState>,
    Path(email): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut explanation = explain_email(&state.store, &state.config(), &email).await?;
    super::explain::add_tib_notes(&mut explanation, &state.tib_logins);
    let tyk = match &state.tyk_side {
        Some(lookup) => Some(lookup(email.clone()).await),
        None => None,
    };
    Ok(Json(super::explain::with_tyk_json(
        &explanation,
        tyk.as_ref(),
    )))
}

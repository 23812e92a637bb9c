//! SCIM 2.0 service provider (RFC 7643/7644) under `/scim/v2`: Users (with
//! the Enterprise extension), Groups, discovery documents and searches.
//! Each request acts for the identity source its bearer token belongs to
//! and sees only that source's resources.

pub mod auth;
pub mod config;
mod discovery;
pub mod error;
pub mod filter;
mod groups;
mod member_batch;
mod member_patch;
mod member_plan;
mod members;
pub mod oauth;
mod params;
pub mod patch;
pub mod query;
pub mod resource;
pub mod schema;
pub mod tokens;
mod users;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::domain::SourceName;
use crate::store::{Store, StoreError, settings};

pub use config::{ScimConfig, ScimSourceConfig};

/// Settings key of the generated token signing key.
pub const SIGNING_KEY_SETTING: &str = "scim.token_signing_key";

/// Everything the SCIM handlers need.
#[derive(Clone)]
pub struct ScimState {
    pub store: Store,
    /// HMAC key for the bearer tokens (never logged).
    pub signing_key: Arc<Vec<u8>>,
    /// The configured identity sources.
    pub sources: Arc<Vec<SourceName>>,
    /// Sources that also accept their identity provider's access tokens.
    pub oauth: oauth::Verifiers,
    pub max_page_size: usize,
    pub max_body_bytes: usize,
    /// The group-commit queue for member PATCHes.
    pub member_batcher: member_batch::MemberBatcher,
}

impl std::fmt::Debug for ScimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimState")
            .field("sources", &self.sources)
            .field("max_page_size", &self.max_page_size)
            .finish_non_exhaustive()
    }
}

impl ScimState {
    /// Builds the state from a validated config. The signing key is the
    /// configured one, or one generated once and kept in the settings table.
    pub async fn new(
        store: Store,
        config: &ScimConfig,
        configured_key: Option<&secrecy::SecretString>,
    ) -> Result<Self, StoreError> {
        let key = match configured_key {
            Some(key) => secrecy::ExposeSecret::expose_secret(key)
                .as_bytes()
                .to_vec(),
            None => {
                let mut conn = store.pool().acquire().await?;
                settings::get_or_init(&mut conn, SIGNING_KEY_SETTING, || {
                    use rand::RngCore;
                    let mut bytes = [0u8; 32];
                    rand::thread_rng().fill_bytes(&mut bytes);
                    hex::encode(bytes)
                })
                .await?
                .into_bytes()
            }
        };
        Ok(Self {
            member_batcher: member_batch::MemberBatcher::start(store.clone()),
            store,
            signing_key: Arc::new(key),
            sources: Arc::new(config.sources.keys().map(SourceName::new).collect()),
            oauth: Arc::new(
                config
                    .sources
                    .iter()
                    .filter_map(|(name, source)| {
                        let oauth = source.oauth.clone()?;
                        Some(oauth::OAuthVerifier::new(SourceName::new(name), oauth))
                    })
                    .collect(),
            ),
            max_page_size: config.max_page_size,
            max_body_bytes: config.max_body_bytes,
        })
    }
}

/// The token signing key: the configured one, or one generated once and
/// kept in the settings table (what `token create` and the server share).
pub async fn signing_key(
    store: &Store,
    configured_key: Option<&secrecy::SecretString>,
) -> Result<Vec<u8>, StoreError> {
    if let Some(key) = configured_key {
        return Ok(secrecy::ExposeSecret::expose_secret(key)
            .as_bytes()
            .to_vec());
    }
    let mut conn = store.pool().acquire().await?;
    let key = settings::get_or_init(&mut conn, SIGNING_KEY_SETTING, || {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    })
    .await?;
    Ok(key.into_bytes())
}

/// The `/scim/v2` routes.
pub fn router(state: ScimState) -> Router {
    let api = Router::new()
        .route("/Users", get(users::list).post(users::create))
        .route("/Users/.search", post(users::search))
        .route(
            "/Users/{id}",
            get(users::get)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/Groups", get(groups::list).post(groups::create))
        .route("/Groups/.search", post(groups::search))
        .route(
            "/Groups/{id}",
            get(groups::get)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .route("/.search", post(discovery::root_search))
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{id}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schema_by_id))
        .fallback(discovery::not_found)
        .with_state(state);
    Router::new().nest("/scim/v2", api)
}

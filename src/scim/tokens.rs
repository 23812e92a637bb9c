//! Bearer tokens for SCIM clients: HS256 JWTs issued per identity source,
//! stored as a SHA-256 hash so they can be listed and revoked by id.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::domain::{SourceName, Timestamp};
use crate::store::tokens::{self as token_store, StoredToken};
use crate::store::{Store, StoreError};

/// Claims of an issued token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The identity source the token acts for.
    pub src: String,
    pub sub: String,
    /// The token's id (for revocation).
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

/// A token lives at least a second and at most ten years: a longer lifetime
/// is a token that never expires in practice (and overflowed the clock,
/// listing as expiring in 1970 while it worked).
pub const MAX_TOKEN_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(10 * 365 * 24 * 3600);
/// What `token create` and the admin API issue when no lifetime is given.
pub const DEFAULT_TOKEN_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 3600);

/// A lifetime outside 1 s ..= 10 years, or text that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0}: a token lifetime is a duration such as \"365d\" or \"12h\", or a number of seconds, from 1s up to 3650d (10 years)"
)]
pub struct LifetimeError(pub String);

/// Checks a lifetime against the bounds every issuing path shares.
pub fn check_lifetime(lifetime: std::time::Duration) -> Result<std::time::Duration, LifetimeError> {
    if lifetime < std::time::Duration::from_secs(1) {
        return Err(LifetimeError(format!(
            "{} is too short",
            humantime::format_duration(lifetime)
        )));
    }
    if lifetime > MAX_TOKEN_LIFETIME {
        return Err(LifetimeError(format!(
            "{} is too long",
            humantime::format_duration(lifetime)
        )));
    }
    Ok(lifetime)
}

/// Parses `"365d"`, `"12h"` or `"3600"` (seconds) and checks the bounds;
/// the CLI's `--expires` and the admin API's `expires` both come here.
pub fn parse_lifetime(text: &str) -> Result<std::time::Duration, LifetimeError> {
    let text = text.trim();
    let lifetime = match text.parse::<u64>() {
        Ok(seconds) => std::time::Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text)
            .map_err(|_| LifetimeError(format!("{text:?} is not a duration")))?,
    };
    check_lifetime(lifetime)
}

/// A freshly issued token: the secret string is shown once, never stored.
pub struct IssuedToken {
    pub id: Uuid,
    pub token: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed or its signature is wrong")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token was revoked or is unknown")]
    Revoked,
    #[error("the token's source {0:?} is not configured")]
    UnknownSource(String),
    #[error("cannot sign the token: {0}")]
    Sign(String),
    /// The signing key is misconfigured (e.g. an unreadable key file).
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Lifetime(#[from] LifetimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Issues a token for `source`, valid for `lifetime`.
pub async fn create_token(
    store: &Store,
    signing_key: &[u8],
    source: &SourceName,
    lifetime: std::time::Duration,
    description: Option<String>,
) -> Result<IssuedToken, TokenError> {
    let lifetime = check_lifetime(lifetime)?;
    let id = Uuid::new_v4();
    let now = Timestamp::now();
    // At most ten years of milliseconds: always fits.
    let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 2);
    let expires_at = Timestamp(now.0.saturating_add(lifetime_ms));
    let claims = TokenClaims {
        src: source.as_str().to_string(),
        sub: source.as_str().to_string(),
        jti: id.to_string(),
        iat: now.0 / 1000,
        exp: expires_at.0 / 1000,
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(signing_key),
    )
    .map_err(|e| TokenError::Sign(e.to_string()))?;
    let stored = StoredToken {
        id,
        source: source.clone(),
        token_hash: hash_token(&token),
        description,
        created_at: now,
        expires_at: Some(expires_at),
        revoked_at: None,
    };
    let mut conn = store.acquire().await?;
    token_store::insert(&mut conn, &stored).await?;
    Ok(IssuedToken {
        id,
        token,
        expires_at,
    })
}

/// Issues a token for `source`, which must be one of `config`'s sources
/// (`UnknownSource` otherwise), signed with the configured key or the one
/// kept in the database. What `token create` and the admin API call.
pub async fn issue_for_source(
    store: &Store,
    config: &crate::scim::ScimConfig,
    source: &str,
    lifetime: std::time::Duration,
    description: Option<String>,
) -> Result<IssuedToken, TokenError> {
    if !config.sources.contains_key(source) {
        return Err(TokenError::UnknownSource(source.to_string()));
    }
    let key = crate::problem::resolve_secret(
        "scim.token_signing_key",
        config.token_signing_key.as_ref(),
        config.token_signing_key_file.as_deref(),
    )
    .map_err(|p| TokenError::Config(p.to_string()))?;
    let key = crate::scim::signing_key(store, key.as_ref()).await?;
    create_token(store, &key, &SourceName::new(source), lifetime, description).await
}

/// Every token (no secrets), optionally of one source.
pub async fn list_tokens(
    store: &Store,
    source: Option<&SourceName>,
) -> Result<Vec<StoredToken>, TokenError> {
    let mut conn = store.acquire().await?;
    Ok(token_store::list(&mut conn, source).await?)
}

/// Revokes a token by id; false when there is no such token.
pub async fn revoke_token(store: &Store, id: Uuid) -> Result<bool, TokenError> {
    let mut conn = store.acquire().await?;
    let revoked = token_store::revoke(&mut conn, id).await?;
    store.token_cache().forget(id);
    Ok(revoked)
}

/// Checks signature, expiry, that the token is issued and not revoked (by
/// a constant-time hash compare) and that its source is still configured.
pub async fn validate_token(
    store: &Store,
    signing_key: &[u8],
    token: &str,
    is_configured: impl Fn(&str) -> bool,
) -> Result<SourceName, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<TokenClaims>(
        token,
        &DecodingKey::from_secret(signing_key),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
        _ => TokenError::Invalid,
    })?;
    let id = Uuid::parse_str(&data.claims.jti).map_err(|_| TokenError::Invalid)?;
    let stored = token_store::get_cached(store, id)
        .await?
        .ok_or(TokenError::Revoked)?;
    let same = stored
        .token_hash
        .as_bytes()
        .ct_eq(hash_token(token).as_bytes());
    if !bool::from(same) || stored.revoked_at.is_some() || stored.source.0 != data.claims.src {
        return Err(TokenError::Revoked);
    }
    if !is_configured(&data.claims.src) {
        return Err(TokenError::UnknownSource(data.claims.src));
    }
    Ok(stored.source)
}

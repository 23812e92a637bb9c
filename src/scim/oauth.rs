//! OAuth 2 access tokens from an identity provider, as an alternative to
//! the tokens tyk-idsync issues: a source with `[scim.sources.<name>.oauth]`
//! accepts a JWT signed by a key of the provider's JWKS, with the configured
//! issuer and audience, not expired.
//!
//! The JWKS is fetched on first use and cached for `jwks_cache`; a token
//! whose `kid` is not in the cached set triggers one refetch (the provider
//! rotated its keys), at most every 30 seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::domain::SourceName;
use crate::problem::ConfigProblem;

/// `[scim.sources.<name>.oauth]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// Expected `iss` claim, e.g. `https://example.okta.com/oauth2/default`.
    pub issuer: String,
    /// Expected `aud` claim, e.g. `api://tyk-idsync`.
    pub audience: String,
    /// Where the provider publishes its signing keys (JWKS).
    pub jwks_url: String,
    /// How long fetched keys are trusted before they are fetched again.
    #[serde(default = "default_cache", with = "humantime_serde")]
    pub jwks_cache: Duration,
}

fn default_cache() -> Duration {
    Duration::from_secs(600)
}

impl OAuthConfig {
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if !self.issuer.starts_with("http://") && !self.issuer.starts_with("https://") {
            problems.push(ConfigProblem::new(
                format!("{prefix}.issuer"),
                "is not a URL",
            ));
        }
        if self.audience.trim().is_empty() {
            problems.push(ConfigProblem::new(
                format!("{prefix}.audience"),
                "must not be empty",
            ));
        }
        match url::Url::parse(&self.jwks_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => problems.push(
                ConfigProblem::new(format!("{prefix}.jwks_url"), "is not an http(s) URL")
                    .hint("the provider's JWKS endpoint, e.g. https://example.okta.com/oauth2/default/v1/keys"),
            ),
        }
        problems
    }
}

const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Cached {
    keys: Option<JwkSet>,
    fetched: Option<Instant>,
}

/// One source's OAuth settings with its key cache.
pub struct OAuthVerifier {
    source: SourceName,
    config: OAuthConfig,
    http: reqwest::Client,
    cache: Mutex<Cached>,
}

impl std::fmt::Debug for OAuthVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthVerifier")
            .field("source", &self.source)
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("the token is not a valid access token for this service")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    #[error("cannot fetch the identity provider's keys: {0}")]
    Jwks(String),
}

impl OAuthVerifier {
    pub fn new(source: SourceName, config: OAuthConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            source,
            config,
            http,
            cache: Mutex::new(Cached::default()),
        }
    }

    pub fn source(&self) -> &SourceName {
        &self.source
    }

    /// Verifies signature, issuer, audience and expiry.
    pub async fn verify(&self, token: &str) -> Result<(), OAuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| OAuthError::Invalid)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 30;
        let keys = self.keys(header.kid.as_deref()).await?;
        let candidates = keys
            .keys
            .iter()
            .filter(|k| match (&header.kid, &k.common.key_id) {
                (Some(wanted), Some(id)) => wanted == id,
                (Some(_), None) => false,
                (None, _) => true,
            });
        let mut expired = false;
        for jwk in candidates {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                    expired = true
                }
                Err(_) => {}
            }
        }
        Err(if expired {
            OAuthError::Expired
        } else {
            OAuthError::Invalid
        })
    }

    /// The cached key set, refetched when stale or when `kid` is unknown.
    async fn keys(&self, kid: Option<&str>) -> Result<JwkSet, OAuthError> {
        let mut cache = self.cache.lock().await;
        let fresh = cache
            .fetched
            .is_some_and(|at| at.elapsed() < self.config.jwks_cache);
        let knows_kid = match (kid, &cache.keys) {
            (Some(kid), Some(keys)) => keys.find(kid).is_some(),
            (None, Some(_)) => true,
            (_, None) => false,
        };
        let may_refetch = cache
            .fetched
            .is_none_or(|at| at.elapsed() >= REFETCH_AT_MOST_EVERY);
        if (!fresh || !knows_kid) && (may_refetch || cache.keys.is_none()) {
            let fetched: JwkSet = self
                .http
                .get(&self.config.jwks_url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| OAuthError::Jwks(e.to_string()))?
                .json()
                .await
                .map_err(|e| OAuthError::Jwks(e.to_string()))?;
            cache.keys = Some(fetched);
            cache.fetched = Some(Instant::now());
        }
        cache
            .keys
            .clone()
            .ok_or_else(|| OAuthError::Jwks("no keys".into()))
    }
}

/// Every configured verifier.
pub type Verifiers = Arc<Vec<OAuthVerifier>>;

/// Whether a bearer token looks like one tyk-idsync issued (HS256).
pub fn is_own_token(token: &str) -> bool {
    jsonwebtoken::decode_header(token).is_ok_and(|h| h.alg == jsonwebtoken::Algorithm::HS256)
}

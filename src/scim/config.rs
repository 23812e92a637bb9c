//! The `[scim]` configuration section.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::problem::{ConfigProblem, resolve_secret, serialize_redacted};

/// `[scim]`: the SCIM 2.0 endpoint and the identity sources that push to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScimConfig {
    /// Serve `/scim/v2`.
    pub enabled: bool,
    /// Largest page a list or search returns (advertised as `filter.maxResults`).
    pub max_page_size: usize,
    /// Largest request body accepted, in bytes (larger is 413).
    pub max_body_bytes: usize,
    /// HMAC key that signs the bearer tokens `token create` issues. When
    /// neither this nor the file is set, a key is generated and kept in the
    /// database settings.
    #[serde(serialize_with = "serialize_redacted")]
    pub token_signing_key: Option<SecretString>,
    /// File holding the signing key (instead of `token_signing_key`).
    pub token_signing_key_file: Option<PathBuf>,
    /// The identity sources allowed to push, by name (e.g. `okta`, `entra`).
    pub sources: BTreeMap<String, ScimSourceConfig>,
}

/// `[scim.sources.<name>]`: one identity source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScimSourceConfig {
    /// A free-text note shown in logs and `token list`.
    pub description: Option<String>,
    /// Also accept OAuth 2 access tokens from this source's identity
    /// provider (validated against its JWKS, issuer and audience).
    pub oauth: Option<super::oauth::OAuthConfig>,
}

impl Default for ScimConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_page_size: 200,
            max_body_bytes: 1024 * 1024,
            token_signing_key: None,
            token_signing_key_file: None,
            sources: BTreeMap::new(),
        }
    }
}

impl ScimConfig {
    /// Every problem with this section, keys prefixed with `prefix` (`scim`).
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.max_page_size == 0 || self.max_page_size > 10_000 {
            problems.push(
                ConfigProblem::new(format!("{prefix}.max_page_size"), "must be 1..=10000")
                    .hint("200 is a good default"),
            );
        }
        if self.max_body_bytes < 1024 {
            problems.push(ConfigProblem::new(
                format!("{prefix}.max_body_bytes"),
                "must be at least 1024",
            ));
        }
        if let Err(p) = resolve_secret(
            &format!("{prefix}.token_signing_key"),
            self.token_signing_key.as_ref(),
            self.token_signing_key_file.as_deref(),
        ) {
            problems.push(p);
        }
        if self.enabled && self.sources.is_empty() {
            problems.push(
                ConfigProblem::new(format!("{prefix}.sources"), "no identity source configured")
                    .hint("add e.g. [scim.sources.okta]"),
            );
        }
        for (name, source) in &self.sources {
            if let Some(oauth) = &source.oauth {
                problems.extend(oauth.validate(&format!("{prefix}.sources.{name}.oauth")));
            }
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                problems.push(ConfigProblem::new(
                    format!("{prefix}.sources.{name}"),
                    "source names use letters, digits, '-' and '_' only",
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_section_parses_and_validates() {
        let config: ScimConfig = toml::from_str(
            "enabled = true\nmax_page_size = 100\n[sources.okta]\n[sources.entra]\ndescription = \"Entra ID\"\n",
        )
        .expect("parses");
        assert!(config.validate("scim").is_empty());
        assert_eq!(config.sources.len(), 2);
    }

    #[test]
    fn problems_are_reported_per_key() {
        let config: ScimConfig =
            toml::from_str("enabled = true\nmax_page_size = 0\n").expect("parses");
        let keys: Vec<String> = config.validate("scim").into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["scim.max_page_size", "scim.sources"]);
        assert!(toml::from_str::<ScimConfig>("bogus = 1").is_err());
    }
}

//! The `[tyk]` configuration section: where the Dashboard is and how to
//! authenticate, plus timeouts, concurrency and TLS settings.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::problem::{
    ConfigProblem, check_readable_file, require_secret, resolve_secret, serialize_redacted,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TykConfig {
    /// Base URL of the Tyk Dashboard, e.g. `https://dashboard.example.com:3000`.
    pub dashboard_url: String,
    /// Dashboard API credential ("Tyk Dashboard API Access Credentials" of a user).
    #[serde(serialize_with = "serialize_redacted")]
    pub api_key: Option<SecretString>,
    /// File holding the Dashboard API credential (instead of `api_key`).
    pub api_key_file: Option<PathBuf>,
    /// Admin API secret (`admin_secret` of tyk_analytics.conf); optional.
    #[serde(serialize_with = "serialize_redacted")]
    pub admin_secret: Option<SecretString>,
    /// File holding the Admin API secret (instead of `admin_secret`).
    pub admin_secret_file: Option<PathBuf>,
    /// Timeout of each request, e.g. `"10s"`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most requests in flight at once against the Dashboard.
    pub max_concurrency: usize,
    /// PEM file of an extra CA to trust (private PKI).
    pub ca_file: Option<PathBuf>,
    /// Verify the Dashboard's TLS certificate. Turning it off is logged loudly.
    pub tls_verify: bool,
    /// Organisation id used when a caller does not name one.
    pub org_id: Option<String>,
}

impl Default for TykConfig {
    fn default() -> Self {
        Self {
            dashboard_url: "http://127.0.0.1:3000".into(),
            api_key: None,
            api_key_file: None,
            admin_secret: None,
            admin_secret_file: None,
            timeout: Duration::from_secs(10),
            max_concurrency: 8,
            ca_file: None,
            tls_verify: true,
            org_id: None,
        }
    }
}

impl TykConfig {
    /// A config pointing at `url` with an inline API key (tests, stand-in).
    pub fn new(url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            dashboard_url: url.into(),
            api_key: Some(SecretString::from(api_key.into())),
            ..Self::default()
        }
    }

    /// Every problem with this section, one per key; `prefix` is e.g. `tyk`.
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        let key = |k: &str| format!("{prefix}.{k}");
        let mut problems = Vec::new();
        match url::Url::parse(&self.dashboard_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => problems.push(
                ConfigProblem::new(key("dashboard_url"), "is not an http(s) URL")
                    .hint("e.g. https://dashboard.example.com:3000"),
            ),
        }
        if let Err(p) = require_secret(
            &key("api_key"),
            self.api_key.as_ref(),
            self.api_key_file.as_deref(),
        ) {
            problems.push(p);
        }
        if let Err(p) = resolve_secret(
            &key("admin_secret"),
            self.admin_secret.as_ref(),
            self.admin_secret_file.as_deref(),
        ) {
            problems.push(p);
        }
        if self.timeout.is_zero() {
            problems.push(
                ConfigProblem::new(key("timeout"), "must be more than 0").hint("e.g. \"10s\""),
            );
        }
        if self.max_concurrency == 0 {
            problems.push(ConfigProblem::new(
                key("max_concurrency"),
                "must be at least 1",
            ));
        }
        if let Err(p) = check_readable_file(&key("ca_file"), self.ca_file.as_ref()) {
            problems.push(p);
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_need_only_a_key() {
        let cfg = TykConfig::new("https://dash.example.com", "k");
        assert!(cfg.validate("tyk").is_empty());
        assert!(cfg.tls_verify);
    }

    #[test]
    fn problems_name_their_keys() {
        let cfg = TykConfig {
            dashboard_url: "dash".into(),
            timeout: Duration::ZERO,
            max_concurrency: 0,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TykConfig::default()
        };
        let keys: Vec<String> = cfg.validate("tyk").into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "tyk.dashboard_url",
                "tyk.api_key",
                "tyk.timeout",
                "tyk.max_concurrency",
                "tyk.ca_file"
            ]
        );
    }

    #[test]
    fn toml_shape_parses_and_debug_hides_secrets() {
        let cfg: TykConfig = toml::from_str(
            "dashboard_url = \"https://d\"\napi_key = \"s3cret-key\"\ntimeout = \"3s\"\nmax_concurrency = 2\ntls_verify = false\n",
        )
        .expect("parse");
        assert_eq!(cfg.timeout, Duration::from_secs(3));
        assert_eq!(
            cfg.api_key.as_ref().map(|k| k.expose_secret().to_string()),
            Some("s3cret-key".into())
        );
        assert!(!format!("{cfg:?}").contains("s3cret-key"));
        assert!(toml::from_str::<TykConfig>("nope = 1").is_err());
    }
}

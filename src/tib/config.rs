//! The `[tib]` configuration section and the profile templates it names.
//!
//! A template is the operator's part of a TIB profile (provider, its
//! config, return URL…); tyk-idsync adds the group mapping. Templates are
//! read and checked at start, so a typo is a config error naming
//! `tib.profiles[N].template_file`, never a broken login later.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::profile::{GENERATED_FIELDS, PROFILE_FIELDS, USER_PROFILE_ACTION};
use crate::problem::{ConfigProblem, require_secret, serialize_redacted};

/// `[tib]`: where the profiles go and which ones tyk-idsync keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TibConfig {
    /// TIB's profiles file (a JSON array), rewritten atomically with a
    /// `.bak` of the previous version. Profiles not configured here stay.
    pub profiles_file: Option<PathBuf>,
    /// TIB's REST API (`http://tib:3010`), or the Dashboard when `embedded`.
    pub url: Option<String>,
    /// TIB's `Secret` (sent as the `Authorization` header).
    #[serde(serialize_with = "serialize_redacted")]
    pub secret: Option<SecretString>,
    /// File holding the secret (instead of `secret`).
    pub secret_file: Option<PathBuf>,
    /// The TIB embedded in the Dashboard: profiles at `/api/tib/profiles`,
    /// the Dashboard key as `Authorization` (default: `tyk.api_key`), and
    /// `url` defaults to `tyk.dashboard_url`.
    pub embedded: bool,
    /// How often the profiles are re-rendered and pushed when they changed.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How often every profile is read back from TIB and corrected if it
    /// was changed by hand, even when nothing changed here.
    #[serde(with = "humantime_serde")]
    pub verify_interval: Duration,
    /// Timeout of each request to TIB.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per profile and push (transient errors only).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (and per failed push, up to
    /// `interval`).
    #[serde(with = "humantime_serde")]
    pub retry_base_delay: Duration,
    /// The profiles tyk-idsync generates and keeps.
    pub profiles: Vec<TibProfileConfig>,
}

impl Default for TibConfig {
    fn default() -> Self {
        Self {
            profiles_file: None,
            url: None,
            secret: None,
            secret_file: None,
            embedded: false,
            interval: Duration::from_secs(30),
            verify_interval: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            max_attempts: 3,
            retry_base_delay: Duration::from_millis(500),
            profiles: Vec::new(),
        }
    }
}

/// One `[[tib.profiles]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TibProfileConfig {
    /// The TIB profile `ID` (the `{id}` of `/auth/{id}/…`).
    pub id: String,
    /// The identity source whose people log in through this profile; its
    /// IdP group names become the `UserGroupMapping` keys.
    pub source: String,
    /// Tyk organisation id; the mapping rules of this org are used.
    pub org_id: String,
    /// JSON file with the operator's part of the profile.
    pub template_file: PathBuf,
    /// Tyk group name for `DefaultUserGroupID`; default: `mapping.default_group`
    /// (when `mapping.default_org_id` is this org), else the least
    /// privileged mapped group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_group: Option<String>,
}

/// A loaded, checked template: only TIB profile fields, none of the
/// generated ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub fields: Map<String, Value>,
}

impl TibConfig {
    /// Every problem of this section; `prefix` is `tib`. `tyk` is the
    /// `[tyk]` section (embedded mode borrows its URL and key) and
    /// `sources` the configured identity source names.
    pub fn validate(
        &self,
        prefix: &str,
        tyk: Option<&crate::tyk::TykConfig>,
        sources: &BTreeSet<String>,
    ) -> Vec<ConfigProblem> {
        let key = |k: &str| format!("{prefix}.{k}");
        let mut problems = Vec::new();
        if self.url.is_none() && self.profiles_file.is_none() && !self.embedded {
            problems.push(
                ConfigProblem::new(prefix, "names neither `url` nor `profiles_file`")
                    .hint("set tib.url (TIB's REST API), tib.profiles_file, or both"),
            );
        }
        if tyk.is_none() {
            problems.push(
                ConfigProblem::new(prefix, "needs the [tyk] section")
                    .hint("the Tyk group ids in the profiles come from the Dashboard"),
            );
        }
        if let Some(url) = &self.url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => problems.push(
                    ConfigProblem::new(key("url"), "is not an http(s) URL")
                        .hint("e.g. http://tib:3010"),
                ),
            }
        }
        let remote = self.url.is_some() || self.embedded;
        if remote
            && !(self.embedded && self.secret.is_none() && self.secret_file.is_none())
            && let Err(p) = require_secret(
                &key("secret"),
                self.secret.as_ref(),
                self.secret_file.as_deref(),
            )
        {
            problems.push(p);
        }
        if let Some(file) = &self.profiles_file {
            let dir = parent_dir(file);
            if !dir.is_dir() {
                problems.push(ConfigProblem::new(
                    key("profiles_file"),
                    format!("directory {} does not exist", dir.display()),
                ));
            }
        }
        for (name, value) in [
            ("interval", self.interval),
            ("verify_interval", self.verify_interval),
            ("timeout", self.timeout),
        ] {
            if value.is_zero() {
                problems.push(ConfigProblem::new(key(name), "must be more than 0"));
            }
        }
        if self.max_attempts == 0 {
            problems.push(ConfigProblem::new(
                key("max_attempts"),
                "must be at least 1",
            ));
        }
        if self.profiles.is_empty() {
            problems.push(
                ConfigProblem::new(key("profiles"), "is empty")
                    .hint("add a [[tib.profiles]] entry, or remove the [tib] section"),
            );
        }
        let mut ids = BTreeSet::new();
        for (index, profile) in self.profiles.iter().enumerate() {
            let at = |k: &str| format!("{prefix}.profiles[{index}].{k}");
            if profile.id.trim().is_empty() {
                problems.push(ConfigProblem::new(at("id"), "must not be empty"));
            } else if !ids.insert(profile.id.as_str()) {
                problems.push(ConfigProblem::new(
                    at("id"),
                    format!("profile {:?} is configured twice", profile.id),
                ));
            }
            if !sources.contains(&profile.source) {
                problems.push(
                    ConfigProblem::new(
                        at("source"),
                        format!(
                            "{:?} is not a configured SCIM or LDAP source",
                            profile.source
                        ),
                    )
                    .hint("name a [scim.sources.*] or [ldap.sources.*] entry"),
                );
            }
            if profile.org_id.trim().is_empty() {
                problems.push(ConfigProblem::new(at("org_id"), "must not be empty"));
            }
            if let Err(p) = load_template(&at("template_file"), &profile.template_file) {
                problems.push(p);
            }
        }
        problems
    }

    /// The secret sent as `Authorization`: `secret`/`secret_file`, else
    /// (embedded) the Dashboard key.
    pub fn resolve_secret(
        &self,
        tyk: Option<&crate::tyk::TykConfig>,
    ) -> Result<SecretString, ConfigProblem> {
        if self.embedded
            && self.secret.is_none()
            && self.secret_file.is_none()
            && let Some(tyk) = tyk
        {
            return require_secret(
                "tyk.api_key",
                tyk.api_key.as_ref(),
                tyk.api_key_file.as_deref(),
            );
        }
        require_secret(
            "tib.secret",
            self.secret.as_ref(),
            self.secret_file.as_deref(),
        )
    }

    /// The REST base URL, if profiles are pushed over HTTP.
    pub fn effective_url(&self, tyk: Option<&crate::tyk::TykConfig>) -> Option<String> {
        match (&self.url, self.embedded) {
            (Some(url), _) => Some(url.clone()),
            (None, true) => tyk.map(|t| t.dashboard_url.clone()),
            (None, false) => None,
        }
    }
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads and checks a template; `key` names it in problems.
pub fn load_template(key: &str, path: &Path) -> Result<Template, ConfigProblem> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigProblem::new(key, format!("cannot read {}: {e}", path.display())))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        ConfigProblem::new(key, format!("{} is not valid JSON: {e}", path.display()))
    })?;
    let Value::Object(fields) = value else {
        return Err(ConfigProblem::new(
            key,
            format!(
                "{} must hold one JSON object (a TIB profile)",
                path.display()
            ),
        ));
    };
    check_template(&fields).map_err(|problem| {
        ConfigProblem::new(key, format!("{}: {problem}", path.display()))
            .hint("a template holds the operator's part of a TIB profile (tap/profile.go)")
    })?;
    Ok(Template { fields })
}

/// What is wrong with a template, if anything.
pub fn check_template(fields: &Map<String, Value>) -> Result<(), String> {
    for (name, value) in fields {
        let Some((_, kind)) = PROFILE_FIELDS.iter().find(|(field, _)| field == name) else {
            return Err(format!("`{name}` is not a TIB profile field"));
        };
        if GENERATED_FIELDS.contains(&name.as_str()) {
            let same_action = name == "ActionType" && value == USER_PROFILE_ACTION;
            if !same_action {
                return Err(format!(
                    "`{name}` is generated by tyk-idsync; remove it from the template"
                ));
            }
        }
        if !kind.accepts(value) {
            return Err(format!("`{name}` must be {}", kind.describe()));
        }
    }
    for required in ["ProviderName", "Type"] {
        let set = fields
            .get(required)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if !set {
            return Err(format!("`{required}` is required"));
        }
    }
    let provider_type = fields.get("Type").and_then(Value::as_str).unwrap_or("");
    if !matches!(provider_type, "redirect" | "passthrough") {
        return Err(format!(
            "`Type` {provider_type:?} is neither \"redirect\" nor \"passthrough\""
        ));
    }
    if let Some(field) = fields.get("CustomUserGroupField")
        && field.as_str().is_some_and(str::is_empty)
    {
        return Err("`CustomUserGroupField` is empty: TIB would never read groups".into());
    }
    Ok(())
}

/// Who logs in through which profile, for `explain`'s notes.
pub fn logins(tib: Option<&TibConfig>) -> Vec<crate::mapping::explain::TibLogin> {
    tib.iter()
        .flat_map(|t| &t.profiles)
        .map(|p| crate::mapping::explain::TibLogin {
            profile_id: p.id.clone(),
            source: p.source.clone(),
            org_id: p.org_id.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn templates_are_checked_field_by_field() {
        let good = json!({"ProviderName": "SocialProvider", "Type": "redirect",
            "ReturnURL": "https://d/tap", "ProviderConfig": {"UseProviders": []},
            "ActionType": "GenerateOrLoginUserProfile", "SSOOnlyForRegisteredUsers": false});
        assert_eq!(check_template(&fields(good)), Ok(()));
        let cases = [
            (json!({"Type": "redirect"}), "`ProviderName` is required"),
            (
                json!({"ProviderName": "SocialProvider", "Type": "redirect", "UserGroupMapping": {}}),
                "`UserGroupMapping` is generated",
            ),
            (
                json!({"ProviderName": "SocialProvider", "Type": "redirect", "ReturnUrl": "x"}),
                "`ReturnUrl` is not a TIB profile field",
            ),
            (
                json!({"ProviderName": "SocialProvider", "Type": "redirect", "SSOOnlyForRegisteredUsers": "yes"}),
                "`SSOOnlyForRegisteredUsers` must be",
            ),
            (
                json!({"ProviderName": "SocialProvider", "Type": "sideways"}),
                "`Type` \"sideways\"",
            ),
            (
                json!({"ProviderName": "SocialProvider", "Type": "redirect", "ActionType": "GenerateTemporaryAuthToken"}),
                "`ActionType` is generated",
            ),
        ];
        for (template, want) in cases {
            let err = check_template(&fields(template.clone())).expect_err("bad template");
            assert!(err.contains(want), "{template}: {err}");
        }
    }

    #[test]
    fn problems_name_their_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.json");
        std::fs::write(
            &good,
            r#"{"ProviderName": "ADProvider", "Type": "passthrough"}"#,
        )
        .expect("write");
        let profile = |id: &str, source: &str| TibProfileConfig {
            id: id.into(),
            source: source.into(),
            org_id: "o".into(),
            template_file: good.clone(),
            default_group: None,
        };
        let cfg = TibConfig {
            url: Some("tib:3010".into()),
            profiles: vec![profile("a", "okta"), profile("a", "nope")],
            ..TibConfig::default()
        };
        let sources = BTreeSet::from(["okta".to_string()]);
        let keys: Vec<String> = cfg
            .validate("tib", None, &sources)
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            [
                "tib",
                "tib.url",
                "tib.secret",
                "tib.profiles[1].id",
                "tib.profiles[1].source"
            ]
        );
        let tyk = crate::tyk::TykConfig::new("http://dash:3000", "k");
        let embedded = TibConfig {
            embedded: true,
            profiles: vec![profile("a", "okta")],
            ..TibConfig::default()
        };
        assert_eq!(embedded.validate("tib", Some(&tyk), &sources), vec![]);
        assert_eq!(
            embedded.effective_url(Some(&tyk)).as_deref(),
            Some("http://dash:3000")
        );
    }

    #[test]
    fn the_example_template_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tib/okta.json");
        let template = load_template("tib.profiles[0].template_file", &path).expect("valid");
        assert_eq!(template.fields["ProviderName"], "SocialProvider");
    }

    #[test]
    fn toml_shape_parses_and_unknown_keys_fail() {
        let cfg: TibConfig = toml::from_str(
            "url = \"http://tib:3010\"\nsecret = \"s\"\n[[profiles]]\nid = \"okta\"\nsource = \"okta\"\norg_id = \"o\"\ntemplate_file = \"t.json\"\n",
        )
        .expect("parse");
        assert_eq!(cfg.profiles.len(), 1);
        assert_eq!(cfg.interval, Duration::from_secs(30));
        assert!(toml::from_str::<TibConfig>("nope = 1").is_err());
        assert!(
            toml::from_str::<TibConfig>(
                "[[profiles]]\nid = \"a\"\nsource = \"s\"\norg_id = \"o\"\ntemplate_file = \"t\"\ntemplate = \"x\"\n"
            )
            .is_err()
        );
    }
}

//! A mapping rule and its validation: one Tyk user group in one Tyk
//! organisation, its permission template, its priority and the
//! identity-provider groups (`mappingsSSO`) that map onto it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::matcher::SsoPattern;

/// Permission sections Tyk Dashboard knows (CONTRACT §4.4). Operators can
/// allow more (custom `security.additional_permissions`) through
/// configuration.
pub const KNOWN_PERMISSION_KEYS: &[&str] = &[
    "analytics",
    "api_assets",
    "apis",
    "audit_logs",
    "certs",
    "governance",
    "hooks",
    "idm",
    "keys",
    "log",
    "mcp",
    "oauth",
    "owned_analytics",
    "policies",
    "portal",
    "system",
    "user_groups",
    "users",
    "websockets",
];

/// Levels a section can have in `user_permissions`.
pub const PERMISSION_LEVELS: &[&str] = &["read", "write", "deny"];

/// Keys that would make a user an administrator; a rule may never set them.
pub const ADMIN_KEYS: &[&str] = &["IsAdmin", "ResetPassword"];

/// One row of the mapping table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MappingRule {
    /// Stable identifier; assigned by the store for API rules, derived from
    /// org + name for config rules.
    #[serde(default)]
    pub id: String,
    /// Tyk organisation id.
    pub org_id: String,
    /// Tyk user group name (the bridge resolves or creates its id).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Higher wins.
    #[serde(default)]
    pub priority: i64,
    /// Identity-provider groups mapping onto this Tyk group.
    #[serde(rename = "mappingsSSO", default)]
    pub mappings_sso: Vec<String>,
    /// Tyk `user_permissions` template for the group.
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
}

/// A validation failure naming the offending field (API-style path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

impl RuleError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl MappingRule {
    /// Checks every field; `extra_keys` are additional permission sections
    /// the operator allowed. Returns all problems, not just the first.
    pub fn validate(&self, extra_keys: &[String]) -> Vec<RuleError> {
        let mut errors = Vec::new();
        if self.org_id.trim().is_empty() {
            errors.push(RuleError::new("orgId", "must not be empty"));
        }
        if self.name.trim().is_empty() {
            errors.push(RuleError::new("name", "must not be empty"));
        }
        for (index, entry) in self.mappings_sso.iter().enumerate() {
            if let Err(message) = SsoPattern::parse(entry) {
                errors.push(RuleError::new(format!("mappingsSSO[{index}]"), message));
            }
        }
        errors.extend(validate_permissions(&self.permissions, extra_keys));
        errors
    }

    /// The compiled `mappingsSSO` patterns; invalid entries are skipped
    /// (rules are validated before they are stored).
    pub fn patterns(&self) -> Vec<SsoPattern> {
        self.mappings_sso
            .iter()
            .filter_map(|entry| SsoPattern::parse(entry).ok())
            .collect()
    }
}

/// Validates a Tyk `user_permissions` map: known (or allowed extra) keys,
/// known levels, never an admin key.
pub fn validate_permissions(
    permissions: &BTreeMap<String, String>,
    extra_keys: &[String],
) -> Vec<RuleError> {
    let mut errors = Vec::new();
    for (key, level) in permissions {
        let field = format!("permissions.{key}");
        if ADMIN_KEYS.contains(&key.as_str()) {
            errors.push(RuleError::new(
                field,
                "mapping rules can never grant Tyk admin rights",
            ));
            continue;
        }
        if !KNOWN_PERMISSION_KEYS.contains(&key.as_str()) && !extra_keys.contains(key) {
            errors.push(RuleError::new(
                field,
                format!("unknown Tyk permission key {key:?}"),
            ));
            continue;
        }
        if !PERMISSION_LEVELS.contains(&level.as_str()) {
            errors.push(RuleError::new(
                field,
                format!("unknown level {level:?}; expected read, write or deny"),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> MappingRule {
        MappingRule {
            id: "r1".into(),
            org_id: "org1".into(),
            name: "Developers".into(),
            description: None,
            priority: 10,
            mappings_sso: vec!["okta:Platform Team".into(), "dev-*".into()],
            permissions: BTreeMap::from([("apis".into(), "write".into())]),
        }
    }

    #[test]
    fn valid_rule_has_no_errors() {
        assert_eq!(rule().validate(&[]), vec![]);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: &[(&str, &str, &str)] = &[
            ("IsAdmin", "admin", "permissions.IsAdmin"),
            ("ResetPassword", "admin", "permissions.ResetPassword"),
            ("frobnicate", "read", "permissions.frobnicate"),
            ("apis", "admin", "permissions.apis"),
        ];
        for (key, level, field) in cases {
            let mut bad = rule();
            bad.permissions.insert((*key).into(), (*level).into());
            let errors = bad.validate(&[]);
            assert_eq!(errors.len(), 1, "{key}: {errors:?}");
            assert_eq!(errors[0].field, *field);
        }
    }

    #[test]
    fn extra_keys_are_allowed_when_configured() {
        let mut custom = rule();
        custom.permissions.insert("my_portal".into(), "read".into());
        assert_eq!(custom.validate(&[]).len(), 1);
        assert_eq!(custom.validate(&["my_portal".into()]), vec![]);
    }

    #[test]
    fn invalid_glob_names_the_entry() {
        let mut bad = rule();
        bad.mappings_sso.push("dev-[".into());
        let errors = bad.validate(&[]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "mappingsSSO[2]");
    }

    #[test]
    fn empty_org_and_name_are_refused() {
        let mut bad = rule();
        bad.org_id = " ".into();
        bad.name = String::new();
        let fields: Vec<_> = bad.validate(&[]).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["orgId", "name"]);
    }
}

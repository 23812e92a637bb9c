//! The `[mapping]` section of the config file: resolution settings and the
//! declarative rules (`[[mapping.rules]]`), which are applied to the store
//! at start and on every reload (SIGHUP) so the table can live in Git.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::resolve::{ResolveOptions, UnmappedPolicy};
use super::rule::MappingRule;
use crate::problem::ConfigProblem;

/// Mapping settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    /// What happens to people in no mapped group: `ignore`, `deactivate` or
    /// `default`.
    pub unmapped_policy: UnmappedPolicy,
    /// Tyk organisation for unmapped people (needed by `deactivate` and
    /// `default`).
    pub default_org_id: Option<String>,
    /// Tyk group name for unmapped people under `default`; it must be the
    /// group of a rule in `default_org_id` (so it has a permission template).
    pub default_group: Option<String>,
    /// Source preference for a person's names when sources disagree.
    pub source_order: Vec<String>,
    /// Custom Tyk permission sections (`security.additional_permissions`)
    /// rules may use besides the built-in ones.
    pub extra_permission_keys: Vec<String>,
    /// Declarative rules, owned by this file (origin `config`).
    pub rules: Vec<ConfigRule>,
}

/// One `[[mapping.rules]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRule {
    /// Tyk organisation id.
    pub org_id: String,
    /// Tyk user group name.
    pub name: String,
    /// Group description in Tyk.
    #[serde(default)]
    pub description: Option<String>,
    /// Higher wins.
    #[serde(default)]
    pub priority: i64,
    /// Identity-provider groups mapping onto this group.
    #[serde(default)]
    pub mappings_sso: Vec<String>,
    /// Tyk `user_permissions` template (section → read/write/deny).
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
}

impl ConfigRule {
    /// The rule without an id (the store keeps ids).
    pub fn to_rule(&self) -> MappingRule {
        MappingRule {
            id: String::new(),
            org_id: self.org_id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            priority: self.priority,
            mappings_sso: self.mappings_sso.clone(),
            permissions: self.permissions.clone(),
        }
    }
}

impl MappingConfig {
    pub fn resolve_options(&self) -> ResolveOptions {
        ResolveOptions {
            unmapped_policy: self.unmapped_policy,
            default_org_id: self.default_org_id.clone(),
            default_group: self.default_group.clone(),
            source_order: self.source_order.clone(),
        }
    }

    /// One problem per bad key, `prefix` being e.g. `mapping`.
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let needs_org = self.unmapped_policy != UnmappedPolicy::Ignore;
        if needs_org
            && self
                .default_org_id
                .as_deref()
                .is_none_or(|o| o.trim().is_empty())
        {
            problems.push(
                ConfigProblem::new(
                    format!("{prefix}.default_org_id"),
                    "required when unmapped_policy is deactivate or default",
                )
                .hint("the Tyk organisation id unmapped people are kept in"),
            );
        }
        if self.unmapped_policy == UnmappedPolicy::Default && self.default_group.is_none() {
            problems.push(ConfigProblem::new(
                format!("{prefix}.default_group"),
                "required when unmapped_policy is default",
            ));
        }
        let mut seen = BTreeSet::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let key = format!("{prefix}.rules[{index}]");
            if !seen.insert((rule.org_id.clone(), rule.name.clone())) {
                problems.push(ConfigProblem::new(
                    format!("{key}.name"),
                    format!(
                        "a rule for group {:?} in org {:?} is already defined",
                        rule.name, rule.org_id
                    ),
                ));
            }
            for error in rule.to_rule().validate(&self.extra_permission_keys) {
                let field = match error.field.as_str() {
                    "orgId" => "org_id".to_string(),
                    other => other.replace("mappingsSSO", "mappings_sso"),
                };
                problems.push(ConfigProblem::new(format!("{key}.{field}"), error.message));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
unmapped_policy = "default"
default_org_id = "5e9d9544a1dcd60001d0ed20"
default_group = "Readers"
source_order = ["okta", "ldap-corp"]

[[rules]]
org_id = "5e9d9544a1dcd60001d0ed20"
name = "Readers"
priority = 0
mappings_sso = ["*"]
permissions = { apis = "read", analytics = "read" }

[[rules]]
org_id = "5e9d9544a1dcd60001d0ed20"
name = "API Admins"
description = "Full API management"
priority = 100
mappings_sso = ["okta:Platform Team", "ldap-corp:cn=api-admins,ou=groups,dc=example,dc=org"]
permissions = { apis = "write", keys = "write", policies = "write" }
"#;

    fn parse(text: &str) -> MappingConfig {
        toml::from_str(text).expect("valid TOML")
    }

    #[test]
    fn example_is_valid() {
        let config = parse(EXAMPLE);
        assert_eq!(config.rules.len(), 2);
        assert_eq!(config.validate("mapping"), vec![]);
    }

    #[test]
    fn problems_name_the_key() {
        let mut config = parse(EXAMPLE);
        config.default_org_id = None;
        config.rules[1]
            .permissions
            .insert("IsAdmin".into(), "admin".into());
        config.rules[1].mappings_sso.push("dev-[".into());
        config.rules.push(config.rules[0].clone());
        let keys: Vec<_> = config
            .validate("mapping")
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(
            keys,
            vec![
                "mapping.default_org_id",
                "mapping.rules[1].mappings_sso[2]",
                "mapping.rules[1].permissions.IsAdmin",
                "mapping.rules[2].name",
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error =
            toml::from_str::<MappingConfig>("unmaped_policy = \"ignore\"").expect_err("typo");
        assert!(error.to_string().contains("unmaped_policy"));
    }
}

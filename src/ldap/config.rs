//! The `[ldap]` configuration section: any number of named sources.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::problem::{ConfigProblem, check_readable_file, require_secret, serialize_redacted};

/// `[ldap]`: the LDAP sources to poll, by name (the identity source name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `[ldap.sources.<name>]`, one table per directory.
    #[serde(default)]
    pub sources: BTreeMap<String, LdapSourceConfig>,
}

/// Where an account's "disabled" state is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisabledRule {
    /// Never disabled.
    None,
    /// OpenLDAP: `nsAccountLock=true` or a `pwdAccountLockedTime` present.
    #[default]
    OpenLdap,
    /// Active Directory: `userAccountControl` bit 2 (ACCOUNTDISABLE).
    ActiveDirectory,
}

/// How group membership is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipMode {
    /// `member` / `uniqueMember` DN lists and posixGroup `memberUid` on groups.
    #[default]
    GroupAttributes,
    /// The users' `memberOf` (operational; requested by name).
    MemberOf,
    /// Active Directory: for each group, the users matching the in-chain
    /// rule `memberOf:1.2.840.113556.1.4.1941:=<group DN>` (nesting is
    /// resolved by the server).
    AdInChain,
}

/// One directory. Defaults suit OpenLDAP; AD equivalents are in the docs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapSourceConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// PEM CA bundle to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Verify the server certificate (turn off only for testing).
    pub tls_verify: bool,
    /// DN to bind as.
    pub bind_dn: String,
    /// Bind password, inline (prefer the env variable or `bind_password_file`).
    #[serde(serialize_with = "serialize_redacted")]
    pub bind_password: Option<SecretString>,
    /// File holding the bind password.
    pub bind_password_file: Option<PathBuf>,
    /// TCP connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Timeout of each LDAP operation (bind, each search page).
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Base DN of user entries.
    pub user_base: String,
    /// `one` or `sub`.
    pub user_scope: String,
    /// Filter selecting users.
    pub user_filter: String,
    /// Base DN of group entries.
    pub group_base: String,
    /// `one` or `sub`.
    pub group_scope: String,
    /// Filter selecting groups.
    pub group_filter: String,
    /// Stable id attribute: `entryUUID` (OpenLDAP) or `objectGUID` (AD).
    pub id_attribute: String,
    /// Login attribute: `uid` or `sAMAccountName`.
    pub login_attribute: String,
    /// Mail attribute.
    pub mail_attribute: String,
    /// Given-name attribute.
    pub given_name_attribute: String,
    /// Family-name attribute.
    pub family_name_attribute: String,
    /// Display-name attribute.
    pub display_name_attribute: String,
    /// How membership is read.
    pub membership: MembershipMode,
    /// How disabled accounts are recognised.
    pub disabled: DisabledRule,
    /// Extra filter: users matching it are treated as disabled.
    pub disabled_filter: Option<String>,
    /// Page size for RFC 2696 paged results.
    pub page_size: i32,
    /// Time between polls.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Random extra delay, up to this, added to each interval.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// Every Nth poll is full (detects deletions); the others incremental.
    pub full_every: u32,
    /// Generalized-time attribute incremental polls filter on
    /// (`modifyTimestamp`; `whenChanged` on Active Directory).
    pub incremental_attribute: String,
    /// How far back before the previous poll's start an incremental poll
    /// looks, to absorb clock skew and replication delay.
    #[serde(with = "humantime_serde")]
    pub incremental_overlap: Duration,
    /// Hold a full poll that would remove more than this share of users.
    pub max_removal_percent: u8,
    /// ...unless it removes at most this many users.
    pub max_removal_min: u32,
}

impl Default for LdapSourceConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            starttls: false,
            ca_file: None,
            tls_verify: true,
            bind_dn: String::new(),
            bind_password: None,
            bind_password_file: None,
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(60),
            user_base: String::new(),
            user_scope: "sub".into(),
            user_filter: "(objectClass=inetOrgPerson)".into(),
            group_base: String::new(),
            group_scope: "sub".into(),
            group_filter:
                "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))"
                    .into(),
            id_attribute: "entryUUID".into(),
            login_attribute: "uid".into(),
            mail_attribute: "mail".into(),
            given_name_attribute: "givenName".into(),
            family_name_attribute: "sn".into(),
            display_name_attribute: "displayName".into(),
            membership: MembershipMode::default(),
            disabled: DisabledRule::default(),
            disabled_filter: None,
            page_size: 500,
            interval: Duration::from_secs(300),
            jitter: Duration::from_secs(30),
            full_every: 12,
            incremental_attribute: "modifyTimestamp".into(),
            incremental_overlap: Duration::from_secs(300),
            max_removal_percent: 20,
            max_removal_min: 10,
        }
    }
}

impl LdapConfig {
    /// Every problem in every source, keys prefixed with `prefix` (`ldap`).
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        self.sources
            .iter()
            .flat_map(|(name, source)| source.validate(&format!("{prefix}.sources.{name}")))
            .collect()
    }
}

impl LdapSourceConfig {
    /// The bind password from `bind_password` or `bind_password_file`.
    pub fn password(&self, prefix: &str) -> Result<SecretString, ConfigProblem> {
        require_secret(
            &format!("{prefix}.bind_password"),
            self.bind_password.as_ref(),
            self.bind_password_file.as_deref(),
        )
    }

    /// Problems with this source, keys prefixed with `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let key = |k: &str| format!("{prefix}.{k}");
        if !(self.url.starts_with("ldap://") || self.url.starts_with("ldaps://")) {
            problems.push(
                ConfigProblem::new(key("url"), "must start with ldap:// or ldaps://")
                    .hint("e.g. ldaps://ldap.example.com:636"),
            );
        }
        if self.starttls && self.url.starts_with("ldaps://") {
            problems.push(ConfigProblem::new(
                key("starttls"),
                "StartTLS cannot be combined with ldaps://",
            ));
        }
        for (k, value) in [
            ("bind_dn", &self.bind_dn),
            ("user_base", &self.user_base),
            ("group_base", &self.group_base),
        ] {
            if value.trim().is_empty() {
                problems.push(ConfigProblem::new(key(k), "is required but empty"));
            }
        }
        for (k, value) in [
            ("user_scope", &self.user_scope),
            ("group_scope", &self.group_scope),
        ] {
            if value != "one" && value != "sub" {
                problems.push(ConfigProblem::new(key(k), "must be `one` or `sub`"));
            }
        }
        if let Err(p) = require_secret(
            &key("bind_password"),
            self.bind_password.as_ref(),
            self.bind_password_file.as_deref(),
        ) {
            problems.push(p);
        }
        if let Err(p) = check_readable_file(&key("ca_file"), self.ca_file.as_ref()) {
            problems.push(p);
        }
        if self.page_size < 1 {
            problems.push(ConfigProblem::new(key("page_size"), "must be at least 1"));
        }
        if self.full_every < 1 {
            problems.push(ConfigProblem::new(key("full_every"), "must be at least 1"));
        }
        if let Some(filter) = &self.disabled_filter
            && !(filter.starts_with('(') && filter.ends_with(')'))
        {
            problems.push(
                ConfigProblem::new(
                    key("disabled_filter"),
                    "must be an LDAP filter in parentheses",
                )
                .hint("e.g. (employeeType=former)"),
            );
        }
        if self.max_removal_percent > 100 {
            problems.push(ConfigProblem::new(
                key("max_removal_percent"),
                "must be 0–100",
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> LdapSourceConfig {
        LdapSourceConfig {
            url: "ldap://127.0.0.1:389".into(),
            bind_dn: "cn=admin,dc=example,dc=org".into(),
            bind_password: Some(SecretString::from("secret".to_string())),
            user_base: "ou=people,dc=example,dc=org".into(),
            group_base: "ou=groups,dc=example,dc=org".into(),
            ..LdapSourceConfig::default()
        }
    }

    #[test]
    fn a_complete_source_is_valid() {
        assert!(valid().validate("ldap.sources.corp").is_empty());
    }

    #[test]
    fn each_mistake_is_reported_under_its_key() {
        let cases: Vec<(&str, LdapSourceConfig)> = vec![
            (
                "url",
                LdapSourceConfig {
                    url: "http://x".into(),
                    ..valid()
                },
            ),
            (
                "bind_dn",
                LdapSourceConfig {
                    bind_dn: " ".into(),
                    ..valid()
                },
            ),
            (
                "bind_password",
                LdapSourceConfig {
                    bind_password: None,
                    ..valid()
                },
            ),
            (
                "user_scope",
                LdapSourceConfig {
                    user_scope: "base".into(),
                    ..valid()
                },
            ),
            (
                "page_size",
                LdapSourceConfig {
                    page_size: 0,
                    ..valid()
                },
            ),
            (
                "full_every",
                LdapSourceConfig {
                    full_every: 0,
                    ..valid()
                },
            ),
            (
                "max_removal_percent",
                LdapSourceConfig {
                    max_removal_percent: 101,
                    ..valid()
                },
            ),
            (
                "starttls",
                LdapSourceConfig {
                    url: "ldaps://x".into(),
                    starttls: true,
                    ..valid()
                },
            ),
        ];
        for (field, config) in cases {
            let problems = config.validate("p");
            let keys: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
            assert_eq!(keys, vec![format!("p.{field}")], "case {field}");
        }
    }

    #[test]
    fn toml_with_defaults_parses() {
        let text = r#"
            [sources.corp]
            url = "ldap://127.0.0.1:389"
            bind_dn = "cn=admin,dc=example,dc=org"
            bind_password = "pw"
            user_base = "ou=people,dc=example,dc=org"
            group_base = "ou=groups,dc=example,dc=org"
            interval = "5m"
            disabled = "active_directory"
        "#;
        let config: LdapConfig = toml::from_str(text).expect("parses");
        let corp = &config.sources["corp"];
        assert_eq!(corp.interval, Duration::from_secs(300));
        assert_eq!(corp.disabled, DisabledRule::ActiveDirectory);
        assert_eq!(corp.page_size, 500);
        assert!(toml::from_str::<LdapConfig>("[sources.x]\nbogus = 1").is_err());
    }
}

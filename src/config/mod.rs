//! Configuration: defaults, an optional TOML file, then environment
//! overrides (`TYK_IDSYNC__SECTION__KEY`), validated at start-up.
//!
//! Each section type lives beside the code it configures; this module
//! assembles them, loads them (see [`load`]) and renders the effective
//! configuration with secrets redacted for `check-config`.

mod load;
mod sections;

use serde::{Deserialize, Serialize};

pub use load::{ConfigErrors, ENV_PREFIX, load, load_with_env};
// The problem and secret helpers live in the leaf module `crate::problem`,
// which the boundaries import; re-exported here for the glue code.
pub use crate::problem::{
    ConfigProblem, check_readable_file, require_secret, resolve_secret, serialize_redacted,
};
pub use sections::{DatabaseConfig, LogConfig, LogFormat, ServerConfig};

/// The whole configuration. Every section has defaults, so the binary runs
/// with no file at all (SQLite under `./data/`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: crate::admin::AdminConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    /// The Tyk Dashboard to keep in step. Without it identities are still
    /// accepted and queued, but nothing is applied to Tyk.
    pub tyk: Option<crate::tyk::TykConfig>,
    pub scim: crate::scim::ScimConfig,
    pub mapping: crate::mapping::MappingConfig,
    /// LDAP directories to poll, by source name.
    pub ldap: crate::ldap::LdapConfig,
    pub sync: crate::sync::config::SyncConfig,
    /// Tyk Identity Broker profiles generated from the mapping table.
    pub tib: Option<crate::tib::TibConfig>,
}

impl Config {
    /// Every problem of every section, in file order.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = self.server.validate();
        problems.extend(self.admin.validate());
        problems.extend(self.database.validate());
        problems.extend(self.log.validate());
        if let Some(tyk) = &self.tyk {
            problems.extend(tyk.validate("tyk"));
        }
        problems.extend(self.scim.validate("scim"));
        problems.extend(self.mapping.validate("mapping"));
        problems.extend(self.ldap.validate("ldap"));
        for name in self.ldap.sources.keys() {
            if self.scim.sources.contains_key(name) {
                // One source, one writer: a SCIM token must never be able
                // to change what a directory poll owns, or the reverse.
                problems.push(ConfigProblem::new(
                    format!("ldap.sources.{name}"),
                    "is also a SCIM source; each identity source needs its own name",
                ));
            }
        }
        problems.extend(self.sync.validate("sync"));
        if let Some(tib) = &self.tib {
            let sources = self.scim.sources.keys().chain(self.ldap.sources.keys());
            let sources = sources.cloned().collect();
            problems.extend(tib.validate("tib", self.tyk.as_ref(), &sources));
        }
        problems
    }

    /// The effective configuration as TOML, secrets replaced by `[REDACTED]`.
    pub fn to_redacted_toml(&self) -> String {
        let mut copy = self.clone();
        copy.database.url = crate::store::redact_url(&copy.database.url);
        toml::to_string_pretty(&copy).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

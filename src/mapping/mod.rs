//! The mapping table: identity-provider groups → Tyk user groups.
//!
//! Each [`MappingRule`] names one Tyk user group (per Tyk organisation) and
//! the identity-provider groups (`mappingsSSO`) that map onto it. The pure
//! function [`resolve::desired_state`] turns every person's identities and
//! the rules into the Tyk users and groups we want; [`reasoning::explain`]
//! returns the same decision with its reasoning.
//!
//! Resolution rules (documented here because operators rely on them):
//! - A person is keyed per Tyk organisation by lower-cased e-mail; identities
//!   from several sources with the same e-mail are merged, their groups are
//!   combined, and the person is active while any source has them active.
//! - People without an e-mail are never provisioned (Tyk keys users by
//!   e-mail); explain reports them as skipped.
//! - A person is provisioned in every organisation where at least one rule
//!   matches. Within an organisation the matching rule with the highest
//!   `priority` wins; on equal priority the rule whose Tyk group name is
//!   lexicographically smaller (case-sensitive byte order) wins, then the
//!   smaller rule id. Group names are unique per organisation, so this
//!   order is total.
//! - A person matching no rule in any organisation is handled by the
//!   unmapped policy: `ignore` (not provisioned), `deactivate` (kept in the
//!   default organisation, inactive, no group) or `default` (the default
//!   group in the default organisation).
//! - Names: for the given name, the family name and the display name
//!   separately, the first source in `source_order` with a non-empty value
//!   wins; sources not listed come after, in name order. Tyk's first and
//!   last name are derived from them by [`names::tyk_names`] and are never
//!   empty (display name split, else the login's local part).
//! - A person inactive in every source keeps their winning group but is
//!   `active = false`, so the sync worker deactivates rather than deletes.
//! - Rules from the config file (origin `config`) and from the API/CLI
//!   (origin `api`) share one table; see [`service`] for how they coexist.
//! - Rules can never grant Tyk admin: `IsAdmin` and `ResetPassword` are
//!   refused by validation, matching Tyk's own rule since 5.6.

pub mod api;
pub mod config;
pub mod explain;
pub mod input;
pub mod matcher;
pub mod names;
pub mod reasoning;
pub mod resolve;
pub mod rule;
pub mod service;

pub use config::{ConfigRule, MappingConfig};
pub use matcher::{GroupRef, SsoPattern};
pub use reasoning::{Explanation, IdentitySummary, explain};
pub use resolve::{PersonIdentity, ResolveOptions, RuleMatch, UnmappedPolicy, desired_state};
pub use rule::{MappingRule, RuleError, validate_permissions};
pub use service::{
    MappingError, ReloadReport, apply_file, export, list, load_desired, load_desired_for,
    sync_config_rules,
};

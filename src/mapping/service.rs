//! Rule changes through the store, each with an `EventKind::MappingChanged`
//! outbox event in the same transaction so the sync worker re-plans.
//!
//! Config and API rules coexist in one table; `(org, name)` is unique
//! across both. The config file is authoritative for the rules it names: a
//! reload takes over an API rule with the same (org, name), and the API and
//! CLI refuse to change or delete config-owned rules (409). A reload removes
//! only config-owned rules that left the file.

use std::path::Path;

use serde::Serialize;
use uuid::Uuid;

use super::config::MappingConfig;
use super::rule::{MappingRule, RuleError};
use crate::domain::{EventKind, NewIdentityEvent, SourceName};
use crate::store::mappings::{self, RuleOrigin, StoredRule};
use crate::store::{Store, StoreError};

/// Errors of the mapping layer; the API maps them to HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("invalid rule: {}", .0.first().map(ToString::to_string).unwrap_or_default())]
    Invalid(Vec<RuleError>),
    #[error("mapping rule {0:?} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("mapping rule {0:?} is owned by the config file; change it there")]
    ConfigOwned(String),
    #[error("cannot read {path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a config reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

impl ReloadReport {
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty())
    }
}

/// The event of a rule change. `before` holds the changed or removed
/// rules as they were (org, group name, `mappingsSSO`): with the rules as
/// they are now, the sync worker finds the people the change can affect —
/// those whose groups match either — instead of planning everyone.
fn mapping_event(action: &str, rules: &[&str], before: &[&MappingRule]) -> NewIdentityEvent {
    let before: Vec<serde_json::Value> = before
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "org_id": r.org_id,
                "name": r.name,
                "mappings_sso": r.mappings_sso,
            })
        })
        .collect();
    NewIdentityEvent {
        source: SourceName::new("mapping"),
        kind: EventKind::MappingChanged,
        subject_id: None,
        email: None,
        detail: serde_json::json!({ "action": action, "rules": rules, "before": before }),
    }
}

fn check(rule: &MappingRule, extra_keys: &[String]) -> Result<(), MappingError> {
    let errors = rule.validate(extra_keys);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(MappingError::Invalid(errors))
    }
}

fn conflict(error: StoreError) -> MappingError {
    match error {
        StoreError::Conflict { detail, .. } => MappingError::Conflict(detail),
        other => MappingError::Store(other),
    }
}

pub async fn list(store: &Store) -> Result<Vec<StoredRule>, MappingError> {
    let mut conn = store.acquire().await?;
    Ok(mappings::list(&mut conn).await?)
}

pub async fn get(store: &Store, id: &str) -> Result<StoredRule, MappingError> {
    let mut conn = store.acquire().await?;
    mappings::get(&mut conn, id)
        .await?
        .ok_or_else(|| MappingError::NotFound(id.to_string()))
}

/// Creates an API rule; the id is assigned here.
pub async fn create(
    store: &Store,
    mut rule: MappingRule,
    extra_keys: &[String],
) -> Result<MappingRule, MappingError> {
    check(&rule, extra_keys)?;
    rule.id = Uuid::new_v4().to_string();
    let mut tx = store.begin_write().await?;
    mappings::insert(&mut tx, &rule, RuleOrigin::Api)
        .await
        .map_err(conflict)?;
    crate::store::events::append(&mut tx, &mapping_event("created", &[&rule.id], &[])).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(rule = %rule.id, org = %rule.org_id, group = %rule.name, "mapping rule created");
    Ok(rule)
}

/// Replaces an API rule.
pub async fn update(
    store: &Store,
    rule: MappingRule,
    extra_keys: &[String],
) -> Result<MappingRule, MappingError> {
    check(&rule, extra_keys)?;
    let mut tx = store.begin_write().await?;
    let existing = mappings::get(&mut tx, &rule.id)
        .await?
        .ok_or_else(|| MappingError::NotFound(rule.id.clone()))?;
    if existing.origin == RuleOrigin::Config {
        return Err(MappingError::ConfigOwned(rule.id));
    }
    mappings::update(&mut tx, &rule, RuleOrigin::Api)
        .await
        .map_err(conflict)?;
    crate::store::events::append(
        &mut tx,
        &mapping_event("updated", &[&rule.id], &[&existing.rule]),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(rule = %rule.id, org = %rule.org_id, group = %rule.name, "mapping rule updated");
    Ok(rule)
}

/// Deletes an API rule.
pub async fn delete(store: &Store, id: &str) -> Result<(), MappingError> {
    let mut tx = store.begin_write().await?;
    let existing = mappings::get(&mut tx, id)
        .await?
        .ok_or_else(|| MappingError::NotFound(id.to_string()))?;
    if existing.origin == RuleOrigin::Config {
        return Err(MappingError::ConfigOwned(id.to_string()));
    }
    mappings::delete(&mut tx, id).await?;
    crate::store::events::append(&mut tx, &mapping_event("deleted", &[id], &[&existing.rule]))
        .await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(rule = %id, "mapping rule deleted");
    Ok(())
}

/// What making the store's config-owned rules equal to the config file's
/// rules would change; computed without writing (see [`config_rule_changes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigRuleChanges {
    pub inserted: Vec<MappingRule>,
    pub updated: Vec<MappingRule>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

impl ConfigRuleChanges {
    /// The rule table as it is after the changes: `existing` with updated
    /// rules replaced, removed ones dropped and inserted ones added.
    pub fn apply_to(&self, existing: &[StoredRule]) -> Vec<MappingRule> {
        existing
            .iter()
            .filter(|s| !self.removed.contains(&s.rule.id))
            .map(|s| {
                self.updated
                    .iter()
                    .find(|u| u.id == s.rule.id)
                    .unwrap_or(&s.rule)
                    .clone()
            })
            .chain(self.inserted.iter().cloned())
            .collect()
    }
}

/// The changes that make `existing`'s config-owned rules equal to the
/// config file's rules, validated as [`sync_config_rules`] validates them.
/// A rule new to the store gets its id from `new_id`. Pure: `plan` uses it
/// to see the config's rules without writing them.
pub fn config_rule_changes(
    existing: &[StoredRule],
    config: &MappingConfig,
    mut new_id: impl FnMut(&MappingRule) -> String,
) -> Result<ConfigRuleChanges, MappingError> {
    let wanted: Vec<MappingRule> = config.rules.iter().map(|r| r.to_rule()).collect();
    for rule in &wanted {
        check(rule, &config.extra_permission_keys)?;
    }
    let mut changes = ConfigRuleChanges::default();
    for mut rule in wanted {
        let current = existing
            .iter()
            .find(|s| s.rule.org_id == rule.org_id && s.rule.name == rule.name);
        match current {
            Some(stored) => {
                rule.id = stored.rule.id.clone();
                if stored.origin == RuleOrigin::Config && stored.rule == rule {
                    changes.unchanged += 1;
                } else {
                    changes.updated.push(rule);
                }
            }
            None => {
                rule.id = new_id(&rule);
                changes.inserted.push(rule);
            }
        }
    }
    for stored in existing.iter().filter(|s| s.origin == RuleOrigin::Config) {
        let kept = config
            .rules
            .iter()
            .any(|r| r.org_id == stored.rule.org_id && r.name == stored.rule.name);
        if !kept {
            changes.removed.push(stored.rule.id.clone());
        }
    }
    Ok(changes)
}

/// Makes the store's config-owned rules equal to the config file's rules.
/// Idempotent; writes an event only when something changed. Validate the
/// config first (`MappingConfig::validate`); invalid rules are refused here
/// too, and then nothing is changed.
pub async fn sync_config_rules(
    store: &Store,
    config: &MappingConfig,
) -> Result<ReloadReport, MappingError> {
    // Validated before the transaction opens: a bad rule writes nothing.
    config_rule_changes(&[], config, |_| String::new())?;
    let mut tx = store.begin_write().await?;
    let existing = mappings::list(&mut tx).await?;
    let changes = config_rule_changes(&existing, config, |_| Uuid::new_v4().to_string())?;
    let mut report = ReloadReport {
        unchanged: changes.unchanged,
        ..ReloadReport::default()
    };
    for rule in &changes.updated {
        mappings::update(&mut tx, rule, RuleOrigin::Config).await?;
        report.updated.push(rule.id.clone());
    }
    for rule in &changes.inserted {
        mappings::insert(&mut tx, rule, RuleOrigin::Config).await?;
        report.added.push(rule.id.clone());
    }
    for id in &changes.removed {
        mappings::delete(&mut tx, id).await?;
        report.removed.push(id.clone());
    }
    if report.changed() {
        let ids: Vec<&str> = report
            .added
            .iter()
            .chain(&report.updated)
            .chain(&report.removed)
            .map(String::as_str)
            .collect();
        let before: Vec<&MappingRule> = existing
            .iter()
            .map(|s| &s.rule)
            .filter(|r| ids.contains(&r.id.as_str()))
            .collect();
        crate::store::events::append(&mut tx, &mapping_event("config_reloaded", &ids, &before))
            .await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(
        added = report.added.len(),
        updated = report.updated.len(),
        removed = report.removed.len(),
        unchanged = report.unchanged,
        "mapping rules from the config file applied"
    );
    Ok(report)
}

/// The desired Tyk state as it would be once the config file's rules are
/// applied, read without writing anything (`tyk-idsync plan`, a dry run).
/// A config rule not yet in the store is shown with the id
/// `config:<org>/<name>` (the store assigns its real id when it is applied).
/// With `people`, only their users (lower-cased e-mails), as
/// [`load_desired_for`] returns them.
/// The rules as they would be once the config file's rules are applied
/// (`sync_config_rules`), merged in memory: nothing is written. New config
/// rules get `config:<org>/<name>` ids.
pub async fn rules_as_applied(
    conn: &mut sqlx::AnyConnection,
    config: &super::MappingConfig,
) -> Result<Vec<MappingRule>, MappingError> {
    let existing = mappings::list(conn).await?;
    let changes = config_rule_changes(&existing, config, |rule| {
        format!("config:{}/{}", rule.org_id, rule.name)
    })?;
    Ok(changes.apply_to(&existing))
}

pub async fn load_desired_dry_run(
    store: &Store,
    config: &super::MappingConfig,
    people: Option<&std::collections::BTreeSet<String>>,
) -> Result<crate::domain::DesiredState, MappingError> {
    let mut conn = store.acquire().await?;
    let identities = super::input::load_people(&mut conn).await?;
    let existing = mappings::list(&mut conn).await?;
    let changes = config_rule_changes(&existing, config, |rule| {
        format!("config:{}/{}", rule.org_id, rule.name)
    })?;
    let rules = changes.apply_to(&existing);
    let mut desired = super::resolve::desired_state(&identities, &rules, &config.resolve_options());
    if let Some(people) = people {
        desired.users.retain(|u| people.contains(&u.email));
    }
    Ok(desired)
}

/// `tyk-idsync mappings export`: every rule as a JSON array in the API
/// shape (ids included, so the output can be applied back).
pub async fn export(store: &Store) -> Result<String, MappingError> {
    let rules: Vec<MappingRule> = list(store).await?.into_iter().map(|s| s.rule).collect();
    serde_json::to_string_pretty(&rules).map_err(|e| MappingError::File {
        path: "-".into(),
        message: e.to_string(),
    })
}

/// `tyk-idsync mappings apply FILE`: upserts the rules of a JSON array (the
/// `export` format) by (org, name) as API rules. Rules not in the file are
/// kept. All rules are validated first; nothing is written if one is bad.
pub async fn apply_file(
    store: &Store,
    path: &Path,
    extra_keys: &[String],
) -> Result<ReloadReport, MappingError> {
    let file_error = |message: String| MappingError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let rules: Vec<MappingRule> =
        serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    for (index, rule) in rules.iter().enumerate() {
        let errors: Vec<RuleError> = rule
            .validate(extra_keys)
            .into_iter()
            .map(|e| RuleError::new(format!("[{index}].{}", e.field), e.message))
            .collect();
        if !errors.is_empty() {
            return Err(MappingError::Invalid(errors));
        }
    }
    let mut tx = store.begin_write().await?;
    let mut report = ReloadReport::default();
    let mut before = Vec::new();
    for mut rule in rules {
        match mappings::find_by_name(&mut tx, &rule.org_id, &rule.name).await? {
            Some(stored) if stored.origin == RuleOrigin::Config => {
                return Err(MappingError::ConfigOwned(stored.rule.id));
            }
            Some(stored) => {
                rule.id = stored.rule.id.clone();
                if stored.rule == rule {
                    report.unchanged += 1;
                } else {
                    mappings::update(&mut tx, &rule, RuleOrigin::Api)
                        .await
                        .map_err(conflict)?;
                    report.updated.push(rule.id);
                    before.push(stored.rule);
                }
            }
            None => {
                rule.id = Uuid::new_v4().to_string();
                mappings::insert(&mut tx, &rule, RuleOrigin::Api)
                    .await
                    .map_err(conflict)?;
                report.added.push(rule.id);
            }
        }
    }
    if report.changed() {
        let ids: Vec<&str> = report
            .added
            .iter()
            .chain(&report.updated)
            .map(String::as_str)
            .collect();
        crate::store::events::append(
            &mut tx,
            &mapping_event("applied", &ids, &before.iter().collect::<Vec<_>>()),
        )
        .await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(report)
}

/// The desired Tyk state right now: every identity in the store, resolved
/// through the stored rules with the configured options.
pub async fn load_desired(
    store: &Store,
    config: &super::MappingConfig,
) -> Result<crate::domain::DesiredState, MappingError> {
    let mut conn = store.acquire().await?;
    let people = super::input::load_people(&mut conn).await?;
    let rules = crate::store::mappings::list_rules(&mut conn).await?;
    Ok(super::resolve::desired_state(
        &people,
        &rules,
        &config.resolve_options(),
    ))
}

/// The desired Tyk state of these people only (lower-cased e-mails): their
/// identities in every source found through the e-mail index, their groups
/// (nested ones too) through the membership index, resolved with every
/// rule. Equal to [`load_desired`] restricted to these people; `groups` is
/// every rule's group, as there.
pub async fn load_desired_for(
    store: &Store,
    config: &super::MappingConfig,
    emails: &std::collections::BTreeSet<String>,
) -> Result<crate::domain::DesiredState, MappingError> {
    let mut conn = store.acquire().await?;
    let people = crate::store::sync_scope::identities_with_groups(&mut conn, emails)
        .await?
        .into_iter()
        .map(|(user, groups)| super::resolve::PersonIdentity {
            source: user.source,
            user_name: user.user_name,
            email: user.email,
            given_name: user.given_name,
            family_name: user.family_name,
            display_name: user.display_name,
            active: user.active,
            groups,
        })
        .collect::<Vec<_>>();
    let rules = crate::store::mappings::list_rules(&mut conn).await?;
    Ok(super::resolve::desired_state(
        &people,
        &rules,
        &config.resolve_options(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_rules: &str) -> MappingConfig {
        toml::from_str(toml_rules).expect("mapping config")
    }

    fn stored(id: &str, name: &str, origin: RuleOrigin) -> StoredRule {
        let mut rule = config(&format!(
            "[[rules]]\norg_id = \"o\"\nname = \"{name}\"\nmappings_sso = [\"okta:{name}\"]\n\
             permissions = {{ apis = \"read\" }}\n"
        ))
        .rules[0]
            .to_rule();
        rule.id = id.into();
        StoredRule { rule, origin }
    }

    #[test]
    fn config_rules_merge_in_memory_as_a_reload_would_apply_them() {
        let existing = [
            stored("api-1", "Readers", RuleOrigin::Api),
            stored("cfg-1", "Gone", RuleOrigin::Config),
            stored("api-2", "Taken Over", RuleOrigin::Api),
        ];
        let file = config(
            "[[rules]]\norg_id = \"o\"\nname = \"New\"\nmappings_sso = [\"okta:New\"]\n\
             permissions = { apis = \"write\" }\n\
             [[rules]]\norg_id = \"o\"\nname = \"Taken Over\"\nmappings_sso = [\"okta:Taken Over\"]\n\
             permissions = { apis = \"read\" }\n",
        );
        let changes =
            config_rule_changes(&existing, &file, |r| format!("new:{}", r.name)).expect("valid");
        assert_eq!(changes.removed, vec!["cfg-1".to_string()]);
        let inserted: Vec<_> = changes.inserted.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(inserted, vec!["new:New"]);
        // The API rule of the same (org, name) is taken over, keeping its id.
        let updated: Vec<_> = changes.updated.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(updated, vec!["api-2"]);
        let mut ids: Vec<_> = changes
            .apply_to(&existing)
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["api-1", "api-2", "new:New"]);
    }

    #[test]
    fn an_invalid_config_rule_is_refused_in_memory_too() {
        let file = config(
            "[[rules]]\norg_id = \"o\"\nname = \"Admins\"\nmappings_sso = [\"okta:x\"]\n\
             permissions = { IsAdmin = \"admin\" }\n",
        );
        assert!(matches!(
            config_rule_changes(&[], &file, |_| String::new()),
            Err(MappingError::Invalid(_))
        ));
    }
}

//! One poll of one source: read, diff against the store, guard, apply in
//! one transaction. Users only for now (groups and memberships: TODO).

use secrecy::SecretString;

use super::apply::apply_user_changes;
use super::client::LdapClient;
use super::config::LdapSourceConfig;
use super::diff::{Held, check_removals, diff_users};
use super::error::LdapError;
use super::translate::translate;
use crate::domain::SourceName;
use crate::store::{Store, identities};

/// Full polls may delete; incremental ones never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollKind {
    Full,
    Incremental,
}

/// What a poll did.
#[derive(Debug, Clone, PartialEq)]
pub struct PollReport {
    pub users_read: usize,
    pub changes: usize,
    /// Set when the mass-removal guard held the poll: nothing was applied.
    pub held: Option<Held>,
}

/// Polls `source` once. `force` bypasses the mass-removal guard (operator
/// approval). Any LDAP error fails the poll before anything is written.
pub async fn run_once(
    store: &Store,
    source: &SourceName,
    cfg: &LdapSourceConfig,
    password: &SecretString,
    kind: PollKind,
    force: bool,
) -> Result<PollReport, LdapError> {
    let mut client = LdapClient::connect(cfg, password).await?;
    let attrs = user_attributes(cfg);
    let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
    let entries = client
        .search_all(&cfg.user_base, &cfg.user_scope, &cfg.user_filter, &attrs)
        .await?;
    client.close().await;
    let snapshot = translate(cfg, &entries, &[]);
    let found: Vec<_> = snapshot.users.into_values().collect();
    let store_err = |e: crate::store::StoreError| LdapError::Config(format!("store: {e}"));
    let mut tx = store.begin().await.map_err(store_err)?;
    let stored = identities::list_users(&mut tx, source)
        .await
        .map_err(store_err)?;
    let changes = diff_users(&stored, &found, kind == PollKind::Full);
    let guard = check_removals(
        &changes,
        stored.len(),
        cfg.max_removal_percent,
        cfg.max_removal_min,
    );
    let mut report = PollReport {
        users_read: found.len(),
        changes: changes.len(),
        held: None,
    };
    if let (Err(held), false) = (guard, force) {
        tracing::warn!(source = %source, removals = held.removals, stored = held.stored, "LDAP poll held by the mass-removal guard");
        report.held = Some(held);
        return Ok(report);
    }
    apply_user_changes(&mut tx, source, &stored, &changes)
        .await
        .map_err(store_err)?;
    tx.commit().await.map_err(|e| store_err(e.into()))?;
    Ok(report)
}

fn user_attributes(cfg: &LdapSourceConfig) -> Vec<String> {
    let mut attrs = vec![
        cfg.id_attribute.clone(),
        cfg.login_attribute.clone(),
        cfg.mail_attribute.clone(),
        cfg.given_name_attribute.clone(),
        cfg.family_name_attribute.clone(),
        cfg.display_name_attribute.clone(),
        "cn".into(),
        "memberOf".into(),
        "nsAccountLock".into(),
        "pwdAccountLockedTime".into(),
        "userAccountControl".into(),
    ];
    attrs.dedup();
    attrs
}

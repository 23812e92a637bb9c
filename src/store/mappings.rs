//! Persistence of mapping rules (`mapping_rules`). JSON columns hold the
//! `mappingsSSO` list and the permission map; `origin` says who owns a rule.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::StoreError;
use crate::domain::Timestamp;
use crate::mapping::MappingRule;

/// Who owns a rule: the config file (replaced on reload) or the admin
/// API / CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleOrigin {
    Config,
    Api,
}

impl RuleOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleOrigin::Config => "config",
            RuleOrigin::Api => "api",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "config" => Some(RuleOrigin::Config),
            "api" => Some(RuleOrigin::Api),
            _ => None,
        }
    }
}

/// A stored rule and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    pub rule: MappingRule,
    pub origin: RuleOrigin,
}

const COLUMNS: &str = "id, org_id, name, description, priority, mappings_sso, permissions, origin";

fn rule_from_row(row: &AnyRow) -> Result<StoredRule, StoreError> {
    let sso: String = row.try_get("mappings_sso")?;
    let permissions: String = row.try_get("permissions")?;
    let origin: String = row.try_get("origin")?;
    let corrupt = |what: &str, e: serde_json::Error| StoreError::Corrupt(format!("{what}: {e}"));
    Ok(StoredRule {
        rule: MappingRule {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            priority: row.try_get("priority")?,
            mappings_sso: serde_json::from_str(&sso).map_err(|e| corrupt("mappings_sso", e))?,
            permissions: serde_json::from_str(&permissions)
                .map_err(|e| corrupt("permissions", e))?,
        },
        origin: RuleOrigin::parse(&origin)
            .ok_or_else(|| StoreError::Corrupt(format!("bad rule origin {origin:?}")))?,
    })
}

/// Every rule without its origin, ordered by (org, name): what the
/// mapping resolves with.
pub async fn list_rules(conn: &mut AnyConnection) -> Result<Vec<MappingRule>, StoreError> {
    Ok(list(conn).await?.into_iter().map(|s| s.rule).collect())
}

/// Every rule, ordered by (org, name).
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<StoredRule>, StoreError> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM mapping_rules ORDER BY org_id, name"
    ))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(rule_from_row)
    .collect()
}

pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<StoredRule>, StoreError> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM mapping_rules WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(rule_from_row)
    .transpose()
}

pub async fn find_by_name(
    conn: &mut AnyConnection,
    org_id: &str,
    name: &str,
) -> Result<Option<StoredRule>, StoreError> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM mapping_rules WHERE org_id = $1 AND name = $2"
    ))
    .bind(org_id)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(rule_from_row)
    .transpose()
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Inserts a rule; a second rule for the same (org, name) is a conflict.
pub async fn insert(
    conn: &mut AnyConnection,
    rule: &MappingRule,
    origin: RuleOrigin,
) -> Result<(), StoreError> {
    let now = Timestamp::now().0;
    let result = sqlx::query(
        "INSERT INTO mapping_rules (id, org_id, name, description, priority, mappings_sso, \
         permissions, origin, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&rule.id)
    .bind(&rule.org_id)
    .bind(&rule.name)
    .bind(rule.description.as_deref())
    .bind(rule.priority)
    .bind(to_json(&rule.mappings_sso)?)
    .bind(to_json(&rule.permissions)?)
    .bind(origin.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await;
    match result.map_err(StoreError::from) {
        Err(e) if e.is_unique_violation() => Err(StoreError::Conflict {
            entity: "mapping rule",
            detail: format!(
                "org {:?} already has a rule for group {:?}",
                rule.org_id, rule.name
            ),
        }),
        other => other.map(|_| ()),
    }
}

/// Replaces every field of the rule with `rule.id`, and its origin.
pub async fn update(
    conn: &mut AnyConnection,
    rule: &MappingRule,
    origin: RuleOrigin,
) -> Result<(), StoreError> {
    let result = sqlx::query(
        "UPDATE mapping_rules SET org_id = $2, name = $3, description = $4, priority = $5, \
         mappings_sso = $6, permissions = $7, origin = $8, updated_at = $9 WHERE id = $1",
    )
    .bind(&rule.id)
    .bind(&rule.org_id)
    .bind(&rule.name)
    .bind(rule.description.as_deref())
    .bind(rule.priority)
    .bind(to_json(&rule.mappings_sso)?)
    .bind(to_json(&rule.permissions)?)
    .bind(origin.as_str())
    .bind(Timestamp::now().0)
    .execute(&mut *conn)
    .await;
    match result.map_err(StoreError::from) {
        Err(e) if e.is_unique_violation() => Err(StoreError::Conflict {
            entity: "mapping rule",
            detail: format!(
                "org {:?} already has a rule for group {:?}",
                rule.org_id, rule.name
            ),
        }),
        Err(e) => Err(e),
        Ok(done) if done.rows_affected() == 0 => Err(StoreError::NotFound("mapping rule")),
        Ok(_) => Ok(()),
    }
}

/// Deletes a rule; returns whether it existed.
pub async fn delete(conn: &mut AnyConnection, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM mapping_rules WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

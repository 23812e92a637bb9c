//! The once-only re-key after the migrations: recomputes every folded
//! comparison key with [`fold_key`] in Rust, because a migration (SQL) can
//! only `lower()`, which neither normalises Unicode nor case-folds
//! (`Straße` and `STRASSE`, `José` in NFC and NFD, full-width letters).
//!
//! Keys recomputed: `identity_users.user_name_lc`,
//! `identity_groups.display_name_lc`, `identity_users.email` (the primary
//! e-mail's join key; an address that is not one becomes `NULL` with its
//! `email_problem`), `identity_user_emails.value_lc`, and the e-mails of
//! `sync_managed_users` and `sync_pending_creates`.
//!
//! Rows of one scope (a source, or a Tyk org) that fold to the same key
//! are the look-alikes this change makes impossible from now on; existing
//! ones are not dropped or merged, which would lose data or change who is
//! who in Tyk. Both are kept: the row already holding the key (or else the
//! first by id) gets it, the others keep their old lower-cased key, and each
//! collision is logged at WARN naming the rows and recorded in the settings
//! row that marks the step as done (`identity_keys_folded_v1`), so an
//! operator can find it later. New writes of such a name are then refused
//! as duplicates.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use super::identities::email_index_keys;
use super::{Store, StoreError, settings};
use crate::domain::{EmailProblem, fold_key, primary_email};

/// The settings row that marks the re-key as done; its value is the
/// [`RekeyReport`] as JSON.
pub const REKEY_SETTING: &str = "identity_keys_folded_v1";

/// What the re-key changed, and the look-alikes it found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RekeyReport {
    /// Rows whose key changed (all tables together).
    pub rekeyed: u64,
    /// Users whose primary e-mail turned out not to be an address.
    pub invalid_emails: u64,
    /// One line per set of rows that fold to the same key in one scope.
    pub collisions: Vec<String>,
}

/// Runs the re-key unless it already ran; returns its report when it ran.
///
/// A database without any row to re-key is left untouched (no marker):
/// everything written from now on is keyed by this code already, and an
/// empty database stays empty, as `migrate-store` needs its target to be.
pub(super) async fn rekey_folded(store: &Store) -> Result<Option<RekeyReport>, StoreError> {
    let mut tx = store.begin_write().await?;
    if settings::get(&mut tx, REKEY_SETTING).await?.is_some() || nothing_to_rekey(&mut tx).await? {
        // Ended here, not by drop: a dropped transaction is rolled back
        // later, on the connection's return to the pool, while the write
        // lock it took (BEGIN IMMEDIATE) makes the next writer's upgrade
        // from a read fail at once with "database is locked".
        tx.commit().await?;
        return Ok(None);
    }
    let report = rekey_all(&mut tx).await?;
    let json = serde_json::to_string(&report)
        .map_err(|e| StoreError::Corrupt(format!("re-key report: {e}")))?;
    settings::set(&mut tx, REKEY_SETTING, &json).await?;
    tx.commit().await?;
    if report.rekeyed > 0 || !report.collisions.is_empty() {
        tracing::info!(
            rekeyed = report.rekeyed,
            invalid_emails = report.invalid_emails,
            collisions = report.collisions.len(),
            "identity keys re-folded (Unicode NFKC and case folding)"
        );
    }
    Ok(Some(report))
}

/// The look-alike collisions the re-key found (empty before it ran).
pub async fn fold_collisions(conn: &mut AnyConnection) -> Result<Vec<String>, StoreError> {
    Ok(settings::get(conn, REKEY_SETTING)
        .await?
        .and_then(|json| serde_json::from_str::<RekeyReport>(&json).ok())
        .map(|r| r.collisions)
        .unwrap_or_default())
}

async fn nothing_to_rekey(conn: &mut AnyConnection) -> Result<bool, StoreError> {
    for table in [
        "identity_users",
        "identity_groups",
        "sync_managed_users",
        "sync_pending_creates",
    ] {
        let sql = format!("SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT 1) AS any_row");
        let rows: i64 = sqlx::query_scalar(&sql).fetch_one(&mut *conn).await?;
        if rows > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn rekey_all(conn: &mut AnyConnection) -> Result<RekeyReport, StoreError> {
    let mut report = RekeyReport::default();
    for key in [
        UniqueKey {
            table: "identity_users",
            scope: "source",
            value: "user_name",
            key: "user_name_lc",
            label: "id",
        },
        UniqueKey {
            table: "identity_groups",
            scope: "source",
            value: "display_name",
            key: "display_name_lc",
            label: "id",
        },
        UniqueKey {
            table: "sync_managed_users",
            scope: "org_id",
            value: "email",
            key: "email",
            label: "tyk_user_id",
        },
        UniqueKey {
            table: "sync_pending_creates",
            scope: "org_id",
            value: "email",
            key: "email",
            label: "email",
        },
    ] {
        rekey_unique(conn, &key, &mut report).await?;
    }
    rekey_primary_emails(conn, &mut report).await?;
    rekey_email_index(conn, &mut report).await?;
    Ok(report)
}

/// A key column unique per scope, and the column it is computed from.
struct UniqueKey {
    table: &'static str,
    scope: &'static str,
    value: &'static str,
    key: &'static str,
    /// What names a row in a WARN.
    label: &'static str,
}

struct KeyedRow {
    scope: String,
    value: String,
    old: String,
    label: String,
}

async fn rekey_unique(
    conn: &mut AnyConnection,
    k: &UniqueKey,
    report: &mut RekeyReport,
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT {scope}, {value}, {key}, {label} FROM {table} ORDER BY {scope}, {label}",
        scope = k.scope,
        value = k.value,
        key = k.key,
        label = k.label,
        table = k.table
    );
    let mut groups: BTreeMap<(String, String), Vec<KeyedRow>> = BTreeMap::new();
    for row in sqlx::query(&sql).fetch_all(&mut *conn).await? {
        let row = KeyedRow {
            scope: row.try_get(0)?,
            value: row.try_get(1)?,
            old: row.try_get(2)?,
            label: row.try_get(3)?,
        };
        groups
            .entry((row.scope.clone(), fold_key(&row.value)))
            .or_default()
            .push(row);
    }
    let update = format!(
        "UPDATE {table} SET {key} = $1 WHERE {scope} = $2 AND {key} = $3",
        table = k.table,
        key = k.key,
        scope = k.scope
    );
    for ((scope, new), rows) in groups {
        // The row already holding the key keeps it (no other row can take
        // it); otherwise the first by label does.
        let keeper = rows.iter().position(|r| r.old == new).unwrap_or(0);
        if rows.len() > 1 {
            let names: Vec<String> = rows
                .iter()
                .map(|r| format!("{}={} ({:?})", k.label, r.label, r.value))
                .collect();
            let line = format!(
                "{} {}={scope:?}: {} fold to the same key {new:?}; kept all, {}={} holds the key",
                k.table,
                k.scope,
                names.join(", "),
                k.label,
                rows[keeper].label
            );
            tracing::warn!(collision = %line, "look-alike names found while re-keying");
            report.collisions.push(line);
        }
        let row = &rows[keeper];
        if row.old != new {
            sqlx::query(&update)
                .bind(&new)
                .bind(&row.scope)
                .bind(&row.old)
                .execute(&mut *conn)
                .await?;
            report.rekeyed += 1;
        }
    }
    Ok(())
}

async fn rekey_primary_emails(
    conn: &mut AnyConnection,
    report: &mut RekeyReport,
) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT id, email, email_problem FROM identity_users WHERE email IS NOT NULL ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let id: String = row.try_get(0)?;
        let old: Option<String> = row.try_get(1)?;
        let old_problem: Option<String> = row.try_get(2)?;
        let (email, problem) = primary_email(old.as_deref());
        if email != old || problem.map(EmailProblem::as_str) != old_problem.as_deref() {
            sqlx::query("UPDATE identity_users SET email = $1, email_problem = $2 WHERE id = $3")
                .bind(email)
                .bind(problem.map(EmailProblem::as_str))
                .bind(&id)
                .execute(&mut *conn)
                .await?;
            report.rekeyed += 1;
            if let Some(problem) = problem {
                tracing::warn!(user_id = %id, problem = problem.as_str(),
                    "stored primary e-mail is not an address: the user is not provisioned");
                report.invalid_emails += 1;
            }
        }
    }
    Ok(())
}

async fn rekey_email_index(
    conn: &mut AnyConnection,
    report: &mut RekeyReport,
) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT user_id, value_lc FROM identity_user_emails ORDER BY user_id")
        .fetch_all(&mut *conn)
        .await?;
    let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        by_user
            .entry(row.try_get(0)?)
            .or_default()
            .push(row.try_get(1)?);
    }
    for (user_id, values) in by_user {
        let keys = email_index_keys(&values);
        let old: BTreeSet<&String> = values.iter().collect();
        if old == keys.iter().collect::<BTreeSet<_>>() {
            continue;
        }
        sqlx::query("DELETE FROM identity_user_emails WHERE user_id = $1")
            .bind(&user_id)
            .execute(&mut *conn)
            .await?;
        for key in keys {
            sqlx::query("INSERT INTO identity_user_emails (user_id, value_lc) VALUES ($1, $2)")
                .bind(&user_id)
                .bind(key)
                .execute(&mut *conn)
                .await?;
        }
        report.rekeyed += 1;
    }
    Ok(())
}

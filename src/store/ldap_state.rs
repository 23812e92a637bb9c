//! Poll bookkeeping of each LDAP source (`ldap_poll_state`): drives the
//! full/incremental choice and the `since` of incremental polls, and is
//! what the admin status and metrics report.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::StoreError;
use crate::domain::{SourceName, Timestamp};

/// The stored state of one source.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PollState {
    /// Successful polls since the last successful full poll.
    pub polls_since_full: i64,
    /// Start of the last successful poll (incremental polls read from here).
    pub last_started_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    pub last_full_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
    /// Set while a poll is held (the mass-removal guard, an empty read):
    /// the held report's `kind` and why.
    pub held: Option<serde_json::Value>,
    /// A full poll failed: the next poll is full.
    pub full_pending: bool,
    pub last_report: Option<serde_json::Value>,
}

fn json(text: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

fn from_row(row: &AnyRow) -> Result<PollState, StoreError> {
    let ts = |name: &str| -> Result<Option<Timestamp>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(Timestamp))
    };
    Ok(PollState {
        polls_since_full: row.try_get("polls_since_full")?,
        last_started_at: ts("last_started_at")?,
        last_success_at: ts("last_success_at")?,
        last_full_at: ts("last_full_at")?,
        last_error: row.try_get("last_error")?,
        last_error_at: ts("last_error_at")?,
        held: json(row.try_get("held")?)?,
        full_pending: row.try_get::<i64, _>("full_pending")? != 0,
        last_report: json(row.try_get("last_report")?)?,
    })
}

pub async fn get(
    conn: &mut AnyConnection,
    source: &SourceName,
) -> Result<Option<PollState>, StoreError> {
    sqlx::query(
        "SELECT polls_since_full, last_started_at, last_success_at, last_full_at, last_error, \
         last_error_at, held, full_pending, last_report FROM ldap_poll_state WHERE source = $1",
    )
    .bind(source.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Each source's last successful poll (sources that never succeeded are
/// left out).
pub async fn last_successes(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, Timestamp)>, StoreError> {
    let rows = sqlx::query(
        "SELECT source, last_success_at FROM ldap_poll_state \
         WHERE last_success_at IS NOT NULL ORDER BY source",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("source")?,
                Timestamp(row.try_get("last_success_at")?),
            ))
        })
        .collect()
}

pub async fn put(
    conn: &mut AnyConnection,
    source: &SourceName,
    state: &PollState,
) -> Result<(), StoreError> {
    let text = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    sqlx::query(
        "INSERT INTO ldap_poll_state (source, polls_since_full, last_started_at, \
         last_success_at, last_full_at, last_error, last_error_at, held, last_report, updated_at, \
         full_pending) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (source) DO UPDATE SET polls_since_full = $2, last_started_at = $3, \
         last_success_at = $4, last_full_at = $5, last_error = $6, last_error_at = $7, \
         held = $8, last_report = $9, updated_at = $10, full_pending = $11",
    )
    .bind(source.as_str())
    .bind(state.polls_since_full)
    .bind(state.last_started_at.map(|t| t.0))
    .bind(state.last_success_at.map(|t| t.0))
    .bind(state.last_full_at.map(|t| t.0))
    .bind(state.last_error.as_deref())
    .bind(state.last_error_at.map(|t| t.0))
    .bind(text(&state.held))
    .bind(text(&state.last_report))
    .bind(Timestamp::now().0)
    .bind(i64::from(state.full_pending))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

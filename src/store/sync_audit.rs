//! The audit log: one entry per applied (or failed) sync step — who, what,
//! before/after, the triggering events and the mapping rule.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::StoreError;
use super::identities::parse_uuid;
use crate::domain::Timestamp;

/// An entry to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    pub run_id: Option<Uuid>,
    pub at: Timestamp,
    /// `sync`, `cli:approve`, `api:approve:<who>`…
    pub actor: String,
    /// [`crate::sync::PlanStep::kind`].
    pub step_kind: String,
    pub org_id: String,
    pub email: Option<String>,
    /// Tyk user or group id the step changed, when known.
    pub tyk_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub event_seqs: Vec<i64>,
    pub rule: Option<String>,
    pub ok: bool,
    pub message: Option<String>,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    /// The identity source(s) of the person, comma-separated, as the
    /// identities said when the row was written (absent: not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
}

/// Which entries to list; `None` fields do not filter. Newest first, paged
/// with `before_id` (the smallest id of the previous page).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub run_id: Option<Uuid>,
    pub email: Option<String>,
    pub org_id: Option<String>,
    pub step_kind: Option<String>,
    /// Rows about a person of this identity source.
    #[serde(default)]
    pub source: Option<String>,
    pub since: Option<Timestamp>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

fn json_text(value: &Option<serde_json::Value>) -> Option<String> {
    value.as_ref().map(|v| v.to_string())
}

fn parse_json(text: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("bad audit JSON: {e}")))
    })
    .transpose()
}

/// The identity sources of the people with these e-mails (folded), each
/// person's comma-separated and sorted; people without identities are
/// absent.
async fn sources_of(
    conn: &mut AnyConnection,
    emails: impl IntoIterator<Item = &str>,
) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
    let emails: Vec<String> = emails
        .into_iter()
        .map(crate::domain::fold_key)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut sources: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for chunk in emails.chunks(super::bulk::rows_per_statement(conn, 1)) {
        let sql = format!(
            "SELECT DISTINCT email, source FROM identity_users WHERE email IN ({})",
            super::bulk::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (String, String)>(&sql);
        for email in chunk {
            query = query.bind(email.as_str());
        }
        for (email, source) in query.fetch_all(&mut *conn).await? {
            sources.entry(email).or_default().insert(source);
        }
    }
    Ok(sources
        .into_iter()
        .map(|(email, list)| (email, list.into_iter().collect::<Vec<_>>().join(",")))
        .collect())
}

/// The `sync_audit` columns an append writes, in the order
/// [`bind_entry`] binds them.
const AUDIT_COLUMNS: &str = "run_id, at, actor, step_kind, org_id, email, tyk_id, \
     before_json, after_json, event_seqs, rule, result, message, source";

/// Binds an entry's [`AUDIT_COLUMNS`] (14 parameters), `source` last.
fn bind_entry<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    entry: &NewAuditEntry,
    source: Option<String>,
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    query
        .bind(entry.run_id.map(|id| id.to_string()))
        .bind(entry.at.0)
        .bind(entry.actor.clone())
        .bind(entry.step_kind.clone())
        .bind(entry.org_id.clone())
        .bind(entry.email.clone())
        .bind(entry.tyk_id.clone())
        .bind(json_text(&entry.before))
        .bind(json_text(&entry.after))
        .bind(serde_json::to_string(&entry.event_seqs).unwrap_or_else(|_| "[]".into()))
        .bind(entry.rule.clone())
        .bind(if entry.ok { "ok" } else { "error" })
        .bind(entry.message.clone())
        .bind(source)
}

/// An entry's person's sources, from what [`sources_of`] read.
fn source_of(
    entry: &NewAuditEntry,
    sources: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    let email = crate::domain::fold_key(entry.email.as_deref()?);
    sources.get(&email).cloned()
}

pub async fn append(conn: &mut AnyConnection, entry: &NewAuditEntry) -> Result<i64, StoreError> {
    let sources = sources_of(conn, entry.email.as_deref()).await?;
    let sql = format!(
        "INSERT INTO sync_audit ({AUDIT_COLUMNS}) VALUES {} RETURNING id",
        super::bulk::values_after(0, 1, 14)
    );
    let (id,): (i64,) = bind_entry(sqlx::query_as(&sql), entry, source_of(entry, &sources))
        .fetch_one(&mut *conn)
        .await?;
    Ok(id)
}

/// Appends entries in multi-row statements (call it on a transaction),
/// their people's sources read in one query: the same rows as
/// [`append`] for each.
pub async fn append_many(
    conn: &mut AnyConnection,
    entries: &[NewAuditEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let sources = sources_of(conn, entries.iter().filter_map(|e| e.email.as_deref())).await?;
    for chunk in entries.chunks(super::bulk::rows_per_statement(conn, 14)) {
        let sql = format!(
            "INSERT INTO sync_audit ({AUDIT_COLUMNS}) VALUES {} RETURNING id",
            super::bulk::values_after(0, chunk.len(), 14)
        );
        let mut query = sqlx::query_as::<_, (i64,)>(&sql);
        for entry in chunk {
            query = bind_entry(query, entry, source_of(entry, &sources));
        }
        query.fetch_all(&mut *conn).await?;
    }
    Ok(())
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let run_id: Option<String> = row.try_get("run_id")?;
    let seqs: String = row.try_get("event_seqs")?;
    let result: String = row.try_get("result")?;
    Ok(AuditEntry {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        entry: NewAuditEntry {
            run_id: run_id.as_deref().map(parse_uuid).transpose()?,
            at: Timestamp(row.try_get("at")?),
            actor: row.try_get("actor")?,
            step_kind: row.try_get("step_kind")?,
            org_id: row.try_get("org_id")?,
            email: row.try_get("email")?,
            tyk_id: row.try_get("tyk_id")?,
            before: parse_json(row.try_get("before_json")?)?,
            after: parse_json(row.try_get("after_json")?)?,
            event_seqs: serde_json::from_str(&seqs)
                .map_err(|e| StoreError::Corrupt(format!("bad audit event_seqs: {e}")))?,
            rule: row.try_get("rule")?,
            ok: result == "ok",
            message: row.try_get("message")?,
        },
    })
}

pub async fn list(
    conn: &mut AnyConnection,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, StoreError> {
    sqlx::query(
        "SELECT id, run_id, at, actor, step_kind, org_id, email, tyk_id, before_json, \
         after_json, event_seqs, rule, result, message, source FROM sync_audit \
         WHERE (CAST($1 AS TEXT) IS NULL OR run_id = CAST($1 AS TEXT)) \
         AND (CAST($2 AS TEXT) IS NULL OR email = CAST($2 AS TEXT)) \
         AND (CAST($3 AS TEXT) IS NULL OR org_id = CAST($3 AS TEXT)) \
         AND (CAST($4 AS TEXT) IS NULL OR step_kind = CAST($4 AS TEXT)) \
         AND (CAST($5 AS BIGINT) IS NULL OR at >= CAST($5 AS BIGINT)) \
         AND (CAST($6 AS BIGINT) IS NULL OR id < CAST($6 AS BIGINT)) \
         AND (CAST($7 AS TEXT) IS NULL OR ',' || source || ',' LIKE CAST($7 AS TEXT) ESCAPE '\\') \
         ORDER BY id DESC LIMIT $8",
    )
    .bind(filter.run_id.map(|id| id.to_string()))
    .bind(filter.email.as_deref().map(crate::domain::fold_key))
    .bind(filter.org_id.as_deref())
    .bind(filter.step_kind.as_deref())
    .bind(filter.since.map(|t| t.0))
    .bind(filter.before_id)
    .bind(filter.source.as_deref().map(|s| {
        let escaped = s
            .trim()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%,{escaped},%")
    }))
    .bind(filter.limit.clamp(1, 1000))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(entry_from_row)
    .collect()
}

/// How many intents one `INSERT` records (4 parameters each).
pub const INTENTS_PER_STATEMENT: usize = 100;

/// Records the audit entries of steps whose Tyk writes are about to be
/// sent (before any request); returns their ids, for [`close_intents`].
/// A person's few steps are one statement, atomic on its own: one round
/// trip before their first request rather than a transaction of three.
/// More than [`INTENTS_PER_STATEMENT`] take several statements: call it
/// inside a transaction from [`Store::begin`] then.
///
/// [`Store::begin`]: super::Store::begin
pub async fn record_intents(
    conn: &mut AnyConnection,
    entries: &[NewAuditEntry],
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(entries.len());
    for chunk in entries.chunks(INTENTS_PER_STATEMENT) {
        ids.extend(
            insert_intents(conn, chunk)
                .await?
                .into_iter()
                .map(|(id, ..)| id),
        );
    }
    Ok(ids)
}

/// One multi-row `INSERT … RETURNING`: each intent's id with the (org,
/// e-mail) it names (the order of the rows returned does not matter).
async fn insert_intents(
    conn: &mut AnyConnection,
    entries: &[NewAuditEntry],
) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
    if entries.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!(
        "INSERT INTO sync_audit_intents (at, org_id, email, entry_json) VALUES {} \
         RETURNING id, org_id, email",
        super::bulk::values_after(0, entries.len(), 4)
    );
    let mut query = sqlx::query_as::<_, (i64, String, Option<String>)>(&sql);
    for entry in entries {
        let json = serde_json::to_string(entry)
            .map_err(|e| StoreError::Corrupt(format!("audit intent: {e}")))?;
        query = query
            .bind(entry.at.0)
            .bind(entry.org_id.clone())
            .bind(entry.email.clone())
            .bind(json);
    }
    Ok(query.fetch_all(&mut *conn).await?)
}

/// Records intents like [`record_intents`] (call it on a transaction) and
/// returns each one's id with the (org, e-mail) it names, so the intents
/// of many people can be recorded at once and closed person by person.
pub async fn record_intents_of_people(
    conn: &mut AnyConnection,
    entries: &[NewAuditEntry],
) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
    let mut recorded = Vec::with_capacity(entries.len());
    for chunk in entries.chunks(super::bulk::rows_per_statement(conn, 4)) {
        recorded.extend(insert_intents(conn, chunk).await?);
    }
    Ok(recorded)
}

/// Drops intents whose steps' results are in the audit log.
pub async fn close_intents(conn: &mut AnyConnection, ids: &[i64]) -> Result<(), StoreError> {
    for chunk in ids.chunks(500) {
        let sql = format!(
            "DELETE FROM sync_audit_intents WHERE id IN ({})",
            super::bulk::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Intents left open (by runs abandoned between a request and its
/// result), oldest first, up to `limit`.
pub async fn open_intents(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<(i64, NewAuditEntry)>, StoreError> {
    let rows = sqlx::query("SELECT id, entry_json FROM sync_audit_intents ORDER BY id LIMIT $1")
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            let json: String = row.try_get("entry_json")?;
            let entry = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("bad audit intent: {e}")))?;
            Ok((row.try_get("id")?, entry))
        })
        .collect()
}

/// Open intents with an id above `after`, oldest first, up to `limit`
/// (a resolving pass pages with it past the intents it leaves open).
pub async fn open_intents_after(
    conn: &mut AnyConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, NewAuditEntry)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, entry_json FROM sync_audit_intents WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let json: String = row.try_get("entry_json")?;
            let entry = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("bad audit intent: {e}")))?;
            Ok((row.try_get("id")?, entry))
        })
        .collect()
}

/// Drops an open intent without an audit row (its step's result is in the
/// audit log already).
pub async fn drop_intent(conn: &mut AnyConnection, intent_id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sync_audit_intents WHERE id = $1")
        .bind(intent_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether an `ok` `create_user` row for this person and Tyk user was
/// appended at or after `since` (a creation audited already, e.g. resumed
/// after its answer was lost).
pub async fn creation_audited_since(
    conn: &mut AnyConnection,
    org_id: &str,
    email: &str,
    tyk_id: &str,
    since: Timestamp,
) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM sync_audit WHERE email = $1 AND org_id = $2 AND tyk_id = $3 \
         AND step_kind = 'create_user' AND result = 'ok' AND at >= $4 LIMIT 1",
    )
    .bind(email)
    .bind(org_id)
    .bind(tyk_id)
    .bind(since.0)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

/// Appends the audit entry that resolves an open intent and drops the
/// intent. Call it inside a transaction from [`Store::begin_write`]: the
/// intent is then resolved exactly once.
///
/// [`Store::begin_write`]: super::Store::begin_write
pub async fn resolve_intent(
    tx: &mut AnyConnection,
    intent_id: i64,
    entry: &NewAuditEntry,
) -> Result<(), StoreError> {
    let removed = sqlx::query("DELETE FROM sync_audit_intents WHERE id = $1")
        .bind(intent_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed == 1 {
        append(tx, entry).await?;
    }
    Ok(())
}

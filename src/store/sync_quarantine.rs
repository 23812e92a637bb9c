//! People the sync stopped trying (see `sync::quarantine`): Tyk refused
//! their data with an error retrying cannot fix. Also the people the sync
//! never sends to Tyk (no or an invalid e-mail), read from the identities,
//! so `sync failures` lists both.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::StoreError;
use crate::domain::{EmailProblem, Timestamp};

/// A refusal to record (or to count once more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQuarantine {
    pub org_id: String,
    /// The e-mail as the plan names the person.
    pub email: String,
    /// The identity source(s) behind the person, comma-separated.
    pub source: String,
    /// `tyk_refused`.
    pub kind: String,
    /// Tyk's HTTP status, when Tyk answered.
    pub status: Option<u16>,
    /// The reason as Tyk (or the bridge's own check) gave it.
    pub reason: String,
    pub fingerprint: String,
    pub at: Timestamp,
}

/// A quarantined or skipped person, as `sync failures` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedPerson {
    /// The e-mail, or the userName where the person has none.
    pub person: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    pub source: String,
    /// `tyk_refused`, `invalid_email`, `no_email`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub reason: String,
    /// Requests made for the person (0: never sent to Tyk).
    pub attempts: i64,
    /// RFC 3339.
    pub first_seen: String,
    pub last_seen: String,
    /// `quarantined` (retry with `sync retry`) or `skipped` (fix the identity).
    pub state: String,
    #[serde(skip)]
    pub fingerprint: String,
}

fn quarantined_from_row(row: &AnyRow) -> Result<FailedPerson, StoreError> {
    let status: Option<i64> = row.try_get("status")?;
    Ok(FailedPerson {
        person: row.try_get("email")?,
        org_id: Some(row.try_get("org_id")?),
        source: row.try_get("source")?,
        kind: row.try_get("kind")?,
        status: status.and_then(|s| u16::try_from(s).ok()),
        reason: row.try_get("reason")?,
        attempts: row.try_get("attempts")?,
        first_seen: Timestamp(row.try_get("first_seen")?).to_rfc3339(),
        last_seen: Timestamp(row.try_get("last_seen")?).to_rfc3339(),
        state: "quarantined".into(),
        fingerprint: row.try_get("fingerprint")?,
    })
}

/// Records a refusal: a new row, or one more attempt on an existing one
/// (its first sighting kept).
pub async fn record(conn: &mut AnyConnection, entry: &NewQuarantine) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sync_quarantine (org_id, email_key, email, source, kind, status, reason, \
         fingerprint, attempts, first_seen, last_seen) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9) \
         ON CONFLICT (org_id, email_key) DO UPDATE SET email = excluded.email, \
         source = excluded.source, kind = excluded.kind, status = excluded.status, \
         reason = excluded.reason, fingerprint = excluded.fingerprint, \
         attempts = sync_quarantine.attempts + 1, last_seen = excluded.last_seen",
    )
    .bind(&entry.org_id)
    .bind(crate::domain::fold_key(&entry.email))
    .bind(&entry.email)
    .bind(&entry.source)
    .bind(&entry.kind)
    .bind(entry.status.map(i64::from))
    .bind(&entry.reason)
    .bind(&entry.fingerprint)
    .bind(entry.at.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Every quarantined person, by e-mail.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<FailedPerson>, StoreError> {
    sqlx::query("SELECT * FROM sync_quarantine ORDER BY email_key, org_id")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(quarantined_from_row)
        .collect()
}

/// The quarantine of one person (folded e-mail), in every org.
pub async fn find(conn: &mut AnyConnection, email: &str) -> Result<Vec<FailedPerson>, StoreError> {
    sqlx::query("SELECT * FROM sync_quarantine WHERE email_key = $1 ORDER BY org_id")
        .bind(crate::domain::fold_key(email))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(quarantined_from_row)
        .collect()
}

pub async fn count(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM sync_quarantine")
        .fetch_one(&mut *conn)
        .await?)
}

/// Lifts one person's quarantine (in one org, or every org); returns the
/// rows removed.
pub async fn lift(
    conn: &mut AnyConnection,
    org_id: Option<&str>,
    email: &str,
) -> Result<u64, StoreError> {
    let key = crate::domain::fold_key(email);
    let done = match org_id {
        Some(org) => {
            sqlx::query("DELETE FROM sync_quarantine WHERE org_id = $1 AND email_key = $2")
                .bind(org)
                .bind(key)
                .execute(&mut *conn)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM sync_quarantine WHERE email_key = $1")
                .bind(key)
                .execute(&mut *conn)
                .await?
        }
    };
    Ok(done.rows_affected())
}

/// Lifts every quarantine; returns the e-mails lifted.
pub async fn lift_all(conn: &mut AnyConnection) -> Result<Vec<String>, StoreError> {
    let emails: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT email_key FROM sync_quarantine ORDER BY email_key")
            .fetch_all(&mut *conn)
            .await?;
    sqlx::query("DELETE FROM sync_quarantine")
        .execute(&mut *conn)
        .await?;
    Ok(emails)
}

/// People the sync skips for their e-mail (none, or not an address): they
/// are stored but never sent to Tyk until the identity is fixed.
pub async fn skipped(conn: &mut AnyConnection) -> Result<Vec<FailedPerson>, StoreError> {
    sqlx::query(
        "SELECT source, user_name, email_problem, created_at, updated_at FROM identity_users \
         WHERE email IS NULL ORDER BY source, user_name_lc",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        let problem: Option<String> = row.try_get("email_problem")?;
        let problem = problem.as_deref().and_then(EmailProblem::parse);
        let (kind, reason) = match problem {
            None | Some(EmailProblem::Empty) => (
                "no_email",
                "the identity has no primary e-mail; it is never sent to Tyk".to_string(),
            ),
            Some(p) => ("invalid_email", format!("{p}; it is never sent to Tyk")),
        };
        Ok(FailedPerson {
            person: row.try_get("user_name")?,
            org_id: None,
            source: row.try_get("source")?,
            kind: kind.into(),
            status: None,
            reason,
            attempts: 0,
            first_seen: Timestamp(row.try_get("created_at")?).to_rfc3339(),
            last_seen: Timestamp(row.try_get("updated_at")?).to_rfc3339(),
            state: "skipped".into(),
            fingerprint: String::new(),
        })
    })
    .collect()
}

/// How many people are skipped for their e-mail.
pub async fn count_skipped(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM identity_users WHERE email IS NULL")
            .fetch_one(&mut *conn)
            .await?,
    )
}

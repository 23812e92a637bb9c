//! Multi-row forms of the inserts a large import makes (an LDAP source's
//! first poll creates tens of thousands of users, groups, memberships and
//! their events): one statement per chunk of rows instead of one per row,
//! which on PostgreSQL is one round trip instead of hundreds. Same rows and
//! same meaning as [`identities::insert_user`](super::identities::insert_user),
//! [`identities::insert_group`](super::identities::insert_group),
//! [`identities::add_members`](super::identities::add_members) and
//! [`events::append`](super::events::append); call them on the transaction
//! that makes the change.

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::StoreError;
use super::identities::parse_uuid;
use crate::domain::{GroupMember, IdentityGroup, IdentityUser, NewIdentityEvent, Timestamp};

/// Rows per statement: at most 14 parameters each, well under SQLite's
/// 32 766 and PostgreSQL's 65 535 bound parameters.
const CHUNK: usize = 500;

/// Rows per multi-row statement of `width` parameters each on this
/// connection. sqlx's SQLite driver binds in time quadratic in a
/// statement's parameters (`sqlite3_bind_parameter_name` per parameter per
/// argument: 73% of a 50k-user first poll with 500-row statements, which
/// took 16 s), so there statements stay near 256 parameters; one row per
/// statement is slower still (34 s: per-statement overhead).
pub(crate) fn rows_per_statement(conn: &AnyConnection, width: usize) -> usize {
    if conn.backend_name() == "SQLite" {
        (256 / width).max(1)
    } else {
        CHUNK
    }
}

/// `$first, $first+1, …` for `count` parameters (an `IN (…)` list).
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($first, …), (…), …`: `rows` tuples of `width` placeholders.
fn values(rows: usize, width: usize) -> String {
    values_after(0, rows, width)
}

/// [`values`] numbered from `$(after + 1)`, for statements whose first
/// `after` parameters are something else.
pub(crate) fn values_after(after: usize, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let cols = (1..=width)
                .map(|c| format!("${}", after + r * width + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({cols})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `identity_events` columns a multi-row insert names, in the order
/// [`bind_events`] binds them.
pub(crate) const EVENT_COLUMNS: &str = "source, kind, subject_id, email, detail, created_at";

/// Binds each event's [`EVENT_COLUMNS`] (six parameters per event).
pub(crate) fn bind_events<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    events: &[NewIdentityEvent],
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for event in events {
        query = query
            .bind(event.source.as_str().to_string())
            .bind(event.kind.as_str())
            .bind(event.subject_id.map(|id| id.to_string()))
            .bind(event.email.clone())
            .bind(event.detail.to_string())
            .bind(now);
    }
    query
}

/// A userName (or group displayName) clash within the rows given or with a
/// stored row: [`StoreError::Conflict`], naming the first duplicate given
/// when there is one.
fn conflict(entity: &'static str, names: &[&str]) -> impl Fn(sqlx::Error) -> StoreError {
    let mut seen = std::collections::BTreeSet::new();
    let duplicate = names
        .iter()
        .find(|n| !seen.insert(crate::domain::fold_key(n)))
        .map(|n| n.to_string());
    move |e| {
        let err = StoreError::from(e);
        if err.is_unique_violation() {
            StoreError::Conflict {
                entity,
                detail: duplicate
                    .clone()
                    .unwrap_or_else(|| "one of the names being created is taken".into()),
            }
        } else {
            err
        }
    }
}

/// Inserts new users, each with its e-mail index (`emails`, folded and
/// deduplicated here, by user: [`super::identities::email_index_keys`]).
pub async fn insert_users(
    conn: &mut AnyConnection,
    users: &[(IdentityUser, Vec<String>)],
) -> Result<(), StoreError> {
    for chunk in users.chunks(rows_per_statement(conn, 15)) {
        let sql = format!(
            "INSERT INTO identity_users (id, source, external_id, user_name, user_name_lc, \
             email, email_problem, given_name, family_name, display_name, active, attributes, \
             version, created_at, updated_at) VALUES {}",
            values(chunk.len(), 15)
        );
        let mut query = sqlx::query(&sql);
        for (user, _) in chunk {
            query = query
                .bind(user.id.to_string())
                .bind(user.source.as_str().to_string())
                .bind(user.external_id.clone())
                .bind(user.user_name.clone())
                .bind(crate::domain::fold_key(&user.user_name))
                .bind(user.email.clone())
                .bind(user.email_problem.map(crate::domain::EmailProblem::as_str))
                .bind(user.given_name.clone())
                .bind(user.family_name.clone())
                .bind(user.display_name.clone())
                .bind(i64::from(user.active))
                .bind(user.attributes.to_string())
                .bind(user.version)
                .bind(user.created_at.0)
                .bind(user.updated_at.0);
        }
        let names: Vec<&str> = chunk.iter().map(|(u, _)| u.user_name.as_str()).collect();
        query
            .execute(&mut *conn)
            .await
            .map_err(conflict("userName", &names))?;
        let mut emails: Vec<(String, String)> = Vec::new();
        for (user, addresses) in chunk {
            for key in super::identities::email_index_keys(addresses) {
                emails.push((user.id.to_string(), key));
            }
        }
        for part in emails.chunks(rows_per_statement(conn, 2)) {
            let sql = format!(
                "INSERT INTO identity_user_emails (user_id, value_lc) VALUES {}",
                values(part.len(), 2)
            );
            let mut query = sqlx::query(&sql);
            for (id, lc) in part {
                query = query.bind(id.clone()).bind(lc.clone());
            }
            query.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// Inserts new groups.
pub async fn insert_groups(
    conn: &mut AnyConnection,
    groups: &[IdentityGroup],
) -> Result<(), StoreError> {
    for chunk in groups.chunks(rows_per_statement(conn, 9)) {
        let sql = format!(
            "INSERT INTO identity_groups (id, source, external_id, display_name, \
             display_name_lc, attributes, version, created_at, updated_at) VALUES {}",
            values(chunk.len(), 9)
        );
        let mut query = sqlx::query(&sql);
        for group in chunk {
            query = query
                .bind(group.id.to_string())
                .bind(group.source.as_str().to_string())
                .bind(group.external_id.clone())
                .bind(group.display_name.clone())
                .bind(crate::domain::fold_key(&group.display_name))
                .bind(group.attributes.to_string())
                .bind(group.version)
                .bind(group.created_at.0)
                .bind(group.updated_at.0);
        }
        let names: Vec<&str> = chunk.iter().map(|g| g.display_name.as_str()).collect();
        query
            .execute(&mut *conn)
            .await
            .map_err(conflict("displayName", &names))?;
    }
    Ok(())
}

/// Adds (group, member) edges that are not there yet; returns the ones
/// actually added, as (group id, member id), in no particular order.
pub async fn add_members(
    conn: &mut AnyConnection,
    edges: &[(Uuid, GroupMember)],
) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    let mut added = Vec::with_capacity(edges.len());
    for chunk in edges.chunks(rows_per_statement(conn, 3)) {
        let sql = format!(
            "INSERT INTO identity_group_members (group_id, member_id, member_kind) VALUES {} \
             ON CONFLICT (group_id, member_id) DO NOTHING RETURNING group_id, member_id",
            values(chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for (group, member) in chunk {
            query = query
                .bind(group.to_string())
                .bind(member.id.to_string())
                .bind(member.kind.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            added.push((
                parse_uuid(row.try_get::<&str, _>("group_id")?)?,
                parse_uuid(row.try_get::<&str, _>("member_id")?)?,
            ));
        }
    }
    Ok(added)
}

/// Appends events in the order given (their sequence numbers follow it).
/// On PostgreSQL the table's trigger sends the outbox `NOTIFY`.
pub async fn append_events(
    conn: &mut AnyConnection,
    events: &[NewIdentityEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now().0;
    for chunk in events.chunks(rows_per_statement(conn, 6)) {
        let sql = format!(
            "INSERT INTO identity_events ({EVENT_COLUMNS}) VALUES {}",
            values(chunk.len(), 6)
        );
        bind_events(sqlx::query(&sql), chunk, now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Events buffered and appended a chunk at a time (see [`append_events`]),
/// so a large import holds at most one chunk of them.
#[derive(Debug, Default)]
pub struct EventWriter {
    buffer: Vec<NewIdentityEvent>,
}

impl EventWriter {
    pub async fn push(
        &mut self,
        conn: &mut AnyConnection,
        event: NewIdentityEvent,
    ) -> Result<(), StoreError> {
        self.buffer.push(event);
        if self.buffer.len() >= CHUNK {
            self.flush(conn).await?;
        }
        Ok(())
    }

    /// Appends what is buffered; call it before the transaction commits.
    pub async fn flush(&mut self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        append_events(conn, &self.buffer).await?;
        self.buffer.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(values(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(3, 2), "$3, $4");
    }
}

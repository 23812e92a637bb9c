//! Set-at-a-time statements on one group's members, for the batched member
//! PATCH: each takes a list of ids and costs one round trip per
//! [`CHUNK`] ids, however many members the batch names.

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::StoreError;
use super::bulk::{EVENT_COLUMNS, append_events, bind_events, placeholders, values_after};
use super::identities::{GROUP_COLUMNS, group_from_row, parse_uuid};
use crate::domain::{IdentityGroup, MemberKind, NewIdentityEvent, SourceName, Timestamp};

/// Ids per statement (far below either engine's bound-parameter limit, and
/// small enough for sqlx's SQLite binding, whose cost grows with the square
/// of a statement's parameter count).
pub const CHUNK: usize = 250;

/// What the store holds about one id a batch names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRow {
    pub id: Uuid,
    /// `Some(email)` when the id is a user of the source.
    pub user_email: Option<Option<String>>,
    /// Whether the id is a group of the source.
    pub is_group: bool,
    /// As what the id is a direct member of the group, if it is.
    pub member_kind: Option<MemberKind>,
    /// The display name of the user or group it is (empty if neither).
    pub name: String,
}

/// The joins that tell, for each id of the VALUES list `v`, what it is in
/// source `$1` and in group `$2`.
const NAMED_JOINS: &str = "\
    LEFT JOIN identity_users u ON u.id = v.column1 AND u.source = $1 \
    LEFT JOIN identity_groups ng ON ng.id = v.column1 AND ng.source = $1 \
    LEFT JOIN identity_group_members m ON m.group_id = $2 AND m.member_id = v.column1";

const NAMED_COLUMNS: &str = "v.column1 AS named_id, u.id AS user_id, u.email, \
    ng.id AS named_group_id, COALESCE(u.display_name, u.user_name, ng.display_name, '') AS name, \
    m.member_kind";

fn named_from_row(row: &sqlx::any::AnyRow) -> Result<NamedRow, StoreError> {
    let kind = row
        .try_get::<Option<String>, _>("member_kind")?
        .map(|kind| {
            MemberKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("bad member kind {kind:?}")))
        })
        .transpose()?;
    let is_user = row.try_get::<Option<String>, _>("user_id")?.is_some();
    Ok(NamedRow {
        id: parse_uuid(&row.try_get::<String, _>("named_id")?)?,
        user_email: if is_user {
            Some(row.try_get("email")?)
        } else {
            None
        },
        is_group: row
            .try_get::<Option<String>, _>("named_group_id")?
            .is_some(),
        member_kind: kind,
        name: row.try_get("name")?,
    })
}

/// For each of `ids`: whether it is a user or group of `source` (what lets
/// a batch refuse any other id), and its membership in the group, in one
/// statement per
/// [`CHUNK`] ids.
pub async fn named_rows(
    conn: &mut AnyConnection,
    source: &SourceName,
    group_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<NamedRow>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT {NAMED_COLUMNS} FROM (VALUES {}) AS v {NAMED_JOINS}",
            values_after(2, chunk.len(), 1)
        );
        let mut query = sqlx::query(&sql)
            .bind(source.as_str())
            .bind(group_id.to_string());
        for id in chunk {
            query = query.bind(id.to_string());
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.push(named_from_row(&row)?);
        }
    }
    Ok(found)
}

/// Reads the group with [`named_rows`] in one statement (for up to
/// [`CHUNK`] ids; the rest are read after). With `lock` it takes the
/// group's write lock first (a row lock on PostgreSQL; on SQLite the write
/// transaction already holds the database's). `None` when the source has
/// no such group.
pub async fn read_group_with_named(
    conn: &mut AnyConnection,
    source: &SourceName,
    group_id: Uuid,
    ids: &[Uuid],
    lock: bool,
) -> Result<Option<(IdentityGroup, Vec<NamedRow>)>, StoreError> {
    let (first, rest) = ids.split_at(ids.len().min(CHUNK));
    if first.is_empty() {
        // A PATCH with no operations: nothing to look up.
        if lock {
            super::scim_query::lock_for_update(conn, source, &group_id.to_string(), false).await?;
        }
        return Ok(super::identities::get_group(conn, source, group_id)
            .await?
            .map(|group| (group, Vec::new())));
    }
    // `SELECT … FOR UPDATE`, not a no-op UPDATE: on PostgreSQL that writes
    // a new row version each time, and a hot group would pile up dead ones.
    let lock = if lock && conn.backend_name() == "PostgreSQL" {
        " FOR UPDATE OF g"
    } else {
        ""
    };
    let group_columns = GROUP_COLUMNS
        .split(", ")
        .map(|c| format!("g.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {group_columns}, {NAMED_COLUMNS} \
         FROM identity_groups g CROSS JOIN (VALUES {}) AS v {NAMED_JOINS} \
         WHERE g.id = $2 AND g.source = $1{lock}",
        values_after(2, first.len(), 1)
    );
    let mut query = sqlx::query(&sql)
        .bind(source.as_str())
        .bind(group_id.to_string());
    for id in first {
        query = query.bind(id.to_string());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let Some(first_row) = rows.first() else {
        return Ok(None);
    };
    let group = group_from_row(first_row)?;
    let mut named = rows
        .iter()
        .map(named_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    named.extend(named_rows(conn, source, group_id, rest).await?);
    Ok(Some((group, named)))
}

/// Deletes member rows.
pub async fn delete_members(
    conn: &mut AnyConnection,
    group_id: Uuid,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM identity_group_members WHERE group_id = $1 AND member_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(group_id.to_string());
        for id in chunk {
            query = query.bind(id.to_string());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Appends the batch's membership events and records that the group's
/// members changed: its new version and modification time, if it is still
/// at `expected_version`. Only these two columns are set, so no index of the
/// group row is rewritten. On PostgreSQL the events go in the same statement
/// (a data-modifying CTE: one round trip instead of two) unless there are
/// many.
pub async fn bump_version_with_events(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
    expected_version: i64,
    events: &[NewIdentityEvent],
) -> Result<(), StoreError> {
    const MAX_FOLDED: usize = 80;
    let fold =
        !events.is_empty() && events.len() <= MAX_FOLDED && conn.backend_name() == "PostgreSQL";
    let with = if fold {
        // Rows go in in slice order, so their sequence numbers keep it.
        format!(
            "WITH appended AS (INSERT INTO identity_events ({EVENT_COLUMNS}) VALUES {} \
             RETURNING seq) ",
            values_after(5, events.len(), 6)
        )
    } else {
        append_events(conn, events).await?;
        String::new()
    };
    let sql = format!(
        "{with}UPDATE identity_groups SET version = $1, updated_at = $2 \
         WHERE id = $3 AND source = $4 AND version = $5"
    );
    let mut query = sqlx::query(&sql)
        .bind(group.version)
        .bind(group.updated_at.0)
        .bind(group.id.to_string())
        .bind(group.source.as_str())
        .bind(expected_version);
    if fold {
        query = bind_events(query, events, Timestamp::now().0);
    }
    if query.execute(&mut *conn).await?.rows_affected() == 0 {
        return Err(StoreError::Conflict {
            entity: "version",
            detail: "the group was changed concurrently".into(),
        });
    }
    Ok(())
}

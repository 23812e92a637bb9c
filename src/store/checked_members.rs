//! A batch of member changes to one group written as one statement that
//! applies only if the group is still at the version the changes were
//! worked out from (PostgreSQL: a data-modifying CTE in autocommit).
//!
//! Why: with a transaction the batched member PATCH is a chain of about
//! seven round trips (BEGIN, lock and read, deletes, inserts, events and
//! version, member listing, COMMIT), and on PostgreSQL that chain, not the
//! CPU, bounds its throughput. Optimistically it is two: read without a
//! lock, then this statement. Every change to a group's members through
//! SCIM moves the group's version, so a version that still matches means
//! the read is still true; one that moved means nothing was written and
//! the caller reads again.

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::StoreError;
use super::bulk::{EVENT_COLUMNS, bind_events, placeholders, values_after};
use super::scim_query::{MEMBER_VIEWS, MemberView, member_view_from_row};
use crate::domain::{GroupMember, IdentityGroup, NewIdentityEvent, Timestamp};

/// Bound parameters per statement at most (PostgreSQL allows 65 535; a
/// batch this large is better written in a transaction in chunks).
const MAX_PARAMETERS: usize = 4_000;

/// One group's member changes, worked out from the group at
/// `expected_version`.
#[derive(Debug)]
pub struct CheckedMemberWrites<'a> {
    /// The group as the changes leave it (its version and modification
    /// time are written).
    pub group: &'a IdentityGroup,
    pub expected_version: i64,
    pub delete_members: &'a [Uuid],
    /// Added, or kept with a different kind. Each is a user or group of
    /// the group's source: the database refuses the statement otherwise
    /// (migration `20261202000100_members_within_source`), and nothing of
    /// it is written.
    pub upsert_members: &'a [GroupMember],
    pub events: &'a [NewIdentityEvent],
    /// Whether to return the group's members.
    pub list_members: bool,
}

impl CheckedMemberWrites<'_> {
    /// Whether the changes fit one statement.
    pub fn fits_one_statement(&self) -> bool {
        5 + self.delete_members.len() + 2 * self.upsert_members.len() + 6 * self.events.len()
            <= MAX_PARAMETERS
    }
}

/// Writes the changes if the group is still at `expected_version`, and
/// returns its members as they were just before (ordered by id; empty
/// unless `list_members`). `None`: the version moved and nothing was
/// written. PostgreSQL only; check [`CheckedMemberWrites::fits_one_statement`]
/// first.
pub async fn write_if_unchanged(
    conn: &mut AnyConnection,
    writes: &CheckedMemberWrites<'_>,
) -> Result<Option<Vec<MemberView>>, StoreError> {
    // A member whose kind changes is upserted, not deleted and inserted:
    // two statements of one command must not touch the same row.
    let deletes: Vec<Uuid> = writes
        .delete_members
        .iter()
        .filter(|id| !writes.upsert_members.iter().any(|m| m.id == **id))
        .copied()
        .collect();
    let sql = statement(writes, deletes.len());
    let group = writes.group;
    let mut query = sqlx::query(&sql)
        .bind(group.source.as_str())
        .bind(group.id.to_string())
        .bind(group.version)
        .bind(group.updated_at.0)
        .bind(writes.expected_version);
    for id in &deletes {
        query = query.bind(id.to_string());
    }
    for member in writes.upsert_members {
        query = query.bind(member.id.to_string()).bind(member.kind.as_str());
    }
    query = bind_events(query, writes.events, Timestamp::now().0);
    let rows = query.fetch_all(&mut *conn).await?;
    let applied: i64 = match rows.first() {
        Some(row) => row.try_get("applied")?,
        None => 0,
    };
    if applied == 0 {
        return Ok(None);
    }
    let mut members = Vec::new();
    if writes.list_members {
        for row in &rows {
            if row.try_get::<Option<String>, _>("member_id")?.is_some() {
                members.push(member_view_from_row(row)?);
            }
        }
    }
    Ok(Some(members))
}

/// Waits for `bumped`: empty when the version moved.
const IF_BUMPED: &str = "EXISTS (SELECT 1 FROM bumped)";

/// A CTE deleting the group's member rows for `rows` member ids bound
/// after parameter `used`.
fn delete_cte(used: usize, rows: usize) -> String {
    format!(
        "removed AS (DELETE FROM identity_group_members \
         WHERE group_id = $2 AND member_id IN ({}) AND {IF_BUMPED})",
        placeholders(used + 1, rows)
    )
}

/// A CTE upserting the group's member rows: `rows` pairs of member id and
/// kind, bound after parameter `used`.
fn upsert_cte(used: usize, rows: usize) -> String {
    format!(
        "added AS (INSERT INTO identity_group_members (group_id, member_id, member_kind) \
         SELECT $2, v.column1, v.column2 FROM (VALUES {}) AS v WHERE {IF_BUMPED} \
         ON CONFLICT (group_id, member_id) DO UPDATE SET member_kind = EXCLUDED.member_kind)",
        values_after(used, rows, 2)
    )
}

/// The statement: `$1` source, `$2` group id, `$3` new version, `$4`
/// modification time, `$5` expected version, then the deletes, upserts
/// and events, in that order. Each write waits for `bumped`, which is
/// empty when the version moved.
fn statement(writes: &CheckedMemberWrites<'_>, deletes: usize) -> String {
    let mut ctes = vec![
        "bumped AS (UPDATE identity_groups SET version = $3, updated_at = $4 \
         WHERE id = $2 AND source = $1 AND version = $5 RETURNING id)"
            .to_string(),
    ];
    let mut used = 5;
    if deletes > 0 {
        ctes.push(delete_cte(used, deletes));
        used += deletes;
    }
    if !writes.upsert_members.is_empty() {
        let rows = writes.upsert_members.len();
        ctes.push(upsert_cte(used, rows));
        used += 2 * rows;
    }
    if !writes.events.is_empty() {
        // Rows go in in slice order, so their sequence numbers keep it.
        ctes.push(format!(
            "appended AS (INSERT INTO identity_events ({EVENT_COLUMNS}) \
             SELECT * FROM (VALUES {}) AS v WHERE {IF_BUMPED})",
            values_after(used, writes.events.len(), 6)
        ));
    }
    // The final SELECT sees the members as they were before this statement.
    let select = if writes.list_members {
        format!(
            "SELECT b.applied, l.* FROM (SELECT count(*) AS applied FROM bumped) AS b \
             LEFT JOIN ({MEMBER_VIEWS}) AS l ON true ORDER BY l.member_id"
        )
    } else {
        "SELECT count(*) AS applied FROM bumped".to_string()
    };
    format!("WITH {} {select}", ctes.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MemberKind, SourceName};

    fn group() -> IdentityGroup {
        IdentityGroup {
            id: Uuid::nil(),
            source: SourceName::new("okta"),
            external_id: None,
            display_name: "Admins".into(),
            attributes: serde_json::json!({}),
            version: 2,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn parameters_are_numbered_in_binding_order() {
        let group = group();
        let upsert = [GroupMember {
            id: Uuid::nil(),
            kind: MemberKind::User,
        }];
        let writes = CheckedMemberWrites {
            group: &group,
            expected_version: 1,
            delete_members: &[Uuid::max()],
            upsert_members: &upsert,
            events: &[],
            list_members: false,
        };
        let sql = statement(&writes, 1);
        assert!(sql.contains("member_id IN ($6) AND"), "{sql}");
        assert!(sql.contains("(VALUES ($7, $8))"), "{sql}");
        assert!(!sql.contains("$9"), "{sql}");
        assert!(
            sql.ends_with("SELECT count(*) AS applied FROM bumped"),
            "{sql}"
        );
    }
}

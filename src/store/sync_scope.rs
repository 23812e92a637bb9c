//! Who a group change can affect, for the sync worker's event runs: the
//! people in a group, directly or through nested groups, found through the
//! membership index (`identity_group_members (group_id, …)`) instead of
//! planning everyone.

use std::collections::BTreeSet;

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::StoreError;
use super::identities::parse_uuid;
use crate::domain::SourceName;

/// Lower-cased e-mails of the users in `group` of `source`, directly or
/// through nested groups (each group visited once, so cycles end).
pub async fn member_emails(
    conn: &mut AnyConnection,
    source: &SourceName,
    group: Uuid,
) -> Result<BTreeSet<String>, StoreError> {
    let mut emails = BTreeSet::new();
    let mut seen = BTreeSet::from([group]);
    let mut queue = vec![group];
    while let Some(group) = queue.pop() {
        let rows = sqlx::query(
            "SELECT u.email FROM identity_group_members m \
             JOIN identity_users u ON u.id = m.member_id \
             WHERE m.group_id = $1 AND u.source = $2 AND u.email IS NOT NULL",
        )
        .bind(group.to_string())
        .bind(source.as_str())
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let email: String = row.try_get("email")?;
            emails.insert(crate::domain::fold_key(&email));
        }
        let nested = sqlx::query(
            "SELECT m.member_id FROM identity_group_members m \
             JOIN identity_groups g ON g.id = m.member_id \
             WHERE m.group_id = $1 AND g.source = $2",
        )
        .bind(group.to_string())
        .bind(source.as_str())
        .fetch_all(&mut *conn)
        .await?;
        for row in nested {
            let id = parse_uuid(&row.try_get::<String, _>("member_id")?)?;
            if seen.insert(id) {
                queue.push(id);
            }
        }
    }
    Ok(emails)
}

/// The detail of a group's `GroupDeleted` event, written before the group
/// goes (its memberships go with it): its name and the lower-cased e-mails
/// of its members, direct or nested — the people the deletion can affect,
/// which the sync worker plans instead of everyone.
pub async fn deleted_group_detail(
    conn: &mut AnyConnection,
    source: &SourceName,
    group: Uuid,
    display_name: &str,
) -> Result<serde_json::Value, StoreError> {
    let members = member_emails(conn, source, group).await?;
    Ok(serde_json::json!({ "displayName": display_name, "members": members }))
}

/// An outbox event's detail (`None` if the event is gone).
pub async fn event_detail(
    conn: &mut AnyConnection,
    seq: i64,
) -> Result<Option<serde_json::Value>, StoreError> {
    let detail: Option<String> =
        sqlx::query_scalar("SELECT detail FROM identity_events WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&mut *conn)
            .await?;
    detail
        .map(|d| {
            serde_json::from_str(&d)
                .map_err(|e| StoreError::Corrupt(format!("bad event detail: {e}")))
        })
        .transpose()
}

/// Lower-cased e-mails of the people in any group of the store the
/// `matches` predicate accepts (directly or through nested groups): the
/// people a mapping rule with those patterns can place. Reads every group
/// (not every person) and then each matching group's members.
pub async fn people_in_groups_matching(
    conn: &mut AnyConnection,
    matches: impl Fn(&crate::mapping::GroupRef) -> bool,
) -> Result<BTreeSet<String>, StoreError> {
    let rows = sqlx::query("SELECT id, source, display_name, external_id FROM identity_groups")
        .fetch_all(&mut *conn)
        .await?;
    let mut matching = Vec::new();
    for row in rows {
        let group = crate::mapping::GroupRef {
            source: SourceName(row.try_get("source")?),
            display_name: row.try_get("display_name")?,
            external_id: row.try_get("external_id")?,
        };
        if matches(&group) {
            matching.push((group.source, parse_uuid(&row.try_get::<String, _>("id")?)?));
        }
    }
    let mut emails = BTreeSet::new();
    for (source, group) in matching {
        emails.extend(member_emails(conn, &source, group).await?);
    }
    Ok(emails)
}

/// People read together per query: well under SQLite's bound on a
/// statement's parameters.
const BATCH: usize = 500;

fn placeholders(count: usize) -> String {
    (1..=count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The identities with these e-mails (folded keys, every source), each
/// with its groups of its own source, nested ones included: what the
/// mapping resolves a person from. A few queries per [`BATCH`] people —
/// the users, their direct groups, then one per level of nesting — instead
/// of several per person.
pub async fn identities_with_groups(
    conn: &mut AnyConnection,
    emails: &BTreeSet<String>,
) -> Result<Vec<(crate::domain::IdentityUser, Vec<crate::mapping::GroupRef>)>, StoreError> {
    use super::identities::{USER_COLUMNS, user_from_row};
    let keys: Vec<String> = emails
        .iter()
        .map(|e| crate::domain::fold_key(e.trim()))
        .collect();
    let mut users = Vec::new();
    for chunk in keys.chunks(BATCH) {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM identity_users WHERE email IN ({}) ORDER BY source, id",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(key.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            users.push(user_from_row(&row)?);
        }
    }
    // Each member (user or group) → the groups it is directly in, of its
    // own source; groups are read once however many people share them.
    let mut parents: std::collections::BTreeMap<Uuid, Vec<Uuid>> = Default::default();
    let mut groups: std::collections::BTreeMap<Uuid, crate::mapping::GroupRef> = Default::default();
    let mut frontier: Vec<(Uuid, &'static str)> =
        users.iter().map(|u| (u.id, "identity_users")).collect();
    let mut seen_groups: BTreeSet<Uuid> = BTreeSet::new();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for table in ["identity_users", "identity_groups"] {
            let ids: Vec<String> = frontier
                .iter()
                .filter(|(_, t)| *t == table)
                .map(|(id, _)| id.to_string())
                .collect();
            for chunk in ids.chunks(BATCH) {
                let sql = format!(
                    "SELECT m.member_id, g.id, g.source, g.display_name, g.external_id \
                     FROM identity_group_members m \
                     JOIN {table} x ON x.id = m.member_id \
                     JOIN identity_groups g ON g.id = m.group_id AND g.source = x.source \
                     WHERE m.member_id IN ({})",
                    placeholders(chunk.len())
                );
                let mut query = sqlx::query(&sql);
                for id in chunk {
                    query = query.bind(id.as_str());
                }
                for row in query.fetch_all(&mut *conn).await? {
                    let member = parse_uuid(&row.try_get::<String, _>("member_id")?)?;
                    let group = parse_uuid(&row.try_get::<String, _>("id")?)?;
                    parents.entry(member).or_default().push(group);
                    if seen_groups.insert(group) {
                        groups.insert(
                            group,
                            crate::mapping::GroupRef {
                                source: SourceName(row.try_get("source")?),
                                display_name: row.try_get("display_name")?,
                                external_id: row.try_get("external_id")?,
                            },
                        );
                        next.push((group, "identity_groups"));
                    }
                }
            }
        }
        frontier = next;
    }
    Ok(users
        .into_iter()
        .map(|user| {
            let mut found = BTreeSet::new();
            let mut queue = vec![user.id];
            while let Some(member) = queue.pop() {
                for group in parents.get(&member).into_iter().flatten() {
                    if found.insert(*group) {
                        queue.push(*group);
                    }
                }
            }
            let refs = found
                .iter()
                .filter_map(|g| groups.get(g).cloned())
                .collect();
            (user, refs)
        })
        .collect())
}

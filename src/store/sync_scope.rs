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

//! Users, groups and memberships as each source knows them.
//!
//! Every function is scoped by source: a lookup with another source's id
//! finds nothing. Functions take a connection so callers compose them inside
//! one transaction together with the outbox event they write.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::StoreError;
use crate::domain::{
    EmailProblem, GroupMember, IdentityGroup, IdentityUser, MemberKind, SourceName, Timestamp,
    fold_key,
};

pub(crate) const USER_COLUMNS: &str = "id, source, external_id, user_name, email, email_problem, \
     given_name, family_name, display_name, active, attributes, version, created_at, updated_at";
pub(crate) const GROUP_COLUMNS: &str =
    "id, source, external_id, display_name, attributes, version, created_at, updated_at";

pub(crate) fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("bad uuid {text:?}: {e}")))
}

fn parse_json(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("bad JSON: {e}")))
}

pub(crate) fn user_from_row(row: &AnyRow) -> Result<IdentityUser, StoreError> {
    Ok(IdentityUser {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        source: SourceName(row.try_get("source")?),
        external_id: row.try_get("external_id")?,
        user_name: row.try_get("user_name")?,
        email: row.try_get("email")?,
        email_problem: row
            .try_get::<Option<String>, _>("email_problem")?
            .map(|code| {
                EmailProblem::parse(&code)
                    .ok_or_else(|| StoreError::Corrupt(format!("bad email problem {code:?}")))
            })
            .transpose()?,
        given_name: row.try_get("given_name")?,
        family_name: row.try_get("family_name")?,
        display_name: row.try_get("display_name")?,
        active: row.try_get::<i64, _>("active")? != 0,
        attributes: parse_json(&row.try_get::<String, _>("attributes")?)?,
        version: row.try_get("version")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

pub(crate) fn group_from_row(row: &AnyRow) -> Result<IdentityGroup, StoreError> {
    Ok(IdentityGroup {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        source: SourceName(row.try_get("source")?),
        external_id: row.try_get("external_id")?,
        display_name: row.try_get("display_name")?,
        attributes: parse_json(&row.try_get::<String, _>("attributes")?)?,
        version: row.try_get("version")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

fn conflict_on_unique(entity: &'static str, detail: &str) -> impl Fn(sqlx::Error) -> StoreError {
    let detail = detail.to_string();
    move |e| {
        let err = StoreError::from(e);
        if err.is_unique_violation() {
            StoreError::Conflict {
                entity,
                detail: detail.clone(),
            }
        } else {
            err
        }
    }
}

/// The e-mail values a user's `emails.value` filters can find: their fold
/// keys, deduplicated. Values with control characters are left out: they
/// are never an address, and PostgreSQL text cannot hold a NUL.
pub(crate) fn email_index_keys(emails: &[String]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    emails
        .iter()
        .filter(|e| !e.chars().any(char::is_control))
        .map(|e| fold_key(e))
        .filter(|key| seen.insert(key.clone()))
        .collect()
}

/// Stores a new user with its e-mail index. `userName` is unique per source
/// after folding ([`fold_key`]: `Straße` is `STRASSE`, NFC is NFD): a clash
/// is [`StoreError::Conflict`]. The name is stored as sent.
pub async fn insert_user(
    conn: &mut AnyConnection,
    user: &IdentityUser,
    emails: &[String],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO identity_users (id, source, external_id, user_name, user_name_lc, email, \
         email_problem, given_name, family_name, display_name, active, attributes, version, \
         created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(user.id.to_string())
    .bind(user.source.as_str())
    .bind(user.external_id.as_deref())
    .bind(&user.user_name)
    .bind(fold_key(&user.user_name))
    .bind(user.email.as_deref())
    .bind(user.email_problem.map(EmailProblem::as_str))
    .bind(user.given_name.as_deref())
    .bind(user.family_name.as_deref())
    .bind(user.display_name.as_deref())
    .bind(i64::from(user.active))
    .bind(user.attributes.to_string())
    .bind(user.version)
    .bind(user.created_at.0)
    .bind(user.updated_at.0)
    .execute(&mut *conn)
    .await
    .map_err(conflict_on_unique("userName", &user.user_name))?;
    replace_user_emails(conn, user.id, emails).await
}

/// Replaces a user's stored fields. With `expected_version`, the update only
/// happens if nobody changed the row since it was read (optimistic locking);
/// otherwise it is [`StoreError::Conflict`] on `version`.
pub async fn update_user(
    conn: &mut AnyConnection,
    user: &IdentityUser,
    emails: &[String],
    expected_version: Option<i64>,
) -> Result<(), StoreError> {
    let result = sqlx::query(
        "UPDATE identity_users SET external_id = $1, user_name = $2, user_name_lc = $3, \
         email = $4, email_problem = $5, given_name = $6, family_name = $7, display_name = $8, \
         active = $9, attributes = $10, version = $11, updated_at = $12 \
         WHERE id = $13 AND source = $14 AND ($15 IS NULL OR version = $15)",
    )
    .bind(user.external_id.as_deref())
    .bind(&user.user_name)
    .bind(fold_key(&user.user_name))
    .bind(user.email.as_deref())
    .bind(user.email_problem.map(EmailProblem::as_str))
    .bind(user.given_name.as_deref())
    .bind(user.family_name.as_deref())
    .bind(user.display_name.as_deref())
    .bind(i64::from(user.active))
    .bind(user.attributes.to_string())
    .bind(user.version)
    .bind(user.updated_at.0)
    .bind(user.id.to_string())
    .bind(user.source.as_str())
    .bind(expected_version)
    .execute(&mut *conn)
    .await
    .map_err(conflict_on_unique("userName", &user.user_name))?;
    if result.rows_affected() == 0 {
        return Err(match get_user(conn, &user.source, user.id).await? {
            Some(_) => StoreError::Conflict {
                entity: "version",
                detail: "the user was changed concurrently".into(),
            },
            None => StoreError::NotFound("user"),
        });
    }
    replace_user_emails(conn, user.id, emails).await
}

async fn replace_user_emails(
    conn: &mut AnyConnection,
    user_id: Uuid,
    emails: &[String],
) -> Result<(), StoreError> {
    let id = user_id.to_string();
    sqlx::query("DELETE FROM identity_user_emails WHERE user_id = $1")
        .bind(&id)
        .execute(&mut *conn)
        .await?;
    for key in email_index_keys(emails) {
        sqlx::query("INSERT INTO identity_user_emails (user_id, value_lc) VALUES ($1, $2)")
            .bind(&id)
            .bind(key)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Deletes a user, which removes it from every group of its source (the
/// database's own trigger, so no path can leave a member naming nobody).
/// Returns whether a row was deleted.
pub async fn delete_user(
    conn: &mut AnyConnection,
    source: &SourceName,
    id: Uuid,
) -> Result<bool, StoreError> {
    let result = sqlx::query("DELETE FROM identity_users WHERE id = $1 AND source = $2")
        .bind(id.to_string())
        .bind(source.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected() > 0)
}

pub async fn get_user(
    conn: &mut AnyConnection,
    source: &SourceName,
    id: Uuid,
) -> Result<Option<IdentityUser>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM identity_users WHERE id = $1 AND source = $2");
    sqlx::query(&sql)
        .bind(id.to_string())
        .bind(source.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
}

pub async fn find_user_by_user_name(
    conn: &mut AnyConnection,
    source: &SourceName,
    user_name: &str,
) -> Result<Option<IdentityUser>, StoreError> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM identity_users WHERE source = $1 AND user_name_lc = $2"
    );
    sqlx::query(&sql)
        .bind(source.as_str())
        .bind(fold_key(user_name))
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
}

pub async fn find_user_by_external_id(
    conn: &mut AnyConnection,
    source: &SourceName,
    external_id: &str,
) -> Result<Option<IdentityUser>, StoreError> {
    let sql =
        format!("SELECT {USER_COLUMNS} FROM identity_users WHERE source = $1 AND external_id = $2");
    sqlx::query(&sql)
        .bind(source.as_str())
        .bind(external_id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
}

/// Every user of one source, ordered by id.
pub async fn list_users(
    conn: &mut AnyConnection,
    source: &SourceName,
) -> Result<Vec<IdentityUser>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM identity_users WHERE source = $1 ORDER BY id");
    sqlx::query(&sql)
        .bind(source.as_str())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
}

/// Every user of every source with this e-mail (compared by its fold key).
pub async fn users_by_email(
    conn: &mut AnyConnection,
    email: &str,
) -> Result<Vec<IdentityUser>, StoreError> {
    let sql =
        format!("SELECT {USER_COLUMNS} FROM identity_users WHERE email = $1 ORDER BY source, id");
    sqlx::query(&sql)
        .bind(fold_key(email.trim()))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
}

/// Every user of every source, ordered by source then id.
pub async fn list_all_users(conn: &mut AnyConnection) -> Result<Vec<IdentityUser>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM identity_users ORDER BY source, id");
    sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
}

pub async fn count_users(conn: &mut AnyConnection, source: &SourceName) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM identity_users WHERE source = $1")
            .bind(source.as_str())
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Stores a new group. `displayName` is unique per source after folding
/// (see [`insert_user`]); the name is stored as sent.
pub async fn insert_group(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO identity_groups (id, source, external_id, display_name, display_name_lc, \
         attributes, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(group.id.to_string())
    .bind(group.source.as_str())
    .bind(group.external_id.as_deref())
    .bind(&group.display_name)
    .bind(fold_key(&group.display_name))
    .bind(group.attributes.to_string())
    .bind(group.version)
    .bind(group.created_at.0)
    .bind(group.updated_at.0)
    .execute(&mut *conn)
    .await
    .map_err(conflict_on_unique("displayName", &group.display_name))?;
    Ok(())
}

/// Replaces a group's stored fields (not its members); see [`update_user`]
/// for `expected_version`.
pub async fn update_group(
    conn: &mut AnyConnection,
    group: &IdentityGroup,
    expected_version: Option<i64>,
) -> Result<(), StoreError> {
    let result = sqlx::query(
        "UPDATE identity_groups SET external_id = $1, display_name = $2, display_name_lc = $3, \
         attributes = $4, version = $5, updated_at = $6 \
         WHERE id = $7 AND source = $8 AND ($9 IS NULL OR version = $9)",
    )
    .bind(group.external_id.as_deref())
    .bind(&group.display_name)
    .bind(fold_key(&group.display_name))
    .bind(group.attributes.to_string())
    .bind(group.version)
    .bind(group.updated_at.0)
    .bind(group.id.to_string())
    .bind(group.source.as_str())
    .bind(expected_version)
    .execute(&mut *conn)
    .await
    .map_err(conflict_on_unique("displayName", &group.display_name))?;
    if result.rows_affected() == 0 {
        return Err(match get_group(conn, &group.source, group.id).await? {
            Some(_) => StoreError::Conflict {
                entity: "version",
                detail: "the group was changed concurrently".into(),
            },
            None => StoreError::NotFound("group"),
        });
    }
    Ok(())
}

/// Deletes a group, its member list, and its own membership in other groups.
pub async fn delete_group(
    conn: &mut AnyConnection,
    source: &SourceName,
    id: Uuid,
) -> Result<bool, StoreError> {
    let id_text = id.to_string();
    sqlx::query(
        "DELETE FROM identity_group_members WHERE group_id = $1 \
         AND EXISTS (SELECT 1 FROM identity_groups g WHERE g.id = $1 AND g.source = $2)",
    )
    .bind(&id_text)
    .bind(source.as_str())
    .execute(&mut *conn)
    .await?;
    // Its membership in other groups goes with the row (a trigger).
    let result = sqlx::query("DELETE FROM identity_groups WHERE id = $1 AND source = $2")
        .bind(&id_text)
        .bind(source.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected() > 0)
}

pub async fn get_group(
    conn: &mut AnyConnection,
    source: &SourceName,
    id: Uuid,
) -> Result<Option<IdentityGroup>, StoreError> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM identity_groups WHERE id = $1 AND source = $2");
    sqlx::query(&sql)
        .bind(id.to_string())
        .bind(source.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(group_from_row)
        .transpose()
}

pub async fn find_group_by_external_id(
    conn: &mut AnyConnection,
    source: &SourceName,
    external_id: &str,
) -> Result<Option<IdentityGroup>, StoreError> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS} FROM identity_groups WHERE source = $1 AND external_id = $2"
    );
    sqlx::query(&sql)
        .bind(source.as_str())
        .bind(external_id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(group_from_row)
        .transpose()
}

/// Every group of one source, ordered by id.
pub async fn list_groups(
    conn: &mut AnyConnection,
    source: &SourceName,
) -> Result<Vec<IdentityGroup>, StoreError> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM identity_groups WHERE source = $1 ORDER BY id");
    sqlx::query(&sql)
        .bind(source.as_str())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(group_from_row)
        .collect()
}

/// Every group of every source, ordered by source then id.
pub async fn list_all_groups(conn: &mut AnyConnection) -> Result<Vec<IdentityGroup>, StoreError> {
    let sql = format!("SELECT {GROUP_COLUMNS} FROM identity_groups ORDER BY source, id");
    sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(group_from_row)
        .collect()
}

fn member_from_row(row: &AnyRow) -> Result<GroupMember, StoreError> {
    let kind: String = row.try_get("member_kind")?;
    Ok(GroupMember {
        id: parse_uuid(&row.try_get::<String, _>("member_id")?)?,
        kind: MemberKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("bad member kind {kind:?}")))?,
    })
}

/// The direct members of a group, ordered by member id.
pub async fn list_members(
    conn: &mut AnyConnection,
    group_id: Uuid,
) -> Result<Vec<GroupMember>, StoreError> {
    sqlx::query(
        "SELECT member_id, member_kind FROM identity_group_members WHERE group_id = $1 \
         ORDER BY member_id",
    )
    .bind(group_id.to_string())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(member_from_row)
    .collect()
}

/// Adds members that are not there yet; returns the ones actually added.
/// Row-level inserts mean concurrent additions to one group never lose each
/// other.
pub async fn add_members(
    conn: &mut AnyConnection,
    group_id: Uuid,
    members: &[GroupMember],
) -> Result<Vec<GroupMember>, StoreError> {
    let mut added = Vec::new();
    for member in members {
        let result = sqlx::query(
            "INSERT INTO identity_group_members (group_id, member_id, member_kind) \
             VALUES ($1, $2, $3) ON CONFLICT (group_id, member_id) DO NOTHING",
        )
        .bind(group_id.to_string())
        .bind(member.id.to_string())
        .bind(member.kind.as_str())
        .execute(&mut *conn)
        .await?;
        if result.rows_affected() > 0 {
            added.push(member.clone());
        }
    }
    Ok(added)
}

/// Removes members; returns the ids actually removed.
pub async fn remove_members(
    conn: &mut AnyConnection,
    group_id: Uuid,
    member_ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    let mut removed = Vec::new();
    for id in member_ids {
        let result = sqlx::query(
            "DELETE FROM identity_group_members WHERE group_id = $1 AND member_id = $2",
        )
        .bind(group_id.to_string())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
        if result.rows_affected() > 0 {
            removed.push(*id);
        }
    }
    Ok(removed)
}

/// Joins each member row `m` of group `g` to the member it names (`mu` a
/// user, `mg` a group, by primary key) so that [`MEMBER_IN_GROUPS_SOURCE`]
/// can keep only members of `g`'s own source. The database refuses any
/// other member row; reads of memberships check it too, so not even a bad
/// row could carry a membership across sources.
const MEMBER_JOINS: &str = "\
    LEFT JOIN identity_users mu ON m.member_kind = 'User' AND mu.id = m.member_id \
    LEFT JOIN identity_groups mg ON m.member_kind = 'Group' AND mg.id = m.member_id";

/// See [`MEMBER_JOINS`].
const MEMBER_IN_GROUPS_SOURCE: &str = "COALESCE(mu.source, mg.source) = g.source";

/// Every (group, member) pair of one source: what the mapping needs to work
/// out each person's groups, nested ones included. Both ends are of the
/// source.
pub async fn list_memberships(
    conn: &mut AnyConnection,
    source: &SourceName,
) -> Result<Vec<(Uuid, GroupMember)>, StoreError> {
    sqlx::query(&format!(
        "SELECT m.group_id, m.member_id, m.member_kind FROM identity_group_members m \
         JOIN identity_groups g ON g.id = m.group_id {MEMBER_JOINS} \
         WHERE g.source = $1 AND {MEMBER_IN_GROUPS_SOURCE} ORDER BY m.group_id, m.member_id"
    ))
    .bind(source.as_str())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        let group = parse_uuid(&row.try_get::<String, _>("group_id")?)?;
        Ok((group, member_from_row(row)?))
    })
    .collect()
}

/// The groups of `source` a user or group of `source` is a direct member
/// of.
pub async fn groups_of_member(
    conn: &mut AnyConnection,
    source: &SourceName,
    member_id: Uuid,
) -> Result<Vec<IdentityGroup>, StoreError> {
    let sql = format!(
        "SELECT {} FROM identity_groups g JOIN identity_group_members m ON m.group_id = g.id \
         {MEMBER_JOINS} WHERE m.member_id = $1 AND g.source = $2 AND {MEMBER_IN_GROUPS_SOURCE} \
         ORDER BY g.id",
        GROUP_COLUMNS
            .split(", ")
            .map(|c| format!("g.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    sqlx::query(&sql)
        .bind(member_id.to_string())
        .bind(source.as_str())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(group_from_row)
        .collect()
}

/// A user whose primary e-mail cannot be provisioned (see
/// [`crate::domain::email`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailProblemUser {
    pub source: SourceName,
    pub id: Uuid,
    pub user_name: String,
    pub problem: EmailProblem,
}

/// How many users of any source have an unusable primary e-mail, and the
/// first `limit` of them (by source, then user name).
pub async fn users_with_email_problem(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<(i64, Vec<EmailProblemUser>), StoreError> {
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM identity_users WHERE email_problem IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    let sample = sqlx::query(
        "SELECT source, id, user_name, email_problem FROM identity_users \
         WHERE email_problem IS NOT NULL ORDER BY source, user_name_lc LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        let code: String = row.try_get("email_problem")?;
        Ok(EmailProblemUser {
            source: SourceName(row.try_get("source")?),
            id: parse_uuid(&row.try_get::<String, _>("id")?)?,
            user_name: row.try_get("user_name")?,
            problem: EmailProblem::parse(&code)
                .ok_or_else(|| StoreError::Corrupt(format!("bad email problem {code:?}")))?,
        })
    })
    .collect::<Result<_, StoreError>>()?;
    Ok((count, sample))
}

//! Which Tyk users and groups tyk-idsync manages. A row is written as soon
//! as Tyk confirms a creation (or when we adopt an existing user), before
//! anything else happens to that person, so a crash can never leave a user
//! we created looking unmanaged.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::StoreError;
use crate::domain::Timestamp;
use crate::sync::{ManagedGroup, ManagedUser, Ownership};

fn managed_user_from_row(row: &AnyRow) -> Result<ManagedUser, StoreError> {
    Ok(ManagedUser {
        tyk_user_id: row.try_get("tyk_user_id")?,
        org_id: row.try_get("org_id")?,
        email: row.try_get("email")?,
        managed_since: Timestamp(row.try_get("managed_since")?),
        adopted: row.try_get::<i64, _>("adopted")? != 0,
        deactivated_at: row
            .try_get::<Option<i64>, _>("deactivated_at")?
            .map(Timestamp),
        access_key_reset_at: row
            .try_get::<Option<i64>, _>("access_key_reset_at")?
            .map(Timestamp),
    })
}

/// Notes that a creation for this person is about to be sent to Tyk.
pub async fn begin_create(
    conn: &mut AnyConnection,
    org_id: &str,
    email: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sync_pending_creates (org_id, email, started_at) VALUES ($1, $2, $3) \
         ON CONFLICT (org_id, email) DO NOTHING",
    )
    .bind(org_id)
    .bind(crate::domain::fold_key(email))
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// [`begin_create`] for many people, in multi-row statements.
pub async fn begin_creates(
    conn: &mut AnyConnection,
    people: &[(&str, &str)],
    now: Timestamp,
) -> Result<(), StoreError> {
    for chunk in people.chunks(super::bulk::rows_per_statement(conn, 3)) {
        let sql = format!(
            "INSERT INTO sync_pending_creates (org_id, email, started_at) VALUES {} \
             ON CONFLICT (org_id, email) DO NOTHING",
            super::bulk::values_after(0, chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for (org_id, email) in chunk {
            query = query
                .bind(*org_id)
                .bind(crate::domain::fold_key(email))
                .bind(now.0);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Drops a pending creation (it failed for good, or its user is recorded).
pub async fn end_create(
    conn: &mut AnyConnection,
    org_id: &str,
    email: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sync_pending_creates WHERE org_id = $1 AND email = $2")
        .bind(org_id)
        .bind(crate::domain::fold_key(email))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Drops pending creations whose person is recorded as managed (left by a
/// run cancelled mid-way); returns how many.
pub async fn prune_pending_creates(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM sync_pending_creates WHERE EXISTS (SELECT 1 FROM sync_managed_users m \
         WHERE m.org_id = sync_pending_creates.org_id AND m.email = sync_pending_creates.email)",
    )
    .execute(&mut *conn)
    .await?;
    let groups = sqlx::query(
        "DELETE FROM sync_pending_group_creates WHERE EXISTS (SELECT 1 FROM sync_managed_groups m \
         WHERE m.org_id = sync_pending_group_creates.org_id \
         AND m.name = sync_pending_group_creates.name)",
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() + groups.rows_affected())
}

/// Records (or refreshes) a managed user and ends any pending creation for
/// it. A previous record for the same org and e-mail under another Tyk id
/// is replaced: the Tyk id just confirmed is the live one.
pub async fn record_user(conn: &mut AnyConnection, user: &ManagedUser) -> Result<(), StoreError> {
    end_create(conn, &user.org_id, &user.email).await?;
    sqlx::query(
        "DELETE FROM sync_managed_users WHERE org_id = $1 AND email = $2 AND tyk_user_id <> $3",
    )
    .bind(&user.org_id)
    .bind(crate::domain::fold_key(&user.email))
    .bind(&user.tyk_user_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO sync_managed_users \
         (tyk_user_id, org_id, email, managed_since, adopted, deactivated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (tyk_user_id) DO UPDATE SET org_id = excluded.org_id, \
         email = excluded.email, deactivated_at = excluded.deactivated_at",
    )
    .bind(&user.tyk_user_id)
    .bind(&user.org_id)
    .bind(crate::domain::fold_key(&user.email))
    .bind(user.managed_since.0)
    .bind(i64::from(user.adopted))
    .bind(user.deactivated_at.map(|t| t.0))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Drops the pending creations of these (org, e-mail) pairs, in multi-row
/// statements.
pub async fn end_creates(
    conn: &mut AnyConnection,
    people: &[(&str, &str)],
) -> Result<(), StoreError> {
    for chunk in people.chunks(super::bulk::rows_per_statement(conn, 2)) {
        let matches = (0..chunk.len())
            .map(|n| format!("(org_id = ${} AND email = ${})", 2 * n + 1, 2 * n + 2))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!("DELETE FROM sync_pending_creates WHERE {matches}");
        let mut query = sqlx::query(&sql);
        for (org_id, email) in chunk {
            query = query.bind(*org_id).bind(crate::domain::fold_key(email));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// [`record_user`] for many users in multi-row statements (call it on a
/// transaction): their pending creations end, a previous record of the
/// same org and e-mail under another Tyk id goes, and each is recorded or
/// refreshed. A Tyk id given twice is recorded as given last.
pub async fn record_users(
    conn: &mut AnyConnection,
    users: &[ManagedUser],
) -> Result<(), StoreError> {
    // Kept: each Tyk id's last occurrence, in order.
    let mut seen = std::collections::HashSet::with_capacity(users.len());
    let mut users: Vec<&ManagedUser> = users
        .iter()
        .rev()
        .filter(|u| seen.insert(u.tyk_user_id.as_str()))
        .collect();
    users.reverse();
    let people: Vec<(&str, &str)> = users
        .iter()
        .map(|u| (u.org_id.as_str(), u.email.as_str()))
        .collect();
    end_creates(conn, &people).await?;
    for chunk in users.chunks(super::bulk::rows_per_statement(conn, 3)) {
        let stale = (0..chunk.len())
            .map(|n| {
                format!(
                    "(org_id = ${} AND email = ${} AND tyk_user_id <> ${})",
                    3 * n + 1,
                    3 * n + 2,
                    3 * n + 3
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!("DELETE FROM sync_managed_users WHERE {stale}");
        let mut query = sqlx::query(&sql);
        for user in chunk {
            query = query
                .bind(&user.org_id)
                .bind(crate::domain::fold_key(&user.email))
                .bind(&user.tyk_user_id);
        }
        query.execute(&mut *conn).await?;
    }
    for chunk in users.chunks(super::bulk::rows_per_statement(conn, 6)) {
        let sql = format!(
            "INSERT INTO sync_managed_users \
             (tyk_user_id, org_id, email, managed_since, adopted, deactivated_at) VALUES {} \
             ON CONFLICT (tyk_user_id) DO UPDATE SET org_id = excluded.org_id, \
             email = excluded.email, deactivated_at = excluded.deactivated_at",
            super::bulk::values_after(0, chunk.len(), 6)
        );
        let mut query = sqlx::query(&sql);
        for user in chunk {
            query = query
                .bind(&user.tyk_user_id)
                .bind(&user.org_id)
                .bind(crate::domain::fold_key(&user.email))
                .bind(user.managed_since.0)
                .bind(i64::from(user.adopted))
                .bind(user.deactivated_at.map(|t| t.0));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Starts (`Some`) or clears (`None`) the deprovisioning grace period; a
/// reactivation (`None`) also forgets the last access-key reset, so the
/// next deactivation resets the key again.
pub async fn set_deactivated_at(
    conn: &mut AnyConnection,
    tyk_user_id: &str,
    at: Option<Timestamp>,
) -> Result<(), StoreError> {
    let sql = match at {
        Some(_) => "UPDATE sync_managed_users SET deactivated_at = $1 WHERE tyk_user_id = $2",
        None => {
            "UPDATE sync_managed_users SET deactivated_at = $1, access_key_reset_at = NULL \
             WHERE tyk_user_id = $2"
        }
    };
    sqlx::query(sql)
        .bind(at.map(|t| t.0))
        .bind(tyk_user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Notes that the user's Dashboard API access key was reset at `at`.
pub async fn set_access_key_reset_at(
    conn: &mut AnyConnection,
    tyk_user_id: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sync_managed_users SET access_key_reset_at = $1 WHERE tyk_user_id = $2")
        .bind(at.0)
        .bind(tyk_user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn forget_user(conn: &mut AnyConnection, tyk_user_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sync_managed_users WHERE tyk_user_id = $1")
        .bind(tyk_user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn find_user_by_email(
    conn: &mut AnyConnection,
    org_id: &str,
    email: &str,
) -> Result<Option<ManagedUser>, StoreError> {
    sqlx::query(
        "SELECT tyk_user_id, org_id, email, managed_since, adopted, deactivated_at, \
         access_key_reset_at \
         FROM sync_managed_users WHERE org_id = $1 AND email = $2",
    )
    .bind(org_id)
    .bind(crate::domain::fold_key(email))
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(managed_user_from_row)
    .transpose()
}

pub async fn list_users(conn: &mut AnyConnection) -> Result<Vec<ManagedUser>, StoreError> {
    sqlx::query(
        "SELECT tyk_user_id, org_id, email, managed_since, adopted, deactivated_at, \
         access_key_reset_at \
         FROM sync_managed_users ORDER BY org_id, email",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(managed_user_from_row)
    .collect()
}

pub async fn count_users(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM sync_managed_users")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// Notes that a group creation is about to be sent to Tyk.
pub async fn begin_group_create(
    conn: &mut AnyConnection,
    org_id: &str,
    name: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sync_pending_group_creates (org_id, name, started_at) VALUES ($1, $2, $3) \
         ON CONFLICT (org_id, name) DO NOTHING",
    )
    .bind(org_id)
    .bind(name)
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn end_group_create(
    conn: &mut AnyConnection,
    org_id: &str,
    name: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sync_pending_group_creates WHERE org_id = $1 AND name = $2")
        .bind(org_id)
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records (or refreshes) a managed group and ends its pending creation;
/// call inside a transaction.
pub async fn record_group(
    conn: &mut AnyConnection,
    group: &ManagedGroup,
    now: Timestamp,
) -> Result<(), StoreError> {
    end_group_create(conn, &group.org_id, &group.name).await?;
    sqlx::query(
        "INSERT INTO sync_managed_groups (tyk_group_id, org_id, name, managed_since) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tyk_group_id) DO UPDATE SET org_id = excluded.org_id, name = excluded.name",
    )
    .bind(&group.tyk_group_id)
    .bind(&group.org_id)
    .bind(&group.name)
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn forget_group(conn: &mut AnyConnection, tyk_group_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sync_managed_groups WHERE tyk_group_id = $1")
        .bind(tyk_group_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn list_groups(conn: &mut AnyConnection) -> Result<Vec<ManagedGroup>, StoreError> {
    let rows = sqlx::query(
        "SELECT tyk_group_id, org_id, name FROM sync_managed_groups ORDER BY org_id, name",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ManagedGroup {
                tyk_group_id: row.try_get("tyk_group_id")?,
                org_id: row.try_get("org_id")?,
                name: row.try_get("name")?,
            })
        })
        .collect()
}

/// Everything the planner needs to know about what we manage.
pub async fn load_ownership(conn: &mut AnyConnection) -> Result<Ownership, StoreError> {
    let users = list_users(conn).await?;
    let groups = list_groups(conn).await?;
    let mut ownership = Ownership::from_parts(users, groups);
    let pending = sqlx::query("SELECT org_id, email FROM sync_pending_creates")
        .fetch_all(&mut *conn)
        .await?;
    for row in pending {
        ownership
            .pending_creates
            .insert((row.try_get("org_id")?, row.try_get("email")?));
    }
    let pending_groups = sqlx::query("SELECT org_id, name FROM sync_pending_group_creates")
        .fetch_all(&mut *conn)
        .await?;
    for row in pending_groups {
        ownership
            .pending_group_creates
            .insert((row.try_get("org_id")?, row.try_get("name")?));
    }
    Ok(ownership)
}

/// What the planner needs to know about what we manage, for these
/// lower-cased e-mails only (event runs), in chunks of at most 500
/// e-mails per query.
pub async fn load_ownership_for(
    conn: &mut AnyConnection,
    emails: &std::collections::BTreeSet<String>,
) -> Result<Ownership, StoreError> {
    let mut users = Vec::new();
    let mut pending = std::collections::BTreeSet::new();
    let emails: Vec<&String> = emails.iter().collect();
    for chunk in emails.chunks(500) {
        let list = super::bulk::placeholders(1, chunk.len());
        let sql = format!(
            "SELECT tyk_user_id, org_id, email, managed_since, adopted, deactivated_at, \
         access_key_reset_at \
             FROM sync_managed_users WHERE email IN ({list})"
        );
        let mut query = sqlx::query(&sql);
        for email in chunk {
            query = query.bind(email.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            users.push(managed_user_from_row(&row)?);
        }
        let sql = format!("SELECT org_id, email FROM sync_pending_creates WHERE email IN ({list})");
        let mut query = sqlx::query(&sql);
        for email in chunk {
            query = query.bind(email.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            pending.insert((row.try_get("org_id")?, row.try_get("email")?));
        }
    }
    let groups = list_groups(conn).await?;
    let mut ownership = Ownership::from_parts(users, groups);
    ownership.pending_creates = pending;
    let pending_groups = sqlx::query("SELECT org_id, name FROM sync_pending_group_creates")
        .fetch_all(&mut *conn)
        .await?;
    for row in pending_groups {
        ownership
            .pending_group_creates
            .insert((row.try_get("org_id")?, row.try_get("name")?));
    }
    Ok(ownership)
}

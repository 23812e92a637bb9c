//! Embedded migrations, one directory per dialect under `migrations/`.

use sqlx::Row;
use sqlx::migrate::Migrator;

use super::{Backend, Store, StoreError};

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

/// The migration that removes group members outside their group's source
/// (cross-source or naming nobody) and makes the database refuse them.
const MEMBERS_WITHIN_SOURCE: i64 = 20261202000100;

/// The member rows [`MEMBERS_WITHIN_SOURCE`] removes: the same condition as
/// its `DELETE` (neither a user nor a group of the group's source, as the
/// row's kind says).
const MEMBERS_OUTSIDE_SOURCE: &str = "SELECT COUNT(*) FROM identity_group_members m \
    LEFT JOIN identity_groups g ON g.id = m.group_id \
    LEFT JOIN identity_users u ON m.member_kind = 'User' AND u.id = m.member_id \
    LEFT JOIN identity_groups mg ON m.member_kind = 'Group' AND mg.id = m.member_id \
    WHERE g.id IS NULL OR COALESCE(u.source, mg.source) IS NULL \
    OR COALESCE(u.source, mg.source) <> g.source";

/// Applies the pending migrations. SQL migrations cannot log, so the rows
/// [`MEMBERS_WITHIN_SOURCE`] will remove are counted here just before and
/// logged once it is applied. Returns that count (0 if it was applied
/// before).
pub(super) async fn run(store: &Store) -> Result<u64, StoreError> {
    let outside = members_outside_source_pending(store).await?;
    migrator(store.backend).run(&store.pool).await?;
    super::rekey::rekey_folded(store).await?;
    if outside > 0 {
        tracing::warn!(
            removed = outside,
            "removed {outside} cross-source or dangling group members"
        );
    }
    Ok(outside)
}

/// How many member rows [`MEMBERS_WITHIN_SOURCE`] will remove, if it is
/// pending on a database whose member table exists.
async fn members_outside_source_pending(store: &Store) -> Result<u64, StoreError> {
    if !table_exists(store, "_sqlx_migrations").await?
        || !table_exists(store, "identity_group_members").await?
    {
        return Ok(0);
    }
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE version = $1")
            .bind(MEMBERS_WITHIN_SOURCE)
            .fetch_one(&store.pool)
            .await?;
    if applied > 0 {
        return Ok(0);
    }
    let outside: i64 = sqlx::query_scalar(MEMBERS_OUTSIDE_SOURCE)
        .fetch_one(&store.pool)
        .await?;
    Ok(u64::try_from(outside).unwrap_or(0))
}

/// How far the database is from the embedded migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub applied: usize,
    pub pending: Vec<i64>,
}

impl MigrationStatus {
    pub fn is_current(&self) -> bool {
        self.pending.is_empty()
    }
}

pub(super) async fn status(store: &Store) -> Result<MigrationStatus, StoreError> {
    let embedded: Vec<i64> = migrator(store.backend)
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect();
    let exists = table_exists(store, "_sqlx_migrations").await?;
    let applied: Vec<i64> = if exists {
        sqlx::query("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_all(&store.pool)
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let pending = embedded
        .iter()
        .copied()
        .filter(|v| !applied.contains(v))
        .collect();
    Ok(MigrationStatus {
        applied: applied.len(),
        pending,
    })
}

async fn table_exists(store: &Store, table: &str) -> Result<bool, StoreError> {
    let sql = match store.backend {
        Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
    };
    let count: i64 = sqlx::query_scalar(sql)
        .bind(table)
        .fetch_one(&store.pool)
        .await?;
    Ok(count > 0)
}

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

pub(super) async fn run(store: &Store) -> Result<(), StoreError> {
    migrator(store.backend).run(&store.pool).await?;
    super::rekey::rekey_folded(store).await?;
    Ok(())
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

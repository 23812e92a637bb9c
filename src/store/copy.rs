//! Copying all state from one store to another (`tyk-idsync migrate-store`),
//! e.g. from the embedded SQLite file to PostgreSQL when a deployment grows
//! to several replicas.
//!
//! Both stores are migrated first, so they share one schema. Tables are
//! copied parents first (following the foreign keys the source declares),
//! each in one transaction; then PostgreSQL sequences are moved past the
//! copied ids. The target must be empty: copying never merges.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::any::AnyTypeInfoKind;
use sqlx::{AnyConnection, Column, Executor, Row};

use super::{Backend, Store, StoreError};

/// Rows copied per table.
pub type CopyReport = BTreeMap<String, u64>;

pub async fn copy_all(from: &Store, to: &Store) -> Result<CopyReport, StoreError> {
    from.migrate().await?;
    to.migrate().await?;
    let mut src = from.pool().acquire().await?;
    let mut dst = to.pool().acquire().await?;
    let tables = tables_in_dependency_order(from, &mut src).await?;
    for table in &tables {
        let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *dst)
            .await?;
        if count > 0 {
            return Err(StoreError::Conflict {
                entity: "target store",
                detail: format!(
                    "table {table} already holds {count} rows; copy into an empty database"
                ),
            });
        }
    }
    let mut report = CopyReport::new();
    for table in &tables {
        let copied = copy_table(&mut src, to, table).await?;
        report.insert(table.clone(), copied);
    }
    if to.backend() == Backend::Postgres {
        advance_sequences(&mut dst).await?;
    }
    Ok(report)
}

async fn copy_table(src: &mut AnyConnection, to: &Store, table: &str) -> Result<u64, StoreError> {
    let rows = sqlx::query(&format!("SELECT * FROM {table}"))
        .fetch_all(&mut *src)
        .await?;
    let Some(first) = rows.first() else {
        return Ok(0);
    };
    let columns: Vec<String> = first
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let insert = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        placeholders.join(", ")
    );
    let mut tx = to.begin().await?;
    // Bind by the target's column types, so NULLs are typed right too. The
    // schema keeps to BIGINT and TEXT columns (see store/mod.rs).
    let described = tx.describe(&format!("SELECT * FROM {table}")).await?;
    let integer: BTreeSet<String> = described
        .columns()
        .iter()
        .filter(|c| {
            matches!(
                c.type_info().kind(),
                AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt
            )
        })
        .map(|c| c.name().to_string())
        .collect();
    for row in &rows {
        let mut query = sqlx::query(&insert);
        for (i, column) in columns.iter().enumerate() {
            query = if integer.contains(column) {
                query.bind(row.try_get::<Option<i64>, _>(i)?)
            } else {
                query.bind(row.try_get::<Option<String>, _>(i)?)
            };
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(rows.len() as u64)
}

/// User tables of the source, each after the tables it references.
async fn tables_in_dependency_order(
    store: &Store,
    conn: &mut AnyConnection,
) -> Result<Vec<String>, StoreError> {
    let (tables_sql, fks_sql) = match store.backend() {
        Backend::Sqlite => (
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
            "SELECT m.name, p.\"table\" FROM sqlite_master m \
             JOIN pragma_foreign_key_list(m.name) p WHERE m.type = 'table'",
        ),
        Backend::Postgres => (
            "SELECT table_name::TEXT FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             AND table_name <> '_sqlx_migrations' ORDER BY table_name",
            "SELECT tc.table_name::TEXT, ccu.table_name::TEXT \
             FROM information_schema.table_constraints tc \
             JOIN information_schema.constraint_column_usage ccu \
               ON ccu.constraint_name = tc.constraint_name \
             WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()",
        ),
    };
    let tables: Vec<String> = sqlx::query_scalar(tables_sql).fetch_all(&mut *conn).await?;
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in sqlx::query(fks_sql).fetch_all(&mut *conn).await? {
        let child: String = row.try_get(0)?;
        let parent: String = row.try_get(1)?;
        if child != parent {
            parents.entry(child).or_default().insert(parent);
        }
    }
    // Not a declared foreign key, but checked as one by the database's
    // triggers: a member row needs its user or group to be there already.
    if tables.iter().any(|t| t == "identity_group_members") {
        parents
            .entry("identity_group_members".into())
            .or_default()
            .extend(["identity_users".to_string(), "identity_groups".to_string()]);
    }
    let mut ordered: Vec<String> = Vec::new();
    let mut remaining: Vec<String> = tables;
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|t| {
            let ready = parents
                .get(t)
                .is_none_or(|ps| ps.iter().all(|p| ordered.contains(p)));
            if ready {
                ordered.push(t.clone());
            }
            !ready
        });
        if remaining.len() == before {
            return Err(StoreError::Corrupt(format!(
                "foreign keys form a cycle among {remaining:?}"
            )));
        }
    }
    Ok(ordered)
}

/// Moves every serial sequence past the largest copied id.
async fn advance_sequences(conn: &mut AnyConnection) -> Result<(), StoreError> {
    let serials = sqlx::query(
        "SELECT table_name::TEXT, column_name::TEXT FROM information_schema.columns \
         WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in serials {
        let table: String = row.try_get(0)?;
        let column: String = row.try_get(1)?;
        let max: Option<i64> = sqlx::query_scalar(&format!("SELECT MAX({column}) FROM {table}"))
            .fetch_one(&mut *conn)
            .await?;
        if let Some(max) = max {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), {max})::TEXT"
            ))
            .fetch_one(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

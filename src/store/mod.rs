//! Persistence through sqlx on SQLite (the embedded default) or PostgreSQL.
//!
//! Both dialects go through sqlx's `Any` driver with runtime-checked queries:
//! one set of SQL (`$1` placeholders work on both), one set of repository
//! functions, and the same test-suite run against each backend. Where the
//! dialects really differ (row locking, advisory locks, LISTEN/NOTIFY) the
//! code branches on [`Backend`]. Timestamps are epoch milliseconds and ids
//! are UUID text and booleans are BIGINT 0/1, which keeps every column inside
//! the types `Any` decodes on both engines (it has no SQLite `BOOLEAN`).

pub mod bulk;
pub mod checked_members;
pub mod copy;
mod error;
pub mod events;
pub mod group_members;
pub mod identities;
pub mod ldap_fingerprints;
pub mod ldap_state;
pub mod mappings;
mod migrate;
pub mod people_search;
pub mod rekey;
pub mod retry;
pub mod scim_query;
pub mod settings;
pub mod stats;
pub mod sync_audit;
pub mod sync_outbox;
pub mod sync_quarantine;
pub mod sync_runs;
pub mod sync_scope;
pub mod sync_state;
pub mod tokens;
pub mod ui_sessions;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use error::StoreError;
pub use migrate::MigrationStatus;

/// Which database engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Picks the backend from a database URL.
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// PostgreSQL `application_name` of every pooled connection (see
    /// [`application_name`]); ignored on SQLite.
    pub application_name: Option<String>,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            application_name: None,
        }
    }
}

/// How a replica's sessions show in `pg_stat_activity`:
/// `tyk-idsync/<role>/<listen address>`, role one of `pool`,
/// `leader-lock`, `outbox-listener` (or a command's name).
pub fn application_name(role: &str, listen: &str) -> String {
    // PostgreSQL truncates at 63 bytes; keep it ASCII so the cut is clean.
    let name: String = format!("tyk-idsync/{role}/{listen}")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(63)
        .collect();
    name
}

/// `url` with `application_name` added as a connection parameter, unless
/// the URL names one already (the operator's choice wins) or is not a
/// PostgreSQL URL.
pub fn with_application_name(url: &str, name: &str) -> String {
    if Backend::from_url(url) != Some(Backend::Postgres) {
        return url.to_string();
    }
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    if parsed.query_pairs().any(|(k, _)| k == "application_name") {
        return url.to_string();
    }
    parsed
        .query_pairs_mut()
        .append_pair("application_name", name);
    parsed.to_string()
}

/// The handle every repository function takes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer. Writers of this process queue here instead of
    /// meeting SQLITE_BUSY, whose busy handler sleeps in steps of up to
    /// 100 ms and would cap write throughput under contention.
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    token_cache: std::sync::Arc<tokens::TokenCache>,
}

/// A read-then-write transaction from [`Store::begin_write`]; derefs to the
/// sqlx transaction. Dropping it without `commit` rolls back.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::Transaction<'static, sqlx::Any>;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl Store {
    /// Opens the pool. For SQLite the parent directory and the file are
    /// created on first use, WAL mode is switched on and writers wait for
    /// each other instead of failing with `SQLITE_BUSY`.
    pub async fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(&options.url)
            .ok_or_else(|| StoreError::UnsupportedUrl(redact_url(&options.url)))?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(&options.url)?,
            Backend::Postgres => match &options.application_name {
                Some(name) => with_application_name(&options.url, name),
                None => options.url.clone(),
            },
        };
        let connect_options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Connect(e.to_string()))?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // SQLite has one writer; a small pool avoids lock convoys.
                Backend::Sqlite => options.max_connections.clamp(1, 4),
                Backend::Postgres => options.max_connections.max(1),
            })
            .acquire_timeout(options.acquire_timeout)
            // No ping before each checkout: it is a round trip per query (to
            // SQLite's worker thread, or to PostgreSQL). A PostgreSQL
            // connection the server dropped fails its next query instead;
            // writes retry such I/O errors (`StoreError::is_transient`).
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect_options)
            .await
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        Ok(Self {
            pool,
            backend,
            write_lock: Default::default(),
            token_cache: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Recently read SCIM token rows (see [`tokens::TokenCache`]).
    pub fn token_cache(&self) -> &tokens::TokenCache {
        &self.token_cache
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection from the pool, its error already the store's.
    pub async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        self.begin_uncancellable(None).await
    }

    /// Opens a transaction (with `statement`, else `BEGIN`) in a task of its
    /// own, so that a caller dropped while it is being opened (an aborted
    /// run) cannot leave it half open. Dropped mid-`BEGIN`, sqlx counts the
    /// transaction as open on a connection that goes back to the pool
    /// without it, and every later transaction on that connection fails
    /// ("attempted to call begin_with at non-zero transaction depth"). Run
    /// to completion here, the transaction is returned, or dropped with a
    /// rollback when nobody waits for it any more.
    async fn begin_uncancellable(
        &self,
        statement: Option<&'static str>,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let pool = self.pool.clone();
        let opening = tokio::spawn(async move {
            match statement {
                Some(statement) => pool.begin_with(statement).await,
                None => pool.begin().await,
            }
        });
        match opening.await {
            Ok(tx) => Ok(tx?),
            Err(e) => Err(StoreError::Connect(format!("opening a transaction: {e}"))),
        }
    }

    /// A transaction that reads and then writes. On SQLite it takes the
    /// write lock up front (`BEGIN IMMEDIATE`): a deferred transaction that
    /// read before another writer committed could not upgrade and would
    /// fail with SQLITE_BUSY_SNAPSHOT instead of waiting.
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        match self.backend {
            Backend::Sqlite => {
                let turn = self.write_lock.clone().lock_owned().await;
                Ok(WriteTx {
                    tx: self.begin_uncancellable(Some("BEGIN IMMEDIATE")).await?,
                    _turn: Some(turn),
                })
            }
            Backend::Postgres => Ok(WriteTx {
                tx: self.begin().await?,
                _turn: None,
            }),
        }
    }

    /// Applies every embedded migration that is not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate::run(self).await.map(|_| ())
    }

    /// [`Store::migrate`], returning how many group members outside their
    /// group's source the migration that forbids them removed (0 when it
    /// had been applied before); that number is also logged.
    pub async fn migrate_counting_removed_members(&self) -> Result<u64, StoreError> {
        migrate::run(self).await
    }

    /// Whether the database answers and every embedded migration is applied.
    pub async fn migration_status(&self) -> Result<MigrationStatus, StoreError> {
        migrate::status(self).await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Makes sure a SQLite file URL will create its file (and directory).
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let parent = Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent.filter(|_| path != ":memory:") {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Connect(format!("cannot create {}: {e}", parent.display())))?;
    }
    let query = match query {
        Some(q) if q.contains("mode=") => q.to_string(),
        Some(q) => format!("{q}&mode=rwc"),
        None => "mode=rwc".to_string(),
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// Hides the password in a database URL for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_name_is_added_to_postgres_urls_only_once() {
        let name = application_name("leader-lock", "127.0.0.1:8080");
        assert_eq!(name, "tyk-idsync/leader-lock/127.0.0.1:8080");
        assert_eq!(
            with_application_name("postgres://u@db:5432/idsync?sslmode=require", &name),
            "postgres://u@db:5432/idsync?sslmode=require&application_name=tyk-idsync%2Fleader-lock%2F127.0.0.1%3A8080"
        );
        let chosen = "postgres://u@db/idsync?application_name=mine";
        assert_eq!(with_application_name(chosen, &name), chosen);
        assert_eq!(
            with_application_name("sqlite://x.db", &name),
            "sqlite://x.db"
        );
        assert!(application_name("pool", &"x".repeat(100)).len() <= 63);
    }

    #[test]
    fn backend_follows_the_url_scheme() {
        assert_eq!(
            Backend::from_url("sqlite://data/x.db"),
            Some(Backend::Sqlite)
        );
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://u@h/db"), None);
    }

    #[test]
    fn redaction_hides_only_the_password() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/idsync"),
            "postgres://app:REDACTED@db:5432/idsync"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn sqlite_urls_are_opened_read_write_create() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/store.db");
        let url = prepare_sqlite_url(&format!("sqlite://{}", path.display())).expect("url");
        assert!(url.ends_with("?mode=rwc"), "{url}");
        assert!(path.parent().expect("parent").is_dir());
    }
}

use thiserror::Error;

/// Errors of the persistence layer.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot open the database: {0}")]
    Connect(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{entity} already exists: {detail}")]
    Conflict {
        entity: &'static str,
        detail: String,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// How the database words its refusal of a group member that is not a user
/// or group of the group's source (the triggers of migration
/// `20261202000100_members_within_source`); PostgreSQL adds `: <member id>`.
const MEMBER_OUTSIDE_SOURCE: &str = "group member outside its source";

impl StoreError {
    /// The database refused a group member outside the group's source:
    /// `Some(id)` of the refused member when the database named it (on
    /// PostgreSQL; SQLite cannot), `Some(None)` when it did not, `None` for
    /// any other error.
    pub fn member_outside_source(&self) -> Option<Option<String>> {
        let StoreError::Database(sqlx::Error::Database(db)) = self else {
            return None;
        };
        let message = db.message();
        let at = message.find(MEMBER_OUTSIDE_SOURCE)?;
        let named = message[at + MEMBER_OUTSIDE_SOURCE.len()..]
            .strip_prefix(": ")
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty());
        Some(named)
    }

    /// A unique-constraint violation, which callers turn into a conflict.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => db.is_unique_violation(),
            StoreError::Conflict { .. } => true,
            _ => false,
        }
    }

    /// Whether retrying the same operation (on another connection) may
    /// succeed: a lost or closed connection (PostgreSQL's SQLSTATE class
    /// `08`, and `57P01`-`57P03`: the server terminated the session or is
    /// restarting), pool exhausted, SQLite busy, serialization failure or
    /// deadlock.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Io(_))
            | StoreError::Database(sqlx::Error::Tls(_))
            | StoreError::Database(sqlx::Error::PoolTimedOut)
            | StoreError::Database(sqlx::Error::PoolClosed) => true,
            StoreError::Database(sqlx::Error::Database(db)) => {
                let code = db.code();
                let code = code.as_deref().unwrap_or_default();
                code.starts_with("08")
                    || matches!(
                        code,
                        "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "5" | "6" | "517"
                    )
            }
            StoreError::Connect(_) => true,
            _ => false,
        }
    }
}

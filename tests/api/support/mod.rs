//! Real components for the integration tests: PostgreSQL, slapd, the app.

pub mod app;
pub mod postgres;
pub mod prism;
pub mod scim;
pub mod slapd;
pub mod stack;
pub mod standin;
pub mod tib;

use std::net::TcpListener;

/// A free loopback port (the listener is dropped before the caller binds).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// The message a test fails with when a component is missing.
pub fn install_hint(what: &str, package: &str) -> String {
    format!(
        "{what} not found: install it with `apt-get install -y {package}` \
         (scripts/test.sh does this for you)"
    )
}

/// Which database engine a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A store on a fresh database of the given engine, migrated. The returned
/// guard keeps a SQLite file alive for the test's duration.
pub async fn fresh_store(db: Db) -> (tyk_idsync::store::Store, Option<tempfile::TempDir>) {
    let (url, dir) = fresh_database_url(db).await;
    let store = tyk_idsync::store::Store::connect(&tyk_idsync::store::StoreOptions::new(url))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, dir)
}

pub async fn fresh_database_url(db: Db) -> (String, Option<tempfile::TempDir>) {
    match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}/store.db", dir.path().display());
            (url, Some(dir))
        }
        Db::Postgres => (postgres::fresh_database().await, None),
    }
}

/// Runs an async test body once per database engine, as two tests.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$body($crate::support::Db::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$body($crate::support::Db::Postgres).await;
            }
        }
    };
}

/// A stored identity user with only the fields tests vary; the rest empty.
pub fn stored_user(source: &str, user_name: &str, email: &str) -> tyk_idsync::domain::IdentityUser {
    tyk_idsync::domain::IdentityUser {
        id: uuid::Uuid::new_v4(),
        source: tyk_idsync::domain::SourceName::new(source),
        external_id: None,
        user_name: user_name.into(),
        email: Some(email.into()),
        email_problem: None,
        given_name: None,
        family_name: None,
        display_name: None,
        active: true,
        attributes: serde_json::json!({}),
        version: 1,
        created_at: tyk_idsync::domain::Timestamp(1),
        updated_at: tyk_idsync::domain::Timestamp(1),
    }
}

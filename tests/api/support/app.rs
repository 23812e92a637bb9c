//! The real application on a random loopback port (zero2prod's spawn_app).

use tyk_idsync::config::Config;
use tyk_idsync::startup::Application;

use super::{Db, fresh_database_url};

/// The admin bearer token every test app accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: tyk_idsync::http::SharedState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _db_guard: Option<tempfile::TempDir>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A GET on the admin API with the test admin token.
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin request")
    }

    /// The `/metrics` page as text (it needs no token).
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Asks the server to stop (graceful shutdown).
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A config for tests: port 0, a fresh database of the given engine.
pub async fn test_config(db: Db) -> (Config, Option<tempfile::TempDir>) {
    let (url, guard) = fresh_database_url(db).await;
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.database.url = url;
    config.admin.token = Some(secrecy::SecretString::from(ADMIN_TOKEN.to_string()));
    (config, guard)
}

pub async fn spawn_app(db: Db) -> TestApp {
    let (config, guard) = test_config(db).await;
    spawn_app_with(config, guard).await
}

pub async fn spawn_app_with(config: Config, guard: Option<tempfile::TempDir>) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        tyk_idsync::telemetry::init(&config.log);
    }
    let app = Application::build(config).await.expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        state,
        shutdown: Some(tx),
        _db_guard: guard,
    }
}

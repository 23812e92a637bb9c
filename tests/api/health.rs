use crate::both_backends;
use crate::support::Db;
use crate::support::app::{spawn_app, spawn_app_with, test_config};

async fn healthz_and_readyz_answer_200_on_a_migrated_store(db: Db) {
    let app = spawn_app(db).await;
    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "ready");
}
both_backends!(
    health_ready,
    healthz_and_readyz_answer_200_on_a_migrated_store
);

async fn readyz_is_503_until_migrations_are_applied(db: Db) {
    let (mut config, guard) = test_config(db).await;
    config.database.run_migrations = false;
    let app = spawn_app_with(config, guard).await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200,
        "liveness does not depend on the database"
    );
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["reason"], "migrations pending");

    app.state.store.migrate().await.expect("migrate");
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
}
both_backends!(
    readyz_migrations,
    readyz_is_503_until_migrations_are_applied
);

#[tokio::test]
async fn readyz_is_503_when_the_database_is_gone() {
    let app = spawn_app(Db::Sqlite).await;
    app.state.store.close().await;
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["reason"], "database unreachable");
}

async fn readyz_reports_the_replica_role(db: Db) {
    let app = spawn_app(db).await;
    let mut role = serde_json::Value::Null;
    for _ in 0..50 {
        let body: serde_json::Value = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json");
        role = body["role"].clone();
        if role == "leader" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Alone on its database, a replica leads (on SQLite, always).
    assert_eq!(role, "leader");
}
both_backends!(readyz_role, readyz_reports_the_replica_role);

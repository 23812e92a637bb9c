use crate::both_backends;
use crate::support::Db;
use crate::support::app::{ADMIN_TOKEN, spawn_app, spawn_app_with, test_config};

async fn admin_status_needs_the_admin_token(db: Db) {
    let app = spawn_app(db).await;
    let url = app.url("/admin/v1/status");

    let ok = app.admin_get("/admin/v1/status").await;
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.expect("json");
    assert_eq!(body["outbox"]["depth"], 0);

    let missing = app.client.get(&url).send().await.expect("send");
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"tyk-idsync-admin\""
    );
    let wrong = app
        .client
        .get(&url)
        .bearer_auth(format!("{ADMIN_TOKEN}x"))
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    let body: serde_json::Value = wrong.json().await.expect("json");
    assert_eq!(body["detail"], "invalid admin token");
}
both_backends!(admin_status, admin_status_needs_the_admin_token);

#[tokio::test]
async fn a_token_given_only_as_its_sha256_is_accepted() {
    use sha2::Digest;
    let (mut config, guard) = test_config(Db::Sqlite).await;
    config.admin.token = None;
    config.admin.token_sha256 = Some(hex::encode(sha2::Sha256::digest(ADMIN_TOKEN.as_bytes())));
    let app = spawn_app_with(config, guard).await;
    assert_eq!(app.admin_get("/admin/v1/status").await.status(), 200);
}

#[tokio::test]
async fn without_an_admin_token_the_admin_api_is_closed() {
    let (mut config, guard) = test_config(Db::Sqlite).await;
    config.admin.token = None;
    let app = spawn_app_with(config, guard).await;
    let resp = app.admin_get("/admin/v1/status").await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn_app(Db::Sqlite).await;
    for _ in 0..3 {
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("healthz");
    }
    let text = app.metrics_text().await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("tyk_idsync_http_requests_total")
                && l.contains("route=\"/healthz\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no healthz counter in:\n{text}"));
    let count: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("value");
    assert!(count >= 3.0, "{line}");
    assert!(text.contains("tyk_idsync_http_request_duration_seconds_bucket"));
    assert!(text.contains("tyk_idsync_outbox_depth "), "{text}");
    assert!(
        text.contains("tyk_idsync_outbox_oldest_age_seconds "),
        "{text}"
    );
}

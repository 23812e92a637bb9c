//! The served OpenAPI document parses, is 3.1, and lists exactly the routes
//! the service answers.

use std::collections::BTreeSet;

use crate::support::Db;
use crate::support::app::spawn_app;

/// Every documented operation: (method, path). Extend it with each route.
const EXPECTED: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/admin/v1/status"),
];

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_each_answers() {
    let app = spawn_app(Db::Sqlite).await;
    let doc: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("valid JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let expected: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);

    // Each documented GET without path parameters is really routed (not 404/405).
    for (method, path) in &expected {
        if method == "get" && !path.contains('{') {
            let status = app
                .client
                .get(app.url(path))
                .send()
                .await
                .expect("get")
                .status();
            assert!(status != 404 && status != 405, "{path} answered {status}");
        }
    }
    assert!(doc["components"]["securitySchemes"]["adminToken"].is_object());
}

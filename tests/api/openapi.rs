//! The served OpenAPI document parses, is 3.1, and lists exactly the routes
//! the service answers.

use std::collections::BTreeSet;

use crate::support::Db;
use crate::support::app::ADMIN_TOKEN;
use crate::support::stack::spawn_stack;

/// Operations documented through utoipa annotations.
const ANNOTATED: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/admin/v1/status"),
    ("get", "/admin/v1/tokens"),
    ("post", "/admin/v1/tokens"),
    ("delete", "/admin/v1/tokens/{id}"),
];

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_each_is_routed() {
    let stack = spawn_stack(Db::Sqlite).await;
    let app = &stack.app;
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
    let expected: BTreeSet<(String, String)> = ANNOTATED
        .iter()
        .copied()
        .chain(tyk_idsync::http::plain_route_list(true, true))
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);

    // Every documented operation is routed: the method is allowed (no 405)
    // and the path exists (an unmatched path is an empty-bodied 404).
    for (method, path) in &expected {
        let concrete = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{email}", "nobody@example.org");
        let token = if path.starts_with("/scim/") {
            &stack.okta_token
        } else {
            ADMIN_TOKEN
        };
        let request = app
            .client
            .request(
                method.to_uppercase().parse().expect("method"),
                app.url(&concrete),
            )
            .bearer_auth(token)
            .header("content-type", "application/json");
        let request = if method == "get" || method == "delete" {
            request
        } else {
            request.body("{}")
        };
        let response = request.send().await.expect("send");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}");
        assert!(
            status != 404 || !body.is_empty(),
            "{method} {path} is not routed"
        );
    }
    assert!(doc["components"]["securitySchemes"]["adminToken"].is_object());
    assert!(doc["components"]["securitySchemes"]["scimToken"].is_object());
}

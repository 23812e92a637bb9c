//! The mapping admin API over real HTTP on loopback, on SQLite and
//! PostgreSQL: every route, including bad input.

use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tyk_idsync::domain::EventKind;
use tyk_idsync::mapping::api::{MappingApiState, router};
use tyk_idsync::mapping::{ConfigRule, MappingConfig, sync_config_rules};
use tyk_idsync::store::{Store, events};

use crate::both_backends;
use crate::support::{Db, fresh_store};

struct Server {
    base: String,
    client: reqwest::Client,
}

impl Server {
    async fn start(store: Store, config: MappingConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let app = router(MappingApiState::new(store, config));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Self {
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        };
        (status, value)
    }
}

fn rule_body(name: &str) -> Value {
    json!({
        "orgId": "org1",
        "name": name,
        "description": "devs",
        "priority": 10,
        "mappingsSSO": ["okta:Platform Team", "ldap-corp:cn=devs,ou=groups,dc=example,dc=org"],
        "permissions": {"apis": "write", "analytics": "read"}
    })
}

async fn mapping_events(store: &Store) -> usize {
    let mut conn = store.pool().acquire().await.expect("conn");
    events::pending(&mut conn, 100)
        .await
        .expect("pending")
        .iter()
        .filter(|e| e.kind == EventKind::MappingChanged)
        .count()
}

async fn crud_round_trip(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let server = Server::start(store.clone(), MappingConfig::default()).await;
    use reqwest::Method;

    let (status, list) = server.send(Method::GET, "/admin/v1/mappings", None).await;
    assert_eq!((status, list), (StatusCode::OK, json!({"mappings": []})));

    let (status, created) = server
        .send(
            Method::POST,
            "/admin/v1/mappings",
            Some(rule_body("Developers")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(
        created["mappingsSSO"],
        rule_body("Developers")["mappingsSSO"]
    );
    assert_eq!(created["origin"], "api");
    assert_eq!(mapping_events(&store).await, 1);

    let (status, shown) = server
        .send(Method::GET, &format!("/admin/v1/mappings/{id}"), None)
        .await;
    assert_eq!((status, &shown), (StatusCode::OK, &created));

    // A GET body can be sent back as is (id and origin are ignored).
    let mut changed = shown.clone();
    changed["priority"] = json!(99);
    let (status, updated) = server
        .send(
            Method::PUT,
            &format!("/admin/v1/mappings/{id}"),
            Some(changed),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["priority"], 99);
    assert_eq!(updated["id"], id.as_str());

    let (_, list) = server.send(Method::GET, "/admin/v1/mappings", None).await;
    assert_eq!(list["mappings"].as_array().expect("array").len(), 1);
    assert_eq!(list["mappings"][0]["priority"], 99);

    let (status, _) = server
        .send(Method::DELETE, &format!("/admin/v1/mappings/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server
        .send(Method::GET, &format!("/admin/v1/mappings/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = server
        .send(Method::DELETE, &format!("/admin/v1/mappings/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server
        .send(Method::PUT, "/admin/v1/mappings/nope", Some(rule_body("X")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(mapping_events(&store).await, 3);
}
both_backends!(mapping_api_crud_round_trip, crud_round_trip);

async fn bad_input(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let server = Server::start(store.clone(), MappingConfig::default()).await;
    use reqwest::Method;

    let with = |path: &str, value: Value| {
        let mut body = rule_body("Developers");
        body[path] = value;
        body
    };
    let cases = [
        (
            with("permissions", json!({"frobnicate": "read"})),
            "permissions.frobnicate",
        ),
        (
            with("permissions", json!({"apis": "admin"})),
            "permissions.apis",
        ),
        (
            with("permissions", json!({"IsAdmin": "admin"})),
            "permissions.IsAdmin",
        ),
        (
            with("permissions", json!({"ResetPassword": "admin"})),
            "permissions.ResetPassword",
        ),
        (
            with("mappingsSSO", json!(["ok", "okta:", "dev-["])),
            "mappingsSSO[1]",
        ),
        (with("orgId", json!("")), "orgId"),
    ];
    for (body, field) in cases {
        let (status, error) = server
            .send(Method::POST, "/admin/v1/mappings", Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {error}");
        assert_eq!(error["field"], field, "{error}");
        assert!(
            error["error"].as_str().expect("message").contains(field),
            "{error}"
        );
    }
    let (status, error) = server
        .send(
            Method::POST,
            "/admin/v1/mappings",
            Some(with("mappingsSSO", json!(["dev-["]))),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["errors"][0]["message"]
            .as_str()
            .expect("msg")
            .contains("invalid glob")
    );

    let (status, error) = server
        .send(
            Method::POST,
            "/admin/v1/mappings",
            Some(json!({"orgId": "o", "name": "n", "bogus": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["error"].as_str().expect("msg").contains("bogus"),
        "{error}"
    );

    let (status, _) = server
        .send(
            Method::POST,
            "/admin/v1/mappings",
            Some(rule_body("Developers")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, error) = server
        .send(
            Method::POST,
            "/admin/v1/mappings",
            Some(rule_body("Developers")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(error["error"].as_str().expect("msg").contains("Developers"));

    let (_, other) = server
        .send(
            Method::POST,
            "/admin/v1/mappings",
            Some(rule_body("Others")),
        )
        .await;
    let other_id = other["id"].as_str().expect("id");
    let (status, _) = server
        .send(
            Method::PUT,
            &format!("/admin/v1/mappings/{other_id}"),
            Some(rule_body("Developers")),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "renaming onto an existing group"
    );

    // Nothing bad was stored: two rules, two events.
    let (_, list) = server.send(Method::GET, "/admin/v1/mappings", None).await;
    assert_eq!(list["mappings"].as_array().expect("array").len(), 2);
    assert_eq!(mapping_events(&store).await, 2);
}
both_backends!(mapping_api_bad_input, bad_input);

async fn config_rules_are_read_only(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let config = MappingConfig {
        rules: vec![ConfigRule {
            org_id: "org1".into(),
            name: "Readers".into(),
            mappings_sso: vec!["*".into()],
            permissions: [("apis".to_string(), "read".to_string())].into(),
            ..ConfigRule::default()
        }],
        ..MappingConfig::default()
    };
    sync_config_rules(&store, &config).await.expect("sync");
    let server = Server::start(store.clone(), config).await;
    use reqwest::Method;
    let (_, list) = server.send(Method::GET, "/admin/v1/mappings", None).await;
    assert_eq!(list["mappings"][0]["origin"], "config");
    let id = list["mappings"][0]["id"].as_str().expect("id").to_string();
    let (status, _) = server
        .send(Method::DELETE, &format!("/admin/v1/mappings/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server
        .send(
            Method::PUT,
            &format!("/admin/v1/mappings/{id}"),
            Some(rule_body("Readers")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let mut duplicate = rule_body("Readers");
    duplicate["orgId"] = json!("org1");
    let (status, _) = server
        .send(Method::POST, "/admin/v1/mappings", Some(duplicate))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}
both_backends!(
    mapping_api_config_rules_are_read_only,
    config_rules_are_read_only
);

async fn explain_route(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let config = MappingConfig {
        unmapped_policy: tyk_idsync::mapping::UnmappedPolicy::Deactivate,
        default_org_id: Some("org1".into()),
        ..MappingConfig::default()
    };
    let server = Server::start(store.clone(), config).await;
    use reqwest::Method;
    let mut tx = store.begin().await.expect("tx");
    let now = tyk_idsync::domain::Timestamp(1_700_000_000_000);
    let user = tyk_idsync::domain::IdentityUser {
        id: uuid::Uuid::new_v4(),
        source: tyk_idsync::domain::SourceName::new("okta"),
        external_id: None,
        user_name: "bob@example.org".into(),
        email: Some("bob@example.org".into()),
        email_problem: None,
        given_name: Some("Bob".into()),
        family_name: Some("Builder".into()),
        display_name: None,
        active: true,
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    tyk_idsync::store::identities::insert_user(&mut tx, &user, &[])
        .await
        .expect("user");
    tx.commit().await.expect("commit");

    let (status, body) = server
        .send(Method::GET, "/admin/v1/explain/BOB@example.org", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    insta::assert_json_snapshot!("explain_route_unmapped_deactivate", body);
}
both_backends!(mapping_api_explain_route, explain_route);

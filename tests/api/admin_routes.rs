//! Every admin route behind the admin token (enumerated from the served
//! OpenAPI document, so a new route is covered without editing this file),
//! SCIM token management through the admin API, the per-source status, and
//! the metrics a sync moves.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::Db;
use crate::support::app::{ADMIN_TOKEN, TestApp};
use crate::support::stack::{Stack, spawn_stack};

const ZERO_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Every (method, path) of the OpenAPI document under `/admin/`.
async fn documented_admin_routes(app: &TestApp) -> Vec<(String, String)> {
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/admin/") {
            continue;
        }
        for method in item.as_object().expect("path item").keys() {
            routes.push((method.clone(), path.clone()));
        }
    }
    routes
}

/// A concrete path for a template: `{email}` an address, any other
/// parameter the nil UUID.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..]
            .find('}')
            .map_or(rest.len(), |e| start + e + 1);
        out.push_str(&rest[..start]);
        out.push_str(if &rest[start..end] == "{email}" {
            "nobody@example.org"
        } else {
            ZERO_ID
        });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

async fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> reqwest::Response {
    let method: Method = method.to_uppercase().parse().expect("method");
    let mut request = app.client.request(method.clone(), app.url(&concrete(path)));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if method != Method::GET && method != Method::DELETE {
        request = request
            .header("content-type", "application/json")
            .body("{}");
    }
    request.send().await.expect("send")
}

#[tokio::test]
async fn every_admin_route_needs_the_admin_token() {
    let stack = spawn_stack(Db::Sqlite).await;
    let app = &stack.app;
    let routes = documented_admin_routes(app).await;
    // The document really lists the admin API (so the loop below is not
    // vacuous): status, tokens, mappings, sync.
    for expected in [
        ("get", "/admin/v1/status"),
        ("post", "/admin/v1/tokens"),
        ("delete", "/admin/v1/tokens/{id}"),
        ("get", "/admin/v1/mappings"),
        ("post", "/admin/v1/sync/run"),
        ("post", "/admin/v1/sync/runs/{id}/approve"),
    ] {
        assert!(
            routes
                .iter()
                .any(|(m, p)| (m.as_str(), p.as_str()) == expected),
            "{expected:?} is not documented: {routes:?}"
        );
    }
    let wrong = format!("{ADMIN_TOKEN}x");
    for (method, path) in &routes {
        for (what, token) in [("missing", None), ("wrong", Some(wrong.as_str()))] {
            let response = call(app, method, path, token).await;
            assert_eq!(
                response.status(),
                401,
                "{method} {path} with a {what} token"
            );
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer"),
                "{method} {path} with a {what} token: WWW-Authenticate {challenge:?}"
            );
        }
        let response = call(app, method, path, Some(ADMIN_TOKEN)).await;
        let status = response.status();
        assert!(
            status != 401 && status != 403,
            "{method} {path} with the admin token: {status}"
        );
    }
}

impl Stack {
    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Waits until `check` holds for what `probe` returns; returns that.
    async fn eventually<T, F>(
        &self,
        what: &str,
        probe: impl Fn() -> F,
        check: impl Fn(&T) -> bool,
    ) -> T
    where
        F: std::future::Future<Output = T>,
    {
        let start = Instant::now();
        loop {
            let value = probe().await;
            if check(&value) {
                return value;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Pushes Ada (okta) in `Developers`, mapped to a Tyk group, and waits
    /// until she is a Tyk user.
    async fn sync_ada(&self) {
        self.add_rule("API Developers", 10, &["okta:Developers"])
            .await;
        let ada = self.create_user("ada", "ada@example.org").await;
        self.create_group("Developers", &[&ada]).await;
        self.until("Ada is a Tyk user", |s| {
            s.tyk_user("ada@example.org").is_some()
        })
        .await;
    }
}

async fn scim_tokens_are_managed_through_the_admin_api(db: Db) {
    let stack = spawn_stack(db).await;
    let scim_users = |token: String| {
        let client = stack.app.client.clone();
        let url = stack.app.url("/scim/v2/Users");
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("scim")
        }
    };

    let (status, created) = stack
        .admin(
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"source": "okta", "expires": "1h", "label": "Okta production"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().expect("token").to_string();
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["source"], "okta");
    assert_eq!(created["label"], "Okta production");
    let expires =
        chrono::DateTime::parse_from_rfc3339(created["expires"].as_str().expect("expires"))
            .expect("RFC 3339");
    let in_an_hour = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(
        (expires.to_utc() - in_an_hour).num_seconds().abs() < 60,
        "{expires}"
    );

    // Listed without its secret (nor its hash).
    let response = stack
        .app
        .client
        .get(stack.app.url("/admin/v1/tokens"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("list");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    assert!(!text.contains(&token), "{text}");
    assert!(
        !text.contains(&tyk_idsync::scim::tokens::hash_token(&token)),
        "{text}"
    );
    let list: Value = serde_json::from_str(&text).expect("json");
    let listed = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
        .clone();
    assert_eq!(listed["source"], "okta");
    assert_eq!(listed["label"], "Okta production");
    assert_eq!(listed["active"], true);
    assert_eq!(listed["revoked"], Value::Null);
    assert!(
        listed["created"].is_string() && listed["expires"].is_string(),
        "{listed}"
    );
    assert!(listed.get("token").is_none(), "{listed}");
    let (_, entra_only) = stack
        .admin(Method::GET, "/admin/v1/tokens?source=entra", None)
        .await;
    assert!(
        entra_only["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .all(|t| t["source"] == "entra"),
        "{entra_only}"
    );

    // The token works on the SCIM endpoint until it is revoked.
    assert_eq!(scim_users(token.clone()).await.status(), 200);
    let (status, body) = stack
        .admin(Method::DELETE, &format!("/admin/v1/tokens/{id}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    let refused = scim_users(token.clone()).await;
    assert_eq!(refused.status(), 401);
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .expect("header")
            .starts_with("Bearer")
    );
    let (_, list) = stack.admin(Method::GET, "/admin/v1/tokens", None).await;
    let revoked = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == id.as_str())
        .expect("still listed")
        .clone();
    assert!(revoked["revoked"].is_string(), "{revoked}");
    assert_eq!(revoked["active"], false);

    // Unknown ids are 404.
    for unknown in [ZERO_ID, "not-a-uuid"] {
        let (status, body) = stack
            .admin(Method::DELETE, &format!("/admin/v1/tokens/{unknown}"), None)
            .await;
        assert_eq!(status, 404, "{unknown}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }

    // A lifetime in seconds; the default lifetime.
    let (status, body) = stack
        .admin(
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"source": "entra", "expires": 3600})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        scim_users(body["token"].as_str().expect("token").into())
            .await
            .status(),
        200
    );
    let (status, body) = stack
        .admin(
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"source": "entra"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Bad requests: a clear JSON error, naming the field where there is one.
    let (status, body) = stack
        .admin(
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"source": "ping"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "source");
    let message = body["error"].as_str().expect("error");
    assert!(
        message.contains("\"ping\"") && message.contains("entra, okta"),
        "{message}"
    );
    for (bad, field) in [
        (json!({"source": "okta", "expires": 0}), Some("expires")),
        (
            json!({"source": "okta", "expires": "soon"}),
            Some("expires"),
        ),
        (json!({"source": "okta", "expires": true}), Some("expires")),
        (json!({"expires": "1h"}), None),
        (json!({"source": "okta", "secret": "x"}), None),
    ] {
        let (status, body) = stack
            .admin(Method::POST, "/admin/v1/tokens", Some(bad.clone()))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
        if let Some(field) = field {
            assert_eq!(body["field"], field, "{bad}: {body}");
        }
    }
    let response = stack
        .app
        .client
        .post(stack.app.url("/admin/v1/tokens"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json error");
    assert!(body["error"].is_string(), "{body}");
}
both_backends!(admin_tokens, scim_tokens_are_managed_through_the_admin_api);

async fn status_reports_each_source_and_the_last_sync(db: Db) {
    let stack = spawn_stack(db).await;
    let (status, before) = stack.admin(Method::GET, "/admin/v1/status", None).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["sources"]["okta"]["users"], 0, "{before}");
    assert_eq!(before["sources"]["okta"]["last_event"], Value::Null);
    assert_eq!(before["sync"]["enabled"], true);
    assert_eq!(before["sync"]["held_runs"], 0);
    assert_eq!(before["sync"]["last_applied_run"], Value::Null);

    stack.sync_ada().await;
    let after = stack
        .eventually(
            "the applied run is on record",
            || async { stack.admin(Method::GET, "/admin/v1/status", None).await.1 },
            |s| s["sync"]["last_applied_run"].is_object(),
        )
        .await;
    let okta = &after["sources"]["okta"];
    assert_eq!(
        (okta["users"].as_i64(), okta["groups"].as_i64()),
        (Some(1), Some(1)),
        "{after}"
    );
    assert!(okta["last_event"].is_string(), "{after}");
    let entra = &after["sources"]["entra"];
    assert_eq!(
        (entra["users"].as_i64(), entra["groups"].as_i64()),
        (Some(0), Some(0)),
        "{after}"
    );
    assert_eq!(entra["last_event"], Value::Null);
    let run = &after["sync"]["last_applied_run"];
    assert!(
        run["id"].is_string() && run["finished"].is_string(),
        "{run}"
    );
    assert!(run["steps_applied"].as_i64().unwrap_or(0) >= 1, "{run}");
    assert!(after["sync"]["last_success"].is_string(), "{after}");
    assert_eq!(after["sync"]["held_runs"], 0);
    // The existing fields are still there.
    for field in ["version", "database", "role"] {
        assert!(after[field].is_string(), "{field}: {after}");
    }
    assert!(after["outbox"]["depth"].is_i64(), "{after}");
}
both_backends!(
    admin_status_sources,
    status_reports_each_source_and_the_last_sync
);

/// The sum of the samples of `name` whose labels include every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_sync_moves_the_event_tyk_request_and_sync_metrics() {
    let stack = spawn_stack(Db::Sqlite).await;
    let before = stack.app.metrics_text().await;
    let created_users = |text: &str| {
        sample(
            text,
            "tyk_idsync_tyk_request_duration_seconds_count",
            &[
                ("endpoint", "/api/users"),
                ("method", "POST"),
                ("status", "2xx"),
            ],
        )
    };
    assert_eq!(
        sample(&before, "tyk_idsync_identity_events_total", &[]),
        0.0,
        "{before}"
    );

    stack.sync_ada().await;
    let poll = tyk_idsync::store::ldap_state::PollState {
        last_success_at: Some(tyk_idsync::domain::Timestamp::now()),
        ..Default::default()
    };
    let mut conn = stack.app.state.store.pool().acquire().await.expect("conn");
    let source = tyk_idsync::domain::SourceName::new("metrics-test-ldap");
    tyk_idsync::store::ldap_state::put(&mut conn, &source, &poll)
        .await
        .expect("poll state");
    drop(conn);
    let after = stack
        .eventually(
            "the applied run is counted",
            || stack.app.metrics_text(),
            |text| {
                sample(
                    text,
                    "tyk_idsync_sync_runs_total",
                    &[("outcome", "applied")],
                ) >= 1.0
            },
        )
        .await;

    // Identity-change events, by source and kind, from the database.
    for kind in ["user_created", "group_created"] {
        assert_eq!(
            sample(
                &after,
                "tyk_idsync_identity_events_total",
                &[("source", "okta"), ("kind", kind)]
            ),
            1.0,
            "{kind}:\n{after}"
        );
    }
    assert!(after.contains("# TYPE tyk_idsync_identity_events_total counter"));
    // Requests to Tyk: a histogram by endpoint template, method and status class.
    assert!(
        created_users(&after) > created_users(&before),
        "no POST /api/users observed:\n{after}"
    );
    assert!(
        sample(
            &after,
            "tyk_idsync_tyk_request_duration_seconds_bucket",
            &[("endpoint", "/api/users"), ("method", "GET")]
        ) > 0.0,
        "{after}"
    );
    assert!(
        !after
            .lines()
            .any(|l| l.starts_with("tyk_idsync_tyk_request")
                && l.contains("endpoint=\"/api/users/")
                && !l.contains("endpoint=\"/api/users/{id}")
                && !l.contains("endpoint=\"/api/users/search")),
        "a raw id in an endpoint label:\n{after}"
    );
    // The sync counters.
    assert!(
        sample(&after, "tyk_idsync_sync_steps_applied_total", &[]) >= 1.0,
        "{after}"
    );
    assert!(
        sample(&after, "tyk_idsync_tyk_writes_total", &[]) >= 1.0,
        "{after}"
    );
    // Plan steps by kind and result.
    assert!(
        sample(
            &after,
            "tyk_idsync_sync_plan_steps_total",
            &[("kind", "create_user"), ("result", "applied")]
        ) >= 1.0,
        "{after}"
    );
    // Last successes: the sync run, and a poll recorded in the store.
    let now = chrono::Utc::now().timestamp() as f64;
    for (source, kind) in [("all", "sync"), ("metrics-test-ldap", "poll")] {
        let at = sample(
            &after,
            "tyk_idsync_last_success_timestamp_seconds",
            &[("source", source), ("kind", kind)],
        );
        assert!((now - at).abs() < 60.0, "{source} {kind}: {at}\n{after}");
    }
    assert_eq!(
        after
            .matches("# TYPE tyk_idsync_last_success_timestamp_seconds gauge")
            .count(),
        1
    );
}

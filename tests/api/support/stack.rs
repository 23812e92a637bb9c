//! The whole service against the in-process Tyk stand-in: SCIM enabled for
//! two sources (`okta`, `entra`), a Tyk organisation with an admin user
//! whose key the service uses, and helpers to drive it over SCIM and the
//! admin API and to inspect the stand-in.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tyk_idsync::config::Config;
use tyk_idsync::domain::SourceName;
use tyk_idsync::scim::ScimSourceConfig;
use tyk_idsync::standin::{LoggedRequest, StandIn, StandInOptions};
use tyk_idsync::tyk::{Permissions, TykConfig, User, UserGroup};

use super::Db;
use super::app::{ADMIN_TOKEN, TestApp, spawn_app_with, test_config};

pub const TYK_API_KEY: &str = "stack-dashboard-key-0123456789";
pub const TYK_ADMIN_EMAIL: &str = "tyk-admin@example.org";

/// How long [`Stack::until`] waits by default.
pub const UNTIL: Duration = Duration::from_secs(10);

pub struct Stack {
    pub app: TestApp,
    pub standin: StandIn,
    pub org_id: String,
    /// SCIM bearer tokens by source.
    pub okta_token: String,
    pub entra_token: String,
}

/// A config for the stack: SCIM on, Tyk = the stand-in, fast sync timers.
pub async fn stack_config(db: Db) -> (Config, Option<tempfile::TempDir>, StandIn, String) {
    let standin = StandIn::spawn(StandInOptions::default())
        .await
        .expect("stand-in");
    let org = standin.seed_org("Stack Org");
    let admin = standin.seed_user(&org.id, TYK_ADMIN_EMAIL, Permissions::admin());
    standin.set_access_key(&admin.id, TYK_API_KEY);
    let (mut config, guard) = test_config(db).await;
    config.tyk = Some(TykConfig::new(standin.base_url(), TYK_API_KEY));
    config.scim.enabled = true;
    for source in ["okta", "entra"] {
        config
            .scim
            .sources
            .insert(source.to_string(), ScimSourceConfig::default());
    }
    config.mapping.default_org_id = Some(org.id.clone());
    config.sync.requests_per_second = 0;
    config.sync.retry_base_delay = std::time::Duration::from_millis(10);
    (config, guard, standin, org.id)
}

pub async fn spawn_stack_with(
    config: Config,
    guard: Option<tempfile::TempDir>,
    standin: StandIn,
    org_id: String,
) -> Stack {
    let app = spawn_app_with(config, guard).await;
    let okta_token = issue_token(&app, "okta").await;
    let entra_token = issue_token(&app, "entra").await;
    Stack {
        app,
        standin,
        org_id,
        okta_token,
        entra_token,
    }
}

pub async fn spawn_stack(db: Db) -> Stack {
    spawn_stack_configured(db, |_| {}).await
}

/// A stack whose config `adjust` changes first (the `[sync]` keys, …).
pub async fn spawn_stack_configured(db: Db, adjust: impl FnOnce(&mut Config)) -> Stack {
    let (mut config, guard, standin, org_id) = stack_config(db).await;
    adjust(&mut config);
    spawn_stack_with(config, guard, standin, org_id).await
}

async fn issue_token(app: &TestApp, source: &str) -> String {
    let store = &app.state.store;
    let config = &app.state.config.scim;
    let key = tyk_idsync::scim::signing_key(store, config.token_signing_key.as_ref())
        .await
        .expect("signing key");
    tyk_idsync::scim::tokens::create_token(
        store,
        &key,
        &SourceName::new(source),
        std::time::Duration::from_secs(3600),
        None,
    )
    .await
    .expect("token")
    .token
}

/// A SCIM core user with a work e-mail, active, named Ada Lovelace.
pub fn scim_user(user_name: &str, email: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": email, "type": "work", "primary": true}],
        "active": true,
    })
}

/// A SCIM PATCH body with the given operations.
pub fn patch_ops(ops: Value) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": ops,
    })
}

/// Whether a logged stand-in request changed something (`POST /api/users/search`
/// is a read).
pub fn is_write(request: &LoggedRequest) -> bool {
    matches!(request.method.as_str(), "POST" | "PUT" | "DELETE")
        && request.path != "/api/users/search"
}

impl Stack {
    pub async fn scim(&self, token: &str, method: Method, path: &str, body: Value) -> (u16, Value) {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(&format!("/scim/v2{path}")))
            .bearer_auth(token)
            .header("content-type", "application/scim+json");
        if !body.is_null() {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("scim request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Creates an Okta user; returns its SCIM id.
    pub async fn create_user(&self, user_name: &str, email: &str) -> String {
        let (status, user) = self
            .scim(
                &self.okta_token,
                Method::POST,
                "/Users",
                scim_user(user_name, email),
            )
            .await;
        assert_eq!(status, 201, "create user {user_name}: {user}");
        user["id"].as_str().expect("user id").to_string()
    }

    /// Creates an Okta group with these members; returns its SCIM id.
    pub async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
        let (status, group) = self
            .scim(
                &self.okta_token,
                Method::POST,
                "/Groups",
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": name,
                    "members": members,
                }),
            )
            .await;
        assert_eq!(status, 201, "create group {name}: {group}");
        group["id"].as_str().expect("group id").to_string()
    }

    /// Adds and removes members of an Okta group in one PATCH.
    pub async fn patch_members(&self, group_id: &str, add: &[&str], remove: &[&str]) {
        let mut ops = Vec::new();
        if !add.is_empty() {
            let members: Vec<Value> = add.iter().map(|id| json!({"value": id})).collect();
            ops.push(json!({"op": "add", "path": "members", "value": members}));
        }
        for id in remove {
            ops.push(json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")}));
        }
        let (status, body) = self
            .scim(
                &self.okta_token,
                Method::PATCH,
                &format!("/Groups/{group_id}"),
                patch_ops(Value::Array(ops)),
            )
            .await;
        assert_eq!(status, 200, "patch group {group_id}: {body}");
    }

    /// PATCHes an Okta user's `active`.
    pub async fn set_active(&self, user_id: &str, active: bool) {
        let (status, body) = self
            .scim(
                &self.okta_token,
                Method::PATCH,
                &format!("/Users/{user_id}"),
                patch_ops(json!([{"op": "replace", "path": "active", "value": active}])),
            )
            .await;
        assert_eq!(status, 200, "patch user {user_id}: {body}");
    }

    /// A request on the admin API; returns the status and the JSON body.
    pub async fn admin_request(&self, method: Method, path: &str) -> (u16, Value) {
        let response = self
            .app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// One full reconcile through `POST /admin/v1/sync/run`; its `SyncStatus`.
    pub async fn reconcile(&self) -> Value {
        let (status, body) = self.admin_request(Method::POST, "/admin/v1/sync/run").await;
        assert_eq!(status, 200, "full reconcile: {body}");
        body
    }

    /// Identity-change events not yet applied (`GET /admin/v1/status`).
    pub async fn outbox_depth(&self) -> i64 {
        let (status, body) = self.admin_request(Method::GET, "/admin/v1/status").await;
        assert_eq!(status, 200, "status: {body}");
        body["outbox"]["depth"].as_i64().expect("depth")
    }

    pub async fn add_rule(&self, name: &str, priority: i64, sso: &[&str]) -> Value {
        let response = self
            .app
            .client
            .post(self.app.url("/admin/v1/mappings"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({
                "orgId": self.org_id,
                "name": name,
                "priority": priority,
                "mappingsSSO": sso,
                "permissions": {"apis": "write", "keys": "read"},
            }))
            .send()
            .await
            .expect("create rule");
        assert_eq!(response.status(), 201, "rule {name}");
        response.json().await.expect("rule json")
    }

    pub fn tyk_user(&self, email: &str) -> Option<User> {
        self.standin
            .users()
            .into_iter()
            .find(|u| u.email_address == email && u.org_id == self.org_id)
    }

    pub fn tyk_group(&self, name: &str) -> Option<UserGroup> {
        self.standin
            .groups()
            .into_iter()
            .find(|g| g.name == name && g.org_id == self.org_id)
    }

    /// Whether the Tyk user is active and in the named Tyk group.
    pub fn in_group(&self, email: &str, group: &str) -> bool {
        matches!(
            (self.tyk_user(email), self.tyk_group(group)),
            (Some(u), Some(g)) if u.group_id == g.id && u.active
        )
    }

    /// The stand-in's write requests (POST/PUT/DELETE) so far.
    pub fn tyk_writes(&self) -> Vec<LoggedRequest> {
        self.standin
            .request_log()
            .into_iter()
            .filter(is_write)
            .collect()
    }

    /// Waits until `check` holds for the Tyk state; returns how long it took.
    pub async fn until(&self, what: &str, check: impl Fn(&Stack) -> bool) -> Duration {
        self.until_within(what, UNTIL, check).await
    }

    pub async fn until_within(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Stack) -> bool,
    ) -> Duration {
        let start = Instant::now();
        while !check(self) {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        start.elapsed()
    }

    /// Waits until every outbox event is applied.
    pub async fn until_outbox_empty(&self, timeout: Duration) {
        let start = Instant::now();
        while self.outbox_depth().await > 0 {
            assert!(
                start.elapsed() < timeout,
                "outbox not drained after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

//! End to end: identities pushed over SCIM become Tyk users in the right
//! group of the stand-in, through the mapping and the sync worker.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tyk_idsync::tyk::{User, UserGroup};

use crate::both_backends;
use crate::support::Db;
use crate::support::app::ADMIN_TOKEN;
use crate::support::stack::{Stack, spawn_stack};

impl Stack {
    pub async fn scim(&self, token: &str, method: Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .app
            .client
            .request(method, self.app.url(&format!("/scim/v2{path}")))
            .bearer_auth(token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .expect("scim request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
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

    /// Waits until `check` holds for the Tyk state; returns how long it took.
    pub async fn until(&self, what: &str, check: impl Fn(&Stack) -> bool) -> Duration {
        let start = Instant::now();
        while !check(self) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        start.elapsed()
    }
}

pub fn scim_user(user_name: &str, email: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": email, "type": "work", "primary": true}],
        "active": true,
    })
}

async fn a_scim_user_in_a_mapped_group_becomes_a_tyk_user_in_that_group(db: Db) {
    let stack = spawn_stack(db).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let (status, user) = stack
        .scim(
            &stack.okta_token,
            Method::POST,
            "/Users",
            scim_user("ada", "Ada@Example.org"),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let (status, group) = stack
        .scim(
            &stack.okta_token,
            Method::POST,
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Developers",
                "members": [{"value": user["id"]}],
            }),
        )
        .await;
    assert_eq!(status, 201, "{group}");

    stack
        .until("Ada is in API Developers", |s| {
            let group = s.tyk_group("API Developers");
            let user = s.tyk_user("ada@example.org");
            matches!((group, user), (Some(g), Some(u)) if u.group_id == g.id && u.active)
        })
        .await;
    // Another source's token cannot see Okta's user.
    let path = format!("/Users/{}", user["id"].as_str().expect("id"));
    let (status, _) = stack
        .scim(&stack.entra_token, Method::GET, &path, Value::Null)
        .await;
    assert_eq!(status, 404);
    let ada = stack.tyk_user("ada@example.org").expect("ada");
    assert_eq!(
        (ada.first_name.as_str(), ada.last_name.as_str()),
        ("Ada", "Lovelace")
    );
    assert!(!ada.user_permissions.grants_admin(), "never an admin");
}
both_backends!(
    scim_to_tyk,
    a_scim_user_in_a_mapped_group_becomes_a_tyk_user_in_that_group
);

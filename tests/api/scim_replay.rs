//! Replays the request sequences Microsoft Entra ID and Okta document for
//! their SCIM provisioning clients, checking every status and the parts of
//! each body the clients rely on, and the identity-change events written.

use pretty_assertions::assert_eq;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tyk_idsync::domain::{EventKind, SourceName};
use tyk_idsync::store::events;

use crate::both_backends;
use crate::support::Db;
use crate::support::scim::ScimServer;

/// One step: method, path (`{user}`/`{group}`/`{user2}` substituted), body,
/// expected status, and `(JSON pointer, expected value)` checks.
struct Step {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    status: StatusCode,
    checks: Vec<(&'static str, Value)>,
    /// Remember `/id` of the reply under this name.
    save_id: Option<&'static str>,
}

fn step(method: Method, path: &'static str, body: Option<Value>, status: u16) -> Step {
    Step {
        method,
        path,
        body,
        status: StatusCode::from_u16(status).expect("status"),
        checks: Vec::new(),
        save_id: None,
    }
}

impl Step {
    fn check(mut self, pointer: &'static str, value: Value) -> Self {
        self.checks.push((pointer, value));
        self
    }
    fn save(mut self, name: &'static str) -> Self {
        self.save_id = Some(name);
        self
    }
}

fn substitute(text: &str, ids: &[(&str, String)]) -> String {
    ids.iter().fold(text.to_string(), |t, (name, id)| {
        t.replace(&format!("{{{name}}}"), id)
    })
}

async fn replay(server: &ScimServer, source: &str, steps: Vec<Step>) {
    let mut ids: Vec<(&str, String)> = Vec::new();
    for (n, step) in steps.into_iter().enumerate() {
        let path = substitute(step.path, &ids);
        let body = step
            .body
            .map(|b| serde_json::from_str(&substitute(&b.to_string(), &ids)).expect("json"));
        let reply = server.send(source, step.method.clone(), &path, body).await;
        assert_eq!(
            reply.status, step.status,
            "step {n} {} {path}: {}",
            step.method, reply.body
        );
        for (pointer, expected) in step.checks {
            let expected = substitute(&expected.to_string(), &ids);
            let expected: Value = serde_json::from_str(&expected).expect("json");
            assert_eq!(
                reply.body.pointer(pointer),
                Some(&expected),
                "step {n} {path} {pointer}"
            );
        }
        if let Some(name) = step.save_id {
            ids.push((name, reply.body["id"].as_str().expect("id").to_string()));
        }
    }
}

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Entra ID: https://learn.microsoft.com/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups
fn entra_steps() -> Vec<Step> {
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Finance"}
    });
    vec![
        step(Method::GET, "/Users?filter=userName+eq+%22Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1%22", None, 200)
            .check("/totalResults", json!(0))
            .check("/Resources", json!([])),
        step(Method::POST, "/Users", Some(user.clone()), 201)
            .check("/userName", json!("Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"))
            .check("/externalId", json!("0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"))
            .check("/meta/resourceType", json!("User"))
            .check("/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User/department", json!("Finance"))
            .save("user"),
        step(Method::POST, "/Users", Some(user), 409).check("/scimType", json!("uniqueness")),
        step(Method::GET, "/Users?filter=userName+eq+%22test_user_ab6490ee-1e48-479e-a20b-2d77186b5dd1%22", None, 200)
            .check("/totalResults", json!(1))
            .check("/Resources/0/id", json!("{user}")),
        step(Method::GET, "/Users/{user}", None, 200).check("/active", json!(true)),
        step(Method::PATCH, "/Users/{user}", Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}]})), 200)
            .check("/emails/0/value", json!("updatedEmail@microsoft.com"))
            .check("/name/familyName", json!("updatedFamilyName")),
        step(Method::PATCH, "/Users/{user}", Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "active", "value": "False"}]})), 200)
            .check("/active", json!(false)),
        step(Method::POST, "/Groups", Some(json!({
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "displayName",
            "meta": {"resourceType": "Group"},
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]})), 201)
            .check("/displayName", json!("displayName"))
            .save("group"),
        step(Method::GET, "/Groups?excludedAttributes=members&filter=displayName+eq+%22displayName%22", None, 200)
            .check("/totalResults", json!(1))
            .check("/Resources/0/id", json!("{group}")),
        step(Method::PATCH, "/Groups/{group}", Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "Add", "path": "members", "value": [{"$ref": null, "value": "{user}"}]}]})), 200)
            .check("/members/0/value", json!("{user}")),
        step(Method::GET, "/Groups?filter=id+eq+%22{group}%22+and+members.value+eq+%22{user}%22&excludedAttributes=members", None, 200)
            .check("/totalResults", json!(1)),
        step(Method::PATCH, "/Groups/{group}", Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "{user}"}]}]})), 200),
        step(Method::GET, "/Groups/{group}", None, 200).check("/displayName", json!("displayName")),
        step(Method::PATCH, "/Groups/{group}", Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}]})), 200)
            .check("/displayName", json!("1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName")),
        step(Method::DELETE, "/Groups/{group}", None, 204),
        step(Method::DELETE, "/Users/{user}", None, 204),
        step(Method::GET, "/Users/{user}", None, 404).check("/status", json!("404")),
    ]
}

/// Okta: https://developer.okta.com/docs/reference/scim/scim-20/
fn okta_steps() -> Vec<Step> {
    vec![
        step(Method::GET, "/Users?filter=userName%20eq%20%22test.user@okta.local%22&startIndex=1&count=100", None, 200)
            .check("/totalResults", json!(0)),
        step(Method::POST, "/Users", Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "test.user@okta.local",
            "name": {"givenName": "Test", "familyName": "User"},
            "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
            "displayName": "Test User", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [], "password": "1mz050nq", "active": true})), 201)
            .check("/active", json!(true))
            .check("/displayName", json!("Test User"))
            .save("user"),
        step(Method::GET, "/Users/{user}", None, 200)
            .check("/userName", json!("test.user@okta.local"))
            .check("/locale", json!("en-US")),
        step(Method::PUT, "/Users/{user}", Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "{user}",
            "userName": "test.user@okta.local", "name": {"givenName": "Another", "familyName": "User"},
            "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
            "displayName": "Another User", "active": true})), 200)
            .check("/name/givenName", json!("Another")),
        step(Method::PATCH, "/Users/{user}", Some(json!({"schemas": [PATCH],
            "Operations": [{"op": "replace", "value": {"active": false}}]})), 200)
            .check("/active", json!(false)),
        step(Method::POST, "/Groups", Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Test SCIMv2", "members": []})), 201)
            .save("group"),
        step(Method::GET, "/Groups?filter=displayName%20eq%20%22Test%20SCIMv2%22&startIndex=1&count=100", None, 200)
            .check("/totalResults", json!(1)),
        step(Method::PATCH, "/Groups/{group}", Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "value": {"id": "{group}", "displayName": "Test SCIMv2 renamed"}}]})), 200)
            .check("/displayName", json!("Test SCIMv2 renamed")),
        step(Method::PATCH, "/Groups/{group}", Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": "{user}", "display": "test.user@okta.local"}]}]})), 200)
            .check("/members/0/value", json!("{user}")),
        step(Method::PATCH, "/Groups/{group}", Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "remove", "path": "members[value eq \"{user}\"]"}]})), 200),
        step(Method::GET, "/Groups/{group}", None, 200),
        step(Method::DELETE, "/Groups/{group}", None, 204),
        step(Method::GET, "/Groups/{group}", None, 404),
    ]
}

async fn kinds(server: &ScimServer, source: &str) -> Vec<EventKind> {
    let mut conn = server.store.pool().acquire().await.expect("conn");
    events::since(&mut conn, &SourceName::new(source), 0)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn entra_sequence(db: Db) {
    let server = ScimServer::start(db).await;
    replay(&server, "entra", entra_steps()).await;
    use EventKind::*;
    assert_eq!(
        kinds(&server, "entra").await,
        vec![
            UserCreated,
            UserUpdated,
            UserDeactivated,
            GroupCreated,
            MembershipChanged,
            MembershipChanged,
            GroupUpdated,
            GroupDeleted,
            UserDeleted
        ]
    );
}
both_backends!(scim_replay_entra, entra_sequence);

async fn okta_sequence(db: Db) {
    let server = ScimServer::start(db).await;
    replay(&server, "okta", okta_steps()).await;
    use EventKind::*;
    assert_eq!(
        kinds(&server, "okta").await,
        vec![
            UserCreated,
            UserUpdated,
            UserDeactivated,
            GroupCreated,
            GroupUpdated,
            MembershipChanged,
            MembershipChanged,
            GroupDeleted
        ]
    );
    let mut conn = server.store.pool().acquire().await.expect("conn");
    let evs = events::since(&mut conn, &SourceName::new("okta"), 0)
        .await
        .expect("events");
    let member_event = evs
        .iter()
        .find(|e| e.kind == MembershipChanged)
        .expect("membership");
    assert_eq!(member_event.email.as_deref(), Some("test.user@okta.local"));
}
both_backends!(scim_replay_okta, okta_sequence);

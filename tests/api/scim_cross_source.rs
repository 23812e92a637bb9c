//! Issue #16: no identity source can change another's people. With source
//! `okta`'s SCIM token an attacker named a user of source `entra` (or an
//! `entra` group, or an id naming nobody) as a member of an `okta` group;
//! the mapping then counted the `entra` user as a member, and a rule
//! `okta:Escalate → "Escalated"` moved that user in Tyk. Every such
//! request is now 400 `invalidValue` naming the value, nothing is stored,
//! the mapping of the `entra` user is unchanged, and the server keeps
//! serving.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_backends;
use crate::support::Db;
use crate::support::stack::{Stack, patch_ops, scim_user, spawn_stack};

const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn group_body(name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
    json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": members})
}

/// Asserts a refusal of `value` as a member: 400 `invalidValue` naming it.
fn assert_refused(what: &str, value: &str, (status, body): (u16, Value)) {
    assert_eq!(status, 400, "{what} naming {value}: {body}");
    assert_eq!(body["scimType"], "invalidValue", "{what}: {body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(value),
        "{what}: the detail names the value {value}: {detail}"
    );
}

/// The member ids and version of an Okta group, as its token sees it.
async fn okta_group(stack: &Stack, id: &str) -> (Vec<String>, String) {
    let (status, body) = stack
        .scim(
            &stack.okta_token,
            Method::GET,
            &format!("/Groups/{id}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let members = body["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["value"].as_str().unwrap_or_default().to_string())
        .collect();
    (members, body["meta"]["version"].to_string())
}

/// How many member rows name `member`, in any group.
async fn member_rows(stack: &Stack, member: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM identity_group_members WHERE member_id = $1")
        .bind(member)
        .fetch_one(stack.app.state.store.pool())
        .await
        .expect("count")
}

/// How many identity events source `okta` has written.
async fn okta_events(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM identity_events WHERE source = 'okta'")
        .fetch_one(stack.app.state.store.pool())
        .await
        .expect("count")
}

/// The groups the mapping counts for the user named `user_name`, as
/// (source, name).
async fn mapped_groups(stack: &Stack, user_name: &str) -> Vec<(String, String)> {
    let mut conn = stack.app.state.store.pool().acquire().await.expect("conn");
    let people = tyk_idsync::mapping::input::load_people(&mut conn)
        .await
        .expect("people");
    let person = people
        .iter()
        .find(|p| p.user_name == user_name)
        .expect("person");
    person
        .groups
        .iter()
        .map(|g| (g.source.as_str().to_string(), g.display_name.clone()))
        .collect()
}

async fn another_sources_people_cannot_be_made_members(db: Db) {
    let stack = spawn_stack(db).await;
    stack.add_rule("Escalated", 100, &["okta:Escalate"]).await;
    stack.add_rule("Staff", 10, &["entra:Staff"]).await;
    // Source b (entra): Bob, in entra's group Staff.
    let (status, bob) = stack
        .scim(
            &stack.entra_token,
            Method::POST,
            "/Users",
            scim_user("bob", "bob@example.org"),
        )
        .await;
    assert_eq!(status, 201, "{bob}");
    let bob = bob["id"].as_str().expect("id").to_string();
    let (status, staff) = stack
        .scim(
            &stack.entra_token,
            Method::POST,
            "/Groups",
            group_body("Staff", &[&bob]),
        )
        .await;
    assert_eq!(status, 201, "{staff}");
    let staff = staff["id"].as_str().expect("id").to_string();
    // Source a (okta, the attacker's token): its own Ada in Escalate.
    let ada = stack.create_user("ada", "ada@example.org").await;
    let escalate = stack.create_group("Escalate", &[&ada]).await;
    stack
        .until("Bob is in Staff and Ada in Escalated", |s| {
            s.in_group("bob@example.org", "Staff") && s.in_group("ada@example.org", "Escalated")
        })
        .await;
    let bob_mapped = mapped_groups(&stack, "bob").await;
    assert_eq!(bob_mapped, vec![("entra".to_string(), "Staff".to_string())]);
    let before = okta_group(&stack, &escalate).await;
    assert_eq!(before.0, vec![ada.clone()]);
    let events_before = okta_events(&stack).await;

    let nobody = Uuid::new_v4().to_string();
    let path = format!("/Groups/{escalate}");
    let token = &stack.okta_token;
    for (n, value) in [&bob, &staff, &nobody].into_iter().enumerate() {
        // POST a new group naming it (alone, and after an own member).
        let name = format!("Escalate {n}");
        let reply = stack
            .scim(token, Method::POST, "/Groups", group_body(&name, &[value]))
            .await;
        assert_refused("POST", value, reply);
        let reply = stack
            .scim(
                token,
                Method::POST,
                "/Groups",
                group_body(&name, &[&ada, value]),
            )
            .await;
        assert_refused("POST with an own member", value, reply);
        let filter = format!("/Groups?filter=displayName%20eq%20%22Escalate%20{n}%22");
        let (status, listed) = stack.scim(token, Method::GET, &filter, Value::Null).await;
        assert_eq!(
            (status, &listed["totalResults"]),
            (200, &json!(0)),
            "{listed}"
        );

        // PUT the group with it.
        let reply = stack
            .scim(
                token,
                Method::PUT,
                &path,
                group_body("Escalate", &[&ada, value]),
            )
            .await;
        assert_refused("PUT", value, reply);

        // PATCH add (the batched fast path), add with no path and replace
        // (the general path).
        let member = json!([{"value": value}]);
        let patches = [
            (
                "PATCH add",
                json!([{"op": "add", "path": "members", "value": member}]),
            ),
            (
                "PATCH add of own and foreign",
                json!([{"op": "add", "path": "members",
                        "value": [{"value": ada}, {"value": value}]}]),
            ),
            (
                "PATCH add without a path",
                json!([{"op": "add", "value": {"members": member}}]),
            ),
            (
                "PATCH replace",
                json!([{"op": "replace", "path": "members", "value": member}]),
            ),
            (
                "PATCH replace without a path",
                json!([{"op": "replace", "value": {"members": member}}]),
            ),
        ];
        for (what, ops) in patches {
            let reply = stack
                .scim(token, Method::PATCH, &path, patch_ops(ops))
                .await;
            assert_refused(what, value, reply);
        }
        assert_eq!(
            okta_group(&stack, &escalate).await,
            before,
            "the group is unchanged (members and version)"
        );
    }
    // Nothing stored: Bob is a member of Staff only, Staff of nothing, and
    // the random id of nothing.
    assert_eq!(member_rows(&stack, &bob).await, 1);
    assert_eq!(member_rows(&stack, &staff).await, 0);
    assert_eq!(member_rows(&stack, &nobody).await, 0);
    assert_eq!(okta_events(&stack).await, events_before, "no event either");

    // The server keeps serving, and an own member is still accepted.
    let carol = stack.create_user("carol", "carol@example.org").await;
    stack.patch_members(&escalate, &[&carol], &[]).await;
    let (members, _) = okta_group(&stack, &escalate).await;
    let mut expected = vec![ada.clone(), carol.clone()];
    expected.sort();
    assert_eq!(members, expected);

    // Bob's mapping is unchanged and Tyk never moved him.
    assert_eq!(mapped_groups(&stack, "bob").await, bob_mapped);
    stack.reconcile().await;
    stack
        .until("Carol is in Escalated", |s| {
            s.in_group("carol@example.org", "Escalated")
        })
        .await;
    assert!(stack.in_group("bob@example.org", "Staff"));
    assert!(!stack.in_group("bob@example.org", "Escalated"));
    let bob_user = stack.tyk_user("bob@example.org").expect("bob in Tyk");
    let moved = stack
        .tyk_writes()
        .into_iter()
        .any(|w| w.method == "PUT" && w.path == format!("/api/users/{}", bob_user.id));
    assert!(!moved, "Bob's Tyk user was never changed after creation");
    // And entra's own token still sees Bob in Staff only.
    let (status, bob_seen) = stack
        .scim(
            &stack.entra_token,
            Method::GET,
            &format!("/Users/{bob}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    let groups: Vec<&str> = bob_seen["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["value"].as_str())
        .collect();
    assert_eq!(groups, vec![staff.as_str()]);
}
both_backends!(
    scim_cross_source_escalation,
    another_sources_people_cannot_be_made_members
);

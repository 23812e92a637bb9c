//! A deprovisioned Tyk user gets a new Dashboard API access key (issue
//! #18): deactivating a Dashboard user does not stop its key. On by
//! default (`sync.reset_access_key_on_deactivate`), audited, once per
//! deactivation; off, the key is left alone.

use reqwest::Method;
use serde_json::Value;

use crate::both_backends;
use crate::support::Db;
use crate::support::stack::{Stack, spawn_stack, spawn_stack_configured};

fn access_key(stack: &Stack, email: &str) -> String {
    stack
        .tyk_user(email)
        .and_then(|u| {
            u.extra
                .get("access_key")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn key_resets(stack: &Stack, user_id: &str) -> usize {
    let path = format!("/api/users/{user_id}/actions/key/reset");
    stack
        .standin
        .request_log()
        .iter()
        .filter(|r| r.method == "PUT" && r.path == path && r.status == 200)
        .count()
}

async fn provisioned_ada(stack: &Stack) -> (String, String) {
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    stack.create_group("Developers", &[&ada]).await;
    stack
        .until("Ada is in API Developers", |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;
    let tyk_id = stack.tyk_user("ada@example.org").expect("ada").id;
    (ada, tyk_id)
}

async fn a_deactivated_user_gets_a_new_access_key(db: Db) {
    let stack = spawn_stack(db).await;
    let (ada, tyk_id) = provisioned_ada(&stack).await;
    let before = access_key(&stack, "ada@example.org");
    assert_eq!(before.len(), 32, "the stand-in gives every user a key");

    stack.set_active(&ada, false).await;
    stack
        .until("Ada is inactive with a new key", |s| {
            s.tyk_user("ada@example.org").is_some_and(|u| !u.active)
                && access_key(s, "ada@example.org") != before
        })
        .await;
    assert_eq!(key_resets(&stack, &tyk_id), 1);
    stack.until_outbox_empty(crate::support::stack::UNTIL).await;

    // Audited, as its own step.
    let (status, audit) = stack
        .admin_request(
            Method::GET,
            "/admin/v1/sync/audit?email=ada@example.org&step=reset_access_key",
        )
        .await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["ok"], true, "{audit}");
    assert_eq!(entries[0]["after"]["access_key"], "reset", "{audit}");

    // Once per deactivation: a full reconcile does not reset it again.
    let after = access_key(&stack, "ada@example.org");
    stack.reconcile().await;
    assert_eq!(key_resets(&stack, &tyk_id), 1);
    assert_eq!(access_key(&stack, "ada@example.org"), after);

    // Back and gone again: a new deactivation, a new key.
    stack.set_active(&ada, true).await;
    stack
        .until("Ada is active again", |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;
    stack.set_active(&ada, false).await;
    stack
        .until("Ada's key is reset again", |s| key_resets(s, &tyk_id) == 2)
        .await;
    assert!(!stack.tyk_user("ada@example.org").expect("ada").active);
}
both_backends!(
    deactivation_resets_the_access_key,
    a_deactivated_user_gets_a_new_access_key
);

async fn with_the_setting_off_the_key_is_left_alone(db: Db) {
    let stack = spawn_stack_configured(db, |c| {
        c.sync.reset_access_key_on_deactivate = false;
    })
    .await;
    let (ada, tyk_id) = provisioned_ada(&stack).await;
    let before = access_key(&stack, "ada@example.org");
    stack.set_active(&ada, false).await;
    stack
        .until("Ada is inactive", |s| {
            s.tyk_user("ada@example.org").is_some_and(|u| !u.active)
        })
        .await;
    stack.until_outbox_empty(crate::support::stack::UNTIL).await;
    stack.reconcile().await;
    assert_eq!(key_resets(&stack, &tyk_id), 0);
    assert_eq!(access_key(&stack, "ada@example.org"), before);
}
both_backends!(
    the_access_key_reset_can_be_switched_off,
    with_the_setting_off_the_key_is_left_alone
);

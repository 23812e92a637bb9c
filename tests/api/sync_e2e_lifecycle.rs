//! End to end, a person's life in Tyk driven over SCIM and the admin API:
//! group moves by mapping priority, deactivation and reactivation, deletion
//! after the grace period, hand-made changes reverted, unmanaged users and
//! admins left alone (or adopted), and an idle run that writes nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tyk_idsync::sync::Deprovision;
use tyk_idsync::tyk::{PermissionLevel, Permissions, User};

use crate::both_backends;
use crate::support::Db;
use crate::support::stack::{
    Stack, TYK_ADMIN_EMAIL, TYK_API_KEY, patch_ops, spawn_stack, spawn_stack_configured,
};

/// Successful `POST /api/users` per e-mail, from the stand-in's log.
pub fn creations_by_email(stack: &Stack) -> BTreeMap<String, usize> {
    let mut creations = BTreeMap::new();
    for request in stack.standin.request_log() {
        if request.method == "POST" && request.path == "/api/users" && request.status == 200 {
            let email = request
                .body
                .as_ref()
                .and_then(|b| b["email_address"].as_str())
                .unwrap_or("")
                .to_lowercase();
            *creations.entry(email).or_insert(0) += 1;
        }
    }
    creations
}

/// Write requests on one Tyk user's path (`/api/users/{id}…`).
fn writes_to(stack: &Stack, user_id: &str) -> usize {
    let path = format!("/api/users/{user_id}");
    stack
        .tyk_writes()
        .iter()
        .filter(|r| r.path.starts_with(&path))
        .count()
}

fn user_id(stack: &Stack, email: &str) -> String {
    stack.tyk_user(email).expect(email).id
}

/// Changes a Tyk user by hand, through the stand-in's Dashboard API (only
/// the fields sent change).
async fn put_by_hand(stack: &Stack, user_id: &str, fields: Value) {
    let response = stack
        .app
        .client
        .put(format!("{}/api/users/{user_id}", stack.standin.base_url()))
        .header("authorization", TYK_API_KEY)
        .json(&fields)
        .send()
        .await
        .expect("hand-made change");
    assert_eq!(response.status(), 200, "hand-made change {fields}");
}

/// Waits for the outbox to drain (a no-op change has been applied, or
/// rather, planned to nothing).
async fn settle(stack: &Stack) {
    stack.until_outbox_empty(Duration::from_secs(10)).await;
}

// ---- a. created in the right group, moved by mapping priority ----------

async fn a_person_is_moved_between_tyk_groups_as_their_scim_groups_change(db: Db) {
    let stack = spawn_stack(db).await;
    stack.add_rule("API Readers", 5, &["okta:Readers"]).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    stack.add_rule("API Ops", 20, &["okta:Ops"]).await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    let developers = stack.create_group("Developers", &[&ada]).await;
    let ops = stack.create_group("Ops", &[]).await;
    let readers = stack.create_group("Readers", &[]).await;

    stack
        .until("Ada is in API Developers", |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;
    let id = user_id(&stack, "ada@example.org");
    let created = stack.tyk_user("ada@example.org").expect("ada");
    let developers_group = stack.tyk_group("API Developers").expect("group");
    assert_eq!(
        created.user_permissions, developers_group.user_permissions,
        "created with the group's permissions"
    );
    assert!(!created.user_permissions.grants_admin());

    // Also in a higher-priority group: that one wins.
    stack.patch_members(&ops, &[&ada], &[]).await;
    stack
        .until("Ada is moved to API Ops (priority 20 beats 10)", |s| {
            s.in_group("ada@example.org", "API Ops")
        })
        .await;

    // A lower-priority group on top changes nothing.
    stack.patch_members(&readers, &[&ada], &[]).await;
    settle(&stack).await;
    assert!(stack.in_group("ada@example.org", "API Ops"));

    // Out of Ops: back to the best remaining one, Developers (10 beats 5).
    stack.patch_members(&ops, &[], &[&ada]).await;
    stack
        .until("Ada is back in API Developers", |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;

    // Removed from Developers, only Readers is left.
    stack.patch_members(&developers, &[], &[&ada]).await;
    stack
        .until("Ada is moved to API Readers", |s| {
            s.in_group("ada@example.org", "API Readers")
        })
        .await;

    // The same Tyk user all along: moved, never recreated or deleted.
    let ada_now = stack.tyk_user("ada@example.org").expect("ada");
    assert_eq!(ada_now.id, id);
    assert_eq!(
        ada_now.user_permissions,
        stack
            .tyk_group("API Readers")
            .expect("group")
            .user_permissions
    );
    assert_eq!(creations_by_email(&stack).get("ada@example.org"), Some(&1));
    let users_named_ada = stack
        .standin
        .users()
        .into_iter()
        .filter(|u| u.email_address == "ada@example.org")
        .count();
    assert_eq!(users_named_ada, 1);
    assert!(
        !stack.tyk_writes().iter().any(|r| r.method == "DELETE"),
        "nothing deleted: {:?}",
        stack
            .tyk_writes()
            .iter()
            .map(|r| format!("{} {} {:?}", r.method, r.path, r.body))
            .collect::<Vec<_>>()
    );
}
both_backends!(
    a_moves_between_groups,
    a_person_is_moved_between_tyk_groups_as_their_scim_groups_change
);

// ---- b. deactivated on PATCH and DELETE, reactivated in place ----------

async fn a_person_is_deactivated_on_patch_and_delete_and_reactivated_in_place(db: Db) {
    let stack = spawn_stack(db).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    let bob = stack.create_user("bob", "bob@example.org").await;
    stack.create_group("Developers", &[&ada, &bob]).await;
    stack
        .until("Ada and Bob are in API Developers", |s| {
            s.in_group("ada@example.org", "API Developers")
                && s.in_group("bob@example.org", "API Developers")
        })
        .await;
    let (ada_id, bob_id) = (
        user_id(&stack, "ada@example.org"),
        user_id(&stack, "bob@example.org"),
    );

    stack.set_active(&ada, false).await;
    stack
        .until("Ada is inactive in Tyk", |s| {
            s.tyk_user("ada@example.org").is_some_and(|u| !u.active)
        })
        .await;
    let (status, body) = stack
        .scim(
            &stack.okta_token,
            Method::DELETE,
            &format!("/Users/{bob}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    stack
        .until("Bob is inactive in Tyk", |s| {
            s.tyk_user("bob@example.org").is_some_and(|u| !u.active)
        })
        .await;
    // Deactivated, kept (the default policy), still in their group.
    for (email, id) in [("ada@example.org", &ada_id), ("bob@example.org", &bob_id)] {
        let user = stack.tyk_user(email).expect(email);
        assert_eq!(&user.id, id);
        assert_eq!(
            user.group_id,
            stack.tyk_group("API Developers").expect("group").id
        );
    }

    stack.set_active(&ada, true).await;
    stack
        .until("Ada is active again", |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;
    assert_eq!(user_id(&stack, "ada@example.org"), ada_id, "not recreated");
    assert_eq!(creations_by_email(&stack).get("ada@example.org"), Some(&1));
    assert!(!stack.tyk_writes().iter().any(|r| r.method == "DELETE"));
    // Bob stays deactivated.
    settle(&stack).await;
    assert!(!stack.tyk_user("bob@example.org").expect("bob").active);
}
both_backends!(
    b_deactivate_and_reactivate,
    a_person_is_deactivated_on_patch_and_delete_and_reactivated_in_place
);

// ---- c. the delete policy and its grace period -------------------------

const GRACE: Duration = Duration::from_secs(3);

async fn with_the_delete_policy_leavers_are_deleted_after_the_grace_period(db: Db) {
    let stack = spawn_stack_configured(db, |c| {
        c.sync.deprovision = Deprovision::Delete;
        c.sync.grace_period = GRACE;
    })
    .await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    let bob = stack.create_user("bob", "bob@example.org").await;
    let cy = stack.create_user("cy", "cy@example.org").await;
    let developers = stack.create_group("Developers", &[&ada, &bob, &cy]).await;
    let everyone = ["ada@example.org", "bob@example.org", "cy@example.org"];
    stack
        .until("everyone is in API Developers", |s| {
            everyone.iter().all(|e| s.in_group(e, "API Developers"))
        })
        .await;
    let ids: Vec<String> = everyone.iter().map(|e| user_id(&stack, e)).collect();

    // Ada leaves for good, Bob is deactivated, Cy deleted at the IdP.
    let left_at = Instant::now();
    stack.set_active(&ada, false).await;
    stack.set_active(&bob, false).await;
    let (status, _) = stack
        .scim(
            &stack.okta_token,
            Method::DELETE,
            &format!("/Users/{cy}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 204);
    stack
        .until("all three are deactivated", |s| {
            everyone
                .iter()
                .all(|e| s.tyk_user(e).is_some_and(|u| !u.active))
        })
        .await;

    // Bob and Cy come back inside the grace period: reactivated, not recreated.
    stack.set_active(&bob, true).await;
    let cy_again = stack.create_user("cy", "cy@example.org").await;
    stack.patch_members(&developers, &[&cy_again], &[]).await;
    stack
        .until("Bob and Cy are active again", |s| {
            s.in_group("bob@example.org", "API Developers")
                && s.in_group("cy@example.org", "API Developers")
        })
        .await;
    let back_after = left_at.elapsed();
    assert!(back_after < GRACE, "the returns took {back_after:?}");
    assert_eq!(user_id(&stack, "bob@example.org"), ids[1]);
    assert_eq!(user_id(&stack, "cy@example.org"), ids[2]);

    // Ada is deleted by a full reconcile once the grace period has passed,
    // never before.
    let start = Instant::now();
    while stack.tyk_user("ada@example.org").is_some() {
        assert!(
            start.elapsed() < GRACE + Duration::from_secs(10),
            "Ada was never deleted"
        );
        stack.reconcile().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deleted_after = left_at.elapsed();
    assert!(
        deleted_after >= GRACE,
        "deleted {deleted_after:?} after leaving, inside the grace period {GRACE:?}"
    );
    let deletions: Vec<_> = stack
        .tyk_writes()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletions.len(), 1, "only Ada is deleted: {deletions:?}");
    assert_eq!(deletions[0].path, format!("/api/users/{}", ids[0]));
    for email in everyone {
        assert_eq!(creations_by_email(&stack).get(email), Some(&1), "{email}");
    }
    assert!(stack.in_group("bob@example.org", "API Developers"));
    assert!(stack.in_group("cy@example.org", "API Developers"));
    let (_, audit) = stack
        .admin_request(
            Method::GET,
            "/admin/v1/sync/audit?email=ada@example.org&step=delete",
        )
        .await;
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(1),
        "{audit}"
    );

    // Nothing more to do afterwards.
    stack.standin.clear_request_log();
    let status = stack.reconcile().await;
    assert_eq!(status["tyk_writes"], 0, "{status}");
    assert!(stack.tyk_writes().is_empty());
}
both_backends!(
    c_delete_after_grace,
    with_the_delete_policy_leavers_are_deleted_after_the_grace_period
);

// ---- d. hand-made changes in Tyk are reverted --------------------------

async fn changes_made_by_hand_in_tyk_are_reverted_by_the_next_full_reconcile(db: Db) {
    let stack = spawn_stack(db).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    stack.add_rule("API Ops", 20, &["okta:Ops"]).await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    let bob = stack.create_user("bob", "bob@example.org").await;
    let cy = stack.create_user("cy", "cy@example.org").await;
    stack.create_group("Developers", &[&ada, &bob, &cy]).await;
    let everyone = ["ada@example.org", "bob@example.org", "cy@example.org"];
    stack
        .until("everyone is in API Developers", |s| {
            everyone.iter().all(|e| s.in_group(e, "API Developers"))
                && s.tyk_group("API Ops").is_some()
        })
        .await;
    settle(&stack).await;
    let before: Vec<User> = everyone
        .iter()
        .map(|e| stack.tyk_user(e).expect(e))
        .collect();

    // By hand: Ada moved to API Ops, Bob renamed, Cy deactivated and
    // given more rights.
    let ops = stack.tyk_group("API Ops").expect("ops").id;
    put_by_hand(&stack, &before[0].id, json!({"group_id": ops})).await;
    put_by_hand(&stack, &before[1].id, json!({"first_name": "Mallory"})).await;
    let mut more: Permissions = before[2].user_permissions.clone();
    more.set("policies", PermissionLevel::Write);
    put_by_hand(
        &stack,
        &before[2].id,
        json!({"active": false, "user_permissions": more}),
    )
    .await;
    assert!(stack.in_group("ada@example.org", "API Ops"));
    assert_eq!(
        stack.tyk_user("bob@example.org").expect("bob").first_name,
        "Mallory"
    );

    stack.standin.clear_request_log();
    let status = stack.reconcile().await;
    assert_eq!(status["outcome"], "applied", "{status}");
    for (email, was) in everyone.iter().zip(&before) {
        let now = stack.tyk_user(email).expect(email);
        assert_eq!(&now, was, "{email} is as before the hand-made change");
    }
    // One PUT per changed user, nothing else.
    let writes = stack.tyk_writes();
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(writes.iter().all(|r| r.method == "PUT"), "{writes:?}");
}
both_backends!(
    d_hand_changes_reverted,
    changes_made_by_hand_in_tyk_are_reverted_by_the_next_full_reconcile
);

// ---- e. unmanaged users and admins; adoption ---------------------------

/// Seeds Bob, a Tyk user nobody told tyk-idsync about.
fn seed_unmanaged(stack: &Stack) -> User {
    let permissions = Permissions::new().with("apis", PermissionLevel::Read);
    stack
        .standin
        .seed_user(&stack.org_id, "bob@example.org", permissions)
}

/// SCIM users for Ada (new), Bob (unmanaged in Tyk) and the Tyk admin, all
/// in the mapped group.
async fn push_ada_bob_and_admin(stack: &Stack) {
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    let bob = stack.create_user("bob", "Bob@Example.org").await;
    let root = stack.create_user("root", TYK_ADMIN_EMAIL).await;
    stack.create_group("Developers", &[&ada, &bob, &root]).await;
}

async fn an_unmanaged_user_and_an_admin_are_left_alone(db: Db) {
    let stack = spawn_stack(db).await;
    let bob = seed_unmanaged(&stack);
    let admin = stack.tyk_user(TYK_ADMIN_EMAIL).expect("admin");
    push_ada_bob_and_admin(&stack).await;
    stack
        .until("Ada is in API Developers", |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;
    settle(&stack).await;
    let status = stack.reconcile().await;
    assert_eq!(status["outcome"], "applied", "{status}");

    assert_eq!(stack.tyk_user("bob@example.org").as_ref(), Some(&bob));
    assert_eq!(stack.tyk_user(TYK_ADMIN_EMAIL).as_ref(), Some(&admin));
    assert_eq!(writes_to(&stack, &bob.id), 0);
    assert_eq!(writes_to(&stack, &admin.id), 0);
    assert_eq!(creations_by_email(&stack).get("bob@example.org"), None);
    // The plan says why.
    let (_, plan) = stack
        .admin_request(Method::GET, "/admin/v1/sync/plan")
        .await;
    let skipped: BTreeMap<String, String> = plan["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| {
            (
                s["subject"].as_str().unwrap_or("").to_string(),
                s["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        skipped.get("bob@example.org").map(String::as_str),
        Some("unmanaged_user"),
        "{plan}"
    );
    assert_eq!(
        skipped.get(TYK_ADMIN_EMAIL).map(String::as_str),
        Some("admin"),
        "{plan}"
    );
}
both_backends!(
    e_unmanaged_and_admin_left_alone,
    an_unmanaged_user_and_an_admin_are_left_alone
);

async fn with_adopt_existing_a_matching_tyk_user_is_adopted_and_audited(db: Db) {
    let stack = spawn_stack_configured(db, |c| c.sync.adopt_existing = true).await;
    let bob = seed_unmanaged(&stack);
    let admin = stack.tyk_user(TYK_ADMIN_EMAIL).expect("admin");
    push_ada_bob_and_admin(&stack).await;
    stack
        .until("Ada and Bob are in API Developers", |s| {
            s.in_group("ada@example.org", "API Developers")
                && s.in_group("bob@example.org", "API Developers")
        })
        .await;
    let adopted = stack.tyk_user("bob@example.org").expect("bob");
    assert_eq!(adopted.id, bob.id, "adopted, not recreated");
    assert_eq!(
        adopted.user_permissions,
        stack
            .tyk_group("API Developers")
            .expect("g")
            .user_permissions
    );
    assert_eq!(
        (adopted.first_name.as_str(), adopted.last_name.as_str()),
        ("Ada", "Lovelace"),
        "profile taken from the identity provider"
    );
    assert_eq!(creations_by_email(&stack).get("bob@example.org"), None);
    // Even with adoption on, an admin is never touched.
    settle(&stack).await;
    stack.reconcile().await;
    assert_eq!(stack.tyk_user(TYK_ADMIN_EMAIL).as_ref(), Some(&admin));
    assert_eq!(writes_to(&stack, &admin.id), 0);

    let (status, audit) = stack
        .admin_request(
            Method::GET,
            "/admin/v1/sync/audit?email=bob@example.org&step=adopt_user",
        )
        .await;
    assert_eq!(status, 200);
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["tyk_id"], json!(bob.id), "{audit}");
    assert_eq!(entries[0]["ok"], json!(true), "{audit}");
}
both_backends!(
    e_adopt_existing,
    with_adopt_existing_a_matching_tyk_user_is_adopted_and_audited
);

// ---- f. nothing changed, nothing written -------------------------------

async fn a_run_with_nothing_changed_makes_no_write_to_tyk(db: Db) {
    let stack = spawn_stack(db).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    stack.add_rule("API Ops", 20, &["okta:Ops"]).await;
    let mut developers = Vec::new();
    for n in 0..6 {
        developers.push(
            stack
                .create_user(&format!("dev{n}"), &format!("dev{n}@example.org"))
                .await,
        );
    }
    let ops_member = stack.create_user("op", "op@example.org").await;
    let refs: Vec<&str> = developers.iter().map(String::as_str).collect();
    stack.create_group("Developers", &refs).await;
    stack.create_group("Ops", &[&ops_member]).await;
    stack
        .until("everyone is in their group", |s| {
            (0..6).all(|n| s.in_group(&format!("dev{n}@example.org"), "API Developers"))
                && s.in_group("op@example.org", "API Ops")
        })
        .await;
    settle(&stack).await;

    for _ in 0..2 {
        stack.standin.clear_request_log();
        let status = stack.reconcile().await;
        assert_eq!(status["outcome"], "applied", "{status}");
        assert_eq!(status["tyk_writes"], 0, "{status}");
        assert_eq!(status["applied"], 0, "{status}");
        let log = stack.standin.request_log();
        assert!(
            log.iter().any(|r| r.path == "/api/users"),
            "the run read Tyk"
        );
        let writes = stack.tyk_writes();
        assert!(writes.is_empty(), "writes on an idle run: {writes:?}");
    }

    // A SCIM change that does not concern Tyk (a title) is an event that
    // is applied as nothing.
    stack.standin.clear_request_log();
    let (status, body) = stack
        .scim(
            &stack.okta_token,
            Method::PATCH,
            &format!("/Users/{}", developers[0]),
            patch_ops(json!([{"op": "replace", "path": "title", "value": "Engineer"}])),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&stack).await;
    let writes = stack.tyk_writes();
    assert!(writes.is_empty(), "writes for a no-op change: {writes:?}");
}
both_backends!(
    f_idle_run_writes_nothing,
    a_run_with_nothing_changed_makes_no_write_to_tyk
);

//! `explain` shows both sides — what the mapping asks for and what Tyk
//! holds now (managed or not, and why), the steps a sync would take for
//! that person, any quarantine — over the admin API and through the binary.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tyk_idsync::tyk::{PermissionLevel, Permissions};

use crate::both_backends;
use crate::cli_sync::run;
use crate::support::Db;
use crate::support::stack::{Stack, TYK_API_KEY, spawn_stack};

async fn explain(stack: &Stack, email: &str) -> Value {
    let (status, body) = stack
        .admin_request(Method::GET, &format!("/admin/v1/explain/{email}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn explain_shows_what_tyk_holds(db: Db) {
    let stack = spawn_stack(db).await;
    // Hand-made in Tyk, in no group; the mapping wants it in API Developers.
    let hand = stack.standin.seed_user(
        &stack.org_id,
        "hand@example.org",
        Permissions::new().with("apis", PermissionLevel::Read),
    );
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    let bob = stack.create_user("hand", "hand@example.org").await;
    let gone = stack.create_user("gone", "gone@example.org").await;
    stack.create_group("Developers", &[&ada, &bob, &gone]).await;
    stack
        .until("gone is in API Developers", |s| {
            s.in_group("gone@example.org", "API Developers")
        })
        .await;
    stack.set_active(&gone, false).await;
    stack
        .until("gone is deactivated", |s| {
            s.tyk_user("gone@example.org").is_some_and(|u| !u.active)
        })
        .await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;

    let body = explain(&stack, "hand@example.org").await;
    // Desired: the mapping's wish…
    assert_eq!(body["users"][0]["group"], "API Developers", "{body}");
    // …and what Tyk holds: the hand-made user, in no group, not ours.
    let held = &body["tyk"]["tyk_users"];
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(held[0]["id"], hand.id.as_str());
    assert_eq!(held[0]["group_id"], Value::Null, "{body}");
    assert_eq!(held[0]["managed"], false, "{body}");
    assert!(
        held[0]["why"]
            .as_str()
            .is_some_and(|w| w.contains("not created by tyk-idsync")),
        "{body}"
    );
    // The plan for that person leaves it alone.
    assert_eq!(
        body["tyk"]["plan"]["steps"],
        serde_json::json!([]),
        "{body}"
    );
    assert_eq!(
        body["tyk"]["plan"]["skipped"][0]["reason"], "unmanaged_user",
        "{body}"
    );

    let body = explain(&stack, "gone@example.org").await;
    let held = &body["tyk"]["tyk_users"];
    assert_eq!(held[0]["active"], false, "deactivated in Tyk: {body}");
    assert_eq!(held[0]["managed"], true, "{body}");
    assert_eq!(held[0]["group_name"], "API Developers", "{body}");

    let body = explain(&stack, "ada@example.org").await;
    assert_eq!(body["tyk"]["tyk_users"][0]["managed"], true, "{body}");
    assert_eq!(body["tyk"]["quarantine"], serde_json::json!([]), "{body}");

    // Through the binary, on the service's database.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[database]\nurl = \"{}\"\n\n[tyk]\ndashboard_url = \"{}\"\napi_key = \"{TYK_API_KEY}\"\n\n\
             [scim]\nenabled = true\n[scim.sources.okta]\n",
            stack.app.state.config.database.url,
            stack.standin.base_url(),
        ),
    )
    .expect("config");
    let out = run(dir.path(), &["explain", "hand@example.org"]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tyk_part = text.split("In Tyk now:").nth(1).unwrap_or_default();
    let held_line = tyk_part.lines().nth(1).unwrap_or_default();
    assert!(
        held_line.contains(&hand.id) && held_line.contains("no group"),
        "{text}"
    );
    assert!(held_line.contains("NOT managed"), "{text}");
    assert!(!held_line.contains("API Developers"), "{text}");
    assert!(tyk_part.contains("unmanaged_user"), "{text}");
    let out = run(dir.path(), &["explain", "gone@example.org", "--json"]).await;
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["tyk"]["tyk_users"][0]["active"], false, "{json}");
}

both_backends!(explain_shows_what_tyk_holds_, explain_shows_what_tyk_holds);

async fn explain_shows_a_quarantine(db: Db) {
    let stack = spawn_stack(db).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    stack
        .standin
        .with_directory(|d| d.refused_emails.insert("refused@example.org".into()));
    let bad = stack.create_user("refused", "refused@example.org").await;
    stack.create_group("Developers", &[&bad]).await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    let body = explain(&stack, "refused@example.org").await;
    assert_eq!(body["tyk"]["tyk_users"], serde_json::json!([]), "{body}");
    let q = &body["tyk"]["quarantine"][0];
    assert_eq!(q["kind"], "tyk_refused", "{body}");
    assert_eq!(q["reason"], "User object validation failed.", "{body}");
    // The steps a sync would take: the creation Tyk refused.
    assert_eq!(
        body["tyk"]["plan"]["steps"][0]["step"], "create_user",
        "{body}"
    );
}

both_backends!(explain_shows_a_quarantine_, explain_shows_a_quarantine);

//! The console's view of failures over the real app and the Tyk stand-in:
//! the person page's Tyk side and quarantine, the status counts, the
//! Failures page with Retry (one, all) and its CSRF refusals; and the admin
//! API's and the binary's rejection of a held run.

use std::time::Duration;

use reqwest::Method;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use tyk_idsync::tyk::{PermissionLevel, Permissions};

use crate::both_backends;
use crate::cli_sync::run;
use crate::support::Db;
use crate::support::app::ADMIN_TOKEN;
use crate::support::stack::{Stack, spawn_stack};
use crate::ui::{Console, csrf_in, four_developers, guarded_stack};

const REFUSED: &str = "refused@example.org";
const SECOND: &str = "second@example.org";

async fn quarantined_count(stack: &Stack) -> i64 {
    let (status, body) = stack.admin_request(Method::GET, "/admin/v1/status").await;
    assert_eq!(status, 200, "{body}");
    body["failures"]["quarantined"].as_i64().expect("count")
}

/// Ada synced, a hand-made Tyk user the mapping also wants, and two people
/// the stand-in refuses (quarantined after one attempt each).
async fn stack_with_quarantine(db: Db) -> (Stack, String) {
    let stack = spawn_stack(db).await;
    let hand = stack.standin.seed_user(
        &stack.org_id,
        "hand@example.org",
        Permissions::new().with("apis", PermissionLevel::Read),
    );
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    stack.standin.with_directory(|d| {
        d.refused_emails.insert(REFUSED.to_string());
        d.refused_emails.insert(SECOND.to_string());
    });
    let mut ids = Vec::new();
    for (name, email) in [
        ("ada", "ada@example.org"),
        ("hand", "hand@example.org"),
        ("refused", REFUSED),
        ("second", SECOND),
    ] {
        ids.push(stack.create_user(name, email).await);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    stack.create_group("Developers", &refs).await;
    stack
        .until("ada is in API Developers", |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    assert_eq!(quarantined_count(&stack).await, 2);
    (stack, hand.id)
}

async fn the_person_page_shows_what_tyk_holds_and_the_quarantine(db: Db) {
    let (stack, hand_id) = stack_with_quarantine(db).await;
    let mut console = Console::new(&stack.app.address);
    console.login().await;

    // Ours: managed, created by us, in the group, active; nothing to do.
    let page = console.page("/ui/people/ada%40example.org").await;
    assert!(page.contains("<h2>In Tyk now</h2>"), "{page}");
    assert!(page.contains("created by tyk-idsync on "), "{page}");
    assert!(
        page.contains("<span class=\"badge ok\">active</span>"),
        "{page}"
    );
    assert!(
        page.contains("Take no step: Tyk matches the desired state."),
        "{page}"
    );
    assert!(!page.contains("<h2>Quarantined</h2>"), "{page}");

    // Hand-made: not ours, in no group, left alone — though the mapping wants it.
    let page = console.page("/ui/people/hand%40example.org").await;
    assert!(page.contains(&format!("<code>{hand_id}</code>")), "{page}");
    assert!(page.contains("<strong>not managed</strong>"), "{page}");
    assert!(page.contains("not created by tyk-idsync"), "{page}");
    assert!(page.contains("no group"), "{page}");
    assert!(
        page.contains("Take no step: the person is left alone."),
        "{page}"
    );

    // Refused: nothing in Tyk, the quarantine with Tyk's reason and a Retry.
    let page = console.page("/ui/people/refused%40example.org").await;
    assert!(page.contains("Tyk has no user with this e-mail."), "{page}");
    assert!(page.contains("<h2>Quarantined</h2>"), "{page}");
    assert!(page.contains("tyk_refused"), "{page}");
    assert!(
        page.contains("400 User object validation failed."),
        "{page}"
    );
    assert!(
        page.contains("action=\"/ui/people/refused%40example.org/retry\""),
        "{page}"
    );
    assert!(page.contains("<h2>A sync would</h2>"), "{page}");

    // Retry without the session's CSRF token: refused, still quarantined.
    for csrf in ["forged", ""] {
        let (status, body, _) = console
            .post("/ui/people/refused%40example.org/retry", &[("csrf", csrf)])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    assert_eq!(quarantined_count(&stack).await, 2);

    // Tyk takes them now: Retry lifts the quarantine and the sync creates them.
    stack
        .standin
        .with_directory(|d| d.refused_emails.remove(REFUSED));
    let csrf = csrf_in(&page);
    let (status, body, headers) = console
        .post("/ui/people/refused%40example.org/retry", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[LOCATION], "/ui/people/refused%40example.org");
    stack
        .until("the retried person is in Tyk", |s| {
            s.in_group(REFUSED, "API Developers")
        })
        .await;
    let page = console.page("/ui/people/refused%40example.org").await;
    assert!(!page.contains("<h2>Quarantined</h2>"), "{page}");
    assert!(page.contains("created by tyk-idsync on "), "{page}");
    // Nobody to retry any more: a clear 404 page.
    let (status, body, _) = console
        .post("/ui/people/refused%40example.org/retry", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("is not quarantined"), "{body}");

    // Tyk down: the page still shows our side, and says Tyk could not be
    // read (a hand-made user is looked up in Tyk on every view).
    let mut standin = stack.standin;
    standin.stop();
    let page = console.page("/ui/people/hand%40example.org").await;
    assert!(page.contains("<h2>Matching rules</h2>"), "{page}");
    assert!(page.contains("cannot read Tyk"), "{page}");
}
both_backends!(
    ui_person_tyk_side,
    the_person_page_shows_what_tyk_holds_and_the_quarantine
);

async fn status_counts_and_the_failures_page_retries_one_and_all(db: Db) {
    let (stack, _) = stack_with_quarantine(db).await;
    let mut console = Console::new(&stack.app.address);
    console.login().await;

    let page = console.page("/ui/").await;
    assert!(!page.contains("<strong>OK</strong>"), "{page}");
    assert!(page.contains("2 person(s) quarantined"), "{page}");
    assert!(
        page.contains("<a href=\"/ui/failures\">2 quarantined</a>"),
        "{page}"
    );
    assert!(
        page.contains("<a href=\"/ui/failures\">Failures</a>"),
        "nav: {page}"
    );

    let page = console.page("/ui/failures").await;
    assert!(page.contains("<h1>Failures</h1>"), "{page}");
    for email in [REFUSED, SECOND] {
        assert!(page.contains(&format!(">{email}</a>")), "{email}: {page}");
    }
    assert!(page.contains("User object validation failed."), "{page}");
    assert!(page.contains("<td>okta</td>"), "the source: {page}");
    assert!(page.contains("Retry all (2)"), "{page}");
    let one = "/ui/failures/refused%40example.org/retry";
    assert!(page.contains(&format!("action=\"{one}\"")), "{page}");

    // Forged: refused, nothing lifted.
    for path in [one, "/ui/failures/retry"] {
        let (status, body, _) = console.post(path, &[("csrf", "forged")]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    assert_eq!(quarantined_count(&stack).await, 2);

    // One.
    stack
        .standin
        .with_directory(|d| d.refused_emails.remove(REFUSED));
    let csrf = csrf_in(&page);
    let (status, body, headers) = console.post(one, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[LOCATION], "/ui/failures");
    stack
        .until("the retried person is in Tyk", |s| {
            s.in_group(REFUSED, "API Developers")
        })
        .await;
    let page = console.page("/ui/failures").await;
    assert!(!page.contains(REFUSED), "lifted: {page}");
    assert!(page.contains("Retry all (1)"), "{page}");

    // All.
    stack.standin.with_directory(|d| d.refused_emails.clear());
    let (status, body, headers) = console.post("/ui/failures/retry", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[LOCATION], "/ui/failures");
    stack
        .until("everyone is in Tyk", |s| {
            s.in_group(SECOND, "API Developers")
        })
        .await;
    let page = console.page("/ui/failures").await;
    assert!(page.contains("Nobody is quarantined or skipped."), "{page}");
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    let page = console.page("/ui/").await;
    assert!(page.contains("<strong>OK</strong>"), "{page}");
}
both_backends!(
    ui_failures_page,
    status_counts_and_the_failures_page_retries_one_and_all
);

async fn reject_request(stack: &Stack, id: &str, body: Option<Value>, token: &str) -> (u16, Value) {
    let mut request = stack
        .app
        .client
        .post(stack.app.url(&format!("/admin/v1/sync/runs/{id}/reject")))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("reject");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn held_run(stack: &Stack) -> String {
    let (status, body) = stack
        .admin_request(Method::GET, "/admin/v1/sync/runs?status=held")
        .await;
    assert_eq!(status, 200, "{body}");
    body["runs"][0]["id"]
        .as_str()
        .expect("a held run")
        .to_string()
}

async fn a_held_run_is_rejected_over_the_admin_api_with_a_reason(db: Db) {
    let stack = guarded_stack(db).await;
    let (ids, group) = four_developers(&stack).await;
    stack.patch_members(&group, &[], &[&ids[0], &ids[1]]).await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    let id = held_run(&stack).await;

    for (body, token, expected) in [
        (Some(json!({"reason": "no"})), "wrong-token", 401),
        (None, ADMIN_TOKEN, 400),
        (Some(json!({})), ADMIN_TOKEN, 400),
        (Some(json!({"reason": " \u{7} "})), ADMIN_TOKEN, 400),
        (Some(json!({"reason": "x".repeat(501)})), ADMIN_TOKEN, 400),
        (Some(json!({"reason": "no", "extra": 1})), ADMIN_TOKEN, 400),
    ] {
        let (status, answer) = reject_request(&stack, &id, body.clone(), token).await;
        assert_eq!(status, expected, "{body:?}: {answer}");
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    let (status, answer) =
        reject_request(&stack, &unknown, Some(json!({"reason": "no"})), ADMIN_TOKEN).await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = reject_request(&stack, "not-a-uuid", None, ADMIN_TOKEN).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(held_run(&stack).await, id, "still held after the refusals");

    let reason = json!({"reason": "They are on leave, not gone"});
    let (status, answer) = reject_request(&stack, &id, Some(reason.clone()), ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "rejected", "{answer}");
    assert!(
        stack.tyk_user("ada@example.org").expect("ada").active,
        "nothing applied"
    );
    let (status, answer) = reject_request(&stack, &id, Some(reason), ADMIN_TOKEN).await;
    assert_eq!(status, 409, "decided once: {answer}");
    let (_, audit) = stack
        .admin_request(Method::GET, "/admin/v1/sync/audit?step=reject_run")
        .await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["actor"], "api:reject", "{audit}");
    assert_eq!(entry["message"], "They are on leave, not gone", "{audit}");
    let metrics = stack.app.metrics_text().await;
    assert!(
        metrics.contains("tyk_idsync_sync_held_would_remove 0"),
        "nothing held: {metrics}"
    );
}
both_backends!(
    admin_reject_run,
    a_held_run_is_rejected_over_the_admin_api_with_a_reason
);

async fn a_held_run_is_rejected_from_the_command_line(db: Db) {
    let stack = guarded_stack(db).await;
    let (ids, group) = four_developers(&stack).await;
    stack.patch_members(&group, &[], &[&ids[0], &ids[1]]).await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    let id = held_run(&stack).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = stack.app.state.config.database.url.clone();
    std::fs::write(
        dir.path().join("c.toml"),
        format!("[database]\nurl = \"{url}\"\n"),
    )
    .expect("config");

    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let missing = run(dir.path(), &["runs", "reject", &id]).await;
    assert_ne!(missing.status.code(), Some(0), "{}", text(&missing));
    let blank = run(dir.path(), &["runs", "reject", &id, "--reason", "  "]).await;
    assert_ne!(blank.status.code(), Some(0), "{}", text(&blank));
    assert!(text(&blank).contains("--reason"), "{}", text(&blank));
    assert_eq!(held_run(&stack).await, id, "still held");

    let done = run(
        dir.path(),
        &["runs", "reject", &id, "--reason", "wrong org"],
    )
    .await;
    assert_eq!(done.status.code(), Some(0), "{}", text(&done));
    assert!(text(&done).contains("rejected"), "{}", text(&done));
    let again = run(dir.path(), &["runs", "reject", &id, "--reason", "again"]).await;
    assert_ne!(again.status.code(), Some(0), "{}", text(&again));
    let (_, audit) = stack
        .admin_request(Method::GET, "/admin/v1/sync/audit?step=reject_run")
        .await;
    assert_eq!(audit["entries"][0]["actor"], "cli:reject", "{audit}");
    assert_eq!(audit["entries"][0]["message"], "wrong org", "{audit}");
    assert!(stack.tyk_user("ada@example.org").expect("ada").active);
}
both_backends!(cli_reject_run, a_held_run_is_rejected_from_the_command_line);

/// Creates a user and a group holding them in source `entra`; the user's id.
async fn entra_developer(stack: &Stack, user_name: &str, email: &str) -> String {
    let (status, user) = stack
        .scim(
            &stack.entra_token,
            Method::POST,
            "/Users",
            crate::support::stack::scim_user(user_name, email),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().expect("id").to_string();
    let (status, group) = stack
        .scim(
            &stack.entra_token,
            Method::POST,
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Developers",
                "members": [{"value": id}],
            }),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    id
}

async fn the_audit_log_is_searched_by_source(db: Db) {
    let stack = spawn_stack(db).await;
    stack
        .add_rule(
            "API Developers",
            10,
            &["okta:Developers", "entra:Developers"],
        )
        .await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    stack.create_group("Developers", &[&ada]).await;
    entra_developer(&stack, "bob", "bob@example.org").await;
    stack
        .until("both are in Tyk", |s| {
            s.in_group("ada@example.org", "API Developers")
                && s.in_group("bob@example.org", "API Developers")
        })
        .await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;

    // The admin API: each source's rows name only its people, and say so.
    for (source, email, other) in [
        ("okta", "ada@example.org", "bob@example.org"),
        ("entra", "bob@example.org", "ada@example.org"),
    ] {
        let (status, audit) = stack
            .admin_request(
                Method::GET,
                &format!("/admin/v1/sync/audit?source={source}&step=create_user"),
            )
            .await;
        assert_eq!(status, 200, "{audit}");
        let entries = audit["entries"].as_array().expect("entries");
        // (A creation may have failed once before its group existed.)
        assert!(entries.iter().any(|e| e["ok"] == true), "{source}: {audit}");
        for entry in entries {
            assert_eq!(entry["email"], email, "{audit}");
            assert_eq!(entry["source"], source, "{audit}");
        }
        assert!(!audit.to_string().contains(other), "{audit}");
    }
    // A wildcard is a character, not a pattern.
    let (_, audit) = stack
        .admin_request(Method::GET, "/admin/v1/sync/audit?source=%25")
        .await;
    assert_eq!(audit["entries"], json!([]), "{audit}");

    // The console: the field, the filter, the column, kept across pages.
    let mut console = Console::new(&stack.app.address);
    console.login().await;
    let page = console.page("/ui/audit?source=entra").await;
    assert!(
        page.contains("<label for=\"source\">Source</label>"),
        "{page}"
    );
    assert!(page.contains("value=\"entra\""), "{page}");
    assert!(page.contains("bob@example.org"), "{page}");
    assert!(!page.contains("ada@example.org"), "{page}");
    assert!(page.contains("<td>entra</td>"), "{page}");
    let page = console.page("/ui/audit?source=nobody").await;
    assert!(page.contains("<h2>0 row(s)</h2>"), "{page}");

    // The binary.
    let dir = tempfile::tempdir().expect("tempdir");
    let url = stack.app.state.config.database.url.clone();
    std::fs::write(
        dir.path().join("c.toml"),
        format!("[database]\nurl = \"{url}\"\n"),
    )
    .expect("config");
    let out = run(dir.path(), &["audit", "--source", "okta", "--json"]).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("ada@example.org"), "{text}");
    assert!(!text.contains("bob@example.org"), "{text}");
}
both_backends!(audit_by_source, the_audit_log_is_searched_by_source);

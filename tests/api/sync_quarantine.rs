//! Quarantine end to end: a person Tyk refuses for good is tried once, their
//! events leave the outbox, they are listed (API, CLI) with Tyk's reason and
//! counted (gauge, status); a change to them, or an operator's retry, lifts it.

use std::process::Output;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tyk_idsync::domain::{EmailProblem, IdentityUser, SourceName, Timestamp};
use tyk_idsync::standin::{StandIn, StandInOptions};
use tyk_idsync::store::{Store, StoreOptions, identities};
use tyk_idsync::tyk::Permissions;
use uuid::Uuid;

use crate::both_backends;
use crate::cli_sync::{run, seed_identity};
use crate::support::stack::{Stack, patch_ops, spawn_stack};
use crate::support::{Db, fresh_database_url};

const KEY: &str = "quarantine-dashboard-key-0123456789";

/// User creations the stand-in received for this e-mail.
fn creations(stack_standin: &StandIn, email: &str) -> usize {
    stack_standin
        .request_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/users")
        .filter(|r| {
            r.body
                .as_ref()
                .and_then(|b| b["email_address"].as_str())
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .count()
}

async fn failures(stack: &Stack) -> Vec<Value> {
    let (status, body) = stack
        .admin_request(Method::GET, "/admin/v1/sync/failures")
        .await;
    assert_eq!(status, 200, "{body}");
    body["failures"].as_array().cloned().unwrap_or_default()
}

fn quarantined<'a>(list: &'a [Value], email: &str) -> Option<&'a Value> {
    list.iter()
        .find(|p| p["person"] == email && p["state"] == "quarantined")
}

async fn gauge(stack: &Stack) -> String {
    stack
        .app
        .metrics_text()
        .await
        .lines()
        .find(|l| l.starts_with("tyk_idsync_sync_quarantined_people "))
        .unwrap_or_default()
        .to_string()
}

async fn set_given_name(stack: &Stack, user_id: &str, name: &str) {
    let (status, body) = stack
        .scim(
            &stack.okta_token,
            Method::PATCH,
            &format!("/Users/{user_id}"),
            patch_ops(json!([{"op": "replace", "path": "name.givenName", "value": name}])),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn a_refused_person_is_quarantined_listed_and_lifted(db: Db) {
    let stack = spawn_stack(db).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let refused = "refused@example.org";
    let second = "second@example.org";
    stack.standin.with_directory(|d| {
        d.refused_emails.insert(refused.to_string());
        d.refused_emails.insert(second.to_string());
    });
    let ok = stack.create_user("fine", "fine@example.org").await;
    let bad = stack.create_user("refused", refused).await;
    let other = stack.create_user("second", second).await;
    stack.create_group("Developers", &[&ok, &bad, &other]).await;
    stack
        .until("the valid person is in Tyk", |s| {
            s.in_group("fine@example.org", "API Developers")
        })
        .await;
    // Nothing spins: the refused people's events leave the outbox.
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    assert_eq!(creations(&stack.standin, refused), 1, "tried once");

    let list = failures(&stack).await;
    let entry = quarantined(&list, refused).expect("listed");
    assert_eq!(entry["kind"], "tyk_refused", "{entry}");
    assert_eq!(entry["reason"], "User object validation failed.", "{entry}");
    assert_eq!(entry["status"], 400, "{entry}");
    assert_eq!(entry["source"], "okta", "{entry}");
    assert_eq!(entry["attempts"], 1, "{entry}");
    assert!(entry["first_seen"].is_string() && entry["last_seen"].is_string());
    assert!(quarantined(&list, second).is_some(), "{list:?}");
    let (_, status) = stack.admin_request(Method::GET, "/admin/v1/status").await;
    assert_eq!(status["failures"]["quarantined"], 2, "{status}");

    // The full reconcile skips them too.
    let run = stack.reconcile().await;
    assert_eq!(run["failed"], 0, "{run}");
    assert_eq!(creations(&stack.standin, refused), 1, "not retried");
    assert_eq!(gauge(&stack).await, "tyk_idsync_sync_quarantined_people 2");

    // A change to the person lifts it: they are tried again, and now synced.
    stack
        .standin
        .with_directory(|d| d.refused_emails.remove(refused));
    set_given_name(&stack, &bad, "Refusée").await;
    stack
        .until("the changed person is in Tyk", |s| {
            s.in_group(refused, "API Developers")
        })
        .await;
    assert!(quarantined(&failures(&stack).await, refused).is_none());

    // An operator's retry lifts it too.
    stack
        .standin
        .with_directory(|d| d.refused_emails.remove(second));
    let (status, body) = stack
        .admin_request(
            Method::POST,
            &format!("/admin/v1/sync/failures/{second}/retry"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["lifted"], json!([second]));
    stack
        .until("the retried person is in Tyk", |s| {
            s.in_group(second, "API Developers")
        })
        .await;
    assert_eq!(creations(&stack.standin, second), 2);
    assert!(failures(&stack).await.is_empty());
    let (status, _) = stack
        .admin_request(
            Method::POST,
            "/admin/v1/sync/failures/nobody@example.org/retry",
        )
        .await;
    assert_eq!(status, 404);
    stack.reconcile().await;
    assert_eq!(gauge(&stack).await, "tyk_idsync_sync_quarantined_people 0");
}

both_backends!(
    a_refused_person_is_quarantined_listed_and_lifted_,
    a_refused_person_is_quarantined_listed_and_lifted
);

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A person with an e-mail that is not an address, as SCIM stores them.
async fn seed_invalid_email(url: &str) {
    let store = Store::connect(&StoreOptions::new(url))
        .await
        .expect("store");
    let now = Timestamp::now();
    let user = IdentityUser {
        id: Uuid::new_v4(),
        source: SourceName::new("okta"),
        external_id: None,
        user_name: "no-address".into(),
        email: None,
        email_problem: Some(EmailProblem::Syntax),
        given_name: None,
        family_name: None,
        display_name: None,
        active: true,
        attributes: json!({}),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let mut tx = store.begin().await.expect("begin");
    identities::insert_user(&mut tx, &user, &[])
        .await
        .expect("user");
    tx.commit().await.expect("commit");
    store.close().await;
}

async fn sync_failures_and_retry_from_the_command_line(db: Db) {
    let standin = StandIn::spawn(StandInOptions::default())
        .await
        .expect("stand-in");
    let org = standin.seed_org("Quarantine Org");
    let admin = standin.seed_user(&org.id, "root@example.org", Permissions::admin());
    standin.set_access_key(&admin.id, KEY);
    standin.with_directory(|d| d.refused_emails.insert("ada@example.org".into()));
    let dir = tempfile::tempdir().expect("tempdir");
    let (db_url, _guard) = fresh_database_url(db).await;
    let config = format!(
        "[database]\nurl = \"{db_url}\"\n\n[tyk]\ndashboard_url = \"{}\"\napi_key = \"{KEY}\"\n\n\
         [scim]\nenabled = true\n[scim.sources.okta]\n\n\
         [[mapping.rules]]\norg_id = \"{}\"\nname = \"API Admins\"\npriority = 10\n\
         mappings_sso = [\"okta:Platform Team\"]\npermissions = {{ apis = \"write\" }}\n",
        standin.base_url(),
        org.id
    );
    std::fs::write(dir.path().join("c.toml"), config).expect("config");
    seed_identity(&db_url).await;
    seed_invalid_email(&db_url).await;

    let first = run(dir.path(), &["sync", "--once"]).await;
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert_eq!(creations(&standin, "ada@example.org"), 1);

    let table = run(dir.path(), &["sync", "failures"]).await;
    assert!(table.status.success(), "{}", text(&table));
    let table = text(&table);
    let ada = table
        .lines()
        .find(|l| l.starts_with("ada@example.org"))
        .unwrap_or_default();
    assert!(
        ada.contains("tyk_refused") && ada.contains("400 User object validation failed."),
        "{table}"
    );
    let invalid = table
        .lines()
        .find(|l| l.starts_with("no-address"))
        .unwrap_or_default();
    assert!(invalid.contains("invalid_email"), "{table}");
    let json: Value = serde_json::from_slice(
        &run(dir.path(), &["sync", "failures", "--json"])
            .await
            .stdout,
    )
    .expect("JSON");
    let kinds: Vec<&str> = json["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .filter_map(|p| p["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["tyk_refused", "invalid_email"], "{json}");

    // Quarantined: the next run does not try again, and succeeds.
    let second = run(dir.path(), &["sync", "--once"]).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(creations(&standin, "ada@example.org"), 1);

    let unknown = run(dir.path(), &["sync", "retry", "nobody@example.org"]).await;
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    standin.with_directory(|d| d.refused_emails.clear());
    let retried = run(dir.path(), &["sync", "retry", "ADA@example.org"]).await;
    assert!(retried.status.success(), "{}", text(&retried));
    assert!(text(&retried).contains("of 1 people"), "{}", text(&retried));
    let third = run(dir.path(), &["sync", "--once"]).await;
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    assert!(
        standin
            .users()
            .iter()
            .any(|u| u.email_address == "ada@example.org"),
        "created after the retry"
    );
    let all = run(dir.path(), &["sync", "retry", "--all"]).await;
    assert!(text(&all).contains("of 0 people"), "{}", text(&all));
    let usage = run(dir.path(), &["sync"]).await;
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
}

both_backends!(
    sync_failures_and_retry_from_the_command_line_,
    sync_failures_and_retry_from_the_command_line
);

async fn the_quarantine_store_counts_attempts_and_lifts(db: Db) {
    use tyk_idsync::store::sync_quarantine::{self, NewQuarantine};
    let (store, _guard) = crate::support::fresh_store(db).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    let entry = |at, reason: &str| NewQuarantine {
        org_id: "org1".into(),
        email: "Ada@Example.org".into(),
        source: "okta".into(),
        kind: "tyk_refused".into(),
        status: Some(400),
        reason: reason.into(),
        fingerprint: "f1".into(),
        at: Timestamp(at),
    };
    sync_quarantine::record(&mut conn, &entry(1_000, "first"))
        .await
        .expect("record");
    sync_quarantine::record(&mut conn, &entry(2_000, "second"))
        .await
        .expect("record again");
    let listed = sync_quarantine::list(&mut conn).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attempts, 2);
    assert_eq!(listed[0].reason, "second");
    assert_eq!(listed[0].first_seen, Timestamp(1_000).to_rfc3339());
    assert_eq!(listed[0].last_seen, Timestamp(2_000).to_rfc3339());
    assert_eq!(
        sync_quarantine::find(&mut conn, "ada@example.org")
            .await
            .expect("find")
            .len(),
        1
    );
    assert_eq!(sync_quarantine::count(&mut conn).await.expect("count"), 1);
    assert_eq!(
        sync_quarantine::lift(&mut conn, Some("org2"), "ada@example.org")
            .await
            .expect("lift"),
        0
    );
    assert_eq!(
        sync_quarantine::lift(&mut conn, None, "ADA@example.org")
            .await
            .expect("lift"),
        1
    );
    assert_eq!(sync_quarantine::count(&mut conn).await.expect("count"), 0);
}

both_backends!(
    the_quarantine_store_counts_attempts_and_lifts_,
    the_quarantine_store_counts_attempts_and_lifts
);

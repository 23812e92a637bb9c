//! End to end under stress: a thousand SCIM users synced through a Tyk
//! that fails a fifth of its answers, and the mass-change guard holding a
//! run that would deactivate half the managed users until it is approved.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tyk_idsync::standin::{Fault, FaultRates, StandIn, StandInOptions};
use tyk_idsync::sync::tyk_gateway::TykGateway;
use tyk_idsync::sync::{GuardConfig, RetryPolicy};
use tyk_idsync::tyk::{PermissionLevel, Permissions, TykClient, TykConfig};

use crate::both_backends;
use crate::support::Db;
use crate::support::stack::{Stack, TYK_API_KEY, patch_ops, spawn_stack_configured};
use crate::sync_e2e_lifecycle::creations_by_email;

fn email(n: usize) -> String {
    format!("user{n:04}@example.org")
}

/// Whether every one of `emails` is one active Tyk user in `group`, and
/// no other Tyk user has their e-mail.
fn all_in_group(stack: &Stack, emails: &[String], group: &str) -> bool {
    let Some(group) = stack.tyk_group(group) else {
        return false;
    };
    let mut by_email: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for user in stack.standin.users() {
        if user.org_id == stack.org_id {
            by_email
                .entry(user.email_address.clone())
                .or_default()
                .push(user);
        }
    }
    emails.iter().all(|e| {
        matches!(by_email.get(e).map(Vec::as_slice), Some([u]) if u.active && u.group_id == group.id)
    })
}

/// Creates the users over SCIM, `parallel` requests at a time; SCIM ids in order.
async fn create_users(stack: &Stack, emails: &[String], parallel: usize) -> Vec<String> {
    futures::stream::iter(emails)
        .map(|e| async move {
            let user_name = e.split('@').next().unwrap_or(e);
            stack.create_user(user_name, e).await
        })
        .buffered(parallel)
        .collect()
        .await
}

// ---- g. a thousand users through a faulty Tyk -------------------------

const USERS: usize = 1000;

async fn a_thousand_users_converge_through_a_faulty_tyk(db: Db) {
    let stack = spawn_stack_configured(db, |c| {
        c.sync.retry_max_delay = Duration::from_millis(200);
    })
    .await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    stack.standin.set_fault_rates(FaultRates {
        latency: Duration::from_millis(1),
        latency_jitter: Duration::from_millis(10),
        rate_429: 0.1,
        rate_500: 0.1,
        retry_after_secs: 0,
        ..FaultRates::default()
    });
    let group = stack.create_group("Developers", &[]).await;
    let emails: Vec<String> = (0..USERS).map(email).collect();
    // Users arrive in chunks, each followed by a membership PATCH, while
    // the worker already syncs the earlier ones.
    for chunk in emails.chunks(100) {
        let ids = create_users(&stack, chunk, 8).await;
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        stack.patch_members(&group, &refs, &[]).await;
    }
    let took = stack
        .until_within(
            "a thousand users are in API Developers",
            Duration::from_secs(180),
            |s| all_in_group(s, &emails, "API Developers"),
        )
        .await;
    eprintln!("{USERS} users converged {took:?} after the last SCIM write");

    let log = stack.standin.request_log();
    let faults = log.iter().filter(|r| r.fault.is_some()).count();
    assert!(
        faults * 10 >= log.len(),
        "about a fifth of the answers were faults: {faults} of {}",
        log.len()
    );
    // Exactly one successful creation per person, none for anyone else.
    let creations = creations_by_email(&stack);
    assert_eq!(creations.len(), USERS, "creations for unknown e-mails");
    let duplicates: Vec<_> = creations.iter().filter(|(_, n)| **n != 1).collect();
    assert!(duplicates.is_empty(), "duplicate creations: {duplicates:?}");
    let in_org = stack
        .standin
        .users()
        .iter()
        .filter(|u| u.org_id == stack.org_id)
        .count();
    assert_eq!(in_org, USERS + 1, "the users and the admin, nobody else");

    // Converged for good: with the faults gone, nothing is left to do.
    stack.until_outbox_empty(Duration::from_secs(60)).await;
    stack.standin.set_fault_rates(FaultRates::default());
    stack.standin.clear_request_log();
    let status = stack.reconcile().await;
    assert_eq!(status["tyk_writes"], 0, "{status}");
    assert!(stack.tyk_writes().is_empty());
}
both_backends!(
    g_thousand_users_through_faults,
    a_thousand_users_converge_through_a_faulty_tyk
);

// ---- h. the mass-change guard ------------------------------------------

const GUARDED: usize = 20;

/// A stack with GUARDED users synced into API Developers, a guard
/// threshold of max(2, 10 % of 20) = 2 removals per run; the SCIM user and
/// group ids.
async fn guarded_stack(db: Db) -> (Stack, Vec<String>, String) {
    let stack = spawn_stack_configured(db, |c| {
        c.sync.guard = GuardConfig {
            min_count: 2,
            max_percent: 10,
            ..GuardConfig::default()
        };
        // The bystander's change must reach Tyk (a read) for the burst to
        // pile up behind it, even right after the bystander was written.
        c.sync.trust_own_writes = std::time::Duration::ZERO;
    })
    .await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let emails: Vec<String> = (0..GUARDED).map(email).collect();
    let ids = create_users(&stack, &emails, 4).await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let group = stack.create_group("Developers", &refs).await;
    stack
        .until("everyone is in API Developers", |s| {
            all_in_group(s, &emails, "API Developers")
        })
        .await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    (stack, ids, group)
}

fn inactive_in_tyk(stack: &Stack) -> Vec<String> {
    stack
        .standin
        .users()
        .into_iter()
        .filter(|u| u.org_id == stack.org_id && !u.active)
        .map(|u| u.email_address)
        .collect()
}

/// Approves the one held run; afterwards exactly the first `leaving`
/// users are inactive in Tyk, and the run is recorded as approved.
async fn approve_and_check(stack: &Stack, held: &Value, leaving: usize) {
    let id = held["id"].as_str().expect("run id");
    let (status, body) = stack
        .admin_request(Method::POST, &format!("/admin/v1/sync/runs/{id}/approve"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "applied", "{body}");
    for n in 0..GUARDED {
        let user = stack.tyk_user(&email(n)).expect("user");
        assert_eq!(user.active, n >= leaving, "{}", email(n));
    }
    let (_, runs) = stack
        .admin_request(Method::GET, "/admin/v1/sync/runs?status=held")
        .await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "{runs}");
    let (_, all) = stack
        .admin_request(Method::GET, "/admin/v1/sync/runs")
        .await;
    let run = all["runs"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == id))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(run["approved_by"], "api:approve", "{run}");
    assert_eq!(run["status"], "applied", "{run}");
    // Nothing held or pending afterwards.
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    let status = stack.reconcile().await;
    assert_eq!(status["outcome"], "applied", "{status}");
    assert_eq!(status["tyk_writes"], 0, "{status}");
}

/// The only held run, once the outbox is drained.
async fn the_held_run(stack: &Stack) -> Value {
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    let (status, body) = stack
        .admin_request(Method::GET, "/admin/v1/sync/runs?status=held")
        .await;
    assert_eq!(status, 200, "{body}");
    let runs = body["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "one held run: {body}");
    runs[0].clone()
}

async fn removing_half_from_the_mapped_group_is_held_until_approved(db: Db) {
    let (stack, ids, group) = guarded_stack(db).await;
    // One SCIM request takes half of them out of the only mapped group.
    let leaving: Vec<&str> = ids[..GUARDED / 2].iter().map(String::as_str).collect();
    stack.patch_members(&group, &[], &leaving).await;

    let held = the_held_run(&stack).await;
    assert_eq!(held["people_removed"], GUARDED / 2, "{held}");
    assert_eq!(held["managed_users"], GUARDED, "{held}");
    let inactive = inactive_in_tyk(&stack);
    assert!(
        inactive.is_empty(),
        "deactivated before approval: {inactive:?}"
    );
    assert!(
        stack
            .tyk_writes()
            .iter()
            .all(|r| !r.path.starts_with("/api/users/")),
        "no user was changed"
    );
    approve_and_check(&stack, &held, GUARDED / 2).await;
}
both_backends!(
    h_guard_holds_group_removal,
    removing_half_from_the_mapped_group_is_held_until_approved
);

/// Sends `deactivate` while the worker is busy with an unrelated change
/// (its Tyk read delayed by the stand-in), so that all of them are
/// claimed by the worker's next run — as when an identity provider pushes
/// a burst of changes.
async fn burst_while_the_worker_is_busy(stack: &Stack, bystander: &str, deactivate: &[String]) {
    stack.standin.reset_max_in_flight();
    stack
        .standin
        .inject(Fault::Delay(Duration::from_secs(2)), Some(TYK_API_KEY));
    let title = format!("Engineer {}", deactivate.len());
    let (status, body) = stack
        .scim(
            &stack.okta_token,
            Method::PATCH,
            &format!("/Users/{bystander}"),
            patch_ops(json!([{"op": "replace", "path": "title", "value": title}])),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    stack
        .until("the worker is waiting on Tyk", |s| {
            s.standin.max_in_flight() > 0
        })
        .await;
    futures::stream::iter(deactivate)
        .map(|id| stack.set_active(id, false))
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
}

async fn deactivating_half_over_scim_is_held_until_approved(db: Db) {
    let (stack, ids, _) = guarded_stack(db).await;
    let bystander = &ids[GUARDED - 1];
    // Two bursts, each over the threshold: the second held run carries both.
    burst_while_the_worker_is_busy(&stack, bystander, &ids[..3]).await;
    let first = the_held_run(&stack).await;
    assert_eq!(first["people_removed"], 3, "{first}");
    burst_while_the_worker_is_busy(&stack, bystander, &ids[3..GUARDED / 2]).await;
    let held = the_held_run(&stack).await;
    assert_ne!(held["id"], first["id"]);
    assert_eq!(held["people_removed"], GUARDED / 2, "{held}");
    assert_eq!(held["managed_users"], GUARDED, "{held}");
    let inactive = inactive_in_tyk(&stack);
    assert!(
        inactive.is_empty(),
        "deactivated before approval: {inactive:?}"
    );

    approve_and_check(&stack, &held, GUARDED / 2).await;
}
both_backends!(
    h_guard_holds_mass_deactivation,
    deactivating_half_over_scim_is_held_until_approved
);

/// The listing the planner starts from survives temporary failures of
/// single pages (a 1,000-user listing is 100 pages).
#[tokio::test]
async fn a_listing_page_that_fails_for_a_moment_is_retried() {
    let standin = StandIn::spawn(StandInOptions::default())
        .await
        .expect("stand-in");
    let org = standin.seed_org("Paged Org");
    let admin = standin.seed_user(&org.id, "root@example.org", Permissions::admin());
    standin.set_access_key(&admin.id, TYK_API_KEY);
    for n in 0..25 {
        standin.seed_user(
            &org.id,
            &email(n),
            Permissions::new().with("apis", PermissionLevel::Read),
        );
    }
    let client = TykClient::new(&TykConfig::new(standin.base_url(), TYK_API_KEY)).expect("client");
    let gateway = TykGateway::new(client).with_retry(RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
    });
    standin.inject(Fault::ServerError, None);
    standin.inject(
        Fault::TooManyRequests {
            retry_after_secs: 0,
        },
        None,
    );
    let actual = gateway.list_actual().await.expect("listing");
    assert_eq!(actual.users.len(), 26);

    // A failure that outlasts the attempts still fails the listing.
    standin.set_fault_rates(FaultRates {
        rate_500: 1.0,
        ..FaultRates::default()
    });
    standin.clear_request_log();
    assert!(gateway.list_actual().await.is_err());
    // The listing of users and of groups run together: whichever gives up
    // first (after its three attempts) ends the other.
    let log = standin.request_log();
    let attempts = |path: &str| log.iter().filter(|r| r.path == path).count();
    let (users, groups) = (attempts("/api/users"), attempts("/api/usergroups"));
    assert!(
        (users == 3 && groups <= 3) || (groups == 3 && users <= 3),
        "{log:?}"
    );
}

/// Tyk lost every managed user (deleted by hand, or a restored Dashboard):
/// the full run re-creates them, which is held as a mass re-creation — not
/// as removals — until approved, and approving brings them all back.
async fn users_gone_from_tyk_are_held_as_recreations_then_recreated(db: Db) {
    let (stack, _ids, _group) = guarded_stack(db).await;
    let client = reqwest::Client::new();
    for user in stack.standin.users() {
        if user.org_id != stack.org_id || !user.email_address.starts_with("user") {
            continue;
        }
        let response = client
            .delete(format!(
                "{}/api/users/{}",
                stack.standin.base_url(),
                user.id
            ))
            .header("authorization", TYK_API_KEY)
            .send()
            .await
            .expect("delete");
        assert_eq!(
            response.status().as_u16(),
            200,
            "delete {}",
            user.email_address
        );
    }
    assert!(
        stack.tyk_user(&email(0)).is_none(),
        "deleted from the stand-in"
    );

    let status = stack.reconcile().await;
    assert_eq!(status["outcome"], "held", "{status}");
    let held = the_held_run(&stack).await;
    assert_eq!(
        held["people_removed"], 0,
        "re-creations are not removals: {held}"
    );
    let message = held["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("would re-create {GUARDED} of {GUARDED}")),
        "{held}"
    );
    assert!(!message.contains("would remove"), "{held}");
    assert!(
        stack.tyk_user(&email(0)).is_none(),
        "nothing applied while held"
    );

    let id = held["id"].as_str().expect("run id");
    let (code, body) = stack
        .admin_request(Method::POST, &format!("/admin/v1/sync/runs/{id}/approve"))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["outcome"], "applied", "{body}");
    for n in 0..GUARDED {
        assert!(
            stack.in_group(&email(n), "API Developers"),
            "{} re-created",
            email(n)
        );
    }
}
both_backends!(
    users_gone_from_tyk_are_recreated,
    users_gone_from_tyk_are_held_as_recreations_then_recreated
);

//! What a change costs in requests to Tyk, read from the stand-in's request
//! log: an event run reads the people it plans (by their recorded Tyk id),
//! never the whole listing, however many users Tyk holds; a bulk load costs
//! about one write per person; a hand-changed e-mail is reverted; a stale
//! group cache heals itself; and no one-second window of the log holds more
//! requests than `sync.requests_per_second`, reads included.

use std::time::{Duration, Instant};

use serde_json::json;
use tyk_idsync::standin::{LoggedRequest, UserFields};
use tyk_idsync::tyk::{PermissionLevel, Permissions};

use crate::both_backends;
use crate::support::Db;
use crate::support::stack::{Stack, patch_ops, spawn_stack_with, stack_config};

/// Seeds `count` users we do not manage straight into the stand-in.
fn seed_strangers(stack_org: &str, standin: &tyk_idsync::standin::StandIn, count: usize) {
    standin.with_directory(|d| {
        for n in 0..count {
            d.insert_user(
                stack_org,
                UserFields {
                    first_name: Some("Other".into()),
                    last_name: Some(format!("Person {n}")),
                    email_address: Some(format!("other{n}@elsewhere.example")),
                    active: Some(true),
                    user_permissions: Some(Permissions::new().with("apis", PermissionLevel::Read)),
                    ..UserFields::default()
                },
            );
        }
    });
}

/// A stack whose stand-in already holds `strangers` users.
pub(crate) async fn stack_with(
    db: Db,
    strangers: usize,
    adjust: impl FnOnce(&mut tyk_idsync::config::Config),
) -> Stack {
    let (mut config, guard, standin, org_id) = stack_config(db).await;
    seed_strangers(&org_id, &standin, strangers);
    adjust(&mut config);
    spawn_stack_with(config, guard, standin, org_id).await
}

/// Waits until the outbox is empty and the stand-in has seen no request
/// for a while (the start-up full reconcile is over).
pub(crate) async fn quiet(stack: &Stack) {
    stack.until_outbox_empty(Duration::from_secs(30)).await;
    let mut seen = stack.standin.request_log().len();
    let mut still_since = Instant::now();
    let started = Instant::now();
    while still_since.elapsed() < Duration::from_millis(400) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Tyk traffic never stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = stack.standin.request_log().len();
        if now != seen {
            seen = now;
            still_since = Instant::now();
        }
    }
}

pub(crate) fn is_listing(r: &LoggedRequest) -> bool {
    r.method == "GET" && r.path == "/api/users"
}

pub(crate) fn describe(log: &[LoggedRequest]) -> Vec<String> {
    log.iter()
        .map(|r| {
            format!(
                "{} {}?{}",
                r.method,
                r.path,
                r.query.as_deref().unwrap_or("")
            )
        })
        .collect()
}

/// Ada in Developers (→ API Developers), then moved to Ops (→ API Ops, a
/// higher-priority rule) by one SCIM PATCH.
async fn moving_one_person_costs_at_most_three_requests(db: Db, strangers: usize) {
    // Ada is read back (the worst case), not trusted as just written.
    let stack = stack_with(db, strangers, |c| c.sync.trust_own_writes = Duration::ZERO).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    stack.add_rule("API Ops", 20, &["okta:Ops"]).await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    stack.create_group("Developers", &[&ada]).await;
    let ops = stack.create_group("Ops", &[]).await;
    // The rules' events plan everyone (start-up too): listings of all users.
    stack
        .until_within("Ada is in API Developers", Duration::from_secs(60), |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;
    quiet(&stack).await;
    stack.standin.clear_request_log();

    stack.patch_members(&ops, &[&ada], &[]).await;
    stack
        .until("Ada is in API Ops", |s| {
            s.in_group("ada@example.org", "API Ops")
        })
        .await;
    quiet(&stack).await;
    let log = stack.standin.request_log();
    assert!(
        log.len() <= 3,
        "{strangers} users in Tyk: one change cost {} requests: {:#?}",
        log.len(),
        describe(&log)
    );
    assert!(!log.iter().any(is_listing), "{:#?}", describe(&log));
    // The user was read by its id, not searched or listed.
    let ada_id = stack.tyk_user("ada@example.org").expect("ada").id;
    assert!(
        log.iter()
            .any(|r| r.method == "GET" && r.path == format!("/api/users/{ada_id}")),
        "{:#?}",
        describe(&log)
    );
}

async fn a_change_costs_at_most_three_requests_with_10_users_in_tyk(db: Db) {
    moving_one_person_costs_at_most_three_requests(db, 10).await;
}
both_backends!(
    change_cost_10,
    a_change_costs_at_most_three_requests_with_10_users_in_tyk
);

async fn a_change_costs_at_most_three_requests_with_5000_users_in_tyk(db: Db) {
    moving_one_person_costs_at_most_three_requests(db, 5_000).await;
}
both_backends!(
    change_cost_5000,
    a_change_costs_at_most_three_requests_with_5000_users_in_tyk
);

async fn a_bulk_load_costs_about_one_write_per_person_and_no_listing(db: Db) {
    const PEOPLE: usize = 120;
    let stack = stack_with(db, 500, |c| c.sync.event_batch = 25).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    quiet(&stack).await;
    stack.standin.clear_request_log();

    let mut ids = Vec::new();
    for n in 0..PEOPLE {
        ids.push(
            stack
                .create_user(&format!("p{n}"), &format!("p{n}@example.org"))
                .await,
        );
    }
    let members: Vec<&str> = ids.iter().map(String::as_str).collect();
    stack.create_group("Developers", &members).await;
    stack
        .until_within(
            "everyone is in API Developers",
            Duration::from_secs(60),
            |s| (0..PEOPLE).all(|n| s.in_group(&format!("p{n}@example.org"), "API Developers")),
        )
        .await;
    quiet(&stack).await;
    let log = stack.standin.request_log();
    let listings = log.iter().filter(|r| is_listing(r)).count();
    assert_eq!(listings, 0, "no listing per batch: {:#?}", describe(&log));
    let creates = log
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/users")
        .count();
    assert_eq!(creates, PEOPLE, "one creation per person");
    // A write per person (what was just written is not read back), plus
    // the group listing.
    let limit = PEOPLE + PEOPLE / 20 + 3;
    assert!(
        log.len() <= limit,
        "{} requests for {PEOPLE} people (limit {limit}): {:#?}",
        log.len(),
        describe(&log)
    );
}
both_backends!(
    bulk_load_cost,
    a_bulk_load_costs_about_one_write_per_person_and_no_listing
);

async fn an_email_changed_by_hand_in_tyk_is_reverted_not_a_new_person(db: Db) {
    // Ada was written a moment ago: read her back anyway.
    let stack = stack_with(db, 0, |c| c.sync.trust_own_writes = Duration::ZERO).await;
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
    quiet(&stack).await;
    let ada_id = stack.tyk_user("ada@example.org").expect("ada").id;
    let count = stack.standin.users().len();

    // By hand in Tyk, then any change of Ada's in SCIM (an event run).
    stack.standin.with_directory(|d| {
        d.user_mut(&ada_id).expect("ada").email_address = "ada.l@hand.example".into();
    });
    let (code, body) = stack
        .scim(
            &stack.okta_token,
            reqwest::Method::PATCH,
            &format!("/Users/{ada}"),
            patch_ops(json!([{"op": "replace", "path": "name.familyName", "value": "King"}])),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    stack
        .until("Ada's e-mail is back", |s| {
            s.tyk_user("ada@example.org")
                .is_some_and(|u| u.id == ada_id && u.last_name == "King")
        })
        .await;
    quiet(&stack).await;
    assert_eq!(stack.standin.users().len(), count, "nobody was created");

    // The full reconcile does the same.
    stack.standin.with_directory(|d| {
        d.user_mut(&ada_id).expect("ada").email_address = "ada.l@hand.example".into();
    });
    let status = stack.reconcile().await;
    assert_eq!(status["outcome"], "applied", "{status}");
    let back = stack.tyk_user("ada@example.org").expect("ada back");
    assert_eq!(back.id, ada_id);
    assert_eq!(stack.standin.users().len(), count, "nobody was created");
    let (code, audit) = stack
        .admin_request(
            reqwest::Method::GET,
            "/admin/v1/sync/audit?email=ada@example.org&step=revert_email",
        )
        .await;
    assert_eq!(code, 200);
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{audit}");
    assert_eq!(
        entries[0]["before"],
        json!({"email_address": "ada.l@hand.example"})
    );
}
both_backends!(
    hand_changed_email,
    an_email_changed_by_hand_in_tyk_is_reverted_not_a_new_person
);

async fn a_stale_group_cache_heals_itself(db: Db) {
    let stack = stack_with(db, 0, |c| c.sync.trust_own_writes = Duration::ZERO).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    stack.add_rule("API Ops", 20, &["okta:Ops"]).await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    let bob = stack.create_user("bob", "bob@example.org").await;
    let developers = stack.create_group("Developers", &[&ada]).await;
    let ops = stack.create_group("Ops", &[]).await;
    stack
        .until("Ada is in API Developers", |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;
    quiet(&stack).await;
    // A run that writes no group lists the groups and keeps them cached.
    stack.patch_members(&developers, &[&bob], &[]).await;
    stack
        .until("Bob is in API Developers", |s| {
            s.in_group("bob@example.org", "API Developers")
        })
        .await;
    quiet(&stack).await;
    // The cached API Ops goes away by hand.
    let gone = stack.tyk_group("API Ops").expect("API Ops").id;
    stack.standin.with_directory(|d| d.remove_group(&gone));
    stack.standin.clear_request_log();

    stack.patch_members(&ops, &[&ada], &[]).await;
    stack
        .until("Ada is in a new API Ops", |s| {
            s.in_group("ada@example.org", "API Ops")
        })
        .await;
    assert_ne!(stack.tyk_group("API Ops").expect("API Ops").id, gone);
    let log = stack.standin.request_log();
    let failed_puts = log
        .iter()
        .filter(|r| r.method == "PUT" && r.status == 400)
        .count();
    assert_eq!(
        failed_puts,
        1,
        "one write met the stale group: {:#?}",
        describe(&log)
    );
    assert!(!log.iter().any(is_listing), "{:#?}", describe(&log));
}
both_backends!(stale_group_cache, a_stale_group_cache_heals_itself);

/// The most requests any one-second window `[t, t + 1 s)` of the log holds.
fn busiest_second(log: &[LoggedRequest]) -> usize {
    let times: Vec<Instant> = log.iter().map(|r| r.received_at).collect();
    let mut best = 0;
    let mut end = 0;
    for start in 0..times.len() {
        while end < times.len() && times[end] < times[start] + Duration::from_secs(1) {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

async fn no_second_sees_more_requests_than_the_configured_rate(db: Db) {
    const RATE: u32 = 40;
    let stack = stack_with(db, 400, |c| c.sync.requests_per_second = RATE).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(
            stack
                .create_user(&format!("p{n}"), &format!("p{n}@example.org"))
                .await,
        );
    }
    let members: Vec<&str> = ids.iter().map(String::as_str).collect();
    stack.create_group("Developers", &members).await;
    stack
        .until_within(
            "everyone is in API Developers",
            Duration::from_secs(60),
            |s| (0..30).all(|n| s.in_group(&format!("p{n}@example.org"), "API Developers")),
        )
        .await;
    // Listing pages (reads) too: full reconciles of the 430 users (the
    // rule's event no longer lists anyone: it matched nobody yet).
    stack.reconcile().await;
    stack.reconcile().await;
    quiet(&stack).await;
    let mut log = stack.standin.request_log();
    log.sort_by_key(|r| r.received_at);
    assert!(
        log.len() > 2 * RATE as usize,
        "enough traffic to tell: {}",
        log.len()
    );
    assert!(
        log.iter().filter(|r| is_listing(r)).count() >= 40,
        "listing pages included"
    );
    let busiest = busiest_second(&log);
    assert!(
        busiest <= RATE as usize,
        "{busiest} requests in one second against a rate of {RATE}"
    );
}
both_backends!(
    request_rate,
    no_second_sees_more_requests_than_the_configured_rate
);

//! Event runs alongside a full reconcile, and the scope of rule and group
//! changes, read from the stand-in's request log: a change arriving while
//! a full reconcile lists a large Tyk reaches Tyk before that listing ends
//! — also one that needs a new Tyk group — and a mapping rule change or an
//! IdP group's deletion costs requests for the people it can affect only.

use std::collections::BTreeSet;
use std::time::Duration;

use tyk_idsync::standin::{FaultRates, LoggedRequest};

use crate::both_backends;
use crate::support::Db;
use crate::support::stack::Stack;
use crate::sync_cost::{describe, is_listing, quiet, stack_with};

/// Users in Tyk besides ours: 500 listing pages, long enough (with the
/// added latency) for a change to be made and applied while they stream.
const STRANGERS: usize = 5_000;

/// Per-request latency while the reconcile runs.
const LATENCY: Duration = Duration::from_millis(20);

/// Index in the log of the last listing page.
fn last_listing(log: &[LoggedRequest]) -> usize {
    log.iter()
        .rposition(is_listing)
        .expect("the reconcile listed Tyk")
}

/// Runs a full reconcile and, once its listing has begun, `change`; both
/// to their end. Returns the request log of the two.
async fn during_a_reconcile(stack: &Stack, change: impl Future<Output = ()>) -> Vec<LoggedRequest> {
    stack.standin.set_fault_rates(FaultRates {
        latency: LATENCY,
        ..FaultRates::default()
    });
    stack.standin.clear_request_log();
    let changed = async {
        while !stack.standin.request_log().iter().any(is_listing) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        change.await;
    };
    let (status, ()) = tokio::join!(stack.reconcile(), changed);
    assert_eq!(status["outcome"], "applied", "{status}");
    stack.standin.set_fault_rates(FaultRates::default());
    quiet(stack).await;
    stack.standin.request_log()
}

fn index_of(log: &[LoggedRequest], what: impl Fn(&LoggedRequest) -> bool) -> usize {
    log.iter()
        .position(what)
        .unwrap_or_else(|| panic!("not in the log: {:#?}", describe(log)))
}

async fn a_change_needing_a_new_group_during_a_reconcile_is_not_held_behind_it(db: Db) {
    let stack = stack_with(db, STRANGERS, |_| {}).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    stack.create_group("Developers", &[&ada]).await;
    let ops = stack.create_group("Ops", &[]).await;
    stack
        .until_within("Ada is in API Developers", Duration::from_secs(60), |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;
    quiet(&stack).await;
    let ada_id = stack.tyk_user("ada@example.org").expect("ada").id;

    let log = during_a_reconcile(&stack, async {
        // API Ops does not exist in Tyk yet: the event run creates it.
        stack.add_rule("API Ops", 20, &["okta:Ops"]).await;
        stack.patch_members(&ops, &[&ada], &[]).await;
        stack
            .until_within("Ada is in API Ops", Duration::from_secs(60), |s| {
                s.in_group("ada@example.org", "API Ops")
            })
            .await;
    })
    .await;
    let created = index_of(&log, |r| r.method == "POST" && r.path == "/api/usergroups");
    let moved = index_of(&log, |r| {
        r.method == "PUT" && r.path == format!("/api/users/{ada_id}")
    });
    let listed = last_listing(&log);
    assert!(
        created < listed && moved < listed,
        "group created at {created}, Ada moved at {moved}, listing ended at {listed}: {:#?}",
        describe(&log)
    );
    let api_ops = stack
        .standin
        .groups()
        .into_iter()
        .filter(|g| g.name == "API Ops")
        .count();
    assert_eq!(api_ops, 1, "the reconcile did not create API Ops again");
    assert!(
        stack.in_group("ada@example.org", "API Ops"),
        "and left Ada there"
    );
}
both_backends!(
    new_group_during_reconcile,
    a_change_needing_a_new_group_during_a_reconcile_is_not_held_behind_it
);

async fn a_group_both_a_reconcile_and_an_event_run_need_is_created_once(db: Db) {
    let stack = stack_with(db, STRANGERS, |_| {}).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    stack.add_rule("API Ops", 20, &["okta:Ops"]).await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    stack.create_group("Developers", &[&ada]).await;
    let ops = stack.create_group("Ops", &[]).await;
    stack
        .until_within("Ada is in API Developers", Duration::from_secs(60), |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;
    quiet(&stack).await;
    // API Ops goes by hand: the reconcile's listing lacks it, so it plans
    // to create it; so does the event run moving Ada there meanwhile.
    let gone = stack.tyk_group("API Ops").expect("API Ops").id;
    stack.standin.with_directory(|d| d.remove_group(&gone));

    let log = during_a_reconcile(&stack, async {
        stack.patch_members(&ops, &[&ada], &[]).await;
        stack
            .until_within("Ada is in API Ops", Duration::from_secs(60), |s| {
                s.in_group("ada@example.org", "API Ops")
            })
            .await;
    })
    .await;
    let created = index_of(&log, |r| r.method == "POST" && r.path == "/api/usergroups");
    assert!(created < last_listing(&log), "{:#?}", describe(&log));
    let api_ops: Vec<String> = stack
        .standin
        .groups()
        .into_iter()
        .filter(|g| g.name == "API Ops")
        .map(|g| g.id)
        .collect();
    assert_eq!(
        api_ops.len(),
        1,
        "API Ops created once: {:#?}",
        describe(&log)
    );
    assert!(stack.in_group("ada@example.org", "API Ops"));
}
both_backends!(
    group_created_once,
    a_group_both_a_reconcile_and_an_event_run_need_is_created_once
);

async fn an_ordinary_change_during_a_reconcile_is_not_held_behind_it(db: Db) {
    let stack = stack_with(db, STRANGERS, |_| {}).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    stack.add_rule("API Ops", 20, &["okta:Ops"]).await;
    let ada = stack.create_user("ada", "ada@example.org").await;
    stack.create_group("Developers", &[&ada]).await;
    let ops = stack.create_group("Ops", &[]).await;
    stack
        .until_within("Ada is in API Developers", Duration::from_secs(60), |s| {
            s.in_group("ada@example.org", "API Developers")
        })
        .await;
    quiet(&stack).await;
    let ada_id = stack.tyk_user("ada@example.org").expect("ada").id;

    let log = during_a_reconcile(&stack, async {
        stack.patch_members(&ops, &[&ada], &[]).await;
        stack
            .until_within("Ada is in API Ops", Duration::from_secs(60), |s| {
                s.in_group("ada@example.org", "API Ops")
            })
            .await;
    })
    .await;
    let moved = index_of(&log, |r| {
        r.method == "PUT" && r.path == format!("/api/users/{ada_id}")
    });
    let listed = last_listing(&log);
    assert!(
        moved < listed,
        "Ada moved at {moved}, listing ended at {listed}: {:#?}",
        describe(&log)
    );
    assert!(
        stack.in_group("ada@example.org", "API Ops"),
        "the reconcile left Ada there"
    );
}
both_backends!(
    change_during_reconcile,
    an_ordinary_change_during_a_reconcile_is_not_held_behind_it
);

/// The Tyk users a log reads or writes one by one.
fn users_touched(log: &[LoggedRequest]) -> BTreeSet<String> {
    log.iter()
        .filter_map(|r| r.path.strip_prefix("/api/users/"))
        .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
        .collect()
}

async fn a_rule_change_or_a_group_deletion_plans_only_the_people_it_can_affect(db: Db) {
    const OTHERS: usize = 150;
    const OPS: usize = 3;
    let stack = stack_with(db, 0, |c| c.sync.trust_own_writes = Duration::ZERO).await;
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let mut everyone = Vec::new();
    for n in 0..OTHERS + OPS {
        everyone.push(
            stack
                .create_user(&format!("p{n}"), &format!("p{n}@example.org"))
                .await,
        );
    }
    let members: Vec<&str> = everyone.iter().map(String::as_str).collect();
    stack.create_group("Developers", &members).await;
    let ops_members = &members[OTHERS..];
    let ops = stack.create_group("Ops", ops_members).await;
    let in_ops = |s: &Stack, group: &str| {
        (OTHERS..OTHERS + OPS).all(|n| s.in_group(&format!("p{n}@example.org"), group))
    };
    stack
        .until_within(
            "everyone is in API Developers",
            Duration::from_secs(60),
            |s| {
                in_ops(s, "API Developers")
                    && (0..OTHERS)
                        .all(|n| s.in_group(&format!("p{n}@example.org"), "API Developers"))
            },
        )
        .await;
    quiet(&stack).await;
    let ops_ids: BTreeSet<String> = (OTHERS..OTHERS + OPS)
        .map(|n| {
            stack
                .tyk_user(&format!("p{n}@example.org"))
                .expect("ops")
                .id
        })
        .collect();
    let check = |what: &str, log: &[LoggedRequest]| {
        assert!(!log.iter().any(is_listing), "{what}: {:#?}", describe(log));
        let touched = users_touched(log);
        assert!(
            touched.is_subset(&ops_ids),
            "{what} touched only the Ops people: {:#?}",
            describe(log)
        );
        // Per person a read and a write; the groups: a listing and a write.
        assert!(
            log.len() <= 2 * OPS + 2,
            "{what}: {} requests: {:#?}",
            log.len(),
            describe(log)
        );
    };

    // A new rule: its group is created and the Ops people move into it.
    stack.standin.clear_request_log();
    let rule = stack.add_rule("API Ops", 20, &["okta:Ops"]).await;
    stack
        .until("the Ops people are in API Ops", |s| in_ops(s, "API Ops"))
        .await;
    quiet(&stack).await;
    check("a new rule", &stack.standin.request_log());

    // The rule goes: the Ops people fall back to API Developers.
    stack.standin.clear_request_log();
    let rule_id = rule["id"].as_str().expect("rule id");
    let (code, body) = stack
        .admin_request(
            reqwest::Method::DELETE,
            &format!("/admin/v1/mappings/{rule_id}"),
        )
        .await;
    assert!(code == 204 || code == 200, "{code} {body}");
    stack
        .until("the Ops people are back in API Developers", |s| {
            in_ops(s, "API Developers")
        })
        .await;
    quiet(&stack).await;
    check("a deleted rule", &stack.standin.request_log());

    // Back again, then the IdP group goes: its former members move.
    stack.add_rule("API Ops", 20, &["okta:Ops"]).await;
    stack
        .until("the Ops people are in API Ops", |s| in_ops(s, "API Ops"))
        .await;
    quiet(&stack).await;
    stack.standin.clear_request_log();
    let (code, body) = stack
        .scim(
            &stack.okta_token,
            reqwest::Method::DELETE,
            &format!("/Groups/{ops}"),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(code, 204, "{body}");
    stack
        .until("the Ops people are back in API Developers", |s| {
            in_ops(s, "API Developers")
        })
        .await;
    quiet(&stack).await;
    check("a deleted group", &stack.standin.request_log());
}
both_backends!(
    rule_and_group_change_scope,
    a_rule_change_or_a_group_deletion_plans_only_the_people_it_can_affect
);

//! Applier tests against the in-memory Tyk and a real SQLite store.

use std::collections::BTreeMap;
use std::time::Duration;

use pretty_assertions::assert_eq;

use super::{Applier, ApplyContext, ApplyLimits, ApplyReport};
use crate::domain::{DesiredGroup, DesiredState, DesiredUser, SourceName, Timestamp};
use crate::store::sync_audit::{self, AuditFilter};
use crate::store::{Store, StoreOptions, sync_state};
use crate::sync::fake_tyk::{FakeTyk, retryable};
use crate::sync::retry::RetryPolicy;
use crate::sync::{ActualUser, Deprovision, Plan, PlanStep, SyncPolicy, WriteError, plan};

const ORG: &str = "org1";

pub(super) async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/sync.db", dir.path().display());
    let store = Store::connect(&StoreOptions::new(url))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, dir)
}

pub(super) fn perms(level: &str) -> BTreeMap<String, String> {
    [("apis".to_string(), level.to_string())]
        .into_iter()
        .collect()
}

fn desired(people: &[(&str, &str)]) -> DesiredState {
    DesiredState {
        groups: ["dev", "ops"]
            .iter()
            .map(|name| DesiredGroup {
                org_id: ORG.into(),
                name: name.to_string(),
                description: None,
                permissions: perms(if *name == "dev" { "read" } else { "write" }),
            })
            .collect(),
        users: people
            .iter()
            .map(|(email, group)| DesiredUser {
                org_id: ORG.into(),
                email: email.to_string(),
                first_name: "First".into(),
                last_name: "Last".into(),
                active: true,
                group: Some(group.to_string()),
                rule: Some(format!("rule-{group}")),
                sources: vec![SourceName::new("okta")],
            })
            .collect(),
    }
}

fn fast_limits() -> ApplyLimits {
    ApplyLimits {
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        max_concurrency: 4,
        requests_per_second: None,
    }
}

fn ctx(adopt: bool) -> ApplyContext {
    ApplyContext {
        adopt_existing: adopt,
        ..ApplyContext::new("sync", Timestamp::now())
    }
}

/// One plan-and-apply round, as the worker does it.
async fn round(
    tyk: &FakeTyk,
    store: &Store,
    want: &DesiredState,
    policy: &SyncPolicy,
) -> (Plan, ApplyReport) {
    let mut conn = store.pool().acquire().await.expect("conn");
    let ownership = sync_state::load_ownership(&mut conn)
        .await
        .expect("ownership");
    drop(conn);
    let actual = tyk.actual();
    let plan = plan(want, &actual, &ownership, policy, Timestamp::now());
    let context = ApplyContext {
        adopt_existing: policy.adopt_existing,
        ..ctx(false)
    };
    let report = Applier::new(tyk, store, fast_limits())
        .apply(&plan, &actual, &context)
        .await;
    (plan, report)
}

fn user_emails(tyk: &FakeTyk) -> Vec<String> {
    let mut emails: Vec<_> = tyk.lock().users.values().map(|u| u.email.clone()).collect();
    emails.sort();
    emails
}

#[tokio::test]
async fn a_fresh_sync_creates_groups_then_users_and_a_second_run_writes_nothing() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    let want = desired(&[("ada@x.io", "dev"), ("bob@x.io", "ops")]);
    let (_, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.tyk_writes, 4);
    assert_eq!(user_emails(&tyk), vec!["ada@x.io", "bob@x.io"]);
    let writes = tyk.lock().writes.clone();
    assert!(
        writes[..2].iter().all(|w| w.starts_with("create_group")),
        "{writes:?}"
    );

    let mut conn = store.pool().acquire().await.expect("conn");
    assert_eq!(sync_state::count_users(&mut conn).await.expect("count"), 2);
    let audit = sync_audit::list(
        &mut conn,
        &AuditFilter {
            limit: 50,
            ..Default::default()
        },
    )
    .await
    .expect("audit");
    assert_eq!(audit.len(), 4);
    assert!(audit.iter().all(|e| e.entry.ok && e.entry.actor == "sync"));
    drop(conn);

    let before = tyk.lock().writes.len();
    let (second, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert_eq!(second, Plan::default());
    assert_eq!((report.tyk_writes, tyk.lock().writes.len()), (0, before));
}

#[tokio::test]
async fn a_move_with_a_name_change_and_reactivation_is_one_write() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    round(
        &tyk,
        &store,
        &desired(&[("ada@x.io", "dev")]),
        &SyncPolicy::default(),
    )
    .await;
    for user in tyk.lock().users.values_mut() {
        user.active = false;
    }
    let mut want = desired(&[("ada@x.io", "ops")]);
    want.users[0].last_name = "King".into();
    let writes_before = tyk.lock().writes.len();
    let (plan, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    let kinds: Vec<_> = plan.steps.iter().map(|s| s.kind()).collect();
    assert_eq!(
        kinds,
        vec!["reactivate", "update_user_profile", "move_to_group"]
    );
    assert_eq!((report.applied, report.tyk_writes), (3, 1));
    assert_eq!(tyk.lock().writes.len() - writes_before, 1);
    let user = tyk.lock().users.values().next().cloned().expect("ada");
    assert_eq!(
        (
            user.active,
            user.last_name.as_str(),
            user.permissions.clone()
        ),
        (true, "King", perms("write"))
    );
}

#[tokio::test]
async fn transient_failures_and_rate_limits_are_retried_to_convergence() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    round(&tyk, &store, &desired(&[]), &SyncPolicy::default()).await;
    {
        let mut state = tyk.lock();
        state
            .faults
            .extend([retryable(None), retryable(Some(20)), retryable(None)]);
    }
    let people: Vec<(String, &str)> = (0..20).map(|i| (format!("p{i}@x.io"), "dev")).collect();
    let refs: Vec<(&str, &str)> = people.iter().map(|(e, g)| (e.as_str(), *g)).collect();
    let (_, report) = round(&tyk, &store, &desired(&refs), &SyncPolicy::default()).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(user_emails(&tyk).len(), 20);
    assert_eq!(report.tyk_writes, 20 + 3);
}

#[tokio::test]
async fn one_persons_permanent_failure_does_not_block_the_others() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    tyk.lock().refuse_email = Some("bad@x.io".into());
    let want = desired(&[
        ("ada@x.io", "dev"),
        ("bad@x.io", "dev"),
        ("bob@x.io", "dev"),
    ]);
    let (_, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert_eq!(report.failed, 1);
    assert_eq!(
        report.failed_people.into_iter().collect::<Vec<_>>(),
        vec![(ORG.to_string(), "bad@x.io".to_string())]
    );
    assert_eq!(user_emails(&tyk), vec!["ada@x.io", "bob@x.io"]);
    let mut conn = store.pool().acquire().await.expect("conn");
    let failures = sync_audit::list(
        &mut conn,
        &AuditFilter {
            email: Some("bad@x.io".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .expect("audit");
    assert_eq!(failures.len(), 1);
    assert!(!failures[0].entry.ok);
    assert!(
        failures[0]
            .entry
            .message
            .as_deref()
            .unwrap_or("")
            .contains("refused")
    );
    let ownership = sync_state::load_ownership(&mut conn)
        .await
        .expect("ownership");
    assert!(
        ownership.pending_creates.is_empty(),
        "a refused creation leaves no pending record"
    );
}

#[tokio::test]
async fn a_lost_create_answer_is_recognised_as_ours_without_a_duplicate() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    tyk.lock().lose_create_answers = 1;
    let want = desired(&[("ada@x.io", "dev")]);
    let (_, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(user_emails(&tyk), vec!["ada@x.io"]);
    let mut conn = store.pool().acquire().await.expect("conn");
    let managed = sync_state::find_user_by_email(&mut conn, ORG, "ada@x.io")
        .await
        .expect("find")
        .expect("managed");
    assert!(!managed.adopted);
    drop(conn);
    let (again, _) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert_eq!(again, Plan::default());
}

#[tokio::test]
async fn a_crash_after_tyk_created_the_user_resumes_as_ours() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    let want = desired(&[("ada@x.io", "dev")]);
    round(&tyk, &store, &want, &SyncPolicy::default()).await;
    // Rewind our records to the moment between Tyk's answer and ours: the
    // pending record written, the POST landed, the process killed.
    let id = tyk.lock().users.keys().next().cloned().expect("id");
    let mut conn = store.pool().acquire().await.expect("conn");
    sync_state::forget_user(&mut conn, &id)
        .await
        .expect("forget");
    sync_state::begin_create(&mut conn, ORG, "ada@x.io", Timestamp::now())
        .await
        .expect("pending");
    drop(conn);

    let (plan, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert_eq!(
        plan.steps.iter().map(|s| s.kind()).collect::<Vec<_>>(),
        vec!["adopt_user"]
    );
    assert!(report.succeeded());
    assert_eq!(user_emails(&tyk), vec!["ada@x.io"]);
    let mut conn = store.pool().acquire().await.expect("conn");
    let managed = sync_state::find_user_by_email(&mut conn, ORG, "ada@x.io")
        .await
        .expect("find")
        .expect("managed");
    assert!(!managed.adopted, "a resumed creation is ours, not adopted");
}

fn stranger(id: &str, email: &str) -> ActualUser {
    ActualUser {
        id: id.into(),
        org_id: ORG.into(),
        email: email.into(),
        first_name: "Hand".into(),
        last_name: "Made".into(),
        active: true,
        group_id: None,
        permissions: perms("read"),
        is_admin: false,
    }
}

#[tokio::test]
async fn a_user_created_by_hand_meanwhile_is_left_alone_or_adopted() {
    for adopt in [false, true] {
        let (store, _dir) = sqlite_store().await;
        let tyk = FakeTyk::default();
        round(&tyk, &store, &desired(&[]), &SyncPolicy::default()).await;
        let actual = tyk.actual();
        let mut conn = store.pool().acquire().await.expect("conn");
        let ownership = sync_state::load_ownership(&mut conn)
            .await
            .expect("ownership");
        drop(conn);
        let policy = SyncPolicy {
            adopt_existing: adopt,
            ..SyncPolicy::default()
        };
        let plan = plan(
            &desired(&[("ada@x.io", "dev")]),
            &actual,
            &ownership,
            &policy,
            Timestamp::now(),
        );
        // Someone creates Ada by hand between our listing and our POST.
        tyk.add_user(stranger("aaaaaaaaaaaaaaaaaaaaaaaa", "ada@x.io"));
        let report = Applier::new(&tyk, &store, fast_limits())
            .apply(&plan, &actual, &ctx(adopt))
            .await;
        let user = tyk.lock().users["aaaaaaaaaaaaaaaaaaaaaaaa"].clone();
        let mut conn = store.pool().acquire().await.expect("conn");
        let managed = sync_state::find_user_by_email(&mut conn, ORG, "ada@x.io")
            .await
            .expect("find");
        assert_eq!(user_emails(&tyk), vec!["ada@x.io"], "adopt={adopt}");
        if adopt {
            assert!(report.succeeded(), "{report:?}");
            assert!(managed.expect("adopted").adopted);
            assert_eq!(user.first_name, "First");
        } else {
            // Left alone, and not a failure: event runs create people we
            // do not manage without looking first, so this is how an
            // unmanaged user in Tyk is met (its events must not retry forever).
            assert_eq!((report.failed, report.applied), (0, 0), "{report:?}");
            assert!(managed.is_none());
            assert_eq!(user.first_name, "Hand", "unmanaged user untouched");
        }
    }
}

#[tokio::test]
async fn deprovisioning_deactivates_then_deletes_after_the_grace_period() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    let policy = SyncPolicy {
        deprovision: Deprovision::Delete,
        grace_period: Duration::ZERO,
        adopt_existing: false,
        reset_access_key: false,
    };
    round(&tyk, &store, &desired(&[("ada@x.io", "dev")]), &policy).await;
    let (plan, _) = round(&tyk, &store, &desired(&[]), &policy).await;
    assert_eq!(
        plan.steps.iter().map(|s| s.kind()).collect::<Vec<_>>(),
        vec!["deactivate"]
    );
    assert!(tyk.lock().users.values().all(|u| !u.active));
    let (plan, report) = round(&tyk, &store, &desired(&[]), &policy).await;
    assert_eq!(
        plan.steps.iter().map(|s| s.kind()).collect::<Vec<_>>(),
        vec!["delete"]
    );
    assert!(report.succeeded());
    assert!(tyk.lock().users.is_empty());
    let mut conn = store.pool().acquire().await.expect("conn");
    assert_eq!(sync_state::count_users(&mut conn).await.expect("count"), 0);
}

#[tokio::test]
async fn a_group_creation_that_may_have_landed_is_recognised_next_run() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    tyk.lock().faults.push_back(retryable(None));
    let want = desired(&[("ada@x.io", "dev")]);
    let (_, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert!(
        report
            .failed_groups
            .contains(&(ORG.to_string(), "dev".to_string()))
    );
    // Pretend the failed POST had landed after all.
    let record = crate::sync::GroupRecord {
        org_id: ORG.into(),
        name: "dev".into(),
        description: None,
        permissions: perms("read"),
    };
    crate::sync::TykWriter::create_group(&tyk, &record)
        .await
        .expect("landed");
    let (plan, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert_eq!(
        plan.steps.iter().map(|s| s.kind()).collect::<Vec<_>>(),
        vec!["adopt_group", "create_user"]
    );
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        tyk.lock()
            .groups
            .values()
            .filter(|g| g.name == "dev")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_failed_group_creation_holds_back_its_members_only() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    tyk.lock().faults.push_back(WriteError::Permanent {
        status: Some(403),
        message: "Request body malformed.".into(),
    });
    let want = desired(&[("ada@x.io", "dev"), ("bob@x.io", "ops")]);
    let (_, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert_eq!(user_emails(&tyk), vec!["bob@x.io"]);
    assert_eq!(report.failed_groups.len(), 1);
    assert!(
        report
            .failed_people
            .contains(&(ORG.to_string(), "ada@x.io".to_string()))
    );
    let (_, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert!(report.succeeded());
    assert_eq!(user_emails(&tyk), vec!["ada@x.io", "bob@x.io"]);
}

#[tokio::test]
async fn a_held_plan_creating_an_invalid_email_writes_nothing_to_tyk() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    round(
        &tyk,
        &store,
        &desired(&[("ada@x.io", "dev")]),
        &SyncPolicy::default(),
    )
    .await;
    let before = tyk.lock().writes.len();
    let mut conn = store.pool().acquire().await.expect("conn");
    let ownership = sync_state::load_ownership(&mut conn)
        .await
        .expect("ownership");
    drop(conn);
    let actual = tyk.actual();
    // A creation as a plan held for approval by an older version could
    // carry it.
    let template = plan(
        &desired(&[("ada@x.io", "dev"), ("other@x.io", "dev")]),
        &actual,
        &ownership,
        &SyncPolicy::default(),
        Timestamp::now(),
    );
    let held = Plan {
        steps: template
            .steps
            .into_iter()
            .map(|step| match step {
                PlanStep::CreateUser {
                    org_id,
                    profile,
                    group,
                    permissions,
                    rule,
                    ..
                } => PlanStep::CreateUser {
                    org_id,
                    email: "not-an-email".into(),
                    profile,
                    group,
                    permissions,
                    rule,
                },
                other => other,
            })
            .collect(),
        skipped: Vec::new(),
    };
    assert_eq!(held.steps.len(), 1, "{held:?}");
    let report = Applier::new(&tyk, &store, fast_limits())
        .apply(&held, &actual, &ctx(false))
        .await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(tyk.lock().writes.len(), before, "nothing sent to Tyk");
    assert_eq!(user_emails(&tyk), vec!["ada@x.io"]);
}

/// The `create_user` rows of the audit log.
async fn creations_audited(store: &Store) -> Vec<sync_audit::AuditEntry> {
    let mut conn = store.pool().acquire().await.expect("conn");
    sync_audit::list(
        &mut conn,
        &AuditFilter {
            step_kind: Some("create_user".into()),
            limit: 1_000,
            ..Default::default()
        },
    )
    .await
    .expect("audit")
}

async fn open_intents(store: &Store) -> usize {
    let mut conn = store.pool().acquire().await.expect("conn");
    sync_audit::open_intents(&mut conn, 10_000)
        .await
        .expect("intents")
        .len()
}

/// 150 people cross the chunks their store rows are batched in (64 before,
/// 32 after): each ends recorded, audited once, with no intent or pending
/// creation left.
#[tokio::test]
async fn many_people_are_recorded_and_audited_once_each_across_batches() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    let people: Vec<(String, &str)> = (0..150).map(|i| (format!("p{i}@x.io"), "dev")).collect();
    let refs: Vec<(&str, &str)> = people.iter().map(|(e, g)| (e.as_str(), *g)).collect();
    let (_, report) = round(&tyk, &store, &desired(&refs), &SyncPolicy::default()).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(user_emails(&tyk).len(), 150);
    let mut conn = store.pool().acquire().await.expect("conn");
    let ownership = sync_state::load_ownership(&mut conn).await.expect("load");
    assert_eq!(ownership.users.len(), 150);
    assert!(ownership.pending_creates.is_empty(), "{ownership:?}");
    let audit = creations_audited(&store).await;
    let mut audited: Vec<String> = audit.iter().filter_map(|e| e.entry.email.clone()).collect();
    audited.sort();
    audited.dedup();
    assert_eq!((audit.len(), audited.len()), (150, 150));
    let tyk_ids: std::collections::BTreeSet<String> = tyk.lock().users.keys().cloned().collect();
    assert!(audit.iter().all(|e| {
        e.entry.ok
            && e.entry
                .tyk_id
                .as_ref()
                .is_some_and(|id| tyk_ids.contains(id))
    }));
    drop(conn);
    assert_eq!(open_intents(&store).await, 0);
}

/// When the store refuses the rows that record applied steps, those
/// people count as failed (their events stay pending) and everything
/// needed to recover stays: the pending creations (the next run finds
/// the users by e-mail and records them) and the intents (the next leader
/// audits what Tyk shows). Nothing is audited as done without them.
#[tokio::test]
async fn results_the_store_refuses_leave_their_people_failed_and_recoverable() {
    let (store, _dir) = sqlite_store().await;
    let tyk = FakeTyk::default();
    round(&tyk, &store, &desired(&[]), &SyncPolicy::default()).await;
    sqlx::query(
        "CREATE TRIGGER refuse_ownership BEFORE INSERT ON sync_managed_users \
         BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    .execute(store.pool())
    .await
    .expect("trigger");
    let people: Vec<(String, &str)> = (0..40).map(|i| (format!("p{i}@x.io"), "dev")).collect();
    let refs: Vec<(&str, &str)> = people.iter().map(|(e, g)| (e.as_str(), *g)).collect();
    let want = desired(&refs);
    let (_, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert_eq!(user_emails(&tyk).len(), 40, "Tyk took the creations");
    assert_eq!(report.failed_people.len(), 40, "{report:?}");
    assert!(!report.succeeded());
    assert!(
        report.errors.iter().all(|e| e.contains("not recorded")),
        "{:?}",
        report.errors
    );
    let mut conn = store.pool().acquire().await.expect("conn");
    let ownership = sync_state::load_ownership(&mut conn).await.expect("load");
    assert!(ownership.users.is_empty());
    assert_eq!(ownership.pending_creates.len(), 40);
    let audited = creations_audited(&store).await;
    assert!(audited.is_empty(), "{audited:?}");
    drop(conn);
    assert_eq!(open_intents(&store).await, 40);

    // The store heals: the next run records the users it created, once each.
    sqlx::query("DROP TRIGGER refuse_ownership")
        .execute(store.pool())
        .await
        .expect("drop trigger");
    let writes = tyk.lock().writes.len();
    let (plan, report) = round(&tyk, &store, &want, &SyncPolicy::default()).await;
    assert!(report.succeeded(), "{report:?}");
    assert!(
        plan.steps.iter().all(|s| s.kind() == "adopt_user"),
        "{:?}",
        plan.steps.iter().map(|s| s.kind()).collect::<Vec<_>>()
    );
    assert_eq!(tyk.lock().writes.len(), writes, "no second creation");
    assert_eq!(user_emails(&tyk).len(), 40);
    let mut conn = store.pool().acquire().await.expect("conn");
    let ownership = sync_state::load_ownership(&mut conn).await.expect("load");
    assert_eq!(ownership.users.len(), 40);
    assert!(ownership.pending_creates.is_empty());
}

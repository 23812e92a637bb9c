//! Worker tests: outbox-driven and full runs, the guard and approval, on a
//! real SQLite store with the in-memory Tyk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pretty_assertions::assert_eq;
use serde_json::json;

use crate::domain::{
    DesiredGroup, DesiredState, DesiredUser, EventKind, NewIdentityEvent, SourceName,
};
use crate::store::sync_runs::{self, RunStatus};
use crate::store::{Store, StoreOptions, events, sync_quarantine};
use crate::sync::ActualState;
use crate::sync::config::SyncConfig;
use crate::sync::fake_tyk::FakeTyk;
use crate::sync::guard::{GuardConfig, GuardVerdict};
use crate::sync::worker::{
    ActualScope, LoadError, Outcome, StateSource, SyncError, SyncWorker, Trigger,
};

const ORG: &str = "org1";

struct TestSource {
    desired: Mutex<DesiredState>,
    tyk: Arc<FakeTyk>,
    /// Reading Tyk fails (after the client's own retries).
    tyk_down: std::sync::atomic::AtomicBool,
}

impl StateSource for TestSource {
    async fn desired(&self) -> Result<DesiredState, LoadError> {
        Ok(self.desired.lock().expect("lock").clone())
    }
    async fn actual(&self, _scope: &ActualScope) -> Result<ActualState, LoadError> {
        if self.tyk_down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(LoadError(
                "GET /api/users/{id}: 503 after 5 attempts".into(),
            ));
        }
        Ok(self.tyk.actual())
    }
}

fn people(emails: &[String]) -> DesiredState {
    DesiredState {
        groups: vec![DesiredGroup {
            org_id: ORG.into(),
            name: "dev".into(),
            description: None,
            permissions: BTreeMap::from([("apis".to_string(), "read".to_string())]),
        }],
        users: emails
            .iter()
            .map(|email| DesiredUser {
                org_id: ORG.into(),
                email: email.clone(),
                first_name: "F".into(),
                last_name: "L".into(),
                active: true,
                group: Some("dev".into()),
                rule: Some("all".into()),
                sources: vec![SourceName::new("okta")],
            })
            .collect(),
    }
}

fn emails(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{i:02}@x.io")).collect()
}

type Worker = SyncWorker<Arc<FakeTyk>, TestSource>;

async fn worker(desired: DesiredState) -> (Worker, Arc<FakeTyk>, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/sync.db", dir.path().display());
    let store = Store::connect(&StoreOptions::new(url))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let tyk = Arc::new(FakeTyk::default());
    let config = SyncConfig {
        guard: GuardConfig {
            min_count: 2,
            max_percent: 10,
            ..GuardConfig::default()
        },
        retry_base_delay: Duration::from_millis(1),
        retry_max_delay: Duration::from_millis(5),
        requests_per_second: 0,
        ..SyncConfig::default()
    };
    let source = TestSource {
        desired: Mutex::new(desired),
        tyk: Arc::clone(&tyk),
        tyk_down: Default::default(),
    };
    (
        SyncWorker::new(store.clone(), Arc::clone(&tyk), source, config),
        tyk,
        store,
        dir,
    )
}

fn active_emails(tyk: &FakeTyk) -> Vec<String> {
    let mut out: Vec<_> = tyk
        .lock()
        .users
        .values()
        .filter(|u| u.active)
        .map(|u| u.email.clone())
        .collect();
    out.sort();
    out
}

async fn append_event(store: &Store, email: Option<&str>) {
    let mut tx = store.begin().await.expect("begin");
    events::append(
        &mut tx,
        &NewIdentityEvent {
            source: SourceName::new("okta"),
            kind: EventKind::UserUpdated,
            subject_id: None,
            email: email.map(str::to_string),
            detail: json!({}),
        },
    )
    .await
    .expect("append");
    tx.commit().await.expect("commit");
}

async fn outbox_depth(store: &Store) -> i64 {
    let mut conn = store.pool().acquire().await.expect("conn");
    events::depth(&mut conn).await.expect("depth").0
}

#[tokio::test]
async fn a_full_run_converges_and_a_second_one_writes_nothing() {
    let (worker, tyk, _store, _dir) = worker(people(&emails(5))).await;
    let first = worker.run_once(Trigger::Full).await.expect("run");
    assert_eq!(
        (first.outcome, first.applied, first.tyk_writes),
        (Outcome::Applied, 6, 6)
    );
    assert_eq!(active_emails(&tyk), emails(5));
    let second = worker.run_once(Trigger::Full).await.expect("run");
    assert_eq!(
        (second.outcome, second.tyk_writes, second.run_id),
        (Outcome::Applied, 0, None)
    );
}

#[tokio::test]
async fn events_apply_just_the_people_they_name_and_are_then_processed() {
    let (worker, tyk, store, _dir) = worker(people(&emails(3))).await;
    append_event(&store, Some("P01@x.io")).await;
    let status = worker.run_once(Trigger::Events).await.expect("run");
    assert_eq!(status.outcome, Outcome::Applied);
    assert_eq!(active_emails(&tyk), vec!["p01@x.io"]);
    assert_eq!(outbox_depth(&store).await, 0);
    let idle = worker.run_once(Trigger::Events).await.expect("run");
    assert_eq!(idle.outcome, Outcome::Idle);

    // An event naming nobody (a mapping change) reconciles everyone.
    append_event(&store, None).await;
    worker.run_once(Trigger::Events).await.expect("run");
    assert_eq!(active_emails(&tyk), emails(3));
}

#[tokio::test]
async fn a_failing_persons_events_stay_pending_while_others_are_processed() {
    let (worker, tyk, store, _dir) = worker(people(&emails(2))).await;
    worker.run_once(Trigger::Full).await.expect("groups first");
    tyk.lock().users.clear();
    tyk.lock().refuse_email = Some("p01@x.io".into());
    append_event(&store, Some("p00@x.io")).await;
    append_event(&store, Some("p01@x.io")).await;
    let status = worker.run_once(Trigger::Events).await.expect("run");
    assert_eq!(status.outcome, Outcome::PartlyFailed);
    assert_eq!(active_emails(&tyk), vec!["p00@x.io"]);
    assert_eq!(
        outbox_depth(&store).await,
        1,
        "p01's event is not marked processed"
    );

    tyk.lock().refuse_email = None;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let retried = worker.run_once(Trigger::Events).await.expect("run");
    assert_eq!(retried.outcome, Outcome::Applied);
    assert_eq!(active_emails(&tyk), emails(2));
    assert_eq!(outbox_depth(&store).await, 0);
}

#[tokio::test]
async fn the_guard_holds_a_run_deactivating_half_and_approval_applies_it() {
    let (worker, tyk, store, _dir) = worker(people(&emails(10))).await;
    worker.run_once(Trigger::Full).await.expect("initial");
    *worker_source(&worker).desired.lock().expect("lock") = people(&emails(5));

    let held = worker.run_once(Trigger::Full).await.expect("run");
    assert_eq!(held.outcome, Outcome::Held);
    assert_eq!(
        held.verdict,
        GuardVerdict::Hold {
            would_remove: 5,
            managed: 10,
            threshold: 2,
            would_recreate: 0,
            recreate_threshold: 2,
        }
    );
    assert_eq!(active_emails(&tyk).len(), 10, "nothing applied while held");
    let again = worker.run_once(Trigger::Full).await.expect("run");
    assert_eq!(again.run_id, held.run_id, "the same plan is not held twice");

    let id = held.run_id.expect("held run id");
    let (preview, verdict) = worker.preview().await.expect("preview");
    assert_eq!(preview.summary().people_removed, 5);
    assert!(matches!(verdict, GuardVerdict::Hold { .. }));

    let applied = worker
        .approve_run(id, "cli:approve")
        .await
        .expect("approve");
    // 5 deactivations, each followed by its access-key reset.
    assert_eq!((applied.outcome, applied.applied), (Outcome::Applied, 10));
    assert_eq!(active_emails(&tyk), emails(5));
    let resets = tyk
        .lock()
        .writes
        .iter()
        .filter(|w| w.starts_with("reset_user_key "))
        .count();
    assert_eq!(resets, 5);
    let mut conn = store.pool().acquire().await.expect("conn");
    let run = sync_runs::get_run(&mut conn, id)
        .await
        .expect("get")
        .expect("run");
    assert_eq!(
        (run.status, run.approved_by.as_deref()),
        (RunStatus::Applied, Some("cli:approve"))
    );
    drop(conn);
    assert!(matches!(
        worker.approve_run(id, "cli:approve").await,
        Err(SyncError::NotApprovable(_))
    ));
    let metrics = worker.metrics().prometheus();
    assert!(
        metrics.contains("tyk_idsync_sync_runs_total{outcome=\"held\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tyk_idsync_sync_runs_total{outcome=\"applied\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tyk_idsync_sync_held_would_remove 0"),
        "{metrics}"
    );
}

/// Approving a held run leaves quarantined people out, as any run does:
/// the person Tyk refused is not sent again, and the status and the run
/// record count them.
#[tokio::test]
async fn approving_a_held_run_skips_quarantined_people() {
    let bad = "bad@x.io".to_string();
    let with_bad = |n: usize| {
        let mut list = emails(n);
        list.push(bad.clone());
        people(&list)
    };
    let (worker, tyk, store, _dir) = worker(with_bad(10)).await;
    tyk.lock().refuse_data_of = Some(bad.clone());
    let creations = |tyk: &FakeTyk| {
        tyk.lock()
            .writes
            .iter()
            .filter(|w| w.as_str() == format!("create_user {bad}"))
            .count()
    };
    let first = worker.run_once(Trigger::Full).await.expect("initial");
    assert_eq!(first.outcome, Outcome::PartlyFailed);
    assert_eq!(creations(&tyk), 1, "refused once, then quarantined");

    *worker_source(&worker).desired.lock().expect("lock") = with_bad(5);
    let held = worker.run_once(Trigger::Full).await.expect("run");
    assert_eq!(held.outcome, Outcome::Held);
    assert_eq!(held.skipped_quarantined, 1);
    let id = held.run_id.expect("held run id");

    let applied = worker
        .approve_run(id, "cli:approve")
        .await
        .expect("approve");
    assert_eq!(applied.outcome, Outcome::Applied, "{applied:?}");
    assert_eq!(applied.skipped_quarantined, 1);
    assert_eq!(
        creations(&tyk),
        1,
        "approving did not retry the refused person"
    );
    assert_eq!(active_emails(&tyk), emails(5));
    assert!(
        applied.describe().contains("skipped 1 quarantined people"),
        "{}",
        applied.describe()
    );
    let mut conn = store.pool().acquire().await.expect("conn");
    let run = sync_runs::get_run(&mut conn, id)
        .await
        .expect("get")
        .expect("run");
    assert!(
        run.message
            .as_deref()
            .is_some_and(|m| m.contains("skipped 1 quarantined people")),
        "{:?}",
        run.message
    );
}

/// A full reconcile whose plan has nothing for a quarantined person lifts
/// the quarantine ("nothing left to do") — unless an event run planned that
/// person after the reconcile's view began: the reconcile left them to that
/// run, which may just have quarantined them.
#[tokio::test]
async fn a_full_reconcile_lifts_no_quarantine_an_event_run_recorded_meanwhile() {
    use crate::sync::step::Plan;
    let bad = "bad@x.io".to_string();
    let mut list = emails(2);
    list.push(bad.clone());
    let (worker, tyk, store, _dir) = worker(people(&list)).await;
    tyk.lock().refuse_data_of = Some(bad.clone());
    let first = worker.run_once(Trigger::Full).await.expect("initial");
    assert_eq!(first.outcome, Outcome::PartlyFailed);
    let quarantined = |store: Store| {
        let bad = bad.clone();
        async move {
            let mut conn = store.pool().acquire().await.expect("conn");
            sync_quarantine::find(&mut conn, &bad)
                .await
                .expect("find")
                .len()
        }
    };
    assert_eq!(quarantined(store.clone()).await, 1);

    let actual = tyk.actual();
    let started = std::time::Instant::now();
    worker.note_planned_by_events(&std::collections::BTreeSet::from([bad.clone()]));
    let mut plan = Plan::default();
    let left = worker
        .leave_quarantined(&mut plan, &actual, Trigger::Full, Some(started))
        .await
        .expect("leave");
    assert!(left.is_empty());
    assert_eq!(
        quarantined(store.clone()).await,
        1,
        "planned by an event run since the reconcile began: kept"
    );

    // Planned before the reconcile's view began: the reconcile's empty
    // plan is the truth, and the quarantine goes.
    let later = std::time::Instant::now();
    worker
        .leave_quarantined(&mut plan, &actual, Trigger::Full, Some(later))
        .await
        .expect("leave");
    assert_eq!(quarantined(store.clone()).await, 0, "lifted");
}

/// An intent as an abandoned run leaves it: a deactivation of `email`
/// recorded `age` ago.
async fn leave_intent(store: &Store, email: &str, age: Duration) {
    let at = crate::domain::Timestamp(
        crate::domain::Timestamp::now().0 - i64::try_from(age.as_millis()).expect("ms"),
    );
    let entry = crate::store::sync_audit::NewAuditEntry {
        run_id: None,
        at,
        actor: "sync".into(),
        step_kind: "deactivate".into(),
        org_id: ORG.into(),
        email: Some(email.into()),
        tyk_id: None,
        before: Some(json!({"active": true})),
        after: Some(json!({"active": false})),
        event_seqs: vec![],
        rule: None,
        ok: false,
        message: Some("intent: about to write to Tyk".into()),
    };
    let mut conn = store.pool().acquire().await.expect("conn");
    crate::store::sync_audit::record_intents(&mut conn, &[entry])
        .await
        .expect("intent");
}

async fn deactivate_rows(store: &Store) -> usize {
    let mut conn = store.pool().acquire().await.expect("conn");
    crate::store::sync_audit::list(
        &mut conn,
        &crate::store::sync_audit::AuditFilter {
            step_kind: Some("deactivate".into()),
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .expect("audit")
    .len()
}

async fn open_intents(store: &Store) -> usize {
    let mut conn = store.pool().acquire().await.expect("conn");
    crate::store::sync_audit::open_intents(&mut conn, 100)
        .await
        .expect("intents")
        .len()
}

/// The leader's own abandoned runs (while it kept the lead) are resolved
/// at its next full reconcile, once old enough not to be a one-shot
/// command still writing beside it.
#[tokio::test]
async fn a_full_reconcile_resolves_intents_abandoned_while_leading() {
    let (worker, _tyk, store, _dir) = worker(people(&emails(2))).await;
    worker.run_once(Trigger::Full).await.expect("initial");
    leave_intent(&store, "p00@x.io", Duration::from_secs(120)).await;
    leave_intent(&store, "p01@x.io", Duration::ZERO).await;
    worker.run_once(Trigger::Full).await.expect("full");
    assert_eq!(deactivate_rows(&store).await, 1, "the old one is audited");
    assert_eq!(open_intents(&store).await, 1, "the fresh one waits");
}

/// A take-over that cannot read Tyk does not wait for the next take-over:
/// a later run tries again.
#[tokio::test]
async fn intents_a_take_over_could_not_resolve_are_retried_by_a_later_run() {
    let (worker, tyk, store, _dir) = worker(people(&emails(1))).await;
    worker.run_once(Trigger::Full).await.expect("initial");
    leave_intent(&store, "p00@x.io", Duration::ZERO).await;
    tyk.lock()
        .read_faults
        .push_back(crate::sync::fake_tyk::retryable(None));
    worker.take_over_now().await;
    assert_eq!(open_intents(&store).await, 1, "Tyk could not be read");
    assert!(worker.intents_retry_pending());
    worker.run_once(Trigger::Events).await.expect("not due yet");
    assert_eq!(open_intents(&store).await, 1, "retried only after a pause");
    worker.intents_retry_now();
    worker.run_once(Trigger::Events).await.expect("events");
    assert_eq!(open_intents(&store).await, 0);
    assert_eq!(deactivate_rows(&store).await, 1);
    assert!(!worker.intents_retry_pending());
}

#[tokio::test]
async fn approval_refuses_a_plan_that_now_removes_other_people() {
    let (worker, tyk, store, _dir) = worker(people(&emails(10))).await;
    worker.run_once(Trigger::Full).await.expect("initial");
    *worker_source(&worker).desired.lock().expect("lock") = people(&emails(10)[5..]);
    let held = worker.run_once(Trigger::Full).await.expect("run");
    *worker_source(&worker).desired.lock().expect("lock") = people(&emails(10)[..5]);
    let refused = worker
        .approve_run(held.run_id.expect("id"), "cli:approve")
        .await;
    assert!(
        matches!(refused, Err(SyncError::NotApprovable(_))),
        "{refused:?}"
    );
    assert_eq!(active_emails(&tyk).len(), 10);
    let mut conn = store.pool().acquire().await.expect("conn");
    let old = sync_runs::get_run(&mut conn, held.run_id.expect("id"))
        .await
        .expect("get")
        .expect("run");
    assert_eq!(old.status, RunStatus::Superseded);
    let held_now = sync_runs::list_runs(&mut conn, Some(RunStatus::Held), 10)
        .await
        .expect("list");
    assert_eq!(held_now.len(), 1, "the new plan is held in its place");
}

#[tokio::test]
async fn removals_held_over_several_event_runs_are_approved_at_once() {
    let (worker, tyk, store, _dir) = worker(people(&emails(10))).await;
    worker.run_once(Trigger::Full).await.expect("initial");
    // Six people leave; their events come in two batches of three, each
    // over the threshold of 2.
    *worker_source(&worker).desired.lock().expect("lock") = people(&emails(10)[6..]);
    let mut held = Vec::new();
    for batch in emails(6).chunks(3) {
        for email in batch {
            append_event(&store, Some(email)).await;
        }
        let status = worker.run_once(Trigger::Events).await.expect("run");
        assert_eq!(status.outcome, Outcome::Held);
        held.push(status.run_id.expect("held run id"));
    }
    assert_eq!(active_emails(&tyk).len(), 10, "nothing applied while held");
    assert_eq!(outbox_depth(&store).await, 0, "the held run carries them");

    // One held run, carrying every pending removal: approving it applies
    // them all (not only the last batch's).
    let mut conn = store.pool().acquire().await.expect("conn");
    let pending = sync_runs::list_runs(&mut conn, Some(RunStatus::Held), 10)
        .await
        .expect("list");
    drop(conn);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, held[1]);
    assert_eq!(pending[0].people_removed, 6);
    let applied = worker
        .approve_run(held[1], "cli:approve")
        .await
        .expect("approve");
    assert_eq!(applied.outcome, Outcome::Applied);
    assert_eq!(active_emails(&tyk), emails(10)[6..].to_vec());
}

fn worker_source(worker: &Worker) -> &TestSource {
    worker.source()
}

/// 1,000 people into a Tyk that answers 20% of writes with 500/429, loses
/// some creation answers and adds latency, while the worker is killed
/// (its task aborted) at random points; restarting converges with every
/// person present exactly once and owned, and nothing left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_tyk_and_random_crashes_still_converge_without_duplicates() {
    let everyone = emails(1_000);
    let (worker, tyk, store, _dir) = worker(people(&everyone)).await;
    {
        let mut state = tyk.lock();
        state.random_fault_rate = 0.2;
        state.random_lost_answer_rate = 0.05;
        state.max_latency = Duration::from_millis(2);
    }
    let worker = Arc::new(worker);
    for _ in 0..8 {
        let running = Arc::clone(&worker);
        let task = tokio::spawn(async move { running.run_once(Trigger::Full).await });
        let after = rand::Rng::gen_range(&mut rand::thread_rng(), 5..120);
        tokio::time::sleep(Duration::from_millis(after)).await;
        task.abort();
        let _ = task.await;
    }
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 20, "did not converge");
        let status = worker.run_once(Trigger::Full).await.expect("run");
        if status.outcome == Outcome::Applied && status.tyk_writes == 0 && status.run_id.is_none() {
            break;
        }
    }
    let tyk_emails: Vec<String> = {
        let state = tyk.lock();
        let mut all: Vec<_> = state.users.values().map(|u| u.email.clone()).collect();
        all.sort();
        all
    };
    let mut expected = everyone.clone();
    expected.sort();
    assert_eq!(tyk_emails, expected, "each person exactly once");
    let mut conn = store.pool().acquire().await.expect("conn");
    let ownership = crate::store::sync_state::load_ownership(&mut conn)
        .await
        .expect("ownership");
    assert_eq!(ownership.users.len(), 1_000, "every Tyk user is ours");
    assert!(
        ownership
            .users
            .keys()
            .all(|id| tyk.lock().users.contains_key(id))
    );
    assert!(ownership.pending_creates.is_empty());
    assert!(
        ownership.users.values().all(|m| !m.adopted),
        "we created them all"
    );
    assert_eq!(tyk.lock().groups.len(), 1, "one group, not one per crash");
}

/// The worker's run loop in a task, leading, until stopped.
struct RunningLoop {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningLoop {
    fn spawn(worker: &Arc<Worker>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = Arc::clone(worker);
        let task = tokio::spawn(async move {
            running
                .run(
                    async {
                        let _ = stopped.await;
                    },
                    || true,
                )
                .await
        });
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.send(()).expect("loop alive");
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("loop stops on shutdown")
            .expect("no panic");
    }
}

/// The long-running loop is spawnable, applies an event as soon as it is
/// signalled, and stops on shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_loop_applies_signalled_events_and_stops_on_shutdown() {
    let (worker, tyk, store, _dir) = worker(people(&emails(2))).await;
    let worker = Arc::new(worker);
    let waker = worker.waker();
    let running = RunningLoop::spawn(&worker);
    // The first full reconcile runs at start; wait for it, then remove a
    // person from Tyk by hand and signal an event for them.
    wait_for(|| active_emails(&tyk).len() == 2).await;
    tyk.lock().users.retain(|_, u| u.email != "p01@x.io");
    append_event(&store, Some("p01@x.io")).await;
    waker.notify_one();
    wait_for(|| active_emails(&tyk).len() == 2).await;
    wait_for_async(|| async { outbox_depth(&store).await == 0 }).await;
    running.stop().await;
}

/// A claim beside a run in flight leaves that run's people for later and
/// takes nothing from the first event naming nobody on (whose people are
/// found only once claimed); once no run is in flight, a claim takes all.
#[tokio::test]
async fn a_claim_beside_a_run_in_flight_leaves_its_people_and_stops_at_a_group_event() {
    let (worker, tyk, store, _dir) = worker(people(&emails(4))).await;
    append_event(&store, Some("p00@x.io")).await;
    append_event(&store, Some("P01@x.io")).await;
    append_event(&store, None).await;
    append_event(&store, Some("p02@x.io")).await;
    let p00 = ActualScope::People(["p00@x.io".to_string()].into());
    let in_hand = worker.in_flight.register(&p00);

    let beside = worker.run_once(Trigger::Events).await.expect("run");
    assert_eq!(beside.outcome, Outcome::Applied);
    assert_eq!(active_emails(&tyk), vec!["p01@x.io"]);
    assert_eq!(outbox_depth(&store).await, 3);
    let again = worker.run_once(Trigger::Events).await.expect("run");
    assert_eq!(
        again.outcome,
        Outcome::Idle,
        "p00 is held, then a group event"
    );

    drop(in_hand);
    let alone = worker.run_once(Trigger::Events).await.expect("run");
    assert_eq!(alone.outcome, Outcome::Applied);
    assert_eq!(
        active_emails(&tyk),
        emails(4),
        "the event naming nobody plans everyone"
    );
    assert_eq!(outbox_depth(&store).await, 0);
    assert!(worker.in_flight.is_empty());
}

/// A run planning everyone lets no claim beside it.
#[tokio::test]
async fn nothing_is_claimed_beside_a_run_planning_everyone() {
    let (worker, tyk, store, _dir) = worker(people(&emails(2))).await;
    append_event(&store, Some("p00@x.io")).await;
    let everyone = worker.in_flight.register(&ActualScope::Everyone);
    let beside = worker.run_once(Trigger::Events).await.expect("run");
    assert_eq!(beside.outcome, Outcome::Idle);
    assert_eq!(outbox_depth(&store).await, 1);
    drop(everyone);
    worker.run_once(Trigger::Events).await.expect("run");
    assert_eq!(active_emails(&tyk), vec!["p00@x.io"]);
}

/// With more events waiting than a batch holds, the loop runs the next
/// batch beside the one applying, never over the same person: each person
/// is created once though several of them have events in many batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_loop_runs_the_next_batch_beside_the_one_applying() {
    let everyone = emails(12);
    let (worker, tyk, store, _dir) = worker(DesiredState::default()).await;
    let worker = Arc::new(SyncWorker::new(
        store.clone(),
        Arc::clone(&tyk),
        TestSource {
            desired: Mutex::new(DesiredState::default()),
            tyk: Arc::clone(&tyk),
            tyk_down: Default::default(),
        },
        SyncConfig {
            event_batch: 2,
            ..worker.config().clone()
        },
    ));
    let running = RunningLoop::spawn(&worker);
    // The first full reconcile (at start) finds nothing to do.
    wait_for(|| worker.metrics().last_success().is_some()).await;
    *worker.source().desired.lock().expect("lock") = people(&everyone);
    tyk.lock().max_latency = Duration::from_millis(100);
    for (n, email) in everyone.iter().enumerate() {
        append_event(&store, Some(email)).await;
        // Some people have events in later batches too.
        if n % 3 == 0 {
            append_event(&store, Some(&everyone[0])).await;
        }
    }
    worker.waker().notify_one();
    for _ in 0..30 {
        if active_emails(&tyk) == everyone && outbox_depth(&store).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(active_emails(&tyk), everyone);
    assert_eq!(outbox_depth(&store).await, 0);
    let creates = tyk
        .lock()
        .writes
        .iter()
        .filter(|w| w.starts_with("create_user"))
        .count();
    assert_eq!(creates, everyone.len(), "each person created once");
    assert_eq!(
        worker.in_flight.peak(),
        (2, 0),
        "(most runs at once, shared people)"
    );
    running.stop().await;
}

/// A full reconcile plans from the desired state of when it started: a
/// group an event run created after that (its rule added meanwhile) is
/// listed and owned, yet not desired in that view, and must not be deleted;
/// a group created before the reconcile started is the reconcile's to
/// delete.
#[tokio::test]
async fn a_full_reconcile_leaves_a_group_created_after_it_started() {
    use crate::sync::step::{Plan, PlanStep};
    let (worker, _tyk, _store, _dir) = worker(DesiredState::default()).await;
    let delete = |id: &str, name: &str| PlanStep::DeleteGroup {
        org_id: ORG.into(),
        group_id: id.into(),
        name: name.into(),
    };
    worker.groups_created.lock().expect("lock").insert(
        (ORG.into(), "old".into()),
        ("g-old".into(), std::time::Instant::now()),
    );
    let started = std::time::Instant::now();
    worker.groups_created.lock().expect("lock").insert(
        (ORG.into(), "ops".into()),
        ("g-new".into(), std::time::Instant::now()),
    );
    let mut plan = Plan {
        steps: vec![delete("g-new", "ops"), delete("g-old", "old")],
        ..Plan::default()
    };
    worker.leave_to_event_runs(&mut plan, started);
    assert_eq!(plan.steps, vec![delete("g-old", "old")]);
}

/// The lease time of the only leased event (when it is retried).
async fn retry_time(store: &Store) -> i64 {
    let mut conn = store.pool().acquire().await.expect("conn");
    sqlx::query_scalar("SELECT until_at FROM sync_event_leases")
        .fetch_one(&mut *conn)
        .await
        .expect("one lease")
}

/// A run that cannot read Tyk gives its events back to be retried soon
/// (not after `sync.retry_max_delay`), later each time it fails again,
/// and applies them once Tyk answers.
#[tokio::test]
async fn events_of_a_run_that_cannot_read_tyk_are_retried_with_backoff() {
    let (worker, tyk, store, _dir) = worker(DesiredState::default()).await;
    let worker = SyncWorker::new(
        store.clone(),
        Arc::clone(&tyk),
        TestSource {
            desired: Mutex::new(people(&emails(1))),
            tyk: Arc::clone(&tyk),
            tyk_down: true.into(),
        },
        SyncConfig {
            retry_base_delay: Duration::from_millis(40),
            retry_max_delay: Duration::from_secs(60),
            ..worker.config().clone()
        },
    );
    append_event(&store, Some("p00@x.io")).await;
    for attempt in 1..=2u32 {
        let before = crate::domain::Timestamp::now().0;
        let failed = worker.run_once(Trigger::Events).await;
        assert!(failed.is_err(), "attempt {attempt}: Tyk is down");
        let wait = retry_time(&store).await - before;
        // Jittered up to the base × 2^attempts, at least the base.
        let ceiling = 40 * 2i64.pow(attempt) + 500;
        assert!(
            (40..=ceiling).contains(&wait),
            "attempt {attempt}: retried after {wait} ms"
        );
        assert_eq!(outbox_depth(&store).await, 1, "nothing is dropped");
        assert_eq!(
            worker.run_once(Trigger::Events).await.expect("run").outcome,
            Outcome::Idle,
            "not before its retry time"
        );
        tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0) + 20)).await;
    }
    worker
        .source()
        .tyk_down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let status = worker.run_once(Trigger::Events).await.expect("run");
    assert_eq!(status.outcome, Outcome::Applied);
    assert_eq!(active_emails(&tyk), vec!["p00@x.io"]);
    assert_eq!(outbox_depth(&store).await, 0);
}

async fn wait_for(mut ready: impl FnMut() -> bool) {
    for _ in 0..500 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 5s");
}

async fn wait_for_async<F: std::future::Future<Output = bool>>(mut ready: impl FnMut() -> F) {
    for _ in 0..500 {
        if ready().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 5s");
}

/// Figures, not assertions: `cargo test --release --lib bench_10k -- --ignored --nocapture`.
/// The stand-in benchmark over real HTTP is the lead's; this one isolates
/// the sync layer (planner, applier, SQLite bookkeeping).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn bench_10k_users_into_the_fake() {
    let everyone = emails(10_000);
    let (worker, tyk, _store, _dir) = worker(people(&everyone)).await;
    let started = std::time::Instant::now();
    let first = worker.run_once(Trigger::Full).await.expect("run");
    let initial = started.elapsed();
    let started = std::time::Instant::now();
    let second = worker.run_once(Trigger::Full).await.expect("run");
    let noop = started.elapsed();
    let started = std::time::Instant::now();
    let (plan, _) = worker.preview().await.expect("preview");
    let planning = started.elapsed();
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    println!(
        "10k initial sync: {initial:?}, {} Tyk writes for {} changed users ({:.3} per user), {} lookups; \
         no-change run: {noop:?}, {} writes; load + plan 10k vs 10k: {planning:?} ({} steps); {peak}",
        first.tyk_writes,
        first.summary.people_changed,
        first.tyk_writes as f64 / first.summary.people_changed.max(1) as f64,
        tyk.lock().reads,
        second.tyk_writes,
        plan.steps.len(),
    );
}

/// The admin endpoints over real HTTP on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_held_runs_approves_them_and_shows_the_audit_log() {
    let (worker, tyk, _store, _dir) = worker(people(&emails(10))).await;
    worker.run_once(Trigger::Full).await.expect("initial");
    *worker_source(&worker).desired.lock().expect("lock") = people(&emails(4));
    let worker = Arc::new(worker);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = crate::sync::admin::router(Arc::clone(&worker));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();

    let plan: serde_json::Value = http
        .get(format!("{base}/sync/plan"))
        .send()
        .await
        .expect("plan")
        .json()
        .await
        .expect("json");
    assert_eq!(plan["guard"]["verdict"], "hold");
    assert_eq!(plan["summary"]["people_removed"], 6);

    let held = http
        .post(format!("{base}/sync/run"))
        .send()
        .await
        .expect("run");
    assert_eq!(held.status(), 200);
    let held: serde_json::Value = held.json().await.expect("json");
    assert_eq!(held["outcome"], "held");
    let runs: serde_json::Value = http
        .get(format!("{base}/sync/runs?status=held"))
        .send()
        .await
        .expect("runs")
        .json()
        .await
        .expect("json");
    let id = runs["runs"][0]["id"]
        .as_str()
        .expect("held run id")
        .to_string();
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1));

    let approved = http
        .post(format!("{base}/sync/runs/{id}/approve"))
        .send()
        .await
        .expect("approve");
    assert_eq!(approved.status(), 200);
    assert_eq!(active_emails(&tyk), emails(4));
    let again = http
        .post(format!("{base}/sync/runs/{id}/approve"))
        .send()
        .await
        .expect("approve");
    assert_eq!(again.status(), 409);
    let missing = http
        .post(format!("{base}/sync/runs/{}/approve", uuid::Uuid::new_v4()))
        .send()
        .await
        .expect("approve");
    assert_eq!(missing.status(), 404);
    let bad = http
        .get(format!("{base}/sync/runs?status=bogus"))
        .send()
        .await
        .expect("runs");
    assert_eq!(bad.status(), 400);

    let audit: serde_json::Value = http
        .get(format!("{base}/sync/audit?email=p09@x.io&limit=1"))
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    // Newest first: the access-key reset that follows the deactivation.
    assert_eq!(audit["entries"][0]["step_kind"], "reset_access_key");
    assert_eq!(audit["entries"][0]["actor"], "api:approve");
    let next = audit["next_before_id"].as_i64().expect("a next page");
    let older: serde_json::Value = http
        .get(format!("{base}/sync/audit?email=p09@x.io&before_id={next}"))
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    assert_eq!(older["entries"][0]["step_kind"], "deactivate");
    assert_eq!(older["entries"][1]["step_kind"], "create_user");
}

#[tokio::test]
async fn cli_hooks_print_the_plan_and_exit_non_zero_unless_applied() {
    let (worker, _tyk, store, _dir) = worker(people(&emails(10))).await;
    let text = crate::sync::cli::plan_command(&worker, false)
        .await
        .expect("plan");
    assert!(
        text.contains("create_user") && text.contains("guard: proceed"),
        "{text}"
    );
    let json = crate::sync::cli::plan_command(&worker, true)
        .await
        .expect("plan");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(parsed["summary"]["tyk_writes"], 11);

    let applied = crate::sync::cli::sync_once_command(&worker)
        .await
        .expect("sync");
    assert_eq!(applied.exit_code(), 0, "{}", applied.describe());
    *worker_source(&worker).desired.lock().expect("lock") = people(&emails(2));
    let held = crate::sync::cli::sync_once_command(&worker)
        .await
        .expect("sync");
    assert_eq!(held.exit_code(), 2, "{}", held.describe());

    let runs = crate::sync::cli::runs_list_command(&store, Some(RunStatus::Held), 10)
        .await
        .expect("runs");
    assert!(runs.contains("held"), "{runs}");
    let id = held.run_id.expect("held id");
    let approved = crate::sync::cli::runs_approve_command(&worker, id)
        .await
        .expect("approve");
    assert_eq!(approved.exit_code(), 0);
    let filter = crate::store::sync_audit::AuditFilter {
        limit: 3,
        ..Default::default()
    };
    let audit = crate::sync::cli::audit_command(&store, &filter, false)
        .await
        .expect("audit");
    assert!(
        audit.contains("cli:approve") && audit.contains("reset_access_key"),
        "{audit}"
    );
}

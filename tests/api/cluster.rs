//! Leader election on a real PostgreSQL: one leader at a time, and a
//! bounded takeover when the leader's session ends.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tyk_idsync::cluster::{Leadership, campaign};
use tyk_idsync::tasks::{Shutdown, ShutdownTrigger, shutdown_pair};

use crate::support::postgres::fresh_database;

const RETRY: Duration = Duration::from_millis(200);

fn start(url: &str) -> (Leadership, ShutdownTrigger, tokio::task::JoinHandle<()>) {
    let leadership = Leadership::follower();
    let (trigger, shutdown): (ShutdownTrigger, Shutdown) = shutdown_pair();
    let handle = tokio::spawn(campaign(
        url.to_string(),
        leadership.clone(),
        RETRY,
        shutdown,
    ));
    (leadership, trigger, handle)
}

async fn wait_until(what: &str, bound: Duration, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < bound,
            "{what} did not happen within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn exactly_one_replica_leads_and_another_takes_over_when_it_stops() {
    let url = fresh_database().await;
    let replicas: Vec<_> = (0..3).map(|_| start(&url)).collect();
    wait_until("a leader is elected", Duration::from_secs(10), || {
        replicas.iter().any(|(l, _, _)| l.is_leader())
    })
    .await;
    // Stable: still exactly one after several rounds.
    tokio::time::sleep(RETRY * 5).await;
    let leaders: Vec<usize> = (0..3).filter(|i| replicas[*i].0.is_leader()).collect();
    assert_eq!(leaders.len(), 1, "leaders: {leaders:?}");

    let old = leaders[0];
    replicas[old].1.trigger();
    let took = wait_until("a follower takes over", Duration::from_secs(5), || {
        (0..3).any(|i| i != old && replicas[i].0.is_leader())
    })
    .await;
    assert!(!replicas[old].0.is_leader());
    assert!(took < Duration::from_secs(2), "takeover took {took:?}");
    for (_, trigger, _) in &replicas {
        trigger.trigger();
    }
}

#[tokio::test]
async fn a_leader_whose_session_is_killed_steps_down_and_leadership_moves() {
    let url = fresh_database().await;
    let (a, a_stop, _) = start(&url);
    wait_until("a leads", Duration::from_secs(10), || a.is_leader()).await;
    let (b, b_stop, _) = start(&url);
    tokio::time::sleep(RETRY * 3).await;
    assert!(!b.is_leader(), "only one leader");

    // Kill every other session on this database, as a network cut would.
    let mut admin = PgConnection::connect(&url).await.expect("admin");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut admin)
    .await
    .expect("terminate");
    wait_until("exactly one leader again", Duration::from_secs(5), || {
        a.is_leader() ^ b.is_leader()
    })
    .await;
    a_stop.trigger();
    b_stop.trigger();
}

#[tokio::test]
async fn an_event_committed_on_postgres_wakes_the_listener_and_a_rolled_back_one_does_not() {
    use std::sync::Arc;
    use tyk_idsync::domain::{EventKind, NewIdentityEvent, SourceName};
    use tyk_idsync::store::{Store, StoreOptions, events};

    let url = fresh_database().await;
    let store = Store::connect(&StoreOptions::new(url.clone()))
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let wakeup = Arc::new(tokio::sync::Notify::new());
    let (trigger, shutdown) = shutdown_pair();
    tokio::spawn(tyk_idsync::cluster::listen_for_outbox(
        url,
        wakeup.clone(),
        shutdown,
    ));
    // The first wake-up comes from connecting.
    tokio::time::timeout(Duration::from_secs(10), wakeup.notified())
        .await
        .expect("listener connected");

    let event = NewIdentityEvent {
        source: SourceName::new("okta"),
        kind: EventKind::UserCreated,
        subject_id: None,
        email: None,
        detail: serde_json::json!({}),
    };
    let mut tx = store.begin().await.expect("begin");
    events::append(&mut tx, &event).await.expect("append");
    tx.rollback().await.expect("rollback");
    let woke = tokio::time::timeout(Duration::from_millis(500), wakeup.notified()).await;
    assert!(
        woke.is_err(),
        "a rolled-back event must not wake the worker"
    );

    let mut tx = store.begin().await.expect("begin");
    events::append(&mut tx, &event).await.expect("append");
    tx.commit().await.expect("commit");
    tokio::time::timeout(Duration::from_secs(5), wakeup.notified())
        .await
        .expect("a committed event wakes the worker");
    trigger.trigger();
}

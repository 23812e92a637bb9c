//! Fencing across a failover, with three real replicas on PostgreSQL: the
//! leader is stopped (SIGTERM, SIGKILL) or loses its session (its lock's
//! backend terminated, or every backend of the database), mid-sync. From
//! the arrivals at the replicas' proxies: no write of the old leader
//! arrives after the new leader's first write, none later than one lease
//! (`leader_check_interval`) plus the takeover margin after the failure,
//! and the sync still converges with one Tyk user per person.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tyk_idsync::cluster::TAKEOVER_MARGIN;

use crate::replicas::{Arrival, Cluster, DOMAIN, REPLICAS, emails, poll};
use crate::support::stack::scim_user;

/// `database.leader_check_interval` in the cluster's config.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
const USERS: usize = 150;
const GROUP: &str = "Fenced Team";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Sigterm,
    Sigkill,
    /// `pg_terminate_backend` of the leader's lock session only.
    LockBackendTerminated,
    /// `pg_terminate_backend` of every session of the database.
    EveryBackendTerminated,
}

/// Terminates PostgreSQL sessions of the cluster's database; returns how
/// many. `application_name` narrows it to one session kind of one replica.
async fn terminate_backends(db: &str, application_name: Option<&str>) -> usize {
    let mut admin = PgConnection::connect(db).await.expect("admin connection");
    let terminated: Vec<bool> = match application_name {
        Some(name) => sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
        )
        .bind(name)
        .fetch_all(&mut admin)
        .await
        .expect("terminate"),
        None => sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut admin)
        .await
        .expect("terminate"),
    };
    terminated.into_iter().filter(|t| *t).count()
}

/// Sessions of this database by `application_name`.
async fn session_names(db: &str) -> Vec<String> {
    let mut admin = PgConnection::connect(db).await.expect("admin connection");
    sqlx::query_scalar(
        "SELECT COALESCE(application_name, '') FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .expect("sessions")
}

fn writes(cluster: &Cluster) -> Vec<Arrival> {
    let mut writes: Vec<Arrival> = cluster
        .arrivals
        .lock()
        .expect("arrivals")
        .iter()
        .filter(|a| a.is_write())
        .cloned()
        .collect();
    writes.sort_by_key(|a| a.at);
    writes
}

async fn failover(failure: Failure) {
    let started = Instant::now();
    // 50 Tyk writes per second: the creations take about 3 s, wide enough
    // to fail the leader in the middle of them.
    let mut cluster = Cluster::start(50).await;
    let all: Vec<usize> = (0..REPLICAS).collect();
    cluster.single_leader(&all, Duration::from_secs(15)).await;

    let ids = cluster.create_users("fenced", USERS).await;
    let (status, group) = cluster
        .scim(
            0,
            Method::POST,
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Fenced",
                "members": ids.iter().map(|id| json!({"value": id})).collect::<Vec<_>>(),
            }),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    cluster.add_rule(1, GROUP, "okta:Fenced").await;
    let c = &cluster;
    poll(
        "the leader is syncing",
        Duration::from_secs(30),
        move || async move { (c.tyk_users_by_email().len() >= 20).then_some(()) },
    )
    .await;
    let (old, _) = cluster.single_leader(&all, Duration::from_secs(5)).await;
    let failed_at = Instant::now();
    match failure {
        Failure::Sigterm => cluster.replicas[old].terminate().await,
        Failure::Sigkill => cluster.replicas[old].kill(),
        Failure::LockBackendTerminated => {
            let name = format!("tyk-idsync/leader-lock/{}", cluster.replicas[old].listen());
            assert_eq!(
                terminate_backends(&cluster.db, Some(&name)).await,
                1,
                "one lock session named {name}"
            );
        }
        Failure::EveryBackendTerminated => {
            assert!(terminate_backends(&cluster.db, None).await >= REPLICAS);
            // SCIM right after: every replica's pooled sessions are dead;
            // the handlers retry on fresh ones, never answer 500.
            let statuses: Vec<u16> = futures::stream::iter(0..30)
                .map(|i| {
                    let c = &cluster;
                    async move {
                        let name = format!("late{i:03}");
                        c.scim(
                            i % REPLICAS,
                            Method::POST,
                            "/Users",
                            scim_user(&name, &format!("{name}@{DOMAIN}")),
                        )
                        .await
                        .0
                    }
                })
                .buffer_unordered(30)
                .collect()
                .await;
            assert!(
                statuses.iter().all(|s| *s == 201 || *s == 503),
                "SCIM answers right after the termination: {statuses:?}"
            );
            println!(
                "SCIM after every backend was terminated: {} of 30 created, {} answered 503",
                statuses.iter().filter(|s| **s == 201).count(),
                statuses.iter().filter(|s| **s == 503).count()
            );
        }
    }
    let at_failure = cluster.tyk_users_by_email().len();
    assert!(
        at_failure < USERS,
        "the sync finished before the failure ({at_failure} users); the test proves nothing"
    );

    let wanted = &emails("fenced", USERS);
    let c = &cluster;
    let (_, converged) = poll(
        "every user is in the Tyk group",
        Duration::from_secs(60),
        move || async move { c.all_in_group(wanted, GROUP).then_some(()) },
    )
    .await;
    let running: Vec<usize> = match failure {
        Failure::Sigterm | Failure::Sigkill => all.iter().copied().filter(|&i| i != old).collect(),
        _ => all.clone(),
    };
    let (new, _) = cluster
        .single_leader(&running, Duration::from_secs(15))
        .await;
    poll(
        "the outbox is drained",
        Duration::from_secs(30),
        move || async move { (c.outbox_depth(new).await == Some(0)).then_some(()) },
    )
    .await;

    // Nothing lost or duplicated.
    let users = cluster.tyk_users_by_email();
    assert_eq!(users.len(), USERS);
    assert!(
        users.values().all(|us| us.len() == 1),
        "one user per e-mail"
    );
    assert_eq!(cluster.tyk_groups_named(GROUP).len(), 1, "one Tyk group");

    // The audit log: every person created, none "adopted"; no intent left
    // open, no lease left on a processed event.
    let mut db = PgConnection::connect(&cluster.db).await.expect("db");
    let created: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT email) FROM sync_audit \
         WHERE step_kind = 'create_user' AND result = 'ok' AND email LIKE 'fenced%'",
    )
    .fetch_one(&mut db)
    .await
    .expect("audit");
    assert_eq!(
        created, USERS as i64,
        "an ok create_user audit row per person"
    );
    let adopted: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sync_audit WHERE step_kind = 'adopt_user'")
            .fetch_one(&mut db)
            .await
            .expect("audit");
    assert_eq!(adopted, 0, "the bridge's own creations are not adoptions");
    let open_intents: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sync_audit_intents")
        .fetch_one(&mut db)
        .await
        .expect("intents");
    assert_eq!(open_intents, 0, "every intent resolved or closed");
    let stale_leases: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sync_event_leases l JOIN identity_events e ON e.seq = l.seq \
         WHERE e.processed_at IS NOT NULL",
    )
    .fetch_one(&mut db)
    .await
    .expect("leases");
    assert_eq!(stale_leases, 0, "no lease on a processed event");
    let resolved: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sync_audit WHERE message LIKE 'resolved after a run abandoned%'",
    )
    .fetch_one(&mut db)
    .await
    .expect("audit");

    let writes = writes(&cluster);
    let bound = CHECK_INTERVAL + TAKEOVER_MARGIN;
    let old_late: Vec<Duration> = writes
        .iter()
        .filter(|w| w.replica == old && w.at > failed_at + bound)
        .map(|w| w.at - failed_at)
        .collect();
    // A replica that lost its session and won the lock again is a new
    // leader too: it waits out the lease before writing, so it is silent
    // in the window after the bound until then.
    let old_after_bound: Vec<&Duration> = old_late
        .iter()
        .filter(|d| new != old || **d < CHECK_INTERVAL * 2 + TAKEOVER_MARGIN)
        .collect();
    assert!(
        old_after_bound.is_empty(),
        "replica {old} wrote {old_after_bound:?} after the {failure:?}, past the bound {bound:?}"
    );
    // (A replica that won the lock back writes again only after its wait.)
    let new_first = writes
        .iter()
        .find(|w| w.replica == new && w.at > failed_at && (new != old || w.at > failed_at + bound))
        .map(|w| w.at)
        .expect("the new leader wrote");
    if new != old {
        let overlapping: Vec<Duration> = writes
            .iter()
            .filter(|w| w.replica == old && w.at >= new_first)
            .map(|w| w.at - new_first)
            .collect();
        assert!(
            overlapping.is_empty(),
            "replica {old} wrote {overlapping:?} after replica {new}'s first write"
        );
    }
    // Only the two leaders wrote, the old one before the new one.
    assert!(
        writes.iter().all(|w| w.replica == old || w.replica == new),
        "a third replica wrote"
    );
    let old_last = writes
        .iter()
        .filter(|w| w.replica == old && w.at < new_first)
        .map(|w| w.at)
        .max()
        .expect("the old leader wrote");
    println!(
        "fencing {failure:?}: leader {old} failed with {at_failure}/{USERS} users in Tyk; \
         its last write {:?} after the failure; replica {new} first wrote {:?} after it \
         (gap {:?}); converged {converged:?} after the failure; {resolved} abandoned writes \
         audited by the new leader; test took {:?}",
        old_last.saturating_duration_since(failed_at),
        new_first - failed_at,
        new_first - old_last,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sigterm_the_old_leader_writes_nothing_once_the_new_one_writes() {
    failover(Failure::Sigterm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sigkill_the_old_leader_writes_nothing_once_the_new_one_writes() {
    failover(Failure::Sigkill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_lock_session_is_terminated_stops_writing_within_its_lease() {
    failover(Failure::LockBackendTerminated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_every_backend_is_terminated_no_two_replicas_write_at_once() {
    failover(Failure::EveryBackendTerminated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replica_session_is_named_by_role_and_listen_address() {
    let cluster = Cluster::start(0).await;
    let all: Vec<usize> = (0..REPLICAS).collect();
    cluster.single_leader(&all, Duration::from_secs(15)).await;
    let names = session_names(&cluster.db).await;
    for replica in &cluster.replicas {
        for role in ["pool", "leader-lock", "outbox-listener"] {
            let name = format!("tyk-idsync/{role}/{}", replica.listen());
            assert!(names.contains(&name), "no session {name} in {names:?}");
        }
    }
    assert!(
        names.iter().all(|n| n.starts_with("tyk-idsync/")),
        "every session is named: {names:?}"
    );
}

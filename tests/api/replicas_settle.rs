//! Settling outbox events is atomic (processed and unleased together), and
//! a new leader removes leases left on processed events — on SQLite and
//! PostgreSQL.

use pretty_assertions::assert_eq;
use serde_json::json;
use sqlx::Row;
use tyk_idsync::domain::{EventKind, NewIdentityEvent, SourceName, Timestamp};
use tyk_idsync::store::{Backend, Store, events, sync_outbox};

use crate::both_backends;
use crate::support::{Db, fresh_store};

async fn append(store: &Store, n: usize) -> Vec<i64> {
    let mut tx = store.begin().await.expect("begin");
    let mut seqs = vec![];
    for i in 0..n {
        let event = NewIdentityEvent {
            source: SourceName::new("okta"),
            kind: EventKind::UserUpdated,
            subject_id: None,
            email: Some(format!("p{i}@x.io")),
            detail: json!({}),
        };
        seqs.push(events::append(&mut tx, &event).await.expect("append"));
    }
    tx.commit().await.expect("commit");
    seqs
}

async fn claim_all(store: &Store, holder: &str) -> Vec<i64> {
    let now = Timestamp::now();
    let mut tx = store.begin_write().await.expect("begin");
    let claimed = sync_outbox::claim(
        &mut tx,
        store.backend(),
        holder,
        1000,
        now,
        Timestamp(now.0 + 60_000),
    )
    .await
    .expect("claim");
    tx.commit().await.expect("commit");
    claimed.into_iter().map(|e| e.seq).collect()
}

/// (unprocessed events, lease rows).
async fn counts(store: &Store) -> (i64, i64) {
    let mut conn = store.pool().acquire().await.expect("conn");
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM identity_events WHERE processed_at IS NULL) AS pending, \
         (SELECT COUNT(*) FROM sync_event_leases) AS leases",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("counts");
    (row.get("pending"), row.get("leases"))
}

/// Makes every lease deletion fail, as a crash or a lost connection
/// between the two halves of a settlement would.
async fn refuse_lease_deletes(store: &Store) {
    let mut conn = store.pool().acquire().await.expect("conn");
    let statements: &[&str] = match store.backend() {
        Backend::Sqlite => &[
            "CREATE TRIGGER no_unlease BEFORE DELETE ON sync_event_leases \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ],
        Backend::Postgres => &[
            "CREATE FUNCTION refuse_unlease() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            "CREATE TRIGGER no_unlease BEFORE DELETE ON sync_event_leases \
             FOR EACH ROW EXECUTE FUNCTION refuse_unlease()",
        ],
    };
    for statement in statements {
        sqlx::query(statement)
            .execute(&mut *conn)
            .await
            .expect("trigger");
    }
}

async fn a_settlement_that_fails_halfway_leaves_the_events_pending(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let seqs = append(&store, 3).await;
    assert_eq!(claim_all(&store, "w1").await, seqs);
    refuse_lease_deletes(&store).await;

    let mut tx = store.begin_write().await.expect("begin");
    let failed = sync_outbox::complete(&mut tx, &seqs).await;
    assert!(failed.is_err(), "the lease deletion fails");
    drop(tx);
    // Neither half happened: the events are still to do (and leased, so
    // their lease expiry brings them back), none is processed and leased.
    assert_eq!(counts(&store).await, (3, 3));
}
both_backends!(
    a_settlement_that_fails_halfway_leaves_the_events_pending_on,
    a_settlement_that_fails_halfway_leaves_the_events_pending
);

async fn settling_marks_processed_and_unleases_together(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    // More than one statement's worth of events.
    let seqs = append(&store, 620).await;
    assert_eq!(claim_all(&store, "w1").await.len(), 620);
    let mut tx = store.begin_write().await.expect("begin");
    sync_outbox::complete(&mut tx, &seqs[..610])
        .await
        .expect("complete");
    tx.commit().await.expect("commit");
    assert_eq!(counts(&store).await, (10, 10));
}
both_backends!(
    settling_marks_processed_and_unleases_together_on,
    settling_marks_processed_and_unleases_together
);

async fn taking_over_removes_leases_left_on_processed_events(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let seqs = append(&store, 4).await;
    assert_eq!(claim_all(&store, "old-leader").await, seqs);
    // What the old, two-step settlement left after a kill: processed
    // events that keep their leases.
    let mut conn = store.pool().acquire().await.expect("conn");
    events::mark_processed(&mut conn, &seqs[..3])
        .await
        .expect("processed");
    assert_eq!(counts(&store).await, (1, 4));

    let freed = sync_outbox::release_all(&mut conn, Timestamp::now())
        .await
        .expect("take over");
    assert_eq!(freed, 1, "the pending event's lease is freed");
    drop(conn);
    assert_eq!(counts(&store).await, (1, 1), "stale leases are gone");
    assert_eq!(
        claim_all(&store, "new-leader").await,
        vec![seqs[3]],
        "the pending event is claimed again at once"
    );
    // A replica that lost the lead and won it back frees its own
    // abandoned claims too.
    let mut conn = store.pool().acquire().await.expect("conn");
    assert_eq!(
        sync_outbox::release_all(&mut conn, Timestamp::now())
            .await
            .expect("take over again"),
        1
    );
    drop(conn);
    assert_eq!(claim_all(&store, "new-leader").await, vec![seqs[3]]);
}
both_backends!(
    taking_over_removes_leases_left_on_processed_events_on,
    taking_over_removes_leases_left_on_processed_events
);

//! The sync worker's store: ownership records, runs, the audit log and
//! outbox leases, on SQLite and PostgreSQL.

use pretty_assertions::assert_eq;
use serde_json::json;
use tyk_idsync::domain::{EventKind, NewIdentityEvent, SourceName, Timestamp};
use tyk_idsync::store::sync_audit::{self, AuditFilter, NewAuditEntry};
use tyk_idsync::store::sync_runs::{self, NewSyncRun, RunKind, RunStatus};
use tyk_idsync::store::{Store, StoreError, events, sync_outbox, sync_state};
use tyk_idsync::sync::{ManagedGroup, ManagedUser};

use crate::both_backends;
use crate::support::{Db, fresh_store, stored_user};

fn managed(id: &str, email: &str) -> ManagedUser {
    ManagedUser {
        org_id: "org1".into(),
        tyk_user_id: id.into(),
        email: email.into(),
        managed_since: Timestamp(1_000),
        adopted: false,
        deactivated_at: None,
        access_key_reset_at: None,
    }
}

async fn managed_users_are_recorded_updated_and_forgotten(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    sync_state::record_user(&mut conn, &managed("u1", "Ada@Example.com"))
        .await
        .expect("record");
    let mut bob = managed("u2", "bob@example.com");
    bob.adopted = true;
    sync_state::record_user(&mut conn, &bob)
        .await
        .expect("record");
    sync_state::set_deactivated_at(&mut conn, "u2", Some(Timestamp(5_000)))
        .await
        .expect("deactivate");

    let found = sync_state::find_user_by_email(&mut conn, "org1", "ADA@example.com")
        .await
        .expect("find")
        .expect("ada is managed");
    assert_eq!(found, managed("u1", "ada@example.com"));
    let ownership = sync_state::load_ownership(&mut conn).await.expect("load");
    assert_eq!(ownership.users.len(), 2);
    assert_eq!(ownership.users["u2"].deactivated_at, Some(Timestamp(5_000)));
    assert!(ownership.users["u2"].adopted);

    // Recording the same e-mail under a new Tyk id replaces the stale row.
    sync_state::record_user(&mut conn, &managed("u3", "ada@example.com"))
        .await
        .expect("re-record");
    let ids: Vec<_> = sync_state::list_users(&mut conn)
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.tyk_user_id)
        .collect();
    assert_eq!(ids, vec!["u3", "u2"]);

    sync_state::forget_user(&mut conn, "u2")
        .await
        .expect("forget");
    assert_eq!(sync_state::count_users(&mut conn).await.expect("count"), 1);
}
both_backends!(
    managed_users_are_recorded_updated_and_forgotten_on,
    managed_users_are_recorded_updated_and_forgotten
);

async fn managed_groups_round_trip(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    let group = ManagedGroup {
        org_id: "org1".into(),
        tyk_group_id: "g1".into(),
        name: "dev".into(),
    };
    sync_state::record_group(&mut conn, &group, Timestamp(1))
        .await
        .expect("record");
    sync_state::record_group(&mut conn, &group, Timestamp(2))
        .await
        .expect("record twice is fine");
    assert_eq!(
        sync_state::list_groups(&mut conn).await.expect("list"),
        vec![group]
    );
    sync_state::forget_group(&mut conn, "g1")
        .await
        .expect("forget");
    assert!(
        sync_state::load_ownership(&mut conn)
            .await
            .expect("load")
            .groups
            .is_empty()
    );
}
both_backends!(managed_groups_round_trip_on, managed_groups_round_trip);

async fn pending_creations_survive_until_the_user_is_recorded(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    sync_state::begin_create(&mut conn, "org1", "Ada@Example.com", Timestamp(1))
        .await
        .expect("begin");
    sync_state::begin_create(&mut conn, "org1", "ada@example.com", Timestamp(2))
        .await
        .expect("begin again is fine");
    sync_state::begin_create(&mut conn, "org1", "bob@example.com", Timestamp(2))
        .await
        .expect("begin");
    let ownership = sync_state::load_ownership(&mut conn).await.expect("load");
    assert!(ownership.creation_pending("org1", "ada@example.com"));
    assert!(ownership.creation_pending("org1", "bob@example.com"));

    sync_state::record_user(&mut conn, &managed("u1", "ada@example.com"))
        .await
        .expect("record");
    // A stale pending record (a cancelled run wrote it late) is pruned.
    sync_state::begin_create(&mut conn, "org1", "ada@example.com", Timestamp(3))
        .await
        .expect("late begin");
    assert_eq!(
        sync_state::prune_pending_creates(&mut conn)
            .await
            .expect("prune"),
        1
    );
    sync_state::end_create(&mut conn, "org1", "bob@example.com")
        .await
        .expect("end");
    let ownership = sync_state::load_ownership(&mut conn).await.expect("load");
    assert!(ownership.pending_creates.is_empty(), "{ownership:?}");
}
both_backends!(
    pending_creations_survive_until_the_user_is_recorded_on,
    pending_creations_survive_until_the_user_is_recorded
);

fn held_run() -> NewSyncRun {
    NewSyncRun {
        kind: RunKind::Full,
        status: RunStatus::Held,
        event_seqs: vec![3, 4],
        steps_planned: 50,
        people_removed: 50,
        managed_users: 100,
        plan: Some(json!({"steps": [{"step": "deactivate"}]})),
        message: Some("would deactivate 50 of 100".into()),
    }
}

async fn a_held_run_is_approved_exactly_once(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    let id = sync_runs::create_run(&mut conn, &held_run())
        .await
        .expect("create");
    let held = sync_runs::list_runs(&mut conn, Some(RunStatus::Held), 10)
        .await
        .expect("list");
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].event_seqs, vec![3, 4]);
    assert_eq!(held[0].plan, held_run().plan);

    let approved = sync_runs::approve_run(&mut conn, id, "cli:approve")
        .await
        .expect("approve");
    assert_eq!(approved.status, RunStatus::Approved);
    assert_eq!(approved.approved_by.as_deref(), Some("cli:approve"));
    assert_eq!(approved.plan, held_run().plan);

    let again = sync_runs::approve_run(&mut conn, id, "cli:approve").await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    let missing = sync_runs::approve_run(&mut conn, uuid::Uuid::new_v4(), "x").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    sync_runs::finish_run(&mut conn, id, RunStatus::Applied, 50, 0, None)
        .await
        .expect("finish");
    let run = sync_runs::get_run(&mut conn, id)
        .await
        .expect("get")
        .expect("run");
    assert_eq!((run.status, run.steps_applied), (RunStatus::Applied, 50));
    assert!(run.finished_at.is_some());
    assert_eq!(run.message.as_deref(), Some("would deactivate 50 of 100"));
}
both_backends!(
    a_held_run_is_approved_exactly_once_on,
    a_held_run_is_approved_exactly_once
);

async fn a_newer_plan_supersedes_held_runs(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    let old = sync_runs::create_run(&mut conn, &held_run())
        .await
        .expect("create");
    assert_eq!(
        sync_runs::supersede_held_runs(&mut conn)
            .await
            .expect("supersede"),
        1
    );
    let run = sync_runs::get_run(&mut conn, old)
        .await
        .expect("get")
        .expect("run");
    assert_eq!(run.status, RunStatus::Superseded);
    assert!(sync_runs::approve_run(&mut conn, old, "x").await.is_err());
}
both_backends!(
    a_newer_plan_supersedes_held_runs_on,
    a_newer_plan_supersedes_held_runs
);

fn audit(email: &str, kind: &str, ok: bool) -> NewAuditEntry {
    NewAuditEntry {
        run_id: None,
        at: Timestamp(10_000),
        actor: "sync".into(),
        step_kind: kind.into(),
        org_id: "org1".into(),
        email: Some(email.into()),
        tyk_id: Some("u1".into()),
        before: Some(json!({"group_id": "g1"})),
        after: Some(json!({"group_id": "g2"})),
        event_seqs: vec![7],
        rule: Some("engineers".into()),
        ok,
        message: (!ok).then(|| "HTTP 500".to_string()),
    }
}

async fn the_audit_log_filters_and_pages_newest_first(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    let run = sync_runs::create_run(&mut conn, &held_run())
        .await
        .expect("run");
    let mut ids = vec![];
    for i in 0..5 {
        let mut entry = audit(&format!("p{i}@example.com"), "move_to_group", i != 3);
        entry.run_id = (i % 2 == 0).then_some(run);
        ids.push(sync_audit::append(&mut conn, &entry).await.expect("append"));
    }
    sync_audit::append(&mut conn, &audit("p0@example.com", "deactivate", true))
        .await
        .expect("append");

    let all = sync_audit::list(
        &mut conn,
        &AuditFilter {
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(all[2].entry, {
        let mut e = audit("p3@example.com", "move_to_group", false);
        e.run_id = None;
        e
    });

    let cases: &[(AuditFilter, usize)] = &[
        (
            AuditFilter {
                email: Some("P0@example.com".into()),
                limit: 10,
                ..Default::default()
            },
            2,
        ),
        (
            AuditFilter {
                run_id: Some(run),
                limit: 10,
                ..Default::default()
            },
            3,
        ),
        (
            AuditFilter {
                step_kind: Some("deactivate".into()),
                limit: 10,
                ..Default::default()
            },
            1,
        ),
        (
            AuditFilter {
                org_id: Some("other".into()),
                limit: 10,
                ..Default::default()
            },
            0,
        ),
        (
            AuditFilter {
                since: Some(Timestamp(10_001)),
                limit: 10,
                ..Default::default()
            },
            0,
        ),
        (
            AuditFilter {
                before_id: Some(ids[2]),
                limit: 10,
                ..Default::default()
            },
            2,
        ),
    ];
    for (filter, expected) in cases {
        let got = sync_audit::list(&mut conn, filter).await.expect("list");
        assert_eq!(got.len(), *expected, "{filter:?}");
    }
    let page = sync_audit::list(
        &mut conn,
        &AuditFilter {
            limit: 4,
            ..Default::default()
        },
    )
    .await
    .expect("page 1");
    let next = sync_audit::list(
        &mut conn,
        &AuditFilter {
            limit: 4,
            before_id: page.last().map(|e| e.id),
            ..Default::default()
        },
    )
    .await
    .expect("page 2");
    assert_eq!((page.len(), next.len()), (4, 2));
}
both_backends!(
    the_audit_log_filters_and_pages_newest_first_on,
    the_audit_log_filters_and_pages_newest_first
);

async fn append_events(store: &Store, emails: &[Option<&str>]) -> Vec<i64> {
    let mut tx = store.begin().await.expect("begin");
    let mut seqs = vec![];
    for email in emails {
        let event = NewIdentityEvent {
            source: SourceName::new("okta"),
            kind: EventKind::UserUpdated,
            subject_id: None,
            email: email.map(str::to_string),
            detail: json!({}),
        };
        seqs.push(events::append(&mut tx, &event).await.expect("append"));
    }
    tx.commit().await.expect("commit");
    seqs
}

async fn claim(store: &Store, holder: &str, now: i64) -> Vec<i64> {
    let mut tx = store.begin_write().await.expect("begin");
    let claimed = sync_outbox::claim(
        &mut tx,
        store.backend(),
        holder,
        10,
        Timestamp(now),
        Timestamp(now + 30_000),
    )
    .await
    .expect("claim");
    tx.commit().await.expect("commit");
    claimed.into_iter().map(|e| e.seq).collect()
}

async fn outbox_leases_give_at_least_once_delivery(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let seqs = append_events(&store, &[Some("a@x.io"), Some("b@x.io"), None]).await;
    let now = 1_000_000;

    assert_eq!(claim(&store, "w1", now).await, seqs);
    assert_eq!(
        claim(&store, "w2", now + 1).await,
        Vec::<i64>::new(),
        "leased events are not claimed twice"
    );

    let mut tx = store.begin_write().await.expect("begin");
    sync_outbox::complete(&mut tx, &seqs[..1])
        .await
        .expect("complete");
    sync_outbox::release(&mut tx, &seqs[1..2], Timestamp(now + 5_000))
        .await
        .expect("release");
    tx.commit().await.expect("commit");

    assert_eq!(claim(&store, "w2", now + 4_999).await, Vec::<i64>::new());
    assert_eq!(
        claim(&store, "w2", now + 5_000).await,
        vec![seqs[1]],
        "released after its retry time"
    );
    // w1 crashed holding seqs[2]: its lease expires and the event comes back.
    assert_eq!(claim(&store, "w3", now + 30_001).await, vec![seqs[2]]);

    let mut tx = store.begin_write().await.expect("begin");
    let again = sync_outbox::claim(
        &mut tx,
        store.backend(),
        "w4",
        10,
        Timestamp(now + 99_000),
        Timestamp(now + 120_000),
    )
    .await
    .expect("claim");
    tx.commit().await.expect("commit");
    let attempts: Vec<_> = again
        .iter()
        .map(|e| (e.seq, e.attempts, e.email.clone()))
        .collect();
    assert_eq!(
        attempts,
        vec![(seqs[1], 3, Some("b@x.io".into())), (seqs[2], 3, None)]
    );

    let mut tx = store.begin_write().await.expect("begin");
    sync_outbox::complete(&mut tx, &seqs[1..])
        .await
        .expect("complete");
    tx.commit().await.expect("commit");
    let mut conn = store.pool().acquire().await.expect("conn");
    assert_eq!(events::depth(&mut conn).await.expect("depth").0, 0);
}
both_backends!(
    outbox_leases_give_at_least_once_delivery_on,
    outbox_leases_give_at_least_once_delivery
);

/// Beside a run in flight, a claim takes only events naming people that
/// run does not have, the held people's events stay pending and leased to
/// nobody, and nothing from the first unleased event naming nobody on is
/// taken (the group event waits, and nothing overtakes it).
async fn a_claim_beside_runs_in_flight_leaves_their_people_and_group_events(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let seqs = append_events(
        &store,
        &[
            Some("held@x.io"),
            Some("Free@x.io"),
            Some("HELD@x.io"),
            Some("other@x.io"),
            None,
            Some("late@x.io"),
        ],
    )
    .await;
    let now = 1_000_000;
    let held = |email: &str| email == "held@x.io";
    let mut tx = store.begin_write().await.expect("begin");
    let claimed = sync_outbox::claim_beside(
        &mut tx,
        store.backend(),
        "w1",
        10,
        Timestamp(now),
        Timestamp(now + 30_000),
        &held,
    )
    .await
    .expect("claim");
    tx.commit().await.expect("commit");
    let claimed: Vec<i64> = claimed.into_iter().map(|e| e.seq).collect();
    assert_eq!(claimed, vec![seqs[1], seqs[3]]);
    // Once the run in flight is done, a claim takes what was left.
    assert_eq!(
        claim(&store, "w2", now + 1).await,
        vec![seqs[0], seqs[2], seqs[4], seqs[5]]
    );
}
both_backends!(
    a_claim_beside_runs_in_flight_leaves_their_people_and_group_events_on,
    a_claim_beside_runs_in_flight_leaves_their_people_and_group_events
);

async fn concurrent_claimers_never_share_an_event(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let emails: Vec<Option<String>> = (0..40).map(|i| Some(format!("p{i}@x.io"))).collect();
    let refs: Vec<Option<&str>> = emails.iter().map(|e| e.as_deref()).collect();
    append_events(&store, &refs).await;
    let workers = (0..4).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = vec![];
            loop {
                let got = claim(&store, &format!("w{w}"), 1_000).await;
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got);
            }
        })
    });
    let mut all: Vec<i64> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flat_map(|r| r.expect("worker"))
        .collect();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((total, all.len()), (40, 40));
}
both_backends!(
    concurrent_claimers_never_share_an_event_on,
    concurrent_claimers_never_share_an_event
);

/// The multi-row forms a run's batches use write what the one-row forms
/// do, past a statement's worth of rows (SQLite's are the smallest).
async fn batched_ownership_and_audit_rows_match_the_single_row_forms(db: Db) {
    let (store, _dir) = fresh_store(db).await;
    let emails: Vec<String> = (0..300).map(|n| format!("P{n}@Example.com")).collect();
    let people: Vec<(&str, &str)> = emails.iter().map(|e| ("org1", e.as_str())).collect();
    let mut tx = store.begin_write().await.expect("begin");
    sync_state::record_user(&mut tx, &managed("old0", "p0@example.com"))
        .await
        .expect("a stale record of p0");
    sync_state::begin_creates(&mut tx, &people, Timestamp(5))
        .await
        .expect("begin");
    sync_state::begin_creates(&mut tx, &people[..3], Timestamp(6))
        .await
        .expect("begin again is fine");
    tx.commit().await.expect("commit");
    let mut conn = store.pool().acquire().await.expect("conn");
    let ownership = sync_state::load_ownership(&mut conn).await.expect("load");
    assert_eq!(ownership.pending_creates.len(), 300);
    assert!(ownership.creation_pending("org1", "p299@example.com"));
    drop(conn);

    // The first 200 are recorded (u7 twice: as given last), the rest end.
    let mut users: Vec<ManagedUser> = (0..200)
        .map(|n| managed(&format!("u{n}"), &emails[n]))
        .collect();
    users.push(managed("u7", "p7-renamed@example.com"));
    let mut tx = store.begin_write().await.expect("begin");
    sync_state::record_users(&mut tx, &users)
        .await
        .expect("record");
    sync_state::end_creates(&mut tx, &people[200..])
        .await
        .expect("end");
    tx.commit().await.expect("commit");
    let mut conn = store.pool().acquire().await.expect("conn");
    let ownership = sync_state::load_ownership(&mut conn).await.expect("load");
    // p7's pending creation stays: u7 ended up recorded under another e-mail.
    let pending: Vec<_> = ownership
        .pending_creates
        .iter()
        .map(|p| format!("{p:?}"))
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(ownership.creation_pending("org1", "p7@example.com"));
    assert_eq!(ownership.users.len(), 200, "old0 replaced by u0");
    assert!(!ownership.users.contains_key("old0"));
    assert_eq!(ownership.users["u0"].email, "p0@example.com");
    assert_eq!(ownership.users["u7"].email, "p7-renamed@example.com");
    assert_eq!(ownership.users["u199"].email, "p199@example.com");
    drop(conn);

    // Audit rows: the same as `append`'s, sources included.
    let mut tx = store.begin_write().await.expect("begin");
    tyk_idsync::store::identities::insert_user(
        &mut tx,
        &stored_user("okta", "okta-p1", "p1@example.com"),
        &[],
    )
    .await
    .expect("okta user");
    tyk_idsync::store::identities::insert_user(
        &mut tx,
        &stored_user("ldap", "ldap-p1", "p1@example.com"),
        &[],
    )
    .await
    .expect("ldap user");
    tx.commit().await.expect("commit");
    let entries: Vec<NewAuditEntry> = (0..40)
        .map(|n| audit(&format!("P{n}@Example.com"), "create_user", n % 5 != 0))
        .collect();
    let mut tx = store.begin_write().await.expect("begin");
    sync_audit::append_many(&mut tx, &entries)
        .await
        .expect("append many");
    tx.commit().await.expect("commit");
    let mut conn = store.pool().acquire().await.expect("conn");
    sync_audit::append(&mut conn, &entries[1])
        .await
        .expect("append one");
    let rows = sync_audit::list(
        &mut conn,
        &AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(rows.len(), 41);
    // Newest first: the single append, then the batch in reverse.
    let (single, batch) = (&rows[0], &rows[1..]);
    let batched_p1 = &batch[batch.len() - 2];
    assert_eq!(batched_p1.entry, entries[1]);
    assert_eq!(batched_p1.entry, single.entry);
    assert_eq!(batched_p1.source.as_deref(), Some("ldap,okta"));
    assert_eq!(single.source, batched_p1.source);
    assert_eq!(batch[batch.len() - 1].source, None);
    let mut listed: Vec<NewAuditEntry> = batch.iter().map(|r| r.entry.clone()).collect();
    listed.reverse();
    assert_eq!(listed, entries);
}
both_backends!(
    batched_ownership_and_audit_rows_on,
    batched_ownership_and_audit_rows_match_the_single_row_forms
);
